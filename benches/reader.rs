//! Reader micro benchmarks through `squashbox_format::Archive`: path lookups per second,
//! random 4 KiB reads per second, and whole-tree walk speed.
//!
//! Run: `cargo bench -p squashbox-tests --bench reader`
//!
//! The image is `$SQUASHBOX_BENCH_IMAGE` if set (`benches/extract_compare.sh` leaves its
//! images in /var/tmp/squashbox-extract-bench/), otherwise one built once per run with Debian's
//! `mksquashfs` (defaults: gzip, 128 KiB blocks) from `$SQUASHBOX_BENCH_TREE` (default
//! `/usr/include`, a real tree of thousands of small headers) in a temporary directory.
//!
//! Workloads use a fixed seed so runs are comparable:
//! - `lookup_path`: resolve paths of entries sampled uniformly from the whole tree, with the
//!   reader's default caches (warm after the first pass over the sample).
//! - `read_4k_random`: 4 KiB `read_at` at random offsets of regular files picked with
//!   probability proportional to their size (so every byte of the image is equally likely),
//!   default caches: most reads miss the 32 MiB data cache on a large image and decompress a
//!   block, as a FUSE mount serving random reads would.
//! - `walk`: depth-first walk of the whole tree (inodes and listings decoded, no file data).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use squashbox_format::{Archive, FileType, Inode};

/// Paths sampled for the lookup benchmark.
const LOOKUP_SAMPLE: usize = 4096;
/// Random reads prepared for the read benchmark (cycled through).
const READ_SAMPLE: usize = 8192;
/// Bytes per random read.
const READ_SIZE: usize = 4096;

/// The benchmark image and, when we built it, the directory holding it (removed on drop).
struct BenchImage {
    path: PathBuf,
    built_in: Option<PathBuf>,
}

impl Drop for BenchImage {
    fn drop(&mut self) {
        if let Some(dir) = &self.built_in {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn bench_image() -> BenchImage {
    if let Some(path) = std::env::var_os("SQUASHBOX_BENCH_IMAGE") {
        return BenchImage {
            path: path.into(),
            built_in: None,
        };
    }
    let tree = std::env::var_os("SQUASHBOX_BENCH_TREE")
        .map_or_else(|| PathBuf::from("/usr/include"), PathBuf::from);
    let dir = std::env::temp_dir().join(format!("squashbox-reader-bench.{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let path = dir.join("bench.sqfs");
    let status = Command::new("mksquashfs")
        .arg(&tree)
        .arg(&path)
        .args(["-noappend", "-quiet", "-no-progress"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run mksquashfs (install squashfs-tools): {e}"));
    assert!(
        status.success(),
        "mksquashfs {} failed: {status}",
        tree.display()
    );
    BenchImage {
        path,
        built_in: Some(dir),
    }
}

/// xorshift64*: a fixed-seed generator, enough to spread samples (no extra dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the benchmarks draw from: every entry's path, and the regular files of at least
/// `READ_SIZE` bytes with their sizes.
struct TreeSample {
    paths: Vec<Vec<u8>>,
    files: Vec<(Inode, u64)>,
    entries: u64,
}

fn sample_tree(archive: &Archive) -> TreeSample {
    let mut rng = Rng(0x5EED_5EED_5EED_5EED);
    let mut paths = Vec::with_capacity(LOOKUP_SAMPLE);
    let mut files = Vec::new();
    let mut entries = 0u64;
    for item in archive.walk() {
        let entry = item.expect("walk the benchmark image");
        entries += 1;
        // Reservoir sampling keeps a uniform sample without holding every path.
        if paths.len() < LOOKUP_SAMPLE {
            paths.push(entry.path.clone());
        } else {
            let slot = rng.below(entries) as usize;
            if slot < LOOKUP_SAMPLE {
                paths[slot] = entry.path.clone();
            }
        }
        if entry.inode.file_type == FileType::Regular && entry.inode.size() >= READ_SIZE as u64 {
            let size = entry.inode.size();
            files.push((entry.inode, size));
        }
    }
    assert!(
        !files.is_empty(),
        "the benchmark image has no file of 4 KiB or more"
    );
    TreeSample {
        paths,
        files,
        entries,
    }
}

/// `READ_SAMPLE` (file index, offset) pairs, files weighted by size.
fn random_reads(files: &[(Inode, u64)]) -> Vec<(usize, u64)> {
    let mut cumulative = Vec::with_capacity(files.len());
    let mut total = 0u64;
    for (_, size) in files {
        total += size;
        cumulative.push(total);
    }
    let mut rng = Rng(0xDA7A_DA7A_DA7A_DA7A);
    (0..READ_SAMPLE)
        .map(|_| {
            let at = rng.below(total);
            let index = cumulative.partition_point(|&end| end <= at);
            let size = files[index].1;
            (index, rng.below(size - READ_SIZE as u64 + 1))
        })
        .collect()
}

fn open(path: &Path) -> Archive {
    Archive::open_path(path)
        .unwrap_or_else(|e| panic!("open benchmark image {}: {e}", path.display()))
}

fn reader_benches(c: &mut Criterion) {
    let image = bench_image();
    let archive = open(&image.path);
    let sample = sample_tree(&archive);
    let reads = random_reads(&sample.files);
    eprintln!(
        "reader bench image {}: {} bytes, {} entries, {} files >= 4 KiB",
        image.path.display(),
        std::fs::metadata(&image.path).map_or(0, |m| m.len()),
        sample.entries,
        sample.files.len()
    );

    let mut group = c.benchmark_group("reader");
    group.throughput(Throughput::Elements(1));
    let mut next = 0usize;
    group.bench_function("lookup_path", |b| {
        b.iter(|| {
            let path = &sample.paths[next % sample.paths.len()];
            next = next.wrapping_add(1);
            black_box(archive.lookup_path(path).expect("lookup"))
        })
    });

    let mut buf = vec![0u8; READ_SIZE];
    let mut next = 0usize;
    group.bench_function("read_4k_random", |b| {
        b.iter(|| {
            let (index, offset) = reads[next % reads.len()];
            next = next.wrapping_add(1);
            let n = archive
                .read_at(&sample.files[index].0, offset, &mut buf)
                .expect("read_at");
            assert_eq!(n, READ_SIZE, "short read inside the file");
            black_box(&buf);
        })
    });

    group.throughput(Throughput::Elements(sample.entries));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("walk", |b| {
        b.iter(|| {
            let mut count = 0u64;
            for item in archive.walk() {
                black_box(item.expect("walk"));
                count += 1;
            }
            assert_eq!(count, sample.entries);
        })
    });
    group.finish();
}

criterion_group!(benches, reader_benches);
criterion_main!(benches);
