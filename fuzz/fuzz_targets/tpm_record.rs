//! The 256-byte anchor record read from NV 0x0181A000: `Record::decode` is
//! strict, so what it accepts re-encodes to the same bytes; and the counter
//! rule (`CounterState`) over the record's version and any counter value.
#![no_main]

use imgseal::anchors::{CounterState, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The fuzzer's bytes as the record, and (so that most inputs reach past
    // the magic) laid over a valid record's first bytes.
    let mut laid = Record {
        version: 0,
        inline: false,
        count: 0,
        bundle_len: 0,
        digest: [0; 32],
    }
    .encode();
    let n = data.len().min(laid.len());
    laid[10..]
        .iter_mut()
        .zip(&data[..n])
        .for_each(|(d, s)| *d = *s);
    for bytes in [data, &laid[..]] {
        let Ok(record) = Record::decode(bytes) else {
            continue;
        };
        assert_eq!(
            &record.encode()[..],
            bytes,
            "decode accepts the canonical encoding only"
        );
        let counter = data
            .get(..8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
            .unwrap_or(0);
        let state = CounterState::of(record.version, counter);
        assert_eq!(
            state.is_acceptable(),
            record.version == counter || Some(record.version) == counter.checked_add(1)
        );
        let _ = record.names(data);
    }
});
