//! The manifest and batch halves of `imgseal sign` and `imgseal verify`:
//! one read pass per image for the linear and fs-verity digests, images hashed
//! in parallel, every signature made in the one logged-in session.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use imgseal::algorithms::HashMethod;
use imgseal::backend::software::SoftwareVerifier;
use imgseal::backend::{KeyHandle, SigningDevice};
use imgseal::digest::ImageSource;
use imgseal::error::Error;
use imgseal::fsverity::TreeParams;
use imgseal::glance::{OutputFormat, property_map, render};
use imgseal::home::write_output_file;
use imgseal::manifest::{
    Manifest, ManifestVerdict, check_manifest, default_tree_path, parse_range, validate_signer,
    verify_image_full, verify_image_range,
};
use imgseal::sign::{PassProgress, SealSpec, SealedImage, seal_images};
use serde::Serialize;
use serde_json::json;
use std::io::{self, Write};

use imgseal::verify::TrustPlan;

use super::Context;
use super::digest::Bars;
use super::output::{Report, Verdict, emit};
use super::trust::{Finder, ResolvedTrust};

/// What `sign` was asked for, beyond the key.
pub(super) struct SealRequest<'a> {
    pub images: &'a [String],
    pub cert_id: &'a str,
    pub hash: HashMethod,
    pub format: OutputFormat,
    pub manifest: Option<&'a Path>,
    pub tree: Option<&'a Path>,
    pub tree_params: TreeParams,
    pub quiet: bool,
    /// `--out-dir`: one properties file per image, in `format`.
    pub out_dir: Option<&'a Path>,
}

struct Outputs {
    manifest: Option<PathBuf>,
    tree: Option<PathBuf>,
    /// `<out-dir>/<image name>.<format's extension>`.
    props: Option<PathBuf>,
}

/// The file name ending of a properties file in `format`.
fn props_extension(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Json => "props.json",
        OutputFormat::Openstack => "args",
        OutputFormat::Env => "env",
    }
}

/// Where each image's manifest and tree go: the paths given for one image, or
/// `<dir>/<image name>.manifest.json` and `<dir>/<image name>.tree` for several.
fn output_paths(req: &SealRequest<'_>) -> Result<Vec<Outputs>, Error> {
    let name_of = |image: &str| -> Result<String, Error> {
        Ok(match ImageSource::parse(image) {
            ImageSource::Stdin => "stdin".to_string(),
            ImageSource::Path(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| Error::usage(format!("{image}: not a file name")))?,
        })
    };
    let props_in = |image: &str| -> Result<Option<PathBuf>, Error> {
        req.out_dir
            .map(|d| {
                Ok(d.join(format!(
                    "{}.{}",
                    name_of(image)?,
                    props_extension(req.format)
                )))
            })
            .transpose()
    };
    if let Some(d) = req.out_dir.filter(|d| !d.is_dir()) {
        return Err(Error::usage(format!(
            "--out-dir must name an existing directory ({} is not one)",
            d.display()
        )));
    }
    if req.images.len() == 1 {
        return Ok(vec![Outputs {
            manifest: req.manifest.map(Path::to_path_buf),
            tree: req.tree.map(Path::to_path_buf),
            props: props_in(&req.images[0])?,
        }]);
    }
    for (flag, dir) in [("--manifest", req.manifest), ("--tree", req.tree)] {
        if let Some(d) = dir.filter(|d| !d.is_dir()) {
            return Err(Error::usage(format!(
                "{flag} must name an existing directory when signing several images ({} is not one)",
                d.display()
            )));
        }
    }
    let mut seen = HashSet::new();
    req.images
        .iter()
        .map(|image| {
            let name = name_of(image)?;
            if (req.manifest.is_some() || req.tree.is_some() || req.out_dir.is_some())
                && !seen.insert(name.clone())
            {
                return Err(Error::usage(format!(
                    "two images are named {name}; their output files would collide"
                )));
            }
            Ok(Outputs {
                manifest: req
                    .manifest
                    .map(|d| d.join(format!("{name}.manifest.json"))),
                tree: req.tree.map(|d| d.join(format!("{name}.tree"))),
                props: props_in(image)?,
            })
        })
        .collect()
}

/// Hashes every image (in parallel, each in one read pass), then signs them
/// one after another with `key`, writing manifests and trees as asked.
pub(super) fn sign_many(
    ctx: &Context,
    device: &dyn SigningDevice,
    key: &KeyHandle,
    req: SealRequest<'_>,
) -> anyhow::Result<i32> {
    if req.images.iter().filter(|i| *i == "-").count() > 1 {
        return Err(Error::usage("standard input (-) can be read only once").into());
    }
    if req.tree.is_some() && req.manifest.is_none() {
        return Err(Error::usage("--tree goes with --manifest").into());
    }
    // Several property blocks in one stream cannot be fed to `openstack
    // image create` or sourced by a shell (the variables would repeat).
    if req.images.len() > 1
        && !ctx.json
        && req.format != OutputFormat::Json
        && req.out_dir.is_none()
    {
        return Err(Error::usage(format!(
            "several images with --format {}: give --out-dir DIR for one file per image, or --json for one object per line",
            if req.format == OutputFormat::Env { "env" } else { "openstack" }
        ))
        .into());
    }
    let outputs = output_paths(&req)?;
    let sources: Vec<ImageSource> = req.images.iter().map(|i| ImageSource::parse(i)).collect();
    for out in &outputs {
        let mut named: Vec<(&str, &Path)> = Vec::new();
        if let Some(m) = &out.manifest {
            named.push(("--manifest", m));
        }
        if let Some(t) = &out.tree {
            named.push(("--tree", t));
        }
        super::refuse_overlaps(&named, &sources)?;
    }
    let bars = Bars::new(req.quiet);
    let image_bars: Vec<_> = sources.iter().map(|s| bars.bar(s)).collect();
    let jobs: Vec<(ImageSource, SealSpec<'_>)> = sources
        .iter()
        .zip(&outputs)
        .map(|(source, out)| {
            (
                source.clone(),
                SealSpec {
                    also_linear: Vec::new(),
                    manifest: out.manifest.as_deref().map(|m| (m, &req.tree_params)),
                    tree: out.tree.as_deref(),
                },
            )
        })
        .collect();
    let single = req.images.len() == 1;
    let signing = bars.steps(req.images.len() as u64, "signing");
    let mut code = 0;
    let mut first_error = None;
    seal_images(
        device,
        key,
        req.cert_id,
        req.hash,
        &jobs,
        &BarProgress(&image_bars),
        &mut |i, sealed| {
            signing.inc(1);
            let name = &req.images[i];
            let printed = sealed.and_then(|s| {
                let obj = sealed_json(&s, &sources[i], key);
                signing
                    .suspend(|| print_sealed(ctx, name, obj, &s, req.format, single, &outputs[i]))
            });
            if let Err(err) = printed {
                if single {
                    first_error = Some(err);
                    return;
                }
                let c =
                    signing.suspend(|| super::output::emit_item_error(ctx, "image", name, &err));
                if code == 0 {
                    code = c;
                }
            }
        },
    );
    signing.finish_and_clear();
    if let Some(err) = first_error {
        return Err(err.into());
    }
    Ok(code)
}

/// Progress bars for [`seal_images`], one per image.
pub(super) struct BarProgress<'a>(pub &'a [indicatif::ProgressBar]);

impl PassProgress for BarProgress<'_> {
    fn advanced(&self, image: usize, bytes: u64) {
        self.0[image].inc(bytes);
    }
    fn finished(&self, image: usize) {
        self.0[image].finish_and_clear();
    }
}

/// imgseal's whole record of one signed image (`--json`).
pub(super) fn sealed_json(
    sealed: &SealedImage,
    source: &ImageSource,
    key: &KeyHandle,
) -> serde_json::Value {
    let mut obj = json!(property_map(&sealed.signature));
    obj["image"] = json!(source.display());
    obj["image_size"] = json!(sealed.size());
    obj["digest"] = json!(hex::encode(&sealed.digest().digest));
    obj["key"] = json!(key.uri.redacted());
    if let Some(tree) = &sealed.tree {
        obj["tree"] = json!(tree.display().to_string());
    }
    if let Some(manifest) = &sealed.manifest {
        obj["manifest"] = json!(manifest.display().to_string());
    }
    if let Some(fsverity) = &sealed.fsverity
        && sealed.manifest.is_some()
    {
        obj["fsverity_digest"] = json!(fsverity.to_string());
    }
    obj
}

/// One image's result: with `--out-dir` a file of its properties (and a
/// line saying so), else one JSON object per line, or the properties as
/// asked for a single image.
fn print_sealed(
    ctx: &Context,
    name: &str,
    mut json: serde_json::Value,
    sealed: &SealedImage,
    format: OutputFormat,
    single: bool,
    out: &Outputs,
) -> Result<(), Error> {
    let rendered = render(&sealed.signature, format);
    if let Some(path) = &out.props {
        write_output_file(path, format!("{rendered}\n").as_bytes())?;
        json["props_file"] = json!(path.display().to_string());
        if !ctx.json {
            eprintln!("{name}: properties in {}", path.display());
            return Ok(());
        }
    }
    match (ctx.json, single) {
        (true, _) => super::print_json(&json),
        (false, true) => println!("{rendered}"),
        // Several images, JSON properties: one object per line, named.
        (false, false) => {
            let mut properties = json!(property_map(&sealed.signature));
            properties["image"] = json!(name);
            println!("{properties}");
        }
    }
    Ok(())
}

/// What `verify --manifest` was asked to check.
pub(super) struct ManifestCheck<'a> {
    pub(super) manifest: &'a Path,
    /// `--tree`; default: the one the manifest names, beside it.
    pub(super) tree: Option<&'a Path>,
    /// `--range OFFSET:LEN`.
    pub(super) range: Option<&'a str>,
    pub(super) image: &'a str,
    pub(super) quiet: bool,
}

/// `imgseal verify --manifest`: the manifest's signature, then the whole
/// image in one pass, or with `--range` only the blocks covering the range.
pub(super) fn verify_manifest(
    ctx: &Context,
    check: ManifestCheck<'_>,
    trust: &ResolvedTrust,
    plan: Option<&TrustPlan<'_>>,
) -> anyhow::Result<i32> {
    let ManifestCheck {
        manifest: manifest_path,
        tree,
        range,
        image,
        quiet,
    } = check;
    let range = range.map(parse_range).transpose()?;
    let origin = manifest_path.display().to_string();
    /// The most a manifest file may hold. A manifest is a few hundred bytes
    /// (names, sizes, digests, one signature); this leaves room for long names
    /// while `--manifest /dev/zero` or a huge file cannot exhaust the memory.
    const MAX_MANIFEST_BYTES: u64 = 1 << 20;
    let bytes = imgseal::home::read_input(manifest_path, MAX_MANIFEST_BYTES, "a manifest")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::bad_input(format!("{origin}: not UTF-8 text")))?;
    let manifest = Manifest::parse(&text, &origin)?;
    let source = ImageSource::parse(image);
    let tree = tree
        .map(Path::to_path_buf)
        .or_else(|| default_tree_path(&manifest, manifest_path));
    let range_image = match (&range, &source) {
        (Some(_), ImageSource::Stdin) => {
            return Err(Error::usage("--range needs an image file, not standard input").into());
        }
        (Some(_), ImageSource::Path(p)) => {
            if tree.is_none() {
                return Err(Error::usage(
                    "--range needs the tree file (--tree, or the one the manifest names beside it)",
                )
                .into());
            }
            Some(p.clone())
        }
        (None, _) => None,
    };
    let find: &Finder = &*trust.find;
    let mut verdict = check_manifest(&manifest, find, &SoftwareVerifier, trust.options)?;
    if let Some(plan) = plan {
        validate_signer(&manifest, &mut verdict, plan, trust.policy)?;
    }
    // Refused before the image is read, as an untrusted chain is.
    if verdict.valid
        && let Some(reason) = trust.untrusted_reason()
    {
        verdict.valid = false;
        verdict.reason = Some(reason);
    }
    if verdict.valid {
        match (range, range_image) {
            (Some((offset, len)), Some(path)) => verify_image_range(
                &manifest,
                &mut verdict,
                &path,
                tree.as_deref().expect("checked above"),
                offset,
                len,
            )?,
            _ => {
                let bars = Bars::new(quiet);
                let bar = bars.bar(&source);
                let result =
                    verify_image_full(&manifest, &mut verdict, &source, tree.as_deref(), &|n| {
                        bar.inc(n)
                    });
                bar.finish_and_clear();
                result?;
            }
        }
    }
    let report = ManifestReport {
        verdict,
        image: source.display(),
        manifest: origin,
        range: range.map(|(offset, length)| ByteRange { offset, length }),
        trust_fields: trust.json_fields(),
        trust,
    };
    Ok(emit(ctx, &report)?)
}

#[derive(Serialize)]
struct ByteRange {
    offset: u64,
    length: u64,
}

/// `verify --manifest`'s answer.
#[derive(Serialize)]
struct ManifestReport<'a> {
    #[serde(flatten)]
    verdict: ManifestVerdict,
    image: String,
    manifest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    range: Option<ByteRange>,
    #[serde(flatten)]
    trust_fields: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    trust: &'a ResolvedTrust,
}

impl Report for ManifestReport<'_> {
    fn verdict(&self) -> Option<Verdict> {
        Some(Verdict::of(self.verdict.valid))
    }

    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let v = &self.verdict;
        if v.valid {
            let what = match &self.range {
                Some(r) => {
                    let blocks = v.blocks_checked.unwrap_or(0);
                    format!(
                        "bytes {}..{} of {} ({blocks} block{} read)",
                        r.offset,
                        r.offset + r.length,
                        self.image,
                        if blocks == 1 { "" } else { "s" }
                    )
                }
                None => format!("{} ({} bytes)", self.image, v.image_size),
            };
            writeln!(
                out,
                "valid: {what} verified against manifest {} ({}), signed by certificate \"{}\" ({})",
                self.manifest, v.fsverity_digest, v.certificate_id, v.certificate_subject
            )?;
        } else {
            writeln!(
                out,
                "invalid: {}",
                v.reason.as_deref().unwrap_or("the image does not match")
            )?;
        }
        // The verdict comes first; what it rests on follows.
        self.trust.write_grounds(
            out,
            &[],
            v.trust.as_ref(),
            v.certificate_validation.as_ref(),
            v.reason.is_some() && !v.valid,
        )
    }
}
