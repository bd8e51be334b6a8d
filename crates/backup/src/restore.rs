//! `restore_backup`: bring a directory back to a backup's state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use squashbox_extract::{extract, ExtractOptions};
use squashbox_format::Archive;

use crate::cache::{self, fetch_archive, CacheConfig};
use crate::clock::Clock;
use crate::error::{BackupError, ErrorCode, Result};
use crate::lock::lock_dir;
use crate::manage::read_meta;
use crate::meta::{parse_id, rfc3339, DirectoryBackup};
use crate::overlay_mode;
use crate::store::Store;
use crate::validate::check_dir_path;

/// How the backup is put back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// Mount the archive as the read-only lower layer of a copy-on-write overlay on the
    /// directory; writes go to a fresh upper dir under the state dir. Instant, any size.
    #[default]
    Overlay,
    /// Extract real files, replacing the directory's content atomically (extract beside it,
    /// then swap). A failure leaves the old content.
    Copy,
}

/// Where and how to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Target directory (`None`: the directory the backup was made from).
    pub dir: Option<PathBuf>,
    /// Overlay (default) or copy.
    pub mode: RestoreMode,
    /// The store (`None`: [`Store::open_default`]).
    pub store: Option<Store>,
    /// Clock for the expiry check.
    pub clock: Clock,
    /// State dir for locks, overlay upper dirs and restore records (`None`: default).
    pub state_dir: Option<PathBuf>,
    /// Archive cache dir (`None`: [`crate::paths::cache_dir`]).
    pub cache_dir: Option<PathBuf>,
    /// Bound of the archive cache in bytes, enforced after each restore by evicting the least
    /// recently used archives (`None`: `$SQUASHBOX_CACHE_MAX`, else 10 GiB).
    pub cache_max_bytes: Option<u64>,
    /// Overlay mode: never sync the overlay's upper dir (`OverlayOptions::volatile`, like the
    /// kernel overlayfs' `-o volatile`): `fsync` there returns at once; after a machine crash
    /// the changes made through the restored directory may be partly lost. Ignored in copy
    /// mode.
    pub volatile: bool,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreResult {
    /// Always true on `Ok` (kept for parity with the sandbox API).
    pub success: bool,
    /// The restored directory.
    pub dir: PathBuf,
    /// The backup id.
    pub id: String,
}

/// Restore backup `handle` (its `dir` is the default target).
///
/// Errors: id not a UUID or bad target path → `INVALID_BACKUP_CONFIG`; no meta →
/// `BACKUP_NOT_FOUND`; `now + 60 s > createdAt + ttl` → `BACKUP_EXPIRED` (expiry in context);
/// data missing, wrong size or hash, unparsable meta, unreadable archive, mount or extract
/// failure → `BACKUP_RESTORE_FAILED`, with the target left exactly as before.
pub fn restore_backup(handle: &DirectoryBackup, options: RestoreOptions) -> Result<RestoreResult> {
    parse_id(&handle.id)?;
    let target = options.dir.clone().unwrap_or_else(|| handle.dir.clone());
    restore_into(&handle.id, &target, &options)
}

/// Restore backup `id`, by default into the directory recorded in its meta.
pub fn restore_by_id(id: &str, options: RestoreOptions) -> Result<RestoreResult> {
    parse_id(id)?;
    let target = match &options.dir {
        Some(d) => d.clone(),
        None => {
            let store = open_store(&options)?;
            let cache_dir = match &options.cache_dir {
                Some(d) => d.clone(),
                None => crate::paths::cache_dir()?,
            };
            meta_of(&store, id, &cache_dir)?.dir
        }
    };
    restore_into(id, &target, &options)
}

/// The backup's meta from the store; when the store cannot be reached (not when it says the
/// backup does not exist), the copy kept beside this machine's cached archive, if any.
fn meta_of(store: &Store, id: &str, cache_dir: &Path) -> Result<crate::meta::BackupMeta> {
    match read_meta(store, id) {
        Err(e) if e.kind() == ErrorCode::InvalidBackupConfig => {
            match cache::cached_meta(cache_dir, id) {
                Some(meta) => {
                    log::warn!("{e}; restoring {id} from this machine's cache");
                    Ok(meta)
                }
                None => Err(e),
            }
        }
        other => other,
    }
}

fn open_store(options: &RestoreOptions) -> Result<Store> {
    match &options.store {
        Some(s) => Ok(s.clone()),
        None => Store::open_default(),
    }
}

fn restore_into(id: &str, target: &Path, options: &RestoreOptions) -> Result<RestoreResult> {
    check_dir_path(target)?;
    if target.parent().is_none() {
        return Err(BackupError::invalid("cannot restore onto /").with_dir(target));
    }
    let store = open_store(options)?;
    let state_dir = match &options.state_dir {
        Some(d) => d.clone(),
        None => crate::paths::state_dir()?,
    };
    let cache = CacheConfig {
        dir: match &options.cache_dir {
            Some(d) => d.clone(),
            None => crate::paths::cache_dir()?,
        },
        max: cache::cache_max(options.cache_max_bytes)?,
        state_dir: state_dir.clone(),
    };
    let meta = meta_of(&store, id, &cache.dir).map_err(|e| e.with_dir(target))?;
    let now = options.clock.now();
    if meta.is_expired(now) {
        let at = rfc3339(meta.expires_at());
        return Err(BackupError::new(
            ErrorCode::BackupExpired,
            format!("backup {id} expired at {at} (restores are refused from 60 s before expiry)"),
        )
        .with_id(id)
        .with_dir(target)
        .with_expired_at(at));
    }
    // Held from the lookup until the archive is mounted (recorded) or extracted: no eviction
    // removes it in between.
    let using = cache::lock_shared(&cache.dir);
    let done = use_archive(&store, &meta, target, options, &state_dir, &cache.dir);
    drop(using);
    cache::evict(&cache, Some(id));
    done?;
    Ok(RestoreResult {
        success: true,
        dir: target.to_path_buf(),
        id: id.to_string(),
    })
}

/// Fetch the archive, check it opens, then mount or extract it onto `target`.
fn use_archive(
    store: &Store,
    meta: &crate::meta::BackupMeta,
    target: &Path,
    options: &RestoreOptions,
    state_dir: &Path,
    cache_dir: &Path,
) -> Result<()> {
    let id = meta.id.as_str();
    let fail = |msg: String| {
        BackupError::restore_failed(msg)
            .with_id(id)
            .with_dir(target)
    };
    let archive_path = fetch_archive(store, meta, cache_dir).map_err(|e| e.with_dir(target))?;
    // Opening checks the superblock and tables before anything at the target changes.
    let archive = Archive::open_path(&archive_path)
        .map_err(|e| fail(format!("the archive cannot be read: {e}")))?;

    let _lock = lock_dir(state_dir, target)
        .map_err(|e| fail(format!("cannot take the directory lock: {e}")))?;
    match options.mode {
        RestoreMode::Copy => restore_copy(&archive, target, state_dir).map_err(fail)?,
        RestoreMode::Overlay => {
            let volatile = options.volatile;
            overlay_mode::mount(archive, &archive_path, target, id, state_dir, volatile)
                .map_err(|e| e.recode(ErrorCode::BackupRestoreFailed).with_id(id))?
        }
    }
    Ok(())
}

/// Extract into a hidden sibling, then atomically exchange it with the target (or rename it
/// into place when the target does not exist), then delete the old content.
fn restore_copy(
    archive: &Archive,
    target: &Path,
    state_dir: &Path,
) -> std::result::Result<(), String> {
    let parent = target.parent().expect("checked: target has a parent");
    let name = target
        .file_name()
        .ok_or_else(|| format!("{} has no final component", target.display()))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let staging = parent.join(format!(
        ".{}.squashbox-restore-{}",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    extract(archive, None, &staging, &ExtractOptions::default())
        .map_err(|e| format!("extracting the archive failed: {e}"))?;
    // A previous overlay restore on the target must go before its content can be swapped.
    if let Err(e) = overlay_mode::unmount_previous(target, state_dir) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e.message().to_string());
    }
    let swap = match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staging,
            rustix::fs::CWD,
            target,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| format!("swapping the restored tree into place failed: {e}")),
        Ok(_) => Err(format!(
            "{} exists and is not a directory",
            target.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::rename(&staging, target)
            .map_err(|e| format!("moving the restored tree into place failed: {e}")),
        Err(e) => Err(format!("cannot inspect {}: {e}", target.display())),
    };
    // After a successful exchange `staging` holds the old content; after a failure it holds
    // the unused extraction. Either way it goes.
    if staging.exists() {
        if let Err(e) = std::fs::remove_dir_all(&staging) {
            log::warn!("could not remove {}: {e}", staging.display());
        }
    }
    swap
}
