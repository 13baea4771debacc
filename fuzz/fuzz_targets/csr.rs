//! PKCS#10 certificate requests. imgseal only *builds* CSRs (x509::build_csr,
//! whose output tests parse back); it never reads one from outside. This
//! target covers the decoders a CA-side check of imgseal's requests would
//! use — x509-cert's `CertReq` (DER and PEM; the crate imgseal builds with)
//! and OpenSSL's `X509Req` with its signature check — so that a request in
//! imgseal's format is known to round-trip and hostile ones to fail cleanly.
#![no_main]

use der::{Decode, DecodePem, Encode, EncodePem};
use libfuzzer_sys::fuzz_target;
use openssl::x509::X509Req;
use x509_cert::request::CertReq;

fn round_trip(req: &CertReq) {
    let der = req.to_der().expect("a decoded request encodes");
    let again = CertReq::from_der(&der).expect("a request's own DER decodes");
    assert_eq!(&again, req, "DER round trip");
    let pem = req.to_pem(der::pem::LineEnding::LF).expect("PEM encodes");
    let again = CertReq::from_pem(pem.as_bytes()).expect("a request's own PEM decodes");
    assert_eq!(&again, req, "PEM round trip");
    let _ = req.info.subject.to_string();
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = CertReq::from_der(data) {
        round_trip(&req);
    }
    if let Ok(req) = CertReq::from_pem(data) {
        round_trip(&req);
    }
    for req in [X509Req::from_der(data), X509Req::from_pem(data)]
        .into_iter()
        .flatten()
    {
        let _ = req.subject_name().entries().count();
        if let Ok(key) = req.public_key() {
            let _ = req.verify(&key);
        }
    }
});
