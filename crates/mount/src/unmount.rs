//! Unmounting a FUSE mount by path, including one whose daemon died.
//!
//! A dead daemon leaves a mount whose every access fails with "Transport endpoint is not
//! connected" (ENOTCONN). Nothing here stats or canonicalizes the mount point for that reason:
//! the path is made absolute lexically and compared with `/proc/self/mountinfo`.

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{MountError, Result};

/// How hard to try when the file system is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmountMode {
    /// Fail with [`MountError::Busy`] if files are open in the mount.
    Normal,
    /// Detach the mount now; it goes away when the last open file is closed and the daemon
    /// keeps serving those files until then (`umount -l`, `fusermount3 -uz`).
    Lazy,
    /// Abort the FUSE connection (open files start failing with ENOTCONN) and detach. Needs
    /// root; other users get [`UnmountMode::Lazy`] behaviour.
    Force,
}

/// Make `path` absolute without touching the file system (a dead FUSE mount point cannot be
/// stat'ed), and drop `.` components and trailing slashes.
pub fn absolute_mountpoint(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path)
        .map_err(|e| MountError::io(format!("resolving {}", path.display()), e))
}

/// Whether `path` (made absolute lexically) is a mount point, per `/proc/self/mountinfo`.
pub fn is_mounted(path: &Path) -> Result<bool> {
    let path = absolute_mountpoint(path)?;
    let info = std::fs::read("/proc/self/mountinfo")
        .map_err(|e| MountError::io("reading /proc/self/mountinfo", e))?;
    let found = mount_points(&info).any(|p| p == path);
    Ok(found)
}

/// Mount points listed in mountinfo text (field 5, with octal escapes decoded).
fn mount_points(info: &[u8]) -> impl Iterator<Item = PathBuf> + '_ {
    info.split(|&b| b == b'\n').filter_map(|line| {
        let field = line.split(|&b| b == b' ').nth(4)?;
        Some(PathBuf::from(OsString::from_vec(unescape_octal(field))))
    })
}

fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 4 <= field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Unmount the FUSE file system at `path`: `umount2(2)` when we may (root), else the setuid
/// helper `fusermount3 -u`. Works on a mount whose daemon was killed.
pub fn unmount(path: &Path, mode: UnmountMode) -> Result<()> {
    let path = absolute_mountpoint(path)?;
    if !is_mounted(&path)? {
        return Err(MountError::NotMounted(path));
    }
    let flags = match mode {
        UnmountMode::Normal | UnmountMode::Force => 0,
        UnmountMode::Lazy => libc::MNT_DETACH,
    };
    match umount2(&path, flags) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => match mode {
            UnmountMode::Normal => Err(MountError::Busy(path)),
            UnmountMode::Lazy => Err(MountError::io(format!("unmounting {}", path.display()), e)),
            UnmountMode::Force => {
                // MNT_FORCE makes FUSE abort the connection: requests in flight fail, the
                // daemon's reads of /dev/fuse end. Then detach whatever still pins the mount.
                match umount2(&path, libc::MNT_FORCE) {
                    Ok(()) => Ok(()),
                    Err(_) => umount2(&path, libc::MNT_DETACH)
                        .map_err(|e| MountError::io(format!("detaching {}", path.display()), e)),
                }
            }
        },
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => fusermount_unmount(&path, mode),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(MountError::NotMounted(path)),
        Err(e) => Err(MountError::io(format!("unmounting {}", path.display()), e)),
    }
}

fn umount2(path: &Path, flags: libc::c_int) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call; umount2 only
    // reads it.
    let rc = unsafe { libc::umount2(c_path.as_ptr(), flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn fusermount_unmount(path: &Path, mode: UnmountMode) -> Result<()> {
    let mut cmd = Command::new("fusermount3");
    cmd.arg("-u").arg("-q");
    if mode != UnmountMode::Normal {
        cmd.arg("-z");
    }
    cmd.arg("--").arg(path);
    let out = cmd
        .output()
        .map_err(|e| MountError::io("running fusermount3 -u", e))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("busy") {
        return Err(MountError::Busy(path.to_path_buf()));
    }
    Err(MountError::io(
        format!("fusermount3 -u {}", path.display()),
        io::Error::other(stderr.trim().to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let info = b"36 35 98:0 / /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                     37 35 0:5 / /dev rw - devtmpfs udev rw\n";
        let points: Vec<PathBuf> = mount_points(info).collect();
        assert_eq!(
            points,
            vec![PathBuf::from("/mnt/with space"), PathBuf::from("/dev")]
        );
        assert_eq!(unescape_octal(b"a\\134b\\"), b"a\\b\\".to_vec());
        assert_eq!(unescape_octal(b"\\999"), b"\\999".to_vec());
    }

    #[test]
    fn absolute_is_lexical() {
        let p = absolute_mountpoint(Path::new("/no/such/dir/./x/")).unwrap();
        assert_eq!(p, PathBuf::from("/no/such/dir/x"));
    }
}
