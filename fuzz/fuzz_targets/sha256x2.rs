//! The two-way SHA-256 kernel (`imgseal::fsverity::sha256x2`) against `sha2`
//! on arbitrary prefixes and messages. The first two bytes give the prefix
//! length; the rest is the prefix, then two messages of equal length (the
//! second is the first with the remaining bytes XORed in, cycled, so lanes
//! differ but inputs stay short). Invariant: each lane is SHA-256 of prefix
//! || message, and `finup` agrees.
#![no_main]

use imgseal::fsverity::sha256x2::Sha256Prefix;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn reference(prefix: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prefix);
    h.update(msg);
    h.finalize().into()
}

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let plen = (u16::from_le_bytes(*head) as usize).min(rest.len());
    let (prefix, rest) = rest.split_at(plen);
    let (a, mask) = rest.split_at(rest.len().div_ceil(2));
    let b: Vec<u8> = if mask.is_empty() {
        a.to_vec()
    } else {
        a.iter()
            .zip(mask.iter().cycle())
            .map(|(x, m)| x ^ m)
            .collect()
    };
    let p = Sha256Prefix::new(prefix);
    let (da, db) = p.finup_2x(a, &b);
    assert_eq!(da, reference(prefix, a), "lane a, prefix {plen}, len {}", a.len());
    assert_eq!(db, reference(prefix, &b), "lane b, prefix {plen}, len {}", a.len());
    assert_eq!(p.finup(a), da);
});
