//! Lookup tables (fragment, export, id, xattr id) and the table layout of an image.
//!
//! A lookup table is an array of fixed-size entries stored in metadata blocks, plus an index of
//! u64 image offsets of those blocks. The index sits at the table's start offset from the
//! superblock; the blocks sit just before it. Like the kernel, we read only the index at open,
//! bound its length by the start of the next table, and require its pointers to increase
//! strictly, each block to be at most one metadata block long, and the blocks to end before
//! the index itself.

use crate::error::{Error, Result};
use crate::layout::{Superblock, METADATA_BLOCK_SIZE, NO_TABLE};

use super::metadata::Region;
use super::Archive;

/// The most bytes one metadata block may take on disk (header + payload).
const MAX_STORED_BLOCK: u64 = 2 + METADATA_BLOCK_SIZE as u64;

/// The index of one lookup table.
pub(crate) struct LookupTable {
    name: &'static str,
    /// Image offset of each metadata block.
    pointers: Vec<u64>,
    /// Offset of the index (the blocks end at or before it).
    index_start: u64,
    /// Number of entries.
    count: u64,
    /// Bytes per entry.
    entry_size: usize,
}

impl LookupTable {
    /// Read and validate the index of a table of `count` entries of `entry_size` bytes whose
    /// index starts at `index_start` and must end by `limit`; its blocks must start at or after
    /// `lower`.
    pub(crate) fn load(
        archive: &Archive,
        name: &'static str,
        index_start: u64,
        count: u64,
        entry_size: usize,
        lower: u64,
        limit: u64,
    ) -> Result<Self> {
        let total = count
            .checked_mul(entry_size as u64)
            .ok_or_else(|| Error::corrupt(format!("{name} entry count {count} overflows"), 0))?;
        let blocks = total.div_ceil(METADATA_BLOCK_SIZE as u64);
        let index_len = blocks * 8;
        if index_start
            .checked_add(index_len)
            .is_none_or(|end| end > limit)
        {
            return Err(Error::corrupt(
                format!(
                    "{name} index ({blocks} pointers for {count} entries) runs past the next \
                     table at {limit}"
                ),
                index_start,
            ));
        }
        // Bounded by the check above: the index fits in the image.
        let mut raw = vec![0u8; index_len as usize];
        archive.read_source(index_start, &mut raw, name)?;
        let pointers: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("chunk of 8")))
            .collect();
        let mut previous = lower;
        for (i, &pointer) in pointers.iter().enumerate() {
            let following = pointers.get(i + 1).copied().unwrap_or(index_start);
            let ordered = if i == 0 {
                pointer >= lower
            } else {
                pointer > previous
            };
            if !ordered || pointer >= following || following - pointer > MAX_STORED_BLOCK {
                return Err(Error::corrupt(
                    format!(
                        "{name} index pointer {i} ({pointer}) is not increasing within \
                         {lower}..{index_start} or spans more than one metadata block"
                    ),
                    index_start + 8 * i as u64,
                ));
            }
            previous = pointer;
        }
        Ok(LookupTable {
            name,
            pointers,
            index_start,
            count,
            entry_size,
        })
    }

    /// Image offset of the first block, or the index start for an empty table.
    pub(crate) fn first_block(&self) -> u64 {
        self.pointers.first().copied().unwrap_or(self.index_start)
    }

    /// Number of entries.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Read entry `i` into `out` (`out.len()` must equal the entry size).
    pub(crate) fn read_entry(&self, archive: &Archive, i: u64, out: &mut [u8]) -> Result<()> {
        debug_assert_eq!(out.len(), self.entry_size);
        if i >= self.count {
            return Err(Error::corrupt(
                format!(
                    "{} index {i} is not below the entry count {}",
                    self.name, self.count
                ),
                self.index_start,
            ));
        }
        let per_block = (METADATA_BLOCK_SIZE / self.entry_size) as u64;
        let block = (i / per_block) as usize;
        let offset = (i % per_block) as usize * self.entry_size;
        let start = self.pointers[block];
        let end = self
            .pointers
            .get(block + 1)
            .copied()
            .unwrap_or(self.index_start);
        let region = Region {
            name: self.name,
            start,
            end,
        };
        let data = archive.metadata_block(start, &region)?;
        // Writers fill every block but the last with exactly 8 KiB of entries and the last
        // with the rest (the kernel finds entry i at block i * size / 8192 on that basis), so
        // any other length means the count and the table disagree.
        let total = self.count * self.entry_size as u64;
        let expected = (total - block as u64 * METADATA_BLOCK_SIZE as u64)
            .min(METADATA_BLOCK_SIZE as u64) as usize;
        if data.data.len() != expected {
            return Err(Error::corrupt(
                format!(
                    "{} block {block} holds {} bytes, but {} entries of {} bytes need {expected} \
                     there",
                    self.name,
                    data.data.len(),
                    self.count,
                    self.entry_size
                ),
                start,
            ));
        }
        out.copy_from_slice(&data.data[offset..offset + self.entry_size]);
        Ok(())
    }
}

/// Where each table lives, derived from the superblock and the lookup-table indexes.
pub(crate) struct Tables {
    pub(crate) inode: Region,
    pub(crate) directory: Region,
    pub(crate) fragments: Option<LookupTable>,
    pub(crate) export: Option<LookupTable>,
    pub(crate) ids: Vec<u32>,
    pub(crate) xattr: Option<XattrTables>,
}

/// The xattr id table and the key/value region it points into.
pub(crate) struct XattrTables {
    pub(crate) ids: LookupTable,
    pub(crate) kv: Region,
}

impl Tables {
    /// Placeholder used while the archive is being opened.
    pub(crate) fn empty() -> Self {
        let none = Region {
            name: "unloaded table",
            start: 0,
            end: 0,
        };
        Tables {
            inode: none,
            directory: none,
            fragments: None,
            export: None,
            ids: Vec::new(),
            xattr: None,
        }
    }

    /// Load the table indexes, the way the kernel does: from the end of the image backwards,
    /// each table bounded by the start of the one after it.
    pub(crate) fn load(archive: &Archive, sb: &Superblock) -> Result<Self> {
        let corrupt = |what: String, offset: u64| Err(Error::corrupt(what, offset));
        if !(sb.inode_table_start < sb.directory_table_start
            && sb.directory_table_start < sb.bytes_used)
        {
            return corrupt(
                format!(
                    "inode table ({}) and directory table ({}) are out of order",
                    sb.inode_table_start, sb.directory_table_start
                ),
                sb.inode_table_start,
            );
        }
        let lower = sb.directory_table_start;
        let mut next = sb.bytes_used;

        let xattr = if sb.xattr_id_table_start != NO_TABLE {
            let header = sb.xattr_id_table_start;
            if header < lower || header.saturating_add(16) > next {
                return corrupt("xattr id table header is out of place".into(), header);
            }
            let mut raw = [0u8; 16];
            archive.read_source(header, &mut raw, "xattr id table header")?;
            let kv_start = u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes"));
            let count = u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes"));
            if kv_start < lower || kv_start > header {
                return corrupt(
                    format!("xattr key/value table start {kv_start} is out of place"),
                    header,
                );
            }
            let ids = LookupTable::load(
                archive,
                "xattr id table",
                header + 16,
                u64::from(count),
                16,
                kv_start,
                next,
            )?;
            let kv = Region {
                name: "xattr key/value table",
                start: kv_start,
                end: ids.first_block().min(header),
            };
            next = kv_start;
            Some(XattrTables { ids, kv })
        } else {
            None
        };

        if sb.id_count == 0 {
            return corrupt("the id table is empty".into(), sb.id_table_start);
        }
        let id_table = LookupTable::load(
            archive,
            "id table",
            sb.id_table_start,
            u64::from(sb.id_count),
            4,
            lower,
            next,
        )?;
        next = id_table.first_block();

        let export = if sb.export_table_start != NO_TABLE {
            let table = LookupTable::load(
                archive,
                "export table",
                sb.export_table_start,
                u64::from(sb.inode_count),
                8,
                lower,
                next,
            )?;
            next = table.first_block();
            Some(table)
        } else {
            None
        };

        let fragments = if sb.fragment_entry_count > 0 {
            if sb.fragment_table_start == NO_TABLE {
                return corrupt(
                    format!(
                        "{} fragments but no fragment table",
                        sb.fragment_entry_count
                    ),
                    0,
                );
            }
            let table = LookupTable::load(
                archive,
                "fragment table",
                sb.fragment_table_start,
                u64::from(sb.fragment_entry_count),
                16,
                lower,
                next,
            )?;
            next = table.first_block();
            Some(table)
        } else {
            None
        };

        // Equal is fine: an image whose only directory is an empty root has no listings.
        if sb.directory_table_start > next {
            return corrupt(
                "directory table starts after the lookup tables".into(),
                sb.directory_table_start,
            );
        }
        let mut tables = Tables {
            inode: Region {
                name: "inode table",
                start: sb.inode_table_start,
                end: sb.directory_table_start,
            },
            directory: Region {
                name: "directory table",
                start: sb.directory_table_start,
                end: next,
            },
            fragments,
            export,
            ids: Vec::new(),
            xattr,
        };
        // The id table is at most 65535 * 4 bytes: load it whole, inode decoding needs it.
        let mut ids = Vec::with_capacity(usize::from(sb.id_count));
        let mut entry = [0u8; 4];
        for i in 0..u64::from(sb.id_count) {
            id_table.read_entry(archive, i, &mut entry)?;
            ids.push(u32::from_le_bytes(entry));
        }
        tables.ids = ids;
        Ok(tables)
    }
}
