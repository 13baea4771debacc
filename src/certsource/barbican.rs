//! Barbican, read as Glance and Nova read it (castellan), with an optional
//! local cache keyed by UUID that is only used when Barbican cannot be
//! reached, and says so.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use super::CertificateSource;
use crate::backend::StoredCertificate;
use crate::error::{Error, ErrorKind, Result};
use crate::home::write_output_file;
use crate::openstack::Session;
use crate::openstack::barbican as api;
use crate::x509::Certificate;

type Fetched = Result<Option<api::BarbicanCertificate>>;

/// Certificates in Barbican.
pub struct BarbicanSource {
    session: Arc<Session>,
    endpoint: String,
    cache: Option<PathBuf>,
    /// Barbican's answers this run, by UUID: one run asks for a certificate
    /// once (fresh reads are per run, not per lookup), and an outage costs
    /// its retries once.
    fetched: Mutex<HashMap<String, Fetched>>,
}

impl BarbicanSource {
    /// `cache`: a directory of `<uuid>.pem` payloads, refreshed by every
    /// read, and read only when Barbican is unreachable.
    pub fn new(session: Arc<Session>, cache: Option<PathBuf>) -> Result<Self> {
        let endpoint = session.endpoint(api::SERVICE)?;
        Ok(BarbicanSource {
            session,
            endpoint,
            cache,
            fetched: Mutex::new(HashMap::new()),
        })
    }

    fn fetched(&self) -> std::sync::MutexGuard<'_, HashMap<String, Fetched>> {
        self.fetched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh read, or this run's earlier answer.
    fn read(&self, id: &str) -> Fetched {
        if let Some(earlier) = self.fetched().get(id).and_then(copy) {
            return earlier;
        }
        let answer = api::get_certificate(&self.session, id);
        self.remember(id, &answer);
        answer
    }

    fn remember(&self, id: &str, answer: &Fetched) {
        if let Some(kept) = copy(answer) {
            self.fetched().insert(id.to_string(), kept);
        }
    }

    fn cached(&self, uuid: &str) -> Option<PathBuf> {
        self.cache.as_ref().map(|d| d.join(format!("{uuid}.pem")))
    }

    fn stored(&self, uuid: &str, certificate: Certificate, location: String) -> StoredCertificate {
        StoredCertificate {
            id: uuid.to_string(),
            certificate,
            location,
        }
    }
}

impl CertificateSource for BarbicanSource {
    fn describe(&self) -> String {
        format!("Barbican at {}", self.endpoint)
    }

    fn find(&self, id: &str) -> Result<Option<StoredCertificate>> {
        api::check_uuid(id)?;
        let fresh = self.read(id);
        match fresh {
            Ok(Some(found)) => {
                if let Some(path) = self.cached(id) {
                    // A cache that cannot be written is no reason to fail a lookup.
                    if let Err(e) = write_output_file(&path, &found.payload) {
                        tracing::warn!("certificate cache: {e}");
                    }
                }
                Ok(Some(self.stored(id, found.certificate, self.describe())))
            }
            Ok(None) => Ok(None),
            Err(e) if e.kind() == ErrorKind::Service => {
                // Offline: the cached payload, never trusted more than a
                // fresh read (it is only what Barbican said last time).
                let Some(path) = self.cached(id).filter(|p| p.is_file()) else {
                    return Err(e);
                };
                let bytes = std::fs::read(&path).map_err(|io| Error::io(&path, io))?;
                tracing::warn!("{e}; using the cached copy {}", path.display());
                let cert = Certificate::parse(&bytes, &path.display().to_string())?;
                Ok(Some(self.stored(
                    id,
                    cert,
                    format!("cache {} (Barbican unreachable)", path.display()),
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads every id at once: a chain costs one round trip to Barbican,
    /// not one per certificate; `find` then reports each answer.
    fn prefetch(&self, ids: &[&str]) {
        let wanted: Vec<&str> = {
            let fetched = self.fetched();
            let mut wanted: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| api::check_uuid(id).is_ok() && !fetched.contains_key(*id))
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            wanted
        };
        if wanted.len() < 2 || !self.session.concurrent_requests_pay() {
            return;
        }
        std::thread::scope(|s| {
            for id in wanted {
                s.spawn(move || self.remember(id, &api::get_certificate(&self.session, id)));
            }
        });
    }

    /// A DELETE on the secret: Barbican's own removal (castellan's
    /// `delete`). Nova and Glance lose the certificate with it.
    fn delete(&self, id: &str) -> Result<String> {
        api::check_uuid(id)?;
        api::delete_secret(&self.session, id)?;
        self.fetched().remove(id);
        Ok(self.describe())
    }

    fn missing_hint(&self) -> Option<&'static str> {
        Some(
            "Barbican answers the same for an unknown secret and an expired one (cert publish expires a secret with its certificate)",
        )
    }

    fn list(&self) -> Result<Vec<StoredCertificate>> {
        let metas = api::list_certificates(&self.session)?;
        let mut out = Vec::new();
        for meta in metas {
            let uuid = api::uuid_of(meta.secret_ref.as_deref().unwrap_or_default()).to_string();
            // A secret Glance could not load is no intermediate either: skip it
            // here; `find` names the problem when it is asked for by id.
            if let Ok(Some(found)) = self.read(&uuid) {
                out.push(self.stored(&uuid, found.certificate, self.describe()));
            }
        }
        Ok(out)
    }

    fn store(&self, id: &str, cert: &Certificate) -> Result<String> {
        let (uuid, secret_ref) =
            api::store_certificate(&self.session, id, cert.pem().as_bytes(), None)?;
        Ok(format!("{secret_ref} (uuid {uuid})"))
    }
}

/// An answer kept for later: errors that are only a message are kept too.
fn copy(answer: &Fetched) -> Option<Fetched> {
    match answer {
        Ok(found) => Some(Ok(found.clone())),
        Err(e) => e.try_clone().map(Err),
    }
}
