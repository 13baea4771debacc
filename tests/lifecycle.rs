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
    assert!(
        broken.contains("broken.pem: not a certificate"),
        "{broken}"
    );
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
