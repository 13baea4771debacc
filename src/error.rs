//! The library's error type. Each variant belongs to one [`ErrorKind`], and the
//! CLI maps kinds to documented exit codes; messages are one readable line that
//! names what was wrong and where, and never contain a PIN.

use std::path::{Path, PathBuf};

use imgseal_hsm::HsmError;
use imgseal_tpm::TpmError;

/// Classes of failure, each with its own exit code (see `docs/exit-codes.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The signature or certificate was checked and does not hold.
    Invalid,
    /// The command line is wrong.
    Usage,
    /// A file, property, certificate or URI is malformed.
    BadInput,
    /// A key, certificate or token named by the user does not exist.
    NotFound,
    /// The device (PKCS#11 module, token) failed.
    Device,
    /// Wrong or locked PIN.
    Auth,
    /// Reading or writing a file failed.
    Io,
    /// An OpenStack service could not be reached, timed out, or failed.
    Service,
}

impl ErrorKind {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Invalid => 1,
            ErrorKind::Usage => 2,
            ErrorKind::BadInput => 3,
            ErrorKind::NotFound => 4,
            ErrorKind::Device => 5,
            ErrorKind::Auth => 6,
            ErrorKind::Io => 7,
            ErrorKind::Service => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Usage => "usage",
            ErrorKind::BadInput => "bad-input",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Device => "device",
            ErrorKind::Auth => "auth",
            ErrorKind::Io => "io",
            ErrorKind::Service => "service",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{context}: {source}")]
    Device {
        context: String,
        #[source]
        source: HsmError,
    },
    #[error("{0}")]
    Auth(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Crypto(String),
    /// A TPM command failed (imgseal-tpm), with what imgseal was doing.
    #[error("{context}: {source}")]
    Tpm {
        context: String,
        #[source]
        source: TpmError,
    },
    /// The TPM answered, but is not in a state the operation can use (for
    /// example the anchors are write-locked until the next TPM reset).
    #[error("{0}")]
    TpmState(String),
    /// An OpenStack service could not be reached, timed out, or answered
    /// with an error that is not about the caller's input.
    #[error("{0}")]
    Service(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::Usage(_) => ErrorKind::Usage,
            Error::BadInput(_) => ErrorKind::BadInput,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Device { source, .. } => match source {
                HsmError::PinIncorrect { .. } | HsmError::PinLocked { .. } => ErrorKind::Auth,
                HsmError::TokenNotFound(_) => ErrorKind::NotFound,
                // The URI or the command asks for what no token (or no
                // single token) can give: the user's to change.
                HsmError::TokenAmbiguous { .. }
                | HsmError::NotOffered { .. }
                | HsmError::WeakerKey { .. } => ErrorKind::Usage,
                _ => ErrorKind::Device,
            },
            Error::Auth(_) => ErrorKind::Auth,
            Error::Io { .. } => ErrorKind::Io,
            Error::Crypto(_) => ErrorKind::Device,
            Error::Tpm { source, .. } => tpm_error_kind(source),
            Error::TpmState(_) => ErrorKind::Device,
            Error::Service(_) => ErrorKind::Service,
        }
    }

    /// The same error again, for the variants that are only a message (an
    /// answer kept to be reported later); `None` for those that wrap a source.
    pub fn try_clone(&self) -> Option<Error> {
        Some(match self {
            Error::Invalid(m) => Error::Invalid(m.clone()),
            Error::Usage(m) => Error::Usage(m.clone()),
            Error::BadInput(m) => Error::BadInput(m.clone()),
            Error::NotFound(m) => Error::NotFound(m.clone()),
            Error::Auth(m) => Error::Auth(m.clone()),
            Error::Crypto(m) => Error::Crypto(m.clone()),
            Error::TpmState(m) => Error::TpmState(m.clone()),
            Error::Service(m) => Error::Service(m.clone()),
            Error::Device { .. } | Error::Io { .. } | Error::Tpm { .. } => return None,
        })
    }

    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    pub fn bad_input(msg: impl Into<String>) -> Self {
        Error::BadInput(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }

    pub fn service(msg: impl Into<String>) -> Self {
        Error::Service(msg.into())
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A device failure with what imgseal was doing when it happened.
    pub fn device(context: impl Into<String>) -> impl FnOnce(HsmError) -> Self {
        let context = context.into();
        move |source| Error::Device { context, source }
    }

    /// A TPM failure with what imgseal was doing when it happened.
    pub fn tpm(context: impl Into<String>) -> impl FnOnce(TpmError) -> Self {
        let context = context.into();
        move |source| Error::Tpm { context, source }
    }

    pub fn crypto(context: &str, err: openssl::error::ErrorStack) -> Self {
        Error::Crypto(format!("{context}: {}", openssl_reason(&err)))
    }
}

/// Which exit class a TPM failure belongs to: what the operator has to act on.
fn tpm_error_kind(e: &TpmError) -> ErrorKind {
    match e {
        // Wrong owner authorization, or dictionary-attack lockout: credentials.
        TpmError::AuthFailed { .. } | TpmError::Lockout { .. } => ErrorKind::Auth,
        // Nothing sealed (index undefined, or defined and never written).
        TpmError::IndexMissing { .. } | TpmError::NotWritten { .. } => ErrorKind::NotFound,
        TpmError::TctiConfig { .. } => ErrorKind::Usage,
        // A signature or nonce that does not hold is a failed check.
        TpmError::Attestation(_) => ErrorKind::Invalid,
        TpmError::Io { .. } => ErrorKind::Io,
        TpmError::Invalid(_) => ErrorKind::BadInput,
        // Unreachable TPM, wrong attributes, write-locked index, other TPM codes.
        _ => ErrorKind::Device,
    }
}

/// The first OpenSSL reason string, without the library/file noise.
pub fn openssl_reason(err: &openssl::error::ErrorStack) -> String {
    err.errors()
        .first()
        .map(|e| e.reason().unwrap_or("unknown OpenSSL error").to_string())
        .unwrap_or_else(|| "unknown OpenSSL error".into())
}
