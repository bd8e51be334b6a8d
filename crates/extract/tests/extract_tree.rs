//! Extraction of real mksquashfs images compared field by field with the source tree and with
//! `unsquashfs -d` output.

mod common;

use std::path::Path;

use common::*;
use squashbox_extract::{extract, ExtractOptions};
use squashbox_format::Archive;

const BLOCK: usize = 4096;

fn tools_ok() -> bool {
    require(
        have_tool("mksquashfs") && have_tool("unsquashfs"),
        "mksquashfs/unsquashfs",
    )
}

fn build_image(tmp: &Path, extra: &[&str]) -> std::path::PathBuf {
    let src = tmp.join("src");
    std::fs::create_dir(&src).unwrap();
    build_edge_tree(&src, BLOCK);
    let image = tmp.join("image.sqfs");
    let mut args = vec!["-b", "4096"];
    args.extend_from_slice(extra);
    mksquashfs(&src, &image, &args);
    image
}

fn snap_opts() -> Snap {
    Snap {
        with_owner: is_root(),
        with_xattrs: true,
        with_sockets: true,
    }
}

fn extract_and_compare(extra: &[&str], threads: usize) {
    if !tools_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = build_image(tmp.path(), extra);
    let dest = tmp.path().join("out");
    let archive = Archive::open_path(&image).unwrap();
    let options = ExtractOptions {
        threads,
        ..ExtractOptions::default()
    };
    let summary = extract(&archive, None, &dest, &options).unwrap();

    let expected = snapshot(&tmp.path().join("src"), snap_opts());
    let actual = snapshot(&dest, snap_opts());
    assert_same(&expected, &actual, "squashbox extract vs source");

    // Sparse files stay sparse.
    assert!(
        actual[&b"sparse".to_vec()].has_holes,
        "sparse file lost its holes"
    );
    assert!(
        actual[&b"all_hole".to_vec()].has_holes,
        "all-hole file was written out"
    );
    assert!(!actual[&b"multi_block".to_vec()].has_holes);

    // Summary counts what the tree holds.
    assert_eq!(summary.hard_links, 2, "{summary:?}");
    assert_eq!(summary.fifos, 1);
    assert_eq!(summary.sockets, 1);
    assert_eq!(summary.symlinks, 4);
    if is_root() {
        assert_eq!(summary.devices, 2);
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
    unsquashfs(&image, &theirs);
    let opts = Snap {
        with_sockets: false,
        ..snap_opts()
    };
    let mut a = snapshot(&theirs, opts);
    let mut b = snapshot(&ours, opts);
    // unsquashfs writes the holes of sparse files as holes too, but compare only content.
    for m in [&mut a, &mut b] {
        for e in m.values_mut() {
            e.has_holes = false;
        }
    }
    assert_same(&a, &b, "squashbox extract vs unsquashfs -d");
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
        Some(b"/dir/sub"),
        &dest,
        &ExtractOptions::default(),
    )
    .unwrap();
    let opts = Snap {
        with_sockets: true,
        ..snap_opts()
    };
    let mut expected = snapshot(&tmp.path().join("src/dir/sub"), opts);
    let mut actual = snapshot(&dest, opts);
    // link_c is linked outside the subtree in the source; inside it is a lone name.
    for m in [&mut expected, &mut actual] {
        for e in m.values_mut() {
            e.link_group = None;
        }
    }
    assert_same(&expected, &actual, "--path dir/sub vs source dir/sub");
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
        Some(b"dir/a.txt"),
        &dest,
        &ExtractOptions::default(),
    )
    .unwrap();
    assert_eq!(list_names(&dest), [b"a.txt".to_vec()].into_iter().collect());
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"alpha\n");
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
