//! The object store behind backups: a local directory (default), S3-compatible, or memory.
//!
//! Layout inside the store (under an optional prefix):
//! `backups/{id}/data.sqsh` (the archive) and `backups/{id}/meta.json` (written last; a backup
//! without meta does not exist).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use squashbox_format::writeback::start_writeback;

use crate::error::{BackupError, Result};
use crate::runtime::block_on;

/// Environment variable naming the default store URL.
pub const STORE_ENV: &str = "SQUASHBOX_STORE";

/// Part size for multipart uploads and ranged downloads. S3 requires at least 5 MiB per part;
/// 8 MiB keeps memory at `PARALLELISM * PART_SIZE` (32 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts in flight at once during upload and download.
pub const PARALLELISM: usize = 4;

/// Called with the number of bytes handed to the store so far during an upload.
pub type ProgressFn = Arc<dyn Fn(u64) + Send + Sync>;

/// A backup store: an [`ObjectStore`] plus a key prefix.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
    /// The directory of a local store, for cleaning up what its listings do not show.
    local_root: Option<PathBuf>,
}

/// One id under `backups/` in a listing.
#[derive(Clone, Debug)]
pub(crate) struct ListedId {
    pub id: String,
    pub has_meta: bool,
    pub data: Option<ListedData>,
}

/// A listed `data.sqsh`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListedData {
    pub size: u64,
    /// Last modification, Unix seconds (the store's clock).
    pub last_modified: i64,
}

impl Store {
    /// Open the store named by `url`:
    /// - `file:///abs/dir` or `/abs/dir`: a local directory (created if missing);
    /// - `s3://bucket[/prefix]`: S3 or compatible, configured from the standard `AWS_*`
    ///   environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    ///   `AWS_ENDPOINT_URL` for R2/MinIO/SeaweedFS; plain http is allowed for loopback
    ///   endpoints or with `AWS_ALLOW_HTTP=true`);
    /// - `memory://`: an in-process store (tests, demos).
    pub fn open(url: &str) -> Result<Store> {
        Self::open_with_config(url, &[])
    }

    /// Like [`Store::open`], with S3 settings that override the environment, as
    /// `(key, value)` pairs using the `AWS_*` names in lowercase or upper case (e.g.
    /// `("aws_endpoint_url", "http://127.0.0.1:9000")`, `("aws_access_key_id", ...)`).
    pub fn open_with_config(url: &str, config: &[(&str, &str)]) -> Result<Store> {
        if let Some(rest) = url.strip_prefix("s3://") {
            return Self::open_s3(url, rest, config);
        }
        if url == "memory://" || url == "memory:" {
            return Ok(Store::from_object_store(Arc::new(InMemory::new()), "", url));
        }
        let path = if let Some(p) = url.strip_prefix("file://") {
            PathBuf::from(p)
        } else if url.starts_with('/') {
            PathBuf::from(url)
        } else {
            return Err(BackupError::invalid(format!(
                "store URL {url:?} is not supported: use file:///ABSOLUTE/DIR, an absolute \
                 path, s3://BUCKET[/PREFIX] or memory://"
            )));
        };
        Self::open_local(&path, url)
    }

    /// Open the default store: `$SQUASHBOX_STORE` if set, else a local directory under the
    /// user's data dir (`$XDG_DATA_HOME/squashbox/store`, or `~/.local/share/squashbox/store`).
    pub fn open_default() -> Result<Store> {
        match std::env::var(STORE_ENV) {
            Ok(url) if !url.is_empty() => Store::open(&url),
            _ => {
                let dir = crate::paths::data_dir()?.join("store");
                Store::open_local(&dir, &format!("file://{}", dir.display()))
            }
        }
    }

    /// Open `url` if given, else the default store.
    pub fn open_or_default(url: Option<&str>) -> Result<Store> {
        match url {
            Some(u) => Store::open(u),
            None => Store::open_default(),
        }
    }

    /// Wrap any [`ObjectStore`] (GCS, Azure, a custom one); keys go under `prefix`.
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, prefix: &str, label: &str) -> Store {
        Store {
            inner,
            prefix: ObjectPath::from(prefix.trim_matches('/')),
            url: label.to_string(),
            local_root: None,
        }
    }

    fn open_local(path: &Path, url: &str) -> Result<Store> {
        if !path.is_absolute() {
            return Err(BackupError::invalid(format!(
                "local store path {} must be absolute",
                path.display()
            )));
        }
        std::fs::create_dir_all(path).map_err(|e| {
            BackupError::invalid(format!(
                "local store {} cannot be created: {e}",
                path.display()
            ))
        })?;
        let fs = LocalFileSystem::new_with_prefix(path)
            .map_err(|e| {
                BackupError::invalid(format!("local store {} unusable: {e}", path.display()))
            })?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        let mut store = Store::from_object_store(Arc::new(fs), "", url);
        store.local_root = Some(path.to_path_buf());
        Ok(store)
    }

    fn open_s3(url: &str, rest: &str, config: &[(&str, &str)]) -> Result<Store> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(BackupError::invalid(format!(
                "store URL {url:?} names no bucket (expected s3://BUCKET[/PREFIX])"
            )));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: 4,
                retry_timeout: Duration::from_secs(60),
            });
        let mut endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .unwrap_or_default();
        for (key, value) in config {
            let lower = key.to_ascii_lowercase();
            let parsed: object_store::aws::AmazonS3ConfigKey = lower
                .parse()
                .map_err(|e| BackupError::invalid(format!("unknown S3 setting {key:?}: {e}")))?;
            if matches!(parsed, object_store::aws::AmazonS3ConfigKey::Endpoint) {
                endpoint = value.to_string();
            }
            builder = builder.with_config(parsed, *value);
        }
        if is_loopback_http(&endpoint) {
            builder = builder.with_allow_http(true);
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            builder = builder.with_region("us-east-1");
        }
        let s3 = builder.build().map_err(|e| {
            BackupError::invalid(format!(
                "S3 store {url} is not configured: {e} (set AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY, AWS_REGION and, for non-AWS servers, AWS_ENDPOINT_URL)"
            ))
        })?;
        Ok(Store::from_object_store(Arc::new(s3), prefix, url))
    }

    /// The URL (or label) this store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    pub(crate) fn key(&self, rel: &str) -> ObjectPath {
        let mut p = self.prefix.clone();
        for part in rel.split('/') {
            p = p.clone().join(part);
        }
        p
    }

    pub(crate) fn data_key(&self, id: &str) -> ObjectPath {
        self.key(&format!("backups/{id}/data.sqsh"))
    }

    pub(crate) fn meta_key(&self, id: &str) -> ObjectPath {
        self.key(&format!("backups/{id}/meta.json"))
    }

    /// Check that the store answers and accepts our credentials (a LIST of the backups prefix).
    pub fn check_reachable(&self) -> Result<()> {
        let prefix = self.key("backups");
        block_on(async { self.inner.list_with_delimiter(Some(&prefix)).await })
            .map(|_| ())
            .map_err(|e| {
                BackupError::invalid(format!(
                    "store {} is not reachable or not configured: {e}",
                    self.url
                ))
            })
    }

    /// Size of an object, or `None` if it does not exist.
    pub(crate) fn head_size(&self, key: &ObjectPath) -> Result<Option<u64>, object_store::Error> {
        match block_on(self.inner.head(key)) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A small object's bytes (refused above `max` bytes), or `None` if it does not exist.
    pub(crate) fn get_small(
        &self,
        key: &ObjectPath,
        max: u64,
    ) -> Result<Option<Bytes>, object_store::Error> {
        block_on(async {
            let result = match self.inner.get(key).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            if result.meta.size > max {
                return Err(object_store::Error::Generic {
                    store: "squashbox",
                    source: format!(
                        "{key} is {} bytes, larger than the {max} allowed",
                        result.meta.size
                    )
                    .into(),
                });
            }
            result.bytes().await.map(Some)
        })
    }

    /// Write a small object in one request.
    pub(crate) fn put_small(
        &self,
        key: &ObjectPath,
        bytes: Vec<u8>,
    ) -> Result<(), object_store::Error> {
        block_on(self.inner.put(key, PutPayload::from(bytes))).map(|_| ())
    }

    /// Delete an object; a missing object is not an error.
    pub(crate) fn delete(&self, key: &ObjectPath) -> Result<(), object_store::Error> {
        match block_on(self.inner.delete(key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every id under `backups/` that has a `meta.json` (committed backups) or only a
    /// `data.sqsh` (uncommitted leftovers), sorted by id.
    pub(crate) fn list_ids(&self) -> Result<Vec<ListedId>, object_store::Error> {
        let prefix = self.key("backups");
        let base: Vec<String> = prefix.parts().map(|p| p.as_ref().to_string()).collect();
        // Streamed: memory grows with the number of backups, not of listed objects.
        block_on(async {
            let mut ids: std::collections::BTreeMap<String, ListedId> = Default::default();
            let mut listing = self.inner.list(Some(&prefix));
            while let Some(object) = listing.next().await {
                let object = object?;
                let parts: Vec<_> = object.location.parts().collect();
                if parts.len() != base.len() + 2
                    || parts[..base.len()]
                        .iter()
                        .zip(&base)
                        .any(|(a, b)| a.as_ref() != b)
                {
                    continue;
                }
                let id = parts[base.len()].as_ref().to_string();
                let entry = ids.entry(id.clone()).or_insert_with(|| ListedId {
                    id,
                    has_meta: false,
                    data: None,
                });
                match parts[base.len() + 1].as_ref() {
                    "meta.json" => entry.has_meta = true,
                    "data.sqsh" => {
                        entry.data = Some(ListedData {
                            size: object.size,
                            last_modified: object.last_modified.timestamp(),
                        })
                    }
                    _ => {}
                }
            }
            Ok(ids.into_values().collect())
        })
    }

    /// True for a local directory store (its archives are files on this machine).
    pub(crate) fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    /// The file behind `key` when this is a local store (it may not exist).
    pub(crate) fn local_file(&self, key: &ObjectPath) -> Option<PathBuf> {
        let mut path = self.local_root.clone()?;
        for part in key.parts() {
            path.push(part.as_ref());
        }
        Some(path)
    }

    /// Staging files a crashed upload or build left in a local store
    /// (`backups/{id}/data.sqsh#N`, `backups/{id}/.data.sqsh.*.tmp`; invisible to listings),
    /// as (path, mtime in Unix seconds). Empty for other stores.
    pub(crate) fn local_staging_files(&self) -> Vec<(PathBuf, i64)> {
        let Some(root) = &self.local_root else {
            return Vec::new();
        };
        let mut dir = root.clone();
        for part in self.prefix.parts() {
            dir.push(part.as_ref());
        }
        dir.push("backups");
        let mut out = Vec::new();
        let Ok(ids) = std::fs::read_dir(&dir) else {
            return out;
        };
        for id in ids.flatten() {
            let Ok(files) = std::fs::read_dir(id.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                if !name.to_str().is_some_and(is_staging_name) {
                    continue;
                }
                let Ok(meta) = file.metadata() else { continue };
                use std::os::unix::fs::MetadataExt;
                out.push((file.path(), meta.mtime()));
            }
        }
        out
    }

    /// Upload the local file at `path` to `key`: one PUT when small, else a parallel multipart
    /// upload (each request retried with backoff by the client). On failure the multipart
    /// upload is aborted so no parts linger. Returns the size and SHA-256 (hex) of the bytes
    /// sent, hashed as they are read.
    pub(crate) fn upload_file(
        &self,
        path: &Path,
        key: &ObjectPath,
        progress: Option<ProgressFn>,
    ) -> std::io::Result<(u64, String)> {
        use sha2::Digest;
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        let mut hasher = sha2::Sha256::new();
        if size <= PART_SIZE as u64 {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf)?;
            hasher.update(&buf);
            let len = buf.len() as u64;
            block_on(self.inner.put(key, PutPayload::from(buf))).map_err(std::io::Error::other)?;
            if let Some(p) = &progress {
                p(len);
            }
            return Ok((len, crate::lock::hex(&hasher.finalize())));
        }
        block_on(async move {
            let upload = self
                .inner
                .put_multipart(key)
                .await
                .map_err(std::io::Error::other)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut sent = 0u64;
            let result: std::io::Result<()> = async {
                loop {
                    writer
                        .wait_for_capacity(PARALLELISM)
                        .await
                        .map_err(std::io::Error::other)?;
                    let mut chunk = vec![0u8; PART_SIZE];
                    let n = read_full(&mut file, &mut chunk)?;
                    if n == 0 {
                        break;
                    }
                    chunk.truncate(n);
                    // Hashed here, in file order, while earlier parts are in flight: the
                    // create needs no separate pass over the archive.
                    hasher.update(&chunk);
                    writer.put(Bytes::from(chunk));
                    sent += n as u64;
                    if let Some(p) = &progress {
                        p(sent);
                    }
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => writer
                    .finish()
                    .await
                    .map(|_| (sent, crate::lock::hex(&hasher.finalize())))
                    .map_err(std::io::Error::other),
                Err(e) => {
                    let _ = writer.abort().await;
                    Err(e)
                }
            }
        })
    }

    /// Download `key` (of `size` bytes) into `dest` with parallel ranged GETs and return the
    /// SHA-256 (hex) of what was written. Parts are hashed in order as they arrive, so the
    /// hash costs no second pass over the file; at most `PARALLELISM` parts are in memory.
    pub(crate) fn download_file(
        &self,
        key: &ObjectPath,
        size: u64,
        dest: &File,
    ) -> std::io::Result<String> {
        use sha2::Digest;
        dest.set_len(size)?;
        let ranges: Vec<std::ops::Range<u64>> = (0..size)
            .step_by(PART_SIZE)
            .map(|start| start..(start + PART_SIZE as u64).min(size))
            .collect();
        let dest = Arc::new(dest.try_clone()?);
        block_on(async {
            let mut hasher = sha2::Sha256::new();
            // Each part is fetched and written by its own task on the I/O runtime, so the
            // writes run in parallel with each other and with this task, which only hashes
            // the parts in order (the hash is most of the CPU a download costs).
            let mut parts = futures::stream::iter(ranges)
                .map(|range| {
                    let inner = Arc::clone(&self.inner);
                    let key = key.clone();
                    let dest = Arc::clone(&dest);
                    AbortOnDrop(tokio::spawn(async move {
                        let bytes = inner
                            .get_range(&key, range.clone())
                            .await
                            .map_err(std::io::Error::other)?;
                        if bytes.len() as u64 != range.end - range.start {
                            return Err(std::io::Error::other(format!(
                                "store returned {} bytes for range {range:?}",
                                bytes.len()
                            )));
                        }
                        dest.write_all_at(&bytes, range.start)?;
                        // Have the kernel start writing this part back now, so the fsync
                        // that makes the download durable finds little left to do.
                        start_writeback(&*dest, range.start, bytes.len() as u64);
                        Ok::<_, std::io::Error>(bytes)
                    }))
                })
                // In order (still PARALLELISM requests in flight), for the running hash.
                .buffered(PARALLELISM);
            while let Some(part) = parts.next().await {
                hasher.update(&part?);
            }
            Ok(crate::lock::hex(&hasher.finalize()))
        })
    }
}

/// A spawned part download that is cancelled when dropped: when one part fails, the parts
/// still in flight stop instead of writing on into a file that is about to be removed.
struct AbortOnDrop<T>(tokio::task::JoinHandle<std::io::Result<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = std::io::Result<T>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|joined| joined.unwrap_or_else(|e| Err(std::io::Error::other(e))))
    }
}

impl Store {
    /// Stream an object through SHA-256: `(size, hex digest)`, or `None` if it is missing.
    pub(crate) fn hash_object(
        &self,
        key: &ObjectPath,
    ) -> Result<Option<(u64, String)>, object_store::Error> {
        use sha2::{Digest, Sha256};
        // A local store's object is a file here: read it in large pieces rather than as the
        // client's stream of small chunks (7x faster for a 390 MB archive).
        if let Some(path) = self.local_file(key) {
            return match crate::create::hash_file(&path) {
                Ok(found) => Ok(Some(found)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(object_store::Error::Generic {
                    store: "local",
                    source: Box::new(e),
                }),
            };
        }
        block_on(async {
            let result = match self.inner.get(key).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut stream = result.into_stream();
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                total += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Ok(Some((total, crate::lock::hex(&hasher.finalize()))))
        })
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// True for `http://` endpoints on a loopback host (plain http is fine there).
fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', ':']).next().unwrap_or("");
    let host = if rest.starts_with('[') {
        rest.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A local store's staging file: the object store's `data.sqsh#N` / `meta.json#N` (final name,
/// `#`, a number) or the builder's `.data.sqsh.XXXXXX.tmp` (an archive built in place).
fn is_staging_name(name: &str) -> bool {
    if let Some((stem, suffix)) = name.split_once('#') {
        return matches!(stem, "data.sqsh" | "meta.json")
            && !suffix.is_empty()
            && suffix.bytes().all(|b| b.is_ascii_digit());
    }
    name.starts_with(".data.sqsh.") && name.ends_with(".tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names() {
        assert!(is_staging_name("data.sqsh#3"));
        assert!(is_staging_name("meta.json#12"));
        assert!(is_staging_name(".data.sqsh.Ab12Cd.tmp"));
        assert!(!is_staging_name("data.sqsh"));
        assert!(!is_staging_name("data.sqsh#"));
        assert!(!is_staging_name("data.sqsh#x"));
        assert!(!is_staging_name("other#1"));
        assert!(!is_staging_name(".data.sqsh.Ab12Cd"));
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_http("http://127.0.0.1:8333"));
        assert!(is_loopback_http("http://localhost:9000/"));
        assert!(is_loopback_http("http://[::1]:9000"));
        assert!(!is_loopback_http("http://10.0.0.1:9000"));
        assert!(!is_loopback_http("https://127.0.0.1:9000"));
    }

    #[test]
    fn unsupported_url_is_invalid_config() {
        let err = Store::open("ftp://x").unwrap_err();
        assert_eq!(err.code(), "INVALID_BACKUP_CONFIG");
        let err = Store::open("s3://").unwrap_err();
        assert_eq!(err.code(), "INVALID_BACKUP_CONFIG");
    }
}
