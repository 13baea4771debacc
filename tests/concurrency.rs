//! Many imgseal processes at once on one device: first runs that create the
//! embedded token together, eight signatures at once on one SoftHSM token
//! (the embedded one and an operator's), and eight verifications at once
//! against one swtpm holding the trust anchors (one named by --tcti, and the
//! embedded daemon that the first of them starts). Every process has a time
//! limit, so a deadlock fails the test instead of hanging it; nothing here
//! measures time.
//!
//! Two bugs these found, both fixed in src/: two first runs both created a
//! token "imgseal" (the home's lock file could not be opened before the home
//! existed, and the failure was ignored), and SoftHSM 2.6.1 processes that
//! read a token while another logs in see its token file truncated ("no
//! PKCS#11 token matches", CKR_GENERAL_ERROR): imgseal now serialises its
//! SoftHSM calls per token directory (src/backend/pkcs11.rs, TokenDirLock).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::tpm::TestTpm;
use common::*;

const PROCESSES: usize = 8;
const LIMIT: Duration = Duration::from_secs(120);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Starts every command, then waits for each, killing (and failing) any
/// that outlives `LIMIT`.
fn run_together(cmds: Vec<Command>) -> Vec<Run> {
    let children: Vec<Child> = cmds
        .into_iter()
        .map(|mut c| {
            c.stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let waits: Vec<(u32, mpsc::Receiver<std::io::Result<Output>>)> = children
        .into_iter()
        .map(|child| {
            let pid = child.id();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait_with_output());
            });
            (pid, rx)
        })
        .collect();
    let mut runs = Vec::new();
    let mut hung = Vec::new();
    for (pid, rx) in waits {
        match rx.recv_timeout(LIMIT) {
            Ok(out) => runs.push(Run::from_output(out.unwrap())),
            Err(_) => {
                // SAFETY: kill(2) on the pid of our own child.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                hung.push(pid);
            }
        }
    }
    assert!(hung.is_empty(), "processes {hung:?} hung (deadlock?)");
    runs
}

#[track_caller]
fn all_ok(runs: &[Run], what: &str) {
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(
            r.code,
            0,
            "{what}: process {i} of {}: exit {}: {}{}",
            runs.len(),
            r.code,
            r.stdout,
            r.stderr
        );
    }
}

#[test]
fn eight_first_runs_at_once_create_one_embedded_token() {
    for round in 0..3 {
        let env = Env::new();
        let cmds = (0..PROCESSES)
            .map(|i| {
                let mut c = env.command();
                c.args(["key", "generate", "--type", "ecc-secp384r1", "--label"])
                    .arg(format!("k{i}"));
                c
            })
            .collect();
        let runs = run_together(cmds);
        all_ok(&runs, &format!("round {round}: first runs"));
        let tokens: Vec<PathBuf> = fs::read_dir(env.home.path().join("tokens"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(tokens.len(), 1, "round {round}: tokens {tokens:?}");
        let listed = env.run(&["--json", "key", "list"]).ok().json();
        let mut labels: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["label"].as_str().unwrap())
            .collect();
        labels.sort();
        assert_eq!(labels, ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"]);
    }
}

/// A signer: its key URI and its certificate's public key for openssl.
struct Signer {
    uri: String,
    cert_id: String,
    public_pem: PathBuf,
    pss: bool,
}

fn signer(env: &Env, kind: &str, label: &str) -> Signer {
    let cert_id = format!("{label}-cert");
    let uri = env.key_with_certificate(kind, label, &cert_id);
    let public_pem = env.path(&format!("{label}.pub.pem"));
    let pem = openssl(&[
        "x509",
        "-in",
        s(&env.path(&format!("{label}.crt"))),
        "-pubkey",
        "-noout",
    ])
    .ok()
    .stdout;
    fs::write(&public_pem, pem).unwrap();
    Signer {
        uri,
        cert_id,
        public_pem,
        pss: kind.starts_with("rsa-pss"),
    }
}

/// Checks one `sign` output with imgseal verify and with `openssl dgst -verify`.
fn check_signature(env: &Env, signer: &Signer, image: &Path, hash: &str, run: &Run, what: &str) {
    let props = run.json();
    assert_eq!(props["img_signature_hash_method"], hash, "{what}");
    let props_file = write_props(env, &format!("{what}.json").replace(' ', "_"), &props);
    let out = env.run(&["--json", "verify", "--props", s(&props_file), s(image)]);
    assert_eq!(
        out.code, 0,
        "{what}: imgseal verify: {}{}",
        out.stdout, out.stderr
    );
    let sig = env.path(&format!("{what}.sig").replace(' ', "_"));
    fs::write(&sig, decode_b64(props["img_signature"].as_str().unwrap())).unwrap();
    let mut args = vec![
        "dgst",
        dgst_flag(hash),
        "-verify",
        s(&signer.public_pem),
        "-signature",
        s(&sig),
    ];
    if signer.pss {
        args.extend([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:auto",
        ]);
    }
    args.push(s(image));
    let out = openssl(&args);
    assert!(
        out.code == 0 && out.stdout.contains("Verified OK"),
        "{what}: openssl: {}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn eight_signs_at_once_on_the_embedded_token_all_verify() {
    let env = Env::new();
    let signers = [
        signer(&env, "rsa-pss-3072", "rsa"),
        signer(&env, "ecc-secp384r1", "ecc"),
    ];
    let images: Vec<PathBuf> = (0..PROCESSES)
        .map(|i| env.image(&format!("img{i}"), 2_000_000 + i * 4099))
        .collect();
    for round in 0..3 {
        let plan: Vec<(&Signer, &PathBuf, &str)> = (0..PROCESSES)
            .map(|i| (&signers[i % 2], &images[i], HASHES[(i + round) % 4]))
            .collect();
        let cmds = plan
            .iter()
            .map(|(sg, image, hash)| {
                let mut c = env.command();
                c.args([
                    "sign",
                    "--key",
                    &sg.uri,
                    "--cert-id",
                    &sg.cert_id,
                    "--hash",
                    hash,
                    s(image),
                ]);
                c
            })
            .collect();
        let runs = run_together(cmds);
        all_ok(&runs, &format!("round {round}"));
        for (i, ((sg, image, hash), run)) in plan.iter().zip(&runs).enumerate() {
            check_signature(
                &env,
                sg,
                image,
                hash,
                run,
                &format!("round {round} process {i}"),
            );
        }
    }
}

#[test]
fn eight_signs_at_once_on_an_operator_softhsm_token_all_verify() {
    let env = Env::new();
    let (dir, conf) = operator_token("imgseal-ops-", "ops", "12345678", "87651234");
    let pin = dir.path().join("pin");
    fs::write(&pin, "87651234").unwrap();
    let module = softhsm_module();
    let token = format!(
        "pkcs11:token=ops?module-path={module}&pin-source={}",
        pin.display()
    );
    let command = || {
        let mut c = env.command();
        c.env("SOFTHSM2_CONF", &conf).args(["--token", &token]);
        c
    };
    let run = |args: &[&str]| Run::from_output(command().args(args).output().unwrap());
    let uri = run(&[
        "key",
        "generate",
        "--type",
        "ecc-secp384r1",
        "--label",
        "ops-k",
    ])
    .ok()
    .stdout
    .trim()
    .to_string();
    let csr = env.path("ops.csr");
    run(&[
        "key",
        "csr",
        "--key",
        &uri,
        "--subject",
        "CN=ops",
        "--out",
        s(&csr),
    ])
    .ok();
    let crt = env.path("ops.crt");
    test_ca().issue(&csr, &crt);
    run(&["cert", "import", "--id", "ops-cert", s(&crt)]).ok();
    let public_pem = env.path("ops.pub.pem");
    fs::write(
        &public_pem,
        openssl(&["x509", "-in", s(&crt), "-pubkey", "-noout"])
            .ok()
            .stdout,
    )
    .unwrap();
    let sg = Signer {
        uri,
        cert_id: "ops-cert".into(),
        public_pem,
        pss: false,
    };
    let images: Vec<PathBuf> = (0..PROCESSES)
        .map(|i| env.image(&format!("op{i}"), 1_000_000 + i * 17))
        .collect();
    for round in 0..3 {
        let cmds = images
            .iter()
            .map(|image| {
                let mut c = command();
                c.args([
                    "sign",
                    "--key",
                    &sg.uri,
                    "--cert-id",
                    "ops-cert",
                    "--hash",
                    "SHA-384",
                    s(image),
                ]);
                c
            })
            .collect();
        let runs = run_together(cmds);
        all_ok(&runs, &format!("round {round}"));
        for (i, (image, r)) in images.iter().zip(&runs).enumerate() {
            // imgseal verify finds the certificate in the operator's token.
            let props = write_props(&env, &format!("op-{round}-{i}.json"), &r.json());
            let out = Run::from_output(
                command()
                    .args(["verify", "--props", s(&props), s(image)])
                    .output()
                    .unwrap(),
            );
            assert_eq!(out.code, 0, "round {round} process {i}: {}", out.stderr);
            let sig = env.path(&format!("op-{round}-{i}.sig"));
            fs::write(
                &sig,
                decode_b64(r.json()["img_signature"].as_str().unwrap()),
            )
            .unwrap();
            let out = openssl(&[
                "dgst",
                "-sha384",
                "-verify",
                s(&sg.public_pem),
                "-signature",
                s(&sig),
                s(image),
            ]);
            assert!(
                out.stdout.contains("Verified OK"),
                "round {round} process {i}: {}",
                out.stderr
            );
        }
    }
}

/// A signed image, a tampered copy, and the test CA sealed as the anchor.
fn anchored(env: &Env, tcti: Option<&str>) -> (PathBuf, PathBuf, PathBuf) {
    let uri = env.key_with_certificate("ecc-secp384r1", "k", "k-cert");
    let good = env.image("good.img", 3_000_000);
    let props = env
        .run(&["sign", "--key", &uri, "--cert-id", "k-cert", s(&good)])
        .ok()
        .json();
    let props = write_props(env, "props.json", &props);
    let mut bad_bytes = fs::read(&good).unwrap();
    bad_bytes[1_234_567] ^= 0x40;
    let bad = env.path("bad.img");
    fs::write(&bad, bad_bytes).unwrap();
    let ca = test_ca().dir.join("ca.crt");
    let mut args = Vec::new();
    if let Some(t) = tcti {
        args.extend(["--tcti", t]);
    }
    args.extend(["anchors", "seal", "--cert", s(&ca)]);
    env.run(&args).ok();
    (props, good, bad)
}

/// What must not change: the verdict, the record, the counter, the set.
fn anchors_state(env: &Env, tcti: Option<&str>) -> serde_json::Value {
    let mut args = Vec::new();
    if let Some(t) = tcti {
        args.extend(["--tcti", t]);
    }
    args.extend(["--json", "anchors", "show"]);
    let j = env.run(&args).ok().json();
    serde_json::json!({
        "verdict": j["verdict"],
        "record": j["record"],
        "counter": j["counter"],
        "anchors": j["anchors"],
        "locked": j["locked"],
    })
}

fn verify_eight(env: &Env, tcti: Option<&str>, props: &Path, good: &Path, bad: &Path, what: &str) {
    let plan: Vec<(&Path, i32)> = (0..PROCESSES)
        .map(|i| if i % 2 == 0 { (good, 0) } else { (bad, 1) })
        .collect();
    let cmds = plan
        .iter()
        .map(|(image, _)| {
            let mut c = env.command();
            if let Some(t) = tcti {
                c.args(["--tcti", t]);
            }
            c.args(["--json", "verify", "--props", s(props), s(image)]);
            c
        })
        .collect();
    let runs = run_together(cmds);
    for (i, ((image, want), r)) in plan.iter().zip(&runs).enumerate() {
        assert_eq!(
            r.code,
            *want,
            "{what}: process {i} ({}): {}{}",
            image.display(),
            r.stdout,
            r.stderr
        );
        let j = r.json();
        assert_eq!(
            j["trust"]["source"]["kind"], "tpm",
            "{what}: process {i}: {j}"
        );
        assert_eq!(
            j["certificate_validation"]["valid"], true,
            "{what}: process {i}: {j}"
        );
        assert_eq!(j["verdict"], if *want == 0 { "valid" } else { "invalid" });
    }
}

#[test]
fn eight_verifies_at_once_against_one_swtpm_agree_and_change_nothing() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let tcti = tpm.tcti();
    let (props, good, bad) = anchored(&env, Some(&tcti));
    let before = anchors_state(&env, Some(&tcti));
    assert_eq!(before["verdict"], "intact");
    for round in 0..3 {
        verify_eight(
            &env,
            Some(&tcti),
            &props,
            &good,
            &bad,
            &format!("round {round}"),
        );
        assert_eq!(anchors_state(&env, Some(&tcti)), before, "round {round}");
    }
}

/// The embedded swtpm daemon, stopped: eight verifications at once each find
/// it not running; a file lock lets one start it, and all use that one.
#[test]
fn eight_verifies_at_once_start_one_embedded_swtpm() {
    common::tpm::quiet();
    let env = Env::new();
    let state = env.home.path().join("swtpm");
    struct StopDaemon(PathBuf);
    impl Drop for StopDaemon {
        fn drop(&mut self) {
            let _ = imgseal_tpm::stop_daemon(&self.0);
        }
    }
    let _stop = StopDaemon(state.clone());
    let (props, good, bad) = anchored(&env, None);
    let before = anchors_state(&env, None);
    for round in 0..2 {
        imgseal_tpm::stop_daemon(&state).unwrap();
        assert!(imgseal_tpm::swtpm::daemon_pid(&state).is_none());
        verify_eight(&env, None, &props, &good, &bad, &format!("round {round}"));
        let pid = imgseal_tpm::swtpm::daemon_pid(&state).expect("a daemon runs");
        // One daemon: every swtpm process on this state directory is that one.
        let others: Vec<u32> = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| {
                fs::read(format!("/proc/{p}/cmdline"))
                    .map(|c| {
                        let c = String::from_utf8_lossy(&c).into_owned();
                        c.starts_with("swtpm") && c.contains(s(&state))
                    })
                    .unwrap_or(false)
            })
            .collect();
        assert_eq!(others, [pid], "round {round}");
        assert_eq!(anchors_state(&env, None), before, "round {round}");
    }
}
