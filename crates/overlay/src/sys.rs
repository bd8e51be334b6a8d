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

/// Open the directory `dir` (any descriptor of it, `O_PATH` too) for listing.
pub(crate) fn open_listing(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        ".",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
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

/// Copy `len` bytes from `src` at `src_off` to `dst` at `dst_off` inside the kernel: no copy
/// through user memory, and the kernel reads ahead on `src`. `copy_file_range` first (on one
/// filesystem it splices, or shares extents where the filesystem can reflink), `sendfile`
/// where it refuses (across filesystems: `EXDEV`). `EINVAL` when neither moves a byte.
pub(crate) fn kernel_copy(
    src: BorrowedFd<'_>,
    src_off: u64,
    dst: BorrowedFd<'_>,
    dst_off: u64,
    len: u64,
) -> io::Result<()> {
    use rustix::io::Errno;
    let mut done = 0u64;
    let mut use_sendfile = false;
    while done < len {
        let want = usize::try_from(len - done).unwrap_or(usize::MAX);
        let mut s = src_off + done;
        let r = if use_sendfile {
            // sendfile writes at the output's file position.
            rustix::fs::seek(dst, rustix::fs::SeekFrom::Start(dst_off + done))?;
            rustix::fs::sendfile(dst, src, Some(&mut s), want)
        } else {
            let mut d = dst_off + done;
            rustix::fs::copy_file_range(src, Some(&mut s), dst, Some(&mut d), want)
        };
        match r {
            // Nothing copied: some filesystems answer so instead of failing. Try sendfile,
            // then let the caller copy through user space (which also names a source that
            // ends early).
            Ok(0) if !use_sendfile => use_sendfile = true,
            Ok(0) => return Err(Errno::INVAL.into()),
            Ok(n) => done += n as u64,
            Err(Errno::INTR) => {}
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) if !use_sendfile => {
                use_sendfile = true;
            }
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

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileExt;

    use super::kernel_copy;

    /// Both ways `kernel_copy` moves bytes: `copy_file_range` within one filesystem, and
    /// `sendfile` from a tmpfs file (`/dev/shm`) into `/tmp` where the two differ.
    #[test]
    fn kernel_copy_moves_exact_ranges_within_and_across_filesystems() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let dst_dir = tempfile::tempdir_in("/tmp").unwrap();
        let mut src_dirs = vec![tempfile::tempdir_in("/tmp").unwrap()];
        if let Ok(shm) = tempfile::tempdir_in("/dev/shm") {
            src_dirs.push(shm);
        }
        for (i, src_dir) in src_dirs.iter().enumerate() {
            let src_path = src_dir.path().join("src");
            std::fs::write(&src_path, &data).unwrap();
            let src = std::fs::File::open(&src_path).unwrap();
            let dst = std::fs::File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(dst_dir.path().join(format!("dst{i}")))
                .unwrap();
            // Two ranges, the second written first, at offsets unlike the source's.
            kernel_copy(src.as_fd(), 1_000_000, dst.as_fd(), 10, 2_000_000).unwrap();
            kernel_copy(src.as_fd(), 5, dst.as_fd(), 2_000_010, 999_995).unwrap();
            let mut got = vec![0u8; 3_000_005];
            dst.read_exact_at(&mut got, 0).unwrap();
            assert!(got[..10].iter().all(|b| *b == 0), "untouched start");
            assert!(got[10..2_000_010] == data[1_000_000..], "first range");
            assert!(got[2_000_010..] == data[5..1_000_000], "second range");
            // Past the end of the source: an error, not a silent short copy.
            assert!(kernel_copy(src.as_fd(), 2_999_990, dst.as_fd(), 0, 100).is_err());
        }
    }
}
