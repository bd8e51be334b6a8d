//! The shared edge-case tree (`squashbox-testkit`) built by our builder must read back
//! identically through the kernel and through `unsquashfs`, compared by the shared manifest.

use squashbox_build::{build_image, BuildOptions};
use squashbox_format::Compressor;
use squashbox_testkit::{
    manifest::assert_manifests_equal, require_loop, require_root, require_tool, run_with_timeout,
    DiffOptions, EdgeTree, EdgeTreeOptions, LoopMount, Manifest,
};

fn check(options: BuildOptions, label: &str) {
    if !require_root() || !require_tool("unsquashfs") || !require_loop() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    EdgeTree::create(&src, &EdgeTreeOptions::full()).unwrap();
    let expected = Manifest::scan(&src).unwrap();
    let image = tmp.path().join("edge.sqfs");
    build_image(&src, &image, &options).unwrap_or_else(|e| panic!("{label}: {e}"));

    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    {
        let mount = LoopMount::mount(&image, &mnt).unwrap();
        let got = Manifest::scan(mount.dir()).unwrap();
        assert_manifests_equal(
            &expected,
            &got,
            &DiffOptions::default(),
            &format!("{label}: kernel"),
        );
    }

    let out = tmp.path().join("out");
    let mut cmd = std::process::Command::new("unsquashfs");
    cmd.args(["-q", "-n", "-d"]).arg(&out).arg(&image);
    let result = run_with_timeout(&mut cmd, std::time::Duration::from_secs(600)).unwrap();
    assert!(
        result.success(),
        "{label}: unsquashfs: {}",
        result.describe()
    );
    let got = Manifest::scan(&out).unwrap();
    assert_manifests_equal(
        &expected,
        &got,
        &DiffOptions::default(),
        &format!("{label}: unsquashfs"),
    );
}

#[test]
fn edge_tree_default_options_kernel_and_unsquashfs() {
    check(BuildOptions::default(), "zstd 128K");
}

#[test]
fn edge_tree_gzip_4k_no_fragments_no_dedup_kernel_and_unsquashfs() {
    check(
        BuildOptions {
            compressor: Compressor::Gzip,
            block_size: 4096,
            fragments: false,
            dedup: false,
            threads: Some(3),
            ..BuildOptions::default()
        },
        "gzip 4K no fragments",
    );
}
