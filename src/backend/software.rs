//! Verification without a device, for compute hosts that have none: OpenSSL.

use super::SigningDevice;
use crate::error::Result;
use crate::public_key::PublicKey;
use crate::signature::{self, SignatureScheme};

#[derive(Debug, Default, Clone, Copy)]
pub struct SoftwareVerifier;

impl SigningDevice for SoftwareVerifier {
    fn describe(&self) -> String {
        "the software verifier".into()
    }

    fn verify_digest(
        &self,
        key: &PublicKey,
        scheme: &SignatureScheme,
        digest: &[u8],
        sig: &[u8],
    ) -> Result<bool> {
        signature::verify_digest(key, scheme, digest, sig)
    }
}
