//! `imgseal tpm status|stop`: the embedded swtpm that `anchors seal` starts
//! on demand under $IMGSEAL_HOME/swtpm, which otherwise keeps running.

use clap::Subcommand;
use imgseal::anchors::AnchorStore;
use imgseal::error::Error;
use serde_json::json;

use super::output::{Plain, emit};
use super::{Context, print_json};

#[derive(Debug, Subcommand)]
pub(crate) enum TpmCommand {
    /// Whether the embedded swtpm runs (its pid and TCTI), and whether
    /// anchors are sealed from this $IMGSEAL_HOME.
    Status,
    /// Stop the embedded swtpm (its state stays: the next command that needs
    /// it starts it again).
    Stop,
}

pub(super) fn run(ctx: &Context, cmd: TpmCommand) -> anyhow::Result<i32> {
    let home = ctx.home()?;
    let dir = home.dir.join("swtpm");
    match cmd {
        TpmCommand::Status => {
            let pid = imgseal_tpm::swtpm::daemon_pid(&dir);
            let tcti = imgseal_tpm::daemon_tcti(&dir).map(|t| t.to_string());
            let manufactured = imgseal_tpm::has_state(&dir);
            let sealed = AnchorStore::in_home(&home.dir).exists();
            let state = match (pid, &tcti) {
                (Some(pid), Some(t)) => format!("embedded swtpm: running (pid {pid}, {t})"),
                (Some(pid), None) => format!("embedded swtpm: running (pid {pid}), not answering"),
                _ if manufactured => "embedded swtpm: stopped (its state is kept)".to_string(),
                _ => "embedded swtpm: never started".to_string(),
            };
            let text = format!(
                "{state}\nstate: {}\nanchors sealed from this home: {}",
                dir.display(),
                if sealed { "yes" } else { "no" }
            );
            emit(
                ctx,
                &Plain::new(
                    json!({
                        "state_dir": dir,
                        "manufactured": manufactured,
                        "running": pid.is_some(),
                        "pid": pid,
                        "tcti": tcti,
                        "anchors_sealed_from_this_home": sealed,
                    }),
                    text,
                ),
            )?;
            Ok(0)
        }
        TpmCommand::Stop => {
            let pid = imgseal_tpm::swtpm::daemon_pid(&dir);
            let stopped = imgseal_tpm::stop_daemon(&dir)
                .map_err(Error::tpm("stopping the embedded swtpm"))?;
            if ctx.json {
                print_json(&json!({"stopped": stopped, "pid": pid, "state_dir": dir}));
            } else if stopped {
                eprintln!(
                    "stopped the embedded swtpm{} ({})",
                    pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                    dir.display()
                );
            } else {
                eprintln!("the embedded swtpm was not running ({})", dir.display());
            }
            Ok(0)
        }
    }
}
