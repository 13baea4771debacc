//! Against a real Keystone + Barbican + Glance (scripts/openstack/), one
//! throwaway project per test: certificates published to and read from
//! Barbican as Glance and Nova read them, the docs' example through Barbican,
//! the OpenStack CLI and Glance itself as peers, and every way the cloud's
//! configuration or services can fail ending in one clear line.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::docs_chain::*;
use common::openstack::{Project, glance_log, key_with_certificate, publish, s, self_signed};
use common::*;

#[test]
fn the_docs_example_through_barbican() {
    let env = Env::new();
    let project = Project::new();
    let dir = env.path("docs");
    std::fs::create_dir(&dir).unwrap();
    build_chain(&dir);
    let ca = publish(&project, &env, &dir.join("cert_ca.pem"));
    let int_a = publish(&project, &env, &dir.join("cert_intermediate_a.pem"));
    let int_b = publish(&project, &env, &dir.join("cert_intermediate_b.pem"));
    // The client key in SoftHSM, its certificate issued by Intermediate B.
    let uri = env.generate("rsa-pss-2048", "client");
    env.run(&[
        "key",
        "csr",
        "--key",
        &uri,
        "--subject",
        "CN=Client Certificate",
        "--out",
        s(&dir.join("cert_client.csr")),
    ])
    .ok();
    issue_client(&dir);
    let client = publish(&project, &env, &dir.join("cert_client.pem"));
    // What Barbican holds is what was published, byte for byte.
    let shown = project
        .run(
            &env,
            &[
                "--json",
                "cert",
                "show",
                &client,
                "--cert-source",
                "barbican",
            ],
        )
        .ok()
        .json();
    assert!(
        shown["location"]
            .as_str()
            .unwrap()
            .starts_with("Barbican at http://127.0.0.1"),
        "{shown}"
    );
    let image = env.image("cirros.tar.gz", 434_333);
    let props = project
        .run(
            &env,
            &["sign", "--key", &uri, "--cert-id", &client, s(&image)],
        )
        .ok()
        .json();
    assert_eq!(props["img_signature_certificate_uuid"], client.as_str());
    let props = write_props(&env, "props.json", &props);
    let all = format!("{ca},{int_a},{int_b}");
    for policy in ["nova", "strict"] {
        let out = project
            .run(
                &env,
                &[
                    "--json",
                    "verify",
                    "--cert-source",
                    "barbican",
                    "--props",
                    s(&props),
                    "--policy",
                    policy,
                    "--trusted-cert-id",
                    &all,
                    s(&image),
                ],
            )
            .ok()
            .json();
        assert_eq!(out["verdict"], "valid", "{policy}: {out}");
        assert_eq!(out["certificate_validation"]["valid"], true, "{out}");
        // The same ids from the environment, and from a nova.conf.
        let out = Run::from_output(
            project
                .command(&env)
                .env("OS_TRUSTED_IMAGE_CERTIFICATE_IDS", &all)
                .args([
                    "--json",
                    "verify",
                    "--props",
                    s(&props),
                    "--policy",
                    policy,
                    s(&image),
                ])
                .output()
                .unwrap(),
        )
        .ok()
        .json();
        assert_eq!(out["trust"]["source"]["kind"], "environment", "{out}");
        let conf = env.path("nova.conf");
        std::fs::write(
            &conf,
            format!(
                "[glance]\nverify_glance_signatures = True\nenable_certificate_validation = True\ndefault_trusted_certificate_ids = {ca},{int_a},{int_b}\n"
            ),
        )
        .unwrap();
        project
            .run(
                &env,
                &[
                    "verify",
                    "--props",
                    s(&props),
                    "--policy",
                    policy,
                    "--nova-conf",
                    s(&conf),
                    s(&image),
                ],
            )
            .ok();
    }
    // No trusted ids: "Certificate chain building failed", as Nova says.
    let conf = env.path("nova-no-ids.conf");
    std::fs::write(
        &conf,
        "[glance]\nverify_glance_signatures = True\nenable_certificate_validation = True\n",
    )
    .unwrap();
    let out = project
        .run(
            &env,
            &[
                "verify",
                "--props",
                s(&props),
                "--policy",
                "nova",
                "--nova-conf",
                s(&conf),
                s(&image),
            ],
        )
        .code(1);
    assert!(
        out.stdout.contains("Certificate chain building failed"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_openstack_cli_and_glance_agree_with_imgseal() {
    let env = Env::new();
    let project = Project::new();
    // A certificate stored with the docs' exact command is read by imgseal.
    let (uri, cert) = key_with_certificate(&env, "rsa-pss-3072", "Release");
    let payload = {
        let out = std::process::Command::new("base64")
            .arg(&cert)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let stored = project
        .openstack(&[
            "secret",
            "store",
            "--name",
            "signing-cert",
            "--secret-type",
            "certificate",
            "--payload-content-type",
            "application/octet-stream",
            "--payload-content-encoding",
            "base64",
            "--payload",
            &payload,
            "-f",
            "value",
            "-c",
            "Secret href",
        ])
        .ok();
    let secret_ref = stored.stdout.trim().to_string();
    let cli_uuid = secret_ref.rsplit('/').next().unwrap().to_string();
    let shown = project
        .run(&env, &["--json", "cert", "show", &cli_uuid])
        .ok()
        .json();
    assert_eq!(shown["subject"], "CN=Release", "{shown}");

    // A certificate published by imgseal reads back with the CLI byte for byte.
    let other = env.path("other.crt");
    self_signed(&env, &other, "other");
    let published = project
        .run(&env, &["--json", "cert", "publish", s(&other)])
        .ok()
        .json();
    let got = env.path("got.pem");
    project
        .openstack(&[
            "secret",
            "get",
            "--payload_content_type",
            "application/octet-stream",
            "--file",
            s(&got),
            published["secret_ref"].as_str().unwrap(),
        ])
        .ok();
    let ours = std::fs::read_to_string(&other).unwrap();
    assert_eq!(std::fs::read_to_string(&got).unwrap(), ours);
    // --reuse finds it instead of storing a duplicate.
    let again = project
        .run(&env, &["--json", "cert", "publish", "--reuse", s(&other)])
        .ok()
        .json();
    assert_eq!(again["uuid"], published["uuid"]);
    assert_eq!(again["reused"], true);

    // Glance itself accepts what imgseal signs under the CLI-stored UUID...
    let image = env.image("golden.raw", 3 * 1024 * 1024 + 17);
    let props = project
        .run(
            &env,
            &["sign", "--key", &uri, "--cert-id", &cli_uuid, s(&image)],
        )
        .ok()
        .json();
    let create = |file: &Path, name: &str| {
        let mut args: Vec<String> = [
            "image",
            "create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(s(file).to_string());
        for key in [
            "img_signature",
            "img_signature_hash_method",
            "img_signature_key_type",
            "img_signature_certificate_uuid",
        ] {
            args.push("--property".into());
            args.push(format!("{key}={}", props[key].as_str().unwrap()));
        }
        args.extend([name.to_string(), "-f".into(), "json".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        project.openstack(&args)
    };
    let created = create(&image, "golden").ok().json();
    assert_eq!(created["status"], "active", "{created}");
    let id = created["id"].as_str().unwrap();
    assert!(
        glance_log().contains(&format!("Successfully verified signature for image {id}")),
        "glance.log"
    );
    // ...and refuses a tampered copy (the CLI deletes the image again).
    let tampered = env.path("tampered.raw");
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[4096] ^= 0x01;
    std::fs::write(&tampered, bytes).unwrap();
    let out = create(&tampered, "tampered");
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains("400"), "{}", out.stderr);
}

#[test]
fn barbican_contents_glance_could_not_load_are_named() {
    let env = Env::new();
    let project = Project::new();
    let cert = env.path("c.pem");
    self_signed(&env, &cert, "loadable");
    let der = env.path("c.der");
    openssl(&["x509", "-in", s(&cert), "-outform", "DER", "-out", s(&der)]).ok();
    let store = |kind: &str, content_type: &str, file: &Path| {
        let payload = {
            let out = std::process::Command::new("base64")
                .arg("-w0")
                .arg(file)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let mut args = vec![
            "secret",
            "store",
            "--name",
            "x",
            "--secret-type",
            kind,
            "--payload",
            &payload,
            "--payload-content-type",
            content_type,
            "-f",
            "value",
            "-c",
            "Secret href",
        ];
        if content_type == "application/octet-stream" {
            args.extend(["--payload-content-encoding", "base64"]);
        }
        let out = project.openstack(&args).ok();
        out.stdout.trim().rsplit('/').next().unwrap().to_string()
    };
    let show = |uuid: &str| project.run(&env, &["cert", "show", uuid, "--cert-source", "barbican"]);
    let one_line = |out: &Run| {
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    };

    let out = show(&store("certificate", "application/octet-stream", &der)).code(3);
    assert!(out.stderr.contains("not PEM"), "{}", out.stderr);
    assert!(
        out.stderr.contains("Unable to load PEM file"),
        "{}",
        out.stderr
    );
    one_line(&out);
    let pem_text = std::fs::read_to_string(&cert).unwrap();
    let text_file = env.path("c.txt");
    std::fs::write(&text_file, &pem_text).unwrap();
    let out = project
        .openstack(&[
            "secret",
            "store",
            "--name",
            "t",
            "--secret-type",
            "certificate",
            "--payload",
            &pem_text,
            "--payload-content-type",
            "text/plain",
            "-f",
            "value",
            "-c",
            "Secret href",
        ])
        .ok();
    let uuid = out.stdout.trim().rsplit('/').next().unwrap().to_string();
    let out = show(&uuid).code(3);
    assert!(out.stderr.contains("\"text/plain\""), "{}", out.stderr);
    assert!(out.stderr.contains("500"), "{}", out.stderr);
    one_line(&out);
    let key = env.path("aes.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let out = show(&store("symmetric", "application/octet-stream", &key)).code(3);
    assert!(
        out.stderr
            .contains("is a symmetric secret, not a certificate"),
        "{}",
        out.stderr
    );
    one_line(&out);
    let out = show(&uuid::Uuid::new_v4().to_string()).code(4);
    assert!(
        out.stderr.contains("not found in Barbican at"),
        "{}",
        out.stderr
    );
    let out = show("../../v1/secrets").code(2);
    assert!(
        out.stderr.contains("is not a Barbican secret UUID"),
        "{}",
        out.stderr
    );
    // sign refuses an id Glance could not resolve, unless told otherwise.
    let uri = env.generate("ecc-secp384r1", "k");
    let image = env.image("i.raw", 1000);
    let missing = uuid::Uuid::new_v4().to_string();
    let out = project
        .run(
            &env,
            &["sign", "--key", &uri, "--cert-id", &missing, s(&image)],
        )
        .code(3);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("--no-cert-check"), "{}", out.stderr);
    project
        .run(
            &env,
            &[
                "sign",
                "--key",
                &uri,
                "--cert-id",
                &missing,
                "--no-cert-check",
                s(&image),
            ],
        )
        .ok();
}

/// A listener that accepts and then answers `status` to every request
/// (`None`: never answers), counting requests.
fn fake_service(status: Option<u16>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            match status {
                Some(code) => {
                    let body = r#"{"code": 0, "title": "broken", "description": "the fake service is broken"}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {code} Oops\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                // Hold the connection open, answering nothing, until the test ends.
                None => std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs(120));
                    drop(stream);
                })
                .join()
                .map(|_| ())
                .unwrap_or(()),
            }
        }
    });
    (url, count)
}

#[test]
fn cloud_configuration_and_service_faults_are_one_clear_line() {
    let env = Env::new();
    let project = Project::new();
    let uuid = uuid::Uuid::new_v4().to_string();
    let show = |vars: &[(&str, &str)], extra: &[&str]| {
        let mut cmd = project.command(&env);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut args = vec![
            "-vv",
            "cert",
            "show",
            uuid.as_str(),
            "--cert-source",
            "barbican",
        ];
        args.extend_from_slice(extra);
        let out = Run::from_output(cmd.args(&args).output().unwrap());
        assert!(
            !out.stdout.contains(&project.password) && !out.stderr.contains(&project.password),
            "the password leaked: {}{}",
            out.stdout,
            out.stderr
        );
        out
    };
    let last_line = |out: &Run| out.stderr.lines().last().unwrap_or_default().to_string();

    // A wrong password: auth (6), saying where the credentials came from.
    let out = show(&[("OS_PASSWORD", "not-the-password")], &[]).code(6);
    assert!(
        last_line(&out).contains("refused the credentials of the OS_* environment"),
        "{}",
        out.stderr
    );
    // Keystone down: nothing listens there.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v3", free.local_addr().unwrap());
    drop(free);
    let out = show(&[("OS_AUTH_URL", &dead)], &[]).code(8);
    assert!(
        last_line(&out)
            .to_lowercase()
            .contains("connection refused"),
        "{}",
        out.stderr
    );
    // A Keystone that accepts and never answers: the timeout ends it.
    let (silent, _) = fake_service(None);
    let started = std::time::Instant::now();
    let out = show(
        &[("OS_AUTH_URL", &format!("{silent}/v3"))],
        &["--os-timeout", "2"],
    )
    .code(8);
    assert!(last_line(&out).contains("timed out"), "{}", out.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "it hung"
    );
    // Barbican answering 503: retried (bounded), then a service error (8).
    let (broken, count) = fake_service(Some(503));
    let out = show(&[], &["--barbican-url", &broken]).code(8);
    assert!(last_line(&out).contains("503"), "{}", out.stderr);
    assert_eq!(count.load(Ordering::SeqCst), 4, "one try and three retries");
    // ...and 500: not retried.
    let (failing, count) = fake_service(Some(500));
    let out = show(&[], &["--barbican-url", &failing]).code(8);
    assert!(last_line(&out).contains("500"), "{}", out.stderr);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Barbican behind TLS with the stack's own CA: refused until OS_CACERT
    // names that CA (or OS_INSECURE turns verification off).
    let tls_url = format!(
        "https://127.0.0.1:{}",
        std::env::var("IMGSEAL_OS_BB_TLS_PORT").unwrap_or_else(|_| "9312".into())
    );
    let ca = common::openstack::stack_dir().join("tls/ca.pem");
    let published_uuid = publish(&project, &env, &test_ca().dir.join("ca.crt"));
    let over_tls = |vars: &[(&str, &str)]| {
        let mut cmd = project.command(&env);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Run::from_output(
            cmd.args([
                "cert",
                "show",
                &published_uuid,
                "--cert-source",
                "barbican",
                "--barbican-url",
                &tls_url,
            ])
            .output()
            .unwrap(),
        )
    };
    let out = over_tls(&[]).code(8);
    assert!(out.stderr.contains("TLS"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    over_tls(&[("OS_CACERT", s(&ca))]).ok();
    over_tls(&[("OS_INSECURE", "true")]).ok();
    let out = over_tls(&[("OS_CACERT", s(&test_ca().dir.join("ca.crt")))]).code(8);
    assert!(out.stderr.contains("TLS"), "{}", out.stderr);

    // A region the catalog has no key-manager endpoint in.
    let out = show(&[("OS_REGION_NAME", "Nowhere")], &[]).code(8);
    assert!(
        last_line(&out).contains("no public endpoint in region Nowhere"),
        "{}",
        out.stderr
    );

    // clouds.yaml: an unknown cloud (2), a malformed file (3), and a good
    // cloud whose password lives in secure.yaml.
    let yaml = format!(
        "clouds:\n  test:\n    auth:\n      auth_url: {}\n      username: {}\n      project_name: {}\n      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n",
        common::openstack::auth_url(),
        project.user,
        project.name
    );
    std::fs::write(env.path("clouds.yaml"), &yaml).unwrap();
    std::fs::write(
        env.path("secure.yaml"),
        format!(
            "clouds:\n  test:\n    auth:\n      password: {}\n",
            project.password
        ),
    )
    .unwrap();
    let plain = |args: &[&str]| Run::from_output(env.command().args(args).output().unwrap());
    let out = plain(&[
        "--os-cloud",
        "nope",
        "cert",
        "list",
        "--cert-source",
        "barbican",
    ])
    .code(2);
    assert!(
        out.stderr.contains("is not in") && out.stderr.contains("\"test\""),
        "{}",
        out.stderr
    );
    let listed = plain(&[
        "--os-cloud",
        "test",
        "--json",
        "cert",
        "list",
        "--cert-source",
        "barbican",
    ])
    .ok()
    .json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == published_uuid.as_str()),
        "{listed}"
    );
    std::fs::write(env.path("clouds.yaml"), "clouds: [unclosed\n").unwrap();
    let out = plain(&[
        "--os-cloud",
        "test",
        "cert",
        "list",
        "--cert-source",
        "barbican",
    ])
    .code(3);
    assert!(out.stderr.contains("not a clouds.yaml"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn application_credentials_tokens_and_unscoped_logins() {
    let env = Env::new();
    let project = Project::new();
    let cert = env.path("c.pem");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-nodes",
        "-keyout",
        s(&env.path("c.key")),
        "-subj",
        "/CN=three-logins",
        "-days",
        "5",
        "-out",
        s(&cert),
    ])
    .ok();
    let uuid = publish(&project, &env, &cert);
    let show = |vars: &[(&str, &str)], remove: &[&str]| {
        let mut cmd = env.command();
        for (k, v) in vars {
            cmd.env(k, v);
        }
        for k in remove {
            cmd.env_remove(k);
        }
        Run::from_output(
            cmd.args(["--json", "cert", "show", &uuid, "--cert-source", "barbican"])
                .output()
                .unwrap(),
        )
    };
    let auth_url = common::openstack::auth_url();

    // An application credential of the user, from clouds.yaml + secure.yaml.
    let cred = project
        .openstack(&[
            "application",
            "credential",
            "create",
            "imgseal-ci",
            "-f",
            "json",
        ])
        .ok()
        .json();
    let cred_id = cred["ID"].as_str().unwrap();
    let cred_secret = cred["Secret"].as_str().unwrap();
    std::fs::write(
        env.path("clouds.yaml"),
        format!(
            "clouds:\n  ci:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: {auth_url}\n      application_credential_id: {cred_id}\n    region_name: RegionOne\n"
        ),
    )
    .unwrap();
    std::fs::write(
        env.path("secure.yaml"),
        format!("clouds:\n  ci:\n    auth:\n      application_credential_secret: {cred_secret}\n"),
    )
    .unwrap();
    let out = show(&[("OS_CLOUD", "ci")], &[]).ok();
    assert_eq!(out.json()["subject"], "CN=three-logins");
    assert!(!out.stdout.contains(cred_secret) && !out.stderr.contains(cred_secret));

    // A token from the environment; once revoked, a clear auth error.
    let issued = project
        .openstack(&["token", "issue", "-f", "value", "-c", "id"])
        .ok();
    let token = issued.stdout.trim().to_string();
    let token_env = [
        ("OS_AUTH_URL", auth_url.as_str()),
        ("OS_TOKEN", token.as_str()),
        ("OS_PROJECT_NAME", project.name.as_str()),
        ("OS_PROJECT_DOMAIN_NAME", "Default"),
        ("OS_REGION_NAME", "RegionOne"),
    ];
    show(&token_env, &[]).ok();
    project.openstack(&["token", "revoke", &token]).ok();
    let out = show(&token_env, &[]).code(6);
    assert!(
        out.stderr.contains("refused the credentials"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&token), "the token leaked");

    // No project: an unscoped token, whose catalog has no key-manager.
    let mut vars: Vec<(&str, String)> = project.os_env();
    vars.retain(|(k, _)| *k != "OS_PROJECT_NAME" && *k != "OS_PROJECT_DOMAIN_NAME");
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = show(&vars, &[]).code(8);
    assert!(
        out.stderr.contains("has no \"key-manager\" service"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_certificate_cache_serves_only_when_barbican_is_unreachable() {
    let env = Env::new();
    let project = Project::new();
    let cert = env.path("c.pem");
    self_signed(&env, &cert, "cached");
    let uuid = publish(&project, &env, &cert);
    let cache = env.path("cache");
    std::fs::create_dir(&cache).unwrap();
    let show = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "cert",
            "show",
            uuid.as_str(),
            "--cert-source",
            "barbican",
        ];
        args.extend_from_slice(extra);
        project.run(&env, &args)
    };
    // Online: Barbican's answer, and the cache refreshed from it.
    let out = show(&["--cert-cache", s(&cache)]).ok().json();
    assert!(
        out["location"].as_str().unwrap().starts_with("Barbican at"),
        "{out}"
    );
    let cached = cache.join(format!("{uuid}.pem"));
    assert_eq!(
        std::fs::read_to_string(&cached).unwrap(),
        std::fs::read_to_string(&cert).unwrap()
    );
    // A cached copy never wins over Barbican: tampered on disk, Barbican's is shown.
    std::fs::write(
        &cached,
        std::fs::read(test_ca().dir.join("ca.crt")).unwrap(),
    )
    .unwrap();
    let out = show(&["--cert-cache", s(&cache)]).ok().json();
    assert_eq!(out["subject"], "CN=cached", "{out}");
    // Barbican unreachable: the cache answers, and says so; without it, an error.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let out = show(&["--cert-cache", s(&cache), "--barbican-url", &dead])
        .ok()
        .json();
    assert!(
        out["location"]
            .as_str()
            .unwrap()
            .contains("Barbican unreachable"),
        "{out}"
    );
    assert_eq!(out["subject"], "CN=cached");
    show(&["--barbican-url", &dead]).code(8);
    // The cache goes with Barbican only.
    project
        .run(
            &env,
            &[
                "cert",
                "show",
                &uuid,
                "--cert-source",
                "token",
                "--cert-cache",
                s(&cache),
            ],
        )
        .code(2);
}

#[test]
fn no_openstack_command_shows_a_password_or_a_token() {
    let env = Env::new();
    let project = Project::new();
    let (uri, cert) = key_with_certificate(&env, "ecc-secp384r1", "hygiene");
    let image = env.image("h.raw", 5000);
    let forms = |secret: &str| {
        use base64::Engine as _;
        vec![
            secret.to_string(),
            hex::encode(secret),
            base64::engine::general_purpose::STANDARD.encode(secret),
        ]
    };
    let check = |what: &str, out: &Run| {
        for text in [&out.stdout, &out.stderr] {
            for form in forms(&project.password) {
                assert!(!text.contains(&form), "{what}: the password leaked: {text}");
            }
            let lower = text.to_lowercase();
            assert!(
                !lower.contains("x-auth-token:") && !lower.contains("x-subject-token:"),
                "{what}: a token header: {text}"
            );
        }
    };
    let run = |args: &[&str]| {
        let mut cmd = project.command(&env);
        cmd.env("IMGSEAL_LOG", "trace").arg("-vv").args(args);
        let out = Run::from_output(cmd.output().unwrap());
        check(&args.join(" "), &out);
        out
    };
    let uuid = run(&["--json", "cert", "publish", s(&cert)]).ok().json()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    run(&["cert", "list"]).ok();
    run(&["--json", "cert", "show", &uuid]).ok();
    let props = run(&["sign", "--key", &uri, "--cert-id", &uuid, s(&image)]).ok();
    let props_file = env.path("props.json");
    std::fs::write(&props_file, props.stdout.split("\nDEBUG").next().unwrap()).unwrap();
    let ca = run(&[
        "--json",
        "cert",
        "publish",
        "--reuse",
        s(&test_ca().dir.join("ca.crt")),
    ])
    .ok()
    .json()["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    run(&[
        "verify",
        "--props",
        s(&props_file),
        "--trusted-cert-id",
        &ca,
        s(&image),
    ])
    .ok();
    // A wrong password is refused without being echoed.
    let mut cmd = project.command(&env);
    cmd.env("OS_PASSWORD", "Wr0ng-hygiene-pw")
        .env("IMGSEAL_LOG", "trace")
        .args(["-vv", "cert", "list"]);
    let out = Run::from_output(cmd.output().unwrap()).code(6);
    assert!(!out.stderr.contains("Wr0ng-hygiene-pw"), "{}", out.stderr);
}

/// A proxy in front of the real Barbican that answers 401 to the requests
/// `refuse` picks (by their order, from 0) and forwards the others.
fn barbican_proxy(refuse: fn(usize) -> bool) -> (String, Arc<AtomicUsize>) {
    let port = std::env::var("IMGSEAL_OS_BB_PORT").unwrap_or_else(|_| "9311".into());
    common::openstack::fault_proxy(port.parse().unwrap(), move |_, n| {
        if refuse(n) {
            common::openstack::Fault::Unauthorized
        } else {
            common::openstack::Fault::Pass
        }
    })
}

#[test]
fn a_token_refused_midway_is_renewed_once() {
    let env = Env::new();
    let project = Project::new();
    let cert = env.path("c.pem");
    self_signed(&env, &cert, "renewed");
    let uuid = publish(&project, &env, &cert);
    let show = |proxy: &str| {
        project.run(
            &env,
            &[
                "--json",
                "cert",
                "show",
                &uuid,
                "--cert-source",
                "barbican",
                "--barbican-url",
                proxy,
            ],
        )
    };
    // The payload request is refused once (as when the token expires between
    // two calls): a new token, the same request again, success.
    let (proxy, count) = barbican_proxy(|n| n == 1);
    let out = show(&proxy).ok().json();
    assert_eq!(out["subject"], "CN=renewed", "{out}");
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "metadata, refused payload, payload"
    );
    // Refused even with a fresh token: an auth error, after one renewal only
    // (with a fresh login the metadata and the payload are asked in a row).
    let (proxy, count) = barbican_proxy(|_| true);
    let out = project
        .command(&env)
        .args(["-vv", "cert", "show", &uuid, "--cert-source", "barbican"])
        .args(["--barbican-url", &proxy])
        .output()
        .map(Run::from_output)
        .unwrap()
        .code(6);
    assert!(
        out.stderr.contains("401 even with a fresh token"),
        "{}",
        out.stderr
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

/// Every regular file in `dir` (the token cache's entries and salt).
fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn the_token_cache_skips_the_login_and_is_renewed_when_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let project = Project::new();
    let cert = env.path("c.pem");
    self_signed(&env, &cert, "cached-token");
    let uuid = publish(&project, &env, &cert);
    let run_dir = env.path("run");
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cache = run_dir.join("imgseal/os-tokens");
    let show = |password: &str, extra: &[&str]| {
        let out = project
            .command(&env)
            .env("XDG_RUNTIME_DIR", &run_dir)
            .env("OS_PASSWORD", password)
            .args([
                "-vv",
                "--json",
                "cert",
                "show",
                &uuid,
                "--cert-source",
                "barbican",
            ])
            .arg("--os-token-cache")
            .args(extra)
            .output()
            .unwrap();
        Run::from_output(out)
    };
    let entries = || -> Vec<std::path::PathBuf> {
        files_in(&cache)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect()
    };

    // The first run logs in and keeps the token, privately.
    let first = show(&project.password, &[]).ok();
    assert!(
        !first.stderr.contains("using the cached token"),
        "{}",
        first.stderr
    );
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let kept = entries();
    assert_eq!(kept.len(), 1, "{kept:?}");
    for file in files_in(&cache) {
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            file.display()
        );
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(project.password.len())
                .any(|w| w == project.password.as_bytes()),
            "{} holds the password",
            file.display()
        );
    }
    let token_of = |file: &Path| -> String {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        v["token"].as_str().unwrap().to_string()
    };
    let token = token_of(&kept[0]);
    assert!(
        !first.stderr.contains(&token),
        "the token leaked: {}",
        first.stderr
    );

    // The second run uses it: no login.
    let second = show(&project.password, &[]).ok();
    assert!(
        second.stderr.contains("using the cached token"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains(&token),
        "the token leaked: {}",
        second.stderr
    );
    assert_eq!(second.json()["subject"], "CN=cached-token");

    // A wrong password never rides on the cached token of the right one.
    let wrong = show("Wr0ng-cached-pw", &[]).code(6);
    assert!(
        !wrong.stderr.contains("using the cached token"),
        "{}",
        wrong.stderr
    );

    // Barbican refuses the cached token (revoked, say): one login, the new
    // token replaces the old in the cache, and the lookup succeeds.
    let (proxy, _) = barbican_proxy(|n| n < 2);
    let renewed = show(&project.password, &["--barbican-url", &proxy]).ok();
    assert!(
        renewed.stderr.contains("using the cached token"),
        "{}",
        renewed.stderr
    );
    assert!(
        renewed.stderr.contains("re-authenticating once"),
        "{}",
        renewed.stderr
    );
    let now = entries();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(
        token_of(&now[0]),
        token,
        "the refused token is still cached"
    );

    // A cache others could read is refused, not used.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let open = show(&project.password, &[]).code(3);
    assert!(open.stderr.contains("mode 0755"), "{}", open.stderr);
}

#[test]
fn a_publish_whose_local_copy_fails_leaves_no_secret_behind() {
    let env = Env::new();
    let project = Project::new();
    env.generate("ecc-secp384r1", "first");
    let cert = env.path("c.pem");
    self_signed(&env, &cert, "half");
    let secrets = || {
        project
            .openstack(&["secret", "list", "-f", "json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len()
    };
    let before = secrets();
    // The local copy goes to the token, whose login this wrong PIN fails.
    let out = Run::from_output(
        project
            .command(&env)
            .env("IMGSEAL_PIN", "not-the-pin")
            .args(["cert", "publish", s(&cert)])
            .output()
            .unwrap(),
    )
    .code(6);
    assert!(
        out.stderr
            .contains("the new Barbican secret was deleted again"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not-the-pin"));
    assert_eq!(secrets(), before, "a secret was left behind");
    // With the right PIN it is published, once.
    project.run(&env, &["cert", "publish", s(&cert)]).ok();
    assert_eq!(secrets(), before + 1);
}

/// A compute host seals trust anchors named by their Barbican UUIDs.
#[test]
fn anchors_are_sealed_from_barbican_uuids() {
    let env = Env::new();
    let project = Project::new();
    let tpm = common::tpm::TestTpm::start();
    let ca = test_ca().dir.join("ca.crt");
    let uuid = publish(&project, &env, &ca);
    let tcti = tpm.tcti();
    project
        .run(
            &env,
            &["--tcti", &tcti, "anchors", "seal", "--cert-id", &uuid],
        )
        .ok();
    let shown = project
        .run(&env, &["--tcti", &tcti, "--json", "anchors", "show"])
        .ok()
        .json();
    assert_eq!(shown["verdict"], "intact", "{shown}");
    assert_eq!(shown["anchors"][0]["id"], uuid.as_str(), "{shown}");
    // An id Barbican does not hold seals nothing.
    let missing = uuid::Uuid::new_v4().to_string();
    let out = project
        .run(
            &env,
            &["--tcti", &tcti, "anchors", "add", "--cert-id", &missing],
        )
        .code(4);
    assert!(
        out.stderr.contains("not found in Barbican"),
        "{}",
        out.stderr
    );
}
