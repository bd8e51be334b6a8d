//! Directory listing writer: sorted entries split into runs under headers, plus the index
//! that extended directory inodes carry for fast lookups in large directories.
//!
//! A new header starts whenever the previous one has 256 entries, the next entry's inode lives
//! in another inode metadata block, its inode-number delta would not fit in an `i16`, or the
//! listing has crossed into a new directory metadata block (so every block boundary gets an
//! index entry, as the kernel's lookup expects).

use super::inode::{put16, put32, DirIndexEntry, DirectoryListing};
use super::metadata::{MetaPos, MetadataWriter};
use crate::error::{Error, Result};
use crate::layout::METADATA_BLOCK_SIZE;

/// Largest name length the kernel accepts.
pub const MAX_NAME_LEN: usize = 256;
const HEADER_SIZE: usize = 12;
const ENTRY_SIZE: usize = 8;
const MAX_ENTRIES_PER_HEADER: usize = 256;

/// One entry of a directory listing.
#[derive(Clone, Copy, Debug)]
pub struct DirectoryEntry<'a> {
    /// Entry name: 1..=256 bytes, no `/` or NUL, not `.` or `..`.
    pub name: &'a [u8],
    /// Where the entry's inode is stored.
    pub inode: MetaPos,
    /// The entry's inode number.
    pub inode_number: u32,
    /// Basic inode type code (see [`super::inode::kind_code`]).
    pub basic_type: u16,
}

/// Check a single entry name against the format's rules.
pub fn validate_name(name: &[u8]) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidArgument(format!(
            "directory entry name of {} bytes (must be 1..=256)",
            name.len()
        )));
    }
    if name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(Error::InvalidArgument(format!(
            "invalid directory entry name {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// Write the listing of one directory into the directory table.
///
/// `entries` must be sorted bytewise by name without duplicates.
pub fn write_listing(
    table: &mut MetadataWriter,
    entries: &[DirectoryEntry<'_>],
) -> Result<DirectoryListing> {
    for pair in entries.windows(2) {
        if pair[0].name >= pair[1].name {
            return Err(Error::InvalidArgument(format!(
                "directory entries not strictly sorted at {:?}",
                String::from_utf8_lossy(pair[1].name)
            )));
        }
    }
    for entry in entries {
        validate_name(entry.name)?;
        if entry.inode.block > u64::from(u32::MAX) {
            return Err(Error::InvalidArgument(
                "inode table larger than 4 GiB".into(),
            ));
        }
    }

    let start = table.position();
    let start_payload = table.payload_len();
    if start.block > u64::from(u32::MAX) {
        return Err(Error::InvalidArgument(
            "directory table larger than 4 GiB".into(),
        ));
    }
    let mut index = Vec::new();
    let mut last_indexed_block = start.block;
    let mut buf = Vec::with_capacity(METADATA_BLOCK_SIZE);
    let mut i = 0;
    while i < entries.len() {
        let header_pos = table.position();
        let base = entries[i];
        let mut end = i;
        let mut bytes = HEADER_SIZE;
        while end < entries.len() && end - i < MAX_ENTRIES_PER_HEADER {
            let e = entries[end];
            let delta = i64::from(e.inode_number) - i64::from(base.inode_number);
            if e.inode.block != base.inode.block
                || delta < i64::from(i16::MIN)
                || delta > i64::from(i16::MAX)
            {
                break;
            }
            if end > i && usize::from(header_pos.offset) + bytes >= METADATA_BLOCK_SIZE {
                break;
            }
            bytes += ENTRY_SIZE + e.name.len();
            end += 1;
        }

        if header_pos.block != last_indexed_block {
            let offset_in_listing = table.payload_len() - start_payload;
            index.push(DirIndexEntry {
                index: u32::try_from(offset_in_listing).map_err(|_| {
                    Error::InvalidArgument("directory listing larger than 4 GiB".into())
                })?,
                start: header_pos.block as u32,
                name: base.name.to_vec(),
            });
            last_indexed_block = header_pos.block;
        }

        buf.clear();
        put32(&mut buf, (end - i - 1) as u32);
        put32(&mut buf, base.inode.block as u32);
        put32(&mut buf, base.inode_number);
        for e in &entries[i..end] {
            let delta = (i64::from(e.inode_number) - i64::from(base.inode_number)) as i16;
            put16(&mut buf, e.inode.offset);
            put16(&mut buf, delta as u16);
            put16(&mut buf, e.basic_type);
            put16(&mut buf, (e.name.len() - 1) as u16);
            buf.extend_from_slice(e.name);
        }
        table.write(&buf)?;
        i = end;
    }

    let listing_len = table.payload_len() - start_payload;
    let file_size = u32::try_from(listing_len + 3)
        .map_err(|_| Error::InvalidArgument("directory listing larger than 4 GiB".into()))?;
    Ok(DirectoryListing {
        block_start: start.block as u32,
        block_offset: start.offset,
        file_size,
        index,
    })
}
