//! `imgseal verify`

use std::path::PathBuf;

use clap::Args;
use imgseal::backend::software::SoftwareVerifier;
use imgseal::digest::ImageSource;
use imgseal::error::{Error, ErrorKind};
use imgseal::verify::verify_image;
use serde_json::json;

use super::Context;
use super::cert::StoreArgs;
use super::trust::{Finder, ResolvedTrust, TrustArgs};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// JSON holding the image properties: the properties object, or the whole
    /// `openstack image show -f json` output.
    #[arg(long, value_name = "FILE")]
    pub props: Option<PathBuf>,
    /// Verify against a signed manifest (`sign --manifest`) instead of Glance
    /// properties: its signature, then the image's size and digests.
    #[arg(long, value_name = "FILE", conflicts_with = "props")]
    pub manifest: Option<PathBuf>,
    /// The manifest's tree file (`sign --tree`); default: the one the manifest
    /// names, beside it. Needed by --range; names the first bad block.
    #[arg(long, value_name = "FILE", requires = "manifest")]
    pub tree: Option<PathBuf>,
    /// Check only bytes OFFSET..OFFSET+LEN, reading just the blocks that
    /// cover them and their proofs from the tree.
    #[arg(long, value_name = "OFFSET:LEN", requires = "manifest")]
    pub range: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Where certificates are looked up (default: the token, or Barbican
    /// when a cloud is configured).
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub token: super::TokenArgs,
    #[command(flatten)]
    pub tcti: super::TctiArgs,
    /// Verify image ID|NAME where it lives: properties from Glance,
    /// certificates from Barbican, the data streamed from Glance (as Nova
    /// does at boot), and Glance's own size and os_hash_value compared.
    #[arg(long = "image", value_name = "ID|NAME", conflicts_with_all = ["props", "manifest", "image"])]
    pub glance_image: Option<String>,
    /// With --image: also write the image, verified, to this file (nothing
    /// is left there when it does not verify).
    #[arg(long, value_name = "OUT", requires = "glance_image")]
    pub download: Option<PathBuf>,
    /// The image file, or - for standard input.
    #[arg(required_unless_present = "glance_image")]
    pub image: Option<String>,
}

pub fn run(ctx: &Context, args: VerifyArgs) -> anyhow::Result<i32> {
    // clap's `requires = "manifest"` is not enforced once --props is given,
    // because --manifest conflicts with --props (clap-rs/clap#4520): without
    // this, `--range` was silently ignored and the whole image verified.
    if args.manifest.is_none() && (args.tree.is_some() || args.range.is_some()) {
        return Err(Error::usage("--tree and --range go with --manifest, not --props").into());
    }
    let resolved = ResolvedTrust::resolve(ctx, &args.trust, &args.store)?;
    if let Some(id) = &args.glance_image {
        return verify_in_glance(ctx, &args, id, &resolved);
    }
    let image_arg = args
        .image
        .clone()
        .expect("clap requires IMAGE without --image");
    if let Some(manifest) = &args.manifest {
        resolved.prefetch(&[]);
        let plan = resolved.plan(&args.trust)?;
        return super::seal::verify_manifest(
            ctx,
            manifest,
            args.tree.as_deref(),
            args.range.as_deref(),
            &resolved,
            plan.as_ref(),
            &image_arg,
            args.quiet,
        );
    }
    // Checked here rather than by clap, whose message names only --props.
    let props = args.props.clone().ok_or_else(|| {
        Error::usage(
            "verify needs what was signed: --props FILE (the image's Glance properties, as `sign` prints them or `openstack image show -f json` shows them) or --manifest FILE (a manifest from `sign --manifest`)",
        )
    })?;
    let origin = props.display().to_string();
    let text = super::read_input_file(&props)?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::bad_input(format!("{origin}: not UTF-8 text")))?;
    // Malformed properties are reported by verify_image below.
    let signing_id = imgseal::glance::RawProperties::from_json(&text, &origin)
        .ok()
        .and_then(|p| p.cert_uuid);
    resolved.prefetch(&signing_id.as_deref().into_iter().collect::<Vec<_>>());
    let plan = resolved.plan(&args.trust)?;
    let policy = resolved.policy;
    let find: &Finder = &*resolved.find;
    let image = ImageSource::parse(&image_arg);
    let mut verdict = verify_image(
        &text,
        &origin,
        &image,
        policy,
        plan.as_ref(),
        find,
        &SoftwareVerifier,
        resolved.options,
    )?;
    let code = report(
        ctx,
        &resolved,
        &mut verdict,
        &image.display(),
        serde_json::Map::new(),
    );
    Ok(code)
}

/// Prints a verdict (the verdict line first, then what it rests on) and
/// returns its exit code. `extra` goes into the `--json` object.
fn report(
    ctx: &Context,
    resolved: &ResolvedTrust,
    verdict: &mut imgseal::verify::Verdict,
    what: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> i32 {
    if verdict.valid
        && let Some(reason) = resolved.untrusted_reason()
    {
        verdict.valid = false;
        verdict.reason = Some(reason);
    }
    let code = if verdict.valid {
        0
    } else {
        ErrorKind::Invalid.exit_code()
    };
    if ctx.json {
        let mut obj = json!(verdict);
        obj["verdict"] = json!(if verdict.valid { "valid" } else { "invalid" });
        obj["image"] = json!(what);
        for (k, v) in extra {
            obj[k] = v;
        }
        obj["exit_code"] = json!(code);
        obj["nova_skips_signature_check"] = json!(resolved.nova_skips_note().is_some());
        if let Some(anchors) = resolved.describe_sealed() {
            obj["anchors"] = anchors;
        }
        super::print_json(&obj);
        return code;
    }
    let cert = verdict.certificate_id.as_deref().unwrap_or("?");
    if verdict.valid {
        println!(
            "valid: {} signature ({}) by certificate \"{}\" ({}) over {}",
            verdict.key_type.as_deref().unwrap_or("?"),
            verdict.hash_method.as_deref().unwrap_or("?"),
            cert,
            verdict.certificate_subject.as_deref().unwrap_or("?"),
            what
        );
    } else {
        println!(
            "invalid: {}",
            verdict
                .reason
                .as_deref()
                .unwrap_or("signature does not verify")
        );
    }
    resolved.print_hint(verdict.certificate_validation.as_ref());
    // The verdict comes first; what it rests on follows.
    resolved.print_anchors();
    for note in &verdict.notes {
        println!("note: {note}");
    }
    resolved.print_validation(
        verdict.trust.as_ref(),
        verdict.certificate_validation.as_ref(),
        verdict.reason.is_some() && !verdict.valid,
    );
    code
}

/// `verify --image`: the image as Nova would fetch it at boot.
fn verify_in_glance(
    ctx: &Context,
    args: &VerifyArgs,
    id_or_name: &str,
    resolved: &ResolvedTrust,
) -> anyhow::Result<i32> {
    use imgseal::cloud::{DownloadTarget, glance_record_disagrees, properties_text, stream_image};
    let session = ctx.session()?;
    let glance = imgseal::openstack::glance::Glance::new(&session)?;
    let record = glance.find(id_or_name)?;
    let id = record.id().to_string();
    if record.status() != "active" {
        return Err(Error::bad_input(format!(
            "image {id} is {}, not active: Glance holds no data Nova could boot",
            record.status()
        ))
        .into());
    }
    let mut download = args
        .download
        .as_deref()
        .map(DownloadTarget::create)
        .transpose()?;
    let text = properties_text(&record);
    let origin = format!("image {id} in Glance");
    resolved.prefetch(
        &record
            .0
            .get(imgseal::glance::CERT_UUID)
            .and_then(|v| v.as_str())
            .into_iter()
            .collect::<Vec<_>>(),
    );
    let plan = resolved.plan(&args.trust)?;
    let find: &Finder = &*resolved.find;
    let bars = super::digest::Bars::new(args.quiet);
    let bar = bars.bytes(record.size().unwrap_or(0), "downloading");
    let mut streamed = None;
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
            let s = stream_image(&glance, &id, &[hash], download.as_mut(), &|n| bar.inc(n))?;
            let signed = s.get(hash).expect("asked for").clone();
            streamed = Some(s);
            Ok(signed)
        },
    );
    bar.finish_and_clear();
    let mut verdict = verdict?;
    let mut extra = serde_json::Map::new();
    extra.insert("image_id".into(), json!(id));
    extra.insert("name".into(), json!(record.name()));
    if let Some(s) = &streamed {
        let disagreement = glance_record_disagrees(&record, s);
        extra.insert(
            "glance_record_matches".into(),
            json!(disagreement.is_none()),
        );
        extra.insert(
            "os_hash_value".into(),
            json!(hex::encode(&s.os_hash().digest)),
        );
        if let Some(d) = disagreement
            && verdict.valid
        {
            verdict.valid = false;
            verdict.reason = Some(format!(
                "{d}: Nova's download would fail its integrity check"
            ));
        }
    }
    // The file appears only for an image that verified, before the verdict
    // is printed: a disk that fails at the last sync makes this an error.
    if let Some(target) = download {
        if verdict.valid && resolved.untrusted_reason().is_none() {
            let path = target.path.clone();
            target.persist()?;
            extra.insert("download".into(), json!(path.display().to_string()));
        } else if !ctx.json {
            eprintln!(
                "nothing written to {}: the image did not verify",
                target.path.display()
            );
        }
    }
    let code = report(ctx, resolved, &mut verdict, &origin, extra);
    Ok(code)
}
