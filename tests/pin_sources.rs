//! A wrong PIN names where it came from (the key URI's pin-value or
//! pin-source file, --token's, $IMGSEAL_PIN, the file $IMGSEAL_PIN_FILE
//! names, the embedded token's PIN file, the terminal prompt), so the user
//! knows what to fix; the PIN itself is never printed.

mod common;

use std::process::Command;

use common::*;

const WRONG: &str = "wrong-pin-7f3a91";

/// Exit 6, one line naming the token, the CKR code and `source`; no PIN.
#[track_caller]
fn names_source(run: Run, source: &str, right_pin: &str) {
    assert_eq!(run.code, 6, "stdout: {} stderr: {}", run.stdout, run.stderr);
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.contains("incorrect PIN for token \"imgseal\" (CKR_PIN_INCORRECT)"),
        "{line}"
    );
    assert!(
        line.contains(&format!("the PIN came from {source}")),
        "expected the PIN's source {source:?}: {line}"
    );
    for secret in [WRONG, right_pin] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "a PIN was printed: {}{}",
            run.stdout,
            run.stderr
        );
    }
}

#[test]
fn a_wrong_pin_names_the_uri_file_or_variable_it_came_from() {
    let env = Env::new();
    let uri = env.generate("ecc-secp384r1", "k");
    let pin = env.user_pin();
    let wrong_file = env.path("wrong.pin");
    std::fs::write(&wrong_file, format!("{WRONG}\n")).unwrap();
    let wrong_path = wrong_file.display().to_string();

    // pin-value= in the key URI.
    names_source(
        env.run(&["key", "show", &format!("{uri}?pin-value={WRONG}")]),
        "pin-value= in the key URI",
        &pin,
    );
    // pin-source= in the key URI.
    names_source(
        env.run(&[
            "key",
            "show",
            &format!("{uri}?pin-source=file:{wrong_path}"),
        ]),
        &format!("the pin-source file {wrong_path} named by the key URI"),
        &pin,
    );
    // pin-value= in --token, and in $IMGSEAL_TOKEN.
    let token = format!("pkcs11:token=imgseal?pin-value={WRONG}");
    names_source(
        env.run(&["--token", &token, "key", "list"]),
        "pin-value= in the --token URI (or $IMGSEAL_TOKEN)",
        &pin,
    );
    names_source(
        Run::from_output(
            env.command()
                .env("IMGSEAL_TOKEN", &token)
                .args(["key", "show", &uri])
                .output()
                .unwrap(),
        ),
        "pin-value= in the --token URI (or $IMGSEAL_TOKEN)",
        &pin,
    );
    // pin-source= in --token.
    names_source(
        env.run(&[
            "--token",
            &format!("pkcs11:token=imgseal?pin-source=file:{wrong_path}"),
            "key",
            "list",
        ]),
        &format!("the pin-source file {wrong_path} named by the --token URI"),
        &pin,
    );
    // $IMGSEAL_PIN and $IMGSEAL_PIN_FILE.
    names_source(
        Run::from_output(
            env.command()
                .env("IMGSEAL_PIN", WRONG)
                .args(["key", "list"])
                .output()
                .unwrap(),
        ),
        "$IMGSEAL_PIN",
        &pin,
    );
    names_source(
        Run::from_output(
            env.command()
                .env("IMGSEAL_PIN_FILE", &wrong_file)
                .args(["key", "list"])
                .output()
                .unwrap(),
        ),
        &format!("the file {wrong_path} named by $IMGSEAL_PIN_FILE"),
        &pin,
    );
    // The right PIN from the same places logs in: the message is about the PIN.
    env.run(&["key", "show", &format!("{uri}?pin-value={pin}")])
        .ok();
    // The embedded token's own PIN file, changed behind imgseal's back.
    let pin_file = env.home.path().join("user.pin");
    std::fs::write(&pin_file, format!("{WRONG}\n")).unwrap();
    names_source(
        env.run(&["key", "list"]),
        &format!("the embedded token's PIN file {}", pin_file.display()),
        &pin,
    );
    std::fs::write(&pin_file, &pin).unwrap();
    env.run(&["key", "list"]).ok();
}

/// A PIN typed at the prompt: `script` gives imgseal a terminal, and the
/// wrong PIN is typed on it.
#[test]
fn a_wrong_pin_typed_at_the_prompt_says_so() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no script(1) to give imgseal a terminal");
        return;
    }
    // An operator's token: the embedded one has a PIN file, never a prompt.
    let (_dir, conf) = operator_token("imgseal-pin-prompt-", "imgseal", "12345678", "1234");
    let env = Env::new();
    let token = format!("pkcs11:token=imgseal?module-path={}", softhsm_module());
    let inner = env.path("inner.sh");
    std::fs::write(
        &inner,
        format!(
            "{} --token '{token}' key list\necho \"exit=$?\"\n",
            common::bin()
        ),
    )
    .unwrap();
    // The PIN is typed a moment later, as a person would: what the
    // terminal shows after the prompt must not hold it (echo is off).
    let typed = format!(
        "(sleep 1; printf '%s\\n' '{WRONG}') | script -qec 'bash {}' /dev/null",
        inner.display()
    );
    let out = Command::new("bash")
        .args(["-c", &typed])
        .env("IMGSEAL_HOME", env.home.path())
        .env("SOFTHSM2_CONF", &conf)
        .env("TERM", "dumb")
        .env("TSS2_LOG", "all+none")
        .env_remove("IMGSEAL_PIN")
        .env_remove("IMGSEAL_PIN_FILE")
        .env_remove("IMGSEAL_TOKEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(text.contains("PIN for token \"imgseal\": "), "{text}");
    assert!(
        text.contains("the PIN came from the terminal prompt"),
        "{text}"
    );
    assert!(text.contains("exit=6"), "{text}");
    let after_prompt = &text[text.find("PIN for token").unwrap()..];
    assert!(
        !after_prompt.contains(WRONG),
        "the typed PIN was echoed: {text}"
    );
}
