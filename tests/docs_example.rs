//! Nova's documentation example, end to end: the 4-certificate chain built with
//! `openssl ca` and the docs' ca.conf, the image signed with `openssl dgst
//! -sha256 -sign key_client.pem -sigopt rsa_padding_mode:pss`, verified with
//! trusted {CA, IntA, IntB}; then again with the client key in SoftHSM and
//! Intermediate B signing imgseal's CSR. docs/example.md is the same, for people.

mod common;

use std::path::Path;

use common::docs_chain::*;
use common::*;

fn nova_conf(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("nova.conf");
    std::fs::write(
        &path,
        "[glance]\nverify_glance_signatures = True\nenable_certificate_validation = True\n",
    )
    .unwrap();
    path
}

/// The boots the docs describe, for both policies, and cursive agreeing.
fn check_boots(env: &Env, dir: &Path, props: &Path, image: &Path) {
    let km = dir.join("km");
    let (km_s, props_s, image_s) = (
        km.to_str().unwrap(),
        props.to_str().unwrap(),
        image.to_str().unwrap(),
    );
    for policy in ["nova", "strict"] {
        // "The instance should successfully boot": both --trusted-cert-id forms of the docs.
        let out = env.run(&[
            "verify",
            "--props",
            props_s,
            "--cert-dir",
            km_s,
            "--policy",
            policy,
            "--trusted-cert-id",
            &format!("{CA},{INT_A}"),
            "--trusted-cert-id",
            INT_B,
            image_s,
        ]);
        assert_eq!(out.code, 0, "{policy}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("trusted ids from --trusted-cert-id"),
            "{}",
            out.stdout
        );
        // The same ids from the environment.
        let out = Run::from_output(
            env.command()
                .env(
                    "OS_TRUSTED_IMAGE_CERTIFICATE_IDS",
                    format!("{CA},{INT_A},{INT_B}"),
                )
                .args([
                    "--json",
                    "verify",
                    "--props",
                    props_s,
                    "--cert-dir",
                    km_s,
                    "--policy",
                    policy,
                    image_s,
                ])
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 0, "{}", out.stdout);
        assert_eq!(out.json()["trust"]["source"]["kind"], "environment");
    }
    // "The instance should fail to boot … Certificate chain building failed."
    let conf = nova_conf(dir);
    let out = env
        .run(&[
            "verify",
            "--props",
            props_s,
            "--cert-dir",
            km_s,
            "--policy",
            "nova",
            "--nova-conf",
            conf.to_str().unwrap(),
            image_s,
        ])
        .code(1);
    // cursive's words exactly, then imgseal's hint on its own line.
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("invalid: Image signature certificate validation failed")
            && lines[0].ends_with(imgseal::validate::nova::CHAIN_BUILDING_FAILED),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].starts_with("hint: ")
            && lines[1].contains("no trusted certificate ids are in force")
            && lines[1].contains("\"CN=Second Intermediate Certificate\""),
        "{}",
        out.stdout
    );
    // Strict fails too, and says why.
    let out = env
        .run(&[
            "verify",
            "--props",
            props_s,
            "--cert-dir",
            km_s,
            "--nova-conf",
            conf.to_str().unwrap(),
            image_s,
        ])
        .code(1);
    assert!(
        out.stdout.contains("no trusted certificates"),
        "{}",
        out.stdout
    );
    // Where strict is better: the root alone is enough (intermediates come from the store).
    env.run(&[
        "verify",
        "--props",
        props_s,
        "--cert-dir",
        km_s,
        "--trusted-cert-id",
        CA,
        image_s,
    ])
    .ok();
    let out = env
        .run(&[
            "verify",
            "--props",
            props_s,
            "--cert-dir",
            km_s,
            "--policy",
            "nova",
            "--trusted-cert-id",
            CA,
            image_s,
        ])
        .code(1);
    assert!(
        out.stdout.contains("Certificate chain building failed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "hint: no usable trusted certificate issued \"CN=Client Certificate\": add the id of its issuer's certificate (\"CN=Second Intermediate Certificate\")"
        ),
        "{}",
        out.stdout
    );

    if cursive_python().is_some() {
        let all = format!("{CA},{INT_A},{INT_B}");
        let good = cursive(&[
            "verify-certificate",
            "--cert-dir",
            km_s,
            "--cert-id",
            CLIENT,
            "--trusted",
            &all,
        ])
        .unwrap();
        assert_eq!(good.code, 0, "{}", good.stdout);
        let none = cursive(&[
            "verify-certificate",
            "--cert-dir",
            km_s,
            "--cert-id",
            CLIENT,
        ])
        .unwrap();
        assert!(
            none.stdout.contains("Certificate chain building failed"),
            "{}",
            none.stdout
        );
        let sig = cursive(&[
            "verify-signature",
            "--cert-dir",
            km_s,
            "--props",
            props_s,
            image_s,
        ])
        .unwrap();
        assert_eq!(sig.code, 0, "{}", sig.stdout);
    }
}

#[test]
fn docs_example_with_openssl_keys() {
    let env = Env::new();
    let (dir, props, image) = docs_signed_with_openssl(&env);
    check_boots(&env, &dir, &props, &image);
}

#[test]
fn docs_example_with_the_client_key_in_softhsm() {
    let env = Env::new();
    let dir = env.path("docs");
    std::fs::create_dir(&dir).unwrap();
    build_chain(&dir);
    let uri = env.generate("rsa-pss-2048", "client");
    env.run(&[
        "key",
        "csr",
        "--key",
        &uri,
        "--subject",
        "CN=Client Certificate",
        "--out",
        dir.join("cert_client.csr").to_str().unwrap(),
    ])
    .ok();
    issue_client(&dir);
    let image = env.image("cirros.tar.gz", 434_333);
    let km = dir.join("km");
    let props = env
        .run(&[
            "sign",
            "--key",
            &uri,
            "--cert-id",
            CLIENT,
            "--cert-dir",
            km.to_str().unwrap(),
            image.to_str().unwrap(),
        ])
        .ok()
        .json();
    let props = write_props(&env, "props.json", &props);
    check_boots(&env, &dir, &props, &image);
}
