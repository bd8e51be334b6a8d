//! The compressor-options block: parsing, validation and serialization.
//!
//! Layouts (little-endian), as written by squashfs-tools:
//! - gzip: level u32, window bits u16, strategies u16 (bit 0 default, 1 filtered,
//!   2 huffman only, 3 run-length, 4 fixed)
//! - xz: dictionary size u32, BCJ filters u32 (bit 0 x86, 1 powerpc, 2 ia64, 3 arm,
//!   4 armthumb, 5 sparc)
//! - lz4: version u32 (1), flags u32 (bit 0 = HC)
//! - zstd: level u32
//! - lzo: algorithm u32 (0 lzo1x_1, 1 lzo1x_1_11, 2 lzo1x_1_12, 3 lzo1x_1_15, 4 lzo1x_999),
//!   level u32 (1..=9 for lzo1x_999, otherwise 0)

use super::{
    Compressor, CompressorOptions, LZ4_FLAG_HC, LZ4_VERSION_LEGACY, LZO_ALGORITHM_LZO1X_999,
    XZ_MAX_DICTIONARY, XZ_MIN_DICTIONARY,
};
use crate::error::{Error, Result};

/// Known gzip strategy bits.
const GZIP_STRATEGY_MASK: u16 = 0x1f;
/// Known xz BCJ filter bits.
const XZ_FILTER_MASK: u32 = 0x3f;

fn u32_at(payload: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&payload[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u16_at(payload: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([payload[at], payload[at + 1]])
}

/// True if `size` can be stored in an xz header exactly: 2^n or 2^n + 2^(n-1).
pub(crate) fn xz_dictionary_is_storable(size: u32) -> bool {
    if size == 0 {
        return false;
    }
    let low = size & size.wrapping_neg();
    size == low || size == low + (low << 1)
}

impl CompressorOptions {
    /// Parse the options block payload for `compressor`.
    ///
    /// The payload must have exactly the size squashfs-tools writes for that compressor, and
    /// the values must pass [`CompressorOptions::validate`]. Errors are
    /// [`Error::Corrupt`] at `offset` naming the field; legacy lzma has no options
    /// ([`Error::Corrupt`] too).
    pub fn parse(compressor: Compressor, payload: &[u8], offset: u64) -> Result<Self> {
        let no_options = || {
            Error::corrupt(
                "compressor options block present for lzma, which has no options",
                offset,
            )
        };
        let expected = match compressor {
            Compressor::Zstd => 4,
            Compressor::Lzma => return Err(no_options()),
            _ => 8,
        };
        if payload.len() != expected {
            return Err(Error::corrupt(
                format!(
                    "{compressor} compressor options block is {} bytes, expected {expected}",
                    payload.len()
                ),
                offset,
            ));
        }
        let options = match compressor {
            Compressor::Gzip => CompressorOptions::Gzip {
                level: u32_at(payload, 0),
                window_bits: u16_at(payload, 4),
                strategies: u16_at(payload, 6),
            },
            Compressor::Xz => CompressorOptions::Xz {
                dictionary_size: u32_at(payload, 0),
                filters: u32_at(payload, 4),
            },
            Compressor::Lz4 => CompressorOptions::Lz4 {
                version: u32_at(payload, 0),
                flags: u32_at(payload, 4),
            },
            Compressor::Zstd => CompressorOptions::Zstd {
                level: u32_at(payload, 0),
            },
            Compressor::Lzo => CompressorOptions::Lzo {
                algorithm: u32_at(payload, 0),
                level: u32_at(payload, 4),
            },
            Compressor::Lzma => return Err(no_options()),
        };
        options.validate(compressor, offset)?;
        Ok(options)
    }

    /// The compressor these options belong to.
    pub fn compressor(&self) -> Compressor {
        match self {
            CompressorOptions::Gzip { .. } => Compressor::Gzip,
            CompressorOptions::Xz { .. } => Compressor::Xz,
            CompressorOptions::Lz4 { .. } => Compressor::Lz4,
            CompressorOptions::Zstd { .. } => Compressor::Zstd,
            CompressorOptions::Lzo { .. } => Compressor::Lzo,
        }
    }

    /// Check the options belong to `compressor` and hold values squashfs-tools and the kernel
    /// accept: gzip level 1..=9, window 8..=15, known strategy bits; xz dictionary 8 KiB..=1 MiB
    /// and of the form 2^n or 2^n + 2^(n-1), known filter bits; lz4 version 1, only the HC
    /// flag; zstd level 1..=22; lzo algorithm 0..=4, level 1..=9 for lzo1x_999 and 0 otherwise.
    pub fn validate(&self, compressor: Compressor, offset: u64) -> Result<()> {
        let bad = |what: String| Err(Error::corrupt(what, offset));
        if self.compressor() != compressor {
            return bad(format!(
                "compressor options are for {}, but the image uses {compressor}",
                self.compressor()
            ));
        }
        match *self {
            CompressorOptions::Gzip {
                level,
                window_bits,
                strategies,
            } => {
                if !(1..=9).contains(&level) {
                    return bad(format!("gzip options: level {level} is not in 1..=9"));
                }
                if !(8..=15).contains(&window_bits) {
                    return bad(format!(
                        "gzip options: window size {window_bits} is not in 8..=15"
                    ));
                }
                if strategies & !GZIP_STRATEGY_MASK != 0 {
                    return bad(format!(
                        "gzip options: unknown strategy bits {strategies:#x}"
                    ));
                }
            }
            CompressorOptions::Xz {
                dictionary_size,
                filters,
            } => {
                if !(XZ_MIN_DICTIONARY..=XZ_MAX_DICTIONARY).contains(&dictionary_size) {
                    return bad(format!(
                        "xz options: dictionary size {dictionary_size} is not in \
                         {XZ_MIN_DICTIONARY}..={XZ_MAX_DICTIONARY}"
                    ));
                }
                if !xz_dictionary_is_storable(dictionary_size) {
                    return bad(format!(
                        "xz options: dictionary size {dictionary_size} is neither 2^n nor \
                         2^n + 2^(n-1)"
                    ));
                }
                if filters & !XZ_FILTER_MASK != 0 {
                    return bad(format!("xz options: unknown filter bits {filters:#x}"));
                }
            }
            CompressorOptions::Lz4 { version, flags } => {
                if version != LZ4_VERSION_LEGACY {
                    return bad(format!(
                        "lz4 options: version {version} is not {LZ4_VERSION_LEGACY}"
                    ));
                }
                if flags & !LZ4_FLAG_HC != 0 {
                    return bad(format!("lz4 options: unknown flag bits {flags:#x}"));
                }
            }
            CompressorOptions::Zstd { level } => {
                if !(1..=22).contains(&level) {
                    return bad(format!("zstd options: level {level} is not in 1..=22"));
                }
            }
            CompressorOptions::Lzo { algorithm, level } => {
                if algorithm > LZO_ALGORITHM_LZO1X_999 {
                    return bad(format!(
                        "lzo options: algorithm {algorithm} is not in 0..=4"
                    ));
                }
                if algorithm == LZO_ALGORITHM_LZO1X_999 {
                    if !(1..=9).contains(&level) {
                        return bad(format!(
                            "lzo options: lzo1x_999 level {level} is not in 1..=9"
                        ));
                    }
                } else if level != 0 {
                    return bad(format!(
                        "lzo options: level {level} given for an algorithm without levels"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Serialize to the on-disk payload (without the metadata block header).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8);
        match *self {
            CompressorOptions::Gzip {
                level,
                window_bits,
                strategies,
            } => {
                out.extend_from_slice(&level.to_le_bytes());
                out.extend_from_slice(&window_bits.to_le_bytes());
                out.extend_from_slice(&strategies.to_le_bytes());
            }
            CompressorOptions::Xz {
                dictionary_size,
                filters,
            } => {
                out.extend_from_slice(&dictionary_size.to_le_bytes());
                out.extend_from_slice(&filters.to_le_bytes());
            }
            CompressorOptions::Lz4 { version, flags } => {
                out.extend_from_slice(&version.to_le_bytes());
                out.extend_from_slice(&flags.to_le_bytes());
            }
            CompressorOptions::Zstd { level } => out.extend_from_slice(&level.to_le_bytes()),
            CompressorOptions::Lzo { algorithm, level } => {
                out.extend_from_slice(&algorithm.to_le_bytes());
                out.extend_from_slice(&level.to_le_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xz_dictionary_forms() {
        for ok in [8192u32, 12288, 16384, 24576, 1 << 20, 3 << 18] {
            assert!(xz_dictionary_is_storable(ok), "{ok}");
        }
        for bad in [0u32, 8193, 5 << 12, 7 << 12, 10000] {
            assert!(!xz_dictionary_is_storable(bad), "{bad}");
        }
    }

    #[test]
    fn round_trip_every_kind() {
        let cases = [
            CompressorOptions::Gzip {
                level: 5,
                window_bits: 12,
                strategies: 0x3,
            },
            CompressorOptions::Xz {
                dictionary_size: 3 << 16,
                filters: 1,
            },
            CompressorOptions::Lz4 {
                version: 1,
                flags: 1,
            },
            CompressorOptions::Zstd { level: 19 },
            CompressorOptions::Lzo {
                algorithm: 4,
                level: 9,
            },
            CompressorOptions::Lzo {
                algorithm: 1,
                level: 0,
            },
        ];
        for opts in cases {
            let bytes = opts.to_bytes();
            let back = CompressorOptions::parse(opts.compressor(), &bytes, 96).unwrap();
            assert_eq!(back, opts);
        }
    }
}
