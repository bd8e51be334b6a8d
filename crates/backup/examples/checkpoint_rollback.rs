//! Checkpoint before a risky command; roll back if it fails.

#[path = "support/mod.rs"]
mod support;

use squashbox_backup::{
    create_backup, delete_backup, restore_backup, BackupOptions, RestoreMode, RestoreOptions, Store,
};

fn main() -> Result<(), squashbox_backup::BackupError> {
    let project = support::project();
    let dir = project.path();
    let before = support::snapshot(dir);

    let mut options = BackupOptions::new(dir);
    options.name = Some("before-migration".into());
    options.ttl = 3600; // a checkpoint only needs to live as long as the risky step
    let checkpoint = create_backup(options)?;

    // The risky command: it damages the tree, then fails.
    let status = std::process::Command::new("sh")
        .args(["-c", "rm -rf src && echo broken > README.md && exit 3"])
        .current_dir(dir)
        .status()
        .unwrap();

    if status.success() {
        println!("command succeeded; dropping the checkpoint");
    } else {
        println!("command failed ({status}); rolling back");
        restore_backup(
            &checkpoint,
            RestoreOptions {
                mode: RestoreMode::Copy,
                ..Default::default()
            },
        )?;
        assert_eq!(
            support::snapshot(dir),
            before,
            "rollback must restore the tree"
        );
        println!("rolled back to {}", checkpoint.id);
    }
    delete_backup(&Store::open_default()?, &checkpoint.id)?;
    Ok(())
}
