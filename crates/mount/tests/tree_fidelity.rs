//! A mounted image shows exactly the source tree (testkit manifest, field by field) and
//! exactly what the kernel's squashfs driver shows for the same image (every lstat field,
//! inode numbers, readdir stream with offsets, xattrs), for every compressor and the image
//! layouts mksquashfs can produce.

mod common;

use std::time::Duration;

use common::{assert_same_as_kernel, can_run, mksquashfs, watchdog, Fixture, KernelMount};
use squashbox_testkit::{assert_trees_equal, DiffOptions, EdgeTree, EdgeTreeOptions};

fn check_image(fx: &Fixture, what: &str) {
    let _dog = watchdog(&fx.mnt, Duration::from_secs(120));
    let handle = fx.mount();
    assert!(
        handle.is_alive(),
        "{what}: session died right after mounting"
    );
    assert_trees_equal(&fx.src, &fx.mnt, &DiffOptions::ignoring_root_mtime());
    let kernel = KernelMount::new(&fx.img, &fx.tmp.path().join("kernel"));
    assert_same_as_kernel(&fx.mnt, &kernel.dir);
    drop(kernel);
    assert_eq!(handle.io_errors(), 0, "{what}: requests failed with EIO");
    handle.unmount().expect("unmount");
    assert!(!squashbox_mount::is_mounted(&fx.mnt).unwrap());
}

fn edge_fixture() -> Fixture {
    let fx = Fixture::new();
    EdgeTree::create(&fx.src, &EdgeTreeOptions::cheap()).expect("create edge tree");
    fx
}

#[test]
fn every_compressor_matches_source_and_kernel() {
    if !can_run() {
        return;
    }
    let fx = edge_fixture();
    for comp in ["gzip", "xz", "lzo", "lz4", "zstd"] {
        mksquashfs(&fx.src, &fx.img, &["-comp", comp]);
        check_image(&fx, comp);
    }
    common::assert_no_mounts_under(fx.tmp.path());
}

#[test]
fn image_layout_variants_match_source_and_kernel() {
    if !can_run() {
        return;
    }
    let fx = edge_fixture();
    let variants: &[&[&str]] = &[
        // No export table: node ids must be remembered from lookups alone.
        &["-no-exports"],
        &["-no-fragments", "-b", "4096"],
        &["-always-use-fragments", "-b", "1M", "-comp", "zstd"],
        &["-noI", "-noD", "-noF", "-noX"],
        &["-no-duplicates", "-comp", "lz4"],
    ];
    for args in variants {
        mksquashfs(&fx.src, &fx.img, args);
        check_image(&fx, &format!("{args:?}"));
    }
    common::assert_no_mounts_under(fx.tmp.path());
}

#[test]
fn image_without_xattrs_lists_none() {
    if !can_run() {
        return;
    }
    let fx = edge_fixture();
    mksquashfs(&fx.src, &fx.img, &["-no-xattrs"]);
    let _dog = watchdog(&fx.mnt, Duration::from_secs(60));
    let handle = fx.mount();
    let opts = DiffOptions {
        ignore_root_mtime: true,
        ignore_xattrs: true,
        ..DiffOptions::default()
    };
    assert_trees_equal(&fx.src, &fx.mnt, &opts);
    // Nothing lists an xattr; whether listxattr answers EOPNOTSUPP or an empty list depends
    // on the inode type exactly as in the kernel (compared below).
    for (path, rec) in common::stat_tree(&fx.mnt) {
        assert!(
            rec.xattrs.is_empty() || rec.xattrs == vec![(b"<EOPNOTSUPP>".to_vec(), Vec::new())],
            "{path:?}: {:?}",
            rec.xattrs
        );
    }
    let kernel = KernelMount::new(&fx.img, &fx.tmp.path().join("kernel"));
    assert_same_as_kernel(&fx.mnt, &kernel.dir);
    drop(kernel);
    handle.unmount().unwrap();
}

#[test]
fn images_from_our_builder_match_source_and_kernel() {
    if !can_run() {
        return;
    }
    let fx = edge_fixture();
    use squashbox_format::Compressor;
    for compressor in [
        Compressor::Zstd,
        Compressor::Gzip,
        Compressor::Xz,
        Compressor::Lz4,
        Compressor::Lzo,
    ] {
        let options = squashbox_build::BuildOptions {
            compressor,
            ..Default::default()
        };
        squashbox_build::build_image(&fx.src, &fx.img, &options).expect("build image");
        check_image(&fx, &format!("builder {compressor:?}"));
    }
    let small_blocks = squashbox_build::BuildOptions {
        block_size: 4096,
        fragments: false,
        ..Default::default()
    };
    squashbox_build::build_image(&fx.src, &fx.img, &small_blocks).expect("build image");
    check_image(&fx, "builder 4K blocks, no fragments");
    common::assert_no_mounts_under(fx.tmp.path());
}
