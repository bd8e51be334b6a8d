//! Thin checked wrappers over the libc calls std does not offer (xattrs, mknod, lchown,
//! no-follow timestamps, seek data/hole). All take paths and never follow a final symlink.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn cname(n: &[u8]) -> io::Result<CString> {
    CString::new(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains NUL"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Set xattr `name` = `value` on `path` (not following symlinks).
pub fn lsetxattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let (p, n) = (cpath(path)?, cname(name)?);
    // SAFETY: p and n are NUL-terminated C strings; value pointer/length describe a live slice.
    check(unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// All xattrs of `path` (not following symlinks), sorted by name. A file system without xattr
/// support gives an empty list.
pub fn lxattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let p = cpath(path)?;
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: p is NUL-terminated; names is a live buffer of names.len() bytes.
        let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ERANGE) => names.resize(names.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let n = cname(name)?;
        let mut value = vec![0u8; 256];
        let vlen = loop {
            // SAFETY: p, n are NUL-terminated; value is a live buffer of value.len() bytes.
            let r = unsafe {
                libc::lgetxattr(
                    p.as_ptr(),
                    n.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ERANGE) if value.len() < (1 << 20) => value.resize(value.len() * 4, 0),
                // Listed but not readable (a reader bug, e.g. squashfuse with empty values):
                // leave it out so the comparison reports it missing.
                Some(libc::ENODATA) => break usize::MAX,
                _ => return Err(e),
            }
        };
        if vlen == usize::MAX {
            continue;
        }
        value.truncate(vlen);
        out.push((name.to_vec(), value));
    }
    out.sort();
    Ok(out)
}

/// Create a device, fifo or socket node: `mode` includes the `S_IF*` type bits.
pub fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: p is NUL-terminated; mknod has no memory preconditions.
    check(unsafe { libc::mknod(p.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) })
}

/// Change owner of `path` without following a final symlink.
pub fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: p is NUL-terminated; lchown has no memory preconditions.
    check(unsafe { libc::lchown(p.as_ptr(), uid, gid) })
}

/// Set the permission bits (including setuid/setgid/sticky) of a non-symlink.
pub fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: p is NUL-terminated; chmod has no memory preconditions.
    check(unsafe { libc::chmod(p.as_ptr(), mode as libc::mode_t) })
}

/// Set atime and mtime of `path` to `secs` (whole seconds), not following a final symlink.
pub fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let p = cpath(path)?;
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: p is NUL-terminated; times is an array of two valid timespecs.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            p.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Linux device number from major and minor.
pub fn makedev(major: u32, minor: u32) -> u64 {
    libc::makedev(major, minor)
}

/// Major and minor of a Linux device number.
pub fn major_minor(rdev: u64) -> (u32, u32) {
    (libc::major(rdev), libc::minor(rdev))
}

/// The next data region at or after `offset` of an open file: `Some((start, end))`, or `None`
/// when only a hole remains. `Err` with `ENXIO`-free semantics; file systems that do not
/// report holes return the whole rest as data.
pub fn next_data(file: &std::fs::File, offset: u64, size: u64) -> io::Result<Option<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    if offset >= size {
        return Ok(None);
    }
    let fd = file.as_raw_fd();
    // SAFETY: fd is a valid open descriptor owned by `file` for the duration of the call.
    let start = unsafe { libc::lseek(fd, offset as libc::off_t, libc::SEEK_DATA) };
    if start < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            Some(libc::EINVAL) | Some(libc::ENOTSUP) => Ok(Some((offset, size))),
            _ => Err(e),
        };
    }
    // SAFETY: as above.
    let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
    if end < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some((start as u64, (end as u64).min(size))))
}

/// Create a fifo with permission bits `mode`.
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    mknod(path, libc::S_IFIFO | (mode & 0o7777), 0)
}

/// Make `cmd`'s child run with an address-space limit of `bytes` (`RLIMIT_AS`), so an
/// unbounded allocation aborts it (visible as death by a signal) instead of exhausting the
/// machine.
pub fn limit_address_space(cmd: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit, which
    // is async-signal-safe, allocates nothing and reads only the captured integer.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            check(libc::setrlimit(libc::RLIMIT_AS, &lim))
        });
    }
}

/// The first `len` bytes of `file` read through a private read-only mapping (the page-fault
/// path of a file system, as opposed to `read`). `len` must not exceed the file's size.
pub fn mmap_read(file: &std::fs::File, len: usize) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh private read-only mapping of `len` bytes of an open file; it is only
    // read within bounds, copied out, and unmapped before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let copy = std::slice::from_raw_parts(p as *const u8, len).to_vec();
        check(libc::munmap(p, len))?;
        Ok(copy)
    }
}
