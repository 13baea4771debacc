//! The four `img_signature*` image properties: reading them from what users
//! have (a properties object, `openstack image show -f json`, the Glance API's
//! image record), checking them as Glance does, and printing them.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use crate::algorithms::{GlanceKeyType, HashMethod};
use crate::error::{Error, Result};

pub const SIGNATURE: &str = "img_signature";
pub const HASH_METHOD: &str = "img_signature_hash_method";
pub const KEY_TYPE: &str = "img_signature_key_type";
pub const CERT_UUID: &str = "img_signature_certificate_uuid";
pub const ALL: [&str; 4] = [SIGNATURE, HASH_METHOD, KEY_TYPE, CERT_UUID];

/// The properties as found, unchecked. A missing one is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawProperties {
    pub signature: Option<String>,
    pub hash_method: Option<String>,
    pub key_type: Option<String>,
    pub cert_uuid: Option<String>,
}

/// The properties after Glance's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSignature {
    pub signature: Vec<u8>,
    pub hash_method: HashMethod,
    pub key_type: GlanceKeyType,
    pub cert_uuid: String,
}

impl RawProperties {
    /// Reads the properties from JSON text. Accepts the properties object
    /// itself, the Glance API's image record (properties at the top level), and
    /// `openstack image show -f json` (a `properties` object, or the string
    /// `k='v', …` older clients print). `origin` names the source in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Error::bad_input(format!(
                "{origin}: not valid JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                json_reason(&e)
            ))
        })?;
        let Value::Object(top) = value else {
            return Err(Error::bad_input(format!(
                "{origin}: expected a JSON object holding the img_signature properties"
            )));
        };
        let has_any = |m: &serde_json::Map<String, Value>| ALL.iter().any(|k| m.contains_key(*k));
        let map: BTreeMap<String, Value> = if has_any(&top) {
            top.into_iter().collect()
        } else {
            match top.get("properties") {
                Some(Value::Object(props)) => props.clone().into_iter().collect(),
                Some(Value::String(s)) => parse_properties_string(s)
                    .map_err(|e| Error::bad_input(format!("{origin}: {e}")))?
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
                Some(_) => {
                    return Err(Error::bad_input(format!(
                        "{origin}: \"properties\" is neither an object nor a string"
                    )));
                }
                None => BTreeMap::new(),
            }
        };
        let field = |name: &str| -> Result<Option<String>> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(Error::bad_input(format!(
                    "{origin}: property {name} must be a string, found {}",
                    json_type(other)
                ))),
            }
        };
        Ok(RawProperties {
            signature: field(SIGNATURE)?,
            hash_method: field(HASH_METHOD)?,
            key_type: field(KEY_TYPE)?,
            cert_uuid: field(CERT_UUID)?,
        })
    }

    /// Glance's checks, strictly: every property present, exact names, and
    /// canonical base64 (cursive silently drops stray characters; we refuse).
    pub fn check(&self, origin: &str) -> Result<ImageSignature> {
        let missing: Vec<&str> = [
            (SIGNATURE, &self.signature),
            (HASH_METHOD, &self.hash_method),
            (KEY_TYPE, &self.key_type),
            (CERT_UUID, &self.cert_uuid),
        ]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
        if !missing.is_empty() {
            return Err(Error::bad_input(format!(
                "{origin}: missing image propert{} {}",
                if missing.len() == 1 { "y" } else { "ies" },
                missing.join(", ")
            )));
        }
        let signature = decode_signature_strict(self.signature.as_deref().unwrap_or_default())
            .map_err(|e| Error::bad_input(format!("{origin}: {SIGNATURE}: {e}")))?;
        let hash_name = self.hash_method.as_deref().unwrap_or_default();
        let hash_method = HashMethod::from_glance(hash_name).ok_or_else(|| {
            Error::bad_input(format!(
                "{origin}: {HASH_METHOD} \"{}\" is not one of SHA-224, SHA-256, SHA-384, SHA-512 (names are case-sensitive)",
                printable(hash_name)
            ))
        })?;
        let key_name = self.key_type.as_deref().unwrap_or_default();
        let key_type = GlanceKeyType::from_glance(key_name).ok_or_else(|| {
            let names: Vec<String> = GlanceKeyType::all()
                .iter()
                .map(|k| k.glance_name())
                .collect();
            Error::bad_input(format!(
                "{origin}: {KEY_TYPE} \"{}\" is not one of {} (names are case-sensitive)",
                printable(key_name),
                names.join(", ")
            ))
        })?;
        let cert_uuid = self.cert_uuid.clone().unwrap_or_default();
        check_cert_id(&cert_uuid)
            .map_err(|e| Error::bad_input(format!("{origin}: {CERT_UUID}: {e}")))?;
        Ok(ImageSignature {
            signature,
            hash_method,
            key_type,
            cert_uuid,
        })
    }
}

/// A certificate id must be usable as a key-manager id and as a file name in
/// a certificate directory, and must say which certificate it is to whoever
/// reads it: printable ASCII only. Barbican's ids are UUIDs; a free name in
/// another alphabet could look like another id (Cyrillic "а" for Latin "a",
/// full-width "ａ") or be one id in NFC and another in NFD that a normalizing
/// file system stores as one file. ASCII has neither problem, and needs no
/// Unicode tables to check.
pub fn check_cert_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() {
        return Err("the certificate id is empty".into());
    }
    if id.len() > 255 {
        return Err("the certificate id is longer than 255 bytes".into());
    }
    if id == "."
        || id == ".."
        || id
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "the certificate id \"{}\" contains a path separator, space or control character",
            printable(id)
        ));
    }
    if let Some(c) = id.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the certificate id \"{}\" has a character outside printable ASCII (U+{:04X}): ids are ASCII, so that no look-alike letter or Unicode form can pass for another id",
            printable(id),
            c as u32
        ));
    }
    Ok(())
}

/// Standard base64 with padding, nothing else: no whitespace, no stray
/// characters, no missing padding.
pub fn decode_signature_strict(text: &str) -> std::result::Result<Vec<u8>, String> {
    if text.is_empty() {
        return Err("the signature is empty".into());
    }
    if let Some((pos, ch)) = text
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '+' || *c == '/' || *c == '='))
    {
        return Err(format!(
            "not valid base64: character {} at offset {pos}",
            describe_char(ch)
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| match e {
            // Only '=' gets here (other characters are refused above). The
            // crate says "Invalid symbol 61, offset 4."; say which and where
            // as for any other stray character.
            base64::DecodeError::InvalidByte(pos, b) => format!(
                "not valid base64: character {} at offset {pos} (padding goes only at the end)",
                describe_char(b as char)
            ),
            e => format!("not valid base64: {e}"),
        })
}

pub fn encode_signature(sig: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sig)
}

/// The four properties in Glance's names, ready to print.
pub fn property_map(sig: &ImageSignature) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (SIGNATURE, encode_signature(&sig.signature)),
        (HASH_METHOD, sig.hash_method.glance_name().to_string()),
        (KEY_TYPE, sig.key_type.glance_name()),
        (CERT_UUID, sig.cert_uuid.clone()),
    ])
}

/// How `imgseal sign` prints the properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A JSON object of the four properties.
    Json,
    /// `--property k=v` arguments for `openstack image create`.
    Openstack,
    /// `IMG_SIGNATURE=…` lines for a shell or an env file.
    Env,
}

pub fn render(sig: &ImageSignature, format: OutputFormat) -> String {
    let map = property_map(sig);
    match format {
        OutputFormat::Json => serde_json::to_string_pretty(&map).expect("a string map serialises"),
        OutputFormat::Openstack => ALL
            .iter()
            .map(|k| format!("--property {}", shell_quote(&format!("{k}={}", map[k]))))
            .collect::<Vec<_>>()
            .join(" "),
        OutputFormat::Env => ALL
            .iter()
            .map(|k| format!("{}={}", k.to_ascii_uppercase(), shell_quote(&map[k])))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Quotes for POSIX shells only when needed; base64 and Glance names need none.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=_-.,:@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `k1='v1', k2='v2'` as older `openstack image show` prints properties.
/// The format has no escaping: a value holding `', img_signature_…='…` reads
/// as a second signature property, so a signature property that appears
/// twice is refused rather than resolved either way.
fn parse_properties_string(s: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let (value, remaining) = if let Some(stripped) = after.strip_prefix('\'') {
            match stripped.find('\'') {
                Some(end) => (stripped[..end].to_string(), &stripped[end + 1..]),
                None => (stripped.to_string(), ""),
            }
        } else {
            match after.find(", ") {
                Some(end) => (after[..end].to_string(), &after[end..]),
                None => (after.to_string(), ""),
            }
        };
        if ALL.contains(&key.as_str()) && out.contains_key(&key) {
            return Err(format!(
                "{key} appears twice in the \"properties\" string, which has no escaping: use `openstack image show -f json` output with a properties object, or the properties themselves"
            ));
        }
        out.insert(key, value);
        rest = remaining.trim_start_matches([',', ' ']);
    }
    Ok(out)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_reason(e: &serde_json::Error) -> String {
    // serde_json appends " at line X column Y"; we print the position ourselves.
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn describe_char(c: char) -> String {
    match c {
        '\n' => "newline".into(),
        '\r' => "carriage return".into(),
        ' ' => "space".into(),
        '\t' => "tab".into(),
        c if c.is_control() => format!("U+{:04X}", c as u32),
        c => format!("'{c}'"),
    }
}

/// A property value made safe for a one-line message.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_default).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"img_signature": "AAEC", "img_signature_hash_method": "SHA-256",
        "img_signature_key_type": "RSA-PSS", "img_signature_certificate_uuid": "abc-123"}"#;

    #[test]
    fn reads_a_bare_properties_object() {
        let raw = RawProperties::from_json(GOOD, "p.json").unwrap();
        let sig = raw.check("p.json").unwrap();
        assert_eq!(sig.signature, vec![0, 1, 2]);
        assert_eq!(sig.hash_method, HashMethod::Sha256);
        assert_eq!(sig.key_type, GlanceKeyType::RsaPss);
        assert_eq!(sig.cert_uuid, "abc-123");
    }

    #[test]
    fn reads_openstack_image_show_output() {
        let show = format!(r#"{{"id": "x", "name": "img", "properties": {GOOD}}}"#);
        let raw = RawProperties::from_json(&show, "show.json").unwrap();
        assert_eq!(raw.hash_method.as_deref(), Some("SHA-256"));
        let old = r#"{"properties": "img_signature='AAEC', img_signature_hash_method='SHA-256', img_signature_key_type='DSA', img_signature_certificate_uuid='u1', os_hidden='False'"}"#;
        let raw = RawProperties::from_json(old, "old.json").unwrap();
        assert_eq!(raw.key_type.as_deref(), Some("DSA"));
        assert_eq!(raw.cert_uuid.as_deref(), Some("u1"));
        assert_eq!(raw.signature.as_deref(), Some("AAEC"));
    }

    #[test]
    fn an_ambiguous_properties_string_is_refused() {
        // A value that carries its own `', img_signature_hash_method='…`: the
        // unescaped format cannot say which hash method the image has.
        let smuggled = r#"{"properties": "img_signature='AAEC', img_signature_hash_method='SHA-256', img_signature_key_type='DSA', img_signature_certificate_uuid='u1', zz_note='x', img_signature_hash_method='SHA-224'"}"#;
        let err = RawProperties::from_json(smuggled, "old.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("old.json: img_signature_hash_method appears twice"),
            "{err}"
        );
        // Other properties may repeat: only the signature's matter here.
        let repeated =
            r#"{"properties": "os_hidden='False', img_signature='AAEC', os_hidden='True'"}"#;
        assert!(RawProperties::from_json(repeated, "old.json").is_ok());
    }

    #[test]
    fn names_every_missing_property() {
        let raw = RawProperties::from_json(r#"{"img_signature": "AAEC"}"#, "p.json").unwrap();
        let err = raw.check("p.json").unwrap_err().to_string();
        assert_eq!(
            err,
            "p.json: missing image properties img_signature_hash_method, img_signature_key_type, img_signature_certificate_uuid"
        );
    }

    #[test]
    fn rejects_what_cursive_would_let_through() {
        assert!(
            decode_signature_strict("AA\nEC")
                .unwrap_err()
                .contains("newline at offset 2")
        );
        assert!(
            decode_signature_strict("AA!EC")
                .unwrap_err()
                .contains("'!'")
        );
        assert!(decode_signature_strict("AAE").is_err());
        assert!(decode_signature_strict("").is_err());
        assert_eq!(decode_signature_strict("AAEC").unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn rejects_lower_case_names_and_wrong_types() {
        let bad = GOOD.replace("SHA-256", "sha-256");
        let e = RawProperties::from_json(&bad, "p")
            .unwrap()
            .check("p")
            .unwrap_err();
        assert!(e.to_string().contains("\"sha-256\" is not one of"), "{e}");
        let bad = GOOD.replace("RSA-PSS", "rsa-pss");
        let e = RawProperties::from_json(&bad, "p")
            .unwrap()
            .check("p")
            .unwrap_err();
        assert!(
            e.to_string().contains("img_signature_key_type \"rsa-pss\""),
            "{e}"
        );
        let bad = GOOD.replace("\"abc-123\"", "42");
        let e = RawProperties::from_json(&bad, "p").unwrap_err();
        assert!(
            e.to_string().contains("must be a string, found a number"),
            "{e}"
        );
        let e = RawProperties::from_json("{\"a\": ", "p").unwrap_err();
        assert!(
            e.to_string().starts_with("p: not valid JSON at line 1"),
            "{e}"
        );
    }

    #[test]
    fn renders_each_format() {
        let sig = RawProperties::from_json(GOOD, "p")
            .unwrap()
            .check("p")
            .unwrap();
        let os = render(&sig, OutputFormat::Openstack);
        assert_eq!(
            os,
            "--property img_signature=AAEC --property img_signature_hash_method=SHA-256 \
             --property img_signature_key_type=RSA-PSS --property img_signature_certificate_uuid=abc-123"
        );
        let env = render(&sig, OutputFormat::Env);
        assert!(env.contains("IMG_SIGNATURE_KEY_TYPE=RSA-PSS\n"));
        let json: Value = serde_json::from_str(&render(&sig, OutputFormat::Json)).unwrap();
        assert_eq!(json[SIGNATURE], "AAEC");
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
    }
}
