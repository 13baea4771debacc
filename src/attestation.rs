//! Attestation of the sealed anchors, and enrollment of the key that signs it.
//!
//! * [`attest`]: the TPM certifies (TPM2_NV_Certify, signed by its restricted
//!   attestation key) the anchor record and the version counter, each with the
//!   verifier's nonce. The document carries both `TPMS_ATTEST` structures,
//!   their signatures, the AK's public key and public area, and the record.
//! * [`verify`]: the verifier's offline check: signatures, nonce, that the
//!   signer is a restricted key, the indices' names recomputed from the
//!   documented attributes (so a redefined index fails, and the lock state is
//!   learnt), the record's digest and version against the expected bundle or
//!   digest, and the version against the counter (no rollback).
//! * [`enroll`]: shows that the AK lives in the same TPM as the endorsement
//!   key: the EK certificate holds this TPM's EK, and a credential made for
//!   (EK, AK name) is released by this TPM.
//!
//! docs/anchors.md ("Attestation") describes the documents field by field.

use openssl::pkey::{PKey, Public};
use openssl::x509::X509;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use imgseal_tpm::{
    AK_HANDLE, COUNTER_INDEX, EkKind, IndexCreator, NvAccess, NvAttestation, NvCertified,
    RECORD_INDEX, RECORD_SIZE, Tpm, endorsement_primary_qualified_name, verify_nv_certification,
};

use crate::anchors::{Bundle, CounterState, Record, expected_public};
use crate::error::{Error, Result, openssl_reason};

pub const ATTESTATION_FORMAT: &str = "imgseal-anchor-attestation";
pub const ENROLLMENT_FORMAT: &str = "imgseal-ak-enrollment";
pub const DOCUMENT_VERSION: u32 = 1;

/// The attestation key as documents carry it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AkInfo {
    /// Persistent handle, `0x81018000`.
    pub handle: String,
    /// SubjectPublicKeyInfo, PEM: what `openssl dgst -verify` takes.
    pub public_key_pem: String,
    /// The marshalled `TPMT_PUBLIC` (hex): its attributes show a restricted key.
    pub public_area: String,
    /// `000b || SHA-256(public_area)` (hex).
    pub name: String,
}

/// One certified index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertifiedIndex {
    pub nv_index: String,
    /// The certified bytes (hex); the signed `attest` holds them too.
    pub contents: String,
    /// `TPMS_ATTEST` (hex): the signed message.
    pub attest: String,
    /// ECDSA P-256 / SHA-256 signature over `attest`, DER (hex).
    pub signature: String,
}

/// What the attesting host read; informational, the verifier recomputes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnchorSummary {
    pub version: u64,
    pub digest: String,
    pub certificates: u32,
    pub counter: u64,
    pub locked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TpmSummary {
    pub manufacturer: String,
    pub firmware_version: String,
}

/// The attestation document (`imgseal attest --out`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationDoc {
    pub format: String,
    pub version: u32,
    /// The verifier's nonce (hex).
    pub nonce: String,
    pub ak: AkInfo,
    pub record: CertifiedIndex,
    pub counter: CertifiedIndex,
    pub anchors: AnchorSummary,
    pub tpm: TpmSummary,
}

pub(crate) fn hx(b: &[u8]) -> String {
    hex::encode(b)
}

fn tpm_summary(tpm: &mut Tpm) -> Result<TpmSummary> {
    let info = tpm
        .info()
        .map_err(Error::tpm("reading the TPM's properties"))?;
    Ok(TpmSummary {
        manufacturer: info.manufacturer,
        firmware_version: format!("{:#018x}", info.firmware_version),
    })
}

fn spki_pem(spki_der: &[u8]) -> Result<String> {
    let key = PKey::public_key_from_der(spki_der)
        .map_err(|e| Error::crypto("reading the AK's public key", e))?;
    let pem = key
        .public_key_to_pem()
        .map_err(|e| Error::crypto("encoding the AK's public key", e))?;
    Ok(String::from_utf8_lossy(&pem).into_owned())
}

fn ak_info(tpm: &mut Tpm) -> Result<(imgseal_tpm::AttestationKey, AkInfo)> {
    let ak = tpm
        .ak_create_or_load(AK_HANDLE)
        .map_err(Error::tpm(format!(
            "loading (or creating) the attestation key at {AK_HANDLE:#010x}"
        )))?;
    let public_area = ak
        .public_bytes()
        .map_err(Error::tpm("reading the AK's public area"))?;
    let info = AkInfo {
        handle: format!("{AK_HANDLE:#010x}"),
        public_key_pem: spki_pem(ak.spki_der())?,
        public_area: hx(&public_area),
        name: hx(ak.name()),
    };
    Ok((ak, info))
}

/// Refuses a nonce that is empty or longer than TPM2_NV_Certify takes: the
/// one rule for `attest --nonce` and `attest verify --nonce`. An empty nonce
/// would bind an attestation to no request at all.
pub fn check_nonce(nonce: &[u8]) -> Result<()> {
    if nonce.is_empty() || nonce.len() > imgseal_tpm::MAX_NONCE {
        return Err(Error::usage(format!(
            "the nonce must be 1 to {} bytes; got {}",
            imgseal_tpm::MAX_NONCE,
            nonce.len()
        )));
    }
    Ok(())
}

/// Certifies the anchor record and the counter with `nonce` (at most 64 bytes).
pub fn attest(tpm: &mut Tpm, nonce: &[u8]) -> Result<AttestationDoc> {
    check_nonce(nonce)?;
    // The same checks verification makes: nothing is attested that imgseal
    // would not itself accept as a record.
    let state = crate::anchors::read_tpm(tpm)?;
    let (ak, ak_info) = ak_info(tpm)?;
    let certify = |tpm: &mut Tpm, index: u32, size: u16, what: &str| -> Result<CertifiedIndex> {
        let c = tpm
            .nv_certify(&ak, index, &NvAccess::public(), nonce, 0, size)
            .map_err(Error::tpm(format!(
                "certifying the {what} (TPM2_NV_Certify)"
            )))?;
        let parsed = c
            .parse()
            .map_err(Error::tpm(format!("reading the {what}'s attestation")))?;
        let contents = match parsed.certified {
            NvCertified::Contents { data, .. } => data,
            NvCertified::Digest(d) => d,
        };
        Ok(CertifiedIndex {
            nv_index: format!("{index:#010x}"),
            contents: hx(&contents),
            attest: hx(&c.attest),
            signature: hx(&c
                .signature_der()
                .map_err(Error::tpm("encoding the AK's signature"))?),
        })
    };
    // The counter first, as read_tpm reads it: a seal that runs between the
    // two certifications then leaves a certified record at or one ahead of
    // the certified counter (accepted), never behind it (a rollback).
    let counter = certify(tpm, COUNTER_INDEX, 8, "anchor counter")?;
    let record = certify(tpm, RECORD_INDEX, RECORD_SIZE, "anchor record")?;
    Ok(AttestationDoc {
        format: ATTESTATION_FORMAT.into(),
        version: DOCUMENT_VERSION,
        nonce: hx(nonce),
        ak: ak_info,
        record,
        counter,
        anchors: AnchorSummary {
            version: state.record.version,
            digest: hx(&state.record.digest),
            certificates: state.record.count,
            counter: state.counter,
            locked: state.locked,
        },
        tpm: tpm_summary(tpm)?,
    })
}

/// What the verifier expects the sealed set to be.
pub enum Expected {
    /// The bundle itself (its digest and version must be the record's).
    Bundle(Vec<u8>),
    /// Only the digest.
    Digest([u8; 32]),
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct AttestVerdict {
    pub valid: bool,
    pub reason: Option<String>,
    /// Whether the AK was given by the verifier (else taken from the document,
    /// which then proves only that *some* TPM signed it).
    pub ak_pinned: bool,
    /// SHA-256 of the AK's SubjectPublicKeyInfo (hex).
    pub ak_fingerprint: Option<String>,
    pub version: Option<u64>,
    pub digest: Option<String>,
    pub certificates: Option<u32>,
    pub counter: Option<u64>,
    pub counter_state: Option<CounterState>,
    pub record_locked: Option<bool>,
    pub counter_locked: Option<bool>,
    /// Whether the certified indices are platform-created, so that the TPM
    /// owner cannot delete and replace them (their names say so).
    pub delete_protected: Option<bool>,
    pub clock: Option<u64>,
    pub reset_count: Option<u32>,
    pub restart_count: Option<u32>,
}

pub(crate) fn unhex(field: &str, s: &str) -> Result<Vec<u8>> {
    hex::decode(s)
        .map_err(|e| Error::bad_input(format!("attestation document: {field}: not hex: {e}")))
}

/// Parses hex, with or without `0x`, for nonces and digests given by users.
pub fn parse_hex_arg(flag: &str, s: &str) -> Result<Vec<u8>> {
    let t = s.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    hex::decode(t).map_err(|e| Error::usage(format!("{flag} \"{s}\" is not hex: {e}")))
}

/// Reads a public key: PEM or DER SubjectPublicKeyInfo; returns the DER.
pub fn read_public_key(bytes: &[u8], origin: &str) -> Result<Vec<u8>> {
    let key = if bytes.starts_with(b"-----") || bytes.windows(5).any(|w| w == b"-----") {
        PKey::public_key_from_pem(bytes)
    } else {
        PKey::public_key_from_der(bytes)
    }
    .map_err(|e| {
        Error::bad_input(format!(
            "{origin}: not a public key (PEM or DER SubjectPublicKeyInfo): {}",
            openssl_reason(&e)
        ))
    })?;
    key.public_key_to_der()
        .map_err(|e| Error::crypto("encoding the public key", e))
}

/// Checks that `public_area` is a restricted ECDSA P-256 signing key, fixed
/// to its TPM, whose point is the one in `spki_der`; returns its TPM name.
/// The layout is the `TPMT_PUBLIC` of imgseal's AK template (TPM 2.0 Part 2,
/// 12.2.4): anything else is refused.
pub(crate) fn check_ak_public_area(
    public_area: &[u8],
    spki_der: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    const TPM_ALG_ECC: u16 = 0x0023;
    const TPM_ALG_SHA256: u16 = 0x000B;
    const TPM_ALG_NULL: u16 = 0x0010;
    const TPM_ALG_ECDSA: u16 = 0x0018;
    const TPM_ECC_NIST_P256: u16 = 0x0003;
    const FIXED_TPM: u32 = 1 << 1;
    const FIXED_PARENT: u32 = 1 << 4;
    const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    const ADMIN_WITH_POLICY: u32 = 1 << 7;
    const RESTRICTED: u32 = 1 << 16;
    const DECRYPT: u32 = 1 << 17;
    const SIGN: u32 = 1 << 18;
    let mut at = 0usize;
    let mut take = |n: usize| -> std::result::Result<&[u8], String> {
        let s = public_area
            .get(at..at + n)
            .ok_or_else(|| "the AK's public area is truncated".to_string())?;
        at += n;
        Ok(s)
    };
    let u16_at = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    if u16_at(take(2)?) != TPM_ALG_ECC || u16_at(take(2)?) != TPM_ALG_SHA256 {
        return Err("the AK is not an ECC key with a SHA-256 name".into());
    }
    let attrs = u32::from_be_bytes(take(4)?.try_into().expect("4 bytes"));
    let need = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | RESTRICTED | SIGN;
    if attrs & need != need || attrs & DECRYPT != 0 {
        return Err(format!(
            "the AK's attributes {attrs:#010x} are not those of a restricted, fixedTPM signing key"
        ));
    }
    // ActivateCredential needs the AK's ADMIN role. With adminWithPolicy clear
    // and no policy, that takes the key's authValue, which a public area
    // loaded on its own (TPM2_LoadExternal, any attributes) does not have: so
    // a key held outside the TPM cannot pose as this AK. A policy could be
    // satisfied for such a public-only object.
    if attrs & ADMIN_WITH_POLICY != 0 {
        return Err(
            "the AK's admin role is held by a policy (adminWithPolicy): imgseal's AK has none"
                .into(),
        );
    }
    let policy_len = u16_at(take(2)?) as usize;
    if policy_len != 0 {
        return Err("the AK has an authorization policy: imgseal's AK has none".into());
    }
    // symmetric NULL, scheme ECDSA(SHA-256), curve P-256, kdf NULL
    let params = [take(2)?, take(2)?, take(2)?, take(2)?, take(2)?].map(u16_at);
    if params
        != [
            TPM_ALG_NULL,
            TPM_ALG_ECDSA,
            TPM_ALG_SHA256,
            TPM_ECC_NIST_P256,
            TPM_ALG_NULL,
        ]
    {
        return Err("the AK is not an ECDSA P-256 / SHA-256 key".into());
    }
    let x_len = u16_at(take(2)?) as usize;
    let x = take(x_len)?.to_vec();
    let y_len = u16_at(take(2)?) as usize;
    let y = take(y_len)?.to_vec();
    if at != public_area.len() {
        return Err("bytes after the AK's public area".into());
    }
    let spki = imgseal_tpm::p256_spki(&x, &y).map_err(|e| e.to_string())?;
    let theirs = PKey::public_key_from_der(spki_der).map_err(|e| openssl_reason(&e))?;
    let ours = PKey::public_key_from_der(&spki).map_err(|e| openssl_reason(&e))?;
    if !ours.public_eq(&theirs) {
        return Err("the AK's public area holds another key than the AK public key".into());
    }
    let mut name = vec![0x00, 0x0B];
    name.extend_from_slice(&Sha256::digest(public_area));
    Ok(name)
}

/// A certification that verified: the parsed attestation, the certified
/// bytes, whether the index was write-locked, and which hierarchy created it.
type Certified = (NvAttestation, Vec<u8>, bool, IndexCreator);

/// What a verifier demands beyond a valid certification of the expected set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requirements {
    /// The indices were write-locked when certified (`--require-locked`).
    pub locked: bool,
    /// The indices are platform-created (`--require-delete-protection`).
    pub delete_protected: bool,
}

/// Verifies a document offline. Malformed documents are errors; checks that
/// fail give an invalid verdict with the first reason.
pub fn verify(
    doc: &AttestationDoc,
    nonce: &[u8],
    expected: &Expected,
    pinned_ak_spki: Option<&[u8]>,
    require: Requirements,
) -> Result<AttestVerdict> {
    // An empty nonce would accept a certification made at any time.
    check_nonce(nonce)?;
    if doc.format != ATTESTATION_FORMAT || doc.version != DOCUMENT_VERSION {
        return Err(Error::bad_input(format!(
            "not an imgseal attestation document (format \"{}\" version {}; expected \"{ATTESTATION_FORMAT}\" version {DOCUMENT_VERSION})",
            doc.format, doc.version
        )));
    }
    let doc_spki = read_public_key(doc.ak.public_key_pem.as_bytes(), "the document's AK")?;
    let spki = pinned_ak_spki.map(<[u8]>::to_vec).unwrap_or(doc_spki);
    let mut v = AttestVerdict {
        valid: false,
        reason: None,
        ak_pinned: pinned_ak_spki.is_some(),
        ak_fingerprint: Some(hx(&Sha256::digest(&spki))),
        version: None,
        digest: None,
        certificates: None,
        counter: None,
        counter_state: None,
        record_locked: None,
        counter_locked: None,
        delete_protected: None,
        clock: None,
        reset_count: None,
        restart_count: None,
    };
    let fail = |mut v: AttestVerdict, reason: String| {
        v.reason = Some(reason);
        Ok(v)
    };

    // Each certification: signature with the AK, nonce, index name, contents.
    // Ok(Err(reason)) is a check that failed; Err a malformed document.
    let check = |what: &str,
                 c: &CertifiedIndex,
                 index: u32,
                 size: usize|
     -> Result<std::result::Result<Certified, String>> {
        let attest = unhex(&format!("{what}.attest"), &c.attest)?;
        let signature = unhex(&format!("{what}.signature"), &c.signature)?;
        let parsed = match verify_nv_certification(&spki, &attest, &signature, nonce) {
            Ok(p) => p,
            Err(e) => return Ok(Err(format!("the {what} certification: {e}"))),
        };
        // The name covers the attributes: whether the index was locked and
        // which hierarchy created it are read off it.
        let shapes = [IndexCreator::Owner, IndexCreator::Platform]
            .into_iter()
            .flat_map(|creator| [(false, creator), (true, creator)]);
        let Some((locked, creator)) = shapes.into_iter().find(|&(locked, creator)| {
            expected_public(index, locked, creator).map(|s| s.name())
                == Some(parsed.index_name.clone())
        }) else {
            return Ok(Err(format!(
                "the certified index is not imgseal's {what} at {index:#010x} with the documented attributes (its name differs)"
            )));
        };
        let data = match &parsed.certified {
            NvCertified::Contents { offset: 0, data } if data.len() == size => data.clone(),
            _ => {
                return Ok(Err(format!(
                    "the {what} certification does not cover all {size} bytes"
                )));
            }
        };
        if unhex(&format!("{what}.contents"), &c.contents)? != data {
            return Ok(Err(format!(
                "the document's {what} is not the one the TPM certified"
            )));
        }
        Ok(Ok((parsed, data, locked, creator)))
    };

    let (rec_att, rec_bytes, rec_locked, rec_creator) =
        match check("record", &doc.record, RECORD_INDEX, RECORD_SIZE as usize)? {
            Ok(x) => x,
            Err(why) => return fail(v, why),
        };
    let (ctr_att, ctr_bytes, ctr_locked, ctr_creator) =
        match check("counter", &doc.counter, COUNTER_INDEX, 8)? {
            Ok(x) => x,
            Err(why) => return fail(v, why),
        };
    // The signer is a restricted key (it signs only what the TPM made) of
    // the endorsement hierarchy, and the public area shows it.
    let public_area = unhex("ak.public_area", &doc.ak.public_area)?;
    let ak_name = match check_ak_public_area(&public_area, &spki) {
        Ok(n) => n,
        Err(why) => return fail(v, why),
    };
    let qualified = endorsement_primary_qualified_name(&ak_name);
    if rec_att.qualified_signer != qualified || ctr_att.qualified_signer != qualified {
        return fail(
            v,
            "the TPM names another signing key than the AK's public area (qualified signer differs)".into(),
        );
    }
    v.record_locked = Some(rec_locked);
    v.counter_locked = Some(ctr_locked);
    v.delete_protected = Some(rec_creator == IndexCreator::Platform);
    if rec_creator != ctr_creator {
        // imgseal defines the three together, by one hierarchy.
        return fail(
            v,
            format!(
                "{}: the record is {rec_creator}-created but the counter {ctr_creator}-created: an anchor index was deleted and defined again",
                crate::anchors::MISMATCH
            ),
        );
    }
    v.clock = Some(rec_att.clock);
    v.reset_count = Some(rec_att.reset_count);
    v.restart_count = Some(rec_att.restart_count);
    if (rec_att.reset_count, rec_att.restart_count) != (ctr_att.reset_count, ctr_att.restart_count)
    {
        return fail(
            v,
            "the record and the counter were certified in different TPM power cycles".into(),
        );
    }
    let record = match Record::decode(&rec_bytes) {
        Ok(r) => r,
        Err(e) => return fail(v, e.to_string()),
    };
    let counter = u64::from_be_bytes(ctr_bytes.as_slice().try_into().expect("8 bytes"));
    let state = CounterState::of(record.version, counter);
    v.version = Some(record.version);
    v.digest = Some(hx(&record.digest));
    v.certificates = Some(record.count);
    v.counter = Some(counter);
    v.counter_state = Some(state);
    if !state.is_acceptable() {
        return fail(
            v,
            format!(
                "{}: the certified record holds version {} and the certified counter is {counter}",
                crate::anchors::MISMATCH,
                record.version
            ),
        );
    }
    match expected {
        Expected::Digest(d) => {
            if record.digest != *d {
                return fail(
                    v,
                    format!(
                        "the TPM's anchors have digest {}, not the expected {}",
                        hx(&record.digest),
                        hx(d)
                    ),
                );
            }
        }
        Expected::Bundle(bytes) => {
            let bundle = Bundle::decode(bytes, "the expected bundle")?;
            if !record.names(bytes) || bundle.version != record.version {
                return fail(
                    v,
                    format!(
                        "the TPM's anchors are version {} (sha256 {}), not the expected bundle's version {} (sha256 {})",
                        record.version,
                        hx(&record.digest),
                        bundle.version,
                        hx(&Bundle::digest(bytes))
                    ),
                );
            }
        }
    }
    if require.locked && !(rec_locked && ctr_locked) {
        return fail(v, "the anchors were not write-locked when certified".into());
    }
    if require.delete_protected && rec_creator != IndexCreator::Platform {
        return fail(
            v,
            "the anchor indices are owner-created: the TPM owner can delete and replace them (--require-delete-protection)".into(),
        );
    }
    v.valid = true;
    Ok(v)
}

// ---- enrollment ---------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EkInfo {
    /// `rsa2048` or `ecc-p256`.
    pub kind: String,
    pub certificate_pem: String,
    pub certificate_subject: String,
    pub certificate_issuer: String,
    pub public_key_pem: String,
    /// The EK's `TPMT_PUBLIC` (hex): what a remote verifier's
    /// MakeCredential (`tpm2_makecredential -u`, as TPM2B_PUBLIC) needs.
    pub public_area: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActivationInfo {
    /// SHA-256 of the random secret protected by MakeCredential and released
    /// by ActivateCredential (hex); the secret itself is not kept.
    pub secret_sha256: String,
    pub activated: bool,
    /// Whether the EK certificate chained to the CA given with `--ek-ca`.
    pub ek_certificate_verified: Option<bool>,
    /// Whether a verifier confirmed the activation itself, with a secret only
    /// it knew (`attest challenge` / `activate` / `confirm`), rather than the
    /// host reporting its own round trip.
    #[serde(default)]
    pub verifier_confirmed: bool,
}

/// The enrollment document (`imgseal attest enroll --out`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollmentDoc {
    pub format: String,
    pub version: u32,
    pub ek: EkInfo,
    pub ak: AkInfo,
    pub activation: ActivationInfo,
    pub tpm: TpmSummary,
}

fn pem_of_key(key: &PKey<Public>) -> Result<String> {
    Ok(String::from_utf8_lossy(
        &key.public_key_to_pem()
            .map_err(|e| Error::crypto("encoding a public key", e))?,
    )
    .into_owned())
}

/// Shows that the AK and the EK are in the same TPM: the EK certificate
/// holds this TPM's EK (and chains to `ek_ca` when given), then a credential
/// made for the EK and the AK's name is activated by this TPM. MakeCredential
/// uses only public values and runs in software (`crate::credential`), as a
/// remote verifier runs it on its side.
pub fn enroll(tpm: &mut Tpm, ek_ca: Option<&[X509]>) -> Result<EnrollmentDoc> {
    let mut found = None;
    for kind in [EkKind::Rsa2048, EkKind::EccP256] {
        if let Some(der) = tpm
            .ek_certificate(kind)
            .map_err(Error::tpm("reading the EK certificate"))?
        {
            found = Some((kind, der));
            break;
        }
    }
    let (kind, cert_der) = found.ok_or_else(|| {
        Error::not_found(
            "the TPM holds no EK certificate (NV 0x01c00002 or 0x01c0000a): it was not provisioned with one (for swtpm: swtpm_setup --create-ek-cert)",
        )
    })?;
    let cert = X509::from_der(&cert_der).map_err(|e| {
        Error::bad_input(format!(
            "the TPM's EK certificate is not DER X.509: {}",
            openssl_reason(&e)
        ))
    })?;
    let ek = tpm
        .ek_public(kind)
        .map_err(Error::tpm("recreating the EK (TPM2_CreatePrimary)"))?;
    let ek_spki = ek
        .spki_der()
        .map_err(Error::tpm("reading the EK's public key"))?;
    let verified = check_ek_certificate(&cert, &ek_spki, ek_ca)?
        .map_err(|reason| Error::invalid(format!("the EK certificate {reason}")))?;
    let ek_key = PKey::public_key_from_der(&ek_spki)
        .map_err(|e| Error::crypto("reading the EK's public key", e))?;

    let (ak, ak_info) = ak_info(tpm)?;
    let mut secret = zeroize::Zeroizing::new(vec![0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let ek_public = ek
        .public_bytes()
        .map_err(Error::tpm("reading the EK's public area"))?;
    // In software, as a remote verifier makes it (`attest challenge`): each
    // enrollment also shows that this TPM activates what a verifier sends.
    let credential = crate::credential::make_credential(&ek_public, ak.name(), &secret)?;
    let released = tpm
        .activate_credential(&ak, kind, &credential)
        .map_err(Error::tpm(
            "TPM2_ActivateCredential (the AK and the EK must be in this TPM)",
        ))?;
    if released.as_slice() != secret.as_slice() {
        return Err(Error::invalid(
            "ActivateCredential released another secret: the AK and the EK are not in the same TPM",
        ));
    }
    let name = |n: &openssl::x509::X509NameRef| crate::x509::name_to_string(n);
    Ok(EnrollmentDoc {
        format: ENROLLMENT_FORMAT.into(),
        version: DOCUMENT_VERSION,
        ek: EkInfo {
            kind: match kind {
                EkKind::Rsa2048 => "rsa2048".into(),
                EkKind::EccP256 => "ecc-p256".into(),
            },
            certificate_pem: String::from_utf8_lossy(
                &cert
                    .to_pem()
                    .map_err(|e| Error::crypto("encoding the EK certificate", e))?,
            )
            .into_owned(),
            certificate_subject: name(cert.subject_name()),
            certificate_issuer: name(cert.issuer_name()),
            public_key_pem: pem_of_key(&ek_key)?,
            public_area: hx(&ek_public),
            name: hx(ek.name()),
        },
        ak: ak_info,
        activation: ActivationInfo {
            secret_sha256: hx(&Sha256::digest(secret.as_slice())),
            activated: true,
            ek_certificate_verified: verified,
            verifier_confirmed: false,
        },
        tpm: tpm_summary(tpm)?,
    })
}

/// Checks that the EK certificate holds the EK's key (`ek_spki`, DER) and,
/// when `ek_ca` is given, chains to it. `Ok(None)`: no CA was given;
/// `Err(reason)`: what does not hold, to follow "the EK certificate".
pub(crate) fn check_ek_certificate(
    cert: &X509,
    ek_spki: &[u8],
    ek_ca: Option<&[X509]>,
) -> Result<std::result::Result<Option<bool>, String>> {
    let ek_key = PKey::public_key_from_der(ek_spki)
        .map_err(|e| Error::crypto("reading the EK's public key", e))?;
    let cert_key = cert
        .public_key()
        .map_err(|e| Error::crypto("reading the EK certificate's key", e))?;
    if !ek_key.public_eq(&cert_key) {
        return Ok(Err("certifies another key than the EK".into()));
    }
    match ek_ca {
        None => Ok(Ok(None)),
        Some(cas) if chains_to(cert, cas)? => Ok(Ok(Some(true))),
        Some(_) => Ok(Err("does not chain to the CA given with --ek-ca".into())),
    }
}

/// Whether `cert` chains to one of `cas` (OpenSSL path validation; the other
/// CA certificates may serve as intermediates).
pub(crate) fn chains_to(cert: &X509, cas: &[X509]) -> Result<bool> {
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509StoreContext, verify::X509VerifyFlags};
    let mut store = X509StoreBuilder::new().map_err(|e| Error::crypto("X509 store", e))?;
    for ca in cas {
        store
            .add_cert(ca.clone())
            .map_err(|e| Error::crypto("X509 store", e))?;
    }
    // The local CA's root and its intermediate are both given: accept a chain
    // that ends at either.
    store
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(|e| Error::crypto("X509 store", e))?;
    let store = store.build();
    let chain = Stack::new().map_err(|e| Error::crypto("X509 stack", e))?;
    let mut ctx = X509StoreContext::new().map_err(|e| Error::crypto("X509 context", e))?;
    ctx.init(&store, cert, &chain, |c| c.verify_cert())
        .map_err(|e| Error::crypto("verifying the EK certificate", e))
}

/// The AK's PEM from a file holding either a public key or an enrollment document.
pub fn pinned_ak(bytes: &[u8], origin: &str) -> Result<Vec<u8>> {
    if bytes.trim_ascii_start().starts_with(b"{") {
        let doc: EnrollmentDoc = serde_json::from_slice(bytes)
            .map_err(|e| Error::bad_input(format!("{origin}: not an enrollment document: {e}")))?;
        if doc.format != ENROLLMENT_FORMAT {
            return Err(Error::bad_input(format!(
                "{origin}: format \"{}\" is not \"{ENROLLMENT_FORMAT}\"",
                doc.format
            )));
        }
        return read_public_key(doc.ak.public_key_pem.as_bytes(), origin);
    }
    read_public_key(bytes, origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `TPMT_PUBLIC` laid out as imgseal's AK template, for `key`.
    fn ak_area(key: &PKey<openssl::pkey::Private>, attrs: u32, policy: &[u8]) -> Vec<u8> {
        let ec = key.ec_key().unwrap();
        let mut ctx = openssl::bn::BigNumContext::new().unwrap();
        let (mut x, mut y) = (
            openssl::bn::BigNum::new().unwrap(),
            openssl::bn::BigNum::new().unwrap(),
        );
        ec.public_key()
            .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
            .unwrap();
        let mut p = Vec::new();
        p.extend_from_slice(&0x0023u16.to_be_bytes());
        p.extend_from_slice(&0x000Bu16.to_be_bytes());
        p.extend_from_slice(&attrs.to_be_bytes());
        p.extend_from_slice(&(policy.len() as u16).to_be_bytes());
        p.extend_from_slice(policy);
        for v in [0x0010u16, 0x0018, 0x000B, 0x0003, 0x0010] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        for c in [x.to_vec_padded(32).unwrap(), y.to_vec_padded(32).unwrap()] {
            p.extend_from_slice(&(c.len() as u16).to_be_bytes());
            p.extend_from_slice(&c);
        }
        p
    }

    #[test]
    fn only_imgseals_ak_shape_is_accepted() {
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
        let other = PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
        let spki = key.public_key_to_der().unwrap();
        // fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA,
        // restricted, sign: the template's attributes.
        let template =
            (1 << 1) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 10) | (1 << 16) | (1 << 18);
        let good = ak_area(&key, template, &[]);
        let name = check_ak_public_area(&good, &spki).unwrap();
        assert_eq!(name[..2], [0x00, 0x0B]);
        assert_eq!(name[2..], Sha256::digest(&good)[..]);

        let refused = |area: Vec<u8>, why: &str| {
            let err = check_ak_public_area(&area, &spki).unwrap_err();
            assert!(err.contains(why), "{err}");
        };
        // A public area anyone can load with TPM2_LoadExternal and then
        // satisfy a policy for: refused however the other bits look.
        refused(ak_area(&key, template | (1 << 7), &[]), "adminWithPolicy");
        refused(ak_area(&key, template, &[0xAA; 32]), "authorization policy");
        refused(ak_area(&key, template & !(1 << 1), &[]), "fixedTPM");
        refused(ak_area(&key, template & !(1 << 16), &[]), "restricted");
        refused(
            ak_area(&key, template | (1 << 17), &[]),
            "restricted, fixedTPM signing key",
        );
        refused(ak_area(&other, template, &[]), "another key");
        let mut long = good.clone();
        long.push(0);
        refused(long, "bytes after");
    }
}
