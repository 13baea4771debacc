//! imgseal's PKCS#11 device layer.
//!
//! Small safe types over cryptoki: a process-wide [`Module`], a logged-in
//! [`Token`], key pairs, raw digest signing, certificate objects and RFC 7512
//! URIs. It knows nothing of images, Glance or X.509 policy; the `imgseal`
//! crate composes it.

pub mod error;
mod keys;
mod module;
mod objects;
pub mod quirks;
pub mod raw;
mod sign;
pub mod uri;

pub use error::{HsmError, Result};
pub use keys::{
    Hardening, KeyAlgorithm, KeyFilter, KeyObject, KeyProtection, KeySpec, PublicKeyParts,
};
pub use module::{Module, Token, TokenSelector, TokenSummary};
pub use objects::{CertificateObject, NewCertificate};
pub use quirks::{KnownModule, Quirks};
pub use raw::{LibraryFields, MechanismFields, SlotFields, TokenFields};
pub use sign::{CurveFacts, DigestMechanism, Offers, SignMechanism};

pub use cryptoki::object::ObjectHandle;
