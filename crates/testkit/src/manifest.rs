//! Field-by-field tree comparison.
//!
//! [`Manifest::scan`] walks a directory tree iteratively (no recursion, so 60-level trees are
//! fine; symlinks are never followed) and records for every path its type, permission bits,
//! owner, mtime, size, a streamed [`ContentHash`], symlink target, device number, sorted xattrs
//! and hard-link identity. [`diff`] compares two manifests and returns readable
//! [`Difference`]s; hard links are compared as partitions of paths (which names share an inode),
//! not by inode numbers or link counts.
//!
//! A manifest can also be built from anything else that can describe a tree (an image read
//! through the library API, say) with [`Manifest::insert`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::hash::{ContentHash, ContentHasher};
use crate::sys;

/// What kind of file an entry is, with its type-specific payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory (its size is file-system specific and not recorded).
    Dir,
    /// A regular file.
    File {
        /// Size in bytes.
        size: u64,
        /// Content hash (holes and written zeros hash the same).
        hash: ContentHash,
    },
    /// A symbolic link.
    Symlink {
        /// The raw target.
        target: Vec<u8>,
    },
    /// A character device.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
}

impl EntryKind {
    /// Short type name for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            EntryKind::Dir => "directory",
            EntryKind::File { .. } => "regular file",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::CharDev { .. } => "char device",
            EntryKind::BlockDev { .. } => "block device",
            EntryKind::Fifo => "fifo",
            EntryKind::Socket => "socket",
        }
    }
}

/// Everything recorded about one path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Type and payload.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time in whole seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes `(full name, value)`, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Inode identity for hard-link grouping (e.g. `(st_dev, st_ino)`, or `(0, inode number)`
    /// for an image). `None` for directories. Only equality between entries of the same
    /// manifest matters.
    pub link_key: Option<(u64, u64)>,
}

/// The records of a whole tree, keyed by path relative to the root (`b""` is the root itself;
/// components are joined with `/`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Path (relative, raw bytes) → record.
    pub entries: BTreeMap<Vec<u8>, Entry>,
    /// Path → link count (`st_nlink`, or the count an image stores), where the manifest's
    /// source knows it. Kept apart from [`Entry`] because it is compared only on request
    /// ([`DiffOptions::check_nlink`]): what a reader reports for it varies more than the rest.
    pub nlinks: BTreeMap<Vec<u8>, u64>,
}

impl Manifest {
    /// An empty manifest (fill it with [`Manifest::insert`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `entry` at relative path `path` (`b""` for the root).
    pub fn insert(&mut self, path: impl Into<Vec<u8>>, entry: Entry) {
        self.entries.insert(path.into(), entry);
    }

    /// Record the link count of `path`.
    pub fn set_nlink(&mut self, path: impl Into<Vec<u8>>, nlink: u64) {
        self.nlinks.insert(path.into(), nlink);
    }

    /// The record at `path`, if any.
    pub fn get(&self, path: impl AsRef<[u8]>) -> Option<&Entry> {
        self.entries.get(path.as_ref())
    }

    /// Number of paths, the root included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when any entry carries an xattr.
    pub fn has_xattrs(&self) -> bool {
        self.entries.values().any(|e| !e.xattrs.is_empty())
    }

    /// Scan the tree at `root` (not following symlinks, the root included).
    pub fn scan(root: impl AsRef<Path>) -> io::Result<Manifest> {
        let root = root.as_ref();
        let mut manifest = Manifest::new();
        let mut pending: Vec<(Vec<u8>, PathBuf)> = vec![(Vec::new(), root.to_path_buf())];
        while let Some((rel, path)) = pending.pop() {
            let meta = fs::symlink_metadata(&path).map_err(|e| annotate(e, &path))?;
            let entry = scan_entry(&path, &meta).map_err(|e| annotate(e, &path))?;
            if meta.is_dir() {
                for child in fs::read_dir(&path).map_err(|e| annotate(e, &path))? {
                    let child = child.map_err(|e| annotate(e, &path))?;
                    let name = child.file_name();
                    let mut child_rel = rel.clone();
                    if !child_rel.is_empty() {
                        child_rel.push(b'/');
                    }
                    child_rel.extend_from_slice(name.as_bytes());
                    pending.push((child_rel, child.path()));
                }
            }
            manifest.set_nlink(rel.clone(), meta.nlink());
            manifest.insert(rel, entry);
        }
        Ok(manifest)
    }
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn scan_entry(path: &Path, meta: &fs::Metadata) -> io::Result<Entry> {
    let ft = meta.file_type();
    let (major, minor) = sys::major_minor(meta.rdev());
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File {
            size: meta.len(),
            hash: hash_file(path, meta.len())?,
        }
    } else if ft.is_symlink() {
        EntryKind::Symlink {
            target: fs::read_link(path)?.as_os_str().as_bytes().to_vec(),
        }
    } else if ft.is_char_device() {
        EntryKind::CharDev { major, minor }
    } else if ft.is_block_device() {
        EntryKind::BlockDev { major, minor }
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else if ft.is_socket() {
        EntryKind::Socket
    } else {
        return Err(io::Error::other("unknown file type"));
    };
    Ok(Entry {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        xattrs: sys::lxattrs(path)?,
        link_key: (!ft.is_dir()).then(|| (meta.dev(), meta.ino())),
    })
}

/// Hash a regular file's content, skipping holes without reading them.
pub fn hash_file(path: &Path, size: u64) -> io::Result<ContentHash> {
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut hasher = ContentHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0u64;
    while let Some((start, end)) = sys::next_data(&file, pos, size)? {
        hasher.write_zeros(start - pos);
        let mut remaining = end - start;
        std::io::Seek::seek(&mut file, io::SeekFrom::Start(start))?;
        while remaining > 0 {
            let want = remaining.min(buf.len() as u64) as usize;
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while hashing",
                ));
            }
            hasher.write(&buf[..n]);
            remaining -= n as u64;
        }
        pos = end;
    }
    hasher.write_zeros(size - pos);
    Ok(hasher.finish())
}

/// What [`diff`] should not compare.
#[derive(Clone, Debug, Default)]
pub struct DiffOptions {
    /// Skip the mtime of the root directory (extraction into an existing dir may not set it).
    pub ignore_root_mtime: bool,
    /// Skip mode, owner and mtime of the root directory.
    pub ignore_root_metadata: bool,
    /// Skip all mtimes.
    pub ignore_mtime: bool,
    /// Skip mtimes of directories only.
    pub ignore_dir_mtime: bool,
    /// Skip uid/gid.
    pub ignore_owners: bool,
    /// Skip xattrs entirely.
    pub ignore_xattrs: bool,
    /// Skip xattrs whose name starts with one of these (e.g. `b"security.selinux"`).
    pub ignore_xattr_prefixes: Vec<Vec<u8>>,
    /// Skip hard-link grouping.
    pub ignore_hard_links: bool,
    /// Skip these relative paths and everything below them.
    pub ignore_paths: Vec<Vec<u8>>,
    /// Also compare link counts ([`Manifest::nlinks`]; a side without one counts as unknown,
    /// which differs from any number). Off by default: hard links are compared as groups, and
    /// a directory's count depends on the file system.
    pub check_nlink: bool,
    /// Also compare the permission bits of symlinks (Linux always shows 0777, so this checks
    /// what an image stores as seen through a reader that reports it).
    pub check_symlink_mode: bool,
}

impl DiffOptions {
    /// Compare everything except the root directory's mtime.
    pub fn ignoring_root_mtime() -> Self {
        DiffOptions {
            ignore_root_mtime: true,
            ..Self::default()
        }
    }

    fn ignores_path(&self, path: &[u8]) -> bool {
        self.ignore_paths.iter().any(|p| {
            path.starts_with(p) && (path.len() == p.len() || path[p.len()] == b'/' || p.is_empty())
        })
    }

    fn keeps_xattr(&self, name: &[u8]) -> bool {
        !self
            .ignore_xattr_prefixes
            .iter()
            .any(|p| name.starts_with(p))
    }
}

/// One difference between two manifests `a` and `b`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// The path exists only in `a`.
    OnlyInA {
        /// Relative path.
        path: Vec<u8>,
        /// Its type in `a`.
        kind: &'static str,
    },
    /// The path exists only in `b`.
    OnlyInB {
        /// Relative path.
        path: Vec<u8>,
        /// Its type in `b`.
        kind: &'static str,
    },
    /// A field differs.
    Field {
        /// Relative path.
        path: Vec<u8>,
        /// Field name (`type`, `mode`, `uid`, `content`, ...).
        field: &'static str,
        /// Value in `a`, formatted.
        a: String,
        /// Value in `b`, formatted.
        b: String,
    },
    /// The set of names sharing this path's inode differs.
    HardLinks {
        /// Relative path.
        path: Vec<u8>,
        /// Names hard-linked with it in `a` (itself included; one name = not linked).
        a: Vec<Vec<u8>>,
        /// Names hard-linked with it in `b`.
        b: Vec<Vec<u8>>,
    },
}

/// Render a relative path for humans: `/` for the root, invalid UTF-8 escaped.
pub fn show_path(p: &[u8]) -> String {
    if p.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", p.escape_ascii())
    }
}

fn show_bytes(b: &[u8]) -> String {
    if b.len() > 80 {
        format!("\"{}...\" ({} bytes)", b[..60].escape_ascii(), b.len())
    } else {
        format!("\"{}\"", b.escape_ascii())
    }
}

fn show_xattrs(x: &[(Vec<u8>, Vec<u8>)]) -> String {
    let items: Vec<String> = x
        .iter()
        .map(|(n, v)| format!("{}={}", n.escape_ascii(), show_bytes(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn show_group(g: &[Vec<u8>]) -> String {
    let items: Vec<String> = g.iter().map(|p| show_path(p)).collect();
    format!("[{}]", items.join(", "))
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::OnlyInA { path, kind } => {
                write!(f, "{}: {kind} only in the first tree", show_path(path))
            }
            Difference::OnlyInB { path, kind } => {
                write!(f, "{}: {kind} only in the second tree", show_path(path))
            }
            Difference::Field { path, field, a, b } => {
                write!(f, "{}: {field} differs: {a} vs {b}", show_path(path))
            }
            Difference::HardLinks { path, a, b } => write!(
                f,
                "{}: hard-link group differs: {} vs {}",
                show_path(path),
                show_group(a),
                show_group(b)
            ),
        }
    }
}

fn link_groups(m: &Manifest, opts: &DiffOptions) -> HashMap<Vec<u8>, Vec<Vec<u8>>> {
    let mut by_key: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    for (path, e) in &m.entries {
        if let Some(k) = e.link_key {
            if !opts.ignores_path(path) {
                by_key.entry(k).or_default().push(path.clone());
            }
        }
    }
    let mut out = HashMap::new();
    for mut group in by_key.into_values() {
        group.sort();
        for p in &group {
            out.insert(p.clone(), group.clone());
        }
    }
    out
}

/// Compare manifest `a` with manifest `b` field by field.
pub fn diff(a: &Manifest, b: &Manifest, opts: &DiffOptions) -> Vec<Difference> {
    let mut out = Vec::new();
    for (path, ea) in &a.entries {
        if opts.ignores_path(path) {
            continue;
        }
        match b.entries.get(path) {
            None => out.push(Difference::OnlyInA {
                path: path.clone(),
                kind: ea.kind.type_name(),
            }),
            Some(eb) => {
                compare_entry(path, ea, eb, opts, &mut out);
                if opts.check_nlink && !(path.is_empty() && opts.ignore_root_metadata) {
                    let show = |m: &Manifest| {
                        m.nlinks
                            .get(path)
                            .map_or_else(|| "unknown".to_string(), u64::to_string)
                    };
                    let (na, nb) = (show(a), show(b));
                    if na != nb {
                        out.push(Difference::Field {
                            path: path.clone(),
                            field: "nlink",
                            a: na,
                            b: nb,
                        });
                    }
                }
            }
        }
    }
    for (path, eb) in &b.entries {
        if !opts.ignores_path(path) && !a.entries.contains_key(path) {
            out.push(Difference::OnlyInB {
                path: path.clone(),
                kind: eb.kind.type_name(),
            });
        }
    }
    if !opts.ignore_hard_links {
        let (ga, gb) = (link_groups(a, opts), link_groups(b, opts));
        let mut reported: std::collections::HashSet<Vec<Vec<u8>>> = Default::default();
        for (path, group_a) in &ga {
            let Some(group_b) = gb.get(path) else {
                continue;
            };
            if group_a != group_b && reported.insert(group_a.clone()) {
                out.push(Difference::HardLinks {
                    path: path.clone(),
                    a: group_a.clone(),
                    b: group_b.clone(),
                });
            }
        }
    }
    out.sort_by(|x, y| diff_path(x).cmp(diff_path(y)));
    out
}

fn diff_path(d: &Difference) -> &[u8] {
    match d {
        Difference::OnlyInA { path, .. }
        | Difference::OnlyInB { path, .. }
        | Difference::Field { path, .. }
        | Difference::HardLinks { path, .. } => path,
    }
}

fn compare_entry(path: &[u8], a: &Entry, b: &Entry, opts: &DiffOptions, out: &mut Vec<Difference>) {
    let mut field = |field: &'static str, va: String, vb: String| {
        if va != vb {
            out.push(Difference::Field {
                path: path.to_vec(),
                field,
                a: va,
                b: vb,
            });
        }
    };
    let is_root = path.is_empty();
    if std::mem::discriminant(&a.kind) != std::mem::discriminant(&b.kind) {
        field("type", a.kind.type_name().into(), b.kind.type_name().into());
        return;
    }
    match (&a.kind, &b.kind) {
        (EntryKind::File { size: sa, hash: ha }, EntryKind::File { size: sb, hash: hb }) => {
            field("size", sa.to_string(), sb.to_string());
            if sa == sb {
                field("content", ha.to_string(), hb.to_string());
            }
        }
        (EntryKind::Symlink { target: ta }, EntryKind::Symlink { target: tb }) => {
            field("symlink target", show_bytes(ta), show_bytes(tb));
        }
        (
            EntryKind::CharDev {
                major: ma,
                minor: na,
            }
            | EntryKind::BlockDev {
                major: ma,
                minor: na,
            },
            EntryKind::CharDev {
                major: mb,
                minor: nb,
            }
            | EntryKind::BlockDev {
                major: mb,
                minor: nb,
            },
        ) => {
            field("device number", format!("{ma}:{na}"), format!("{mb}:{nb}"));
        }
        _ => {}
    }
    let skip_root_meta = is_root && opts.ignore_root_metadata;
    let is_symlink = matches!(a.kind, EntryKind::Symlink { .. });
    if !skip_root_meta && (!is_symlink || opts.check_symlink_mode) {
        field("mode", format!("{:04o}", a.mode), format!("{:04o}", b.mode));
    }
    if !skip_root_meta && !opts.ignore_owners {
        field("uid", a.uid.to_string(), b.uid.to_string());
        field("gid", a.gid.to_string(), b.gid.to_string());
    }
    let is_dir = matches!(a.kind, EntryKind::Dir);
    let skip_mtime = opts.ignore_mtime
        || (is_root && (opts.ignore_root_mtime || opts.ignore_root_metadata))
        || (is_dir && opts.ignore_dir_mtime);
    if !skip_mtime {
        field("mtime", a.mtime.to_string(), b.mtime.to_string());
    }
    if !opts.ignore_xattrs {
        let keep = |x: &[(Vec<u8>, Vec<u8>)]| -> Vec<(Vec<u8>, Vec<u8>)> {
            x.iter()
                .filter(|(n, _)| opts.keeps_xattr(n))
                .cloned()
                .collect()
        };
        field(
            "xattrs",
            show_xattrs(&keep(&a.xattrs)),
            show_xattrs(&keep(&b.xattrs)),
        );
    }
}

/// Scan trees `a` and `b` and panic with a readable list of differences if they differ.
#[track_caller]
pub fn assert_trees_equal(a: impl AsRef<Path>, b: impl AsRef<Path>, opts: &DiffOptions) {
    let (a, b) = (a.as_ref(), b.as_ref());
    let ma = Manifest::scan(a).unwrap_or_else(|e| panic!("scanning {}: {e}", a.display()));
    let mb = Manifest::scan(b).unwrap_or_else(|e| panic!("scanning {}: {e}", b.display()));
    assert_manifests_equal(
        &ma,
        &mb,
        opts,
        &format!("{} vs {}", a.display(), b.display()),
    );
}

/// Panic with a readable list (the first 50) of differences if the manifests differ.
#[track_caller]
pub fn assert_manifests_equal(a: &Manifest, b: &Manifest, opts: &DiffOptions, what: &str) {
    let diffs = diff(a, b, opts);
    if !diffs.is_empty() {
        let mut msg = format!("{what}: {} differences\n", diffs.len());
        for d in diffs.iter().take(50) {
            msg.push_str(&format!("  {d}\n"));
        }
        if diffs.len() > 50 {
            msg.push_str(&format!("  ... and {} more\n", diffs.len() - 50));
        }
        panic!("{msg}");
    }
}
