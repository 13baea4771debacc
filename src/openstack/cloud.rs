//! Where a cloud's credentials come from, as OpenStack users configure
//! clients: `--os-cloud NAME` / `$OS_CLOUD` with `clouds.yaml` and
//! `secure.yaml` (found where openstacksdk looks), else the `OS_*`
//! environment. Secrets (passwords, application-credential secrets, tokens)
//! live in zeroizing strings and never reach `Debug` output or messages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A secret string: zeroized on drop, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(s.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// A name or an id, as Keystone takes users, projects and domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    Id(String),
    Name(String),
}

/// How to get a token from Keystone v3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    Password {
        user: Named,
        /// The user's domain, when the user is named rather than given by id.
        user_domain: Option<Named>,
        password: Secret,
    },
    ApplicationCredential {
        /// By id, or by name with its user.
        credential: Named,
        user: Option<(Named, Option<Named>)>,
        secret: Secret,
    },
    Token {
        token: Secret,
    },
}

/// The project a token is scoped to (application credentials carry their own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectScope {
    pub project: Named,
    pub domain: Option<Named>,
}

/// Everything needed to reach a cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudConfig {
    /// Keystone's URL, `…/v3` or the unversioned root.
    pub auth_url: String,
    pub auth: AuthMethod,
    pub scope: Option<ProjectScope>,
    pub region: Option<String>,
    /// `public` (default), `internal` or `admin`.
    pub interface: String,
    /// Extra trusted roots (`OS_CACERT` / `cacert`); else the system's.
    pub cacert: Option<PathBuf>,
    /// A client certificate and key (`OS_CERT` / `OS_KEY`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `OS_INSECURE` / `verify: false`: no TLS verification.
    pub insecure: bool,
    /// clouds.yaml's `cache: {auth: true}` (openstacksdk's switch): keep the
    /// token between runs ([`super::token_cache`]).
    pub cache_auth: bool,
    /// Where this came from, for messages: `cloud "x" in /path/clouds.yaml`
    /// or `the OS_* environment`.
    pub origin: String,
}

/// The directories openstacksdk searches for clouds.yaml and secure.yaml, in order.
pub fn default_search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(".")];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".config/openstack"));
    }
    dirs.push(PathBuf::from("/etc/openstack"));
    dirs
}

/// The cloud named by `os_cloud` (flag, else `$OS_CLOUD`) in clouds.yaml, or
/// the `OS_*` environment; `None` when neither names a cloud.
pub fn resolve(
    os_cloud: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    search_dirs: &[PathBuf],
) -> Result<Option<CloudConfig>> {
    let name = os_cloud
        .map(str::to_string)
        .or_else(|| env("OS_CLOUD").filter(|s| !s.is_empty()));
    match name {
        Some(name) => from_clouds_yaml(&name, env, search_dirs).map(Some),
        None => from_environment(env),
    }
}

// ---- clouds.yaml -------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct CloudsFile {
    #[serde(default)]
    clouds: BTreeMap<String, CloudEntry>,
    #[serde(default)]
    cache: CacheEntry,
}

/// openstacksdk's `cache:` section; only `auth` means anything to imgseal.
#[derive(Debug, Default, Deserialize)]
struct CacheEntry {
    #[serde(default)]
    auth: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct CloudEntry {
    auth: AuthEntry,
    auth_type: Option<String>,
    region_name: Option<String>,
    interface: Option<String>,
    cacert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    verify: Option<bool>,
    identity_api_version: Option<serde_saphyr_value::Scalar>,
}

/// `identity_api_version` is written as 3 or "3".
mod serde_saphyr_value {
    use serde::Deserialize;

    #[derive(Debug, Clone, Deserialize)]
    #[serde(untagged)]
    pub(super) enum Scalar {
        Int(i64),
        Float(f64),
        Text(String),
    }

    impl Scalar {
        pub(super) fn as_text(&self) -> String {
            match self {
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Text(t) => t.clone(),
            }
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
struct AuthEntry {
    auth_url: Option<String>,
    username: Option<String>,
    user_id: Option<String>,
    password: Option<Secret>,
    user_domain_name: Option<String>,
    user_domain_id: Option<String>,
    project_name: Option<String>,
    project_id: Option<String>,
    tenant_name: Option<String>,
    tenant_id: Option<String>,
    project_domain_name: Option<String>,
    project_domain_id: Option<String>,
    domain_name: Option<String>,
    domain_id: Option<String>,
    application_credential_id: Option<String>,
    application_credential_name: Option<String>,
    application_credential_secret: Option<Secret>,
    token: Option<Secret>,
}

impl AuthEntry {
    /// `secure` over `self`, field by field (secure.yaml holds the secrets).
    fn merged(self, secure: AuthEntry) -> AuthEntry {
        macro_rules! pick {
            ($($f:ident),*) => { AuthEntry { $($f: secure.$f.or(self.$f)),* } };
        }
        pick!(
            auth_url,
            username,
            user_id,
            password,
            user_domain_name,
            user_domain_id,
            project_name,
            project_id,
            tenant_name,
            tenant_id,
            project_domain_name,
            project_domain_id,
            domain_name,
            domain_id,
            application_credential_id,
            application_credential_name,
            application_credential_secret,
            token
        )
    }
}

impl CloudEntry {
    fn merged(self, secure: CloudEntry) -> CloudEntry {
        CloudEntry {
            auth: self.auth.merged(secure.auth),
            auth_type: secure.auth_type.or(self.auth_type),
            region_name: secure.region_name.or(self.region_name),
            interface: secure.interface.or(self.interface),
            cacert: secure.cacert.or(self.cacert),
            cert: secure.cert.or(self.cert),
            key: secure.key.or(self.key),
            verify: secure.verify.or(self.verify),
            identity_api_version: secure.identity_api_version.or(self.identity_api_version),
        }
    }
}

/// The first `name` file in the search path, or `$OS_CLIENT_CONFIG_FILE`
/// for clouds.yaml.
fn find_file(
    name: &str,
    override_var: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    dirs: &[PathBuf],
) -> Option<PathBuf> {
    if let Some(path) = override_var.and_then(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn read_yaml(path: &Path) -> Result<CloudsFile> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if text.trim().is_empty() {
        return Ok(CloudsFile::default());
    }
    serde_saphyr::from_str::<CloudsFile>(&text).map_err(|e| {
        // The parser's message names the line and column; secrets are values
        // it does not quote back for type errors of the fields we read.
        let first = e.to_string();
        let first = first.lines().next().unwrap_or("malformed YAML").to_string();
        Error::bad_input(format!("{}: not a clouds.yaml: {first}", path.display()))
    })
}

fn from_clouds_yaml(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    dirs: &[PathBuf],
) -> Result<CloudConfig> {
    let Some(path) = find_file("clouds.yaml", Some("OS_CLIENT_CONFIG_FILE"), env, dirs) else {
        let looked: Vec<String> = dirs
            .iter()
            .map(|d| d.join("clouds.yaml").display().to_string())
            .collect();
        return Err(Error::usage(format!(
            "cloud \"{name}\" (--os-cloud or $OS_CLOUD): no clouds.yaml found (looked at {})",
            looked.join(", ")
        )));
    };
    let mut clouds = read_yaml(&path)?;
    let Some(entry) = clouds.clouds.remove(name) else {
        let known: Vec<&String> = clouds.clouds.keys().collect();
        return Err(Error::usage(format!(
            "cloud \"{name}\" is not in {} (it has: {})",
            path.display(),
            if known.is_empty() {
                "no clouds".to_string()
            } else {
                known
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    };
    let secure = find_file("secure.yaml", Some("OS_CLIENT_SECURE_FILE"), env, dirs)
        .map(|p| read_yaml(&p))
        .transpose()?
        .and_then(|mut f| f.clouds.remove(name))
        .unwrap_or_default();
    let origin = format!("cloud \"{name}\" in {}", path.display());
    let mut config = config_from_entry(entry.merged(secure), origin)?;
    config.cache_auth = clouds.cache.auth;
    Ok(config)
}

fn named(id: Option<String>, name: Option<String>) -> Option<Named> {
    id.filter(|s| !s.is_empty())
        .map(Named::Id)
        .or_else(|| name.filter(|s| !s.is_empty()).map(Named::Name))
}

fn config_from_entry(entry: CloudEntry, origin: String) -> Result<CloudConfig> {
    if let Some(v) = &entry.identity_api_version {
        let v = v.as_text();
        if !(v == "3" || v.starts_with("3.")) {
            return Err(Error::usage(format!(
                "{origin}: identity_api_version {v}: imgseal speaks Keystone v3 only"
            )));
        }
    }
    let a = entry.auth;
    let auth_url = a
        .auth_url
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::usage(format!("{origin}: no auth_url")))?;
    let domain_default = named(a.domain_id.clone(), a.domain_name.clone());
    let user_domain = named(a.user_domain_id.clone(), a.user_domain_name.clone())
        .or_else(|| domain_default.clone());
    let project = named(
        a.project_id.clone().or(a.tenant_id.clone()),
        a.project_name.clone().or(a.tenant_name.clone()),
    );
    let scope = project.map(|project| ProjectScope {
        project,
        domain: named(a.project_domain_id.clone(), a.project_domain_name.clone())
            .or_else(|| domain_default.clone()),
    });
    let kind = entry
        .auth_type
        .as_deref()
        .map(|t| t.trim_start_matches("v3").to_string());
    let auth = match kind.as_deref() {
        Some("applicationcredential") => application_credential(&a, user_domain, &origin)?,
        Some("token") => AuthMethod::Token {
            token: a
                .token
                .clone()
                .ok_or_else(|| Error::usage(format!("{origin}: auth_type token but no token")))?,
        },
        Some("password") | None if a.application_credential_secret.is_some() && kind.is_none() => {
            application_credential(&a, user_domain, &origin)?
        }
        Some("password") | None => password(&a, user_domain, &origin)?,
        Some(other) => {
            return Err(Error::usage(format!(
                "{origin}: auth_type \"{}\" is not supported (password, v3applicationcredential, token)",
                entry.auth_type.as_deref().unwrap_or(other)
            )));
        }
    };
    Ok(CloudConfig {
        auth_url,
        // Application credentials are bound to their project.
        scope: if matches!(auth, AuthMethod::ApplicationCredential { .. }) {
            None
        } else {
            scope
        },
        auth,
        region: entry.region_name.filter(|r| !r.is_empty()),
        interface: normalise_interface(entry.interface.as_deref(), &origin)?,
        cacert: entry.cacert,
        client_cert: match (entry.cert, entry.key) {
            (Some(c), Some(k)) => Some((c, k)),
            (Some(c), None) => Some((c.clone(), c)),
            (None, Some(_)) => {
                return Err(Error::usage(format!(
                    "{origin}: a client key without a cert"
                )));
            }
            (None, None) => None,
        },
        insecure: entry.verify == Some(false),
        cache_auth: false,
        origin,
    })
}

fn password(a: &AuthEntry, user_domain: Option<Named>, origin: &str) -> Result<AuthMethod> {
    let user = named(a.user_id.clone(), a.username.clone())
        .ok_or_else(|| Error::usage(format!("{origin}: no username or user_id")))?;
    let password = a
        .password
        .clone()
        .ok_or_else(|| Error::usage(format!("{origin}: no password")))?;
    if matches!(user, Named::Name(_)) && user_domain.is_none() {
        return Err(Error::usage(format!(
            "{origin}: a username needs user_domain_name or user_domain_id"
        )));
    }
    Ok(AuthMethod::Password {
        user,
        user_domain,
        password,
    })
}

fn application_credential(
    a: &AuthEntry,
    user_domain: Option<Named>,
    origin: &str,
) -> Result<AuthMethod> {
    let secret = a
        .application_credential_secret
        .clone()
        .ok_or_else(|| Error::usage(format!("{origin}: no application_credential_secret")))?;
    let credential = named(
        a.application_credential_id.clone(),
        a.application_credential_name.clone(),
    )
    .ok_or_else(|| {
        Error::usage(format!(
            "{origin}: no application_credential_id or application_credential_name"
        ))
    })?;
    let user = match &credential {
        Named::Id(_) => None,
        Named::Name(_) => Some((
            named(a.user_id.clone(), a.username.clone()).ok_or_else(|| {
                Error::usage(format!(
                    "{origin}: an application credential named by name needs its user"
                ))
            })?,
            user_domain,
        )),
    };
    Ok(AuthMethod::ApplicationCredential {
        credential,
        user,
        secret,
    })
}

fn normalise_interface(value: Option<&str>, origin: &str) -> Result<String> {
    let v = value.unwrap_or("public").trim().trim_end_matches("URL");
    match v {
        "public" | "internal" | "admin" => Ok(v.to_string()),
        other => Err(Error::usage(format!(
            "{origin}: interface \"{other}\" (public, internal or admin)"
        ))),
    }
}

// ---- the OS_* environment ----------------------------------------------------

fn from_environment(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<CloudConfig>> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    let Some(auth_url) = get("OS_AUTH_URL") else {
        return Ok(None);
    };
    let entry = CloudEntry {
        auth: AuthEntry {
            auth_url: Some(auth_url),
            username: get("OS_USERNAME"),
            user_id: get("OS_USER_ID"),
            password: get("OS_PASSWORD").map(Secret::new),
            user_domain_name: get("OS_USER_DOMAIN_NAME"),
            user_domain_id: get("OS_USER_DOMAIN_ID"),
            project_name: get("OS_PROJECT_NAME").or_else(|| get("OS_TENANT_NAME")),
            project_id: get("OS_PROJECT_ID").or_else(|| get("OS_TENANT_ID")),
            tenant_name: None,
            tenant_id: None,
            project_domain_name: get("OS_PROJECT_DOMAIN_NAME"),
            project_domain_id: get("OS_PROJECT_DOMAIN_ID"),
            domain_name: get("OS_DOMAIN_NAME"),
            domain_id: get("OS_DOMAIN_ID"),
            application_credential_id: get("OS_APPLICATION_CREDENTIAL_ID"),
            application_credential_name: get("OS_APPLICATION_CREDENTIAL_NAME"),
            application_credential_secret: get("OS_APPLICATION_CREDENTIAL_SECRET").map(Secret::new),
            token: get("OS_TOKEN").map(Secret::new),
        },
        auth_type: get("OS_AUTH_TYPE").or_else(|| {
            if get("OS_APPLICATION_CREDENTIAL_SECRET").is_some() {
                Some("v3applicationcredential".into())
            } else if get("OS_TOKEN").is_some() && get("OS_PASSWORD").is_none() {
                Some("v3token".into())
            } else {
                None
            }
        }),
        region_name: get("OS_REGION_NAME"),
        interface: get("OS_INTERFACE").or_else(|| get("OS_ENDPOINT_TYPE")),
        cacert: get("OS_CACERT").map(PathBuf::from),
        cert: get("OS_CERT").map(PathBuf::from),
        key: get("OS_KEY").map(PathBuf::from),
        verify: get("OS_INSECURE")
            .map(|v| !matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")),
        identity_api_version: get("OS_IDENTITY_API_VERSION").map(serde_saphyr_value::Scalar::Text),
    };
    config_from_entry(entry, "the OS_* environment".to_string()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const CLOUDS: &str = r#"
clouds:
  prod:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: release
      project_name: images
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionTwo
    interface: internal
    identity_api_version: 3
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000/v3
      application_credential_id: abc123
      application_credential_secret: s3cr3t
"#;

    fn dir_with(clouds: &str, secure: Option<&str>) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("clouds.yaml"), clouds).unwrap();
        if let Some(s) = secure {
            std::fs::write(d.path().join("secure.yaml"), s).unwrap();
        }
        d
    }

    #[test]
    fn a_cloud_from_clouds_yaml_with_its_password_in_secure_yaml() {
        let d = dir_with(
            CLOUDS,
            Some("clouds:\n  prod:\n    auth:\n      password: hunter2\n"),
        );
        let cfg = resolve(Some("prod"), &env_of(&[]), &[d.path().to_path_buf()])
            .unwrap()
            .unwrap();
        assert_eq!(cfg.auth_url, "https://keystone.example:5000/v3");
        assert_eq!(cfg.region.as_deref(), Some("RegionTwo"));
        assert_eq!(cfg.interface, "internal");
        let AuthMethod::Password { user, password, .. } = &cfg.auth else {
            panic!("{cfg:?}")
        };
        assert_eq!(user, &Named::Name("release".into()));
        assert_eq!(password.expose(), "hunter2");
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert_eq!(cfg.scope.unwrap().project, Named::Name("images".into()));
    }

    #[test]
    fn os_cloud_from_the_environment_and_application_credentials() {
        let d = dir_with(CLOUDS, None);
        let cfg = resolve(
            None,
            &env_of(&[("OS_CLOUD", "appcred")]),
            &[d.path().into()],
        )
        .unwrap()
        .unwrap();
        assert!(matches!(
            cfg.auth,
            AuthMethod::ApplicationCredential { ref credential, .. } if credential == &Named::Id("abc123".into())
        ));
        assert!(cfg.scope.is_none());
    }

    #[test]
    fn unknown_clouds_missing_files_and_malformed_yaml_are_clear() {
        let d = dir_with(CLOUDS, None);
        let e = resolve(Some("nope"), &env_of(&[]), &[d.path().into()]).unwrap_err();
        assert!(e.to_string().contains("\"prod\""), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = resolve(Some("prod"), &env_of(&[]), &[empty.path().into()]).unwrap_err();
        assert!(e.to_string().contains("no clouds.yaml found"), "{e}");
        let bad = dir_with("clouds: [1, 2\n", None);
        let e = resolve(Some("prod"), &env_of(&[]), &[bad.path().into()]).unwrap_err();
        assert!(e.to_string().contains("not a clouds.yaml"), "{e}");
    }

    #[test]
    fn the_os_environment() {
        let env = env_of(&[
            ("OS_AUTH_URL", "http://127.0.0.1:5000/v3"),
            ("OS_USERNAME", "admin"),
            ("OS_PASSWORD", "pw"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_NAME", "admin"),
            ("OS_PROJECT_DOMAIN_ID", "default"),
            ("OS_INSECURE", "true"),
        ]);
        let cfg = resolve(None, &env, &[]).unwrap().unwrap();
        assert!(cfg.insecure);
        assert_eq!(cfg.interface, "public");
        assert_eq!(cfg.scope.unwrap().domain, Some(Named::Id("default".into())));
        assert!(resolve(None, &env_of(&[]), &[]).unwrap().is_none());
        let token = env_of(&[("OS_AUTH_URL", "http://k/v3"), ("OS_TOKEN", "tok")]);
        let cfg = resolve(None, &token, &[]).unwrap().unwrap();
        assert!(matches!(cfg.auth, AuthMethod::Token { .. }));
    }
}
