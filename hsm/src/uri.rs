//! RFC 7512 `pkcs11:` URIs: parsing, canonical formatting and redaction.
//!
//! The parser follows the ABNF of RFC 7512 §2.3 strictly. Where the RFC
//! leaves room, these are the choices made (each is pinned by a test):
//!
//! * Characters outside `pk11-pchar` (path) / `pk11-qchar` (query) must be
//!   percent-encoded; `object=my key` with a literal space is rejected with an
//!   error that names the attribute, the byte and the `%20` to write instead.
//!   Tools that print URIs (p11-kit, p11tool) emit `%20`, so only
//!   hand-written URIs are affected, and a clear error beats guessing where
//!   a sloppy value ends. Whitespace is never stripped.
//! * Vendor attributes must start with `x-` (any case). The grammar would take
//!   any `1*(ALPHA / DIGIT / "-" / "_")` name, but we cannot honour an
//!   attribute we do not understand, and treating a typo such as `lable=` as
//!   a vendor attribute would silently select a different key. The last §3
//!   example (`vendor-aaa=value-a`) is therefore rejected; spell it `x-aaa`.
//!   A standard attribute in the wrong component (`pin-value` in the path, as
//!   libp11-era URIs have it) gets its own error.
//! * Repeating an attribute is an error, except vendor query attributes:
//!   §2.4 says duplicate (vendor) attributes MAY be present in the query.
//! * An empty attribute (`;;`, a trailing `;` or `&`) is rejected: `pk11-path`
//!   and `pk11-query` are lists of `name=value`. An empty query (`pkcs11:?`)
//!   and empty values (`serial=`, `id=`) are accepted; they match empty fields.
//! * Both `pin-source` and `pin-value` present is rejected (§2.4: such a URI
//!   SHOULD be refused). `module-name` with `module-path` is accepted (§2.4
//!   only says it SHOULD be avoided); the module loader decides.
//! * The scheme (RFC 3986 §3.1), attribute names and `type` values (ABNF
//!   literals, RFC 5234 §2.3) are ASCII case-insensitive; vendor names are
//!   kept as written.
//! * `slot-id`, `library-version` and `type` are not percent-decoded: their
//!   ABNF rules have no `pct-encoded` alternative.
//! * Byte offsets in errors are 0-based offsets into the whole input.
//!   No error ever carries any part of a `pin-value`.

use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::{Zeroize, Zeroizing};

const SCHEME: &str = "pkcs11:";
const REDACTED: &str = "<redacted>";

const PATH_ATTRS: [&str; 13] = [
    "token",
    "manufacturer",
    "serial",
    "model",
    "library-manufacturer",
    "library-description",
    "library-version",
    "slot-description",
    "slot-manufacturer",
    "slot-id",
    "object",
    "id",
    "type",
];
const QUERY_ATTRS: [&str; 4] = ["module-name", "module-path", "pin-source", "pin-value"];

/// What [`fmt::Display`] leaves unencoded in path values: `unreserved` and
/// `pk11-res-avail` (§2.3) minus `=`, and without the path's extra `&`. Both
/// are legal unencoded but are encoded so that naive consumers that split the
/// whole URI on `&` or `=` still read it right.
const PATH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'[')
    .remove(b']')
    .remove(b'@')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',');
/// Query values also keep `/` readable (`module-path=/usr/lib/…`); `?` and
/// `|` are legal there too but encoded for the same reason as above.
const QUERY_ENCODE: &AsciiSet = &PATH_ENCODE.remove(b'/');

/// The `type` path attribute: the object's `CKA_CLASS` (RFC 7512 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    Private,
    Public,
    Cert,
    SecretKey,
    Data,
}

impl ObjectType {
    pub const ALL: [ObjectType; 5] = [
        ObjectType::Private,
        ObjectType::Public,
        ObjectType::Cert,
        ObjectType::SecretKey,
        ObjectType::Data,
    ];

    /// The attribute value as written in a URI, e.g. `"secret-key"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Private => "private",
            ObjectType::Public => "public",
            ObjectType::Cert => "cert",
            ObjectType::SecretKey => "secret-key",
            ObjectType::Data => "data",
        }
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ObjectType {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        ObjectType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UriError::InvalidObjectType {
                value: s.to_owned(),
            })
    }
}

/// The two components of a `pkcs11:` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Before `?`, attributes separated by `;`.
    Path,
    /// After `?`, attributes separated by `&`.
    Query,
}

impl Component {
    fn other(self) -> Component {
        match self {
            Component::Path => Component::Query,
            Component::Query => Component::Path,
        }
    }

    fn position(self) -> &'static str {
        match self {
            Component::Path => "before \"?\"",
            Component::Query => "after \"?\"",
        }
    }

    /// Whether `b` may appear unencoded in a value: `pk11-pchar` /
    /// `pk11-qchar` minus `pct-encoded` (RFC 7512 §2.3).
    fn allows(self, b: u8) -> bool {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        let res_avail = matches!(
            b,
            b':' | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
        );
        unreserved
            || res_avail
            || match self {
                Component::Path => b == b'&',
                Component::Query => matches!(b, b'/' | b'?' | b'|'),
            }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Component::Path => "path",
            Component::Query => "query",
        })
    }
}

/// Why a string is not a usable PKCS#11 URI. Every message is one line
/// starting with `invalid PKCS#11 URI:` and never contains a PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("invalid PKCS#11 URI: does not start with \"pkcs11:\"")]
    MissingScheme,
    #[error("invalid PKCS#11 URI: empty attribute at byte {offset} (stray \"{separator}\")")]
    EmptyAttribute { offset: usize, separator: char },
    #[error("invalid PKCS#11 URI: attribute at byte {offset} has no \"=\" (expected name=value)")]
    MissingEquals { offset: usize },
    #[error(
        "invalid PKCS#11 URI: invalid attribute name at byte {offset} (names are letters, digits, \"-\" and \"_\")"
    )]
    InvalidAttributeName { offset: usize },
    #[error(
        "invalid PKCS#11 URI: unknown attribute \"{name}\" (vendor attributes must start with \"x-\")"
    )]
    UnknownAttribute { name: String },
    #[error(
        "invalid PKCS#11 URI: attribute \"{name}\" belongs in the {} ({}), not in the {found}",
        .found.other(),
        .found.other().position()
    )]
    MisplacedAttribute { name: String, found: Component },
    #[error("invalid PKCS#11 URI: attribute \"{name}\" appears more than once")]
    DuplicateAttribute { name: String },
    #[error(
        "invalid PKCS#11 URI: bad percent-encoding at byte {offset} in attribute \"{name}\" (\"%\" must be followed by two hex digits)"
    )]
    BadPercentEncoding { name: String, offset: usize },
    /// `character` is `None` when it belongs to a secret (`pin-value`).
    #[error(
        "invalid PKCS#11 URI: attribute \"{name}\" contains {} at byte {offset}; it must be percent-encoded{}",
        describe_char(.character),
        encoding_hint(.character)
    )]
    UnencodedCharacter {
        name: String,
        offset: usize,
        character: Option<char>,
    },
    #[error("invalid PKCS#11 URI: attribute \"{name}\" is not valid UTF-8 after percent-decoding")]
    NotUtf8 { name: String },
    #[error("invalid PKCS#11 URI: attribute \"slot-id\" is not a decimal number: {value:?}")]
    InvalidSlotId { value: String },
    #[error("invalid PKCS#11 URI: attribute \"slot-id\" does not fit in 64 bits: {value:?}")]
    SlotIdOutOfRange { value: String },
    #[error(
        "invalid PKCS#11 URI: attribute \"library-version\" must be <major> or <major>.<minor> in decimal: {value:?}"
    )]
    InvalidLibraryVersion { value: String },
    #[error(
        "invalid PKCS#11 URI: attribute \"type\" must be one of public, private, cert, secret-key, data: {value:?}"
    )]
    InvalidObjectType { value: String },
    #[error(
        "invalid PKCS#11 URI: both \"pin-source\" and \"pin-value\" are present; use only one (RFC 7512 §2.4)"
    )]
    ConflictingPin,
    #[error(
        "invalid PKCS#11 URI: \"pin-source\" scheme \"{scheme}:\" is not supported (use a file: URI or a plain path)"
    )]
    UnsupportedPinSourceScheme { scheme: String },
    #[error("invalid PKCS#11 URI: \"pin-source\" {value:?} {reason}")]
    InvalidPinSource { value: String, reason: &'static str },
}

fn describe_char(character: &Option<char>) -> String {
    match character {
        Some(c) => format!("{c:?}"),
        None => "a character".to_owned(),
    }
}

fn encoding_hint(character: &Option<char>) -> String {
    let Some(c) = character else {
        return String::new();
    };
    let mut hint = " as ".to_owned();
    for b in c.encode_utf8(&mut [0; 4]).bytes() {
        let _ = write!(hint, "%{b:02X}");
    }
    hint
}

/// A parsed RFC 7512 URI. Text values are stored percent-decoded.
///
/// `Display` gives the canonical form, *including* `pin-value`; use
/// [`Pkcs11Uri::redacted`] for anything that may be logged. `Debug` redacts.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token`: `CK_TOKEN_INFO.label`.
    pub token: Option<String>,
    /// `manufacturer`: `CK_TOKEN_INFO.manufacturerID`.
    pub manufacturer: Option<String>,
    /// `serial`: `CK_TOKEN_INFO.serialNumber`.
    pub serial: Option<String>,
    /// `model`: `CK_TOKEN_INFO.model`.
    pub model: Option<String>,
    /// `library-manufacturer`: `CK_INFO.manufacturerID`.
    pub library_manufacturer: Option<String>,
    /// `library-description`: `CK_INFO.libraryDescription`.
    pub library_description: Option<String>,
    /// `library-version`: `CK_INFO.libraryVersion` as `major[.minor]`.
    pub library_version: Option<String>,
    /// `slot-description`: `CK_SLOT_INFO.slotDescription`.
    pub slot_description: Option<String>,
    /// `slot-manufacturer`: `CK_SLOT_INFO.manufacturerID`.
    pub slot_manufacturer: Option<String>,
    /// `slot-id`: `CK_SLOT_ID`.
    pub slot_id: Option<u64>,
    /// `object`: `CKA_LABEL`.
    pub object: Option<String>,
    /// `id`: raw `CKA_ID` bytes.
    pub id: Option<Vec<u8>>,
    /// `type`: `CKA_CLASS`.
    pub object_type: Option<ObjectType>,
    /// `x-…` path attributes in URI order; names are unique.
    pub vendor_path: Vec<(String, String)>,
    /// `module-path`: the PKCS#11 library to load.
    pub module_path: Option<PathBuf>,
    /// `module-name`: the library's name without path or suffix.
    pub module_name: Option<String>,
    /// `pin-source`: where to read the PIN, see [`Pkcs11Uri::pin_source_path`].
    pub pin_source: Option<String>,
    /// `pin-value`: the PIN itself.
    pub pin_value: Option<Zeroizing<String>>,
    /// `x-…` query attributes in URI order; names may repeat (§2.4).
    pub vendor_query: Vec<(String, String)>,
}

impl Pkcs11Uri {
    /// `pkcs11:token=…;object=…;id=…;type=private`.
    #[must_use]
    pub fn new_private_key(token: &str, label: &str, id: &[u8]) -> Self {
        Pkcs11Uri {
            token: Some(token.to_owned()),
            object: Some(label.to_owned()),
            id: Some(id.to_vec()),
            object_type: Some(ObjectType::Private),
            ..Pkcs11Uri::default()
        }
    }

    /// True when no path attribute is set, i.e. the URI selects every object
    /// of every token (query attributes do not count).
    #[must_use]
    pub fn is_empty_path(&self) -> bool {
        self.token.is_none()
            && self.manufacturer.is_none()
            && self.serial.is_none()
            && self.model.is_none()
            && self.library_manufacturer.is_none()
            && self.library_description.is_none()
            && self.library_version.is_none()
            && self.slot_description.is_none()
            && self.slot_manufacturer.is_none()
            && self.slot_id.is_none()
            && self.object.is_none()
            && self.id.is_none()
            && self.object_type.is_none()
            && self.vendor_path.is_empty()
    }

    /// The canonical form with `pin-value=<redacted>`, for logs and messages.
    /// The result is not a parseable URI when a PIN was present.
    #[must_use]
    pub fn redacted(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_canonical(&mut out, true);
        out
    }

    /// The file named by `pin-source`, if any.
    ///
    /// RFC 7512 makes `pin-source` a URI and names `file:` as the common case;
    /// p11-kit also accepts a plain path. Accepted: `file:///abs/path`,
    /// `file://localhost/abs/path`, `file:/abs/path` and a plain (absolute or
    /// relative) path. The value is used as stored, i.e. decoded once as a URI
    /// attribute and not a second time as a `file:` URI. A one-letter
    /// "scheme" is taken as a Windows drive letter, not a scheme.
    ///
    /// # Errors
    ///
    /// A scheme other than `file:`, a `file:` URI naming a remote host or a
    /// relative path, a `|command` source, or an empty value.
    pub fn pin_source_path(&self) -> Result<Option<PathBuf>, UriError> {
        let Some(source) = self.pin_source.as_deref() else {
            return Ok(None);
        };
        let invalid = |reason| UriError::InvalidPinSource {
            value: source.to_owned(),
            reason,
        };
        if source.is_empty() {
            return Err(invalid("is empty"));
        }
        if source.starts_with('|') {
            return Err(invalid("is a command; only files are supported"));
        }
        let Some(scheme) = uri_scheme(source) else {
            return Ok(Some(PathBuf::from(source)));
        };
        if !scheme.eq_ignore_ascii_case("file") {
            return Err(UriError::UnsupportedPinSourceScheme {
                scheme: scheme.to_owned(),
            });
        }
        let rest = &source[scheme.len() + 1..];
        let path = match rest.strip_prefix("//") {
            Some(authority_and_path) => {
                let (host, path) = authority_and_path
                    .find('/')
                    .map_or((authority_and_path, ""), |i| authority_and_path.split_at(i));
                if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                    return Err(invalid(
                        "names a remote host; only local files are supported",
                    ));
                }
                path
            }
            None => rest,
        };
        if !path.starts_with('/') {
            return Err(invalid("must name an absolute path"));
        }
        Ok(Some(PathBuf::from(path)))
    }

    fn write_canonical(&self, out: &mut impl fmt::Write, redact: bool) -> fmt::Result {
        out.write_str(SCHEME)?;
        let mut path = AttrWriter::new(out, None, ';');
        let texts = [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("serial", &self.serial),
            ("model", &self.model),
            ("library-manufacturer", &self.library_manufacturer),
            ("library-description", &self.library_description),
            ("library-version", &self.library_version),
            ("slot-description", &self.slot_description),
            ("slot-manufacturer", &self.slot_manufacturer),
        ];
        for (name, value) in texts {
            if let Some(value) = value {
                path.attr(name, utf8_percent_encode(value, PATH_ENCODE))?;
            }
        }
        if let Some(slot_id) = self.slot_id {
            path.attr("slot-id", slot_id)?;
        }
        if let Some(object) = &self.object {
            path.attr("object", utf8_percent_encode(object, PATH_ENCODE))?;
        }
        if let Some(id) = &self.id {
            path.attr("id", EncodeAll(id))?;
        }
        if let Some(object_type) = self.object_type {
            path.attr("type", object_type)?;
        }
        for (name, value) in &self.vendor_path {
            path.attr(name, utf8_percent_encode(value, PATH_ENCODE))?;
        }

        let mut query = AttrWriter::new(path.out, Some('?'), '&');
        if let Some(module_name) = &self.module_name {
            query.attr(
                "module-name",
                utf8_percent_encode(module_name, QUERY_ENCODE),
            )?;
        }
        if let Some(module_path) = &self.module_path {
            let module_path = module_path.to_string_lossy();
            query.attr(
                "module-path",
                utf8_percent_encode(&module_path, QUERY_ENCODE),
            )?;
        }
        if let Some(pin_source) = &self.pin_source {
            query.attr("pin-source", utf8_percent_encode(pin_source, QUERY_ENCODE))?;
        }
        if let Some(pin) = &self.pin_value {
            if redact {
                query.attr("pin-value", REDACTED)?;
            } else {
                query.attr("pin-value", utf8_percent_encode(pin, QUERY_ENCODE))?;
            }
        }
        for (name, value) in &self.vendor_query {
            if redact && is_secret(name) {
                query.attr(name, REDACTED)?;
            } else {
                query.attr(name, utf8_percent_encode(value, QUERY_ENCODE))?;
            }
        }
        Ok(())
    }

    fn set_path_attr(&mut self, attr: &RawAttr<'_>) -> Result<(), UriError> {
        let name = attr.name.to_ascii_lowercase();
        let text = || attr.decode_text(&name, Component::Path);
        match name.as_str() {
            "token" => set_once(&mut self.token, &name, text),
            "manufacturer" => set_once(&mut self.manufacturer, &name, text),
            "serial" => set_once(&mut self.serial, &name, text),
            "model" => set_once(&mut self.model, &name, text),
            "library-manufacturer" => set_once(&mut self.library_manufacturer, &name, text),
            "library-description" => set_once(&mut self.library_description, &name, text),
            "library-version" => set_once(&mut self.library_version, &name, || {
                parse_library_version(attr.value)
            }),
            "slot-description" => set_once(&mut self.slot_description, &name, text),
            "slot-manufacturer" => set_once(&mut self.slot_manufacturer, &name, text),
            "slot-id" => set_once(&mut self.slot_id, &name, || parse_slot_id(attr.value)),
            "object" => set_once(&mut self.object, &name, text),
            "id" => set_once(&mut self.id, &name, || {
                let mut bytes = attr.decode(&name, Component::Path)?;
                Ok(std::mem::take(&mut *bytes))
            }),
            "type" => set_once(&mut self.object_type, &name, || attr.value.parse()),
            _ if QUERY_ATTRS.contains(&name.as_str()) => Err(UriError::MisplacedAttribute {
                name,
                found: Component::Path,
            }),
            _ => {
                check_vendor_name(attr.name)?;
                if self.vendor_path.iter().any(|(n, _)| n == attr.name) {
                    return Err(UriError::DuplicateAttribute {
                        name: attr.name.to_owned(),
                    });
                }
                let value = attr.decode_text(attr.name, Component::Path)?;
                self.vendor_path.push((attr.name.to_owned(), value));
                Ok(())
            }
        }
    }

    fn set_query_attr(&mut self, attr: &RawAttr<'_>) -> Result<(), UriError> {
        let name = attr.name.to_ascii_lowercase();
        let text = || attr.decode_text(&name, Component::Query);
        match name.as_str() {
            "module-name" => set_once(&mut self.module_name, &name, text),
            "module-path" => set_once(&mut self.module_path, &name, || text().map(PathBuf::from)),
            "pin-source" => set_once(&mut self.pin_source, &name, text),
            "pin-value" => set_once(&mut self.pin_value, &name, || {
                attr.decode_text(&name, Component::Query)
                    .map(Zeroizing::new)
            }),
            _ if PATH_ATTRS.contains(&name.as_str()) => Err(UriError::MisplacedAttribute {
                name,
                found: Component::Query,
            }),
            _ => {
                check_vendor_name(attr.name)?;
                let value = attr.decode_text(attr.name, Component::Query)?;
                self.vendor_query.push((attr.name.to_owned(), value));
                Ok(())
            }
        }
    }
}

impl FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        if !s
            .get(..SCHEME.len())
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
        {
            return Err(UriError::MissingScheme);
        }
        let rest = &s[SCHEME.len()..];
        // '?' is not a pk11-pchar, so the first one ends the path.
        let (path, query) = match rest.find('?') {
            Some(q) => (&rest[..q], Some((&rest[q + 1..], SCHEME.len() + q + 1))),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        for attr in split_attributes(path, SCHEME.len(), ';')? {
            uri.set_path_attr(&attr)?;
        }
        if let Some((query, offset)) = query {
            for attr in split_attributes(query, offset, '&')? {
                uri.set_query_attr(&attr)?;
            }
        }
        if uri.pin_source.is_some() && uri.pin_value.is_some() {
            return Err(UriError::ConflictingPin);
        }
        Ok(uri)
    }
}

/// Canonical form: path attributes in a fixed order, then the query. Values
/// are percent-encoded where the grammar requires it (plus `=`, `&`, `?`,
/// `|`); `id` is always fully encoded. `parse(display(x)) == x` for every `x`
/// that [`FromStr`] could have produced.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_canonical(f, false)
    }
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured so that a new field cannot bypass the redaction review.
        let Pkcs11Uri {
            token,
            manufacturer,
            serial,
            model,
            library_manufacturer,
            library_description,
            library_version,
            slot_description,
            slot_manufacturer,
            slot_id,
            object,
            id,
            object_type,
            vendor_path,
            module_path,
            module_name,
            pin_source,
            pin_value,
            vendor_query,
        } = self;
        f.debug_struct("Pkcs11Uri")
            .field("token", token)
            .field("manufacturer", manufacturer)
            .field("serial", serial)
            .field("model", model)
            .field("library_manufacturer", library_manufacturer)
            .field("library_description", library_description)
            .field("library_version", library_version)
            .field("slot_description", slot_description)
            .field("slot_manufacturer", slot_manufacturer)
            .field("slot_id", slot_id)
            .field("object", object)
            .field("id", id)
            .field("object_type", object_type)
            .field("vendor_path", vendor_path)
            .field("module_path", module_path)
            .field("module_name", module_name)
            .field("pin_source", pin_source)
            .field("pin_value", &pin_value.as_ref().map(|_| REDACTED))
            .field("vendor_query", &RedactedVendor(vendor_query))
            .finish()
    }
}

struct RedactedVendor<'a>(&'a [(String, String)]);

impl fmt::Debug for RedactedVendor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, value)| {
                (
                    name,
                    if is_secret(name) {
                        REDACTED
                    } else {
                        value.as_str()
                    },
                )
            }))
            .finish()
    }
}

/// `x-pin-value` was the PIN attribute in the drafts that became RFC 7512;
/// a vendor attribute of that name is treated as a secret.
fn is_secret(name: &str) -> bool {
    name.eq_ignore_ascii_case("pin-value") || name.eq_ignore_ascii_case("x-pin-value")
}

/// Writes `name=value` pairs, `lead` before the first and `sep` between.
struct AttrWriter<'a, W: fmt::Write> {
    out: &'a mut W,
    lead: Option<char>,
    sep: char,
    first: bool,
}

impl<'a, W: fmt::Write> AttrWriter<'a, W> {
    fn new(out: &'a mut W, lead: Option<char>, sep: char) -> Self {
        AttrWriter {
            out,
            lead,
            sep,
            first: true,
        }
    }

    fn attr(&mut self, name: &str, value: impl fmt::Display) -> fmt::Result {
        match (self.first, self.lead) {
            (true, Some(lead)) => self.out.write_char(lead)?,
            (true, None) => {}
            (false, _) => self.out.write_char(self.sep)?,
        }
        self.first = false;
        write!(self.out, "{name}={value}")
    }
}

/// Percent-encodes every byte (for `id`), uppercase hex (RFC 3986 §2.1).
struct EncodeAll<'a>(&'a [u8]);

impl fmt::Display for EncodeAll<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "%{b:02X}"))
    }
}

/// One `name=value` with the value still encoded.
struct RawAttr<'a> {
    name: &'a str,
    value: &'a str,
    /// Offset of `value` in the whole URI.
    value_offset: usize,
}

impl RawAttr<'_> {
    /// Percent-decodes the value, rejecting characters `component` does not
    /// allow unencoded. The buffer is zeroized on drop since it may be a PIN.
    fn decode(&self, name: &str, component: Component) -> Result<Zeroizing<Vec<u8>>, UriError> {
        let bytes = self.value.as_bytes();
        // Decoding never grows, so the buffer never reallocates (and never
        // leaves a copy of a PIN behind in freed memory).
        let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let byte = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| Some(hex_digit(hex[0])? << 4 | hex_digit(hex[1])?));
                let Some(byte) = byte else {
                    return Err(UriError::BadPercentEncoding {
                        name: name.to_owned(),
                        offset: self.value_offset + i,
                    });
                };
                out.push(byte);
                i += 3;
            } else if component.allows(b) {
                out.push(b);
                i += 1;
            } else {
                // Every byte before `i` was ASCII, so `i` is a char boundary.
                let character = if is_secret(name) {
                    None
                } else {
                    self.value[i..].chars().next()
                };
                return Err(UriError::UnencodedCharacter {
                    name: name.to_owned(),
                    offset: self.value_offset + i,
                    character,
                });
            }
        }
        Ok(out)
    }

    fn decode_text(&self, name: &str, component: Component) -> Result<String, UriError> {
        let mut bytes = self.decode(name, component)?;
        String::from_utf8(std::mem::take(&mut *bytes)).map_err(|err| {
            err.into_bytes().zeroize();
            UriError::NotUtf8 {
                name: name.to_owned(),
            }
        })
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Splits a path or query component into attributes. An empty component has
/// none; an empty attribute inside a non-empty one is an error (§2.3 ABNF).
fn split_attributes(component: &str, base: usize, sep: char) -> Result<Vec<RawAttr<'_>>, UriError> {
    let mut attrs = Vec::new();
    if component.is_empty() {
        return Ok(attrs);
    }
    let mut offset = base;
    for piece in component.split(sep) {
        let start = offset;
        offset += piece.len() + sep.len_utf8();
        if piece.is_empty() {
            return Err(UriError::EmptyAttribute {
                offset: start,
                separator: sep,
            });
        }
        let Some(eq) = piece.find('=') else {
            return Err(UriError::MissingEquals { offset: start });
        };
        let name = &piece[..eq];
        // pk11-v-attr-nm-char; every standard name is made of these too.
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(UriError::InvalidAttributeName { offset: start });
        }
        attrs.push(RawAttr {
            name,
            value: &piece[eq + 1..],
            value_offset: start + eq + 1,
        });
    }
    Ok(attrs)
}

fn set_once<T>(
    slot: &mut Option<T>,
    name: &str,
    value: impl FnOnce() -> Result<T, UriError>,
) -> Result<(), UriError> {
    if slot.is_some() {
        return Err(UriError::DuplicateAttribute {
            name: name.to_owned(),
        });
    }
    *slot = Some(value()?);
    Ok(())
}

fn check_vendor_name(name: &str) -> Result<(), UriError> {
    let prefixed = name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-"));
    if prefixed {
        Ok(())
    } else {
        Err(UriError::UnknownAttribute {
            name: name.to_owned(),
        })
    }
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `pk11-slot-id = "slot-id" "=" 1*DIGIT`.
fn parse_slot_id(raw: &str) -> Result<u64, UriError> {
    // Checked first because u64::from_str also takes a leading '+'.
    if !is_decimal(raw) {
        return Err(UriError::InvalidSlotId {
            value: raw.to_owned(),
        });
    }
    raw.parse().map_err(|_| UriError::SlotIdOutOfRange {
        value: raw.to_owned(),
    })
}

/// `pk11-lib-ver = "library-version" "=" 1*DIGIT [ "." 1*DIGIT ]`.
fn parse_library_version(raw: &str) -> Result<String, UriError> {
    let valid = match raw.split_once('.') {
        Some((major, minor)) => is_decimal(major) && is_decimal(minor),
        None => is_decimal(raw),
    };
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(UriError::InvalidLibraryVersion {
            value: raw.to_owned(),
        })
    }
}

/// The RFC 3986 scheme of `s`, if it starts with one of two or more characters.
fn uri_scheme(s: &str) -> Option<&str> {
    let scheme = &s[..s.find(':')?];
    let mut bytes = scheme.bytes();
    let valid = scheme.len() >= 2
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    valid.then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "s3cr3t-PIN-4711";

    fn parse(s: &str) -> Pkcs11Uri {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn err(s: &str) -> String {
        match s.parse::<Pkcs11Uri>() {
            Ok(uri) => panic!("{s:?} should not parse, got {uri:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn round_trips(uri: &Pkcs11Uri) {
        let text = uri.to_string();
        let back: Pkcs11Uri = text
            .parse()
            .unwrap_or_else(|e| panic!("display output {text:?} does not parse: {e}"));
        assert_eq!(&back, uri, "round trip through {text:?}");
        assert_eq!(back.to_string(), text, "display is not canonical");
    }

    // ---- RFC 7512 §3 examples -------------------------------------------

    #[test]
    fn rfc_empty_uri() {
        let uri = parse("pkcs11:");
        assert_eq!(uri, Pkcs11Uri::default());
        assert!(uri.is_empty_path());
        assert_eq!(uri.to_string(), "pkcs11:");
    }

    #[test]
    fn rfc_public_key() {
        let uri = parse("pkcs11:object=my-pubkey;type=public");
        assert_eq!(uri.object.as_deref(), Some("my-pubkey"));
        assert_eq!(uri.object_type, Some(ObjectType::Public));
        assert!(!uri.is_empty_path());
        assert_eq!(uri.to_string(), "pkcs11:object=my-pubkey;type=public");
    }

    #[test]
    fn rfc_private_key_with_pin_source() {
        let uri = parse("pkcs11:object=my-key;type=private?pin-source=file:/etc/token");
        assert_eq!(uri.object.as_deref(), Some("my-key"));
        assert_eq!(uri.object_type, Some(ObjectType::Private));
        assert_eq!(uri.pin_source.as_deref(), Some("file:/etc/token"));
        assert_eq!(
            uri.pin_source_path().unwrap(),
            Some(PathBuf::from("/etc/token"))
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:object=my-key;type=private?pin-source=file:/etc/token"
        );
    }

    #[test]
    fn rfc_full_token_example() {
        let uri = parse(
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;\
             manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;\
             type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=?pin-source=file:/etc/token_pin",
        );
        assert_eq!(uri.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(uri.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(uri.model.as_deref(), Some("1.0"));
        assert_eq!(uri.object.as_deref(), Some("my-certificate"));
        assert_eq!(uri.object_type, Some(ObjectType::Cert));
        assert_eq!(
            uri.id.as_deref(),
            Some(&[0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91][..])
        );
        assert_eq!(uri.serial.as_deref(), Some(""));
        assert_eq!(uri.pin_source.as_deref(), Some("file:/etc/token_pin"));
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;\
             manufacturer=Snake%20Oil,%20Inc.;serial=;model=1.0;object=my-certificate;\
             id=%69%95%3E%5C%F4%BD%EC%91;type=cert?pin-source=file:/etc/token_pin"
        );
    }

    #[test]
    fn rfc_module_name() {
        let uri = parse("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11");
        assert_eq!(uri.module_name.as_deref(), Some("mypkcs11"));
        assert_eq!(uri.object.as_deref(), Some("my-sign-key"));
    }

    #[test]
    fn rfc_module_path() {
        let uri = parse("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1");
        assert_eq!(
            uri.module_path,
            Some(PathBuf::from("/mnt/libmypkcs11.so.1"))
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1"
        );
    }

    #[test]
    fn rfc_pin_value() {
        let uri = parse(
            "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin",
        );
        assert_eq!(uri.token.as_deref(), Some("Software PKCS#11 softtoken"));
        assert_eq!(
            uri.pin_value.as_deref().map(String::as_str),
            Some("the-pin")
        );
        assert!(uri.to_string().ends_with("?pin-value=the-pin"));
    }

    #[test]
    fn rfc_slot_description() {
        let uri = parse("pkcs11:slot-description=Sun%20Metaslot");
        assert_eq!(uri.slot_description.as_deref(), Some("Sun Metaslot"));
    }

    #[test]
    fn rfc_library_attributes() {
        let uri = parse(
            "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;\
             library-description=Soft%20Token%20Library;library-version=1.23",
        );
        assert_eq!(uri.library_manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(
            uri.library_description.as_deref(),
            Some("Soft Token Library")
        );
        assert_eq!(uri.library_version.as_deref(), Some("1.23"));
        assert_eq!(
            parse("pkcs11:library-version=3").library_version.as_deref(),
            Some("3")
        );
    }

    #[test]
    fn rfc_percent_and_semicolon_in_token() {
        let uri = parse(
            "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
        );
        assert_eq!(uri.token.as_deref(), Some("A name with a substring %;"));
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert"
        );
    }

    #[test]
    fn rfc_utf8_token() {
        let uri = parse(
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert",
        );
        assert_eq!(
            uri.token.as_deref(),
            Some("Name with a small A with acute: \u{e1}")
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert"
        );
    }

    #[test]
    fn rfc_vendor_example_needs_x_prefix() {
        // The RFC's own example uses unprefixed vendor names; we require "x-".
        assert_eq!(
            err(
                "pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a\
                 ?pin-source=file:/etc/token_pin&vendor-bbb=value-b"
            ),
            "invalid PKCS#11 URI: unknown attribute \"vendor-aaa\" (vendor attributes must start with \"x-\")"
        );
        let uri = parse(
            "pkcs11:token=my-token;object=my-certificate;type=cert;x-aaa=value-a\
             ?pin-source=file:/etc/token_pin&x-bbb=value-b",
        );
        assert_eq!(
            uri.vendor_path,
            [("x-aaa".to_owned(), "value-a".to_owned())]
        );
        assert_eq!(
            uri.vendor_query,
            [("x-bbb".to_owned(), "value-b".to_owned())]
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=my-token;object=my-certificate;type=cert;x-aaa=value-a\
             ?pin-source=file:/etc/token_pin&x-bbb=value-b"
        );
    }

    #[test]
    fn rfc_examples_round_trip() {
        for s in [
            "pkcs11:",
            "pkcs11:object=my-pubkey;type=public",
            "pkcs11:object=my-key;type=private?pin-source=file:/etc/token",
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;\
             model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=\
             ?pin-source=file:/etc/token_pin",
            "pkcs11:object=my-sign-key;type=private?module-name=mypkcs11",
            "pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1",
            "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin",
            "pkcs11:slot-description=Sun%20Metaslot",
            "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;\
             library-version=1.23",
            "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
            "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert",
            "pkcs11:token=my-token;object=my-certificate;type=cert;x-aaa=value-a\
             ?pin-source=file:/etc/token_pin&x-bbb=value-b",
        ] {
            round_trips(&parse(s));
        }
    }

    // ---- URIs real tools emit ---------------------------------------------

    #[test]
    fn p11tool_and_cosign_style_uris() {
        let uri = parse(
            "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;serial=1a2b3c4d5e6f7a8b;\
             token=imgseal;id=%01%a2;object=image-signing;type=private",
        );
        assert_eq!(uri.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(uri.id.as_deref(), Some(&[0x01, 0xa2][..]));
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=imgseal;manufacturer=SoftHSM%20project;serial=1a2b3c4d5e6f7a8b;\
             model=SoftHSM%20v2;object=image-signing;id=%01%A2;type=private"
        );

        let uri = parse(
            "pkcs11:token=mytoken;slot-id=0;object=mykey\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234",
        );
        assert_eq!(uri.slot_id, Some(0));
        assert_eq!(
            uri.module_path,
            Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(uri.pin_value.as_deref().map(String::as_str), Some("1234"));
    }

    #[test]
    fn scheme_names_and_type_are_case_insensitive() {
        let uri = parse("PKCS11:Object=k;TYPE=Secret-Key;Slot-ID=18446744073709551615");
        assert_eq!(uri.object.as_deref(), Some("k"));
        assert_eq!(uri.object_type, Some(ObjectType::SecretKey));
        assert_eq!(uri.slot_id, Some(u64::MAX));
        assert_eq!(
            uri.to_string(),
            "pkcs11:slot-id=18446744073709551615;object=k;type=secret-key"
        );
    }

    #[test]
    fn unencoded_reserved_characters_the_grammar_allows() {
        // "&" and "=" are pk11-pchar; "/", "?" and "|" are pk11-qchar.
        let uri = parse("pkcs11:object=a&b=c:[]@!$'()*+,~?x-q=/p?q|r=s");
        assert_eq!(uri.object.as_deref(), Some("a&b=c:[]@!$'()*+,~"));
        assert_eq!(
            uri.vendor_query,
            [("x-q".to_owned(), "/p?q|r=s".to_owned())]
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:object=a%26b%3Dc:[]@!$'()*+,~?x-q=/p%3Fq%7Cr%3Ds"
        );
        round_trips(&uri);
    }

    #[test]
    fn empty_query_and_empty_values() {
        let uri = parse("pkcs11:object=a?");
        assert_eq!(uri, parse("pkcs11:object=a"));
        assert_eq!(parse("pkcs11:?"), Pkcs11Uri::default());
        let uri = parse("pkcs11:object=;id=");
        assert_eq!(uri.object.as_deref(), Some(""));
        assert_eq!(uri.id.as_deref(), Some(&[][..]));
        assert_eq!(uri.to_string(), "pkcs11:object=;id=");
    }

    #[test]
    fn id_may_hold_any_bytes_and_unencoded_characters() {
        assert_eq!(
            parse("pkcs11:id=%00%FF%fe").id,
            Some(vec![0x00, 0xff, 0xfe])
        );
        assert_eq!(parse("pkcs11:id=ab%01").id, Some(b"ab\x01".to_vec()));
    }

    #[test]
    fn vendor_attributes() {
        let uri = parse("pkcs11:X-Foo=1;x-bar=%20?x-a=1&x-a=2&x-b=3");
        assert_eq!(
            uri.vendor_path,
            [
                ("X-Foo".to_owned(), "1".to_owned()),
                ("x-bar".to_owned(), " ".to_owned())
            ]
        );
        // §2.4 allows vendor query attributes to repeat; order is kept.
        assert_eq!(
            uri.vendor_query,
            [
                ("x-a".to_owned(), "1".to_owned()),
                ("x-a".to_owned(), "2".to_owned()),
                ("x-b".to_owned(), "3".to_owned())
            ]
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:X-Foo=1;x-bar=%20?x-a=1&x-a=2&x-b=3"
        );
        assert!(
            !Pkcs11Uri {
                vendor_path: uri.vendor_path.clone(),
                ..Pkcs11Uri::default()
            }
            .is_empty_path()
        );
    }

    #[test]
    fn module_name_and_module_path_together_are_allowed() {
        let uri = parse("pkcs11:?module-name=softhsm2&module-path=/usr/lib/libsofthsm2.so");
        assert!(uri.is_empty_path());
        assert_eq!(uri.module_name.as_deref(), Some("softhsm2"));
    }

    // ---- Display ------------------------------------------------------------

    #[test]
    fn display_canonical_order() {
        let uri = Pkcs11Uri {
            token: Some("t".into()),
            manufacturer: Some("m".into()),
            serial: Some("s".into()),
            model: Some("mo".into()),
            library_manufacturer: Some("lm".into()),
            library_description: Some("ld".into()),
            library_version: Some("2.40".into()),
            slot_description: Some("sd".into()),
            slot_manufacturer: Some("sm".into()),
            slot_id: Some(3),
            object: Some("o".into()),
            id: Some(vec![1, 0xa2]),
            object_type: Some(ObjectType::Data),
            vendor_path: vec![("x-p".into(), "v".into())],
            module_path: Some("/lib/p11.so".into()),
            module_name: Some("p11".into()),
            pin_source: None,
            pin_value: Some(Zeroizing::new("1234".into())),
            vendor_query: vec![("x-q".into(), "w".into())],
        };
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=t;manufacturer=m;serial=s;model=mo;library-manufacturer=lm;\
             library-description=ld;library-version=2.40;slot-description=sd;\
             slot-manufacturer=sm;slot-id=3;object=o;id=%01%A2;type=data;x-p=v\
             ?module-name=p11&module-path=/lib/p11.so&pin-value=1234&x-q=w"
        );
        round_trips(&uri);
    }

    #[test]
    fn display_encodes_only_where_needed() {
        let uri = Pkcs11Uri {
            object: Some("image-signing".into()),
            ..Pkcs11Uri::default()
        };
        assert_eq!(uri.to_string(), "pkcs11:object=image-signing");

        let uri = Pkcs11Uri {
            object: Some("a b;c?d&e=f/g%h#i\"\u{e9}\n".into()),
            pin_source: Some("file:/etc/pin dir/p&q".into()),
            ..Pkcs11Uri::default()
        };
        assert_eq!(
            uri.to_string(),
            "pkcs11:object=a%20b%3Bc%3Fd%26e%3Df%2Fg%25h%23i%22%C3%A9%0A\
             ?pin-source=file:/etc/pin%20dir/p%26q"
        );
        round_trips(&uri);
    }

    #[test]
    fn id_is_always_fully_encoded() {
        let uri = Pkcs11Uri {
            id: Some(b"AZ09-\x00\xff".to_vec()),
            ..Pkcs11Uri::default()
        };
        assert_eq!(uri.to_string(), "pkcs11:id=%41%5A%30%39%2D%00%FF");
        round_trips(&uri);
    }

    #[test]
    fn new_private_key() {
        let uri = Pkcs11Uri::new_private_key("imgseal", "image signing", &[0x01, 0xa2]);
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=imgseal;object=image%20signing;id=%01%A2;type=private"
        );
        assert_eq!(uri.object_type, Some(ObjectType::Private));
        round_trips(&uri);
    }

    #[test]
    fn object_type_strings() {
        for t in ObjectType::ALL {
            assert_eq!(t.as_str().parse::<ObjectType>().unwrap(), t);
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!("CERT".parse::<ObjectType>().unwrap(), ObjectType::Cert);
        assert_eq!(
            "key".parse::<ObjectType>().unwrap_err().to_string(),
            "invalid PKCS#11 URI: attribute \"type\" must be one of public, private, cert, secret-key, data: \"key\""
        );
    }

    // ---- errors ---------------------------------------------------------------

    #[test]
    fn error_missing_scheme() {
        for s in [
            "",
            "pkcs11",
            "pkcs:object=a",
            "object=a",
            "http://x",
            " pkcs11:",
            "pkcs\u{e9}1:",
        ] {
            assert_eq!(
                err(s),
                "invalid PKCS#11 URI: does not start with \"pkcs11:\"",
                "{s:?}"
            );
        }
    }

    #[test]
    fn error_bad_percent_encoding() {
        assert_eq!(
            err("pkcs11:object=abc%2"),
            "invalid PKCS#11 URI: bad percent-encoding at byte 17 in attribute \"object\" (\"%\" must be followed by two hex digits)"
        );
        assert_eq!(
            err("pkcs11:token=t;id=%0g"),
            "invalid PKCS#11 URI: bad percent-encoding at byte 18 in attribute \"id\" (\"%\" must be followed by two hex digits)"
        );
        assert_eq!(
            err("pkcs11:?module-name=%"),
            "invalid PKCS#11 URI: bad percent-encoding at byte 20 in attribute \"module-name\" (\"%\" must be followed by two hex digits)"
        );
        assert_eq!(
            err("pkcs11:x-v=%%41"),
            "invalid PKCS#11 URI: bad percent-encoding at byte 11 in attribute \"x-v\" (\"%\" must be followed by two hex digits)"
        );
    }

    #[test]
    fn error_unencoded_characters() {
        assert_eq!(
            err("pkcs11:object=my key;type=private"),
            "invalid PKCS#11 URI: attribute \"object\" contains ' ' at byte 16; it must be percent-encoded as %20"
        );
        assert_eq!(
            err("pkcs11:token=\u{e1}"),
            "invalid PKCS#11 URI: attribute \"token\" contains '\u{e1}' at byte 13; it must be percent-encoded as %C3%A1"
        );
        assert_eq!(
            err("pkcs11:object=a/b"),
            "invalid PKCS#11 URI: attribute \"object\" contains '/' at byte 15; it must be percent-encoded as %2F"
        );
        assert_eq!(
            err("pkcs11:object=a#frag"),
            "invalid PKCS#11 URI: attribute \"object\" contains '#' at byte 15; it must be percent-encoded as %23"
        );
        assert_eq!(
            err("pkcs11:object=a\n"),
            "invalid PKCS#11 URI: attribute \"object\" contains '\\n' at byte 15; it must be percent-encoded as %0A"
        );
        assert_eq!(
            err("pkcs11:?module-path=/a;b"),
            "invalid PKCS#11 URI: attribute \"module-path\" contains ';' at byte 22; it must be percent-encoded as %3B"
        );
    }

    #[test]
    fn error_not_utf8() {
        assert_eq!(
            err("pkcs11:object=%FF"),
            "invalid PKCS#11 URI: attribute \"object\" is not valid UTF-8 after percent-decoding"
        );
        assert_eq!(
            err("pkcs11:?module-path=/%C3"),
            "invalid PKCS#11 URI: attribute \"module-path\" is not valid UTF-8 after percent-decoding"
        );
    }

    #[test]
    fn error_duplicate_attribute() {
        assert_eq!(
            err("pkcs11:object=a;type=cert;object=b"),
            "invalid PKCS#11 URI: attribute \"object\" appears more than once"
        );
        assert_eq!(
            err("pkcs11:object=a;OBJECT=a"),
            "invalid PKCS#11 URI: attribute \"object\" appears more than once"
        );
        assert_eq!(
            err("pkcs11:slot-id=1;slot-id=1"),
            "invalid PKCS#11 URI: attribute \"slot-id\" appears more than once"
        );
        assert_eq!(
            err("pkcs11:x-a=1;x-a=2"),
            "invalid PKCS#11 URI: attribute \"x-a\" appears more than once"
        );
        assert_eq!(
            err("pkcs11:?module-name=a&module-name=b"),
            "invalid PKCS#11 URI: attribute \"module-name\" appears more than once"
        );
    }

    #[test]
    fn error_unknown_attribute() {
        assert_eq!(
            err("pkcs11:foo=bar"),
            "invalid PKCS#11 URI: unknown attribute \"foo\" (vendor attributes must start with \"x-\")"
        );
        assert_eq!(
            err("pkcs11:object=a?pin=1"),
            "invalid PKCS#11 URI: unknown attribute \"pin\" (vendor attributes must start with \"x-\")"
        );
        assert_eq!(
            err("pkcs11:label=a"),
            "invalid PKCS#11 URI: unknown attribute \"label\" (vendor attributes must start with \"x-\")"
        );
    }

    #[test]
    fn error_misplaced_attribute() {
        assert_eq!(
            err("pkcs11:object=a;pin-value=1234"),
            "invalid PKCS#11 URI: attribute \"pin-value\" belongs in the query (after \"?\"), not in the path"
        );
        assert_eq!(
            err("pkcs11:?object=a"),
            "invalid PKCS#11 URI: attribute \"object\" belongs in the path (before \"?\"), not in the query"
        );
    }

    #[test]
    fn error_empty_attribute() {
        assert_eq!(
            err("pkcs11:object=a;;type=cert"),
            "invalid PKCS#11 URI: empty attribute at byte 16 (stray \";\")"
        );
        assert_eq!(
            err("pkcs11:object=a;"),
            "invalid PKCS#11 URI: empty attribute at byte 16 (stray \";\")"
        );
        assert_eq!(
            err("pkcs11:;"),
            "invalid PKCS#11 URI: empty attribute at byte 7 (stray \";\")"
        );
        assert_eq!(
            err("pkcs11:?&"),
            "invalid PKCS#11 URI: empty attribute at byte 8 (stray \"&\")"
        );
        assert_eq!(
            err("pkcs11:?module-name=a&"),
            "invalid PKCS#11 URI: empty attribute at byte 22 (stray \"&\")"
        );
    }

    #[test]
    fn error_missing_equals_and_bad_names() {
        assert_eq!(
            err("pkcs11:object"),
            "invalid PKCS#11 URI: attribute at byte 7 has no \"=\" (expected name=value)"
        );
        assert_eq!(
            err("pkcs11:object=a?1234"),
            "invalid PKCS#11 URI: attribute at byte 16 has no \"=\" (expected name=value)"
        );
        assert_eq!(
            err("pkcs11:obj ect=a"),
            "invalid PKCS#11 URI: invalid attribute name at byte 7 (names are letters, digits, \"-\" and \"_\")"
        );
        assert_eq!(
            err("pkcs11:object=a;=b"),
            "invalid PKCS#11 URI: invalid attribute name at byte 16 (names are letters, digits, \"-\" and \"_\")"
        );
        // "pkcs11://" is not a path of attributes.
        assert_eq!(
            err("pkcs11://token=a"),
            "invalid PKCS#11 URI: invalid attribute name at byte 7 (names are letters, digits, \"-\" and \"_\")"
        );
    }

    #[test]
    fn error_slot_id() {
        for value in ["abc", "", "-1", "+1", "1.0", "%31", " 1", "0x10"] {
            assert_eq!(
                err(&format!("pkcs11:slot-id={value}")),
                format!(
                    "invalid PKCS#11 URI: attribute \"slot-id\" is not a decimal number: {value:?}"
                )
            );
        }
        assert_eq!(
            err("pkcs11:slot-id=18446744073709551616"),
            "invalid PKCS#11 URI: attribute \"slot-id\" does not fit in 64 bits: \"18446744073709551616\""
        );
        assert_eq!(parse("pkcs11:slot-id=007").slot_id, Some(7));
    }

    #[test]
    fn error_library_version() {
        for value in ["", "1.", ".1", "1.2.3", "v1", "1%2E2", "1,2"] {
            assert_eq!(
                err(&format!("pkcs11:library-version={value}")),
                format!(
                    "invalid PKCS#11 URI: attribute \"library-version\" must be <major> or <major>.<minor> in decimal: {value:?}"
                )
            );
        }
    }

    #[test]
    fn error_object_type() {
        for value in ["", "foo", "%70ublic", "privat", "secret_key"] {
            assert_eq!(
                err(&format!("pkcs11:type={value}")),
                format!(
                    "invalid PKCS#11 URI: attribute \"type\" must be one of public, private, cert, secret-key, data: {value:?}"
                )
            );
        }
    }

    #[test]
    fn error_pin_source_and_pin_value() {
        assert_eq!(
            err("pkcs11:object=k?pin-source=file:/etc/pin&pin-value=1234"),
            "invalid PKCS#11 URI: both \"pin-source\" and \"pin-value\" are present; use only one (RFC 7512 §2.4)"
        );
    }

    #[test]
    fn error_messages_are_one_line() {
        for s in [
            "pkcs11:object=a\nb",
            "pkcs11:slot-id=1\n2",
            "pkcs11:type=a\r\nb",
            "pkcs11:library-version=\n",
            "pkcs11:?pin-source=|x\n",
        ] {
            let message = match s.parse::<Pkcs11Uri>() {
                Ok(uri) => uri.pin_source_path().unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(!message.contains(['\n', '\r']), "{message:?}");
        }
    }

    // ---- pin-source -----------------------------------------------------------

    fn pin_source(value: &str) -> Result<Option<PathBuf>, UriError> {
        Pkcs11Uri {
            pin_source: Some(value.to_owned()),
            ..Pkcs11Uri::default()
        }
        .pin_source_path()
    }

    #[test]
    fn pin_source_paths() {
        assert_eq!(Pkcs11Uri::default().pin_source_path().unwrap(), None);
        for (value, path) in [
            ("file:///etc/pin", "/etc/pin"),
            ("file:/etc/pin", "/etc/pin"),
            ("FILE:/etc/pin", "/etc/pin"),
            ("file://localhost/etc/pin", "/etc/pin"),
            ("/etc/pin", "/etc/pin"),
            ("pins/token.pin", "pins/token.pin"),
            ("pins/a:b", "pins/a:b"),
        ] {
            assert_eq!(
                pin_source(value).unwrap(),
                Some(PathBuf::from(path)),
                "{value}"
            );
        }
        let uri = parse("pkcs11:?pin-source=file:///run/secrets/hsm%20pin");
        assert_eq!(
            uri.pin_source_path().unwrap(),
            Some(PathBuf::from("/run/secrets/hsm pin"))
        );
    }

    #[test]
    fn pin_source_errors() {
        assert_eq!(
            pin_source("https://vault/pin").unwrap_err().to_string(),
            "invalid PKCS#11 URI: \"pin-source\" scheme \"https:\" is not supported (use a file: URI or a plain path)"
        );
        assert_eq!(
            pin_source("env:HSM_PIN").unwrap_err().to_string(),
            "invalid PKCS#11 URI: \"pin-source\" scheme \"env:\" is not supported (use a file: URI or a plain path)"
        );
        assert_eq!(
            pin_source("file://server/etc/pin").unwrap_err().to_string(),
            "invalid PKCS#11 URI: \"pin-source\" \"file://server/etc/pin\" names a remote host; only local files are supported"
        );
        assert_eq!(
            pin_source("file:etc/pin").unwrap_err().to_string(),
            "invalid PKCS#11 URI: \"pin-source\" \"file:etc/pin\" must name an absolute path"
        );
        assert_eq!(
            pin_source("file://").unwrap_err().to_string(),
            "invalid PKCS#11 URI: \"pin-source\" \"file://\" must name an absolute path"
        );
        assert_eq!(
            pin_source("|/usr/bin/get-pin").unwrap_err().to_string(),
            "invalid PKCS#11 URI: \"pin-source\" \"|/usr/bin/get-pin\" is a command; only files are supported"
        );
        assert_eq!(
            pin_source("").unwrap_err().to_string(),
            "invalid PKCS#11 URI: \"pin-source\" \"\" is empty"
        );
    }

    // ---- secrets ----------------------------------------------------------------

    fn uri_with_pin() -> Pkcs11Uri {
        parse(&format!(
            "pkcs11:token=imgseal;object=image-signing;type=private\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value={PIN}&x-pin-value={PIN}&x-other=v"
        ))
    }

    #[test]
    fn debug_redacts_pin() {
        let uri = uri_with_pin();
        let debug = format!("{uri:?}");
        let pretty = format!("{uri:#?}");
        for text in [&debug, &pretty] {
            assert!(!text.contains(PIN), "{text}");
            assert!(text.contains("image-signing"), "{text}");
        }
        assert!(debug.contains("pin_value: Some(\"<redacted>\")"), "{debug}");
        assert!(
            debug.contains("(\"x-pin-value\", \"<redacted>\")"),
            "{debug}"
        );
        assert!(debug.contains("(\"x-other\", \"v\")"), "{debug}");
        // Display is the exact URI, PIN included.
        assert!(uri.to_string().contains(&format!("pin-value={PIN}")));
    }

    #[test]
    fn redacted_hides_pin() {
        let uri = uri_with_pin();
        assert_eq!(
            uri.redacted(),
            "pkcs11:token=imgseal;object=image-signing;type=private\
             ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=<redacted>\
             &x-pin-value=<redacted>&x-other=v"
        );
        let no_pin = parse("pkcs11:object=k?pin-source=file:/etc/pin");
        assert_eq!(no_pin.redacted(), no_pin.to_string());
    }

    #[test]
    fn errors_never_contain_the_pin() {
        let pin_with_space = "s3cr3t PIN 4711";
        for s in [
            format!("pkcs11:object=k?pin-value={PIN}%ZZ"),
            format!("pkcs11:object=k?pin-value={PIN}%"),
            format!("pkcs11:object=k?pin-value={pin_with_space}"),
            format!("pkcs11:object=k?pin-value={PIN}#"),
            format!("pkcs11:object=k?x-pin-value={pin_with_space}"),
            format!("pkcs11:object=k?pin-value={PIN}%FF"),
            format!("pkcs11:object=k?pin-value={PIN}&pin-value={PIN}"),
            format!("pkcs11:object=k;pin-value={PIN}"),
            format!("pkcs11:object=k?pin-source=/p&pin-value={PIN}"),
            format!("pkcs11:object=k?{PIN}"),
            format!("pkcs11:object=k?pin value={PIN}"),
            format!("pkcs11:object=k?pin-value={PIN}&bogus=1"),
            format!("pkcs11:object=k?pin-value={PIN}&"),
        ] {
            let e = s.parse::<Pkcs11Uri>().unwrap_err();
            for text in [e.to_string(), format!("{e:?}")] {
                assert!(!text.contains(PIN), "{text}");
                assert!(!text.contains(pin_with_space), "{text}");
                assert!(!text.contains("' '"), "{text}");
            }
        }
        assert_eq!(
            err(&format!("pkcs11:?pin-value={pin_with_space}")),
            "invalid PKCS#11 URI: attribute \"pin-value\" contains a character at byte 24; it must be percent-encoded"
        );
    }

    // ---- property-style round trip ---------------------------------------------

    /// xorshift64*: deterministic, dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn chance(&mut self) -> bool {
            self.next() & 1 == 1
        }

        fn bytes(&mut self, max_len: usize) -> Vec<u8> {
            let len = self.below(max_len + 1);
            (0..len).map(|_| self.next() as u8).collect()
        }

        /// Any ASCII (controls and delimiters included) plus some non-ASCII.
        fn text(&mut self, max_len: usize) -> String {
            const EXTRA: [char; 6] = [
                '\u{e1}',
                '\u{20ac}',
                '\u{1f511}',
                '\u{fffd}',
                '\u{7f}',
                '\u{a0}',
            ];
            let len = self.below(max_len + 1);
            (0..len)
                .map(|_| {
                    if self.below(8) == 0 {
                        EXTRA[self.below(EXTRA.len())]
                    } else {
                        char::from(self.below(128) as u8)
                    }
                })
                .collect()
        }

        fn maybe_text(&mut self, max_len: usize) -> Option<String> {
            self.chance().then(|| self.text(max_len))
        }

        fn vendor_name(&mut self) -> String {
            const NAME: &[u8] = b"abcXYZ019-_";
            let len = self.below(6);
            let tail: String = (0..len)
                .map(|_| NAME[self.below(NAME.len())] as char)
                .collect();
            format!("x-{tail}")
        }
    }

    #[test]
    fn generated_uris_round_trip() {
        let mut rng = Rng(0x1d5e_a1c0_ffee_2024);
        for _ in 0..500 {
            let mut vendor_path: Vec<(String, String)> = Vec::new();
            for _ in 0..rng.below(3) {
                let name = rng.vendor_name();
                if !vendor_path.iter().any(|(n, _)| *n == name) {
                    vendor_path.push((name, rng.text(12)));
                }
            }
            let pin_source = rng.maybe_text(20);
            let uri = Pkcs11Uri {
                token: rng.maybe_text(32),
                manufacturer: rng.maybe_text(32),
                serial: rng.maybe_text(16),
                model: rng.maybe_text(16),
                library_manufacturer: rng.maybe_text(8),
                library_description: rng.maybe_text(8),
                library_version: rng
                    .chance()
                    .then(|| format!("{}.{}", rng.below(256), rng.below(256))),
                slot_description: rng.maybe_text(8),
                slot_manufacturer: rng.maybe_text(8),
                slot_id: rng.chance().then(|| rng.next()),
                object: rng.maybe_text(48),
                id: rng.chance().then(|| rng.bytes(40)),
                object_type: rng
                    .chance()
                    .then(|| ObjectType::ALL[rng.below(ObjectType::ALL.len())]),
                vendor_path,
                module_path: rng
                    .chance()
                    .then(|| PathBuf::from(format!("/opt/{}", rng.text(16)))),
                module_name: rng.maybe_text(12),
                pin_value: if pin_source.is_none() {
                    rng.maybe_text(16).map(Zeroizing::new)
                } else {
                    None
                },
                pin_source,
                vendor_query: (0..rng.below(3))
                    .map(|_| (rng.vendor_name(), rng.text(12)))
                    .collect(),
            };
            round_trips(&uri);
            if let Some(pin) = uri.pin_value.as_deref().filter(|p| p.len() >= 4) {
                assert!(!format!("{uri:?}").contains(&format!("{pin:?}")));
            }
        }
    }

    #[test]
    fn generated_labels_and_ids_round_trip() {
        let mut rng = Rng(42);
        for _ in 0..500 {
            let label = rng.text(64);
            let id = rng.bytes(64);
            let uri = Pkcs11Uri::new_private_key(&rng.text(32), &label, &id);
            round_trips(&uri);
            let back: Pkcs11Uri = uri.to_string().parse().unwrap();
            assert_eq!(back.object.as_deref(), Some(label.as_str()));
            assert_eq!(back.id.as_deref(), Some(id.as_slice()));
        }
    }
}
