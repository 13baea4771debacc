//! `imgseal verify`

use std::path::PathBuf;

use clap::Args;
use imgseal::backend::software::SoftwareVerifier;
use imgseal::digest::ImageSource;
use imgseal::error::{Error, ErrorKind};
use imgseal::verify::verify_image;
use serde_json::json;

use std::rc::Rc;

use imgseal::anchors::SealedAnchors;
use imgseal::backend::StoredCertificate;
use imgseal::config::{Config, TrustSettings};
use imgseal::validate::{ChainVerdict, PolicyName};
use imgseal::verify::TrustPlan;
use imgseal_tpm::Tcti;

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

pub type Finder = dyn Fn(&str) -> imgseal::Result<Option<StoredCertificate>>;

/// Trust as `verify` resolves it, for Glance properties and manifests alike:
/// configuration, policy, trusted ids (or the TPM-sealed anchors that replace
/// them), and where certificates are looked up.
pub struct ResolvedTrust {
    config: Config,
    pub policy: PolicyName,
    pub settings: TrustSettings,
    pub sealed: Option<(Rc<SealedAnchors>, Tcti)>,
    cert_dir: Option<PathBuf>,
    /// The signing certificate's store.
    pub find: Rc<Finder>,
    /// Where trusted ids are looked up: the sealed bundle when in force, else
    /// the same store (one device session, not two).
    trusted_find: Rc<Finder>,
}

impl ResolvedTrust {
    pub fn resolve(
        ctx: &Context,
        trust: &TrustArgs,
        cert_dir: Option<&PathBuf>,
    ) -> anyhow::Result<Self> {
        let config = trust.config(ctx)?;
        let policy = trust.policy(&config);
        let settings = trust.settings(&config)?;
        // TPM-sealed anchors, when in force, replace the trusted ids; they are
        // looked up in the sealed bundle, never in the key manager.
        let sealed = super::anchors::sealed_for_verification(ctx, trust, &settings)?
            .map(|(s, tcti)| (Rc::new(s), tcti));
        let settings = match &sealed {
            Some((s, _)) => s.trust_settings(),
            None => settings,
        };
        let cert_dir = cert_dir
            .cloned()
            .or_else(|| config.validation.cert_dir.clone());
        let find: Rc<Finder> = Rc::from(finder(ctx, cert_dir.as_ref())?);
        let trusted_find: Rc<Finder> = match &sealed {
            Some((s, _)) => {
                let s = Rc::clone(s);
                Rc::new(move |id: &str| s.find(id))
            }
            None => Rc::clone(&find),
        };
        Ok(ResolvedTrust {
            config,
            policy,
            settings,
            sealed,
            cert_dir,
            find,
            trusted_find,
        })
    }

    /// What certificate validation works with, when it runs.
    pub fn plan(&self, ctx: &Context, trust: &TrustArgs) -> anyhow::Result<Option<TrustPlan<'_>>> {
        if !self.settings.validate_certificate {
            // No validation runs, but a malformed --at, --crl or --intermediates
            // is still refused rather than ignored with exit 0.
            trust.check_inputs()?;
            return Ok(None);
        }
        // Nova reads neither the store's other certificates nor CRLs: a stray
        // file there must not change (or break) its answer.
        let strict = self.policy == PolicyName::Strict;
        let store = if strict {
            store_contents(ctx, self.cert_dir.as_ref())?
        } else {
            Vec::new()
        };
        Ok(Some(trust.plan(
            &self.config,
            self.settings.clone(),
            &*self.trusted_find,
            store,
            self.cert_dir.as_ref().filter(|_| strict),
        )?))
    }

    /// The sealed anchors, for `--json`.
    pub fn describe_sealed(&self) -> Option<serde_json::Value> {
        self.sealed
            .as_ref()
            .map(|(s, tcti)| super::anchors::describe_sealed(s, tcti))
    }

    /// The line before a verdict: the sealed anchors in force.
    pub fn print_anchors(&self) {
        if let Some((s, tcti)) = &self.sealed {
            println!(
                "trust anchors: version {} sealed in the TPM at {tcti} (sha256 {})",
                s.bundle.version,
                hex::encode(s.digest)
            );
        }
    }

    /// The lines after a verdict: where trusted ids came from and the chain,
    /// or that no certificate validation ran.
    pub fn print_validation(
        &self,
        trust: Option<&TrustSettings>,
        chain: Option<&ChainVerdict>,
        stopped_early: bool,
    ) {
        match (trust, chain) {
            (Some(trust), Some(chain)) => {
                println!(
                    "trusted ids from {}: {}",
                    trust.source,
                    trust.trusted_ids.join(", ")
                );
                if chain.valid {
                    println!(
                        "certificate chain ({} policy): {}",
                        chain.policy,
                        chain.path_text()
                    );
                }
            }
            _ if !stopped_early => {
                println!(
                    "certificate not validated: no trusted certificate ids (use --trusted-cert-id, OS_TRUSTED_IMAGE_CERTIFICATE_IDS or default_trusted_certificate_ids)"
                );
            }
            _ => {}
        }
    }
}

pub fn run(ctx: &Context, args: VerifyArgs) -> anyhow::Result<i32> {
    // clap's `requires = "manifest"` is not enforced once --props is given,
    // because --manifest conflicts with --props (clap-rs/clap#4520): without
    // this, `--range` was silently ignored and the whole image verified.
    if args.manifest.is_none() && (args.tree.is_some() || args.range.is_some()) {
        return Err(Error::usage("--tree and --range go with --manifest, not --props").into());
    }
    let resolved = ResolvedTrust::resolve(ctx, &args.trust, args.cert_dir.as_ref())?;
    let plan = resolved.plan(ctx, &args.trust)?;
    if let Some(manifest) = &args.manifest {
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
    let props = args
        .props
        .clone()
        .expect("clap requires --props without --manifest");
    let origin = props.display().to_string();
    let text = super::read_input_file(&props)?;
    let text = String::from_utf8(text)
        .map_err(|_| Error::bad_input(format!("{origin}: not UTF-8 text")))?;
    let policy = resolved.policy;
    let find: &Finder = &*resolved.find;
    let image = ImageSource::parse(&args.image);
    let verdict = verify_image(
        &text,
        &origin,
        &image,
        policy,
        plan.as_ref(),
        find,
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
        if let Some(anchors) = resolved.describe_sealed() {
            obj["anchors"] = anchors;
        }
        super::print_json(&obj);
        return Ok(code);
    }
    resolved.print_anchors();
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
    resolved.print_validation(
        verdict.trust.as_ref(),
        verdict.certificate_validation.as_ref(),
        verdict.reason.is_some() && !verdict.valid,
    );
    Ok(code)
}
