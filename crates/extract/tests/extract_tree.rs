//! Extraction of real mksquashfs images of the shared edge-case tree (`squashbox-testkit`),
//! compared field by field with the source tree and with `unsquashfs -d` output.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::list_names;
use squashbox_extract::{extract, ExtractOptions, ExtractSummary};
use squashbox_format::Archive;
use squashbox_testkit::{
    assert_trees_equal, is_root, mksquashfs, require_tool, run_with_timeout, DiffOptions, EdgeTree,
    EdgeTreeOptions, EntryKind, Manifest, DEFAULT_TIMEOUT,
};

fn tools_ok() -> bool {
    require_tool("mksquashfs") && require_tool("unsquashfs")
}

/// Create the edge tree in `tmp/src` and pack it with 4 KiB blocks and `extra` options.
fn build_image(tmp: &Path, extra: &[&str]) -> PathBuf {
    let src = tmp.join("src");
    EdgeTree::create(&src, &EdgeTreeOptions::cheap()).unwrap();
    let image = tmp.join("image.sqfs");
    mksquashfs(&src, &image, &[&["-b", "4096"][..], extra].concat());
    image
}

/// Every field, symlink permission bits included; owners only as root (a user cannot give
/// files away).
fn diff_options() -> DiffOptions {
    DiffOptions {
        ignore_owners: !is_root(),
        check_symlink_mode: true,
        ..DiffOptions::default()
    }
}

/// True when `path` occupies fewer bytes on disk than its size (has holes).
fn has_holes(path: &Path) -> bool {
    let meta = std::fs::symlink_metadata(path).unwrap();
    meta.blocks() * 512 < meta.size()
}

/// The counts extracting all of `source` must report: every name of a hard-link group but
/// the first is a hard link; the first counts as its type.
fn expected_counts(source: &Manifest) -> ExtractSummary {
    let mut seen = HashSet::new();
    let mut want = ExtractSummary::default();
    for entry in source.entries.values() {
        if entry.link_key.is_some_and(|key| !seen.insert(key)) {
            want.hard_links += 1;
            continue;
        }
        match entry.kind {
            EntryKind::Symlink { .. } => want.symlinks += 1,
            EntryKind::CharDev { .. } | EntryKind::BlockDev { .. } => want.devices += 1,
            EntryKind::Fifo => want.fifos += 1,
            EntryKind::Socket => want.sockets += 1,
            EntryKind::Dir | EntryKind::File { .. } => {}
        }
    }
    want
}

fn extract_and_compare(extra: &[&str], threads: usize) {
    if !tools_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = build_image(tmp.path(), extra);
    let src = tmp.path().join("src");
    let dest = tmp.path().join("out");
    let archive = Archive::open_path(&image).unwrap();
    let options = ExtractOptions {
        threads,
        ..ExtractOptions::default()
    };
    let summary = extract(&archive, None, &dest, &options).unwrap();

    assert_trees_equal(&src, &dest, &diff_options());

    // Sparse files stay sparse.
    assert!(
        has_holes(&dest.join("sparse/islands")),
        "sparse file lost its holes"
    );
    assert!(
        has_holes(&dest.join("sparse/all_hole")),
        "all-hole file was written out"
    );
    assert!(!has_holes(&dest.join("sizes/several_mib_random")));

    // Summary counts what the tree holds.
    let want = expected_counts(&Manifest::scan(&src).unwrap());
    assert!(want.hard_links >= 5 && want.fifos >= 2 && want.symlinks >= 6);
    assert_eq!(summary.hard_links, want.hard_links, "{summary:?}");
    assert_eq!(summary.fifos, want.fifos);
    assert_eq!(summary.sockets, want.sockets);
    assert_eq!(summary.symlinks, want.symlinks);
    if is_root() {
        assert!(want.devices >= 6);
        assert_eq!(summary.devices, want.devices);
        assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    }
}

#[test]
fn extraction_matches_source_gzip_parallel() {
    extract_and_compare(&[], 4);
}

#[test]
fn extraction_matches_source_single_thread_uncompressed_no_fragments() {
    extract_and_compare(&["-noI", "-noD", "-noF", "-noX", "-no-fragments"], 1);
}

#[test]
fn extraction_matches_source_xz_always_fragments() {
    extract_and_compare(&["-comp", "xz", "-always-use-fragments"], 2);
}

#[test]
fn extraction_matches_unsquashfs() {
    if !tools_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = build_image(tmp.path(), &[]);
    let ours = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    let archive = Archive::open_path(&image).unwrap();
    extract(&archive, None, &ours, &ExtractOptions::default()).unwrap();
    let mut cmd = Command::new("unsquashfs");
    cmd.args(["-quiet", "-no-progress", "-d"])
        .arg(&theirs)
        .arg(&image);
    let out = run_with_timeout(&mut cmd, DEFAULT_TIMEOUT).unwrap();
    assert!(out.success(), "unsquashfs: {}", out.describe());
    // Sockets are left out of this comparison (as before the testkit), holes are not compared.
    let source = Manifest::scan(tmp.path().join("src")).unwrap();
    let opts = DiffOptions {
        ignore_paths: source
            .entries
            .iter()
            .filter(|(_, e)| e.kind == EntryKind::Socket)
            .map(|(path, _)| path.clone())
            .collect(),
        ..diff_options()
    };
    assert!(!opts.ignore_paths.is_empty());
    assert_trees_equal(&theirs, &ours, &opts);
}

#[test]
fn subpath_directory_extracts_its_contents() {
    if !tools_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = build_image(tmp.path(), &[]);
    let dest = tmp.path().join("sub_out");
    let archive = Archive::open_path(&image).unwrap();
    extract(
        &archive,
        Some(b"/links/b"),
        &dest,
        &ExtractOptions::default(),
    )
    .unwrap();
    // Everything in links/b is linked to names outside it in the source; inside it each is a
    // lone name, so hard-link groups are not compared.
    let opts = DiffOptions {
        ignore_hard_links: true,
        ..diff_options()
    };
    assert_trees_equal(tmp.path().join("src/links/b"), &dest, &opts);
}

#[test]
fn subpath_file_extracts_one_entry_by_name() {
    if !tools_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = build_image(tmp.path(), &[]);
    let dest = tmp.path().join("one_out");
    let archive = Archive::open_path(&image).unwrap();
    extract(
        &archive,
        Some(b"types/regular"),
        &dest,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(
        list_names(&dest),
        [b"regular".to_vec()].into_iter().collect()
    );
    assert_eq!(
        std::fs::read(dest.join("regular")).unwrap(),
        std::fs::read(tmp.path().join("src/types/regular")).unwrap()
    );
}

#[test]
fn missing_subpath_is_a_typed_error_and_creates_nothing() {
    if !tools_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = build_image(tmp.path(), &[]);
    let dest = tmp.path().join("never");
    let archive = Archive::open_path(&image).unwrap();
    let err = extract(
        &archive,
        Some(b"no/such"),
        &dest,
        &ExtractOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, squashbox_extract::ExtractError::Image { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no/such"), "{err}");
    assert!(!dest.exists());
}
