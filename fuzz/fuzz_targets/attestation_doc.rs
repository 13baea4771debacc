//! Attestation and enrollment documents as `attest verify` reads them:
//! serde into `AttestationDoc`/`EnrollmentDoc`, `attestation::pinned_ak`
//! (`--ak`: a key or an enrollment document) and `attestation::verify`; the
//! remote-enrollment documents (challenge, kept secret, response) and
//! `enrollment::confirm` of the input as the challenged enrollment, whose
//! confirmation must mean the response held the kept secret.
//! A fuzzer cannot forge the AK's signature, so two mode bytes let the
//! target repair parts of a document with a fixed AK — its key and public
//! area, the TPMS_ATTEST rebuilt around the document's contents (right
//! signer, nonce, index name, locked or not), the signature, a record naming
//! the expected bundle — and leave the rest as found, so every check of
//! `verify` is reached. Invariant: a valid verdict means the record the
//! TPM certified has the expected digest (and is locked when that is required).
#![no_main]

mod support;

use imgseal::anchors::{AnchorSet, Bundle, Record, expected_public};
use imgseal::attestation::{self, AttestationDoc, CertifiedIndex, EnrollmentDoc, Expected};
use imgseal::enrollment::{self, ChallengeSecret, ResponseDoc};
use imgseal_tpm::{
    IndexCreator,
    COUNTER_INDEX, NvAttestation, NvCertified, RECORD_INDEX, endorsement_primary_qualified_name,
};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest as _, Sha256};

/// The AK's `TPMT_PUBLIC` as imgseal's template makes it.
fn ak_public_area() -> Vec<u8> {
    let (x, y) = support::p256_point(support::ak_key());
    let mut p = Vec::new();
    p.extend_from_slice(&0x0023u16.to_be_bytes()); // ECC
    p.extend_from_slice(&0x000Bu16.to_be_bytes()); // SHA-256 names
    let attrs: u32 = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 16) | (1 << 18);
    p.extend_from_slice(&attrs.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes()); // no policy
    for v in [0x0010u16, 0x0018, 0x000B, 0x0003, 0x0010] {
        p.extend_from_slice(&v.to_be_bytes());
    }
    for c in [x, y] {
        p.extend_from_slice(&(c.len() as u16).to_be_bytes());
        p.extend_from_slice(&c);
    }
    p
}

fn rebuild(
    c: &mut CertifiedIndex,
    index: u32,
    (locked, creator): (bool, IndexCreator),
    signer: &[u8],
    nonce: &[u8],
    n: u8,
) {
    let Ok(data) = hex::decode(&c.contents) else {
        return;
    };
    let Some(spec) = expected_public(index, locked, creator) else {
        return;
    };
    let a = NvAttestation {
        qualified_signer: signer.to_vec(),
        extra_data: nonce.to_vec(),
        clock: 1000,
        reset_count: 1,
        restart_count: (n & 1) as u32,
        safe: true,
        firmware_version: 0x2023,
        index_name: spec.name(),
        certified: NvCertified::Contents { offset: 0, data },
    };
    c.attest = hex::encode(support::encode_attest(&a));
}

fn resign(c: &mut CertifiedIndex) {
    if let Ok(attest) = hex::decode(&c.attest) {
        c.signature = hex::encode(support::sign_sha256(support::ak_key(), &attest));
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, mode2, json @ ..] = data else {
        return;
    };
    let (mode, mode2) = (*mode, *mode2);
    let _ = attestation::pinned_ak(json, "fuzz");
    let _ = serde_json::from_slice::<EnrollmentDoc>(json);
    let _ = enrollment::parse_challenge(json, "fuzz");
    let _ = enrollment::parse_secret(json, "fuzz");
    let _ = enrollment::parse_response(json, "fuzz");
    let kept = ChallengeSecret {
        format: enrollment::CHALLENGE_SECRET_FORMAT.into(),
        version: enrollment::VERSION,
        secret: "00".repeat(32),
        enrollment_sha256: hex::encode(Sha256::digest(json)),
        ak_name: String::new(),
        ek_certificate_verified: Some(true),
    };
    let answer = ResponseDoc {
        format: enrollment::RESPONSE_FORMAT.into(),
        version: enrollment::VERSION,
        ak_name: String::new(),
        secret: if mode2 & 8 != 0 { "00" } else { "01" }.repeat(32),
    };
    if let Ok(Ok(confirmed)) = enrollment::confirm(json, "fuzz", &kept, &answer) {
        assert!(mode2 & 8 != 0, "confirmed without the kept secret");
        assert!(confirmed.activation.verifier_confirmed);
    }
    let Ok(mut doc) = serde_json::from_slice::<AttestationDoc>(json) else {
        return;
    };
    let nonce = hex::decode(&doc.nonce).unwrap_or_default();
    let ak_spki = support::ak_key().public_key_to_der().unwrap();

    if mode & 1 != 0 {
        doc.ak.public_key_pem =
            String::from_utf8(support::ak_key().public_key_to_pem().unwrap()).unwrap();
        if mode & 2 == 0 {
            doc.ak.public_area = hex::encode(ak_public_area());
        }
    }
    if mode & 4 != 0 {
        let area = hex::decode(&doc.ak.public_area).unwrap_or_default();
        let mut name = vec![0x00, 0x0B];
        name.extend_from_slice(&Sha256::digest(&area));
        let signer = endorsement_primary_qualified_name(&name);
        if mode2 & 4 != 0 {
            // A record naming the empty bundle of the counter's version.
            let version = hex::decode(&doc.counter.contents)
                .ok()
                .and_then(|c| <[u8; 8]>::try_from(c).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let empty = Bundle {
                version,
                anchors: AnchorSet::new(),
            };
            let bytes = empty.encode();
            doc.record.contents = hex::encode(Record::for_bundle(&empty, &bytes, false).encode());
        }
        let locked = mode2 & 1 != 0;
        // Either creator, and now and then a record and a counter of two.
        let creator = |bit: u8| {
            if mode2 & bit != 0 {
                IndexCreator::Platform
            } else {
                IndexCreator::Owner
            }
        };
        rebuild(
            &mut doc.record,
            RECORD_INDEX,
            (locked, creator(16)),
            &signer,
            &nonce,
            0,
        );
        rebuild(
            &mut doc.counter,
            COUNTER_INDEX,
            (locked, creator(if mode2 & 32 != 0 { 64 } else { 16 })),
            &signer,
            &nonce,
            mode2 >> 1,
        );
    }
    if mode & 8 != 0 {
        resign(&mut doc.record);
        resign(&mut doc.counter);
    }
    let record_digest = hex::decode(&doc.record.contents)
        .ok()
        .and_then(|b| Record::decode(&b).ok())
        .map(|r| (r.digest, r.version));
    let expected = if mode & 16 != 0 {
        let version = record_digest.map(|(_, v)| v).unwrap_or(0);
        Expected::Bundle(
            Bundle {
                version,
                anchors: AnchorSet::new(),
            }
            .encode(),
        )
    } else if mode & 32 != 0 {
        Expected::Digest(record_digest.map(|(d, _)| d).unwrap_or([0; 32]))
    } else {
        Expected::Digest([0; 32])
    };
    let pinned = (mode & 64 != 0).then_some(ak_spki.as_slice());
    let require = attestation::Requirements {
        locked: mode & 128 != 0,
        delete_protected: data.len() % 2 == 1,
    };
    if let Ok(v) = attestation::verify(&doc, &nonce, &expected, pinned, require) {
        if v.valid {
            let digest = v.digest.clone().expect("a valid verdict has a digest");
            match &expected {
                Expected::Digest(d) => assert_eq!(digest, hex::encode(d)),
                Expected::Bundle(b) => assert_eq!(digest, hex::encode(Bundle::digest(b))),
            }
            if require.delete_protected {
                assert_eq!(v.delete_protected, Some(true));
            }
            if require.locked {
                assert_eq!(
                    (v.record_locked, v.counter_locked),
                    (Some(true), Some(true))
                );
            }
            assert!(v.counter_state.unwrap().is_acceptable());
        } else {
            assert!(v.reason.is_some());
        }
    }
});
