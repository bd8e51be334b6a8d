//! Local cache of downloaded archives: `{cache}/archives/{id}.sqsh`, present only once its
//! size and SHA-256 matched the backup's meta (downloads go to a temp file renamed into place).

use std::path::{Path, PathBuf};

use crate::create::hash_file;
use crate::error::{BackupError, Result};
use crate::meta::BackupMeta;
use crate::store::Store;

/// Path of the verified archive of `meta` in the cache, downloading it if needed.
/// Every failure is `BACKUP_RESTORE_FAILED`; no partial file is left in the cache.
pub fn fetch_archive(store: &Store, meta: &BackupMeta, cache_dir: &Path) -> Result<PathBuf> {
    let id = meta.id.as_str();
    let fail = |msg: String| BackupError::restore_failed(msg).with_id(id);
    let dir = cache_dir.join("archives");
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(format!("cannot create cache dir {}: {e}", dir.display())))?;
    let final_path = dir.join(format!("{id}.sqsh"));
    if let Ok(m) = std::fs::metadata(&final_path) {
        if m.len() == meta.size_bytes {
            return Ok(final_path);
        }
        // A cached file of the wrong size cannot be ours: drop it and download again.
        let _ = std::fs::remove_file(&final_path);
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
    let got_size = size;
    if got_size != meta.size_bytes || sha != meta.sha256 {
        return Err(fail(format!(
            "downloaded data.sqsh does not match meta.json (size {got_size} vs {}, sha256 {sha} \
             vs {}): the backup is corrupted",
            meta.size_bytes, meta.sha256
        )));
    }
    temp.persist(&final_path)
        .map_err(|e| fail(format!("storing the archive in the cache: {e}")))?;
    Ok(final_path)
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
    use std::os::unix::fs::MetadataExt;
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

/// Called by a create that built `meta`'s archive in place in a local store and hashed it:
/// record it as verified, so the first restore on this machine mounts it at once instead of
/// hashing it again. Best effort (a failure only costs that restore a hash pass).
pub(crate) fn remember_verified(archive: &Path, meta: &BackupMeta, cache_dir: &Path) {
    if let Ok(m) = std::fs::metadata(archive) {
        if m.len() == meta.size_bytes {
            write_stamp(
                &cache_dir.join("archives"),
                &meta.id,
                &stamp_of(&m, &meta.sha256),
            );
        }
    }
}
