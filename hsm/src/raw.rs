//! The few PKCS#11 calls that cryptoki 0.12 cannot express, done through
//! cryptoki-sys on the same module. cryptoki lacks the DSA mechanisms and
//! `CKA_SUBPRIME`, and sends `CKA_BASE` with a length of one byte (a bug), so
//! classic DSA needs these.

use cryptoki::mechanism::{Mechanism, MechanismType, vendor_defined::VendorDefinedMechanism};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki_sys::{CK_ATTRIBUTE, CK_ULONG, CKR_OK};

use crate::error::{HsmError, Result};
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

/// `C_GetAttributeValue` for one attribute that cryptoki cannot map back to a variant.
pub fn get_attribute_bytes(token: &Token, object: ObjectHandle, kind: CK_ULONG) -> Result<Vec<u8>> {
    // Safety: the module is already loaded and initialised by cryptoki in this process,
    // so dlopen returns the same handle and the session/object handles are valid for it.
    let lib = unsafe { cryptoki_sys::Pkcs11::new(token.module().path()) }.map_err(|e| {
        HsmError::ModuleLoad {
            path: token.module().path().to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    let session = token.session().handle();
    let mut template = CK_ATTRIBUTE {
        type_: kind,
        pValue: std::ptr::null_mut(),
        ulValueLen: 0,
    };
    let rv = unsafe { lib.C_GetAttributeValue(session, object.handle(), &mut template, 1) };
    if rv != CKR_OK {
        return Err(HsmError::Pkcs11 {
            function: "C_GetAttributeValue".into(),
            code: format!("CKR 0x{rv:x} reading attribute 0x{kind:x}"),
            rv: None,
        });
    }
    let mut buffer = vec![0u8; template.ulValueLen as usize];
    template.pValue = buffer.as_mut_ptr().cast();
    let rv = unsafe { lib.C_GetAttributeValue(session, object.handle(), &mut template, 1) };
    if rv != CKR_OK {
        return Err(HsmError::Pkcs11 {
            function: "C_GetAttributeValue".into(),
            code: format!("CKR 0x{rv:x} reading attribute 0x{kind:x}"),
            rv: None,
        });
    }
    buffer.truncate(template.ulValueLen as usize);
    Ok(buffer)
}
