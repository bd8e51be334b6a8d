//! Small system-call helpers shared by the layers: byte names, positional I/O, directory
//! listing and xattrs addressed as (directory fd, name) so symlinks and device nodes never get
//! opened or followed.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{Dir, Stat};

use crate::lower::{Kind, LowerStat};

/// View raw name bytes as an `OsStr`.
pub(crate) fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// Convert a rustix error into `io::Error`.
pub(crate) fn ioerr(e: rustix::io::Errno) -> io::Error {
    e.into()
}

/// Build a [`LowerStat`] from a `stat` result.
pub(crate) fn lower_stat_from(st: &Stat) -> LowerStat {
    LowerStat {
        kind: Kind::from_mode(st.st_mode),
        perm: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: (st.st_atime, st.st_atime_nsec as u32),
        mtime: (st.st_mtime, st.st_mtime_nsec as u32),
        ctime: (st.st_ctime, st.st_ctime_nsec as u32),
        rdev: st.st_rdev,
        nlink: st.st_nlink as u32,
        number: st.st_ino,
    }
}

/// Callback receiving (name, type, d_ino) of one directory entry.
pub(crate) type DirentFn<'a> = dyn FnMut(&[u8], Kind, u64) -> io::Result<()> + 'a;

/// Call `f(name, kind, d_ino)` for every entry of the directory open at `fd`, skipping `.` and
/// `..`. Streams: memory does not grow with the directory size.
pub(crate) fn for_each_dirent(fd: OwnedFd, f: &mut DirentFn<'_>) -> io::Result<()> {
    let dir = Dir::read_from(&fd).map_err(ioerr)?;
    for entry in dir {
        let entry = entry.map_err(ioerr)?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        f(name, Kind::from_rustix(entry.file_type()), entry.ino())?;
    }
    Ok(())
}

/// `pread` until `buf` is full or end of file.
pub(crate) fn pread_full(fd: &OwnedFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(done)
}

/// `pwrite` the whole buffer.
pub(crate) fn pwrite_all(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pwrite(fd, &buf[done..], offset + done as u64) {
            Ok(0) => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A path that names `name` inside the directory open at `dirfd` without re-resolving the
/// directory's own path: `/proc/self/fd/<dirfd>/<name>`. Used for the `l*xattr` calls, which
/// have no `*at` form; the final component is never followed.
pub(crate) fn proc_path(dirfd: BorrowedFd<'_>, name: &[u8]) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dirfd.as_raw_fd()));
    if name != b"." {
        p.push(os(name));
    }
    p
}

/// Read one xattr of `name` in `dirfd`; `Ok(None)` when it does not exist.
pub(crate) fn get_xattr(
    dirfd: BorrowedFd<'_>,
    name: &[u8],
    key: &OsStr,
) -> io::Result<Option<Vec<u8>>> {
    let path = proc_path(dirfd, name);
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(&path, key, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(rustix::io::Errno::RANGE) => {
                let n = rustix::fs::lgetxattr_query(&path, key).map_err(ioerr)?;
                buf = vec![0u8; n.max(1)];
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Set one xattr (flags as for `setxattr(2)`).
pub(crate) fn set_xattr(
    dirfd: BorrowedFd<'_>,
    name: &[u8],
    key: &OsStr,
    value: &[u8],
    flags: rustix::fs::XattrFlags,
) -> io::Result<()> {
    let path = proc_path(dirfd, name);
    rustix::fs::lsetxattr(&path, key, value, flags).map_err(ioerr)
}

/// Remove one xattr.
pub(crate) fn remove_xattr(dirfd: BorrowedFd<'_>, name: &[u8], key: &OsStr) -> io::Result<()> {
    let path = proc_path(dirfd, name);
    rustix::fs::lremovexattr(&path, key).map_err(ioerr)
}

/// All xattr names of `name` in `dirfd`.
pub(crate) fn list_xattr_names(dirfd: BorrowedFd<'_>, name: &[u8]) -> io::Result<Vec<Vec<u8>>> {
    let path = proc_path(dirfd, name);
    let mut buf = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(&path, &mut buf[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(rustix::io::Errno::RANGE) => {
                let n = rustix::fs::llistxattr_query(&path).map_err(ioerr)?;
                buf = vec![0u8; n.max(1)];
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(buf[..n]
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_vec())
        .collect())
}

/// All xattrs (name, value) of `name` in `dirfd`.
pub(crate) fn all_xattrs(
    dirfd: BorrowedFd<'_>,
    name: &[u8],
) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for key in list_xattr_names(dirfd, name)? {
        if let Some(v) = get_xattr(dirfd, name, os(&key))? {
            out.push((key, v));
        }
    }
    Ok(out)
}
