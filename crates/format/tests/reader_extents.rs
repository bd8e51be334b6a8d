//! `Archive::data_extent`: the extents of a file tile it exactly, `Stored` extents are the
//! file's bytes verbatim in the image file, `Sparse` ones are zeros, and every byte agrees with
//! `read_at`, also when a walk starts inside a block or is capped short.

mod reader_common;

use std::os::unix::fs::FileExt;

use reader_common::*;
use squashbox_format::{Archive, DataExtent};

const BLOCK: usize = 128 * 1024;

#[test]
fn extents_tile_files_and_stored_ones_are_the_image_bytes() {
    if !require_tool("mksquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    // Incompressible, then compressible, then a hole, then incompressible blocks and a short
    // last block (mksquashfs keeps the tail of a large file in a block of its own).
    let mut mixed = pseudo_random(3 * BLOCK, 1);
    mixed.extend(std::iter::repeat_n(b'a', 2 * BLOCK));
    mixed.extend(std::iter::repeat_n(0u8, 2 * BLOCK));
    mixed.extend(pseudo_random(2 * BLOCK, 2));
    mixed.extend(pseudo_random(5000, 3));
    std::fs::write(src.join("mixed"), &mixed).unwrap();
    // A small file lives in a fragment block: encoded, even if stored uncompressed there.
    let small = pseudo_random(5000, 4);
    std::fs::write(src.join("small"), &small).unwrap();
    let img = dir.path().join("image.sqfs");
    mksquashfs(&src, &img, &[]);
    let archive = Archive::open_path(&img).unwrap();
    let image = std::fs::File::open(&img).unwrap();
    assert!(
        archive.source_fd().is_some(),
        "a file-backed archive exposes its fd"
    );
    let file = archive.lookup_path("mixed").unwrap();

    for (start, cap) in [
        (0u64, u64::MAX),
        (1000, u64::MAX),
        (BLOCK as u64 + 17, 300_000),
    ] {
        let mut kinds = Vec::new();
        let mut pos = start;
        while pos < mixed.len() as u64 {
            let extent = archive.data_extent(&file, pos, cap).unwrap();
            let len = extent.len();
            assert!(len > 0 && len <= cap, "extent at {pos}: {extent:?}");
            let want = &mixed[pos as usize..(pos + len) as usize];
            let mut got = vec![0u8; len as usize];
            match extent {
                DataExtent::Stored { image_offset, .. } => {
                    image.read_exact_at(&mut got, image_offset).unwrap();
                    kinds.push('S');
                }
                DataExtent::Sparse { .. } => kinds.push('0'),
                DataExtent::Encoded { .. } => {
                    assert_eq!(archive.read_at(&file, pos, &mut got).unwrap(), got.len());
                    kinds.push('E');
                }
            }
            assert!(got == want, "bytes of {extent:?} at {pos} (start {start})");
            pos += len;
        }
        assert_eq!(pos, mixed.len() as u64, "extents end exactly at the end");
        if start == 0 && cap == u64::MAX {
            // Three stored blocks back to back form one extent.
            assert_eq!(kinds, ['S', 'E', '0', 'S'], "extent kinds");
        }
    }
    assert!(archive
        .data_extent(&file, mixed.len() as u64, 10)
        .unwrap()
        .is_empty());
    let small_inode = archive.lookup_path("small").unwrap();
    assert_eq!(
        archive.data_extent(&small_inode, 10, u64::MAX).unwrap(),
        DataExtent::Encoded { len: 4990 }
    );
}
