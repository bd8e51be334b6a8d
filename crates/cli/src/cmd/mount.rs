//! `squashbox mount IMAGE MOUNTPOINT`: serve an image as a read-only FUSE file system.
//!
//! Without `--foreground` the command re-executes itself as a background daemon (in its own
//! session, stdin/stdout/stderr detached) and returns once the daemon reports over a pipe that
//! the mount is ready, or exits with the daemon's error. The daemon serves until the file
//! system is unmounted (`squashbox umount`) or it gets SIGINT/SIGTERM/SIGHUP, which unmount.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use squashbox_format::Archive;
use squashbox_mount::{mount, open_options_for_cache_size, MountOptions, UnmountMode};

use crate::daemon;
use crate::error::{CliResult, Context};
use crate::serve_args::ServeArgs;

/// Default total cache budget: 32 MiB keeps the daemon under ~80 MB RSS on a cold full read
/// of a 536 MiB tree with no measurable slowdown (64 MiB peaked at 124 MB RSS).
const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// Arguments of `squashbox mount`.
#[derive(clap::Args)]
#[command(
    mut_arg("options", |a| a.help(
        "Mount options, comma separated: allow_other (let other users in), ro (always on)"
    )),
    mut_arg("threads", |a| a.help("FUSE worker threads [default: number of CPUs, 2..=8]")),
    mut_arg("cache_size", |a| a.help(
        "Total bytes for the decompressed metadata and data block caches (suffixes K, M, G)"
    )),
    mut_arg("log_file", |a| a.help(
        "Append log messages (e.g. unreadable blocks) to this file; the background daemon \
         otherwise discards them"
    )),
)]
pub struct Args {
    /// The SquashFS image.
    image: PathBuf,
    /// An existing, empty directory to mount on.
    mountpoint: PathBuf,
    #[command(flatten)]
    serve: ServeArgs,
}

/// Run `squashbox mount`.
pub fn run(args: Args) -> CliResult {
    let settings = args.serve.settings("ro", "mount", "allow_other, ro")?;
    let mut mount_options = MountOptions {
        allow_other: settings.allow_other,
        ..MountOptions::default()
    };
    if let Some(threads) = settings.threads {
        mount_options.threads = threads;
    }
    if args.serve.foreground {
        serve(&args, mount_options)
    } else {
        spawn_daemon(&args)
    }
}

/// Re-run ourselves as `mount --foreground --daemon-child ...` and wait for its verdict.
fn spawn_daemon(args: &Args) -> CliResult {
    let exe = std::env::current_exe().context("locating the squashbox executable")?;
    let image = std::path::absolute(&args.image).context(args.image.display())?;
    let mountpoint = std::path::absolute(&args.mountpoint).context(args.mountpoint.display())?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount");
    args.serve.forward_to_daemon(&mut cmd)?;
    cmd.arg("--").arg(&image).arg(&mountpoint);
    daemon::spawn_and_wait_ready(cmd, "mount daemon")
}

/// Mount and serve in this process until unmounted or signalled.
fn serve(args: &Args, options: MountOptions) -> CliResult {
    daemon::report_to_parent(args.serve.daemon_child, serve_inner(args, options))
}

fn serve_inner(args: &Args, mut options: MountOptions) -> CliResult {
    let signals = daemon::prepare(args.serve.daemon_child, args.serve.log_file.as_deref())?;

    let file = File::open(&args.image).context(args.image.display())?;
    let cache = args.serve.cache_size.unwrap_or(DEFAULT_CACHE_BYTES);
    let archive = Archive::open_with(file, open_options_for_cache_size(cache))
        .context(args.image.display())?;
    options.fs_name = Some(args.image.display().to_string());
    let handle = mount(Arc::new(archive), &args.mountpoint, options)
        .context(format!("mounting {}", args.image.display()))?;

    daemon::announce_ready(args.serve.daemon_child, args.serve.log_file.is_some())?;
    // The image is read-only: nothing in flight can be lost, so force the unmount.
    daemon::unmount_on_signal(signals, handle.mountpoint().to_path_buf(), |mountpoint| {
        if let Err(e) = squashbox_mount::unmount(mountpoint, UnmountMode::Force) {
            log::error!("unmounting {}: {e}", mountpoint.display());
        }
    })?;

    handle
        .wait()
        .context(format!("serving {}", args.mountpoint.display()))
}
