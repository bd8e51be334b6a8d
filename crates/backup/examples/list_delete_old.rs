//! List backups and delete the old ones: by hand, and with prune rules.

#[path = "support/mod.rs"]
mod support;

use squashbox_backup::{
    create_backup, delete_backup, list_backups, prune_backups, BackupOptions, Clock, PruneOptions,
    Store,
};

fn main() -> Result<(), squashbox_backup::BackupError> {
    let project = support::project();
    let store = Store::open_default()?;
    let name = format!("old-demo-{}", std::process::id());
    let mut ids = Vec::new();
    for i in 0..4 {
        let mut options = BackupOptions::new(project.path());
        options.name = Some(name.clone());
        // Pretend they were made an hour apart.
        options.clock =
            Clock::fixed(time::OffsetDateTime::now_utc() - time::Duration::hours(4 - i));
        ids.push(create_backup(options)?.id);
    }
    let now = Clock::system();
    for b in list_backups(&store, &now)? {
        println!(
            "{}  {:<20}  {}  expired={}",
            b.id,
            b.name.as_deref().unwrap_or("-"),
            b.created_at,
            b.expired
        );
    }

    // By hand: delete everything of ours older than 3.5 hours.
    for b in list_backups(&store, &now)? {
        let age = time::OffsetDateTime::now_utc() - b.meta.created_at;
        if b.name.as_deref() == Some(name.as_str()) && age > time::Duration::minutes(210) {
            delete_backup(&store, &b.id)?;
            println!("deleted {}", b.id);
        }
    }
    // With rules: keep only the newest 1 per name (dry run first).
    let would = prune_backups(
        &store,
        &PruneOptions {
            keep_last: Some(1),
            dry_run: true,
            ..Default::default()
        },
    )?;
    let ours: Vec<_> = would
        .deleted
        .iter()
        .filter(|b| b.name.as_deref() == Some(name.as_str()))
        .collect();
    assert_eq!(ours.len(), 2, "two of the three remaining would go");
    for b in ours {
        delete_backup(&store, &b.id)?;
    }
    let left: Vec<_> = list_backups(&store, &now)?
        .into_iter()
        .filter(|b| b.name.as_deref() == Some(name.as_str()))
        .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, ids[3]);
    println!("kept {}", left[0].id);
    Ok(())
}
