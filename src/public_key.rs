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
