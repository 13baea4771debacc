//! What a disk image file is, by its magic numbers, as Glance's `disk_format`
//! names it. Glance (since 2024.2) inspects uploads and refuses data that is
//! not the declared format, so `publish` declares what the file is.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Result};

/// The `disk_format` of `path`: qcow2, vmdk, vhdx, vhd, iso, or raw when
/// no magic number matches.
pub fn detect(path: &Path) -> Result<&'static str> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    // ISO 9660's volume descriptor starts at 32 KiB; the head covers it.
    let mut head = Vec::with_capacity(34 * 1024);
    (&mut file)
        .take(34 * 1024)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    let mut tail = [0u8; 512];
    let tail = if len >= 512 {
        file.seek(SeekFrom::Start(len - 512))
            .map_err(|e| Error::io(path, e))?;
        file.read_exact(&mut tail).map_err(|e| Error::io(path, e))?;
        Some(&tail[..])
    } else {
        None
    };
    Ok(from_bytes(&head, tail))
}

/// The format from the file's first bytes (at least 34 KiB when there are
/// that many) and its last 512 bytes.
pub fn from_bytes(head: &[u8], tail: Option<&[u8]>) -> &'static str {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, b"QFI\xfb") {
        "qcow2"
    } else if at(0, b"KDMV") || at(0, b"# Disk DescriptorFile") {
        "vmdk"
    } else if at(0, b"vhdxfile") {
        "vhdx"
    } else if at(0, b"conectix") || tail.is_some_and(|t| t.starts_with(b"conectix")) {
        // A dynamic VHD starts with a copy of its footer; a fixed one has
        // only the footer, in the last 512 bytes.
        "vhd"
    } else if at(0x8001, b"CD001") {
        "iso"
    } else {
        "raw"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_name_the_format() {
        let mut head = vec![0u8; 34 * 1024];
        assert_eq!(from_bytes(&head, Some(&[0; 512])), "raw");
        head[..4].copy_from_slice(b"QFI\xfb");
        assert_eq!(from_bytes(&head, None), "qcow2");
        head[..4].copy_from_slice(b"KDMV");
        assert_eq!(from_bytes(&head, None), "vmdk");
        head[..8].copy_from_slice(b"vhdxfile");
        assert_eq!(from_bytes(&head, None), "vhdx");
        head[..8].copy_from_slice(b"conectix");
        assert_eq!(from_bytes(&head, None), "vhd");
        head[..8].fill(0);
        let mut footer = [0u8; 512];
        footer[..8].copy_from_slice(b"conectix");
        assert_eq!(from_bytes(&head, Some(&footer)), "vhd");
        head[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(from_bytes(&head, None), "iso");
        assert_eq!(from_bytes(b"QFI", None), "raw");
    }
}
