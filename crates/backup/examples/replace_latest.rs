//! Keep exactly one "latest" backup of a directory: delete the previous one, then write the
//! new one (so the store never holds more than one per name).

#[path = "support/mod.rs"]
mod support;

use squashbox_backup::{
    create_backup, delete_backup, list_backups, BackupOptions, Clock, DirectoryBackup, Store,
};

fn replace_latest(dir: &std::path::Path, name: &str) -> squashbox_backup::Result<DirectoryBackup> {
    let store = Store::open_default()?;
    for old in list_backups(&store, &Clock::system())? {
        if old.name.as_deref() == Some(name) {
            delete_backup(&store, &old.id)?;
        }
    }
    let mut options = BackupOptions::new(dir);
    options.name = Some(name.to_string());
    create_backup(options)
}

fn main() -> Result<(), squashbox_backup::BackupError> {
    let project = support::project();
    let name = format!("latest-{}", std::process::id());
    let first = replace_latest(project.path(), &name)?;
    std::fs::write(project.path().join("notes.txt"), "newer").unwrap();
    let second = replace_latest(project.path(), &name)?;
    assert_ne!(first.id, second.id);
    let store = Store::open_default()?;
    let mine: Vec<_> = list_backups(&store, &Clock::system())?
        .into_iter()
        .filter(|b| b.name.as_deref() == Some(name.as_str()))
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, second.id);
    println!("latest is {}", second.id);
    Ok(())
}
