//! docs/exit-codes.md is what the binary returns: every documented code is
//! produced by a command of the kind its row names, with the class the row
//! gives in `--json`'s `error` (`verdict` for 1), and every example a test
//! walks must be in the row.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;

use common::*;

/// code -> (class, meaning), from the table.
fn documented() -> BTreeMap<i32, (String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/exit-codes.md"))
        .unwrap();
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse::<i32>().ok()?;
            Some((
                code,
                (cells[2].trim_matches('`').to_string(), cells[3].to_string()),
            ))
        })
        .collect()
}

struct Case {
    code: i32,
    /// Words of the row's meaning this case is an example of.
    example: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

fn case(code: i32, example: &'static str, args: &[&str]) -> Case {
    Case {
        code,
        example,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
    }
}

#[test]
fn every_documented_exit_code_is_what_the_binary_returns() {
    let table = documented();
    assert_eq!(
        table.keys().copied().collect::<Vec<_>>(),
        (0..=8).collect::<Vec<_>>(),
        "the table's codes"
    );
    let env = Env::new();
    let key = env.key_with_certificate("ecc-secp384r1", "codes", "codes-cert");
    let image = env.image("codes.img", 4096 + 3);
    let props = env.path("props.json");
    let signed = env
        .run(&[
            "--json",
            "sign",
            "--key",
            &key,
            "--cert-id",
            "codes-cert",
            image.to_str().unwrap(),
        ])
        .ok();
    std::fs::write(&props, signed.stdout).unwrap();
    let tampered = env.path("tampered.img");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&tampered, bytes).unwrap();
    let malformed = env.path("malformed.json");
    std::fs::write(&malformed, "{").unwrap();
    // A certificate for a key other than the signing one.
    let other_key = env.path("other.key");
    let other = env.path("other.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        other_key.to_str().unwrap(),
        "-subj",
        "/CN=another key",
        "-days",
        "3",
        "-out",
        other.to_str().unwrap(),
    ])
    .ok();
    env.run(&[
        "cert",
        "import",
        "--id",
        "other-cert",
        other.to_str().unwrap(),
    ])
    .ok();
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v3", l.local_addr().unwrap())
    };
    let image = image.to_str().unwrap();
    let props = props.to_str().unwrap();
    let cases = vec![
        case(0, "success", &["digest", image]),
        case(
            0,
            "the signature is valid",
            &["verify", "--props", props, image],
        ),
        case(
            1,
            "the signature does not match",
            &["verify", "--props", props, tampered.to_str().unwrap()],
        ),
        case(
            2,
            "unknown key type",
            &["key", "generate", "--type", "p-256", "--label", "x"],
        ),
        case(
            2,
            "duplicate label",
            &[
                "key",
                "generate",
                "--type",
                "ecc-secp384r1",
                "--label",
                "codes",
            ],
        ),
        case(
            3,
            "malformed",
            &["verify", "--props", malformed.to_str().unwrap(), image],
        ),
        case(
            3,
            "a certificate of another key",
            &["sign", "--key", &key, "--cert-id", "other-cert", image],
        ),
        case(4, "does not exist", &["cert", "show", "no-such-cert"]),
        case(
            5,
            "PKCS#11 module",
            &[
                "--token",
                "pkcs11:token=x?module-path=/nonexistent/libp11.so",
                "key",
                "list",
            ],
        ),
        case(
            6,
            "wrong, locked or missing PIN",
            &[
                "--token",
                "pkcs11:token=imgseal?pin-value=not-the-pin",
                "key",
                "list",
            ],
        ),
        case(
            7,
            "could not be read",
            &["digest", "/nonexistent/image.raw"],
        ),
        Case {
            env: vec![
                ("OS_AUTH_URL", dead),
                ("OS_USERNAME", "u".into()),
                ("OS_PASSWORD", "p".into()),
                ("OS_USER_DOMAIN_NAME", "Default".into()),
            ],
            ..case(
                8,
                "could not be reached",
                &[
                    "cert",
                    "show",
                    "6d0b3f0e-8c69-4f0c-9d0c-1e2f3a4b5c6d",
                    "--cert-source",
                    "barbican",
                ],
            )
        },
    ];
    for code in table.keys() {
        assert!(
            cases.iter().any(|c| c.code == *code),
            "no case walks code {code}"
        );
    }
    for c in &cases {
        let (class, meaning) = &table[&c.code];
        assert!(
            meaning.contains(c.example),
            "code {}: the row does not name \"{}\": {meaning}",
            c.code,
            c.example
        );
        let mut cmd = env.command();
        cmd.arg("--json").args(&c.args);
        for (k, v) in &c.env {
            cmd.env(k, v);
        }
        let out = Run::from_output(cmd.output().unwrap()).code(c.code);
        if c.code == 0 {
            continue;
        }
        let json = out.json();
        let got = if c.code == 1 {
            &json["verdict"]
        } else {
            &json["error"]
        };
        assert_eq!(got, class.as_str(), "{:?}: {json}", c.args);
        assert_eq!(json["exit_code"], c.code, "{json}");
        // One line on stderr for errors, naming the class.
        if c.code != 1 {
            let line = out.stderr.trim_end();
            assert!(!line.contains('\n'), "{:?}: {line}", c.args);
            assert!(
                line.starts_with(&format!("imgseal: {class}: ")),
                "{:?}: {line}",
                c.args
            );
        }
    }
}
