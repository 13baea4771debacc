//! Images in Glance: `imgseal publish`, `imgseal verify --image`,
//! `imgseal resign`, `imgseal audit`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use imgseal::algorithms::HashMethod;
use imgseal::cloud::{PublishRequest, publish};
use imgseal::error::Error;
use imgseal::glance::{OutputFormat, property_map, render};
use imgseal::openstack::glance::{Glance, NewImage};
use serde::Serialize;
use serde_json::json;

use super::Context;
use super::devices::StoreArgs;
use super::digest::Bars;
use super::output::{Plain, Report, Verdict};
use super::sign::{PssSaltArg, open_signer};

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The signing key's pkcs11: URI.
    #[arg(long, short = 'k', value_name = "URI")]
    pub key: String,
    /// The signing certificate's Barbican UUID (img_signature_certificate_uuid).
    #[arg(long, value_name = "ID")]
    pub cert_id: String,
    /// SHA-224, SHA-256, SHA-384 or SHA-512.
    #[arg(long, default_value = "SHA-256")]
    pub hash: HashMethod,
    /// The image's name in Glance.
    #[arg(long)]
    pub name: Option<String>,
    /// qcow2, raw, vmdk, vhd, vhdx, iso, …; default: what the file is, by
    /// its magic numbers (stated in the output).
    #[arg(long)]
    pub disk_format: Option<String>,
    #[arg(long, default_value = "bare")]
    pub container_format: String,
    /// private, shared, community or public (Glance's default: shared).
    #[arg(long)]
    pub visibility: Option<String>,
    /// Another image property, KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// Minimum disk in GiB Nova must give the image.
    #[arg(long)]
    pub min_disk: Option<u64>,
    /// Minimum RAM in MiB.
    #[arg(long)]
    pub min_ram: Option<u64>,
    /// Upload into this existing queued image instead of creating one.
    #[arg(long, value_name = "ID", conflicts_with_all = ["name", "disk_format", "visibility", "properties", "min_disk", "min_ram"])]
    pub image_id: Option<String>,
    /// Leave an image Glance refused in Glance (default: delete it again).
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Also write a signed manifest (size, linear and fs-verity digests, the
    /// properties), from the same read pass.
    #[arg(long, value_name = "OUT")]
    pub manifest: Option<PathBuf>,
    /// How to print the four properties (as `sign` does); default: a
    /// summary line. Not with --json, which prints the whole record.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// RSA-PSS salt: max (as cursive signs) or digest.
    #[arg(long, value_enum, default_value = "max")]
    pub pss_salt: PssSaltArg,
    /// Where the certificate is checked (default: Barbican, where Glance reads it).
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub token: super::TokenArgs,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// The image file (a regular file: it is read twice, to sign and to upload).
    pub image: PathBuf,
}

fn parse_property(p: &str) -> Result<(String, String), Error> {
    let (k, v) = p.split_once('=').ok_or_else(|| {
        Error::usage(format!(
            "--property {}: expected KEY=VALUE",
            p.escape_default()
        ))
    })?;
    if k.is_empty() {
        return Err(Error::usage(format!(
            "--property {}: the key is empty",
            p.escape_default()
        )));
    }
    if imgseal::glance::ALL.contains(&k) {
        return Err(Error::usage(format!(
            "--property {k}: publish sets the four signature properties itself"
        )));
    }
    Ok((k.to_string(), v.to_string()))
}

pub(super) fn run_publish(ctx: &Context, args: PublishArgs) -> anyhow::Result<i32> {
    if ctx.json && args.format.is_some() {
        return Err(Error::usage(
            "--json and --format contradict each other: --json prints the whole record, --format only the four properties; give one",
        )
        .into());
    }
    let properties = args
        .properties
        .iter()
        .map(|p| parse_property(p))
        .collect::<Result<Vec<_>, _>>()?;
    // Refused before anything is signed or created.
    let (file, _) = imgseal::digest::open_image(&args.image)?;
    drop(file);
    let detected = imgseal::disk_format::detect(&args.image)?;
    let disk_format = args
        .disk_format
        .clone()
        .unwrap_or_else(|| detected.to_string());
    let name = args.name.clone().unwrap_or_else(|| {
        args.image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let tree_params =
        imgseal::fsverity::TreeParams::default_for(imgseal::fsverity::TreeHash::Sha256);
    // Checked before anything is read: a malformed id is a usage error.
    imgseal::glance::check_cert_id(&args.cert_id)
        .map_err(|e| Error::usage(format!("--cert-id: {e}")))?;
    let bars = Bars::new(args.quiet);
    let hash_bar = bars.bar(&imgseal::digest::ImageSource::Path(args.image.clone()));
    let hash_progress: Arc<dyn Fn(u64) + Send + Sync> = {
        let bar = hash_bar.clone();
        Arc::new(move |n| bar.inc(n))
    };
    // The image is read while the token is opened and the certificate
    // checked in Barbican: the login costs no wall time.
    let pass = imgseal::cloud::start_publish_pass(
        &args.image,
        args.hash,
        args.manifest.is_some().then(|| tree_params.clone()),
        hash_progress,
    )?;
    let (device, key) = open_signer(
        ctx,
        &args.key,
        &args.cert_id,
        &args.store,
        false,
        args.pss_salt,
    )?;
    let session = ctx.session()?;
    let glance = Glance::new(&session)?;
    let upload_bar = bars.bytes(
        std::fs::metadata(&args.image).map(|m| m.len()).unwrap_or(0),
        "uploading",
    );
    let upload_progress: Arc<dyn Fn(u64) + Send + Sync> = {
        let bar = upload_bar.clone();
        let hash_bar = hash_bar.clone();
        Arc::new(move |n| {
            hash_bar.finish_and_clear();
            bar.inc(n)
        })
    };
    let result = publish(
        &glance,
        &device,
        &key,
        &args.cert_id,
        PublishRequest {
            fields: NewImage {
                name,
                disk_format: disk_format.clone(),
                container_format: args.container_format.clone(),
                visibility: args.visibility.clone(),
                min_disk: args.min_disk,
                min_ram: args.min_ram,
                properties,
            },
            existing_id: args.image_id.as_deref(),
            keep_on_failure: args.keep_on_failure,
            manifest: args.manifest.as_deref().map(|m| (m, &tree_params)),
        },
        pass,
        upload_progress,
    );
    hash_bar.finish_and_clear();
    upload_bar.finish_and_clear();
    let published = result?;
    let record = &published.image;
    let format_note = match (&args.disk_format, &args.image_id) {
        (None, None) => format!("{disk_format} (detected)"),
        _ => record.disk_format().unwrap_or("?").to_string(),
    };
    let mut obj = json!(property_map(&published.sealed.signature));
    obj["image_id"] = json!(record.id());
    obj["name"] = json!(record.name());
    obj["status"] = json!(record.status());
    obj["size"] = json!(record.size());
    obj["disk_format"] = json!(record.disk_format());
    obj["disk_format_detected"] = json!(args.disk_format.is_none() && args.image_id.is_none());
    obj["os_hash_algo"] = json!(record.os_hash_algo());
    obj["os_hash_value"] = json!(record.os_hash_value());
    obj["digest"] = json!(hex::encode(&published.sealed.digest().digest));
    obj["image"] = json!(args.image.display().to_string());
    obj["key"] = json!(key.uri.redacted());
    if let Some(m) = &published.sealed.manifest {
        obj["manifest"] = json!(m.display().to_string());
    }
    let summary = format!(
        "published: image {} (\"{}\", {format_note}) is active in Glance, which verified its {} signature ({}) by certificate {}; Glance stored the {} bytes signed (os_hash_value matches)",
        record.id(),
        record.name().unwrap_or(""),
        published.sealed.signature.key_type,
        published.sealed.signature.hash_method,
        args.cert_id,
        published.sealed.size()
    );
    let text = match args.format {
        // The properties go to stdout for a command substitution; the
        // summary to stderr, for people.
        Some(format) if !ctx.json => {
            eprintln!("{summary}");
            render(&published.sealed.signature, format)
        }
        _ => summary,
    };
    super::output::emit(ctx, &Plain::new(obj, text))?;
    Ok(0)
}

#[derive(Debug, Args)]
pub(crate) struct ResignArgs {
    /// The image in Glance, by id or name.
    #[arg(long, value_name = "ID|NAME")]
    pub image: String,
    /// The new signing key's pkcs11: URI.
    #[arg(long, short = 'k', value_name = "URI")]
    pub key: String,
    /// The new signing certificate's Barbican UUID.
    #[arg(long, value_name = "ID")]
    pub cert_id: String,
    /// The new hash method (default: the image's current one, else SHA-256).
    #[arg(long)]
    pub hash: Option<HashMethod>,
    /// Refuse unless the image's current signature holds (under the trust
    /// options below): re-sign only data that was signed, never data that
    /// was replaced.
    #[arg(long)]
    pub require_valid: bool,
    /// Print the JSON patch that would be sent, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value = "max")]
    pub pss_salt: PssSaltArg,
    /// Where the certificates are looked up (default: Barbican).
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub trust: super::trust::TrustArgs,
    #[command(flatten)]
    pub token: super::TokenArgs,
    #[command(flatten)]
    pub tcti: super::TctiArgs,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

pub(super) fn run_resign(ctx: &Context, args: ResignArgs) -> anyhow::Result<i32> {
    use imgseal::backend::software::SoftwareVerifier;
    use imgseal::cloud::{glance_record_disagrees, properties_text, signature_patch, stream_image};
    use imgseal::glance::RawProperties;

    let (device, key) = open_signer(
        ctx,
        &args.key,
        &args.cert_id,
        &args.store,
        false,
        args.pss_salt,
    )?;
    let resolved = super::trust::ResolvedTrust::resolve(ctx, &args.trust, &args.store)?;
    let session = ctx.session()?;
    let glance = Glance::new(&session)?;
    let record = glance.find(&args.image)?;
    let id = record.id().to_string();
    if record.status() != "active" {
        return Err(Error::bad_input(format!(
            "image {id} is {}, not active: there is no data to re-sign",
            record.status()
        ))
        .into());
    }
    let origin = format!("image {id} in Glance");
    let text = properties_text(&record);
    let current = RawProperties::from_json(&text, &origin)?;
    let current_hash = current
        .hash_method
        .as_deref()
        .and_then(HashMethod::from_glance);
    let new_hash = args.hash.or(current_hash).unwrap_or(HashMethod::Sha256);
    let bars = Bars::new(args.quiet);
    let bar = bars.bytes(record.size().unwrap_or(0), "downloading");
    // One stream gives the digest the current signature is checked with, the
    // new one, and Glance's SHA-512.
    let mut streamed: Option<imgseal::cloud::StreamedDigests> = None;
    let stream = |hashes: &[HashMethod]| stream_image(&glance, &id, hashes, None, &|n| bar.inc(n));
    let signed = record.has_signature_properties();
    let old_verdict = if signed {
        resolved.prefetch(&current.cert_uuid.as_deref().into_iter().collect::<Vec<_>>());
        let plan = resolved.plan(&args.trust)?;
        let find: &super::trust::Finder = &*resolved.find;
        let verdict = imgseal::verify::verify_signed_data(
            &text,
            &origin,
            &origin,
            resolved.policy,
            plan.as_ref(),
            find,
            &SoftwareVerifier,
            resolved.options,
            &mut |hash| {
                let s = stream(&[hash, new_hash])?;
                let digest = s.get(hash).expect("streamed with this hash").clone();
                streamed = Some(s);
                Ok(digest)
            },
        );
        Some(verdict)
    } else {
        None
    };
    let old_state = match &old_verdict {
        None => "unsigned".to_string(),
        Some(Ok(v)) if v.valid => "valid".to_string(),
        Some(Ok(v)) => format!(
            "invalid: {}",
            v.reason.as_deref().unwrap_or("the signature does not hold")
        ),
        Some(Err(e)) => format!("not checkable: {e}"),
    };
    let old_valid = matches!(&old_verdict, Some(Ok(v)) if v.valid);
    if args.require_valid && !old_valid {
        bar.finish_and_clear();
        return Err(Error::Invalid(format!(
            "{origin}: its current signature is {old_state}; --require-valid re-signs only an image whose signature holds"
        ))
        .into());
    }
    let streamed = match streamed {
        Some(s) => s,
        None => stream(&[new_hash])?,
    };
    bar.finish_and_clear();
    if let Some(d) = glance_record_disagrees(&record, &streamed) {
        return Err(Error::Invalid(format!(
            "{d}: not re-signing data Glance's own record disowns"
        ))
        .into());
    }
    let digest = streamed.get(new_hash).expect("streamed with the new hash");
    let signature = imgseal::sign::sign_digest(&device, &key, &args.cert_id, digest)?;
    let patch = signature_patch(&record, &signature);
    if args.dry_run {
        // For people, the patch as Glance receives it, indented to be read.
        let text = serde_json::to_string_pretty(&patch).expect("JSON");
        super::output::emit(
            ctx,
            &Plain::new(
                json!({
                    "image_id": id,
                    "dry_run": true,
                    "previous_signature": old_state,
                    "patch": patch,
                }),
                text,
            ),
        )?;
        if !ctx.json {
            eprintln!("dry run: image {id} not changed (its current signature is {old_state})");
        }
        return Ok(0);
    }
    let updated = glance.patch(&id, &patch)?;
    let stored = properties_text(&updated);
    let want = json!(property_map(&signature));
    let got: serde_json::Value = serde_json::from_str(&stored).expect("JSON we wrote");
    if got != want {
        return Err(Error::service(format!(
            "Glance accepted the update of image {id} but shows other properties ({got}) than were sent ({want})"
        ))
        .into());
    }
    let mut obj = want;
    obj["image_id"] = json!(id);
    obj["previous_signature"] = json!(old_state);
    obj["digest"] = json!(hex::encode(&digest.digest));
    obj["image_size"] = json!(digest.size);
    obj["key"] = json!(key.uri.redacted());
    let text = format!(
        "re-signed: image {id} now carries a {} signature ({}) by certificate {} over its {} bytes (the previous signature was {old_state})",
        signature.key_type, signature.hash_method, args.cert_id, digest.size
    );
    super::output::emit(ctx, &Plain::new(obj, text))?;
    Ok(0)
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Also stream every signed image's data from Glance and verify it
    /// (two images at a time).
    #[arg(long)]
    pub deep: bool,
    /// An image Nova would boot today is at risk when its signing
    /// certificate expires within this many days (exit 1).
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub warn_days: i64,
    /// Where the certificates are looked up (default: Barbican).
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub trust: super::trust::TrustArgs,
    #[command(flatten)]
    pub token: super::TokenArgs,
    #[command(flatten)]
    pub tcti: super::TctiArgs,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// One image's row.
#[derive(Debug, serde::Serialize)]
struct AuditRow {
    image_id: String,
    name: Option<String>,
    status: String,
    signed: bool,
    key_type: Option<String>,
    hash_method: Option<String>,
    certificate_id: Option<String>,
    certificate_subject: Option<String>,
    certificate_not_after: Option<String>,
    days_left: Option<i64>,
    /// Why the certificate could not be had (missing, unloadable).
    certificate_problem: Option<String>,
    /// Nova (cursive, with the nova.conf given) would boot it today.
    nova_boots: bool,
    nova_reason: Option<String>,
    strict_valid: bool,
    strict_reason: Option<String>,
    /// With --deep: whether the data verified.
    data_valid: Option<bool>,
    data_reason: Option<String>,
    at_risk: bool,
    risk: Option<String>,
}

/// Stops the verifier once everything before the image data has held.
const DATA_NOT_READ: &str = "imgseal-audit: data not read";

pub(super) fn run_audit(ctx: &Context, args: AuditArgs) -> anyhow::Result<i32> {
    use imgseal::backend::software::SoftwareVerifier;
    use imgseal::cloud::{properties_text, stream_image};
    use imgseal::fsverity::pass::map_bounded;
    use imgseal::glance::RawProperties;
    use imgseal::validate::PolicyName;

    if args.warn_days < 0 {
        return Err(Error::usage("--warn-days must be 0 or more").into());
    }
    let resolved = super::trust::ResolvedTrust::resolve(ctx, &args.trust, &args.store)?;
    let session = ctx.session()?;
    let glance = Glance::new(&session)?;
    let images = glance.list()?;
    let texts: Vec<String> = images.iter().map(properties_text).collect();
    let raws: Vec<Option<RawProperties>> = texts
        .iter()
        .map(|t| RawProperties::from_json(t, "image").ok())
        .collect();
    let ids: Vec<&str> = raws
        .iter()
        .filter_map(|r| r.as_ref().and_then(|r| r.cert_uuid.as_deref()))
        .collect();
    resolved.prefetch(&ids);
    let plan = resolved.plan(&args.trust)?;
    let find: &super::trust::Finder = &*resolved.find;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    // --deep: every signed, active image streamed, two at a time.
    let streamed: Vec<Option<imgseal::Result<imgseal::cloud::StreamedDigests>>> = if args.deep {
        let bars = Bars::new(args.quiet);
        let jobs: Vec<usize> = (0..images.len()).collect();
        map_bounded(&jobs, 2, |&i| {
            let record = &images[i];
            let hash = raws[i]
                .as_ref()
                .and_then(|r| r.hash_method.as_deref())
                .and_then(HashMethod::from_glance)?;
            if record.status() != "active" {
                return None;
            }
            let bar = bars.bytes(
                record.size().unwrap_or(0),
                record.name().unwrap_or(record.id()),
            );
            let result = stream_image(&glance, record.id(), &[hash], None, &|n| bar.inc(n));
            bar.finish_and_clear();
            Some(result)
        })
    } else {
        images.iter().map(|_| None).collect()
    };

    let mut rows = Vec::new();
    for (i, record) in images.iter().enumerate() {
        let id = record.id().to_string();
        let origin = format!("image {id}");
        let raw = raws[i].clone().unwrap_or_default();
        let mut row = AuditRow {
            image_id: id.clone(),
            name: record.name().map(str::to_string),
            status: record.status().to_string(),
            signed: record.has_signature_properties(),
            key_type: raw.key_type.clone(),
            hash_method: raw.hash_method.clone(),
            certificate_id: raw.cert_uuid.clone(),
            certificate_subject: None,
            certificate_not_after: None,
            days_left: None,
            certificate_problem: None,
            nova_boots: false,
            nova_reason: None,
            strict_valid: false,
            strict_reason: None,
            data_valid: None,
            data_reason: None,
            at_risk: false,
            risk: None,
        };
        if let Some(cert_id) = &raw.cert_uuid {
            match find(cert_id) {
                Ok(Some(stored)) => {
                    row.certificate_subject = Some(stored.certificate.subject());
                    if let Ok(facts) = imgseal::validate::facts::CertFacts::of(&stored.certificate)
                    {
                        row.days_left = Some((facts.not_after - now).div_euclid(86_400));
                        row.certificate_not_after =
                            time::OffsetDateTime::from_unix_timestamp(facts.not_after)
                                .ok()
                                .and_then(|t| {
                                    t.format(&time::format_description::well_known::Rfc3339)
                                        .ok()
                                });
                    }
                }
                Ok(None) => {
                    row.certificate_problem = Some(format!(
                        "certificate {cert_id} not found in {}",
                        resolved.source_description()
                    ))
                }
                Err(e) => row.certificate_problem = Some(e.to_string()),
            }
        }
        let deep = streamed[i].as_ref();
        for policy in [PolicyName::Nova, PolicyName::Strict] {
            let mut reached_data = false;
            let verdict = imgseal::verify::verify_signed_data(
                &texts[i],
                &origin,
                &origin,
                policy,
                plan.as_ref(),
                find,
                &SoftwareVerifier,
                resolved.options,
                &mut |hash| {
                    reached_data = true;
                    match deep {
                        Some(Ok(s)) => Ok(s.get(hash).expect("streamed with this hash").clone()),
                        Some(Err(e)) => Err(e
                            .try_clone()
                            .unwrap_or_else(|| Error::service(e.to_string()))),
                        None => Err(Error::not_found(DATA_NOT_READ)),
                    }
                },
            );
            let (ok, reason, data) = match verdict {
                Ok(v) if v.valid => (true, None, Some((true, None))),
                Ok(v) if reached_data => (false, v.reason.clone(), Some((false, v.reason))),
                Ok(v) => (false, v.reason, None),
                Err(e) if reached_data && e.to_string() == DATA_NOT_READ => (true, None, None),
                Err(e) if reached_data => (
                    false,
                    Some(e.to_string()),
                    Some((false, Some(e.to_string()))),
                ),
                Err(e) => (false, Some(e.to_string()), None),
            };
            match policy {
                PolicyName::Nova => {
                    row.nova_boots = ok;
                    row.nova_reason = reason;
                    if let Some((valid, why)) = data {
                        row.data_valid = Some(valid);
                        row.data_reason = why;
                    }
                }
                PolicyName::Strict => {
                    row.strict_valid = ok;
                    row.strict_reason = reason;
                }
            }
        }
        if row.nova_boots
            && let Some(days) = row.days_left
            && days < args.warn_days
        {
            row.at_risk = true;
            row.risk = Some(format!(
                "its certificate expires in {days} day{} (--warn-days {})",
                if days == 1 { "" } else { "s" },
                args.warn_days
            ));
        }
        rows.push(row);
    }
    if ctx.json {
        for row in &rows {
            super::print_json(&json!(row));
        }
    }
    let at_risk = rows.iter().filter(|r| r.at_risk).count();
    let summary = AuditSummary {
        images: rows.len(),
        signed: rows.iter().filter(|r| r.signed).count(),
        nova_boots: rows.iter().filter(|r| r.nova_boots).count(),
        at_risk,
        warn_days: args.warn_days,
        exit_code: if at_risk > 0 {
            imgseal::ErrorKind::Invalid.exit_code()
        } else {
            0
        },
    };
    Ok(super::output::emit(
        ctx,
        &AuditReport {
            summary,
            rows: &rows,
        },
    )?)
}

#[derive(Serialize)]
struct AuditSummary {
    images: usize,
    signed: usize,
    nova_boots: usize,
    at_risk: usize,
    warn_days: i64,
    exit_code: i32,
}

/// The audit's table and summary; with `--json` the rows went before it, one
/// per line, and this is the last line.
#[derive(Serialize)]
struct AuditReport<'a> {
    summary: AuditSummary,
    #[serde(skip)]
    rows: &'a [AuditRow],
}

impl Report for AuditReport<'_> {
    fn verdict(&self) -> Option<Verdict> {
        Some(if self.summary.at_risk > 0 {
            Verdict::named("at_risk", self.summary.exit_code)
        } else {
            Verdict::named("ok", 0)
        })
    }

    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let rows = self.rows;
        let s = &self.summary;
        write_audit_table(out, rows)?;
        writeln!(
            out,
            "{} image{}, {} signed, {} Nova would boot today, {} at risk within {} days",
            s.images,
            if s.images == 1 { "" } else { "s" },
            s.signed,
            s.nova_boots,
            s.at_risk,
            s.warn_days
        )?;
        for row in rows.iter().filter(|r| !r.nova_boots || r.at_risk) {
            let why = row
                .risk
                .as_deref()
                .or(row.nova_reason.as_deref())
                .unwrap_or("");
            writeln!(
                out,
                "  {} ({}): {why}",
                row.image_id,
                row.name.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}

fn write_audit_table(out: &mut dyn Write, rows: &[AuditRow]) -> io::Result<()> {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let table: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.image_id.clone(),
                r.name.clone().unwrap_or_default(),
                if r.signed {
                    format!(
                        "{}/{}",
                        r.key_type.as_deref().unwrap_or("?"),
                        r.hash_method.as_deref().unwrap_or("?")
                    )
                } else {
                    "unsigned".into()
                },
                r.certificate_subject
                    .clone()
                    .or_else(|| {
                        r.certificate_problem
                            .as_ref()
                            .map(|_| "(missing or unloadable)".into())
                    })
                    .unwrap_or_default(),
                match (&r.certificate_not_after, r.days_left) {
                    (Some(t), Some(d)) => format!("{t} ({d} d)"),
                    _ => String::new(),
                },
                yes_no(r.nova_boots).into(),
                yes_no(r.strict_valid).into(),
                match r.data_valid {
                    Some(v) => yes_no(v).into(),
                    None => "-".into(),
                },
                if r.at_risk {
                    "AT RISK".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let header = [
        "IMAGE",
        "NAME",
        "SIGNATURE",
        "CERTIFICATE",
        "NOT AFTER",
        "NOVA",
        "STRICT",
        "DATA",
        "RISK",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", padded.join("  ").trim_end())
    };
    line(header.to_vec())?;
    for row in &table {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}
