//! This machine's archive cache, `{cache}/archives/`:
//!
//! - `{id}.sqsh`: the archive of a backup in a remote store, downloaded by a restore or seeded
//!   by the create that built it. It is only ever renamed into place complete, hashed and
//!   matching the backup's meta.
//! - `{id}.verified`: the stamp that an archive was hashed and matched (its identity: device,
//!   inode, size, mtime, ctime; and the hash): either the cached `{id}.sqsh`, or a local
//!   store's `data.sqsh` used in place. A cached archive whose stamp does not match is hashed
//!   again before use. The stamp's mtime is the archive's last use (eviction is LRU).
//! - `{id}.json`: a copy of the backup's meta beside a cached `{id}.sqsh`, so that a restore
//!   can proceed from the cache when the store cannot be reached.
//!
//! `{cache}/cache.lock` (flock): a restore holds it shared from looking up its archive until
//! the archive is mounted (or extracted); eviction takes it exclusively and never waits for
//! it, so it never removes a file between a restore's lookup and its use. `{cache}/tmp/` is
//! where a create builds an archive it will seed (same file system as the cache, so the move
//! is a rename).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{flock, FlockOperation};

use crate::create::hash_file;
use crate::error::{BackupError, Result};
use crate::meta::{parse_id, BackupMeta};
use crate::store::Store;

/// Environment variable bounding the archive cache, e.g. `10G` (a size as
/// [`crate::validate::parse_size`] reads it).
pub const CACHE_MAX_ENV: &str = "SQUASHBOX_CACHE_MAX";

/// Default bound of the archive cache: 10 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 10 << 30;

/// Build dirs a crashed create left in `{cache}/tmp/` are removed once this old.
const STALE_BUILD: Duration = Duration::from_secs(86_400);

/// The cache bound: `explicit` if set, else `$SQUASHBOX_CACHE_MAX`, else the default.
pub(crate) fn cache_max(explicit: Option<u64>) -> Result<u64> {
    if let Some(n) = explicit {
        return Ok(n);
    }
    match std::env::var(CACHE_MAX_ENV) {
        Ok(v) if !v.trim().is_empty() => crate::validate::parse_size(&v)
            .map_err(|e| BackupError::invalid(format!("{CACHE_MAX_ENV}: {}", e.message()))),
        _ => Ok(DEFAULT_CACHE_MAX_BYTES),
    }
}

/// One operation's view of the cache: where it is, its bound, and the state dir whose active
/// restores are never evicted.
#[derive(Clone, Debug)]
pub(crate) struct CacheConfig {
    pub dir: PathBuf,
    pub max: u64,
    pub state_dir: PathBuf,
}

fn archives(cache_dir: &Path) -> PathBuf {
    cache_dir.join("archives")
}

/// The dir a create builds a seeded archive in (created if missing).
pub(crate) fn build_dir(cache_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = cache_dir.join("tmp");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A held `cache.lock`; released on drop.
#[derive(Debug)]
pub(crate) struct CacheLock {
    _file: File,
}

fn lock(cache_dir: &Path, op: FlockOperation) -> Option<CacheLock> {
    std::fs::create_dir_all(cache_dir).ok()?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(cache_dir.join("cache.lock"))
        .ok()?;
    loop {
        match flock(&file, op) {
            Ok(()) => return Some(CacheLock { _file: file }),
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    }
}

/// Hold the cache shared while an archive from it is looked up and put to use: eviction skips
/// its turn meanwhile. Best effort (`None` when the lock cannot be had, e.g. a read-only
/// cache).
pub(crate) fn lock_shared(cache_dir: &Path) -> Option<CacheLock> {
    lock(cache_dir, FlockOperation::LockShared)
}

/// Path of the verified archive of `meta`: this machine's cached copy, a local store's file,
/// or a fresh download into the cache. Hold [`lock_shared`] from this call until the archive
/// is in use. Every failure is `BACKUP_RESTORE_FAILED`; no partial file is left in the cache.
pub(crate) fn fetch_archive(store: &Store, meta: &BackupMeta, cache_dir: &Path) -> Result<PathBuf> {
    let id = meta.id.as_str();
    let fail = |msg: String| BackupError::restore_failed(msg).with_id(id);
    let dir = archives(cache_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create cache dir {}: {e}", dir.display())))?;
    let final_path = dir.join(format!("{id}.sqsh"));
    if let Ok(m) = std::fs::metadata(&final_path) {
        if m.len() == meta.size_bytes && cached_copy_matches(&final_path, &m, meta, &dir) {
            mark_used(&dir, id);
            return Ok(final_path);
        }
        // Not the archive meta describes (wrong size, or changed since it was stored): drop
        // it and fetch it again.
        log::warn!(
            "cached {} does not match backup {id}: fetching it again",
            final_path.display()
        );
        forget_in(&dir, id);
    }
    let key = store.data_key(id);
    if let Some(path) = store.local_file(&key) {
        return verify_in_place(&path, meta, &dir);
    }
    let stored = store
        .head_size(&key)
        .map_err(|e| fail(format!("cannot read {key} from {}: {e}", store.url())))?;
    let size = match stored {
        None => {
            return Err(fail(format!(
                "data.sqsh is missing from store {} although meta.json exists: the backup is \
                 damaged; delete it and create a new one",
                store.url()
            )))
        }
        Some(n) if n != meta.size_bytes => {
            return Err(fail(format!(
                "stored data.sqsh is {n} bytes but meta.json says {}: the backup is damaged",
                meta.size_bytes
            )))
        }
        Some(n) => n,
    };
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{id}."))
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(|e| fail(format!("cannot create a file in {}: {e}", dir.display())))?;
    let started = std::time::Instant::now();
    let sha = store
        .download_file(&key, size, temp.as_file())
        .map_err(|e| fail(format!("downloading {key} failed: {e}")))?;
    let downloaded = started.elapsed();
    temp.as_file()
        .sync_all()
        .map_err(|e| fail(format!("syncing the download: {e}")))?;
    log::debug!(
        "fetched {size} bytes of {key}: download and hash {downloaded:?}, fsync {:?}",
        started.elapsed() - downloaded
    );
    if sha != meta.sha256 {
        return Err(fail(format!(
            "downloaded data.sqsh does not match meta.json (sha256 {sha} vs {}): the backup \
             is corrupted",
            meta.sha256
        )));
    }
    write_meta(&dir, meta);
    let file = temp
        .persist(&final_path)
        .map_err(|e| fail(format!("storing the archive in the cache: {e}")))?;
    // The rename changed the file's ctime: stamp the identity it has now, in place.
    if let Ok(m) = file.metadata() {
        write_stamp(&dir, id, &stamp_of(&m, &meta.sha256));
    }
    mark_used(&dir, id);
    Ok(final_path)
}

/// A cached archive of the right size is used when its stamp says it was hashed as it is now;
/// without a matching stamp (a cache from before stamps, or a file changed since) it is hashed
/// now, and stamped when it matches.
fn cached_copy_matches(path: &Path, m: &std::fs::Metadata, meta: &BackupMeta, dir: &Path) -> bool {
    let stamp = stamp_of(m, &meta.sha256);
    let marker = dir.join(format!("{}.verified", meta.id));
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(stamp.as_str()) {
        return true;
    }
    match hash_file(path) {
        Ok((size, sha)) if size == meta.size_bytes && sha == meta.sha256 => {
            write_stamp(dir, &meta.id, &stamp);
            true
        }
        _ => false,
    }
}

/// A local store's archive is already a file on this machine: use it in place instead of
/// copying it into the cache (the copy, its fsync and a second hash pass were most of a cold
/// restore). It gets the same checks as a download: size, then SHA-256 against meta. A
/// verified file is remembered by `{cache}/archives/{id}.verified` (device, inode, size,
/// mtime, ctime and the hash), so later restores skip the hash until the file changes.
fn verify_in_place(path: &Path, meta: &BackupMeta, cache: &Path) -> Result<PathBuf> {
    let id = meta.id.as_str();
    let fail = |msg: String| BackupError::restore_failed(msg).with_id(id);
    let m = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(format!(
                "data.sqsh is missing from the local store ({}) although meta.json exists: the \
                 backup is damaged; delete it and create a new one",
                path.display()
            )))
        }
        Err(e) => return Err(fail(format!("cannot read {}: {e}", path.display()))),
    };
    if m.len() != meta.size_bytes {
        return Err(fail(format!(
            "stored data.sqsh is {} bytes but meta.json says {}: the backup is damaged",
            m.len(),
            meta.size_bytes
        )));
    }
    let stamp = stamp_of(&m, &meta.sha256);
    let marker = cache.join(format!("{id}.verified"));
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(path.to_path_buf());
    }
    let (got_size, sha) =
        hash_file(path).map_err(|e| fail(format!("hashing {}: {e}", path.display())))?;
    if got_size != meta.size_bytes || sha != meta.sha256 {
        let _ = std::fs::remove_file(&marker);
        return Err(fail(format!(
            "stored data.sqsh does not match meta.json (size {got_size} vs {}, sha256 {sha} vs \
             {}): the backup is corrupted",
            meta.size_bytes, meta.sha256
        )));
    }
    write_stamp(cache, id, &stamp);
    Ok(path.to_path_buf())
}

/// What `{id}.verified` holds for a file: its identity (device, inode, size, mtime, ctime)
/// and the hash it was found to have. Any write or replacement through the file system
/// changes the identity, so a stale stamp never matches.
fn stamp_of(m: &std::fs::Metadata, sha256: &str) -> String {
    format!(
        "{} {} {} {}.{} {}.{} {}\n",
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        sha256
    )
}

/// Best effort: without the stamp the next restore just hashes again.
fn write_stamp(archives: &Path, id: &str, stamp: &str) {
    use std::io::Write;
    if std::fs::create_dir_all(archives).is_err() {
        return;
    }
    if let Ok(mut temp) = tempfile::NamedTempFile::new_in(archives) {
        if temp.write_all(stamp.as_bytes()).is_ok() {
            let _ = temp.persist(archives.join(format!("{id}.verified")));
        }
    }
}

/// Record a use of archive `id` for LRU eviction: its stamp's mtime becomes now, or just after
/// the newest other use if that is not earlier (coarse file-system clocks must not make two
/// uses look simultaneous). Best effort.
fn mark_used(archives: &Path, id: &str) {
    let marker = archives.join(format!("{id}.verified"));
    let Ok(file) = File::open(&marker) else {
        return;
    };
    let mut when = SystemTime::now();
    if let Ok(entries) = std::fs::read_dir(archives) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(other) = name.to_str().and_then(|n| n.strip_suffix(".verified")) else {
                continue;
            };
            if other == id {
                continue;
            }
            if let Ok(t) = entry.metadata().and_then(|m| m.modified()) {
                if t >= when {
                    when = t + Duration::from_micros(1);
                }
            }
        }
    }
    // Setting explicit times needs ownership, not write access: a read-only fd does.
    let _ = file.set_modified(when);
}

/// Called by a create that built `meta`'s archive in place in a local store and hashed it:
/// record it as verified, so the first restore on this machine mounts it at once instead of
/// hashing it again. Best effort (a failure only costs that restore a hash pass).
pub(crate) fn remember_verified(archive: &Path, meta: &BackupMeta, cache_dir: &Path) {
    if let Ok(m) = std::fs::metadata(archive) {
        if m.len() == meta.size_bytes {
            write_stamp(&archives(cache_dir), &meta.id, &stamp_of(&m, &meta.sha256));
        }
    }
}

/// Called by a create after its backup is committed: move the archive it built, hashed and
/// uploaded (`archive`, in its private build dir; `hashed` is its metadata from before the
/// hash) into the cache as `{id}.sqsh`, so the first restore on this machine needs no
/// download. A rename only: across file systems (EXDEV) the archive is not seeded. Not seeded
/// either when it alone is larger than the cache bound, or when the file changed since it was
/// hashed. Returns whether it was seeded. Best effort: a failure only costs a download later.
pub(crate) fn seed(
    archive: &Path,
    hashed: &std::fs::Metadata,
    meta: &BackupMeta,
    cache: &CacheConfig,
) -> bool {
    let id = meta.id.as_str();
    if meta.size_bytes > cache.max {
        log::debug!(
            "not keeping archive {id} in the cache: {} bytes is above its bound of {}",
            meta.size_bytes,
            cache.max
        );
        return false;
    }
    match std::fs::symlink_metadata(archive) {
        Ok(now) if now.is_file() && stamp_of(&now, "") == stamp_of(hashed, "") => {}
        _ => {
            log::warn!(
                "not keeping archive {id} in the cache: {} changed after it was hashed",
                archive.display()
            );
            return false;
        }
    }
    let dir = archives(&cache.dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        log::warn!(
            "not keeping archive {id} in the cache: {}: {e}",
            dir.display()
        );
        return false;
    }
    let final_path = dir.join(format!("{id}.sqsh"));
    {
        // Shared: an eviction must not see the archive before its stamp marks it just used.
        let _using = lock_shared(&cache.dir);
        write_meta(&dir, meta);
        if let Err(e) = std::fs::rename(archive, &final_path) {
            if e.raw_os_error() == Some(libc::EXDEV) {
                log::info!(
                    "not keeping archive {id} in the cache: it was built on another file \
                     system than {} (set no temp dir, or one on the cache's file system)",
                    dir.display()
                );
            } else {
                log::warn!("not keeping archive {id} in the cache: {e}");
            }
            let _ = std::fs::remove_file(dir.join(format!("{id}.json")));
            return false;
        }
        match std::fs::symlink_metadata(&final_path) {
            Ok(m) => write_stamp(&dir, id, &stamp_of(&m, &meta.sha256)),
            Err(_) => return false,
        }
        mark_used(&dir, id);
    }
    evict(cache, Some(id));
    true
}

/// Drop backup `id` from the cache at `cache_dir` (archive and stamp). Missing is fine.
pub(crate) fn forget(cache_dir: &Path, id: &str) {
    forget_in(&archives(cache_dir), id);
}

fn forget_in(archives: &Path, id: &str) {
    let _ = std::fs::remove_file(archives.join(format!("{id}.sqsh")));
    let _ = std::fs::remove_file(archives.join(format!("{id}.verified")));
    let _ = std::fs::remove_file(archives.join(format!("{id}.json")));
}

/// Best effort: keep a copy of `meta` beside the cached archive it describes.
fn write_meta(archives: &Path, meta: &BackupMeta) {
    use std::io::Write;
    let Ok(json) = serde_json::to_vec_pretty(meta) else {
        return;
    };
    if let Ok(mut temp) = tempfile::NamedTempFile::new_in(archives) {
        if temp.write_all(&json).is_ok() {
            let _ = temp.persist(archives.join(format!("{}.json", meta.id)));
        }
    }
}

/// The meta kept beside backup `id`'s cached archive, if this machine has both: what a
/// restore goes by when the store cannot be reached.
pub(crate) fn cached_meta(cache_dir: &Path, id: &str) -> Option<BackupMeta> {
    let dir = archives(cache_dir);
    if !dir.join(format!("{id}.sqsh")).is_file() {
        return None;
    }
    let bytes = std::fs::read(dir.join(format!("{id}.json"))).ok()?;
    BackupMeta::parse(&bytes, id).ok()
}

/// Bound the cache: while its archives add up to more than `cache.max` bytes, remove the least
/// recently used, except `keep` (the one just inserted or used) and those mounted by an active
/// restore recorded in `cache.state_dir`. Unlinking a mounted archive would be safe (the open
/// file stays readable) but would free nothing until the unmount and force a download next
/// time, so those count towards the bound and stay. Skipped, best effort, when another process
/// is using the cache: whoever is last to use it evicts.
pub(crate) fn evict(cache: &CacheConfig, keep: Option<&str>) {
    let Some(_exclusive) = lock(&cache.dir, FlockOperation::NonBlockingLockExclusive) else {
        return;
    };
    let dir = archives(&cache.dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    struct Cached {
        id: String,
        size: u64,
        last_use: SystemTime,
        file: (u64, u64),
    }
    let mut cached = Vec::new();
    let mut total = 0u64;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') && name.ends_with(".part") {
            // A download that never finished: every download holds the lock shared, so none
            // is running now.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let Some(id) = name.strip_suffix(".sqsh") else {
            continue;
        };
        if parse_id(id).is_err() {
            continue;
        }
        let Ok(m) = entry.metadata() else { continue };
        if !m.is_file() {
            continue;
        }
        let last_use = std::fs::metadata(dir.join(format!("{id}.verified")))
            .and_then(|s| s.modified())
            .or_else(|_| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        total += m.len();
        cached.push(Cached {
            id: id.to_string(),
            size: m.len(),
            last_use,
            file: (m.dev(), m.ino()),
        });
    }
    remove_stale_builds(&cache.dir);
    if total <= cache.max {
        return;
    }
    let mounted: std::collections::HashSet<(u64, u64)> =
        crate::state::active_restores(&cache.state_dir)
            .iter()
            .filter_map(|r| std::fs::metadata(&r.archive).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect();
    cached.sort_by(|a, b| a.last_use.cmp(&b.last_use).then_with(|| a.id.cmp(&b.id)));
    for c in cached {
        if total <= cache.max {
            break;
        }
        if keep == Some(c.id.as_str()) || mounted.contains(&c.file) {
            continue;
        }
        match std::fs::remove_file(dir.join(format!("{}.sqsh", c.id))) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                log::warn!("cannot evict archive {} from the cache: {e}", c.id);
                continue;
            }
        }
        let _ = std::fs::remove_file(dir.join(format!("{}.verified", c.id)));
        let _ = std::fs::remove_file(dir.join(format!("{}.json", c.id)));
        total -= c.size;
        log::debug!("evicted archive {} ({} bytes) from the cache", c.id, c.size);
    }
    if total > cache.max {
        log::debug!(
            "the archive cache holds {total} bytes, above its bound of {}: the rest is in use",
            cache.max
        );
    }
}

/// Remove build dirs of creates that crashed (`{cache}/tmp/.squashbox-backup-*`, a day old).
fn remove_stale_builds(cache_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(cache_dir.join("tmp")) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(".squashbox-backup-"))
        {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_BUILD);
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
