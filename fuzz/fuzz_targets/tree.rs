//! Stored fs-verity tree files (`--tree`), as `verify --manifest` reads them:
//! `StoredTree::open` (size check), `authenticate`, `verify_range` and the
//! leaf comparison of a full pass. The image and its parameters come from the
//! input's header; the tree file is the input's tail (mode 0), or the image's
//! genuine tree with the tail's patches applied (mode 1), so both the size
//! check and the hash checks are reached. Invariants: a tree authenticates
//! exactly when it is the genuine one; the genuine tree verifies every range
//! of the genuine image and names the first changed block of a changed one.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use imgseal::digest::ImageSource;
use imgseal::fsverity::tree::{RangeOutcome, StoredTree};
use imgseal::fsverity::{PassSpec, TreeHash, TreeParams, digest_bytes, run_pass};
use libfuzzer_sys::fuzz_target;

/// The largest image the target makes (sixty-four 1 KiB blocks and more
/// give three-level trees with SHA-512).
const MAX_IMAGE: usize = 96 * 1024;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Memory-backed when there is /dev/shm: each run writes and syncs files.
        let base = Some(PathBuf::from("/dev/shm"))
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        // Earlier runs' directories, of processes gone, are removed.
        let prefix = "imgseal-fuzz-tree-";
        for entry in fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(prefix) {
                if !PathBuf::from("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let d = base.join(format!("{prefix}{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    })
}

struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self
            .bytes
            .split_first()
            .map(|(b, r)| (*b, r))
            .unwrap_or((0, &[]));
        self.bytes = rest;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.bytes.len());
        let (a, b) = self.bytes.split_at(n);
        self.bytes = b;
        a
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input { bytes: data };
    let mode = inp.u8();
    let hash = if mode & 2 == 0 {
        TreeHash::Sha256
    } else {
        TreeHash::Sha512
    };
    let block_size = 1usize << (10 + inp.u8() % 7);
    let salt_len = (inp.u8() % 40) as usize;
    let salt = inp.take(salt_len).to_vec();
    let Ok(params) = TreeParams::new(hash, block_size, salt) else {
        return;
    };
    let size = (inp.u32() as usize) % (MAX_IMAGE + 1);
    let seed = inp.u8();
    let flip_at = inp.u32() as usize;
    let offset = inp.u32() as u64 % (size as u64 + 2);
    let len = inp.u32() as u64 % (size as u64 + 2);
    let tail = inp.bytes;

    let image: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect();
    let dir = dir();
    let image_path = dir.join("image");
    let tree_path = dir.join("tree");
    fs::write(&image_path, &image).unwrap();
    let source = ImageSource::Path(image_path.clone());
    let out = run_pass(
        &source,
        PassSpec {
            linear: Vec::new(),
            tree: Some(&params),
            tree_out: Some(&tree_path),
            compare: None,
        },
        &|_| {},
    )
    .expect("a pass over a regular file");
    let genuine_digest = out.fsverity.expect("the pass built a tree");
    assert_eq!(
        genuine_digest,
        digest_bytes(&params, &image),
        "the parallel pass and the simple builder agree"
    );
    let root = genuine_digest.root_hash.clone();
    let genuine_tree = fs::read(out.tree_file.expect("a tree file").path()).unwrap();
    assert_eq!(
        genuine_tree.len() as u64,
        params.layout(size as u64).tree_size
    );

    let tree = if mode & 1 == 0 {
        tail.to_vec()
    } else {
        let mut t = genuine_tree.clone();
        for patch in tail.chunks(4) {
            if t.is_empty() || patch.len() < 4 {
                break;
            }
            let at = u32::from_le_bytes([patch[0], patch[1], patch[2], 0]) as usize % t.len();
            t[at] ^= patch[3];
        }
        t
    };
    fs::write(&tree_path, &tree).unwrap();
    let Ok(stored) = StoredTree::open(&tree_path, &params, size as u64) else {
        assert_ne!(
            tree.len(),
            genuine_tree.len(),
            "a tree of the right size opens"
        );
        return;
    };
    let fault = stored.authenticate(&root).expect("reading the tree");
    assert_eq!(
        fault.is_none(),
        tree == genuine_tree,
        "authenticates iff genuine"
    );

    // The image, changed at one byte when mode bit 2 says so.
    let mut changed = image.clone();
    let flipped = (mode & 4 != 0 && size > 0).then(|| {
        let at = flip_at % size;
        changed[at] ^= 0x5a;
        at
    });
    fs::write(&image_path, &changed).unwrap();
    let file = fs::File::open(&image_path).unwrap();
    match stored.verify_range(&file, &image_path, &root, offset, len) {
        Err(_) => assert!(
            len == 0 || offset + len > size as u64,
            "only bad ranges fail"
        ),
        Ok(report) if fault.is_none() => {
            let bs = block_size as u64;
            let expected = match flipped {
                Some(at) if (offset / bs..=(offset + len - 1) / bs).contains(&(at as u64 / bs)) => {
                    RangeOutcome::BadBlock {
                        block: at as u64 / bs,
                    }
                }
                _ => RangeOutcome::Valid,
            };
            assert_eq!(report.outcome, expected);
        }
        Ok(_) => {}
    }

    // A full pass compared leaf by leaf with the stored tree.
    let compare = stored.comparer(&root).expect("a comparer");
    let out = run_pass(
        &source,
        PassSpec {
            linear: Vec::new(),
            tree: Some(&params),
            tree_out: None,
            compare: Some(compare),
        },
        &|_| {},
    )
    .expect("a pass over a regular file");
    let first = out.comparison.expect("compared").first_mismatch;
    if fault.is_none() {
        assert_eq!(first, flipped.map(|at| (at / block_size) as u64));
    }
});
