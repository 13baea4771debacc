//! What validation needs to know about a certificate, read once with x509-cert:
//! to-be-signed bytes, signature algorithm and hash, names as cryptography
//! compares them, and the extensions the policies look at.

use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5280, rfc5912};
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};

use crate::algorithms::HashMethod;
use crate::error::{Error, Result};
use crate::x509::Certificate;

/// The hash a certificate signature uses, as cryptography reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureHash {
    Sha2(HashMethod),
    Sha1,
    Md5,
    /// Ed25519/Ed448: no separate hash (cryptography returns `None`).
    None,
    Unknown,
}

impl SignatureHash {
    pub fn message_digest(self) -> Option<openssl::hash::MessageDigest> {
        match self {
            SignatureHash::Sha2(h) => Some(h.message_digest()),
            SignatureHash::Sha1 => Some(openssl::hash::MessageDigest::sha1()),
            SignatureHash::Md5 => Some(openssl::hash::MessageDigest::md5()),
            SignatureHash::None | SignatureHash::Unknown => None,
        }
    }
}

/// One attribute value of a name, compared as cryptography's `NameAttribute`
/// does: OID and decoded value, ignoring the ASN.1 string type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum AttributeValue {
    Text(String),
    Bytes(Vec<u8>),
}

/// A name as cryptography's `Name.__eq__` sees it: RDNs in order, each a set.
pub type NameKey = Vec<Vec<(String, AttributeValue)>>;

#[derive(Debug, Clone)]
pub struct CertFacts {
    pub tbs_der: Vec<u8>,
    pub signature: Vec<u8>,
    pub signature_oid: ObjectIdentifier,
    pub signature_hash: SignatureHash,
    pub subject: NameKey,
    pub issuer: NameKey,
    pub basic_constraints: Option<BasicConstraints>,
    pub key_usage: Option<KeyUsage>,
    pub extended_key_usage: Option<ExtendedKeyUsage>,
    pub not_before: i64,
    pub not_after: i64,
}

pub const CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
pub const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// The certificate structure with the fields validation does not read kept
/// opaque, so that what x509-cert's typed decoding refuses (UTCTime before
/// 1970, negative serial numbers) still parses; OpenSSL reads the dates.
#[derive(Clone, Debug, der::Sequence)]
struct LenientCertificate {
    tbs_certificate: der::Any,
    signature_algorithm: spki::AlgorithmIdentifierOwned,
    signature: der::asn1::BitString,
}

#[derive(Clone, Debug, der::Sequence)]
struct LenientTbs {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    version: Option<der::Any>,
    serial_number: der::Any,
    signature: spki::AlgorithmIdentifierOwned,
    issuer: x509_cert::name::Name,
    validity: der::Any,
    subject: x509_cert::name::Name,
    subject_public_key_info: der::Any,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    issuer_unique_id: Option<der::asn1::BitString>,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", optional = "true")]
    subject_unique_id: Option<der::asn1::BitString>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<x509_cert::ext::Extension>>,
}

/// Seconds since the epoch, read by OpenSSL (which handles every year). A
/// time OpenSSL cannot compare is an error, never the epoch: 1970 would make
/// an unreadable notBefore always in the past.
fn unix_time(t: &openssl::asn1::Asn1TimeRef, cert: &Certificate, field: &str) -> Result<i64> {
    openssl::asn1::Asn1Time::from_unix(0)
        .and_then(|epoch| epoch.diff(t))
        .map(|d| d.days as i64 * 86_400 + d.secs as i64)
        .map_err(|_| {
            Error::bad_input(format!(
                "certificate {}: {field} is not a time OpenSSL can read",
                cert.subject()
            ))
        })
}

impl CertFacts {
    pub fn of(cert: &Certificate) -> Result<Self> {
        let malformed =
            |e: der::Error| Error::bad_input(format!("certificate {}: {e}", cert.subject()));
        let parsed = LenientCertificate::from_der(&cert.der).map_err(malformed)?;
        let tbs_der = parsed.tbs_certificate.to_der().map_err(malformed)?;
        let tbs = LenientTbs::from_der(&tbs_der).map_err(malformed)?;
        let signature_oid = parsed.signature_algorithm.oid;
        let signature_hash = signature_hash(&parsed.signature_algorithm);
        let mut facts = CertFacts {
            tbs_der,
            signature: parsed.signature.raw_bytes().to_vec(),
            signature_oid,
            signature_hash,
            subject: name_key(&tbs.subject),
            issuer: name_key(&tbs.issuer),
            basic_constraints: None,
            key_usage: None,
            extended_key_usage: None,
            not_before: unix_time(cert.x509.not_before(), cert, "notBefore")?,
            not_after: unix_time(cert.x509.not_after(), cert, "notAfter")?,
        };
        for ext in tbs.extensions.iter().flatten() {
            let value = ext.extn_value.as_bytes();
            let bad = |what: &str, e: der::Error| {
                Error::bad_input(format!(
                    "certificate {}: malformed {what} extension: {e}",
                    cert.subject()
                ))
            };
            match ext.extn_id {
                rfc5280::ID_CE_BASIC_CONSTRAINTS => {
                    facts.basic_constraints = Some(
                        BasicConstraints::from_der(value)
                            .map_err(|e| bad("basicConstraints", e))?,
                    )
                }
                rfc5280::ID_CE_KEY_USAGE => {
                    facts.key_usage =
                        Some(KeyUsage::from_der(value).map_err(|e| bad("keyUsage", e))?)
                }
                rfc5280::ID_CE_EXT_KEY_USAGE => {
                    facts.extended_key_usage = Some(
                        ExtendedKeyUsage::from_der(value)
                            .map_err(|e| bad("extendedKeyUsage", e))?,
                    )
                }
                _ => {}
            }
        }
        Ok(facts)
    }

    pub fn is_ca(&self) -> bool {
        self.basic_constraints.as_ref().is_some_and(|bc| bc.ca)
    }

    pub fn path_len(&self) -> Option<u8> {
        self.basic_constraints
            .as_ref()
            .and_then(|bc| bc.path_len_constraint)
    }

    pub fn has_key_usage(&self, usage: KeyUsages) -> bool {
        self.key_usage
            .as_ref()
            .is_some_and(|ku| ku.0.contains(usage))
    }

    pub fn within(&self, at: i64) -> bool {
        self.not_before <= at && at <= self.not_after
    }
}

fn signature_hash(alg: &spki::AlgorithmIdentifierOwned) -> SignatureHash {
    use SignatureHash::*;
    match alg.oid {
        rfc5912::SHA_224_WITH_RSA_ENCRYPTION
        | rfc5912::ECDSA_WITH_SHA_224
        | rfc5912::DSA_WITH_SHA_224 => Sha2(HashMethod::Sha224),
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION
        | rfc5912::ECDSA_WITH_SHA_256
        | rfc5912::DSA_WITH_SHA_256 => Sha2(HashMethod::Sha256),
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION | rfc5912::ECDSA_WITH_SHA_384 => {
            Sha2(HashMethod::Sha384)
        }
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION | rfc5912::ECDSA_WITH_SHA_512 => {
            Sha2(HashMethod::Sha512)
        }
        rfc5912::SHA_1_WITH_RSA_ENCRYPTION | rfc5912::DSA_WITH_SHA_1 => Sha1,
        o if o == ObjectIdentifier::new_unwrap("1.2.840.10045.4.1") => Sha1,
        rfc5912::MD_5_WITH_RSA_ENCRYPTION => Md5,
        rfc5912::ID_RSASSA_PSS => pss_hash(alg),
        o if o == ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.3") => {
            Sha2(HashMethod::Sha384)
        }
        o if o == ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.4") => {
            Sha2(HashMethod::Sha512)
        }
        o if o == ObjectIdentifier::new_unwrap("1.3.101.112")
            || o == ObjectIdentifier::new_unwrap("1.3.101.113") =>
        {
            None
        }
        _ => Unknown,
    }
}

fn pss_hash(alg: &spki::AlgorithmIdentifierOwned) -> SignatureHash {
    let Some(params) = &alg.parameters else {
        return SignatureHash::Sha1;
    };
    let Ok(der) = params.to_der() else {
        return SignatureHash::Unknown;
    };
    match pkcs1::RsaPssParams::from_der(&der) {
        Ok(p) => match p.hash.oid {
            rfc5912::ID_SHA_224 => SignatureHash::Sha2(HashMethod::Sha224),
            rfc5912::ID_SHA_256 => SignatureHash::Sha2(HashMethod::Sha256),
            rfc5912::ID_SHA_384 => SignatureHash::Sha2(HashMethod::Sha384),
            rfc5912::ID_SHA_512 => SignatureHash::Sha2(HashMethod::Sha512),
            rfc5912::ID_SHA_1 => SignatureHash::Sha1,
            _ => SignatureHash::Unknown,
        },
        Err(_) => SignatureHash::Unknown,
    }
}

fn name_key(name: &x509_cert::name::Name) -> NameKey {
    name.0
        .iter()
        .map(|rdn| {
            let mut set: Vec<(String, AttributeValue)> = rdn
                .0
                .iter()
                .map(|atv| (atv.oid.to_string(), attribute_value(&atv.value)))
                .collect();
            set.sort();
            set.dedup();
            set
        })
        .collect()
}

fn attribute_value(any: &der::Any) -> AttributeValue {
    let bytes = any.value();
    let text = match any.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::VisibleString
        | Tag::NumericString => std::str::from_utf8(bytes).ok().map(str::to_string),
        // cryptography decodes T61String as Latin-1.
        Tag::TeletexString => Some(bytes.iter().map(|&b| b as char).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    };
    match text {
        Some(t) => AttributeValue::Text(t),
        None => AttributeValue::Bytes(any.to_der().unwrap_or_default()),
    }
}
