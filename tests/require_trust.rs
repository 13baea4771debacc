//! `--require-trust`: a valid signature whose certificate no trusted id
//! validated is refused (exit 1) when asked, for properties and manifests,
//! from the flag, the environment or the configuration; `attest verify`
//! likewise refuses an attestation whose AK was not pinned.

mod common;

use std::path::Path;

use common::tpm::TestTpm;
use common::*;

const CERT: &str = "trust-cert";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A signed image: its properties file and its manifest.
fn signed(env: &Env) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let key = env.key_with_certificate("ecc-secp384r1", "trust-key", CERT);
    let ca = common::test_ca().dir.join("ca.crt");
    env.run(&["cert", "import", "--id", "test-ca", s(&ca)]).ok();
    let image = env.image("trust.img", 3 * 4096 + 5);
    let props = env.path("props.json");
    let manifest = env.path("m.json");
    let out = env
        .run(&[
            "--json",
            "sign",
            "--key",
            &key,
            "--cert-id",
            CERT,
            "--manifest",
            s(&manifest),
            s(&image),
        ])
        .ok();
    std::fs::write(&props, out.stdout).unwrap();
    (image, props, manifest)
}

#[test]
fn a_signature_no_trusted_id_validated_is_refused_when_trust_is_required() {
    let env = Env::new();
    let (image, props, manifest) = signed(&env);
    let inputs = [vec!["--props", s(&props)], vec!["--manifest", s(&manifest)]];
    for input in &inputs {
        let verify = |extra: &[&str], vars: &[(&str, &str)]| {
            let mut cmd = env.command();
            cmd.args(["--json", "verify"])
                .args(input)
                .args(extra)
                .arg(&image);
            for (k, v) in vars {
                cmd.env(k, v);
            }
            Run::from_output(cmd.output().unwrap())
        };
        // Without trusted ids the signature alone is enough, as in Nova with
        // certificate validation off...
        let v = verify(&[], &[]).code(0).json();
        assert_eq!(v["valid"], true, "{v}");
        // ...unless trust is required: by the flag, the environment or the
        // configuration.
        let config = env.path("require.toml");
        std::fs::write(&config, "[validation]\nrequire_trust = true\n").unwrap();
        for (extra, vars) in [
            (vec!["--require-trust"], vec![]),
            (vec![], vec![("IMGSEAL_REQUIRE_TRUST", "1")]),
            (vec!["--config", s(&config)], vec![]),
        ] {
            let v = verify(&extra, &vars).code(1).json();
            assert_eq!(v["valid"], false, "{input:?} {extra:?} {vars:?}: {v}");
            assert_eq!(v["exit_code"], 1, "{v}");
            assert!(
                v["reason"].as_str().unwrap().contains("--require-trust"),
                "{v}"
            );
        }
        // An explicit "0" turns it off again.
        verify(&[], &[("IMGSEAL_REQUIRE_TRUST", "0")]).code(0);
        // With a trusted id that validates the chain, required trust holds.
        let v = verify(&["--require-trust", "--trusted-cert-id", "test-ca"], &[])
            .code(0)
            .json();
        assert_eq!(v["certificate_validation"]["valid"], true, "{v}");
        if input[0] == "--manifest" {
            // A manifest's signer is refused before the image is read.
            continue;
        }
        // A bad signature is still reported as itself.
        let tampered = env.path("tampered.img");
        let mut bytes = std::fs::read(&image).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&tampered, bytes).unwrap();
        let mut cmd = env.command();
        cmd.args(["--json", "verify", "--require-trust"])
            .args(input)
            .arg(&tampered);
        let v = Run::from_output(cmd.output().unwrap()).code(1).json();
        assert!(
            !v["reason"].as_str().unwrap().contains("--require-trust"),
            "{v}"
        );
    }
    // The text verdict names the refusal on its first line.
    let out = env
        .run(&["verify", "--require-trust", "--props", s(&props), s(&image)])
        .code(1);
    assert!(
        out.stdout
            .lines()
            .next()
            .unwrap()
            .starts_with("invalid: no trusted certificate id validated"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_attestation_without_a_pinned_ak_is_refused_when_trust_is_required() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let cert = common::pki::anchor_cert_file(env.work.path(), "a");
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&cert)])
        .ok();
    let bundle = env.home.path().join("anchors/bundle");
    let doc = env.path("attest.json");
    let nonce = "0123456789abcdef0123456789abcdef";
    env.tpm_run(&tpm, &["attest", "--nonce", nonce, "--out", s(&doc)])
        .ok();
    let ak = env.path("ak.pem");
    let text: serde_json::Value = serde_json::from_slice(&std::fs::read(&doc).unwrap()).unwrap();
    std::fs::write(&ak, text["ak"]["public_key_pem"].as_str().unwrap()).unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "attest",
            "verify",
            s(&doc),
            "--nonce",
            nonce,
            "--expected-anchors",
            s(&bundle),
        ];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    assert_eq!(verify(&[]).code(0).json()["ak_pinned"], false);
    let v = verify(&["--require-trust"]).code(1).json();
    assert!(v["reason"].as_str().unwrap().contains("--ak"), "{v}");
    let v = verify(&["--require-trust", "--ak", s(&ak)]).code(0).json();
    assert_eq!(v["ak_pinned"], true, "{v}");
}

/// With a nova.conf whose verify_glance_signatures is off, verify says that
/// Nova would not check the signature at all; without Nova's options it
/// does not guess.
#[test]
fn verify_says_when_nova_would_not_check_at_all() {
    let env = Env::new();
    let (image, props, _) = signed(&env);
    let off = env.path("nova-off.conf");
    std::fs::write(&off, "[glance]\nverify_glance_signatures = False\n").unwrap();
    let on = env.path("nova-on.conf");
    std::fs::write(
        &on,
        "[glance]\nverify_glance_signatures = True\nenable_certificate_validation = False\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["verify", "--policy", "nova", "--props", s(&props)];
        args.extend_from_slice(extra);
        args.push(s(&image));
        env.run(&args).ok()
    };
    let text = run(&["--nova-conf", s(&off)]).stdout;
    assert!(
        text.contains("note: Nova, configured as given")
            && text.contains("does not verify image signatures at all"),
        "{text}"
    );
    let mut json_args = vec![
        "--json",
        "verify",
        "--props",
        s(&props),
        "--nova-conf",
        s(&off),
    ];
    json_args.push(s(&image));
    let v = env.run(&json_args).ok().json();
    assert_eq!(v["nova_skips_signature_check"], true, "{v}");
    for extra in [&["--nova-conf", s(&on)][..], &[]] {
        let text = run(extra).stdout;
        assert!(
            !text.contains("does not verify image signatures"),
            "{extra:?}: {text}"
        );
    }
}
