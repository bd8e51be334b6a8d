//! Large lower directories: listing one and stat'ing every entry (what `ls -l` does) costs a
//! constant amount of image metadata work and of memory per entry, whatever the size of the
//! directory. Guards the complexity without timing anything: the reader counts the metadata
//! blocks it is asked for, and the test process (the overlay runs in it) reports its RSS.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use squashbox_format::Archive;
use squashbox_overlay::{mount_overlay_layers, LowerLayer, OverlayOptions};

const SMALL: usize = 5_000;
const BIG: usize = 50_000;

fn file_name(i: usize) -> String {
    format!("f{i:06}")
}

fn contents(i: usize) -> String {
    format!("{i}\n")
}

fn mode(i: usize) -> u32 {
    if i % 7 == 0 {
        0o600
    } else {
        0o644
    }
}

fn populate(root: &Path) {
    for (dir, n) in [("small", SMALL), ("big", BIG)] {
        let d = root.join(dir);
        fs::create_dir(&d).unwrap();
        for i in 0..n {
            let p = d.join(file_name(i));
            fs::write(&p, contents(i)).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode(i))).unwrap();
        }
    }
    // A pair hard-linked inside the image and a subdirectory among the big directory's files.
    fs::write(root.join("big/hl_a"), b"linked\n").unwrap();
    fs::hard_link(root.join("big/hl_a"), root.join("big/hl_b")).unwrap();
    fs::create_dir(root.join("big/sub")).unwrap();
}

fn rss_kb() -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// List `dir` and stat every entry like `ls -l` (lstat plus the security.selinux probe),
/// checking every name, size, mode and inode number. `gone` and `changed` are the indexes
/// of the files deleted and appended to (`x`) through the mount. Returns the entry count.
fn list_and_check(
    dir: &Path,
    n: usize,
    extras: bool,
    gone: Option<usize>,
    changed: Option<usize>,
) -> usize {
    let mut seen = vec![false; n];
    let mut count = 0;
    let mut link_ino = None;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        let md = fs::symlink_metadata(e.path()).unwrap();
        assert_eq!(e.ino(), md.ino(), "d_ino == st_ino for {name:?}");
        let err = rustix::fs::lgetxattr(e.path(), "security.selinux", &mut [0u8; 256][..]);
        assert!(err.is_err(), "no security.selinux on {name:?}");
        count += 1;
        let nb = name.as_bytes();
        if extras && (nb == b"hl_a" || nb == b"hl_b") {
            assert_eq!(md.nlink(), 2, "{name:?}");
            assert_eq!(md.len(), 7);
            match link_ino {
                None => link_ino = Some(md.ino()),
                Some(ino) => assert_eq!(ino, md.ino(), "image hard links share st_ino"),
            }
            continue;
        }
        if extras && nb == b"sub" {
            assert!(md.is_dir());
            continue;
        }
        let i: usize = std::str::from_utf8(nb)
            .ok()
            .and_then(|s| s.strip_prefix('f'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected entry {name:?}"));
        assert!(i < n && !seen[i], "{name:?} listed twice or out of range");
        assert_ne!(Some(i), gone, "deleted {name:?} still listed");
        seen[i] = true;
        let want_len = contents(i).len() as u64 + u64::from(Some(i) == changed);
        assert_eq!(md.len(), want_len, "size of {name:?}");
        assert_eq!(md.mode() & 0o7777, mode(i), "mode of {name:?}");
        assert_eq!(md.nlink(), 1, "{name:?}");
        assert!(md.is_file());
    }
    let missing = (0..n).filter(|i| !seen[*i] && Some(*i) != gone).count();
    assert_eq!(
        missing,
        0,
        "{missing} entries of {} not listed",
        dir.display()
    );
    count
}

#[test]
fn listing_a_large_lower_directory_costs_the_same_per_entry() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("sqb-ovl-large")
        .tempdir_in("/tmp")
        .unwrap();
    let root = tmp.path();
    let src = root.join("src");
    fs::create_dir(&src).unwrap();
    populate(&src);
    let image = root.join("lower.sqsh");
    let st = Command::new("mksquashfs")
        .arg(&src)
        .arg(&image)
        // Duplicate detection takes minutes on 55,000 tiny files; hard links are still kept.
        .args(["-noappend", "-quiet", "-no-progress", "-no-duplicates"])
        .status()
        .unwrap();
    assert!(st.success(), "mksquashfs");
    fs::remove_dir_all(&src).unwrap();
    let (upper, work, mnt) = (root.join("upper"), root.join("work"), root.join("mnt"));
    for d in [&upper, &work, &mnt] {
        fs::create_dir(d).unwrap();
    }
    let _watchdog = Watchdog::new(Duration::from_secs(240), vec![mnt.clone()]);
    let archive = Arc::new(Archive::open_path(&image).unwrap());
    let options = OverlayOptions {
        // Long enough that the kernel never revalidates an entry between the listing and the
        // stat of it, whatever the machine's load (that would add lookups, not a complexity).
        cache_ttl: Duration::from_secs(600),
        ..OverlayOptions::default()
    };
    let handle = mount_overlay_layers(
        vec![LowerLayer::Image(archive.clone())],
        &upper,
        &work,
        &mnt,
        options,
    )
    .expect("mount overlay");

    // The small directory: a plain lower directory.
    let f0 = archive.stats().metadata_fetches;
    assert_eq!(
        list_and_check(&mnt.join("small"), SMALL, false, None, None),
        SMALL
    );
    let small_fetches = archive.stats().metadata_fetches - f0;

    // The big one, merged with an upper part: one file deleted (whiteout), one copied up.
    fs::remove_file(mnt.join("big").join(file_name(1))).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(mnt.join("big").join(file_name(2)))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let big_entries = BIG - 1 + 3;
    let rss0 = rss_kb();
    let f0 = archive.stats().metadata_fetches;
    assert_eq!(
        list_and_check(&mnt.join("big"), BIG, true, Some(1), Some(2)),
        big_entries
    );
    let big_fetches = archive.stats().metadata_fetches - f0;
    let rss1 = rss_kb();
    // Listed again: the nodes the kernel holds are reused, nothing grows per entry.
    assert_eq!(
        list_and_check(&mnt.join("big"), BIG, true, Some(1), Some(2)),
        big_entries
    );
    let rss2 = rss_kb();

    let per_small = small_fetches as f64 / SMALL as f64;
    let per_big = big_fetches as f64 / big_entries as f64;
    let grown = rss1.saturating_sub(rss0) * 1024 / big_entries as u64;
    eprintln!(
        "metadata block fetches per entry: {per_small:.2} ({SMALL} entries), {per_big:.2} \
         ({big_entries}); RSS {rss0} -> {rss1} -> {rss2} kB ({grown} bytes per entry)"
    );
    // Linear: the same work per entry at 10x the size (a by-name scan of the directory per
    // entry would cost thousands of fetches per entry here).
    assert!(
        per_big <= per_small * 1.5 + 1.0,
        "metadata fetches per entry grow with the directory: {per_small:.2} -> {per_big:.2}"
    );
    assert!(per_big < 16.0, "{per_big:.2} metadata fetches per entry");
    // Memory: nodes for every entry the kernel holds plus the listing snapshot; measured
    // ~0.6 KB per entry (docs/overlay.md). The bound is generous, it catches a per-entry
    // cost that grows with the directory or a leak, not small changes.
    assert!(
        grown < 2048,
        "memory grew by {grown} bytes per listed entry"
    );
    assert!(
        rss2 <= rss1 + (rss1 - rss0.min(rss1)) / 4 + 4096,
        "a second listing grew memory: {rss1} -> {rss2} kB"
    );
    handle.unmount().expect("unmount");
}
