//! Secret hygiene: "PINs and TPM auth values come from the URI, the
//! environment, a file or a prompt; they are zeroized after use, never put on
//! the argv of a spawned process, and never printed."
//!
//! One test runs every command family (key, cert, sign in every format and
//! with --manifest, verify, digest, anchors, attest, attest verify, attest
//! enroll, every --help) with `-vv` and `IMGSEAL_LOG=trace`, against an
//! operator's SoftHSM token whose PIN is distinctive and a swtpm whose owner
//! authorization is distinctive, taking them from every source, and runs the
//! failing cases too (wrong PIN, wrong owner authorization, malformed URIs
//! holding a PIN). No captured stdout or stderr, and no file imgseal wrote,
//! may hold a secret, in clear, hex or base64. Another test starts the
//! embedded swtpm through wrappers that record the argv and environment of
//! every process imgseal spawns (swtpm, swtpm_setup, and what swtpm_setup
//! runs), with the secrets in imgseal's environment.
//!
//! Not covered, on purpose: `TSS2_LOG=…+trace` set by the user turns on
//! tpm2-tss's own trace, whose `esys_crypto` module dumps HMAC keys (the
//! owner authorization among them); imgseal leaves the user's TSS2_LOG alone
//! and only silences ESYS below -vv. A `pin-value` in imgseal's own command
//! line is in /proc/PID/cmdline for the life of the process, and clap keeps
//! copies of it that are not zeroized; `pin-source` avoids both.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::tpm::TestTpm;
use common::*;

const PIN: &str = "Pn7Hq2-hygiene-91xz";
const SO_PIN: &str = "So4Kd8-hygiene-55qw";
const WRONG_PIN: &str = "Wr5Zp1-hygiene-33mn";
const OWNER: &str = "Ow3Xv6-hygiene-77tb";
const WRONG_OWNER: &str = "Wx8Jm2-hygiene-44rc";
const PLATFORM: &str = "Pf5Qz1-hygiene-90kd";
const WRONG_PLATFORM: &str = "Pw2Lc7-hygiene-13sx";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A secret as it could leak: in clear, in hex (either case), in base64.
fn forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let b = secret.as_bytes();
    vec![
        secret.to_string(),
        hex::encode(b),
        hex::encode_upper(b),
        base64::engine::general_purpose::STANDARD.encode(b),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
    ]
}

/// Every command imgseal ran, with what it printed.
struct Recorder<'a> {
    env: &'a Env,
    conf: PathBuf,
    tcti: String,
    runs: Vec<(String, Run)>,
}

impl Recorder<'_> {
    fn command(&self, vars: &[(&str, &str)]) -> Command {
        let mut cmd = self.env.command();
        cmd.env("SOFTHSM2_CONF", &self.conf)
            .env("IMGSEAL_LOG", "trace")
            // -vv keeps ESYS's own logging at its default level (main.rs).
            .env_remove("TSS2_LOG")
            .arg("-vv");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs imgseal, records the run, and checks its exit code.
    fn run(&mut self, what: &str, vars: &[(&str, &str)], args: &[&str], code: i32) -> Run {
        let out = Run::from_output(self.command(vars).args(args).output().unwrap());
        assert_eq!(
            out.code, code,
            "{what}: {args:?}: exit {}: {}{}",
            out.code, out.stdout, out.stderr
        );
        self.runs.push((what.to_string(), clone_run(&out)));
        out
    }

    /// The same with `--tcti <the test TPM>` first.
    fn tpm(&mut self, what: &str, vars: &[(&str, &str)], args: &[&str], code: i32) -> Run {
        let tcti = self.tcti.clone();
        let mut all = vec!["--tcti", tcti.as_str()];
        all.extend_from_slice(args);
        self.run(what, vars, &all, code)
    }
}

fn clone_run(r: &Run) -> Run {
    Run {
        code: r.code,
        stdout: r.stdout.clone(),
        stderr: r.stderr.clone(),
    }
}

/// No recorded output and no file under `dirs` holds any form of any secret.
fn assert_no_secret(runs: &[(String, Run)], dirs: &[&Path], secrets: &[&str]) {
    let forms: Vec<(String, &str)> = secrets
        .iter()
        .flat_map(|s| forms(s).into_iter().map(move |f| (f, *s)))
        .collect();
    for (what, run) in runs {
        for (form, secret) in &forms {
            assert!(
                !run.stdout.contains(form.as_str()) && !run.stderr.contains(form.as_str()),
                "{what}: a form of {secret:?} ({form}) was printed:\n{}\n{}",
                run.stdout,
                run.stderr
            );
        }
    }
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    for f in files {
        let bytes = fs::read(&f).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for (form, secret) in &forms {
            assert!(
                !text.contains(form.as_str()),
                "{}: holds a form of {secret:?}",
                f.display()
            );
        }
    }
}

#[test]
fn no_command_prints_a_pin_or_the_owner_authorization() {
    let env = Env::new();
    let (dir, conf) = operator_token("imgseal-hygiene-", "hygiene-hsm", SO_PIN, PIN);
    let secrets_dir = dir.path().join("secrets");
    fs::create_dir(&secrets_dir).unwrap();
    let secret_file = |name: &str, content: &str| {
        let p = secrets_dir.join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        p
    };
    let pin_file = secret_file("pin", &format!("{PIN}\n"));
    let wrong_pin_file = secret_file("wrong-pin", WRONG_PIN);
    let owner_file = secret_file("owner", &format!("{OWNER}\n"));
    let owner_hex_file = secret_file("owner-hex", &format!("hex:{}", hex::encode(OWNER)));
    let wrong_owner_file = secret_file("wrong-owner", WRONG_OWNER);
    let platform_file = secret_file("platform", &format!("{PLATFORM}\n"));
    let wrong_platform_file = secret_file("wrong-platform", WRONG_PLATFORM);
    let owner_hex = format!("hex:{}", hex::encode(OWNER));

    let tpm = TestTpm::start_manufactured();
    tpm.tool_ok("tpm2_changeauth", &["-c", "owner", OWNER]);
    tpm.tool_ok("tpm2_changeauth", &["-c", "platform", PLATFORM]);

    let module = softhsm_module();
    let plain = format!("pkcs11:token=hygiene-hsm?module-path={module}");
    let by_value = format!("{plain}&pin-value={PIN}");
    let by_source = format!("{plain}&pin-source={}", pin_file.display());
    let env_pin = [("IMGSEAL_PIN", PIN)];
    let env_pin_file = [("IMGSEAL_PIN_FILE", s(&pin_file))];
    let env_token = [("IMGSEAL_TOKEN", by_value.as_str())];
    let mut r = Recorder {
        env: &env,
        conf: conf.clone(),
        tcti: tpm.tcti(),
        runs: Vec::new(),
    };

    // ---- keys
    let rsa = r
        .run(
            "key generate (pin-value)",
            &[],
            &[
                "--token",
                &by_value,
                "key",
                "generate",
                "--type",
                "rsa-pss-2048",
                "--label",
                "rsa",
            ],
            0,
        )
        .stdout
        .trim()
        .to_string();
    let ecc = r
        .run(
            "key generate ($IMGSEAL_TOKEN)",
            &env_token,
            &[
                "key",
                "generate",
                "--type",
                "ecc-secp384r1",
                "--label",
                "ecc",
            ],
            0,
        )
        .stdout
        .trim()
        .to_string();
    r.run(
        "key list (pin-source)",
        &[],
        &["--token", &by_source, "key", "list"],
        0,
    );
    r.run(
        "key list --json ($IMGSEAL_PIN)",
        &env_pin,
        &["--token", &plain, "--json", "key", "list"],
        0,
    );
    r.run(
        "key show ($IMGSEAL_PIN_FILE)",
        &env_pin_file,
        &["key", "show", &rsa],
        0,
    );
    r.run(
        "key show --json (pin-value in the key URI)",
        &[],
        &["--json", "key", "show", &format!("{ecc}&pin-value={PIN}")],
        0,
    );
    let mut issued = Vec::new();
    for (label, uri) in [("ecc", &ecc), ("rsa", &rsa)] {
        let csr = env.path(&format!("{label}.csr"));
        r.run(
            "key csr ($IMGSEAL_PIN)",
            &env_pin,
            &[
                "--token",
                &plain,
                "key",
                "csr",
                "--key",
                uri,
                "--subject",
                &format!("CN={label}"),
                "--out",
                s(&csr),
            ],
            0,
        );
        let crt = env.path(&format!("{label}.crt"));
        test_ca().issue(&csr, &crt);
        issued.push(crt);
    }

    // ---- certificates
    let ca = test_ca().dir.join("ca.crt");
    r.run(
        "cert import (pin-value)",
        &[],
        &[
            "--token",
            &by_value,
            "cert",
            "import",
            "--id",
            "ecc-cert",
            s(&issued[0]),
        ],
        0,
    );
    r.run(
        "cert import ($IMGSEAL_TOKEN)",
        &env_token,
        &["cert", "import", "--id", "rsa-cert", s(&issued[1])],
        0,
    );
    r.run(
        "cert import ($IMGSEAL_PIN_FILE)",
        &env_pin_file,
        &["--token", &plain, "cert", "import", "--id", "ca", s(&ca)],
        0,
    );
    r.run(
        "cert list",
        &env_pin,
        &["--token", &by_source, "cert", "list"],
        0,
    );
    r.run("cert show", &env_token, &["cert", "show", "ecc-cert"], 0);
    let exported = env.path("exported.pem");
    r.run(
        "cert export",
        &env_pin,
        &[
            "--token",
            &plain,
            "cert",
            "export",
            "ecc-cert",
            "--out",
            s(&exported),
        ],
        0,
    );
    r.run(
        "cert verify",
        &[],
        &[
            "--token",
            &by_value,
            "--json",
            "cert",
            "verify",
            "ecc-cert",
            "rsa-cert",
            "--trusted-cert-id",
            "ca",
        ],
        0,
    );

    // ---- sign, every format, a manifest, a batch
    let image = env.image("img.raw", 300_000);
    let image2 = env.image("img2.raw", 200_000);
    let props = r
        .run(
            "sign --format json",
            &[],
            &[
                "--token",
                &by_value,
                "sign",
                "--key",
                &ecc,
                "--cert-id",
                "ecc-cert",
                s(&image),
            ],
            0,
        )
        .json();
    let props = write_props(&env, "props.json", &props);
    r.run(
        "sign --format openstack",
        &env_pin,
        &[
            "--token",
            &plain,
            "sign",
            "--key",
            &rsa,
            "--cert-id",
            "rsa-cert",
            "--format",
            "openstack",
            s(&image),
        ],
        0,
    );
    r.run(
        "sign --format env",
        &env_pin_file,
        &[
            "--token",
            &plain,
            "sign",
            "--key",
            &rsa,
            "--cert-id",
            "rsa-cert",
            "--format",
            "env",
            "--hash",
            "SHA-512",
            s(&image),
        ],
        0,
    );
    let manifest = env.path("img.manifest.json");
    let tree = env.path("img.tree");
    r.run(
        "sign --manifest --tree",
        &[],
        &[
            "--token",
            &by_source,
            "sign",
            "-q",
            "--key",
            &ecc,
            "--cert-id",
            "ecc-cert",
            "--manifest",
            s(&manifest),
            "--tree",
            s(&tree),
            s(&image),
        ],
        0,
    );
    let batch = env.path("batch");
    fs::create_dir(&batch).unwrap();
    r.run(
        "sign two images with manifests",
        &env_token,
        &[
            "--json",
            "sign",
            "-q",
            "--key",
            &ecc,
            "--cert-id",
            "ecc-cert",
            "--manifest",
            s(&batch),
            s(&image),
            s(&image2),
        ],
        0,
    );

    // ---- verify, digest
    r.run(
        "verify --props",
        &env_pin,
        &["--token", &plain, "verify", "--props", s(&props), s(&image)],
        0,
    );
    r.run(
        "verify --json --trusted-cert-id",
        &[],
        &[
            "--token",
            &by_value,
            "--json",
            "verify",
            "--props",
            s(&props),
            "--trusted-cert-id",
            "ca",
            s(&image),
        ],
        0,
    );
    r.run(
        "verify --manifest",
        &env_token,
        &["verify", "--manifest", s(&manifest), s(&image)],
        0,
    );
    r.run(
        "verify --manifest --range",
        &env_token,
        &[
            "verify",
            "--manifest",
            s(&manifest),
            "--range",
            "4096:8192",
            s(&image),
        ],
        0,
    );
    r.run("digest", &env_pin, &["digest", s(&image)], 0);
    r.run(
        "digest --tree",
        &env_token,
        &[
            "--json",
            "digest",
            "--tree",
            "fsverity",
            "--with-linear",
            s(&image),
        ],
        0,
    );

    // ---- the TPM, with the owner authorization from each source
    let other = env.path("other.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&env.path("other.key")),
        "-subj",
        "/CN=other",
        "-days",
        "3",
        "-out",
        s(&other),
    ])
    .ok();
    let owner_env = [("IMGSEAL_TPM_OWNER_AUTH", OWNER)];
    let owner_env_hex = [("IMGSEAL_TPM_OWNER_AUTH", owner_hex.as_str())];
    r.tpm(
        "anchors seal (--owner-auth-file)",
        &[],
        &[
            "anchors",
            "seal",
            "--cert",
            s(&ca),
            "--owner-auth-file",
            s(&owner_file),
            "--platform-auth-file",
            s(&platform_file),
        ],
        0,
    );
    r.tpm(
        "anchors show",
        &owner_env,
        &["--json", "anchors", "show"],
        0,
    );
    r.tpm(
        "anchors add ($IMGSEAL_TPM_OWNER_AUTH)",
        &owner_env,
        &["anchors", "add", "--cert", s(&other)],
        0,
    );
    r.tpm(
        "anchors remove ($IMGSEAL_TPM_OWNER_AUTH hex:)",
        &owner_env_hex,
        &["--json", "anchors", "remove", "other"],
        0,
    );
    let doc = env.path("attestation.json");
    r.tpm(
        "attest (--owner-auth-file hex:)",
        &[],
        &[
            "attest",
            "--nonce",
            "0123456789abcdef",
            "--out",
            s(&doc),
            "--owner-auth-file",
            s(&owner_hex_file),
        ],
        0,
    );
    let bundle = env.home.path().join("anchors/bundle");
    r.run(
        "attest verify",
        &owner_env,
        &[
            "--json",
            "attest",
            "verify",
            s(&doc),
            "--nonce",
            "0123456789abcdef",
            "--expected-anchors",
            s(&bundle),
        ],
        0,
    );
    let enrollment = env.path("enrollment.json");
    r.tpm(
        "attest enroll ($IMGSEAL_TPM_OWNER_AUTH)",
        &owner_env,
        &["attest", "enroll", "--out", s(&enrollment)],
        0,
    );
    r.run(
        "attest verify --ak",
        &[],
        &[
            "attest",
            "verify",
            s(&doc),
            "--nonce",
            "0123456789abcdef",
            "--expected-anchors",
            s(&bundle),
            "--ak",
            s(&enrollment),
        ],
        0,
    );
    r.tpm(
        "verify with the sealed anchors",
        &env_pin,
        &[
            "--token",
            &plain,
            "--json",
            "verify",
            "--anchors",
            "tpm",
            "--props",
            s(&props),
            s(&image),
        ],
        0,
    );
    r.tpm(
        "cert verify with the sealed anchors",
        &env_token,
        &["cert", "verify", "ecc-cert", "--anchors", "tpm"],
        0,
    );

    // ---- failures
    let incorrect = "incorrect PIN for token \"hygiene-hsm\"";
    let wrong_token = format!("{plain}&pin-value={WRONG_PIN}");
    for (what, vars, args) in [
        (
            "wrong pin-value",
            vec![],
            vec![
                "--token".to_string(),
                format!("{plain}&pin-value={WRONG_PIN}"),
                "key".into(),
                "list".into(),
            ],
        ),
        (
            "wrong $IMGSEAL_PIN",
            vec![("IMGSEAL_PIN", WRONG_PIN)],
            vec![
                "--token".into(),
                plain.clone(),
                "sign".into(),
                "--key".into(),
                ecc.clone(),
                "--cert-id".into(),
                "ecc-cert".into(),
                s(&image).into(),
            ],
        ),
        (
            "wrong $IMGSEAL_PIN_FILE",
            vec![("IMGSEAL_PIN_FILE", s(&wrong_pin_file))],
            vec![
                "--token".into(),
                plain.clone(),
                "key".into(),
                "show".into(),
                rsa.clone(),
            ],
        ),
        (
            "wrong pin-source",
            vec![],
            vec![
                "--token".into(),
                format!("{plain}&pin-source={}", wrong_pin_file.display()),
                "--json".into(),
                "key".into(),
                "csr".into(),
                "--key".into(),
                ecc.clone(),
                "--subject".into(),
                "CN=x".into(),
                "--out".into(),
                s(&env.path("never.csr")).into(),
            ],
        ),
        (
            "wrong pin-value in $IMGSEAL_TOKEN",
            vec![("IMGSEAL_TOKEN", wrong_token.as_str())],
            vec![
                "cert".into(),
                "import".into(),
                "--id".into(),
                "x".into(),
                s(&ca).into(),
            ],
        ),
    ] {
        let vars: Vec<(&str, &str)> = vars;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = r.run(what, &vars, &args, 6);
        assert!(out.stderr.contains(incorrect), "{what}: {}", out.stderr);
    }
    // Malformed URIs around a PIN: refused without echoing it.
    for (what, uri) in [
        (
            "pin-value twice",
            format!("{plain}&pin-value={PIN}&pin-value={PIN}"),
        ),
        (
            "bad percent-encoding in pin-value",
            format!("{plain}&pin-value={PIN}%zz"),
        ),
        (
            "unencoded space in pin-value",
            format!("{plain}&pin-value={PIN} x"),
        ),
        (
            "pin-value and pin-source",
            format!("{by_source}&pin-value={PIN}"),
        ),
    ] {
        let out = r.run(what, &[], &["--token", &uri, "key", "list"], 3);
        assert!(
            out.stderr.contains("invalid PKCS#11 URI"),
            "{what}: {}",
            out.stderr
        );
        r.run(
            what,
            &[],
            &[
                "key",
                "show",
                &uri.replacen(
                    "pkcs11:token=hygiene-hsm",
                    "pkcs11:token=hygiene-hsm;object=ecc",
                    1,
                ),
            ],
            3,
        );
    }
    // A wrong owner authorization from each source (6), and a "hex:" value
    // that is not hex (2): never echoed.
    r.tpm(
        "wrong --owner-auth-file",
        &[],
        &[
            "anchors",
            "add",
            "--cert",
            s(&other),
            "--owner-auth-file",
            s(&wrong_owner_file),
        ],
        6,
    );
    r.tpm(
        "wrong $IMGSEAL_TPM_OWNER_AUTH",
        &[("IMGSEAL_TPM_OWNER_AUTH", WRONG_OWNER)],
        &["--json", "anchors", "seal", "--cert", s(&ca)],
        6,
    );
    r.tpm(
        "wrong $IMGSEAL_TPM_OWNER_AUTH, remove",
        &[("IMGSEAL_TPM_OWNER_AUTH", WRONG_OWNER)],
        &["--json", "anchors", "remove", "ca"],
        6,
    );
    r.tpm(
        "not hex",
        &[("IMGSEAL_TPM_OWNER_AUTH", &format!("hex:{OWNER}"))],
        &["anchors", "add", "--cert", s(&other)],
        2,
    );
    // A wrong platform authorization from each source: platform-created
    // indices are removed with it (6), never echoed.
    r.tpm(
        "wrong --platform-auth-file, clear",
        &owner_env,
        &[
            "anchors",
            "clear",
            "--platform-auth-file",
            s(&wrong_platform_file),
        ],
        6,
    );
    r.tpm(
        "wrong $IMGSEAL_TPM_PLATFORM_AUTH, clear",
        &[
            ("IMGSEAL_TPM_OWNER_AUTH", OWNER),
            ("IMGSEAL_TPM_PLATFORM_AUTH", WRONG_PLATFORM),
        ],
        &["--json", "anchors", "clear"],
        6,
    );
    // Then lock, and a write refused because of it (5).
    r.tpm("anchors lock", &owner_env, &["anchors", "lock"], 0);
    r.tpm(
        "anchors add when locked",
        &owner_env,
        &["anchors", "add", "--cert", s(&other)],
        5,
    );

    // ---- every --help, with a PIN-bearing $IMGSEAL_TOKEN (clap would print it)
    for cmd in [
        vec!["--help"],
        vec!["key", "--help"],
        vec!["key", "generate", "--help"],
        vec!["key", "list", "--help"],
        vec!["key", "show", "--help"],
        vec!["key", "csr", "--help"],
        vec!["cert", "--help"],
        vec!["cert", "import", "--help"],
        vec!["cert", "list", "--help"],
        vec!["cert", "show", "--help"],
        vec!["cert", "verify", "--help"],
        vec!["cert", "export", "--help"],
        vec!["sign", "--help"],
        vec!["sign", "-h"],
        vec!["verify", "--help"],
        vec!["digest", "--help"],
        vec!["anchors", "--help"],
        vec!["anchors", "seal", "--help"],
        vec!["anchors", "lock", "--help"],
        vec!["attest", "--help"],
        vec!["attest", "verify", "--help"],
        vec!["attest", "enroll", "--help"],
    ] {
        r.run(
            &format!("{cmd:?}"),
            &[
                ("IMGSEAL_TOKEN", &by_value),
                ("IMGSEAL_PIN", PIN),
                ("IMGSEAL_TPM_OWNER_AUTH", OWNER),
            ],
            &cmd,
            0,
        );
    }
    assert!(r.runs.len() >= 75, "{} runs", r.runs.len());
    // The logs were on (tss-esapi logs each context it closes at INFO;
    // imgseal itself logs little), so the check covers what they print.
    let logged: usize = r
        .runs
        .iter()
        .map(|(_, run)| {
            ["TRACE", "DEBUG", " INFO", " WARN", "ERROR"]
                .iter()
                .map(|level| run.stderr.matches(level).count())
                .sum::<usize>()
        })
        .sum();
    assert!(logged > 20, "only {logged} log lines were captured");

    // The embedded token's generated PINs are secrets too.
    let embedded = Env::new();
    let mut e = Recorder {
        env: &embedded,
        conf: conf.clone(),
        tcti: tpm.tcti(),
        runs: Vec::new(),
    };
    // No SOFTHSM2_CONF of the operator's: the embedded token's own.
    let uri = {
        let out = Run::from_output(
            e.command(&[])
                .env_remove("SOFTHSM2_CONF")
                .args(["key", "generate", "--type", "ecc-secp384r1", "--label", "e"])
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let uri = out.stdout.trim().to_string();
        e.runs.push(("embedded key generate".into(), out));
        uri
    };
    for args in [
        vec!["key", "list"],
        vec![
            "sign",
            "--key",
            &uri,
            "--cert-id",
            "none",
            "--no-cert-check",
            s(&image),
        ],
        vec![
            "key",
            "csr",
            "--key",
            &uri,
            "--subject",
            "CN=e",
            "--out",
            s(&embedded.path("e.csr")),
        ],
    ] {
        let out = Run::from_output(
            e.command(&[])
                .env_remove("SOFTHSM2_CONF")
                .args(&args)
                .output()
                .unwrap(),
        );
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        e.runs.push((format!("embedded {args:?}"), out));
    }
    let user_pin = embedded.user_pin();
    let so_pin = fs::read_to_string(embedded.home.path().join("so.pin")).unwrap();
    r.runs.append(&mut e.runs);

    assert_no_secret(
        &r.runs,
        &[
            env.work.path(),
            embedded.work.path(),
            &env.home.path().join("anchors"),
        ],
        &[
            PIN,
            SO_PIN,
            WRONG_PIN,
            OWNER,
            WRONG_OWNER,
            PLATFORM,
            WRONG_PLATFORM,
            &user_pin,
            &so_pin,
        ],
    );
}

/// Every process imgseal spawns goes through wrappers that record their argv
/// and environment: the embedded swtpm daemon, `swtpm_setup` that
/// manufactures it, and the swtpm that `swtpm_setup` runs. With the PIN, a
/// PIN-bearing token URI and the owner authorization in imgseal's
/// environment, none of them may receive one (the long-lived daemon had them
/// all in /proc/PID/environ before tpm/src/swtpm.rs removed them).
#[test]
fn spawned_processes_never_receive_a_secret_in_argv_or_environment() {
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

    let bin = env.path("wrappers");
    fs::create_dir(&bin).unwrap();
    let log = env.path("spawned.log");
    for name in ["swtpm", "swtpm_setup"] {
        let real = which(name);
        let wrapper = bin.join(name);
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n{{ printf 'argv:'; for a in \"$0\" \"$@\"; do printf ' %s' \"$a\"; done; echo; env | sed 's/^/env: /'; }} >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                real.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let token = format!(
        "pkcs11:token=x?module-path={}&pin-value={PIN}",
        softhsm_module()
    );
    let run = |args: &[&str]| {
        Run::from_output(
            env.command()
                .env("PATH", &path)
                .env("IMGSEAL_SWTPM", bin.join("swtpm"))
                .env("IMGSEAL_PIN", PIN)
                .env("IMGSEAL_TOKEN", &token)
                .env("IMGSEAL_TPM_OWNER_AUTH", OWNER)
                .env("IMGSEAL_TPM_PLATFORM_AUTH", PLATFORM)
                .env("IMGSEAL_LOG", "trace")
                .arg("-vv")
                .args(args)
                .output()
                .unwrap(),
        )
    };
    // The embedded TPM has empty owner and platform authorizations: this
    // seal is refused (6), after the daemon was manufactured and started.
    let ca = test_ca().dir.join("ca.crt");
    let out = run(&["anchors", "seal", "--cert", s(&ca)]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    let out2 = run(&["anchors", "show"]);
    assert_eq!(out2.code, 4, "{}", out2.stderr);

    let logged = fs::read_to_string(&log).expect("the wrappers ran");
    assert!(logged.contains("swtpm_setup"), "{logged}");
    assert!(logged.matches("argv:").count() >= 2, "{logged}");
    let pid = imgseal_tpm::swtpm::daemon_pid(&state).expect("the daemon runs");
    let cmdline = String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .replace('\0', " ");
    let environ = String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/environ")).unwrap())
        .replace('\0', "\n");
    for (what, text) in [
        ("wrapper log", &logged),
        ("daemon cmdline", &cmdline),
        ("daemon environ", &environ),
    ] {
        for secret in [PIN, OWNER, PLATFORM] {
            for form in forms(secret) {
                assert!(
                    !text.contains(&form),
                    "{what} holds a form of {secret:?}:\n{text}"
                );
            }
        }
        assert!(
            !text.contains("IMGSEAL_PIN=")
                && !text.contains("IMGSEAL_TPM_OWNER_AUTH=")
                && !text.contains("IMGSEAL_TPM_PLATFORM_AUTH=")
                && !text.contains("IMGSEAL_TOKEN="),
            "{what}:\n{text}"
        );
    }
    for r in [&out, &out2] {
        for secret in [PIN, OWNER, PLATFORM] {
            for form in forms(secret) {
                assert!(
                    !r.stdout.contains(&form) && !r.stderr.contains(&form),
                    "{}",
                    r.stderr
                );
            }
        }
    }
}

fn which(name: &str) -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed"))
}

/// Processes are spawned in one place only (tpm/src/swtpm.rs, through a
/// helper that strips the secret-bearing variables). A new spawn site must
/// be reviewed for what it passes on argv and in the environment: this test
/// names it when one appears.
#[test]
fn processes_are_spawned_only_through_the_reviewed_helper() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    let mut stack = vec![root.join("src"), root.join("hsm/src"), root.join("tpm/src")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = fs::read_to_string(&p).unwrap();
                // Unit tests may run tools; only the code before them counts.
                let code = text.split("#[cfg(test)]").next().unwrap();
                for line in code.lines() {
                    let spawns = [
                        "Command::new(",
                        "process::Command",
                        "libc::fork",
                        "libc::exec",
                        "posix_spawn",
                    ]
                    .iter()
                    .any(|n| line.contains(n));
                    if spawns && !line.trim_start().starts_with("//") {
                        found.push(format!(
                            "{}: {}",
                            p.strip_prefix(root).unwrap().display(),
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
    found.sort();
    assert_eq!(
        found,
        ["tpm/src/swtpm.rs: let mut cmd = Command::new(program);"],
        "a new place spawns processes: check what it passes on argv and in the environment"
    );
}
