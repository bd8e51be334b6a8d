//! Images of an empty directory (no directory listings at all, so the directory table is
//! empty and starts where the lookup tables do). They are valid: the kernel, `unsquashfs` and
//! our reader must all accept them, whether mksquashfs or `squashbox mkfs` wrote them. A
//! `--gitignore` build where everything is ignored produces exactly this.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use squashbox_format::Archive;
use squashbox_testkit::{
    mksquashfs, require_loop, require_root, require_squashbox_bin, require_tool, run_with_timeout,
    LoopMount,
};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Every reader sees an empty root: our library, `squashbox extract`, `unsquashfs`, the kernel.
fn check_empty(bin: &Path, img: &Path, work: &Path) {
    let archive = Archive::open_path(img).unwrap();
    let root = archive.root().unwrap();
    assert!(root.is_dir());
    assert_eq!(archive.read_dir(&root).unwrap().count(), 0);
    assert_eq!(archive.walk().count(), 1, "the walk yields the root only");

    let out = work.join("extracted");
    let result =
        run_with_timeout(Command::new(bin).arg("extract").arg(img).arg(&out), TIMEOUT).unwrap();
    assert!(result.success(), "squashbox extract: {}", result.describe());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

    let un = work.join("unsquashfs");
    let result = run_with_timeout(
        Command::new("unsquashfs")
            .args(["-q", "-n", "-d"])
            .arg(&un)
            .arg(img),
        TIMEOUT,
    )
    .unwrap();
    assert!(result.success(), "unsquashfs: {}", result.describe());
    assert_eq!(std::fs::read_dir(&un).unwrap().count(), 0);

    if require_root() && require_loop() {
        let mnt = work.join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mount = LoopMount::mount(img, &mnt).unwrap();
        assert_eq!(std::fs::read_dir(mount.dir()).unwrap().count(), 0);
        mount.unmount().unwrap();
    }
}

#[test]
fn empty_directory_images_are_valid() {
    if !require_tool("mksquashfs") || !require_tool("unsquashfs") {
        return;
    }
    let Some(bin) = require_squashbox_bin() else {
        return;
    };
    let tmp = squashbox_testkit::tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();

    let theirs = tmp.path().join("mksquashfs.sqsh");
    mksquashfs(&empty, &theirs, &[]);
    let work = tmp.path().join("theirs");
    std::fs::create_dir(&work).unwrap();
    check_empty(&bin, &theirs, &work);

    let ours = tmp.path().join("squashbox.sqsh");
    let result = run_with_timeout(
        Command::new(&bin)
            .args(["mkfs", "--quiet"])
            .arg(&empty)
            .arg(&ours),
        TIMEOUT,
    )
    .unwrap();
    assert!(result.success(), "squashbox mkfs: {}", result.describe());
    let work = tmp.path().join("ours");
    std::fs::create_dir(&work).unwrap();
    check_empty(&bin, &ours, &work);
}
