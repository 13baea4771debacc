//! Device faults: swtpm killed in the middle of work, a TPM that is not there.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use imgseal_tpm::{AnchorLayout, NvAccess, RECORD_INDEX, RECORD_SIZE, Tcti, Tpm, TpmError};

#[test]
fn killing_swtpm_mid_operation_gives_a_clear_connection_error() {
    let mut t = TestTpm::start();
    let layout = AnchorLayout::standard(Some(2048));
    t.tpm.layout_ensure(&layout).unwrap();
    let tcti = t.tcti();
    let tpm = Arc::new(Mutex::new(Tpm::open(&t.swtpm.tcti()).unwrap()));
    let writes = Arc::new(Mutex::new(0u32));
    let worker = {
        let (tpm, writes) = (tpm.clone(), writes.clone());
        std::thread::spawn(move || {
            let data = pattern(2048, 1);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let r = tpm
                    .lock()
                    .unwrap()
                    .nv_write(0x0181_A002, &NvAccess::Owner, 0, &data);
                match r {
                    Ok(()) => *writes.lock().unwrap() += 1,
                    Err(e) => return Some(e),
                }
                if Instant::now() > deadline {
                    return None;
                }
            }
        })
    };
    // Let some writes through, then pull the plug.
    while *writes.lock().unwrap() < 5 {
        std::thread::sleep(Duration::from_millis(2));
    }
    t.swtpm.kill();
    let err = with_timeout(15, move || worker.join().unwrap())
        .expect("the write loop should have failed once swtpm died");
    assert!(err.is_connection(), "{err}");
    let text = err.to_string();
    assert!(text.contains(&tcti), "{text}");
    assert!(
        text.contains("TSS2_TCTI_RC_IO_ERROR") || text.contains("TSS2_TCTI_RC_NO_CONNECTION"),
        "{text}"
    );

    // Later calls fail the same way, promptly.
    let after = with_timeout(15, move || {
        tpm.lock().unwrap().nv_read_public(RECORD_INDEX).map(|_| ())
    });
    let after = after.unwrap_err();
    assert!(after.is_connection(), "{after}");
    // Opening a TPM that is not there fails promptly too.
    let dead = t.swtpm.tcti();
    let err = with_timeout(15, move || Tpm::open(&dead).map(|_| ())).unwrap_err();
    assert!(matches!(err, TpmError::Connection { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("cannot talk to the TPM at swtpm:host=127.0.0.1"),
        "{err}"
    );

    // Once swtpm is back, the same Tpm reconnects and finds complete data.
    t.swtpm.restart().unwrap();
    let mut tpm = Tpm::open(&t.swtpm.tcti()).unwrap();
    tpm.reconnect().unwrap();
    assert_eq!(
        tpm.nv_read_all(0x0181_A002, &NvAccess::public()).unwrap(),
        pattern(2048, 1),
        "every completed write wrote the same bytes"
    );
}

#[test]
fn a_seal_killed_midway_leaves_the_old_record_or_the_new_one() {
    let mut t = TestTpm::start();
    let layout = AnchorLayout::standard(None);
    t.tpm.layout_ensure(&layout).unwrap();
    let record = |v: u32| -> Vec<u8> {
        let mut r = pattern(RECORD_SIZE as usize, (v % 251) as u8);
        r[..4].copy_from_slice(&v.to_be_bytes());
        r
    };
    t.tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &record(0))
        .unwrap();
    let mut version = 0u32;
    for round in 0..3u64 {
        let tcti = t.swtpm.tcti();
        let confirmed = Arc::new(Mutex::new(version));
        let worker = {
            let confirmed = confirmed.clone();
            std::thread::spawn(move || {
                let mut tpm = Tpm::open(&tcti).unwrap();
                let mut v = *confirmed.lock().unwrap();
                loop {
                    v += 1;
                    // A seal: bump the counter, then write the record in one command.
                    if tpm.nv_increment(0x0181_A001, &NvAccess::Owner).is_err() {
                        return v;
                    }
                    match tpm.nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &record(v)) {
                        Ok(()) => *confirmed.lock().unwrap() = v,
                        Err(e) => {
                            assert!(e.is_connection(), "{e}");
                            return v;
                        }
                    }
                }
            })
        };
        // Kill once at least one seal went through, at a varying point.
        let deadline = Instant::now() + Duration::from_secs(20);
        while *confirmed.lock().unwrap() <= version && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(3 + 7 * round));
        t.swtpm.kill();
        let attempted = with_timeout(15, move || worker.join().unwrap());
        let confirmed = *confirmed.lock().unwrap();
        t.restart();
        let found = t
            .tpm
            .nv_read_all(RECORD_INDEX, &NvAccess::public())
            .unwrap();
        let v = u32::from_be_bytes(found[..4].try_into().unwrap());
        assert_eq!(found, record(v), "round {round}: the record is torn");
        assert!(
            v == confirmed || v == attempted,
            "round {round}: found version {v}, confirmed {confirmed}, attempted {attempted}"
        );
        assert!(
            confirmed > version,
            "round {round}: no seal got through before the kill"
        );
        version = v;
        // The counter never lags the record it protects.
        let counter = t
            .tpm
            .nv_counter_read(0x0181_A001, &NvAccess::public())
            .unwrap();
        assert!(
            counter >= v as u64,
            "counter {counter} < record version {v}"
        );
    }
}

#[test]
fn an_unreachable_tpm_fails_fast_with_the_tcti_in_the_message() {
    quiet();
    // A port pair nobody listens on (bound and released: nothing accepts there now).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port() & !1
    };
    let tcti = Tcti::swtpm_localhost(port);
    let started = Instant::now();
    let err = with_timeout(15, move || Tpm::open(&tcti).map(|_| ())).unwrap_err();
    assert!(err.is_connection(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // A device that does not exist.
    let err = Tpm::open(&"device:/dev/imgseal-no-such-tpm".parse().unwrap()).unwrap_err();
    assert!(err.is_connection(), "{err}");
    assert!(
        err.to_string().contains("/dev/imgseal-no-such-tpm"),
        "{err}"
    );
}
