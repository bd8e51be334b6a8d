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

use squashbox_format::Archive;

use crate::error::{BackupError, Result};
use crate::state::{pid_alive, read_record, remove_record, RestoreRecord};

/// Something that keeps a mount alive while held and unmounts when dropped.
type MountGuard = Box<dyn Send>;

fn registry() -> &'static Mutex<HashMap<PathBuf, MountGuard>> {
    static REGISTRY: std::sync::OnceLock<Mutex<HashMap<PathBuf, MountGuard>>> =
        std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Mount `archive` as an overlay on `target` in this process and record it.
pub(crate) fn mount(
    archive: Archive,
    archive_path: &Path,
    target: &Path,
    id: &str,
    state_dir: &Path,
) -> Result<()> {
    let _ = (archive, archive_path, id);
    unmount_previous(target, state_dir)?;
    Err(BackupError::restore_failed(
        "overlay restore is not available in this build yet; restore with copy mode (--copy)",
    )
    .with_dir(target))
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
        }
    }
    if let Some(rec) = record {
        cleanup_layers(&rec);
        remove_record(state_dir, target);
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
