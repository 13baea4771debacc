//! The tree above the data-block hashes, built serially as the leaf hashes
//! arrive in order. This is 1/hashes-per-block of the work (1/128 for
//! SHA-256 with 4 KiB blocks), so it runs beside the parallel leaf hashing
//! instead of being parallelised itself.
//!
//! The number of levels is not needed in advance, so the same builder serves
//! pipes, whose size is unknown until the end: a level's pending block is
//! hashed upward when it fills, and at the end partial blocks are flushed up
//! to the first level that received exactly one hash, the root.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use super::TreeParams;
use super::hasher::BlockHasher;
use super::tree::{LeafComparer, LeafComparison};
use crate::error::{Error, Result};

pub(crate) struct Built {
    pub(crate) root: Vec<u8>,
    pub(crate) tree: Option<NamedTempFile>,
    pub(crate) comparison: Option<LeafComparison>,
}

struct Pending {
    buf: Vec<u8>,
    /// Hashes ever pushed into this level.
    pushed: u64,
}

pub(crate) struct TreeBuilder {
    hasher: BlockHasher,
    block_size: usize,
    hash_len: usize,
    /// `levels[0]` receives the data blocks' hashes.
    levels: Vec<Pending>,
    sink: Option<TreeSink>,
    comparer: Option<LeafComparer>,
}

impl TreeBuilder {
    pub(crate) fn new(params: &TreeParams, sink: Option<TreeSink>) -> Self {
        TreeBuilder {
            hasher: BlockHasher::new(params),
            block_size: params.block_size(),
            hash_len: params.digest_len(),
            levels: Vec::new(),
            sink,
            comparer: None,
        }
    }

    /// Compares every data block's hash with a stored tree's as it arrives.
    pub(crate) fn compare_with(&mut self, comparer: LeafComparer) {
        self.comparer = Some(comparer);
    }

    /// Takes the hashes of consecutive data blocks, in order.
    pub(crate) fn push_leaves(&mut self, hashes: &[u8]) -> Result<()> {
        if let Some(c) = &mut self.comparer {
            c.observe(hashes, self.hash_len)?;
        }
        for h in hashes.chunks(self.hash_len) {
            self.push(0, h)?;
        }
        Ok(())
    }

    fn push(&mut self, mut level: usize, hash: &[u8]) -> Result<()> {
        let hs = self.hash_len;
        let mut carry = [0u8; 64];
        carry[..hs].copy_from_slice(hash);
        loop {
            if level == self.levels.len() {
                self.levels.push(Pending {
                    buf: Vec::with_capacity(self.block_size),
                    pushed: 0,
                });
            }
            let p = &mut self.levels[level];
            p.buf.extend_from_slice(&carry[..hs]);
            p.pushed += 1;
            if p.buf.len() < self.block_size {
                return Ok(());
            }
            self.hasher
                .hash_block(&p.buf, self.block_size, &mut carry[..hs]);
            if let Some(sink) = &mut self.sink {
                sink.write(level, &p.buf)?;
            }
            p.buf.clear();
            level += 1;
        }
    }

    /// The root hash, and the tree file (levels nearest the root first) when
    /// one was asked for, complete and synced but not yet under its name.
    pub(crate) fn finish(mut self) -> Result<Built> {
        let hs = self.hash_len;
        let comparison = self.comparer.take().map(LeafComparer::finish);
        if self.levels.first().is_none_or(|l| l.pushed == 0) {
            let tree = self.sink.take().map(|s| s.finish(0)).transpose()?;
            return Ok(Built {
                root: vec![0u8; hs],
                tree,
                comparison,
            });
        }
        let mut level = 0;
        loop {
            let p = &mut self.levels[level];
            if p.pushed == 1 {
                let root = p.buf[..hs].to_vec();
                let tree = self.sink.take().map(|s| s.finish(level)).transpose()?;
                return Ok(Built {
                    root,
                    tree,
                    comparison,
                });
            }
            if !p.buf.is_empty() {
                p.buf.resize(self.block_size, 0);
                let mut up = [0u8; 64];
                self.hasher
                    .hash_block(&p.buf, self.block_size, &mut up[..hs]);
                if let Some(sink) = &mut self.sink {
                    sink.write(level, &p.buf)?;
                }
                p.buf.clear();
                self.push(level + 1, &up[..hs])?;
            }
            level += 1;
        }
    }
}

/// Where tree blocks go while the tree is built: one spill file per level
/// (the levels are produced interleaved but stored one after another), so
/// memory stays constant whatever the image size.
pub(crate) struct TreeSink {
    target: PathBuf,
    dir: PathBuf,
    levels: Vec<BufWriter<File>>,
}

impl TreeSink {
    pub(crate) fn new(target: &Path) -> Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(Error::io(
                target,
                io::Error::new(io::ErrorKind::NotFound, "the directory does not exist"),
            ));
        }
        Ok(TreeSink {
            target: target.to_path_buf(),
            dir,
            levels: Vec::new(),
        })
    }

    fn write(&mut self, level: usize, block: &[u8]) -> Result<()> {
        while self.levels.len() <= level {
            let f = tempfile::tempfile_in(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            self.levels.push(BufWriter::with_capacity(1 << 16, f));
        }
        self.levels[level]
            .write_all(block)
            .map_err(|e| Error::io(&self.target, e))
    }

    fn finish(self, num_levels: usize) -> Result<NamedTempFile> {
        let target = self.target;
        let io_err = |e| Error::io(&target, e);
        let mut out = tempfile::Builder::new()
            .prefix(".imgseal-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .tempfile_in(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        debug_assert!(self.levels.len() <= num_levels);
        for level in self.levels.into_iter().rev() {
            let mut f = level.into_inner().map_err(|e| io_err(e.into_error()))?;
            f.rewind().map_err(io_err)?;
            io::copy(&mut f, out.as_file_mut()).map_err(io_err)?;
        }
        out.as_file().sync_all().map_err(io_err)?;
        Ok(out)
    }
}
