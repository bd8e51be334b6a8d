//! The low-level, kernel-compatible image writer.
//!
//! Small units with one job each, in the style of squashfs-tools-ng's libsquashfs:
//!
//! - [`metadata`]: the 8 KiB metadata block stream (compressed when smaller) and positions.
//! - [`inode`]: inode encoding, choosing the extended form only when needed.
//! - [`directory`]: directory listings (headers, entries, index for large directories).
//! - [`tables`]: fragment, export and id lookup tables.
//! - [`xattr`]: the xattr table with shared sets and out-of-line repeated values.
//! - [`image`]: [`ImageWriter`], which ties them together and writes the superblock.
//!
//! The writer does no file-system walking and no threading: `squashbox-build` compresses data
//! blocks in parallel and hands them over in order.

pub mod directory;
pub mod image;
pub mod inode;
pub mod metadata;
pub mod tables;
pub mod xattr;

pub use directory::DirectoryEntry;
pub use image::{FinishOptions, ImageSink, ImageWriter};
pub use inode::{
    encode_rdev, kind_code, DirIndexEntry, DirectoryListing, InodeSpec, InodeSpecKind,
};
pub use metadata::{MetaPos, MetadataWriter};
pub use tables::{FragmentEntry, MAX_IDS};
