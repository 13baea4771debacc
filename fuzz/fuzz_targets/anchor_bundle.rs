//! The anchor bundle (`$IMGSEAL_HOME/anchors/bundle`, or the TPM's inline
//! copy): `Bundle::decode` is strict, so whatever it accepts must encode back
//! to the very same bytes, and the record made for it must name them.
#![no_main]

use imgseal::anchors::{Bundle, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = Bundle::decode(data, "fuzz") else {
        return;
    };
    assert_eq!(
        bundle.encode(),
        data,
        "decode accepts the canonical encoding only"
    );
    for (id, cert) in bundle.anchors.iter() {
        assert!(bundle.anchors.contains(id));
        let _ = cert.subject();
    }
    for inline in [false, true] {
        let record = Record::for_bundle(&bundle, data, inline);
        assert!(record.names(data));
        assert_eq!(Record::decode(&record.encode()).unwrap(), record);
    }
});
