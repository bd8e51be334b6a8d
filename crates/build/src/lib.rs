//! Parallel, deterministic SquashFS image builder.
//!
//! Walks a directory (optionally honouring `.gitignore` and exclude patterns), compresses data
//! on every core, deduplicates whole files, packs tails into fragments and writes a
//! kernel-compatible image through `squashbox_format::writer`. The image is written to a
//! temporary file beside the destination and renamed into place only when complete.
//!
//! Two entry points: [`build_image`] packs a directory; [`ImageBuilder`] takes entries pushed
//! one by one by the caller (e.g. converting a tar stream), with file data streamed from any
//! reader.

// IMPLEMENTATION NOTE (lead): `BuildOptions`, `BuildSummary`, `BuildError` and `build_image`
// are the contract the CLI and the backup service code against.

mod filter;
mod gitindex;
mod inodes;
mod output;
mod pipeline;
mod progress;
mod walk;
mod xattrs;

use std::path::{Path, PathBuf};

use squashbox_format::Compressor;

/// How to build an image.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Compressor (default zstd).
    pub compressor: Compressor,
    /// Compression level (`None`: the compressor's default, except zstd: level 3).
    pub level: Option<i32>,
    /// Data block size, a power of two from 4 KiB to 1 MiB (default 128 KiB).
    pub block_size: u32,
    /// Worker threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Pack small files and tails into fragment blocks (default true).
    pub fragments: bool,
    /// Deduplicate identical files (default true).
    pub dedup: bool,
    /// Store extended attributes (default true).
    pub xattrs: bool,
    /// Store every entry as owned by root (default false).
    pub all_root: bool,
    /// Force every mtime and the image time to this value (reproducible builds).
    pub mtime: Option<u32>,
    /// Exclude what git would ignore (default false).
    pub gitignore: bool,
    /// Extra exclude patterns in gitignore syntax.
    pub excludes: Vec<String>,
    /// Do not cross filesystem boundaries (default false).
    pub one_file_system: bool,
    /// Skip unreadable files with a warning instead of failing (default false).
    pub skip_unreadable: bool,
    /// Show a progress bar when stderr is a terminal (default false).
    pub progress: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            compressor: Compressor::Zstd,
            level: None,
            block_size: 128 * 1024,
            threads: None,
            fragments: true,
            dedup: true,
            xattrs: true,
            all_root: false,
            mtime: None,
            gitignore: false,
            excludes: Vec::new(),
            one_file_system: false,
            skip_unreadable: false,
            progress: false,
        }
    }
}

/// What a build produced.
#[derive(Clone, Debug, Default)]
pub struct BuildSummary {
    /// Number of inodes written (files, directories, links, …).
    pub inodes: u64,
    /// Number of regular files.
    pub files: u64,
    /// Total size of regular file data read.
    pub input_bytes: u64,
    /// Size of the finished image (including padding).
    pub image_bytes: u64,
    /// Files found to duplicate an earlier file.
    pub duplicates: u64,
    /// Paths skipped because they could not be read (only with `skip_unreadable`).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Why a build failed. The destination is never left with a partial image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Options are invalid (e.g. a bad block size or pattern).
    #[error("invalid build options: {0}")]
    InvalidOptions(String),
    /// The source is missing or not a directory.
    #[error("source {path}: {message}")]
    Source {
        /// The source path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Some files could not be read; every one is listed.
    #[error("{} unreadable path(s) in the source (grant read permission or pass --skip-unreadable): {}", .paths.len(), .paths.iter().map(|(p, e)| format!("{}: {e}", p.display())).collect::<Vec<_>>().join("; "))]
    Unreadable {
        /// Each unreadable path with the reason.
        paths: Vec<(PathBuf, String)>,
    },
    /// An entry pushed through [`ImageBuilder`] was refused (bad path, duplicate, a parent
    /// that is not a directory, data shorter or longer than declared).
    #[error("entry {path}: {message}")]
    Entry {
        /// The entry's path inside the image.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Writing the image failed.
    #[error("writing {path}: {source}")]
    Output {
        /// The destination.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The format layer refused something (e.g. too many ids).
    #[error(transparent)]
    Format(#[from] squashbox_format::Error),
}

/// Build `source` into the image file `dest`.
///
/// The image is written to a temporary file in `dest`'s directory, synced, and renamed over
/// `dest` only when complete; on any error the temporary file is removed and `dest` is left
/// untouched.
pub fn build_image(
    source: &Path,
    dest: &Path,
    options: &BuildOptions,
) -> Result<BuildSummary, BuildError> {
    build::run(source, dest, options)
}

mod build;
mod builder;

pub use builder::{DeviceKind, EntryMeta, ImageBuilder};
