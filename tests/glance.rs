//! Signed images in a real Glance (scripts/openstack/), one throwaway
//! project per test: `publish` with Glance itself verifying, `verify
//! --image` agreeing with Glance, with the local file and with cursive,
//! `resign` for key rotation, `audit` over a cloud's images, and the faults
//! of a cloud in the middle of a transfer.

mod common;

use std::path::Path;

use common::openstack::{Project, glance_log, key_with_certificate, publish, s};
use common::*;
use serde_json::Value;

/// Glance's record of image `id`, as `openstack image show` gives it.
fn image_show(project: &Project, id: &str) -> Value {
    project
        .openstack(&["image", "show", id, "-f", "json"])
        .ok()
        .json()
}

/// Glance's record of image `id`, read over REST (properties at the top level).
fn glance_record(session: &imgseal::openstack::Session, id: &str) -> Value {
    let glance = imgseal::openstack::glance::Glance::new(session).unwrap();
    Value::Object(glance.show(id).unwrap().expect("the image exists").0)
}

/// Whether Glance still lists an image named `name`.
fn image_named(project: &Project, name: &str) -> bool {
    let list = project
        .openstack(&["image", "list", "--name", name, "-f", "json"])
        .ok()
        .json();
    !list.as_array().unwrap().is_empty()
}

fn publish_image(
    project: &Project,
    env: &Env,
    uri: &str,
    cert: &str,
    hash: &str,
    image: &Path,
    name: &str,
) -> Run {
    project.run(
        env,
        &[
            "--json",
            "publish",
            "--key",
            uri,
            "--cert-id",
            cert,
            "--hash",
            hash,
            "--name",
            name,
            "--quiet",
            s(image),
        ],
    )
}

#[test]
fn glance_verifies_every_key_type_and_hash_imgseal_publishes() {
    let env = Env::new();
    let project = Project::new();
    let image = env.image("golden.raw", 512 * 1024 + 33);
    let sha512 = {
        let out = std::process::Command::new("sha512sum")
            .arg(&image)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()[..128].to_string()
    };
    let session = project.session();
    let mut first = true;
    for (kind, glance_type) in [
        ("rsa-pss-2048", "RSA-PSS"),
        ("dsa-2048", "DSA"),
        ("ecc-secp384r1", "ECC_SECP384R1"),
        ("ecc-secp521r1", "ECC_SECP521R1"),
    ] {
        let (uri, cert) = key_with_certificate(&env, kind, &format!("k-{kind}"));
        let uuid = publish(&project, &env, &cert);
        for hash in ["SHA-224", "SHA-256", "SHA-384", "SHA-512"] {
            let name = format!("{kind}-{hash}");
            let out = publish_image(&project, &env, &uri, &uuid, hash, &image, &name)
                .ok()
                .json();
            let id = out["image_id"].as_str().unwrap().to_string();
            assert_eq!(out["status"], "active", "{out}");
            assert_eq!(out["img_signature_key_type"], glance_type);
            assert_eq!(out["img_signature_hash_method"], hash);
            assert_eq!(out["disk_format"], "raw");
            assert_eq!(out["disk_format_detected"], true);
            // Glance's own word: its log, its record, and its digest of what it stored.
            assert!(
                glance_log().contains(&format!("Successfully verified signature for image {id}")),
                "{name}: glance.log has no verification of {id}"
            );
            let shown = glance_record(&session, &id);
            assert_eq!(shown["status"], "active");
            assert_eq!(shown["os_hash_value"].as_str().unwrap(), sha512);
            assert_eq!(shown["size"], 512 * 1024 + 33);
            assert_eq!(shown["img_signature"], out["img_signature"]);
            if first {
                // And as the OpenStack client shows it.
                let shown = image_show(&project, &id);
                assert_eq!(
                    shown["properties"]["os_hash_value"].as_str().unwrap(),
                    sha512
                );
                assert_eq!(
                    shown["properties"]["img_signature_certificate_uuid"],
                    uuid.as_str()
                );
                first = false;
            }
        }
    }
}

#[test]
fn glance_refuses_binary_curves_and_publish_leaves_nothing_behind() {
    let env = Env::new();
    let project = Project::new();
    let image = env.image("golden.raw", 100_000);
    let (uri, cert) = key_with_certificate(&env, "ecc-sect409k1", "binary");
    let uuid = publish(&project, &env, &cert);
    let out = publish_image(
        &project,
        &env,
        &uri,
        &uuid,
        "SHA-384",
        &image,
        "binary-curve",
    )
    .code(1);
    // Glance's reason, verbatim, and what became of the image.
    assert!(
        out.stderr.contains("Glance upload to image"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("400"), "{}", out.stderr);
    assert!(out.stderr.contains("deleted again"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(!image_named(&project, "binary-curve"));
    // --keep-on-failure leaves it, queued, for inspection.
    let kept = project.run(
        &env,
        &[
            "publish",
            "--key",
            &uri,
            "--cert-id",
            &uuid,
            "--hash",
            "SHA-384",
            "--name",
            "kept",
            "--keep-on-failure",
            "--quiet",
            s(&image),
        ],
    );
    let kept = kept.code(1);
    assert!(kept.stderr.contains("--keep-on-failure"), "{}", kept.stderr);
    assert!(image_named(&project, "kept"));
}
