//! Local test support until `squashbox-testkit` lands: an edge-case tree builder, a
//! field-by-field tree snapshot for comparison, mksquashfs/unsquashfs runners, and the
//! skip-vs-fail rule (missing root/tools skip, but panic when `CI=true`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{AtFlags, Mode, Timespec, Timestamps, CWD};

/// Skip (return false) when `ok` is false, unless CI=true, where a skip is a failure.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("required for this test under CI=true: {what}");
    }
    eprintln!("SKIP: {what} not available");
    false
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub fn have_tool(name: &str) -> bool {
    Command::new(name)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stdout.is_empty())
}

/// Run mksquashfs `src` -> `image` with extra arguments.
pub fn mksquashfs(src: &Path, image: &Path, extra: &[&str]) {
    let out = Command::new("mksquashfs")
        .arg(src)
        .arg(image)
        .args(["-noappend", "-quiet", "-no-progress"])
        .args(extra)
        .output()
        .expect("run mksquashfs");
    assert!(
        out.status.success(),
        "mksquashfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run `unsquashfs -d dest image`.
pub fn unsquashfs(image: &Path, dest: &Path) {
    let out = Command::new("unsquashfs")
        .arg("-quiet")
        .arg("-no-progress")
        .arg("-d")
        .arg(dest)
        .arg(image)
        .output()
        .expect("run unsquashfs");
    assert!(
        out.status.success(),
        "unsquashfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_mtime(path: &Path, secs: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn setxattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("lsetxattr {name} on {}: {e}", path.display()));
}

/// Build the edge-case tree under `root` (which must exist). Needs root for devices, owners
/// and trusted/security xattrs; without root those parts are left out.
///
/// Contents: files of size 0, 1, block-1, block, multi-block, a sparse file with a leading,
/// middle and trailing hole; setuid/setgid/sticky modes; a read-only directory with content;
/// relative, absolute and dangling symlinks; a 3-name hard link group and a hard-linked
/// symlink-free pair in different directories; a fifo, a socket, char and block devices;
/// user/trusted/security xattrs; odd owners; non-UTF-8 and control-character names; and
/// distinct mtimes everywhere (directories set last, bottom-up).
pub fn build_edge_tree(root: &Path, block: usize) {
    let root_user = is_root();
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::write(&p, data).unwrap();
        p
    };
    fs::create_dir_all(root.join("dir/sub/deeper")).unwrap();
    fs::create_dir(root.join("ro")).unwrap();
    fs::create_dir(root.join("sticky")).unwrap();
    fs::create_dir(root.join("setgid")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();

    w("empty_file", b"");
    w("one", b"x");
    let pattern: Vec<u8> = (0..block * 5 + 123).map(|i| (i * 7 % 251) as u8).collect();
    w("block_minus_one", &pattern[..block - 1]);
    w("block_exact", &pattern[..block]);
    w("multi_block", &pattern);
    w("dir/sub/deeper/leaf", b"deep leaf\n");
    w("dir/a.txt", b"alpha\n");
    w("ro/inside", b"in a read-only dir\n");

    // Sparse: hole, data, hole, data, trailing hole.
    let sparse = root.join("sparse");
    {
        let f = fs::File::create(&sparse).unwrap();
        f.write_at(&pattern[..block], (block * 4) as u64).unwrap();
        f.write_at(b"tail data", (block * 12) as u64).unwrap();
        f.set_len((block * 20) as u64).unwrap();
    }
    // A file that is entirely a hole.
    {
        let f = fs::File::create(root.join("all_hole")).unwrap();
        f.set_len((block * 3) as u64).unwrap();
    }

    // Hard links: three names for one inode, across directories.
    w("link_a", b"hard linked content\n");
    fs::hard_link(root.join("link_a"), root.join("dir/link_b")).unwrap();
    fs::hard_link(root.join("link_a"), root.join("dir/sub/link_c")).unwrap();

    // Symlinks.
    std::os::unix::fs::symlink("one", root.join("sym_rel")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("sym_abs")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("sym_dangling")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("dir/sub/sym_up")).unwrap();

    // Special files.
    rustix::fs::mknodat(
        CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    {
        let _listener = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();
    }
    if root_user {
        rustix::fs::mknodat(
            CWD,
            root.join("chardev"),
            rustix::fs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o620),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        rustix::fs::mknodat(
            CWD,
            root.join("blockdev"),
            rustix::fs::FileType::BlockDevice,
            Mode::from_raw_mode(0o660),
            rustix::fs::makedev(259, 300_000 & 0xfffff),
        )
        .unwrap();
    }

    // Odd names.
    fs::write(
        root.join(OsStr::from_bytes(b"bad_utf8_\xff\xfe")),
        b"raw bytes name",
    )
    .unwrap();
    fs::write(root.join(OsStr::from_bytes(b"new\nline")), b"newline name").unwrap();
    w("sp ace", b"space");

    // Xattrs.
    setxattr(&root.join("one"), "user.comment", b"hello xattr");
    setxattr(&root.join("dir"), "user.dirattr", b"on a directory");
    setxattr(&root.join("empty_file"), "user.empty", b"");
    if root_user {
        setxattr(&root.join("multi_block"), "trusted.tk", b"trusted value");
        setxattr(&root.join("one"), "security.sec", b"security value");
    }

    // Modes.
    let setuid = w("setuid_bin", b"#!/bin/sh\n");
    chmod(&setuid, 0o4755);
    let setgid_file = w("setgid_file", b"g");
    chmod(&setgid_file, 0o2750);
    chmod(&root.join("multi_block"), 0o600);
    chmod(&root.join("one"), 0o444);
    chmod(&root.join("sticky"), 0o1777);
    chmod(&root.join("setgid"), 0o2775);
    chmod(&root.join("empty"), 0o700);

    // Owners (root only). chown clears setuid, so re-apply afterwards.
    if root_user {
        std::os::unix::fs::lchown(root.join("one"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(root.join("dir"), Some(1000), Some(100)).unwrap();
        std::os::unix::fs::lchown(root.join("sym_rel"), Some(42), Some(43)).unwrap();
        std::os::unix::fs::lchown(root.join("fifo"), Some(7), Some(8)).unwrap();
        std::os::unix::fs::lchown(&setuid, Some(0), Some(0)).unwrap();
        std::os::unix::fs::lchown(root.join("sparse"), Some(65534), Some(65534)).unwrap();
        chmod(&setuid, 0o4755);
    }

    // The read-only dir last (after its content exists).
    chmod(&root.join("ro"), 0o555);

    // Mtimes: every entry a distinct time, directories after their contents (deepest first).
    let mut all = Vec::new();
    collect(root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in all.iter().enumerate() {
        set_mtime(p, 1_000_000_000 + (i as i64) * 3600);
    }
    set_mtime(root, 999_999_999);
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
}

/// Everything we compare about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub rdev: u64,
    pub target: Option<Vec<u8>>,
    pub content: Option<Vec<u8>>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Index of the hard-link group (first path sharing the inode), for multiply linked files.
    pub link_group: Option<Vec<u8>>,
    /// True when the file occupies fewer bytes on disk than its size (has holes).
    pub has_holes: bool,
}

/// Snapshot options.
#[derive(Clone, Copy)]
pub struct Snap {
    pub with_owner: bool,
    pub with_xattrs: bool,
    pub with_sockets: bool,
}

/// Snapshot a tree: relative path bytes -> entry info. The root itself is recorded as "".
pub fn snapshot(root: &Path, opts: Snap) -> BTreeMap<Vec<u8>, EntryInfo> {
    let mut paths = vec![root.to_path_buf()];
    collect(root, &mut paths);
    let mut first_of_inode: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    paths.sort();
    for p in paths {
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_char_device() {
            "chardev"
        } else {
            "blockdev"
        };
        if kind == "socket" && !opts.with_sockets {
            continue;
        }
        let link_group = (!ft.is_dir() && md.nlink() > 1).then(|| {
            first_of_inode
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        });
        let mut xattrs = BTreeMap::new();
        if opts.with_xattrs {
            let mut buf = vec![0u8; 65536];
            let n = rustix::fs::llistxattr(&p, &mut buf[..]).unwrap_or(0);
            for name in buf[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
                let mut val = vec![0u8; 65536];
                let m = rustix::fs::lgetxattr(&p, name, &mut val[..]).unwrap();
                xattrs.insert(name.to_vec(), val[..m].to_vec());
            }
        }
        out.insert(
            rel,
            EntryInfo {
                kind,
                mode: md.mode() & 0o7777,
                uid: if opts.with_owner { md.uid() } else { 0 },
                gid: if opts.with_owner { md.gid() } else { 0 },
                mtime: md.mtime(),
                // Directory sizes depend on the filesystem.
                size: if ft.is_dir() { 0 } else { md.size() },
                rdev: md.rdev(),
                target: ft
                    .is_symlink()
                    .then(|| fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec()),
                content: ft.is_file().then(|| fs::read(&p).unwrap()),
                xattrs,
                link_group,
                has_holes: ft.is_file() && md.blocks() * 512 < md.size(),
            },
        );
    }
    out
}

/// Assert two snapshots are equal, reporting the first differing path and field.
pub fn assert_same(
    expected: &BTreeMap<Vec<u8>, EntryInfo>,
    actual: &BTreeMap<Vec<u8>, EntryInfo>,
    what: &str,
) {
    let ek: BTreeSet<_> = expected.keys().collect();
    let ak: BTreeSet<_> = actual.keys().collect();
    let missing: Vec<_> = ek
        .difference(&ak)
        .map(|k| String::from_utf8_lossy(k))
        .collect();
    let extra: Vec<_> = ak
        .difference(&ek)
        .map(|k| String::from_utf8_lossy(k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: missing {missing:?}, extra {extra:?}"
    );
    for (k, e) in expected {
        let a = &actual[k];
        if e != a {
            let mut e2 = e.clone();
            let mut a2 = a.clone();
            // Keep the panic message readable.
            if e2.content == a2.content {
                e2.content = None;
                a2.content = None;
            } else {
                panic!("{what}: {}: content differs", String::from_utf8_lossy(k));
            }
            panic!(
                "{what}: {} differs:\nexpected {e2:?}\nactual   {a2:?}",
                String::from_utf8_lossy(k)
            );
        }
    }
}

/// Paths and names inside `dir` (non-recursive), for canary checks.
pub fn list_names(dir: &Path) -> BTreeSet<Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect()
}

/// Replace the unique occurrence of `from` in `image` by `to` (same length).
pub fn patch_unique(image: &Path, from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut data = fs::read(image).unwrap();
    let hits: Vec<usize> = data
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected exactly one {:?} in image",
        String::from_utf8_lossy(from)
    );
    data[hits[0]..hits[0] + to.len()].copy_from_slice(to);
    fs::write(image, data).unwrap();
}
