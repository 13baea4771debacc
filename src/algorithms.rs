//! The algorithm vocabulary of Glance image signatures: hash methods, key types,
//! curves, and the kinds of key imgseal can generate.

use std::fmt;
use std::str::FromStr;

use openssl::hash::MessageDigest;
use openssl::nid::Nid;

use crate::error::{Error, Result};

/// `img_signature_hash_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashMethod {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashMethod {
    pub const ALL: [HashMethod; 4] = [Self::Sha224, Self::Sha256, Self::Sha384, Self::Sha512];

    /// The exact spelling Glance and cursive use.
    pub fn glance_name(self) -> &'static str {
        match self {
            Self::Sha224 => "SHA-224",
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        }
    }

    /// Exact, case-sensitive lookup, as cursive's `HASH_METHODS` does.
    pub fn from_glance(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.glance_name() == name)
    }

    pub fn message_digest(self) -> MessageDigest {
        match self {
            Self::Sha224 => MessageDigest::sha224(),
            Self::Sha256 => MessageDigest::sha256(),
            Self::Sha384 => MessageDigest::sha384(),
            Self::Sha512 => MessageDigest::sha512(),
        }
    }

    pub fn output_len(self) -> usize {
        match self {
            Self::Sha224 => 28,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    pub fn digest_mechanism(self) -> imgseal_hsm::DigestMechanism {
        match self {
            Self::Sha224 => imgseal_hsm::DigestMechanism::Sha224,
            Self::Sha256 => imgseal_hsm::DigestMechanism::Sha256,
            Self::Sha384 => imgseal_hsm::DigestMechanism::Sha384,
            Self::Sha512 => imgseal_hsm::DigestMechanism::Sha512,
        }
    }
}

impl fmt::Display for HashMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.glance_name())
    }
}

/// On the command line users may write `sha256`, `SHA256` or `SHA-256`;
/// in image properties only the exact Glance name is accepted.
impl FromStr for HashMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let folded: String = s
            .chars()
            .filter(|c| *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        Self::ALL
            .into_iter()
            .find(|h| h.glance_name().replace('-', "") == folded)
            .ok_or_else(|| {
                Error::usage(format!(
                    "unknown hash method \"{s}\" (expected SHA-224, SHA-256, SHA-384 or SHA-512)"
                ))
            })
    }
}

/// The named curves of the Glance key-type table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    Secp384r1,
    Secp521r1,
    Sect409k1,
    Sect409r1,
    Sect571k1,
    Sect571r1,
}

impl Curve {
    pub const ALL: [Curve; 6] = [
        Self::Secp384r1,
        Self::Secp521r1,
        Self::Sect409k1,
        Self::Sect409r1,
        Self::Sect571k1,
        Self::Sect571r1,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Secp384r1 => "secp384r1",
            Self::Secp521r1 => "secp521r1",
            Self::Sect409k1 => "sect409k1",
            Self::Sect409r1 => "sect409r1",
            Self::Sect571k1 => "sect571k1",
            Self::Sect571r1 => "sect571r1",
        }
    }

    pub fn nid(self) -> Nid {
        match self {
            Self::Secp384r1 => Nid::SECP384R1,
            Self::Secp521r1 => Nid::SECP521R1,
            Self::Sect409k1 => Nid::SECT409K1,
            Self::Sect409r1 => Nid::SECT409R1,
            Self::Sect571k1 => Nid::SECT571K1,
            Self::Sect571r1 => Nid::SECT571R1,
        }
    }

    pub fn from_nid(nid: Nid) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.nid() == nid)
    }

    /// The curve's OID arc under certicom (1.3.132.0.N).
    pub fn certicom_arc(self) -> u8 {
        match self {
            Self::Secp384r1 => 34,
            Self::Secp521r1 => 35,
            Self::Sect409k1 => 36,
            Self::Sect409r1 => 37,
            Self::Sect571k1 => 38,
            Self::Sect571r1 => 39,
        }
    }

    /// `CKA_EC_PARAMS`: the DER of the curve's OID.
    /// The field size in bits, as `C_GetMechanismInfo` states EC key sizes.
    pub fn bits(self) -> u64 {
        match self {
            Self::Secp384r1 => 384,
            Self::Secp521r1 => 521,
            Self::Sect409k1 | Self::Sect409r1 => 409,
            Self::Sect571k1 | Self::Sect571r1 => 571,
        }
    }

    /// A curve over F_2^m (PKCS#11 `CKF_EC_F_2M`), not over F_p.
    pub fn is_binary(self) -> bool {
        !matches!(self, Self::Secp384r1 | Self::Secp521r1)
    }

    pub fn params_der(self) -> Vec<u8> {
        // 1.3.132.0.N encodes as 2B 81 04 00 N.
        vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, self.certicom_arc()]
    }

    pub fn from_params_der(der: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.params_der() == der)
    }

    /// The hash that matches the curve's strength, for CSRs.
    pub fn natural_hash(self) -> HashMethod {
        match self {
            Self::Secp384r1 | Self::Sect409k1 | Self::Sect409r1 => HashMethod::Sha384,
            Self::Secp521r1 | Self::Sect571k1 | Self::Sect571r1 => HashMethod::Sha512,
        }
    }
}

/// `img_signature_key_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GlanceKeyType {
    RsaPss,
    Dsa,
    Ecc(Curve),
}

impl GlanceKeyType {
    pub fn all() -> Vec<GlanceKeyType> {
        let mut v = vec![Self::RsaPss, Self::Dsa];
        v.extend(Curve::ALL.into_iter().map(Self::Ecc));
        v
    }

    pub fn glance_name(self) -> String {
        match self {
            Self::RsaPss => "RSA-PSS".into(),
            Self::Dsa => "DSA".into(),
            Self::Ecc(c) => format!("ECC_{}", c.name().to_ascii_uppercase()),
        }
    }

    /// Exact, case-sensitive lookup, as cursive's `SignatureKeyType.lookup` does.
    pub fn from_glance(name: &str) -> Option<Self> {
        Self::all().into_iter().find(|k| k.glance_name() == name)
    }
}

impl fmt::Display for GlanceKeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.glance_name())
    }
}

/// A key imgseal can generate in a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    RsaPss { bits: u32 },
    Dsa { bits: u32 },
    Ec(Curve),
}

impl KeyKind {
    pub fn all() -> Vec<KeyKind> {
        let mut v = vec![
            Self::RsaPss { bits: 2048 },
            Self::RsaPss { bits: 3072 },
            Self::RsaPss { bits: 4096 },
            Self::Dsa { bits: 2048 },
            Self::Dsa { bits: 3072 },
        ];
        v.extend(Curve::ALL.into_iter().map(Self::Ec));
        v
    }

    pub fn glance_key_type(self) -> GlanceKeyType {
        match self {
            Self::RsaPss { .. } => GlanceKeyType::RsaPss,
            Self::Dsa { .. } => GlanceKeyType::Dsa,
            Self::Ec(c) => GlanceKeyType::Ecc(c),
        }
    }

    /// The hash a CSR made with this key uses by default.
    pub fn natural_hash(self) -> HashMethod {
        match self {
            Self::RsaPss { .. } | Self::Dsa { .. } => HashMethod::Sha256,
            Self::Ec(c) => c.natural_hash(),
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RsaPss { bits } => write!(f, "rsa-pss-{bits}"),
            Self::Dsa { bits } => write!(f, "dsa-{bits}"),
            Self::Ec(c) => write!(f, "ecc-{}", c.name()),
        }
    }
}

impl FromStr for KeyKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        Self::all()
            .into_iter()
            .find(|k| k.to_string() == lower)
            .ok_or_else(|| {
                let names: Vec<String> = Self::all().iter().map(|k| k.to_string()).collect();
                Error::usage(format!(
                    "unknown key type \"{s}\" (expected one of: {})",
                    names.join(", ")
                ))
            })
    }
}

/// PSS's largest salt for a modulus of `modulus_bits` and this hash (RFC 8017 §9.1.1).
/// A modulus too small to hold the hash and PSS's two extra bytes is bad input
/// (an imported key, for instance): RSA-PSS cannot be made with it.
pub fn pss_max_salt_len(modulus_bits: usize, hash: HashMethod) -> Result<usize> {
    modulus_bits
        .checked_sub(1)
        .map(|bits| bits.div_ceil(8))
        .and_then(|em_len| em_len.checked_sub(hash.output_len() + 2))
        .ok_or_else(|| {
            Error::bad_input(format!(
                "an RSA key of {modulus_bits} bits is too small for RSA-PSS with {}",
                hash.glance_name()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glance_names_are_exact_and_case_sensitive() {
        assert_eq!(HashMethod::from_glance("SHA-256"), Some(HashMethod::Sha256));
        assert_eq!(HashMethod::from_glance("sha-256"), None);
        assert_eq!(HashMethod::from_glance("SHA256"), None);
        assert_eq!(
            GlanceKeyType::from_glance("ECC_SECT571K1"),
            Some(GlanceKeyType::Ecc(Curve::Sect571k1))
        );
        assert_eq!(GlanceKeyType::from_glance("ecc_sect571k1"), None);
        assert_eq!(GlanceKeyType::from_glance("ECC_SECP256R1"), None);
        assert_eq!(GlanceKeyType::all().len(), 8);
    }

    #[test]
    fn cli_hash_names_are_forgiving() {
        for s in ["sha256", "SHA256", "SHA-256", "sha-256"] {
            assert_eq!(s.parse::<HashMethod>().unwrap(), HashMethod::Sha256);
        }
        assert!("md5".parse::<HashMethod>().is_err());
    }

    #[test]
    fn key_kinds_round_trip() {
        for k in KeyKind::all() {
            assert_eq!(k.to_string().parse::<KeyKind>().unwrap(), k);
        }
        assert!("rsa-1024".parse::<KeyKind>().is_err());
    }

    #[test]
    fn curve_params_match_openssl() {
        for c in Curve::ALL {
            // The SPKI openssl writes for a key on the curve carries our CKA_EC_PARAMS bytes.
            let group = openssl::ec::EcGroup::from_curve_name(c.nid()).unwrap();
            let key = openssl::ec::EcKey::generate(&group).unwrap();
            let spki = key.public_key_to_der().unwrap();
            let params = c.params_der();
            assert!(
                spki.windows(params.len()).any(|w| w == params),
                "{}",
                c.name()
            );
            assert_eq!(Curve::from_params_der(&params), Some(c));
        }
    }

    #[test]
    fn pss_max_salt_matches_known_values() {
        assert_eq!(pss_max_salt_len(2048, HashMethod::Sha256).unwrap(), 222);
        assert_eq!(pss_max_salt_len(3072, HashMethod::Sha256).unwrap(), 350);
        assert_eq!(pss_max_salt_len(3072, HashMethod::Sha384).unwrap(), 334);
        assert_eq!(pss_max_salt_len(2048, HashMethod::Sha512).unwrap(), 190);
    }

    #[test]
    fn pss_max_salt_of_a_too_small_key_is_an_error_not_an_underflow() {
        // emLen = hLen + 2 exactly: a salt of 0 still fits.
        assert_eq!(pss_max_salt_len(528, HashMethod::Sha512).unwrap(), 0);
        assert_eq!(pss_max_salt_len(400, HashMethod::Sha384).unwrap(), 0);
        for (bits, hash) in [
            (520, HashMethod::Sha512),
            (512, HashMethod::Sha512),
            (392, HashMethod::Sha384),
            (256, HashMethod::Sha256),
            (1, HashMethod::Sha224),
            (0, HashMethod::Sha256),
        ] {
            let err = pss_max_salt_len(bits, hash).unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::BadInput);
            assert_eq!(
                err.to_string(),
                format!(
                    "an RSA key of {bits} bits is too small for RSA-PSS with {}",
                    hash.glance_name()
                )
            );
        }
    }
}
