//! `squashbox mkfs SOURCE_DIR IMAGE`: build an image from a directory (a `mksquashfs`
//! replacement; see `docs/builder.md`).

use std::path::PathBuf;
use std::time::Instant;

use squashbox_build::{build_image, BuildOptions};
use squashbox_format::Compressor;

use crate::error::{warn, CliError, CliResult, Context};

/// Arguments of `squashbox mkfs`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory to pack.
    source: PathBuf,
    /// Image file to write (replaced atomically; never left partial).
    image: PathBuf,
    /// Compressor: zstd (default), gzip, xz, lz4 or lzo.
    #[arg(long, default_value = "zstd")]
    comp: String,
    /// Compression level (default: zstd 3, gzip 9, xz 6; see docs/builder.md).
    #[arg(long)]
    level: Option<i32>,
    /// Data block size: a power of two from 4K to 1M (e.g. 4K, 128K, 1M, or bytes).
    #[arg(long, default_value = "128K")]
    block_size: String,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Do not pack small files and tails into fragment blocks.
    #[arg(long)]
    no_fragments: bool,
    /// Do not merge identical files.
    #[arg(long)]
    no_dedup: bool,
    /// Do not store extended attributes.
    #[arg(long)]
    no_xattrs: bool,
    /// Record every entry as owned by root.
    #[arg(long)]
    all_root: bool,
    /// Force every mtime (and the image time) to SECONDS since the epoch. Defaults to
    /// $SOURCE_DATE_EPOCH when that is set.
    #[arg(long, value_name = "SECONDS")]
    mtime: Option<u32>,
    /// Leave out what git would ignore (.gitignore files, .git/info/exclude,
    /// core.excludesFile; tracked files are kept; submodules and nested repositories follow
    /// their own rules).
    #[arg(long)]
    gitignore: bool,
    /// Leave out paths matching PATTERN (gitignore syntax; repeatable).
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Read exclude patterns from FILE (gitignore syntax, one per line).
    #[arg(long, value_name = "FILE")]
    exclude_from: Option<PathBuf>,
    /// Do not descend into other file systems (mount points become empty directories).
    #[arg(long)]
    one_file_system: bool,
    /// Skip unreadable files with a warning instead of failing.
    #[arg(long)]
    skip_unreadable: bool,
    /// Print nothing on success (no progress bar, no summary).
    #[arg(long)]
    quiet: bool,
}

/// Parse `4K`, `128k`, `1M` or a byte count.
fn parse_block_size(text: &str) -> CliResult<u32> {
    let t = text.trim();
    let (digits, multiplier) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1024),
        Some('m' | 'M') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    digits
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| {
            CliError::msg(format!(
                "invalid block size {text:?} (use e.g. 4K, 128K, 1M)"
            ))
        })
}

/// Build the library options from the command line and environment.
fn options(args: &Args) -> CliResult<BuildOptions> {
    let compressor = Compressor::from_name(&args.comp)
        .filter(|c| *c != Compressor::Lzma)
        .ok_or_else(|| {
            CliError::msg(format!(
                "unknown compressor {:?} (choose zstd, gzip, xz, lz4 or lzo)",
                args.comp
            ))
        })?;
    let mut excludes = args.exclude.clone();
    if let Some(file) = &args.exclude_from {
        let text = std::fs::read_to_string(file)
            .context(format!("reading exclude file {}", file.display()))?;
        excludes.extend(text.lines().map(str::to_owned));
    }
    let mtime = match args.mtime {
        Some(t) => Some(t),
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().parse::<u32>().map_err(|_| {
                CliError::msg(format!(
                    "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
                ))
            })?),
            _ => None,
        },
    };
    Ok(BuildOptions {
        compressor,
        level: args.level,
        block_size: parse_block_size(&args.block_size)?,
        threads: args.threads,
        fragments: !args.no_fragments,
        dedup: !args.no_dedup,
        xattrs: !args.no_xattrs,
        all_root: args.all_root,
        mtime,
        gitignore: args.gitignore,
        excludes,
        one_file_system: args.one_file_system,
        skip_unreadable: args.skip_unreadable,
        progress: !args.quiet,
    })
}

/// Run `squashbox mkfs`.
pub fn run(args: Args) -> CliResult {
    let options = options(&args)?;
    let started = Instant::now();
    let summary = build_image(&args.source, &args.image, &options)?;
    for (path, reason) in &summary.skipped {
        warn(format!("skipped unreadable {}: {reason}", path.display()));
    }
    if !args.quiet {
        let ratio = size_ratio(summary.image_bytes, summary.input_bytes);
        println!(
            "{}: {} files, {} input bytes -> {} image bytes ({ratio}), {} duplicates, {} inodes, {:.2}s",
            args.image.display(),
            summary.files,
            summary.input_bytes,
            summary.image_bytes,
            summary.duplicates,
            summary.inodes,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The image size relative to the file data, worded for tiny inputs too (where the image is
/// mostly metadata and padding and a percentage would be meaningless).
fn size_ratio(image: u64, input: u64) -> String {
    if input == 0 {
        return "no file data".into();
    }
    let ratio = image as f64 / input as f64;
    if ratio <= 1.0 {
        format!("{:.1}% of the input", ratio * 100.0)
    } else {
        "larger than the input: mostly metadata".into()
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_block_size, size_ratio};

    #[test]
    fn size_ratio_is_worded_for_every_input() {
        assert_eq!(size_ratio(50, 100), "50.0% of the input");
        assert_eq!(
            size_ratio(643_072, 2),
            "larger than the input: mostly metadata"
        );
        assert_eq!(size_ratio(4096, 0), "no file data");
    }

    #[test]
    fn block_sizes_parse() {
        assert_eq!(parse_block_size("4K").unwrap(), 4096);
        assert_eq!(parse_block_size("128k").unwrap(), 131072);
        assert_eq!(parse_block_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_block_size("65536").unwrap(), 65536);
        assert!(parse_block_size("x").is_err());
        assert!(parse_block_size("99999999M").is_err());
    }
}
