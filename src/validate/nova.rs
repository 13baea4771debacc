//! cursive 0.3.1's `certificate_utils.verify_certificate`, decision for
//! decision and message for message, so a release engineer can predict what
//! Nova will do at boot. Where cursive hangs (issuer cycles) or crashes
//! (Ed25519, unknown signature hashes) this fails cleanly instead.

use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use x509_cert::ext::pkix::KeyUsages;

use super::facts::{CertFacts, SignatureHash};
use super::{ChainLink, ChainVerdict, ValidationInput, Validator};
use crate::error::Result;
use crate::public_key::KeyClass;
use crate::x509::Certificate;

pub struct NovaPolicy;

pub const CHAIN_BUILDING_FAILED: &str = "Certificate chain building failed. Could not locate the signing certificate for the base certificate in the set of trusted certificates.";
pub const OUTSIDE_DATES: &str = "The certificate is outside its valid date range.";

struct Candidate<'a> {
    id: &'a str,
    cert: &'a Certificate,
    facts: CertFacts,
}

/// cursive's `can_sign_certificates`: basicConstraints present with cA, and
/// keyUsage present with keyCertSign; criticality ignored.
fn can_sign_certificates(facts: &CertFacts) -> bool {
    facts.basic_constraints.is_some()
        && facts.key_usage.is_some()
        && facts.is_ca()
        && facts.has_key_usage(KeyUsages::KeyCertSign)
}

/// Why cursive would not finish: the message we give instead of its crash.
struct Crash(String);

/// cursive's `is_issuer`: names equal as cryptography compares them, and the
/// signature verifies with the padding chosen from the issuer's key type.
fn is_issuer(
    issuer: &Candidate<'_>,
    subject: &CertFacts,
    subject_id: &str,
) -> std::result::Result<bool, Crash> {
    if issuer.facts.subject != subject.issuer {
        return Ok(false);
    }
    let Some(md) = subject.signature_hash.message_digest() else {
        let what = match subject.signature_hash {
            SignatureHash::None => "an Ed25519/Ed448 signature (cryptography reports no hash)",
            _ => "a signature algorithm cryptography does not support",
        };
        return Err(Crash(format!(
            "cursive cannot check certificate '{subject_id}': it carries {what}, and cursive's verifier raises an uncaught exception (Nova would fail with an internal error)"
        )));
    };
    let key = match issuer.cert.public_key() {
        Ok(k) => k,
        Err(_) => return Ok(false),
    };
    if let Some(crash) =
        crate::cursive_compat::unloadable_key(&key, &format!("certificate '{}'", issuer.id))
    {
        return Err(Crash(crash));
    }
    let digest = match openssl::hash::hash(md, &subject.tbs_der) {
        Ok(d) => d,
        Err(_) => return Ok(false),
    };
    let verified = (|| -> std::result::Result<bool, openssl::error::ErrorStack> {
        let mut ctx = PkeyCtx::new(&key.pkey)?;
        ctx.verify_init()?;
        ctx.set_signature_md(openssl::md::Md::from_nid(md.type_()).expect("known digest"))?;
        match key.class() {
            KeyClass::Rsa { .. } => ctx.set_rsa_padding(Padding::PKCS1)?,
            KeyClass::Ec { .. } | KeyClass::Dsa { .. } => {}
            KeyClass::Other(_) => return Ok(false),
        }
        Ok(ctx.verify(&digest, &subject.signature).unwrap_or(false))
    })();
    match key.class() {
        KeyClass::Other(_) => Err(Crash(format!(
            "cursive cannot use certificate '{}' as an issuer: its {} key goes to cursive's DSA verifier, which raises an uncaught exception",
            issuer.id,
            key.describe()
        ))),
        _ => Ok(verified.unwrap_or(false)),
    }
}

impl Validator for NovaPolicy {
    fn name(&self) -> &'static str {
        "nova"
    }

    fn validate(&self, input: &ValidationInput<'_>) -> Result<ChainVerdict> {
        let mut notes = Vec::new();
        // Trusted ids cursive sets aside (unreadable, expired, not a CA), for the hint.
        let mut set_aside: Vec<&str> = Vec::new();
        let mut signing = Vec::new();
        for trusted in input.trusted {
            let Some(cert) = &trusted.certificate else {
                notes.push(format!("Skipping trusted certificate: {}", trusted.id));
                set_aside.push(&trusted.id);
                continue;
            };
            let facts = CertFacts::of(cert)?;
            if !facts.within(input.at) {
                notes.push(format!(
                    "Certificate '{}' is outside its valid date range and cannot be used as a signing certificate.",
                    trusted.id
                ));
                set_aside.push(&trusted.id);
                continue;
            }
            if !can_sign_certificates(&facts) {
                notes.push(format!(
                    "Certificate '{}' is not configured to act as a signing certificate. It will not be used as a signing certificate.",
                    trusted.id
                ));
                set_aside.push(&trusted.id);
                continue;
            }
            signing.push(Candidate {
                id: &trusted.id,
                cert,
                facts,
            });
        }

        let leaf_facts = CertFacts::of(input.leaf)?;
        if !leaf_facts.within(input.at) {
            let hint = format!(
                "the signing certificate \"{}\" is valid from {} to {}; Nova checks it at boot time",
                input.leaf.subject(),
                input.leaf.not_before(),
                input.leaf.not_after()
            );
            return Ok(ChainVerdict::fail("nova", OUTSIDE_DATES, notes).with_hint(hint));
        }

        // The chain, anchor first as cursive builds it; `None` marks the base.
        let mut chain: Vec<Option<usize>> = vec![None];
        let facts_of = |slot: Option<usize>| match slot {
            None => &leaf_facts,
            Some(i) => &signing[i].facts,
        };
        let der_of = |slot: Option<usize>| match slot {
            None => input.leaf.der.as_slice(),
            Some(i) => signing[i].cert.der.as_slice(),
        };
        let id_of = |slot: Option<usize>| match slot {
            None => "base",
            Some(i) => signing[i].id,
        };
        let mut current: Option<usize> = None;
        loop {
            let mut found = None;
            for (i, candidate) in signing.iter().enumerate() {
                match is_issuer(candidate, facts_of(current), id_of(current)) {
                    Ok(true) => {
                        found = Some(i);
                        break;
                    }
                    Ok(false) => {}
                    Err(Crash(msg)) => return Ok(ChainVerdict::fail("nova", msg, notes)),
                }
            }
            match found {
                // Self-signed: the root of the chain.
                Some(i) if signing[i].cert.der.as_slice() == der_of(current) => break,
                Some(i) => {
                    if chain
                        .iter()
                        .any(|slot| der_of(*slot) == signing[i].cert.der.as_slice())
                    {
                        let names: Vec<&str> = chain.iter().rev().map(|s| id_of(*s)).collect();
                        return Ok(ChainVerdict::fail(
                            "nova",
                            format!(
                                "issuer cycle among the trusted certificates ({} -> '{}' again): cursive would loop forever here and Nova would never boot the instance",
                                names.join(" -> "),
                                signing[i].id
                            ),
                            notes,
                        ));
                    }
                    chain.insert(0, Some(i));
                    current = Some(i);
                }
                None => {
                    let uuid = id_of(chain[0]);
                    // cursive's conditional expression swallows the message above the base.
                    let reason = if uuid == "base" {
                        CHAIN_BUILDING_FAILED.to_string()
                    } else {
                        format!("certificate '{uuid}'")
                    };
                    let stuck = match chain[0] {
                        None => input.leaf,
                        Some(i) => signing[i].cert,
                    };
                    let hint = missing_issuer_hint(stuck, input, &set_aside);
                    return Ok(ChainVerdict::fail("nova", reason, notes).with_hint(hint));
                }
            }
        }

        let last = der_of(*chain.last().expect("the base is in the chain"));
        for i in 0..chain.len() {
            if der_of(chain[i]) == last {
                break;
            }
            let facts = facts_of(chain[i]);
            if facts.basic_constraints.is_none() {
                return Ok(ChainVerdict::fail(
                    "nova",
                    format!(
                        "Certificate validation failed. The signing certificate '{}' does not have a basic constraints extension.",
                        id_of(chain[i])
                    ),
                    notes,
                )
                .with_hint(format!(
                    "trusted certificate '{}' signs certificates without saying it is a CA: reissue it with basicConstraints CA:TRUE (and keyCertSign), or trust the CA above it instead",
                    id_of(chain[i])
                )));
            }
            let Some(path_len) = facts.path_len() else {
                continue;
            };
            let remaining = chain.len() - i;
            let needed = remaining.saturating_sub(2);
            if (path_len as usize) < needed {
                return Ok(ChainVerdict::fail(
                    "nova",
                    format!(
                        "Certificate validation failed. The signing certificate '{}' is not configured to support certificate chains of sufficient length.",
                        id_of(chain[i])
                    ),
                    notes,
                )
                .with_hint(format!(
                    "trusted certificate '{}' allows {path_len} intermediate(s) below it (pathLenConstraint) and this chain needs {needed}",
                    id_of(chain[i])
                )));
            }
        }

        let links: Vec<ChainLink> = chain
            .iter()
            .rev()
            .map(|slot| ChainLink {
                id: match slot {
                    None => input.leaf_id.to_string(),
                    Some(i) => signing[*i].id.to_string(),
                },
                subject: match slot {
                    None => input.leaf.subject(),
                    Some(i) => signing[*i].cert.subject(),
                },
            })
            .collect();
        // A self-signed, trusted signing certificate is its own anchor.
        let anchor = links.last().cloned();
        Ok(ChainVerdict {
            policy: "nova",
            valid: true,
            chain: links,
            anchor,
            reason: None,
            revoked: false,
            notes,
            hint: None,
        })
    }
}

/// What cursive's "chain building failed" means for this chain: whose issuer
/// is missing from the usable trusted certificates, and which trusted ids
/// cursive set aside (expired, or not allowed to sign certificates).
fn missing_issuer_hint(
    stuck: &Certificate,
    input: &ValidationInput<'_>,
    set_aside: &[&str],
) -> String {
    let mut hint = if input.trusted.is_empty() {
        format!(
            "no trusted certificate ids are in force; add the id of the certificate of \"{}\" (which issued \"{}\") or of a CA above it",
            stuck.issuer(),
            stuck.subject()
        )
    } else {
        format!(
            "no usable trusted certificate issued \"{}\": add the id of its issuer's certificate (\"{}\") or of a CA above it to the trusted ids",
            stuck.subject(),
            stuck.issuer()
        )
    };
    if !set_aside.is_empty() {
        hint.push_str(&format!(
            "; set aside by cursive (see the notes): {}",
            set_aside.join(", ")
        ));
    }
    hint
}
