//! `$IMGSEAL_HOME` and the embedded default token: a private SoftHSM2 token
//! created on first use, so that imgseal works on a fresh machine with nothing
//! configured. Its PINs are generated and kept in 0600 files beside it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The label of the embedded token.
pub const EMBEDDED_TOKEN_LABEL: &str = "imgseal";

/// Where Debian, Fedora and source builds put SoftHSM2's module.
const SOFTHSM_MODULE_CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

#[derive(Debug, Clone)]
pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    /// `$IMGSEAL_HOME`, else `$XDG_DATA_HOME/imgseal`, else `~/.local/share/imgseal`.
    pub fn from_env() -> Result<Self> {
        if let Some(dir) = std::env::var_os("IMGSEAL_HOME").filter(|v| !v.is_empty()) {
            return Ok(Home {
                dir: PathBuf::from(dir),
            });
        }
        if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return Ok(Home {
                dir: PathBuf::from(dir).join("imgseal"),
            });
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Ok(Home {
                dir: PathBuf::from(home).join(".local/share/imgseal"),
            }),
            None => Err(Error::usage(
                "cannot find a home for imgseal: set IMGSEAL_HOME",
            )),
        }
    }

    pub fn softhsm_conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    pub fn token_dir(&self) -> PathBuf {
        self.dir.join("tokens")
    }

    pub fn user_pin_file(&self) -> PathBuf {
        self.dir.join("user.pin")
    }

    pub fn so_pin_file(&self) -> PathBuf {
        self.dir.join("so.pin")
    }

    /// The home must be this user's and not writable by others: the
    /// embedded token's keys and PINs live in it, and `DirBuilder::mode`
    /// applies only to directories it creates, not to one that was there.
    fn check_private(&self) -> Result<()> {
        let meta = fs::metadata(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        // Safety: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if meta.uid() != euid || meta.mode() & 0o022 != 0 {
            return Err(Error::usage(format!(
                "{}: owned by uid {} with mode {:04o}: IMGSEAL_HOME must be yours and not writable by others (the embedded token's keys and PINs live there); fix it with chown/chmod go-w, or choose another IMGSEAL_HOME",
                self.dir.display(),
                meta.uid(),
                meta.mode() & 0o7777
            )));
        }
        Ok(())
    }

    /// Makes the directory tree and SoftHSM configuration of the embedded
    /// token. Returns whether the token still has to be initialised.
    pub fn prepare_embedded(&self) -> Result<bool> {
        for dir in [&self.dir, &self.token_dir()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(dir, e))?;
        }
        self.check_private()?;
        let conf = format!(
            "# written by imgseal: the embedded token\n\
             directories.tokendir = {}\n\
             objectstore.backend = file\n\
             log.level = ERROR\n\
             slots.removable = false\n",
            self.token_dir().display()
        );
        let conf_path = self.softhsm_conf();
        if fs::read_to_string(&conf_path).ok().as_deref() != Some(conf.as_str()) {
            write_private_file(&conf_path, conf.as_bytes())?;
        }
        Ok(!self.user_pin_file().exists())
    }

    /// Generates and stores the two PINs of a new embedded token.
    pub fn create_pins(&self) -> Result<(Zeroizing<String>, Zeroizing<String>)> {
        let user = generate_pin();
        let so = generate_pin();
        write_private_file(&self.so_pin_file(), so.as_bytes())?;
        write_private_file(&self.user_pin_file(), user.as_bytes())?;
        Ok((user, so))
    }

    /// A lock held while the embedded token is being created, so that two
    /// first runs at once do not both initialise it.
    pub fn lock(&self) -> Result<File> {
        // The lock file lives in the home, which a first run has not made yet:
        // make it first, or the open fails and two first runs race unlocked
        // (each initialised its own token "imgseal"; tests/concurrency.rs).
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        self.check_private()?;
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }
}

/// The SoftHSM2 module: `$IMGSEAL_SOFTHSM_MODULE`, else the usual install paths.
pub fn softhsm_module() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("IMGSEAL_SOFTHSM_MODULE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    SOFTHSM_MODULE_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::not_found(
                "SoftHSM2 is not installed (no libsofthsm2.so found): install the softhsm2 package, \
                 set IMGSEAL_SOFTHSM_MODULE, or name a module with --token 'pkcs11:…?module-path=…'",
            )
        })
}

/// 20 characters from an unambiguous alphabet (~115 bits).
fn generate_pin() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    Zeroizing::new(
        (0..20)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect(),
    )
}

/// What [`open_regular`] opened.
pub enum Opened {
    /// A regular file, in blocking mode again, and its metadata.
    Regular(File, fs::Metadata),
    /// A FIFO, a device, a socket or a directory, named ("a FIFO"…): never
    /// read (a FIFO would wait for a writer, `/dev/zero` never end).
    NotRegular(&'static str),
}

/// Opens `path` for reading only if it is a regular file, without ever
/// waiting: the open is non-blocking (`O_NONBLOCK`), so that a FIFO with no
/// writer does not block it, the type is that of the opened file (`fstat`),
/// not of a second lookup of the path, and `O_NONBLOCK` is cleared again
/// before anything is read. With `nofollow`, a symbolic link as the last
/// component is refused (`O_NOFOLLOW`: the open fails with `ELOOP`).
pub fn open_regular(path: &Path, nofollow: bool) -> std::io::Result<Opened> {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::io::AsRawFd;
    let flags = libc::O_NONBLOCK | if nofollow { libc::O_NOFOLLOW } else { 0 };
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        // A unix socket cannot be opened at all.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Ok(Opened::NotRegular("a socket"));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Ok(Opened::NotRegular(if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        }));
    }
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        let fd = file.as_raw_fd();
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl == -1 || libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(Opened::Regular(file, meta))
}

/// The most an input file other than an image may hold (properties,
/// certificates, CRLs, documents): the largest public CRLs are tens of MiB,
/// and `/dev/zero`-like inputs must end before the memory does.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// The bytes of the input file at `path`, which must be a regular file (a
/// FIFO is refused without waiting for a writer, a device without being
/// read; a directory keeps the OS's "Is a directory") of at most `limit`
/// bytes; `what` names what it should have been ("a manifest").
pub fn read_input(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let origin = path.display();
    let file = match open_regular(path, false).map_err(|e| Error::io(path, e))? {
        Opened::Regular(file, _) => file,
        Opened::NotRegular("a directory") => {
            return Err(Error::io(
                path,
                std::io::Error::from_raw_os_error(libc::EISDIR),
            ));
        }
        Opened::NotRegular(kind) => {
            return Err(Error::bad_input(format!(
                "{origin}: not a regular file ({kind})"
            )));
        }
    };
    let mut bytes = Vec::new();
    // Read to the end, not to the size stat gives: procfs files say 0.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::bad_input(format!(
            "{origin}: more than {} MiB, not {what}",
            limit >> 20
        )));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` with mode 0600, atomically (temp file + rename).
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, bytes, 0o600)
}

/// Writes a public output file atomically: a crash or a full disk never leaves
/// half a file under the final name.
pub fn write_output_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically(path, bytes, 0o644)
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".imgseal-")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| {
            // tempfile's message ends "at path \"<dir>/.imgseal-x3Fq\"": a
            // random name the user never gave. Keep the OS error, on `dir`.
            let text = e.to_string();
            let text = text.rsplit_once(" at path \"").map_or(&*text, |(t, _)| t);
            Error::io(dir, std::io::Error::new(e.kind(), text))
        })?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
