//! Where a token's PIN comes from, in order: the URI's `pin-value`, the URI's
//! `pin-source` file, `$IMGSEAL_PIN`, `$IMGSEAL_PIN_FILE`, the embedded token's
//! own PIN file, then a prompt on the terminal. PINs are zeroized on drop and
//! never printed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use imgseal_hsm::uri::Pkcs11Uri;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub type Pin = Zeroizing<String>;

/// Reads a PIN file: the first line, without its line ending.
pub fn read_pin_file(path: &Path, what: &str) -> Result<Pin> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::bad_input(format!("{}: {what} is not UTF-8 text", path.display())))?;
    // The first line, as an editor writes it: without a UTF-8 byte-order
    // mark or a CR before the newline (both would become part of the PIN
    // and spend a login attempt).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let line = text.split('\n').next().unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(Error::bad_input(format!(
            "{}: {what} is empty",
            path.display()
        )));
    }
    Ok(Zeroizing::new(line.to_string()))
}

/// Where a PIN came from: named in the message of a login that fails, so
/// that the user knows which file or variable to fix (never the PIN itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// `pin-value=` in a URI; `uri` says which ("the key URI", "--token").
    UriValue { uri: String },
    /// The `pin-source=` file of a URI.
    UriFile { uri: String, path: PathBuf },
    /// `$IMGSEAL_PIN`.
    Env,
    /// The file `$IMGSEAL_PIN_FILE` names.
    EnvFile(PathBuf),
    /// The embedded token's own PIN file under `$IMGSEAL_HOME`.
    Embedded(PathBuf),
    /// Typed at the terminal.
    Prompt,
}

impl std::fmt::Display for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinSource::UriValue { uri } => write!(f, "pin-value= in {uri}"),
            PinSource::UriFile { uri, path } => {
                write!(f, "the pin-source file {} named by {uri}", path.display())
            }
            PinSource::Env => write!(f, "$IMGSEAL_PIN"),
            PinSource::EnvFile(path) => {
                write!(f, "the file {} named by $IMGSEAL_PIN_FILE", path.display())
            }
            PinSource::Embedded(path) => {
                write!(f, "the embedded token's PIN file {}", path.display())
            }
            PinSource::Prompt => write!(f, "the terminal prompt"),
        }
    }
}

/// Resolves the PIN for a token named by `uri` (`uri_origin` says which
/// URI it is, for messages: "the key URI", "--token"). `embedded_pin_file`
/// is the embedded token's PIN file when the token is the embedded one.
pub fn resolve_pin(
    uri: Option<&Pkcs11Uri>,
    uri_origin: &str,
    embedded_pin_file: Option<&Path>,
    token_label: &str,
) -> Result<(Pin, PinSource)> {
    if let Some(uri) = uri {
        if let Some(v) = &uri.pin_value {
            return Ok((
                Zeroizing::new(v.to_string()),
                PinSource::UriValue {
                    uri: uri_origin.to_string(),
                },
            ));
        }
        if let Some(path) = uri
            .pin_source_path()
            .map_err(|e| Error::bad_input(e.to_string()))?
        {
            if !path.exists() {
                return Err(Error::io(
                    &path,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the pin-source file named by the URI does not exist (pin-source= in the key or --token URI)",
                    ),
                ));
            }
            let pin = read_pin_file(&path, "the pin-source file")?;
            return Ok((
                pin,
                PinSource::UriFile {
                    uri: uri_origin.to_string(),
                    path,
                },
            ));
        }
    }
    match std::env::var("IMGSEAL_PIN") {
        Ok(v) if !v.is_empty() => return Ok((Zeroizing::new(v), PinSource::Env)),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(Error::bad_input(
                "IMGSEAL_PIN is not UTF-8 text (a PIN is passed to the token as text)",
            ));
        }
        _ => {}
    }
    if let Some(path) = std::env::var_os("IMGSEAL_PIN_FILE").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        let pin = read_pin_file(&path, "IMGSEAL_PIN_FILE")?;
        return Ok((pin, PinSource::EnvFile(path)));
    }
    if let Some(path) = embedded_pin_file {
        let pin = read_pin_file(path, "the embedded token's PIN file")?;
        return Ok((pin, PinSource::Embedded(path.to_path_buf())));
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let pin = rpassword::prompt_password(format!("PIN for token \"{token_label}\": "))
            .map_err(|e| Error::io("/dev/tty", e))?;
        return Ok((Zeroizing::new(pin), PinSource::Prompt));
    }
    Err(Error::Auth(format!(
        "no PIN for token \"{token_label}\": give pin-source= in the key URI, set IMGSEAL_PIN or IMGSEAL_PIN_FILE, or run on a terminal to be asked"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_file_is_its_first_line_as_an_editor_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        for bytes in [
            &b"1234"[..],
            b"1234\n",
            b"1234\r\n",
            b"1234\r",
            b"\xef\xbb\xbf1234\r\nsecond line\n",
        ] {
            std::fs::write(&path, bytes).unwrap();
            assert_eq!(
                read_pin_file(&path, "pin").unwrap().as_str(),
                "1234",
                "{bytes:?}"
            );
        }
        // Spaces are the user's: kept.
        std::fs::write(&path, b" 12 34 \n").unwrap();
        assert_eq!(read_pin_file(&path, "pin").unwrap().as_str(), " 12 34 ");
        std::fs::write(&path, b"\xef\xbb\xbf\n").unwrap();
        assert!(read_pin_file(&path, "pin").is_err(), "empty after the BOM");
    }
}
