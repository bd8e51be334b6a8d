//! Local test support for squashbox-build: a varied source tree, a field-by-field manifest
//! comparator, a loop-mount guard, tool checks. (To be replaced by `squashbox-testkit` once
//! it lands.)
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use squashbox_format::{Archive, FileType};

/// True when running in CI, where skipping is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skip (return false) on a developer machine; panic in CI.
pub fn skip(reason: &str) -> bool {
    if in_ci() {
        panic!("required for this test in CI: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// Root is needed for devices, chown and loop mounts.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    (unsafe { libc::geteuid() } == 0) || skip("root privileges")
}

/// An external tool must be on PATH.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    found || skip(&format!("tool {tool}"))
}

/// Run a command with a timeout (via coreutils `timeout`), panicking with its stderr on failure.
pub fn run(program: &str, args: &[&OsStr]) -> String {
    let output = Command::new("timeout")
        .arg("300")
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {:?} failed: {}\n{}",
        args,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A read-only loop mount that is unmounted on drop, whatever happens in the test.
pub struct LoopMount {
    dir: PathBuf,
}

impl LoopMount {
    /// Mount `image` on `dir` (created if needed) with the kernel's squashfs driver.
    pub fn new(image: &Path, dir: &Path) -> Self {
        fs::create_dir_all(dir).unwrap();
        run(
            "mount",
            &[
                OsStr::new("-t"),
                OsStr::new("squashfs"),
                OsStr::new("-o"),
                OsStr::new("loop,ro"),
                image.as_os_str(),
                dir.as_os_str(),
            ],
        );
        LoopMount {
            dir: dir.to_path_buf(),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        for args in [&["umount"][..], &["umount", "-l"][..]] {
            let ok = Command::new("timeout")
                .arg("60")
                .args(args)
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
        }
        eprintln!("warning: could not unmount {}", self.dir.display());
    }
}

/// Can this machine loop-mount squashfs?
pub fn require_loop_mount() -> bool {
    if !require_root() || !require_tool("mount") {
        return false;
    }
    let ok = fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("squashfs"))
        || Command::new("modprobe")
            .arg("squashfs")
            .status()
            .is_ok_and(|s| s.success());
    ok && Path::new("/dev/loop-control").exists() || skip("squashfs loop mounts")
}

// ---------------------------------------------------------------------------------------------
// Manifest: every field a user relies on, per path.

/// What one path looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub permissions: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub size: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub content: Option<u128>,
    pub target: Option<Vec<u8>>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For hard-linked non-directories: the first path (sorted) with the same inode.
    pub link_group: Option<Vec<u8>>,
}

/// Path (relative, bytes) → entry.
pub type Manifest = BTreeMap<Vec<u8>, Entry>;

fn kind_of(ft: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    }
}

/// Files above this size are compared by samples (start, middle, 4 GiB, end) so the huge
/// sparse test does not hash gigabytes of zeros four times.
const SAMPLE_ABOVE: u64 = 256 << 20;
const SAMPLE_LEN: u64 = 1 << 16;

fn sample_offsets(size: u64) -> Vec<u64> {
    let mut offsets = vec![0, size / 2, 4 << 30, size.saturating_sub(SAMPLE_LEN)];
    offsets.retain(|o| *o < size);
    offsets
}

/// Hash of a file's content (sampled for huge files) through a positional reader.
fn hash_content(size: u64, mut read_at: impl FnMut(u64, &mut [u8]) -> usize) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    if size > SAMPLE_ABOVE {
        for offset in sample_offsets(size) {
            let len = SAMPLE_LEN.min(size - offset) as usize;
            let mut got = 0;
            while got < len {
                let n = read_at(offset + got as u64, &mut buf[got..len]);
                assert!(n > 0, "short read at {offset}");
                got += n;
            }
            hasher.update(&offset.to_le_bytes());
            hasher.update(&buf[..len]);
        }
        return hasher.digest128();
    }
    let mut offset = 0u64;
    loop {
        let n = read_at(offset, &mut buf);
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    assert_eq!(offset, size, "content length");
    hasher.digest128()
}

fn hash_file(path: &Path) -> u128 {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    hash_content(size, |offset, buf| f.read_at(buf, offset).unwrap())
}

/// Storable xattrs of a path (user/trusted/security), sorted.
pub fn xattrs_of(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut list = vec![0u8; 65536];
    // SAFETY: `c` is a valid C string and `list` a writable buffer of the given length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in list[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        if !(name.starts_with(b"user.")
            || name.starts_with(b"trusted.")
            || name.starts_with(b"security."))
        {
            continue;
        }
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: valid C strings and a writable buffer of the given length.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(m >= 0, "lgetxattr {}", path.display());
        out.push((name.to_vec(), value[..m as usize].to_vec()));
    }
    out.sort();
    out
}

/// Scan a directory tree on disk (without following symlinks).
pub fn scan(root: &Path) -> Manifest {
    let mut manifest = Manifest::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    let mut stack = vec![(root.to_path_buf(), Vec::new())];
    let mut raw = Vec::new();
    while let Some((path, rel)) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let kind = kind_of(meta.file_type());
        let entry = Entry {
            kind,
            permissions: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            size: if kind == "file" || kind == "symlink" {
                meta.len()
            } else {
                0
            },
            nlink: meta.nlink(),
            rdev: if kind == "block" || kind == "char" {
                meta.rdev()
            } else {
                0
            },
            content: (kind == "file").then(|| hash_file(&path)),
            target: (kind == "symlink").then(|| {
                fs::read_link(&path)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            }),
            xattrs: xattrs_of(&path),
            link_group: None,
        };
        if kind != "dir" && meta.nlink() > 1 {
            raw.push((rel.clone(), (meta.dev(), meta.ino())));
        }
        if kind == "dir" {
            for child in fs::read_dir(&path).unwrap() {
                let child = child.unwrap();
                let mut child_rel = rel.clone();
                if !child_rel.is_empty() {
                    child_rel.push(b'/');
                }
                child_rel.extend_from_slice(child.file_name().as_bytes());
                stack.push((child.path(), child_rel));
            }
        }
        manifest.insert(rel, entry);
    }
    raw.sort();
    for (rel, key) in raw {
        let first = inodes.entry(key).or_insert_with(|| rel.clone()).clone();
        manifest.get_mut(&rel).unwrap().link_group = Some(first);
    }
    manifest
}

/// Scan an image through our own reader.
pub fn scan_archive(image: &Path) -> Manifest {
    let archive = Archive::open_path(image).unwrap();
    let mut manifest = Manifest::new();
    let mut by_number: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut groups = Vec::new();
    let root = archive.root().unwrap();
    let mut stack = vec![(root, Vec::new())];
    while let Some((inode, rel)) = stack.pop() {
        let kind = match inode.file_type {
            FileType::Directory => "dir",
            FileType::Regular => "file",
            FileType::Symlink => "symlink",
            FileType::BlockDevice => "block",
            FileType::CharDevice => "char",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
        };
        let content = (kind == "file").then(|| {
            hash_content(inode.size(), |offset, buf| {
                archive.read_at(&inode, offset, buf).unwrap()
            })
        });
        let rdev = u64::from(inode.rdev());
        let rdev = if kind == "block" || kind == "char" {
            // new_encode_dev → glibc dev_t
            let major = (rdev & 0xfff00) >> 8;
            let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
            libc::makedev(major as u32, minor as u32)
        } else {
            0
        };
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = archive
            .xattrs(&inode)
            .unwrap()
            .into_iter()
            .map(|x| (x.name, x.value))
            .collect();
        xattrs.sort();
        let entry = Entry {
            kind,
            permissions: u32::from(inode.permissions),
            uid: inode.uid,
            gid: inode.gid,
            mtime: i64::from(inode.mtime),
            size: if kind == "file" || kind == "symlink" {
                inode.size()
            } else {
                0
            },
            nlink: u64::from(inode.nlink),
            rdev,
            content,
            target: (kind == "symlink").then(|| archive.read_link(&inode).unwrap()),
            xattrs,
            link_group: None,
        };
        if kind != "dir" && inode.nlink > 1 {
            groups.push((rel.clone(), inode.number));
        }
        if kind == "dir" {
            for child in archive.read_dir(&inode).unwrap() {
                let child = child.unwrap();
                let mut child_rel = rel.clone();
                if !child_rel.is_empty() {
                    child_rel.push(b'/');
                }
                child_rel.extend_from_slice(&child.name);
                stack.push((archive.inode(child.inode_ref).unwrap(), child_rel));
            }
        }
        manifest.insert(rel, entry);
    }
    groups.sort();
    for (rel, number) in groups {
        let first = by_number
            .entry(number)
            .or_insert_with(|| rel.clone())
            .clone();
        manifest.get_mut(&rel).unwrap().link_group = Some(first);
    }
    manifest
}

/// Which fields to ignore when comparing.
#[derive(Clone, Copy, Default)]
pub struct Ignore {
    /// Directory sizes differ between file systems.
    pub dir_size: bool,
    /// The root's own metadata (mount points, extraction dirs).
    pub root: bool,
}

/// Every difference between two manifests, one line each.
pub fn diff(expected: &Manifest, actual: &Manifest, ignore: Ignore) -> Vec<String> {
    let mut out = Vec::new();
    for (path, e) in expected {
        let shown = String::from_utf8_lossy(path);
        let Some(a) = actual.get(path) else {
            out.push(format!("missing: {shown:?}"));
            continue;
        };
        if ignore.root && path.is_empty() {
            continue;
        }
        let mut e = e.clone();
        let mut a = a.clone();
        if ignore.dir_size && e.kind == "dir" {
            e.size = 0;
            a.size = 0;
        }
        macro_rules! field {
            ($f:ident) => {
                if e.$f != a.$f {
                    out.push(format!(
                        "{shown:?}: {} expected {:?} got {:?}",
                        stringify!($f),
                        e.$f,
                        a.$f
                    ));
                }
            };
        }
        field!(kind);
        field!(permissions);
        field!(uid);
        field!(gid);
        field!(mtime);
        field!(size);
        field!(nlink);
        field!(rdev);
        field!(content);
        field!(target);
        field!(xattrs);
        field!(link_group);
    }
    for path in actual.keys() {
        if !expected.contains_key(path) {
            out.push(format!("unexpected: {:?}", String::from_utf8_lossy(path)));
        }
    }
    out
}

/// Panic listing every difference (at most 50 shown).
pub fn assert_same(what: &str, expected: &Manifest, actual: &Manifest, ignore: Ignore) {
    let d = diff(expected, actual, ignore);
    assert!(
        d.is_empty(),
        "{what}: {} difference(s):\n{}",
        d.len(),
        d.iter().take(50).cloned().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Source tree.

fn set_mtime(path: &Path, secs: i64) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let times = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    ];
    // SAFETY: valid C string and a two-element timespec array, as utimensat requires.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", path.display());
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and a readable buffer of the given length.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn chown(path: &Path, uid: u32, gid: u32) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    let r = unsafe { libc::lchown(c.as_ptr(), uid, gid) };
    assert_eq!(r, 0, "lchown {}", path.display());
}

fn mknod(path: &Path, mode: u32, dev: u64) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    let r = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(
        r,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Deterministic pseudo-random bytes (xorshift), compressible when `text` is true.
pub fn pattern(len: usize, seed: u64, text: bool) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if text {
            let words: [&[u8]; 6] = [
                b"alpha ", b"beta ", b"gamma\n", b"delta ", b"squash ", b"box ",
            ];
            out.extend_from_slice(words[(x % 6) as usize]);
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn write(path: &Path, data: &[u8]) {
    let mut f = fs::File::create(path).unwrap();
    f.write_all(data).unwrap();
}

/// Options for [`make_tree`].
pub struct TreeOptions {
    /// Block size whose boundaries the file sizes probe.
    pub block_size: usize,
    /// Entries in the big directory.
    pub big_dir_entries: usize,
    /// Include a sparse file larger than 4 GiB.
    pub huge_sparse: bool,
}

/// Build the varied tree under `root` (which must not exist). Needs root for devices/chown.
pub fn make_tree(root: &Path, opts: &TreeOptions) {
    let bs = opts.block_size;
    fs::create_dir_all(root).unwrap();
    let d = root.join("sizes");
    fs::create_dir(&d).unwrap();
    for (i, size) in [0, 1, bs - 1, bs, bs + 1, 3 * bs + 17, (5 << 20) + 3]
        .iter()
        .enumerate()
    {
        write(
            &d.join(format!("text_{size}")),
            &pattern(*size, i as u64, true),
        );
        write(
            &d.join(format!("rand_{size}")),
            &pattern(*size, 100 + i as u64, false),
        );
    }
    // Duplicates (whole-file, tail-only and block+tail), and a near-duplicate.
    let dup = root.join("dups");
    fs::create_dir(&dup).unwrap();
    let big = pattern(2 * bs + 100, 7, false);
    write(&dup.join("a"), &big);
    write(&dup.join("b"), &big);
    let mut near = big.clone();
    *near.last_mut().unwrap() ^= 1;
    write(&dup.join("c_near"), &near);
    write(&dup.join("small1"), b"same small content");
    write(&dup.join("small2"), b"same small content");
    write(&dup.join("zz_blocks"), &big[..2 * bs]);
    write(&dup.join("zz_blocks_copy"), &big[..2 * bs]);
    // Sparse files: hole in the middle, all zero (multiple of the block size), zero tail.
    let sp = root.join("sparse");
    fs::create_dir(&sp).unwrap();
    {
        let f = fs::File::create(sp.join("holey")).unwrap();
        f.set_len(6 * bs as u64 + 5).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_at(b"middle", 3 * bs as u64).unwrap();
        f.write_at(b"end", 6 * bs as u64 + 2).unwrap();
        fs::File::create(sp.join("all_zero"))
            .unwrap()
            .set_len(4 * bs as u64)
            .unwrap();
        fs::File::create(sp.join("zero_odd"))
            .unwrap()
            .set_len(2 * bs as u64 + 9)
            .unwrap();
        if opts.huge_sparse {
            let f = fs::File::create(sp.join("huge")).unwrap();
            f.set_len((5u64 << 30) + 7).unwrap();
            f.write_at(b"beyond 4 GiB", 4u64 << 30).unwrap();
        }
    }
    // Links.
    let l = root.join("links");
    fs::create_dir(&l).unwrap();
    write(&l.join("target"), b"hard linked content");
    fs::hard_link(l.join("target"), l.join("hard1")).unwrap();
    fs::hard_link(l.join("target"), root.join("hard_elsewhere")).unwrap();
    symlink("target", l.join("sym")).unwrap();
    symlink("../nowhere/dangling", l.join("dangling")).unwrap();
    symlink(
        String::from_utf8(vec![b'x'; 4000]).unwrap(),
        l.join("long_target"),
    )
    .unwrap();
    fs::hard_link(l.join("sym"), l.join("sym_hard")).unwrap();
    // Special files.
    let s = root.join("special");
    fs::create_dir(&s).unwrap();
    mknod(&s.join("fifo"), libc::S_IFIFO | 0o640, 0);
    mknod(&s.join("null"), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    mknod(
        &s.join("loopdev"),
        libc::S_IFBLK | 0o660,
        libc::makedev(7, 200),
    );
    mknod(
        &s.join("bigminor"),
        libc::S_IFCHR | 0o600,
        libc::makedev(240, 70000),
    );
    {
        let sock = std::os::unix::net::UnixListener::bind(s.join("socket")).unwrap();
        drop(sock);
    }
    // Modes, owners, times.
    let m = root.join("modes");
    fs::create_dir(&m).unwrap();
    for (name, mode) in [
        ("setuid", 0o4755),
        ("setgid", 0o2750),
        ("sticky_dir", 0o1777),
        ("none", 0o000),
        ("odd", 0o4567),
    ] {
        let p = m.join(name);
        if name.ends_with("dir") {
            fs::create_dir(&p).unwrap();
        } else {
            write(&p, name.as_bytes());
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    let owned = m.join("owned");
    write(&owned, b"owned by a large uid");
    chown(&owned, 4_000_000_000, 3_000_000_000);
    chown(&m.join("odd"), 1234, 5678);
    chown(&l.join("sym"), 42, 43);
    set_mtime(&owned, 4_000_000_000);
    set_mtime(&m.join("odd"), 1);
    // Xattrs: all three namespaces, empty and multi-KiB values, repeated values.
    let x = root.join("xattrs");
    fs::create_dir(&x).unwrap();
    let big_value = pattern(3000, 9, true);
    for i in 0..4 {
        let p = x.join(format!("f{i}"));
        write(&p, format!("x{i}").as_bytes());
        set_xattr(&p, "user.comment", format!("file {i}").as_bytes());
        set_xattr(&p, "user.big", &big_value);
        set_xattr(&p, "user.empty", b"");
        set_xattr(&p, "trusted.t", b"trusted value");
        set_xattr(&p, "security.s", b"security value that repeats");
    }
    set_xattr(&x, "user.on_dir", b"directory xattr");
    symlink("f0", x.join("link")).unwrap();
    set_xattr(&x.join("link"), "trusted.on_link", b"symlink xattr");
    // Names: 255 bytes, non-UTF-8, odd characters.
    let n = root.join("names");
    fs::create_dir(&n).unwrap();
    write(&n.join("a".repeat(255)), b"long name");
    write(
        &n.join(OsStr::from_bytes(b"latin1_\xe9t\xe9")),
        b"non utf8 name",
    );
    write(&n.join(OsStr::from_bytes(b"\xff\xfe")), b"bytes");
    write(&n.join(" space and\ttab"), b"ws");
    write(&n.join(".hidden"), b"hidden");
    write(&n.join("-"), b"dash");
    // A big directory (needs extended inode + index).
    let b = root.join("big_dir");
    fs::create_dir(&b).unwrap();
    for i in 0..opts.big_dir_entries {
        let p = b.join(format!("entry_with_a_longer_name_{i:06}"));
        if i % 1000 == 0 {
            fs::create_dir(&p).unwrap();
        } else {
            write(&p, &[]);
        }
    }
    // Deep nesting.
    let mut deep = root.join("deep");
    for i in 0..120 {
        deep = deep.join(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    write(&deep.join("bottom"), b"bottom of the tree");
    fs::create_dir(root.join("empty_dir")).unwrap();
    set_mtime(&root.join("empty_dir"), 86_400);
}
