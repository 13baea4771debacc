//! The real Keystone + Barbican + Glance of scripts/openstack/: started here
//! when scripts/test.sh has not started them, and one throwaway project and
//! user per test.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use imgseal::openstack::cloud::{AuthMethod, CloudConfig, Named, ProjectScope, Secret};
use imgseal::openstack::session::Request;
use imgseal::openstack::{Session, Timeouts};
use serde_json::{Value, json};

use std::path::Path;

use super::{Env, Run, openssl, test_ca};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$OSK`, where scripts/openstack/ keeps the stack.
pub fn stack_dir() -> PathBuf {
    std::env::var_os("IMGSEAL_OPENSTACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/openstack"))
}

fn script(name: &str) {
    let status = Command::new("bash")
        .arg(repo().join("scripts/openstack").join(name))
        .status()
        .unwrap_or_else(|e| panic!("scripts/openstack/{name}: {e}"));
    assert!(status.success(), "scripts/openstack/{name} failed");
}

/// The admin's variables from `$OSK/admin.env`, after making sure the stack
/// is set up and answering.
fn admin_env() -> &'static Vec<(String, String)> {
    static ADMIN: OnceLock<Vec<(String, String)>> = OnceLock::new();
    ADMIN.get_or_init(|| {
        let file = stack_dir().join("admin.env");
        if !file.is_file() {
            script("setup.sh");
        }
        // Idempotent: starts what is not running and waits for all three.
        script("start.sh");
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

pub fn admin_var(name: &str) -> String {
    admin_env()
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{name} not in admin.env"))
}

pub fn auth_url() -> String {
    admin_var("OS_AUTH_URL")
}

fn admin_session() -> Session {
    let config = CloudConfig {
        auth_url: auth_url(),
        auth: AuthMethod::Password {
            user: Named::Name("admin".into()),
            user_domain: Some(Named::Name("Default".into())),
            password: Secret::new(admin_var("OS_PASSWORD")),
        },
        scope: Some(ProjectScope {
            project: Named::Name("admin".into()),
            domain: Some(Named::Name("Default".into())),
        }),
        region: Some("RegionOne".into()),
        interface: "public".into(),
        cacert: None,
        client_cert: None,
        insecure: false,
        cache_auth: false,
        origin: "the test stack's admin".into(),
    };
    Session::open(config, Timeouts::default()).expect("the admin logs in to the test stack")
}

fn admin_call(
    session: &mut Session,
    method: imgseal::openstack::session::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let url = format!("{}{path}", auth_url());
    let request = Request {
        method,
        url: url.clone(),
        headers: vec![("Content-Type", "application/json".into())],
        body: body.map(|b| b.to_string().into_bytes()),
    };
    let answer = session.call(request).unwrap();
    assert!(
        (200..300).contains(&answer.status),
        "{url}: {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
}

/// A throwaway project with its own user (roles member and creator: what a
/// release engineer has), for one test.
pub struct Project {
    pub name: String,
    pub user: String,
    pub password: String,
    pub project_id: String,
}

impl Project {
    pub fn new() -> Project {
        use imgseal::openstack::session::Method;
        let mut admin = admin_session();
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("imgseal-test-{}", &tag[..12]);
        let password = format!("pw-{}", &tag[12..]);
        let project = admin_call(
            &mut admin,
            Method::Post,
            "/projects",
            Some(json!({"project": {"name": name, "domain_id": "default"}})),
        );
        let project_id = project["project"]["id"].as_str().unwrap().to_string();
        let user = admin_call(
            &mut admin,
            Method::Post,
            "/users",
            Some(json!({"user": {"name": name, "password": password, "domain_id": "default"}})),
        );
        let user_id = user["user"]["id"].as_str().unwrap().to_string();
        for role in ["member", "creator"] {
            let roles = admin_call(
                &mut admin,
                Method::Get,
                &format!("/roles?name={role}"),
                None,
            );
            let role_id = roles["roles"][0]["id"].as_str().unwrap().to_string();
            admin_call(
                &mut admin,
                Method::Put,
                &format!("/projects/{project_id}/users/{user_id}/roles/{role_id}"),
                None,
            );
        }
        Project {
            user: name.clone(),
            name,
            password,
            project_id,
        }
    }

    /// The OS_* variables of this project's user.
    pub fn os_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OS_AUTH_URL", auth_url()),
            ("OS_USERNAME", self.user.clone()),
            ("OS_PASSWORD", self.password.clone()),
            ("OS_USER_DOMAIN_NAME", "Default".into()),
            ("OS_PROJECT_NAME", self.name.clone()),
            ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
            ("OS_REGION_NAME", "RegionOne".into()),
            ("OS_INTERFACE", "public".into()),
            ("OS_IDENTITY_API_VERSION", "3".into()),
        ]
    }

    /// imgseal with this project's credentials in the environment.
    pub fn command(&self, env: &Env) -> Command {
        let mut cmd = env.command();
        for (k, v) in self.os_env() {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, env: &Env, args: &[&str]) -> Run {
        Run::from_output(self.command(env).args(args).output().expect("imgseal runs"))
    }

    /// The python-openstackclient of the stack's venv, as this user.
    pub fn openstack(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(stack_dir().join("venv/bin/openstack"));
        for (k, v) in self.os_env() {
            cmd.env(k, v);
        }
        Run::from_output(cmd.args(args).output().expect("openstack runs"))
    }

    /// A logged-in session of this user, for reading what the services hold.
    pub fn session(&self) -> Session {
        let env: Vec<(String, String)> = self
            .os_env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let config = imgseal::openstack::cloud::resolve(None, &get, &[])
            .unwrap()
            .unwrap();
        Session::open(config, Timeouts::default()).unwrap()
    }
}

/// The Glance log, for "Successfully verified signature".
pub fn glance_log() -> String {
    std::fs::read_to_string(stack_dir().join("log/glance.log")).unwrap_or_default()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `imgseal --json cert publish FILE`, as the project's user: the new UUID.
pub fn publish(project: &Project, env: &Env, file: &Path) -> String {
    let out = project
        .run(env, &["--json", "cert", "publish", s(file)])
        .ok();
    out.json()["uuid"].as_str().unwrap().to_string()
}

/// A self-signed RSA certificate for /CN=`cn` at `out` (its key beside it).
pub fn self_signed(env: &Env, out: &Path, cn: &str) {
    let key = env.path(&format!("{cn}.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        s(&key),
        "-subj",
        &format!("/CN={cn}"),
        "-days",
        "5",
        "-out",
        s(out),
    ])
    .ok();
}

/// A key in the embedded token and its certificate from the test CA.
pub fn key_with_certificate(env: &Env, kind: &str, label: &str) -> (String, std::path::PathBuf) {
    let uri = env.generate(kind, label);
    let csr = env.path(&format!("{label}.csr"));
    env.run(&[
        "key",
        "csr",
        "--key",
        &uri,
        "--subject",
        &format!("CN={label}"),
        "--out",
        s(&csr),
    ])
    .ok();
    let cert = env.path(&format!("{label}.crt"));
    test_ca().issue(&csr, &cert);
    (uri, cert)
}

/// What a proxy in front of a service does to one request.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Fault {
    Pass,
    /// Forward this many bytes of the request, then drop both connections
    /// (Glance killed mid-upload, as the client sees it).
    CutRequestAfter(usize),
    /// Forward this many bytes of the answer, then drop both (mid-download).
    CutAnswerAfter(usize),
    /// Answer 401 without asking Glance (a token that expired mid-way).
    Unauthorized,
}

/// A proxy in front of the real Glance; `pick` sees each request line and
/// its number (from 0) and says what to do with it.
pub fn glance_proxy(pick: impl Fn(&str, usize) -> Fault + Send + Sync + 'static) -> String {
    let port = std::env::var("IMGSEAL_OS_GL_PORT").unwrap_or_else(|_| "9292".into());
    fault_proxy(port.parse().unwrap(), pick).0
}

/// A proxy in front of the service on 127.0.0.1:`port`: its URL, and how
/// many connections it took.
pub fn fault_proxy(
    port: u16,
    pick: impl Fn(&str, usize) -> Fault + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let pick = Arc::new(pick);
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let pick = Arc::clone(&pick);
            let n = counted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut buf = [0u8; 65536];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => head.extend_from_slice(&buf[..k]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let fault = pick(&line, n);
                if fault == Fault::Unauthorized {
                    // As a server that reads the whole request before it
                    // judges the token.
                    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                    let len: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    let at = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    let mut got = head.len() - at;
                    while got < len {
                        match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => got += k,
                        }
                    }
                    let body = r#"{"code": 401, "title": "Unauthorized"}"#;
                    let _ = write!(
                        client,
                        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(format!("127.0.0.1:{port}")) else {
                    return;
                };
                let copy =
                    |mut from: TcpStream, mut to: TcpStream, cap: Option<usize>, sent: usize| {
                        let mut sent = sent;
                        let mut buf = [0u8; 65536];
                        loop {
                            let k = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(k) => k,
                            };
                            let k = cap.map_or(k, |c| k.min(c.saturating_sub(sent)));
                            if to.write_all(&buf[..k]).is_err() {
                                break;
                            }
                            sent += k;
                            if cap.is_some_and(|c| sent >= c) {
                                let _ = from.shutdown(Shutdown::Both);
                                let _ = to.shutdown(Shutdown::Both);
                                return;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    };
                let (request_cap, answer_cap) = match fault {
                    Fault::CutRequestAfter(c) => (Some(c), None),
                    Fault::CutAnswerAfter(c) => (None, Some(c)),
                    _ => (None, None),
                };
                let _ = upstream.write_all(&head);
                let up = upstream.try_clone().unwrap();
                let cl = client.try_clone().unwrap();
                let sending = std::thread::spawn(move || copy(cl, up, request_cap, head.len()));
                copy(upstream, client, answer_cap, 0);
                let _ = sending.join();
            });
        }
    });
    (url, count)
}
