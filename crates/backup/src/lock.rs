//! Per-directory locks: create and restore on one directory are serialized, different
//! directories run concurrently. An `flock` on `{state}/locks/{hash of dir}.lock`; the kernel
//! releases it if the process dies.

use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};
use sha2::{Digest, Sha256};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Block until the lock for `dir` is ours.
pub fn lock_dir(state_dir: &Path, dir: &Path) -> std::io::Result<DirLock> {
    let locks = state_dir.join("locks");
    std::fs::create_dir_all(&locks)?;
    let digest = Sha256::digest(dir.as_os_str().as_bytes());
    let name = format!("{}.lock", hex(&digest[..16]));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(locks.join(name))?;
    loop {
        match flock(&file, FlockOperation::LockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(DirLock { _file: file })
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
