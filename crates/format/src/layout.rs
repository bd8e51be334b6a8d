//! On-disk constants and the superblock, shared by reader and writer.
//!
//! All integers are little-endian. See `docs/format.md` for the full layout and the kernel's
//! stricter rules.

use crate::compress::Compressor;
use crate::error::{Error, Result};

/// `hsqs` as a little-endian u32.
pub const MAGIC: u32 = 0x7371_7368;
/// Size of the superblock in bytes.
pub const SUPERBLOCK_SIZE: usize = 96;
/// Largest payload of one metadata block.
pub const METADATA_BLOCK_SIZE: usize = 8192;
/// Bit 15 of a metadata block header: payload stored uncompressed.
pub const METADATA_UNCOMPRESSED: u16 = 0x8000;
/// Bit 24 of a data block or fragment size word: stored uncompressed.
pub const DATA_UNCOMPRESSED: u32 = 1 << 24;
/// "No such table" marker for optional table start fields.
pub const NO_TABLE: u64 = u64::MAX;
/// "No fragment" marker in a file inode.
pub const NO_FRAGMENT: u32 = 0xFFFF_FFFF;
/// "No xattrs" marker in an extended inode.
pub const NO_XATTR: u32 = 0xFFFF_FFFF;
/// Smallest and largest legal block sizes.
pub const MIN_BLOCK_SIZE: u32 = 4096;
/// Largest legal block size (1 MiB).
pub const MAX_BLOCK_SIZE: u32 = 1 << 20;
/// Images are padded to a multiple of this many bytes.
pub const DEVICE_BLOCK_SIZE: u64 = 4096;

/// Superblock flag bits.
pub mod flags {
    /// Inodes stored uncompressed.
    pub const UNCOMPRESSED_INODES: u16 = 0x0001;
    /// Data blocks stored uncompressed.
    pub const UNCOMPRESSED_DATA: u16 = 0x0002;
    /// Unused "check" flag.
    pub const CHECK: u16 = 0x0004;
    /// Fragments stored uncompressed.
    pub const UNCOMPRESSED_FRAGMENTS: u16 = 0x0008;
    /// Fragments are never used.
    pub const NO_FRAGMENTS: u16 = 0x0010;
    /// Tail ends always packed into fragments.
    pub const ALWAYS_FRAGMENTS: u16 = 0x0020;
    /// Duplicates were removed.
    pub const DUPLICATES: u16 = 0x0040;
    /// Export table present (NFS exportable).
    pub const EXPORTABLE: u16 = 0x0080;
    /// Xattrs stored uncompressed.
    pub const UNCOMPRESSED_XATTRS: u16 = 0x0100;
    /// No xattrs stored.
    pub const NO_XATTRS: u16 = 0x0200;
    /// Compressor options follow the superblock.
    pub const COMPRESSOR_OPTIONS: u16 = 0x0400;
    /// Id table stored uncompressed.
    pub const UNCOMPRESSED_IDS: u16 = 0x0800;
}

/// The 96-byte superblock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    /// Number of inodes.
    pub inode_count: u32,
    /// Last modification time of the image (seconds since the epoch).
    pub modification_time: u32,
    /// Data block size in bytes.
    pub block_size: u32,
    /// Number of entries in the fragment table.
    pub fragment_entry_count: u32,
    /// Compressor.
    pub compressor: Compressor,
    /// log2(block_size).
    pub block_log: u16,
    /// Flag bits, see [`flags`].
    pub flags: u16,
    /// Number of entries in the id table.
    pub id_count: u16,
    /// Major version (4).
    pub version_major: u16,
    /// Minor version (0).
    pub version_minor: u16,
    /// Reference to the root directory inode.
    pub root_inode_ref: u64,
    /// Bytes used by the image, excluding tail padding.
    pub bytes_used: u64,
    /// Start of the id lookup table.
    pub id_table_start: u64,
    /// Start of the xattr id table, or [`NO_TABLE`].
    pub xattr_id_table_start: u64,
    /// Start of the inode table.
    pub inode_table_start: u64,
    /// Start of the directory table.
    pub directory_table_start: u64,
    /// Start of the fragment lookup table, or [`NO_TABLE`].
    pub fragment_table_start: u64,
    /// Start of the export lookup table, or [`NO_TABLE`].
    pub export_table_start: u64,
}

impl Superblock {
    /// Decode and validate a superblock. Checks magic, version 4.0, block size and block_log,
    /// and that every table start lies within `bytes_used` in the mandated order. `image_len`
    /// is the size of the source (the image may be padded beyond `bytes_used`).
    pub fn parse(bytes: &[u8; SUPERBLOCK_SIZE], image_len: u64) -> Result<Self> {
        let _ = (bytes, image_len);
        Err(Error::Unsupported("todo".into()))
    }

    /// Encode to the 96-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        todo!()
    }

    /// True if `flag` (from [`flags`]) is set.
    pub fn has_flag(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}
