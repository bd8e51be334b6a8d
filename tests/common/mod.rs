//! Shared helpers of the cross-crate tests: the source trees (created once per test binary),
//! the testkit's image → [`Manifest`] conversion through the library API, and running the CLI.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub use squashbox_testkit::image::manifest_of_image;
use squashbox_testkit::{run_with_timeout, EdgeTree, EdgeTreeOptions, Manifest, TimedOutput};

/// A generated source tree and its manifest, shared by all tests of one binary.
pub struct SourceTree {
    _dir: squashbox_testkit::tempfile::TempDir,
    /// Root of the tree.
    pub root: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The options it was made with.
    pub options: EdgeTreeOptions,
}

fn make_tree(options: EdgeTreeOptions) -> SourceTree {
    let dir = squashbox_testkit::tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("src");
    EdgeTree::create(&root, &options).expect("create edge tree");
    let manifest = Manifest::scan(&root).expect("scan edge tree");
    SourceTree {
        _dir: dir,
        root,
        manifest,
        options,
    }
}

/// The edge tree with the 10,001-entry directory, without the >4 GiB file.
pub fn base_tree() -> &'static SourceTree {
    static TREE: OnceLock<SourceTree> = OnceLock::new();
    TREE.get_or_init(|| {
        make_tree(EdgeTreeOptions {
            big_dir: true,
            ..EdgeTreeOptions::cheap()
        })
    })
}

/// The full edge tree: the base tree plus the >4 GiB sparse file.
pub fn full_tree() -> &'static SourceTree {
    static TREE: OnceLock<SourceTree> = OnceLock::new();
    TREE.get_or_init(|| make_tree(EdgeTreeOptions::full()))
}

/// Run `squashbox extract IMG DEST` (bounded in time), returning what happened.
pub fn cli_extract(bin: &Path, img: &Path, dest: &Path, timeout: Duration) -> TimedOutput {
    let mut cmd = Command::new(bin);
    cmd.arg("extract").arg(img).arg(dest);
    run_with_timeout(&mut cmd, timeout).expect("spawn squashbox")
}
