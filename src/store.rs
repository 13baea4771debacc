//! Certificates kept in a directory as `<id>.pem` or `<id>.der`.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::PathBuf;

use crate::backend::{ListedCertificate, StoredCertificate};
use crate::error::{Error, Result};
use crate::glance::check_cert_id;
use crate::home::{MAX_INPUT_BYTES, read_input, write_output_file};
use crate::x509::Certificate;

/// The file name extensions of certificates, in the order `find` tries them.
const EXTENSIONS: [&str; 4] = ["pem", "der", "crt", "cer"];

/// The longest file name Linux file systems take (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// The longest id whose `<id>.<ext>` is a file name.
const MAX_FILE_ID: usize = NAME_MAX - ".pem".len();

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

    /// An id that can name a file here: a certificate id
    /// ([`check_cert_id`]) short enough that `<id>.<ext>` fits in a file
    /// name, rather than an "File name too long" from the open.
    fn check_id(&self, id: &str) -> Result<()> {
        check_cert_id(id).map_err(Error::bad_input)?;
        if id.len() > MAX_FILE_ID {
            return Err(Error::bad_input(format!(
                "the certificate id is {} bytes: in {}, whose files are named <id>.pem and can have at most {NAME_MAX} bytes, ids have at most {MAX_FILE_ID}",
                id.len(),
                self.location()
            )));
        }
        Ok(())
    }

    /// The names in the directory, exactly as stored.
    fn entry_names(&self) -> Result<HashSet<OsString>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        Ok(entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect())
    }

    pub fn find(&self, id: &str) -> Result<Option<StoredCertificate>> {
        self.check_id(id)?;
        // Only an entry of exactly this name: in a case-insensitive or
        // normalizing directory (ext4 or tmpfs with casefold) the open of
        // "A.pem" would give "a.pem", another id's certificate.
        let names = self.entry_names()?;
        for ext in EXTENSIONS {
            let name = format!("{id}.{ext}");
            if !names.contains(OsStr::new(&name)) {
                continue;
            }
            let path = self.dir.join(name);
            match read_input(&path, MAX_INPUT_BYTES, "a certificate") {
                Ok(bytes) => {
                    return Ok(Some(StoredCertificate {
                        id: id.to_string(),
                        certificate: Certificate::parse(&bytes, &path.display().to_string())?,
                        location: self.location(),
                    }));
                }
                // A dangling symbolic link: as if there were no file.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The certificate files here, by id: every entry with a certificate
    /// extension, its name checked to be an id.
    fn certificate_files(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
                continue;
            };
            if !EXTENSIONS.contains(&ext) {
                continue;
            }
            // A certificate file whose name is no id (not UTF-8, a control
            // character, a look-alike letter) would be printed in verdicts
            // and chains as it is: refused, named safely.
            let stem = path.file_stem().unwrap_or_default();
            let id = stem.to_str().ok_or_else(|| {
                Error::bad_input(format!(
                    "{}: the file name is not UTF-8, so not a certificate id",
                    path.display().to_string().escape_default()
                ))
            })?;
            check_cert_id(id).map_err(|e| {
                Error::bad_input(format!(
                    "{}: the file name is no certificate id: {e}",
                    self.location()
                ))
            })?;
            out.push((id.to_string(), path));
        }
        Ok(out)
    }

    fn read_certificate(path: &std::path::Path) -> Result<Certificate> {
        let bytes = read_input(path, MAX_INPUT_BYTES, "a certificate")?;
        Certificate::parse(&bytes, &path.display().to_string())
    }

    /// Every certificate; the first file that cannot be read or parsed is
    /// an error (what validation reads as intermediates must all be sound).
    pub fn list(&self) -> Result<Vec<StoredCertificate>> {
        self.certificate_files()?
            .into_iter()
            .map(|(id, path)| {
                Ok(StoredCertificate {
                    id,
                    certificate: Self::read_certificate(&path)?,
                    location: self.location(),
                })
            })
            .collect()
    }

    /// Every certificate file, with the reason for each that cannot be read
    /// or parsed (a listing shows them all).
    pub fn list_entries(&self) -> Result<Vec<ListedCertificate>> {
        Ok(self
            .certificate_files()?
            .into_iter()
            .map(|(id, path)| ListedCertificate {
                id,
                certificate: Self::read_certificate(&path).map_err(|e| e.to_string()),
                location: self.location(),
            })
            .collect())
    }

    /// The file holding `id`'s certificate, if any.
    pub fn file_of(&self, id: &str) -> Result<Option<PathBuf>> {
        self.check_id(id)?;
        let names = self.entry_names()?;
        Ok(EXTENSIONS
            .iter()
            .map(|ext| format!("{id}.{ext}"))
            .find(|name| names.contains(OsStr::new(name)))
            .map(|name| self.dir.join(name)))
    }

    /// Writes `cert` as `<id>.pem` in place of `id`'s certificate (atomically),
    /// then removes the old file when it had another name (`<id>.der`).
    pub fn replace(&self, id: &str, cert: &Certificate) -> Result<PathBuf> {
        let old = self.file_of(id)?;
        let path = self.dir.join(format!("{id}.pem"));
        write_output_file(&path, cert.pem().as_bytes())?;
        if let Some(old) = old.filter(|o| *o != path) {
            fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
        }
        Ok(path)
    }

    /// Removes `id`'s certificate file; returns its path.
    pub fn delete(&self, id: &str) -> Result<PathBuf> {
        let path = self.file_of(id)?.ok_or_else(|| {
            Error::not_found(format!(
                "certificate \"{id}\" not found in {}",
                self.location()
            ))
        })?;
        fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    pub fn store(&self, id: &str, cert: &Certificate) -> Result<PathBuf> {
        check_cert_id(id).map_err(Error::bad_input)?;
        if self.find(id)?.is_some() {
            return Err(Error::usage(format!(
                "{} already holds a certificate with id \"{id}\" (give --replace to replace it)",
                self.location()
            )));
        }
        let path = self.dir.join(format!("{id}.pem"));
        // No entry of exactly this name, and yet the name answers: a
        // case-insensitive directory holding another id's file, which the
        // write would replace.
        if fs::symlink_metadata(&path).is_ok() {
            return Err(Error::usage(format!(
                "{} already has a file answering to \"{id}.pem\" that is not this id's certificate (a dangling link, or another id's file in a case-insensitive directory)",
                self.location()
            )));
        }
        write_output_file(&path, cert.pem().as_bytes())?;
        Ok(path)
    }
}
