//! A Keystone v3 session: one token, the service catalog, and requests that
//! retry what may be retried (connection failures and 502/503/504 on
//! idempotent calls, with backoff) and re-authenticate once on 401.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::RwLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use ureq::Agent;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use super::cloud::{AuthMethod, CloudConfig, Named, ProjectScope, Secret};
use super::token_cache::{CachedToken, TokenCache};
use crate::error::{Error, Result};

/// How long a request may take: connecting, and each whole call.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub call: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            call: Duration::from_secs(60),
        }
    }
}

/// Bounded retries: three more attempts, 0.25 s, 0.5 s and 1 s apart.
const RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The largest JSON or payload answer read into memory (a certificate is a few KiB).
const MAX_BODY: u64 = 16 << 20;

/// A service's endpoint in the catalog.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub(super) struct CatalogEndpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub(super) struct CatalogService {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<CatalogEndpoint>,
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::service(format!("{what}: the answer is not the JSON expected: {e}"))
        })
    }

    /// The service's own reason, from an OpenStack error body (`{"title": …,
    /// "description": …}`, `{"error": {"message": …}}`, or plain text).
    pub fn reason(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        if let Ok(v) = serde_json::from_slice::<Value>(&self.body) {
            for path in [
                &["error", "message"][..],
                &["description"][..],
                &["message"][..],
                &["title"][..],
            ] {
                let mut at = &v;
                for key in path {
                    at = &at[*key];
                }
                if let Some(s) = at.as_str() {
                    return one_line(s);
                }
            }
        }
        one_line(&text)
    }
}

fn one_line(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 300 {
        s.chars().take(300).collect::<String>() + "…"
    } else {
        s
    }
}

fn header_map(headers: &ureq::http::HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A streamed answer: the body to read when the status is 200, else the
/// answer read whole for its reason.
pub struct Download {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub error: Option<Response>,
    pub reader: Option<Box<dyn Read + Send>>,
}

/// An HTTP method, and whether repeating it is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Delete,
    Put,
    Post,
    Patch,
}

impl Method {
    fn idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Patch)
    }

    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Delete => "DELETE",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Patch => "PATCH",
        }
    }
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'a str, String)>,
    pub body: Option<Vec<u8>>,
}

impl<'a> Request<'a> {
    pub fn get(url: impl Into<String>) -> Self {
        Request {
            method: Method::Get,
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn post_json(url: impl Into<String>, body: &Value) -> Self {
        Request {
            method: Method::Post,
            url: url.into(),
            headers: vec![("Content-Type", "application/json".into())],
            body: Some(body.to_string().into_bytes()),
        }
    }

    pub fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// The token in use and what came with it. Requests run concurrently (a
/// chain's certificates are fetched at once), so it sits behind a lock that
/// only a re-authentication writes.
#[derive(Default)]
struct Login {
    token: Secret,
    catalog: Vec<CatalogService>,
    /// Bumped by every new token, so that of several requests refused with
    /// 401 at once only the first logs in again.
    generation: u64,
    /// The token came from the cache: services have likely validated it
    /// already (keystonemiddleware keeps tokens it validated for minutes).
    reused: bool,
}

/// A logged-in cloud. Requests take `&self` and may run on several threads.
pub struct Session {
    agent: Agent,
    config: CloudConfig,
    login: RwLock<Login>,
    overrides: BTreeMap<String, String>,
    /// Keystone's v3 root, where tokens come from.
    identity: String,
    cache: Option<TokenCache>,
    timeouts: Timeouts,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("cloud", &self.config.origin)
            .field("token", &"<secret>")
            .finish()
    }
}

fn read_file(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::io(path, e))
        .map_err(|e| match e {
            Error::Io { path, source } => Error::Io {
                path: std::path::PathBuf::from(format!("{what} {}", path.display())),
                source,
            },
            other => other,
        })
}

fn agent(config: &CloudConfig, timeouts: Timeouts) -> Result<Agent> {
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::NativeTls)
        .root_certs(RootCerts::PlatformVerifier)
        .disable_verification(config.insecure);
    if let Some(path) = &config.cacert {
        let pem = read_file(path, "OS_CACERT")?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| {
                Error::bad_input(format!("{}: not PEM certificates: {e}", path.display()))
            })?;
        if certs.is_empty() {
            return Err(Error::bad_input(format!(
                "{}: no PEM certificate in the CA file",
                path.display()
            )));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    if let Some((cert, key)) = &config.client_cert {
        let chain_pem = read_file(cert, "OS_CERT")?;
        let key_pem = read_file(key, "OS_KEY")?;
        let chain = vec![Certificate::from_pem(&chain_pem).map_err(|e| {
            Error::bad_input(format!("{}: not a PEM certificate: {e}", cert.display()))
        })?];
        let key = PrivateKey::from_pem(&key_pem)
            .map_err(|_| Error::bad_input(format!("{}: not a PEM private key", key.display())))?;
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_connect(Some(timeouts.connect))
        .timeout_global(Some(timeouts.call))
        .user_agent(concat!("imgseal/", env!("CARGO_PKG_VERSION")))
        .build()
        .into())
}

fn identity_root(auth_url: &str) -> String {
    let u = auth_url.trim_end_matches('/');
    if u.ends_with("/v3") {
        u.to_string()
    } else {
        format!("{u}/v3")
    }
}

fn named_json(n: &Named) -> Value {
    match n {
        Named::Id(id) => json!({ "id": id }),
        Named::Name(name) => json!({ "name": name }),
    }
}

fn user_json(user: &Named, domain: &Option<Named>) -> Value {
    let mut v = named_json(user);
    if let (Named::Name(_), Some(d)) = (user, domain) {
        v["domain"] = named_json(d);
    }
    v
}

fn scope_json(scope: &ProjectScope) -> Value {
    let mut project = named_json(&scope.project);
    if let (Named::Name(_), Some(d)) = (&scope.project, &scope.domain) {
        project["domain"] = named_json(d);
    }
    json!({ "project": project })
}

/// The token request. It holds the secret, so it is built, sent and dropped
/// inside [`Session::authenticate`] and never logged.
fn auth_body(config: &CloudConfig) -> zeroize::Zeroizing<String> {
    let identity = match &config.auth {
        AuthMethod::Password {
            user,
            user_domain,
            password,
        } => {
            let mut u = user_json(user, user_domain);
            u["password"] = json!(password.expose());
            json!({ "methods": ["password"], "password": { "user": u } })
        }
        AuthMethod::ApplicationCredential {
            credential,
            user,
            secret,
        } => {
            let mut c = named_json(credential);
            if let Some((u, d)) = user {
                c["user"] = user_json(u, d);
            }
            c["secret"] = json!(secret.expose());
            json!({ "methods": ["application_credential"], "application_credential": c })
        }
        AuthMethod::Token { token } => {
            json!({ "methods": ["token"], "token": { "id": token.expose() } })
        }
    };
    let mut auth = json!({ "identity": identity });
    if let Some(scope) = &config.scope {
        auth["scope"] = scope_json(scope);
    }
    zeroize::Zeroizing::new(json!({ "auth": auth }).to_string())
}

/// Why a request did not get an answer, as one line.
fn transport_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::ConnectionFailed => "connection refused or failed".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Tls(t) => format!("TLS: {t}"),
        other => {
            let text = one_line(&other.to_string());
            match text.strip_prefix("native-tls: ") {
                Some(tls) if tls.contains("certificate verify failed") => format!(
                    "TLS: the server's certificate is not trusted ({tls}); if it is your cloud's own CA, name it in OS_CACERT (or cacert in clouds.yaml)"
                ),
                Some(tls) => format!("TLS: {tls}"),
                None => text,
            }
        }
    }
}

fn retryable(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::ConnectionFailed | ureq::Error::Io(_))
}

impl Session {
    /// Logs in to the cloud `config` names.
    pub fn open(config: CloudConfig, timeouts: Timeouts) -> Result<Session> {
        Self::open_with_cache(config, timeouts, None)
    }

    /// Logs in, or reuses the token `cache` keeps for these credentials while
    /// it has time left (a 401 on it logs in again and replaces it).
    pub fn open_with_cache(
        config: CloudConfig,
        timeouts: Timeouts,
        cache: Option<TokenCache>,
    ) -> Result<Session> {
        let agent = agent(&config, timeouts)?;
        let identity = identity_root(&config.auth_url);
        let session = Session {
            agent,
            config,
            login: RwLock::new(Login::default()),
            overrides: BTreeMap::new(),
            identity,
            cache,
            timeouts,
        };
        let cached = session.cache.as_ref().and_then(|c| c.load(&session.config));
        match cached {
            Some(CachedToken {
                token,
                catalog,
                expires_at,
            }) => {
                tracing::debug!(cloud = %session.config.origin, %expires_at, "using the cached token");
                let mut login = session.write_login();
                login.token = token;
                login.catalog = catalog;
                login.reused = true;
            }
            None => session.authenticate(0)?,
        }
        Ok(session)
    }

    fn read_login(&self) -> std::sync::RwLockReadGuard<'_, Login> {
        // A thread that panicked holding the lock left a whole token behind:
        // the value is still sound.
        self.login.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_login(&self) -> std::sync::RwLockWriteGuard<'_, Login> {
        self.login.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether requests pay to run at once. Every service worker that first
    /// sees a new token asks Keystone to validate it (a quarter of a second
    /// here, per worker); requests in a row land on one worker and pay once,
    /// requests at once land on several and pay for each. So: at once only
    /// with a token the workers have seen, one from the cache.
    pub fn concurrent_requests_pay(&self) -> bool {
        self.read_login().reused
    }

    pub fn origin(&self) -> &str {
        &self.config.origin
    }

    /// Uses `url` for `service_type` instead of the catalog's endpoint.
    pub fn set_endpoint_override(&mut self, service_type: &str, url: &str) {
        self.overrides.insert(
            service_type.to_string(),
            url.trim_end_matches('/').to_string(),
        );
    }

    /// Logs in again unless another thread already replaced the token of
    /// `generation`.
    fn authenticate(&self, generation: u64) -> Result<()> {
        let mut login = self.write_login();
        if login.generation != generation {
            return Ok(());
        }
        let url = format!("{}/auth/tokens", self.identity);
        let body = auth_body(&self.config);
        let request = Request {
            method: Method::Post,
            url: url.clone(),
            headers: vec![("Content-Type", "application/json".into())],
            body: Some(body.as_bytes().to_vec()),
        };
        let answer = self.send(&request, false);
        // The request body held the secret: wipe our copy now.
        drop(request);
        let answer = answer?;
        match answer.status {
            201 | 200 => {}
            401 => {
                return Err(Error::Auth(format!(
                    "Keystone at {} refused the credentials of {} (401: {})",
                    self.identity,
                    self.config.origin,
                    answer.reason()
                )));
            }
            // Keystone answers a token it no longer knows (revoked, expired) with 404.
            404 if matches!(self.config.auth, AuthMethod::Token { .. }) => {
                return Err(Error::Auth(format!(
                    "Keystone at {} refused the credentials of {}: the token is expired or revoked (404: {})",
                    self.identity,
                    self.config.origin,
                    answer.reason()
                )));
            }
            code => {
                return Err(Error::service(format!(
                    "Keystone at {url}: {code}: {}",
                    answer.reason()
                )));
            }
        }
        let token = answer
            .headers
            .get("x-subject-token")
            .cloned()
            .ok_or_else(|| {
                Error::service(format!(
                    "Keystone at {url}: no X-Subject-Token in its answer"
                ))
            })?;
        #[derive(Deserialize)]
        struct TokenBody {
            token: TokenInfo,
        }
        #[derive(Deserialize)]
        struct TokenInfo {
            #[serde(default)]
            catalog: Vec<CatalogService>,
            #[serde(default)]
            expires_at: Option<String>,
        }
        let body: TokenBody = answer.json(&format!("Keystone at {url}"))?;
        let token = Secret::new(token);
        if let (Some(cache), Some(expires_at)) = (&self.cache, &body.token.expires_at) {
            // A cache that cannot be written costs the next run a login, nothing more.
            if let Err(e) = cache.save(&self.config, &token, expires_at, &body.token.catalog) {
                tracing::warn!("token cache: {e}");
            }
        }
        login.token = token;
        login.catalog = body.token.catalog;
        login.generation += 1;
        login.reused = false;
        Ok(())
    }

    /// The endpoint of `service_type` (`key-manager`, `image`) for the
    /// configured region and interface, or its override.
    pub fn endpoint(&self, service_type: &str) -> Result<String> {
        if let Some(url) = self.overrides.get(service_type) {
            return Ok(url.clone());
        }
        let login = self.read_login();
        let Some(service) = login
            .catalog
            .iter()
            .find(|s| s.service_type == service_type)
        else {
            let have: Vec<&str> = login
                .catalog
                .iter()
                .map(|s| s.service_type.as_str())
                .collect();
            return Err(Error::service(format!(
                "the service catalog of {} has no \"{service_type}\" service (it has: {})",
                self.config.origin,
                if have.is_empty() {
                    "nothing".to_string()
                } else {
                    have.join(", ")
                }
            )));
        };
        let region_matches = |e: &CatalogEndpoint| match &self.config.region {
            None => true,
            Some(r) => e.region.as_deref() == Some(r) || e.region_id.as_deref() == Some(r),
        };
        service
            .endpoints
            .iter()
            .find(|e| e.interface == self.config.interface && region_matches(e))
            .map(|e| e.url.trim_end_matches('/').to_string())
            .ok_or_else(|| {
                Error::service(format!(
                    "the \"{service_type}\" service of {} has no {} endpoint{}",
                    self.config.origin,
                    self.config.interface,
                    self.config
                        .region
                        .as_ref()
                        .map(|r| format!(" in region {r}"))
                        .unwrap_or_default()
                ))
            })
    }

    /// Sends `request` with the token; re-authenticates once on 401.
    pub fn call(&self, request: Request<'_>) -> Result<Response> {
        let (answer, generation) = self.send_with_token(&request)?;
        if answer.status != 401 {
            return Ok(answer);
        }
        tracing::debug!(url = %request.url, "401: re-authenticating once");
        if let Some(cache) = &self.cache {
            cache.forget(&self.config);
        }
        self.authenticate(generation)?;
        let (again, _) = self.send_with_token(&request)?;
        if again.status == 401 {
            return Err(Error::Auth(format!(
                "{} {}: 401 even with a fresh token from {} ({})",
                request.method.name(),
                request.url,
                self.config.origin,
                again.reason()
            )));
        }
        Ok(again)
    }

    /// Sends `request` with the current token; also returns which token it was.
    fn send_with_token(&self, request: &Request<'_>) -> Result<(Response, u64)> {
        let mut with_token = request.clone();
        let generation = {
            let login = self.read_login();
            with_token
                .headers
                .push(("X-Auth-Token", login.token.expose().to_string()));
            login.generation
        };
        let answer = self.send(&with_token, request.method.idempotent());
        // Our copy of the token goes with the request.
        for (_, v) in with_token.headers.iter_mut() {
            zeroize::Zeroize::zeroize(v);
        }
        Ok((answer?, generation))
    }

    /// One request, with bounded retries when `may_retry`.
    fn send(&self, request: &Request<'_>, may_retry: bool) -> Result<Response> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_once(request) {
                Ok(r) if may_retry && matches!(r.status, 502..=504) && attempt <= RETRIES => {
                    tracing::debug!(url = %request.url, status = r.status, attempt, "retrying");
                }
                Ok(r) => return Ok(r),
                Err(e) if may_retry && retryable(&e) && attempt <= RETRIES => {
                    tracing::debug!(url = %request.url, error = %transport_reason(&e), attempt, "retrying");
                }
                Err(e) => {
                    return Err(Error::service(format!(
                        "{} {}: {}{}",
                        request.method.name(),
                        request.url,
                        transport_reason(&e),
                        if attempt > 1 {
                            format!(" (after {attempt} attempts)")
                        } else {
                            String::new()
                        }
                    )));
                }
            }
            std::thread::sleep(backoff);
            backoff *= 2;
        }
    }

    /// A request whose body or answer is an image: no limit on the whole
    /// call (2 GiB at 100 MB/s is 20 s, a slow link takes hours), but every
    /// read and write must progress within the call timeout, so a service
    /// that stops answering mid-stream ends the transfer instead of hanging.
    fn streaming<S: ureq::AsSendBody>(
        &self,
        request: ureq::http::Request<S>,
    ) -> ureq::http::Request<S> {
        self.agent
            .configure_request(request)
            .timeout_global(None)
            .timeout_per_read(Some(self.timeouts.call))
            .timeout_per_write(Some(self.timeouts.call))
            .timeout_recv_response(Some(self.timeouts.call))
            .build()
    }

    /// GETs `url` and hands back the body as a stream: an image download.
    /// Re-authenticates once on 401; an answer other than 200 is read whole
    /// (bounded) for its reason.
    pub fn download(&self, url: &str) -> Result<Download> {
        let mut generation = self.read_login().generation;
        for attempt in 0..2 {
            let token = self.read_login().token.expose().to_string();
            let request = ureq::http::Request::builder()
                .method("GET")
                .uri(url)
                .header("X-Auth-Token", token)
                .header("Accept", "application/octet-stream")
                .body(())
                .map_err(|e| Error::service(format!("GET {url}: {e}")))?;
            let response = self
                .agent
                .run(self.streaming(request))
                .map_err(|e| Error::service(format!("GET {url}: {}", transport_reason(&e))))?;
            let status = response.status().as_u16();
            if status == 401 && attempt == 0 {
                if let Some(cache) = &self.cache {
                    cache.forget(&self.config);
                }
                self.authenticate(generation)?;
                generation = self.read_login().generation;
                continue;
            }
            let headers = header_map(response.headers());
            let mut body = response.into_body();
            if status != 200 {
                let mut text = Vec::new();
                let _ = body.as_reader().take(MAX_BODY).read_to_end(&mut text);
                return Ok(Download {
                    status,
                    headers,
                    error: Some(Response {
                        status,
                        headers: BTreeMap::new(),
                        body: text,
                    }),
                    reader: None,
                });
            }
            let reader = body.into_with_config().limit(u64::MAX).reader();
            return Ok(Download {
                status,
                headers,
                error: None,
                reader: Some(Box::new(reader)),
            });
        }
        Err(Error::Auth(format!(
            "GET {url}: 401 even with a fresh token from {}",
            self.config.origin
        )))
    }

    /// PUTs `len` bytes from the reader `open` makes (once more after a 401:
    /// the first body was spent) and returns the answer. Not retried on
    /// connection failures: the service may have taken part of the body.
    pub fn upload(
        &self,
        url: &str,
        len: u64,
        open: &mut dyn FnMut() -> Result<Box<dyn Read + Send>>,
    ) -> Result<Response> {
        let mut generation = self.read_login().generation;
        for attempt in 0..2 {
            let mut reader = open()?;
            let token = self.read_login().token.expose().to_string();
            let request = ureq::http::Request::builder()
                .method("PUT")
                .uri(url)
                .header("X-Auth-Token", token)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", len.to_string())
                .header("Accept", "application/json")
                .body(ureq::SendBody::from_reader(&mut reader))
                .map_err(|e| Error::service(format!("PUT {url}: {e}")))?;
            let mut response = self
                .agent
                .run(self.streaming(request))
                .map_err(|e| Error::service(format!("PUT {url}: {}", transport_reason(&e))))?;
            let status = response.status().as_u16();
            let headers = header_map(response.headers());
            let mut body = Vec::new();
            let _ = response
                .body_mut()
                .as_reader()
                .take(MAX_BODY)
                .read_to_end(&mut body);
            if status == 401 && attempt == 0 {
                if let Some(cache) = &self.cache {
                    cache.forget(&self.config);
                }
                self.authenticate(generation)?;
                generation = self.read_login().generation;
                continue;
            }
            return Ok(Response {
                status,
                headers,
                body,
            });
        }
        Err(Error::Auth(format!(
            "PUT {url}: 401 even with a fresh token from {}",
            self.config.origin
        )))
    }

    fn send_once(&self, request: &Request<'_>) -> std::result::Result<Response, ureq::Error> {
        let mut builder = ureq::http::Request::builder()
            .method(request.method.name())
            .uri(&request.url);
        for (k, v) in &request.headers {
            builder = builder.header(*k, v.as_str());
        }
        let bad = |e: ureq::http::Error| ureq::Error::BadUri(e.to_string());
        let mut response = match &request.body {
            Some(body) => self.agent.run(builder.body(body.clone()).map_err(bad)?)?,
            None => self.agent.run(builder.body(()).map_err(bad)?)?,
        };
        let status = response.status().as_u16();
        let headers = header_map(response.headers());
        let mut body = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut body)
            .map_err(ureq::Error::Io)?;
        if body.len() as u64 > MAX_BODY {
            return Err(ureq::Error::BodyExceedsLimit(MAX_BODY));
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
