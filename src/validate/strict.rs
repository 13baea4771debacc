//! RFC 5280 path validation for code signing, on OpenSSL's verifier (path
//! building with alternative chains, basicConstraints and pathLen, keyUsage on
//! issuers, critical extensions, name constraints, CRLs with delta and
//! indirect CRLs, RFC 4518 name comparison). On top of it: any trusted
//! certificate may be the anchor, the signing certificate must be fit for
//! code signing, and weak keys and hashes are refused.

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509Crl, X509StoreContext, X509VerifyResult};
use x509_cert::ext::pkix::KeyUsages;

use super::crl_choice::{self, CrlChoice};
use super::dsa_inheritance::{Twins, lacks_dsa_parameters};
use super::facts::{ANY_EXTENDED_KEY_USAGE, CODE_SIGNING, CertFacts, SignatureHash};
use super::openssl_hooks;
use super::{ChainLink, ChainVerdict, ValidationInput, Validator, id_of};
use crate::error::{Error, Result};
use crate::public_key::{KeyClass, PublicKey};
use crate::x509::{Certificate, name_to_string};

pub struct StrictPolicy;

// libcrypto functions openssl-sys does not bind.
unsafe extern "C" {
    fn X509_STORE_CTX_set0_crls(ctx: *mut openssl_sys::X509_STORE_CTX, crls: *mut std::ffi::c_void);
    fn OPENSSL_sk_new_null() -> *mut std::ffi::c_void;
    fn OPENSSL_sk_push(
        stack: *mut std::ffi::c_void,
        item: *const std::ffi::c_void,
    ) -> std::os::raw::c_int;
    fn OPENSSL_sk_free(stack: *mut std::ffi::c_void);
}

/// The CRLs as a raw `STACK_OF(X509_CRL)` for `X509_STORE_CTX_set0_crls`,
/// which the openssl crate does not expose. CRLs handed to the context (not
/// the store) are all searched, which indirect CRLs need: the store looks CRLs
/// up by the certificate's issuer name, and an indirect CRL has another issuer.
struct CrlStack(*mut std::ffi::c_void);

impl CrlStack {
    fn new(crls: &[&X509Crl]) -> Result<Self> {
        // Safety: a fresh stack of borrowed pointers; the CRLs outlive it (they
        // belong to the caller's input) and the stack frees only itself.
        let stack = CrlStack(unsafe { OPENSSL_sk_new_null() });
        if stack.0.is_null() {
            return Err(Error::Crypto("allocating a CRL stack failed".into()));
        }
        for crl in crls {
            if unsafe { OPENSSL_sk_push(stack.0, crl.as_ptr() as *const std::ffi::c_void) } <= 0 {
                return Err(Error::Crypto("allocating a CRL stack failed".into()));
            }
        }
        Ok(stack)
    }
}

impl Drop for CrlStack {
    fn drop(&mut self) {
        if !self.0.is_null() {
            unsafe { OPENSSL_sk_free(self.0) };
        }
    }
}

fn ossl(context: &str) -> impl FnOnce(openssl::error::ErrorStack) -> Error + '_ {
    move |e| Error::crypto(context, e)
}

impl Validator for StrictPolicy {
    fn name(&self) -> &'static str {
        "strict"
    }

    fn validate(&self, input: &ValidationInput<'_>) -> Result<ChainVerdict> {
        let mut notes = Vec::new();
        let mut anchors: Vec<&X509> = Vec::new();
        for trusted in input.trusted {
            match &trusted.certificate {
                Some(cert) => anchors.push(&cert.x509),
                None => notes.push(format!(
                    "trusted certificate id \"{}\" is not in the certificate store",
                    trusted.id
                )),
            }
        }
        if anchors.is_empty() {
            return Ok(ChainVerdict::fail(
                "strict",
                "no trusted certificates: give trusted certificate ids (--trusted-cert-id, OS_TRUSTED_IMAGE_CERTIFICATE_IDS or default_trusted_certificate_ids) that are in the certificate store",
                notes,
            ));
        }

        // OpenSSL picks an issuer by name and key identifiers and does not
        // backtrack when its signature then fails (a same-name decoy in the store
        // ends the search). Candidate paths are found here, signatures checked,
        // and each is handed to OpenSSL alone for the full RFC 5280 checks.
        // Each candidate runs with its own anchor alone in the store, for the same
        // reason: OpenSSL's store lookup stops at the first certificate of that name.
        let everything: Vec<&X509> = input.intermediates.iter().map(|(_, c)| &c.x509).collect();
        let signers: Vec<&X509> = std::iter::once(&input.leaf.x509)
            .chain(anchors.iter().copied())
            .chain(everything.iter().copied())
            .collect();
        let crls = crl_choice::choose(input.crls, &signers, input.at);
        notes.extend(crls.notes.iter().cloned());
        let mut first_failure = None;
        let (candidates, exhausted) = candidate_paths(input);
        for CandidatePath {
            intermediates: path,
            anchor,
            twins,
        } in candidates
        {
            let store = build_store(input, &[anchor])?;
            // The path's intermediates first, so OpenSSL's first-match lookup takes
            // them. With CRLs, the rest of the store follows them: CRL signers with
            // keys of their own are found there. A trusted leaf needs nothing else.
            let mut untrusted: Vec<&X509> = path.iter().map(|c| twins.for_openssl(c)).collect();
            let leaf_is_anchor = std::ptr::eq(anchor, &input.leaf.x509);
            if !input.crls.is_empty() && !leaf_is_anchor {
                untrusted.extend(
                    everything
                        .iter()
                        .filter(|c| !path.iter().any(|p| std::ptr::eq(*p, **c))),
                );
            }
            let leaf = twins.for_openssl(&input.leaf.x509);
            let outcome =
                openssl_hooks::with_twins(&twins, || run_openssl(&store, &crls, leaf, &untrusted))?;
            if outcome.ok {
                return finish(input, outcome, &twins, notes);
            }
            first_failure.get_or_insert((outcome, twins));
        }
        // No path found before the budget ran out holds: the search did not
        // finish, so no failure of the paths it did find is the answer.
        if let Some(exhausted) = exhausted {
            return Ok(ChainVerdict::fail("strict", exhausted.reason(), notes));
        }
        let (outcome, twins) = match first_failure {
            Some(failure) => failure,
            None => (
                run_openssl(
                    &build_store(input, &anchors)?,
                    &crls,
                    &input.leaf.x509,
                    &everything,
                )?,
                Twins::default(),
            ),
        };
        if outcome.ok {
            return finish(input, outcome, &twins, notes);
        }
        // A failure on a twin names the certificate it stands for.
        let failed_at = outcome.failed_at.clone().map(|(subject, x)| {
            let original = x
                .to_der()
                .ok()
                .and_then(|der| twins.original_of(&der).cloned());
            (subject, original.unwrap_or(x))
        });
        Ok(openssl_failure(input, &outcome, failed_at, notes))
    }
}

/// A store trusting `anchors`, with the input's CRLs, time and flags.
fn build_store(input: &ValidationInput<'_>, anchors: &[&X509]) -> Result<X509Store> {
    let mut store = X509StoreBuilder::new().map_err(ossl("certificate store"))?;
    openssl_hooks::install(&mut store);
    for anchor in anchors {
        store
            .add_cert((*anchor).clone())
            .map_err(ossl("adding a trusted certificate"))?;
    }
    // Not X509_STRICT: it adds profile checks outside RFC 5280's path validation
    // (§6), such as refusing keyCertSign on an end entity, which the Nova docs'
    // own example certificates carry. PARTIAL_CHAIN: any trusted certificate
    // may be the anchor, not only self-signed roots.
    let mut flags = X509VerifyFlags::PARTIAL_CHAIN;
    if !input.crls.is_empty() {
        flags |= X509VerifyFlags::CRL_CHECK
            | X509VerifyFlags::CRL_CHECK_ALL
            | X509VerifyFlags::EXTENDED_CRL_SUPPORT
            | X509VerifyFlags::USE_DELTAS;
    }
    let mut param = X509VerifyParam::new().map_err(ossl("verification parameters"))?;
    param
        .set_flags(flags)
        .map_err(ossl("verification parameters"))?;
    param.set_time(input.at as libc_time_t);
    // OpenSSL counts intermediates: depth d allows d + 2 certificates.
    param.set_depth(input.options.max_depth.saturating_sub(2) as i32);
    store
        .set_param(&param)
        .map_err(ossl("verification parameters"))?;
    Ok(store.build())
}

/// What one OpenSSL verification decided.
struct Outcome {
    ok: bool,
    error: X509VerifyResult,
    depth: u32,
    chain: Vec<X509>,
    failed_at: Option<(String, X509)>,
    /// The CRL OpenSSL was checking with when it refused, and the
    /// certificate it took for that CRL's signer.
    failed_crl: Option<(String, Option<X509>)>,
}

/// Verifies once per CRL variant (see `crl_choice`): the path holds only when
/// it holds with each; the first refusal is the answer.
fn run_openssl(
    store: &openssl::x509::store::X509Store,
    crls: &CrlChoice,
    leaf: &X509,
    untrusted: &[&X509],
) -> Result<Outcome> {
    let mut first = None;
    for variant in &crls.variants {
        let outcome = run_openssl_once(store, variant, leaf, untrusted)?;
        if !outcome.ok {
            return Ok(outcome);
        }
        first.get_or_insert(outcome);
    }
    Ok(first.expect("there is always one CRL variant"))
}

fn run_openssl_once(
    store: &openssl::x509::store::X509Store,
    crls: &[&X509Crl],
    leaf: &X509,
    untrusted: &[&X509],
) -> Result<Outcome> {
    let mut stack = Stack::<X509>::new().map_err(ossl("intermediates"))?;
    for cert in untrusted {
        stack.push((*cert).clone()).map_err(ossl("intermediates"))?;
    }
    let crls = CrlStack::new(crls)?;
    let mut ctx = X509StoreContext::new().map_err(ossl("verification context"))?;
    openssl_hooks::take_failed_crl();
    ctx.init(store, leaf, &stack, |c| {
        // Safety: the stack outlives the verification, which only reads it.
        unsafe { X509_STORE_CTX_set0_crls(c.as_ptr(), crls.0) };
        let ok = c.verify_cert()?;
        let chain: Vec<X509> = c
            .chain()
            .map(|s| s.iter().map(|x| x.to_owned()).collect())
            .unwrap_or_default();
        let failed_at = c
            .current_cert()
            .map(|x| (name_to_string(x.subject_name()), x.to_owned()));
        Ok(Outcome {
            ok,
            error: c.error(),
            depth: c.error_depth(),
            chain,
            failed_at,
            failed_crl: openssl_hooks::take_failed_crl(),
        })
    })
    .map_err(ossl("path validation"))
}

/// At most this many candidate paths are tried, so that a store full of
/// cross-certificates cannot make validation slow.
const MAX_CANDIDATE_PATHS: usize = 8;

/// The work one path search may do (rustls-webpki's `Budget`). The caps on
/// paths found and on depth do not bound it: L layers of M same-name CAs,
/// each cross-certified by every CA of the layer above, hold M^L paths, and
/// when none reaches a trusted certificate every one of them is walked.
///
/// - Signature checks, the costly step (up to ~1 ms for RSA-4096 or DSA-3072
///   in OpenSSL): 512 bound the search to well under a second, and leave
///   room for real stores, where only same-name issuers are checked: a PKITS
///   path takes at most 5, the cross-signed tests of tests/cert_validation.rs
///   at most 78 (a 3-layer mesh of 2 cross-certified CAs a layer).
/// - Candidate visits (an issuer name compared, in `X509_check_issued`,
///   microseconds each): 200 000, as webpki's `build_chain_calls`, so a
///   certificate directory of thousands of certificates can still be searched
///   several levels deep.
#[derive(Debug, Clone, Copy)]
struct Budget {
    signatures: usize,
    visits: usize,
}

const SIGNATURE_BUDGET: usize = 512;
const VISIT_BUDGET: usize = 200_000;

/// The search stopped: its budget is spent ([`Budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exhausted {
    Signatures,
    Visits,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            signatures: SIGNATURE_BUDGET,
            visits: VISIT_BUDGET,
        }
    }
}

impl Budget {
    fn signature(&mut self) -> std::result::Result<(), Exhausted> {
        self.signatures = self
            .signatures
            .checked_sub(1)
            .ok_or(Exhausted::Signatures)?;
        Ok(())
    }

    fn visit(&mut self) -> std::result::Result<(), Exhausted> {
        self.visits = self.visits.checked_sub(1).ok_or(Exhausted::Visits)?;
        Ok(())
    }
}

impl Exhausted {
    /// The verdict's reason: distinct, so that a store too tangled to search
    /// is not mistaken for one with no path.
    fn reason(self) -> String {
        let what = match self {
            Exhausted::Signatures => format!("{SIGNATURE_BUDGET} signature checks"),
            Exhausted::Visits => format!("{VISIT_BUDGET} candidate issuers"),
        };
        format!(
            "path search budget exhausted: {what} tried without finding a valid path to a trusted certificate; the certificate store has too many cross-certified CAs of the same names to search (trust a CA nearer the signing certificate, or remove unneeded cross-certificates)"
        )
    }
}

/// One way from the leaf to a trusted certificate.
struct CandidatePath<'a> {
    /// Between the leaf and the anchor, leaf side first.
    intermediates: Vec<&'a X509>,
    anchor: &'a X509,
    /// Stand-ins for certificates whose DSA keys inherit their parameters.
    twins: Twins,
}

/// Paths from the leaf to a trusted certificate, depth first, trusted issuers
/// before untrusted ones, each with its signatures checked; and whether the
/// search stopped early because its [`Budget`] was spent (the paths found
/// until then are still returned: each is validated in full by OpenSSL).
fn candidate_paths<'a>(
    input: &'a ValidationInput<'a>,
) -> (Vec<CandidatePath<'a>>, Option<Exhausted>) {
    let trusted: Vec<&Certificate> = input
        .trusted
        .iter()
        .filter_map(|t| t.certificate.as_ref())
        .collect();
    let mut seen: std::collections::HashSet<&[u8]> =
        trusted.iter().map(|c| c.der.as_slice()).collect();
    let mut pool: Vec<(&X509, bool)> = trusted.iter().map(|c| (&c.x509, true)).collect();
    for (_, c) in input.intermediates {
        if seen.insert(c.der.as_slice()) {
            pool.push((&c.x509, false));
        }
    }
    let mut found = Vec::new();
    let mut path: Vec<&X509> = vec![&input.leaf.x509];
    let max_len = input.options.max_depth as usize;
    /// `deferred`: signatures on the path made by keys that inherit DSA
    /// parameters, which only the whole path can check.
    fn walk<'a>(
        pool: &[(&'a X509, bool)],
        path: &mut Vec<&'a X509>,
        deferred: usize,
        found: &mut Vec<CandidatePath<'a>>,
        max_len: usize,
        budget: &mut Budget,
    ) -> std::result::Result<(), Exhausted> {
        if found.len() >= MAX_CANDIDATE_PATHS || path.len() >= max_len {
            return Ok(());
        }
        let current = *path.last().expect("the leaf is on the path");
        for (candidate, is_trusted) in pool {
            if path.iter().any(|p| std::ptr::eq(*p, *candidate)) {
                continue;
            }
            budget.visit()?;
            let issued = candidate.issued(current);
            let inherits = issued.as_raw() == openssl_sys::X509_V_ERR_NO_ISSUER_PUBLIC_KEY
                && lacks_dsa_parameters(candidate);
            if issued != X509VerifyResult::OK && !inherits {
                continue;
            }
            if !inherits {
                budget.signature()?;
            }
            let signed = inherits
                || candidate
                    .public_key()
                    .ok()
                    .and_then(|k| current.verify(&k).ok())
                    .unwrap_or(false);
            if !signed {
                continue;
            }
            let deferred = deferred + usize::from(inherits);
            if *is_trusted {
                let twins = if deferred == 0 {
                    Twins::default()
                } else {
                    let mut top_down = vec![*candidate];
                    top_down.extend(path.iter().rev());
                    match inherited_signatures_hold(&top_down, budget)? {
                        Some(twins) => twins,
                        None => continue,
                    }
                };
                found.push(CandidatePath {
                    intermediates: path[1..].to_vec(),
                    anchor: candidate,
                    twins,
                });
            } else {
                path.push(candidate);
                let walked = walk(pool, path, deferred, found, max_len, budget);
                path.pop();
                walked?;
            }
            if found.len() >= MAX_CANDIDATE_PATHS {
                return Ok(());
            }
        }
        Ok(())
    }
    // A trusted leaf is its own anchor.
    if trusted.iter().any(|t| t.der == input.leaf.der) {
        found.push(CandidatePath {
            intermediates: Vec::new(),
            anchor: &input.leaf.x509,
            twins: Twins::default(),
        });
    }
    pool.sort_by_key(|(_, t)| !*t);
    let mut budget = Budget::default();
    let exhausted = walk(&pool, &mut path, 0, &mut found, max_len, &mut budget).err();
    if let Some(what) = exhausted {
        tracing::debug!(?what, found = found.len(), "path search budget exhausted");
    }
    (found, exhausted)
}

/// The signatures on a path (anchor first) made by keys without DSA
/// parameters, checked with the parameters inherited along it; the path's
/// twins when all hold.
fn inherited_signatures_hold(
    top_down: &[&X509],
    budget: &mut Budget,
) -> std::result::Result<Option<Twins>, Exhausted> {
    let twins = Twins::along(top_down);
    for pair in top_down.windows(2) {
        let (issuer, subject) = (pair[0], pair[1]);
        if issuer.public_key().is_ok() {
            continue; // checked while walking
        }
        budget.signature()?;
        let Ok(key) = twins.for_openssl(issuer).public_key() else {
            return Ok(None);
        };
        if !subject.verify(&key).unwrap_or(false) {
            return Ok(None);
        }
    }
    Ok(Some(twins))
}

fn finish(
    input: &ValidationInput<'_>,
    outcome: Outcome,
    twins: &Twins,
    mut notes: Vec<String>,
) -> Result<ChainVerdict> {
    let chain = outcome.chain;
    notes.extend(crl_choice::unused_revocations(input.crls, &chain));
    // The verdict names the certificates as given, not their twins; the
    // twins' keys are the complete ones.
    let mut chain_certs = Vec::with_capacity(chain.len());
    let mut complete_keys = std::collections::HashMap::new();
    for x in &chain {
        let der = x.to_der().unwrap_or_default();
        let cert = match twins.original_of(&der) {
            Some(original) => {
                let cert = Certificate::from_der(
                    &original.to_der().unwrap_or_default(),
                    "chain certificate",
                )?;
                notes.push(format!(
                    "\"{}\" has a DSA key without parameters; it inherits its issuer's (RFC 5280 §6.1.4)",
                    cert.subject()
                ));
                let pkey = x
                    .public_key()
                    .map_err(|e| Error::crypto("reading a twin's completed key", e))?;
                complete_keys.insert(cert.der.clone(), PublicKey { pkey });
                cert
            }
            None => Certificate::from_der(&der, "chain certificate")?,
        };
        chain_certs.push(cert);
    }
    let links: Vec<ChainLink> = chain_certs
        .iter()
        .map(|c| ChainLink {
            id: id_of(input, &c.der),
            subject: c.subject(),
        })
        .collect();

    if let Some(reason) = code_signing_problem(input, &chain_certs, &complete_keys)? {
        let mut v = ChainVerdict::fail("strict", reason, notes);
        v.chain = links;
        return Ok(v);
    }
    let anchor = links.last().cloned();
    Ok(ChainVerdict {
        policy: "strict",
        valid: true,
        chain: links,
        anchor,
        reason: None,
        revoked: false,
        notes,
        hint: None,
    })
}

#[allow(non_camel_case_types)]
type libc_time_t = i64;

fn openssl_failure(
    input: &ValidationInput<'_>,
    outcome: &Outcome,
    failed_at: Option<(String, X509)>,
    notes: Vec<String>,
) -> ChainVerdict {
    let (error, depth) = (outcome.error, outcome.depth);
    let (subject, id) = match &failed_at {
        Some((subject, x)) => (
            subject.clone(),
            id_of(input, &x.to_der().unwrap_or_default()),
        ),
        None => ("(unknown)".into(), "(unknown)".into()),
    };
    let code = error.as_raw();
    let revoked = code == openssl_sys::X509_V_ERR_CERT_REVOKED;
    let what = match code {
        openssl_sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | openssl_sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT => {
            format!(
                "no path to a trusted certificate: the issuer of \"{subject}\" is neither trusted nor in the certificate store"
            )
        }
        openssl_sys::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        | openssl_sys::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN => {
            format!("the chain ends at the self-signed \"{subject}\", which is not trusted")
        }
        openssl_sys::X509_V_ERR_CERT_REVOKED => format!(
            "revoked: \"{subject}\" (id {id}) is revoked by {}",
            outcome
                .failed_crl
                .as_ref()
                .map(|(crl, _)| crl.clone())
                .unwrap_or_else(|| "its issuer's CRL".into())
        ),
        openssl_sys::X509_V_ERR_UNABLE_TO_GET_CRL => format!(
            "no CRL for \"{subject}\" (id {id}): when CRLs are given, every certificate below the trusted one needs a CRL of its issuer"
        ),
        openssl_sys::X509_V_ERR_CERT_CHAIN_TOO_LONG => format!(
            "the chain is longer than {} certificates",
            input.options.max_depth
        ),
        _ => match &outcome.failed_crl {
            // A CRL's own fault is told as such: naming only the certificate
            // being checked sends the reader to the wrong file.
            Some((crl, signer)) => format!(
                "{crl} cannot check \"{subject}\" (id {id}): {}{}",
                error.error_string(),
                signer
                    .as_ref()
                    .map(|s| format!(
                        " (CRL signer taken to be \"{}\")",
                        name_to_string(s.subject_name())
                    ))
                    .unwrap_or_default()
            ),
            None => format!(
                "\"{subject}\" (id {id}, depth {depth}): {}",
                error.error_string()
            ),
        },
    };
    let mut v = ChainVerdict::fail("strict", what, notes);
    v.revoked = revoked;
    v
}

/// What OpenSSL's default purpose does not check for image signing.
fn code_signing_problem(
    input: &ValidationInput<'_>,
    chain: &[Certificate],
    complete_keys: &std::collections::HashMap<Vec<u8>, PublicKey>,
) -> Result<Option<String>> {
    let leaf = CertFacts::of(input.leaf)?;
    if leaf.key_usage.is_some() && !leaf.has_key_usage(KeyUsages::DigitalSignature) {
        return Ok(Some(format!(
            "the signing certificate \"{}\" has a keyUsage extension without digitalSignature",
            input.leaf.subject()
        )));
    }
    if let Some(eku) = &leaf.extended_key_usage
        && !eku
            .0
            .iter()
            .any(|o| *o == CODE_SIGNING || *o == ANY_EXTENDED_KEY_USAGE)
    {
        return Ok(Some(format!(
            "the signing certificate \"{}\" has an extendedKeyUsage extension that does not allow codeSigning",
            input.leaf.subject()
        )));
    }
    let last = chain.len().saturating_sub(1);
    for (i, cert) in chain.iter().enumerate() {
        let key = match complete_keys.get(&cert.der) {
            Some(key) => PublicKey {
                pkey: key.pkey.clone(),
            },
            None => cert.public_key()?,
        };
        let bits = match key.class() {
            KeyClass::Rsa { bits } | KeyClass::Dsa { bits } => Some(bits),
            _ => None,
        };
        if let Some(bits) = bits
            && bits < input.options.min_rsa_bits
        {
            return Ok(Some(format!(
                "\"{}\" has a {}-bit key; the minimum is {} (see min_rsa_bits)",
                cert.subject(),
                bits,
                input.options.min_rsa_bits
            )));
        }
        // Every key of the path, the anchor's too: anyone could sign for a
        // key with exponent 1, and so issue under it.
        if let Some(weakness) = key.weakness(input.options.allow_small_rsa_exponent) {
            return Ok(Some(format!(
                "\"{}\" has an unsafe key: {weakness}",
                cert.subject()
            )));
        }
        // The anchor's own signature is not part of the path (RFC 5280 §6.1).
        if i == last {
            continue;
        }
        let facts = CertFacts::of(cert)?;
        let weak = match facts.signature_hash {
            SignatureHash::Md5 => Some("MD5"),
            SignatureHash::Sha1 if !input.options.allow_sha1 => Some("SHA-1"),
            _ => None,
        };
        if let Some(hash) = weak {
            return Ok(Some(format!(
                "\"{}\" is signed with {hash}, which is not accepted{}",
                cert.subject(),
                if hash == "SHA-1" {
                    " (allow_sha1 permits it for legacy suites)"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(None)
}
