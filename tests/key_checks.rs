//! The signing key itself (issue #10): the strict policy enforces an
//! id-RSASSA-PSS key's RFC 4055 restrictions and refuses degenerate keys (RSA
//! exponent 1, even or small; DSA domain parameters that FIPS 186-4 does not
//! allow); the nova policy decides as cursive does and says so in a note.
//! Certificates chain to a trusted root, so only the key is at fault.

mod common;

use std::path::{Path, PathBuf};

use common::pki::{self, Issued, Spec, issue, issue_with_key};
use common::*;
use openssl::bn::{BigNum, BigNumRef};
use openssl::pkey::{PKey, Private};
use serde_json::{Value, json};

/// A trusted root, and a directory holding it as `root`.
fn root_dir(env: &Env) -> (Issued, PathBuf) {
    let root = issue(&Spec::ca("key checks root"), None);
    let dir = env.path("km");
    pki::cert_dir(&dir, &[("root", &root)]);
    (root, dir)
}

/// Signs `image` with the openssl CLI: `key` as a plain RSA key, PSS with
/// MGF1 over `hash` and a `salt`-byte salt. Returns the Glance properties.
fn pss_props(
    env: &Env,
    key: &PKey<Private>,
    hash: &str,
    salt: &str,
    image: &Path,
    cert: &str,
) -> Value {
    let key_file = env.path("signing.key");
    std::fs::write(&key_file, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let sig = env.path("image.sig");
    openssl(&[
        "dgst",
        &format!("-{hash}"),
        "-sign",
        key_file.to_str().unwrap(),
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        &format!("rsa_mgf1_md:{hash}"),
        "-sigopt",
        &format!("rsa_pss_saltlen:{salt}"),
        "-out",
        sig.to_str().unwrap(),
        image.to_str().unwrap(),
    ])
    .ok();
    json!({
        "img_signature": encode_b64(&std::fs::read(&sig).unwrap()),
        "img_signature_hash_method": format!("SHA-{}", &hash[3..]),
        "img_signature_key_type": "RSA-PSS",
        "img_signature_certificate_uuid": cert,
    })
}

/// `imgseal --json verify` against the root; (exit code, verdict).
fn verify(env: &Env, dir: &Path, props: &Value, image: &Path, extra: &[&str]) -> (i32, Value) {
    let file = write_props(env, "props.json", props);
    let mut args = vec![
        "--json",
        "verify",
        "--props",
        file.to_str().unwrap(),
        "--cert-dir",
        dir.to_str().unwrap(),
        "--trusted-cert-id",
        "root",
    ];
    args.extend(extra);
    args.push(image.to_str().unwrap());
    let run = env.run(&args);
    assert!(
        run.code == 0 || run.code == 1,
        "{} {}",
        run.stdout,
        run.stderr
    );
    (run.code, run.json())
}

/// cursive's verdict on the signature, when the peer is available.
fn cursive_accepts(dir: &Path, env: &Env, props: &Value, image: &Path) -> Option<bool> {
    let file = write_props(env, "cursive.json", props);
    let run = cursive(&[
        "verify-signature",
        "--cert-dir",
        dir.to_str().unwrap(),
        "--props",
        file.to_str().unwrap(),
        image.to_str().unwrap(),
    ])?;
    Some(run.code == 0)
}

fn notes(v: &Value) -> String {
    v["notes"].to_string()
}

#[test]
fn strict_enforces_rsassa_pss_key_restrictions() {
    let env = Env::new();
    let (root, dir) = root_dir(&env);
    let key_file = env.path("pss.key");
    rsa_pss_key(&key_file, "sha512", 64);
    let pss_key = PKey::private_key_from_pem(&std::fs::read(&key_file).unwrap()).unwrap();
    let leaf = issue_with_key(
        &Spec::leaf("restricted signer"),
        Some(&root),
        pss_key.clone(),
    );
    pki::write_pem(&dir, "pss", &leaf.cert);
    // The same key as plain RSA: OpenSSL refuses to break the restrictions.
    let plain = PKey::from_rsa(pss_key.rsa().unwrap()).unwrap();
    let image = env.image("image.raw", 70_000);

    // Within the restrictions: valid under both policies, no note.
    for (hash, salt) in [("sha512", "64"), ("sha512", "max")] {
        let props = pss_props(&env, &plain, hash, salt, &image, "pss");
        for policy in ["strict", "nova"] {
            let (code, v) = verify(&env, &dir, &props, &image, &["--policy", policy]);
            assert_eq!(code, 0, "{hash} salt {salt} {policy}: {v}");
            assert_eq!(v["notes"], json!([]), "{v}");
        }
    }
    let cases = [
        (
            "sha256",
            "0",
            "restricted to SHA512 (RFC 4055), the signature uses SHA-256",
        ),
        (
            "sha224",
            "0",
            "restricted to SHA512 (RFC 4055), the signature uses SHA-224",
        ),
        (
            "sha512",
            "0",
            "salt of at least 64 bytes (RFC 4055), the signature's salt is 0 bytes",
        ),
        ("sha512", "63", "the signature's salt is 63 bytes"),
    ];
    for (hash, salt, problem) in cases {
        let props = pss_props(&env, &plain, hash, salt, &image, "pss");
        let (code, v) = verify(&env, &dir, &props, &image, &[]);
        assert_eq!(code, 1, "{hash} salt {salt}: strict accepted {v}");
        let reason = v["reason"].as_str().unwrap();
        assert!(
            reason.contains("breaks the restrictions of certificate \"pss\"'s RSASSA-PSS key")
                && reason.contains(problem),
            "{hash} salt {salt}: {reason}"
        );
        let (code, v) = verify(&env, &dir, &props, &image, &["--policy", "nova"]);
        assert_eq!(code, 0, "{hash} salt {salt}: nova refused {v}");
        assert!(
            notes(&v).contains("cursive ignores the restrictions") && notes(&v).contains(problem),
            "{v}"
        );
        if let Some(accepts) = cursive_accepts(&dir, &env, &props, &image) {
            assert!(accepts, "{hash} salt {salt}: cursive refused");
        }
    }
}

/// An RSA key pair with public exponent `e` over a fresh modulus: d is e's
/// inverse modulo λ(n) (for e = 1, d = 1), so OpenSSL signs with it.
fn rsa_with_exponent(bits: u32, e: u32) -> PKey<Private> {
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let e_bn = BigNum::from_u32(e).unwrap();
    loop {
        let base = openssl::rsa::Rsa::generate(bits).unwrap();
        let (p, q) = (base.p().unwrap(), base.q().unwrap());
        let one = BigNum::from_u32(1).unwrap();
        let (mut p1, mut q1) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        p1.checked_sub(p, &one).unwrap();
        q1.checked_sub(q, &one).unwrap();
        let mut phi = BigNum::new().unwrap();
        phi.checked_mul(&p1, &q1, &mut ctx).unwrap();
        let mut d = BigNum::new().unwrap();
        if e == 1 {
            d = BigNum::from_u32(1).unwrap();
        } else if d.mod_inverse(&e_bn, &phi, &mut ctx).is_err() {
            continue; // e shares a factor with φ(n): another modulus
        }
        let (mut dp, mut dq) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        dp.nnmod(&d, &p1, &mut ctx).unwrap();
        dq.nnmod(&d, &q1, &mut ctx).unwrap();
        if e == 1 {
            dp = BigNum::from_u32(1).unwrap();
            dq = BigNum::from_u32(1).unwrap();
        }
        let rsa = openssl::rsa::Rsa::from_private_components(
            base.n().to_owned().unwrap(),
            e_bn.to_owned().unwrap(),
            d,
            p.to_owned().unwrap(),
            q.to_owned().unwrap(),
            dp,
            dq,
            base.iqmp().unwrap().to_owned().unwrap(),
        )
        .unwrap();
        return PKey::from_rsa(rsa).unwrap();
    }
}

#[test]
fn strict_refuses_degenerate_rsa_exponents() {
    let env = Env::new();
    let (root, dir) = root_dir(&env);
    let image = env.image("image.raw", 50_000);
    // Exponent 1: the "signature" is the PSS encoding itself.
    let e1 = rsa_with_exponent(3072, 1);
    let leaf = issue_with_key(&Spec::leaf("exponent one"), Some(&root), e1.clone());
    pki::write_pem(&dir, "e1", &leaf.cert);
    let props = pss_props(&env, &e1, "sha256", "max", &image, "e1");
    let sig = decode_b64(props["img_signature"].as_str().unwrap());
    let e1_public = PKey::public_key_from_der(&e1.public_key_to_der().unwrap()).unwrap();
    let mut recovered = vec![0u8; sig.len()];
    let n = e1_public
        .rsa()
        .unwrap()
        .public_decrypt(&sig, &mut recovered, openssl::rsa::Padding::NONE)
        .unwrap();
    assert_eq!(
        &recovered[..n],
        &sig[..],
        "with e = 1 the signature is its own encoding"
    );

    let (code, v) = verify(&env, &dir, &props, &image, &[]);
    assert_eq!(code, 1, "strict accepted exponent 1: {v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("the key of certificate \"e1\" is unsafe: the RSA public exponent is 1"),
        "{v}"
    );
    // Even with small exponents allowed.
    let (code, _) = verify(&env, &dir, &props, &image, &["--allow-small-rsa-exponent"]);
    assert_eq!(code, 1);
    // cryptography refuses to load the key, so cursive crashes (Nova: an
    // internal error); nova says so instead of accepting.
    let (code, v) = verify(&env, &dir, &props, &image, &["--policy", "nova"]);
    assert_eq!(code, 1, "nova must decide as cursive: {v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("cryptography raises an uncaught ValueError (e must be >= 3 and < n.)"),
        "{v}"
    );
    if let Some(accepts) = cursive_accepts(&dir, &env, &props, &image) {
        assert!(!accepts, "cursive accepted exponent 1");
    }

    // Exponent 3: refused unless configured.
    let e3 = rsa_with_exponent(2048, 3);
    let leaf = issue_with_key(&Spec::leaf("exponent three"), Some(&root), e3.clone());
    pki::write_pem(&dir, "e3", &leaf.cert);
    let props = pss_props(&env, &e3, "sha256", "max", &image, "e3");
    let (code, v) = verify(&env, &dir, &props, &image, &[]);
    assert_eq!(code, 1, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("exponent 3 is below 65537"),
        "{v}"
    );
    let (code, v) = verify(&env, &dir, &props, &image, &["--allow-small-rsa-exponent"]);
    assert_eq!(code, 0, "{v}");
    let (code, v) = verify(&env, &dir, &props, &image, &["--policy", "nova"]);
    assert_eq!(code, 0, "{v}");
    assert!(
        notes(&v).contains("cursive accepts the key of certificate \\\"e3\\\""),
        "{v}"
    );
    if let Some(accepts) = cursive_accepts(&dir, &env, &props, &image) {
        assert!(
            accepts,
            "cursive refused exponent 3: nova's verdict would be wrong"
        );
    }
    let config = env.path("small-e.toml");
    std::fs::write(&config, "[validation]\nallow_small_rsa_exponent = true\n").unwrap();
    let (code, v) = verify(
        &env,
        &dir,
        &props,
        &image,
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{v}");

    // An even exponent cannot sign at all; the certificate alone is refused,
    // before the image is read.
    let mut even = openssl::rsa::Rsa::generate(2048).unwrap();
    even = openssl::rsa::Rsa::from_private_components(
        even.n().to_owned().unwrap(),
        BigNum::from_u32(65538).unwrap(),
        even.d().to_owned().unwrap(),
        even.p().unwrap().to_owned().unwrap(),
        even.q().unwrap().to_owned().unwrap(),
        even.dmp1().unwrap().to_owned().unwrap(),
        even.dmq1().unwrap().to_owned().unwrap(),
        even.iqmp().unwrap().to_owned().unwrap(),
    )
    .unwrap();
    let leaf = issue_with_key(
        &Spec::leaf("even exponent"),
        Some(&root),
        PKey::from_rsa(even).unwrap(),
    );
    pki::write_pem(&dir, "even", &leaf.cert);
    let props = json!({"img_signature": encode_b64(&[1u8; 256]), "img_signature_hash_method": "SHA-256", "img_signature_key_type": "RSA-PSS", "img_signature_certificate_uuid": "even"});
    let (code, v) = verify(
        &env,
        &dir,
        &props,
        &env.path("missing-image"),
        &["--allow-small-rsa-exponent"],
    );
    assert_eq!(code, 1, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("exponent 65538 is even"),
        "{v}"
    );

    // A CA key with exponent 3 in the chain: refused by `cert verify`.
    let ca = issue_with_key(
        &Spec {
            serial: 7,
            ..Spec::ca("small exponent CA")
        },
        Some(&root),
        rsa_with_exponent(2048, 3),
    );
    let under = issue(&Spec::leaf("under small CA"), Some(&ca));
    pki::cert_dir(&dir, &[("small-ca", &ca), ("under", &under)]);
    let run = env.run(&[
        "--json",
        "cert",
        "verify",
        "under",
        "--cert-dir",
        dir.to_str().unwrap(),
        "--trusted-cert-id",
        "root",
    ]);
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    assert!(
        run.json()["reason"].as_str().unwrap().contains(
            "\"CN=small exponent CA\" has an unsafe key: the RSA public exponent 3 is below 65537"
        ),
        "{}",
        run.stdout
    );
}

/// A DSA certificate key over `p`, `q`, `g` (y = g^x for some x).
fn dsa_key(p: &BigNumRef, q: &BigNumRef, g: &BigNumRef) -> PKey<Private> {
    let mut ctx = openssl::bn::BigNumContext::new().unwrap();
    let x = BigNum::from_u32(0x1234_5679).unwrap();
    let mut y = BigNum::new().unwrap();
    y.mod_exp(g, &x, p, &mut ctx).unwrap();
    let dsa = openssl::dsa::Dsa::from_private_components(
        p.to_owned().unwrap(),
        q.to_owned().unwrap(),
        g.to_owned().unwrap(),
        x,
        y,
    )
    .unwrap();
    PKey::from_dsa(dsa).unwrap()
}

#[test]
fn strict_refuses_bad_dsa_domain_parameters() {
    let env = Env::new();
    let (root, dir) = root_dir(&env);
    let good = openssl::dsa::Dsa::generate(2048).unwrap();
    let (p, q, g) = (good.p(), good.q(), good.g());
    // g = 2 is (almost surely) not of order q; a 64-bit q is no FIPS 186-4 size.
    let small_q = BigNum::from_hex_str("FFFFFFFFFFFFFFC5").unwrap(); // 2^64 - 59, prime
    let cases = [
        ("sound", dsa_key(p, q, g), None),
        (
            "bad-g",
            dsa_key(p, q, &BigNum::from_u32(2).unwrap()),
            Some("DSA domain parameters"),
        ),
        (
            "small-q",
            dsa_key(p, &small_q, g),
            Some("DSA domain parameters"),
        ),
    ];
    for (id, key, problem) in cases {
        let leaf = issue_with_key(&Spec::leaf(id), Some(&root), key);
        pki::write_pem(&dir, id, &leaf.cert);
        let props = json!({"img_signature": encode_b64(b"0\x06\x02\x01\x01\x02\x01\x01"), "img_signature_hash_method": "SHA-256", "img_signature_key_type": "DSA", "img_signature_certificate_uuid": id});
        let image = env.image("image.raw", 1000);
        let (code, v) = verify(&env, &dir, &props, &image, &[]);
        assert_eq!(code, 1, "{id}: {v}");
        let reason = v["reason"].as_str().unwrap();
        match problem {
            // The key is sound; the made-up signature is what fails.
            None => assert!(
                reason.contains("the signature does not match"),
                "{id}: {reason}"
            ),
            Some(problem) => assert!(
                reason.contains(&format!(
                    "the key of certificate \"{id}\" is unsafe: OpenSSL refuses the {problem}"
                )),
                "{id}: {reason}"
            ),
        }
    }
}

/// A manifest is imgseal's own format, checked by the strict rules whatever
/// the policy: its signer's key is refused as the image signer's is.
#[test]
fn a_manifest_signed_by_a_small_exponent_key_is_refused_unless_allowed() {
    let env = Env::new();
    let (root, dir) = root_dir(&env);
    // The embedded token, with an exponent-3 key imported as an operator would.
    env.generate("ecc-secp384r1", "first");
    let key = rsa_with_exponent(2048, 3);
    let key_file = env.path("small-e.key");
    std::fs::write(&key_file, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let out = std::process::Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", env.softhsm_conf())
        .args(["--import", key_file.to_str().unwrap(), "--token", "imgseal"])
        .args([
            "--label",
            "small-e",
            "--id",
            "53",
            "--pin",
            env.user_pin().trim(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let leaf = issue_with_key(&Spec::leaf("small exponent signer"), Some(&root), key);
    pki::write_pem(&dir, "small-e", &leaf.cert);
    let image = env.image("image.raw", 9_000);
    let manifest = env.path("image.manifest.json");
    env.run(&[
        "sign",
        "--key",
        "pkcs11:object=small-e",
        "--cert-id",
        "small-e",
        "--cert-dir",
        dir.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        image.to_str().unwrap(),
    ])
    .ok();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "verify",
            "--manifest",
            manifest.to_str().unwrap(),
            "--cert-dir",
            dir.to_str().unwrap(),
            "--trusted-cert-id",
            "root",
        ];
        args.extend_from_slice(extra);
        args.push(image.to_str().unwrap());
        env.run(&args)
    };
    let out = verify(&[]).code(1);
    assert!(
        out.json()["reason"]
            .as_str()
            .unwrap()
            .contains("is unsafe: the RSA public exponent 3"),
        "{}",
        out.stdout
    );
    verify(&["--allow-small-rsa-exponent"]).ok();
}

/// An EC certificate whose point is off the curve: OpenSSL refuses to decode
/// the key, so no policy ever verifies with it (bad input, exit 3).
#[test]
fn an_ec_point_off_the_curve_is_refused() {
    let env = Env::new();
    let dir = env.path("off");
    std::fs::create_dir(&dir).unwrap();
    let (key, cert) = (env.path("ec.key"), env.path("ec.pem"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
        "-days",
        "5",
        "-subj",
        "/CN=off the curve",
    ])
    .ok();
    let pubkey = env.path("pub.der");
    openssl(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        pubkey.to_str().unwrap(),
    ])
    .ok();
    let der_bytes = {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let point = std::fs::read(&pubkey).unwrap();
    let point = &point[point.len() - 97..];
    let at = der_bytes.windows(97).position(|w| w == point).unwrap();
    let mut bad = der_bytes.clone();
    bad[at + 96] ^= 1;
    std::fs::write(dir.join("off.der"), &bad).unwrap();
    let image = env.image("image.raw", 1_000);
    let sig = env.path("image.sig");
    openssl(&[
        "dgst",
        "-sha384",
        "-sign",
        key.to_str().unwrap(),
        "-out",
        sig.to_str().unwrap(),
        image.to_str().unwrap(),
    ])
    .ok();
    let props = json!({
        "img_signature": encode_b64(&std::fs::read(&sig).unwrap()),
        "img_signature_hash_method": "SHA-384",
        "img_signature_key_type": "ECC_SECP384R1",
        "img_signature_certificate_uuid": "off",
    });
    let file = write_props(&env, "props.json", &props);
    for policy in ["strict", "nova"] {
        let out = env
            .run(&[
                "verify",
                "--policy",
                policy,
                "--props",
                file.to_str().unwrap(),
                "--cert-dir",
                dir.to_str().unwrap(),
                image.to_str().unwrap(),
            ])
            .code(3);
        assert!(
            out.stderr.contains("certificate public key"),
            "{}",
            out.stderr
        );
    }
}
