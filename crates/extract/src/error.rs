//! The error type of the extractor.
//!
//! Every variant names the entry concerned, as a path relative to the destination (escaped with
//! [`crate::names::escape`] so control characters cannot garble a terminal).

use std::io;

/// Errors from [`crate::extract`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The image could not be read at `path`.
    #[error("{path}: {source}")]
    Image {
        /// Entry being read (relative to the image root of the extraction).
        path: String,
        /// The reader's error.
        #[source]
        source: squashbox_format::Error,
    },

    /// A directory entry has a name that could escape the destination or is not a valid file
    /// name: empty, `.`, `..`, or containing `/` or NUL (CVE-2021-40153).
    #[error("{dir}: unsafe entry name \"{name}\" in image (refusing to extract)")]
    UnsafeName {
        /// Directory holding the entry.
        dir: String,
        /// The offending name, escaped.
        name: String,
    },

    /// A directory listing is not strictly sorted. Duplicates and reordering are how
    /// CVE-2021-41072 images write through a symlink they planted earlier.
    #[error("{dir}: directory entries out of order (\"{name}\" after \"{previous}\")")]
    UnsortedEntries {
        /// Directory concerned.
        dir: String,
        /// The entry that came out of order, escaped.
        name: String,
        /// The entry before it, escaped.
        previous: String,
    },

    /// A directory listing names the same entry twice (CVE-2021-41072).
    #[error("{dir}: duplicate directory entry \"{name}\"")]
    DuplicateEntry {
        /// Directory concerned.
        dir: String,
        /// The duplicated name, escaped.
        name: String,
    },

    /// A directory is reached a second time (a loop or a multiply-linked directory).
    #[error("{path}: directory inode {inode} reached twice (directory loop in image)")]
    DirectoryLoop {
        /// The entry that reached it again.
        path: String,
        /// Its inode number.
        inode: u32,
    },

    /// Directories nest deeper than [`crate::ExtractOptions::max_depth`].
    #[error("{path}: directories nested deeper than {max_depth} levels")]
    TooDeep {
        /// The entry that would exceed the limit.
        path: String,
        /// The limit.
        max_depth: usize,
    },

    /// A directory entry and its inode disagree about the file type.
    #[error("{path}: directory entry type does not match its inode (corrupt image)")]
    TypeMismatch {
        /// Entry concerned.
        path: String,
    },

    /// The destination exists and is not an empty directory, and `force` was not given.
    #[error("{path}: destination exists and is not empty (use --force to extract over it)")]
    DestinationNotEmpty {
        /// The destination.
        path: String,
    },

    /// The destination exists and is not a directory.
    #[error("{path}: destination exists and is not a directory")]
    DestinationNotDirectory {
        /// The destination.
        path: String,
    },

    /// An entry to be created already exists in the destination (only without `force`; it
    /// can happen when something else writes into the destination concurrently).
    #[error("{path}: already exists in the destination")]
    AlreadyExists {
        /// Entry concerned.
        path: String,
    },

    /// A system call on the destination failed.
    #[error("{path}: {op} failed: {source}")]
    Io {
        /// Entry concerned (relative to the destination), or the destination itself.
        path: String,
        /// What was being done, e.g. "create file".
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// Invalid options (for example a thread pool that cannot be built).
    #[error("invalid extraction options: {0}")]
    InvalidOptions(String),
}

impl ExtractError {
    pub(crate) fn io(
        path: impl Into<String>,
        op: &'static str,
        source: impl Into<io::Error>,
    ) -> Self {
        ExtractError::Io {
            path: path.into(),
            op,
            source: source.into(),
        }
    }

    pub(crate) fn image(path: impl Into<String>, source: squashbox_format::Error) -> Self {
        ExtractError::Image {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for the extractor.
pub type Result<T, E = ExtractError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_entry() {
        let e = ExtractError::UnsafeName {
            dir: "/etc".into(),
            name: "../x".into(),
        };
        assert_eq!(
            e.to_string(),
            "/etc: unsafe entry name \"../x\" in image (refusing to extract)"
        );
        let e = ExtractError::DuplicateEntry {
            dir: "/".into(),
            name: "x".into(),
        };
        assert!(e.to_string().contains("duplicate directory entry \"x\""));
        let e = ExtractError::io("a/b", "create file", io::Error::from_raw_os_error(28));
        assert!(
            e.to_string().starts_with("a/b: create file failed: "),
            "{e}"
        );
    }
}
