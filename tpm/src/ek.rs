//! The endorsement key (EK), its certificate, and credential activation: how
//! a verifier learns that an AK lives in the same TPM as a certified EK.
//!
//! The verifier runs MakeCredential with the EK's public key and the AK's
//! name (here on any TPM via [`Tpm::make_credential`], or in software with
//! `tpm2_makecredential -T none`); only the TPM holding both keys can run
//! ActivateCredential and return the secret, and the TPM checks the AK's name
//! while doing so.
//!
//! EK certificates are read from the TCG NV indices (`0x01c00002` RSA 2048,
//! `0x01c0000a` ECC P-256) as raw bytes; swtpm_setup `--create-ek-cert` writes
//! the RSA one. This crate does not parse X.509.

use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ek};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, EncryptedSecret, IdObject, Name, Nonce, Public, SymmetricDefinition,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use zeroize::Zeroizing;

use crate::attest::AttestationKey;
use crate::context::Tpm;
use crate::error::{Result, Subject, TpmError};
use crate::nv::NvAccess;

/// Which EK, in the TCG EK Credential Profile's low range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EkKind {
    Rsa2048,
    EccP256,
}

impl EkKind {
    /// The TCG NV index of the EK certificate.
    pub fn certificate_index(self) -> u32 {
        match self {
            EkKind::Rsa2048 => 0x01c0_0002,
            EkKind::EccP256 => 0x01c0_000a,
        }
    }

    /// The TCG persistent handle for this EK (swtpm_setup persists the RSA one there).
    pub fn persistent_handle(self) -> u32 {
        match self {
            EkKind::Rsa2048 => 0x8101_0001,
            EkKind::EccP256 => 0x8101_0002,
        }
    }

    fn selection(self) -> AsymmetricAlgorithmSelection {
        match self {
            EkKind::Rsa2048 => AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            EkKind::EccP256 => AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
        }
    }
}

/// The public part of an EK made from the TCG default template.
#[derive(Debug, Clone)]
pub struct EndorsementKey {
    pub kind: EkKind,
    public: Public,
    name: Vec<u8>,
}

impl EndorsementKey {
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The marshalled TPMT_PUBLIC.
    pub fn public_bytes(&self) -> Result<Vec<u8>> {
        self.public.marshall().map_err(|e| TpmError::Wrapper {
            command: "marshal TPMT_PUBLIC",
            detail: e.to_string(),
        })
    }

    /// The marshalled TPM2B_PUBLIC (tpm2-tools' `-u ek.pub` format).
    pub fn tpm2b_public_bytes(&self) -> Result<Vec<u8>> {
        let inner = self.public_bytes()?;
        let mut out = (inner.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&inner);
        Ok(out)
    }

    /// SubjectPublicKeyInfo DER, to compare with the EK certificate's key.
    pub fn spki_der(&self) -> Result<Vec<u8>> {
        let spki =
            picky_asn1_x509::SubjectPublicKeyInfo::try_from(self.public.clone()).map_err(|e| {
                TpmError::Wrapper {
                    command: "EK SubjectPublicKeyInfo",
                    detail: e.to_string(),
                }
            })?;
        picky_asn1_der::to_vec(&spki)
            .map_err(|e| TpmError::Invalid(format!("cannot encode the EK's SPKI: {e}")))
    }
}

/// The SubjectPublicKeyInfo DER of a marshalled EK `TPMT_PUBLIC`, as a
/// verifier without the TPM needs it to compare with the EK certificate.
pub fn ek_spki_from_public_area(bytes: &[u8]) -> Result<Vec<u8>> {
    let public = Public::unmarshall(bytes)
        .map_err(|e| TpmError::Invalid(format!("the EK public area is not a TPMT_PUBLIC: {e}")))?;
    let spki = picky_asn1_x509::SubjectPublicKeyInfo::try_from(public)
        .map_err(|e| TpmError::Invalid(format!("the EK public area holds no usable key: {e}")))?;
    picky_asn1_der::to_vec(&spki)
        .map_err(|e| TpmError::Invalid(format!("cannot encode the EK's SPKI: {e}")))
}

/// The hash of an EK's name algorithm, which MakeCredential's KDFs, HMAC
/// and OAEP use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameHash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

/// The EK's asymmetric key, as its public area holds it (unsigned
/// big-endian, coordinates as long as the TPM gave them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKeyKind {
    Rsa {
        modulus: Vec<u8>,
        exponent: u32,
    },
    Ecc {
        curve: EccCurveId,
        x: Vec<u8>,
        y: Vec<u8>,
    },
}

/// The NIST curves an EK may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EccCurveId {
    P256,
    P384,
    P521,
}

/// What a verifier needs of an EK public area to make a credential without
/// a TPM (TPM 2.0 Part 1 §24): the name algorithm, the AES key size of its
/// symmetric definition (CFB, as ActivateCredential requires), the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialKey {
    pub name_hash: NameHash,
    pub aes_key_bits: u16,
    pub key: CredentialKeyKind,
}

/// Reads a marshalled EK `TPMT_PUBLIC` for a software MakeCredential:
/// refused unless it is a restricted decryption key with an AES-CFB
/// symmetric definition (the storage-key shape ActivateCredential needs).
pub fn credential_key_from_public_area(bytes: &[u8]) -> Result<CredentialKey> {
    use tss_esapi::interface_types::algorithm::SymmetricMode;
    use tss_esapi::interface_types::key_bits::AesKeyBits;
    use tss_esapi::structures::SymmetricDefinitionObject;
    let bad = |why: String| TpmError::Invalid(format!("the EK public area {why}"));
    let public =
        Public::unmarshall(bytes).map_err(|e| bad(format!("is not a TPMT_PUBLIC: {e}")))?;
    let (attributes, name_alg, symmetric, key) = match &public {
        Public::Rsa {
            object_attributes,
            name_hashing_algorithm,
            parameters,
            unique,
            ..
        } => (
            *object_attributes,
            *name_hashing_algorithm,
            parameters.symmetric_definition_object(),
            CredentialKeyKind::Rsa {
                modulus: unique.value().to_vec(),
                exponent: match parameters.exponent().value() {
                    0 => 65537,
                    e => e,
                },
            },
        ),
        Public::Ecc {
            object_attributes,
            name_hashing_algorithm,
            parameters,
            unique,
            ..
        } => {
            let curve = match parameters.ecc_curve() {
                EccCurve::NistP256 => EccCurveId::P256,
                EccCurve::NistP384 => EccCurveId::P384,
                EccCurve::NistP521 => EccCurveId::P521,
                other => return Err(bad(format!("is on {other:?}, not a NIST P curve"))),
            };
            (
                *object_attributes,
                *name_hashing_algorithm,
                parameters.symmetric_definition_object(),
                CredentialKeyKind::Ecc {
                    curve,
                    x: unique.x().value().to_vec(),
                    y: unique.y().value().to_vec(),
                },
            )
        }
        _ => return Err(bad("holds neither an RSA nor an ECC key".into())),
    };
    if !(attributes.restricted() && attributes.decrypt()) {
        return Err(bad(
            "is not a restricted decryption key, which ActivateCredential needs".into(),
        ));
    }
    let name_hash = match name_alg {
        HashingAlgorithm::Sha1 => NameHash::Sha1,
        HashingAlgorithm::Sha256 => NameHash::Sha256,
        HashingAlgorithm::Sha384 => NameHash::Sha384,
        HashingAlgorithm::Sha512 => NameHash::Sha512,
        other => return Err(bad(format!("has name algorithm {other:?}, not SHA-1/2"))),
    };
    let aes_key_bits = match symmetric {
        SymmetricDefinitionObject::Aes {
            key_bits,
            mode: SymmetricMode::Cfb,
        } => match key_bits {
            AesKeyBits::Aes128 => 128,
            AesKeyBits::Aes192 => 192,
            AesKeyBits::Aes256 => 256,
        },
        other => {
            return Err(bad(format!(
                "has symmetric definition {other:?}, not AES-CFB"
            )));
        }
    };
    Ok(CredentialKey {
        name_hash,
        aes_key_bits,
        key,
    })
}

/// MakeCredential's output: `TPM2B_ID_OBJECT` and `TPM2B_ENCRYPTED_SECRET` contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id_object: Vec<u8>,
    pub encrypted_secret: Vec<u8>,
}

const TPM2_TOOLS_CREDENTIAL_MAGIC: u32 = 0xBADC_C0DE;

impl Credential {
    /// Reads `tpm2_makecredential -o` output: magic 0xBADCC0DE, version 1,
    /// TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
    pub fn from_tpm2_tools(bytes: &[u8]) -> Result<Credential> {
        let bad = |why: &str| TpmError::Invalid(format!("tpm2_makecredential output: {why}"));
        if bytes.len() < 12 {
            return Err(bad("too short"));
        }
        if u32::from_be_bytes(bytes[0..4].try_into().unwrap()) != TPM2_TOOLS_CREDENTIAL_MAGIC {
            return Err(bad("wrong magic"));
        }
        if u32::from_be_bytes(bytes[4..8].try_into().unwrap()) != 1 {
            return Err(bad("unknown version"));
        }
        let mut at = 8;
        let mut next = || -> Result<Vec<u8>> {
            let len = bytes
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
                .ok_or_else(|| bad("truncated"))?;
            let value = bytes
                .get(at + 2..at + 2 + len)
                .ok_or_else(|| bad("truncated"))?;
            at += 2 + len;
            Ok(value.to_vec())
        };
        let id_object = next()?;
        let encrypted_secret = next()?;
        Ok(Credential {
            id_object,
            encrypted_secret,
        })
    }

    /// The same format, for `tpm2_activatecredential -i`.
    pub fn to_tpm2_tools(&self) -> Vec<u8> {
        let mut out = TPM2_TOOLS_CREDENTIAL_MAGIC.to_be_bytes().to_vec();
        out.extend_from_slice(&1u32.to_be_bytes());
        for part in [&self.id_object, &self.encrypted_secret] {
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }
}

impl Tpm {
    /// The EK certificate's bytes from its TCG NV index, or `None` when the
    /// TPM has none. Read with the index's empty authorization (AUTHREAD),
    /// else the owner's.
    pub fn ek_certificate(&mut self, kind: EkKind) -> Result<Option<Vec<u8>>> {
        let index = kind.certificate_index();
        if !self.nv_exists(index)? {
            return Ok(None);
        }
        match self.nv_read_all(index, &NvAccess::public()) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(TpmError::WrongAttributes { .. }) | Err(TpmError::AuthFailed { .. }) => {
                self.nv_read_all(index, &NvAccess::Owner).map(Some)
            }
            Err(e) => Err(e),
        }
    }

    /// The EK from the TCG default template (TPM2_CreatePrimary in the
    /// endorsement hierarchy; deterministic, so it matches the EK certificate).
    pub fn ek_public(&mut self, kind: EkKind) -> Result<EndorsementKey> {
        let handle = self.ek_primary(kind)?;
        let result = self
            .ctx
            .execute_without_session(|c| c.read_public(handle))
            .map_err(|e| self.err("TPM2_ReadPublic", e, Subject::None));
        let _ = self.ctx.flush_context(handle.into());
        let (public, name, _) = result?;
        Ok(EndorsementKey {
            kind,
            public,
            name: name.value().to_vec(),
        })
    }

    fn ek_primary(&mut self, kind: EkKind) -> Result<KeyHandle> {
        let template = ek::create_ek_public_from_default_template_2(kind.selection(), None)
            .map_err(|e| self.err("EK template", e, Subject::None))?;
        self.with_hmac_session(|tpm, s| {
            tpm.ctx
                .execute_with_session(Some(s), |c| {
                    c.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
                })
                .map(|r| r.key_handle)
                .map_err(|e| tpm.err("TPM2_CreatePrimary", e, Subject::None))
        })
    }

    /// TPM2_MakeCredential with an EK public area (TPMT_PUBLIC bytes) loaded
    /// into this TPM's null hierarchy: protects `secret` (at most 64 bytes) so
    /// that only the TPM holding that EK *and* an object named `ak_name` can
    /// recover it. Uses no secret of this TPM.
    pub fn make_credential(
        &mut self,
        ek_public: &[u8],
        ak_name: &[u8],
        secret: &[u8],
    ) -> Result<Credential> {
        let public =
            Public::unmarshall(ek_public).map_err(|e| self.err("TPMT_PUBLIC", e, Subject::None))?;
        let credential = Digest::try_from(secret.to_vec())
            .map_err(|e| self.err("TPM2_MakeCredential", e, Subject::None))?;
        let name = Name::try_from(ak_name.to_vec())
            .map_err(|e| self.err("TPM2_MakeCredential", e, Subject::None))?;
        let handle = self
            .ctx
            .execute_without_session(|c| c.load_external_public(public, Hierarchy::Null))
            .map_err(|e| self.err("TPM2_LoadExternal", e, Subject::None))?;
        let result = self
            .ctx
            .execute_without_session(|c| c.make_credential(handle, credential, name))
            .map_err(|e| self.err("TPM2_MakeCredential", e, Subject::None));
        let _ = self.ctx.flush_context(handle.into());
        let (id_object, encrypted_secret) = result?;
        Ok(Credential {
            id_object: id_object.value().to_vec(),
            encrypted_secret: encrypted_secret.value().to_vec(),
        })
    }

    /// TPM2_ActivateCredential with the AK and the EK of `kind`: returns the
    /// secret if, and only if, the credential was made for this TPM's EK and
    /// this AK's name. The EK's policy (PolicySecret(endorsement)) is satisfied
    /// with the endorsement authorization.
    pub fn activate_credential(
        &mut self,
        ak: &AttestationKey,
        kind: EkKind,
        credential: &Credential,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let id_object = IdObject::try_from(credential.id_object.clone())
            .map_err(|e| self.err("TPM2_ActivateCredential", e, Subject::None))?;
        let secret = EncryptedSecret::try_from(credential.encrypted_secret.clone())
            .map_err(|e| self.err("TPM2_ActivateCredential", e, Subject::None))?;
        let ek = self.ek_primary(kind)?;
        let result = self.activate_with(ak, ek, id_object, secret);
        let _ = self.ctx.flush_context(ek.into());
        result
    }

    fn activate_with(
        &mut self,
        ak: &AttestationKey,
        ek: KeyHandle,
        id_object: IdObject,
        secret: EncryptedSecret,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let ak_handle = PersistentTpmHandle::new(ak.handle())
            .map(TpmHandle::Persistent)
            .map_err(|_| {
                TpmError::Invalid(format!("{:#010x} is not a persistent handle", ak.handle()))
            })?;
        let ak_object = self
            .ctx
            .execute_without_session(|c| c.tr_from_tpm_public(ak_handle))
            .map_err(|e| self.err("TPM2_ReadPublic", e, Subject::None))?;
        let policy = self
            .ctx
            .start_auth_session(
                None,
                None,
                None,
                SessionType::Policy,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(|e| self.err("TPM2_StartAuthSession", e, Subject::None))
            .and_then(|s| {
                s.ok_or_else(|| TpmError::Wrapper {
                    command: "TPM2_StartAuthSession",
                    detail: "no session returned".into(),
                })
            });
        let policy = match policy {
            Ok(p) => p,
            Err(e) => {
                let mut o = ak_object;
                let _ = self.ctx.tr_close(&mut o);
                return Err(e);
            }
        };
        let result = (|| -> Result<Zeroizing<Vec<u8>>> {
            let policy_session = PolicySession::try_from(policy)
                .map_err(|e| self.err("TPM2_StartAuthSession", e, Subject::None))?;
            self.with_hmac_session(|tpm, s| {
                tpm.ctx
                    .execute_with_session(Some(s), |c| {
                        c.policy_secret(
                            policy_session,
                            AuthHandle::Endorsement,
                            Nonce::default(),
                            Digest::default(),
                            Nonce::default(),
                            None,
                        )
                    })
                    .map(|_| ())
                    .map_err(|e| tpm.err("TPM2_PolicySecret", e, Subject::None))
            })?;
            self.ctx
                .execute_with_sessions((Some(AuthSession::Password), Some(policy), None), |c| {
                    c.activate_credential(KeyHandle::from(ak_object), ek, id_object, secret)
                })
                .map(|d| Zeroizing::new(d.value().to_vec()))
                .map_err(|e| self.err("TPM2_ActivateCredential", e, Subject::None))
        })();
        let _ = self
            .ctx
            .flush_context(tss_esapi::handles::SessionHandle::from(policy).into());
        let mut o: ObjectHandle = ak_object;
        let _ = self.ctx.tr_close(&mut o);
        result
    }
}
