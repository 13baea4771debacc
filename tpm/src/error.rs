//! One error enum for the TPM device crate. Every failure that comes from the
//! TPM or the TSS carries the TPM command that failed and its response code
//! spelt as the TPM 2.0 specification and tpm2-tools spell it
//! (`TPM2_NV_Write failed: TPM_RC_NV_LOCKED (0x148)`), so a user can look it up.
//!
//! The faults an operator has to act on get their own variants: the TPM cannot
//! be reached, an NV index is missing, has the wrong attributes, is locked, the
//! TPM is in dictionary-attack lockout, or an authorization value is wrong.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// A TCTI string that cannot be used (syntax, or a form tss-esapi 7.7 would misread).
    #[error("invalid TCTI \"{tcti}\": {reason}")]
    TctiConfig { tcti: String, reason: String },

    /// The TPM cannot be reached, or the connection broke in the middle of a command.
    #[error("cannot talk to the TPM at {tcti}: {command} failed: {code}{}", connection_hint(.code))]
    Connection {
        tcti: String,
        command: &'static str,
        code: ResponseCode,
    },

    #[error("{command} failed: {code}: NV index {index:#010x} is not defined")]
    IndexMissing {
        index: u32,
        command: &'static str,
        code: ResponseCode,
    },

    #[error("{}NV index {index:#010x} {detail}", prefix(.command, .code))]
    WrongAttributes {
        index: u32,
        command: Option<&'static str>,
        code: Option<ResponseCode>,
        detail: String,
    },

    #[error(
        "{command} failed: {code}: NV index {index:#010x} is locked (a write lock on a WRITE_STCLEAR index lasts until the next TPM reset or restart)"
    )]
    Locked {
        index: u32,
        command: &'static str,
        code: ResponseCode,
    },

    #[error("{command} failed: {code}: NV index {index:#010x} has never been written")]
    NotWritten {
        index: u32,
        command: &'static str,
        code: ResponseCode,
    },

    #[error(
        "{command} failed: {code}: the TPM is in dictionary-attack lockout; wait for its recovery time or clear it with the lockout authorization (tpm2_dictionarylockout --clear-lockout)"
    )]
    Lockout {
        command: &'static str,
        code: ResponseCode,
    },

    #[error("{command} failed: {code}: wrong authorization value for {entity}")]
    AuthFailed {
        command: &'static str,
        code: ResponseCode,
        entity: String,
    },

    /// Any other TPM or TSS response code.
    #[error("{command} failed: {code}")]
    Tpm {
        command: &'static str,
        code: ResponseCode,
    },

    /// An error raised inside tss-esapi before anything reached the TPM.
    #[error("{command} failed in tss-esapi: {detail}")]
    Wrapper {
        command: &'static str,
        detail: String,
    },

    /// A key at the expected persistent handle is not the key we would create.
    #[error("persistent handle {handle:#010x} holds {detail}")]
    UnexpectedKey { handle: u32, detail: String },

    /// An attestation that cannot be parsed, or that does not verify.
    #[error("attestation: {0}")]
    Attestation(String),

    #[error("swtpm: {0}")]
    Swtpm(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, TpmError>;

fn prefix(command: &Option<&'static str>, code: &Option<ResponseCode>) -> String {
    match (command, code) {
        (Some(c), Some(rc)) => format!("{c} failed: {rc}: "),
        (Some(c), None) => format!("{c}: "),
        _ => String::new(),
    }
}

fn connection_hint(code: &ResponseCode) -> &'static str {
    if code.layer() == Layer::Tcti {
        " (is the TPM or swtpm running, and is the TCTI right?)"
    } else if code.0 == ESYS_RC_BAD_SEQUENCE {
        " (the connection broke during an earlier command; open the TPM again)"
    } else {
        ""
    }
}

/// What ESYS answers every command with after a TCTI failure left it mid-command.
pub(crate) const ESYS_RC_BAD_SEQUENCE: u32 = 0x0007_0007;

impl TpmError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TpmError::Io {
            context: context.into(),
            source,
        }
    }

    /// The TSS2/TPM response code, when the error came from the TPM stack.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self {
            TpmError::Connection { code, .. }
            | TpmError::IndexMissing { code, .. }
            | TpmError::Locked { code, .. }
            | TpmError::NotWritten { code, .. }
            | TpmError::Lockout { code, .. }
            | TpmError::AuthFailed { code, .. }
            | TpmError::Tpm { code, .. } => Some(*code),
            TpmError::WrongAttributes { code, .. } => *code,
            _ => None,
        }
    }

    pub fn is_connection(&self) -> bool {
        matches!(self, TpmError::Connection { .. })
    }
}

/// What the failing command was acting on, used to pick the right variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    None,
    /// An NV index: TPM_RC_HANDLE / NV_LOCKED / ATTRIBUTES name it.
    Nv(u32),
}

/// Classifies a raw TSS2_RC returned by `command`.
pub(crate) fn classify(command: &'static str, rc: u32, subject: Subject, tcti: &str) -> TpmError {
    let code = ResponseCode(rc);
    if code.is_connection_failure() {
        return TpmError::Connection {
            tcti: tcti.to_string(),
            command,
            code,
        };
    }
    if code.layer().carries_tpm_code() {
        let base = code.base();
        match (base, subject) {
            (TPM_RC_HANDLE, Subject::Nv(index)) => {
                return TpmError::IndexMissing {
                    index,
                    command,
                    code,
                };
            }
            (TPM_RC_NV_LOCKED, Subject::Nv(index)) => {
                return TpmError::Locked {
                    index,
                    command,
                    code,
                };
            }
            (TPM_RC_NV_UNINITIALIZED, Subject::Nv(index)) => {
                return TpmError::NotWritten {
                    index,
                    command,
                    code,
                };
            }
            (
                TPM_RC_ATTRIBUTES | TPM_RC_NV_AUTHORIZATION | TPM_RC_AUTH_UNAVAILABLE,
                Subject::Nv(index),
            ) => {
                return TpmError::WrongAttributes {
                    index,
                    command: Some(command),
                    code: Some(code),
                    detail: if base != TPM_RC_ATTRIBUTES {
                        "does not allow this operation with the authorization used (check OWNERWRITE/AUTHWRITE/OWNERREAD/AUTHREAD)".into()
                    } else {
                        "has attributes that do not allow this operation".into()
                    },
                };
            }
            (TPM_RC_LOCKOUT, _) => return TpmError::Lockout { command, code },
            (TPM_RC_AUTH_FAIL | TPM_RC_BAD_AUTH, _) => {
                return TpmError::AuthFailed {
                    command,
                    code,
                    entity: match subject {
                        Subject::Nv(index) => format!("NV index {index:#010x} or its hierarchy"),
                        Subject::None => "the object or hierarchy".into(),
                    },
                };
            }
            _ => {}
        }
    }
    TpmError::Tpm { command, code }
}

/// Maps a tss-esapi error returned by `command`.
pub(crate) fn from_tss(
    command: &'static str,
    err: tss_esapi::Error,
    subject: Subject,
    tcti: &str,
) -> TpmError {
    use tss_esapi::constants::response_code::Tss2ResponseCode;
    match err {
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatZero(rc)) => {
            classify(command, rc.0, subject, tcti)
        }
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::FormatOne(rc)) => {
            classify(command, rc.0, subject, tcti)
        }
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::Success) => TpmError::Wrapper {
            command,
            detail: "success reported as an error".into(),
        },
        tss_esapi::Error::WrapperError(kind) => TpmError::Wrapper {
            command,
            detail: kind.to_string(),
        },
    }
}

/// Which software or hardware layer produced a TSS2_RC (bits 16..24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Tpm,
    Feature,
    Esys,
    Sys,
    Mu,
    Tcti,
    ResourceManager,
    ResourceManagerTpm,
    Other(u8),
}

impl Layer {
    fn carries_tpm_code(self) -> bool {
        matches!(self, Layer::Tpm | Layer::ResourceManagerTpm)
    }

    fn prefix(self) -> &'static str {
        match self {
            Layer::Tpm => "TPM_RC_",
            Layer::Feature => "TSS2_FEATURE_RC_",
            Layer::Esys => "TSS2_ESYS_RC_",
            Layer::Sys => "TSS2_SYS_RC_",
            Layer::Mu => "TSS2_MU_RC_",
            Layer::Tcti => "TSS2_TCTI_RC_",
            Layer::ResourceManager => "TSS2_RESMGR_RC_",
            Layer::ResourceManagerTpm => "TPM_RC_",
            Layer::Other(_) => "TSS2_RC_",
        }
    }
}

/// A TSS2_RC / TPM_RC with its standard name: `TPM_RC_NV_LOCKED (0x148)`,
/// `TPM_RC_VALUE, parameter 3 (0x3c4)`, `TSS2_TCTI_RC_IO_ERROR (0xa000a)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode(pub u32);

impl fmt::Debug for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

// Format-zero and format-one base codes (TPM 2.0 Part 2, table 16), as `base()` returns them.
pub(crate) const TPM_RC_HANDLE: u32 = 0x08B;
pub(crate) const TPM_RC_ATTRIBUTES: u32 = 0x082;
pub(crate) const TPM_RC_AUTH_FAIL: u32 = 0x08E;
pub(crate) const TPM_RC_BAD_AUTH: u32 = 0x0A2;
pub(crate) const TPM_RC_AUTH_UNAVAILABLE: u32 = 0x12F;
pub(crate) const TPM_RC_NV_LOCKED: u32 = 0x148;
pub(crate) const TPM_RC_NV_AUTHORIZATION: u32 = 0x149;
pub(crate) const TPM_RC_NV_UNINITIALIZED: u32 = 0x14A;
pub(crate) const TPM_RC_NV_DEFINED: u32 = 0x14C;
pub(crate) const TPM_RC_INITIALIZE: u32 = 0x100;
pub(crate) const TPM_RC_LOCKOUT: u32 = 0x921;
/// Warning: the TPM has no room for another loaded session (try again).
pub(crate) const TPM_RC_SESSION_MEMORY: u32 = 0x903;

impl ResponseCode {
    pub fn value(self) -> u32 {
        self.0
    }

    pub fn layer(self) -> Layer {
        match (self.0 >> 16) & 0xff {
            0 => Layer::Tpm,
            6 => Layer::Feature,
            7 => Layer::Esys,
            8 => Layer::Sys,
            9 => Layer::Mu,
            10 => Layer::Tcti,
            11 => Layer::ResourceManager,
            12 => Layer::ResourceManagerTpm,
            other => Layer::Other(other as u8),
        }
    }

    /// The code without the handle/parameter/session number of format-one codes
    /// (TPM layers), or the TSS2 base code (other layers).
    pub fn base(self) -> u32 {
        let low = self.0 & 0xffff;
        if !self.layer().carries_tpm_code() {
            return low;
        }
        if low & 0x80 != 0 {
            0x80 | (low & 0x3f)
        } else {
            low & 0xfff
        }
    }

    /// For format-one TPM codes: which handle, parameter or session it is about.
    pub fn position(self) -> Option<(&'static str, u32)> {
        let low = self.0 & 0xffff;
        if !self.layer().carries_tpm_code() || low & 0x80 == 0 {
            return None;
        }
        let n = (low >> 8) & 0xf;
        if low & 0x40 != 0 {
            Some(("parameter", n))
        } else if n & 0x8 != 0 {
            Some(("session", n & 0x7))
        } else if n != 0 {
            Some(("handle", n))
        } else {
            None
        }
    }

    pub fn name(self) -> String {
        let layer = self.layer();
        let base = self.base();
        let suffix = if layer.carries_tpm_code() {
            tpm_rc_name(base)
        } else {
            tss2_base_name(base)
        };
        match suffix {
            Some(s) => format!("{}{s}", layer.prefix()),
            None => format!("{}{base:#x}", layer.prefix()),
        }
    }

    /// The TSS could not reach the TPM or lost the connection (TCTI layer, or
    /// an I/O or connection base code surfaced by ESYS/SYS).
    pub fn is_connection_failure(self) -> bool {
        let layer = self.layer();
        let base = self.base();
        match layer {
            Layer::Tcti => true,
            Layer::Esys | Layer::Sys | Layer::ResourceManager => {
                matches!(base, 8 | 10 | 22 | 49)
            }
            _ => false,
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position() {
            Some((what, n)) => write!(f, "{}, {what} {n} ({:#x})", self.name(), self.0),
            None => write!(f, "{} ({:#x})", self.name(), self.0),
        }
    }
}

fn tpm_rc_name(base: u32) -> Option<&'static str> {
    Some(match base {
        0x000 => "SUCCESS",
        0x01E => "BAD_TAG",
        // format zero, TPM_RC_VER1 + n
        0x100 => "INITIALIZE",
        0x101 => "FAILURE",
        0x103 => "SEQUENCE",
        0x10B => "PRIVATE",
        0x119 => "HMAC",
        0x120 => "DISABLED",
        0x121 => "EXCLUSIVE",
        0x124 => "AUTH_TYPE",
        0x125 => "AUTH_MISSING",
        0x126 => "POLICY",
        0x127 => "PCR",
        0x128 => "PCR_CHANGED",
        0x12D => "UPGRADE",
        0x12E => "TOO_MANY_CONTEXTS",
        0x12F => "AUTH_UNAVAILABLE",
        0x130 => "REBOOT",
        0x131 => "UNBALANCED",
        0x142 => "COMMAND_SIZE",
        0x143 => "COMMAND_CODE",
        0x144 => "AUTHSIZE",
        0x145 => "AUTH_CONTEXT",
        0x146 => "NV_RANGE",
        0x147 => "NV_SIZE",
        0x148 => "NV_LOCKED",
        0x149 => "NV_AUTHORIZATION",
        0x14A => "NV_UNINITIALIZED",
        0x14B => "NV_SPACE",
        0x14C => "NV_DEFINED",
        0x150 => "BAD_CONTEXT",
        0x151 => "CPHASH",
        0x152 => "PARENT",
        0x153 => "NEEDS_TEST",
        0x154 => "NO_RESULT",
        0x155 => "SENSITIVE",
        // format one, TPM_RC_FMT1 + n
        0x081 => "ASYMMETRIC",
        0x082 => "ATTRIBUTES",
        0x083 => "HASH",
        0x084 => "VALUE",
        0x085 => "HIERARCHY",
        0x087 => "KEY_SIZE",
        0x088 => "MGF",
        0x089 => "MODE",
        0x08A => "TYPE",
        0x08B => "HANDLE",
        0x08C => "KDF",
        0x08D => "RANGE",
        0x08E => "AUTH_FAIL",
        0x08F => "NONCE",
        0x090 => "PP",
        0x092 => "SCHEME",
        0x095 => "SIZE",
        0x096 => "SYMMETRIC",
        0x097 => "TAG",
        0x098 => "SELECTOR",
        0x09A => "INSUFFICIENT",
        0x09B => "SIGNATURE",
        0x09C => "KEY",
        0x09D => "POLICY_FAIL",
        0x09F => "INTEGRITY",
        0x0A0 => "TICKET",
        0x0A1 => "RESERVED_BITS",
        0x0A2 => "BAD_AUTH",
        0x0A3 => "EXPIRED",
        0x0A4 => "POLICY_CC",
        0x0A5 => "BINDING",
        0x0A6 => "CURVE",
        0x0A7 => "ECC_POINT",
        // warnings, TPM_RC_WARN + n
        0x901 => "CONTEXT_GAP",
        0x902 => "OBJECT_MEMORY",
        0x903 => "SESSION_MEMORY",
        0x904 => "MEMORY",
        0x905 => "SESSION_HANDLES",
        0x906 => "OBJECT_HANDLES",
        0x907 => "LOCALITY",
        0x908 => "YIELDED",
        0x909 => "CANCELED",
        0x90A => "TESTING",
        0x910..=0x916 => {
            return Some(
                [
                    "REFERENCE_H0",
                    "REFERENCE_H1",
                    "REFERENCE_H2",
                    "REFERENCE_H3",
                    "REFERENCE_H4",
                    "REFERENCE_H5",
                    "REFERENCE_H6",
                ][(base - 0x910) as usize],
            );
        }
        0x918..=0x91E => {
            return Some(
                [
                    "REFERENCE_S0",
                    "REFERENCE_S1",
                    "REFERENCE_S2",
                    "REFERENCE_S3",
                    "REFERENCE_S4",
                    "REFERENCE_S5",
                    "REFERENCE_S6",
                ][(base - 0x918) as usize],
            );
        }
        0x920 => "NV_RATE",
        0x921 => "LOCKOUT",
        0x922 => "RETRY",
        0x923 => "NV_UNAVAILABLE",
        _ => return None,
    })
}

fn tss2_base_name(base: u32) -> Option<&'static str> {
    const NAMES: [&str; 50] = [
        "SUCCESS",
        "GENERAL_FAILURE",
        "NOT_IMPLEMENTED",
        "BAD_CONTEXT",
        "ABI_MISMATCH",
        "BAD_REFERENCE",
        "INSUFFICIENT_BUFFER",
        "BAD_SEQUENCE",
        "NO_CONNECTION",
        "TRY_AGAIN",
        "IO_ERROR",
        "BAD_VALUE",
        "NOT_PERMITTED",
        "INVALID_SESSIONS",
        "NO_DECRYPT_PARAM",
        "NO_ENCRYPT_PARAM",
        "BAD_SIZE",
        "MALFORMED_RESPONSE",
        "INSUFFICIENT_CONTEXT",
        "INSUFFICIENT_RESPONSE",
        "INCOMPATIBLE_TCTI",
        "NOT_SUPPORTED",
        "BAD_TCTI_STRUCTURE",
        "MEMORY",
        "BAD_TR",
        "MULTIPLE_DECRYPT_SESSIONS",
        "MULTIPLE_ENCRYPT_SESSIONS",
        "RSP_AUTH_FAILED",
        "NO_CONFIG",
        "BAD_PATH",
        "NOT_DELETABLE",
        "PATH_ALREADY_EXISTS",
        "KEY_NOT_FOUND",
        "SIGNATURE_VERIFICATION_FAILED",
        "HASH_MISMATCH",
        "KEY_NOT_DUPLICABLE",
        "PATH_NOT_FOUND",
        "NO_CERT",
        "NO_PCR",
        "PCR_NOT_RESETTABLE",
        "BAD_TEMPLATE",
        "AUTHORIZATION_FAILED",
        "AUTHORIZATION_UNKNOWN",
        "NV_NOT_READABLE",
        "NV_TOO_SMALL",
        "NV_NOT_WRITEABLE",
        "POLICY_UNKNOWN",
        "NV_WRONG_TYPE",
        "NAME_ALREADY_EXISTS",
        "NO_TPM",
    ];
    NAMES.get(base as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codes_are_spelt_like_the_specification() {
        assert_eq!(ResponseCode(0x148).to_string(), "TPM_RC_NV_LOCKED (0x148)");
        assert_eq!(ResponseCode(0x921).to_string(), "TPM_RC_LOCKOUT (0x921)");
        assert_eq!(
            ResponseCode(0x3c4).to_string(),
            "TPM_RC_VALUE, parameter 3 (0x3c4)"
        );
        assert_eq!(
            ResponseCode(0x18b).to_string(),
            "TPM_RC_HANDLE, handle 1 (0x18b)"
        );
        assert_eq!(
            ResponseCode(0x98e).to_string(),
            "TPM_RC_AUTH_FAIL, session 1 (0x98e)"
        );
        assert_eq!(
            ResponseCode(0xa000a).to_string(),
            "TSS2_TCTI_RC_IO_ERROR (0xa000a)"
        );
        assert_eq!(
            ResponseCode(0x80012).to_string(),
            "TSS2_SYS_RC_INSUFFICIENT_CONTEXT (0x80012)"
        );
        assert_eq!(ResponseCode(0x14c).name(), "TPM_RC_NV_DEFINED");
        assert_eq!(ResponseCode(0x0c_0148).name(), "TPM_RC_NV_LOCKED");
    }

    #[test]
    fn classification_picks_the_operator_facing_variant() {
        let nv = Subject::Nv(0x0181_a000);
        let e = classify("TPM2_NV_Write", 0x148, nv, "t");
        assert!(matches!(e, TpmError::Locked { .. }));
        assert_eq!(
            e.to_string(),
            "TPM2_NV_Write failed: TPM_RC_NV_LOCKED (0x148): NV index 0x0181a000 is locked (a write lock on a WRITE_STCLEAR index lasts until the next TPM reset or restart)"
        );
        assert!(matches!(
            classify("TPM2_NV_ReadPublic", 0x18b, nv, "t"),
            TpmError::IndexMissing { .. }
        ));
        assert!(matches!(
            classify("TPM2_NV_Read", 0x921, nv, "t"),
            TpmError::Lockout { .. }
        ));
        assert!(matches!(
            classify("TPM2_NV_Read", 0x98e, nv, "t"),
            TpmError::AuthFailed { .. }
        ));
        assert!(matches!(
            classify("TPM2_NV_Read", 0x9a2, nv, "t"),
            TpmError::AuthFailed { .. }
        ));
        assert!(matches!(
            classify("TPM2_NV_WriteLock", 0x182, nv, "t"),
            TpmError::WrongAttributes { .. }
        ));
        let e = classify("TPM2_GetCapability", 0xa000a, Subject::None, "swtpm:port=1");
        assert!(e.is_connection());
        assert!(e.to_string().contains("swtpm:port=1"), "{e}");
        assert!(classify("Esys", 0x7000a, Subject::None, "t").is_connection());
    }
}
