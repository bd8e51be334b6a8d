//! Every error code, how to trigger it and how to handle it.

#[path = "support/mod.rs"]
mod support;

use squashbox_backup::{
    create_backup, restore_backup, BackupError, BackupOptions, DirectoryBackup, ErrorCode,
    RestoreMode, RestoreOptions,
};

fn handle(e: &BackupError) -> &'static str {
    match e.kind() {
        ErrorCode::InvalidBackupConfig => "fix the options (the message names the rule)",
        ErrorCode::BackupCreateFailed => "nothing was stored; fix the cause and retry",
        ErrorCode::BackupNotFound => "the id is unknown (deleted, or another store)",
        ErrorCode::BackupExpired => "too old to restore; make a new backup",
        ErrorCode::BackupRestoreFailed => "the target is unchanged; check the cause",
    }
}

fn main() {
    let project = support::project();
    let dir = project.path();
    let copy = || RestoreOptions {
        mode: RestoreMode::Copy,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut report = |e: BackupError| {
        println!(
            "{}: {}\n  -> {}\n  json: {}",
            e.code(),
            e.message(),
            handle(&e),
            e.to_json()
        );
        seen.push(e.code());
    };

    // INVALID_BACKUP_CONFIG: a relative directory.
    report(create_backup(BackupOptions::new("relative/dir")).unwrap_err());

    // BACKUP_CREATE_FAILED: the build area cannot be used.
    let mut o = BackupOptions::new(dir);
    o.temp_dir = Some(dir.join("no/such/temp/dir"));
    report(create_backup(o).unwrap_err());

    // BACKUP_NOT_FOUND: a well-formed id nobody stored.
    let ghost = DirectoryBackup {
        id: "00000000-0000-4000-8000-000000000000".into(),
        dir: dir.to_path_buf(),
        name: None,
    };
    report(restore_backup(&ghost, copy()).unwrap_err());

    // BACKUP_EXPIRED: a TTL inside the 60 s buffer.
    let mut o = BackupOptions::new(dir);
    o.ttl = 10;
    let short = create_backup(o).unwrap();
    let e = restore_backup(&short, copy()).unwrap_err();
    assert!(e.context().expired_at.is_some());
    report(e);

    // BACKUP_RESTORE_FAILED: the target's parent is a regular file.
    let good = create_backup(BackupOptions::new(dir)).unwrap();
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    report(
        restore_backup(
            &good,
            RestoreOptions {
                dir: Some(blocker.join("target")),
                ..copy()
            },
        )
        .unwrap_err(),
    );

    assert_eq!(
        seen,
        [
            "INVALID_BACKUP_CONFIG",
            "BACKUP_CREATE_FAILED",
            "BACKUP_NOT_FOUND",
            "BACKUP_EXPIRED",
            "BACKUP_RESTORE_FAILED"
        ]
    );
}
