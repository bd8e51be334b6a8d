//! Secure, parallel extraction of a SquashFS image into a directory.
//!
//! ```no_run
//! use squashbox_extract::{extract, ExtractOptions};
//! let archive = squashbox_format::Archive::open_path("image.sqfs")?;
//! let summary = extract(&archive, None, "out".as_ref(), &ExtractOptions::default())?;
//! for warning in &summary.warnings {
//!     eprintln!("warning: {warning}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is restored
//! Regular files (sparse blocks stay holes), directories, symlinks, character and block
//! devices, fifos and sockets; permission bits including setuid/setgid/sticky; mtimes (atime is
//! set to the mtime; directories get theirs after their contents); xattrs; hard links (entries
//! sharing an inode number become links to the first extracted path). Owners are restored when
//! running as root ([`OwnerPolicy::Auto`]) and silently left as the extracting user otherwise.
//! Xattrs the kernel refuses (e.g. `trusted.*`/`security.*` as non-root, or `user.*` on a
//! symlink) are reported in [`ExtractSummary::warnings`], not as errors, and so are devices that
//! cannot be created without `CAP_MKNOD` (they are skipped).
//!
//! # Security
//! A hostile image cannot make us write outside the destination:
//! - names that are empty, `.`, `..`, or contain `/` or NUL are refused (CVE-2021-40153);
//! - directory listings must be strictly sorted, so no name appears twice (CVE-2021-41072);
//! - every entry is created relative to its parent directory's fd with no-follow, exclusive
//!   semantics, and metadata is applied through fds or with `AT_SYMLINK_NOFOLLOW`;
//! - a directory reached twice (loop or multiply-linked directory) is an error, and the walk
//!   is iterative with a depth limit.
//!
//! # Failure
//! See [`extract`] for what is left behind when extraction fails.

mod dest;
mod error;
mod fsops;
pub mod names;
mod walk;

use std::path::Path;

pub use error::{ExtractError, Result};
use squashbox_format::Archive;

/// Whether to restore file owners.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OwnerPolicy {
    /// Restore owners when running as root; otherwise leave them to the extracting user.
    /// Owner changes the kernel refuses (e.g. ids unmapped in a user namespace) become
    /// warnings.
    #[default]
    Auto,
    /// Always restore owners; failures are errors.
    Restore,
    /// Never change owners.
    Skip,
}

/// Options for [`extract`].
#[derive(Clone, Debug)]
pub struct ExtractOptions {
    /// Extract into a non-empty destination directory, replacing (never following) entries
    /// that are in the way. Directories that exist in both are merged.
    pub force: bool,
    /// Worker threads writing file contents; 0 = one per CPU.
    pub threads: usize,
    /// Owner restoration policy.
    pub owners: OwnerPolicy,
    /// Deepest directory nesting accepted below the extraction root. Each level holds one
    /// open directory fd while it is being extracted.
    pub max_depth: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            force: false,
            threads: 0,
            owners: OwnerPolicy::Auto,
            max_depth: 512,
        }
    }
}

/// What [`extract`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Directories created below the destination (the destination itself not counted).
    pub directories: u64,
    /// Regular files written (hard links not counted).
    pub files: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Character and block devices created.
    pub devices: u64,
    /// Fifos created.
    pub fifos: u64,
    /// Sockets created.
    pub sockets: u64,
    /// Additional names created as hard links to an already extracted inode.
    pub hard_links: u64,
    /// Bytes of regular-file content (logical sizes, holes included).
    pub bytes: u64,
    /// Non-fatal problems, e.g. xattrs the kernel refused. At most [`MAX_WARNINGS`] are kept.
    pub warnings: Vec<String>,
    /// Warnings beyond [`MAX_WARNINGS`] that were counted but not kept.
    pub warnings_dropped: u64,
}

/// Most warnings kept in [`ExtractSummary::warnings`].
pub const MAX_WARNINGS: usize = 1000;

/// Extract `archive` (or the subtree at `subpath`, a `/`-separated path in the image) into
/// `dest`.
///
/// If `subpath` names a directory (or is `None`, the root), its *contents* are extracted into
/// `dest` and its metadata applied to `dest`. If it names anything else, that one entry is
/// extracted as `dest/<its name>`.
///
/// `dest` must not exist, or be an empty directory, unless `options.force` is set. What is
/// left behind on error:
/// - `dest` did not exist: nothing. We extract into a hidden sibling directory that is renamed
///   to `dest` only after everything succeeded, and removed on error.
/// - `dest` was an empty directory: it is emptied again.
/// - `force` over a non-empty `dest`: whatever was extracted before the error stays.
pub fn extract(
    archive: &Archive,
    subpath: Option<&[u8]>,
    dest: &Path,
    options: &ExtractOptions,
) -> Result<ExtractSummary> {
    let sub = subpath.unwrap_or(b"");
    let sub_display = names::escape(sub);
    let start = archive
        .lookup_path(sub)
        .map_err(|e| ExtractError::image(if sub.is_empty() { "/" } else { &sub_display }, e))?;
    let pool = {
        let mut builder =
            rayon::ThreadPoolBuilder::new().thread_name(|i| format!("squashbox-extract-{i}"));
        if options.threads > 0 {
            builder = builder.num_threads(options.threads);
        }
        builder
            .build()
            .map_err(|e| ExtractError::InvalidOptions(e.to_string()))?
    };
    let destination = dest::Destination::prepare(dest, options.force)?;
    let outcome = walk::run(archive, &start, sub, &destination, options, &pool);
    match outcome {
        Ok(summary) => {
            destination.commit()?;
            Ok(summary)
        }
        Err(e) => {
            destination.abort();
            Err(e)
        }
    }
}
