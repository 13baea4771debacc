//! Where PKCS#11 modules differ, and what imgseal does about it.
//!
//! A module is recognised by what it says of itself (`C_GetInfo`'s
//! manufacturer and library description) and a token by `C_GetTokenInfo`'s
//! manufacturer and model, never by the module's file name: the p11-kit
//! proxy puts tokens of several modules behind one library, and
//! distributions install modules under many names.
//!
//! Each quirk names the module and version it was seen with and the test
//! that shows it. Differences that the module announces itself (mechanisms,
//! key sizes, curves) are not quirks: they are asked for before acting
//! (`Token::offers`, keys.rs). Differences every module may have (a
//! malformed `utcTime`, NUL-padded text) are handled for all (raw.rs).

use crate::raw::{LibraryFields, TokenFields};

/// The modules imgseal is tested with (README, "Tested PKCS#11 modules").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KnownModule {
    /// SoftHSM 2.6.1 (Debian softhsm2).
    SoftHsm,
    /// openCryptoki 3.8.1's soft token (Debian opencryptoki).
    OpenCryptoki,
    /// tpm2-pkcs11 1.9.0 (Debian libtpm2-pkcs11-1), directly or behind the proxy.
    Tpm2Pkcs11,
    /// kryoptic 1.5.4 (crates.io).
    Kryoptic,
    /// Anything else; treated by the standard alone.
    #[default]
    Other,
}

impl KnownModule {
    pub fn name(self) -> &'static str {
        match self {
            KnownModule::SoftHsm => "SoftHSM",
            KnownModule::OpenCryptoki => "openCryptoki",
            KnownModule::Tpm2Pkcs11 => "tpm2-pkcs11",
            KnownModule::Kryoptic => "kryoptic",
            KnownModule::Other => "PKCS#11 module",
        }
    }
}

/// What imgseal does differently for one token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Which implementation holds the token (behind the p11-kit proxy too).
    pub module: KnownModule,
    /// Whether the library is the p11-kit proxy (`C_GetInfo`: "PKCS#11 Kit").
    pub behind_proxy: bool,
    /// The token signs RSA-PSS only with a salt as long as the hash.
    ///
    /// tpm2-pkcs11 1.9.0 over swtpm: a TPM 2.0 signs RSASSA-PSS with the
    /// salt length fixed by the TPM (the digest length, TPM 2.0 Part 1
    /// §B.7); any other `sLen` is `CKR_MECHANISM_PARAM_INVALID`
    /// (tests/modules.rs, `tpm2_pkcs11_*`).
    pub pss_salt_is_digest_length: bool,
    /// The token fixes a key's usage attributes itself and refuses a
    /// template that states the ones it sets otherwise.
    ///
    /// tpm2-pkcs11 1.9.0: `C_GenerateKeyPair` with `CKA_ENCRYPT`,
    /// `CKA_DECRYPT`, `CKA_WRAP`, `CKA_UNWRAP`, `CKA_DERIVE` or
    /// `CKA_SIGN_RECOVER` false is `CKR_GENERAL_ERROR` ("User specified
    /// and TPM specified attr mismatch"); they are left out and
    /// `key show` reports what the key allows (tests/modules.rs).
    pub states_usage_itself: bool,
    /// A locked PIN is the TPM's dictionary-attack lockout, not a PIN the
    /// security officer resets.
    ///
    /// tpm2-pkcs11 1.9.0: three wrong PINs put the TPM in lockout
    /// (`CKR_PIN_LOCKED`) until `lockoutRecovery` passes or the owner
    /// clears it.
    pub pin_lock_is_tpm_lockout: bool,
    /// `C_GetMechanismInfo` understates what the token does, so key sizes
    /// and curve flags are not held against a request.
    ///
    /// SoftHSM 2.6.1 (Debian): DSA says `keySize={512,1024}` but 2048 and
    /// 3072 work; `CKM_EC_KEY_PAIR_GEN` says only `EC_F_P` but sect409/571
    /// keys generate and sign (docs: shared device notes; tests/interop_openssl.rs
    /// signs with all of them).
    pub mechanism_info_understates: bool,
    /// The token signs a raw digest only when it is the length of a hash
    /// the token lists as a digest mechanism.
    ///
    /// tpm2-pkcs11 1.9.0: a SHA-224 digest is `CKR_GENERAL_ERROR` (the TPM
    /// has no SHA-224) (tests/modules.rs).
    pub signs_only_listed_digests: bool,
    /// The token has no binary (F_2^m) curves but does not say so in
    /// `CKM_EC_KEY_PAIR_GEN`'s flags.
    ///
    /// tpm2-pkcs11 1.9.0: no `CKF_EC_F_P`/`CKF_EC_F_2M` flags; sect409k1
    /// is `CKR_GENERAL_ERROR` ("Unsupported nid to tpm EC algorithm
    /// mapping") (tests/modules.rs).
    pub no_binary_curves: bool,
    /// The token signs with `CKM_RSA_PKCS_PSS` without listing it in
    /// `C_GetMechanismList`.
    ///
    /// tpm2-pkcs11 1.9.0 over swtpm 0.7.1: the list has RSA-PKCS, -OAEP
    /// and -X-509 but not PSS, yet `C_SignInit` with `CKM_RSA_PKCS_PSS`
    /// and a salt of the hash's length signs (the TPM has `TPM_ALG_RSAPSS`)
    /// (tests/modules.rs, `tpm2_pkcs11_signs_what_the_tpm_offers`).
    pub signs_pss_unlisted: bool,
    /// An RSA key whose `CKA_ALLOWED_MECHANISMS` names `CKM_RSA_PKCS_PSS`
    /// cannot sign with it.
    ///
    /// tpm2-pkcs11 1.9.0: the template is accepted, then `C_SignInit` with
    /// `CKM_RSA_PKCS_PSS` is `CKR_MECHANISM_INVALID` (PSS is not in the
    /// module's own list, see `signs_pss_unlisted`); without the attribute
    /// it signs (tests/modules.rs, `tpm2_pkcs11_signs_what_the_tpm_offers`).
    pub rsa_allowed_mechanisms_break_pss: bool,
}

impl Quirks {
    pub fn detect(library: &LibraryFields, token: &TokenFields) -> Quirks {
        let behind_proxy = library.manufacturer == "PKCS#11 Kit";
        let module = identify(library, token);
        let tpm = module == KnownModule::Tpm2Pkcs11;
        Quirks {
            module,
            behind_proxy,
            pss_salt_is_digest_length: tpm,
            states_usage_itself: tpm,
            pin_lock_is_tpm_lockout: tpm,
            mechanism_info_understates: module == KnownModule::SoftHsm,
            signs_only_listed_digests: tpm,
            no_binary_curves: tpm,
            signs_pss_unlisted: tpm,
            rsa_allowed_mechanisms_break_pss: tpm,
        }
    }

    /// What to do about `CKR_PIN_LOCKED` on this token.
    pub fn pin_locked_advice(&self) -> String {
        if self.pin_lock_is_tpm_lockout {
            "this is the TPM's dictionary-attack lockout after wrong PINs, not a PIN to reset: wait for the TPM's lockout recovery time, or clear it with `tpm2_dictionarylockout --clear-lockout` and the TPM's lockout (owner's) authority".into()
        } else {
            "the security officer must reset it".into()
        }
    }
}

fn identify(library: &LibraryFields, token: &TokenFields) -> KnownModule {
    // The library first; behind the p11-kit proxy the token says who it is.
    let by_library = match (library.manufacturer.as_str(), library.description.as_str()) {
        ("SoftHSM", _) => Some(KnownModule::SoftHsm),
        ("IBM", d) if d.contains("PKCS11") || d.contains("openCryptoki") => {
            Some(KnownModule::OpenCryptoki)
        }
        ("tpm2-software.github.io", _) => Some(KnownModule::Tpm2Pkcs11),
        (m, _) if m.to_ascii_lowercase().contains("kryoptic") => Some(KnownModule::Kryoptic),
        _ => None,
    };
    if let Some(m) = by_library {
        return m;
    }
    match (token.manufacturer.as_str(), token.model.as_str()) {
        ("SoftHSM project", _) => KnownModule::SoftHsm,
        ("IBM Corp.", m) if m.starts_with("IBM SoftTok") => KnownModule::OpenCryptoki,
        // tpm2-pkcs11 puts the TPM's vendor strings in the model and a
        // TPM manufacturer in manufacturerID; its label-less tokens do
        // not exist. Its model always carries "TPM".
        (_, m) if m.contains("TPM") => KnownModule::Tpm2Pkcs11,
        (m, _) if m.to_ascii_lowercase().contains("kryoptic") => KnownModule::Kryoptic,
        _ => KnownModule::Other,
    }
}
