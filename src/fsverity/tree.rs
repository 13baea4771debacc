//! A stored tree (the `--tree` side file) and checks against it.
//!
//! The file is the Merkle tree exactly as fs-verity stores it and as
//! `fsverity digest --out-merkle-tree` writes it: every level but the root
//! hash, the level nearest the root first. It is not signed: it is trusted
//! only as far as its blocks hash, level by level, up to the signed root
//! hash. So a byte range can be verified by reading only the data blocks
//! that cover it and, for each level, the one tree block on their path (an
//! inclusion proof), and a bad data block can be named once the stored tree
//! is shown to match the root.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::hasher::BlockHasher;
use super::{TreeLayout, TreeParams};
use crate::error::{Error, Result};

/// A tree file opened for checks against one image's parameters and size.
pub struct StoredTree {
    file: File,
    path: PathBuf,
    params: TreeParams,
    layout: TreeLayout,
    hasher: BlockHasher,
}

/// A tree block that does not hash to its parent's entry (or, for the top
/// level, to the root hash): the tree file is not the signed image's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TreeFault {
    /// 0 is the level of the data blocks' hashes.
    pub level: usize,
    pub index: u64,
}

/// What a range check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RangeOutcome {
    Valid,
    /// The first data block in the range whose hash is not the tree's.
    BadBlock {
        block: u64,
    },
    TreeFault(TreeFault),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RangeReport {
    pub first_block: u64,
    pub last_block: u64,
    /// Data blocks read and hashed.
    pub blocks_checked: u64,
    /// Tree blocks read and hashed.
    pub tree_blocks_checked: u64,
    #[serde(flatten)]
    pub outcome: RangeOutcome,
}

impl StoredTree {
    /// Opens `path` as the tree of a `data_size`-byte image built with
    /// `params`. A file of the wrong size is malformed input.
    pub fn open(path: &Path, params: &TreeParams, data_size: u64) -> Result<Self> {
        let (file, meta) =
            match crate::home::open_regular(path, false).map_err(|e| Error::io(path, e))? {
                crate::home::Opened::Regular(file, meta) => (file, meta),
                crate::home::Opened::NotRegular(_) => {
                    return Err(Error::bad_input(format!(
                        "{}: not a regular file",
                        path.display()
                    )));
                }
            };
        let layout = params.layout(data_size);
        if meta.len() != layout.tree_size {
            return Err(Error::bad_input(format!(
                "{}: {} bytes, but the {} tree of a {data_size}-byte image with {}-byte blocks is {} bytes",
                path.display(),
                meta.len(),
                params.hash(),
                params.block_size(),
                layout.tree_size
            )));
        }
        Ok(StoredTree {
            file,
            path: path.to_path_buf(),
            params: params.clone(),
            layout,
            hasher: BlockHasher::new(params),
        })
    }

    pub fn layout(&self) -> &TreeLayout {
        &self.layout
    }

    fn read_block(&self, level: usize, index: u64) -> Result<Vec<u8>> {
        let bs = self.params.block_size();
        let mut buf = vec![0u8; bs];
        let offset = self.layout.levels[level].offset + index * bs as u64;
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }

    fn hash(&self, block: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; self.params.digest_len()];
        self.hasher
            .hash_block(block, self.params.block_size(), &mut out);
        out
    }

    /// A comparer of the image's data-block hashes, as a pass computes them,
    /// with this tree's lowest level (or, for a one-block image, `root`).
    pub fn comparer(&self, root: &[u8]) -> Result<LeafComparer> {
        let expected = match self.layout.levels.first() {
            Some(_) => Expected::Stored(self.level_reader(0)?),
            None => Expected::Root(root.to_vec()),
        };
        Ok(LeafComparer {
            expected,
            path: self.path.clone(),
            count: self.layout.data_blocks,
            seen: 0,
            first_mismatch: None,
            scratch: vec![0u8; self.params.digest_len()],
        })
    }

    /// Checks every stored block against its parent entry and the top block
    /// against `root`, streaming level by level in constant memory.
    pub fn authenticate(&self, root: &[u8]) -> Result<Option<TreeFault>> {
        let bs = self.params.block_size();
        let hs = self.params.digest_len();
        let levels = &self.layout.levels;
        for (level, span) in levels.iter().enumerate() {
            let mut blocks = self.level_reader(level)?;
            let mut parents = match levels.get(level + 1) {
                Some(_) => Some(self.level_reader(level + 1)?),
                None => None,
            };
            let mut block = vec![0u8; bs];
            let mut entry = vec![0u8; hs];
            for index in 0..span.blocks {
                blocks
                    .read_exact(&mut block)
                    .map_err(|e| Error::io(&self.path, e))?;
                let expected: &[u8] = match &mut parents {
                    Some(p) => {
                        p.read_exact(&mut entry)
                            .map_err(|e| Error::io(&self.path, e))?;
                        &entry
                    }
                    None => root,
                };
                if self.hash(&block) != expected {
                    return Ok(Some(TreeFault { level, index }));
                }
            }
        }
        Ok(None)
    }

    /// A sequential reader of one level. Positional reads, because clones of
    /// a `File` share one file offset.
    fn level_reader(&self, level: usize) -> Result<BufReader<AtReader>> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(BufReader::with_capacity(
            1 << 16,
            AtReader {
                file,
                pos: self.layout.levels[level].offset,
            },
        ))
    }

    /// Verifies bytes `offset..offset + len` of `image` against `root`,
    /// reading only the data blocks that cover them and the tree blocks on
    /// their paths to the root. Stops at the first bad block.
    pub fn verify_range(
        &self,
        image: &File,
        image_path: &Path,
        root: &[u8],
        offset: u64,
        len: u64,
    ) -> Result<RangeReport> {
        let bs = self.params.block_size() as u64;
        let size = self.layout.data_size;
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::usage(format!(
                "--range {offset}:{len} is not a non-empty range inside the image ({size} bytes)"
            )));
        }
        let first = offset / bs;
        let last = (offset + len - 1) / bs;
        let mut path = ProofPath {
            tree: self,
            root,
            cache: vec![None; self.layout.levels.len()],
            blocks_read: 0,
        };
        let mut buf = vec![0u8; bs as usize];
        let mut report = RangeReport {
            first_block: first,
            last_block: last,
            blocks_checked: 0,
            tree_blocks_checked: 0,
            outcome: RangeOutcome::Valid,
        };
        for block in first..=last {
            let start = block * bs;
            let n = (size - start).min(bs) as usize;
            image
                .read_exact_at(&mut buf[..n], start)
                .map_err(|e| Error::io(image_path, e))?;
            let got = self.hash(&buf[..n]);
            report.blocks_checked += 1;
            let expected = match path.entry(0, block)? {
                Ok(e) => e,
                Err(fault) => {
                    report.outcome = RangeOutcome::TreeFault(fault);
                    break;
                }
            };
            if got != expected {
                report.outcome = RangeOutcome::BadBlock { block };
                break;
            }
        }
        report.tree_blocks_checked = path.blocks_read;
        Ok(report)
    }
}

/// Authenticated tree blocks on the current path, one per level; ranges are
/// walked in order, so each tree block is read and hashed once.
struct ProofPath<'a> {
    tree: &'a StoredTree,
    root: &'a [u8],
    cache: Vec<Option<(u64, Vec<u8>)>>,
    blocks_read: u64,
}

impl ProofPath<'_> {
    /// The authenticated hash of item `index` of hash level `level` (level 0:
    /// the data blocks' hashes). With no stored levels, the root is the one
    /// data block's hash.
    fn entry(
        &mut self,
        level: usize,
        index: u64,
    ) -> Result<std::result::Result<Vec<u8>, TreeFault>> {
        if level == self.cache.len() {
            debug_assert_eq!(index, 0);
            return Ok(Ok(self.root.to_vec()));
        }
        let hpb = self.tree.params.hashes_per_block() as u64;
        let hs = self.tree.params.digest_len();
        let block_index = index / hpb;
        let at = (index % hpb) as usize * hs;
        if let Some((cached, block)) = &self.cache[level]
            && *cached == block_index
        {
            return Ok(Ok(block[at..at + hs].to_vec()));
        }
        let block = self.tree.read_block(level, block_index)?;
        self.blocks_read += 1;
        let parent = match self.entry(level + 1, block_index)? {
            Ok(p) => p,
            Err(fault) => return Ok(Err(fault)),
        };
        if self.tree.hash(&block) != parent {
            return Ok(Err(TreeFault {
                level,
                index: block_index,
            }));
        }
        let entry = block[at..at + hs].to_vec();
        self.cache[level] = Some((block_index, block));
        Ok(Ok(entry))
    }
}

pub(crate) struct AtReader {
    file: File,
    pos: u64,
}

impl Read for AtReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

enum Expected {
    Stored(BufReader<AtReader>),
    Root(Vec<u8>),
}

/// Compares data-block hashes, in order, with the ones a stored tree holds.
pub struct LeafComparer {
    expected: Expected,
    path: PathBuf,
    /// Data blocks the stored tree covers.
    count: u64,
    seen: u64,
    first_mismatch: Option<u64>,
    scratch: Vec<u8>,
}

/// The comparison's result, once the pass is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LeafComparison {
    /// The first data block whose hash differs from the stored one, or which
    /// one side has and the other has not.
    pub first_mismatch: Option<u64>,
}

impl LeafComparer {
    pub(crate) fn observe(&mut self, hashes: &[u8], hs: usize) -> Result<()> {
        for h in hashes.chunks(hs) {
            let index = self.seen;
            self.seen += 1;
            if self.first_mismatch.is_some() {
                continue;
            }
            if index >= self.count {
                self.first_mismatch = Some(index);
                continue;
            }
            let same = match &mut self.expected {
                Expected::Stored(r) => {
                    r.read_exact(&mut self.scratch)
                        .map_err(|e| Error::io(&self.path, e))?;
                    self.scratch == h
                }
                Expected::Root(root) => root.as_slice() == h,
            };
            if !same {
                self.first_mismatch = Some(index);
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> LeafComparison {
        let first_mismatch = self
            .first_mismatch
            .or((self.seen < self.count).then_some(self.seen));
        LeafComparison { first_mismatch }
    }
}
