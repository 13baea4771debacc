//! imgseal against cursive itself (pinned in tests/peers/requirements.txt):
//! what imgseal signs in the HSM, Glance's and Nova's own code accepts.

mod common;

use common::*;

/// The key types cursive registers with the pinned cryptography.
fn cursive_key_types() -> Option<Vec<String>> {
    let out = cursive(&["key-types"])?.ok();
    Some(serde_json::from_str(&out.stdout).unwrap())
}

fn cursive_accepts(kind: &str, glance_type: &str) {
    let Some(types) = cursive_key_types() else {
        eprintln!("IMGSEAL_SKIP_CURSIVE set: not running cursive");
        return;
    };
    let env = Env::new();
    let cert_id = "2b6e4a3c-cursive";
    let uri = env.key_with_certificate(kind, kind, cert_id);
    let certs = env.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    env.run(&[
        "cert",
        "export",
        cert_id,
        "--out",
        certs.join(format!("{cert_id}.pem")).to_str().unwrap(),
    ])
    .ok();
    let image = env.image("image.raw", 150_000);
    let tampered = env.path("tampered.raw");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[0] ^= 0x80;
    std::fs::write(&tampered, bytes).unwrap();

    for hash in HASHES {
        let props = env
            .run(&[
                "sign",
                "--key",
                &uri,
                "--cert-id",
                cert_id,
                "--hash",
                hash,
                image.to_str().unwrap(),
            ])
            .ok()
            .json();
        assert_eq!(props["img_signature_key_type"], glance_type);
        let props_file = write_props(&env, "props.json", &props);
        let args = [
            "verify-signature",
            "--cert-dir",
            certs.to_str().unwrap(),
            "--props",
            props_file.to_str().unwrap(),
        ];
        let good = cursive(&[&args[..], &[image.to_str().unwrap()]].concat()).unwrap();
        let bad = cursive(&[&args[..], &[tampered.to_str().unwrap()]].concat()).unwrap();
        if types.iter().any(|t| t == glance_type) {
            assert_eq!(
                good.code, 0,
                "cursive refused imgseal's {kind} {hash} signature: {}",
                good.stdout
            );
            assert_eq!(
                bad.code, 1,
                "cursive accepted a tampered image: {}",
                bad.stdout
            );
            assert!(bad.stdout.contains("InvalidSignature"), "{}", bad.stdout);
        } else {
            // cryptography ≥ 47 dropped the binary curves: cursive rejects the key type
            // itself, whatever the signature (docs/cursive.md records this).
            assert_eq!(good.code, 1, "{}", good.stdout);
            assert!(
                good.stdout
                    .contains(&format!("Invalid signature key type: {glance_type}")),
                "{}",
                good.stdout
            );
        }
    }
}

#[test]
fn cursive_registers_the_documented_key_types() {
    let Some(types) = cursive_key_types() else {
        return;
    };
    assert_eq!(types, ["DSA", "ECC_SECP384R1", "ECC_SECP521R1", "RSA-PSS"]);
}

#[test]
fn cursive_accepts_rsa_pss_2048() {
    cursive_accepts("rsa-pss-2048", "RSA-PSS");
}

#[test]
fn cursive_accepts_rsa_pss_3072() {
    cursive_accepts("rsa-pss-3072", "RSA-PSS");
}

#[test]
fn cursive_accepts_dsa_2048() {
    cursive_accepts("dsa-2048", "DSA");
}

#[test]
fn cursive_accepts_dsa_3072() {
    cursive_accepts("dsa-3072", "DSA");
}

#[test]
fn cursive_accepts_ecc_secp384r1() {
    cursive_accepts("ecc-secp384r1", "ECC_SECP384R1");
}

#[test]
fn cursive_accepts_ecc_secp521r1() {
    cursive_accepts("ecc-secp521r1", "ECC_SECP521R1");
}

#[test]
fn cursive_rejects_binary_curve_key_types() {
    cursive_accepts("ecc-sect571k1", "ECC_SECT571K1");
    cursive_accepts("ecc-sect409r1", "ECC_SECT409R1");
}

/// The other direction: cursive and imgseal agree on what the docs' recipe
/// (`openssl dgst -sha256 -sign key -sigopt rsa_padding_mode:pss`) produces,
/// read from `openstack image show -f json` output.
#[test]
fn imgseal_and_cursive_agree_on_openstack_image_show_output() {
    if cursive_python().is_none() {
        return;
    }
    let env = Env::new();
    let key = env.path("key.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().unwrap(),
    ])
    .ok();
    let certs = env.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/CN=docs",
        "-days",
        "2",
        "-out",
        certs.join("docs-cert.pem").to_str().unwrap(),
    ])
    .ok();
    let image = env.image("cirros.img", 65_537);
    let sig = env.path("sig");
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        key.to_str().unwrap(),
        "-sigopt",
        "rsa_padding_mode:pss",
        "-out",
        sig.to_str().unwrap(),
        image.to_str().unwrap(),
    ])
    .ok();
    let show = serde_json::json!({
        "id": "5c3a…", "name": "cirros", "disk_format": "qcow2",
        "properties": {
            "img_signature": encode_b64(&std::fs::read(&sig).unwrap()),
            "img_signature_hash_method": "SHA-256",
            "img_signature_key_type": "RSA-PSS",
            "img_signature_certificate_uuid": "docs-cert",
            "os_hash_algo": "sha512"
        }
    });
    let props = write_props(&env, "show.json", &show);
    let ours = env.run(&[
        "verify",
        "--props",
        props.to_str().unwrap(),
        "--cert-dir",
        certs.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    let theirs = cursive(&[
        "verify-signature",
        "--cert-dir",
        certs.to_str().unwrap(),
        "--props",
        props.to_str().unwrap(),
        image.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(ours.code, 0, "{}", ours.stderr);
    assert_eq!(theirs.code, 0, "{}", theirs.stdout);
}
