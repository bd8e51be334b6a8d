//! Metadata blocks and a cursor that reads across them.
//!
//! A metadata block is a 16-bit header (low 15 bits: stored size; bit 15: stored uncompressed)
//! followed by at most 8 KiB of payload that decodes to at most 8 KiB. Tables made of metadata
//! blocks (inodes, directories, xattr key/values) are chains: the next block starts right after
//! the previous one. Every chain is confined to a [`Region`]; a block that starts or ends
//! outside its region is corruption, which also makes every walk along a chain finite.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layout::{METADATA_BLOCK_SIZE, METADATA_UNCOMPRESSED};

use super::Archive;

/// A decoded metadata block.
pub(crate) struct MetaBlock {
    /// Decoded payload (1..=8192 bytes).
    pub(crate) data: Box<[u8]>,
    /// Image offset of the block that follows this one in its chain.
    pub(crate) next: u64,
}

/// A byte range of the image holding one table's metadata blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    /// Table name, for error messages.
    pub(crate) name: &'static str,
    /// First byte of the table.
    pub(crate) start: u64,
    /// One past the last byte a block of this table may occupy.
    pub(crate) end: u64,
}

impl Region {
    /// Length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// The absolute offset of a block given relative to the region start, checked to lie
    /// inside the region.
    pub(crate) fn block_at(&self, relative: u64, what: &str) -> Result<u64> {
        if relative >= self.len() {
            return Err(Error::corrupt(
                format!(
                    "{what}: block offset {relative} is past the end of the {} ({} bytes)",
                    self.name,
                    self.len()
                ),
                self.start.saturating_add(relative),
            ));
        }
        Ok(self.start + relative)
    }
}

impl Archive {
    /// Fetch (from cache, or by reading and decoding) the metadata block at image offset
    /// `offset`, which must lie in `region`.
    pub(crate) fn metadata_block(&self, offset: u64, region: &Region) -> Result<Arc<MetaBlock>> {
        self.stats.metadata_fetches.fetch_add(1, Ordering::Relaxed);
        if offset < region.start || offset.saturating_add(2) > region.end {
            return Err(Error::corrupt(
                format!(
                    "metadata block at {offset} lies outside the {} ({}..{})",
                    region.name, region.start, region.end
                ),
                offset,
            ));
        }
        if let Some(block) = self.meta_cache.get(&offset) {
            if block.next > region.end {
                return Err(run_past(region, offset));
            }
            return Ok(block);
        }
        let block = Arc::new(self.decode_metadata_block(offset, region)?);
        let weight = block.data.len() + 64;
        self.meta_cache.insert(offset, Arc::clone(&block), weight);
        Ok(block)
    }

    fn decode_metadata_block(&self, offset: u64, region: &Region) -> Result<MetaBlock> {
        self.stats.metadata_decodes.fetch_add(1, Ordering::Relaxed);
        let available = (region.end - offset).min(2 + METADATA_BLOCK_SIZE as u64) as usize;
        let mut raw = vec![0u8; available];
        self.read_source(offset, &mut raw, "metadata block")?;
        let header = u16::from_le_bytes([raw[0], raw[1]]);
        let stored = usize::from(header & !METADATA_UNCOMPRESSED);
        if stored == 0 || stored > METADATA_BLOCK_SIZE {
            return Err(Error::corrupt(
                format!(
                    "metadata block in the {} has stored size {stored}",
                    region.name
                ),
                offset,
            ));
        }
        if 2 + stored > available {
            return Err(run_past(region, offset));
        }
        let payload = &raw[2..2 + stored];
        let data: Box<[u8]> = if header & METADATA_UNCOMPRESSED != 0 {
            payload.into()
        } else {
            let mut out = vec![0u8; METADATA_BLOCK_SIZE];
            let produced = self.codec.decompress(payload, &mut out, offset)?;
            if produced == 0 || produced > METADATA_BLOCK_SIZE {
                return Err(Error::corrupt(
                    format!(
                        "metadata block in the {} decompressed to {produced} bytes",
                        region.name
                    ),
                    offset,
                ));
            }
            out.truncate(produced);
            out.into_boxed_slice()
        };
        Ok(MetaBlock {
            data,
            next: offset + 2 + stored as u64,
        })
    }

    /// Read exactly `buf.len()` bytes at `offset` from the source.
    pub(crate) fn read_source(&self, offset: u64, buf: &mut [u8], what: &str) -> Result<()> {
        self.source.read_exact_at(offset, buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(format!("{what} runs past the end of the image"), offset)
            } else {
                Error::io(format!("reading {what} at offset {offset}"), e)
            }
        })
    }
}

fn run_past(region: &Region, offset: u64) -> Error {
    Error::corrupt(
        format!(
            "metadata block runs past the end of the {} (ends at {})",
            region.name, region.end
        ),
        offset,
    )
}

/// A read position in a chain of metadata blocks.
#[derive(Clone)]
pub(crate) struct MetaCursor {
    region: Region,
    block: u64,
    offset: usize,
    current: Option<Arc<MetaBlock>>,
}

impl MetaCursor {
    /// A cursor at `offset` within the block at absolute image offset `block`.
    pub(crate) fn new(region: Region, block: u64, offset: usize) -> Result<Self> {
        if offset >= METADATA_BLOCK_SIZE {
            return Err(Error::corrupt(
                format!(
                    "offset {offset} within a metadata block of the {} is not below 8192",
                    region.name
                ),
                block,
            ));
        }
        Ok(MetaCursor {
            region,
            block,
            offset,
            current: None,
        })
    }

    /// Image offset of the current block (for error messages).
    pub(crate) fn block(&self) -> u64 {
        self.block
    }

    /// Make `current` the block holding the read position, with the offset checked to lie
    /// inside it; moves to the next block when the current one is exhausted. Callers then
    /// borrow `self.current` directly, so a read costs no reference-count traffic.
    fn ensure(&mut self, archive: &Archive) -> Result<()> {
        loop {
            let block = match &self.current {
                Some(block) => block,
                None => self
                    .current
                    .insert(archive.metadata_block(self.block, &self.region)?),
            };
            let len = block.data.len();
            if self.offset < len {
                return Ok(());
            }
            if self.offset > len {
                return Err(Error::corrupt(
                    format!(
                        "offset {} is past the end of a {len}-byte metadata block in the {}",
                        self.offset, self.region.name
                    ),
                    self.block,
                ));
            }
            if block.next >= self.region.end {
                return Err(Error::corrupt(
                    format!("data runs past the end of the {}", self.region.name),
                    self.block,
                ));
            }
            self.block = block.next;
            self.offset = 0;
            self.current = None;
        }
    }

    /// The bytes of the current block from the read position on (at least one), after
    /// [`MetaCursor::ensure`].
    fn available(&self) -> &[u8] {
        match &self.current {
            Some(block) => &block.data[self.offset..],
            None => &[],
        }
    }

    /// The current position as (block image offset, offset in block), normalised so the
    /// offset lies inside the block (moving past an exhausted block). Suitable for
    /// [`MetaCursor::new`] later.
    pub(crate) fn position(&mut self, archive: &Archive) -> Result<(u64, usize)> {
        self.ensure(archive)?;
        Ok((self.block, self.offset))
    }

    /// Fill `buf` from the chain.
    pub(crate) fn read(&mut self, archive: &Archive, buf: &mut [u8]) -> Result<()> {
        // Fast path: the bytes lie inside the block already at hand (nearly every read).
        if let Some(bytes) = self
            .current
            .as_ref()
            .and_then(|block| block.data.get(self.offset..self.offset + buf.len()))
        {
            buf.copy_from_slice(bytes);
            self.offset += buf.len();
            return Ok(());
        }
        let mut filled = 0;
        while filled < buf.len() {
            self.ensure(archive)?;
            let available = self.available();
            let n = available.len().min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&available[..n]);
            filled += n;
            self.offset += n;
        }
        Ok(())
    }

    /// Fill `out` with the next `len` bytes of the chain, reusing its allocation.
    pub(crate) fn read_into(
        &mut self,
        archive: &Archive,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        out.clear();
        if let Some(bytes) = self
            .current
            .as_ref()
            .and_then(|block| block.data.get(self.offset..self.offset + len))
        {
            out.extend_from_slice(bytes);
            self.offset += len;
            return Ok(());
        }
        out.resize(len, 0);
        self.read(archive, out)
    }

    /// Skip `n` bytes of the chain.
    pub(crate) fn skip(&mut self, archive: &Archive, mut n: u64) -> Result<()> {
        while n > 0 {
            self.ensure(archive)?;
            let available = self.available().len() as u64;
            let step = available.min(n);
            self.offset += step as usize;
            n -= step;
        }
        Ok(())
    }

    /// Read `len` bytes into a new vector (callers bound `len` first).
    pub(crate) fn read_vec(&mut self, archive: &Archive, len: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; len];
        self.read(archive, &mut out)?;
        Ok(out)
    }

    pub(crate) fn u16(&mut self, archive: &Archive) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read(archive, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    pub(crate) fn u32(&mut self, archive: &Archive) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(archive, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub(crate) fn u64(&mut self, archive: &Archive) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(archive, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}
