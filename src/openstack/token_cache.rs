//! Keystone tokens kept between runs, when the user asks for it (openstacksdk's
//! `cache: {auth: true}` in clouds.yaml, or `--os-token-cache`): a compute
//! host verifying image after image then pays Keystone's password hashing
//! and Barbican's token validation once an hour, not once per image.
//!
//! A cached token is a live credential, so the cache is private (directory
//! 0700, files 0600, preferably on the per-user tmpfs `$XDG_RUNTIME_DIR`),
//! an entry is named by a salted hash of everything that identifies the login
//! (the secret included: a changed or wrong password never reuses the old
//! token), and an entry with under five minutes left is not used.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cloud::{AuthMethod, CloudConfig, Named, Secret};
use super::session::CatalogService;
use crate::error::{Error, Result};
use crate::home::write_private_file;

/// A token must have this long left to be reused: a verify that starts with
/// it should not lose it half-way.
const MARGIN: time::Duration = time::Duration::minutes(5);

/// The directory of cached tokens.
#[derive(Debug, Clone)]
pub struct TokenCache {
    dir: PathBuf,
}

/// A token read back from the cache.
pub(super) struct CachedToken {
    pub(super) token: Secret,
    pub(super) catalog: Vec<CatalogService>,
    pub(super) expires_at: time::OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    token: String,
    expires_at: String,
    catalog: Vec<CatalogService>,
}

impl TokenCache {
    /// The cache in `dir`, created private if missing; refused when someone
    /// else could read or replace what it holds.
    pub fn open(dir: &Path) -> Result<TokenCache> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(dir, e))?;
        }
        let meta = fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
        let mode = meta.permissions().mode() & 0o777;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() || std::os::unix::fs::MetadataExt::uid(&meta) != me || mode & 0o077 != 0 {
            return Err(Error::bad_input(format!(
                "token cache {}: must be a directory of yours with mode 0700 (it holds live tokens); it is mode {mode:04o}",
                dir.display()
            )));
        }
        Ok(TokenCache {
            dir: dir.to_path_buf(),
        })
    }

    /// The default place: `$XDG_RUNTIME_DIR/imgseal/os-tokens` (a per-user
    /// tmpfs, gone at logout), else `os-tokens` in imgseal's home.
    pub fn default_dir() -> Result<PathBuf> {
        if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            return Ok(Path::new(&run).join("imgseal/os-tokens"));
        }
        Ok(crate::home::Home::from_env()?.dir.join("os-tokens"))
    }

    /// The token cached for `config`'s login, if it has time left.
    pub(super) fn load(&self, config: &CloudConfig) -> Option<CachedToken> {
        let path = self.entry_path(config).ok()?;
        let bytes = fs::read(&path).ok()?;
        let entry: Entry = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(_) => {
                tracing::debug!(path = %path.display(), "token cache: unreadable entry ignored");
                return None;
            }
        };
        let expires_at = parse_time(&entry.expires_at)?;
        if expires_at - time::OffsetDateTime::now_utc() < MARGIN {
            return None;
        }
        Some(CachedToken {
            token: Secret::new(entry.token),
            catalog: entry.catalog,
            expires_at,
        })
    }

    /// Keeps `token` for `config`'s login until `expires_at` (Keystone's).
    pub(super) fn save(
        &self,
        config: &CloudConfig,
        token: &Secret,
        expires_at: &str,
        catalog: &[CatalogService],
    ) -> Result<()> {
        if parse_time(expires_at).is_none() {
            return Err(Error::service(format!(
                "Keystone's expires_at \"{}\" is not a time: token not cached",
                expires_at.escape_default()
            )));
        }
        let entry = Entry {
            token: token.expose().to_string(),
            expires_at: expires_at.to_string(),
            catalog: catalog.to_vec(),
        };
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec(&entry).map_err(|e| Error::service(e.to_string()))?,
        );
        let mut entry = entry;
        zeroize::Zeroize::zeroize(&mut entry.token);
        write_private_file(&self.entry_path(config)?, &bytes)
    }

    /// Drops the entry for `config`'s login (Keystone refused its token).
    pub(super) fn forget(&self, config: &CloudConfig) {
        if let Ok(path) = self.entry_path(config) {
            let _ = fs::remove_file(path);
        }
    }

    /// `<dir>/<hex>.json`, the hex a salted SHA-256 of the login. The salt is
    /// per cache, so the names say nothing about a password elsewhere.
    fn entry_path(&self, config: &CloudConfig) -> Result<PathBuf> {
        let salt = self.salt()?;
        let mut h = Sha256::new();
        h.update(&salt);
        for part in login_identity(config) {
            // Length-prefixed, so no two logins hash the same parts.
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        Ok(self.dir.join(format!("{}.json", hex::encode(h.finalize()))))
    }

    fn salt(&self) -> Result<Vec<u8>> {
        let path = self.dir.join("salt");
        match fs::read(&path) {
            Ok(s) if s.len() == 32 => Ok(s),
            _ => {
                let salt: [u8; 32] = rand::random();
                write_private_file(&path, &salt)?;
                Ok(salt.to_vec())
            }
        }
    }
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn named(n: &Named) -> String {
    match n {
        Named::Id(id) => format!("id:{id}"),
        Named::Name(name) => format!("name:{name}"),
    }
}

fn opt_named(n: &Option<Named>) -> String {
    n.as_ref().map(named).unwrap_or_default()
}

/// Everything that decides which token Keystone issues.
fn login_identity(config: &CloudConfig) -> Vec<String> {
    let mut parts = vec![
        "imgseal token cache v1".to_string(),
        config.auth_url.clone(),
    ];
    match &config.auth {
        AuthMethod::Password {
            user,
            user_domain,
            password,
        } => parts.extend([
            "password".into(),
            named(user),
            opt_named(user_domain),
            password.expose().to_string(),
        ]),
        AuthMethod::ApplicationCredential {
            credential,
            user,
            secret,
        } => parts.extend([
            "application_credential".into(),
            named(credential),
            user.as_ref()
                .map(|(u, d)| format!("{}/{}", named(u), opt_named(d)))
                .unwrap_or_default(),
            secret.expose().to_string(),
        ]),
        AuthMethod::Token { token } => parts.extend(["token".into(), token.expose().to_string()]),
    }
    if let Some(scope) = &config.scope {
        parts.extend([named(&scope.project), opt_named(&scope.domain)]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(password: &str) -> CloudConfig {
        CloudConfig {
            auth_url: "http://keystone.example/v3".into(),
            auth: AuthMethod::Password {
                user: Named::Name("alice".into()),
                user_domain: Some(Named::Name("Default".into())),
                password: Secret::new(password),
            },
            scope: None,
            region: None,
            interface: "public".into(),
            cacert: None,
            client_cert: None,
            insecure: false,
            cache_auth: true,
            origin: "test".into(),
        }
    }

    fn in_an_hour() -> String {
        (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    }

    #[test]
    fn a_saved_token_comes_back_for_the_same_login_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(&dir.path().join("c")).unwrap();
        cache
            .save(&config("right"), &Secret::new("tok-1"), &in_an_hour(), &[])
            .unwrap();
        let back = cache.load(&config("right")).expect("cached");
        assert_eq!(back.token.expose(), "tok-1");
        assert!(cache.load(&config("wrong")).is_none());
        cache.forget(&config("right"));
        assert!(cache.load(&config("right")).is_none());
    }

    #[test]
    fn a_token_about_to_expire_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TokenCache::open(&dir.path().join("c")).unwrap();
        let soon = (time::OffsetDateTime::now_utc() + time::Duration::minutes(2))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        cache
            .save(&config("p"), &Secret::new("tok"), &soon, &[])
            .unwrap();
        assert!(cache.load(&config("p")).is_none());
    }

    #[test]
    fn the_cache_files_are_private_and_hold_no_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let cache = TokenCache::open(&path).unwrap();
        cache
            .save(
                &config("hunter2-secret"),
                &Secret::new("tok"),
                &in_an_hour(),
                &[],
            )
            .unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for f in fs::read_dir(&path).unwrap() {
            let f = f.unwrap().path();
            assert_eq!(
                fs::metadata(&f).unwrap().permissions().mode() & 0o777,
                0o600
            );
            let text = fs::read(&f).unwrap();
            assert!(!text.windows(14).any(|w| w == b"hunter2-secret"));
        }
    }

    #[test]
    fn a_cache_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let e = TokenCache::open(dir.path()).expect_err("refused");
        assert!(e.to_string().contains("mode 0755"), "{e}");
    }
}
