//! Signing and verifying precomputed digests inside the token.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;

use crate::error::{HsmError, Result};
use crate::module::Token;
use crate::raw;

/// The digest algorithms PKCS#11 names for PSS and MGF1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestMechanism {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// A raw (digest-in) signature mechanism: the caller hashes, the token signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMechanism {
    /// `CKM_RSA_PKCS_PSS` with MGF1 over the same digest.
    RsaPss {
        digest: DigestMechanism,
        salt_len: u64,
    },
    /// `CKM_RSA_PKCS`: the caller passes a DigestInfo.
    RsaPkcs1,
    /// `CKM_ECDSA`: the result is raw `r || s`.
    Ecdsa,
    /// `CKM_DSA`: the result is raw `r || s`.
    Dsa,
}

impl SignMechanism {
    // `Mechanism` borrows its parameters and is !Send, so it is built per call.
    fn with<T>(&self, f: impl FnOnce(&Mechanism<'_>) -> T) -> T {
        match *self {
            SignMechanism::RsaPss { digest, salt_len } => {
                let (hash_alg, mgf) = match digest {
                    DigestMechanism::Sha224 => (MechanismType::SHA224, PkcsMgfType::MGF1_SHA224),
                    DigestMechanism::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
                    DigestMechanism::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
                    DigestMechanism::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
                };
                let params = PkcsPssParams {
                    hash_alg,
                    mgf,
                    s_len: salt_len.into(),
                };
                f(&Mechanism::RsaPkcsPss(params))
            }
            SignMechanism::RsaPkcs1 => f(&Mechanism::RsaPkcs),
            SignMechanism::Ecdsa => f(&Mechanism::Ecdsa),
            SignMechanism::Dsa => f(&raw::mechanism_by_number(raw::CKM_DSA)),
        }
    }
}

impl Token {
    /// `C_Sign` over `digest` with the private key `key`.
    pub fn sign_digest(
        &self,
        key: ObjectHandle,
        mechanism: &SignMechanism,
        digest: &[u8],
    ) -> Result<Vec<u8>> {
        if !self.logged_in {
            return Err(HsmError::Invalid(
                "signing needs a logged-in session (no PIN was given)".into(),
            ));
        }
        mechanism.with(|m| self.session.sign(m, key, digest).map_err(HsmError::from))
    }

    /// `C_Verify` of `signature` over `digest` with the public key `key`.
    /// `Ok(false)` means the token said the signature is invalid.
    pub fn verify_digest(
        &self,
        key: ObjectHandle,
        mechanism: &SignMechanism,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool> {
        match mechanism.with(|m| self.session.verify(m, key, digest, signature)) {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = HsmError::from(e);
                if e.is_signature_invalid() {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}
