//! Certificate validation against trusted certificate ids. Policies are
//! values implementing [`Validator`] (the rustls-webpki way), so callers pick
//! one at run time:
//!
//! - [`nova::NovaPolicy`] decides exactly as cursive 0.3.1 (Nova) does, with its
//!   messages, and fails cleanly where cursive hangs or crashes;
//! - [`strict::StrictPolicy`] is RFC 5280 path validation for code signing on
//!   OpenSSL's verifier, with revocation and algorithm policy on top.

mod crl_choice;
mod dsa_inheritance;
pub mod facts;
pub mod nova;
mod openssl_hooks;
pub mod strict;

use openssl::x509::X509Crl;
use serde::Serialize;

use crate::error::Result;
use crate::x509::Certificate;

/// A trusted certificate id and what the store had under it.
#[derive(Debug, Clone)]
pub struct TrustedCertificate {
    pub id: String,
    /// `None` when the store has nothing under the id (cursive skips it).
    pub certificate: Option<Certificate>,
}

/// Knobs of the strict policy.
#[derive(Debug, Clone, Copy)]
pub struct StrictOptions {
    pub min_rsa_bits: u32,
    pub allow_sha1: bool,
    pub max_depth: u32,
    /// Accept odd RSA exponents from 3 to 65535 (never 1 or even ones).
    pub allow_small_rsa_exponent: bool,
}

impl Default for StrictOptions {
    fn default() -> Self {
        StrictOptions {
            min_rsa_bits: 2048,
            allow_sha1: false,
            max_depth: 32,
            allow_small_rsa_exponent: false,
        }
    }
}

/// Everything a policy may use.
pub struct ValidationInput<'a> {
    pub leaf_id: &'a str,
    pub leaf: &'a Certificate,
    /// In the order given: cursive's greedy walk depends on it.
    pub trusted: &'a [TrustedCertificate],
    /// Untrusted certificates that may serve as intermediates (strict only).
    pub intermediates: &'a [(String, Certificate)],
    pub crls: &'a [X509Crl],
    /// Validation time, seconds since the epoch.
    pub at: i64,
    pub options: StrictOptions,
}

/// One certificate of a chain, for people.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChainLink {
    pub id: String,
    pub subject: String,
}

/// A policy's decision.
#[derive(Debug, Clone, Serialize)]
pub struct ChainVerdict {
    pub policy: &'static str,
    pub valid: bool,
    /// The signing certificate first, the anchor last.
    pub chain: Vec<ChainLink>,
    pub anchor: Option<ChainLink>,
    pub reason: Option<String>,
    pub revoked: bool,
    /// What the policy noted on the way (cursive's warnings, for one).
    pub notes: Vec<String>,
    /// What to change, where the reason is another program's exact words
    /// (cursive's messages name no certificate, or only "base").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ChainVerdict {
    /// The chain for people: `subject [id] <- issuer [id] <- …`.
    pub fn path_text(&self) -> String {
        let links: Vec<String> = self
            .chain
            .iter()
            .map(|l| format!("{} [{}]", l.subject, l.id))
            .collect();
        links.join(" <- ")
    }

    pub fn fail(policy: &'static str, reason: impl Into<String>, notes: Vec<String>) -> Self {
        ChainVerdict {
            policy,
            valid: false,
            chain: Vec::new(),
            anchor: None,
            reason: Some(reason.into()),
            revoked: false,
            notes,
            hint: None,
        }
    }

    fn with_hint(mut self, hint: String) -> Self {
        self.hint = Some(hint);
        self
    }
}

pub trait Validator {
    fn name(&self) -> &'static str;
    fn validate(&self, input: &ValidationInput<'_>) -> Result<ChainVerdict>;
}

/// `--policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyName {
    /// Exactly what Nova (cursive 0.3.1) decides, with its messages.
    Nova,
    /// RFC 5280 path validation for code signing, with CRLs.
    Strict,
}

impl PolicyName {
    pub fn validator(self) -> Box<dyn Validator> {
        match self {
            PolicyName::Nova => Box::new(nova::NovaPolicy),
            PolicyName::Strict => Box::new(strict::StrictPolicy),
        }
    }
}

/// The id a certificate is known by, searching the trusted set then the
/// intermediates (by DER equality).
pub fn id_of(input: &ValidationInput<'_>, der: &[u8]) -> String {
    if der == input.leaf.der.as_slice() {
        return input.leaf_id.to_string();
    }
    input
        .trusted
        .iter()
        .find(|t| t.certificate.as_ref().is_some_and(|c| c.der == der))
        .map(|t| t.id.clone())
        .or_else(|| {
            input
                .intermediates
                .iter()
                .find(|(_, c)| c.der == der)
                .map(|(id, _)| id.clone())
        })
        .unwrap_or_else(|| "(not in the store)".into())
}
