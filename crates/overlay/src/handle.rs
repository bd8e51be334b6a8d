//! Open file and directory handles.

use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use crate::lower::LowerFile;
use crate::readdir::Snapshot;

/// What an open FUSE file handle refers to.
pub(crate) enum Handle {
    /// A file in the upper directory (read/write go straight to its descriptor).
    Upper { node: u64, fd: OwnedFd },
    /// A read-only open of a lower file. If the file is copied up while open, reads switch to
    /// the upper copy (opened lazily), as with the kernel's overlayfs.
    Lower {
        node: u64,
        file: LowerFile,
        upper: OnceLock<OwnedFd>,
    },
    /// An open directory: a snapshot of its merged listing, taken at opendir.
    Dir(Snapshot),
}
