//! One streaming pass over an image: the linear digest Glance signs.
//!
//! OpenSSL's SHA-2 is used because it is the fastest implementation on the
//! machines we target (SHA-NI for SHA-256, hand-tuned assembly for SHA-512),
//! so `imgseal sign` keeps pace with `openssl dgst`. Memory is constant: one
//! buffer, whatever the image size.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use openssl::hash::Hasher;

use crate::algorithms::HashMethod;
use crate::error::{Error, Result};

const BUFFER: usize = 1 << 20;

/// Where image bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Path(PathBuf),
    Stdin,
}

impl ImageSource {
    /// `-` means standard input.
    pub fn parse(arg: &str) -> Self {
        if arg == "-" {
            ImageSource::Stdin
        } else {
            ImageSource::Path(PathBuf::from(arg))
        }
    }

    pub fn display(&self) -> String {
        match self {
            ImageSource::Path(p) => p.display().to_string(),
            ImageSource::Stdin => "<stdin>".into(),
        }
    }
}

/// The digest of a whole image and how many bytes it had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigest {
    pub hash: HashMethod,
    pub digest: Vec<u8>,
    pub size: u64,
}

/// Hashes the image in one pass.
pub fn digest_image(source: &ImageSource, hash: HashMethod) -> Result<ImageDigest> {
    match source {
        ImageSource::Path(path) => {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
                return Err(Error::bad_input(format!(
                    "{}: is a directory, not an image",
                    path.display()
                )));
            }
            digest_reader(file, hash, path)
        }
        ImageSource::Stdin => digest_reader(io::stdin().lock(), hash, Path::new("<stdin>")),
    }
}

pub fn digest_reader(
    mut reader: impl Read,
    hash: HashMethod,
    origin: &Path,
) -> Result<ImageDigest> {
    let mut hasher = Hasher::new(hash.message_digest()).map_err(|e| Error::crypto("hasher", e))?;
    let mut buf = vec![0u8; BUFFER];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(origin, e)),
        };
        hasher
            .update(&buf[..n])
            .map_err(|e| Error::crypto("hashing", e))?;
        size += n as u64;
    }
    let digest = hasher
        .finish()
        .map_err(|e| Error::crypto("hashing", e))?
        .to_vec();
    Ok(ImageDigest { hash, digest, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_one_shot_hashing_across_buffer_boundaries() {
        let data: Vec<u8> = (0..(BUFFER * 2 + 17))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for hash in HashMethod::ALL {
            let d = digest_reader(&data[..], hash, Path::new("t")).unwrap();
            assert_eq!(d.size, data.len() as u64);
            assert_eq!(
                d.digest,
                openssl::hash::hash(hash.message_digest(), &data)
                    .unwrap()
                    .to_vec()
            );
            assert_eq!(d.digest.len(), hash.output_len());
        }
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let err = digest_image(
            &ImageSource::parse("/nonexistent/img.qcow2"),
            HashMethod::Sha256,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/img.qcow2: "),
            "{err}"
        );
        assert_eq!(err.kind(), crate::error::ErrorKind::Io);
    }
}
