//! Signature schemes and encodings: what the device is asked to do for each
//! Glance key type, and how the result is encoded as cursive expects.

use openssl::bn::BigNum;
use openssl::dsa::DsaSig;
use openssl::ecdsa::EcdsaSig;
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sign::RsaPssSaltlen;

use crate::algorithms::{GlanceKeyType, HashMethod};
use crate::error::{Error, Result};
use crate::public_key::PublicKey;

/// PSS salt length on signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PssSalt {
    /// The largest salt the modulus allows: what cursive's `PSS.MAX_LENGTH` and
    /// `openssl dgst -sigopt rsa_padding_mode:pss` produce.
    Max,
    /// Salt as long as the digest (RFC 4055's usual choice, used for CSRs).
    DigestLength,
}

/// How a digest is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    RsaPss { hash: HashMethod, salt: PssSalt },
    Ecdsa { hash: HashMethod },
    Dsa { hash: HashMethod },
}

impl SignatureScheme {
    /// The scheme Glance implies for a key type and hash method.
    pub fn for_glance(key_type: GlanceKeyType, hash: HashMethod) -> Self {
        match key_type {
            GlanceKeyType::RsaPss => SignatureScheme::RsaPss {
                hash,
                salt: PssSalt::Max,
            },
            GlanceKeyType::Dsa => SignatureScheme::Dsa { hash },
            GlanceKeyType::Ecc(_) => SignatureScheme::Ecdsa { hash },
        }
    }

    pub fn hash(&self) -> HashMethod {
        match *self {
            SignatureScheme::RsaPss { hash, .. }
            | SignatureScheme::Ecdsa { hash }
            | SignatureScheme::Dsa { hash } => hash,
        }
    }
}

/// PKCS#11 returns ECDSA and DSA signatures as raw `r || s`; X.509, OpenSSL and
/// cursive want the DER `SEQUENCE { r INTEGER, s INTEGER }`.
pub fn raw_rs_to_der(scheme: &SignatureScheme, raw: &[u8]) -> Result<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(Error::Crypto(format!(
            "the device returned a {}-byte signature, not r||s",
            raw.len()
        )));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let bn = |v: &[u8]| BigNum::from_slice(v).map_err(|e| Error::crypto("signature value", e));
    let der = match scheme {
        SignatureScheme::Ecdsa { .. } => {
            EcdsaSig::from_private_components(bn(r)?, bn(s)?).and_then(|sig| sig.to_der())
        }
        SignatureScheme::Dsa { .. } => {
            DsaSig::from_private_components(bn(r)?, bn(s)?).and_then(|sig| sig.to_der())
        }
        SignatureScheme::RsaPss { .. } => return Ok(raw.to_vec()),
    };
    der.map_err(|e| Error::crypto("encoding the signature", e))
}

/// The reverse, for handing a DER signature to a device's `C_Verify`.
pub fn der_to_raw_rs(scheme: &SignatureScheme, der: &[u8], half_len: usize) -> Result<Vec<u8>> {
    let (r, s) = match scheme {
        SignatureScheme::Ecdsa { .. } => {
            let sig = EcdsaSig::from_der(der)
                .map_err(|_| Error::invalid("the signature is not a DER ECDSA signature"))?;
            (sig.r().to_vec(), sig.s().to_vec())
        }
        SignatureScheme::Dsa { .. } => {
            let sig = DsaSig::from_der(der)
                .map_err(|_| Error::invalid("the signature is not a DER DSA signature"))?;
            (sig.r().to_vec(), sig.s().to_vec())
        }
        SignatureScheme::RsaPss { .. } => return Ok(der.to_vec()),
    };
    if r.len() > half_len || s.len() > half_len {
        return Err(Error::invalid(
            "the signature's r or s is larger than the key's order",
        ));
    }
    let mut out = vec![0u8; 2 * half_len];
    out[half_len - r.len()..half_len].copy_from_slice(&r);
    out[2 * half_len - s.len()..].copy_from_slice(&s);
    Ok(out)
}

/// Verifies `signature` over a precomputed `digest` in software (OpenSSL).
/// PSS salt length is recovered from the signature, as cursive accepts any.
/// `Ok(false)` means the signature does not verify.
pub fn verify_digest(
    key: &PublicKey,
    scheme: &SignatureScheme,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool> {
    // -2 is RSA_PSS_SALTLEN_AUTO when verifying.
    verify_with_salt(key, scheme, digest, signature, RsaPssSaltlen::custom(-2))
}

/// The salt length of a PSS `signature` that [`verify_digest`] accepted, when
/// it is below `min`. OpenSSL 3 refuses to detect the salt for a key that
/// restricts it, and verifies a given salt length exactly; a valid PSS
/// signature has exactly one salt length, so trying each length below the
/// minimum (at most 255, RFC 4055's field) finds a short one.
pub fn pss_salt_below(
    key: &PublicKey,
    scheme: &SignatureScheme,
    digest: &[u8],
    signature: &[u8],
    min: u8,
) -> Result<Option<usize>> {
    for salt in 0..min {
        if verify_with_salt(
            key,
            scheme,
            digest,
            signature,
            RsaPssSaltlen::custom(salt.into()),
        )? {
            return Ok(Some(salt.into()));
        }
    }
    Ok(None)
}

fn verify_with_salt(
    key: &PublicKey,
    scheme: &SignatureScheme,
    digest: &[u8],
    signature: &[u8],
    salt: RsaPssSaltlen,
) -> Result<bool> {
    let md = scheme.hash().message_digest();
    // A certificate key of type id-RSASSA-PSS carries restrictions (hash,
    // minimum salt) that OpenSSL 3 enforces and that make it refuse the
    // automatic salt length outright. cryptography, and so cursive, loads
    // such a key as plain RSA; verify it the same way (the strict policy
    // checks the restrictions beside, see `PssRestrictions`).
    let plain;
    let pkey = if key.pkey.id() == openssl::pkey::Id::RSA_PSS {
        plain = as_plain_rsa(&key.pkey)?;
        &plain
    } else {
        &key.pkey
    };
    let mut ctx = PkeyCtx::new(pkey).map_err(|e| Error::crypto("verifier", e))?;
    ctx.verify_init()
        .map_err(|e| Error::crypto("verifier", e))?;
    ctx.set_signature_md(openssl::md::Md::from_nid(md.type_()).expect("SHA-2 is built in"))
        .map_err(|e| Error::crypto("verifier", e))?;
    if let SignatureScheme::RsaPss { .. } = scheme {
        ctx.set_rsa_padding(Padding::PKCS1_PSS)
            .map_err(|e| Error::crypto("verifier", e))?;
        ctx.set_rsa_mgf1_md(openssl::md::Md::from_nid(md.type_()).expect("SHA-2 is built in"))
            .map_err(|e| Error::crypto("verifier", e))?;
        ctx.set_rsa_pss_saltlen(salt)
            .map_err(|e| Error::crypto("verifier", e))?;
    }
    // OpenSSL reports a malformed or wrong signature as an error stack; both mean "invalid".
    Ok(ctx.verify(digest, signature).unwrap_or(false))
}

/// The same RSA key under rsaEncryption: the subjectPublicKey bits
/// (RSAPublicKey) are the same for both algorithm identifiers, so only the
/// identifier changes.
fn as_plain_rsa(
    key: &openssl::pkey::PKey<openssl::pkey::Public>,
) -> Result<openssl::pkey::PKey<openssl::pkey::Public>> {
    use der::{Decode, Encode};
    let reading = |e: String| Error::bad_input(format!("an RSASSA-PSS key: {e}"));
    let der = key
        .public_key_to_der()
        .map_err(|e| Error::crypto("encoding an RSASSA-PSS key", e))?;
    let mut spki =
        spki::SubjectPublicKeyInfoOwned::from_der(&der).map_err(|e| reading(e.to_string()))?;
    spki.algorithm = spki::AlgorithmIdentifierOwned {
        oid: const_oid::db::rfc5912::RSA_ENCRYPTION,
        parameters: Some(der::asn1::Null.into()),
    };
    let der = spki.to_der().map_err(|e| reading(e.to_string()))?;
    openssl::pkey::PKey::public_key_from_der(&der)
        .map_err(|e| Error::crypto("reading an RSASSA-PSS key as RSA", e))
}

/// Signs a digest with a private key held in memory
/// (used only by tests and by the CA helpers, never for HSM keys).
pub fn sign_digest_software(
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
    scheme: &SignatureScheme,
    digest: &[u8],
) -> Result<Vec<u8>> {
    let md = scheme.hash().message_digest();
    let mut ctx = PkeyCtx::new(key).map_err(|e| Error::crypto("signer", e))?;
    ctx.sign_init().map_err(|e| Error::crypto("signer", e))?;
    ctx.set_signature_md(openssl::md::Md::from_nid(md.type_()).expect("SHA-2 is built in"))
        .map_err(|e| Error::crypto("signer", e))?;
    if let SignatureScheme::RsaPss { salt, .. } = scheme {
        ctx.set_rsa_padding(Padding::PKCS1_PSS)
            .map_err(|e| Error::crypto("signer", e))?;
        ctx.set_rsa_mgf1_md(openssl::md::Md::from_nid(md.type_()).expect("SHA-2 is built in"))
            .map_err(|e| Error::crypto("signer", e))?;
        let len = match salt {
            PssSalt::Max => RsaPssSaltlen::MAXIMUM_LENGTH,
            PssSalt::DigestLength => RsaPssSaltlen::DIGEST_LENGTH,
        };
        ctx.set_rsa_pss_saltlen(len)
            .map_err(|e| Error::crypto("signer", e))?;
    }
    let mut out = Vec::new();
    ctx.sign_to_vec(digest, &mut out)
        .map_err(|e| Error::crypto("signing", e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithms::Curve;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::hash;
    use openssl::pkey::PKey;

    fn public_of(key: &PKey<openssl::pkey::Private>) -> PublicKey {
        PublicKey::from_spki_der(&key.public_key_to_der().unwrap()).unwrap()
    }

    #[test]
    fn pss_verification_recovers_any_salt_length() {
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let digest = hash(HashMethod::Sha256.message_digest(), b"image").unwrap();
        for salt in [PssSalt::Max, PssSalt::DigestLength] {
            let scheme = SignatureScheme::RsaPss {
                hash: HashMethod::Sha256,
                salt,
            };
            let sig = sign_digest_software(&key, &scheme, &digest).unwrap();
            assert!(verify_digest(&public_of(&key), &scheme, &digest, &sig).unwrap());
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert!(!verify_digest(&public_of(&key), &scheme, &digest, &bad).unwrap());
        }
    }

    #[test]
    fn raw_and_der_round_trip() {
        let group = EcGroup::from_curve_name(Curve::Secp521r1.nid()).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let scheme = SignatureScheme::Ecdsa {
            hash: HashMethod::Sha512,
        };
        let digest = hash(HashMethod::Sha512.message_digest(), b"image").unwrap();
        let der = sign_digest_software(&key, &scheme, &digest).unwrap();
        let raw = der_to_raw_rs(&scheme, &der, 66).unwrap();
        assert_eq!(raw.len(), 132);
        let back = raw_rs_to_der(&scheme, &raw).unwrap();
        assert_eq!(back, der);
        assert!(verify_digest(&public_of(&key), &scheme, &digest, &back).unwrap());
        assert!(raw_rs_to_der(&scheme, &raw[..131]).is_err());
    }
}
