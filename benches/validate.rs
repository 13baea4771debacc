//! Certificate validation cost: the docs' 4-certificate chain under both
//! policies (CPU time per validation, parsing excluded), and every in-scope
//! PKITS case under strict. Run: `cargo bench --bench validate`.
//! Medians of several rounds; the machine is noisy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use imgseal::validate::nova::NovaPolicy;
use imgseal::validate::strict::StrictPolicy;
use imgseal::validate::{StrictOptions, TrustedCertificate, ValidationInput, Validator};
use imgseal::x509::Certificate;
use openssl::x509::X509Crl;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sh(dir: &Path, args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn docs_chain(dir: &Path) -> Vec<Certificate> {
    let conf = "[req]\nprompt=no\ndistinguished_name=dn\nx509_extensions=ca\n[dn]\nCN=Root CA\n[ca]\nkeyUsage=keyCertSign,digitalSignature\nbasicConstraints=CA:TRUE,pathlen:2\n[int]\nkeyUsage=keyCertSign,digitalSignature\nbasicConstraints=CA:TRUE,pathlen:1\n[client]\nkeyUsage=keyCertSign,digitalSignature\nbasicConstraints=CA:FALSE\n";
    std::fs::write(dir.join("ca.conf"), conf).unwrap();
    sh(
        dir,
        &[
            "openssl", "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-config", "ca.conf",
            "-keyout", "k0", "-out", "c0",
        ],
    );
    for (i, ext) in [(1, "int"), (2, "int"), (3, "client")] {
        sh(
            dir,
            &[
                "openssl",
                "req",
                "-nodes",
                "-newkey",
                "rsa:2048",
                "-subj",
                &format!("/CN=level {i}"),
                "-keyout",
                &format!("k{i}"),
                "-out",
                &format!("r{i}"),
            ],
        );
        sh(
            dir,
            &[
                "openssl",
                "x509",
                "-req",
                "-in",
                &format!("r{i}"),
                "-CA",
                &format!("c{}", i - 1),
                "-CAkey",
                &format!("k{}", i - 1),
                "-CAcreateserial",
                "-extfile",
                "ca.conf",
                "-extensions",
                ext,
                "-days",
                "30",
                "-out",
                &format!("c{i}"),
            ],
        );
    }
    (0..4)
        .map(|i| {
            Certificate::parse(&std::fs::read(dir.join(format!("c{i}"))).unwrap(), "c").unwrap()
        })
        .collect()
}

fn cpu_time() -> Duration {
    let mut usage: libc_rusage = unsafe { std::mem::zeroed() };
    unsafe { getrusage(0, &mut usage) };
    Duration::from_micros(
        (usage.ru_utime.tv_sec * 1_000_000
            + usage.ru_utime.tv_usec
            + usage.ru_stime.tv_sec * 1_000_000
            + usage.ru_stime.tv_usec) as u64,
    )
}

#[repr(C)]
struct Timeval {
    tv_sec: i64,
    tv_usec: i64,
}
#[repr(C)]
struct libc_rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    rest: [i64; 14],
}
unsafe extern "C" {
    fn getrusage(who: i32, usage: *mut libc_rusage) -> i32;
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let chain = docs_chain(dir.path());
    let trusted: Vec<TrustedCertificate> = ["ca", "a", "b"]
        .iter()
        .zip(&chain[..3])
        .map(|(id, c)| TrustedCertificate {
            id: id.to_string(),
            certificate: Some(c.clone()),
        })
        .collect();
    let at = time_now();
    let input = ValidationInput {
        leaf_id: "client",
        leaf: &chain[3],
        trusted: &trusted,
        intermediates: &[],
        crls: &[],
        at,
        options: StrictOptions::default(),
    };
    println!("docs' 4-certificate chain, CPU time per validation (median of 9 rounds of 200):");
    for (name, policy) in [
        ("nova", &NovaPolicy as &dyn Validator),
        ("strict", &StrictPolicy as &dyn Validator),
    ] {
        assert!(policy.validate(&input).unwrap().valid);
        let rounds: Vec<Duration> = (0..9)
            .map(|_| {
                let start = cpu_time();
                for _ in 0..200 {
                    std::hint::black_box(policy.validate(&input).unwrap());
                }
                (cpu_time() - start) / 200
            })
            .collect();
        println!("  {name:<7} {:>8.1} µs", median(rounds).as_secs_f64() * 1e6);
    }
    // The peer: openssl verify (a whole process, start-up included) on the same chain.
    std::fs::write(
        dir.path().join("trusted.pem"),
        [&chain[0], &chain[1], &chain[2]]
            .iter()
            .map(|c| c.pem())
            .collect::<String>(),
    )
    .unwrap();
    let runs: Vec<Duration> = (0..9)
        .map(|_| {
            let t = Instant::now();
            sh(
                dir.path(),
                &[
                    "openssl",
                    "verify",
                    "-partial_chain",
                    "-CAfile",
                    "trusted.pem",
                    "c3",
                ],
            );
            t.elapsed()
        })
        .collect();
    println!(
        "  peer: `openssl verify` process, wall {:>8.1} µs (start-up included)",
        median(runs).as_secs_f64() * 1e6
    );

    let pkits = [
        std::env::var_os("IMGSEAL_PKITS_DIR").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pkits")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.join("certs").exists());
    let Some(pkits) = pkits else {
        println!("PKITS data not found: skipping the PKITS timing");
        return;
    };
    let load = |p: &Path| Certificate::from_der(&std::fs::read(p).unwrap(), "p").unwrap();
    let mut ees = Vec::new();
    let mut inter = Vec::new();
    for e in std::fs::read_dir(pkits.join("certs")).unwrap() {
        let p = e.unwrap().path();
        let n = p.file_stem().unwrap().to_str().unwrap().to_string();
        if n.starts_with("Valid") || n.starts_with("Invalid") {
            ees.push((n, load(&p)));
        } else if n != "TrustAnchorRootCertificate" && !n.ends_with("EE") {
            inter.push((n, load(&p)));
        }
    }
    let crls: Vec<X509Crl> = std::fs::read_dir(pkits.join("crls"))
        .unwrap()
        .map(|e| X509Crl::from_der(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    let anchor = [TrustedCertificate {
        id: "ta".into(),
        certificate: Some(load(&pkits.join("certs/TrustAnchorRootCertificate.crt"))),
    }];
    let options = StrictOptions {
        min_rsa_bits: 1024,
        allow_sha1: true,
        max_depth: 32,
        allow_small_rsa_exponent: false,
    };
    let rounds: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for (n, ee) in &ees {
                let input = ValidationInput {
                    leaf_id: n,
                    leaf: ee,
                    trusted: &anchor,
                    intermediates: &inter,
                    crls: &crls,
                    at: 1_577_836_800,
                    options,
                };
                std::hint::black_box(StrictPolicy.validate(&input).unwrap());
            }
            t.elapsed()
        })
        .collect();
    if std::env::var_os("BENCH_SLOWEST").is_some() {
        let mut per: Vec<(Duration, &str)> = ees
            .iter()
            .map(|(n, ee)| {
                let input = ValidationInput {
                    leaf_id: n,
                    leaf: ee,
                    trusted: &anchor,
                    intermediates: &inter,
                    crls: &crls,
                    at: 1_577_836_800,
                    options,
                };
                let t = Instant::now();
                std::hint::black_box(StrictPolicy.validate(&input).unwrap());
                (t.elapsed(), n.as_str())
            })
            .collect();
        per.sort();
        for (d, n) in per.iter().rev().take(8) {
            println!("  slow: {n} {:.1} ms", d.as_secs_f64() * 1e3);
        }
        println!(
            "  median case: {:.2} ms",
            per[per.len() / 2].0.as_secs_f64() * 1e3
        );
    }
    println!(
        "PKITS: all {} end-entity cases under strict, wall time (median of 5): {:.3} s",
        ees.len(),
        median(rounds).as_secs_f64()
    );
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
