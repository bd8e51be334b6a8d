//! Deciding whether a test can run on this machine.
//!
//! Every `require_*` returns `true` when the prerequisite is there. When it is not, it calls
//! [`skip_or_fail`], which prints the reason and returns `false` (the test then returns early)
//! on a developer's machine, but panics under `CI=true`: in CI every prerequisite is installed,
//! so a skip would hide a broken test.
//!
//! ```no_run
//! # use squashbox_testkit::*;
//! #[test]
//! fn mounts_image() {
//!     if !(require_root() && require_loop() && require_tool("mksquashfs")) {
//!         return;
//!     }
//!     // ...
//! }
//! ```

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// True when the environment variable `CI` is `true` (or `1`): skips become failures.
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true") | Ok("1") | Ok("yes")
    )
}

/// Report that a test cannot run here: prints `reason` and returns `false`, or panics with it
/// when [`in_ci`] (a skip is a failure under CI).
#[track_caller]
pub fn skip_or_fail(reason: impl AsRef<str>) -> bool {
    let reason = reason.as_ref();
    if in_ci() {
        panic!("test prerequisite missing under CI=true (a skip is a failure in CI): {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// True when the process runs as root (effective uid 0). Never skips: for choosing options.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when running as root (effective uid 0).
#[track_caller]
pub fn require_root() -> bool {
    if is_root() {
        true
    } else {
        skip_or_fail("this test needs root")
    }
}

/// The full path of executable `name` found in `PATH` (plus `/usr/sbin` and `/sbin`).
pub fn tool_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return is_executable(Path::new(name)).then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// True when executable `name` (e.g. `"mksquashfs"`) is installed.
#[track_caller]
pub fn require_tool(name: &str) -> bool {
    if tool_path(name).is_some() {
        true
    } else {
        skip_or_fail(format!(
            "tool `{name}` is not installed (scripts/test.sh installs it)"
        ))
    }
}

/// True when FUSE file systems can be mounted: `/dev/fuse` opens read-write and `fusermount3`
/// is installed (or we are root, who can mount without it).
#[track_caller]
pub fn require_fuse() -> bool {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        return skip_or_fail(format!("/dev/fuse is not usable: {e}"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && tool_path("fusermount3").is_none() {
        return skip_or_fail("fusermount3 is not installed and we are not root");
    }
    true
}

/// True when kernel squashfs loop mounts are possible: root, a loop device interface, and
/// squashfs support in the kernel.
#[track_caller]
pub fn require_loop() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return skip_or_fail("kernel loop mounts need root");
    }
    if !Path::new("/dev/loop-control").exists() && !Path::new("/dev/loop0").exists() {
        return skip_or_fail("no loop devices (/dev/loop-control, /dev/loop0 missing)");
    }
    if !kernel_has_fs("squashfs") {
        // The module may just not be loaded yet.
        let _ = std::process::Command::new("modprobe")
            .arg("squashfs")
            .stderr(std::process::Stdio::null())
            .status();
        if !kernel_has_fs("squashfs") {
            return skip_or_fail("the kernel has no squashfs support (/proc/filesystems)");
        }
    }
    if tool_path("mount").is_none() || tool_path("umount").is_none() {
        return skip_or_fail("mount/umount are not installed");
    }
    true
}

fn kernel_has_fs(name: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| {
        s.lines()
            .any(|l| l.split_whitespace().last().map(OsStr::new) == Some(OsStr::new(name)))
    })
}
