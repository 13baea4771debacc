//! The PKCS#11 backend: keys, signatures and certificates in a token, named by
//! RFC 7512 URIs. With no module named, it is the embedded SoftHSM token.

use std::path::PathBuf;
use std::sync::Arc;

use imgseal_hsm::uri::{ObjectType, Pkcs11Uri};
use imgseal_hsm::{
    DigestMechanism, KeyFilter, KeyObject, KeyProtection, KeySpec, Module, NewCertificate,
    SignMechanism, Token, TokenSelector,
};
use rand::RngCore;

use super::{KeyHandle, SigningDevice, StoredCertificate};
use crate::algorithms::{KeyKind, pss_max_salt_len};
use crate::error::{Error, Result};
use crate::home::{self, EMBEDDED_TOKEN_LABEL, Home};
use crate::pin;
use crate::public_key::{KeyClass, PublicKey};
use crate::signature::{self, PssSalt, SignatureScheme};
use crate::x509::Certificate;

/// An open token.
pub struct Pkcs11Device {
    token: Token,
    /// Whether this is the embedded token (its URIs then need no module-path).
    embedded: bool,
    module_path: PathBuf,
}

impl std::fmt::Debug for Pkcs11Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Device")
            .field("token", &self.token)
            .finish()
    }
}

/// Whether the session must be logged in (private keys) or not (public objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Required,
    NotNeeded,
}

impl Pkcs11Device {
    /// Opens the token `uri` names. Its module is the URI's `module-path`, else
    /// `$IMGSEAL_PKCS11_MODULE`, else the embedded SoftHSM token under `home`.
    pub fn open(uri: Option<&Pkcs11Uri>, home: &Home, login: Login) -> Result<Self> {
        let explicit = uri.and_then(|u| u.module_path.clone()).or_else(|| {
            std::env::var_os("IMGSEAL_PKCS11_MODULE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        if let Some(u) = uri {
            if u.module_name.is_some() && explicit.is_none() {
                return Err(Error::usage(
                    "module-name= in a PKCS#11 URI is not supported: give module-path= instead",
                ));
            }
        }
        let mut selector = TokenSelector {
            label: uri.and_then(|u| u.token.clone()),
            serial: uri.and_then(|u| u.serial.clone()),
            manufacturer: uri.and_then(|u| u.manufacturer.clone()),
            model: uri.and_then(|u| u.model.clone()),
            slot_id: uri.and_then(|u| u.slot_id),
        };
        let (module, embedded) = match explicit {
            Some(path) => (
                Module::load(&path).map_err(Error::device("loading the PKCS#11 module"))?,
                false,
            ),
            None => {
                if selector.label.is_none() {
                    selector.label = Some(EMBEDDED_TOKEN_LABEL.into());
                }
                (open_embedded(home, login)?, true)
            }
        };
        let slot = module
            .find_slot(&selector)
            .map_err(Error::device("finding the token"))?;
        let token_label = selector.label.clone().unwrap_or_default();
        let pin = match login {
            Login::Required => {
                let embedded_pin = embedded.then(|| home.user_pin_file());
                Some(pin::resolve_pin(
                    uri,
                    embedded_pin.as_deref(),
                    &token_label,
                )?)
            }
            Login::NotNeeded => None,
        };
        let token = module
            .open(slot, pin.as_ref().map(|p| p.as_str()), true)
            .map_err(Error::device("opening the token"))?;
        Ok(Pkcs11Device {
            token,
            embedded,
            module_path: module.path().to_path_buf(),
        })
    }

    pub fn token_label(&self) -> &str {
        self.token.label()
    }

    fn key_uri(&self, key: &KeyObject) -> Pkcs11Uri {
        let mut uri = Pkcs11Uri::new_private_key(self.token.label(), &key.label, &key.id);
        if !self.embedded {
            uri.module_path = Some(self.module_path.clone());
        }
        uri
    }

    fn handle(&self, key: &KeyObject) -> Result<KeyHandle> {
        let parts = self.token.public_key(key).map_err(Error::device(format!(
            "reading the public key of \"{}\"",
            key.label
        )))?;
        Ok(KeyHandle {
            uri: self.key_uri(key),
            label: key.label.clone(),
            id: key.id.clone(),
            public: PublicKey::from_parts(&parts)?,
        })
    }

    fn key_object(&self, key: &KeyHandle) -> Result<KeyObject> {
        let found = self
            .token
            .find_keys(&KeyFilter {
                label: None,
                id: Some(key.id.clone()),
            })
            .map_err(Error::device("finding the key"))?;
        found.into_iter().next().ok_or_else(|| {
            Error::not_found(format!(
                "key {} is no longer in the token",
                key.uri.redacted()
            ))
        })
    }
}

/// Prepares, and on first use creates, the embedded token, then loads SoftHSM.
fn open_embedded(home: &Home, login: Login) -> Result<Arc<Module>> {
    // Reading certificates must not create a token as a side effect.
    if login == Login::NotNeeded && !home.user_pin_file().exists() {
        return Err(Error::not_found(format!(
            "the embedded token under {} does not exist yet (no keys or certificates have been stored): give --cert-dir DIR, or --token for another token",
            home.dir.display()
        )));
    }
    let module_path = home::softhsm_module()?;
    let _lock = home.lock();
    let needs_init = home.prepare_embedded()?;
    // SoftHSM reads its configuration at C_Initialize. This runs before the
    // module is loaded and before imgseal starts any thread.
    unsafe { std::env::set_var("SOFTHSM2_CONF", home.softhsm_conf()) };
    let module = Module::load(&module_path).map_err(Error::device("loading SoftHSM2"))?;
    if needs_init {
        let (user, so) = home.create_pins()?;
        if let Err(e) = module.init_token(EMBEDDED_TOKEN_LABEL, &so, &user) {
            // Leave no PIN files for a token that does not exist.
            let _ = std::fs::remove_file(home.user_pin_file());
            let _ = std::fs::remove_file(home.so_pin_file());
            return Err(Error::device("creating the embedded token")(e));
        }
        tracing::info!(home = %home.dir.display(), "created the embedded SoftHSM token");
    }
    Ok(module)
}

fn digest_mechanism(scheme: &SignatureScheme) -> DigestMechanism {
    scheme.hash().digest_mechanism()
}

impl SigningDevice for Pkcs11Device {
    fn describe(&self) -> String {
        format!("PKCS#11 token \"{}\"", self.token.label())
    }

    fn list_keys(&self) -> Result<Vec<KeyHandle>> {
        let keys = self
            .token
            .find_keys(&KeyFilter::default())
            .map_err(Error::device("listing keys"))?;
        keys.iter().map(|k| self.handle(k)).collect()
    }

    fn find_key(&self, uri: &Pkcs11Uri) -> Result<KeyHandle> {
        if let Some(t) = uri.object_type {
            if t != ObjectType::Private {
                return Err(Error::usage(format!(
                    "{}: type={} does not name a private key",
                    uri.redacted(),
                    t.as_str()
                )));
            }
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(Error::usage(format!(
                "{}: the URI names no key (add object= or id=)",
                uri.redacted()
            )));
        }
        let filter = KeyFilter {
            label: uri.object.clone(),
            id: uri.id.clone(),
        };
        let keys = self
            .token
            .find_keys(&filter)
            .map_err(Error::device("finding the key"))?;
        match keys.len() {
            0 => Err(Error::not_found(format!(
                "no private key matches {} in token \"{}\"",
                uri.redacted(),
                self.token.label()
            ))),
            1 => self.handle(&keys[0]),
            n => Err(Error::usage(format!(
                "{n} private keys match {} in token \"{}\": add id= to the URI",
                uri.redacted(),
                self.token.label()
            ))),
        }
    }

    fn generate_key(&self, kind: KeyKind, label: &str) -> Result<KeyHandle> {
        if label.is_empty() {
            return Err(Error::usage("the key label is empty"));
        }
        let existing = self
            .token
            .find_keys(&KeyFilter {
                label: Some(label.into()),
                id: None,
            })
            .map_err(Error::device("checking the label"))?;
        if !existing.is_empty() {
            return Err(Error::usage(format!(
                "token \"{}\" already holds a key labelled \"{label}\"",
                self.token.label()
            )));
        }
        let spec = match kind {
            KeyKind::RsaPss { bits } => KeySpec::Rsa { bits: bits.into() },
            KeyKind::Ec(curve) => KeySpec::Ec {
                params_der: curve.params_der(),
            },
            KeyKind::Dsa { bits } => {
                // FIPS 186-4 groups with a 256-bit q for L = 2048 and 3072.
                let params = openssl::dsa::Dsa::generate_params(bits)
                    .map_err(|e| Error::crypto("generating DSA domain parameters", e))?;
                KeySpec::Dsa {
                    p: params.p().to_vec(),
                    q: params.q().to_vec(),
                    g: params.g().to_vec(),
                }
            }
        };
        let mut id = vec![0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let key = self
            .token
            .generate_key_pair(&spec, label, &id)
            .map_err(Error::device(format!("generating a {kind} key")))?;
        self.handle(&key)
    }

    fn key_protection(&self, key: &KeyHandle) -> Result<KeyProtection> {
        let object = self.key_object(key)?;
        self.token
            .key_protection(&object)
            .map_err(Error::device("reading key attributes"))
    }

    fn sign_digest(
        &self,
        key: &KeyHandle,
        scheme: &SignatureScheme,
        digest: &[u8],
    ) -> Result<Vec<u8>> {
        let object = self.key_object(key)?;
        let mechanism = match (scheme, key.public.class()) {
            (SignatureScheme::RsaPss { hash, salt }, KeyClass::Rsa { bits }) => {
                SignMechanism::RsaPss {
                    digest: digest_mechanism(scheme),
                    salt_len: match salt {
                        PssSalt::Max => pss_max_salt_len(bits as usize, *hash) as u64,
                        PssSalt::DigestLength => hash.output_len() as u64,
                    },
                }
            }
            (SignatureScheme::Ecdsa { .. }, KeyClass::Ec { .. }) => SignMechanism::Ecdsa,
            (SignatureScheme::Dsa { .. }, KeyClass::Dsa { .. }) => SignMechanism::Dsa,
            (scheme, _) => {
                return Err(Error::usage(format!(
                    "key {} is {}, which cannot make {scheme:?} signatures",
                    key.uri.redacted(),
                    key.public.describe()
                )));
            }
        };
        let raw = self
            .token
            .sign_digest(object.private, &mechanism, digest)
            .map_err(Error::device(format!(
                "signing with {}",
                key.uri.redacted()
            )))?;
        signature::raw_rs_to_der(scheme, &raw)
    }

    fn store_certificate(&self, id: &str, cert: &Certificate) -> Result<()> {
        if self.find_certificate(id)?.is_some() {
            return Err(Error::usage(format!(
                "token \"{}\" already holds a certificate with id \"{id}\"",
                self.token.label()
            )));
        }
        self.token
            .store_certificate(&NewCertificate {
                label: id,
                id: id.as_bytes(),
                subject_der: &cert.subject_der(),
                issuer_der: &cert.issuer_der(),
                serial_der: &cert.serial_der(),
                value_der: &cert.der,
            })
            .map_err(Error::device("storing the certificate"))?;
        Ok(())
    }

    fn find_certificate(&self, id: &str) -> Result<Option<StoredCertificate>> {
        let found = self
            .token
            .find_certificates(Some(id))
            .map_err(Error::device("finding the certificate"))?;
        match found.into_iter().next() {
            None => Ok(None),
            Some(obj) => Ok(Some(StoredCertificate {
                id: id.to_string(),
                certificate: Certificate::from_der(
                    &obj.value,
                    &format!("certificate \"{id}\" in the token"),
                )?,
                location: format!("token \"{}\"", self.token.label()),
            })),
        }
    }

    fn list_certificates(&self) -> Result<Vec<StoredCertificate>> {
        let found = self
            .token
            .find_certificates(None)
            .map_err(Error::device("listing certificates"))?;
        found
            .into_iter()
            .map(|obj| {
                Ok(StoredCertificate {
                    certificate: Certificate::from_der(
                        &obj.value,
                        &format!("certificate \"{}\" in the token", obj.label),
                    )?,
                    id: obj.label,
                    location: format!("token \"{}\"", self.token.label()),
                })
            })
            .collect()
    }
}
