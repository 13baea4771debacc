//! Two SHA-256 messages of equal length with a shared prefix, hashed at once
//! with interleaved SHA instructions (SHA-NI on x86-64, the SHA2 Crypto
//! Extension on AArch64): the one hash imgseal implements itself, and only
//! for throughput.
//!
//! Why: one SHA-256 stream is bound by the latency of `sha256rnds2` (or of
//! `sha256h`/`sha256h2`: each group of rounds waits for the previous one),
//! while the CPU can start a new one every cycle or two. Two independent
//! messages fill that gap. fs-verity tree blocks are independent, equally
//! long and share the salted prefix, which is the case Linux 6.18 optimised
//! the same way (`sha256_finup_2x`: lib/crypto/x86/sha256-ni-asm.S and
//! `sha256_ce_finup2x` in lib/crypto/arm64/sha256-ce.S). Neither `sha2` nor
//! OpenSSL offers it.
//!
//! Everything else stays with `sha2`: the prefix state is computed by
//! `sha2::compress256`, and CPUs without the instructions (or other
//! architectures, or big-endian AArch64) hash the two messages one after the
//! other with `sha2`. The kernels are proven against `sha2` and OpenSSL by
//! the tests below (every padding case, random data, the compression
//! function alone), by fuzz/fuzz_targets/sha256x2.rs, and, through the tree,
//! by the `fsverity digest` equality suite (tests/fsverity.rs). The AArch64
//! kernel runs on no machine of ours: tests/sha256x2-cross builds this file
//! alone, so scripts/test-cross.sh runs the same tests (against `sha2` only)
//! under qemu-user's emulation of the SHA2 extension, and natively.
//!
//! All `unsafe` of the kernels is in `ni` (x86-64) and `ce` (AArch64), one
//! `compress_lanes` per architecture.

use sha2::Digest;

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A compression function over `N` lanes of equal block counts.
type Compress<const N: usize> = fn(&mut [[u32; 8]; N], [&[[u8; 64]]; N]);

/// A SHA-256 state after a prefix, from which many messages are finished.
#[derive(Clone)]
pub struct Sha256Prefix {
    /// The state after the prefix's whole 64-byte blocks.
    state: [u32; 8],
    /// The prefix's bytes after its last whole block.
    tail: [u8; 64],
    tail_len: usize,
    prefix_len: u64,
    /// The same prefix in `sha2`, for single messages and the fallback.
    sha2: sha2::Sha256,
}

impl Sha256Prefix {
    pub fn new(prefix: &[u8]) -> Self {
        let mut state = IV;
        let (blocks, rest) = prefix.as_chunks::<64>();
        for b in blocks {
            sha2::compress256(&mut state, &[(*b).into()]);
        }
        let mut tail = [0u8; 64];
        tail[..rest.len()].copy_from_slice(rest);
        let mut sha2 = sha2::Sha256::new();
        sha2.update(prefix);
        Sha256Prefix {
            state,
            tail,
            tail_len: rest.len(),
            prefix_len: prefix.len() as u64,
            sha2,
        }
    }

    /// `SHA-256(prefix || data)`, by `sha2`.
    pub fn finup(&self, data: &[u8]) -> [u8; 32] {
        let mut h = self.sha2.clone();
        h.update(data);
        h.finalize().into()
    }

    /// `SHA-256(prefix || a)` and `SHA-256(prefix || b)`, interleaved where
    /// the CPU allows it.
    ///
    /// # Panics
    /// If `a` and `b` differ in length.
    pub fn finup_2x(&self, a: &[u8], b: &[u8]) -> ([u8; 32], [u8; 32]) {
        assert_eq!(a.len(), b.len(), "finup_2x takes messages of equal length");
        if accelerated() {
            let [da, db] = self.finup_lanes([a, b], arch::compress_lanes::<2>);
            (da, db)
        } else {
            (self.finup(a), self.finup(b))
        }
    }

    /// The interleaved path for `N` equal-length messages: the prefix's tail
    /// and each message's start make the first block, whole blocks are read
    /// in place, and the rest with its padding makes the last one or two.
    fn finup_lanes<const N: usize>(
        &self,
        msgs: [&[u8]; N],
        compress: Compress<N>,
    ) -> [[u8; 32]; N] {
        let len = msgs[0].len();
        let mut states = [self.state; N];
        let t = self.tail_len;
        let mut at = 0;
        if t > 0 && t + len >= 64 {
            at = 64 - t;
            let heads = msgs.map(|m| {
                let mut block = self.tail;
                block[t..].copy_from_slice(&m[..at]);
                [block]
            });
            compress(&mut states, std::array::from_fn(|l| &heads[l][..]));
        }
        let whole = (len - at) / 64 * 64;
        compress(
            &mut states,
            msgs.map(|m| m[at..at + whole].as_chunks::<64>().0),
        );
        at += whole;
        // What the head did not take: the prefix's tail, if it is still
        // pending, then the message's last bytes.
        let pending = if at == 0 { t } else { 0 };
        let rest = pending + len - at;
        let blocks = if rest + 9 <= 64 { 1 } else { 2 };
        let bits = (self.prefix_len + len as u64) * 8;
        let lasts = msgs.map(|m| {
            let mut last = [[0u8; 64]; 2];
            let flat = last.as_flattened_mut();
            flat[..pending].copy_from_slice(&self.tail[..pending]);
            flat[pending..rest].copy_from_slice(&m[at..]);
            flat[rest] = 0x80;
            flat[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits.to_be_bytes());
            last
        });
        compress(&mut states, std::array::from_fn(|l| &lasts[l][..blocks]));
        states.map(|s| {
            let mut out = [0u8; 32];
            for (o, w) in out.chunks_exact_mut(4).zip(s) {
                o.copy_from_slice(&w.to_be_bytes());
            }
            out
        })
    }
}

/// Whether [`Sha256Prefix::finup_2x`] runs the interleaved kernel here.
pub fn accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("ssse3")
    }
    #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_endian = "little")
    )))]
    {
        false
    }
}

/// This architecture's `compress_lanes`: the one kernel `finup_2x` calls.
#[cfg(target_arch = "x86_64")]
use ni as arch;

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
use ce as arch;

#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
)))]
mod arch {
    pub(super) fn compress_lanes<const N: usize>(_: &mut [[u32; 8]; N], _: [&[[u8; 64]]; N]) {
        unreachable!("only called when accelerated()")
    }
}

/// SHA-256's round constants (FIPS 180-4, 4.2.2), for the kernels.
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
))]
static K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The SHA-NI compression function over `N` lanes at once. The round
/// structure is Intel's (the SHA extensions white paper), as in `sha2`'s
/// x86 backend; each step is issued for every lane before the next step, so
/// the lanes' dependency chains overlap in the pipeline.
#[cfg(target_arch = "x86_64")]
mod ni {
    use super::K;
    use core::arch::x86_64::*;

    /// Compresses `blocks[l]` into `states[l]` for every lane `l`.
    ///
    /// # Panics
    /// If the CPU lacks SHA-NI, or the lanes differ in block count.
    pub(super) fn compress_lanes<const N: usize>(
        states: &mut [[u32; 8]; N],
        blocks: [&[[u8; 64]]; N],
    ) {
        assert!(super::accelerated() && blocks.iter().all(|b| b.len() == blocks[0].len()));
        // SAFETY: the CPU has the features `compress` is compiled for, and
        // the lanes have equal block counts (both checked just above).
        unsafe { compress(states, blocks) }
    }

    /// # Safety
    /// The CPU must support `sha`, `sse2`, `ssse3` and `sse4.1`, and every
    /// lane must have as many blocks as lane 0.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn compress<const N: usize>(states: &mut [[u32; 8]; N], blocks: [&[[u8; 64]]; N]) {
        let bswap = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let mut abef = [_mm_setzero_si128(); N];
        let mut cdgh = [_mm_setzero_si128(); N];
        for l in 0..N {
            // SAFETY: a `[u32; 8]` is 32 readable bytes; unaligned loads.
            let (dcba, hgfe) = unsafe {
                let p = states[l].as_ptr().cast::<__m128i>();
                (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
            };
            let cdab = _mm_shuffle_epi32(dcba, 0xb1);
            let efgh = _mm_shuffle_epi32(hgfe, 0x1b);
            abef[l] = _mm_alignr_epi8(cdab, efgh, 8);
            cdgh[l] = _mm_blend_epi16(efgh, cdab, 0xf0);
        }
        for i in 0..blocks[0].len() {
            let (abef0, cdgh0) = (abef, cdgh);
            let mut w = [[_mm_setzero_si128(); 4]; N];
            for l in 0..N {
                // SAFETY: `blocks[l]` has as many blocks as `blocks[0]` (the
                // caller's promise), so `blocks[l][i]` is 64 readable bytes,
                // loaded unaligned.
                let p = unsafe { blocks[l].get_unchecked(i) }
                    .as_ptr()
                    .cast::<__m128i>();
                for (j, wj) in w[l].iter_mut().enumerate() {
                    // SAFETY: as above; `j < 4`.
                    *wj = _mm_shuffle_epi8(unsafe { _mm_loadu_si128(p.add(j)) }, bswap);
                }
            }
            macro_rules! rounds4 {
                ($r:literal) => {
                    // SAFETY: `K` has 64 words, and `$r < 16`.
                    let k = unsafe { _mm_loadu_si128(K.as_ptr().add(4 * $r).cast()) };
                    for l in 0..N {
                        if $r >= 4 {
                            // W[r..r+4] from W[r-16..r], kept in a ring of four.
                            let s = &mut w[l];
                            let t = _mm_add_epi32(
                                _mm_sha256msg1_epu32(s[$r % 4], s[($r + 1) % 4]),
                                _mm_alignr_epi8(s[($r + 3) % 4], s[($r + 2) % 4], 4),
                            );
                            s[$r % 4] = _mm_sha256msg2_epu32(t, s[($r + 3) % 4]);
                        }
                        let wk = _mm_add_epi32(w[l][$r % 4], k);
                        cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk);
                        abef[l] =
                            _mm_sha256rnds2_epu32(abef[l], cdgh[l], _mm_shuffle_epi32(wk, 0x0e));
                    }
                };
            }
            rounds4!(0);
            rounds4!(1);
            rounds4!(2);
            rounds4!(3);
            rounds4!(4);
            rounds4!(5);
            rounds4!(6);
            rounds4!(7);
            rounds4!(8);
            rounds4!(9);
            rounds4!(10);
            rounds4!(11);
            rounds4!(12);
            rounds4!(13);
            rounds4!(14);
            rounds4!(15);
            for l in 0..N {
                abef[l] = _mm_add_epi32(abef[l], abef0[l]);
                cdgh[l] = _mm_add_epi32(cdgh[l], cdgh0[l]);
            }
        }
        for l in 0..N {
            let feba = _mm_shuffle_epi32(abef[l], 0x1b);
            let dchg = _mm_shuffle_epi32(cdgh[l], 0xb1);
            let dcba = _mm_blend_epi16(feba, dchg, 0xf0);
            let hgef = _mm_alignr_epi8(dchg, feba, 8);
            // SAFETY: a `[u32; 8]` is 32 writable bytes; unaligned stores.
            unsafe {
                let p = states[l].as_mut_ptr().cast::<__m128i>();
                _mm_storeu_si128(p, dcba);
                _mm_storeu_si128(p.add(1), hgef);
            }
        }
    }
}

/// The ARMv8 SHA-256 Crypto Extension's compression function over `N` lanes
/// at once, as Linux 6.18's `sha256_ce_finup2x` (lib/crypto/arm64/sha256-ce.S)
/// interleaves two. The round structure is Arm's (`sha256h`/`sha256h2` for
/// four rounds, `sha256su0`/`sha256su1` for four schedule words), as in
/// `sha2`'s aarch64 backend; each step is issued for every lane before the
/// next step, as in `ni`. Big-endian AArch64 keeps `sha2`.
#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
mod ce {
    use super::K;
    use core::arch::aarch64::*;

    /// Compresses `blocks[l]` into `states[l]` for every lane `l`.
    ///
    /// # Panics
    /// If the CPU lacks the SHA2 extension, or the lanes differ in block
    /// count.
    pub(super) fn compress_lanes<const N: usize>(
        states: &mut [[u32; 8]; N],
        blocks: [&[[u8; 64]]; N],
    ) {
        assert!(super::accelerated() && blocks.iter().all(|b| b.len() == blocks[0].len()));
        // SAFETY: the CPU has the features `compress` is compiled for, and
        // the lanes have equal block counts (both checked just above).
        unsafe { compress(states, blocks) }
    }

    /// # Safety
    /// The CPU must support `sha2` (and `neon`, which AArch64 Linux
    /// always has), and every lane must have as many blocks as lane 0.
    #[target_feature(enable = "neon,sha2")]
    unsafe fn compress<const N: usize>(states: &mut [[u32; 8]; N], blocks: [&[[u8; 64]]; N]) {
        let mut abcd = [vdupq_n_u32(0); N];
        let mut efgh = [vdupq_n_u32(0); N];
        for l in 0..N {
            // SAFETY: a `[u32; 8]` is 8 readable words, aligned for `u32`.
            unsafe {
                let p = states[l].as_ptr();
                abcd[l] = vld1q_u32(p);
                efgh[l] = vld1q_u32(p.add(4));
            }
        }
        for i in 0..blocks[0].len() {
            let (abcd0, efgh0) = (abcd, efgh);
            let mut w = [[vdupq_n_u32(0); 4]; N];
            for l in 0..N {
                // SAFETY: `blocks[l]` has as many blocks as `blocks[0]` (the
                // caller's promise), so `blocks[l][i]` is 64 readable bytes.
                let p = unsafe { blocks[l].get_unchecked(i) }.as_ptr();
                for (j, wj) in w[l].iter_mut().enumerate() {
                    // SAFETY: as above; `j < 4`. Big-endian words from bytes.
                    *wj = vreinterpretq_u32_u8(vrev32q_u8(unsafe { vld1q_u8(p.add(16 * j)) }));
                }
            }
            macro_rules! rounds4 {
                ($r:literal) => {
                    // SAFETY: `K` has 64 words, and `$r < 16`.
                    let k = unsafe { vld1q_u32(K.as_ptr().add(4 * $r)) };
                    for l in 0..N {
                        if $r >= 4 {
                            // W[r..r+4] from W[r-16..r], kept in a ring of four.
                            let s = &mut w[l];
                            s[$r % 4] = vsha256su1q_u32(
                                vsha256su0q_u32(s[$r % 4], s[($r + 1) % 4]),
                                s[($r + 2) % 4],
                                s[($r + 3) % 4],
                            );
                        }
                        let wk = vaddq_u32(w[l][$r % 4], k);
                        let abcd_in = abcd[l];
                        abcd[l] = vsha256hq_u32(abcd_in, efgh[l], wk);
                        efgh[l] = vsha256h2q_u32(efgh[l], abcd_in, wk);
                    }
                };
            }
            rounds4!(0);
            rounds4!(1);
            rounds4!(2);
            rounds4!(3);
            rounds4!(4);
            rounds4!(5);
            rounds4!(6);
            rounds4!(7);
            rounds4!(8);
            rounds4!(9);
            rounds4!(10);
            rounds4!(11);
            rounds4!(12);
            rounds4!(13);
            rounds4!(14);
            rounds4!(15);
            for l in 0..N {
                abcd[l] = vaddq_u32(abcd[l], abcd0[l]);
                efgh[l] = vaddq_u32(efgh[l], efgh0[l]);
            }
        }
        for l in 0..N {
            // SAFETY: a `[u32; 8]` is 8 writable words, aligned for `u32`.
            unsafe {
                let p = states[l].as_mut_ptr();
                vst1q_u32(p, abcd[l]);
                vst1q_u32(p.add(4), efgh[l]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng, rngs::StdRng};

    /// OpenSSL's SHA-256: a second reference where the crate links OpenSSL
    /// (tests/sha256x2-cross builds this file alone, without it).
    #[cfg(not(sha256x2_standalone))]
    fn openssl_sha256(prefix: &[u8], data: &[u8]) -> [u8; 32] {
        let mut h = openssl::sha::Sha256::new();
        h.update(prefix);
        h.update(data);
        h.finish()
    }

    fn sha2_sha256(prefix: &[u8], data: &[u8]) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(prefix);
        h.update(data);
        h.finalize().into()
    }

    /// Both lanes against `sha2` and OpenSSL, with different random data.
    fn check(rng: &mut StdRng, prefix: &[u8], len: usize) {
        let mut a = vec![0u8; len];
        let mut b = vec![0u8; len];
        rng.fill_bytes(&mut a);
        rng.fill_bytes(&mut b);
        let p = Sha256Prefix::new(prefix);
        let (da, db) = p.finup_2x(&a, &b);
        for (got, msg, lane) in [(da, &a, "a"), (db, &b, "b")] {
            let want = sha2_sha256(prefix, msg);
            assert_eq!(
                hex::encode(got),
                hex::encode(want),
                "lane {lane}, prefix {} bytes, message {len} bytes",
                prefix.len()
            );
            #[cfg(not(sha256x2_standalone))]
            assert_eq!(openssl_sha256(prefix, msg), want);
            assert_eq!(p.finup(msg), want);
        }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(0x5ea1_2024)
    }

    /// `finup_2x` takes the kernel where the CPU has its instructions. A
    /// run that must prove the kernel sets `IMGSEAL_SHA256X2_EXPECT_KERNEL=1`
    /// (scripts/test-cross.sh does, under `qemu-aarch64 -cpu max` and on
    /// x86-64 CPUs with SHA-NI): there the kernel must be chosen, or the tests
    /// below would only compare `sha2` with itself.
    #[test]
    fn the_kernel_runs_where_the_cpu_has_it() {
        if std::env::var_os("IMGSEAL_SHA256X2_EXPECT_KERNEL").is_some_and(|v| v == "1") {
            assert!(accelerated(), "the kernel is expected here but not chosen");
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(accelerated(), std::arch::is_x86_feature_detected!("sha"));
        #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
        assert_eq!(
            accelerated(),
            std::arch::is_aarch64_feature_detected!("sha2")
        );
    }

    /// The kernel itself against `sha2::compress256`, from random states,
    /// for one to three lanes of zero to five blocks (the tests below reach
    /// it through `finup_2x`).
    #[test]
    fn the_kernel_matches_sha2_compress256() {
        fn lanes<const N: usize>(rng: &mut StdRng, blocks: usize) {
            let mut states: [[u32; 8]; N] =
                std::array::from_fn(|_| std::array::from_fn(|_| rng.next_u32()));
            let data: [Vec<[u8; 64]>; N] = std::array::from_fn(|_| {
                let mut d = vec![[0u8; 64]; blocks];
                rng.fill_bytes(d.as_flattened_mut());
                d
            });
            let mut want = states;
            for (w, d) in want.iter_mut().zip(&data) {
                for b in d {
                    sha2::compress256(w, &[(*b).into()]);
                }
            }
            arch::compress_lanes(&mut states, std::array::from_fn(|l| &data[l][..]));
            assert_eq!(states, want, "{N} lanes of {blocks} blocks");
        }
        if !accelerated() {
            return;
        }
        let mut rng = rng();
        for blocks in 0..=5 {
            lanes::<1>(&mut rng, blocks);
            lanes::<2>(&mut rng, blocks);
            lanes::<3>(&mut rng, blocks);
        }
    }

    /// FIPS 180-4's one-block and two-block examples (NIST's SHA256.pdf and
    /// SHA256_2.pdf): digests no implementation here computed.
    #[test]
    fn fips_180_examples() {
        const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        const TWO: &str = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
        let two = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        let abc = b"abc";
        for (split, msg, want) in [
            (0, &abc[..], ABC),
            (1, abc, ABC),
            (0, two, TWO),
            (7, two, TWO),
        ] {
            let (a, b) = Sha256Prefix::new(&msg[..split]).finup_2x(&msg[split..], &msg[split..]);
            assert_eq!(
                [hex::encode(a), hex::encode(b)],
                [want; 2],
                "prefix {split} bytes"
            );
        }
    }

    /// Every length up to 1 KiB covers every position of the padding in the
    /// last block (and the two-block case) several times over, for prefixes
    /// that leave every kind of tail: none, one byte, 63 bytes, more than a
    /// block.
    #[test]
    fn short_messages_after_any_prefix_match_openssl_and_sha2() {
        let mut rng = rng();
        let mut prefix = vec![0u8; 200];
        rng.fill_bytes(&mut prefix);
        for plen in [0, 1, 32, 55, 56, 63, 64, 65, 119, 128, 200] {
            for len in 0..=1024 {
                check(&mut rng, &prefix[..plen], len);
            }
        }
    }

    /// 64..=65536 in steps of 61 (prime to 64, so every remainder mod 64 is
    /// met), every power of two (fs-verity's block sizes) and its
    /// neighbours, after an empty, a padded-salt (64 bytes) or a random
    /// prefix.
    #[test]
    fn long_messages_match_openssl_and_sha2() {
        let mut rng = rng();
        let mut lens: Vec<usize> = (64..=65536).step_by(61).collect();
        for k in 6..=16 {
            let p = 1usize << k;
            lens.extend([p - 1, p, p + 1]);
        }
        for len in lens {
            let plen = match len % 3 {
                0 => 0,
                1 => 64,
                _ => rng.gen_range(0..300),
            };
            let mut prefix = vec![0u8; plen];
            rng.fill_bytes(&mut prefix);
            check(&mut rng, &prefix, len.min(65536));
        }
    }

    /// Identical lanes give identical digests (no lane reads the other's
    /// state), and a one-bit change in one lane changes only that lane.
    #[test]
    fn lanes_are_independent() {
        let mut rng = rng();
        let mut a = vec![0u8; 4096];
        rng.fill_bytes(&mut a);
        let p = Sha256Prefix::new(&[0u8; 64]);
        let (x, y) = p.finup_2x(&a, &a);
        assert_eq!(x, y);
        let mut b = a.clone();
        b[4095] ^= 1;
        let (x2, y2) = p.finup_2x(&a, &b);
        assert_eq!(x2, x);
        assert_ne!(y2, y);
        assert_eq!(y2, sha2_sha256(&[0u8; 64], &b));
        #[cfg(not(sha256x2_standalone))]
        assert_eq!(y2, openssl_sha256(&[0u8; 64], &b));
    }

    #[test]
    #[should_panic(expected = "equal length")]
    fn unequal_lengths_are_refused() {
        Sha256Prefix::new(b"").finup_2x(b"ab", b"abc");
    }
}
