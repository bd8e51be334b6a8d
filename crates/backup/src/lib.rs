//! Directory checkpoint and restore, library-first (the Cloudflare Sandbox
//! `createBackup()` / `restoreBackup()` model, in process).
//!
//! ```no_run
//! use squashbox_backup::{create_backup, restore_backup, BackupOptions, RestoreOptions};
//! let handle = create_backup(BackupOptions::new("/work/project"))?;
//! // ... something destructive happens ...
//! restore_backup(&handle, RestoreOptions::default())?;
//! # Ok::<(), squashbox_backup::BackupError>(())
//! ```
//!
//! A backup is a SquashFS archive of the directory (`backups/{id}/data.sqsh`) plus a
//! `backups/{id}/meta.json` written last as the commit marker, in a [`Store`]: a local
//! directory by default, or any S3-compatible bucket. Restores mount the archive under a
//! copy-on-write overlay ([`RestoreMode::Overlay`]) or extract it ([`RestoreMode::Copy`]).
//! Every error is a [`BackupError`] with a stable [`code`](BackupError::code).

mod cache;
mod clock;
mod create;
mod error;
pub mod lock;
mod manage;
mod meta;
mod overlay_mode;
pub mod paths;
mod restore;
mod runtime;
pub mod state;
mod store;
pub mod validate;

pub use cache::{CACHE_MAX_ENV, DEFAULT_CACHE_MAX_BYTES};
pub use clock::Clock;
pub use create::{create_backup, import_archive, BackupOptions, DEFAULT_ZSTD_LEVEL};
pub use error::{BackupError, ErrorCode, ErrorContext, Result};
pub use manage::{
    delete_backup, delete_backup_with, list_backups, prune_backups, read_meta, verify_backup,
    BackupInfo, OrphanInfo, PruneOptions, PruneReport, VerifyReport, DEFAULT_ORPHAN_MIN_AGE_SECS,
};
pub use meta::{
    parse_id, BackupMeta, DirectoryBackup, EXPIRY_BUFFER_SECS, FORMAT_VERSION, MAX_META_BYTES,
};
pub use overlay_mode::{
    serve_until_unmounted, serve_until_unmounted_then, unmount_restore, AfterUnmount,
};
pub use restore::{restore_backup, restore_by_id, RestoreMode, RestoreOptions, RestoreResult};
pub use squashbox_format::Compressor;
pub use state::{active_restores, RestoreRecord};
pub use store::{ProgressFn, Store, PARALLELISM, PART_SIZE, STORE_ENV};
pub use validate::DEFAULT_TTL_SECS;
