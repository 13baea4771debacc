//! The store's lifecycle through the CLI: `cert list` with certificates
//! imgseal cannot parse, `key delete`, `cert delete`, `cert import
//! --replace`, and the refusal to remove what the TPM-sealed anchors use.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Overwrites the first byte of `der` where SoftHSM keeps it in the token
/// directory under `home` (a public object's CKA_VALUE is stored in clear),
/// so the token holds a certificate object of garbage DER. Returns how many
/// object files were changed.
fn corrupt_in_token(tokens: &Path, der: &[u8]) -> usize {
    let mut changed = 0;
    let mut dirs = vec![tokens.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let mut bytes = std::fs::read(&path).unwrap();
            if let Some(at) = bytes.windows(der.len()).position(|w| w == der) {
                bytes[at] = 0xA5;
                std::fs::write(&path, bytes).unwrap();
                changed += 1;
            }
        }
    }
    changed
}

fn der_of(pem_file: &Path) -> Vec<u8> {
    std::process::Command::new("openssl")
        .args(["x509", "-in", s(pem_file), "-outform", "DER"])
        .output()
        .unwrap()
        .stdout
}

fn entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {list}"))
}

/// A token certificate object of garbage DER (written by pkcs11-tool, then
/// its value spoiled in SoftHSM's object file) is listed with its id and
/// the reason, beside the good ones, in text and JSON; `cert list` exits 0.
#[test]
fn cert_list_shows_a_token_certificate_it_cannot_parse_with_the_reason() {
    let env = Env::new();
    env.key_with_certificate("ecc-secp384r1", "signer", "signer-cert");
    let ca = test_ca().dir.join("ca.crt");
    let der = env.path("junk.der");
    std::fs::write(&der, der_of(&ca)).unwrap();
    let out = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", env.softhsm_conf())
        .args([
            "--module",
            softhsm_module(),
            "--token-label",
            "imgseal",
            "--login",
            "--pin",
            env.user_pin().trim(),
            "--write-object",
            s(&der),
            "--type",
            "cert",
            "--label",
            "junk",
            "--id",
            "6a756e6b",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        corrupt_in_token(&env.home.path().join("tokens"), &der_of(&ca)),
        1
    );

    let list = env.run(&["--json", "cert", "list"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let junk = entry(&list, "junk");
    let reason = junk["unusable"].as_str().unwrap();
    assert!(
        reason.contains("certificate \"junk\" in the token: not a certificate"),
        "{reason}"
    );
    assert_eq!(junk["subject"], Value::Null);
    assert_eq!(
        entry(&list, "signer-cert")["subject"],
        "CN=signer,O=imgseal tests"
    );
    let text = env.run(&["cert", "list"]).ok().stdout;
    let line = text.lines().find(|l| l.starts_with("junk ")).unwrap();
    assert!(line.contains("unusable: certificate \"junk\""), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("signer-cert ")),
        "{text}"
    );
}

/// A directory with a garbage `.pem` and a directory named `.pem`: both are
/// listed with the reason, and the good certificate beside them.
#[test]
fn cert_list_shows_a_directory_file_it_cannot_parse_with_the_reason() {
    let env = Env::new();
    let dir = env.path("certs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(test_ca().dir.join("ca.crt"), dir.join("root.pem")).unwrap();
    std::fs::write(dir.join("broken.pem"), b"\xa5 garbage, no certificate").unwrap();
    std::fs::create_dir(dir.join("sub.pem")).unwrap();

    let list = env
        .run(&["--json", "cert", "list", "--cert-dir", s(&dir)])
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    let broken = entry(&list, "broken")["unusable"].as_str().unwrap();
    assert!(broken.contains("broken.pem: not a certificate"), "{broken}");
    let sub = entry(&list, "sub")["unusable"].as_str().unwrap();
    assert!(sub.contains("sub.pem: Is a directory"), "{sub}");
    assert_eq!(entry(&list, "root")["subject"], "CN=imgseal test CA");
    let text = env
        .run(&["cert", "list", "--cert-dir", s(&dir)])
        .ok()
        .stdout;
    assert!(
        text.lines()
            .any(|l| l.starts_with("broken ") && l.contains("unusable: ")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("root ")), "{text}");
}

fn key_id(env: &Env, uri: &str) -> String {
    let shown = env.run(&["--json", "key", "show", uri]).ok().json();
    shown["id"].as_str().unwrap().to_string()
}

/// A certificate object written by pkcs11-tool with the key's CKA_ID, as
/// other tools pair a key with its certificate.
fn write_cert_with_id(env: &Env, pem: &Path, label: &str, id_hex: &str) {
    let der = env.path(&format!("{label}.der"));
    std::fs::write(&der, der_of(pem)).unwrap();
    let out = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", env.softhsm_conf())
        .args([
            "--module",
            softhsm_module(),
            "--token-label",
            "imgseal",
            "--login",
            "--pin",
            env.user_pin().trim(),
            "--write-object",
            s(&der),
            "--type",
            "cert",
            "--label",
            label,
            "--id",
            id_hex,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn labels(env: &Env) -> (Vec<String>, Vec<String>) {
    let keys = env.run(&["--json", "key", "list"]).ok().json();
    let certs = env.run(&["--json", "cert", "list"]).ok().json();
    let ids = |v: &Value, k: &str| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e[k].as_str().unwrap().to_string())
            .collect()
    };
    (ids(&keys, "label"), ids(&certs, "id"))
}

/// `key delete`: refused without --yes off a terminal; removes the private
/// and public key objects and says so; keeps (and names) a certificate with
/// the key's CKA_ID unless --with-certificate.
#[test]
fn key_delete_removes_the_pair_and_the_certificate_only_when_asked() {
    let env = Env::new();
    let a = env.key_with_certificate("ecc-secp384r1", "a", "a-cert");
    let b = env.key_with_certificate("ecc-secp384r1", "b", "b-cert");
    write_cert_with_id(&env, &env.path("a.crt"), "a-by-id", &key_id(&env, &a));
    write_cert_with_id(&env, &env.path("b.crt"), "b-by-id", &key_id(&env, &b));

    let run = env.run(&["key", "delete", &a]).code(2);
    assert!(run.stderr.contains("needs --yes"), "{}", run.stderr);
    assert_eq!(run.stderr.trim().lines().count(), 1);
    assert_eq!(labels(&env).0, ["a", "b"], "nothing was deleted");

    let v = env
        .run(&["--json", "key", "delete", &a, "--yes"])
        .ok()
        .json();
    assert_eq!(v["deleted"], "key");
    assert_eq!(v["label"], "a");
    assert_eq!(v["private_key"], true);
    assert_eq!(v["public_key"], true);
    assert_eq!(v["certificates"], serde_json::json!([]));
    assert_eq!(v["kept_certificates"], serde_json::json!(["a-by-id"]));
    let (keys, certs) = labels(&env);
    assert_eq!(keys, ["b"]);
    assert!(certs.contains(&"a-by-id".to_string()), "{certs:?}");
    // Its public key object went too: pkcs11-tool sees one key pair left.
    let objects = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", env.softhsm_conf())
        .args([
            "--module",
            softhsm_module(),
            "--token-label",
            "imgseal",
            "--login",
            "--pin",
            env.user_pin().trim(),
            "--list-objects",
            "--type",
            "pubkey",
        ])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&objects.stdout);
    assert_eq!(listed.matches("Public Key Object").count(), 1, "{listed}");
    // Gone: a second delete finds nothing.
    env.run(&["key", "delete", &a, "--yes"]).code(4);

    let text = env
        .run(&["key", "delete", &b, "--yes", "--with-certificate"])
        .ok()
        .stdout;
    assert!(
        text.contains("the private key and its public key object, certificate \"b-by-id\""),
        "{text}"
    );
    let (keys, certs) = labels(&env);
    assert!(keys.is_empty(), "{keys:?}");
    assert!(!certs.contains(&"b-by-id".to_string()), "{certs:?}");
    // The certificates imgseal imported under their own ids stay.
    assert!(certs.contains(&"b-cert".to_string()), "{certs:?}");
}

/// `cert delete` in the token and in a directory; `cert import --replace`
/// in both (a `.der` file replaced by the new `.pem`).
#[test]
fn cert_delete_and_import_replace_in_the_token_and_a_directory() {
    let env = Env::new();
    env.key_with_certificate("ecc-secp384r1", "signer", "signer-cert");
    let ca = test_ca().dir.join("ca.crt");
    env.run(&["cert", "import", "--id", "root", s(&ca)]).ok();

    // Token: an existing id is refused without --replace, replaced with it.
    let run = env
        .run(&["cert", "import", "--id", "root", s(&env.path("signer.crt"))])
        .code(2);
    assert!(run.stderr.contains("give --replace"), "{}", run.stderr);
    let v = env
        .run(&[
            "--json",
            "cert",
            "import",
            "--id",
            "root",
            "--replace",
            s(&env.path("signer.crt")),
        ])
        .ok()
        .json();
    assert_eq!(v["replaced"]["subject"], "CN=imgseal test CA");
    assert_eq!(v["subject"], "CN=signer,O=imgseal tests");
    let shown = env.run(&["--json", "cert", "show", "root"]).ok().json();
    assert_eq!(shown["subject"], "CN=signer,O=imgseal tests");
    let list = env.run(&["--json", "cert", "list"]).ok().json();
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "one object per id: {list}"
    );

    env.run(&["cert", "delete", "root"]).code(2);
    let v = env
        .run(&["--json", "cert", "delete", "root", "--yes"])
        .ok()
        .json();
    assert_eq!(v["deleted"], "certificate");
    assert_eq!(v["from"], "PKCS#11 token \"imgseal\"");
    env.run(&["cert", "show", "root"]).code(4);
    env.run(&["cert", "delete", "root", "--yes"]).code(4);

    // Directory.
    let dir = env.path("certs");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("root.der"), der_of(&ca)).unwrap();
    let d = s(&dir);
    let v = env
        .run(&[
            "--json",
            "cert",
            "import",
            "--cert-dir",
            d,
            "--id",
            "root",
            "--replace",
            s(&env.path("signer.crt")),
        ])
        .ok()
        .json();
    assert_eq!(v["replaced"]["subject"], "CN=imgseal test CA");
    assert!(!dir.join("root.der").exists() && dir.join("root.pem").exists());
    let text = env
        .run(&["cert", "delete", "--cert-dir", d, "root", "--yes"])
        .ok()
        .stdout;
    assert!(
        text.contains("deleted certificate \"root\" (CN=signer,O=imgseal tests"),
        "{text}"
    );
    assert!(
        text.contains(&dir.join("root.pem").display().to_string()),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // --replace of an id that is not there stores it.
    env.run(&[
        "cert",
        "import",
        "--cert-dir",
        d,
        "--id",
        "new",
        "--replace",
        s(&ca),
    ])
    .ok();
    assert!(dir.join("new.pem").exists());
    // A file there that cannot be parsed is replaced, and can be deleted.
    std::fs::write(dir.join("bad.pem"), b"garbage").unwrap();
    env.run(&[
        "cert",
        "import",
        "--cert-dir",
        d,
        "--id",
        "bad",
        "--replace",
        s(&ca),
    ])
    .ok();
    env.run(&["cert", "show", "--cert-dir", d, "bad"]).ok();
}

/// What the TPM-sealed anchors hold is not removed without --force: the
/// sealed certificate (cert delete, cert import --replace) and the key it
/// certifies (key delete). The home's sealed bundle is read from disk; a
/// home that never sealed starts no TPM to find that out.
#[test]
fn removing_what_the_sealed_anchors_hold_is_refused_without_force() {
    use common::tpm::TestTpm;
    let env = Env::new();
    let key = env.key_with_certificate("ecc-secp384r1", "signer", "signer-cert");
    let other = env.key_with_certificate("ecc-secp384r1", "other", "other-cert");
    // Nothing sealed yet: a removal needs no TPM and starts none.
    env.run(&["key", "delete", &other, "--yes"]).ok();
    assert!(!env.home.path().join("swtpm").exists());
    assert!(!env.home.path().join("anchors").exists());

    let tpm = TestTpm::start();
    env.tpm_run(&tpm, &["anchors", "seal", "--cert-id", "signer-cert"])
        .ok();
    let before = labels(&env);

    let run = env.run(&["cert", "delete", "signer-cert", "--yes"]).code(2);
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("deleting certificate \"signer-cert\" (CN=signer,O=imgseal tests) is refused: the TPM-sealed trust anchors (version "),
        "{line}"
    );
    assert!(line.contains("hold it as \"signer-cert\""), "{line}");
    assert!(line.contains("--force"), "{line}");
    let run = env
        .run(&[
            "cert",
            "import",
            "--id",
            "signer-cert",
            "--replace",
            s(&test_ca().dir.join("ca.crt")),
        ])
        .code(2);
    assert!(
        run.stderr.contains("replacing certificate \"signer-cert\""),
        "{}",
        run.stderr
    );
    let run = env.run(&["--json", "key", "delete", &key, "--yes"]).code(2);
    assert!(
        run.stderr
            .contains("hold its certificate (CN=signer,O=imgseal tests) as \"signer-cert\""),
        "{}",
        run.stderr
    );
    assert_eq!(run.json()["exit_code"], 2);
    assert_eq!(labels(&env), before, "nothing was removed");

    // --force removes them.
    env.run(&["key", "delete", &key, "--yes", "--force"]).ok();
    env.run(&["cert", "delete", "signer-cert", "--yes", "--force"])
        .ok();
    let (keys, certs) = labels(&env);
    assert!(keys.is_empty(), "{keys:?}");
    assert_eq!(certs, ["other-cert"]);
}
