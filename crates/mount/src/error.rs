//! The error type of the mount crate.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the mount crate.
pub type Result<T, E = MountError> = std::result::Result<T, E>;

/// Errors from mounting, serving or unmounting an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The mount point does not exist.
    #[error("mount point {0} does not exist")]
    MountpointMissing(PathBuf),

    /// The mount point exists but is not a directory.
    #[error("mount point {0} is not a directory")]
    MountpointNotDirectory(PathBuf),

    /// The mount point directory is not empty; mounting over it would hide its contents.
    #[error("mount point {0} is not empty")]
    MountpointNotEmpty(PathBuf),

    /// The path given to unmount is not a mount point.
    #[error("{0} is not a mount point")]
    NotMounted(PathBuf),

    /// The file system is in use (open files or a process' working directory inside it).
    #[error("{0} is busy (files are open in it); close them or unmount lazily")]
    Busy(PathBuf),

    /// The image could not be read (bad superblock, root inode, ...).
    #[error("image: {0}")]
    Image(#[from] squashbox_format::Error),

    /// Invalid mount options.
    #[error("invalid mount option: {0}")]
    InvalidOption(String),

    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The serving session ended abnormally (its threads failed or panicked).
    #[error("FUSE session for {mountpoint} died: {message}")]
    SessionDied {
        /// Where the image was mounted.
        mountpoint: PathBuf,
        /// What the session reported.
        message: String,
    },
}

impl MountError {
    /// Shorthand for [`MountError::Io`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        MountError::Io {
            context: context.into(),
            source,
        }
    }
}
