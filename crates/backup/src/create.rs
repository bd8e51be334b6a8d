//! `create_backup`: build the directory into a SquashFS archive and upload it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use squashbox_build::{build_image, BuildError, BuildOptions};
use squashbox_format::Compressor;

use crate::cache::CacheConfig;
use crate::clock::Clock;
use crate::error::{BackupError, Result};
use crate::lock::{hex, lock_dir};
use crate::meta::{BackupMeta, DirectoryBackup, FORMAT_VERSION};
use crate::store::{ProgressFn, Store};
use crate::validate::{check_name, check_source_dir, check_ttl, DEFAULT_TTL_SECS};

/// What to back up and where. Build with [`BackupOptions::new`] and adjust fields.
#[derive(Clone)]
pub struct BackupOptions {
    /// The directory to back up (absolute, existing).
    pub dir: PathBuf,
    /// Optional name (at most 256 characters, no control characters).
    pub name: Option<String>,
    /// Time to live in whole seconds (default 259200 = 3 days).
    pub ttl: u64,
    /// Leave out what git would ignore.
    pub gitignore: bool,
    /// Extra exclude patterns (gitignore syntax).
    pub excludes: Vec<String>,
    /// Archive compressor (default zstd).
    pub compression: Compressor,
    /// Compression level (`None`: [`DEFAULT_ZSTD_LEVEL`] for zstd, the builder's default for
    /// the others).
    pub level: Option<i32>,
    /// The store (`None`: [`Store::open_default`]).
    pub store: Option<Store>,
    /// Clock for `createdAt` (tests inject one).
    pub clock: Clock,
    /// State directory for locks (`None`: [`crate::paths::state_dir`]).
    pub state_dir: Option<PathBuf>,
    /// Archive cache of this machine (`None`: [`crate::paths::cache_dir`]). A backup built
    /// in place in a local store is recorded there as verified, so restoring it on this
    /// machine does not hash it again; with [`seed_cache`](Self::seed_cache) the archive
    /// uploaded to another store is kept there, so restoring it here needs no download.
    pub cache_dir: Option<PathBuf>,
    /// Keep the archive uploaded to a non-local store in this machine's cache (default
    /// true): it is built in `{cache}/tmp/` and, once the backup is committed, renamed to
    /// `{cache}/archives/{id}.sqsh`. Turn off on machines that create backups but never
    /// restore them. Not done when the archive alone exceeds the cache bound, or when
    /// `temp_dir` is on another file system (only a rename, never a copy).
    pub seed_cache: bool,
    /// Bound of the archive cache in bytes, enforced after seeding (`None`:
    /// `$SQUASHBOX_CACHE_MAX`, else 10 GiB; see [`crate::RestoreOptions::cache_max_bytes`]).
    pub cache_max_bytes: Option<u64>,
    /// Where the archive is built before upload. `None`: straight into a local store (no
    /// copy); for other stores `{cache}/tmp/` when seeding the cache, else the system temp
    /// dir.
    pub temp_dir: Option<PathBuf>,
    /// Called with bytes uploaded so far.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for BackupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupOptions")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .field("gitignore", &self.gitignore)
            .field("excludes", &self.excludes)
            .field("compression", &self.compression)
            .field("store", &self.store.as_ref().map(|s| s.url().to_string()))
            .finish_non_exhaustive()
    }
}

impl BackupOptions {
    /// Defaults for backing up `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BackupOptions {
            dir: dir.into(),
            name: None,
            ttl: DEFAULT_TTL_SECS,
            gitignore: false,
            excludes: Vec::new(),
            compression: Compressor::Zstd,
            level: None,
            store: None,
            clock: Clock::system(),
            state_dir: None,
            cache_dir: None,
            seed_cache: true,
            cache_max_bytes: None,
            temp_dir: None,
            progress: None,
        }
    }
}

/// zstd's level for backups when none is given. A checkpoint sits on the interactive path
/// ("save now"), so speed comes first: on a 1 GB source tree zstd level 1 builds in about
/// the time mksquashfs needs with lz4 (1.9 s vs 2.3 s on 2 cores) while storing 21% fewer
/// bytes than lz4; level 3 (the `mkfs` default) saves another 4.5% for 30% more CPU.
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

/// Back up `options.dir`. Returns the handle to restore it later.
///
/// The archive is built straight into a local store's `backups/{id}/data.sqsh` (or into a
/// private temp dir and uploaded there), its stored size checked, and only then
/// `backups/{id}/meta.json` is written. Any failure removes
/// whatever was uploaded (best effort) and the temp files, and returns `BACKUP_CREATE_FAILED`.
pub fn create_backup(options: BackupOptions) -> Result<DirectoryBackup> {
    check_source_dir(&options.dir)?;
    if let Some(name) = &options.name {
        check_name(name)?;
    }
    check_ttl(options.ttl)?;
    if !options.compression.can_write() {
        return Err(BackupError::invalid(format!(
            "compression {} cannot be written",
            options.compression
        )));
    }
    let store = match &options.store {
        Some(s) => s.clone(),
        None => Store::open_default()?,
    };
    store.check_reachable()?;
    let state_dir = match &options.state_dir {
        Some(d) => d.clone(),
        None => crate::paths::state_dir()?,
    };
    // Seed this machine's cache with the archive of a non-local store (a local store's
    // archive is used in place by restores). No cache dir known (no HOME): no seeding.
    let cache_dir = options
        .cache_dir
        .clone()
        .or_else(|| crate::paths::cache_dir().ok());
    let seed_to = match cache_dir {
        Some(dir) if options.seed_cache && !store.is_local() => Some(CacheConfig {
            dir,
            max: crate::cache::cache_max(options.cache_max_bytes)?,
            state_dir: state_dir.clone(),
        }),
        _ => None,
    };
    let dir = options.dir.clone();
    let _lock = lock_dir(&state_dir, &dir).map_err(|e| {
        BackupError::create_failed(format!(
            "cannot take the directory lock under {}: {e}",
            state_dir.display()
        ))
        .with_dir(&dir)
    })?;

    let id = uuid::Uuid::new_v4().to_string();
    let fail = |msg: String| BackupError::create_failed(msg).with_id(&id).with_dir(&dir);

    // A local store gets the archive built straight into place (the builder writes a hidden
    // temp sibling, syncs it and renames it to `data.sqsh`): no second copy of every byte.
    // Other stores, or an explicit `temp_dir`, get it built in a private temp dir, then
    // uploaded.
    let data_key = store.data_key(&id);
    let in_place = match &options.temp_dir {
        Some(_) => None,
        None => store.local_file(&data_key),
    };
    let temp = match &in_place {
        Some(_) => None,
        None => {
            let temp_parent = match (&options.temp_dir, &seed_to) {
                (Some(d), _) => d.clone(),
                // Built on the cache's file system, so seeding is a rename.
                (None, Some(cache)) => {
                    crate::cache::build_dir(&cache.dir).unwrap_or_else(|_| std::env::temp_dir())
                }
                (None, None) => std::env::temp_dir(),
            };
            Some(
                tempfile::Builder::new()
                    .prefix(".squashbox-backup-")
                    .tempdir_in(&temp_parent)
                    .map_err(|e| {
                        fail(format!(
                            "cannot create a temp dir in {}: {e}",
                            temp_parent.display()
                        ))
                    })?,
            )
        }
    };
    let archive_path = match (&in_place, &temp) {
        (Some(path), _) => {
            let parent = path.parent().expect("a data key has a parent");
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
            path.clone()
        }
        (None, Some(temp)) => temp.path().join("data.sqsh"),
        (None, None) => unreachable!("a temp dir exists when the store is not local"),
    };
    let build = BuildOptions {
        compressor: options.compression,
        level: options
            .level
            .or((options.compression == Compressor::Zstd).then_some(DEFAULT_ZSTD_LEVEL)),
        gitignore: options.gitignore,
        excludes: options.excludes.clone(),
        ..BuildOptions::default()
    };
    let built = build_image(&dir, &archive_path, &build).map_err(|e| match e {
        BuildError::Unreadable { paths } => fail(format!(
            "{} path(s) under the directory cannot be read: {}. Fix: grant read permission \
             (e.g. chmod -R u+rX) or exclude them (--exclude PATTERN)",
            paths.len(),
            paths
                .iter()
                .map(|(p, why)| format!("{} ({why})", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        other => fail(format!("building the archive failed: {other}")).with_source(other),
    });
    let summary = match built {
        Ok(summary) => summary,
        Err(e) => {
            if let Some(parent) = in_place.as_ref().and_then(|p| p.parent()) {
                // Best effort: the builder already removed its temp file; drop the empty dir.
                let _ = std::fs::remove_dir(parent);
            }
            return Err(e);
        }
    };
    // The archive's identity when it is hashed, to seed the cache only with that very file.
    let hashed = std::fs::symlink_metadata(&archive_path);
    let meta = commit_archive(
        &store,
        &archive_path,
        &id,
        &options,
        summary.files,
        options.compression,
        in_place.is_some(),
    )?;
    if let (Some(cache), Ok(hashed), Some(_)) = (&seed_to, &hashed, &temp) {
        crate::cache::seed(&archive_path, hashed, &meta, cache);
    }
    drop(temp);
    Ok(meta.handle())
}

/// Store an existing SquashFS image as a backup of `options.dir` (which must be a valid
/// absolute path but need not exist). `gitignore`, `excludes` and `compression` options are
/// ignored: the meta records the image's own compressor. Useful to back up trees built
/// elsewhere, and to seed stores.
pub fn import_archive(image: &Path, options: BackupOptions) -> Result<DirectoryBackup> {
    crate::validate::check_dir_path(&options.dir)?;
    if let Some(name) = &options.name {
        check_name(name)?;
    }
    check_ttl(options.ttl)?;
    let store = match &options.store {
        Some(s) => s.clone(),
        None => Store::open_default()?,
    };
    store.check_reachable()?;
    let id = uuid::Uuid::new_v4().to_string();
    let archive = squashbox_format::Archive::open_path(image).map_err(|e| {
        BackupError::create_failed(format!("{} is not a readable image: {e}", image.display()))
            .with_id(&id)
    })?;
    let compression = archive.superblock().compressor;
    let files = count_files(&archive).map_err(|e| {
        BackupError::create_failed(format!("{} is not a readable image: {e}", image.display()))
            .with_id(&id)
    })?;
    let options = BackupOptions {
        gitignore: false,
        excludes: Vec::new(),
        ..options
    };
    commit_archive(&store, image, &id, &options, files, compression, false).map(|m| m.handle())
}

fn count_files(archive: &squashbox_format::Archive) -> squashbox_format::Result<u64> {
    let mut files = 0u64;
    let mut stack = vec![archive.root()?];
    while let Some(dir) = stack.pop() {
        for entry in archive.read_dir(&dir)? {
            let entry = entry?;
            match entry.file_type {
                squashbox_format::FileType::Regular => files += 1,
                squashbox_format::FileType::Directory => {
                    stack.push(archive.inode(entry.inode_ref)?)
                }
                _ => {}
            }
        }
    }
    Ok(files)
}

/// Upload `archive_path` as backup `id`: data, size check, then meta (the commit marker).
/// On failure everything uploaded is deleted (best effort). Returns the committed meta.
fn commit_archive(
    store: &Store,
    archive_path: &Path,
    id: &str,
    options: &BackupOptions,
    file_count: u64,
    compression: Compressor,
    already_stored: bool,
) -> Result<BackupMeta> {
    let dir = &options.dir;
    let fail = |msg: String| BackupError::create_failed(msg).with_id(id).with_dir(dir);
    let data_key = store.data_key(id);
    let meta_key = store.meta_key(id);
    let uploaded = (|| -> std::result::Result<BackupMeta, String> {
        // An archive already in place is hashed where it lies; an upload hashes what it
        // sends, as it reads it (no second pass over the file).
        let (size, sha256) = if already_stored {
            let hashed =
                hash_file(archive_path).map_err(|e| format!("reading the built archive: {e}"))?;
            if let Some(progress) = &options.progress {
                progress(hashed.0);
            }
            hashed
        } else {
            store
                .upload_file(archive_path, &data_key, options.progress.clone())
                .map_err(|e| format!("uploading {data_key} to {} failed: {e}", store.url()))?
        };
        match store.head_size(&data_key) {
            Ok(Some(n)) if n == size => {}
            Ok(Some(n)) => {
                return Err(format!(
                    "stored {data_key} is {n} bytes but {size} were uploaded"
                ))
            }
            Ok(None) => return Err(format!("{data_key} is missing right after upload")),
            Err(e) => return Err(format!("checking {data_key} after upload failed: {e}")),
        }
        let meta = BackupMeta {
            id: id.to_string(),
            dir: dir.clone(),
            name: options.name.clone(),
            size_bytes: size,
            ttl: options.ttl,
            created_at: options.clock.now(),
            format_version: FORMAT_VERSION,
            sha256,
            compression: compression.name().to_string(),
            file_count,
            gitignore: options.gitignore,
            excludes: options.excludes.clone(),
            squashbox_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let json = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
        store
            .put_small(&meta_key, json)
            .map_err(|e| format!("writing {meta_key} failed: {e}"))?;
        Ok(meta)
    })();
    let meta = match uploaded {
        Ok(meta) => meta,
        Err(msg) => {
            // Meta first: if it somehow landed, removing it un-commits the backup.
            let _ = store.delete(&meta_key);
            let _ = store.delete(&data_key);
            return Err(fail(msg));
        }
    };
    if already_stored {
        // The hash above read the very file restores will mount: record that, so the first
        // restore on this machine need not read all of it again.
        let cache_dir = options
            .cache_dir
            .clone()
            .or_else(|| crate::paths::cache_dir().ok());
        if let Some(cache_dir) = cache_dir {
            crate::cache::remember_verified(archive_path, &meta, &cache_dir);
        }
    }
    Ok(meta)
}

/// Size and lowercase hex SHA-256 of a file, streamed.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    hash_reader(&mut file)
}

pub(crate) fn hash_reader(reader: &mut impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
}
