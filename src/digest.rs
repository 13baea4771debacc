//! One streaming pass over an image: the linear digest Glance signs.
//!
//! OpenSSL's SHA-2 is used because it is the fastest implementation on the
//! machines we target (SHA-NI for SHA-256, hand-tuned assembly for SHA-512),
//! so `imgseal sign` keeps pace with `openssl dgst`. Reading and hashing run
//! on two threads, so the hash is the only work on its core. Memory is
//! constant: a few buffers, whatever the image size.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use openssl::hash::Hasher;

use crate::algorithms::HashMethod;
use crate::error::{Error, Result};

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

/// Hashes the image in one pass. A regular file goes through the read pass
/// of `fsverity::pass` (memory-mapped windows, the next one mapped and
/// faulted in on another thread while this one is hashed): the hashing core
/// then only hashes, with no copy out of the page cache, and a change to
/// the file during the pass is reported. Standard input is read on a
/// thread of its own ([`digest_reader`]).
pub fn digest_image(source: &ImageSource, hash: HashMethod) -> Result<ImageDigest> {
    match source {
        ImageSource::Path(_) => {
            let spec = crate::fsverity::PassSpec {
                linear: vec![hash],
                ..Default::default()
            };
            let mut out = crate::fsverity::run_pass(source, spec, &|_| ())?;
            Ok(out
                .linear
                .pop()
                .expect("the pass was asked for the linear digest"))
        }
        ImageSource::Stdin => digest_reader(io::stdin(), hash, Path::new("<stdin>")),
    }
}

/// Opens the image file at `path` (not `-`), with its metadata. Only a
/// regular file is an image: a FIFO, a device or a socket is refused before
/// anything is read ([`crate::home::open_regular`]), because a FIFO with no
/// writer would block the open for good and `/dev/zero` would be hashed for
/// ever. A stream goes through standard input (`-`), where whoever pipes it
/// chooses how much to send.
pub fn open_image(path: &Path) -> Result<(File, Metadata)> {
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
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileStamp {
    /// The stamp of a regular file from metadata already read, so that a
    /// caller mapping `m.len()` bytes stamps the same observation.
    pub fn from_meta(m: &Metadata) -> Self {
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
    #[cfg(test)]
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

/// Bytes per read, and reads in flight between the reader thread and the
/// hasher: small enough that a chunk is still in the shared cache when the
/// hasher takes it, enough of them that the hasher never waits on a read.
const CHUNK: usize = 256 << 10;
const CHUNKS: usize = 4;

/// Hashes everything `reader` gives. The reads (for a pipe, the kernel's
/// copy out of it) run on a thread of their own, so the hashing thread only
/// hashes: one SHA stream is the limit, and the copy no longer adds to it.
/// Memory is `CHUNKS` buffers, whatever the size.
pub fn digest_reader(
    reader: impl Read + Send,
    hash: HashMethod,
    origin: &Path,
) -> Result<ImageDigest> {
    let mut hasher = Hasher::new(hash.message_digest()).map_err(|e| Error::crypto("hasher", e))?;
    let size = read_ahead(reader, origin, |chunk| {
        hasher
            .update(chunk)
            .map_err(|e| Error::crypto("hashing", e))
    })?;
    let digest = hasher
        .finish()
        .map_err(|e| Error::crypto("hashing", e))?
        .to_vec();
    Ok(ImageDigest { hash, digest, size })
}

/// Reads `reader` to its end on a separate thread, handing each chunk to
/// `take` in order on this one. Returns the bytes read.
fn read_ahead(
    reader: impl Read + Send,
    origin: &Path,
    mut take: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    use std::sync::mpsc;
    std::thread::scope(|s| {
        let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(CHUNKS);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..CHUNKS {
            empty_tx
                .send(vec![0u8; CHUNK])
                .expect("the receiver is alive");
        }
        let reader_thread = s.spawn(move || {
            let mut reader = reader;
            while let Ok(mut buf) = empty_rx.recv() {
                buf.resize(CHUNK, 0);
                let read = fill(&mut reader, &mut buf);
                let last = !matches!(read, Ok(n) if n == CHUNK);
                let msg = read.map(|n| {
                    buf.truncate(n);
                    buf
                });
                if full_tx.send(msg).is_err() || last {
                    break;
                }
            }
        });
        let result = (|| {
            let mut size = 0u64;
            for msg in full_rx.iter() {
                let buf = msg.map_err(|e| Error::io(origin, e))?;
                if buf.is_empty() {
                    break;
                }
                take(&buf)?;
                size += buf.len() as u64;
                // The reader stops after a short chunk; then nobody takes it.
                let _ = empty_tx.send(buf);
            }
            Ok(size)
        })();
        // Dropping both ends unblocks a reader still waiting on either; the
        // join makes sure it has exited before the pass returns.
        drop(full_rx);
        drop(empty_tx);
        reader_thread
            .join()
            .expect("the image reader thread panicked");
        result
    })
}

/// Reads until `buf` is full or the end; returns the bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_one_shot_hashing_across_buffer_boundaries() {
        let data: Vec<u8> = (0..(CHUNK * (CHUNKS + 2) + 17))
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

    /// Pipes give short reads; a chunk is only passed on full (or at the
    /// end), so the digest cannot depend on how the bytes arrived.
    #[test]
    fn short_reads_give_the_same_digest() {
        struct Dribble<'a>(&'a [u8], usize);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.1 = self.1 % 7919 + 1;
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let data: Vec<u8> = (0..CHUNK * 3 + 5).map(|i| (i % 253) as u8).collect();
        let d = digest_reader(Dribble(&data, 0), HashMethod::Sha512, Path::new("t")).unwrap();
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.digest, openssl::sha::sha512(&data).to_vec());
    }

    #[test]
    fn a_read_error_ends_the_digest_with_the_origin() {
        struct FailsAfter(usize);
        impl Read for FailsAfter {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("device gone"));
                }
                let n = self.0.min(buf.len());
                self.0 -= n;
                Ok(n)
            }
        }
        let err = digest_reader(
            FailsAfter(CHUNK * 5 + 3),
            HashMethod::Sha256,
            Path::new("dev"),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("dev: "), "{err}");
        assert!(err.to_string().contains("device gone"), "{err}");
        assert_eq!(err.kind(), crate::error::ErrorKind::Io);
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
