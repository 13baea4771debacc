//! Images in Glance (API v2): created with the four signature properties,
//! uploaded as a stream, read back, downloaded as a stream, re-signed with
//! one JSON-patch request, listed page by page. Glance verifies the
//! signature while it stores the data (glance/location.py through cursive);
//! what it answers is kept verbatim.

use std::io::Read;

use serde_json::{Map, Value, json};

use super::session::{Method, Request, Response, Session};
use crate::error::{Error, Result};

/// The service type Glance has in the catalog.
pub const SERVICE: &str = "image";

/// Glance's own digest of stored data (`os_hash_algo`), the default of its
/// `hashing_algorithm` option.
pub const OS_HASH_ALGO: &str = "sha512";

/// An image record as `GET /v2/images/{id}` returns it: the fields Glance
/// defines and every property, at the top level.
#[derive(Debug, Clone)]
pub struct ImageRecord(pub Map<String, Value>);

impl ImageRecord {
    fn str_field(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }
    pub fn id(&self) -> &str {
        self.str_field("id").unwrap_or("")
    }
    pub fn name(&self) -> Option<&str> {
        self.str_field("name")
    }
    pub fn status(&self) -> &str {
        self.str_field("status").unwrap_or("")
    }
    pub fn size(&self) -> Option<u64> {
        self.0.get("size").and_then(Value::as_u64)
    }
    pub fn os_hash_algo(&self) -> Option<&str> {
        self.str_field("os_hash_algo")
    }
    pub fn os_hash_value(&self) -> Option<&str> {
        self.str_field("os_hash_value")
    }
    pub fn disk_format(&self) -> Option<&str> {
        self.str_field("disk_format")
    }
    /// The record as JSON text, for [`crate::glance::RawProperties::from_json`]
    /// (which finds the properties at the top level).
    pub fn to_json(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }
    /// Whether the record carries any of the four signature properties.
    pub fn has_signature_properties(&self) -> bool {
        crate::glance::ALL.iter().any(|k| self.0.contains_key(*k))
    }
}

/// What `POST /v2/images` gets: the user's fields and the properties.
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    pub name: String,
    pub disk_format: String,
    pub container_format: String,
    pub visibility: Option<String>,
    pub min_disk: Option<u64>,
    pub min_ram: Option<u64>,
    /// Extra properties and the four signature properties, as strings.
    pub properties: Vec<(String, String)>,
}

/// Glance, reached through a session.
pub struct Glance<'a> {
    session: &'a Session,
    root: String,
}

/// A Glance image id is a UUID; anything else is refused before it becomes
/// part of a URL.
pub fn is_image_id(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

impl<'a> Glance<'a> {
    pub fn new(session: &'a Session) -> Result<Self> {
        let endpoint = session.endpoint(SERVICE)?;
        // The catalog may hold the bare endpoint or one ending in /v2.
        let root = endpoint
            .trim_end_matches('/')
            .trim_end_matches("/v2")
            .to_string();
        Ok(Glance { session, root })
    }

    pub fn image_url(&self, id: &str) -> String {
        format!("{}/v2/images/{id}", self.root)
    }

    fn failure(&self, what: &str, answer: &Response) -> Error {
        let reason = answer.reason();
        match answer.status {
            401 | 403 => Error::Auth(format!("Glance {what}: {}: {reason}", answer.status)),
            404 => Error::not_found(format!("Glance {what}: 404: {reason}")),
            400 | 409 | 413 | 415 => {
                Error::bad_input(format!("Glance {what}: {}: {reason}", answer.status))
            }
            code => Error::service(format!("Glance {what}: {code}: {reason}")),
        }
    }

    /// `POST /v2/images`: a queued image.
    pub fn create(&self, image: &NewImage) -> Result<ImageRecord> {
        let mut body = Map::new();
        body.insert("name".into(), json!(image.name));
        body.insert("disk_format".into(), json!(image.disk_format));
        body.insert("container_format".into(), json!(image.container_format));
        if let Some(v) = &image.visibility {
            body.insert("visibility".into(), json!(v));
        }
        if let Some(n) = image.min_disk {
            body.insert("min_disk".into(), json!(n));
        }
        if let Some(n) = image.min_ram {
            body.insert("min_ram".into(), json!(n));
        }
        for (k, v) in &image.properties {
            body.insert(k.clone(), json!(v));
        }
        let url = format!("{}/v2/images", self.root);
        let answer = self
            .session
            .call(Request::post_json(&url, &Value::Object(body)))?;
        if answer.status != 201 {
            return Err(self.failure("image create", &answer));
        }
        Ok(ImageRecord(answer.json("Glance image create")?))
    }

    /// `GET /v2/images/{id}`; `None` when Glance has no such image.
    pub fn show(&self, id: &str) -> Result<Option<ImageRecord>> {
        if !is_image_id(id) {
            return Ok(None);
        }
        let answer = self
            .session
            .call(Request::get(self.image_url(id)).header("Accept", "application/json"))?;
        match answer.status {
            200 => Ok(Some(ImageRecord(answer.json("Glance image")?))),
            404 => Ok(None),
            _ => Err(self.failure(&format!("image {id}"), &answer)),
        }
    }

    /// An image by id, or by name when exactly one visible image has it.
    pub fn find(&self, id_or_name: &str) -> Result<ImageRecord> {
        if let Some(found) = self.show(id_or_name)? {
            return Ok(found);
        }
        let named: Vec<ImageRecord> = self
            .list_where(&[("name", id_or_name)])?
            .into_iter()
            .filter(|i| i.name() == Some(id_or_name))
            .collect();
        match named.len() {
            1 => Ok(named.into_iter().next().expect("one")),
            0 => Err(Error::not_found(format!(
                "Glance at {} has no image with id or name \"{}\" visible to {}",
                self.root,
                id_or_name.escape_default(),
                self.session.origin()
            ))),
            n => Err(Error::usage(format!(
                "{n} images are named \"{}\" ({}): give the image's id",
                id_or_name.escape_default(),
                named.iter().map(|i| i.id()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Every image visible to the user, following Glance's `next` links.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        self.list_where(&[])
    }

    fn list_where(&self, filters: &[(&str, &str)]) -> Result<Vec<ImageRecord>> {
        let mut query: Vec<String> = vec!["limit=200".into()];
        for (k, v) in filters {
            query.push(format!("{k}={}", urlencode(v)));
        }
        let mut url = format!("{}/v2/images?{}", self.root, query.join("&"));
        let mut images = Vec::new();
        // A bound on pages, so a service that keeps answering `next` cannot
        // keep imgseal listing for ever: 5,000 pages of 200 images.
        for _ in 0..5000 {
            let answer = self
                .session
                .call(Request::get(&url).header("Accept", "application/json"))?;
            if answer.status != 200 {
                return Err(self.failure("image list", &answer));
            }
            let page: Value = answer.json("Glance image list")?;
            for image in page["images"].as_array().into_iter().flatten() {
                if let Value::Object(m) = image {
                    images.push(ImageRecord(m.clone()));
                }
            }
            match page["next"].as_str() {
                Some(next) if !next.is_empty() => {
                    url = format!("{}{}", self.root, next);
                }
                _ => return Ok(images),
            }
        }
        Err(Error::service(format!(
            "Glance at {}: the image list did not end after 5000 pages",
            self.root
        )))
    }

    /// `DELETE /v2/images/{id}`; an image already gone is not an error.
    pub fn delete(&self, id: &str) -> Result<()> {
        let answer = self.session.call(Request {
            method: Method::Delete,
            url: self.image_url(id),
            headers: vec![],
            body: None,
        })?;
        match answer.status {
            204 | 200 | 404 => Ok(()),
            _ => Err(self.failure(&format!("delete image {id}"), &answer)),
        }
    }

    /// One JSON-patch request (RFC 6902, Glance's media type): every
    /// operation applies, or none does.
    pub fn patch(&self, id: &str, operations: &Value) -> Result<ImageRecord> {
        let answer = self.session.call(Request {
            method: Method::Patch,
            url: self.image_url(id),
            headers: vec![
                (
                    "Content-Type",
                    "application/openstack-images-v2.1-json-patch".into(),
                ),
                ("Accept", "application/json".into()),
            ],
            body: Some(operations.to_string().into_bytes()),
        })?;
        if answer.status != 200 {
            return Err(self.failure(&format!("update image {id}"), &answer));
        }
        Ok(ImageRecord(answer.json("Glance image update")?))
    }

    /// `PUT /v2/images/{id}/file` with `len` bytes from the reader `open`
    /// makes. Glance answers 204 once it stored (and, for a signed image,
    /// verified) the data; otherwise its reason comes back as an error.
    pub fn upload(
        &self,
        id: &str,
        len: u64,
        open: &mut dyn FnMut() -> Result<Box<dyn Read + Send>>,
    ) -> Result<()> {
        let url = format!("{}/file", self.image_url(id));
        let answer = self.session.upload(&url, len, open)?;
        match answer.status {
            204 | 200 | 201 => Ok(()),
            _ => Err(self.failure(&format!("upload to image {id}"), &answer)),
        }
    }

    /// `GET /v2/images/{id}/file` as a stream.
    pub fn download(&self, id: &str) -> Result<Box<dyn Read + Send>> {
        let url = format!("{}/file", self.image_url(id));
        let answer = self.session.download(&url)?;
        match (answer.reader, answer.error) {
            (Some(reader), _) => Ok(reader),
            (None, Some(error)) if error.status == 204 => Err(Error::not_found(format!(
                "Glance image {id} has no data (204): nothing was uploaded to it"
            ))),
            (None, Some(error)) => Err(self.failure(&format!("download of image {id}"), &error)),
            (None, None) => Err(Error::service(format!("Glance GET {url}: no answer"))),
        }
    }
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
fn urlencode(s: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    const QUERY_VALUE: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(urlencode("a b/c&d=é"), "a%20b%2Fc%26d%3D%C3%A9");
        assert_eq!(urlencode("golden-1.0_x~"), "golden-1.0_x~");
    }

    #[test]
    fn only_uuids_are_image_ids() {
        assert!(is_image_id("0b5c1c0e-6d2a-4b1e-9c0a-3f6f1d1f2e3a"));
        assert!(!is_image_id("../secrets"));
        assert!(!is_image_id("golden"));
    }
}
