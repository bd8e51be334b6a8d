//! Volatile mode (`OverlayOptions::volatile`), after the kernel overlayfs' `-o volatile`: no
//! sync of the upper filesystem at all (no `fsync` of copy-ups or of their directories, no
//! early writeback, user `fsync`/`fsyncdir` answered without syncing).
//!
//! Crash guard. A volatile mount first creates `WORK/squashbox-volatile/` holding `boot_id`
//! (the kernel's `/proc/sys/kernel/random/boot_id` at mount time), durably, and keeps that
//! file `flock`ed while it runs. A clean end of the mount (the filesystem object is dropped
//! after the session ended) `syncfs`es the upper filesystem and only then removes the marker.
//! Every later mount of the same work directory, volatile or not, looks for the marker first:
//!
//! - locked: a volatile mount of it is still being served: refused ([`OverlayError::VolatileInUse`]);
//! - recorded boot id == current boot id: the machine has not restarted since, so everything the
//!   earlier daemon wrote is still in the upper filesystem's page cache (a killed daemon loses
//!   nothing the kernel already accepted; only requests it never answered, exactly as without
//!   volatile). The upper filesystem is `syncfs`ed, the marker removed, and the mount goes on;
//! - otherwise (another boot id, unreadable marker, or the `syncfs` fails): refused with
//!   [`OverlayError::VolatileCrash`] before anything in the upper or work directory is touched.
//!
//! The kernel refuses in every case (it cannot tell a crash from a clean unmount, and never
//! removes its `work/incompat/volatile` itself); the boot-id rule only accepts states the page
//! cache still holds completely.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode, OFlags};

use crate::OverlayError;

/// Name of the marker directory inside the work directory.
pub(crate) const MARKER_DIR: &str = "squashbox-volatile";
/// File inside the marker holding the boot id of the mount that created it.
const BOOT_ID_FILE: &str = "boot_id";
/// Where the kernel publishes the id of the current boot.
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The marker of a running volatile mount; dropping it ends the volatile session cleanly.
pub(crate) struct Marker {
    path: PathBuf,
    /// The work directory, held open: removal must not depend on the current directory.
    work: OwnedFd,
    /// The upper root, opened for `syncfs`.
    upper: OwnedFd,
    /// `boot_id` inside the marker, `flock`ed for as long as the mount runs.
    _lock: File,
}

fn io_err(context: String) -> impl FnOnce(io::Error) -> OverlayError {
    move |source| OverlayError::Io { context, source }
}

pub(crate) fn boot_id() -> io::Result<String> {
    Ok(fs::read_to_string(BOOT_ID_PATH)?.trim().to_string())
}

fn open_dir(p: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn sync_dir(p: &Path) -> io::Result<()> {
    Ok(rustix::fs::fsync(open_dir(p)?)?)
}

/// Remove the marker (its file, then the directory) inside the work directory `work`, and
/// sync `work` so that a crash later does not bring it back.
fn remove_at(work: &OwnedFd) -> io::Result<()> {
    let file = format!("{MARKER_DIR}/{BOOT_ID_FILE}");
    match rustix::fs::unlinkat(work, file.as_str(), rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    rustix::fs::unlinkat(work, MARKER_DIR, rustix::fs::AtFlags::REMOVEDIR)?;
    crate::upper::sync_dir(work.as_fd())
}

/// Refuse, or recover from, a marker left in `work` by an earlier volatile mount (see the
/// module documentation). Touches nothing when it refuses.
pub(crate) fn check(work: &Path, upper: &Path) -> Result<(), OverlayError> {
    let marker = work.join(MARKER_DIR);
    match fs::symlink_metadata(&marker) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(format!("inspecting {}", marker.display()))(e)),
        Ok(_) => {}
    }
    let crashed = |reason: String| OverlayError::VolatileCrash {
        marker: marker.clone(),
        reason,
    };
    let mut file = File::open(marker.join(BOOT_ID_FILE))
        .map_err(|e| crashed(format!("its boot id cannot be read ({e})")))?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            return Err(OverlayError::VolatileInUse {
                marker: marker.clone(),
            })
        }
        Err(e) => return Err(io_err(format!("locking {}", marker.display()))(e.into())),
    }
    let mut recorded = String::new();
    file.read_to_string(&mut recorded)
        .map_err(|e| crashed(format!("its boot id cannot be read ({e})")))?;
    let recorded = recorded.trim();
    let now = boot_id().map_err(|e| {
        crashed(format!(
            "the current boot id cannot be read from {BOOT_ID_PATH} ({e})"
        ))
    })?;
    if recorded != now {
        return Err(crashed(format!(
            "the machine has restarted since that mount (boot id {recorded:?}, now {now:?}), \
             so writes it left only in memory may be lost"
        )));
    }
    // Same boot: the page cache holds every write of the earlier mount. Make it durable
    // before the marker goes.
    let synced = open_dir(upper).and_then(|fd| Ok(rustix::fs::syncfs(fd)?));
    if let Err(e) = synced {
        return Err(crashed(format!(
            "the same boot, but syncing the upper filesystem failed ({e})"
        )));
    }
    open_dir(work)
        .and_then(|w| remove_at(&w))
        .map_err(io_err(format!("removing {}", marker.display())))?;
    log::warn!(
        "{} was left by a volatile mount in this boot that did not end cleanly (daemon \
         killed?); the upper filesystem is synced and the marker removed",
        marker.display()
    );
    Ok(())
}

impl Marker {
    /// Create the marker of a new volatile mount of `upper` in `work` (after [`check`]), and
    /// make it durable before the mount can change anything.
    pub(crate) fn create(work: &Path, upper: &Path) -> Result<Marker, OverlayError> {
        let path = work.join(MARKER_DIR);
        let ctx = format!("creating the volatile-mode marker {}", path.display());
        let boot = boot_id().map_err(io_err(format!("{ctx}: reading {BOOT_ID_PATH}")))?;
        let upper_fd = open_dir(upper).map_err(io_err(format!("opening {}", upper.display())))?;
        let work_fd = open_dir(work).map_err(io_err(format!("opening {}", work.display())))?;
        // Built under a temporary name and renamed, so a marker is never seen half-written.
        let tmp = work.join(format!("{MARKER_DIR}.new"));
        let build = || -> io::Result<File> {
            match fs::remove_dir_all(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            fs::DirBuilder::new().mode(0o700).create(&tmp)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(tmp.join(BOOT_ID_FILE))?;
            writeln!(f, "{boot}")?;
            f.sync_all()?;
            rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive)?;
            sync_dir(&tmp)?;
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &tmp,
                rustix::fs::CWD,
                &path,
                rustix::fs::RenameFlags::NOREPLACE,
            )?;
            sync_dir(work)?;
            Ok(f)
        };
        let lock = build().map_err(io_err(ctx))?;
        Ok(Marker {
            path,
            work: work_fd,
            upper: upper_fd,
            _lock: lock,
        })
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        let r = rustix::fs::syncfs(&self.upper)
            .map_err(io::Error::from)
            .and_then(|()| remove_at(&self.work));
        match r {
            Ok(()) => log::debug!("volatile mount ended: upper synced, marker removed"),
            Err(e) => log::error!(
                "ending the volatile mount: {e}; {} is kept, so the next mount of this upper \
                 directory will check it",
                self.path.display()
            ),
        }
    }
}
