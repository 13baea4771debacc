//! Which key signs: on an operator's token where several key pairs share a
//! CKA_ID (common for imported keys), the key the URI selects is the one that
//! signs, its own public key is the one shown, and a device signature that does
//! not verify with the certificate's key is never written out.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const TOKEN: &str = "ops-hsm";
const PIN: &str = "13572468";

struct OperatorToken {
    env: Env,
    dir: tempfile::TempDir,
    conf: PathBuf,
    certs: PathBuf,
}

impl OperatorToken {
    fn new() -> Self {
        let env = Env::new();
        let (dir, conf) = operator_token("imgseal-keysel-", TOKEN, "87654321", PIN);
        std::fs::write(dir.path().join("pin"), PIN).unwrap();
        let certs = env.path("certs");
        std::fs::create_dir(&certs).unwrap();
        OperatorToken {
            env,
            dir,
            conf,
            certs,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let token = format!(
            "pkcs11:token={TOKEN}?module-path={}&pin-source={}",
            softhsm_module(),
            self.dir.path().join("pin").display()
        );
        Run::from_output(
            self.env
                .command()
                .env("SOFTHSM2_CONF", &self.conf)
                .arg("--token")
                .arg(&token)
                .args(args)
                .output()
                .unwrap(),
        )
    }

    /// A key made by openssl (`algorithm`, `pkeyopt`); returns its private key PEM path.
    fn openssl_key(&self, name: &str, algorithm: &str, pkeyopt: &str) -> PathBuf {
        let key = self.env.path(&format!("{name}.key"));
        openssl(&[
            "genpkey",
            "-algorithm",
            algorithm,
            "-pkeyopt",
            pkeyopt,
            "-out",
            key.to_str().unwrap(),
        ])
        .ok();
        openssl(&[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-out",
            self.env.path(&format!("{name}.pub")).to_str().unwrap(),
        ])
        .ok();
        key
    }

    /// Imports both halves of `key` with softhsm2-util, as an operator would.
    fn import(&self, key: &Path, label: &str, id: &str) {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--import", key.to_str().unwrap(), "--token", TOKEN])
            .args(["--label", label, "--id", id, "--pin", PIN, "--force"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// One object written with pkcs11-tool (`privkey` or `pubkey`).
    fn write_object(&self, file: &Path, kind: &str, label: &str, id: &str) {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--module", softhsm_module(), "--token-label", TOKEN])
            .args(["--login", "--pin", PIN, "--write-object"])
            .arg(file)
            .args(["--type", kind, "--label", label, "--id", id])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// A self-signed certificate for `key`, stored in the certificate directory as `id`.
    fn certificate(&self, key: &Path, id: &str) {
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            key.to_str().unwrap(),
            "-subj",
            &format!("/CN={id}"),
            "-days",
            "30",
            "-out",
            self.certs.join(format!("{id}.pem")).to_str().unwrap(),
        ])
        .ok();
    }

    fn sign(&self, key_uri: &str, cert_id: &str, image: &Path) -> Run {
        self.run(&[
            "--json",
            "sign",
            "--key",
            key_uri,
            "--cert-id",
            cert_id,
            "--cert-dir",
            self.certs.to_str().unwrap(),
            image.to_str().unwrap(),
        ])
    }

    /// Whether `sig` over `image` verifies with the public key `name.pub` (openssl).
    fn verifies_with(&self, name: &str, image: &Path, sig: &[u8]) -> bool {
        let sig_file = self.env.path("sig.bin");
        std::fs::write(&sig_file, sig).unwrap();
        let out = openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            self.env.path(&format!("{name}.pub")).to_str().unwrap(),
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:auto",
            "-signature",
            sig_file.to_str().unwrap(),
            image.to_str().unwrap(),
        ]);
        out.code == 0 && out.stdout.contains("Verified OK")
    }
}

#[test]
fn the_key_the_uri_selects_signs_when_keys_share_an_id() {
    let t = OperatorToken::new();
    // Two RSA key pairs under one CKA_ID, told apart only by their labels;
    // "zeta" is imported second so that a first-by-id lookup finds "alpha".
    for name in ["alpha", "zeta"] {
        let key = t.openssl_key(name, "RSA", "rsa_keygen_bits:2048");
        t.import(&key, name, "01");
        t.certificate(&key, &format!("{name}-cert"));
    }
    let image = t.env.image("img", 10_000);
    for (me, other) in [("zeta", "alpha"), ("alpha", "zeta")] {
        let out = t.sign(
            &format!("pkcs11:object={me}"),
            &format!("{me}-cert"),
            &image,
        );
        assert_eq!(out.code, 0, "{me}: {}", out.stderr);
        let props = out.json();
        let sig = decode_b64(props["img_signature"].as_str().unwrap());
        assert!(
            t.verifies_with(me, &image, &sig),
            "{me} signed with another key"
        );
        assert!(!t.verifies_with(other, &image, &sig));
        // Also through the manifest path (a Glance signature per image).
        let manifest = t.env.path(&format!("{me}.manifest.json"));
        let out = t.run(&[
            "--json",
            "sign",
            "--key",
            &format!("pkcs11:object={me};id=%01"),
            "--cert-id",
            &format!("{me}-cert"),
            "--cert-dir",
            t.certs.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            image.to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{me}: {}", out.stderr);
        let sig = decode_b64(out.json()["img_signature"].as_str().unwrap());
        assert!(
            t.verifies_with(me, &image, &sig),
            "{me} (manifest) signed with another key"
        );
    }

    // The public key shown is the selected key's own.
    let shown = t
        .run(&["--json", "key", "show", "pkcs11:object=zeta"])
        .ok()
        .json();
    let zeta_pub = std::fs::read_to_string(t.env.path("zeta.pub")).unwrap();
    assert_eq!(
        shown["public_key_pem"].as_str().unwrap().trim(),
        zeta_pub.trim()
    );

    // A URI that matches both keys is refused, and nothing is printed.
    let out = t.sign("pkcs11:id=%01", "alpha-cert", &image).code(2);
    assert!(
        out.stderr.contains("matches 2 private keys") && out.stderr.contains("add id= or object="),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    // (--json also reports the error on stdout, as a verdict.)
    assert!(!out.stdout.contains("img_signature"), "{}", out.stdout);
}

#[test]
fn a_device_signature_that_the_certificate_does_not_verify_is_not_written() {
    let t = OperatorToken::new();
    // A private key whose public key object (same label and id) holds another
    // key on the same curve, and a certificate for that other key: every
    // check made before signing passes (an EC private key shows its curve but
    // not its point), but the signature cannot verify for Glance or Nova.
    let curve = "ec_paramgen_curve:secp384r1";
    let real = t.openssl_key("real", "EC", curve);
    let other = t.openssl_key("other", "EC", curve);
    t.write_object(&real, "privkey", "mixed", "02");
    t.write_object(&t.env.path("other.pub"), "pubkey", "mixed", "02");
    t.certificate(&other, "mixed-cert");
    let image = t.env.image("img", 10_000);

    let out = t.sign("pkcs11:object=mixed", "mixed-cert", &image).code(3);
    assert!(
        out.stderr
            .contains("the token's signature does not verify with certificate \"mixed-cert\"")
            && out
                .stderr
                .contains("the key and the certificate do not match"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(!out.stdout.contains("img_signature"), "{}", out.stdout);

    // The manifest path writes no manifest either.
    let manifest = t.env.path("mixed.manifest.json");
    let out = t
        .run(&[
            "sign",
            "--key",
            "pkcs11:object=mixed",
            "--cert-id",
            "mixed-cert",
            "--cert-dir",
            t.certs.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            image.to_str().unwrap(),
        ])
        .code(3);
    assert!(
        out.stderr.contains("does not verify with certificate"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(!manifest.exists());

    // Nor is a certificate request that names one key and is signed by another.
    let csr = t.env.path("mixed.csr");
    let out = t
        .run(&[
            "key",
            "csr",
            "--key",
            "pkcs11:object=mixed",
            "--subject",
            "CN=mixed",
            "--out",
            csr.to_str().unwrap(),
        ])
        .code(3);
    assert!(
        out.stderr.contains("the token's key pair does not match"),
        "{}",
        out.stderr
    );
    assert!(!csr.exists());
}
