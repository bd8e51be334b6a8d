//! `meta.json`: the commit marker and description of one backup, and the backup handle.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{BackupError, Result};

/// Seconds before the real expiry at which a backup already counts as expired, so a restore
/// that starts just before expiry does not race the store's cleanup.
pub const EXPIRY_BUFFER_SECS: i64 = 60;

/// Largest meta.json accepted from a store (a hostile store must not make us allocate much).
pub const MAX_META_BYTES: u64 = 1024 * 1024;

/// Version of the meta.json schema / archive layout written by this crate.
pub const FORMAT_VERSION: u32 = 1;

/// The handle returned by `create_backup`: all a caller needs to restore later.
/// Serializes as `{"id": "...", "dir": "...", "name": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryBackup {
    /// The backup id (a UUID v4).
    pub id: String,
    /// The directory that was backed up (the default restore target).
    pub dir: PathBuf,
    /// The optional human-readable name.
    #[serde(default)]
    pub name: Option<String>,
}

impl DirectoryBackup {
    /// The handle as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a handle always serializes")
    }

    /// Parse a handle from JSON; the id must be a UUID.
    pub fn from_json(json: &str) -> Result<Self> {
        let handle: DirectoryBackup = serde_json::from_str(json)
            .map_err(|e| BackupError::invalid(format!("backup handle is not valid JSON: {e}")))?;
        parse_id(&handle.id)?;
        Ok(handle)
    }
}

/// Parse a backup id; anything but a UUID is `INVALID_BACKUP_CONFIG`.
pub fn parse_id(id: &str) -> Result<Uuid> {
    Uuid::parse_str(id).map_err(|e| {
        BackupError::invalid(format!("backup id {id:?} is not a UUID: {e}")).with_id(id)
    })
}

/// The content of `backups/{id}/meta.json` (camelCase on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupMeta {
    /// The backup id.
    pub id: String,
    /// The directory that was backed up.
    pub dir: PathBuf,
    /// Optional name.
    pub name: Option<String>,
    /// Size of `data.sqsh` in bytes.
    pub size_bytes: u64,
    /// Time to live in seconds, counted from `createdAt`.
    pub ttl: u64,
    /// Creation time (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Meta/archive layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Lowercase hex SHA-256 of `data.sqsh`.
    pub sha256: String,
    /// Compressor name (e.g. `zstd`).
    pub compression: String,
    /// Number of regular files in the archive.
    pub file_count: u64,
    /// Whether `.gitignore` rules excluded files.
    pub gitignore: bool,
    /// Extra exclude patterns used.
    pub excludes: Vec<String>,
    /// Version of squashbox that wrote the backup.
    pub squashbox_version: String,
}

impl BackupMeta {
    /// Parse and sanity-check a meta.json body.
    pub fn parse(bytes: &[u8], expected_id: &str) -> Result<Self> {
        let meta: BackupMeta = serde_json::from_slice(bytes).map_err(|e| {
            BackupError::restore_failed(format!("meta.json is unparsable: {e}"))
                .with_id(expected_id)
        })?;
        if meta.id != expected_id {
            return Err(BackupError::restore_failed(format!(
                "meta.json names backup {} but was stored under {expected_id}",
                meta.id
            ))
            .with_id(expected_id));
        }
        if meta.sha256.len() != 64 || !meta.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BackupError::restore_failed(format!(
                "meta.json sha256 {:?} is not a hex SHA-256",
                meta.sha256
            ))
            .with_id(expected_id));
        }
        Ok(meta)
    }

    /// The moment the backup expires (`createdAt + ttl`).
    pub fn expires_at(&self) -> OffsetDateTime {
        let ttl = i64::try_from(self.ttl).unwrap_or(i64::MAX);
        self.created_at
            .checked_add(time::Duration::seconds(ttl))
            .unwrap_or(OffsetDateTime::new_utc(
                time::Date::MAX,
                time::Time::MIDNIGHT,
            ))
    }

    /// True when `now + 60 s > expiresAt`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now + time::Duration::seconds(EXPIRY_BUFFER_SECS) > self.expires_at()
    }

    /// The handle for this backup.
    pub fn handle(&self) -> DirectoryBackup {
        DirectoryBackup {
            id: self.id.clone(),
            dir: self.dir.clone(),
            name: self.name.clone(),
        }
    }
}

/// RFC 3339 text of a time (UTC).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
