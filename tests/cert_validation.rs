//! Certificate validation: a corpus of PKI shapes run through cursive itself
//! and through `imgseal cert verify --policy nova` must give identical
//! verdicts and messages; the strict policy's different answers are recorded
//! (docs/conformance.md) and asserted.

mod common;

use std::path::Path;

use common::pki::{self, Issued, KeyAlg, Spec, issue, write_pem};
use common::*;

struct Case {
    name: &'static str,
    leaf: &'static str,
    trusted: Vec<&'static str>,
    /// What strict must decide (true = valid).
    strict_valid: bool,
}

fn dn(cn: &str) -> Vec<(&'static str, String)> {
    vec![("CN", cn.to_string())]
}

/// Builds every case's certificates into one directory, as a key manager would hold them.
fn corpus(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let root = issue(
        &Spec {
            basic_constraints: Some((true, Some(2))),
            ..Spec::ca("Root")
        },
        None,
    );
    let int = issue(
        &Spec {
            serial: 2,
            ..Spec::ca("Intermediate")
        },
        Some(&root),
    );
    let leaf = issue(
        &Spec {
            serial: 3,
            ..Spec::leaf("Signer")
        },
        Some(&int),
    );
    write_pem(dir, "root", &root.cert);
    write_pem(dir, "int", &int.cert);
    write_pem(dir, "leaf", &leaf.cert);
    cases.push(Case {
        name: "full chain trusted",
        leaf: "leaf",
        trusted: vec!["root", "int"],
        strict_valid: true,
    });
    cases.push(Case {
        name: "trusted in reverse order",
        leaf: "leaf",
        trusted: vec!["int", "root"],
        strict_valid: true,
    });
    cases.push(Case {
        name: "root only, intermediate untrusted",
        leaf: "leaf",
        trusted: vec!["root"],
        strict_valid: true,
    });
    cases.push(Case {
        name: "intermediate only, no root",
        leaf: "leaf",
        trusted: vec!["int"],
        strict_valid: true,
    });
    cases.push(Case {
        name: "no trusted ids",
        leaf: "leaf",
        trusted: vec![],
        strict_valid: false,
    });
    cases.push(Case {
        name: "trusted id missing from the store",
        leaf: "leaf",
        trusted: vec!["nonexistent", "root", "int"],
        strict_valid: true,
    });
    cases.push(Case {
        name: "leaf trusted as itself, not a CA",
        leaf: "leaf",
        trusted: vec!["leaf"],
        strict_valid: true,
    });

    let expired = issue(
        &Spec {
            not_before: -30,
            not_after: -1,
            serial: 4,
            ..Spec::leaf("Expired signer")
        },
        Some(&int),
    );
    write_pem(dir, "expired", &expired.cert);
    cases.push(Case {
        name: "expired leaf",
        leaf: "expired",
        trusted: vec!["root", "int"],
        strict_valid: false,
    });
    let future = issue(
        &Spec {
            not_before: 2,
            not_after: 30,
            serial: 5,
            ..Spec::leaf("Future signer")
        },
        Some(&int),
    );
    write_pem(dir, "future", &future.cert);
    cases.push(Case {
        name: "not-yet-valid leaf",
        leaf: "future",
        trusted: vec!["root", "int"],
        strict_valid: false,
    });

    let int_expired = issue(
        &Spec {
            not_before: -30,
            not_after: -1,
            serial: 6,
            ..Spec::ca("Expired intermediate")
        },
        Some(&root),
    );
    let leaf_ie = issue(
        &Spec {
            serial: 7,
            ..Spec::leaf("Signer under expired")
        },
        Some(&int_expired),
    );
    write_pem(dir, "int-expired", &int_expired.cert);
    write_pem(dir, "leaf-ie", &leaf_ie.cert);
    cases.push(Case {
        name: "expired intermediate",
        leaf: "leaf-ie",
        trusted: vec!["root", "int-expired"],
        strict_valid: false,
    });

    let int_noca = issue(
        &Spec {
            basic_constraints: Some((false, None)),
            serial: 8,
            ..Spec::ca("Non-CA intermediate")
        },
        Some(&root),
    );
    let leaf_noca = issue(
        &Spec {
            serial: 9,
            ..Spec::leaf("Signer under non-CA")
        },
        Some(&int_noca),
    );
    write_pem(dir, "int-noca", &int_noca.cert);
    write_pem(dir, "leaf-noca", &leaf_noca.cert);
    cases.push(Case {
        name: "non-CA intermediate",
        leaf: "leaf-noca",
        trusted: vec!["root", "int-noca"],
        strict_valid: false,
    });

    let int_noku = issue(
        &Spec {
            key_usage: None,
            serial: 10,
            ..Spec::ca("No-keyUsage intermediate")
        },
        Some(&root),
    );
    let leaf_noku = issue(
        &Spec {
            serial: 11,
            ..Spec::leaf("Signer under no-KU")
        },
        Some(&int_noku),
    );
    write_pem(dir, "int-noku", &int_noku.cert);
    write_pem(dir, "leaf-noku", &leaf_noku.cert);
    // RFC 5280 allows a CA without keyUsage; cursive drops it.
    cases.push(Case {
        name: "intermediate without keyUsage",
        leaf: "leaf-noku",
        trusted: vec!["root", "int-noku"],
        strict_valid: true,
    });

    let int_nobc = issue(
        &Spec {
            basic_constraints: None,
            serial: 12,
            ..Spec::ca("No-BC intermediate")
        },
        Some(&root),
    );
    let leaf_nobc = issue(
        &Spec {
            serial: 13,
            ..Spec::leaf("Signer under no-BC")
        },
        Some(&int_nobc),
    );
    write_pem(dir, "int-nobc", &int_nobc.cert);
    write_pem(dir, "leaf-nobc", &leaf_nobc.cert);
    // Trusted, it is a trust anchor, whose extensions RFC 5280 path validation does not check.
    cases.push(Case {
        name: "trusted intermediate without basicConstraints",
        leaf: "leaf-nobc",
        trusted: vec!["root", "int-nobc"],
        strict_valid: true,
    });
    // Untrusted, it cannot issue: the path through it is refused.
    cases.push(Case {
        name: "untrusted intermediate without basicConstraints",
        leaf: "leaf-nobc",
        trusted: vec!["root"],
        strict_valid: false,
    });

    let root0 = issue(
        &Spec {
            basic_constraints: Some((true, Some(0))),
            serial: 14,
            ..Spec::ca("Root pathlen 0")
        },
        None,
    );
    let int0 = issue(
        &Spec {
            serial: 15,
            ..Spec::ca("Intermediate under pathlen 0")
        },
        Some(&root0),
    );
    let leaf0 = issue(
        &Spec {
            serial: 16,
            ..Spec::leaf("Signer under pathlen 0")
        },
        Some(&int0),
    );
    write_pem(dir, "root0", &root0.cert);
    write_pem(dir, "int0", &int0.cert);
    write_pem(dir, "leaf0", &leaf0.cert);
    // With the intermediate trusted it is the anchor, and the root's pathlen is out of the path.
    cases.push(Case {
        name: "pathlen violation, both trusted",
        leaf: "leaf0",
        trusted: vec!["root0", "int0"],
        strict_valid: true,
    });
    cases.push(Case {
        name: "pathlen violation, root trusted",
        leaf: "leaf0",
        trusted: vec!["root0"],
        strict_valid: false,
    });

    // Nova's docs shape: Root pathlen 2 → A pathlen 1 → B → leaf.
    let a = issue(
        &Spec {
            basic_constraints: Some((true, Some(1))),
            serial: 17,
            ..Spec::ca("Intermediate A")
        },
        Some(&root),
    );
    let b = issue(
        &Spec {
            serial: 18,
            ..Spec::ca("Intermediate B")
        },
        Some(&a),
    );
    let leaf_b = issue(
        &Spec {
            serial: 19,
            ..Spec::leaf("Signer under B")
        },
        Some(&b),
    );
    write_pem(dir, "a", &a.cert);
    write_pem(dir, "b", &b.cert);
    write_pem(dir, "leaf-b", &leaf_b.cert);
    cases.push(Case {
        name: "four-certificate chain within pathlen",
        leaf: "leaf-b",
        trusted: vec!["root", "a", "b"],
        strict_valid: true,
    });
    cases.push(Case {
        name: "four-certificate chain, middle missing",
        leaf: "leaf-b",
        trusted: vec!["root", "b"],
        strict_valid: true,
    });

    let renamed = issue(
        &Spec {
            issuer_name: Some(dn("Somebody else")),
            serial: 20,
            ..Spec::leaf("Misnamed signer")
        },
        Some(&int),
    );
    write_pem(dir, "misnamed", &renamed.cert);
    cases.push(Case {
        name: "issuer name mismatch",
        leaf: "misnamed",
        trusted: vec!["root", "int"],
        strict_valid: false,
    });

    let decoy = issue(
        &Spec {
            serial: 21,
            ..Spec::ca("Intermediate")
        },
        Some(&root),
    );
    write_pem(dir, "decoy", &decoy.cert);
    cases.push(Case {
        name: "same-name decoy first",
        leaf: "leaf",
        trusted: vec!["decoy", "int", "root"],
        strict_valid: true,
    });
    cases.push(Case {
        name: "same-name decoy only",
        leaf: "leaf",
        trusted: vec!["decoy", "root"],
        strict_valid: true,
    });

    let self_ca = issue(&Spec::ca("Self-signed CA signer"), None);
    write_pem(dir, "self-ca", &self_ca.cert);
    cases.push(Case {
        name: "self-signed CA signer trusted",
        leaf: "self-ca",
        trusted: vec!["self-ca"],
        strict_valid: true,
    });
    let self_ee = issue(&Spec::leaf("Self-signed signer"), None);
    write_pem(dir, "self-ee", &self_ee.cert);
    cases.push(Case {
        name: "self-signed end entity trusted",
        leaf: "self-ee",
        trusted: vec!["self-ee"],
        strict_valid: true,
    });
    cases.push(Case {
        name: "self-signed end entity untrusted",
        leaf: "self-ee",
        trusted: vec!["root"],
        strict_valid: false,
    });

    let lower = issue(
        &Spec {
            issuer_name: Some(dn("intermediate")),
            serial: 22,
            ..Spec::leaf("Lower-case issuer")
        },
        Some(&int),
    );
    write_pem(dir, "lower", &lower.cert);
    // RFC 4518 matching ignores case; cursive compares exactly.
    cases.push(Case {
        name: "issuer name differs in case",
        leaf: "lower",
        trusted: vec!["root", "int"],
        strict_valid: true,
    });

    let ec_root = issue(
        &Spec {
            key: KeyAlg::P384,
            digest: "sha384",
            ..Spec::ca("EC root")
        },
        None,
    );
    let ec_leaf = issue(
        &Spec {
            key: KeyAlg::P384,
            digest: "sha384",
            serial: 23,
            ..Spec::leaf("EC signer")
        },
        Some(&ec_root),
    );
    write_pem(dir, "ec-root", &ec_root.cert);
    write_pem(dir, "ec-leaf", &ec_leaf.cert);
    cases.push(Case {
        name: "ECDSA P-384 chain",
        leaf: "ec-leaf",
        trusted: vec!["ec-root"],
        strict_valid: true,
    });

    let pss_int = issue(
        &Spec {
            pss: true,
            serial: 24,
            ..Spec::ca("PSS-signed intermediate")
        },
        Some(&root),
    );
    let pss_leaf = issue(
        &Spec {
            serial: 25,
            ..Spec::leaf("Signer under PSS")
        },
        Some(&pss_int),
    );
    write_pem(dir, "pss-int", &pss_int.cert);
    write_pem(dir, "pss-leaf", &pss_leaf.cert);
    // cursive verifies RSA issuers with PKCS#1 v1.5 only.
    cases.push(Case {
        name: "RSASSA-PSS-signed intermediate",
        leaf: "pss-leaf",
        trusted: vec!["root", "pss-int"],
        strict_valid: true,
    });

    let server = issue(
        &Spec {
            extended_key_usage: Some(&["serverAuth"]),
            key_usage: Some(&["keyEncipherment"]),
            serial: 26,
            ..Spec::leaf("TLS server")
        },
        Some(&int),
    );
    write_pem(dir, "server", &server.cert);
    // cursive does not look at the signing certificate's usages.
    cases.push(Case {
        name: "leaf for serverAuth only",
        leaf: "server",
        trusted: vec!["root", "int"],
        strict_valid: false,
    });

    let weak = issue(
        &Spec {
            key: KeyAlg::Rsa1024,
            serial: 27,
            ..Spec::leaf("1024-bit signer")
        },
        Some(&int),
    );
    write_pem(dir, "weak", &weak.cert);
    cases.push(Case {
        name: "1024-bit RSA leaf",
        leaf: "weak",
        trusted: vec!["root", "int"],
        strict_valid: false,
    });
    let sha1 = issue(
        &Spec {
            digest: "sha1",
            serial: 28,
            ..Spec::leaf("SHA-1 signed")
        },
        Some(&int),
    );
    write_pem(dir, "sha1", &sha1.cert);
    cases.push(Case {
        name: "SHA-1-signed leaf",
        leaf: "sha1",
        trusted: vec!["root", "int"],
        strict_valid: false,
    });
    cases
}

fn cursive_verdict(dir: &Path, case: &Case) -> (bool, String) {
    let mut args = vec![
        "verify-certificate",
        "--cert-dir",
        dir.to_str().unwrap(),
        "--cert-id",
        case.leaf,
        "--timeout",
        "10",
    ];
    let joined = case.trusted.join(",");
    if !case.trusted.is_empty() {
        args.extend(["--trusted", &joined]);
    }
    let out = cursive(&args).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|_| panic!("{}: {}", case.name, out.stdout));
    let verdict = v["verdict"].as_str().unwrap().to_string();
    assert!(
        verdict == "valid" || verdict == "invalid",
        "{}: cursive said {v}",
        case.name
    );
    (
        verdict == "valid",
        v["message"].as_str().unwrap_or("").to_string(),
    )
}

fn imgseal_verdict(env: &Env, dir: &Path, case: &Case, policy: &str) -> (bool, String) {
    let mut args = vec![
        "--json",
        "cert",
        "verify",
        case.leaf,
        "--cert-dir",
        dir.to_str().unwrap(),
        "--policy",
        policy,
    ];
    let joined = case.trusted.join(",");
    if !case.trusted.is_empty() {
        args.extend(["--trusted-cert-id", &joined]);
    }
    let out = env.run(&args);
    assert!(
        out.code == 0 || out.code == 1,
        "{}: {} {}",
        case.name,
        out.stdout,
        out.stderr
    );
    let v = out.json();
    (
        v["valid"].as_bool().unwrap(),
        v["reason"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn nova_policy_decides_exactly_as_cursive_and_strict_as_recorded() {
    let env = Env::new();
    let dir = env.path("km");
    std::fs::create_dir(&dir).unwrap();
    let cases = corpus(&dir);
    let mut table = Vec::new();
    for case in &cases {
        let (nova_valid, nova_msg) = imgseal_verdict(&env, &dir, case, "nova");
        let (strict_valid, strict_msg) = imgseal_verdict(&env, &dir, case, "strict");
        if let Some((cursive_valid, cursive_msg)) =
            cursive_python().map(|_| cursive_verdict(&dir, case))
        {
            assert_eq!(
                nova_valid, cursive_valid,
                "{}: imgseal nova said {nova_msg:?}, cursive {cursive_msg:?}",
                case.name
            );
            if !cursive_valid {
                assert_eq!(nova_msg, cursive_msg, "{}", case.name);
            }
        }
        assert_eq!(
            strict_valid, case.strict_valid,
            "{}: strict said {strict_msg:?}",
            case.name
        );
        table.push(format!(
            "| {} | {} | {} | {} |",
            case.name,
            if nova_valid { "valid" } else { "invalid" },
            if strict_valid { "valid" } else { "invalid" },
            strict_msg
        ));
    }
    println!(
        "| case | nova = cursive | strict | strict's reason |\n|---|---|---|---|\n{}",
        table.join("\n")
    );
}

#[test]
fn cycles_and_crashes_end_cleanly_where_cursive_does_not() {
    let env = Env::new();
    let dir = env.path("km");
    std::fs::create_dir(&dir).unwrap();
    // X and Y issue each other; the leaf is issued by X. cursive loops forever.
    let x_key = pki::key(KeyAlg::Rsa2048);
    let y_key = pki::key(KeyAlg::Rsa2048);
    let seed_x = Issued {
        cert: issue(&Spec::ca("X"), None).cert,
        key: x_key,
    };
    let seed_y = Issued {
        cert: issue(&Spec::ca("Y"), None).cert,
        key: y_key,
    };
    let x = cross(
        &Spec {
            serial: 30,
            ..Spec::ca("X")
        },
        &seed_x.key,
        &seed_y,
    );
    let y = cross(
        &Spec {
            serial: 31,
            ..Spec::ca("Y")
        },
        &seed_y.key,
        &seed_x,
    );
    let leaf = issue(
        &Spec {
            serial: 32,
            ..Spec::leaf("Cycle signer")
        },
        Some(&Issued {
            cert: x.clone(),
            key: seed_x.key.clone(),
        }),
    );
    write_pem(&dir, "x", &x);
    write_pem(&dir, "y", &y);
    write_pem(&dir, "leaf", &leaf.cert);
    let out = env
        .run(&[
            "cert",
            "verify",
            "leaf",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--policy",
            "nova",
            "--trusted-cert-id",
            "x,y",
        ])
        .code(1);
    assert!(
        out.stdout
            .contains("issuer cycle among the trusted certificates"),
        "{}",
        out.stdout
    );
    if cursive_python().is_some() {
        let c = cursive(&[
            "verify-certificate",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--cert-id",
            "leaf",
            "--trusted",
            "x,y",
            "--timeout",
            "3",
        ])
        .unwrap();
        assert_eq!(c.code, 4, "cursive was expected to hang: {}", c.stdout);
    }
    let out = env
        .run(&[
            "cert",
            "verify",
            "leaf",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--trusted-cert-id",
            "y",
        ])
        .code(0);
    assert!(
        out.stdout.contains("valid (strict policy)"),
        "{}",
        out.stdout
    );

    // An Ed25519 CA: cursive raises TypeError.
    let ed_root = issue(
        &Spec {
            key: KeyAlg::Ed25519,
            digest: "none",
            ..Spec::ca("Ed25519 root")
        },
        None,
    );
    let ed_leaf = issue(
        &Spec {
            digest: "none",
            serial: 33,
            ..Spec::leaf("Signer under Ed25519")
        },
        Some(&ed_root),
    );
    write_pem(&dir, "ed-root", &ed_root.cert);
    write_pem(&dir, "ed-leaf", &ed_leaf.cert);
    let out = env
        .run(&[
            "cert",
            "verify",
            "ed-leaf",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--policy",
            "nova",
            "--trusted-cert-id",
            "ed-root",
        ])
        .code(1);
    assert!(
        out.stdout.contains("cursive cannot check certificate"),
        "{}",
        out.stdout
    );
    if cursive_python().is_some() {
        let c = cursive(&[
            "verify-certificate",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--cert-id",
            "ed-leaf",
            "--trusted",
            "ed-root",
        ])
        .unwrap();
        assert_eq!(c.code, 3, "cursive was expected to crash: {}", c.stdout);
    }
    env.run(&[
        "cert",
        "verify",
        "ed-leaf",
        "--cert-dir",
        dir.to_str().unwrap(),
        "--trusted-cert-id",
        "ed-root",
    ])
    .code(0);

    // A CA on a binary curve: cryptography cannot load its key, and cursive
    // raises UnsupportedAlgorithm while checking the leaf's signature.
    let sect_root = issue(
        &Spec {
            key: KeyAlg::Sect571k1,
            ..Spec::ca("sect571k1 root")
        },
        None,
    );
    let sect_leaf = issue(
        &Spec {
            serial: 34,
            ..Spec::leaf("Signer under sect571k1")
        },
        Some(&sect_root),
    );
    write_pem(&dir, "sect-root", &sect_root.cert);
    write_pem(&dir, "sect-leaf", &sect_leaf.cert);
    let sect = |policy: &str| {
        env.run(&[
            "cert",
            "verify",
            "sect-leaf",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--policy",
            policy,
            "--trusted-cert-id",
            "sect-root",
        ])
    };
    let out = sect("nova").code(1);
    assert!(
        out.stdout
            .contains("UnsupportedAlgorithm (Curve 1.3.132.0.38 is not supported)"),
        "{}",
        out.stdout
    );
    if cursive_python().is_some() {
        let c = cursive(&[
            "verify-certificate",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--cert-id",
            "sect-leaf",
            "--trusted",
            "sect-root",
        ])
        .unwrap();
        assert_eq!(c.code, 3, "cursive was expected to crash: {}", c.stdout);
        assert!(c.stdout.contains("UnsupportedAlgorithm"), "{}", c.stdout);
    }
    sect("strict").code(0);
}

/// A CA certificate for `spec` with key `key`, issued by `issuer`.
fn cross(
    spec: &Spec,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
    issuer: &Issued,
) -> openssl::x509::X509 {
    let issued = issue(spec, Some(issuer));
    // Re-issue with the wanted key: build again with the same spec but our key.
    let mut b = openssl::x509::X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(issued.cert.serial_number()).unwrap();
    b.set_subject_name(issued.cert.subject_name()).unwrap();
    b.set_issuer_name(issuer.cert.subject_name()).unwrap();
    b.set_not_before(issued.cert.not_before()).unwrap();
    b.set_not_after(issued.cert.not_after()).unwrap();
    b.set_pubkey(key).unwrap();
    for ext in [
        openssl::x509::extension::BasicConstraints::new()
            .critical()
            .ca()
            .build()
            .unwrap(),
        openssl::x509::extension::KeyUsage::new()
            .critical()
            .key_cert_sign()
            .build()
            .unwrap(),
    ] {
        b.append_extension(ext).unwrap();
    }
    b.sign(&issuer.key, openssl::hash::MessageDigest::sha256())
        .unwrap();
    b.build()
}

#[test]
fn long_chains_and_revocation() {
    let env = Env::new();
    let dir = env.path("km");
    std::fs::create_dir(&dir).unwrap();
    // A 60-certificate chain: strict stops at its depth limit, cleanly.
    let mut chain = vec![issue(&Spec::ca("Long root"), None)];
    for i in 1..59 {
        let next = issue(
            &Spec {
                serial: 100 + i,
                key: KeyAlg::P384,
                ..Spec::ca(&format!("Long {i}"))
            },
            chain.last(),
        );
        chain.push(next);
    }
    let leaf = issue(
        &Spec {
            serial: 99,
            key: KeyAlg::P384,
            ..Spec::leaf("Long leaf")
        },
        chain.last(),
    );
    for (i, c) in chain.iter().enumerate() {
        write_pem(&dir, &format!("long{i}"), &c.cert);
    }
    write_pem(&dir, "long-leaf", &leaf.cert);
    let out = env
        .run(&[
            "cert",
            "verify",
            "long-leaf",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--trusted-cert-id",
            "long0",
        ])
        .code(1);
    assert!(
        out.stdout.contains("longer than 32 certificates") || out.stdout.contains("too long"),
        "{}",
        out.stdout
    );
    // cursive has no limit: with every CA trusted, the nova policy (like cursive) accepts it.
    let all: Vec<String> = (0..59).map(|i| format!("long{i}")).collect();
    env.run(&[
        "cert",
        "verify",
        "long-leaf",
        "--cert-dir",
        dir.to_str().unwrap(),
        "--policy",
        "nova",
        "--trusted-cert-id",
        &all.join(","),
    ])
    .code(0);

    // Revocation: a CRL from the intermediate revoking the leaf, and a huge CRL.
    let root = issue(&Spec::ca("CRL root"), None);
    let int = issue(
        &Spec {
            serial: 2,
            ..Spec::ca("CRL intermediate")
        },
        Some(&root),
    );
    let good = issue(
        &Spec {
            serial: 3,
            ..Spec::leaf("Good signer")
        },
        Some(&int),
    );
    let bad = issue(
        &Spec {
            serial: 4,
            ..Spec::leaf("Revoked signer")
        },
        Some(&int),
    );
    let rdir = env.path("crl");
    pki::cert_dir(
        &rdir,
        &[
            ("root", &root),
            ("int", &int),
            ("good", &good),
            ("bad", &bad),
        ],
    );
    let int_crl = crl(&env, &int, &[4], "int.crl");
    let root_crl = crl(&env, &root, &[], "root.crl");
    let huge_crl = crl(
        &env,
        &int,
        &(1000..60_000).chain([4]).collect::<Vec<u32>>(),
        "huge.crl",
    );
    let d = rdir.to_str().unwrap();
    let base = [
        "cert",
        "verify",
        "--cert-dir",
        d,
        "--trusted-cert-id",
        "root",
    ];
    let with = |id: &str, crls: &[&std::path::PathBuf]| {
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        args.insert(2, id.to_string());
        for c in crls {
            args.push("--crl".into());
            args.push(c.to_str().unwrap().into());
        }
        env.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    with("good", &[&int_crl, &root_crl]).code(0);
    let out = with("bad", &[&int_crl, &root_crl]).code(1);
    assert!(
        out.stdout.contains("revoked: \"CN=Revoked signer\""),
        "{}",
        out.stdout
    );
    let out = with("bad", &[&huge_crl, &root_crl]).code(1);
    assert!(out.stdout.contains("revoked"), "{}", out.stdout);
    with("good", &[&huge_crl, &root_crl]).code(0);
    // Without any CRL, revocation is not checked; with only some, the gap is named.
    with("bad", &[]).code(0);
    let out = with("good", &[&int_crl]).code(1);
    assert!(out.stdout.contains("no CRL for"), "{}", out.stdout);
    let json = env
        .run(&[
            "--json",
            "cert",
            "verify",
            "bad",
            "--cert-dir",
            d,
            "--trusted-cert-id",
            "root",
            "--crl",
            int_crl.to_str().unwrap(),
            "--crl",
            root_crl.to_str().unwrap(),
        ])
        .code(1)
        .json();
    assert_eq!(json["revoked"], true);
}

/// A CRL issued by `ca` revoking `serials`, made with the openssl CLI's `ca -gencrl`.
fn crl(env: &Env, ca: &Issued, serials: &[u32], name: &str) -> std::path::PathBuf {
    let dir = env.path(&format!("{name}.d"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    std::fs::write(&cert, ca.cert.to_pem().unwrap()).unwrap();
    std::fs::write(&key, ca.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let serials: Vec<String> = serials.iter().map(|s| format!("{s:X}")).collect();
    let out = env.path(name);
    pki::gencrl(&dir, &cert, &key, &serials, 1, &out);
    out
}

/// PKITS 4.14.30's shape, built here so that the other outcomes can be
/// tested too: a CA hands its CRLs to a separate CRL signer, whose own
/// certificate is covered by the indirect CRL it signs. OpenSSL alone cannot
/// validate such a signer; imgseal must accept it when it is not listed, and
/// must not when the CRL it signs lists it (or the signing certificate).
#[test]
fn crl_signer_covered_by_its_own_crl() {
    let env = Env::new();
    let root = issue(&Spec::ca("Self-covered root"), None);
    let ca = issue(
        &Spec {
            serial: 2,
            ..Spec::ca("Self-covered CA")
        },
        Some(&root),
    );
    let signer_name = dn("Self-covered CRL signer");
    let point = vec![("CN", "Self-covered indirect CRL".to_string())];
    let covered = Some((point.clone(), signer_name.clone()));
    let signer = issue(
        &Spec {
            serial: 3,
            basic_constraints: None,
            key_usage: Some(&["cRLSign"]),
            extended_key_usage: None,
            crl_issuer: covered.clone(),
            ..Spec::ca("Self-covered CRL signer")
        },
        Some(&ca),
    );
    let leaf = issue(
        &Spec {
            serial: 4,
            crl_issuer: covered,
            ..Spec::leaf("Self-covered signing certificate")
        },
        Some(&ca),
    );
    let dir = env.path("self-covered");
    pki::cert_dir(
        &dir,
        &[
            ("root", &root),
            ("ca", &ca),
            ("signer", &signer),
            ("leaf", &leaf),
        ],
    );
    let root_crl = pki::crl(&root, None, &[]);
    let point = pki::x509_name(&point);
    let ca_name = ca.cert.subject_name();
    let indirect = |serials: &[u32]| {
        let revoked: Vec<pki::Revoked> = serials
            .iter()
            .map(|&serial| pki::Revoked {
                serial,
                certificate_issuer: Some(ca_name),
            })
            .collect();
        pki::crl(&signer, Some(&point), &revoked)
    };
    let verify = |name: &str, indirect: openssl::x509::X509Crl| {
        let write = |n: &str, crl: &openssl::x509::X509Crl| {
            let p = env.path(&format!("{name}-{n}.crl"));
            std::fs::write(&p, crl.to_der().unwrap()).unwrap();
            p
        };
        let (root_file, indirect_file) = (write("root", &root_crl), write("indirect", &indirect));
        env.run(&[
            "--json",
            "cert",
            "verify",
            "leaf",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--trusted-cert-id",
            "root",
            "--crl",
            root_file.to_str().unwrap(),
            "--crl",
            indirect_file.to_str().unwrap(),
        ])
    };

    let valid = verify("clean", indirect(&[])).code(0).json();
    assert_eq!(valid["valid"], true, "{valid}");
    // The signer revoked on its own CRL: that CRL proves nothing.
    let out = verify("signer-revoked", indirect(&[3])).code(1);
    let verdict = out.json();
    assert_eq!(verdict["valid"], false, "{verdict}");
    assert!(
        verdict["reason"]
            .as_str()
            .unwrap()
            .contains("CRL path validation"),
        "{verdict}"
    );
    // The signing certificate revoked: an ordinary revoked verdict.
    let verdict = verify("leaf-revoked", indirect(&[4])).code(1).json();
    assert_eq!(verdict["revoked"], true, "{verdict}");
    // A CRL for another CA's certificate with the same serial changes nothing.
    let other = issue(&Spec::ca("Unrelated CA"), None);
    let revoked = [pki::Revoked {
        serial: 3,
        certificate_issuer: Some(other.cert.subject_name()),
    }];
    verify("other-issuer", pki::crl(&signer, Some(&point), &revoked)).code(0);
}

/// Nova fetches only the ids it is given: a stray file in the certificate
/// store (a garbage CRL, a private key saved as .pem) must not change or
/// break `--policy nova`, while strict, which reads the whole store and its
/// CRLs, refuses to guess.
#[test]
fn stray_store_files_do_not_touch_the_nova_policy() {
    let env = Env::new();
    let root = issue(&Spec::ca("Stray-file root"), None);
    let leaf = issue(
        &Spec {
            serial: 2,
            ..Spec::leaf("Stray-file signer")
        },
        Some(&root),
    );
    let dir = env.path("stray");
    pki::cert_dir(&dir, &[("root", &root), ("leaf", &leaf)]);
    let verify = |policy: &str| {
        env.run(&[
            "cert",
            "verify",
            "leaf",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--policy",
            policy,
            "--trusted-cert-id",
            "root",
        ])
    };
    verify("nova").code(0);
    verify("strict").code(0);
    std::fs::write(dir.join("junk.crl"), b"not a CRL").unwrap();
    std::fs::write(
        dir.join("signing-key.pem"),
        leaf.key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    verify("nova").code(0);
    let out = verify("strict").code(3);
    assert!(
        out.stderr.contains("junk.crl") || out.stderr.contains("signing-key.pem"),
        "{}",
        out.stderr
    );
}

/// A CA "Mesh k" of a cross-signed mesh, with a P-384 key (fast to make).
fn mesh_ca(k: usize, serial: u32) -> Spec {
    Spec {
        serial,
        key: KeyAlg::P384,
        ..Spec::ca(&format!("Mesh {k}"))
    }
}

/// `layers` layers of `width` CAs, layer k named "Mesh k" with keys of its
/// own, each key certified by every key of the layer above (layer 0: `width`
/// self-signed roots "Mesh 0", untrusted), written to `dir` as
/// `mesh<k>-<key>-<issuer>`; and a leaf "mesh-leaf" under the last layer.
/// The layers hold width^layers paths from the leaf to a root. Returns each
/// layer's keys (with one of their certificates), layer 0 first.
fn cross_signed_mesh(dir: &Path, layers: usize, width: usize) -> Vec<Vec<Issued>> {
    let mut serial = 1000;
    let roots: Vec<Issued> = (0..width)
        .map(|i| {
            let root = issue(&mesh_ca(0, serial + i as u32), None);
            write_pem(dir, &format!("mesh0-{i}"), &root.cert);
            root
        })
        .collect();
    let mut mesh = vec![roots];
    for k in 1..=layers {
        let mut layer = Vec::new();
        for i in 0..width {
            let key = pki::key(KeyAlg::P384);
            let mut cert = None;
            for (j, issuer) in mesh[k - 1].iter().enumerate() {
                serial += 10;
                let c = cross(&mesh_ca(k, serial), &key, issuer);
                write_pem(dir, &format!("mesh{k}-{i}-{j}"), &c);
                cert = Some(c);
            }
            layer.push(Issued {
                cert: cert.unwrap(),
                key,
            });
        }
        mesh.push(layer);
    }
    let leaf = issue(
        &Spec {
            serial: 999,
            key: KeyAlg::P384,
            ..Spec::leaf("Mesh signer")
        },
        Some(&mesh[layers][0]),
    );
    write_pem(dir, "mesh-leaf", &leaf.cert);
    mesh
}

/// Issue #10 item 7: the strict search capped the paths it found (8) and
/// their depth (32), not its work. 8 layers of 3 same-name CAs, each
/// cross-certified by every CA above, hold 3^8 = 6561 paths to untrusted
/// roots; with a trusted root of the same name that certifies none of them,
/// every path was walked (~88 000 signature checks) before "no path". The
/// search now stops on its budget with a verdict of its own; a small mesh
/// with a real path still validates, and the nova policy (cursive's greedy
/// walk, one issuer per step) ends on the same mesh.
#[test]
fn a_mesh_of_cross_signed_same_name_cas_exhausts_the_path_search_budget() {
    let env = Env::new();
    let verify = |dir: &Path, trusted: &str, policy: &str| {
        env.run(&[
            "--json",
            "cert",
            "verify",
            "mesh-leaf",
            "--cert-dir",
            dir.to_str().unwrap(),
            "--policy",
            policy,
            "--trusted-cert-id",
            trusted,
        ])
    };
    let dir = env.path("mesh");
    std::fs::create_dir(&dir).unwrap();
    cross_signed_mesh(&dir, 8, 3);
    // A trusted root named as the mesh's roots, which certifies nothing in it.
    let decoy_anchor = issue(&mesh_ca(0, 998), None);
    write_pem(&dir, "anchor", &decoy_anchor.cert);
    let out = verify(&dir, "anchor", "strict").code(1);
    let reason = out.json()["reason"].as_str().unwrap_or("").to_string();
    assert!(
        reason.starts_with("path search budget exhausted: 512 signature checks tried"),
        "{}",
        out.stdout
    );

    // cursive's walk takes the first trusted issuer at each step and never
    // comes back: at most one step per trusted certificate, each comparing
    // every trusted certificate. With the whole mesh trusted it ends, at a
    // self-signed root.
    let mut all: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.trim_end_matches(".pem").to_string()
        })
        .filter(|id| id != "mesh-leaf")
        .collect();
    all.sort();
    let out = verify(&dir, &all.join(","), "nova").code(0);
    assert!(out.json()["valid"].as_bool().unwrap(), "{}", out.stdout);

    // A small mesh whose first layer's last key the trusted root also
    // certifies: the depth-first search, which tries the untrusted roots'
    // certificates first, still finds the real path within its budget.
    let small = env.path("small");
    std::fs::create_dir(&small).unwrap();
    let mesh = cross_signed_mesh(&small, 3, 2);
    let anchor = issue(&mesh_ca(0, 997), None);
    write_pem(&small, "anchor", &anchor.cert);
    let real = cross(&mesh_ca(1, 996), &mesh[1][1].key, &anchor);
    write_pem(&small, "mesh1-1-anchor", &real);
    let out = verify(&small, "anchor", "strict").code(0);
    assert!(
        out.json()["chain"].to_string().contains("mesh1-1-anchor"),
        "{}",
        out.stdout
    );
}

/// A root, an intermediate and two signing certificates (serials 3 and 4),
/// every CA allowed to sign CRLs, in a certificate directory.
struct CrlChain {
    root: Issued,
    int: Issued,
    dir: std::path::PathBuf,
}

fn crl_chain(env: &Env, name: &str) -> CrlChain {
    let root = issue(&Spec::ca(&format!("{name} root")), None);
    let int = issue(
        &Spec {
            serial: 2,
            ..Spec::ca(&format!("{name} intermediate"))
        },
        Some(&root),
    );
    let good = issue(
        &Spec {
            serial: 3,
            ..Spec::leaf(&format!("{name} good signer"))
        },
        Some(&int),
    );
    let bad = issue(
        &Spec {
            serial: 4,
            ..Spec::leaf(&format!("{name} revoked signer"))
        },
        Some(&int),
    );
    let dir = env.path(name);
    pki::cert_dir(
        &dir,
        &[
            ("root", &root),
            ("int", &int),
            ("good", &good),
            ("bad", &bad),
        ],
    );
    CrlChain { root, int, dir }
}

fn write_crl(env: &Env, name: &str, crl: &openssl::x509::X509Crl) -> std::path::PathBuf {
    let path = env.path(name);
    write_crl_at(&path, crl);
    path
}

fn write_crl_at(path: &Path, crl: &openssl::x509::X509Crl) {
    std::fs::write(path, crl.to_pem().unwrap()).unwrap();
}

fn revoking(serials: &[u32]) -> Vec<pki::Revoked<'static>> {
    serials
        .iter()
        .map(|&serial| pki::Revoked {
            serial,
            certificate_issuer: None,
        })
        .collect()
}

/// `cert verify <id> --trusted-cert-id <trusted> --crl …` on `dir`, as JSON.
fn verify_with_crls(
    env: &Env,
    dir: &Path,
    id: &str,
    trusted: &str,
    crls: &[&std::path::PathBuf],
) -> Run {
    let mut args = vec![
        "--json".to_string(),
        "cert".into(),
        "verify".into(),
        id.into(),
        "--cert-dir".into(),
        dir.to_str().unwrap().into(),
        "--trusted-cert-id".into(),
        trusted.into(),
    ];
    for c in crls {
        args.push("--crl".into());
        args.push(c.to_str().unwrap().into());
    }
    env.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Issue #10 item 4: two genuine CRLs of one issuer with the same thisUpdate.
/// OpenSSL took the first given, so a clean CRL listed first hid a
/// revocation; the higher CRL number must win in either order, and two CRLs
/// with the same number that disagree count as the union of their entries.
#[test]
fn crl_choice_does_not_depend_on_argument_order() {
    let env = Env::new();
    let chain = crl_chain(&env, "order");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = |number: u32, revoked: &[u32]| {
        pki::crl_with(
            &chain.int,
            &pki::CrlOptions {
                number,
                this_update: Some(now - 3600),
                ..Default::default()
            },
            &revoking(revoked),
        )
    };
    let root_crl = write_crl(&env, "order-root.crl", &pki::crl(&chain.root, None, &[]));
    let clean1 = write_crl(&env, "clean-1.crl", &at(1, &[]));
    let revoking2 = write_crl(&env, "revoking-2.crl", &at(2, &[4]));
    let clean2 = write_crl(&env, "clean-2.crl", &at(2, &[]));
    let dir = &chain.dir;

    for order in [[&clean1, &revoking2], [&revoking2, &clean1]] {
        let v = verify_with_crls(&env, dir, "bad", "root", &[order[0], order[1], &root_crl])
            .code(1)
            .json();
        assert_eq!(v["revoked"], true, "{v}");
        let reason = v["reason"].as_str().unwrap();
        assert!(
            reason.contains("CRL of \"CN=order intermediate\" (number 2)"),
            "{reason}"
        );
        // The older CRL is set aside in the verdict, not silently.
        assert!(
            v["notes"].to_string().contains("(number 1) is not used"),
            "{v}"
        );
        verify_with_crls(&env, dir, "good", "root", &[order[0], order[1], &root_crl]).code(0);
    }
    // Same number, different entries: revoked in either order, and said so.
    for order in [[&clean2, &revoking2], [&revoking2, &clean2]] {
        let v = verify_with_crls(&env, dir, "bad", "root", &[order[0], order[1], &root_crl])
            .code(1)
            .json();
        assert_eq!(v["revoked"], true, "{v}");
        let v = verify_with_crls(&env, dir, "good", "root", &[order[0], order[1], &root_crl])
            .code(0)
            .json();
        assert!(v["notes"].to_string().contains("differ"), "{v}");
    }
}

/// Issue #10 item 4: a delta CRL listing the signing certificate that RFC
/// 5280 does not apply (no freshestCRL pointing to deltas; no base CRL it
/// extends) leaves the certificate valid, and the verdict says what was
/// ignored instead of dropping it silently.
#[test]
fn unused_delta_crl_is_reported() {
    let env = Env::new();
    let chain = crl_chain(&env, "delta");
    let root_crl = write_crl(&env, "delta-root.crl", &pki::crl(&chain.root, None, &[]));
    let base = write_crl(&env, "delta-base.crl", &pki::crl(&chain.int, None, &[]));
    let delta = |number: u32, base: u32| {
        pki::crl_with(
            &chain.int,
            &pki::CrlOptions {
                number,
                delta_of: Some(base),
                ..Default::default()
            },
            &revoking(&[4]),
        )
    };
    // The notes of a valid verdict for `id` with the delta in `file`.
    let notes = |id: &str, file: &std::path::PathBuf| {
        let crls = [file, &base, &root_crl];
        let v = verify_with_crls(&env, &chain.dir, id, "root", &crls)
            .code(0)
            .json();
        v["notes"].to_string()
    };
    let unreachable = write_crl(&env, "delta-2.crl", &delta(2, 1));
    let found = notes("bad", &unreachable);
    assert!(found.contains("ignored revocation data"), "{found}");
    assert!(found.contains("freshestCRL"), "{found}");
    assert!(found.contains("revoked signer"), "{found}");
    // A delta of a base CRL nobody gave.
    let orphan = write_crl(&env, "delta-9.crl", &delta(9, 8));
    let found = notes("bad", &orphan);
    assert!(found.contains("ignored revocation data"), "{found}");
    assert!(found.contains("no complete CRL"), "{found}");
    // The good certificate is not listed: nothing to report.
    let found = notes("good", &orphan);
    assert!(!found.contains("ignored"), "{found}");
}

/// Issue #10 item 5: a trusted intermediate with CRLs found in `--cert-dir`.
/// CRL_CHECK_ALL checked the trusted certificate itself against a CRL it
/// could not verify, so it never validated; a revoked certificate below it
/// must still be refused, with a message naming the CRL.
#[test]
fn trusted_intermediate_with_crls_in_the_cert_dir() {
    let env = Env::new();
    let chain = crl_chain(&env, "partial");
    // The root's CRL revokes nobody; the intermediate's revokes serial 4.
    write_crl_at(
        &chain.dir.join("root.crl"),
        &pki::crl(&chain.root, None, &[]),
    );
    write_crl_at(
        &chain.dir.join("int.crl"),
        &pki::crl(&chain.int, None, &revoking(&[4])),
    );
    let v = verify_with_crls(&env, &chain.dir, "good", "int", &[])
        .code(0)
        .json();
    assert_eq!(v["anchor"]["id"], "int", "{v}");
    let v = verify_with_crls(&env, &chain.dir, "bad", "int", &[])
        .code(1)
        .json();
    assert_eq!(v["revoked"], true, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("\"CN=partial revoked signer\"")
            && reason.contains("the CRL of \"CN=partial intermediate\" (number 1)"),
        "{reason}"
    );
    // The trusted leaf itself: its own status is not checked.
    verify_with_crls(&env, &chain.dir, "bad", "bad", &[]).code(0);
    // Nor is the trusted intermediate's, but a CRL listing it is noted.
    write_crl_at(
        &chain.dir.join("root.crl"),
        &pki::crl(&chain.root, None, &revoking(&[2])),
    );
    let v = verify_with_crls(&env, &chain.dir, "good", "int", &[])
        .code(0)
        .json();
    assert!(
        v["notes"]
            .to_string()
            .contains("lists the trusted certificate \\\"CN=partial intermediate\\\""),
        "{v}"
    );
}

/// Issue #10 item 5 on Nova's documentation chain: a trusted leaf validates
/// with a CRL given by --crl or found in --cert-dir. The docs' CAs have no
/// cRLSign, so a CRL signed by Intermediate B cannot check the leaf when B is
/// trusted, and the refusal names that CRL, not only the leaf.
#[test]
fn docs_chain_trusted_leaf_with_a_crl() {
    use common::docs_chain::{self, CLIENT, INT_B};
    let env = Env::new();
    let (docs, _, _) = docs_chain::docs_signed_with_openssl(&env);
    let km = docs.join("km");
    let int_b = Issued {
        cert: openssl::x509::X509::from_pem(
            &std::fs::read(docs.join("cert_intermediate_b.pem")).unwrap(),
        )
        .unwrap(),
        key: openssl::pkey::PKey::private_key_from_pem(
            &std::fs::read(docs.join("key_intermediate_b.pem")).unwrap(),
        )
        .unwrap(),
    };
    let crl = write_crl(&env, "int-b.crl", &pki::crl(&int_b, None, &[]));
    verify_with_crls(&env, &km, CLIENT, CLIENT, &[&crl]).code(0);
    std::fs::copy(&crl, km.join("int-b.crl")).unwrap();
    verify_with_crls(&env, &km, CLIENT, CLIENT, &[]).code(0);
    let v = verify_with_crls(&env, &km, CLIENT, INT_B, &[])
        .code(1)
        .json();
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("the CRL of \"CN=Second Intermediate Certificate\"")
            && reason.contains("Client Certificate")
            && reason.contains("CRL signing"),
        "{reason}"
    );
}
