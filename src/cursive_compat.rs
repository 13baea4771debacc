//! The parts of cursive's signature path that differ from imgseal's strict
//! reading, reproduced for `--policy nova`: Python's lenient base64, the key
//! types cursive registers with today's cryptography, and its messages.

use crate::algorithms::{Curve, GlanceKeyType, HashMethod};
use crate::glance::RawProperties;

/// `SignatureVerificationError`'s text: cursive formats every reason this way.
pub fn signature_error(reason: &str) -> String {
    format!("Signature verification for the image failed: {reason}.")
}

/// The key types cursive 0.3.1 registers with cryptography ≥ 47, which
/// dropped the binary curves.
pub fn registered_key_type(name: &str) -> Option<GlanceKeyType> {
    match name {
        "RSA-PSS" => Some(GlanceKeyType::RsaPss),
        "DSA" => Some(GlanceKeyType::Dsa),
        "ECC_SECP384R1" => Some(GlanceKeyType::Ecc(Curve::Secp384r1)),
        "ECC_SECP521R1" => Some(GlanceKeyType::Ecc(Curve::Secp521r1)),
        _ => None,
    }
}

/// The curves cryptography ≥ 47 loads keys on (it dropped the binary ones,
/// and it refuses explicit, unnamed curve parameters).
const CRYPTOGRAPHY_CURVES: [openssl::nid::Nid; 9] = [
    openssl::nid::Nid::X9_62_PRIME192V1,
    openssl::nid::Nid::SECP224R1,
    openssl::nid::Nid::X9_62_PRIME256V1,
    openssl::nid::Nid::SECP384R1,
    openssl::nid::Nid::SECP521R1,
    openssl::nid::Nid::SECP256K1,
    openssl::nid::Nid::BRAINPOOL_P256R1,
    openssl::nid::Nid::BRAINPOOL_P384R1,
    openssl::nid::Nid::BRAINPOOL_P512R1,
];

/// Whether cryptography's `certificate.public_key()` raises for this key:
/// cursive calls it unguarded (`get_public_key`, and `is_issuer` when
/// validating), so Nova fails with an internal error. `Some` is the message
/// imgseal reports instead.
pub fn unloadable_key(key: &crate::public_key::PublicKey, whose: &str) -> Option<String> {
    if let Some(reason) = rsa_refused_on_load(key) {
        return Some(format!(
            "cursive cannot load the public key of {whose}: cryptography raises an uncaught ValueError ({reason}) for {} (Nova would fail with an internal error)",
            key.describe()
        ));
    }
    let crate::public_key::KeyClass::Ec { nid, curve } = key.class() else {
        return None;
    };
    if nid.is_some_and(|n| CRYPTOGRAPHY_CURVES.contains(&n)) {
        return None;
    }
    let oid = curve.map(|c| format!("1.3.132.0.{}", c.certicom_arc()));
    Some(format!(
        "cursive cannot load the public key of {whose}: cryptography raises an uncaught UnsupportedAlgorithm ({}) for {} (Nova would fail with an internal error)",
        match &oid {
            Some(oid) => format!("Curve {oid} is not supported"),
            None => "the curve is not supported".into(),
        },
        key.describe()
    ))
}

/// cryptography (≥ 42) checks an RSA public key as it loads it, with these
/// messages; OpenSSL loads any.
fn rsa_refused_on_load(key: &crate::public_key::PublicKey) -> Option<&'static str> {
    let rsa = key.pkey.rsa().ok()?;
    let three = openssl::bn::BigNum::from_u32(3).ok()?;
    if *rsa.n() < *three {
        Some("n must be >= 3.")
    } else if *rsa.e() < *three || *rsa.e() >= *rsa.n() {
        Some("e must be >= 3 and < n.")
    } else if !rsa.e().is_bit_set(0) {
        Some("e must be odd.")
    } else {
        None
    }
}

/// What cursive makes of the properties before it fetches the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursiveSignature {
    pub signature: Vec<u8>,
    pub hash_method: HashMethod,
    pub key_type: GlanceKeyType,
    pub cert_uuid: String,
}

/// cursive's `get_verifier` checks, in its order, with its messages. `Err`
/// carries the message Nova would log.
pub fn check_properties(raw: &RawProperties) -> Result<CursiveSignature, String> {
    // The dict cursive iterates names the certificate property img_signature_uuid.
    let order = [
        ("img_signature_uuid", &raw.cert_uuid),
        ("img_signature_hash_method", &raw.hash_method),
        ("img_signature", &raw.signature),
        ("img_signature_key_type", &raw.key_type),
    ];
    for (key, value) in order {
        if value.is_none() {
            return Err(signature_error(&format!(
                "Required image properties for signature verification do not exist. Cannot verify signature. Missing property: {key}"
            )));
        }
    }
    let text = raw.signature.as_deref().unwrap_or_default();
    if !text.is_ascii() {
        return Err(
            "cursive cannot read this img_signature: it holds non-ASCII characters, and oslo's base64 decoding raises an uncaught UnicodeEncodeError (Nova would fail with an internal error)".into(),
        );
    }
    let signature = python_b64decode(text.as_bytes())
        .map_err(|_| signature_error("The signature data was not properly encoded using base64"))?;
    let hash_name = raw.hash_method.as_deref().unwrap_or_default();
    let hash_method = HashMethod::from_glance(hash_name)
        .ok_or_else(|| signature_error(&format!("Invalid signature hash method: {hash_name}")))?;
    let key_name = raw.key_type.as_deref().unwrap_or_default();
    let key_type = registered_key_type(key_name)
        .ok_or_else(|| signature_error(&format!("Invalid signature key type: {key_name}")))?;
    Ok(CursiveSignature {
        signature,
        hash_method,
        key_type,
        cert_uuid: raw.cert_uuid.clone().unwrap_or_default(),
    })
}

/// CPython 3.11's `binascii.a2b_base64` in non-strict mode, which
/// `base64.b64decode(s)` (validate=False) uses: characters outside the
/// alphabet are skipped, and a pad after two or three data characters ends
/// the input.
pub fn python_b64decode(input: &[u8]) -> Result<Vec<u8>, &'static str> {
    fn value(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    // `pads` counts '=' runs, which can be as long as the input.
    let (mut quad_pos, mut pads, mut left) = (0u8, 0usize, 0u8);
    for &c in input {
        if c == b'=' {
            pads += 1;
            if quad_pos >= 2 && quad_pos as usize + pads >= 4 {
                return Ok(out);
            }
            continue;
        }
        let Some(v) = value(c) else { continue };
        pads = 0;
        match quad_pos {
            0 => {
                quad_pos = 1;
                left = v;
            }
            1 => {
                quad_pos = 2;
                out.push((left << 2) | (v >> 4));
                left = v & 0x0f;
            }
            2 => {
                quad_pos = 3;
                out.push((left << 4) | (v >> 2));
                left = v & 0x03;
            }
            _ => {
                quad_pos = 0;
                out.push((left << 6) | v);
                left = 0;
            }
        }
    }
    match quad_pos {
        0 => Ok(out),
        1 => Err("number of data characters cannot be 1 more than a multiple of 4"),
        _ => Err("Incorrect padding"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_as_lenient_as_python() {
        assert_eq!(python_b64decode(b"AAEC").unwrap(), [0, 1, 2]);
        assert_eq!(python_b64decode(b"AA\nE!C").unwrap(), [0, 1, 2]);
        assert_eq!(python_b64decode(b"AAE=").unwrap(), [0, 1]);
        assert_eq!(python_b64decode(b"AAE=garbage").unwrap(), [0, 1]);
        assert_eq!(python_b64decode(b"AA==").unwrap(), [0]);
        assert!(python_b64decode(b"AAE").is_err());
        assert!(python_b64decode(b"A").is_err());
        assert_eq!(python_b64decode(b"").unwrap(), Vec::<u8>::new());
        // Found by fuzzing: a run of more than 255 pads overflowed the counter.
        assert_eq!(python_b64decode(&[b'='; 300]).unwrap(), Vec::<u8>::new());
        let mut long = b"A".to_vec();
        long.extend([b'='; 1000]);
        assert!(python_b64decode(&long).is_err());
    }

    #[test]
    fn messages_are_cursive_s() {
        let raw = RawProperties {
            signature: Some("AAEC".into()),
            hash_method: Some("SHA-256".into()),
            key_type: Some("ECC_SECT571K1".into()),
            cert_uuid: None,
        };
        assert_eq!(
            check_properties(&raw).unwrap_err(),
            "Signature verification for the image failed: Required image properties for signature verification do not exist. Cannot verify signature. Missing property: img_signature_uuid."
        );
        let raw = RawProperties {
            cert_uuid: Some("u".into()),
            ..raw
        };
        assert_eq!(
            check_properties(&raw).unwrap_err(),
            "Signature verification for the image failed: Invalid signature key type: ECC_SECT571K1."
        );
        let raw = RawProperties {
            key_type: Some("ECC_SECP384R1".into()),
            hash_method: Some("SHA256".into()),
            ..raw
        };
        assert_eq!(
            check_properties(&raw).unwrap_err(),
            "Signature verification for the image failed: Invalid signature hash method: SHA256."
        );
    }
}
