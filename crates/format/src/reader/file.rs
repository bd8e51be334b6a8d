//! Regular file data: the block list, data blocks, fragments, sparse blocks.
//!
//! A file inode is followed by one u32 size word per full data block (low 24 bits stored
//! size, bit 24 stored uncompressed, 0 = sparse block of zeros). Blocks are stored back to back
//! from `blocks_start`; the tail shorter than a block lives in a fragment block when the inode
//! names one. A validated checkpoint every [`CHECKPOINT`] blocks (data offset and the position of
//! the size word) is cached per inode, so a read of any block costs at most 64 size words of
//! cached metadata, and sequential reads of a large file are O(1) per block, not O(blocks).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::layout::DATA_UNCOMPRESSED;

use super::metadata::MetaCursor;
use super::{Archive, Inode, InodeKind, InodeRef};

/// Blocks per checkpoint in a [`FileLayout`].
const CHECKPOINT: usize = 64;
/// Low 24 bits of a size word: stored size.
const SIZE_MASK: u32 = DATA_UNCOMPRESSED - 1;

/// Where block `k * CHECKPOINT` of a file is described and stored.
#[derive(Clone, Copy)]
struct Checkpoint {
    /// Image offset of the block's data.
    data: u64,
    /// Inode-table metadata block holding the block's size word.
    word_block: u64,
    /// Offset of the size word in that (decoded) block.
    word_offset: u16,
}

/// The decoded data layout of one regular file.
///
/// Only every 64th block's position is kept (24 bytes per 64 blocks); the size words between
/// are re-read from the cached inode table on demand. That keeps memory small even for a
/// hostile inode table that decompresses to a huge block list of sparse blocks.
pub(crate) struct FileLayout {
    size: u64,
    blocks_start: u64,
    fragment: Option<(u32, u32)>,
    block_count: usize,
    checkpoints: Vec<Checkpoint>,
    /// Bytes of the file not in sparse blocks.
    allocated: u64,
}

impl FileLayout {
    fn weight(&self) -> usize {
        self.checkpoints.len() * std::mem::size_of::<Checkpoint>() + 96
    }
}

/// A decoded data or fragment block.
pub(crate) type Block = Vec<u8>;

/// How a range of a regular file's bytes is stored in the image (see
/// [`Archive::data_extent`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataExtent {
    /// `len` bytes stored verbatim (uncompressed) at `image_offset` of the image.
    Stored { image_offset: u64, len: u64 },
    /// `len` bytes of zeros that occupy nothing in the image (sparse blocks).
    Sparse { len: u64 },
    /// `len` bytes that must be decoded: read them with [`Archive::read_at`].
    Encoded { len: u64 },
}

impl DataExtent {
    /// Bytes of the file the extent covers.
    pub fn len(&self) -> u64 {
        match *self {
            DataExtent::Stored { len, .. }
            | DataExtent::Sparse { len }
            | DataExtent::Encoded { len } => len,
        }
    }

    /// Whether the extent covers nothing (only at or past the end of the file).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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

    /// Decode and validate the whole block list once: every size word well-formed and every
    /// block inside the data area.
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
        // Grows with what is actually decoded, never by the claimed count up front.
        let mut checkpoints = Vec::with_capacity(count.div_ceil(CHECKPOINT).min(64));
        let mut offset = blocks_start;
        let mut allocated = 0u64;
        let mut raw = [0u8; CHECKPOINT * 4];
        let mut i = 0usize;
        while i < count {
            // One checkpoint per run of CHECKPOINT words.
            let (word_block, word_offset) = cursor.position(self)?;
            checkpoints.push(Checkpoint {
                data: offset,
                word_block,
                word_offset: word_offset as u16,
            });
            let take = (count - i).min(CHECKPOINT);
            cursor.read(self, &mut raw[..take * 4])?;
            for chunk in raw[..take * 4].chunks_exact(4) {
                let word = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
                let stored = u64::from(word & SIZE_MASK);
                if word & !(SIZE_MASK | DATA_UNCOMPRESSED) != 0 || stored > block_size {
                    return Err(Error::corrupt(
                        format!("inode {r:?}: block {i} has invalid size word {word:#x}"),
                        offset,
                    ));
                }
                if stored != 0 {
                    allocated += block_size.min(size - i as u64 * block_size);
                }
                offset += stored;
                if offset > data_end {
                    return Err(Error::corrupt(
                        format!("inode {r:?}: data block {i} runs past the data area"),
                        offset - stored,
                    ));
                }
                i += 1;
            }
        }
        if fragment.is_some() {
            allocated += size - count as u64 * block_size;
        }
        Ok(FileLayout {
            size,
            blocks_start,
            fragment,
            block_count: count,
            checkpoints,
            allocated,
        })
    }

    /// Image offset and size word of block `i` of `layout`, re-read from the inode table.
    fn block_entry(&self, layout: &FileLayout, i: usize) -> Result<(u64, u32)> {
        let checkpoint = layout.checkpoints[i / CHECKPOINT];
        let mut cursor = MetaCursor::new(
            self.tables.inode,
            checkpoint.word_block,
            usize::from(checkpoint.word_offset),
        )?;
        let words = i % CHECKPOINT + 1;
        let mut raw = [0u8; CHECKPOINT * 4];
        cursor.read(self, &mut raw[..words * 4])?;
        let mut offset = checkpoint.data;
        let mut word = 0;
        for chunk in raw[..words * 4].chunks_exact(4) {
            word = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
            offset += u64::from(word & SIZE_MASK);
        }
        Ok((offset - u64::from(word & SIZE_MASK), word))
    }

    /// Whether block `index` of regular file `file` is a sparse block (see
    /// [`Archive::is_sparse_block`]).
    pub(crate) fn file_block_is_sparse(&self, file: &Inode, index: u64) -> Result<bool> {
        let layout = self.file_layout(file.inode_ref)?;
        if index >= layout.block_count as u64 {
            return Ok(false);
        }
        let (_, word) = self.block_entry(&layout, index as usize)?;
        Ok(word & SIZE_MASK == 0)
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
            let mut n;
            if index < layout.block_count as u64 {
                let logical = block_size.min(layout.size - index * block_size) as usize;
                n = (logical - within).min(want - done);
                let (block_offset, word) = self.block_entry(&layout, index as usize)?;
                if word & SIZE_MASK == 0 {
                    buf[done..done + n].fill(0);
                } else if within == 0
                    && n == logical
                    && self.is_stored_uncached(block_offset, word, logical)
                {
                    n = self.read_stored_run(file, pos, &mut buf[done..want])?;
                } else {
                    let block = self.data_block(block_offset, word, logical)?;
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

    /// The longest run of bytes of `file` from `offset` (at most `max_len`) stored one way:
    /// verbatim in the image and back to back, sparse, or encoded (compressed blocks, or the
    /// fragment tail). Empty at or past the end of the file.
    pub(crate) fn file_data_extent(
        &self,
        file: &Inode,
        offset: u64,
        max_len: u64,
    ) -> Result<DataExtent> {
        if !matches!(file.kind, InodeKind::File { .. }) {
            return Err(Error::WrongType {
                path: format!("inode {}", file.number),
                expected: "a regular file",
            });
        }
        let layout = self.file_layout(file.inode_ref)?;
        let max_len = max_len.min(layout.size.saturating_sub(offset));
        if max_len == 0 {
            return Ok(DataExtent::Encoded { len: 0 });
        }
        let block_size = u64::from(self.superblock.block_size);
        let first = offset / block_size;
        if first >= layout.block_count as u64 {
            return Ok(DataExtent::Encoded { len: max_len });
        }
        let logical_of = |i: u64| block_size.min(layout.size - i * block_size);
        let class = |word: u32, logical: u64| {
            if word & SIZE_MASK == 0 {
                0
            } else if word & DATA_UNCOMPRESSED != 0 && u64::from(word & SIZE_MASK) == logical {
                1
            } else {
                2
            }
        };
        let (start, word) = self.block_entry(&layout, first as usize)?;
        let kind = class(word, logical_of(first));
        let within = offset - first * block_size;
        let mut len = logical_of(first) - within;
        let mut next = first + 1;
        let mut next_offset = start + u64::from(word & SIZE_MASK);
        while len < max_len && next < layout.block_count as u64 {
            let (o, w) = self.block_entry(&layout, next as usize)?;
            if class(w, logical_of(next)) != kind || (kind == 1 && o != next_offset) {
                break;
            }
            len += logical_of(next);
            next_offset = o + u64::from(w & SIZE_MASK);
            next += 1;
        }
        let len = len.min(max_len);
        Ok(match kind {
            0 => DataExtent::Sparse { len },
            1 => {
                let image_offset = start + within;
                if image_offset
                    .checked_add(len)
                    .is_none_or(|end| end > self.tables.inode.start)
                {
                    return Err(Error::corrupt(
                        format!("data blocks of {len} bytes at {image_offset} lie outside the data area"),
                        image_offset,
                    ));
                }
                DataExtent::Stored { image_offset, len }
            }
            _ => DataExtent::Encoded { len },
        })
    }

    /// Whether block (`offset`, `word`) of `logical` bytes is stored uncompressed, whole
    /// (so its bytes in the image are the file's), and not in the block cache.
    fn is_stored_uncached(&self, offset: u64, word: u32, logical: usize) -> bool {
        word & DATA_UNCOMPRESSED != 0
            && (word & SIZE_MASK) as usize == logical
            && self.data_cache.get(&(offset, word)).is_none()
    }

    /// Read the bytes of `file` from `pos`, where a whole block starts that is stored
    /// uncompressed and not cached (see [`Archive::is_stored_uncached`]), together with the
    /// stored blocks right behind it (its [`DataExtent::Stored`] run, at most `out.len()`
    /// bytes) straight into `out` with one read. Returns the bytes read. Streaming a large
    /// incompressible file then costs one read per call instead of one allocation, read,
    /// copy and cache insertion per block, and does not push useful blocks out of the cache.
    fn read_stored_run(&self, file: &Inode, pos: u64, out: &mut [u8]) -> Result<usize> {
        let DataExtent::Stored { image_offset, len } =
            self.file_data_extent(file, pos, out.len() as u64)?
        else {
            // The caller saw a stored block here, in the same (cached) block list.
            return Err(Error::corrupt(
                format!(
                    "inode {:?}: block list changed while reading",
                    file.inode_ref
                ),
                pos,
            ));
        };
        let blocks = len.div_ceil(u64::from(self.superblock.block_size));
        self.stats.data_decodes.fetch_add(blocks, Ordering::Relaxed);
        let len = len as usize;
        self.read_source(image_offset, &mut out[..len], "data block")?;
        Ok(len)
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
