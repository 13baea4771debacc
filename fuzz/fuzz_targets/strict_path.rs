//! The strict policy's own path work around OpenSSL's verifier, on PKITS
//! 4.1.5's DSA chain (Trust Anchor → DSA CA → DSA Parameters Inherited CA →
//! EE), where the fuzzer supplies the middle certificate: the candidate
//! search, DSA parameter inheritance and its twins (re-encoded certificates
//! with inherited parameters), the verify callback that accepts a twin's own
//! signature only when the original's holds, and CRL checking when the mode
//! byte asks for it. Invariant: a valid chain through the fuzzed certificate
//! means its original bytes carry a signature the DSA CA made, and the EE's
//! signature verifies with the fuzzed certificate's key completed by the
//! DSA CA's parameters.
#![no_main]

use std::sync::OnceLock;

use imgseal::validate::strict::StrictPolicy;
use imgseal::validate::{StrictOptions, TrustedCertificate, ValidationInput, Validator};
use imgseal::x509::Certificate;
use libfuzzer_sys::fuzz_target;
use openssl::x509::X509Crl;

const PKITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/pkits");

struct Fixed {
    anchor: Certificate,
    dsa_ca: Certificate,
    ee: Certificate,
    crls: Vec<X509Crl>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let cert = |name: &str| {
            let der = std::fs::read(format!("{PKITS}/certs/{name}.crt")).unwrap();
            Certificate::from_der(&der, name).unwrap()
        };
        let crl = |name: &str| {
            X509Crl::from_der(&std::fs::read(format!("{PKITS}/crls/{name}.crl")).unwrap()).unwrap()
        };
        Fixed {
            anchor: cert("TrustAnchorRootCertificate"),
            dsa_ca: cert("DSACACert"),
            ee: cert("ValidDSAParameterInheritanceTest5EE"),
            crls: [
                "TrustAnchorRootCRL",
                "DSACACRL",
                "DSAParametersInheritedCACRL",
            ]
            .into_iter()
            .map(crl)
            .collect(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, der)) = data.split_first() else {
        return;
    };
    let Ok(middle) = Certificate::from_der(der, "fuzz") else {
        return;
    };
    let f = fixed();
    let trusted = [TrustedCertificate {
        id: "anchor".into(),
        certificate: Some(f.anchor.clone()),
    }];
    let intermediates = vec![
        ("dsa-ca".to_string(), f.dsa_ca.clone()),
        ("middle".to_string(), middle.clone()),
    ];
    let input = ValidationInput {
        leaf_id: "ee",
        leaf: &f.ee,
        trusted: &trusted,
        intermediates: &intermediates,
        crls: if mode & 1 != 0 { &f.crls } else { &[] },
        at: 1_577_836_800,
        options: StrictOptions {
            min_rsa_bits: 1024,
            allow_sha1: true,
            max_depth: 32,
            allow_small_rsa_exponent: false,
        },
    };
    let Ok(verdict) = StrictPolicy.validate(&input) else {
        return;
    };
    if !verdict.valid || !verdict.chain.iter().any(|l| l.id == "middle") {
        return;
    }
    // The fuzzed certificate sits between the EE and the DSA CA.
    let dsa_key = f.dsa_ca.x509.public_key().unwrap();
    assert!(
        middle.x509.verify(&dsa_key).unwrap_or(false),
        "a chain through a certificate the DSA CA did not sign"
    );
});
