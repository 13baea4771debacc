//! Certificates in Barbican, read exactly as Glance and Nova read them
//! (castellan: the secret's metadata, then its payload as
//! `application/octet-stream`, loaded as PEM), and stored as Nova's docs
//! store them (`openstack secret store --secret-type certificate
//! --payload-content-type application/octet-stream
//! --payload-content-encoding base64`). Where Glance or Nova would fail on
//! what Barbican holds, the error says so and how.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use super::session::{Request, Session};
use crate::error::{Error, Result};
use crate::x509::Certificate;

/// The service type Barbican has in the catalog.
pub const SERVICE: &str = "key-manager";

/// What Barbican says of a secret (`GET /v1/secrets/{uuid}`).
#[derive(Debug, Clone, Deserialize)]
pub struct SecretMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub secret_type: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub expiration: Option<String>,
    #[serde(default)]
    pub content_types: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub secret_ref: Option<String>,
}

/// A certificate read from Barbican, with where it came from.
#[derive(Debug, Clone)]
pub struct BarbicanCertificate {
    pub uuid: String,
    pub secret_ref: String,
    pub meta: SecretMeta,
    /// The payload, byte for byte (a PEM file).
    pub payload: Vec<u8>,
    pub certificate: Certificate,
}

/// Barbican secret ids are UUIDs; anything else is refused before a request
/// (it would otherwise become part of a URL path).
pub fn check_uuid(id: &str) -> Result<()> {
    uuid::Uuid::try_parse(id).map(|_| ()).map_err(|_| {
        Error::usage(format!(
            "certificate id \"{}\" is not a Barbican secret UUID (img_signature_certificate_uuid and trusted ids are Barbican UUIDs)",
            id.escape_default()
        ))
    })
}

fn secrets_url(session: &Session) -> Result<String> {
    Ok(format!("{}/v1/secrets", session.endpoint(SERVICE)?))
}

/// Reads the certificate `uuid` as castellan does; `Ok(None)` when Barbican
/// has no such secret. Every way Glance or Nova would fail on it is an error
/// saying what they would do.
pub fn get_certificate(session: &Session, uuid: &str) -> Result<Option<BarbicanCertificate>> {
    check_uuid(uuid)?;
    let url = format!("{}/{uuid}", secrets_url(session)?);
    // Castellan reads the metadata, then the payload. Both are plain GETs, so
    // they go out together (a chain is fetched in one round trip, not two)
    // and are judged in castellan's order: the payload only counts once the
    // metadata says castellan would have asked for it.
    let payload_url = format!("{url}/payload");
    let get_payload =
        || session.call(Request::get(&payload_url).header("Accept", "application/octet-stream"));
    let get_meta = || session.call(Request::get(&url).header("Accept", "application/json"));
    let (meta, payload) = if session.concurrent_requests_pay() {
        std::thread::scope(|s| {
            let payload = s.spawn(get_payload);
            let meta = get_meta();
            let payload = payload.join().unwrap_or_else(|_| {
                Err(Error::service(format!(
                    "GET {payload_url}: the request thread failed"
                )))
            });
            (meta, Some(payload))
        })
    } else {
        (get_meta(), None)
    };
    let meta = meta?;
    match meta.status {
        200 => {}
        404 => return Ok(None),
        403 => {
            return Err(Error::Auth(format!(
                "Barbican refused to show secret {uuid} to {} (403: {})",
                session.origin(),
                meta.reason()
            )));
        }
        code => {
            return Err(Error::service(format!(
                "Barbican GET {url}: {code}: {}",
                meta.reason()
            )));
        }
    }
    let meta: SecretMeta = meta.json(&format!("Barbican secret {uuid}"))?;
    let kind = meta.secret_type.as_deref().unwrap_or("(none)");
    if kind != "certificate" {
        return Err(Error::bad_input(format!(
            "Barbican secret {uuid} is a {kind} secret, not a certificate: Glance and Nova cannot load a signing certificate from it"
        )));
    }
    if let Some(status) = meta.status.as_deref().filter(|s| *s != "ACTIVE") {
        return Err(Error::bad_input(format!(
            "Barbican secret {uuid} is {status}, not ACTIVE: it has no payload to read"
        )));
    }
    let stored_as = meta
        .content_types
        .as_ref()
        .and_then(|c| c.get("default"))
        .cloned()
        .unwrap_or_default();
    if stored_as != "application/octet-stream" {
        return Err(Error::bad_input(format!(
            "Barbican secret {uuid} is stored as \"{stored_as}\": castellan hands Glance a text string, and Glance answers 500 ('str' object is not an instance of 'bytes'); store the PEM file as application/octet-stream (imgseal cert publish)"
        )));
    }
    let payload = match payload {
        Some(answer) => answer?,
        None => get_payload()?,
    };
    if payload.status != 200 {
        return Err(Error::service(format!(
            "Barbican GET {payload_url}: {}: {}",
            payload.status,
            payload.reason()
        )));
    }
    let origin = format!("Barbican secret {uuid}");
    if !payload.body.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(Error::bad_input(format!(
            "{origin}: the payload is not PEM (DER?): Glance answers 400 'Unable to load PEM file'; store the PEM file (imgseal cert publish)"
        )));
    }
    let certificate = Certificate::parse(&payload.body, &origin)?;
    Ok(Some(BarbicanCertificate {
        uuid: uuid.to_string(),
        secret_ref: meta.secret_ref.clone().unwrap_or(url),
        meta,
        payload: payload.body,
        certificate,
    }))
}

/// Stores `pem` as Nova's docs do, expiring with the certificate; returns the
/// new secret's UUID and reference.
pub fn store_certificate(
    session: &Session,
    name: &str,
    pem: &[u8],
    not_after: Option<&str>,
) -> Result<(String, String)> {
    let url = secrets_url(session)?;
    let mut body = json!({
        "name": name,
        "secret_type": "certificate",
        "payload": base64::engine::general_purpose::STANDARD.encode(pem),
        "payload_content_type": "application/octet-stream",
        "payload_content_encoding": "base64",
    });
    if let Some(t) = not_after {
        body["expiration"] = json!(t);
    }
    let answer = session.call(Request::post_json(&url, &body))?;
    if answer.status != 201 {
        let reason = answer.reason();
        return Err(if (400..500).contains(&answer.status) {
            Error::bad_input(format!(
                "Barbican refused the certificate ({}: {reason})",
                answer.status
            ))
        } else {
            Error::service(format!("Barbican POST {url}: {}: {reason}", answer.status))
        });
    }
    #[derive(Deserialize)]
    struct Created {
        secret_ref: String,
    }
    let created: Created = answer.json("Barbican's answer to a new secret")?;
    let uuid = created
        .secret_ref
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    check_uuid(&uuid).map_err(|_| {
        Error::service(format!(
            "Barbican answered a secret_ref without a UUID: {}",
            created.secret_ref
        ))
    })?;
    Ok((uuid, created.secret_ref))
}

/// Deletes the secret `uuid` (undoing a publish whose local copy failed).
pub fn delete_secret(session: &Session, uuid: &str) -> Result<()> {
    check_uuid(uuid)?;
    let url = format!("{}/{uuid}", secrets_url(session)?);
    let answer = session.call(super::session::Request {
        method: super::session::Method::Delete,
        url: url.clone(),
        headers: Vec::new(),
        body: None,
    })?;
    match answer.status {
        204 | 404 => Ok(()),
        code => Err(Error::service(format!(
            "Barbican DELETE {url}: {code}: {}",
            answer.reason()
        ))),
    }
}

/// Every certificate secret visible to the session (metadata only).
pub fn list_certificates(session: &Session) -> Result<Vec<SecretMeta>> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        secrets: Vec<SecretMeta>,
        #[serde(default)]
        next: Option<String>,
    }
    let mut url = format!(
        "{}?secret_type=certificate&limit=100",
        secrets_url(session)?
    );
    let mut out = Vec::new();
    // A bounded walk: Barbican pages by 100, and a loop of `next` links ends.
    for _ in 0..1000 {
        let answer = session.call(Request::get(&url).header("Accept", "application/json"))?;
        if answer.status != 200 {
            return Err(Error::service(format!(
                "Barbican GET {url}: {}: {}",
                answer.status,
                answer.reason()
            )));
        }
        let page: Page = answer.json("Barbican's secret list")?;
        let empty = page.secrets.is_empty();
        out.extend(page.secrets);
        match page.next {
            Some(next) if !empty => url = next,
            _ => return Ok(out),
        }
    }
    Err(Error::service(
        "Barbican's secret list did not end after 1000 pages",
    ))
}

/// The UUID at the end of a secret reference.
pub fn uuid_of(secret_ref: &str) -> &str {
    secret_ref.rsplit('/').next().unwrap_or(secret_ref)
}
