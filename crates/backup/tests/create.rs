//! create_backup with squashbox's own builder, on the local store and a real S3 server:
//! round trips, gitignore/excludes, validation, multipart uploads, faults, locking.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::{make_tree, manifest, pseudo_random, Env};
use squashbox_backup::{
    create_backup, list_backups, read_meta, restore_backup, verify_backup, Clock, RestoreOptions,
    Store,
};

fn restore_to(env: &Env, handle: &squashbox_backup::DirectoryBackup, to: &Path) {
    restore_backup(
        handle,
        RestoreOptions {
            dir: Some(to.to_path_buf()),
            ..env.restore_options()
        },
    )
    .unwrap();
}

both_stores!(create_then_checkpoint_rollback, |env: &Env| {
    let dir = env.path("work");
    make_tree(&dir);
    let before = manifest(&dir);
    let mut o = env.backup_options(&dir);
    o.name = Some("before-rm".into());
    let handle = create_backup(o).unwrap();
    assert_eq!(handle.dir, dir);
    assert_eq!(handle.name.as_deref(), Some("before-rm"));
    uuid::Uuid::parse_str(&handle.id).unwrap();
    assert!(
        env.temp_leftovers().is_empty(),
        "{:?}",
        env.temp_leftovers()
    );
    // A destructive command.
    let status = Command::new("sh")
        .arg("-c")
        .arg("rm -rf src README.md && echo junk > new && chmod 600 script.sh")
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    assert_ne!(manifest(&dir), before);
    restore_backup(&handle, env.restore_options()).unwrap();
    assert_eq!(manifest(&dir), before);
    let meta = read_meta(&env.store, &handle.id).unwrap();
    assert_eq!(meta.file_count, 5);
    assert_eq!(meta.compression, "zstd");
    assert_eq!(meta.ttl, 259_200);
    assert!(verify_backup(&env.store, &handle.id).unwrap().ok);
});

both_stores!(gitignore_and_excludes, |env: &Env| {
    let dir = env.path("repo");
    make_tree(&dir);
    let git = Command::new("git")
        .args(["init", "-q"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(git.success());
    std::fs::write(dir.join(".gitignore"), "target/\n*.log\n").unwrap();
    std::fs::create_dir_all(dir.join("target/debug")).unwrap();
    std::fs::write(dir.join("target/debug/big"), pseudo_random(10_000, 1)).unwrap();
    std::fs::write(dir.join("build.log"), "log").unwrap();
    std::fs::write(dir.join("secret.env"), "x").unwrap();

    let mut o = env.backup_options(&dir);
    o.gitignore = true;
    o.excludes = vec!["*.env".into()];
    let handle = create_backup(o).unwrap();
    let out = env.path("out-ignored");
    restore_to(env, &handle, &out);
    assert!(out.join("README.md").exists());
    assert!(out.join(".gitignore").exists());
    assert!(!out.join("target").exists(), "gitignored dir restored");
    assert!(!out.join("build.log").exists(), "gitignored file restored");
    assert!(!out.join("secret.env").exists(), "excluded file restored");
    let meta = read_meta(&env.store, &handle.id).unwrap();
    assert!(meta.gitignore);
    assert_eq!(meta.excludes, vec!["*.env".to_string()]);

    // Without the options everything is kept.
    let handle = create_backup(env.backup_options(&dir)).unwrap();
    let out = env.path("out-all");
    restore_to(env, &handle, &out);
    assert!(out.join("target/debug/big").exists());
    assert!(out.join("build.log").exists());
    assert!(out.join("secret.env").exists());
});

both_stores!(large_archive_multipart_round_trip, |env: &Env| {
    // Incompressible data well above the 8 MiB part size: a multipart upload of 3+ parts and
    // parallel ranged downloads.
    let dir = env.path("big");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("blob1"), pseudo_random(13 << 20, 11)).unwrap();
    std::fs::write(dir.join("blob2"), pseudo_random(9 << 20, 12)).unwrap();
    let before = manifest(&dir);
    let handle = create_backup(env.backup_options(&dir)).unwrap();
    let meta = read_meta(&env.store, &handle.id).unwrap();
    assert!(meta.size_bytes > 2 * squashbox_backup::PART_SIZE as u64);
    std::fs::remove_file(dir.join("blob1")).unwrap();
    restore_backup(&handle, env.restore_options()).unwrap();
    assert_eq!(manifest(&dir), before);
    assert!(env.temp_leftovers().is_empty());
});

both_stores!(validation_rules, |env: &Env| {
    let dir = env.path("v");
    std::fs::create_dir_all(&dir).unwrap();
    let file = env.path("plain-file");
    std::fs::write(&file, "x").unwrap();
    let check = |o: squashbox_backup::BackupOptions, needle: &str| {
        let e = create_backup(o).unwrap_err();
        assert_eq!(e.code(), "INVALID_BACKUP_CONFIG", "{e}");
        assert!(e.message().contains(needle), "{needle:?} not in {e}");
    };
    check(env.backup_options(Path::new("relative")), "absolute");
    check(env.backup_options(&dir.join("../v")), "..");
    check(env.backup_options(&env.path("missing")), "exist");
    check(env.backup_options(&file), "directory");
    let mut o = env.backup_options(&dir);
    o.name = Some("x".repeat(257));
    check(o, "256");
    let mut o = env.backup_options(&dir);
    o.name = Some("bad\u{7}name".into());
    check(o, "control");
    let mut o = env.backup_options(&dir);
    o.ttl = 0;
    check(o, "ttl");
    assert!(list_backups(&env.store, &Clock::system())
        .unwrap()
        .is_empty());
});

#[test]
fn unreachable_store_is_invalid_config() {
    let env = common::local_env();
    let dir = env.path("d");
    std::fs::create_dir_all(&dir).unwrap();
    // A loopback port nobody listens on (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let store = Store::open_with_config(
        "s3://nobucket/p",
        &[
            ("aws_endpoint_url", endpoint.as_str()),
            ("aws_access_key_id", "k"),
            ("aws_secret_access_key", "s"),
        ],
    )
    .unwrap();
    let mut o = env.backup_options(&dir);
    o.store = Some(store);
    let e = create_backup(o).unwrap_err();
    assert_eq!(e.code(), "INVALID_BACKUP_CONFIG");
    assert!(e.message().contains("not reachable"), "{e}");
}

both_stores!(same_dir_serialized_other_dirs_concurrent, |env: &Env| {
    let dir = env.path("locked");
    make_tree(&dir);
    let other = env.path("free");
    make_tree(&other);
    let held = squashbox_backup::lock::lock_dir(&env.state, &dir).unwrap();
    // Another dir is not blocked by the held lock.
    create_backup(env.backup_options(&other)).unwrap();
    let (tx, rx) = mpsc::channel();
    let o = env.backup_options(&dir);
    let worker = std::thread::spawn(move || {
        let r = create_backup(o);
        tx.send(()).unwrap();
        r
    });
    // While the lock is held the create must not complete.
    assert!(
        rx.recv_timeout(Duration::from_millis(1500)).is_err(),
        "create on a locked dir did not wait for the lock"
    );
    drop(held);
    rx.recv_timeout(Duration::from_secs(60))
        .expect("create did not proceed after the lock was released");
    worker.join().unwrap().unwrap();
    assert_eq!(list_backups(&env.store, &Clock::system()).unwrap().len(), 2);
});

#[test]
fn local_store_archive_is_built_in_place() {
    let env = common::local_env();
    let dir = env.path("work");
    make_tree(&dir);
    let before = manifest(&dir);
    let mut o = env.backup_options(&dir);
    o.temp_dir = None; // the default: straight into the store, no copy
    let handle = create_backup(o).unwrap();
    let stored = env.path("store").join("backups").join(&handle.id);
    let mut names: Vec<String> = std::fs::read_dir(&stored)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["data.sqsh", "meta.json"],
        "no staging file may remain"
    );
    assert!(verify_backup(&env.store, &handle.id).unwrap().ok);
    // The create hashed the archive where it lies: this machine's cache records it as
    // verified, so the first restore need not read it all again.
    let stamp = env
        .cache
        .join("archives")
        .join(format!("{}.verified", handle.id));
    let recorded = std::fs::read_to_string(&stamp).expect("create records the verified archive");
    let meta = read_meta(&env.store, &handle.id).unwrap();
    assert!(recorded.trim_end().ends_with(&meta.sha256), "{recorded}");
    let out = env.path("restored");
    restore_to(&env, &handle, &out);
    assert_eq!(manifest(&out), before);
    assert_eq!(std::fs::read_to_string(&stamp).unwrap(), recorded);

    // The record names the file's identity, not just its id: an archive changed after the
    // create (same size) is hashed again and refused.
    let data = stored.join("data.sqsh");
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let e = restore_backup(
        &handle,
        RestoreOptions {
            dir: Some(env.path("restored-again")),
            ..env.restore_options()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "BACKUP_RESTORE_FAILED");
    assert!(e.message().contains("corrupted"), "{e}");
    assert!(!env.path("restored-again").exists());
}
