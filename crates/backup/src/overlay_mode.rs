//! The default restore mode: the archive as the read-only lower layer of a copy-on-write
//! overlay mounted on the target, with a fresh upper dir under the state dir.
//!
//! Mounts made by this process are kept in a registry until [`unmount_restore`] (or process
//! exit). A restore record under the state dir names the serving process, so another process
//! (`squashbox restore` again, `squashbox umount`) can end the mount.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use squashbox_format::Archive;
use squashbox_overlay::{mount_overlay, OverlayHandle, OverlayOptions};

use crate::error::{BackupError, Result};
use crate::meta::rfc3339;
use crate::state::{dir_key, pid_alive, read_record, remove_record, write_record, RestoreRecord};

/// Mounts made by this process; dropping a handle unmounts.
type MountGuard = OverlayHandle;

fn registry() -> &'static Mutex<HashMap<PathBuf, MountGuard>> {
    static REGISTRY: std::sync::OnceLock<Mutex<HashMap<PathBuf, MountGuard>>> =
        std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Mount `archive` as an overlay on `target` in this process and record it (`volatile`: never
/// sync the upper dir, see `OverlayOptions::volatile`).
pub(crate) fn mount(
    archive: Archive,
    archive_path: &Path,
    target: &Path,
    id: &str,
    state_dir: &Path,
    volatile: bool,
) -> Result<()> {
    let fail = |msg: String| {
        BackupError::restore_failed(msg)
            .with_dir(target)
            .with_id(id)
    };
    unmount_previous(target, state_dir)?;
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(fail(format!(
                "{} exists and is not a directory",
                target.display()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(target)
            .map_err(|e| fail(format!("cannot create {}: {e}", target.display())))?,
        Err(e) => return Err(fail(format!("cannot inspect {}: {e}", target.display()))),
    }
    let layers = state_dir.join("overlays").join(format!(
        "{}-{}",
        dir_key(target),
        uuid::Uuid::new_v4().simple()
    ));
    let upper = layers.join("upper");
    let work = layers.join("work");
    let made = std::fs::create_dir_all(&upper)
        .and_then(|()| std::fs::create_dir_all(&work))
        .and_then(|()| copy_root_attributes(&archive, &upper));
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&layers);
        return Err(fail(format!(
            "cannot create overlay dirs under {}: {e}",
            layers.display()
        )));
    }
    let handle = match mount_overlay(
        vec![Arc::new(archive)],
        &upper,
        &work,
        target,
        OverlayOptions {
            volatile,
            ..OverlayOptions::default()
        },
    ) {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&layers);
            return Err(fail(format!("mounting the overlay failed: {e}")));
        }
    };
    let record = RestoreRecord {
        dir: target.to_path_buf(),
        id: id.to_string(),
        upper,
        work,
        archive: archive_path.to_path_buf(),
        pid: std::process::id(),
        mounted_at: rfc3339(time::OffsetDateTime::now_utc()),
    };
    if let Err(e) = write_record(state_dir, &record) {
        drop(handle);
        let _ = std::fs::remove_dir_all(&layers);
        return Err(fail(format!("cannot record the restore: {e}")));
    }
    registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(target.to_path_buf(), handle);
    Ok(())
}

/// The merged root shows the upper root's attributes, so give the fresh upper root the
/// archive root's mode, owner and mtime (else a restore would change the root's metadata).
fn copy_root_attributes(archive: &Archive, upper: &Path) -> std::io::Result<()> {
    use rustix::fs::{chmod, chown, utimensat, AtFlags, Mode, Timespec, Timestamps, CWD};
    let root = archive.root().map_err(std::io::Error::other)?;
    chmod(upper, Mode::from_raw_mode(u32::from(root.permissions)))?;
    if rustix::process::geteuid().is_root() {
        let uid = rustix::fs::Uid::from_raw(root.uid);
        let gid = rustix::fs::Gid::from_raw(root.gid);
        chown(upper, Some(uid), Some(gid))?;
    }
    let t = Timespec {
        tv_sec: i64::from(root.mtime),
        tv_nsec: 0,
    };
    utimensat(
        CWD,
        upper,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::empty(),
    )?;
    Ok(())
}

/// What happens to a restore's changes (its upper and work dirs) once its mount has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterUnmount {
    /// Delete them: the directory's restore is over (`squashbox umount`, another restore).
    Discard,
    /// Leave them in the state dir, e.g. when the server was stopped by a signal (shutdown,
    /// Ctrl-C), which is not a user's decision to throw the changes away.
    Keep,
}

/// Serve the restore mount on `dir` made by this process until it is unmounted from outside
/// (`umount DIR`, `squashbox umount DIR`, or another restore onto `dir`), then remove its
/// record and layers. For a process whose only job is keeping the mount alive.
pub fn serve_until_unmounted(dir: &Path, state_dir: &Path) -> Result<()> {
    serve_until_unmounted_then(dir, state_dir, || AfterUnmount::Discard).map(|_| ())
}

/// Like [`serve_until_unmounted`], but once the mount has ended, `after` decides whether the
/// changes (upper and work dirs) are deleted or kept. The record is removed either way, so
/// the restore is no longer listed. Returns the kept upper dir, if any.
pub fn serve_until_unmounted_then(
    dir: &Path,
    state_dir: &Path,
    after: impl FnOnce() -> AfterUnmount,
) -> Result<Option<PathBuf>> {
    let handle = registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(dir)
        .ok_or_else(|| {
            BackupError::restore_failed("no restore mount on this directory in this process")
                .with_dir(dir)
        })?;
    let waited = handle.wait();
    let mut kept = None;
    // The record may already name a newer restore of `dir` (another process replaced us and
    // cleans up our layers itself): only our own record and layers are ours to handle.
    if let Some(rec) = read_record(state_dir, dir) {
        if rec.pid == std::process::id() {
            match after() {
                AfterUnmount::Discard => cleanup_layers(&rec),
                AfterUnmount::Keep => kept = Some(rec.upper.clone()),
            }
            remove_record(state_dir, dir);
        }
    }
    waited.map_err(|e| {
        BackupError::restore_failed(format!("serving the overlay failed: {e}")).with_dir(dir)
    })?;
    Ok(kept)
}

/// End the restore mount on `dir`, if there is one. Returns whether one was ended.
pub fn unmount_restore(dir: &Path, state_dir: &Path) -> Result<bool> {
    unmount_previous(dir, state_dir)
}

/// End a previous restore mount on `target` (ours or another process's) and remove its
/// upper/work dirs and record.
pub(crate) fn unmount_previous(target: &Path, state_dir: &Path) -> Result<bool> {
    let ours = registry()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(target);
    let record = read_record(state_dir, target);
    let mut ended = false;
    if let Some(guard) = ours {
        drop(guard);
        ended = true;
    } else if let Some(rec) = &record {
        if pid_alive(rec.pid) && rec.pid != std::process::id() {
            end_foreign_mount(rec)?;
            ended = true;
        } else {
            // The serving process died (or this process lost its handle): its FUSE mount, if
            // still there, is dead ("transport endpoint is not connected"). Detach it so the
            // directory is usable again; EINVAL just means nothing is mounted.
            use rustix::mount::{unmount, UnmountFlags};
            ended = unmount(&rec.dir, UnmountFlags::DETACH).is_ok();
        }
    }
    if let Some(rec) = record {
        cleanup_layers(&rec);
        remove_record(state_dir, target);
    }
    // Whatever the records say, a dead FUSE mount on the target (its server killed) must go
    // before anything can be mounted or swapped there.
    if let Err(e) = std::fs::symlink_metadata(target) {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            use rustix::mount::{unmount, UnmountFlags};
            ended |= unmount(target, UnmountFlags::DETACH).is_ok();
        }
    }
    Ok(ended)
}

/// Unmount a mount served by another process and wait (bounded) for that process to exit.
fn end_foreign_mount(rec: &RestoreRecord) -> Result<()> {
    use rustix::mount::{unmount, UnmountFlags};
    let fail = |msg: String| BackupError::restore_failed(msg).with_dir(&rec.dir);
    match unmount(&rec.dir, UnmountFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::INVAL) => {}
        Err(rustix::io::Errno::BUSY) => {
            return Err(fail(format!(
                "the previous restore mount on {} is busy (a process is using it); close it \
                 and retry",
                rec.dir.display()
            )))
        }
        Err(e) => return Err(fail(format!("unmounting {}: {e}", rec.dir.display()))),
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(rec.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn cleanup_layers(rec: &RestoreRecord) {
    if let Some(root) = rec.upper.parent() {
        if root.file_name().is_some() && rec.work.parent() == Some(root) {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}
