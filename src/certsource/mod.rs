//! Where certificates come from: one trait, one implementation per source
//! (sigstore-rs's `TrustRoot`; Parsec keeps key storage apart from device
//! operations in the same way). `verify`, `cert verify`, `cert show`, `sign`
//! and `anchors seal` look certificates up through it, so a new source is one
//! file here, not a `match` in every command.
//!
//! | source | file | finds | lists | stores | replaces | deletes |
//! |---|---|---|---|---|---|---|
//! | a directory of `<id>.pem`/`.der` | `dir.rs` | yes | yes | yes | yes | yes |
//! | the PKCS#11 token | `token.rs` | yes | yes | yes | yes | yes |
//! | the TPM-sealed anchors | `anchors.rs` | yes | yes | no (`anchors seal`) | no | no (`anchors remove`) |
//! | Barbican, as Glance and Nova read it | `barbican.rs` | yes | yes | yes (`cert publish`) | no (UUIDs are Barbican's) | yes |

mod anchors;
mod barbican;
mod dir;
mod token;

pub use barbican::BarbicanSource;
pub use token::TokenSource;

use crate::backend::{ListedCertificate, StoredCertificate};
use crate::error::{Error, Result};
use crate::x509::Certificate;

fn unsupported(source: &str, what: &str) -> Error {
    Error::usage(format!("{source} does not support {what}"))
}

pub trait CertificateSource {
    /// For messages: "directory /etc/imgseal/certs", "Barbican at https://…".
    fn describe(&self) -> String;

    /// The certificate stored under `id`, if the source holds one.
    fn find(&self, id: &str) -> Result<Option<StoredCertificate>>;

    /// Says which ids are about to be looked up, so that a remote source can
    /// read them at once; local sources need not.
    fn prefetch(&self, _ids: &[&str]) {}

    /// Every certificate the source holds (possible intermediates, listings).
    fn list(&self) -> Result<Vec<StoredCertificate>> {
        Err(unsupported(&self.describe(), "listing certificates"))
    }

    /// Every certificate, including those imgseal cannot parse (each with
    /// the reason), for `cert list`: one bad entry never hides the others.
    fn list_entries(&self) -> Result<Vec<ListedCertificate>> {
        Ok(self
            .list()?
            .into_iter()
            .map(ListedCertificate::from)
            .collect())
    }

    /// What a user should know when an id is not found here.
    fn missing_hint(&self) -> Option<&'static str> {
        None
    }

    /// Stores `cert` under `id`; returns where it went, for users.
    fn store(&self, _id: &str, _cert: &Certificate) -> Result<String> {
        Err(unsupported(&self.describe(), "storing certificates"))
    }

    /// Stores `cert` under `id` in place of the certificate there (the
    /// caller has found it); returns where it went.
    fn replace(&self, _id: &str, _cert: &Certificate) -> Result<String> {
        Err(unsupported(&self.describe(), "replacing certificates"))
    }

    /// Removes the certificate stored under `id` (the caller has found it);
    /// returns where it was, for users.
    fn delete(&self, _id: &str) -> Result<String> {
        Err(unsupported(&self.describe(), "deleting certificates"))
    }
}
