//! Certificate objects on the PKCS#11 token (`CKO_CERTIFICATE`, `CKA_LABEL` = id).

use std::ops::Deref;

use super::CertificateSource;
use crate::backend::{ListedCertificate, SigningDevice, StoredCertificate};
use crate::error::Result;
use crate::x509::Certificate;

/// The token's certificates, over a device the caller opened (owned, or
/// borrowed from a command that also signs with it: one session, not two).
pub struct TokenSource<D>(pub D);

impl<D> CertificateSource for TokenSource<D>
where
    D: Deref,
    D::Target: SigningDevice,
{
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn find(&self, id: &str) -> Result<Option<StoredCertificate>> {
        self.0.find_certificate(id)
    }

    fn list(&self) -> Result<Vec<StoredCertificate>> {
        self.0.list_certificates()
    }

    fn list_entries(&self) -> Result<Vec<ListedCertificate>> {
        self.0.list_certificate_entries()
    }

    fn store(&self, id: &str, cert: &Certificate) -> Result<String> {
        self.0.store_certificate(id, cert)?;
        Ok(self.0.describe())
    }

    fn replace(&self, id: &str, cert: &Certificate) -> Result<String> {
        self.0.replace_certificate(id, cert)?;
        Ok(self.0.describe())
    }

    fn delete(&self, id: &str) -> Result<String> {
        self.0.delete_certificate(id)?;
        Ok(self.0.describe())
    }
}
