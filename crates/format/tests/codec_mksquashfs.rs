//! Decode real images made by Debian's `mksquashfs` (squashfs-tools 4.5.1) with every
//! compressor: superblock, compressor options and the first inode-table metadata block.
//!
//! Oracle: mksquashfs itself. If it is missing the tests skip with a message, unless `CI=true`,
//! in which case they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use squashbox_format::compress::Codec;
use squashbox_format::layout::{flags, METADATA_BLOCK_SIZE, SUPERBLOCK_SIZE};
use squashbox_format::{Compressor, CompressorOptions, Superblock};

/// True if mksquashfs is usable; otherwise prints why (and panics under CI=true).
fn have_mksquashfs() -> bool {
    let ok = Command::new("mksquashfs")
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("mksquashfs is required when CI=true");
        }
        eprintln!("SKIP: mksquashfs not found");
    }
    ok
}

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

/// Build an image of `tree` with `mksquashfs ... -comp <comp> <extra>`.
fn mksquashfs(tree: &Path, out: &Path, comp: &str, extra: &[&str]) -> Vec<u8> {
    let status = Command::new("mksquashfs")
        .arg(tree)
        .arg(out)
        .args(["-comp", comp, "-noappend", "-quiet", "-no-progress"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run mksquashfs");
    assert!(status.success(), "mksquashfs -comp {comp} {extra:?} failed");
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
    if !have_mksquashfs() {
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
