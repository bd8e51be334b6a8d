//! Name backups and find them again by name.

#[path = "support/mod.rs"]
mod support;

use squashbox_backup::{create_backup, list_backups, BackupOptions, Clock, Store};

fn main() -> Result<(), squashbox_backup::BackupError> {
    let project = support::project();
    let dir = project.path();
    let tag = format!("nightly-{}", std::process::id());
    for day in 1..=3 {
        std::fs::write(dir.join("notes.txt"), format!("day {day}\n")).unwrap();
        let mut options = BackupOptions::new(dir);
        options.name = Some(tag.clone());
        create_backup(options)?;
    }
    let store = Store::open_default()?;
    let nightly: Vec<_> = list_backups(&store, &Clock::system())?
        .into_iter()
        .filter(|b| b.name.as_deref() == Some(tag.as_str()))
        .collect();
    for b in &nightly {
        println!("{} {} {} bytes", b.id, b.created_at, b.size_bytes);
    }
    assert_eq!(nightly.len(), 3);
    Ok(())
}
