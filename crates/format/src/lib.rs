//! SquashFS 4.0 on-disk format for squashbox.
//!
//! This crate owns everything that knows the byte layout of an image:
//!
//! - [`compress`]: the five codecs (gzip, xz, lzo, lz4, zstd, plus legacy lzma for reading) with
//!   bounded decompression, and the compressor-options block.
//! - [`source`]: the [`ReadAt`] trait through which the reader pulls bytes from a file, a memory
//!   buffer or (later) a remote object.
//! - [`layout`]: constants and the superblock, shared by reader and writer.
//! - [`reader`]: [`Archive`], a `Send + Sync` reader that is safe on hostile images and keeps
//!   memory bounded by byte-budgeted caches.
//! - [`writer`]: the low-level, kernel-compatible image writer used by `squashbox-build`.
//!
//! Nothing in this crate touches the host filesystem beyond reading and writing image bytes.

pub mod compress;
pub mod error;
pub mod layout;
pub mod reader;
pub mod source;
pub mod writeback;
pub mod writer;

pub use compress::{Compressor, CompressorOptions};
pub use error::{Error, Result};
pub use layout::Superblock;
pub use reader::{
    Archive, DataExtent, DirEntry, FileType, Inode, InodeKind, InodeRef, OpenOptions, Xattr,
};
pub use source::ReadAt;
