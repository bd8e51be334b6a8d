//! Reading extended attributes from the source tree (without following symlinks).
//!
//! Only the namespaces SquashFS can store are read: `user.`, `trusted.` and `security.`.
//! `system.*` (POSIX ACLs and the like) cannot be represented and is skipped.

use std::io;
use std::path::Path;

/// Upper bound on one value (the Linux VFS limit is 64 KiB).
const MAX_VALUE: usize = 1 << 16;

/// A set of `(full name, value)` pairs sorted by name.
pub type XattrSet = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) fn storable(name: &[u8]) -> bool {
    squashbox_format::writer::xattr::split_name(name).is_some_and(|(_, rest)| !rest.is_empty())
}

/// Read the storable xattrs of `path`. File systems without xattr support give an empty set.
pub fn read(path: &Path) -> io::Result<XattrSet> {
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(size) => size,
        Err(e) if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::NOSYS => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(e.into()),
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    // The list can grow between the two calls; retry a few times with a bigger buffer.
    let mut list = vec![0u8; size];
    let mut attempts = 0;
    let len = loop {
        match rustix::fs::llistxattr(path, &mut list[..]) {
            Ok(len) => break len,
            Err(e) if e == rustix::io::Errno::RANGE && attempts < 4 => {
                attempts += 1;
                let bigger = list.len() * 2;
                list.resize(bigger, 0);
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut set = XattrSet::new();
    let mut value = vec![0u8; MAX_VALUE];
    for name in list[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !storable(name) {
            continue;
        }
        let n = rustix::fs::lgetxattr(path, name, &mut value[..]);
        match n {
            Ok(n) => set.push((name.to_vec(), value[..n].to_vec())),
            // Removed between listing and reading.
            Err(e) if e == rustix::io::Errno::NODATA => {}
            Err(e) => return Err(e.into()),
        }
    }
    set.sort();
    Ok(set)
}
