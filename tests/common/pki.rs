//! A small PKI workshop for tests: certificates with exactly the extensions,
//! dates, names, keys and signature algorithms a case needs, made with OpenSSL.

use std::path::Path;

use const_oid::ObjectIdentifier;
use der::asn1::{BitString, OctetString, Uint};
use der::{Decode, Encode};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::asn1::{Asn1Object, Asn1OctetString};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509, X509Crl, X509Extension, X509Name, X509NameBuilder, X509NameRef};
use spki::AlgorithmIdentifierOwned;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::CrlDistributionPoints;
use x509_cert::ext::pkix::crl::dp::{DistributionPoint, IssuingDistributionPoint};
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::serial_number::SerialNumber;

#[derive(Clone, Copy, Debug)]
pub enum KeyAlg {
    Rsa2048,
    Rsa1024,
    P384,
    /// A binary curve: OpenSSL has it, today's cryptography (and so cursive) not.
    Sect571k1,
    Ed25519,
}

pub fn key(alg: KeyAlg) -> PKey<Private> {
    match alg {
        KeyAlg::Rsa2048 => PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap(),
        KeyAlg::Rsa1024 => PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap(),
        KeyAlg::P384 => {
            let g = openssl::ec::EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
            PKey::from_ec_key(openssl::ec::EcKey::generate(&g).unwrap()).unwrap()
        }
        KeyAlg::Sect571k1 => {
            let g = openssl::ec::EcGroup::from_curve_name(Nid::SECT571K1).unwrap();
            PKey::from_ec_key(openssl::ec::EcKey::generate(&g).unwrap()).unwrap()
        }
        KeyAlg::Ed25519 => PKey::generate_ed25519().unwrap(),
    }
}

/// A distinguished name as (attribute, value) pairs, in order.
pub type Dn = Vec<(&'static str, String)>;

/// What a certificate carries.
#[derive(Clone)]
pub struct Spec {
    pub subject: Vec<(&'static str, String)>,
    /// Overrides the issuer name (defaults to the issuer's subject).
    pub issuer_name: Option<Vec<(&'static str, String)>>,
    /// Days relative to now.
    pub not_before: i64,
    pub not_after: i64,
    /// None: no basicConstraints; Some((ca, pathlen)).
    pub basic_constraints: Option<(bool, Option<u32>)>,
    /// None: no keyUsage.
    pub key_usage: Option<&'static [&'static str]>,
    pub extended_key_usage: Option<&'static [&'static str]>,
    pub key: KeyAlg,
    pub digest: &'static str,
    /// Sign with RSASSA-PSS instead of PKCS#1 v1.5 (RSA issuers).
    pub pss: bool,
    pub serial: u32,
    /// A cRLDistributionPoints extension naming `(distribution point, CRL
    /// issuer)`: an indirect CRL made by another key than the issuer's.
    pub crl_issuer: Option<(Dn, Dn)>,
}

impl Spec {
    pub fn ca(cn: &str) -> Self {
        Spec {
            subject: vec![("CN", cn.to_string())],
            issuer_name: None,
            not_before: -1,
            not_after: 365,
            basic_constraints: Some((true, None)),
            key_usage: Some(&["keyCertSign", "cRLSign", "digitalSignature"]),
            extended_key_usage: None,
            key: KeyAlg::Rsa2048,
            digest: "sha256",
            pss: false,
            serial: 1,
            crl_issuer: None,
        }
    }

    pub fn leaf(cn: &str) -> Self {
        Spec {
            basic_constraints: Some((false, None)),
            key_usage: Some(&["digitalSignature"]),
            extended_key_usage: Some(&["codeSigning"]),
            ..Spec::ca(cn)
        }
    }
}

pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

fn name(parts: &[(&str, String)]) -> X509Name {
    let mut b = X509NameBuilder::new().unwrap();
    for (k, v) in parts {
        b.append_entry_by_text(k, v).unwrap();
    }
    b.build()
}

fn days(d: i64) -> Asn1Time {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Asn1Time::from_unix(now + d * 86_400).unwrap()
}

/// Issues a certificate for `spec`, signed by `issuer` (self-signed when None).
pub fn issue(spec: &Spec, issuer: Option<&Issued>) -> Issued {
    issue_with_key(spec, issuer, key(spec.key))
}

/// [`issue`] for a key made by the caller (`spec.key` is not used), e.g. one
/// OpenSSL would never generate.
pub fn issue_with_key(spec: &Spec, issuer: Option<&Issued>, key: PKey<Private>) -> Issued {
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = Asn1Integer::from_bn(&BigNum::from_u32(spec.serial).unwrap()).unwrap();
    b.set_serial_number(&serial).unwrap();
    let subject = name(&spec.subject);
    b.set_subject_name(&subject).unwrap();
    let issuer_name = match (&spec.issuer_name, issuer) {
        (Some(n), _) => name(n),
        (None, Some(i)) => i.cert.subject_name().to_owned().unwrap(),
        (None, None) => subject.to_owned().unwrap(),
    };
    b.set_issuer_name(&issuer_name).unwrap();
    b.set_not_before(&days(spec.not_before)).unwrap();
    b.set_not_after(&days(spec.not_after)).unwrap();
    b.set_pubkey(&key).unwrap();
    if let Some((ca, pathlen)) = spec.basic_constraints {
        let mut bc = BasicConstraints::new();
        bc.critical();
        if ca {
            bc.ca();
        }
        if let Some(p) = pathlen {
            bc.pathlen(p);
        }
        b.append_extension(bc.build().unwrap()).unwrap();
    }
    if let Some(usages) = spec.key_usage {
        let mut ku = KeyUsage::new();
        ku.critical();
        for u in usages {
            match *u {
                "keyCertSign" => ku.key_cert_sign(),
                "cRLSign" => ku.crl_sign(),
                "digitalSignature" => ku.digital_signature(),
                "keyEncipherment" => ku.key_encipherment(),
                other => panic!("{other}"),
            };
        }
        b.append_extension(ku.build().unwrap()).unwrap();
    }
    if let Some(usages) = spec.extended_key_usage {
        let mut eku = ExtendedKeyUsage::new();
        for u in usages {
            match *u {
                "codeSigning" => eku.code_signing(),
                "serverAuth" => eku.server_auth(),
                other => panic!("{other}"),
            };
        }
        b.append_extension(eku.build().unwrap()).unwrap();
    }
    if let Some((point, crl_issuer)) = &spec.crl_issuer {
        let dp = DistributionPoint {
            distribution_point: Some(DistributionPointName::FullName(vec![directory(&name(
                point,
            ))])),
            reasons: None,
            crl_issuer: Some(vec![directory(&name(crl_issuer))]),
        };
        let value = CrlDistributionPoints(vec![dp]).to_der().unwrap();
        b.append_extension(raw_extension("2.5.29.31", false, &value))
            .unwrap();
    }
    let signing_key = issuer.map(|i| &i.key).unwrap_or(&key);
    let md = match spec.digest {
        "sha1" => MessageDigest::sha1(),
        "sha256" => MessageDigest::sha256(),
        "sha384" => MessageDigest::sha384(),
        "none" => MessageDigest::null(),
        other => panic!("{other}"),
    };
    b.sign(signing_key, md).unwrap();
    let cert = b.build();
    match (spec.pss, issuer) {
        (true, Some(i)) => Issued {
            cert: resign_pss(&cert, &key, i),
            key,
        },
        _ => Issued { cert, key },
    }
}

/// The openssl crate's builder cannot sign with PSS: turn the finished
/// certificate back into a request and have the openssl CLI issue it again,
/// extensions copied, with RSASSA-PSS.
fn resign_pss(cert: &X509, key: &PKey<Private>, issuer: &Issued) -> X509 {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    std::fs::write(p("in.pem"), cert.to_pem().unwrap()).unwrap();
    std::fs::write(p("in.key"), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    std::fs::write(p("ca.pem"), issuer.cert.to_pem().unwrap()).unwrap();
    std::fs::write(p("ca.key"), issuer.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "x509",
        "-x509toreq",
        "-in",
        &p("in.pem"),
        "-signkey",
        &p("in.key"),
        "-copy_extensions",
        "copy",
        "-out",
        &p("req.pem"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p("req.pem"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-copy_extensions",
        "copy",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:digest",
        "-days",
        "30",
        "-set_serial",
        "77",
        "-out",
        &p("out.pem"),
    ]);
    X509::from_pem(&std::fs::read(p("out.pem")).unwrap()).unwrap()
}

fn directory(name: &X509NameRef) -> GeneralName {
    GeneralName::DirectoryName(x509_cert::name::Name::from_der(&name.to_der().unwrap()).unwrap())
}

fn raw_extension(oid: &str, critical: bool, value: &[u8]) -> X509Extension {
    X509Extension::new_from_der(
        &Asn1Object::from_str(oid).unwrap(),
        critical,
        &Asn1OctetString::new_from_bytes(value).unwrap(),
    )
    .unwrap()
}

pub fn x509_name(parts: &[(&str, String)]) -> X509Name {
    name(parts)
}

/// One revoked entry: a serial and, in an indirect CRL, the certificate
/// issuer it belongs to (RFC 5280 §5.3.3).
pub struct Revoked<'a> {
    pub serial: u32,
    pub certificate_issuer: Option<&'a X509NameRef>,
}

/// A v2 CRL signed by `signer` with SHA-256, valid from yesterday for 30 days.
/// With `indirect_point`, it carries a critical issuingDistributionPoint with
/// that full name and indirectCRL set. The openssl CLI cannot write
/// certificateIssuer entry extensions, so the CRL is encoded here.
pub fn crl(signer: &Issued, indirect_point: Option<&X509NameRef>, revoked: &[Revoked]) -> X509Crl {
    crl_with(
        signer,
        &CrlOptions {
            indirect_point,
            ..CrlOptions::default()
        },
        revoked,
    )
}

/// What a CRL made by [`crl_with`] carries besides its entries.
pub struct CrlOptions<'a> {
    /// The cRLNumber.
    pub number: u32,
    /// thisUpdate, seconds since the epoch (default: yesterday, to the second).
    pub this_update: Option<u64>,
    /// A deltaCRLIndicator naming this base CRL number.
    pub delta_of: Option<u32>,
    pub indirect_point: Option<&'a X509NameRef>,
}

impl Default for CrlOptions<'_> {
    fn default() -> Self {
        CrlOptions {
            number: 1,
            this_update: None,
            delta_of: None,
            indirect_point: None,
        }
    }
}

/// A v2 CRL signed by `signer` with SHA-256 as `options` say, valid for 30
/// days from its thisUpdate.
pub fn crl_with(signer: &Issued, options: &CrlOptions, revoked: &[Revoked]) -> X509Crl {
    use std::time::{Duration, SystemTime};
    let time = |t: SystemTime| x509_cert::time::Time::try_from(t).unwrap();
    let now = SystemTime::now();
    let this_update = match options.this_update {
        Some(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        None => now - Duration::from_secs(86_400),
    };
    let ext = |oid: &str, critical: bool, value: Vec<u8>| Extension {
        extn_id: ObjectIdentifier::new_unwrap(oid),
        critical,
        extn_value: OctetString::new(value).unwrap(),
    };
    let number = |n: u32| Uint::new(&n.to_be_bytes()).unwrap().to_der().unwrap();
    let entries: Vec<RevokedCert> = revoked
        .iter()
        .map(|r| RevokedCert {
            serial_number: SerialNumber::new(&r.serial.to_be_bytes()).unwrap(),
            revocation_date: time(this_update - Duration::from_secs(3600)),
            crl_entry_extensions: r.certificate_issuer.map(|issuer| {
                vec![ext(
                    "2.5.29.29",
                    true,
                    vec![directory(issuer)].to_der().unwrap(),
                )]
            }),
        })
        .collect();
    let mut extensions = vec![ext("2.5.29.20", false, number(options.number))];
    if let Some(base) = options.delta_of {
        extensions.push(ext("2.5.29.27", true, number(base)));
    }
    if let Some(point) = options.indirect_point {
        let idp = IssuingDistributionPoint {
            distribution_point: Some(DistributionPointName::FullName(vec![directory(point)])),
            only_contains_user_certs: false,
            only_contains_ca_certs: false,
            only_some_reasons: None,
            indirect_crl: true,
            only_contains_attribute_certs: false,
        };
        extensions.push(ext("2.5.29.28", true, idp.to_der().unwrap()));
    }
    let algorithm = AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11"),
        parameters: Some(der::asn1::Null.into()),
    };
    let tbs = TbsCertList {
        version: x509_cert::Version::V2,
        signature: algorithm.clone(),
        issuer: x509_cert::name::Name::from_der(&signer.cert.subject_name().to_der().unwrap())
            .unwrap(),
        this_update: time(this_update),
        next_update: Some(time(this_update + Duration::from_secs(30 * 86_400))),
        revoked_certificates: (!entries.is_empty()).then_some(entries),
        crl_extensions: Some(extensions),
    };
    let mut signer_ctx = Signer::new(MessageDigest::sha256(), &signer.key).unwrap();
    signer_ctx.update(&tbs.to_der().unwrap()).unwrap();
    let signature = signer_ctx.sign_to_vec().unwrap();
    let list = CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature).unwrap(),
    };
    X509Crl::from_der(&list.to_der().unwrap()).unwrap()
}

/// A CRL made with the openssl CLI's `ca -gencrl` in the scratch directory
/// `dir`: signed by the CA in `ca_pem`/`ca_key`, numbered `number`, revoking
/// the certificates with the hexadecimal serials `serials`.
pub fn gencrl(
    dir: &Path,
    ca_pem: &Path,
    ca_key: &Path,
    serials: &[String],
    number: u32,
    out: &Path,
) {
    let mut index = String::new();
    for hex in serials {
        let hex = if hex.len() % 2 == 1 {
            format!("0{hex}")
        } else {
            hex.clone()
        };
        index.push_str(&format!(
            "R\t300101000000Z\t240101000000Z\t{hex}\tunknown\t/CN=revoked\n"
        ));
    }
    std::fs::write(dir.join("index.txt"), index).unwrap();
    std::fs::write(
        dir.join("ca.conf"),
        format!("[ca]\ndefault_ca = d\n[d]\ndatabase = {0}/index.txt\ncrlnumber = {0}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n", dir.display()),
    )
    .unwrap();
    std::fs::write(dir.join("crlnumber"), format!("{number:02X}\n")).unwrap();
    super::openssl(&[
        "ca",
        "-gencrl",
        "-config",
        dir.join("ca.conf").to_str().unwrap(),
        "-cert",
        ca_pem.to_str().unwrap(),
        "-keyfile",
        ca_key.to_str().unwrap(),
        "-out",
        out.to_str().unwrap(),
    ])
    .ok();
}

/// A small self-signed P-384 CA certificate, as a trust anchor, written as
/// `<dir>/<id>.pem`.
pub fn anchor_cert_file(dir: &Path, id: &str) -> std::path::PathBuf {
    let issued = issue(
        &Spec {
            key: KeyAlg::P384,
            ..Spec::ca(&format!("anchor {id}"))
        },
        None,
    );
    write_pem(dir, id, &issued.cert);
    dir.join(format!("{id}.pem"))
}

/// A certificate directory as `--cert-dir` reads it: `<id>.pem` for each.
pub fn cert_dir(dir: &Path, certs: &[(&str, &Issued)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (id, issued) in certs {
        write_pem(dir, id, &issued.cert);
    }
}

pub fn write_pem(dir: &Path, id: &str, cert: &X509) {
    std::fs::write(dir.join(format!("{id}.pem")), cert.to_pem().unwrap()).unwrap();
}
