//! A minimal reader for git's index file (`.git/index`): which paths git tracks.
//!
//! `--gitignore` keeps files that git tracks even when an ignore pattern matches them, exactly
//! as git does. We ship no external binaries, so the list of tracked paths is read straight
//! from the index: a header `DIRC`, a version and an entry count, one entry per path (stat
//! data, object id, flags, name), then extensions and a trailing checksum.
//!
//! Supported: versions 2, 3 (extended flags) and 4 (path prefix compression); SHA-1 and
//! SHA-256 object ids; split indexes (the `link` extension naming a `sharedindex.*` file, with
//! its EWAH "deleted entries" bitmap); sparse indexes (directory entries ending in `/` that
//! stand for every tracked path below them — the caller must not guess about those paths,
//! see [`TrackedPaths::in_sparse_dir`]). Anything else that does not add up (short file,
//! unknown version, an extension running past the end) is an `InvalidData` error naming the
//! file: a misread index could silently drop tracked files, so we never guess.

use std::collections::HashSet;
use std::io;
use std::path::Path;

/// Largest index we are willing to load (bounds memory on a hostile or corrupt file).
const MAX_INDEX_BYTES: u64 = 1 << 30;

/// Paths tracked in a git index, relative to the work tree root, `/`-separated.
#[derive(Debug, Default)]
pub struct TrackedPaths {
    files: HashSet<Vec<u8>>,
    /// Submodules (mode 160000 entries): tracked paths that are directories on disk.
    gitlinks: HashSet<Vec<u8>>,
    dirs: HashSet<Vec<u8>>,
    /// Sparse-index directory entries (without the trailing `/`): everything below is tracked
    /// or not according to tree objects we do not read.
    sparse_dirs: HashSet<Vec<u8>>,
}

impl TrackedPaths {
    /// True if `path` is a tracked file (or submodule).
    pub fn is_tracked(&self, path: &[u8]) -> bool {
        self.files.contains(path)
    }

    /// True if `path` is a tracked submodule.
    pub fn is_gitlink(&self, path: &[u8]) -> bool {
        self.gitlinks.contains(path)
    }

    /// True if some tracked file (or sparse directory entry) lies below directory `path`.
    pub fn has_tracked_below(&self, path: &[u8]) -> bool {
        self.dirs.contains(path)
    }

    /// The sparse directory entry that `path` is, or lies below, if any: whether such a path
    /// is tracked is not recorded in the index.
    pub fn in_sparse_dir(&self, path: &[u8]) -> Option<&[u8]> {
        if self.sparse_dirs.is_empty() {
            return None;
        }
        if let Some(dir) = self.sparse_dirs.get(path) {
            return Some(dir);
        }
        path.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'/')
            .find_map(|(i, _)| self.sparse_dirs.get(&path[..i]))
            .map(Vec::as_slice)
    }

    fn note_parents(&mut self, path: &[u8]) {
        let mut end = path.len();
        while let Some(slash) = path[..end].iter().rposition(|&b| b == b'/') {
            if !self.dirs.insert(path[..slash].to_vec()) {
                break;
            }
            end = slash;
        }
    }

    fn insert(&mut self, mut path: Vec<u8>, gitlink: bool) {
        if gitlink {
            self.gitlinks.insert(path.clone());
        }
        if path.last() == Some(&b'/') {
            // A sparse directory entry: its parents hold tracked content, and so (in git's
            // eyes) does the directory itself.
            path.pop();
            self.note_parents(&path);
            self.dirs.insert(path.clone());
            self.sparse_dirs.insert(path);
        } else {
            self.note_parents(&path);
            self.files.insert(path);
        }
    }
}

fn bad(file: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("git index {}: {what}", file.display()),
    )
}

/// Load the index at `path`; a missing file means nothing is tracked.
pub fn load(path: &Path, hash_len: usize) -> io::Result<TrackedPaths> {
    let Some(data) = read_bounded(path)? else {
        return Ok(TrackedPaths::default());
    };
    let index = parse(&data, hash_len).map_err(|what| bad(path, &what))?;
    let mut tracked = TrackedPaths::default();
    if let Some(link) = &index.link {
        // Split index: most entries live in `sharedindex.<hex id>` beside the index.
        let hex: String = link.shared_id.iter().map(|b| format!("{b:02x}")).collect();
        let shared_path = path.with_file_name(format!("sharedindex.{hex}"));
        let shared = match read_bounded(&shared_path)? {
            Some(data) => parse(&data, hash_len).map_err(|what| bad(&shared_path, &what))?,
            None => {
                return Err(bad(
                    path,
                    &format!("split index: {} is missing", shared_path.display()),
                ))
            }
        };
        if shared.link.is_some() {
            return Err(bad(&shared_path, "shared index is itself split"));
        }
        let deleted = match &link.deleted {
            Some(bitmap) => {
                ewah_positions(bitmap, shared.names.len()).map_err(|what| bad(path, &what))?
            }
            None => vec![false; shared.names.len()],
        };
        for ((name, gitlink), deleted) in shared.names.into_iter().zip(deleted) {
            if !deleted {
                tracked.insert(name, gitlink);
            }
        }
    }
    for (name, gitlink) in index.names {
        // In a split index, an entry that replaces a shared one carries no name (it takes the
        // shared entry's name, which is already in the set).
        if !name.is_empty() || index.link.is_none() {
            tracked.insert(name, gitlink);
        }
    }
    Ok(tracked)
}

fn read_bounded(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    if meta.len() > MAX_INDEX_BYTES {
        return Err(bad(path, "larger than 1 GiB"));
    }
    std::fs::read(path)
        .map(Some)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The `link` extension of a split index.
struct Link {
    shared_id: Vec<u8>,
    /// Serialized EWAH bitmap of shared entries deleted in this index.
    deleted: Option<Vec<u8>>,
}

/// What one index file holds: names in file order (possibly empty in a split index), each
/// with "is a submodule".
struct RawIndex {
    names: Vec<(Vec<u8>, bool)>,
    link: Option<Link>,
}

/// Parse index bytes. `hash_len` is 20 for SHA-1 repositories, 32 for SHA-256.
fn parse(data: &[u8], hash_len: usize) -> Result<RawIndex, String> {
    let truncated = || "truncated".to_string();
    let u32_at = |at: usize| -> Result<u32, String> {
        data.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(truncated)
    };
    if data.get(0..4) != Some(b"DIRC") {
        return Err("missing DIRC signature".into());
    }
    let version = u32_at(4)?;
    if !(2..=4).contains(&version) {
        return Err(format!("unsupported index version {version}"));
    }
    let count = u32_at(8)? as usize;
    // Every entry takes at least 40 + hash_len + 2 bytes; reject absurd counts before
    // reserving memory for them.
    if count > data.len() / (42 + hash_len) {
        return Err(format!(
            "{count} entries cannot fit in {} bytes",
            data.len()
        ));
    }
    let mut names = Vec::with_capacity(count);
    let mut pos = 12;
    let mut previous: Vec<u8> = Vec::new();
    // ctime, mtime (8 each), dev, ino, mode, uid, gid, size (4 each), then the object id.
    let fixed = 40 + hash_len;
    for n in 0..count {
        let entry_truncated = || format!("truncated in entry {n} of {count}");
        let entry_start = pos;
        let flags_at = entry_start + fixed;
        let flags = data
            .get(flags_at..flags_at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(entry_truncated)?;
        // The mode word follows ctime, mtime, dev and ino; 0o160000 marks a submodule.
        let mode = u32_at(entry_start + 24).map_err(|_| entry_truncated())?;
        let gitlink = mode & 0o170000 == 0o160000;
        pos = flags_at + 2;
        if flags & 0x4000 != 0 {
            if version < 3 {
                return Err(format!("entry {n}: extended flags in a version 2 index"));
            }
            pos += 2;
        }
        let rest = data.get(pos..).ok_or_else(entry_truncated)?;
        let name = if version == 4 {
            let (strip, used) = read_offset_varint(rest).ok_or_else(entry_truncated)?;
            let rest = &rest[used..];
            pos += used;
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(entry_truncated)?;
            let keep = previous
                .len()
                .checked_sub(strip)
                .ok_or_else(|| format!("entry {n}: bad path prefix length"))?;
            let mut name = previous[..keep].to_vec();
            name.extend_from_slice(&rest[..nul]);
            pos += nul + 1;
            name
        } else {
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(entry_truncated)?;
            let name = rest[..nul].to_vec();
            // Entries are padded with 1..=8 NULs to a multiple of 8 bytes.
            let len = pos - entry_start + nul;
            pos = entry_start + (len + 8) / 8 * 8;
            if pos > data.len() {
                return Err(entry_truncated());
            }
            name
        };
        previous.clone_from(&name);
        names.push((name, gitlink));
    }
    // Extensions: 4-byte signature, 4-byte size, payload; then the checksum. Walking them
    // to the exact end catches a file cut short anywhere.
    let mut link = None;
    loop {
        let left = data.len().checked_sub(pos).ok_or_else(truncated)?;
        if left == hash_len {
            break;
        }
        if left < 8 + hash_len {
            return Err("truncated (extension or checksum)".into());
        }
        let signature = &data[pos..pos + 4];
        let size = u32_at(pos + 4)? as usize;
        let body = data
            .get(pos + 8..)
            .and_then(|d| d.get(..size))
            .filter(|_| left - 8 - size >= hash_len)
            .ok_or_else(|| "truncated (extension runs past the end)".to_string())?;
        if signature == b"link" {
            link = Some(parse_link(body, hash_len)?);
        }
        pos += 8 + size;
    }
    Ok(RawIndex { names, link })
}

fn parse_link(body: &[u8], hash_len: usize) -> Result<Link, String> {
    let shared_id = body
        .get(..hash_len)
        .ok_or("split index link extension too short")?
        .to_vec();
    let rest = &body[hash_len..];
    let deleted = if rest.is_empty() {
        None
    } else {
        let len = ewah_len(rest).ok_or("split index: bad deleted-entries bitmap")?;
        Some(rest[..len].to_vec())
    };
    Ok(Link { shared_id, deleted })
}

/// Serialized size of the EWAH bitmap at the start of `data`: bit count (4), word count (4),
/// the 64-bit words, position of the last run-length word (4).
fn ewah_len(data: &[u8]) -> Option<usize> {
    let words = u32::from_be_bytes(data.get(4..8)?.try_into().ok()?) as usize;
    let len = words.checked_mul(8)?.checked_add(12)?;
    (len <= data.len()).then_some(len)
}

/// Which of `count` positions are set in a serialized EWAH bitmap (git's `ewah/` format:
/// run-length words with the run bit in bit 0, a 32-bit run length in bits 1..33 and a
/// literal-word count in bits 33..64, each followed by that many literal words, least
/// significant bit first). A set bit at or past `count` means the bitmap does not belong to
/// this shared index: an error. Memory is bounded by `count`, whatever the bitmap claims.
fn ewah_positions(data: &[u8], count: usize) -> Result<Vec<bool>, String> {
    let err = || "split index: bad deleted-entries bitmap".to_string();
    let len = ewah_len(data).ok_or_else(err)?;
    let mut set = vec![false; count];
    let mut mark = |bit: usize| -> Result<(), String> {
        *set.get_mut(bit).ok_or_else(err)? = true;
        Ok(())
    };
    let mut words = data[8..len - 4]
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
    let mut bit = 0usize;
    while let Some(rlw) = words.next() {
        let run_bits = ((rlw >> 1) & 0xffff_ffff) as usize * 64;
        if rlw & 1 != 0 {
            if run_bits > 0 && bit.saturating_add(run_bits) > count {
                return Err(err());
            }
            for b in bit..bit + run_bits {
                mark(b)?;
            }
        }
        bit = bit.saturating_add(run_bits);
        for _ in 0..(rlw >> 33) {
            let word = words.next().ok_or_else(err)?;
            for b in 0..64 {
                if word >> b & 1 != 0 {
                    mark(bit.saturating_add(b))?;
                }
            }
            bit = bit.saturating_add(64);
        }
    }
    Ok(set)
}

/// git's "offset" varint used by index v4 path compression; `None` if cut short or too big.
fn read_offset_varint(data: &[u8]) -> Option<(usize, usize)> {
    let mut iter = data.iter();
    let mut c = *iter.next()?;
    let mut value = usize::from(c & 0x7f);
    let mut used = 1;
    while c & 0x80 != 0 {
        c = *iter.next()?;
        used += 1;
        value = value
            .checked_add(1)?
            .checked_mul(128)?
            .checked_add(usize::from(c & 0x7f))?;
    }
    Some((value, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One v2 entry with `name`, SHA-1 sized.
    fn entry(name: &[u8]) -> Vec<u8> {
        let mut e = vec![0u8; 60];
        e.extend_from_slice(&(name.len() as u16).to_be_bytes());
        e.extend_from_slice(name);
        let len = e.len();
        e.resize((len + 8) / 8 * 8, 0);
        e
    }

    fn index(names: &[&[u8]]) -> Vec<u8> {
        let mut d = b"DIRC".to_vec();
        d.extend_from_slice(&2u32.to_be_bytes());
        d.extend_from_slice(&(names.len() as u32).to_be_bytes());
        for n in names {
            d.extend_from_slice(&entry(n));
        }
        d.extend_from_slice(&[0u8; 20]);
        d
    }

    #[test]
    fn every_truncation_is_an_error() {
        let data = index(&[b"a/b", b"c"]);
        assert_eq!(parse(&data, 20).unwrap().names.len(), 2);
        for cut in 0..data.len() {
            assert!(parse(&data[..cut], 20).is_err(), "cut at {cut} accepted");
        }
        let mut long = data.clone();
        long.push(0);
        assert!(parse(&long, 20).is_err());
    }

    #[test]
    fn huge_entry_count_is_rejected_without_allocating() {
        let mut data = index(&[]);
        data[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse(&data, 20).is_err());
    }

    #[test]
    fn ewah_runs_and_literals() {
        // 200 bits: a run of one set word (bits 0..64), then one literal word with bits 1, 3.
        let rlw: u64 = 1 | (1 << 1) | (1 << 33);
        let mut d = Vec::new();
        d.extend_from_slice(&200u32.to_be_bytes());
        d.extend_from_slice(&2u32.to_be_bytes());
        d.extend_from_slice(&rlw.to_be_bytes());
        d.extend_from_slice(&0b1010u64.to_be_bytes());
        d.extend_from_slice(&0u32.to_be_bytes());
        let set = ewah_positions(&d, 200).unwrap();
        let want: Vec<bool> = (0..200).map(|i| i < 64 || i == 65 || i == 67).collect();
        assert_eq!(set, want);
        assert!(ewah_positions(&d[..d.len() - 9], 200).is_err());
        // A set bit past the shared index's entries is corruption, not a silent no-op.
        assert!(ewah_positions(&d, 66).is_err());
    }

    #[test]
    fn sparse_dirs_cover_their_contents() {
        let mut t = TrackedPaths::default();
        t.insert(b"a/b/".to_vec(), false);
        t.insert(b"c".to_vec(), false);
        t.insert(b"m".to_vec(), true);
        assert!(t.is_gitlink(b"m") && !t.is_gitlink(b"c"));
        assert!(t.has_tracked_below(b"a"));
        assert!(t.has_tracked_below(b"a/b"));
        assert_eq!(t.in_sparse_dir(b"a/b"), Some(&b"a/b"[..]));
        assert_eq!(t.in_sparse_dir(b"a/b/x/y"), Some(&b"a/b"[..]));
        assert_eq!(t.in_sparse_dir(b"a/bx"), None);
        assert_eq!(t.in_sparse_dir(b"c"), None);
        assert!(t.is_tracked(b"c"));
    }
}
