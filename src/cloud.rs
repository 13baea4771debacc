//! Signed images where they live: published to Glance (signed in the HSM,
//! uploaded, Glance's verdict awaited and its stored digest compared),
//! streamed back from Glance through the verifier, and re-signed in place.
//! These compose the signing pipeline of [`crate::sign`], the verifier of
//! [`crate::verify`] and the Glance client of [`crate::openstack::glance`].

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::algorithms::HashMethod;
use crate::backend::{KeyHandle, SigningDevice};
use crate::digest::{FileStamp, ImageDigest, ImageSource};
use crate::error::{Error, Result};
use crate::fsverity::PassOutput;
use crate::fsverity::PassSpec;
use crate::fsverity::pass::run_pass_reader;
use crate::glance::{self, ImageSignature, property_map};
use crate::openstack::glance::{Glance, ImageRecord, NewImage, OS_HASH_ALGO};
use crate::sign::{SealSpec, SealedImage, seal_hashed};

/// Glance's `os_hash_algo`, as imgseal hashes it.
pub const OS_HASH: HashMethod = HashMethod::Sha512;

/// What `publish` was asked to do beyond the key and certificate.
pub struct PublishRequest<'a> {
    /// The image's fields (name, formats, visibility, …) and extra properties.
    pub fields: NewImage,
    /// Upload into this queued image instead of creating one.
    pub existing_id: Option<&'a str>,
    /// Leave a refused image in Glance, for inspection.
    pub keep_on_failure: bool,
    /// Also sign a manifest (its tree built by [`start_publish_pass`]).
    pub manifest: Option<(&'a Path, &'a crate::fsverity::TreeParams)>,
}

/// An image Glance accepted.
#[derive(Debug)]
pub struct Published {
    pub image: ImageRecord,
    pub sealed: SealedImage,
}

/// What went wrong after the image was created: the reason, and what became
/// of the image in Glance.
fn after_create_failure(
    glance: &Glance<'_>,
    id: &str,
    keep: bool,
    created_here: bool,
    error: Error,
) -> Error {
    let state = match glance.show(id) {
        Ok(Some(record)) => format!("left {}", record.status()),
        Ok(None) => "gone".into(),
        Err(_) => "state unknown".into(),
    };
    let fate = if keep || !created_here {
        format!(
            "image {id} {state} in Glance{}",
            if keep {
                " (--keep-on-failure)"
            } else {
                "; it was not created by this run, so it is not deleted"
            }
        )
    } else {
        match glance.delete(id) {
            Ok(()) => format!("image {id} deleted again"),
            Err(e) => format!(
                "image {id} {state}, and deleting it failed ({e}): delete it with `openstack image delete {id}`"
            ),
        }
    };
    let message = format!("{error}; {fate}");
    match error {
        Error::Invalid(_) => Error::Invalid(message),
        Error::BadInput(_) => Error::BadInput(message),
        Error::Auth(_) => Error::Auth(message),
        Error::NotFound(_) => Error::NotFound(message),
        Error::Usage(_) => Error::Usage(message),
        Error::Io { path, source } => Error::io(
            path,
            io::Error::new(source.kind(), format!("{source}; {fate}")),
        ),
        _ => Error::Service(message),
    }
}

/// A reader that counts what passes through it.
struct Counted<R> {
    inner: R,
    sent: Arc<std::sync::atomic::AtomicU64>,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// The reads `publish` needs, started before the cloud is reached so that
/// hashing overlaps the login and the certificate check: the digest to sign
/// (with the manifest's tree), and Glance's SHA-512 on a thread of its own.
/// SHA-512 is needed only once Glance has stored the data, and on a CPU
/// without SHA-512 instructions it runs at a third of SHA-256's speed, so
/// neither the signature nor the upload waits for it.
pub struct PublishPass {
    path: PathBuf,
    hash: HashMethod,
    stamp: FileStamp,
    signed: std::thread::JoinHandle<Result<PassOutput>>,
    glance_digest: Option<std::thread::JoinHandle<Result<PassOutput>>>,
}

/// Starts the reads of `image` for [`publish`]. `tree`: the manifest's tree.
pub fn start_publish_pass(
    image: &Path,
    hash: HashMethod,
    tree: Option<crate::fsverity::TreeParams>,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<PublishPass> {
    let (file, meta) = crate::digest::open_image(image)?;
    drop(file);
    let stamp = FileStamp::from_meta(&meta);
    let source = ImageSource::Path(image.to_path_buf());
    let signed = {
        let source = source.clone();
        std::thread::spawn(move || {
            crate::fsverity::run_pass(
                &source,
                PassSpec {
                    linear: vec![hash],
                    tree: tree.as_ref(),
                    ..Default::default()
                },
                &|n| progress(n),
            )
        })
    };
    let glance_digest = (hash != OS_HASH).then(|| {
        std::thread::spawn(move || {
            crate::fsverity::run_pass(
                &source,
                PassSpec {
                    linear: vec![OS_HASH],
                    ..Default::default()
                },
                &|_| (),
            )
        })
    });
    Ok(PublishPass {
        path: image.to_path_buf(),
        hash,
        stamp,
        signed,
        glance_digest,
    })
}

/// Signs the image `pass` read and publishes it: the image created with the
/// four properties, the same bytes uploaded, and Glance's verdict awaited.
/// Success means Glance verified the signature (`active`) and stored exactly
/// the bytes signed (its `size` and `os_hash_value` equal imgseal's). On any
/// failure after the image was created, it is deleted again unless
/// `keep_on_failure`.
pub fn publish(
    glance: &Glance<'_>,
    device: &dyn SigningDevice,
    key: &KeyHandle,
    cert_id: &str,
    req: PublishRequest<'_>,
    pass: PublishPass,
    upload_progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<Published> {
    let joined = |h: std::thread::JoinHandle<Result<PassOutput>>| {
        h.join()
            .map_err(|_| Error::io(&pass.path, io::Error::other("the hashing thread failed")))?
    };
    let output = joined(pass.signed)?;
    let source = ImageSource::Path(pass.path.clone());
    let sealed = seal_hashed(
        device,
        key,
        cert_id,
        &source,
        &SealSpec {
            also_linear: Vec::new(),
            manifest: req.manifest,
            tree: None,
        },
        output,
    )?;
    debug_assert_eq!(sealed.digest().hash, pass.hash);
    let signed_digest = sealed.digest().clone();
    let glance_digest = pass.glance_digest;
    let os_hash = move || -> Result<ImageDigest> {
        match glance_digest {
            None => Ok(signed_digest),
            Some(handle) => joined(handle).map(|mut out| out.linear.remove(0)),
        }
    };
    upload_sealed(
        glance,
        req,
        &pass.path,
        pass.stamp,
        sealed,
        os_hash,
        upload_progress,
    )
}

fn upload_sealed(
    glance: &Glance<'_>,
    req: PublishRequest<'_>,
    path: &Path,
    stamp: FileStamp,
    sealed: SealedImage,
    os_hash: impl FnOnce() -> Result<ImageDigest>,
    upload_progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<Published> {
    // Created, or an existing queued image given the four properties.
    let (id, created_here) = match req.existing_id {
        None => {
            let mut fields = req.fields.clone();
            fields.properties.extend(
                property_map(&sealed.signature)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v)),
            );
            (glance.create(&fields)?.id().to_string(), true)
        }
        Some(id) => {
            let record = glance.show(id)?.ok_or_else(|| {
                Error::not_found(format!("--image-id {id}: Glance has no such image"))
            })?;
            if record.status() != "queued" {
                return Err(Error::usage(format!(
                    "--image-id {id}: the image is {}, not queued: Glance takes data only into a queued image",
                    record.status()
                )));
            }
            glance.patch(id, &signature_patch(&record, &sealed.signature))?;
            (id.to_string(), false)
        }
    };
    let fail = |e: Error| after_create_failure(glance, &id, req.keep_on_failure, created_here, e);

    // What was sent is proven after the upload by Glance's own SHA-512 of
    // what it stored (os_hash_value), which must equal the pass's: hashing
    // the upload stream here too cost a core Glance needs on small hosts.
    let sent_len = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut open = || -> Result<Box<dyn Read + Send>> {
        // The same file, unchanged since it was signed: else nothing is sent.
        let (file, meta) = crate::digest::open_image(path)?;
        if FileStamp::from_meta(&meta) != stamp {
            return Err(Error::io(
                path,
                io::Error::other(
                    "the image changed between signing and upload; nothing was sent: publish it again once nothing writes to it",
                ),
            ));
        }
        sent_len.store(0, std::sync::atomic::Ordering::Relaxed);
        Ok(Box::new(Counted {
            inner: file.take(sealed.size()),
            sent: Arc::clone(&sent_len),
            progress: Arc::clone(&upload_progress),
        }))
    };
    if let Err(e) = glance.upload(&id, sealed.size(), &mut open) {
        let e = match e {
            // Glance's refusal of the data (a signature it could not verify,
            // a key type it cannot load) is its verdict on the image.
            Error::BadInput(m) if m.contains("upload to image") => Error::Invalid(m),
            other => other,
        };
        return Err(fail(e));
    }
    let sent_len = sent_len.load(std::sync::atomic::Ordering::Relaxed);
    let os_hash = match os_hash() {
        Ok(d) => d,
        Err(e) => return Err(fail(e)),
    };
    let record = match glance.show(&id) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(Error::not_found(format!(
                "image {id} vanished from Glance right after its upload"
            )));
        }
        Err(e) => return Err(fail(e)),
    };
    let ours = hex::encode(&os_hash.digest);
    let problem = if sent_len != sealed.size() {
        Some(format!(
            "{sent_len} bytes were uploaded, {} signed: the file changed during the upload",
            sealed.size()
        ))
    } else if record.status() != "active" {
        Some(format!(
            "Glance left the image {}, not active",
            record.status()
        ))
    } else if record.size() != Some(sealed.size()) {
        Some(format!(
            "Glance stored {} bytes; imgseal signed {}",
            record
                .size()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "no".into()),
            sealed.size()
        ))
    } else if record.os_hash_algo() == Some(OS_HASH_ALGO) && record.os_hash_value() != Some(&ours) {
        Some(format!(
            "Glance's os_hash_value {} is not the SHA-512 of the bytes signed ({ours})",
            record.os_hash_value().unwrap_or("(none)")
        ))
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(fail(Error::Invalid(format!("image {id}: {problem}"))));
    }
    Ok(Published {
        image: record,
        sealed,
    })
}

/// The JSON patch giving `record` the four properties of `signature`:
/// `replace` where the image has one, `add` where not.
pub fn signature_patch(record: &ImageRecord, signature: &ImageSignature) -> Value {
    Value::Array(
        property_map(signature)
            .into_iter()
            .map(|(k, v)| {
                let op = if record.0.contains_key(k) {
                    "replace"
                } else {
                    "add"
                };
                json!({"op": op, "path": format!("/{k}"), "value": v})
            })
            .collect(),
    )
}

/// Where `--download` writes: a temporary file beside the destination,
/// renamed into place only when the image verified.
pub struct DownloadTarget {
    pub path: PathBuf,
    pub file: tempfile::NamedTempFile,
}

impl DownloadTarget {
    pub fn create(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if path.is_dir() {
            return Err(Error::usage(format!(
                "--download {}: is a directory; name the file to write",
                path.display()
            )));
        }
        let file = tempfile::Builder::new()
            .prefix(".imgseal-download-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        Ok(DownloadTarget {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Makes the verified image appear under its name.
    pub fn persist(self) -> Result<()> {
        self.file
            .as_file()
            .sync_all()
            .map_err(|e| Error::io(&self.path, e))?;
        self.file
            .persist(&self.path)
            .map(|_| ())
            .map_err(|e| Error::io(&self.path, e.error))
    }
}

/// A reader that also writes what it reads to a file; a write error (a full
/// disk) fails the read, and so the stream.
struct Tee<'a, R> {
    inner: R,
    out: &'a mut File,
    path: &'a Path,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n]).map_err(|e| {
            io::Error::new(e.kind(), format!("writing {}: {e}", self.path.display()))
        })?;
        Ok(n)
    }
}

/// Marks a failure of the connection to Glance, so that it is reported as
/// the service's (exit 8), not as a local file's.
#[derive(Debug)]
struct StreamBroke {
    after: u64,
    reason: String,
}

impl std::fmt::Display for StreamBroke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the stream broke off after {} bytes: {}",
            self.after, self.reason
        )
    }
}

impl std::error::Error for StreamBroke {}

/// Glance's answer body, counting what arrived.
struct FromGlance<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for FromGlance<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.read += n as u64;
                Ok(n)
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                StreamBroke {
                    after: self.read,
                    reason: e.to_string(),
                },
            )),
        }
    }
}

/// An image's data as Glance serves it, hashed in one pass: the hashes
/// asked for and Glance's own SHA-512.
pub struct StreamedDigests {
    pub digests: Vec<ImageDigest>,
}

impl StreamedDigests {
    pub fn get(&self, hash: HashMethod) -> Option<&ImageDigest> {
        self.digests.iter().find(|d| d.hash == hash)
    }
    pub fn os_hash(&self) -> &ImageDigest {
        self.get(OS_HASH)
            .expect("the stream always computes Glance's digest")
    }
    pub fn size(&self) -> u64 {
        self.os_hash().size
    }
}

/// Streams image `id` from Glance through the digests (constant memory),
/// writing it to `download` as it goes.
pub fn stream_image(
    glance: &Glance<'_>,
    id: &str,
    hashes: &[HashMethod],
    download: Option<&mut DownloadTarget>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<StreamedDigests> {
    let reader = FromGlance {
        inner: glance.download(id)?,
        read: 0,
    };
    let origin = format!("image {id} from Glance");
    let mut linear: Vec<HashMethod> = Vec::new();
    for h in hashes.iter().copied().chain([OS_HASH]) {
        if !linear.contains(&h) {
            linear.push(h);
        }
    }
    let spec = PassSpec {
        linear,
        ..Default::default()
    };
    let out = match download {
        Some(target) => {
            let path = target.path.clone();
            let tee = Tee {
                inner: reader,
                out: target.file.as_file_mut(),
                path: &path,
            };
            run_pass_reader(tee, &origin, spec, progress)
        }
        None => run_pass_reader(reader, &origin, spec, progress),
    };
    let out = out.map_err(|e| match e {
        Error::Io { source, .. }
            if source
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<StreamBroke>().is_some()) =>
        {
            Error::service(format!("GET {}/file: {source}", glance.image_url(id)))
        }
        other => other,
    })?;
    Ok(StreamedDigests {
        digests: out.linear,
    })
}

/// How Glance's own record of the data compares with what was streamed:
/// `None` when it agrees (or Glance keeps no SHA-512), else what differs.
pub fn glance_record_disagrees(record: &ImageRecord, streamed: &StreamedDigests) -> Option<String> {
    if let Some(size) = record.size()
        && size != streamed.size()
    {
        return Some(format!(
            "Glance says image {} has {size} bytes; it served {}",
            record.id(),
            streamed.size()
        ));
    }
    if record.os_hash_algo() == Some(OS_HASH_ALGO) {
        let got = hex::encode(&streamed.os_hash().digest);
        if record.os_hash_value() != Some(got.as_str()) {
            return Some(format!(
                "Glance's os_hash_value of image {} ({}) is not the SHA-512 of the data it served ({got})",
                record.id(),
                record.os_hash_value().unwrap_or("(none)")
            ));
        }
    }
    None
}

/// The properties of an image record, as the verifier reads them.
pub fn properties_text(record: &ImageRecord) -> String {
    let mut props = serde_json::Map::new();
    for k in glance::ALL {
        if let Some(v) = record.0.get(k) {
            props.insert(k.to_string(), v.clone());
        }
    }
    Value::Object(props).to_string()
}
