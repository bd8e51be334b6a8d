//! RAII mount guards: whatever path a test takes (success, assertion failure, panic), the
//! mount is gone when the guard drops, and no wait is unbounded.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::run_with_timeout;

const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// The absolute form of `dir` without touching `dir` itself (a dead FUSE mount point cannot be
/// stat'ed): its parent is canonicalized and the last component appended.
fn mount_point_path(dir: &Path) -> PathBuf {
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent
                .canonicalize()
                .map(|p| p.join(name))
                .unwrap_or_else(|_| dir.to_path_buf())
        }
        _ => dir.to_path_buf(),
    }
}

/// Undo the octal escapes (`\040` for space, ...) of /proc/self/mountinfo.
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// True when something is mounted exactly at `dir` (per /proc/self/mountinfo).
pub fn is_mounted(dir: &Path) -> bool {
    let want = mount_point_path(dir);
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|line| {
        line.split(' ')
            .nth(4)
            .is_some_and(|mp| unescape_mountinfo(mp) == want.as_os_str().as_bytes())
    })
}

/// Wait until something is mounted at `dir`; false after `timeout`.
pub fn wait_for_mount(dir: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if is_mounted(dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Unmount `dir` with `program args.. dir`, retrying while busy, then lazily. Returns an error
/// describing the last failure if it is still mounted at the end.
fn unmount(dir: &Path, fuse: bool) -> io::Result<()> {
    let fusermount = fuse && crate::skip::tool_path("fusermount3").is_some();
    let mut last = String::new();
    for attempt in 0..6u32 {
        if !is_mounted(dir) {
            return Ok(());
        }
        let mut cmd = if fusermount && attempt % 2 == 0 {
            let mut c = Command::new("fusermount3");
            c.arg("-u");
            c
        } else {
            Command::new("umount")
        };
        cmd.arg(dir);
        match run_with_timeout(&mut cmd, UNMOUNT_TIMEOUT) {
            Ok(out) if out.success() => continue,
            Ok(out) => last = out.describe(),
            Err(e) => last = e.to_string(),
        }
        // Busy (a reader still closing): back off before retrying.
        thread::sleep(Duration::from_millis(50 << attempt));
    }
    if is_mounted(dir) {
        // Last resort: detach lazily so the test run cannot leave a mount behind.
        let mut cmd = if fusermount {
            let mut c = Command::new("fusermount3");
            c.arg("-uz");
            c
        } else {
            let mut c = Command::new("umount");
            c.arg("-l");
            c
        };
        cmd.arg(dir);
        let _ = run_with_timeout(&mut cmd, UNMOUNT_TIMEOUT);
        if is_mounted(dir) {
            return Err(io::Error::other(format!(
                "{} is still mounted: {last}",
                dir.display()
            )));
        }
        return Err(io::Error::other(format!(
            "{} needed a lazy unmount (still busy): {last}",
            dir.display()
        )));
    }
    Ok(())
}

/// A kernel squashfs loop mount (`mount -t squashfs -o loop,ro IMG DIR`), unmounted on drop.
/// The loop device is released automatically (autoclear) when unmounted.
#[derive(Debug)]
pub struct LoopMount {
    dir: PathBuf,
    active: bool,
}

impl LoopMount {
    /// Mount `img` read-only at existing directory `dir`. The error carries mount's message
    /// (the kernel refusing an image is a test failure worth reading).
    pub fn mount(img: &Path, dir: &Path) -> io::Result<LoopMount> {
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "squashfs", "-o", "loop,ro"])
            .arg(img)
            .arg(dir);
        let out = run_with_timeout(&mut cmd, Duration::from_secs(60))?;
        if !out.success() {
            // A timed-out mount may still have completed: never leave it behind.
            let _ = unmount(dir, false);
            return Err(io::Error::other(format!(
                "mount -t squashfs -o loop,ro {} {}: {}",
                img.display(),
                dir.display(),
                out.describe()
            )));
        }
        Ok(LoopMount {
            dir: dir.to_path_buf(),
            active: true,
        })
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmount now, reporting failure (drop does the same silently).
    pub fn unmount(mut self) -> io::Result<()> {
        self.active = false;
        unmount(&self.dir, false)
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if self.active {
            if let Err(e) = unmount(&self.dir, false) {
                eprintln!("LoopMount drop: {e}");
            }
        }
    }
}

/// Guard for a mount made by someone else (a FUSE daemon, `squashfuse`, `fuse-overlayfs`,
/// `squashbox mount`): on drop it unmounts the directory (`fusermount3 -u`/`umount`, retried,
/// lazy as a last resort), then waits for the daemon child, if it owns one, and kills it by
/// PID if it does not exit within 10 s.
#[derive(Debug)]
pub struct MountGuard {
    dir: PathBuf,
    fuse: bool,
    child: Option<Child>,
    active: bool,
}

impl MountGuard {
    /// Guard an existing FUSE mount at `dir`.
    pub fn fuse(dir: &Path) -> MountGuard {
        Self::build(dir, true, None)
    }

    fn build(dir: &Path, fuse: bool, child: Option<Child>) -> MountGuard {
        MountGuard {
            dir: dir.to_path_buf(),
            fuse,
            child,
            active: true,
        }
    }

    /// Guard the FUSE mount at `dir` served by foreground daemon `child` (spawned by the test).
    /// Use [`MountGuard::wait_mounted`] before touching `dir`.
    pub fn fuse_with_child(dir: &Path, child: Child) -> MountGuard {
        Self::build(dir, true, Some(child))
    }

    /// Guard an existing non-FUSE mount (unmounted with `umount`).
    pub fn kernel(dir: &Path) -> MountGuard {
        Self::build(dir, false, None)
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon child, if any.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Wait until `dir` is a mount point. Fails if the daemon child exits first or `timeout`
    /// passes.
    pub fn wait_mounted(&mut self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if is_mounted(&self.dir) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(io::Error::other(format!(
                        "mount daemon exited ({status}) before {} was mounted",
                        self.dir.display()
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} not mounted after {timeout:?}", self.dir.display()),
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Unmount now and reap the daemon; reports failures (drop does the same silently).
    /// Returns the daemon's exit status if there is a daemon.
    pub fn unmount(mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.active = false;
        let result = unmount(&self.dir, self.fuse);
        let status = self.reap_child();
        result.map(|()| status)
    }

    fn reap_child(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    // Kill only our own daemon, by PID.
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.active {
            if let Err(e) = unmount(&self.dir, self.fuse) {
                eprintln!("MountGuard drop: {e}");
            }
            self.reap_child();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), b"/a b\\c");
        assert_eq!(unescape_mountinfo(r"/x\04"), b"/x\\04");
    }

    #[test]
    fn root_is_mounted_and_tmp_subdir_is_not() {
        assert!(is_mounted(Path::new("/")) || is_mounted(Path::new("/proc")));
        let d = tempfile::tempdir().unwrap();
        assert!(!is_mounted(d.path()));
    }
}
