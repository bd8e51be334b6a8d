//! No-follow filesystem primitives relative to directory file descriptors.
//!
//! Every entry is created with `*at` calls against the fd of its parent directory, which was
//! itself opened with `O_NOFOLLOW | O_DIRECTORY`. Nothing here ever resolves a path that could
//! contain a symlink planted by the image or by someone else: names are single components
//! (validated by the caller) and metadata is set through an fd or with `AT_SYMLINK_NOFOLLOW`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self, AtFlags, Mode, OFlags, Timespec, Timestamps, CWD};
use rustix::io::Errno;

/// Flags for opening a directory we are going to populate.
pub(crate) const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Create directory `name` in `dir` (mode 0700 until its final mode is applied after its
/// contents) and open it without following symlinks.
pub(crate) fn create_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    fs::mkdirat(dir, name, Mode::RWXU)?;
    open_dir(dir, name)
}

/// Open existing directory `name` in `dir`, refusing symlinks.
pub(crate) fn open_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(fs::openat(dir, name, DIR_FLAGS, Mode::empty())?)
}

/// Create regular file `name` exclusively (never following or reusing an existing entry).
pub(crate) fn create_file(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    Ok(fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?)
}

/// Create a device, fifo or socket node with a private mode; the real mode is set afterwards.
pub(crate) fn create_node(
    dir: BorrowedFd<'_>,
    name: &[u8],
    file_type: fs::FileType,
    rdev: u64,
) -> io::Result<()> {
    fs::mknodat(dir, name, file_type, Mode::RUSR | Mode::WUSR, rdev)?;
    Ok(())
}

/// Create symlink `name -> target`. The target is stored verbatim and never resolved.
pub(crate) fn create_symlink(dir: BorrowedFd<'_>, name: &[u8], target: &[u8]) -> io::Result<()> {
    fs::symlinkat(target, dir, name)?;
    Ok(())
}

/// Hard-link `old_dir/old_name` as `new_dir/new_name` (flags 0: a symlink is linked, not
/// followed).
pub(crate) fn hard_link(
    old_dir: BorrowedFd<'_>,
    old_name: &[u8],
    new_dir: BorrowedFd<'_>,
    new_name: &[u8],
) -> io::Result<()> {
    fs::linkat(old_dir, old_name, new_dir, new_name, AtFlags::empty())?;
    Ok(())
}

/// Timestamps with atime = mtime = `mtime` seconds.
pub(crate) fn timestamps(mtime: u32) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::from(mtime),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Change owner of an open file or directory.
pub(crate) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    fs::fchown(
        fd,
        Some(fs::Uid::from_raw(uid)),
        Some(fs::Gid::from_raw(gid)),
    )?;
    Ok(())
}

/// Change owner of entry `name` without following it.
pub(crate) fn lchown_at(dir: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
    fs::chownat(
        dir,
        name,
        Some(fs::Uid::from_raw(uid)),
        Some(fs::Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Set permission bits (including setuid/setgid/sticky) of an open file or directory.
pub(crate) fn fchmod(fd: BorrowedFd<'_>, permissions: u16) -> io::Result<()> {
    fs::fchmod(fd, Mode::from_raw_mode(u32::from(permissions)))?;
    Ok(())
}

/// Set permission bits of a device/fifo/socket node (or a directory we cannot open) without
/// following symlinks.
///
/// Linux `fchmodat` has no working `AT_SYMLINK_NOFOLLOW` before `fchmodat2`, and opening a
/// fifo or device for an fd would block or have side effects. So: open an `O_PATH` handle with
/// `O_NOFOLLOW`, check it is not a symlink, and chmod through its `/proc/self/fd` magic link,
/// which names exactly that inode.
pub(crate) fn chmod_node_at(dir: BorrowedFd<'_>, name: &[u8], permissions: u16) -> io::Result<()> {
    let handle = fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = fs::fstat(&handle)?;
    if fs::FileType::from_raw_mode(st.st_mode) == fs::FileType::Symlink {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to chmod a symlink",
        ));
    }
    let mode = Mode::from_raw_mode(u32::from(permissions));
    match fs::chmodat(CWD, proc_fd_path(handle.as_fd()), mode, AtFlags::empty()) {
        Err(Errno::NOENT) => {
            // /proc is not mounted: fall back to a path-based chmod of a name we just verified
            // is not a symlink. The entry lives in a directory we created, so only a process
            // running as us could have swapped it since.
            fs::chmodat(dir, name, mode, AtFlags::empty())?;
            Ok(())
        }
        other => Ok(other?),
    }
}

/// Set atime/mtime of an open file or directory.
pub(crate) fn futimens(fd: BorrowedFd<'_>, mtime: u32) -> io::Result<()> {
    fs::futimens(fd, &timestamps(mtime))?;
    Ok(())
}

/// Set atime/mtime of entry `name` without following it.
pub(crate) fn lutimens_at(dir: BorrowedFd<'_>, name: &[u8], mtime: u32) -> io::Result<()> {
    fs::utimensat(dir, name, &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Set an xattr on an open file or directory.
pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    fs::fsetxattr(fd, name, value, fs::XattrFlags::empty())?;
    Ok(())
}

/// Set an xattr on entry `name` of `dir` without following it, via `lsetxattr` on
/// `/proc/self/fd/<dir>/<name>`: the directory part is a magic link to exactly `dir`, and the
/// last component is not followed.
pub(crate) fn lsetxattr_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    xname: &[u8],
    value: &[u8],
) -> io::Result<()> {
    let mut path = proc_fd_path(dir).into_bytes();
    path.push(b'/');
    path.extend_from_slice(name);
    fs::lsetxattr(path, xname, value, fs::XattrFlags::empty())?;
    Ok(())
}

fn proc_fd_path(fd: BorrowedFd<'_>) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// The type of entry `name` in `dir`, without following it; `None` if it does not exist.
pub(crate) fn entry_type(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<fs::FileType>> {
    match fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(fs::FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Remove entry `name` from `dir`, whatever it is; directories are removed recursively
/// without following any symlink inside them.
pub(crate) fn remove_entry(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match entry_type(dir, name)? {
        None => Ok(()),
        Some(fs::FileType::Directory) => {
            let _ = chmod_node_at(dir, name, 0o700);
            let fd = open_dir(dir, name)?;
            clear_dir(fd.as_fd())?;
            drop(fd);
            fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
            Ok(())
        }
        Some(_) => {
            fs::unlinkat(dir, name, AtFlags::empty())?;
            Ok(())
        }
    }
}

/// Remove everything inside directory `root`, iteratively (no recursion depth limit) and
/// without following symlinks. Subdirectories are made writable first so read-only
/// directories we created can be emptied when not running as root.
pub(crate) fn clear_dir(root: BorrowedFd<'_>) -> io::Result<()> {
    // Each frame: an open directory and the name it has in the frame below.
    let mut stack: Vec<(OwnedFd, Vec<u8>)> = Vec::new();
    loop {
        let current = match stack.last() {
            Some((fd, _)) => fd.as_fd(),
            None => root,
        };
        let mut subdir: Option<Vec<u8>> = None;
        let mut dir = fs::Dir::read_from(current)?;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let is_dir = match entry.file_type() {
                fs::FileType::Unknown => {
                    entry_type(current, name)? == Some(fs::FileType::Directory)
                }
                t => t == fs::FileType::Directory,
            };
            if is_dir {
                if subdir.is_none() {
                    subdir = Some(name.to_vec());
                }
            } else {
                match fs::unlinkat(current, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        drop(dir);
        match subdir {
            Some(name) => {
                // Best effort: a finished directory may already carry a restrictive final mode
                // (e.g. 0o000), which would stop a non-root owner from opening and emptying it.
                let _ = chmod_node_at(current, &name, 0o700);
                let fd = open_dir(current, &name)?;
                // Best effort: we may not own it (force mode over foreign content).
                let _ = fs::fchmod(&fd, Mode::RWXU);
                stack.push((fd, name));
            }
            None => {
                // `current` is empty now.
                let Some((fd, name)) = stack.pop() else {
                    return Ok(());
                };
                drop(fd);
                let parent = match stack.last() {
                    Some((fd, _)) => fd.as_fd(),
                    None => root,
                };
                fs::unlinkat(parent, &name, AtFlags::REMOVEDIR)?;
            }
        }
    }
}

/// True if directory `fd` has no entries besides `.` and `..`.
pub(crate) fn dir_is_empty(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut dir = fs::Dir::read_from(fd)?;
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Convert a SquashFS device number (Linux `new_encode_dev` layout) to a `dev_t`.
pub(crate) fn decode_rdev(stored: u32) -> u64 {
    let major = (stored & 0xfff00) >> 8;
    let minor = (stored & 0xff) | ((stored >> 12) & 0xfff00);
    fs::makedev(major, minor)
}

/// Write all of `buf` at `offset`.
pub(crate) fn pwrite_all(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Set the final length of a file (creates the trailing hole of a sparse file).
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    fs::ftruncate(fd, len)?;
    Ok(())
}

/// True if the effective user is root (so owners can be restored).
pub(crate) fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdev_decoding_matches_linux_new_encode_dev() {
        // major 8, minor 1 (sda1) and a large minor that uses the high bits.
        assert_eq!(decode_rdev(0x0801), fs::makedev(8, 1));
        let stored: u32 = (0x345 & 0xff) | (0x103 << 8) | ((0x345 & !0xff) << 12);
        assert_eq!(decode_rdev(stored), fs::makedev(0x103, 0x345));
    }
}
