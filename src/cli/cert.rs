//! `imgseal cert …`: the certificate store, in the token or in a directory.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use imgseal::backend::StoredCertificate;
use imgseal::backend::pkcs11::Login;
use imgseal::error::Error;
use imgseal::glance::check_cert_id;
use imgseal::openstack::barbican;
use imgseal::x509::Certificate;
use serde::Serialize;
use serde_json::json;
use std::io::{self, Write};

use super::devices::{SourceKind, StoreArgs, find_in};
use super::output::{Plain, emit};
use super::output::{Report, Verdict, emit_all};
use super::trust::{ResolvedTrust, TrustArgs};
use super::{Context, TctiArgs, TokenArgs, print_json, read_input_file};

#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Store a certificate (PEM or DER) under an id.
    Import {
        /// The id Glance will know it by (img_signature_certificate_uuid).
        #[arg(long = "cert-id", alias = "id", value_name = "ID")]
        id: String,
        /// The certificate file (PEM or DER).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Replace the certificate already stored under this id (refused
        /// without it).
        #[arg(long)]
        replace: bool,
        /// With --replace: replace it even when the TPM-sealed trust
        /// anchors hold it.
        #[arg(long, requires = "replace")]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Delete a stored certificate (a file in --cert-dir, a token object, or
    /// a Barbican secret) and say what was removed.
    Delete {
        #[command(flatten)]
        id: CertIdArg,
        /// Delete without asking (needed when not on a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Delete it even when the TPM-sealed trust anchors hold it.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// List stored certificates.
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Show a certificate's subject, issuer, validity and key.
    Show {
        #[command(flatten)]
        id: CertIdArg,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Validate a certificate (a stored id, or a file) against trusted ids.
    Verify {
        /// Certificate ids in the store, or PEM/DER files; each is validated,
        /// one result a line. Exit 0 only when all are valid.
        #[arg(required = true, value_name = "CERT")]
        certs: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        token: TokenArgs,
        #[command(flatten)]
        tcti: TctiArgs,
    },
    /// Store a certificate in Barbican as Nova's docs do, print its UUID (the
    /// id for --cert-id and trusted ids), and keep a copy under that UUID in
    /// the local store (--cert-dir, else the token) for offline signing.
    Publish {
        /// The certificate file (PEM or DER); or --cert-id.
        #[arg(
            value_name = "FILE",
            required_unless_present = "id",
            conflicts_with = "id"
        )]
        file: Option<PathBuf>,
        /// A certificate already in the local store (--cert-dir, else the token).
        #[arg(long = "cert-id", alias = "id", value_name = "ID")]
        id: Option<String>,
        /// The secret's name in Barbican (default: the subject).
        #[arg(long)]
        name: Option<String>,
        /// Print the UUID of a secret that already holds this certificate
        /// instead of storing it again.
        #[arg(long)]
        reuse: bool,
        /// The local store for --cert-id and for the copy.
        #[arg(long, value_name = "DIR")]
        cert_dir: Option<PathBuf>,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Print (or write) a stored certificate as PEM, or DER with --der.
    Export {
        #[command(flatten)]
        id: CertIdArg,
        /// Where to write it; - (or no --out) for stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
        /// DER instead of PEM.
        #[arg(long)]
        der: bool,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        token: TokenArgs,
    },
}

/// The one certificate a command names: `--cert-id ID` as everywhere else,
/// or the id alone (as these commands took it first).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct CertIdArg {
    /// The certificate's id (the same as --cert-id).
    #[arg(value_name = "ID")]
    id: Option<String>,
    /// The certificate's id in the store.
    #[arg(long = "cert-id", value_name = "ID")]
    cert_id: Option<String>,
}

impl CertIdArg {
    pub(crate) fn into_string(self) -> String {
        self.cert_id
            .or(self.id)
            .expect("clap requires the id or --cert-id")
    }
}

impl CertCommand {
    /// `--token`, which every cert command takes, and `--tcti` (`cert verify`'s
    /// sealed anchors).
    pub(crate) fn devices(&mut self) -> (Option<&mut TokenArgs>, Option<&TctiArgs>) {
        match self {
            CertCommand::Verify { token, tcti, .. } => (Some(token), Some(tcti)),
            CertCommand::Import { token, .. }
            | CertCommand::Delete { token, .. }
            | CertCommand::List { token, .. }
            | CertCommand::Show { token, .. }
            | CertCommand::Publish { token, .. }
            | CertCommand::Export { token, .. } => (Some(token), None),
        }
    }
}

fn verify_certificates(
    ctx: &Context,
    certs: &[String],
    store: &StoreArgs,
    trust: &TrustArgs,
) -> anyhow::Result<i32> {
    let mut resolved = ResolvedTrust::resolve(ctx, trust, store)?;
    // Validating certificates is the whole point here, with whatever ids are in force.
    resolved.settings.validate_certificate = true;
    let find = &resolved.find;
    let ids: Vec<&str> = certs
        .iter()
        .filter(|c| !std::path::Path::new(c).is_file())
        .map(String::as_str)
        .collect();
    resolved.prefetch(&ids);
    // Read every certificate first: a typo in the last one fails before any work.
    let mut leaves = Vec::new();
    for cert in certs {
        let path = std::path::Path::new(cert);
        if path.is_file() {
            let c = Certificate::parse(&read_input_file(path)?, cert)?;
            leaves.push((
                path.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or(cert)
                    .to_string(),
                c,
            ));
        } else {
            let found = find(cert)?.ok_or_else(|| {
                Error::not_found(format!(
                    "certificate \"{cert}\" not found (neither a file nor an id in {})",
                    resolved.source_description()
                ))
            })?;
            leaves.push((cert.to_string(), found.certificate));
        }
    }
    // The store is read once, however many certificates are checked (and
    // only for the strict policy: Nova reads neither the store's other
    // certificates nor CRLs).
    let plan = resolved
        .plan(trust)?
        .expect("validation is on, so there is a plan");
    let (policy, settings) = (resolved.policy, resolved.settings.clone());
    let several = leaves.len() > 1;
    let mut reports = Vec::new();
    for (leaf_id, leaf) in &leaves {
        reports.push(ChainReport {
            verdict: plan.validate(policy, leaf_id, leaf)?,
            certificate_id: leaf_id.clone(),
            trust: settings.clone(),
            several,
        });
    }
    let code = emit_all(ctx, &reports)?;
    if !ctx.json {
        println!(
            "trusted ids from {}: {}",
            settings.source,
            settings.trusted_ids.join(", ")
        );
    }
    Ok(code)
}

/// `cert verify`'s answer for one certificate.
#[derive(Serialize)]
struct ChainReport {
    #[serde(flatten)]
    verdict: imgseal::validate::ChainVerdict,
    certificate_id: String,
    trust: imgseal::config::TrustSettings,
    /// Several certificates were checked: each line names its own.
    #[serde(skip)]
    several: bool,
}

impl Report for ChainReport {
    fn verdict(&self) -> Option<Verdict> {
        Some(Verdict::of(self.verdict.valid))
    }

    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let v = &self.verdict;
        let prefix = if self.several {
            format!("{}: ", self.certificate_id)
        } else {
            String::new()
        };
        if v.valid {
            writeln!(
                out,
                "{prefix}valid ({} policy): {}",
                v.policy,
                v.path_text()
            )?;
        } else {
            writeln!(
                out,
                "{prefix}invalid ({} policy): {}",
                v.policy,
                v.reason.as_deref().unwrap_or("not trusted")
            )?;
            if let Some(hint) = &v.hint {
                writeln!(out, "{prefix}hint: {hint}")?;
            }
        }
        if !self.several {
            for note in &v.notes {
                writeln!(out, "note: {note}")?;
            }
        }
        Ok(())
    }
}

/// `cert publish`: Barbican chooses the UUID; the local store gets a copy
/// under it. A copy that cannot be kept deletes the new secret: nothing is
/// left half-published.
fn publish(
    ctx: &Context,
    file: Option<PathBuf>,
    local_id: Option<String>,
    name: Option<String>,
    reuse: bool,
    cert_dir: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let local = StoreArgs {
        cert_source: Some(if cert_dir.is_some() {
            SourceKind::Dir
        } else {
            SourceKind::Token
        }),
        cert_dir,
        cert_cache: None,
    };
    let cert = match (&file, &local_id) {
        (Some(path), _) => read_one_certificate(path)?,
        (None, Some(id)) => find_in(&local.open(ctx, None, Login::NotNeeded)?, id)?.certificate,
        (None, None) => return Err(Error::usage("give a certificate FILE or --cert-id").into()),
    };
    let facts = imgseal::validate::facts::CertFacts::of(&cert)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if facts.not_after <= now {
        return Err(Error::bad_input(format!(
            "certificate {} expired at {}: Barbican keeps no secret past its expiration, and Nova refuses an expired signer",
            cert.subject(),
            cert.not_after()
        ))
        .into());
    }
    let not_after = time::OffsetDateTime::from_unix_timestamp(facts.not_after)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    let session = ctx.session()?;
    let mut reused = None;
    if reuse {
        for meta in barbican::list_certificates(&session)? {
            let uuid =
                barbican::uuid_of(meta.secret_ref.as_deref().unwrap_or_default()).to_string();
            if let Ok(Some(found)) = barbican::get_certificate(&session, &uuid)
                && found.certificate.der == cert.der
            {
                reused = Some((uuid, found.secret_ref));
                break;
            }
        }
    }
    let (uuid, secret_ref, created) = match reused {
        Some((uuid, secret_ref)) => (uuid, secret_ref, false),
        None => {
            let name = name.unwrap_or_else(|| cert.subject());
            let (uuid, secret_ref) = barbican::store_certificate(
                &session,
                &name,
                cert.pem().as_bytes(),
                not_after.as_deref(),
            )?;
            (uuid, secret_ref, true)
        }
    };
    // The local copy, under the UUID: signing and `--cert-source token|dir` then work offline.
    let kept = local.open(ctx, None, Login::Required).and_then(|opened| {
        match opened.source.find(&uuid)? {
            Some(c) if c.certificate.der == cert.der => Ok(opened.source.describe()),
            Some(_) => Err(Error::usage(format!(
                "{} already holds another certificate under {uuid}",
                opened.source.describe()
            ))),
            None => opened.source.store(&uuid, &cert),
        }
    });
    let kept = match kept {
        Ok(k) => k,
        Err(e) => {
            if created {
                barbican::delete_secret(&session, &uuid)?;
            }
            let message = format!(
                "keeping a local copy of the certificate failed, so {}: {e}",
                if created {
                    "the new Barbican secret was deleted again"
                } else {
                    "nothing was changed"
                }
            );
            // The same class of failure (a wrong PIN stays an auth error).
            return Err(match e.kind() {
                imgseal::ErrorKind::Auth => Error::Auth(message),
                imgseal::ErrorKind::NotFound => Error::not_found(message),
                imgseal::ErrorKind::BadInput => Error::bad_input(message),
                imgseal::ErrorKind::Service => Error::service(message),
                imgseal::ErrorKind::Usage => Error::usage(message),
                _ => e,
            }
            .into());
        }
    };
    if ctx.json {
        print_json(&json!({
            "uuid": uuid,
            "secret_ref": secret_ref,
            "subject": cert.subject(),
            "sha256_fingerprint": cert.sha256_fingerprint(),
            "not_after": not_after,
            "reused": !created,
            "local_copy": kept,
        }));
    } else {
        println!("{uuid}");
        eprintln!(
            "{} certificate {} as Barbican secret {secret_ref}; local copy in {kept}",
            if created { "published" } else { "found" },
            cert.subject()
        );
    }
    Ok(0)
}

/// One certificate from a file, PEM or DER: a chain file or trailing bytes
/// are refused (a chain would silently give its first certificate, often the CA).
fn read_one_certificate(file: &std::path::Path) -> Result<Certificate, Error> {
    let bytes = read_input_file(file)?;
    let blocks = bytes
        .windows(27)
        .filter(|w| *w == b"-----BEGIN CERTIFICATE-----")
        .count();
    if blocks > 1 {
        return Err(Error::bad_input(format!(
            "{}: holds {blocks} certificates; give one certificate",
            file.display()
        )));
    }
    let cert = Certificate::parse(&bytes, &file.display().to_string())?;
    if blocks == 0 && cert.der.len() != bytes.len() {
        return Err(Error::bad_input(format!(
            "{}: {} bytes after the DER certificate",
            file.display(),
            bytes.len() - cert.der.len()
        )));
    }
    Ok(cert)
}

/// Refuses (usage, exit 2) to remove what the TPM-sealed trust anchors of
/// this home hold: one of `certs` (by content), or a certificate for the
/// public key of `key` (named by its URI). Read from the bundles on disk: no
/// TPM is started, and a home that never sealed anchors has nothing in use.
pub(super) fn refuse_if_sealed(
    ctx: &Context,
    certs: &[(&str, &Certificate)],
    key: Option<(&str, &imgseal::public_key::PublicKey)>,
    doing: &str,
) -> Result<(), Error> {
    let home = ctx.home()?;
    for bundle in imgseal::anchors::sealed_bundles_on_disk(&home.dir)? {
        for (sealed_id, sealed) in bundle.anchors.iter() {
            let (what, held) =
                if let Some((id, _)) = certs.iter().find(|(_, c)| c.der == sealed.der) {
                    (
                        format!("certificate \"{id}\" ({})", sealed.subject()),
                        "it".to_string(),
                    )
                } else if let Some((uri, _)) = key.filter(|(_, k)| {
                    sealed
                        .public_key()
                        .is_ok_and(|sealed_key| sealed_key.same_key(k))
                }) {
                    (
                        format!("key {uri}"),
                        format!("its certificate ({})", sealed.subject()),
                    )
                } else {
                    continue;
                };
            return Err(Error::usage(format!(
                "{doing} {what} is refused: the TPM-sealed trust anchors (version {}) hold {held} as \"{sealed_id}\"; remove it from them first (`imgseal anchors remove {sealed_id}`), or give --force",
                bundle.version
            )));
        }
    }
    Ok(())
}

/// Asks before a removal on a terminal; without one, `--yes` is required.
pub(super) fn confirm(yes: bool, question: &str) -> Result<(), Error> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(Error::usage(format!(
            "{question} needs --yes when not run on a terminal (nothing was deleted)"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::io("<stdin>", e))?;
    match answer.trim() {
        "y" | "Y" | "yes" | "YES" | "Yes" => Ok(()),
        _ => Err(Error::usage("not confirmed: nothing was deleted")),
    }
}

fn describe(c: &StoredCertificate) -> serde_json::Value {
    let cert = &c.certificate;
    let key = cert.public_key().ok();
    json!({
        "id": c.id,
        "location": c.location,
        "subject": cert.subject(),
        "issuer": cert.issuer(),
        "serial": cert.serial_hex(),
        "not_before": cert.not_before(),
        "not_after": cert.not_after(),
        "public_key": key.as_ref().map(|k| k.describe()),
        "glance_key_type": key.as_ref().and_then(|k| k.glance_key_type()).map(|t| t.glance_name()),
        "sha256_fingerprint": cert.sha256_fingerprint(),
    })
}

pub(super) fn run(ctx: &Context, cmd: CertCommand) -> anyhow::Result<i32> {
    match cmd {
        CertCommand::Import {
            id,
            file,
            replace,
            force,
            store,
            ..
        } => {
            check_cert_id(&id).map_err(|e| Error::usage(format!("--cert-id: {e}")))?;
            let cert = read_one_certificate(&file)?;
            let opened = store.open(ctx, None, Login::Required)?;
            if opened.kind == SourceKind::Barbican {
                return Err(Error::usage(
                    "cert import stores under an id you choose, and Barbican chooses its UUIDs: use `imgseal cert publish`, or --cert-source token (or --cert-dir DIR) to keep the certificate locally",
                )
                .into());
            }
            // What --replace replaces: a certificate there, or one there
            // that cannot be parsed (which --replace is also for).
            let (present, existing) = if replace {
                match opened.source.find(&id) {
                    Ok(found) => (found.is_some(), found),
                    Err(e) if e.kind() == imgseal::ErrorKind::BadInput => (true, None),
                    Err(e) => return Err(e.into()),
                }
            } else {
                (false, None)
            };
            if let (Some(old), false) = (&existing, force) {
                refuse_if_sealed(ctx, &[(&id, &old.certificate)], None, "replacing")?;
            }
            let location = if present {
                opened.source.replace(&id, &cert)?
            } else {
                opened.source.store(&id, &cert)?
            };
            let replaced = match &existing {
                Some(old) => json!({
                    "subject": old.certificate.subject(),
                    "sha256_fingerprint": old.certificate.sha256_fingerprint(),
                }),
                None if present => json!({"unusable": "it could not be parsed"}),
                None => json!(null),
            };
            if ctx.json {
                print_json(&json!({
                    "id": id,
                    "subject": cert.subject(),
                    "sha256_fingerprint": cert.sha256_fingerprint(),
                    "stored_in": location,
                    "replaced": replaced,
                }));
            } else if let Some(old) = &existing {
                // Stderr, as import's own line: stdout stays empty.
                eprintln!(
                    "replaced certificate \"{id}\" ({}, sha256 {}…) with {} (sha256 {}…) in {location}",
                    old.certificate.subject(),
                    &old.certificate.sha256_fingerprint()[..16],
                    cert.subject(),
                    &cert.sha256_fingerprint()[..16],
                );
            } else if present {
                eprintln!(
                    "replaced certificate \"{id}\" (which could not be parsed) with {} in {location}",
                    cert.subject()
                );
            } else {
                eprintln!(
                    "stored certificate \"{id}\" ({}) in {location}",
                    cert.subject()
                );
            }
        }
        CertCommand::Delete {
            id,
            yes,
            force,
            store,
            ..
        } => {
            let id = id.into_string();
            let opened = store.open(ctx, None, Login::Required)?;
            let found = find_in(&opened, &id)?;
            if !force {
                refuse_if_sealed(ctx, &[(&id, &found.certificate)], None, "deleting")?;
            }
            confirm(
                yes,
                &format!(
                    "delete certificate \"{id}\" ({}) from {}?",
                    found.certificate.subject(),
                    opened.source.describe()
                ),
            )?;
            let location = opened.source.delete(&id)?;
            let text = format!(
                "deleted certificate \"{id}\" ({}, sha256 {}…) from {location}",
                found.certificate.subject(),
                &found.certificate.sha256_fingerprint()[..16]
            );
            emit(
                ctx,
                &Plain::new(
                    json!({
                        "deleted": "certificate",
                        "id": id,
                        "subject": found.certificate.subject(),
                        "sha256_fingerprint": found.certificate.sha256_fingerprint(),
                        "from": location,
                    }),
                    text,
                ),
            )?;
        }
        CertCommand::List { store, .. } => {
            // Every entry, those imgseal cannot parse with the reason: one
            // bad certificate never hides the others (as `key list`).
            let list = store
                .open(ctx, None, Login::NotNeeded)?
                .source
                .list_entries()?;
            let entries: Vec<_> = list
                .iter()
                .map(|c| match &c.certificate {
                    Ok(cert) => describe(&StoredCertificate {
                        id: c.id.clone(),
                        certificate: cert.clone(),
                        location: c.location.clone(),
                    }),
                    Err(reason) => json!({
                        "id": c.id,
                        "location": c.location,
                        "subject": null,
                        "unusable": reason,
                    }),
                })
                .collect();
            let lines: Vec<String> = list
                .iter()
                .map(|c| match &c.certificate {
                    Ok(cert) => {
                        let fingerprint = cert.sha256_fingerprint();
                        format!(
                            "{:<38} {}  issuer: {}  not after: {}  sha256: {}…",
                            c.id,
                            cert.subject(),
                            cert.issuer(),
                            cert.not_after(),
                            &fingerprint[..fingerprint.len().min(16)]
                        )
                    }
                    Err(reason) => format!("{:<38} unusable: {reason}", c.id),
                })
                .collect();
            emit(ctx, &Plain::new(json!(entries), lines.join("\n")))?;
        }
        CertCommand::Show { id, store, .. } => {
            let id = id.into_string();
            let c = find_in(&store.open(ctx, None, Login::NotNeeded)?, &id)?;
            let d = describe(&c);
            let lines: Vec<String> = [
                "id",
                "location",
                "subject",
                "issuer",
                "serial",
                "not_before",
                "not_after",
                "public_key",
                "glance_key_type",
                "sha256_fingerprint",
            ]
            .iter()
            .map(|k| {
                let v = match &d[*k] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "-".into(),
                    other => other.to_string(),
                };
                format!("{:<19} {v}", format!("{k}:"))
            })
            .collect();
            emit(ctx, &Plain::new(d, lines.join("\n")))?;
        }
        CertCommand::Verify {
            certs,
            store,
            trust,
            ..
        } => {
            return verify_certificates(ctx, &certs, &store, &trust);
        }
        CertCommand::Publish {
            file,
            id,
            name,
            reuse,
            cert_dir,
            ..
        } => return publish(ctx, file, id, name, reuse, cert_dir),
        CertCommand::Export {
            id,
            out,
            der,
            store,
            ..
        } => {
            let id = id.into_string();
            let c = find_in(&store.open(ctx, None, Login::NotNeeded)?, &id)?;
            let bytes = if der {
                c.certificate.der.clone()
            } else {
                c.certificate.pem().into_bytes()
            };
            match out {
                Some(path) => super::write_out(&path, &bytes)?,
                None => {
                    use std::io::Write;
                    std::io::stdout()
                        .write_all(&bytes)
                        .map_err(|e| Error::io("<stdout>", e))?;
                }
            }
        }
    }
    Ok(0)
}
