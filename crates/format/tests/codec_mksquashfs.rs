//! Decode real images made by Debian's `mksquashfs` (squashfs-tools 4.5.1) with every
//! compressor: superblock, compressor options and the first inode-table metadata block.
//!
//! Oracle: mksquashfs itself. If it is missing the tests skip with a message, unless `CI=true`,
//! in which case they fail.

use std::path::{Path, PathBuf};

use squashbox_format::compress::Codec;
use squashbox_format::layout::{flags, METADATA_BLOCK_SIZE, SUPERBLOCK_SIZE};
use squashbox_format::{Compressor, CompressorOptions, Superblock};
use squashbox_testkit::require_tool;

/// A small tree with a few files, a subdirectory and a symlink.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("hello.txt"), b"hello, squashfs\n").unwrap();
    let numbers: String = (0..5000).map(|i| format!("{i}\n")).collect();
    std::fs::write(root.join("sub/numbers.txt"), numbers).unwrap();
    let noise: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("sub/deeper/noise.bin"), noise).unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link")).unwrap();
}

/// Build an image of `tree` with `mksquashfs ... -comp <comp> <extra>` and return its bytes.
fn mksquashfs(tree: &Path, out: &Path, comp: &str, extra: &[&str]) -> Vec<u8> {
    squashbox_testkit::mksquashfs(tree, out, &[&["-comp", comp, "-quiet"][..], extra].concat());
    std::fs::read(out).unwrap()
}

/// Read the metadata block at `offset`: returns (payload bytes, bytes consumed).
fn read_metadata_block(image: &[u8], offset: usize, codec: &Codec) -> (Vec<u8>, usize) {
    let header = u16::from_le_bytes([image[offset], image[offset + 1]]);
    let stored = usize::from(header & 0x7fff);
    let raw = &image[offset + 2..offset + 2 + stored];
    if header & 0x8000 != 0 {
        return (raw.to_vec(), 2 + stored);
    }
    let mut out = vec![0u8; METADATA_BLOCK_SIZE];
    let n = codec
        .decompress(raw, &mut out, offset as u64)
        .unwrap_or_else(|e| panic!("{}: {e}", codec.compressor()));
    out.truncate(n);
    (out, 2 + stored)
}

struct Parsed {
    superblock: Superblock,
    options: Option<CompressorOptions>,
    codec: Codec,
}

fn parse_image(image: &[u8]) -> Parsed {
    let sb_bytes: &[u8; SUPERBLOCK_SIZE] = image[..SUPERBLOCK_SIZE].try_into().unwrap();
    let superblock = Superblock::parse(sb_bytes, image.len() as u64).expect("superblock parses");
    let options = if superblock.has_flag(flags::COMPRESSOR_OPTIONS) {
        let header = u16::from_le_bytes([image[96], image[97]]);
        assert!(header & 0x8000 != 0, "options block is stored uncompressed");
        let len = usize::from(header & 0x7fff);
        Some(
            CompressorOptions::parse(superblock.compressor, &image[98..98 + len], 96)
                .expect("options parse"),
        )
    } else {
        None
    };
    let codec = Codec::for_reading(
        superblock.compressor,
        options.clone(),
        superblock.block_size,
    )
    .expect("codec for reading");
    Parsed {
        superblock,
        options,
        codec,
    }
}

/// Check `block` starts with a plausible inode header: type 1..=14, inode number in range.
fn assert_plausible_inode(block: &[u8], inode_count: u32, id_count: u16) {
    assert!(block.len() >= 16, "inode block too short: {}", block.len());
    let kind = u16::from_le_bytes([block[0], block[1]]);
    let mode = u16::from_le_bytes([block[2], block[3]]);
    let uid_idx = u16::from_le_bytes([block[4], block[5]]);
    let gid_idx = u16::from_le_bytes([block[6], block[7]]);
    let number = u32::from_le_bytes(block[12..16].try_into().unwrap());
    assert!((1..=14).contains(&kind), "inode type {kind}");
    assert!(mode <= 0o7777, "permissions {mode:o}");
    assert!(
        uid_idx < id_count && gid_idx < id_count,
        "id indexes {uid_idx}/{gid_idx}"
    );
    assert!((1..=inode_count).contains(&number), "inode number {number}");
}

fn check_image(image: &[u8], expect: Compressor) -> Parsed {
    let parsed = parse_image(image);
    let sb = &parsed.superblock;
    assert_eq!(sb.compressor, expect);
    assert_eq!(
        sb.to_bytes().as_slice(),
        &image[..SUPERBLOCK_SIZE],
        "superblock round-trip"
    );
    let (block, _) = read_metadata_block(image, sb.inode_table_start as usize, &parsed.codec);
    assert_plausible_inode(&block, sb.inode_count, sb.id_count);
    parsed
}

fn tempdir_with_tree() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree);
    (dir, tree)
}

#[test]
fn every_compressor_reads_mksquashfs_images() {
    if !require_tool("mksquashfs") {
        return;
    }
    let (dir, tree) = tempdir_with_tree();
    for comp in Compressor::ALL {
        let img = dir.path().join(format!("img.{}", comp.name()));
        let image = mksquashfs(&tree, &img, comp.name(), &[]);
        let parsed = check_image(&image, comp);
        // lz4 always stores options; the others store none at their defaults.
        match comp {
            Compressor::Lz4 => assert_eq!(
                parsed.options,
                Some(CompressorOptions::Lz4 {
                    version: 1,
                    flags: 0
                })
            ),
            _ => assert_eq!(parsed.options, None, "{comp}"),
        }
    }
}

/// Decode every metadata block from `start` up to exactly `end`; returns the concatenation.
fn read_metadata_run(image: &[u8], start: u64, end: u64, codec: &Codec) -> Vec<u8> {
    let mut pos = start as usize;
    let mut all = Vec::new();
    while pos < end as usize {
        let (block, used) = read_metadata_block(image, pos, codec);
        assert!(!block.is_empty() && block.len() <= METADATA_BLOCK_SIZE);
        all.extend_from_slice(&block);
        pos += used;
    }
    assert_eq!(
        pos as u64, end,
        "metadata blocks end exactly at the next table"
    );
    all
}

/// Options mksquashfs stores for non-default settings, and decoding under them.
#[test]
fn mksquashfs_option_variants_parse_and_decode() {
    if !require_tool("mksquashfs") {
        return;
    }
    let (dir, tree) = tempdir_with_tree();
    let cases: Vec<(Compressor, Vec<&str>, CompressorOptions)> = vec![
        (
            Compressor::Gzip,
            vec![
                "-Xcompression-level",
                "5",
                "-Xwindow-size",
                "12",
                "-Xstrategy",
                "filtered,huffman_only",
            ],
            CompressorOptions::Gzip {
                level: 5,
                window_bits: 12,
                strategies: 0b110,
            },
        ),
        (
            Compressor::Xz,
            vec!["-Xbcj", "x86,arm", "-Xdict-size", "50%"],
            CompressorOptions::Xz {
                dictionary_size: 65_536,
                filters: 0b1001,
            },
        ),
        (
            Compressor::Lz4,
            vec!["-Xhc"],
            CompressorOptions::Lz4 {
                version: 1,
                flags: 1,
            },
        ),
        (
            Compressor::Zstd,
            vec!["-Xcompression-level", "19"],
            CompressorOptions::Zstd { level: 19 },
        ),
        (
            Compressor::Lzo,
            vec!["-Xalgorithm", "lzo1x_1"],
            CompressorOptions::Lzo {
                algorithm: 0,
                level: 0,
            },
        ),
        (
            Compressor::Lzo,
            vec!["-Xalgorithm", "lzo1x_999", "-Xcompression-level", "9"],
            CompressorOptions::Lzo {
                algorithm: 4,
                level: 9,
            },
        ),
    ];
    for (i, (comp, args, expected)) in cases.into_iter().enumerate() {
        let img = dir.path().join(format!("variant{i}"));
        let image = mksquashfs(&tree, &img, comp.name(), &args);
        let parsed = check_image(&image, comp);
        assert_eq!(parsed.options, Some(expected), "{comp} {args:?}");
        let sb = &parsed.superblock;
        let inodes = read_metadata_run(
            &image,
            sb.inode_table_start,
            sb.directory_table_start,
            &parsed.codec,
        );
        assert!(inodes.len() >= 7 * 16, "{comp}: all 7 inodes decoded");
    }
}

/// A file mixing x86 code, text, zeros and noise, so blocks are compressed, stored raw and
/// sparse, and BCJ filters have something to win on.
fn mixed_file_contents() -> Vec<u8> {
    let mut data = std::fs::read("/usr/bin/ls")
        .or_else(|_| std::fs::read("/bin/sh"))
        .unwrap_or_default();
    data.truncate(150_000);
    data.extend((0..60_000).flat_map(|i: u32| format!("row {i} {}\n", i % 13).into_bytes()));
    let pad = 65_536 - data.len() % 65_536;
    data.extend(std::iter::repeat_n(0u8, pad + 65_536)); // at least one all-zero block
    let mut x = 0x1234_5678u32;
    data.extend((0..100_000).map(|_| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    }));
    data
}

/// Data-block oracle: decode every block of a file written by mksquashfs and compare with
/// the source bytes, for every compressor (xz also with BCJ filters).
#[test]
fn data_blocks_of_mksquashfs_files_match_the_source() {
    if !require_tool("mksquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let contents = mixed_file_contents();
    std::fs::write(tree.join("data.bin"), &contents).unwrap();
    let mut cases: Vec<(Compressor, Vec<&str>)> =
        Compressor::ALL.iter().map(|&c| (c, vec![])).collect();
    cases.push((Compressor::Xz, vec!["-Xbcj", "x86"]));
    cases.push((Compressor::Lz4, vec!["-Xhc"]));
    for (comp, extra) in cases {
        let img = dir.path().join(format!("data.{}", comp.name()));
        let mut args = vec!["-b", "65536", "-no-fragments"];
        args.extend(&extra);
        let image = mksquashfs(&tree, &img, comp.name(), &args);
        let parsed = check_image(&image, comp);
        let sb = &parsed.superblock;
        let (inode, _) = read_metadata_block(&image, sb.inode_table_start as usize, &parsed.codec);
        // The first inode is the file's basic regular-file inode (type 2).
        assert_eq!(u16::from_le_bytes([inode[0], inode[1]]), 2, "{comp}");
        let word = |at: usize| u32::from_le_bytes(inode[at..at + 4].try_into().unwrap());
        let (mut pos, file_size) = (u64::from(word(16)), word(28) as usize);
        assert_eq!(file_size, contents.len());
        let bs = sb.block_size as usize;
        let mut out = vec![0u8; bs];
        let (mut raw, mut sparse, mut bcj) = (0, 0, 0);
        for (i, chunk) in contents.chunks(bs).enumerate() {
            let size_word = word(32 + 4 * i);
            let stored = (size_word & 0x00ff_ffff) as usize;
            if size_word == 0 {
                assert!(chunk.iter().all(|&b| b == 0), "{comp}: sparse block {i}");
                sparse += 1;
                continue;
            }
            let bytes = &image[pos as usize..pos as usize + stored];
            if size_word & (1 << 24) != 0 {
                assert_eq!(bytes, chunk, "{comp}: raw block {i}");
                raw += 1;
            } else {
                let n = parsed.codec.decompress(bytes, &mut out, pos).unwrap();
                assert_eq!(&out[..n], chunk, "{comp}: block {i}");
                // xz block header: flags byte bit 0..1 = number of filters - 1.
                if comp == Compressor::Xz && bytes[13] & 3 == 1 {
                    bcj += 1;
                }
            }
            pos += stored as u64;
        }
        assert!(
            raw >= 1 && sparse >= 1,
            "{comp}: raw {raw}, sparse {sparse}"
        );
        if extra.contains(&"x86") {
            assert!(
                bcj >= 1,
                "mksquashfs chose a BCJ filter for at least one block"
            );
        }
    }
}
