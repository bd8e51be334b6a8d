//! Managing stored backups: list, read meta, delete, prune, verify.

use serde::Serialize;
use std::path::PathBuf;

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
    for (id, has_meta) in ids {
        if !has_meta || parse_id(&id).is_err() {
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

/// Delete a backup: meta first (the backup stops existing at once), then data.
/// `BACKUP_NOT_FOUND` if neither exists.
pub fn delete_backup(store: &Store, id: &str) -> Result<()> {
    parse_id(id)?;
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

/// Which backups `prune` deletes. A backup is deleted when any set rule selects it.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Delete expired backups.
    pub expired: bool,
    /// Keep only the newest N backups of each name (unnamed backups form one group).
    pub keep_last: Option<usize>,
    /// Delete backups created more than this many seconds ago.
    pub older_than: Option<u64>,
    /// Only report what would be deleted.
    pub dry_run: bool,
    /// Clock for "now".
    pub clock: Clock,
}

/// Delete the backups selected by `options`; returns them.
pub fn prune_backups(store: &Store, options: &PruneOptions) -> Result<Vec<BackupInfo>> {
    if !options.expired && options.keep_last.is_none() && options.older_than.is_none() {
        return Err(BackupError::invalid(
            "prune needs a rule: --expired, --keep-last N or --older-than DURATION",
        ));
    }
    let now = options.clock.now();
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
            match delete_backup(store, &info.id) {
                Ok(()) => {}
                Err(e) if e.code() == "BACKUP_NOT_FOUND" => continue,
                Err(e) => return Err(e),
            }
        }
        deleted.push(info);
    }
    Ok(deleted)
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
