//! `imgseal verify`

use std::path::PathBuf;

use clap::Args;
use imgseal::backend::software::SoftwareVerifier;
use imgseal::digest::ImageSource;
use imgseal::error::{Error, ErrorKind};
use imgseal::verify::verify_image;
use serde_json::json;

use super::Context;
use super::cert::{finder, store_contents};
use super::trust::TrustArgs;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// JSON holding the image properties: the properties object, or the whole
    /// `openstack image show -f json` output.
    #[arg(long, value_name = "FILE", required_unless_present = "manifest")]
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
    /// Look certificates up in this directory (default: the token).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
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
    if let Some(manifest) = &args.manifest {
        return super::seal::verify_manifest(
            ctx,
            manifest,
            args.tree.as_deref(),
            args.range.as_deref(),
            args.cert_dir.as_ref(),
            &args.image,
            args.quiet,
        );
    }
    let props = args
        .props
        .clone()
        .expect("clap requires --props without --manifest");
    let origin = props.display().to_string();
    let text = std::fs::read(&props).map_err(|e| Error::io(&props, e))?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::bad_input(format!("{origin}: not UTF-8 text")))?;
    let config = args.trust.config(ctx)?;
    let policy = args.trust.policy(&config);
    let settings = args.trust.settings(&config)?;
    // TPM-sealed anchors, when in force, replace the trusted ids; they are
    // looked up in the sealed bundle, never in the key manager.
    let sealed = super::anchors::sealed_for_verification(ctx, &args.trust, &settings)?;
    let settings = match &sealed {
        Some((s, _)) => s.trust_settings(),
        None => settings,
    };
    let cert_dir = args
        .cert_dir
        .clone()
        .or_else(|| config.validation.cert_dir.clone());
    let find = finder(ctx, cert_dir.as_ref())?;
    let sealed_find = sealed.as_ref().map(|(s, _)| move |id: &str| s.find(id));
    let trusted_find: imgseal::verify::CertFinder = match &sealed_find {
        Some(f) => f,
        None => &*find,
    };
    let plan = if settings.validate_certificate {
        let store = store_contents(ctx, cert_dir.as_ref())?;
        Some(
            args.trust
                .plan(&config, settings, trusted_find, store, cert_dir.as_ref())?,
        )
    } else {
        // No validation runs, but a malformed --at, --crl or --intermediates
        // is still refused rather than ignored with exit 0.
        args.trust.check_inputs()?;
        None
    };
    let image = ImageSource::parse(&args.image);
    let verdict = verify_image(
        &text,
        &origin,
        &image,
        policy,
        plan.as_ref(),
        &*find,
        &SoftwareVerifier,
    )?;
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
        if let Some((s, tcti)) = &sealed {
            obj["anchors"] = super::anchors::describe_sealed(s, tcti);
        }
        super::print_json(&obj);
        return Ok(code);
    }
    if let Some((s, tcti)) = &sealed {
        println!(
            "trust anchors: version {} sealed in the TPM at {tcti} (sha256 {})",
            s.bundle.version,
            hex::encode(s.digest)
        );
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
    match (&verdict.trust, &verdict.certificate_validation) {
        (Some(trust), Some(chain)) => {
            println!(
                "trusted ids from {}: {}",
                trust.source,
                trust.trusted_ids.join(", ")
            );
            if chain.valid {
                let path: Vec<String> = chain
                    .chain
                    .iter()
                    .map(|l| format!("{} [{}]", l.subject, l.id))
                    .collect();
                println!(
                    "certificate chain ({} policy): {}",
                    chain.policy,
                    path.join(" <- ")
                );
            }
        }
        _ if verdict.reason.is_none() || verdict.valid => {
            println!(
                "certificate not validated: no trusted certificate ids (use --trusted-cert-id, OS_TRUSTED_IMAGE_CERTIFICATE_IDS or default_trusted_certificate_ids)"
            );
        }
        _ => {}
    }
    Ok(code)
}
