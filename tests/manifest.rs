//! Signed manifests and block-level verification, end to end: keys in a real
//! SoftHSM token, certificates issued by the openssl CLI, the fs-verity digest
//! checked against the real `fsverity digest`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Env, Run, mkfifo, write_props};
use serde_json::Value;

const CERT: &str = "manifest-cert";

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

struct Signed {
    manifest: PathBuf,
    tree: PathBuf,
    props: Value,
}

/// Signs `image` with a manifest and a tree.
fn sign(env: &Env, key: &str, image: &Path, extra: &[&str]) -> Signed {
    sign_as(env, key, CERT, image, extra)
}

fn sign_as(env: &Env, key: &str, cert: &str, image: &Path, extra: &[&str]) -> Signed {
    let manifest = env.path("m.json");
    let tree = env.path("m.tree");
    let mut args = vec![
        "sign",
        "--key",
        key,
        "--cert-id",
        cert,
        "--manifest",
        manifest.to_str().unwrap(),
        "--tree",
        tree.to_str().unwrap(),
    ];
    args.extend(extra);
    let img = s(image);
    args.push(&img);
    let props = env.run(&args).ok().json();
    Signed {
        manifest,
        tree,
        props,
    }
}

fn verify(env: &Env, manifest: &Path, image: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["verify", "--json", "--manifest", manifest.to_str().unwrap()];
    args.extend(extra);
    let img = s(image);
    args.push(&img);
    env.run(&args)
}

fn fsverity_digest(image: &Path, args: &[&str]) -> String {
    let out = Command::new("fsverity")
        .arg("digest")
        .args(args)
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .expect("fsverity runs (install the fsverity package)");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn flip(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_manifest_round_trips_and_agrees_with_the_peers() {
    let env = Env::new();
    for (kind, extra) in [
        ("rsa-pss-2048", vec![]),
        (
            "ecc-secp384r1",
            vec![
                "--hash",
                "SHA-384",
                "--tree-hash",
                "SHA-512",
                "--block-size",
                "1024",
                "--salt",
                "0a0b",
            ],
        ),
    ] {
        let cert = format!("{kind}-cert");
        let key = env.key_with_certificate(kind, kind, &cert);
        let image = env.image(&format!("{kind}.img"), 3 * 129 * 4096 + 99);
        let signed = sign_as(&env, &key, &cert, &image, &extra);
        let m = read_json(&signed.manifest);
        assert_eq!(m["format"], "imgseal-manifest");
        assert_eq!(m["version"], 1);
        assert_eq!(m["image"]["size"], std::fs::metadata(&image).unwrap().len());
        assert_eq!(m["signer"]["certificate_id"], cert.as_str());
        assert_eq!(m["fsverity"]["tree_file"], "m.tree");
        // The Glance properties in the manifest are the ones printed.
        for (k, v) in signed.props.as_object().unwrap() {
            assert_eq!(&m["glance"][k], v, "{k}");
        }
        // The fs-verity digest is `fsverity digest`'s, with the same parameters.
        let fs = &m["fsverity"];
        let mut peer_args = vec![
            format!("--hash-alg={}", fs["hash_algorithm"].as_str().unwrap()),
            format!("--block-size={}", fs["block_size"]),
        ];
        if fs["salt"] != "" {
            peer_args.push(format!("--salt={}", fs["salt"].as_str().unwrap()));
        }
        let peer_args: Vec<&str> = peer_args.iter().map(String::as_str).collect();
        let peer = fsverity_digest(&image, &peer_args);
        assert_eq!(fs["digest"], peer.as_str());
        // The linear digest is openssl's.
        let dgst = common::openssl(&[
            "dgst",
            common::dgst_flag(m["linear"]["hash_method"].as_str().unwrap()),
            "-r",
            image.to_str().unwrap(),
        ])
        .ok();
        assert_eq!(
            m["linear"]["digest"],
            dgst.stdout.split_whitespace().next().unwrap()
        );
        // The manifest verifies, and so do the Glance properties on their own.
        let v = verify(&env, &signed.manifest, &image, &[]).ok().json();
        assert_eq!(v["verdict"], "valid");
        let props = write_props(&env, "props.json", &signed.props);
        env.run(&[
            "verify",
            "--props",
            props.to_str().unwrap(),
            image.to_str().unwrap(),
        ])
        .ok();
        // Canonical bytes: whitespace and member order do not matter.
        std::fs::write(&signed.manifest, serde_json::to_string(&m).unwrap()).unwrap();
        verify(&env, &signed.manifest, &image, &[]).ok();
    }
}

/// Every leaf of a JSON value, as a path of keys.
fn leaves(v: &Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(k.clone());
                leaves(child, p, out);
            }
        }
        _ => out.push(path),
    }
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| &mut v[k.as_str()])
}

/// Changes one character of a string, or a number by one, keeping its form
/// (hex stays hex, base64 stays base64) where it can.
fn mutate(v: &mut Value) {
    match v {
        Value::String(s) => {
            let mut chars: Vec<char> = s.chars().collect();
            if chars.is_empty() {
                *s = "00".into();
                return;
            }
            let i = chars.len() / 2;
            chars[i] = match chars[i] {
                '0'..='8' => (chars[i] as u8 + 1) as char,
                '9' => '0',
                'a'..='e' => (chars[i] as u8 + 1) as char,
                'A'..='Y' => (chars[i] as u8 + 1) as char,
                _ => 'a',
            };
            *s = chars.into_iter().collect();
        }
        Value::Number(n) => *v = Value::from(n.as_u64().unwrap() + 1),
        other => panic!("unexpected leaf {other}"),
    }
}

#[test]
fn a_manifest_with_any_field_changed_fails() {
    let env = Env::new();
    let key = env.key_with_certificate("rsa-pss-2048", "k", CERT);
    let image = env.image("img", 200_000);
    let signed = sign(&env, &key, &image, &[]);
    let original = read_json(&signed.manifest);
    let mut paths = Vec::new();
    leaves(&original, Vec::new(), &mut paths);
    assert!(paths.len() >= 19, "{paths:?}");
    let tampered = env.path("tampered.json");
    // Changes that keep the manifest well-formed are caught by the signature.
    let signature_catches = [
        "image.name",
        "image.size",
        "linear.digest",
        "fsverity.digest",
        "fsverity.root_hash",
        "fsverity.tree_file",
        "glance.img_signature",
        "signature",
    ];
    for path in &paths {
        let mut m = original.clone();
        mutate(at(&mut m, path));
        std::fs::write(&tampered, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        let run = verify(&env, &tampered, &image, &[]);
        let name = path.join(".");
        assert_ne!(run.code, 0, "{name} changed, yet: {}", run.stdout);
        assert!(!run.stderr.contains("panicked"), "{name}: {}", run.stderr);
        assert_eq!(run.stdout.lines().count(), 1, "{name}: {}", run.stdout);
        if signature_catches.contains(&name.as_str()) {
            assert_eq!(run.code, 1, "{name}: {} {}", run.stdout, run.stderr);
        }
    }
    // A member added anywhere, or the signature removed, is refused too.
    for (edit, code) in [
        (
            Box::new(|m: &mut Value| m["extra"] = Value::from(1)) as Box<dyn Fn(&mut Value)>,
            3,
        ),
        (
            Box::new(|m: &mut Value| m["image"]["extra"] = Value::from("x")),
            3,
        ),
        (
            Box::new(|m: &mut Value| m["glance"]["img_extra"] = Value::from("x")),
            3,
        ),
        (
            Box::new(|m: &mut Value| {
                m.as_object_mut().unwrap().remove("signature");
            }),
            3,
        ),
        (Box::new(|m: &mut Value| m["version"] = Value::from(2)), 3),
        (
            Box::new(|m: &mut Value| m["image"]["size"] = Value::from(1.5)),
            3,
        ),
    ] {
        let mut m = original.clone();
        edit(&mut m);
        std::fs::write(&tampered, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        let run = verify(&env, &tampered, &image, &[]).code(code);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }
    std::fs::write(&tampered, b"{ not json").unwrap();
    verify(&env, &tampered, &image, &[]).code(3);
    // The untouched manifest still verifies.
    verify(&env, &signed.manifest, &image, &[]).ok();
}

#[test]
fn a_flipped_byte_is_named_by_full_and_range_checks() {
    let env = Env::new();
    let key = env.key_with_certificate("ecc-secp384r1", "k", CERT);
    let size = 129 * 4096 * 3 + 1234; // a three-block level 0 and a partial last block
    let original = env.image("golden", size);
    let signed = sign(&env, &key, &original, &[]);
    for offset in [0, 4095, 4096, 200_000, size - 1] {
        let image = env.path("copy");
        std::fs::copy(&original, &image).unwrap();
        flip(&image, offset);
        let block = (offset / 4096) as u64;
        let (start, end) = (block * 4096, ((block + 1) * 4096).min(size as u64));
        // The whole image: fails and names the block.
        let full = verify(&env, &signed.manifest, &image, &[]).code(1).json();
        assert_eq!(full["first_bad_block"], block, "{full}");
        assert_eq!(full["first_bad_range"], serde_json::json!([start, end]));
        assert!(
            full["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("block {block} "))
        );
        // A range that ends before the block, or starts after it, passes.
        if start > 0 {
            let r = format!("0:{start}");
            verify(&env, &signed.manifest, &image, &["--range", &r]).ok();
        }
        if end < size as u64 {
            let r = format!("{end}:{}", size as u64 - end);
            verify(&env, &signed.manifest, &image, &["--range", &r]).ok();
        }
        // A range that includes it fails and names it.
        let r = format!("{}:2", offset.saturating_sub(1));
        let ranged = verify(&env, &signed.manifest, &image, &["--range", &r])
            .code(1)
            .json();
        assert_eq!(ranged["first_bad_block"], block, "{ranged}");
        let r = format!("0:{size}");
        let whole = verify(&env, &signed.manifest, &image, &["--range", &r])
            .code(1)
            .json();
        assert_eq!(whole["first_bad_block"], block);
    }
}

#[test]
fn a_range_check_reads_only_its_blocks_and_their_proofs() {
    let env = Env::new();
    let key = env.key_with_certificate("rsa-pss-2048", "k", CERT);
    let size = 129 * 4096 * 3;
    let image = env.image("img", size);
    let signed = sign(&env, &key, &image, &[]);
    // Spoil a data block and a level-0 tree block far from the range: the
    // range check never reads them.
    flip(&image, 2 * 129 * 4096 + 10);
    let mut tree = std::fs::read(&signed.tree).unwrap();
    let last = tree.len() - 5;
    tree[last] ^= 1;
    std::fs::write(&signed.tree, &tree).unwrap();
    let v = verify(&env, &signed.manifest, &image, &["--range", "5000:10000"])
        .ok()
        .json();
    assert_eq!(v["blocks_checked"], 3);
    // The full check sees both.
    verify(&env, &signed.manifest, &image, &[]).code(1);
}

#[test]
fn a_tree_file_that_does_not_match_is_reported() {
    let env = Env::new();
    let key = env.key_with_certificate("rsa-pss-2048", "k", CERT);
    let image = env.image("img", 129 * 4096 * 2);
    let signed = sign(&env, &key, &image, &[]);
    let good_tree = std::fs::read(&signed.tree).unwrap();
    // A changed block on the path: the tree does not reach the signed root.
    let mut tree = good_tree.clone();
    tree[10] ^= 1;
    std::fs::write(&signed.tree, &tree).unwrap();
    let v = verify(&env, &signed.manifest, &image, &["--range", "0:100"])
        .code(1)
        .json();
    assert!(v["reason"].as_str().unwrap().contains("tree file"), "{v}");
    // The image itself is fine, so the full check passes.
    verify(&env, &signed.manifest, &image, &[]).ok();
    // A tree of the wrong size is malformed input.
    std::fs::write(&signed.tree, &good_tree[..good_tree.len() - 1]).unwrap();
    let run = env.run(&[
        "verify",
        "--manifest",
        signed.manifest.to_str().unwrap(),
        "--range",
        "0:100",
        image.to_str().unwrap(),
    ]);
    let run = run.code(3);
    assert_eq!(run.stderr.lines().count(), 1);
    // Without a tree, a bad image is still caught, and the message says how
    // to name the block.
    std::fs::remove_file(&signed.tree).unwrap();
    flip(&image, 77);
    let v = verify(&env, &signed.manifest, &image, &[]).code(1).json();
    assert!(v["reason"].as_str().unwrap().contains("--tree"), "{v}");
    verify(&env, &signed.manifest, &image, &["--range", "0:1"]).code(2);
}

#[test]
fn signing_from_stdin_gives_the_same_digests_as_the_file() {
    let env = Env::new();
    let key = env.key_with_certificate("rsa-pss-2048", "k", CERT);
    let image = env.image("img", 1_000_001);
    let from_file = sign(&env, &key, &image, &[]);
    let file_manifest = read_json(&from_file.manifest);
    let file_tree = std::fs::read(&from_file.tree).unwrap();
    let manifest = env.path("stdin.json");
    let tree = env.path("stdin.tree");
    env.run_stdin(
        &[
            "sign",
            "--key",
            &key,
            "--cert-id",
            CERT,
            "--manifest",
            manifest.to_str().unwrap(),
            "--tree",
            tree.to_str().unwrap(),
            "-",
        ],
        &image,
    )
    .ok();
    let stdin_manifest = read_json(&manifest);
    assert_eq!(stdin_manifest["linear"], file_manifest["linear"]);
    assert_eq!(
        stdin_manifest["fsverity"]["digest"],
        file_manifest["fsverity"]["digest"]
    );
    assert_eq!(
        stdin_manifest["image"]["size"],
        file_manifest["image"]["size"]
    );
    assert_eq!(std::fs::read(&tree).unwrap(), file_tree);
    // And verifying from stdin gives the same verdict.
    let run = env.run_stdin(
        &[
            "verify",
            "--json",
            "--manifest",
            manifest.to_str().unwrap(),
            "-",
        ],
        &image,
    );
    assert_eq!(run.ok().json()["verdict"], "valid");
}

#[test]
fn batch_signing_prints_one_result_per_image() {
    let env = Env::new();
    let key = env.key_with_certificate("rsa-pss-2048", "k", CERT);
    let out = env.path("out");
    std::fs::create_dir(&out).unwrap();
    let images: Vec<PathBuf> = (0..4)
        .map(|i| env.image(&format!("img{i}"), 50_000 * i + 3))
        .collect();
    let mut args = vec![
        "--json".to_string(),
        "sign".into(),
        "--key".into(),
        key.clone(),
        "--cert-id".into(),
        CERT.into(),
        "--manifest".into(),
        s(&out),
        "--tree".into(),
        s(&out),
    ];
    args.extend(images.iter().map(|i| s(i)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = env.run(&args).ok();
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), images.len());
    for (line, image) in lines.iter().zip(&images) {
        assert_eq!(line["image"], s(image));
        let name = image.file_name().unwrap().to_str().unwrap();
        let manifest = out.join(format!("{name}.manifest.json"));
        assert_eq!(line["manifest"], s(&manifest));
        verify(&env, &manifest, image, &["--range", "0:1"]).ok();
        verify(&env, &manifest, image, &[]).ok();
        let props = write_props(&env, "p.json", line);
        env.run(&[
            "verify",
            "--props",
            props.to_str().unwrap(),
            image.to_str().unwrap(),
        ])
        .ok();
    }
    // Without manifests, several images: one JSON object per line, named...
    let run = env
        .run(&[
            "sign",
            "--key",
            &key,
            "--cert-id",
            CERT,
            &s(&images[0]),
            &s(&images[1]),
        ])
        .ok();
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    for (line, image) in lines.iter().zip(&images) {
        assert_eq!(line["image"], s(image));
        assert!(line["img_signature"].is_string(), "{line}");
    }
    // ...and env or openstack arguments only as one file per image: in one
    // stream the variables would repeat and the arguments run together.
    let refused = env
        .run(&[
            "sign",
            "--key",
            &key,
            "--cert-id",
            CERT,
            "--format",
            "env",
            &s(&images[0]),
            &s(&images[1]),
        ])
        .code(2);
    assert!(refused.stderr.contains("--out-dir"), "{}", refused.stderr);
    let dir = env.path("props");
    std::fs::create_dir(&dir).unwrap();
    for (format, ext) in [
        ("env", "env"),
        ("openstack", "args"),
        ("json", "props.json"),
    ] {
        let run = env
            .run(&[
                "sign",
                "--key",
                &key,
                "--cert-id",
                CERT,
                "--format",
                format,
                "--out-dir",
                &s(&dir),
                &s(&images[0]),
                &s(&images[1]),
            ])
            .ok();
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        for image in &images[..2] {
            let name = image.file_name().unwrap().to_str().unwrap();
            let file = dir.join(format!("{name}.{ext}"));
            let text = std::fs::read_to_string(&file).unwrap();
            match format {
                "env" => {
                    assert_eq!(text.matches("IMG_SIGNATURE=").count(), 1, "{text}");
                    // A shell takes the file as is.
                    let out = Command::new("bash")
                        .arg("-c")
                        .arg(format!(
                            "set -eu; . {}; printf %s \"$IMG_SIGNATURE_CERTIFICATE_UUID\"",
                            s(&file)
                        ))
                        .output()
                        .unwrap();
                    assert_eq!(String::from_utf8_lossy(&out.stdout), CERT);
                }
                "openstack" => assert_eq!(text.matches("--property").count(), 4, "{text}"),
                _ => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(v["img_signature_certificate_uuid"], CERT);
                }
            }
        }
    }
    // --json: one object per line for one image too.
    let one = env
        .run(&[
            "--json",
            "sign",
            "--key",
            &key,
            "--cert-id",
            CERT,
            &s(&images[0]),
        ])
        .ok();
    assert_eq!(one.stdout.lines().count(), 1, "{}", one.stdout);
}

#[test]
fn a_missing_image_in_a_batch_fails_alone() {
    let env = Env::new();
    let key = env.key_with_certificate("rsa-pss-2048", "k", CERT);
    let a = env.image("a", 1000);
    let b = env.image("b", 2000);
    let run = env
        .run(&[
            "--json",
            "sign",
            "--key",
            &key,
            "--cert-id",
            CERT,
            &s(&a),
            "/nonexistent/img",
            &s(&b),
        ])
        .code(7);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["img_signature"].is_string());
    assert_eq!(lines[1]["verdict"], "error");
    assert_eq!(lines[1]["exit_code"], 7);
    assert!(lines[2]["img_signature"].is_string());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    // Manifest outputs for several images need a directory.
    let m = env.path("m.json");
    env.run(&[
        "sign",
        "--key",
        &key,
        "--cert-id",
        CERT,
        "--manifest",
        &s(&m),
        &s(&a),
        &s(&b),
    ])
    .code(2);
    assert!(!m.exists());
}

#[test]
fn without_the_new_flags_sign_prints_what_it_always_did() {
    let env = Env::new();
    let key = env.key_with_certificate("rsa-pss-2048", "k", CERT);
    let image = env.image("img", 5000);
    let run = env
        .run(&["sign", "--key", &key, "--cert-id", CERT, &s(&image)])
        .ok();
    let props = run.json();
    assert_eq!(props.as_object().unwrap().len(), 4);
    assert!(run.stdout.starts_with("{\n"));
    // Tree options without a manifest are refused, not ignored.
    for extra in [
        ["--salt", "ab"],
        ["--block-size", "1024"],
        ["--tree", "t.tree"],
    ] {
        let mut args = vec!["sign", "--key", &key, "--cert-id", CERT];
        args.extend(extra);
        let img = s(&image);
        args.push(&img);
        env.run(&args).code(2);
    }
}

/// A manifest proves something about an image only if its signer is trusted:
/// `verify --manifest` validates the signer's certificate against the trusted
/// ids exactly as `verify --props` does (it used to ignore them).
#[test]
fn a_manifest_signer_is_validated_against_the_trusted_ids() {
    let env = Env::new();
    let key = env.key_with_certificate("rsa-pss-2048", "manifest-signer", CERT);
    let ca = common::test_ca().dir.join("ca.crt");
    env.run(&["cert", "import", "--id", "test-ca", &s(&ca)])
        .ok();
    let other = env.path("other-ca.crt");
    common::openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &s(&env.path("other-ca.key")),
        "-subj",
        "/CN=Some other CA",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        &s(&other),
    ])
    .ok();
    env.run(&["cert", "import", "--id", "other-ca", &s(&other)])
        .ok();
    let image = env.image("trusted.img", 5 * 4096 + 7);
    let signed = sign(&env, &key, &image, &[]);

    for policy in ["strict", "nova"] {
        let v = verify(
            &env,
            &signed.manifest,
            &image,
            &["--policy", policy, "--trusted-cert-id", "test-ca"],
        )
        .code(0)
        .json();
        assert_eq!(v["certificate_validation"]["valid"], true, "{v}");
        assert_eq!(v["certificate_validation"]["policy"], policy, "{v}");
        let ids: Vec<&str> = v["certificate_validation"]["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [CERT, "test-ca"], "{v}");
        assert_eq!(v["trust"]["trusted_ids"][0], "test-ca", "{v}");

        let v = verify(
            &env,
            &signed.manifest,
            &image,
            &["--policy", policy, "--trusted-cert-id", "other-ca"],
        )
        .code(1)
        .json();
        assert_eq!(v["valid"], false, "{v}");
        assert_eq!(v["certificate_validation"]["valid"], false, "{v}");
        assert!(
            v["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("certificate \"{CERT}\" is not trusted")),
            "{v}"
        );
        // Refused before the image is read: no block was checked.
        assert!(v["blocks_checked"].is_null(), "{v}");
    }
    // The environment variable forces validation as the flag does.
    let run = env
        .command()
        .env("OS_TRUSTED_IMAGE_CERTIFICATE_IDS", "other-ca")
        .args(["verify", "--manifest", &s(&signed.manifest), &s(&image)])
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
    // Without trusted ids the text output says validation did not run.
    let out = env
        .run(&["verify", "--manifest", &s(&signed.manifest), &s(&image)])
        .code(0);
    assert!(
        out.stdout.contains("certificate not validated"),
        "{}",
        out.stdout
    );
    let out = env
        .run(&[
            "verify",
            "--manifest",
            &s(&signed.manifest),
            "--trusted-cert-id",
            "test-ca",
            &s(&image),
        ])
        .code(0);
    assert!(
        out.stdout.contains("certificate chain (strict policy)"),
        "{}",
        out.stdout
    );
    // Trust flags are read, not ignored: a bad CRL is refused.
    let bad_crl = env.path("bad.crl");
    std::fs::write(&bad_crl, "not a CRL").unwrap();
    verify(
        &env,
        &signed.manifest,
        &image,
        &["--trusted-cert-id", "test-ca", "--crl", &s(&bad_crl)],
    )
    .code(3);
}

/// Runs imgseal with stdout and stderr in files; a run still going after
/// 30 s (as in tests/bad_input.rs) is a hang: it is killed and the test
/// fails. Returns the run and how long it took.
fn run_bounded(env: &Env, args: &[&str]) -> (Run, std::time::Duration) {
    use std::time::{Duration, Instant};
    let (out, err) = (env.path(".bounded.stdout"), env.path(".bounded.stderr"));
    let mut child = env
        .command()
        .args(args)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("imgseal runs");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("imgseal {args:?} did not finish within 30 s: a hang");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: read(&out),
        stderr: read(&err),
    };
    (run, start.elapsed())
}

/// One clean line on stderr, with `needle`, and the exit code.
#[track_caller]
fn refused(env: &Env, args: &[&str], code: i32, needle: &str) {
    let (run, _) = run_bounded(env, args);
    let run = run.code(code);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("imgseal: ") && run.stderr.contains(needle),
        "{args:?}: {}",
        run.stderr
    );
}

/// Review finding: the tree file and the `--range` image were opened before
/// their type was checked, so a FIFO blocked the open for good, and the
/// manifest was read whole, so `--manifest /dev/zero` took all the memory.
#[test]
fn a_fifo_or_a_device_is_refused_without_waiting() {
    let env = Env::new();
    let key = env.key_with_certificate("ecc-secp384r1", "k", CERT);
    let image = env.image("img", 3 * 4096 + 5);
    let signed = sign(&env, &key, &image, &[]);
    let (m, img) = (s(&signed.manifest), s(&image));
    let fifo = env.path("fifo");
    mkfifo(&fifo);
    let fifo = s(&fifo);
    // As the tree, with and without a range.
    for extra in [&["--range", "0:1"][..], &[]] {
        let mut args = vec!["verify", "--manifest", &m, "--tree", &fifo];
        args.extend(extra);
        args.push(&img);
        refused(&env, &args, 3, "fifo: not a regular file");
    }
    // As the image of a range check.
    refused(
        &env,
        &["verify", "--manifest", &m, "--range", "0:1", &fifo],
        2,
        "--range needs a regular file",
    );
    // As the manifest.
    refused(
        &env,
        &["verify", "--manifest", &fifo, &img],
        3,
        "fifo: not a regular file",
    );
    // /dev/zero, named through a symbolic link, as the manifest: refused at
    // once, not read until the memory runs out.
    let zero = env.path("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let (run, took) = run_bounded(&env, &["verify", "--manifest", &s(&zero), &img]);
    let run = run.code(3);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    assert!(took.as_secs() < 10, "took {took:?}");
    // A regular file past the limit is refused the same way; the manifest
    // itself still verifies.
    let mut big = std::fs::read(&signed.manifest).unwrap();
    big.resize((1 << 20) + 1, b' ');
    let padded = env.path("big.json");
    std::fs::write(&padded, &big).unwrap();
    refused(
        &env,
        &["verify", "--manifest", &s(&padded), &img],
        3,
        "more than 1 MiB",
    );
    verify(&env, &signed.manifest, &image, &[]).ok();
}

/// The tree the manifest names beside it is not taken through a symbolic
/// link (the manifest must not steer reads elsewhere), nor from a FIFO.
#[test]
fn the_tree_beside_the_manifest_is_not_a_symlink_or_a_fifo() {
    let env = Env::new();
    let key = env.key_with_certificate("ecc-secp384r1", "k", CERT);
    let image = env.image("img", 3 * 4096 + 5);
    let signed = sign(&env, &key, &image, &[]);
    verify(&env, &signed.manifest, &image, &["--range", "0:1"]).ok();
    let elsewhere = env.path("elsewhere.tree");
    std::fs::rename(&signed.tree, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &signed.tree).unwrap();
    let (m, img) = (s(&signed.manifest), s(&image));
    let args = ["verify", "--manifest", &m, "--range", "0:1", &img];
    refused(&env, &args, 2, "--range needs the tree file");
    // Named on the command line, the same link is the user's choice.
    let t = s(&signed.tree);
    let (run, _) = run_bounded(&env, &[&args[..3], &["--tree", &t], &args[3..]].concat());
    run.ok();
    std::fs::remove_file(&signed.tree).unwrap();
    mkfifo(&signed.tree);
    refused(&env, &args, 2, "--range needs the tree file");
}

/// A file name holding a newline cannot put a command on a line of its own:
/// a batch's stream is JSON (the newline escaped), and env files hold only
/// the four variables, whatever the image is called.
#[test]
fn batch_output_cannot_be_broken_out_of_by_a_file_name() {
    let env = Env::new();
    let key = env.key_with_certificate("ecc-secp384r1", "k", CERT);
    let plain = env.image("plain.img", 4_000);
    let crafted = env.path("x\ntouch pwned");
    std::fs::copy(&plain, &crafted).unwrap();
    let run = env
        .run(&[
            "sign",
            "--key",
            &key,
            "--cert-id",
            CERT,
            &s(&plain),
            &s(&crafted),
        ])
        .ok();
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(lines[1]["image"], s(&crafted));
    let dir = env.path("out");
    std::fs::create_dir(&dir).unwrap();
    env.run(&[
        "sign",
        "--key",
        &key,
        "--cert-id",
        CERT,
        "--format",
        "env",
        "--out-dir",
        &s(&dir),
        &s(&plain),
        &s(&crafted),
    ])
    .ok();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            assert!(
                line.starts_with("IMG_SIGNATURE"),
                "{line:?} in {}",
                file.display()
            );
        }
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(". '{}'", file.display()))
            .current_dir(env.work.path())
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    assert!(!env.work.path().join("pwned").exists());
}
