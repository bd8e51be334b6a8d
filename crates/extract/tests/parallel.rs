//! Parallel extraction: workers create regular files themselves, so these tests check what
//! that must not change. The tree is the same for any thread count (including directory
//! mtimes and read-only directory modes, which are applied only after the last file in the
//! directory was created), and a directory swapped for a symlink while files are still being
//! created in it is never followed.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use squashbox_extract::{extract, ExtractOptions};
use squashbox_format::Archive;
use squashbox_testkit::{assert_trees_equal, mksquashfs, require_tool, sys, tempfile, DiffOptions};

const BLOCK: usize = 4096;

/// Many directories of many small files (so many creations are in flight per directory),
/// read-only directories with content, nested directories, hard links across directories,
/// and a distinct mtime on every entry, directories set last.
fn build_wide_tree(root: &Path) {
    let mut dirs = Vec::new();
    for d in 0..24 {
        let dir = root.join(format!("d{d:02}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..60 {
            // Sizes around block boundaries, some empty, content unique per file.
            let len = (d * 60 + f) * 97 % (3 * BLOCK + 5);
            let data: Vec<u8> = (0..len)
                .map(|i| ((i + d * 31 + f * 7) % 251) as u8)
                .collect();
            let p = dir.join(format!("f{f:03}"));
            fs::write(&p, data).unwrap();
            sys::set_mtime(&p, 1_000_000 + (d * 100 + f) as i64).unwrap();
        }
        let sub = dir.join("sub");
        fs::create_dir(&sub).unwrap();
        for f in 0..10 {
            let p = sub.join(format!("s{f}"));
            fs::write(&p, format!("{d}/{f}\n")).unwrap();
        }
        dirs.push((sub, 2_000_000 + d as i64, 0o750));
        // Every third directory ends read-only: its mode must wait for its last file.
        let mode = if d % 3 == 0 { 0o555 } else { 0o755 };
        dirs.push((dir, 3_000_000 + d as i64, mode));
    }
    // Hard links across directories (created by the walker, linked right after).
    fs::hard_link(root.join("d01/f001"), root.join("d05/link")).unwrap();
    fs::hard_link(root.join("d01/f001"), root.join("d20/sub/link")).unwrap();
    for (dir, mtime, mode) in dirs {
        sys::chmod(&dir, mode).unwrap();
        sys::set_mtime(&dir, mtime).unwrap();
    }
    sys::set_mtime(root, 4_000_000).unwrap();
}

/// [`build_wide_tree`] under `dir/src`, packed by mksquashfs (4 KiB blocks) into
/// `dir/image.sqfs`; returns both paths.
fn wide_image(dir: &Path) -> (PathBuf, PathBuf) {
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    build_wide_tree(&src);
    let image = dir.join("image.sqfs");
    mksquashfs(&src, &image, &["-quiet", "-b", "4096"]);
    (src, image)
}

#[test]
fn any_thread_count_gives_the_same_tree() {
    if !require_tool("mksquashfs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (src, image) = wide_image(tmp.path());
    let archive = Archive::open_path(&image).unwrap();
    for threads in [1, 2, 16] {
        let dest = tmp.path().join(format!("out{threads}"));
        let options = ExtractOptions {
            threads,
            ..ExtractOptions::default()
        };
        let summary = extract(&archive, None, &dest, &options).unwrap();
        assert_eq!(summary.files, 24 * 70, "threads {threads}: {summary:?}");
        assert_eq!(summary.hard_links, 2, "threads {threads}");
        assert_eq!(summary.directories, 48, "threads {threads}");
        assert_trees_equal(&src, &dest, &DiffOptions::default());
    }
}

/// Like [`any_thread_count_gives_the_same_tree`] with `force` into a destination that already
/// holds files and symlinks of the same names: workers replace them without following them.
#[test]
fn force_with_many_threads_replaces_without_following() {
    if !require_tool("mksquashfs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (src, image) = wide_image(tmp.path());
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let canary = outside.join("canary");
    fs::write(&canary, b"untouched").unwrap();

    let dest = tmp.path().join("out");
    fs::create_dir_all(dest.join("d02")).unwrap();
    for f in 0..60 {
        let p = dest.join(format!("d02/f{f:03}"));
        if f % 2 == 0 {
            std::os::unix::fs::symlink(&canary, p).unwrap();
        } else {
            fs::write(p, b"old content").unwrap();
        }
    }
    std::os::unix::fs::symlink(&outside, dest.join("d04")).unwrap();
    let archive = Archive::open_path(&image).unwrap();
    let options = ExtractOptions {
        threads: 8,
        force: true,
        ..ExtractOptions::default()
    };
    extract(&archive, None, &dest, &options).unwrap();
    assert_eq!(fs::read(&canary).unwrap(), b"untouched");
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        1,
        "wrote into outside"
    );
    // The destination root was pre-existing; everything below it must match.
    assert_trees_equal(&src, &dest, &DiffOptions::ignoring_root_mtime());
}

/// An attacker with write access to the destination renames a directory away while files
/// are still being created in it and puts a symlink to an outside directory in its place.
/// Creation goes through the directory fd we opened with `O_NOFOLLOW`, so nothing may appear
/// in (or change on) the outside directory: the files land in the renamed directory, or the
/// extraction fails with an error.
#[test]
fn directory_swapped_for_symlink_mid_extract_is_never_followed() {
    if !require_tool("mksquashfs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let big = src.join("a");
    fs::create_dir_all(big.join("sub")).unwrap();
    // Enough files that the swap lands while `a` is still being populated.
    const FILES: usize = 3000;
    for f in 0..FILES {
        fs::write(big.join(format!("f{f:05}")), format!("file {f}\n")).unwrap();
    }
    fs::write(big.join("sub/inner"), b"inner\n").unwrap();
    fs::create_dir(src.join("z")).unwrap();
    fs::write(src.join("z/after"), b"after\n").unwrap();
    let image = tmp.path().join("image.sqfs");
    mksquashfs(&src, &image, &["-quiet"]);
    let archive = Archive::open_path(&image).unwrap();

    // The swap must happen while extraction runs for the test to prove anything; a run where
    // it came too late is repeated (bounded) rather than counted.
    let mut raced = false;
    for attempt in 0..5 {
        let outside = tmp.path().join(format!("outside{attempt}"));
        fs::create_dir(&outside).unwrap();
        sys::chmod(&outside, 0o711).unwrap();
        sys::set_mtime(&outside, 12345).unwrap();
        // An existing empty destination, so the attacker knows the path to attack.
        let dest = tmp.path().join(format!("dest{attempt}"));
        fs::create_dir(&dest).unwrap();
        let done = AtomicBool::new(false);
        let (result, swapped_during) = std::thread::scope(|s| {
            let attacker = s.spawn(|| {
                let victim = dest.join("a");
                let moved = dest.join("a.moved");
                while !done.load(Ordering::SeqCst) {
                    if fs::rename(&victim, &moved).is_ok() {
                        std::os::unix::fs::symlink(&outside, &victim).unwrap();
                        return !done.load(Ordering::SeqCst);
                    }
                    std::thread::yield_now();
                }
                false
            });
            let options = ExtractOptions {
                threads: 4,
                ..ExtractOptions::default()
            };
            let result = extract(&archive, None, &dest, &options);
            done.store(true, Ordering::SeqCst);
            (result, attacker.join().unwrap())
        });

        // Whatever happened, the outside directory is untouched.
        let names: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.is_empty(),
            "wrote through the swapped-in symlink: {names:?}"
        );
        let md = fs::metadata(&outside).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o711, "chmod went through the symlink");
        assert_eq!(md.mtime(), 12345, "outside directory was modified");

        if swapped_during {
            raced = true;
            if result.is_ok() {
                // Creation followed the directory we made, not the name.
                let moved = dest.join("a.moved");
                assert_eq!(
                    fs::read_dir(&moved).unwrap().count(),
                    FILES + 1,
                    "files missing from the renamed directory"
                );
                assert_eq!(fs::read(moved.join("f00042")).unwrap(), b"file 42\n");
                assert!(fs::symlink_metadata(dest.join("a"))
                    .unwrap()
                    .file_type()
                    .is_symlink());
                assert_eq!(fs::read(dest.join("z/after")).unwrap(), b"after\n");
            }
            break;
        }
    }
    assert!(
        raced,
        "the swap never happened while extraction was running"
    );
}
