//! The default restore mode: a copy-on-write FUSE overlay over the cached archive.
//! Needs root and /dev/fuse; skipped without them unless CI=true (then a failure).

mod common;

use std::path::{Path, PathBuf};

use common::{make_tree, manifest, Env};
use squashbox_backup::{
    active_restores, create_backup, restore_backup, unmount_restore, RestoreMode, RestoreOptions,
};

fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists() && rustix::process::geteuid().is_root();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but FUSE (root + /dev/fuse) is unavailable");
        }
        eprintln!("skipping: FUSE needs root and /dev/fuse");
    }
    ok
}

/// Unmounts the restore on `dir` on every path out of a test.
struct Mounted {
    dir: PathBuf,
    state: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount_restore(&self.dir, &self.state);
    }
}

fn overlay_options(env: &Env) -> RestoreOptions {
    RestoreOptions {
        mode: RestoreMode::Overlay,
        ..env.restore_options()
    }
}

/// Number of mounts on `dir` in this mount namespace.
fn mounts_on(dir: &Path) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = dir.to_str().unwrap();
    info.lines()
        .filter(|l| l.split(' ').nth(4) == Some(want))
        .count()
}

both_stores!(overlay_checkpoint_rollback_and_rerestore, |env: &Env| {
    if !fuse_available() {
        return;
    }
    let dir = env.path("work");
    make_tree(&dir);
    let before = manifest(&dir);
    let handle = create_backup(env.backup_options(&dir)).unwrap();
    std::fs::remove_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("README.md"), "clobbered").unwrap();
    let destroyed = manifest(&dir);

    let _guard = Mounted {
        dir: dir.clone(),
        state: env.state.clone(),
    };
    let r = restore_backup(&handle, overlay_options(env)).unwrap();
    assert!(r.success);
    assert_eq!(mounts_on(&dir), 1);
    assert_eq!(manifest(&dir), before);
    let active = active_restores(&env.state);
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].dir, dir);
    assert_eq!(active[0].id, handle.id);
    assert_eq!(active[0].pid, std::process::id());
    let upper = active[0].upper.clone();

    // Writes land in the upper dir; re-restoring discards them with a fresh upper.
    std::fs::write(dir.join("scratch"), "temp work").unwrap();
    std::fs::remove_file(dir.join("src/main.rs")).unwrap();
    assert!(upper.join("scratch").exists());
    restore_backup(&handle, overlay_options(env)).unwrap();
    assert_eq!(mounts_on(&dir), 1, "the previous overlay was not unmounted");
    assert_eq!(manifest(&dir), before);
    assert!(!upper.exists(), "old upper dir not removed");

    // Unmounting shows the directory underneath again, and forgets the restore.
    assert!(unmount_restore(&dir, &env.state).unwrap());
    assert_eq!(mounts_on(&dir), 0);
    assert_eq!(manifest(&dir), destroyed);
    assert!(active_restores(&env.state).is_empty());
});

both_stores!(overlay_restore_elsewhere, |env: &Env| {
    if !fuse_available() {
        return;
    }
    let dir = env.path("src-tree");
    make_tree(&dir);
    let handle = create_backup(env.backup_options(&dir)).unwrap();
    let other = env.path("not/yet/there");
    let _guard = Mounted {
        dir: other.clone(),
        state: env.state.clone(),
    };
    let r = restore_backup(
        &handle,
        RestoreOptions {
            dir: Some(other.clone()),
            ..overlay_options(env)
        },
    )
    .unwrap();
    assert_eq!(r.dir, other);
    assert_eq!(manifest(&other), manifest(&dir));
});

both_stores!(overlay_corrupt_archive_mounts_nothing, |env: &Env| {
    if !fuse_available() {
        return;
    }
    let dir = env.path("work");
    make_tree(&dir);
    // Not seeded into this machine's cache: the restore must fetch the damaged stored copy.
    let mut o = env.backup_options(&dir);
    o.seed_cache = false;
    let handle = create_backup(o).unwrap();
    std::fs::write(dir.join("after"), "kept").unwrap();
    let before = manifest(&dir);
    env.raw(|s| {
        let key = env.key(&handle.id, "data.sqsh");
        async move {
            use object_store::ObjectStoreExt;
            let mut data = s.get(&key).await.unwrap().bytes().await.unwrap().to_vec();
            data[0] ^= 0x55; // the superblock magic
            s.put(&key, data.into()).await.unwrap();
        }
    });
    let _guard = Mounted {
        dir: dir.clone(),
        state: env.state.clone(),
    };
    let e = restore_backup(&handle, overlay_options(env)).unwrap_err();
    assert_eq!(e.code(), "BACKUP_RESTORE_FAILED");
    assert_eq!(mounts_on(&dir), 0);
    assert_eq!(manifest(&dir), before);
    assert!(active_restores(&env.state).is_empty());
});

both_stores!(concurrent_restores_on_one_dir_serialize, |env: &Env| {
    if !fuse_available() {
        return;
    }
    let dir = env.path("work");
    make_tree(&dir);
    let before = manifest(&dir);
    let handle = create_backup(env.backup_options(&dir)).unwrap();
    let _guard = Mounted {
        dir: dir.clone(),
        state: env.state.clone(),
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|_| s.spawn(|| restore_backup(&handle, overlay_options(env))))
            .collect();
        for w in workers {
            w.join().unwrap().unwrap();
        }
    });
    // Serialized: each restore replaced the previous one; never two stacked mounts.
    assert_eq!(mounts_on(&dir), 1);
    assert_eq!(manifest(&dir), before);
    assert_eq!(active_restores(&env.state).len(), 1);
});

remote_stores!(cache_eviction_spares_the_mounted_archive, |env: &Env| {
    if !fuse_available() {
        return;
    }
    let cached = |id: &str| {
        env.cache
            .join("archives")
            .join(format!("{id}.sqsh"))
            .is_file()
    };
    let backup = |name: &str| {
        let dir = env.path(name);
        make_tree(&dir);
        std::fs::write(dir.join("which"), name).unwrap();
        create_backup(env.backup_options(&dir)).unwrap()
    };
    let a = backup("a");
    let b = backup("b");
    let mounted = env.path("a");
    let _guard = Mounted {
        dir: mounted.clone(),
        state: env.state.clone(),
    };
    restore_backup(&a, overlay_options(env)).unwrap();
    // A bound no archive fits: restoring `b` (copy mode) keeps `b`, just used, and the
    // archive under the live overlay on `a`, although `a` is the least recently used.
    let copy = RestoreOptions {
        dir: Some(env.path("b-copy")),
        cache_max_bytes: Some(1),
        ..env.restore_options()
    };
    restore_backup(&b, copy.clone()).unwrap();
    assert!(cached(&a.id), "the mounted archive was evicted");
    assert!(cached(&b.id));
    assert_eq!(std::fs::read_to_string(mounted.join("which")).unwrap(), "a");
    // Unmounted, it is evicted like any other.
    assert!(unmount_restore(&mounted, &env.state).unwrap());
    restore_backup(&b, copy).unwrap();
    assert!(!cached(&a.id));
    assert!(cached(&b.id));
});
