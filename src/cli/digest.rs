//! `imgseal digest`: the linear digest in `sha256sum` format, or the fs-verity
//! digest in `fsverity digest` format, so it can stand in for either.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use imgseal::algorithms::HashMethod;
use imgseal::digest::ImageSource;
use imgseal::error::Error;
use imgseal::fsverity::pass::{MAX_CONCURRENT_IMAGES, PassOutput, map_bounded, source_len};
use imgseal::fsverity::{PassSpec, TreeHash, TreeParams, run_pass};
use imgseal::home::write_output_file;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::Context;
use super::output::{Report, emit};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TreeFormat {
    /// The fs-verity file digest (the kernel's and `fsverity digest`'s).
    Fsverity,
}

/// How a tree is built, shared by `digest` and `sign`.
#[derive(Debug, Args)]
pub(crate) struct TreeArgs {
    /// Merkle tree block size: a power of two from 1024 to 65536 [default: 4096].
    #[arg(long, value_name = "BYTES")]
    pub block_size: Option<usize>,
    /// Salt for the tree, in hex (at most 32 bytes).
    #[arg(long, value_name = "HEX")]
    pub salt: Option<String>,
}

impl TreeArgs {
    pub(crate) fn params(&self, hash: HashMethod) -> Result<TreeParams, Error> {
        let tree_hash = TreeHash::from_hash_method(hash).ok_or_else(|| {
            Error::usage(format!(
                "fs-verity trees use SHA-256 or SHA-512, not {hash}"
            ))
        })?;
        let salt = match &self.salt {
            Some(s) => TreeParams::parse_salt(s)?,
            None => Vec::new(),
        };
        let block_size = self
            .block_size
            .unwrap_or(imgseal::fsverity::DEFAULT_BLOCK_SIZE);
        TreeParams::new(tree_hash, block_size, salt)
    }

    /// Refuses tree options where no tree is built, rather than ignore them.
    pub(crate) fn only_with(&self, flag: &str, building: bool) -> Result<(), Error> {
        if !building && (self.block_size.is_some() || self.salt.is_some()) {
            return Err(Error::usage(format!(
                "--block-size and --salt shape a tree: they go with {flag}"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub(crate) struct DigestArgs {
    /// Print a tree digest, in `fsverity digest` format, instead of the linear
    /// digest in `sha256sum` format.
    #[arg(long, value_enum, value_name = "KIND")]
    pub tree: Option<TreeFormat>,
    /// The hash: SHA-224, SHA-256, SHA-384 or SHA-512 for the linear digest;
    /// SHA-256 or SHA-512 for a tree.
    #[arg(long, default_value = "SHA-256")]
    pub hash: HashMethod,
    #[command(flatten)]
    pub tree_args: TreeArgs,
    /// With --tree, also compute the linear digest in the same read pass and
    /// print it after the tree digest.
    #[arg(long, requires = "tree")]
    pub with_linear: bool,
    /// Write the Merkle tree here, as `fsverity digest --out-merkle-tree`
    /// does (one image only).
    #[arg(long, value_name = "FILE", requires = "tree")]
    pub out_merkle_tree: Option<PathBuf>,
    /// Write the 256-byte fs-verity descriptor here (one image only).
    #[arg(long, value_name = "FILE", requires = "tree")]
    pub out_descriptor: Option<PathBuf>,
    /// Print only the hex digest, as `fsverity digest --compact` does.
    #[arg(long)]
    pub compact: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Image files; - for standard input.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub(super) fn run(ctx: &Context, args: DigestArgs) -> anyhow::Result<i32> {
    args.tree_args.only_with("--tree", args.tree.is_some())?;
    let params = match args.tree {
        Some(TreeFormat::Fsverity) => Some(args.tree_args.params(args.hash)?),
        None => None,
    };
    if args.images.len() > 1 && (args.out_merkle_tree.is_some() || args.out_descriptor.is_some()) {
        return Err(Error::usage("--out-merkle-tree and --out-descriptor take one image").into());
    }
    if args.images.iter().filter(|i| *i == "-").count() > 1 {
        return Err(Error::usage("standard input (-) can be read only once").into());
    }
    let sources: Vec<ImageSource> = args.images.iter().map(|i| ImageSource::parse(i)).collect();
    let mut named: Vec<(&str, &Path)> = Vec::new();
    if let Some(d) = &args.out_descriptor {
        named.push(("--out-descriptor", d));
    }
    if let Some(t) = &args.out_merkle_tree {
        named.push(("--out-merkle-tree", t));
    }
    super::refuse_overlaps(&named, &sources)?;
    let linear = (params.is_none() || args.with_linear).then_some(args.hash);
    let bars = Bars::new(args.quiet);
    let threads = rayon::current_num_threads().min(MAX_CONCURRENT_IMAGES);
    let results = map_bounded(&sources, threads, |source| {
        let bar = bars.bar(source);
        let spec = PassSpec {
            linear: linear.into_iter().collect(),
            tree: params.as_ref(),
            tree_out: args.out_merkle_tree.as_deref(),
            compare: None,
        };
        let out = run_pass(source, spec, &|n| bar.inc(n));
        bar.finish_and_clear();
        out
    });
    let mut code = 0;
    for (name, result) in args.images.iter().zip(results) {
        match result.and_then(|out| finish_outputs(&args, out)) {
            Ok(out) => {
                emit(ctx, &DigestReport::new(&args, name, &out))?;
            }
            Err(err) => {
                let c = super::output::emit_item_error(ctx, "image", name, &err);
                if code == 0 {
                    code = c;
                }
            }
        }
    }
    Ok(code)
}

/// Puts the tree and descriptor files under their names.
fn finish_outputs(args: &DigestArgs, mut out: PassOutput) -> Result<PassOutput, Error> {
    if let (Some(path), Some(d)) = (&args.out_descriptor, &out.fsverity) {
        write_output_file(path, &d.descriptor())?;
    }
    if let (Some(path), Some(tmp)) = (&args.out_merkle_tree, out.tree_file.take())
        && let Err(e) = tmp.persist(path)
    {
        // The command fails: leave no descriptor from it behind either.
        if let Some(d) = &args.out_descriptor {
            let _ = std::fs::remove_file(d);
        }
        return Err(Error::io(path, e.error));
    }
    Ok(out)
}

/// One image's digests (`--json`: one object per image).
#[derive(Serialize)]
struct DigestReport<'a> {
    image: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    linear: Option<LinearJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fsverity: Option<FsverityJson>,
    #[serde(skip)]
    text: DigestText,
}

#[derive(Serialize)]
struct LinearJson {
    hash_method: &'static str,
    digest: String,
}

#[derive(Serialize)]
struct FsverityJson {
    digest: String,
    hash_algorithm: &'static str,
    block_size: usize,
    salt: String,
    root_hash: String,
}

/// What the text lines hold: the fs-verity line, the linear line.
#[derive(Default)]
struct DigestText {
    compact: bool,
    fsverity_line: Option<String>,
}

impl<'a> DigestReport<'a> {
    fn new(args: &DigestArgs, name: &'a str, out: &PassOutput) -> Self {
        DigestReport {
            image: name,
            size: out.size,
            linear: out.linear.first().map(|l| LinearJson {
                hash_method: l.hash.glance_name(),
                digest: hex::encode(&l.digest),
            }),
            fsverity: out.fsverity.as_ref().map(|f| FsverityJson {
                digest: f.to_string(),
                hash_algorithm: f.params.hash().name(),
                block_size: f.params.block_size(),
                salt: hex::encode(f.params.salt()),
                root_hash: hex::encode(&f.root_hash),
            }),
            text: DigestText {
                compact: args.compact,
                fsverity_line: out.fsverity.as_ref().map(|f| {
                    if args.compact {
                        f.hex()
                    } else {
                        format!("{f} {name}")
                    }
                }),
            },
        }
    }
}

impl Report for DigestReport<'_> {
    fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        if let Some(line) = &self.text.fsverity_line {
            writeln!(out, "{line}")?;
        }
        if let Some(l) = &self.linear {
            if self.text.compact {
                writeln!(out, "{}", l.digest)?;
            } else {
                writeln!(out, "{}", sum_line(&l.digest, self.image))?;
            }
        }
        Ok(())
    }
}

/// A `sha256sum` line: names holding a backslash or a newline are escaped,
/// and the line then starts with a backslash, as coreutils does.
pub(super) fn sum_line(hex: &str, name: &str) -> String {
    if name.contains(['\\', '\n']) {
        let escaped = name.replace('\\', "\\\\").replace('\n', "\\n");
        format!("\\{hex}  {escaped}")
    } else {
        format!("{hex}  {name}")
    }
}

/// Progress bars on stderr, one per image being read; drawn only on a terminal.
pub(super) struct Bars {
    multi: MultiProgress,
}

impl Bars {
    pub(super) fn new(quiet: bool) -> Self {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Bars {
            multi: MultiProgress::with_draw_target(target),
        }
    }

    /// A counter of `n` steps, such as signatures made in the device.
    pub(super) fn steps(&self, n: u64, message: &str) -> ProgressBar {
        let bar = self.multi.add(
            ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{msg:20!} [{bar:30}] {pos}/{len}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            ),
        );
        bar.set_message(message.to_string());
        bar
    }

    /// A byte counter of `len` bytes, such as an upload or a download.
    pub(super) fn bytes(&self, len: u64, message: &str) -> ProgressBar {
        let bar = if len > 0 {
            ProgressBar::new(len).with_style(
                ProgressStyle::with_template(
                    "{msg:20!} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            )
        } else {
            ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "{msg:20!} {spinner} {binary_bytes} {binary_bytes_per_sec}",
                )
                .expect("the template is valid"),
            )
        };
        let bar = self.multi.add(bar);
        bar.set_message(message.to_string());
        bar
    }

    pub(super) fn bar(&self, source: &ImageSource) -> ProgressBar {
        let bar = match source_len(source) {
            Some(len) => ProgressBar::new(len).with_style(
                ProgressStyle::with_template(
                    "{msg:20!} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{msg:20!} {spinner} {binary_bytes} {binary_bytes_per_sec}")
                    .expect("the template is valid"),
            ),
        };
        let bar = self.multi.add(bar);
        bar.set_message(source.display());
        bar
    }
}
