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

/// Byte offsets of the superblock fields (errors name them).
pub mod field_offset {
    /// `s_magic`.
    pub const MAGIC: u64 = 0;
    /// `inodes`.
    pub const INODE_COUNT: u64 = 4;
    /// `mkfs_time`.
    pub const MODIFICATION_TIME: u64 = 8;
    /// `block_size`.
    pub const BLOCK_SIZE: u64 = 12;
    /// `fragments`.
    pub const FRAGMENT_ENTRY_COUNT: u64 = 16;
    /// `compression`.
    pub const COMPRESSOR: u64 = 20;
    /// `block_log`.
    pub const BLOCK_LOG: u64 = 22;
    /// `flags`.
    pub const FLAGS: u64 = 24;
    /// `no_ids`.
    pub const ID_COUNT: u64 = 26;
    /// `s_major`.
    pub const VERSION_MAJOR: u64 = 28;
    /// `s_minor`.
    pub const VERSION_MINOR: u64 = 30;
    /// `root_inode`.
    pub const ROOT_INODE_REF: u64 = 32;
    /// `bytes_used`.
    pub const BYTES_USED: u64 = 40;
    /// `id_table_start`.
    pub const ID_TABLE_START: u64 = 48;
    /// `xattr_id_table_start`.
    pub const XATTR_ID_TABLE_START: u64 = 56;
    /// `inode_table_start`.
    pub const INODE_TABLE_START: u64 = 64;
    /// `directory_table_start`.
    pub const DIRECTORY_TABLE_START: u64 = 72;
    /// `fragment_table_start`.
    pub const FRAGMENT_TABLE_START: u64 = 80;
    /// `lookup_table_start` (export table).
    pub const EXPORT_TABLE_START: u64 = 88;
}

/// Size of the xattr id table header (`xattr_table_start`, `xattr_ids`, `unused`).
const XATTR_ID_TABLE_HEADER_SIZE: u64 = 16;
/// Entries per metadata block: fragment entries (16 bytes), export entries and ids.
const FRAGMENT_ENTRIES_PER_BLOCK: u64 = 512;
const EXPORT_ENTRIES_PER_BLOCK: u64 = 1024;
const IDS_PER_BLOCK: u64 = 2048;

/// Bytes of a lookup table's index (one u64 pointer per metadata block) for `entries`.
fn index_len(entries: u64, per_block: u64) -> u64 {
    entries.div_ceil(per_block) * 8
}

/// Little-endian field reader over the fixed-size superblock.
struct Fields<'a>(&'a [u8; SUPERBLOCK_SIZE]);

impl Fields<'_> {
    fn u16(&self, at: u64) -> u16 {
        let at = at as usize;
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }
    fn u32(&self, at: u64) -> u32 {
        let at = at as usize;
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[at..at + 4]);
        u32::from_le_bytes(b)
    }
    fn u64(&self, at: u64) -> u64 {
        let at = at as usize;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[at..at + 8]);
        u64::from_le_bytes(b)
    }
}

fn bad(what: impl Into<String>, offset: u64) -> Error {
    Error::corrupt(format!("superblock: {}", what.into()), offset)
}

impl Superblock {
    /// Decode and validate a superblock. Checks magic, version 4.0, block size and block_log,
    /// and that every table start lies within `bytes_used` in the mandated order. `image_len`
    /// is the size of the source (the image may be padded beyond `bytes_used`).
    ///
    /// Errors: [`Error::Unsupported`] for another format version or an unknown compressor id,
    /// otherwise [`Error::Corrupt`] naming the field and rule, with the field's byte offset.
    /// Rules (the kernel's): magic `hsqs`; version 4.0; block size a power of two in
    /// 4 KiB..=1 MiB and `block_log` its log2; at least one inode and one id; the root inode
    /// reference inside the inode table; `bytes_used` within the image; and the tables in the
    /// order inode < directory <= fragment index < export index < id index < xattr id table,
    /// each lookup index fitting before the next table (absent optional tables are
    /// [`NO_TABLE`]; the fragment table is ignored when there are no fragments).
    pub fn parse(bytes: &[u8; SUPERBLOCK_SIZE], image_len: u64) -> Result<Self> {
        use field_offset as at;
        let f = Fields(bytes);
        let magic = f.u32(at::MAGIC);
        if magic != MAGIC {
            return Err(bad(
                format!("bad magic {magic:#010x}, expected {MAGIC:#010x} (\"hsqs\"): not a SquashFS image"),
                at::MAGIC,
            ));
        }
        let (major, minor) = (f.u16(at::VERSION_MAJOR), f.u16(at::VERSION_MINOR));
        if (major, minor) != (4, 0) {
            return Err(Error::Unsupported(format!(
                "SquashFS version {major}.{minor} (superblock byte offset {}); only 4.0 is supported",
                at::VERSION_MAJOR
            )));
        }
        let compressor_id = f.u16(at::COMPRESSOR);
        let compressor = Compressor::from_id(compressor_id).map_err(|_| {
            Error::Unsupported(format!(
                "unknown compressor id {compressor_id} (superblock byte offset {})",
                at::COMPRESSOR
            ))
        })?;
        let block_size = f.u32(at::BLOCK_SIZE);
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(bad(
                format!("block size {block_size} is not a power of two in 4096..=1048576"),
                at::BLOCK_SIZE,
            ));
        }
        let block_log = f.u16(at::BLOCK_LOG);
        if u32::from(block_log) != block_size.trailing_zeros() {
            return Err(bad(
                format!(
                    "block_log {block_log} does not match block size {block_size} (expected {})",
                    block_size.trailing_zeros()
                ),
                at::BLOCK_LOG,
            ));
        }
        let sb = Superblock {
            inode_count: f.u32(at::INODE_COUNT),
            modification_time: f.u32(at::MODIFICATION_TIME),
            block_size,
            fragment_entry_count: f.u32(at::FRAGMENT_ENTRY_COUNT),
            compressor,
            block_log,
            flags: f.u16(at::FLAGS),
            id_count: f.u16(at::ID_COUNT),
            version_major: major,
            version_minor: minor,
            root_inode_ref: f.u64(at::ROOT_INODE_REF),
            bytes_used: f.u64(at::BYTES_USED),
            id_table_start: f.u64(at::ID_TABLE_START),
            xattr_id_table_start: f.u64(at::XATTR_ID_TABLE_START),
            inode_table_start: f.u64(at::INODE_TABLE_START),
            directory_table_start: f.u64(at::DIRECTORY_TABLE_START),
            fragment_table_start: f.u64(at::FRAGMENT_TABLE_START),
            export_table_start: f.u64(at::EXPORT_TABLE_START),
        };
        sb.check_counts_and_size(image_len)?;
        sb.check_table_order()?;
        sb.check_root_inode_ref()?;
        Ok(sb)
    }

    fn check_counts_and_size(&self, image_len: u64) -> Result<()> {
        use field_offset as at;
        if self.inode_count == 0 {
            return Err(bad(
                "inode count is 0 (there is always a root directory)",
                at::INODE_COUNT,
            ));
        }
        if self.id_count == 0 {
            return Err(bad(
                "id count is 0 (every inode needs a uid and gid)",
                at::ID_COUNT,
            ));
        }
        if self.bytes_used < SUPERBLOCK_SIZE as u64 {
            return Err(bad(
                format!(
                    "bytes_used {} is smaller than the superblock",
                    self.bytes_used
                ),
                at::BYTES_USED,
            ));
        }
        if self.bytes_used > image_len {
            return Err(bad(
                format!(
                    "bytes_used {} exceeds the image length {image_len} (truncated image?)",
                    self.bytes_used
                ),
                at::BYTES_USED,
            ));
        }
        Ok(())
    }

    /// The kernel's table order rules, checked over the tables that are present.
    fn check_table_order(&self) -> Result<()> {
        use field_offset as at;
        let mut min_inode_start = SUPERBLOCK_SIZE as u64;
        if self.has_flag(flags::COMPRESSOR_OPTIONS) {
            // The options block: a 2-byte header plus its payload.
            min_inode_start += 2 + 4;
        }
        if self.inode_table_start < min_inode_start {
            return Err(bad(
                format!(
                    "inode table start {} overlaps the superblock or compressor options",
                    self.inode_table_start
                ),
                at::INODE_TABLE_START,
            ));
        }
        // (name, start, field offset, index bytes that must fit before the next table,
        // whether the next table may start at the same offset).
        let mut tables: Vec<(&str, u64, u64, u64, bool)> = vec![
            (
                "inode table",
                self.inode_table_start,
                at::INODE_TABLE_START,
                0,
                false,
            ),
            (
                "directory table",
                self.directory_table_start,
                at::DIRECTORY_TABLE_START,
                0,
                true,
            ),
        ];
        if self.fragment_entry_count > 0 {
            if self.fragment_table_start == NO_TABLE {
                return Err(bad(
                    format!(
                        "{} fragments but no fragment table",
                        self.fragment_entry_count
                    ),
                    at::FRAGMENT_TABLE_START,
                ));
            }
            tables.push((
                "fragment table",
                self.fragment_table_start,
                at::FRAGMENT_TABLE_START,
                index_len(self.fragment_entry_count.into(), FRAGMENT_ENTRIES_PER_BLOCK),
                false,
            ));
        } else if self.fragment_table_start != NO_TABLE
            && self.fragment_table_start > self.bytes_used
        {
            return Err(bad(
                format!(
                    "fragment table start {} is beyond bytes_used {}",
                    self.fragment_table_start, self.bytes_used
                ),
                at::FRAGMENT_TABLE_START,
            ));
        }
        if self.export_table_start != NO_TABLE {
            tables.push((
                "export table",
                self.export_table_start,
                at::EXPORT_TABLE_START,
                index_len(self.inode_count.into(), EXPORT_ENTRIES_PER_BLOCK),
                false,
            ));
        } else if self.has_flag(flags::EXPORTABLE) {
            return Err(bad(
                "exportable flag set but no export table",
                at::EXPORT_TABLE_START,
            ));
        }
        if self.id_table_start == NO_TABLE {
            return Err(bad("id table is missing", at::ID_TABLE_START));
        }
        tables.push((
            "id table",
            self.id_table_start,
            at::ID_TABLE_START,
            index_len(self.id_count.into(), IDS_PER_BLOCK),
            false,
        ));
        if self.xattr_id_table_start != NO_TABLE {
            tables.push((
                "xattr id table",
                self.xattr_id_table_start,
                at::XATTR_ID_TABLE_START,
                XATTR_ID_TABLE_HEADER_SIZE,
                false,
            ));
        }
        for (i, &(name, start, offset, fixed_len, may_be_empty)) in tables.iter().enumerate() {
            let (next_name, next_start) = match tables.get(i + 1) {
                Some(&(n, s, ..)) => (n, s),
                None => ("end of image (bytes_used)", self.bytes_used),
            };
            let end = start.saturating_add(fixed_len);
            let ok = if may_be_empty && fixed_len == 0 {
                end <= next_start
            } else {
                end <= next_start && start < next_start
            };
            if !ok {
                return Err(bad(
                    format!(
                        "{name} at {start} (+{fixed_len} index bytes) does not end before the {next_name} at {next_start}"
                    ),
                    offset,
                ));
            }
        }
        Ok(())
    }

    fn check_root_inode_ref(&self) -> Result<()> {
        let block = self.root_inode_ref >> 16;
        let within = self.root_inode_ref & 0xffff;
        let table_len = self.directory_table_start - self.inode_table_start;
        if self.root_inode_ref >> 48 != 0
            || within >= METADATA_BLOCK_SIZE as u64
            || block >= table_len
        {
            return Err(bad(
                format!(
                    "root inode reference {:#x} (block {block}, offset {within}) is outside the                      {table_len}-byte inode table",
                    self.root_inode_ref
                ),
                field_offset::ROOT_INODE_REF,
            ));
        }
        Ok(())
    }

    /// Encode to the 96-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        use field_offset as at;
        let mut out = [0u8; SUPERBLOCK_SIZE];
        let mut put = |at: u64, bytes: &[u8]| {
            let at = at as usize;
            out[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(at::MAGIC, &MAGIC.to_le_bytes());
        put(at::INODE_COUNT, &self.inode_count.to_le_bytes());
        put(at::MODIFICATION_TIME, &self.modification_time.to_le_bytes());
        put(at::BLOCK_SIZE, &self.block_size.to_le_bytes());
        put(
            at::FRAGMENT_ENTRY_COUNT,
            &self.fragment_entry_count.to_le_bytes(),
        );
        put(at::COMPRESSOR, &self.compressor.id().to_le_bytes());
        put(at::BLOCK_LOG, &self.block_log.to_le_bytes());
        put(at::FLAGS, &self.flags.to_le_bytes());
        put(at::ID_COUNT, &self.id_count.to_le_bytes());
        put(at::VERSION_MAJOR, &self.version_major.to_le_bytes());
        put(at::VERSION_MINOR, &self.version_minor.to_le_bytes());
        put(at::ROOT_INODE_REF, &self.root_inode_ref.to_le_bytes());
        put(at::BYTES_USED, &self.bytes_used.to_le_bytes());
        put(at::ID_TABLE_START, &self.id_table_start.to_le_bytes());
        put(
            at::XATTR_ID_TABLE_START,
            &self.xattr_id_table_start.to_le_bytes(),
        );
        put(at::INODE_TABLE_START, &self.inode_table_start.to_le_bytes());
        put(
            at::DIRECTORY_TABLE_START,
            &self.directory_table_start.to_le_bytes(),
        );
        put(
            at::FRAGMENT_TABLE_START,
            &self.fragment_table_start.to_le_bytes(),
        );
        put(
            at::EXPORT_TABLE_START,
            &self.export_table_start.to_le_bytes(),
        );
        out
    }

    /// True if `flag` (from [`flags`]) is set.
    pub fn has_flag(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}
