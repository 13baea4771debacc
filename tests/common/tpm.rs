//! A real swtpm per test for the CLI tests: imgseal is pointed at it with
//! `--tcti`, tpm2-tools with `TPM2TOOLS_TCTI`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

use imgseal_tpm::SwtpmInstance;
use tempfile::TempDir;

use super::{Env, Run};

/// ESYS prints every expected TPM error on stderr; keep test output readable.
pub fn quiet() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before this test binary's threads touch the TSS:
        // every TPM test calls this first and Once blocks the others until done.
        unsafe { std::env::set_var("TSS2_LOG", "all+none") };
    });
}

pub struct TestTpm {
    pub dir: TempDir,
    pub swtpm: SwtpmInstance,
}

impl TestTpm {
    /// A bare TPM (no EK certificate).
    pub fn start() -> TestTpm {
        quiet();
        let dir = tempfile::Builder::new()
            .prefix("imgseal-swtpm-")
            .tempdir()
            .unwrap();
        let swtpm = SwtpmInstance::start(&dir.path().join("state")).unwrap();
        TestTpm { dir, swtpm }
    }

    /// A TPM manufactured by swtpm_setup: an RSA EK and its certificate from swtpm's local CA.
    pub fn start_manufactured() -> TestTpm {
        quiet();
        let dir = tempfile::Builder::new()
            .prefix("imgseal-swtpm-")
            .tempdir()
            .unwrap();
        let state = dir.path().join("state");
        imgseal_tpm::manufacture(&state).unwrap();
        let swtpm = SwtpmInstance::start(&state).unwrap();
        TestTpm { dir, swtpm }
    }

    /// `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        self.swtpm.tcti().to_string()
    }

    pub fn state_dir(&self) -> &Path {
        self.swtpm.state_dir()
    }

    /// A tpm2-tools (or other peer) command against this TPM.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program)
            .args(args)
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+none")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    /// Runs a peer tool and insists that it succeeds; returns stdout.
    #[track_caller]
    pub fn tool_ok(&self, program: &str, args: &[&str]) -> Vec<u8> {
        let out = self.tool(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A TPM reset as an operator does it: `swtpm_ioctl -i` on the control
    /// channel, then `tpm2_startup -c`. STCLEAR write locks end; NV stays.
    pub fn reset_with_tools(&self) {
        let ctrl = format!("127.0.0.1:{}", self.swtpm.ctrl_port());
        let out = Command::new("swtpm_ioctl")
            .args(["--tcp", &ctrl, "-i"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swtpm_ioctl -i: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.tool_ok("tpm2_startup", &["-c"]);
    }

    /// Kills swtpm (SIGKILL) and starts it again on the same state.
    pub fn restart(&mut self) {
        self.swtpm.restart().unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Env {
    /// `imgseal --tcti <this TPM> ARGS…`.
    pub fn tpm_run(&self, tpm: &TestTpm, args: &[&str]) -> Run {
        let tcti = tpm.tcti();
        let mut all = vec!["--tcti", tcti.as_str()];
        all.extend_from_slice(args);
        self.run(&all)
    }
}
