//! Hashing one tree block: `H(salt' || block || zero padding)`.
//!
//! SHA-256 comes from `sha2`, whose SHA-NI path hashes 4 KiB blocks ~12%
//! faster than OpenSSL's `SHA256_*` calls here (one short message at a time
//! is where OpenSSL's per-call overhead shows); SHA-512 comes from OpenSSL,
//! ~1.2x faster than `sha2`'s (docs/performance.md, "Tree hasher"). The
//! salted state is computed once and cloned per block, so the salt costs
//! nothing per block.

use sha2::Digest;

use super::{TreeHash, TreeParams};

/// Zeros to pad a short last block, without copying it.
static ZEROS: [u8; super::MAX_BLOCK_SIZE] = [0; super::MAX_BLOCK_SIZE];

#[derive(Clone)]
pub(crate) enum BlockHasher {
    Sha256(sha2::Sha256),
    Sha512(openssl::sha::Sha512),
}

impl BlockHasher {
    pub(crate) fn new(params: &TreeParams) -> Self {
        let salt = params.salt();
        let padded = salt
            .len()
            .next_multiple_of(params.hash().compression_block_len());
        let mut padded_salt = vec![0u8; padded];
        padded_salt[..salt.len()].copy_from_slice(salt);
        match params.hash() {
            TreeHash::Sha256 => {
                let mut h = sha2::Sha256::new();
                h.update(&padded_salt);
                BlockHasher::Sha256(h)
            }
            TreeHash::Sha512 => {
                let mut h = openssl::sha::Sha512::new();
                h.update(&padded_salt);
                BlockHasher::Sha512(h)
            }
        }
    }

    /// Hashes `block` (at most `block_size` bytes, zero-padded up to it) into `out`.
    #[inline]
    pub(crate) fn hash_block(&self, block: &[u8], block_size: usize, out: &mut [u8]) {
        let pad = &ZEROS[..block_size - block.len()];
        match self {
            BlockHasher::Sha256(salted) => {
                let mut h = salted.clone();
                h.update(block);
                if !pad.is_empty() {
                    h.update(pad);
                }
                out.copy_from_slice(&h.finalize());
            }
            BlockHasher::Sha512(salted) => {
                let mut h = salted.clone();
                h.update(block);
                if !pad.is_empty() {
                    h.update(pad);
                }
                out.copy_from_slice(&h.finish());
            }
        }
    }
}

/// An unsalted hash, for the descriptor.
pub(crate) fn plain_hash(hash: TreeHash, data: &[u8]) -> Vec<u8> {
    match hash {
        TreeHash::Sha256 => sha2::Sha256::digest(data).to_vec(),
        TreeHash::Sha512 => openssl::sha::sha512(data).to_vec(),
    }
}
