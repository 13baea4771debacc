//! Bad signatures and bad properties are refused with a clear message and the
//! documented exit code (1 invalid, 3 bad input, 4 not found).

mod common;

use common::*;
use serde_json::{Value, json};

struct Signed {
    env: Env,
    image: std::path::PathBuf,
    props: Value,
    certs: std::path::PathBuf,
}

/// An image signed with an ECC secp384r1 key in the HSM, its certificate in a
/// directory together with certificates of other keys.
fn signed() -> Signed {
    let env = Env::new();
    let uri = env.key_with_certificate("ecc-secp384r1", "p384", "p384-cert");
    env.key_with_certificate("ecc-secp521r1", "p521", "p521-cert");
    env.key_with_certificate("rsa-pss-2048", "rsa", "rsa-cert");
    let certs = env.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    for id in ["p384-cert", "p521-cert", "rsa-cert"] {
        env.run(&[
            "cert",
            "export",
            id,
            "--out",
            certs.join(format!("{id}.pem")).to_str().unwrap(),
        ])
        .ok();
    }
    let image = env.image("image.raw", 70_000);
    let props = env
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
    Signed {
        env,
        image,
        props,
        certs,
    }
}

impl Signed {
    fn verify_with(&self, props: &Value) -> Run {
        let file = write_props(&self.env, "case.json", props);
        self.verify_file(&file)
    }

    fn verify_file(&self, file: &std::path::Path) -> Run {
        self.env.run(&[
            "verify",
            "--props",
            file.to_str().unwrap(),
            "--cert-dir",
            self.certs.to_str().unwrap(),
            self.image.to_str().unwrap(),
        ])
    }

    fn with(&self, key: &str, value: Value) -> Value {
        let mut p = self.props.clone();
        p[key] = value;
        p
    }
}

#[track_caller]
fn expect(run: Run, code: i32, message: &str) {
    let text = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, code, "{text}");
    assert!(text.contains(message), "expected {message:?} in: {text}");
    // One readable line on stderr, never a panic.
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        run.stderr.lines().count() <= 1,
        "more than one line on stderr: {}",
        run.stderr
    );
}

#[test]
fn every_bad_signature_and_property_is_refused_clearly() {
    let s = signed();
    s.verify_with(&s.props).ok();

    // Tampered image.
    let tampered = s.env.path("tampered.raw");
    let mut bytes = std::fs::read(&s.image).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    std::fs::write(&tampered, bytes).unwrap();
    let file = write_props(&s.env, "good.json", &s.props);
    expect(
        s.env.run(&[
            "verify",
            "--props",
            file.to_str().unwrap(),
            "--cert-dir",
            s.certs.to_str().unwrap(),
            tampered.to_str().unwrap(),
        ]),
        1,
        "invalid: the signature does not match",
    );

    // Wrong key: the certificate of another P-384… no, of a P-521 key declared as such.
    let wrong = s.with("img_signature_certificate_uuid", json!("p521-cert"));
    let wrong = {
        let mut w = wrong;
        w["img_signature_key_type"] = json!("ECC_SECP521R1");
        w
    };
    expect(s.verify_with(&wrong), 1, "the signature does not match");

    // Truncated signature.
    let sig = decode_b64(s.props["img_signature"].as_str().unwrap());
    let truncated = s.with("img_signature", json!(encode_b64(&sig[..sig.len() - 5])));
    expect(s.verify_with(&truncated), 1, "the signature does not match");

    // Unknown and lower-case hash and key-type names.
    expect(
        s.verify_with(&s.with("img_signature_hash_method", json!("SHA-1"))),
        3,
        "img_signature_hash_method \"SHA-1\" is not one of",
    );
    expect(
        s.verify_with(&s.with("img_signature_hash_method", json!("sha-384"))),
        3,
        "img_signature_hash_method \"sha-384\"",
    );
    expect(
        s.verify_with(&s.with("img_signature_key_type", json!("ecc_secp384r1"))),
        3,
        "img_signature_key_type \"ecc_secp384r1\"",
    );
    expect(
        s.verify_with(&s.with("img_signature_key_type", json!("ECC_SECP256R1"))),
        3,
        "img_signature_key_type \"ECC_SECP256R1\"",
    );

    // Missing properties, one and several.
    let mut missing = s.props.clone();
    missing
        .as_object_mut()
        .unwrap()
        .remove("img_signature_certificate_uuid");
    expect(
        s.verify_with(&missing),
        3,
        "missing image property img_signature_certificate_uuid",
    );
    expect(
        s.verify_with(&json!({"img_signature": "AAAA"})),
        3,
        "missing image properties img_signature_hash_method, img_signature_key_type, img_signature_certificate_uuid",
    );

    // Malformed base64: cursive silently drops these characters; we do not.
    let b64 = s.props["img_signature"].as_str().unwrap();
    let with_newline = format!("{}\n{}", &b64[..20], &b64[20..]);
    expect(
        s.verify_with(&s.with("img_signature", json!(with_newline))),
        3,
        "not valid base64: character newline at offset 20",
    );
    expect(
        s.verify_with(&s.with("img_signature", json!(format!("!{b64}")))),
        3,
        "not valid base64: character '!' at offset 0",
    );
    expect(
        s.verify_with(&s.with("img_signature", json!(&b64[..b64.len() - 1]))),
        3,
        "not valid base64",
    );
    expect(
        s.verify_with(&s.with("img_signature", json!(""))),
        3,
        "the signature is empty",
    );

    // Malformed JSON, and JSON of the wrong shape.
    let bad_json = s.env.path("bad.json");
    std::fs::write(
        &bad_json,
        "{\"img_signature\": \"AAAA\",\n \"img_signature_hash_method\": ",
    )
    .unwrap();
    expect(
        s.verify_file(&bad_json),
        3,
        "bad.json: not valid JSON at line 2",
    );
    expect(s.verify_with(&json!([1, 2])), 3, "expected a JSON object");
    expect(
        s.verify_with(&s.with("img_signature_hash_method", json!(384))),
        3,
        "property img_signature_hash_method must be a string, found a number",
    );

    // Key type ≠ certificate key.
    expect(
        s.verify_with(&s.with("img_signature_key_type", json!("DSA"))),
        1,
        "img_signature_key_type is DSA but the certificate's key is EC secp384r1",
    );
    expect(
        s.verify_with(&s.with("img_signature_key_type", json!("RSA-PSS"))),
        1,
        "img_signature_key_type is RSA-PSS but the certificate's key is EC secp384r1",
    );
    // Curve ≠ declared curve: cursive accepts this; we do not.
    expect(
        s.verify_with(&s.with("img_signature_key_type", json!("ECC_SECP521R1"))),
        1,
        "img_signature_key_type is ECC_SECP521R1 but the certificate's key is EC secp384r1",
    );
    expect(
        s.verify_with(&s.with("img_signature_key_type", json!("ECC_SECT409K1"))),
        1,
        "but the certificate's key is EC secp384r1",
    );

    // Unknown certificate, and an id that could escape the certificate directory.
    expect(
        s.verify_with(&s.with("img_signature_certificate_uuid", json!("nope"))),
        4,
        "certificate \"nope\" not found",
    );
    expect(
        s.verify_with(&s.with(
            "img_signature_certificate_uuid",
            json!("../certs/p384-cert"),
        )),
        3,
        "contains a path separator",
    );

    // A missing image and a missing properties file are I/O errors naming the path.
    let gone = s.env.path("gone.raw");
    expect(
        s.env.run(&[
            "verify",
            "--props",
            file.to_str().unwrap(),
            "--cert-dir",
            s.certs.to_str().unwrap(),
            gone.to_str().unwrap(),
        ]),
        7,
        "gone.raw",
    );
    expect(
        s.env.run(&[
            "verify",
            "--props",
            "/nonexistent/props.json",
            s.image.to_str().unwrap(),
        ]),
        7,
        "/nonexistent/props.json",
    );
}

#[test]
fn json_output_carries_the_verdict_and_reason() {
    let s = signed();
    let file = write_props(
        &s.env,
        "props.json",
        &s.with("img_signature_key_type", json!("ECC_SECP521R1")),
    );
    let out = s.env.run(&[
        "--json",
        "verify",
        "--props",
        file.to_str().unwrap(),
        "--cert-dir",
        s.certs.to_str().unwrap(),
        s.image.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1);
    let v = out.json();
    assert_eq!(v["verdict"], "invalid");
    assert_eq!(v["exit_code"], 1);
    assert!(v["reason"].as_str().unwrap().contains("ECC_SECP521R1"));
    let file = write_props(
        &s.env,
        "props2.json",
        &s.with("img_signature_hash_method", json!("MD5")),
    );
    let out = s.env.run(&[
        "--json",
        "verify",
        "--props",
        file.to_str().unwrap(),
        "--cert-dir",
        s.certs.to_str().unwrap(),
        s.image.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 3);
    let v = out.json();
    assert_eq!(v["verdict"], "error");
    assert_eq!(v["error"], "bad-input");
    assert!(v["reason"].as_str().unwrap().contains("\"MD5\""));
}

/// The embedded token's keys and PINs live in $IMGSEAL_HOME: a home another
/// user could write to is refused before anything is created in it.
#[test]
fn a_home_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    std::fs::set_permissions(env.home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = env.run(&["key", "list"]).code(2);
    assert!(
        out.stderr
            .contains("IMGSEAL_HOME must be yours and not writable by others"),
        "{}",
        out.stderr
    );
    assert!(
        !env.home.path().join("user.pin").exists(),
        "nothing was created"
    );
    std::fs::set_permissions(env.home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.run(&["key", "list"]).ok();
}
