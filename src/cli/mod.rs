//! Command-line definitions and dispatch.

mod anchors;
mod attest;
mod cert;
mod cloud;
mod devices;
mod digest;
mod docs;
mod images;
mod key;
pub(crate) mod output;
mod seal;
mod sign;
mod tpm;
mod trust;
mod verify;

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use imgseal::backend::pkcs11::{Login, Pkcs11Device};
use imgseal::error::{Error, ErrorKind};
use imgseal::home::Home;
use imgseal_hsm::uri::Pkcs11Uri;
use zeroize::Zeroizing;

#[derive(Debug, Parser)]
#[command(
    name = "imgseal",
    version,
    about = "Sign and verify cloud VM images (OpenStack Glance img_signature) with keys held in PKCS#11 HSMs"
)]
pub(crate) struct Cli {
    /// `--token` before the subcommand, as imgseal took it when it was global
    /// (`imgseal --token URI key list`): still accepted, not shown. The
    /// commands that open the token take their own (`TokenArgs`), which wins.
    #[arg(long = "token", value_name = "URI", hide = true)]
    pub token_before: Option<String>,

    /// Print machine-readable JSON on stdout.
    #[arg(long, short = 'j', global = true)]
    pub json: bool,

    /// More log output on stderr (-v info, -vv debug). IMGSEAL_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// `--tcti` before the subcommand (see `token_before`): still accepted,
    /// not shown; the commands that open a TPM take their own (`TctiArgs`).
    #[arg(long = "tcti", value_name = "TCTI", hide = true)]
    pub tcti_before: Option<String>,

    /// Whether the subcommand's `--token` came from $IMGSEAL_TOKEN rather
    /// than its command line: then a `--token` before the subcommand wins,
    /// as it did over the environment when the flag was global.
    #[arg(skip)]
    pub token_from_env: bool,

    #[command(flatten)]
    pub cloud: cloud::CloudArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Signing keys in the token.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// The certificate store (token objects or a directory).
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Sign an image and print its four Glance properties.
    Sign(sign::SignArgs),
    /// Verify an image against its Glance properties, as Glance does on upload.
    Verify(verify::VerifyArgs),
    /// Sign an image in the HSM and upload it to Glance, which verifies it.
    Publish(images::PublishArgs),
    /// Re-sign an image in Glance with another key or certificate (key rotation).
    Resign(images::ResignArgs),
    /// Every image in the cloud: signed or not, its certificate, whether
    /// Nova would boot it, and which are at risk.
    Audit(images::AuditArgs),
    /// Print digests: linear (as sha256sum does) or fs-verity (as `fsverity digest` does).
    Digest(digest::DigestArgs),
    /// Trust anchors sealed in the TPM: seal, show, add, remove, lock, clear.
    Anchors(anchors::AnchorsArgs),
    /// Have the TPM certify the sealed anchors for a nonce; verify; enroll the AK.
    Attest(attest::AttestArgs),
    /// The embedded swtpm: status, stop.
    #[command(subcommand)]
    Tpm(tpm::TpmCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs::CompletionsArgs),
    /// Print the man page, or write one per command with --out-dir.
    Man(docs::ManArgs),
}

/// `--token`, on the commands that can open the PKCS#11 token.
#[derive(Debug, Args, Default)]
pub(crate) struct TokenArgs {
    /// The PKCS#11 token to use, as an RFC 7512 URI (token=, module-path=,
    /// pin-source=…). Default: the embedded SoftHSM token under $IMGSEAL_HOME.
    // hide_env_values: clap would print $IMGSEAL_TOKEN in --help, and the URI
    // may carry pin-value (tests/secret_hygiene.rs).
    #[arg(
        long,
        env = "IMGSEAL_TOKEN",
        hide_env_values = true,
        value_name = "URI"
    )]
    pub token: Option<String>,
}

/// `--tcti`, on the commands that can open a TPM.
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct TctiArgs {
    /// The TPM for sealed trust anchors: swtpm:host=H,port=P,
    /// device:/dev/tpmrm0, tabrmd. Else $TPM2TOOLS_TCTI, then $TCTI, then the
    /// embedded swtpm under $IMGSEAL_HOME/swtpm (started on demand).
    #[arg(long, value_name = "TCTI")]
    pub tcti: Option<String>,
}

impl Command {
    /// The device flags the chosen command carries: its `--token` (to be
    /// taken: it may hold a PIN) and its `--tcti`. None for a command that
    /// opens no such device.
    fn devices(&mut self) -> (Option<&mut TokenArgs>, Option<&TctiArgs>) {
        match self {
            Command::Key(cmd) => (Some(cmd.token_args()), None),
            Command::Cert(cmd) => cmd.devices(),
            Command::Sign(args) => (Some(&mut args.token), None),
            Command::Verify(args) => (Some(&mut args.token), Some(&args.tcti)),
            Command::Publish(args) => (Some(&mut args.token), None),
            Command::Resign(args) => (Some(&mut args.token), Some(&args.tcti)),
            Command::Audit(args) => (Some(&mut args.token), Some(&args.tcti)),
            Command::Anchors(args) => args.command.devices(),
            Command::Attest(args) => (None, args.tcti()),
            Command::Digest(_) | Command::Tpm(_) | Command::Completions(_) | Command::Man(_) => {
                (None, None)
            }
        }
    }
}

impl Cli {
    /// Parses the command line as `Cli::try_parse` does, and notes where the
    /// subcommand's `--token` came from (see `token_from_env`).
    pub(crate) fn parse_command_line() -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let mut matches = Self::command().try_get_matches()?;
        let mut leaf = &matches;
        while let Some((_, sub)) = leaf.subcommand() {
            leaf = sub;
        }
        let token_from_env = leaf.ids().any(|id| id == "token")
            && leaf.value_source("token") == Some(clap::parser::ValueSource::EnvVariable);
        let mut cli =
            Self::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut Self::command()))?;
        cli.token_from_env = token_from_env;
        Ok(cli)
    }
}

pub(crate) fn init_logging(verbose: u8) {
    // tss-esapi logs every TPM error it passes on (an index not yet defined is
    // an expected answer); imgseal reports failures itself, so below -vv it is quiet.
    let default = match verbose {
        0 => "warn,tss_esapi=off",
        1 => "info,tss_esapi=off",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMGSEAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let most = filter.max_level_hint();
    // ureq's TRACE output is a hex dump of the wire: passwords in token
    // requests, X-Auth-Token headers, certificate payloads. Whatever
    // IMGSEAL_LOG asks for, it stops at DEBUG, where ureq redacts them.
    let no_wire_dumps = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_target("ureq", tracing::Level::DEBUG)
        .with_target("ureq_proto", tracing::Level::DEBUG);
    use std::io::IsTerminal;
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(
                    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                )
                .with_target(false)
                .without_time()
                .with_filter(filter)
                .with_filter(no_wire_dumps),
        )
        .init();
    // Libraries on the `log` crate (ureq logs every read of a body at trace
    // level) test `log`'s own maximum before building a record; left at
    // TRACE, each record went through the tracing filter to be dropped, and
    // that cost 7 s of CPU per GiB downloaded. ureq is capped at DEBUG above.
    let most_log = match most {
        Some(l) if l == tracing_subscriber::filter::LevelFilter::OFF => log::LevelFilter::Off,
        Some(l) if l >= tracing_subscriber::filter::LevelFilter::DEBUG => log::LevelFilter::Debug,
        Some(l) if l == tracing_subscriber::filter::LevelFilter::INFO => log::LevelFilter::Info,
        Some(l) if l == tracing_subscriber::filter::LevelFilter::WARN => log::LevelFilter::Warn,
        Some(_) => log::LevelFilter::Error,
        None => log::LevelFilter::Debug,
    };
    log::set_max_level(most_log);
}

pub(crate) fn run(mut cli: Cli) -> anyhow::Result<i32> {
    let before = cli.token_before.take().map(Zeroizing::new);
    let (own_token, own_tcti) = cli.command.devices();
    // Moved, not copied: the URI may hold a pin-value. The subcommand's own
    // --token, else one before the subcommand, else $IMGSEAL_TOKEN.
    let own_token = own_token.and_then(|t| t.token.take()).map(Zeroizing::new);
    let token = match (own_token, before) {
        (Some(_), Some(before)) if cli.token_from_env => Some(before),
        (own, before) => own.or(before),
    };
    let tcti = own_tcti
        .and_then(|t| t.tcti.clone())
        .or_else(|| cli.tcti_before.clone());
    let ctx = Context {
        token,
        json: cli.json,
        tcti,
        cloud: cli.cloud.clone(),
        session: Default::default(),
    };
    match cli.command {
        Command::Key(cmd) => key::run(&ctx, cmd),
        Command::Cert(cmd) => cert::run(&ctx, cmd),
        Command::Sign(args) => sign::run(&ctx, args),
        Command::Verify(args) => verify::run(&ctx, args),
        Command::Publish(args) => images::run_publish(&ctx, args),
        Command::Resign(args) => images::run_resign(&ctx, args),
        Command::Audit(args) => images::run_audit(&ctx, args),
        Command::Digest(args) => digest::run(&ctx, args),
        Command::Anchors(args) => anchors::run(&ctx, args),
        Command::Attest(args) => attest::run(&ctx, args),
        Command::Tpm(cmd) => tpm::run(&ctx, cmd),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    }
}

/// The error's class and its one-line message.
pub(crate) fn classify(err: &anyhow::Error) -> (ErrorKind, String) {
    match err.downcast_ref::<Error>() {
        Some(e) => (e.kind(), one_line(&e.to_string())),
        None => (ErrorKind::Io, one_line(&format!("{err:#}"))),
    }
}

fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) struct Context {
    /// `--token` or $IMGSEAL_TOKEN; zeroized on drop (it may hold a pin-value).
    pub token: Option<Zeroizing<String>>,
    pub json: bool,
    /// `--tcti`; the environment fallbacks are applied when a TPM is opened.
    pub tcti: Option<String>,
    /// `--os-cloud`, `--barbican-url`, `--os-timeout`.
    pub cloud: cloud::CloudArgs,
    /// One login per run, shared by Barbican and Glance.
    session: std::sync::OnceLock<std::sync::Arc<imgseal::openstack::Session>>,
}

impl Context {
    /// The logged-in session with the configured cloud; the first call logs in.
    pub(crate) fn session(&self) -> Result<std::sync::Arc<imgseal::openstack::Session>, Error> {
        if let Some(s) = self.session.get() {
            return Ok(std::sync::Arc::clone(s));
        }
        let s = std::sync::Arc::new(self.cloud.session()?);
        Ok(std::sync::Arc::clone(self.session.get_or_init(|| s)))
    }

    pub(crate) fn home(&self) -> Result<Home, Error> {
        Home::from_env()
    }

    /// The `--token` URI, parsed.
    pub(crate) fn token_uri(&self) -> Result<Option<Pkcs11Uri>, Error> {
        self.token
            .as_ref()
            .map(|s| parse_uri(s, "--token"))
            .transpose()
    }

    /// Opens the token named by `key` (which may carry its own module and
    /// token attributes) over `--token`.
    pub(crate) fn device(
        &self,
        key: Option<&Pkcs11Uri>,
        login: Login,
    ) -> Result<Pkcs11Device, Error> {
        let token = self.token_uri()?;
        // Which URI a PIN in the merged one comes from: the key's own, else
        // --token's (merge_uris never mixes them).
        let key_has_pin = key.is_some_and(|k| k.pin_value.is_some() || k.pin_source.is_some());
        let origin = if key_has_pin {
            "the key URI"
        } else {
            "the --token URI (or $IMGSEAL_TOKEN)"
        };
        let merged = match (token, key) {
            (Some(t), Some(k)) => Some(merge_uris(&t, k)?),
            (None, Some(k)) => Some(k.clone()),
            (t, None) => t,
        };
        Pkcs11Device::open(merged.as_ref(), origin, &self.home()?, login)
    }
}

pub(crate) fn parse_uri(s: &str, what: &str) -> Result<Pkcs11Uri, Error> {
    s.parse::<Pkcs11Uri>().map_err(|e| {
        // A bare word is most likely a key's label.
        let hint = if !s.contains(':') && !s.contains('=') && !s.is_empty() && what == "--key" {
            format!(" (a key labelled \"{s}\" is pkcs11:object={s})")
        } else {
            String::new()
        };
        Error::bad_input(format!("{what}: {e}{hint}"))
    })
}

/// The key URI completed by `--token`: token and module attributes the key
/// URI lacks come from `--token`. Where both name the token or the module
/// and disagree, it is refused: completing one token's identity with the
/// other's module and PIN would send a PIN to a token it does not belong to.
/// The PIN comes from one URI only: the key's when it carries one, else
/// `--token`'s (RFC 7512 §2.3: never a pin-value and a pin-source at once).
fn merge_uris(token: &Pkcs11Uri, key: &Pkcs11Uri) -> Result<Pkcs11Uri, Error> {
    let conflict = |what: &str, k: &dyn std::fmt::Debug, t: &dyn std::fmt::Debug| {
        Error::usage(format!(
            "the key URI's {what} ({k:?}) is not --token's ({t:?}): give the key URI alone, or make them agree"
        ))
    };
    macro_rules! agree {
        ($($f:ident => $name:literal),*) => { $(
            if let (Some(k), Some(t)) = (&key.$f, &token.$f) {
                if k != t {
                    return Err(conflict($name, k, t));
                }
            }
        )* };
    }
    agree!(
        token => "token",
        serial => "serial",
        manufacturer => "manufacturer",
        model => "model",
        slot_id => "slot-id",
        module_path => "module-path",
        module_name => "module-name"
    );
    let mut out = key.clone();
    macro_rules! fill {
        ($($f:ident),*) => { $( if out.$f.is_none() { out.$f = token.$f.clone(); } )* };
    }
    fill!(
        token,
        serial,
        manufacturer,
        model,
        slot_id,
        module_path,
        module_name
    );
    if key.pin_source.is_none() && key.pin_value.is_none() {
        out.pin_source = token.pin_source.clone();
        out.pin_value = token.pin_value.clone();
    }
    Ok(out)
}

/// Refuses outputs that are the same file as each other or as an input: a
/// later write would replace an earlier output (or the image itself) and the
/// command would still report both. Outputs may not exist yet, so each path
/// is resolved through its directory.
pub(crate) fn refuse_overlaps(
    outputs: &[(&str, &Path)],
    images: &[imgseal::digest::ImageSource],
) -> Result<(), Error> {
    let inputs: Vec<&Path> = images
        .iter()
        .filter_map(|s| match s {
            imgseal::digest::ImageSource::Path(p) => Some(p.as_path()),
            imgseal::digest::ImageSource::Stdin => None,
        })
        .collect();
    fn resolve(p: &Path) -> Option<PathBuf> {
        if let Ok(c) = std::fs::canonicalize(p) {
            return Some(c);
        }
        let name = p.file_name()?;
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(std::fs::canonicalize(dir).ok()?.join(name))
    }
    let resolved: Vec<(&str, &Path, Option<PathBuf>)> = outputs
        .iter()
        .map(|(flag, p)| (*flag, *p, resolve(p)))
        .collect();
    for (i, (flag, path, r)) in resolved.iter().enumerate() {
        let Some(r) = r else { continue };
        for (other, _, q) in &resolved[i + 1..] {
            if q.as_ref() == Some(r) {
                return Err(Error::usage(format!(
                    "{flag} and {other} name the same file ({}): one would replace the other",
                    path.display()
                )));
            }
        }
        for input in &inputs {
            if resolve(input).as_ref() == Some(r) {
                return Err(Error::usage(format!(
                    "{flag} {} is the image itself: it would be replaced",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

pub(crate) use output::print_json;

/// `-o -`: the output is written to stdout instead of a file.
pub(crate) fn is_stdout(path: &Path) -> bool {
    path == Path::new("-")
}

/// Refuses `-o -` with `--json`: both would be written to stdout.
pub(crate) fn refuse_stdout_with_json(ctx: &Context, flag: &str, path: &Path) -> Result<(), Error> {
    if ctx.json && is_stdout(path) {
        return Err(Error::usage(format!(
            "{flag} - and --json both write to stdout: give {flag} a file"
        )));
    }
    Ok(())
}

/// Writes an output file, or stdout for `-`.
pub(crate) fn write_out(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    if !is_stdout(path) {
        return imgseal::home::write_output_file(path, bytes);
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::io("<stdout>", e))
}

pub(crate) fn read_input_file(path: &Path) -> Result<Vec<u8>, Error> {
    imgseal::home::read_input(path, imgseal::home::MAX_INPUT_BYTES, "an input file")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap checks its definitions (duplicate short flags, globals that
    /// clash with a subcommand's own) only when asked, in debug builds.
    #[test]
    fn the_command_line_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    fn uri(s: &str) -> Pkcs11Uri {
        s.parse().unwrap()
    }

    #[test]
    fn a_key_uri_is_completed_by_token_but_never_contradicts_it() {
        let token =
            uri("pkcs11:token=prod?module-path=/usr/lib/vendor.so&pin-source=file:/etc/prod.pin");
        // Completed: the key names only its object.
        let m = merge_uris(&token, &uri("pkcs11:object=k")).unwrap();
        assert_eq!(m.token.as_deref(), Some("prod"));
        assert_eq!(m.pin_source.as_deref(), Some("file:/etc/prod.pin"));
        // Another token, or another module: refused, no PIN travels.
        for key in [
            "pkcs11:token=staging;object=k",
            "pkcs11:object=k?module-path=/usr/lib/other.so",
        ] {
            let e = merge_uris(&token, &uri(key)).unwrap_err().to_string();
            assert!(e.contains("is not --token's"), "{key}: {e}");
            assert!(!e.contains("prod.pin"), "{e}");
        }
        // The key's own PIN wins alone: never a pin-value and a pin-source.
        let token = uri("pkcs11:token=prod?pin-value=1234");
        let m = merge_uris(&token, &uri("pkcs11:object=k?pin-source=file:/k.pin")).unwrap();
        assert_eq!(m.pin_source.as_deref(), Some("file:/k.pin"));
        assert!(m.pin_value.is_none());
        let m = merge_uris(&token, &uri("pkcs11:token=prod;object=k")).unwrap();
        assert!(m.pin_value.is_some() && m.pin_source.is_none());
    }
}
