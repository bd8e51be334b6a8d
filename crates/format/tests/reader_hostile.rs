//! Hostile images: hand-patched structures must give typed errors naming the problem;
//! truncations and thousands of deterministic bit flips must give `Ok` or `Err`, never a
//! panic or a hang.

mod reader_common;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use reader_common::*;
use squashbox_format::reader::VisitedDirs;
use squashbox_format::{Archive, Error, FileType};

/// Build an image from a tree made by `make`, with all metadata stored uncompressed so tests
/// can find and patch structures by their bytes.
fn uncompressed_image(make: impl FnOnce(&Path)) -> Option<Vec<u8>> {
    if !require_tool("mksquashfs") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make(&src);
    let img = dir.path().join("image.sqfs");
    mksquashfs(&src, &img, &["-noI", "-noD", "-noF", "-noX"]);
    Some(std::fs::read(img).unwrap())
}

fn find(image: &[u8], from: usize, needle: &[u8]) -> usize {
    let hits: Vec<usize> = image[from..]
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i + from)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{:?} must occur once",
        String::from_utf8_lossy(needle)
    );
    hits[0]
}

fn u64_at(image: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(image[at..at + 8].try_into().unwrap())
}

fn inode_table_start(image: &[u8]) -> usize {
    u64_at(image, 0x40) as usize
}

fn dir_table_start(image: &[u8]) -> usize {
    u64_at(image, 0x48) as usize
}

/// Offset of the directory entry (its 8-byte fixed part) whose name is `name`.
fn entry_at(image: &[u8], name: &[u8]) -> usize {
    let mut needle = ((name.len() - 1) as u16).to_le_bytes().to_vec();
    needle.extend_from_slice(name);
    find(image, dir_table_start(image), &needle) - 6
}

/// Image offset of an inode, valid for uncompressed inode tables whose inodes sit in the
/// first metadata block (small test images).
fn inode_at(archive: &Archive, image: &[u8], path: &str) -> usize {
    let inode = archive.lookup_path(path).unwrap();
    assert_eq!(inode.inode_ref.block(), 0, "test image too large");
    inode_table_start(image) + 2 + usize::from(inode.inode_ref.offset())
}

fn open(image: Vec<u8>) -> Archive {
    Archive::open(image).expect("open patched image")
}

fn corrupt_message(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::Corrupt { what, .. }) => what,
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
}

/// Walk everything and return the first error.
fn walk_error(archive: &Archive) -> Error {
    for item in archive.walk() {
        if let Err(e) = item {
            return e;
        }
    }
    panic!("walk succeeded on a corrupt image");
}

#[test]
fn directory_loop_is_reported() {
    let Some(mut image) = uncompressed_image(|src| {
        std::fs::create_dir_all(src.join("a/bb")).unwrap();
    }) else {
        return;
    };
    let archive = open(image.clone());
    let root = archive.root().unwrap();
    let bb = archive.lookup_path("a/bb").unwrap();
    // Point a/bb at the root directory.
    let at = entry_at(&image, b"bb");
    let delta = i16::from_le_bytes([image[at + 2], image[at + 3]]);
    let base = i64::from(bb.number) - i64::from(delta);
    let new_delta = (i64::from(root.number) - base) as i16;
    image[at..at + 2].copy_from_slice(&root.inode_ref.offset().to_le_bytes());
    image[at + 2..at + 4].copy_from_slice(&new_delta.to_le_bytes());
    let archive = open(image);
    let msg = corrupt_message(Err::<(), _>(walk_error(&archive)));
    assert!(msg.contains("names parent"), "{msg}");
    assert!(archive.lookup_path("a/bb/a/bb").is_err());
}

#[test]
fn multiply_linked_directory_is_reported_by_walkers() {
    let Some(mut image) = uncompressed_image(|src| {
        std::fs::create_dir_all(src.join("aa/inner")).unwrap();
        std::fs::create_dir_all(src.join("cc")).unwrap();
    }) else {
        return;
    };
    let archive = open(image.clone());
    let aa = archive.lookup_path("aa").unwrap();
    let cc = archive.lookup_path("cc").unwrap();
    let at = entry_at(&image, b"cc");
    let delta = i16::from_le_bytes([image[at + 2], image[at + 3]]);
    let base = i64::from(cc.number) - i64::from(delta);
    image[at..at + 2].copy_from_slice(&aa.inode_ref.offset().to_le_bytes());
    image[at + 2..at + 4].copy_from_slice(&((i64::from(aa.number) - base) as i16).to_le_bytes());
    let archive = open(image);
    // Each link is consistent on its own ...
    let root = archive.root().unwrap();
    let entry = archive.lookup(&root, b"cc").unwrap().unwrap();
    assert_eq!(
        archive.entry_inode(&root, &entry).unwrap().number,
        aa.number
    );
    // ... so it is the walker's visited set that catches it.
    let msg = corrupt_message(Err::<(), _>(walk_error(&archive)));
    assert!(msg.contains("reached twice"), "{msg}");
    let mut visited = VisitedDirs::new();
    visited.enter(&aa).unwrap();
    assert!(visited.enter(&aa).is_err());
}

/// Patch one name in a tree with entries `aa`, `ab`, `ac` and expect a listing error.
fn bad_name(patch: &[u8], expect: &str) {
    let Some(mut image) = uncompressed_image(|src| {
        for n in ["aa", "ab", "ac"] {
            std::fs::write(src.join(n), n).unwrap();
        }
    }) else {
        return;
    };
    let at = entry_at(&image, b"ab");
    image[at + 8..at + 10].copy_from_slice(patch);
    let archive = open(image);
    let root = archive.root().unwrap();
    let result: Result<Vec<_>, _> = archive.read_dir(&root).unwrap().collect();
    let msg = corrupt_message(result);
    assert!(msg.contains(expect), "{msg}");
    let msg = corrupt_message(Err::<(), _>(walk_error(&archive)));
    assert!(msg.contains(expect), "{msg}");
}

#[test]
fn name_with_slash() {
    bad_name(b"a/", "'/'");
}

#[test]
fn name_with_nul() {
    bad_name(b"a\0", "NUL");
}

#[test]
fn name_dot_dot() {
    bad_name(b"..", ". or ..");
}

#[test]
fn unsorted_entries() {
    bad_name(b"a0", "not strictly sorted");
}

#[test]
fn duplicate_entries() {
    bad_name(b"aa", "not strictly sorted");
}

#[test]
fn entry_type_mismatch() {
    let Some(mut image) = uncompressed_image(|src| {
        std::fs::write(src.join("file"), b"x").unwrap();
    }) else {
        return;
    };
    let at = entry_at(&image, b"file");
    image[at + 4..at + 6].copy_from_slice(&1u16.to_le_bytes());
    let archive = open(image);
    let msg = corrupt_message(archive.lookup_path("file"));
    assert!(msg.contains("type"), "{msg}");
    // An extended type number in a listing is itself corrupt.
    let mut image2 = uncompressed_image(|src| {
        std::fs::write(src.join("file"), b"x").unwrap();
    })
    .unwrap();
    let at = entry_at(&image2, b"file");
    image2[at + 4..at + 6].copy_from_slice(&9u16.to_le_bytes());
    let archive = open(image2);
    let msg = corrupt_message(archive.lookup_path("file"));
    assert!(msg.contains("basic inode type"), "{msg}");
}

#[test]
fn inode_field_violations() {
    let Some(image) = uncompressed_image(|src| {
        std::fs::write(src.join("file"), b"small file in a fragment").unwrap();
        std::os::unix::fs::symlink("some/target", src.join("link")).unwrap();
        std::fs::create_dir(src.join("dir")).unwrap();
        std::fs::write(src.join("dir/x"), b"x").unwrap();
    }) else {
        return;
    };
    let archive = open(image.clone());
    let file_at = inode_at(&archive, &image, "file");
    let link_at = inode_at(&archive, &image, "link");
    let dir_at = inode_at(&archive, &image, "dir");
    assert_eq!(
        archive.lookup_path("file").unwrap().file_type,
        FileType::Regular
    );

    let cases: Vec<(usize, Vec<u8>, &str, &str)> = vec![
        (
            file_at + 20,
            1000u32.to_le_bytes().to_vec(),
            "file",
            "fragment index",
        ),
        (
            file_at + 4,
            999u16.to_le_bytes().to_vec(),
            "file",
            "id index",
        ),
        (
            file_at,
            15u16.to_le_bytes().to_vec(),
            "file",
            "unknown inode type",
        ),
        (
            file_at + 12,
            0u32.to_le_bytes().to_vec(),
            "file",
            "inode number",
        ),
        (
            link_at + 20,
            5000u32.to_le_bytes().to_vec(),
            "link",
            "symlink target length",
        ),
        (
            link_at + 20,
            0u32.to_le_bytes().to_vec(),
            "link",
            "symlink target length",
        ),
        (
            dir_at + 24,
            2u16.to_le_bytes().to_vec(),
            "dir",
            "below the minimum of 3",
        ),
        (
            dir_at + 16,
            0x7fff_0000u32.to_le_bytes().to_vec(),
            "dir",
            "past the end",
        ),
        (
            file_at + 2,
            0o17777u16.to_le_bytes().to_vec(),
            "file",
            "permission bits",
        ),
    ];
    for (at, bytes, path, expect) in cases {
        let mut patched = image.clone();
        patched[at..at + bytes.len()].copy_from_slice(&bytes);
        let archive = open(patched);
        let result = archive.lookup_path(path);
        let msg = corrupt_message(result);
        assert!(msg.contains(expect), "{path}: {msg} (expected {expect:?})");
    }
}

#[test]
fn data_block_violations() {
    let Some(image) = uncompressed_image(|src| {
        std::fs::write(src.join("file"), pseudo_random(300_000, 3)).unwrap();
    }) else {
        return;
    };
    let archive = open(image.clone());
    let file_at = inode_at(&archive, &image, "file");
    // Basic file: block list starts 32 bytes into the inode.
    let mut bad_word = image.clone();
    bad_word[file_at + 32..file_at + 36].copy_from_slice(&0x0400_0000u32.to_le_bytes());
    let archive = open(bad_word);
    let file = archive.lookup_path("file").unwrap();
    let msg = corrupt_message(archive.read_at(&file, 0, &mut [0u8; 10]));
    assert!(msg.contains("invalid size word"), "{msg}");
    let msg = corrupt_message(archive.data_extent(&file, 0, u64::MAX));
    assert!(msg.contains("invalid size word"), "{msg}");

    let mut past_end = image.clone();
    let size_at = file_at + 28;
    past_end[size_at..size_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let archive = open(past_end);
    let file = archive.lookup_path("file").unwrap();
    assert!(archive.read_at(&file, 0, &mut [0u8; 10]).is_err());
    assert!(archive.data_extent(&file, 0, u64::MAX).is_err());
}

#[test]
fn lookup_table_index_must_increase() {
    let Some(image) = uncompressed_image(|src| {
        for i in 0..3000 {
            std::fs::write(src.join(format!("f{i}")), b"").unwrap();
        }
    }) else {
        return;
    };
    let export_start = u64_at(&image, 0x58) as usize;
    let mut patched = image.clone();
    // Three export blocks (3001 inodes * 8 bytes); make the second pointer equal the first.
    let first = u64_at(&patched, export_start);
    patched[export_start + 8..export_start + 16].copy_from_slice(&first.to_le_bytes());
    let msg = corrupt_message(Archive::open(patched));
    assert!(msg.contains("export table index"), "{msg}");
    // An id table index pointing past the table.
    let id_start = u64_at(&image, 0x30) as usize;
    let mut patched = image.clone();
    patched[id_start..id_start + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(Archive::open(patched), Err(Error::Corrupt { .. })));
}

/// How far [`explore`] got.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    OpenFailed,
    WalkFailed,
    Walked,
}

/// Open, walk everything, read everything. Any outcome but a panic or a hang is fine.
fn explore(image: Vec<u8>) -> Outcome {
    let Ok(archive) = Archive::open(image) else {
        return Outcome::OpenFailed;
    };
    let mut budget: u64 = 16 << 20;
    for item in archive.walk() {
        let Ok(item) = item else {
            return Outcome::WalkFailed;
        };
        let inode = item.inode;
        let _ = archive.xattrs(&inode);
        let _ = archive.inode_by_number(inode.number);
        match inode.file_type {
            FileType::Regular => {
                let _ = archive.allocated_bytes(&inode);
                let mut buf = vec![0u8; 65536];
                let mut offset = 0u64;
                while budget > 0 {
                    match archive.read_at(&inode, offset, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            offset += n as u64;
                            budget = budget.saturating_sub(n as u64);
                        }
                    }
                }
                // Extents advance and stay inside the file.
                let mut pos = 0u64;
                for _ in 0..256 {
                    match archive.data_extent(&inode, pos, u64::MAX) {
                        Ok(e) if !e.is_empty() => {
                            pos += e.len();
                            assert!(pos <= inode.size(), "extent past the end of the file");
                        }
                        _ => break,
                    }
                }
            }
            FileType::Symlink => {
                let _ = archive.read_link(&inode);
            }
            FileType::Directory => {
                let _ = archive.lookup(&inode, b"zz");
                let _ = archive.read_dir_from(&inode, 40).map(|d| d.take(3).count());
            }
            _ => {}
        }
    }
    Outcome::Walked
}

/// Run `cases` through `explore` on a worker thread; fail if one takes longer than 30 s.
/// Returns how many cases ended in each [`Outcome`] (open failed, walk failed, walked).
fn run_bounded(name: &str, cases: Vec<(u64, Vec<u8>)>) -> [usize; 3] {
    let (tx, rx) = mpsc::channel();
    let count = cases.len();
    let worker = std::thread::spawn(move || {
        let mut outcomes = [0usize; 3];
        for (id, image) in cases {
            tx.send(id).unwrap();
            outcomes[explore(image) as usize] += 1;
        }
        outcomes
    });
    let mut current = None;
    for _ in 0..count {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(id) => current = Some(id),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{name}: case {current:?} did not finish within 30 s (hang)")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    match worker.join() {
        Ok(outcomes) => {
            eprintln!("{name}: open failed / walk failed / walked = {outcomes:?}");
            outcomes
        }
        Err(_) => panic!("{name}: case {current:?} panicked"),
    }
}

fn small_tree(src: &Path) {
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    std::fs::write(src.join("d/e/f"), pseudo_random(9000, 1)).unwrap();
    std::fs::write(src.join("d/g"), b"fragment tail").unwrap();
    std::fs::write(src.join("h"), vec![b'h'; 10_000]).unwrap();
    std::os::unix::fs::symlink("d/e/f", src.join("s")).unwrap();
    set_xattr(&src.join("h"), "user.k", b"v");
    set_xattr(&src.join("d"), "user.k", b"v");
}

fn small_image(args: &[&str]) -> Option<Vec<u8>> {
    if !require_tool("mksquashfs") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    small_tree(&src);
    let img = dir.path().join("image.sqfs");
    mksquashfs(&src, &img, args);
    Some(std::fs::read(img).unwrap())
}

#[test]
fn truncated_images_never_panic() {
    for args in [
        &["-b", "4096"][..],
        &["-noI", "-noD", "-noF", "-noX", "-b", "4096"],
    ] {
        let Some(image) = small_image(args) else {
            return;
        };
        let archive = Archive::open(image.clone()).unwrap();
        assert!(archive.walk().all(|e| e.is_ok()));
        let cases: Vec<(u64, Vec<u8>)> = (0..image.len())
            .filter(|len| *len < 200 || len % 7 == 0)
            .map(|len| (len as u64, image[..len].to_vec()))
            .collect();
        let outcomes = run_bounded("truncation", cases);
        assert!(
            outcomes[2] > 0,
            "the untruncated-equivalent lengths must walk"
        );
    }
}

#[test]
fn bit_flips_never_panic_or_hang() {
    for (variant, args) in [
        (0u64, &["-b", "4096"][..]),
        (1, &["-noI", "-noD", "-noF", "-noX", "-b", "4096"]),
        (2, &["-comp", "zstd", "-b", "4096"]),
    ] {
        let Some(image) = small_image(args) else {
            return;
        };
        let cases: Vec<(u64, Vec<u8>)> = (0..1500u64)
            .map(|seed| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 10 + variant);
                let mut patched = image.clone();
                let flips = 1 + seed % 4;
                for _ in 0..flips {
                    // Half the flips hit the tables at the end, where structure is dense.
                    let start = if rng.random_bool(0.5) {
                        inode_table_start(&image)
                    } else {
                        0
                    };
                    let at = rng.random_range(start..patched.len());
                    patched[at] ^= 1 << rng.random_range(0..8);
                }
                (seed, patched)
            })
            .collect();
        let outcomes = run_bounded("bit flips", cases);
        // The harness must exercise the walk, not only the superblock checks.
        assert!(outcomes[2] > 100 && outcomes[1] > 50, "{outcomes:?}");
    }
}
