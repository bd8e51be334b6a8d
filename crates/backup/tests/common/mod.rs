//! Shared test support: local and real-S3 store environments, tree manifests, seeding.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use squashbox_backup::{BackupOptions, Clock, RestoreOptions, Store};
use tempfile::TempDir;

/// One test's world: a store, private state and cache dirs, and scratch space.
pub struct Env {
    pub kind: &'static str,
    pub tmp: TempDir,
    pub store: Store,
    pub state: PathBuf,
    pub cache: PathBuf,
}

impl Env {
    /// A path under this test's scratch dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Backup options for `dir` pointing at this env's store and state.
    pub fn backup_options(&self, dir: &Path) -> BackupOptions {
        let mut o = BackupOptions::new(dir);
        o.store = Some(self.store.clone());
        o.state_dir = Some(self.state.clone());
        o.cache_dir = Some(self.cache.clone());
        o.temp_dir = Some(self.path("tmp"));
        o
    }

    /// Restore options (copy mode) pointing at this env's store, state and cache.
    pub fn restore_options(&self) -> RestoreOptions {
        RestoreOptions {
            store: Some(self.store.clone()),
            state_dir: Some(self.state.clone()),
            cache_dir: Some(self.cache.clone()),
            mode: squashbox_backup::RestoreMode::Copy,
            ..Default::default()
        }
    }

    /// Files left in the build temp dir (must be none after any create).
    pub fn temp_leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.path("tmp"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Run an async object-store operation (for raw writes that simulate damage).
    pub fn raw<F, T>(&self, f: impl FnOnce(Arc<dyn object_store::ObjectStore>) -> F) -> T
    where
        F: std::future::Future<Output = T>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f(self.store.object_store().clone()))
    }

    /// The object path of a backup file (`data.sqsh` / `meta.json`) in this env's store.
    pub fn key(&self, id: &str, file: &str) -> object_store::path::Path {
        let base = match self.kind {
            "s3" => self.s3_prefix(),
            _ => String::new(),
        };
        let rel = format!("backups/{id}/{file}");
        if base.is_empty() {
            object_store::path::Path::from(rel)
        } else {
            object_store::path::Path::from(format!("{base}/{rel}"))
        }
    }

    fn s3_prefix(&self) -> String {
        let url = self.store.url();
        let rest = url.strip_prefix("s3://").unwrap();
        rest.split_once('/')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default()
    }
}

fn make_env(kind: &'static str, store_url: impl FnOnce(&Path) -> String) -> Env {
    let tmp = tempfile::Builder::new()
        .prefix("sqb-backup-test-")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(tmp.path().join("tmp")).unwrap();
    let store = Store::open(&store_url(tmp.path())).unwrap();
    Env {
        kind,
        state: tmp.path().join("state"),
        cache: tmp.path().join("cache"),
        store,
        tmp,
    }
}

/// A fresh local directory store.
pub fn local_env() -> Env {
    make_env("local", |tmp| format!("file://{}/store", tmp.display()))
}

/// A fresh in-process `memory://` store: not local, so archives are cached like a remote
/// store's (downloaded, seeded), without any server.
pub fn memory_env() -> Env {
    make_env("memory", |_| "memory://".to_string())
}

/// This env's S3 store (same bucket and prefix) behind an endpoint where nothing listens: the
/// network is gone. `None` for other stores.
pub fn unreachable_store(env: &Env) -> Option<Store> {
    if env.kind != "s3" {
        return None;
    }
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    Some(
        Store::open_with_config(env.store.url(), &[("aws_endpoint_url", endpoint.as_str())])
            .unwrap(),
    )
}

/// Generate `mod name { fn <first>(); fn s3(); }`: the scenario `body` against the store
/// `first_env()` makes, and against the real S3 server (skipped without one, see `s3_env`).
#[macro_export]
macro_rules! store_tests {
    ($name:ident, $first:ident = $first_env:path, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn $first() {
                let env = $first_env();
                ($body)(&env);
            }
            #[test]
            fn s3() {
                if let Some(env) = $crate::common::s3_env() {
                    ($body)(&env);
                }
            }
        }
    };
}

/// Generate one test per store whose archives are cached (not local):
/// `mod name { fn memory(); fn s3(); }`.
#[macro_export]
macro_rules! remote_stores {
    ($name:ident, $body:expr) => {
        $crate::store_tests!($name, memory = $crate::common::memory_env, $body);
    };
}

/// A fresh prefix on the real S3 server started by `scripts/s3-server.sh`, or `None` (skip)
/// when it is not configured. Under `CI=true` a missing server is a failure.
pub fn s3_env() -> Option<Env> {
    let bucket = match std::env::var("SQUASHBOX_TEST_S3_BUCKET") {
        Ok(b) if std::env::var("SQUASHBOX_TEST_S3").is_ok() => b,
        _ => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "CI=true but no S3 server configured: run `eval \"$(scripts/s3-server.sh \
                     start)\"` before the tests"
                );
            }
            eprintln!("skipping S3 variant: SQUASHBOX_TEST_S3 not set (see scripts/s3-server.sh)");
            return None;
        }
    };
    let prefix = format!("t-{}", uuid::Uuid::new_v4().simple());
    Some(make_env("s3", |_| format!("s3://{bucket}/{prefix}")))
}

/// Generate one test per backend: `mod name { fn local(); fn s3(); }`.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $body:expr) => {
        $crate::store_tests!($name, local = $crate::common::local_env, $body);
    };
}

/// Write a small but varied tree: nested dirs, empty and larger files, a symlink, modes.
pub fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("src/nested/deeper")).unwrap();
    std::fs::create_dir_all(root.join("empty_dir")).unwrap();
    std::fs::write(root.join("README.md"), "# project\n").unwrap();
    std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(root.join("src/nested/data.bin"), pseudo_random(300_000, 7)).unwrap();
    std::fs::write(root.join("src/nested/deeper/empty"), b"").unwrap();
    std::fs::write(root.join("script.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("src/main.rs", root.join("link")).unwrap();
}

/// Deterministic pseudo-random (incompressible) bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    squashbox_testkit::tree::content_bytes(seed, len, false)
}

/// What a tree looks like: path → (type, permission bits, size, content hash / link target).
pub type Manifest = BTreeMap<PathBuf, String>;

/// Describe `root` (not following symlinks). Timestamps are left out on purpose: a restore
/// promises content, types and permissions.
pub fn manifest(root: &Path) -> Manifest {
    let mut out = Manifest::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let perm = meta.mode() & 0o7777;
            let desc = if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {perm:o}")
            } else if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else {
                let data = std::fs::read(&path).unwrap();
                format!("file {perm:o} {} {:x}", data.len(), Sha256::digest(&data))
            };
            out.insert(rel, desc);
        }
    }
    out
}

/// Build `src` into an image with Debian's `mksquashfs` (an independent builder), for
/// seeding stores without our own builder.
pub fn mksquashfs(src: &Path, image: &Path) {
    let status = Command::new("mksquashfs")
        .arg(src)
        .arg(image)
        .args(["-noappend", "-quiet", "-no-progress", "-comp", "zstd"])
        .status()
        .expect("mksquashfs (squashfs-tools) must be installed");
    assert!(status.success(), "mksquashfs failed");
}

/// A clock fixed at `secs` seconds after the Unix epoch.
pub fn clock_at(secs: i64) -> Clock {
    Clock::fixed(time::OffsetDateTime::from_unix_timestamp(secs).unwrap())
}
