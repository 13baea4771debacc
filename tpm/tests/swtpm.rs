//! Running swtpm: port races, parallel instances, the persistent embedded daemon.

mod common;

use std::net::TcpListener;

use common::*;
use imgseal_tpm::swtpm::{daemon_pid, random_port_pair};
use imgseal_tpm::{NvAccess, NvSpec, SwtpmInstance, Tpm, ensure_running, stop_daemon};

/// An even port P we hold, so that swtpm cannot bind it.
fn occupied_port() -> (TcpListener, u16) {
    loop {
        let p = random_port_pair();
        if let Ok(l) = TcpListener::bind(("127.0.0.1", p)) {
            return (l, p);
        }
    }
}

#[test]
fn a_taken_port_is_retried_on_another_pair() {
    quiet();
    let dir = tempfile::tempdir().unwrap();
    let (_held, taken) = occupied_port();
    let free = loop {
        let p = random_port_pair();
        if p != taken
            && TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        {
            break p;
        }
    };
    let swtpm = SwtpmInstance::start_with_ports(dir.path(), [taken, free]).unwrap();
    assert_eq!(swtpm.port(), free);
    assert_eq!(
        swtpm.tcti().to_string(),
        format!("swtpm:host=127.0.0.1,port={free}")
    );
    Tpm::open(&swtpm.tcti()).unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("swtpm.stderr")).unwrap_or_default();
    assert!(
        !stderr.contains("Address already in use"),
        "the retry's stderr is fresh"
    );

    // Only taken ports: a clear error, not a hang.
    let (_held2, taken2) = occupied_port();
    let err = SwtpmInstance::start_with_ports(dir.path(), [taken, taken2]).unwrap_err();
    assert!(err.to_string().contains("no free port pair"), "{err}");
}

#[test]
fn parallel_instances_get_their_own_ports_and_state() {
    quiet();
    let handles: Vec<_> = (0..4u8)
        .map(|i| {
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                let swtpm = SwtpmInstance::start(dir.path()).unwrap();
                let mut tpm = Tpm::open(&swtpm.tcti()).unwrap();
                tpm.nv_define_space(&NvSpec::sealed_data(0x0181_A002, 16), &[])
                    .unwrap();
                tpm.nv_write(0x0181_A002, &NvAccess::Owner, 0, &[i; 16])
                    .unwrap();
                let back = tpm.nv_read_all(0x0181_A002, &NvAccess::public()).unwrap();
                assert_eq!(back, vec![i; 16]);
                (swtpm.port(), dir, swtpm)
            })
        })
        .collect();
    let mut ports: Vec<u16> = Vec::new();
    let mut keep = Vec::new();
    for h in handles {
        let (port, dir, swtpm) = h.join().unwrap();
        ports.push(port);
        keep.push((dir, swtpm));
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 4, "{ports:?}");
}

/// Stops the daemon even when an assertion fails.
struct DaemonGuard(std::path::PathBuf);
impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let _ = stop_daemon(&self.0);
    }
}

#[test]
fn the_embedded_daemon_is_started_once_reused_and_restarted_with_its_state() {
    quiet();
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("tpm");
    let _guard = DaemonGuard(state.clone());

    let tcti = ensure_running(&state).unwrap();
    let pid = daemon_pid(&state).expect("a daemon runs");
    assert!(state.join("tpm2-00.permall").exists());
    let mut tpm = Tpm::open(&tcti).unwrap();
    tpm.nv_define_space(&NvSpec::sealed_data(0x0181_A002, 4), &[])
        .unwrap();
    tpm.nv_write(0x0181_A002, &NvAccess::Owner, 0, b"kept")
        .unwrap();
    // Manufactured on first use: the EK certificate is there.
    assert!(
        tpm.ek_certificate(imgseal_tpm::EkKind::Rsa2048)
            .unwrap()
            .is_some()
    );
    drop(tpm);

    // Reused, not restarted.
    assert_eq!(ensure_running(&state).unwrap(), tcti);
    assert_eq!(daemon_pid(&state), Some(pid));

    // Stopped: started again on the same state.
    assert!(stop_daemon(&state).unwrap());
    assert_eq!(daemon_pid(&state), None);
    assert!(!stop_daemon(&state).unwrap());
    let tcti = ensure_running(&state).unwrap();
    assert_ne!(daemon_pid(&state), Some(pid));
    let mut tpm = Tpm::open(&tcti).unwrap();
    assert_eq!(
        tpm.nv_read_all(0x0181_A002, &NvAccess::public()).unwrap(),
        b"kept"
    );
}

#[test]
fn a_state_dir_with_a_comma_is_refused_and_a_relative_one_works() {
    quiet();
    let home = tempfile::tempdir().unwrap();
    let comma = home.path().join("My,Files").join("tpm");
    for err in [
        ensure_running(&comma).unwrap_err().to_string(),
        SwtpmInstance::start(&comma).unwrap_err().to_string(),
    ] {
        assert!(err.contains("contains a comma"), "{err}");
        assert!(err.contains("My,Files"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(!comma.exists(), "nothing is created for a refused path");

    // A relative path (from the test's cwd, the crate directory) that means
    // nothing from `/`, where `swtpm --daemon` changes to.
    let target = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    let common = cwd
        .ancestors()
        .find(|a| target.path().starts_with(a))
        .unwrap();
    let mut relative = std::path::PathBuf::new();
    for _ in cwd.strip_prefix(common).unwrap().components() {
        relative.push("..");
    }
    relative.push(target.path().strip_prefix(common).unwrap());
    relative.push("tpm");
    assert!(!std::path::Path::new("/").join(&relative).exists());
    assert!(relative.is_relative());
    let _guard = DaemonGuard(relative.clone());
    let tcti = ensure_running(&relative).unwrap();
    assert!(daemon_pid(&relative).is_some());
    assert!(target.path().join("tpm/tpm2-00.permall").exists());
    let mut tpm = Tpm::open(&tcti).unwrap();
    tpm.nv_define_space(&NvSpec::sealed_data(0x0181_A003, 4), &[])
        .unwrap();
    drop(tpm);
    assert_eq!(ensure_running(&relative).unwrap(), tcti);
    assert!(stop_daemon(&relative).unwrap());
}

/// Kills a process by pid (the daemon a failed assertion would leave behind).
struct KillGuard(u32);
impl Drop for KillGuard {
    fn drop(&mut self) {
        if std::path::Path::new(&format!("/proc/{}", self.0)).exists() {
            let _ = std::process::Command::new("kill")
                .arg(self.0.to_string())
                .status();
        }
    }
}

#[test]
fn a_daemon_whose_port_file_is_lost_is_reused() {
    quiet();
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("tpm");
    let _guard = DaemonGuard(state.clone());

    let tcti = ensure_running(&state).unwrap();
    let pid = daemon_pid(&state).expect("a daemon runs");
    let _kill = KillGuard(pid);
    let mut tpm = Tpm::open(&tcti).unwrap();
    tpm.nv_define_space(&NvSpec::sealed_data(0x0181_A004, 4), &[])
        .unwrap();
    tpm.nv_write(0x0181_A004, &NvAccess::Owner, 0, b"orph")
        .unwrap();
    drop(tpm);

    // As if imgseal died after `swtpm --daemon` but before writing the port.
    std::fs::remove_file(state.join("swtpm.port")).unwrap();
    assert_eq!(ensure_running(&state).unwrap(), tcti);
    assert_eq!(daemon_pid(&state), Some(pid), "the same daemon serves");
    assert!(state.join("swtpm.port").exists());
    // A port file pointing elsewhere is corrected the same way.
    std::fs::write(state.join("swtpm.port"), "2\n").unwrap();
    assert_eq!(ensure_running(&state).unwrap(), tcti);
    assert_eq!(daemon_pid(&state), Some(pid));
    let mut tpm = Tpm::open(&tcti).unwrap();
    assert_eq!(
        tpm.nv_read_all(0x0181_A004, &NvAccess::public()).unwrap(),
        b"orph"
    );
    drop(tpm);
    assert!(stop_daemon(&state).unwrap());
    assert_eq!(daemon_pid(&state), None);
}
