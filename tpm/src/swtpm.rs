//! Running swtpm: a child process per test ([`SwtpmInstance`]) or one
//! persistent daemon per state directory ([`ensure_running`], imgseal's
//! embedded TPM under `$IMGSEAL_HOME`).
//!
//! tss-esapi 7.7 reaches swtpm only over TCP (see `tcti.rs`), and the swtpm
//! TCTI always uses port P for commands and P+1 for control. Ports are picked
//! at random (even, 20000–59998); swtpm cannot report an ephemeral pair, and
//! handing it pre-bound sockets does not work, so a start that loses a race
//! ("Address already in use") is retried on another pair.
//!
//! The control channel is spoken here directly (it is what `swtpm_ioctl
//! --tcp` sends): `CMD_INIT` (2) re-initialises the TPM as a power cycle
//! would, `CMD_SHUTDOWN` (3) stops swtpm. Each is a 4-byte big-endian command
//! followed by its input; the answer starts with a 4-byte result.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Result, TpmError};
use crate::tcti::Tcti;

/// Environment variables that may carry imgseal's secrets: the token PIN, a
/// token URI with `pin-value`, the TPM owner authorization. The processes
/// started here never inherit them: nothing in swtpm needs them, and the
/// embedded swtpm daemon outlives imgseal with its environment readable in
/// `/proc/PID/environ` (it held both secrets before this list existed;
/// tests/secret_hygiene.rs checks the daemon and `swtpm_setup`).
const SECRET_ENV: &[&str] = &[
    "IMGSEAL_PIN",
    "IMGSEAL_TOKEN",
    "IMGSEAL_TPM_OWNER_AUTH",
    "IMGSEAL_TPM_PLATFORM_AUTH",
    // The cloud's credentials, when imgseal runs with an OpenStack environment.
    "OS_PASSWORD",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_TOKEN",
];

/// A child process without imgseal's secrets in its environment.
fn child(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in SECRET_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// The swtpm binary; `$IMGSEAL_SWTPM` overrides it.
pub fn swtpm_binary() -> PathBuf {
    std::env::var_os("IMGSEAL_SWTPM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("swtpm"))
}

const START_ATTEMPTS: usize = 20;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

const CMD_INIT: u32 = 2;
const CMD_SHUTDOWN: u32 = 3;

/// A random even port P in 20000..=59998 (P+1 is the control port).
pub fn random_port_pair() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    20000 + 2 * (h.finish() % 20000) as u16
}

/// A swtpm child process serving one state directory; killed on drop.
#[derive(Debug)]
pub struct SwtpmInstance {
    child: Option<Child>,
    port: u16,
    state_dir: PathBuf,
}

fn swtpm_args(state_dir: &Path, port: u16) -> Vec<String> {
    vec![
        "socket".into(),
        "--tpm2".into(),
        "--tpmstate".into(),
        format!("dir={}", state_dir.display()),
        "--server".into(),
        format!("type=tcp,port={port},bindaddr=127.0.0.1"),
        "--ctrl".into(),
        format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
        "--flags".into(),
        "not-need-init,startup-clear".into(),
        // No --log: with a log file swtpm would write "Address already in use" there, not on stderr.
    ]
}

/// Creates `state_dir` and returns its canonical (absolute) path. swtpm
/// takes the directory inside comma-separated option strings (`--tpmstate
/// dir=…`, `--pid file=…`) with no escaping, so a path holding ',' would be
/// cut there or inject options (`mode=`, `backend-uri=`): it is refused. A
/// relative path is made absolute because `swtpm --daemon` changes to `/`.
fn prepare_state_dir(state_dir: &Path) -> Result<PathBuf> {
    refuse_comma(state_dir)?;
    fs::create_dir_all(state_dir)
        .map_err(|e| TpmError::io(format!("creating {}", state_dir.display()), e))?;
    let dir = fs::canonicalize(state_dir)
        .map_err(|e| TpmError::io(format!("resolving {}", state_dir.display()), e))?;
    refuse_comma(&dir)?;
    Ok(dir)
}

fn refuse_comma(dir: &Path) -> Result<()> {
    if dir.as_os_str().as_encoded_bytes().contains(&b',') {
        return Err(TpmError::Swtpm(format!(
            "the TPM state directory {} contains a comma, which swtpm cannot take in its options (--tpmstate dir=…); use a path without ',' (e.g. another IMGSEAL_HOME)",
            dir.display()
        )));
    }
    Ok(())
}

/// The canonical form of an existing state directory (as the daemon was
/// started with it), else the path as given.
fn resolved(state_dir: &Path) -> PathBuf {
    fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf())
}

fn address_in_use(stderr: &str) -> bool {
    stderr.contains("Address already in use")
}

impl SwtpmInstance {
    /// Starts swtpm on `state_dir` (created if missing) on a random port pair.
    ///
    /// Pairs someone already listens on are skipped before spawning (so a
    /// lost race cannot make us mistake another swtpm for ours); a pair taken
    /// between that check and swtpm's bind makes swtpm exit with "Address
    /// already in use", and the next pair is tried.
    pub fn start(state_dir: &Path) -> Result<SwtpmInstance> {
        let ports = std::iter::repeat_with(random_port_pair)
            .take(START_ATTEMPTS * 5)
            .filter(|p| pair_is_free(*p))
            .take(START_ATTEMPTS);
        SwtpmInstance::start_with_ports(state_dir, ports)
    }

    /// Starts swtpm on the first port pair of `ports` it can bind (swtpm is
    /// spawned on each in turn; "Address already in use" moves to the next).
    pub fn start_with_ports(
        state_dir: &Path,
        ports: impl IntoIterator<Item = u16>,
    ) -> Result<SwtpmInstance> {
        let state_dir = &prepare_state_dir(state_dir)?;
        let mut tried = Vec::new();
        for port in ports {
            if port == 0 || port >= u16::MAX - 1 {
                continue;
            }
            tried.push(port);
            match SwtpmInstance::try_start(state_dir, port)? {
                Some(instance) => return Ok(instance),
                None => continue,
            }
        }
        Err(TpmError::Swtpm(format!(
            "no free port pair after {} attempts ({tried:?})",
            tried.len()
        )))
    }

    /// `Ok(None)` when the port pair was taken.
    fn try_start(state_dir: &Path, port: u16) -> Result<Option<SwtpmInstance>> {
        let stderr_path = state_dir.join("swtpm.stderr");
        let stderr = File::create(&stderr_path)
            .map_err(|e| TpmError::io(format!("creating {}", stderr_path.display()), e))?;
        let mut child = child(swtpm_binary())
            .args(swtpm_args(state_dir, port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| TpmError::io(format!("starting {}", swtpm_binary().display()), e))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| TpmError::io("waiting for swtpm", e))?
            {
                let message = fs::read_to_string(&stderr_path).unwrap_or_default();
                if address_in_use(&message) {
                    return Ok(None);
                }
                return Err(TpmError::Swtpm(format!(
                    "exited with {status} on port {port}: {}",
                    message.trim()
                )));
            }
            if serves(&mut child, port) {
                return Ok(Some(SwtpmInstance {
                    child: Some(child),
                    port,
                    state_dir: state_dir.to_path_buf(),
                }));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TpmError::Swtpm(format!(
                    "did not accept connections on 127.0.0.1:{port}/{} within {READY_TIMEOUT:?}",
                    port + 1
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn ctrl_port(&self) -> u16 {
        self.port + 1
    }

    pub fn tcti(&self) -> Tcti {
        Tcti::swtpm_localhost(self.port)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A TPM reset, as `swtpm_ioctl -i` + `tpm2_startup -c` do it: STCLEAR
    /// write locks end, NV contents stay.
    pub fn reset(&self) -> Result<()> {
        reset_tpm(self.port)
    }

    /// Kills swtpm with SIGKILL (no orderly shutdown), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts swtpm again on the same state, on the same port pair if it is
    /// still free, else on another (see [`SwtpmInstance::tcti`]).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let same = std::iter::once(self.port);
        let others = std::iter::repeat_with(random_port_pair).take(START_ATTEMPTS);
        let fresh = SwtpmInstance::start_with_ports(&self.state_dir, same.chain(others))?;
        *self = fresh;
        Ok(())
    }
}

impl Drop for SwtpmInstance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The child listens on both ports itself. Connecting is not proof: when P
/// is taken by someone else, swtpm may already listen on P+1 and not yet have
/// failed to bind P, and a connection to P would reach the other listener.
/// On Linux the listening sockets' inodes are matched with the child's file
/// descriptors; elsewhere, the child must still run a moment after both
/// ports answer.
fn serves(child: &mut Child, port: u16) -> bool {
    if !matches!(child.try_wait(), Ok(None)) {
        return false;
    }
    let pid = child.id();
    match (listening_inode(port), listening_inode(port + 1)) {
        (Some(Some(data)), Some(Some(ctrl))) => owns_socket(pid, data) && owns_socket(pid, ctrl),
        (Some(_), Some(_)) => false,
        _ => {
            if !(connects(port + 1) && connects(port)) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
            matches!(child.try_wait(), Ok(None))
        }
    }
}

/// The inode of the socket listening on 127.0.0.1:`port` (`Some(None)`: none
/// listens), from /proc/net/tcp; `None` when that cannot be read.
fn listening_inode(port: u16) -> Option<Option<u64>> {
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let wanted = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 9 && fields[3] == "0A" && wanted.iter().any(|w| w == fields[1]) {
            return Some(fields[9].parse().ok());
        }
    }
    Some(None)
}

fn owns_socket(pid: u32, inode: u64) -> bool {
    let target = format!("socket:[{inode}]");
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
}

/// Nobody listens on 127.0.0.1:P nor P+1 right now.
fn pair_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
}

fn connects(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn stream(port: u16) -> Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| TpmError::io(format!("connecting to swtpm at {addr}"), e))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok();
    s.set_write_timeout(Some(IO_TIMEOUT)).ok();
    Ok(s)
}

/// Sends one control command; returns the 4-byte result.
fn ctrl_command(port: u16, command: u32, input: &[u8]) -> Result<u32> {
    let mut s = stream(port + 1)?;
    let mut msg = command.to_be_bytes().to_vec();
    msg.extend_from_slice(input);
    s.write_all(&msg)
        .map_err(|e| TpmError::io("writing to the swtpm control channel", e))?;
    let mut result = [0u8; 4];
    s.read_exact(&mut result)
        .map_err(|e| TpmError::io("reading from the swtpm control channel", e))?;
    Ok(u32::from_be_bytes(result))
}

/// `CMD_INIT` on the control channel, then TPM2_Startup(CLEAR) on the data channel.
pub fn reset_tpm(port: u16) -> Result<()> {
    let rc = ctrl_command(port, CMD_INIT, &0u32.to_be_bytes())?;
    if rc != 0 {
        return Err(TpmError::Swtpm(format!("CMD_INIT returned {rc:#x}")));
    }
    // TPM2_Startup(TPM_SU_CLEAR): tag TPM_ST_NO_SESSIONS, size 12, TPM_CC_Startup.
    let command = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];
    let mut s = stream(port)?;
    s.write_all(&command)
        .map_err(|e| TpmError::io("sending TPM2_Startup to swtpm", e))?;
    let mut response = [0u8; 10];
    s.read_exact(&mut response)
        .map_err(|e| TpmError::io("reading TPM2_Startup's response", e))?;
    let rc = u32::from_be_bytes(response[6..10].try_into().unwrap());
    if rc != 0 && rc != crate::error::TPM_RC_INITIALIZE {
        return Err(TpmError::Tpm {
            command: "TPM2_Startup",
            code: crate::error::ResponseCode(rc),
        });
    }
    Ok(())
}

/// Runs `swtpm_setup` on a fresh state directory: an EK (RSA 2048, persisted
/// at 0x81010001) with a certificate from swtpm's local CA at 0x01c00002, and
/// a platform certificate. Needs a writable swtpm-localca (root by default).
pub fn manufacture(state_dir: &Path) -> Result<()> {
    let state_dir = &prepare_state_dir(state_dir)?;
    let out = child("swtpm_setup")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(state_dir)
        .args([
            "--create-ek-cert",
            "--create-platform-cert",
            "--not-overwrite",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TpmError::io("running swtpm_setup", e))?;
    if !out.status.success() {
        return Err(TpmError::Swtpm(format!(
            "swtpm_setup failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

// ---- the persistent embedded swtpm ------------------------------------------

const PID_FILE: &str = "swtpm.pid";
const PORT_FILE: &str = "swtpm.port";
const LOCK_FILE: &str = "swtpm.lock";
const STATE_FILE: &str = "tpm2-00.permall";

/// The swtpm daemon serving `state_dir`, started if it is not running; returns
/// its TCTI. A fresh state directory is first manufactured with an EK
/// certificate when `swtpm_setup` can do it (else it stays a bare TPM and a
/// warning is logged). A file lock makes concurrent first calls start one daemon.
pub fn ensure_running(state_dir: &Path) -> Result<Tcti> {
    let state_dir = &prepare_state_dir(state_dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700));
    }
    let lock_path = state_dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| TpmError::io(format!("opening {}", lock_path.display()), e))?;
    // File::lock is Rust 1.89; the workspace already relies on it (src/home.rs).
    #[allow(clippy::incompatible_msrv)]
    let locked = lock.lock();
    locked.map_err(|e| TpmError::io(format!("locking {}", lock_path.display()), e))?;

    if let Some(port) = running_daemon(state_dir) {
        return Ok(Tcti::swtpm_localhost(port));
    }
    // A live swtpm on this state without a usable port file (imgseal died
    // between `swtpm --daemon` and writing it): adopt it, or stop it. Never
    // start a second one beside it: it would fail on swtpm's state lock.
    if let Some(pid) = daemon_pid(state_dir)
        && let Some(port) = adopt_orphan(state_dir, pid)?
    {
        return Ok(Tcti::swtpm_localhost(port));
    }
    let _ = fs::remove_file(state_dir.join(PID_FILE));
    let _ = fs::remove_file(state_dir.join(PORT_FILE));
    if !state_dir.join(STATE_FILE).exists()
        && let Err(e) = manufacture(state_dir)
    {
        tracing::warn!("embedded TPM without EK certificate: {e}");
    }
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        let port = random_port_pair();
        if !pair_is_free(port) {
            continue;
        }
        let stderr_path = state_dir.join("swtpm.stderr");
        let stderr = File::create(&stderr_path)
            .map_err(|e| TpmError::io(format!("creating {}", stderr_path.display()), e))?;
        let mut args = swtpm_args(state_dir, port);
        args.extend([
            "--pid".into(),
            format!("file={}", state_dir.join(PID_FILE).display()),
            "--daemon".into(),
        ]);
        let status = child(swtpm_binary())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .map_err(|e| TpmError::io(format!("starting {}", swtpm_binary().display()), e))?;
        let message = fs::read_to_string(&stderr_path).unwrap_or_default();
        if !status.success() {
            if address_in_use(&message) {
                last = message;
                continue;
            }
            return Err(TpmError::Swtpm(format!(
                "daemon exited with {status}: {}",
                message.trim()
            )));
        }
        // From here on the daemon runs (it bound both ports, or it would
        // have exited with "Address already in use"): an error stops it, so
        // that no orphan without a port file is left behind.
        let deadline = Instant::now() + READY_TIMEOUT;
        while !(connects(port + 1) && connects(port)) {
            if Instant::now() > deadline {
                let _ = ctrl_command(port, CMD_SHUTDOWN, &[]);
                return Err(TpmError::Swtpm(format!(
                    "daemon did not accept connections on 127.0.0.1:{port} within {READY_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Err(e) = write_atomically(&state_dir.join(PORT_FILE), format!("{port}\n").as_bytes())
        {
            let _ = ctrl_command(port, CMD_SHUTDOWN, &[]);
            return Err(e);
        }
        return Ok(Tcti::swtpm_localhost(port));
    }
    Err(TpmError::Swtpm(format!(
        "no free port pair after {START_ATTEMPTS} attempts: {}",
        last.trim()
    )))
}

/// Whether `state_dir` holds a TPM's state (it was started at least once).
pub fn has_state(state_dir: &Path) -> bool {
    state_dir.join(STATE_FILE).exists()
}

/// The TCTI of the daemon serving `state_dir`, if one runs.
pub fn daemon_tcti(state_dir: &Path) -> Option<Tcti> {
    running_daemon(state_dir).map(Tcti::swtpm_localhost)
}

/// The pid of the daemon serving `state_dir`, if one runs.
pub fn daemon_pid(state_dir: &Path) -> Option<u32> {
    let pid: u32 = fs::read_to_string(state_dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // The pid must still be a swtpm serving this directory (pids are reused).
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    // Started with the canonical path (older versions: the path as given).
    let ours = [
        format!("dir={}", resolved(state_dir).display()),
        format!("dir={}", state_dir.display()),
    ];
    let is_swtpm = args.first().is_some_and(|a| a.ends_with(b"swtpm"));
    (is_swtpm && ours.iter().any(|o| args.contains(&o.as_bytes()))).then_some(pid)
}

/// The data port of swtpm `pid`, from its command line (`--server
/// type=tcp,port=P`), when its control port (`--ctrl`) is P+1 as the TCTI
/// expects.
fn cmdline_port(pid: u32) -> Option<u16> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let option_port = |name: &str| -> Option<u16> {
        let i = args.iter().position(|a| a == name)?;
        let value = args.get(i + 1)?;
        let mut opts = value.split(',');
        if !opts.any(|o| o == "type=tcp") {
            return None;
        }
        value
            .split(',')
            .find_map(|o| o.strip_prefix("port="))?
            .parse()
            .ok()
    };
    let port = option_port("--server")?;
    (option_port("--ctrl")? == port.checked_add(1)?).then_some(port)
}

/// A live swtpm `pid` on `state_dir` whose port file is missing or stale:
/// its port is recovered from its command line and, once it serves there,
/// written back (`Some(port)`). If it does not come to serve, it is stopped
/// over its control channel (`None`: start a new one); if that cannot be
/// done safely, an error names it.
fn adopt_orphan(state_dir: &Path, pid: u32) -> Result<Option<u16>> {
    let stuck = |why: String| {
        TpmError::Swtpm(format!(
            "swtpm (pid {pid}) holds the TPM state in {} but {why}; stop it (kill {pid}) and retry",
            state_dir.display()
        ))
    };
    let Some(port) = cmdline_port(pid) else {
        return Err(stuck("its TCP ports cannot be recovered".into()));
    };
    // It may still be starting (another imgseal died right after spawning it).
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if daemon_pid(state_dir) != Some(pid) {
            return Ok(None);
        }
        if daemon_serves(pid, port) {
            write_atomically(&state_dir.join(PORT_FILE), format!("{port}\n").as_bytes())?;
            tracing::info!("reusing swtpm (pid {pid}) on port {port}: its port file was missing");
            return Ok(Some(port));
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Only a control port it owns itself is told to shut down.
    let owns_ctrl = matches!(listening_inode(port + 1), Some(Some(ctrl)) if owns_socket(pid, ctrl));
    if !owns_ctrl {
        return Err(stuck(format!(
            "does not serve 127.0.0.1:{port}/{}",
            port + 1
        )));
    }
    let _ = ctrl_command(port, CMD_SHUTDOWN, &[]);
    wait_for_exit(pid);
    if daemon_pid(state_dir) == Some(pid) {
        return Err(stuck("did not stop on CMD_SHUTDOWN".into()));
    }
    Ok(None)
}

fn running_daemon(state_dir: &Path) -> Option<u16> {
    let pid = daemon_pid(state_dir)?;
    let port: u16 = fs::read_to_string(state_dir.join(PORT_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    daemon_serves(pid, port).then_some(port)
}

fn daemon_serves(pid: u32, port: u16) -> bool {
    let Some(ctrl_port) = port.checked_add(1) else {
        return false;
    };
    // The daemon serves when it owns the sockets listening on both ports.
    // Not tested by connecting: swtpm listens with a backlog of 1 and serves
    // one connection at a time, so while other imgseal processes use it a
    // connection attempt can time out; the daemon was then taken for dead,
    // and the new one started in its place failed on swtpm's state lock
    // (eight `imgseal verify` at once, tests/concurrency.rs).
    match (listening_inode(port), listening_inode(ctrl_port)) {
        (Some(Some(data)), Some(Some(ctrl))) => owns_socket(pid, data) && owns_socket(pid, ctrl),
        (Some(_), Some(_)) => false,
        // No /proc/net/tcp: connect, as before.
        _ => connects(ctrl_port) && connects(port),
    }
}

/// Stops the daemon serving `state_dir` (CMD_SHUTDOWN); `false` if none ran.
pub fn stop_daemon(state_dir: &Path) -> Result<bool> {
    let Some(port) = running_daemon(state_dir) else {
        return Ok(false);
    };
    let pid = daemon_pid(state_dir);
    let rc = ctrl_command(port, CMD_SHUTDOWN, &[])?;
    if rc != 0 {
        return Err(TpmError::Swtpm(format!("CMD_SHUTDOWN returned {rc:#x}")));
    }
    if let Some(p) = pid {
        wait_for_exit(p);
    }
    let _ = fs::remove_file(state_dir.join(PORT_FILE));
    Ok(true)
}

/// Waits (up to `READY_TIMEOUT`) until process `pid` is gone or a zombie.
fn wait_for_exit(pid: u32) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if !Path::new(&format!("/proc/{pid}")).exists() || Instant::now() > deadline {
            break;
        }
        // A zombie has no comm worth checking; the daemon's parent is init.
        if fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        File::create(&tmp).map_err(|e| TpmError::io(format!("creating {}", tmp.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| TpmError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| TpmError::io(format!("renaming {}", tmp.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_even_and_in_range() {
        for _ in 0..1000 {
            let p = random_port_pair();
            assert!(p.is_multiple_of(2) && (20000..=59998).contains(&p), "{p}");
        }
    }
}
