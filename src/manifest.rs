//! Signed manifests (docs/manifest.md): an image's size, linear digest and
//! fs-verity digest with its parameters, its Glance properties and the
//! signing certificate's id, signed in the device with the image's key.
//!
//! The signature covers the manifest's canonical bytes: the JSON document
//! without its `signature` member, in RFC 8785 (JCS) form — object members
//! sorted by their names' UTF-16 code units, no insignificant whitespace,
//! strings escaped as JSON requires and no more. Numbers are integers only, so
//! JCS's number formatting reduces to plain decimal. Canonicalising the parsed
//! document (rather than the fields imgseal knows) means a member added,
//! removed or changed anywhere breaks the signature.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::algorithms::{GlanceKeyType, HashMethod};
use crate::backend::{KeyHandle, SigningDevice, StoredCertificate};
use crate::config::TrustSettings;
use crate::digest::{ImageDigest, ImageSource};
use crate::error::{Error, Result};
use crate::fsverity::tree::{RangeOutcome, StoredTree, TreeFault};
use crate::fsverity::{FsVerityDigest, PassOutput, PassSpec, TreeHash, TreeParams, run_pass};
use crate::glance::{self, ImageSignature, RawProperties};
use crate::signature::SignatureScheme;
use crate::validate::{ChainVerdict, PolicyName};
use crate::verify::{TrustPlan, check_key_type};
use crate::x509::Certificate;

/// The `format` member every manifest carries.
pub const FORMAT: &str = "imgseal-manifest";
/// The version this code writes and reads.
pub const VERSION: u64 = 1;

/// The signed part of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestBody {
    pub format: String,
    pub version: u64,
    pub image: ImageEntry,
    pub linear: LinearEntry,
    pub fsverity: FsVerityEntry,
    /// The four `img_signature*` properties, as uploaded to Glance.
    pub glance: BTreeMap<String, String>,
    pub signer: SignerEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// The file name at signing time; informational, never checked.
    pub name: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearEntry {
    pub hash_method: String,
    /// Lowercase hex.
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsVerityEntry {
    /// `sha256:<hex>`, as `fsverity digest` prints it.
    pub digest: String,
    pub hash_algorithm: String,
    pub block_size: u64,
    /// Hex; empty for none.
    pub salt: String,
    pub root_hash: String,
    /// The tree side file's name, looked for beside the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerEntry {
    pub certificate_id: String,
    /// The Glance key type and hash method the manifest is signed with.
    pub key_type: String,
    pub hash_method: String,
}

/// A manifest and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub body: ManifestBody,
    pub signature: Vec<u8>,
    /// The canonical bytes the signature covers.
    canonical: Vec<u8>,
}

/// Writes `value` in canonical form (see the module documentation).
pub fn canonical_json(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) if n.is_u64() || n.is_i64() => {
            out.extend_from_slice(n.to_string().as_bytes())
        }
        Value::Number(n) => {
            return Err(Error::bad_input(format!(
                "{n}: manifests hold integers only"
            )));
        }
        Value::String(s) => out.extend_from_slice(
            serde_json::to_string(s)
                .expect("strings serialise")
                .as_bytes(),
        ),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(
                    serde_json::to_string(k)
                        .expect("strings serialise")
                        .as_bytes(),
                );
                out.push(b':');
                canonical_json(&map[k], out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

impl Manifest {
    /// Reads a manifest file's text. Anything malformed is bad input; whether
    /// the signature holds is for [`check_manifest`].
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            Error::bad_input(format!(
                "{origin}: not valid JSON at line {} column {}",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(mut map) = value else {
            return Err(Error::bad_input(format!(
                "{origin}: a manifest is a JSON object"
            )));
        };
        match map.get("format") {
            Some(Value::String(f)) if f == FORMAT => {}
            _ => {
                return Err(Error::bad_input(format!(
                    "{origin}: not an imgseal manifest (no \"format\": \"{FORMAT}\")"
                )));
            }
        }
        match map.get("version").and_then(Value::as_u64) {
            Some(VERSION) => {}
            Some(v) => {
                return Err(Error::bad_input(format!(
                    "{origin}: manifest version {v}; this imgseal reads version {VERSION}"
                )));
            }
            None => {
                return Err(Error::bad_input(format!(
                    "{origin}: the manifest has no integer \"version\""
                )));
            }
        }
        let signature = match map.remove("signature") {
            Some(Value::String(s)) => glance::decode_signature_strict(&s)
                .map_err(|e| Error::bad_input(format!("{origin}: signature: {e}")))?,
            _ => {
                return Err(Error::bad_input(format!(
                    "{origin}: the manifest has no \"signature\" string"
                )));
            }
        };
        let value = Value::Object(map);
        let mut canonical = Vec::new();
        canonical_json(&value, &mut canonical)
            .map_err(|e| Error::bad_input(format!("{origin}: {e}")))?;
        let body: ManifestBody = serde_json::from_value(value)
            .map_err(|e| Error::bad_input(format!("{origin}: {e}")))?;
        Ok(Manifest {
            body,
            signature,
            canonical,
        })
    }

    fn from_body(body: ManifestBody, signature: Vec<u8>) -> Self {
        let mut canonical = Vec::new();
        canonical_json(
            &serde_json::to_value(&body).expect("the body serialises"),
            &mut canonical,
        )
        .expect("the body holds integers only");
        Manifest {
            body,
            signature,
            canonical,
        }
    }

    /// The bytes the signature covers.
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// The file as written: the body and the signature, indented for people.
    pub fn to_json_pretty(&self) -> String {
        let mut value = serde_json::to_value(&self.body).expect("the body serialises");
        value["signature"] = Value::String(glance::encode_signature(&self.signature));
        let mut text = serde_json::to_string_pretty(&value).expect("JSON values serialise");
        text.push('\n');
        text
    }

    /// The scheme the manifest claims to be signed with.
    pub fn scheme(&self) -> Result<SignatureScheme> {
        let key_type = GlanceKeyType::from_glance(&self.body.signer.key_type).ok_or_else(|| {
            Error::bad_input(format!(
                "signer.key_type \"{}\" is not a Glance key type",
                glance::printable(&self.body.signer.key_type)
            ))
        })?;
        let hash = HashMethod::from_glance(&self.body.signer.hash_method).ok_or_else(|| {
            Error::bad_input(format!(
                "signer.hash_method \"{}\" is not a Glance hash method",
                glance::printable(&self.body.signer.hash_method)
            ))
        })?;
        Ok(SignatureScheme::for_glance(key_type, hash))
    }

    /// The tree parameters and the fs-verity digest the manifest records.
    pub fn fsverity(&self) -> Result<FsVerityDigest> {
        let f = &self.body.fsverity;
        let bad = |what: &str| Error::bad_input(format!("fsverity.{what} is malformed"));
        let hash: TreeHash = f
            .hash_algorithm
            .parse()
            .map_err(|_| bad("hash_algorithm"))?;
        let salt = hex::decode(&f.salt).map_err(|_| bad("salt"))?;
        let params = TreeParams::new(
            hash,
            usize::try_from(f.block_size).map_err(|_| bad("block_size"))?,
            salt,
        )
        .map_err(|e| Error::bad_input(format!("fsverity: {e}")))?;
        let root = hex::decode(&f.root_hash).map_err(|_| bad("root_hash"))?;
        if root.len() != hash.digest_len() {
            return Err(bad("root_hash"));
        }
        Ok(FsVerityDigest::from_root(
            params,
            self.body.image.size,
            root,
        ))
    }

    /// The Glance properties, checked as Glance checks them.
    pub fn glance_signature(&self) -> Result<ImageSignature> {
        let get = |k: &str| self.body.glance.get(k).cloned();
        if let Some(extra) = self
            .body
            .glance
            .keys()
            .find(|k| !glance::ALL.contains(&k.as_str()))
        {
            return Err(Error::bad_input(format!(
                "glance: unexpected property \"{}\"",
                glance::printable(extra)
            )));
        }
        RawProperties {
            signature: get(glance::SIGNATURE),
            hash_method: get(glance::HASH_METHOD),
            key_type: get(glance::KEY_TYPE),
            cert_uuid: get(glance::CERT_UUID),
        }
        .check("manifest glance properties")
    }

    pub fn linear_digest(&self) -> Result<ImageDigest> {
        let hash = HashMethod::from_glance(&self.body.linear.hash_method)
            .ok_or_else(|| Error::bad_input("linear.hash_method is not a Glance hash method"))?;
        let digest = hex::decode(&self.body.linear.digest)
            .ok()
            .filter(|d| d.len() == hash.output_len())
            .ok_or_else(|| Error::bad_input("linear.digest is malformed"))?;
        Ok(ImageDigest {
            hash,
            digest,
            size: self.body.image.size,
        })
    }
}

/// The manifest body of one signed image.
pub fn build_body(
    image_name: &str,
    linear: &ImageDigest,
    fsverity: &FsVerityDigest,
    signature: &ImageSignature,
    tree_file: Option<String>,
) -> ManifestBody {
    let glance = glance::property_map(signature)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    ManifestBody {
        format: FORMAT.into(),
        version: VERSION,
        image: ImageEntry {
            name: image_name.into(),
            size: linear.size,
        },
        linear: LinearEntry {
            hash_method: linear.hash.glance_name().into(),
            digest: hex::encode(&linear.digest),
        },
        fsverity: FsVerityEntry {
            digest: fsverity.to_string(),
            hash_algorithm: fsverity.params.hash().name().into(),
            block_size: fsverity.params.block_size() as u64,
            salt: hex::encode(fsverity.params.salt()),
            root_hash: hex::encode(&fsverity.root_hash),
            tree_file,
        },
        glance,
        signer: SignerEntry {
            certificate_id: signature.cert_uuid.clone(),
            key_type: signature.key_type.glance_name(),
            hash_method: signature.hash_method.glance_name().into(),
        },
    }
}

/// Signs `body` in the device, with the key and scheme the image was signed with.
pub fn sign_manifest(
    device: &dyn SigningDevice,
    key: &KeyHandle,
    body: ManifestBody,
) -> Result<Manifest> {
    let unsigned = Manifest::from_body(body, Vec::new());
    let scheme = unsigned.scheme()?;
    let digest = openssl::hash::hash(scheme.hash().message_digest(), unsigned.canonical_bytes())
        .map_err(|e| Error::crypto("hashing the manifest", e))?;
    let signature = crate::sign::sign_checked(
        device,
        key,
        &unsigned.body.signer.certificate_id,
        &scheme,
        &digest,
    )?;
    Ok(Manifest {
        signature,
        ..unsigned
    })
}

/// The result of checking a manifest, and then an image against it.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestVerdict {
    pub valid: bool,
    pub reason: Option<String>,
    pub certificate_id: String,
    pub certificate_subject: String,
    pub image_size: u64,
    pub fsverity_digest: String,
    /// The first data block that does not match, when one was found.
    pub first_bad_block: Option<u64>,
    /// Its bytes, `[start, end)`.
    pub first_bad_range: Option<(u64, u64)>,
    /// For range checks: data blocks read.
    pub blocks_checked: Option<u64>,
    /// The signer's certificate validation, when it ran ([`validate_signer`]).
    pub certificate_validation: Option<ChainVerdict>,
    /// Where trusted ids came from, and whether validation ran.
    pub trust: Option<TrustSettings>,
    /// The certificate whose key verified the manifest: the one validated.
    #[serde(skip)]
    pub signer: Option<Certificate>,
}

/// Checks the manifest's signature with its certificate and its internal
/// consistency (the Glance signature over the recorded linear digest, the
/// fs-verity digest over the recorded root). `Ok` with `valid: false` means
/// the manifest cannot be trusted.
pub fn check_manifest(
    manifest: &Manifest,
    find_cert: &dyn Fn(&str) -> Result<Option<StoredCertificate>>,
    verifier: &dyn SigningDevice,
    options: crate::validate::StrictOptions,
) -> Result<ManifestVerdict> {
    let scheme = manifest.scheme()?;
    let fsverity = manifest.fsverity()?;
    let linear = manifest.linear_digest()?;
    let glance_sig = manifest.glance_signature()?;
    let cert_id = &manifest.body.signer.certificate_id;
    let stored = find_cert(cert_id)?
        .ok_or_else(|| Error::not_found(format!("certificate \"{cert_id}\" not found")))?;
    let mut verdict = ManifestVerdict {
        valid: false,
        reason: None,
        certificate_id: cert_id.clone(),
        certificate_subject: stored.certificate.subject(),
        image_size: manifest.body.image.size,
        fsverity_digest: manifest.body.fsverity.digest.clone(),
        first_bad_block: None,
        first_bad_range: None,
        blocks_checked: None,
        certificate_validation: None,
        trust: None,
        signer: Some(stored.certificate.clone()),
    };
    let key = stored.certificate.public_key()?;
    let key_type =
        GlanceKeyType::from_glance(&manifest.body.signer.key_type).expect("scheme() checked it");
    if let Err(reason) = check_key_type(key_type, &key) {
        verdict.reason = Some(format!("manifest signer: {reason}"));
        return Ok(verdict);
    }
    // Manifests are imgseal's own: the strict policy's key checks, always.
    if let Some(weakness) = key.weakness(options.allow_small_rsa_exponent) {
        verdict.reason = Some(format!(
            "the key of certificate \"{cert_id}\" is unsafe: {weakness}"
        ));
        return Ok(verdict);
    }
    let restrictions = key.pss_restrictions()?;
    let digest = openssl::hash::hash(scheme.hash().message_digest(), manifest.canonical_bytes())
        .map_err(|e| Error::crypto("hashing the manifest", e))?;
    if !verifier.verify_digest(&key, &scheme, &digest, &manifest.signature)? {
        verdict.reason = Some(format!(
            "the manifest's signature does not verify with certificate \"{cert_id}\": the manifest was changed after signing, or signed with another key"
        ));
        return Ok(verdict);
    }
    // Signed but inconsistent: only a faulty signer makes these.
    if manifest.body.fsverity.digest != fsverity.to_string() {
        verdict.reason = Some(
            "the manifest's fs-verity digest does not match its root hash and parameters".into(),
        );
        return Ok(verdict);
    }
    if glance_sig.cert_uuid != *cert_id
        || glance_sig.key_type != key_type
        || glance_sig.hash_method != linear.hash
    {
        verdict.reason = Some(
            "the manifest's Glance properties do not match its signer and linear digest".into(),
        );
        return Ok(verdict);
    }
    let glance_scheme = SignatureScheme::for_glance(key_type, linear.hash);
    if !verifier.verify_digest(&key, &glance_scheme, &linear.digest, &glance_sig.signature)? {
        verdict.reason =
            Some("the manifest's img_signature does not verify over its linear digest".into());
        return Ok(verdict);
    }
    if let Some(restrictions) = &restrictions {
        let checks = [
            (scheme.hash(), &scheme, digest.as_ref(), &manifest.signature),
            (
                linear.hash,
                &glance_scheme,
                linear.digest.as_slice(),
                &glance_sig.signature,
            ),
        ];
        for (hash, scheme, digest, signature) in checks {
            if let Some(problem) =
                crate::verify::pss_problem(&key, restrictions, hash, scheme, digest, signature)?
            {
                verdict.reason = Some(format!(
                    "a signature of the manifest breaks the restrictions of certificate \"{cert_id}\"'s RSASSA-PSS key: {problem}"
                ));
                return Ok(verdict);
            }
        }
    }
    verdict.valid = true;
    Ok(verdict)
}

/// Validates the certificate of a manifest that [`check_manifest`] accepted
/// against the trusted ids, as `verify` does for Glance properties and before
/// any image byte is read: a manifest signed by a certificate that does not
/// chain to a trusted one proves nothing about the image.
pub fn validate_signer(
    manifest: &Manifest,
    verdict: &mut ManifestVerdict,
    plan: &TrustPlan<'_>,
    policy: PolicyName,
) -> Result<()> {
    verdict.trust = Some(plan.settings.clone());
    if !verdict.valid || !plan.settings.validate_certificate {
        return Ok(());
    }
    let cert_id = &manifest.body.signer.certificate_id;
    // The certificate check_manifest verified with, not a second lookup that
    // could find another one.
    let Some(signer) = verdict.signer.clone() else {
        return Err(Error::not_found(format!(
            "certificate \"{cert_id}\" not found"
        )));
    };
    let chain = plan.validate(policy, cert_id, &signer)?;
    if !chain.valid {
        verdict.valid = false;
        verdict.reason = Some(format!(
            "certificate \"{cert_id}\" is not trusted: {}",
            chain.reason.as_deref().unwrap_or_default()
        ));
    }
    verdict.certificate_validation = Some(chain);
    Ok(())
}

/// The tree file named by the manifest, beside it, if it exists.
pub fn default_tree_path(manifest: &Manifest, manifest_path: &Path) -> Option<PathBuf> {
    let name = manifest.body.fsverity.tree_file.as_deref()?;
    // Only a bare file name: a signed manifest must not steer reads elsewhere.
    if name.contains('/') || name == ".." || name == "." {
        return None;
    }
    let path = manifest_path.parent().unwrap_or(Path::new(".")).join(name);
    // Nor through a symbolic link of that name (O_NOFOLLOW); and a FIFO
    // there must not block the lookup (O_NONBLOCK). Anything but a regular
    // file is no tree.
    match crate::home::open_regular(&path, true) {
        Ok(crate::home::Opened::Regular(..)) => Some(path),
        _ => None,
    }
}

fn block_range(params: &TreeParams, size: u64, block: u64) -> (u64, u64) {
    let bs = params.block_size() as u64;
    let start = block * bs;
    (start, (start + bs).min(size.max(start)))
}

/// Reads the whole image once and checks its size, linear digest and
/// fs-verity digest against a manifest that [`check_manifest`] accepted.
/// With a tree, the first bad block is named.
pub fn verify_image_full(
    manifest: &Manifest,
    verdict: &mut ManifestVerdict,
    image: &ImageSource,
    tree: Option<&Path>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let expected = manifest.fsverity()?;
    let linear = manifest.linear_digest()?;
    let size = manifest.body.image.size;
    let stored = tree
        .map(|t| StoredTree::open(t, &expected.params, size))
        .transpose()?;
    let compare = stored
        .as_ref()
        .map(|s| s.comparer(&expected.root_hash))
        .transpose()?;
    let out: PassOutput = run_pass(
        image,
        PassSpec {
            linear: vec![linear.hash],
            tree: Some(&expected.params),
            tree_out: None,
            compare,
        },
        progress,
    )?;
    let got = out.fsverity.as_ref().expect("the pass built a tree");
    let got_linear = out.linear.first().expect("the pass hashed linearly");
    verdict.valid = false;
    if out.size == size && got.digest == expected.digest && got_linear.digest == linear.digest {
        verdict.valid = true;
        verdict.reason = None;
        return Ok(());
    }
    let mut reason = if out.size != size {
        format!(
            "{} is {} bytes; the manifest says {size}",
            image.display(),
            out.size
        )
    } else if got.digest != expected.digest {
        format!(
            "{} does not match the signed fs-verity digest ({} over {} bytes)",
            image.display(),
            expected.params.hash(),
            size
        )
    } else {
        format!(
            "{} does not match the signed {} digest",
            image.display(),
            linear.hash
        )
    };
    match (&stored, out.comparison.and_then(|c| c.first_mismatch)) {
        (None, _) => reason.push_str("; give the tree file (--tree) to name the first bad block"),
        (Some(s), Some(block)) => match s.authenticate(&expected.root_hash)? {
            None => {
                let (start, end) = block_range(&expected.params, out.size.max(size), block);
                verdict.first_bad_block = Some(block);
                verdict.first_bad_range = Some((start, end));
                reason = format!("block {block} (bytes {start}..{end}) is bad: {reason}");
            }
            Some(fault) => reason.push_str(&tree_fault_note(fault)),
        },
        (Some(_), None) => {}
    }
    verdict.reason = Some(reason);
    Ok(())
}

fn tree_fault_note(fault: TreeFault) -> String {
    format!(
        "; the tree file does not match the signed root either (level {} block {}), so the bad block cannot be named",
        fault.level, fault.index
    )
}

/// Checks bytes `offset..offset + len` of the image against the signed root,
/// reading only the blocks that cover them and their proofs from the tree.
pub fn verify_image_range(
    manifest: &Manifest,
    verdict: &mut ManifestVerdict,
    image_path: &Path,
    tree: &Path,
    offset: u64,
    len: u64,
) -> Result<()> {
    let expected = manifest.fsverity()?;
    let size = manifest.body.image.size;
    // Not File::open: a FIFO given as the image would block it for good.
    let opened =
        crate::home::open_regular(image_path, false).map_err(|e| Error::io(image_path, e))?;
    let crate::home::Opened::Regular(image, meta) = opened else {
        return Err(Error::usage(format!(
            "{}: --range needs a regular file",
            image_path.display()
        )));
    };
    verdict.valid = false;
    if meta.len() != size {
        verdict.reason = Some(format!(
            "{} is {} bytes; the manifest says {size}",
            image_path.display(),
            meta.len()
        ));
        return Ok(());
    }
    let stored = StoredTree::open(tree, &expected.params, size)?;
    let report = stored.verify_range(&image, image_path, &expected.root_hash, offset, len)?;
    verdict.blocks_checked = Some(report.blocks_checked);
    match report.outcome {
        RangeOutcome::Valid => {
            verdict.valid = true;
            verdict.reason = None;
        }
        RangeOutcome::BadBlock { block } => {
            let (start, end) = block_range(&expected.params, size, block);
            verdict.first_bad_block = Some(block);
            verdict.first_bad_range = Some((start, end));
            verdict.reason = Some(format!(
                "block {block} (bytes {start}..{end}) of {} does not match the signed fs-verity tree",
                image_path.display()
            ));
        }
        RangeOutcome::TreeFault(fault) => {
            verdict.reason = Some(format!(
                "the tree file {} does not match the signed root (level {} block {}): it was modified or belongs to another image",
                tree.display(),
                fault.level,
                fault.index
            ));
        }
    }
    Ok(())
}

/// Parses `OFFSET:LEN` (decimal bytes).
pub fn parse_range(text: &str) -> Result<(u64, u64)> {
    let bad = || Error::usage(format!("--range \"{text}\" is not OFFSET:LEN in bytes"));
    let (o, l) = text.split_once(':').ok_or_else(bad)?;
    Ok((
        o.trim().parse().map_err(|_| bad())?,
        l.trim().parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_members_and_drops_whitespace() {
        let v: Value = serde_json::from_str(
            r#"{ "b": 1, "a": {"é": "x\ny", "z": [true, null]}, "A": "\u0001" }"#,
        )
        .unwrap();
        let mut out = Vec::new();
        canonical_json(&v, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"A":"\u0001","a":{"z":[true,null],"é":"x\ny"},"b":1}"#
        );
        let float: Value = serde_json::from_str(r#"{"a": 1.5}"#).unwrap();
        assert!(canonical_json(&float, &mut Vec::new()).is_err());
    }

    #[test]
    fn ranges_parse_as_offset_and_length() {
        assert_eq!(parse_range("4096:10").unwrap(), (4096, 10));
        assert!(parse_range("4096").is_err());
        assert!(parse_range("a:1").is_err());
    }
}
