//! "Any PKCS#11 module", as far as these tests prove it: SoftHSM2, kryoptic,
//! tpm2-pkcs11 over swtpm, openCryptoki's soft token and the p11-kit proxy
//! (SoftHSM and tpm2-pkcs11 behind it), each real (tests/common/modules.rs).
//! Every key type and hash a token offers signs, with keys made by imgseal
//! and by pkcs11-tool, and `openssl dgst -verify` checks each signature;
//! what a token does not offer is refused with "token X cannot … (it offers:
//! …)", never a panic or a CKR code alone. The README's module table is this
//! file's matrix.

mod common;

use std::collections::BTreeSet;

use common::modules::*;
use common::*;

const KINDS: [&str; 6] = [
    "rsa-pss-2048",
    "rsa-pss-3072",
    "ecc-secp384r1",
    "ecc-secp521r1",
    "ecc-sect409k1",
    "dsa-2048",
];

#[derive(Debug, Default)]
struct Matrix {
    signed: BTreeSet<(String, String)>,
    refused: BTreeSet<(String, String)>,
}

/// A refusal as item 4 of the issue wants it: the token named, what it cannot do, what it offers.
#[track_caller]
fn assert_refusal(run: &Run, what: &str) {
    assert_eq!(run.code, 2, "{what}: {} {}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot") && run.stderr.contains("(it offers:"),
        "{what}: {}",
        run.stderr
    );
    // One error line (a --no-cert-check warning may precede it), no panic.
    let errors = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("imgseal:"))
        .count();
    assert_eq!(errors, 1, "{what}: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
}

/// Signs `image` with `key` for every hash and checks each signature with
/// the openssl CLI against the public key `key show` prints.
fn sign_every_hash(t: &ModuleToken, env: &Env, key: &str, kind: &str, m: &mut Matrix) {
    let key = format!("{key}&pin-source={}", t.pin_file().display());
    let image = env.image("image.raw", 300_000);
    let public = env.path(&format!("{kind}.pub.pem"));
    let shown = t.run_plain(env, &["key", "show", &key]).ok();
    std::fs::write(&public, &shown.stdout).unwrap();
    for hash in HASHES {
        let run = t.run_plain(
            env,
            &[
                "--json",
                "sign",
                "--key",
                &key,
                "--cert-id",
                "unused",
                "--no-cert-check",
                "--hash",
                hash,
                image.to_str().unwrap(),
            ],
        );
        if run.code != 0 {
            assert_refusal(&run, &format!("{} {kind} {hash}", t.name));
            m.refused.insert((kind.into(), hash.into()));
            continue;
        }
        let props = run.json();
        let sig = env.path("sig.der");
        std::fs::write(&sig, decode_b64(props["img_signature"].as_str().unwrap())).unwrap();
        let mut args = vec![
            "dgst",
            dgst_flag(hash),
            "-verify",
            public.to_str().unwrap(),
            "-signature",
            sig.to_str().unwrap(),
        ];
        if kind.starts_with("rsa") {
            // Glance and cursive detect the salt length; so does this.
            args.extend([
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:-2",
            ]);
        }
        args.push(image.to_str().unwrap());
        let verified = openssl(&args);
        assert!(
            verified.code == 0 && verified.stdout.contains("Verified OK"),
            "{} {kind} {hash}: openssl: {} {}",
            t.name,
            verified.stdout,
            verified.stderr
        );
        m.signed.insert((kind.into(), hash.into()));
    }
}

/// Generates each key type with imgseal and signs with every hash.
fn matrix(t: &ModuleToken, env: &Env, tag: &str) -> Matrix {
    let mut m = Matrix::default();
    for kind in KINDS {
        let label = format!("{tag}-{kind}-{:08x}", rand::random::<u32>());
        let run = t.run(
            env,
            &[
                "key",
                "generate",
                "--type",
                kind,
                "--label",
                &label,
                "--allow-weaker-key-attributes",
            ],
        );
        if run.code == 3 && t.name == "tpm2-pkcs11" && kind == "ecc-secp521r1" {
            // tpm2-pkcs11 1.9.0 stores a P-521 CKA_EC_POINT imgseal cannot
            // read: the key is made, and named with its module.
            assert!(
                run.stderr.contains(&label) && run.stderr.contains("tpm2-pkcs11"),
                "{}",
                run.stderr
            );
            m.refused.insert((kind.into(), "unreadable".into()));
            continue;
        }
        if run.code != 0 {
            assert_refusal(&run, &format!("{} generating {kind}", t.name));
            m.refused.insert((kind.into(), "keygen".into()));
            continue;
        }
        let uri = run.stdout.trim().to_string();
        sign_every_hash(t, env, &uri, kind, &mut m);
    }
    eprintln!("{}: signed {:?}", t.name, m.signed);
    eprintln!("{}: refused {:?}", t.name, m.refused);
    m
}

/// Keys made by pkcs11-tool, as an operator makes them, sign and verify too.
fn pkcs11_tool_keys(t: &ModuleToken, env: &Env, tag: &str, m: &mut Matrix, ec: bool) {
    for (key_type, kind, id) in [
        ("rsa:2048", "rsa-pss-2048", "a1"),
        ("EC:secp384r1", "ecc-secp384r1", "a2"),
    ] {
        if kind.starts_with("ecc") && !ec {
            continue;
        }
        let label = format!("{tag}-tool-{kind}-{:06x}", rand::random::<u32>() >> 8);
        t.pkcs11_tool_key(key_type, &label, id).ok();
        let key = format!(
            "pkcs11:token={};object={label}?module-path={}",
            t.label,
            t.module.display()
        );
        let mut tool = Matrix::default();
        sign_every_hash(t, env, &key, kind, &mut tool);
        // An operator's key signs what an imgseal key of its type signs.
        let mine: BTreeSet<_> = m.signed.iter().filter(|(k, _)| k == kind).collect();
        let theirs: BTreeSet<_> = tool.signed.iter().collect();
        assert_eq!(mine, theirs, "{}: pkcs11-tool {key_type} key", t.name);
    }
}

fn pairs(kind: &str, hashes: &[&str]) -> Vec<(String, String)> {
    hashes
        .iter()
        .map(|h| (kind.to_string(), h.to_string()))
        .collect()
}

#[track_caller]
fn assert_signed(m: &Matrix, want: &[(String, String)]) {
    for w in want {
        assert!(m.signed.contains(w), "{w:?} did not sign: {m:?}");
    }
}

#[test]
fn softhsm_signs_every_key_type_and_hash() {
    let env = Env::new();
    let t = ModuleToken::softhsm("soft-matrix");
    let mut m = matrix(&t, &env, "m");
    for kind in KINDS {
        assert_signed(&m, &pairs(kind, &HASHES));
    }
    pkcs11_tool_keys(&t, &env, "m", &mut m, true);
}

#[test]
fn kryoptic_signs_rsa_and_prime_curves_and_names_what_it_lacks() {
    let env = Env::new();
    let t = ModuleToken::kryoptic("kry-matrix");
    let mut m = matrix(&t, &env, "m");
    for kind in [
        "rsa-pss-2048",
        "rsa-pss-3072",
        "ecc-secp384r1",
        "ecc-secp521r1",
    ] {
        assert_signed(&m, &pairs(kind, &HASHES));
    }
    // No DSA and no binary curves: asked, not tried.
    assert!(m.refused.contains(&("dsa-2048".into(), "keygen".into())));
    assert!(
        m.refused
            .contains(&("ecc-sect409k1".into(), "keygen".into()))
    );
    pkcs11_tool_keys(&t, &env, "m", &mut m, true);
}

#[test]
fn tpm2_pkcs11_signs_what_the_tpm_offers() {
    let env = Env::new();
    let t = ModuleToken::tpm2("tpm-matrix");
    let m = matrix(&t, &env, "m");
    assert_signed(
        &m,
        &pairs("ecc-secp384r1", &["SHA-256", "SHA-384", "SHA-512"]),
    );
    // RSA-PSS with a salt of the hash's length: the one a TPM makes.
    for kind in ["rsa-pss-2048", "rsa-pss-3072"] {
        assert_signed(&m, &pairs(kind, &["SHA-256", "SHA-384", "SHA-512"]));
    }
    // Its P-521 key's public point is mis-encoded: listed as unusable, and
    // the other keys still list and sign.
    if m.refused
        .contains(&("ecc-secp521r1".into(), "unreadable".into()))
    {
        let listed = t.run(&env, &["key", "list"]).ok();
        assert!(
            listed
                .stdout
                .lines()
                .any(|l| l.starts_with("unusable") && l.contains("ecc-secp521r1")),
            "{}",
            listed.stdout
        );
        assert!(
            listed.stdout.contains("m-ecc-secp384r1"),
            "{}",
            listed.stdout
        );
    }
    // The TPM has no SHA-224: refused before signing, not CKR_GENERAL_ERROR.
    assert!(
        m.refused
            .contains(&("ecc-secp384r1".into(), "SHA-224".into()))
    );
    assert!(m.refused.contains(&("dsa-2048".into(), "keygen".into())));
}

#[test]
fn opencryptoki_soft_token_works_despite_its_clock_and_old_attributes() {
    let env = Env::new();
    let t = ModuleToken::opencryptoki();
    // Its utcTime "hh:mm:ss        " once failed every command.
    t.run(&env, &["key", "list"]).ok();
    let tag = format!("ock{:06x}", rand::random::<u32>() >> 8);
    let mut m = matrix(&t, &env, &tag);
    assert_signed(
        &m,
        &pairs("rsa-pss-2048", &["SHA-256", "SHA-384", "SHA-512"]),
    );
    assert!(
        m.refused
            .contains(&("rsa-pss-2048".into(), "SHA-224".into()))
    );
    assert!(
        m.refused
            .contains(&("ecc-secp384r1".into(), "keygen".into()))
    );
    pkcs11_tool_keys(&t, &env, &tag, &mut m, false);
    // Without --allow-weaker-key-attributes: no key, and what it would lack.
    let refused = t.run(
        &env,
        &[
            "key",
            "generate",
            "--type",
            "rsa-pss-2048",
            "--label",
            &format!("{tag}-strict"),
        ],
    );
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("CKA_ALLOWED_MECHANISMS"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--allow-weaker-key-attributes"),
        "{}",
        refused.stderr
    );
    let listed = t.run(&env, &["key", "list"]).ok();
    assert!(
        !listed.stdout.contains(&format!("{tag}-strict")),
        "{}",
        listed.stdout
    );
}

#[test]
fn proxy_in_front_of_softhsm_and_tpm2_pkcs11() {
    let env = Env::new();
    let t = ModuleToken::proxy("behind-proxy", "tpm-behind-proxy");
    // DSA once crashed imgseal behind the proxy (dlsym of C_GetAttributeValue).
    let m = matrix(&t, &env, "p");
    for kind in KINDS {
        assert_signed(&m, &pairs(kind, &HASHES));
    }
    t.run(&env, &["key", "list"]).ok();
    // The TPM's token through the same proxy.
    let tpm_token = t
        .uri("")
        .replace("token=behind-proxy", "token=tpm-behind-proxy");
    let generated = t
        .run_token(
            &env,
            &tpm_token,
            &[
                "key",
                "generate",
                "--type",
                "ecc-secp384r1",
                "--label",
                "t1",
                "--allow-weaker-key-attributes",
            ],
        )
        .ok();
    let mut tm = Matrix::default();
    sign_every_hash(&t, &env, generated.stdout.trim(), "ecc-secp384r1", &mut tm);
    assert_signed(
        &tm,
        &pairs("ecc-secp384r1", &["SHA-256", "SHA-384", "SHA-512"]),
    );
}

#[test]
fn key_list_shows_a_key_it_cannot_use_and_the_others_still_sign() {
    let env = Env::new();
    let t = ModuleToken::softhsm("mixed");
    t.pkcs11_tool_key("EC:edwards25519", "ed-key", "ed").ok();
    let good = t
        .run(
            &env,
            &[
                "key",
                "generate",
                "--type",
                "ecc-secp384r1",
                "--label",
                "good",
            ],
        )
        .ok()
        .stdout
        .trim()
        .to_string();
    let listed = t.run(&env, &["key", "list"]).ok();
    let ed = listed
        .stdout
        .lines()
        .find(|l| l.contains("object=ed-key"))
        .unwrap_or_else(|| panic!("{}", listed.stdout));
    assert!(
        ed.starts_with("unusable") && ed.contains("does not sign with"),
        "{ed}"
    );
    assert!(listed.stdout.contains("object=good"), "{}", listed.stdout);
    let json = t.run(&env, &["--json", "key", "list"]).ok().json();
    let unusable: Vec<_> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k.get("unusable").is_some())
        .collect();
    assert_eq!(unusable.len(), 1, "{json}");
    let mut m = Matrix::default();
    sign_every_hash(&t, &env, &good, "ecc-secp384r1", &mut m);
    assert_signed(&m, &pairs("ecc-secp384r1", &HASHES));
}

/// Every RFC 7512 attribute must match; several matching tokens are a usage error.
#[test]
fn uri_selection_across_two_tokens_in_one_module() {
    let env = Env::new();
    let t = ModuleToken::softhsm("first");
    // A second token in the same SoftHSM token directory.
    let conf = t
        .env
        .iter()
        .find(|(k, _)| k == "SOFTHSM2_CONF")
        .unwrap()
        .1
        .clone();
    let out = std::process::Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "second",
            "--so-pin",
            SO_PIN,
            "--pin",
            PIN,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let base = |path: &str| {
        format!(
            "pkcs11:{path}?module-path={}&pin-source={}",
            t.module.display(),
            t.pin_file().display()
        )
    };
    let list = |path: &str| t.run_token(&env, &base(path), &["--json", "key", "list"]);

    let ambiguous = list("");
    assert_eq!(ambiguous.code, 2, "{}", ambiguous.stderr);
    assert!(
        ambiguous
            .stderr
            .contains("more than one PKCS#11 token matches")
            && ambiguous.stderr.contains("token=\"first\"")
            && ambiguous.stderr.contains("token=\"second\""),
        "{}",
        ambiguous.stderr
    );
    list("token=first").ok();
    list("token=second").ok();
    // Each attribute, matching and not.
    for (matching, other) in [
        (
            "library-manufacturer=SoftHSM",
            "library-manufacturer=p11-kit",
        ),
        (
            "library-description=Implementation%20of%20PKCS11",
            "library-description=Other",
        ),
        ("library-version=2.6", "library-version=9"),
        ("manufacturer=SoftHSM%20project", "manufacturer=Other"),
        ("model=SoftHSM%20v2", "model=SoftHSM"),
        (
            "slot-manufacturer=SoftHSM%20project",
            "slot-manufacturer=Other",
        ),
    ] {
        list(&format!("token=first;{matching}")).ok();
        let miss = list(&format!("token=first;{other}"));
        assert_eq!(miss.code, 4, "{other}: {}", miss.stderr);
        assert!(
            miss.stderr.contains("no PKCS#11 token matches"),
            "{}",
            miss.stderr
        );
        // Without token=, the matching attribute alone leaves both: ambiguous.
        assert_eq!(list(matching).code, 2, "{matching}");
    }
    // slot-description: SoftHSM's "SoftHSM slot ID 0x…", as pkcs11-tool shows it.
    let slots = t.pkcs11_tool(&["-L"]).ok().stdout;
    let first_slot = slots
        .lines()
        .find_map(|l| {
            let (_, desc) = l.split_once("): ")?;
            desc.starts_with("SoftHSM slot ID")
                .then(|| desc.trim().to_string())
        })
        .unwrap();
    let enc = first_slot.replace(' ', "%20");
    assert_eq!(
        list(&format!("slot-description={enc}")).code,
        0,
        "{first_slot}"
    );
    assert_eq!(list("token=first;slot-description=nope").code, 4);
}

#[test]
fn uri_selection_across_modules_behind_the_proxy() {
    let env = Env::new();
    let t = ModuleToken::proxy("soft-side", "tpm-side");
    let base = |path: &str| {
        format!(
            "pkcs11:{path}?module-path={}&pin-source={}",
            t.module.display(),
            t.pin_file().display()
        )
    };
    let list = |path: &str| t.run_token(&env, &base(path), &["key", "list"]);
    let ambiguous = list("");
    assert_eq!(ambiguous.code, 2, "{}", ambiguous.stderr);
    assert!(ambiguous.stderr.contains("soft-side") && ambiguous.stderr.contains("tpm-side"));
    list("token=soft-side").ok();
    list("token=tpm-side").ok();
    list("library-description=PKCS%2311%20Kit%20Proxy%20Module;token=tpm-side").ok();
    // The library behind the proxy is the proxy: SoftHSM's description does not match.
    assert_eq!(list("library-manufacturer=SoftHSM;token=soft-side").code, 4);
    list("manufacturer=SoftHSM%20project").ok();
    list("model=SoftHSM%20v2").ok();
    assert_eq!(list("model=SoftHSM%20v2;token=tpm-side").code, 4);
}

/// A module that cannot start, or starts without its tokens, says where to look.
#[test]
fn a_module_without_its_configuration_says_what_it_reads() {
    let env = Env::new();
    let mut t = ModuleToken::kryoptic("kry-noconf");
    // A configuration file that is not there: kryoptic starts with no slot.
    for (k, v) in t.env.iter_mut() {
        if k == "KRYOPTIC_CONF" {
            *v = "/nonexistent/token.conf".into();
        }
    }
    let run = t.run(&env, &["key", "list"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("shows no initialised token") && run.stderr.contains("KRYOPTIC_CONF"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    // No configuration at all: C_Initialize fails.
    t.env.retain(|(k, _)| k != "KRYOPTIC_CONF");
    let empty = tempfile::tempdir().unwrap();
    t.env.push(("XDG_CONFIG_HOME".into(), empty.path().into()));
    let run = t.run(&env, &["key", "list"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.stderr.contains("would not start") && run.stderr.contains("KRYOPTIC_CONF"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
}

/// Wrong PINs on a TPM-backed token trip the TPM's dictionary-attack
/// lockout: the message says to wait or clear it, not to call the security
/// officer, and the right PIN then is refused the same way.
#[test]
fn tpm_lockout_says_wait_or_clear_it() {
    let env = Env::new();
    let t = ModuleToken::tpm2("tpm-lockout");
    let bad = t.dir.path().join("bad-pin");
    std::fs::write(&bad, "11111111").unwrap();
    let token = |pin: &std::path::Path| {
        format!(
            "pkcs11:token=tpm-lockout?module-path={}&pin-source={}",
            t.module.display(),
            pin.display()
        )
    };
    let mut locked = None;
    for _ in 0..6 {
        let run = t.run_token(&env, &token(&bad), &["key", "list"]);
        assert_eq!(run.code, 6, "{}", run.stderr);
        if run.stderr.contains("CKR_PIN_LOCKED") {
            locked = Some(run);
            break;
        }
        assert!(run.stderr.contains("CKR_PIN_INCORRECT"), "{}", run.stderr);
    }
    let locked = locked.expect("the TPM locks out after wrong PINs");
    assert!(
        locked.stderr.contains("dictionary-attack lockout")
            && locked
                .stderr
                .contains("tpm2_dictionarylockout --clear-lockout")
            && !locked.stderr.contains("security officer"),
        "{}",
        locked.stderr
    );
    let right = t.run_token(&env, &token(&t.pin_file()), &["key", "list"]);
    assert_eq!(right.code, 6, "{}", right.stderr);
    assert!(
        right.stderr.contains("dictionary-attack lockout"),
        "{}",
        right.stderr
    );
}

/// `--pss-salt`: the maximum salt by default, the hash's length on request;
/// openssl checks each with that exact salt length.
#[test]
fn pss_salt_is_the_operators_choice() {
    let env = Env::new();
    let t = ModuleToken::softhsm("salt");
    let key = t
        .run(
            &env,
            &["key", "generate", "--type", "rsa-pss-2048", "--label", "r"],
        )
        .ok()
        .stdout
        .trim()
        .to_string();
    let key = format!("{key}&pin-source={}", t.pin_file().display());
    let public = env.path("r.pem");
    std::fs::write(
        &public,
        t.run_plain(&env, &["key", "show", &key]).ok().stdout,
    )
    .unwrap();
    let image = env.image("i.raw", 50_000);
    for (choice, exact, other) in [("max", "max", "digest"), ("digest", "digest", "max")] {
        let props = t
            .run_plain(
                &env,
                &[
                    "--json",
                    "sign",
                    "--key",
                    &key,
                    "--cert-id",
                    "u",
                    "--no-cert-check",
                    "--pss-salt",
                    choice,
                    image.to_str().unwrap(),
                ],
            )
            .ok()
            .json();
        let sig = env.path("s.bin");
        std::fs::write(&sig, decode_b64(props["img_signature"].as_str().unwrap())).unwrap();
        let check = |saltlen: &str| {
            openssl(&[
                "dgst",
                "-sha256",
                "-verify",
                public.to_str().unwrap(),
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                &format!("rsa_pss_saltlen:{saltlen}"),
                "-signature",
                sig.to_str().unwrap(),
                image.to_str().unwrap(),
            ])
        };
        assert_eq!(check(exact).code, 0, "--pss-salt {choice}");
        assert_ne!(
            check(other).code,
            0,
            "--pss-salt {choice} verified as {other}"
        );
    }
}
