//! The PKCS#11 calls that cryptoki 0.12 cannot express, or cannot express
//! tolerantly, done through cryptoki-sys on the module's own function list.
//!
//! * cryptoki lacks the DSA mechanisms and `CKA_SUBPRIME`, and sends
//!   `CKA_BASE` with a length of one byte (a bug), so classic DSA needs these.
//! * cryptoki's `TokenInfo` refuses a token whose `utcTime` is not 14 ASCII
//!   digits (openCryptoki 3.8.1's soft token says `"11:55:39        "`), and
//!   keeps NUL padding in text fields; [`TokenFields`] reads them tolerantly.
//! * `C_GetMechanismList`/`C_GetMechanismInfo` are read as numbers: cryptoki
//!   cannot name `CKM_DSA` and friends.
//!
//! Every call goes through the function list cryptoki itself calls through
//! (cryptoki's own, exposed by the vendored patch, hsm/vendor/README.md), so
//! on cryptoki's sessions. Looking functions up by name (dlsym) fails on
//! modules that export only `C_GetFunctionList`, as the p11-kit proxy and
//! many vendor modules do, and a second `C_GetFunctionList` is no better: the
//! proxy answers each call with a new, uninitialised instance
//! (tests/modules.rs, `proxy_*`).

use cryptoki::error::{Rv, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType, vendor_defined::VendorDefinedMechanism};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki_sys::{
    CK_ATTRIBUTE, CK_FUNCTION_LIST_3_2, CK_INFO, CK_MECHANISM_INFO, CK_MECHANISM_TYPE, CK_RV,
    CK_SLOT_INFO, CK_TOKEN_INFO, CK_ULONG, CKR_OK,
};

use crate::error::{HsmError, Result, ckr_name};
use crate::module::Token;

pub const CKM_DSA_KEY_PAIR_GEN: CK_ULONG = 0x10;
pub const CKM_DSA: CK_ULONG = 0x11;
pub const CKA_SUBPRIME: CK_ULONG = 0x131;
pub const CKA_BASE: CK_ULONG = 0x132;

/// A mechanism cryptoki has no variant for, sent by number and without parameters.
pub fn mechanism_by_number(value: CK_ULONG) -> Mechanism<'static> {
    // MechanismType is #[repr(transparent)] over CK_ULONG; new_vendor_defined refuses
    // values below CKM_VENDOR_DEFINED, which standard DSA mechanisms are.
    let t = unsafe { std::mem::transmute::<CK_ULONG, MechanismType>(value) };
    Mechanism::VendorDefined(VendorDefinedMechanism::new::<()>(t, None))
}

/// An attribute cryptoki has no variant for (or mis-sizes), sent with its real length.
pub fn attribute_by_number(kind: CK_ULONG, value: Vec<u8>) -> Attribute {
    Attribute::VendorDefined((AttributeType::VendorDefined(kind), value))
}

/// The module's function list, as cryptoki holds it, with the context that
/// keeps the module loaded and initialised.
pub(crate) struct FunctionList {
    _context: cryptoki::context::Pkcs11,
    list: CK_FUNCTION_LIST_3_2,
}

/// `CK_RV` to an error naming the function, as cryptoki's errors do.
fn check(rv: CK_RV, function: &str) -> Result<()> {
    if rv == CKR_OK {
        return Ok(());
    }
    let (code, rv) = match Rv::from(rv) {
        Rv::Error(e) => (ckr_name(e), Some(e)),
        Rv::Ok => ("CKR_OK".to_string(), None),
    };
    Err(HsmError::Pkcs11 {
        function: function.into(),
        code,
        rv,
    })
}

macro_rules! call {
    ($self:expr, $name:ident ( $($arg:expr),* )) => {{
        // `list` came from the module's C_GetFunctionList (through cryptoki),
        // and the module stays loaded while `self` lives.
        let f = $self.list.$name.ok_or_else(|| HsmError::Pkcs11 {
            function: stringify!($name).into(),
            code: "the module's function list has no entry for it".into(),
            rv: None,
        })?;
        // SAFETY: the arguments are valid for the call (each caller's comment).
        check(unsafe { f($($arg),*) }, stringify!($name))
    }};
}

/// Text from a fixed-width PKCS#11 field: blank-padded by the standard, NUL-
/// padded by some modules; both trimmed (only at the end).
pub fn padded_text(field: &[u8]) -> String {
    let end = field
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |i| i + 1);
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// `C_GetInfo`, as text.
#[derive(Debug, Clone, Default)]
pub struct LibraryFields {
    pub manufacturer: String,
    pub description: String,
    /// `major.minor`, as RFC 7512's `library-version` writes it.
    pub version: String,
    pub cryptoki_version: (u8, u8),
}

/// `C_GetSlotInfo`, as text.
#[derive(Debug, Clone, Default)]
pub struct SlotFields {
    pub description: String,
    pub manufacturer: String,
}

/// The parts of `C_GetTokenInfo` imgseal reads. `utcTime` is never parsed.
#[derive(Debug, Clone, Default)]
pub struct TokenFields {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub flags: CK_ULONG,
    pub min_pin_len: CK_ULONG,
    pub max_pin_len: CK_ULONG,
}

impl TokenFields {
    pub fn initialized(&self) -> bool {
        self.flags & cryptoki_sys::CKF_TOKEN_INITIALIZED != 0
    }

    pub fn user_pin_locked(&self) -> bool {
        self.flags & cryptoki_sys::CKF_USER_PIN_LOCKED != 0
    }
}

/// `C_GetMechanismInfo`: key sizes (bits, or bytes for some mechanisms) and flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MechanismFields {
    pub min_key_size: CK_ULONG,
    pub max_key_size: CK_ULONG,
    pub flags: CK_ULONG,
}

impl FunctionList {
    /// The function list `context` calls through.
    pub(crate) fn of(context: &cryptoki::context::Pkcs11) -> FunctionList {
        FunctionList {
            _context: context.clone(),
            list: context.function_list(),
        }
    }

    pub(crate) fn info(&self) -> Result<LibraryFields> {
        let mut info: CK_INFO = unsafe { std::mem::zeroed() };
        call!(self, C_GetInfo(&mut info))?;
        Ok(LibraryFields {
            manufacturer: padded_text(&info.manufacturerID),
            description: padded_text(&info.libraryDescription),
            version: format!(
                "{}.{}",
                info.libraryVersion.major, info.libraryVersion.minor
            ),
            cryptoki_version: (info.cryptokiVersion.major, info.cryptokiVersion.minor),
        })
    }

    pub(crate) fn slot_info(&self, slot: CK_ULONG) -> Result<SlotFields> {
        let mut info: CK_SLOT_INFO = unsafe { std::mem::zeroed() };
        call!(self, C_GetSlotInfo(slot, &mut info))?;
        Ok(SlotFields {
            description: padded_text(&info.slotDescription),
            manufacturer: padded_text(&info.manufacturerID),
        })
    }

    pub(crate) fn token_info(&self, slot: CK_ULONG) -> Result<TokenFields> {
        let mut info: CK_TOKEN_INFO = unsafe { std::mem::zeroed() };
        call!(self, C_GetTokenInfo(slot, &mut info))?;
        Ok(TokenFields {
            label: padded_text(&info.label),
            manufacturer: padded_text(&info.manufacturerID),
            model: padded_text(&info.model),
            serial: padded_text(&info.serialNumber),
            flags: info.flags,
            min_pin_len: info.ulMinPinLen,
            max_pin_len: info.ulMaxPinLen,
        })
    }

    /// The slots with a token present.
    pub(crate) fn slots_with_token(&self) -> Result<Vec<CK_ULONG>> {
        let mut count: CK_ULONG = 0;
        call!(
            self,
            C_GetSlotList(cryptoki_sys::CK_TRUE, std::ptr::null_mut(), &mut count)
        )?;
        let mut slots = vec![0; count as usize];
        call!(
            self,
            C_GetSlotList(cryptoki_sys::CK_TRUE, slots.as_mut_ptr(), &mut count)
        )?;
        slots.truncate(count as usize);
        Ok(slots)
    }

    pub(crate) fn mechanism_list(&self, slot: CK_ULONG) -> Result<Vec<CK_MECHANISM_TYPE>> {
        let mut count: CK_ULONG = 0;
        call!(
            self,
            C_GetMechanismList(slot, std::ptr::null_mut(), &mut count)
        )?;
        let mut list = vec![0; count as usize];
        call!(
            self,
            C_GetMechanismList(slot, list.as_mut_ptr(), &mut count)
        )?;
        list.truncate(count as usize);
        Ok(list)
    }

    pub(crate) fn mechanism_info(
        &self,
        slot: CK_ULONG,
        mechanism: CK_MECHANISM_TYPE,
    ) -> Result<MechanismFields> {
        let mut info: CK_MECHANISM_INFO = unsafe { std::mem::zeroed() };
        call!(self, C_GetMechanismInfo(slot, mechanism, &mut info))?;
        Ok(MechanismFields {
            min_key_size: info.ulMinKeySize,
            max_key_size: info.ulMaxKeySize,
            flags: info.flags,
        })
    }

    /// `C_GetAttributeValue` for one attribute, as bytes. `Ok(None)` when the
    /// object has no such attribute or will not show it.
    pub(crate) fn attribute_bytes(
        &self,
        session: cryptoki_sys::CK_SESSION_HANDLE,
        object: cryptoki_sys::CK_OBJECT_HANDLE,
        kind: CK_ULONG,
    ) -> Result<Option<Vec<u8>>> {
        let mut template = CK_ATTRIBUTE {
            type_: kind,
            pValue: std::ptr::null_mut(),
            ulValueLen: 0,
        };
        match call!(self, C_GetAttributeValue(session, object, &mut template, 1)) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.rv(),
                    Some(RvError::AttributeTypeInvalid) | Some(RvError::AttributeSensitive)
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        if template.ulValueLen == cryptoki_sys::CK_UNAVAILABLE_INFORMATION {
            return Ok(None);
        }
        let mut buffer = vec![0u8; template.ulValueLen as usize];
        template.pValue = buffer.as_mut_ptr().cast();
        call!(self, C_GetAttributeValue(session, object, &mut template, 1))?;
        buffer.truncate(template.ulValueLen as usize);
        Ok(Some(buffer))
    }
}

/// `C_GetAttributeValue` for one attribute that cryptoki cannot map back to a variant.
pub fn get_attribute_bytes(token: &Token, object: ObjectHandle, kind: CK_ULONG) -> Result<Vec<u8>> {
    token
        .module()
        .functions()
        .attribute_bytes(token.session().handle(), object.handle(), kind)?
        .ok_or_else(|| HsmError::Pkcs11 {
            function: "C_GetAttributeValue".into(),
            code: format!("the object has no attribute 0x{kind:x}"),
            rv: None,
        })
}

#[cfg(test)]
mod tests {
    use super::padded_text;

    #[test]
    fn padded_fields_lose_blanks_and_nuls_at_the_end_only() {
        assert_eq!(padded_text(b"SoftHSM v2      "), "SoftHSM v2");
        assert_eq!(padded_text(b"model\0\0\0\0\0\0\0\0\0\0\0"), "model");
        assert_eq!(padded_text(b"a b \0 \0"), "a b");
        assert_eq!(padded_text(b"   "), "");
        assert_eq!(padded_text(b" lead"), " lead");
    }
}
