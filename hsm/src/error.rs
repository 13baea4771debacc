//! One error enum for the device crate. Every PKCS#11 failure carries the
//! function that failed and its CKR_ code, so a user can look it up in the
//! module's documentation (the rust-cryptoki way).

use std::path::PathBuf;

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    #[error("cannot load PKCS#11 module {path}: {reason}")]
    ModuleLoad { path: PathBuf, reason: String },

    #[error("PKCS#11 {function} failed: {code}")]
    Pkcs11 {
        function: String,
        code: String,
        rv: Option<RvError>,
    },

    #[error("PKCS#11 operation not supported by the cryptoki layer: {0}")]
    Unsupported(String),

    #[error("no PKCS#11 token matches {0}")]
    TokenNotFound(String),

    #[error("more than one PKCS#11 token matches {0}; add token=, serial= or slot-id= to the URI")]
    TokenAmbiguous(String),

    #[error("no free slot to initialise a new token in module {0}")]
    NoFreeSlot(PathBuf),

    #[error("incorrect PIN for token \"{token}\" (CKR_PIN_INCORRECT)")]
    PinIncorrect { token: String },

    #[error(
        "the user PIN of token \"{token}\" is locked (CKR_PIN_LOCKED); the security officer must reset it"
    )]
    PinLocked { token: String },

    #[error("{0}")]
    Invalid(String),
}

impl HsmError {
    /// Wraps a cryptoki error, keeping the failing PKCS#11 function.
    pub fn from_cryptoki(err: CkError) -> Self {
        match err {
            CkError::Pkcs11(rv, function) => HsmError::Pkcs11 {
                function: function_name(function),
                code: ckr_name(rv),
                rv: Some(rv),
            },
            CkError::LibraryLoading(e) => HsmError::ModuleLoad {
                path: PathBuf::new(),
                reason: e.to_string(),
            },
            CkError::NotSupported => HsmError::Unsupported("attribute or mechanism".into()),
            other => HsmError::Pkcs11 {
                function: "cryptoki".into(),
                code: other.to_string(),
                rv: None,
            },
        }
    }

    /// The PKCS#11 return value, when the error came from the module.
    pub fn rv(&self) -> Option<RvError> {
        match self {
            HsmError::Pkcs11 { rv, .. } => *rv,
            _ => None,
        }
    }

    /// True when the failure is the module saying a signature does not verify.
    pub fn is_signature_invalid(&self) -> bool {
        matches!(
            self.rv(),
            Some(RvError::SignatureInvalid) | Some(RvError::SignatureLenRange)
        )
    }
}

impl From<CkError> for HsmError {
    fn from(err: CkError) -> Self {
        HsmError::from_cryptoki(err)
    }
}

pub type Result<T> = std::result::Result<T, HsmError>;

fn function_name(f: Function) -> String {
    // cryptoki's Display prints "Function::Sign"-like names; the C name is what users search for.
    let debug = format!("{f:?}");
    format!("C_{debug}")
}

/// `PinIncorrect` -> `CKR_PIN_INCORRECT`: the name every PKCS#11 manual uses.
pub fn ckr_name(rv: RvError) -> String {
    let debug = format!("{rv:?}");
    let mut out = String::from("CKR_");
    for (i, ch) in debug.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ckr_names_match_the_standard_spelling() {
        assert_eq!(ckr_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(ckr_name(RvError::SignatureInvalid), "CKR_SIGNATURE_INVALID");
        assert_eq!(function_name(Function::Sign), "C_Sign");
    }
}
