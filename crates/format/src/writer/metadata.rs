//! Metadata block stream: 8 KiB payload blocks, each compressed when that makes it smaller.
//!
//! Inode, directory and lookup tables are all sequences of metadata blocks. A position in such
//! a stream is named by the offset of the block (relative to the table start, counted in
//! on-disk, i.e. compressed, bytes) and the offset inside the uncompressed block.

use crate::compress::Codec;
use crate::error::Result;
use crate::layout::{METADATA_BLOCK_SIZE, METADATA_UNCOMPRESSED};

/// A position inside a metadata stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetaPos {
    /// Offset of the metadata block relative to the start of the table.
    pub block: u64,
    /// Offset inside the uncompressed block (always < 8192).
    pub offset: u16,
}

impl MetaPos {
    /// The packed `(block << 16) | offset` reference used by inode references and xattrs.
    pub fn to_ref(self) -> u64 {
        (self.block << 16) | u64::from(self.offset)
    }
}

/// Accumulates a metadata stream in memory.
///
/// Only the compressed form of finished blocks and the one open block are held, so a table
/// costs roughly its on-disk size.
pub struct MetadataWriter {
    codec: Codec,
    out: Vec<u8>,
    block: Vec<u8>,
    scratch: Vec<u8>,
    block_starts: Vec<u64>,
}

impl MetadataWriter {
    /// An empty stream compressed with `codec`.
    pub fn new(codec: Codec) -> Self {
        MetadataWriter {
            codec,
            out: Vec::new(),
            block: Vec::with_capacity(METADATA_BLOCK_SIZE),
            scratch: Vec::new(),
            block_starts: Vec::new(),
        }
    }

    /// Where the next byte written will land.
    pub fn position(&self) -> MetaPos {
        MetaPos {
            block: self.out.len() as u64,
            offset: self.block.len() as u16,
        }
    }

    /// Total number of payload bytes written so far.
    pub fn payload_len(&self) -> u64 {
        self.block_starts.len() as u64 * METADATA_BLOCK_SIZE as u64 + self.block.len() as u64
    }

    /// Append `data`, flushing full blocks as they fill.
    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let room = METADATA_BLOCK_SIZE - self.block.len();
            let take = room.min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == METADATA_BLOCK_SIZE {
                self.flush_block()?;
            }
        }
        Ok(())
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.block_starts.push(self.out.len() as u64);
        let shrunk = self.codec.compress(&self.block, &mut self.scratch)?;
        let (header, payload) = if shrunk && self.scratch.len() < self.block.len() {
            (self.scratch.len() as u16, &self.scratch)
        } else {
            (self.block.len() as u16 | METADATA_UNCOMPRESSED, &self.block)
        };
        self.out.extend_from_slice(&header.to_le_bytes());
        self.out.extend_from_slice(payload);
        self.block.clear();
        Ok(())
    }

    /// Flush the open block and return the on-disk bytes plus the (relative) start offset of
    /// every block, as lookup-table indexes need them.
    pub fn finish(mut self) -> Result<(Vec<u8>, Vec<u64>)> {
        self.flush_block()?;
        Ok((self.out, self.block_starts))
    }
}
