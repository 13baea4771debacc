//! `imgseal sign`

use std::path::PathBuf;

use clap::Args;
use imgseal::algorithms::HashMethod;
use imgseal::backend::SigningDevice;
use imgseal::backend::pkcs11::Login;
use imgseal::certsource::{CertificateSource, TokenSource};
use imgseal::glance::OutputFormat;
use imgseal::sign::check_certificate_matches;

use super::devices::{SourceKind, StoreArgs};
use super::{Context, parse_uri};

/// `--pss-salt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PssSaltArg {
    Max,
    Digest,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The signing key's pkcs11: URI.
    #[arg(long, short = 'k', value_name = "URI")]
    pub key: String,
    /// The signing certificate's id in the key manager (img_signature_certificate_uuid).
    #[arg(long, value_name = "ID")]
    pub cert_id: String,
    /// SHA-224, SHA-256, SHA-384 or SHA-512.
    #[arg(long, default_value = "SHA-256")]
    pub hash: HashMethod,
    /// How to print the properties (default: json). Not with --json, which
    /// prints imgseal's whole record instead.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// RSA-PSS salt: max (the largest the key allows, as cursive signs) or
    /// digest (as long as the hash). Glance and Nova detect the salt length;
    /// a token that signs only with the hash's length (a TPM) gets that
    /// either way, with a warning.
    #[arg(long, value_enum, default_value = "max")]
    pub pss_salt: PssSaltArg,
    /// Where the certificate is looked up, to check that it exists and holds
    /// the signing key (default: the token, or Barbican when a cloud is
    /// configured).
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub token: super::TokenArgs,
    /// Sign even when the certificate is not in the chosen source (a
    /// signature under an id Glance cannot resolve is refused on upload).
    #[arg(long)]
    pub no_cert_check: bool,
    /// Also write a signed manifest (size, linear and fs-verity digests, the
    /// Glance properties), computed in the same read pass. With several
    /// images: a directory, getting <image name>.manifest.json each.
    #[arg(long, value_name = "OUT")]
    pub manifest: Option<PathBuf>,
    /// Also write the fs-verity tree, for block-level checks (`verify --range`).
    /// With several images: a directory, getting <image name>.tree each.
    #[arg(long, value_name = "OUT", requires = "manifest")]
    pub tree: Option<PathBuf>,
    /// The manifest's fs-verity tree hash: SHA-256 or SHA-512.
    #[arg(long, default_value = "SHA-256", requires = "manifest")]
    pub tree_hash: HashMethod,
    #[command(flatten)]
    pub tree_args: super::digest::TreeArgs,
    /// Write each image's properties (in --format) to
    /// <DIR>/<image name>.props.json, .args or .env instead of stdout; needed
    /// for --format openstack or env with several images.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// The image files, or - for standard input. Several are hashed in
    /// parallel and signed in one login; one result each is printed.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub(super) fn run(ctx: &Context, args: SignArgs) -> anyhow::Result<i32> {
    let format = match (ctx.json, args.format) {
        (true, Some(f)) if f != OutputFormat::Json => {
            return Err(imgseal::Error::usage(format!(
                "--json and --format {} contradict each other: --json prints imgseal's whole record (properties, digest, key), --format only the four properties; give one",
                clap::ValueEnum::to_possible_value(&f).map(|v| v.get_name().to_string()).unwrap_or_default()
            ))
            .into());
        }
        (_, f) => f.unwrap_or(OutputFormat::Json),
    };
    args.tree_args
        .only_with("--manifest", args.manifest.is_some())?;
    let tree_params = args.tree_args.params(args.tree_hash)?;
    let (device, key) = open_signer(
        ctx,
        &args.key,
        &args.cert_id,
        &args.store,
        args.no_cert_check,
        args.pss_salt,
    )?;
    let req = super::seal::SealRequest {
        images: &args.images,
        cert_id: &args.cert_id,
        hash: args.hash,
        format,
        manifest: args.manifest.as_deref(),
        tree: args.tree.as_deref(),
        tree_params,
        quiet: args.quiet,
        out_dir: args.out_dir.as_deref(),
    };
    super::seal::sign_many(ctx, &device, &key, req)
}

/// Opens the token holding `key_arg` and finds the key, after checking that
/// certificate `cert_id` exists in the chosen source and holds the key's
/// public key (a signature nothing can verify is caught before it is made).
pub(super) fn open_signer(
    ctx: &Context,
    key_arg: &str,
    cert_id: &str,
    store: &StoreArgs,
    no_cert_check: bool,
    pss_salt: PssSaltArg,
) -> anyhow::Result<(
    imgseal::backend::pkcs11::Pkcs11Device,
    imgseal::backend::KeyHandle,
)> {
    let uri = parse_uri(key_arg, "--key")?;
    // Before the store is searched for it: a malformed id found nowhere
    // printed a "not in the local store" warning, then this error.
    imgseal::glance::check_cert_id(cert_id)
        .map_err(|e| imgseal::Error::usage(format!("--cert-id: {e}")))?;
    let mut device = ctx.device(Some(&uri), Login::Required)?;
    if pss_salt == PssSaltArg::Digest {
        device.set_pss_salt(imgseal::signature::PssSalt::DigestLength);
    }
    let key = device.find_key(&uri)?;
    let cert = match store.kind(ctx, None) {
        // The device already open serves its certificates too: one session.
        SourceKind::Token if store.cert_dir.is_none() => TokenSource(&device).find(cert_id)?,
        _ => store
            .open(ctx, None, Login::NotNeeded)?
            .source
            .find(cert_id)?,
    };
    match &cert {
        Some(stored) => check_certificate_matches(&key, cert_id, &stored.certificate)?,
        None if no_cert_check => tracing::warn!(
            cert_id = %cert_id,
            "certificate not found; --no-cert-check: not checking that it holds the signing key"
        ),
        None => {
            let opened = store.open(ctx, None, Login::NotNeeded);
            let where_ = opened
                .map(|o| o.source.describe())
                .unwrap_or_else(|_| "the certificate source".into());
            return Err(imgseal::Error::bad_input(format!(
                "--cert-id {cert_id}: no such certificate in {where_}; Glance would refuse the signature on upload (publish it with `imgseal cert publish`, or sign anyway with --no-cert-check)"
            ))
            .into());
        }
    }
    Ok((device, key))
}
