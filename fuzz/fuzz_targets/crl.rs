//! CRLs as `--crl` reads them (PEM or DER): OpenSSL's decoders, imgseal's
//! `x509::parse_crl`, what is read of a CRL, a DER round trip, and the strict
//! policy's revocation check of a fixed chain against the CRL — as found,
//! and (mode bit) re-signed by the chain's CA under its name, so that
//! OpenSSL gets past the CRL's signature to its entries and extensions.
#![no_main]

mod support;

use foreign_types::{ForeignType, ForeignTypeRef};
use imgseal::validate::strict::StrictPolicy;
use imgseal::validate::{StrictOptions, TrustedCertificate, ValidationInput, Validator};
use imgseal::x509::{Certificate, name_to_string, parse_crl};
use libfuzzer_sys::fuzz_target;
use openssl::x509::X509Crl;

fn read(crl: &X509Crl) {
    let _ = name_to_string(crl.issuer_name());
    let _ = crl.last_update().to_string();
    let _ = crl.next_update().map(|t| t.to_string());
    if let Some(revoked) = crl.get_revoked() {
        for r in revoked {
            let _ = r.serial_number().to_bn();
            let _ = r.revocation_date().to_string();
        }
    }
}

fn validate(crl: X509Crl) {
    let (ca, leaf) = support::ca_and_leaf();
    let ca = Certificate::from_der(&ca.to_der().unwrap(), "ca").unwrap();
    let leaf = Certificate::from_der(&leaf.to_der().unwrap(), "leaf").unwrap();
    let trusted = [TrustedCertificate {
        id: "ca".into(),
        certificate: Some(ca),
    }];
    let crls = [crl];
    let input = ValidationInput {
        leaf_id: "leaf",
        leaf: &leaf,
        trusted: &trusted,
        intermediates: &[],
        crls: &crls,
        at: support::AT,
        options: StrictOptions::default(),
    };
    if let Ok(v) = StrictPolicy.validate(&input) {
        // Revoked is only ever said of a chain that failed.
        assert!(!(v.valid && v.revoked));
    }
}

fn resign(crl: &X509Crl) -> Option<X509Crl> {
    let (ca, _) = support::ca_and_leaf();
    let crl = X509Crl::from_der(&crl.to_der().ok()?).ok()?;
    // Safety: `crl` is owned here; the name is copied; the key outlives the call.
    unsafe {
        if openssl_sys::X509_CRL_set_issuer_name(crl.as_ptr(), ca.subject_name().as_ptr()) != 1 {
            return None;
        }
        if openssl_sys::X509_CRL_sign(
            crl.as_ptr(),
            support::key(1).as_ptr(),
            openssl_sys::EVP_sha256(),
        ) <= 0
        {
            return None;
        }
    }
    let der = crl.to_der().ok()?;
    X509Crl::from_der(&der).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let _ = X509Crl::from_der(data);
    let _ = X509Crl::from_pem(data);
    let Ok(crl) = parse_crl(data, "fuzz") else {
        return;
    };
    read(&crl);
    if let Ok(der) = crl.to_der() {
        let again = X509Crl::from_der(&der).expect("a CRL's own DER parses");
        assert_eq!(again.to_der().unwrap(), der, "DER round trip");
    }
    match mode & 3 {
        0 => {}
        1 => validate(crl),
        _ => {
            if let Some(signed) = resign(&crl) {
                read(&signed);
                validate(signed);
            }
        }
    }
});
