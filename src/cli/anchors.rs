//! `imgseal anchors …`: the trust anchors sealed in the TPM; and how `verify`
//! and `cert verify` pick them up (`--anchors`).

use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use imgseal::anchors::{
    self, AnchorSet, AnchorStore, BundleSource, CounterState, DeleteProtection, Inspection,
};
use imgseal::error::{Error, ErrorKind};
use imgseal::x509::Certificate;
use imgseal_tpm::{COUNTER_INDEX, DATA_INDEX, RECORD_INDEX, Tcti, Tpm};
use serde::Serialize;
use serde_json::json;
use std::io::{self, Write};

use super::devices::{
    OwnerAuthArgs, StoreArgs, anchor_store, find_in, open_tpm, owner_auth_hint,
    require_sealed_somewhere,
};
use super::output::{Plain, Report, Verdict, emit};
use super::{Context, TctiArgs, TokenArgs, read_input_file};
use imgseal::backend::pkcs11::Login;

/// `--delete-protection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DeleteProtectionArg {
    Auto,
    Required,
    Off,
}

#[derive(Debug, Args)]
pub(crate) struct AnchorsArgs {
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
pub(crate) enum AnchorsCommand {
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
pub(crate) struct CertSources {
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
    pub(crate) fn devices(&mut self) -> (Option<&mut TokenArgs>, Option<&TctiArgs>) {
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

pub(super) fn run(ctx: &Context, args: AnchorsArgs) -> anyhow::Result<i32> {
    Ok(run_command(ctx, args).map_err(owner_auth_hint)?)
}

fn run_command(ctx: &Context, args: AnchorsArgs) -> Result<i32, Error> {
    let store = anchor_store(ctx)?;
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
                emit(
                    ctx,
                    &Plain::new(
                        json!({
                            "out": out,
                            "version": version,
                            "certificates": bundle.anchors.len(),
                            "sha256": digest,
                        }),
                        "",
                    ),
                )?;
            } else {
                // Stderr: the bundle is the output, stdout stays empty.
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
            emit(
                ctx,
                &Plain::new(
                    json!({"locked": locked, "tcti": tcti.to_string()}),
                    format!(
                        "trust anchors write-locked until the next TPM reset (NV {RECORD_INDEX:#010x}, {COUNTER_INDEX:#010x}, {DATA_INDEX:#010x})"
                    ),
                ),
            )
        }
        AnchorsCommand::Clear { .. } => {
            require_sealed_somewhere(ctx)?;
            let (mut tpm, tcti, _) = open_tpm(ctx, Some(&args.auth))?;
            let any = anchors::clear(&mut tpm, &store)?;
            let text = if any {
                format!(
                    "trust anchors removed from the TPM and {}",
                    store.dir.display()
                )
            } else {
                "no trust anchors were sealed".to_string()
            };
            emit(
                ctx,
                &Plain::new(json!({"cleared": any, "tcti": tcti.to_string()}), text),
            )
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
    emit(
        ctx,
        &SealReport {
            ids: set.ids(),
            tcti: tcti.to_string(),
            verb,
            outcome,
        },
    )
}

/// `anchors seal|add|remove`: what was sealed where.
#[derive(Serialize)]
struct SealReport<'a> {
    #[serde(flatten)]
    outcome: anchors::SealOutcome,
    ids: Vec<String>,
    tcti: String,
    #[serde(skip)]
    verb: &'a str,
}

impl Report for SealReport<'_> {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let (outcome, verb) = (&self.outcome, self.verb);
        if outcome.completed_interrupted_seal {
            writeln!(out, "completed an interrupted earlier seal first")?;
        }
        writeln!(
            out,
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
        )?;
        if let Some(why) = &outcome.unprotected_because {
            writeln!(
                out,
                "warning: the platform hierarchy refused to define the anchor indices ({why}); they are owner-created, so the TPM owner can delete and replace them (docs/anchors.md, \"What the lock protects\")"
            )?;
        }
        Ok(())
    }
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
    let json = json!({
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
            "reason": reason,
    });
    let report = ShowReport {
        json,
        verdict: Verdict::named(if valid { "intact" } else { "refused" }, code),
        inspection: &inspection,
        tcti: &tcti,
        origin: origin.to_string(),
        refusal: verdict.as_ref().err().map(|e| e.to_string()),
    };
    emit(ctx, &report)?;
    if let Err(e) = verdict {
        // A refusal is this command's answer (exit 1); anything else (a
        // missing bundle, a device fault) is an error as well.
        if !ctx.json && e.kind() != ErrorKind::Invalid {
            return Err(e);
        }
    }
    Ok(code)
}

/// `anchors show`: the TPM's record, the bundle copies, and whether
/// verification would accept them.
#[derive(Serialize)]
#[serde(transparent)]
struct ShowReport<'a> {
    json: serde_json::Value,
    #[serde(skip)]
    verdict: Verdict,
    #[serde(skip)]
    inspection: &'a Inspection,
    #[serde(skip)]
    tcti: &'a Tcti,
    #[serde(skip)]
    origin: String,
    #[serde(skip)]
    refusal: Option<String>,
}

impl Report for ShowReport<'_> {
    fn verdict(&self) -> Option<Verdict> {
        Some(self.verdict)
    }

    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let Inspection {
            tpm: state,
            files,
            inline_matches,
            found,
        } = self.inspection;
        let (tcti, origin) = (self.tcti, &self.origin);
        writeln!(out, "TPM:      {tcti} (from {origin})")?;
        writeln!(
            out,
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
        )?;
        writeln!(
            out,
            "counter:  NV {COUNTER_INDEX:#010x} = {} ({})",
            state.counter,
            counter_text(state.counter_state)
        )?;
        writeln!(
            out,
            "locked:   {}",
            if state.locked {
                "yes, until the next TPM reset"
            } else {
                "no"
            }
        )?;
        writeln!(out, "deletion: {}", deletion_text(state.delete_protected()))?;
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
            writeln!(out, "bundle:   {}: {what}", f.path.display())?;
        }
        match inline_matches {
            Some(true) => writeln!(out, "bundle:   NV {DATA_INDEX:#010x}: matches the record")?,
            Some(false) => writeln!(
                out,
                "bundle:   NV {DATA_INDEX:#010x}: does NOT match the record"
            )?,
            None => {}
        }
        if let Some((bundle, _, source)) = found {
            if *source != BundleSource::Disk {
                writeln!(out, "in force: the copy on {source}")?;
            }
            if bundle.anchors.is_empty() {
                writeln!(out, "anchors:  none (nothing is trusted)")?;
            } else {
                writeln!(out, "anchors:")?;
            }
            for (id, c) in bundle.anchors.iter() {
                writeln!(
                    out,
                    "  {id}  {}  sha256:{}",
                    c.subject(),
                    c.sha256_fingerprint()
                )?;
            }
        }
        match &self.refusal {
            None => writeln!(out, "verdict:  the sealed anchors are intact"),
            Some(e) => writeln!(out, "verdict:  refused: {e}"),
        }
    }
}
