//! Signing an image: one streaming pass for the digest, one signature in the device.

use crate::algorithms::HashMethod;
use crate::backend::{KeyHandle, SigningDevice};
use crate::digest::{ImageDigest, ImageSource, digest_image};
use crate::error::{Error, Result};
use crate::glance::{ImageSignature, check_cert_id};
use crate::signature::SignatureScheme;
use crate::x509::Certificate;

/// Checks that `cert` holds `key`'s public key, so that a signature made now
/// will verify against the certificate Glance will fetch.
pub fn check_certificate_matches(key: &KeyHandle, cert_id: &str, cert: &Certificate) -> Result<()> {
    let cert_key = cert.public_key()?;
    if !cert_key.same_key(&key.public) {
        return Err(Error::bad_input(format!(
            "certificate \"{cert_id}\" ({}) holds a different public key than {} ({} vs {})",
            cert.subject(),
            key.uri.redacted(),
            cert_key.describe(),
            key.public.describe()
        )));
    }
    Ok(())
}

/// Signs `image` with `key`. The Glance key type is read from the key.
pub fn sign_image(
    device: &dyn SigningDevice,
    key: &KeyHandle,
    cert_id: &str,
    hash: HashMethod,
    image: &ImageSource,
) -> Result<(ImageSignature, ImageDigest)> {
    check_cert_id(cert_id).map_err(|e| Error::usage(format!("--cert-id: {e}")))?;
    let key_type = key.public.glance_key_type().ok_or_else(|| {
        Error::usage(format!(
            "{} is {}, which is not a Glance key type (RSA, DSA, or EC on secp384r1, secp521r1, sect409k1/r1, sect571k1/r1)",
            key.uri.redacted(),
            key.public.describe()
        ))
    })?;
    let digest = digest_image(image, hash)?;
    let scheme = SignatureScheme::for_glance(key_type, hash);
    let signature = device.sign_digest(key, &scheme, &digest.digest)?;
    Ok((
        ImageSignature {
            signature,
            hash_method: hash,
            key_type,
            cert_uuid: cert_id.to_string(),
        },
        digest,
    ))
}
