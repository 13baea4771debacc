//! Key pairs in the token: generation, lookup, public halves, protection attributes.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};

use crate::error::{HsmError, Result};
use crate::module::Token;
use crate::raw;

/// The kind of key pair to generate. Domain parameters are the caller's: the
/// device crate does not pick curves or DSA groups.
#[derive(Debug, Clone)]
pub enum KeySpec {
    Rsa {
        bits: u64,
    },
    /// `CKA_EC_PARAMS`: the DER encoding of the named curve's OID.
    Ec {
        params_der: Vec<u8>,
    },
    /// Classic DSA domain parameters, unsigned big-endian.
    Dsa {
        p: Vec<u8>,
        q: Vec<u8>,
        g: Vec<u8>,
    },
}

/// The public half of a key as the token stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKeyParts {
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// `point` is the DER OCTET STRING that `CKA_EC_POINT` holds.
    Ec {
        params_der: Vec<u8>,
        point: Vec<u8>,
    },
    Dsa {
        p: Vec<u8>,
        q: Vec<u8>,
        g: Vec<u8>,
        y: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa,
    Ec,
    Dsa,
    Other(u64),
}

/// A private key in the token with what identifies it.
#[derive(Debug, Clone)]
pub struct KeyObject {
    pub private: ObjectHandle,
    pub public: Option<ObjectHandle>,
    pub label: String,
    pub id: Vec<u8>,
    pub algorithm: KeyAlgorithm,
    /// Why imgseal cannot use this key, when the token would not say what
    /// it is (its attributes could not be read).
    pub problem: Option<String>,
}

/// The attributes that show a private key cannot leave the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyProtection {
    pub token: bool,
    pub private: bool,
    pub sensitive: bool,
    pub extractable: bool,
    pub always_sensitive: bool,
    pub never_extractable: bool,
    /// `CKA_MODIFIABLE`; `None` when the token does not say.
    pub modifiable: Option<bool>,
    /// `CKA_DECRYPT`, `CKA_UNWRAP` or `CKA_DERIVE` true (the key may do
    /// more than sign); `None` when the token does not say.
    pub other_use: Option<bool>,
    /// `CKA_ALLOWED_MECHANISMS` holds exactly one mechanism; `None` when
    /// the token has no such attribute for the key.
    pub one_mechanism: Option<bool>,
}

/// The protections beyond "never leaves the token" that imgseal asks of a
/// generated key, each one attribute group a module may refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hardening {
    /// `CKA_ALLOWED_MECHANISMS`: the private key signs with one mechanism.
    AllowedMechanisms,
    /// `CKA_DECRYPT`, `CKA_UNWRAP`, `CKA_DERIVE`, `CKA_SIGN_RECOVER` (and
    /// the public half's `CKA_ENCRYPT`, `CKA_WRAP`, `CKA_DERIVE`) false.
    NoOtherUse,
    /// `CKA_MODIFIABLE` false on both halves.
    Unmodifiable,
}

impl Hardening {
    /// Which groups to leave out, smallest first: the first that the token
    /// accepts is kept.
    const SUBSETS: [&'static [Hardening]; 8] = [
        &[],
        &[Hardening::AllowedMechanisms],
        &[Hardening::NoOtherUse],
        &[Hardening::Unmodifiable],
        &[Hardening::AllowedMechanisms, Hardening::NoOtherUse],
        &[Hardening::AllowedMechanisms, Hardening::Unmodifiable],
        &[Hardening::NoOtherUse, Hardening::Unmodifiable],
        &[
            Hardening::AllowedMechanisms,
            Hardening::NoOtherUse,
            Hardening::Unmodifiable,
        ],
    ];

    /// The protection the key lacks without this group, for users.
    pub fn protection(self) -> &'static str {
        match self {
            Hardening::AllowedMechanisms => {
                "restricting the key to one signature mechanism (CKA_ALLOWED_MECHANISMS)"
            }
            Hardening::NoOtherUse => {
                "forbidding decryption, unwrapping and derivation with the key (CKA_DECRYPT/CKA_UNWRAP/CKA_DERIVE false)"
            }
            Hardening::Unmodifiable => {
                "making the key's attributes unchangeable (CKA_MODIFIABLE false)"
            }
        }
    }
}

/// Whether a `C_GenerateKeyPair` failure may be the token refusing one of
/// the hardening attributes. tpm2-pkcs11 1.9.0 says `CKR_GENERAL_ERROR`
/// for an attribute its TPM object contradicts (quirks.rs).
fn is_template_refusal(e: &HsmError) -> bool {
    use cryptoki::error::RvError as R;
    matches!(
        e.rv(),
        Some(
            R::AttributeTypeInvalid
                | R::AttributeValueInvalid
                | R::AttributeReadOnly
                | R::TemplateInconsistent
                | R::TemplateIncomplete
                | R::GeneralError
                | R::FunctionFailed
        )
    ) || matches!(e, HsmError::Unsupported(_))
}

/// How to find keys: by label, by id, or both (every key when neither).
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub label: Option<String>,
    pub id: Option<Vec<u8>>,
}

impl Token {
    /// Generates a key pair that never leaves the token: the private half is
    /// sensitive, non-extractable, private and persistent, with `label` and `id`.
    ///
    /// Where the token accepts it, the pair is also hardened ([`Hardening`]):
    /// both halves are final (`CKA_MODIFIABLE` false, so no later
    /// `C_SetAttributeValue` can turn on decryption; everything they need,
    /// `CKA_ID` included, is set here); the private half signs with
    /// imgseal's one mechanism for its type only (`CKA_ALLOWED_MECHANISMS`:
    /// a PIN holder cannot use an RSA key for raw RSA, `CKM_RSA_X_509`, which
    /// is decryption, or PKCS#1 v1.5); and neither half decrypts, unwraps,
    /// derives or signs with recovery.
    ///
    /// Modules refuse some of these (openCryptoki 3.8 knows no
    /// `CKA_ALLOWED_MECHANISMS`; tpm2-pkcs11 sets usage from the TPM object).
    /// When the full template is refused, the smallest set of hardening
    /// attributes to leave out is searched for; the result says which
    /// protections the key lacks. Unless `allow_weaker`, such a key is
    /// destroyed again and [`HsmError::WeakerKey`] names what is missing.
    pub fn generate_key_pair(
        &self,
        spec: &KeySpec,
        label: &str,
        id: &[u8],
        allow_weaker: bool,
    ) -> Result<(KeyObject, Vec<Hardening>)> {
        if !self.logged_in {
            return Err(HsmError::Invalid(
                "generating a key needs a logged-in session (no PIN was given)".into(),
            ));
        }
        let algorithm = match spec {
            KeySpec::Rsa { .. } => KeyAlgorithm::Rsa,
            KeySpec::Ec { .. } => KeyAlgorithm::Ec,
            KeySpec::Dsa { .. } => KeyAlgorithm::Dsa,
        };
        let mut first_error = None;
        // A token that sets usage itself refuses any template stating it
        // (quirks.rs); and each failed attempt on tpm2-pkcs11 leaves an
        // object loaded in the TPM, so such a token is not tried with it.
        let subsets = Hardening::SUBSETS.iter().filter(|s| {
            (!self.quirks.states_usage_itself || s.contains(&Hardening::NoOtherUse))
                && (!self.quirks.rsa_allowed_mechanisms_break_pss
                    || algorithm != KeyAlgorithm::Rsa
                    || s.contains(&Hardening::AllowedMechanisms))
        });
        for &left_out in subsets {
            match self.generate_with(spec, label, id, algorithm, left_out) {
                Ok(key) if left_out.is_empty() || allow_weaker => {
                    return Ok((key, left_out.to_vec()));
                }
                Ok(key) => {
                    // Found what the token refuses; the operator did not
                    // allow a weaker key, so it must not stay.
                    let _ = self.destroy_key(&key);
                    return Err(HsmError::WeakerKey {
                        token: self.label.clone(),
                        missing: left_out
                            .iter()
                            .map(|h| h.protection())
                            .collect::<Vec<_>>()
                            .join("; "),
                    });
                }
                Err(e) if is_template_refusal(&e) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(first_error.unwrap_or(e)),
            }
        }
        Err(first_error.expect("at least one attempt"))
    }

    fn generate_with(
        &self,
        spec: &KeySpec,
        label: &str,
        id: &[u8],
        algorithm: KeyAlgorithm,
        left_out: &[Hardening],
    ) -> Result<KeyObject> {
        let with = |h: Hardening| !left_out.contains(&h);
        let allowed: Vec<u8> = allowed_mechanisms(algorithm)
            .iter()
            .flat_map(|m| m.to_ne_bytes())
            .collect();
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ];
        if with(Hardening::NoOtherUse) {
            // A signing key and nothing else: no decryption, unwrapping,
            // derivation or signatures with recovery.
            private.extend([
                Attribute::SignRecover(false),
                Attribute::Decrypt(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
            ]);
            public.extend([
                Attribute::Encrypt(false),
                Attribute::Wrap(false),
                Attribute::Derive(false),
            ]);
        }
        if with(Hardening::AllowedMechanisms) {
            private.push(raw::attribute_by_number(
                cryptoki_sys::CKA_ALLOWED_MECHANISMS,
                allowed,
            ));
        }
        if with(Hardening::Unmodifiable) {
            private.push(Attribute::Modifiable(false));
            public.push(Attribute::Modifiable(false));
        }
        let mechanism = match spec {
            KeySpec::Rsa { bits } => {
                public.push(Attribute::ModulusBits((*bits).into()));
                public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                Mechanism::RsaPkcsKeyPairGen
            }
            KeySpec::Ec { params_der } => {
                public.push(Attribute::EcParams(params_der.clone()));
                Mechanism::EccKeyPairGen
            }
            KeySpec::Dsa { p, q, g } => {
                public.push(Attribute::Prime(p.clone()));
                public.push(raw::attribute_by_number(raw::CKA_SUBPRIME, q.clone()));
                public.push(raw::attribute_by_number(raw::CKA_BASE, g.clone()));
                raw::mechanism_by_number(raw::CKM_DSA_KEY_PAIR_GEN)
            }
        };
        let (public_handle, private_handle) = self
            .session
            .generate_key_pair(&mechanism, &public, &private)?;
        Ok(KeyObject {
            private: private_handle,
            public: Some(public_handle),
            label: label.to_string(),
            id: id.to_vec(),
            algorithm,
            problem: None,
        })
    }

    /// Private keys matching `filter`, each paired with its own public key
    /// object when the token has one (see `public_half`).
    pub fn find_keys(&self, filter: &KeyFilter) -> Result<Vec<KeyObject>> {
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(label) = &filter.label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &filter.id {
            template.push(Attribute::Id(id.clone()));
        }
        let mut keys = Vec::new();
        for handle in self.session.find_objects(&template)? {
            let mut key = KeyObject {
                private: handle,
                public: None,
                label: String::new(),
                id: Vec::new(),
                algorithm: KeyAlgorithm::Other(u64::MAX),
                problem: None,
            };
            // One key whose attributes cannot be read never hides the others.
            let attrs = match self.session.get_attributes(
                handle,
                &[
                    AttributeType::Label,
                    AttributeType::Id,
                    AttributeType::KeyType,
                ],
            ) {
                Ok(a) => a,
                Err(e) => {
                    key.problem = Some(format!(
                        "its label, id and key type cannot be read: {}",
                        HsmError::from(e)
                    ));
                    keys.push(key);
                    continue;
                }
            };
            let mut raw_label = None;
            for attr in attrs {
                match attr {
                    Attribute::Label(v) => {
                        key.label = String::from_utf8_lossy(&v).into_owned();
                        raw_label = Some(v);
                    }
                    Attribute::Id(v) => key.id = v,
                    Attribute::KeyType(t) => key.algorithm = algorithm_of(t),
                    _ => {}
                }
            }
            match self.public_half(handle, &key.id, raw_label, key.algorithm) {
                Ok(p) => key.public = p,
                Err(e) => key.problem = Some(format!("its public key cannot be found: {e}")),
            }
            if let KeyAlgorithm::Other(t) = key.algorithm {
                key.problem.get_or_insert(format!(
                    "a key of PKCS#11 type 0x{t:x}, which imgseal does not sign with"
                ));
            }
            keys.push(key);
        }
        keys.sort_by(|a, b| a.label.cmp(&b.label).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// The public key object of the private key `private`: the one public key
    /// with the same `CKA_ID` and `CKA_LABEL` (`label`, as the token returned
    /// it), else the one with the same `CKA_ID`. Candidates whose key type or
    /// public parameters differ from what the private key shows are left out.
    /// `None` unless exactly one remains: several key pairs often share a
    /// `CKA_ID` (empty ids are common for imported keys), and a first-by-id
    /// pick can pair one key's private half with another's public half.
    fn public_half(
        &self,
        private: ObjectHandle,
        id: &[u8],
        label: Option<Vec<u8>>,
        algorithm: KeyAlgorithm,
    ) -> Result<Option<ObjectHandle>> {
        let by_id = vec![
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(id.to_vec()),
        ];
        let mine = self.public_params(private, algorithm);
        let matching = |template: &[Attribute]| -> Result<Vec<ObjectHandle>> {
            let mut found = self.session.find_objects(template)?;
            found.retain(|&c| mine.compatible(&self.public_params(c, algorithm)));
            Ok(found)
        };
        let mut candidates = Vec::new();
        if let Some(label) = label {
            let mut exact = by_id.clone();
            exact.push(Attribute::Label(label));
            candidates = matching(&exact)?;
        }
        if candidates.is_empty() {
            candidates = matching(&by_id)?;
        }
        Ok(match candidates[..] {
            [one] => Some(one),
            _ => None,
        })
    }

    /// What a private key and its public key object have in common and a
    /// token shows on both: the key type, and the RSA modulus, EC curve or
    /// DSA prime.
    fn public_params(&self, handle: ObjectHandle, algorithm: KeyAlgorithm) -> PublicParams {
        let wanted = match algorithm {
            KeyAlgorithm::Rsa => Some(AttributeType::Modulus),
            KeyAlgorithm::Ec => Some(AttributeType::EcParams),
            KeyAlgorithm::Dsa => Some(AttributeType::Prime),
            KeyAlgorithm::Other(_) => None,
        };
        let mut types = vec![AttributeType::KeyType];
        types.extend(wanted);
        let mut params = PublicParams::default();
        for attr in self
            .session
            .get_attributes(handle, &types)
            .unwrap_or_default()
        {
            match attr {
                Attribute::KeyType(t) => params.key_type = Some(algorithm_of(t)),
                Attribute::Modulus(v) | Attribute::EcParams(v) | Attribute::Prime(v) => {
                    params.value = Some(v)
                }
                _ => {}
            }
        }
        params
    }

    /// The public half of `key`, read from its public key object.
    pub fn public_key(&self, key: &KeyObject) -> Result<PublicKeyParts> {
        let handle = key.public.ok_or_else(|| {
            HsmError::Invalid(format!(
                "key \"{}\" has no public key object of its own in the token (none, or several, with its CKA_ID and CKA_LABEL)",
                key.label
            ))
        })?;
        self.public_key_of(handle, key.algorithm)
    }

    fn public_key_of(
        &self,
        handle: ObjectHandle,
        algorithm: KeyAlgorithm,
    ) -> Result<PublicKeyParts> {
        match algorithm {
            KeyAlgorithm::Rsa => {
                let attrs = self.session.get_attributes(
                    handle,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )?;
                let (mut modulus, mut exponent) = (Vec::new(), Vec::new());
                for attr in attrs {
                    match attr {
                        Attribute::Modulus(v) => modulus = v,
                        Attribute::PublicExponent(v) => exponent = v,
                        _ => {}
                    }
                }
                Ok(PublicKeyParts::Rsa { modulus, exponent })
            }
            KeyAlgorithm::Ec => {
                let attrs = self
                    .session
                    .get_attributes(handle, &[AttributeType::EcParams, AttributeType::EcPoint])?;
                let (mut params_der, mut point) = (Vec::new(), Vec::new());
                for attr in attrs {
                    match attr {
                        Attribute::EcParams(v) => params_der = v,
                        Attribute::EcPoint(v) => point = v,
                        _ => {}
                    }
                }
                Ok(PublicKeyParts::Ec { params_der, point })
            }
            KeyAlgorithm::Dsa => {
                let attrs = self
                    .session
                    .get_attributes(handle, &[AttributeType::Prime, AttributeType::Value])?;
                let (mut p, mut y) = (Vec::new(), Vec::new());
                for attr in attrs {
                    match attr {
                        Attribute::Prime(v) => p = v,
                        Attribute::Value(v) => y = v,
                        _ => {}
                    }
                }
                let q = raw::get_attribute_bytes(self, handle, raw::CKA_SUBPRIME)?;
                let g = raw::get_attribute_bytes(self, handle, raw::CKA_BASE)?;
                Ok(PublicKeyParts::Dsa { p, q, g, y })
            }
            KeyAlgorithm::Other(t) => Err(HsmError::Invalid(format!(
                "unsupported PKCS#11 key type 0x{t:x}"
            ))),
        }
    }

    /// The attributes that show whether `key` can leave the token.
    pub fn key_protection(&self, key: &KeyObject) -> Result<KeyProtection> {
        let attrs = self.session.get_attributes(
            key.private,
            &[
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
            ],
        )?;
        let mut p = KeyProtection::default();
        for attr in attrs {
            match attr {
                Attribute::Token(v) => p.token = v,
                Attribute::Private(v) => p.private = v,
                Attribute::Sensitive(v) => p.sensitive = v,
                Attribute::Extractable(v) => p.extractable = v,
                Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
                Attribute::NeverExtractable(v) => p.never_extractable = v,
                _ => {}
            }
        }
        // Read one by one: a token that lacks one of them must not hide the others.
        let one = |t: AttributeType| {
            self.session
                .get_attributes(key.private, &[t])
                .ok()
                .and_then(|a| a.into_iter().next())
        };
        p.modifiable = match one(AttributeType::Modifiable) {
            Some(Attribute::Modifiable(v)) => Some(v),
            _ => None,
        };
        let mut other = None;
        for t in [
            AttributeType::Decrypt,
            AttributeType::Unwrap,
            AttributeType::Derive,
        ] {
            if let Some(Attribute::Decrypt(v) | Attribute::Unwrap(v) | Attribute::Derive(v)) =
                one(t)
            {
                other = Some(other.unwrap_or(false) || v)
            }
        }
        p.other_use = other;
        p.one_mechanism = self
            .module
            .functions()
            .attribute_bytes(
                self.session.handle(),
                key.private.handle(),
                cryptoki_sys::CKA_ALLOWED_MECHANISMS,
            )
            .ok()
            .flatten()
            .map(|b| b.len() == std::mem::size_of::<cryptoki_sys::CK_MECHANISM_TYPE>());
        Ok(p)
    }

    /// Destroys both halves of `key`: the private half first, so that a
    /// failure never leaves a private key without its public half (which
    /// imgseal could then neither use nor name by its key).
    pub fn destroy_key(&self, key: &KeyObject) -> Result<()> {
        self.session.destroy_object(key.private)?;
        if let Some(public) = key.public {
            self.session.destroy_object(public)?;
        }
        Ok(())
    }
}

/// The mechanisms (`CKA_ALLOWED_MECHANISMS`) a generated private key of type
/// `algorithm` signs with: the raw, digest-in mechanism imgseal signs images,
/// manifests and CSRs with ([`SignMechanism`](crate::SignMechanism)
/// `RsaPss`, `Ecdsa` and `Dsa`), and nothing else. In particular not
/// `CKM_RSA_X_509` (raw RSA), `CKM_RSA_PKCS` (`SignMechanism::RsaPkcs1`,
/// which imgseal never uses) or the hash-and-sign variants.
pub(crate) fn allowed_mechanisms(
    algorithm: KeyAlgorithm,
) -> &'static [cryptoki_sys::CK_MECHANISM_TYPE] {
    match algorithm {
        KeyAlgorithm::Rsa => &[cryptoki_sys::CKM_RSA_PKCS_PSS],
        KeyAlgorithm::Ec => &[cryptoki_sys::CKM_ECDSA],
        KeyAlgorithm::Dsa => &[cryptoki_sys::CKM_DSA],
        KeyAlgorithm::Other(_) => &[],
    }
}

/// See [`Token::public_params`]; `None` where the token did not say.
#[derive(Debug, Default, PartialEq, Eq)]
struct PublicParams {
    key_type: Option<KeyAlgorithm>,
    value: Option<Vec<u8>>,
}

impl PublicParams {
    /// Whether the two can be halves of one key pair: equal wherever both are known.
    fn compatible(&self, other: &PublicParams) -> bool {
        fn agree<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
        }
        agree(&self.key_type, &other.key_type) && agree(&self.value, &other.value)
    }
}

fn algorithm_of(t: KeyType) -> KeyAlgorithm {
    if t == KeyType::RSA {
        KeyAlgorithm::Rsa
    } else if t == KeyType::EC {
        KeyAlgorithm::Ec
    } else if t == KeyType::DSA {
        KeyAlgorithm::Dsa
    } else {
        KeyAlgorithm::Other(cryptoki_sys::CK_KEY_TYPE::from(t))
    }
}

/// Generated keys against a real SoftHSM token, through cryptoki directly:
/// what their attributes say and what the token then refuses.
#[cfg(test)]
mod softhsm_tests {
    use std::path::Path;
    use std::process::Command;

    use cryptoki::error::RvError;
    use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
    use cryptoki::mechanism::{Mechanism, MechanismType};

    use super::*;
    use crate::module::{Module, TokenSelector};
    use crate::sign::{DigestMechanism, SignMechanism};

    fn softhsm_module() -> &'static Path {
        [
            "/usr/lib/softhsm/libsofthsm2.so",
            "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("softhsm2 installed")
    }

    /// One DER TLV at `*at`: its tag and contents; `*at` moves past it.
    fn tlv<'a>(der: &'a [u8], at: &mut usize) -> (u8, &'a [u8]) {
        let tag = der[*at];
        let mut len = der[*at + 1] as usize;
        *at += 2;
        if len & 0x80 != 0 {
            let n = len & 0x7f;
            len = der[*at..*at + n]
                .iter()
                .fold(0, |acc, &b| (acc << 8) | b as usize);
            *at += n;
        }
        let contents = &der[*at..*at + len];
        *at += len;
        (tag, contents)
    }

    /// DSA domain parameters (p, q, g) from the openssl CLI, as imgseal's own
    /// (FIPS 186-4, q of 256 bits for L = 2048).
    fn dsa_params() -> KeySpec {
        let out = Command::new("openssl")
            .args(["dsaparam", "-outform", "DER", "2048"])
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{out:?}");
        let mut at = 0;
        let (tag, seq) = tlv(&out.stdout, &mut at);
        assert_eq!(tag, 0x30);
        let mut at = 0;
        let mut int = || {
            let (tag, v) = tlv(seq, &mut at);
            assert_eq!(tag, 0x02);
            v.strip_prefix(&[0]).unwrap_or(v).to_vec()
        };
        let (p, q, g) = (int(), int(), int());
        KeySpec::Dsa { p, q, g }
    }

    #[track_caller]
    fn rv_of<T: std::fmt::Debug>(r: Result<T>) -> RvError {
        r.expect_err("the token refused").rv().expect("a CKR_ code")
    }

    #[test]
    fn generated_keys_sign_with_one_mechanism_and_cannot_be_changed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().display()
            ),
        )
        .unwrap();
        // SoftHSM reads its configuration at C_Initialize. This is the only
        // test in the crate that loads a module, and nothing else here
        // reads the environment from C.
        unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
        let module = Module::load(softhsm_module()).unwrap();
        module.init_token("keys-test", "12345678", "1234").unwrap();
        let slot = module
            .find_slot(&TokenSelector {
                label: Some("keys-test".into()),
                ..Default::default()
            })
            .unwrap();
        let token = module.open(slot, Some("1234"), true).unwrap();
        let session = token.session();

        let secp384r1 = vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
        let cases = [
            (KeySpec::Rsa { bits: 2048 }, cryptoki_sys::CKM_RSA_PKCS_PSS),
            (
                KeySpec::Ec {
                    params_der: secp384r1,
                },
                cryptoki_sys::CKM_ECDSA,
            ),
            (dsa_params(), cryptoki_sys::CKM_DSA),
        ];
        let digest = [0x5a; 32];
        for (i, (spec, mechanism)) in cases.iter().enumerate() {
            let what = format!("{spec:?}");
            let (key, weaker) = token
                .generate_key_pair(spec, &format!("k{i}"), &[i as u8], false)
                .unwrap();
            assert_eq!(weaker, [], "SoftHSM takes the whole template");
            let protection = token.key_protection(&key).unwrap();
            assert_eq!(protection.one_mechanism, Some(true), "{spec:?}");
            assert_eq!(protection.other_use, Some(false), "{spec:?}");
            assert_eq!(protection.modifiable, Some(false), "{spec:?}");
            let public = key.public.unwrap();

            // CKA_ALLOWED_MECHANISMS: imgseal's one mechanism for the type.
            // Read as bytes: cryptoki cannot map CKM_DSA back to a variant.
            let allowed =
                raw::get_attribute_bytes(&token, key.private, cryptoki_sys::CKA_ALLOWED_MECHANISMS)
                    .unwrap();
            assert_eq!(allowed, mechanism.to_ne_bytes(), "{what}");
            let attrs = session
                .get_attributes(
                    key.private,
                    &[
                        AttributeType::Modifiable,
                        AttributeType::SignRecover,
                        AttributeType::Sign,
                        AttributeType::Decrypt,
                    ],
                )
                .unwrap();
            assert_eq!(
                attrs,
                [
                    Attribute::Modifiable(false),
                    Attribute::SignRecover(false),
                    Attribute::Sign(true),
                    Attribute::Decrypt(false),
                ],
                "{what}"
            );
            assert_eq!(
                session
                    .get_attributes(public, &[AttributeType::Modifiable])
                    .unwrap(),
                [Attribute::Modifiable(false)],
                "{what}"
            );

            // No C_SetAttributeValue turns on decryption (or anything else).
            let refused = session.update_attributes(key.private, &[Attribute::Decrypt(true)]);
            assert_eq!(
                rv_of(refused.map_err(HsmError::from)),
                RvError::ActionProhibited,
                "{what}"
            );
            let refused = session.update_attributes(public, &[Attribute::Encrypt(true)]);
            assert_eq!(
                rv_of(refused.map_err(HsmError::from)),
                RvError::ActionProhibited,
                "{what}"
            );
            assert_eq!(
                session
                    .get_attributes(key.private, &[AttributeType::Decrypt])
                    .unwrap(),
                [Attribute::Decrypt(false)],
                "{what}"
            );

            // imgseal's own mechanism signs, and the signature verifies.
            let own = match spec {
                KeySpec::Rsa { .. } => SignMechanism::RsaPss {
                    digest: DigestMechanism::Sha256,
                    salt_len: 222,
                },
                KeySpec::Ec { .. } => SignMechanism::Ecdsa,
                KeySpec::Dsa { .. } => SignMechanism::Dsa,
            };
            let sig = token.sign_digest(key.private, &own, &digest).unwrap();
            assert!(
                token.verify_digest(public, &own, &digest, &sig).unwrap(),
                "{what}"
            );

            // Any other mechanism is refused at C_SignInit.
            let others: Vec<Mechanism> = match spec {
                KeySpec::Rsa { .. } => vec![
                    Mechanism::RsaX509,
                    Mechanism::RsaPkcs,
                    Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
                        hash_alg: MechanismType::SHA256,
                        mgf: PkcsMgfType::MGF1_SHA256,
                        s_len: 32.into(),
                    }),
                ],
                KeySpec::Ec { .. } => vec![Mechanism::EcdsaSha256],
                KeySpec::Dsa { .. } => vec![raw::mechanism_by_number(0x12)], // CKM_DSA_SHA1
            };
            for m in &others {
                let input = match m {
                    Mechanism::RsaX509 => vec![0x01; 256],
                    _ => digest.to_vec(),
                };
                let refused = session.sign(m, key.private, &input);
                assert_eq!(
                    rv_of(refused.map_err(HsmError::from)),
                    RvError::MechanismInvalid,
                    "{what}: {:?}",
                    m.mechanism_type()
                );
            }
            if matches!(spec, KeySpec::Rsa { .. }) {
                assert_eq!(
                    rv_of(token.sign_digest(key.private, &SignMechanism::RsaPkcs1, &digest)),
                    RvError::MechanismInvalid
                );
            }

            // Not modifiable is not undeletable.
            token.destroy_key(&key).unwrap();
        }
    }
}
