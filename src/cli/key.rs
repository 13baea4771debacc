//! `imgseal key …`

use std::path::PathBuf;

use clap::{Args, Subcommand};
use imgseal::algorithms::{HashMethod, KeyKind};
use imgseal::backend::SigningDevice;
use imgseal::backend::pkcs11::Login;
use imgseal::x509::{build_csr, csr_scheme, parse_subject};
use serde_json::json;

use super::output::{Plain, emit};
use super::{Context, TokenArgs, parse_uri};

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Generate a key pair inside the token (sensitive, never extractable) and print its URI.
    Generate {
        /// rsa-pss-2048|rsa-pss-3072|rsa-pss-4096|dsa-2048|dsa-3072|ecc-secp384r1|ecc-secp521r1|ecc-sect409k1|ecc-sect409r1|ecc-sect571k1|ecc-sect571r1
        #[arg(long = "type", value_name = "TYPE")]
        kind: KeyKind,
        /// The key's label (CKA_LABEL), unique in the token.
        #[arg(long)]
        label: String,
        /// Generate the key even if the token refuses some of imgseal's
        /// hardening attributes (one signature mechanism, no decryption,
        /// unchangeable attributes); `key show` reports what the key has.
        #[arg(long)]
        allow_weaker_key_attributes: bool,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// List the private keys in the token.
    List {
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Print a key's public key as PEM.
    Show {
        #[command(flatten)]
        uri: KeyUriArg,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Delete a key pair from the token: the private key and its public key
    /// object (and, with --with-certificate, the certificate objects that
    /// share its CKA_ID); says what was removed.
    Delete {
        #[command(flatten)]
        uri: KeyUriArg,
        /// Delete without asking (needed when not on a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        /// Also delete the token's certificate objects with the key's CKA_ID
        /// (kept, and named, without it).
        #[arg(long)]
        with_certificate: bool,
        /// Delete it even when the TPM-sealed trust anchors hold a
        /// certificate for it.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Write a PKCS#10 certificate request signed inside the token.
    Csr {
        /// The key's pkcs11: URI.
        #[arg(long, short = 'k', value_name = "URI")]
        key: String,
        /// The subject, RFC 4514 ("CN=Image signing,O=Example") or as
        /// `openssl req -subj` takes it ("/O=Example/CN=Image signing").
        #[arg(long)]
        subject: String,
        /// Where to write the request (PEM); - for stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: PathBuf,
        /// The request's hash (default: SHA-256; SHA-384/512 for the larger curves).
        #[arg(long)]
        hash: Option<HashMethod>,
        #[command(flatten)]
        token: TokenArgs,
    },
}

/// The key of `key show` and `key delete`: `--key URI` as everywhere else,
/// or the URI alone (as these commands took it first).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct KeyUriArg {
    /// The key's pkcs11: URI (the same as --key).
    #[arg(value_name = "URI")]
    uri: Option<String>,
    /// The key's pkcs11: URI.
    #[arg(long = "key", short = 'k', value_name = "URI")]
    key: Option<String>,
}

impl KeyUriArg {
    pub(crate) fn value(&self) -> &str {
        self.key
            .as_deref()
            .or(self.uri.as_deref())
            .expect("clap requires the URI or --key")
    }
}

impl KeyCommand {
    /// `--token`, which every key command takes.
    pub(crate) fn token_args(&mut self) -> &mut TokenArgs {
        match self {
            KeyCommand::Generate { token, .. }
            | KeyCommand::List { token }
            | KeyCommand::Show { token, .. }
            | KeyCommand::Delete { token, .. }
            | KeyCommand::Csr { token, .. } => token,
        }
    }
}

/// `"a", "b"`: ids for a message.
fn quoted<S: AsRef<str>>(ids: &[S]) -> String {
    ids.iter()
        .map(|i| format!("\"{}\"", i.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn run(ctx: &Context, cmd: KeyCommand) -> anyhow::Result<i32> {
    match cmd {
        KeyCommand::Generate {
            kind,
            label,
            allow_weaker_key_attributes,
            ..
        } => {
            let device = ctx.device(None, Login::Required)?;
            let (key, missing) = device.generate_key(kind, &label, allow_weaker_key_attributes)?;
            let uri = key.uri.redacted();
            emit(
                ctx,
                &Plain::new(
                    json!({
                        "uri": uri,
                        "label": key.label,
                        "id": hex::encode(&key.id),
                        "type": kind.to_string(),
                        "glance_key_type": kind.glance_key_type().glance_name(),
                        "public_key_pem": key.public.pem()?,
                        "missing_protections": missing,
                    }),
                    uri,
                ),
            )?;
        }
        KeyCommand::List { .. } => {
            let device = ctx.device(None, Login::Required)?;
            let keys = device.list_keys()?;
            let list: Vec<_> = keys
                .iter()
                .map(|listed| match &listed.key {
                    Ok(k) => json!({
                        "uri": k.uri.redacted(),
                        "label": k.label,
                        "id": hex::encode(&k.id),
                        "type": k.kind().map(|t| t.to_string()),
                        "glance_key_type": k.public.glance_key_type().map(|t| t.glance_name()),
                        "algorithm": k.public.describe(),
                    }),
                    Err(reason) => json!({
                        "uri": listed.uri.redacted(),
                        "label": listed.label,
                        "id": hex::encode(&listed.id),
                        "type": null,
                        "unusable": reason,
                    }),
                })
                .collect();
            let text: Vec<String> = keys
                .iter()
                .map(|listed| match &listed.key {
                    Ok(k) => {
                        let kind = k
                            .kind()
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| k.public.describe());
                        format!("{:<16} {}", kind, k.uri.redacted())
                    }
                    Err(reason) => {
                        format!("{:<16} {} ({reason})", "unusable", listed.uri.redacted())
                    }
                })
                .collect();
            emit(ctx, &Plain::new(json!(list), text.join("\n")))?;
        }
        KeyCommand::Show { uri, .. } => {
            let uri = parse_uri(uri.value(), "key URI")?;
            let device = ctx.device(Some(&uri), Login::Required)?;
            let key = device.find_key(&uri)?;
            let protection = device.key_protection(&key)?;
            let pem = key.public.pem()?;
            emit(
                ctx,
                &Plain::new(
                    json!({
                    "uri": key.uri.redacted(),
                    "label": key.label,
                    "id": hex::encode(&key.id),
                    "type": key.kind().map(|t| t.to_string()),
                    "glance_key_type": key.public.glance_key_type().map(|t| t.glance_name()),
                    "public_key_pem": key.public.pem()?,
                    "sensitive": protection.sensitive,
                    "extractable": protection.extractable,
                    "never_extractable": protection.never_extractable,
                    "one_mechanism": protection.one_mechanism,
                    "other_use": protection.other_use,
                    "modifiable": protection.modifiable,
                    }),
                    pem,
                ),
            )?;
            if !ctx.json {
                // What the token would not give this key, on stderr: stdout stays a PEM file.
                let yes_no = |v: Option<bool>| match v {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "unknown (the token does not say)",
                };
                eprintln!(
                    "protections: never extractable: {}; sensitive: {}; one signature mechanism: {}; may also decrypt/unwrap/derive: {}; attributes changeable: {}",
                    if protection.never_extractable {
                        "yes"
                    } else {
                        "no"
                    },
                    if protection.sensitive { "yes" } else { "no" },
                    yes_no(protection.one_mechanism),
                    yes_no(protection.other_use),
                    yes_no(protection.modifiable),
                );
            }
        }
        KeyCommand::Delete {
            uri,
            yes,
            with_certificate,
            force,
            ..
        } => {
            let uri = parse_uri(uri.value(), "key URI")?;
            let device = ctx.device(Some(&uri), Login::Required)?;
            let key = device.find_key(&uri)?;
            let name = key.uri.redacted();
            let certificates = device.key_certificates(&key)?;
            if !force {
                let removed: Vec<(&str, &imgseal::x509::Certificate)> = if with_certificate {
                    certificates
                        .iter()
                        .filter_map(|c| c.certificate.as_ref().ok().map(|x| (c.id.as_str(), x)))
                        .collect()
                } else {
                    Vec::new()
                };
                super::cert::refuse_if_sealed(
                    ctx,
                    &removed,
                    Some((&name, &key.public)),
                    "deleting",
                )?;
            }
            let ids: Vec<&str> = certificates.iter().map(|c| c.id.as_str()).collect();
            super::cert::confirm(
                yes,
                &format!(
                    "delete key {name} ({}){} from {}?",
                    key.public.describe(),
                    if with_certificate && !ids.is_empty() {
                        format!(" and certificate {}", quoted(&ids))
                    } else {
                        String::new()
                    },
                    device.describe()
                ),
            )?;
            let deleted = device.delete_key(&key, with_certificate)?;
            let mut text = format!(
                "deleted key {name} ({}): the private key{}{} from {}",
                key.public.describe(),
                if deleted.public_key {
                    " and its public key object"
                } else {
                    ""
                },
                if deleted.certificates.is_empty() {
                    String::new()
                } else {
                    format!(", certificate {}", quoted(&deleted.certificates))
                },
                device.describe()
            );
            if !deleted.kept_certificates.is_empty() {
                text.push_str(&format!(
                    "\nkept certificate {} with the key's CKA_ID (--with-certificate deletes it too)",
                    quoted(&deleted.kept_certificates)
                ));
            }
            emit(
                ctx,
                &Plain::new(
                    json!({
                    "deleted": "key",
                    "uri": name,
                    "label": key.label,
                    "id": hex::encode(&key.id),
                    "algorithm": key.public.describe(),
                    "private_key": true,
                    "public_key": deleted.public_key,
                    "certificates": deleted.certificates,
                    "kept_certificates": deleted.kept_certificates,
                    "from": device.describe(),
                    }),
                    text,
                ),
            )?;
        }
        KeyCommand::Csr {
            key,
            subject,
            out,
            hash,
            ..
        } => {
            super::refuse_stdout_with_json(ctx, "--out", &out)?;
            let subject = parse_subject(&subject)?;
            let uri = parse_uri(&key, "--key")?;
            let device = ctx.device(Some(&uri), Login::Required)?;
            let key = device.find_key(&uri)?;
            let key_type = key.public.glance_key_type().ok_or_else(|| {
                imgseal::Error::usage(format!(
                    "{} is {}, not a Glance key type",
                    key.uri.redacted(),
                    key.public.describe()
                ))
            })?;
            let hash = hash
                .or_else(|| key.kind().map(|k| k.natural_hash()))
                .unwrap_or(HashMethod::Sha256);
            let scheme = csr_scheme(key_type, hash);
            let pem = build_csr(&subject, &key.public, &scheme, |digest| {
                let signature = device.sign_digest(&key, &scheme, digest)?;
                // The request names key.public: its signature must be that key's.
                use imgseal::backend::SigningDevice as _;
                let verifier = imgseal::backend::software::SoftwareVerifier;
                if !verifier.verify_digest(&key.public, &scheme, digest, &signature)? {
                    return Err(imgseal::error::Error::bad_input(format!(
                        "the token's signature does not verify with the public key the request names ({}): the token's key pair does not match",
                        key.uri.redacted()
                    )));
                }
                Ok(signature)
            })?;
            super::write_out(&out, pem.as_bytes())?;
            emit(
                ctx,
                &Plain::new(
                    json!({"out": out, "key": key.uri.redacted(), "subject": subject.to_string(), "hash": hash.glance_name()}),
                    "",
                ),
            )?;
            if !ctx.json {
                eprintln!(
                    "wrote a certificate request for {} to {}",
                    subject,
                    out.display()
                );
            }
        }
    }
    Ok(0)
}
