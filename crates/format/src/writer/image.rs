//! The image writer: data area, inode and directory tables, lookup tables and the superblock.
//!
//! The caller writes data blocks and fragment blocks sequentially, then inodes (children
//! before their directory), then calls [`ImageWriter::finish`], which appends the tables in the
//! order the kernel requires (inode, directory, fragment, export, id, xattr) with no gaps,
//! writes the superblock at offset 0 and pads the image to a multiple of 4 KiB.

use std::fs::File;
use std::io::{self, BufWriter, Cursor, Seek, SeekFrom, Write};

use super::directory::{write_listing, DirectoryEntry};
use super::inode::{DirectoryListing, InodeSpec};
use super::metadata::{MetaPos, MetadataWriter};
use super::tables::{fragment_entries_bytes, EncodedTable, FragmentEntry, IdTable};
use super::xattr::XattrTable;
use crate::compress::Codec;
use crate::error::{Error, Result};
use crate::layout::{
    flags, Superblock, DATA_UNCOMPRESSED, DEVICE_BLOCK_SIZE, MAX_BLOCK_SIZE, METADATA_UNCOMPRESSED,
    MIN_BLOCK_SIZE, NO_TABLE, SUPERBLOCK_SIZE,
};

/// Where the image bytes go: a seekable sink that can also be cut to a length (used when the
/// caller rolls back data, e.g. a file found to be a duplicate after it was written).
pub trait ImageSink: Write + Seek {
    /// Set the sink's length to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

impl ImageSink for File {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

impl ImageSink for BufWriter<File> {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.flush()?;
        self.get_ref().set_len(len)
    }
}

impl ImageSink for Cursor<Vec<u8>> {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        self.get_mut().resize(len, 0);
        Ok(())
    }
}

/// Image-wide settings recorded in the superblock by [`ImageWriter::finish`].
#[derive(Clone, Copy, Debug)]
pub struct FinishOptions {
    /// Reference of the root directory inode.
    pub root: MetaPos,
    /// Image modification time.
    pub mtime: u32,
    /// Whether duplicate files were merged (sets the `DUPLICATES` flag).
    pub deduplicated: bool,
    /// Whether fragments were disabled (`NO_FRAGMENTS`) or tails always packed
    /// (`ALWAYS_FRAGMENTS`).
    pub fragments: bool,
}

/// Writes one SquashFS image into an [`ImageSink`].
pub struct ImageWriter<W: ImageSink> {
    out: W,
    pos: u64,
    data_start: u64,
    codec: Codec,
    block_size: u32,
    inode_table: MetadataWriter,
    dir_table: MetadataWriter,
    fragments: Vec<FragmentEntry>,
    ids: IdTable,
    xattrs: XattrTable,
    export: Vec<u64>,
    scratch: Vec<u8>,
    has_options: bool,
}

fn io_err(context: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| Error::io(context, e)
}

impl<W: ImageSink> ImageWriter<W> {
    /// Start an image: reserve the superblock and write the compressor options if the codec
    /// asks for them. `out` must be positioned at its start.
    pub fn new(mut out: W, codec: Codec, block_size: u32) -> Result<Self> {
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(Error::InvalidArgument(format!(
                "block size {block_size} is not a power of two from 4 KiB to 1 MiB"
            )));
        }
        out.seek(SeekFrom::Start(0))
            .map_err(io_err("seeking to the image start"))?;
        out.write_all(&[0u8; SUPERBLOCK_SIZE])
            .map_err(io_err("reserving the superblock"))?;
        let mut pos = SUPERBLOCK_SIZE as u64;
        let mut has_options = false;
        if let Some(options) = codec.options_to_write() {
            let payload = options.to_bytes();
            let header = payload.len() as u16 | METADATA_UNCOMPRESSED;
            out.write_all(&header.to_le_bytes())
                .and_then(|_| out.write_all(&payload))
                .map_err(io_err("writing compressor options"))?;
            pos += 2 + payload.len() as u64;
            has_options = true;
        }
        Ok(ImageWriter {
            out,
            pos,
            data_start: pos,
            inode_table: MetadataWriter::new(codec.clone()),
            dir_table: MetadataWriter::new(codec.clone()),
            xattrs: XattrTable::new(codec.clone()),
            codec,
            block_size,
            fragments: Vec::new(),
            ids: IdTable::default(),
            export: Vec::new(),
            scratch: Vec::new(),
            has_options,
        })
    }

    /// The codec in use.
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// The data block size.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Offset where the next data byte will be written.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Append stored (already compressed or raw) data bytes and return their offset.
    pub fn write_data(&mut self, bytes: &[u8]) -> Result<u64> {
        let at = self.pos;
        self.out
            .write_all(bytes)
            .map_err(io_err("writing data blocks"))?;
        self.pos += bytes.len() as u64;
        Ok(at)
    }

    /// Compress one data block (or store it raw when compression does not shrink it), append
    /// it, and return its size word. All-zero blocks are not special here: the caller decides
    /// about sparse blocks.
    pub fn compress_and_write_block(&mut self, block: &[u8]) -> Result<u32> {
        let shrunk = self.codec.compress(block, &mut self.scratch)?;
        let word = if shrunk && self.scratch.len() < block.len() {
            let scratch = std::mem::take(&mut self.scratch);
            self.write_data(&scratch)?;
            self.scratch = scratch;
            self.scratch.len() as u32
        } else {
            self.write_data(block)?;
            block.len() as u32 | DATA_UNCOMPRESSED
        };
        Ok(word)
    }

    /// Discard all data written at or after `offset` (which must lie in the data area and not
    /// after the current position). The next write lands at `offset`.
    pub fn rewind_data(&mut self, offset: u64) -> Result<()> {
        if offset < self.data_start || offset > self.pos {
            return Err(Error::InvalidArgument(format!(
                "cannot rewind data to {offset} (data area {}..{})",
                self.data_start, self.pos
            )));
        }
        if offset != self.pos {
            self.out
                .seek(SeekFrom::Start(offset))
                .map_err(io_err("rewinding the data area"))?;
            self.pos = offset;
        }
        Ok(())
    }

    /// Append a fragment block (stored bytes + whether they are uncompressed) and return its
    /// fragment index.
    pub fn write_fragment(&mut self, stored: &[u8], uncompressed: bool) -> Result<u32> {
        let index = u32::try_from(self.fragments.len())
            .ok()
            .filter(|i| *i != u32::MAX)
            .ok_or_else(|| Error::InvalidArgument("too many fragments".into()))?;
        let start = self.write_data(stored)?;
        let size_word = stored.len() as u32 | if uncompressed { DATA_UNCOMPRESSED } else { 0 };
        self.fragments.push(FragmentEntry { start, size_word });
        Ok(index)
    }

    /// The fragment table entry for `index`.
    pub fn fragment(&self, index: u32) -> Option<FragmentEntry> {
        self.fragments.get(index as usize).copied()
    }

    /// Index of `id` in the id table (added if new).
    pub fn id_index(&mut self, id: u32) -> Result<u16> {
        self.ids.index_of(id)
    }

    /// Store an xattr set (pairs of full name and value, in canonical order) and return its id.
    pub fn add_xattrs(&mut self, set: &[(Vec<u8>, Vec<u8>)]) -> Result<u32> {
        self.xattrs.add(set)
    }

    /// Write a directory listing; the result goes into the directory's inode.
    pub fn write_directory(&mut self, entries: &[DirectoryEntry<'_>]) -> Result<DirectoryListing> {
        write_listing(&mut self.dir_table, entries)
    }

    /// Encode and append an inode. Inode numbers must be written exactly once each; the
    /// export table maps every number 1..=N to where it was written.
    pub fn write_inode(&mut self, inode: &InodeSpec<'_>) -> Result<MetaPos> {
        let number = inode.number as usize;
        if number == 0 {
            return Err(Error::InvalidArgument("inode number 0".into()));
        }
        let pos = self.inode_table.position();
        self.scratch.clear();
        inode.encode(&mut self.scratch);
        let bytes = std::mem::take(&mut self.scratch);
        let written = self.inode_table.write(&bytes);
        self.scratch = bytes;
        written?;
        if self.export.len() < number {
            self.export.resize(number, u64::MAX);
        }
        if self.export[number - 1] != u64::MAX {
            return Err(Error::InvalidArgument(format!(
                "inode number {number} written twice"
            )));
        }
        self.export[number - 1] = pos.to_ref();
        Ok(pos)
    }

    /// Position at which the next inode will be written.
    pub fn next_inode_position(&self) -> MetaPos {
        self.inode_table.position()
    }

    /// Flush buffered bytes to the sink (so data can be read back from the file).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(io_err("flushing the image"))
    }

    /// Write all tables and the superblock; returns the sink and the padded image size.
    pub fn finish(mut self, options: FinishOptions) -> Result<(W, u64)> {
        let inode_count = u32::try_from(self.export.len())
            .map_err(|_| Error::InvalidArgument("too many inodes".into()))?;
        if let Some(missing) = self.export.iter().position(|r| *r == u64::MAX) {
            return Err(Error::InvalidArgument(format!(
                "inode number {} was never written",
                missing + 1
            )));
        }
        if inode_count == 0 {
            return Err(Error::InvalidArgument("image without inodes".into()));
        }
        let codec = self.codec.clone();

        let inode_table_start = self.pos;
        let inode_table =
            std::mem::replace(&mut self.inode_table, MetadataWriter::new(codec.clone()));
        let (bytes, _) = inode_table.finish()?;
        self.write_data(&bytes)?;

        let directory_table_start = self.pos;
        let dir_table = std::mem::replace(&mut self.dir_table, MetadataWriter::new(codec.clone()));
        let (bytes, _) = dir_table.finish()?;
        self.write_data(&bytes)?;

        let fragment_table_start = if self.fragments.is_empty() {
            self.pos
        } else {
            let table = EncodedTable::encode(&codec, &fragment_entries_bytes(&self.fragments))?;
            self.write_table(&table)?
        };

        let mut export_bytes = Vec::with_capacity(self.export.len() * 8);
        for r in &self.export {
            export_bytes.extend_from_slice(&r.to_le_bytes());
        }
        let export_table_start = self.write_table(&EncodedTable::encode(&codec, &export_bytes)?)?;

        if self.ids.is_empty() {
            return Err(Error::InvalidArgument("image without ids".into()));
        }
        let id_count = self.ids.len();
        let id_table_start =
            self.write_table(&EncodedTable::encode(&codec, &self.ids.entries_bytes())?)?;

        let xattr_count = self.xattrs.len();
        let xattr_id_table_start = if xattr_count == 0 {
            NO_TABLE
        } else {
            let xattrs = std::mem::replace(&mut self.xattrs, XattrTable::new(codec.clone()));
            let encoded = xattrs.finish(&codec)?;
            let kv_start = self.write_data(&encoded.kv_blocks)?;
            let ids_start = self.write_data(&encoded.id_blocks)?;
            let mut header = Vec::with_capacity(16 + encoded.id_block_starts.len() * 8);
            header.extend_from_slice(&kv_start.to_le_bytes());
            header.extend_from_slice(&encoded.count.to_le_bytes());
            header.extend_from_slice(&0u32.to_le_bytes());
            for start in &encoded.id_block_starts {
                header.extend_from_slice(&(ids_start + start).to_le_bytes());
            }
            self.write_data(&header)?
        };

        let bytes_used = self.pos;
        let padded = bytes_used.div_ceil(DEVICE_BLOCK_SIZE) * DEVICE_BLOCK_SIZE;
        let padding = vec![0u8; (padded - bytes_used) as usize];
        self.write_data(&padding)?;

        let mut flag_bits = flags::EXPORTABLE;
        if options.deduplicated {
            flag_bits |= flags::DUPLICATES;
        }
        if options.fragments {
            flag_bits |= flags::ALWAYS_FRAGMENTS;
        } else {
            flag_bits |= flags::NO_FRAGMENTS;
        }
        if xattr_count == 0 {
            flag_bits |= flags::NO_XATTRS;
        }
        if self.has_options {
            flag_bits |= flags::COMPRESSOR_OPTIONS;
        }
        let superblock = Superblock {
            inode_count,
            modification_time: options.mtime,
            block_size: self.block_size,
            fragment_entry_count: self.fragments.len() as u32,
            compressor: codec.compressor(),
            block_log: self.block_size.trailing_zeros() as u16,
            flags: flag_bits,
            id_count: id_count as u16,
            version_major: 4,
            version_minor: 0,
            root_inode_ref: options.root.to_ref(),
            bytes_used,
            id_table_start,
            xattr_id_table_start,
            inode_table_start,
            directory_table_start,
            fragment_table_start,
            export_table_start,
        };
        let mut out = self.out;
        out.set_len(padded)
            .map_err(io_err("setting the image length"))?;
        out.seek(SeekFrom::Start(0))
            .and_then(|_| out.write_all(&superblock.to_bytes()))
            .and_then(|_| out.flush())
            .map_err(io_err("writing the superblock"))?;
        Ok((out, padded))
    }

    /// Write a lookup table's blocks then its index; return the index position.
    fn write_table(&mut self, table: &EncodedTable) -> Result<u64> {
        let blocks_at = self.write_data(&table.blocks)?;
        let index = table.index_bytes(blocks_at);
        self.write_data(&index)
    }
}
