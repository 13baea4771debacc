//! Trust anchors sealed in a real swtpm (one per test): the record read back
//! byte for byte with tpm2_nvread, rollbacks and tampering refused, the docs'
//! chain verified from the sealed set, write locks until a TPM reset, device
//! faults, and seals interrupted by a killed swtpm.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::docs_chain::*;
use common::tpm::TestTpm;
use common::*;
use imgseal::anchors::{self, AnchorSet, AnchorStore, Bundle, MISMATCH, SealStep};
use imgseal::x509::Certificate;
use imgseal_tpm::{NvAccess, RECORD_INDEX, Tpm};
use sha2::{Digest, Sha256};

use common::pki::anchor_cert_file as cert_file;

fn der_of(pem: &Path) -> Vec<u8> {
    Certificate::parse(&std::fs::read(pem).unwrap(), "test")
        .unwrap()
        .der
}

fn bundle_path(env: &Env) -> PathBuf {
    env.home.path().join("anchors/bundle")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The record exactly as docs/anchors.md lays it out, built independently of imgseal.
fn documented_record(bundle: &[u8], version: u64, count: u32, inline: bool) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"IMGSEALR");
    r.extend_from_slice(&[0, 1, inline as u8, 0]);
    r.extend_from_slice(&version.to_be_bytes());
    r.extend_from_slice(&count.to_be_bytes());
    r.extend_from_slice(&(bundle.len() as u32).to_be_bytes());
    r.extend_from_slice(&Sha256::digest(bundle));
    r.resize(256, 0);
    r
}

#[test]
fn seal_writes_the_documented_record_and_tpm2_nvread_reads_it_back() {
    let env = Env::new();
    let tpm = TestTpm::start();
    env.key_with_certificate("ecc-secp384r1", "signer", "signer-id");
    let root = cert_file(env.work.path(), "root");
    let out = env
        .tpm_run(
            &tpm,
            &[
                "--json",
                "anchors",
                "seal",
                "--cert-id",
                "signer-id",
                "--cert",
                s(&root),
            ],
        )
        .ok()
        .json();
    let version = out["version"].as_u64().unwrap();
    let said = hex::decode(out["record"].as_str().unwrap()).unwrap();
    assert_eq!(out["ids"], serde_json::json!(["root", "signer-id"]));

    // The peer reads the record with the index's empty authorization.
    let rec_file = tpm.path("record.bin");
    tpm.tool_ok(
        "tpm2_nvread",
        &[
            "-C",
            "0x0181a000",
            "0x0181a000",
            "-s",
            "256",
            "-o",
            s(&rec_file),
        ],
    );
    let read_back = std::fs::read(&rec_file).unwrap();
    assert_eq!(
        read_back, said,
        "the TPM holds the bytes imgseal says it wrote"
    );

    // The bundle, byte by byte as documented: ids sorted, DER as issued.
    let bundle = std::fs::read(bundle_path(&env)).unwrap();
    assert_eq!(&bundle[..8], b"IMGSEALB");
    assert_eq!(&bundle[8..10], &[0, 1]);
    assert_eq!(&bundle[10..18], &version.to_be_bytes());
    assert_eq!(&bundle[18..22], &[0, 0, 0, 2]);
    let signer_pem = env.path("signer.crt");
    let mut expected = bundle[..22].to_vec();
    for (id, der) in [("root", der_of(&root)), ("signer-id", der_of(&signer_pem))] {
        expected.extend_from_slice(&(id.len() as u16).to_be_bytes());
        expected.extend_from_slice(id.as_bytes());
        expected.extend_from_slice(&(der.len() as u32).to_be_bytes());
        expected.extend_from_slice(&der);
    }
    assert_eq!(bundle, expected);
    let inline = bundle.len() <= 2048;
    assert_eq!(read_back, documented_record(&bundle, version, 2, inline));
    assert_eq!(out["digest"], hex::encode(Sha256::digest(&bundle)));

    // The version is the counter's value.
    let counter = tpm.tool_ok("tpm2_nvread", &["-C", "0x0181a001", "0x0181a001"]);
    assert_eq!(counter, version.to_be_bytes());
    // The inline copy is the bundle.
    if inline {
        let len = bundle.len().to_string();
        let data = tpm.tool_ok(
            "tpm2_nvread",
            &["-C", "0x0181a002", "0x0181a002", "-s", &len],
        );
        assert_eq!(data, bundle);
    }
    // The documented attributes, as tpm2-tools spells them.
    let public = String::from_utf8(tpm.tool_ok("tpm2_nvreadpublic", &["0x0181a000"])).unwrap();
    for attr in [
        "ownerwrite",
        "ownerread",
        "authread",
        "no_da",
        "write_stclear",
        "writeall",
        "written",
    ] {
        assert!(public.contains(attr), "{attr} missing: {public}");
    }

    let shown = env
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .ok()
        .json();
    assert_eq!(shown["verdict"], "intact");
    assert_eq!(shown["record"]["bytes"], hex::encode(&read_back));
    assert_eq!(shown["counter"]["state"], "current");
    assert_eq!(shown["anchors"][1]["id"], "signer-id");
}

#[test]
fn an_older_bundle_a_grown_bundle_and_an_older_record_are_refused() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let (a, b, c) = (
        cert_file(env.work.path(), "a"),
        cert_file(env.work.path(), "b"),
        cert_file(env.work.path(), "c"),
    );
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a)])
        .ok();
    let bundle_v1 = std::fs::read(bundle_path(&env)).unwrap();
    let record_v1 = tpm.path("record-v1.bin");
    tpm.tool_ok(
        "tpm2_nvread",
        &[
            "-C",
            "0x0181a000",
            "0x0181a000",
            "-s",
            "256",
            "-o",
            s(&record_v1),
        ],
    );
    let out = env.tpm_run(&tpm, &["anchors", "add", "--cert", s(&b)]).ok();
    assert!(out.stdout.contains("2 trust anchors"), "{}", out.stdout);
    let bundle_v2 = std::fs::read(bundle_path(&env)).unwrap();
    env.tpm_run(&tpm, &["anchors", "show"]).ok();

    let refused = |what: &str, needle: &str| {
        let out = env.tpm_run(&tpm, &["anchors", "show"]).code(1);
        assert!(out.stdout.contains(MISMATCH), "{what}: {}", out.stdout);
        assert!(out.stdout.contains(needle), "{what}: {}", out.stdout);
        // Writes start from the sealed set, so they are refused too.
        let out = env
            .tpm_run(&tpm, &["anchors", "add", "--cert", s(&c)])
            .code(1);
        assert!(out.stderr.contains(MISMATCH), "{what}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    };

    // 1. The older bundle put back on disk (the TPM's inline copy does not paper over it).
    std::fs::write(bundle_path(&env), &bundle_v1).unwrap();
    refused("older bundle", "holds version");

    // 2. The current bundle with one certificate added, same version.
    let mut grown = Bundle::decode(&bundle_v2, "v2").unwrap();
    grown
        .anchors
        .insert(
            "c",
            Certificate::parse(&std::fs::read(&c).unwrap(), "c").unwrap(),
        )
        .unwrap();
    std::fs::write(bundle_path(&env), grown.encode()).unwrap();
    refused("grown bundle", "holds version");
    std::fs::write(bundle_path(&env), &bundle_v2).unwrap();
    env.tpm_run(&tpm, &["anchors", "show"]).ok();

    // 3. The older record written back by someone with owner authorization,
    //    with or without the older bundle: the counter is ahead of it.
    tpm.tool_ok(
        "tpm2_nvwrite",
        &["-C", "o", "-i", s(&record_v1), "0x0181a000"],
    );
    refused("older record", "an older record was written back");
    std::fs::write(bundle_path(&env), &bundle_v1).unwrap();
    refused(
        "older record and bundle",
        "an older record was written back",
    );

    // Verification refuses the same way (exit 1, one line).
    let props = write_props(&env, "p.json", &serde_json::json!({}));
    let out = env
        .tpm_run(
            &tpm,
            &[
                "verify",
                "--props",
                s(&props),
                "--anchors",
                "tpm",
                "--cert-dir",
                s(env.work.path()),
                "img",
            ],
        )
        .code(1);
    assert!(out.stderr.contains(MISMATCH), "{}", out.stderr);

    // A new seal is the repair.
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a), "--cert", s(&c)])
        .ok();
    let shown = env
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .ok()
        .json();
    assert_eq!(shown["anchors"].as_array().unwrap().len(), 2);
}

#[test]
fn a_missing_bundle_falls_back_to_the_inline_copy_only_when_there_is_one() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let a = cert_file(env.work.path(), "a");
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a)])
        .ok();
    std::fs::remove_file(bundle_path(&env)).unwrap();
    let shown = env
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .ok()
        .json();
    assert_eq!(shown["bundle"]["source"], "TPM NV 0x0181a002");
    assert_eq!(shown["anchors"][0]["id"], "a");
    // Too large to be kept inline: a missing bundle is then "not found".
    let many: Vec<PathBuf> = (0..6)
        .map(|i| cert_file(env.work.path(), &format!("m{i}")))
        .collect();
    let mut args = vec!["--json", "anchors", "seal"];
    for p in &many {
        args.extend(["--cert", s(p)]);
    }
    let out = env.tpm_run(&tpm, &args).ok().json();
    assert_eq!(out["inline"], false, "{out}");
    std::fs::remove_file(bundle_path(&env)).unwrap();
    let out = env.tpm_run(&tpm, &["anchors", "show"]).code(4);
    assert!(
        out.stderr.contains("the sealed anchor bundle is missing"),
        "{}",
        out.stderr
    );
}

/// Signs the docs' cirros image with the docs' client key (openssl), as in tests/docs_example.rs.
fn docs_setup(env: &Env) -> (PathBuf, PathBuf, PathBuf) {
    docs_signed_with_openssl(env)
}

#[test]
fn the_docs_chain_sealed_as_anchors_verifies_without_trusted_ids() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let (dir, props, image) = docs_setup(&env);
    let km = dir.join("km");
    let verify = |policy: &str| {
        env.tpm_run(
            &tpm,
            &[
                "--json",
                "verify",
                "--props",
                s(&props),
                "--cert-dir",
                s(&km),
                "--policy",
                policy,
                s(&image),
            ],
        )
    };

    // Nova needs the whole chain trusted: seal the three CA certificates.
    let all = format!("{CA},{INT_A},{INT_B}");
    env.tpm_run(
        &tpm,
        &["anchors", "seal", "--cert-dir", s(&km), "--cert-id", &all],
    )
    .ok();
    for policy in ["nova", "strict"] {
        let out = verify(policy).ok().json();
        assert_eq!(out["verdict"], "valid", "{policy}: {out}");
        assert_eq!(out["trust"]["source"]["kind"], "tpm", "{out}");
        assert_eq!(out["anchors"]["certificates"], 3, "{out}");
        assert_eq!(out["certificate_validation"]["valid"], true);
    }
    let text = env
        .tpm_run(
            &tpm,
            &[
                "verify",
                "--props",
                s(&props),
                "--cert-dir",
                s(&km),
                s(&image),
            ],
        )
        .ok()
        .stdout;
    assert!(
        text.contains("trusted ids from the TPM-sealed anchors"),
        "{text}"
    );
    // The trusted certificates come from the sealed bundle, not the key
    // manager: replacing the root there changes nothing.
    let impostor = cert_file(env.work.path(), "impostor");
    std::fs::copy(&impostor, km.join(format!("{CA}.pem"))).unwrap();
    assert_eq!(verify("nova").ok().json()["verdict"], "valid");
    std::fs::copy(dir.join("cert_ca.pem"), km.join(format!("{CA}.pem"))).unwrap();
    // `cert verify` takes them too.
    let out = env
        .tpm_run(
            &tpm,
            &[
                "cert",
                "verify",
                CLIENT,
                "--cert-dir",
                s(&km),
                "--anchors",
                "tpm",
                "--policy",
                "nova",
            ],
        )
        .ok();
    assert!(
        out.stdout
            .contains("trusted ids from the TPM-sealed anchors"),
        "{}",
        out.stdout
    );
    // Ids given explicitly still win over the automatic use.
    let out = env
        .tpm_run(
            &tpm,
            &[
                "--json",
                "verify",
                "--props",
                s(&props),
                "--cert-dir",
                s(&km),
                "--trusted-cert-id",
                CA,
                s(&image),
            ],
        )
        .ok()
        .json();
    assert_eq!(out["trust"]["source"]["kind"], "command_line");
    assert!(out.get("anchors").is_none(), "{out}");
    // Both at once is a usage error.
    env.tpm_run(
        &tpm,
        &[
            "verify",
            "--props",
            s(&props),
            "--cert-dir",
            s(&km),
            "--trusted-cert-id",
            CA,
            "--anchors",
            "tpm",
            s(&image),
        ],
    )
    .code(2);

    // Without the root, Nova cannot build the chain (cursive's message names
    // the last certificate it reached).
    env.tpm_run(&tpm, &["anchors", "remove", CA]).ok();
    let out = verify("nova").code(1).json();
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("Image signature certificate validation failed"),
        "{out}"
    );
    assert_eq!(
        out["trust"]["trusted_ids"],
        serde_json::json!([INT_A, INT_B])
    );

    // Strict builds from the root through the store's intermediates: seal only
    // the root, then remove it, so that no intermediate stays trusted.
    env.tpm_run(
        &tpm,
        &["anchors", "seal", "--cert-dir", s(&km), "--cert-id", CA],
    )
    .ok();
    assert_eq!(verify("strict").ok().json()["verdict"], "valid");
    env.tpm_run(&tpm, &["anchors", "remove", CA]).ok();
    let shown = env.tpm_run(&tpm, &["anchors", "show"]).ok();
    assert!(
        shown.stdout.contains("none (nothing is trusted)"),
        "{}",
        shown.stdout
    );
    let out = verify("strict").code(1).json();
    assert_eq!(out["trust"]["source"]["kind"], "tpm");
    assert!(
        out["reason"].as_str().unwrap().contains("not trusted"),
        "{out}"
    );
    let out = verify("nova").code(1).json();
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("Certificate chain building failed"),
        "{out}"
    );
    // --anchors off: the TPM is not consulted and nothing is validated.
    let out = env
        .tpm_run(
            &tpm,
            &[
                "--json",
                "verify",
                "--props",
                s(&props),
                "--cert-dir",
                s(&km),
                "--anchors",
                "off",
                s(&image),
            ],
        )
        .ok()
        .json();
    assert!(
        out["trust"].is_null() && out["certificate_validation"].is_null(),
        "{out}"
    );
}

#[test]
fn lock_blocks_writes_until_a_tpm_reset_and_locks_again() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let (a, b) = (
        cert_file(env.work.path(), "a"),
        cert_file(env.work.path(), "b"),
    );
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a)])
        .ok();
    let before = std::fs::read(bundle_path(&env)).unwrap();
    env.tpm_run(&tpm, &["anchors", "lock"]).ok();
    let shown = env
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .ok()
        .json();
    assert_eq!(shown["locked"], true);
    for args in [
        vec!["anchors", "seal", "--cert", s(&b)],
        vec!["anchors", "add", "--cert", s(&b)],
        vec!["anchors", "remove", "a"],
        vec!["anchors", "clear"],
    ] {
        let out = env.tpm_run(&tpm, &args).code(5);
        assert!(
            out.stderr.contains("write-locked until the next TPM reset"),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    // Nothing changed, not even a staged file; reads and verification go on.
    assert_eq!(std::fs::read(bundle_path(&env)).unwrap(), before);
    assert!(!env.home.path().join("anchors/bundle.pending").exists());
    // tpm2-tools are refused by the TPM itself.
    let data = tpm.path("x.bin");
    std::fs::write(&data, [0u8; 256]).unwrap();
    let out = tpm.tool("tpm2_nvwrite", &["-C", "o", "-i", s(&data), "0x0181a000"]);
    assert!(!out.status.success());
    // Locking again is harmless.
    env.tpm_run(&tpm, &["anchors", "lock"]).ok();

    tpm.reset_with_tools();
    let shown = env
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .ok()
        .json();
    assert_eq!(shown["locked"], false);
    env.tpm_run(&tpm, &["anchors", "add", "--cert", s(&b)]).ok();
    env.tpm_run(&tpm, &["anchors", "lock"]).ok();
    env.tpm_run(&tpm, &["anchors", "remove", "a"]).code(5);
    let shown = env
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .ok()
        .json();
    assert_eq!(shown["locked"], true);
    assert_eq!(shown["anchors"].as_array().unwrap().len(), 2);
}

/// The record index defined first by someone else (the usual empty owner
/// auth) with imgseal's attributes, size and policy but another nameAlg: its
/// name would never match what verifiers compute, so it is refused up front.
#[test]
fn a_record_index_with_another_name_algorithm_is_refused_clearly() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let a = cert_file(env.work.path(), "a");
    for (alg, shown) in [("sha1", "SHA-1"), ("sha384", "SHA-384")] {
        let _ = tpm.tool("tpm2_nvundefine", &["-C", "o", "0x0181a000"]);
        tpm.tool_ok(
            "tpm2_nvdefine",
            &[
                "0x0181a000",
                "-C",
                "o",
                "-g",
                alg,
                "-s",
                "256",
                "-a",
                "ownerwrite|ownerread|authread|no_da|write_stclear|writeall",
            ],
        );
        let out = env
            .tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a)])
            .code(5);
        assert!(out.stderr.contains("0x0181a000"), "{}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("nameAlg {shown} (expected SHA-256")),
            "{}",
            out.stderr
        );
        let out = env.tpm_run(&tpm, &["anchors", "show"]).code(5);
        assert!(
            out.stderr.contains("the anchor record is not imgseal's"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!("nameAlg {shown}")),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn missing_indices_wrong_attributes_owner_auth_and_lockout_give_clear_errors() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let a = cert_file(env.work.path(), "a");

    // Nothing sealed: not found (4), one line.
    let out = env.tpm_run(&tpm, &["anchors", "show"]).code(4);
    assert!(
        out.stderr
            .contains("no trust anchors are sealed in this TPM"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);
    let props = write_props(&env, "p.json", &serde_json::json!({}));
    let out = env
        .tpm_run(
            &tpm,
            &["verify", "--anchors", "tpm", "--props", s(&props), "img"],
        )
        .code(4);
    assert!(
        out.stderr
            .contains("no trust anchors are sealed in this TPM"),
        "{}",
        out.stderr
    );

    // An owner password: without it, writes fail with an auth error (6) that
    // never shows the secret; with it (file or environment), they work.
    let secret = "s3cret-owner-pw";
    tpm.tool_ok("tpm2_changeauth", &["-c", "owner", secret]);
    let out = env
        .tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a)])
        .code(6);
    assert!(out.stderr.contains("owner authorization"), "{}", out.stderr);
    let auth = env.path("owner.auth");
    std::fs::write(&auth, format!("{secret}\n")).unwrap();
    let out = env
        .tpm_run(
            &tpm,
            &[
                "anchors",
                "seal",
                "--owner-auth-file",
                s(&auth),
                "--cert",
                s(&a),
            ],
        )
        .ok();
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    std::fs::write(&auth, "wrong").unwrap();
    let out = env
        .tpm_run(
            &tpm,
            &["anchors", "--owner-auth-file", s(&auth), "remove", "a"],
        )
        .code(6);
    assert!(
        !out.stderr.contains(secret) && !out.stderr.contains("wrong\""),
        "{}",
        out.stderr
    );
    let hex_secret = format!("hex:{}", hex::encode(secret));
    let out = Run::from_output(
        env.command()
            .env("IMGSEAL_TPM_OWNER_AUTH", &hex_secret)
            .args([
                "--tcti",
                &tpm.tcti(),
                "anchors",
                "add",
                "--cert",
                s(&cert_file(env.work.path(), "b")),
            ])
            .output()
            .unwrap(),
    )
    .ok();
    assert!(!out.stdout.contains(secret));
    // Reads need no secret.
    env.tpm_run(&tpm, &["anchors", "show"]).ok();

    // Dictionary-attack lockout: the anchors are no_da, so a locked-out TPM
    // still serves them and the owner still writes them.
    let lockout = env.path("lockout.auth");
    tpm.tool_ok(
        "tpm2_dictionarylockout",
        &["-s", "-n", "1", "-t", "1000", "-l", "1000"],
    );
    tpm.tool_ok(
        "tpm2_nvdefine",
        &[
            "0x0181a010",
            "-C",
            "o",
            "-P",
            secret,
            "-s",
            "8",
            "-a",
            "authread|authwrite",
            "-p",
            "pin",
        ],
    );
    assert!(
        !tpm.tool(
            "tpm2_nvread",
            &["0x0181a010", "-C", "0x0181a010", "-P", "nope", "-s", "8"]
        )
        .status
        .success()
    );
    let locked_out =
        String::from_utf8(tpm.tool_ok("tpm2_getcap", &["properties-variable"])).unwrap();
    assert!(
        locked_out.contains("inLockout:                 1"),
        "{locked_out}"
    );
    let shown = env
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .ok()
        .json();
    assert_eq!(shown["verdict"], "intact");
    std::fs::write(&lockout, secret).unwrap();
    env.tpm_run(
        &tpm,
        &["anchors", "remove", "b", "--owner-auth-file", s(&lockout)],
    )
    .ok();

    // The record index redefined with other attributes: refused as not imgseal's (5).
    // (The indices are platform-created: the owner cannot undefine them.)
    tpm.tool_ok("tpm2_nvundefine", &["-C", "p", "0x0181a000"]);
    tpm.tool_ok(
        "tpm2_nvdefine",
        &[
            "0x0181a000",
            "-C",
            "o",
            "-P",
            secret,
            "-s",
            "256",
            "-a",
            "ownerwrite|ownerread|authread|authwrite",
        ],
    );
    let out = env.tpm_run(&tpm, &["anchors", "show"]).code(5);
    assert!(
        out.stderr.contains("the anchor record is not imgseal's"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("expected"), "{}", out.stderr);
    let out = env
        .tpm_run(
            &tpm,
            &[
                "anchors",
                "seal",
                "--owner-auth-file",
                s(&lockout),
                "--cert",
                s(&a),
            ],
        )
        .code(1);
    // The owner's record beside the platform's counter: a recreated index.
    assert!(out.stderr.contains("0x0181a000"), "{}", out.stderr);
    assert!(
        out.stderr.contains("deleted and defined again"),
        "{}",
        out.stderr
    );
    // clear removes what is there (it checks nothing but the locks), and a
    // new seal defines the documented indices again.
    env.tpm_run(
        &tpm,
        &["anchors", "clear", "--owner-auth-file", s(&lockout)],
    )
    .ok();
    assert!(!env.home.path().join("anchors").exists());
    env.tpm_run(&tpm, &["anchors", "show"]).code(4);
    env.tpm_run(
        &tpm,
        &[
            "anchors",
            "seal",
            "--owner-auth-file",
            s(&lockout),
            "--cert",
            s(&a),
        ],
    )
    .ok();

    // The counter undefined behind imgseal's back: the version proves nothing.
    tpm.tool_ok("tpm2_nvundefine", &["-C", "p", "0x0181a001"]);
    let out = env.tpm_run(&tpm, &["anchors", "show"]).code(1);
    assert!(
        out.stderr
            .contains("the version counter NV 0x0181a001 is missing"),
        "{}",
        out.stderr
    );

    // An unreachable TPM: a device error naming it, promptly.
    let dead = format!("swtpm:host=127.0.0.1,port={}", tpm.swtpm.port());
    drop(tpm);
    let out = env.run(&["--tcti", &dead, "anchors", "show"]).code(5);
    assert!(out.stderr.contains(&dead), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    // A TCTI that cannot be parsed is a usage error.
    env.run(&["--tcti", "swtpm:path=/x", "anchors", "show"])
        .code(2);
}

fn set_of(dir: &Path, ids: &[&str]) -> AnchorSet {
    let mut set = AnchorSet::new();
    for id in ids {
        let path = cert_file(dir, id);
        set.insert(
            id,
            Certificate::parse(&std::fs::read(path).unwrap(), id).unwrap(),
        )
        .unwrap();
    }
    set
}

/// How a seal is interrupted.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// swtpm is killed (SIGKILL): the next TPM command fails.
    TpmDies,
    /// imgseal itself stops (a panic unwinds out of the seal): no further
    /// step runs, not even the file renames.
    ProcessDies,
}

#[test]
fn a_seal_interrupted_after_any_step_leaves_the_old_set_or_the_new_one() {
    let work = tempfile::tempdir().unwrap();
    let old = set_of(work.path(), &["old"]);
    let new = set_of(work.path(), &["new-1", "new-2"]);
    let steps = [
        SealStep::Prepared,
        SealStep::DataWritten,
        SealStep::BundleStaged,
        SealStep::RecordWritten,
        SealStep::BundleInstalled,
        SealStep::CounterIncremented,
    ];
    for crash in [Crash::TpmDies, Crash::ProcessDies] {
        for stop in steps {
            let case = format!("{crash:?} after {stop:?}");
            let mut t = TestTpm::start();
            let store = AnchorStore {
                dir: work.path().join(format!("home-{crash:?}-{stop:?}/anchors")),
            };
            let mut tpm = Tpm::open(&t.swtpm.tcti()).unwrap();
            let first = anchors::seal(
                &mut tpm,
                &store,
                &old,
                anchors::DeleteProtection::Auto,
                &mut |_| {},
            )
            .unwrap();

            let mut seen = Vec::new();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                anchors::seal(
                    &mut tpm,
                    &store,
                    &new,
                    anchors::DeleteProtection::Auto,
                    &mut |step| {
                        seen.push(step);
                        if step == stop {
                            match crash {
                                Crash::TpmDies => t.swtpm.kill(),
                                Crash::ProcessDies => panic!("simulated crash after {step:?}"),
                            }
                        }
                    },
                )
            }));
            assert!(seen.contains(&stop), "{case}: reached only {seen:?}");
            match (crash, result) {
                (Crash::ProcessDies, Err(_)) => {}
                (Crash::TpmDies, Ok(r)) if stop == SealStep::CounterIncremented => {
                    r.unwrap();
                }
                (Crash::TpmDies, Ok(Err(e))) => {
                    assert_eq!(e.kind(), imgseal::ErrorKind::Device, "{case}: {e}");
                }
                (_, other) => panic!(
                    "{case}: unexpected outcome {:?}",
                    other.map(|r| r.map(|_| ()))
                ),
            }
            if matches!(crash, Crash::TpmDies) {
                t.restart();
            }
            let mut tpm = Tpm::open(&t.swtpm.tcti()).unwrap();
            let loaded = anchors::load(&mut tpm, &store)
                .unwrap_or_else(|e| panic!("{case}: no whole set after the crash: {e}"));
            let committed = stop >= SealStep::RecordWritten;
            let want = if committed { &new } else { &old };
            assert_eq!(loaded.bundle.anchors.ids(), want.ids(), "{case}");
            assert_eq!(
                loaded.bundle.version,
                if committed {
                    first.version + 1
                } else {
                    first.version
                },
                "{case}"
            );
            // A crash right after the commit leaves the new bundle staged, and
            // verification takes it from there.
            if matches!(crash, Crash::ProcessDies) && stop == SealStep::RecordWritten {
                assert_eq!(loaded.source, anchors::BundleSource::Pending, "{case}");
            }
            // The record is exactly one ahead of the counter while a committed
            // seal is unfinished, and the next seal completes it first.
            let pending = committed && stop < SealStep::CounterIncremented;
            assert_eq!(
                loaded.tpm.counter_state,
                if pending {
                    anchors::CounterState::SealPending
                } else {
                    anchors::CounterState::Current
                },
                "{case}"
            );
            let next = anchors::seal(
                &mut tpm,
                &store,
                &old,
                anchors::DeleteProtection::Auto,
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(next.completed_interrupted_seal, pending, "{case}");
            let loaded = anchors::load(&mut tpm, &store).unwrap();
            assert_eq!(
                loaded.tpm.counter_state,
                anchors::CounterState::Current,
                "{case}"
            );
            assert_eq!(loaded.bundle.version, next.version, "{case}");
            assert_eq!(loaded.source, anchors::BundleSource::Disk, "{case}");
            assert!(!store.pending_path().exists(), "{case}");
            // The record is whole and readable by anyone.
            let record = tpm.nv_read_all(RECORD_INDEX, &NvAccess::public()).unwrap();
            assert_eq!(record, next.record, "{case}");
        }
    }
}

#[test]
fn swtpm_killed_while_the_cli_seals_leaves_a_whole_set() {
    let env = Env::new();
    let mut tpm = TestTpm::start();
    let sets: Vec<PathBuf> = (0..3)
        .map(|i| cert_file(env.work.path(), &format!("c{i}")))
        .collect();
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&sets[0])])
        .ok();
    let mut previous = vec!["c0".to_string()];
    for round in 0..5u64 {
        let next = format!("c{}", (round + 1) % 3);
        let child = env
            .command()
            .args(["--tcti", &tpm.tcti(), "anchors", "seal", "--cert"])
            .arg(&sets[((round + 1) % 3) as usize])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Pull the plug at a different moment each round (behaviour, not timing,
        // is asserted: any moment must leave a whole set).
        std::thread::sleep(Duration::from_millis(2 + 12 * round));
        tpm.swtpm.kill();
        let out = child.wait_with_output().unwrap();
        let code = out.status.code().unwrap();
        eprintln!(
            "round {round}: exit {code}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        assert!(
            code == 0 || code == 5,
            "round {round}: exit {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tpm.restart();
        let shown = env
            .tpm_run(&tpm, &["--json", "anchors", "show"])
            .ok()
            .json();
        let ids: Vec<String> = shown["anchors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        assert!(
            ids == previous || ids == std::slice::from_ref(&next),
            "round {round}: {ids:?}"
        );
        if code == 0 {
            assert_eq!(
                ids,
                std::slice::from_ref(&next),
                "round {round}: the seal reported success"
            );
        }
        previous = ids;
    }
}

#[test]
fn verify_never_touches_a_tpm_for_a_home_without_anchors_and_the_default_is_the_embedded_swtpm() {
    common::tpm::quiet();
    let env = Env::new();
    let uri = env.key_with_certificate("ecc-secp384r1", "k", "k-id");
    let image = env.image("img", 4096);
    let props = env
        .run(&["sign", "--key", &uri, "--cert-id", "k-id", s(&image)])
        .ok()
        .json();
    let props = write_props(&env, "p.json", &props);
    // TPM2TOOLS_TCTI alone does not make verify use a TPM: no anchors were sealed here.
    let out = Run::from_output(
        env.command()
            .env("TPM2TOOLS_TCTI", "swtpm:host=127.0.0.1,port=9")
            .args(["--json", "verify", "--props", s(&props), s(&image)])
            .output()
            .unwrap(),
    )
    .ok();
    assert!(out.json()["trust"].is_null(), "{}", out.stdout);
    assert!(
        !env.home.path().join("swtpm").exists(),
        "no swtpm was started"
    );

    // The embedded swtpm under $IMGSEAL_HOME/swtpm, started on demand.
    struct StopDaemon(PathBuf);
    impl Drop for StopDaemon {
        fn drop(&mut self) {
            let _ = imgseal_tpm::stop_daemon(&self.0);
        }
    }
    let _stop = StopDaemon(env.home.path().join("swtpm"));
    let ca = test_ca().dir.join("ca.crt");
    let out = env
        .run(&["--json", "anchors", "seal", "--cert", s(&ca)])
        .ok()
        .json();
    assert!(
        out["tcti"]
            .as_str()
            .unwrap()
            .starts_with("swtpm:host=127.0.0.1"),
        "{out}"
    );
    assert!(imgseal_tpm::swtpm::daemon_pid(&env.home.path().join("swtpm")).is_some());
    // Now the anchors are used automatically (no --tcti, no trusted ids).
    let out = env
        .run(&["--json", "verify", "--props", s(&props), s(&image)])
        .ok()
        .json();
    assert_eq!(out["trust"]["source"]["kind"], "tpm", "{out}");
    assert_eq!(out["certificate_validation"]["valid"], true, "{out}");
    // In text, the verdict comes first and the anchors it rests on after.
    let text = env
        .run(&["verify", "--quiet", "--props", s(&props), s(&image)])
        .ok()
        .stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("valid: "), "{text}");
    assert!(
        lines[1..]
            .iter()
            .any(|l| l.starts_with("trust anchors: version")),
        "{text}"
    );
    // The environment's TCTI is taken over the default (here: a dead one).
    let out = Run::from_output(
        env.command()
            .env("TPM2TOOLS_TCTI", "swtpm:host=127.0.0.1,port=9")
            .args(["anchors", "show"])
            .output()
            .unwrap(),
    )
    .code(5);
    assert!(
        out.stderr.contains("port=9") && out.stderr.contains("$TPM2TOOLS_TCTI"),
        "{}",
        out.stderr
    );
    let out = Run::from_output(
        env.command()
            .env("TCTI", "swtpm:host=127.0.0.1,port=9")
            .args(["anchors", "show"])
            .output()
            .unwrap(),
    )
    .code(5);
    assert!(out.stderr.contains("$TCTI"), "{}", out.stderr);
}

/// `verify --manifest` takes the sealed anchors as `verify --props` does: a
/// manifest whose signer chains to a sealed certificate is valid, and once
/// the sealed set no longer holds that certificate it is refused.
#[test]
fn a_manifest_signer_is_validated_against_the_sealed_anchors() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let key = env.key_with_certificate("rsa-pss-2048", "manifest-signer", "manifest-cert");
    let km = env.path("km");
    std::fs::create_dir(&km).unwrap();
    std::fs::copy(test_ca().dir.join("ca.crt"), km.join("test-ca.pem")).unwrap();
    cert_file(&km, "other-ca");
    let image = env.image("sealed.img", 3 * 4096);
    let manifest = env.path("sealed.manifest");
    env.run(&[
        "sign",
        "--key",
        &key,
        "--cert-id",
        "manifest-cert",
        "--manifest",
        s(&manifest),
        s(&image),
    ])
    .ok();
    let verify = || {
        env.tpm_run(
            &tpm,
            &["--json", "verify", "--manifest", s(&manifest), s(&image)],
        )
    };

    let seal = |id: &str| {
        env.tpm_run(
            &tpm,
            &["anchors", "seal", "--cert-dir", s(&km), "--cert-id", id],
        )
        .ok()
    };

    seal("test-ca");
    let out = verify().code(0).json();
    assert_eq!(out["trust"]["source"]["kind"], "tpm", "{out}");
    assert_eq!(out["anchors"]["certificates"], 1, "{out}");
    assert_eq!(
        out["certificate_validation"]["anchor"]["id"], "test-ca",
        "{out}"
    );

    seal("other-ca");
    let out = verify().code(1).json();
    assert_eq!(out["certificate_validation"]["valid"], false, "{out}");
    assert!(
        out["reason"].as_str().unwrap().contains("is not trusted"),
        "{out}"
    );
}

// ---- a reader racing a seal ------------------------------------------------

const TPM2_CC_NV_READ: u32 = 0x0000_014E;
const TPM2_CC_NV_CERTIFY: u32 = 0x0000_0184;

/// Reads one TPM command or response (10-byte header, size at bytes 2..6).
fn read_frame(stream: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut frame = vec![0u8; 6];
    stream.read_exact(&mut frame)?;
    let size = u32::from_be_bytes(frame[2..6].try_into().unwrap()) as usize;
    assert!((10..=65536).contains(&size), "TPM frame of {size} bytes");
    frame.resize(size, 0);
    stream.read_exact(&mut frame[6..])?;
    Ok(frame)
}

/// The handle at `at` in a command, when the command has code `code`.
fn handle_of(command: &[u8], code: u32, at: usize) -> Option<u32> {
    let cc = u32::from_be_bytes(command.get(6..10)?.try_into().ok()?);
    (cc == code).then_some(u32::from_be_bytes(
        command.get(at..at + 4)?.try_into().ok()?,
    ))
}

/// A TCP proxy in front of a swtpm (its command port, and its control port
/// at port + 1), to interleave a client's TPM commands with a writer's
/// deterministically. Each command goes to swtpm on a connection of its own,
/// one at a time, so that others can use swtpm directly in between. After
/// the first command `hook` picks has been answered by swtpm, `between` runs,
/// and only then does the client get that response: `between` runs after
/// that command and before the client's next one.
struct Proxy {
    port: u16,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn start(
        swtpm: &imgseal_tpm::SwtpmInstance,
        hook: impl Fn(&[u8]) -> bool + Send + Sync + 'static,
        between: impl FnOnce() + Send + 'static,
    ) -> Proxy {
        use std::io::Write;
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        // A free pair P, P+1 (the swtpm TCTI's control channel is P+1).
        let (data, ctrl) = (0..100)
            .find_map(|_| {
                let data = TcpListener::bind("127.0.0.1:0").ok()?;
                let port = data.local_addr().ok()?.port();
                let ctrl = TcpListener::bind(("127.0.0.1", port.checked_add(1)?)).ok()?;
                Some((data, ctrl))
            })
            .expect("a free port pair");
        let port = data.local_addr().unwrap().port();
        let (up_data, up_ctrl) = (swtpm.port(), swtpm.ctrl_port());
        std::thread::spawn(move || {
            for down in ctrl.incoming().flatten() {
                let Ok(up) = TcpStream::connect(("127.0.0.1", up_ctrl)) else {
                    continue;
                };
                // Either side closing closes both: swtpm serves one control
                // connection at a time.
                let (mut down_r, mut up_w) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut down_r, &mut up_w);
                    let _ = up_w.shutdown(std::net::Shutdown::Both);
                    let _ = down_r.shutdown(std::net::Shutdown::Both);
                });
                let (mut up_r, mut down_w) = (up, down);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_r, &mut down_w);
                    let _ = up_r.shutdown(std::net::Shutdown::Both);
                    let _ = down_w.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        let fired = Arc::new(AtomicBool::new(false));
        let shared = Arc::new((hook, Mutex::new(Some(between)), fired.clone()));
        std::thread::spawn(move || {
            for mut down in data.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let (hook, between, fired) = &*shared;
                    while let Ok(command) = read_frame(&mut down) {
                        let response = {
                            let mut up = TcpStream::connect(("127.0.0.1", up_data)).unwrap();
                            up.write_all(&command).unwrap();
                            read_frame(&mut up).unwrap()
                            // `up` closes here: swtpm is free for others.
                        };
                        if hook(&command)
                            && let Some(f) = between.lock().unwrap().take()
                        {
                            f();
                            fired.store(true, Ordering::SeqCst);
                        }
                        if down.write_all(&response).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Proxy { port, fired }
    }

    fn tcti(&self) -> imgseal_tpm::Tcti {
        imgseal_tpm::Tcti::swtpm_localhost(self.port)
    }

    fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn is_anchor_index(index: Option<u32>) -> bool {
    index == Some(RECORD_INDEX) || index == Some(imgseal_tpm::COUNTER_INDEX)
}

/// A complete seal of `set`, straight to swtpm (not through the proxy).
fn seal_directly(
    tcti: imgseal_tpm::Tcti,
    store: AnchorStore,
    set: AnchorSet,
) -> impl FnOnce() + Send + 'static {
    move || {
        let mut tpm = Tpm::open(&tcti).unwrap();
        anchors::seal(
            &mut tpm,
            &store,
            &set,
            anchors::DeleteProtection::Auto,
            &mut |_| {},
        )
        .unwrap();
    }
}

/// A swtpm with one set ("old") sealed through a direct connection, which
/// stays open for the test.
fn sealed_once() -> (
    tempfile::TempDir,
    TestTpm,
    AnchorStore,
    Tpm,
    anchors::SealOutcome,
) {
    let work = tempfile::tempdir().unwrap();
    let old = set_of(work.path(), &["old"]);
    let t = TestTpm::start();
    let store = AnchorStore {
        dir: work.path().join("home/anchors"),
    };
    let mut direct = Tpm::open(&t.swtpm.tcti()).unwrap();
    let first = anchors::seal(
        &mut direct,
        &store,
        &old,
        anchors::DeleteProtection::Auto,
        &mut |_| {},
    )
    .unwrap();
    (work, t, store, direct, first)
}

/// The reader reads the counter before the record (docs/anchors.md, "The
/// rollback rule"), so a seal that completes between its two reads leaves
/// the record it reads one ahead of the counter it read: accepted. Read the
/// other way round, the old record and the new counter were refused as a
/// rollback. The interleaving is forced: a proxy runs the whole seal right
/// after the reader's first NV_Read of the record or the counter.
#[test]
fn a_seal_completing_between_a_readers_two_reads_is_not_a_rollback() {
    let (work, t, store, direct, first) = sealed_once();
    let new = set_of(work.path(), &["new-1", "new-2"]);
    drop(direct);

    // NV_Read's handles: authHandle at bytes 10..14, nvIndex at 14..18.
    let proxy = Proxy::start(
        &t.swtpm,
        |c| is_anchor_index(handle_of(c, TPM2_CC_NV_READ, 14)),
        seal_directly(t.swtpm.tcti(), store.clone(), new.clone()),
    );
    let mut reader = Tpm::open(&proxy.tcti()).unwrap();
    let loaded = anchors::load(&mut reader, &store);
    assert!(proxy.fired(), "the seal ran between the reader's two reads");
    let loaded =
        loaded.unwrap_or_else(|e| panic!("a seal between the reader's reads was refused: {e}"));
    // The counter as read before the seal, the record as written by it.
    assert_eq!(loaded.tpm.counter, first.version);
    assert_eq!(loaded.tpm.record.version, first.version + 1);
    assert_eq!(loaded.tpm.counter_state, anchors::CounterState::SealPending);
    assert_eq!(loaded.bundle.anchors.ids(), new.ids());
    assert_eq!(loaded.bundle.version, first.version + 1);
    // Read again, undisturbed: the seal completed.
    let again = anchors::load(&mut reader, &store).unwrap();
    assert_eq!(again.tpm.counter_state, anchors::CounterState::Current);
    assert_eq!(again.tpm.counter, first.version + 1);
}

/// `attest` certifies the counter before the record, for the same reason:
/// a seal that completes between the two certifications gives a document
/// whose record is one ahead of its counter, which the verifier accepts.
#[test]
fn a_seal_completing_between_the_two_certifications_still_verifies() {
    let (work, t, store, mut direct, first) = sealed_once();
    let new = set_of(work.path(), &["new-1"]);
    // The AK exists before the race, as on a host that attested before.
    imgseal::attestation::attest(&mut direct, b"warm-up").unwrap();
    drop(direct);

    // NV_Certify's handles: signHandle, authHandle, then nvIndex at 18..22.
    let proxy = Proxy::start(
        &t.swtpm,
        |c| is_anchor_index(handle_of(c, TPM2_CC_NV_CERTIFY, 18)),
        seal_directly(t.swtpm.tcti(), store.clone(), new.clone()),
    );
    let mut host = Tpm::open(&proxy.tcti()).unwrap();
    let nonce = b"a verifier's nonce";
    let doc = imgseal::attestation::attest(&mut host, nonce).unwrap();
    assert!(proxy.fired(), "the seal ran between the two certifications");
    let new_bundle = std::fs::read(store.bundle_path()).unwrap();
    let verdict = imgseal::attestation::verify(
        &doc,
        nonce,
        &imgseal::attestation::Expected::Bundle(new_bundle),
        None,
        imgseal::attestation::Requirements::default(),
    )
    .unwrap();
    assert!(verdict.valid, "{:?}", verdict.reason);
    assert_eq!(verdict.counter, Some(first.version));
    assert_eq!(verdict.version, Some(first.version + 1));
    assert_eq!(
        verdict.counter_state,
        Some(anchors::CounterState::SealPending)
    );
}

// ---- bundle paths that are not regular files -------------------------------

/// `imgseal --tcti <tpm> ARGS…`, killed (and the test failed) if it runs for
/// 20 s, and with its address space limited to 1 GiB, so that a read
/// without a bound fails fast instead of exhausting the machine's memory.
fn run_bounded(env: &Env, tpm: &TestTpm, args: &[&str]) -> Run {
    use std::os::unix::process::CommandExt;
    let mut cmd = env.command();
    cmd.args(["--tcti", &tpm.tcti()])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "imgseal {args:?} hung (killed after 20 s); stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Run::from_output(child.wait_with_output().unwrap())
}

/// A FIFO or a device where a bundle belongs is never opened for a blocking
/// read nor read without a bound: as `bundle.pending` it is ignored (the
/// installed bundle is in force), as `bundle` it is refused like any bundle
/// that does not match, in one line naming the path.
#[test]
fn a_fifo_or_a_device_as_the_bundle_is_refused_promptly() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let a = cert_file(env.work.path(), "a");
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a)])
        .ok();
    let bundle = bundle_path(&env);
    let pending = env.home.path().join("anchors/bundle.pending");
    let sealed = std::fs::read(&bundle).unwrap();
    let props = write_props(&env, "p.json", &serde_json::json!({}));
    let verify = [
        "verify",
        "--props",
        s(&props),
        "--anchors",
        "tpm",
        "--cert-dir",
        s(env.work.path()),
        "img",
    ];

    let make_fifo = |p: &Path| mkfifo(p);
    let make_zero = |p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    for (what, make, kind) in [
        ("a FIFO", &make_fifo as &dyn Fn(&Path), "is a FIFO"),
        (
            "a symlink to /dev/zero",
            &make_zero as &dyn Fn(&Path),
            "is a character device",
        ),
    ] {
        // As the staged bundle, beside the installed one: ignored.
        make(&pending);
        let shown = run_bounded(&env, &tpm, &["--json", "anchors", "show"])
            .ok()
            .json();
        assert_eq!(shown["verdict"], "intact", "{what}: {shown}");
        assert_eq!(shown["bundle"]["source"], "disk", "{what}: {shown}");
        let files = shown["bundle"]["files"].as_array().unwrap();
        assert!(
            files[0]["problem"].as_str().unwrap().contains(kind),
            "{what}: {shown}"
        );
        std::fs::remove_file(&pending).unwrap();

        // As the bundle itself: refused, exit 1, one line on stderr. The
        // TPM's inline copy does not paper over it (the file is there).
        std::fs::remove_file(&bundle).unwrap();
        make(&bundle);
        let out = run_bounded(&env, &tpm, &["anchors", "show"]).code(1);
        assert!(out.stdout.contains(MISMATCH), "{what}: {}", out.stdout);
        assert!(
            out.stdout
                .contains(&format!("{} {kind}, not a regular file", bundle.display())),
            "{what}: {}",
            out.stdout
        );
        let out = run_bounded(&env, &tpm, &verify).code(1);
        assert!(out.stderr.contains(MISMATCH), "{what}: {}", out.stderr);
        assert!(out.stderr.contains(kind), "{what}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
        // Writes start from the sealed set: refused the same way.
        let out = run_bounded(&env, &tpm, &["anchors", "add", "--cert", s(&a)]).code(1);
        assert!(out.stderr.contains(kind), "{what}: {}", out.stderr);
        std::fs::remove_file(&bundle).unwrap();
        std::fs::write(&bundle, &sealed).unwrap();
        run_bounded(&env, &tpm, &["anchors", "show"]).ok();
    }

    // A bundle with a large tail is read only up to the record's length + 1.
    let mut long = sealed.clone();
    long.resize(sealed.len() + (64 << 20), 0);
    std::fs::write(&bundle, &long).unwrap();
    let out = run_bounded(&env, &tpm, &["anchors", "show"]).code(1);
    assert!(
        out.stdout.contains(&format!(
            "is longer than the {} bytes the record names",
            sealed.len()
        )),
        "{}",
        out.stdout
    );
    std::fs::write(&bundle, &sealed).unwrap();
    run_bounded(&env, &tpm, &["anchors", "show"]).ok();
}

// ---- what the lock protects against (docs/anchors.md, "What the lock protects") ----

/// The docs' chain (CA, Intermediate A and B) as an anchor set: what an
/// attacker seals so that the docs' image verifies.
fn docs_chain_set(dir: &Path) -> AnchorSet {
    let mut set = AnchorSet::new();
    for id in [CA, INT_A, INT_B] {
        let pem = std::fs::read(dir.join("km").join(format!("{id}.pem"))).unwrap();
        set.insert(id, Certificate::parse(&pem, id).unwrap())
            .unwrap();
    }
    set
}

/// The counter's value, read with tpm2-tools.
fn counter_value(tpm: &TestTpm) -> u64 {
    let bytes = tpm.tool_ok(
        "tpm2_nvread",
        &["-C", "0x0181a001", "0x0181a001", "-s", "8"],
    );
    u64::from_be_bytes(bytes.try_into().unwrap())
}

/// The attack, as a TPM owner (empty owner authorization) runs it
/// with tpm2-tools: undefine the record index (`-C o`), define it again with
/// the documented attributes, write a record naming `forged` at the
/// counter's version, and put `forged` where imgseal reads its bundle.
/// Returns whether the TPM let the owner undefine the record.
fn owner_replaces_the_anchors(env: &Env, tpm: &TestTpm, forged: &AnchorSet) -> bool {
    let undefined = tpm
        .tool("tpm2_nvundefine", &["-C", "o", "0x0181a000"])
        .status
        .success();
    if undefined {
        owner_defines_a_forged_record(env, tpm, forged);
    }
    undefined
}

/// With the record index gone, the owner defines it again with the
/// documented attributes and writes a forged record into it.
fn owner_defines_a_forged_record(env: &Env, tpm: &TestTpm, forged: &AnchorSet) {
    tpm.tool_ok(
        "tpm2_nvdefine",
        &[
            "0x0181a000",
            "-C",
            "o",
            "-s",
            "256",
            "-a",
            "ownerwrite|ownerread|authread|no_da|write_stclear|writeall",
        ],
    );
    owner_writes_a_forged_record(env, tpm, forged);
}

/// The owner writes a record naming `forged` at the counter's version (one
/// TPM2_NV_Write with tpm2-tools) and puts `forged` where imgseal reads its
/// bundle.
fn owner_writes_a_forged_record(env: &Env, tpm: &TestTpm, forged: &AnchorSet) {
    let version = counter_value(tpm);
    let bundle = Bundle {
        version,
        anchors: forged.clone(),
    }
    .encode();
    let record = env.path("forged.record");
    std::fs::write(
        &record,
        documented_record(&bundle, version, forged.len() as u32, false),
    )
    .unwrap();
    tpm.tool_ok("tpm2_nvwrite", &["-C", "o", "-i", s(&record), "0x0181a000"]);
    std::fs::write(bundle_path(env), &bundle).unwrap();
}

/// `verify --anchors tpm --policy nova` of the docs' image (signed under the
/// docs' chain, which the honest set does not trust).
fn verify_docs_image(env: &Env, tpm: &TestTpm, dir: &Path, props: &Path, image: &Path) -> Run {
    env.tpm_run(
        tpm,
        &[
            "--json",
            "verify",
            "--anchors",
            "tpm",
            "--policy",
            "nova",
            "--props",
            s(props),
            "--cert-dir",
            s(&dir.join("km")),
            s(image),
        ],
    )
}

#[test]
fn a_tpm_owner_cannot_replace_locked_platform_created_anchors() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let (dir, props, image) = docs_setup(&env);
    let honest = cert_file(env.work.path(), "honest-root");
    let sealed = env
        .tpm_run(&tpm, &["--json", "anchors", "seal", "--cert", s(&honest)])
        .ok()
        .json();
    assert_eq!(sealed["delete_protected"], true, "{sealed}");
    env.tpm_run(&tpm, &["anchors", "lock"]).ok();
    // The indices are platform-created, as tpm2-tools reads them.
    for index in ["0x0181a000", "0x0181a001", "0x0181a002"] {
        let public = String::from_utf8(tpm.tool_ok("tpm2_nvreadpublic", &[index])).unwrap();
        assert!(public.contains("platformcreate"), "{index}: {public}");
    }

    // A remote verifier learns it from the certified names.
    let honest_bundle = env.path("honest.bundle");
    std::fs::copy(bundle_path(&env), &honest_bundle).unwrap();
    let doc = env.path("attestation.json");
    env.tpm_run(&tpm, &["attest", "--nonce", "0a0b0c0d", "--out", s(&doc)])
        .ok();
    let verdict = env
        .run(&[
            "--json",
            "attest",
            "verify",
            s(&doc),
            "--nonce",
            "0a0b0c0d",
            "--expected-anchors",
            s(&honest_bundle),
            "--require-locked",
            "--require-delete-protection",
        ])
        .ok()
        .json();
    assert_eq!(verdict["delete_protected"], true, "{verdict}");

    // The attack: the owner may neither undefine nor write.
    assert!(!owner_replaces_the_anchors(
        &env,
        &tpm,
        &docs_chain_set(&dir)
    ));
    for index in ["0x0181a001", "0x0181a002"] {
        let out = tpm.tool("tpm2_nvundefine", &["-C", "o", index]);
        assert!(!out.status.success(), "the owner undefined {index}");
    }
    let forged = env.path("forged.record");
    std::fs::write(&forged, [0u8; 256]).unwrap();
    let out = tpm.tool("tpm2_nvwrite", &["-C", "o", "-i", s(&forged), "0x0181a000"]);
    assert!(!out.status.success(), "the owner wrote a locked record");
    // Only the bundle file is the attacker's: it does not match the record.
    let bundle = Bundle {
        version: counter_value(&tpm),
        anchors: docs_chain_set(&dir),
    };
    std::fs::write(bundle_path(&env), bundle.encode()).unwrap();
    let out = verify_docs_image(&env, &tpm, &dir, &props, &image).code(1);
    assert!(
        out.stdout.contains(MISMATCH) || out.stderr.contains(MISMATCH),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let shown = env
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .code(1)
        .json();
    assert_eq!(shown["locked"], true, "{shown}");
    assert_eq!(shown["delete_protected"], true, "{shown}");
    assert_eq!(shown["verdict"], "refused", "{shown}");
}

#[test]
fn owner_created_anchors_can_be_replaced_by_the_owner_and_a_remote_verifier_catches_it() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let (dir, props, image) = docs_setup(&env);
    let honest = cert_file(env.work.path(), "honest-root");
    let sealed = env
        .tpm_run(
            &tpm,
            &[
                "--json",
                "anchors",
                "seal",
                "--delete-protection",
                "off",
                "--cert",
                s(&honest),
            ],
        )
        .ok()
        .json();
    assert_eq!(sealed["delete_protected"], false, "{sealed}");
    env.tpm_run(&tpm, &["anchors", "lock"]).ok();
    let honest_bundle = env.path("honest.bundle");
    std::fs::copy(bundle_path(&env), &honest_bundle).unwrap();
    verify_docs_image(&env, &tpm, &dir, &props, &image).code(1);
    let ak = env.path("ak.pem");
    let attest = |name: &str| {
        let doc = env.path(name);
        env.tpm_run(&tpm, &["attest", "--nonce", "0a0b0c0d", "--out", s(&doc)])
            .ok();
        doc
    };
    let before = attest("before.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&before).unwrap()).unwrap();
    std::fs::write(&ak, doc["ak"]["public_key_pem"].as_str().unwrap()).unwrap();
    let attest_verify = |doc: &Path, extra: &[&str]| {
        let mut args = vec![
            "--json",
            "attest",
            "verify",
            s(doc),
            "--nonce",
            "0a0b0c0d",
            "--expected-anchors",
            s(&honest_bundle),
            "--ak",
            s(&ak),
        ];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    let ok = attest_verify(&before, &[]).ok().json();
    assert_eq!(ok["delete_protected"], false, "{ok}");
    // The verifier can demand indices the owner cannot delete.
    let out = attest_verify(&before, &["--require-delete-protection"])
        .code(1)
        .json();
    assert!(
        out["reason"].as_str().unwrap().contains("owner-created"),
        "{out}"
    );

    // The documented limit: the owner replaces owner-created anchors, lock
    // or not, and this host cannot tell.
    assert!(owner_replaces_the_anchors(
        &env,
        &tpm,
        &docs_chain_set(&dir)
    ));
    let shown = env
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .ok()
        .json();
    assert_eq!(shown["verdict"], "intact", "{shown}");
    assert_eq!(shown["locked"], false, "{shown}");
    assert_eq!(shown["delete_protected"], false, "{shown}");
    let out = verify_docs_image(&env, &tpm, &dir, &props, &image)
        .ok()
        .json();
    assert_eq!(out["verdict"], "valid", "{out}");
    // A remote verifier expecting the honest set is not fooled, and sees
    // the lock gone.
    let after = attest("after.json");
    let out = attest_verify(&after, &[]).code(1).json();
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("not the expected bundle"),
        "{out}"
    );
    assert_eq!(out["record_locked"], false, "{out}");
}

#[test]
fn a_recreated_index_is_refused_and_the_platform_holder_is_the_limit() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let (dir, props, image) = docs_setup(&env);
    let honest = cert_file(env.work.path(), "honest-root");
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&honest)])
        .ok();
    // Unlocked, the owner still cannot undefine the platform-created record...
    assert!(!owner_replaces_the_anchors(
        &env,
        &tpm,
        &docs_chain_set(&dir)
    ));
    // ...but may reseal in place: the documented limit of an unlocked host.
    owner_writes_a_forged_record(&env, &tpm, &docs_chain_set(&dir));
    let out = verify_docs_image(&env, &tpm, &dir, &props, &image)
        .ok()
        .json();
    assert_eq!(out["verdict"], "valid", "{out}");
    // Whoever holds the platform authorization (empty on swtpm; firmware's
    // on real hosts) may delete platform-created indices...
    tpm.tool_ok("tpm2_nvundefine", &["-C", "p", "0x0181a000"]);
    // ...and one the owner defines again in its place is a recreated
    // index: refused by show and verify, whatever it holds.
    owner_defines_a_forged_record(&env, &tpm, &docs_chain_set(&dir));
    let out = env.tpm_run(&tpm, &["anchors", "show"]).code(1);
    assert!(
        out.stderr.contains("deleted and defined again"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let out = verify_docs_image(&env, &tpm, &dir, &props, &image).code(1);
    assert!(
        out.stdout.contains("deleted and defined again"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    // A seal refuses to build on it too (add starts from the sealed set).
    env.tpm_run(&tpm, &["anchors", "add", "--cert", s(&honest)])
        .code(1);
}

#[test]
fn delete_protection_falls_back_only_when_allowed_and_says_so() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let a = cert_file(env.work.path(), "a");
    // A platform hierarchy imgseal cannot use (its authorization set by
    // someone else, as firmware does on real hosts).
    tpm.tool_ok("tpm2_changeauth", &["-c", "platform", "firmware-secret"]);
    let out = env
        .tpm_run(
            &tpm,
            &[
                "anchors",
                "seal",
                "--delete-protection",
                "required",
                "--cert",
                s(&a),
            ],
        )
        .code(6);
    assert!(
        out.stderr.contains("--delete-protection required"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("firmware-secret"));
    // Nothing was defined.
    env.tpm_run(&tpm, &["anchors", "show"]).code(4);
    let out = env
        .tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a)])
        .ok();
    assert!(
        out.stdout
            .contains("warning: the platform hierarchy refused"),
        "{}",
        out.stdout
    );
    let shown = env
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .ok()
        .json();
    assert_eq!(shown["delete_protected"], false, "{shown}");
    let text = env.tpm_run(&tpm, &["anchors", "show"]).ok();
    assert!(
        text.stdout.contains("deletion: owner-created"),
        "{}",
        text.stdout
    );
    // Indices keep their creator; `required` refuses to build on owner-created ones.
    let out = env
        .tpm_run(
            &tpm,
            &[
                "anchors",
                "add",
                "--delete-protection",
                "required",
                "--cert",
                s(&cert_file(env.work.path(), "b")),
            ],
        )
        .code(5);
    assert!(out.stderr.contains("owner-created"), "{}", out.stderr);
    // With the platform authorization given, clear and seal again: protected.
    let pa = env.path("platform.auth");
    std::fs::write(&pa, "firmware-secret\n").unwrap();
    env.tpm_run(&tpm, &["anchors", "clear"]).ok();
    let sealed = env
        .tpm_run(
            &tpm,
            &[
                "--json",
                "anchors",
                "seal",
                "--platform-auth-file",
                s(&pa),
                "--cert",
                s(&a),
            ],
        )
        .ok()
        .json();
    assert_eq!(sealed["delete_protected"], true, "{sealed}");
    // Removing platform-created indices takes the platform authorization.
    let out = env.tpm_run(&tpm, &["anchors", "clear"]).code(6);
    assert!(
        out.stderr.contains("--platform-auth-file"),
        "{}",
        out.stderr
    );
    env.tpm_run(&tpm, &["anchors", "show"]).ok();
    env.tpm_run(&tpm, &["anchors", "clear", "--platform-auth-file", s(&pa)])
        .ok();
    env.tpm_run(&tpm, &["anchors", "show"]).code(4);
}

/// `tpm status` and `tpm stop` manage the embedded swtpm, and commands that
/// only read or change sealed anchors never start one on a home that never
/// sealed any.
#[test]
fn the_embedded_swtpm_is_started_only_to_seal_and_can_be_stopped() {
    let env = Env::new();
    let dir = env.home.path().join("swtpm");
    struct StopDaemon(PathBuf);
    impl Drop for StopDaemon {
        fn drop(&mut self) {
            let _ = imgseal_tpm::stop_daemon(&self.0);
        }
    }
    let _stop = StopDaemon(dir.clone());
    for args in [
        &["anchors", "show"][..],
        &["anchors", "lock"],
        &["anchors", "remove", "x"],
        &["anchors", "clear"],
    ] {
        let out = env.run(args).code(4);
        assert!(
            out.stderr.contains("has no embedded TPM yet"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert!(!dir.exists(), "a TPM was manufactured to answer");
    let status = env.run(&["--json", "tpm", "status"]).ok().json();
    assert_eq!(status["manufactured"], false, "{status}");
    assert_eq!(status["running"], false, "{status}");

    let ca = test_ca().dir.join("ca.crt");
    env.run(&["anchors", "seal", "--cert", s(&ca)]).ok();
    let status = env.run(&["--json", "tpm", "status"]).ok().json();
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["anchors_sealed_from_this_home"], true, "{status}");
    let pid = status["pid"].as_u64().unwrap();
    assert_eq!(
        imgseal_tpm::swtpm::daemon_pid(&dir),
        Some(pid as u32),
        "the pid is the daemon's"
    );
    let stopped = env.run(&["--json", "tpm", "stop"]).ok().json();
    assert_eq!(stopped["stopped"], true, "{stopped}");
    assert_eq!(imgseal_tpm::swtpm::daemon_pid(&dir), None, "still running");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "process {pid} is still alive"
    );
    let again = env.run(&["--json", "tpm", "stop"]).ok().json();
    assert_eq!(again["stopped"], false, "{again}");
    let status = env.run(&["tpm", "status"]).ok().stdout;
    assert!(status.contains("stopped (its state is kept)"), "{status}");
    // The state survives: the anchors are still there when it is needed again.
    let shown = env.run(&["--json", "anchors", "show"]).ok().json();
    assert_eq!(shown["anchors"].as_array().unwrap().len(), 1, "{shown}");
}
