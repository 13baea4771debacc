//! Configuration and where trusted certificate ids come from.
//!
//! imgseal's own TOML file (`--config`, `$IMGSEAL_CONFIG`, else
//! `$IMGSEAL_HOME/config.toml` when it exists) and, with `--nova-conf`, a real
//! nova.conf's `[glance]` section. Trusted ids follow Nova's documented
//! precedence: the command line, then `OS_TRUSTED_IMAGE_CERTIFICATE_IDS`, then
//! `default_trusted_certificate_ids`; ids from the command line or the
//! environment force certificate validation, while configured defaults are used
//! only when both `verify_glance_signatures` and `enable_certificate_validation`
//! are true.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::validate::{PolicyName, StrictOptions};

/// The `[glance]` options Nova reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GlanceOptions {
    pub verify_glance_signatures: Option<bool>,
    pub enable_certificate_validation: Option<bool>,
    #[serde(default, deserialize_with = "id_list")]
    pub default_trusted_certificate_ids: Option<Vec<String>>,
}

/// `[validation]` in imgseal's file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ValidationOptions {
    pub policy: Option<PolicyName>,
    pub min_rsa_bits: Option<u32>,
    pub allow_sha1: Option<bool>,
    pub max_chain_depth: Option<u32>,
    pub allow_small_rsa_exponent: Option<bool>,
    /// `verify --require-trust` for every run.
    pub require_trust: Option<bool>,
    pub cert_dir: Option<PathBuf>,
    #[serde(default)]
    pub crls: Vec<PathBuf>,
}

/// imgseal's configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub glance: GlanceOptions,
    #[serde(default)]
    pub validation: ValidationOptions,
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// Accepts `["a", "b"]` or Nova's comma-separated `"a,b"`.
fn id_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ids {
        List(Vec<String>),
        Text(String),
    }
    Ok(Some(match Ids::deserialize(d)? {
        Ids::List(v) => v.into_iter().flat_map(|s| split_ids(&s)).collect(),
        Ids::Text(s) => split_ids(&s),
    }))
}

/// Nova's comma-separated lists: blanks around ids and empty items dropped.
pub fn split_ids(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_toml(&read_text(path)?, path)
    }

    /// Parses imgseal's TOML; `path` names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            let place = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    format!(" at line {line}")
                })
                .unwrap_or_default();
            Error::bad_input(format!("{}{place}: {msg}", path.display()))
        })?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// `--config`, else `$IMGSEAL_CONFIG`, else `<home>/config.toml` if present.
    pub fn discover(explicit: Option<&Path>, home: &Path) -> Result<Self> {
        if let Some(p) = explicit {
            return Self::load(p);
        }
        if let Some(p) = std::env::var_os("IMGSEAL_CONFIG").filter(|v| !v.is_empty()) {
            return Self::load(Path::new(&p));
        }
        let default = home.join("config.toml");
        if default.exists() {
            Self::load(&default)
        } else {
            Ok(Config::default())
        }
    }

    pub fn strict_options(&self) -> StrictOptions {
        let d = StrictOptions::default();
        StrictOptions {
            min_rsa_bits: self.validation.min_rsa_bits.unwrap_or(d.min_rsa_bits),
            allow_sha1: self.validation.allow_sha1.unwrap_or(d.allow_sha1),
            max_depth: self.validation.max_chain_depth.unwrap_or(d.max_depth),
            allow_small_rsa_exponent: self
                .validation
                .allow_small_rsa_exponent
                .unwrap_or(d.allow_small_rsa_exponent),
        }
    }
}

/// Reads the `[glance]` section of a nova.conf (oslo.config INI syntax).
pub fn read_nova_conf(path: &Path) -> Result<GlanceOptions> {
    parse_nova_conf(&read_text(path)?, path)
}

/// A configuration file's text. A file that is not UTF-8 is malformed input
/// (exit 3), not an I/O failure: `read_to_string` reports it as an
/// `InvalidData` I/O error, which read "io: stream did not contain valid UTF-8".
fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::bad_input(format!("{}: not UTF-8 text", path.display())))
}

/// Parses a nova.conf's text; `path` names the file in errors.
pub fn parse_nova_conf(text: &str, path: &Path) -> Result<GlanceOptions> {
    let sections = parse_oslo_ini(text).map_err(|(line, why)| {
        Error::bad_input(format!(
            "{}: not a nova.conf (INI): line {line}: {why}",
            path.display()
        ))
    })?;
    let Some(section) = sections.get("glance") else {
        return Ok(GlanceOptions::default());
    };
    // oslo.config takes the last value an option is given.
    let last = |key: &str| section.get(key).and_then(|v| v.last()).map(String::as_str);
    let flag = |key: &str| -> Result<Option<bool>> {
        match last(key) {
            None => Ok(None),
            Some(v) => parse_oslo_bool(v).map(Some).ok_or_else(|| {
                Error::bad_input(format!(
                    "{}: [glance] {key} = \"{v}\" is not a boolean",
                    path.display()
                ))
            }),
        }
    };
    Ok(GlanceOptions {
        verify_glance_signatures: flag("verify_glance_signatures")?,
        enable_certificate_validation: flag("enable_certificate_validation")?,
        default_trusted_certificate_ids: last("default_trusted_certificate_ids").map(split_ids),
    })
}

/// Sections (names as oslo.config normalizes them) → option → every value
/// given, in order.
type OsloSections =
    std::collections::HashMap<String, std::collections::HashMap<String, Vec<String>>>;

/// oslo.config's `iniparser.BaseParser` and `ConfigParser`, which no INI
/// crate follows: indented lines continue the previous value (joined with a
/// newline; a blank line ends it), `#` and `;` start comment lines only, a
/// key ends at the first `=` or `:`, one pair of surrounding quotes is
/// removed, repeated sections merge, every value of a repeated option is
/// kept (the last one counts), and section names other than `DEFAULT` are
/// lower-cased. `Err` is (line number, what oslo would raise).
fn parse_oslo_ini(text: &str) -> std::result::Result<OsloSections, (usize, String)> {
    let mut sections = OsloSections::new();
    let mut section: Option<String> = None;
    let mut pending: Option<(String, Vec<String>)> = None;
    let flush = |sections: &mut OsloSections,
                 section: &Option<String>,
                 pending: &mut Option<(String, Vec<String>)>,
                 line: usize|
     -> std::result::Result<(), (usize, String)> {
        if let Some((key, value)) = pending.take() {
            let Some(name) = section else {
                return Err((line, "an option before any [section]".into()));
            };
            sections
                .entry(name.clone())
                .or_default()
                .entry(key)
                .or_default()
                .push(value.join("\n"));
        }
        Ok(())
    };
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim_end();
        if line.is_empty() {
            flush(&mut sections, &section, &mut pending, number)?;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match &mut pending {
                Some((_, value)) => value.push(line.trim_start().to_string()),
                None => return Err((number, "a continuation line with no option above it".into())),
            }
            continue;
        }
        flush(&mut sections, &section, &mut pending, number)?;
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err((
                    number,
                    format!("section header \"{line}\" has no closing ]"),
                ));
            };
            if name.is_empty() {
                return Err((number, "an empty section name".into()));
            }
            let name = if name == "DEFAULT" {
                name.to_string()
            } else {
                name.to_lowercase()
            };
            sections.entry(name.clone()).or_default();
            section = Some(name);
        } else if line.starts_with(['#', ';']) {
            continue;
        } else {
            let at = match (line.find('='), line.find(':')) {
                (Some(e), Some(c)) => e.min(c),
                (Some(e), None) => e,
                (None, Some(c)) => c,
                (None, None) => {
                    return Err((number, format!("\"{line}\" is not key = value")));
                }
            };
            let key = line[..at].trim();
            if key.is_empty() {
                return Err((number, "an option with no name".into()));
            }
            let mut value = line[at + 1..].trim();
            // Python's `value[1:-1]` when the first and last characters are
            // the same quote: a lone quote becomes the empty string.
            if (value.starts_with('"') || value.starts_with('\'')) && value.ends_with(&value[..1]) {
                value = value.get(1..value.len() - 1).unwrap_or("");
            }
            pending = Some((key.to_string(), vec![value.to_string()]));
        }
    }
    flush(&mut sections, &section, &mut pending, text.lines().count())?;
    Ok(sections)
}

/// oslo.config's boolean spellings.
fn parse_oslo_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Where the trusted ids in force came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum TrustSource {
    /// `--trusted-cert-id`.
    CommandLine,
    /// `OS_TRUSTED_IMAGE_CERTIFICATE_IDS`.
    Environment,
    /// `default_trusted_certificate_ids` in this file.
    Config(PathBuf),
    /// The anchor set sealed in the TPM.
    Tpm,
    /// No ids, and certificate validation is not enabled.
    None,
}

impl std::fmt::Display for TrustSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrustSource::CommandLine => write!(f, "--trusted-cert-id"),
            TrustSource::Environment => write!(f, "OS_TRUSTED_IMAGE_CERTIFICATE_IDS"),
            TrustSource::Config(p) => {
                write!(f, "default_trusted_certificate_ids in {}", p.display())
            }
            TrustSource::Tpm => write!(f, "the TPM-sealed anchors"),
            TrustSource::None => write!(f, "none"),
        }
    }
}

/// The decision of whether and against what to validate the certificate.
#[derive(Debug, Clone, Serialize)]
pub struct TrustSettings {
    pub validate_certificate: bool,
    pub trusted_ids: Vec<String>,
    pub source: TrustSource,
    /// Whether Nova, configured this way, would verify the signature at all.
    pub nova_verifies_signature: bool,
}

/// Resolves trusted ids and whether to validate, as Nova does.
/// `nova` (from `--nova-conf`) overrides the same options in `config`.
pub fn resolve_trust(
    flag_ids: &[String],
    env_ids: Option<&str>,
    config: &Config,
    nova: Option<(&Path, &GlanceOptions)>,
) -> TrustSettings {
    let flag_ids: Vec<String> = flag_ids.iter().flat_map(|s| split_ids(s)).collect();
    let env_ids = env_ids.map(split_ids).unwrap_or_default();
    let pick = |f: fn(&GlanceOptions) -> Option<bool>| -> bool {
        nova.and_then(|(_, g)| f(g))
            .or_else(|| f(&config.glance))
            .unwrap_or(false)
    };
    let verify = pick(|g| g.verify_glance_signatures);
    let validate = pick(|g| g.enable_certificate_validation);
    if !flag_ids.is_empty() {
        return TrustSettings {
            validate_certificate: true,
            trusted_ids: flag_ids,
            source: TrustSource::CommandLine,
            nova_verifies_signature: true,
        };
    }
    if !env_ids.is_empty() {
        return TrustSettings {
            validate_certificate: true,
            trusted_ids: env_ids,
            source: TrustSource::Environment,
            nova_verifies_signature: true,
        };
    }
    if verify && validate {
        let (ids, path) = match nova.and_then(|(p, g)| {
            g.default_trusted_certificate_ids
                .clone()
                .map(|ids| (ids, p.to_path_buf()))
        }) {
            Some(found) => found,
            None => (
                config
                    .glance
                    .default_trusted_certificate_ids
                    .clone()
                    .unwrap_or_default(),
                config
                    .path
                    .clone()
                    .or_else(|| nova.map(|(p, _)| p.to_path_buf()))
                    .unwrap_or_default(),
            ),
        };
        return TrustSettings {
            validate_certificate: true,
            trusted_ids: ids,
            source: TrustSource::Config(path),
            nova_verifies_signature: true,
        };
    }
    TrustSettings {
        validate_certificate: false,
        trusted_ids: Vec::new(),
        source: TrustSource::None,
        nova_verifies_signature: verify,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(verify: Option<bool>, validate: Option<bool>, ids: Option<&str>) -> Config {
        Config {
            glance: GlanceOptions {
                verify_glance_signatures: verify,
                enable_certificate_validation: validate,
                default_trusted_certificate_ids: ids.map(split_ids),
            },
            path: Some(PathBuf::from("/etc/imgseal.toml")),
            ..Default::default()
        }
    }

    #[test]
    fn command_line_ids_win_and_force_validation() {
        let c = config(Some(false), Some(false), Some("d1"));
        let t = resolve_trust(&["a,b".into(), "c".into()], Some("e1"), &c, None);
        assert!(t.validate_certificate);
        assert_eq!(t.trusted_ids, ["a", "b", "c"]);
        assert_eq!(t.source, TrustSource::CommandLine);
        let t = resolve_trust(&[], Some(" e1 , e2,"), &c, None);
        assert_eq!(t.trusted_ids, ["e1", "e2"]);
        assert_eq!(t.source, TrustSource::Environment);
    }

    #[test]
    fn defaults_apply_only_when_both_options_are_true() {
        let t = resolve_trust(
            &[],
            None,
            &config(Some(true), Some(false), Some("d1")),
            None,
        );
        assert!(!t.validate_certificate);
        assert!(t.nova_verifies_signature);
        let t = resolve_trust(&[], None, &config(None, Some(true), Some("d1")), None);
        assert!(!t.validate_certificate);
        let t = resolve_trust(
            &[],
            None,
            &config(Some(true), Some(true), Some("d1,d2")),
            None,
        );
        assert!(t.validate_certificate);
        assert_eq!(t.trusted_ids, ["d1", "d2"]);
        assert_eq!(
            t.source,
            TrustSource::Config(PathBuf::from("/etc/imgseal.toml"))
        );
        // Enabled with no ids: validation runs against nothing, as in Nova.
        let t = resolve_trust(&[], None, &config(Some(true), Some(true), None), None);
        assert!(t.validate_certificate && t.trusted_ids.is_empty());
    }

    #[test]
    fn nova_conf_overrides_imgseal_config() {
        let nova = GlanceOptions {
            verify_glance_signatures: Some(true),
            enable_certificate_validation: Some(true),
            default_trusted_certificate_ids: Some(vec!["n1".into()]),
        };
        let t = resolve_trust(
            &[],
            None,
            &config(Some(false), None, Some("d1")),
            Some((Path::new("/etc/nova/nova.conf"), &nova)),
        );
        assert_eq!(t.trusted_ids, ["n1"]);
        assert_eq!(
            t.source,
            TrustSource::Config(PathBuf::from("/etc/nova/nova.conf"))
        );
    }

    #[test]
    fn reads_a_real_nova_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nova.conf");
        std::fs::write(
            &path,
            "[DEFAULT]\ndebug = True\n# comment\n[glance]\napi_servers = http://g:9292\nverify_glance_signatures = True\nenable_certificate_validation = true\ndefault_trusted_certificate_ids = 79a6ad17-3298-4e55-8b3a-1672dd93c40f, b20f5600-3c9d-4af5-8f37-3110df3533a0\n[key_manager]\nbackend = barbican\n",
        )
        .unwrap();
        let g = read_nova_conf(&path).unwrap();
        assert_eq!(g.verify_glance_signatures, Some(true));
        assert_eq!(g.enable_certificate_validation, Some(true));
        assert_eq!(
            g.default_trusted_certificate_ids.unwrap(),
            [
                "79a6ad17-3298-4e55-8b3a-1672dd93c40f",
                "b20f5600-3c9d-4af5-8f37-3110df3533a0"
            ]
        );
        std::fs::write(&path, "[glance]\nverify_glance_signatures = maybe\n").unwrap();
        let e = read_nova_conf(&path).unwrap_err().to_string();
        assert!(
            e.contains("verify_glance_signatures = \"maybe\" is not a boolean"),
            "{e}"
        );
    }

    #[test]
    fn nova_conf_is_read_as_oslo_config_reads_it() {
        let path = Path::new("nova.conf");
        let read = |text: &str| parse_nova_conf(text, path).unwrap();
        // An indented line continues the value (oslo joins with a newline;
        // the list type strips each item).
        let g = read(
            "[glance]\ndefault_trusted_certificate_ids = ca,\n    inta\nverify_glance_signatures = True\nenable_certificate_validation = True\n",
        );
        assert_eq!(g.default_trusted_certificate_ids.unwrap(), ["ca", "inta"]);
        assert_eq!(g.verify_glance_signatures, Some(true));
        assert_eq!(g.enable_certificate_validation, Some(true));
        // The last value counts, repeated sections merge, group names are
        // lower-cased, and one pair of quotes goes.
        let g = read(
            "[GLANCE]\nverify_glance_signatures = False\n[DEFAULT]\ndebug = true\n[Glance]\nverify_glance_signatures: \"True\"\ndefault_trusted_certificate_ids = 'a,b'\n",
        );
        assert_eq!(g.verify_glance_signatures, Some(true));
        assert_eq!(g.default_trusted_certificate_ids.unwrap(), ["a", "b"]);
        // The first of = and : ends the key; comments are whole lines.
        let g = read("[glance]\n# verify_glance_signatures = False\nverify_glance_signatures=on\n");
        assert_eq!(g.verify_glance_signatures, Some(true));
        // What oslo.config refuses, with the line.
        for (text, why) in [
            (
                "[glance\n",
                "line 1: section header \"[glance\" has no closing ]",
            ),
            ("[]\n", "line 1: an empty section name"),
            (
                "verify_glance_signatures = True\n",
                "an option before any [section]",
            ),
            (
                "  indented\n",
                "line 1: a continuation line with no option above it",
            ),
            (
                "[glance]\nverify_glance_signatures\n",
                "line 2: \"verify_glance_signatures\" is not key = value",
            ),
            ("[glance]\n= True\n", "line 2: an option with no name"),
        ] {
            let e = parse_nova_conf(text, path).unwrap_err().to_string();
            assert!(
                e.contains("not a nova.conf (INI)") && e.contains(why),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn imgseal_config_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[glance]\nverify_glance_signatures = true\nbogus = 1\n",
        )
        .unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("at line 3") && e.contains("bogus"), "{e}");
        std::fs::write(&path, "[glance]\ndefault_trusted_certificate_ids = \"a, b\"\n[validation]\npolicy = \"nova\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(
            c.glance.default_trusted_certificate_ids.unwrap(),
            ["a", "b"]
        );
        assert_eq!(c.validation.policy, Some(PolicyName::Nova));
    }
}
