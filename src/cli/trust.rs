//! The options shared by `verify` and `cert verify`: trusted ids, policy,
//! configuration, intermediates, CRLs and validation time.

use std::path::PathBuf;

use clap::Args;
use imgseal::config::{Config, TrustSettings, read_nova_conf, resolve_trust};
use imgseal::error::Error;
use imgseal::store::DirStore;
use imgseal::validate::PolicyName;
use imgseal::verify::{CertFinder, TrustPlan};
use imgseal::x509::Certificate;
use openssl::x509::X509Crl;

use super::Context;

#[derive(Debug, Args, Clone, Default)]
pub struct TrustArgs {
    /// A trusted certificate id; repeatable, each may be a comma-separated list
    /// (as `nova boot --trusted-image-certificate-id`). Forces validation.
    #[arg(long = "trusted-cert-id", value_name = "ID[,ID…]")]
    pub trusted: Vec<String>,
    /// `strict` (RFC 5280 for code signing, the default) or `nova` (exactly what
    /// Nova's cursive decides).
    #[arg(long, value_enum)]
    pub policy: Option<PolicyName>,
    /// imgseal's TOML configuration (default: $IMGSEAL_CONFIG, else
    /// $IMGSEAL_HOME/config.toml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read verify_glance_signatures, enable_certificate_validation and
    /// default_trusted_certificate_ids from this nova.conf's [glance] section.
    #[arg(long, value_name = "FILE")]
    pub nova_conf: Option<PathBuf>,
    /// More untrusted intermediates (<id>.pem/.der), for the strict policy.
    #[arg(long, value_name = "DIR")]
    pub intermediates: Option<PathBuf>,
    /// A CRL (PEM or DER) to check revocation with; repeatable (strict policy).
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Validate at this time (RFC 3339, e.g. 2026-01-31T12:00:00Z) instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Accept SHA-1-signed certificates (legacy suites only; strict policy).
    #[arg(long)]
    pub allow_sha1: bool,
    /// Smallest RSA/DSA key accepted in a chain (strict policy; default 2048).
    #[arg(long, value_name = "BITS")]
    pub min_rsa_bits: Option<u32>,
    /// Trust anchors: `auto` (default: the TPM-sealed set when no ids come
    /// from --trusted-cert-id, the environment or the configuration, and
    /// anchors were sealed from this $IMGSEAL_HOME or --tcti is given), `tpm`
    /// (always the TPM-sealed set), `off` (never). See docs/anchors.md.
    #[arg(long, value_enum, value_name = "MODE")]
    pub anchors: Option<super::anchors::AnchorsMode>,
}

pub fn parse_time(s: &str) -> Result<i64, Error> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            Error::usage(format!(
                "--at \"{s}\" is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z): {e}"
            ))
        })?;
    Ok(t.unix_timestamp())
}

pub fn read_crl(path: &PathBuf) -> Result<X509Crl, Error> {
    let bytes = super::read_input_file(path)?;
    imgseal::x509::parse_crl(&bytes, &path.display().to_string())
}

/// Certificates of a directory, for intermediates.
fn dir_certificates(dir: &PathBuf) -> Result<Vec<(String, Certificate)>, Error> {
    Ok(DirStore::new(dir)?
        .list()?
        .into_iter()
        .map(|s| (s.id, s.certificate))
        .collect())
}

impl TrustArgs {
    /// Reads --at, --crl and --intermediates as [`TrustArgs::plan`] would,
    /// for when no certificate validation runs: a value the user gave that
    /// cannot be read is an error, not something silently skipped.
    pub fn check_inputs(&self) -> Result<(), Error> {
        if let Some(s) = &self.at {
            parse_time(s)?;
        }
        for path in &self.crl {
            read_crl(path)?;
        }
        if let Some(dir) = &self.intermediates {
            dir_certificates(dir)?;
        }
        Ok(())
    }

    pub fn config(&self, ctx: &Context) -> Result<Config, Error> {
        Config::discover(self.config.as_deref(), &ctx.home()?.dir)
    }

    pub fn policy(&self, config: &Config) -> PolicyName {
        self.policy
            .or(config.validation.policy)
            .unwrap_or(PolicyName::Strict)
    }

    pub fn settings(&self, config: &Config) -> Result<TrustSettings, Error> {
        let nova = match &self.nova_conf {
            Some(p) => Some((p.clone(), read_nova_conf(p)?)),
            None => None,
        };
        let env = std::env::var("OS_TRUSTED_IMAGE_CERTIFICATE_IDS").ok();
        Ok(resolve_trust(
            &self.trusted,
            env.as_deref(),
            config,
            nova.as_ref().map(|(p, g)| (p.as_path(), g)),
        ))
    }

    /// Everything validation needs. `store` lists the certificate store's
    /// contents (used as intermediates by the strict policy).
    pub fn plan<'a>(
        &self,
        config: &Config,
        settings: TrustSettings,
        find: CertFinder<'a>,
        store: Vec<(String, Certificate)>,
        store_dir: Option<&PathBuf>,
    ) -> Result<TrustPlan<'a>, Error> {
        let mut intermediates = store;
        if let Some(dir) = &self.intermediates {
            intermediates.extend(dir_certificates(dir)?);
        }
        let mut crl_paths: Vec<PathBuf> = self.crl.clone();
        crl_paths.extend(config.validation.crls.iter().cloned());
        // CRLs kept beside the certificates in a directory store.
        if let Some(dir) = store_dir {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crl"))
                .collect();
            found.sort();
            crl_paths.extend(found);
        }
        let crls = crl_paths
            .iter()
            .map(read_crl)
            .collect::<Result<Vec<_>, _>>()?;
        let at = match &self.at {
            Some(s) => parse_time(s)?,
            None => time::OffsetDateTime::now_utc().unix_timestamp(),
        };
        let mut options = config.strict_options();
        if self.allow_sha1 {
            options.allow_sha1 = true;
        }
        if let Some(bits) = self.min_rsa_bits {
            options.min_rsa_bits = bits;
        }
        Ok(TrustPlan {
            settings,
            find,
            intermediates,
            crls,
            at,
            options,
        })
    }
}
