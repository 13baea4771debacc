//! Attestation of the sealed anchors (a real swtpm per test): imgseal's
//! offline check and, independently, `openssl dgst -verify` over the signed
//! TPMS_ATTEST bytes; wrong nonces, changed records, rollbacks and another
//! TPM's key fail. Enrollment ties the AK to the EK, checked with openssl and
//! tpm2-tools' own MakeCredential/ActivateCredential.

mod common;

use std::path::Path;

use common::tpm::TestTpm;
use common::*;
use imgseal::anchors::MISMATCH;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

use common::pki::anchor_cert_file as cert_file;

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write_hex(path: &Path, hex_text: &Value) {
    std::fs::write(path, hex::decode(hex_text.as_str().unwrap()).unwrap()).unwrap();
}

/// `openssl dgst -sha256 -verify AK -signature SIG DATA`: the peer's verdict.
fn openssl_verifies(ak: &Path, sig: &Path, data: &Path) -> bool {
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        s(ak),
        "-signature",
        s(sig),
        s(data),
    ]);
    assert_eq!(
        out.code == 0,
        out.stdout.contains("Verified OK"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    out.code == 0
}

const NONCE: &str = "5a1c0ffee0ddba11c0de0123456789ab";

#[test]
fn attestation_verifies_with_imgseal_and_openssl_and_binds_nonce_record_and_ak() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let (a, b) = (
        cert_file(env.work.path(), "a"),
        cert_file(env.work.path(), "b"),
    );
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a), "--cert", s(&b)])
        .ok();
    let bundle = env.home.path().join("anchors/bundle");
    let doc_path = env.path("attest.json");
    env.tpm_run(&tpm, &["attest", "--nonce", NONCE, "--out", s(&doc_path)])
        .ok();
    let doc = read_json(&doc_path);
    assert_eq!(doc["format"], "imgseal-anchor-attestation");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["nonce"], NONCE);

    // The AK's public key, the signed bytes and the signature, as files.
    let ak = env.path("ak.pem");
    std::fs::write(&ak, doc["ak"]["public_key_pem"].as_str().unwrap()).unwrap();
    let (attest, sig) = (env.path("attest.bin"), env.path("sig.der"));
    write_hex(&attest, &doc["record"]["attest"]);
    write_hex(&sig, &doc["record"]["signature"]);
    assert!(
        openssl_verifies(&ak, &sig, &attest),
        "openssl verifies the TPM's signature"
    );
    let (cattest, csig) = (env.path("counter-attest.bin"), env.path("counter-sig.der"));
    write_hex(&cattest, &doc["counter"]["attest"]);
    write_hex(&csig, &doc["counter"]["signature"]);
    assert!(openssl_verifies(&ak, &csig, &cattest));
    // The signed TPMS_ATTEST starts with TPM_GENERATED_VALUE and ends with the
    // record exactly as tpm2_nvread reads it.
    let attest_bytes = std::fs::read(&attest).unwrap();
    assert_eq!(&attest_bytes[..6], &[0xff, 0x54, 0x43, 0x47, 0x80, 0x14]);
    let record = tpm.tool_ok(
        "tpm2_nvread",
        &["-C", "0x0181a000", "0x0181a000", "-s", "256"],
    );
    assert!(attest_bytes.ends_with(&record));
    assert!(
        attest_bytes
            .windows(NONCE.len() / 2)
            .any(|w| w == hex::decode(NONCE).unwrap())
    );

    // imgseal's offline check, with the AK pinned.
    let verify = |doc: &Path, nonce: &str, extra: &[&str]| {
        let mut args = vec!["--json", "attest", "verify", s(doc), "--nonce", nonce];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    let out = verify(
        &doc_path,
        NONCE,
        &["--expected-anchors", s(&bundle), "--ak", s(&ak)],
    )
    .ok()
    .json();
    assert_eq!(out["verdict"], "valid", "{out}");
    assert_eq!(out["ak_pinned"], true);
    assert_eq!(out["certificates"], 2);
    assert_eq!(out["counter_state"], "current");
    assert_eq!(out["record_locked"], false);
    let digest = hex::encode(sha2_digest(&std::fs::read(&bundle).unwrap()));
    assert_eq!(out["digest"], digest);
    verify(
        &doc_path,
        NONCE,
        &["--expected-digest", &digest, "--ak", s(&ak)],
    )
    .ok();
    // Without --ak the document's own key is used, and the output says so.
    let out = env
        .run(&[
            "attest",
            "verify",
            s(&doc_path),
            "--nonce",
            NONCE,
            "--expected-digest",
            &digest,
        ])
        .ok();
    assert!(
        out.stdout
            .contains("the AK was taken from the document itself"),
        "{}",
        out.stdout
    );

    // A wrong nonce.
    let out = verify(
        &doc_path,
        "00112233",
        &["--expected-anchors", s(&bundle), "--ak", s(&ak)],
    )
    .code(1)
    .json();
    assert!(
        out["reason"].as_str().unwrap().contains("another nonce"),
        "{out}"
    );
    // Another digest expected.
    verify(
        &doc_path,
        NONCE,
        &["--expected-digest", &"00".repeat(32), "--ak", s(&ak)],
    )
    .code(1);

    // A changed record: in the document's copy, or in the signed bytes.
    let mut changed = doc.clone();
    let mut rec = hex::decode(doc["record"]["contents"].as_str().unwrap()).unwrap();
    rec[40] ^= 1;
    changed["record"]["contents"] = Value::String(hex::encode(&rec));
    let changed_path = env.path("changed.json");
    // A changed document, written out and verified with `extra`.
    let verify_changed = |changed: &Value, extra: &[&str]| {
        std::fs::write(&changed_path, serde_json::to_vec(changed).unwrap()).unwrap();
        verify(&changed_path, NONCE, extra)
    };
    // A changed document refused against the pinned AK, `needle` in the reason.
    let refused_pinned = |changed: &Value, needle: &str| {
        let out = verify_changed(changed, &["--expected-digest", &digest, "--ak", s(&ak)])
            .code(1)
            .json();
        assert!(out["reason"].as_str().unwrap().contains(needle), "{out}");
        out
    };
    std::fs::write(&changed_path, serde_json::to_vec(&changed).unwrap()).unwrap();
    let out = verify(
        &changed_path,
        NONCE,
        &["--expected-anchors", s(&bundle), "--ak", s(&ak)],
    )
    .code(1)
    .json();
    assert!(
        out["reason"]
            .as_str()
            .unwrap()
            .contains("not the one the TPM certified"),
        "{out}"
    );
    let mut forged = doc.clone();
    let mut att = attest_bytes.clone();
    let n = att.len();
    att[n - 256 + 40] ^= 1;
    forged["record"]["attest"] = Value::String(hex::encode(&att));
    forged["record"]["contents"] = Value::String(hex::encode(&att[n - 256..]));
    refused_pinned(&forged, "does not verify");
    write_hex(&attest, &forged["record"]["attest"]);
    assert!(
        !openssl_verifies(&ak, &sig, &attest),
        "openssl refuses the changed bytes too"
    );

    // Another TPM's AK: its signature is not this one's, either way round.
    let other = TestTpm::start();
    let other_env = Env::new();
    other_env
        .tpm_run(
            &other,
            &["anchors", "seal", "--cert", s(&a), "--cert", s(&b)],
        )
        .ok();
    let other_doc = env.path("other.json");
    other_env
        .tpm_run(
            &other,
            &["attest", "--nonce", NONCE, "--out", s(&other_doc)],
        )
        .ok();
    let other_ak = env.path("other-ak.pem");
    std::fs::write(
        &other_ak,
        read_json(&other_doc)["ak"]["public_key_pem"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let out = verify(
        &doc_path,
        NONCE,
        &["--expected-digest", &digest, "--ak", s(&other_ak)],
    )
    .code(1)
    .json();
    assert!(
        out["reason"].as_str().unwrap().contains("does not verify"),
        "{out}"
    );
    verify(
        &other_doc,
        NONCE,
        &[
            "--expected-digest",
            read_json(&other_doc)["anchors"]["digest"].as_str().unwrap(),
            "--ak",
            s(&ak),
        ],
    )
    .code(1);
    assert!(!openssl_verifies(&other_ak, &sig, &attest));
    // Swapping in the other TPM's AK as the document's own key does not help:
    // the signature is checked with it and fails.
    let mut swapped = doc.clone();
    swapped["ak"] = read_json(&other_doc)["ak"].clone();
    verify_changed(&swapped, &["--expected-digest", &digest]).code(1);
    // The AK's public area must hold the pinned key.
    let mut mixed = doc.clone();
    mixed["ak"]["public_area"] = read_json(&other_doc)["ak"]["public_area"].clone();
    refused_pinned(&mixed, "another key");

    // Issue #10 item 8: a forgery made in software, consistent in itself.
    // A P-256 key stands in for the AK: the public area is the AK's with the
    // forger's point, each TPMS_ATTEST names it as qualified signer and
    // certifies a record of the forger's choosing, and the forger signs.
    let forged = forge_attestation(&doc, |record| record[40] ^= 1);
    // Against the pinned AK it is refused: the signature is not the AK's.
    let out = refused_pinned(&forged, "does not verify");
    assert_eq!(out["verdict"], "invalid", "{out}");
    // Unchanged contents, re-signed: refused all the same.
    let resigned = forge_attestation(&doc, |_| ());
    refused_pinned(&resigned, "does not verify");
    // Without a pinned AK the forgery is checked against its own key and
    // holds together, so nothing says which TPM made it: the verdict says
    // the AK was not pinned (docs/security.md), and the forged record,
    // whose digest is not the bundle's, is still refused.
    let out = verify_changed(&forged, &["--expected-digest", &digest])
        .code(1)
        .json();
    assert_eq!(out["ak_pinned"], false, "{out}");
    // The same record re-signed is self-consistent, and without a pin that
    // is all a document can be (docs/security.md): valid, ak_pinned false.
    let out = verify_changed(&resigned, &["--expected-digest", &digest])
        .ok()
        .json();
    assert_eq!(
        (&out["verdict"], &out["ak_pinned"]),
        (&"valid".into(), &false.into()),
        "{out}"
    );

    // A rolled-back record is certified as it is, and the verifier refuses it.
    let old_record = env.path("old-record.bin");
    tpm.tool_ok(
        "tpm2_nvread",
        &[
            "-C",
            "0x0181a000",
            "0x0181a000",
            "-s",
            "256",
            "-o",
            s(&old_record),
        ],
    );
    let old_bundle = env.path("old-bundle");
    std::fs::copy(&bundle, &old_bundle).unwrap();
    env.tpm_run(&tpm, &["anchors", "remove", "b"]).ok();
    tpm.tool_ok(
        "tpm2_nvwrite",
        &["-C", "o", "-i", s(&old_record), "0x0181a000"],
    );
    let rolled = env.path("rolled.json");
    env.tpm_run(&tpm, &["attest", "--nonce", NONCE, "--out", s(&rolled)])
        .ok();
    let out = verify(
        &rolled,
        NONCE,
        &["--expected-anchors", s(&old_bundle), "--ak", s(&ak)],
    )
    .code(1)
    .json();
    assert!(out["reason"].as_str().unwrap().contains(MISMATCH), "{out}");
    assert_eq!(out["counter_state"], "rolled-back");

    // Locked: the index name changes, and the verifier learns it.
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a)])
        .ok();
    verify(
        &doc_path,
        NONCE,
        &[
            "--expected-digest",
            &digest,
            "--ak",
            s(&ak),
            "--require-locked",
        ],
    )
    .code(1);
    env.tpm_run(&tpm, &["anchors", "lock"]).ok();
    let locked = env.path("locked.json");
    env.tpm_run(&tpm, &["attest", "--nonce", NONCE, "--out", s(&locked)])
        .ok();
    let out = verify(
        &locked,
        NONCE,
        &[
            "--expected-anchors",
            s(&bundle),
            "--ak",
            s(&ak),
            "--require-locked",
        ],
    )
    .ok()
    .json();
    assert_eq!(out["record_locked"], true, "{out}");
    assert_eq!(out["counter_locked"], true, "{out}");

    // Usage errors: no expectation, a nonce that is not hex or too long.
    env.run(&["attest", "verify", s(&doc_path), "--nonce", NONCE])
        .code(2);
    env.tpm_run(&tpm, &["attest", "--nonce", "xyz", "--out", s(&locked)])
        .code(2);
    env.tpm_run(
        &tpm,
        &["attest", "--nonce", &"00".repeat(65), "--out", s(&locked)],
    )
    .code(2);
}

fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).to_vec()
}

#[test]
fn enrollment_ties_the_ak_to_the_ek_and_pins_it_for_verification() {
    let env = Env::new();
    // A bare TPM has no EK certificate: not found.
    let bare = TestTpm::start();
    let out = env
        .tpm_run(
            &bare,
            &["attest", "enroll", "--out", s(&env.path("x.json"))],
        )
        .code(4);
    assert!(out.stderr.contains("no EK certificate"), "{}", out.stderr);
    drop(bare);

    let tpm = TestTpm::start_manufactured();
    let localca = Path::new("/var/lib/swtpm-localca");
    let (issuer, root) = (
        localca.join("issuercert.pem"),
        localca.join("swtpm-localca-rootca-cert.pem"),
    );
    let enrollment = env.path("enroll.json");
    env.tpm_run(
        &tpm,
        &[
            "attest",
            "enroll",
            "--out",
            s(&enrollment),
            "--ek-ca",
            s(&issuer),
            "--ek-ca",
            s(&root),
        ],
    )
    .ok();
    let doc = read_json(&enrollment);
    assert_eq!(doc["format"], "imgseal-ak-enrollment");
    assert_eq!(doc["activation"]["activated"], true);
    assert_eq!(doc["activation"]["ek_certificate_verified"], true);

    // openssl: the EK certificate chains to swtpm's local CA and holds the EK's key.
    let ek_cert = env.path("ek.pem");
    std::fs::write(&ek_cert, doc["ek"]["certificate_pem"].as_str().unwrap()).unwrap();
    openssl(&[
        "verify",
        "-CAfile",
        s(&root),
        "-untrusted",
        s(&issuer),
        s(&ek_cert),
    ])
    .ok();
    let cert_key = openssl(&["x509", "-in", s(&ek_cert), "-noout", "-pubkey"])
        .ok()
        .stdout;
    assert_eq!(
        cert_key.trim(),
        doc["ek"]["public_key_pem"].as_str().unwrap().trim()
    );
    // A CA that did not issue it is refused.
    let stranger = cert_file(env.work.path(), "stranger");
    let out = env
        .tpm_run(
            &tpm,
            &[
                "attest",
                "enroll",
                "--out",
                s(&env.path("y.json")),
                "--ek-ca",
                s(&stranger),
            ],
        )
        .code(1);
    assert!(out.stderr.contains("does not chain"), "{}", out.stderr);

    // tpm2-tools, independently: a credential made in software for the
    // document's EK and AK name is released by this TPM's AK and EK.
    let ek_area = hex::decode(doc["ek"]["public_area"].as_str().unwrap()).unwrap();
    let mut tpm2b = (ek_area.len() as u16).to_be_bytes().to_vec();
    tpm2b.extend_from_slice(&ek_area);
    let (ek_pub, secret, cred) = (
        env.path("ek.pub"),
        env.path("secret.bin"),
        env.path("made.cred"),
    );
    std::fs::write(&ek_pub, tpm2b).unwrap();
    std::fs::write(&secret, b"enrollment round trip 42").unwrap();
    tpm.tool_ok(
        "tpm2_makecredential",
        &[
            "-T",
            "none",
            "-u",
            s(&ek_pub),
            "-s",
            s(&secret),
            "-n",
            doc["ak"]["name"].as_str().unwrap(),
            "-o",
            s(&cred),
        ],
    );
    let released = tpm2_tools_activate(&tpm, env.work.path(), &std::fs::read(&cred).unwrap());
    assert_eq!(released.as_deref(), Some(&b"enrollment round trip 42"[..]));

    // The enrolled AK is the one that signs attestations, and pins them.
    let a = cert_file(env.work.path(), "a");
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a)])
        .ok();
    let att = env.path("att.json");
    env.tpm_run(&tpm, &["attest", "--nonce", NONCE, "--out", s(&att)])
        .ok();
    assert_eq!(read_json(&att)["ak"], doc["ak"]);
    let bundle = env.home.path().join("anchors/bundle");
    let out = env
        .run(&[
            "--json",
            "attest",
            "verify",
            s(&att),
            "--nonce",
            NONCE,
            "--expected-anchors",
            s(&bundle),
            "--ak",
            s(&enrollment),
        ])
        .ok()
        .json();
    assert_eq!(out["ak_pinned"], true);
}

/// tpm2-tools' credential file (`tpm2_makecredential -o`): magic, version,
/// TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
fn tpm2_tools_credential(challenge: &Value) -> Vec<u8> {
    let mut out = 0xBADC_C0DEu32.to_be_bytes().to_vec();
    out.extend_from_slice(&1u32.to_be_bytes());
    for field in ["id_object", "encrypted_secret"] {
        let bytes = hex::decode(challenge[field].as_str().unwrap()).unwrap();
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

/// tpm2_activatecredential with the TPM's AK and EK; whether the TPM released it.
fn tpm2_tools_activate(tpm: &TestTpm, dir: &Path, credential: &[u8]) -> Option<Vec<u8>> {
    let (cred, released, session) = (
        dir.join("cred.bin"),
        dir.join("released.bin"),
        dir.join("session.ctx"),
    );
    std::fs::write(&cred, credential).unwrap();
    let _ = std::fs::remove_file(&released);
    tpm.tool_ok(
        "tpm2_startauthsession",
        &["--policy-session", "-S", s(&session)],
    );
    tpm.tool_ok("tpm2_policysecret", &["-S", s(&session), "-c", "e"]);
    let out = tpm.tool(
        "tpm2_activatecredential",
        &[
            "-c",
            "0x81018000",
            "-C",
            "0x81010001",
            "-i",
            s(&cred),
            "-o",
            s(&released),
            "-P",
            &format!("session:{}", s(&session)),
        ],
    );
    let _ = tpm.tool("tpm2_flushcontext", &[s(&session)]);
    out.status
        .success()
        .then(|| std::fs::read(&released).unwrap())
}

/// tpm2-tools opening an imgseal challenge file with the TPM's AK and EK.
fn tpm2_tools_open(tpm: &TestTpm, dir: &Path, challenge: &Path) -> Option<Vec<u8>> {
    tpm2_tools_activate(tpm, dir, &tpm2_tools_credential(&read_json(challenge)))
}

/// The verifier confirms the enrollment itself: its own secret, bound by
/// MakeCredential (in software, without a TPM) to the enrolled EK and AK name, comes back
/// only from the host whose TPM holds both. Another host, a forged
/// enrollment, an altered or stale response, or another enrollment document
/// all fail; tpm2-tools shows the binding is the TPM's, not only imgseal's.
#[test]
fn remote_enrollment_is_confirmed_only_by_the_tpm_holding_ek_and_ak() {
    let localca = Path::new("/var/lib/swtpm-localca");
    let (issuer, root) = (
        localca.join("issuercert.pem"),
        localca.join("swtpm-localca-rootca-cert.pem"),
    );
    // The verifier has no TPM: MakeCredential runs in software.
    let verifier = Env::new();
    let (host_a, tpm_a) = (Env::new(), TestTpm::start_manufactured());
    let (host_b, tpm_b) = (Env::new(), TestTpm::start_manufactured());
    let enroll = |env: &Env, tpm: &TestTpm| {
        let path = env.path("enrollment.json");
        env.tpm_run(tpm, &["attest", "enroll", "--out", s(&path)])
            .ok();
        path
    };
    let (enroll_a, enroll_b) = (enroll(&host_a, &tpm_a), enroll(&host_b, &tpm_b));
    let challenge = |enrollment: &Path, name: &str, extra: &[&str]| {
        let (out, secret) = (
            verifier.path(&format!("{name}.challenge.json")),
            verifier.path(&format!("{name}.secret.json")),
        );
        let mut args = vec![
            "attest",
            "challenge",
            s(enrollment),
            "--out",
            s(&out),
            "--secret-out",
            s(&secret),
        ];
        args.extend_from_slice(extra);
        (verifier.run(&args), out, secret)
    };
    let activate = |env: &Env, tpm: &TestTpm, challenge: &Path, name: &str| {
        let out = env.path(&format!("{name}.response.json"));
        (
            env.tpm_run(tpm, &["attest", "activate", s(challenge), "--out", s(&out)]),
            out,
        )
    };
    let confirm = |enrollment: &Path, secret: &Path, response: &Path| {
        let out = verifier.path("confirmed.json");
        let _ = std::fs::remove_file(&out);
        let run = verifier.run(&[
            "--json",
            "attest",
            "confirm",
            s(enrollment),
            "--secret",
            s(secret),
            "--response",
            s(response),
            "--out",
            s(&out),
        ]);
        (run, out)
    };
    let ca_args = ["--ek-ca", s(&issuer), "--ek-ca", s(&root)];

    // The honest round trip.
    let (run, chal, secret) = challenge(&enroll_a, "a", &ca_args);
    run.ok();
    assert!(
        !verifier.home.path().join("swtpm").exists(),
        "attest challenge started a TPM"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the kept secret is private");
    let kept = read_json(&secret)["secret"].as_str().unwrap().to_string();
    assert!(!std::fs::read_to_string(&chal).unwrap().contains(&kept));
    assert_eq!(
        read_json(&chal)["ak_name"],
        read_json(&enroll_a)["ak"]["name"]
    );
    let (run, response) = activate(&host_a, &tpm_a, &chal, "a");
    run.ok();
    let (run, confirmed) = confirm(&enroll_a, &secret, &response);
    assert_eq!(run.code(0).json()["verdict"], "valid");
    let kept_confirmed = verifier.path("a.confirmed.json");
    std::fs::copy(&confirmed, &kept_confirmed).unwrap();
    let confirmed = kept_confirmed;
    let doc = read_json(&confirmed);
    assert_eq!(doc["activation"]["verifier_confirmed"], true);
    assert_eq!(doc["activation"]["ek_certificate_verified"], true);
    assert_eq!(doc["ak"], read_json(&enroll_a)["ak"]);
    // tpm2-tools on host A releases the same secret from the challenge.
    let released = tpm2_tools_open(&tpm_a, host_a.work.path(), &chal);
    assert_eq!(released.map(hex::encode), Some(kept.clone()));

    // Host B cannot open A's challenge: imgseal names the AK mismatch, and
    // the TPM itself refuses (its AK has another name).
    let (run, _) = activate(&host_b, &tpm_b, &chal, "b-for-a");
    assert!(run.code(1).stderr.contains("made for another enrollment"));
    assert!(tpm2_tools_open(&tpm_b, host_b.work.path(), &chal).is_none());

    // A forged enrollment: B's EK with A's AK. Only a TPM holding both could
    // answer; A's TPM lacks the EK, B's the AK.
    let mut forged = read_json(&enroll_b);
    forged["ak"] = read_json(&enroll_a)["ak"].clone();
    let forged_path = verifier.path("forged.json");
    std::fs::write(&forged_path, serde_json::to_vec_pretty(&forged).unwrap()).unwrap();
    let (run, forged_chal, _) = challenge(&forged_path, "forged", &ca_args);
    run.ok();
    let (run, _) = activate(&host_a, &tpm_a, &forged_chal, "forged-a");
    let stderr = run.code(5).stderr;
    assert!(stderr.contains("TPM2_ActivateCredential"), "{stderr}");
    assert!(tpm2_tools_open(&tpm_a, host_a.work.path(), &forged_chal).is_none());
    assert!(tpm2_tools_open(&tpm_b, host_b.work.path(), &forged_chal).is_none());

    // An EK certificate that does not hold the EK public area's key, and an
    // EK certificate outside the given CA, are refused before any challenge.
    let mut swapped = read_json(&enroll_a);
    swapped["ek"]["certificate_pem"] = read_json(&enroll_b)["ek"]["certificate_pem"].clone();
    std::fs::write(&forged_path, serde_json::to_vec_pretty(&swapped).unwrap()).unwrap();
    let (run, _, _) = challenge(&forged_path, "swapped", &ca_args);
    assert!(run.code(1).stderr.contains("certifies another key"));
    // Without the manufacturer's CA nothing shows the EK is in a TPM at all.
    let (run, _, _) = challenge(&enroll_a, "no-ca", &[]);
    assert!(run.code(2).stderr.contains("--ek-ca"));

    // Descriptive fields are the verifier's own reading, not the host's: a
    // host that names another manufacturer and another AK name is confirmed
    // (its TPM does hold the keys) under the true names.
    let mut lying = read_json(&enroll_a);
    lying["ek"]["certificate_subject"] = Value::String("CN=Some famous TPM vendor".into());
    lying["ak"]["name"] = Value::String(format!("000b{}", "ab".repeat(32)));
    let lying_path = verifier.path("lying.json");
    std::fs::write(&lying_path, serde_json::to_vec_pretty(&lying).unwrap()).unwrap();
    let (run, lying_chal, lying_secret) = challenge(&lying_path, "lying", &ca_args);
    run.ok();
    let (run, lying_response) = activate(&host_a, &tpm_a, &lying_chal, "lying");
    run.ok();
    let (run, out) = confirm(&lying_path, &lying_secret, &lying_response);
    run.code(0);
    let told = read_json(&out);
    assert_eq!(
        told["ek"]["certificate_subject"],
        read_json(&enroll_a)["ek"]["certificate_subject"]
    );
    assert_eq!(told["ak"]["name"], read_json(&enroll_a)["ak"]["name"]);
    let stranger = cert_file(verifier.work.path(), "stranger");
    let (run, _, _) = challenge(&enroll_a, "stranger", &["--ek-ca", s(&stranger)]);
    assert!(run.code(1).stderr.contains("does not chain"));

    // An altered response, a response to an older challenge, and another
    // enrollment document do not confirm.
    let mut altered = read_json(&response);
    let mut bytes = hex::decode(altered["secret"].as_str().unwrap()).unwrap();
    bytes[0] ^= 1;
    altered["secret"] = Value::String(hex::encode(bytes));
    let altered_path = verifier.path("altered.json");
    std::fs::write(&altered_path, serde_json::to_vec(&altered).unwrap()).unwrap();
    let (run, out) = confirm(&enroll_a, &secret, &altered_path);
    let v = run.code(1).json();
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("does not hold the challenge's secret"),
        "{v}"
    );
    assert!(!out.exists(), "nothing is confirmed");
    let (run, _, newer_secret) = challenge(&enroll_a, "newer", &ca_args);
    run.ok();
    confirm(&enroll_a, &newer_secret, &response).0.code(1);
    let v = confirm(&enroll_b, &secret, &response).0.code(1).json();
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("not the enrollment document"),
        "{v}"
    );

    // `attest verify --ak` tells a confirmed enrollment from a self-report.
    let anchor = cert_file(host_a.work.path(), "a");
    host_a
        .tpm_run(&tpm_a, &["anchors", "seal", "--cert", s(&anchor)])
        .ok();
    let att = host_a.path("att.json");
    host_a
        .tpm_run(&tpm_a, &["attest", "--nonce", NONCE, "--out", s(&att)])
        .ok();
    let bundle = host_a.home.path().join("anchors/bundle");
    let verify = |ak: &Path| {
        verifier.run(&[
            "--json",
            "attest",
            "verify",
            s(&att),
            "--nonce",
            NONCE,
            "--expected-anchors",
            s(&bundle),
            "--ak",
            s(ak),
        ])
    };
    let v = verify(&confirmed).code(0).json();
    assert_eq!(v["ak_enrollment_confirmed"], true, "{v}");
    let v = verify(&enroll_a).code(0).json();
    assert_eq!(v["ak_enrollment_confirmed"], false, "{v}");
    let text = verifier
        .run(&[
            "attest",
            "verify",
            s(&att),
            "--nonce",
            NONCE,
            "--expected-anchors",
            s(&bundle),
            "--ak",
            s(&enroll_a),
        ])
        .code(0)
        .stdout;
    assert!(text.contains("the host's own report"), "{text}");
}

/// `doc` forged with a software P-256 key: the AK's public area carrying the
/// forger's point, the qualified signer of each TPMS_ATTEST recomputed for
/// it, the record's certified bytes changed by `edit`, both signed by the
/// forger. Well-formed throughout; only the key is not the TPM's.
fn forge_attestation(doc: &Value, edit: impl Fn(&mut Vec<u8>)) -> Value {
    use openssl::bn::BigNumContext;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::sign::Signer;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = EcKey::generate(&group).unwrap();
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    key.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut BigNumContext::new().unwrap())
        .unwrap();
    let pkey = PKey::from_ec_key(key).unwrap();
    // TPMT_PUBLIC ends with the ECC point: 0020 || x || 0020 || y.
    let mut area = hex::decode(doc["ak"]["public_area"].as_str().unwrap()).unwrap();
    let n = area.len();
    area[n - 66..n - 34].copy_from_slice(&x.to_vec_padded(32).unwrap());
    area[n - 32..].copy_from_slice(&y.to_vec_padded(32).unwrap());
    let mut name = vec![0x00, 0x0b];
    name.extend_from_slice(&sha2_digest(&area));
    let qualified = imgseal_tpm::endorsement_primary_qualified_name(&name);
    let mut forged = doc.clone();
    forged["ak"]["public_key_pem"] =
        Value::String(String::from_utf8(pkey.public_key_to_pem().unwrap()).unwrap());
    forged["ak"]["public_area"] = Value::String(hex::encode(&area));
    forged["ak"]["name"] = Value::String(hex::encode(&name));
    for part in ["record", "counter"] {
        let mut attest = hex::decode(forged[part]["attest"].as_str().unwrap()).unwrap();
        // TPMS_ATTEST: magic (4), type (2), qualifiedSigner (TPM2B_NAME).
        assert_eq!(&attest[6..8], &[0x00, 0x22], "a SHA-256 qualified name");
        attest[8..42].copy_from_slice(&qualified);
        if part == "record" {
            let len = attest.len();
            let mut contents = attest[len - 256..].to_vec();
            edit(&mut contents);
            attest[len - 256..].copy_from_slice(&contents);
            forged[part]["contents"] = Value::String(hex::encode(&contents));
        }
        let mut signer = Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
        signer.update(&attest).unwrap();
        forged[part]["attest"] = Value::String(hex::encode(&attest));
        forged[part]["signature"] = Value::String(hex::encode(signer.sign_to_vec().unwrap()));
    }
    forged
}

/// A verifier builds the expected bundle from the certificates alone, with
/// no TPM: byte for byte the host's, and `attest verify` accepts the host's
/// attestation against it (and not against another version or set).
#[test]
fn a_verifier_builds_the_expected_bundle_without_a_tpm() {
    let host = Env::new();
    let tpm = TestTpm::start();
    let (a, b) = (
        cert_file(host.work.path(), "a"),
        cert_file(host.work.path(), "b"),
    );
    host.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&a), "--cert", s(&b)])
        .ok();
    let shown = host
        .tpm_run(&tpm, &["--json", "anchors", "show"])
        .ok()
        .json();
    let version = shown["version"]
        .as_u64()
        .or_else(|| shown["record"]["version"].as_u64())
        .unwrap_or_else(|| panic!("no version in {shown}"))
        .to_string();
    let doc = host.path("attest.json");
    host.tpm_run(&tpm, &["attest", "--nonce", NONCE, "--out", s(&doc)])
        .ok();

    // The verifier: its own home, no TPM named, none started.
    let verifier = Env::new();
    let build = |certs: &[&Path], version: &str, out: &str| {
        let mut args = vec![
            "anchors",
            "bundle",
            "--anchors-version",
            version,
            "--out",
            out,
        ];
        for c in certs {
            args.extend(["--cert", s(c)]);
        }
        let out = verifier.run(&args);
        assert!(
            !verifier.home.path().join("swtpm").exists(),
            "a TPM was started"
        );
        out
    };
    let expected = verifier.path("expected.bundle");
    build(&[&a, &b], &version, s(&expected)).ok();
    assert_eq!(
        std::fs::read(&expected).unwrap(),
        std::fs::read(host.home.path().join("anchors/bundle")).unwrap(),
        "the verifier's bundle is the host's"
    );
    let check = |bundle: &Path| {
        verifier.run(&[
            "--json",
            "attest",
            "verify",
            s(&doc),
            "--nonce",
            NONCE,
            "--expected-anchors",
            s(bundle),
        ])
    };
    assert_eq!(check(&expected).code(0).json()["valid"], true);
    let other_version = verifier.path("v-other.bundle");
    let bumped = (version.parse::<u64>().unwrap() + 1).to_string();
    build(&[&a, &b], &bumped, s(&other_version)).ok();
    check(&other_version).code(1);
    let fewer = verifier.path("fewer.bundle");
    build(&[&a], &version, s(&fewer)).ok();
    check(&fewer).code(1);
}

/// Software MakeCredential (what `attest challenge` runs, without a TPM)
/// for both EK kinds, activated by a real swtpm: the TPM releases the secret
/// for the right EK and AK name, and refuses one made for another name.
#[test]
fn a_software_credential_is_activated_by_the_tpm_for_rsa_and_ecc_eks() {
    use imgseal_tpm::{AK_HANDLE, EkKind, Tcti, Tpm};
    let t = TestTpm::start();
    let tcti: Tcti = t.tcti().parse().unwrap();
    let mut tpm = Tpm::open(&tcti).unwrap();
    let ak = tpm.ak_create_or_load(AK_HANDLE).unwrap();
    for kind in [EkKind::Rsa2048, EkKind::EccP256] {
        let ek = tpm.ek_public(kind).unwrap();
        let area = ek.public_bytes().unwrap();
        for secret in [&b"s"[..], &[0x5a; 32][..]] {
            let credential =
                imgseal::credential::make_credential(&area, ak.name(), secret).unwrap();
            let released = tpm.activate_credential(&ak, kind, &credential).unwrap();
            assert_eq!(released.as_slice(), secret, "{kind:?}");
        }
        // Bound to the name: made for another object's name, refused.
        let mut other = ak.name().to_vec();
        *other.last_mut().unwrap() ^= 1;
        let credential = imgseal::credential::make_credential(&area, &other, b"x").unwrap();
        let err = tpm
            .activate_credential(&ak, kind, &credential)
            .unwrap_err()
            .to_string();
        assert!(err.contains("TPM2_ActivateCredential"), "{kind:?}: {err}");
    }
    // A secret longer than the name hash is refused before any work.
    let ek = tpm.ek_public(EkKind::Rsa2048).unwrap();
    let err =
        imgseal::credential::make_credential(&ek.public_bytes().unwrap(), ak.name(), &[1; 33])
            .unwrap_err();
    assert!(err.to_string().contains("1 to 32 bytes"), "{err}");
}

/// `tpm2_makecredential -T none` (tpm2-tools' software MakeCredential) for
/// an enrolled host, put in a challenge document: `attest activate` opens it
/// as it opens imgseal's own, and the host's TPM releases the same secret.
#[test]
fn a_tpm2_tools_software_credential_is_activated_like_imgseals() {
    if std::process::Command::new("tpm2_makecredential")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: tpm2_makecredential is not installed");
        return;
    }
    let (host, tpm) = (Env::new(), TestTpm::start_manufactured());
    let enrollment = host.path("enrollment.json");
    host.tpm_run(&tpm, &["attest", "enroll", "--out", s(&enrollment)])
        .ok();
    let doc = read_json(&enrollment);
    let area = hex::decode(doc["ek"]["public_area"].as_str().unwrap()).unwrap();
    let mut tpm2b = (area.len() as u16).to_be_bytes().to_vec();
    tpm2b.extend_from_slice(&area);
    let (ek_pub, secret_file, cred) = (
        host.path("ek.pub"),
        host.path("secret.bin"),
        host.path("cred.out"),
    );
    std::fs::write(&ek_pub, &tpm2b).unwrap();
    let secret = [0xc3u8; 32];
    std::fs::write(&secret_file, secret).unwrap();
    let ak_name = doc["ak"]["name"].as_str().unwrap();
    tpm.tool_ok(
        "tpm2_makecredential",
        &[
            "-T",
            "none",
            "-u",
            s(&ek_pub),
            "-s",
            s(&secret_file),
            "-n",
            ak_name,
            "-o",
            s(&cred),
        ],
    );
    let theirs = imgseal_tpm::Credential::from_tpm2_tools(&std::fs::read(&cred).unwrap()).unwrap();
    let challenge = host.path("tools.challenge.json");
    std::fs::write(
        &challenge,
        serde_json::to_vec_pretty(&serde_json::json!({
            "format": "imgseal-ak-challenge",
            "version": 1,
            "ek_kind": doc["ek"]["kind"],
            "ak_name": ak_name,
            "id_object": hex::encode(&theirs.id_object),
            "encrypted_secret": hex::encode(&theirs.encrypted_secret),
        }))
        .unwrap(),
    )
    .unwrap();
    let response = host.path("tools.response.json");
    host.tpm_run(
        &tpm,
        &["attest", "activate", s(&challenge), "--out", s(&response)],
    )
    .ok();
    assert_eq!(read_json(&response)["secret"], hex::encode(secret));
    // The two software implementations agree on the shape of what they make.
    let ours = imgseal::credential::make_credential(&area, &hex::decode(ak_name).unwrap(), &secret)
        .unwrap();
    assert_eq!(ours.id_object.len(), theirs.id_object.len());
    assert_eq!(ours.encrypted_secret.len(), theirs.encrypted_secret.len());
}

/// One name for the AK in every attest command's output: `ak_fingerprint`
/// (SHA-256 of its SubjectPublicKeyInfo) in JSON, `AK sha256:<16 hex>` in
/// text; and `attest verify --ak` is the one flag that takes an AK.
#[test]
fn the_ak_has_one_name_in_every_attest_command() {
    let localca = Path::new("/var/lib/swtpm-localca");
    let ca_args = [
        "--ek-ca".to_string(),
        localca.join("issuercert.pem").display().to_string(),
        "--ek-ca".to_string(),
        localca
            .join("swtpm-localca-rootca-cert.pem")
            .display()
            .to_string(),
    ];
    let (host, tpm) = (Env::new(), TestTpm::start_manufactured());
    let verifier = Env::new();
    let p = |env: &Env, name: &str| env.path(name).display().to_string();
    let (enrollment, challenge, secret, response, confirmed, att) = (
        p(&host, "e.json"),
        p(&verifier, "c.json"),
        p(&verifier, "s.json"),
        p(&host, "r.json"),
        p(&verifier, "confirmed.json"),
        p(&host, "att.json"),
    );
    let fp = |run: Run| -> String {
        let v = run.ok().json();
        v["ak_fingerprint"]
            .as_str()
            .unwrap_or_else(|| panic!("no ak_fingerprint in {v}"))
            .to_string()
    };
    let enrolled = fp(host.tpm_run(&tpm, &["--json", "attest", "enroll", "--out", &enrollment]));
    assert_eq!(enrolled.len(), 64, "{enrolled}");
    let mut args = vec![
        "--json",
        "attest",
        "challenge",
        &enrollment,
        "--out",
        &challenge,
        "--secret-out",
        &secret,
    ];
    args.extend(ca_args.iter().map(String::as_str));
    assert_eq!(fp(verifier.run(&args)), enrolled, "challenge");
    assert_eq!(
        fp(host.tpm_run(
            &tpm,
            &[
                "--json", "attest", "activate", &challenge, "--out", &response
            ]
        )),
        enrolled,
        "activate"
    );
    assert_eq!(
        fp(verifier.run(&[
            "--json",
            "attest",
            "confirm",
            &enrollment,
            "--secret",
            &secret,
            "--response",
            &response,
            "--out",
            &confirmed,
        ])),
        enrolled,
        "confirm"
    );
    let anchor = cert_file(host.work.path(), "a");
    host.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&anchor)])
        .ok();
    assert_eq!(
        fp(host.tpm_run(&tpm, &["--json", "attest", "--nonce", NONCE, "--out", &att])),
        enrolled,
        "attest"
    );
    let bundle = host.home.path().join("anchors/bundle");
    assert_eq!(
        fp(verifier.run(&[
            "--json",
            "attest",
            "verify",
            &att,
            "--nonce",
            NONCE,
            "--expected-anchors",
            s(&bundle),
            "--ak",
            &confirmed,
        ])),
        enrolled,
        "verify"
    );
    // The text of each names it the same way.
    let short = format!("AK sha256:{}", &enrolled[..16]);
    for text in [
        verifier.run(&args[1..]).ok().stdout,
        host.tpm_run(
            &tpm,
            &["attest", "activate", &challenge, "--out", &response],
        )
        .ok()
        .stdout,
        verifier
            .run(&[
                "attest",
                "confirm",
                &enrollment,
                "--secret",
                &secret,
                "--response",
                &response,
                "--out",
                &confirmed,
            ])
            .ok()
            .stdout,
        host.tpm_run(&tpm, &["attest", "--nonce", NONCE, "--out", &att])
            .ok()
            .stdout,
    ] {
        assert!(text.contains(&short), "{short} not in {text}");
    }
}

/// `-o -` (issue #14, item 4): each attest document can go to standard
/// output for a pipe, the line for people then goes to stderr, and `--json`
/// with `-o -` is refused; the secret of a challenge never goes to stdout.
#[test]
fn attest_documents_can_be_written_to_stdout() {
    let (env, tpm) = (Env::new(), TestTpm::start_manufactured());
    let anchor = cert_file(env.work.path(), "a");
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&anchor)])
        .ok();
    let run = env
        .tpm_run(&tpm, &["attest", "--nonce", NONCE, "-o", "-"])
        .ok();
    let doc: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the document ({e}): {}", run.stdout));
    assert!(run.stderr.contains("written to -"), "{}", run.stderr);
    // The document on stdout is the one a file would hold: it verifies.
    let att = env.path("att.json");
    std::fs::write(&att, &run.stdout).unwrap();
    let bundle = env.home.path().join("anchors/bundle");
    let v = env
        .run(&[
            "--json",
            "attest",
            "verify",
            s(&att),
            "--nonce",
            NONCE,
            "--expected-anchors",
            s(&bundle),
        ])
        .ok()
        .json();
    assert_eq!(v["verdict"], "valid", "{v}");
    assert_eq!(doc["anchors"]["version"], v["version"]);
    // Enrollment likewise.
    let run = env.tpm_run(&tpm, &["attest", "enroll", "-o", "-"]).ok();
    let enrollment: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        enrollment["ak"]["public_key_pem"].is_string(),
        "{enrollment}"
    );
    // --json and -o - both want stdout: refused, nothing asked of the TPM.
    let run = env
        .tpm_run(&tpm, &["--json", "attest", "--nonce", NONCE, "-o", "-"])
        .code(2);
    assert!(
        run.stderr.contains("both write to stdout"),
        "{}",
        run.stderr
    );
    assert_eq!(run.json()["exit_code"], 2);
    let e = env.path("e.json");
    std::fs::write(&e, serde_json::to_vec(&enrollment).unwrap()).unwrap();
    let run = env
        .run(&[
            "attest",
            "challenge",
            s(&e),
            "-o",
            "c.json",
            "--secret-out",
            "-",
            "--ek-ca",
            "/var/lib/swtpm-localca/issuercert.pem",
        ])
        .code(2);
    assert!(run.stderr.contains("never printed"), "{}", run.stderr);
    assert!(run.stdout.is_empty() && !env.path("c.json").exists());
}
