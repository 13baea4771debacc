//! `imgseal attest …`: the TPM certifies the sealed anchors for a verifier's
//! nonce; `attest verify` checks such a document offline; `attest enroll`
//! ties the attestation key to the TPM's endorsement key.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{ArgGroup, Args, Subcommand};
use imgseal::attestation::{self, AttestationDoc, Expected};
use imgseal::enrollment;
use imgseal::error::Error;
use imgseal::home::write_private_file;
use openssl::x509::X509;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::devices::{OwnerAuthArgs, open_tpm};
use super::output::{Plain, Report, Verdict, emit, emit_beside};
use super::{Context, TctiArgs, read_input_file};

#[derive(Debug, Args)]
// Not `args_conflicts_with_subcommands`: it would also refuse the global
// --owner-auth-file before `enroll`; run_command refuses the others instead.
#[command(subcommand_negates_reqs = true)]
pub(crate) struct AttestArgs {
    #[command(flatten)]
    pub auth: OwnerAuthArgs,
    /// The verifier's nonce, hex (1 to 64 bytes).
    #[arg(long, value_name = "HEX", required = true)]
    pub nonce: Option<String>,
    /// Where to write the attestation document (JSON); - for standard output.
    #[arg(long, short = 'o', value_name = "FILE", required = true)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub tcti: TctiArgs,
    #[command(subcommand)]
    pub command: Option<AttestCommand>,
}

impl AttestArgs {
    /// `--tcti`: `enroll`'s or `activate`'s own, else the one given to
    /// `attest` itself (before the subcommand, as when it was global).
    pub(crate) fn tcti(&self) -> Option<&TctiArgs> {
        match &self.command {
            Some(AttestCommand::Enroll { tcti, .. } | AttestCommand::Activate { tcti, .. })
                if tcti.tcti.is_some() =>
            {
                Some(tcti)
            }
            _ => Some(&self.tcti),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum AttestCommand {
    /// Check an attestation document offline: signature, nonce, signer,
    /// index names and attributes, digest and version.
    #[command(group(ArgGroup::new("expected").required(true).args(["expected_anchors", "expected_digest"])))]
    Verify {
        /// The attestation document (`imgseal attest --out`).
        file: PathBuf,
        /// The nonce the attestation was requested with (hex).
        #[arg(long, value_name = "HEX")]
        nonce: String,
        /// The bundle the TPM must hold (its digest and version).
        #[arg(long, value_name = "BUNDLE")]
        expected_anchors: Option<PathBuf>,
        /// The SHA-256 of the bundle the TPM must hold (hex).
        #[arg(long, value_name = "HEX")]
        expected_digest: Option<String>,
        /// The AK to trust: its public key (PEM/DER) or an enrollment document
        /// (`attest enroll --out`). Without it, the document's own AK is used,
        /// which shows only that some TPM signed it.
        #[arg(long, value_name = "PEM")]
        ak: Option<PathBuf>,
        /// Also require the anchors to have been write-locked.
        #[arg(long)]
        require_locked: bool,
        /// Also require platform-created anchor indices, which the TPM owner
        /// cannot delete and replace (`anchors seal --delete-protection`).
        #[arg(long)]
        require_delete_protection: bool,
        /// Refuse (exit 1) an attestation whose AK was not given with --ak
        /// (then it shows only that some TPM signed); also
        /// `IMGSEAL_REQUIRE_TRUST=1`.
        #[arg(long, env = "IMGSEAL_REQUIRE_TRUST", value_parser = clap::builder::BoolishValueParser::new())]
        require_trust: bool,
    },
    /// Show that the AK lives in the same TPM as the endorsement key (EK
    /// certificate + credential activation) and write an enrollment document.
    Enroll {
        /// Where to write the enrollment document (JSON); - for standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
        /// CA certificates (PEM) the EK certificate must chain to; repeatable
        /// (for swtpm: /var/lib/swtpm-localca/*.pem).
        #[arg(long, value_name = "PEM")]
        ek_ca: Vec<PathBuf>,
        #[command(flatten)]
        tcti: TctiArgs,
    },
    /// Verifier: check a host's enrollment document without trusting it and
    /// make a credential only that host's TPM can open (MakeCredential, in
    /// software: no TPM is needed here). Send the challenge; keep the secret.
    Challenge {
        /// The host's enrollment document (`attest enroll --out`).
        enrollment: PathBuf,
        /// Where to write the challenge for the host (JSON); - for standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
        /// Where to keep the secret (JSON, mode 0600): needed by `confirm`,
        /// never sent.
        #[arg(long, value_name = "FILE")]
        secret_out: PathBuf,
        /// CA certificates (PEM) the EK certificate must chain to (the TPM
        /// manufacturer's; for swtpm: /var/lib/swtpm-localca/*.pem);
        /// repeatable, required: without them nothing shows the EK is in a TPM.
        #[arg(long, value_name = "PEM", required = true)]
        ek_ca: Vec<PathBuf>,
    },
    /// Host: open a verifier's challenge with this TPM's EK and AK
    /// (ActivateCredential) and write the response.
    Activate {
        /// The challenge (`attest challenge --out`).
        challenge: PathBuf,
        /// Where to write the response for the verifier (JSON); - for standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        tcti: TctiArgs,
    },
    /// Verifier: check the host's response against the kept secret and write
    /// the confirmed enrollment, for `attest verify --ak`.
    Confirm {
        /// The enrollment document that was challenged.
        enrollment: PathBuf,
        /// The secret kept by `attest challenge --secret-out`.
        #[arg(long, value_name = "FILE")]
        secret: PathBuf,
        /// The host's response (`attest activate --out`).
        #[arg(long, value_name = "FILE")]
        response: PathBuf,
        /// Where to write the confirmed enrollment document (JSON); - for standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
    },
}

/// The `--ek-ca` files' certificates. A file without a PEM certificate is
/// refused: OpenSSL returns none without an error, and an empty list would
/// silently skip the EK chain check that was asked for.
fn read_ek_cas(paths: &[PathBuf]) -> Result<Option<Vec<X509>>, Error> {
    let mut cas = Vec::new();
    for p in paths {
        let bytes = read_input_file(p)?;
        let certs = X509::stack_from_pem(&bytes).map_err(|e| {
            Error::bad_input(format!(
                "{}: not PEM certificates: {}",
                p.display(),
                imgseal::error::openssl_reason(&e)
            ))
        })?;
        if certs.is_empty() {
            return Err(Error::bad_input(format!(
                "{}: no PEM certificate in the file",
                p.display()
            )));
        }
        cas.extend(certs);
    }
    Ok((!cas.is_empty()).then_some(cas))
}

fn fingerprint(spki_der: &[u8]) -> String {
    let h = hex::encode(Sha256::digest(spki_der));
    format!("sha256:{}", &h[..16])
}

pub(super) fn run(ctx: &Context, args: AttestArgs) -> anyhow::Result<i32> {
    Ok(run_command(ctx, args).map_err(super::devices::owner_auth_hint)?)
}

fn run_command(ctx: &Context, args: AttestArgs) -> Result<i32, Error> {
    if args.command.is_some() && (args.nonce.is_some() || args.out.is_some()) {
        return Err(Error::usage(
            "--nonce and --out before `verify` or `enroll` belong to `imgseal attest` itself; give them after the subcommand",
        ));
    }
    match args.command {
        None => {
            let nonce = args.nonce.as_deref().expect("clap requires --nonce");
            let out = args.out.as_ref().expect("clap requires --out");
            attest(ctx, &args.auth, nonce, out)
        }
        Some(AttestCommand::Verify {
            file,
            nonce,
            expected_anchors,
            expected_digest,
            ak,
            require_locked,
            require_delete_protection,
            require_trust,
        }) => {
            let expected = match (expected_anchors, expected_digest) {
                (Some(path), _) => Expected::Bundle(read_input_file(&path)?),
                (None, Some(d)) => {
                    let d = attestation::parse_hex_arg("--expected-digest", &d)?;
                    Expected::Digest(d.try_into().map_err(|_| {
                        Error::usage("--expected-digest must be a SHA-256 digest (64 hex digits)")
                    })?)
                }
                (None, None) => unreachable!("clap requires one of them"),
            };
            let require = attestation::Requirements {
                locked: require_locked,
                delete_protected: require_delete_protection,
            };
            verify(
                ctx,
                &file,
                &nonce,
                &expected,
                ak.as_deref(),
                require,
                require_trust,
            )
        }
        Some(AttestCommand::Enroll { out, ek_ca, .. }) => enroll(ctx, &args.auth, &out, &ek_ca),
        Some(AttestCommand::Challenge {
            enrollment,
            out,
            secret_out,
            ek_ca,
        }) => challenge(ctx, &enrollment, &out, &secret_out, &ek_ca),
        Some(AttestCommand::Activate { challenge, out, .. }) => {
            activate(ctx, &args.auth, &challenge, &out)
        }
        Some(AttestCommand::Confirm {
            enrollment,
            secret,
            response,
            out,
        }) => confirm(ctx, &enrollment, &secret, &response, &out),
    }
}

/// `imgseal attest`: the TPM certifies the sealed anchors for the nonce.
fn attest(ctx: &Context, auth: &OwnerAuthArgs, nonce: &str, out: &Path) -> Result<i32, Error> {
    super::refuse_stdout_with_json(ctx, "--out", out)?;
    let nonce = attestation::parse_hex_arg("--nonce", nonce)?;
    let (mut tpm, tcti, _) = open_tpm(ctx, Some(auth))?;
    let doc = attestation::attest(&mut tpm, &nonce)?;
    let text = serde_json::to_vec_pretty(&doc).expect("documents serialise");
    super::write_out(out, &text)?;
    let spki = attestation::read_public_key(doc.ak.public_key_pem.as_bytes(), "the AK")?;
    emit_beside(
        ctx,
        &Plain::new(
            json!({
                "out": out,
                "version": doc.anchors.version,
                "digest": doc.anchors.digest,
                "ak_fingerprint": hex::encode(Sha256::digest(&spki)),
                "tcti": tcti.to_string(),
            }),
            format!(
                "attestation of anchors version {} (sha256 {}) by AK {} written to {}",
                doc.anchors.version,
                doc.anchors.digest,
                fingerprint(&spki),
                out.display()
            ),
        ),
        out,
    )
}

/// `attest verify`: the document checked offline.
fn verify(
    ctx: &Context,
    file: &Path,
    nonce: &str,
    expected: &Expected,
    ak: Option<&Path>,
    require: attestation::Requirements,
    require_trust: bool,
) -> Result<i32, Error> {
    let nonce = attestation::parse_hex_arg("--nonce", nonce)?;
    // The rule `imgseal attest --nonce` applies: an empty nonce would accept
    // a certification bound to no request (a replay).
    attestation::check_nonce(&nonce)?;
    let bytes = read_input_file(file)?;
    let doc: AttestationDoc = serde_json::from_slice(&bytes).map_err(|e| {
        Error::bad_input(format!(
            "{}: not an attestation document: {e}",
            file.display()
        ))
    })?;
    // An enrollment document also says whether a verifier confirmed it.
    let (pinned, confirmed) = match ak {
        Some(p) => {
            let bytes = read_input_file(p)?;
            let origin = p.display().to_string();
            let key = attestation::pinned_ak(&bytes, &origin)?;
            let confirmed = if bytes.trim_ascii_start().starts_with(b"{") {
                Some(
                    enrollment::parse_enrollment(&bytes, &origin)?
                        .activation
                        .verifier_confirmed,
                )
            } else {
                None
            };
            (Some(key), confirmed)
        }
        None => (None, None),
    };
    let mut v = attestation::verify(&doc, &nonce, expected, pinned.as_deref(), require)?;
    if v.valid && require_trust && !v.ak_pinned {
        v.valid = false;
        v.reason = Some(
            "the AK was taken from the document itself, and --require-trust (IMGSEAL_REQUIRE_TRUST) demands a known one: pass --ak with the AK from `imgseal attest enroll`".into(),
        );
    }
    emit(
        ctx,
        &AttestationReport {
            verdict: v,
            ak_enrollment_confirmed: confirmed,
        },
    )
}

/// `attest verify`'s answer.
#[derive(Serialize)]
struct AttestationReport {
    #[serde(flatten)]
    verdict: attestation::AttestVerdict,
    ak_enrollment_confirmed: Option<bool>,
}

impl Report for AttestationReport {
    fn verdict(&self) -> Option<Verdict> {
        Some(Verdict::of(self.verdict.valid))
    }

    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let v = &self.verdict;
        let ak_fp = v
            .ak_fingerprint
            .as_deref()
            .map(|h| format!("sha256:{}", &h[..16]))
            .unwrap_or_default();
        if v.valid {
            writeln!(
                out,
                "valid: the TPM with AK {ak_fp} certified anchors version {} ({} certificate{}, sha256 {}) for this nonce",
                v.version.unwrap_or_default(),
                v.certificates.unwrap_or_default(),
                if v.certificates == Some(1) { "" } else { "s" },
                v.digest.as_deref().unwrap_or("?"),
            )?;
            writeln!(
                out,
                "counter: {} ({}); write-locked: {}; indices: {}",
                v.counter.unwrap_or_default(),
                match v.counter_state {
                    Some(imgseal::anchors::CounterState::SealPending) =>
                        "one behind the record: an interrupted seal, accepted",
                    _ => "the record is current, not rolled back",
                },
                if v.record_locked == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                if v.delete_protected == Some(true) {
                    "platform-created (the owner cannot delete them)"
                } else {
                    "owner-created (the owner can delete and replace them)"
                }
            )?;
        } else {
            writeln!(
                out,
                "invalid: {}",
                v.reason
                    .as_deref()
                    .unwrap_or("the attestation does not hold")
            )?;
        }
        if self.ak_enrollment_confirmed == Some(false) {
            writeln!(
                out,
                "note: the AK's enrollment is the host's own report; a verifier confirms it with `attest challenge`, `attest activate` and `attest confirm`"
            )?;
        }
        if !v.ak_pinned {
            writeln!(
                out,
                "note: the AK was taken from the document itself; pass --ak with the AK from `imgseal attest enroll` to know which TPM signed"
            )?;
        }
        Ok(())
    }
}

/// `attest enroll`: EK certificate and credential activation, on the host.
fn enroll(
    ctx: &Context,
    auth: &OwnerAuthArgs,
    out: &Path,
    ek_ca: &[PathBuf],
) -> Result<i32, Error> {
    super::refuse_stdout_with_json(ctx, "--out", out)?;
    let cas = read_ek_cas(ek_ca)?;
    let (mut tpm, tcti, _) = open_tpm(ctx, Some(auth))?;
    let doc = attestation::enroll(&mut tpm, cas.as_deref())?;
    let text = serde_json::to_vec_pretty(&doc).expect("documents serialise");
    super::write_out(out, &text)?;
    let spki = attestation::read_public_key(doc.ak.public_key_pem.as_bytes(), "the AK")?;
    let lines = [
        format!(
            "EK certificate: {} (issuer {}){}",
            doc.ek.certificate_subject,
            doc.ek.certificate_issuer,
            match doc.activation.ek_certificate_verified {
                Some(true) => ", chains to --ek-ca",
                _ => ", not checked against a CA (use --ek-ca)",
            }
        ),
        format!(
            "credential activation: the TPM released the secret made for its EK and AK {} {}: the AK lives in the same TPM as the EK",
            doc.ak.handle,
            fingerprint(&spki)
        ),
        format!("enrollment written to {}", out.display()),
        "note: this is the host's own report; a verifier confirms it with `attest challenge`, `attest activate` and `attest confirm`".to_string(),
    ];
    emit_beside(
        ctx,
        &Plain::new(
            json!({
                "out": out,
                "ek_certificate_subject": doc.ek.certificate_subject,
                "ek_certificate_issuer": doc.ek.certificate_issuer,
                "ek_certificate_verified": doc.activation.ek_certificate_verified,
                "ak_fingerprint": hex::encode(Sha256::digest(&spki)),
                "activated": doc.activation.activated,
                "tcti": tcti.to_string(),
            }),
            lines.join("\n"),
        ),
        out,
    )
}

/// `attest challenge`: the verifier's credential, made in software.
fn challenge(
    ctx: &Context,
    enrollment_file: &Path,
    out: &Path,
    secret_out: &Path,
    ek_ca: &[PathBuf],
) -> Result<i32, Error> {
    super::refuse_stdout_with_json(ctx, "--out", out)?;
    if super::is_stdout(secret_out) {
        return Err(Error::usage(
            "--secret-out -: the secret is kept, never printed; give it a file (mode 0600)",
        ));
    }
    let cas = read_ek_cas(ek_ca)?;
    let bytes = read_input_file(enrollment_file)?;
    let origin = enrollment_file.display().to_string();
    // No TPM: the credential is made in software from public values.
    let (challenge, secret) =
        enrollment::challenge(&bytes, &origin, cas.as_deref().unwrap_or(&[]))?;
    // The secret first: a challenge without its secret is useless.
    let secret_text =
        Zeroizing::new(serde_json::to_vec_pretty(&secret).expect("documents serialise"));
    write_private_file(secret_out, &secret_text)?;
    let text = serde_json::to_vec_pretty(&challenge).expect("documents serialise");
    if let Err(e) = super::write_out(out, &text) {
        let _ = std::fs::remove_file(secret_out);
        return Err(e);
    }
    // The AK by its fingerprint, as every attest command names it
    // (challenge succeeded: the public key is the AK public area's).
    let spki = attestation::read_public_key(
        enrollment::parse_enrollment(&bytes, &origin)?
            .ak
            .public_key_pem
            .as_bytes(),
        "the AK",
    )?;
    emit_beside(
        ctx,
        &Plain::new(
            json!({
                "out": out,
                "secret_out": secret_out,
                "ak_fingerprint": hex::encode(Sha256::digest(&spki)),
                "ek_certificate_verified": secret.ek_certificate_verified,
            }),
            format!(
                "challenge for AK {} written to {}; secret kept in {} (do not send it)",
                fingerprint(&spki),
                out.display(),
                secret_out.display()
            ),
        ),
        out,
    )
}

/// `attest activate`: the host's TPM opens the verifier's challenge.
fn activate(
    ctx: &Context,
    auth: &OwnerAuthArgs,
    challenge: &Path,
    out: &Path,
) -> Result<i32, Error> {
    super::refuse_stdout_with_json(ctx, "--out", out)?;
    let origin = challenge.display().to_string();
    let doc = enrollment::parse_challenge(&read_input_file(challenge)?, &origin)?;
    let (mut tpm, _, _) = open_tpm(ctx, Some(auth))?;
    let (response, spki) = enrollment::activate(&mut tpm, &doc, &origin)?;
    let text = serde_json::to_vec_pretty(&response).expect("documents serialise");
    super::write_out(out, &text)?;
    emit_beside(
        ctx,
        &Plain::new(
            json!({
                "out": out,
                "ak_fingerprint": hex::encode(Sha256::digest(&spki)),
            }),
            format!(
                "the TPM opened the challenge for AK {}; response written to {}",
                fingerprint(&spki),
                out.display()
            ),
        ),
        out,
    )
}

/// `attest confirm`: the verifier checks the host's response.
fn confirm(
    ctx: &Context,
    enrollment_file: &Path,
    secret: &Path,
    response: &Path,
    out: &Path,
) -> Result<i32, Error> {
    super::refuse_stdout_with_json(ctx, "--out", out)?;
    let bytes = read_input_file(enrollment_file)?;
    let kept = enrollment::parse_secret(
        &Zeroizing::new(read_input_file(secret)?),
        &secret.display().to_string(),
    )?;
    let answer =
        enrollment::parse_response(&read_input_file(response)?, &response.display().to_string())?;
    let verdict = enrollment::confirm(
        &bytes,
        &enrollment_file.display().to_string(),
        &kept,
        &answer,
    )?;
    let report = match &verdict {
        Ok(doc) => {
            let text = serde_json::to_vec_pretty(doc).expect("documents serialise");
            super::write_out(out, &text)?;
            let spki = attestation::read_public_key(doc.ak.public_key_pem.as_bytes(), "the AK")?;
            ConfirmReport {
                reason: None,
                ak_fingerprint: Some(hex::encode(Sha256::digest(&spki))),
                out: Some(out.to_path_buf()),
                text: format!(
                    "valid: the host's TPM released this verifier's secret: AK {} lives in the TPM of EK \"{}\"; confirmed enrollment written to {}",
                    fingerprint(&spki),
                    doc.ek.certificate_subject,
                    out.display()
                ),
            }
        }
        Err(reason) => ConfirmReport {
            reason: Some(reason.clone()),
            ak_fingerprint: None,
            out: None,
            text: format!("invalid: {reason}"),
        },
    };
    emit_beside(ctx, &report, out)
}

/// `attest confirm`'s answer.
#[derive(Serialize)]
struct ConfirmReport {
    reason: Option<String>,
    ak_fingerprint: Option<String>,
    out: Option<PathBuf>,
    #[serde(skip)]
    text: String,
}

impl Report for ConfirmReport {
    fn verdict(&self) -> Option<Verdict> {
        Some(Verdict::of(self.reason.is_none()))
    }

    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.text)
    }
}
