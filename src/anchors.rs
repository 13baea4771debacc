//! The sealed trust-anchor set: the certificates a compute host trusts, kept
//! so that neither a changed file nor an old copy goes unnoticed.
//!
//! * The **bundle** is the set itself: a canonical, versioned encoding of
//!   (id, DER) pairs. It lives on disk under `$IMGSEAL_HOME/anchors/bundle`
//!   and, when it fits, also whole in the TPM's data index (a spare copy).
//! * The **record** (256 bytes, NV `0x0181A000`, written in one atomic
//!   NV_Write) holds the bundle's SHA-256, its length, its certificate count
//!   and its version.
//! * The **version** is bound to the TPM's monotonic NV counter
//!   (`0x0181A001`): a record or bundle older than the counter is a rollback.
//!
//! docs/anchors.md gives the formats byte by byte, the seal protocol and why
//! it survives a crash at any point, and the rollback rule. The TPM work is
//! the device crate's (`imgseal-tpm`); this module decides what the bytes mean.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use imgseal_tpm::{
    AnchorLayout, COUNTER_INDEX, DATA_INDEX, IndexCreator, NvAccess, NvInfo, NvSpec, RECORD_INDEX,
    RECORD_SIZE, Tpm, TpmError,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::backend::StoredCertificate;
use crate::config::{TrustSettings, TrustSource};
use crate::error::{Error, Result};
use crate::glance::check_cert_id;
use crate::home::write_output_file;
use crate::x509::Certificate;

/// First bytes of a bundle.
pub const BUNDLE_MAGIC: [u8; 8] = *b"IMGSEALB";
/// First bytes of a record.
pub const RECORD_MAGIC: [u8; 8] = *b"IMGSEALR";
/// The bundle and record format described in docs/anchors.md.
pub const FORMAT_VERSION: u16 = 1;
/// The largest data index imgseal defines (the usual `TPM2_PT_NV_INDEX_MAX`).
pub const MAX_DATA_INDEX: u16 = 2048;

/// What every refusal of a sealed set starts with, whatever the detail.
pub const MISMATCH: &str = "trust anchors do not match the TPM (tampered or rolled back)";

const RECORD_LEN: usize = RECORD_SIZE as usize;
/// Bytes of the record that carry data; the rest must be zero.
const RECORD_USED: usize = 60;

fn mismatch(detail: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{MISMATCH}: {detail}"))
}

fn short_hex(bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    format!("{}…", &h[..h.len().min(16)])
}

// ---- the set and its bundle ------------------------------------------------

/// Trusted certificates by id, kept in the bundle's canonical order (ids
/// sorted bytewise, each once).
#[derive(Debug, Clone, Default)]
pub struct AnchorSet {
    entries: BTreeMap<String, Certificate>,
}

impl AnchorSet {
    pub fn new() -> Self {
        AnchorSet::default()
    }

    /// Adds a certificate under `id`; an id already present is a usage error
    /// (rotation removes it first), so a set never silently changes meaning.
    pub fn insert(&mut self, id: &str, certificate: Certificate) -> Result<()> {
        check_cert_id(id).map_err(|e| Error::usage(format!("trust anchor id: {e}")))?;
        if self.entries.contains_key(id) {
            return Err(Error::usage(format!(
                "certificate id \"{id}\" is already in the anchor set"
            )));
        }
        self.entries.insert(id.to_string(), certificate);
        Ok(())
    }

    pub fn remove(&mut self, id: &str) -> Option<Certificate> {
        self.entries.remove(id)
    }

    pub fn get(&self, id: &str) -> Option<&Certificate> {
        self.entries.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Certificate)> {
        self.entries.iter()
    }
}

/// A versioned anchor set, as written to disk and hashed into the record.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub version: u64,
    pub anchors: AnchorSet,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    origin: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| {
                Error::bad_input(format!(
                    "{}: anchor bundle truncated at byte {}",
                    self.origin, self.at
                ))
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

impl Bundle {
    /// The canonical encoding (docs/anchors.md, "Bundle"): one set and version
    /// always give the same bytes, so the digest names the set.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&BUNDLE_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&(self.anchors.len() as u32).to_be_bytes());
        for (id, cert) in self.anchors.iter() {
            // check_cert_id bounds ids to 255 bytes; DER certificates are far below 4 GiB.
            out.extend_from_slice(&(id.len() as u16).to_be_bytes());
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&(cert.der.len() as u32).to_be_bytes());
            out.extend_from_slice(&cert.der);
        }
        out
    }

    /// Reads a bundle strictly: the canonical encoding only (ids in order and
    /// unique, certificates in DER, nothing after the last one), so that two
    /// different byte strings never mean the same set.
    pub fn decode(bytes: &[u8], origin: &str) -> Result<Bundle> {
        let bad = |why: String| Error::bad_input(format!("{origin}: not an anchor bundle: {why}"));
        let mut r = Reader {
            bytes,
            at: 0,
            origin,
        };
        if r.take(8).map_err(|_| bad("too short".into()))? != BUNDLE_MAGIC {
            return Err(bad("wrong magic (expected \"IMGSEALB\")".into()));
        }
        let format = r.u16()?;
        if format != FORMAT_VERSION {
            return Err(bad(format!(
                "format version {format} (this imgseal reads {FORMAT_VERSION})"
            )));
        }
        let version = r.u64()?;
        let count = r.u32()?;
        let mut anchors = AnchorSet::new();
        let mut previous: Option<String> = None;
        for i in 0..count {
            let id_len = r.u16()? as usize;
            let id = std::str::from_utf8(r.take(id_len)?)
                .map_err(|_| bad(format!("certificate {i}: the id is not UTF-8")))?
                .to_string();
            check_cert_id(&id).map_err(|e| bad(format!("certificate {i}: {e}")))?;
            if previous.as_ref().is_some_and(|p| p.as_str() >= id.as_str()) {
                return Err(bad(format!(
                    "certificate \"{id}\" is out of order or repeated (ids must be sorted, once each)"
                )));
            }
            let der_len = r.u32()? as usize;
            let der = r.take(der_len)?;
            let cert = Certificate::from_der(der, &format!("{origin}: certificate \"{id}\""))?;
            if cert.der != der {
                return Err(bad(format!("certificate \"{id}\" is not in DER")));
            }
            anchors.entries.insert(id.clone(), cert);
            previous = Some(id);
        }
        if r.at != bytes.len() {
            return Err(bad(format!(
                "{} bytes after the last certificate",
                bytes.len() - r.at
            )));
        }
        Ok(Bundle { version, anchors })
    }

    /// SHA-256 of the encoded bundle: what the record holds.
    pub fn digest(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }
}

// ---- the record --------------------------------------------------------------

/// The 256-byte record in NV `0x0181A000` (docs/anchors.md, "Record").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub version: u64,
    /// Whether the bundle is also kept whole in the data index `0x0181A002`.
    pub inline: bool,
    pub count: u32,
    pub bundle_len: u32,
    #[serde(serialize_with = "hex_bytes")]
    pub digest: [u8; 32],
}

fn hex_bytes<S: serde::Serializer>(b: &[u8; 32], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

impl Record {
    pub fn for_bundle(bundle: &Bundle, bytes: &[u8], inline: bool) -> Record {
        Record {
            version: bundle.version,
            inline,
            count: bundle.anchors.len() as u32,
            bundle_len: bytes.len() as u32,
            digest: Bundle::digest(bytes),
        }
    }

    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0..8].copy_from_slice(&RECORD_MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        out[10] = self.inline as u8;
        out[11] = 0;
        out[12..20].copy_from_slice(&self.version.to_be_bytes());
        out[20..24].copy_from_slice(&self.count.to_be_bytes());
        out[24..28].copy_from_slice(&self.bundle_len.to_be_bytes());
        out[28..60].copy_from_slice(&self.digest);
        out
    }

    /// Reads a record strictly; anything else in the index is refused as not
    /// imgseal's (a foreign or forged record never passes for an empty set).
    pub fn decode(bytes: &[u8]) -> Result<Record> {
        let bad = |why: &str| {
            mismatch(format!(
                "NV index {RECORD_INDEX:#010x} does not hold an imgseal anchor record ({why})"
            ))
        };
        if bytes.len() != RECORD_LEN {
            return Err(bad(&format!(
                "{} bytes, expected {RECORD_LEN}",
                bytes.len()
            )));
        }
        if bytes[0..8] != RECORD_MAGIC {
            return Err(bad("wrong magic, expected \"IMGSEALR\""));
        }
        let format = u16::from_be_bytes([bytes[8], bytes[9]]);
        if format != FORMAT_VERSION {
            return Err(bad(&format!("format version {format}")));
        }
        if bytes[10] > 1 || bytes[11] != 0 || bytes[RECORD_USED..].iter().any(|b| *b != 0) {
            return Err(bad("reserved bytes are not zero"));
        }
        Ok(Record {
            version: u64::from_be_bytes(bytes[12..20].try_into().expect("8 bytes")),
            inline: bytes[10] == 1,
            count: u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes")),
            bundle_len: u32::from_be_bytes(bytes[24..28].try_into().expect("4 bytes")),
            digest: bytes[28..60].try_into().expect("32 bytes"),
        })
    }

    /// The bundle bytes are the ones this record names.
    pub fn names(&self, bundle: &[u8]) -> bool {
        bundle.len() == self.bundle_len as usize && Bundle::digest(bundle) == self.digest
    }
}

/// How the record's version stands to the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CounterState {
    /// version == counter: the last seal completed.
    Current,
    /// version == counter + 1: a seal wrote its record (the commit point) and
    /// stopped before incrementing the counter. The new set is in force; the
    /// next write (seal, add, remove) increments the counter first.
    SealPending,
    /// version < counter: an older record was written back.
    RolledBack,
    /// version > counter + 1: no seal writes that; the record was forged.
    Ahead,
}

impl CounterState {
    pub fn of(version: u64, counter: u64) -> CounterState {
        if version == counter {
            CounterState::Current
        } else if Some(version) == counter.checked_add(1) {
            CounterState::SealPending
        } else if version < counter {
            CounterState::RolledBack
        } else {
            CounterState::Ahead
        }
    }

    pub fn is_acceptable(self) -> bool {
        matches!(self, CounterState::Current | CounterState::SealPending)
    }
}

// ---- where the bundle lives on disk --------------------------------------------

/// `$IMGSEAL_HOME/anchors`: the bundle, a staged bundle during a seal, and a
/// lock file. Its existence is what makes `verify` use the sealed anchors
/// automatically (see [`auto_trigger`]).
#[derive(Debug, Clone)]
pub struct AnchorStore {
    pub dir: PathBuf,
}

impl AnchorStore {
    pub fn in_home(home: &Path) -> AnchorStore {
        AnchorStore {
            dir: home.join("anchors"),
        }
    }

    /// The bundle of the set in force.
    pub fn bundle_path(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    /// A seal's new bundle, staged before the record names it.
    pub fn pending_path(&self) -> PathBuf {
        self.dir.join("bundle.pending")
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Serialises writers on this host (two seals at once would race for the
    /// same counter value).
    fn lock(&self) -> Result<File> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // File::lock is Rust 1.89; the workspace already relies on it (src/home.rs).
        #[allow(clippy::incompatible_msrv)]
        let locked = file.lock();
        locked.map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }

    /// Makes renames and new files in the directory durable: the protocol's
    /// order must hold on disk, not only in the page cache.
    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&self.dir, e))
    }

    /// The candidates, in the order that is right during a concurrent seal:
    /// the staged bundle is the new one if the record already names it.
    fn candidates(&self) -> [(PathBuf, BundleSource); 2] {
        [
            (self.pending_path(), BundleSource::Pending),
            (self.bundle_path(), BundleSource::Disk),
        ]
    }
}

/// Whether `verify` uses the sealed anchors when no trusted ids are given:
/// anchors were sealed from this `$IMGSEAL_HOME` (its `anchors` directory
/// exists) or a TPM was named with `--tcti`. Nothing else (in particular not
/// `$TPM2TOOLS_TCTI`, often exported host-wide for tpm2-tools) makes a
/// verification start a swtpm or open a TPM device.
pub fn auto_trigger(home: &Path, explicit_tcti: bool) -> bool {
    explicit_tcti || AnchorStore::in_home(home).exists()
}

/// The sealed sets' bundles in `$IMGSEAL_HOME/anchors` (the one in force,
/// and a seal's staged one), read from disk without a TPM: what removing a
/// key or certificate from the store must not silently break. Nothing when
/// this home never sealed anchors. A bundle that cannot be read is an
/// error: a removal is refused rather than judged against nothing.
pub fn sealed_bundles_on_disk(home: &Path) -> Result<Vec<Bundle>> {
    let store = AnchorStore::in_home(home);
    if !store.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (path, _) in store.candidates() {
        match read_bundle_file(&path, 16 << 20)? {
            BundleFile::Missing => {}
            BundleFile::NotRegular(kind) => {
                return Err(Error::bad_input(format!(
                    "{}: the sealed anchors' bundle is {kind}, not a file",
                    path.display()
                )));
            }
            BundleFile::Bytes(bytes) => {
                out.push(Bundle::decode(&bytes, &path.display().to_string())?)
            }
        }
    }
    Ok(out)
}

/// What is at a bundle path.
enum BundleFile {
    Missing,
    /// A FIFO, a device, a directory…: never read (a FIFO would block, a
    /// device such as `/dev/zero` never end). Holds what it is.
    NotRegular(&'static str),
    /// The file's first bytes, at most the limit asked for.
    Bytes(Vec<u8>),
}

/// Reads at most `limit` bytes of the regular file at `path` (a symlink is
/// followed to what it names), never waiting on a FIFO or reading a device
/// ([`crate::home::open_regular`]).
fn read_bundle_file(path: &Path, limit: u64) -> Result<BundleFile> {
    let file = match crate::home::open_regular(path, false) {
        Ok(crate::home::Opened::Regular(file, _)) => file,
        Ok(crate::home::Opened::NotRegular(kind)) => return Ok(BundleFile::NotRegular(kind)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BundleFile::Missing),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    Ok(BundleFile::Bytes(bytes))
}

/// The version in a bundle's header, when `bytes` start like a bundle.
fn header_version(bytes: &[u8]) -> Option<u64> {
    if bytes.get(..8)? != BUNDLE_MAGIC || bytes.get(8..10)? != FORMAT_VERSION.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(bytes.get(10..18)?.try_into().ok()?))
}

// ---- reading what the TPM holds ----------------------------------------------

/// The anchor indices already defined, with the hierarchy that created each
/// (record, counter, data: in that order).
fn existing_creators(tpm: &mut Tpm) -> Result<Vec<(u32, IndexCreator)>> {
    let mut out = Vec::new();
    for index in [RECORD_INDEX, COUNTER_INDEX, DATA_INDEX] {
        match tpm.nv_read_public(index) {
            Ok(info) => out.push((index, info.public.creator())),
            Err(TpmError::IndexMissing { .. }) => {}
            Err(e) => return Err(Error::tpm("reading the anchor NV indices")(e)),
        }
    }
    Ok(out)
}

/// The hierarchy that created the anchor indices already defined (the
/// record's, else the counter's, else the data index's); `None` when none is.
fn existing_creator(tpm: &mut Tpm) -> Result<Option<IndexCreator>> {
    Ok(existing_creators(tpm)?.first().map(|&(_, c)| c))
}

/// As [`existing_creator`], refusing indices of two creators: imgseal
/// defines them together, so one of them was deleted and defined again.
fn one_creator(tpm: &mut Tpm) -> Result<Option<IndexCreator>> {
    let found = existing_creators(tpm)?;
    let Some(&(first_index, first)) = found.first() else {
        return Ok(None);
    };
    match found.iter().find(|&&(_, c)| c != first) {
        Some(&(index, other)) if first_index == RECORD_INDEX => Err(recreated(index, other, first)),
        Some(&(_, other)) => Err(recreated(first_index, first, other)),
        None => Ok(Some(first)),
    }
}

/// The anchor layout as the TPM holds it: the data index at its defined size
/// (or the size a new one gets), defined by the hierarchy that created the
/// existing indices, else by `new_creator`.
fn layout(tpm: &mut Tpm, new_creator: IndexCreator) -> Result<AnchorLayout> {
    let size = match tpm.nv_read_public(DATA_INDEX) {
        Ok(info) => info.public.size,
        Err(TpmError::IndexMissing { .. }) => {
            let max = tpm
                .nv_index_max()
                .map_err(Error::tpm("reading TPM2_PT_NV_INDEX_MAX"))?;
            MAX_DATA_INDEX.min(max.min(u16::MAX as usize) as u16)
        }
        Err(e) => return Err(Error::tpm("reading the anchor data index")(e)),
    };
    let creator = existing_creator(tpm)?.unwrap_or(new_creator);
    Ok(AnchorLayout::standard(Some(size)).created_by(creator))
}

/// An anchor index defined by another hierarchy than the record: one of them
/// was deleted and defined again (all three are always defined together, by
/// one hierarchy), which is how an owner replaces owner-created anchors.
fn recreated(index: u32, found: IndexCreator, record: IndexCreator) -> Error {
    mismatch(format!(
        "NV {index:#010x} is {found}-created but the record NV {RECORD_INDEX:#010x} is {record}-created: an anchor index was deleted and defined again"
    ))
}

/// The record and counter as the TPM holds them.
#[derive(Debug, Clone)]
pub struct TpmAnchors {
    pub record: Record,
    pub record_bytes: Vec<u8>,
    pub record_info: NvInfo,
    pub counter: u64,
    pub counter_state: CounterState,
    /// Whether the record is write-locked (until the next TPM reset).
    pub locked: bool,
    /// Which hierarchy created the indices: only platform-created ones are
    /// beyond the owner's reach (the owner cannot delete and redefine them).
    pub creator: IndexCreator,
}

impl TpmAnchors {
    /// Whether the TPM owner is unable to delete (and so replace) the indices.
    pub fn delete_protected(&self) -> bool {
        self.creator == IndexCreator::Platform
    }
}

fn nothing_sealed() -> Error {
    Error::not_found(format!(
        "no trust anchors are sealed in this TPM (NV index {RECORD_INDEX:#010x} is not defined): seal some with `imgseal anchors seal`"
    ))
}

/// Reads and checks the record and the counter (public reads: no secret).
/// A missing record is `NotFound`; wrong attributes a device error; a record
/// that is not imgseal's, or a missing counter, a refusal.
///
/// The counter is read *before* the record. A seal writes the record first
/// and increments the counter last, so the record read afterwards is at
/// least the counter read before: a seal that runs between the two reads
/// shows as `SealPending` (or `Current`), never as a rollback. Read the other
/// way round, an honest seal in between looked like an older record written
/// back (record at the old version, counter at the new one).
pub fn read_tpm(tpm: &mut Tpm) -> Result<TpmAnchors> {
    let creator = match tpm.nv_read_public(RECORD_INDEX) {
        Ok(info) => info.public.creator(),
        Err(TpmError::IndexMissing { .. }) => return Err(nothing_sealed()),
        Err(e) => return Err(Error::tpm("reading the anchor record")(e)),
    };
    let layout = AnchorLayout::standard(None).created_by(creator);
    let record_info = match tpm.nv_check(&layout.record) {
        Ok(info) => info,
        Err(TpmError::IndexMissing { .. }) => return Err(nothing_sealed()),
        Err(e) => return Err(Error::tpm("the anchor record is not imgseal's")(e)),
    };
    // The counter first (see above); its errors are reported after the
    // record's, as before, since they name the record's version.
    let counter_read = tpm
        .nv_check(&layout.counter)
        .map(|_| tpm.nv_counter_read(COUNTER_INDEX, &NvAccess::public()));
    let record_bytes = match tpm.nv_read(RECORD_INDEX, &NvAccess::public(), 0, RECORD_SIZE) {
        Ok(b) => b,
        Err(TpmError::NotWritten { .. }) => {
            return Err(Error::not_found(format!(
                "no trust anchors are sealed in this TPM (NV index {RECORD_INDEX:#010x} is defined but was never written: the first seal did not finish; run `imgseal anchors seal` again)"
            )));
        }
        Err(e) => return Err(Error::tpm("reading the anchor record")(e)),
    };
    let record = Record::decode(&record_bytes)?;
    let counter_read = match counter_read {
        Ok(read) => read,
        Err(TpmError::IndexMissing { .. }) => {
            return Err(mismatch(format!(
                "the version counter NV {COUNTER_INDEX:#010x} is missing, so the record's version {} proves nothing",
                record.version
            )));
        }
        Err(e @ TpmError::WrongAttributes { .. }) => {
            // Told apart from other attributes: a counter of another creator
            // is a recreated index, the owner's way to replace the anchors.
            return match tpm.nv_read_public(COUNTER_INDEX) {
                Ok(info) if info.public.creator() != creator => {
                    Err(recreated(COUNTER_INDEX, info.public.creator(), creator))
                }
                _ => Err(Error::tpm("the anchor counter is not imgseal's")(e)),
            };
        }
        Err(e) => return Err(Error::tpm("the anchor counter is not imgseal's")(e)),
    };
    let counter = match counter_read {
        Ok(c) => c,
        Err(TpmError::NotWritten { .. }) => {
            return Err(mismatch(format!(
                "the version counter NV {COUNTER_INDEX:#010x} was never incremented (redefined?) but the record claims version {}",
                record.version
            )));
        }
        Err(e) => return Err(Error::tpm("reading the anchor counter")(e)),
    };
    let locked = record_info.public.attributes.is_write_locked();
    Ok(TpmAnchors {
        counter_state: CounterState::of(record.version, counter),
        record,
        record_bytes,
        record_info,
        counter,
        locked,
        creator,
    })
}

/// Where the bundle in force was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSource {
    /// `anchors/bundle`.
    Disk,
    /// `anchors/bundle.pending`: a seal committed its record and stopped
    /// before renaming the staged bundle.
    Pending,
    /// The data index `0x0181A002`.
    Nv,
}

impl std::fmt::Display for BundleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BundleSource::Disk => write!(f, "disk"),
            BundleSource::Pending => write!(f, "disk (staged by an interrupted seal)"),
            BundleSource::Nv => write!(f, "TPM NV {DATA_INDEX:#010x}"),
        }
    }
}

/// One bundle file as compared with the record.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    pub path: PathBuf,
    pub exists: bool,
    pub matches: bool,
    /// What it holds, when it is a readable bundle.
    pub version: Option<u64>,
    pub digest: Option<String>,
    /// Why it is not a bundle, when it is not.
    pub problem: Option<String>,
}

/// What [`inspect`] found: the TPM's view and every copy of the bundle.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub tpm: TpmAnchors,
    pub files: Vec<FileCheck>,
    /// The inline copy was read and matched (None: not inline, or not read
    /// because a disk copy matched first).
    pub inline_matches: Option<bool>,
    /// The bundle the record names, and where it was found.
    pub found: Option<(Bundle, Vec<u8>, BundleSource)>,
}

/// Reads the TPM and looks for the bundle the record names: the staged and
/// installed files, then (only when `bundle` is missing) the inline copy.
/// Never fails on a mismatch; [`load`] decides.
pub fn inspect(tpm: &mut Tpm, store: &AnchorStore) -> Result<Inspection> {
    let state = read_tpm(tpm)?;
    let mut files = Vec::new();
    let mut found = None;
    // One byte more than the record names: a longer file is a mismatch, and
    // is not read whole.
    let limit = u64::from(state.record.bundle_len) + 1;
    for (path, source) in store.candidates() {
        let bytes = match read_bundle_file(&path, limit)? {
            BundleFile::Bytes(b) => b,
            BundleFile::Missing => {
                if source == BundleSource::Disk {
                    files.push(FileCheck {
                        path,
                        exists: false,
                        matches: false,
                        version: None,
                        digest: None,
                        problem: None,
                    });
                }
                continue;
            }
            BundleFile::NotRegular(kind) => {
                let problem = format!("{} is {kind}, not a regular file", path.display());
                files.push(FileCheck {
                    path,
                    exists: true,
                    matches: false,
                    version: None,
                    digest: None,
                    problem: Some(problem),
                });
                continue;
            }
        };
        if bytes.len() > state.record.bundle_len as usize {
            let problem = format!(
                "{} is longer than the {} bytes the record names",
                path.display(),
                state.record.bundle_len
            );
            files.push(FileCheck {
                version: header_version(&bytes),
                path,
                exists: true,
                matches: false,
                digest: None,
                problem: Some(problem),
            });
            continue;
        }
        let matches = state.record.names(&bytes);
        let origin = path.display().to_string();
        let (version, problem, bundle) = match Bundle::decode(&bytes, &origin) {
            Ok(b) => (Some(b.version), None, Some(b)),
            Err(e) => (None, Some(e.to_string()), None),
        };
        files.push(FileCheck {
            path: path.clone(),
            exists: true,
            matches,
            version,
            digest: Some(hex::encode(Bundle::digest(&bytes))),
            problem,
        });
        if found.is_none()
            && matches
            && let Some(b) = bundle
        {
            found = Some((b, bytes, source));
        }
    }
    let mut inline_matches = None;
    // The inline copy stands in for a bundle file that is gone, never for one
    // that is there and differs: a changed bundle is refused, not papered over.
    let bundle_present = files
        .iter()
        .any(|f| f.exists && f.path == store.bundle_path());
    if found.is_none() && !bundle_present && state.record.inline {
        let read = tpm.nv_read(
            DATA_INDEX,
            &NvAccess::public(),
            0,
            u16::try_from(state.record.bundle_len).unwrap_or(u16::MAX),
        );
        inline_matches = match read {
            Ok(bytes) if state.record.names(&bytes) => {
                let b = Bundle::decode(&bytes, &format!("NV {DATA_INDEX:#010x}"))?;
                found = Some((b, bytes, BundleSource::Nv));
                Some(true)
            }
            Ok(_) => Some(false),
            // A data index that is gone or never written is one spare copy
            // less, not a copy that differs: with the bundle file gone too,
            // the set is missing (exit 4, as docs/anchors.md says), which
            // `anchors show` reported as "the inline copy differs" before.
            Err(TpmError::IndexMissing { .. }) | Err(TpmError::NotWritten { .. }) => None,
            Err(e) => return Err(Error::tpm("reading the inline anchor bundle")(e)),
        };
    }
    Ok(Inspection {
        tpm: state,
        files,
        inline_matches,
        found,
    })
}

/// The sealed set in force, checked against the TPM.
#[derive(Debug, Clone)]
pub struct SealedAnchors {
    pub bundle: Bundle,
    pub digest: [u8; 32],
    pub source: BundleSource,
    pub tpm: TpmAnchors,
}

impl SealedAnchors {
    /// Looks a trusted certificate up in the sealed bundle (never in the key
    /// manager: the bundle is what the TPM vouches for).
    pub fn find(&self, id: &str) -> Result<Option<StoredCertificate>> {
        Ok(self
            .bundle
            .anchors
            .get(id)
            .map(|certificate| StoredCertificate {
                id: id.to_string(),
                certificate: certificate.clone(),
                location: format!("TPM-sealed anchors, version {}", self.bundle.version),
            }))
    }

    /// Trust settings for verification: the sealed ids, validation on.
    pub fn trust_settings(&self) -> TrustSettings {
        TrustSettings {
            validate_certificate: true,
            trusted_ids: self.bundle.anchors.ids(),
            source: TrustSource::Tpm,
            nova_verifies_signature: true,
        }
    }
}

/// Why the bundle copies on hand do not make the set the record names.
fn describe_mismatch(inspection: &Inspection) -> Error {
    let r = &inspection.tpm.record;
    let expected = format!(
        "the TPM's record holds version {} (sha256 {})",
        r.version,
        short_hex(&r.digest)
    );
    let present: Vec<&FileCheck> = inspection.files.iter().filter(|f| f.exists).collect();
    if present.is_empty() && inspection.inline_matches != Some(false) {
        return Error::not_found(format!(
            "the sealed anchor bundle is missing ({} does not exist and the TPM holds no inline copy); {expected}",
            inspection
                .files
                .first()
                .map(|f| f.path.display().to_string())
                .unwrap_or_default()
        ));
    }
    let seen: Vec<String> = present
        .iter()
        .map(|f| match (&f.version, &f.problem, &f.digest) {
            (Some(v), _, Some(d)) => format!(
                "{} holds version {v} (sha256 {})",
                f.path.display(),
                short_hex(&hex::decode(d).unwrap_or_default())
            ),
            // Read only up to the record's length: no digest.
            (Some(v), Some(p), None) => format!("{p} (it holds version {v})"),
            (_, Some(p), _) => p.clone(),
            (_, None, _) => format!("{} is unreadable", f.path.display()),
        })
        .collect();
    let mut detail = seen.join("; ");
    if inspection.inline_matches == Some(false) {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(&format!(
            "the inline copy in NV {DATA_INDEX:#010x} differs too"
        ));
    }
    mismatch(format!("{detail}, but {expected}"))
}

/// The sealed set: the record, the counter and a bundle that the record
/// names. Refused, with [`MISMATCH`] in the message, when the record is older
/// than the counter (rollback), ahead of it by more than an interrupted seal,
/// or when no copy of the bundle has the record's digest.
pub fn load(tpm: &mut Tpm, store: &AnchorStore) -> Result<SealedAnchors> {
    // Twice: a seal that commits and renames between our record read and our
    // file reads would otherwise make a consistent pair look torn. Likewise,
    // two seals between our counter read and our record read (read_tpm reads
    // the counter first) would make the record look two ahead.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let inspection = inspect(tpm, store)?;
        let state = &inspection.tpm;
        match state.counter_state {
            CounterState::Ahead if attempt < 2 => continue,
            CounterState::RolledBack => {
                return Err(mismatch(format!(
                    "the record at NV {RECORD_INDEX:#010x} holds version {} but the TPM counter is at {}: an older record was written back",
                    state.record.version, state.counter
                )));
            }
            CounterState::Ahead => {
                return Err(mismatch(format!(
                    "the record at NV {RECORD_INDEX:#010x} holds version {}, ahead of the TPM counter ({}) by more than an interrupted seal",
                    state.record.version, state.counter
                )));
            }
            CounterState::Current | CounterState::SealPending => {}
        }
        match inspection.found {
            Some((bundle, bytes, source)) => {
                if bundle.version != state.record.version
                    || bundle.anchors.len() as u32 != state.record.count
                {
                    // Same digest, other contents: cannot happen with SHA-256;
                    // refuse rather than trust either.
                    return Err(mismatch("the bundle's header disagrees with the record"));
                }
                return Ok(SealedAnchors {
                    digest: Bundle::digest(&bytes),
                    bundle,
                    source,
                    tpm: inspection.tpm,
                });
            }
            None if attempt < 2 => continue,
            None => return Err(describe_mismatch(&inspection)),
        }
    }
}

// ---- sealing -----------------------------------------------------------------

/// The steps of a seal, in order; [`seal`] reports each once it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SealStep {
    /// Indices defined or checked, counter initialised, an interrupted
    /// earlier seal completed.
    Prepared,
    /// The new bundle written to the data index (only when it fits).
    DataWritten,
    /// The new bundle durable in `anchors/bundle.pending`; the old bundle
    /// still in `anchors/bundle`.
    BundleStaged,
    /// The record written (one atomic NV_Write): the commit point.
    RecordWritten,
    /// `bundle.pending` renamed to `bundle`.
    BundleInstalled,
    /// The counter incremented to the record's version.
    CounterIncremented,
}

/// What a seal did.
#[derive(Debug, Clone, Serialize)]
pub struct SealOutcome {
    pub version: u64,
    #[serde(serialize_with = "hex_bytes")]
    pub digest: [u8; 32],
    pub count: usize,
    pub inline: bool,
    /// The 256 bytes written to NV `0x0181A000`.
    #[serde(serialize_with = "hex_vec")]
    pub record: Vec<u8>,
    pub bundle_path: PathBuf,
    pub bundle_len: usize,
    /// Whether an interrupted earlier seal was completed first.
    pub completed_interrupted_seal: bool,
    /// Whether the indices are platform-created, beyond the owner's reach.
    pub delete_protected: bool,
    /// Why the indices this seal defined are owner-created although
    /// protection was asked for (`--delete-protection auto`).
    pub unprotected_because: Option<String>,
}

fn hex_vec<S: serde::Serializer>(b: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

/// Renames a staged bundle into place when the committed record names it.
/// Anything else there (another bundle, a FIFO, a device) stays where it is.
fn install_pending(store: &AnchorStore, record: &Record) -> Result<bool> {
    let pending = store.pending_path();
    match read_bundle_file(&pending, u64::from(record.bundle_len) + 1)? {
        BundleFile::Bytes(bytes) if record.names(&bytes) => {
            fs::rename(&pending, store.bundle_path()).map_err(|e| Error::io(&pending, e))?;
            store.sync_dir()?;
            Ok(true)
        }
        BundleFile::Bytes(_) | BundleFile::Missing | BundleFile::NotRegular(_) => Ok(false),
    }
}

/// Which hierarchy a seal that defines the anchor indices defines them with
/// (`anchors seal --delete-protection`). Indices already defined keep theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteProtection {
    /// The platform hierarchy where it accepts the definition; else the
    /// owner's, and the seal says so.
    Auto,
    /// The platform hierarchy, or no seal.
    Required,
    /// The owner hierarchy (the owner can delete and redefine the indices).
    Off,
}

/// Whether the TPM refused the platform hierarchy itself (disabled by
/// firmware: `TPM_RC_HIERARCHY`; or its authorization is not the one given),
/// as opposed to any other failure, which a seal reports as it is.
fn platform_unavailable(e: &TpmError) -> bool {
    const TPM_RC_HIERARCHY: u32 = 0x085;
    matches!(e, TpmError::AuthFailed { .. })
        || e.response_code()
            .is_some_and(|rc| rc.base() == TPM_RC_HIERARCHY)
}

/// Defines the missing anchor indices of `layout`, or, with
/// [`DeleteProtection::Auto`] and a platform hierarchy that refuses, all of
/// them owner-created; returns the layout in force and why it is not
/// platform-created when it fell back.
fn define(
    tpm: &mut Tpm,
    layout: AnchorLayout,
    protection: DeleteProtection,
) -> Result<(AnchorLayout, Option<String>)> {
    match tpm.layout_ensure(&layout) {
        Ok(_) => Ok((layout, None)),
        Err(e)
            if protection == DeleteProtection::Auto
                && layout.creator() == IndexCreator::Platform
                && platform_unavailable(&e)
                && existing_creator(tpm)?.is_none() =>
        {
            let owner = layout.created_by(IndexCreator::Owner);
            tpm.layout_ensure(&owner)
                .map_err(Error::tpm("defining the anchor NV indices"))?;
            Ok((owner, Some(e.to_string())))
        }
        Err(e) if layout.creator() == IndexCreator::Platform && platform_unavailable(&e) => {
            Err(Error::tpm(
                "defining the anchor NV indices under the platform hierarchy (--delete-protection required; the platform authorization comes from --platform-auth-file or $IMGSEAL_TPM_PLATFORM_AUTH)",
            )(e))
        }
        Err(e) => Err(Error::tpm("defining the anchor NV indices")(e)),
    }
}

/// What [`prepare`] established.
struct Prepared {
    counter: u64,
    data_size: u16,
    completed: bool,
    creator: IndexCreator,
    /// Why the indices it defined are owner-created although protection was asked.
    unprotected_because: Option<String>,
}

/// Defines or checks the indices, initialises the counter, and completes an
/// interrupted seal.
fn prepare(tpm: &mut Tpm, store: &AnchorStore, protection: DeleteProtection) -> Result<Prepared> {
    let wanted = match protection {
        DeleteProtection::Off => IndexCreator::Owner,
        DeleteProtection::Auto | DeleteProtection::Required => IndexCreator::Platform,
    };
    // Sealing over a recreated index would bless it.
    one_creator(tpm)?;
    let mut layout = layout(tpm, wanted)?;
    if protection == DeleteProtection::Required && layout.creator() == IndexCreator::Owner {
        return Err(Error::TpmState(format!(
            "the anchor indices are owner-created (NV {RECORD_INDEX:#010x}), so the TPM owner can delete and replace them; to define them platform-created, run `imgseal anchors clear` and seal again with the platform authorization; nothing was changed"
        )));
    }
    let data_size = layout.data.as_ref().map(|d| d.size).unwrap_or(0);
    let mut unprotected_because = None;
    let infos = match tpm.layout_check(&layout) {
        Ok(infos) => infos,
        Err(TpmError::IndexMissing { .. }) => {
            (layout, unprotected_because) = define(tpm, layout, protection)?;
            tpm.layout_check(&layout)
                .map_err(Error::tpm("checking the anchor NV indices"))?
        }
        Err(e) => return Err(Error::tpm("checking the anchor NV indices")(e)),
    };
    // Refuse before writing anything, even the staged file.
    if let Some(locked) = infos.iter().find(|i| i.public.attributes.is_write_locked()) {
        return Err(locked_error(locked.public.index));
    }
    let counter = match tpm.nv_counter_read(COUNTER_INDEX, &NvAccess::public()) {
        Ok(c) => c,
        // A new counter takes its first value on its first increment.
        Err(TpmError::NotWritten { .. }) => tpm
            .nv_counter_increment(COUNTER_INDEX, &NvAccess::Owner)
            .map_err(Error::tpm("initialising the anchor counter"))?,
        Err(e) => return Err(Error::tpm("reading the anchor counter")(e)),
    };
    let record = match tpm.nv_read(RECORD_INDEX, &NvAccess::public(), 0, RECORD_SIZE) {
        // A record that is not imgseal's is overwritten: sealing is how it is repaired.
        Ok(bytes) => Record::decode(&bytes).ok(),
        Err(TpmError::NotWritten { .. }) => None,
        Err(e) => return Err(Error::tpm("reading the anchor record")(e)),
    };
    let mut prepared = Prepared {
        counter,
        data_size,
        completed: false,
        creator: layout.creator(),
        unprotected_because,
    };
    if let Some(r) = record
        && CounterState::of(r.version, counter) == CounterState::SealPending
    {
        install_pending(store, &r)?;
        prepared.counter = tpm
            .nv_counter_increment(COUNTER_INDEX, &NvAccess::Owner)
            .map_err(Error::tpm(
                "incrementing the anchor counter (completing an interrupted seal)",
            ))?;
        prepared.completed = true;
    }
    Ok(prepared)
}

fn locked_error(index: u32) -> Error {
    Error::TpmState(format!(
        "the trust anchors are write-locked until the next TPM reset (NV index {index:#010x}, `imgseal anchors lock`); nothing was changed"
    ))
}

/// Seals `set` as the new version. The protocol (docs/anchors.md): stage the
/// new bundle beside the old one, commit with one atomic write of the record,
/// install the bundle, then increment the counter. Interrupted anywhere, the
/// TPM's record names either the old bundle (still in `bundle`) or the new one
/// (in `bundle.pending` or `bundle`), never anything else. `observe` is told
/// each step as it completes.
pub fn seal(
    tpm: &mut Tpm,
    store: &AnchorStore,
    set: &AnchorSet,
    protection: DeleteProtection,
    observe: &mut dyn FnMut(SealStep),
) -> Result<SealOutcome> {
    let _lock = store.lock()?;
    let Prepared {
        counter,
        data_size,
        completed,
        creator,
        unprotected_because,
    } = prepare(tpm, store, protection)?;
    observe(SealStep::Prepared);

    let version = counter
        .checked_add(1)
        .ok_or_else(|| Error::TpmState("the anchor counter is exhausted".into()))?;
    let bundle = Bundle {
        version,
        anchors: set.clone(),
    };
    let bytes = bundle.encode();
    let inline = bytes.len() <= data_size as usize;
    if inline {
        // Chunked and not atomic: a torn copy fails the digest and is ignored.
        tpm.nv_write(DATA_INDEX, &NvAccess::Owner, 0, &bytes)
            .map_err(Error::tpm("writing the inline anchor bundle"))?;
        observe(SealStep::DataWritten);
    }

    write_output_file(&store.pending_path(), &bytes)?;
    store.sync_dir()?;
    observe(SealStep::BundleStaged);

    let record = Record::for_bundle(&bundle, &bytes, inline);
    let record_bytes = record.encode();
    tpm.nv_write_atomic(RECORD_INDEX, &NvAccess::Owner, 0, &record_bytes)
        .map_err(Error::tpm("writing the anchor record"))?;
    observe(SealStep::RecordWritten);

    fs::rename(store.pending_path(), store.bundle_path())
        .map_err(|e| Error::io(store.pending_path(), e))?;
    store.sync_dir()?;
    observe(SealStep::BundleInstalled);

    let now = tpm
        .nv_counter_increment(COUNTER_INDEX, &NvAccess::Owner)
        .map_err(Error::tpm("incrementing the anchor counter"))?;
    if now != version {
        return Err(Error::TpmState(format!(
            "the anchor counter moved to {now} during the seal of version {version} (another writer with owner authorization?); seal again"
        )));
    }
    observe(SealStep::CounterIncremented);

    Ok(SealOutcome {
        version,
        digest: record.digest,
        count: set.len(),
        inline,
        record: record_bytes.to_vec(),
        bundle_path: store.bundle_path(),
        bundle_len: bytes.len(),
        completed_interrupted_seal: completed,
        delete_protected: creator == IndexCreator::Platform,
        unprotected_because,
    })
}

/// Write-locks the record, the counter and the data index until the next TPM
/// reset (owner authorization). Locking again is harmless.
pub fn lock(tpm: &mut Tpm) -> Result<()> {
    let state = read_tpm(tpm)?;
    let layout = layout(tpm, state.creator)?;
    tpm.layout_lock(&layout)
        .map_err(Error::tpm("write-locking the anchor NV indices"))
}

/// Whether every anchor index is write-locked.
pub fn is_locked(tpm: &mut Tpm) -> Result<bool> {
    let layout = layout(tpm, IndexCreator::Owner)?;
    match tpm.layout_is_locked(&layout) {
        Ok(l) => Ok(l),
        Err(TpmError::IndexMissing { .. }) => Ok(false),
        Err(e) => Err(Error::tpm("reading the anchor NV indices")(e)),
    }
}

/// Removes the anchor indices and then `$IMGSEAL_HOME/anchors` (in that
/// order: a host left with a bundle and no record refuses to verify, rather
/// than silently verifying without anchors). Refused while locked.
pub fn clear(tpm: &mut Tpm, store: &AnchorStore) -> Result<bool> {
    let layout = layout(tpm, IndexCreator::Owner)?;
    let mut any = false;
    for spec in layout.specs() {
        match tpm.nv_read_public(spec.index) {
            Ok(info) if info.public.attributes.is_write_locked() => {
                return Err(locked_error(spec.index));
            }
            Ok(_) => any = true,
            Err(TpmError::IndexMissing { .. }) => {}
            Err(e) => return Err(Error::tpm("reading the anchor NV indices")(e)),
        }
    }
    tpm.layout_remove(&layout)
        .map_err(Error::tpm("removing the anchor NV indices"))?;
    if store.exists() {
        fs::remove_dir_all(&store.dir).map_err(|e| Error::io(&store.dir, e))?;
        any = true;
    }
    Ok(any)
}

/// The documented public area of an anchor index, as a verifier expects it
/// after the first write, locked or not, defined by `creator`; for
/// recomputing names.
pub fn expected_public(index: u32, locked: bool, creator: IndexCreator) -> Option<NvSpec> {
    let layout = AnchorLayout::standard(None).created_by(creator);
    let mut spec = match index {
        RECORD_INDEX => layout.record,
        COUNTER_INDEX => layout.counter,
        _ => return None,
    };
    spec.attributes = spec.attributes | imgseal_tpm::NvAttributes::WRITTEN;
    if locked {
        spec.attributes = spec.attributes | imgseal_tpm::NvAttributes::WRITELOCKED;
    }
    Some(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str) -> Certificate {
        use openssl::asn1::Asn1Time;
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::x509::{X509, X509NameBuilder};
        let key = PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        Certificate::from_der(&b.build().to_der().unwrap(), cn).unwrap()
    }

    fn sample() -> Bundle {
        let mut set = AnchorSet::new();
        set.insert("zeta", cert("Z")).unwrap();
        set.insert("alpha", cert("A")).unwrap();
        Bundle {
            version: 42,
            anchors: set,
        }
    }

    #[test]
    fn bundles_are_canonical_and_round_trip() {
        let b = sample();
        let bytes = b.encode();
        assert_eq!(&bytes[..8], b"IMGSEALB");
        assert_eq!(&bytes[8..10], &[0, 1]);
        assert_eq!(u64::from_be_bytes(bytes[10..18].try_into().unwrap()), 42);
        assert_eq!(&bytes[18..22], &[0, 0, 0, 2]);
        // Sorted by id whatever the insertion order.
        assert_eq!(&bytes[22..24], &[0, 5]);
        assert_eq!(&bytes[24..29], b"alpha");
        let back = Bundle::decode(&bytes, "t").unwrap();
        assert_eq!(back.version, 42);
        assert_eq!(back.anchors.ids(), ["alpha", "zeta"]);
        assert_eq!(back.encode(), bytes);
        // Trailing bytes, truncation, another magic: refused.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Bundle::decode(&longer, "t").is_err());
        assert!(Bundle::decode(&bytes[..bytes.len() - 1], "t").is_err());
        let mut magic = bytes.clone();
        magic[0] ^= 1;
        assert!(Bundle::decode(&magic, "t").is_err());
    }

    #[test]
    fn bundles_out_of_order_or_with_repeated_ids_are_refused() {
        let b = sample();
        // Swap the two entries by hand: same content, not canonical.
        let bytes = b.encode();
        let first_len = 2 + 5 + 4 + b.anchors.get("alpha").unwrap().der.len();
        let mut swapped = bytes[..22].to_vec();
        swapped.extend_from_slice(&bytes[22 + first_len..]);
        swapped.extend_from_slice(&bytes[22..22 + first_len]);
        let e = Bundle::decode(&swapped, "t").unwrap_err().to_string();
        assert!(e.contains("out of order or repeated"), "{e}");
        let mut set = AnchorSet::new();
        set.insert("a", cert("A")).unwrap();
        assert!(set.insert("a", cert("B")).is_err());
        assert!(set.insert("a/b", cert("B")).is_err());
    }

    #[test]
    fn records_have_the_documented_layout() {
        let b = sample();
        let bytes = b.encode();
        let r = Record::for_bundle(&b, &bytes, true);
        let enc = r.encode();
        assert_eq!(enc.len(), 256);
        assert_eq!(&enc[..8], b"IMGSEALR");
        assert_eq!(&enc[8..12], &[0, 1, 1, 0]);
        assert_eq!(u64::from_be_bytes(enc[12..20].try_into().unwrap()), 42);
        assert_eq!(&enc[20..24], &[0, 0, 0, 2]);
        assert_eq!(
            u32::from_be_bytes(enc[24..28].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(&enc[28..60], Sha256::digest(&bytes).as_slice());
        assert!(enc[60..].iter().all(|b| *b == 0));
        assert_eq!(Record::decode(&enc).unwrap(), r);
        assert!(r.names(&bytes));
        let mut other = enc;
        other[255] = 1;
        let e = Record::decode(&other).unwrap_err().to_string();
        assert!(e.starts_with(MISMATCH), "{e}");
        assert!(Record::decode(&[0u8; 256]).is_err());
    }

    #[test]
    fn the_rollback_rule() {
        assert_eq!(CounterState::of(7, 7), CounterState::Current);
        assert_eq!(CounterState::of(8, 7), CounterState::SealPending);
        assert_eq!(CounterState::of(6, 7), CounterState::RolledBack);
        assert_eq!(CounterState::of(9, 7), CounterState::Ahead);
        assert_eq!(CounterState::of(0, u64::MAX), CounterState::RolledBack);
        assert!(CounterState::of(8, 7).is_acceptable());
        assert!(!CounterState::of(6, 7).is_acceptable());
    }

    #[test]
    fn expected_names_cover_written_and_locked() {
        let unlocked = expected_public(RECORD_INDEX, false, IndexCreator::Owner).unwrap();
        let locked = expected_public(RECORD_INDEX, true, IndexCreator::Owner).unwrap();
        assert_ne!(unlocked.name(), locked.name());
        assert!(unlocked.attributes.is_written() && !unlocked.attributes.is_write_locked());
        assert!(expected_public(DATA_INDEX, false, IndexCreator::Owner).is_none());
    }
}
