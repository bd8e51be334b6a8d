//! `squashbox overlay` / `squashbox umount` end to end: an image built by `squashbox mkfs`,
//! mounted copy-on-write by the background daemon (ready when the command returns); writes,
//! renames, unlinks and a copy-up of a file hard-linked inside the image go through it; after
//! `squashbox umount` the upper directory on disk holds exactly the overlayfs layout (data,
//! whiteouts, links). A daemon killed with SIGKILL leaves a dead mount that `squashbox umount`
//! recovers, and the upper directory then mounts again with everything written before.
//! Every mount is guarded and every command has a timeout.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use squashbox_testkit::{
    find_process, is_mounted, require_fuse, require_root, run_with_timeout, wait_process_gone,
    MountGuard, TimedOutput,
};

const BIN: &str = env!("CARGO_BIN_EXE_squashbox");
const TIMEOUT: Duration = Duration::from_secs(30);

struct Setup {
    tmp: tempfile::TempDir,
    img: PathBuf,
    upper: PathBuf,
    mnt: PathBuf,
}

fn setup() -> Option<Setup> {
    if !(require_root() && require_fuse()) {
        return None;
    }
    let tmp = tempfile::Builder::new()
        .prefix("squashbox-overlay-cli")
        .tempdir()
        .unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    fs::write(src.join("keep"), b"keep\n").unwrap();
    fs::write(src.join("gone"), b"gone").unwrap();
    fs::write(src.join("d/old"), b"old name").unwrap();
    fs::write(src.join("d/big"), vec![7u8; 1 << 20]).unwrap();
    fs::write(src.join("hl1"), b"linked\n").unwrap();
    fs::hard_link(src.join("hl1"), src.join("d/hl2")).unwrap();
    let img = tmp.path().join("img.sqfs");
    let out = squashbox(&["mkfs".as_ref(), src.as_ref(), img.as_ref()]);
    assert!(out.success(), "squashbox mkfs: {}", out.describe());
    let upper = tmp.path().join("upper");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    Some(Setup {
        tmp,
        img,
        upper,
        mnt,
    })
}

fn squashbox(args: &[&std::ffi::OsStr]) -> TimedOutput {
    run_with_timeout(Command::new(BIN).args(args).stdin(Stdio::null()), TIMEOUT).unwrap()
}

/// `squashbox overlay --lower IMG --upper UPPER MNT` (daemon mode): guarded, ready on return.
fn overlay_daemon(s: &Setup) -> (MountGuard, u32) {
    overlay_daemon_with(s, &[])
}

/// `squashbox overlay --lower IMG --upper UPPER [EXTRA...] MNT`.
fn overlay_command(s: &Setup, extra: &[&str]) -> TimedOutput {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "overlay".as_ref(),
        "--lower".as_ref(),
        s.img.as_ref(),
        "--upper".as_ref(),
        s.upper.as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.push(s.mnt.as_ref());
    squashbox(&args)
}

fn overlay_daemon_with(s: &Setup, extra: &[&str]) -> (MountGuard, u32) {
    let out = overlay_command(s, extra);
    assert!(out.success(), "squashbox overlay: {}", out.describe());
    let guard = MountGuard::fuse(&s.mnt);
    assert!(
        is_mounted(&s.mnt),
        "not mounted when `squashbox overlay` returned"
    );
    let pid = daemon_pid(&s.mnt).expect("daemon process");
    (guard, pid)
}

fn umount(s: &Setup) {
    let out = squashbox(&["umount".as_ref(), s.mnt.as_ref()]);
    assert!(out.success(), "umount: {}", out.describe());
    assert!(!is_mounted(&s.mnt));
}

/// The PID of the overlay daemon serving `mnt` (found by its command line).
fn daemon_pid(mnt: &Path) -> Option<u32> {
    find_process(&["overlay", "--daemon-child", &mnt.to_string_lossy()])
}

fn wait_gone(pid: u32) {
    wait_process_gone(pid, TIMEOUT);
}

fn is_whiteout(p: &Path) -> bool {
    fs::symlink_metadata(p)
        .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
        .unwrap_or(false)
}

#[test]
fn overlay_daemon_changes_land_in_the_upper_dir() {
    let Some(s) = setup() else { return };
    let (guard, pid) = overlay_daemon(&s);
    let m = |p: &str| s.mnt.join(p);
    assert_eq!(fs::read(m("keep")).unwrap(), b"keep\n");
    assert_eq!(
        fs::read_dir(&s.upper).unwrap().count(),
        0,
        "reading copies nothing up"
    );
    fs::write(m("new"), b"created").unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(m("keep"))
        .unwrap()
        .write_all(b"appended\n")
        .unwrap();
    fs::rename(m("d/old"), m("d/renamed")).unwrap();
    fs::remove_file(m("gone")).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(m("d/hl2"))
        .unwrap()
        .write_all(b"both\n")
        .unwrap();
    assert_eq!(fs::read(m("hl1")).unwrap(), b"linked\nboth\n");
    assert_eq!(
        fs::metadata(m("hl1")).unwrap().ino(),
        fs::metadata(m("d/hl2")).unwrap().ino()
    );
    umount(&s);
    wait_gone(pid);
    drop(guard);

    // The upper directory on disk: data, whiteouts, links.
    let u = |p: &str| s.upper.join(p);
    assert_eq!(fs::read(u("new")).unwrap(), b"created");
    assert_eq!(fs::read(u("keep")).unwrap(), b"keep\nappended\n");
    assert_eq!(fs::read(u("d/renamed")).unwrap(), b"old name");
    assert!(is_whiteout(&u("d/old")), "whiteout at the old name");
    assert!(is_whiteout(&u("gone")), "whiteout for the deleted file");
    assert!(
        fs::symlink_metadata(u("d/big")).is_err(),
        "untouched files are not copied up"
    );
    assert_eq!(fs::read(u("hl1")).unwrap(), b"linked\nboth\n");
    assert_eq!(
        fs::metadata(u("hl1")).unwrap().ino(),
        fs::metadata(u("d/hl2")).unwrap().ino(),
        "names hard-linked in the image stay one file in the upper dir"
    );
    assert!(
        s.tmp.path().join("upper.work").is_dir(),
        "default work dir beside the upper dir"
    );
}

#[test]
fn umount_recovers_an_overlay_whose_daemon_was_killed() {
    let Some(s) = setup() else { return };
    let (guard, pid) = overlay_daemon(&s);
    {
        let mut f = fs::File::create(s.mnt.join("written")).unwrap();
        f.write_all(b"before the kill").unwrap();
        f.sync_all().unwrap();
    }
    fs::remove_file(s.mnt.join("gone")).unwrap();
    // SAFETY: kill(2) on the PID of the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    wait_gone(pid);
    let err = fs::metadata(&s.mnt).expect_err("dead mount");
    // ENOTCONN, or ECONNABORTED when the abort races with this stat: both mean "daemon gone".
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED)
        ),
        "{err}"
    );
    assert!(is_mounted(&s.mnt));
    umount(&s);
    assert_eq!(fs::read_dir(&s.mnt).unwrap().count(), 0);
    drop(guard);
    assert_eq!(
        fs::read(s.upper.join("written")).unwrap(),
        b"before the kill"
    );
    assert!(is_whiteout(&s.upper.join("gone")));
    // The same upper directory mounts again and shows everything written before.
    let (guard, pid) = overlay_daemon(&s);
    assert_eq!(fs::read(s.mnt.join("written")).unwrap(), b"before the kill");
    assert!(fs::symlink_metadata(s.mnt.join("gone")).is_err());
    assert_eq!(fs::read(s.mnt.join("keep")).unwrap(), b"keep\n");
    umount(&s);
    wait_gone(pid);
    drop(guard);
}

#[test]
fn volatile_overlay_marker_guards_the_upper_dir_after_a_killed_daemon() {
    let Some(s) = setup() else { return };
    let marker = s.tmp.path().join("upper.work/squashbox-volatile");
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();

    // Clean session: the marker exists while mounted and goes with `squashbox umount`.
    let (guard, pid) = overlay_daemon_with(&s, &["--volatile"]);
    assert_eq!(fs::read_to_string(marker.join("boot_id")).unwrap(), boot);
    fs::OpenOptions::new()
        .append(true)
        .open(s.mnt.join("d/big"))
        .unwrap()
        .write_all(b"!")
        .unwrap();
    umount(&s);
    wait_gone(pid);
    drop(guard);
    assert!(!marker.exists(), "marker left after a clean unmount");
    let mut want = vec![7u8; 1 << 20];
    want.push(b'!');
    assert!(fs::read(s.upper.join("d/big")).unwrap() == want);

    // Killed daemon: the marker stays.
    let (guard, pid) = overlay_daemon_with(&s, &["--volatile"]);
    fs::write(s.mnt.join("written"), b"volatile write").unwrap();
    // SAFETY: kill(2) on the PID of the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    wait_gone(pid);
    umount(&s);
    drop(guard);
    assert!(marker.join("boot_id").exists(), "marker of a killed daemon");

    // As if the machine had crashed since: the next mount is refused, nothing mounted.
    fs::write(
        marker.join("boot_id"),
        "00000000-0000-4000-8000-000000000000\n",
    )
    .unwrap();
    let out = overlay_command(&s, &[]);
    assert!(
        !out.success(),
        "mount after a crashed volatile session succeeded"
    );
    let text = out.describe();
    assert!(text.contains("may be inconsistent"), "{text}");
    assert!(text.contains("squashbox-volatile"), "{text}");
    assert!(!is_mounted(&s.mnt));

    // Same boot (only the daemon was killed): synced, marker removed, mounted as it was.
    fs::write(marker.join("boot_id"), &boot).unwrap();
    let (guard, pid) = overlay_daemon(&s);
    assert!(!marker.exists(), "recovered marker removed");
    assert_eq!(fs::read(s.mnt.join("written")).unwrap(), b"volatile write");
    umount(&s);
    wait_gone(pid);
    drop(guard);
}
