//! TPM2_MakeCredential in software: what a verifier without a TPM needs to
//! challenge a host's EK and AK (TPM 2.0 Part 1 §24 "Credential
//! Protection", Part 3 §12.6; tpm2-tools does the same with
//! `tpm2_makecredential -T none`). It uses only public values, so a TPM
//! adds nothing; only the TPM holding the EK's private key and an object
//! with the AK's name can activate the result.
//!
//! The primitives are OpenSSL's (RSA-OAEP, ECDH, HMAC, AES-CFB, the hashes);
//! this file composes them as the TPM specification does:
//!
//! 1. a seed, shared with the EK: RSA-OAEP of a random seed with the label
//!    "IDENTITY\0" (RSA), or KDFe over an ephemeral ECDH secret (ECC);
//! 2. `symKey = KDFa(nameAlg, seed, "STORAGE", name, "", AES bits)` and
//!    `encIdentity = AES-CFB(symKey, IV = 0, TPM2B_DIGEST(secret))`;
//! 3. `HMACkey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits)` and
//!    `outerHMAC = HMAC(HMACkey, encIdentity || name)`;
//! 4. `TPM2B_ID_OBJECT = TPM2B(outerHMAC) || encIdentity`, and the
//!    encrypted secret is the OAEP ciphertext or the ephemeral point.

use imgseal_tpm::{Credential, CredentialKey, CredentialKeyKind, EccCurveId, NameHash};
use openssl::bn::{BigNum, BigNumContext};
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::{MessageDigest, hash};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};
use openssl::sign::Signer;
use openssl::symm::{Cipher, Crypter, Mode};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

fn crypto(what: &str) -> impl FnOnce(openssl::error::ErrorStack) -> Error + '_ {
    move |e| Error::crypto(what, e)
}

fn digest_of(hash: NameHash) -> MessageDigest {
    match hash {
        NameHash::Sha1 => MessageDigest::sha1(),
        NameHash::Sha256 => MessageDigest::sha256(),
        NameHash::Sha384 => MessageDigest::sha384(),
        NameHash::Sha512 => MessageDigest::sha512(),
    }
}

fn hmac(md: MessageDigest, key: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>> {
    let key = PKey::hmac(key).map_err(crypto("an HMAC key"))?;
    let mut signer = Signer::new(md, &key).map_err(crypto("HMAC"))?;
    for p in parts {
        signer.update(p).map_err(crypto("HMAC"))?;
    }
    signer.sign_to_vec().map_err(crypto("HMAC"))
}

/// A label as the KDFs take it: the string and its terminating zero.
fn label(text: &str) -> Vec<u8> {
    let mut l = text.as_bytes().to_vec();
    l.push(0);
    l
}

/// KDFa (TPM 2.0 Part 1 §11.4.10.2): SP 800-108 counter mode with HMAC.
pub fn kdfa(
    hash: NameHash,
    key: &[u8],
    label_text: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Result<Zeroizing<Vec<u8>>> {
    let md = digest_of(hash);
    let bytes = bits.div_ceil(8) as usize;
    let label = label(label_text);
    let mut out = Zeroizing::new(Vec::with_capacity(bytes + md.size()));
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let block = hmac(
            md,
            key,
            &[
                &counter.to_be_bytes(),
                &label,
                context_u,
                context_v,
                &bits.to_be_bytes(),
            ],
        )?;
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(bytes);
    Ok(out)
}

/// KDFe (TPM 2.0 Part 1 §11.4.10.3): SP 800-56A's concatenation KDF with
/// the hash.
pub fn kdfe(
    hash: NameHash,
    z: &[u8],
    label_text: &str,
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Result<Zeroizing<Vec<u8>>> {
    let md = digest_of(hash);
    let bytes = bits.div_ceil(8) as usize;
    let label = label(label_text);
    let mut out = Zeroizing::new(Vec::with_capacity(bytes + md.size()));
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut input = Zeroizing::new(counter.to_be_bytes().to_vec());
        input.extend_from_slice(z);
        input.extend_from_slice(&label);
        input.extend_from_slice(party_u);
        input.extend_from_slice(party_v);
        let block = hash_bytes(md, &input)?;
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(bytes);
    Ok(out)
}

fn hash_bytes(md: MessageDigest, data: &[u8]) -> Result<Vec<u8>> {
    Ok(hash(md, data).map_err(crypto("hashing"))?.to_vec())
}

/// `bytes` as a TPM2B: a 16-bit big-endian size, then the bytes.
fn tpm2b(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn curve_nid(curve: EccCurveId) -> Nid {
    match curve {
        EccCurveId::P256 => Nid::X9_62_PRIME256V1,
        EccCurveId::P384 => Nid::SECP384R1,
        EccCurveId::P521 => Nid::SECP521R1,
    }
}

/// The seed and the encrypted secret that carries it to the EK.
fn seed_for(key: &CredentialKey, seed_len: usize) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    match &key.key {
        CredentialKeyKind::Rsa { modulus, exponent } => {
            let mut seed = Zeroizing::new(vec![0u8; seed_len]);
            rand::rngs::OsRng.fill_bytes(&mut seed);
            let rsa = Rsa::from_public_components(
                BigNum::from_slice(modulus).map_err(crypto("the EK's modulus"))?,
                BigNum::from_u32(*exponent).map_err(crypto("the EK's exponent"))?,
            )
            .map_err(crypto("the EK's RSA key"))?;
            let pkey: PKey<Public> = PKey::from_rsa(rsa).map_err(crypto("the EK's RSA key"))?;
            let md = digest_of(key.name_hash);
            let mut ctx = PkeyCtx::new(&pkey).map_err(crypto("RSA-OAEP"))?;
            ctx.encrypt_init().map_err(crypto("RSA-OAEP"))?;
            ctx.set_rsa_padding(Padding::PKCS1_OAEP)
                .map_err(crypto("RSA-OAEP"))?;
            ctx.set_rsa_oaep_md(openssl::md::Md::from_nid(md.type_()).ok_or_else(|| {
                Error::Crypto("RSA-OAEP: the EK's name hash has no OpenSSL digest".into())
            })?)
            .map_err(crypto("RSA-OAEP"))?;
            ctx.set_rsa_mgf1_md(openssl::md::Md::from_nid(md.type_()).ok_or_else(|| {
                Error::Crypto("RSA-OAEP: the EK's name hash has no OpenSSL digest".into())
            })?)
            .map_err(crypto("RSA-OAEP"))?;
            ctx.set_rsa_oaep_label(&label("IDENTITY"))
                .map_err(crypto("RSA-OAEP"))?;
            let mut encrypted = Vec::new();
            ctx.encrypt_to_vec(&seed, &mut encrypted)
                .map_err(crypto("RSA-OAEP encryption of the seed to the EK"))?;
            Ok((seed, encrypted))
        }
        CredentialKeyKind::Ecc { curve, x, y } => {
            let group =
                EcGroup::from_curve_name(curve_nid(*curve)).map_err(crypto("the EK's curve"))?;
            let field = (group.degree() as usize).div_ceil(8);
            let mut bn = BigNumContext::new().map_err(crypto("ECDH"))?;
            let ek_point = {
                let (bx, by) = (
                    BigNum::from_slice(x).map_err(crypto("the EK's point"))?,
                    BigNum::from_slice(y).map_err(crypto("the EK's point"))?,
                );
                let ek = EcKey::from_public_key_affine_coordinates(&group, &bx, &by)
                    .map_err(crypto("the EK's point"))?;
                ek.check_key()
                    .map_err(crypto("the EK's point is not on its curve"))?;
                ek
            };
            let ephemeral = EcKey::generate(&group).map_err(crypto("an ephemeral ECC key"))?;
            let (mut ex, mut ey) = (
                BigNum::new().map_err(crypto("ECDH"))?,
                BigNum::new().map_err(crypto("ECDH"))?,
            );
            ephemeral
                .public_key()
                .affine_coordinates(&group, &mut ex, &mut ey, &mut bn)
                .map_err(crypto("ECDH"))?;
            let pad = |n: &BigNum| n.to_vec_padded(field as i32).map_err(crypto("ECDH"));
            let (ex, ey) = (pad(&ex)?, pad(&ey)?);
            // Z: the x coordinate of d_ephemeral · Q_EK, as long as the field.
            let z = {
                let ours = PKey::from_ec_key(ephemeral).map_err(crypto("ECDH"))?;
                let theirs = PKey::from_ec_key(ek_point).map_err(crypto("ECDH"))?;
                let mut deriver = Deriver::new(&ours).map_err(crypto("ECDH"))?;
                deriver.set_peer(&theirs).map_err(crypto("ECDH"))?;
                Zeroizing::new(deriver.derive_to_vec().map_err(crypto("ECDH"))?)
            };
            let seed = kdfe(
                key.name_hash,
                &z,
                "IDENTITY",
                &ex,
                // The TPM takes the EK's x as its public area holds it.
                x,
                (seed_len * 8) as u32,
            )?;
            let mut point = tpm2b(&ex);
            point.extend_from_slice(&tpm2b(&ey));
            Ok((seed, point))
        }
    }
}

/// MakeCredential for the EK whose `TPMT_PUBLIC` is `ek_public_area` and an
/// object named `name`: protects `secret` (1 to the name hash's length in
/// bytes) so that only that TPM, holding that object, recovers it.
pub fn make_credential(ek_public_area: &[u8], name: &[u8], secret: &[u8]) -> Result<Credential> {
    let key = imgseal_tpm::credential_key_from_public_area(ek_public_area)
        .map_err(|e| Error::bad_input(e.to_string()))?;
    let md = digest_of(key.name_hash);
    if secret.is_empty() || secret.len() > md.size() {
        return Err(Error::usage(format!(
            "a credential's secret is 1 to {} bytes; got {}",
            md.size(),
            secret.len()
        )));
    }
    let (seed, encrypted_secret) = seed_for(&key, md.size())?;
    let sym_key = kdfa(
        key.name_hash,
        &seed,
        "STORAGE",
        name,
        &[],
        u32::from(key.aes_key_bits),
    )?;
    let cipher = match key.aes_key_bits {
        128 => Cipher::aes_128_cfb128(),
        192 => Cipher::aes_192_cfb128(),
        _ => Cipher::aes_256_cfb128(),
    };
    let plain = Zeroizing::new(tpm2b(secret));
    let iv = vec![0u8; cipher.iv_len().unwrap_or(16)];
    let mut crypter =
        Crypter::new(cipher, Mode::Encrypt, &sym_key, Some(&iv)).map_err(crypto("AES-CFB"))?;
    let mut enc_identity = vec![0u8; plain.len() + cipher.block_size()];
    let mut n = crypter
        .update(&plain, &mut enc_identity)
        .map_err(crypto("AES-CFB"))?;
    n += crypter
        .finalize(&mut enc_identity[n..])
        .map_err(crypto("AES-CFB"))?;
    enc_identity.truncate(n);
    let hmac_key = kdfa(
        key.name_hash,
        &seed,
        "INTEGRITY",
        &[],
        &[],
        (md.size() * 8) as u32,
    )?;
    let outer_hmac = hmac(md, &hmac_key, &[&enc_identity, name])?;
    let mut id_object = tpm2b(&outer_hmac);
    id_object.extend_from_slice(&enc_identity);
    Ok(Credential {
        id_object,
        encrypted_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KDFa's bit count and counter: a 128-bit key is the first half of the
    /// first HMAC block over [1] || label || 0 || u || v || [128].
    #[test]
    fn kdfa_is_the_counter_mode_hmac_of_the_specification() {
        let key = b"seed".to_vec();
        let out = kdfa(NameHash::Sha256, &key, "STORAGE", b"u", b"v", 128).unwrap();
        let block = hmac(
            MessageDigest::sha256(),
            &key,
            &[
                &1u32.to_be_bytes(),
                b"STORAGE\0",
                b"u",
                b"v",
                &128u32.to_be_bytes(),
            ],
        )
        .unwrap();
        assert_eq!(out.as_slice(), &block[..16]);
        // 384 bits: two blocks, the second with counter 2.
        let long = kdfa(NameHash::Sha256, &key, "X", b"", b"", 384).unwrap();
        let second = hmac(
            MessageDigest::sha256(),
            &key,
            &[&2u32.to_be_bytes(), b"X\0", &384u32.to_be_bytes()],
        )
        .unwrap();
        assert_eq!(&long[32..], &second[..16]);
    }
}
