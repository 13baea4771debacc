//! The `imgseal` command: a thin shell over the library. Exit codes are chosen
//! here only (see docs/exit-codes.md).

mod cli;

use std::process::ExitCode;

use clap::error::ErrorKind as ClapKind;

fn main() -> ExitCode {
    // Behave like other Unix tools when a reader goes away (`imgseal key list |
    // head -1`): die quietly of SIGPIPE instead of panicking on EPIPE in println!.
    // Safety: set once, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args = match cli::Cli::parse_command_line() {
        Ok(args) => args,
        Err(err) => return command_line_error(err),
    };
    // ESYS logs every expected TPM error (a missing or locked index) on
    // stderr; imgseal reports failures itself. A TSS2_LOG of the user's, or
    // -vv, keeps ESYS's own logging.
    if std::env::var_os("TSS2_LOG").is_none() && args.verbose < 2 {
        // SAFETY: no other thread exists yet (argument parsing starts none).
        unsafe { std::env::set_var("TSS2_LOG", "all+none") };
    }
    cli::init_logging(args.verbose);
    let json = args.json;
    match cli::run(args) {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            let (kind, message) = cli::classify(&err);
            ExitCode::from(cli::output::emit_error(json, kind, &message) as u8)
        }
    }
}

/// clap's own refusals (unknown option, bad value, missing argument) are
/// reported like every other failure: one line on stderr, `imgseal: usage:
/// …`, exit 2, and the JSON object with --json (docs/exit-codes.md). clap
/// would print several lines (the message, the usage, a tip), which breaks
/// that contract for scripts reading stderr. Help, version, and the help a
/// bare `imgseal key` shows stay clap's.
fn command_line_error(err: clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ClapKind::DisplayHelp
            | ClapKind::DisplayVersion
            | ClapKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let text = err.to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    // The message only: the usage and the "try --help" line follow a blank line.
    let message = text
        .split("\n\nUsage:")
        .next()
        .unwrap_or(text)
        .split("\n\nFor more information")
        .next()
        .unwrap_or(text);
    let message = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let json = std::env::args_os().any(|a| a == "--json" || a == "-j");
    ExitCode::from(cli::output::emit_error(json, imgseal::ErrorKind::Usage, &message) as u8)
}
