//! Managing stored backups: list, read meta, delete, prune, verify.

use serde::Serialize;
use std::path::{Path, PathBuf};

use crate::clock::Clock;
use crate::error::{BackupError, Result};
use crate::meta::{parse_id, rfc3339, BackupMeta, MAX_META_BYTES};
use crate::store::Store;

/// One backup as `list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupInfo {
    /// Backup id.
    pub id: String,
    /// Directory that was backed up.
    pub dir: PathBuf,
    /// Name, if any.
    pub name: Option<String>,
    /// Archive size in bytes.
    pub size_bytes: u64,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Expiry time (RFC 3339).
    pub expires_at: String,
    /// True when the backup counts as expired now (60 s buffer included).
    pub expired: bool,
    /// The full meta.
    #[serde(skip)]
    pub meta: BackupMeta,
}

impl BackupInfo {
    fn new(meta: BackupMeta, clock: &Clock) -> Self {
        BackupInfo {
            id: meta.id.clone(),
            dir: meta.dir.clone(),
            name: meta.name.clone(),
            size_bytes: meta.size_bytes,
            created_at: rfc3339(meta.created_at),
            expires_at: rfc3339(meta.expires_at()),
            expired: meta.is_expired(clock.now()),
            meta,
        }
    }
}

fn store_error(store: &Store, e: object_store::Error) -> BackupError {
    BackupError::invalid(format!(
        "store {} is not reachable or not configured: {e}",
        store.url()
    ))
    .with_source(e)
}

/// Read and parse `backups/{id}/meta.json`. Missing → `BACKUP_NOT_FOUND`; unparsable →
/// `BACKUP_RESTORE_FAILED`; store trouble → `INVALID_BACKUP_CONFIG`.
pub fn read_meta(store: &Store, id: &str) -> Result<BackupMeta> {
    parse_id(id)?;
    let key = store.meta_key(id);
    match store.get_small(&key, MAX_META_BYTES) {
        Ok(Some(bytes)) => BackupMeta::parse(&bytes, id),
        Ok(None) => Err(
            BackupError::not_found(format!("no backup {id} in store {}", store.url())).with_id(id),
        ),
        Err(object_store::Error::Generic { source, .. })
            if source.to_string().contains("allowed") =>
        {
            Err(
                BackupError::restore_failed(format!("meta.json is unparsable: {source}"))
                    .with_id(id),
            )
        }
        Err(e) => Err(store_error(store, e).with_id(id)),
    }
}

/// Every committed backup in the store, oldest first. Backups whose meta cannot be parsed are
/// skipped (with a log warning); uploads without meta are not backups and are not listed.
pub fn list_backups(store: &Store, clock: &Clock) -> Result<Vec<BackupInfo>> {
    let ids = store.list_ids().map_err(|e| store_error(store, e))?;
    let mut out = Vec::new();
    for listed in ids {
        let id = listed.id;
        if !listed.has_meta || parse_id(&id).is_err() {
            continue;
        }
        match read_meta(store, &id) {
            Ok(meta) => out.push(BackupInfo::new(meta, clock)),
            Err(e) if e.code() == "BACKUP_NOT_FOUND" => {} // deleted meanwhile
            Err(e) if e.code() == "BACKUP_RESTORE_FAILED" => {
                log::warn!("skipping backup {id}: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| {
        a.meta
            .created_at
            .cmp(&b.meta.created_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(out)
}

/// Delete a backup: meta first (the backup stops existing at once), then data; then drop it
/// from this machine's archive cache (the default one, [`crate::paths::cache_dir`]).
/// `BACKUP_NOT_FOUND` if neither exists.
pub fn delete_backup(store: &Store, id: &str) -> Result<()> {
    delete_backup_with(store, id, None)
}

/// [`delete_backup`], dropping the backup from the archive cache at `cache_dir` (`None`: the
/// default cache). The cache entry (`{id}.sqsh`, `{id}.verified`) goes even when the store
/// no longer has the backup. An archive mounted by an active restore stays readable until it
/// is unmounted.
pub fn delete_backup_with(store: &Store, id: &str, cache_dir: Option<&Path>) -> Result<()> {
    parse_id(id)?;
    let deleted = delete_stored(store, id);
    let cache_dir = match cache_dir {
        Some(d) => Some(d.to_path_buf()),
        None => crate::paths::cache_dir().ok(),
    };
    if let Some(cache_dir) = cache_dir {
        crate::cache::forget(&cache_dir, id);
    }
    deleted
}

fn delete_stored(store: &Store, id: &str) -> Result<()> {
    let meta_key = store.meta_key(id);
    let data_key = store.data_key(id);
    let had_meta = store
        .head_size(&meta_key)
        .map_err(|e| store_error(store, e).with_id(id))?
        .is_some();
    let had_data = store
        .head_size(&data_key)
        .map_err(|e| store_error(store, e).with_id(id))?
        .is_some();
    if !had_meta && !had_data {
        return Err(
            BackupError::not_found(format!("no backup {id} in store {}", store.url())).with_id(id),
        );
    }
    store
        .delete(&meta_key)
        .map_err(|e| store_error(store, e).with_id(id))?;
    store
        .delete(&data_key)
        .map_err(|e| store_error(store, e).with_id(id))?;
    Ok(())
}

/// Default [`PruneOptions::orphan_min_age`]: one day. A create writes `data.sqsh` first and
/// `meta.json` last, so data without meta is either a crashed create or one still uploading;
/// only the age tells them apart, and no create runs anywhere near this long.
pub const DEFAULT_ORPHAN_MIN_AGE_SECS: u64 = 86_400;

/// Which backups `prune` deletes. A backup is deleted when any set rule selects it. Orphan
/// data (see [`PruneOptions::orphan_min_age`]) is cleaned up by every prune.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Delete expired backups.
    pub expired: bool,
    /// Keep only the newest N backups of each name (unnamed backups form one group).
    pub keep_last: Option<usize>,
    /// Delete backups created more than this many seconds ago.
    pub older_than: Option<u64>,
    /// Only clean up orphan data: lets a prune run with no backup rule.
    pub orphans: bool,
    /// Orphan data (`backups/{id}/data.sqsh` without `meta.json`: a create that crashed, or
    /// one still uploading) is deleted once it is at least this many seconds old, by the
    /// store's modification time and `clock`. Default [`DEFAULT_ORPHAN_MIN_AGE_SECS`]; it
    /// must exceed the longest create (build + upload), or a running create loses its data.
    pub orphan_min_age: u64,
    /// Only report what would be deleted.
    pub dry_run: bool,
    /// Clock for "now".
    pub clock: Clock,
    /// This machine's archive cache, from which deleted backups are dropped (`None`:
    /// [`crate::paths::cache_dir`]).
    pub cache_dir: Option<PathBuf>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            expired: false,
            keep_last: None,
            older_than: None,
            orphans: false,
            orphan_min_age: DEFAULT_ORPHAN_MIN_AGE_SECS,
            dry_run: false,
            clock: Clock::default(),
            cache_dir: None,
        }
    }
}

/// What [`prune_backups`] deleted (or, on a dry run, would delete).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    /// Backups selected by the rules.
    pub deleted: Vec<BackupInfo>,
    /// Orphan data cleaned up.
    pub orphans: Vec<OrphanInfo>,
}

/// Data left without meta by a create that never finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrphanInfo {
    /// The id the create had drawn.
    pub id: String,
    /// The object (or, in a local store, the staging file of an unfinished upload).
    pub key: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Its last modification (RFC 3339).
    pub last_modified: String,
    /// Its age in seconds when prune looked.
    pub age_secs: i64,
}

/// Delete the backups selected by `options` and the orphan data older than
/// `options.orphan_min_age`; returns both.
pub fn prune_backups(store: &Store, options: &PruneOptions) -> Result<PruneReport> {
    if !options.expired
        && options.keep_last.is_none()
        && options.older_than.is_none()
        && !options.orphans
    {
        return Err(BackupError::invalid(
            "prune needs a rule: --expired, --keep-last N, --older-than DURATION or --orphans",
        ));
    }
    let now = options.clock.now();
    let orphans = prune_orphans(store, options, now)?;
    let all = list_backups(store, &options.clock)?;
    let mut doomed = vec![false; all.len()];
    for (i, info) in all.iter().enumerate() {
        if options.expired && info.expired {
            doomed[i] = true;
        }
        if let Some(secs) = options.older_than {
            let age = (now - info.meta.created_at).whole_seconds();
            if age > i64::try_from(secs).unwrap_or(i64::MAX) {
                doomed[i] = true;
            }
        }
    }
    if let Some(keep) = options.keep_last {
        let mut groups: std::collections::BTreeMap<Option<&str>, Vec<usize>> = Default::default();
        for (i, info) in all.iter().enumerate() {
            groups.entry(info.name.as_deref()).or_default().push(i);
        }
        for indexes in groups.values() {
            // `all` is oldest first, so the newest are at the end.
            let excess = indexes.len().saturating_sub(keep);
            for &i in &indexes[..excess] {
                doomed[i] = true;
            }
        }
    }
    let mut deleted = Vec::new();
    for (info, doomed) in all.into_iter().zip(doomed) {
        if !doomed {
            continue;
        }
        if !options.dry_run {
            match delete_backup_with(store, &info.id, options.cache_dir.as_deref()) {
                Ok(()) => {}
                Err(e) if e.code() == "BACKUP_NOT_FOUND" => continue,
                Err(e) => return Err(e),
            }
        }
        deleted.push(info);
    }
    Ok(PruneReport { deleted, orphans })
}

/// Delete `data.sqsh` objects without `meta.json` that are at least `orphan_min_age` old
/// (plus, in a local store, staging files of unfinished uploads as old as that).
fn prune_orphans(
    store: &Store,
    options: &PruneOptions,
    now: time::OffsetDateTime,
) -> Result<Vec<OrphanInfo>> {
    let min_age = i64::try_from(options.orphan_min_age).unwrap_or(i64::MAX);
    // A store clock ahead of ours makes objects look younger (never older): clamp at 0 so
    // that a minimum age of 0 means "any age".
    let age_of = |unix: i64| now.unix_timestamp().saturating_sub(unix).max(0);
    let when = |unix: i64| {
        time::OffsetDateTime::from_unix_timestamp(unix)
            .map(rfc3339)
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for listed in store.list_ids().map_err(|e| store_error(store, e))? {
        let Some(data) = listed.data else { continue };
        // Only ids a create draws (UUIDs): anything else under backups/ is not ours.
        if listed.has_meta || parse_id(&listed.id).is_err() {
            continue;
        }
        let age = age_of(data.last_modified);
        if age < min_age {
            continue;
        }
        let data_key = store.data_key(&listed.id);
        if !options.dry_run {
            // Look once more: a create that just wrote its meta has committed a backup.
            let meta_now = store
                .head_size(&store.meta_key(&listed.id))
                .map_err(|e| store_error(store, e).with_id(&listed.id))?;
            if meta_now.is_some() {
                continue;
            }
            store
                .delete(&data_key)
                .map_err(|e| store_error(store, e).with_id(&listed.id))?;
        }
        out.push(OrphanInfo {
            id: listed.id,
            key: data_key.to_string(),
            size_bytes: data.size,
            last_modified: when(data.last_modified),
            age_secs: age,
        });
    }
    for (path, mtime) in store.local_staging_files() {
        let age = age_of(mtime);
        if age < min_age {
            continue;
        }
        let size = std::fs::symlink_metadata(&path)
            .map(|m| m.len())
            .unwrap_or(0);
        let id = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !options.dry_run {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    // The id's dir, if that was all it held (a failure just leaves it).
                    if let Some(dir) = path.parent() {
                        let _ = std::fs::remove_dir(dir);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(BackupError::invalid(format!(
                        "cannot delete the unfinished upload {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        out.push(OrphanInfo {
            id,
            key: path.display().to_string(),
            size_bytes: size,
            last_modified: when(mtime),
            age_secs: age,
        });
    }
    Ok(out)
}

/// Result of [`verify_backup`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Backup id.
    pub id: String,
    /// True when the stored archive has the size and SHA-256 recorded in meta.
    pub ok: bool,
    /// Size recorded in meta.
    pub expected_size: u64,
    /// Size found (`None`: data missing).
    pub actual_size: Option<u64>,
    /// SHA-256 recorded in meta.
    pub expected_sha256: String,
    /// SHA-256 found (`None`: data missing).
    pub actual_sha256: Option<String>,
    /// What is wrong, if anything.
    pub problem: Option<String>,
}

/// Re-hash the stored archive of backup `id` and compare it with its meta.
pub fn verify_backup(store: &Store, id: &str) -> Result<VerifyReport> {
    let meta = read_meta(store, id)?;
    let found = store
        .hash_object(&store.data_key(id))
        .map_err(|e| store_error(store, e).with_id(id))?;
    let (actual_size, actual_sha256) = match found {
        Some((n, h)) => (Some(n), Some(h)),
        None => (None, None),
    };
    let problem = match (&actual_size, &actual_sha256) {
        (None, _) => Some("data.sqsh is missing although meta.json exists".to_string()),
        (Some(n), _) if *n != meta.size_bytes => Some(format!(
            "data.sqsh is {n} bytes, meta says {}",
            meta.size_bytes
        )),
        (_, Some(h)) if *h != meta.sha256 => Some(format!(
            "data.sqsh SHA-256 is {h}, meta says {}",
            meta.sha256
        )),
        _ => None,
    };
    Ok(VerifyReport {
        id: id.to_string(),
        ok: problem.is_none(),
        expected_size: meta.size_bytes,
        actual_size,
        expected_sha256: meta.sha256,
        actual_sha256,
        problem,
    })
}
