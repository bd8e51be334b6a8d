//! Compression codecs and the compressor-options block.
//!
//! SquashFS compressor ids: 1 gzip (zlib stream), 2 lzma (legacy, read only), 3 lzo (lzo1x),
//! 4 xz, 5 lz4 (raw block format), 6 zstd.
//!
//! Decompression is always bounded: the caller passes an output buffer sized to the largest
//! legal result (the block size for data, 8 KiB for metadata) and a stream that would produce
//! more is an error, never a large allocation. No decoder allocates in proportion to a length
//! read from the input (xz is additionally held to a memory limit derived from the dictionary
//! size the image declares).
//!
//! # Default levels for writing
//!
//! [`Codec::for_writing`] with `level: None` uses the same settings as mksquashfs 4.5.1:
//! gzip 9, zstd 15, xz preset 6 with a dictionary equal to the block size, lzo in lzo1x_999
//! style (what `lzokay-native` produces; mksquashfs' default is lzo1x_999 level 8) and plain
//! (not HC) lz4. Matching the reference tool means an image built by squashbox is about the size
//! users expect from `mksquashfs`, and that no compressor-options block is needed (except for
//! lz4, which always has one), so images look exactly like mksquashfs' to every reader. Images
//! are written once and read many times, so the slower-but-smaller settings are the right
//! default; callers wanting speed pass a lower level (e.g. zstd 3).

mod gzip;
mod lz4;
mod lzma;
mod lzo;
mod options;
mod xz;
mod zstd_codec;

use crate::error::{Error, Result};

/// Default gzip level for writing (mksquashfs' default).
pub const DEFAULT_GZIP_LEVEL: i32 = 9;
/// Default zstd level for writing (mksquashfs' default).
pub const DEFAULT_ZSTD_LEVEL: i32 = 15;
/// Default xz preset for writing (liblzma's and mksquashfs' default preset).
pub const DEFAULT_XZ_PRESET: i32 = 6;
/// The lzo1x_999 level mksquashfs writes by default (and assumes when no options are stored).
pub const DEFAULT_LZO_LEVEL: u32 = 8;
/// lzo algorithm id of lzo1x_999 in the options block.
pub const LZO_ALGORITHM_LZO1X_999: u32 = 4;
/// lz4 options `version` value the kernel requires ("legacy" lz4 block format).
pub const LZ4_VERSION_LEGACY: u32 = 1;
/// lz4 options flag: high-compression mode was used to compress (no effect on decoding).
pub const LZ4_FLAG_HC: u32 = 1;
/// Largest dictionary an xz image may declare: the largest block size.
pub const XZ_MAX_DICTIONARY: u32 = crate::layout::MAX_BLOCK_SIZE;
/// Smallest dictionary an xz options block may declare (one metadata block).
pub const XZ_MIN_DICTIONARY: u32 = crate::layout::METADATA_BLOCK_SIZE as u32;

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
    /// Every compressor, in id order.
    pub const ALL: [Compressor; 6] = [
        Compressor::Gzip,
        Compressor::Lzma,
        Compressor::Lzo,
        Compressor::Xz,
        Compressor::Lz4,
        Compressor::Zstd,
    ];

    /// The on-disk id.
    pub fn id(self) -> u16 {
        match self {
            Compressor::Gzip => 1,
            Compressor::Lzma => 2,
            Compressor::Lzo => 3,
            Compressor::Xz => 4,
            Compressor::Lz4 => 5,
            Compressor::Zstd => 6,
        }
    }

    /// Parse an on-disk id.
    pub fn from_id(id: u16) -> Result<Self> {
        Compressor::ALL
            .into_iter()
            .find(|c| c.id() == id)
            .ok_or_else(|| Error::Unsupported(format!("unknown compressor id {id}")))
    }

    /// Lower-case name as used by mksquashfs (`gzip`, `lzma`, `lzo`, `xz`, `lz4`, `zstd`).
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Gzip => "gzip",
            Compressor::Lzma => "lzma",
            Compressor::Lzo => "lzo",
            Compressor::Xz => "xz",
            Compressor::Lz4 => "lz4",
            Compressor::Zstd => "zstd",
        }
    }

    /// Parse a name as accepted by `--comp`.
    pub fn from_name(name: &str) -> Option<Self> {
        Compressor::ALL.into_iter().find(|c| c.name() == name)
    }

    /// True if squashbox can write images with this compressor (all but legacy lzma).
    pub fn can_write(self) -> bool {
        self != Compressor::Lzma
    }

    /// The level [`Codec::for_writing`] uses when given `None` (`None` for compressors without
    /// a level).
    pub fn default_level(self) -> Option<i32> {
        match self {
            Compressor::Gzip => Some(DEFAULT_GZIP_LEVEL),
            Compressor::Zstd => Some(DEFAULT_ZSTD_LEVEL),
            Compressor::Xz => Some(DEFAULT_XZ_PRESET),
            Compressor::Lzma | Compressor::Lzo | Compressor::Lz4 => None,
        }
    }

    /// The levels [`Codec::for_writing`] accepts (`None` if no explicit level is accepted).
    pub fn level_range(self) -> Option<std::ops::RangeInclusive<i32>> {
        match self {
            Compressor::Gzip => Some(1..=9),
            Compressor::Zstd => Some(1..=22),
            Compressor::Xz => Some(0..=9),
            Compressor::Lzma | Compressor::Lzo | Compressor::Lz4 => None,
        }
    }
}

impl std::fmt::Display for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
    ///
    /// Validates that the options belong to `compressor` and hold legal values (see
    /// [`CompressorOptions::validate`]); an xz dictionary larger than the block size is
    /// rejected because it would let an image demand more decoder memory than any legal block
    /// needs.
    pub fn for_reading(
        compressor: Compressor,
        options: Option<CompressorOptions>,
        block_size: u32,
    ) -> Result<Self> {
        if let Some(opts) = &options {
            opts.validate(compressor, 0)?;
            if let CompressorOptions::Xz {
                dictionary_size, ..
            } = opts
            {
                if *dictionary_size > block_size.max(XZ_MIN_DICTIONARY) {
                    return Err(Error::corrupt(
                        format!(
                            "xz compressor options: dictionary size {dictionary_size} is larger \
                             than the block size {block_size}"
                        ),
                        crate::layout::SUPERBLOCK_SIZE as u64,
                    ));
                }
            }
        }
        Ok(Codec {
            compressor,
            options,
            level: None,
            block_size,
        })
    }

    /// A codec for writing, with an optional level (codec default if `None`).
    ///
    /// Levels: gzip 1..=9 (default 9), zstd 1..=22 (default 15), xz preset 0..=9 (default 6,
    /// dictionary = block size). lz4 and lzo take no level (`Some(_)` is an
    /// [`Error::InvalidArgument`]): lz4 is written in fast mode, lzo in lzo1x_999 style. Legacy
    /// lzma cannot be written ([`Error::Unsupported`]).
    pub fn for_writing(
        compressor: Compressor,
        level: Option<i32>,
        block_size: u32,
    ) -> Result<Self> {
        if !block_size.is_power_of_two()
            || !(crate::layout::MIN_BLOCK_SIZE..=crate::layout::MAX_BLOCK_SIZE)
                .contains(&block_size)
        {
            return Err(Error::InvalidArgument(format!(
                "block size {block_size} is not a power of two between 4 KiB and 1 MiB"
            )));
        }
        if compressor == Compressor::Lzma {
            return Err(Error::Unsupported(
                "writing legacy lzma images (the kernel cannot read them; use xz)".into(),
            ));
        }
        let level = match (level, compressor.level_range()) {
            (None, _) => compressor.default_level(),
            (Some(l), Some(range)) if range.contains(&l) => Some(l),
            (Some(l), Some(range)) => {
                return Err(Error::InvalidArgument(format!(
                    "{compressor} level {l} is out of range {}..={}",
                    range.start(),
                    range.end()
                )))
            }
            (Some(l), None) => {
                return Err(Error::InvalidArgument(format!(
                    "{compressor} does not take a compression level (got {l})"
                )))
            }
        };
        let options = match compressor {
            Compressor::Gzip => Some(CompressorOptions::Gzip {
                level: level.unwrap_or(DEFAULT_GZIP_LEVEL) as u32,
                window_bits: 15,
                strategies: 0,
            }),
            Compressor::Zstd => Some(CompressorOptions::Zstd {
                level: level.unwrap_or(DEFAULT_ZSTD_LEVEL) as u32,
            }),
            Compressor::Xz => Some(CompressorOptions::Xz {
                dictionary_size: block_size,
                filters: 0,
            }),
            Compressor::Lz4 => Some(CompressorOptions::Lz4 {
                version: LZ4_VERSION_LEGACY,
                flags: 0,
            }),
            Compressor::Lzo => Some(CompressorOptions::Lzo {
                algorithm: LZO_ALGORITHM_LZO1X_999,
                level: DEFAULT_LZO_LEVEL,
            }),
            Compressor::Lzma => None,
        };
        Ok(Codec {
            compressor,
            options,
            level,
            block_size,
        })
    }

    /// The compressor.
    pub fn compressor(&self) -> Compressor {
        self.compressor
    }

    /// The block size this codec was configured for.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// The options in effect (as read from the image, or as configured for writing).
    pub fn options(&self) -> Option<&CompressorOptions> {
        self.options.as_ref()
    }

    /// Options to store after the superblock when writing (`None` when defaults suffice and the
    /// compressor allows omitting them; lz4 always has them).
    ///
    /// This mirrors mksquashfs: gzip stores options only when the level is not 9, zstd only when
    /// it is not 15, xz never (dictionary = block size, no BCJ filter), lzo never (lzo1x_999
    /// level 8 is the assumed default), lz4 always (version 1, flags 0).
    pub fn options_to_write(&self) -> Option<CompressorOptions> {
        match (self.compressor, &self.options) {
            (Compressor::Gzip, Some(o @ CompressorOptions::Gzip { level, .. })) => {
                (*level != DEFAULT_GZIP_LEVEL as u32).then(|| o.clone())
            }
            (Compressor::Zstd, Some(o @ CompressorOptions::Zstd { level })) => {
                (*level != DEFAULT_ZSTD_LEVEL as u32).then(|| o.clone())
            }
            (
                Compressor::Xz,
                Some(
                    o @ CompressorOptions::Xz {
                        dictionary_size,
                        filters,
                    },
                ),
            ) => (*dictionary_size != self.block_size || *filters != 0).then(|| o.clone()),
            (Compressor::Lz4, Some(o @ CompressorOptions::Lz4 { .. })) => Some(o.clone()),
            (Compressor::Lz4, _) => Some(CompressorOptions::Lz4 {
                version: LZ4_VERSION_LEGACY,
                flags: 0,
            }),
            _ => None,
        }
    }

    /// Decompress `input` into `out`, returning the number of bytes produced.
    ///
    /// Fails (without allocating beyond `out`) if the stream is corrupt or would produce more
    /// than `out.len()` bytes. `offset` is the block's image offset, used in the error.
    pub fn decompress(&self, input: &[u8], out: &mut [u8], offset: u64) -> Result<usize> {
        let name = self.compressor.name();
        let result = match self.compressor {
            Compressor::Gzip => gzip::decompress(input, out),
            Compressor::Zstd => zstd_codec::decompress(input, out),
            Compressor::Lz4 => lz4::decompress(input, out),
            Compressor::Lzo => lzo::decompress(input, out),
            Compressor::Xz => xz::decompress(input, out, self.xz_dictionary_limit()),
            Compressor::Lzma => lzma::decompress(input, out, self.xz_dictionary_limit()),
        };
        result.map_err(|e| Error::Decompress {
            compressor: name,
            offset,
            message: e.to_string(),
        })
    }

    /// Compress `input` into `out` (cleared first). Returns `false` if the result is not
    /// smaller than the input, in which case the caller stores the block uncompressed.
    ///
    /// `out` always holds a complete, decodable stream on success, even when `false` is
    /// returned.
    pub fn compress(&self, input: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        let name = self.compressor.name();
        let result = match (self.compressor, &self.options) {
            (Compressor::Gzip, Some(CompressorOptions::Gzip { window_bits, .. })) => {
                gzip::compress(
                    input,
                    out,
                    self.level.unwrap_or(DEFAULT_GZIP_LEVEL) as u32,
                    *window_bits as u8,
                )
            }
            (Compressor::Gzip, _) => gzip::compress(
                input,
                out,
                self.level.unwrap_or(DEFAULT_GZIP_LEVEL) as u32,
                15,
            ),
            (Compressor::Zstd, _) => {
                zstd_codec::compress(input, out, self.level.unwrap_or(DEFAULT_ZSTD_LEVEL))
            }
            (Compressor::Lz4, _) => lz4::compress(input, out),
            (Compressor::Lzo, _) => lzo::compress(input, out),
            (Compressor::Xz, _) => xz::compress(
                input,
                out,
                self.level.unwrap_or(DEFAULT_XZ_PRESET) as u32,
                self.xz_encoder_dictionary(input.len()),
            ),
            (Compressor::Lzma, _) => Err(CodecError::Other(
                "legacy lzma compression is not supported".into(),
            )),
        };
        match result {
            Ok(()) => Ok(out.len() < input.len()),
            Err(e) => Err(Error::Compress {
                compressor: name,
                message: e.to_string(),
            }),
        }
    }

    /// The largest dictionary an xz/lzma stream of this image may use: the dictionary from the
    /// options block, or (the kernel's rule) the larger of the block size and 8 KiB.
    fn xz_dictionary_limit(&self) -> u32 {
        match &self.options {
            Some(CompressorOptions::Xz {
                dictionary_size, ..
            }) => *dictionary_size,
            _ => self.block_size.max(XZ_MIN_DICTIONARY),
        }
    }

    /// The dictionary the xz encoder uses for a block of `len` bytes: the configured
    /// dictionary, but never below liblzma's 4 KiB minimum.
    fn xz_encoder_dictionary(&self, _len: usize) -> u32 {
        let dict = match &self.options {
            Some(CompressorOptions::Xz {
                dictionary_size, ..
            }) => *dictionary_size,
            _ => self.block_size,
        };
        dict.max(4096)
    }
}

/// Internal codec failure, turned into [`Error::Decompress`]/[`Error::Compress`] with the
/// compressor name and offset by [`Codec`].
#[derive(Debug)]
pub(crate) enum CodecError {
    /// The stream would produce more than the output buffer holds.
    OutputTooLarge(usize),
    /// The stream ended before its end marker.
    Truncated,
    /// Anything else, described.
    Other(String),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::OutputTooLarge(limit) => {
                write!(f, "output larger than the {limit}-byte limit")
            }
            CodecError::Truncated => f.write_str("stream is truncated (no end marker)"),
            CodecError::Other(message) => f.write_str(message),
        }
    }
}

pub(crate) type CodecResult<T> = std::result::Result<T, CodecError>;
