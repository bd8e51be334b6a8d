//! Namespace changes: create, mkdir, mknod, symlink, link, unlink, rmdir, rename.
//!
//! Rules (those of Linux overlayfs):
//! - A name that still exists in a lower layer is removed by leaving a whiteout in the upper
//!   directory; removal of an upper object that shadows a lower one is an atomic replace of the
//!   object by a whiteout.
//! - A directory created where a lower entry was whited out is made opaque, so the old lower
//!   contents do not reappear in it.
//! - Renaming a directory that merges lower contents copies up the directory itself (metadata
//!   only) and records `overlay.redirect = "/<lower path>"`, like the kernel with
//!   `redirect_dir=on`; its lower contents follow it without being copied.
//!
//! Every function here runs with the namespace lock held exclusively.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, RenameFlags, Uid};

use crate::core::{errno, upper_ino, NodeCtx, Overlay};
use crate::lower::Kind;
use crate::node::NodeState;
use crate::sys::os;

/// What to create.
pub(crate) enum NewObject<'a> {
    File { mode: u32, flags: i32 },
    Dir { mode: u32 },
    Special { kind: Kind, mode: u32, rdev: u64 },
    Symlink { target: &'a [u8] },
}

/// The caller's identity, for ownership of new objects.
#[derive(Clone, Copy)]
pub(crate) struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// Result of a create: the new state, and an open descriptor for `NewObject::File`.
pub(crate) struct Created {
    pub state: NodeState,
    pub stat: rustix::fs::Stat,
    pub fd: Option<OwnedFd>,
}

impl Overlay {
    /// Create `name` in directory `parent`.
    pub(crate) fn create_object(
        &self,
        parent: u64,
        name: &[u8],
        obj: NewObject<'_>,
        caller: Caller,
    ) -> io::Result<Created> {
        check_name(name)?;
        let pctx = self.ensure_upper_dir(parent)?;
        if pctx.state.kind != Kind::Dir {
            return Err(errno(libc::ENOTDIR));
        }
        if self.resolve_child(&pctx, name)?.is_some() {
            return Err(errno(libc::EEXIST));
        }
        let pdir = self.upper.open_dir(&pctx.path)?;
        let upper_whiteout = self.upper.stat_at(pdir.as_fd(), name)?.is_some();
        let lower_whiteout = matches!(
            self.lookup_lowers(&pctx.state, name)?,
            crate::core::LowerLookup::Whiteout
        );
        let opaque = matches!(obj, NewObject::Dir { .. }) && (upper_whiteout || lower_whiteout);
        // Objects replacing a whiteout, or needing a marker before they become visible, are
        // built in the work directory and moved into place in one rename.
        let via_work = upper_whiteout || opaque;
        let work = self.upper.work();
        let tmp = self.upper.temp_name();
        let (dir, at): (BorrowedFd<'_>, &[u8]) = if via_work {
            (work, &tmp)
        } else {
            (pdir.as_fd(), name)
        };
        let pst = rustix::fs::statat(pdir.as_fd(), ".", AtFlags::empty())?;
        let setgid_parent = pst.st_mode & libc::S_ISGID != 0;
        let gid = if setgid_parent {
            pst.st_gid
        } else {
            caller.gid
        };
        let mut fd = None;
        let mut perm = match obj {
            NewObject::File { mode, .. }
            | NewObject::Dir { mode }
            | NewObject::Special { mode, .. } => mode & 0o7777,
            NewObject::Symlink { .. } => 0o777,
        };
        match obj {
            NewObject::File { flags, .. } => {
                let acc = OFlags::from_bits_retain((flags & libc::O_ACCMODE) as u32);
                let extra = OFlags::from_bits_retain(
                    (flags & (libc::O_APPEND | libc::O_SYNC | libc::O_DSYNC | libc::O_NOATIME))
                        as u32,
                );
                fd = Some(rustix::fs::openat(
                    dir,
                    os(at),
                    acc | extra
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?);
            }
            NewObject::Dir { .. } => {
                if setgid_parent {
                    perm |= libc::S_ISGID;
                }
                rustix::fs::mkdirat(dir, os(at), Mode::from_raw_mode(0o700))?;
            }
            NewObject::Special { kind, rdev, .. } => {
                let ft = match kind {
                    Kind::Char => FileType::CharacterDevice,
                    Kind::Block => FileType::BlockDevice,
                    Kind::Fifo => FileType::Fifo,
                    Kind::Socket => FileType::Socket,
                    Kind::File => FileType::RegularFile,
                    _ => return Err(errno(libc::EINVAL)),
                };
                rustix::fs::mknodat(dir, os(at), ft, Mode::from_raw_mode(0o600), rdev)?;
            }
            NewObject::Symlink { target } => {
                rustix::fs::symlinkat(os(target), dir, os(at))?;
            }
        }
        let finish = (|| -> io::Result<()> {
            if self.cfg.running_as_root {
                rustix::fs::chownat(
                    dir,
                    os(at),
                    Some(Uid::from_raw(caller.uid)),
                    Some(Gid::from_raw(gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            if !matches!(obj, NewObject::Symlink { .. }) {
                rustix::fs::chmodat(dir, os(at), Mode::from_raw_mode(perm), AtFlags::empty())?;
            }
            if opaque {
                self.upper.set_opaque(dir, at)?;
            }
            if via_work {
                if upper_whiteout {
                    if matches!(obj, NewObject::Dir { .. }) {
                        // A directory cannot replace a non-directory in one rename: exchange
                        // with the whiteout, then drop the whiteout from the work directory.
                        rustix::fs::renameat_with(
                            work,
                            os(&tmp),
                            pdir.as_fd(),
                            os(name),
                            RenameFlags::EXCHANGE,
                        )?;
                        rustix::fs::unlinkat(work, os(&tmp), AtFlags::empty())?;
                    } else {
                        rustix::fs::renameat(work, os(&tmp), pdir.as_fd(), os(name))?;
                    }
                } else {
                    rustix::fs::renameat_with(
                        work,
                        os(&tmp),
                        pdir.as_fd(),
                        os(name),
                        RenameFlags::NOREPLACE,
                    )?;
                }
            }
            Ok(())
        })();
        if let Err(e) = finish {
            if via_work {
                let _ = self.upper.remove_tree(work, &tmp);
            } else {
                let _ = self.upper.remove_tree(pdir.as_fd(), name);
            }
            return Err(e);
        }
        let stat = self
            .upper
            .stat_at(pdir.as_fd(), name)?
            .ok_or_else(|| errno(libc::EIO))?;
        let state = NodeState {
            kind: Kind::from_mode(stat.st_mode),
            upper: true,
            lowers: Vec::new(),
            lower_path: None,
            ino: upper_ino(stat.st_ino),
        };
        Ok(Created { state, stat, fd })
    }

    /// Hard-link node `src` as `name` in `parent`. A lower source is copied up first (once);
    /// the new name then shares the upper inode.
    pub(crate) fn link(
        &self,
        src: u64,
        parent: u64,
        name: &[u8],
    ) -> io::Result<(NodeState, rustix::fs::Stat)> {
        check_name(name)?;
        let sctx = self.copy_up_node(src)?;
        if sctx.state.kind == Kind::Dir {
            return Err(errno(libc::EPERM));
        }
        let pctx = self.ensure_upper_dir(parent)?;
        if self.resolve_child(&pctx, name)?.is_some() {
            return Err(errno(libc::EEXIST));
        }
        let (sp, sn) = crate::node::split_path(&sctx.path);
        let sdir = self.upper.open_dir(sp)?;
        let pdir = self.upper.open_dir(&pctx.path)?;
        if self.upper.stat_at(pdir.as_fd(), name)?.is_some() {
            // Replace the whiteout atomically.
            let tmp = self.upper.temp_name();
            rustix::fs::linkat(
                sdir.as_fd(),
                os(sn),
                self.upper.work(),
                os(&tmp),
                AtFlags::empty(),
            )?;
            if let Err(e) =
                rustix::fs::renameat(self.upper.work(), os(&tmp), pdir.as_fd(), os(name))
            {
                let _ = rustix::fs::unlinkat(self.upper.work(), os(&tmp), AtFlags::empty());
                return Err(e.into());
            }
        } else {
            rustix::fs::linkat(
                sdir.as_fd(),
                os(sn),
                pdir.as_fd(),
                os(name),
                AtFlags::empty(),
            )?;
        }
        let st = self
            .upper
            .stat_at(pdir.as_fd(), name)?
            .ok_or_else(|| errno(libc::EIO))?;
        Ok((sctx.state, st))
    }

    /// Remove the non-directory `name` from `parent`.
    pub(crate) fn unlink(&self, parent: u64, name: &[u8]) -> io::Result<()> {
        let pctx = self.ctx(parent)?;
        let child = self
            .resolve_child(&pctx, name)?
            .ok_or_else(|| errno(libc::ENOENT))?;
        if child.kind == Kind::Dir {
            return Err(errno(libc::EISDIR));
        }
        self.remove_entry(&pctx, name, &child)
    }

    /// Remove the directory `name` from `parent`; it must look empty in the merged view.
    pub(crate) fn rmdir(&self, parent: u64, name: &[u8]) -> io::Result<()> {
        let pctx = self.ctx(parent)?;
        let child = self
            .resolve_child(&pctx, name)?
            .ok_or_else(|| errno(libc::ENOENT))?;
        if child.kind != Kind::Dir {
            return Err(errno(libc::ENOTDIR));
        }
        let cctx = NodeCtx {
            id: 0,
            parent,
            name: name.to_vec(),
            path: crate::node::join(&pctx.path, name),
            state: child.clone(),
        };
        if !self.is_empty_merged(&cctx)? {
            return Err(errno(libc::ENOTEMPTY));
        }
        self.remove_entry(&pctx, name, &child)
    }

    /// Remove a resolved entry: whiteout if a lower entry would show through, else delete.
    fn remove_entry(&self, pctx: &NodeCtx, name: &[u8], child: &NodeState) -> io::Result<()> {
        let lower_visible = self.lookup_lowers(&pctx.state, name)?.visible();
        let pctx = self.ensure_upper_dir(pctx.id)?;
        let pdir = self.upper.open_dir(&pctx.path)?;
        if !child.upper {
            self.upper.make_whiteout(pdir.as_fd(), name)?;
        } else if child.kind == Kind::Dir {
            // Only whiteouts can remain inside (the merged view is empty). Move the directory
            // out of the namespace first (replacing it by a whiteout if needed), then delete.
            let work = self.upper.work();
            let tmp = self.upper.temp_name();
            if lower_visible {
                self.upper.make_whiteout(work, &tmp)?;
                if let Err(e) = rustix::fs::renameat_with(
                    work,
                    os(&tmp),
                    pdir.as_fd(),
                    os(name),
                    RenameFlags::EXCHANGE,
                ) {
                    let _ = rustix::fs::unlinkat(work, os(&tmp), AtFlags::empty());
                    return Err(e.into());
                }
            } else {
                rustix::fs::renameat_with(
                    pdir.as_fd(),
                    os(name),
                    work,
                    os(&tmp),
                    RenameFlags::NOREPLACE,
                )?;
            }
            self.upper.remove_tree(work, &tmp)?;
        } else if lower_visible {
            self.upper.replace_with_whiteout(pdir.as_fd(), name)?;
        } else {
            rustix::fs::unlinkat(pdir.as_fd(), os(name), AtFlags::empty())?;
        }
        self.table.lock().detach_name(pctx.id, name);
        if child.upper && child.kind != Kind::Dir {
            self.release_index_quietly(child.ino);
        }
        Ok(())
    }

    /// Rename `name` in `parent` to `new_name` in `new_parent`, with `RENAME_NOREPLACE` /
    /// `RENAME_EXCHANGE` semantics when asked.
    pub(crate) fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        check_name(new_name)?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        if flags & !(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE) != 0 || (exchange && noreplace)
        {
            return Err(errno(libc::EINVAL));
        }
        let pctx = self.ctx(parent)?;
        let npctx = self.ctx(new_parent)?;
        let src = self
            .resolve_child(&pctx, name)?
            .ok_or_else(|| errno(libc::ENOENT))?;
        let dst = self.resolve_child(&npctx, new_name)?;
        if parent == new_parent && name == new_name {
            return Ok(());
        }
        match (&dst, exchange) {
            (Some(_), _) if noreplace => return Err(errno(libc::EEXIST)),
            (None, true) => return Err(errno(libc::ENOENT)),
            (Some(d), false) => {
                if src.kind == Kind::Dir && d.kind != Kind::Dir {
                    return Err(errno(libc::ENOTDIR));
                }
                if src.kind != Kind::Dir && d.kind == Kind::Dir {
                    return Err(errno(libc::EISDIR));
                }
                if d.kind == Kind::Dir {
                    let dctx = NodeCtx {
                        id: 0,
                        parent: new_parent,
                        name: new_name.to_vec(),
                        path: crate::node::join(&npctx.path, new_name),
                        state: d.clone(),
                    };
                    if !self.is_empty_merged(&dctx)? {
                        return Err(errno(libc::ENOTEMPTY));
                    }
                }
                // Both names are links of one file: POSIX says do nothing. Two upper names
                // are compared by upper inode; a lower name with the same number as the other
                // is the same image inode (hard-linked inside the image, and shown as the
                // copied-up file once one name was copied up).
                if src.kind != Kind::Dir && src.ino == d.ino {
                    if !(src.upper && d.upper) {
                        return Ok(());
                    }
                    let (a, b) = (
                        self.upper_stat(&pctx, name)?,
                        self.upper_stat(&npctx, new_name)?,
                    );
                    if a.st_ino == b.st_ino && a.st_dev == b.st_dev {
                        return Ok(());
                    }
                }
            }
            _ => {}
        }
        let lower_at_src = self.lookup_lowers(&pctx.state, name)?.visible();
        let lower_at_dst = self.lookup_lowers(&npctx.state, new_name)?.visible();

        // Bring both parents and the moving objects into the upper directory.
        let pctx = self.ensure_upper_dir(parent)?;
        let npctx = self.ensure_upper_dir(new_parent)?;
        let pdir = self.upper.open_dir(&pctx.path)?;
        let npdir = self.upper.open_dir(&npctx.path)?;
        let src_id = self.table.lock().child(parent, name);
        let dst_id = self.table.lock().child(new_parent, new_name);
        let src = self.prepare_moving(pdir.as_fd(), name, src, src_id)?;
        let dst = match dst {
            Some(d) if exchange => Some(self.prepare_moving(npdir.as_fd(), new_name, d, dst_id)?),
            other => other,
        };

        if exchange {
            let dst = dst.ok_or_else(|| errno(libc::ENOENT))?;
            rustix::fs::renameat_with(
                pdir.as_fd(),
                os(name),
                npdir.as_fd(),
                os(new_name),
                RenameFlags::EXCHANGE,
            )?;
            if src.kind == Kind::Dir && src.lowers.is_empty() && lower_at_dst {
                self.upper.set_opaque(npdir.as_fd(), new_name)?;
            }
            if dst.kind == Kind::Dir && dst.lowers.is_empty() && lower_at_src {
                self.upper.set_opaque(pdir.as_fd(), name)?;
            }
            let mut t = self.table.lock();
            t.exchange_names(parent, name, new_parent, new_name);
            for (id, st) in [(src_id, &src), (dst_id, &dst)] {
                if let Some(n) = id.and_then(|id| t.get_mut(id)) {
                    n.state = st.clone();
                }
            }
            return Ok(());
        }

        if let Some(d) = &dst {
            if d.kind == Kind::Dir && d.upper {
                let ddir = self
                    .upper
                    .open_dir(&crate::node::join(&npctx.path, new_name))?;
                crate::upper::clear_whiteouts(&self.upper, ddir.as_fd())?;
            }
        }
        if src.kind == Kind::Dir && src.lowers.is_empty() && lower_at_dst {
            self.upper.set_opaque(pdir.as_fd(), name)?;
        }
        let dst_is_whiteout = dst.is_none()
            && self
                .upper
                .stat_at(npdir.as_fd(), new_name)?
                .is_some_and(|st| crate::upper::is_whiteout(&st));
        if dst_is_whiteout && src.kind == Kind::Dir {
            // A directory cannot replace the whiteout (a non-directory) in one rename:
            // exchange them, then keep the whiteout at the old name only if it hides something.
            rustix::fs::renameat_with(
                pdir.as_fd(),
                os(name),
                npdir.as_fd(),
                os(new_name),
                RenameFlags::EXCHANGE,
            )?;
            if !lower_at_src {
                rustix::fs::unlinkat(pdir.as_fd(), os(name), AtFlags::empty())?;
            }
        } else if lower_at_src {
            match rustix::fs::renameat_with(
                pdir.as_fd(),
                os(name),
                npdir.as_fd(),
                os(new_name),
                RenameFlags::WHITEOUT,
            ) {
                Ok(()) => {}
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::PERM) => {
                    rustix::fs::renameat(pdir.as_fd(), os(name), npdir.as_fd(), os(new_name))?;
                    self.upper.make_whiteout(pdir.as_fd(), name)?;
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            rustix::fs::renameat(pdir.as_fd(), os(name), npdir.as_fd(), os(new_name))?;
        }
        let mut t = self.table.lock();
        t.move_name(parent, name, new_parent, new_name);
        if let Some(n) = src_id.and_then(|a| t.get_mut(a)) {
            n.state = src;
        }
        drop(t);
        // The replaced target may have been the last name of a copied-up image hard link.
        if let Some(d) = dst.filter(|d| d.upper && d.kind != Kind::Dir) {
            self.release_index_quietly(d.ino);
        }
        Ok(())
    }

    /// `release_index_if_unused` after a name was removed: the removal stands whatever
    /// happens, so a failure only leaves the entry for the next mount to free.
    fn release_index_quietly(&self, ino: u64) {
        if let Err(e) = self.release_index_if_unused(ino) {
            log::warn!("freeing index entry {ino:#x}: {e}");
        }
    }

    /// Make an object that is about to move exist in the upper directory; a directory that
    /// merges lower contents gets a redirect to where those contents live.
    fn prepare_moving(
        &self,
        pdir: BorrowedFd<'_>,
        name: &[u8],
        mut st: NodeState,
        id: Option<u64>,
    ) -> io::Result<NodeState> {
        if !st.upper {
            self.copy_up_at(pdir, name, &st)?;
            st.upper = true;
            if st.kind != Kind::Dir {
                st.lowers.clear();
            }
            // Keep the table in step even if a later step of the rename fails.
            if let Some(id) = id {
                if let Some(n) = self.table.lock().get_mut(id) {
                    n.state = st.clone();
                }
            }
        }
        if st.kind == Kind::Dir && !st.lowers.is_empty() {
            let lp = st.lower_path.as_deref().ok_or_else(|| errno(libc::EXDEV))?;
            let mut target = Vec::with_capacity(lp.len() + 1);
            target.push(b'/');
            target.extend_from_slice(lp);
            self.upper.set_redirect(pdir, name, &target)?;
        }
        Ok(st)
    }

    fn upper_stat(&self, pctx: &NodeCtx, name: &[u8]) -> io::Result<rustix::fs::Stat> {
        let pdir = self.upper.open_dir(&pctx.path)?;
        self.upper
            .stat_at(pdir.as_fd(), name)?
            .ok_or_else(|| errno(libc::ENOENT))
    }
}

/// Reject names the kernel should never send, defensively.
fn check_name(name: &[u8]) -> io::Result<()> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err(errno(libc::EINVAL));
    }
    if name.len() > 255 {
        return Err(errno(libc::ENAMETOOLONG));
    }
    Ok(())
}
