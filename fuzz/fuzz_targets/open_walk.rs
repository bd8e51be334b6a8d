//! Open an arbitrary image from memory and exercise the whole reader: walk every entry (the
//! walk itself guards against directory loops), read every file, symlink and xattr set, look
//! names up, resume listings, and resolve inode numbers. Any `Ok` or `Err` is fine; a panic, a
//! hang or an out-of-memory abort is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;
use squashbox_format::{Archive, FileType, OpenOptions};

/// Total file bytes read per input, so a huge sparse file cannot stall the fuzzer.
const READ_BUDGET: u64 = 4 << 20;

fuzz_target!(|data: &[u8]| {
    let options = OpenOptions {
        metadata_cache_bytes: 256 << 10,
        data_cache_bytes: 1 << 20,
    };
    let Ok(archive) = Archive::open_with(data.to_vec(), options) else {
        return;
    };
    let mut budget = READ_BUDGET;
    let mut buf = vec![0u8; 65536];
    for item in archive.walk() {
        let Ok(item) = item else {
            break;
        };
        let inode = item.inode;
        let _ = archive.xattrs(&inode);
        let _ = archive.inode_by_number(inode.number);
        match inode.file_type {
            FileType::Regular => {
                let _ = archive.allocated_bytes(&inode);
                let mut offset = 0u64;
                while budget > 0 {
                    match archive.read_at(&inode, offset, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            offset += n as u64;
                            budget = budget.saturating_sub(n as u64);
                        }
                    }
                }
                // A random-access read near the end.
                let _ = archive.read_at(&inode, inode.size().saturating_sub(10), &mut buf[..64]);
                // Extents advance and stay inside the file.
                let mut pos = 0u64;
                for _ in 0..256 {
                    match archive.data_extent(&inode, pos, u64::MAX) {
                        Ok(e) if !e.is_empty() => {
                            pos += e.len();
                            assert!(pos <= inode.size(), "extent past the end of the file");
                        }
                        _ => break,
                    }
                }
            }
            FileType::Symlink => {
                let _ = archive.read_link(&inode);
            }
            FileType::Directory => {
                let _ = archive.lookup(&inode, b"a");
                let _ = archive.lookup(&inode, b"zzzzzzzz");
                if let Ok(entries) = archive.read_dir_from(&inode, inode.size() / 2) {
                    for entry in entries.take(4) {
                        if let Ok(entry) = entry {
                            let _ = archive.entry_inode(&inode, &entry);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let _ = archive.lookup_path("a/b/../c");
});
