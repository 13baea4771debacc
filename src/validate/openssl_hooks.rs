//! Two places where OpenSSL 3's verifier stops short of RFC 5280, and the
//! verify callback that completes them. The callback overrides one named
//! OpenSSL error in one named situation, after making the check OpenSSL
//! could not; every other error stays fatal.
//!
//! 1. DSA parameter inheritance (PKITS 4.1.5): OpenSSL verifies a *twin* of
//!    each certificate whose DSA key inherits its parameters (see
//!    `dsa_inheritance`). The twin's own signature cannot match, so its
//!    `X509_V_ERR_CERT_SIGNATURE_FAILURE` is accepted exactly when the
//!    original certificate's signature verifies with the key of the issuer
//!    OpenSSL chained it to.
//! 2. A CRL signer covered by the CRL it signs (PKITS 4.14.30): OpenSSL
//!    validates a CRL signer's path in a nested context that may not validate
//!    CRL paths again, so the signer's own status check always ends in
//!    `X509_V_ERR_CRL_PATH_VALIDATION_ERROR`. When, in that nested context,
//!    the CRL checking a certificate was signed by that same certificate,
//!    whose path the context is validating anyway, the callback lets OpenSSL
//!    go on: it then
//!    checks the CRL's times and signature and whether the certificate is
//!    listed, as for any other CRL.
//!
//! Callbacks carry no user data, so the twins of the path being validated
//! live in a thread-local for the duration of one `verify_cert`.

use std::cell::RefCell;
use std::os::raw::c_int;

use foreign_types::ForeignTypeRef;
use openssl::x509::X509Ref;
use openssl_sys::{X509, X509_CRL, X509_STORE, X509_STORE_CTX};

use super::dsa_inheritance::Twins;

type VerifyCallback = unsafe extern "C" fn(c_int, *mut X509_STORE_CTX) -> c_int;

// libcrypto functions openssl-sys does not bind.
unsafe extern "C" {
    fn X509_STORE_set_verify_cb(store: *mut X509_STORE, cb: VerifyCallback);
    fn X509_STORE_CTX_get0_current_issuer(ctx: *const X509_STORE_CTX) -> *mut X509;
    fn X509_STORE_CTX_get0_current_crl(ctx: *const X509_STORE_CTX) -> *mut X509_CRL;
    fn X509_STORE_CTX_get0_parent_ctx(ctx: *const X509_STORE_CTX) -> *mut X509_STORE_CTX;
}

thread_local! {
    static TWINS: RefCell<Twins> = RefCell::new(Twins::default());
}

/// Installs the callback on a store under construction. It is set on the
/// store, not the context, because OpenSSL's nested CRL-path contexts take
/// their callback from the store.
pub fn install(store: &mut openssl::x509::store::X509StoreBuilderRef) {
    // Safety: the callback matches OpenSSL's prototype and only reads the
    // context it is given.
    unsafe { X509_STORE_set_verify_cb(store.as_ptr(), verify_callback) };
}

/// Runs `f` (one verification) with `twins` visible to the callback.
pub fn with_twins<T>(twins: &Twins, f: impl FnOnce() -> T) -> T {
    /// Clears the twins however `f` ends, so none outlive their validation.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            TWINS.with(|cell| *cell.borrow_mut() = Twins::default());
        }
    }
    TWINS.with(|cell| *cell.borrow_mut() = twins.clone());
    let _clear = Clear;
    f()
}

unsafe extern "C" fn verify_callback(ok: c_int, ctx: *mut X509_STORE_CTX) -> c_int {
    if ok != 0 {
        return ok;
    }
    // Safety: OpenSSL calls back with the live context it is verifying in.
    if unsafe { overridable(ctx) } {
        unsafe { openssl_sys::X509_STORE_CTX_set_error(ctx, openssl_sys::X509_V_OK) };
        1
    } else {
        0
    }
}

unsafe fn overridable(ctx: *mut X509_STORE_CTX) -> bool {
    unsafe {
        let current = openssl_sys::X509_STORE_CTX_get_current_cert(ctx);
        if current.is_null() {
            return false;
        }
        match openssl_sys::X509_STORE_CTX_get_error(ctx) {
            openssl_sys::X509_V_ERR_CERT_SIGNATURE_FAILURE => {
                let chain = openssl_sys::X509_STORE_CTX_get0_chain(ctx);
                let depth = openssl_sys::X509_STORE_CTX_get_error_depth(ctx);
                if chain.is_null() || depth < 0 {
                    return false;
                }
                let issuer =
                    openssl_sys::OPENSSL_sk_value(chain as *const _, depth + 1) as *mut X509;
                if issuer.is_null() {
                    return false;
                }
                original_signature_holds(X509Ref::from_ptr(current), X509Ref::from_ptr(issuer))
            }
            // Only in the nested context that validates a CRL signer's path:
            // that is where OpenSSL refuses to nest again. In the outer
            // context a CRL path error stays fatal whatever its cause.
            openssl_sys::X509_V_ERR_CRL_PATH_VALIDATION_ERROR => {
                let crl = X509_STORE_CTX_get0_current_crl(ctx);
                let crl_issuer = X509_STORE_CTX_get0_current_issuer(ctx);
                !X509_STORE_CTX_get0_parent_ctx(ctx).is_null()
                    && !crl.is_null()
                    && !crl_issuer.is_null()
                    && openssl_sys::X509_cmp(crl_issuer, current) == 0
            }
            _ => false,
        }
    }
}

/// Whether `cert` is a twin whose original was signed by `issuer`'s key.
fn original_signature_holds(cert: &X509Ref, issuer: &X509Ref) -> bool {
    let Ok(der) = cert.to_der() else {
        return false;
    };
    let Ok(key) = issuer.public_key() else {
        return false;
    };
    TWINS.with(|cell| match cell.try_borrow() {
        Ok(twins) => twins
            .original_of(&der)
            .is_some_and(|original| original.verify(&key).unwrap_or(false)),
        Err(_) => false,
    })
}
