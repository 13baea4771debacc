//! Signing and verifying precomputed digests inside the token.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;

use crate::error::{HsmError, Result};
use crate::module::Token;
use crate::raw;

/// The digest algorithms PKCS#11 names for PSS and MGF1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestMechanism {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// A raw (digest-in) signature mechanism: the caller hashes, the token signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMechanism {
    /// `CKM_RSA_PKCS_PSS` with MGF1 over the same digest.
    RsaPss {
        digest: DigestMechanism,
        salt_len: u64,
    },
    /// `CKM_RSA_PKCS`: the caller passes a DigestInfo.
    RsaPkcs1,
    /// `CKM_ECDSA`: the result is raw `r || s`.
    Ecdsa,
    /// `CKM_DSA`: the result is raw `r || s`.
    Dsa,
}

impl SignMechanism {
    // `Mechanism` borrows its parameters and is !Send, so it is built per call.
    fn with<T>(&self, f: impl FnOnce(&Mechanism<'_>) -> T) -> T {
        match *self {
            SignMechanism::RsaPss { digest, salt_len } => {
                let (hash_alg, mgf) = match digest {
                    DigestMechanism::Sha224 => (MechanismType::SHA224, PkcsMgfType::MGF1_SHA224),
                    DigestMechanism::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
                    DigestMechanism::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
                    DigestMechanism::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
                };
                let params = PkcsPssParams {
                    hash_alg,
                    mgf,
                    s_len: salt_len.into(),
                };
                f(&Mechanism::RsaPkcsPss(params))
            }
            SignMechanism::RsaPkcs1 => f(&Mechanism::RsaPkcs),
            SignMechanism::Ecdsa => f(&Mechanism::Ecdsa),
            SignMechanism::Dsa => f(&raw::mechanism_by_number(raw::CKM_DSA)),
        }
    }
}

impl Token {
    /// `C_Sign` over `digest` with the private key `key`.
    pub fn sign_digest(
        &self,
        key: ObjectHandle,
        mechanism: &SignMechanism,
        digest: &[u8],
    ) -> Result<Vec<u8>> {
        if !self.logged_in {
            return Err(HsmError::Invalid(
                "signing needs a logged-in session (no PIN was given)".into(),
            ));
        }
        mechanism.with(|m| self.session.sign(m, key, digest).map_err(HsmError::from))
    }

    /// `C_Verify` of `signature` over `digest` with the public key `key`.
    /// `Ok(false)` means the token said the signature is invalid.
    pub fn verify_digest(
        &self,
        key: ObjectHandle,
        mechanism: &SignMechanism,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool> {
        match mechanism.with(|m| self.session.verify(m, key, digest, signature)) {
            Ok(()) => Ok(true),
            Err(e) => {
                let e = HsmError::from(e);
                if e.is_signature_invalid() {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// What a token offers of imgseal's mechanisms (`C_GetMechanismList`,
/// `C_GetMechanismInfo`), read once per question.
#[derive(Debug, Clone, Default)]
pub struct Offers {
    mechanisms: Vec<(u64, crate::raw::MechanismFields)>,
    /// The module's sizes and curve flags are known to understate (quirks.rs).
    trust_sizes: bool,
}

/// A curve as the mechanism check needs it: size in bits and whether it is
/// a binary (F_2^m) curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurveFacts {
    pub name: &'static str,
    pub bits: u64,
    pub binary: bool,
}

impl Offers {
    fn get(&self, m: u64) -> Option<&crate::raw::MechanismFields> {
        self.mechanisms
            .iter()
            .find_map(|(t, f)| (*t == m).then_some(f))
    }

    fn sizes(&self, m: u64) -> String {
        match self.get(m) {
            Some(f) if self.trust_sizes && f.max_key_size > 0 => {
                if f.min_key_size == f.max_key_size {
                    format!(" {}", f.max_key_size)
                } else {
                    format!(" {}–{}", f.min_key_size, f.max_key_size)
                }
            }
            _ => String::new(),
        }
    }

    fn in_range(&self, m: u64, bits: u64) -> bool {
        match self.get(m) {
            Some(f) if self.trust_sizes && f.max_key_size > 0 => {
                (f.min_key_size..=f.max_key_size).contains(&bits)
            }
            Some(_) => true,
            None => false,
        }
    }

    fn has(&self, m: u64, flag: u64) -> bool {
        self.get(m).is_some_and(|f| f.flags & flag != 0)
    }

    /// "RSA-PSS 1024–3072, ECDSA 192–638 (prime curves)", or "none of
    /// imgseal's mechanisms".
    pub fn describe(&self) -> String {
        use cryptoki_sys as s;
        let mut out = Vec::new();
        if self.has(s::CKM_RSA_PKCS_PSS, s::CKF_SIGN) {
            out.push(format!(
                "RSA-PSS{}",
                self.sizes(s::CKM_RSA_PKCS_KEY_PAIR_GEN)
            ));
        }
        if self.has(s::CKM_ECDSA, s::CKF_SIGN) {
            let mut kinds = Vec::new();
            if let Some(f) = self
                .get(s::CKM_EC_KEY_PAIR_GEN)
                .filter(|_| self.trust_sizes)
            {
                if f.flags & s::CKF_EC_F_P != 0 {
                    kinds.push("prime curves");
                }
                if f.flags & s::CKF_EC_F_2M != 0 {
                    kinds.push("binary curves");
                }
            }
            let kinds = if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            };
            out.push(format!(
                "ECDSA{}{kinds}",
                self.sizes(s::CKM_EC_KEY_PAIR_GEN)
            ));
        }
        if self.has(crate::raw::CKM_DSA, s::CKF_SIGN) {
            out.push(format!(
                "DSA{}",
                self.sizes(crate::raw::CKM_DSA_KEY_PAIR_GEN)
            ));
        }
        if out.is_empty() {
            "none of imgseal's mechanisms (RSA-PSS, ECDSA, DSA)".into()
        } else {
            out.join(", ")
        }
    }

    /// Why the token cannot generate `what` (`None`: it can, or does not say).
    pub fn keygen_refusal(
        &self,
        spec: &crate::KeySpec,
        curve: Option<CurveFacts>,
    ) -> Option<String> {
        use cryptoki_sys as s;
        let (keygen, sign, what, bits) = match spec {
            crate::KeySpec::Rsa { bits } => (
                s::CKM_RSA_PKCS_KEY_PAIR_GEN,
                s::CKM_RSA_PKCS_PSS,
                format!("generate RSA-PSS {bits}-bit keys"),
                Some(*bits),
            ),
            crate::KeySpec::Ec { .. } => (
                s::CKM_EC_KEY_PAIR_GEN,
                s::CKM_ECDSA,
                format!(
                    "generate ECDSA keys on {}",
                    curve.map_or("this curve", |c| c.name)
                ),
                curve.map(|c| c.bits),
            ),
            crate::KeySpec::Dsa { p, .. } => (
                crate::raw::CKM_DSA_KEY_PAIR_GEN,
                crate::raw::CKM_DSA,
                format!("generate DSA {}-bit keys", p.len() * 8),
                Some(p.len() as u64 * 8),
            ),
        };
        let refuse = self
            .get(keygen)
            .is_none_or(|f| f.flags & s::CKF_GENERATE_KEY_PAIR == 0)
            || !self.has(sign, s::CKF_SIGN)
            || bits.is_some_and(|b| !self.in_range(keygen, b))
            || curve.is_some_and(|c| {
                self.trust_sizes
                    && self.get(keygen).is_some_and(|f| {
                        let field = if c.binary {
                            s::CKF_EC_F_2M
                        } else {
                            s::CKF_EC_F_P
                        };
                        // A module that states neither flag says nothing.
                        f.flags & (s::CKF_EC_F_P | s::CKF_EC_F_2M) != 0 && f.flags & field == 0
                    })
            });
        refuse.then_some(what)
    }

    /// Why the token cannot sign with `mechanism` (`None`: it can).
    pub fn sign_refusal(
        &self,
        mechanism: &SignMechanism,
        digest_listed_required: bool,
    ) -> Option<String> {
        use cryptoki_sys as s;
        let (m, what) = match mechanism {
            SignMechanism::RsaPss { .. } => (s::CKM_RSA_PKCS_PSS, "sign with RSA-PSS"),
            SignMechanism::RsaPkcs1 => (s::CKM_RSA_PKCS, "sign with RSA PKCS#1 v1.5"),
            SignMechanism::Ecdsa => (s::CKM_ECDSA, "sign with ECDSA"),
            SignMechanism::Dsa => (crate::raw::CKM_DSA, "sign with DSA"),
        };
        if !self.has(m, s::CKF_SIGN) {
            return Some(what.into());
        }
        if let SignMechanism::RsaPss { digest, .. } = mechanism {
            let (d, name) = digest.mechanism();
            let lists_digests = [s::CKM_SHA256, s::CKM_SHA384, s::CKM_SHA512]
                .iter()
                .any(|m| self.get(*m).is_some());
            if (lists_digests || digest_listed_required) && self.get(d).is_none() {
                return Some(format!("sign RSA-PSS with {name}"));
            }
        }
        None
    }

    /// Whether the token lists `digest` as a digest mechanism.
    pub fn lists_digest(&self, digest: DigestMechanism) -> bool {
        self.get(digest.mechanism().0).is_some()
    }
}

impl DigestMechanism {
    fn mechanism(self) -> (u64, &'static str) {
        use cryptoki_sys as s;
        match self {
            DigestMechanism::Sha224 => (s::CKM_SHA224, "SHA-224"),
            DigestMechanism::Sha256 => (s::CKM_SHA256, "SHA-256"),
            DigestMechanism::Sha384 => (s::CKM_SHA384, "SHA-384"),
            DigestMechanism::Sha512 => (s::CKM_SHA512, "SHA-512"),
        }
    }

    pub fn name(self) -> &'static str {
        self.mechanism().1
    }
}

impl Token {
    /// What the token offers (`C_GetMechanismList`, `C_GetMechanismInfo`).
    pub fn offers(&self) -> Result<Offers> {
        let functions = self.module.functions();
        let slot = self.slot.id();
        let mut mechanisms = Vec::new();
        for m in functions.mechanism_list(slot)? {
            // A mechanism the module lists but will not describe is still offered.
            let info = functions.mechanism_info(slot, m).unwrap_or_default();
            mechanisms.push((m, info));
        }
        if self.quirks.signs_pss_unlisted
            && !mechanisms
                .iter()
                .any(|(m, _)| *m == cryptoki_sys::CKM_RSA_PKCS_PSS)
        {
            // quirks.rs: offered as RSA-PKCS is, for keys the token makes.
            if let Some((_, rsa)) = mechanisms
                .iter()
                .find(|(m, _)| *m == cryptoki_sys::CKM_RSA_PKCS_KEY_PAIR_GEN)
            {
                let fields = crate::raw::MechanismFields {
                    flags: cryptoki_sys::CKF_SIGN | cryptoki_sys::CKF_VERIFY,
                    ..*rsa
                };
                mechanisms.push((cryptoki_sys::CKM_RSA_PKCS_PSS, fields));
            }
        }
        Ok(Offers {
            mechanisms,
            trust_sizes: !self.quirks.mechanism_info_understates,
        })
    }

    /// `Err(NotOffered)` when the token says it cannot sign with
    /// `mechanism` a digest made with `digest`.
    pub fn require_sign(&self, mechanism: &SignMechanism, digest: DigestMechanism) -> Result<()> {
        let offers = self.offers()?;
        let digest_listed = self.quirks.signs_only_listed_digests;
        let refusal = offers.sign_refusal(mechanism, digest_listed).or_else(|| {
            // tpm2-pkcs11 signs a raw digest only of a hash its TPM has (quirks.rs).
            (digest_listed && !offers.lists_digest(digest))
                .then(|| format!("sign {} digests", digest.name()))
        });
        match refusal {
            None => Ok(()),
            Some(what) => Err(HsmError::NotOffered {
                token: self.label.clone(),
                what,
                offers: offers.describe(),
            }),
        }
    }

    /// `Err(NotOffered)` when the token says it cannot generate `spec`.
    pub fn require_keygen(&self, spec: &crate::KeySpec, curve: Option<CurveFacts>) -> Result<()> {
        let offers = self.offers()?;
        let binary_refused = self.quirks.no_binary_curves && curve.is_some_and(|c| c.binary);
        let refusal = offers.keygen_refusal(spec, curve).or_else(|| {
            binary_refused.then(|| {
                format!(
                    "generate ECDSA keys on {} (a binary curve)",
                    curve.map_or("", |c| c.name)
                )
            })
        });
        match refusal {
            None => Ok(()),
            Some(what) => Err(HsmError::NotOffered {
                token: self.label.clone(),
                what,
                offers: offers.describe(),
            }),
        }
    }
}
