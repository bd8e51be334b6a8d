//! A minimal reader for git's index file (`.git/index`, versions 2, 3 and 4).
//!
//! `--gitignore` keeps files that git tracks even when an ignore pattern matches them, exactly
//! as git does. We ship no external binaries, so the list of tracked paths is read straight
//! from the index: a header `DIRC`, a version and an entry count, then one entry per path
//! (stat data, object id, flags, name). Extensions after the entries are not needed.

use std::collections::HashSet;
use std::io;
use std::path::Path;

/// Largest index we are willing to load (bounds memory on a hostile or corrupt file).
const MAX_INDEX_BYTES: u64 = 1 << 30;

/// Paths tracked in a git index, relative to the work tree root, `/`-separated.
#[derive(Debug, Default)]
pub struct TrackedPaths {
    files: HashSet<Vec<u8>>,
    dirs: HashSet<Vec<u8>>,
}

impl TrackedPaths {
    /// True if `path` is a tracked file.
    pub fn is_tracked(&self, path: &[u8]) -> bool {
        self.files.contains(path)
    }

    /// True if some tracked file lies below directory `path`.
    pub fn has_tracked_below(&self, path: &[u8]) -> bool {
        self.dirs.contains(path)
    }

    fn insert(&mut self, path: Vec<u8>) {
        let mut end = path.len();
        while let Some(slash) = path[..end].iter().rposition(|&b| b == b'/') {
            if !self.dirs.insert(path[..slash].to_vec()) {
                break;
            }
            end = slash;
        }
        self.files.insert(path);
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("git index: {what}"))
}

/// Load the index at `path`; a missing file means nothing is tracked.
pub fn load(path: &Path, hash_len: usize) -> io::Result<TrackedPaths> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TrackedPaths::default()),
        Err(e) => return Err(e),
    };
    if meta.len() > MAX_INDEX_BYTES {
        return Err(bad("index file larger than 1 GiB"));
    }
    parse(&std::fs::read(path)?, hash_len)
}

/// Parse index bytes. `hash_len` is 20 for SHA-1 repositories, 32 for SHA-256.
pub fn parse(data: &[u8], hash_len: usize) -> io::Result<TrackedPaths> {
    let u32_at = |at: usize| -> io::Result<u32> {
        data.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("truncated"))
    };
    if data.get(0..4) != Some(b"DIRC") {
        return Err(bad("missing DIRC signature"));
    }
    let version = u32_at(4)?;
    if !(2..=4).contains(&version) {
        return Err(bad(&format!("unsupported version {version}")));
    }
    let count = u32_at(8)? as usize;
    let mut tracked = TrackedPaths::default();
    let mut pos = 12;
    let mut previous: Vec<u8> = Vec::new();
    // ctime, mtime (8 each), dev, ino, mode, uid, gid, size (4 each), then the object id.
    let fixed = 40 + hash_len;
    for _ in 0..count {
        let entry_start = pos;
        let flags_at = entry_start + fixed;
        let flags = data
            .get(flags_at..flags_at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| bad("truncated entry"))?;
        pos = flags_at + 2;
        if version >= 3 && flags & 0x4000 != 0 {
            pos += 2;
        }
        let name = if version == 4 {
            let (strip, used) =
                read_offset_varint(data.get(pos..).ok_or_else(|| bad("truncated"))?)?;
            pos += used;
            let rest = data.get(pos..).ok_or_else(|| bad("truncated"))?;
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| bad("unterminated name"))?;
            let keep = previous
                .len()
                .checked_sub(strip)
                .ok_or_else(|| bad("bad prefix length"))?;
            let mut name = previous[..keep].to_vec();
            name.extend_from_slice(&rest[..nul]);
            pos += nul + 1;
            name
        } else {
            let rest = data.get(pos..).ok_or_else(|| bad("truncated"))?;
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| bad("unterminated name"))?;
            let name = rest[..nul].to_vec();
            // Entries are padded with 1..=8 NULs to a multiple of 8 bytes.
            let len = pos - entry_start + nul;
            pos = entry_start + (len + 8) / 8 * 8;
            name
        };
        previous.clone_from(&name);
        tracked.insert(name);
    }
    Ok(tracked)
}

/// git's "offset" varint used by index v4 path compression.
fn read_offset_varint(data: &[u8]) -> io::Result<(usize, usize)> {
    let mut iter = data.iter();
    let mut c = *iter.next().ok_or_else(|| bad("truncated varint"))?;
    let mut value = usize::from(c & 0x7f);
    let mut used = 1;
    while c & 0x80 != 0 {
        c = *iter.next().ok_or_else(|| bad("truncated varint"))?;
        used += 1;
        value = value
            .checked_add(1)
            .and_then(|v| v.checked_mul(128))
            .map(|v| v + usize::from(c & 0x7f))
            .ok_or_else(|| bad("varint overflow"))?;
    }
    Ok((value, used))
}
