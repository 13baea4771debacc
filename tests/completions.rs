//! Shell completions and man pages, generated from the clap definitions:
//! each shell parses its script and completes a real subcommand, and groff
//! renders every page.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn generated(args: &[&str]) -> String {
    let env = Env::new();
    let out = env.run(args).ok();
    assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
    out.stdout
}

/// Runs `shell args…` with `script` saved to a file named `name`; its stdout.
fn shell(program: &str, args: &[&str], script: &str, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, script).unwrap();
    let out = Command::new(program)
        .args(args.iter().map(|a| a.replace("{}", path.to_str().unwrap())))
        .env("fpath_dir", dir.path())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (scripts/test.sh installs it): {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let script = generated(&["completions", "bash"]);
    shell("bash", &["-n", "{}"], &script, "imgseal.bash");
    // Ask the completion function what `imgseal ce<TAB>` and
    // `imgseal verify --pol<TAB>` offer, as bash would.
    let probe = r#"source {}
complete -p imgseal >/dev/null || exit 3
COMP_WORDS=(imgseal ce); COMP_CWORD=1; COMP_LINE="imgseal ce"; COMP_POINT=${#COMP_LINE}
_imgseal imgseal ce imgseal; echo "words: ${COMPREPLY[*]}"
COMP_WORDS=(imgseal verify --pol); COMP_CWORD=2; COMP_LINE="imgseal verify --pol"; COMP_POINT=${#COMP_LINE}
_imgseal imgseal --pol verify; echo "flags: ${COMPREPLY[*]}""#;
    let out = shell("bash", &["-c", probe], &script, "imgseal.bash");
    assert!(out.contains("words: cert"), "{out}");
    assert!(out.contains("flags: --policy"), "{out}");
}

#[test]
fn zsh_and_fish_parse_their_scripts() {
    let zsh = generated(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef imgseal"), "{zsh}");
    shell("zsh", &["-n", "{}"], &zsh, "_imgseal");
    let fish = generated(&["completions", "fish"]);
    shell("fish", &["--no-execute", "{}"], &fish, "imgseal.fish");
    // fish itself lists the completions for `imgseal cert `.
    let out = shell(
        "fish",
        &["-c", "source {}; complete -C 'imgseal cert '"],
        &fish,
        "imgseal.fish",
    );
    assert!(out.lines().any(|l| l.starts_with("publish")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("verify")), "{out}");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let env = Env::new();
    let out = env.run(&["completions", "tcsh"]).code(2);
    assert!(out.stderr.contains("bash"), "{}", out.stderr);
}

/// groff's complaints about `page`, except that a long flag list cannot be
/// broken (typesetting, not a defect of the page).
fn groff_warnings(page: &str) -> Vec<String> {
    let mut child = Command::new("groff")
        .args(["-k", "-man", "-T", "utf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff runs (scripts/test.sh installs groff-base)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.contains("can't break line"))
        .map(str::to_string)
        .collect()
}

#[test]
fn man_pages_render_for_every_command() {
    let page = generated(&["man"]);
    assert!(page.contains(".TH imgseal 1"), "{page}");
    assert_eq!(groff_warnings(&page), Vec::<String>::new());

    let env = Env::new();
    let dir = env.path("man");
    env.run(&["man", "--out-dir", dir.to_str().unwrap()]).ok();
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for expected in [
        "imgseal.1",
        "imgseal-verify.1",
        "imgseal-cert-publish.1",
        "imgseal-anchors-seal.1",
        "imgseal-completions.1",
    ] {
        assert!(
            pages.iter().any(|p| p == expected),
            "{expected} missing: {pages:?}"
        );
    }
    assert!(
        !pages.iter().any(|p| p.starts_with('.')),
        "a staging file was left behind: {pages:?}"
    );
    for name in &pages {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(groff_warnings(&text), Vec::<String>::new(), "{name}");
    }
    // man(1) finds and renders a page by path, with the flags clap knows.
    let out = Command::new("man")
        .arg("-l")
        .arg(dir.join("imgseal-verify.1"))
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("--trusted-cert-id"), "{text}");
}
