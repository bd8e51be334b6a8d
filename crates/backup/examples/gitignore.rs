//! Leave out what git ignores (and extra patterns) when backing up a repository.

#[path = "support/mod.rs"]
mod support;

use squashbox_backup::{create_backup, restore_backup, BackupOptions, RestoreMode, RestoreOptions};

fn main() -> Result<(), squashbox_backup::BackupError> {
    let project = support::project();
    let dir = project.path();
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir)
        .status()
        .expect("git is needed for this example");
    assert!(git.success());
    std::fs::write(dir.join(".gitignore"), "target/\n*.log\n").unwrap();
    std::fs::create_dir_all(dir.join("target/debug")).unwrap();
    std::fs::write(dir.join("target/debug/app"), vec![0u8; 100_000]).unwrap();
    std::fs::write(dir.join("debug.log"), "noise").unwrap();
    std::fs::write(dir.join(".env"), "SECRET=1").unwrap();

    let mut options = BackupOptions::new(dir);
    options.gitignore = true;
    options.excludes = vec![".env".into()];
    let handle = create_backup(options)?;

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restored");
    restore_backup(
        &handle,
        RestoreOptions {
            dir: Some(target.clone()),
            mode: RestoreMode::Copy,
            ..Default::default()
        },
    )?;
    for kept in ["README.md", "src/main.rs", ".gitignore"] {
        assert!(target.join(kept).exists(), "{kept} should be restored");
    }
    for left_out in ["target", "debug.log", ".env"] {
        assert!(
            !target.join(left_out).exists(),
            "{left_out} should be left out"
        );
    }
    println!("restored without target/, *.log and .env");
    Ok(())
}
