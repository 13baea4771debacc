//! One read pass over an image that feeds the linear digest (what Glance's
//! `img_signature` signs) and the fs-verity tree at once.
//!
//! The image is taken a window at a time (8 MiB). Within a window the linear
//! hasher, which cannot be split, runs on one rayon worker while the data
//! blocks are hashed in parallel on the rest, and whichever finishes first
//! steals the other's remaining blocks; the serial upper tree levels for the
//! previous window run beside them. Both digests therefore see every byte
//! while it is hot in cache, and the image is read once. Windows bound the
//! memory: at most two are mapped (or buffered) at a time, whatever the size.
//!
//! Regular files are memory-mapped window by window, with the next window
//! mapped (and faulted in) while the current one is hashed. Anything else —
//! pipes, standard input, devices — is read by a separate thread into a few
//! recycled buffers.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use memmap2::{Mmap, MmapOptions};
use openssl::hash::Hasher;
use rayon::prelude::*;
use tempfile::NamedTempFile;

use super::builder::{TreeBuilder, TreeSink};
use super::hasher::BlockHasher;
use super::sigbus::Watched;
use super::tree::{LeafComparer, LeafComparison};
use super::{FsVerityDigest, TreeParams};
use crate::algorithms::HashMethod;
use crate::digest::{FileStamp, ImageDigest, ImageSource};
use crate::error::{Error, Result};

/// Bytes hashed between two synchronisations of the linear and tree hashers.
/// A multiple of every block size and of the page size.
const WINDOW: usize = 8 << 20;
/// Buffers in flight between the reader thread and the hashers (stream path).
const STREAM_BUFFERS: usize = 3;
/// Images hashed at once by a batch. Each pass already spreads its tree over
/// every core; running two lets one image's serial linear digest overlap
/// another's, and keeps peak RSS near 40 MiB (two mapped windows each).
pub const MAX_CONCURRENT_IMAGES: usize = 2;

/// What one pass computes.
#[derive(Default)]
pub struct PassSpec<'a> {
    /// The linear digests: the one `img_signature` signs, and others that
    /// ride in the same read (Glance's SHA-512 `os_hash_value`).
    pub linear: Vec<HashMethod>,
    /// The fs-verity tree.
    pub tree: Option<&'a TreeParams>,
    /// Write the tree to this path (levels nearest the root first, as
    /// `fsverity digest --out-merkle-tree` does). It is left in a temporary
    /// file in the same directory until the caller persists it.
    pub tree_out: Option<&'a Path>,
    /// Compare each data block's hash with a stored tree as it is computed.
    pub compare: Option<LeafComparer>,
}

/// What one pass found.
#[derive(Debug)]
pub struct PassOutput {
    pub size: u64,
    /// One digest per hash of [`PassSpec::linear`], in its order.
    pub linear: Vec<ImageDigest>,
    pub fsverity: Option<FsVerityDigest>,
    /// The tree, complete and synced; `persist` it to its name once every
    /// other output has been made, so a failure leaves no orphan.
    pub tree_file: Option<NamedTempFile>,
    pub comparison: Option<LeafComparison>,
}

impl PassOutput {
    /// The linear digest by `hash`, when the pass was asked for it.
    pub fn linear_digest(&self, hash: HashMethod) -> Option<&ImageDigest> {
        self.linear.iter().find(|d| d.hash == hash)
    }
}

/// Reads `source` once and computes what `spec` asks for. `progress` is
/// called with the number of bytes hashed after each window.
pub fn run_pass(
    source: &ImageSource,
    spec: PassSpec<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PassOutput> {
    let origin = PathBuf::from(source.display());
    let mut pass = Pass::new(spec, &origin)?;
    match source {
        ImageSource::Path(path) => {
            let (file, meta) = crate::digest::open_image(path)?;
            // A size of 0 is not trusted: procfs and sysfs files say 0 and
            // still have content (or fail to read, as /proc/self/mem does).
            // Mapping 0 bytes hashed them as empty and exited 0; reading to
            // the end gives the same answer as for a truly empty file.
            if meta.len() > 0 {
                // The image must be the same file, of the same size and
                // mtime, after the pass as before it (src/digest.rs), and no
                // mapped page may have vanished (src/fsverity/sigbus.rs).
                // The stamp and the mapped length come from the same stat.
                let stamp = Some(FileStamp::from_meta(&meta));
                let truncated = pass_mapped(&file, meta.len(), &mut pass, progress)?;
                check_mapped(stamp, &file, path, meta.len(), pass.size, truncated)?;
            } else {
                pass_stream(file, &mut pass, progress)?;
            }
        }
        ImageSource::Stdin => pass_stream(io::stdin(), &mut pass, progress)?,
    }
    pass.finish()
}

/// Reads a stream once (an image downloaded from Glance) and computes what
/// `spec` asks for; `origin` names the stream in errors. The reader runs on
/// a thread of its own, so the hashing core only hashes.
pub fn run_pass_reader(
    reader: impl Read + Send,
    origin: &str,
    spec: PassSpec<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PassOutput> {
    let mut pass = Pass::new(spec, Path::new(origin))?;
    pass_stream(reader, &mut pass, progress)?;
    pass.finish()
}

/// Whether a mapped pass over `file`, mapped at the `mapped` bytes its stat
/// gave, hashed the file's bytes. `stamp` comes from that same stat (`None`,
/// from callers that could not take one, fails: nothing would show the pages
/// the SIGBUS handler zeroed). The file must be the same, of the same size
/// and mtime, afterwards (`check_unchanged`), and a truncation seen by the
/// handler (`truncated`) always fails, whatever the stamp says.
fn check_mapped(
    stamp: Option<FileStamp>,
    file: &File,
    path: &Path,
    mapped: u64,
    read: u64,
    truncated: bool,
) -> Result<()> {
    if let Some(stamp) = stamp {
        stamp.check_unchanged(file, path, read, truncated)?;
        if !truncated {
            return Ok(());
        }
    }
    let now = file.metadata().map(|m| m.len()).unwrap_or(0);
    Err(Error::io(
        path,
        io::Error::other(format!(
            "the image changed while it was being read (it was truncated from {mapped} to {now} bytes); hash it again once nothing writes to it"
        )),
    ))
}

/// The size of a regular file, for progress bars; `None` for streams.
pub fn source_len(source: &ImageSource) -> Option<u64> {
    match source {
        ImageSource::Path(p) => std::fs::metadata(p)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len()),
        ImageSource::Stdin => None,
    }
}

/// Runs `f` over `items` on up to `threads` threads at once, results in
/// input order. Each call may itself use the rayon pool; bounding the outer
/// concurrency bounds the memory (each pass holds two windows).
pub fn map_bounded<I: Sync, T: Send>(
    items: &[I],
    threads: usize,
    f: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, T)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= items.len() {
                            break out;
                        }
                        out.push((i, f(&items[i])));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("an image worker panicked"))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, t)| t).collect()
}

struct TreeState {
    params: TreeParams,
    hasher: BlockHasher,
    builder: TreeBuilder,
    /// Leaf hashes of the window being hashed, and of the previous one, which
    /// the builder takes in while the current window is hashed.
    current: Vec<u8>,
    previous: Vec<u8>,
}

impl TreeState {
    fn feed(&mut self, window: &[u8]) -> Result<()> {
        let bs = self.params.block_size();
        let hs = self.params.digest_len();
        self.current.resize(window.len().div_ceil(bs) * hs, 0);
        let (builder, previous) = (&mut self.builder, &self.previous);
        let (hasher, current) = (&self.hasher, &mut self.current);
        let (pushed, ()) = rayon::join(
            || builder.push_leaves(previous),
            || hash_leaves(hasher, bs, hs, window, current),
        );
        pushed?;
        std::mem::swap(&mut self.previous, &mut self.current);
        Ok(())
    }

    fn finish(
        mut self,
        size: u64,
    ) -> Result<(
        FsVerityDigest,
        Option<NamedTempFile>,
        Option<LeafComparison>,
    )> {
        self.builder.push_leaves(&self.previous)?;
        let built = self.builder.finish()?;
        Ok((
            FsVerityDigest::from_root(self.params, size, built.root),
            built.tree,
            built.comparison,
        ))
    }
}

/// Hashes consecutive data blocks in parallel, in pairs (the SHA-256 kernel
/// hashes two blocks at once).
fn hash_leaves(hasher: &BlockHasher, bs: usize, hs: usize, data: &[u8], out: &mut [u8]) {
    // At least 64 KiB per task, so rayon's bookkeeping stays negligible.
    let min_pairs = (65536 / (2 * bs)).max(1);
    data.par_chunks(2 * bs)
        .zip(out.par_chunks_mut(2 * hs))
        .with_min_len(min_pairs)
        .for_each(|(pair, o)| hasher.hash_blocks(pair, bs, o));
}

struct Pass {
    origin: PathBuf,
    linear: Vec<(HashMethod, Hasher)>,
    tree: Option<TreeState>,
    size: u64,
}

impl Pass {
    fn new(spec: PassSpec<'_>, origin: &Path) -> Result<Self> {
        let linear = spec
            .linear
            .iter()
            .map(|&h| {
                Hasher::new(h.message_digest())
                    .map(|x| (h, x))
                    .map_err(|e| Error::crypto("hasher", e))
            })
            .collect::<Result<Vec<_>>>()?;
        let tree = match spec.tree {
            Some(params) => {
                let sink = spec.tree_out.map(TreeSink::new).transpose()?;
                let mut builder = TreeBuilder::new(params, sink);
                if let Some(c) = spec.compare {
                    builder.compare_with(c);
                }
                Some(TreeState {
                    params: params.clone(),
                    hasher: BlockHasher::new(params),
                    builder,
                    current: Vec::new(),
                    previous: Vec::new(),
                })
            }
            None => None,
        };
        Ok(Pass {
            origin: origin.to_path_buf(),
            linear,
            tree,
            size: 0,
        })
    }

    fn feed(&mut self, window: &[u8]) -> Result<()> {
        self.size += window.len() as u64;
        // Each linear stream is serial; several run side by side, and beside
        // the tree, whose blocks fill the cores the streams leave.
        let linear_update = |linear: &mut [(HashMethod, Hasher)]| -> Result<()> {
            linear
                .par_iter_mut()
                .try_for_each(|(_, h)| h.update(window).map_err(|e| Error::crypto("hashing", e)))
        };
        match (self.linear.is_empty(), &mut self.tree) {
            (false, Some(t)) => {
                let linear = &mut self.linear;
                let (a, b) = rayon::join(|| linear_update(linear), || t.feed(window));
                a.and(b)
            }
            (false, None) => linear_update(&mut self.linear),
            (true, Some(t)) => t.feed(window),
            (true, None) => Ok(()),
        }
    }

    fn finish(self) -> Result<PassOutput> {
        let size = self.size;
        let linear = self
            .linear
            .into_iter()
            .map(|(hash, mut h)| {
                h.finish()
                    .map(|d| ImageDigest {
                        hash,
                        digest: d.to_vec(),
                        size,
                    })
                    .map_err(|e| Error::crypto("hashing", e))
            })
            .collect::<Result<Vec<_>>>()?;
        let (fsverity, tree_file, comparison) = match self.tree {
            Some(t) => {
                let (d, f, c) = t.finish(size)?;
                (Some(d), f, c)
            }
            None => (None, None, None),
        };
        Ok(PassOutput {
            size,
            linear,
            fsverity,
            tree_file,
            comparison,
        })
    }
}

/// A mapped window, watched for pages that vanish under it.
struct Window {
    // Declared first: unregistered before the mapping goes away.
    watch: Option<Watched>,
    map: Mmap,
}

impl Window {
    fn faulted(&self) -> bool {
        self.watch.as_ref().is_some_and(Watched::faulted)
    }
}

/// Hashes a regular file through memory maps. Returns whether pages vanished
/// under a map (the file was truncated while it was read); the bytes hashed
/// are then partly zeros and the caller must not use the result.
fn pass_mapped(
    file: &File,
    size: u64,
    pass: &mut Pass,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<bool> {
    let origin = pass.origin.clone();
    let map = |offset: u64| -> Result<Option<Window>> {
        if offset >= size {
            return Ok(None);
        }
        let len = (size - offset).min(WINDOW as u64) as usize;
        // SAFETY: the mapping is read-only and private to this function. If
        // another process truncates the image while it is hashed, reading the
        // lost pages raises SIGBUS; the window is watched (sigbus.rs), so the
        // handler puts zero pages there and the caller reports the change.
        let m = unsafe {
            MmapOptions::new()
                .offset(offset)
                .len(len)
                .populate()
                .map(file)
        };
        let map = m.map_err(|e| Error::io(&origin, e))?;
        Ok(Some(Window {
            watch: Watched::new(map.as_ptr(), map.len()),
            map,
        }))
    };
    let mut offset = 0u64;
    let mut current = map(0)?;
    let mut done: Option<Window> = None;
    let mut truncated = false;
    while let Some(window) = current.take() {
        let next_offset = offset + window.map.len() as u64;
        // Unmap the last window and map (and fault in) the next one while this
        // one is hashed: both are page-table work that would otherwise leave
        // a core idle between windows.
        let (fed, (next, vanished)) = rayon::join(
            || pass.feed(&window.map),
            || {
                let vanished = done.as_ref().is_some_and(Window::faulted);
                drop(done.take());
                (map(next_offset), vanished)
            },
        );
        truncated |= vanished;
        fed?;
        progress(window.map.len() as u64);
        done = Some(window);
        current = next?;
        offset = next_offset;
    }
    truncated |= done.as_ref().is_some_and(Window::faulted);
    Ok(truncated)
}

fn pass_stream(
    reader: impl Read + Send,
    pass: &mut Pass,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let origin = pass.origin.clone();
    std::thread::scope(|s| {
        let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(1);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..STREAM_BUFFERS {
            empty_tx
                .send(Vec::with_capacity(WINDOW))
                .expect("the receiver is alive");
        }
        let reader_thread = s.spawn(move || {
            let mut reader = reader;
            while let Ok(mut buf) = empty_rx.recv() {
                buf.clear();
                // Fill whole windows: the tree needs every window but the last
                // to be a whole number of blocks.
                let read = (&mut reader).take(WINDOW as u64).read_to_end(&mut buf);
                let last = !matches!(read, Ok(n) if n == WINDOW);
                if full_tx.send(read.map(|_| buf)).is_err() || last {
                    break;
                }
            }
        });
        let result = (|| {
            for message in full_rx.iter() {
                let buf = message.map_err(|e| Error::io(&origin, e))?;
                if buf.is_empty() {
                    break;
                }
                pass.feed(&buf)?;
                progress(buf.len() as u64);
                // The reader may have stopped at the end; then nobody takes it.
                let _ = empty_tx.send(buf);
            }
            Ok(())
        })();
        // Dropping both ends unblocks a reader still waiting on either.
        drop(full_rx);
        drop(empty_tx);
        // Joined, not left to the scope: the scope waits only for the closure
        // to return, so the OS thread could still be exiting (running its
        // thread-local destructors, freeing its handle) after the pass has
        // returned. The tree fuzz target's leak check caught that handle.
        reader_thread
            .join()
            .expect("the image reader thread panicked");
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::{TreeHash, digest_bytes};

    fn data(len: usize) -> Vec<u8> {
        let mut x = 0x1234_5678_9abc_def0u64 ^ len as u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn file_and_stream_passes_agree_with_the_serial_reference() {
        let dir = tempfile::tempdir().unwrap();
        // Crosses window boundaries, with a short last window.
        let bytes = data(2 * WINDOW + 4096 * 3 + 17);
        let path = dir.path().join("img");
        std::fs::write(&path, &bytes).unwrap();
        for (hash, bs) in [(TreeHash::Sha256, 4096), (TreeHash::Sha512, 1024)] {
            let params = TreeParams::new(hash, bs, b"salt".to_vec()).unwrap();
            let want = digest_bytes(&params, &bytes);
            let spec = || PassSpec {
                linear: vec![HashMethod::Sha384, HashMethod::Sha512],
                tree: Some(&params),
                ..Default::default()
            };
            let mapped = run_pass(&ImageSource::Path(path.clone()), spec(), &|_| ()).unwrap();
            assert_eq!(mapped.fsverity.as_ref(), Some(&want));
            assert_eq!(mapped.size, bytes.len() as u64);
            let mut streamed = Pass::new(spec(), Path::new("mem")).unwrap();
            pass_stream(&bytes[..], &mut streamed, &|_| ()).unwrap();
            let streamed = streamed.finish().unwrap();
            assert_eq!(streamed.fsverity.as_ref(), Some(&want));
            for (i, h) in [HashMethod::Sha384, HashMethod::Sha512]
                .into_iter()
                .enumerate()
            {
                let linear = openssl::hash::hash(h.message_digest(), &bytes).unwrap();
                assert_eq!(mapped.linear[i].digest, linear.to_vec());
                assert_eq!(streamed.linear[i].digest, linear.to_vec());
                assert_eq!(mapped.linear_digest(h), Some(&mapped.linear[i]));
            }
        }
    }

    /// Fuzz regression (tree target, input `01 05 01 05`: an empty image,
    /// which is streamed): the reader thread had not always exited when the
    /// pass returned. Its thread-local destructor here is slow, so only a
    /// joined thread has run it by then.
    #[test]
    fn stream_pass_returns_after_its_reader_thread_exits() {
        use std::sync::atomic::AtomicBool;
        static EXITED: AtomicBool = AtomicBool::new(false);
        struct SlowExit;
        impl Drop for SlowExit {
            fn drop(&mut self) {
                std::thread::sleep(std::time::Duration::from_millis(200));
                EXITED.store(true, Ordering::SeqCst);
            }
        }
        thread_local!(static ON_EXIT: SlowExit = const { SlowExit });
        struct Empty;
        impl Read for Empty {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                ON_EXIT.with(|_| ());
                Ok(0)
            }
        }
        let params = TreeParams::new(TreeHash::Sha256, 4096, Vec::new()).unwrap();
        let mut pass = Pass::new(
            PassSpec {
                tree: Some(&params),
                ..Default::default()
            },
            Path::new("empty"),
        )
        .unwrap();
        pass_stream(Empty, &mut pass, &|_| ()).unwrap();
        assert!(EXITED.load(Ordering::SeqCst));
        assert_eq!(pass.finish().unwrap().size, 0);
    }

    /// Review finding: a file truncated to 0 between the `stat` that sets
    /// the mapped length and the one `FileStamp::of` takes has no stamp; the
    /// pass then hashed the handler's zeros and returned their digests. The
    /// two `stat`s cannot be interleaved with a truncation from a test, so
    /// the decision is tested on its own.
    #[test]
    fn a_truncated_mapped_pass_always_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        std::fs::write(&path, [7u8; 8192]).unwrap();
        let file = File::open(&path).unwrap();
        let stamp = || FileStamp::of(&file, &path).unwrap();
        assert!(stamp().is_some());
        let changed = |r: Result<()>| {
            let e = r.expect_err("the pass must be refused");
            assert_eq!(e.kind().exit_code(), 7, "{e}");
            assert!(
                e.to_string()
                    .contains("the image changed while it was being read"),
                "{e}"
            );
        };
        // No stamp (the file was empty at the second stat), with or without
        // a fault seen by the handler.
        changed(check_mapped(None, &file, &path, 8192, 8192, true));
        changed(check_mapped(None, &file, &path, 8192, 8192, false));
        // A stamp, and pages that vanished.
        changed(check_mapped(stamp(), &file, &path, 8192, 8192, true));
        // A stamp, and fewer bytes mapped than it says.
        changed(check_mapped(stamp(), &file, &path, 4096, 4096, false));
        // Nothing changed.
        check_mapped(stamp(), &file, &path, 8192, 8192, false).unwrap();
    }

    #[test]
    fn map_bounded_keeps_input_order() {
        let items: Vec<usize> = (0..37).collect();
        assert_eq!(
            map_bounded(&items, 3, |i| i * 2),
            (0..37).map(|i| i * 2).collect::<Vec<_>>()
        );
    }
}
