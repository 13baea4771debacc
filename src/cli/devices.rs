//! Opening what commands work with, in one place: the certificate store
//! (`--cert-dir`, `--cert-source`, `--cert-cache`) and the TPM (`--tcti`, the
//! embedded swtpm, the hierarchy authorizations). Commands and trust
//! resolution depend on this module, never the other way round.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use clap::{Args, ValueEnum};
use imgseal::anchors::AnchorStore;
use imgseal::backend::StoredCertificate;
use imgseal::backend::pkcs11::Login;
use imgseal::certsource::{BarbicanSource, CertificateSource, TokenSource};
use imgseal::error::Error;
use imgseal::store::DirStore;
use imgseal::x509::Certificate;
use imgseal_tpm::{Tcti, TctiOrigin, Tpm};
use zeroize::Zeroizing;

use super::{Context, read_input_file};

// ---- certificate stores ------------------------------------------------

/// Where certificates are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SourceKind {
    /// A directory of <id>.pem / <id>.der files (--cert-dir).
    Dir,
    /// Certificate objects on the PKCS#11 token.
    Token,
    /// Barbican, the cloud's key manager, read as Glance and Nova read it.
    Barbican,
}

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct StoreArgs {
    /// Use a directory of <id>.pem / <id>.der files (implies --cert-source dir).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Where certificates are: dir, token or barbican. Default: dir with
    /// --cert-dir (or the configuration's cert_dir); else barbican when a
    /// cloud is configured (--os-cloud, $OS_CLOUD, $OS_AUTH_URL); else the token.
    #[arg(long, value_enum, value_name = "SOURCE")]
    pub cert_source: Option<SourceKind>,
    /// With barbican: keep each certificate read in DIR (<uuid>.pem), and use
    /// that copy only when Barbican cannot be reached.
    #[arg(long, value_name = "DIR")]
    pub cert_cache: Option<PathBuf>,
}

/// A certificate source, opened once for a command.
pub(crate) struct OpenedSource {
    pub source: Rc<dyn CertificateSource>,
    pub kind: SourceKind,
    /// The directory, for a directory source: strict validation also reads
    /// the CRLs kept there.
    pub dir: Option<PathBuf>,
}

impl StoreArgs {
    /// Which source these flags (and the configuration's `cert_dir`) choose.
    pub(crate) fn kind(&self, ctx: &Context, config_dir: Option<&PathBuf>) -> SourceKind {
        match self.cert_source {
            Some(kind) => kind,
            None if self.cert_dir.is_some() || config_dir.is_some() => SourceKind::Dir,
            None if ctx.cloud.configured() => SourceKind::Barbican,
            None => SourceKind::Token,
        }
    }

    /// Opens the source these flags choose: the one place a command picks it.
    pub(crate) fn open(
        &self,
        ctx: &Context,
        config_dir: Option<&PathBuf>,
        login: Login,
    ) -> Result<OpenedSource, Error> {
        let kind = self.kind(ctx, config_dir);
        if self.cert_cache.is_some() && kind != SourceKind::Barbican {
            return Err(Error::usage(
                "--cert-cache goes with --cert-source barbican",
            ));
        }
        Ok(match kind {
            SourceKind::Dir => {
                let dir = self
                    .cert_dir
                    .clone()
                    .or_else(|| config_dir.cloned())
                    .ok_or_else(|| Error::usage("--cert-source dir needs --cert-dir DIR"))?;
                OpenedSource {
                    source: Rc::new(DirStore::new(&dir)?),
                    kind,
                    dir: Some(dir),
                }
            }
            SourceKind::Token => {
                if self.cert_dir.is_some() {
                    return Err(Error::usage(
                        "--cert-dir and --cert-source token contradict each other",
                    ));
                }
                OpenedSource {
                    source: Rc::new(TokenSource(Box::new(ctx.device(None, login)?))),
                    kind,
                    dir: None,
                }
            }
            SourceKind::Barbican => {
                if self.cert_dir.is_some() {
                    return Err(Error::usage(
                        "--cert-dir and --cert-source barbican contradict each other",
                    ));
                }
                OpenedSource {
                    source: Rc::new(BarbicanSource::new(
                        ctx.session()?,
                        self.cert_cache.clone(),
                    )?),
                    kind,
                    dir: None,
                }
            }
        })
    }
}

/// Everything in the source, as possible intermediates for strict validation.
/// Not Barbican's: listing a project's secrets means a request per secret, and
/// neither Glance nor Nova ever reads certificates it was not given the UUID
/// of; strict finds intermediates among the trusted ids and --intermediates.
pub(super) fn list_contents(opened: &OpenedSource) -> Result<Vec<(String, Certificate)>, Error> {
    if opened.kind == SourceKind::Barbican {
        return Ok(Vec::new());
    }
    Ok(opened
        .source
        .list()?
        .into_iter()
        .map(|s| (s.id, s.certificate))
        .collect())
}

/// `id` in the source, or not-found naming where it looked.
pub(super) fn find_in(opened: &OpenedSource, id: &str) -> Result<StoredCertificate, Error> {
    opened.source.find(id)?.ok_or_else(|| {
        Error::not_found(format!(
            "certificate \"{id}\" not found in {}{}",
            opened.source.describe(),
            opened
                .source
                .missing_hint()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        ))
    })
}

// ---- the TPM -----------------------------------------------------------

/// `--owner-auth-file` and `--platform-auth-file`, shared by the commands
/// that write to the TPM.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct OwnerAuthArgs {
    /// A file holding the TPM owner authorization (one trailing newline is
    /// ignored; "hex:…" for binary values). Default: $IMGSEAL_TPM_OWNER_AUTH,
    /// else empty. Never printed.
    #[arg(long, value_name = "FILE", global = true)]
    pub owner_auth_file: Option<PathBuf>,
    /// A file holding the TPM platform authorization, which defines and
    /// removes platform-created anchor indices (same format). Default:
    /// $IMGSEAL_TPM_PLATFORM_AUTH, else empty. Never printed.
    #[arg(long, value_name = "FILE", global = true)]
    pub platform_auth_file: Option<PathBuf>,
}

/// The largest TPM2B_AUTH (the size of a SHA-512 digest).
const MAX_AUTH: usize = 64;

impl OwnerAuthArgs {
    /// The owner authorization.
    pub(crate) fn read(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        read_auth(
            self.owner_auth_file.as_deref(),
            "--owner-auth-file",
            "IMGSEAL_TPM_OWNER_AUTH",
            "owner",
        )
    }

    /// The platform authorization.
    pub(crate) fn read_platform(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        read_auth(
            self.platform_auth_file.as_deref(),
            "--platform-auth-file",
            "IMGSEAL_TPM_PLATFORM_AUTH",
            "platform",
        )
    }

    /// Whether a platform authorization was given at all (an empty one is
    /// swtpm's and many firmwares' default, and is used without being given).
    pub(crate) fn platform_given(&self) -> bool {
        self.platform_auth_file.is_some() || std::env::var_os("IMGSEAL_TPM_PLATFORM_AUTH").is_some()
    }
}

/// A hierarchy authorization from `flag FILE`, else `$env`, else empty.
fn read_auth(
    file: Option<&Path>,
    flag: &str,
    env: &str,
    hierarchy: &str,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let (raw, origin) = match file {
        Some(path) => (
            Zeroizing::new(read_input_file(path)?),
            format!("{flag} {}", path.display()),
        ),
        None => match std::env::var_os(env) {
            Some(v) => (Zeroizing::new(v.into_encoded_bytes()), format!("${env}")),
            None => return Ok(Zeroizing::new(Vec::new())),
        },
    };
    let mut value: &[u8] = &raw;
    // Files written with `echo` end in a newline that is not part of the secret.
    value = value
        .strip_suffix(b"\n")
        .map(|v| v.strip_suffix(b"\r").unwrap_or(v))
        .unwrap_or(value);
    let value = match value.strip_prefix(b"hex:") {
        Some(h) => Zeroizing::new(hex::decode(h).map_err(|_| {
            // Never echo the value: it is a secret.
            Error::usage(format!("{origin}: the \"hex:\" value is not hex"))
        })?),
        None => Zeroizing::new(value.to_vec()),
    };
    if value.len() > MAX_AUTH {
        return Err(Error::usage(format!(
            "{origin}: the {hierarchy} authorization is {} bytes; a TPM takes at most {MAX_AUTH}",
            value.len()
        )));
    }
    Ok(value)
}

/// For commands that read or change anchors already sealed: when the TPM
/// would be the embedded swtpm and this home never started one, nothing can
/// be sealed there, so say so instead of manufacturing a TPM (and leaving a
/// daemon running) to find out.
pub(super) fn require_sealed_somewhere(ctx: &Context) -> Result<(), Error> {
    let named = ctx.tcti.as_deref().is_some_and(|t| !t.trim().is_empty())
        || imgseal_tpm::tcti::TCTI_ENV_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    let home = ctx.home()?;
    if named || imgseal_tpm::has_state(&home.dir.join("swtpm")) {
        return Ok(());
    }
    Err(Error::not_found(format!(
        "no trust anchors are sealed: {} has no embedded TPM yet (none was started); seal some with `imgseal anchors seal`, or name the TPM that holds them with --tcti",
        home.dir.display()
    )))
}

/// The TPM named by `--tcti`, $TPM2TOOLS_TCTI or $TCTI, else the embedded
/// swtpm under $IMGSEAL_HOME/swtpm (started if it is not running).
pub(super) fn open_tpm(
    ctx: &Context,
    auth: Option<&OwnerAuthArgs>,
) -> Result<(Tpm, Tcti, TctiOrigin), Error> {
    let home = ctx.home()?;
    let (tcti, origin) = Tcti::select(ctx.tcti.as_deref(), || {
        imgseal_tpm::ensure_running(&home.dir.join("swtpm"))
    })
    .map_err(Error::tpm("choosing the TPM"))?;
    let mut tpm = Tpm::open(&tcti).map_err(Error::tpm(format!("opening the TPM ({origin})")))?;
    if let Some(auth) = auth {
        tpm.set_owner_auth(&auth.read()?);
        tpm.set_platform_auth(&auth.read_platform()?);
    }
    Ok((tpm, tcti, origin))
}

/// Where this home keeps the anchor bundles.
pub(super) fn anchor_store(ctx: &Context) -> Result<AnchorStore, Error> {
    Ok(AnchorStore::in_home(&ctx.home()?.dir))
}

/// Says where the owner authorization comes from when the TPM refused it.
pub(super) fn owner_auth_hint(e: Error) -> Error {
    match e {
        Error::Tpm {
            context,
            source: source @ imgseal_tpm::TpmError::AuthFailed { .. },
        } => Error::Tpm {
            context: format!(
                "{context} (the owner authorization comes from --owner-auth-file or $IMGSEAL_TPM_OWNER_AUTH; the platform authorization, for platform-created anchor indices, from --platform-auth-file or $IMGSEAL_TPM_PLATFORM_AUTH)"
            ),
            source,
        },
        other => other,
    }
}
