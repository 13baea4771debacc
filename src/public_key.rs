//! Public keys: built from what a token stores, or read from certificates, and
//! classified into the Glance key types.

use imgseal_hsm::PublicKeyParts;
use openssl::bn::{BigNum, BigNumContext};
use openssl::dsa::Dsa;
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Rsa;

use crate::algorithms::{Curve, GlanceKeyType, KeyKind};
use crate::error::{Error, Result};

/// A public key with its classification.
#[derive(Clone)]
pub struct PublicKey {
    pub pkey: PKey<Public>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.describe())
    }
}

/// What a key is, in the terms the Glance table and users need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClass {
    Rsa {
        bits: u32,
    },
    Dsa {
        bits: u32,
    },
    Ec {
        curve: Option<Curve>,
        nid: Option<openssl::nid::Nid>,
    },
    Other(Id),
}

impl PublicKey {
    pub fn from_parts(parts: &PublicKeyParts) -> Result<Self> {
        let bn =
            |v: &[u8]| BigNum::from_slice(v).map_err(|e| Error::crypto("bad key component", e));
        let pkey = match parts {
            PublicKeyParts::Rsa { modulus, exponent } => {
                let rsa = Rsa::from_public_components(bn(modulus)?, bn(exponent)?)
                    .map_err(|e| Error::crypto("RSA public key", e))?;
                PKey::from_rsa(rsa)
            }
            PublicKeyParts::Ec { params_der, point } => {
                let curve = Curve::from_params_der(params_der).ok_or_else(|| {
                    Error::bad_input(format!(
                        "the token's EC key is on a curve outside the Glance table (CKA_EC_PARAMS {})",
                        hex::encode(params_der)
                    ))
                })?;
                let group = EcGroup::from_curve_name(curve.nid())
                    .map_err(|e| Error::crypto("EC group", e))?;
                let raw_point = unwrap_octet_string(point).unwrap_or(point);
                let mut ctx = BigNumContext::new().map_err(|e| Error::crypto("bignum", e))?;
                let point = EcPoint::from_bytes(&group, raw_point, &mut ctx)
                    .map_err(|e| Error::crypto("EC point", e))?;
                let key = EcKey::from_public_key(&group, &point)
                    .map_err(|e| Error::crypto("EC public key", e))?;
                PKey::from_ec_key(key)
            }
            PublicKeyParts::Dsa { p, q, g, y } => {
                let dsa = Dsa::from_public_components(bn(p)?, bn(q)?, bn(g)?, bn(y)?)
                    .map_err(|e| Error::crypto("DSA public key", e))?;
                PKey::from_dsa(dsa)
            }
        }
        .map_err(|e| Error::crypto("public key", e))?;
        Ok(PublicKey { pkey })
    }

    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let pkey = PKey::public_key_from_der(der).map_err(|e| {
            Error::bad_input(format!(
                "not a SubjectPublicKeyInfo: {}",
                crate::error::openssl_reason(&e)
            ))
        })?;
        Ok(PublicKey { pkey })
    }

    pub fn spki_der(&self) -> Result<Vec<u8>> {
        self.pkey
            .public_key_to_der()
            .map_err(|e| Error::crypto("encoding the public key", e))
    }

    pub fn pem(&self) -> Result<String> {
        let pem = self
            .pkey
            .public_key_to_pem()
            .map_err(|e| Error::crypto("encoding the public key", e))?;
        Ok(String::from_utf8_lossy(&pem).into_owned())
    }

    pub fn class(&self) -> KeyClass {
        match self.pkey.id() {
            Id::RSA | Id::RSA_PSS => KeyClass::Rsa {
                bits: self.pkey.bits(),
            },
            Id::DSA => KeyClass::Dsa {
                bits: self.pkey.bits(),
            },
            Id::EC => {
                let nid = self.pkey.ec_key().ok().and_then(|k| k.group().curve_name());
                KeyClass::Ec {
                    curve: nid.and_then(Curve::from_nid),
                    nid,
                }
            }
            other => KeyClass::Other(other),
        }
    }

    /// The Glance key type that matches this key, if any.
    pub fn glance_key_type(&self) -> Option<GlanceKeyType> {
        match self.class() {
            KeyClass::Rsa { .. } => Some(GlanceKeyType::RsaPss),
            KeyClass::Dsa { .. } => Some(GlanceKeyType::Dsa),
            KeyClass::Ec { curve: Some(c), .. } => Some(GlanceKeyType::Ecc(c)),
            _ => None,
        }
    }

    /// The generation kind, for keys imgseal could have made.
    pub fn key_kind(&self) -> Option<KeyKind> {
        match self.class() {
            KeyClass::Rsa { bits } => Some(KeyKind::RsaPss { bits }),
            KeyClass::Dsa { bits } => Some(KeyKind::Dsa { bits }),
            KeyClass::Ec { curve: Some(c), .. } => Some(KeyKind::Ec(c)),
            _ => None,
        }
    }

    /// "RSA 3072", "EC secp384r1", "DSA 2048"…
    pub fn describe(&self) -> String {
        match self.class() {
            KeyClass::Rsa { bits } => format!("RSA {bits}"),
            KeyClass::Dsa { bits } => format!("DSA {bits}"),
            KeyClass::Ec { nid, .. } => format!(
                "EC {}",
                nid.and_then(|n| n.short_name().ok())
                    .unwrap_or("(unnamed curve)")
            ),
            KeyClass::Other(id) => format!("key type {}", id.as_raw()),
        }
    }

    pub fn same_key(&self, other: &PublicKey) -> bool {
        self.pkey.public_eq(&other.pkey)
    }
}

/// RFC 4055 §3.1 restrictions of an id-RSASSA-PSS key: the signatures its
/// holder may make. Absent parameters mean no restriction (§3.1: "any").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PssRestrictions {
    pub hash: openssl::nid::Nid,
    /// `None` when the mask generation function is not MGF1.
    pub mgf1_hash: Option<openssl::nid::Nid>,
    pub min_salt: u8,
}

impl PssRestrictions {
    /// Why a PSS signature with `hash` (and MGF1 over the same hash, as
    /// Glance's scheme fixes it) and a salt of `salt` bytes breaks them.
    pub fn broken_by(
        &self,
        hash: crate::algorithms::HashMethod,
        salt: Option<usize>,
    ) -> Option<String> {
        let name = |n: openssl::nid::Nid| n.short_name().unwrap_or("an unknown hash").to_string();
        let used = hash.message_digest().type_();
        if self.hash != used {
            return Some(format!(
                "the key is restricted to {} (RFC 4055), the signature uses {hash}",
                name(self.hash)
            ));
        }
        match self.mgf1_hash {
            Some(m) if m == used => {}
            Some(m) => {
                return Some(format!(
                    "the key is restricted to MGF1 with {} (RFC 4055), the signature uses MGF1 with {hash}",
                    name(m)
                ));
            }
            None => {
                return Some(
                    "the key is restricted to a mask generation function other than MGF1 (RFC 4055)"
                        .into(),
                );
            }
        }
        match salt {
            Some(s) if s < usize::from(self.min_salt) => Some(format!(
                "the key requires a salt of at least {} bytes (RFC 4055), the signature's salt is {s} bytes",
                self.min_salt
            )),
            _ => None,
        }
    }
}

impl PublicKey {
    /// The key's PSS restrictions, for an id-RSASSA-PSS key with parameters.
    /// Parameters that cannot be read (a trailerField other than 1, a salt
    /// length over 255) are an error: the key is unusable under RFC 4055.
    pub fn pss_restrictions(&self) -> Result<Option<PssRestrictions>> {
        use der::{Decode, Encode};
        if self.pkey.id() != Id::RSA_PSS {
            return Ok(None);
        }
        let bad = |e: String| Error::bad_input(format!("the RSASSA-PSS key's parameters: {e}"));
        let der = self.spki_der()?;
        let spki = spki::SubjectPublicKeyInfoRef::from_der(&der).map_err(|e| bad(e.to_string()))?;
        let Some(params) = spki.algorithm.parameters else {
            return Ok(None);
        };
        let params_der = params.to_der().map_err(|e| bad(e.to_string()))?;
        let params = pkcs1::RsaPssParams::from_der(&params_der).map_err(|e| bad(e.to_string()))?;
        let nid = |oid: der::asn1::ObjectIdentifier| {
            openssl::asn1::Asn1Object::from_str(&oid.to_string())
                .map(|o| o.nid())
                .map_err(|e| bad(e.to_string()))
        };
        let mgf1_hash = if params.mask_gen.oid == const_oid::db::rfc5912::ID_MGF_1 {
            match params.mask_gen.parameters {
                Some(h) => Some(nid(h.oid)?),
                None => return Err(bad("MGF1 without its hash".into())),
            }
        } else {
            None
        };
        Ok(Some(PssRestrictions {
            hash: nid(params.hash.oid)?,
            mgf1_hash,
            min_salt: params.salt_len,
        }))
    }

    /// Why this key is unsafe to accept signatures from, if it is: an RSA
    /// exponent that is even, 1 or (unless `allow_small_exponent`) below
    /// 65537, or above 2^256 (NIST SP 800-89 §5.3.3, RFC 3279 §2.3.1); and
    /// whatever OpenSSL's own public-key check refuses: an RSA modulus that
    /// is even, prime or has a small factor (SP 800-56B), DSA domain
    /// parameters of a size pair FIPS 186-4 does not allow or a generator not
    /// of order q, a DSA y outside [2, p-2] or not of order q, an EC point
    /// that is at infinity, off the curve or not of the group's order.
    pub fn weakness(&self, allow_small_exponent: bool) -> Option<String> {
        // OpenSSL's public-key check tests an RSA modulus for small factors
        // and primality: ~20 ms for 3072 bits. An audit checks one key per
        // image and policy, hundreds of times: each key is judged once.
        type Judged = std::collections::HashMap<(Vec<u8>, bool), Option<String>>;
        static JUDGED: std::sync::OnceLock<std::sync::Mutex<Judged>> = std::sync::OnceLock::new();
        let Ok(der) = self.spki_der() else {
            return self.judge_weakness(allow_small_exponent);
        };
        let judged = JUDGED.get_or_init(Default::default);
        let key = (der, allow_small_exponent);
        if let Some(known) = judged.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return known.clone();
        }
        let verdict = self.judge_weakness(allow_small_exponent);
        judged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, verdict.clone());
        verdict
    }

    fn judge_weakness(&self, allow_small_exponent: bool) -> Option<String> {
        match self.pkey.id() {
            Id::RSA | Id::RSA_PSS => {
                let rsa = self.pkey.rsa().ok()?;
                let e = rsa.e();
                let small = BigNum::from_u32(65537).ok()?;
                if !e.is_bit_set(0) {
                    return Some(format!("the RSA public exponent {e} is even"));
                }
                if e.num_bits() <= 1 {
                    return Some(format!(
                        "the RSA public exponent is {e}: anyone can make its signatures"
                    ));
                }
                if e.num_bits() > 256 {
                    return Some("the RSA public exponent is above 2^256 (NIST SP 800-89)".into());
                }
                if *e < *small {
                    if !allow_small_exponent {
                        return Some(format!(
                            "the RSA public exponent {e} is below 65537 (allow_small_rsa_exponent permits odd exponents from 3)"
                        ));
                    }
                    // OpenSSL's check requires e >= 65537 too; the
                    // modulus checks it would make are skipped for the
                    // exponents the user opted into.
                    return None;
                }
                openssl_public_check(&self.pkey, false)
            }
            Id::DSA => openssl_public_check(&self.pkey, true),
            Id::EC => openssl_public_check(&self.pkey, false),
            _ => None,
        }
    }
}

/// OpenSSL's `EVP_PKEY_public_check` (and `EVP_PKEY_param_check` for domain
/// parameters), which the `openssl` crate does not wrap. The failure reads as
/// OpenSSL's reason.
fn openssl_public_check(pkey: &PKey<Public>, params: bool) -> Option<String> {
    use foreign_types::ForeignType;
    let ctx = openssl::pkey_ctx::PkeyCtx::new(pkey).ok()?;
    let check = |what: &str, f: unsafe extern "C" fn(*mut openssl_sys::EVP_PKEY_CTX) -> i32| {
        // SAFETY: ctx is a live EVP_PKEY_CTX for the duration of the call.
        let rc = unsafe { f(ctx.as_ptr()) };
        let errors = openssl::error::ErrorStack::get();
        (rc != 1).then(|| {
            format!(
                "OpenSSL refuses the {what} ({})",
                crate::error::openssl_reason(&errors)
            )
        })
    };
    let family = key_family(pkey);
    params
        .then(|| {
            check(
                &format!("{family} domain parameters"),
                openssl_sys::EVP_PKEY_param_check,
            )
        })
        .flatten()
        .or_else(|| {
            check(
                &format!("{family} public key"),
                openssl_sys::EVP_PKEY_public_check,
            )
        })
}

fn key_family(pkey: &PKey<Public>) -> &'static str {
    match pkey.id() {
        Id::DSA => "DSA",
        Id::EC => "EC",
        _ => "RSA",
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point; some modules send the
/// bare point. Returns the bare point when `data` is a well-formed wrapper.
fn unwrap_octet_string(data: &[u8]) -> Option<&[u8]> {
    if data.len() < 2 || data[0] != 0x04 {
        return None;
    }
    let (len, header) = match data[1] {
        n if n < 0x80 => (n as usize, 2),
        0x81 if data.len() > 2 => (data[2] as usize, 3),
        0x82 if data.len() > 3 => (((data[2] as usize) << 8) | data[3] as usize, 4),
        _ => return None,
    };
    (data.len() == header + len).then(|| &data[header..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_points_with_and_without_the_octet_string() {
        let group = EcGroup::from_curve_name(Curve::Sect571k1.nid()).unwrap();
        let key = EcKey::generate(&group).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let bare = key
            .public_key()
            .to_bytes(
                &group,
                openssl::ec::PointConversionForm::UNCOMPRESSED,
                &mut ctx,
            )
            .unwrap();
        let mut wrapped = vec![0x04, 0x81, bare.len() as u8];
        wrapped.extend_from_slice(&bare);
        for point in [wrapped, bare] {
            let pk = PublicKey::from_parts(&PublicKeyParts::Ec {
                params_der: Curve::Sect571k1.params_der(),
                point,
            })
            .unwrap();
            assert_eq!(
                pk.glance_key_type(),
                Some(GlanceKeyType::Ecc(Curve::Sect571k1))
            );
            assert_eq!(pk.describe(), "EC sect571k1");
        }
    }

    #[test]
    fn p256_is_not_a_glance_key_type() {
        let group = EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = EcKey::generate(&group).unwrap();
        let pk = PublicKey::from_spki_der(&key.public_key_to_der().unwrap()).unwrap();
        assert_eq!(pk.glance_key_type(), None);
        assert_eq!(pk.describe(), "EC prime256v1");
    }
}
