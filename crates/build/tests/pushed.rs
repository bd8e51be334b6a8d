//! `ImageBuilder`: images from entries pushed by the caller (the tar-stream case).
//!
//! The edge-case tree is pushed entry by entry in reverse path order (children before their
//! parents, so parents are first created implicitly and get their metadata later), with file
//! data streamed through `add_file` or read by the workers through `add_file_from_disk`. The
//! image must match the source field by field through `unsquashfs` and the kernel, be
//! independent of the thread count, and every bad entry must be refused with a typed error
//! that leaves the destination untouched.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use squashbox_build::{BuildError, BuildOptions, DeviceKind, EntryMeta, ImageBuilder};
use squashbox_format::Archive;
use squashbox_testkit::manifest::assert_manifests_equal;
use squashbox_testkit::{
    require_loop, require_root, require_tool, run_with_timeout, DiffOptions, EdgeTree,
    EdgeTreeOptions, EntryKind, LoopMount, Manifest,
};

fn options(threads: usize) -> BuildOptions {
    BuildOptions {
        threads: Some(threads),
        block_size: 4096,
        ..BuildOptions::default()
    }
}

fn rel(path: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(path))
}

/// Push every entry of `manifest` (scanned from `source`) into a new image at `dest`.
fn push_tree(source: &Path, manifest: &Manifest, dest: &Path, threads: usize) {
    let mut builder = ImageBuilder::new(dest, &options(threads)).unwrap();
    let mut first_name: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    // Hard-link targets must exist before their links: pick each group's first name in
    // sorted order as the target, and push it before the reverse-order pass.
    for (path, entry) in &manifest.entries {
        if let Some(key) = entry.link_key {
            first_name.entry(key).or_insert_with(|| path.clone());
        }
    }
    let mut pushed_first = std::collections::HashSet::new();
    let firsts: std::collections::BTreeSet<&Vec<u8>> = first_name.values().collect();
    let mut order: Vec<&Vec<u8>> = firsts.iter().copied().collect();
    order.extend(
        manifest
            .entries
            .keys()
            .rev()
            .filter(|p| !firsts.contains(p)),
    );
    for (n, path) in order.into_iter().enumerate() {
        let entry = &manifest.entries[path];
        let meta = EntryMeta {
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
            xattrs: entry.xattrs.clone(),
        };
        let target = rel(path);
        let on_disk = source.join(&target);
        if let Some(key) = entry.link_key {
            if !pushed_first.insert(key) {
                builder
                    .add_hard_link(&target, &rel(&first_name[&key]))
                    .unwrap();
                continue;
            }
        }
        match &entry.kind {
            EntryKind::Dir => builder.add_dir(&target, meta).unwrap(),
            EntryKind::File { size, .. } if n % 2 == 0 => {
                let mut file = File::open(&on_disk).unwrap();
                builder.add_file(&target, meta, *size, &mut file).unwrap();
            }
            EntryKind::File { .. } => builder.add_file_from_disk(&target, meta, &on_disk).unwrap(),
            EntryKind::Symlink { target: t } => builder.add_symlink(&target, meta, t).unwrap(),
            EntryKind::CharDev { major, minor } => builder
                .add_device(&target, meta, DeviceKind::Char, *major, *minor)
                .unwrap(),
            EntryKind::BlockDev { major, minor } => builder
                .add_device(&target, meta, DeviceKind::Block, *major, *minor)
                .unwrap(),
            EntryKind::Fifo => builder.add_fifo(&target, meta).unwrap(),
            EntryKind::Socket => builder.add_socket(&target, meta).unwrap(),
        }
    }
    builder.finish().unwrap();
}

#[test]
fn pushed_tree_matches_source_through_unsquashfs_and_kernel() {
    if !require_tool("unsquashfs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("src");
    EdgeTree::create(&source, &EdgeTreeOptions::cheap()).unwrap();
    let manifest = Manifest::scan(&source).unwrap();
    let image = tmp.path().join("pushed.sqsh");
    push_tree(&source, &manifest, &image, 2);

    let out = tmp.path().join("unsquashfs");
    let result = run_with_timeout(
        Command::new("unsquashfs")
            .args(["-q", "-n", "-d"])
            .arg(&out)
            .arg(&image),
        Duration::from_secs(300),
    )
    .unwrap();
    assert!(result.success(), "unsquashfs: {}", result.describe());
    let opts = DiffOptions::default();
    assert_manifests_equal(
        &manifest,
        &Manifest::scan(&out).unwrap(),
        &opts,
        "unsquashfs",
    );

    if require_root() && require_loop() {
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mount = LoopMount::mount(&image, &mnt).unwrap();
        assert_manifests_equal(
            &manifest,
            &Manifest::scan(mount.dir()).unwrap(),
            &opts,
            "kernel mount",
        );
        mount.unmount().unwrap();
    }
}

#[test]
fn pushed_image_does_not_depend_on_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("src");
    EdgeTree::create(&source, &EdgeTreeOptions::cheap()).unwrap();
    let manifest = Manifest::scan(&source).unwrap();
    let one = tmp.path().join("one.sqsh");
    let many = tmp.path().join("many.sqsh");
    push_tree(&source, &manifest, &one, 1);
    push_tree(&source, &manifest, &many, 4);
    let (a, b) = (std::fs::read(&one).unwrap(), std::fs::read(&many).unwrap());
    assert!(a == b, "1 thread and 4 threads gave different images");
}

fn entry_error(result: Result<(), BuildError>) -> String {
    match result {
        Err(BuildError::Entry { message, .. }) => message,
        other => panic!("expected an entry error, got {other:?}"),
    }
}

#[test]
fn bad_entries_are_refused_and_the_builder_stays_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out.sqsh");
    let mut b = ImageBuilder::new(&dest, &options(2)).unwrap();
    let meta = || EntryMeta::new(0o644, 0, 0, 0);
    let mut data: &[u8] = b"x";
    b.add_file("a/file".as_ref(), meta(), 1, &mut data).unwrap();

    let msg = entry_error(b.add_dir("../up".as_ref(), meta()));
    assert!(msg.contains(".."), "{msg}");
    let msg = entry_error(b.add_fifo("a/../b".as_ref(), meta()));
    assert!(msg.contains(".."), "{msg}");
    let msg = entry_error(b.add_fifo("/abs".as_ref(), meta()));
    assert!(msg.contains("relative"), "{msg}");
    let msg = entry_error(b.add_fifo(&rel(b"nul\0name"), meta()));
    assert!(msg.contains("NUL"), "{msg}");
    let long = "n".repeat(257);
    let msg = entry_error(b.add_fifo(long.as_ref(), meta()));
    assert!(msg.contains("257"), "{msg}");
    let msg = entry_error(b.add_fifo("./a//file/".as_ref(), meta()));
    assert!(msg.contains("already"), "{msg}");
    let msg = entry_error(b.add_fifo("a/file/child".as_ref(), meta()));
    assert!(msg.contains("non-directory"), "{msg}");
    let msg = entry_error(b.add_dir("a/file".as_ref(), meta()));
    assert!(msg.contains("non-directory"), "{msg}");
    let msg = entry_error(b.add_hard_link("link".as_ref(), "a".as_ref()));
    assert!(msg.contains("directory"), "{msg}");
    let msg = entry_error(b.add_hard_link("link".as_ref(), "missing".as_ref()));
    assert!(msg.contains("no entry"), "{msg}");
    let msg = entry_error(b.add_fifo("".as_ref(), meta()));
    assert!(msg.contains("root"), "{msg}");
    let bad_xattr = EntryMeta {
        xattrs: vec![(b"system.posix_acl_access".to_vec(), b"x".to_vec())],
        ..meta()
    };
    let msg = entry_error(b.add_fifo("acl".as_ref(), bad_xattr));
    assert!(msg.contains("system.posix_acl_access"), "{msg}");
    let msg = entry_error(b.add_symlink("s".as_ref(), meta(), b""));
    assert!(msg.contains("symlink"), "{msg}");

    // Explicit metadata for a directory first created as a parent is fine, once.
    b.add_dir("a".as_ref(), EntryMeta::new(0o700, 1, 2, 3))
        .unwrap();
    let msg = entry_error(b.add_dir("a".as_ref(), meta()));
    assert!(msg.contains("already"), "{msg}");
    b.add_hard_link("a/link".as_ref(), "a/file".as_ref())
        .unwrap();
    assert!(
        !dest.exists(),
        "nothing may appear at the destination before finish"
    );
    let summary = b.finish().unwrap();
    assert_eq!(summary.files, 2, "a file and its hard link");

    let archive = Archive::open_path(&dest).unwrap();
    let a = archive.lookup_path("a").unwrap();
    assert_eq!(a.permissions, 0o700);
    assert_eq!((a.uid, a.gid, a.mtime), (1, 2, 3));
    assert_eq!(archive.lookup_path("a/link").unwrap().nlink, 2);
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn short_or_long_data_fails_without_touching_the_destination() {
    for (declared, actual) in [(10u64, 5usize), (5, 10), (200_000, 100_000)] {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("out.sqsh");
        std::fs::write(&dest, b"previous image").unwrap();
        let mut b = ImageBuilder::new(&dest, &options(2)).unwrap();
        let bytes = vec![7u8; actual];
        let mut data = &bytes[..];
        let msg = entry_error(b.add_file(
            "f".as_ref(),
            EntryMeta::new(0o644, 0, 0, 0),
            declared,
            &mut data,
        ));
        assert!(msg.contains(&declared.to_string()), "{msg}");
        // The builder refuses to go on, and dropping it removes its temporary file.
        let mut more: &[u8] = b"";
        let later = b.add_file("g".as_ref(), EntryMeta::default(), 0, &mut more);
        assert!(
            matches!(later, Err(BuildError::InvalidOptions(_))),
            "{later:?}"
        );
        assert!(b.finish().is_err());
        assert_eq!(std::fs::read(&dest).unwrap(), b"previous image");
        assert_eq!(leftovers(tmp.path()), vec!["out.sqsh".to_string()]);
    }
}

/// A reader that fails half-way, like a broken network stream.
struct FailingReader {
    left: usize,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("connection reset"));
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(1);
        self.left -= n;
        Ok(n)
    }
}

#[test]
fn a_failing_reader_is_reported_with_its_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out.sqsh");
    let mut b = ImageBuilder::new(&dest, &options(2)).unwrap();
    let msg = entry_error(b.add_file(
        "big".as_ref(),
        EntryMeta::new(0o644, 0, 0, 0),
        1 << 20,
        &mut FailingReader { left: 300_000 },
    ));
    assert!(msg.contains("connection reset"), "{msg}");
    drop(b);
    assert!(!dest.exists());
    assert!(leftovers(tmp.path()).is_empty());
}

#[test]
fn streamed_duplicates_are_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out.sqsh");
    let mut b = ImageBuilder::new(&dest, &options(2)).unwrap();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for name in ["one", "two", "dir/three"] {
        let mut data = &content[..];
        b.add_file(
            name.as_ref(),
            EntryMeta::new(0o644, 0, 0, 0),
            content.len() as u64,
            &mut data,
        )
        .unwrap();
    }
    let summary = b.finish().unwrap();
    assert_eq!(summary.duplicates, 2);
    assert_eq!(summary.files, 3);
    let archive = Archive::open_path(&dest).unwrap();
    for name in ["one", "two", "dir/three"] {
        let inode = archive.lookup_path(name).unwrap();
        let mut out = vec![0u8; content.len() + 1];
        let n = archive.read_at(&inode, 0, &mut out).unwrap();
        assert!(
            n == content.len() && out[..n] == content[..],
            "{name}: content differs"
        );
    }
    // Stored once: the image is far smaller than three copies would need.
    assert!(std::fs::metadata(&dest).unwrap().len() < 2 * content.len() as u64);
}
