//! `squashbox overlay --lower A.sqsh[:B.sqsh...] --upper DIR [--work DIR] MOUNTPOINT`: mount a
//! copy-on-write view of one or more images; every change lands in the upper directory, which
//! stays usable as a Linux overlayfs upper layer.
//!
//! Like `squashbox mount`, the command serves in a background daemon (re-executing itself with
//! `--foreground`) and returns once the daemon reports the mount ready, unless `--foreground`
//! is given. SIGINT/SIGTERM/SIGHUP unmount (lazily if files are still open).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use squashbox_format::Archive;
use squashbox_mount::open_options_for_cache_size;
use squashbox_overlay::{mount_overlay, OverlayOptions};

use crate::daemon;
use crate::error::{CliError, CliResult, Context};
use crate::serve_args::ServeArgs;

/// Default total cache budget per image.
const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// Arguments of `squashbox overlay`.
#[derive(clap::Args)]
#[command(
    mut_arg("options", |a| a.help("Mount options, comma separated: allow_other (let other users in)")),
    mut_arg("threads", |a| a.help("FUSE worker threads [default: 4]")),
    mut_arg("cache_size", |a| a.help(
        "Bytes of decompressed-block cache per image (suffixes K, M, G)"
    )),
)]
pub struct Args {
    /// Lower images, topmost first, separated by ':' (the option may also be repeated).
    #[arg(long, required = true, value_name = "IMAGE[:IMAGE...]")]
    lower: Vec<String>,
    /// Writable upper directory (created if missing); receives every change.
    #[arg(long, value_name = "DIR")]
    upper: PathBuf,
    /// Work directory on the same file system as the upper directory [default: UPPER.work
    /// next to the upper directory; created if missing].
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Never sync the upper directory (like the kernel overlayfs' -o volatile): copy-ups are
    /// not synced even in the background and fsync through the mount returns at once, but
    /// after a machine crash the upper directory may hold empty or partial files. A
    /// marker in the work directory (squashbox-volatile/) makes a mount after such a crash
    /// fail until you discard the upper and work directories or delete the marker; a clean
    /// unmount syncs and removes it.
    #[arg(long)]
    volatile: bool,
    /// Sync each copy-up before the file appears in the mount, like the kernel overlayfs.
    /// By default a copy-up appears as soon as its data is copied and is synced in the
    /// background; should the machine stop first, the next mount copies it again from the
    /// image (journal in the work directory, squashbox-unsynced/).
    #[arg(long, conflicts_with = "volatile")]
    sync_copy_up: bool,
    /// An existing, empty directory to mount on.
    mountpoint: PathBuf,
    #[command(flatten)]
    serve: ServeArgs,
}

/// Run `squashbox overlay`.
pub fn run(args: Args) -> CliResult {
    let settings = args.serve.settings("rw", "overlay", "allow_other")?;
    let mut options = OverlayOptions {
        allow_other: settings.allow_other,
        volatile: args.volatile,
        sync_copy_up: args.sync_copy_up,
        ..OverlayOptions::default()
    };
    if let Some(threads) = settings.threads {
        options.threads = threads;
    }
    if lower_paths(&args).is_empty() {
        return Err(CliError::msg("--lower names no image"));
    }
    if args.serve.foreground {
        serve(&args, options)
    } else {
        spawn_daemon(&args)
    }
}

fn lower_paths(args: &Args) -> Vec<PathBuf> {
    args.lower
        .iter()
        .flat_map(|l| l.split(':'))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// The work directory: given, or `<upper>.work` beside the upper directory.
fn work_dir(args: &Args) -> PathBuf {
    match &args.work {
        Some(w) => w.clone(),
        None => {
            let mut name = args
                .upper
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "upper".into());
            name.push(".work");
            args.upper.with_file_name(name)
        }
    }
}

/// Re-run ourselves as `overlay --foreground --daemon-child ...` and wait for its verdict.
fn spawn_daemon(args: &Args) -> CliResult {
    let exe = std::env::current_exe().context("locating the squashbox executable")?;
    let abs = |p: &Path| std::path::absolute(p).context(p.display());
    let mut cmd = Command::new(exe);
    cmd.arg("overlay");
    args.serve.forward_to_daemon(&mut cmd)?;
    for l in lower_paths(args) {
        // One image per option: absolute paths may contain ':' only this way.
        cmd.arg("--lower").arg(abs(&l)?);
    }
    cmd.arg("--upper").arg(abs(&args.upper)?);
    cmd.arg("--work").arg(abs(&work_dir(args))?);
    if args.volatile {
        cmd.arg("--volatile");
    }
    if args.sync_copy_up {
        cmd.arg("--sync-copy-up");
    }
    cmd.arg("--").arg(abs(&args.mountpoint)?);
    daemon::spawn_and_wait_ready(cmd, "overlay daemon")
}

/// Mount and serve in this process until unmounted or signalled.
fn serve(args: &Args, options: OverlayOptions) -> CliResult {
    daemon::report_to_parent(args.serve.daemon_child, serve_inner(args, options))
}

fn serve_inner(args: &Args, options: OverlayOptions) -> CliResult {
    let signals = daemon::prepare(args.serve.daemon_child, args.serve.log_file.as_deref())?;

    let cache = args.serve.cache_size.unwrap_or(DEFAULT_CACHE_BYTES);
    let mut lowers = Vec::new();
    for image in lower_paths(args) {
        let file = File::open(&image).context(image.display())?;
        let archive = Archive::open_with(file, open_options_for_cache_size(cache))
            .context(image.display())?;
        lowers.push(Arc::new(archive));
    }
    let work = work_dir(args);
    for dir in [&args.upper, &work] {
        std::fs::create_dir_all(dir).context(dir.display())?;
    }
    let handle = mount_overlay(lowers, &args.upper, &work, &args.mountpoint, options)
        .context(format!("mounting overlay on {}", args.mountpoint.display()))?;

    daemon::announce_ready(args.serve.daemon_child, args.serve.log_file.is_some())?;
    daemon::unmount_on_signal(
        signals,
        handle.mountpoint().to_path_buf(),
        daemon::unmount_gracefully,
    )?;

    handle
        .wait()
        .context(format!("serving {}", args.mountpoint.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn lowers_split_on_colons_and_repeat_and_work_defaults_beside_upper() {
        let t = T::parse_from([
            "t",
            "--lower",
            "a.sqsh:b.sqsh",
            "--lower",
            "c.sqsh",
            "--upper",
            "/srv/up",
            "/mnt",
        ]);
        assert_eq!(
            lower_paths(&t.args),
            vec![
                PathBuf::from("a.sqsh"),
                PathBuf::from("b.sqsh"),
                PathBuf::from("c.sqsh")
            ]
        );
        assert_eq!(work_dir(&t.args), PathBuf::from("/srv/up.work"));
    }
}
