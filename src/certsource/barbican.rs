//! Barbican, read as Glance and Nova read it (castellan), with an optional
//! local cache keyed by UUID that is only used when Barbican cannot be
//! reached, and says so.

use std::cell::RefCell;
use std::path::PathBuf;

use super::CertificateSource;
use crate::backend::StoredCertificate;
use crate::error::{Error, ErrorKind, Result};
use crate::home::write_output_file;
use crate::openstack::Session;
use crate::openstack::barbican as api;
use crate::x509::Certificate;

/// Certificates in Barbican. The session re-authenticates on expiry, hence
/// the `RefCell`: lookups are `&self` like every other source's.
pub struct BarbicanSource {
    session: RefCell<Session>,
    endpoint: String,
    cache: Option<PathBuf>,
}

impl BarbicanSource {
    /// `cache`: a directory of `<uuid>.pem` payloads, refreshed by every
    /// read, and read only when Barbican is unreachable.
    pub fn new(session: Session, cache: Option<PathBuf>) -> Result<Self> {
        let endpoint = session.endpoint(api::SERVICE)?;
        Ok(BarbicanSource {
            session: RefCell::new(session),
            endpoint,
            cache,
        })
    }

    pub fn session(&self) -> std::cell::RefMut<'_, Session> {
        self.session.borrow_mut()
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
        let fresh = api::get_certificate(&mut self.session.borrow_mut(), id);
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

    fn missing_hint(&self) -> Option<&'static str> {
        Some(
            "Barbican answers the same for an unknown secret and an expired one (cert publish expires a secret with its certificate)",
        )
    }

    fn list(&self) -> Result<Vec<StoredCertificate>> {
        let metas = api::list_certificates(&mut self.session.borrow_mut())?;
        let mut out = Vec::new();
        for meta in metas {
            let uuid = api::uuid_of(meta.secret_ref.as_deref().unwrap_or_default()).to_string();
            // A secret Glance could not load is no intermediate either: skip it
            // here; `find` names the problem when it is asked for by id.
            if let Ok(Some(found)) = api::get_certificate(&mut self.session.borrow_mut(), &uuid) {
                out.push(self.stored(&uuid, found.certificate, self.describe()));
            }
        }
        Ok(out)
    }

    fn store(&self, id: &str, cert: &Certificate) -> Result<String> {
        let (uuid, secret_ref) = api::store_certificate(
            &mut self.session.borrow_mut(),
            id,
            cert.pem().as_bytes(),
            None,
        )?;
        Ok(format!("{secret_ref} (uuid {uuid})"))
    }
}
