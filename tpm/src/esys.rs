//! The TPM commands tss-esapi 7.7.0 does not wrap (`NV_WriteLock`,
//! `NV_Certify`, `DictionaryAttackLockReset`, `DictionaryAttackParameters`),
//! called through raw ESYS on a *second* connection.
//!
//! tss-esapi keeps its `ESYS_CONTEXT` pointer private, so this module opens its
//! own TCTI and ESYS context from the same TCTI string and closes them after
//! each call. swtpm's TCTI does not hold the connection between commands and
//! `/dev/tpmrm0` is multiplexed by the kernel, so both interleave with the main
//! context; `/dev/tpm0` (no resource manager) admits one connection only.
//!
//! Authorizations here use password sessions (`ESYS_TR_PASSWORD`).

use std::ffi::CString;
use std::ptr::null_mut;

use tss_esapi::tss2_esys::{
    ESYS_CONTEXT, ESYS_TR, ESYS_TR_NONE, ESYS_TR_PASSWORD, Esys_DictionaryAttackLockReset,
    Esys_DictionaryAttackParameters, Esys_Finalize, Esys_Free, Esys_Initialize, Esys_NV_Certify,
    Esys_NV_WriteLock, Esys_TR_Close, Esys_TR_FromTPMPublic, Esys_TR_SetAuth, TPM2B_AUTH,
    TPM2B_DATA, TPMT_SIG_SCHEME, TSS2_TCTI_CONTEXT, Tss2_TctiLdr_Finalize, Tss2_TctiLdr_Initialize,
};

use tss_esapi::constants::tss::TPM2_ALG_NULL;

use crate::error::{Result, Subject, TpmError, classify};
use crate::tcti::Tcti;

pub(crate) use tss_esapi::tss2_esys::{ESYS_TR_RH_LOCKOUT, ESYS_TR_RH_OWNER};

/// An ESYS context on its own TCTI connection; both are finalized on drop.
pub(crate) struct RawEsys {
    esys: *mut ESYS_CONTEXT,
    tcti: *mut TSS2_TCTI_CONTEXT,
    tcti_name: String,
    opened: Vec<ESYS_TR>,
}

impl RawEsys {
    pub(crate) fn open(tcti: &Tcti) -> Result<RawEsys> {
        let name = tcti.to_string();
        let conf = CString::new(name.clone()).map_err(|_| TpmError::TctiConfig {
            tcti: name.clone(),
            reason: "contains a NUL byte".into(),
        })?;
        let mut tcti_ctx: *mut TSS2_TCTI_CONTEXT = null_mut();
        // Safety: conf is a valid C string; tcti_ctx receives an allocated context.
        let rc = unsafe { Tss2_TctiLdr_Initialize(conf.as_ptr(), &mut tcti_ctx) };
        if rc != 0 {
            return Err(classify(
                "Tss2_TctiLdr_Initialize",
                rc,
                Subject::None,
                &name,
            ));
        }
        let mut esys: *mut ESYS_CONTEXT = null_mut();
        // Safety: tcti_ctx was initialised above and outlives esys (finalized after it).
        let rc = unsafe { Esys_Initialize(&mut esys, tcti_ctx, null_mut()) };
        if rc != 0 {
            unsafe { Tss2_TctiLdr_Finalize(&mut tcti_ctx) };
            return Err(classify("Esys_Initialize", rc, Subject::None, &name));
        }
        Ok(RawEsys {
            esys,
            tcti: tcti_ctx,
            tcti_name: name,
            opened: Vec::new(),
        })
    }

    fn check(&self, command: &'static str, rc: u32, subject: Subject) -> Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(classify(command, rc, subject, &self.tcti_name))
        }
    }

    /// An ESYS_TR for a TPM handle (NV index, persistent object); reads its public area.
    pub(crate) fn tr_from_tpm_public(&mut self, handle: u32, subject: Subject) -> Result<ESYS_TR> {
        let mut tr: ESYS_TR = ESYS_TR_NONE;
        let rc = unsafe {
            Esys_TR_FromTPMPublic(
                self.esys,
                handle,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                &mut tr,
            )
        };
        let command = if (handle >> 24) == 0x01 {
            "TPM2_NV_ReadPublic"
        } else {
            "TPM2_ReadPublic"
        };
        self.check(command, rc, subject)?;
        self.opened.push(tr);
        Ok(tr)
    }

    pub(crate) fn set_auth(&mut self, tr: ESYS_TR, auth: &[u8]) -> Result<()> {
        let mut value = TPM2B_AUTH::default();
        if auth.len() > value.buffer.len() {
            return Err(TpmError::Invalid(format!(
                "authorization value of {} bytes is longer than {}",
                auth.len(),
                value.buffer.len()
            )));
        }
        value.size = auth.len() as u16;
        value.buffer[..auth.len()].copy_from_slice(auth);
        let rc = unsafe { Esys_TR_SetAuth(self.esys, tr, &value) };
        // Do not leave the secret in this stack copy (zeroize: volatile
        // writes the compiler cannot drop as dead stores).
        zeroize::Zeroize::zeroize(&mut value.buffer[..]);
        self.check("Esys_TR_SetAuth", rc, Subject::None)
    }

    /// TPM2_NV_WriteLock(authHandle, nvIndex).
    pub(crate) fn nv_write_lock(&mut self, auth: ESYS_TR, nv: ESYS_TR, index: u32) -> Result<()> {
        let rc = unsafe {
            Esys_NV_WriteLock(
                self.esys,
                auth,
                nv,
                ESYS_TR_PASSWORD,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
            )
        };
        self.check("TPM2_NV_WriteLock", rc, Subject::Nv(index))
    }

    /// TPM2_NV_Certify with the signing key's own scheme. Returns the
    /// TPMS_ATTEST bytes (the signed message) and the signature.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn nv_certify(
        &mut self,
        sign: ESYS_TR,
        auth: ESYS_TR,
        nv: ESYS_TR,
        index: u32,
        qualifying_data: &[u8],
        size: u16,
        offset: u16,
    ) -> Result<(Vec<u8>, tss_esapi::structures::Signature)> {
        let mut data = TPM2B_DATA::default();
        if qualifying_data.len() > data.buffer.len() {
            return Err(TpmError::Invalid(format!(
                "qualifying data (nonce) of {} bytes is longer than {}",
                qualifying_data.len(),
                data.buffer.len()
            )));
        }
        data.size = qualifying_data.len() as u16;
        data.buffer[..qualifying_data.len()].copy_from_slice(qualifying_data);
        // TPM_ALG_NULL: sign with the key's own scheme (ECDSA/SHA-256).
        let scheme = TPMT_SIG_SCHEME {
            scheme: TPM2_ALG_NULL,
            ..Default::default()
        };
        let mut info = null_mut();
        let mut signature = null_mut();
        let rc = unsafe {
            Esys_NV_Certify(
                self.esys,
                sign,
                auth,
                nv,
                ESYS_TR_PASSWORD,
                ESYS_TR_PASSWORD,
                ESYS_TR_NONE,
                &data,
                &scheme,
                size,
                offset,
                &mut info,
                &mut signature,
            )
        };
        self.check("TPM2_NV_Certify", rc, Subject::Nv(index))?;
        // Safety: on success ESYS allocated both outputs; copy then free them.
        let attest = unsafe {
            let info_ref = &*info;
            let len = (info_ref.size as usize).min(info_ref.attestationData.len());
            let bytes = info_ref.attestationData[..len].to_vec();
            Esys_Free(info.cast());
            bytes
        };
        let sig = unsafe {
            let value = *signature;
            Esys_Free(signature.cast());
            value
        };
        let sig =
            tss_esapi::structures::Signature::try_from(sig).map_err(|e| TpmError::Wrapper {
                command: "TPM2_NV_Certify",
                detail: format!("cannot read the signature: {e}"),
            })?;
        Ok((attest, sig))
    }

    /// TPM2_DictionaryAttackLockReset(TPM_RH_LOCKOUT).
    pub(crate) fn dictionary_attack_lock_reset(&mut self) -> Result<()> {
        let rc = unsafe {
            Esys_DictionaryAttackLockReset(
                self.esys,
                ESYS_TR_RH_LOCKOUT,
                ESYS_TR_PASSWORD,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
            )
        };
        self.check("TPM2_DictionaryAttackLockReset", rc, Subject::None)
    }

    /// TPM2_DictionaryAttackParameters(TPM_RH_LOCKOUT, maxTries, recoveryTime, lockoutRecovery).
    pub(crate) fn dictionary_attack_parameters(
        &mut self,
        max_tries: u32,
        recovery_time: u32,
        lockout_recovery: u32,
    ) -> Result<()> {
        let rc = unsafe {
            Esys_DictionaryAttackParameters(
                self.esys,
                ESYS_TR_RH_LOCKOUT,
                ESYS_TR_PASSWORD,
                ESYS_TR_NONE,
                ESYS_TR_NONE,
                max_tries,
                recovery_time,
                lockout_recovery,
            )
        };
        self.check("TPM2_DictionaryAttackParameters", rc, Subject::None)
    }
}

impl Drop for RawEsys {
    fn drop(&mut self) {
        // Safety: the pointers were produced by the matching initialisers and are
        // finalized exactly once; TR_Close only frees ESYS-side metadata.
        unsafe {
            for mut tr in self.opened.drain(..) {
                let _ = Esys_TR_Close(self.esys, &mut tr);
            }
            Esys_Finalize(&mut self.esys);
            Tss2_TctiLdr_Finalize(&mut self.tcti);
        }
    }
}
