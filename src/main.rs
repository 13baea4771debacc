//! The `imgseal` command: a thin shell over the library. Exit codes are chosen
//! here only (see docs/exit-codes.md).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
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
            if json {
                let obj = serde_json::json!({
                    "verdict": "error",
                    "error": kind.name(),
                    "reason": message,
                    "exit_code": kind.exit_code(),
                });
                println!("{obj}");
            }
            eprintln!("imgseal: {}: {message}", kind.name());
            ExitCode::from(kind.exit_code() as u8)
        }
    }
}
