//! Fuzz superblock and compressor-options parsing.
//!
//! Input layout: 96 superblock bytes, 8 bytes of image length (little-endian), then an
//! options payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use squashbox_format::compress::Codec;
use squashbox_format::layout::SUPERBLOCK_SIZE;
use squashbox_format::{CompressorOptions, Superblock};

fuzz_target!(|data: &[u8]| {
    if data.len() < SUPERBLOCK_SIZE + 8 {
        return;
    }
    let (head, rest) = data.split_at(SUPERBLOCK_SIZE);
    let head: &[u8; SUPERBLOCK_SIZE] = head.try_into().expect("96 bytes");
    let image_len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
    let options_payload = &rest[8..];
    let Ok(sb) = Superblock::parse(head, image_len) else {
        return;
    };
    // Everything parse accepts must encode back to the same bytes and obey its invariants.
    assert_eq!(&sb.to_bytes(), head);
    assert!(sb.bytes_used <= image_len);
    assert!(sb.inode_table_start < sb.directory_table_start);
    assert_eq!(1u32 << sb.block_log, sb.block_size);
    if let Ok(options) = CompressorOptions::parse(sb.compressor, options_payload, 96) {
        assert_eq!(options.to_bytes(), options_payload);
        let _ = Codec::for_reading(sb.compressor, Some(options), sb.block_size);
    }
});
