//! Superblock parsing against real mksquashfs images, and single-field corruptions.
//!
//! Oracle: mksquashfs (squashfs-tools 4.5.1). Skips with a message if it is missing, unless
//! `CI=true`.

use std::path::Path;

use squashbox_format::layout::{field_offset as at, flags, NO_TABLE, SUPERBLOCK_SIZE};
use squashbox_format::{Compressor, Error, Superblock};
use squashbox_testkit::{mksquashfs, require_tool};

/// Tree with 7 inodes: root, 2 dirs, 3 files, 1 symlink.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("hello.txt"), b"hello\n").unwrap();
    std::fs::write(root.join("sub/numbers.txt"), "1\n2\n3\n".repeat(3000)).unwrap();
    std::fs::write(root.join("sub/deeper/empty"), b"").unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("link")).unwrap();
}

fn build(dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let tree = dir.join("tree");
    if !tree.exists() {
        make_tree(&tree);
    }
    let img = dir.join(name);
    mksquashfs(&tree, &img, &[&["-quiet", "-all-root"][..], args].concat());
    std::fs::read(img).unwrap()
}

fn head(image: &[u8]) -> [u8; SUPERBLOCK_SIZE] {
    image[..SUPERBLOCK_SIZE].try_into().unwrap()
}

#[test]
fn parses_mksquashfs_images() {
    if !require_tool("mksquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[&str], u32, Compressor); 4] = [
        ("default", &[], 131_072, Compressor::Gzip),
        (
            "small",
            &["-b", "4096", "-comp", "zstd", "-no-exports"],
            4096,
            Compressor::Zstd,
        ),
        (
            "nofrag",
            &["-b", "1M", "-comp", "lz4", "-no-fragments", "-no-xattrs"],
            1 << 20,
            Compressor::Lz4,
        ),
        (
            "xz",
            &["-comp", "xz", "-b", "65536", "-Xdict-size", "50%"],
            65_536,
            Compressor::Xz,
        ),
    ];
    for (name, args, block_size, comp) in cases {
        let image = build(dir.path(), name, args);
        assert_eq!(image.len() % 4096, 0, "{name}: padded to 4 KiB");
        let sb = Superblock::parse(&head(&image), image.len() as u64)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sb.block_size, block_size, "{name}");
        assert_eq!(sb.compressor, comp, "{name}");
        assert_eq!(sb.inode_count, 7, "{name}");
        assert_eq!(sb.id_count, 1, "{name}: -all-root");
        assert!(sb.bytes_used <= image.len() as u64);
        assert_eq!(sb.to_bytes(), head(&image), "{name}: to_bytes round-trip");
        let exportable = sb.has_flag(flags::EXPORTABLE);
        assert_eq!(exportable, sb.export_table_start != NO_TABLE, "{name}");
        assert_eq!(exportable, !args.contains(&"-no-exports"), "{name}");
        let has_opts = sb.has_flag(flags::COMPRESSOR_OPTIONS);
        assert_eq!(
            has_opts,
            matches!(comp, Compressor::Lz4 | Compressor::Xz),
            "{name}"
        );
        if args.contains(&"-no-fragments") {
            assert!(sb.has_flag(flags::NO_FRAGMENTS));
            assert_eq!(sb.fragment_entry_count, 0);
        }
        // The image length is part of the check: a truncated image is refused.
        assert!(matches!(
            Superblock::parse(&head(&image), sb.bytes_used - 1),
            Err(Error::Corrupt { offset: 40, .. })
        ));
    }
}

/// What a corruption must produce.
#[derive(Debug)]
enum Expect {
    Corrupt(u64),
    Unsupported,
}

fn put(bytes: &mut [u8; SUPERBLOCK_SIZE], offset: u64, value: u64, width: usize) {
    let o = offset as usize;
    bytes[o..o + width].copy_from_slice(&value.to_le_bytes()[..width]);
}

#[test]
fn every_single_field_corruption_is_named() {
    if !require_tool("mksquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = build(dir.path(), "img", &["-comp", "gzip"]);
    let len = image.len() as u64;
    let good = head(&image);
    let sb = Superblock::parse(&good, len).unwrap();
    assert!(sb.fragment_entry_count > 0 && sb.export_table_start != NO_TABLE);
    let cases: Vec<(&str, u64, u64, usize, Expect)> = vec![
        (
            "magic",
            at::MAGIC,
            0x7371_7367,
            4,
            Expect::Corrupt(at::MAGIC),
        ),
        ("major 3", at::VERSION_MAJOR, 3, 2, Expect::Unsupported),
        ("minor 1", at::VERSION_MINOR, 1, 2, Expect::Unsupported),
        ("compressor 0", at::COMPRESSOR, 0, 2, Expect::Unsupported),
        ("compressor 7", at::COMPRESSOR, 7, 2, Expect::Unsupported),
        (
            "block 5000",
            at::BLOCK_SIZE,
            5000,
            4,
            Expect::Corrupt(at::BLOCK_SIZE),
        ),
        (
            "block 2K",
            at::BLOCK_SIZE,
            2048,
            4,
            Expect::Corrupt(at::BLOCK_SIZE),
        ),
        (
            "block 2M",
            at::BLOCK_SIZE,
            2 << 20,
            4,
            Expect::Corrupt(at::BLOCK_SIZE),
        ),
        (
            "block_log",
            at::BLOCK_LOG,
            16,
            2,
            Expect::Corrupt(at::BLOCK_LOG),
        ),
        (
            "inodes 0",
            at::INODE_COUNT,
            0,
            4,
            Expect::Corrupt(at::INODE_COUNT),
        ),
        ("ids 0", at::ID_COUNT, 0, 2, Expect::Corrupt(at::ID_COUNT)),
        (
            "bytes_used > len",
            at::BYTES_USED,
            len + 1,
            8,
            Expect::Corrupt(at::BYTES_USED),
        ),
        (
            "bytes_used tiny",
            at::BYTES_USED,
            10,
            8,
            Expect::Corrupt(at::BYTES_USED),
        ),
        (
            "root ref offset",
            at::ROOT_INODE_REF,
            9000,
            8,
            Expect::Corrupt(at::ROOT_INODE_REF),
        ),
        (
            "root ref block",
            at::ROOT_INODE_REF,
            1 << 40,
            8,
            Expect::Corrupt(at::ROOT_INODE_REF),
        ),
        (
            "inode start 0",
            at::INODE_TABLE_START,
            0,
            8,
            Expect::Corrupt(at::INODE_TABLE_START),
        ),
        (
            "inode after dir",
            at::INODE_TABLE_START,
            sb.directory_table_start + 1,
            8,
            Expect::Corrupt(at::INODE_TABLE_START),
        ),
        (
            "dir after fragments",
            at::DIRECTORY_TABLE_START,
            sb.fragment_table_start + 1,
            8,
            Expect::Corrupt(at::DIRECTORY_TABLE_START),
        ),
        (
            "fragments missing",
            at::FRAGMENT_TABLE_START,
            NO_TABLE,
            8,
            Expect::Corrupt(at::FRAGMENT_TABLE_START),
        ),
        (
            "fragments past export",
            at::FRAGMENT_TABLE_START,
            sb.export_table_start,
            8,
            Expect::Corrupt(at::FRAGMENT_TABLE_START),
        ),
        (
            "export past ids",
            at::EXPORT_TABLE_START,
            sb.id_table_start,
            8,
            Expect::Corrupt(at::EXPORT_TABLE_START),
        ),
        (
            "export missing but flagged",
            at::EXPORT_TABLE_START,
            NO_TABLE,
            8,
            Expect::Corrupt(at::EXPORT_TABLE_START),
        ),
        (
            "ids missing",
            at::ID_TABLE_START,
            NO_TABLE,
            8,
            Expect::Corrupt(at::ID_TABLE_START),
        ),
        (
            "ids at end",
            at::ID_TABLE_START,
            sb.bytes_used,
            8,
            Expect::Corrupt(at::ID_TABLE_START),
        ),
        (
            "xattr header past end",
            at::XATTR_ID_TABLE_START,
            sb.id_table_start + 8,
            8,
            Expect::Corrupt(at::XATTR_ID_TABLE_START),
        ),
    ];
    for (name, offset, value, width, expect) in cases {
        let mut bytes = good;
        put(&mut bytes, offset, value, width);
        let result = Superblock::parse(&bytes, len);
        match (&expect, &result) {
            (Expect::Corrupt(o), Err(Error::Corrupt { offset, what })) if o == offset => {
                assert!(what.starts_with("superblock:"), "{name}: {what}");
            }
            (Expect::Unsupported, Err(Error::Unsupported(_))) => {}
            _ => panic!("{name}: expected {expect:?}, got {result:?}"),
        }
    }
}

#[test]
fn random_and_mutated_superblocks_never_panic() {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut base = [0u8; SUPERBLOCK_SIZE];
    base[..4].copy_from_slice(b"hsqs");
    put(&mut base, at::VERSION_MAJOR, 4, 2);
    put(&mut base, at::COMPRESSOR, 1, 2);
    put(&mut base, at::BLOCK_SIZE, 131_072, 4);
    put(&mut base, at::BLOCK_LOG, 17, 2);
    for _ in 0..100_000 {
        let mut bytes = base;
        for _ in 0..(1 + next() % 6) {
            let i = (next() % SUPERBLOCK_SIZE as u64) as usize;
            bytes[i] = next() as u8;
        }
        if let Ok(sb) = Superblock::parse(&bytes, next() % (1 << 20)) {
            assert_eq!(sb.to_bytes(), bytes);
        }
    }
}
