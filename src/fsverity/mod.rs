//! fs-verity Merkle trees, bit for bit as the kernel and `fsverity digest`
//! compute them, built in parallel in the same read pass as the linear digest
//! Glance signs.
//!
//! The format (kernel `Documentation/filesystems/fsverity.rst`): the image is
//! cut into blocks of `block_size` bytes, the last one zero-padded; each block
//! is hashed as `H(salt' || block)`, where `salt'` is the salt zero-padded to
//! the hash's compression-block size (64 bytes for SHA-256, 128 for SHA-512),
//! so the salted state can be computed once and cloned. The hashes of one
//! level, packed and zero-padded into blocks, are hashed the same way into the
//! next level, until one block remains; its hash is the root hash. An empty
//! image's root hash is all zeros, and a one-block image's is its block's
//! hash. The file digest is the plain hash of the 256-byte descriptor that
//! binds the root hash to the parameters and the image size.

mod builder;
mod hasher;
pub mod pass;
pub mod sha256x2;
mod sigbus;
pub mod tree;

use std::fmt;
use std::str::FromStr;

use crate::algorithms::HashMethod;
use crate::error::{Error, Result};

pub use pass::{PassOutput, PassSpec, run_pass};

/// The Merkle-tree hash algorithms fs-verity defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TreeHash {
    Sha256,
    Sha512,
}

impl TreeHash {
    /// The name `fsverity digest` prints before the digest (`sha256:…`).
    pub fn name(self) -> &'static str {
        match self {
            TreeHash::Sha256 => "sha256",
            TreeHash::Sha512 => "sha512",
        }
    }

    /// `FS_VERITY_HASH_ALG_*`, as stored in the descriptor.
    pub fn number(self) -> u8 {
        match self {
            TreeHash::Sha256 => 1,
            TreeHash::Sha512 => 2,
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            TreeHash::Sha256 => 32,
            TreeHash::Sha512 => 64,
        }
    }

    /// The hash's internal block size, to which the salt is zero-padded.
    pub fn compression_block_len(self) -> usize {
        match self {
            TreeHash::Sha256 => 64,
            TreeHash::Sha512 => 128,
        }
    }

    pub fn hash_method(self) -> HashMethod {
        match self {
            TreeHash::Sha256 => HashMethod::Sha256,
            TreeHash::Sha512 => HashMethod::Sha512,
        }
    }

    pub fn from_hash_method(hash: HashMethod) -> Option<Self> {
        match hash {
            HashMethod::Sha256 => Some(TreeHash::Sha256),
            HashMethod::Sha512 => Some(TreeHash::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Accepts fs-verity's names (`sha256`) and Glance's (`SHA-256`).
impl FromStr for TreeHash {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let folded: String = s
            .chars()
            .filter(|c| *c != '-')
            .collect::<String>()
            .to_ascii_lowercase();
        match folded.as_str() {
            "sha256" => Ok(TreeHash::Sha256),
            "sha512" => Ok(TreeHash::Sha512),
            _ => Err(Error::usage(format!(
                "fs-verity trees use SHA-256 or SHA-512, not \"{s}\""
            ))),
        }
    }
}

/// The largest salt the descriptor can hold.
pub const MAX_SALT_LEN: usize = 32;
/// The range of block sizes the kernel accepts (1 KiB up to the largest page size).
pub const MIN_BLOCK_SIZE: usize = 1024;
pub const MAX_BLOCK_SIZE: usize = 65536;
pub const DEFAULT_BLOCK_SIZE: usize = 4096;
/// The size of `struct fsverity_descriptor`.
pub const DESCRIPTOR_LEN: usize = 256;

/// What a tree is built with; checked on construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeParams {
    hash: TreeHash,
    block_size: usize,
    salt: Vec<u8>,
}

impl TreeParams {
    pub fn new(hash: TreeHash, block_size: usize, salt: Vec<u8>) -> Result<Self> {
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(Error::usage(format!(
                "block size {block_size} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
            )));
        }
        if salt.len() > MAX_SALT_LEN {
            return Err(Error::usage(format!(
                "the salt is {} bytes; fs-verity allows at most {MAX_SALT_LEN}",
                salt.len()
            )));
        }
        Ok(TreeParams {
            hash,
            block_size,
            salt,
        })
    }

    /// SHA-256, 4 KiB blocks, no salt: what `fsverity digest` does by default.
    pub fn default_for(hash: TreeHash) -> Self {
        TreeParams {
            hash,
            block_size: DEFAULT_BLOCK_SIZE,
            salt: Vec::new(),
        }
    }

    /// A salt written as hex, as `fsverity digest --salt` takes it.
    pub fn parse_salt(text: &str) -> Result<Vec<u8>> {
        hex::decode(text).map_err(|e| Error::usage(format!("salt \"{text}\" is not hex: {e}")))
    }

    pub fn hash(&self) -> TreeHash {
        self.hash
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    pub fn digest_len(&self) -> usize {
        self.hash.digest_len()
    }

    pub fn hashes_per_block(&self) -> usize {
        self.block_size / self.hash.digest_len()
    }

    /// The descriptor whose hash is the file digest (`sig_size` is 0, as the
    /// kernel sets it when measuring).
    pub fn descriptor(&self, data_size: u64, root_hash: &[u8]) -> [u8; DESCRIPTOR_LEN] {
        let mut d = [0u8; DESCRIPTOR_LEN];
        d[0] = 1; // version
        d[1] = self.hash.number();
        d[2] = self.block_size.trailing_zeros() as u8;
        d[3] = self.salt.len() as u8;
        // 4..8: sig_size, 0
        d[8..16].copy_from_slice(&data_size.to_le_bytes());
        d[16..16 + root_hash.len()].copy_from_slice(root_hash);
        d[80..80 + self.salt.len()].copy_from_slice(&self.salt);
        d
    }

    /// Where each level of the tree of a `data_size`-byte image sits in the
    /// tree file.
    pub fn layout(&self, data_size: u64) -> TreeLayout {
        let bs = self.block_size as u64;
        let hpb = self.hashes_per_block() as u64;
        let data_blocks = data_size.div_ceil(bs);
        let mut blocks_per_level = Vec::new();
        let mut n = data_blocks;
        while n > 1 {
            n = n.div_ceil(hpb);
            blocks_per_level.push(n);
        }
        // fs-verity stores the level nearest the root first.
        let mut levels = vec![
            LevelSpan {
                blocks: 0,
                offset: 0
            };
            blocks_per_level.len()
        ];
        let mut offset = 0;
        for (i, blocks) in blocks_per_level.iter().enumerate().rev() {
            levels[i] = LevelSpan {
                blocks: *blocks,
                offset,
            };
            offset += blocks * bs;
        }
        TreeLayout {
            data_size,
            data_blocks,
            block_size: self.block_size,
            levels,
            tree_size: offset,
        }
    }
}

/// One level of a stored tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelSpan {
    pub blocks: u64,
    /// Byte offset of the level's first block in the tree file.
    pub offset: u64,
}

/// The shape of the tree of one image. `levels[0]` holds the data blocks'
/// hashes; the last level has one block, whose hash is the root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLayout {
    pub data_size: u64,
    pub data_blocks: u64,
    pub block_size: usize,
    pub levels: Vec<LevelSpan>,
    /// Bytes of the tree file, as `fsverity digest --out-merkle-tree` writes it.
    pub tree_size: u64,
}

/// An image's fs-verity measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsVerityDigest {
    pub params: TreeParams,
    pub data_size: u64,
    pub root_hash: Vec<u8>,
    /// The hash of the descriptor: what `fsverity digest` prints.
    pub digest: Vec<u8>,
}

impl FsVerityDigest {
    pub fn from_root(params: TreeParams, data_size: u64, root_hash: Vec<u8>) -> Self {
        let descriptor = params.descriptor(data_size, &root_hash);
        let digest = hasher::plain_hash(params.hash(), &descriptor);
        FsVerityDigest {
            params,
            data_size,
            root_hash,
            digest,
        }
    }

    pub fn descriptor(&self) -> [u8; DESCRIPTOR_LEN] {
        self.params.descriptor(self.data_size, &self.root_hash)
    }

    pub fn hex(&self) -> String {
        hex::encode(&self.digest)
    }
}

/// `sha256:<hex>`, as `fsverity digest` prints it.
impl fmt::Display for FsVerityDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.params.hash().name(), self.hex())
    }
}

/// The fs-verity digest of bytes in memory (single-threaded; for small inputs
/// and tests).
pub fn digest_bytes(params: &TreeParams, data: &[u8]) -> FsVerityDigest {
    let mut b = builder::TreeBuilder::new(params, None);
    let h = hasher::BlockHasher::new(params);
    let hs = params.digest_len();
    let mut leaves = vec![0u8; data.len().div_ceil(params.block_size()) * hs];
    h.hash_blocks(data, params.block_size(), &mut leaves);
    b.push_leaves(&leaves).expect("no tree output, no I/O");
    let root = b.finish().expect("no tree output, no I/O").root;
    FsVerityDigest::from_root(params.clone(), data.len() as u64, root)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data `fsverity-utils`' test_compute_digest uses.
    fn vector_data(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| ((i % 11) + (i % 439) + (i % 1103)) as u8)
            .collect()
    }

    #[test]
    fn matches_the_fsverity_utils_vectors() {
        // (hash, block size, salt, size, digest) from fsverity-utils
        // programs/test_compute_digest.c.
        let cases: &[(TreeHash, usize, &str, usize, &str)] = &[
            (
                TreeHash::Sha256,
                4096,
                "",
                1_000_000,
                "48df0c462329cd879661bd05b39aa81b05cc16afd27a7196a559da83531d39d9",
            ),
            (
                TreeHash::Sha256,
                4096,
                "",
                100_000,
                "f2096a36c5cdca4fa33ee8852833150bb324992e5417a9d571f1bffff73b9efc",
            ),
            (
                TreeHash::Sha256,
                4096,
                "",
                4096,
                "6ac39979016e3ddf3d39fff6cb984f7c118acdf1852919f5c100c4b142c1818e",
            ),
            (
                TreeHash::Sha256,
                4096,
                "",
                1,
                "b803429503d95915829b29fdbc8bbad142f3abfd11b1cadf5526582e685c0551",
            ),
            (
                TreeHash::Sha256,
                4096,
                "",
                0,
                "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95",
            ),
            (
                TreeHash::Sha256,
                4096,
                "abcd",
                1_000_000,
                "917900b0d299454aa304d5debc6f39e4af7b5abe33bdbc568d5d8f1e5c4d8652",
            ),
            (
                TreeHash::Sha256,
                4096,
                "0123456789:;<=>?@ABCDEFGHIJKLMNO",
                1_000_000,
                "bc2d70324c048c220a2cb190832140863eb268e680427939e5d467bea5ec5ad9",
            ),
            (
                TreeHash::Sha256,
                1024,
                "",
                1_000_000,
                "e9df927c14fcb961d5f51c666d8ae4c14fe4ff98a374c733e898d00c9e74a8e3",
            ),
            (
                TreeHash::Sha256,
                65536,
                "",
                1_000_000,
                "f3b6418f26d4d0e74728193bae76f15cb4bb2ce9777448d76bd8138b69ec61c2",
            ),
            (
                TreeHash::Sha512,
                4096,
                "abcd",
                1_000_000,
                "8425c6d0c94f84ed904c12936845fbb7af9953753789712dcc3be142db3d4b6b47a399ad52aa609256ce29a960bf4bb0e595ec386ca58c06519d546dc5b197bb",
            ),
        ];
        let data = vector_data(1_000_000);
        for (hash, bs, salt, size, want) in cases {
            let params = TreeParams::new(*hash, *bs, salt.as_bytes().to_vec()).unwrap();
            let got = digest_bytes(&params, &data[..*size]);
            assert_eq!(got.hex(), *want, "{hash} bs={bs} salt={salt:?} size={size}");
        }
    }

    #[test]
    fn layout_counts_levels_like_the_kernel() {
        let p = TreeParams::default_for(TreeHash::Sha256);
        assert_eq!(p.layout(0).levels.len(), 0);
        assert_eq!(p.layout(4096).levels.len(), 0);
        let two = p.layout(4097);
        assert_eq!(two.levels.len(), 1);
        assert_eq!(two.tree_size, 4096);
        // 128 hashes per block: 128 data blocks fit one level, 129 need two.
        assert_eq!(p.layout(128 * 4096).levels.len(), 1);
        let three = p.layout(128 * 4096 + 1);
        assert_eq!(three.levels.len(), 2);
        assert_eq!(three.levels[1].offset, 0);
        assert_eq!(three.levels[0].offset, 4096);
        assert_eq!(three.levels[0].blocks, 2);
    }

    #[test]
    fn rejects_parameters_the_kernel_would() {
        assert!(TreeParams::new(TreeHash::Sha256, 512, vec![]).is_err());
        assert!(TreeParams::new(TreeHash::Sha256, 3000, vec![]).is_err());
        assert!(TreeParams::new(TreeHash::Sha256, 131072, vec![]).is_err());
        assert!(TreeParams::new(TreeHash::Sha256, 4096, vec![0; 33]).is_err());
        assert!(TreeParams::new(TreeHash::Sha512, 1024, vec![0; 32]).is_ok());
        assert!("SHA-384".parse::<TreeHash>().is_err());
        assert_eq!("SHA-512".parse::<TreeHash>().unwrap(), TreeHash::Sha512);
    }
}
