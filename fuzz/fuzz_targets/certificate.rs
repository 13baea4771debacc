//! Certificates as users hand them over (DER, or PEM after text): parsing and
//! everything validation reads of them.
#![no_main]

use imgseal::validate::facts::CertFacts;
use imgseal::x509::Certificate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cert) = Certificate::parse(data, "fuzz") {
        let _ = cert.subject();
        let _ = cert.issuer();
        let _ = cert.serial_der();
        if let Ok(key) = cert.public_key() {
            let _ = key.describe();
            let _ = key.glance_key_type();
        }
        let _ = CertFacts::of(&cert);
    }
});
