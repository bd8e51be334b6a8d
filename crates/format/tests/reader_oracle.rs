//! The reader against images made by Debian's mksquashfs from known source trees.

mod reader_common;

use std::sync::Arc;

use reader_common::*;
use squashbox_format::reader::MAX_SYMLINK_TARGET;
use squashbox_format::{Archive, Compressor, Error, FileType, InodeKind};

/// Build the rich tree, make an image with `args`, and compare everything.
fn roundtrip(args: &[&str]) -> (Archive, Compared) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let tree = build_rich_tree(&src);
    let img = dir.path().join("image.sqfs");
    mksquashfs(&src, &img, args);
    let archive = Archive::open_path(&img).expect("open");
    let no_xattrs = args.contains(&"-no-xattrs");
    let compared = compare_tree(&archive, &src, !no_xattrs);
    if !no_xattrs && tree.xattrs_set > 0 {
        assert!(
            compared.xattrs >= tree.xattrs_set,
            "xattrs were not stored: {compared:?}"
        );
    }
    (archive, compared)
}

#[test]
fn gzip_default_options() {
    if !require_tool("mksquashfs") {
        return;
    }
    let (archive, compared) = roundtrip(&[]);
    assert_eq!(archive.superblock().compressor, Compressor::Gzip);
    assert!(compared.files > 20, "{compared:?}");
}

#[test]
fn zstd_small_blocks() {
    if !require_tool("mksquashfs") {
        return;
    }
    let (archive, _) = roundtrip(&["-comp", "zstd", "-b", "4096"]);
    assert_eq!(archive.superblock().block_size, 4096);
}

#[test]
fn xz_with_options_large_blocks() {
    if !require_tool("mksquashfs") {
        return;
    }
    let (archive, _) = roundtrip(&["-comp", "xz", "-b", "1M", "-Xbcj", "x86"]);
    assert!(archive.compressor_options().is_some());
}

#[test]
fn lz4_always_has_options() {
    if !require_tool("mksquashfs") {
        return;
    }
    let (archive, _) = roundtrip(&["-comp", "lz4", "-Xhc"]);
    assert!(archive.compressor_options().is_some());
}

#[test]
fn lzo_images() {
    if !require_tool("mksquashfs") {
        return;
    }
    roundtrip(&["-comp", "lzo"]);
}

#[test]
fn uncompressed_everything() {
    if !require_tool("mksquashfs") {
        return;
    }
    roundtrip(&["-noI", "-noD", "-noF", "-noX"]);
}

#[test]
fn no_fragments() {
    if !require_tool("mksquashfs") {
        return;
    }
    let (archive, _) = roundtrip(&["-no-fragments"]);
    assert_eq!(archive.superblock().fragment_entry_count, 0);
}

#[test]
fn always_fragments_and_no_duplicates() {
    if !require_tool("mksquashfs") {
        return;
    }
    roundtrip(&["-always-use-fragments", "-no-duplicates"]);
}

#[test]
fn no_xattrs() {
    if !require_tool("mksquashfs") {
        return;
    }
    roundtrip(&["-no-xattrs"]);
}

#[test]
fn without_export_table() {
    if !require_tool("mksquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("a/f"), b"x").unwrap();
    let img = dir.path().join("image.sqfs");
    mksquashfs(&src, &img, &["-no-exports"]);
    let archive = Archive::open_path(&img).unwrap();
    assert!(matches!(
        archive.inode_by_number(1),
        Err(Error::Unsupported(_))
    ));
    assert_eq!(
        archive.read_dir(&archive.root().unwrap()).unwrap().count(),
        1
    );
}

#[test]
fn sparse_files_read_zeros_and_are_not_allocated() {
    if !require_tool("mksquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_rich_tree(&src);
    let img = dir.path().join("image.sqfs");
    mksquashfs(&src, &img, &[]);
    let archive = Archive::open_path(&img).unwrap();
    let zeros = archive.lookup_path("zeros").unwrap();
    assert_eq!(zeros.size(), 3 * 131072);
    assert_eq!(archive.allocated_bytes(&zeros).unwrap(), 0);
    let sparse = archive.lookup_path("/sparse").unwrap();
    let allocated = archive.allocated_bytes(&sparse).unwrap();
    assert!(
        allocated < sparse.size() / 2,
        "{allocated} of {}",
        sparse.size()
    );
    if let InodeKind::File { sparse: holes, .. } = sparse.kind {
        assert!(holes > 0, "mksquashfs records sparse bytes");
    }
    let mut buf = vec![1u8; 1000];
    assert_eq!(archive.read_at(&sparse, 1000, &mut buf).unwrap(), 1000);
    assert!(buf.iter().all(|&b| b == 0));

    // is_sparse_block: every block of the all-zero file is sparse; for the file with data
    // islands, sparse blocks read as zeros and the stored blocks account for exactly the
    // allocated bytes (the tail, shorter than a block, is never a sparse block).
    let bs = u64::from(archive.superblock().block_size);
    for i in 0..3 {
        assert!(
            archive.is_sparse_block(&zeros, i).unwrap(),
            "zeros block {i}"
        );
    }
    let full_blocks = sparse.size() / bs;
    let mut stored = sparse.size() % bs;
    let mut sparse_seen = 0;
    let mut block = vec![1u8; bs as usize];
    for i in 0..full_blocks {
        if archive.is_sparse_block(&sparse, i).unwrap() {
            sparse_seen += 1;
            assert_eq!(
                archive.read_at(&sparse, i * bs, &mut block).unwrap(),
                block.len()
            );
            assert!(
                block.iter().all(|&b| b == 0),
                "sparse block {i} reads as zeros"
            );
        } else {
            stored += bs;
        }
    }
    assert!(sparse_seen > 0, "the islands file has sparse blocks");
    assert_eq!(
        stored, allocated,
        "stored blocks account for allocated bytes"
    );
    assert!(!archive.is_sparse_block(&sparse, full_blocks + 5).unwrap());
    assert!(archive
        .is_sparse_block(&archive.root().unwrap(), 0)
        .is_err());
}

#[test]
fn path_lookup_rules() {
    if !require_tool("mksquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_rich_tree(&src);
    let img = dir.path().join("image.sqfs");
    mksquashfs(&src, &img, &[]);
    let archive = Archive::open_path(&img).unwrap();
    let root = archive.root().unwrap();
    assert_eq!(archive.lookup_path("").unwrap(), root);
    assert_eq!(archive.lookup_path("/").unwrap(), root);
    assert_eq!(archive.lookup_path("/dir/..").unwrap(), root);
    assert_eq!(
        archive.lookup_path("dir/./sub//text_1").unwrap(),
        archive.lookup_path("/dir/sub/text_1").unwrap()
    );
    assert!(matches!(
        archive.lookup_path("dir/missing"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        archive.lookup_path("dir/rand_1/x"),
        Err(Error::WrongType { .. })
    ));
    // Symlinks are not followed.
    let link = archive.lookup_path("dir/sub/sym_dir").unwrap();
    assert_eq!(link.file_type, FileType::Symlink);
    assert_eq!(archive.read_link(&link).unwrap(), b"subsub");
    assert!(matches!(
        archive.lookup_path("dir/sub/sym_dir/x"),
        Err(Error::WrongType { .. })
    ));
    let long = archive.lookup_path("sym_long").unwrap();
    assert!(archive.read_link(&long).unwrap().len() <= MAX_SYMLINK_TARGET as usize);
    // Wrong-type calls are typed errors.
    assert!(matches!(
        archive.read_link(&root),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        archive.read_at(&root, 0, &mut [0u8; 4]),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        archive.read_dir(&link),
        Err(Error::WrongType { .. })
    ));
    // Lookups of names that cannot exist are simply absent.
    for bad in [&b""[..], b".", b"..", b"a/b"] {
        assert!(archive.lookup(&root, bad).unwrap().is_none());
    }
    // Resuming a small (unindexed) listing after every entry yields exactly the rest.
    let dir = archive.lookup_path("dir").unwrap();
    let all: Vec<_> = archive
        .read_dir(&dir)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(all.len() > 10);
    for (i, entry) in all.iter().enumerate() {
        let rest: Vec<_> = archive
            .read_dir_from(&dir, entry.next_position)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rest, all[i + 1..], "resume after {i}");
    }
    // Reading past the end gives 0.
    let f = archive.lookup_path("dir/rand_100").unwrap();
    assert_eq!(archive.read_at(&f, 100, &mut [0u8; 8]).unwrap(), 0);
    assert_eq!(archive.read_at(&f, u64::MAX, &mut [0u8; 8]).unwrap(), 0);
}

#[test]
fn concurrent_readers_agree() {
    if !require_tool("mksquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..200 {
        std::fs::write(
            src.join(format!("f{i:03}")),
            pseudo_random(1000 + i * 997, i as u64),
        )
        .unwrap();
    }
    let img = dir.path().join("image.sqfs");
    mksquashfs(&src, &img, &["-b", "4096"]);
    // Small caches force constant eviction while threads race.
    let options = squashbox_format::OpenOptions {
        metadata_cache_bytes: 64 << 10,
        data_cache_bytes: 64 << 10,
    };
    let archive =
        Arc::new(Archive::open_with(std::fs::File::open(&img).unwrap(), options).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let archive = Arc::clone(&archive);
            let src = src.clone();
            std::thread::spawn(move || {
                for i in (0..200).map(|i| (i * 7 + t * 13) % 200) {
                    let name = format!("f{i:03}");
                    let inode = archive.lookup_path(&name).unwrap();
                    let data = read_all(&archive, &inode, 1500 + t * 100);
                    assert!(data == std::fs::read(src.join(&name)).unwrap(), "{name}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(archive.stats().cached_bytes <= 128 << 10);
}
