//! Shared helpers for the reader tests: source-tree construction and a full comparison of an
//! image against the tree it was made from. Tool checks, `mksquashfs` and the syscall
//! wrappers come from `squashbox_testkit` (re-exported here for the reader tests).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use squashbox_format::{Archive, FileType, Inode, InodeKind};
use squashbox_testkit::sys;
pub use squashbox_testkit::{is_root, mksquashfs, require_tool};

/// Set an xattr without following symlinks. Returns false if the filesystem refuses.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> bool {
    sys::lsetxattr(path, name.as_bytes(), value).is_ok()
}

/// All xattrs of `path` except `system.*` (ACLs, which SquashFS cannot store).
pub fn list_xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    sys::lxattrs(path)
        .unwrap_or_else(|e| panic!("listing xattrs of {}: {e}", path.display()))
        .into_iter()
        .filter(|(name, _)| !name.starts_with(b"system."))
        .collect()
}

/// Create a device or fifo node.
pub fn mknod(path: &Path, mode: u32, major: u32, minor: u32) {
    sys::mknod(path, mode, sys::makedev(major, minor))
        .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

/// Deterministic pseudo-random bytes (xorshift), so content is incompressible but repeatable.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn set_mtime(path: &Path, secs: i64) {
    sys::set_mtime(path, secs).unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// What [`build_rich_tree`] managed to create (some parts need root or fs support).
pub struct RichTree {
    /// Number of xattrs successfully set on the source.
    pub xattrs_set: usize,
    /// Whether device nodes were created.
    pub devices: bool,
}

/// A tree exercising every inode type and the tricky data layouts, for a 128 KiB block size
/// (and smaller sizes: the file sizes straddle 4 KiB multiples too).
pub fn build_rich_tree(root: &Path) -> RichTree {
    let bs = 131072usize;
    let d = |p: &str| root.join(p);
    fs::create_dir_all(d("dir/sub/subsub")).unwrap();
    fs::create_dir(d("empty")).unwrap();
    fs::create_dir(d("perm")).unwrap();
    let sizes = [
        0,
        1,
        100,
        4095,
        4096,
        4097,
        bs - 1,
        bs,
        bs + 1,
        3 * bs + 12345,
        1_000_000,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        fs::write(
            d(&format!("dir/rand_{size}")),
            pseudo_random(size, i as u64 + 1),
        )
        .unwrap();
        let text: Vec<u8> = (0..size).map(|j| b"squashbox "[j % 10]).collect();
        fs::write(d(&format!("dir/sub/text_{size}")), text).unwrap();
    }
    // Duplicate content (dedup) and a file sharing a fragment tail.
    fs::write(d("dir/dup_a"), pseudo_random(300_000, 77)).unwrap();
    fs::write(d("dir/dup_b"), pseudo_random(300_000, 77)).unwrap();
    // Sparse: hole, data, hole, with a data tail.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(d("sparse")).unwrap();
        f.seek(SeekFrom::Start(5 * bs as u64)).unwrap();
        f.write_all(&pseudo_random(bs + 10, 9)).unwrap();
        f.seek(SeekFrom::Start(20 * bs as u64 + 17)).unwrap();
        f.write_all(b"tail").unwrap();
        let mut z = fs::File::create(d("zeros")).unwrap();
        z.write_all(&vec![0u8; 3 * bs]).unwrap();
    }
    // Hard links.
    fs::write(d("dir/linked"), b"hard linked content").unwrap();
    fs::hard_link(d("dir/linked"), d("dir/sub/link2")).unwrap();
    fs::hard_link(d("dir/linked"), d("link3")).unwrap();
    // Symlinks: short, dangling, absolute, near the kernel's limit.
    symlink("dir/rand_100", d("sym_rel")).unwrap();
    symlink("/nonexistent/target", d("sym_abs")).unwrap();
    symlink("x".repeat(4000), d("sym_long")).unwrap();
    symlink("subsub", d("dir/sub/sym_dir")).unwrap();
    // Names with odd bytes.
    fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"name with spaces")),
        b"s",
    )
    .unwrap();
    fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"\xff\xfe-bytes")),
        b"b",
    )
    .unwrap();
    fs::write(root.join("\u{e9}t\u{e9}"), b"utf8").unwrap();
    fs::write(d(&"n".repeat(255)), b"long name").unwrap();
    // Deep nesting.
    let mut deep = d("deep");
    for i in 0..60 {
        deep = deep.join(format!("level{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("bottom"), b"deep file").unwrap();
    // Special files.
    std::os::unix::net::UnixListener::bind(d("socket")).unwrap();
    mknod(&d("fifo"), libc::S_IFIFO | 0o640, 0, 0);
    let devices = is_root();
    if devices {
        mknod(&d("chardev"), libc::S_IFCHR | 0o600, 1, 3);
        mknod(&d("blockdev"), libc::S_IFBLK | 0o660, 259, 70000);
        std::os::unix::fs::lchown(d("perm"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(d("dir/rand_1"), Some(0), Some(4242)).unwrap();
        std::os::unix::fs::lchown(d("sym_rel"), Some(99), Some(98)).unwrap();
    }
    // Permissions including setuid/setgid/sticky.
    fs::write(d("perm/suid"), b"x").unwrap();
    fs::set_permissions(d("perm/suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(d("perm/none"), b"x").unwrap();
    fs::set_permissions(d("perm/none"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::create_dir(d("perm/sticky")).unwrap();
    fs::set_permissions(d("perm/sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(d("perm"), fs::Permissions::from_mode(0o2750)).unwrap();
    // Xattrs, including a shared (out-of-line after dedup) value and a large value.
    let mut xattrs_set = 0;
    let big = pseudo_random(3000, 5);
    for (path, name, value) in [
        ("dir/rand_1", "user.comment", &b"hello"[..]),
        ("dir/rand_1", "user.empty", b""),
        ("dir/rand_100", "user.comment", b"hello"),
        ("dir/rand_100", "user.big", &big),
        ("dir/rand_4096", "user.big", &big),
        ("dir", "trusted.overlay.opaque", b"y"),
        ("dir/sub", "security.test", b"label"),
        ("empty", "user.on_dir", b"d"),
        ("sym_rel", "trusted.on_link", b"l"),
        ("fifo", "user.on_fifo", b"f"),
    ] {
        if set_xattr(&d(path), name, value) {
            xattrs_set += 1;
        }
    }
    // Fixed mtimes (after all content changes) so the comparison is meaningful.
    let mut all = vec![root.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        let p = all[i].clone();
        if p.symlink_metadata().unwrap().is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                all.push(e.unwrap().path());
            }
        }
        i += 1;
    }
    for (i, p) in all.iter().enumerate().rev() {
        set_mtime(p, 1_600_000_000 + i as i64 * 1000);
    }
    RichTree {
        xattrs_set,
        devices,
    }
}

/// Source-side file type.
fn source_type(meta: &fs::Metadata) -> FileType {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        FileType::Directory
    } else if t.is_file() {
        FileType::Regular
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else if t.is_char_device() {
        FileType::CharDevice
    } else if t.is_fifo() {
        FileType::Fifo
    } else {
        FileType::Socket
    }
}

/// The kernel's `new_encode_dev`, which SquashFS stores.
fn encode_dev(rdev: u64) -> u32 {
    let (major, minor) = sys::major_minor(rdev);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// Paths (relative, `/`-joined) of every entry under `root`, root itself as "".
fn source_paths(root: &Path) -> Vec<(Vec<u8>, PathBuf)> {
    let mut out = vec![(Vec::new(), root.to_path_buf())];
    let mut i = 0;
    while i < out.len() {
        let (rel, path) = out[i].clone();
        if path.symlink_metadata().unwrap().is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                let e = e.unwrap();
                let mut r = rel.clone();
                if !r.is_empty() {
                    r.push(b'/');
                }
                r.extend_from_slice(e.file_name().as_bytes());
                out.push((r, e.path()));
            }
        }
        i += 1;
    }
    out
}

/// Read a whole file through `read_at` in odd-sized chunks.
pub fn read_all(archive: &Archive, inode: &Inode, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = archive
            .read_at(inode, out.len() as u64, &mut buf)
            .expect("read_at");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Totals from [`compare_tree`].
#[derive(Debug, Default)]
pub struct Compared {
    pub entries: usize,
    pub files: usize,
    pub bytes: u64,
    pub xattrs: usize,
}

/// Compare every entry of the image with the source tree it was built from: the set of
/// paths, type, permissions, owner, mtime, link counts and hard-link grouping, device numbers,
/// symlink targets, file content (via `read_at` in odd chunks and at random offsets), sizes,
/// xattrs, `inode_by_number` and `lookup_path`.
pub fn compare_tree(archive: &Archive, root: &Path, check_xattrs: bool) -> Compared {
    let mut walked: BTreeMap<Vec<u8>, Inode> = BTreeMap::new();
    for item in archive.walk() {
        let item = item.expect("walk");
        assert!(
            walked.insert(item.path.clone(), item.inode).is_none(),
            "path {:?} yielded twice",
            String::from_utf8_lossy(&item.path)
        );
    }
    let source = source_paths(root);
    let expected: Vec<&Vec<u8>> = {
        let mut v: Vec<&Vec<u8>> = source.iter().map(|(r, _)| r).collect();
        v.sort();
        v
    };
    let got: Vec<&Vec<u8>> = walked.keys().collect();
    assert_eq!(
        got.iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect::<Vec<_>>(),
        expected
            .iter()
            .map(|p| String::from_utf8_lossy(p))
            .collect::<Vec<_>>(),
        "path sets differ"
    );
    let mut totals = Compared::default();
    let mut source_to_image: HashMap<(u64, u64), u32> = HashMap::new();
    let mut image_to_source: HashMap<u32, (u64, u64)> = HashMap::new();
    for (rel, path) in &source {
        let shown = String::from_utf8_lossy(rel).into_owned();
        let meta = path.symlink_metadata().unwrap();
        let inode = &walked[rel];
        totals.entries += 1;
        assert_eq!(inode.file_type, source_type(&meta), "{shown}: type");
        assert_eq!(
            u32::from(inode.permissions),
            meta.mode() & 0o7777,
            "{shown}: mode"
        );
        assert_eq!(inode.mode(), meta.mode(), "{shown}: st_mode");
        assert_eq!(inode.uid, meta.uid(), "{shown}: uid");
        assert_eq!(inode.gid, meta.gid(), "{shown}: gid");
        assert_eq!(i64::from(inode.mtime), meta.mtime(), "{shown}: mtime");
        if !meta.is_dir() {
            assert_eq!(u64::from(inode.nlink), meta.nlink(), "{shown}: nlink");
        }
        // Hard-link grouping: one image inode number per source inode, and vice versa.
        let key = (meta.dev(), meta.ino());
        let number = *source_to_image.entry(key).or_insert(inode.number);
        assert_eq!(number, inode.number, "{shown}: hard link grouping");
        assert_eq!(
            *image_to_source.entry(inode.number).or_insert(key),
            key,
            "{shown}: distinct files share inode number {}",
            inode.number
        );
        let by_number = archive
            .inode_by_number(inode.number)
            .expect("inode_by_number");
        assert_eq!(by_number.number, inode.number, "{shown}: export table");
        assert_eq!(by_number.kind, inode.kind, "{shown}: export table inode");
        let looked_up = archive.lookup_path(rel).expect("lookup_path");
        assert_eq!(&looked_up, inode, "{shown}: lookup_path");
        match inode.file_type {
            FileType::Regular => {
                totals.files += 1;
                let data = fs::read(path).unwrap();
                assert_eq!(inode.size(), data.len() as u64, "{shown}: size");
                let got = read_all(archive, inode, 5000);
                assert!(got == data, "{shown}: content differs");
                let got = read_all(archive, inode, 131072 + 3);
                assert!(got == data, "{shown}: content differs (large chunks)");
                // Random-access reads at awkward offsets.
                for (k, &off) in [0u64, 1, 4095, 4096, 131071, 131072, 200_001]
                    .iter()
                    .enumerate()
                {
                    let mut buf = vec![0u8; 777 + k * 1000];
                    let n = archive.read_at(inode, off, &mut buf).unwrap();
                    let start = (off as usize).min(data.len());
                    let end = (start + buf.len()).min(data.len());
                    assert_eq!(n, end - start, "{shown}: read_at({off}) length");
                    assert!(buf[..n] == data[start..end], "{shown}: read_at({off})");
                }
                let allocated = archive.allocated_bytes(inode).unwrap();
                assert!(allocated <= inode.size(), "{shown}: allocated");
                if data.iter().any(|&b| b != 0) {
                    assert!(allocated > 0, "{shown}: non-zero data must be allocated");
                }
                totals.bytes += data.len() as u64;
            }
            FileType::Symlink => {
                let target = fs::read_link(path).unwrap();
                assert_eq!(
                    archive.read_link(inode).unwrap(),
                    target.as_os_str().as_bytes(),
                    "{shown}: symlink target"
                );
                assert_eq!(inode.size(), target.as_os_str().len() as u64);
            }
            FileType::BlockDevice | FileType::CharDevice => {
                assert_eq!(inode.rdev(), encode_dev(meta.rdev()), "{shown}: rdev");
            }
            FileType::Directory => {
                let count = archive.read_dir(inode).unwrap().count();
                assert_eq!(
                    count,
                    fs::read_dir(path).unwrap().count(),
                    "{shown}: entries"
                );
                if let InodeKind::Directory { file_size, .. } = inode.kind {
                    assert!(file_size >= 3);
                    assert_eq!(file_size == 3, count == 0, "{shown}: empty dir size");
                }
                assert_eq!(u64::from(inode.nlink), meta.nlink(), "{shown}: dir nlink");
            }
            FileType::Fifo | FileType::Socket => {}
        }
        if check_xattrs {
            let expected = list_xattrs(path);
            let got: BTreeMap<Vec<u8>, Vec<u8>> = archive
                .xattrs(inode)
                .expect("xattrs")
                .into_iter()
                .map(|x| (x.name, x.value))
                .collect();
            assert_eq!(got, expected, "{shown}: xattrs");
            totals.xattrs += got.len();
        } else {
            assert!(archive.xattrs(inode).unwrap().is_empty(), "{shown}: xattrs");
        }
    }
    totals
}
