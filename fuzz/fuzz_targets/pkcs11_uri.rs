//! RFC 7512 URIs: parsing never panics, and what parses prints and re-parses
//! to the same value.
#![no_main]

use imgseal_hsm::uri::Pkcs11Uri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(uri) = text.parse::<Pkcs11Uri>() {
        let printed = uri.to_string();
        let again: Pkcs11Uri = printed.parse().expect("a printed URI parses");
        assert_eq!(again, uri);
        let _ = uri.redacted();
        let _ = uri.pin_source_path();
    }
});
