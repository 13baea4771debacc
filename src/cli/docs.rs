//! Shell completions and man pages, generated from the clap definitions so
//! they cannot drift from the commands.

use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};
use imgseal::error::Error;

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// Prints the completion script: `source <(imgseal completions bash)`, or
/// save it where the shell looks (bash-completion's completions directory,
/// a `$fpath` directory as `_imgseal`, `~/.config/fish/completions/imgseal.fish`).
pub(super) fn completions(args: CompletionsArgs) -> anyhow::Result<i32> {
    use clap_complete::Shell as S;
    let shell = match args.shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
        Shell::Elvish => S::Elvish,
        Shell::Powershell => S::PowerShell,
    };
    let mut cmd = super::Cli::command();
    clap_complete::generate(shell, &mut cmd, "imgseal", &mut std::io::stdout());
    Ok(0)
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write one page per command (imgseal.1, imgseal-verify.1,
    /// imgseal-cert-publish.1, …) into this directory instead of printing
    /// imgseal(1).
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub(super) fn man(args: ManArgs) -> anyhow::Result<i32> {
    let cmd = super::Cli::command();
    match args.out_dir {
        None => {
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| Error::io("stdout", e))?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            // Pages are written whole and renamed, like every imgseal output.
            let staging = tempfile::Builder::new()
                .prefix(".imgseal-man-")
                .tempdir_in(&dir)
                .map_err(|e| Error::io(&dir, e))?;
            clap_mangen::generate_to(cmd, staging.path()).map_err(|e| Error::io(&dir, e))?;
            let mut pages = 0;
            for entry in std::fs::read_dir(staging.path()).map_err(|e| Error::io(&dir, e))? {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let target = dir.join(entry.file_name());
                std::fs::rename(entry.path(), &target).map_err(|e| Error::io(&target, e))?;
                pages += 1;
            }
            eprintln!("wrote {pages} man pages to {}", dir.display());
        }
    }
    Ok(0)
}
