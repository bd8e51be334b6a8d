//! `squashbox mount` / `squashbox umount` end to end: the background daemon (ready when the
//! command returns), recovery after the daemon is SIGKILLed, foreground mode ending on
//! SIGTERM, busy/lazy unmount, and clear errors. Every mount is guarded and every command has
//! a timeout.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use squashbox_testkit::{
    assert_trees_equal, find_process, is_mounted, require_fuse, require_root, require_tool,
    run_with_timeout, wait_process_gone, DiffOptions, MountGuard, TimedOutput,
};

const BIN: &str = env!("CARGO_BIN_EXE_squashbox");
const TIMEOUT: Duration = Duration::from_secs(30);

struct Setup {
    tmp: tempfile::TempDir,
    src: PathBuf,
    img: PathBuf,
    mnt: PathBuf,
}

fn setup() -> Option<Setup> {
    if !(require_root() && require_fuse() && require_tool("mksquashfs")) {
        return None;
    }
    let tmp = tempfile::Builder::new()
        .prefix("squashbox-mount-cli")
        .tempdir()
        .unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a"), b"alpha").unwrap();
    std::fs::write(src.join("d/big"), vec![9u8; 1 << 20]).unwrap();
    std::os::unix::fs::symlink("a", src.join("d/link")).unwrap();
    let img = tmp.path().join("img.sqfs");
    let out = run_with_timeout(
        Command::new("mksquashfs").arg(&src).arg(&img).args([
            "-noappend",
            "-quiet",
            "-no-progress",
        ]),
        TIMEOUT,
    )
    .unwrap();
    assert!(out.success(), "mksquashfs: {}", out.describe());
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    Some(Setup { tmp, src, img, mnt })
}

fn squashbox(args: &[&std::ffi::OsStr]) -> TimedOutput {
    run_with_timeout(Command::new(BIN).args(args).stdin(Stdio::null()), TIMEOUT).unwrap()
}

/// The PID of the daemon serving `mnt` (found by its command line).
fn daemon_pid(mnt: &Path) -> Option<u32> {
    find_process(&["--daemon-child", &mnt.to_string_lossy()])
}

fn wait_gone(pid: u32) {
    wait_process_gone(pid, TIMEOUT);
}

fn mount_daemon(s: &Setup) -> (MountGuard, u32) {
    let out = squashbox(&["mount".as_ref(), s.img.as_ref(), s.mnt.as_ref()]);
    assert!(out.success(), "squashbox mount: {}", out.describe());
    assert!(out.stderr_text().is_empty(), "{}", out.describe());
    let guard = MountGuard::fuse(&s.mnt);
    // Ready when the command returns: no waiting.
    assert!(
        is_mounted(&s.mnt),
        "not mounted when `squashbox mount` returned"
    );
    let pid = daemon_pid(&s.mnt).expect("daemon process");
    (guard, pid)
}

#[test]
fn daemon_serves_until_umount() {
    let Some(s) = setup() else { return };
    let (guard, pid) = mount_daemon(&s);
    assert_trees_equal(&s.src, &s.mnt, &DiffOptions::ignoring_root_mtime());
    let out = squashbox(&["umount".as_ref(), s.mnt.as_ref()]);
    assert!(out.success(), "umount: {}", out.describe());
    assert!(!is_mounted(&s.mnt));
    wait_gone(pid);
    drop(guard);
    drop(s.tmp);
}

#[test]
fn umount_recovers_a_mount_whose_daemon_was_killed() {
    let Some(s) = setup() else { return };
    let (guard, pid) = mount_daemon(&s);
    // SAFETY: kill(2) on the PID of the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    wait_gone(pid);
    let err = std::fs::metadata(&s.mnt).expect_err("dead mount");
    // The kernel reports a dead FUSE connection as ENOTCONN, or as ECONNABORTED when the
    // abort races with this stat; both mean "daemon gone", which is what umount must handle.
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED)
        ),
        "{err}"
    );
    assert!(is_mounted(&s.mnt));
    let out = squashbox(&["umount".as_ref(), s.mnt.as_ref()]);
    assert!(out.success(), "umount of a dead mount: {}", out.describe());
    assert!(!is_mounted(&s.mnt));
    assert_eq!(std::fs::read_dir(&s.mnt).unwrap().count(), 0);
    drop(guard);
    // The directory can be mounted again.
    let (guard, _pid) = mount_daemon(&s);
    assert_eq!(std::fs::read(s.mnt.join("a")).unwrap(), b"alpha");
    drop(guard);
}

#[test]
fn foreground_mount_unmounts_and_exits_on_sigterm() {
    let Some(s) = setup() else { return };
    let child = Command::new(BIN)
        .args([
            "mount",
            "--foreground",
            "--threads",
            "3",
            "--cache-size",
            "8M",
        ])
        .arg(&s.img)
        .arg(&s.mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = MountGuard::fuse_with_child(&s.mnt, child);
    guard.wait_mounted(TIMEOUT).unwrap();
    assert_eq!(
        std::fs::read(s.mnt.join("d/big")).unwrap(),
        vec![9u8; 1 << 20]
    );
    let child = guard.child_mut().unwrap();
    // SAFETY: kill(2) on the PID of the child this test spawned.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "foreground mount ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(!is_mounted(&s.mnt));
}

#[test]
fn busy_umount_is_refused_and_lazy_umount_detaches() {
    let Some(s) = setup() else { return };
    let (guard, pid) = mount_daemon(&s);
    let mut open = File::open(s.mnt.join("d/big")).unwrap();
    let out = squashbox(&["umount".as_ref(), s.mnt.as_ref()]);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "{}",
        out.describe()
    );
    assert!(out.stderr_text().contains("busy"), "{}", out.describe());
    assert!(is_mounted(&s.mnt));
    let out = squashbox(&["umount".as_ref(), "--lazy".as_ref(), s.mnt.as_ref()]);
    assert!(out.success(), "umount --lazy: {}", out.describe());
    assert!(!is_mounted(&s.mnt));
    let mut data = Vec::new();
    open.read_to_end(&mut data).unwrap();
    assert_eq!(data, vec![9u8; 1 << 20]);
    drop(open);
    wait_gone(pid);
    drop(guard);
}

#[test]
fn mount_errors_are_one_clear_line_and_leave_nothing_behind() {
    let Some(s) = setup() else { return };
    let one_line = |out: &TimedOutput, needle: &str| {
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(1),
            "{}",
            out.describe()
        );
        let err = out.stderr_text();
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(
            err.starts_with("squashbox: ") && err.contains(needle),
            "{err:?}"
        );
    };
    // Not empty: the source tree itself.
    let out = squashbox(&["mount".as_ref(), s.img.as_ref(), s.src.as_ref()]);
    one_line(&out, "not empty");
    assert!(!is_mounted(&s.src));
    let missing_dir = s.tmp.path().join("nope");
    let out = squashbox(&["mount".as_ref(), s.img.as_ref(), missing_dir.as_ref()]);
    one_line(&out, "does not exist");
    let missing_img = s.tmp.path().join("nope.sqfs");
    let out = squashbox(&["mount".as_ref(), missing_img.as_ref(), s.mnt.as_ref()]);
    one_line(&out, "nope.sqfs");
    let out = squashbox(&[
        "mount".as_ref(),
        "-o".as_ref(),
        "rw".as_ref(),
        s.img.as_ref(),
        s.mnt.as_ref(),
    ]);
    one_line(&out, "unsupported mount option 'rw'");
    // Not an image.
    let out = squashbox(&["mount".as_ref(), s.src.join("a").as_ref(), s.mnt.as_ref()]);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "{}",
        out.describe()
    );
    assert!(!is_mounted(&s.mnt));
    assert!(daemon_pid(&s.mnt).is_none(), "a daemon was left running");
    let out = squashbox(&["umount".as_ref(), s.mnt.as_ref()]);
    one_line(&out, "is not a mount point");
}
