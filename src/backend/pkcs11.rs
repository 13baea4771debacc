//! The PKCS#11 backend: keys, signatures and certificates in a token, named by
//! RFC 7512 URIs. With no module named, it is the embedded SoftHSM token.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use imgseal_hsm::uri::{ObjectType, Pkcs11Uri};
use imgseal_hsm::{
    CertificateObject, CurveFacts, DigestMechanism, KeyFilter, KeyObject, KeyProtection, KeySpec,
    Module, NewCertificate, SignMechanism, Token, TokenSelector,
};
use rand::RngCore;

use super::{
    DeletedKey, KeyHandle, ListedCertificate, ListedKey, SigningDevice, StoredCertificate,
};
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
    /// Serialises SoftHSM calls with other processes (see [`TokenDirLock`]).
    lock: TokenDirLock,
    /// The operator's `--pss-salt digest`: in place of the maximum salt.
    pss_salt_override: Option<PssSalt>,
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
    /// A certificate object under `id` (label and CKA_ID), with the
    /// attributes other PKCS#11 tools index certificates by.
    fn write_certificate_object(&self, id: &str, cert: &Certificate) -> Result<()> {
        self.token
            .store_certificate(&NewCertificate {
                label: id,
                id: id.as_bytes(),
                subject_der: &cert.subject_der(),
                issuer_der: &cert.issuer_der(),
                serial_der: &cert.serial_der(),
                value_der: &cert.der,
            })
            .map(|_| ())
            .map_err(|e| Error::device(format!("storing the certificate{}", self.unwritable()))(e))
    }

    /// Opens the token `uri` names. Its module is the URI's `module-path`, else
    /// `$IMGSEAL_PKCS11_MODULE`, else the embedded SoftHSM token under `home`.
    /// `uri_origin` names the URI a PIN in it came from ("the key URI",
    /// "--token"), for the message of a wrong PIN.
    pub fn open(
        uri: Option<&Pkcs11Uri>,
        uri_origin: &str,
        home: &Home,
        login: Login,
    ) -> Result<Self> {
        let explicit = uri.and_then(|u| u.module_path.clone()).or_else(|| {
            std::env::var_os("IMGSEAL_PKCS11_MODULE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        if let Some(u) = uri
            && u.module_name.is_some()
            && explicit.is_none()
        {
            return Err(Error::usage(
                "module-name= in a PKCS#11 URI is not supported: give module-path= instead",
            ));
        }
        let mut selector = TokenSelector {
            label: uri.and_then(|u| u.token.clone()),
            serial: uri.and_then(|u| u.serial.clone()),
            manufacturer: uri.and_then(|u| u.manufacturer.clone()),
            model: uri.and_then(|u| u.model.clone()),
            slot_id: uri.and_then(|u| u.slot_id),
            slot_description: uri.and_then(|u| u.slot_description.clone()),
            slot_manufacturer: uri.and_then(|u| u.slot_manufacturer.clone()),
            library_manufacturer: uri.and_then(|u| u.library_manufacturer.clone()),
            library_description: uri.and_then(|u| u.library_description.clone()),
            library_version: uri.and_then(|u| u.library_version.clone()),
        };
        let (module, embedded, lock) = match explicit {
            Some(path) => {
                let lock = TokenDirLock::for_module(&path, None);
                let module = {
                    let _held = lock.exclusive()?;
                    Module::load(&path).map_err(Error::device("loading the PKCS#11 module"))?
                };
                (module, false, lock)
            }
            None => {
                if selector.label.is_none() {
                    selector.label = Some(EMBEDDED_TOKEN_LABEL.into());
                }
                let (module, lock) = open_embedded(home, login)?;
                (module, true, lock)
            }
        };
        let slot = {
            let _held = lock.exclusive()?;
            module
                .find_slot(&selector)
                .map_err(Error::device("finding the token"))?
        };
        let token_label = selector.label.clone().unwrap_or_default();
        let pin = match login {
            Login::Required => {
                let embedded_pin = embedded.then(|| home.user_pin_file());
                Some(pin::resolve_pin(
                    uri,
                    uri_origin,
                    embedded_pin.as_deref(),
                    &token_label,
                )?)
            }
            Login::NotNeeded => None,
        };
        // Not held while the PIN is asked for: a prompt may wait for long.
        let token = {
            let _held = lock.exclusive()?;
            module
                .open(slot, pin.as_ref().map(|(p, _)| p.as_str()), true)
                .map_err(|e| match (e, &pin) {
                    // Which PIN was wrong: the file or variable to fix, never the PIN.
                    (e @ imgseal_hsm::HsmError::PinIncorrect { .. }, Some((_, source))) => {
                        Error::Auth(format!(
                            "opening the token: {e}; the PIN came from {source}"
                        ))
                    }
                    (e, _) => Error::device("opening the token")(e),
                })?
        };
        // A module that uses OpenSSL in this process (SoftHSM tries to load
        // an engine at C_Initialize) can leave errors on the thread's OpenSSL
        // queue. The next unrelated OpenSSL failure would then report them:
        // a garbage --crl read "not a CRL: could not load the shared library".
        // Drop them here.
        drop(openssl::error::ErrorStack::get());
        Ok(Pkcs11Device {
            token,
            embedded,
            module_path: module.path().to_path_buf(),
            lock,
            pss_salt_override: None,
        })
    }

    /// Signs RSA-PSS with `salt` where a signature with the maximum salt
    /// is asked for (`sign --pss-salt digest`).
    pub fn set_pss_salt(&mut self, salt: PssSalt) {
        self.pss_salt_override = Some(salt);
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
            "reading the public key of \"{}\" in token \"{}\"",
            key.label,
            self.token.label()
        )))?;
        // A module may store a public key imgseal cannot read (tpm2-pkcs11
        // 1.9.0 mis-encodes some P-521 CKA_EC_POINTs): say which key.
        let public = PublicKey::from_parts(&parts).map_err(|e| {
            Error::bad_input(format!(
                "the public key of \"{}\" in token \"{}\" ({}): {e}",
                key.label,
                self.token.label(),
                self.token.quirks().module.name()
            ))
        })?;
        Ok(KeyHandle {
            uri: self.key_uri(key),
            label: key.label.clone(),
            id: key.id.clone(),
            public,
        })
    }

    /// The private key object `key` names, found again by everything that
    /// selected it (class, label and id); never another key with the same id.
    fn key_object(&self, key: &KeyHandle) -> Result<KeyObject> {
        let filter = KeyFilter {
            label: Some(key.label.clone()),
            id: Some(key.id.clone()),
        };
        self.select_key(&filter, &key.uri).map_err(|e| match e {
            Error::NotFound(_) => Error::not_found(format!(
                "key {} is no longer in the token",
                key.uri.redacted()
            )),
            e => e,
        })
    }

    /// The one private key matching `filter` (from `uri`): an error unless
    /// exactly one matches, as keys often share a label or an id.
    fn select_key(&self, filter: &KeyFilter, uri: &Pkcs11Uri) -> Result<KeyObject> {
        let mut keys = self
            .token
            .find_keys(filter)
            .map_err(Error::device("finding the key"))?;
        match keys.len() {
            0 => Err(Error::not_found(format!(
                "no private key matches {} in token \"{}\"",
                uri.redacted(),
                self.token.label()
            ))),
            1 => Ok(keys.remove(0)),
            n if filter.label.is_some() && filter.id.is_some() => Err(Error::usage(format!(
                "{} matches {n} private keys in token \"{}\", which share this label and id: give them different ids or labels to choose one",
                uri.redacted(),
                self.token.label()
            ))),
            n => Err(Error::usage(format!(
                "{} matches {n} private keys in token \"{}\": add id= or object= to choose one",
                uri.redacted(),
                self.token.label()
            ))),
        }
    }
}

/// SoftHSM 2.6.1 is not safe for several processes using one token at once.
/// Every `C_Login` rewrites the token's `token.object` (its PIN-count flags),
/// and SoftHSM opens that file with `O_TRUNC` *before* taking its own file
/// lock; a process reading the token at that moment (`C_Initialize`,
/// `C_GetTokenInfo`, any object access, which re-reads the token) finds it
/// empty: "no PKCS#11 token matches" or `CKR_GENERAL_ERROR`. Ten rounds of
/// eight `imgseal sign` at once failed that way 7 times in 80 on the embedded
/// token and 37 in 80 on an operator's (tests/concurrency.rs); none since.
/// imgseal therefore serialises its own calls into a
/// SoftHSM token directory with `flock` on that directory: exclusive for what
/// writes (loading the module, login, key generation, certificate import),
/// shared for the rest, so signatures still run in parallel. Released
/// between calls: no lock is held while an image is hashed. Other modules
/// (real HSMs) are not locked.
pub(crate) struct TokenDirLock {
    dir: Option<(PathBuf, Mutex<File>)>,
}

struct DirGuard<'a>(Option<MutexGuard<'a, File>>);

impl Drop for DirGuard<'_> {
    // File::lock and friends are Rust 1.89; the workspace already relies on
    // them (src/home.rs, tpm/src/swtpm.rs).
    #[allow(clippy::incompatible_msrv)]
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            let _ = f.unlock();
        }
    }
}

impl TokenDirLock {
    /// The token directory of a SoftHSM module: `embedded_dir` for the
    /// embedded token, else `directories.tokendir` of `$SOFTHSM2_CONF` (or
    /// SoftHSM's default configuration). No lock for other modules, or when
    /// the directory cannot be opened (as before this lock existed).
    fn for_module(module: &Path, embedded_dir: Option<PathBuf>) -> TokenDirLock {
        // By the library's real name: distributions link libsofthsm2.so from
        // several places.
        let real = std::fs::canonicalize(module).unwrap_or_else(|_| module.to_path_buf());
        let is_softhsm = real
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("softhsm"));
        let dir = match embedded_dir {
            Some(d) => Some(d),
            None if is_softhsm => softhsm_token_dir(),
            None => None,
        };
        TokenDirLock {
            dir: dir.and_then(|d| {
                let f = File::open(&d).ok()?;
                Some((d, Mutex::new(f)))
            }),
        }
    }

    #[allow(clippy::incompatible_msrv)]
    fn take(&self, exclusive: bool) -> Result<DirGuard<'_>> {
        let Some((dir, file)) = &self.dir else {
            return Ok(DirGuard(None));
        };
        let f = file.lock().unwrap_or_else(|e| e.into_inner());
        let locked = if exclusive { f.lock() } else { f.lock_shared() };
        locked.map_err(|e| Error::io(dir, e))?;
        Ok(DirGuard(Some(f)))
    }

    fn exclusive(&self) -> Result<DirGuard<'_>> {
        self.take(true)
    }

    fn shared(&self) -> Result<DirGuard<'_>> {
        self.take(false)
    }
}

/// `directories.tokendir` from the SoftHSM configuration the module will read.
fn softhsm_token_dir() -> Option<PathBuf> {
    let conf = std::env::var_os("SOFTHSM2_CONF")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/softhsm/softhsm2.conf"));
    let text = std::fs::read_to_string(conf).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "directories.tokendir").then(|| PathBuf::from(value.trim()))
    })
}

/// Prepares, and on first use creates, the embedded token, then loads SoftHSM.
fn open_embedded(home: &Home, login: Login) -> Result<(Arc<Module>, TokenDirLock)> {
    // Reading certificates must not create a token as a side effect.
    if login == Login::NotNeeded && !home.user_pin_file().exists() {
        return Err(Error::not_found(format!(
            "the embedded token under {} does not exist yet (no keys or certificates have been stored): give --cert-dir DIR, or --token for another token",
            home.dir.display()
        )));
    }
    let module_path = home::softhsm_module()?;
    // Held until the token exists and the module has read it; a failure to
    // lock is an error, never a silent unlocked first run.
    let _lock = home.lock()?;
    let needs_init = home.prepare_embedded()?;
    let lock = TokenDirLock::for_module(&module_path, Some(home.token_dir()));
    let held = lock.exclusive()?;
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
    drop(held);
    Ok((module, lock))
}

fn digest_mechanism(scheme: &SignatureScheme) -> DigestMechanism {
    scheme.hash().digest_mechanism()
}

impl SigningDevice for Pkcs11Device {
    fn describe(&self) -> String {
        format!("PKCS#11 token \"{}\"", self.token.label())
    }

    fn list_keys(&self) -> Result<Vec<ListedKey>> {
        let _held = self.lock.shared()?;
        let keys = self
            .token
            .find_keys(&KeyFilter::default())
            .map_err(Error::device("listing keys"))?;
        // One key imgseal cannot use never hides the others: it is listed
        // with the reason.
        Ok(keys
            .iter()
            .map(|k| ListedKey {
                uri: self.key_uri(k),
                label: k.label.clone(),
                id: k.id.clone(),
                key: match &k.problem {
                    Some(p) => Err(p.clone()),
                    None => self.handle(k).map_err(|e| e.to_string()),
                },
            })
            .collect())
    }

    fn find_key(&self, uri: &Pkcs11Uri) -> Result<KeyHandle> {
        let _held = self.lock.shared()?;
        if let Some(t) = uri.object_type
            && t != ObjectType::Private
        {
            return Err(Error::usage(format!(
                "{}: type={} does not name a private key",
                uri.redacted(),
                t.as_str()
            )));
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
        let key = self.select_key(&filter, uri)?;
        self.handle(&key)
    }

    fn generate_key(
        &self,
        kind: KeyKind,
        label: &str,
        allow_weaker: bool,
    ) -> Result<(KeyHandle, Vec<String>)> {
        if label.is_empty() {
            return Err(Error::usage("the key label is empty"));
        }
        // Domain parameters first: DSA's take a second or more, and no token
        // lock is held for that.
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
        // The label check and the generation under one exclusive lock: with
        // the check under a lock of its own, two `key generate --label k` at
        // once both found no "k" and both created one. (Only SoftHSM token
        // directories are locked across processes; see TokenDirLock.)
        let _held = self.lock.exclusive()?;
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
        // Ask the token first: "cannot generate DSA keys (it offers: …)"
        // rather than a CKR code after trying.
        let curve = match kind {
            KeyKind::Ec(c) => Some(CurveFacts {
                name: c.name(),
                bits: c.bits(),
                binary: c.is_binary(),
            }),
            _ => None,
        };
        self.token
            .require_keygen(&spec, curve)
            .map_err(Error::device(format!("generating a {kind} key")))?;
        let (key, missing) = self
            .token
            .generate_key_pair(&spec, label, &id, allow_weaker)
            .map_err(|e| {
                Error::device(format!("generating a {kind} key{}", self.unwritable()))(e)
            })?;
        let missing: Vec<String> = missing.iter().map(|h| h.protection().to_string()).collect();
        for m in &missing {
            tracing::warn!(
                "token \"{}\" refused {m}: the key \"{label}\" was generated without it (--allow-weaker-key-attributes)",
                self.token.label()
            );
        }
        Ok((self.handle(&key)?, missing))
    }

    fn key_protection(&self, key: &KeyHandle) -> Result<KeyProtection> {
        let _held = self.lock.shared()?;
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
        let _held = self.lock.shared()?;
        let object = self.key_object(key)?;
        let quirks = self.token.quirks().clone();
        let mut mechanism = match (scheme, key.public.class()) {
            (SignatureScheme::RsaPss { hash, salt }, KeyClass::Rsa { bits }) => {
                let salt = match (salt, self.pss_salt_override) {
                    (PssSalt::Max, Some(chosen)) => chosen,
                    (salt, _) => *salt,
                };
                SignMechanism::RsaPss {
                    digest: digest_mechanism(scheme),
                    salt_len: match salt {
                        // A TPM signs PSS only with a salt of the hash's
                        // length (quirks.rs); Glance and cursive detect the
                        // salt length, so that signature verifies as well.
                        PssSalt::Max if quirks.pss_salt_is_digest_length => {
                            tracing::warn!(
                                "token \"{}\" ({}) signs RSA-PSS only with a salt as long as the hash: signing with a {}-byte salt, not the maximum",
                                self.token.label(),
                                quirks.module.name(),
                                hash.output_len()
                            );
                            hash.output_len() as u64
                        }
                        PssSalt::Max => pss_max_salt_len(bits as usize, *hash)? as u64,
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
        self.token
            .require_sign(&mechanism, digest_mechanism(scheme))
            .map_err(Error::device(format!(
                "signing with {}",
                key.uri.redacted()
            )))?;
        let mut signed = self.token.sign_digest(object.private, &mechanism, digest);
        // A token that refuses the maximum salt may take the hash's length.
        if let (
            Err(e),
            SignMechanism::RsaPss {
                digest: d,
                salt_len,
            },
        ) = (&signed, &mut mechanism)
        {
            let hash_len = scheme.hash().output_len() as u64;
            if e.is_mechanism_param_invalid() && *salt_len != hash_len {
                tracing::warn!(
                    "token \"{}\" refused an RSA-PSS salt of {salt_len} bytes: signing with a {hash_len}-byte salt (the hash's length)",
                    self.token.label()
                );
                *salt_len = hash_len;
                let retry = SignMechanism::RsaPss {
                    digest: *d,
                    salt_len: hash_len,
                };
                signed = self.token.sign_digest(object.private, &retry, digest);
            }
        }
        let raw = signed.map_err(Error::device(format!(
            "signing with {}",
            key.uri.redacted()
        )))?;
        signature::raw_rs_to_der(scheme, &raw)
    }

    fn store_certificate(&self, id: &str, cert: &Certificate) -> Result<()> {
        let _held = self.lock.exclusive()?;
        if self.certificate(id)?.is_some() {
            return Err(Error::usage(format!(
                "token \"{}\" already holds a certificate with id \"{id}\" (give --replace to replace it)",
                self.token.label()
            )));
        }
        self.write_certificate_object(id, cert)?;
        Ok(())
    }

    fn key_certificates(&self, key: &KeyHandle) -> Result<Vec<ListedCertificate>> {
        let _held = self.lock.shared()?;
        self.certificates_with_id(&key.id).map(|found| {
            found
                .into_iter()
                .map(|obj| ListedCertificate {
                    certificate: Certificate::from_der(
                        &obj.value,
                        &format!("certificate \"{}\" in the token", obj.label),
                    )
                    .map_err(|e| e.to_string()),
                    id: obj.label,
                    location: format!("token \"{}\"", self.token.label()),
                })
                .collect()
        })
    }

    fn delete_key(&self, key: &KeyHandle, with_certificates: bool) -> Result<DeletedKey> {
        let _held = self.lock.exclusive()?;
        let object = self.key_object(key)?;
        let certificates = self.certificates_with_id(&key.id)?;
        let failed = |what: &str| {
            Error::device(format!(
                "deleting {what} of {}{}",
                key.uri.redacted(),
                self.unwritable()
            ))
        };
        self.token
            .destroy_key(&object)
            .map_err(failed("the key pair"))?;
        let mut deleted = DeletedKey {
            public_key: object.public.is_some(),
            ..DeletedKey::default()
        };
        for cert in certificates {
            match (with_certificates, cert.handle) {
                (true, Some(handle)) => {
                    self.token
                        .destroy_object(handle)
                        .map_err(failed(&format!("certificate \"{}\"", cert.label)))?;
                    deleted.certificates.push(cert.label);
                }
                _ => deleted.kept_certificates.push(cert.label),
            }
        }
        Ok(deleted)
    }

    fn delete_certificate(&self, id: &str) -> Result<()> {
        let _held = self.lock.exclusive()?;
        let found = self
            .token
            .find_certificates(Some(id))
            .map_err(Error::device("finding the certificate"))?;
        if found.is_empty() {
            return Err(Error::not_found(format!(
                "certificate \"{id}\" not found in token \"{}\"",
                self.token.label()
            )));
        }
        for handle in found.into_iter().filter_map(|c| c.handle) {
            self.token.destroy_object(handle).map_err(|e| {
                Error::device(format!(
                    "deleting certificate \"{id}\"{}",
                    self.unwritable()
                ))(e)
            })?;
        }
        Ok(())
    }

    fn replace_certificate(&self, id: &str, cert: &Certificate) -> Result<()> {
        let _held = self.lock.exclusive()?;
        let old = self
            .token
            .find_certificates(Some(id))
            .map_err(Error::device("finding the certificate"))?;
        // The new object first: a failure leaves the old certificate in place.
        self.write_certificate_object(id, cert)?;
        for handle in old.into_iter().filter_map(|c| c.handle) {
            self.token.destroy_object(handle).map_err(|e| {
                Error::device(format!(
                    "deleting the replaced certificate \"{id}\"{}",
                    self.unwritable()
                ))(e)
            })?;
        }
        Ok(())
    }

    fn find_certificate(&self, id: &str) -> Result<Option<StoredCertificate>> {
        let _held = self.lock.shared()?;
        self.certificate(id)
    }

    fn list_certificates(&self) -> Result<Vec<StoredCertificate>> {
        let _held = self.lock.shared()?;
        self.certificate_objects()?
            .into_iter()
            .map(|(obj, parsed)| {
                Ok(StoredCertificate {
                    certificate: parsed?,
                    id: obj.label,
                    location: format!("token \"{}\"", self.token.label()),
                })
            })
            .collect()
    }

    fn list_certificate_entries(&self) -> Result<Vec<ListedCertificate>> {
        let _held = self.lock.shared()?;
        Ok(self
            .certificate_objects()?
            .into_iter()
            .map(|(obj, parsed)| ListedCertificate {
                id: obj.label,
                location: format!("token \"{}\"", self.token.label()),
                certificate: parsed.map_err(|e| e.to_string()),
            })
            .collect())
    }
}

impl Pkcs11Device {
    /// After a failed write: why, when SoftHSM's token directory cannot be
    /// written (a read-only mount, `chattr +i`). SoftHSM itself only says
    /// CKR_GENERAL_ERROR (tests/device_faults.rs).
    fn unwritable(&self) -> String {
        use std::os::unix::ffi::OsStrExt;
        let Some((dir, _)) = &self.lock.dir else {
            return String::new();
        };
        // The token directory, and each token's own directory in it.
        let subdirs = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir());
        for d in std::iter::once(dir.clone()).chain(subdirs) {
            let Ok(c) = std::ffi::CString::new(d.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: a NUL-terminated path; access(2) only reads it. It
            // reports EROFS and EPERM (immutable) even for root.
            if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
                return format!(
                    " (the token directory {} is not writable: {})",
                    d.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        String::new()
    }

    /// Every certificate object with its parsed value (or why it cannot be
    /// parsed); the caller holds the token lock.
    fn certificate_objects(&self) -> Result<Vec<(CertificateObject, Result<Certificate>)>> {
        let found = self
            .token
            .find_certificates(None)
            .map_err(Error::device("listing certificates"))?;
        Ok(found
            .into_iter()
            .map(|obj| {
                let parsed = Certificate::from_der(
                    &obj.value,
                    &format!("certificate \"{}\" in the token", obj.label),
                );
                (obj, parsed)
            })
            .collect())
    }

    /// Certificate objects with `CKA_ID` = `id`; none for an empty id (it
    /// would match every certificate stored without one). The caller holds
    /// the token lock.
    fn certificates_with_id(&self, id: &[u8]) -> Result<Vec<CertificateObject>> {
        if id.is_empty() {
            return Ok(Vec::new());
        }
        self.token
            .find_certificates_with_id(id)
            .map_err(Error::device("finding the key's certificates"))
    }

    /// The certificate stored under `id`; the caller holds the token lock.
    fn certificate(&self, id: &str) -> Result<Option<StoredCertificate>> {
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
}
