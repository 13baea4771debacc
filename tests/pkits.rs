//! NIST PKITS (RSA-2048 re-issue) under the strict policy: every Valid…/Invalid…
//! end-entity case outside sections 4.8–4.12 (policy processing, which needs
//! non-default settings) must give the expected result. Results per section
//! are printed for docs/conformance.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use imgseal::validate::strict::StrictPolicy;
use imgseal::validate::{StrictOptions, TrustedCertificate, ValidationInput, Validator};
use imgseal::x509::Certificate;
use openssl::x509::X509Crl;

fn pkits_dir() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("IMGSEAL_PKITS_DIR").map(PathBuf::from),
        Some(repo.join("tests/data/pkits")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("certs/TrustAnchorRootCertificate.crt").exists())
        .expect("PKITS data not found: tests/data/pkits is part of the repository, or set IMGSEAL_PKITS_DIR")
}

/// The PKITS section a test belongs to, from its name.
fn section(name: &str) -> &'static str {
    let has = |s: &str| name.contains(s);
    if has("requireExplicitPolicy") {
        "4.9"
    } else if has("inhibitPolicyMapping") {
        "4.11"
    } else if has("inhibitAnyPolicy") {
        "4.12"
    } else if has("PolicyMapping") || has("MappingFromanyPolicy") || has("MappingToanyPolicy") {
        "4.10"
    } else if has("nameConstraints") {
        "4.13"
    } else if has("deltaCRL") {
        "4.15"
    } else if has("distributionPoint")
        || has("DistributionPoint")
        || has("IDPwithindirectCRL")
        || has("onlyContains")
        || has("onlySomeReasons")
        || has("cRLIssuer")
    {
        "4.14"
    } else if has("UnknownCriticalCertificateExtension")
        || has("UnknownNotCriticalCertificateExtension")
    {
        "4.16"
    } else if has("CertificatePath") || has("Signature") || has("DSAParameterInheritance") {
        "4.1"
    } else if has("notBeforeDate") || has("notAfterDate") {
        "4.2"
    } else if has("NameChaining")
        || has("NameUIDs")
        || has("RFC3280")
        || has("UTF8String")
        || has("Rollover")
    {
        "4.3"
    } else if has("BasicSelfIssued") {
        "4.5"
    } else if has("CRL")
        || has("SerialNumber")
        || has("Revoked")
        || has("SeparateCertificateandCRLKeys")
    {
        "4.4"
    } else if has("basicConstraints") || has("cAFalse") || has("pathLenConstraint") {
        "4.6"
    } else if has("keyUsage") {
        "4.7"
    } else {
        "4.8"
    }
}

#[test]
fn pkits_strict_policy_conformance() {
    let dir = pkits_dir();
    let load = |p: &Path| {
        Certificate::from_der(&std::fs::read(p).unwrap(), &p.display().to_string()).unwrap()
    };
    let anchor = load(&dir.join("certs/TrustAnchorRootCertificate.crt"));
    let mut ees = Vec::new();
    let mut intermediates = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir.join("certs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if name.starts_with("Valid") || name.starts_with("Invalid") {
            ees.push((name, load(&path)));
        } else if name != "TrustAnchorRootCertificate" && !name.ends_with("EE") {
            intermediates.push((name, load(&path)));
        }
    }
    let mut crl_paths: Vec<PathBuf> = std::fs::read_dir(dir.join("crls"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    crl_paths.sort();
    let crls: Vec<X509Crl> = crl_paths
        .iter()
        .map(|p| X509Crl::from_der(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    let trusted = [TrustedCertificate {
        id: "TrustAnchorRootCertificate".into(),
        certificate: Some(anchor),
    }];
    // PKITS predates SHA-1's deprecation and uses 1024-bit DSA keys in 4.1.
    let options = StrictOptions {
        min_rsa_bits: 1024,
        allow_sha1: true,
        max_depth: 32,
        allow_small_rsa_exponent: false,
    };
    let at = 1_577_836_800; // 2020-01-01T00:00:00Z, inside every certificate's validity

    let mut per_section: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let started = std::time::Instant::now();
    for (name, ee) in &ees {
        let sec = section(name);
        if matches!(sec, "4.8" | "4.9" | "4.10" | "4.11" | "4.12") {
            continue;
        }
        let input = ValidationInput {
            leaf_id: name,
            leaf: ee,
            trusted: &trusted,
            intermediates: &intermediates,
            crls: &crls,
            at,
            options,
        };
        let verdict = StrictPolicy.validate(&input).unwrap();
        let expected = name.starts_with("Valid");
        let entry = per_section.entry(sec).or_default();
        entry.1 += 1;
        if verdict.valid == expected {
            entry.0 += 1;
        } else {
            failures.push(format!(
                "{name} ({sec}): expected {}, got {} — {:?}",
                if expected { "valid" } else { "invalid" },
                if verdict.valid { "valid" } else { "invalid" },
                verdict.reason
            ));
        }
    }
    let elapsed = started.elapsed();
    println!("| section | passed |\n|---|---|");
    for (sec, (ok, total)) in &per_section {
        println!("| {sec} | {ok}/{total} |");
    }
    println!(
        "validated {} cases in {:.2?} (after parsing)",
        per_section.values().map(|v| v.1).sum::<usize>(),
        elapsed
    );
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(
        per_section.values().map(|v| v.1).sum::<usize>() > 150,
        "too few PKITS cases found"
    );
    // Every case, including the two OpenSSL 3 cannot pass alone (4.1.5, DSA
    // parameter inheritance; 4.14.30, a CRL signer covered by its own CRL),
    // which src/validate/openssl_hooks.rs completes.
    assert!(
        failures.is_empty(),
        "PKITS cases with the wrong result:\n{}",
        failures.join("\n")
    );
}

/// 4.1.5's path with one signature broken at a time: the certificates whose
/// DSA keys inherit their parameters are checked through twins
/// (src/validate/dsa_inheritance.rs), and a twin must never stand in for a
/// certificate whose own signature fails.
#[test]
fn dsa_parameter_inheritance_checks_every_signature() {
    let dir = pkits_dir();
    let load = |name: &str| std::fs::read(dir.join(format!("certs/{name}.crt"))).unwrap();
    let cert = |name: &str, der: &[u8]| Certificate::from_der(der, name).unwrap();
    let anchor = cert("anchor", &load("TrustAnchorRootCertificate"));
    let trusted = [TrustedCertificate {
        id: "anchor".into(),
        certificate: Some(anchor),
    }];
    let crls: Vec<X509Crl> = [
        "TrustAnchorRootCRL",
        "DSACACRL",
        "DSAParametersInheritedCACRL",
    ]
    .iter()
    .map(|n| X509Crl::from_der(&std::fs::read(dir.join(format!("crls/{n}.crl"))).unwrap()).unwrap())
    .collect();
    let options = StrictOptions {
        min_rsa_bits: 1024,
        allow_sha1: true,
        max_depth: 32,
        allow_small_rsa_exponent: false,
    };
    // The last byte of a DSA certificate is inside the signature's s.
    let broken = |der: &[u8]| {
        let mut der = der.to_vec();
        *der.last_mut().unwrap() ^= 0x01;
        der
    };
    // `middle`: the DSA CA certificates the store holds, by id.
    let validate_with = |middle: &[(&str, &[u8])], ee: &[u8], inherited_ca: &[u8], with_crls| {
        let mut intermediates: Vec<(String, Certificate)> = middle
            .iter()
            .map(|(id, der)| (id.to_string(), cert(id, der)))
            .collect();
        intermediates.push((
            "DSAParametersInheritedCACert".to_string(),
            cert("ca", inherited_ca),
        ));
        let leaf = cert("ee", ee);
        let input = ValidationInput {
            leaf_id: "ee",
            leaf: &leaf,
            trusted: &trusted,
            intermediates: &intermediates,
            crls: if with_crls { &crls } else { &[] },
            at: 1_577_836_800,
            options,
        };
        StrictPolicy.validate(&input).unwrap()
    };
    let dsa_ca = load("DSACACert");
    let validate = |ee: &[u8], inherited_ca: &[u8], with_crls: bool| {
        validate_with(&[("DSACACert", &dsa_ca)], ee, inherited_ca, with_crls)
    };
    let ee = load("ValidDSAParameterInheritanceTest5EE");
    let ca = load("DSAParametersInheritedCACert");
    // Issue #10 item 8: parameters altered on the path. Another 1024-bit
    // group (p, q, g) put into a subjectPublicKeyInfo, signature left alone.
    let other = openssl::dsa::Dsa::generate(1024).unwrap();
    let with_params = |der: &[u8], params: Option<(&[u8], &[u8], &[u8])>| {
        use der::{Decode, Encode};
        let mut c = x509_cert::Certificate::from_der(der).unwrap();
        let spki = &mut c.tbs_certificate.subject_public_key_info;
        spki.algorithm.parameters = params.map(|(p, q, g)| {
            // Dss-Parms ::= SEQUENCE { p, q, g INTEGER } (RFC 3279 §2.3.2).
            let body: Vec<u8> = [p, q, g]
                .iter()
                .flat_map(|b| der::asn1::Uint::new(b).unwrap().to_der().unwrap())
                .collect();
            der::asn1::Any::new(der::Tag::Sequence, body).unwrap()
        });
        c.to_der().unwrap()
    };
    let (p, q, g) = (other.p().to_vec(), other.q().to_vec(), other.g().to_vec());
    let altered = Some((&p[..], &q[..], &g[..]));
    // DSACA's own parameters, as the inheriting CA's key really has them.
    let dsa_ca_params = {
        let key = openssl::x509::X509::from_der(&dsa_ca)
            .unwrap()
            .public_key()
            .unwrap();
        let d = key.dsa().unwrap();
        (d.p().to_vec(), d.q().to_vec(), d.g().to_vec())
    };
    let explicit = Some((
        &dsa_ca_params.0[..],
        &dsa_ca_params.1[..],
        &dsa_ca_params.2[..],
    ));
    for with_crls in [false, true] {
        // The middle CA with another group: its key now means another key,
        // so the inheriting CA below must not verify with those parameters.
        let altered_dsa_ca = with_params(&dsa_ca, altered);
        let v = validate_with(&[("DSACACert", &altered_dsa_ca)], &ee, &ca, with_crls);
        assert!(!v.valid, "altered middle CA parameters: {:?}", v.chain);
        // Beside the genuine one (same name, same public value), listed
        // first: the path found is the genuine one, never through the altered.
        let v = validate_with(
            &[("altered", &altered_dsa_ca), ("DSACACert", &dsa_ca)],
            &ee,
            &ca,
            with_crls,
        );
        assert!(v.valid, "{:?}", v.reason);
        assert!(v.chain.iter().all(|l| l.id != "altered"), "{:?}", v.chain);
        // The inheriting CA carrying parameters of its own: the altered
        // group, or even DSACA's true one, changes what DSACA signed.
        for params in [altered, explicit] {
            let v = validate(&ee, &with_params(&ca, params), with_crls);
            assert!(
                !v.valid,
                "inheriting CA with explicit parameters: {:?}",
                v.chain
            );
        }
        // The EE carrying the altered group instead of inheriting.
        let v = validate(&with_params(&ee, altered), &ca, with_crls);
        assert!(!v.valid, "EE with altered parameters: {:?}", v.chain);
    }

    for with_crls in [false, true] {
        let verdict = validate(&ee, &ca, with_crls);
        assert!(verdict.valid, "{:?}", verdict.reason);
        // The chain names the certificates as given, not their twins.
        let ids: Vec<&str> = verdict.chain.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(
            ids,
            ["ee", "DSAParametersInheritedCACert", "DSACACert", "anchor"]
        );
        assert!(
            verdict
                .notes
                .iter()
                .any(|n| n.contains("inherits its issuer's")),
            "{:?}",
            verdict.notes
        );
        assert!(
            !validate(&broken(&ee), &ca, with_crls).valid,
            "broken EE signature"
        );
        assert!(
            !validate(&ee, &broken(&ca), with_crls).valid,
            "broken CA signature"
        );
    }
}
