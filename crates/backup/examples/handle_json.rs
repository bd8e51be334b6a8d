//! Keep the handle as JSON (a file, a database row, a job queue) and restore from it later.

#[path = "support/mod.rs"]
mod support;

use squashbox_backup::{
    create_backup, restore_backup, BackupOptions, DirectoryBackup, RestoreMode, RestoreOptions,
};

fn main() -> Result<(), squashbox_backup::BackupError> {
    let project = support::project();
    let dir = project.path();
    let handle = create_backup(BackupOptions::new(dir))?;
    let saved = project.path().with_extension("handle.json");
    std::fs::write(&saved, handle.to_json()).unwrap();
    println!("saved {}", std::fs::read_to_string(&saved).unwrap());

    // ... later, maybe in another process ...
    std::fs::remove_dir_all(dir.join("src")).unwrap();
    let loaded = DirectoryBackup::from_json(&std::fs::read_to_string(&saved).unwrap())?;
    assert_eq!(loaded, handle);
    restore_backup(
        &loaded,
        RestoreOptions {
            mode: RestoreMode::Copy,
            ..Default::default()
        },
    )?;
    assert!(dir.join("src/main.rs").exists());
    std::fs::remove_file(saved).unwrap();
    println!("restored from the saved handle");
    Ok(())
}
