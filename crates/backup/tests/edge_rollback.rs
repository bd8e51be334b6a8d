//! Checkpoint/rollback of the testkit's edge-case tree (every file type, hard links, sparse
//! files, xattrs, odd owners, modes, mtimes and names), compared field by field with the
//! testkit manifest: in copy mode and through the overlay mount, on local and S3 stores.

mod common;

use std::path::{Path, PathBuf};

use common::Env;
use squashbox_backup::{
    create_backup, restore_backup, unmount_restore, RestoreMode, RestoreOptions,
};
use squashbox_testkit::manifest::{assert_manifests_equal, DiffOptions, Manifest};
use squashbox_testkit::tree::{EdgeTree, EdgeTreeOptions};

/// Empty `dir` without removing it (the destructive step of the scenario).
fn wipe(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
}

struct Unmount(PathBuf, PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = unmount_restore(&self.0, &self.1);
    }
}

fn rollback(env: &Env, mode: RestoreMode) {
    if !squashbox_testkit::skip::require_root() {
        return;
    }
    if mode == RestoreMode::Overlay && !squashbox_testkit::skip::require_fuse() {
        return;
    }
    let dir = env.path("edge");
    EdgeTree::create(&dir, &EdgeTreeOptions::cheap()).unwrap();
    let before = Manifest::scan(&dir).unwrap();
    let handle = create_backup(env.backup_options(&dir)).unwrap();
    wipe(&dir);
    let _guard = Unmount(dir.clone(), env.state.clone());
    restore_backup(
        &handle,
        RestoreOptions {
            mode,
            ..env.restore_options()
        },
    )
    .unwrap();
    let after = Manifest::scan(&dir).unwrap();
    let opts = match mode {
        RestoreMode::Copy => DiffOptions::default(),
        // Through the overlay, by overlayfs semantics (docs/backup.md, "Overlay mode"): a 0/0
        // character device in the image is a whiteout and `trusted.overlay.*` xattrs are the
        // overlay's own, so both are hidden; hard links in the image show as separate inodes.
        RestoreMode::Overlay => DiffOptions {
            ignore_hard_links: true,
            ignore_paths: vec![b"types/char_whiteout".to_vec()],
            ignore_xattr_prefixes: vec![b"trusted.overlay.".to_vec()],
            ..DiffOptions::default()
        },
    };
    assert_manifests_equal(
        &before,
        &after,
        &opts,
        &format!("{mode:?} rollback on {}", env.kind),
    );
}

both_stores!(copy_mode, |env: &Env| rollback(env, RestoreMode::Copy));
both_stores!(overlay_mode, |env: &Env| rollback(
    env,
    RestoreMode::Overlay
));
