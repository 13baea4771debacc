//! Test harness: each `Env` is a throwaway `$IMGSEAL_HOME` with its own
//! embedded SoftHSM token, driven through the real `imgseal` binary; peers
//! (the openssl CLI, cursive) are called as users would call them.

// Each test crate takes what it needs from this harness (`mod common;`):
// the rest is unused there, and `pub` here means "for the test crates".
#![allow(dead_code, unreachable_pub)]

pub mod docs_chain;
pub mod modules;
pub mod openstack;
pub mod pki;
pub mod tpm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use tempfile::TempDir;

pub struct Env {
    pub home: TempDir,
    pub work: TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Self {
        Self::from(out)
    }

    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success; stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}; stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_imgseal")
}

impl Env {
    pub fn new() -> Self {
        Env {
            home: tempfile::Builder::new()
                .prefix("imgseal-home-")
                .tempdir()
                .unwrap(),
            work: tempfile::Builder::new()
                .prefix("imgseal-work-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env("IMGSEAL_HOME", self.home.path())
            .env_remove("IMGSEAL_PIN")
            .env_remove("IMGSEAL_PIN_FILE")
            .env_remove("IMGSEAL_TOKEN")
            .env_remove("IMGSEAL_PKCS11_MODULE")
            .env_remove("SOFTHSM2_CONF")
            // A TPM is only ever the one a test names with --tcti.
            .env_remove("TPM2TOOLS_TCTI")
            .env_remove("TCTI")
            .env_remove("IMGSEAL_TPM_OWNER_AUTH")
            .env_remove("IMGSEAL_TPM_PLATFORM_AUTH")
            // A cloud is only ever the one a test configures (tests/common/openstack.rs).
            .env_remove("OS_CLOUD")
            .env_remove("OS_AUTH_URL")
            .env_remove("OS_CLIENT_CONFIG_FILE")
            .env_remove("OS_TRUSTED_IMAGE_CERTIFICATE_IDS")
            .env_remove("IMGSEAL_OS_TOKEN_CACHE")
            .env("TSS2_LOG", "all+none")
            .current_dir(self.work.path())
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command().args(args).output().expect("imgseal runs"))
    }

    pub fn run_stdin(&self, args: &[&str], input: &Path) -> Run {
        let file = std::fs::File::open(input).unwrap();
        Run::from(
            self.command()
                .args(args)
                .stdin(file)
                .output()
                .expect("imgseal runs"),
        )
    }

    pub fn softhsm_conf(&self) -> PathBuf {
        self.home.path().join("softhsm2.conf")
    }

    pub fn user_pin(&self) -> String {
        std::fs::read_to_string(self.home.path().join("user.pin")).unwrap()
    }

    /// Generates a key in the embedded token and returns its URI.
    pub fn generate(&self, kind: &str, label: &str) -> String {
        self.run(&["key", "generate", "--type", kind, "--label", label])
            .ok()
            .stdout
            .trim()
            .to_string()
    }

    /// A key, a certificate for it issued by a test CA from the HSM's CSR, and
    /// the certificate imported into the token under `cert_id`.
    pub fn key_with_certificate(&self, kind: &str, label: &str, cert_id: &str) -> String {
        let uri = self.generate(kind, label);
        let csr = self.path(&format!("{label}.csr"));
        self.run(&[
            "key",
            "csr",
            "--key",
            &uri,
            "--subject",
            &format!("CN={label},O=imgseal tests"),
            "--out",
            csr.to_str().unwrap(),
        ])
        .ok();
        let cert = self.path(&format!("{label}.crt"));
        test_ca().issue(&csr, &cert);
        self.run(&["cert", "import", "--id", cert_id, cert.to_str().unwrap()])
            .ok();
        uri
    }

    /// Writes `len` bytes of deterministic pseudo-random data.
    pub fn image(&self, name: &str, len: usize) -> PathBuf {
        let path = self.path(name);
        let mut x: u64 = 0x9E3779B97F4A7C15 ^ len as u64;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        std::fs::write(&path, data).unwrap();
        path
    }
}

/// Runs the openssl CLI; panics with its stderr on failure unless `allow_fail`.
pub fn openssl(args: &[&str]) -> Run {
    Run::from(
        Command::new("openssl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("openssl runs"),
    )
}

/// A 2048-bit id-RSASSA-PSS key restricted to `md` (hash and MGF1) and a salt
/// of at least `salt` bytes, made with the openssl CLI at `out`.
pub fn rsa_pss_key(out: &Path, md: &str, salt: u8) {
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA-PSS",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-pkeyopt",
        &format!("rsa_pss_keygen_md:{md}"),
        "-pkeyopt",
        &format!("rsa_pss_keygen_mgf1_md:{md}"),
        "-pkeyopt",
        &format!("rsa_pss_keygen_saltlen:{salt}"),
        "-out",
        out.to_str().unwrap(),
    ])
    .ok();
}

/// A CA made once per test binary with the openssl CLI.
pub struct TestCa {
    pub dir: PathBuf,
}

pub fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        // Statics are never dropped, so the CA lives under cargo's per-target
        // scratch directory rather than leaking into /tmp on every run.
        let dir = tempfile::Builder::new()
            .prefix("imgseal-ca-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        let key = dir.join("ca.key");
        let crt = dir.join("ca.crt");
        openssl(&[
            "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", key.to_str().unwrap(),
            "-subj", "/CN=imgseal test CA", "-days", "30", "-out", crt.to_str().unwrap(),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        .ok();
        std::fs::write(
            dir.join("leaf.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n",
        )
        .unwrap();
        TestCa { dir }
    })
}

impl TestCa {
    /// Issues a certificate from a CSR; openssl checks the CSR's signature.
    pub fn issue(&self, csr: &Path, out: &Path) {
        self.issue_days(csr, out, 30);
    }

    /// Issues a certificate valid for `days` days.
    pub fn issue_days(&self, csr: &Path, out: &Path, days: u32) {
        openssl(&["req", "-in", csr.to_str().unwrap(), "-verify", "-noout"]).ok();
        openssl(&[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            self.dir.join("ca.crt").to_str().unwrap(),
            "-CAkey",
            self.dir.join("ca.key").to_str().unwrap(),
            // A random serial per certificate: tests issue in parallel, and a
            // shared -CAcreateserial file is a race that openssl reports as
            // "Unable to load number".
            "-set_serial",
            &format!("0x{:016x}", rand::random::<u64>() >> 1),
            "-days",
            &days.to_string(),
            "-extfile",
            self.dir.join("leaf.ext").to_str().unwrap(),
            "-out",
            out.to_str().unwrap(),
        ])
        .ok();
    }
}

/// `openssl dgst` names for a Glance hash method.
pub fn dgst_flag(hash: &str) -> &'static str {
    match hash {
        "SHA-224" => "-sha224",
        "SHA-256" => "-sha256",
        "SHA-384" => "-sha384",
        "SHA-512" => "-sha512",
        other => panic!("no such hash {other}"),
    }
}

pub const HASHES: [&str; 4] = ["SHA-224", "SHA-256", "SHA-384", "SHA-512"];

/// Writes the properties JSON of a `sign --json`/default output to a file.
pub fn write_props(env: &Env, name: &str, props: &serde_json::Value) -> PathBuf {
    let path = env.path(name);
    std::fs::write(&path, serde_json::to_vec_pretty(props).unwrap()).unwrap();
    path
}

pub fn decode_b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

pub fn encode_b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The cursive peer (tests/peers): the venv's python, made once per binary.
/// `None` when IMGSEAL_SKIP_CURSIVE is set (CI never sets it).
pub fn cursive_python() -> Option<&'static str> {
    static PY: OnceLock<Option<String>> = OnceLock::new();
    PY.get_or_init(|| {
        if std::env::var_os("IMGSEAL_SKIP_CURSIVE").is_some() {
            return None;
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("bash")
            .arg(repo.join("scripts/peers-venv.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("peers-venv.sh runs");
        assert!(out.status.success(), "scripts/peers-venv.sh failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        Some(
            stdout
                .lines()
                .last()
                .expect("the script prints the python path")
                .trim()
                .to_string(),
        )
    })
    .as_deref()
}

pub fn cursive(args: &[&str]) -> Option<Run> {
    let py = cursive_python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/cursive_peer.py");
    Some(Run::from(
        Command::new(py)
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cursive peer runs"),
    ))
}

/// SoftHSM2's module on this machine.
pub fn softhsm_module() -> &'static str {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("softhsm2 installed")
}

/// An operator's SoftHSM token made with softhsm2-util in a directory of its
/// own, as a production HSM is set up outside imgseal. Returns the directory
/// and its softhsm2.conf (give it to imgseal as SOFTHSM2_CONF).
pub fn operator_token(prefix: &str, label: &str, so_pin: &str, pin: &str) -> (TempDir, PathBuf) {
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tokens")).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.path().display()
        ),
    )
    .unwrap();
    // softhsm2-util's argv holds the PINs: that is the test's setup, not imgseal.
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            so_pin,
            "--pin",
            pin,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (dir, conf)
}

/// Makes a FIFO at `path`: an input nobody writes to, which a blocking open
/// would wait on for ever.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}
