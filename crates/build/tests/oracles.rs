//! Images built from the shared edge-case tree (`squashbox-testkit`) must match the source
//! field by field when read three independent ways: the Linux kernel (loop mount), Debian's
//! `unsquashfs`, and our own reader.

use std::fs;
use std::path::Path;
use std::process::Command;

use squashbox_build::{build_image, BuildOptions};
use squashbox_format::{Archive, Compressor};
use squashbox_testkit::image::manifest_of_image;
use squashbox_testkit::manifest::assert_manifests_equal;
use squashbox_testkit::{
    require_loop, require_root, require_tool, run_with_timeout, DiffOptions, EdgeTree,
    EdgeTreeOptions, LoopMount, Manifest, DEFAULT_TIMEOUT,
};

/// Every field, link counts and symlink permission bits included; `system.*` xattrs (ACLs,
/// which SquashFS cannot store) are left out.
fn diff_options() -> DiffOptions {
    DiffOptions {
        check_nlink: true,
        check_symlink_mode: true,
        ignore_xattr_prefixes: vec![b"system.".to_vec()],
        ..DiffOptions::default()
    }
}

/// Verify `image` against the manifest of its source with all three readers. `work` must be
/// an existing empty directory.
fn verify_three_ways(source: &Manifest, image: &Path, work: &Path, label: &str) {
    let opts = diff_options();
    // 1. Our reader.
    let archive = Archive::open_path(image).unwrap_or_else(|e| panic!("{label}: open: {e}"));
    let ours = manifest_of_image(&archive).unwrap_or_else(|e| panic!("{label}: walk: {e}"));
    assert_manifests_equal(source, &ours, &opts, &format!("{label}: squashbox reader"));
    // 2. unsquashfs.
    let out = work.join("unsquashfs");
    let mut cmd = Command::new("unsquashfs");
    cmd.args(["-q", "-n", "-d"]).arg(&out).arg(image);
    let result = run_with_timeout(&mut cmd, DEFAULT_TIMEOUT).unwrap();
    assert!(
        result.success(),
        "{label}: unsquashfs: {}",
        result.describe()
    );
    let unsquashed = Manifest::scan(&out).unwrap();
    assert_manifests_equal(source, &unsquashed, &opts, &format!("{label}: unsquashfs"));
    fs::remove_dir_all(&out).unwrap();
    // 3. The kernel.
    let mnt = work.join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mount = LoopMount::mount(image, &mnt).unwrap_or_else(|e| panic!("{label}: {e}"));
    let mounted = Manifest::scan(mount.dir()).unwrap();
    assert_manifests_equal(source, &mounted, &opts, &format!("{label}: kernel mount"));
}

fn available() -> bool {
    require_root() && require_tool("unsquashfs") && require_loop()
}

/// Create the edge tree with `options` in `dir/src` and return its path and manifest.
fn source(dir: &Path, options: &EdgeTreeOptions) -> (std::path::PathBuf, Manifest) {
    let src = dir.join("src");
    EdgeTree::create(&src, options).unwrap();
    let manifest = Manifest::scan(&src).unwrap();
    (src, manifest)
}

/// The tree with the 10,001-entry directory, twice the default nesting (120 levels) and a
/// hard-linked symlink (our builder keeps it one inode, unlike mksquashfs).
fn matrix_tree() -> EdgeTreeOptions {
    EdgeTreeOptions {
        big_dir: true,
        depth: 120,
        symlink_hard_link: true,
        ..EdgeTreeOptions::cheap()
    }
}

fn matrix(block_size: u32) {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (src, manifest) = source(tmp.path(), &matrix_tree());
    for compressor in [
        Compressor::Zstd,
        Compressor::Gzip,
        Compressor::Xz,
        Compressor::Lz4,
        Compressor::Lzo,
    ] {
        let label = format!("{} {}K", compressor.name(), block_size / 1024);
        let work = tmp.path().join(format!("work-{}", compressor.name()));
        fs::create_dir(&work).unwrap();
        let image = work.join("image.sqfs");
        let options = BuildOptions {
            compressor,
            block_size,
            ..BuildOptions::default()
        };
        let summary = build_image(&src, &image, &options)
            .unwrap_or_else(|e| panic!("{label}: build failed: {e}"));
        assert!(summary.duplicates >= 3, "{label}: duplicates {summary:?}");
        assert_eq!(
            summary.image_bytes % 4096,
            0,
            "{label}: image padded to 4 KiB"
        );
        assert_eq!(
            fs::metadata(&image).unwrap().len(),
            summary.image_bytes,
            "{label}: image size"
        );
        verify_three_ways(&manifest, &image, &work, &label);
        fs::remove_dir_all(&work).unwrap();
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
    let (src, manifest) = source(
        tmp.path(),
        &EdgeTreeOptions {
            huge_sparse: true,
            symlink_hard_link: true,
            ..EdgeTreeOptions::cheap()
        },
    );
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

/// The full tree (the >4 GiB file and the big directory together) with the default options
/// and with small blocks, no fragments, no dedup and an odd thread count.
fn full_tree(options: BuildOptions, label: &str) {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = EdgeTreeOptions {
        symlink_hard_link: true,
        ..EdgeTreeOptions::full()
    };
    let (src, manifest) = source(tmp.path(), &tree);
    let image = tmp.path().join("edge.sqfs");
    build_image(&src, &image, &options).unwrap_or_else(|e| panic!("{label}: {e}"));
    verify_three_ways(&manifest, &image, tmp.path(), label);
}

#[test]
fn full_edge_tree_default_options_matches_three_ways() {
    full_tree(BuildOptions::default(), "zstd 128K full");
}

#[test]
fn full_edge_tree_gzip_4k_no_fragments_no_dedup_matches_three_ways() {
    full_tree(
        BuildOptions {
            compressor: Compressor::Gzip,
            block_size: 4096,
            fragments: false,
            dedup: false,
            threads: Some(3),
            ..BuildOptions::default()
        },
        "gzip 4K no fragments full",
    );
}
