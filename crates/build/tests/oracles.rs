//! Images built from a varied tree must match the source field by field when read three
//! independent ways: the Linux kernel (loop mount), Debian's `unsquashfs`, and our reader.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::{assert_same, make_tree, scan, scan_archive, Ignore, LoopMount, TreeOptions};
use squashbox_build::{build_image, BuildOptions};
use squashbox_format::Compressor;

fn options(compressor: Compressor, block_size: u32) -> BuildOptions {
    BuildOptions {
        compressor,
        block_size,
        ..BuildOptions::default()
    }
}

/// Verify `image` against the manifest of `source` with all three readers.
fn verify_three_ways(source_manifest: &common::Manifest, image: &Path, work: &Path, label: &str) {
    // 1. Our reader.
    assert_same(
        &format!("{label}: squashbox reader"),
        source_manifest,
        &scan_archive(image),
        Ignore::default(),
    );
    // 2. unsquashfs.
    let out = work.join("unsquashfs");
    common::run(
        "unsquashfs",
        &[
            OsStr::new("-q"),
            OsStr::new("-n"),
            OsStr::new("-d"),
            out.as_os_str(),
            image.as_os_str(),
        ],
    );
    assert_same(
        &format!("{label}: unsquashfs"),
        source_manifest,
        &scan(&out),
        Ignore::default(),
    );
    std::fs::remove_dir_all(&out).unwrap();
    // 3. The kernel.
    let mount = LoopMount::new(image, &work.join("mnt"));
    assert_same(
        &format!("{label}: kernel mount"),
        source_manifest,
        &scan(mount.path()),
        Ignore::default(),
    );
}

fn available() -> bool {
    common::require_root() && common::require_tool("unsquashfs") && common::require_loop_mount()
}

fn matrix(block_size: u32) {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(
        &src,
        &TreeOptions {
            block_size: block_size as usize,
            big_dir_entries: 10_000,
            huge_sparse: false,
        },
    );
    let manifest = scan(&src);
    for compressor in [
        Compressor::Zstd,
        Compressor::Gzip,
        Compressor::Xz,
        Compressor::Lz4,
        Compressor::Lzo,
    ] {
        let label = format!("{} {}K", compressor.name(), block_size / 1024);
        let work = tmp.path().join(format!("work-{}", compressor.name()));
        std::fs::create_dir(&work).unwrap();
        let image = work.join("image.sqfs");
        let summary = build_image(&src, &image, &options(compressor, block_size))
            .unwrap_or_else(|e| panic!("{label}: build failed: {e}"));
        assert!(summary.duplicates >= 3, "{label}: duplicates {summary:?}");
        assert_eq!(
            summary.image_bytes % 4096,
            0,
            "{label}: image padded to 4 KiB"
        );
        assert_eq!(
            std::fs::metadata(&image).unwrap().len(),
            summary.image_bytes,
            "{label}: image size"
        );
        verify_three_ways(&manifest, &image, &work, &label);
        std::fs::remove_dir_all(&work).unwrap();
    }
}

#[test]
fn all_compressors_4k_blocks_match_source_three_ways() {
    matrix(4096);
}

#[test]
fn all_compressors_128k_blocks_match_source_three_ways() {
    matrix(128 * 1024);
}

#[test]
fn all_compressors_1m_blocks_match_source_three_ways() {
    matrix(1024 * 1024);
}

/// Files over 4 GiB need extended inodes with 64-bit sizes; without fragments and dedup every
/// tail is a short block.
#[test]
fn huge_sparse_file_without_fragments_matches_three_ways() {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(
        &src,
        &TreeOptions {
            block_size: 1 << 20,
            big_dir_entries: 10,
            huge_sparse: true,
        },
    );
    let manifest = scan(&src);
    let image = tmp.path().join("image.sqfs");
    let opts = BuildOptions {
        block_size: 1 << 20,
        fragments: false,
        dedup: false,
        ..BuildOptions::default()
    };
    let summary = build_image(&src, &image, &opts).unwrap();
    assert_eq!(summary.duplicates, 0);
    assert!(
        summary.image_bytes < 64 << 20,
        "sparse data stored as holes"
    );
    verify_three_ways(&manifest, &image, tmp.path(), "zstd 1M no-fragments huge");
}
