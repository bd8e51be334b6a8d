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
use super::{Archive, DirEntry, FileType, Inode, InodeKind, InodeRef};

/// Longest entry name (the kernel's `SQUASHFS_NAME_LEN`).
pub(crate) const MAX_NAME_LEN: usize = 256;
/// Most entries under one header.
const MAX_HEADER_ENTRIES: u32 = 256;
/// Bytes of "." and ".." that `file_size` counts but the listing does not store.
const DOT_ENTRIES: u64 = 3;

/// Check an entry name: non-empty, at most 256 bytes, not `.`/`..`, no `/` or NUL.
#[inline]
pub(crate) fn check_name(name: &[u8]) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        Err("empty name")
    } else if name.len() > MAX_NAME_LEN {
        Err("name longer than 256 bytes")
    } else if name == b"." || name == b".." {
        Err("name is . or ..")
    } else if has_slash_or_nul(name) {
        if name.contains(&b'/') {
            Err("name contains '/'")
        } else {
            Err("name contains NUL")
        }
    } else {
        Ok(())
    }
}

/// True if `name` contains `/` or NUL. This runs for every entry a directory scan passes, so
/// it tests eight bytes at a time: a word has a zero byte iff `(x - 0x01..01) & !x & 0x80..80`
/// is non-zero, and a `/` byte iff `x ^ 0x2f..2f` has a zero byte.
fn has_slash_or_nul(name: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const SLASHES: u64 = 0x2f2f_2f2f_2f2f_2f2f;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let mut words = name.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        if has_zero(x) || has_zero(x ^ SLASHES) {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b == b'/' || b == 0)
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

/// Where one entry of the extended directory index points: a header at `listing_offset`
/// whose first entry is named `name`.
#[derive(Clone, Debug)]
struct IndexMark {
    listing_offset: u64,
    name: Vec<u8>,
}

/// Reads the extended directory index entry by entry, validating as it goes.
///
/// Every writer we know of (mksquashfs, squashfs-tools-ng, ours) and the kernel's lookup agree
/// on what an entry means: the header at byte `listing offset` of the listing starts in
/// directory-table block `block` and its first entry is named `name`. The kernel derives the
/// in-block offset as if every block but the last held exactly 8 KiB, so the header lies
/// `(block_offset + listing offset) / 8192` blocks after the listing's first block. The reader
/// checks everything that follows from that without reading the listing: offsets strictly
/// increasing and inside the listing, names strictly increasing, and blocks consistent with
/// the offsets (same 8 KiB stretch: same block; later stretch: a later block, at least 3 and
/// at most 8194 bytes per block further). The name is checked against the listing when the
/// header is reached (see [`DirState`]).
struct IndexReader<'a> {
    archive: &'a Archive,
    cursor: MetaCursor,
    remaining: u32,
    listing: &'a Listing,
    /// Listing offset, 8 KiB stretch and block of the previous entry (the listing start
    /// before the first).
    previous: Option<u64>,
    previous_stretch: u64,
    previous_block: u32,
    /// The current entry's name (after `next`), and the previous one's.
    name: Vec<u8>,
    previous_name: Vec<u8>,
}

impl<'a> IndexReader<'a> {
    fn new(archive: &'a Archive, dir: &Inode, listing: &'a Listing) -> Result<Self> {
        Ok(IndexReader {
            archive,
            cursor: archive.directory_index_cursor(dir)?,
            remaining: listing.index_count,
            listing,
            previous: None,
            previous_stretch: 0,
            previous_block: listing.block_start,
            name: Vec::new(),
            previous_name: Vec::new(),
        })
    }

    /// The next entry's listing offset and block; its name is left in `self.name`.
    fn next(&mut self) -> Result<Option<(u64, u32)>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let at = self.cursor.block();
        let a = self.archive;
        let mut fixed = [0u8; 12];
        self.cursor.read(a, &mut fixed)?;
        let field = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().expect("4 bytes"));
        let listing_offset = u64::from(field(0));
        let block = field(4);
        let name_len = field(8) as usize + 1;
        let number = self.listing.number;
        let corrupt =
            |what: String| Error::corrupt(format!("directory index of inode {number}: {what}"), at);
        if name_len > MAX_NAME_LEN {
            return Err(corrupt(format!("name length {name_len} exceeds 256")));
        }
        std::mem::swap(&mut self.name, &mut self.previous_name);
        self.cursor.read_into(a, name_len, &mut self.name)?;
        if listing_offset >= self.listing.len {
            return Err(corrupt(format!(
                "offset {listing_offset} is past the listing ({} bytes)",
                self.listing.len
            )));
        }
        if let Some(previous) = self.previous {
            if listing_offset <= previous {
                return Err(corrupt(format!(
                    "offset {listing_offset} does not follow the previous entry's {previous}"
                )));
            }
            if self.name <= self.previous_name {
                return Err(corrupt(format!(
                    "name {:?} does not sort after the previous entry's {:?}",
                    String::from_utf8_lossy(&self.name),
                    String::from_utf8_lossy(&self.previous_name)
                )));
            }
        }
        let stretch =
            (u64::from(self.listing.block_offset) + listing_offset) / METADATA_BLOCK_SIZE as u64;
        let blocks_further = stretch - self.previous_stretch;
        let distance = u64::from(block).wrapping_sub(u64::from(self.previous_block));
        let consistent = if blocks_further == 0 {
            block == self.previous_block
        } else {
            block > self.previous_block
                && distance >= 3 * blocks_further
                && distance <= MAX_STORED_BLOCK * blocks_further
        };
        if !consistent {
            return Err(corrupt(format!(
                "block {block} for listing offset {listing_offset} is inconsistent with the \
                 listing start (block {}, offset {}) and the previous entry (block {})",
                self.listing.block_start, self.listing.block_offset, self.previous_block
            )));
        }
        self.previous = Some(listing_offset);
        self.previous_stretch = stretch;
        self.previous_block = block;
        Ok(Some((listing_offset, block)))
    }
}

/// The most bytes one metadata block may take on disk (header + payload).
const MAX_STORED_BLOCK: u64 = 2 + METADATA_BLOCK_SIZE as u64;

/// Where to start reading a listing: a directory-table block, an offset in it, the matching
/// byte offset within the listing, and the index entries to verify on the way.
struct Start {
    block: u32,
    offset: usize,
    listing_offset: u64,
    /// Index entries the read will pass, in listing order: the one jumped to (if any) and the
    /// one after it.
    marks: Vec<IndexMark>,
}

impl Start {
    fn of(listing: &Listing) -> Self {
        Start {
            block: listing.block_start,
            offset: usize::from(listing.block_offset),
            listing_offset: 0,
            marks: Vec::new(),
        }
    }
}

impl Archive {
    /// Use the extended directory index to find the last indexed header for which `keep`
    /// holds (the index is sorted by both name and offset, so `keep` is monotone).
    fn index_seek(
        &self,
        dir: &Inode,
        listing: &Listing,
        mut keep: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<Start> {
        let mut start = Start::of(listing);
        if listing.index_count == 0 {
            return Ok(start);
        }
        let mut reader = IndexReader::new(self, dir, listing)?;
        let mut chosen: Option<IndexMark> = None;
        let mut following: Option<IndexMark> = None;
        while let Some((listing_offset, block)) = reader.next()? {
            if !keep(listing_offset, &reader.name) {
                following = Some(IndexMark {
                    listing_offset,
                    name: reader.name.clone(),
                });
                break;
            }
            // Like the kernel: the index assumes every metadata block but the last holds
            // exactly 8 KiB, so the in-block offset follows from the listing offset.
            start.block = block;
            start.offset = ((u64::from(listing.block_offset) + listing_offset)
                % METADATA_BLOCK_SIZE as u64) as usize;
            start.listing_offset = listing_offset;
            let mark = chosen.get_or_insert_with(|| IndexMark {
                listing_offset,
                name: Vec::new(),
            });
            mark.listing_offset = listing_offset;
            mark.name.clear();
            mark.name.extend_from_slice(&reader.name);
        }
        start.marks.extend(chosen);
        start.marks.extend(following);
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
        let mut marks = start.marks;
        // Popped from the back, in listing order.
        marks.reverse();
        Ok(DirState {
            cursor,
            pos: start.listing_offset,
            len: listing.len,
            dir_number: listing.number,
            header_remaining: 0,
            header_block: 0,
            header_base: 0,
            name: Vec::new(),
            scratch: Vec::new(),
            current: RawEntry {
                inode_ref: InodeRef(0),
                inode_number: 0,
                file_type: FileType::Regular,
                next_position: 0,
            },
            marks,
            expect_first: None,
            skip_until,
            done: false,
        })
    }

    /// A streaming reader of `dir`'s entries that yields those ending after `position`.
    pub(crate) fn dir_state(&self, dir: &Inode, position: u64) -> Result<DirState> {
        let listing = Listing::of(dir)?;
        let skip_until = position.saturating_sub(DOT_ENTRIES);
        if skip_until >= listing.len {
            let empty = Listing { len: 0, ..listing };
            let mut state = self.listing_reader(&empty, Start::of(&empty), 0)?;
            state.done = true;
            return Ok(state);
        }
        let start = if skip_until == 0 {
            Start::of(&listing)
        } else {
            self.index_seek(dir, &listing, |offset, _| offset <= skip_until)?
        };
        self.listing_reader(&listing, start, skip_until)
    }

    /// Find `name` in `dir`, jumping through the directory index and stopping as soon as the
    /// sorted listing passes the name. Each name is decoded into a reused buffer and compared
    /// there: only the match is copied out.
    pub(crate) fn find_entry(&self, dir: &Inode, name: &[u8]) -> Result<Option<DirEntry>> {
        let listing = Listing::of(dir)?;
        if check_name(name).is_err() || listing.len == 0 {
            return Ok(None);
        }
        let start = self.index_seek(dir, &listing, |_, indexed| indexed <= name)?;
        let mut state = self.listing_reader(&listing, start, 0)?;
        Ok(if state.find(self, name)? {
            Some(state.entry())
        } else {
            None
        })
    }
}

/// An entry as parsed, without its name (which stays in [`DirState::name`]).
#[derive(Clone, Copy)]
struct RawEntry {
    inode_ref: InodeRef,
    inode_number: u32,
    file_type: FileType,
    next_position: u64,
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
    /// The name of the last entry parsed (empty before the first: names are never empty).
    /// Reused across entries so a scan allocates nothing per entry.
    name: Vec<u8>,
    /// Buffer for the next name, swapped with `name` after the sort check.
    scratch: Vec<u8>,
    /// The last entry parsed, apart from its name. Kept here rather than returned: passing the
    /// large `Result<Option<_>>` back through memory cost a store-forwarding stall per entry.
    current: RawEntry,
    /// Directory index entries this read will pass, next one last.
    marks: Vec<IndexMark>,
    /// The name the header just read must start with (from the index).
    expect_first: Option<Vec<u8>>,
    /// Entries ending at or before this listing offset are skipped (resuming).
    skip_until: u64,
    done: bool,
}

impl DirState {
    /// The next entry, or `None` at the end. After an error the state is finished.
    pub(crate) fn next_entry(&mut self, archive: &Archive) -> Result<Option<DirEntry>> {
        Ok(if self.next_raw(archive)? {
            Some(self.entry())
        } else {
            None
        })
    }

    /// Like [`DirState::next_entry`], but leaves the entry in `self.current` and `self.name`;
    /// false at the end.
    fn next_raw(&mut self, archive: &Archive) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        let result = self.advance(archive);
        if !matches!(result, Ok(true)) {
            self.done = true;
        }
        result
    }

    /// Scan forward to `target`, stopping as soon as the sorted listing passes it. True if
    /// found (the entry is then current). Ends the read.
    fn find(&mut self, archive: &Archive, target: &[u8]) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        self.done = true;
        let Some(mut cursor) = self.cursor.take() else {
            return Ok(false);
        };
        // One loop around the inlined entry parser, with the cursor held locally: per entry
        // nothing is moved through memory but the name.
        let result = loop {
            match self.advance_with(archive, &mut cursor) {
                Ok(true) => match self.name.as_slice().cmp(target) {
                    Ordering::Less => continue,
                    Ordering::Equal => break Ok(true),
                    Ordering::Greater => break Ok(false),
                },
                other => break other,
            }
        };
        self.cursor = Some(cursor);
        result
    }

    /// The public form of the entry just parsed.
    fn entry(&self) -> DirEntry {
        let raw = self.current;
        DirEntry {
            inode_ref: raw.inode_ref,
            inode_number: raw.inode_number,
            file_type: raw.file_type,
            next_position: raw.next_position,
            name: self.name.clone(),
        }
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

    #[inline(always)]
    fn advance(&mut self, archive: &Archive) -> Result<bool> {
        let Some(mut cursor) = self.cursor.take() else {
            return Ok(false);
        };
        let result = self.advance_with(archive, &mut cursor);
        self.cursor = Some(cursor);
        result
    }

    /// Check the directory index entries the read has reached: a header must start exactly
    /// at each one's listing offset (called at every header start).
    fn check_marks(&mut self, at: u64) -> Result<()> {
        while let Some(mark) = self.marks.last() {
            if mark.listing_offset > self.pos {
                break;
            }
            if mark.listing_offset < self.pos {
                return Err(self.corrupt(
                    at,
                    format!(
                        "the directory index points at listing offset {}, which is not the \
                         start of a header",
                        mark.listing_offset
                    ),
                ));
            }
            let mark = self.marks.pop().expect("checked above");
            self.expect_first = Some(mark.name);
        }
        Ok(())
    }

    #[inline(always)]
    fn advance_with(&mut self, archive: &Archive, cursor: &mut MetaCursor) -> Result<bool> {
        loop {
            let at = cursor.block();
            if self.header_remaining == 0 {
                if self.pos == self.len {
                    if let Some(mark) = self.marks.last() {
                        return Err(self.corrupt(
                            at,
                            format!(
                                "the directory index points at listing offset {}, past the \
                                 last header",
                                mark.listing_offset
                            ),
                        ));
                    }
                    return Ok(false);
                }
                self.check_marks(at)?;
                if self.len - self.pos < 12 {
                    return Err(self.corrupt(at, "listing ends inside a directory header"));
                }
                let mut header = [0u8; 12];
                cursor.read(archive, &mut header)?;
                let field =
                    |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
                let (count, block, base) = (field(0), field(4), field(8));
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
            let mut fixed = [0u8; 8];
            cursor.read(archive, &mut fixed)?;
            let field = |i: usize| u16::from_le_bytes([fixed[i], fixed[i + 1]]);
            let offset = field(0);
            let delta = field(2) as i16;
            let raw_type = field(4);
            let name_len = usize::from(field(6)) + 1;
            self.pos += 8;
            if name_len > MAX_NAME_LEN {
                return Err(self.corrupt(at, format!("entry name length {name_len} exceeds 256")));
            }
            if self.len - self.pos < name_len as u64 {
                return Err(self.corrupt(at, "listing ends inside an entry name"));
            }
            cursor.read_into(archive, name_len, &mut self.scratch)?;
            let name = &self.scratch;
            self.pos += name_len as u64;
            self.header_remaining -= 1;
            if let Err(problem) = check_name(name) {
                return Err(self.corrupt(
                    at,
                    format!("entry {:?}: {problem}", String::from_utf8_lossy(name)),
                ));
            }
            let Some(file_type) = basic_file_type(raw_type) else {
                return Err(self.corrupt(
                    at,
                    format!(
                        "entry {:?} has type {raw_type}, not a basic inode type 1..=7",
                        String::from_utf8_lossy(name)
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
                            String::from_utf8_lossy(name),
                            archive.superblock.inode_count
                        ),
                    ))
                }
            };
            if usize::from(offset) >= METADATA_BLOCK_SIZE {
                return Err(self.corrupt(at, format!("entry inode offset {offset} exceeds 8191")));
            }
            if !self.name.is_empty() && self.name.as_slice() >= name.as_slice() {
                return Err(self.corrupt(
                    at,
                    format!(
                        "entries not strictly sorted: {:?} follows {:?}",
                        String::from_utf8_lossy(name),
                        String::from_utf8_lossy(&self.name)
                    ),
                ));
            }
            if let Some(expected) = self.expect_first.take() {
                if expected != *name {
                    return Err(self.corrupt(
                        at,
                        format!(
                            "the directory index names {:?} for this header, but its first \
                             entry is {:?}",
                            String::from_utf8_lossy(&expected),
                            String::from_utf8_lossy(name)
                        ),
                    ));
                }
            }
            std::mem::swap(&mut self.name, &mut self.scratch);
            if self.pos <= self.skip_until {
                continue;
            }
            self.current = RawEntry {
                inode_ref: InodeRef((u64::from(self.header_block) << 16) | u64::from(offset)),
                inode_number,
                file_type,
                next_position: self.pos + DOT_ENTRIES,
            };
            return Ok(true);
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

    #[test]
    fn slash_and_nul_are_found_at_every_position() {
        for len in 1..=40 {
            let clean: Vec<u8> = (0..len).map(|i| b'0' + (i % 75) as u8).collect();
            assert!(check_name(&clean).is_ok() || clean == b"." || clean == b"..");
            assert!(!super::has_slash_or_nul(&clean), "{clean:?}");
            for at in 0..len {
                for bad in [b'/', 0] {
                    let mut name = clean.clone();
                    name[at] = bad;
                    assert!(super::has_slash_or_nul(&name), "{name:?}");
                }
            }
        }
        // Bytes next to the special values must not trip the word test.
        assert!(!super::has_slash_or_nul(&[
            0x2e, 0x30, 0x01, 0xff, 0x80, 0x2e, 0x30, 0x01, 0xaf
        ]));
    }
}
