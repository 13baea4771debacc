//! Images in Glance: `imgseal publish`, `imgseal verify --image`,
//! `imgseal resign`, `imgseal audit`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use imgseal::algorithms::HashMethod;
use imgseal::cloud::{PublishRequest, publish};
use imgseal::error::Error;
use imgseal::glance::{OutputFormat, property_map, render};
use imgseal::openstack::glance::{Glance, NewImage};
use serde_json::json;

use super::Context;
use super::cert::StoreArgs;
use super::digest::Bars;
use super::sign::{PssSaltArg, open_signer};

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The signing key's pkcs11: URI.
    #[arg(long, short = 'k')]
    pub key: String,
    /// The signing certificate's Barbican UUID (img_signature_certificate_uuid).
    #[arg(long)]
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

pub fn run_publish(ctx: &Context, args: PublishArgs) -> anyhow::Result<i32> {
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
    let bars = Bars::new(args.quiet);
    let hash_bar = [bars.bar(&imgseal::digest::ImageSource::Path(args.image.clone()))];
    let upload_bar = bars.bytes(
        std::fs::metadata(&args.image).map(|m| m.len()).unwrap_or(0),
        "uploading",
    );
    let upload_progress: Arc<dyn Fn(u64) + Send + Sync> = {
        let bar = upload_bar.clone();
        Arc::new(move |n| bar.inc(n))
    };
    let result = publish(
        &glance,
        &device,
        &key,
        &args.cert_id,
        PublishRequest {
            image: &args.image,
            hash: args.hash,
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
        &super::seal::BarProgress(&hash_bar),
        upload_progress,
    );
    upload_bar.finish_and_clear();
    let published = result?;
    let record = &published.image;
    let format_note = match (&args.disk_format, &args.image_id) {
        (None, None) => format!("{disk_format} (detected)"),
        _ => record.disk_format().unwrap_or("?").to_string(),
    };
    if ctx.json {
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
        super::print_json(&obj);
        return Ok(0);
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
    match args.format {
        Some(format) => {
            eprintln!("{summary}");
            println!("{}", render(&published.sealed.signature, format));
        }
        None => println!("{summary}"),
    }
    Ok(0)
}

#[derive(Debug, Args)]
pub struct ResignArgs {
    /// The image in Glance, by id or name.
    #[arg(long, value_name = "ID|NAME")]
    pub image: String,
    /// The new signing key's pkcs11: URI.
    #[arg(long, short = 'k')]
    pub key: String,
    /// The new signing certificate's Barbican UUID.
    #[arg(long)]
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
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run_resign(ctx: &Context, args: ResignArgs) -> anyhow::Result<i32> {
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
        if ctx.json {
            super::print_json(&json!({
                "image_id": id,
                "dry_run": true,
                "previous_signature": old_state,
                "patch": patch,
            }));
        } else {
            println!("{}", serde_json::to_string_pretty(&patch).expect("JSON"));
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
    if ctx.json {
        let mut obj = want;
        obj["image_id"] = json!(id);
        obj["previous_signature"] = json!(old_state);
        obj["digest"] = json!(hex::encode(&digest.digest));
        obj["image_size"] = json!(digest.size);
        obj["key"] = json!(key.uri.redacted());
        super::print_json(&obj);
    } else {
        println!(
            "re-signed: image {id} now carries a {} signature ({}) by certificate {} over its {} bytes (the previous signature was {old_state})",
            signature.key_type, signature.hash_method, args.cert_id, digest.size
        );
    }
    Ok(0)
}
