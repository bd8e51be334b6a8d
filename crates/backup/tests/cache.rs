//! This machine's archive cache: seeded by creates, bounded by LRU eviction that spares the
//! mounted and the just-inserted archive, emptied by delete/prune, and never trusted blindly.
//! Remote stores run against an in-process `memory://` store and the real S3 server
//! (scripts/s3-server.sh); the local store keeps its archives in place.

mod common;

use std::path::{Path, PathBuf};

use common::{make_tree, manifest, Env};
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use squashbox_backup::{
    create_backup, delete_backup_with, prune_backups, read_meta, restore_backup, state,
    DirectoryBackup, PruneOptions, RestoreOptions, RestoreRecord,
};

/// A tree with `seed`-specific incompressible content, so archives of different trees have
/// about the same size.
fn make_source(env: &Env, name: &str, seed: u64) -> PathBuf {
    let dir = env.path(name);
    make_tree(&dir);
    std::fs::write(
        dir.join("payload.bin"),
        squashbox_testkit::content_bytes(seed, 400_000, false),
    )
    .unwrap();
    dir
}

fn create(env: &Env, name: &str, seed: u64, cache_max: Option<u64>) -> DirectoryBackup {
    let dir = make_source(env, name, seed);
    let mut o = env.backup_options(&dir);
    o.cache_max_bytes = cache_max;
    // Distinct creation times in the order of the seeds (prune orders by them).
    o.clock = common::clock_at(1_900_000_000 + seed as i64);
    create_backup(o).unwrap()
}

fn archives(env: &Env) -> PathBuf {
    env.cache.join("archives")
}

fn cached_archive(env: &Env, id: &str) -> PathBuf {
    archives(env).join(format!("{id}.sqsh"))
}

fn is_cached(env: &Env, id: &str) -> bool {
    cached_archive(env, id).is_file()
}

/// Names in the cache's archives dir that belong to backup `id`.
fn entries_of(env: &Env, id: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(archives(env))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(id))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn restore_opts(env: &Env, cache_max: Option<u64>) -> RestoreOptions {
    RestoreOptions {
        cache_max_bytes: cache_max,
        ..env.restore_options()
    }
}

fn restore_to(env: &Env, handle: &DirectoryBackup, out: &str, cache_max: Option<u64>) {
    restore_backup(
        handle,
        RestoreOptions {
            dir: Some(env.path(out)),
            ..restore_opts(env, cache_max)
        },
    )
    .unwrap();
}

fn sha256_of(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

fn delete_stored_data(env: &Env, id: &str) {
    env.raw(|s| {
        let key = env.key(id, "data.sqsh");
        async move { s.delete(&key).await.unwrap() }
    });
}

/// Flip bytes in the middle of `path` in place (same size), then give it back its mtime, as
/// a careful tamperer would: only the ctime still tells.
fn tamper(path: &Path) {
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xff;
    }
    std::fs::write(path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

remote_stores!(
    create_seeds_the_cache_and_restore_needs_no_download,
    |env: &Env| {
        let dir = make_source(env, "work", 1);
        let before = manifest(&dir);
        let handle = create_backup(env.backup_options(&dir)).unwrap();
        assert!(
            env.temp_leftovers().is_empty(),
            "{:?}",
            env.temp_leftovers()
        );
        let meta = read_meta(&env.store, &handle.id).unwrap();
        // Exactly what was hashed and uploaded, complete, with its stamp and meta.
        let cached = cached_archive(env, &handle.id);
        assert_eq!(std::fs::metadata(&cached).unwrap().len(), meta.size_bytes);
        assert_eq!(sha256_of(&cached), meta.sha256);
        let id = &handle.id;
        assert_eq!(
            entries_of(env, id),
            [
                format!("{id}.json"),
                format!("{id}.sqsh"),
                format!("{id}.verified")
            ]
        );

        if let Some(offline) = common::unreachable_store(env) {
            // The network is gone: the restore goes by the meta and archive kept in the cache.
            std::fs::remove_dir_all(dir.join("src")).unwrap();
            restore_backup(
                &handle,
                RestoreOptions {
                    store: Some(offline),
                    ..env.restore_options()
                },
            )
            .unwrap();
            assert_eq!(manifest(&dir), before);
        }
        // The store no longer has the data: a download would fail, the seeded archive serves.
        delete_stored_data(env, id);
        std::fs::write(dir.join("README.md"), "changed").unwrap();
        restore_backup(&handle, env.restore_options()).unwrap();
        assert_eq!(manifest(&dir), before);

        // A backup the (reachable) store says is gone is not restored from the cache.
        env.raw(|s| {
            let key = env.key(id, "meta.json");
            async move { s.delete(&key).await.unwrap() }
        });
        let e = restore_backup(&handle, env.restore_options()).unwrap_err();
        assert_eq!(e.code(), "BACKUP_NOT_FOUND", "{e}");
    }
);

remote_stores!(no_seed_leaves_no_cache_entry, |env: &Env| {
    let dir = make_source(env, "work", 2);
    let before = manifest(&dir);
    let mut o = env.backup_options(&dir);
    o.seed_cache = false;
    let handle = create_backup(o).unwrap();
    assert!(
        env.temp_leftovers().is_empty(),
        "{:?}",
        env.temp_leftovers()
    );
    assert_eq!(entries_of(env, &handle.id), Vec::<String>::new());
    // The first restore downloads it, and keeps it.
    std::fs::write(dir.join("README.md"), "changed").unwrap();
    restore_backup(&handle, env.restore_options()).unwrap();
    assert_eq!(manifest(&dir), before);
    assert!(is_cached(env, &handle.id));
});

#[test]
fn local_store_archives_are_not_copied_into_the_cache() {
    let env = common::local_env();
    // Built in a temp dir and uploaded (copied) into the store: restores use the store's file.
    let handle = create(&env, "work", 3, None);
    assert_eq!(entries_of(&env, &handle.id), Vec::<String>::new());
    restore_to(&env, &handle, "out", None);
    assert_eq!(
        entries_of(&env, &handle.id),
        [format!("{}.verified", handle.id)]
    );
}

remote_stores!(cache_bound_evicts_least_recently_used, |env: &Env| {
    let a = create(env, "a", 10, None);
    let b = create(env, "b", 11, None);
    let size = read_meta(&env.store, &a.id).unwrap().size_bytes;
    // Room for two archives, not three.
    let cap = Some(size * 5 / 2);
    // Using `a` makes `b` the least recently used.
    restore_to(env, &a, "out-a", cap);
    let c = create(env, "c", 12, cap);
    assert!(is_cached(env, &a.id));
    assert!(!is_cached(env, &b.id), "b was least recently used");
    assert_eq!(entries_of(env, &b.id), Vec::<String>::new());
    assert!(is_cached(env, &c.id));
    // Restoring `b` downloads it again; `a` (used before `c` was inserted) makes room.
    restore_to(env, &b, "out-b", cap);
    assert_eq!(manifest(&env.path("out-b")), manifest(&env.path("b")));
    assert!(!is_cached(env, &a.id), "a was least recently used");
    assert!(is_cached(env, &b.id));
    assert!(is_cached(env, &c.id));
});

remote_stores!(cache_bound_spares_mounted_and_just_inserted, |env: &Env| {
    let a = create(env, "a", 20, None);
    let b = create(env, "b", 21, None);
    let dir_c = make_source(env, "c", 22);
    let mut o = env.backup_options(&dir_c);
    o.seed_cache = false;
    let c = create_backup(o).unwrap();
    // `a` is mounted by an active restore (this process serves it).
    let mounted = env.path("mounted-a");
    let record = RestoreRecord {
        dir: mounted.clone(),
        id: a.id.clone(),
        upper: env.path("layers/upper"),
        work: env.path("layers/work"),
        archive: cached_archive(env, &a.id),
        pid: std::process::id(),
        mounted_at: "2026-01-01T00:00:00Z".into(),
    };
    state::write_record(&env.state, &record).unwrap();
    // A bound smaller than any archive: restoring `c` downloads and keeps it, evicts `b`,
    // and leaves the mounted `a` although it is the least recently used.
    restore_to(env, &c, "out-c", Some(1));
    assert!(is_cached(env, &a.id), "a mounted archive was evicted");
    assert!(!is_cached(env, &b.id));
    assert!(
        is_cached(env, &c.id),
        "the just-inserted archive was evicted"
    );
    // Once `a` is no longer mounted it goes like any other.
    state::remove_record(&env.state, &mounted);
    restore_to(env, &b, "out-b", Some(1));
    assert!(!is_cached(env, &a.id));
    assert!(!is_cached(env, &c.id));
    assert!(is_cached(env, &b.id));
    // An archive larger than the bound on its own is not seeded at all.
    let d = create(env, "d", 23, Some(1));
    assert_eq!(entries_of(env, &d.id), Vec::<String>::new());
    assert!(is_cached(env, &b.id));
});

remote_stores!(delete_and_prune_drop_cache_entries, |env: &Env| {
    let a = create(env, "a", 30, None);
    let b = create(env, "b", 31, None);
    let c = create(env, "c", 32, None);
    for h in [&a, &b, &c] {
        assert!(is_cached(env, &h.id));
    }
    delete_backup_with(&env.store, &a.id, Some(&env.cache)).unwrap();
    assert_eq!(entries_of(env, &a.id), Vec::<String>::new());
    assert!(is_cached(env, &b.id));
    // A dry run drops nothing.
    let prune = |dry_run| {
        prune_backups(
            &env.store,
            &PruneOptions {
                keep_last: Some(1),
                dry_run,
                cache_dir: Some(env.cache.clone()),
                ..Default::default()
            },
        )
        .unwrap()
    };
    assert_eq!(prune(true).deleted.len(), 1);
    assert!(is_cached(env, &b.id));
    let report = prune(false);
    assert_eq!(report.deleted.len(), 1);
    assert_eq!(report.deleted[0].id, b.id);
    assert_eq!(entries_of(env, &b.id), Vec::<String>::new());
    assert!(is_cached(env, &c.id));
    // The cache entry goes even when the store has already lost the backup.
    delete_stored_data(env, &c.id);
    env.raw(|s| {
        let key = env.key(&c.id, "meta.json");
        async move { s.delete(&key).await.unwrap() }
    });
    let e = delete_backup_with(&env.store, &c.id, Some(&env.cache)).unwrap_err();
    assert_eq!(e.code(), "BACKUP_NOT_FOUND");
    assert_eq!(entries_of(env, &c.id), Vec::<String>::new());
});

#[test]
fn delete_drops_the_local_stores_verified_stamp() {
    let env = common::local_env();
    let dir = make_source(&env, "work", 40);
    let mut o = env.backup_options(&dir);
    o.temp_dir = None; // built in place: the create stamps it as verified
    let handle = create_backup(o).unwrap();
    assert_eq!(
        entries_of(&env, &handle.id),
        [format!("{}.verified", handle.id)]
    );
    delete_backup_with(&env.store, &handle.id, Some(&env.cache)).unwrap();
    assert_eq!(entries_of(&env, &handle.id), Vec::<String>::new());
}

remote_stores!(tampered_cached_archive_is_not_used, |env: &Env| {
    let dir = make_source(env, "work", 50);
    let before = manifest(&dir);
    let handle = create_backup(env.backup_options(&dir)).unwrap();
    let meta = read_meta(&env.store, &handle.id).unwrap();
    let cached = cached_archive(env, &handle.id);
    // Same size, same mtime, different bytes: the stamp no longer matches (ctime), so the
    // restore hashes the copy, refuses it and downloads the archive again.
    tamper(&cached);
    assert_ne!(sha256_of(&cached), meta.sha256);
    restore_to(env, &handle, "out1", None);
    assert_eq!(manifest(&env.path("out1")), before);
    assert_eq!(sha256_of(&cached), meta.sha256);
    // Tampered again, and nothing to download instead: the restore fails, touching nothing,
    // and the bad copy is gone.
    tamper(&cached);
    if let Some(offline) = common::unreachable_store(env) {
        let e = restore_backup(
            &handle,
            RestoreOptions {
                dir: Some(env.path("out2")),
                store: Some(offline),
                ..env.restore_options()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "BACKUP_RESTORE_FAILED", "{e}");
        assert!(!env.path("out2").exists());
        assert!(!cached.exists());
    }
    delete_stored_data(env, &handle.id);
    let e = restore_backup(
        &handle,
        RestoreOptions {
            dir: Some(env.path("out3")),
            ..env.restore_options()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "BACKUP_RESTORE_FAILED", "{e}");
    assert!(e.message().contains("missing"), "{e}");
    assert!(!env.path("out3").exists());
    assert!(!cached.exists());
});
