//! Every Glance key type × every hash method, against the openssl CLI, with
//! keys in a real SoftHSM token: imgseal's signatures verify with `openssl
//! dgst -verify` and with imgseal; `openssl dgst -sign` signatures verify with
//! imgseal.

mod common;

use common::*;

/// imgseal signs in the HSM; openssl and imgseal both accept; a tampered
/// image is refused by both.
fn hsm_signatures_verify_everywhere(kind: &str) {
    let env = Env::new();
    let cert_id = format!("cert-{kind}");
    let uri = env.key_with_certificate(kind, kind, &cert_id);
    let cert = env.path(&format!("{kind}.crt"));
    let public = env.path("pub.pem");
    openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-pubkey",
        "-noout",
        "-out",
        public.to_str().unwrap(),
    ])
    .ok();
    let image = env.image("image.raw", 300_000);
    let tampered = env.path("tampered.raw");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[123_456] ^= 0x01;
    std::fs::write(&tampered, bytes).unwrap();

    for hash in HASHES {
        let props = env
            .run(&[
                "sign",
                "--key",
                &uri,
                "--cert-id",
                &cert_id,
                "--hash",
                hash,
                image.to_str().unwrap(),
            ])
            .ok()
            .json();
        assert_eq!(props["img_signature_hash_method"], hash);
        assert_eq!(props["img_signature_certificate_uuid"], cert_id.as_str());
        let expected_type = match kind {
            k if k.starts_with("rsa") => "RSA-PSS".to_string(),
            k if k.starts_with("dsa") => "DSA".to_string(),
            k => k.replace("ecc-", "ECC_").to_ascii_uppercase(),
        };
        assert_eq!(props["img_signature_key_type"], expected_type.as_str());

        let sig = env.path("sig.bin");
        std::fs::write(&sig, decode_b64(props["img_signature"].as_str().unwrap())).unwrap();
        let mut args = vec![
            "dgst",
            dgst_flag(hash),
            "-verify",
            public.to_str().unwrap(),
            "-signature",
            sig.to_str().unwrap(),
        ];
        if kind.starts_with("rsa") {
            // The maximum salt, as cursive's PSS.MAX_LENGTH signs.
            args.extend([
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:max",
            ]);
        }
        let mut ok_args = args.clone();
        ok_args.push(image.to_str().unwrap());
        let out = openssl(&ok_args).ok();
        assert!(
            out.stdout.contains("Verified OK"),
            "{kind} {hash}: {}",
            out.stdout
        );
        let mut bad_args = args.clone();
        bad_args.push(tampered.to_str().unwrap());
        assert_ne!(
            openssl(&bad_args).code,
            0,
            "openssl accepted a tampered image ({kind} {hash})"
        );

        let props_file = write_props(&env, "props.json", &props);
        let verdict = env
            .run(&[
                "--json",
                "verify",
                "--props",
                props_file.to_str().unwrap(),
                image.to_str().unwrap(),
            ])
            .ok()
            .json();
        assert_eq!(verdict["verdict"], "valid", "{kind} {hash}");
        let verdict = env
            .run(&[
                "--json",
                "verify",
                "--props",
                props_file.to_str().unwrap(),
                tampered.to_str().unwrap(),
            ])
            .code(1)
            .json();
        assert_eq!(verdict["verdict"], "invalid");
        assert!(
            verdict["reason"]
                .as_str()
                .unwrap()
                .contains("does not match"),
            "{verdict}"
        );
    }
}

macro_rules! hsm_cases {
    ($($name:ident => $kind:expr),* $(,)?) => {
        $( #[test] fn $name() { hsm_signatures_verify_everywhere($kind); } )*
    };
}

hsm_cases! {
    hsm_rsa_pss_2048 => "rsa-pss-2048",
    hsm_rsa_pss_3072 => "rsa-pss-3072",
    hsm_rsa_pss_4096 => "rsa-pss-4096",
    hsm_dsa_2048 => "dsa-2048",
    hsm_dsa_3072 => "dsa-3072",
    hsm_ecc_secp384r1 => "ecc-secp384r1",
    hsm_ecc_secp521r1 => "ecc-secp521r1",
    hsm_ecc_sect409k1 => "ecc-sect409k1",
    hsm_ecc_sect409r1 => "ecc-sect409r1",
    hsm_ecc_sect571k1 => "ecc-sect571k1",
    hsm_ecc_sect571r1 => "ecc-sect571r1",
}

/// A software key made by openssl, a self-signed certificate for it in a
/// certificate directory, and its Glance key type.
fn openssl_key(env: &Env, kind: &str) -> (std::path::PathBuf, &'static str) {
    let key = env.path("key.pem");
    let k = key.to_str().unwrap();
    let (args, key_type): (Vec<&str>, &'static str) = match kind {
        "rsa-3072" => (
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:3072",
                "-out",
                k,
            ],
            "RSA-PSS",
        ),
        "dsa-2048" => (vec!["genpkey", "-paramfile", "PARAMS", "-out", k], "DSA"),
        curve => (
            vec!["genpkey", "-algorithm", "EC", "-pkeyopt", "", "-out", k],
            match curve {
                "secp384r1" => "ECC_SECP384R1",
                "secp521r1" => "ECC_SECP521R1",
                "sect409k1" => "ECC_SECT409K1",
                "sect409r1" => "ECC_SECT409R1",
                "sect571k1" => "ECC_SECT571K1",
                "sect571r1" => "ECC_SECT571R1",
                other => panic!("{other}"),
            },
        ),
    };
    let curve_opt = format!("ec_paramgen_curve:{kind}");
    let params = env.path("dsa.params");
    let args: Vec<String> = args
        .into_iter()
        .map(|a| match a {
            "" => curve_opt.clone(),
            "PARAMS" => params.to_str().unwrap().to_string(),
            a => a.to_string(),
        })
        .collect();
    if kind.starts_with("dsa") {
        openssl(&[
            "genpkey",
            "-genparam",
            "-algorithm",
            "DSA",
            "-pkeyopt",
            "dsa_paramgen_bits:2048",
            "-pkeyopt",
            "dsa_paramgen_q_bits:256",
            "-out",
            params.to_str().unwrap(),
        ])
        .ok();
    }
    openssl(&args.iter().map(String::as_str).collect::<Vec<_>>()).ok();
    let certs = env.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        k,
        "-subj",
        &format!("/CN=openssl {kind}"),
        "-days",
        "2",
        "-out",
        certs.join("openssl-cert.pem").to_str().unwrap(),
    ])
    .ok();
    (key, key_type)
}

/// `openssl dgst -sign` (the docs' recipe for RSA) → imgseal verify.
fn openssl_signatures_verify_with_imgseal(kind: &str) {
    let env = Env::new();
    let (key, key_type) = openssl_key(&env, kind);
    let image = env.image("image.raw", 200_001);
    for hash in HASHES {
        let mut salts: Vec<Option<&str>> = vec![None];
        if kind.starts_with("rsa") {
            // Default (the docs' recipe), explicit digest length and max: cursive accepts any.
            salts = vec![
                None,
                Some("rsa_pss_saltlen:digest"),
                Some("rsa_pss_saltlen:max"),
                Some("rsa_pss_saltlen:0"),
            ];
        }
        for salt in salts {
            let sig = env.path("sig.bin");
            let mut args = vec![
                "dgst",
                dgst_flag(hash),
                "-sign",
                key.to_str().unwrap(),
                "-out",
                sig.to_str().unwrap(),
            ];
            if kind.starts_with("rsa") {
                args.extend(["-sigopt", "rsa_padding_mode:pss"]);
            }
            if let Some(s) = salt {
                args.extend(["-sigopt", s]);
            }
            args.push(image.to_str().unwrap());
            openssl(&args).ok();
            let props = serde_json::json!({
                "img_signature": encode_b64(&std::fs::read(&sig).unwrap()),
                "img_signature_hash_method": hash,
                "img_signature_key_type": key_type,
                "img_signature_certificate_uuid": "openssl-cert",
            });
            let props_file = write_props(&env, "props.json", &props);
            let certs = env.path("certs");
            let out = env.run(&[
                "--json",
                "verify",
                "--props",
                props_file.to_str().unwrap(),
                "--cert-dir",
                certs.to_str().unwrap(),
                image.to_str().unwrap(),
            ]);
            assert_eq!(
                out.code, 0,
                "{kind} {hash} {salt:?}: {} {}",
                out.stdout, out.stderr
            );
            assert_eq!(out.json()["verdict"], "valid");
        }
    }
}

macro_rules! openssl_cases {
    ($($name:ident => $kind:expr),* $(,)?) => {
        $( #[test] fn $name() { openssl_signatures_verify_with_imgseal($kind); } )*
    };
}

openssl_cases! {
    openssl_rsa_pss => "rsa-3072",
    openssl_dsa => "dsa-2048",
    openssl_secp384r1 => "secp384r1",
    openssl_secp521r1 => "secp521r1",
    openssl_sect409k1 => "sect409k1",
    openssl_sect409r1 => "sect409r1",
    openssl_sect571k1 => "sect571k1",
    openssl_sect571r1 => "sect571r1",
}
