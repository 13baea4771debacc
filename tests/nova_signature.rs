//! `imgseal verify --policy nova` against cursive's signature path
//! (`get_verifier` + `update` + `verify`): the same property variants through
//! both must give the same verdict, and the same message wherever cursive
//! raises its own error.

mod common;

use common::*;
use serde_json::{Value, json};

#[test]
fn nova_signature_checks_match_cursive() {
    if cursive_python().is_none() {
        eprintln!("IMGSEAL_SKIP_CURSIVE set: not running cursive");
        return;
    }
    let env = Env::new();
    let uri = env.key_with_certificate("ecc-secp384r1", "p384", "p384-cert");
    let rsa_uri = env.key_with_certificate("rsa-pss-2048", "rsa", "rsa-cert");
    let certs = env.path("km");
    std::fs::create_dir(&certs).unwrap();
    for id in ["p384-cert", "rsa-cert"] {
        env.run(&[
            "cert",
            "export",
            id,
            "--out",
            certs.join(format!("{id}.pem")).to_str().unwrap(),
        ])
        .ok();
    }
    // A P-256 certificate: cursive accepts it for any ECC_* type.
    let p256_key = env.path("p256.key");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-out",
        p256_key.to_str().unwrap(),
    ])
    .ok();
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        p256_key.to_str().unwrap(),
        "-subj",
        "/CN=p256",
        "-days",
        "2",
        "-out",
        certs.join("p256-cert.pem").to_str().unwrap(),
    ])
    .ok();
    // A sect571k1 certificate: OpenSSL has the curve, cryptography not.
    let sect_key = env.path("sect.key");
    openssl(&[
        "ecparam",
        "-name",
        "sect571k1",
        "-genkey",
        "-noout",
        "-out",
        sect_key.to_str().unwrap(),
    ])
    .ok();
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        sect_key.to_str().unwrap(),
        "-subj",
        "/CN=sect571k1",
        "-days",
        "2",
        "-out",
        certs.join("sect-cert.pem").to_str().unwrap(),
    ])
    .ok();
    // An id-RSASSA-PSS certificate key with restrictions (SHA-256, salt ≥ 32):
    // cryptography loads it as plain RSA.
    let pss_key = env.path("pss.key");
    rsa_pss_key(&pss_key, "sha256", 32);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        pss_key.to_str().unwrap(),
        "-subj",
        "/CN=rsassa-pss",
        "-days",
        "2",
        "-out",
        certs.join("pss-cert.pem").to_str().unwrap(),
    ])
    .ok();
    let image = env.image("image.raw", 99_999);
    let tampered = env.path("tampered.raw");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[500] ^= 4;
    std::fs::write(&tampered, bytes).unwrap();

    let good = env
        .run(&[
            "sign",
            "--key",
            &uri,
            "--cert-id",
            "p384-cert",
            "--hash",
            "SHA-384",
            image.to_str().unwrap(),
        ])
        .ok()
        .json();
    let rsa = env
        .run(&[
            "sign",
            "--key",
            &rsa_uri,
            "--cert-id",
            "rsa-cert",
            image.to_str().unwrap(),
        ])
        .ok()
        .json();
    let sig = good["img_signature"].as_str().unwrap().to_string();
    let p256_sig = {
        let out = env.path("p256.sig");
        openssl(&[
            "dgst",
            "-sha384",
            "-sign",
            p256_key.to_str().unwrap(),
            "-out",
            out.to_str().unwrap(),
            image.to_str().unwrap(),
        ])
        .ok();
        encode_b64(&std::fs::read(out).unwrap())
    };
    let sect_sig = {
        let out = env.path("sect.sig");
        openssl(&[
            "dgst",
            "-sha384",
            "-sign",
            sect_key.to_str().unwrap(),
            "-out",
            out.to_str().unwrap(),
            image.to_str().unwrap(),
        ])
        .ok();
        encode_b64(&std::fs::read(out).unwrap())
    };
    let pss_sig = {
        let out = env.path("pss.sig");
        openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            pss_key.to_str().unwrap(),
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:max",
            "-out",
            out.to_str().unwrap(),
            image.to_str().unwrap(),
        ])
        .ok();
        encode_b64(&std::fs::read(out).unwrap())
    };
    let with = |base: &Value, k: &str, v: Value| {
        let mut p = base.clone();
        if v.is_null() {
            p.as_object_mut().unwrap().remove(k);
        } else {
            p[k] = v;
        }
        p
    };
    let cases: Vec<(&str, Value, &std::path::Path)> = vec![
        ("valid", good.clone(), &image),
        ("tampered image", good.clone(), &tampered),
        ("valid RSA-PSS", rsa.clone(), &image),
        (
            "missing certificate uuid",
            with(&good, "img_signature_certificate_uuid", Value::Null),
            &image,
        ),
        (
            "missing hash method",
            with(&good, "img_signature_hash_method", Value::Null),
            &image,
        ),
        (
            "missing signature",
            with(&good, "img_signature", Value::Null),
            &image,
        ),
        (
            "missing key type",
            with(&good, "img_signature_key_type", Value::Null),
            &image,
        ),
        (
            "lower-case hash",
            with(&good, "img_signature_hash_method", json!("sha-384")),
            &image,
        ),
        (
            "unknown hash",
            with(&good, "img_signature_hash_method", json!("SHA-1")),
            &image,
        ),
        (
            "binary curve type",
            with(&good, "img_signature_key_type", json!("ECC_SECT571K1")),
            &image,
        ),
        (
            "lower-case key type",
            with(&good, "img_signature_key_type", json!("rsa-pss")),
            &image,
        ),
        (
            "newlines in base64",
            with(
                &good,
                "img_signature",
                json!(format!("{}\n{}", &sig[..10], &sig[10..])),
            ),
            &image,
        ),
        (
            "stray characters in base64",
            with(&good, "img_signature", json!(format!("!{sig}*"))),
            &image,
        ),
        (
            "bad base64 padding",
            with(&good, "img_signature", json!(&sig[..sig.len() - 1])),
            &image,
        ),
        (
            "empty signature",
            with(&good, "img_signature", json!("")),
            &image,
        ),
        (
            "unknown certificate",
            with(&good, "img_signature_certificate_uuid", json!("nope")),
            &image,
        ),
        (
            "RSA key declared DSA",
            with(&rsa, "img_signature_key_type", json!("DSA")),
            &image,
        ),
        (
            "EC key declared RSA-PSS",
            with(&good, "img_signature_key_type", json!("RSA-PSS")),
            &image,
        ),
        (
            "P-384 key declared ECC_SECP521R1",
            with(&good, "img_signature_key_type", json!("ECC_SECP521R1")),
            &image,
        ),
        (
            "RSASSA-PSS certificate key",
            json!({"img_signature": pss_sig, "img_signature_hash_method": "SHA-256", "img_signature_key_type": "RSA-PSS", "img_signature_certificate_uuid": "pss-cert"}),
            &image,
        ),
        (
            "RSASSA-PSS certificate key, tampered image",
            json!({"img_signature": pss_sig, "img_signature_hash_method": "SHA-256", "img_signature_key_type": "RSA-PSS", "img_signature_certificate_uuid": "pss-cert"}),
            &tampered,
        ),
        (
            "sect571k1 key declared ECC_SECP384R1",
            json!({"img_signature": sect_sig, "img_signature_hash_method": "SHA-384", "img_signature_key_type": "ECC_SECP384R1", "img_signature_certificate_uuid": "sect-cert"}),
            &image,
        ),
        (
            "P-256 key declared ECC_SECP384R1",
            json!({"img_signature": p256_sig, "img_signature_hash_method": "SHA-384", "img_signature_key_type": "ECC_SECP384R1", "img_signature_certificate_uuid": "p256-cert"}),
            &image,
        ),
    ];
    for (name, props, img) in cases {
        let file = write_props(&env, "case.json", &props);
        let ours = env.run(&[
            "--json",
            "verify",
            "--policy",
            "nova",
            "--props",
            file.to_str().unwrap(),
            "--cert-dir",
            certs.to_str().unwrap(),
            img.to_str().unwrap(),
        ]);
        assert!(
            ours.code == 0 || ours.code == 1,
            "{name}: {} {}",
            ours.stdout,
            ours.stderr
        );
        let ours_json = ours.json();
        let theirs = cursive(&[
            "verify-signature",
            "--cert-dir",
            certs.to_str().unwrap(),
            "--props",
            file.to_str().unwrap(),
            img.to_str().unwrap(),
        ])
        .unwrap();
        let theirs_json: Value = serde_json::from_str(theirs.stdout.trim()).unwrap();
        assert_eq!(
            ours.code == 0,
            theirs.code == 0,
            "{name}: imgseal {ours_json} cursive {theirs_json}"
        );
        if theirs_json["error"] == "SignatureVerificationError" {
            assert_eq!(ours_json["reason"], theirs_json["message"], "{name}");
        }
        // Strict refuses what cursive lets through, but never accepts what cursive refuses.
        let strict = env.run(&[
            "verify",
            "--props",
            file.to_str().unwrap(),
            "--cert-dir",
            certs.to_str().unwrap(),
            img.to_str().unwrap(),
        ]);
        if theirs.code != 0 {
            assert_ne!(
                strict.code, 0,
                "{name}: strict accepted what cursive refuses"
            );
        }
    }
}

#[test]
fn crls_kept_in_the_certificate_directory_are_used() {
    let env = Env::new();
    let dir = env.path("km");
    std::fs::create_dir(&dir).unwrap();
    let ca = test_ca();
    let uri = env.key_with_certificate("rsa-pss-2048", "signer", "signer");
    drop(uri);
    env.run(&[
        "cert",
        "export",
        "signer",
        "--out",
        dir.join("signer.pem").to_str().unwrap(),
    ])
    .ok();
    std::fs::copy(ca.dir.join("ca.crt"), dir.join("ca.pem")).unwrap();
    let d = dir.to_str().unwrap();
    env.run(&[
        "cert",
        "verify",
        "signer",
        "--cert-dir",
        d,
        "--trusted-cert-id",
        "ca",
    ])
    .ok();
    // The CA revokes the signer; its CRL sits beside the certificates.
    let serial = openssl(&[
        "x509",
        "-in",
        dir.join("signer.pem").to_str().unwrap(),
        "-noout",
        "-serial",
    ])
    .ok()
    .stdout;
    let serial = serial.trim().trim_start_matches("serial=").to_string();
    let crl_dir = env.path("crlwork");
    std::fs::create_dir(&crl_dir).unwrap();
    std::fs::write(
        crl_dir.join("index.txt"),
        format!("R\t300101000000Z\t240101000000Z\t{serial}\tunknown\t/CN=signer\n"),
    )
    .unwrap();
    std::fs::write(crl_dir.join("crlnumber"), "01\n").unwrap();
    std::fs::write(crl_dir.join("ca.conf"), format!("[ca]\ndefault_ca=d\n[d]\ndatabase={0}/index.txt\ncrlnumber={0}/crlnumber\ndefault_md=sha256\ndefault_crl_days=30\n", crl_dir.display())).unwrap();
    openssl(&[
        "ca",
        "-gencrl",
        "-config",
        crl_dir.join("ca.conf").to_str().unwrap(),
        "-cert",
        ca.dir.join("ca.crt").to_str().unwrap(),
        "-keyfile",
        ca.dir.join("ca.key").to_str().unwrap(),
        "-out",
        dir.join("ca.crl").to_str().unwrap(),
    ])
    .ok();
    let out = env
        .run(&[
            "cert",
            "verify",
            "signer",
            "--cert-dir",
            d,
            "--trusted-cert-id",
            "ca",
        ])
        .code(1);
    assert!(out.stdout.contains("revoked"), "{}", out.stdout);
}
