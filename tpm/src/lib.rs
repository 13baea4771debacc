//! imgseal's TPM 2.0 device layer, on tss-esapi 7.7.
//!
//! Small safe types over one TPM: choosing it ([`Tcti`]), running swtpm
//! ([`SwtpmInstance`], [`ensure_running`]), NV indices and counters with write
//! locks ([`Tpm::nv_define_space`], [`Tpm::nv_write_atomic`], [`Tpm::nv_write_lock`], …),
//! the documented anchor layout ([`AnchorLayout`]), an attestation key and
//! TPM2_NV_Certify ([`Tpm::ak_create_or_load`], [`Tpm::nv_certify`]), and the
//! EK with credential activation ([`Tpm::activate_credential`]). It stores and
//! certifies bytes; it knows nothing of images, X.509 or Glance.
//!
//! The commands tss-esapi 7.7 lacks (NV_WriteLock, NV_Certify, the
//! dictionary-attack commands) go through raw ESYS on a second connection
//! (`esys.rs`).

mod attest;
mod context;
mod ek;
pub mod error;
mod esys;
mod layout;
mod nv;
pub mod swtpm;
pub mod tcti;

pub use attest::{
    AK_HANDLE, AttestationKey, EcdsaSignature, MAX_NONCE, NvAttestation, NvCertification,
    NvCertified, TPM_GENERATED_VALUE, ak_template, endorsement_primary_qualified_name, p256_spki,
    verify_nv_certification,
};
pub use context::{DaStatus, Tpm, TpmInfo};
pub use ek::{
    Credential, CredentialKey, CredentialKeyKind, EccCurveId, EkKind, EndorsementKey, NameHash,
    credential_key_from_public_area, ek_spki_from_public_area,
};
pub use error::{ResponseCode, Result, TpmError};
pub use layout::{AnchorLayout, COUNTER_INDEX, DATA_INDEX, RECORD_INDEX, RECORD_SIZE};
pub use nv::{
    Ensured, IndexCreator, NvAccess, NvAttributes, NvInfo, NvKind, NvSpec, SEALED_ATTRIBUTES,
};
pub use swtpm::{SwtpmInstance, daemon_tcti, ensure_running, has_state, manufacture, stop_daemon};
pub use tcti::{Tcti, TctiOrigin};
