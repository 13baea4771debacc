//! Issue #14, item 4: one flag vocabulary across subcommands. `--token` and
//! `--tcti` are shown exactly where the command opens that device; one
//! certificate is `--cert-id ID` everywhere (the positional id still works);
//! a key is `-k/--key URI`; `-o -` writes text to stdout; and `--token` /
//! `--tcti` before the subcommand, as scripts wrote them, still work.

mod common;

use std::collections::BTreeMap;

use common::{Env, Run, operator_token, softhsm_module};

/// Every command path (parents included) and whether its `--help` shows
/// `--token` and `--tcti`. A command missing here fails the walk below.
const DEVICES: &[(&str, bool, bool)] = &[
    ("key", false, false),
    ("key generate", true, false),
    ("key list", true, false),
    ("key show", true, false),
    ("key delete", true, false),
    ("key csr", true, false),
    ("cert", false, false),
    ("cert import", true, false),
    ("cert delete", true, false),
    ("cert list", true, false),
    ("cert show", true, false),
    ("cert verify", true, true),
    ("cert publish", true, false),
    ("cert export", true, false),
    ("sign", true, false),
    ("verify", true, true),
    ("publish", true, false),
    ("resign", true, true),
    ("audit", true, true),
    ("digest", false, false),
    ("anchors", false, false),
    ("anchors seal", true, true),
    ("anchors show", false, true),
    ("anchors add", true, true),
    ("anchors remove", false, true),
    ("anchors lock", false, true),
    ("anchors clear", false, true),
    ("anchors bundle", true, false),
    ("attest", false, true),
    ("attest verify", false, false),
    ("attest enroll", false, true),
    ("attest challenge", false, false),
    ("attest activate", false, true),
    ("attest confirm", false, false),
    ("tpm", false, false),
    ("tpm status", false, false),
    ("tpm stop", false, false),
    ("completions", false, false),
    ("man", false, false),
];

fn help(env: &Env, path: &str) -> String {
    let mut args: Vec<&str> = path.split_whitespace().collect();
    args.push("--help");
    env.run(&args).ok().stdout
}

/// The subcommands a `--help` lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

/// An option line of a `--help`: `      --token <URI>  …` or `  -k, --key <URI>`.
fn shows(help: &str, flag: &str) -> bool {
    help.lines().any(|l| {
        let l = l.trim_start();
        let l = l
            .split_once(", ")
            .filter(|(s, _)| s.len() == 2)
            .map_or(l, |(_, r)| r);
        l.strip_prefix(flag)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    })
}

#[test]
fn token_and_tcti_are_shown_exactly_on_the_commands_that_open_them() {
    let env = Env::new();
    let expected: BTreeMap<&str, (bool, bool)> =
        DEVICES.iter().map(|(c, t, p)| (*c, (*t, *p))).collect();
    let top = env.run(&["--help"]).ok().stdout;
    assert!(!shows(&top, "--token") && !shows(&top, "--tcti"), "{top}");
    let mut todo: Vec<String> = subcommands(&top);
    let mut seen = Vec::new();
    while let Some(path) = todo.pop() {
        let text = help(&env, &path);
        let want = expected
            .get(path.as_str())
            .unwrap_or_else(|| panic!("`{path}` is not in DEVICES: say which devices it opens"));
        assert_eq!(
            (shows(&text, "--token"), shows(&text, "--tcti")),
            *want,
            "`imgseal {path} --help` (--token, --tcti):\n{text}"
        );
        // Never the token's value (it may carry a PIN).
        assert!(!text.contains("pin-value="), "{text}");
        todo.extend(
            subcommands(&text)
                .into_iter()
                .map(|s| format!("{path} {s}")),
        );
        seen.push(path);
    }
    for (c, _, _) in DEVICES {
        assert!(seen.iter().any(|s| s == c), "`{c}` is no command any more");
    }
    // Hidden means refused after the subcommand, not silently ignored.
    let out = env.run(&["digest", "--tcti", "swtpm:port=1", "x"]).code(2);
    assert!(
        out.stderr.contains("unexpected argument '--tcti'"),
        "{}",
        out.stderr
    );
    let out = env
        .run(&["anchors", "show", "--token", "pkcs11:token=x"])
        .code(2);
    assert!(
        out.stderr.contains("unexpected argument '--token'"),
        "{}",
        out.stderr
    );
}

#[test]
fn every_command_naming_one_certificate_takes_cert_id() {
    for path in [
        "cert import",
        "cert delete",
        "cert show",
        "cert export",
        "cert publish",
        "sign",
        "publish",
        "resign",
        "anchors seal",
        "anchors add",
        "anchors remove",
        "anchors bundle",
    ] {
        let text = help(&Env::new(), path);
        assert!(
            shows(&text, "--cert-id"),
            "`{path}` lacks --cert-id:\n{text}"
        );
        assert!(!shows(&text, "--id"), "`{path}` still shows --id:\n{text}");
    }

    let env = Env::new();
    env.key_with_certificate("ecc-secp384r1", "signer", "signer-cert");
    let crt = env.path("signer.crt");
    let crt = crt.to_str().unwrap();
    // import: --cert-id, and the old --id still works.
    env.run(&["cert", "import", "--cert-id", "copy", crt]).ok();
    env.run(&["cert", "import", "--id", "old-form", crt]).ok();
    let show = |args: &[&str]| env.run(args).ok().stdout;
    let by_position = show(&["cert", "show", "copy"]);
    assert!(by_position.contains("CN=signer"), "{by_position}");
    assert_eq!(show(&["cert", "show", "--cert-id", "copy"]), by_position);
    assert!(show(&["cert", "show", "--cert-id", "old-form"]).contains("CN=signer"));
    // The flag is read, not just accepted: another id, another answer.
    let missing = env.run(&["cert", "show", "--cert-id", "nope"]).code(4);
    assert!(
        missing.stderr.contains("\"nope\" not found"),
        "{}",
        missing.stderr
    );
    // export: --cert-id equals the positional id.
    let pem = show(&["cert", "export", "copy"]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert_eq!(show(&["cert", "export", "--cert-id", "copy"]), pem);
    // Both, or neither: a usage error, nothing done.
    let both = env
        .run(&["cert", "show", "copy", "--cert-id", "signer-cert"])
        .code(2);
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );
    let neither = env.run(&["cert", "export"]).code(2);
    assert!(neither.stderr.contains("--cert-id"), "{}", neither.stderr);
    // delete: --cert-id removes that one only.
    env.run(&["cert", "delete", "--cert-id", "old-form", "--yes"])
        .ok();
    let list = show(&["--json", "cert", "list"]);
    assert!(
        !list.contains("old-form") && list.contains("\"copy\""),
        "{list}"
    );
    // publish --cert-id reads the local store before it needs a cloud.
    let out = env
        .run(&["cert", "publish", "--cert-id", "no-such-id"])
        .code(4);
    assert!(
        out.stderr.contains("\"no-such-id\" not found"),
        "{}",
        out.stderr
    );
    // anchors bundle: --cert-id signer-cert is the same bundle as the file
    // signer-cert.crt (sealed under its file name); no TPM is needed.
    let named = env.path("signer-cert.crt");
    std::fs::copy(crt, &named).unwrap();
    let (a, b) = (env.path("by-id.bundle"), env.path("by-file.bundle"));
    for (how, value, out) in [
        ("--cert-id", "signer-cert", &a),
        ("--cert", named.to_str().unwrap(), &b),
    ] {
        env.run(&[
            "anchors",
            "bundle",
            how,
            value,
            "--anchors-version",
            "3",
            "-o",
            out.to_str().unwrap(),
        ])
        .ok();
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn a_key_is_k_or_key_everywhere() {
    for path in [
        "key show",
        "key delete",
        "key csr",
        "sign",
        "publish",
        "resign",
    ] {
        let text = help(&Env::new(), path);
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("-k, --key <URI>")),
            "`{path}` lacks -k/--key URI:\n{text}"
        );
    }
    let env = Env::new();
    let uri = env.generate("ecc-secp384r1", "k1");
    let other = env.generate("ecc-secp384r1", "k2");
    let by_position = env.run(&["key", "show", &uri]).ok().stdout;
    assert!(by_position.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(
        env.run(&["key", "show", "--key", &uri]).ok().stdout,
        by_position
    );
    assert_eq!(
        env.run(&["key", "show", "-k", &uri]).ok().stdout,
        by_position
    );
    assert_ne!(
        env.run(&["key", "show", "-k", &other]).ok().stdout,
        by_position
    );
    let both = env.run(&["key", "show", &uri, "--key", &uri]).code(2);
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.stderr
    );
    env.run(&["key", "delete", "--key", &other, "--yes"]).ok();
    let list = env.run(&["key", "list"]).ok().stdout;
    assert!(
        list.contains("object=k1") && !list.contains("object=k2"),
        "{list}"
    );
}

#[test]
fn dash_out_writes_text_to_stdout() {
    let env = Env::new();
    let uri = env.key_with_certificate("ecc-secp384r1", "signer", "signer-cert");
    // key csr -o -: the request on stdout, no file named "-".
    let out = env
        .run(&["key", "csr", "-k", &uri, "--subject", "CN=x", "-o", "-"])
        .ok();
    assert!(
        out.stdout
            .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
            && out
                .stdout
                .trim_end()
                .ends_with("-----END CERTIFICATE REQUEST-----"),
        "{}",
        out.stdout
    );
    assert!(!env.path("-").exists());
    // With --json both would be stdout: refused before anything is signed.
    let out = env
        .run(&[
            "--json",
            "key",
            "csr",
            "-k",
            &uri,
            "--subject",
            "CN=x",
            "-o",
            "-",
        ])
        .code(2);
    assert!(
        out.stderr.contains("both write to stdout"),
        "{}",
        out.stderr
    );
    // cert export -o - is what cert export prints without --out.
    let plain = env.run(&["cert", "export", "signer-cert"]).ok().stdout;
    let dash = env
        .run(&["cert", "export", "signer-cert", "-o", "-"])
        .ok()
        .stdout;
    assert!(plain.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(dash, plain);
    assert!(!env.path("-").exists());
}

#[test]
fn token_and_tcti_before_the_subcommand_still_work() {
    let env = Env::new();
    let (_dir, conf) = operator_token("imgseal-flags-", "ops", "5678", "1234");
    let token = format!(
        "pkcs11:token=ops?module-path={}&pin-value=1234",
        softhsm_module()
    );
    let run = |env_token: Option<&str>, args: &[&str]| {
        let mut cmd = env.command();
        cmd.env("SOFTHSM2_CONF", &conf);
        if let Some(t) = env_token {
            cmd.env("IMGSEAL_TOKEN", t);
        }
        Run::from_output(cmd.args(args).output().unwrap())
    };
    // A key in the operator's token, made with --token after the subcommand.
    run(
        None,
        &[
            "key",
            "generate",
            "--type",
            "ecc-secp384r1",
            "--label",
            "ops-key",
            "--token",
            &token,
        ],
    )
    .ok();
    let after = run(None, &["key", "list", "--token", &token]).ok().stdout;
    assert!(after.contains("token=ops;object=ops-key"), "{after}");
    assert_eq!(
        run(None, &["--token", &token, "key", "list"]).ok().stdout,
        after
    );
    assert_eq!(run(Some(&token), &["key", "list"]).ok().stdout, after);
    // A --token before the subcommand beats $IMGSEAL_TOKEN, as when it was global…
    let wrong = "pkcs11:token=nowhere";
    assert_eq!(
        run(Some(wrong), &["--token", &token, "key", "list"])
            .ok()
            .stdout,
        after
    );
    // …and the subcommand's own --token beats both.
    assert_eq!(
        run(
            Some(wrong),
            &["--token", wrong, "key", "list", "--token", &token]
        )
        .ok()
        .stdout,
        after
    );
    let out = run(Some(&token), &["--token", wrong, "key", "list"]).code(4);
    assert!(out.stderr.contains("\"nowhere\""), "{}", out.stderr);
    // --tcti before the subcommand names the same TPM as after it.
    let dead = "swtpm:host=127.0.0.1,port=1";
    let before = env.run(&["--tcti", dead, "anchors", "show"]).code(5);
    let own = env.run(&["anchors", "show", "--tcti", dead]).code(5);
    assert!(before.stderr.contains(dead), "{}", before.stderr);
    assert_eq!(before.stderr, own.stderr);
    // attest's own --tcti, before `enroll`, reaches enroll.
    let out = env
        .run(&["attest", "--tcti", dead, "enroll", "-o", "e.json"])
        .code(5);
    assert!(out.stderr.contains(dead), "{}", out.stderr);
}
