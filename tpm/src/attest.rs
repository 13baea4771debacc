//! The attestation key (AK) and TPM2_NV_Certify.
//!
//! The AK is a restricted ECDSA P-256 / SHA-256 signing key, a *primary* key of
//! the endorsement hierarchy made from a fixed template, so the same TPM always
//! derives the same key; it is made persistent at [`AK_HANDLE`]. Restricted
//! means the TPM signs only what it generated itself (attestation structures
//! starting with `TPM_GENERATED_VALUE`), never an outside digest posing as one.
//!
//! `TPM2_NV_Certify` signs a `TPMS_ATTEST` holding the index's name (which
//! covers its attributes, including WRITELOCKED), the certified bytes (at most
//! `TPM2_PT_NV_BUFFER_MAX` per call) or their SHA-256 digest (size 0, offset 0:
//! the whole index), and the caller's nonce. The signature is over the raw
//! `TPMS_ATTEST` bytes (ECDSA with SHA-256), so any verifier checks it with
//! `openssl dgst -sha256 -verify ak.pem -signature sig.der attest.bin`.

use p256::ecdsa::signature::Verifier;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::structures::{
    EccParameter, EccPoint, EccScheme, HashScheme, KeyDerivationFunctionScheme, Public,
    PublicBuilder, PublicEccParametersBuilder, Signature, SymmetricDefinitionObject,
};
use tss_esapi::traits::Marshall;

use crate::context::Tpm;
use crate::error::{Result, Subject, TpmError};
use crate::nv::NvAccess;

/// Where imgseal keeps its AK: an otherwise unassigned handle of the
/// owner-authorized persistent range (TCG's EK handles are 0x81010001/2 and
/// 0x81010016…; swtpm_setup uses 0x81010001 and 0x81010016).
pub const AK_HANDLE: u32 = 0x8101_8000;

/// Entropy input of the AK template's `unique` field: keeps imgseal's AK
/// distinct from other P-256 primaries of the endorsement hierarchy.
const AK_UNIQUE: &[u8] = b"imgseal attestation key v1";

/// `TPM_GENERATED_VALUE`: every TPMS_ATTEST starts with it.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
pub(crate) const TPM_ST_ATTEST_NV: u16 = 0x8014;
pub(crate) const TPM_ST_ATTEST_NV_DIGEST: u16 = 0x801C;

/// Qualifying data (nonce) limit: `TPM2B_DATA` holds 64 bytes.
pub const MAX_NONCE: usize = 64;

/// The AK as loaded from the TPM.
#[derive(Debug, Clone)]
pub struct AttestationKey {
    handle: u32,
    name: Vec<u8>,
    public: Public,
    spki_der: Vec<u8>,
}

impl AttestationKey {
    /// The persistent handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The TPM name (`TPM_ALG_SHA256 || SHA-256(TPMT_PUBLIC)`): what
    /// MakeCredential binds and what TPMS_ATTEST calls `qualifiedSigner`.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The qualified name the TPM puts in `TPMS_ATTEST.qualifiedSigner`:
    /// `TPM_ALG_SHA256 || SHA-256(QN(TPM_RH_ENDORSEMENT) || name)`, the
    /// endorsement hierarchy's QN being its handle. A match shows the signer
    /// is a primary key of the endorsement hierarchy.
    pub fn qualified_name(&self) -> Vec<u8> {
        endorsement_primary_qualified_name(&self.name)
    }

    /// SubjectPublicKeyInfo DER (id-ecPublicKey, prime256v1).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The marshalled TPMT_PUBLIC.
    pub fn public_bytes(&self) -> Result<Vec<u8>> {
        self.public.marshall().map_err(|e| TpmError::Wrapper {
            command: "marshal TPMT_PUBLIC",
            detail: e.to_string(),
        })
    }

    /// The tss-esapi view of the public area.
    pub fn public(&self) -> &Public {
        &self.public
    }
}

/// The qualified name of a primary object of the endorsement hierarchy.
pub fn endorsement_primary_qualified_name(name: &[u8]) -> Vec<u8> {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(0x4000_000Bu32.to_be_bytes()); // TPM_RH_ENDORSEMENT
    h.update(name);
    let mut qn = vec![0x00, 0x0B];
    qn.extend_from_slice(&h.finalize());
    qn
}

/// An ECDSA signature as the TPM returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdsaSignature {
    pub r: [u8; 32],
    pub s: [u8; 32],
}

impl EcdsaSignature {
    /// DER `SEQUENCE { INTEGER r, INTEGER s }`, as OpenSSL and X.509 expect.
    pub fn to_der(&self) -> Result<Vec<u8>> {
        let sig = p256::ecdsa::Signature::from_scalars(self.r, self.s)
            .map_err(|e| TpmError::Attestation(format!("signature scalars out of range: {e}")))?;
        Ok(sig.to_der().as_bytes().to_vec())
    }

    /// `r || s`, 64 bytes.
    pub fn to_raw(&self) -> Vec<u8> {
        [self.r.as_slice(), self.s.as_slice()].concat()
    }
}

/// What TPM2_NV_Certify returned.
#[derive(Debug, Clone)]
pub struct NvCertification {
    /// The TPMS_ATTEST bytes: the signed message.
    pub attest: Vec<u8>,
    pub signature: EcdsaSignature,
}

impl NvCertification {
    pub fn signature_der(&self) -> Result<Vec<u8>> {
        self.signature.to_der()
    }

    /// Parses the attestation without checking the signature.
    pub fn parse(&self) -> Result<NvAttestation> {
        NvAttestation::parse(&self.attest)
    }

    /// Checks the signature with `ak_spki_der` and the nonce, then parses.
    pub fn verify(&self, ak_spki_der: &[u8], expected_nonce: &[u8]) -> Result<NvAttestation> {
        verify_nv_certification(
            ak_spki_der,
            &self.attest,
            &self.signature_der()?,
            expected_nonce,
        )
    }
}

/// What was certified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvCertified {
    /// `TPM_ST_ATTEST_NV`: `data` read at `offset`.
    Contents { offset: u16, data: Vec<u8> },
    /// `TPM_ST_ATTEST_NV_DIGEST`: the SHA-256 digest of the whole index.
    Digest(Vec<u8>),
}

/// A parsed TPMS_ATTEST of an NV certification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvAttestation {
    /// Qualified name of the signing key (see [`AttestationKey::qualified_name`]).
    pub qualified_signer: Vec<u8>,
    /// The qualifying data: the verifier's nonce.
    pub extra_data: Vec<u8>,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
    pub firmware_version: u64,
    /// Name of the certified index: `TPM_ALG_SHA256 || SHA-256(TPMS_NV_PUBLIC)`.
    pub index_name: Vec<u8>,
    pub certified: NvCertified,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| {
                TpmError::Attestation(format!("TPMS_ATTEST truncated at byte {}", self.at))
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn tpm2b(&mut self) -> Result<Vec<u8>> {
        let n = self.u16()? as usize;
        Ok(self.take(n)?.to_vec())
    }
}

impl NvAttestation {
    /// Parses TPMS_ATTEST strictly: the magic, an NV or NV-digest attestation,
    /// and nothing after it.
    pub fn parse(bytes: &[u8]) -> Result<NvAttestation> {
        let mut r = Reader { bytes, at: 0 };
        let magic = r.u32()?;
        if magic != TPM_GENERATED_VALUE {
            return Err(TpmError::Attestation(format!(
                "magic {magic:#010x} is not TPM_GENERATED_VALUE: not made by a TPM"
            )));
        }
        let kind = r.u16()?;
        if kind != TPM_ST_ATTEST_NV && kind != TPM_ST_ATTEST_NV_DIGEST {
            return Err(TpmError::Attestation(format!(
                "type {kind:#06x} is not an NV certification"
            )));
        }
        let qualified_signer = r.tpm2b()?;
        let extra_data = r.tpm2b()?;
        let clock = r.u64()?;
        let reset_count = r.u32()?;
        let restart_count = r.u32()?;
        let safe = r.u8()? != 0;
        let firmware_version = r.u64()?;
        let index_name = r.tpm2b()?;
        let certified = if kind == TPM_ST_ATTEST_NV {
            let offset = r.u16()?;
            NvCertified::Contents {
                offset,
                data: r.tpm2b()?,
            }
        } else {
            NvCertified::Digest(r.tpm2b()?)
        };
        if r.at != bytes.len() {
            return Err(TpmError::Attestation(format!(
                "{} bytes after the TPMS_ATTEST",
                bytes.len() - r.at
            )));
        }
        Ok(NvAttestation {
            qualified_signer,
            extra_data,
            clock,
            reset_count,
            restart_count,
            safe,
            firmware_version,
            index_name,
            certified,
        })
    }
}

/// The verifier's check: the DER ECDSA signature over `attest` verifies with
/// the AK (SPKI DER), the attestation is an NV certification, and it carries
/// `expected_nonce`. The caller still compares `index_name` and the contents
/// with what it expects.
pub fn verify_nv_certification(
    ak_spki_der: &[u8],
    attest: &[u8],
    signature_der: &[u8],
    expected_nonce: &[u8],
) -> Result<NvAttestation> {
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(ak_spki_der)
        .map_err(|e| TpmError::Attestation(format!("AK public key is not a P-256 SPKI: {e}")))?;
    let sig = p256::ecdsa::Signature::from_der(signature_der)
        .map_err(|e| TpmError::Attestation(format!("signature is not DER ECDSA: {e}")))?;
    key.verify(attest, &sig)
        .map_err(|_| TpmError::Attestation("the signature does not verify with this AK".into()))?;
    let parsed = NvAttestation::parse(attest)?;
    if parsed.extra_data != expected_nonce {
        return Err(TpmError::Attestation(
            "the attestation carries another nonce (replayed or for another request)".into(),
        ));
    }
    Ok(parsed)
}

/// The AK template: restricted ECDSA P-256/SHA-256 signing key, fixedTPM,
/// fixedParent, sensitiveDataOrigin, userWithAuth (empty auth), noDA.
pub fn ak_template() -> Result<Public> {
    let build = || -> tss_esapi::Result<Public> {
        let attributes = ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_sensitive_data_origin(true)
            .with_user_with_auth(true)
            .with_no_da(true)
            .with_restricted(true)
            .with_sign_encrypt(true)
            .with_decrypt(false)
            .build()?;
        PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::Ecc)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_ecc_parameters(
                PublicEccParametersBuilder::new()
                    .with_symmetric(SymmetricDefinitionObject::Null)
                    .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
                    .with_curve(EccCurve::NistP256)
                    .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
                    .with_is_signing_key(true)
                    .with_is_decryption_key(false)
                    .with_restricted(true)
                    .build()?,
            )
            .with_ecc_unique_identifier(EccPoint::new(
                EccParameter::try_from(AK_UNIQUE.to_vec())?,
                EccParameter::default(),
            ))
            .build()
    };
    build().map_err(|e| TpmError::Wrapper {
        command: "AK template",
        detail: e.to_string(),
    })
}

/// Checks that a public area is an AK made from [`ak_template`]; returns the SPKI DER.
fn check_ak_public(handle: u32, public: &Public) -> Result<Vec<u8>> {
    let unexpected = |detail: String| TpmError::UnexpectedKey { handle, detail };
    let Public::Ecc {
        object_attributes,
        name_hashing_algorithm,
        parameters,
        unique,
        ..
    } = public
    else {
        return Err(unexpected("a key that is not ECC".into()));
    };
    let a = object_attributes;
    if !(a.fixed_tpm() && a.fixed_parent() && a.restricted() && a.sign_encrypt() && !a.decrypt())
        || *name_hashing_algorithm != HashingAlgorithm::Sha256
    {
        return Err(unexpected(
            "a key that is not a restricted, fixedTPM signing key with a SHA-256 name".into(),
        ));
    }
    if parameters.ecc_curve() != EccCurve::NistP256
        || parameters.ecc_scheme() != EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256))
    {
        return Err(unexpected(
            "an ECC key that is not ECDSA P-256 / SHA-256".into(),
        ));
    }
    p256_spki(unique.x().value(), unique.y().value()).map_err(|e| unexpected(e.to_string()))
}

/// SPKI DER of the P-256 point (x, y); the point is checked to be on the curve.
pub fn p256_spki(x: &[u8], y: &[u8]) -> Result<Vec<u8>> {
    if x.len() > 32 || y.len() > 32 {
        return Err(TpmError::Invalid(
            "P-256 coordinate longer than 32 bytes".into(),
        ));
    }
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[33 - x.len()..33].copy_from_slice(x);
    sec1[65 - y.len()..].copy_from_slice(y);
    let key = p256::PublicKey::from_sec1_bytes(&sec1)
        .map_err(|_| TpmError::Invalid("the TPM's P-256 point is not on the curve".into()))?;
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| TpmError::Invalid(format!("cannot encode the SPKI: {e}")))
}

fn pad32(v: &[u8]) -> Result<[u8; 32]> {
    if v.len() > 32 {
        return Err(TpmError::Attestation(format!(
            "ECDSA scalar of {} bytes",
            v.len()
        )));
    }
    let mut out = [0u8; 32];
    out[32 - v.len()..].copy_from_slice(v);
    Ok(out)
}

impl Tpm {
    /// Loads the AK at `handle`, creating and persisting it when the handle is
    /// free (needs the endorsement and owner authorizations). A different key
    /// at the handle is `UnexpectedKey`, never silently used.
    pub fn ak_create_or_load(&mut self, handle: u32) -> Result<AttestationKey> {
        match self.ak_load(handle) {
            Ok(ak) => Ok(ak),
            Err(TpmError::Tpm { code, .. }) if code.base() == crate::error::TPM_RC_HANDLE => {
                self.ak_create(handle)
            }
            Err(e) => Err(e),
        }
    }

    /// Loads the AK persisted at `handle`.
    pub fn ak_load(&mut self, handle: u32) -> Result<AttestationKey> {
        let tpm_handle = persistent(handle)?;
        let object = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(tpm_handle))
            .map_err(|e| self.err("TPM2_ReadPublic", e, Subject::None))?;
        let key = KeyHandle::from(object);
        let result = self
            .ctx
            .execute_without_session(|c| c.read_public(key))
            .map_err(|e| self.err("TPM2_ReadPublic", e, Subject::None));
        let mut obj = object;
        let _ = self.ctx.tr_close(&mut obj);
        let (public, name, _) = result?;
        let spki_der = check_ak_public(handle, &public)?;
        Ok(AttestationKey {
            handle,
            name: name.value().to_vec(),
            public,
            spki_der,
        })
    }

    /// TPM2_CreatePrimary(endorsement, [`ak_template`]) then TPM2_EvictControl to `handle`.
    pub fn ak_create(&mut self, handle: u32) -> Result<AttestationKey> {
        let template = ak_template()?;
        let persistent_handle = PersistentTpmHandle::new(handle).map_err(|_| {
            TpmError::Invalid(format!(
                "{handle:#010x} is not a persistent handle (0x81xxxxxx)"
            ))
        })?;
        self.with_hmac_session(|tpm, s| {
            let created = tpm
                .ctx
                .execute_with_session(Some(s), |c| {
                    c.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
                })
                .map_err(|e| tpm.err("TPM2_CreatePrimary", e, Subject::None))?;
            let transient: ObjectHandle = created.key_handle.into();
            let evicted = tpm
                .ctx
                .execute_with_session(Some(s), |c| {
                    c.evict_control(
                        Provision::Owner,
                        transient,
                        Persistent::Persistent(persistent_handle),
                    )
                })
                .map_err(|e| tpm.err("TPM2_EvictControl", e, Subject::None));
            let _ = tpm.ctx.flush_context(transient);
            let mut persisted = evicted?;
            let _ = tpm.ctx.tr_close(&mut persisted);
            Ok(())
        })?;
        self.ak_load(handle)
    }

    /// Removes the persistent AK (TPM2_EvictControl with owner authorization).
    pub fn ak_evict(&mut self, handle: u32) -> Result<()> {
        let tpm_handle = persistent(handle)?;
        let persistent_handle = PersistentTpmHandle::new(handle)
            .map_err(|_| TpmError::Invalid(format!("{handle:#010x} is not a persistent handle")))?;
        let object = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(tpm_handle))
            .map_err(|e| self.err("TPM2_ReadPublic", e, Subject::None))?;
        let result = self.with_hmac_session(|tpm, s| {
            tpm.ctx
                .execute_with_session(Some(s), |c| {
                    c.evict_control(
                        Provision::Owner,
                        object,
                        Persistent::Persistent(persistent_handle),
                    )
                })
                .map(|_| ())
                .map_err(|e| tpm.err("TPM2_EvictControl", e, Subject::None))
        });
        if result.is_err() {
            let mut o = object;
            let _ = self.ctx.tr_close(&mut o);
        }
        result
    }

    /// TPM2_NV_Certify of `size` bytes at `offset` (at most
    /// `TPM2_PT_NV_BUFFER_MAX`), or of the whole index's digest when both are 0.
    /// `access` authorizes reading the index; the nonce is at most 64 bytes.
    pub fn nv_certify(
        &mut self,
        ak: &AttestationKey,
        index: u32,
        access: &NvAccess,
        nonce: &[u8],
        offset: u16,
        size: u16,
    ) -> Result<NvCertification> {
        if nonce.len() > MAX_NONCE {
            return Err(TpmError::Invalid(format!(
                "the nonce is {} bytes; NV_Certify takes at most {MAX_NONCE}",
                nonce.len()
            )));
        }
        let max = self.nv_buffer_max()?;
        if size as usize > max {
            return Err(TpmError::Invalid(format!(
                "NV_Certify covers at most {max} bytes per call (TPM2_PT_NV_BUFFER_MAX); asked {size}"
            )));
        }
        let mut raw = self.raw()?;
        let nv = raw.tr_from_tpm_public(index, Subject::Nv(index))?;
        let sign = raw.tr_from_tpm_public(ak.handle, Subject::None)?;
        raw.set_auth(sign, &[])?;
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
        let (attest, signature) = raw.nv_certify(sign, auth, nv, index, nonce, size, offset)?;
        let Signature::EcDsa(ecc) = signature else {
            return Err(TpmError::Attestation(
                "the AK did not return an ECDSA signature".into(),
            ));
        };
        Ok(NvCertification {
            attest,
            signature: EcdsaSignature {
                r: pad32(ecc.signature_r().value())?,
                s: pad32(ecc.signature_s().value())?,
            },
        })
    }

    /// Certifies the whole index: its contents when they fit in one
    /// NV_Certify, else the SHA-256 digest of all of it.
    pub fn nv_certify_all(
        &mut self,
        ak: &AttestationKey,
        index: u32,
        access: &NvAccess,
        nonce: &[u8],
    ) -> Result<NvCertification> {
        let size = self.nv_read_public(index)?.public.size;
        if (size as usize) <= self.nv_buffer_max()? {
            self.nv_certify(ak, index, access, nonce, 0, size)
        } else {
            self.nv_certify(ak, index, access, nonce, 0, 0)
        }
    }
}

fn persistent(handle: u32) -> Result<TpmHandle> {
    PersistentTpmHandle::new(handle)
        .map(TpmHandle::Persistent)
        .map_err(|_| {
            TpmError::Invalid(format!(
                "{handle:#010x} is not a persistent handle (0x81xxxxxx)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tss_esapi::traits::UnMarshall;

    /// A TPMS_ATTEST for NV contents, built by hand.
    fn sample(kind: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        let signer = [0x00, 0x0b]
            .iter()
            .chain([7u8; 32].iter())
            .copied()
            .collect::<Vec<_>>();
        b.extend_from_slice(&(signer.len() as u16).to_be_bytes());
        b.extend_from_slice(&signer);
        b.extend_from_slice(&5u16.to_be_bytes());
        b.extend_from_slice(b"nonce");
        b.extend_from_slice(&1234u64.to_be_bytes());
        b.extend_from_slice(&2u32.to_be_bytes());
        b.extend_from_slice(&3u32.to_be_bytes());
        b.push(1);
        b.extend_from_slice(&0x2019_1023u64.to_be_bytes());
        let name = [0x00, 0x0b]
            .iter()
            .chain([9u8; 32].iter())
            .copied()
            .collect::<Vec<_>>();
        b.extend_from_slice(&(name.len() as u16).to_be_bytes());
        b.extend_from_slice(&name);
        if kind == TPM_ST_ATTEST_NV {
            b.extend_from_slice(&16u16.to_be_bytes());
        }
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(b"data");
        b
    }

    #[test]
    fn parses_nv_and_nv_digest_attestations() {
        let a = NvAttestation::parse(&sample(TPM_ST_ATTEST_NV)).unwrap();
        assert_eq!(a.extra_data, b"nonce");
        assert_eq!(a.clock, 1234);
        assert_eq!((a.reset_count, a.restart_count, a.safe), (2, 3, true));
        assert_eq!(
            a.certified,
            NvCertified::Contents {
                offset: 16,
                data: b"data".to_vec()
            }
        );
        // tss-esapi reads the same structure the same way.
        let theirs = tss_esapi::structures::Attest::unmarshall(&sample(TPM_ST_ATTEST_NV)).unwrap();
        assert_eq!(theirs.extra_data().value(), b"nonce");
        assert_eq!(
            theirs.qualified_signer().value(),
            a.qualified_signer.as_slice()
        );
        let d = NvAttestation::parse(&sample(TPM_ST_ATTEST_NV_DIGEST)).unwrap();
        assert_eq!(d.certified, NvCertified::Digest(b"data".to_vec()));
    }

    #[test]
    fn rejects_what_a_tpm_did_not_make() {
        let mut b = sample(TPM_ST_ATTEST_NV);
        b[0] ^= 1;
        assert!(NvAttestation::parse(&b).is_err());
        let mut b = sample(TPM_ST_ATTEST_NV);
        b.push(0);
        assert!(NvAttestation::parse(&b).is_err());
        let b = sample(TPM_ST_ATTEST_NV);
        assert!(NvAttestation::parse(&b[..b.len() - 1]).is_err());
        let mut b = sample(TPM_ST_ATTEST_NV);
        b[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
        assert!(NvAttestation::parse(&b).is_err());
    }

    #[test]
    fn signatures_encode_as_der_with_short_scalars() {
        let sig = EcdsaSignature {
            r: pad32(&[1, 2, 3]).unwrap(),
            s: pad32(&[0x80; 32]).unwrap(),
        };
        let der = sig.to_der().unwrap();
        // SEQUENCE { INTEGER 010203, INTEGER 00 80.. (33 bytes) }
        assert_eq!(&der[..7], &[0x30, 0x28, 0x02, 0x03, 1, 2, 3]);
        assert_eq!(&der[7..10], &[0x02, 0x21, 0x00]);
        assert_eq!(sig.to_raw().len(), 64);
        ak_template().unwrap();
    }
}
