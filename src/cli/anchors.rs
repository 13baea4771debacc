//! `imgseal anchors …`: the trust anchors sealed in the TPM; and how `verify`
//! and `cert verify` pick them up (`--anchors`).

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use imgseal::anchors::{
    self, AnchorSet, AnchorStore, BundleSource, CounterState, DeleteProtection, Inspection,
    SealedAnchors,
};
use imgseal::config::TrustSettings;
use imgseal::error::{Error, ErrorKind};
use imgseal::x509::Certificate;
use imgseal_tpm::{COUNTER_INDEX, DATA_INDEX, RECORD_INDEX, Tcti, TctiOrigin, Tpm};
use serde_json::json;
use zeroize::Zeroizing;

use super::cert::{StoreArgs, find_in};
use super::trust::TrustArgs;
use super::{Context, TctiArgs, TokenArgs, print_json, read_input_file};
use imgseal::backend::pkcs11::Login;

/// Where trusted certificates come from, for `verify` and `cert verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AnchorsMode {
    /// The TPM-sealed set when no trusted ids come from the flag, the
    /// environment or the configuration, and anchors were sealed from this
    /// $IMGSEAL_HOME (or --tcti names a TPM).
    Auto,
    /// Always the TPM-sealed set (fails when none is sealed).
    Tpm,
    /// Never the TPM: trusted ids only.
    Off,
}

/// `--delete-protection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeleteProtectionArg {
    Auto,
    Required,
    Off,
}

/// `--owner-auth-file` and `--platform-auth-file`, shared by the commands
/// that write to the TPM.
#[derive(Debug, Args, Clone, Default)]
pub struct OwnerAuthArgs {
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
    pub fn read(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        read_auth(
            self.owner_auth_file.as_deref(),
            "--owner-auth-file",
            "IMGSEAL_TPM_OWNER_AUTH",
            "owner",
        )
    }

    /// The platform authorization.
    pub fn read_platform(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        read_auth(
            self.platform_auth_file.as_deref(),
            "--platform-auth-file",
            "IMGSEAL_TPM_PLATFORM_AUTH",
            "platform",
        )
    }

    /// Whether a platform authorization was given at all (an empty one is
    /// swtpm's and many firmwares' default, and is used without being given).
    pub fn platform_given(&self) -> bool {
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
fn require_sealed_somewhere(ctx: &Context) -> Result<(), Error> {
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
pub fn open_tpm(
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

fn store(ctx: &Context) -> Result<AnchorStore, Error> {
    Ok(AnchorStore::in_home(&ctx.home()?.dir))
}

/// The sealed anchors verification uses, if any: with `--anchors tpm`
/// always; with `auto` (the default) when no trusted ids came from the flag,
/// the environment or the configuration and [`anchors::auto_trigger`] holds.
pub fn sealed_for_verification(
    ctx: &Context,
    trust: &TrustArgs,
    settings: &TrustSettings,
) -> Result<Option<(SealedAnchors, Tcti)>, Error> {
    let use_tpm = match trust.anchors.unwrap_or(AnchorsMode::Auto) {
        AnchorsMode::Off => false,
        AnchorsMode::Tpm => {
            if !trust.trusted.is_empty() {
                return Err(Error::usage(
                    "--anchors tpm and --trusted-cert-id both name the trusted certificates: give one",
                ));
            }
            true
        }
        AnchorsMode::Auto => {
            settings.trusted_ids.is_empty()
                && anchors::auto_trigger(&ctx.home()?.dir, ctx.tcti.is_some())
        }
    };
    if !use_tpm {
        return Ok(None);
    }
    let (mut tpm, tcti, _) = open_tpm(ctx, None)?;
    let sealed = anchors::load(&mut tpm, &store(ctx)?)?;
    Ok(Some((sealed, tcti)))
}

/// What `verify --json` adds about the sealed anchors.
pub fn describe_sealed(sealed: &SealedAnchors, tcti: &Tcti) -> serde_json::Value {
    json!({
        "version": sealed.bundle.version,
        "digest": hex::encode(sealed.digest),
        "certificates": sealed.bundle.anchors.len(),
        "source": sealed.source.to_string(),
        "counter_state": sealed.tpm.counter_state,
        "locked": sealed.tpm.locked,
        "delete_protected": sealed.tpm.delete_protected(),
        "tcti": tcti.to_string(),
    })
}

#[derive(Debug, Args)]
pub struct AnchorsArgs {
    #[command(flatten)]
    pub auth: OwnerAuthArgs,
    /// Who may delete the anchor indices a seal defines: `auto` defines them
    /// under the platform hierarchy when it accepts (then the TPM owner
    /// cannot delete and replace them) and else under the owner's, saying
    /// so; `required` refuses to seal without that; `off` uses the owner's.
    /// Indices already defined keep theirs. A given platform authorization
    /// makes `auto` mean `required`.
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        default_value = "auto",
        global = true
    )]
    pub delete_protection: DeleteProtectionArg,
    #[command(subcommand)]
    pub command: AnchorsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AnchorsCommand {
    /// Seal these certificates as the trust anchors (a new version replacing the sealed set).
    Seal {
        #[command(flatten)]
        sources: CertSources,
        #[command(flatten)]
        tcti: TctiArgs,
    },
    /// Show what the TPM holds and whether the bundle on disk matches it.
    Show {
        #[command(flatten)]
        tcti: TctiArgs,
    },
    /// Seal a new version with these certificates added.
    Add {
        #[command(flatten)]
        sources: CertSources,
        #[command(flatten)]
        tcti: TctiArgs,
    },
    /// Seal a new version without these certificate ids.
    Remove {
        /// Certificate ids (the same as --cert-id).
        #[arg(value_name = "ID", required_unless_present = "cert_ids")]
        ids: Vec<String>,
        /// Certificate ids to remove; repeatable, each may be a
        /// comma-separated list.
        #[arg(long = "cert-id", value_name = "ID[,ID…]")]
        cert_ids: Vec<String>,
        #[command(flatten)]
        tcti: TctiArgs,
    },
    /// Write-lock the sealed anchors until the next TPM reset.
    Lock {
        #[command(flatten)]
        tcti: TctiArgs,
    },
    /// Remove the anchors from the TPM and from $IMGSEAL_HOME.
    Clear {
        #[command(flatten)]
        tcti: TctiArgs,
    },
    /// Build, without a TPM, the bundle a host sealing these certificates at
    /// this version holds: a verifier's `attest verify --expected-anchors`.
    Bundle {
        #[command(flatten)]
        sources: CertSources,
        /// The sealed version the host must hold (`anchors show` on the
        /// host prints it).
        #[arg(long = "anchors-version", value_name = "N")]
        version: u64,
        /// Where to write the bundle.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("sources").required(true).multiple(true).args(["cert_ids", "certs"])))]
pub struct CertSources {
    /// Certificate ids, looked up in --cert-dir or the token; repeatable, each
    /// may be a comma-separated list.
    #[arg(long = "cert-id", value_name = "ID[,ID…]")]
    pub cert_ids: Vec<String>,
    /// Certificate files (PEM or DER), each sealed under its file name
    /// without the extension; repeatable.
    #[arg(long = "cert", value_name = "FILE")]
    pub certs: Vec<PathBuf>,
    /// Where --cert-id is looked up (default: the token, or Barbican when a
    /// cloud is configured).
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub token: TokenArgs,
}

impl AnchorsCommand {
    /// `--token` where certificates are looked up by id (`seal`, `add`,
    /// `bundle`), and `--tcti` where the TPM is opened (all but `bundle`).
    pub fn devices(&mut self) -> (Option<&mut TokenArgs>, Option<&TctiArgs>) {
        match self {
            AnchorsCommand::Seal { sources, tcti } | AnchorsCommand::Add { sources, tcti } => {
                (Some(&mut sources.token), Some(tcti))
            }
            AnchorsCommand::Bundle { sources, .. } => (Some(&mut sources.token), None),
            AnchorsCommand::Show { tcti }
            | AnchorsCommand::Remove { tcti, .. }
            | AnchorsCommand::Lock { tcti }
            | AnchorsCommand::Clear { tcti } => (None, Some(tcti)),
        }
    }
}

impl CertSources {
    fn add_to(&self, ctx: &Context, set: &mut AnchorSet) -> Result<(), Error> {
        let ids: Vec<String> = self
            .cert_ids
            .iter()
            .flat_map(|s| imgseal::config::split_ids(s))
            .collect();
        // `--cert-id ""` (or ",") names nothing: refused, rather than seal
        // a new version with nothing added, or an empty set trusting nothing.
        if !self.cert_ids.is_empty() && ids.is_empty() {
            return Err(Error::usage("--cert-id names no certificate id"));
        }
        if !ids.is_empty() {
            let opened = self.store.open(ctx, None, Login::NotNeeded)?;
            for id in ids {
                set.insert(&id, find_in(&opened, &id)?.certificate)?;
            }
        }
        for path in &self.certs {
            let cert = Certificate::parse(&read_input_file(path)?, &path.display().to_string())?;
            let id = file_id(path)?;
            set.insert(&id, cert)?;
        }
        Ok(())
    }
}

fn file_id(path: &Path) -> Result<String, Error> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .ok_or_else(|| Error::usage(format!("{}: no file name to use as an id", path.display())))
}

pub fn run(ctx: &Context, args: AnchorsArgs) -> anyhow::Result<i32> {
    Ok(run_command(ctx, args).map_err(owner_auth_hint)?)
}

/// Says where the owner authorization comes from when the TPM refused it.
pub fn owner_auth_hint(e: Error) -> Error {
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

fn run_command(ctx: &Context, args: AnchorsArgs) -> Result<i32, Error> {
    let store = store(ctx)?;
    let protection = match args.delete_protection {
        // A platform authorization someone took the trouble to give is meant
        // to be used: its refusal is an error, not a reason to fall back.
        DeleteProtectionArg::Auto if args.auth.platform_given() => DeleteProtection::Required,
        DeleteProtectionArg::Auto => DeleteProtection::Auto,
        DeleteProtectionArg::Required => DeleteProtection::Required,
        DeleteProtectionArg::Off => DeleteProtection::Off,
    };
    match args.command {
        AnchorsCommand::Seal { sources, .. } => {
            let mut set = AnchorSet::new();
            sources.add_to(ctx, &mut set)?;
            let (mut tpm, tcti, _) = open_tpm(ctx, Some(&args.auth))?;
            seal_and_report(ctx, &mut tpm, &tcti, &store, &set, protection, "sealed")
        }
        AnchorsCommand::Add { sources, .. } => {
            require_sealed_somewhere(ctx)?;
            let (mut tpm, tcti, _) = open_tpm(ctx, Some(&args.auth))?;
            let mut set = anchors::load(&mut tpm, &store)?.bundle.anchors;
            sources.add_to(ctx, &mut set)?;
            seal_and_report(
                ctx,
                &mut tpm,
                &tcti,
                &store,
                &set,
                protection,
                "added; sealed",
            )
        }
        AnchorsCommand::Remove { ids, cert_ids, .. } => {
            require_sealed_somewhere(ctx)?;
            let ids: Vec<String> = ids
                .iter()
                .chain(&cert_ids)
                .flat_map(|s| imgseal::config::split_ids(s))
                .collect();
            // `remove ""` removed nothing and still sealed a new version.
            if ids.is_empty() {
                return Err(Error::usage("anchors remove: no certificate id given"));
            }
            let (mut tpm, tcti, _) = open_tpm(ctx, Some(&args.auth))?;
            let mut set = anchors::load(&mut tpm, &store)?.bundle.anchors;
            for id in ids {
                if set.remove(&id).is_none() {
                    return Err(Error::not_found(format!(
                        "certificate id \"{id}\" is not among the sealed anchors"
                    )));
                }
            }
            seal_and_report(
                ctx,
                &mut tpm,
                &tcti,
                &store,
                &set,
                protection,
                "removed; sealed",
            )
        }
        AnchorsCommand::Show { .. } => show(ctx, &store),
        AnchorsCommand::Bundle {
            sources,
            version,
            out,
        } => {
            let mut set = AnchorSet::new();
            sources.add_to(ctx, &mut set)?;
            let bundle = imgseal::anchors::Bundle {
                version,
                anchors: set,
            };
            let bytes = bundle.encode();
            imgseal::home::write_output_file(&out, &bytes)?;
            let digest = hex::encode(imgseal::anchors::Bundle::digest(&bytes));
            if ctx.json {
                print_json(&json!({
                    "out": out,
                    "version": version,
                    "certificates": bundle.anchors.len(),
                    "sha256": digest,
                }));
            } else {
                eprintln!(
                    "wrote the expected bundle, version {version} with {} certificate{} (sha256 {digest}), to {}",
                    bundle.anchors.len(),
                    if bundle.anchors.len() == 1 { "" } else { "s" },
                    out.display()
                );
            }
            Ok(0)
        }
        AnchorsCommand::Lock { .. } => {
            require_sealed_somewhere(ctx)?;
            let (mut tpm, tcti, _) = open_tpm(ctx, Some(&args.auth))?;
            anchors::lock(&mut tpm)?;
            let locked = anchors::is_locked(&mut tpm)?;
            if ctx.json {
                print_json(&json!({"locked": locked, "tcti": tcti.to_string()}));
            } else {
                println!(
                    "trust anchors write-locked until the next TPM reset (NV {RECORD_INDEX:#010x}, {COUNTER_INDEX:#010x}, {DATA_INDEX:#010x})"
                );
            }
            Ok(0)
        }
        AnchorsCommand::Clear { .. } => {
            require_sealed_somewhere(ctx)?;
            let (mut tpm, tcti, _) = open_tpm(ctx, Some(&args.auth))?;
            let any = anchors::clear(&mut tpm, &store)?;
            if ctx.json {
                print_json(&json!({"cleared": any, "tcti": tcti.to_string()}));
            } else if any {
                println!(
                    "trust anchors removed from the TPM and {}",
                    store.dir.display()
                );
            } else {
                println!("no trust anchors were sealed");
            }
            Ok(0)
        }
    }
}

fn seal_and_report(
    ctx: &Context,
    tpm: &mut Tpm,
    tcti: &Tcti,
    store: &AnchorStore,
    set: &AnchorSet,
    protection: DeleteProtection,
    verb: &str,
) -> Result<i32, Error> {
    let outcome = anchors::seal(tpm, store, set, protection, &mut |_| {})?;
    if ctx.json {
        let mut obj = json!(outcome);
        obj["ids"] = json!(set.ids());
        obj["tcti"] = json!(tcti.to_string());
        print_json(&obj);
    } else {
        if outcome.completed_interrupted_seal {
            println!("completed an interrupted earlier seal first");
        }
        println!(
            "{verb} {} trust anchor{} as version {} (sha256 {}) in NV {RECORD_INDEX:#010x}; bundle {} ({} bytes{})",
            outcome.count,
            if outcome.count == 1 { "" } else { "s" },
            outcome.version,
            hex::encode(outcome.digest),
            outcome.bundle_path.display(),
            outcome.bundle_len,
            if outcome.inline {
                format!(", also kept in NV {DATA_INDEX:#010x}")
            } else {
                String::new()
            }
        );
        if let Some(why) = &outcome.unprotected_because {
            println!(
                "warning: the platform hierarchy refused to define the anchor indices ({why}); they are owner-created, so the TPM owner can delete and replace them (docs/anchors.md, \"What the lock protects\")"
            );
        }
    }
    Ok(0)
}

fn deletion_text(delete_protected: bool) -> &'static str {
    if delete_protected {
        "platform-created: the TPM owner cannot delete or replace the indices"
    } else {
        "owner-created: the TPM owner can delete and replace the indices (not protected)"
    }
}

fn counter_text(state: CounterState) -> &'static str {
    match state {
        CounterState::Current => "current",
        CounterState::SealPending => {
            "one behind the record: a seal stopped after its commit; the new set is in force and the next write completes it"
        }
        CounterState::RolledBack => "ahead of the record: the record was rolled back",
        CounterState::Ahead => "behind the record by more than one: the record is forged",
    }
}

fn show(ctx: &Context, store: &AnchorStore) -> Result<i32, Error> {
    require_sealed_somewhere(ctx)?;
    let (mut tpm, tcti, origin) = open_tpm(ctx, None)?;
    let inspection = anchors::inspect(&mut tpm, store)?;
    // The verdict is the one verification would reach.
    let verdict = anchors::load(&mut tpm, store);
    let Inspection {
        tpm: state,
        files,
        inline_matches,
        found,
    } = &inspection;
    let (valid, reason) = match &verdict {
        Ok(_) => (true, None),
        Err(e) => (false, Some(e.to_string())),
    };
    let code = match &verdict {
        Ok(_) => 0,
        Err(e) => e.kind().exit_code(),
    };
    let anchors_list: Vec<serde_json::Value> = found
        .iter()
        .flat_map(|(b, _, _)| b.anchors.iter())
        .map(|(id, c)| {
            json!({"id": id, "subject": c.subject(), "sha256_fingerprint": c.sha256_fingerprint()})
        })
        .collect();
    if ctx.json {
        print_json(&json!({
            "tcti": tcti.to_string(),
            "tcti_source": origin.to_string(),
            "record": {
                "index": format!("{RECORD_INDEX:#010x}"),
                "version": state.record.version,
                "certificates": state.record.count,
                "bundle_len": state.record.bundle_len,
                "digest": hex::encode(state.record.digest),
                "inline": state.record.inline,
                "bytes": hex::encode(&state.record_bytes),
                "name": hex::encode(&state.record_info.name),
            },
            "counter": {
                "index": format!("{COUNTER_INDEX:#010x}"),
                "value": state.counter,
                "state": state.counter_state,
            },
            "locked": state.locked,
            "delete_protected": state.delete_protected(),
            "bundle": {
                "source": found.as_ref().map(|(_, _, s)| s.to_string()),
                "files": files,
                "inline_matches": inline_matches,
            },
            "anchors": anchors_list,
            "verdict": if valid { "intact" } else { "refused" },
            "reason": reason,
            "exit_code": code,
        }));
        return Ok(code);
    }
    println!("TPM:      {tcti} (from {origin})");
    println!(
        "record:   NV {RECORD_INDEX:#010x}: version {}, {} certificate{}, bundle {} bytes, sha256 {}{}",
        state.record.version,
        state.record.count,
        if state.record.count == 1 { "" } else { "s" },
        state.record.bundle_len,
        hex::encode(state.record.digest),
        if state.record.inline {
            format!(", also inline in NV {DATA_INDEX:#010x}")
        } else {
            String::new()
        }
    );
    println!(
        "counter:  NV {COUNTER_INDEX:#010x} = {} ({})",
        state.counter,
        counter_text(state.counter_state)
    );
    println!(
        "locked:   {}",
        if state.locked {
            "yes, until the next TPM reset"
        } else {
            "no"
        }
    );
    println!("deletion: {}", deletion_text(state.delete_protected()));
    for f in files {
        let what = if !f.exists {
            "missing".to_string()
        } else if f.matches {
            "matches the record".to_string()
        } else {
            match (&f.version, &f.problem) {
                (Some(v), _) => format!("does NOT match the record (holds version {v})"),
                (None, Some(p)) => format!("does NOT match the record ({p})"),
                _ => "does NOT match the record".to_string(),
            }
        };
        println!("bundle:   {}: {what}", f.path.display());
    }
    match inline_matches {
        Some(true) => println!("bundle:   NV {DATA_INDEX:#010x}: matches the record"),
        Some(false) => println!("bundle:   NV {DATA_INDEX:#010x}: does NOT match the record"),
        None => {}
    }
    if let Some((bundle, _, source)) = found {
        if *source != BundleSource::Disk {
            println!("in force: the copy on {source}");
        }
        if bundle.anchors.is_empty() {
            println!("anchors:  none (nothing is trusted)");
        } else {
            println!("anchors:");
        }
        for (id, c) in bundle.anchors.iter() {
            println!("  {id}  {}  sha256:{}", c.subject(), c.sha256_fingerprint());
        }
    }
    match verdict {
        Ok(_) => println!("verdict:  the sealed anchors are intact"),
        Err(e) => {
            println!("verdict:  refused: {e}");
            // A refusal is this command's answer (exit 1); anything else
            // (a missing bundle, a device fault) is an error as well.
            if e.kind() != ErrorKind::Invalid {
                return Err(e);
            }
        }
    }
    Ok(code)
}
