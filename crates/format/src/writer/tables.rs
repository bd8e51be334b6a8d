//! Lookup tables (fragment, export, id, xattr ids): entries packed into metadata blocks,
//! followed by an array of the absolute positions of those blocks.

use std::collections::HashMap;

use super::inode::{put32, put64};
use super::metadata::MetadataWriter;
use crate::compress::Codec;
use crate::error::{Error, Result};

/// Largest number of distinct uid/gid values an image can hold.
pub const MAX_IDS: usize = 65536;

/// A lookup table serialized for writing at some absolute position.
pub struct EncodedTable {
    /// The metadata blocks holding the entries.
    pub blocks: Vec<u8>,
    /// Start of each metadata block relative to the start of `blocks`.
    pub block_starts: Vec<u64>,
}

impl EncodedTable {
    /// Pack `entries` (already serialized, fixed-size records) into metadata blocks.
    pub fn encode(codec: &Codec, entries: &[u8]) -> Result<Self> {
        let mut writer = MetadataWriter::new(codec.clone());
        writer.write(entries)?;
        let (blocks, block_starts) = writer.finish()?;
        Ok(EncodedTable {
            blocks,
            block_starts,
        })
    }

    /// The index array for a table whose blocks start at absolute offset `at`.
    pub fn index_bytes(&self, at: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.block_starts.len() * 8);
        for start in &self.block_starts {
            put64(&mut out, at + start);
        }
        out
    }
}

/// One fragment table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentEntry {
    /// Absolute offset of the fragment block.
    pub start: u64,
    /// Stored size with bit 24 set when uncompressed.
    pub size_word: u32,
}

/// Serialize fragment entries (16 bytes each).
pub fn fragment_entries_bytes(entries: &[FragmentEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 16);
    for e in entries {
        put64(&mut out, e.start);
        put32(&mut out, e.size_word);
        put32(&mut out, 0);
    }
    out
}

/// The uid/gid table: maps 32-bit ids to 16-bit indexes in first-use order.
#[derive(Default)]
pub struct IdTable {
    ids: Vec<u32>,
    index: HashMap<u32, u16>,
}

impl IdTable {
    /// The index of `id`, adding it if new.
    pub fn index_of(&mut self, id: u32) -> Result<u16> {
        if let Some(i) = self.index.get(&id) {
            return Ok(*i);
        }
        if self.ids.len() >= MAX_IDS {
            return Err(Error::InvalidArgument(format!(
                "more than {MAX_IDS} distinct uid/gid values"
            )));
        }
        let i = self.ids.len() as u16;
        self.ids.push(id);
        self.index.insert(id, i);
        Ok(i)
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True if no id was added.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Serialized entries (4 bytes each).
    pub fn entries_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.ids.len() * 4);
        for id in &self.ids {
            put32(&mut out, *id);
        }
        out
    }
}
