//! The bad-input matrix: every row of docs/bad-input.md, run against real
//! fixtures (a key and certificate in the embedded SoftHSM token, a signed
//! image with its properties, manifest and tree, anchors sealed in a swtpm,
//! an attestation document, and named malformed files). The document is the
//! single source of truth: this file only parses its tables and runs them.
//!
//! For each row: the exit code is the documented one; the one-line message
//! holds the documented text; stderr is one `imgseal: …` line (or, for a
//! verdict, empty with the verdict on stdout); nothing panics; nothing hangs
//! (each process is killed after a generous timeout); no `{out}` file and no
//! `.imgseal-*` temp file is left; the token's keys and certificates and the
//! TPM's anchor record are as they were.
//!
//! Rows without `--tcti` run in parallel, each in its own copy of the
//! fixture `$IMGSEAL_HOME` (SoftHSM 2.6 is not safe for several processes on
//! one token). Rows with `--tcti` share one home and one swtpm and run one
//! after another, so a change to the TPM is pinned on the row that made it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::tpm::TestTpm;
use common::*;
use serde_json::{Value, json};

/// The nonce of the fixture attestation (`{nonce}`).
const NONCE: &str = "00112233445566778899aabbccddeeff";

/// Long enough for a loaded machine (fuzzers run beside the tests); a row
/// that takes this long is a hang, and its process is killed.
fn timeout() -> Duration {
    let secs = std::env::var("IMGSEAL_BAD_INPUT_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

// ---- the table ---------------------------------------------------------------

#[derive(Debug, Clone)]
struct Row {
    number: u32,
    /// 1-based line in docs/bad-input.md.
    line: usize,
    command: String,
    input: String,
    exit: i32,
    contains: String,
}

impl Row {
    fn name(&self) -> String {
        format!(
            "row {} (docs/bad-input.md:{}: `{}` — {})",
            self.number, self.line, self.command, self.input
        )
    }
}

const HEADER: [&str; 5] = ["#", "command", "input", "exit", "error contains"];

/// Cells of a Markdown table line; `\|` is a literal pipe.
fn split_cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().unwrap().push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().unwrap().push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// The text of a cell that is one code span (`` `x` `` or ``` `` x `` ```).
fn code_text(cell: &str) -> String {
    let ticks = cell.chars().take_while(|c| *c == '`').count();
    if ticks > 0 && cell.len() > 2 * ticks {
        let fence = "`".repeat(ticks);
        if let Some(inner) = cell
            .strip_prefix(fence.as_str())
            .and_then(|s| s.strip_suffix(fence.as_str()))
        {
            return inner.trim().to_string();
        }
    }
    cell.to_string()
}

fn parse_table(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for (i, line) in text.lines().enumerate() {
        if !line.trim_start().starts_with('|') {
            in_table = false;
            continue;
        }
        let cells = split_cells(line);
        if cells.iter().map(String::as_str).eq(HEADER) {
            in_table = true;
            continue;
        }
        if !in_table
            || cells
                .iter()
                .all(|c| c.chars().all(|c| c == '-' || c == ':'))
        {
            continue;
        }
        assert_eq!(
            cells.len(),
            5,
            "docs/bad-input.md:{}: a row has 5 cells: {line}",
            i + 1
        );
        let number = cells[0]
            .parse()
            .unwrap_or_else(|_| panic!("docs/bad-input.md:{}: row number {:?}", i + 1, cells[0]));
        let exit = cells[3]
            .parse()
            .unwrap_or_else(|_| panic!("docs/bad-input.md:{}: exit code {:?}", i + 1, cells[3]));
        rows.push(Row {
            number,
            line: i + 1,
            command: code_text(&cells[1]),
            input: cells[2].clone(),
            exit,
            contains: code_text(&cells[4]),
        });
    }
    rows
}

/// Shell-like words: blanks separate, '…' and "…" group (no escapes inside
/// '…'; \" and \\ inside "…").
fn tokenize(command: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated '".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => w.push(c),
                            None => return Err("unterminated \"".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("unterminated \"".into()),
                    }
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// `NAME=value` words before the arguments are environment variables.
fn split_env(words: Vec<String>) -> (Vec<(String, String)>, Vec<String>) {
    let mut env = Vec::new();
    let mut rest = words.into_iter().peekable();
    while let Some(w) = rest.peek() {
        let Some((name, value)) = w.split_once('=') else {
            break;
        };
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !is_name {
            break;
        }
        env.push((name.to_string(), value.to_string()));
        rest.next();
    }
    (env, rest.collect())
}

// ---- running imgseal -----------------------------------------------------------

struct Outcome {
    /// None: killed by a signal (or by the timeout).
    code: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

/// Runs imgseal with `home` as $IMGSEAL_HOME in `cwd`, stdin empty, stdout
/// and stderr in files beside `capture` (so a chatty process cannot block on
/// a full pipe), killed after `timeout()`.
fn run_imgseal(
    home: &Path,
    cwd: &Path,
    env: &[(String, String)],
    args: &[String],
    capture: &Path,
) -> Outcome {
    let out_path = capture.with_extension("stdout");
    let err_path = capture.with_extension("stderr");
    let mut cmd = Command::new(bin());
    cmd.env("IMGSEAL_HOME", home)
        .env("RUST_BACKTRACE", "1")
        .env("NO_COLOR", "1")
        .env("TSS2_LOG", "all+none");
    for var in [
        "IMGSEAL_PIN",
        "IMGSEAL_PIN_FILE",
        "IMGSEAL_TOKEN",
        "IMGSEAL_PKCS11_MODULE",
        "IMGSEAL_CONFIG",
        "IMGSEAL_TPM_OWNER_AUTH",
        "IMGSEAL_LOG",
        "SOFTHSM2_CONF",
        "TPM2TOOLS_TCTI",
        "TCTI",
        "OS_TRUSTED_IMAGE_CERTIFICATE_IDS",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().expect("imgseal starts");
    let start = Instant::now();
    let limit = timeout();
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break (status, false);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            break (child.wait().unwrap(), true);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    Outcome {
        code: status.code(),
        stdout: read(&out_path),
        stderr: read(&err_path),
        timed_out,
    }
}

/// Runs a setup step that must succeed.
#[track_caller]
fn setup(home: &Path, cwd: &Path, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let capture = cwd.join(".setup");
    let out = run_imgseal(home, cwd, &[], &args, &capture);
    let _ = fs::remove_file(capture.with_extension("stdout"));
    let _ = fs::remove_file(capture.with_extension("stderr"));
    assert_eq!(
        out.code,
        Some(0),
        "setup {args:?}: {}{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

// ---- fixtures -------------------------------------------------------------------

struct Fixtures {
    /// Keeps the template home and the fixture files.
    env: Env,
    scratch: tempfile::TempDir,
    /// The swtpm the TPM rows talk to, kept running.
    _tpm: TestTpm,
    tpm_home: PathBuf,
    vars: BTreeMap<&'static str, String>,
    bad: PathBuf,
    /// The token's keys and certificates in the template home.
    token: Value,
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn write_json(path: &Path, v: &Value) {
    fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    fs::set_permissions(to, fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `--json key list` and `--json cert list` in `home`.
fn token_state(home: &Path, cwd: &Path, capture: &Path) -> Result<Value, String> {
    let mut state = json!({});
    for (name, args) in [
        ("keys", ["--json", "key", "list"]),
        ("certificates", ["--json", "cert", "list"]),
    ] {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = run_imgseal(home, cwd, &[], &args, capture);
        if out.code != Some(0) {
            return Err(format!(
                "`imgseal {}` failed: {}",
                args.join(" "),
                out.stderr.trim()
            ));
        }
        state[name] = serde_json::from_str(&out.stdout)
            .map_err(|e| format!("`imgseal {}` is not JSON: {e}", args.join(" ")))?;
    }
    Ok(state)
}

/// What the TPM and the home hold of the anchors: the record, the counter,
/// the lock, and every file under `$IMGSEAL_HOME/anchors` byte for byte.
fn tpm_state(fx: &Fixtures, capture: &Path) -> Result<Value, String> {
    let args: Vec<String> = ["--tcti", &fx.vars["tcti"], "--json", "anchors", "show"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = run_imgseal(&fx.tpm_home, &fx.tpm_home, &[], &args, capture);
    let show: Value = serde_json::from_str(&out.stdout)
        .map_err(|e| format!("`anchors show` is not JSON ({e}): {}", out.stderr.trim()))?;
    let mut files = BTreeMap::new();
    let dir = fx.tpm_home.join("anchors");
    if let Ok(entries) = fs::read_dir(&dir) {
        for e in entries.flatten() {
            files.insert(
                e.file_name().to_string_lossy().into_owned(),
                hex::encode(fs::read(e.path()).unwrap_or_default()),
            );
        }
    }
    Ok(json!({
        "version": show["record"]["version"],
        "digest": show["record"]["digest"],
        "record": show["record"]["bytes"],
        "counter": show["counter"]["value"],
        "locked": show["locked"],
        "verdict": show["verdict"],
        "files": files,
    }))
}

impl Fixtures {
    fn build() -> Fixtures {
        let env = Env::new();
        let work = env.work.path().to_path_buf();
        let key = env.key_with_certificate("ecc-secp384r1", "signer", "signer-cert");
        let ca = test_ca().dir.join("ca.crt");
        env.run(&["cert", "import", "--id", "root", &s(&ca)]).ok();
        let certs = work.join("certs");
        fs::create_dir(&certs).unwrap();
        env.run(&[
            "cert",
            "export",
            "signer-cert",
            "--out",
            &s(&certs.join("signer-cert.pem")),
        ])
        .ok();
        fs::copy(&ca, certs.join("root.pem")).unwrap();
        let image = env.image("image.raw", 70_000);
        let props_text = env
            .run(&[
                "sign",
                "--key",
                &key,
                "--cert-id",
                "signer-cert",
                &s(&image),
            ])
            .ok()
            .stdout;
        let props_path = work.join("props.json");
        fs::write(&props_path, &props_text).unwrap();
        let manifest = work.join("image.manifest.json");
        let tree = work.join("image.tree");
        env.run(&[
            "sign",
            "--key",
            &key,
            "--cert-id",
            "signer-cert",
            "--manifest",
            &s(&manifest),
            "--tree",
            &s(&tree),
            &s(&image),
        ])
        .ok();

        let scratch = tempfile::Builder::new()
            .prefix("imgseal-bad-input-")
            .tempdir()
            .unwrap();
        // The TPM rows' home: the token as above, and anchors sealed in a
        // swtpm manufactured with an EK certificate (for `attest enroll`).
        let tpm = TestTpm::start_manufactured();
        let tcti = tpm.tcti();
        let tpm_home = scratch.path().join("tpm-home");
        copy_dir(env.home.path(), &tpm_home);
        let root_pem = certs.join("root.pem");
        setup(
            &tpm_home,
            &tpm_home,
            &["--tcti", &tcti, "anchors", "seal", "--cert", &s(&root_pem)],
        );
        let attestation = work.join("attestation.json");
        setup(
            &tpm_home,
            &tpm_home,
            &[
                "--tcti",
                &tcti,
                "attest",
                "--nonce",
                NONCE,
                "--out",
                &s(&attestation),
            ],
        );
        // Remote enrollment: the host's enrollment, a verifier's challenge for
        // it (made on the same swtpm: MakeCredential needs no secret of its
        // own) with the kept secret, and the host's response.
        let enrollment = work.join("enrollment.json");
        let challenge = work.join("challenge.json");
        let challenge_secret = work.join("challenge.secret.json");
        let response = work.join("response.json");
        // Both of swtpm's local CA certificates in one file, for --ek-ca.
        let ek_ca = work.join("ek-ca.pem");
        let mut pems = fs::read("/var/lib/swtpm-localca/issuercert.pem").unwrap();
        pems.extend(fs::read("/var/lib/swtpm-localca/swtpm-localca-rootca-cert.pem").unwrap());
        fs::write(&ek_ca, pems).unwrap();
        let (e, c, cs, r) = (
            s(&enrollment),
            s(&challenge),
            s(&challenge_secret),
            s(&response),
        );
        let steps: [&[&str]; 3] = [
            &["attest", "enroll", "--out", &e],
            &[
                "attest",
                "challenge",
                &e,
                "--out",
                &c,
                "--secret-out",
                &cs,
                "--ek-ca",
                &s(&ek_ca),
            ],
            &["attest", "activate", &c, "--out", &r],
        ];
        for step in steps {
            let mut all = vec!["--tcti", tcti.as_str()];
            all.extend_from_slice(step);
            setup(&tpm_home, &tpm_home, &all);
        }
        let show: Value = serde_json::from_str(&setup(
            &tpm_home,
            &tpm_home,
            &["--tcti", &tcti, "--json", "anchors", "show"],
        ))
        .unwrap();
        let digest = show["record"]["digest"].as_str().unwrap().to_string();
        let bundle = work.join("bundle");
        fs::copy(tpm_home.join("anchors/bundle"), &bundle).unwrap();

        let mut vars = BTreeMap::new();
        vars.insert("image", s(&image));
        vars.insert("props", s(&props_path));
        vars.insert("certs", s(&certs));
        vars.insert("key", key);
        vars.insert("cert", s(&certs.join("signer-cert.pem")));
        vars.insert("ca", s(&root_pem));
        vars.insert("manifest", s(&manifest));
        vars.insert("tree", s(&tree));
        vars.insert("tcti", tcti);
        vars.insert("nonce", NONCE.to_string());
        vars.insert("digest", digest);
        vars.insert("attestation", s(&attestation));
        vars.insert("bundle", s(&bundle));
        vars.insert("enrollment", s(&enrollment));
        vars.insert("ek-ca", s(&ek_ca));
        vars.insert("challenge", s(&challenge));
        vars.insert("challenge-secret", s(&challenge_secret));
        vars.insert("response", s(&response));

        let bad = work.join("bad");
        fs::create_dir(&bad).unwrap();
        let capture = scratch.path().join("template");
        let token = token_state(env.home.path(), scratch.path(), &capture).unwrap();
        let fx = Fixtures {
            env,
            scratch,
            _tpm: tpm,
            tpm_home,
            vars,
            bad,
            token,
        };
        fx.write_bad_fixtures(&props_text);
        fx
    }

    /// The named malformed inputs, `{bad:<name>}`.
    fn write_bad_fixtures(&self, props_text: &str) {
        let b = |name: &str| self.bad.join(name);
        let w = |name: &str, bytes: &[u8]| fs::write(b(name), bytes).unwrap();
        let work = self.env.work.path();

        // Files of no format at all.
        w("empty", b"");
        let mut garbage = pseudo_random(4096, 1);
        garbage[0] = 0xA5; // neither '-' (PEM) nor 0x30 (DER)
        w("garbage", &garbage);
        w("non-utf8", b"\xff\xfe\x00\x80 not text \xc3\x28\n");
        fs::create_dir(b("dir")).unwrap();
        std::os::unix::fs::symlink("symlink-loop", b("symlink-loop")).unwrap();
        std::os::unix::fs::symlink(b("missing/target"), b("dangling")).unwrap();
        // Reading it fails with EIO although it is a "regular file" of size 0.
        std::os::unix::fs::symlink("/proc/self/mem", b("proc-mem")).unwrap();
        // Inputs that are not regular files: a FIFO with no writer (a
        // blocking open waits for ever) and a device that never ends.
        mkfifo(&b("fifo"));
        std::os::unix::fs::symlink("/dev/zero", b("zero-link")).unwrap();

        // Certificates and keys, broken.
        let pem = fs::read_to_string(self.vars["cert"].as_str()).unwrap();
        w("truncated-pem", &pem.as_bytes()[..pem.len() / 2]);
        let der_path = b("cert.der");
        openssl(&[
            "x509",
            "-in",
            &self.vars["cert"],
            "-outform",
            "DER",
            "-out",
            &s(&der_path),
        ])
        .ok();
        let der = fs::read(&der_path).unwrap();
        fs::remove_file(&der_path).unwrap();
        w("truncated-der", &der[..200]);
        w(
            "bad-base64-pem",
            b"-----BEGIN CERTIFICATE-----\nnot base64 at all !!!\n-----END CERTIFICATE-----\n",
        );
        let mut huge = b"-----BEGIN CERTIFICATE-----\n".to_vec();
        huge.extend(std::iter::repeat_n(b'A', 16 << 20));
        huge.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
        w("huge-pem", &huge);
        fs::copy(work.join("signer.csr"), b("csr-pem")).unwrap();
        fs::copy(test_ca().dir.join("ca.key"), b("private-key-pem")).unwrap();
        // A certificate under a Cyrillic look-alike of the signer's id.
        copy_dir(Path::new(&self.vars["certs"]), &b("certdir-lookalike"));
        fs::copy(
            b("certdir-lookalike").join("signer-cert.pem"),
            b("certdir-lookalike").join("signer-c\u{435}rt.pem"),
        )
        .unwrap();
        // Genuine CRLs of the test CA (issue #10 item 4): an older clean one,
        // and two with the same number, one revoking the signer.
        let serial = openssl(&["x509", "-in", &self.vars["cert"], "-noout", "-serial"])
            .ok()
            .stdout;
        let serial = serial.trim().trim_start_matches("serial=").to_string();
        for (name, number, revoked) in [
            ("crl-1-clean", 1, vec![]),
            ("crl-2-clean", 2, vec![]),
            ("crl-2-revoking", 2, vec![serial]),
        ] {
            let dir = self.scratch.path().join(format!("{name}.d"));
            fs::create_dir(&dir).unwrap();
            let ca = &test_ca().dir;
            pki::gencrl(
                &dir,
                &ca.join("ca.crt"),
                &ca.join("ca.key"),
                &revoked,
                number,
                &b(name),
            );
        }
        for (dir, extra) in [
            ("certdir-broken", "broken.pem"),
            ("certdir-subdir", "sub.pem"),
        ] {
            copy_dir(Path::new(&self.vars["certs"]), &b(dir));
            if dir == "certdir-broken" {
                fs::write(b(dir).join(extra), &garbage).unwrap();
            } else {
                fs::create_dir(b(dir).join(extra)).unwrap();
            }
        }
        let other = b("other-ak.key");
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &s(&other),
        ])
        .ok();
        openssl(&[
            "pkey",
            "-in",
            &s(&other),
            "-pubout",
            "-out",
            &s(&b("other-ak")),
        ])
        .ok();
        fs::remove_file(&other).unwrap();

        // Image properties.
        let p: Value = serde_json::from_str(props_text).unwrap();
        let with = |name: &str, key: &str, v: Value| {
            let mut q = p.clone();
            q[key] = v;
            write_json(&b(name), &q);
        };
        let sig = p["img_signature"].as_str().unwrap().to_string();
        write_json(&b("props-array"), &json!([1, 2]));
        w("props-null", b"null");
        w(
            "props-truncated",
            b"{\"img_signature\": \"AAAA\",\n \"img_signature_hash_method\": ",
        );
        let mut utf16 = vec![0xFF, 0xFE];
        utf16.extend(props_text.encode_utf16().flat_map(u16::to_le_bytes));
        w("props-utf16", &utf16);
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(props_text.as_bytes());
        w("props-bom", &bom);
        let mut deep = "[".repeat(100_000);
        deep.push_str(&"]".repeat(100_000));
        w("props-deep", deep.as_bytes());
        let mut line = b"{\"img_signature_comment\": \"".to_vec();
        line.extend(std::iter::repeat_n(b'x', 16 << 20));
        line.extend_from_slice(b"\"}");
        w("props-huge-line", &line);
        with("props-md5", "img_signature_hash_method", json!("MD5"));
        with(
            "props-lowercase-hash",
            "img_signature_hash_method",
            json!("sha-256"),
        );
        with("props-key-type-rsa", "img_signature_key_type", json!("RSA"));
        with("props-hash-number", "img_signature_hash_method", json!(256));
        let mut q = p.clone();
        q.as_object_mut()
            .unwrap()
            .remove("img_signature_certificate_uuid");
        write_json(&b("props-no-cert-uuid"), &q);
        write_json(
            &b("openstack-show-unsigned"),
            &json!({"id": "0b1d", "name": "focal", "properties": {"os_hash_algo": "sha512"}}),
        );
        with("props-b64-bang", "img_signature", json!(format!("!{sig}")));
        with(
            "props-b64-newline",
            "img_signature",
            json!(format!("{}\n{}", &sig[..20], &sig[20..])),
        );
        with(
            "props-b64-inner-padding",
            "img_signature",
            json!("AAAA=AAA"),
        );
        with("props-empty-signature", "img_signature", json!(""));
        with(
            "props-unknown-cert",
            "img_signature_certificate_uuid",
            json!("nope"),
        );
        with(
            "props-cert-id-path",
            "img_signature_certificate_uuid",
            json!("../certs/signer-cert"),
        );
        with(
            "props-cert-id-lookalike",
            "img_signature_certificate_uuid",
            json!("signer-c\u{435}rt"),
        );
        with(
            "props-cert-id-nul",
            "img_signature_certificate_uuid",
            json!("signer\u{0}cert"),
        );
        with(
            "props-key-type-rsa-pss",
            "img_signature_key_type",
            json!("RSA-PSS"),
        );
        with(
            "props-curve-p521",
            "img_signature_key_type",
            json!("ECC_SECP521R1"),
        );
        with(
            "props-truncated-signature",
            "img_signature",
            json!(&sig[..sig.len() - 8]),
        );
        let mut tampered = fs::read(self.vars["image"].as_str()).unwrap();
        tampered[5000] ^= 1;
        w("tampered-image", &tampered);

        // Configuration files.
        w("config-syntax", b"[validation\npolicy = \"strict\"\n");
        w("config-unknown-field", b"[validation]\nbogus = 1\n");
        w("config-bad-policy", b"[validation]\npolicy = \"lax\"\n");
        let mut toml16 = vec![0xFF, 0xFE];
        toml16.extend(
            "[validation]\npolicy = \"strict\"\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        );
        w("config-utf16", &toml16);
        w(
            "nova-not-bool",
            b"[glance]\nverify_glance_signatures = maybe\n",
        );
        w(
            "nova-unterminated-section",
            b"[glance\nverify_glance_signatures = True\n",
        );
        w("nova-no-section", b"verify_glance_signatures\n");
        w(
            "nova-latin1",
            b"[glance]\n# caf\xe9\nverify_glance_signatures = True\n",
        );

        // Manifests and trees.
        let m: Value =
            serde_json::from_slice(&fs::read(self.vars["manifest"].as_str()).unwrap()).unwrap();
        let edit = |name: &str, f: &dyn Fn(&mut Value)| {
            let mut q = m.clone();
            f(&mut q);
            write_json(&b(name), &q);
        };
        edit("manifest-v2", &|q| q["version"] = json!(2));
        edit("manifest-format", &|q| {
            q["format"] = json!("other-manifest")
        });
        edit("manifest-unknown-member", &|q| q["extra"] = json!(1));
        edit("manifest-unknown-nested", &|q| {
            q["image"]["extra"] = json!(1)
        });
        edit("manifest-size-changed", &|q| {
            q["image"]["size"] = json!(69_999)
        });
        edit("manifest-digest-changed", &|q| {
            q["linear"]["digest"] = json!("00".repeat(32))
        });
        edit("manifest-no-signature", &|q| {
            q.as_object_mut().unwrap().remove("signature");
        });
        edit("manifest-unknown-cert", &|q| {
            q["signer"]["certificate_id"] = json!("nope")
        });
        edit("manifest-block-size", &|q| {
            q["fsverity"]["block_size"] = json!(1000)
        });
        edit("manifest-root-hash", &|q| {
            q["fsverity"]["root_hash"] = json!("zz")
        });
        let text = serde_json::to_string_pretty(&m).unwrap();
        w(
            "manifest-float",
            text.replace("\"size\": 70000", "\"size\": 70000.0")
                .as_bytes(),
        );
        w("manifest-truncated", &text.as_bytes()[..300]);
        w("manifest-array", b"[]");
        fs::create_dir(b("manifest-alone")).unwrap();
        fs::copy(
            self.vars["manifest"].as_str(),
            b("manifest-alone/image.manifest.json"),
        )
        .unwrap();
        let tree = fs::read(self.vars["tree"].as_str()).unwrap();
        w("tree-short", &tree[..100]);
        let mut t = tree.clone();
        t[10] ^= 1;
        w("tree-tampered", &t);

        // Attestation documents.
        let a: Value =
            serde_json::from_slice(&fs::read(self.vars["attestation"].as_str()).unwrap()).unwrap();
        let edit = |name: &str, f: &dyn Fn(&mut Value)| {
            let mut q = a.clone();
            f(&mut q);
            write_json(&b(name), &q);
        };
        edit("attestation-format", &|q| q["format"] = json!("other"));
        edit("attestation-version", &|q| q["version"] = json!(2));
        edit("attestation-not-hex", &|q| {
            q["record"]["attest"] = json!("zz")
        });
        edit("attestation-no-record", &|q| {
            q.as_object_mut().unwrap().remove("record");
        });
        edit("attestation-bad-signature", &|q| {
            q["record"]["signature"] = json!("3000")
        });
        edit("attestation-contents", &|q| {
            q["record"]["contents"] = json!("00".repeat(256))
        });
        edit("attestation-bad-ak-pem", &|q| {
            q["ak"]["public_key_pem"] = json!("garbage")
        });
        let text = serde_json::to_string_pretty(&a).unwrap();
        w("attestation-truncated", &text.as_bytes()[..200]);

        // Remote enrollment documents.
        let read = |var: &str| -> Value {
            serde_json::from_slice(&fs::read(self.vars[var].as_str()).unwrap()).unwrap()
        };
        let edited = |var: &str, name: &str, f: &dyn Fn(&mut Value)| {
            let mut q = read(var);
            f(&mut q);
            write_json(&b(name), &q);
        };
        edited("enrollment", "enrollment-version", &|q| {
            q["version"] = json!(2)
        });
        edited("enrollment", "enrollment-ek-swapped", &|q| {
            // Another TPM's EK certificate: a fresh self-signed one will do.
            let key =
                openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
            let mut name = openssl::x509::X509NameBuilder::new().unwrap();
            name.append_entry_by_text("CN", "another EK").unwrap();
            let name = name.build();
            let mut c = openssl::x509::X509::builder().unwrap();
            c.set_subject_name(&name).unwrap();
            c.set_issuer_name(&name).unwrap();
            c.set_pubkey(&key).unwrap();
            c.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
                .unwrap();
            c.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
                .unwrap();
            c.sign(&key, openssl::hash::MessageDigest::sha256())
                .unwrap();
            let pem = String::from_utf8(c.build().to_pem().unwrap()).unwrap();
            q["ek"]["certificate_pem"] = json!(pem);
        });
        edited("enrollment", "enrollment-ak-attributes", &|q| {
            let area = q["ak"]["public_area"].as_str().unwrap().to_string();
            q["ak"]["public_area"] = json!(format!("{}00000000{}", &area[..8], &area[16..]));
        });
        edited("enrollment", "enrollment-ak-admin-policy", &|q| {
            // adminWithPolicy (bit 7) on top of the template's attributes.
            let area = q["ak"]["public_area"].as_str().unwrap().to_string();
            let attrs = u32::from_str_radix(&area[8..16], 16).unwrap() | (1 << 7);
            q["ak"]["public_area"] = json!(format!("{}{attrs:08x}{}", &area[..8], &area[16..]));
        });
        edited("challenge", "challenge-not-hex", &|q| {
            q["id_object"] = json!("zz")
        });
        edited("challenge", "challenge-other-ak", &|q| {
            q["ak_name"] = json!(format!("000b{}", "11".repeat(32)))
        });
        edited("challenge", "challenge-tampered", &|q| {
            let mut bytes = hex::decode(q["encrypted_secret"].as_str().unwrap()).unwrap();
            bytes[10] ^= 1;
            q["encrypted_secret"] = json!(hex::encode(bytes));
        });
        edited("response", "response-altered", &|q| {
            let mut bytes = hex::decode(q["secret"].as_str().unwrap()).unwrap();
            bytes[0] ^= 1;
            q["secret"] = json!(hex::encode(bytes));
        });

        // Secrets.
        w("auth-wrong", b"wrong\n");
        w("auth-bad-hex", b"hex:zz\n");
        w("auth-too-long", &[b'a'; 65]);
    }

    /// Substitutes `{name}`, `{bad:name}`, `{out}` and `{outdir}` in `text`.
    fn expand(&self, text: &str, row_dir: &Path) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("unclosed placeholder in {text:?}"))?
                + start;
            let name = &rest[start + 1..end];
            let value = match name {
                "out" => s(&row_dir.join("out")),
                "outdir" => s(&row_dir.join("outdir")),
                _ => match name.strip_prefix("bad:") {
                    Some(fixture) => {
                        let path = self.bad.join(fixture);
                        // Every name but missing… must be a fixture: a typo
                        // would otherwise test "file not found" by accident.
                        if !fixture.starts_with("missing") && fs::symlink_metadata(&path).is_err() {
                            return Err(format!("no fixture {{bad:{fixture}}}"));
                        }
                        s(&path)
                    }
                    None => self
                        .vars
                        .get(name)
                        .cloned()
                        .ok_or_else(|| format!("unknown placeholder {{{name}}}"))?,
                },
            };
            out.push_str(&value);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

// ---- one row ----------------------------------------------------------------------

fn leftovers(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with(".imgseal-") {
            found.push(path.clone());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            leftovers(&path, found);
        }
    }
}

/// Runs one row; returns what is wrong with it (nothing when it passes).
fn check_row(
    fx: &Fixtures,
    row: &Row,
    shared_tpm: bool,
    before_tpm: Option<&Value>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let row_dir = fx.scratch.path().join(format!("rows/{}", row.number));
    fs::create_dir_all(&row_dir).unwrap();
    let capture = fx.scratch.path().join(format!("rows/{}.out", row.number));
    let words = match tokenize(&row.command) {
        Ok(w) => w,
        Err(e) => return vec![format!("the command does not parse: {e}")],
    };
    let (env, args) = split_env(words);
    let expand = |t: &str| fx.expand(t, &row_dir);
    let env: Result<Vec<(String, String)>, String> =
        env.into_iter().map(|(k, v)| Ok((k, expand(&v)?))).collect();
    let args: Result<Vec<String>, String> = args.iter().map(|a| expand(a)).collect();
    let contains = expand(&row.contains);
    let (env, args, contains) = match (env, args, contains) {
        (Ok(e), Ok(a), Ok(c)) => (e, a, c),
        (e, a, c) => {
            return [e.err(), a.err(), c.err()].into_iter().flatten().collect();
        }
    };
    let uses_out = row.command.contains("{out}");
    let uses_outdir = row.command.contains("{outdir}");
    if uses_outdir {
        fs::create_dir(row_dir.join("outdir")).unwrap();
    }
    let home = if shared_tpm {
        fx.tpm_home.clone()
    } else {
        let home = row_dir.join("home");
        copy_dir(fx.env.home.path(), &home);
        home
    };

    let out = run_imgseal(&home, &row_dir, &env, &args, &capture);
    let both = format!("{}{}", out.stdout, out.stderr);
    if out.timed_out {
        problems.push(format!(
            "did not finish within {:?}: killed (a hang)",
            timeout()
        ));
    }
    match out.code {
        Some(c) if c == row.exit => {}
        Some(c) => problems.push(format!("exit {c}, documented {}", row.exit)),
        None => problems.push(format!("killed by a signal, documented exit {}", row.exit)),
    }
    if both.contains("panicked")
        || both.contains("stack backtrace")
        || both.contains("RUST_BACKTRACE")
    {
        problems.push("panicked".into());
    }
    let stderr_lines: Vec<&str> = out.stderr.lines().collect();
    let message = if out.stderr.is_empty() {
        // A verdict: the check ran and does not hold; it is on stdout.
        if out.code != Some(1) {
            problems.push("failed with nothing on stderr".into());
        }
        let json_verdict = serde_json::from_str::<serde_json::Value>(&out.stdout)
            .is_ok_and(|v| v["verdict"] == "invalid");
        if !out.stdout.starts_with("invalid") && !json_verdict {
            problems.push("no message on stderr and no invalid verdict on stdout".into());
        }
        out.stdout.clone()
    } else {
        if stderr_lines.len() != 1 {
            problems.push(format!("{} lines on stderr, not one", stderr_lines.len()));
        }
        if !out.stderr.starts_with("imgseal: ") {
            problems.push("stderr does not start with \"imgseal: \"".into());
        }
        out.stderr.clone()
    };
    if !message.contains(&contains) {
        problems.push(format!("the message does not contain {contains:?}"));
    }
    if args.iter().any(|a| a == "--json") {
        match serde_json::from_str::<Value>(&out.stdout) {
            Ok(v) if v["exit_code"] == json!(out.code.unwrap_or(-1)) => {}
            Ok(v) => problems.push(format!("--json: exit_code {} in {v}", v["exit_code"])),
            Err(e) => problems.push(format!("--json: stdout is not one JSON object ({e})")),
        }
    }
    // Nothing left behind.
    if uses_out && fs::symlink_metadata(row_dir.join("out")).is_ok() {
        problems.push("left {out} behind".into());
    }
    for entry in fs::read_dir(&row_dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match name.as_str() {
            "home" => {}
            "outdir" => {
                if fs::read_dir(entry.path()).unwrap().next().is_some() {
                    problems.push("left files in {outdir}".into());
                }
            }
            other => problems.push(format!("left {other} in its working directory")),
        }
    }
    let mut temps = Vec::new();
    leftovers(&row_dir, &mut temps);
    if !temps.is_empty() {
        problems.push(format!("left temp files: {temps:?}"));
    }
    if !shared_tpm {
        // Rows without --tcti must not reach a TPM: imgseal would have
        // started an embedded swtpm in this home.
        let swtpm = home.join("swtpm");
        if swtpm.exists() {
            if let Ok(pid) = fs::read_to_string(swtpm.join("swtpm.pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
            problems.push("started the embedded swtpm (give the row --tcti {tcti})".into());
        }
        if home.join("anchors").exists() {
            problems.push("created $IMGSEAL_HOME/anchors".into());
        }
    }
    // The token and the TPM are as they were.
    match token_state(&home, &row_dir, &capture) {
        Ok(now) if now == fx.token => {}
        Ok(now) => problems.push(format!(
            "changed the token: keys/certificates {now} (was {})",
            fx.token
        )),
        Err(e) => problems.push(format!("cannot read the token afterwards: {e}")),
    }
    if let Some(before) = before_tpm {
        match tpm_state(fx, &capture) {
            Ok(now) if &now == before => {}
            Ok(now) => problems.push(format!("changed the TPM anchors: {now} (was {before})")),
            Err(e) => problems.push(format!("cannot read the TPM anchors afterwards: {e}")),
        }
    }
    if std::env::var_os("IMGSEAL_BAD_INPUT_SHOW").is_some() {
        eprintln!(
            "row {:>3} exit {:?}: {}",
            row.number,
            out.code,
            message.lines().next().unwrap_or("")
        );
    }
    if !problems.is_empty() {
        problems.push(format!(
            "imgseal {}\n      stdout: {}\n      stderr: {}",
            args.join(" "),
            out.stdout.trim(),
            out.stderr.trim()
        ));
    } else {
        // Keep the scratch space small: 16 MiB fixtures are read, not copied.
        let _ = fs::remove_dir_all(&row_dir);
    }
    problems
}

// ---- the test ---------------------------------------------------------------------

fn rows() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bad-input.md");
    parse_table(&fs::read_to_string(path).unwrap())
}

/// Every command and subcommand has rows.
fn check_coverage(rows: &[Row]) {
    let commands: &[&[&str]] = &[
        &["key", "generate"],
        &["key", "list"],
        &["key", "show"],
        &["key", "csr"],
        &["key", "delete"],
        &["cert", "import"],
        &["cert", "delete"],
        &["cert", "list"],
        &["cert", "show"],
        &["cert", "export"],
        &["cert", "verify"],
        &["sign"],
        &["verify", "--props"],
        &["verify", "--manifest"],
        &["digest"],
        &["anchors", "seal"],
        &["anchors", "add"],
        &["anchors", "remove"],
        &["anchors", "show"],
        &["anchors", "lock"],
        &["anchors", "clear"],
        &["attest", "--nonce"],
        &["attest", "verify"],
        &["attest", "enroll"],
        &["publish"],
        &["verify", "--image"],
        &["resign"],
        &["audit"],
    ];
    for cmd in commands {
        let covered = rows.iter().any(|r| {
            let words = tokenize(&r.command).unwrap_or_default();
            words.windows(cmd.len()).any(|w| w == *cmd)
        });
        assert!(
            covered,
            "docs/bad-input.md has no row for `{}`",
            cmd.join(" ")
        );
    }
}

#[test]
fn the_table_parses() {
    let rows = rows();
    assert!(rows.len() >= 60, "only {} rows", rows.len());
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(
            r.number as usize,
            i + 1,
            "rows are numbered 1, 2, …: {}",
            r.name()
        );
        assert_ne!(r.exit, 0, "{}: a bad input fails", r.name());
        assert!(!r.contains.is_empty(), "{}: no error text", r.name());
        tokenize(&r.command).unwrap_or_else(|e| panic!("{}: {e}", r.name()));
    }
    check_coverage(&rows);
    assert_eq!(
        split_cells(r"| 1 | `a \| b` | x |"),
        vec!["1", "`a | b`", "x"]
    );
    assert_eq!(
        tokenize(r#"A=1 verify --x 'a b' "c \"d\"" e"#).unwrap(),
        vec!["A=1", "verify", "--x", "a b", "c \"d\"", "e"]
    );
    assert_eq!(code_text("`` a `b` ``"), "a `b`");
}

#[test]
fn every_bad_input_fails_cleanly_and_changes_nothing() {
    let rows = rows();
    check_coverage(&rows);
    let started = Instant::now();
    let fx = Fixtures::build();
    eprintln!("bad-input fixtures built in {:?}", started.elapsed());
    let (tpm_rows, other_rows): (Vec<&Row>, Vec<&Row>) =
        rows.iter().partition(|r| r.command.contains("--tcti"));
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let report = |row: &Row, problems: Vec<String>| {
        if !problems.is_empty() {
            failures.lock().unwrap().push(format!(
                "{}:\n    {}",
                row.name(),
                problems.join("\n    ")
            ));
        }
    };
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 6);
    std::thread::scope(|scope| {
        // The TPM rows, one after another against the shared swtpm.
        scope.spawn(|| {
            let capture = fx.scratch.path().join("tpm-state");
            let mut before = tpm_state(&fx, &capture).expect("the sealed anchors are readable");
            assert_eq!(before["verdict"], "intact", "{before}");
            for row in &tpm_rows {
                let problems = check_row(&fx, row, true, Some(&before));
                if !problems.is_empty() {
                    // Compare the next row with what is there now.
                    if let Ok(now) = tpm_state(&fx, &capture) {
                        before = now;
                    }
                }
                report(row, problems);
            }
        });
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(row) = other_rows.get(i) else { break };
                    report(row, check_row(&fx, row, false, None));
                }
            });
        }
    });
    // Outputs aimed at fixture directories ({bad:dir}, …) leave no temp file.
    let mut temps = Vec::new();
    leftovers(fx.env.work.path(), &mut temps);
    let mut failures = failures.into_inner().unwrap();
    if !temps.is_empty() {
        failures.push(format!("temp files left among the fixtures: {temps:?}"));
    }
    eprintln!(
        "{} bad-input rows ({} with the TPM) in {:?}",
        rows.len(),
        tpm_rows.len(),
        started.elapsed()
    );
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} rows of docs/bad-input.md fail:\n\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
}
