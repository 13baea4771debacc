//! The cloud, as OpenStack users configure clients: `--os-cloud` /
//! `$OS_CLOUD` with clouds.yaml, else the `OS_*` environment.

use std::time::Duration;

use clap::Args;
use imgseal::error::Error;
use imgseal::openstack::{CloudConfig, Session, Timeouts, TokenCache, cloud};

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct CloudArgs {
    /// The cloud in clouds.yaml (as `openstack --os-cloud`); default
    /// $OS_CLOUD, else the OS_* environment (OS_AUTH_URL, OS_USERNAME, …).
    #[arg(long, global = true, value_name = "NAME")]
    pub os_cloud: Option<String>,
    /// Barbican's URL, instead of the key-manager endpoint of the catalog.
    #[arg(long, global = true, value_name = "URL")]
    pub barbican_url: Option<String>,
    /// Glance's URL, instead of the image endpoint of the catalog.
    #[arg(long, global = true, value_name = "URL")]
    pub glance_url: Option<String>,
    /// Seconds one OpenStack request may take, connecting included.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    pub os_timeout: u64,
    /// Keep the Keystone token between runs (private, in
    /// $XDG_RUNTIME_DIR/imgseal/os-tokens), as clouds.yaml's `cache: {auth:
    /// true}` does: later runs skip the login while it has 5 minutes left.
    #[arg(long, global = true, env = "IMGSEAL_OS_TOKEN_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    pub os_token_cache: bool,
}

impl CloudArgs {
    /// The configured cloud, if any.
    pub(crate) fn config(&self) -> Result<Option<CloudConfig>, Error> {
        cloud::resolve(
            self.os_cloud.as_deref(),
            &|k| std::env::var(k).ok(),
            &cloud::default_search_dirs(),
        )
    }

    /// Whether a cloud is configured at all (no file is read for it).
    pub(crate) fn configured(&self) -> bool {
        self.os_cloud.is_some()
            || std::env::var_os("OS_CLOUD").is_some_and(|v| !v.is_empty())
            || std::env::var_os("OS_AUTH_URL").is_some_and(|v| !v.is_empty())
    }

    /// A logged-in session with the configured cloud.
    pub(crate) fn session(&self) -> Result<Session, Error> {
        let config = self.config()?.ok_or_else(|| {
            Error::usage(
                "no cloud configured: give --os-cloud NAME (clouds.yaml), or set OS_CLOUD, or the OS_* environment (OS_AUTH_URL, OS_USERNAME, …)",
            )
        })?;
        if self.os_timeout == 0 {
            return Err(Error::usage("--os-timeout must be at least 1 second"));
        }
        let timeout = Duration::from_secs(self.os_timeout);
        let cache = if self.os_token_cache || config.cache_auth {
            Some(TokenCache::open(&TokenCache::default_dir()?)?)
        } else {
            None
        };
        let mut session = Session::open_with_cache(
            config,
            Timeouts {
                connect: timeout.min(Duration::from_secs(10)),
                call: timeout,
            },
            cache,
        )?;
        if let Some(url) = &self.barbican_url {
            session.set_endpoint_override(imgseal::openstack::barbican::SERVICE, url);
        }
        if let Some(url) = &self.glance_url {
            session.set_endpoint_override(imgseal::openstack::glance::SERVICE, url);
        }
        Ok(session)
    }
}
