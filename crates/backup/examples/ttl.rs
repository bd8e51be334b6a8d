//! Short and long time-to-live. A backup counts as expired 60 s before `createdAt + ttl`, so
//! a TTL under a minute is expired at once; expiry can be checked with an injected clock.

#[path = "support/mod.rs"]
mod support;

use squashbox_backup::{
    create_backup, read_meta, restore_backup, BackupOptions, Clock, RestoreMode, RestoreOptions,
    Store,
};

fn main() -> Result<(), squashbox_backup::BackupError> {
    let project = support::project();
    let dir = project.path();
    let store = Store::open_default()?;
    let copy = || RestoreOptions {
        mode: RestoreMode::Copy,
        ..Default::default()
    };

    // Short: 30 seconds is inside the 60 s safety buffer, so it cannot be restored.
    let mut short = BackupOptions::new(dir);
    short.ttl = 30;
    let short = create_backup(short)?;
    let err = restore_backup(&short, copy()).unwrap_err();
    assert_eq!(err.code(), "BACKUP_EXPIRED");
    println!("short TTL: {err}");

    // Long: 30 days.
    let mut long = BackupOptions::new(dir);
    long.ttl = 30 * 86_400;
    let long = create_backup(long)?;
    restore_backup(&long, copy())?;
    let meta = read_meta(&store, &long.id)?;
    println!("long TTL: expires at {}", meta.expires_at());

    // Pretend it is 29 days and 23 hours 59 minutes later: now inside the buffer.
    let later = meta.expires_at() - time::Duration::seconds(59);
    let err = restore_backup(
        &long,
        RestoreOptions {
            clock: Clock::fixed(later),
            ..copy()
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), "BACKUP_EXPIRED");
    println!("at {later}: {}", err.code());
    Ok(())
}
