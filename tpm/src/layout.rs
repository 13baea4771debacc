//! Where imgseal keeps a sealed set of bytes (the trust-anchor set) in the TPM:
//! three NV indices in the owner range, defined by the owner or, where the
//! platform hierarchy is available, by the platform. The device crate stores, locks and certifies
//! them; what the bytes mean is the caller's.
//!
//! | index        | kind    | size                  | attributes                                                     |
//! |--------------|---------|-----------------------|----------------------------------------------------------------|
//! | `0x0181A000` | record  | 256 (fixed)           | ownerwrite, ownerread, authread, no_da, write_stclear, writeall |
//! | `0x0181A001` | counter | 8                     | the same without writeall, `TPM_NT_COUNTER`                    |
//! | `0x0181A002` | data    | ≤ NV_INDEX_MAX (2048) | the same without writeall                                      |
//!
//! * The **record** is written whole, in one NV_Write (`WRITEALL` makes the TPM
//!   refuse anything else), so it is atomic: old or new, never torn. It holds
//!   what must not tear: a version and the digest of the set.
//! * The **counter** is monotonic and survives undefine/redefine (a new counter
//!   starts at the highest value any counter of the TPM ever had), so a record
//!   or bundle with a lower version is a rollback.
//! * The **data** index may hold a small set inline; writes over 1024 bytes
//!   take several commands and can tear, which the record's digest exposes.
//! * The owner writes (owner authorization, or TPM2_NV_WriteLock); anyone
//!   reads with the empty index authorization (`tpm2_nvread -C 0x0181a000`);
//!   `no_da` keeps reads working while the TPM is in dictionary-attack lockout;
//!   `write_stclear` makes [`Tpm::layout_lock`] last until the next TPM reset.
//! * **Who may delete them** is the hierarchy that defined them
//!   ([`AnchorLayout::created_by`]): an owner-created index can be undefined
//!   (and redefined) by the owner, write lock or not; a platform-created one
//!   (`platformcreate`) only with the platform authorization, which firmware
//!   normally holds. The three indices always share one creator.

use crate::context::Tpm;
use crate::error::Result;
use crate::nv::{Ensured, IndexCreator, NvAccess, NvInfo, NvSpec};

pub const RECORD_INDEX: u32 = 0x0181_A000;
pub const COUNTER_INDEX: u32 = 0x0181_A001;
pub const DATA_INDEX: u32 = 0x0181_A002;
/// The record's fixed size: well within one NV_Write (`TPM2_PT_NV_BUFFER_MAX`, 1024).
pub const RECORD_SIZE: u16 = 256;

/// The indices of a sealed set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorLayout {
    pub record: NvSpec,
    pub counter: NvSpec,
    /// Present when the set lives whole in NV.
    pub data: Option<NvSpec>,
}

impl AnchorLayout {
    /// The documented indices, owner-created; `data_size` adds the inline
    /// data index.
    pub fn standard(data_size: Option<u16>) -> AnchorLayout {
        AnchorLayout {
            record: NvSpec::sealed_record(RECORD_INDEX, RECORD_SIZE),
            counter: NvSpec::counter(COUNTER_INDEX),
            data: data_size.map(|size| NvSpec::sealed_data(DATA_INDEX, size)),
        }
    }

    /// The same indices defined by `creator`.
    pub fn created_by(self, creator: IndexCreator) -> AnchorLayout {
        AnchorLayout {
            record: self.record.created_by(creator),
            counter: self.counter.created_by(creator),
            data: self.data.map(|d| d.created_by(creator)),
        }
    }

    /// Which hierarchy defines the indices.
    pub fn creator(&self) -> IndexCreator {
        self.record.creator()
    }

    /// Every index, data first and record last (the order writes and locks use).
    pub fn specs(&self) -> Vec<&NvSpec> {
        let mut out = Vec::new();
        if let Some(d) = &self.data {
            out.push(d);
        }
        out.push(&self.counter);
        out.push(&self.record);
        out
    }
}

impl Tpm {
    /// Defines the layout's indices that are missing and checks the others.
    /// The indices get an empty authorization value (reads need no secret).
    pub fn layout_ensure(&mut self, layout: &AnchorLayout) -> Result<Vec<(u32, Ensured)>> {
        let mut out = Vec::new();
        for spec in layout.specs() {
            out.push((spec.index, self.nv_ensure(spec, &[])?));
        }
        Ok(out)
    }

    /// Checks every index of the layout; `IndexMissing` or `WrongAttributes` otherwise.
    pub fn layout_check(&mut self, layout: &AnchorLayout) -> Result<Vec<NvInfo>> {
        layout
            .specs()
            .into_iter()
            .map(|s| self.nv_check(s))
            .collect()
    }

    /// Write-locks every index of the layout until the next TPM reset (owner
    /// authorization). Indices already locked are left as they are, so an
    /// interrupted lock can be run again.
    pub fn layout_lock(&mut self, layout: &AnchorLayout) -> Result<()> {
        for spec in layout.specs() {
            let info = self.nv_check(spec)?;
            if !info.public.attributes.is_write_locked() {
                self.nv_write_lock(spec.index, &NvAccess::Owner)?;
            }
        }
        Ok(())
    }

    /// Whether every index of the layout is write-locked.
    pub fn layout_is_locked(&mut self, layout: &AnchorLayout) -> Result<bool> {
        for spec in layout.specs() {
            if !self
                .nv_read_public(spec.index)?
                .public
                .attributes
                .is_write_locked()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Undefines the layout's indices that exist, each with the authorization
    /// of the hierarchy that created it.
    pub fn layout_remove(&mut self, layout: &AnchorLayout) -> Result<()> {
        for spec in layout.specs() {
            if self.nv_exists(spec.index)? {
                self.nv_undefine_space(spec.index)?;
            }
        }
        Ok(())
    }
}
