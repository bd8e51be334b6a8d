//! Files hard-linked inside a lower image: every name shows one `st_ino` and the image's link
//! count, a copy-up (write, chmod, ...) through any name copies the data once and leaves all
//! names as links of one upper file, on disk and through the kernel's overlayfs over the same
//! upper directory; names not linked yet (below a renamed directory, or lost in a crash) are
//! linked from the index when next looked up, also after a remount.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::{DirEntryExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;

/// `a`, `d/b`, `d/sub/c`: one inode (3 links). `p`, `q`: another (2 links). `r/h` and `top`:
/// a third, with one name inside a directory the tests rename.
fn hardlink_tree(root: &Path) {
    fs::create_dir_all(root.join("d/sub")).unwrap();
    fs::write(root.join("a"), b"shared\n").unwrap();
    fs::hard_link(root.join("a"), root.join("d/b")).unwrap();
    fs::hard_link(root.join("a"), root.join("d/sub/c")).unwrap();
    fs::write(root.join("p"), b"pair").unwrap();
    fs::set_permissions(root.join("p"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::hard_link(root.join("p"), root.join("q")).unwrap();
    fs::create_dir(root.join("r")).unwrap();
    fs::write(root.join("top"), b"top\n").unwrap();
    fs::hard_link(root.join("top"), root.join("r/h")).unwrap();
    fs::write(root.join("plain"), b"plain").unwrap();
}

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

fn nlink(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().nlink()
}

/// Entries of the index directory (squashbox's private part of the work directory).
fn index_entries(fx: &Fixture) -> Vec<fs::Metadata> {
    fs::read_dir(fx.work.join("squashbox-index"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .collect()
}

fn image_links_share_one_inode_and_copy_up_once(kind: LowerKind) {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::with_kind(hardlink_tree, kind);
    let names = ["a", "d/b", "d/sub/c"];
    let first = ino(&fx.m("a"));
    for n in names {
        assert_eq!(ino(&fx.m(n)), first, "{n}: one st_ino for every name");
        assert_eq!(nlink(&fx.m(n)), 3, "{n}: the image's link count");
    }
    assert_ne!(ino(&fx.m("p")), first);
    for e in fs::read_dir(fx.m("d")).unwrap() {
        let e = e.unwrap();
        assert_eq!(e.ino(), ino(&e.path()), "d_ino == st_ino");
    }
    // rename(2) between two names of one file does nothing (also before any copy-up).
    fs::rename(fx.m("p"), fx.m("q")).unwrap();
    assert_eq!(fs::read(fx.m("p")).unwrap(), b"pair");
    assert_eq!(fs::read(fx.m("q")).unwrap(), b"pair");
    assert_eq!(
        fs::read_dir(&fx.upper).unwrap().count(),
        0,
        "nothing copied up"
    );

    // A write through one name copies up once; every name shows it, with the same st_ino.
    append(&fx.m("d/b"), b"more\n");
    for n in names {
        assert_eq!(fs::read(fx.m(n)).unwrap(), b"shared\nmore\n", "{n}");
        assert_eq!(ino(&fx.m(n)), first, "{n}: st_ino stable across copy-up");
        assert_eq!(nlink(&fx.m(n)), 3, "{n}: link count after copy-up");
    }
    // On disk: all three names are links of one upper inode, plus the index entry.
    let up = fs::symlink_metadata(fx.u("a")).unwrap();
    for n in names {
        let m = fs::symlink_metadata(fx.u(n)).unwrap();
        assert_eq!(m.ino(), up.ino(), "{n} linked in the upper dir");
    }
    assert_eq!(up.nlink(), 4, "3 names + the index entry");
    assert_eq!(fs::read(fx.u("d/sub/c")).unwrap(), b"shared\nmore\n");
    let index = index_entries(&fx);
    assert_eq!(index.len(), 1);
    assert_eq!(index[0].ino(), up.ino());
    assert!(
        fs::symlink_metadata(fx.u("p")).is_err(),
        "other files untouched"
    );

    // chmod through one name (a metadata-only change) copies up and links both names.
    fs::set_permissions(fx.m("q"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(fx.m("p")).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(ino(&fx.u("p")), ino(&fx.u("q")));
    assert_eq!(fs::read(fx.u("p")).unwrap(), b"pair");
    // Now both upper: still a no-op.
    fs::rename(fx.m("p"), fx.m("q")).unwrap();
    assert!(fx.m("p").exists() && fx.m("q").exists());

    // Unlinking one name leaves a whiteout and the other names linked.
    fs::remove_file(fx.m("d/sub/c")).unwrap();
    assert!(is_whiteout(&fx.u("d/sub/c")));
    assert_eq!(nlink(&fx.m("a")), 2);
    assert_eq!(nlink(&fx.u("a")), 3);
    // A link made through the mount joins the same file.
    fs::hard_link(fx.m("a"), fx.m("d/sub/again")).unwrap();
    assert_eq!(ino(&fx.m("d/sub/again")), first);
    assert_eq!(nlink(&fx.m("d/b")), 3);
    assert_eq!(ino(&fx.u("d/sub/again")), up.ino());

    let ours = manifest(&fx.mnt, ManifestOpts::full());
    // A crash between writing the index entry and linking a name: the name must show the
    // copied-up data after the next mount, not the stale image data.
    fx.unmount_overlay();
    let d = fs::symlink_metadata(fx.u("d")).unwrap();
    fs::remove_file(fx.u("d/b")).unwrap();
    // The simulated crash is not a change of `d` through the mount: keep its times.
    fs::File::open(fx.u("d"))
        .unwrap()
        .set_times(
            fs::FileTimes::new()
                .set_accessed(d.accessed().unwrap())
                .set_modified(d.modified().unwrap()),
        )
        .unwrap();
    fx.assert_remount_shows(&ours);
    assert_eq!(fs::read(fx.m("d/b")).unwrap(), b"shared\nmore\n");
    assert_eq!(ino(&fx.m("d/b")), first, "st_ino stable across remount");
    assert_eq!(ino(&fx.u("d/b")), up.ino(), "relinked from the index");
    fx.assert_kernel_shows(&ours);
}

fn names_below_a_renamed_directory_are_linked_on_lookup(kind: LowerKind) {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::with_kind(hardlink_tree, kind);
    let first = ino(&fx.m("top"));
    assert_eq!(ino(&fx.m("r/h")), first);
    // r/h now lives at r2/h (redirect to the lower r): not at its layer path any more.
    fs::rename(fx.m("r"), fx.m("r2")).unwrap();
    fx.remount_overlay(); // the kernel forgets every name it looked up
    append(&fx.m("top"), b"changed\n");
    assert!(
        fs::symlink_metadata(fx.u("r2/h")).is_err(),
        "not reachable at its layer path, so not linked by the copy-up"
    );
    // After a remount the name still resolves to the copied-up data and gets linked, also
    // when it is first met in a listing (`ls -l`: readdirplus) rather than by a lookup.
    fx.remount_overlay();
    let listed: Vec<(String, u64)> = fs::read_dir(fx.m("r2"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(listed, vec![("h".to_string(), 12)], "size of the copy");
    assert_eq!(fs::read(fx.m("r2/h")).unwrap(), b"top\nchanged\n");
    assert_eq!(ino(&fx.m("r2/h")), first);
    assert_eq!(ino(&fx.u("r2/h")), ino(&fx.u("top")));
    assert_eq!(nlink(&fx.m("top")), 2);
    // A write through the newly linked name is seen through the other.
    append(&fx.m("r2/h"), b"again\n");
    assert_eq!(fs::read(fx.m("top")).unwrap(), b"top\nchanged\nagain\n");
    let ours = manifest(&fx.mnt, ManifestOpts::full());
    fx.assert_kernel_shows(&ours);
}

both_lowers!(
    image_links_share_one_inode_and_copy_up_once,
    names_below_a_renamed_directory_are_linked_on_lookup,
);
