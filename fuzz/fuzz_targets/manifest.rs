//! Signed manifests as `verify --manifest` reads them: `Manifest::parse`, the
//! accessors `check_manifest` relies on, and `check_manifest` itself with a
//! fixed certificate. A fuzzer cannot sign, so mode bits let the target
//! repair a parsed manifest with that certificate's key — bit 1: the Glance
//! `img_signature` over the recorded linear digest; bit 2: the recorded
//! fs-verity digest; bit 0: the manifest's own signature — before checking,
//! so the checks behind the signature are reached too.
//! Invariants: the canonical bytes hold exactly the body; what imgseal writes
//! (`to_json_pretty`) parses back to the same manifest; a valid verdict's
//! digests are the recomputed ones.
#![no_main]

mod support;

use std::path::Path;

use base64::Engine as _;
use imgseal::backend::StoredCertificate;
use imgseal::backend::software::SoftwareVerifier;
use imgseal::manifest::{Manifest, ManifestBody, check_manifest, default_tree_path};
use imgseal::signature::{SignatureScheme, sign_digest_software};
use imgseal::validate::StrictOptions;
use imgseal::x509::Certificate;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The manifest text with the Glance signature and/or the fs-verity digest
/// made right for the fixed key, or `None` when there is nothing to repair.
fn repair(m: &Manifest, text: &str, mode: u8) -> Option<String> {
    let mut value: Value = serde_json::from_str(text).ok()?;
    if mode & 2 != 0 {
        let sig = m.glance_signature().ok()?;
        let linear = m.linear_digest().ok()?;
        let scheme = SignatureScheme::for_glance(sig.key_type, linear.hash);
        let signed = sign_digest_software(support::key(2), &scheme, &linear.digest).ok()?;
        value["glance"]["img_signature"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(signed));
    }
    if mode & 4 != 0 {
        value["fsverity"]["digest"] = Value::String(m.fsverity().ok()?.to_string());
    }
    Some(value.to_string())
}

fn check(m: &mut Manifest, mode: u8) {
    let (_, leaf) = support::ca_and_leaf();
    let cert = Certificate::from_der(&leaf.to_der().unwrap(), "leaf").unwrap();
    if mode & 1 != 0 {
        if let Ok(scheme) = m.scheme() {
            let digest =
                openssl::hash::hash(scheme.hash().message_digest(), m.canonical_bytes()).unwrap();
            if let Ok(sig) = sign_digest_software(support::key(2), &scheme, &digest) {
                m.signature = sig;
            }
        }
    }
    let find = |id: &str| {
        Ok::<_, imgseal::Error>(Some(StoredCertificate {
            id: id.to_string(),
            certificate: cert.clone(),
            location: "fuzz".into(),
        }))
    };
    if let Ok(v) = check_manifest(m, &find, &SoftwareVerifier, StrictOptions::default()) {
        if v.valid {
            assert_eq!(v.fsverity_digest, m.fsverity().unwrap().to_string());
            assert_eq!(v.certificate_id, m.glance_signature().unwrap().cert_uuid);
        } else {
            assert!(v.reason.is_some());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(mut m) = Manifest::parse(text, "fuzz") else {
        return;
    };

    let body: ManifestBody =
        serde_json::from_slice(m.canonical_bytes()).expect("canonical bytes are the body");
    assert_eq!(body, m.body, "canonical bytes hold the body");
    let again = Manifest::parse(&m.to_json_pretty(), "again").expect("imgseal's output parses");
    assert_eq!(again.body, m.body);
    assert_eq!(again.signature, m.signature);

    let _ = m.scheme();
    let _ = m.fsverity().map(|f| f.to_string());
    let _ = m.linear_digest();
    let _ = m.glance_signature();
    let _ = default_tree_path(&m, Path::new("/nonexistent/imgseal-fuzz/m.json"));

    if mode & 6 != 0 {
        if let Some(fixed) = repair(&m, text, mode) {
            if let Ok(mut m2) = Manifest::parse(&fixed, "repaired") {
                check(&mut m2, mode);
            }
        }
    }
    check(&mut m, mode);
});
