//! What every command prints, in one place.
//!
//! A command builds a [`Report`]: a serialisable value and a human renderer.
//! [`emit`] writes it as text for people or, with `--json`, as one compact
//! JSON object on one line, and adds the envelope of a check (`verdict`,
//! `exit_code`) whose exit code it also returns. Failures get the same
//! envelope from [`error_json`]: whether a command stops on an error
//! (src/main.rs) or one image of several fails ([`emit_item_error`]), a
//! script reads the same fields. The shape is documented in
//! docs/exit-codes.md.

use std::io::{self, Write};

use imgseal::error::{Error, ErrorKind};
use serde::Serialize;
use serde_json::{Value, json};

use super::Context;

/// A check's outcome: the word scripts read in `verdict`, and its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub word: &'static str,
    pub exit_code: i32,
}

impl Verdict {
    pub(crate) const VALID: Verdict = Verdict {
        word: "valid",
        exit_code: 0,
    };

    pub(crate) fn invalid() -> Self {
        Verdict {
            word: "invalid",
            exit_code: ErrorKind::Invalid.exit_code(),
        }
    }

    pub(crate) fn of(valid: bool) -> Self {
        if valid {
            Verdict::VALID
        } else {
            Verdict::invalid()
        }
    }

    /// A check with words of its own (`anchors show`: intact or refused).
    pub(crate) fn named(word: &'static str, exit_code: i32) -> Self {
        Verdict { word, exit_code }
    }
}

/// What a command produced: its `--json` object (the `Serialize` impl, one
/// object) and its text for people.
pub(crate) trait Report: Serialize {
    /// The text for people: the verdict line first, then what it rests on.
    fn render(&self, out: &mut dyn Write) -> io::Result<()>;

    /// Set for a check: the JSON object gets `verdict` and `exit_code`, and
    /// the command exits with that code.
    fn verdict(&self) -> Option<Verdict> {
        None
    }

    /// The process's exit code: the verdict's, else 0.
    fn exit_code(&self) -> i32 {
        self.verdict().map_or(0, |v| v.exit_code)
    }
}

/// Writes `report` as `--json` or text asks, and returns its exit code.
pub(crate) fn emit(ctx: &Context, report: &impl Report) -> Result<i32, Error> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    write_report(&mut out, ctx.json, report)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("standard output", e))?;
    Ok(report.exit_code())
}

/// [`emit`] for a command whose output file may be standard output (`-o -`):
/// then the document holds stdout, and the text for people goes to stderr.
/// (`--json` with `-o -` is refused before: see `refuse_stdout_with_json`.)
pub(crate) fn emit_beside(
    ctx: &Context,
    report: &impl Report,
    out: &std::path::Path,
) -> Result<i32, Error> {
    if !super::is_stdout(out) {
        return emit(ctx, report);
    }
    let stderr = io::stderr();
    let mut err = stderr.lock();
    write_report(&mut err, false, report).map_err(|e| Error::io("standard error", e))?;
    Ok(report.exit_code())
}

/// Several reports, one after the other (one JSON line each); the exit code
/// is the first non-zero one.
pub(crate) fn emit_all<R: Report>(ctx: &Context, reports: &[R]) -> Result<i32, Error> {
    let mut code = 0;
    for r in reports {
        let c = emit(ctx, r)?;
        if code == 0 {
            code = c;
        }
    }
    Ok(code)
}

fn write_report(out: &mut dyn Write, json: bool, report: &impl Report) -> io::Result<()> {
    if !json {
        return report.render(out);
    }
    let mut value = serde_json::to_value(report).map_err(io::Error::other)?;
    if let Value::Object(map) = &mut value {
        if let Some(verdict) = report.verdict() {
            map.insert("verdict".into(), json!(verdict.word));
        }
        if report.verdict().is_some() {
            map.insert("exit_code".into(), json!(report.exit_code()));
        }
    }
    write_json(out, &value)
}

/// One JSON value on one line: `--json` output is a stream of objects, one
/// per line, the same for one image as for many (`jq` and line readers take
/// it as is).
pub(crate) fn write_json(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// [`write_json`] to standard output.
pub(crate) fn print_json(value: &Value) {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    // A closed stdout ends the process by SIGPIPE (src/main.rs); any other
    // write error has nowhere better to be reported.
    let _ = write_json(&mut out, value).and_then(|()| out.flush());
}

/// The envelope of a failure: what `--json` prints when a command (or one
/// image of several) fails.
pub(crate) fn error_json(kind: ErrorKind, reason: &str) -> Value {
    json!({
        "verdict": "error",
        "error": kind.name(),
        "reason": reason,
        "exit_code": kind.exit_code(),
    })
}

/// A command that stops on an error: the JSON envelope (with `--json`) and
/// one line on stderr; returns the exit code.
pub(crate) fn emit_error(json: bool, kind: ErrorKind, reason: &str) -> i32 {
    if json {
        print_json(&error_json(kind, reason));
    }
    eprintln!("imgseal: {}: {reason}", kind.name());
    kind.exit_code()
}

/// One item of several failed (an image, a certificate): a JSON line naming
/// it under `key` (with `--json`) and one line on stderr, while the others go
/// on. Returns its exit code.
pub(crate) fn emit_item_error(ctx: &Context, key: &str, name: &str, err: &Error) -> i32 {
    let kind = err.kind();
    let reason = err.to_string().replace(['\n', '\r'], " ");
    if ctx.json {
        let mut obj = error_json(kind, &reason);
        obj[key] = json!(name);
        print_json(&obj);
    }
    // I/O errors already start with the path; name the item only when they do not.
    if reason.starts_with(name) {
        eprintln!("imgseal: {}: {reason}", kind.name());
    } else {
        eprintln!("imgseal: {}: {name}: {reason}", kind.name());
    }
    kind.exit_code()
}

/// A report that is only a JSON value and its text, for commands whose
/// output is a listing of fields already shaped as the JSON.
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct Plain {
    pub json: Value,
    #[serde(skip)]
    pub text: String,
}

impl Plain {
    pub(crate) fn new(json: Value, text: impl Into<String>) -> Self {
        Plain {
            json,
            text: text.into(),
        }
    }
}

impl Report for Plain {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.text.is_empty() {
            return Ok(());
        }
        writeln!(out, "{}", self.text.trim_end_matches('\n'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Check {
        image: &'static str,
        #[serde(skip)]
        ok: bool,
    }

    impl Report for Check {
        fn render(&self, out: &mut dyn Write) -> io::Result<()> {
            writeln!(out, "{}: {}", self.verdict().unwrap().word, self.image)
        }
        fn verdict(&self) -> Option<Verdict> {
            Some(Verdict::of(self.ok))
        }
    }

    fn written(json: bool, r: &impl Report) -> String {
        let mut out = Vec::new();
        write_report(&mut out, json, r).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_check_carries_its_verdict_and_exit_code_in_one_json_line() {
        let bad = Check {
            image: "a.img",
            ok: false,
        };
        let line = written(true, &bad);
        assert_eq!(line.lines().count(), 1, "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["verdict"], "invalid");
        assert_eq!(v["exit_code"], ErrorKind::Invalid.exit_code());
        assert_eq!(v["image"], "a.img");
        assert_eq!(bad.exit_code(), 1);
        assert_eq!(written(false, &bad), "invalid: a.img\n");
        let good = Check {
            image: "a.img",
            ok: true,
        };
        let v: Value = serde_json::from_str(&written(true, &good)).unwrap();
        assert_eq!(
            (v["verdict"].as_str(), v["exit_code"].as_i64()),
            (Some("valid"), Some(0))
        );
    }

    #[test]
    fn a_listing_has_no_envelope() {
        let p = Plain::new(json!({"keys": []}), "no keys");
        let v: Value = serde_json::from_str(&written(true, &p)).unwrap();
        assert_eq!(v, json!({"keys": []}));
        assert_eq!(written(false, &p), "no keys\n");
    }

    #[test]
    fn the_error_envelope_has_the_fields_scripts_read() {
        let v = error_json(ErrorKind::Usage, "bad");
        assert_eq!(v["verdict"], "error");
        assert_eq!(v["error"], ErrorKind::Usage.name());
        assert_eq!(v["exit_code"], ErrorKind::Usage.exit_code());
        assert_eq!(v["reason"], "bad");
    }
}
