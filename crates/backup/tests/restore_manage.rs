//! Restore (copy mode), errors and management ops against the local store and a real S3
//! server. Backups are seeded with `import_archive` from images built by Debian's
//! `mksquashfs`, so these tests do not depend on squashbox's own builder.

mod common;

use std::path::Path;

use common::{clock_at, make_tree, manifest, mksquashfs, Env};
use object_store::ObjectStoreExt;
use squashbox_backup::{
    delete_backup, import_archive, list_backups, prune_backups, read_meta, restore_backup,
    restore_by_id, verify_backup, DirectoryBackup, PruneOptions, RestoreOptions,
};

/// Seed a backup of a fresh tree at `env/<name>`; returns (handle, source dir).
fn seed(env: &Env, name: &str, created: i64, ttl: u64) -> (DirectoryBackup, std::path::PathBuf) {
    let src = env.path(name);
    make_tree(&src);
    std::fs::write(src.join("which"), name).unwrap();
    let image = env.path(&format!("{name}.sqsh"));
    mksquashfs(&src, &image);
    let mut o = env.backup_options(&src);
    o.clock = clock_at(created);
    o.ttl = ttl;
    o.name = Some(format!("name-{name}"));
    let handle = import_archive(&image, o).unwrap();
    (handle, src)
}

const T0: i64 = 2_000_000_000;

fn opts_at(env: &Env, now: i64) -> RestoreOptions {
    RestoreOptions {
        clock: clock_at(now),
        ..env.restore_options()
    }
}

both_stores!(restore_copy_into_same_dir_discards_changes, |env: &Env| {
    let (handle, src) = seed(env, "proj", T0, 3600);
    let before = manifest(&src);
    // Destructive changes: delete, modify, add.
    std::fs::remove_dir_all(src.join("src")).unwrap();
    std::fs::write(src.join("README.md"), "changed").unwrap();
    std::fs::write(src.join("new-file"), "junk").unwrap();
    assert_ne!(manifest(&src), before);
    let result = restore_backup(&handle, opts_at(env, T0 + 10)).unwrap();
    assert!(result.success);
    assert_eq!(result.dir, src);
    assert_eq!(result.id, handle.id);
    assert_eq!(manifest(&src), before);
    // Re-restore after more changes discards them again (archive now from the cache).
    std::fs::write(src.join("again"), "x").unwrap();
    restore_backup(&handle, opts_at(env, T0 + 20)).unwrap();
    assert_eq!(manifest(&src), before);
    // No staging dirs left beside the target.
    let siblings: Vec<_> = std::fs::read_dir(src.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains("squashbox-restore")
        })
        .collect();
    assert!(siblings.is_empty(), "{siblings:?}");
});

both_stores!(restore_elsewhere_and_by_id, |env: &Env| {
    let (handle, src) = seed(env, "proj", T0, 3600);
    let other = env.path("elsewhere/copy");
    let mut o = opts_at(env, T0 + 1);
    o.dir = Some(other.clone());
    let r = restore_backup(&handle, o).unwrap();
    assert_eq!(r.dir, other);
    assert_eq!(manifest(&other), manifest(&src));
    // By id: default target is the dir recorded in meta.
    std::fs::write(src.join("README.md"), "edited").unwrap();
    let r = restore_by_id(&handle.id, opts_at(env, T0 + 2)).unwrap();
    assert_eq!(r.dir, src);
    assert_eq!(manifest(&src), manifest(&other));
});

both_stores!(handle_json_round_trip, |env: &Env| {
    let (handle, src) = seed(env, "proj", T0, 3600);
    let json = handle.to_json();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["id"], handle.id.as_str());
    assert_eq!(v["name"], "name-proj");
    let back = DirectoryBackup::from_json(&json).unwrap();
    assert_eq!(back, handle);
    std::fs::remove_file(src.join("README.md")).unwrap();
    restore_backup(&back, opts_at(env, T0 + 5)).unwrap();
    assert!(src.join("README.md").exists());
    let bad = DirectoryBackup::from_json(r#"{"id":"nope","dir":"/x","name":null}"#).unwrap_err();
    assert_eq!(bad.code(), "INVALID_BACKUP_CONFIG");
});

both_stores!(meta_is_complete_camel_case, |env: &Env| {
    let (handle, src) = seed(env, "proj", T0, 3600);
    let bytes = env.raw(|s| {
        let key = env.key(&handle.id, "meta.json");
        async move { s.get(&key).await.unwrap().bytes().await.unwrap() }
    });
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for field in [
        "id",
        "dir",
        "name",
        "sizeBytes",
        "ttl",
        "createdAt",
        "formatVersion",
        "sha256",
        "compression",
        "fileCount",
        "gitignore",
        "excludes",
        "squashboxVersion",
    ] {
        assert!(v.get(field).is_some(), "meta.json lacks {field}: {v}");
    }
    assert_eq!(v["createdAt"], "2033-05-18T03:33:20Z");
    assert_eq!(v["ttl"], 3600);
    assert_eq!(v["compression"], "zstd");
    assert_eq!(v["dir"], src.to_str().unwrap());
    // 5 regular files from make_tree + "which".
    assert_eq!(v["fileCount"], 6);
    let meta = read_meta(&env.store, &handle.id).unwrap();
    assert_eq!(meta.sha256.len(), 64);
});

both_stores!(not_found_and_invalid_id, |env: &Env| {
    let missing = DirectoryBackup {
        id: uuid::Uuid::new_v4().to_string(),
        dir: env.path("x"),
        name: None,
    };
    let e = restore_backup(&missing, env.restore_options()).unwrap_err();
    assert_eq!(e.code(), "BACKUP_NOT_FOUND");
    assert_eq!(e.context().backup_id.as_deref(), Some(missing.id.as_str()));
    let bad = DirectoryBackup {
        id: "not-a-uuid".into(),
        ..missing.clone()
    };
    let e = restore_backup(&bad, env.restore_options()).unwrap_err();
    assert_eq!(e.code(), "INVALID_BACKUP_CONFIG");
    assert!(e.message().contains("UUID"), "{e}");
    let e = delete_backup(&env.store, &missing.id).unwrap_err();
    assert_eq!(e.code(), "BACKUP_NOT_FOUND");
    let e = verify_backup(&env.store, &missing.id).unwrap_err();
    assert_eq!(e.code(), "BACKUP_NOT_FOUND");
});

both_stores!(expiry_boundary_with_60s_buffer, |env: &Env| {
    let ttl = 1000;
    let (handle, src) = seed(env, "proj", T0, ttl);
    let expires = T0 + ttl as i64;
    // now + 60 == expiresAt: not yet expired (the rule is strictly greater).
    restore_backup(&handle, opts_at(env, expires - 60)).unwrap();
    // One second later it is.
    let e = restore_backup(&handle, opts_at(env, expires - 59)).unwrap_err();
    assert_eq!(e.code(), "BACKUP_EXPIRED");
    assert_eq!(
        e.context().expired_at.as_deref(),
        Some("2033-05-18T03:50:00Z")
    );
    assert_eq!(e.context().backup_id.as_deref(), Some(handle.id.as_str()));
    assert!(src.join("README.md").exists());
    let listed = list_backups(&env.store, &clock_at(expires - 59)).unwrap();
    assert!(listed[0].expired);
    let listed = list_backups(&env.store, &clock_at(expires - 60)).unwrap();
    assert!(!listed[0].expired);
});

fn assert_untouched(target: &Path, before: &common::Manifest) {
    assert_eq!(
        &manifest(target),
        before,
        "target changed by a failed restore"
    );
}

both_stores!(corrupted_archive_fails_and_leaves_target, |env: &Env| {
    let (handle, src) = seed(env, "proj", T0, 3600);
    std::fs::write(src.join("local-change"), "keep me").unwrap();
    let before = manifest(&src);
    // Flip bytes in the stored archive, keeping its size.
    env.raw(|s| {
        let key = env.key(&handle.id, "data.sqsh");
        async move {
            let mut data = s.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
            let n = data.len();
            for b in &mut data[n / 2..n / 2 + 64] {
                *b ^= 0xff;
            }
            s.put(&key, data.into()).await.unwrap();
        }
    });
    let e = restore_backup(&handle, opts_at(env, T0 + 1)).unwrap_err();
    assert_eq!(e.code(), "BACKUP_RESTORE_FAILED");
    assert!(e.message().contains("corrupted"), "{e}");
    assert_untouched(&src, &before);
    // Nothing half-downloaded stays in the cache.
    let cached: Vec<_> = std::fs::read_dir(env.cache.join("archives"))
        .unwrap()
        .flatten()
        .collect();
    assert!(cached.is_empty(), "{cached:?}");
    let report = verify_backup(&env.store, &handle.id).unwrap();
    assert!(!report.ok);
    assert!(report.problem.unwrap().contains("SHA-256"));
});

both_stores!(missing_data_with_meta_is_a_clear_error, |env: &Env| {
    let (handle, src) = seed(env, "proj", T0, 3600);
    let before = manifest(&src);
    env.raw(|s| {
        let key = env.key(&handle.id, "data.sqsh");
        async move { s.delete(&key).await.unwrap() }
    });
    let e = restore_backup(&handle, opts_at(env, T0 + 1)).unwrap_err();
    assert_eq!(e.code(), "BACKUP_RESTORE_FAILED");
    assert!(e.message().contains("data.sqsh is missing"), "{e}");
    assert_untouched(&src, &before);
    let report = verify_backup(&env.store, &handle.id).unwrap();
    assert!(!report.ok);
    assert_eq!(report.actual_size, None);
});

both_stores!(truncated_data_and_bad_meta, |env: &Env| {
    let (handle, src) = seed(env, "proj", T0, 3600);
    let before = manifest(&src);
    env.raw(|s| {
        let key = env.key(&handle.id, "data.sqsh");
        async move {
            let data = s.get(&key).await.unwrap().bytes().await.unwrap();
            s.put(&key, data.slice(..data.len() - 4096).into())
                .await
                .unwrap();
        }
    });
    let e = restore_backup(&handle, opts_at(env, T0 + 1)).unwrap_err();
    assert_eq!(e.code(), "BACKUP_RESTORE_FAILED");
    assert!(e.message().contains("bytes"), "{e}");
    assert_untouched(&src, &before);
    env.raw(|s| {
        let key = env.key(&handle.id, "meta.json");
        async move { s.put(&key, "{not json".into()).await.unwrap() }
    });
    let e = restore_backup(&handle, opts_at(env, T0 + 1)).unwrap_err();
    assert_eq!(e.code(), "BACKUP_RESTORE_FAILED");
    assert!(e.message().contains("unparsable"), "{e}");
    assert_untouched(&src, &before);
});

both_stores!(list_delete_verify, |env: &Env| {
    let (a, _) = seed(env, "a", T0, 3600);
    let (b, _) = seed(env, "b", T0 + 100, 3600);
    let listed = list_backups(&env.store, &clock_at(T0 + 200)).unwrap();
    let ids: Vec<_> = listed.iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids, vec![a.id.clone(), b.id.clone()], "oldest first");
    assert_eq!(listed[0].name.as_deref(), Some("name-a"));
    assert!(listed[0].size_bytes > 0);
    assert_eq!(listed[0].created_at, "2033-05-18T03:33:20Z");
    assert_eq!(listed[0].expires_at, "2033-05-18T04:33:20Z");
    let report = verify_backup(&env.store, &a.id).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(
        report.actual_sha256.as_deref(),
        Some(report.expected_sha256.as_str())
    );
    delete_backup(&env.store, &a.id).unwrap();
    let e = delete_backup(&env.store, &a.id).unwrap_err();
    assert_eq!(e.code(), "BACKUP_NOT_FOUND");
    let e = restore_backup(&a, env.restore_options()).unwrap_err();
    assert_eq!(e.code(), "BACKUP_NOT_FOUND");
    let listed = list_backups(&env.store, &clock_at(T0 + 200)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, b.id);
    // Both objects are gone.
    let left = env.raw(|s| {
        let (m, d) = (env.key(&a.id, "meta.json"), env.key(&a.id, "data.sqsh"));
        async move { (s.head(&m).await.is_ok(), s.head(&d).await.is_ok()) }
    });
    assert_eq!(left, (false, false));
});

both_stores!(prune_rules, |env: &Env| {
    // Three "a" backups (100 s apart), one short-lived "b".
    let (a1, _) = seed(env, "a1", T0, 100_000);
    let src = env.path("a1");
    let image = env.path("a1.sqsh");
    let mut more = Vec::new();
    for i in 1..3 {
        let mut o = env.backup_options(&src);
        o.clock = clock_at(T0 + 100 * i);
        o.ttl = 100_000;
        o.name = Some("name-a1".into());
        more.push(import_archive(&image, o).unwrap());
    }
    let (b, _) = seed(env, "b", T0 + 50, 10);
    let now = T0 + 1000;
    let e = prune_backups(&env.store, &PruneOptions::default()).unwrap_err();
    assert_eq!(e.code(), "INVALID_BACKUP_CONFIG");
    // Dry run changes nothing.
    let would = prune_backups(
        &env.store,
        &PruneOptions {
            expired: true,
            dry_run: true,
            clock: clock_at(now),
            ..Default::default()
        },
    )
    .unwrap()
    .deleted;
    assert_eq!(would.len(), 1);
    assert_eq!(list_backups(&env.store, &clock_at(now)).unwrap().len(), 4);
    let gone = prune_backups(
        &env.store,
        &PruneOptions {
            expired: true,
            clock: clock_at(now),
            ..Default::default()
        },
    )
    .unwrap()
    .deleted;
    assert_eq!(gone.iter().map(|i| &i.id).collect::<Vec<_>>(), vec![&b.id]);
    let gone = prune_backups(
        &env.store,
        &PruneOptions {
            keep_last: Some(1),
            clock: clock_at(now),
            ..Default::default()
        },
    )
    .unwrap()
    .deleted;
    let mut gone_ids: Vec<_> = gone.iter().map(|i| i.id.clone()).collect();
    gone_ids.sort();
    let mut expect = vec![a1.id.clone(), more[0].id.clone()];
    expect.sort();
    assert_eq!(gone_ids, expect, "keeps only the newest of name-a1");
    let left = list_backups(&env.store, &clock_at(now)).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, more[1].id);
    // older-than: the survivor is 800 s old at `now`.
    let none = prune_backups(
        &env.store,
        &PruneOptions {
            older_than: Some(800),
            clock: clock_at(now),
            ..Default::default()
        },
    )
    .unwrap()
    .deleted;
    assert!(none.is_empty());
    let gone = prune_backups(
        &env.store,
        &PruneOptions {
            older_than: Some(799),
            clock: clock_at(now),
            ..Default::default()
        },
    )
    .unwrap()
    .deleted;
    assert_eq!(gone.len(), 1);
    assert!(list_backups(&env.store, &clock_at(now)).unwrap().is_empty());
});

both_stores!(uncommitted_upload_is_not_a_backup, |env: &Env| {
    // Data without meta (an interrupted create) is invisible to list and restore.
    let id = uuid::Uuid::new_v4().to_string();
    env.raw(|s| {
        let key = env.key(&id, "data.sqsh");
        async move { s.put(&key, vec![0u8; 1000].into()).await.unwrap() }
    });
    assert!(list_backups(&env.store, &clock_at(T0)).unwrap().is_empty());
    let e = restore_by_id(
        &id,
        RestoreOptions {
            dir: Some(env.path("t")),
            ..env.restore_options()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "BACKUP_NOT_FOUND");
});

both_stores!(prune_cleans_old_orphans_only, |env: &Env| {
    let (kept, _) = seed(env, "kept", T0, 100_000);
    // An interrupted create: data without meta under a drawn id.
    let orphan = uuid::Uuid::new_v4().to_string();
    // Not an id a create draws: never ours to delete.
    let foreign = env.key("not-an-id", "data.sqsh");
    env.raw(|s| {
        let (key, foreign) = (env.key(&orphan, "data.sqsh"), foreign.clone());
        async move {
            s.put(&key, vec![1u8; 5000].into()).await.unwrap();
            s.put(&foreign, vec![2u8; 10].into()).await.unwrap();
        }
    });
    // A local store also holds the staging file of an upload that never completed.
    let staging = (env.kind == "local").then(|| {
        let id = uuid::Uuid::new_v4().to_string();
        let p = env.path(&format!("store/backups/{id}/data.sqsh#1"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, vec![3u8; 700]).unwrap();
        p
    });
    let exists = |id: &str| {
        let key = env.key(id, "data.sqsh");
        env.raw(|s| async move { s.head(&key).await.is_ok() })
    };
    let prune = |min_age: u64, dry_run: bool| {
        prune_backups(
            &env.store,
            &PruneOptions {
                orphans: true,
                orphan_min_age: min_age,
                dry_run,
                ..Default::default()
            },
        )
        .unwrap()
    };

    // Just written: younger than the default safety age (a create may still be running).
    let r = prune(squashbox_backup::DEFAULT_ORPHAN_MIN_AGE_SECS, false);
    assert!(r.orphans.is_empty(), "{r:?}");
    assert!(r.deleted.is_empty());
    assert!(exists(&orphan));
    // Any age: reported on a dry run, still there.
    let r = prune(0, true);
    let mut found: Vec<_> = r.orphans.iter().map(|o| o.size_bytes).collect();
    found.sort();
    let expect: Vec<u64> = if staging.is_some() {
        vec![700, 5000]
    } else {
        vec![5000]
    };
    assert_eq!(found, expect, "{r:?}");
    assert!(r.orphans.iter().any(|o| o.id == orphan));
    assert!(exists(&orphan));
    // For real.
    let r = prune(0, false);
    assert_eq!(r.orphans.len(), expect.len(), "{r:?}");
    assert!(r.deleted.is_empty());
    assert!(!exists(&orphan));
    if let Some(p) = &staging {
        assert!(!p.exists());
        assert!(
            !p.parent().unwrap().exists(),
            "the emptied id dir is removed"
        );
    }
    // The committed backup and the foreign object are untouched.
    let listed = list_backups(&env.store, &clock_at(T0)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, kept.id);
    assert!(verify_backup(&env.store, &kept.id).unwrap().ok);
    assert!(env.raw(|s| async move { s.head(&foreign).await.is_ok() }));
    // Nothing left to clean.
    assert!(prune(0, false).orphans.is_empty());

    // A rule-driven prune cleans orphans too; without any rule it is refused.
    env.raw(|s| {
        let key = env.key(&orphan, "data.sqsh");
        async move { s.put(&key, vec![1u8; 10].into()).await.unwrap() }
    });
    let e = prune_backups(
        &env.store,
        &PruneOptions {
            orphan_min_age: 0,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "INVALID_BACKUP_CONFIG");
    let r = prune_backups(
        &env.store,
        &PruneOptions {
            expired: true,
            orphan_min_age: 0,
            clock: clock_at(T0),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.orphans.len(), 1);
    assert!(r.deleted.is_empty());
    assert!(!exists(&orphan));
});

#[test]
fn local_store_archive_is_used_in_place_and_hashed_again_when_it_changes() {
    let env = common::local_env();
    let (handle, src) = seed(&env, "inplace", T0, 3600);
    let before = manifest(&src);
    let restore_into = |name: &str, now: i64| {
        restore_backup(
            &handle,
            RestoreOptions {
                dir: Some(env.path(name)),
                ..opts_at(&env, now)
            },
        )
    };
    restore_into("out1", T0 + 10).unwrap();
    assert_eq!(manifest(&env.path("out1")), before);
    // No copy of the archive in the cache, only the record that it was verified.
    let names: Vec<String> = std::fs::read_dir(env.cache.join("archives"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("{}.verified", handle.id)]);
    restore_into("out2", T0 + 20).unwrap();
    assert_eq!(manifest(&env.path("out2")), before);

    // Damage the stored archive in place, same size: the next restore hashes it again and
    // refuses it. (The mtime is set explicitly: coarse timestamps could otherwise repeat.)
    let data = env.path(&format!("store/backups/{}/data.sqsh", handle.id));
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&data)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    let e = restore_into("out3", T0 + 30).unwrap_err();
    assert_eq!(e.code(), "BACKUP_RESTORE_FAILED");
    assert!(e.message().contains("corrupted"), "{e}");
    assert!(!env.path("out3").exists());
}
