//! The options shared by `verify` and `cert verify`: trusted ids, policy,
//! configuration, intermediates, CRLs and validation time.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use imgseal::config::{Config, TrustSettings, read_nova_conf, resolve_trust};
use imgseal::error::Error;
use imgseal::store::DirStore;
use imgseal::validate::{PolicyName, StrictOptions};
use imgseal::verify::{CertFinder, TrustPlan};
use imgseal::x509::Certificate;
use openssl::x509::X509Crl;

use serde_json::json;
use std::rc::Rc;

use imgseal::anchors::{self, SealedAnchors};
use imgseal::backend::StoredCertificate;
use imgseal::backend::pkcs11::Login;
use imgseal::validate::ChainVerdict;
use imgseal_tpm::Tcti;

use super::Context;
use super::devices::{OpenedSource, StoreArgs, anchor_store, list_contents, open_tpm};

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct TrustArgs {
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
    /// Accept RSA keys with an odd public exponent from 3 to 65535 (strict
    /// policy; exponent 1 and even exponents are never accepted).
    #[arg(long)]
    pub allow_small_rsa_exponent: bool,
    /// Trust anchors: `auto` (default: the TPM-sealed set when no ids come
    /// from --trusted-cert-id, the environment or the configuration, and
    /// anchors were sealed from this $IMGSEAL_HOME or --tcti is given), `tpm`
    /// (always the TPM-sealed set), `off` (never). See docs/anchors.md.
    #[arg(long, value_enum, value_name = "MODE")]
    pub anchors: Option<AnchorsMode>,
    /// Refuse (exit 1) a valid signature whose certificate no trusted id
    /// validated, instead of accepting it as Nova does with certificate
    /// validation off; also `IMGSEAL_REQUIRE_TRUST=1` or `require_trust = true`
    /// in [validation].
    #[arg(long, env = "IMGSEAL_REQUIRE_TRUST", value_parser = clap::builder::BoolishValueParser::new())]
    pub require_trust: bool,
}

pub(super) fn parse_time(s: &str) -> Result<i64, Error> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            Error::usage(format!(
                "--at \"{s}\" is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z): {e}"
            ))
        })?;
    Ok(t.unix_timestamp())
}

pub(super) fn read_crl(path: &Path) -> Result<X509Crl, Error> {
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
    pub(crate) fn check_inputs(&self) -> Result<(), Error> {
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

    pub(crate) fn config(&self, ctx: &Context) -> Result<Config, Error> {
        Config::discover(self.config.as_deref(), &ctx.home()?.dir)
    }

    pub(crate) fn policy(&self, config: &Config) -> PolicyName {
        self.policy
            .or(config.validation.policy)
            .unwrap_or(PolicyName::Strict)
    }

    pub(crate) fn settings(&self, config: &Config) -> Result<TrustSettings, Error> {
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
    pub(crate) fn plan<'a>(
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
            .map(|p| read_crl(p))
            .collect::<Result<Vec<_>, _>>()?;
        let at = match &self.at {
            Some(s) => parse_time(s)?,
            None => time::OffsetDateTime::now_utc().unix_timestamp(),
        };
        Ok(TrustPlan {
            settings,
            find,
            intermediates,
            crls,
            at,
            options: self.strict_options(config),
            memo: Default::default(),
        })
    }

    /// The strict policy's knobs: the configuration, then the flags.
    pub(crate) fn strict_options(&self, config: &Config) -> StrictOptions {
        let mut options = config.strict_options();
        if self.allow_sha1 {
            options.allow_sha1 = true;
        }
        if let Some(bits) = self.min_rsa_bits {
            options.min_rsa_bits = bits;
        }
        if self.allow_small_rsa_exponent {
            options.allow_small_rsa_exponent = true;
        }
        options
    }
}

pub(super) type Finder = dyn Fn(&str) -> imgseal::Result<Option<StoredCertificate>>;

/// Trust as every command resolves it (`verify` for properties and
/// manifests, `cert verify`):
/// configuration, policy, trusted ids (or the TPM-sealed anchors that replace
/// them), and where certificates are looked up.
pub(super) struct ResolvedTrust {
    config: Config,
    pub policy: PolicyName,
    /// The strict policy's knobs (flags over the configuration), which also
    /// apply to signing keys outside any chain validation.
    pub options: imgseal::validate::StrictOptions,
    pub settings: TrustSettings,
    pub sealed: Option<(Rc<SealedAnchors>, Tcti)>,
    source: OpenedSource,
    /// `--require-trust`, `$IMGSEAL_REQUIRE_TRUST` or the configuration's
    /// `require_trust`.
    pub require_trust: bool,
    /// Whether Nova's options came from somewhere (`--nova-conf`, or
    /// `verify_glance_signatures` in the configuration) rather than defaults.
    nova_configured: bool,
    /// The signing certificate's store.
    pub find: Rc<Finder>,
    /// Where trusted ids are looked up: the sealed bundle when in force, else
    /// the same store (one device session, not two).
    trusted_find: Rc<Finder>,
}

impl ResolvedTrust {
    pub(super) fn resolve(
        ctx: &Context,
        trust: &TrustArgs,
        store: &StoreArgs,
    ) -> anyhow::Result<Self> {
        let config = trust.config(ctx)?;
        let policy = trust.policy(&config);
        let settings = trust.settings(&config)?;
        // TPM-sealed anchors, when in force, replace the trusted ids; they are
        // looked up in the sealed bundle, never in the key manager.
        let sealed =
            sealed_for_verification(ctx, trust, &settings)?.map(|(s, tcti)| (Rc::new(s), tcti));
        let settings = match &sealed {
            Some((s, _)) => s.trust_settings(),
            None => settings,
        };
        let source = store.open(ctx, config.validation.cert_dir.as_ref(), Login::NotNeeded)?;
        let lookup = Rc::clone(&source.source);
        let find: Rc<Finder> = Rc::new(move |id: &str| lookup.find(id));
        let trusted_find: Rc<Finder> = match &sealed {
            Some((s, _)) => {
                let s = Rc::clone(s);
                Rc::new(move |id: &str| s.find(id))
            }
            None => Rc::clone(&find),
        };
        Ok(ResolvedTrust {
            options: trust.strict_options(&config),
            require_trust: trust.require_trust || config.validation.require_trust == Some(true),
            nova_configured: trust.nova_conf.is_some()
                || config.glance.verify_glance_signatures.is_some(),
            config,
            policy,
            settings,
            sealed,
            source,
            find,
            trusted_find,
        })
    }

    /// Why a valid signature is still refused: `--require-trust` is in force
    /// and no trusted id will validate its certificate.
    pub(super) fn untrusted_reason(&self) -> Option<String> {
        (self.require_trust && !self.settings.validate_certificate).then(|| {
            "no trusted certificate id validated the signing certificate, and --require-trust (IMGSEAL_REQUIRE_TRUST, require_trust in the configuration) demands it: give --trusted-cert-id, OS_TRUSTED_IMAGE_CERTIFICATE_IDS, or default_trusted_certificate_ids with both Nova options on".to_string()
        })
    }

    /// Says which certificates this run looks up (`lookups`, and the trusted
    /// ids when validation runs against the store), so that a remote store
    /// reads them all at once.
    pub(super) fn prefetch(&self, lookups: &[&str]) {
        let mut ids = lookups.to_vec();
        if self.settings.validate_certificate && self.sealed.is_none() {
            ids.extend(self.settings.trusted_ids.iter().map(String::as_str));
        }
        self.source.source.prefetch(&ids);
    }

    /// What certificate validation works with, when it runs.
    pub(super) fn plan(&self, trust: &TrustArgs) -> anyhow::Result<Option<TrustPlan<'_>>> {
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
            list_contents(&self.source)?
        } else {
            Vec::new()
        };
        Ok(Some(trust.plan(
            &self.config,
            self.settings.clone(),
            &*self.trusted_find,
            store,
            self.source.dir.as_ref().filter(|_| strict),
        )?))
    }

    /// Where certificates are looked up, for messages.
    pub(super) fn source_description(&self) -> String {
        self.source.source.describe()
    }

    /// The sealed anchors, for `--json`.
    pub(super) fn describe_sealed(&self) -> Option<serde_json::Value> {
        self.sealed
            .as_ref()
            .map(|(s, tcti)| describe_sealed(s, tcti))
    }

    /// The lines right after a verdict: imgseal's hint under a message that
    /// is cursive's verbatim, and whether Nova, configured as given, would
    /// check the signature at all.
    pub(super) fn write_hint(
        &self,
        out: &mut dyn Write,
        chain: Option<&ChainVerdict>,
    ) -> io::Result<()> {
        if let Some(hint) = chain.filter(|c| !c.valid).and_then(|c| c.hint.as_ref()) {
            writeln!(out, "hint: {hint}")?;
        }
        if let Some(note) = self.nova_skips_note() {
            writeln!(out, "note: {note}")?;
        }
        Ok(())
    }

    /// Set when Nova, configured as given (`verify_glance_signatures` off
    /// and no trusted ids), would not verify the image's signature at all.
    /// Only said when Nova's options were given: imgseal cannot know an
    /// unnamed nova.conf.
    pub(super) fn nova_skips_note(&self) -> Option<&'static str> {
        (self.nova_configured && !self.settings.nova_verifies_signature).then_some(
            "Nova, configured as given (verify_glance_signatures is not True and no trusted ids are given), does not verify image signatures at all: it would boot this image whatever this verdict says",
        )
    }

    /// The line before a verdict: the sealed anchors in force.
    pub(super) fn write_anchors(&self, out: &mut dyn Write) -> io::Result<()> {
        if let Some((s, tcti)) = &self.sealed {
            writeln!(
                out,
                "trust anchors: version {} sealed in the TPM at {tcti} (sha256 {})",
                s.bundle.version,
                hex::encode(s.digest)
            )?;
        }
        Ok(())
    }

    /// The lines after a verdict: where trusted ids came from and the chain,
    /// or that no certificate validation ran.
    pub(super) fn write_validation(
        &self,
        out: &mut dyn Write,
        trust: Option<&TrustSettings>,
        chain: Option<&ChainVerdict>,
        stopped_early: bool,
    ) -> io::Result<()> {
        match (trust, chain) {
            (Some(trust), Some(chain)) => {
                writeln!(
                    out,
                    "trusted ids from {}: {}",
                    trust.source,
                    trust.trusted_ids.join(", ")
                )?;
                if chain.valid {
                    writeln!(
                        out,
                        "certificate chain ({} policy): {}",
                        chain.policy,
                        chain.path_text()
                    )?;
                }
            }
            _ if !stopped_early => {
                writeln!(
                    out,
                    "certificate not validated: no trusted certificate ids (use --trusted-cert-id, OS_TRUSTED_IMAGE_CERTIFICATE_IDS or default_trusted_certificate_ids)"
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Everything after a verdict line, in order: the hint, the sealed
    /// anchors, the verdict's notes, and the trusted ids and chain.
    pub(crate) fn write_grounds(
        &self,
        out: &mut dyn Write,
        notes: &[String],
        trust: Option<&TrustSettings>,
        chain: Option<&ChainVerdict>,
        refused: bool,
    ) -> io::Result<()> {
        self.write_hint(out, chain)?;
        self.write_anchors(out)?;
        for note in notes {
            writeln!(out, "note: {note}")?;
        }
        self.write_validation(out, trust, chain, refused)
    }

    /// The JSON fields every verdict of this trust carries.
    pub(super) fn json_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert(
            "nova_skips_signature_check".into(),
            serde_json::json!(self.nova_skips_note().is_some()),
        );
        if let Some(anchors) = self.describe_sealed() {
            m.insert("anchors".into(), anchors);
        }
        m
    }
}

/// Where trusted certificates come from, for `verify` and `cert verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AnchorsMode {
    /// The TPM-sealed set when no trusted ids come from the flag, the
    /// environment or the configuration, and anchors were sealed from this
    /// $IMGSEAL_HOME (or --tcti names a TPM).
    Auto,
    /// Always the TPM-sealed set (fails when none is sealed).
    Tpm,
    /// Never the TPM: trusted ids only.
    Off,
}

/// The sealed anchors verification uses, if any: with `--anchors tpm`
/// always; with `auto` (the default) when no trusted ids came from the flag,
/// the environment or the configuration and [`anchors::auto_trigger`] holds.
pub(super) fn sealed_for_verification(
    ctx: &Context,
    trust: &TrustArgs,
    settings: &TrustSettings,
) -> Result<Option<(SealedAnchors, Tcti)>, Error> {
    let use_tpm = match trust.anchors.unwrap_or(AnchorsMode::Auto) {
        AnchorsMode::Off => false,
        AnchorsMode::Tpm => {
            if !trust.trusted.is_empty() {
                return Err(Error::usage(
                    "--anchors tpm and --trusted-cert-id both name the trusted certificates: give one",
                ));
            }
            true
        }
        AnchorsMode::Auto => {
            settings.trusted_ids.is_empty()
                && anchors::auto_trigger(&ctx.home()?.dir, ctx.tcti.is_some())
        }
    };
    if !use_tpm {
        return Ok(None);
    }
    let (mut tpm, tcti, _) = open_tpm(ctx, None)?;
    let sealed = anchors::load(&mut tpm, &anchor_store(ctx)?)?;
    Ok(Some((sealed, tcti)))
}

/// What `verify --json` adds about the sealed anchors.
pub(super) fn describe_sealed(sealed: &SealedAnchors, tcti: &Tcti) -> serde_json::Value {
    json!({
        "version": sealed.bundle.version,
        "digest": hex::encode(sealed.digest),
        "certificates": sealed.bundle.anchors.len(),
        "source": sealed.source.to_string(),
        "counter_state": sealed.tpm.counter_state,
        "locked": sealed.tpm.locked,
        "delete_protected": sealed.tpm.delete_protected(),
        "tcti": tcti.to_string(),
    })
}
