//! `imgseal verify`

use std::path::{Path, PathBuf};

use clap::Args;
use imgseal::algorithms::HashMethod;
use imgseal::backend::software::SoftwareVerifier;
use imgseal::digest::ImageSource;
use imgseal::error::Error;
use imgseal::fsverity::pass::{MAX_CONCURRENT_IMAGES, map_bounded};
use imgseal::verify::verify_image;
use serde::Serialize;
use serde_json::json;
use std::io::{self, Write};

use super::Context;
use super::devices::StoreArgs;
use super::output::{Report, Verdict as OutputVerdict, emit};
use super::trust::{Finder, ResolvedTrust, TrustArgs};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// JSON holding the image properties: the properties object, or the whole
    /// `openstack image show -f json` output; - reads standard input. One per
    /// image, in order; or one batch as `sign --json` writes it (one object
    /// per line, each naming its image), which also names the images when
    /// none are given.
    #[arg(long, value_name = "FILE")]
    pub props: Vec<PathBuf>,
    /// Verify against a signed manifest (`sign --manifest`) instead of Glance
    /// properties: its signature, then the image's size and digests.
    #[arg(long, value_name = "FILE", conflicts_with = "props")]
    pub manifest: Option<PathBuf>,
    /// The manifest's tree file (`sign --tree`); default: the one the manifest
    /// names, beside it. Needed by --range; names the first bad block.
    #[arg(long, value_name = "FILE", requires = "manifest")]
    pub tree: Option<PathBuf>,
    /// Check only bytes OFFSET..OFFSET+LEN, reading just the blocks that
    /// cover them and their proofs from the tree.
    #[arg(long, value_name = "OFFSET:LEN", requires = "manifest")]
    pub range: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Where certificates are looked up (default: the token, or Barbican
    /// when a cloud is configured).
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub token: super::TokenArgs,
    #[command(flatten)]
    pub tcti: super::TctiArgs,
    /// Verify image ID|NAME where it lives: properties from Glance,
    /// certificates from Barbican, the data streamed from Glance (as Nova
    /// does at boot), and Glance's own size and os_hash_value compared.
    #[arg(long = "image", value_name = "ID|NAME", conflicts_with_all = ["props", "manifest", "images"])]
    pub glance_image: Option<String>,
    /// With --image: also write the image, verified, to this file (nothing
    /// is left there when it does not verify).
    #[arg(long, value_name = "OUT", requires = "glance_image")]
    pub download: Option<PathBuf>,
    /// The image files (- for standard input); several are hashed in
    /// parallel and each gets its own verdict.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub(super) fn run(ctx: &Context, args: VerifyArgs) -> anyhow::Result<i32> {
    // clap's `requires = "manifest"` is not enforced once --props is given,
    // because --manifest conflicts with --props (clap-rs/clap#4520): without
    // this, `--range` was silently ignored and the whole image verified.
    if args.manifest.is_none() && (args.tree.is_some() || args.range.is_some()) {
        return Err(Error::usage("--tree and --range go with --manifest, not --props").into());
    }
    let resolved = ResolvedTrust::resolve(ctx, &args.trust, &args.store)?;
    if let Some(id) = &args.glance_image {
        return verify_in_glance(ctx, &args, id, &resolved);
    }
    if let Some(manifest) = &args.manifest {
        let [image_arg] = args.images.as_slice() else {
            return Err(
                Error::usage("--manifest verifies one image: give exactly one IMAGE").into(),
            );
        };
        resolved.prefetch(&[]);
        let plan = resolved.plan(&args.trust)?;
        let check = super::seal::ManifestCheck {
            manifest,
            tree: args.tree.as_deref(),
            range: args.range.as_deref(),
            image: image_arg,
            quiet: args.quiet,
        };
        return super::seal::verify_manifest(ctx, check, &resolved, plan.as_ref());
    }
    // Checked here rather than by clap, whose message names only --props.
    if args.props.is_empty() {
        return Err(Error::usage(
            "verify needs what was signed: --props FILE (the image's Glance properties, as `sign` prints them or `openstack image show -f json` shows them) or --manifest FILE (a manifest from `sign --manifest`)",
        )
        .into());
    }
    let jobs = pair_properties(&args.props, &args.images)?;
    let signing_ids: Vec<String> = jobs
        .iter()
        .filter_map(|j| {
            imgseal::glance::RawProperties::from_json(&j.props, &j.origin)
                .ok()
                .and_then(|p| p.cert_uuid)
        })
        .collect();
    resolved.prefetch(&signing_ids.iter().map(String::as_str).collect::<Vec<_>>());
    let plan = resolved.plan(&args.trust)?;
    let find: &Finder = &*resolved.find;
    if let [job] = jobs.as_slice() {
        // One image: read only once the properties, key and chain hold, as
        // Nova does.
        let verdict = verify_image(
            &job.props,
            &job.origin,
            &job.image,
            resolved.policy,
            plan.as_ref(),
            find,
            &SoftwareVerifier,
            resolved.options,
        )?;
        return Ok(emit(
            ctx,
            &ImageReport::new(&resolved, verdict, &job.image.display(), Default::default()),
        )?);
    }
    // Several: every image is hashed first, in parallel, with the method its
    // properties name; the signatures and chains are then checked in order.
    let bars = super::digest::Bars::new(args.quiet);
    let threads = rayon::current_num_threads().min(MAX_CONCURRENT_IMAGES);
    let digests = map_bounded(&jobs, threads, |job| {
        let hash = imgseal::glance::RawProperties::from_json(&job.props, &job.origin)
            .ok()
            .and_then(|p| p.hash_method)
            .and_then(|h| h.parse::<HashMethod>().ok())?;
        let bar = bars.bar(&job.image);
        let out = imgseal::fsverity::run_pass(
            &job.image,
            imgseal::fsverity::PassSpec {
                linear: vec![hash],
                ..Default::default()
            },
            &|n| bar.inc(n),
        );
        bar.finish_and_clear();
        Some(out.map(|mut o| o.linear.pop().expect("asked for one linear digest")))
    });
    let mut code = 0;
    for (job, digest) in jobs.iter().zip(digests) {
        let mut digest = digest;
        let verdict = imgseal::verify::verify_signed_data(
            &job.props,
            &job.origin,
            &job.image.display(),
            resolved.policy,
            plan.as_ref(),
            find,
            &SoftwareVerifier,
            resolved.options,
            &mut |hash| match digest.take() {
                Some(Ok(d)) if d.hash == hash => Ok(d),
                Some(Err(e)) => Err(e),
                _ => imgseal::digest::digest_image(&job.image, hash),
            },
        );
        let c = match verdict {
            Ok(v) => emit(
                ctx,
                &ImageReport::new(&resolved, v, &job.image.display(), Default::default()),
            )?,
            Err(e) => super::output::emit_item_error(ctx, "image", &job.image.display(), &e),
        };
        if code == 0 {
            code = c;
        }
    }
    Ok(code)
}

/// One image to verify and the properties it was signed with.
struct VerifyJob {
    image: ImageSource,
    props: String,
    origin: String,
}

/// Reads `--props` (a file, or - for standard input) as text.
fn read_props(path: &Path) -> Result<String, Error> {
    let origin = path.display().to_string();
    let bytes = if path == Path::new("-") {
        use std::io::Read;
        let mut buf = Vec::new();
        std::io::stdin()
            .take(imgseal::home::MAX_INPUT_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("standard input", e))?;
        if buf.len() as u64 > imgseal::home::MAX_INPUT_BYTES {
            return Err(Error::bad_input(
                "--props -: standard input holds more than an input file may",
            ));
        }
        buf
    } else {
        super::read_input_file(path)?
    };
    String::from_utf8(bytes).map_err(|_| Error::bad_input(format!("{origin}: not UTF-8 text")))
}

/// Pairs images with their properties: one `--props` per image, in order;
/// or one batch (JSON objects one after the other, as `sign --json` writes
/// them), matched by each object's `image`, which also names the images
/// when none are given. A file of several objects given for one image gives
/// that image's object.
fn pair_properties(props: &[PathBuf], images: &[String]) -> Result<Vec<VerifyJob>, Error> {
    if props.iter().filter(|p| *p == Path::new("-")).count()
        + images.iter().filter(|i| *i == "-").count()
        > 1
    {
        return Err(Error::usage("standard input (-) can be read only once"));
    }
    if props.len() == images.len() {
        return images
            .iter()
            .zip(props)
            .map(|(image, path)| {
                let text = read_props(path)?;
                let Ok(batch) = Batch::parse(&text, path) else {
                    // Not a stream of JSON objects: the properties parser
                    // says what is wrong with it, as for any one file.
                    return Ok(VerifyJob {
                        image: ImageSource::parse(image),
                        props: text,
                        origin: path.display().to_string(),
                    });
                };
                match batch.entries.as_slice() {
                    // One object, whatever image it names: the user paired them.
                    [(_, _, value)] => Ok(VerifyJob {
                        image: ImageSource::parse(image),
                        props: value.to_string(),
                        origin: batch.origin.clone(),
                    }),
                    _ => batch.job_for(image),
                }
            })
            .collect();
    }
    if props.len() > 1 {
        return Err(Error::usage(format!(
            "{} --props for {} image{}: give one --props per image, in order, or one batch as `sign --json` writes it",
            props.len(),
            images.len(),
            if images.len() == 1 { "" } else { "s" }
        )));
    }
    let batch = Batch::read(&props[0])?;
    if images.is_empty() {
        return batch
            .entries
            .iter()
            .map(|(n, image, value)| {
                let image = image.as_deref().ok_or_else(|| {
                    Error::bad_input(format!(
                        "{}: entry {n} names no image (\"image\"): give the images on the command line",
                        batch.origin
                    ))
                })?;
                Ok(batch.job(*n, image, value))
            })
            .collect();
    }
    if batch.entries.len() == 1 && batch.entries[0].1.is_none() {
        return Err(Error::usage(format!(
            "one --props ({}) for {} images: give one --props per image, in order, or one batch as `sign --json` writes it",
            batch.origin,
            images.len()
        )));
    }
    images.iter().map(|image| batch.job_for(image)).collect()
}

/// The JSON objects of one `--props` file, in order: (entry number, the
/// image it names, the object).
struct Batch {
    origin: String,
    entries: Vec<(usize, Option<String>, serde_json::Value)>,
}

impl Batch {
    fn read(path: &Path) -> Result<Self, Error> {
        Batch::parse(&read_props(path)?, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let origin = path.display().to_string();
        let mut entries = Vec::new();
        for (n, value) in serde_json::Deserializer::from_str(text)
            .into_iter::<serde_json::Value>()
            .enumerate()
        {
            let value = value.map_err(|e| {
                Error::bad_input(format!("{origin}: entry {}: not valid JSON: {e}", n + 1))
            })?;
            let image = value
                .get("image")
                .and_then(|v| v.as_str())
                .map(str::to_string);
            entries.push((n + 1, image, value));
        }
        if entries.is_empty() {
            return Err(Error::bad_input(format!("{origin}: holds no properties")));
        }
        Ok(Batch { origin, entries })
    }

    fn job(&self, n: usize, image: &str, value: &serde_json::Value) -> VerifyJob {
        VerifyJob {
            image: ImageSource::parse(image),
            props: value.to_string(),
            origin: if self.entries.len() == 1 {
                self.origin.clone()
            } else {
                format!("{} (entry {n})", self.origin)
            },
        }
    }

    /// The one entry naming `image`.
    fn job_for(&self, image: &str) -> Result<VerifyJob, Error> {
        let found: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, name, _)| name.as_deref() == Some(image))
            .collect();
        match found.as_slice() {
            [(n, _, value)] => Ok(self.job(*n, image, value)),
            [] => Err(Error::bad_input(format!(
                "{}: no properties for image {image} (no entry with \"image\": \"{image}\")",
                self.origin
            ))),
            _ => Err(Error::bad_input(format!(
                "{}: {} entries for image {image}: which one to check is not known",
                self.origin,
                found.len()
            ))),
        }
    }
}

/// `verify`'s answer for one image: the library's verdict, what was
/// verified, and the trust it was judged by.
#[derive(Serialize)]
pub(super) struct ImageReport<'a> {
    #[serde(flatten)]
    verdict: imgseal::verify::Verdict,
    image: String,
    /// Command-specific fields (Glance's record, the download).
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    trust_fields: serde_json::Map<String, serde_json::Value>,
    #[serde(skip)]
    trust: &'a ResolvedTrust,
}

impl<'a> ImageReport<'a> {
    /// A valid signature still fails when `--require-trust` is in force and
    /// no trusted id validated it.
    pub(super) fn new(
        trust: &'a ResolvedTrust,
        mut verdict: imgseal::verify::Verdict,
        image: &str,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Self {
        if verdict.valid
            && let Some(reason) = trust.untrusted_reason()
        {
            verdict.valid = false;
            verdict.reason = Some(reason);
        }
        ImageReport {
            verdict,
            image: image.to_string(),
            extra,
            trust_fields: trust.json_fields(),
            trust,
        }
    }
}

impl Report for ImageReport<'_> {
    fn verdict(&self) -> Option<OutputVerdict> {
        Some(OutputVerdict::of(self.verdict.valid))
    }

    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        let v = &self.verdict;
        if v.valid {
            writeln!(
                out,
                "valid: {} signature ({}) by certificate \"{}\" ({}) over {}",
                v.key_type.as_deref().unwrap_or("?"),
                v.hash_method.as_deref().unwrap_or("?"),
                v.certificate_id.as_deref().unwrap_or("?"),
                v.certificate_subject.as_deref().unwrap_or("?"),
                self.image
            )?;
        } else {
            writeln!(
                out,
                "invalid: {}",
                v.reason.as_deref().unwrap_or("signature does not verify")
            )?;
        }
        // The verdict comes first; what it rests on follows.
        self.trust.write_grounds(
            out,
            &v.notes,
            v.trust.as_ref(),
            v.certificate_validation.as_ref(),
            v.reason.is_some() && !v.valid,
        )
    }
}

/// `verify --image`: the image as Nova would fetch it at boot.
fn verify_in_glance(
    ctx: &Context,
    args: &VerifyArgs,
    id_or_name: &str,
    resolved: &ResolvedTrust,
) -> anyhow::Result<i32> {
    use imgseal::cloud::{DownloadTarget, glance_record_disagrees, properties_text, stream_image};
    let session = ctx.session()?;
    let glance = imgseal::openstack::glance::Glance::new(&session)?;
    let record = glance.find(id_or_name)?;
    let id = record.id().to_string();
    if record.status() != "active" {
        return Err(Error::bad_input(format!(
            "image {id} is {}, not active: Glance holds no data Nova could boot",
            record.status()
        ))
        .into());
    }
    let mut download = args
        .download
        .as_deref()
        .map(DownloadTarget::create)
        .transpose()?;
    let text = properties_text(&record);
    let origin = format!("image {id} in Glance");
    resolved.prefetch(
        &record
            .0
            .get(imgseal::glance::CERT_UUID)
            .and_then(|v| v.as_str())
            .into_iter()
            .collect::<Vec<_>>(),
    );
    let plan = resolved.plan(&args.trust)?;
    let find: &Finder = &*resolved.find;
    let bars = super::digest::Bars::new(args.quiet);
    let bar = bars.bytes(record.size().unwrap_or(0), "downloading");
    let mut streamed = None;
    let verdict = imgseal::verify::verify_signed_data(
        &text,
        &origin,
        &origin,
        resolved.policy,
        plan.as_ref(),
        find,
        &SoftwareVerifier,
        resolved.options,
        &mut |hash| {
            let s = stream_image(&glance, &id, &[hash], download.as_mut(), &|n| bar.inc(n))?;
            let signed = s.get(hash).expect("asked for").clone();
            streamed = Some(s);
            Ok(signed)
        },
    );
    bar.finish_and_clear();
    let mut verdict = verdict?;
    let mut extra = serde_json::Map::new();
    extra.insert("image_id".into(), json!(id));
    extra.insert("name".into(), json!(record.name()));
    if let Some(s) = &streamed {
        let disagreement = glance_record_disagrees(&record, s);
        extra.insert(
            "glance_record_matches".into(),
            json!(disagreement.is_none()),
        );
        extra.insert(
            "os_hash_value".into(),
            json!(hex::encode(&s.os_hash().digest)),
        );
        if let Some(d) = disagreement
            && verdict.valid
        {
            verdict.valid = false;
            verdict.reason = Some(format!(
                "{d}: Nova's download would fail its integrity check"
            ));
        }
    }
    // The file appears only for an image that verified, before the verdict
    // is printed: a disk that fails at the last sync makes this an error.
    if let Some(target) = download {
        if verdict.valid && resolved.untrusted_reason().is_none() {
            let path = target.path.clone();
            target.persist()?;
            extra.insert("download".into(), json!(path.display().to_string()));
        } else if !ctx.json {
            eprintln!(
                "nothing written to {}: the image did not verify",
                target.path.display()
            );
        }
    }
    Ok(emit(
        ctx,
        &ImageReport::new(resolved, verdict, &origin, extra),
    )?)
}
