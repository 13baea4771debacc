//! Three places where OpenSSL 3's verifier stops short of RFC 5280, and the
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
//! 3. The trust anchor's own revocation status (RFC 5280 §6.1: a trust anchor
//!    is trusted as given, only the certificates below it are checked).
//!    `X509_V_FLAG_CRL_CHECK_ALL` checks every certificate of the chain, the
//!    trusted one at its top too: for a trusted leaf or intermediate (a
//!    partial chain) OpenSSL then wants the CRL of an issuer it does not have
//!    and takes the anchor for that CRL's signer, failing with "key usage does
//!    not include CRL signing" or "CRL signature failure". Revocation errors
//!    raised while the trusted top of a chain is being checked are passed.
//!
//! When the callback lets an error stand, it keeps the CRL being checked, so
//! that the refusal can name it.
//! Callbacks carry no user data, so the twins of the path being validated
//! live in a thread-local for the duration of one `verify_cert`.

use std::cell::RefCell;
use std::os::raw::c_int;

use foreign_types::ForeignTypeRef;
use openssl::x509::{X509 as X509Owned, X509CrlRef, X509Ref};
use openssl_sys::{X509, X509_CRL, X509_STORE, X509_STORE_CTX};

use super::dsa_inheritance::Twins;

type VerifyCallback = unsafe extern "C" fn(c_int, *mut X509_STORE_CTX) -> c_int;

// libcrypto functions openssl-sys does not bind.
unsafe extern "C" {
    fn X509_STORE_set_verify_cb(store: *mut X509_STORE, cb: VerifyCallback);
    fn X509_STORE_CTX_get0_current_issuer(ctx: *const X509_STORE_CTX) -> *mut X509;
    fn X509_STORE_CTX_get0_current_crl(ctx: *const X509_STORE_CTX) -> *mut X509_CRL;
    fn X509_STORE_CTX_get0_parent_ctx(ctx: *const X509_STORE_CTX) -> *mut X509_STORE_CTX;
    fn X509_STORE_CTX_get_num_untrusted(ctx: *const X509_STORE_CTX) -> c_int;
}

thread_local! {
    static TWINS: RefCell<Twins> = RefCell::new(Twins::default());
    /// The CRL in use when an error was let stand (described for people),
    /// and the certificate OpenSSL took for its signer.
    static FAILED_CRL: RefCell<Option<(String, Option<X509Owned>)>> = const { RefCell::new(None) };
}

/// The CRL (and its signer, as OpenSSL saw it) that the last refused
/// verification on this thread was checking with, if any.
pub(super) fn take_failed_crl() -> Option<(String, Option<X509Owned>)> {
    FAILED_CRL.with(|cell| cell.borrow_mut().take())
}

/// Installs the callback on a store under construction. It is set on the
/// store, not the context, because OpenSSL's nested CRL-path contexts take
/// their callback from the store.
pub(super) fn install(store: &mut openssl::x509::store::X509StoreBuilderRef) {
    // Safety: the callback matches OpenSSL's prototype and only reads the
    // context it is given.
    unsafe { X509_STORE_set_verify_cb(store.as_ptr(), verify_callback) };
}

/// Runs `f` (one verification) with `twins` visible to the callback.
pub(super) fn with_twins<T>(twins: &Twins, f: impl FnOnce() -> T) -> T {
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
        // Safety: as above; the CRL and issuer are the context's, up-ref'd here.
        unsafe { keep_failed_crl(ctx) };
        0
    }
}

unsafe fn keep_failed_crl(ctx: *mut X509_STORE_CTX) {
    unsafe {
        let crl = X509_STORE_CTX_get0_current_crl(ctx);
        if crl.is_null() {
            return;
        }
        let crl = super::crl_choice::describe(X509CrlRef::from_ptr(crl));
        let issuer = X509_STORE_CTX_get0_current_issuer(ctx);
        let issuer = (!issuer.is_null()).then(|| X509Ref::from_ptr(issuer).to_owned());
        FAILED_CRL.with(|cell| *cell.borrow_mut() = Some((crl, issuer)));
    }
}

/// OpenSSL's errors that only its revocation checks raise.
fn is_revocation_error(code: c_int) -> bool {
    use openssl_sys::*;
    matches!(
        code,
        X509_V_ERR_UNABLE_TO_GET_CRL
            | X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE
            | X509_V_ERR_CRL_SIGNATURE_FAILURE
            | X509_V_ERR_CRL_NOT_YET_VALID
            | X509_V_ERR_CRL_HAS_EXPIRED
            | X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD
            | X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD
            | X509_V_ERR_CERT_REVOKED
            | X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER
            | X509_V_ERR_KEYUSAGE_NO_CRL_SIGN
            | X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION
            | X509_V_ERR_DIFFERENT_CRL_SCOPE
            | X509_V_ERR_CRL_PATH_VALIDATION_ERROR
    )
}

/// Whether OpenSSL is checking the revocation status of the trusted
/// certificate at the top of the chain: revocation checks run only once a
/// chain to a trusted certificate is built, so the top is the anchor.
unsafe fn checking_anchor_status(ctx: *mut X509_STORE_CTX, code: c_int) -> bool {
    unsafe {
        let chain = openssl_sys::X509_STORE_CTX_get0_chain(ctx);
        if chain.is_null() {
            return false;
        }
        let length = openssl_sys::OPENSSL_sk_num(chain as *const _);
        let top = length - 1;
        let in_revocation_check =
            is_revocation_error(code) || !X509_STORE_CTX_get0_current_crl(ctx).is_null();
        in_revocation_check
            && openssl_sys::X509_STORE_CTX_get_error_depth(ctx) == top
            && X509_STORE_CTX_get_num_untrusted(ctx) < length
    }
}

unsafe fn overridable(ctx: *mut X509_STORE_CTX) -> bool {
    unsafe {
        let current = openssl_sys::X509_STORE_CTX_get_current_cert(ctx);
        if current.is_null() {
            return false;
        }
        let code = openssl_sys::X509_STORE_CTX_get_error(ctx);
        if checking_anchor_status(ctx, code) {
            return true;
        }
        match code {
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
