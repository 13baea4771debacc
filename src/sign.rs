//! Signing images: one read pass per image for every digest it needs (the
//! one Glance signs, Glance's own `os_hash_value`, a manifest's tree), images
//! hashed in parallel, and one funnel for the signatures made in the device,
//! each checked in software before it leaves. `sign`, `publish` and anything
//! else that signs go through here.

use std::path::{Path, PathBuf};

use crate::algorithms::{GlanceKeyType, HashMethod};
use crate::backend::software::SoftwareVerifier;
use crate::backend::{KeyHandle, SigningDevice};
use crate::digest::{ImageDigest, ImageSource};
use crate::error::{Error, Result};
use crate::fsverity::pass::{MAX_CONCURRENT_IMAGES, PassOutput, map_bounded};
use crate::fsverity::{FsVerityDigest, PassSpec, TreeParams, run_pass};
use crate::glance::{ImageSignature, check_cert_id};
use crate::home::write_output_file;
use crate::manifest::{build_body, sign_manifest};
use crate::signature::SignatureScheme;
use crate::x509::Certificate;

/// Checks that `cert` holds `key`'s public key, so that a signature made now
/// will verify against the certificate Glance will fetch.
pub fn check_certificate_matches(key: &KeyHandle, cert_id: &str, cert: &Certificate) -> Result<()> {
    let cert_key = cert.public_key()?;
    if !cert_key.same_key(&key.public) {
        return Err(Error::bad_input(format!(
            "certificate \"{cert_id}\" ({}) holds a different public key than {} ({} vs {})",
            cert.subject(),
            key.uri.redacted(),
            cert_key.describe(),
            key.public.describe()
        )));
    }
    Ok(())
}

/// Checks a signature the device just made, in software, with `key`'s public
/// key: the key `check_certificate_matches` found in certificate `cert_id`,
/// which Glance and Nova will verify with. A token that signs with another
/// private key than the public key it shows (key pairs sharing a `CKA_ID`, a
/// mispaired import) would otherwise yield a signature nothing can verify,
/// found only at boot. One public-key verification: 0.01 ms (RSA-2048) to
/// 2 ms (sect571k1), next to a device signature of 1-7 ms and the image hash.
pub fn check_device_signature(
    key: &KeyHandle,
    cert_id: &str,
    scheme: &SignatureScheme,
    digest: &[u8],
    signature: &[u8],
) -> Result<()> {
    if SoftwareVerifier.verify_digest(&key.public, scheme, digest, signature)? {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "the token's signature does not verify with certificate \"{cert_id}\" ({}, the public key of {}): the key and the certificate do not match",
        key.public.describe(),
        key.uri.redacted()
    )))
}

/// Signs `digest` in the device and checks the signature in software with
/// `key`'s public key: the one funnel every signature imgseal makes goes
/// through (images, manifests), so none leaves unchecked.
pub fn sign_checked(
    device: &dyn SigningDevice,
    key: &KeyHandle,
    cert_id: &str,
    scheme: &SignatureScheme,
    digest: &[u8],
) -> Result<Vec<u8>> {
    let signature = device.sign_digest(key, scheme, digest)?;
    check_device_signature(key, cert_id, scheme, digest, &signature)?;
    Ok(signature)
}

/// The Glance key type of `key`, or a usage error naming the key.
pub fn glance_key_type(key: &KeyHandle) -> Result<GlanceKeyType> {
    key.public.glance_key_type().ok_or_else(|| {
        Error::usage(format!(
            "{} is {}, which is not a Glance key type (RSA, DSA, or EC on secp384r1, secp521r1, sect409k1/r1, sect571k1/r1)",
            key.uri.redacted(),
            key.public.describe()
        ))
    })
}

/// Signs an image's linear digest for Glance: the four properties.
pub fn sign_digest(
    device: &dyn SigningDevice,
    key: &KeyHandle,
    cert_id: &str,
    digest: &ImageDigest,
) -> Result<ImageSignature> {
    check_cert_id(cert_id).map_err(|e| Error::usage(format!("--cert-id: {e}")))?;
    let key_type = glance_key_type(key)?;
    let scheme = SignatureScheme::for_glance(key_type, digest.hash);
    let signature = sign_checked(device, key, cert_id, &scheme, &digest.digest)?;
    Ok(ImageSignature {
        signature,
        hash_method: digest.hash,
        key_type,
        cert_uuid: cert_id.to_string(),
    })
}

/// What to make of one image besides its signature.
#[derive(Default)]
pub struct SealSpec<'a> {
    /// Linear digests to compute in the same read besides the signed one
    /// (Glance's SHA-512 `os_hash_value`).
    pub also_linear: Vec<HashMethod>,
    /// A signed manifest, over the tree of these parameters, written here.
    pub manifest: Option<(&'a Path, &'a TreeParams)>,
    /// The manifest's tree file.
    pub tree: Option<&'a Path>,
}

/// One signed image.
#[derive(Debug)]
pub struct SealedImage {
    pub signature: ImageSignature,
    /// The signed digest first, then [`SealSpec::also_linear`]'s.
    pub linear: Vec<ImageDigest>,
    pub fsverity: Option<FsVerityDigest>,
    pub manifest: Option<PathBuf>,
    pub tree: Option<PathBuf>,
}

impl SealedImage {
    pub fn size(&self) -> u64 {
        self.linear[0].size
    }
    /// The digest signed.
    pub fn digest(&self) -> &ImageDigest {
        &self.linear[0]
    }
    pub fn linear_digest(&self, hash: HashMethod) -> Option<&ImageDigest> {
        self.linear.iter().find(|d| d.hash == hash)
    }
}

/// Progress of the read passes of [`seal_images`], per image index.
pub trait PassProgress: Sync {
    fn advanced(&self, image: usize, bytes: u64);
    fn finished(&self, image: usize);
}

/// No progress shown.
pub struct Silent;
impl PassProgress for Silent {
    fn advanced(&self, _: usize, _: u64) {}
    fn finished(&self, _: usize) {}
}

/// Signs `images` with `key`: each image read once (its signed digest, the
/// other linear digests and the manifest's tree together), images hashed in
/// parallel, then every signature made in the device one after another. One
/// result per image, in order: one image that fails does not stop the rest.
pub fn seal_images(
    device: &dyn SigningDevice,
    key: &KeyHandle,
    cert_id: &str,
    hash: HashMethod,
    images: &[(ImageSource, SealSpec<'_>)],
    progress: &dyn PassProgress,
    each_signed: &mut dyn FnMut(usize, Result<SealedImage>),
) {
    if let Err(e) = check_cert_id(cert_id) {
        for i in 0..images.len() {
            each_signed(i, Err(Error::usage(format!("--cert-id: {e}"))));
        }
        return;
    }
    let threads = rayon::current_num_threads().min(MAX_CONCURRENT_IMAGES);
    let indexed: Vec<(usize, &(ImageSource, SealSpec<'_>))> = images.iter().enumerate().collect();
    let passes = map_bounded(&indexed, threads, |(i, (source, spec))| {
        let mut linear = vec![hash];
        linear.extend(spec.also_linear.iter().copied().filter(|h| *h != hash));
        let result = run_pass(
            source,
            PassSpec {
                linear,
                tree: spec.manifest.map(|(_, params)| params),
                tree_out: spec.tree,
                compare: None,
            },
            &|n| progress.advanced(*i, n),
        );
        progress.finished(*i);
        result
    });
    for (i, ((source, spec), pass)) in images.iter().zip(passes).enumerate() {
        each_signed(
            i,
            pass.and_then(|p| seal_hashed(device, key, cert_id, source, spec, p)),
        );
    }
}

/// Signs one image whose read pass is done (`pass` holds the signed digest
/// first), and writes its manifest and tree when `spec` asks.
pub fn seal_hashed(
    device: &dyn SigningDevice,
    key: &KeyHandle,
    cert_id: &str,
    source: &ImageSource,
    spec: &SealSpec<'_>,
    mut pass: PassOutput,
) -> Result<SealedImage> {
    let signature = sign_digest(device, key, cert_id, &pass.linear[0])?;
    let mut sealed = SealedImage {
        signature,
        linear: std::mem::take(&mut pass.linear),
        fsverity: pass.fsverity.take(),
        manifest: None,
        tree: None,
    };
    if let Some((manifest_path, _)) = spec.manifest {
        let fsverity = sealed.fsverity.as_ref().expect("the pass built a tree");
        let tree_name = spec
            .tree
            .and_then(|t| t.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        let image_name = match source {
            ImageSource::Path(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ImageSource::Stdin => "-".into(),
        };
        let body = build_body(
            &image_name,
            &sealed.linear[0],
            fsverity,
            &sealed.signature,
            tree_name,
        );
        let manifest = sign_manifest(device, key, body)?;
        write_output_file(manifest_path, manifest.to_json_pretty().as_bytes())?;
        // The tree goes under its name only once its manifest is there.
        if let (Some(path), Some(tmp)) = (spec.tree, pass.tree_file.take()) {
            if let Err(e) = tmp.persist(path) {
                // Take back the manifest just written rather than leave it
                // naming a tree that is not there.
                let _ = std::fs::remove_file(manifest_path);
                return Err(Error::io(path, e.error));
            }
            sealed.tree = Some(path.to_path_buf());
        }
        sealed.manifest = Some(manifest_path.to_path_buf());
    }
    Ok(sealed)
}

/// Signs one image (`sign` with one image and no manifest).
pub fn sign_image(
    device: &dyn SigningDevice,
    key: &KeyHandle,
    cert_id: &str,
    hash: HashMethod,
    image: &ImageSource,
) -> Result<SealedImage> {
    let mut out = None;
    seal_images(
        device,
        key,
        cert_id,
        hash,
        &[(image.clone(), SealSpec::default())],
        &Silent,
        &mut |_, r| out = Some(r),
    );
    out.expect("one image, one result")
}
