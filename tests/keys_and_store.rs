//! Keys, PINs, tokens named by URI, the certificate store, and sign's inputs
//! and outputs, with a real SoftHSM token.

mod common;

use std::process::Command;

use common::*;

#[test]
fn private_keys_are_sensitive_and_never_extractable() {
    let env = Env::new();
    let uri = env.generate("ecc-secp384r1", "guarded");
    let shown = env.run(&["--json", "key", "show", &uri]).ok().json();
    assert_eq!(shown["sensitive"], true);
    assert_eq!(shown["extractable"], false);
    assert_eq!(shown["never_extractable"], true);
    assert!(
        shown["public_key_pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );

    // Cross-check with another PKCS#11 client reading the same token.
    let module = softhsm_module();
    let pin_file = env.home.path().join("user.pin");
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", env.softhsm_conf())
        .args([
            "--module",
            module,
            "--token-label",
            "imgseal",
            "--login",
            "--pin",
        ])
        .arg(std::fs::read_to_string(&pin_file).unwrap())
        .args(["--list-objects", "--type", "privkey"])
        .output()
        .expect("pkcs11-tool runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("label:      guarded"), "{text}");
    let field = |name: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {text}"));
        line.split_once(':')
            .unwrap()
            .1
            .split(',')
            .map(|s| s.trim().to_string())
            .collect()
    };
    let access = field("Access:");
    assert!(access.contains(&"sensitive".to_string()), "{text}");
    assert!(access.contains(&"never extractable".to_string()), "{text}");
    assert!(!access.contains(&"extractable".to_string()), "{text}");
    // A signing key and nothing else.
    assert_eq!(field("Usage:"), ["sign"], "{text}");
}

#[test]
fn keys_are_listed_shown_and_labels_stay_unique() {
    let env = Env::new();
    let a = env.generate("rsa-pss-2048", "alpha");
    let b = env.generate("ecc-sect409k1", "beta");
    assert!(
        a.starts_with("pkcs11:token=imgseal;object=alpha;id=%") && a.ends_with(";type=private"),
        "{a}"
    );
    let list = env.run(&["--json", "key", "list"]).ok().json();
    let uris: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, [a.as_str(), b.as_str()]);
    assert_eq!(list[1]["glance_key_type"], "ECC_SECT409K1");
    assert_eq!(list[0]["type"], "rsa-pss-2048");

    let dup = env
        .run(&[
            "key",
            "generate",
            "--type",
            "rsa-pss-2048",
            "--label",
            "alpha",
        ])
        .code(2);
    assert!(
        dup.stderr
            .contains("already holds a key labelled \"alpha\""),
        "{}",
        dup.stderr
    );
    let bad = env
        .run(&["key", "generate", "--type", "rsa-1024", "--label", "x"])
        .code(2);
    assert!(
        bad.stderr.contains("unknown key type \"rsa-1024\""),
        "{}",
        bad.stderr
    );

    // By label alone, by id alone, and a URI naming nothing.
    env.run(&["key", "show", "pkcs11:object=beta"]).ok();
    let id_only = format!(
        "pkcs11:{}",
        b.split(';').find(|p| p.starts_with("id=")).unwrap()
    );
    let pem = env.run(&["key", "show", &id_only]).ok().stdout;
    assert!(pem.contains("BEGIN PUBLIC KEY"));
    let none = env.run(&["key", "show", "pkcs11:object=nothing"]).code(4);
    assert!(
        none.stderr
            .contains("no private key matches pkcs11:object=nothing"),
        "{}",
        none.stderr
    );
    let malformed = env.run(&["key", "show", "pkcs11:object=a b"]).code(3);
    assert!(
        malformed.stderr.contains("invalid PKCS#11 URI"),
        "{}",
        malformed.stderr
    );
    let empty = env.run(&["key", "show", "pkcs11:token=imgseal"]).code(2);
    assert!(empty.stderr.contains("names no key"), "{}", empty.stderr);
}

#[test]
fn pins_come_from_the_uri_the_environment_or_a_file_and_are_never_printed() {
    let env = Env::new();
    let uri = env.generate("ecc-secp384r1", "k");
    let pin = env.user_pin();
    let image = env.image("img", 1000);
    let wrong = "not-the-pin-4242";

    // Wrong PIN in the environment: exit 6, the token named, the PIN not echoed.
    let out = Run::from_output(
        env.command()
            .env("IMGSEAL_PIN", wrong)
            .args([
                "sign",
                "--key",
                &uri,
                "--cert-id",
                "c",
                "--no-cert-check",
                image.to_str().unwrap(),
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr.contains("incorrect PIN for token \"imgseal\""),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(wrong) && !out.stdout.contains(wrong));

    // The right PIN from pin-source in the URI, and pin-value: both sign.
    let pin_file = env.path("pin.txt");
    std::fs::write(&pin_file, format!("{pin}\n")).unwrap();
    let with_source = format!("{uri}?pin-source=file:{}", pin_file.display());
    let out = Run::from_output(
        env.command()
            .env("IMGSEAL_PIN", wrong)
            .args([
                "--json",
                "sign",
                "--key",
                &with_source,
                "--cert-id",
                "c",
                "--no-cert-check",
                image.to_str().unwrap(),
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains(&pin), "the PIN leaked into the output");
    let with_value = format!("{uri}?pin-value={pin}");
    let out = env
        .run(&[
            "--json",
            "sign",
            "--key",
            &with_value,
            "--cert-id",
            "c",
            "--no-cert-check",
            image.to_str().unwrap(),
        ])
        .ok();
    assert!(
        !out.stdout.contains(&pin) && !out.stderr.contains(&pin),
        "the PIN leaked: {}",
        out.stdout
    );
    assert_eq!(out.json()["key"], uri.as_str());

    // A wrong pin-value is refused without echoing it.
    let out = env
        .run(&[
            "sign",
            "--key",
            &format!("{uri}?pin-value={wrong}"),
            "--cert-id",
            "c",
            "--no-cert-check",
            image.to_str().unwrap(),
        ])
        .code(6);
    assert!(!out.stderr.contains(wrong));
    // A missing pin-source file names the file.
    let out = env
        .run(&[
            "sign",
            "--key",
            &format!("{uri}?pin-source=file:/nonexistent/pin"),
            "--cert-id",
            "c",
            "--no-cert-check",
            image.to_str().unwrap(),
        ])
        .code(7);
    assert!(out.stderr.contains("/nonexistent/pin"), "{}", out.stderr);
}

#[test]
fn a_token_named_by_uri_in_another_module_configuration() {
    // An operator's own SoftHSM token, set up with softhsm2-util, used through
    // --token with module-path and pin-source, as with any production HSM.
    let env = Env::new();
    let (dir, conf) = operator_token("imgseal-release-", "release-hsm", "87654321", "24681357");
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "24681357").unwrap();
    let module = softhsm_module();
    let token = format!(
        "pkcs11:token=release-hsm?module-path={module}&pin-source={}",
        pin_file.display()
    );
    let run = |args: &[&str]| {
        Run::from_output(
            env.command()
                .env("SOFTHSM2_CONF", &conf)
                .arg("--token")
                .arg(&token)
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let out = run(&["key", "generate", "--type", "dsa-2048", "--label", "rel"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let uri = out.stdout.trim().to_string();
    assert!(
        uri.contains("token=release-hsm") && uri.contains(&format!("module-path={module}")),
        "{uri}"
    );
    let image = env.image("img", 4096);
    let out = run(&[
        "sign",
        "--key",
        &uri,
        "--cert-id",
        "c",
        "--no-cert-check",
        image.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("\"img_signature_key_type\": \"DSA\""));
    // The embedded token was never created.
    assert!(!env.home.path().join("user.pin").exists());
    let out = Run::from_output(
        env.command()
            .env("SOFTHSM2_CONF", &conf)
            .args([
                "--token",
                "pkcs11:token=absent?module-path=/usr/lib/softhsm/libsofthsm2.so",
                "key",
                "list",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    let out = env
        .run(&[
            "--token",
            "pkcs11:token=x?module-path=/nonexistent/libp11.so",
            "key",
            "list",
        ])
        .code(5);
    assert!(
        out.stderr
            .contains("cannot load PKCS#11 module /nonexistent/libp11.so"),
        "{}",
        out.stderr
    );
}

#[test]
fn certificates_are_stored_in_the_token_or_a_directory() {
    let env = Env::new();
    let uri = env.key_with_certificate(
        "rsa-pss-2048",
        "signer",
        "11111111-aaaa-bbbb-cccc-000000000001",
    );
    let list = env.run(&["--json", "cert", "list"]).ok().json();
    assert_eq!(list[0]["id"], "11111111-aaaa-bbbb-cccc-000000000001");
    assert_eq!(list[0]["subject"], "CN=signer,O=imgseal tests");
    assert_eq!(list[0]["glance_key_type"], "RSA-PSS");
    let shown = env
        .run(&["cert", "show", "11111111-aaaa-bbbb-cccc-000000000001"])
        .ok()
        .stdout;
    let issuer = shown.lines().find(|l| l.starts_with("issuer:")).unwrap();
    assert!(issuer.ends_with(" CN=imgseal test CA"), "{shown}");
    let dup = env
        .run(&[
            "cert",
            "import",
            "--id",
            "11111111-aaaa-bbbb-cccc-000000000001",
            env.path("signer.crt").to_str().unwrap(),
        ])
        .code(2);
    assert!(
        dup.stderr.contains("already holds a certificate"),
        "{}",
        dup.stderr
    );

    // Export as DER, and equality with what openssl reads from the issued PEM.
    let der = env.path("out.der");
    env.run(&[
        "cert",
        "export",
        "11111111-aaaa-bbbb-cccc-000000000001",
        "--der",
        "--out",
        der.to_str().unwrap(),
    ])
    .ok();
    let expected = openssl(&[
        "x509",
        "-in",
        env.path("signer.crt").to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        env.path("expected.der").to_str().unwrap(),
    ])
    .ok();
    drop(expected);
    assert_eq!(
        std::fs::read(&der).unwrap(),
        std::fs::read(env.path("expected.der")).unwrap()
    );

    // A directory store with PEM preceded by text, as `openssl ca` writes it, and DER.
    let dir = env.path("certdir");
    std::fs::create_dir(&dir).unwrap();
    let text = openssl(&[
        "x509",
        "-in",
        env.path("signer.crt").to_str().unwrap(),
        "-text",
    ])
    .ok()
    .stdout;
    assert!(text.starts_with("Certificate:"));
    let with_text = env.path("with-text.pem");
    std::fs::write(&with_text, &text).unwrap();
    env.run(&[
        "cert",
        "import",
        "--id",
        "from-ca",
        "--cert-dir",
        dir.to_str().unwrap(),
        with_text.to_str().unwrap(),
    ])
    .ok();
    std::fs::copy(env.path("expected.der"), dir.join("raw.der")).unwrap();
    let listed = env
        .run(&[
            "--json",
            "cert",
            "list",
            "--cert-dir",
            dir.to_str().unwrap(),
        ])
        .ok()
        .json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["from-ca", "raw"]);
    assert_eq!(
        listed[0]["sha256_fingerprint"],
        listed[1]["sha256_fingerprint"]
    );

    // Signing with a certificate of another key is refused before anything is signed.
    let other = env.key_with_certificate("rsa-pss-2048", "other", "other-cert");
    drop(other);
    let image = env.image("img", 100);
    let out = env
        .run(&[
            "sign",
            "--key",
            &uri,
            "--cert-id",
            "other-cert",
            image.to_str().unwrap(),
        ])
        .code(3);
    assert!(
        out.stderr.contains("holds a different public key"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());

    // Garbage is not a certificate.
    let junk = env.path("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = env
        .run(&["cert", "import", "--id", "junk", junk.to_str().unwrap()])
        .code(3);
    assert!(
        out.stderr.contains("junk.pem: malformed PEM certificate"),
        "{}",
        out.stderr
    );
    std::fs::write(&junk, "hello").unwrap();
    let out = env
        .run(&["cert", "import", "--id", "junk", junk.to_str().unwrap()])
        .code(3);
    assert!(out.stderr.contains("not a certificate"), "{}", out.stderr);
}

#[test]
fn sign_reads_stdin_and_prints_each_format() {
    let env = Env::new();
    let uri = env.key_with_certificate("ecc-secp521r1", "fmt", "fmt-cert");
    let image = env.image("img.qcow2", 2_500_000);
    let from_file = env
        .run(&[
            "sign",
            "--key",
            &uri,
            "--cert-id",
            "fmt-cert",
            "--hash",
            "SHA-512",
            image.to_str().unwrap(),
        ])
        .ok()
        .json();
    let from_stdin = env
        .run_stdin(
            &[
                "sign",
                "--key",
                &uri,
                "--cert-id",
                "fmt-cert",
                "--hash",
                "SHA-512",
                "-",
            ],
            &image,
        )
        .ok()
        .json();
    // ECDSA is randomised: the signatures differ but both verify, and the rest is equal.
    for (k, v) in from_file.as_object().unwrap() {
        if k != "img_signature" {
            assert_eq!(&from_stdin[k], v);
        }
    }
    let props = write_props(&env, "stdin.json", &from_stdin);
    env.run(&[
        "verify",
        "--props",
        props.to_str().unwrap(),
        image.to_str().unwrap(),
    ])
    .ok();
    env.run_stdin(&["verify", "--props", props.to_str().unwrap(), "-"], &image)
        .ok();

    let os = env
        .run(&[
            "sign",
            "--key",
            &uri,
            "--cert-id",
            "fmt-cert",
            "--format",
            "openstack",
            image.to_str().unwrap(),
        ])
        .ok()
        .stdout;
    assert!(os.starts_with("--property img_signature="), "{os}");
    assert!(os.contains(" --property img_signature_hash_method=SHA-256 --property img_signature_key_type=ECC_SECP521R1 --property img_signature_certificate_uuid=fmt-cert"), "{os}");
    let env_fmt = env
        .run(&[
            "sign",
            "--key",
            &uri,
            "--cert-id",
            "fmt-cert",
            "--format",
            "env",
            image.to_str().unwrap(),
        ])
        .ok()
        .stdout;
    let lines: Vec<&str> = env_fmt.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[2], "IMG_SIGNATURE_KEY_TYPE=ECC_SECP521R1");

    let csr_out = env.path("sub/dir/none.csr");
    let out = env
        .run(&[
            "key",
            "csr",
            "--key",
            &uri,
            "--subject",
            "CN=x",
            "--out",
            csr_out.to_str().unwrap(),
        ])
        .code(7);
    assert!(out.stderr.contains("sub/dir"), "{}", out.stderr);
    let out = env
        .run(&[
            "key",
            "csr",
            "--key",
            &uri,
            "--subject",
            "garbage",
            "--out",
            "x.csr",
        ])
        .code(2);
    assert!(out.stderr.contains("RFC 4514"), "{}", out.stderr);
    assert!(!env.path("x.csr").exists());
}

/// `pkcs11-tool`, logged in to the embedded token of `env`.
fn pkcs11_tool(env: &Env, args: &[&str]) -> Run {
    Run::from_output(
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", env.softhsm_conf())
            .args(["--module", softhsm_module(), "--token-label", "imgseal"])
            .args(["--login", "--pin", &env.user_pin()])
            .args(args)
            .output()
            .expect("pkcs11-tool runs"),
    )
}

/// The CKA_ID of a key URI in pkcs11-tool's hex. pkcs11-tool --sign picks
/// its key by --id only: with --label it signs with the first private key.
fn hex_id(uri: &str) -> String {
    let id = uri.split(';').find_map(|p| p.strip_prefix("id=")).unwrap();
    id.replace('%', "").to_ascii_lowercase()
}

#[test]
fn generated_keys_sign_only_with_imgseal_mechanisms_and_cannot_be_changed() {
    let env = Env::new();
    let keys = [
        ("rsa-pss-2048", "r", "RSA-PKCS-PSS"),
        ("ecc-secp384r1", "e", "ECDSA"),
        ("dsa-2048", "d", "DSA"),
    ];
    let uris: Vec<String> = keys
        .iter()
        .map(|(kind, label, _)| env.generate(kind, label))
        .collect();

    // CKA_ALLOWED_MECHANISMS, as another PKCS#11 client reads it.
    let listed = pkcs11_tool(&env, &["--list-objects", "--type", "privkey"]).ok();
    for (_, label, mechanism) in keys {
        let block = listed
            .stdout
            .split("Private Key Object")
            .find(|b| b.contains(&format!("label:      {label}\n")))
            .unwrap_or_else(|| panic!("{label} in {}", listed.stdout));
        assert!(
            block.contains(&format!("Allowed mechanisms: {mechanism}\n")),
            "{block}"
        );
    }

    // CKA_MODIFIABLE is false on both halves: the token refuses any
    // C_SetAttributeValue (CKR_ACTION_PROHIBITED, 0x1b).
    for uri in &uris {
        for class in ["privkey", "pubkey"] {
            let out = pkcs11_tool(
                &env,
                &["--set-id", "01", "--type", class, "--id", &hex_id(uri)],
            )
            .code(1);
            assert!(
                out.stderr.contains("C_SetAttributeValue failed") && out.stderr.contains("0x1b"),
                "{uri} {class}: {}",
                out.stderr
            );
        }
    }
    env.run(&["key", "show", "pkcs11:id=%01"]).code(4);

    // Raw RSA (and PKCS#1 v1.5) with the RSA key: refused by the token.
    let rsa = &uris[0];
    let block = env.path("block.bin");
    std::fs::write(&block, [0x01u8; 256]).unwrap();
    for mechanism in ["RSA-X-509", "RSA-PKCS"] {
        let sig = env.path("refused.sig");
        let out = pkcs11_tool(
            &env,
            &[
                "--sign",
                "--mechanism",
                mechanism,
                "--id",
                &hex_id(rsa),
                "-i",
                block.to_str().unwrap(),
                "-o",
                sig.to_str().unwrap(),
            ],
        )
        .code(1);
        assert!(
            out.stderr.contains("C_SignInit failed")
                && out.stderr.contains("CKR_MECHANISM_INVALID"),
            "{mechanism}: {}",
            out.stderr
        );
    }

    // imgseal's own signatures and CSRs still work and verify with openssl,
    // and so does pkcs11-tool's raw PSS (scripts/bench-sign.sh).
    let image = env.image("image.raw", 10_000);
    let digest = env.path("image.sha256");
    openssl(&[
        "dgst",
        "-sha256",
        "-binary",
        "-out",
        digest.to_str().unwrap(),
        image.to_str().unwrap(),
    ])
    .ok();
    for (uri, (kind, label, _)) in uris.iter().zip(keys) {
        let public = env.path(&format!("{label}.pub.pem"));
        std::fs::write(&public, env.run(&["key", "show", uri]).ok().stdout).unwrap();
        let props = env
            .run(&[
                "sign",
                "--key",
                uri,
                "--cert-id",
                "c",
                "--no-cert-check",
                "--hash",
                "SHA-256",
                image.to_str().unwrap(),
            ])
            .ok()
            .json();
        let sig = env.path(&format!("{label}.sig"));
        std::fs::write(&sig, decode_b64(props["img_signature"].as_str().unwrap())).unwrap();
        let mut args = vec![
            "dgst",
            "-sha256",
            "-verify",
            public.to_str().unwrap(),
            "-signature",
            sig.to_str().unwrap(),
        ];
        if kind.starts_with("rsa") {
            args.extend([
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:max",
            ]);
        }
        args.push(image.to_str().unwrap());
        let out = openssl(&args).ok();
        assert!(out.stdout.contains("Verified OK"), "{kind}: {}", out.stdout);

        let csr = env.path(&format!("{label}.csr"));
        env.run(&[
            "key",
            "csr",
            "--key",
            uri,
            "--subject",
            "CN=x",
            "--out",
            csr.to_str().unwrap(),
        ])
        .ok();
        openssl(&["req", "-verify", "-noout", "-in", csr.to_str().unwrap()]).ok();
    }
    let p11_sig = env.path("p11.sig");
    pkcs11_tool(
        &env,
        &[
            "--sign",
            "--mechanism",
            "RSA-PKCS-PSS",
            "--hash-algorithm",
            "SHA256",
            "--mgf",
            "MGF1-SHA256",
            "--salt-len",
            "-2",
            "--id",
            &hex_id(rsa),
            "-i",
            digest.to_str().unwrap(),
            "-o",
            p11_sig.to_str().unwrap(),
        ],
    )
    .ok();
    openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        env.path("r.pub.pem").to_str().unwrap(),
        "-in",
        digest.to_str().unwrap(),
        "-sigfile",
        p11_sig.to_str().unwrap(),
        "-pkeyopt",
        "digest:sha256",
        "-pkeyopt",
        "rsa_padding_mode:pss",
        "-pkeyopt",
        "rsa_pss_saltlen:auto",
    ])
    .ok();
}

#[test]
fn two_generates_at_once_with_one_label_make_one_key() {
    let env = Env::new();
    // The token exists first: this is about the label, not the first run.
    // DSA: its domain parameters took long between the old label check and
    // the generation, so the old code failed this in the first round.
    env.generate("ecc-secp384r1", "first");
    for round in 0..3 {
        let label = format!("same{round}");
        let children: Vec<_> = (0..2)
            .map(|_| {
                env.command()
                    .args(["key", "generate", "--type", "dsa-2048", "--label"])
                    .arg(&label)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut runs: Vec<Run> = children
            .into_iter()
            .map(|c| Run::from_output(c.wait_with_output().unwrap()))
            .collect();
        runs.sort_by_key(|r| r.code);
        let codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
        assert_eq!(
            codes,
            [0, 2],
            "round {round}: {:?}",
            runs.iter().map(|r| &r.stderr).collect::<Vec<_>>()
        );
        assert!(
            runs[1]
                .stderr
                .contains(&format!("already holds a key labelled \"{label}\"")),
            "round {round}: {}",
            runs[1].stderr
        );
        let list = env.run(&["--json", "key", "list"]).ok().json();
        let same = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["label"] == label.as_str())
            .count();
        assert_eq!(same, 1, "round {round}");
    }
}

/// One certificate per id: a chain file would store its first certificate
/// (often the CA's) under the signer's id, and DER with bytes after it is not
/// one certificate either.
#[test]
fn cert_import_takes_exactly_one_certificate() {
    let env = Env::new();
    env.key_with_certificate("ecc-secp384r1", "one", "one-cert");
    let leaf = env.path("one.crt");
    let ca = common::test_ca().dir.join("ca.crt");
    let chain = env.path("chain.pem");
    let mut bytes = std::fs::read(&ca).unwrap();
    bytes.extend(std::fs::read(&leaf).unwrap());
    std::fs::write(&chain, &bytes).unwrap();
    let out = env
        .run(&["cert", "import", "--id", "chain", chain.to_str().unwrap()])
        .code(3);
    assert!(
        out.stderr.contains("holds 2 certificates"),
        "{}",
        out.stderr
    );
    let der = env.path("one.der");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-in", leaf.to_str().unwrap(), "-outform", "DER"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut bytes = out.stdout;
    bytes.extend(b"trailing");
    std::fs::write(&der, &bytes).unwrap();
    let out = env
        .run(&["cert", "import", "--id", "der", der.to_str().unwrap()])
        .code(3);
    assert!(
        out.stderr.contains("8 bytes after the DER certificate"),
        "{}",
        out.stderr
    );
    // The certificate alone imports.
    env.run(&[
        "cert",
        "import",
        "--id",
        "leaf-again",
        leaf.to_str().unwrap(),
    ])
    .ok();
}

/// `cert show` and `cert list` print validity in RFC 3339, the form `--at`
/// takes, equal to what the certificate holds.
#[test]
fn certificate_dates_are_rfc3339_and_feed_at() {
    use openssl::asn1::Asn1Time;
    let env = Env::new();
    let key = common::pki::key(common::pki::KeyAlg::Rsa2048);
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "dated").unwrap();
    let name = name.build();
    let mut b = openssl::x509::X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::from_str("20250102030405Z").unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_str("20310607080910Z").unwrap())
        .unwrap();
    b.sign(&key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    let pem = env.path("dated.pem");
    std::fs::write(&pem, b.build().to_pem().unwrap()).unwrap();
    env.run(&["cert", "import", "--id", "dated", pem.to_str().unwrap()])
        .ok();
    let shown = env.run(&["--json", "cert", "show", "dated"]).ok().json();
    assert_eq!(shown["not_before"], "2025-01-02T03:04:05Z", "{shown}");
    assert_eq!(shown["not_after"], "2031-06-07T08:09:10Z", "{shown}");
    let text = env.run(&["cert", "show", "dated"]).ok().stdout;
    assert!(text.contains("2031-06-07T08:09:10Z"), "{text}");
    let list = env.run(&["cert", "list"]).ok().stdout;
    assert!(list.contains("not after: 2031-06-07T08:09:10Z"), "{list}");
    // The printed time is one `--at` takes (OpenSSL counts the notAfter
    // second itself as expired): a second before it the certificate
    // validates against itself, at it and after it has expired.
    let at = shown["not_after"].as_str().unwrap();
    let verify = |at: &str| {
        env.run(&[
            "cert",
            "verify",
            "dated",
            "--policy",
            "strict",
            "--trusted-cert-id",
            "dated",
            "--at",
            at,
        ])
    };
    verify("2031-06-07T08:09:09Z").ok();
    let out = verify(at).code(1);
    assert!(
        out.stdout.contains("certificate has expired"),
        "{}",
        out.stdout
    );
}

/// `key csr --subject` takes OpenSSL's `-subj` form as well as RFC 4514,
/// and means the same name by it as `openssl req -subj` does.
#[test]
fn an_openssl_style_subject_is_the_name_openssl_makes() {
    let env = Env::new();
    let uri = env.generate("ecc-secp384r1", "subj");
    let subj = "/C=DE/O=Example, Inc./OU=a\\/b/CN=Release signing";
    let ours = env.path("ours.csr");
    env.run(&[
        "key",
        "csr",
        "--key",
        &uri,
        "--subject",
        subj,
        "--out",
        ours.to_str().unwrap(),
    ])
    .ok();
    let theirs = env.path("theirs.csr");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        env.path("theirs.key").to_str().unwrap(),
        "-subj",
        subj,
        "-out",
        theirs.to_str().unwrap(),
    ])
    .ok();
    let subject_der = |csr: &std::path::Path| {
        let req = openssl::x509::X509Req::from_pem(&std::fs::read(csr).unwrap()).unwrap();
        req.subject_name().to_der().unwrap()
    };
    assert_eq!(subject_der(&ours), subject_der(&theirs));
    // The RFC 4514 spelling of the same name gives the same bytes.
    let rfc = env.path("rfc.csr");
    env.run(&[
        "key",
        "csr",
        "--key",
        &uri,
        "--subject",
        "CN=Release signing,OU=a/b,O=Example\\, Inc.,C=DE",
        "--out",
        rfc.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(subject_der(&rfc), subject_der(&theirs));
}
