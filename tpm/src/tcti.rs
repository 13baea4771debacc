//! Which TPM to talk to: the TCTI ("TPM Command Transmission Interface") string.
//!
//! Selection follows tpm2-tools: an explicit string (`--tcti`), then
//! `TPM2TOOLS_TCTI`, then `TCTI`, then a default the caller provides (imgseal's
//! embedded swtpm). Empty variables count as unset.
//!
//! Accepted forms: `swtpm[:host=H,port=P]`, `device:PATH` (e.g.
//! `device:/dev/tpmrm0`), `tabrmd[:bus_name=..,bus_type=..]`, and the library
//! spelling tpm2-tools also takes (`libtss2-tcti-swtpm.so.0:…`).
//!
//! imgseal opens a second, raw ESYS connection next to tss-esapi's for the
//! commands tss-esapi 7.7 lacks (`anchors lock`, attestation), so TCTIs that
//! admit one connection at a time are refused when parsed:
//! - `swtpm:path=…` (a unix socket): tss-esapi 7.7 parses it, drops the path
//!   and silently connects to localhost:2321 instead;
//! - `device` without a path and `device:/dev/tpmN`: the raw device, which
//!   the kernel lets one handle open (the second fails with EBUSY);
//! - `mssim`: its TCTI holds the socket for the context's life, and the
//!   second connection hangs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use tss_esapi::tcti_ldr::TctiNameConf;

use crate::error::{Result, TpmError};

/// Default port of the simulator TCTIs (tpm2-tss and tss-esapi).
pub const DEFAULT_SIMULATOR_PORT: u16 = 2321;
/// Default device of tpm2-tss's device TCTI; refused (see the module
/// documentation): imgseal opens a second connection for the commands
/// tss-esapi 7.7 lacks, and `/dev/tpm0` admits only one. Use `/dev/tpmrm0`.
pub const DEFAULT_DEVICE: &str = "/dev/tpm0";

/// A parsed, validated TCTI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tcti {
    /// swtpm's TCP protocol: commands on `port`, control channel on `port + 1`.
    Swtpm { host: String, port: u16 },
    /// The Microsoft/IBM simulator protocol (same port pairing). Never
    /// parsed (refused: see the module documentation).
    Mssim { host: String, port: u16 },
    /// A character device: `/dev/tpmrm0` (resource manager) or `/dev/tpm0`.
    Device { path: PathBuf },
    /// The user-space access broker (tpm2-abrmd), configuration passed through.
    Tabrmd { conf: String },
}

/// Where the selected TCTI came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TctiOrigin {
    Explicit,
    Env(&'static str),
    Default,
}

impl fmt::Display for TctiOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TctiOrigin::Explicit => write!(f, "--tcti"),
            TctiOrigin::Env(name) => write!(f, "${name}"),
            TctiOrigin::Default => write!(f, "the default"),
        }
    }
}

/// The environment variables consulted, in order.
pub const TCTI_ENV_VARS: [&str; 2] = ["TPM2TOOLS_TCTI", "TCTI"];

impl Tcti {
    /// `swtpm:host=127.0.0.1,port=P`.
    pub fn swtpm_localhost(port: u16) -> Tcti {
        Tcti::Swtpm {
            host: "127.0.0.1".into(),
            port,
        }
    }

    /// Selects from `explicit`, then the process environment, then `default`.
    pub fn select(
        explicit: Option<&str>,
        default: impl FnOnce() -> Result<Tcti>,
    ) -> Result<(Tcti, TctiOrigin)> {
        Tcti::select_with(explicit, |name| std::env::var(name).ok(), default)
    }

    /// [`Tcti::select`] with an injectable environment.
    pub fn select_with(
        explicit: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
        default: impl FnOnce() -> Result<Tcti>,
    ) -> Result<(Tcti, TctiOrigin)> {
        if let Some(s) = explicit.filter(|s| !s.trim().is_empty()) {
            return Ok((s.parse()?, TctiOrigin::Explicit));
        }
        for name in TCTI_ENV_VARS {
            if let Some(value) = env(name).filter(|v| !v.trim().is_empty()) {
                let tcti = value.parse().map_err(|e| match e {
                    TpmError::TctiConfig { tcti, reason } => TpmError::TctiConfig {
                        tcti,
                        reason: format!("{reason} (from ${name})"),
                    },
                    other => other,
                })?;
                return Ok((tcti, TctiOrigin::Env(name)));
            }
        }
        Ok((default()?, TctiOrigin::Default))
    }

    /// The configuration tss-esapi 7.7 takes.
    pub fn name_conf(&self) -> Result<TctiNameConf> {
        TctiNameConf::from_str(&self.to_string()).map_err(|e| TpmError::TctiConfig {
            tcti: self.to_string(),
            reason: format!("tss-esapi refuses it: {e}"),
        })
    }
}

impl fmt::Display for Tcti {
    /// The canonical string, usable with tpm2-tools and `Tss2_TctiLdr_Initialize`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tcti::Swtpm { host, port } => write!(f, "swtpm:host={host},port={port}"),
            Tcti::Mssim { host, port } => write!(f, "mssim:host={host},port={port}"),
            Tcti::Device { path } => write!(f, "device:{}", path.display()),
            Tcti::Tabrmd { conf } if conf.is_empty() => write!(f, "tabrmd"),
            Tcti::Tabrmd { conf } => write!(f, "tabrmd:{conf}"),
        }
    }
}

impl FromStr for Tcti {
    type Err = TpmError;

    fn from_str(input: &str) -> Result<Tcti> {
        let s = input.trim();
        let bad = |reason: String| TpmError::TctiConfig {
            tcti: input.to_string(),
            reason,
        };
        let (name, conf) = match s.split_once(':') {
            Some((n, c)) => (n, c),
            None => (s, ""),
        };
        // tpm2-tools also accepts the library file name.
        let name = name
            .strip_prefix("libtss2-tcti-")
            .map(|n| n.split(".so").next().unwrap_or(n))
            .unwrap_or(name);
        match name {
            "swtpm" | "mssim" => {
                let mut host = "localhost".to_string();
                let mut port = DEFAULT_SIMULATOR_PORT;
                for item in conf.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    let (key, value) = item
                        .split_once('=')
                        .ok_or_else(|| bad(format!("\"{item}\" is not key=value")))?;
                    match key.trim() {
                        "host" => host = parse_host(value.trim()).map_err(bad)?,
                        "port" => {
                            port = value.trim().parse::<u16>().ok().filter(|p| *p != 0 && *p < u16::MAX).ok_or_else(
                                || bad(format!("port \"{value}\" is not a TCP port below 65535 (the control channel is port+1)")),
                            )?
                        }
                        "path" => {
                            return Err(bad(
                                "unix sockets (path=) are not supported: tss-esapi 7.7 ignores path= and would silently connect to localhost:2321; run swtpm with --server type=tcp,port=P --ctrl type=tcp,port=P+1 and use swtpm:host=127.0.0.1,port=P".into(),
                            ));
                        }
                        other => {
                            return Err(bad(format!(
                                "unknown key \"{other}\" (only host= and port= are understood)"
                            )));
                        }
                    }
                }
                if name == "mssim" {
                    return Err(bad(format!(
                        "mssim is not supported: its TCTI holds the connection open, so imgseal's second connection (anchors lock, attestation) would hang; serve the TPM with swtpm and use swtpm:host={host},port={port}, or device:/dev/tpmrm0 for a real TPM"
                    )));
                }
                Ok(Tcti::Swtpm { host, port })
            }
            "device" => {
                let path = conf.trim();
                if path.is_empty() || is_raw_device(path) {
                    let named = if path.is_empty() {
                        format!("device means {DEFAULT_DEVICE}, which")
                    } else {
                        path.to_string()
                    };
                    return Err(bad(format!(
                        "{named} is the raw TPM device: the kernel lets one handle open it, and imgseal's second connection (anchors lock, attestation) would fail with EBUSY; use device:/dev/tpmrm0 (the kernel resource manager)"
                    )));
                }
                if !path.starts_with('/') {
                    return Err(bad(format!(
                        "device path \"{path}\" must be absolute, e.g. device:/dev/tpmrm0"
                    )));
                }
                Ok(Tcti::Device {
                    path: PathBuf::from(path),
                })
            }
            "tabrmd" => Ok(Tcti::Tabrmd {
                conf: conf.to_string(),
            }),
            "" => Err(bad("empty TCTI name".into())),
            other => Err(bad(format!(
                "unsupported TCTI \"{other}\": use swtpm:host=H,port=P, device:/dev/tpmrm0 or tabrmd"
            ))),
        }
    }
}

/// `/dev/tpm0`, `/dev/tpm1`, …: a TPM without the kernel resource manager.
fn is_raw_device(path: &str) -> bool {
    path.strip_prefix("/dev/tpm")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_host(value: &str) -> std::result::Result<String, String> {
    if value.parse::<std::net::IpAddr>().is_ok() {
        return Ok(value.to_string());
    }
    let valid = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(value.to_string())
    } else {
        Err(format!("\"{value}\" is not a host name or IP address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Tcti {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_tpm2_tools_forms() {
        assert_eq!(
            parse("swtpm:host=127.0.0.1,port=20000"),
            Tcti::swtpm_localhost(20000)
        );
        assert_eq!(
            parse("swtpm:port=20000,host=localhost").to_string(),
            "swtpm:host=localhost,port=20000"
        );
        assert_eq!(parse("swtpm").to_string(), "swtpm:host=localhost,port=2321");
        assert_eq!(
            parse("device:/dev/tpmrm0"),
            Tcti::Device {
                path: "/dev/tpmrm0".into()
            }
        );
        assert_eq!(
            parse("device:/dev/tpmrm1").to_string(),
            "device:/dev/tpmrm1"
        );
        assert_eq!(
            parse("libtss2-tcti-swtpm.so.0:port=2400"),
            Tcti::Swtpm {
                host: "localhost".into(),
                port: 2400
            }
        );
        assert_eq!(parse("tabrmd").to_string(), "tabrmd");
        // Every canonical string goes through tss-esapi unchanged.
        for s in ["swtpm:host=127.0.0.1,port=20000", "device:/dev/tpmrm0"] {
            parse(s).name_conf().unwrap();
        }
    }

    #[test]
    fn refuses_what_tss_esapi_would_misread() {
        let err = "swtpm:path=/tmp/sock"
            .parse::<Tcti>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("path="), "{err}");
        assert!(err.contains("localhost:2321"), "{err}");
        for bad in [
            "swtpm:port=65535",
            "swtpm:port=0",
            "swtpm:port=x",
            "swtpm:host=bad_host",
            "swtpm:foo=1",
            "swtpm:port",
            "device:tpm0",
            "cmd:whatever",
            "",
        ] {
            assert!(bad.parse::<Tcti>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn refuses_tctis_that_admit_one_connection() {
        for raw in [
            "device",
            "device:",
            "device:/dev/tpm0",
            " device:/dev/tpm1 ",
            "libtss2-tcti-device.so.0",
            "libtss2-tcti-device.so.0:/dev/tpm0",
        ] {
            let err = raw.parse::<Tcti>().unwrap_err().to_string();
            assert!(err.contains("raw TPM device"), "{raw}: {err}");
            assert!(err.contains("EBUSY"), "{raw}: {err}");
            assert!(err.contains("device:/dev/tpmrm0"), "{raw}: {err}");
        }
        let err = "device".parse::<Tcti>().unwrap_err().to_string();
        assert!(err.contains("/dev/tpm0"), "{err}");
        for sim in [
            "mssim",
            "mssim:host=tpm.example.org",
            "mssim:host=127.0.0.1,port=2321",
            "libtss2-tcti-mssim.so.0:port=2400",
        ] {
            let err = sim.parse::<Tcti>().unwrap_err().to_string();
            assert!(err.contains("mssim is not supported"), "{sim}: {err}");
            assert!(err.contains("swtpm:host="), "{sim}: {err}");
            assert!(err.contains("device:/dev/tpmrm0"), "{sim}: {err}");
        }
        // The resource manager's devices stay accepted.
        assert!("device:/dev/tpmrm0".parse::<Tcti>().is_ok());
        assert!("device:/dev/tpmrm12".parse::<Tcti>().is_ok());
    }

    #[test]
    fn selection_order_is_explicit_then_env_then_default() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let default = || Ok(Tcti::swtpm_localhost(30000));
        let both: &'static [(&str, &str)] = &[
            ("TPM2TOOLS_TCTI", "swtpm:port=21000"),
            ("TCTI", "swtpm:port=22000"),
        ];
        let (t, o) = Tcti::select_with(Some("device:/dev/tpmrm0"), env(both), default).unwrap();
        assert_eq!(t.to_string(), "device:/dev/tpmrm0");
        assert_eq!(o, TctiOrigin::Explicit);
        let (t, o) = Tcti::select_with(None, env(both), default).unwrap();
        assert_eq!(t.to_string(), "swtpm:host=localhost,port=21000");
        assert_eq!(o, TctiOrigin::Env("TPM2TOOLS_TCTI"));
        let only_tcti: &'static [(&str, &str)] =
            &[("TPM2TOOLS_TCTI", ""), ("TCTI", "swtpm:port=22000")];
        let (t, o) = Tcti::select_with(Some(""), env(only_tcti), default).unwrap();
        assert_eq!(t.to_string(), "swtpm:host=localhost,port=22000");
        assert_eq!(o, TctiOrigin::Env("TCTI"));
        let (t, o) = Tcti::select_with(None, env(&[]), default).unwrap();
        assert_eq!(t, Tcti::swtpm_localhost(30000));
        assert_eq!(o, TctiOrigin::Default);
        let bad: &'static [(&str, &str)] = &[("TCTI", "swtpm:path=/x")];
        let err = Tcti::select_with(None, env(bad), default)
            .unwrap_err()
            .to_string();
        assert!(err.contains("$TCTI"), "{err}");
    }
}
