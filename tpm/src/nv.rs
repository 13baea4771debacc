//! NV indices and counters.
//!
//! Two layers, as in tss-esapi: commands that mirror the TPM one to one
//! ([`Tpm::nv_define_space`], [`Tpm::nv_write_once`], [`Tpm::nv_read_once`],
//! [`Tpm::nv_write_lock`], [`Tpm::nv_increment`], …) and the operations users
//! want on top ([`Tpm::nv_read_all`], chunked [`Tpm::nv_write`],
//! [`Tpm::nv_write_atomic`], [`Tpm::nv_ensure`], [`Tpm::nv_counter_read`]).
//!
//! **Atomicity.** One `TPM2_NV_Write` is atomic: the TPM stages the change and
//! commits it at the end of the command (and swtpm persists its state file by
//! write-and-rename), so a power loss or a killed swtpm leaves the old or the
//! new contents. A write longer than `TPM2_PT_NV_BUFFER_MAX` (1024 on swtpm)
//! needs several commands and is *not* atomic: a reader can see a torn mix.
//! [`Tpm::nv_write_atomic`] refuses such writes; [`Tpm::nv_write`] chunks them.
//! Keep what must never be torn (a header with a digest of the rest) within one
//! NV_Write, ideally in an index with `WRITEALL`, which the TPM itself refuses
//! to write partially.

use std::fmt;

use sha2::{Digest as _, Sha256};
use tss_esapi::attributes::NvIndexAttributes;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{NvIndexHandle, NvIndexTpmHandle, ObjectHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Auth, CapabilityData, Digest, MaxNvBuffer, NvPublicBuilder};
use zeroize::Zeroizing;

use crate::context::Tpm;
use crate::error::{Result, Subject, TPM_RC_NV_DEFINED, TpmError};

/// `TPMA_NV` (TPM 2.0 Part 2, 13.4), including the `TPM_NT` type in bits 4..8.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NvAttributes(pub u32);

macro_rules! nv_bits {
    ($($name:ident = $bit:expr, $text:expr;)*) => {
        impl NvAttributes {
            $(pub const $name: NvAttributes = NvAttributes(1 << $bit);)*
            const NAMES: &'static [(u32, &'static str)] = &[$((1 << $bit, $text)),*];
        }
    };
}

nv_bits! {
    PPWRITE = 0, "ppwrite";
    OWNERWRITE = 1, "ownerwrite";
    AUTHWRITE = 2, "authwrite";
    POLICYWRITE = 3, "policywrite";
    POLICY_DELETE = 10, "policy_delete";
    WRITELOCKED = 11, "writelocked";
    WRITEALL = 12, "writeall";
    WRITEDEFINE = 13, "writedefine";
    WRITE_STCLEAR = 14, "write_stclear";
    GLOBALLOCK = 15, "globallock";
    PPREAD = 16, "ppread";
    OWNERREAD = 17, "ownerread";
    AUTHREAD = 18, "authread";
    POLICYREAD = 19, "policyread";
    NO_DA = 25, "no_da";
    ORDERLY = 26, "orderly";
    CLEAR_STCLEAR = 27, "clear_stclear";
    READLOCKED = 28, "readlocked";
    WRITTEN = 29, "written";
    PLATFORMCREATE = 30, "platformcreate";
    READ_STCLEAR = 31, "read_stclear";
}

/// `TPM_NT`: what kind of index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvKind {
    Ordinary,
    Counter,
    Bits,
    Extend,
    PinFail,
    PinPass,
    Unknown(u8),
}

impl NvKind {
    fn nt(self) -> u32 {
        match self {
            NvKind::Ordinary => 0,
            NvKind::Counter => 1,
            NvKind::Bits => 2,
            NvKind::Extend => 4,
            NvKind::PinFail => 8,
            NvKind::PinPass => 9,
            NvKind::Unknown(v) => v as u32 & 0xf,
        }
    }
}

impl NvAttributes {
    const TYPE_MASK: u32 = 0xf << 4;
    /// Bits that record the index's state rather than its definition.
    pub const STATE: NvAttributes =
        NvAttributes(Self::WRITELOCKED.0 | Self::WRITTEN.0 | Self::READLOCKED.0);

    pub const fn empty() -> Self {
        NvAttributes(0)
    }

    pub const fn union(self, other: NvAttributes) -> Self {
        NvAttributes(self.0 | other.0)
    }

    pub const fn contains(self, other: NvAttributes) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn kind(self) -> NvKind {
        match (self.0 & Self::TYPE_MASK) >> 4 {
            0 => NvKind::Ordinary,
            1 => NvKind::Counter,
            2 => NvKind::Bits,
            4 => NvKind::Extend,
            8 => NvKind::PinFail,
            9 => NvKind::PinPass,
            other => NvKind::Unknown(other as u8),
        }
    }

    pub fn with_kind(self, kind: NvKind) -> Self {
        NvAttributes((self.0 & !Self::TYPE_MASK) | (kind.nt() << 4))
    }

    /// The definition only: without WRITELOCKED, WRITTEN and READLOCKED.
    pub fn definition(self) -> Self {
        NvAttributes(self.0 & !Self::STATE.0)
    }

    pub fn is_write_locked(self) -> bool {
        self.contains(Self::WRITELOCKED)
    }

    pub fn is_written(self) -> bool {
        self.contains(Self::WRITTEN)
    }
}

impl std::ops::BitOr for NvAttributes {
    type Output = NvAttributes;
    fn bitor(self, rhs: NvAttributes) -> NvAttributes {
        self.union(rhs)
    }
}

impl fmt::Display for NvAttributes {
    /// tpm2-tools' spelling: `ownerwrite|authread|no_da|nt=counter`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Self::NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| name.to_string())
            .collect();
        let nt = match self.kind() {
            NvKind::Ordinary => None,
            NvKind::Counter => Some("counter".to_string()),
            NvKind::Bits => Some("bits".to_string()),
            NvKind::Extend => Some("extend".to_string()),
            NvKind::PinFail => Some("pinfail".to_string()),
            NvKind::PinPass => Some("pinpass".to_string()),
            NvKind::Unknown(v) => Some(format!("{v:#x}")),
        };
        if let Some(nt) = nt {
            parts.push(format!("nt={nt}"));
        }
        if parts.is_empty() {
            write!(f, "(none)")
        } else {
            write!(f, "{}", parts.join("|"))
        }
    }
}

impl fmt::Debug for NvAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NvAttributes({:#010x}: {self})", self.0)
    }
}

/// The public area of an NV index (`TPMS_NV_PUBLIC`); name algorithm SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvSpec {
    pub index: u32,
    pub size: u16,
    pub attributes: NvAttributes,
    /// `authPolicy`: empty unless the index is written or read through a policy.
    pub auth_policy: Vec<u8>,
}

/// The attributes imgseal defines its indices with: the owner writes, anyone
/// reads with the index's empty authorization (tpm2-tools: `-C <index>`) or
/// with the owner's, `NV_WriteLock` works until the next TPM reset, and
/// dictionary-attack lockout never blocks it (a host must read its anchors
/// even while the TPM is locked out).
pub const SEALED_ATTRIBUTES: NvAttributes = NvAttributes(
    NvAttributes::OWNERWRITE.0
        | NvAttributes::OWNERREAD.0
        | NvAttributes::AUTHREAD.0
        | NvAttributes::NO_DA.0
        | NvAttributes::WRITE_STCLEAR.0,
);

impl NvSpec {
    /// An ordinary index with explicit attributes.
    pub fn ordinary(index: u32, size: u16, attributes: NvAttributes) -> NvSpec {
        NvSpec {
            index,
            size,
            attributes: attributes.with_kind(NvKind::Ordinary),
            auth_policy: Vec::new(),
        }
    }

    /// An index written as a whole, in one NV_Write (`WRITEALL`), so it is
    /// never torn; `size` must not exceed `TPM2_PT_NV_BUFFER_MAX`.
    pub fn sealed_record(index: u32, size: u16) -> NvSpec {
        NvSpec::ordinary(index, size, SEALED_ATTRIBUTES | NvAttributes::WRITEALL)
    }

    /// An index for bulk data (up to `TPM2_PT_NV_INDEX_MAX`), written in chunks.
    pub fn sealed_data(index: u32, size: u16) -> NvSpec {
        NvSpec::ordinary(index, size, SEALED_ATTRIBUTES)
    }

    /// A monotonic 64-bit counter (`TPM_NT_COUNTER`).
    pub fn counter(index: u32) -> NvSpec {
        NvSpec {
            index,
            size: 8,
            attributes: SEALED_ATTRIBUTES.with_kind(NvKind::Counter),
            auth_policy: Vec::new(),
        }
    }

    /// The same index defined by `creator` (`PLATFORMCREATE` set or clear).
    pub fn created_by(mut self, creator: IndexCreator) -> NvSpec {
        self.attributes = match creator {
            IndexCreator::Owner => {
                NvAttributes(self.attributes.0 & !NvAttributes::PLATFORMCREATE.0)
            }
            IndexCreator::Platform => self.attributes | NvAttributes::PLATFORMCREATE,
        };
        self
    }

    /// Which hierarchy defined the index (`PLATFORMCREATE`).
    pub fn creator(&self) -> IndexCreator {
        if self.attributes.contains(NvAttributes::PLATFORMCREATE) {
            IndexCreator::Platform
        } else {
            IndexCreator::Owner
        }
    }

    /// The marshalled `TPMS_NV_PUBLIC` (nameAlg SHA-256) with the given state
    /// bits: what the TPM hashes into the index's name.
    pub fn marshal(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + self.auth_policy.len());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&0x000Bu16.to_be_bytes()); // TPM_ALG_SHA256
        out.extend_from_slice(&self.attributes.0.to_be_bytes());
        out.extend_from_slice(&(self.auth_policy.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.auth_policy);
        out.extend_from_slice(&self.size.to_be_bytes());
        out
    }

    /// Parses a marshalled `TPMS_NV_PUBLIC` (SHA-256 name algorithm only).
    pub fn unmarshal(bytes: &[u8]) -> Result<NvSpec> {
        let bad = |why: &str| TpmError::Invalid(format!("TPMS_NV_PUBLIC: {why}"));
        if bytes.len() < 14 {
            return Err(bad("too short"));
        }
        let index = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
        let alg = u16::from_be_bytes(bytes[4..6].try_into().unwrap());
        if alg != 0x000B {
            return Err(bad(&format!("name algorithm {alg:#06x} is not SHA-256")));
        }
        let attributes = NvAttributes(u32::from_be_bytes(bytes[6..10].try_into().unwrap()));
        let plen = u16::from_be_bytes(bytes[10..12].try_into().unwrap()) as usize;
        if bytes.len() != 14 + plen {
            return Err(bad("wrong length"));
        }
        let auth_policy = bytes[12..12 + plen].to_vec();
        let size = u16::from_be_bytes(bytes[12 + plen..14 + plen].try_into().unwrap());
        Ok(NvSpec {
            index,
            size,
            attributes,
            auth_policy,
        })
    }

    /// The index's name: `TPM_ALG_SHA256 || SHA-256(TPMS_NV_PUBLIC)`.
    pub fn name(&self) -> Vec<u8> {
        let mut name = vec![0x00, 0x0B];
        name.extend_from_slice(&Sha256::digest(self.marshal()));
        name
    }

    fn to_tss(&self) -> tss_esapi::Result<tss_esapi::structures::NvPublic> {
        NvPublicBuilder::new()
            .with_nv_index(NvIndexTpmHandle::new(self.index)?)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(NvIndexAttributes::try_from(self.attributes.0)?)
            .with_index_auth_policy(Digest::try_from(self.auth_policy.clone())?)
            .with_data_area_size(self.size as usize)
            .build()
    }
}

/// The hierarchy that defines an index, and so who may delete it. The owner
/// may undefine only indices it created; a platform-created index needs the
/// platform authorization (TPM 2.0 Part 3, TPM2_NV_UndefineSpace:
/// `TPM_RC_NV_AUTHORIZATION`), and TPM2_Clear leaves it in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexCreator {
    Owner,
    Platform,
}

impl IndexCreator {
    fn provision(self) -> Provision {
        match self {
            IndexCreator::Owner => Provision::Owner,
            IndexCreator::Platform => Provision::Platform,
        }
    }
}

impl fmt::Display for IndexCreator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IndexCreator::Owner => "owner",
            IndexCreator::Platform => "platform",
        })
    }
}

/// What `TPM2_NV_ReadPublic` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvInfo {
    pub public: NvSpec,
    /// The index's nameAlg: imgseal defines its indices with SHA-256, and
    /// attestation verifiers recompute the name with it.
    pub name_alg: HashingAlgorithm,
    /// The name the TPM computed (algorithm id + digest); it changes when the
    /// index is first written and when it is write-locked.
    pub name: Vec<u8>,
}

/// A hash algorithm as people write it (SHA-256, not Sha256).
fn hash_name(alg: HashingAlgorithm) -> String {
    match alg {
        HashingAlgorithm::Sha1 => "SHA-1".into(),
        HashingAlgorithm::Sha256 => "SHA-256".into(),
        HashingAlgorithm::Sha384 => "SHA-384".into(),
        HashingAlgorithm::Sha512 => "SHA-512".into(),
        HashingAlgorithm::Sm3_256 => "SM3-256".into(),
        HashingAlgorithm::Sha3_256 => "SHA3-256".into(),
        HashingAlgorithm::Sha3_384 => "SHA3-384".into(),
        HashingAlgorithm::Sha3_512 => "SHA3-512".into(),
        other => format!("{other:?}"),
    }
}

/// Which authorization an NV command uses (its `authHandle`).
#[derive(Clone)]
pub enum NvAccess {
    /// The owner hierarchy (OWNERWRITE / OWNERREAD), with [`Tpm::set_owner_auth`].
    Owner,
    /// The index itself (AUTHWRITE / AUTHREAD) with its authorization value.
    Index(Zeroizing<Vec<u8>>),
}

impl NvAccess {
    /// The index's own, empty, authorization: how anyone reads an AUTHREAD index.
    pub fn public() -> NvAccess {
        NvAccess::Index(Zeroizing::new(Vec::new()))
    }

    pub fn index_password(password: &[u8]) -> NvAccess {
        NvAccess::Index(Zeroizing::new(password.to_vec()))
    }
}

impl fmt::Debug for NvAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NvAccess::Owner => write!(f, "Owner"),
            NvAccess::Index(p) if p.is_empty() => write!(f, "Index(empty)"),
            NvAccess::Index(_) => write!(f, "Index(<secret>)"),
        }
    }
}

/// What [`Tpm::nv_ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    Existing,
}

fn tpm_handle(index: u32) -> Result<TpmHandle> {
    NvIndexTpmHandle::new(index)
        .map(TpmHandle::NvIndex)
        .map_err(|_| {
            TpmError::Invalid(format!(
                "{index:#010x} is not an NV index handle (0x01xxxxxx)"
            ))
        })
}

impl Tpm {
    // ---- commands, one to one -------------------------------------------

    /// TPM2_NV_DefineSpace, with `auth` as the index's authorization value
    /// (empty for "no secret"): under the platform hierarchy when `spec` has
    /// `PLATFORMCREATE` (the TPM requires the two to agree), else the owner's.
    pub fn nv_define_space(&mut self, spec: &NvSpec, auth: &[u8]) -> Result<()> {
        let subject = Subject::Nv(spec.index);
        let hierarchy = spec.creator().provision();
        let public = spec
            .to_tss()
            .map_err(|e| self.err("TPM2_NV_DefineSpace", e, subject))?;
        let auth = Auth::try_from(auth.to_vec())
            .map_err(|e| self.err("TPM2_NV_DefineSpace", e, subject))?;
        self.with_hmac_session(|tpm, s| {
            let handle = tpm
                .ctx
                .execute_with_session(Some(s), |c| {
                    c.nv_define_space(hierarchy, Some(auth), public)
                })
                .map_err(|e| match tpm.err("TPM2_NV_DefineSpace", e, subject) {
                    TpmError::Tpm { command, code } if code.base() == TPM_RC_NV_DEFINED => {
                        TpmError::Invalid(format!(
                            "{command} failed: {code}: NV index {:#010x} is already defined",
                            spec.index
                        ))
                    }
                    other => other,
                })?;
            let mut object: ObjectHandle = handle.into();
            let _ = tpm.ctx.tr_close(&mut object);
            Ok(())
        })
    }

    /// TPM2_NV_UndefineSpace with the authorization of the hierarchy that
    /// created the index: the owner's, or the platform's for a
    /// platform-created index (the TPM refuses the owner there).
    pub fn nv_undefine_space(&mut self, index: u32) -> Result<()> {
        let subject = Subject::Nv(index);
        let hierarchy = self.nv_read_public(index)?.public.creator().provision();
        let handle = self.nv_handle(index)?;
        let result = self.with_hmac_session(|tpm, s| {
            tpm.ctx
                .execute_with_session(Some(s), |c| c.nv_undefine_space(hierarchy, handle))
                .map_err(|e| tpm.err("TPM2_NV_UndefineSpace", e, subject))
        });
        if result.is_err() {
            self.close(handle);
        }
        result
    }

    /// TPM2_NV_ReadPublic: attributes, size, policy and name. Needs no authorization.
    pub fn nv_read_public(&mut self, index: u32) -> Result<NvInfo> {
        let subject = Subject::Nv(index);
        let handle = self.nv_handle(index)?;
        let result = self
            .ctx
            .execute_without_session(|c| c.nv_read_public(handle))
            .map_err(|e| self.err("TPM2_NV_ReadPublic", e, subject));
        self.close(handle);
        let (public, name) = result?;
        Ok(NvInfo {
            public: NvSpec {
                index,
                size: public.data_size() as u16,
                attributes: NvAttributes(public.attributes().0),
                auth_policy: public.authorization_policy().value().to_vec(),
            },
            name_alg: public.name_algorithm(),
            name: name.value().to_vec(),
        })
    }

    /// One TPM2_NV_Write of at most `TPM2_PT_NV_BUFFER_MAX` bytes: atomic.
    pub fn nv_write_once(
        &mut self,
        index: u32,
        access: &NvAccess,
        offset: u16,
        data: &[u8],
    ) -> Result<()> {
        let max = self.nv_buffer_max()?;
        if data.len() > max {
            return Err(TpmError::Invalid(format!(
                "an atomic NV write holds at most {max} bytes (TPM2_PT_NV_BUFFER_MAX); got {}",
                data.len()
            )));
        }
        self.nv_session(index, access, |tpm, s, auth, handle| {
            tpm.write_chunk(s, auth, handle, index, offset, data)
        })
    }

    /// One TPM2_NV_Read of at most `TPM2_PT_NV_BUFFER_MAX` bytes.
    pub fn nv_read_once(
        &mut self,
        index: u32,
        access: &NvAccess,
        offset: u16,
        len: u16,
    ) -> Result<Vec<u8>> {
        let max = self.nv_buffer_max()?;
        if len as usize > max {
            return Err(TpmError::Invalid(format!(
                "one NV read returns at most {max} bytes (TPM2_PT_NV_BUFFER_MAX); asked {len}"
            )));
        }
        self.nv_session(index, access, |tpm, s, auth, handle| {
            tpm.read_chunk(s, auth, handle, index, offset, len)
        })
    }

    /// TPM2_NV_WriteLock: no writes until the next TPM reset/restart
    /// (`WRITE_STCLEAR`) or ever again (`WRITEDEFINE`). Reads still work.
    pub fn nv_write_lock(&mut self, index: u32, access: &NvAccess) -> Result<()> {
        let subject = Subject::Nv(index);
        let mut raw = self.raw()?;
        let nv = raw.tr_from_tpm_public(index, subject)?;
        let auth = match access {
            NvAccess::Owner => {
                raw.set_auth(crate::esys::ESYS_TR_RH_OWNER, self.owner_auth())?;
                crate::esys::ESYS_TR_RH_OWNER
            }
            NvAccess::Index(password) => {
                raw.set_auth(nv, password)?;
                nv
            }
        };
        raw.nv_write_lock(auth, nv, index)
    }

    /// TPM2_NV_Increment on a counter index.
    pub fn nv_increment(&mut self, index: u32, access: &NvAccess) -> Result<()> {
        let subject = Subject::Nv(index);
        self.nv_session(index, access, |tpm, s, auth, handle| {
            tpm.ctx
                .execute_with_session(Some(s), |c| c.nv_increment(auth, handle))
                .map_err(|e| tpm.err("TPM2_NV_Increment", e, subject))
        })
    }

    /// The NV indices defined in the TPM (TPM2_GetCapability(TPM_CAP_HANDLES)).
    pub fn nv_list(&mut self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut next = 0x0100_0000u32;
        loop {
            let (data, more) = self
                .ctx
                .execute_without_session(|c| c.get_capability(CapabilityType::Handles, next, 64))
                .map_err(|e| self.err("TPM2_GetCapability", e, Subject::None))?;
            let CapabilityData::Handles(list) = data else {
                break;
            };
            let handles: Vec<u32> = list.into_inner().into_iter().map(u32::from).collect();
            let Some(&last) = handles.last() else { break };
            out.extend(handles.into_iter().filter(|h| h >> 24 == 0x01));
            if !more || last >> 24 != 0x01 {
                break;
            }
            next = last + 1;
        }
        Ok(out)
    }

    // ---- what users want ------------------------------------------------

    /// Whether the index is defined.
    pub fn nv_exists(&mut self, index: u32) -> Result<bool> {
        match self.nv_read_public(index) {
            Ok(_) => Ok(true),
            Err(TpmError::IndexMissing { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Defines the index as `spec` says, or checks that the defined one matches
    /// it (attributes ignoring WRITTEN/WRITELOCKED/READLOCKED, size, policy).
    pub fn nv_ensure(&mut self, spec: &NvSpec, auth: &[u8]) -> Result<Ensured> {
        match self.nv_check(spec) {
            Ok(_) => Ok(Ensured::Existing),
            Err(TpmError::IndexMissing { .. }) => {
                self.nv_define_space(spec, auth)?;
                Ok(Ensured::Created)
            }
            Err(e) => Err(e),
        }
    }

    /// The index's public area, if it matches `expected`; else `WrongAttributes`.
    pub fn nv_check(&mut self, expected: &NvSpec) -> Result<NvInfo> {
        let info = self.nv_read_public(expected.index)?;
        let found = &info.public;
        let mut problems = Vec::new();
        if info.name_alg != HashingAlgorithm::Sha256 {
            problems.push(format!(
                "nameAlg {} (expected SHA-256; its name would not match what verifiers compute)",
                hash_name(info.name_alg)
            ));
        }
        if found.attributes.definition() != expected.attributes.definition() {
            problems.push(format!(
                "attributes {} (expected {})",
                found.attributes.definition(),
                expected.attributes.definition()
            ));
        }
        if found.size != expected.size {
            problems.push(format!("size {} (expected {})", found.size, expected.size));
        }
        if found.auth_policy != expected.auth_policy {
            problems.push("a different authPolicy".to_string());
        }
        if problems.is_empty() {
            Ok(info)
        } else {
            Err(TpmError::WrongAttributes {
                index: expected.index,
                command: None,
                code: None,
                detail: format!("is defined with {}", problems.join(", ")),
            })
        }
    }

    /// Reads `len` bytes at `offset`, in chunks of `TPM2_PT_NV_BUFFER_MAX`.
    pub fn nv_read(
        &mut self,
        index: u32,
        access: &NvAccess,
        offset: u16,
        len: u16,
    ) -> Result<Vec<u8>> {
        let max = self.nv_buffer_max()?;
        self.nv_session(index, access, |tpm, s, auth, handle| {
            let mut out = Vec::with_capacity(len as usize);
            while out.len() < len as usize {
                let want = (len as usize - out.len()).min(max) as u16;
                let at = offset as usize + out.len();
                let at = u16::try_from(at)
                    .map_err(|_| TpmError::Invalid("NV offset beyond 65535".into()))?;
                let chunk = tpm.read_chunk(s, auth, handle, index, at, want)?;
                if chunk.is_empty() {
                    break;
                }
                out.extend_from_slice(&chunk);
            }
            Ok(out)
        })
    }

    /// The whole data area of the index.
    pub fn nv_read_all(&mut self, index: u32, access: &NvAccess) -> Result<Vec<u8>> {
        let size = self.nv_read_public(index)?.public.size;
        self.nv_read(index, access, 0, size)
    }

    /// Writes `data` at `offset` in chunks of `TPM2_PT_NV_BUFFER_MAX`. **Not
    /// atomic** beyond one chunk: interrupted, the index holds a mix of old and
    /// new bytes. Protect such data with a digest written by [`Tpm::nv_write_atomic`].
    pub fn nv_write(
        &mut self,
        index: u32,
        access: &NvAccess,
        offset: u16,
        data: &[u8],
    ) -> Result<()> {
        let max = self.nv_buffer_max()?;
        self.nv_session(index, access, |tpm, s, auth, handle| {
            for (i, chunk) in data.chunks(max).enumerate() {
                let at = offset as usize + i * max;
                let at = u16::try_from(at)
                    .map_err(|_| TpmError::Invalid("NV offset beyond 65535".into()))?;
                tpm.write_chunk(s, auth, handle, index, at, chunk)?;
            }
            Ok(())
        })
    }

    /// Writes `data` in exactly one TPM2_NV_Write, so that it is all-or-nothing;
    /// refuses more than `TPM2_PT_NV_BUFFER_MAX` bytes.
    pub fn nv_write_atomic(
        &mut self,
        index: u32,
        access: &NvAccess,
        offset: u16,
        data: &[u8],
    ) -> Result<()> {
        self.nv_write_once(index, access, offset, data)
    }

    /// The counter's value (a TPM_NT_COUNTER index, read as 8 bytes big-endian).
    /// A counter never incremented is `NotWritten`.
    pub fn nv_counter_read(&mut self, index: u32, access: &NvAccess) -> Result<u64> {
        let bytes = self.nv_read_once(index, access, 0, 8)?;
        let array: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
            TpmError::Invalid(format!(
                "counter {index:#010x} returned {} bytes",
                bytes.len()
            ))
        })?;
        Ok(u64::from_be_bytes(array))
    }

    /// Increments the counter and returns its new value.
    pub fn nv_counter_increment(&mut self, index: u32, access: &NvAccess) -> Result<u64> {
        self.nv_increment(index, access)?;
        self.nv_counter_read(index, access)
    }

    // ---- plumbing -------------------------------------------------------

    pub(crate) fn nv_handle(&mut self, index: u32) -> Result<NvIndexHandle> {
        let handle = tpm_handle(index)?;
        let object = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(handle))
            .map_err(|e| self.err("TPM2_NV_ReadPublic", e, Subject::Nv(index)))?;
        Ok(NvIndexHandle::from(object))
    }

    pub(crate) fn close(&mut self, handle: NvIndexHandle) {
        let mut object: ObjectHandle = handle.into();
        let _ = self.ctx.tr_close(&mut object);
    }

    /// Resolves the index (fresh: its name changes when written or locked), sets
    /// the authorization, and runs `f` in an HMAC session.
    fn nv_session<T>(
        &mut self,
        index: u32,
        access: &NvAccess,
        f: impl FnOnce(&mut Tpm, AuthSession, NvAuth, NvIndexHandle) -> Result<T>,
    ) -> Result<T> {
        let handle = self.nv_handle(index)?;
        let auth = match access {
            NvAccess::Owner => NvAuth::Owner,
            NvAccess::Index(password) => {
                let value = Auth::try_from(password.to_vec())
                    .map_err(|e| self.err("Esys_TR_SetAuth", e, Subject::Nv(index)));
                let set = value.and_then(|v| {
                    self.ctx
                        .tr_set_auth(handle.into(), v)
                        .map_err(|e| self.err("Esys_TR_SetAuth", e, Subject::Nv(index)))
                });
                if let Err(e) = set {
                    self.close(handle);
                    return Err(e);
                }
                NvAuth::NvIndex(handle)
            }
        };
        let result = self.with_hmac_session(|tpm, s| f(tpm, s, auth, handle));
        self.close(handle);
        result
    }

    fn write_chunk(
        &mut self,
        s: AuthSession,
        auth: NvAuth,
        handle: NvIndexHandle,
        index: u32,
        offset: u16,
        data: &[u8],
    ) -> Result<()> {
        let subject = Subject::Nv(index);
        let buffer = MaxNvBuffer::try_from(data.to_vec())
            .map_err(|e| self.err("TPM2_NV_Write", e, subject))?;
        self.ctx
            .execute_with_session(Some(s), |c| c.nv_write(auth, handle, buffer, offset))
            .map_err(|e| self.err("TPM2_NV_Write", e, subject))
    }

    fn read_chunk(
        &mut self,
        s: AuthSession,
        auth: NvAuth,
        handle: NvIndexHandle,
        index: u32,
        offset: u16,
        len: u16,
    ) -> Result<Vec<u8>> {
        let subject = Subject::Nv(index);
        self.ctx
            .execute_with_session(Some(s), |c| c.nv_read(auth, handle, len, offset))
            .map(|b| b.value().to_vec())
            .map_err(|e| self.err("TPM2_NV_Read", e, subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_print_like_tpm2_tools() {
        assert_eq!(
            SEALED_ATTRIBUTES.to_string(),
            "ownerwrite|write_stclear|ownerread|authread|no_da"
        );
        let counter = NvSpec::counter(0x0181_a001).attributes;
        assert_eq!(counter.kind(), NvKind::Counter);
        assert!(counter.to_string().ends_with("nt=counter"));
        assert_eq!(
            (SEALED_ATTRIBUTES | NvAttributes::WRITTEN | NvAttributes::WRITELOCKED).definition(),
            SEALED_ATTRIBUTES
        );
        // Accepted by tss-esapi's own validation.
        for spec in [
            NvSpec::sealed_record(0x0181_a000, 256),
            NvSpec::sealed_data(0x0181_a002, 2048),
            NvSpec::counter(0x0181_a001),
        ] {
            spec.to_tss().unwrap();
        }
    }

    #[test]
    fn public_area_round_trips() {
        let spec = NvSpec::sealed_record(0x0181_a000, 256);
        let bytes = spec.marshal();
        assert_eq!(bytes.len(), 14);
        assert_eq!(NvSpec::unmarshal(&bytes).unwrap(), spec);
        assert_eq!(spec.name().len(), 34);
        assert!(NvSpec::unmarshal(&bytes[..13]).is_err());
    }
}
