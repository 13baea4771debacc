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

    #[error(
        "more than one PKCS#11 token matches {selector} ({candidates}); add token=, serial= or slot-id= to the URI"
    )]
    TokenAmbiguous {
        selector: String,
        candidates: String,
    },

    /// `C_Initialize` failed: the module loaded but cannot start, most
    /// often because it cannot find its configuration or token store.
    #[error(
        "PKCS#11 module {path} would not start ({source}); a module that cannot find its configuration or token store fails here: check what it reads (SOFTHSM2_CONF, KRYOPTIC_CONF, TPM2_PKCS11_STORE and TPM2_PKCS11_TCTI, a running pkcsslotd for openCryptoki)"
    )]
    Initialize {
        path: PathBuf,
        source: Box<HsmError>,
    },

    /// The token refuses hardening attributes and the operator did not
    /// allow a key without them.
    #[error(
        "token \"{token}\" cannot give a generated key these protections: {missing}; give --allow-weaker-key-attributes to generate it without them (key show reports what a key has)"
    )]
    WeakerKey { token: String, missing: String },

    /// The token cannot do what was asked: the mechanism, key size or curve
    /// is not in what `C_GetMechanismList`/`C_GetMechanismInfo` offer.
    #[error("token \"{token}\" cannot {what} (it offers: {offers})")]
    NotOffered {
        token: String,
        what: String,
        offers: String,
    },

    #[error("no free slot to initialise a new token in module {0}")]
    NoFreeSlot(PathBuf),

    /// `C_Login` refused the PIN: `code` is CKR_PIN_INCORRECT, or
    /// CKR_PIN_LEN_RANGE / CKR_PIN_INVALID for a PIN the token cannot take.
    #[error("incorrect PIN for token \"{token}\" ({code})")]
    PinIncorrect { token: String, code: String },

    #[error("the user PIN of token \"{token}\" is locked (CKR_PIN_LOCKED); {advice}")]
    PinLocked { token: String, advice: String },

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

    /// True when the module refused the mechanism's parameters (an RSA-PSS
    /// salt length, for one).
    pub fn is_mechanism_param_invalid(&self) -> bool {
        self.rv() == Some(RvError::MechanismParamInvalid)
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
