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
    /// The image file, or - for standard input.
    pub image: String,
}

pub fn run(ctx: &Context, args: VerifyArgs) -> anyhow::Result<i32> {
    // clap's `requires = "manifest"` is not enforced once --props is given,
    // because --manifest conflicts with --props (clap-rs/clap#4520): without
    // this, `--range` was silently ignored and the whole image verified.
    if args.manifest.is_none() && (args.tree.is_some() || args.range.is_some()) {
        return Err(Error::usage("--tree and --range go with --manifest, not --props").into());
    }
    let resolved = ResolvedTrust::resolve(ctx, &args.trust, &args.store)?;
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
            &args.image,
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
    let image = ImageSource::parse(&args.image);
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
        obj["image"] = json!(image.display());
        obj["exit_code"] = json!(code);
        obj["nova_skips_signature_check"] = json!(resolved.nova_skips_note().is_some());
        if let Some(anchors) = resolved.describe_sealed() {
            obj["anchors"] = anchors;
        }
        super::print_json(&obj);
        return Ok(code);
    }
    let cert = verdict.certificate_id.as_deref().unwrap_or("?");
    if verdict.valid {
        println!(
            "valid: {} signature ({}) by certificate \"{}\" ({}) over {}",
            verdict.key_type.as_deref().unwrap_or("?"),
            verdict.hash_method.as_deref().unwrap_or("?"),
            cert,
            verdict.certificate_subject.as_deref().unwrap_or("?"),
            image.display()
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
    Ok(code)
}
