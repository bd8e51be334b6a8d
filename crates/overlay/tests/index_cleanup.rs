//! The hard-link index (`WORK/squashbox-index`) frees the copy of an image hard link once no
//! name shows it any more: when its last name is unlinked or replaced through the mount, and
//! at mount time for names deleted behind our back (e.g. through the kernel's overlayfs). An
//! entry a name may still need (below a directory renamed through the mount, not yet looked
//! up) is kept.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// `a`, `d/b`, `d/sub/c`: one inode (3 links). `p`, `q`: another (2 links). `top` and `r/h`:
/// a third, with one name inside a directory the test renames.
fn tree(root: &Path) {
    fs::create_dir_all(root.join("d/sub")).unwrap();
    fs::write(root.join("a"), b"shared\n").unwrap();
    fs::hard_link(root.join("a"), root.join("d/b")).unwrap();
    fs::hard_link(root.join("a"), root.join("d/sub/c")).unwrap();
    fs::write(root.join("p"), b"pair").unwrap();
    fs::hard_link(root.join("p"), root.join("q")).unwrap();
    fs::create_dir(root.join("r")).unwrap();
    fs::write(root.join("top"), b"top\n").unwrap();
    fs::hard_link(root.join("top"), root.join("r/h")).unwrap();
    fs::write(root.join("other"), b"other").unwrap();
}

fn index(fx: &Fixture) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(fx.work.join("squashbox-index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn run(kind: LowerKind) {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::with_kind(tree, kind);

    // Unlink: the entry lives while any name does, and goes with the last one.
    append(&fx.m("a"), b"more\n");
    assert_eq!(index(&fx).len(), 1);
    fs::remove_file(fx.m("a")).unwrap();
    fs::remove_file(fx.m("d/b")).unwrap();
    assert_eq!(index(&fx).len(), 1, "one name left");
    assert_eq!(fs::read(fx.m("d/sub/c")).unwrap(), b"shared\nmore\n");
    fs::remove_file(fx.m("d/sub/c")).unwrap();
    assert!(index(&fx).is_empty(), "index entry kept: {:?}", index(&fx));
    for n in ["a", "d/b", "d/sub/c"] {
        assert!(fs::symlink_metadata(fx.m(n)).is_err(), "{n} shows again");
        assert!(is_whiteout(&fx.u(n)), "{n}: whiteout");
    }

    // Rename over the last names: freed too.
    append(&fx.m("p"), b"!");
    assert_eq!(index(&fx).len(), 1);
    fs::rename(fx.m("other"), fx.m("p")).unwrap();
    assert_eq!(index(&fx).len(), 1, "q still links it");
    fs::write(fx.m("new"), b"new").unwrap();
    fs::rename(fx.m("new"), fx.m("q")).unwrap();
    assert!(index(&fx).is_empty(), "index entry kept: {:?}", index(&fx));
    assert_eq!(fs::read(fx.m("p")).unwrap(), b"other");
    assert_eq!(fs::read(fx.m("q")).unwrap(), b"new");

    // A name below a renamed directory is not linked at copy-up; deleting every linked name
    // must not free the data it still shows.
    fs::rename(fx.m("r"), fx.m("s")).unwrap();
    append(&fx.m("top"), b"changed\n");
    fs::remove_file(fx.m("top")).unwrap();
    assert_eq!(index(&fx).len(), 1, "entry needed by s/h was freed");
    assert_eq!(fs::read(fx.m("s/h")).unwrap(), b"top\nchanged\n");

    // At mount: names deleted while squashbox was not serving (here: by hand, as the kernel's
    // overlayfs would, whiteout in place of the upper link) are noticed and the entry freed.
    fx.unmount_overlay();
    let entry = index(&fx);
    fs::remove_file(fx.u("s/h")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        fx.u("s/h"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    assert_eq!(index(&fx), entry);
    fx.remount_overlay();
    // Still kept: s/h is gone, but `r/h`'s directory is renamed away, so this cannot tell.
    assert_eq!(index(&fx), entry);
    // Renamed back, the layer path is definite again: the next mount frees the entry.
    fs::rename(fx.m("s"), fx.m("r")).unwrap();
    assert!(fs::symlink_metadata(fx.m("r/h")).is_err());
    fx.remount_overlay();
    assert!(index(&fx).is_empty(), "index entry kept: {:?}", index(&fx));
    assert!(fs::symlink_metadata(fx.m("top")).is_err());
    assert!(fs::symlink_metadata(fx.m("r/h")).is_err());
}

#[test]
fn index_entries_are_freed_with_their_last_name_image() {
    run(LowerKind::Image);
}

#[test]
fn index_entries_are_freed_with_their_last_name_kernel_dir() {
    run(LowerKind::KernelDir);
}
