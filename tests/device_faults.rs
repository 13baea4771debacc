//! Device faults with real devices: wrong and locked PINs, a token or module
//! that is not there or not a PKCS#11 library, a read-only token directory,
//! swtpm killed while a command uses it, a TPM in dictionary-attack lockout,
//! NV indices that are gone, an image truncated or written while it is
//! hashed, and an output directory with no space left. Every fault must end in
//! one line on stderr and its documented exit code (docs/exit-codes.md),
//! never a crash, a hang, a partial file or a changed trust-anchor set.
//!
//! What the tests here do not repeat: seals interrupted by a killed swtpm
//! (tests/anchors.rs, tpm/tests/faults.rs), a wrong owner authorization and
//! the record index redefined (tests/anchors.rs).

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::tpm::TestTpm;
use common::*;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Exactly one line on stderr, which contains every needle.
#[track_caller]
fn one_line(run: &Run, needles: &[&str]) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr: {}",
        run.stderr
    );
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in: {}", run.stderr);
    }
}

#[track_caller]
fn never_shows(run: &Run, secret: &str) {
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "{secret:?} was printed: {}{}",
        run.stdout,
        run.stderr
    );
}

/// Waits for a child, killing it (and failing) if it hangs.
#[track_caller]
fn wait_or_kill(child: Child, what: &str, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("waiting for imgseal"),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our own child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} hung for more than {limit:?}");
        }
    }
}

// ---- PKCS#11 --------------------------------------------------------------

/// An operator's SoftHSM token made with softhsm2-util in its own directory,
/// used through --token with module-path, as any production HSM would be.
struct OperatorToken {
    dir: TempDir,
    conf: PathBuf,
    label: &'static str,
    pin: &'static str,
}

impl OperatorToken {
    fn new(label: &'static str, pin: &'static str) -> OperatorToken {
        let (dir, conf) = operator_token("imgseal-optoken-", label, "so-pin-5150", pin);
        OperatorToken {
            dir,
            conf,
            label,
            pin,
        }
    }

    /// `pkcs11:token=L?module-path=M` followed by `query` (`&pin-…=…`).
    fn uri(&self, query: &str) -> String {
        format!(
            "pkcs11:token={}?module-path={}{query}",
            self.label,
            softhsm_module()
        )
    }

    fn pin_file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::write(&p, content).unwrap();
        p
    }

    fn command(&self, env: &Env) -> Command {
        let mut cmd = env.command();
        cmd.env("SOFTHSM2_CONF", &self.conf);
        cmd
    }

    fn run(&self, env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = self.command(env);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Run::from_output(cmd.args(args).output().unwrap())
    }

    /// `pkcs11-tool` against this token.
    fn pkcs11_tool(&self, args: &[&str]) -> Output {
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--module", softhsm_module()])
            .args(args)
            .output()
            .expect("pkcs11-tool runs")
    }

    fn token_flags(&self) -> String {
        let out = self.pkcs11_tool(&["--list-token-slots"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.trim_start().starts_with("token flags"))
            .unwrap_or_else(|| panic!("no token flags in {text}"))
            .to_string()
    }

    /// The token's `token.object`, where SoftHSM keeps its label, PINs and flags.
    fn token_object(&self) -> PathBuf {
        let tokens = self.dir.path().join("tokens");
        let sub = fs::read_dir(&tokens)
            .unwrap()
            .flatten()
            .find(|e| e.path().is_dir())
            .expect("a token directory");
        sub.path().join("token.object")
    }
}

/// CKF_USER_PIN_LOCKED (PKCS#11 2.40, CK_TOKEN_INFO flags).
const CKF_USER_PIN_LOCKED: u64 = 0x0004_0000;
/// SoftHSM's vendor attribute holding the token flags (CKA_VENDOR_DEFINED + "SK").
const CKA_OS_TOKENFLAGS: u64 = 0x8000_534B;

/// Sets `flag` in the token flags SoftHSM 2.6.1 keeps in `token.object`:
/// an 8-byte generation, then attributes of (type u64, kind u64, value), big
/// endian, kind 1 = bool (1 byte), 2 = unsigned long (8), 3 = bytes (length
/// u64, then the bytes). The real module then reports the flag in
/// C_GetTokenInfo, as a hardware token does after too many wrong PINs.
fn set_token_flag(token_object: &Path, flag: u64) {
    let mut b = fs::read(token_object).unwrap();
    let u64_at = |b: &[u8], i: usize| u64::from_be_bytes(b[i..i + 8].try_into().unwrap());
    let mut i = 8;
    while i < b.len() {
        let (kind_type, kind) = (u64_at(&b, i), u64_at(&b, i + 8));
        i += 16;
        let len = match kind {
            1 => 1,
            2 => 8,
            3 => {
                let n = u64_at(&b, i) as usize;
                i += 8;
                n
            }
            k => panic!("unknown attribute kind {k} in {}", token_object.display()),
        };
        if kind_type == CKA_OS_TOKENFLAGS {
            assert_eq!(kind, 2);
            let v = u64_at(&b, i) | flag;
            b[i..i + 8].copy_from_slice(&v.to_be_bytes());
            fs::write(token_object, &b).unwrap();
            return;
        }
        i += len;
    }
    panic!("no token flags in {}", token_object.display());
}

#[test]
fn a_wrong_pin_from_any_source_exits_6_and_is_never_echoed() {
    let env = Env::new();
    let op = OperatorToken::new("faults-hsm", "31415926");
    let wrong = "27182818-wrong";
    let token = op.uri("");
    let key = {
        let out = op.run(
            &env,
            &[("IMGSEAL_PIN", op.pin)],
            &[
                "--token",
                &token,
                "key",
                "generate",
                "--type",
                "ecc-secp384r1",
                "--label",
                "k",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout.trim().to_string()
    };
    let image = env.image("img", 4096);
    let wrong_file = op.pin_file("wrong.pin", &format!("{wrong}\n"));
    let csr = env.path("k.csr");
    let incorrect = "incorrect PIN for token \"faults-hsm\" (CKR_PIN_INCORRECT)";

    // Each source of a PIN, each command that logs in: (what, environment, arguments).
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            "$IMGSEAL_PIN, key list",
            vec![("IMGSEAL_PIN", wrong)],
            vec!["--token".into(), token.clone(), "key".into(), "list".into()],
        ),
        (
            "$IMGSEAL_PIN_FILE, sign",
            vec![("IMGSEAL_PIN_FILE", s(&wrong_file))],
            vec![
                "--token".into(),
                token.clone(),
                "sign".into(),
                "--key".into(),
                key.clone(),
                "--cert-id".into(),
                "c".into(),
                s(&image).into(),
            ],
        ),
        (
            "pin-value in --token, key generate",
            vec![],
            vec![
                "--token".into(),
                op.uri(&format!("&pin-value={wrong}")),
                "key".into(),
                "generate".into(),
                "--type".into(),
                "ecc-secp384r1".into(),
                "--label".into(),
                "k2".into(),
            ],
        ),
        (
            "pin-source in --token, key csr",
            vec![],
            vec![
                "--token".into(),
                op.uri(&format!("&pin-source={}", wrong_file.display())),
                "key".into(),
                "csr".into(),
                "--key".into(),
                key.clone(),
                "--subject".into(),
                "CN=x".into(),
                "--out".into(),
                s(&csr).into(),
            ],
        ),
        (
            "pin-value in the key URI, key show",
            vec![],
            vec![
                "key".into(),
                "show".into(),
                format!("{key}&pin-value={wrong}"),
            ],
        ),
        (
            "$IMGSEAL_PIN, cert import",
            vec![("IMGSEAL_PIN", wrong)],
            vec![
                "--token".into(),
                token.clone(),
                "cert".into(),
                "import".into(),
                "--id".into(),
                "x".into(),
                s(&test_ca().dir.join("ca.crt")).into(),
            ],
        ),
    ];
    let mut attempts = 0;
    for (what, vars, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = op.run(&env, vars, &args);
        attempts += 1;
        assert_eq!(out.code, 6, "{what}: {}", out.stderr);
        one_line(&out, &["imgseal: auth: ", incorrect]);
        never_shows(&out, wrong);
        // --json: the same class and code, in one object on stdout.
        let mut json_args = vec!["--json"];
        json_args.extend(&args);
        let out = op.run(&env, vars, &json_args);
        attempts += 1;
        let j = out.json();
        assert_eq!(j["error"], "auth", "{what}: {j}");
        assert_eq!(j["exit_code"], 6, "{what}: {j}");
        never_shows(&out, wrong);
    }
    assert!(!csr.exists(), "a failed login wrote a request");

    // SoftHSM 2.6.1 keeps no retry counter: after all these wrong PINs it
    // only says "count low", never "locked", and the right PIN still works
    // (the CKR_PIN_LOCKED case is in the next test).
    assert!(attempts >= 12);
    let flags = op.token_flags();
    assert!(flags.contains("user PIN count low"), "{flags}");
    assert!(!flags.contains("locked"), "{flags}");
    let out = op.run(
        &env,
        &[("IMGSEAL_PIN", op.pin)],
        &[
            "--token",
            &token,
            "sign",
            "--key",
            &key,
            "--cert-id",
            "c",
            "--no-cert-check",
            s(&image),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    never_shows(&out, op.pin);

    // No PIN at all, and not on a terminal: exit 6, saying where a PIN may come from.
    let out = op.run(&env, &[], &["--token", &token, "key", "list"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    one_line(
        &out,
        &["no PIN for token \"faults-hsm\"", "IMGSEAL_PIN_FILE"],
    );
    // An empty PIN file is malformed input (3), a missing one an I/O error (7).
    let empty = op.pin_file("empty.pin", "\n");
    let out = op.run(
        &env,
        &[("IMGSEAL_PIN_FILE", s(&empty))],
        &["--token", &token, "key", "list"],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    one_line(&out, &["empty.pin", "is empty"]);
    let out = op.run(
        &env,
        &[("IMGSEAL_PIN_FILE", "/nonexistent/imgseal.pin")],
        &["--token", &token, "key", "list"],
    );
    assert_eq!(out.code, 7, "{}", out.stderr);
    one_line(&out, &["/nonexistent/imgseal.pin"]);
}

/// CKR_PIN_LOCKED with SoftHSM 2.6.1 (Debian's): its `Token::loginUser`
/// (src/lib/slot_mgr/Token.cpp) sets only CKF_USER_PIN_COUNT_LOW on a wrong
/// PIN and clears it on a right one. It has no retry counter, never sets
/// CKF_USER_PIN_LOCKED, never returns CKR_PIN_LOCKED, and logs a user in even
/// when its own token file says the PIN is locked; softhsm2-util has no
/// option to lock a PIN either. So a failed-login lockout cannot be produced
/// with SoftHSM. What can: the flag set in the token's own `token.object`,
/// which the real module then reports through C_GetTokenInfo ("user PIN
/// locked" for pkcs11-tool too). imgseal reads the token info before logging
/// in and refuses such a token with exit 6, as it maps CKR_PIN_LOCKED from a
/// module that enforces the lock (hsm/src/module.rs).
#[test]
fn a_token_whose_user_pin_is_locked_is_refused_with_exit_6() {
    let env = Env::new();
    let op = OperatorToken::new("locked-hsm", "11223344");
    let token = op.uri(&format!(
        "&pin-source={}",
        op.pin_file("pin", op.pin).display()
    ));
    let out = op.run(
        &env,
        &[],
        &[
            "--token",
            &token,
            "key",
            "generate",
            "--type",
            "ecc-secp384r1",
            "--label",
            "k",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let key = out.stdout.trim().to_string();
    op.run(
        &env,
        &[],
        &[
            "--token",
            &token,
            "cert",
            "import",
            "--id",
            "ca",
            s(&test_ca().dir.join("ca.crt")),
        ],
    )
    .ok();

    set_token_flag(&op.token_object(), CKF_USER_PIN_LOCKED);
    let flags = op.token_flags();
    assert!(flags.contains("user PIN locked"), "{flags}");
    // SoftHSM itself does not enforce its flag: pkcs11-tool still logs in.
    let out = op.pkcs11_tool(&["--token-label", op.label, "--login", "--pin", op.pin, "-O"]);
    assert!(out.status.success(), "{out:?}");

    let image = env.image("img", 4096);
    let locked = "the user PIN of token \"locked-hsm\" is locked (CKR_PIN_LOCKED); the security officer must reset it";
    for args in [
        vec!["--token", &token, "key", "list"],
        vec![
            "--token",
            &token,
            "sign",
            "--key",
            &key,
            "--cert-id",
            "ca",
            s(&image),
        ],
        vec![
            "--token",
            &token,
            "key",
            "generate",
            "--type",
            "ecc-secp384r1",
            "--label",
            "k2",
        ],
    ] {
        let out = op.run(&env, &[], &args);
        assert_eq!(out.code, 6, "{args:?}: {}", out.stderr);
        one_line(&out, &["imgseal: auth: opening the token: ", locked]);
        never_shows(&out, op.pin);
    }
    // Public objects need no login: the certificate is still readable.
    let out = op.run(&env, &[], &["--token", &token, "--json", "cert", "list"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()[0]["id"], "ca");
}

#[test]
fn an_absent_token_or_a_module_that_is_not_pkcs11_is_one_clean_line() {
    let env = Env::new();
    let op = OperatorToken::new("present", "55667788");
    // A token label (or serial) nobody has: not found (4), naming what was asked.
    for (uri, needle) in [
        (
            format!("pkcs11:token=absent?module-path={}", softhsm_module()),
            "no PKCS#11 token matches token=\"absent\"",
        ),
        (
            format!(
                "pkcs11:token=present;serial=0000000000000000?module-path={}",
                softhsm_module()
            ),
            "serial=\"0000000000000000\"",
        ),
    ] {
        for args in [vec!["key", "list"], vec!["cert", "list"]] {
            let mut all = vec!["--token", uri.as_str()];
            all.extend(&args);
            let out = op.run(&env, &[("IMGSEAL_PIN", op.pin)], &all);
            assert_eq!(out.code, 4, "{all:?}: {}", out.stderr);
            one_line(&out, &["imgseal: not-found: finding the token: ", needle]);
        }
    }
    // A key URI naming an absent token, with the module from the environment.
    let out = Run::from_output(
        op.command(&env)
            .env("IMGSEAL_PKCS11_MODULE", softhsm_module())
            .env("IMGSEAL_PIN", op.pin)
            .args(["key", "show", "pkcs11:token=gone;object=k"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 4, "{}", out.stderr);

    // Module paths that are not PKCS#11 libraries: a device error (5) naming
    // the path and why, never a crash.
    let dir = env.path("modules");
    fs::create_dir(&dir).unwrap();
    let text = dir.join("text.so");
    fs::write(&text, "this is not a shared library\n").unwrap();
    let empty = dir.join("empty.so");
    File::create(&empty).unwrap();
    let libz = [
        "/lib/x86_64-linux-gnu/libz.so.1",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        "/lib/aarch64-linux-gnu/libz.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .map(PathBuf::from);
    let mut modules: Vec<(PathBuf, &str)> = vec![
        (PathBuf::from("/nonexistent/libpkcs11.so"), "no such file"),
        (dir.clone(), "Is a directory"),
        (PathBuf::from("/bin/ls"), "position-independent executable"),
        (text, "file too short"),
        (empty, "file too short"),
    ];
    if let Some(z) = libz {
        // A real shared library without C_GetFunctionList.
        modules.push((z, "C_GetFunctionList"));
    }
    for (module, why) in &modules {
        let uri = format!("pkcs11:token=x?module-path={}", module.display());
        for args in [
            vec!["--token", uri.as_str(), "key", "list"],
            vec!["--token", uri.as_str(), "cert", "list"],
        ] {
            let out = env.run(&args);
            assert_eq!(out.code, 5, "{module:?}: {}", out.stderr);
            one_line(
                &out,
                &[
                    "imgseal: device: loading the PKCS#11 module: cannot load PKCS#11 module",
                    s(module),
                    why,
                ],
            );
        }
    }
}

/// A mount this test made; unmounted on drop.
struct Mounted(PathBuf);

impl Mounted {
    fn run(args: &[&str]) -> Result<(), String> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// `dir` bound onto itself, read-only (a read-only filesystem to root too).
    fn read_only(dir: &Path) -> Result<Mounted, String> {
        Self::run(&["mount", "--bind", s(dir), s(dir)])?;
        let m = Mounted(dir.to_path_buf());
        Self::run(&["mount", "-o", "remount,bind,ro", s(dir)])?;
        Ok(m)
    }

    fn tmpfs(dir: &Path, size: &str) -> Result<Mounted, String> {
        Self::run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            s(dir),
        ])?;
        Ok(Mounted(dir.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if Self::run(&["umount", s(&self.0)]).is_err() {
            let _ = Self::run(&["umount", "-l", s(&self.0)]);
        }
    }
}

/// `chattr +i` on a tree, undone on drop.
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .args(["-R", "-i", s(&self.0)])
            .status();
    }
}

/// A token directory that cannot be written. Tests run as root, for whom
/// chmod changes nothing; a read-only bind mount stops root (EROFS), and where
/// mounting is not allowed `chattr +i` does (EPERM). Both work in this
/// sandbox; the first is used.
#[test]
fn a_read_only_token_directory_still_signs_and_refuses_writes_clearly() {
    let env = Env::new();
    let uri = env.key_with_certificate("ecc-secp384r1", "k", "k-cert");
    let image = env.image("img", 100_000);
    let tokens = env.home.path().join("tokens");
    let key_files = || fs::read_dir(&tokens).unwrap().count();

    let (mounted, immutable) = match Mounted::read_only(&tokens) {
        Ok(m) => (Some(m), None),
        Err(why) => {
            eprintln!("read-only bind mount refused ({why}); using chattr +i");
            let st = Command::new("chattr")
                .args(["-R", "+i", s(&tokens)])
                .status()
                .unwrap();
            assert!(
                st.success(),
                "neither a read-only mount nor chattr +i works here"
            );
            (None, Some(Immutable(tokens.clone())))
        }
    };
    assert!(
        File::create(tokens.join("probe")).is_err(),
        "the token directory is still writable"
    );
    let before = key_files();
    // Reading and signing need no write: SoftHSM's login rewrites its token
    // file and ignores the failure.
    env.run(&["key", "list"]).ok();
    let props = env
        .run(&["sign", "--key", &uri, "--cert-id", "k-cert", s(&image)])
        .ok()
        .json();
    let props = write_props(&env, "p.json", &props);
    env.run(&["verify", "--props", s(&props), s(&image)]).ok();
    // Writes fail with the PKCS#11 function and code, and why.
    let out = env.run(&[
        "key",
        "generate",
        "--type",
        "ecc-secp384r1",
        "--label",
        "new",
    ]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    one_line(
        &out,
        &[
            "imgseal: device: generating a ecc-secp384r1 key",
            "is not writable",
            "C_GenerateKeyPair failed",
        ],
    );
    let out = env.run(&[
        "cert",
        "import",
        "--id",
        "ca",
        s(&test_ca().dir.join("ca.crt")),
    ]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    one_line(
        &out,
        &[
            "storing the certificate",
            "is not writable",
            "C_CreateObject failed",
        ],
    );
    assert_eq!(key_files(), before);
    drop((mounted, immutable));
    // Writable again: nothing was damaged.
    env.run(&[
        "key",
        "generate",
        "--type",
        "ecc-secp384r1",
        "--label",
        "new",
    ])
    .ok();
    let listed = env.run(&["--json", "key", "list"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

// ---- images that change while they are hashed ------------------------------

/// Writes `len` bytes quickly (one random MiB, each copy numbered).
fn big_image(path: &Path, len: usize) -> [u8; 32] {
    let mut block = vec![0u8; 1 << 20];
    openssl::rand::rand_bytes(&mut block).unwrap();
    let mut f = File::create(path).unwrap();
    let mut h = Sha256::new();
    for i in 0..len / block.len() {
        block[..8].copy_from_slice(&(i as u64).to_be_bytes());
        f.write_all(&block).unwrap();
        h.update(&block);
    }
    f.sync_all().unwrap();
    h.finalize().into()
}

/// Whether process `pid` has started reading `image`: mapped it (the read
/// pass), or read from it (`sign`/`verify`'s buffered read).
fn reading(pid: u32, image: &Path) -> bool {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    if maps.contains(s(image)) {
        return true;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|l| l == image)
            && fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                fd.file_name().to_string_lossy()
            ))
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("pos:") && l[4..].trim() != "0")
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    /// Cut to a quarter of its size (pages vanish under a memory map).
    Truncate,
    /// One MiB overwritten in place, at three quarters (size unchanged).
    Write,
}

/// Runs imgseal on a large image and changes the image once imgseal is
/// reading it. Returns `Some(run)` when the change landed while imgseal was
/// still reading, `None` when imgseal finished reading first:
/// `finished_first` recognises that outcome (and checks that it describes
/// the original image).
fn change_while_hashing(
    mut cmd: Command,
    image: &Path,
    len: usize,
    change: Change,
    finished_first: &dyn Fn(&Run) -> bool,
) -> Option<Run> {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut started = false;
    while Instant::now() < deadline {
        if reading(pid, image) {
            started = true;
            break;
        }
        if fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| st.contains(") Z "))
            .unwrap_or(true)
        {
            break; // exited before we saw it read
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    if started {
        let f = OpenOptions::new().write(true).open(image).unwrap();
        match change {
            Change::Truncate => f.set_len((len / 4) as u64).unwrap(),
            Change::Write => f
                .write_all_at(&vec![0xA5; 1 << 20], (len * 3 / 4) as u64)
                .unwrap(),
        }
    }
    let out = wait_or_kill(
        child,
        "imgseal on a changing image",
        Duration::from_secs(120),
    );
    let run = Run::from_output(out);
    if finished_first(&run) {
        return None;
    }
    assert!(
        started,
        "imgseal failed before it read the image: {}",
        run.stderr
    );
    Some(run)
}

#[test]
fn an_image_truncated_or_written_while_it_is_hashed_is_reported_not_signed() {
    let env = Env::new();
    let uri = env.key_with_certificate("ecc-secp384r1", "k", "k-cert");
    let image = env.path("golden.img");
    let props_ok = {
        let small = env.image("small", 4096);
        let p = env
            .run(&["sign", "--key", &uri, "--cert-id", "k-cert", s(&small)])
            .ok()
            .json();
        write_props(&env, "small.json", &p)
    };
    let manifest = env.path("golden.manifest.json");

    // (what, the command, memory-mapped read pass?)
    type MakeCmd<'a> = Box<dyn Fn() -> Command + 'a>;
    let sign: MakeCmd = Box::new(|| {
        let mut c = env.command();
        c.args([
            "--json",
            "sign",
            "--key",
            &uri,
            "--cert-id",
            "k-cert",
            s(&image),
        ]);
        c
    });
    let digest: MakeCmd = Box::new(|| {
        let mut c = env.command();
        c.args(["digest", "-q", s(&image)]);
        c
    });
    let manifest_sign: MakeCmd = Box::new(|| {
        let mut c = env.command();
        c.args([
            "sign",
            "-q",
            "--key",
            &uri,
            "--cert-id",
            "k-cert",
            "--manifest",
            s(&manifest),
            s(&image),
        ]);
        c
    });
    // verify reads the whole image against properties of another image: it
    // would say "invalid" (1); a change while reading must win (7).
    let verify: MakeCmd = Box::new(|| {
        let mut c = env.command();
        c.args(["verify", "--props", s(&props_ok), s(&image)]);
        c
    });
    let cases: Vec<(&str, &MakeCmd, Change, usize)> = vec![
        (
            "sign (buffered read), truncated",
            &sign,
            Change::Truncate,
            384,
        ),
        ("sign (buffered read), written", &sign, Change::Write, 384),
        (
            "digest (memory map), truncated",
            &digest,
            Change::Truncate,
            384,
        ),
        ("digest (memory map), written", &digest, Change::Write, 384),
        // The tree is hashed by a debug build here: a smaller image suffices.
        (
            "sign --manifest (memory map + tree), truncated",
            &manifest_sign,
            Change::Truncate,
            48,
        ),
        (
            "verify (buffered read), written",
            &verify,
            Change::Write,
            384,
        ),
    ];
    for (what, make, change, mib) in cases {
        let mut landed = None;
        let mut len = mib << 20;
        for attempt in 0..4 {
            let original = big_image(&image, len);
            let _ = fs::remove_file(&manifest);
            let hex = hex::encode(original);
            let check_first = |run: &Run| {
                // Done reading before the change: the result must be the
                // original image's.
                if what.starts_with("verify") {
                    // The other image's properties do not match this one.
                    assert_ne!(run.code, 0, "{what}: verified: {}", run.stdout);
                    return run.code == 1;
                }
                if run.code != 0 {
                    return false;
                }
                if what.starts_with("sign (") {
                    assert_eq!(run.json()["digest"], hex, "{what}");
                } else if what.starts_with("digest") {
                    assert!(run.stdout.starts_with(&hex), "{what}: {}", run.stdout);
                } else {
                    assert!(
                        fs::read_to_string(&manifest).unwrap().contains(&hex),
                        "{what}"
                    );
                }
                true
            };
            match change_while_hashing(make(), &image, len, change, &check_first) {
                Some(run) => {
                    landed = Some(run);
                    break;
                }
                None => {
                    eprintln!(
                        "{what}: attempt {attempt} finished before the change; growing the image"
                    );
                    len *= 2;
                }
            }
        }
        let run = landed.unwrap_or_else(|| panic!("{what}: the change never landed while hashing"));
        assert_eq!(run.code, 7, "{what}: {}{}", run.stdout, run.stderr);
        let how = match change {
            Change::Truncate => "it was truncated from",
            Change::Write => "it was written to",
        };
        one_line(
            &run,
            &[
                "imgseal: io: ",
                s(&image),
                "the image changed while it was being read",
                how,
            ],
        );
        assert!(
            !run.stdout.contains("img_signature\""),
            "{what}: signed anyway: {}",
            run.stdout
        );
        assert!(!manifest.exists(), "{what}: a manifest was written");
    }
}

// ---- disk full -------------------------------------------------------------

/// Fills a filesystem: writes until ENOSPC.
fn fill(dir: &Path) {
    let mut f = File::create(dir.join("filler")).unwrap();
    let chunk = [0x5Au8; 512];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    let _ = f.sync_all();
    assert!(
        File::create(dir.join("probe"))
            .and_then(|mut p| p.write_all(&[1; 4096]).and_then(|_| p.sync_all()))
            .is_err(),
        "{} is not full",
        dir.display()
    );
    let _ = fs::remove_file(dir.join("probe"));
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Outputs go to a temporary file in the same directory, then a rename
/// (src/home.rs). On a full filesystem (a 64 KiB tmpfs, filled) each output
/// fails with exit 7 and one line naming its path, leaves neither its final
/// name nor a temporary file, and an older file of that name stays whole.
#[test]
fn a_full_disk_leaves_no_partial_output_and_names_the_path() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let uri = env.key_with_certificate("ecc-secp384r1", "k", "k-cert");
    let ca = test_ca().dir.join("ca.crt");
    env.tpm_run(&tpm, &["anchors", "seal", "--cert", s(&ca)])
        .ok();
    let image = env.image("img", 1 << 20);

    let full = env.path("full");
    fs::create_dir(&full).unwrap();
    let _mount = match Mounted::tmpfs(&full, "64k") {
        Ok(m) => m,
        Err(why) => panic!("cannot mount a small tmpfs here ({why}); see docs in this test"),
    };
    let old = full.join("old.csr");
    fs::write(&old, "an older request, which must survive\n").unwrap();
    fill(&full);
    let before = names(&full);

    let to_strings = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let (csr, pem, man, tree, desc, att) = (
        full.join("k.csr"),
        full.join("c.pem"),
        full.join("m.json"),
        full.join("t.tree"),
        full.join("d.bin"),
        full.join("a.json"),
    );
    let tcti = tpm.tcti();
    let cases: Vec<(&str, &Path, Vec<String>)> = vec![
        (
            "key csr",
            &csr,
            to_strings(&[
                "key",
                "csr",
                "--key",
                &uri,
                "--subject",
                "CN=x",
                "--out",
                s(&csr),
            ]),
        ),
        (
            "key csr over an older file",
            &old,
            to_strings(&[
                "key",
                "csr",
                "--key",
                &uri,
                "--subject",
                "CN=x",
                "--out",
                s(&old),
            ]),
        ),
        (
            "cert export",
            &pem,
            to_strings(&["cert", "export", "k-cert", "--out", s(&pem)]),
        ),
        (
            "sign --manifest",
            &man,
            to_strings(&[
                "sign",
                "-q",
                "--key",
                &uri,
                "--cert-id",
                "k-cert",
                "--manifest",
                s(&man),
                s(&image),
            ]),
        ),
        (
            "digest --out-merkle-tree",
            &tree,
            to_strings(&[
                "digest",
                "-q",
                "--tree",
                "fsverity",
                "--out-merkle-tree",
                s(&tree),
                s(&image),
            ]),
        ),
        (
            "digest --out-descriptor",
            &desc,
            to_strings(&[
                "digest",
                "-q",
                "--tree",
                "fsverity",
                "--out-descriptor",
                s(&desc),
                s(&image),
            ]),
        ),
        (
            "attest --out",
            &att,
            to_strings(&[
                "--tcti",
                &tcti,
                "attest",
                "--nonce",
                "0011223344556677",
                "--out",
                s(&att),
            ]),
        ),
    ];
    for (what, path, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.run(&args);
        assert_eq!(out.code, 7, "{what}: {}{}", out.stdout, out.stderr);
        one_line(&out, &["imgseal: io: ", s(path), "No space left on device"]);
        let _ = what;
        assert_eq!(names(&full), before, "{what}: a file was left behind");
    }
    assert_eq!(
        fs::read_to_string(&old).unwrap(),
        "an older request, which must survive\n"
    );
    // With room again, the same commands write whole files.
    fs::remove_file(full.join("filler")).unwrap();
    for (what, path, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.run(&args).ok();
        assert!(fs::metadata(path).unwrap().len() > 0, "{what}");
    }
    openssl(&["req", "-in", s(&old), "-verify", "-noout"]).ok();
}

/// The anchors' home on a full disk: a seal cannot stage its bundle, fails
/// with exit 7 before committing anything to the TPM, and the sealed set
/// stays the one in force.
#[test]
fn a_seal_on_a_full_disk_changes_nothing() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let home = env.path("anchor-home");
    fs::create_dir(&home).unwrap();
    let _mount = Mounted::tmpfs(&home, "64k").unwrap_or_else(|why| panic!("tmpfs: {why}"));
    let run = |args: &[&str]| {
        let mut all = vec!["--tcti".to_string(), tpm.tcti()];
        all.extend(args.iter().map(|a| a.to_string()));
        Run::from_output(
            env.command()
                .env("IMGSEAL_HOME", &home)
                .args(&all)
                .output()
                .unwrap(),
        )
    };
    let ca = test_ca().dir.join("ca.crt");
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
        "/CN=other anchor",
        "-days",
        "3",
        "-out",
        s(&other),
    ])
    .ok();
    assert_eq!(run(&["anchors", "seal", "--cert", s(&ca)]).code, 0);
    let shown = |r: Run| {
        assert_eq!(r.code, 0, "{}", r.stderr);
        let j = r.json();
        (
            j["verdict"].clone(),
            j["record"].clone(),
            j["anchors"].clone(),
        )
    };
    let before = shown(run(&["--json", "anchors", "show"]));
    fill(&home);
    let anchors_dir = home.join("anchors");
    let files = names(&anchors_dir);

    let out = run(&["anchors", "add", "--cert", s(&other)]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    one_line(
        &out,
        &[
            "imgseal: io: ",
            s(&anchors_dir.join("bundle.pending")),
            "No space left on device",
        ],
    );
    assert_eq!(names(&anchors_dir), files, "a staged file was left behind");
    assert_eq!(shown(run(&["--json", "anchors", "show"])), before);

    fs::remove_file(home.join("filler")).unwrap();
    let out = run(&["--json", "anchors", "add", "--cert", s(&other)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let after = shown(run(&["--json", "anchors", "show"]));
    assert_eq!(after.2.as_array().unwrap().len(), 2);
}

// ---- the TPM ---------------------------------------------------------------

/// A key with a certificate from the test CA, an image signed with it, and
/// the CA sealed as the only anchor.
fn sealed_and_signed(env: &Env, tpm: &TestTpm) -> (PathBuf, PathBuf) {
    let uri = env.key_with_certificate("ecc-secp384r1", "k", "k-cert");
    let image = env.image("img", 200_000);
    let props = env
        .run(&["sign", "--key", &uri, "--cert-id", "k-cert", s(&image)])
        .ok()
        .json();
    let props = write_props(env, "props.json", &props);
    env.tpm_run(
        tpm,
        &[
            "anchors",
            "seal",
            "--cert",
            s(&test_ca().dir.join("ca.crt")),
        ],
    )
    .ok();
    (props, image)
}

fn show_json(env: &Env, tpm: &TestTpm) -> serde_json::Value {
    env.tpm_run(tpm, &["--json", "anchors", "show"]).ok().json()
}

/// swtpm killed (SIGKILL) while `verify --anchors tpm` or `attest` talks to
/// it, at a different moment each round: the command ends promptly with exit
/// 0 (it was done with the TPM) or 5 naming the TPM, in one line; after a
/// restart the anchors are intact and verify again. Seals killed the same
/// way are tests/anchors.rs's.
#[test]
fn swtpm_killed_while_verify_or_attest_runs_ends_cleanly() {
    let env = Env::new();
    let mut tpm = TestTpm::start();
    let (props, image) = sealed_and_signed(&env, &tpm);
    let sealed = show_json(&env, &tpm);
    let attestation = env.path("a.json");
    let mut failures = 0;
    let bundle = env.home.path().join("anchors/bundle");
    for round in 0..12u64 {
        let verify = round % 2 == 0;
        let mut cmd = env.command();
        cmd.args(["--tcti", &tpm.tcti()]);
        if verify {
            cmd.args([
                "--json",
                "verify",
                "--anchors",
                "tpm",
                "--props",
                s(&props),
                s(&image),
            ]);
        } else {
            let _ = fs::remove_file(&attestation);
            cmd.args([
                "attest",
                "--nonce",
                "00112233445566778899",
                "--out",
                s(&attestation),
            ]);
        }
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A different moment each round, from before the TPM is opened to
        // after imgseal is done with it (behaviour, not timing, is asserted).
        std::thread::sleep(Duration::from_millis(2 + 4 * round));
        tpm.swtpm.kill();
        let out = Run::from_output(wait_or_kill(
            child,
            "imgseal with a dead TPM",
            Duration::from_secs(60),
        ));
        eprintln!("round {round}: exit {}: {}", out.code, out.stderr.trim());
        match out.code {
            0 => {
                if verify {
                    assert_eq!(out.json()["verdict"], "valid");
                } else {
                    // A document written whole, that verifies.
                    env.run(&[
                        "attest",
                        "verify",
                        s(&attestation),
                        "--nonce",
                        "00112233445566778899",
                        "--expected-anchors",
                        s(&bundle),
                    ])
                    .ok();
                }
            }
            5 => {
                failures += 1;
                let line = out.stderr.lines().last().unwrap_or_default();
                assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
                assert!(line.starts_with("imgseal: device: "), "{line}");
                assert!(line.contains("swtpm:host=127.0.0.1"), "{line}");
                assert!(
                    !attestation.exists() || verify,
                    "a failed attest left its output"
                );
            }
            other => panic!("round {round}: exit {other}: {}{}", out.stdout, out.stderr),
        }
        tpm.restart();
        let now = show_json(&env, &tpm);
        assert_eq!(now["verdict"], "intact", "round {round}: {now}");
        assert_eq!(now["record"], sealed["record"], "round {round}");
        assert_eq!(now["anchors"], sealed["anchors"], "round {round}");
    }
    assert!(failures > 0, "swtpm never died while a command used it");
    let out = env
        .tpm_run(
            &tpm,
            &[
                "--json",
                "verify",
                "--anchors",
                "tpm",
                "--props",
                s(&props),
                s(&image),
            ],
        )
        .ok();
    assert_eq!(out.json()["verdict"], "valid");
}

/// Dictionary-attack lockout. Nothing imgseal authorizes is protected by
/// it: the anchor indices are `no_da`, owner authorization is exempt by the
/// TPM 2.0 specification, and the AK's empty authorization is checked by
/// libtpms without a lockout check. So a TPM in lockout still verifies,
/// attests and seals, a wrong owner authorization is still "wrong" (6, not
/// lockout), and imgseal's mapping of TPM_RC_LOCKOUT to exit 6
/// (src/error.rs) is not reachable from its commands with swtpm.
/// tests/anchors.rs checks `show` and `remove` in lockout; this adds the rest.
#[test]
fn a_tpm_in_lockout_still_verifies_attests_and_seals() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let (props, image) = sealed_and_signed(&env, &tpm);
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
    let vars = String::from_utf8(tpm.tool_ok("tpm2_getcap", &["properties-variable"])).unwrap();
    assert!(vars.contains("inLockout:                 1"), "{vars}");

    let out = env
        .tpm_run(
            &tpm,
            &[
                "--json",
                "verify",
                "--anchors",
                "tpm",
                "--props",
                s(&props),
                s(&image),
            ],
        )
        .ok();
    assert_eq!(out.json()["verdict"], "valid");
    let doc = env.path("a.json");
    env.tpm_run(&tpm, &["attest", "--nonce", "a1b2c3d4", "--out", s(&doc)])
        .ok();
    let bundle = env.home.path().join("anchors/bundle");
    env.run(&[
        "attest",
        "verify",
        s(&doc),
        "--nonce",
        "a1b2c3d4",
        "--expected-anchors",
        s(&bundle),
    ])
    .ok();
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
        s(&env.path("o.key")),
        "-subj",
        "/CN=other",
        "-days",
        "3",
        "-out",
        s(&other),
    ])
    .ok();
    env.tpm_run(&tpm, &["anchors", "add", "--cert", s(&other)])
        .ok();
    // A wrong owner authorization is reported as such, not as lockout.
    let wrong = env.path("wrong.auth");
    fs::write(&wrong, "not-the-owner").unwrap();
    let out = env.tpm_run(
        &tpm,
        &["anchors", "remove", "other", "--owner-auth-file", s(&wrong)],
    );
    assert_eq!(out.code, 6, "{}", out.stderr);
    one_line(
        &out,
        &["imgseal: auth: ", "TPM_RC_BAD_AUTH", "--owner-auth-file"],
    );
    never_shows(&out, "not-the-owner");
    let vars = String::from_utf8(tpm.tool_ok("tpm2_getcap", &["properties-variable"])).unwrap();
    assert!(vars.contains("inLockout:                 1"), "{vars}");
}

/// NV indices removed behind imgseal's back (with the owner authorization):
/// the record → "nothing sealed" (4) for verify, show and attest; the spare
/// data index → nothing changes while the bundle file is there, and "the
/// bundle is missing" (4) once it is gone too. (A missing counter is
/// tests/anchors.rs's: exit 1.)
#[test]
fn absent_nv_indices_read_as_nothing_sealed() {
    let env = Env::new();
    let tpm = TestTpm::start();
    let (props, image) = sealed_and_signed(&env, &tpm);
    let verify = || {
        env.tpm_run(
            &tpm,
            &[
                "verify",
                "--anchors",
                "tpm",
                "--props",
                s(&props),
                s(&image),
            ],
        )
    };
    verify().ok();

    // The spare copy gone (the platform holder may undefine it): the bundle file carries on.
    tpm.tool_ok("tpm2_nvundefine", &["-C", "p", "0x0181a002"]);
    verify().ok();
    assert_eq!(show_json(&env, &tpm)["verdict"], "intact");
    // …and with the bundle file gone too, nothing is left to trust.
    let bundle = env.home.path().join("anchors/bundle");
    let saved = fs::read(&bundle).unwrap();
    fs::remove_file(&bundle).unwrap();
    let out = verify();
    assert_eq!(out.code, 4, "{}", out.stderr);
    one_line(
        &out,
        &[
            "imgseal: not-found: ",
            "the sealed anchor bundle is missing",
            "holds no inline copy",
        ],
    );
    let out = env.tpm_run(&tpm, &["anchors", "show"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(!out.stdout.contains("does NOT match"), "{}", out.stdout);
    fs::write(&bundle, &saved).unwrap();
    verify().ok();

    // The record gone: nothing is sealed, for every reader.
    tpm.tool_ok("tpm2_nvundefine", &["-C", "p", "0x0181a000"]);
    for args in [
        vec![
            "verify",
            "--anchors",
            "tpm",
            "--props",
            s(&props),
            s(&image),
        ],
        vec!["anchors", "show"],
        vec!["attest", "--nonce", "00aa", "--out", s(&env.path("a.json"))],
        vec!["cert", "verify", "k-cert", "--anchors", "tpm"],
    ] {
        let out = env.tpm_run(&tpm, &args);
        assert_eq!(out.code, 4, "{args:?}: {}", out.stderr);
        one_line(
            &out,
            &[
                "imgseal: not-found: no trust anchors are sealed in this TPM (NV index 0x0181a000 is not defined)",
            ],
        );
    }
    assert!(!env.path("a.json").exists());
    // A new seal is the repair.
    env.tpm_run(
        &tpm,
        &[
            "anchors",
            "seal",
            "--cert",
            s(&test_ca().dir.join("ca.crt")),
        ],
    )
    .ok();
    verify().ok();
}
