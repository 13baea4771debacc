//! Loading a PKCS#11 module and finding, initialising and logging in to tokens.
//!
//! PKCS#11 allows one `C_Initialize` per process and keeps the login state per
//! application and token, not per session, so modules are cached per process and
//! each `Token` keeps one logged-in session open for its whole life.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use secrecy::SecretString;

use crate::error::{HsmError, Result};
use crate::quirks::Quirks;
use crate::raw::{FunctionList, LibraryFields};

/// A loaded and initialised PKCS#11 module.
pub struct Module {
    pkcs11: Pkcs11,
    path: PathBuf,
    /// The same module's function list, for what cryptoki cannot do (raw.rs).
    functions: FunctionList,
    library: LibraryFields,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("path", &self.path).finish()
    }
}

/// What identifies a token, as the path attributes of a `pkcs11:` URI do.
/// Every attribute given must match (RFC 7512 §2.3): the library's, the
/// slot's and the token's.
#[derive(Debug, Default, Clone)]
pub struct TokenSelector {
    pub label: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub slot_id: Option<u64>,
    pub slot_description: Option<String>,
    pub slot_manufacturer: Option<String>,
    pub library_manufacturer: Option<String>,
    pub library_description: Option<String>,
    pub library_version: Option<String>,
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(v) = &self.label {
            parts.push(format!("token=\"{v}\""));
        }
        if let Some(v) = &self.serial {
            parts.push(format!("serial=\"{v}\""));
        }
        if let Some(v) = &self.manufacturer {
            parts.push(format!("manufacturer=\"{v}\""));
        }
        if let Some(v) = &self.model {
            parts.push(format!("model=\"{v}\""));
        }
        if let Some(v) = self.slot_id {
            parts.push(format!("slot-id={v}"));
        }
        for (name, value) in [
            ("slot-description", &self.slot_description),
            ("slot-manufacturer", &self.slot_manufacturer),
            ("library-manufacturer", &self.library_manufacturer),
            ("library-description", &self.library_description),
            ("library-version", &self.library_version),
        ] {
            if let Some(v) = value {
                parts.push(format!("{name}=\"{v}\""));
            }
        }
        if parts.is_empty() {
            write!(f, "any token")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// One line of `C_GetTokenInfo` (and `C_GetSlotInfo`), as users need to
/// tell tokens apart. Text fields are trimmed of blank and NUL padding.
#[derive(Debug, Clone)]
pub struct TokenSummary {
    pub slot_id: u64,
    pub label: String,
    pub serial: String,
    pub manufacturer: String,
    pub model: String,
    pub slot_description: String,
    pub slot_manufacturer: String,
}

impl std::fmt::Display for TokenSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "token=\"{}\" serial=\"{}\" slot-id={}",
            self.label, self.serial, self.slot_id
        )
    }
}

impl TokenSelector {
    fn matches_token(&self, t: &TokenSummary) -> bool {
        fn eq(want: &Option<String>, have: &str) -> bool {
            want.as_ref().is_none_or(|v| v == have)
        }
        eq(&self.label, &t.label)
            && eq(&self.serial, &t.serial)
            && eq(&self.manufacturer, &t.manufacturer)
            && eq(&self.model, &t.model)
            && eq(&self.slot_description, &t.slot_description)
            && eq(&self.slot_manufacturer, &t.slot_manufacturer)
            && self.slot_id.is_none_or(|v| v == t.slot_id)
    }

    /// The library attributes that do not match `library`, as `name="want"
    /// (the module says "have")`.
    fn library_mismatches(&self, library: &LibraryFields) -> Vec<String> {
        [
            (
                "library-manufacturer",
                &self.library_manufacturer,
                &library.manufacturer,
            ),
            (
                "library-description",
                &self.library_description,
                &library.description,
            ),
            ("library-version", &self.library_version, &library.version),
        ]
        .into_iter()
        .filter_map(|(name, want, have)| {
            let want = want.as_ref()?;
            let same = if name == "library-version" {
                // RFC 7512: "M" is version M.0; "2.06" is 2.6.
                version(want).is_some() && version(want) == version(have)
            } else {
                want == have
            };
            (!same).then(|| format!("{name}=\"{want}\" (the module says \"{have}\")"))
        })
        .collect()
    }
}

/// `M[.m]` as numbers, `m` 0 when absent.
fn version(v: &str) -> Option<(u64, u64)> {
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Arc<Module>>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Module {
    /// Loads the module at `path` once per process and calls `C_Initialize`.
    pub fn load(path: &Path) -> Result<Arc<Module>> {
        let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(path) {
            return Ok(m.clone());
        }
        // dlopen searches the library path for a name without a slash, so a
        // relative path that exists here could still load another library.
        if !path.is_absolute() {
            return Err(HsmError::ModuleLoad {
                path: path.to_path_buf(),
                reason: "not an absolute path (give module-path=/…/lib….so)".into(),
            });
        }
        if !path.exists() {
            return Err(HsmError::ModuleLoad {
                path: path.to_path_buf(),
                reason: "no such file".into(),
            });
        }
        let pkcs11 = Pkcs11::new(path).map_err(|e| HsmError::ModuleLoad {
            path: path.to_path_buf(),
            reason: match e {
                CkError::LibraryLoading(e) => e.to_string(),
                // "PKCS#11 C_GetInterface failed: CKR_DEVICE_ERROR", not
                // cryptoki's paragraph of PKCS#11 prose.
                other => HsmError::from_cryptoki(other).to_string(),
            },
        })?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                return Err(HsmError::Initialize {
                    path: path.to_path_buf(),
                    source: Box::new(e.into()),
                });
            }
        }
        let functions = FunctionList::of(&pkcs11);
        let library = functions.info()?;
        let module = Arc::new(Module {
            pkcs11,
            path: path.to_path_buf(),
            functions,
            library,
        });
        cache.insert(path.to_path_buf(), module.clone());
        Ok(module)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn pkcs11(&self) -> &Pkcs11 {
        &self.pkcs11
    }

    pub(crate) fn functions(&self) -> &FunctionList {
        &self.functions
    }

    /// `C_GetInfo`: manufacturer, description and version, trimmed.
    pub fn library(&self) -> &LibraryFields {
        &self.library
    }

    /// What imgseal must do differently for this module's `slot_id` token
    /// (quirks.rs), from what the module and the token say of themselves.
    pub fn quirks(&self, slot_id: u64) -> Quirks {
        let token = self.functions.token_info(slot_id).unwrap_or_default();
        Quirks::detect(&self.library, &token)
    }

    /// Every slot holding an initialised token.
    pub fn tokens(&self) -> Result<Vec<TokenSummary>> {
        let mut out = Vec::new();
        for slot in self.functions.slots_with_token()? {
            let info = self.functions.token_info(slot)?;
            if !info.initialized() {
                continue;
            }
            let slot_info = self.functions.slot_info(slot).unwrap_or_default();
            out.push(TokenSummary {
                slot_id: slot,
                label: info.label,
                serial: info.serial,
                manufacturer: info.manufacturer,
                model: info.model,
                slot_description: slot_info.description,
                slot_manufacturer: slot_info.manufacturer,
            });
        }
        Ok(out)
    }

    /// The one slot whose token matches every attribute of `sel`.
    pub fn find_slot(&self, sel: &TokenSelector) -> Result<Slot> {
        let mismatched = sel.library_mismatches(&self.library);
        if !mismatched.is_empty() {
            return Err(HsmError::TokenNotFound(format!(
                "{sel} in module {}: the URI names {}",
                self.path.display(),
                mismatched.join(", ")
            )));
        }
        let tokens = self.tokens()?;
        let none_at_all = tokens.is_empty();
        let mut matches: Vec<TokenSummary> = tokens
            .into_iter()
            .filter(|t| sel.matches_token(t))
            .collect();
        match matches.len() {
            0 if none_at_all => Err(HsmError::TokenNotFound(format!(
                "{sel} in module {}: the module shows no initialised token at all; check the configuration or token store it reads (SOFTHSM2_CONF, KRYOPTIC_CONF, TPM2_PKCS11_STORE, openCryptoki's pkcsconf -t)",
                self.path.display()
            ))),
            0 => Err(HsmError::TokenNotFound(format!(
                "{sel} in module {}",
                self.path.display()
            ))),
            1 => Slot::try_from(matches.remove(0).slot_id).map_err(HsmError::from),
            _ => Err(HsmError::TokenAmbiguous {
                selector: format!("{sel} in module {}", self.path.display()),
                candidates: matches
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    /// Initialises a new token in the first free slot (`C_InitToken`, then the
    /// security officer sets the user PIN with `C_InitPIN`) and returns its slot.
    pub fn init_token(&self, label: &str, so_pin: &str, user_pin: &str) -> Result<Slot> {
        let free = self
            .functions
            .slots_with_token()?
            .into_iter()
            .find(|s| {
                self.functions
                    .token_info(*s)
                    .map(|i| !i.initialized())
                    .unwrap_or(false)
            })
            .ok_or_else(|| HsmError::NoFreeSlot(self.path.clone()))?;
        let free = Slot::try_from(free)?;
        let so = AuthPin::from(SecretString::from(so_pin.to_string()));
        self.pkcs11.init_token(free, &so, label)?;
        // SoftHSM moves a freshly initialised token to a new slot id: find it by label.
        let slot = self.find_slot(&TokenSelector {
            label: Some(label.to_string()),
            ..Default::default()
        })?;
        let session = self.pkcs11.open_rw_session(slot)?;
        session.login(UserType::So, Some(&so))?;
        session.init_pin(&AuthPin::from(SecretString::from(user_pin.to_string())))?;
        session.logout()?;
        Ok(slot)
    }

    /// Opens the token in `slot`; logs the user in when a PIN is given.
    pub fn open(
        self: &Arc<Self>,
        slot: Slot,
        pin: Option<&str>,
        read_write: bool,
    ) -> Result<Token> {
        let session = if read_write {
            self.pkcs11.open_rw_session(slot)?
        } else {
            self.pkcs11.open_ro_session(slot)?
        };
        let info = self.functions.token_info(slot.id()).ok();
        let label = info.as_ref().map(|i| i.label.clone()).unwrap_or_default();
        let quirks = Quirks::detect(&self.library, &info.clone().unwrap_or_default());
        let mut logged_in = false;
        if let Some(pin) = pin {
            // A token that says its user PIN is locked cannot log the user in
            // (PKCS#11 CKF_USER_PIN_LOCKED); say so rather than spend a try.
            // SoftHSM 2.6.1 never locks a PIN itself (no retry counter) and
            // still accepts logins when the flag is set in its token file,
            // so this check is also how tests/device_faults.rs reaches the
            // locked-PIN path with a real module.
            if info.as_ref().is_some_and(|i| i.user_pin_locked()) {
                return Err(HsmError::PinLocked {
                    token: label,
                    advice: quirks.pin_locked_advice(),
                });
            }
            let auth = AuthPin::from(SecretString::from(pin.to_string()));
            match session.login(UserType::User, Some(&auth)) {
                // Login is per application and token: another session of ours may hold it.
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => logged_in = true,
                Err(CkError::Pkcs11(
                    rv @ (RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid),
                    _,
                )) => {
                    return Err(HsmError::PinIncorrect {
                        token: label,
                        code: crate::error::ckr_name(rv),
                    });
                }
                Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                    return Err(HsmError::PinLocked {
                        token: label,
                        advice: quirks.pin_locked_advice(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Token {
            module: self.clone(),
            slot,
            session,
            label,
            logged_in,
            quirks,
        })
    }
}

/// An open token: one session, logged in for the token's whole life when a PIN
/// was given. Object handles found through it stay valid while it lives.
pub struct Token {
    pub(crate) module: Arc<Module>,
    pub(crate) slot: Slot,
    pub(crate) session: Session,
    pub(crate) label: String,
    pub(crate) logged_in: bool,
    pub(crate) quirks: Quirks,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .field("slot", &self.slot.id())
            .field("logged_in", &self.logged_in)
            .finish()
    }
}

impl Token {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn slot_id(&self) -> u64 {
        self.slot.id()
    }

    pub fn module(&self) -> &Arc<Module> {
        &self.module
    }

    pub fn is_logged_in(&self) -> bool {
        self.logged_in
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn quirks(&self) -> &Quirks {
        &self.quirks
    }
}
