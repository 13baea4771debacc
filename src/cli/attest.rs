//! `imgseal attest …`: the TPM certifies the sealed anchors for a verifier's
//! nonce; `attest verify` checks such a document offline; `attest enroll`
//! ties the attestation key to the TPM's endorsement key.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};
use imgseal::attestation::{self, AttestationDoc, Expected};
use imgseal::error::{Error, ErrorKind};
use imgseal::home::write_output_file;
use openssl::x509::X509;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::anchors::{OwnerAuthArgs, open_tpm};
use super::{Context, print_json, read_input_file};

#[derive(Debug, Args)]
// Not `args_conflicts_with_subcommands`: it would also refuse the global
// --owner-auth-file before `enroll`; run_command refuses the others instead.
#[command(subcommand_negates_reqs = true)]
pub struct AttestArgs {
    #[command(flatten)]
    pub auth: OwnerAuthArgs,
    /// The verifier's nonce, hex (1 to 64 bytes).
    #[arg(long, value_name = "HEX", required = true)]
    pub nonce: Option<String>,
    /// Where to write the attestation document (JSON).
    #[arg(long, value_name = "FILE", required = true)]
    pub out: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<AttestCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
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
    },
    /// Show that the AK lives in the same TPM as the endorsement key (EK
    /// certificate + credential activation) and write an enrollment document.
    Enroll {
        /// Where to write the enrollment document (JSON).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// CA certificates (PEM) the EK certificate must chain to; repeatable
        /// (for swtpm: /var/lib/swtpm-localca/*.pem).
        #[arg(long, value_name = "PEM")]
        ek_ca: Vec<PathBuf>,
    },
}

fn fingerprint(spki_der: &[u8]) -> String {
    let h = hex::encode(Sha256::digest(spki_der));
    format!("sha256:{}", &h[..16])
}

pub fn run(ctx: &Context, args: AttestArgs) -> anyhow::Result<i32> {
    Ok(run_command(ctx, args).map_err(super::anchors::owner_auth_hint)?)
}

fn run_command(ctx: &Context, args: AttestArgs) -> Result<i32, Error> {
    if args.command.is_some() && (args.nonce.is_some() || args.out.is_some()) {
        return Err(Error::usage(
            "--nonce and --out before `verify` or `enroll` belong to `imgseal attest` itself; give them after the subcommand",
        ));
    }
    match args.command {
        None => {
            let nonce_text = args.nonce.as_deref().expect("clap requires --nonce");
            let out = args.out.as_ref().expect("clap requires --out");
            let nonce = attestation::parse_hex_arg("--nonce", nonce_text)?;
            let (mut tpm, tcti, _) = open_tpm(ctx, Some(&args.auth))?;
            let doc = attestation::attest(&mut tpm, &nonce)?;
            let text = serde_json::to_vec_pretty(&doc).expect("documents serialise");
            write_output_file(out, &text)?;
            let spki = attestation::read_public_key(doc.ak.public_key_pem.as_bytes(), "the AK")?;
            if ctx.json {
                print_json(&json!({
                    "out": out,
                    "version": doc.anchors.version,
                    "digest": doc.anchors.digest,
                    "ak_fingerprint": hex::encode(Sha256::digest(&spki)),
                    "tcti": tcti.to_string(),
                }));
            } else {
                println!(
                    "attestation of anchors version {} (sha256 {}) by AK {} written to {}",
                    doc.anchors.version,
                    doc.anchors.digest,
                    fingerprint(&spki),
                    out.display()
                );
            }
            Ok(0)
        }
        Some(AttestCommand::Verify {
            file,
            nonce,
            expected_anchors,
            expected_digest,
            ak,
            require_locked,
        }) => {
            let nonce = attestation::parse_hex_arg("--nonce", &nonce)?;
            let bytes = read_input_file(&file)?;
            let doc: AttestationDoc = serde_json::from_slice(&bytes).map_err(|e| {
                Error::bad_input(format!(
                    "{}: not an attestation document: {e}",
                    file.display()
                ))
            })?;
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
            let pinned = match &ak {
                Some(p) => Some(attestation::pinned_ak(
                    &read_input_file(p)?,
                    &p.display().to_string(),
                )?),
                None => None,
            };
            let v =
                attestation::verify(&doc, &nonce, &expected, pinned.as_deref(), require_locked)?;
            let code = if v.valid {
                0
            } else {
                ErrorKind::Invalid.exit_code()
            };
            if ctx.json {
                let mut obj = json!(v);
                obj["verdict"] = json!(if v.valid { "valid" } else { "invalid" });
                obj["exit_code"] = json!(code);
                print_json(&obj);
                return Ok(code);
            }
            let ak_fp = v
                .ak_fingerprint
                .as_deref()
                .map(|h| format!("sha256:{}", &h[..16]))
                .unwrap_or_default();
            if v.valid {
                println!(
                    "valid: the TPM with AK {ak_fp} certified anchors version {} ({} certificate{}, sha256 {}) for this nonce",
                    v.version.unwrap_or_default(),
                    v.certificates.unwrap_or_default(),
                    if v.certificates == Some(1) { "" } else { "s" },
                    v.digest.as_deref().unwrap_or("?"),
                );
                println!(
                    "counter: {} ({}); write-locked: {}",
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
                    }
                );
            } else {
                println!(
                    "invalid: {}",
                    v.reason
                        .as_deref()
                        .unwrap_or("the attestation does not hold")
                );
            }
            if !v.ak_pinned {
                println!(
                    "note: the AK was taken from the document itself; pass --ak with the AK from `imgseal attest enroll` to know which TPM signed"
                );
            }
            Ok(code)
        }
        Some(AttestCommand::Enroll { out, ek_ca }) => {
            let cas = ek_ca
                .iter()
                .map(|p| {
                    let bytes = read_input_file(p)?;
                    let certs = X509::stack_from_pem(&bytes).map_err(|e| {
                        Error::bad_input(format!(
                            "{}: not PEM certificates: {}",
                            p.display(),
                            imgseal::error::openssl_reason(&e)
                        ))
                    })?;
                    // OpenSSL finds no PEM block in garbage and returns no
                    // certificates without an error; an empty --ek-ca would
                    // then silently skip the EK chain check that was asked for.
                    if certs.is_empty() {
                        return Err(Error::bad_input(format!(
                            "{}: no PEM certificate in the file",
                            p.display()
                        )));
                    }
                    Ok(certs)
                })
                .collect::<Result<Vec<_>, Error>>()?
                .into_iter()
                .flatten()
                .collect::<Vec<_>>();
            let (mut tpm, tcti, _) = open_tpm(ctx, Some(&args.auth))?;
            let doc =
                attestation::enroll(&mut tpm, if cas.is_empty() { None } else { Some(&cas) })?;
            let text = serde_json::to_vec_pretty(&doc).expect("documents serialise");
            write_output_file(&out, &text)?;
            let spki = attestation::read_public_key(doc.ak.public_key_pem.as_bytes(), "the AK")?;
            if ctx.json {
                print_json(&json!({
                    "out": out,
                    "ek_certificate_subject": doc.ek.certificate_subject,
                    "ek_certificate_issuer": doc.ek.certificate_issuer,
                    "ek_certificate_verified": doc.activation.ek_certificate_verified,
                    "ak_fingerprint": hex::encode(Sha256::digest(&spki)),
                    "activated": doc.activation.activated,
                    "tcti": tcti.to_string(),
                }));
            } else {
                println!(
                    "EK certificate: {} (issuer {}){}",
                    doc.ek.certificate_subject,
                    doc.ek.certificate_issuer,
                    match doc.activation.ek_certificate_verified {
                        Some(true) => ", chains to --ek-ca",
                        _ => ", not checked against a CA (use --ek-ca)",
                    }
                );
                println!(
                    "credential activation: the TPM released the secret made for its EK and AK {} {}: the AK lives in the same TPM as the EK",
                    doc.ak.handle,
                    fingerprint(&spki)
                );
                println!("enrollment written to {}", out.display());
            }
            Ok(0)
        }
    }
}
