//! Tokens in PKCS#11 modules other than the embedded SoftHSM, each set up as
//! an operator would: SoftHSM2 by softhsm2-util, kryoptic and tpm2-pkcs11
//! (over its own swtpm) by `pkcs11-tool --init-token`, openCryptoki's soft
//! token by `pkcsconf` (scripts/pkcs11-modules.sh, once per machine: it is
//! one token behind the system's pkcsslotd), and the p11-kit proxy in front
//! of SoftHSM and tpm2-pkcs11. scripts/pkcs11-modules.sh installs them all
//! and builds kryoptic.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::tpm::TestTpm;
use super::{Env, Run, softhsm_module};

pub const PIN: &str = "13572468";
pub const SO_PIN: &str = "87654321";
/// openCryptoki's soft token, made by scripts/pkcs11-modules.sh.
pub const OCK_LABEL: &str = "imgseal-ock";
pub const OCK_PIN: &str = "13572468";

const P11_KIT_PROXY: &str = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";
const TPM2_PKCS11: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so";
const OPENCRYPTOKI: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so";

#[track_caller]
fn installed(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: run scripts/pkcs11-modules.sh (scripts/test.sh does)"
    );
    p
}

pub fn kryoptic_module() -> PathBuf {
    let p = std::env::var_os("IMGSEAL_TEST_KRYOPTIC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/modules/kryoptic-1.5.4/libkryoptic_pkcs11.so")
        });
    installed(p.to_str().unwrap())
}

/// One token in one module, with the environment its module reads.
pub struct ModuleToken {
    pub name: &'static str,
    pub module: PathBuf,
    pub label: String,
    pub env: Vec<(String, OsString)>,
    pub dir: TempDir,
    /// Keeps tpm2-pkcs11's TPM running.
    pub tpm: Option<TestTpm>,
    /// Other directories the token lives in (SoftHSM's).
    keep: Vec<TempDir>,
}

impl ModuleToken {
    fn new(name: &'static str, module: PathBuf, label: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("imgseal-module-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("pin"), PIN).unwrap();
        ModuleToken {
            name,
            module,
            label: label.into(),
            env: vec![("TSS2_LOG".into(), "all+none".into())],
            dir,
            tpm: None,
            keep: Vec::new(),
        }
    }

    pub fn softhsm(label: &str) -> Self {
        let (dir, conf) = super::operator_token("imgseal-softhsm-", label, SO_PIN, PIN);
        let mut t = ModuleToken::new("SoftHSM", PathBuf::from(softhsm_module()), label);
        t.env.push(("SOFTHSM2_CONF".into(), conf.into()));
        t.keep.push(dir);
        t
    }

    pub fn kryoptic(label: &str) -> Self {
        let mut t = ModuleToken::new("kryoptic", kryoptic_module(), label);
        let conf = t.dir.path().join("token.conf");
        std::fs::write(
            &conf,
            format!(
                "[[slots]]\nslot = 1\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
                t.dir.path().join("token.sql").display()
            ),
        )
        .unwrap();
        t.env.push(("KRYOPTIC_CONF".into(), conf.into()));
        t.init_with_pkcs11_tool();
        t
    }

    /// tpm2-pkcs11 over a swtpm of its own; the token is made through the
    /// module (`C_InitToken`), which needs no tpm2_ptool or resource manager.
    pub fn tpm2(label: &str) -> Self {
        let mut t = ModuleToken::new("tpm2-pkcs11", installed(TPM2_PKCS11), label);
        t.add_tpm2_env();
        t.init_with_pkcs11_tool();
        t
    }

    fn add_tpm2_env(&mut self) {
        let tpm = TestTpm::start();
        let store = self.dir.path().join("tpm2-store");
        std::fs::create_dir(&store).unwrap();
        self.env.push(("TPM2_PKCS11_STORE".into(), store.into()));
        self.env
            .push(("TPM2_PKCS11_TCTI".into(), tpm.tcti().into()));
        self.env.push(("TPM2_PKCS11_LOG_LEVEL".into(), "0".into()));
        self.tpm = Some(tpm);
    }

    /// The p11-kit proxy in front of SoftHSM (token `label`) and tpm2-pkcs11
    /// (token `tpm_label`), as the system's module registrations have them.
    pub fn proxy(label: &str, tpm_label: &str) -> Self {
        let mut softhsm = ModuleToken::softhsm(label);
        let mut t = ModuleToken::new("p11-kit proxy", installed(P11_KIT_PROXY), label);
        t.env.extend(softhsm.env.iter().cloned());
        t.keep.append(&mut softhsm.keep);
        t.add_tpm2_env();
        // The tpm2-pkcs11 token, made through its own module.
        let mut tpm = ModuleToken::new("tpm2-pkcs11", installed(TPM2_PKCS11), tpm_label);
        tpm.env = t.env.clone();
        tpm.init_with_pkcs11_tool();
        t
    }

    /// openCryptoki's soft token: one per machine (pkcsslotd), so tests
    /// share it and use labels of their own.
    pub fn opencryptoki() -> Self {
        let t = ModuleToken::new("openCryptoki", installed(OPENCRYPTOKI), OCK_LABEL);
        let out = t.pkcs11_tool(&["-L"]);
        assert!(
            out.stdout.contains(OCK_LABEL),
            "openCryptoki's soft token \"{OCK_LABEL}\" is not there (is pkcsslotd running? run scripts/pkcs11-modules.sh): {}{}",
            out.stdout,
            out.stderr
        );
        t
    }

    fn init_with_pkcs11_tool(&self) {
        let label = self.label.clone();
        self.pkcs11_tool(&["--init-token", "--label", &label, "--so-pin", SO_PIN])
            .ok();
        self.pkcs11_tool(&[
            "--token-label",
            &label,
            "--init-pin",
            "--so-pin",
            SO_PIN,
            "--pin",
            PIN,
        ])
        .ok();
    }

    pub fn pin(&self) -> &str {
        if self.name == "openCryptoki" {
            OCK_PIN
        } else {
            PIN
        }
    }

    pub fn pin_file(&self) -> PathBuf {
        let p = self.dir.path().join("pin");
        std::fs::write(&p, self.pin()).unwrap();
        p
    }

    /// `pkcs11:token=…?module-path=…&pin-source=…` plus `extra` path attributes.
    pub fn uri(&self, extra: &str) -> String {
        format!(
            "pkcs11:token={}{extra}?module-path={}&pin-source={}",
            self.label,
            self.module.display(),
            self.pin_file().display()
        )
    }

    /// pkcs11-tool against this module, with its environment.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new("pkcs11-tool");
        cmd.arg("--module").arg(&self.module).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Run::from_output(cmd.stdin(Stdio::null()).output().expect("pkcs11-tool runs"))
    }

    /// A pkcs11-tool key pair in this token.
    pub fn pkcs11_tool_key(&self, key_type: &str, label: &str, id: &str) -> Run {
        self.pkcs11_tool(&[
            "--token-label",
            &self.label.clone(),
            "--login",
            "--pin",
            self.pin(),
            "--keypairgen",
            "--key-type",
            key_type,
            "--label",
            label,
            "--id",
            id,
        ])
    }

    /// imgseal with `--token <this token>` and the module's environment.
    pub fn run(&self, env: &Env, args: &[&str]) -> Run {
        self.run_token(env, &self.uri(""), args)
    }

    /// imgseal with the module's environment and no `--token`: the key URI says.
    pub fn run_plain(&self, env: &Env, args: &[&str]) -> Run {
        let mut cmd = env.command();
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Run::from_output(cmd.args(args).output().expect("imgseal runs"))
    }

    pub fn run_token(&self, env: &Env, token: &str, args: &[&str]) -> Run {
        let mut cmd = env.command();
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Run::from_output(
            cmd.arg("--token")
                .arg(token)
                .args(args)
                .output()
                .expect("imgseal runs"),
        )
    }
}
