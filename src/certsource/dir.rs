//! A directory of `<id>.pem` / `<id>.der` files (`--cert-dir`).

use super::CertificateSource;
use crate::backend::{ListedCertificate, StoredCertificate};
use crate::error::Result;
use crate::store::DirStore;
use crate::x509::Certificate;

impl CertificateSource for DirStore {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    fn find(&self, id: &str) -> Result<Option<StoredCertificate>> {
        DirStore::find(self, id)
    }

    fn list(&self) -> Result<Vec<StoredCertificate>> {
        DirStore::list(self)
    }

    fn list_entries(&self) -> Result<Vec<ListedCertificate>> {
        DirStore::list_entries(self)
    }

    fn store(&self, id: &str, cert: &Certificate) -> Result<String> {
        DirStore::store(self, id, cert).map(|p| p.display().to_string())
    }

    fn replace(&self, id: &str, cert: &Certificate) -> Result<String> {
        DirStore::replace(self, id, cert).map(|p| p.display().to_string())
    }

    fn delete(&self, id: &str) -> Result<String> {
        DirStore::delete(self, id).map(|p| p.display().to_string())
    }
}
