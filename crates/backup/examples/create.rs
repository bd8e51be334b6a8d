//! Create a backup of a directory and print its handle.
//!
//! `SQUASHBOX_STORE=file:///tmp/store cargo run -p squashbox-backup --example create`

#[path = "support/mod.rs"]
mod support;

use squashbox_backup::{create_backup, read_meta, BackupOptions, Store};

fn main() -> Result<(), squashbox_backup::BackupError> {
    let project = support::project();
    let handle = create_backup(BackupOptions::new(project.path()))?;
    println!("handle: {}", handle.to_json());

    let meta = read_meta(&Store::open_default()?, &handle.id)?;
    println!(
        "stored {} bytes ({} files, {}), sha256 {}",
        meta.size_bytes, meta.file_count, meta.compression, meta.sha256
    );
    assert_eq!(meta.file_count, 3);
    Ok(())
}
