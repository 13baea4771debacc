//! Hashing tree blocks: `H(salt' || block || zero padding)`.
//!
//! SHA-256 blocks are hashed two at a time by the interleaved kernel of
//! `sha256x2` where the CPU has SHA-NI or AArch64's SHA2 extension (one
//! stream leaves the SHA unit half idle), and one at a time by `sha2`, whose SHA-NI path hashes 4 KiB blocks
//! ~12% faster than OpenSSL's `SHA256_*` calls here (one short message at a
//! time is where OpenSSL's per-call overhead shows); SHA-512 comes from
//! OpenSSL, ~1.2x faster than `sha2`'s (docs/performance.md, "Tree hasher").
//! The salted state is computed once and cloned per block, so the salt costs
//! nothing per block.

use super::sha256x2::Sha256Prefix;
use super::{TreeHash, TreeParams};

/// Zeros to pad a short last block, without copying it.
static ZEROS: [u8; super::MAX_BLOCK_SIZE] = [0; super::MAX_BLOCK_SIZE];

#[derive(Clone)]
pub(crate) enum BlockHasher {
    Sha256(Sha256Prefix),
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
            TreeHash::Sha256 => BlockHasher::Sha256(Sha256Prefix::new(&padded_salt)),
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
                let d = if pad.is_empty() {
                    salted.finup(block)
                } else {
                    let mut padded = [0u8; super::MAX_BLOCK_SIZE];
                    padded[..block.len()].copy_from_slice(block);
                    salted.finup(&padded[..block_size])
                };
                out.copy_from_slice(&d);
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

impl BlockHasher {
    /// Hashes consecutive blocks of `data` (the last one may be short) into
    /// consecutive hashes in `out`; whole SHA-256 blocks go two at a time.
    #[inline]
    pub(crate) fn hash_blocks(&self, data: &[u8], block_size: usize, out: &mut [u8]) {
        let BlockHasher::Sha256(salted) = self else {
            let hs = TreeHash::Sha512.digest_len();
            for (block, o) in data.chunks(block_size).zip(out.chunks_mut(hs)) {
                self.hash_block(block, block_size, o);
            }
            return;
        };
        let hs = TreeHash::Sha256.digest_len();
        for (pair, o) in data.chunks(2 * block_size).zip(out.chunks_mut(2 * hs)) {
            if pair.len() == 2 * block_size {
                let (a, b) = pair.split_at(block_size);
                let (da, db) = salted.finup_2x(a, b);
                o[..hs].copy_from_slice(&da);
                o[hs..].copy_from_slice(&db);
            } else {
                for (block, o) in pair.chunks(block_size).zip(o.chunks_mut(hs)) {
                    self.hash_block(block, block_size, o);
                }
            }
        }
    }
}

/// An unsalted hash, for the descriptor.
pub(crate) fn plain_hash(hash: TreeHash, data: &[u8]) -> Vec<u8> {
    match hash {
        TreeHash::Sha256 => Sha256Prefix::new(&[]).finup(data).to_vec(),
        TreeHash::Sha512 => openssl::sha::sha512(data).to_vec(),
    }
}
