//! Directory listings: headers, entries, the extended directory index, lookup and iteration.
//!
//! A listing is `file_size - 3` bytes in the directory table, starting at the inode's
//! `(block_start, block_offset)`. It is a sequence of headers (`count - 1` u32, inode-table
//! block u32, base inode number u32), each followed by `count` entries (offset in the inode
//! block u16, inode number delta i16, basic type u16, `name_len - 1` u16, name).
//!
//! Positions follow the kernel's `f_pos`: `3 + bytes of the listing consumed`, so the position
//! just after the last entry equals the directory's `file_size`, and 0..=3 mean "the start".

use std::cmp::Ordering;

use crate::error::{Error, Result};
use crate::layout::METADATA_BLOCK_SIZE;

use super::inode::basic_file_type;
use super::metadata::MetaCursor;
use super::{Archive, DirEntry, Inode, InodeKind, InodeRef};

/// Longest entry name (the kernel's `SQUASHFS_NAME_LEN`).
pub(crate) const MAX_NAME_LEN: usize = 256;
/// Most entries under one header.
const MAX_HEADER_ENTRIES: u32 = 256;
/// Bytes of "." and ".." that `file_size` counts but the listing does not store.
const DOT_ENTRIES: u64 = 3;

/// Check an entry name: non-empty, at most 256 bytes, not `.`/`..`, no `/` or NUL.
pub(crate) fn check_name(name: &[u8]) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        Err("empty name")
    } else if name.len() > MAX_NAME_LEN {
        Err("name longer than 256 bytes")
    } else if name == b"." || name == b".." {
        Err("name is . or ..")
    } else if name.contains(&b'/') {
        Err("name contains '/'")
    } else if name.contains(&0) {
        Err("name contains NUL")
    } else {
        Ok(())
    }
}

/// The listing geometry of a directory inode.
pub(crate) struct Listing {
    pub(crate) block_start: u32,
    pub(crate) block_offset: u16,
    /// Listing length in bytes (`file_size - 3`).
    pub(crate) len: u64,
    pub(crate) index_count: u32,
    pub(crate) number: u32,
}

impl Listing {
    pub(crate) fn of(dir: &Inode) -> Result<Self> {
        match dir.kind {
            InodeKind::Directory {
                block_start,
                block_offset,
                file_size,
                index_count,
                ..
            } => Ok(Listing {
                block_start,
                block_offset,
                len: u64::from(file_size).saturating_sub(DOT_ENTRIES),
                index_count,
                number: dir.number,
            }),
            _ => Err(Error::WrongType {
                path: format!("inode {}", dir.number),
                expected: "a directory",
            }),
        }
    }
}

/// One entry of the extended directory index.
struct IndexEntry {
    /// Byte offset of a header within the listing.
    listing_offset: u64,
    /// Directory-table block holding that header.
    block: u32,
    /// Name of the first entry under that header.
    name: Vec<u8>,
}

/// Reads the extended directory index entry by entry, validating as it goes.
struct IndexReader<'a> {
    archive: &'a Archive,
    cursor: MetaCursor,
    remaining: u32,
    listing: &'a Listing,
    previous: Option<(u64, u32)>,
}

impl IndexReader<'_> {
    fn next(&mut self) -> Result<Option<IndexEntry>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let at = self.cursor.block();
        let a = self.archive;
        let listing_offset = u64::from(self.cursor.u32(a)?);
        let block = self.cursor.u32(a)?;
        let name_len = self.cursor.u32(a)? as usize + 1;
        let corrupt = |what: String| {
            Error::corrupt(
                format!("directory index of inode {}: {what}", self.listing.number),
                at,
            )
        };
        if name_len > MAX_NAME_LEN {
            return Err(corrupt(format!("name length {name_len} exceeds 256")));
        }
        let name = self.cursor.read_vec(a, name_len)?;
        if listing_offset >= self.listing.len {
            return Err(corrupt(format!(
                "offset {listing_offset} is past the listing ({} bytes)",
                self.listing.len
            )));
        }
        if block < self.listing.block_start {
            return Err(corrupt(format!("block {block} precedes the listing")));
        }
        if let Some((prev_offset, prev_block)) = self.previous {
            if listing_offset <= prev_offset || block < prev_block {
                return Err(corrupt("entries are not increasing".into()));
            }
        }
        self.previous = Some((listing_offset, block));
        Ok(Some(IndexEntry {
            listing_offset,
            block,
            name,
        }))
    }
}

/// Where to start reading a listing: a directory-table block, an offset in it, and the
/// matching byte offset within the listing.
#[derive(Clone, Copy)]
struct Start {
    block: u32,
    offset: usize,
    listing_offset: u64,
}

impl Archive {
    /// Use the extended directory index to find the last indexed header for which `keep`
    /// holds (the index is sorted by both name and offset, so `keep` is monotone).
    fn index_seek(
        &self,
        dir: &Inode,
        listing: &Listing,
        mut keep: impl FnMut(&IndexEntry) -> bool,
    ) -> Result<Start> {
        let mut start = Start {
            block: listing.block_start,
            offset: usize::from(listing.block_offset),
            listing_offset: 0,
        };
        if listing.index_count == 0 {
            return Ok(start);
        }
        let mut reader = IndexReader {
            archive: self,
            cursor: self.directory_index_cursor(dir)?,
            remaining: listing.index_count,
            listing,
            previous: None,
        };
        while let Some(entry) = reader.next()? {
            if !keep(&entry) {
                break;
            }
            // Like the kernel: the index assumes every metadata block but the last holds
            // exactly 8 KiB, so the in-block offset follows from the listing offset.
            start = Start {
                block: entry.block,
                offset: ((u64::from(listing.block_offset) + entry.listing_offset)
                    % METADATA_BLOCK_SIZE as u64) as usize,
                listing_offset: entry.listing_offset,
            };
        }
        Ok(start)
    }

    fn listing_reader(&self, listing: &Listing, start: Start, skip_until: u64) -> Result<DirState> {
        let region = self.tables.directory;
        let cursor = if listing.len == 0 {
            None
        } else {
            let block = region.block_at(u64::from(start.block), "directory listing")?;
            Some(MetaCursor::new(region, block, start.offset)?)
        };
        Ok(DirState {
            cursor,
            pos: start.listing_offset,
            len: listing.len,
            dir_number: listing.number,
            header_remaining: 0,
            header_block: 0,
            header_base: 0,
            previous: None,
            skip_until,
            done: false,
        })
    }

    /// A streaming reader of `dir`'s entries that yields those ending after `position`.
    pub(crate) fn dir_state(&self, dir: &Inode, position: u64) -> Result<DirState> {
        let listing = Listing::of(dir)?;
        let skip_until = position.saturating_sub(DOT_ENTRIES);
        if skip_until >= listing.len {
            let mut state = self.listing_reader(
                &Listing { len: 0, ..listing },
                Start {
                    block: 0,
                    offset: 0,
                    listing_offset: 0,
                },
                0,
            )?;
            state.done = true;
            return Ok(state);
        }
        let start = if skip_until == 0 {
            Start {
                block: listing.block_start,
                offset: usize::from(listing.block_offset),
                listing_offset: 0,
            }
        } else {
            self.index_seek(dir, &listing, |e| e.listing_offset <= skip_until)?
        };
        self.listing_reader(&listing, start, skip_until)
    }

    /// Find `name` in `dir`, jumping through the directory index and stopping as soon as the
    /// sorted listing passes the name.
    pub(crate) fn find_entry(&self, dir: &Inode, name: &[u8]) -> Result<Option<DirEntry>> {
        let listing = Listing::of(dir)?;
        if check_name(name).is_err() || listing.len == 0 {
            return Ok(None);
        }
        let start = self.index_seek(dir, &listing, |e| e.name.as_slice() <= name)?;
        let mut state = self.listing_reader(&listing, start, 0)?;
        while let Some(entry) = state.next_entry(self)? {
            match entry.name.as_slice().cmp(name) {
                Ordering::Less => continue,
                Ordering::Equal => return Ok(Some(entry)),
                Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// The state of a streaming directory read.
pub(crate) struct DirState {
    cursor: Option<MetaCursor>,
    /// Bytes of the listing consumed.
    pos: u64,
    len: u64,
    dir_number: u32,
    header_remaining: u32,
    header_block: u32,
    header_base: u32,
    previous: Option<Vec<u8>>,
    /// Entries ending at or before this listing offset are skipped (resuming).
    skip_until: u64,
    done: bool,
}

impl DirState {
    /// The next entry, or `None` at the end. After an error the state is finished.
    pub(crate) fn next_entry(&mut self, archive: &Archive) -> Result<Option<DirEntry>> {
        if self.done {
            return Ok(None);
        }
        let result = self.advance(archive);
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn corrupt(&self, at: u64, what: impl std::fmt::Display) -> Error {
        Error::corrupt(
            format!(
                "directory inode {} at listing offset {}: {what}",
                self.dir_number, self.pos
            ),
            at,
        )
    }

    fn advance(&mut self, archive: &Archive) -> Result<Option<DirEntry>> {
        let Some(mut cursor) = self.cursor.take() else {
            return Ok(None);
        };
        let result = self.advance_with(archive, &mut cursor);
        self.cursor = Some(cursor);
        result
    }

    fn advance_with(
        &mut self,
        archive: &Archive,
        cursor: &mut MetaCursor,
    ) -> Result<Option<DirEntry>> {
        loop {
            let at = cursor.block();
            if self.header_remaining == 0 {
                if self.pos == self.len {
                    return Ok(None);
                }
                if self.len - self.pos < 12 {
                    return Err(self.corrupt(at, "listing ends inside a directory header"));
                }
                let count = cursor.u32(archive)?;
                let block = cursor.u32(archive)?;
                let base = cursor.u32(archive)?;
                self.pos += 12;
                if count >= MAX_HEADER_ENTRIES {
                    return Err(self.corrupt(
                        at,
                        format!(
                            "header holds {} entries, more than 256",
                            u64::from(count) + 1
                        ),
                    ));
                }
                archive
                    .tables
                    .inode
                    .block_at(u64::from(block), "directory header")?;
                self.header_remaining = count + 1;
                self.header_block = block;
                self.header_base = base;
                continue;
            }
            if self.len - self.pos < 8 {
                return Err(self.corrupt(at, "listing ends inside a directory entry"));
            }
            let offset = cursor.u16(archive)?;
            let delta = cursor.u16(archive)? as i16;
            let raw_type = cursor.u16(archive)?;
            let name_len = usize::from(cursor.u16(archive)?) + 1;
            self.pos += 8;
            if name_len > MAX_NAME_LEN {
                return Err(self.corrupt(at, format!("entry name length {name_len} exceeds 256")));
            }
            if self.len - self.pos < name_len as u64 {
                return Err(self.corrupt(at, "listing ends inside an entry name"));
            }
            let name = cursor.read_vec(archive, name_len)?;
            self.pos += name_len as u64;
            self.header_remaining -= 1;
            if let Err(problem) = check_name(&name) {
                return Err(self.corrupt(
                    at,
                    format!("entry {:?}: {problem}", String::from_utf8_lossy(&name)),
                ));
            }
            let Some(file_type) = basic_file_type(raw_type) else {
                return Err(self.corrupt(
                    at,
                    format!(
                        "entry {:?} has type {raw_type}, not a basic inode type 1..=7",
                        String::from_utf8_lossy(&name)
                    ),
                ));
            };
            let number = i64::from(self.header_base) + i64::from(delta);
            let inode_number = match u32::try_from(number) {
                Ok(n) if n >= 1 && n <= archive.superblock.inode_count => n,
                _ => {
                    return Err(self.corrupt(
                        at,
                        format!(
                            "entry {:?} has inode number {number}, not in 1..={}",
                            String::from_utf8_lossy(&name),
                            archive.superblock.inode_count
                        ),
                    ))
                }
            };
            if usize::from(offset) >= METADATA_BLOCK_SIZE {
                return Err(self.corrupt(at, format!("entry inode offset {offset} exceeds 8191")));
            }
            if let Some(previous) = &self.previous {
                if previous.as_slice() >= name.as_slice() {
                    return Err(self.corrupt(
                        at,
                        format!(
                            "entries not strictly sorted: {:?} follows {:?}",
                            String::from_utf8_lossy(&name),
                            String::from_utf8_lossy(previous)
                        ),
                    ));
                }
            }
            let entry = DirEntry {
                inode_ref: InodeRef((u64::from(self.header_block) << 16) | u64::from(offset)),
                inode_number,
                file_type,
                next_position: self.pos + DOT_ENTRIES,
                name: name.clone(),
            };
            self.previous = Some(name);
            if self.pos <= self.skip_until {
                continue;
            }
            return Ok(Some(entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_are_checked() {
        assert!(check_name(b"a").is_ok());
        assert!(check_name(&[b'x'; 256]).is_ok());
        assert!(check_name(&[b'x'; 257]).is_err());
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name(b"...").is_ok());
    }
}
