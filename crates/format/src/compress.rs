//! Compression codecs and the compressor-options block.
//!
//! SquashFS compressor ids: 1 gzip (zlib stream), 2 lzma (legacy, read only), 3 lzo (lzo1x),
//! 4 xz, 5 lz4 (raw block format), 6 zstd.
//!
//! Decompression is always bounded: the caller passes an output buffer sized to the largest
//! legal result (the block size for data, 8 KiB for metadata) and a stream that would produce
//! more is an error, never a large allocation.

// IMPLEMENTATION NOTE (lead): signatures are fixed; bodies are being filled in by the codec work.

use crate::error::{Error, Result};

/// A SquashFS compressor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compressor {
    /// zlib/deflate (id 1).
    Gzip,
    /// Legacy LZMA "alone" format (id 2). Readable only; the kernel does not support it.
    Lzma,
    /// LZO1X (id 3).
    Lzo,
    /// XZ (id 4).
    Xz,
    /// LZ4 raw block format (id 5).
    Lz4,
    /// Zstandard (id 6).
    Zstd,
}

/// Decoded compressor options (the optional block after the superblock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompressorOptions {
    /// gzip: level 1..=9, window bits 8..=15, strategy bit set.
    Gzip {
        /// Compression level.
        level: u32,
        /// Window size in bits.
        window_bits: u16,
        /// Strategy flags as stored.
        strategies: u16,
    },
    /// xz: dictionary size and BCJ filter flags.
    Xz {
        /// Dictionary size in bytes.
        dictionary_size: u32,
        /// Executable filter bit set as stored.
        filters: u32,
    },
    /// lz4: format version (must be 1) and flags (bit 0 = high compression).
    Lz4 {
        /// Format version.
        version: u32,
        /// Flags.
        flags: u32,
    },
    /// zstd: compression level.
    Zstd {
        /// Compression level.
        level: u32,
    },
    /// lzo: algorithm (0..=4) and level.
    Lzo {
        /// Algorithm id.
        algorithm: u32,
        /// Compression level.
        level: u32,
    },
}

impl Compressor {
    /// The on-disk id.
    pub fn id(self) -> u16 {
        todo!()
    }

    /// Parse an on-disk id.
    pub fn from_id(id: u16) -> Result<Self> {
        let _ = id;
        todo!()
    }

    /// Lower-case name as used by mksquashfs (`gzip`, `lzma`, `lzo`, `xz`, `lz4`, `zstd`).
    pub fn name(self) -> &'static str {
        todo!()
    }

    /// Parse a name as accepted by `--comp`.
    pub fn from_name(name: &str) -> Option<Self> {
        let _ = name;
        todo!()
    }
}

/// A configured codec: compressor plus level/options. Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Codec {
    compressor: Compressor,
    options: Option<CompressorOptions>,
    level: Option<i32>,
    block_size: u32,
}

impl Codec {
    /// A codec for reading an image (options from the image, if present).
    pub fn for_reading(
        compressor: Compressor,
        options: Option<CompressorOptions>,
        block_size: u32,
    ) -> Result<Self> {
        let _ = (compressor, &options, block_size);
        todo!()
    }

    /// A codec for writing, with an optional level (codec default if `None`).
    pub fn for_writing(compressor: Compressor, level: Option<i32>, block_size: u32) -> Result<Self> {
        let _ = (compressor, level, block_size);
        todo!()
    }

    /// The compressor.
    pub fn compressor(&self) -> Compressor {
        self.compressor
    }

    /// Options to store after the superblock when writing (`None` when defaults suffice and the
    /// compressor allows omitting them; lz4 always has them).
    pub fn options_to_write(&self) -> Option<CompressorOptions> {
        let _ = (&self.options, self.level, self.block_size);
        todo!()
    }

    /// Decompress `input` into `out`, returning the number of bytes produced.
    ///
    /// Fails (without allocating beyond `out`) if the stream is corrupt or would produce more
    /// than `out.len()` bytes. `offset` is the block's image offset, used in the error.
    pub fn decompress(&self, input: &[u8], out: &mut [u8], offset: u64) -> Result<usize> {
        let _ = (input, out, offset);
        todo!()
    }

    /// Compress `input` into `out` (cleared first). Returns `false` if the result is not
    /// smaller than the input, in which case the caller stores the block uncompressed.
    pub fn compress(&self, input: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let _ = (input, out);
        todo!()
    }
}

impl CompressorOptions {
    /// Parse the options block payload for `compressor`.
    pub fn parse(compressor: Compressor, payload: &[u8], offset: u64) -> Result<Self> {
        let _ = (compressor, payload, offset);
        Err(Error::Unsupported("todo".into()))
    }

    /// Serialize to the on-disk payload (without the metadata block header).
    pub fn to_bytes(&self) -> Vec<u8> {
        todo!()
    }
}
