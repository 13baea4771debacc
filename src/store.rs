//! Certificates kept in a directory as `<id>.pem` or `<id>.der`.

use std::fs;
use std::path::PathBuf;

use crate::backend::StoredCertificate;
use crate::error::{Error, Result};
use crate::glance::check_cert_id;
use crate::home::write_output_file;
use crate::x509::Certificate;

#[derive(Debug, Clone)]
pub struct DirStore {
    pub dir: PathBuf,
}

impl DirStore {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        // A file given where the directory goes is a wrong command line, not
        // a missing directory: saying "does not exist" of a file that exists
        // sends the user looking in the wrong place.
        if dir.exists() && !dir.is_dir() {
            return Err(Error::usage(format!(
                "certificate directory {} is not a directory",
                dir.display()
            )));
        }
        if !dir.is_dir() {
            return Err(Error::not_found(format!(
                "certificate directory {} does not exist",
                dir.display()
            )));
        }
        Ok(DirStore { dir })
    }

    fn location(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    pub fn find(&self, id: &str) -> Result<Option<StoredCertificate>> {
        check_cert_id(id).map_err(Error::bad_input)?;
        for ext in ["pem", "der", "crt", "cer"] {
            let path = self.dir.join(format!("{id}.{ext}"));
            match fs::read(&path) {
                Ok(bytes) => {
                    return Ok(Some(StoredCertificate {
                        id: id.to_string(),
                        certificate: Certificate::parse(&bytes, &path.display().to_string())?,
                        location: self.location(),
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Ok(None)
    }

    pub fn list(&self) -> Result<Vec<StoredCertificate>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
                continue;
            };
            if !["pem", "der", "crt", "cer"].contains(&ext) {
                continue;
            }
            let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            out.push(StoredCertificate {
                id: id.to_string(),
                certificate: Certificate::parse(&bytes, &path.display().to_string())?,
                location: self.location(),
            });
        }
        Ok(out)
    }

    pub fn store(&self, id: &str, cert: &Certificate) -> Result<PathBuf> {
        check_cert_id(id).map_err(Error::bad_input)?;
        if self.find(id)?.is_some() {
            return Err(Error::usage(format!(
                "{} already holds a certificate with id \"{id}\"",
                self.location()
            )));
        }
        let path = self.dir.join(format!("{id}.pem"));
        write_output_file(&path, cert.pem().as_bytes())?;
        Ok(path)
    }
}
