//! Certificates (read as users have them) and PKCS#10 requests signed by a device.

use std::str::FromStr;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912;
use der::asn1::{AnyRef, BitString};
use der::{Decode, Encode, EncodePem};
use openssl::hash::MessageDigest;
use openssl::x509::X509;
use spki::{AlgorithmIdentifierOwned, AlgorithmIdentifierRef, SubjectPublicKeyInfoOwned};
use x509_cert::name::Name;
use x509_cert::request::{CertReq, CertReqInfo, Version};

use crate::algorithms::{GlanceKeyType, HashMethod};
use crate::error::{Error, Result};
use crate::public_key::PublicKey;
use crate::signature::{PssSalt, SignatureScheme};

/// An X.509 certificate and its DER bytes.
#[derive(Clone)]
pub struct Certificate {
    pub x509: X509,
    pub der: Vec<u8>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Certificate({})", self.subject())
    }
}

impl Certificate {
    /// Reads DER, or PEM possibly preceded by text (as `openssl ca` writes it).
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let looks_pem = bytes
            .windows(27)
            .any(|w| w == b"-----BEGIN CERTIFICATE-----");
        let x509 = if looks_pem {
            X509::from_pem(bytes).map_err(|e| {
                Error::bad_input(format!(
                    "{origin}: malformed PEM certificate: {}",
                    crate::error::openssl_reason(&e)
                ))
            })?
        } else {
            if bytes.first() != Some(&0x30) {
                return Err(Error::bad_input(format!(
                    "{origin}: not a certificate (neither PEM with a CERTIFICATE block nor DER)"
                )));
            }
            X509::from_der(bytes).map_err(|e| {
                Error::bad_input(format!(
                    "{origin}: malformed DER certificate: {}",
                    crate::error::openssl_reason(&e)
                ))
            })?
        };
        let der = x509
            .to_der()
            .map_err(|e| Error::crypto("encoding the certificate", e))?;
        Ok(Certificate { x509, der })
    }

    pub fn from_der(der: &[u8], origin: &str) -> Result<Self> {
        Self::parse(der, origin)
    }

    pub fn public_key(&self) -> Result<PublicKey> {
        let pkey = self.x509.public_key().map_err(|e| {
            Error::bad_input(format!(
                "certificate public key: {}",
                crate::error::openssl_reason(&e)
            ))
        })?;
        Ok(PublicKey { pkey })
    }

    pub fn subject(&self) -> String {
        name_to_string(self.x509.subject_name())
    }

    pub fn issuer(&self) -> String {
        name_to_string(self.x509.issuer_name())
    }

    pub fn subject_der(&self) -> Vec<u8> {
        self.x509.subject_name().to_der().unwrap_or_default()
    }

    pub fn issuer_der(&self) -> Vec<u8> {
        self.x509.issuer_name().to_der().unwrap_or_default()
    }

    /// The serial number as a DER INTEGER, as `CKA_SERIAL_NUMBER` wants it.
    pub fn serial_der(&self) -> Vec<u8> {
        let cert = x509_cert::Certificate::from_der(&self.der).ok();
        cert.and_then(|c| c.tbs_certificate.serial_number.to_der().ok())
            .unwrap_or_default()
    }

    pub fn serial_hex(&self) -> String {
        self.x509
            .serial_number()
            .to_bn()
            .ok()
            .and_then(|b| b.to_hex_str().ok().map(|s| s.to_string()))
            .unwrap_or_default()
    }

    /// RFC 3339 (`2026-12-31T23:59:59Z`), the form `--at` takes.
    pub fn not_before(&self) -> String {
        rfc3339(self.x509.not_before())
    }

    /// RFC 3339 (`2026-12-31T23:59:59Z`), the form `--at` takes.
    pub fn not_after(&self) -> String {
        rfc3339(self.x509.not_after())
    }

    pub fn sha256_fingerprint(&self) -> String {
        self.x509
            .digest(MessageDigest::sha256())
            .map(hex::encode)
            .unwrap_or_default()
    }

    pub fn pem(&self) -> String {
        String::from_utf8_lossy(&self.x509.to_pem().unwrap_or_default()).into_owned()
    }
}

/// Reads a CRL as users hand it over (`--crl`): PEM when the bytes hold a
/// `-----BEGIN` line, else DER. `origin` names the input in the error. Kept
/// in the library, not the CLI, so the fuzz target exercises this exact code.
pub fn parse_crl(bytes: &[u8], origin: &str) -> Result<openssl::x509::X509Crl> {
    use openssl::x509::X509Crl;
    let parsed = if bytes.windows(10).any(|w| w == b"-----BEGIN") {
        X509Crl::from_pem(bytes)
    } else {
        X509Crl::from_der(bytes)
    };
    parsed.map_err(|e| {
        Error::bad_input(format!(
            "{origin}: not a CRL: {}",
            crate::error::openssl_reason(&e)
        ))
    })
}

/// "CN=x,O=y" in RFC 4514 order (most specific first).
pub fn name_to_string(name: &openssl::x509::X509NameRef) -> String {
    name.to_der()
        .ok()
        .and_then(|der| Name::from_der(&der).ok())
        .map(|n| n.to_string())
        .unwrap_or_else(|| "(unreadable name)".into())
}

/// Parses an RFC 4514 subject such as `CN=Release signing,O=Example`, or
/// OpenSSL's `-subj` form `/O=Example/CN=Release signing` (the same name,
/// written from the most significant attribute down).
pub fn parse_subject(subject: &str) -> Result<Name> {
    let rfc4514;
    let subject = match subject.strip_prefix('/') {
        Some(rest) => {
            rfc4514 = openssl_subj_to_rfc4514(rest);
            rfc4514.as_str()
        }
        None => subject,
    };
    if subject.trim().is_empty() {
        return Err(Error::usage(
            "the subject is empty (expected e.g. \"CN=Image signing,O=Example\")",
        ));
    }
    let name = Name::from_str(subject).map_err(|e| {
        Error::usage(format!(
            "cannot read subject \"{subject}\" as an RFC 4514 name (e.g. \"CN=Image signing,O=Example\"): {e}"
        ))
    })?;
    if name.0.is_empty() {
        return Err(Error::usage(format!(
            "subject \"{subject}\" has no attributes"
        )));
    }
    Ok(name)
}

/// `O=Example/CN=a\/b` (OpenSSL's `-subj` after its leading `/`, `\` escaping
/// the next character) as RFC 4514: `CN=a/b,O=Example`.
fn openssl_subj_to_rfc4514(subj: &str) -> String {
    let mut parts = vec![String::new()];
    let mut chars = subj.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    push_escaped(parts.last_mut().expect("never empty"), next);
                }
            }
            '/' => parts.push(String::new()),
            c => push_escaped(parts.last_mut().expect("never empty"), c),
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.reverse();
    parts.join(",")
}

/// Keeps the first `=` of an attribute as the separator and escapes what
/// RFC 4514 reserves in values.
fn push_escaped(part: &mut String, c: char) {
    let in_value = part.contains('=');
    if in_value && matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
        part.push('\\');
    }
    part.push(c);
}

fn hash_oid(hash: HashMethod) -> ObjectIdentifier {
    match hash {
        HashMethod::Sha224 => rfc5912::ID_SHA_224,
        HashMethod::Sha256 => rfc5912::ID_SHA_256,
        HashMethod::Sha384 => rfc5912::ID_SHA_384,
        HashMethod::Sha512 => rfc5912::ID_SHA_512,
    }
}

/// The signatureAlgorithm of an X.509 object signed with `scheme`.
pub fn signature_algorithm(scheme: &SignatureScheme) -> Result<AlgorithmIdentifierOwned> {
    Ok(match *scheme {
        SignatureScheme::RsaPss { hash, salt } => {
            let salt_len = match salt {
                PssSalt::DigestLength => hash.output_len() as u8,
                PssSalt::Max => {
                    return Err(Error::usage(
                        "certificate requests are signed with PSS salt = digest length",
                    ));
                }
            };
            let hash_ai = AlgorithmIdentifierRef {
                oid: hash_oid(hash),
                parameters: Some(AnyRef::NULL),
            };
            let params = pkcs1::RsaPssParams {
                hash: hash_ai,
                mask_gen: spki::AlgorithmIdentifier {
                    oid: rfc5912::ID_MGF_1,
                    parameters: Some(hash_ai),
                },
                salt_len,
                trailer_field: Default::default(),
            };
            let der = params
                .to_der()
                .map_err(|e| Error::Crypto(format!("encoding PSS parameters: {e}")))?;
            AlgorithmIdentifierOwned {
                oid: rfc5912::ID_RSASSA_PSS,
                parameters: Some(
                    der::Any::from_der(&der).map_err(|e| Error::Crypto(e.to_string()))?,
                ),
            }
        }
        SignatureScheme::Ecdsa { hash } => AlgorithmIdentifierOwned {
            oid: match hash {
                HashMethod::Sha224 => rfc5912::ECDSA_WITH_SHA_224,
                HashMethod::Sha256 => rfc5912::ECDSA_WITH_SHA_256,
                HashMethod::Sha384 => rfc5912::ECDSA_WITH_SHA_384,
                HashMethod::Sha512 => rfc5912::ECDSA_WITH_SHA_512,
            },
            parameters: None,
        },
        SignatureScheme::Dsa { hash } => AlgorithmIdentifierOwned {
            oid: match hash {
                HashMethod::Sha224 => rfc5912::DSA_WITH_SHA_224,
                HashMethod::Sha256 => rfc5912::DSA_WITH_SHA_256,
                // NIST CSOR: id-dsa-with-sha384/512 (2.16.840.1.101.3.4.3.3/4).
                HashMethod::Sha384 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.3"),
                HashMethod::Sha512 => ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.4"),
            },
            parameters: None,
        },
    })
}

/// The scheme a certificate request made with `key_type` uses.
pub fn csr_scheme(key_type: GlanceKeyType, hash: HashMethod) -> SignatureScheme {
    match key_type {
        GlanceKeyType::RsaPss => SignatureScheme::RsaPss {
            hash,
            salt: PssSalt::DigestLength,
        },
        GlanceKeyType::Dsa => SignatureScheme::Dsa { hash },
        GlanceKeyType::Ecc(_) => SignatureScheme::Ecdsa { hash },
    }
}

/// Builds a PKCS#10 request for `public`, signed by `sign` (which receives the
/// digest of the request info and returns the encoded signature).
pub fn build_csr(
    subject: &Name,
    public: &PublicKey,
    scheme: &SignatureScheme,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
) -> Result<String> {
    let spki = SubjectPublicKeyInfoOwned::from_der(&public.spki_der()?)
        .map_err(|e| Error::Crypto(format!("reading the public key: {e}")))?;
    let info = CertReqInfo {
        version: Version::V1,
        subject: subject.clone(),
        public_key: spki,
        attributes: Default::default(),
    };
    let info_der = info
        .to_der()
        .map_err(|e| Error::Crypto(format!("encoding the request: {e}")))?;
    let digest = openssl::hash::hash(scheme.hash().message_digest(), &info_der)
        .map_err(|e| Error::crypto("hashing the request", e))?;
    let signature = sign(&digest)?;
    let req = CertReq {
        info,
        algorithm: signature_algorithm(scheme)?,
        signature: BitString::from_bytes(&signature).map_err(|e| Error::Crypto(e.to_string()))?,
    };
    req.to_pem(der::pem::LineEnding::LF)
        .map_err(|e| Error::Crypto(format!("encoding the request: {e}")))
}

/// An ASN.1 time as RFC 3339 in UTC; OpenSSL's own form if it is out of
/// `time`'s range.
fn rfc3339(t: &openssl::asn1::Asn1TimeRef) -> String {
    openssl::asn1::Asn1Time::from_unix(0)
        .ok()
        .and_then(|epoch| epoch.diff(t).ok())
        .and_then(|d| {
            time::OffsetDateTime::from_unix_timestamp(
                i64::from(d.days) * 86_400 + i64::from(d.secs),
            )
            .ok()
        })
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_subjects_read_as_their_rfc4514_names() {
        for (openssl, rfc4514) in [
            ("/CN=a/O=b", "O=b,CN=a"),
            (
                "/C=DE/O=Example, Inc./CN=Release signing",
                "CN=Release signing,O=Example\\, Inc.,C=DE",
            ),
            ("/CN=a\\/b", "CN=a/b"),
            ("/CN=x=y", "CN=x\\=y"),
        ] {
            assert_eq!(
                parse_subject(openssl).unwrap().to_string(),
                parse_subject(rfc4514).unwrap().to_string(),
                "{openssl}"
            );
        }
        assert!(parse_subject("/").is_err());
    }
    use crate::signature::sign_digest_software;
    use openssl::pkey::PKey;

    #[test]
    fn subjects_follow_rfc_4514() {
        let name = parse_subject("CN=Image signing,O=Example").unwrap();
        assert_eq!(name.to_string(), "CN=Image signing,O=Example");
        assert!(parse_subject("").is_err());
        assert!(parse_subject("nonsense").is_err());
    }

    #[test]
    fn csrs_verify_with_openssl_for_each_scheme() {
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap();
        let ec = PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
        let cases = [
            (rsa, csr_scheme(GlanceKeyType::RsaPss, HashMethod::Sha256)),
            (
                ec,
                SignatureScheme::Ecdsa {
                    hash: HashMethod::Sha384,
                },
            ),
        ];
        for (key, scheme) in cases {
            let public = PublicKey::from_spki_der(&key.public_key_to_der().unwrap()).unwrap();
            let subject = parse_subject("CN=t,O=imgseal").unwrap();
            let pem = build_csr(&subject, &public, &scheme, |d| {
                sign_digest_software(&key, &scheme, d)
            })
            .unwrap();
            let req = openssl::x509::X509Req::from_pem(pem.as_bytes()).unwrap();
            assert!(
                req.verify(&req.public_key().unwrap()).unwrap(),
                "{scheme:?}"
            );
            let mut tampered = pem.into_bytes();
            let n = tampered.len();
            tampered[n - 40] = if tampered[n - 40] == b'A' { b'B' } else { b'A' };
            let ok = openssl::x509::X509Req::from_pem(&tampered)
                .ok()
                .and_then(|r| {
                    let key = r.public_key().ok()?;
                    r.verify(&key).ok()
                })
                .unwrap_or(false);
            assert!(!ok);
        }
    }
}
