//! `build_image`: validate, walk, store data, write inodes, finish, commit.

use std::path::Path;

use squashbox_format::compress::Codec;
use squashbox_format::layout::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use squashbox_format::writer::{FinishOptions, ImageWriter};
use squashbox_format::Compressor;

use crate::filter::Filter;
use crate::inodes::{write_inodes, InodeOptions};
use crate::output::{ImageOut, PendingImage};
use crate::pipeline::{DataPipeline, FileData, PipelineConfig};
use crate::progress::Progress;
use crate::walk::{walk, NodeKind, Tree, WalkOptions};
use crate::{BuildError, BuildOptions, BuildSummary};

/// Bytes of blocks in flight per worker thread.
const WINDOW_PER_THREAD: usize = 4 << 20;
/// Jobs in flight per worker thread (bounds open files for trees of tiny files).
const JOBS_PER_THREAD: usize = 64;
/// Closed fragments being compressed before the oldest is written. A constant (not a
/// function of the thread count): where fragments land in the image depends on it, and the
/// image must not depend on the number of threads.
const FRAGMENT_LOOKAHEAD: usize = 16;

fn validate(options: &BuildOptions) -> Result<usize, BuildError> {
    let bs = options.block_size;
    if !bs.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs) {
        return Err(BuildError::InvalidOptions(format!(
            "block size {bs} must be a power of two from 4096 to 1048576"
        )));
    }
    let threads = match options.threads {
        Some(0) => {
            return Err(BuildError::InvalidOptions(
                "thread count must be at least 1".into(),
            ))
        }
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    Ok(threads)
}

/// Validate `options`; the worker count and the codec they ask for.
pub(crate) fn codec_and_threads(options: &BuildOptions) -> Result<(usize, Codec), BuildError> {
    let threads = validate(options)?;
    let level = match (options.level, options.compressor) {
        (None, Compressor::Zstd) => Some(DEFAULT_ZSTD_LEVEL),
        (level, _) => level,
    };
    let codec = Codec::for_writing(options.compressor, level, options.block_size)
        .map_err(|e| BuildError::InvalidOptions(e.to_string()))?;
    Ok((threads, codec))
}

/// The compression workers.
pub(crate) fn worker_pool(threads: usize) -> Result<rayon::ThreadPool, BuildError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("squashbox-build-{i}"))
        .build()
        .map_err(|e| BuildError::InvalidOptions(format!("starting worker threads: {e}")))
}

/// The data pipeline writing into `image`.
pub(crate) fn start_data(
    image: &PendingImage,
    dest: &Path,
    codec: Codec,
    options: &BuildOptions,
    pool: rayon::ThreadPool,
    threads: usize,
) -> Result<DataPipeline<ImageOut>, BuildError> {
    let handle = || {
        image
            .file()
            .try_clone()
            .map_err(|source| BuildError::Output {
                path: dest.to_path_buf(),
                source,
            })
    };
    let writer = ImageWriter::new(ImageOut::new(handle()?), codec, options.block_size)?;
    Ok(DataPipeline::new(
        writer,
        handle()?,
        pool,
        pipeline_config(
            options.block_size,
            options.fragments,
            options.dedup,
            threads,
        ),
    ))
}

/// Write every inode, directory and table after the data; returns the inode count and the
/// image size.
pub(crate) fn write_tables(
    mut writer: ImageWriter<ImageOut>,
    tree: &Tree,
    file_data: &[Option<FileData>],
    options: &BuildOptions,
) -> Result<(u64, u64), BuildError> {
    let inode_options = InodeOptions {
        all_root: options.all_root,
        mtime: options.mtime,
    };
    let inodes = write_inodes(&mut writer, tree, file_data, &inode_options)?;
    let image_mtime = options.mtime.unwrap_or_else(|| {
        tree.nodes
            .iter()
            .filter(|n| !n.skipped)
            .map(|n| n.mtime.clamp(0, i64::from(u32::MAX)) as u32)
            .max()
            .unwrap_or(0)
    });
    let (_, image_bytes) = writer.finish(FinishOptions {
        root: inodes.root,
        mtime: image_mtime,
        deduplicated: options.dedup,
        fragments: options.fragments,
    })?;
    Ok((u64::from(inodes.inode_count), image_bytes))
}

/// The pipeline's window for `threads` workers.
pub(crate) fn pipeline_config(
    block_size: u32,
    fragments: bool,
    dedup: bool,
    threads: usize,
) -> PipelineConfig {
    PipelineConfig {
        block_size,
        fragments,
        dedup,
        window_bytes: (threads * WINDOW_PER_THREAD).max(threads * 2 * block_size as usize),
        max_jobs: threads * JOBS_PER_THREAD,
        fragment_lookahead: FRAGMENT_LOOKAHEAD,
    }
}

/// zstd's level when none is given: 3 keeps builds fast (the codec's own default follows
/// mksquashfs, 15, which costs about 5x the CPU for a few percent of size).
const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Phase timings on stderr when `SQUASHBOX_BUILD_TIMING` is set (for benchmarking).
struct PhaseTimer {
    enabled: bool,
    last: std::time::Instant,
}

impl PhaseTimer {
    fn new() -> Self {
        PhaseTimer {
            enabled: std::env::var_os("SQUASHBOX_BUILD_TIMING").is_some(),
            last: std::time::Instant::now(),
        }
    }

    fn phase(&mut self, name: &str) {
        if self.enabled {
            eprintln!(
                "squashbox-build: {name}: {:.3}s",
                self.last.elapsed().as_secs_f64()
            );
        }
        self.last = std::time::Instant::now();
    }
}

pub(crate) fn run(
    source: &Path,
    dest: &Path,
    options: &BuildOptions,
) -> Result<BuildSummary, BuildError> {
    let (threads, codec) = codec_and_threads(options)?;
    let mut timer = PhaseTimer::new();
    let source = source.canonicalize().map_err(|e| BuildError::Source {
        path: source.to_path_buf(),
        message: e.to_string(),
    })?;
    let filter = Filter::new(&source, &options.excludes, options.gitignore)?;

    let image = PendingImage::create(dest)?;
    let walk_options = WalkOptions {
        xattrs: options.xattrs,
        one_file_system: options.one_file_system,
        skip_file: Some(image.dev_ino()?),
    };
    let pool = worker_pool(threads)?;
    let mut pipeline = start_data(&image, dest, codec, options, pool, threads)?;

    // Regular files go to the data pipeline in tree order as the walk finds them, so the
    // workers compress while the walk goes on (hard links point at their first name). The
    // total for progress is known only once the walk ends.
    let mut file_nodes = Vec::new();
    let mut total = 0u64;
    let mut files = 0u64;
    let mut walked = 0u64;
    let mut tree = walk(&source, &filter, &walk_options, &mut |index, path, node| {
        match node.kind {
            NodeKind::File { size, holes } => {
                file_nodes.push(index);
                pipeline.add_path(path.into(), size, holes);
                total += size;
                files += 1;
            }
            // Another name of a regular file (its first name came earlier, so it is in the
            // sorted `file_nodes` if it is one).
            NodeKind::HardLink { target } if file_nodes.binary_search(&target).is_ok() => {
                files += 1;
            }
            _ => {}
        }
        pipeline.pump(&mut |n| walked += n)
    })?;
    timer.phase("walk");
    let progress = Progress::new(options.progress, total);
    progress.inc(walked);
    let (data, writer) = pipeline.finish(&mut |n| progress.inc(n))?;
    progress.finish();
    timer.phase("data");

    // Unreadable directories found by the walk are reported together with the files that
    // fail to open or read in the data phase, so one run lists every problem.
    let mut unreadable = std::mem::take(&mut tree.unreadable);
    let mut file_data = vec![None; tree.nodes.len()];
    for (i, slot) in data.files.into_iter().enumerate() {
        file_data[file_nodes[i] as usize] = slot;
    }
    for (i, reason) in data.failed {
        let node = file_nodes[i];
        unreadable.push((tree.path_of(node), reason));
        tree.nodes[node as usize].skipped = true;
        files -= 1;
    }
    if !unreadable.is_empty() && !options.skip_unreadable {
        return Err(BuildError::Unreadable { paths: unreadable });
    }

    let (inode_count, image_bytes) = write_tables(writer, &tree, &file_data, options)?;
    timer.phase("inodes and tables");
    image.commit()?;
    timer.phase("sync and rename");

    Ok(BuildSummary {
        inodes: inode_count,
        files,
        input_bytes: data.input_bytes,
        image_bytes,
        duplicates: data.duplicates,
        skipped: unreadable,
    })
}
