//! Helpers shared by the fuzz targets (not a target itself): fixed keys made
//! once per process, so targets can sign what the fuzzer made and reach the
//! checks behind a signature, and an encoder of the NV `TPMS_ATTEST`.
#![allow(dead_code)]

use std::sync::OnceLock;

use imgseal_tpm::{NvAttestation, NvCertified, TPM_GENERATED_VALUE};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509, X509Builder, X509NameBuilder};

pub const TPM_ST_ATTEST_NV: u16 = 0x8014;
pub const TPM_ST_ATTEST_NV_DIGEST: u16 = 0x801C;

/// Keys generated once per process: slot 0 is P-256 (a TPM AK's curve),
/// slots 1 and 2 are P-384 (the CA and the leaf: Glance has no P-256 key type).
pub fn key(slot: usize) -> &'static PKey<Private> {
    static KEYS: OnceLock<Vec<PKey<Private>>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        [Nid::X9_62_PRIME256V1, Nid::SECP384R1, Nid::SECP384R1]
            .into_iter()
            .map(|nid| {
                let group = EcGroup::from_curve_name(nid).unwrap();
                PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
            })
            .collect()
    });
    &keys[slot]
}

/// The P-256 AK.
pub fn ak_key() -> &'static PKey<Private> {
    key(0)
}

/// DER ECDSA / SHA-256 over `data`.
pub fn sign_sha256(key: &PKey<Private>, data: &[u8]) -> Vec<u8> {
    let mut s = Signer::new(MessageDigest::sha256(), key).unwrap();
    s.update(data).unwrap();
    s.sign_to_vec().unwrap()
}

/// The point of a P-256 key, x and y, 32 bytes each.
pub fn p256_point(key: &PKey<Private>) -> (Vec<u8>, Vec<u8>) {
    let ec = key.ec_key().unwrap();
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let mut x = BigNum::new().unwrap();
    let mut y = BigNum::new().unwrap();
    ec.public_key()
        .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
        .unwrap();
    (x.to_vec_padded(32).unwrap(), y.to_vec_padded(32).unwrap())
}

/// A CA (self-signed, slot 1's key) and a leaf it issued (slot 2's key),
/// valid from 2020 to 2040, code-signing usages on the leaf.
pub fn ca_and_leaf() -> &'static (X509, X509) {
    static PAIR: OnceLock<(X509, X509)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let ca_key = key(1);
        let leaf_key = key(2);
        let name = |cn: &str| {
            let mut b = X509NameBuilder::new().unwrap();
            b.append_entry_by_text("CN", cn).unwrap();
            b.build()
        };
        let build = |subject: &str, serial: u32, key: &PKey<Private>, ca: bool| {
            let mut b = X509Builder::new().unwrap();
            b.set_version(2).unwrap();
            b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
                .unwrap();
            b.set_subject_name(&name(subject)).unwrap();
            b.set_issuer_name(&name("fuzz CA")).unwrap();
            b.set_pubkey(key).unwrap();
            b.set_not_before(&Asn1Time::from_str("20200101000000Z").unwrap())
                .unwrap();
            b.set_not_after(&Asn1Time::from_str("20400101000000Z").unwrap())
                .unwrap();
            if ca {
                b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                    .unwrap();
                b.append_extension(
                    KeyUsage::new()
                        .critical()
                        .key_cert_sign()
                        .crl_sign()
                        .build()
                        .unwrap(),
                )
                .unwrap();
            } else {
                b.append_extension(
                    KeyUsage::new()
                        .critical()
                        .digital_signature()
                        .build()
                        .unwrap(),
                )
                .unwrap();
            }
            b.sign(ca_key, MessageDigest::sha256()).unwrap();
            b.build()
        };
        (
            build("fuzz CA", 1, ca_key, true),
            build("fuzz leaf", 2, leaf_key, false),
        )
    })
}

/// 2030-01-01T00:00:00Z: inside the fixed certificates' validity.
pub const AT: i64 = 1_893_456_000;

/// Marshals an NV `TPMS_ATTEST` as the TPM does (TPM 2.0 Part 2, 10.12.12).
pub fn encode_attest(a: &NvAttestation) -> Vec<u8> {
    let mut out = Vec::new();
    let tpm2b = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(b);
    };
    out.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
    let kind = match a.certified {
        NvCertified::Contents { .. } => TPM_ST_ATTEST_NV,
        NvCertified::Digest(_) => TPM_ST_ATTEST_NV_DIGEST,
    };
    out.extend_from_slice(&kind.to_be_bytes());
    tpm2b(&mut out, &a.qualified_signer);
    tpm2b(&mut out, &a.extra_data);
    out.extend_from_slice(&a.clock.to_be_bytes());
    out.extend_from_slice(&a.reset_count.to_be_bytes());
    out.extend_from_slice(&a.restart_count.to_be_bytes());
    out.push(a.safe as u8);
    out.extend_from_slice(&a.firmware_version.to_be_bytes());
    tpm2b(&mut out, &a.index_name);
    match &a.certified {
        NvCertified::Contents { offset, data } => {
            out.extend_from_slice(&offset.to_be_bytes());
            tpm2b(&mut out, data);
        }
        NvCertified::Digest(d) => tpm2b(&mut out, d),
    }
    out
}
