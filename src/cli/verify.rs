//! `imgseal verify`

use std::path::PathBuf;

use clap::Args;
use imgseal::backend::software::SoftwareVerifier;
use imgseal::digest::ImageSource;
use imgseal::error::{Error, ErrorKind};
use imgseal::verify::verify_image;
use serde_json::json;

use super::Context;
use super::cert::finder;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// JSON holding the image properties: the properties object, or the whole
    /// `openstack image show -f json` output.
    #[arg(long, value_name = "FILE")]
    pub props: PathBuf,
    /// Look the signing certificate up in this directory (default: the token).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// The image file, or - for standard input.
    pub image: String,
}

pub fn run(ctx: &Context, args: VerifyArgs) -> anyhow::Result<i32> {
    let origin = args.props.display().to_string();
    let text = std::fs::read(&args.props).map_err(|e| Error::io(&args.props, e))?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::bad_input(format!("{origin}: not UTF-8 text")))?;
    let find = finder(ctx, args.cert_dir.as_ref())?;
    let image = ImageSource::parse(&args.image);
    let verdict = verify_image(&text, &origin, &image, &*find, &SoftwareVerifier)?;
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
    } else if verdict.valid {
        println!(
            "valid: {} signature ({}) by certificate \"{}\" ({}) over {}",
            verdict.key_type,
            verdict.hash_method,
            verdict.certificate_id,
            verdict.certificate_subject,
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
    Ok(code)
}
