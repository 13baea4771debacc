//! One streaming pass over an image: the linear digest Glance signs.
//!
//! OpenSSL's SHA-2 is used because it is the fastest implementation on the
//! machines we target (SHA-NI for SHA-256, hand-tuned assembly for SHA-512),
//! so `imgseal sign` keeps pace with `openssl dgst`. Memory is constant: one
//! buffer, whatever the image size.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
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
            let (file, _) = open_image(path)?;
            let stamp = FileStamp::of(&file, path)?;
            let digest = digest_reader(&file, hash, path)?;
            if let Some(stamp) = stamp {
                stamp.check_unchanged(&file, path, digest.size, false)?;
            }
            Ok(digest)
        }
        ImageSource::Stdin => digest_reader(io::stdin().lock(), hash, Path::new("<stdin>")),
    }
}

/// Opens the image file at `path` (not `-`), with its metadata. Only a
/// regular file is an image: a FIFO, a device or a socket is refused before
/// anything is read ([`crate::home::open_regular`]), because a FIFO with no
/// writer would block the open for good and `/dev/zero` would be hashed for
/// ever. A stream goes through standard input (`-`), where whoever pipes it
/// chooses how much to send.
pub(crate) fn open_image(path: &Path) -> Result<(File, Metadata)> {
    use crate::home::{Opened, open_regular};
    match open_regular(path, false).map_err(|e| Error::io(path, e))? {
        Opened::Regular(file, meta) => Ok((file, meta)),
        Opened::NotRegular(kind) => {
            let hint = if kind == "a directory" {
                ""
            } else {
                "; pipe a stream to standard input (-) instead"
            };
            Err(Error::bad_input(format!(
                "{}: is {kind}, not an image{hint}",
                path.display()
            )))
        }
    }
}

/// What a regular file was when a read pass began: which file, its size and
/// its modification time. Compared again after the pass, so that an image
/// written, truncated, extended or replaced while it was hashed is reported
/// (exit 7, `io`) instead of being signed, judged or printed from bytes that
/// were never one image. Standard input and other streams cannot be checked.
///
/// The modification time is the kernel's: since Linux 6.13 a change made
/// after a `stat` always gets a newer timestamp; older kernels keep the clock
/// tick (a few ms), so a write in the same tick as the pass's first `stat`
/// could go unnoticed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileStamp {
    /// The stamp of a regular file from metadata already read, so that a
    /// caller mapping `m.len()` bytes stamps the same observation.
    pub(crate) fn from_meta(m: &Metadata) -> Self {
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }

    /// `None` for anything but a regular file of some length: a pipe's
    /// times change as it is written, a device's size is not its length,
    /// and procfs and sysfs files say 0 bytes and still have content.
    pub(crate) fn of(file: &File, path: &Path) -> Result<Option<Self>> {
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        Ok((meta.is_file() && meta.len() > 0).then(|| Self::from_meta(&meta)))
    }

    /// Once the pass has read `read` bytes from `file` (opened at `path`):
    /// an error naming the change, if any. `truncated` says that pages of a
    /// memory map vanished during the pass.
    pub(crate) fn check_unchanged(
        &self,
        file: &File,
        path: &Path,
        read: u64,
        truncated: bool,
    ) -> Result<()> {
        let now = Self::from_meta(&file.metadata().map_err(|e| Error::io(path, e))?);
        let how = if truncated || now.len < self.len {
            format!("it was truncated from {} to {} bytes", self.len, now.len)
        } else if now.len != self.len {
            format!("its size changed from {} to {} bytes", self.len, now.len)
        } else if now.mtime != self.mtime || read != self.len {
            "it was written to".to_string()
        } else if std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) != (self.dev, self.ino))
        {
            "another file was put in its place".to_string()
        } else {
            return Ok(());
        };
        Err(Error::io(
            path,
            io::Error::other(format!(
                "the image changed while it was being read ({how}); hash it again once nothing writes to it"
            )),
        ))
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
