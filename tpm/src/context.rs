//! The connection to one TPM: a tss-esapi `Context` plus the hierarchy
//! authorization values, and the helpers every operation family shares
//! (sessions, error mapping, the second raw-ESYS connection).

use tss_esapi::Context;
use tss_esapi::constants::{CapabilityType, PropertyTag, SessionType};
use tss_esapi::handles::{ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Auth, CapabilityData, SymmetricDefinition};
use zeroize::Zeroizing;

use crate::error::{
    ESYS_RC_BAD_SEQUENCE, Result, Subject, TPM_RC_SESSION_MEMORY, TpmError, from_tss,
};
use crate::esys::RawEsys;
use crate::tcti::Tcti;

/// `TPM2_PT_NV_BUFFER_MAX` when the TPM does not report it (the spec's usual value).
pub(crate) const DEFAULT_NV_BUFFER_MAX: usize = 1024;

/// An open TPM. All methods take `&mut self`: share it behind a `Mutex`, one per TPM.
pub struct Tpm {
    pub(crate) ctx: Context,
    tcti: Tcti,
    owner_auth: Zeroizing<Vec<u8>>,
    platform_auth: Zeroizing<Vec<u8>>,
    endorsement_auth: Zeroizing<Vec<u8>>,
    lockout_auth: Zeroizing<Vec<u8>>,
    nv_buffer_max: Option<usize>,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tpm").field("tcti", &self.tcti).finish()
    }
}

/// What identifies a TPM and bounds its NV operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmInfo {
    /// `TPM2_PT_MANUFACTURER` as four ASCII characters ("IBM " for swtpm).
    pub manufacturer: String,
    pub vendor: String,
    /// `TPM2_PT_FIRMWARE_VERSION_1` and `_2`.
    pub firmware_version: u64,
    /// `TPM2_PT_NV_BUFFER_MAX`: the largest NV_Read/NV_Write/NV_Certify, and so
    /// the largest write that is atomic.
    pub nv_buffer_max: usize,
    /// `TPM2_PT_NV_INDEX_MAX`: the largest NV index.
    pub nv_index_max: usize,
}

/// Dictionary-attack state (`TPM2_PT_LOCKOUT_*`, `TPMA_PERMANENT.inLockout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaStatus {
    pub in_lockout: bool,
    pub failed_tries: u32,
    pub max_tries: u32,
    pub recovery_time: u32,
    pub lockout_recovery: u32,
}

impl Tpm {
    /// Connects through `tcti` and checks that the TPM answers.
    pub fn open(tcti: &Tcti) -> Result<Tpm> {
        let conf = tcti.name_conf()?;
        let ctx = Context::new(conf)
            .map_err(|e| from_tss("Esys_Initialize", e, Subject::None, &tcti.to_string()))?;
        let mut tpm = Tpm {
            ctx,
            tcti: tcti.clone(),
            owner_auth: Zeroizing::new(Vec::new()),
            platform_auth: Zeroizing::new(Vec::new()),
            endorsement_auth: Zeroizing::new(Vec::new()),
            lockout_auth: Zeroizing::new(Vec::new()),
            nv_buffer_max: None,
        };
        tpm.nv_buffer_max()?;
        Ok(tpm)
    }

    /// A fresh connection through the same TCTI, keeping the authorization
    /// values: after a connection error (the TPM or swtpm came back).
    pub fn reconnect(&mut self) -> Result<()> {
        let fresh = Tpm::open(&self.tcti)?;
        self.ctx = fresh.ctx;
        self.nv_buffer_max = fresh.nv_buffer_max;
        Ok(())
    }

    pub fn tcti(&self) -> &Tcti {
        &self.tcti
    }

    /// The owner hierarchy's authorization value (empty by default).
    pub fn set_owner_auth(&mut self, auth: &[u8]) {
        self.owner_auth = Zeroizing::new(auth.to_vec());
    }

    /// The platform hierarchy's authorization value (empty by default): it
    /// defines and removes platform-created NV indices, which the owner
    /// cannot delete.
    pub fn set_platform_auth(&mut self, auth: &[u8]) {
        self.platform_auth = Zeroizing::new(auth.to_vec());
    }

    pub fn info(&mut self) -> Result<TpmInfo> {
        let manufacturer = self.property(PropertyTag::Manufacturer)?.unwrap_or(0);
        let mut vendor = Vec::new();
        for tag in [
            PropertyTag::VendorString1,
            PropertyTag::VendorString2,
            PropertyTag::VendorString3,
            PropertyTag::VendorString4,
        ] {
            if let Some(v) = self.property(tag)? {
                vendor.extend_from_slice(&v.to_be_bytes());
            }
        }
        let fw1 = self.property(PropertyTag::FirmwareVersion1)?.unwrap_or(0) as u64;
        let fw2 = self.property(PropertyTag::FirmwareVersion2)?.unwrap_or(0) as u64;
        let nv_index_max = self
            .property(PropertyTag::NvIndexMax)?
            .map(|v| v as usize)
            .unwrap_or(2048);
        Ok(TpmInfo {
            manufacturer: ascii(&manufacturer.to_be_bytes()),
            vendor: ascii(&vendor),
            firmware_version: (fw1 << 32) | fw2,
            nv_buffer_max: self.nv_buffer_max()?,
            nv_index_max,
        })
    }

    /// `TPM2_PT_NV_BUFFER_MAX`, cached (1024 on swtpm and most TPMs).
    pub fn nv_buffer_max(&mut self) -> Result<usize> {
        if let Some(v) = self.nv_buffer_max {
            return Ok(v);
        }
        let v = self
            .property(PropertyTag::NvBufferMax)?
            .map(|v| v as usize)
            .unwrap_or(DEFAULT_NV_BUFFER_MAX)
            // tss-esapi's MaxNvBuffer cannot hold more.
            .min(tss_esapi::structures::MaxNvBuffer::MAX_SIZE);
        self.nv_buffer_max = Some(v);
        Ok(v)
    }

    /// `TPM2_PT_NV_INDEX_MAX`.
    pub fn nv_index_max(&mut self) -> Result<usize> {
        Ok(self
            .property(PropertyTag::NvIndexMax)?
            .map(|v| v as usize)
            .unwrap_or(2048))
    }

    /// Fixed TPM properties; tss-esapi caches them per context.
    fn property(&mut self, tag: PropertyTag) -> Result<Option<u32>> {
        let tcti = self.tcti.to_string();
        self.ctx
            .get_tpm_property(tag)
            .map_err(|e| from_tss("TPM2_GetCapability", e, Subject::None, &tcti))
    }

    /// A variable TPM property, read fresh (tss-esapi's cache would go stale).
    fn fresh_property(&mut self, tag: PropertyTag) -> Result<Option<u32>> {
        let (data, _) = self
            .ctx
            .execute_without_session(|c| {
                c.get_capability(CapabilityType::TpmProperties, tag.into(), 1)
            })
            .map_err(|e| self.err("TPM2_GetCapability", e, Subject::None))?;
        match data {
            CapabilityData::TpmProperties(list) => Ok(list
                .into_iter()
                .find(|p| p.property() == tag)
                .map(|p| p.value())),
            _ => Ok(None),
        }
    }

    /// The dictionary-attack counters and whether the TPM is in lockout.
    pub fn da_status(&mut self) -> Result<DaStatus> {
        let permanent = self.fresh_property(PropertyTag::Permanent)?.unwrap_or(0);
        Ok(DaStatus {
            // TPMA_PERMANENT bit 9: inLockout.
            in_lockout: permanent & (1 << 9) != 0,
            failed_tries: self
                .fresh_property(PropertyTag::LockoutCounter)?
                .unwrap_or(0),
            max_tries: self.fresh_property(PropertyTag::MaxAuthFail)?.unwrap_or(0),
            recovery_time: self
                .fresh_property(PropertyTag::LockoutInterval)?
                .unwrap_or(0),
            lockout_recovery: self
                .fresh_property(PropertyTag::LockoutRecovery)?
                .unwrap_or(0),
        })
    }

    /// TPM2_DictionaryAttackLockReset with the lockout authorization.
    pub fn dictionary_attack_lock_reset(&mut self) -> Result<()> {
        let mut raw = RawEsys::open(&self.tcti)?;
        raw.set_auth(crate::esys::ESYS_TR_RH_LOCKOUT, &self.lockout_auth)?;
        raw.dictionary_attack_lock_reset()
    }

    /// TPM2_DictionaryAttackParameters: `max_tries` failures before lockout,
    /// one failure forgotten every `recovery_time` seconds, `lockout_recovery`
    /// seconds before a failed lockout authorization may be retried.
    pub fn dictionary_attack_parameters(
        &mut self,
        max_tries: u32,
        recovery_time: u32,
        lockout_recovery: u32,
    ) -> Result<()> {
        let mut raw = RawEsys::open(&self.tcti)?;
        raw.set_auth(crate::esys::ESYS_TR_RH_LOCKOUT, &self.lockout_auth)?;
        raw.dictionary_attack_parameters(max_tries, recovery_time, lockout_recovery)
    }

    // ---- shared helpers -------------------------------------------------

    pub(crate) fn err(
        &self,
        command: &'static str,
        e: tss_esapi::Error,
        subject: Subject,
    ) -> TpmError {
        match from_tss(command, e, subject, &self.tcti.to_string()) {
            // After a TCTI failure in the middle of a command, ESYS refuses
            // everything with BAD_SEQUENCE: the connection is gone.
            TpmError::Tpm { command, code } if code.value() == ESYS_RC_BAD_SEQUENCE => {
                TpmError::Connection {
                    tcti: self.tcti.to_string(),
                    command,
                    code,
                }
            }
            other => other,
        }
    }

    pub(crate) fn raw(&self) -> Result<RawEsys> {
        RawEsys::open(&self.tcti)
    }

    pub(crate) fn owner_auth(&self) -> &[u8] {
        &self.owner_auth
    }

    pub(crate) fn set_hierarchy_auths(&mut self) -> Result<()> {
        let owner = Auth::try_from(self.owner_auth.to_vec())
            .map_err(|e| self.err("Esys_TR_SetAuth", e, Subject::None))?;
        let platform = Auth::try_from(self.platform_auth.to_vec())
            .map_err(|e| self.err("Esys_TR_SetAuth", e, Subject::None))?;
        let endorsement = Auth::try_from(self.endorsement_auth.to_vec())
            .map_err(|e| self.err("Esys_TR_SetAuth", e, Subject::None))?;
        self.ctx
            .tr_set_auth(ObjectHandle::Owner, owner)
            .and_then(|_| self.ctx.tr_set_auth(ObjectHandle::Platform, platform))
            .and_then(|_| self.ctx.tr_set_auth(ObjectHandle::Endorsement, endorsement))
            .map_err(|e| self.err("Esys_TR_SetAuth", e, Subject::None))
    }

    /// Runs `f` with one unbound, unsalted HMAC session (SHA-256) in slot 1,
    /// after loading the hierarchy authorizations. The session is flushed
    /// whatever `f` returns; a failed flush never hides `f`'s error.
    pub(crate) fn with_hmac_session<T>(
        &mut self,
        f: impl FnOnce(&mut Tpm, AuthSession) -> Result<T>,
    ) -> Result<T> {
        self.set_hierarchy_auths()?;
        // A TPM holds only a few loaded sessions (swtpm: 3), and with no
        // resource manager in between (swtpm over TCP, /dev/tpm0) other
        // processes' sessions count too: eight `imgseal verify` at once got
        // TPM_RC_SESSION_MEMORY (tests/concurrency.rs). It is a warning that
        // clears when they flush theirs, so wait for that, briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut pause = std::time::Duration::from_millis(2);
        let session = loop {
            let started = self
                .ctx
                .start_auth_session(
                    None,
                    None,
                    None,
                    SessionType::Hmac,
                    SymmetricDefinition::AES_128_CFB,
                    HashingAlgorithm::Sha256,
                )
                .map_err(|e| self.err("TPM2_StartAuthSession", e, Subject::None));
            match started {
                Err(TpmError::Tpm { code, .. })
                    if code.base() == TPM_RC_SESSION_MEMORY
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                other => break other?,
            }
        }
        .ok_or_else(|| TpmError::Wrapper {
            command: "TPM2_StartAuthSession",
            detail: "no session returned".into(),
        })?;
        let result = f(self, session);
        let flushed = self.ctx.flush_context(SessionHandle::from(session).into());
        self.ctx.clear_sessions();
        match (result, flushed) {
            (Ok(v), Ok(())) => Ok(v),
            (Ok(_), Err(e)) => Err(self.err("TPM2_FlushContext", e, Subject::None)),
            (Err(e), _) => Err(e),
        }
    }
}

fn ascii(bytes: &[u8]) -> String {
    bytes
        .iter()
        .filter(|b| **b != 0)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_string()
}
