//! `squashbox umount MOUNTPOINT`: unmount a `squashbox mount` (or any FUSE mount).
//!
//! Works when the daemon is gone too (a mount answering "Transport endpoint is not
//! connected"): the mount point is never stat'ed, only looked up in the mount table.

use std::path::PathBuf;

use squashbox_mount::{unmount, MountError, UnmountMode};

use crate::error::{CliError, CliResult};

/// Arguments of `squashbox umount`.
#[derive(clap::Args)]
pub struct Args {
    /// Where the image is mounted.
    mountpoint: PathBuf,
    /// Detach now even if files are open; the mount disappears when they are closed.
    #[arg(short, long, conflicts_with = "force")]
    lazy: bool,
    /// Abort the connection (open files fail from now on) and detach. Root only.
    #[arg(short, long)]
    force: bool,
}

/// Run `squashbox umount`.
pub fn run(args: Args) -> CliResult {
    let mode = if args.force {
        UnmountMode::Force
    } else if args.lazy {
        UnmountMode::Lazy
    } else {
        UnmountMode::Normal
    };
    match unmount(&args.mountpoint, mode) {
        Ok(()) => Ok(()),
        Err(MountError::Busy(path)) => Err(CliError::msg(format!(
            "{}: busy (files are open in it); use --lazy or --force",
            path.display()
        ))),
        Err(e) => Err(e.into()),
    }
}
