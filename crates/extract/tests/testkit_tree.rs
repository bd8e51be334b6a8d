//! The shared testkit's full edge-case tree (all types, >4 GiB sparse file, 10,001-entry
//! directory, 60-deep nesting, block-boundary sizes, extreme owners/modes/mtimes, long and
//! non-UTF-8 names, xattrs) through mksquashfs and our extractor, compared field by field.

use squashbox_extract::{extract, ExtractOptions};
use squashbox_format::Archive;
use squashbox_testkit::{
    assert_trees_equal, mksquashfs, require_tool, tempfile, DiffOptions, EdgeTree, EdgeTreeOptions,
};

#[test]
fn full_edge_tree_round_trips_through_mksquashfs_and_extract() {
    if !require_tool("mksquashfs") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    EdgeTree::create(&src, &EdgeTreeOptions::full()).unwrap();
    let image = tmp.path().join("image.sqfs");
    mksquashfs(&src, &image, &["-quiet", "-comp", "zstd"]);
    let archive = Archive::open_path(&image).unwrap();
    let dest = tmp.path().join("out");
    let summary = extract(&archive, None, &dest, &ExtractOptions::default()).unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    assert_trees_equal(&src, &dest, &DiffOptions::default());
    // The >4 GiB file stays sparse on disk.
    use std::os::unix::fs::MetadataExt;
    let huge = std::fs::metadata(dest.join(squashbox_testkit::tree::HUGE_SPARSE_PATH)).unwrap();
    assert_eq!(huge.size(), squashbox_testkit::tree::HUGE_SPARSE_SIZE);
    assert!(
        huge.blocks() * 512 < 64 << 20,
        "huge sparse file was written out"
    );
}
