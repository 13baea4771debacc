//! Which CRLs OpenSSL sees. Among CRLs of equal standing OpenSSL takes the
//! first it is given (`get_crl_sk` compares scores and thisUpdate, never CRL
//! numbers; `get_delta_sk` takes the first delta that fits the base), so the
//! order of `--crl` arguments could let a clean CRL hide a revocation. Here,
//! per issuer, signing key and scope, the newest complete CRL is chosen by CRL
//! number (then thisUpdate), whatever order the CRLs came in; CRLs that share
//! the newest number but differ are all used, one per verification, so a
//! certificate listed in any of them is revoked (the union).

use std::collections::BTreeMap;

use foreign_types::ForeignTypeRef;
use openssl::asn1::{Asn1Integer, Asn1Time, Asn1TimeRef};
use openssl::bn::BigNum;
use openssl::nid::Nid;
use openssl::x509::{CrlNumber, CrlStatus, ExtensionType, X509, X509Crl, X509CrlRef};

use crate::x509::name_to_string;

/// The deltaCRLIndicator extension (RFC 5280 §5.2.4): the base CRL number.
enum DeltaCrlIndicator {}

// Safety: OpenSSL decodes deltaCRLIndicator as an ASN1_INTEGER.
unsafe impl ExtensionType for DeltaCrlIndicator {
    const NID: Nid = Nid::from_raw(openssl_sys::NID_delta_crl);
    type Output = Asn1Integer;
}

/// The CRLs to verify with, and what was set aside.
pub(super) struct CrlChoice<'a> {
    /// One CRL set per verification; a path holds only when it holds under
    /// every set. More than one only when CRLs with the same number differ.
    pub variants: Vec<Vec<&'a X509Crl>>,
    pub notes: Vec<String>,
}

/// What the choice reads of a CRL.
struct Facts<'a> {
    crl: &'a X509Crl,
    der: Vec<u8>,
    number: Option<BigNum>,
    /// The base CRL number of a delta CRL.
    base: Option<BigNum>,
    this_update: i64,
}

impl Facts<'_> {
    fn rank(&self) -> (Option<&openssl::bn::BigNumRef>, i64) {
        (self.number.as_deref(), self.this_update)
    }
}

fn seconds(t: &Asn1TimeRef) -> i64 {
    Asn1Time::from_unix(0)
        .and_then(|epoch| epoch.diff(t))
        .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
        .unwrap_or(i64::MIN)
}

fn number(crl: &X509CrlRef) -> Option<BigNum> {
    crl.extension::<CrlNumber>()
        .ok()
        .flatten()
        .and_then(|(_, n)| n.to_bn().ok())
}

fn base_number(crl: &X509CrlRef) -> Option<BigNum> {
    crl.extension::<DeltaCrlIndicator>()
        .ok()
        .flatten()
        .and_then(|(_, n)| n.to_bn().ok())
}

/// The DER of a CRL extension, when present once.
fn extension_der(crl: &X509CrlRef, nid: i32) -> Option<Vec<u8>> {
    // Safety: read-only lookups on a live CRL; the returned pointers belong to it.
    unsafe {
        let at = openssl_sys::X509_CRL_get_ext_by_NID(crl.as_ptr(), nid, -1);
        if at < 0 {
            return None;
        }
        let ext = openssl_sys::X509_CRL_get_ext(crl.as_ptr(), at);
        if ext.is_null() {
            return None;
        }
        let data = openssl_sys::X509_EXTENSION_get_data(ext);
        if data.is_null() {
            return None;
        }
        Some(
            openssl::asn1::Asn1StringRef::from_ptr(data as *mut _)
                .as_slice()
                .to_vec(),
        )
    }
}

/// "the CRL of "CN=…" (number 2)", "the delta CRL of "CN=…" (number 3, base 2)".
pub(super) fn describe(crl: &X509CrlRef) -> String {
    let issuer = name_to_string(crl.issuer_name());
    let number = number(crl).and_then(|n| n.to_dec_str().ok().map(|s| s.to_string()));
    match (base_number(crl), number) {
        (Some(base), n) => format!(
            "the delta CRL of \"{issuer}\" (number {}, base {})",
            n.as_deref().unwrap_or("none"),
            base.to_dec_str().map(|s| s.to_string()).unwrap_or_default()
        ),
        (None, Some(n)) => format!("the CRL of \"{issuer}\" (number {n})"),
        (None, None) => format!("the CRL of \"{issuer}\" (no CRL number)"),
    }
}

/// The public key (DER) of the certificate that signed `crl`, among `certs`
/// with its issuer's name. CRLs of one name made by different keys (a key
/// rollover, a separate CRL signing key) are different series.
fn signer(crl: &X509CrlRef, certs: &[&X509]) -> Option<Vec<u8>> {
    let issuer = crl.issuer_name().to_der().ok()?;
    certs.iter().find_map(|c| {
        if c.subject_name().to_der().ok()? != issuer {
            return None;
        }
        let key = c.public_key().ok()?;
        crl.verify(&key)
            .ok()
            .filter(|ok| *ok)
            .and_then(|_| key.public_key_to_der().ok())
    })
}

/// Chooses among `crls` as the module says; `certs` are those that may have
/// signed them, `at` the validation time.
pub(super) fn choose<'a>(crls: &'a [X509Crl], certs: &[&X509], at: i64) -> CrlChoice<'a> {
    let mut notes = Vec::new();
    // Series: issuer, signing key, scope (issuingDistributionPoint), delta or not.
    // Series: issuer, scope (issuingDistributionPoint), delta or not; then
    // the signing key, found only where one name has several CRLs, since it
    // costs a signature verification per CRL.
    type IssuerScope = (Vec<u8>, Option<Vec<u8>>, bool);
    let mut by_name: BTreeMap<IssuerScope, Vec<Facts>> = BTreeMap::new();
    for crl in crls {
        let facts = Facts {
            crl,
            number: number(crl),
            base: base_number(crl),
            this_update: seconds(crl.last_update()),
            der: crl.to_der().unwrap_or_default(),
        };
        let key = (
            crl.issuer_name().to_der().unwrap_or_default(),
            extension_der(crl, openssl_sys::NID_issuing_distribution_point),
            facts.base.is_some(),
        );
        let members = by_name.entry(key).or_default();
        if !members.iter().any(|m| m.der == facts.der) {
            members.push(facts);
        }
    }
    let mut series: Vec<(bool, Vec<Facts>)> = Vec::new();
    for ((_, _, delta), members) in by_name {
        if members.len() == 1 {
            series.push((delta, members));
            continue;
        }
        let mut by_signer: BTreeMap<Option<Vec<u8>>, Vec<Facts>> = BTreeMap::new();
        for m in members {
            by_signer.entry(signer(m.crl, certs)).or_default().push(m);
        }
        series.extend(by_signer.into_values().map(|m| (delta, m)));
    }

    // Each slot holds interchangeable CRLs: one of them goes to each verification.
    let mut slots: Vec<Vec<&Facts>> = Vec::new();
    for (delta, members) in &series {
        if *delta {
            // Deltas all stay: OpenSSL takes the first that fits the chosen
            // base, and the order below puts the newest first.
            let mut by_number: BTreeMap<Option<Vec<u8>>, Vec<&Facts>> = BTreeMap::new();
            for m in members {
                by_number
                    .entry(m.number.as_ref().map(|n| n.to_vec()))
                    .or_default()
                    .push(m);
            }
            slots.extend(by_number.into_values());
            continue;
        }
        // A CRL issued after the validation time cannot speak for it.
        let current: Vec<&Facts> = {
            let issued: Vec<&Facts> = members.iter().filter(|m| m.this_update <= at).collect();
            if issued.is_empty() {
                members.iter().collect()
            } else {
                issued
            }
        };
        let newest = current
            .iter()
            .copied()
            .max_by(|a, b| a.rank().cmp(&b.rank()))
            .expect("a series has a member");
        // Same number: the same CRL by RFC 5280 §5.2.3, so any difference is the
        // issuer's error and every listed certificate counts. Without numbers,
        // the same thisUpdate is the tie.
        let tied: Vec<&Facts> = current
            .iter()
            .copied()
            .filter(|m| match &newest.number {
                Some(n) => m.number.as_deref() == Some(&**n),
                None => m.this_update == newest.this_update,
            })
            .collect();
        if tied.len() > 1 {
            notes.push(format!(
                "{} CRLs of \"{}\" have the same standing as {} but differ: a certificate listed in any of them is treated as revoked",
                tied.len(),
                name_to_string(newest.crl.issuer_name()),
                describe(newest.crl),
            ));
        }
        for m in members {
            if !tied.iter().any(|t| std::ptr::eq(*t, m)) {
                let why = if m.this_update > at {
                    "it was issued after the validation time".to_string()
                } else {
                    format!("{} is newer", describe(newest.crl))
                };
                notes.push(format!("{} is not used: {why}", describe(m.crl)));
            }
        }
        slots.push(tied);
    }

    let count = slots.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let variants = (0..count)
        .map(|i| {
            let mut chosen: Vec<&Facts> = slots.iter().map(|s| s[i % s.len()]).collect();
            // Newest first, so that OpenSSL's first-of-equals is the newest;
            // the DER settles the rest, so argument order never matters.
            chosen.sort_by(|a, b| b.rank().cmp(&a.rank()).then_with(|| a.der.cmp(&b.der)));
            chosen.into_iter().map(|f| f.crl).collect()
        })
        .collect();
    CrlChoice { variants, notes }
}

/// Whether `crl` lists `cert` as revoked (a removeFromCRL entry does not).
fn lists(crl: &X509CrlRef, cert: &X509) -> bool {
    matches!(crl.get_by_cert(cert), CrlStatus::Revoked(_))
}

/// Notes on revocation data a valid path did not use: delta CRLs listing a
/// certificate of the path (below its anchor) that RFC 5280 does not apply,
/// and CRLs listing the anchor, which is trusted as given (§6.1).
pub(super) fn unused_revocations(crls: &[X509Crl], chain: &[X509]) -> Vec<String> {
    let mut notes = Vec::new();
    let Some((anchor, below)) = chain.split_last() else {
        return notes;
    };
    for crl in crls {
        if lists(crl, anchor) {
            notes.push(format!(
                "{} lists the trusted certificate \"{}\"; a trusted certificate is not checked for revocation (RFC 5280 §6.1): remove it from the trusted ids to stop trusting it",
                describe(crl),
                name_to_string(anchor.subject_name())
            ));
        }
        let Some(base) = base_number(crl) else {
            continue;
        };
        for cert in below.iter().filter(|c| lists(crl, c)) {
            notes.push(format!(
                "ignored revocation data: {} lists \"{}\" (serial {}) but does not apply to it: {}",
                describe(crl),
                name_to_string(cert.subject_name()),
                cert.serial_number()
                    .to_bn()
                    .and_then(|n| n.to_hex_str().map(|s| s.to_string()))
                    .unwrap_or_default(),
                why_delta_unused(crl, &base, cert, crls)
            ));
        }
    }
    notes
}

/// Why RFC 5280 §6.3.3 (c) did not apply `delta` to `cert`.
fn why_delta_unused(delta: &X509CrlRef, base: &BigNum, cert: &X509, crls: &[X509Crl]) -> String {
    let scope = extension_der(delta, openssl_sys::NID_issuing_distribution_point);
    let delta_number = number(delta);
    let bases: Vec<&X509Crl> = crls
        .iter()
        .filter(|c| {
            base_number(c).is_none()
                && c.issuer_name().to_der().ok() == delta.issuer_name().to_der().ok()
                && extension_der(c, openssl_sys::NID_issuing_distribution_point) == scope
                && number(c).is_some_and(|n| {
                    *n >= **base && delta_number.as_ref().is_some_and(|d| **d > *n)
                })
        })
        .collect();
    if bases.is_empty() {
        return format!(
            "no complete CRL of the same issuer and scope numbered from {} up to the delta's own number was given",
            base.to_dec_str().map(|s| s.to_string()).unwrap_or_default()
        );
    }
    // Safety: a read-only extension lookup on a live certificate.
    let cert_points = unsafe {
        openssl_sys::X509_get_ext_by_NID(cert.as_ptr(), openssl_sys::NID_freshest_crl, -1) >= 0
    };
    if !cert_points
        && !bases
            .iter()
            .any(|b| extension_der(b, openssl_sys::NID_freshest_crl).is_some())
    {
        return "neither the certificate nor its complete CRL has a freshestCRL extension, so delta CRLs are not consulted (RFC 5280 §6.3.3 (c))".into();
    }
    "it does not fit the complete CRL used (RFC 5280 §5.2.4)".into()
}
