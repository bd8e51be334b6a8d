//! Hostile images and hostile destinations: CVE-2021-40153 (names escaping DEST),
//! CVE-2021-41072 (write through a planted symlink), unsorted listings, directory loops,
//! depth limits, and refusing/replacing existing destination content. Every test checks that
//! nothing outside DEST changed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use squashbox_extract::{extract, ExtractError, ExtractOptions};
use squashbox_format::Archive;
use squashbox_testkit::{mksquashfs, require_tool};

/// Deterministic, uncompressed image so names can be patched in place.
fn raw_image(src: &Path, image: &Path) {
    mksquashfs(
        src,
        image,
        &[
            "-noI",
            "-noD",
            "-noF",
            "-noX",
            "-no-xattrs",
            "-mkfs-time",
            "0",
            "-all-time",
            "100",
        ],
    );
}

fn tools_ok() -> bool {
    require_tool("mksquashfs")
}

/// Layout: tmp/src (tree), tmp/image, tmp/box/ (contains only what extraction makes),
/// tmp/outside/ (canaries). Returns (tmp, src, image, box, outside).
struct Scene {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    image: PathBuf,
    boxdir: PathBuf,
    outside: PathBuf,
}

fn scene() -> Scene {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().to_path_buf();
    for d in ["src", "box", "outside"] {
        fs::create_dir(p.join(d)).unwrap();
    }
    Scene {
        src: p.join("src"),
        image: p.join("image.sqfs"),
        boxdir: p.join("box"),
        outside: p.join("outside"),
        _tmp: tmp,
    }
}

fn run_extract(s: &Scene, dest: &Path, force: bool) -> Result<(), ExtractError> {
    let archive = Archive::open_path(&s.image).unwrap();
    let options = ExtractOptions {
        force,
        ..ExtractOptions::default()
    };
    extract(&archive, None, dest, &options).map(|_| ())
}

/// The error is one of ours or the reader's corruption report, and its text names `needle`.
fn assert_refused(err: &ExtractError, needle: &str) {
    let text = err.to_string();
    assert!(
        text.contains(needle),
        "error does not name {needle:?}: {text}"
    );
}

fn assert_box_empty(s: &Scene) {
    assert!(
        list_names(&s.boxdir).is_empty(),
        "left behind in box: {:?}",
        list_names(&s.boxdir)
    );
}

#[test]
fn cve_2021_40153_dotdot_name_is_refused_and_nothing_escapes() {
    if !tools_ok() {
        return;
    }
    let s = scene();
    fs::write(s.src.join("aa_x"), b"PAYLOAD").unwrap();
    raw_image(&s.src, &s.image);
    patch_unique(&s.image, b"aa_x", b"../x");
    let dest = s.boxdir.join("dest");
    let err = run_extract(&s, &dest, false).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::UnsafeName { .. } | ExtractError::Image { .. }
        ),
        "{err:?}"
    );
    assert_refused(&err, "../x");
    assert!(!s.boxdir.join("x").exists(), "../x escaped DEST");
    assert_box_empty(&s);
}

#[test]
fn names_with_slash_or_dotdot_are_refused() {
    if !tools_ok() {
        return;
    }
    for (from, to) in [(&b"ab_cd"[..], &b"ab/cd"[..]), (b"qz", b"..")] {
        let s = scene();
        fs::create_dir(s.src.join("ab")).unwrap();
        fs::write(s.src.join(std::str::from_utf8(from).unwrap()), b"PAYLOAD").unwrap();
        raw_image(&s.src, &s.image);
        patch_unique(&s.image, from, to);
        let dest = s.boxdir.join("dest");
        let err = run_extract(&s, &dest, false).unwrap_err();
        assert_refused(&err, std::str::from_utf8(to).unwrap());
        assert_box_empty(&s);
    }
}

#[test]
fn cve_2021_41072_symlink_then_file_of_same_name_does_not_write_through() {
    if !tools_ok() {
        return;
    }
    let s = scene();
    let canary = s.outside.join("canary");
    fs::write(&canary, b"original").unwrap();
    std::os::unix::fs::symlink(&canary, s.src.join("victim_link")).unwrap();
    fs::write(s.src.join("victim_linz"), b"PWNED").unwrap();
    raw_image(&s.src, &s.image);
    patch_unique(&s.image, b"victim_linz", b"victim_link");
    let dest = s.boxdir.join("dest");
    let err = run_extract(&s, &dest, false).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::DuplicateEntry { .. } | ExtractError::Image { .. }
        ),
        "{err:?}"
    );
    assert_refused(&err, "victim_link");
    assert_eq!(fs::read(&canary).unwrap(), b"original");
    assert_eq!(list_names(&s.outside).len(), 1);
    assert_box_empty(&s);
}

#[test]
fn cve_2021_41072_symlink_then_directory_of_same_name_does_not_write_through() {
    if !tools_ok() {
        return;
    }
    let s = scene();
    std::os::unix::fs::symlink(&s.outside, s.src.join("victim_link")).unwrap();
    fs::create_dir(s.src.join("victim_linz")).unwrap();
    fs::write(s.src.join("victim_linz/planted"), b"PWNED").unwrap();
    raw_image(&s.src, &s.image);
    patch_unique(&s.image, b"victim_linz", b"victim_link");
    let dest = s.boxdir.join("dest");
    let err = run_extract(&s, &dest, false).unwrap_err();
    assert_refused(&err, "victim_link");
    assert!(
        list_names(&s.outside).is_empty(),
        "wrote into the symlink target"
    );
    assert_box_empty(&s);
}

#[test]
fn unsorted_listing_is_refused() {
    if !tools_ok() {
        return;
    }
    let s = scene();
    fs::write(s.src.join("m_entry"), b"m").unwrap();
    fs::write(s.src.join("n_entry"), b"n").unwrap();
    raw_image(&s.src, &s.image);
    patch_unique(&s.image, b"n_entry", b"a_entry");
    let dest = s.boxdir.join("dest");
    let err = run_extract(&s, &dest, false).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::UnsortedEntries { .. } | ExtractError::Image { .. }
        ),
        "{err:?}"
    );
    assert_refused(&err, "a_entry");
    assert_box_empty(&s);
}

#[test]
fn directory_loop_is_detected() {
    if !tools_ok() {
        return;
    }
    let s = scene();
    fs::create_dir_all(s.src.join("loop_parent/loop_child")).unwrap();
    raw_image(&s.src, &s.image);
    let mut data = fs::read(&s.image).unwrap();
    // Each listing here has one entry: 12-byte header (count, start block, base inode number)
    // then the entry (offset u16, inode delta i16, type u16, name size - 1 u16, name).
    let parent_entry = find_unique(&data, b"loop_parent") - 8;
    let child_entry = find_unique(&data, b"loop_child") - 8;
    let u32_at = |d: &[u8], p: usize| u32::from_le_bytes(d[p..p + 4].try_into().unwrap());
    let u16_at = |d: &[u8], p: usize| u16::from_le_bytes(d[p..p + 2].try_into().unwrap());
    let (parent_hdr, child_hdr) = (parent_entry - 12, child_entry - 12);
    assert_eq!(
        u32_at(&data, parent_hdr + 4),
        u32_at(&data, child_hdr + 4),
        "same inode block"
    );
    let parent_number = i64::from(u32_at(&data, parent_hdr + 8))
        + i64::from(u16_at(&data, parent_entry + 2) as i16);
    let child_base = i64::from(u32_at(&data, child_hdr + 8));
    let delta = i16::try_from(parent_number - child_base).unwrap();
    let parent_offset = u16_at(&data, parent_entry);
    data[child_entry..child_entry + 2].copy_from_slice(&parent_offset.to_le_bytes());
    data[child_entry + 2..child_entry + 4].copy_from_slice(&delta.to_le_bytes());
    fs::write(&s.image, data).unwrap();

    let dest = s.boxdir.join("dest");
    let err = run_extract(&s, &dest, false).unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::DirectoryLoop { .. } | ExtractError::Image { .. }
        ),
        "{err:?}"
    );
    assert_refused(&err, "loop_child");
    assert_box_empty(&s);
}

#[test]
fn depth_limit_is_enforced() {
    if !tools_ok() {
        return;
    }
    let s = scene();
    let mut deep = s.src.clone();
    for i in 0..12 {
        deep.push(format!("d{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    raw_image(&s.src, &s.image);
    let archive = Archive::open_path(&s.image).unwrap();
    let dest = s.boxdir.join("dest");
    let shallow = ExtractOptions {
        max_depth: 5,
        ..ExtractOptions::default()
    };
    let err = extract(&archive, None, &dest, &shallow).unwrap_err();
    assert!(
        matches!(err, ExtractError::TooDeep { max_depth: 5, .. }),
        "{err:?}"
    );
    assert_box_empty(&s);
    // The same tree within the limit extracts fine.
    extract(&archive, None, &dest, &ExtractOptions::default()).unwrap();
    assert!(dest.join("d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11").is_dir());
}

#[test]
fn non_empty_destination_is_refused_without_force_and_left_untouched() {
    if !tools_ok() {
        return;
    }
    let s = scene();
    fs::write(s.src.join("file"), b"new").unwrap();
    raw_image(&s.src, &s.image);
    let dest = s.boxdir.join("dest");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("file"), b"old").unwrap();
    let err = run_extract(&s, &dest, false).unwrap_err();
    assert!(
        matches!(err, ExtractError::DestinationNotEmpty { .. }),
        "{err:?}"
    );
    assert_eq!(fs::read(dest.join("file")).unwrap(), b"old");
    // A file as destination is refused even with force.
    let file_dest = s.boxdir.join("plain");
    fs::write(&file_dest, b"x").unwrap();
    let err = run_extract(&s, &file_dest, true).unwrap_err();
    assert!(
        matches!(err, ExtractError::DestinationNotDirectory { .. }),
        "{err:?}"
    );
    assert_eq!(fs::read(&file_dest).unwrap(), b"x");
}

#[test]
fn force_replaces_planted_symlinks_without_following_them() {
    if !tools_ok() {
        return;
    }
    let s = scene();
    fs::write(s.src.join("file"), b"from image").unwrap();
    fs::create_dir(s.src.join("dir")).unwrap();
    fs::write(s.src.join("dir/inner"), b"inner from image").unwrap();
    fs::create_dir(s.src.join("merged")).unwrap();
    fs::write(s.src.join("merged/new"), b"new").unwrap();
    raw_image(&s.src, &s.image);

    let canary = s.outside.join("canary");
    fs::write(&canary, b"original").unwrap();
    let dest = s.boxdir.join("dest");
    fs::create_dir_all(dest.join("merged")).unwrap();
    fs::write(dest.join("merged/kept"), b"kept").unwrap();
    std::os::unix::fs::symlink(&canary, dest.join("file")).unwrap();
    std::os::unix::fs::symlink(&s.outside, dest.join("dir")).unwrap();

    run_extract(&s, &dest, true).unwrap();
    assert_eq!(fs::read(&canary).unwrap(), b"original");
    assert_eq!(
        list_names(&s.outside).len(),
        1,
        "wrote through the directory symlink"
    );
    let file_md = fs::symlink_metadata(dest.join("file")).unwrap();
    assert!(file_md.is_file());
    assert_eq!(fs::read(dest.join("file")).unwrap(), b"from image");
    assert!(fs::symlink_metadata(dest.join("dir")).unwrap().is_dir());
    assert_eq!(
        fs::read(dest.join("dir/inner")).unwrap(),
        b"inner from image"
    );
    // Directories present in both are merged.
    assert_eq!(fs::read(dest.join("merged/kept")).unwrap(), b"kept");
    assert_eq!(fs::read(dest.join("merged/new")).unwrap(), b"new");
}

#[test]
fn failure_into_existing_empty_destination_leaves_it_empty() {
    if !tools_ok() {
        return;
    }
    let s = scene();
    fs::create_dir(s.src.join("a_first")).unwrap();
    fs::write(s.src.join("a_first/content"), b"data").unwrap();
    fs::write(s.src.join("zz_x"), b"PAYLOAD").unwrap();
    raw_image(&s.src, &s.image);
    patch_unique(&s.image, b"zz_x", b"../x");
    let dest = s.boxdir.join("dest");
    fs::create_dir(&dest).unwrap();
    let err = run_extract(&s, &dest, false).unwrap_err();
    assert_refused(&err, "../x");
    assert!(
        list_names(&dest).is_empty(),
        "partial output left: {:?}",
        list_names(&dest)
    );
    assert_eq!(
        list_names(&s.boxdir),
        [b"dest".to_vec()].into_iter().collect()
    );
}
