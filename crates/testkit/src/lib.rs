//! squashbox-testkit: shared test support for every squashbox crate (dev-only, never published).
//!
//! - [`skip`]: `require_root()`, `require_tool()`, `require_fuse()`, `require_loop()` decide
//!   whether a test can run here. They return `true` when it can; otherwise they print why and
//!   return `false` so the test returns early — except under `CI=true`, where a skip is a
//!   failure and they panic.
//! - [`tree`]: [`EdgeTree::create`] writes a directory tree holding every edge case SquashFS
//!   tools get wrong (all file types, hard links, sparse and >4 GiB files, block-boundary sizes,
//!   xattrs, extreme owners, modes and mtimes, long and non-UTF-8 names, huge and deep dirs).
//! - [`manifest`]: [`Manifest::scan`] records every field of a tree; [`diff`] compares two
//!   manifests field by field and describes each difference.
//! - [`mounts`]: RAII guards [`LoopMount`] and [`MountGuard`] that always unmount on drop.
//! - [`process`]: [`run_with_timeout`] (never hang a test), [`mksquashfs`] (the real tool),
//!   [`squashbox_bin`]/[`require_squashbox_bin`] (the built CLI binary).
//! - [`sys`]: xattrs, mknod/mkfifo, lchown, no-follow mtimes, and
//!   [`sys::limit_address_space`] (run a child under `RLIMIT_AS` so a runaway allocation aborts).
//! - [`hash`]: [`ContentHasher`], a content hash where holes and written zeros hash the same.
//! - `image` (feature `image`): `manifest_of_image`, the [`Manifest`] of an image read through
//!   squashbox's own reader.
//!
//! ```no_run
//! use squashbox_testkit::*;
//! # fn t() {
//! if !require_tool("mksquashfs") { return; }
//! let tmp = tempfile::tempdir().unwrap();
//! let src = tmp.path().join("src");
//! EdgeTree::create(&src, &EdgeTreeOptions::cheap()).unwrap();
//! let img = tmp.path().join("img.sqsh");
//! mksquashfs(&src, &img, &["-comp", "zstd"]);
//! // ... extract img into `out` with the code under test, then:
//! # let out = tmp.path().join("out");
//! assert_trees_equal(&src, &out, &DiffOptions::default());
//! # }
//! ```

pub mod hash;
#[cfg(feature = "image")]
pub mod image;
pub mod manifest;
pub mod mounts;
pub mod process;
pub mod skip;
pub mod sys;
pub mod tree;

pub use hash::{ContentHash, ContentHasher};
pub use manifest::{assert_trees_equal, diff, DiffOptions, Difference, Entry, EntryKind, Manifest};
pub use mounts::{is_mounted, wait_for_mount, LoopMount, MountGuard};
pub use process::{
    find_process, mksquashfs, process_gone, require_squashbox_bin, run_with_timeout, squashbox_bin,
    unsquashfs_list, wait_process_gone, TimedOutput, DEFAULT_TIMEOUT,
};
pub use skip::{
    in_ci, is_root, require_fuse, require_loop, require_root, require_tool, skip_or_fail, tool_path,
};
pub use tree::{content_bytes, EdgeTree, EdgeTreeOptions};

/// Re-export so tests need not depend on `tempfile` themselves.
pub use tempfile;
