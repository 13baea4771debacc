//! The TPM-sealed anchors: the bundle the TPM vouches for, read-only here
//! (it changes only through `anchors seal`).

use super::CertificateSource;
use crate::anchors::SealedAnchors;
use crate::backend::StoredCertificate;
use crate::error::Result;

impl CertificateSource for SealedAnchors {
    fn describe(&self) -> String {
        format!("TPM-sealed anchors, version {}", self.bundle.version)
    }

    fn find(&self, id: &str) -> Result<Option<StoredCertificate>> {
        SealedAnchors::find(self, id)
    }

    fn list(&self) -> Result<Vec<StoredCertificate>> {
        Ok(self
            .bundle
            .anchors
            .iter()
            .map(|(id, certificate)| StoredCertificate {
                id: id.clone(),
                certificate: certificate.clone(),
                location: self.describe(),
            })
            .collect())
    }
}
