//! `imgseal cert …`: the certificate store, in the token or in a directory.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use imgseal::backend::pkcs11::Login;
use imgseal::backend::{SigningDevice, StoredCertificate};
use imgseal::error::Error;
use imgseal::glance::check_cert_id;
use imgseal::home::write_output_file;
use imgseal::store::DirStore;
use imgseal::x509::Certificate;
use serde_json::json;

use super::trust::TrustArgs;
use super::{Context, print_json, read_input_file};

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Use a directory of <id>.pem / <id>.der files instead of the token.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Store a certificate (PEM or DER) under an id.
    Import {
        /// The id Glance will know it by (img_signature_certificate_uuid).
        #[arg(long)]
        id: String,
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List stored certificates.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show a certificate's subject, issuer, validity and key.
    Show {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
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
    },
    /// Print (or write) a stored certificate as PEM, or DER with --der.
    Export {
        id: String,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        der: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Finds certificates by id in `--cert-dir` or, without it, in the token.
pub fn finder(
    ctx: &Context,
    cert_dir: Option<&PathBuf>,
) -> Result<Box<dyn Fn(&str) -> imgseal::Result<Option<StoredCertificate>>>, Error> {
    match cert_dir {
        Some(dir) => {
            let store = DirStore::new(dir)?;
            Ok(Box::new(move |id| store.find(id)))
        }
        None => {
            let device = ctx.device(None, Login::NotNeeded)?;
            Ok(Box::new(move |id| device.find_certificate(id)))
        }
    }
}

/// Everything in the store (directory or token), as possible intermediates.
pub fn store_contents(
    ctx: &Context,
    cert_dir: Option<&PathBuf>,
) -> Result<Vec<(String, Certificate)>, Error> {
    let list = match cert_dir {
        Some(dir) => DirStore::new(dir)?.list()?,
        None => ctx.device(None, Login::NotNeeded)?.list_certificates()?,
    };
    Ok(list.into_iter().map(|s| (s.id, s.certificate)).collect())
}

fn verify_certificates(
    ctx: &Context,
    certs: &[String],
    store: &StoreArgs,
    trust: &TrustArgs,
) -> anyhow::Result<i32> {
    let config = trust.config(ctx)?;
    let policy = trust.policy(&config);
    let mut settings = trust.settings(&config)?;
    // Validating certificates is the whole point here, with whatever ids are in force.
    settings.validate_certificate = true;
    // TPM-sealed anchors replace the ids, and come from the sealed bundle.
    let sealed = super::anchors::sealed_for_verification(ctx, trust, &settings)?;
    if let Some((s, _)) = &sealed {
        settings = s.trust_settings();
    }
    let cert_dir = store
        .cert_dir
        .clone()
        .or_else(|| config.validation.cert_dir.clone());
    let find = finder(ctx, cert_dir.as_ref())?;
    let sealed_find = sealed.as_ref().map(|(s, _)| move |id: &str| s.find(id));
    let trusted_find: imgseal::verify::CertFinder = match &sealed_find {
        Some(f) => f,
        None => &*find,
    };
    // Read every certificate first: a typo in the last one fails before any work.
    let mut leaves = Vec::new();
    for cert in certs {
        let path = std::path::Path::new(cert);
        if path.is_file() {
            let c = Certificate::parse(&read_input_file(&path.to_path_buf())?, cert)?;
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
                    "certificate \"{cert}\" not found (neither a file nor an id in the store)"
                ))
            })?;
            leaves.push((cert.to_string(), found.certificate));
        }
    }
    // The store is read once, however many certificates are checked, and
    // only for the strict policy: Nova reads neither the store's other
    // certificates nor CRLs, so a stray file there must not change its answer.
    let strict = policy == imgseal::validate::PolicyName::Strict;
    let contents = if strict {
        store_contents(ctx, cert_dir.as_ref())?
    } else {
        Vec::new()
    };
    let plan = trust.plan(
        &config,
        settings.clone(),
        trusted_find,
        contents,
        cert_dir.as_ref().filter(|_| strict),
    )?;
    let mut code = 0;
    for (leaf_id, leaf) in &leaves {
        let verdict = plan.validate(policy, leaf_id, leaf)?;
        if !verdict.valid {
            code = imgseal::ErrorKind::Invalid.exit_code();
        }
        if ctx.json {
            let mut obj = json!(verdict);
            obj["verdict"] = json!(if verdict.valid { "valid" } else { "invalid" });
            obj["certificate_id"] = json!(leaf_id);
            obj["trust"] = json!(settings);
            obj["exit_code"] = json!(if verdict.valid {
                0
            } else {
                imgseal::ErrorKind::Invalid.exit_code()
            });
            print_json(&obj);
            continue;
        }
        let prefix = if leaves.len() > 1 {
            format!("{leaf_id}: ")
        } else {
            String::new()
        };
        if verdict.valid {
            println!(
                "{prefix}valid ({} policy): {}",
                verdict.policy,
                verdict.path_text()
            );
        } else {
            println!(
                "{prefix}invalid ({} policy): {}",
                verdict.policy,
                verdict.reason.as_deref().unwrap_or("not trusted")
            );
        }
        if leaves.len() == 1 {
            for note in &verdict.notes {
                println!("note: {note}");
            }
        }
    }
    if !ctx.json {
        println!(
            "trusted ids from {}: {}",
            settings.source,
            settings.trusted_ids.join(", ")
        );
    }
    Ok(code)
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

pub fn run(ctx: &Context, cmd: CertCommand) -> anyhow::Result<i32> {
    match cmd {
        CertCommand::Import { id, file, store } => {
            check_cert_id(&id).map_err(|e| Error::usage(format!("--id: {e}")))?;
            let bytes = read_input_file(&file)?;
            // One certificate per id: a chain file would silently store its
            // first certificate (often the CA, not the signer).
            let blocks = bytes
                .windows(27)
                .filter(|w| *w == b"-----BEGIN CERTIFICATE-----")
                .count();
            if blocks > 1 {
                return Err(Error::bad_input(format!(
                    "{}: holds {blocks} certificates; import one certificate per id",
                    file.display()
                ))
                .into());
            }
            let cert = Certificate::parse(&bytes, &file.display().to_string())?;
            if blocks == 0 && cert.der.len() != bytes.len() {
                return Err(Error::bad_input(format!(
                    "{}: {} bytes after the DER certificate",
                    file.display(),
                    bytes.len() - cert.der.len()
                ))
                .into());
            }
            let location = match &store.cert_dir {
                Some(dir) => DirStore::new(dir)?.store(&id, &cert)?.display().to_string(),
                None => {
                    let device = ctx.device(None, Login::Required)?;
                    device.store_certificate(&id, &cert)?;
                    device.describe()
                }
            };
            if ctx.json {
                print_json(&json!({"id": id, "subject": cert.subject(), "stored_in": location}));
            } else {
                eprintln!(
                    "stored certificate \"{id}\" ({}) in {location}",
                    cert.subject()
                );
            }
        }
        CertCommand::List { store } => {
            let list = match &store.cert_dir {
                Some(dir) => DirStore::new(dir)?.list()?,
                None => ctx.device(None, Login::NotNeeded)?.list_certificates()?,
            };
            if ctx.json {
                print_json(&json!(list.iter().map(describe).collect::<Vec<_>>()));
            } else {
                for c in &list {
                    println!("{:<38} {}", c.id, c.certificate.subject());
                }
            }
        }
        CertCommand::Show { id, store } => {
            let c = finder(ctx, store.cert_dir.as_ref())?(&id)?
                .ok_or_else(|| Error::not_found(format!("certificate \"{id}\" not found")))?;
            let d = describe(&c);
            if ctx.json {
                print_json(&d);
            } else {
                for k in [
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
                ] {
                    let v = match &d[k] {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => "-".into(),
                        other => other.to_string(),
                    };
                    println!("{:<19} {v}", format!("{k}:"));
                }
            }
        }
        CertCommand::Verify {
            certs,
            store,
            trust,
        } => {
            return verify_certificates(ctx, &certs, &store, &trust);
        }
        CertCommand::Export {
            id,
            out,
            der,
            store,
        } => {
            let c = finder(ctx, store.cert_dir.as_ref())?(&id)?
                .ok_or_else(|| Error::not_found(format!("certificate \"{id}\" not found")))?;
            let bytes = if der {
                c.certificate.der.clone()
            } else {
                c.certificate.pem().into_bytes()
            };
            match out {
                Some(path) => write_output_file(&path, &bytes)?,
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
