//! `verify` over several images (issue #14, item 2): one `--props` per image
//! or one batch as `sign --json` writes it, one verdict per image in the same
//! shape as for one, and a failure of one image that leaves the others
//! checked. Keys in a real SoftHSM token, certificates from the openssl CLI.

mod common;

use std::path::{Path, PathBuf};

use common::{Env, write_props};
use serde_json::Value;

const CERT: &str = "batch-cert";

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Three signed images and the batch `sign --json` wrote for them.
fn signed(env: &Env) -> (Vec<PathBuf>, PathBuf) {
    let key = env.key_with_certificate("ecc-secp384r1", "k", CERT);
    let images: Vec<PathBuf> = (0..3)
        .map(|i| env.image(&format!("img{i}"), 70_000 * i + 11))
        .collect();
    let mut args = vec!["--json", "sign", "--key", &key, "--cert-id", CERT];
    let names: Vec<String> = images.iter().map(|i| s(i)).collect();
    args.extend(names.iter().map(String::as_str));
    let run = env.run(&args).ok();
    let batch = env.path("batch.jsonl");
    std::fs::write(&batch, &run.stdout).unwrap();
    assert_eq!(run.stdout.lines().count(), 3);
    (images, batch)
}

#[test]
fn a_sign_batch_verifies_as_is_and_names_its_images() {
    let env = Env::new();
    let (images, batch) = signed(&env);
    // The batch alone names the images: one verdict per line, in its order.
    let run = env.run(&["--json", "verify", "--props", &s(&batch)]).ok();
    let verdicts = lines(&run.stdout);
    assert_eq!(verdicts.len(), 3, "{}", run.stdout);
    for (v, image) in verdicts.iter().zip(&images) {
        assert_eq!(v["verdict"], "valid", "{v}");
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["image"], s(image));
        assert_eq!(v["certificate_id"], CERT);
    }
    // Images named on the command line pick their entries, in any order.
    let run = env
        .run(&[
            "--json",
            "verify",
            "--props",
            &s(&batch),
            &s(&images[2]),
            &s(&images[0]),
        ])
        .ok();
    let verdicts = lines(&run.stdout);
    assert_eq!(verdicts.len(), 2);
    assert_eq!(verdicts[0]["image"], s(&images[2]));
    assert_eq!(verdicts[1]["image"], s(&images[0]));
    // One image: the same shape, one object on one line.
    let run = env
        .run(&["--json", "verify", "--props", &s(&batch), &s(&images[1])])
        .ok();
    assert_eq!(lines(&run.stdout).len(), 1);
    assert_eq!(run.json()["image"], s(&images[1]));
    // A pipe from sign: --props - reads the batch from standard input.
    let run = env
        .run_stdin(&["--json", "verify", "--props", "-"], &batch)
        .ok();
    assert_eq!(lines(&run.stdout).len(), 3);
}

#[test]
fn one_props_file_per_image_pairs_in_order() {
    let env = Env::new();
    let (images, batch) = signed(&env);
    let entries = lines(&std::fs::read_to_string(&batch).unwrap());
    let props: Vec<PathBuf> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            // Only the four properties: nothing in them names the image.
            let mut p = serde_json::Map::new();
            for k in [
                "img_signature",
                "img_signature_hash_method",
                "img_signature_key_type",
                "img_signature_certificate_uuid",
            ] {
                p.insert(k.into(), e[k].clone());
            }
            write_props(&env, &format!("p{i}.json"), &Value::Object(p))
        })
        .collect();
    let mut args = vec!["--json".to_string(), "verify".into()];
    for p in &props {
        args.extend(["--props".to_string(), s(p)]);
    }
    args.extend(images.iter().map(|i| s(i)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = env.run(&args).ok();
    assert!(lines(&run.stdout).iter().all(|v| v["verdict"] == "valid"));
    // Swapped: each image is checked against the other's signature.
    let run = env
        .run(&[
            "verify",
            "--props",
            &s(&props[1]),
            "--props",
            &s(&props[0]),
            &s(&images[0]),
            &s(&images[1]),
        ])
        .code(1);
    assert_eq!(run.stdout.matches("invalid: ").count(), 2, "{}", run.stdout);
    // Two files for three images: refused before anything is read.
    let run = env
        .run(&[
            "verify",
            "--props",
            &s(&props[0]),
            "--props",
            &s(&props[1]),
            &s(&images[0]),
            &s(&images[1]),
            &s(&images[2]),
        ])
        .code(2);
    assert!(
        run.stderr.contains("2 --props for 3 images"),
        "{}",
        run.stderr
    );
    // One object for several images cannot be paired.
    let run = env
        .run(&[
            "verify",
            "--props",
            &s(&props[0]),
            &s(&images[0]),
            &s(&images[1]),
        ])
        .code(2);
    assert!(run.stderr.contains("one --props"), "{}", run.stderr);
}

#[test]
fn one_bad_image_of_several_fails_alone() {
    let env = Env::new();
    let (images, batch) = signed(&env);
    // The middle image changes; the last one disappears.
    std::fs::write(&images[1], b"replaced").unwrap();
    std::fs::remove_file(&images[2]).unwrap();
    let run = env.run(&["--json", "verify", "--props", &s(&batch)]);
    // The first failure's code: the changed image is invalid (1).
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    let verdicts = lines(&run.stdout);
    assert_eq!(verdicts.len(), 3, "{}", run.stdout);
    assert_eq!(verdicts[0]["verdict"], "valid");
    assert_eq!(verdicts[1]["verdict"], "invalid");
    assert_eq!(verdicts[2]["verdict"], "error");
    assert_eq!(verdicts[2]["image"], s(&images[2]));
    assert_eq!(verdicts[2]["exit_code"], 7, "{}", verdicts[2]);
    assert!(run.stderr.contains(&s(&images[2])), "{}", run.stderr);
    // An image the batch does not name: a clear refusal naming both.
    let other = env.image("other", 10);
    let run = env
        .run(&["verify", "--props", &s(&batch), &s(&other)])
        .code(3);
    assert!(
        run.stderr.contains("no properties for image") && run.stderr.contains(&s(&other)),
        "{}",
        run.stderr
    );
}
