//! Memory stays bounded: opening an image with 100,000 files allocates only the small table
//! indexes, and a full walk + read of every file stays within the cache budgets.
//!
//! A counting global allocator measures live heap bytes of this test binary; the test runs
//! alone in its binary so other tests do not disturb the figures.

mod reader_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use reader_common::*;
use squashbox_format::{Archive, FileType, OpenOptions};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: ptr came from alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const FILES: usize = 100_000;

#[test]
fn memory_is_bounded_for_100k_files() {
    if !require_tool("mksquashfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for d in 0..100 {
        let sub = src.join(format!("d{d:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..FILES / 100 {
            let len = (d * 131 + f * 17) % 3000;
            std::fs::write(
                sub.join(format!("file{f:04}")),
                &pseudo_random(len, f as u64)[..],
            )
            .unwrap();
        }
    }
    // One large file for sequential-read throughput.
    std::fs::write(src.join("large"), pseudo_random(64 << 20, 42)).unwrap();
    let img = dir.path().join("image.sqfs");
    mksquashfs(&src, &img, &[]);
    let image_len = std::fs::metadata(&img).unwrap().len();

    let options = OpenOptions::default();
    let budget = options.metadata_cache_bytes + options.data_cache_bytes;
    let before = LIVE.load(Ordering::Relaxed);
    let archive = Archive::open_path(&img).unwrap();
    let after_open = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!("image {image_len} bytes, {FILES} files: {after_open} bytes live after open");
    assert!(after_open < 1 << 20, "open allocated {after_open} bytes");

    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
    let start = Instant::now();
    let mut files = 0usize;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 128 << 10];
    let mut large = None;
    for item in archive.walk() {
        let item = item.unwrap();
        if item.inode.file_type == FileType::Regular {
            if item.path == b"large" {
                large = Some(item.inode);
                continue;
            }
            files += 1;
            let n = archive.read_at(&item.inode, 0, &mut buf).unwrap();
            assert_eq!(n as u64, item.inode.size());
            bytes += n as u64;
        }
    }
    let walk_time = start.elapsed();
    assert_eq!(files, FILES);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "walked and read {files} files ({bytes} bytes) in {walk_time:?}; peak {peak} bytes \
         (cache budget {budget})"
    );
    // Caches plus a little: nothing grows with the number of files.
    assert!(peak < budget + (4 << 20), "peak heap {peak}");

    let large = large.expect("large file");
    let start = Instant::now();
    let mut offset = 0u64;
    loop {
        let n = archive
            .read_at(&large, offset, &mut buf[..32 << 10])
            .unwrap();
        if n == 0 {
            break;
        }
        offset += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(offset, 64 << 20);
    eprintln!(
        "sequential 32 KiB reads of a 64 MiB file: {:.0} MiB/s",
        64.0 / secs.max(1e-9)
    );
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    assert!(peak < budget + (4 << 20), "peak heap {peak}");
}
