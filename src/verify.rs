//! Verifying an image against its properties and signing certificate, as
//! Glance does on upload, and closing the gaps cursive leaves open (the
//! declared curve must be the key's curve; base64 must be canonical).

use serde::Serialize;

use crate::algorithms::GlanceKeyType;
use crate::backend::{SigningDevice, StoredCertificate};
use crate::digest::{ImageSource, digest_image};
use crate::error::{Error, Result};
use crate::glance::{ImageSignature, RawProperties};
use crate::public_key::{KeyClass, PublicKey};
use crate::signature::SignatureScheme;

/// The outcome of a verification that could be carried out.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub valid: bool,
    /// Why the signature is invalid.
    pub reason: Option<String>,
    pub hash_method: String,
    pub key_type: String,
    pub certificate_id: String,
    pub certificate_subject: String,
    pub certificate_location: String,
    pub image_size: Option<u64>,
}

/// Checks that the certificate's key is of the declared Glance key type,
/// including the curve (cursive accepts any curve for any `ECC_*`).
pub fn check_key_type(declared: GlanceKeyType, key: &PublicKey) -> std::result::Result<(), String> {
    let ok = match (declared, key.class()) {
        (GlanceKeyType::RsaPss, KeyClass::Rsa { .. }) => true,
        (GlanceKeyType::Dsa, KeyClass::Dsa { .. }) => true,
        (GlanceKeyType::Ecc(curve), KeyClass::Ec { curve: actual, .. }) => {
            if actual != Some(curve) {
                return Err(format!(
                    "img_signature_key_type is {declared} but the certificate's key is {}",
                    key.describe()
                ));
            }
            true
        }
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

/// Verifies `image` against properties read from JSON text. `find_cert`
/// looks the certificate up by id. Malformed input, a missing certificate or
/// an unreadable image are errors; a signature that does not hold is an
/// invalid verdict.
pub fn verify_image(
    props_text: &str,
    props_origin: &str,
    image: &ImageSource,
    find_cert: &dyn Fn(&str) -> Result<Option<StoredCertificate>>,
    verifier: &dyn SigningDevice,
) -> Result<Verdict> {
    let sig: ImageSignature =
        RawProperties::from_json(props_text, props_origin)?.check(props_origin)?;
    let stored = find_cert(&sig.cert_uuid)?
        .ok_or_else(|| Error::not_found(format!("certificate \"{}\" not found", sig.cert_uuid)))?;
    let mut verdict = Verdict {
        valid: false,
        reason: None,
        hash_method: sig.hash_method.glance_name().into(),
        key_type: sig.key_type.glance_name(),
        certificate_id: sig.cert_uuid.clone(),
        certificate_subject: stored.certificate.subject(),
        certificate_location: stored.location.clone(),
        image_size: None,
    };
    let key = stored.certificate.public_key()?;
    if let Err(reason) = check_key_type(sig.key_type, &key) {
        verdict.reason = Some(reason);
        return Ok(verdict);
    }
    let digest = digest_image(image, sig.hash_method)?;
    verdict.image_size = Some(digest.size);
    let scheme = SignatureScheme::for_glance(sig.key_type, sig.hash_method);
    if verifier.verify_digest(&key, &scheme, &digest.digest, &sig.signature)? {
        verdict.valid = true;
    } else {
        verdict.reason = Some(format!(
            "the signature does not match {} ({} over {} bytes, checked with the public key of certificate \"{}\"): the image was modified, or it was signed with another key or hash",
            image.display(),
            sig.hash_method,
            digest.size,
            sig.cert_uuid
        ));
    }
    Ok(verdict)
}
