//! Volatile mode (`OverlayOptions::volatile`): copy-ups without syncs still give exact copies,
//! user `fsync`/`fsyncdir` succeed, the crash marker `WORK/squashbox-volatile/` exists exactly
//! while a volatile mount runs, and a marker left behind is refused (earlier boot, or a mount
//! still running) without touching the upper or work directory, or recovered (same boot).

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use squashbox_overlay::{mount_overlay_layers, OverlayError, OverlayOptions};

fn volatile() -> OverlayOptions {
    OverlayOptions {
        volatile: true,
        ..OverlayOptions::default()
    }
}

fn marker(fx: &Fixture) -> PathBuf {
    fx.work.join("squashbox-volatile")
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

/// Leave a marker as a volatile mount that never ended would (`boot` = its boot id).
fn plant_marker(fx: &Fixture, boot: &str) {
    fs::create_dir(marker(fx)).unwrap();
    fs::write(marker(fx).join("boot_id"), format!("{boot}\n")).unwrap();
}

/// Mount the fixture's layers again (the fixture's own mount must be down).
fn mount(
    fx: &Fixture,
    options: OverlayOptions,
) -> Result<squashbox_overlay::OverlayHandle, OverlayError> {
    mount_overlay_layers(
        layers(fx.kind, &fx.image, &fx.lower_mnt()),
        &fx.upper,
        &fx.work,
        &fx.mnt,
        options,
    )
}

/// Upper and work directories as they are on disk (contents, modes, xattrs, times).
fn on_disk(fx: &Fixture) -> (Manifest, Manifest) {
    (
        manifest(&fx.upper, ManifestOpts::full()),
        manifest(&fx.work, ManifestOpts::full()),
    )
}

fn assert_unchanged(before: &(Manifest, Manifest), fx: &Fixture, what: &str) {
    let after = on_disk(fx);
    assert_same(&before.0, &after.0, &format!("upper dir after {what}"));
    assert_same(&before.1, &after.1, &format!("work dir after {what}"));
}

fn copy_up_checks(fx: &Fixture) {
    // Data: append to a file of 3 MB (several copy chunks) and to a small one with an xattr.
    let mut want = fs::read(fx.lower_src.join("big")).unwrap();
    let mut f = OpenOptions::new().append(true).open(fx.m("big")).unwrap();
    f.write_all(b"tail").unwrap();
    // User fsync/fdatasync are answered (without syncing) and succeed.
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    drop(f);
    want.extend_from_slice(b"tail");
    assert!(fs::read(fx.u("big")).unwrap() == want, "big: copied data");
    assert!(
        fs::read(fx.m("big")).unwrap() == want,
        "big: through the mount"
    );
    let m = fs::metadata(fx.u("big")).unwrap();
    assert_eq!(m.len(), want.len() as u64);

    append(&fx.m("file"), b"more\n");
    assert_eq!(
        fs::read(fx.u("file")).unwrap(),
        b"lower file contents\nmore\n"
    );
    assert_eq!(
        get_xattr(&fx.u("file"), b"user.color").as_deref(),
        Some(&b"blue"[..])
    );

    // Metadata-only copy-up: owner, mode, mtime kept from the image, then the change.
    let ro = fs::metadata(fx.lower_src.join("ro")).unwrap();
    fs::set_permissions(fx.m("ro"), fs::Permissions::from_mode(0o400)).unwrap();
    let up = fs::symlink_metadata(fx.u("ro")).unwrap();
    assert_eq!(up.mode() & 0o7777, 0o400);
    assert_eq!((up.uid(), up.gid()), (1234, 5678));
    assert_eq!(up.mtime(), ro.mtime());
    assert_eq!(fs::read(fx.u("ro")).unwrap(), b"read only");

    // Hard-linked lower file (index path): one copy, both names linked.
    fs::write(fx.m("hl1"), b"changed").unwrap();
    assert_eq!(fs::read(fx.m("hl2")).unwrap(), b"changed");
    assert_eq!(
        fs::metadata(fx.u("hl1")).unwrap().ino(),
        fs::metadata(fx.u("hl2")).unwrap().ino()
    );

    // fsyncdir on a copied-up and on a lower-only directory.
    fs::write(fx.m("dir/new"), b"n").unwrap();
    fs::File::open(fx.m("dir")).unwrap().sync_all().unwrap();
    fs::File::open(fx.m("empty")).unwrap().sync_all().unwrap();
}

#[test]
fn volatile_mount_copies_up_exactly_and_removes_its_marker_at_unmount() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::with_options(standard_tree, volatile(), LowerKind::Image);
    // The marker exists, durably, before anything changes, and names this boot.
    assert_eq!(
        fs::read_to_string(marker(&fx).join("boot_id"))
            .unwrap()
            .trim(),
        boot_id()
    );
    copy_up_checks(&fx);

    // A second mount of the same upper/work while this one runs is refused, untouched.
    let before = on_disk(&fx);
    let other = fx.tmp.path().join("mnt2");
    fs::create_dir(&other).unwrap();
    for opts in [OverlayOptions::default(), volatile()] {
        let r = mount_overlay_layers(
            layers(fx.kind, &fx.image, &fx.lower_mnt()),
            &fx.upper,
            &fx.work,
            &other,
            opts,
        );
        match r {
            Err(OverlayError::VolatileInUse { marker: m }) => assert_eq!(m, marker(&fx)),
            other => panic!("second mount while the volatile one runs: {other:?}"),
        }
    }
    assert_unchanged(&before, &fx, "a refused second mount");

    fx.unmount_overlay();
    assert!(!marker(&fx).exists(), "marker left after a clean unmount");
    // The next (normal) mount accepts the upper dir and shows the changes.
    fx.overlay = Some(mount(&fx, OverlayOptions::default()).expect("mount after volatile"));
    assert_eq!(
        fs::read(fx.m("file")).unwrap(),
        b"lower file contents\nmore\n"
    );
    assert_eq!(fs::read(fx.m("hl2")).unwrap(), b"changed");
    assert!(!marker(&fx).exists());
}

#[test]
fn volatile_mount_from_a_directory_layer_copies_up_exactly() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::with_options(standard_tree, volatile(), LowerKind::KernelDir);
    assert!(marker(&fx).join("boot_id").exists());
    copy_up_checks(&fx);
    fx.unmount_overlay();
    assert!(!marker(&fx).exists());
}

fn assert_refused_as_crash(
    r: Result<squashbox_overlay::OverlayHandle, OverlayError>,
    fx: &Fixture,
) {
    match r {
        Err(e @ OverlayError::VolatileCrash { .. }) => {
            let OverlayError::VolatileCrash { marker: m, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*m, marker(fx));
            let msg = e.to_string();
            assert!(msg.contains("may be inconsistent"), "{msg}");
            assert!(msg.contains("delete"), "{msg}");
        }
        other => panic!("mount over a crashed volatile session: {other:?}"),
    }
}

#[test]
fn marker_from_an_earlier_boot_is_refused_and_nothing_is_touched() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new(standard_tree);
    fs::write(fx.m("dir/a"), b"changed before the crash").unwrap();
    fx.unmount_overlay();
    // A crash of the machine during a volatile session: the marker names another boot. Leave
    // a temporary object in our work subdirectory too: a mount that went ahead would clean it.
    plant_marker(&fx, "00000000-0000-4000-8000-000000000000");
    let leftover = fx.work.join("squashbox-work").join("#sqb.leftover");
    fs::write(&leftover, b"x").unwrap();
    let before = on_disk(&fx);

    assert_refused_as_crash(mount(&fx, OverlayOptions::default()), &fx);
    assert_refused_as_crash(mount(&fx, volatile()), &fx);
    assert_unchanged(&before, &fx, "refused mounts");
    assert!(leftover.exists());
    assert!(!is_mounted(&fx.mnt));

    // A marker without a readable boot id is refused the same way.
    fs::remove_file(marker(&fx).join("boot_id")).unwrap();
    assert_refused_as_crash(mount(&fx, OverlayOptions::default()), &fx);

    // Deleting the marker accepts the upper dir as it is.
    fs::remove_dir(marker(&fx)).unwrap();
    fx.overlay =
        Some(mount(&fx, OverlayOptions::default()).expect("mount after deleting the marker"));
    assert_eq!(
        fs::read(fx.m("dir/a")).unwrap(),
        b"changed before the crash"
    );
    assert!(!leftover.exists(), "the mount cleans the work subdirectory");
}

#[test]
fn marker_from_this_boot_is_synced_and_removed() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new(standard_tree);
    fs::write(fx.m("dir/a"), b"written by a daemon that was killed").unwrap();
    fx.unmount_overlay();
    // A volatile daemon killed (no machine crash): the marker names this boot, unlocked.
    plant_marker(&fx, &boot_id());
    fx.overlay = Some(mount(&fx, OverlayOptions::default()).expect("same-boot recovery"));
    assert!(!marker(&fx).exists(), "recovered marker removed");
    assert_eq!(
        fs::read(fx.m("dir/a")).unwrap(),
        b"written by a daemon that was killed"
    );
    fx.unmount_overlay();

    // The same, mounting volatile again: the old marker goes, a new one (locked) comes.
    plant_marker(&fx, &boot_id());
    fx.overlay = Some(mount(&fx, volatile()).expect("same-boot recovery, volatile"));
    assert_eq!(
        fs::read_to_string(marker(&fx).join("boot_id"))
            .unwrap()
            .trim(),
        boot_id()
    );
    fx.unmount_overlay();
    assert!(!marker(&fx).exists());
}

fn is_mounted(p: &Path) -> bool {
    let abs = std::path::absolute(p).unwrap();
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(abs.to_str().unwrap()))
}
