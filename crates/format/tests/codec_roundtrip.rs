//! Round-trip every writable codec at several sizes and data kinds, and check the writing
//! configuration (levels, options block) matches what mksquashfs would store.

use squashbox_format::compress::{Codec, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL};
use squashbox_format::{Compressor, CompressorOptions, Error};

const WRITABLE: [Compressor; 5] = [
    Compressor::Gzip,
    Compressor::Lzo,
    Compressor::Xz,
    Compressor::Lz4,
    Compressor::Zstd,
];

/// Deterministic pseudo-random bytes (xorshift), incompressible.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Text-like, compressible bytes.
fn compressible_bytes(len: usize) -> Vec<u8> {
    let words = ["squash", "box ", "block ", "inode\n", "fragment ", "zstd "];
    let mut out = Vec::with_capacity(len);
    let mut i = 0usize;
    while out.len() < len {
        out.extend_from_slice(words[(i * 7 + i / 5) % words.len()].as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

fn round_trip(codec: &Codec, data: &[u8]) {
    let mut packed = Vec::new();
    let smaller = codec.compress(data, &mut packed).expect("compress");
    assert_eq!(smaller, packed.len() < data.len());
    let mut out = vec![0u8; data.len()];
    let n = codec
        .decompress(&packed, &mut out, 0)
        .unwrap_or_else(|e| panic!("{} len {}: {e}", codec.compressor(), data.len()));
    assert_eq!(n, data.len(), "{}", codec.compressor());
    assert!(
        out == data,
        "{} len {} differs",
        codec.compressor(),
        data.len()
    );
    if !data.is_empty() {
        // One byte less room than needed must be a typed error, not a truncated success.
        let mut short = vec![0u8; data.len() - 1];
        match codec.decompress(&packed, &mut short, 1234) {
            Err(Error::Decompress { offset, .. }) => assert_eq!(offset, 1234),
            other => panic!(
                "{}: expected Decompress error, got {other:?}",
                codec.compressor()
            ),
        }
    }
}

#[test]
fn every_codec_round_trips_every_size() {
    let sizes = [0usize, 1, 2, 100, 8192, 131_072, 1 << 20];
    for comp in WRITABLE {
        for block_size in [4096u32, 131_072, 1 << 20] {
            let codec = Codec::for_writing(comp, None, block_size).unwrap();
            for &len in &sizes {
                if len > block_size as usize && len != 8192 {
                    continue; // blocks are never larger than the block size (metadata: 8 KiB)
                }
                round_trip(&codec, &random_bytes(len, len as u64 + 7));
                round_trip(&codec, &compressible_bytes(len));
            }
        }
    }
}

#[test]
fn compressible_data_shrinks_and_random_data_does_not() {
    for comp in WRITABLE {
        let codec = Codec::for_writing(comp, None, 131_072).unwrap();
        let mut packed = Vec::new();
        assert!(codec
            .compress(&compressible_bytes(131_072), &mut packed)
            .unwrap());
        assert!(packed.len() < 131_072 / 4, "{comp}: {}", packed.len());
        assert!(
            !codec
                .compress(&random_bytes(131_072, 3), &mut packed)
                .unwrap(),
            "{comp}"
        );
    }
}

#[test]
fn explicit_levels_round_trip() {
    let data = compressible_bytes(100_000);
    for (comp, levels) in [
        (Compressor::Gzip, vec![1, 5, 9]),
        (Compressor::Zstd, vec![1, 3, 19, 22]),
        (Compressor::Xz, vec![0, 6, 9]),
    ] {
        for level in levels {
            let codec = Codec::for_writing(comp, Some(level), 131_072).unwrap();
            round_trip(&codec, &data);
        }
    }
}

#[test]
fn invalid_writing_configurations_are_rejected() {
    let bad_level = |c, l| Codec::for_writing(c, Some(l), 131_072);
    assert!(matches!(
        bad_level(Compressor::Gzip, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        bad_level(Compressor::Gzip, 10),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        bad_level(Compressor::Zstd, 23),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        bad_level(Compressor::Xz, 10),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        bad_level(Compressor::Lz4, 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        bad_level(Compressor::Lzo, 8),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Codec::for_writing(Compressor::Lzma, None, 131_072),
        Err(Error::Unsupported(_))
    ));
    for block_size in [0u32, 2048, 4095, 100_000, 2 << 20] {
        assert!(matches!(
            Codec::for_writing(Compressor::Zstd, None, block_size),
            Err(Error::InvalidArgument(_))
        ));
    }
}

#[test]
fn options_block_written_only_when_mksquashfs_would() {
    let opts = |c, l| {
        Codec::for_writing(c, l, 131_072)
            .unwrap()
            .options_to_write()
    };
    assert_eq!(opts(Compressor::Gzip, None), None);
    assert_eq!(opts(Compressor::Gzip, Some(DEFAULT_GZIP_LEVEL)), None);
    assert_eq!(
        opts(Compressor::Gzip, Some(4)),
        Some(CompressorOptions::Gzip {
            level: 4,
            window_bits: 15,
            strategies: 0
        })
    );
    assert_eq!(opts(Compressor::Zstd, None), None);
    assert_eq!(opts(Compressor::Zstd, Some(DEFAULT_ZSTD_LEVEL)), None);
    assert_eq!(
        opts(Compressor::Zstd, Some(3)),
        Some(CompressorOptions::Zstd { level: 3 })
    );
    assert_eq!(opts(Compressor::Xz, Some(9)), None);
    assert_eq!(opts(Compressor::Lzo, None), None);
    assert_eq!(
        opts(Compressor::Lz4, None),
        Some(CompressorOptions::Lz4 {
            version: 1,
            flags: 0
        })
    );
    // Whatever is written must parse back for its compressor.
    for comp in WRITABLE {
        if let Some(o) = opts(comp, comp.default_level().map(|l| l - 1)) {
            let parsed = CompressorOptions::parse(comp, &o.to_bytes(), 96).unwrap();
            assert_eq!(parsed, o);
        }
    }
}

#[test]
fn names_and_ids_round_trip() {
    for comp in Compressor::ALL {
        assert_eq!(Compressor::from_id(comp.id()).unwrap(), comp);
        assert_eq!(Compressor::from_name(comp.name()), Some(comp));
    }
    assert!(Compressor::from_id(0).is_err());
    assert!(Compressor::from_id(7).is_err());
    assert_eq!(Compressor::from_name("gz"), None);
}
