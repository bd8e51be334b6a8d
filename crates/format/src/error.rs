//! The one error type of the format crate.
//!
//! Every malformed image maps to a variant that says *what* is wrong and *where* (a byte offset
//! in the image or the table concerned), so a user can tell a truncated download from a bug.

use std::io;

/// Result alias used throughout the format crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from reading or writing a SquashFS image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The underlying source or sink failed.
    #[error("I/O error {context}: {source}")]
    Io {
        /// What was being done, e.g. "reading metadata block at offset 1234".
        context: String,
        #[source]
        source: io::Error,
    },

    /// The image violates the format. `what` names the structure and the rule broken.
    #[error("corrupt image: {what} (at byte offset {offset})")]
    Corrupt {
        /// Human-readable description of the broken rule.
        what: String,
        /// Byte offset in the image where the problem was found (best effort).
        offset: u64,
    },

    /// The image uses a feature this implementation does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A compressed block failed to decompress or decompressed to the wrong size.
    #[error("{compressor} decompression failed at byte offset {offset}: {message}")]
    Decompress {
        /// Compressor name.
        compressor: &'static str,
        /// Offset of the block in the image.
        offset: u64,
        /// What went wrong.
        message: String,
    },

    /// Compression failed (only possible in the writer).
    #[error("{compressor} compression failed: {message}")]
    Compress {
        /// Compressor name.
        compressor: &'static str,
        /// What went wrong.
        message: String,
    },

    /// A path or name does not exist in the image.
    #[error("not found in image: {0}")]
    NotFound(String),

    /// An operation needed a directory, a regular file, a symlink, … and got another type.
    #[error("{path}: expected {expected}")]
    WrongType {
        /// The path or inode concerned.
        path: String,
        /// What was expected, e.g. "a directory".
        expected: &'static str,
    },

    /// Invalid arguments to the writer (e.g. a block size that is not a power of two).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(what: impl Into<String>, offset: u64) -> Self {
        Error::Corrupt {
            what: what.into(),
            offset,
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
