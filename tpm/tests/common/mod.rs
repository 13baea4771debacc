//! The harness: a real swtpm per test (random even port, retried when the
//! port is taken), a `Tpm` connected to it, and tpm2-tools/openssl runners.
// Each test crate takes what it needs from this harness (`mod common;`):
// the rest is unused there, and `pub` here means "for the test crates".
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;
use std::sync::mpsc;
use std::time::Duration;

use imgseal_tpm::{SwtpmInstance, Tpm};

/// ESYS prints every expected TPM error on stderr; keep the test output readable.
pub fn quiet() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Safety: set once, before any test thread touches the TSS (every test
        // calls this first and Once blocks the others until it is done).
        unsafe { std::env::set_var("TSS2_LOG", "all+none") };
    });
}

pub struct TestTpm {
    pub dir: tempfile::TempDir,
    pub swtpm: SwtpmInstance,
    pub tpm: Tpm,
}

impl TestTpm {
    pub fn start() -> TestTpm {
        quiet();
        let dir = tempfile::tempdir().unwrap();
        let swtpm = SwtpmInstance::start(&dir.path().join("state")).unwrap();
        let tpm = Tpm::open(&swtpm.tcti()).unwrap();
        TestTpm { dir, swtpm, tpm }
    }

    /// A TPM manufactured by swtpm_setup: RSA EK at 0x81010001, EK certificate at 0x01c00002.
    pub fn start_manufactured() -> TestTpm {
        quiet();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        imgseal_tpm::manufacture(&state).unwrap();
        let swtpm = SwtpmInstance::start(&state).unwrap();
        let tpm = Tpm::open(&swtpm.tcti()).unwrap();
        TestTpm { dir, swtpm, tpm }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `swtpm:host=127.0.0.1,port=P`, for TPM2TOOLS_TCTI.
    pub fn tcti(&self) -> String {
        self.swtpm.tcti().to_string()
    }

    /// Runs a tpm2-tools command against this TPM.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        run(Command::new(program)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tcti()))
    }

    /// Restarts swtpm on the same state and reconnects.
    pub fn restart(&mut self) {
        self.swtpm.restart().unwrap();
        self.tpm = Tpm::open(&self.swtpm.tcti()).unwrap();
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on another thread and fails the test if it takes longer than `secs`.
pub fn with_timeout<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("timed out after {secs} s"))
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2654435761)
                .rotate_left(seed as u32 % 32) as u8
                ^ seed
        })
        .collect()
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}
