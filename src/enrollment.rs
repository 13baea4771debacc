//! Remote enrollment: a verifier confirms for itself that a host's AK lives
//! in the TPM its EK certificate names, instead of trusting the host's own
//! report of its credential round trip (`attestation::enroll`).
//!
//! 1. The host writes an enrollment document (`attest enroll`).
//! 2. [`challenge`], on the verifier: checks the document without trusting
//!    it (EK certificate ↔ EK public area, the chain to the manufacturer CA,
//!    the AK's public area and name) and makes a credential in software
//!    (TPM2_MakeCredential uses only public values: `crate::credential`) for
//!    a random secret bound to (EK, AK name). The challenge goes to the host; the secret stays.
//! 3. [`activate`], on the host: TPM2_ActivateCredential with the AK and the
//!    EK. Only the TPM holding that EK *and* an object with that AK name can
//!    release the secret.
//! 4. [`confirm`], on the verifier: the released secret must be its own (in
//!    constant time), and the enrollment document the one it challenged. The
//!    result is an enrollment document marked `verifier_confirmed`, for
//!    `attest verify --ak`.
//!
//! docs/anchors.md ("Remote enrollment") describes the documents.

use openssl::x509::X509;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use imgseal_tpm::{AK_HANDLE, Credential, EkKind, Tpm, ek_spki_from_public_area};

use crate::attestation::{
    ENROLLMENT_FORMAT, EnrollmentDoc, check_ak_public_area, check_ek_certificate, hx,
    read_public_key,
};
use crate::error::{Error, Result, openssl_reason};

pub const CHALLENGE_FORMAT: &str = "imgseal-ak-challenge";
pub const CHALLENGE_SECRET_FORMAT: &str = "imgseal-ak-challenge-secret";
pub const RESPONSE_FORMAT: &str = "imgseal-ak-response";
pub const VERSION: u32 = 1;

/// What the verifier sends the host: a credential only the enrolled TPM opens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeDoc {
    pub format: String,
    pub version: u32,
    /// `rsa2048` or `ecc-p256`: which EK the host activates with.
    pub ek_kind: String,
    /// The AK name the credential is bound to (hex).
    pub ak_name: String,
    /// `TPM2B_ID_OBJECT` contents (hex).
    pub id_object: String,
    /// `TPM2B_ENCRYPTED_SECRET` contents (hex).
    pub encrypted_secret: String,
}

/// What the verifier keeps: the secret, and which enrollment it challenged.
/// Not `Debug`: the secret must not reach a log.
#[derive(Clone, Serialize, Deserialize, zeroize::ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct ChallengeSecret {
    pub format: String,
    pub version: u32,
    /// The 32-byte secret (hex). Whoever holds it can forge a response.
    pub secret: String,
    /// SHA-256 of the enrollment document's bytes (hex).
    pub enrollment_sha256: String,
    pub ak_name: String,
    /// Whether the EK certificate chained to the CA given with `--ek-ca`.
    pub ek_certificate_verified: Option<bool>,
}

/// What the host returns: the secret its TPM released. Not `Debug`.
#[derive(Clone, Serialize, Deserialize, zeroize::ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct ResponseDoc {
    pub format: String,
    pub version: u32,
    pub ak_name: String,
    /// The released secret (hex).
    pub secret: String,
}

fn parse_doc<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    origin: &str,
    what: &str,
    format: &str,
    format_of: impl Fn(&T) -> (&str, u32),
) -> Result<T> {
    let doc: T = serde_json::from_slice(bytes)
        .map_err(|e| Error::bad_input(format!("{origin}: not {what}: {e}")))?;
    let (found, version) = format_of(&doc);
    if found != format {
        return Err(Error::bad_input(format!(
            "{origin}: format \"{found}\" is not \"{format}\""
        )));
    }
    if version != VERSION {
        return Err(Error::bad_input(format!(
            "{origin}: {what} version {version}; this imgseal reads version {VERSION}"
        )));
    }
    Ok(doc)
}

fn unhex(origin: &str, field: &str, s: &str) -> Result<Vec<u8>> {
    hex::decode(s).map_err(|e| Error::bad_input(format!("{origin}: {field}: not hex: {e}")))
}

pub fn parse_enrollment(bytes: &[u8], origin: &str) -> Result<EnrollmentDoc> {
    parse_doc(
        bytes,
        origin,
        "an enrollment document",
        ENROLLMENT_FORMAT,
        |d: &EnrollmentDoc| (&d.format, d.version),
    )
}

pub fn parse_challenge(bytes: &[u8], origin: &str) -> Result<ChallengeDoc> {
    parse_doc(
        bytes,
        origin,
        "a challenge",
        CHALLENGE_FORMAT,
        |d: &ChallengeDoc| (&d.format, d.version),
    )
}

pub fn parse_secret(bytes: &[u8], origin: &str) -> Result<ChallengeSecret> {
    parse_doc(
        bytes,
        origin,
        "a challenge secret",
        CHALLENGE_SECRET_FORMAT,
        |d: &ChallengeSecret| (&d.format, d.version),
    )
}

pub fn parse_response(bytes: &[u8], origin: &str) -> Result<ResponseDoc> {
    parse_doc(
        bytes,
        origin,
        "a response",
        RESPONSE_FORMAT,
        |d: &ResponseDoc| (&d.format, d.version),
    )
}

fn ek_kind(name: &str, origin: &str) -> Result<EkKind> {
    match name {
        "rsa2048" => Ok(EkKind::Rsa2048),
        "ecc-p256" => Ok(EkKind::EccP256),
        other => Err(Error::bad_input(format!(
            "{origin}: EK kind \"{other}\" is not rsa2048 or ecc-p256"
        ))),
    }
}

/// What the verifier established from an enrollment document's bytes, with
/// every descriptive field recomputed from the certificate and the public
/// areas rather than taken from the host.
struct Examined {
    doc: EnrollmentDoc,
    ek_area: Vec<u8>,
    ak_name: Vec<u8>,
}

/// Checks an enrollment document without trusting it: the EK certificate
/// must hold the EK public area's key and chain to `ek_ca`, and the AK's
/// public area must be imgseal's AK (restricted, fixedTPM, fixedParent,
/// ECDSA P-256, no policy) holding the AK public key. The names, subject,
/// issuer and key PEMs in the result are recomputed here.
fn examine(enrollment: &[u8], origin: &str, ek_ca: Option<&[X509]>) -> Result<Examined> {
    let mut doc = parse_enrollment(enrollment, origin)?;
    ek_kind(&doc.ek.kind, origin)?;
    let cert = X509::from_pem(doc.ek.certificate_pem.as_bytes()).map_err(|e| {
        Error::bad_input(format!(
            "{origin}: ek.certificate_pem: {}",
            openssl_reason(&e)
        ))
    })?;
    let ek_area = unhex(origin, "ek.public_area", &doc.ek.public_area)?;
    let ek_spki = ek_spki_from_public_area(&ek_area)
        .map_err(|e| Error::bad_input(format!("{origin}: ek.public_area: {e}")))?;
    let verified = check_ek_certificate(&cert, &ek_spki, ek_ca)?
        .map_err(|reason| Error::invalid(format!("{origin}: the EK certificate {reason}")))?;
    let ak_spki = read_public_key(doc.ak.public_key_pem.as_bytes(), origin)?;
    let ak_area = unhex(origin, "ak.public_area", &doc.ak.public_area)?;
    let ak_name = check_ak_public_area(&ak_area, &ak_spki)
        .map_err(|reason| Error::invalid(format!("{origin}: {reason}")))?;

    let name = |n: &openssl::x509::X509NameRef| crate::x509::name_to_string(n);
    let pem = |der: &[u8], what: &str| -> Result<String> {
        let key = openssl::pkey::PKey::public_key_from_der(der)
            .map_err(|e| Error::crypto(&format!("reading {what}"), e))?;
        let pem = key
            .public_key_to_pem()
            .map_err(|e| Error::crypto(&format!("encoding {what}"), e))?;
        Ok(String::from_utf8_lossy(&pem).into_owned())
    };
    doc.ek.certificate_subject = name(cert.subject_name());
    doc.ek.certificate_issuer = name(cert.issuer_name());
    doc.ek.public_key_pem = pem(&ek_spki, "the EK's public key")?;
    doc.ek.name = hx(&tpm_name(&ek_area));
    doc.ak.public_key_pem = pem(&ak_spki, "the AK's public key")?;
    doc.ak.name = hx(&ak_name);
    doc.activation.ek_certificate_verified = verified;
    Ok(Examined {
        doc,
        ek_area,
        ak_name,
    })
}

/// A TPM object's name for a SHA-256 name algorithm (both imgseal's AK and
/// the TCG default EK templates use it): `000b || SHA-256(TPMT_PUBLIC)`.
fn tpm_name(public_area: &[u8]) -> Vec<u8> {
    let mut name = vec![0x00, 0x0B];
    name.extend_from_slice(&Sha256::digest(public_area));
    name
}

/// The verifier's first step. `enrollment` is the document's bytes as
/// received, checked by [`examine`]; `ek_ca` is required: without the
/// manufacturer's CA, an "EK" could be a key in software, and so could the
/// AK that a software ActivateCredential vouches for. MakeCredential uses
/// only public values and runs in software (`crate::credential`): the
/// verifier needs no TPM.
pub fn challenge(
    enrollment: &[u8],
    origin: &str,
    ek_ca: &[X509],
) -> Result<(ChallengeDoc, ChallengeSecret)> {
    if ek_ca.is_empty() {
        return Err(Error::usage(
            "attest challenge needs --ek-ca: without the TPM manufacturer's CA, nothing shows the EK is in a TPM",
        ));
    }
    let examined = examine(enrollment, origin, Some(ek_ca))?;
    let mut secret = Zeroizing::new(vec![0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let credential =
        crate::credential::make_credential(&examined.ek_area, &examined.ak_name, &secret)?;
    Ok((
        ChallengeDoc {
            format: CHALLENGE_FORMAT.into(),
            version: VERSION,
            ek_kind: examined.doc.ek.kind.clone(),
            ak_name: hx(&examined.ak_name),
            id_object: hx(&credential.id_object),
            encrypted_secret: hx(&credential.encrypted_secret),
        },
        ChallengeSecret {
            format: CHALLENGE_SECRET_FORMAT.into(),
            version: VERSION,
            secret: hx(&secret),
            enrollment_sha256: hx(&Sha256::digest(enrollment)),
            ak_name: hx(&examined.ak_name),
            ek_certificate_verified: examined.doc.activation.ek_certificate_verified,
        },
    ))
}

/// The host's step: its TPM releases the secret if, and only if, the
/// challenge was made for its EK and its AK. Also returns the AK's
/// SubjectPublicKeyInfo (DER), by which users know the AK.
pub fn activate(
    tpm: &mut Tpm,
    challenge: &ChallengeDoc,
    origin: &str,
) -> Result<(ResponseDoc, Vec<u8>)> {
    let kind = ek_kind(&challenge.ek_kind, origin)?;
    let credential = Credential {
        id_object: unhex(origin, "id_object", &challenge.id_object)?,
        encrypted_secret: unhex(origin, "encrypted_secret", &challenge.encrypted_secret)?,
    };
    let ak = tpm.ak_load(AK_HANDLE).map_err(Error::tpm(format!(
        "loading the attestation key at {AK_HANDLE:#010x} (run `imgseal attest enroll` first)"
    )))?;
    if hx(ak.name()) != challenge.ak_name.to_ascii_lowercase() {
        return Err(Error::invalid(format!(
            "{origin}: the challenge is for AK {}, but this TPM's AK is {}: it was made for another enrollment",
            challenge.ak_name,
            hx(ak.name())
        )));
    }
    let released = tpm
        .activate_credential(&ak, kind, &credential)
        .map_err(Error::tpm(
            "TPM2_ActivateCredential (the challenge must be made for this TPM's EK and AK)",
        ))?;
    Ok((
        ResponseDoc {
            format: RESPONSE_FORMAT.into(),
            version: VERSION,
            ak_name: hx(ak.name()),
            secret: hx(&released),
        },
        ak.spki_der().to_vec(),
    ))
}

/// The verifier's last step: `Ok(Err(reason))` when the response does not
/// prove the activation; `Ok(Ok(doc))` is the confirmed enrollment, its
/// descriptive fields recomputed as [`examine`] does (the document is the one
/// examined when the challenge was made: its SHA-256 is in the kept secret).
pub fn confirm(
    enrollment: &[u8],
    enrollment_origin: &str,
    secret: &ChallengeSecret,
    response: &ResponseDoc,
) -> Result<std::result::Result<EnrollmentDoc, String>> {
    if hx(&Sha256::digest(enrollment)) != secret.enrollment_sha256 {
        // Parsed anyway, so that a file that is no enrollment says so.
        parse_enrollment(enrollment, enrollment_origin)?;
        return Ok(Err(format!(
            "{enrollment_origin} is not the enrollment document this challenge was made for"
        )));
    }
    let expected = Zeroizing::new(unhex("the challenge secret", "secret", &secret.secret)?);
    let released = Zeroizing::new(unhex("the response", "secret", &response.secret)?);
    if released.len() != expected.len() || !openssl::memcmp::eq(&released, &expected) {
        return Ok(Err(
            "the response does not hold the challenge's secret: the host's TPM did not release it (another TPM, another AK, or another challenge)"
                .into(),
        ));
    }
    // The EK chain was checked against --ek-ca when the challenge was made,
    // for these very bytes.
    let mut doc = examine(enrollment, enrollment_origin, None)?.doc;
    doc.activation.secret_sha256 = hx(&Sha256::digest(expected.as_slice()));
    doc.activation.activated = true;
    doc.activation.ek_certificate_verified = secret.ek_certificate_verified;
    doc.activation.verifier_confirmed = secret.ek_certificate_verified == Some(true);
    Ok(Ok(doc))
}
