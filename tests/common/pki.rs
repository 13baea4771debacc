//! A small PKI workshop for tests: certificates with exactly the extensions,
//! dates, names, keys and signature algorithms a case needs, made with OpenSSL.

use std::path::Path;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509, X509Name, X509NameBuilder};

#[derive(Clone, Copy, Debug)]
pub enum KeyAlg {
    Rsa2048,
    Rsa1024,
    P384,
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
        KeyAlg::Ed25519 => PKey::generate_ed25519().unwrap(),
    }
}

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
    let key = key(spec.key);
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

pub fn write_pem(dir: &Path, id: &str, cert: &X509) {
    std::fs::write(dir.join(format!("{id}.pem")), cert.to_pem().unwrap()).unwrap();
}
