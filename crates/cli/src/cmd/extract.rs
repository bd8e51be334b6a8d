//! `squashbox extract IMAGE DEST`: secure parallel extraction.

use std::ffi::OsString;
use std::path::PathBuf;

use squashbox_extract::{extract, ExtractOptions};

use super::common::{open_image, path_bytes};
use crate::error::{warn, CliResult};

/// Arguments of `squashbox extract`.
#[derive(clap::Args)]
pub struct Args {
    /// The SquashFS image.
    image: PathBuf,
    /// Destination directory. It must not exist or be empty unless --force is given. When it
    /// does not exist, nothing appears there unless extraction succeeds.
    dest: PathBuf,
    /// Extract only this subtree (a directory's contents go into DEST; any other entry is
    /// extracted as DEST/<name>).
    #[arg(long, value_name = "SUB")]
    path: Option<OsString>,
    /// Extract into a non-empty DEST, replacing entries that are in the way (never following
    /// symlinks); directories present in both are merged.
    #[arg(long)]
    force: bool,
    /// Threads writing file contents (default: one per CPU).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Print a summary of what was extracted to stderr.
    #[arg(short, long)]
    verbose: bool,
}

/// Run `squashbox extract`.
pub fn run(args: Args) -> CliResult {
    raise_open_file_limit();
    let archive = open_image(&args.image)?;
    let options = ExtractOptions {
        force: args.force,
        threads: args.threads.map_or(0, usize::from),
        ..ExtractOptions::default()
    };
    let subpath = args.path.as_deref().map(path_bytes);
    let summary = extract(&archive, subpath, &args.dest, &options)?;
    for w in &summary.warnings {
        warn(w);
    }
    if summary.warnings_dropped > 0 {
        warn(format!(
            "{} more warnings not shown",
            summary.warnings_dropped
        ));
    }
    if args.verbose {
        eprintln!(
            "squashbox: extracted {} directories, {} files ({} bytes), {} symlinks, {} devices, \
             {} fifos, {} sockets, {} hard links into {}",
            summary.directories,
            summary.files,
            summary.bytes,
            summary.symlinks,
            summary.devices,
            summary.fifos,
            summary.sockets,
            summary.hard_links,
            args.dest.display()
        );
    }
    Ok(())
}

/// Deep trees keep one directory fd open per level: use the hard limit, not the soft one.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}
