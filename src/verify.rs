//! Verifying an image as Glance does on upload and Nova on boot: the
//! properties, the signing certificate, optionally the certificate's chain to
//! trusted certificates, then the signature over the image bytes.
//!
//! Under `--policy strict` the properties are read strictly (canonical base64,
//! the declared curve must be the key's curve); under `--policy nova` exactly
//! as cursive reads them, with cursive's messages.

use openssl::x509::X509Crl;
use serde::Serialize;

use crate::algorithms::{GlanceKeyType, HashMethod};
use crate::backend::{SigningDevice, StoredCertificate};
use crate::config::TrustSettings;
use crate::cursive_compat;
use crate::digest::{ImageDigest, ImageSource, digest_image};
use crate::error::{Error, Result};
use crate::glance::RawProperties;
use crate::public_key::{KeyClass, PublicKey};
use crate::signature::{SignatureScheme, pss_salt_below};
use crate::validate::{
    ChainVerdict, PolicyName, StrictOptions, TrustedCertificate, ValidationInput,
};
use crate::x509::Certificate;

/// Looks certificates up by id.
pub type CertFinder<'a> = &'a dyn Fn(&str) -> Result<Option<StoredCertificate>>;

/// What certificate validation works with.
pub struct TrustPlan<'a> {
    pub settings: TrustSettings,
    pub find: CertFinder<'a>,
    /// Untrusted certificates the strict policy may use as intermediates.
    pub intermediates: Vec<(String, Certificate)>,
    pub crls: Vec<X509Crl>,
    pub at: i64,
    pub options: StrictOptions,
    /// Verdicts already reached this run, by policy, leaf id and leaf: an
    /// audit of many images signed under one certificate validates it once.
    pub memo: std::sync::Mutex<std::collections::HashMap<ChainMemoKey, ChainVerdict>>,
}

/// A chain verdict's key in [`TrustPlan::memo`]: the policy's name, the
/// leaf's id and the leaf's DER.
pub type ChainMemoKey = (String, String, Vec<u8>);

impl TrustPlan<'_> {
    /// Validates `leaf` under `policy` against the trusted ids.
    pub fn validate(
        &self,
        policy: PolicyName,
        leaf_id: &str,
        leaf: &Certificate,
    ) -> Result<ChainVerdict> {
        let key = (format!("{policy:?}"), leaf_id.to_string(), leaf.der.clone());
        if let Some(v) = self
            .memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(v.clone());
        }
        let verdict = self.validate_uncached(policy, leaf_id, leaf)?;
        self.memo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, verdict.clone());
        Ok(verdict)
    }

    fn validate_uncached(
        &self,
        policy: PolicyName,
        leaf_id: &str,
        leaf: &Certificate,
    ) -> Result<ChainVerdict> {
        let mut trusted = Vec::new();
        for id in &self.settings.trusted_ids {
            // cursive skips ids the key manager cannot return, whatever the reason.
            let certificate = match (self.find)(id) {
                Ok(found) => found.map(|s| s.certificate),
                Err(e) if e.kind() == crate::error::ErrorKind::BadInput => None,
                Err(e) => return Err(e),
            };
            trusted.push(TrustedCertificate {
                id: id.clone(),
                certificate,
            });
        }
        let input = ValidationInput {
            leaf_id,
            leaf,
            trusted: &trusted,
            intermediates: &self.intermediates,
            crls: &self.crls,
            at: self.at,
            options: self.options,
        };
        policy.validator().validate(&input)
    }
}

/// The outcome of a verification that could be carried out.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub valid: bool,
    pub policy: &'static str,
    /// Why the image is not valid.
    pub reason: Option<String>,
    pub hash_method: Option<String>,
    pub key_type: Option<String>,
    pub certificate_id: Option<String>,
    pub certificate_subject: Option<String>,
    pub certificate_location: Option<String>,
    /// The certificate validation, when it ran.
    pub certificate_validation: Option<ChainVerdict>,
    /// Where trusted ids came from, and whether validation ran.
    pub trust: Option<TrustSettings>,
    pub image_size: Option<u64>,
    /// What the policy noted: under nova, where cursive accepts what the
    /// strict policy refuses.
    pub notes: Vec<String>,
}

impl Verdict {
    fn new(policy: PolicyName) -> Self {
        Verdict {
            valid: false,
            policy: match policy {
                PolicyName::Nova => "nova",
                PolicyName::Strict => "strict",
            },
            reason: None,
            hash_method: None,
            key_type: None,
            certificate_id: None,
            certificate_subject: None,
            certificate_location: None,
            certificate_validation: None,
            trust: None,
            image_size: None,
            notes: Vec::new(),
        }
    }

    fn invalid(mut self, reason: impl Into<String>) -> Self {
        self.valid = false;
        self.reason = Some(reason.into());
        self
    }
}

/// Checks that the certificate's key is of the declared Glance key type,
/// including the curve (cursive accepts any curve for any `ECC_*`).
pub fn check_key_type(declared: GlanceKeyType, key: &PublicKey) -> std::result::Result<(), String> {
    let ok = match (declared, key.class()) {
        (GlanceKeyType::RsaPss, KeyClass::Rsa { .. })
        | (GlanceKeyType::Dsa, KeyClass::Dsa { .. }) => true,
        (GlanceKeyType::Ecc(curve), KeyClass::Ec { curve: actual, .. }) => actual == Some(curve),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "img_signature_key_type is {declared} but the certificate's key is {}",
            key.describe()
        ))
    }
}

/// cursive's `isinstance` check: the key family only.
fn cursive_key_family_matches(declared: GlanceKeyType, key: &PublicKey) -> bool {
    matches!(
        (declared, key.class()),
        (GlanceKeyType::RsaPss, KeyClass::Rsa { .. })
            | (GlanceKeyType::Dsa, KeyClass::Dsa { .. })
            | (GlanceKeyType::Ecc(_), KeyClass::Ec { .. })
    )
}

/// How a signature that verified breaks its RSASSA-PSS key's restrictions
/// (RFC 4055 §3.1), if it does. The salt is looked for only when the hash
/// is allowed.
pub fn pss_problem(
    key: &crate::public_key::PublicKey,
    restrictions: &crate::public_key::PssRestrictions,
    hash: crate::algorithms::HashMethod,
    scheme: &SignatureScheme,
    digest: &[u8],
    signature: &[u8],
) -> Result<Option<String>> {
    Ok(match restrictions.broken_by(hash, None) {
        Some(problem) => Some(problem),
        None => restrictions.broken_by(
            hash,
            pss_salt_below(key, scheme, digest, signature, restrictions.min_salt)?,
        ),
    })
}

/// Verifies `image` against properties read from JSON text. Malformed input
/// (under the strict policy), a missing certificate or an unreadable image are
/// errors; a signature or certificate that does not hold is an invalid verdict.
/// `options` are the strict policy's knobs, which apply to the signing key
/// whether or not certificate validation runs.
#[allow(clippy::too_many_arguments)]
pub fn verify_image(
    props_text: &str,
    props_origin: &str,
    image: &ImageSource,
    policy: PolicyName,
    trust: Option<&TrustPlan<'_>>,
    find_cert: CertFinder<'_>,
    verifier: &dyn SigningDevice,
    options: StrictOptions,
) -> Result<Verdict> {
    verify_signed_data(
        props_text,
        props_origin,
        &image.display(),
        policy,
        trust,
        find_cert,
        verifier,
        options,
        &mut |hash| digest_image(image, hash),
    )
}

/// [`verify_image`] over data that `read` hashes, once the properties, the
/// key and the chain hold (as Nova, which reads no image data for an
/// untrusted certificate): an image streamed from Glance, say. `what` names
/// the data in the verdict.
#[allow(clippy::too_many_arguments)]
pub fn verify_signed_data(
    props_text: &str,
    props_origin: &str,
    what: &str,
    policy: PolicyName,
    trust: Option<&TrustPlan<'_>>,
    find_cert: CertFinder<'_>,
    verifier: &dyn SigningDevice,
    options: StrictOptions,
    read: &mut dyn FnMut(HashMethod) -> Result<ImageDigest>,
) -> Result<Verdict> {
    let raw = RawProperties::from_json(props_text, props_origin)?;
    let mut verdict = Verdict::new(policy);
    verdict.trust = trust.map(|t| t.settings.clone());

    // The properties, each policy its own way.
    let (signature, hash_method, key_type, cert_id) = match policy {
        PolicyName::Strict => {
            let sig = raw.check(props_origin)?;
            (sig.signature, sig.hash_method, sig.key_type, sig.cert_uuid)
        }
        PolicyName::Nova => match cursive_compat::check_properties(&raw) {
            Ok(sig) => (sig.signature, sig.hash_method, sig.key_type, sig.cert_uuid),
            Err(message) => return Ok(verdict.invalid(message)),
        },
    };
    verdict.hash_method = Some(hash_method.glance_name().into());
    verdict.key_type = Some(key_type.glance_name());
    verdict.certificate_id = Some(cert_id.clone());

    let stored = match (find_cert(&cert_id), policy) {
        (Ok(Some(stored)), _) => stored,
        (Ok(None), PolicyName::Strict) => {
            return Err(Error::not_found(format!(
                "certificate \"{cert_id}\" not found"
            )));
        }
        (Ok(None), PolicyName::Nova) => {
            return Ok(verdict.invalid(cursive_compat::signature_error(&format!(
                "Certificate not found with ID: {cert_id}"
            ))));
        }
        (Err(e), _) => return Err(e),
    };
    verdict.certificate_subject = Some(stored.certificate.subject());
    verdict.certificate_location = Some(stored.location.clone());
    let key = stored.certificate.public_key()?;
    // A key anyone can sign for (RSA exponent 1) or whose group is broken
    // makes every signature worthless, whatever the chain says.
    let weakness = key.weakness(options.allow_small_rsa_exponent);
    let restrictions = match policy {
        PolicyName::Strict => key.pss_restrictions()?,
        // cryptography loads the key as plain RSA and never reads them.
        PolicyName::Nova => key.pss_restrictions().ok().flatten(),
    };
    match policy {
        PolicyName::Strict => {
            if let Err(reason) = check_key_type(key_type, &key) {
                return Ok(verdict.invalid(reason));
            }
            if let Some(weakness) = weakness {
                return Ok(verdict.invalid(format!(
                    "the key of certificate \"{cert_id}\" is unsafe: {weakness}"
                )));
            }
        }
        PolicyName::Nova => {
            if let Some(crash) =
                cursive_compat::unloadable_key(&key, &format!("certificate '{cert_id}'"))
            {
                return Ok(verdict.invalid(crash));
            }
            if !cursive_key_family_matches(key_type, &key) {
                return Ok(verdict.invalid(cursive_compat::signature_error(&format!(
                    "Invalid public key type for signature key type: {key_type}"
                ))));
            }
            if signature.is_empty() {
                return Ok(verdict.invalid(cursive_compat::signature_error(
                    "Error occurred while creating the verifier",
                )));
            }
            if let Some(weakness) = weakness {
                verdict.notes.push(format!(
                    "cursive accepts the key of certificate \"{cert_id}\", which the strict policy refuses: {weakness}"
                ));
            }
        }
    }

    // Certificate validation before the image is read, as Nova does.
    if let Some(plan) = trust.filter(|t| t.settings.validate_certificate) {
        let chain = plan.validate(policy, &cert_id, &stored.certificate)?;
        let failed = !chain.valid;
        let reason = chain.reason.clone();
        verdict.certificate_validation = Some(chain);
        if failed {
            let reason = reason.unwrap_or_default();
            return Ok(verdict.invalid(match policy {
                // Nova's CertificateValidationFailed wraps cursive's message.
                PolicyName::Nova => format!("Image signature certificate validation failed for certificate: {cert_id}. {reason}"),
                PolicyName::Strict => format!("certificate \"{cert_id}\" is not trusted: {reason}"),
            }));
        }
    }

    let digest = read(hash_method)?;
    verdict.image_size = Some(digest.size);
    let scheme = SignatureScheme::for_glance(key_type, hash_method);
    if verifier.verify_digest(&key, &scheme, &digest.digest, &signature)? {
        if let Some(restrictions) = restrictions {
            let problem = pss_problem(
                &key,
                &restrictions,
                hash_method,
                &scheme,
                &digest.digest,
                &signature,
            )?;
            match (problem, policy) {
                (None, _) => {}
                (Some(problem), PolicyName::Strict) => {
                    return Ok(verdict.invalid(format!(
                        "the signature breaks the restrictions of certificate \"{cert_id}\"'s RSASSA-PSS key: {problem}"
                    )));
                }
                (Some(problem), PolicyName::Nova) => verdict.notes.push(format!(
                    "cursive ignores the restrictions of certificate \"{cert_id}\"'s RSASSA-PSS key, which the strict policy enforces: {problem}"
                )),
            }
        }
        verdict.valid = true;
        Ok(verdict)
    } else {
        let reason = match policy {
            PolicyName::Nova => "InvalidSignature: cryptography rejected the signature over the image (Nova: Image signature verification failed)".to_string(),
            PolicyName::Strict => format!(
                "the signature does not match {} ({} over {} bytes, checked with the public key of certificate \"{}\"): the image was modified, or it was signed with another key or hash",
                what,
                hash_method,
                digest.size,
                cert_id
            ),
        };
        Ok(verdict.invalid(reason))
    }
}
