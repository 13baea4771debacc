//! Signing an image: one streaming pass for the digest, one signature in the device.

use crate::algorithms::HashMethod;
use crate::backend::software::SoftwareVerifier;
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

/// Checks a signature the device just made, in software, with `key`'s public
/// key: the key `check_certificate_matches` found in certificate `cert_id`,
/// which Glance and Nova will verify with. A token that signs with another
/// private key than the public key it shows (key pairs sharing a `CKA_ID`, a
/// mispaired import) would otherwise yield a signature nothing can verify,
/// found only at boot. One public-key verification: 0.01 ms (RSA-2048) to
/// 2 ms (sect571k1), next to a device signature of 1-7 ms and the image hash.
pub fn check_device_signature(
    key: &KeyHandle,
    cert_id: &str,
    scheme: &SignatureScheme,
    digest: &[u8],
    signature: &[u8],
) -> Result<()> {
    if SoftwareVerifier.verify_digest(&key.public, scheme, digest, signature)? {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "the token's signature does not verify with certificate \"{cert_id}\" ({}, the public key of {}): the key and the certificate do not match",
        key.public.describe(),
        key.uri.redacted()
    )))
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
    check_device_signature(key, cert_id, &scheme, &digest.digest, &signature)?;
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
