//! NV indices and counters against a real swtpm, cross-checked with tpm2-tools.

mod common;

use common::*;
use imgseal_tpm::{AnchorLayout, Ensured, NvAccess, NvAttributes, NvSpec, RECORD_INDEX, TpmError};

const BLOB: u32 = 0x0181_A002;

#[test]
fn written_bytes_read_back_identically_here_and_with_tpm2_nvread() {
    let mut t = TestTpm::start();
    let info = t.tpm.info().unwrap();
    assert_eq!(info.nv_buffer_max, 1024);
    assert_eq!(info.nv_index_max, 2048);

    let spec = NvSpec::sealed_data(BLOB, 2048);
    t.tpm.nv_define_space(&spec, &[]).unwrap();
    let data = pattern(2048, 7);
    // Two NV_Write commands of 1024 bytes.
    t.tpm.nv_write(BLOB, &NvAccess::Owner, 0, &data).unwrap();
    assert_eq!(t.tpm.nv_read_all(BLOB, &NvAccess::public()).unwrap(), data);
    assert_eq!(t.tpm.nv_read_all(BLOB, &NvAccess::Owner).unwrap(), data);
    assert_eq!(
        t.tpm.nv_read(BLOB, &NvAccess::public(), 1000, 100).unwrap(),
        &data[1000..1100]
    );

    // tpm2_nvread, with the index's empty authorization and with the owner's.
    let by_index = t.path("by-index.bin");
    let by_owner = t.path("by-owner.bin");
    ok(&t.tool(
        "tpm2_nvread",
        &[
            "-C",
            "0x0181a002",
            "-s",
            "2048",
            "-o",
            by_index.to_str().unwrap(),
            "0x0181a002",
        ],
    ));
    ok(&t.tool(
        "tpm2_nvread",
        &[
            "-C",
            "o",
            "-s",
            "2048",
            "-o",
            by_owner.to_str().unwrap(),
            "0x0181a002",
        ],
    ));
    assert_eq!(std::fs::read(&by_index).unwrap(), data);
    assert_eq!(std::fs::read(&by_owner).unwrap(), data);

    // And what tpm2_nvwrite writes, we read.
    let theirs = pattern(300, 9);
    let file = t.path("theirs.bin");
    write(&file, &theirs);
    ok(&t.tool(
        "tpm2_nvwrite",
        &[
            "-C",
            "o",
            "--offset",
            "500",
            "-i",
            file.to_str().unwrap(),
            "0x0181a002",
        ],
    ));
    let mut expected = data.clone();
    expected[500..800].copy_from_slice(&theirs);
    assert_eq!(
        t.tpm.nv_read_all(BLOB, &NvAccess::public()).unwrap(),
        expected
    );

    // Nobody writes without the owner: the index's own (empty) auth is not enough.
    let err = t
        .tpm
        .nv_write(BLOB, &NvAccess::public(), 0, b"x")
        .unwrap_err();
    assert!(matches!(err, TpmError::WrongAttributes { .. }), "{err}");
    assert!(err.to_string().contains("TPM_RC_AUTH_UNAVAILABLE"), "{err}");
}

#[test]
fn public_area_and_name_match_tpm2_nvreadpublic() {
    let mut t = TestTpm::start();
    let spec = NvSpec::sealed_record(RECORD_INDEX, 256);
    t.tpm.nv_define_space(&spec, &[]).unwrap();
    let info = t.tpm.nv_read_public(RECORD_INDEX).unwrap();
    assert_eq!(info.public, spec);
    assert_eq!(info.name, spec.name(), "the name we compute is the TPM's");
    t.tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &pattern(256, 1))
        .unwrap();
    let info = t.tpm.nv_read_public(RECORD_INDEX).unwrap();
    assert!(info.public.attributes.is_written());
    assert_ne!(info.name, spec.name(), "WRITTEN is part of the name");
    assert_eq!(
        info.name,
        NvSpec {
            attributes: spec.attributes | NvAttributes::WRITTEN,
            ..spec.clone()
        }
        .name()
    );

    let out = ok(&t.tool("tpm2_nvreadpublic", &["0x0181a000"]));
    let name_hex: String = info.name.iter().map(|b| format!("{b:02x}")).collect();
    assert!(out.contains(&name_hex), "{out}\nexpected name {name_hex}");
    for attr in [
        "ownerwrite",
        "writeall",
        "write_stclear",
        "ownerread",
        "authread",
        "no_da",
        "written",
    ] {
        assert!(out.contains(attr), "{attr} missing from\n{out}");
    }
    assert!(out.contains("size: 256"), "{out}");
}

#[test]
fn a_record_index_is_written_whole_in_one_command_or_not_at_all() {
    let mut t = TestTpm::start();
    t.tpm
        .nv_define_space(&NvSpec::sealed_record(RECORD_INDEX, 256), &[])
        .unwrap();
    // WRITEALL: the TPM refuses a partial write.
    let err = t
        .tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &[1; 100])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("TPM2_NV_Write failed: TPM_RC_NV_RANGE"),
        "{err}"
    );
    // More than NV_BUFFER_MAX cannot be atomic: refused before reaching the TPM.
    t.tpm
        .nv_define_space(&NvSpec::sealed_data(BLOB, 2048), &[])
        .unwrap();
    let err = t
        .tpm
        .nv_write_atomic(BLOB, &NvAccess::Owner, 0, &[1; 1025])
        .unwrap_err();
    assert!(err.to_string().contains("at most 1024"), "{err}");
    t.tpm
        .nv_write_atomic(BLOB, &NvAccess::Owner, 0, &[2; 1024])
        .unwrap();
    let record = pattern(256, 3);
    t.tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &record)
        .unwrap();
    assert_eq!(
        t.tpm
            .nv_read_all(RECORD_INDEX, &NvAccess::public())
            .unwrap(),
        record
    );
    // Too big for the TPM at all.
    let err = t
        .tpm
        .nv_define_space(&NvSpec::sealed_data(0x0181_A0F0, 2049), &[])
        .unwrap_err();
    assert!(err.to_string().contains("TPM_RC_SIZE"), "{err}");
    // Defined twice.
    let err = t
        .tpm
        .nv_define_space(&NvSpec::sealed_data(BLOB, 16), &[])
        .unwrap_err();
    assert!(err.to_string().contains("already defined"), "{err}");
}

#[test]
fn counters_increment_monotonically_and_read_like_tpm2_nvread() {
    let mut t = TestTpm::start();
    let counter = NvSpec::counter(0x0181_A001);
    t.tpm.nv_define_space(&counter, &[]).unwrap();
    let err = t
        .tpm
        .nv_counter_read(counter.index, &NvAccess::public())
        .unwrap_err();
    assert!(matches!(err, TpmError::NotWritten { .. }), "{err}");
    assert!(err.to_string().contains("TPM_RC_NV_UNINITIALIZED"), "{err}");

    let first = t
        .tpm
        .nv_counter_increment(counter.index, &NvAccess::Owner)
        .unwrap();
    let mut last = first;
    for _ in 0..3 {
        let v = t
            .tpm
            .nv_counter_increment(counter.index, &NvAccess::Owner)
            .unwrap();
        assert_eq!(v, last + 1);
        last = v;
    }
    assert_eq!(
        t.tpm
            .nv_counter_read(counter.index, &NvAccess::public())
            .unwrap(),
        last
    );
    let file = t.path("counter.bin");
    ok(&t.tool(
        "tpm2_nvread",
        &[
            "-C",
            "0x0181a001",
            "-s",
            "8",
            "-o",
            file.to_str().unwrap(),
            "0x0181a001",
        ],
    ));
    assert_eq!(std::fs::read(&file).unwrap(), last.to_be_bytes());

    // Only the owner increments; a redefined counter never goes back.
    let err = t
        .tpm
        .nv_increment(counter.index, &NvAccess::public())
        .unwrap_err();
    assert!(matches!(err, TpmError::WrongAttributes { .. }), "{err}");
    t.tpm.nv_undefine_space(counter.index).unwrap();
    t.tpm.nv_define_space(&counter, &[]).unwrap();
    let again = t
        .tpm
        .nv_counter_increment(counter.index, &NvAccess::Owner)
        .unwrap();
    assert!(
        again >= last,
        "redefined counter went back: {again} < {last}"
    );
    // Increment on an ordinary index: wrong attributes.
    t.tpm
        .nv_define_space(&NvSpec::sealed_data(BLOB, 8), &[])
        .unwrap();
    let err = t.tpm.nv_increment(BLOB, &NvAccess::Owner).unwrap_err();
    assert!(matches!(err, TpmError::WrongAttributes { .. }), "{err}");
}

#[test]
fn an_undefined_index_is_reported_missing() {
    let mut t = TestTpm::start();
    for result in [
        t.tpm
            .nv_read_all(RECORD_INDEX, &NvAccess::public())
            .map(|_| ()),
        t.tpm.nv_read_public(RECORD_INDEX).map(|_| ()),
        t.tpm
            .nv_write(RECORD_INDEX, &NvAccess::Owner, 0, b"x")
            .map(|_| ()),
        t.tpm.nv_write_lock(RECORD_INDEX, &NvAccess::Owner),
        t.tpm.nv_undefine_space(RECORD_INDEX),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                TpmError::IndexMissing {
                    index: RECORD_INDEX,
                    ..
                }
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("0x0181a000 is not defined"), "{text}");
        assert!(text.contains("TPM_RC_HANDLE"), "{text}");
    }
    assert!(!t.tpm.nv_exists(RECORD_INDEX).unwrap());
    t.tpm
        .nv_define_space(&NvSpec::sealed_record(RECORD_INDEX, 256), &[])
        .unwrap();
    assert!(t.tpm.nv_list().unwrap().contains(&RECORD_INDEX));
    t.tpm.nv_undefine_space(RECORD_INDEX).unwrap();
    assert!(matches!(
        t.tpm.nv_read_public(RECORD_INDEX),
        Err(TpmError::IndexMissing { .. })
    ));
}

#[test]
fn write_lock_holds_until_tpm_reset_and_can_be_taken_again() {
    let mut t = TestTpm::start();
    let layout = AnchorLayout::standard(Some(1500));
    t.tpm.layout_ensure(&layout).unwrap();
    let record = pattern(256, 4);
    t.tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &record)
        .unwrap();
    t.tpm
        .nv_counter_increment(layout.counter.index, &NvAccess::Owner)
        .unwrap();
    t.tpm.layout_lock(&layout).unwrap();
    assert!(t.tpm.layout_is_locked(&layout).unwrap());

    let err = t
        .tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &record)
        .unwrap_err();
    assert!(matches!(err, TpmError::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("TPM2_NV_Write failed: TPM_RC_NV_LOCKED (0x148)"),
        "{err}"
    );
    let err = t
        .tpm
        .nv_increment(layout.counter.index, &NvAccess::Owner)
        .unwrap_err();
    assert!(matches!(err, TpmError::Locked { .. }), "{err}");
    // Reads go on; tpm2-tools sees the lock too.
    assert_eq!(
        t.tpm
            .nv_read_all(RECORD_INDEX, &NvAccess::public())
            .unwrap(),
        record
    );
    let public = ok(&t.tool("tpm2_nvreadpublic", &["0x0181a000"]));
    assert!(public.contains("writelocked"), "{public}");
    let file = t.path("x.bin");
    write(&file, &record);
    assert!(
        !t.tool(
            "tpm2_nvwrite",
            &["-C", "o", "-i", file.to_str().unwrap(), "0x0181a000"]
        )
        .status
        .success()
    );
    // Locking a locked layout again is harmless.
    t.tpm.layout_lock(&layout).unwrap();

    // TPM reset the way an operator does it: swtpm_ioctl -i, tpm2_startup -c.
    let ctrl = format!("127.0.0.1:{}", t.swtpm.ctrl_port());
    ok(&run(
        std::process::Command::new("swtpm_ioctl").args(["--tcp", &ctrl, "-i"])
    ));
    ok(&t.tool("tpm2_startup", &["-c"]));
    assert!(!t.tpm.layout_is_locked(&layout).unwrap());
    let newer = pattern(256, 5);
    t.tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &newer)
        .unwrap();
    assert_eq!(
        t.tpm
            .nv_read_all(RECORD_INDEX, &NvAccess::public())
            .unwrap(),
        newer
    );

    // Locked again, and reset again by SwtpmInstance::reset.
    t.tpm.nv_write_lock(RECORD_INDEX, &NvAccess::Owner).unwrap();
    assert!(matches!(
        t.tpm
            .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &record),
        Err(TpmError::Locked { .. })
    ));
    t.swtpm.reset().unwrap();
    t.tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &record)
        .unwrap();
}

#[test]
fn existing_indices_with_other_attributes_are_refused() {
    let mut t = TestTpm::start();
    let layout = AnchorLayout::standard(None);
    // Someone defined the record index without WRITEALL/WRITE_STCLEAR.
    let foreign = NvSpec::ordinary(
        RECORD_INDEX,
        256,
        NvAttributes::OWNERWRITE | NvAttributes::OWNERREAD | NvAttributes::AUTHREAD,
    );
    t.tpm.nv_define_space(&foreign, &[]).unwrap();
    let err = t.tpm.layout_ensure(&layout).unwrap_err();
    assert!(
        matches!(
            err,
            TpmError::WrongAttributes {
                index: RECORD_INDEX,
                ..
            }
        ),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("ownerwrite|ownerread|authread"), "{text}");
    assert!(text.contains("writeall"), "{text}");
    // And the TPM refuses to write-lock an index without WRITE_STCLEAR/WRITEDEFINE.
    let err = t
        .tpm
        .nv_write_lock(RECORD_INDEX, &NvAccess::Owner)
        .unwrap_err();
    assert!(matches!(err, TpmError::WrongAttributes { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("TPM2_NV_WriteLock failed: TPM_RC_ATTRIBUTES"),
        "{err}"
    );

    t.tpm.nv_undefine_space(RECORD_INDEX).unwrap();
    // The counter was defined by the first attempt; the record now is.
    let created = t.tpm.layout_ensure(&layout).unwrap();
    assert_eq!(
        created,
        vec![
            (layout.counter.index, Ensured::Existing),
            (RECORD_INDEX, Ensured::Created)
        ]
    );
    let again = t.tpm.layout_ensure(&layout).unwrap();
    assert!(again.iter().all(|(_, e)| *e == Ensured::Existing));
    t.tpm.layout_check(&layout).unwrap();
    t.tpm.layout_remove(&layout).unwrap();
    assert!(!t.tpm.nv_exists(RECORD_INDEX).unwrap());
}

#[test]
fn lockout_and_wrong_passwords_are_reported_and_sealed_reads_survive_lockout() {
    let mut t = TestTpm::start();
    // One failure locks the TPM out; it forgives after 1000 s.
    t.tpm.dictionary_attack_parameters(1, 1000, 1000).unwrap();
    let layout = AnchorLayout::standard(None);
    t.tpm.layout_ensure(&layout).unwrap();
    t.tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &pattern(256, 6))
        .unwrap();

    // A DA-protected index with a password (an operator's choice of authorization).
    let guarded = NvSpec::ordinary(
        0x0181_A010,
        32,
        NvAttributes::AUTHWRITE | NvAttributes::AUTHREAD,
    );
    t.tpm.nv_define_space(&guarded, b"correct horse").unwrap();
    t.tpm
        .nv_write(
            guarded.index,
            &NvAccess::index_password(b"correct horse"),
            0,
            &[1; 32],
        )
        .unwrap();
    let err = t
        .tpm
        .nv_read_all(guarded.index, &NvAccess::index_password(b"wrong"))
        .unwrap_err();
    assert!(matches!(err, TpmError::AuthFailed { .. }), "{err}");
    assert!(err.to_string().contains("TPM_RC_AUTH_FAIL"), "{err}");

    let status = t.tpm.da_status().unwrap();
    assert!(status.in_lockout, "{status:?}");
    let err = t
        .tpm
        .nv_read_all(guarded.index, &NvAccess::index_password(b"correct horse"))
        .unwrap_err();
    assert!(matches!(err, TpmError::Lockout { .. }), "{err}");
    assert!(err.to_string().contains("TPM_RC_LOCKOUT (0x921)"), "{err}");
    assert!(
        err.to_string().contains("dictionary-attack lockout"),
        "{err}"
    );

    // NO_DA: the sealed record is still readable and writable by the owner.
    t.tpm
        .nv_read_all(RECORD_INDEX, &NvAccess::public())
        .unwrap();
    t.tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &pattern(256, 8))
        .unwrap();

    // Password failures on NO_DA entities are BAD_AUTH, not lockout.
    t.tpm.set_owner_auth(b"not the owner password");
    let err = t
        .tpm
        .nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &pattern(256, 9))
        .unwrap_err();
    assert!(matches!(err, TpmError::AuthFailed { .. }), "{err}");
    assert!(err.to_string().contains("TPM_RC_BAD_AUTH"), "{err}");
    t.tpm.set_owner_auth(b"");

    t.tpm.dictionary_attack_lock_reset().unwrap();
    assert!(!t.tpm.da_status().unwrap().in_lockout);
    assert_eq!(
        t.tpm
            .nv_read_all(guarded.index, &NvAccess::index_password(b"correct horse"))
            .unwrap(),
        vec![1; 32]
    );
}
