//! Copy-ups synced in the background (the default): every copy-up is journaled in
//! `WORK/squashbox-unsynced/` until it is on disk, a clean unmount leaves no entry, and entries
//! left by a machine crash (another boot id) make the next mount copy the data again from the
//! lower layer, except for files written to after their copy-up.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use common::*;

fn journal(fx: &Fixture) -> PathBuf {
    fx.work.join("squashbox-unsynced")
}

fn journal_entries(fx: &Fixture) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(journal(fx)) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading the journal: {e}"),
    };
    names.sort();
    names
}

fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

/// What a crash before the background sync can leave: the data cut short and partly zeroed,
/// under a name whose metadata (mode, owner, mtime) made it to the disk.
fn damage_keeping_mtime(p: &Path) {
    let meta = fs::metadata(p).unwrap();
    let len = meta.len();
    let f = fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_len(len / 2).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&vec![0u8; (len / 4).min(4096) as usize], 0)
        .unwrap();
    let mtime = UNIX_EPOCH + Duration::new(meta.mtime() as u64, meta.mtime_nsec() as u32);
    f.set_modified(mtime).unwrap();
}

fn plant_entry(fx: &Fixture, boot: &str, ino: u64) {
    fs::create_dir_all(journal(fx)).unwrap();
    fs::write(journal(fx).join(format!("{boot}.{ino}")), b"").unwrap();
}

fn copy_ups_are_synced_before_the_mount_ends(kind: LowerKind) {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::with_kind(standard_tree, kind);
    let mut want = fs::read(fx.lower_src.join("big")).unwrap();
    append(&fx.m("big"), b"tail");
    want.extend_from_slice(b"tail");
    fs::set_permissions(fx.m("ro"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(fx.m("hl1"), b"changed").unwrap();
    // Many small copy-ups: more than the syncer's queue holds at once.
    fs::create_dir(fx.m("dir/many")).unwrap();
    for i in 0..200 {
        fs::write(fx.m(&format!("dir/many/{i}")), b"x").unwrap();
    }
    for name in ["a", "b"] {
        append(&fx.m(&format!("dir/{name}")), b"+");
    }
    fx.unmount_overlay();
    assert_eq!(
        journal_entries(&fx),
        Vec::<String>::new(),
        "a clean unmount leaves no unsynced copy-up behind"
    );
    assert!(fs::read(fx.u("big")).unwrap() == want, "big: copied data");
    assert_eq!(fs::read(fx.u("hl2")).unwrap(), b"changed");
    assert_eq!(fs::read(fx.u("dir/a")).unwrap(), b"a+");
    let ours = manifest(&fx.upper, ManifestOpts::full());
    // Nothing to repair on the next mount: it leaves the upper dir as it was.
    fx.remount_overlay();
    assert_same(
        &ours,
        &manifest(&fx.upper, ManifestOpts::full()),
        "upper after remount",
    );
}

fn a_crash_before_the_background_sync_is_repaired_from_the_lower_layer(kind: LowerKind) {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::with_kind(standard_tree, kind);
    // Copy-ups without writes: their mtime stays the lower file's.
    fs::set_permissions(fx.m("big"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(fx.m("ro"), fs::Permissions::from_mode(0o400)).unwrap();
    fs::set_permissions(fx.m("hl1"), fs::Permissions::from_mode(0o604)).unwrap();
    // A copy-up written to afterwards.
    append(&fx.m("file"), b"user data\n");
    fx.unmount_overlay();
    let ino = |fx: &Fixture, rel: &str| fs::metadata(fx.u(rel)).unwrap().ino();
    let (big, ro, hl, file) = (
        ino(&fx, "big"),
        ino(&fx, "ro"),
        ino(&fx, "hl1"),
        ino(&fx, "file"),
    );
    assert_eq!(hl, ino(&fx, "hl2"));

    // The machine "stopped" before the syncer reached them.
    for rel in ["big", "ro", "hl1"] {
        damage_keeping_mtime(&fx.u(rel));
    }
    let written = b"lower file contents\nuser data\n(partly lost)".to_vec();
    fs::write(fx.u("file"), &written).unwrap();
    let other_boot = "00000000-1111-2222-3333-444444444444";
    for i in [big, ro, hl, file, 999_999_999] {
        plant_entry(&fx, other_boot, i);
    }
    let modes: Vec<u32> = ["big", "ro", "hl1"]
        .iter()
        .map(|r| fs::metadata(fx.u(r)).unwrap().mode())
        .collect();

    fx.remount_overlay();
    assert_eq!(
        journal_entries(&fx),
        Vec::<String>::new(),
        "journal settled"
    );
    for rel in ["big", "ro", "hl1", "hl2"] {
        let lower = fs::read(fx.lower_src.join(rel)).unwrap();
        assert!(
            fs::read(fx.u(rel)).unwrap() == lower,
            "{rel}: data copied again from the lower file"
        );
        assert!(
            fs::read(fx.m(rel)).unwrap() == lower,
            "{rel}: through the mount"
        );
    }
    for (rel, mode) in ["big", "ro", "hl1"].iter().zip(modes) {
        let m = fs::metadata(fx.u(rel)).unwrap();
        assert_eq!(m.mode(), mode, "{rel}: mode kept");
        assert_eq!(
            m.mtime(),
            fs::metadata(fx.lower_src.join(rel)).unwrap().mtime(),
            "{rel}: mtime kept"
        );
    }
    assert_eq!(
        fs::metadata(fx.u("ro")).unwrap().uid(),
        1234,
        "ro: owner kept"
    );
    assert_eq!(ino(&fx, "big"), big, "repaired in place");
    assert_eq!(
        fs::read(fx.u("file")).unwrap(),
        written,
        "a file written to after its copy-up is left as it is"
    );
}

/// The lower file's number in its layer (the kernel's squashfs reports the image's inode
/// numbers, so the kernel mount serves both lower kinds).
fn lower_number(fx: &Fixture, rel: &str) -> u64 {
    fs::metadata(fx.lower_mnt().join(rel)).unwrap().ino()
}

fn plant_entry_with(fx: &Fixture, name: &str, content: &str) {
    fs::create_dir_all(journal(fx)).unwrap();
    fs::write(journal(fx).join(name), content).unwrap();
}

/// `security.capability` granting cap_net_raw (VFS_CAP_REVISION_2, effective).
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn interrupted_repairs_failed_syncs_and_index_only_copies_are_repaired(kind: LowerKind) {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::with_kind(standard_tree, kind);
    for rel in ["exec", "dir/a", "hl1", "big"] {
        fs::set_permissions(fx.m(rel), fs::Permissions::from_mode(0o750)).unwrap();
    }
    fx.unmount_overlay();
    let ino = |rel: &str| fs::metadata(fx.u(rel)).unwrap().ino();
    let (exec, a, hl, big) = (ino("exec"), ino("dir/a"), ino("hl1"), ino("big"));

    // exec: a repair was under way (its mtime already changed, its mode made writable).
    damage_keeping_mtime(&fx.u("exec"));
    fs::write(fx.u("exec"), b"half").unwrap();
    fs::set_permissions(fx.u("exec"), fs::Permissions::from_mode(0o770)).unwrap();
    let size = fs::metadata(fx.lower_src.join("exec")).unwrap().len();
    plant_entry_with(
        &fx,
        &format!("repair.{exec}"),
        &format!("0 {} {size} 750\n", lower_number(&fx, "exec")),
    );
    // dir/a: its background fsync failed (the daemon renamed the entry), with the lower
    // file's identity recorded; it carries a file capability the rewrite must not lose.
    damage_keeping_mtime(&fx.u("dir/a"));
    set_xattr(&fx.u("dir/a"), "security.capability", &CAP_NET_RAW);
    plant_entry_with(
        &fx,
        &format!("crash.{a}"),
        &format!("0 {} 1\n", lower_number(&fx, "dir/a")),
    );
    // hl1/hl2: the crash kept the copy in the hard-link index but lost both upper names.
    fs::remove_file(fx.u("hl1")).unwrap();
    fs::remove_file(fx.u("hl2")).unwrap();
    let index_entry = fs::read_dir(fx.work.join("squashbox-index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| fs::metadata(p).unwrap().ino() == hl)
        .expect("index entry of hl1");
    damage_keeping_mtime(&index_entry);
    plant_entry_with(&fx, &format!("00000000-aaaa.{hl}"), "");
    // big: recorded from another lower file (sizes differ): not rewritten.
    damage_keeping_mtime(&fx.u("big"));
    let damaged_big = fs::read(fx.u("big")).unwrap();
    plant_entry_with(&fx, &format!("00000000-aaaa.{big}"), "0 1 12345\n");
    // Not ours: left alone, and they do not stop the mount.
    plant_entry_with(&fx, "notes.txt", "x");
    fs::create_dir_all(journal(&fx).join("subdir.5")).unwrap();

    fx.remount_overlay();
    assert_eq!(
        journal_entries(&fx),
        vec!["notes.txt".to_string(), "subdir.5".to_string()],
        "our entries settled, foreign ones kept"
    );
    for (rel, path) in [
        ("exec", fx.u("exec")),
        ("dir/a", fx.u("dir/a")),
        ("hl1", index_entry.clone()),
    ] {
        assert!(
            fs::read(&path).unwrap() == fs::read(fx.lower_src.join(rel)).unwrap(),
            "{rel}: data copied again"
        );
        assert_eq!(
            fs::metadata(&path).unwrap().mtime(),
            fs::metadata(fx.lower_src.join(rel)).unwrap().mtime(),
            "{rel}: mtime is the lower file's again"
        );
    }
    assert_eq!(
        fs::metadata(fx.u("exec")).unwrap().mode() & 0o7777,
        0o750,
        "exec: the mode recorded by the interrupted repair"
    );
    assert_eq!(
        get_xattr(&fx.u("dir/a"), b"security.capability").as_deref(),
        Some(&CAP_NET_RAW[..]),
        "dir/a: file capability kept"
    );
    assert!(
        fs::read(fx.u("big")).unwrap() == damaged_big,
        "big: a different lower file is never copied in"
    );
}

fn entries_of_this_boot_are_settled_by_a_sync(kind: LowerKind) {
    if !can_run() {
        return;
    }
    // A daemon killed before its syncer finished: the page cache of this boot holds every
    // byte it wrote, so the next mount only syncs (nothing is copied again).
    let mut fx = Fixture::with_kind(standard_tree, kind);
    append(&fx.m("file"), b"more\n");
    fx.unmount_overlay();
    plant_entry(&fx, &boot_id(), fs::metadata(fx.u("file")).unwrap().ino());
    let before = manifest(&fx.upper, ManifestOpts::full());
    fx.remount_overlay();
    assert_eq!(journal_entries(&fx), Vec::<String>::new());
    assert_same(
        &before,
        &manifest(&fx.upper, ManifestOpts::full()),
        "upper after settling",
    );
}

both_lowers!(
    copy_ups_are_synced_before_the_mount_ends,
    a_crash_before_the_background_sync_is_repaired_from_the_lower_layer,
    interrupted_repairs_failed_syncs_and_index_only_copies_are_repaired,
    entries_of_this_boot_are_settled_by_a_sync,
);
