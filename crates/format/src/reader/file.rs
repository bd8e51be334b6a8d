//! Regular file data: the block list, data blocks, fragments, sparse blocks.
//!
//! A file inode is followed by one u32 size word per full data block (low 24 bits stored
//! size, bit 24 stored uncompressed, 0 = sparse block of zeros). Blocks are stored back to back
//! from `blocks_start`; the tail shorter than a block lives in a fragment block when the inode
//! names one. The decoded block list (with an offset every [`CHECKPOINT`] blocks) is cached per
//! inode so sequential reads of a large file cost O(1) per block, not O(blocks).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layout::DATA_UNCOMPRESSED;

use super::{Archive, Inode, InodeKind, InodeRef};

/// Blocks between stored absolute offsets in a [`FileLayout`].
const CHECKPOINT: usize = 64;
/// Low 24 bits of a size word: stored size.
const SIZE_MASK: u32 = DATA_UNCOMPRESSED - 1;
/// Block-list words decoded per metadata read.
const WORDS_PER_READ: usize = 1024;

/// The decoded data layout of one regular file.
pub(crate) struct FileLayout {
    size: u64,
    blocks_start: u64,
    fragment: Option<(u32, u32)>,
    words: Vec<u32>,
    /// Image offset of block `k * CHECKPOINT`.
    checkpoints: Vec<u64>,
    /// Bytes of the file not in sparse blocks.
    allocated: u64,
}

impl FileLayout {
    fn weight(&self) -> usize {
        self.words.len() * 4 + self.checkpoints.len() * 8 + 96
    }

    /// Image offset of block `i`.
    fn block_offset(&self, i: usize) -> u64 {
        let base = i / CHECKPOINT * CHECKPOINT;
        self.checkpoints[i / CHECKPOINT]
            + self.words[base..i]
                .iter()
                .map(|w| u64::from(w & SIZE_MASK))
                .sum::<u64>()
    }
}

/// A decoded data or fragment block.
pub(crate) type Block = Vec<u8>;

impl Archive {
    /// The (cached) layout of the regular file at `r`, decoded from the image.
    pub(crate) fn file_layout(&self, r: InodeRef) -> Result<Arc<FileLayout>> {
        if let Some(layout) = self.layout_cache.get(&r.0) {
            return Ok(layout);
        }
        let layout = Arc::new(self.decode_layout(r)?);
        self.layout_cache
            .insert(r.0, Arc::clone(&layout), layout.weight());
        Ok(layout)
    }

    fn decode_layout(&self, r: InodeRef) -> Result<FileLayout> {
        let decoded = self.decode_inode(r)?;
        let InodeKind::File {
            size,
            blocks_start,
            fragment,
            block_count,
            ..
        } = decoded.inode.kind
        else {
            return Err(Error::WrongType {
                path: format!("inode {}", decoded.inode.number),
                expected: "a regular file",
            });
        };
        let mut cursor = decoded.tail;
        let block_size = u64::from(self.superblock.block_size);
        let data_end = self.tables.inode.start;
        let count = block_count as usize;
        // Grow with what is actually decoded, never by the claimed count up front.
        let mut words = Vec::with_capacity(count.min(WORDS_PER_READ));
        let mut checkpoints = Vec::with_capacity(count.div_ceil(CHECKPOINT).min(64));
        let mut offset = blocks_start;
        let mut allocated = 0u64;
        let mut raw = [0u8; WORDS_PER_READ * 4];
        while words.len() < count {
            let n = (count - words.len()).min(WORDS_PER_READ);
            cursor.read(self, &mut raw[..n * 4])?;
            for chunk in raw[..n * 4].chunks_exact(4) {
                let word = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
                let i = words.len();
                if i % CHECKPOINT == 0 {
                    checkpoints.push(offset);
                }
                let stored = u64::from(word & SIZE_MASK);
                if word & !(SIZE_MASK | DATA_UNCOMPRESSED) != 0 || stored > block_size {
                    return Err(Error::corrupt(
                        format!("inode {r:?}: block {i} has invalid size word {word:#x}"),
                        offset,
                    ));
                }
                if stored != 0 {
                    let logical = block_size.min(size - i as u64 * block_size);
                    allocated += logical;
                }
                offset += stored;
                if offset > data_end {
                    return Err(Error::corrupt(
                        format!("inode {r:?}: data block {i} runs past the data area"),
                        offset - stored,
                    ));
                }
                words.push(word);
            }
        }
        if fragment.is_some() {
            allocated += size - count as u64 * block_size;
        }
        Ok(FileLayout {
            size,
            blocks_start,
            fragment,
            words,
            checkpoints,
            allocated,
        })
    }

    /// Read from regular file `file` at `offset` (see [`Archive::read_at`]).
    pub(crate) fn read_file(&self, file: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if !matches!(file.kind, InodeKind::File { .. }) {
            return Err(Error::WrongType {
                path: format!("inode {}", file.number),
                expected: "a regular file",
            });
        }
        let layout = self.file_layout(file.inode_ref)?;
        if offset >= layout.size || buf.is_empty() {
            return Ok(0);
        }
        let want = (layout.size - offset).min(buf.len() as u64) as usize;
        let block_size = u64::from(self.superblock.block_size);
        let mut done = 0usize;
        while done < want {
            let pos = offset + done as u64;
            let index = pos / block_size;
            let within = (pos % block_size) as usize;
            let n;
            if index < layout.words.len() as u64 {
                let i = index as usize;
                let logical = block_size.min(layout.size - index * block_size) as usize;
                n = (logical - within).min(want - done);
                let word = layout.words[i];
                if word & SIZE_MASK == 0 {
                    buf[done..done + n].fill(0);
                } else {
                    let block = self.data_block(layout.block_offset(i), word, logical)?;
                    buf[done..done + n].copy_from_slice(&block[within..within + n]);
                }
            } else {
                let Some((fragment, frag_offset)) = layout.fragment else {
                    return Err(Error::corrupt(
                        format!(
                            "inode {:?}: file has no data for offset {pos}",
                            file.inode_ref
                        ),
                        layout.blocks_start,
                    ));
                };
                let tail_len = (layout.size - index * block_size) as usize;
                let block = self.fragment_block(fragment)?;
                let start = frag_offset as usize;
                let Some(tail) = block.get(start..start + tail_len) else {
                    return Err(Error::corrupt(
                        format!(
                            "inode {:?}: tail {start}..{} is past the end of fragment {fragment} \
                             ({} bytes)",
                            file.inode_ref,
                            start + tail_len,
                            block.len()
                        ),
                        layout.blocks_start,
                    ));
                };
                n = (tail_len - within).min(want - done);
                buf[done..done + n].copy_from_slice(&tail[within..within + n]);
            }
            done += n;
        }
        Ok(done)
    }

    /// Bytes of `file` not stored as sparse blocks.
    pub(crate) fn file_allocated(&self, file: &Inode) -> Result<u64> {
        if !matches!(file.kind, InodeKind::File { .. }) {
            return Err(Error::WrongType {
                path: format!("inode {}", file.number),
                expected: "a regular file",
            });
        }
        Ok(self.file_layout(file.inode_ref)?.allocated)
    }

    /// Decode (or fetch from cache) the data block at `offset` with size word `word`, which
    /// must decode to exactly `logical` bytes.
    fn data_block(&self, offset: u64, word: u32, logical: usize) -> Result<Arc<Block>> {
        let block = self.stored_block(offset, word, "data block")?;
        if block.len() != logical {
            return Err(Error::corrupt(
                format!(
                    "data block decoded to {} bytes, expected {logical}",
                    block.len()
                ),
                offset,
            ));
        }
        Ok(block)
    }

    /// The decoded fragment block `index`.
    fn fragment_block(&self, index: u32) -> Result<Arc<Block>> {
        let table = self.tables.fragments.as_ref().ok_or_else(|| {
            Error::corrupt(
                format!("fragment {index} referenced but the image has no fragment table"),
                0,
            )
        })?;
        let mut entry = [0u8; 16];
        table.read_entry(self, u64::from(index), &mut entry)?;
        let start = u64::from_le_bytes(entry[0..8].try_into().expect("8 bytes"));
        let word = u32::from_le_bytes(entry[8..12].try_into().expect("4 bytes"));
        if word & SIZE_MASK == 0 || word & !(SIZE_MASK | DATA_UNCOMPRESSED) != 0 {
            return Err(Error::corrupt(
                format!("fragment {index} has invalid size word {word:#x}"),
                start,
            ));
        }
        self.stored_block(start, word, "fragment block")
    }

    /// Read and decode a data or fragment block of at most one block size.
    fn stored_block(&self, offset: u64, word: u32, what: &str) -> Result<Arc<Block>> {
        let key = (offset, word);
        if let Some(block) = self.data_cache.get(&key) {
            return Ok(block);
        }
        let block_size = self.superblock.block_size as usize;
        let stored = (word & SIZE_MASK) as usize;
        if stored > block_size
            || offset
                .checked_add(stored as u64)
                .is_none_or(|end| end > self.tables.inode.start)
        {
            return Err(Error::corrupt(
                format!("{what} of {stored} bytes at {offset} lies outside the data area"),
                offset,
            ));
        }
        self.stats.data_decodes.fetch_add(1, Ordering::Relaxed);
        let mut raw = vec![0u8; stored];
        self.read_source(offset, &mut raw, what)?;
        let block = if word & DATA_UNCOMPRESSED != 0 {
            raw
        } else {
            let mut out = vec![0u8; block_size];
            let produced = self.codec.decompress(&raw, &mut out, offset)?;
            if produced > block_size {
                return Err(Error::corrupt(
                    format!("{what} decompressed past the block size"),
                    offset,
                ));
            }
            out.truncate(produced);
            out
        };
        let block = Arc::new(block);
        self.data_cache
            .insert(key, Arc::clone(&block), block.len() + 64);
        Ok(block)
    }
}
