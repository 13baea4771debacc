//! The device trait. Each operation a signing device may offer has a default
//! body that says "not supported" (the Parsec provider pattern), so a backend
//! implements only what its hardware can do: the PKCS#11 backend signs, stores
//! and verifies; the software verifier only verifies.

pub mod pkcs11;
pub mod software;

use imgseal_hsm::KeyProtection;
use imgseal_hsm::uri::Pkcs11Uri;

use crate::algorithms::KeyKind;
use crate::error::{Error, Result};
use crate::public_key::PublicKey;
use crate::signature::SignatureScheme;
use crate::x509::Certificate;

/// A private key held by a device, with what users need to know about it.
#[derive(Debug, Clone)]
pub struct KeyHandle {
    /// The RFC 7512 URI that names the key.
    pub uri: Pkcs11Uri,
    pub label: String,
    pub id: Vec<u8>,
    pub public: PublicKey,
}

/// A key as `key list` shows it: usable, or the reason it is not (a key of
/// a type imgseal does not sign with, a public key it cannot read).
#[derive(Debug, Clone)]
pub struct ListedKey {
    pub uri: Pkcs11Uri,
    pub label: String,
    pub id: Vec<u8>,
    pub key: std::result::Result<KeyHandle, String>,
}

impl KeyHandle {
    pub fn kind(&self) -> Option<KeyKind> {
        self.public.key_kind()
    }
}

/// A certificate stored under an id.
#[derive(Debug, Clone)]
pub struct StoredCertificate {
    pub id: String,
    pub certificate: Certificate,
    /// Where it was found, for users: "token imgseal", "directory /etc/…".
    pub location: String,
}

/// A certificate as `cert list` shows it: parsed, or the reason it cannot
/// be (garbage in a token object, a file that is no certificate). One such
/// entry never hides the others.
#[derive(Debug, Clone)]
pub struct ListedCertificate {
    pub id: String,
    pub location: String,
    pub certificate: std::result::Result<Certificate, String>,
}

impl From<StoredCertificate> for ListedCertificate {
    fn from(s: StoredCertificate) -> Self {
        ListedCertificate {
            id: s.id,
            location: s.location,
            certificate: Ok(s.certificate),
        }
    }
}

/// What `key delete` removed from a token.
#[derive(Debug, Clone, Default)]
pub struct DeletedKey {
    /// Whether the key had a public key object of its own (removed with it).
    pub public_key: bool,
    /// Certificate objects with the key's `CKA_ID`, removed (by label).
    pub certificates: Vec<String>,
    /// Certificate objects with the key's `CKA_ID`, kept (not asked to remove).
    pub kept_certificates: Vec<String>,
}

fn unsupported(device: &str, what: &str) -> Error {
    Error::usage(format!("{device} does not support {what}"))
}

pub trait SigningDevice {
    /// A short description for messages: "PKCS#11 token \"imgseal\"".
    fn describe(&self) -> String;

    fn list_keys(&self) -> Result<Vec<ListedKey>> {
        Err(unsupported(&self.describe(), "listing keys"))
    }

    fn find_key(&self, _uri: &Pkcs11Uri) -> Result<KeyHandle> {
        Err(unsupported(&self.describe(), "finding keys"))
    }

    /// Generates a key pair; also returns the protections the token would
    /// not give it (only when `allow_weaker`; otherwise that is an error).
    fn generate_key(
        &self,
        _kind: KeyKind,
        _label: &str,
        _allow_weaker: bool,
    ) -> Result<(KeyHandle, Vec<String>)> {
        Err(unsupported(&self.describe(), "generating keys"))
    }

    fn key_protection(&self, _key: &KeyHandle) -> Result<KeyProtection> {
        Err(unsupported(&self.describe(), "reading key attributes"))
    }

    /// Signs a precomputed digest. ECDSA and DSA signatures come back DER-encoded.
    fn sign_digest(
        &self,
        _key: &KeyHandle,
        _scheme: &SignatureScheme,
        _digest: &[u8],
    ) -> Result<Vec<u8>> {
        Err(unsupported(&self.describe(), "signing"))
    }

    /// Verifies a DER/PSS signature over a precomputed digest. `Ok(false)`: invalid.
    fn verify_digest(
        &self,
        _key: &PublicKey,
        _scheme: &SignatureScheme,
        _digest: &[u8],
        _signature: &[u8],
    ) -> Result<bool> {
        Err(unsupported(&self.describe(), "verifying"))
    }

    fn store_certificate(&self, _id: &str, _cert: &Certificate) -> Result<()> {
        Err(unsupported(&self.describe(), "storing certificates"))
    }

    fn find_certificate(&self, _id: &str) -> Result<Option<StoredCertificate>> {
        Err(unsupported(&self.describe(), "finding certificates"))
    }

    fn list_certificates(&self) -> Result<Vec<StoredCertificate>> {
        Err(unsupported(&self.describe(), "listing certificates"))
    }

    /// The certificate objects that share `key`'s `CKA_ID` (none when the
    /// key has an empty id, which says nothing about which is its own).
    fn key_certificates(&self, _key: &KeyHandle) -> Result<Vec<ListedCertificate>> {
        Err(unsupported(
            &self.describe(),
            "finding a key's certificates",
        ))
    }

    /// Removes the key pair (and, with `with_certificates`, the certificate
    /// objects sharing its `CKA_ID`).
    fn delete_key(&self, _key: &KeyHandle, _with_certificates: bool) -> Result<DeletedKey> {
        Err(unsupported(&self.describe(), "deleting keys"))
    }

    /// Removes the certificate stored under `id`.
    fn delete_certificate(&self, _id: &str) -> Result<()> {
        Err(unsupported(&self.describe(), "deleting certificates"))
    }

    /// Stores `cert` under `id` in place of the certificate there.
    fn replace_certificate(&self, _id: &str, _cert: &Certificate) -> Result<()> {
        Err(unsupported(&self.describe(), "replacing certificates"))
    }

    /// Every certificate object, including those imgseal cannot parse
    /// (each with the reason), for listings.
    fn list_certificate_entries(&self) -> Result<Vec<ListedCertificate>> {
        Ok(self
            .list_certificates()?
            .into_iter()
            .map(ListedCertificate::from)
            .collect())
    }
}
