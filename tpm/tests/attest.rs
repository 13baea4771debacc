//! The AK, NV_Certify checked independently with `openssl dgst -verify`, the
//! EK certificate and credential activation.

mod common;

use std::process::Command;

use common::*;
use imgseal_tpm::{
    AK_HANDLE, AnchorLayout, Credential, EkKind, NvAccess, NvAttributes, NvCertified, NvSpec,
    RECORD_INDEX, TpmError, verify_nv_certification,
};
use sha2::{Digest, Sha256};

/// Writes the AK's SPKI as PEM (via openssl, from our DER).
fn pem_from_spki(t: &TestTpm, spki_der: &[u8], name: &str) -> std::path::PathBuf {
    let der = t.path(&format!("{name}.der"));
    let pem = t.path(&format!("{name}.pem"));
    write(&der, spki_der);
    ok(&run(Command::new("openssl").args([
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ])));
    pem
}

fn openssl_verifies(pem: &std::path::Path, sig: &std::path::Path, data: &std::path::Path) -> bool {
    let out = run(Command::new("openssl").args([
        "dgst",
        "-sha256",
        "-verify",
        pem.to_str().unwrap(),
        "-signature",
        sig.to_str().unwrap(),
        data.to_str().unwrap(),
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.success(),
        text.contains("Verified OK"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

#[test]
fn nv_certify_verifies_with_openssl_and_binds_nonce_contents_and_lock_state() {
    let mut t = TestTpm::start();
    let layout = AnchorLayout::standard(None);
    t.tpm.layout_ensure(&layout).unwrap();
    let record = pattern(256, 11);
    t.tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &record)
        .unwrap();
    let ak = t.tpm.ak_create_or_load(AK_HANDLE).unwrap();
    assert_eq!(ak.handle(), AK_HANDLE);
    let nonce = b"verifier nonce 0123456789abcdef";
    let cert = t
        .tpm
        .nv_certify_all(&ak, RECORD_INDEX, &NvAccess::public(), nonce)
        .unwrap();

    let pem = pem_from_spki(&t, ak.spki_der(), "ak");
    let sig = t.path("sig.der");
    let attest = t.path("attest.bin");
    write(&sig, &cert.signature_der().unwrap());
    write(&attest, &cert.attest);
    assert!(
        openssl_verifies(&pem, &sig, &attest),
        "openssl must verify the TPM's signature"
    );

    let parsed = cert.verify(ak.spki_der(), nonce).unwrap();
    assert_eq!(parsed.extra_data, nonce);
    assert_eq!(
        parsed.qualified_signer,
        ak.qualified_name(),
        "signed by a primary key of the endorsement hierarchy"
    );
    assert_eq!(
        parsed.certified,
        NvCertified::Contents {
            offset: 0,
            data: record.clone()
        }
    );
    let info = t.tpm.nv_read_public(RECORD_INDEX).unwrap();
    assert_eq!(parsed.index_name, info.name);
    assert_eq!(
        parsed.index_name,
        NvSpec {
            attributes: layout.record.attributes | NvAttributes::WRITTEN,
            ..layout.record.clone()
        }
        .name(),
        "a verifier can recompute the certified index's name from its public area"
    );

    // A verifier expecting another nonce refuses; swapping the nonce inside breaks the signature.
    let err = cert.verify(ak.spki_der(), b"another nonce").unwrap_err();
    assert!(matches!(err, TpmError::Attestation(_)), "{err}");
    assert!(err.to_string().contains("nonce"), "{err}");
    let mut swapped = cert.attest.clone();
    let at = swapped
        .windows(nonce.len())
        .position(|w| w == nonce)
        .unwrap();
    swapped[at] ^= 0x01;
    write(&attest, &swapped);
    assert!(!openssl_verifies(&pem, &sig, &attest));
    // Changed contents, changed signature.
    let mut changed = cert.attest.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0x80;
    write(&attest, &changed);
    assert!(!openssl_verifies(&pem, &sig, &attest));
    assert!(
        verify_nv_certification(
            ak.spki_der(),
            &changed,
            &cert.signature_der().unwrap(),
            nonce
        )
        .is_err()
    );
    write(&attest, &cert.attest);
    let mut bad_sig = cert.signature.clone();
    bad_sig.s[31] ^= 1;
    write(&sig, &bad_sig.to_der().unwrap());
    assert!(!openssl_verifies(&pem, &sig, &attest));
    write(&sig, &cert.signature_der().unwrap());

    // Another TPM's AK does not verify this TPM's attestation.
    let mut other = TestTpm::start();
    let other_ak = other.tpm.ak_create_or_load(AK_HANDLE).unwrap();
    assert_ne!(other_ak.spki_der(), ak.spki_der());
    let other_pem = pem_from_spki(&other, other_ak.spki_der(), "other-ak");
    assert!(!openssl_verifies(&other_pem, &sig, &attest));
    assert!(cert.verify(other_ak.spki_der(), nonce).is_err());

    // The AK is deterministic: loading finds it, recreating gives the same key.
    let loaded = t.tpm.ak_create_or_load(AK_HANDLE).unwrap();
    assert_eq!(loaded.spki_der(), ak.spki_der());
    t.tpm.ak_evict(AK_HANDLE).unwrap();
    let recreated = t.tpm.ak_create_or_load(AK_HANDLE).unwrap();
    assert_eq!(recreated.spki_der(), ak.spki_der());
    assert_eq!(recreated.name(), ak.name());

    // The lock is part of what is certified.
    t.tpm.layout_lock(&layout).unwrap();
    let locked = t
        .tpm
        .nv_certify_all(&ak, RECORD_INDEX, &NvAccess::public(), nonce)
        .unwrap()
        .verify(ak.spki_der(), nonce)
        .unwrap();
    assert_eq!(
        locked.index_name,
        NvSpec {
            attributes: layout.record.attributes
                | NvAttributes::WRITTEN
                | NvAttributes::WRITELOCKED,
            ..layout.record.clone()
        }
        .name()
    );
}

#[test]
fn nv_certify_covers_large_indices_by_digest_or_in_1024_byte_parts() {
    let mut t = TestTpm::start();
    let data_spec = NvSpec::sealed_data(0x0181_A002, 2048);
    t.tpm.nv_define_space(&data_spec, &[]).unwrap();
    let data = pattern(2048, 12);
    t.tpm
        .nv_write(data_spec.index, &NvAccess::Owner, 0, &data)
        .unwrap();
    let ak = t.tpm.ak_create_or_load(AK_HANDLE).unwrap();
    let nonce = [0x5a; 32];

    let whole = t
        .tpm
        .nv_certify_all(&ak, data_spec.index, &NvAccess::public(), &nonce)
        .unwrap();
    let parsed = whole.verify(ak.spki_der(), &nonce).unwrap();
    assert_eq!(
        parsed.certified,
        NvCertified::Digest(Sha256::digest(&data).to_vec()),
        "size 0 / offset 0 certifies the SHA-256 of the whole index"
    );
    let pem = pem_from_spki(&t, ak.spki_der(), "ak");
    let (sig, attest) = (t.path("sig.der"), t.path("attest.bin"));
    write(&sig, &whole.signature_der().unwrap());
    write(&attest, &whole.attest);
    assert!(openssl_verifies(&pem, &sig, &attest));

    let part = t
        .tpm
        .nv_certify(&ak, data_spec.index, &NvAccess::Owner, &nonce, 1024, 1024)
        .unwrap()
        .verify(ak.spki_der(), &nonce)
        .unwrap();
    assert_eq!(
        part.certified,
        NvCertified::Contents {
            offset: 1024,
            data: data[1024..].to_vec()
        }
    );
    let err = t
        .tpm
        .nv_certify(&ak, data_spec.index, &NvAccess::public(), &nonce, 0, 1025)
        .unwrap_err();
    assert!(err.to_string().contains("at most 1024"), "{err}");
    let err = t
        .tpm
        .nv_certify(&ak, data_spec.index, &NvAccess::public(), &[0; 65], 0, 16)
        .unwrap_err();
    assert!(err.to_string().contains("at most 64"), "{err}");
    let err = t
        .tpm
        .nv_certify(&ak, 0x0181_A0EE, &NvAccess::public(), &nonce, 0, 16)
        .unwrap_err();
    assert!(matches!(err, TpmError::IndexMissing { .. }), "{err}");
}

#[test]
fn ek_certificate_and_credential_activation_tie_the_ak_to_the_ek() {
    let mut t = TestTpm::start_manufactured();
    // The EK certificate swtpm_setup's local CA issued holds our EK's public key.
    let cert = t
        .tpm
        .ek_certificate(EkKind::Rsa2048)
        .unwrap()
        .expect("EK certificate");
    assert_eq!(cert[0], 0x30, "DER");
    assert!(t.tpm.ek_certificate(EkKind::EccP256).unwrap().is_none());
    let cert_file = t.path("ek.crt");
    write(&cert_file, &cert);
    let cert_key = ok(&run(Command::new("openssl").args([
        "x509",
        "-inform",
        "DER",
        "-in",
        cert_file.to_str().unwrap(),
        "-noout",
        "-pubkey",
    ])));
    let ek = t.tpm.ek_public(EkKind::Rsa2048).unwrap();
    let ek_pem = std::fs::read_to_string(pem_from_spki(&t, &ek.spki_der().unwrap(), "ek")).unwrap();
    assert_eq!(cert_key.trim(), ek_pem.trim());

    let ak = t.tpm.ak_create_or_load(AK_HANDLE).unwrap();
    // A key at the handle that is not an AK is refused, never used.
    let err = t
        .tpm
        .ak_load(EkKind::Rsa2048.persistent_handle())
        .unwrap_err();
    assert!(matches!(err, TpmError::UnexpectedKey { .. }), "{err}");
    // The verifier's side runs on another TPM (it needs none of this one's secrets).
    let mut verifier = TestTpm::start();
    let secret = b"challenge 8f3a1c";
    let credential = verifier
        .tpm
        .make_credential(&ek.public_bytes().unwrap(), ak.name(), secret)
        .unwrap();
    let recovered = t
        .tpm
        .activate_credential(&ak, EkKind::Rsa2048, &credential)
        .unwrap();
    assert_eq!(recovered.as_slice(), secret);

    // Made for another key's name: the TPM refuses to release the secret.
    let other_ak = verifier.tpm.ak_create_or_load(AK_HANDLE).unwrap();
    let wrong = verifier
        .tpm
        .make_credential(&ek.public_bytes().unwrap(), other_ak.name(), secret)
        .unwrap();
    let err = t
        .tpm
        .activate_credential(&ak, EkKind::Rsa2048, &wrong)
        .unwrap_err();
    assert!(
        err.to_string().contains("TPM2_ActivateCredential failed"),
        "{err}"
    );
    // Made for another TPM's EK: refused as well.
    let other_ek = verifier.tpm.ek_public(EkKind::EccP256).unwrap();
    let foreign = verifier
        .tpm
        .make_credential(&other_ek.public_bytes().unwrap(), ak.name(), secret)
        .unwrap();
    assert!(
        t.tpm
            .activate_credential(&ak, EkKind::Rsa2048, &foreign)
            .is_err()
    );

    // tpm2-tools' software MakeCredential (no TPM at all) produces what we activate.
    let ek_pub = t.path("ek.pub");
    let secret_file = t.path("secret.bin");
    let cred_file = t.path("cred.out");
    write(&ek_pub, &ek.tpm2b_public_bytes().unwrap());
    write(&secret_file, secret);
    let name_hex: String = ak.name().iter().map(|b| format!("{b:02x}")).collect();
    ok(&run(Command::new("tpm2_makecredential").args([
        "-T",
        "none",
        "-u",
        ek_pub.to_str().unwrap(),
        "-s",
        secret_file.to_str().unwrap(),
        "-n",
        &name_hex,
        "-o",
        cred_file.to_str().unwrap(),
    ])));
    let theirs = Credential::from_tpm2_tools(&std::fs::read(&cred_file).unwrap()).unwrap();
    assert_eq!(
        Credential::from_tpm2_tools(&theirs.to_tpm2_tools()).unwrap(),
        theirs
    );
    let recovered = t
        .tpm
        .activate_credential(&ak, EkKind::Rsa2048, &theirs)
        .unwrap();
    assert_eq!(recovered.as_slice(), secret);
}
