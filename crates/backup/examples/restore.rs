//! Restore a backup with the default copy-on-write overlay (when FUSE is available: root and
//! /dev/fuse), else by copying files back. The overlay mount lives as long as this process
//! or until `unmount_restore`.

#[path = "support/mod.rs"]
mod support;

use squashbox_backup::{
    create_backup, paths, restore_backup, unmount_restore, BackupOptions, RestoreMode,
    RestoreOptions,
};

fn main() -> Result<(), squashbox_backup::BackupError> {
    let project = support::project();
    let dir = project.path();
    let handle = create_backup(BackupOptions::new(dir))?;
    let before = support::snapshot(dir);

    std::fs::remove_file(dir.join("notes.txt")).unwrap();
    std::fs::write(dir.join("README.md"), "oops").unwrap();

    let fuse = std::path::Path::new("/dev/fuse").exists() && rustix::process::geteuid().is_root();
    let mode = if fuse {
        RestoreMode::Overlay
    } else {
        RestoreMode::Copy
    };
    let result = restore_backup(
        &handle,
        RestoreOptions {
            mode,
            ..Default::default()
        },
    )?;
    println!(
        "restored {} into {} ({mode:?})",
        result.id,
        result.dir.display()
    );
    assert_eq!(support::snapshot(dir), before);

    if mode == RestoreMode::Overlay {
        // Writes now go to the overlay's upper dir; unmounting discards them.
        unmount_restore(dir, &paths::state_dir()?)?;
    }
    Ok(())
}
