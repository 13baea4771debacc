//! Signed images in a real Glance (scripts/openstack/), one throwaway
//! project per test: `publish` with Glance itself verifying, `verify
//! --image` agreeing with Glance, with the local file and with cursive,
//! `resign` for key rotation, `audit` over a cloud's images, and the faults
//! of a cloud in the middle of a transfer.

mod common;

use std::path::Path;

use common::openstack::{
    Fault, Project, glance_log, glance_proxy, key_with_certificate, publish, s,
};
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

/// The test CA in Barbican, for trusted ids.
fn publish_ca(project: &Project, env: &Env) -> String {
    publish(project, env, &test_ca().dir.join("ca.crt"))
}

/// A directory with `<uuid>.pem` for cursive's peer.
fn cursive_dir(env: &Env, certs: &[(&str, &Path)]) -> std::path::PathBuf {
    let dir = env.path("cursive-certs");
    std::fs::create_dir_all(&dir).unwrap();
    for (uuid, pem) in certs {
        std::fs::copy(pem, dir.join(format!("{uuid}.pem"))).unwrap();
    }
    dir
}

#[test]
fn verify_image_agrees_with_glance_the_local_file_and_cursive() {
    let env = Env::new();
    let project = Project::new();
    let ca = publish_ca(&project, &env);
    let image = env.image("golden.raw", 1024 * 1024 + 5);
    let (uri, cert) = key_with_certificate(&env, "ecc-secp384r1", "verifier");
    let uuid = publish(&project, &env, &cert);
    let published = publish_image(&project, &env, &uri, &uuid, "SHA-384", &image, "golden-v")
        .ok()
        .json();
    let id = published["image_id"].as_str().unwrap().to_string();
    let props = env.path("props.json");
    std::fs::write(&props, published.to_string()).unwrap();
    let certs = cursive_dir(
        &env,
        &[(&uuid, &cert), (&ca, &test_ca().dir.join("ca.crt"))],
    );

    for policy in ["nova", "strict"] {
        for by in [id.as_str(), "golden-v"] {
            let remote = project
                .run(
                    &env,
                    &[
                        "--json",
                        "verify",
                        "--image",
                        by,
                        "--trusted-cert-id",
                        &ca,
                        "--policy",
                        policy,
                        "-q",
                    ],
                )
                .ok()
                .json();
            assert_eq!(remote["verdict"], "valid", "{remote}");
            assert_eq!(remote["image_id"], id.as_str());
            assert_eq!(remote["glance_record_matches"], true);
            assert_eq!(remote["certificate_validation"]["valid"], true, "{remote}");
            let local = project
                .run(
                    &env,
                    &[
                        "--json",
                        "verify",
                        "--props",
                        s(&props),
                        s(&image),
                        "--trusted-cert-id",
                        &ca,
                        "--policy",
                        policy,
                    ],
                )
                .ok()
                .json();
            for field in [
                "verdict",
                "key_type",
                "hash_method",
                "certificate_id",
                "image_size",
            ] {
                assert_eq!(remote[field], local[field], "{field}: {remote} vs {local}");
            }
        }
    }
    // cursive, on the same image, certificate and trusted ids.
    if let Some(sig) = cursive(&[
        "verify-signature",
        "--cert-dir",
        s(&certs),
        "--props",
        s(&props),
        s(&image),
    ]) {
        assert_eq!(sig.code, 0, "{}", sig.stdout);
        let chain = cursive(&[
            "verify-certificate",
            "--cert-dir",
            s(&certs),
            "--cert-id",
            &uuid,
            "--trusted",
            &ca,
        ])
        .unwrap();
        assert_eq!(chain.code, 0, "{}", chain.stdout);
        // An untrusted certificate: cursive and imgseal refuse alike.
        let stranger = env.path("stranger.pem");
        common::openstack::self_signed(&env, &stranger, "stranger");
        let other = publish(&project, &env, &stranger);
        let chain = cursive(&[
            "verify-certificate",
            "--cert-dir",
            s(&certs),
            "--cert-id",
            &uuid,
            "--trusted",
            &other,
        ])
        .unwrap();
        assert_eq!(chain.code, 1, "{}", chain.stdout);
        let refused = project
            .run(
                &env,
                &[
                    "--json",
                    "verify",
                    "--image",
                    &id,
                    "--trusted-cert-id",
                    &other,
                    "-q",
                ],
            )
            .code(1)
            .json();
        assert_eq!(refused["verdict"], "invalid");
    }
    // --download writes the verified bytes, and only those.
    let out = env.path("downloaded.raw");
    project
        .run(
            &env,
            &["verify", "--image", &id, "--download", s(&out), "-q"],
        )
        .ok();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&image).unwrap());
}

#[test]
fn resign_rotates_the_key_and_require_valid_refuses_replaced_data() {
    let env = Env::new();
    let project = Project::new();
    let image = env.image("golden.raw", 700_000);
    let (old_uri, old_cert) = key_with_certificate(&env, "rsa-pss-2048", "old");
    let old = publish(&project, &env, &old_cert);
    let published = publish_image(&project, &env, &old_uri, &old, "SHA-256", &image, "rotate")
        .ok()
        .json();
    let id = published["image_id"].as_str().unwrap().to_string();
    let (new_uri, new_cert) = key_with_certificate(&env, "ecc-secp521r1", "new");
    let new = publish(&project, &env, &new_cert);

    // --dry-run changes nothing and prints the patch.
    let dry = project
        .run(
            &env,
            &[
                "--json",
                "resign",
                "--image",
                &id,
                "--key",
                &new_uri,
                "--cert-id",
                &new,
                "--dry-run",
                "-q",
            ],
        )
        .ok()
        .json();
    assert_eq!(dry["previous_signature"], "valid");
    assert_eq!(dry["patch"].as_array().unwrap().len(), 4);
    assert_eq!(dry["patch"][0]["op"], "replace");
    let shown = image_show(&project, &id);
    assert_eq!(
        shown["properties"]["img_signature_certificate_uuid"],
        old.as_str()
    );

    let resigned = project
        .run(
            &env,
            &[
                "--json",
                "resign",
                "--image",
                &id,
                "--key",
                &new_uri,
                "--cert-id",
                &new,
                "--hash",
                "SHA-512",
                "--require-valid",
                "-q",
            ],
        )
        .ok()
        .json();
    assert_eq!(resigned["previous_signature"], "valid");
    let shown = image_show(&project, &id);
    assert_eq!(
        shown["properties"]["img_signature_certificate_uuid"],
        new.as_str()
    );
    assert_eq!(
        shown["properties"]["img_signature_key_type"],
        "ECC_SECP521R1"
    );
    assert_eq!(shown["properties"]["img_signature_hash_method"], "SHA-512");
    assert_eq!(
        shown["properties"]["img_signature"],
        resigned["img_signature"]
    );
    // Verifies under the new certificate; the old signature no longer matches.
    project.run(&env, &["verify", "--image", &id, "-q"]).ok();
    let old_props = env.path("old.json");
    std::fs::write(&old_props, published.to_string()).unwrap();
    let mut stale = published.clone();
    stale["img_signature_certificate_uuid"] = serde_json::json!(new);
    std::fs::write(&old_props, stale.to_string()).unwrap();
    project
        .run(&env, &["verify", "--props", s(&old_props), s(&image)])
        .code(1);

    // Data replaced under a signature: an image whose bytes are not the ones
    // signed (uploaded with the OpenStack client, then given the properties).
    let other = env.path("other.raw");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[1000] ^= 0x80;
    std::fs::write(&other, bytes).unwrap();
    let replaced = upload_with_properties(&project, &other, "replaced", Some(&published));
    let refused = project
        .run(
            &env,
            &[
                "resign",
                "--image",
                &replaced,
                "--key",
                &new_uri,
                "--cert-id",
                &new,
                "--require-valid",
                "-q",
            ],
        )
        .code(1);
    assert!(
        refused.stderr.contains("--require-valid"),
        "{}",
        refused.stderr
    );
    let shown = image_show(&project, &replaced);
    assert_eq!(
        shown["properties"]["img_signature_certificate_uuid"],
        old.as_str()
    );
    // verify --image says so too, and --download leaves nothing.
    let out = env.path("replaced.raw");
    let bad = project
        .run(
            &env,
            &[
                "--json",
                "verify",
                "--image",
                &replaced,
                "--download",
                s(&out),
                "-q",
            ],
        )
        .code(1)
        .json();
    assert_eq!(bad["verdict"], "invalid", "{bad}");
    assert!(!out.exists());
}

/// Uploads `file` with the OpenStack client, unsigned, then gives it the
/// four properties of `props` (as an operator's `image set` would): how
/// images signed elsewhere, or replaced, end up in a cloud.
fn upload_with_properties(
    project: &Project,
    file: &Path,
    name: &str,
    props: Option<&Value>,
) -> String {
    let created = project
        .openstack(&[
            "image",
            "create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            s(file),
            name,
            "-f",
            "json",
        ])
        .ok()
        .json();
    let id = created["id"].as_str().unwrap().to_string();
    if let Some(props) = props {
        let pairs: Vec<String> = [
            "img_signature",
            "img_signature_hash_method",
            "img_signature_key_type",
            "img_signature_certificate_uuid",
        ]
        .iter()
        .map(|k| format!("{k}={}", props[*k].as_str().unwrap()))
        .collect();
        let mut set = vec!["image", "set"];
        for p in &pairs {
            set.extend(["--property", p.as_str()]);
        }
        set.push(&id);
        project.openstack(&set).ok();
    }
    id
}

#[test]
fn audit_names_what_nova_would_boot_and_what_is_at_risk() {
    let env = Env::new();
    let project = Project::new();
    let ca = publish_ca(&project, &env);
    let image = env.image("golden.raw", 300_000);
    let row =
        |rows: &[Value], id: &str| rows.iter().find(|r| r["image_id"] == id).cloned().unwrap();
    // Signed and sound.
    let (uri, cert) = key_with_certificate(&env, "rsa-pss-2048", "good");
    let good_cert = publish(&project, &env, &cert);
    let good = publish_image(&project, &env, &uri, &good_cert, "SHA-256", &image, "good")
        .ok()
        .json();
    let good_id = good["image_id"].as_str().unwrap().to_string();
    // Unsigned.
    let unsigned = upload_with_properties(&project, &image, "unsigned", None);
    // Its certificate expires in 5 days.
    let exp_uri = env.generate("ecc-secp384r1", "expiring");
    let csr = env.path("expiring.csr");
    env.run(&[
        "key",
        "csr",
        "--key",
        &exp_uri,
        "--subject",
        "CN=expiring",
        "--out",
        s(&csr),
    ])
    .ok();
    let exp_cert = env.path("expiring.crt");
    test_ca().issue_days(&csr, &exp_cert, 5);
    let exp_uuid = publish(&project, &env, &exp_cert);
    let expiring = publish_image(
        &project, &env, &exp_uri, &exp_uuid, "SHA-384", &image, "expiring",
    )
    .ok()
    .json();
    let expiring = expiring["image_id"].as_str().unwrap().to_string();
    // Its certificate was deleted from Barbican.
    let (gone_uri, gone_cert) = key_with_certificate(&env, "rsa-pss-2048", "gone");
    let gone_uuid = publish(&project, &env, &gone_cert);
    let missing = publish_image(
        &project, &env, &gone_uri, &gone_uuid, "SHA-256", &image, "missing",
    )
    .ok()
    .json();
    let missing = missing["image_id"].as_str().unwrap().to_string();
    let session = project.session();
    let barbican = session.endpoint("key-manager").unwrap();
    project
        .openstack(&[
            "secret",
            "delete",
            &format!("{barbican}/v1/secrets/{gone_uuid}"),
        ])
        .ok();
    // A binary curve (signed before cryptography dropped them).
    let (bin_uri, bin_cert) = key_with_certificate(&env, "ecc-sect409k1", "binary");
    let bin_uuid = publish(&project, &env, &bin_cert);
    let bin_props = project
        .run(
            &env,
            &[
                "sign",
                "--key",
                &bin_uri,
                "--cert-id",
                &bin_uuid,
                "--hash",
                "SHA-384",
                s(&image),
            ],
        )
        .ok()
        .json();
    let binary = upload_with_properties(&project, &image, "binary", Some(&bin_props));
    // Data replaced under a valid signature.
    let replaced_file = env.path("replaced.raw");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[7] ^= 1;
    std::fs::write(&replaced_file, bytes).unwrap();
    let tampered = upload_with_properties(&project, &replaced_file, "tampered", Some(&good));

    let audit = |extra: &[&str], code: i32| -> Vec<Value> {
        let mut args = vec!["--json", "audit", "--trusted-cert-id", &ca, "-q"];
        args.extend_from_slice(extra);
        let out = project.run(&env, &args).code(code);
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let rows = audit(&["--warn-days", "10"], 1);
    let summary = rows.last().unwrap()["summary"].clone();
    assert_eq!(summary["images"], 6, "{summary}");
    assert_eq!(summary["at_risk"], 1, "{summary}");
    let r = row(&rows, &good_id);
    assert_eq!(
        (
            r["signed"].clone(),
            r["nova_boots"].clone(),
            r["strict_valid"].clone(),
            r["at_risk"].clone()
        ),
        (true.into(), true.into(), true.into(), false.into()),
        "{r}"
    );
    assert_eq!(r["certificate_subject"], "CN=good");
    assert!(r["days_left"].as_i64().unwrap() >= 28, "{r}");
    let r = row(&rows, &unsigned);
    assert_eq!(
        (r["signed"].clone(), r["nova_boots"].clone()),
        (false.into(), false.into()),
        "{r}"
    );
    let r = row(&rows, &expiring);
    assert_eq!(
        (r["nova_boots"].clone(), r["at_risk"].clone()),
        (true.into(), true.into()),
        "{r}"
    );
    assert!(r["days_left"].as_i64().unwrap() <= 5, "{r}");
    let r = row(&rows, &missing);
    assert_eq!(r["nova_boots"], false, "{r}");
    assert!(
        r["certificate_problem"]
            .as_str()
            .unwrap()
            .contains(&gone_uuid),
        "{r}"
    );
    let r = row(&rows, &binary);
    assert_eq!(r["nova_boots"], false, "{r}");
    assert_eq!(r["key_type"], "ECC_SECT409K1");
    // Metadata alone cannot see replaced data; --deep does.
    let r = row(&rows, &tampered);
    assert_eq!(
        (r["nova_boots"].clone(), r["data_valid"].clone()),
        (true.into(), Value::Null),
        "{r}"
    );
    let deep = audit(&["--warn-days", "0", "--deep"], 0);
    let r = row(&deep, &tampered);
    assert_eq!(
        (r["nova_boots"].clone(), r["data_valid"].clone()),
        (false.into(), false.into()),
        "{r}"
    );
    let r = row(&deep, &good_id);
    assert_eq!(r["data_valid"], true, "{r}");
    // The table for people: a header, one row per image, the summary.
    let table = project
        .run(
            &env,
            &["audit", "--trusted-cert-id", &ca, "--warn-days", "10"],
        )
        .code(1);
    assert!(table.stdout.starts_with("IMAGE"), "{}", table.stdout);
    assert!(table.stdout.contains("AT RISK"), "{}", table.stdout);
    assert!(
        table.stdout.contains("6 images, 5 signed"),
        "{}",
        table.stdout
    );
}

#[test]
fn transfers_cut_midway_end_cleanly_and_leave_nothing_behind() {
    let env = Env::new();
    let project = Project::new();
    let image = env.image("big.raw", 6 * 1024 * 1024);
    let (uri, cert) = key_with_certificate(&env, "rsa-pss-2048", "faults");
    let uuid = publish(&project, &env, &cert);
    let session = project.session();
    let glance = imgseal::openstack::glance::Glance::new(&session).unwrap();
    let named = |name: &str| {
        glance
            .list()
            .unwrap()
            .into_iter()
            .filter(|i| i.name() == Some(name))
            .map(|i| i.status().to_string())
            .collect::<Vec<_>>()
    };

    // Glance gone mid-upload: one line, the queued image deleted again.
    let cut_upload = glance_proxy(|line, _| {
        if line.starts_with("PUT ") {
            Fault::CutRequestAfter(1 << 20)
        } else {
            Fault::Pass
        }
    });
    let out = project
        .run(
            &env,
            &[
                "--glance-url",
                &cut_upload,
                "publish",
                "--key",
                &uri,
                "--cert-id",
                &uuid,
                "--name",
                "cut",
                "-q",
                s(&image),
            ],
        )
        .code(8);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("/file"), "{}", out.stderr);
    assert!(out.stderr.contains("deleted again"), "{}", out.stderr);
    assert!(named("cut").is_empty(), "{:?}", named("cut"));

    // A 401 on the upload (the token expired): one new login, the body sent again.
    let expired = glance_proxy(|line, _| {
        static SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if line.starts_with("PUT ") && !SEEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Fault::Unauthorized
        } else {
            Fault::Pass
        }
    });
    let ok = project
        .run(
            &env,
            &[
                "--json",
                "--glance-url",
                &expired,
                "publish",
                "--key",
                &uri,
                "--cert-id",
                &uuid,
                "--name",
                "renewed",
                "-q",
                s(&image),
            ],
        )
        .ok()
        .json();
    assert_eq!(ok["status"], "active");
    let id = ok["image_id"].as_str().unwrap().to_string();

    // Glance gone mid-download: one line, nothing written.
    let cut_download = glance_proxy(|line, _| {
        if line.starts_with("GET ") && line.contains("/file") {
            Fault::CutAnswerAfter(2 << 20)
        } else {
            Fault::Pass
        }
    });
    let out_file = env.path("partial.raw");
    let out = project
        .run(
            &env,
            &[
                "--glance-url",
                &cut_download,
                "verify",
                "--image",
                &id,
                "--download",
                s(&out_file),
                "-q",
            ],
        )
        .code(8);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(!out_file.exists());
    assert!(
        std::fs::read_dir(env.path("")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".imgseal-download")),
        "a temporary download was left behind"
    );

    // Barbican down while verifying: one line, the service named.
    let out = project
        .run(
            &env,
            &[
                "--barbican-url",
                "http://127.0.0.1:9",
                "verify",
                "--image",
                &id,
                "-q",
            ],
        )
        .code(8);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("127.0.0.1:9"), "{}", out.stderr);

    // The image deleted as its data is asked for.
    let deleting = {
        let id = id.clone();
        let session = project.session();
        glance_proxy(move |line, _| {
            if line.starts_with("GET ") && line.contains("/file") {
                imgseal::openstack::glance::Glance::new(&session)
                    .unwrap()
                    .delete(&id)
                    .unwrap();
            }
            Fault::Pass
        })
    };
    let out = project
        .run(
            &env,
            &[
                "--glance-url",
                &deleting,
                "verify",
                "--image",
                &id,
                "--download",
                s(&out_file),
                "-q",
            ],
        )
        .code(4);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains(&id), "{}", out.stderr);
    assert!(!out_file.exists());
}

#[test]
fn a_full_disk_while_downloading_leaves_no_file() {
    let env = Env::new();
    let project = Project::new();
    let image = env.image("big.raw", 2 * 1024 * 1024);
    let (uri, cert) = key_with_certificate(&env, "ecc-secp384r1", "full");
    let uuid = publish(&project, &env, &cert);
    let id = publish_image(&project, &env, &uri, &uuid, "SHA-256", &image, "full")
        .ok()
        .json()["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    // A 512 KiB file system for the download.
    let small = env.path("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs", s(&small)])
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a tmpfs needs root (CI runs as root)"
    );
    let target = small.join("image.raw");
    let out = project.run(
        &env,
        &["verify", "--image", &id, "--download", s(&target), "-q"],
    );
    let listing: Vec<_> = std::fs::read_dir(&small)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    std::process::Command::new("umount")
        .arg(&small)
        .status()
        .unwrap();
    let out = out.code(7);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("No space left"), "{}", out.stderr);
    assert!(listing.is_empty(), "{listing:?}");
}

#[test]
fn an_image_changed_between_signing_and_upload_is_never_published() {
    let env = Env::new();
    let project = Project::new();
    let image = env.image("moving.raw", 1024 * 1024);
    let (uri, cert) = key_with_certificate(&env, "ecc-secp384r1", "moving");
    let uuid = publish(&project, &env, &cert);
    // The image is created once the signing pass is over: change a byte then.
    let target = image.clone();
    let changing = glance_proxy(move |line, _| {
        if line.starts_with("POST /v2/images") {
            let mut bytes = std::fs::read(&target).unwrap();
            bytes[4096] ^= 0x01;
            std::thread::sleep(std::time::Duration::from_millis(20));
            std::fs::write(&target, bytes).unwrap();
        }
        Fault::Pass
    });
    let out = project
        .run(
            &env,
            &[
                "--glance-url",
                &changing,
                "publish",
                "--key",
                &uri,
                "--cert-id",
                &uuid,
                "--name",
                "moving",
                "-q",
                s(&image),
            ],
        )
        .code(7);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("changed between signing and upload"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("deleted again"), "{}", out.stderr);
    let session = project.session();
    let glance = imgseal::openstack::glance::Glance::new(&session).unwrap();
    assert!(
        glance
            .list()
            .unwrap()
            .iter()
            .all(|i| i.name() != Some("moving"))
    );
}
