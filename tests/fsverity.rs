//! `imgseal digest` against the real `fsverity digest` (fsverity-utils) and
//! `sha256sum`/`sha512sum`: the same output, byte for byte, for every block
//! size, both hashes, salts, and the sizes where the tree changes shape.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Env, Run};

fn peer(program: &str, args: &[String]) -> Run {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (install the fsverity package): {e}"));
    Run::from_output(out).ok()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Sizes around every boundary where the tree gains a level, for a block
/// size and hash, up to `cap` bytes.
fn boundary_sizes(bs: usize, hash_len: usize, cap: usize) -> Vec<usize> {
    let hpb = bs / hash_len;
    let mut sizes = vec![0, 1, bs - 1, bs, bs + 1, 1024 * 1024 + 1];
    let mut level = bs;
    while level * hpb <= cap {
        level *= hpb;
        sizes.extend([level, level + 1]);
    }
    sizes.retain(|n| *n <= cap);
    sizes.sort();
    sizes.dedup();
    sizes
}

fn images(env: &Env, sizes: &[usize]) -> Vec<PathBuf> {
    sizes
        .iter()
        .map(|n| env.image(&format!("img-{n}"), *n))
        .collect()
}

/// Runs both tools over `files` with the same options; stdout must be equal.
fn assert_same_as_fsverity(
    env: &Env,
    files: &[PathBuf],
    hash: &str,
    bs: usize,
    salt: Option<&str>,
) {
    let mut ours = vec![
        "digest".to_string(),
        "--tree".into(),
        "fsverity".into(),
        "--hash".into(),
        hash.into(),
        "--block-size".into(),
        bs.to_string(),
    ];
    let mut theirs = vec![
        "digest".to_string(),
        format!("--hash-alg={}", hash.replace('-', "").to_lowercase()),
        format!("--block-size={bs}"),
    ];
    if let Some(salt) = salt {
        ours.extend(["--salt".into(), salt.into()]);
        theirs.push(format!("--salt={salt}"));
    }
    ours.extend(files.iter().map(|f| s(f)));
    theirs.extend(files.iter().map(|f| s(f)));
    let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
    let mine = env.run(&ours).ok();
    let peer = peer("fsverity", &theirs);
    assert_eq!(
        mine.stdout, peer.stdout,
        "{hash} block size {bs} salt {salt:?}: imgseal vs fsverity digest"
    );
    assert_eq!(mine.stdout.lines().count(), files.len());
}

#[test]
fn every_block_size_and_both_hashes_match_fsverity_digest() {
    let env = Env::new();
    for hash in ["SHA-256", "SHA-512"] {
        let hash_len = if hash == "SHA-256" { 32 } else { 64 };
        for bs in [1024, 2048, 4096, 8192, 16384, 32768, 65536] {
            let files = images(&env, &boundary_sizes(bs, hash_len, 3 << 20));
            assert_same_as_fsverity(&env, &files, hash, bs, None);
        }
    }
}

#[test]
fn the_issue_sizes_match_fsverity_digest() {
    // 0, 1, 4095, 4096, 4097, 1 MiB + 1; 2 levels from 129 blocks, 3 levels
    // from 128*128 + 1 blocks (64 MiB + 1) with SHA-256 and 4 KiB blocks.
    let env = Env::new();
    let sizes = [
        0,
        1,
        4095,
        4096,
        4097,
        (1 << 20) + 1,
        129 * 4096,
        128 * 128 * 4096 + 1,
    ];
    let files = images(&env, &sizes);
    assert_same_as_fsverity(&env, &files, "SHA-256", 4096, None);
    assert_same_as_fsverity(&env, &files, "SHA-512", 4096, None);
}

#[test]
fn salts_match_fsverity_digest() {
    let env = Env::new();
    let files = images(&env, &[0, 1, 4096, 4097, 300_001]);
    for salt in ["00", "abcd", &"5a".repeat(31), &"ff".repeat(32)] {
        for hash in ["SHA-256", "SHA-512"] {
            for bs in [1024, 4096, 65536] {
                assert_same_as_fsverity(&env, &files, hash, bs, Some(salt));
            }
        }
    }
}

#[test]
fn tree_and_descriptor_files_match_fsverity_digest() {
    let env = Env::new();
    for (n, hash, bs, salt) in [
        (0usize, "sha256", 4096usize, ""),
        (4096, "sha256", 4096, ""),
        (4097, "sha256", 4096, "abcd"),
        (129 * 4096 + 7, "sha256", 4096, ""),
        (300_001, "sha512", 1024, "0102"),
    ] {
        let img = env.image(&format!("t-{n}-{hash}-{bs}"), n);
        let (our_tree, our_desc) = (env.path("ours.tree"), env.path("ours.desc"));
        let (their_tree, their_desc) = (env.path("theirs.tree"), env.path("theirs.desc"));
        let mut args = vec![
            "digest".to_string(),
            "--tree".into(),
            "fsverity".into(),
            "--hash".into(),
            hash.into(),
            "--block-size".into(),
            bs.to_string(),
            "--out-merkle-tree".into(),
            s(&our_tree),
            "--out-descriptor".into(),
            s(&our_desc),
        ];
        let mut peer_args = vec![
            "digest".to_string(),
            format!("--hash-alg={hash}"),
            format!("--block-size={bs}"),
            format!("--out-merkle-tree={}", s(&their_tree)),
            format!("--out-descriptor={}", s(&their_desc)),
        ];
        if !salt.is_empty() {
            args.extend(["--salt".into(), salt.into()]);
            peer_args.push(format!("--salt={salt}"));
        }
        args.push(s(&img));
        peer_args.push(s(&img));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(
            env.run(&args).ok().stdout,
            peer("fsverity", &peer_args).stdout
        );
        assert_eq!(
            std::fs::read(&our_tree).unwrap(),
            std::fs::read(&their_tree).unwrap(),
            "tree of {n} bytes"
        );
        assert_eq!(
            std::fs::read(&our_desc).unwrap(),
            std::fs::read(&their_desc).unwrap(),
            "descriptor of {n} bytes"
        );
    }
}

#[test]
fn fsverity_utils_test_vectors() {
    // programs/test_compute_digest.c in fsverity-utils: the data is
    // (i % 11) + (i % 439) + (i % 1103), truncated to each size.
    let env = Env::new();
    let data: Vec<u8> = (0..1_000_000usize)
        .map(|i| ((i % 11) + (i % 439) + (i % 1103)) as u8)
        .collect();
    let cases = [
        (
            1_000_000,
            "SHA-256",
            4096,
            None,
            "48df0c462329cd879661bd05b39aa81b05cc16afd27a7196a559da83531d39d9",
        ),
        (
            100_000,
            "SHA-256",
            4096,
            None,
            "f2096a36c5cdca4fa33ee8852833150bb324992e5417a9d571f1bffff73b9efc",
        ),
        (
            4096,
            "SHA-256",
            4096,
            None,
            "6ac39979016e3ddf3d39fff6cb984f7c118acdf1852919f5c100c4b142c1818e",
        ),
        (
            1,
            "SHA-256",
            4096,
            None,
            "b803429503d95915829b29fdbc8bbad142f3abfd11b1cadf5526582e685c0551",
        ),
        (
            0,
            "SHA-256",
            4096,
            None,
            "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95",
        ),
        (
            1_000_000,
            "SHA-256",
            4096,
            Some("abcd"),
            "917900b0d299454aa304d5debc6f39e4af7b5abe33bdbc568d5d8f1e5c4d8652",
        ),
        (
            1_000_000,
            "SHA-256",
            4096,
            Some("0123456789:;<=>?@ABCDEFGHIJKLMNO"),
            "bc2d70324c048c220a2cb190832140863eb268e680427939e5d467bea5ec5ad9",
        ),
        (
            1_000_000,
            "SHA-256",
            1024,
            None,
            "e9df927c14fcb961d5f51c666d8ae4c14fe4ff98a374c733e898d00c9e74a8e3",
        ),
        (
            1_000_000,
            "SHA-256",
            65536,
            None,
            "f3b6418f26d4d0e74728193bae76f15cb4bb2ce9777448d76bd8138b69ec61c2",
        ),
        (
            1_000_000,
            "SHA-512",
            4096,
            Some("abcd"),
            "8425c6d0c94f84ed904c12936845fbb7af9953753789712dcc3be142db3d4b6b47a399ad52aa609256ce29a960bf4bb0e595ec386ca58c06519d546dc5b197bb",
        ),
    ];
    for (size, hash, bs, salt, want) in cases {
        let path = env.path(&format!("vector-{size}"));
        std::fs::write(&path, &data[..size]).unwrap();
        let bs = bs.to_string();
        let salt_hex = salt.map(|s: &str| hex::encode(s.as_bytes()));
        let mut args = vec![
            "digest",
            "--tree",
            "fsverity",
            "--compact",
            "--hash",
            hash,
            "--block-size",
            &bs,
        ];
        if let Some(s) = &salt_hex {
            args.extend(["--salt", s]);
        }
        let p = s(&path);
        args.push(&p);
        assert_eq!(
            env.run(&args).ok().stdout.trim(),
            want,
            "{size} {hash} {bs} {salt:?}"
        );
    }
}

#[test]
fn linear_digests_match_sha256sum_and_sha512sum() {
    let env = Env::new();
    let mut files = images(&env, &[0, 1, 70_000]);
    let odd = env.path("back\\slash");
    std::fs::write(&odd, b"odd name").unwrap();
    files.push(odd);
    for (hash, tool) in [("SHA-256", "sha256sum"), ("SHA-512", "sha512sum")] {
        let names: Vec<String> = files.iter().map(|f| s(f)).collect();
        let mut args = vec!["digest", "--hash", hash];
        args.extend(names.iter().map(String::as_str));
        assert_eq!(
            env.run(&args).ok().stdout,
            peer(tool, &names).stdout,
            "{tool}"
        );
    }
}

#[test]
fn stdin_gives_the_same_digests_as_the_file() {
    let env = Env::new();
    let img = env.image("piped", 3 * 4096 * 129 + 5);
    for args in [
        vec!["digest", "--tree", "fsverity", "--with-linear", "--json"],
        vec![
            "digest",
            "--tree",
            "fsverity",
            "--hash",
            "SHA-512",
            "--block-size",
            "1024",
            "--salt",
            "beef",
            "--json",
        ],
        vec!["digest", "--hash", "SHA-384", "--json"],
    ] {
        let mut file_args = args.clone();
        let p = s(&img);
        file_args.push(&p);
        let from_file = env.run(&file_args).ok().json();
        let mut stdin_args = args.clone();
        stdin_args.push("-");
        let from_stdin = env.run_stdin(&stdin_args, &img).ok().json();
        assert_eq!(from_file["size"], from_stdin["size"]);
        assert_eq!(from_file["linear"], from_stdin["linear"]);
        assert_eq!(from_file["fsverity"], from_stdin["fsverity"]);
        assert_eq!(from_stdin["image"], "-");
    }
}

#[test]
fn one_pass_prints_the_tree_and_the_linear_digest() {
    let env = Env::new();
    let img = env.image("both", 1_000_003);
    let out = env
        .run(&["digest", "--tree", "fsverity", "--with-linear", &s(&img)])
        .ok();
    let mut lines = out.stdout.lines();
    assert_eq!(
        format!("{}\n", lines.next().unwrap()),
        peer("fsverity", &["digest".into(), s(&img)]).stdout
    );
    assert_eq!(
        format!("{}\n", lines.next().unwrap()),
        peer("sha256sum", &[s(&img)]).stdout
    );
}

#[test]
fn bad_parameters_and_inputs_end_in_one_line_and_their_exit_code() {
    let env = Env::new();
    let img = env.image("x", 10);
    let p = s(&img);
    for (args, code) in [
        (
            vec!["digest", "--tree", "fsverity", "--block-size", "512", &p],
            2,
        ),
        (
            vec!["digest", "--tree", "fsverity", "--block-size", "3000", &p],
            2,
        ),
        (
            vec!["digest", "--tree", "fsverity", "--block-size", "131072", &p],
            2,
        ),
        (vec!["digest", "--tree", "fsverity", "--salt", "zz", &p], 2),
        (
            vec![
                "digest",
                "--tree",
                "fsverity",
                "--salt",
                &"00".repeat(33),
                &p,
            ],
            2,
        ),
        (
            vec!["digest", "--tree", "fsverity", "--hash", "SHA-384", &p],
            2,
        ),
        (vec!["digest", "-", "-"], 2),
        (vec!["digest", "--salt", "abcd", &p], 2),
        (vec!["digest", "--block-size", "1024", &p], 2),
        (vec!["digest", "/nonexistent/image.raw"], 7),
        (vec!["digest", "--tree", "fsverity", "."], 3),
    ] {
        let run = env.run(&args).code(code);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", run.stderr);
        assert!(
            lines[0].starts_with("imgseal: ") || lines[0].starts_with("error: "),
            "{}",
            lines[0]
        );
        assert!(!run.stderr.contains("panicked"));
    }
    // The good images are still printed when another one fails.
    let run = env.run(&["digest", &p, "/nonexistent/b", &p]).code(7);
    assert_eq!(run.stdout.lines().count(), 2);
}

#[test]
fn a_failed_tree_write_leaves_no_file() {
    let env = Env::new();
    let img = env.image("y", 100_000);
    let out = env.path("no-such-dir/tree");
    env.run(&[
        "digest",
        "--tree",
        "fsverity",
        "--out-merkle-tree",
        &s(&out),
        &s(&img),
    ])
    .code(7);
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.work.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".imgseal-"))
        .collect();
    assert!(leftovers.is_empty());
}
