//! The writable upper directory and the work directory, with Linux overlayfs conventions:
//! whiteouts are 0/0 character devices, opaque directories carry `<ns>overlay.opaque = "y"`,
//! renamed merged directories carry `<ns>overlay.redirect = "/absolute/lower/path"`, where
//! `<ns>` is `trusted.` (default) or `user.` (when trusted xattrs are not allowed).
//!
//! squashbox adds one private xattr, `<ns>overlay.sqb.origin`, holding the 8-byte little-endian
//! inode number a copied-up object had before copy-up, so its `st_ino` survives copy-up and
//! remounts. The kernel ignores unknown `overlay.*` xattrs and hides them like its own.
//!
//! Copied-up files that are hard-linked inside their image live once in the index,
//! `work/squashbox-index/<stable inode number as 16 hex digits>`, and every name of them in
//! the upper directory is a hard link of that entry; the index survives remounts (unlike
//! `work/squashbox-work`, which is emptied at mount).
//!
//! Every access resolves paths beneath the upper root with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so a symlink created through the mount can never redirect an
//! operation outside the upper directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, XattrFlags};

use crate::sys::{self, os};

/// Which xattr namespace carries the overlay markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XattrNamespace {
    /// Use `trusted.overlay.*` if the upper filesystem accepts it (needs CAP_SYS_ADMIN), else
    /// fall back to `user.overlay.*`.
    #[default]
    Auto,
    /// `trusted.overlay.*`, like the kernel by default.
    Trusted,
    /// `user.overlay.*`, like the kernel with `-o userxattr`.
    User,
}

/// Name of our temporary directory inside the work directory.
const WORK_SUBDIR: &str = "squashbox-work";

/// Name of the hard-link index inside the work directory (kept across mounts).
const INDEX_SUBDIR: &str = "squashbox-index";

/// The upper and work directories of one mount.
pub(crate) struct Upper {
    root: OwnedFd,
    work: OwnedFd,
    prefix: &'static str,
    opaque_key: String,
    redirect_key: String,
    origin_key: String,
    counter: AtomicU64,
    /// `work/squashbox-index`: one entry per copied-up lower object that is hard-linked inside
    /// its image, named by the object's stable inode number (16 hex digits). It is the single
    /// upper inode every name of that lower object links to.
    index: OwnedFd,
    /// In-memory view of the index: stable inode number -> upper `st_ino` of the entry. Loaded
    /// at mount (one record per indexed object), kept in step by `index_add`.
    indexed: Mutex<HashMap<u64, u64>>,
}

/// Is this stat result a whiteout?
pub(crate) fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

fn open_dir_path(p: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        p,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

impl Upper {
    /// Open `upper` and `work` (which must be distinct directories on one filesystem), prepare
    /// the private temporary directory inside `work`, and pick the xattr namespace.
    pub(crate) fn open(upper: &Path, work: &Path, ns: XattrNamespace) -> io::Result<Upper> {
        let root = open_dir_path(upper)?;
        let work_root = open_dir_path(work)?;
        let su = rustix::fs::fstat(&root)?;
        let sw = rustix::fs::fstat(&work_root)?;
        if su.st_dev != sw.st_dev {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "upper and work directories must be on the same filesystem",
            ));
        }
        if su.st_ino == sw.st_ino {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "upper and work directories must be different directories",
            ));
        }
        match rustix::fs::mkdirat(&work_root, WORK_SUBDIR, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let work = rustix::fs::openat(
            &work_root,
            WORK_SUBDIR,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        match rustix::fs::mkdirat(&work_root, INDEX_SUBDIR, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let index = rustix::fs::openat(
            &work_root,
            INDEX_SUBDIR,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let indexed = Mutex::new(load_index(index.as_fd())?);
        let mut up = Upper {
            root,
            work,
            index,
            indexed,
            prefix: "trusted.overlay.",
            opaque_key: String::new(),
            redirect_key: String::new(),
            origin_key: String::new(),
            counter: AtomicU64::new(0),
        };
        up.clean_work()?;
        let prefix = match ns {
            XattrNamespace::Trusted => "trusted.overlay.",
            XattrNamespace::User => "user.overlay.",
            XattrNamespace::Auto => {
                if up.probe_xattr_prefix("trusted.overlay.")? {
                    "trusted.overlay."
                } else {
                    "user.overlay."
                }
            }
        };
        up.prefix = prefix;
        up.opaque_key = format!("{prefix}opaque");
        up.redirect_key = format!("{prefix}redirect");
        up.origin_key = format!("{prefix}sqb.origin");
        Ok(up)
    }

    /// Remove leftovers of an interrupted earlier session from our temporary directory.
    fn clean_work(&self) -> io::Result<()> {
        let fd = sys::open_listing(self.work.as_fd())?;
        let mut names = Vec::new();
        sys::for_each_dirent(fd, &mut |name, _, _| {
            names.push(name.to_vec());
            Ok(())
        })?;
        for n in names {
            self.remove_tree(self.work.as_fd(), &n)?;
        }
        Ok(())
    }

    fn probe_xattr_prefix(&self, prefix: &str) -> io::Result<bool> {
        let tmp = self.temp_name();
        rustix::fs::mkdirat(&self.work, os(&tmp), Mode::from_raw_mode(0o700))?;
        let key = format!("{prefix}sqb.probe");
        let ok = sys::set_xattr(
            self.work.as_fd(),
            &tmp,
            OsStr::new(&key),
            b"y",
            XattrFlags::empty(),
        )
        .is_ok();
        rustix::fs::unlinkat(&self.work, os(&tmp), AtFlags::REMOVEDIR)?;
        Ok(ok)
    }

    /// Whether an xattr name is an overlay-private marker that must never be visible or settable
    /// through the mount.
    pub(crate) fn is_private_xattr(&self, name: &[u8]) -> bool {
        name.starts_with(b"trusted.overlay.") || name.starts_with(self.prefix.as_bytes())
    }

    /// The work directory (temporary objects are created here, then renamed into place).
    pub(crate) fn work(&self) -> BorrowedFd<'_> {
        self.work.as_fd()
    }

    /// A fresh unique name for a temporary object in the work directory.
    pub(crate) fn temp_name(&self) -> Vec<u8> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("#sqb.{}.{n}", std::process::id()).into_bytes()
    }

    /// Open the upper directory at relative path `rel` ("" = the upper root) as an `O_PATH`
    /// descriptor, resolving strictly beneath the upper root without following symlinks.
    pub(crate) fn open_dir(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        let p: &[u8] = if rel.is_empty() { b"." } else { rel };
        Ok(rustix::fs::openat2(
            &self.root,
            os(p),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// Open the upper directory at `rel` for listing.
    pub(crate) fn open_dir_for_listing(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        let p: &[u8] = if rel.is_empty() { b"." } else { rel };
        Ok(rustix::fs::openat2(
            &self.root,
            os(p),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// The hard-link index directory (`work/squashbox-index`).
    pub(crate) fn index_dir(&self) -> BorrowedFd<'_> {
        self.index.as_fd()
    }

    /// The upper root.
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// `lstat` of `name` in `dir`; `Ok(None)` if it does not exist.
    pub(crate) fn stat_at(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Stat>> {
        let n: &[u8] = if name.is_empty() { b"." } else { name };
        match rustix::fs::statat(dir, os(n), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the directory `name` in `dir` is opaque.
    pub(crate) fn is_opaque(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
        Ok(sys::get_xattr(dir, name, OsStr::new(&self.opaque_key))?.as_deref() == Some(b"y"))
    }

    /// Mark the directory `name` in `dir` opaque.
    pub(crate) fn set_opaque(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        sys::set_xattr(
            dir,
            name,
            OsStr::new(&self.opaque_key),
            b"y",
            XattrFlags::empty(),
        )
    }

    /// The redirect of directory `name` in `dir`, if any.
    pub(crate) fn redirect(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
        sys::get_xattr(dir, name, OsStr::new(&self.redirect_key))
    }

    /// Set the redirect of directory `name` in `dir` to an absolute lower path.
    pub(crate) fn set_redirect(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        target: &[u8],
    ) -> io::Result<()> {
        sys::set_xattr(
            dir,
            name,
            OsStr::new(&self.redirect_key),
            target,
            XattrFlags::empty(),
        )
    }

    /// The recorded origin inode number of `name` in `dir`, if any.
    pub(crate) fn origin(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<u64>> {
        Ok(sys::get_xattr(dir, name, OsStr::new(&self.origin_key))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_le_bytes))
    }

    /// Record the origin inode number of `name` in `dir`.
    pub(crate) fn set_origin(&self, dir: BorrowedFd<'_>, name: &[u8], ino: u64) -> io::Result<()> {
        sys::set_xattr(
            dir,
            name,
            OsStr::new(&self.origin_key),
            &ino.to_le_bytes(),
            XattrFlags::empty(),
        )
    }

    /// The upper `st_ino` of the index entry of stable inode number `ino`, if there is one.
    pub(crate) fn index_get(&self, ino: u64) -> Option<u64> {
        self.indexed.lock().get(&ino).copied()
    }

    /// Whether the upper inode `st_ino` is the index entry of `ino` (so one of its links is
    /// the index's own, not a name in the tree).
    pub(crate) fn index_holds(&self, ino: u64, st_ino: u64) -> bool {
        self.index_get(ino) == Some(st_ino)
    }

    /// Move the finished copy `tmp` (in the work directory) into the index as the entry of
    /// `ino`, with `durable` (not in volatile mode) durably: the index directory is synced, as
    /// the entry is what every name of the object will link to, also after a crash.
    pub(crate) fn index_add(&self, tmp: &[u8], ino: u64, durable: bool) -> io::Result<()> {
        let name = index_name(ino);
        rustix::fs::renameat_with(
            &self.work,
            os(tmp),
            &self.index,
            os(&name),
            rustix::fs::RenameFlags::NOREPLACE,
        )?;
        if durable {
            sync_dir(self.index.as_fd())?;
        }
        let st = rustix::fs::statat(&self.index, os(&name), AtFlags::SYMLINK_NOFOLLOW)?;
        self.indexed.lock().insert(ino, st.st_ino);
        Ok(())
    }

    /// Stable inode numbers that have an index entry.
    pub(crate) fn index_entries(&self) -> Vec<u64> {
        self.indexed.lock().keys().copied().collect()
    }

    /// Whether the index entry of `ino` is its only link (no name in the upper directory
    /// links it); `None` (and forgotten) if the entry is gone.
    pub(crate) fn index_unlinked(&self, ino: u64) -> io::Result<Option<bool>> {
        match rustix::fs::statat(&self.index, os(&index_name(ino)), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st.st_nlink == 1)),
            Err(rustix::io::Errno::NOENT) => {
                self.indexed.lock().remove(&ino);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Delete the index entry of `ino` (its data goes with it if no name links it).
    pub(crate) fn index_remove(&self, ino: u64) -> io::Result<()> {
        match rustix::fs::unlinkat(&self.index, os(&index_name(ino)), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        self.indexed.lock().remove(&ino);
        Ok(())
    }

    /// Hard-link the index entry of `ino` as `name` in `dir`. An existing `name` that already
    /// is that inode counts as success (a concurrent link-up got there first).
    pub(crate) fn index_link(&self, ino: u64, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        let entry = index_name(ino);
        match rustix::fs::linkat(&self.index, os(&entry), dir, os(name), AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => {
                let st = rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
                if Some(st.st_ino) == self.index_get(ino) {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(libc::EEXIST))
                }
            }
            Err(rustix::io::Errno::NOENT) => {
                // ENOENT also means `dir` itself was removed; only a missing entry is ours.
                let gone = matches!(
                    rustix::fs::statat(&self.index, os(&entry), AtFlags::SYMLINK_NOFOLLOW),
                    Err(rustix::io::Errno::NOENT)
                );
                if gone {
                    // The entry vanished behind our back (someone cleaned the work
                    // directory): forget it, so the object is copied up again or the lower
                    // object shows again, instead of failing forever.
                    log::warn!(
                        "overlay index entry {} is missing",
                        String::from_utf8_lossy(&entry)
                    );
                    self.indexed.lock().remove(&ino);
                }
                Err(io::Error::from_raw_os_error(libc::ENOENT))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Create a whiteout called `name` in `dir`.
    pub(crate) fn make_whiteout(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        Ok(rustix::fs::mknodat(
            dir,
            os(name),
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )?)
    }

    /// Replace the non-directory `name` in `dir` by a whiteout, atomically: the whiteout is
    /// made in the work directory and renamed over the object.
    pub(crate) fn replace_with_whiteout(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        let tmp = self.temp_name();
        self.make_whiteout(self.work(), &tmp)?;
        if let Err(e) = rustix::fs::renameat(self.work(), os(&tmp), dir, os(name)) {
            let _ = rustix::fs::unlinkat(self.work(), os(&tmp), AtFlags::empty());
            return Err(e.into());
        }
        Ok(())
    }

    /// Delete `name` in `dir` and everything below it (used for directories that hold only
    /// whiteouts, and for work-directory leftovers). Iterative: no recursion depth limit.
    pub(crate) fn remove_tree(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        let st = match self.stat_at(dir, name)? {
            None => return Ok(()),
            Some(st) => st,
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Ok(rustix::fs::unlinkat(dir, os(name), AtFlags::empty())?);
        }
        let top = rustix::fs::openat(
            dir,
            os(name),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut stack: Vec<OwnedFd> = vec![top];
        while let Some(d) = stack.last() {
            let list = sys::open_listing(d.as_fd())?;
            let mut subdir: Option<Vec<u8>> = None;
            let mut files = Vec::new();
            sys::for_each_dirent(list, &mut |n, kind, _| {
                if kind == crate::lower::Kind::Dir {
                    if subdir.is_none() {
                        subdir = Some(n.to_vec());
                    }
                } else {
                    files.push(n.to_vec());
                }
                Ok(())
            })?;
            for f in files {
                rustix::fs::unlinkat(d, os(&f), AtFlags::empty())?;
            }
            match subdir {
                Some(s) => {
                    // Empty the child first; it is removed when it becomes empty.
                    let child = rustix::fs::openat(
                        d,
                        os(&s),
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    // Remove it right away if already empty.
                    match rustix::fs::unlinkat(d, os(&s), AtFlags::REMOVEDIR) {
                        Ok(()) => {}
                        Err(rustix::io::Errno::NOTEMPTY) => stack.push(child),
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {
                    stack.pop();
                    if stack.is_empty() {
                        rustix::fs::unlinkat(dir, os(name), AtFlags::REMOVEDIR)?;
                    } else {
                        // Loop again on the parent; the now-empty child is removed there.
                    }
                }
            }
        }
        Ok(())
    }

    /// `fstatfs` of the upper filesystem.
    pub(crate) fn statfs(&self) -> io::Result<rustix::fs::StatFs> {
        Ok(rustix::fs::fstatfs(&self.root)?)
    }
}

/// Name of the index entry of stable inode number `ino`.
fn index_name(ino: u64) -> Vec<u8> {
    format!("{ino:016x}").into_bytes()
}

/// Read the index directory: entry name (hex inode number) -> upper `st_ino`. Names that are
/// not ours are ignored (left alone).
fn load_index(index: BorrowedFd<'_>) -> io::Result<HashMap<u64, u64>> {
    let list = sys::open_listing(index)?;
    let mut out = HashMap::new();
    sys::for_each_dirent(list, &mut |name, kind, _| {
        if kind == crate::lower::Kind::Dir || name.len() != 16 {
            return Ok(());
        }
        if let Some(ino) = std::str::from_utf8(name)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        {
            // stat, not d_ino: the two differ on some filesystems (e.g. an overlayfs upper).
            let st = rustix::fs::statat(index, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
            out.insert(ino, st.st_ino);
        }
        Ok(())
    })?;
    Ok(out)
}

/// `fsync` a directory given by an `O_PATH` descriptor (which cannot be synced itself).
pub(crate) fn sync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    let fd = sys::open_listing(dir)?;
    rustix::fs::fsync(&fd)?;
    Ok(())
}

/// Remove every whiteout directly inside the upper directory `dirfd` (`O_PATH`). Returns
/// `ENOTEMPTY` if anything other than whiteouts is found.
pub(crate) fn clear_whiteouts(up: &Upper, dir: BorrowedFd<'_>) -> io::Result<()> {
    let list = sys::open_listing(dir)?;
    let mut whiteouts = Vec::new();
    let mut other = false;
    sys::for_each_dirent(list, &mut |n, kind, _| {
        if kind == crate::lower::Kind::Char {
            if let Some(st) = up.stat_at(dir, n)? {
                if is_whiteout(&st) {
                    whiteouts.push(n.to_vec());
                    return Ok(());
                }
            }
        }
        other = true;
        Ok(())
    })?;
    if other {
        return Err(io::Error::from_raw_os_error(libc::ENOTEMPTY));
    }
    for w in whiteouts {
        rustix::fs::unlinkat(dir, os(&w), AtFlags::empty())?;
    }
    Ok(())
}
