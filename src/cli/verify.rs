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
    #[arg(long, value_name = "FILE")]
    pub props: PathBuf,
    /// Look certificates up in this directory (default: the token).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The image file, or - for standard input.
    pub image: String,
}

pub fn run(ctx: &Context, args: VerifyArgs) -> anyhow::Result<i32> {
    let origin = args.props.display().to_string();
    let text = std::fs::read(&args.props).map_err(|e| Error::io(&args.props, e))?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::bad_input(format!("{origin}: not UTF-8 text")))?;
    let config = args.trust.config(ctx)?;
    let policy = args.trust.policy(&config);
    let settings = args.trust.settings(&config)?;
    let cert_dir = args
        .cert_dir
        .clone()
        .or_else(|| config.validation.cert_dir.clone());
    let find = finder(ctx, cert_dir.as_ref())?;
    let plan = if settings.validate_certificate {
        let store = store_contents(ctx, cert_dir.as_ref())?;
        Some(
            args.trust
                .plan(&config, settings, &*find, store, cert_dir.as_ref())?,
        )
    } else {
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
        println!("{obj}");
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
