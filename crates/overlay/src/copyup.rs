//! Copy-up: materialise a lower object in the upper directory before it is changed.
//!
//! The copy is built in the work directory (data streamed in bounded chunks, holes kept
//! sparse, then xattrs, origin marker, owner, mode, times) and renamed into place in one step,
//! so a crash never leaves a half-copied file visible. The parent directory's times are
//! restored afterwards: copy-up is not a user-visible modification of the parent.
//! Callers hold the namespace lock exclusively.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};

use crate::core::{errno, NodeCtx, Overlay};
use crate::lower::{Kind, LowerStat};
use crate::node::NodeState;
use crate::sys::{self, os};

/// Size of one data chunk copied at a time.
const CHUNK: usize = 128 * 1024;

impl Overlay {
    /// Make sure directory node `id` and all its ancestors exist in the upper directory;
    /// returns its refreshed context.
    pub(crate) fn ensure_upper_dir(&self, id: u64) -> io::Result<NodeCtx> {
        self.copy_up_node(id)
    }

    /// Copy node `id` (and its ancestors) up if needed; returns its refreshed context.
    pub(crate) fn copy_up_node(&self, id: u64) -> io::Result<NodeCtx> {
        loop {
            // Find the topmost ancestor-or-self that is not yet in the upper directory.
            let mut chain = Vec::new();
            {
                let t = self.table.lock();
                let mut cur = id;
                loop {
                    let n = t.get(cur).ok_or_else(|| errno(libc::ENOENT))?;
                    chain.push((cur, n.state.upper));
                    if cur == crate::node::ROOT {
                        break;
                    }
                    cur = t.alias(cur).ok_or_else(|| errno(libc::ENOENT))?.0;
                }
            }
            let Some(&(target, _)) = chain.iter().rev().find(|(_, up)| !up) else {
                return self.ctx(id);
            };
            let ctx = self.ctx(target)?;
            let parent = self.ctx(ctx.parent)?;
            let pdir = self.upper.open_dir(&parent.path)?;
            let present = matches!(
                self.upper.stat_at(pdir.as_fd(), &ctx.name)?,
                Some(st) if !crate::upper::is_whiteout(&st)
            );
            // An object already present means an earlier operation copied it up but failed
            // before updating the table: adopt it.
            if !present {
                self.copy_up_at(pdir.as_fd(), &ctx.name, &ctx.state)?;
            }
            let mut t = self.table.lock();
            if let Some(n) = t.get_mut(target) {
                n.state.upper = true;
                if n.state.kind != Kind::Dir {
                    n.state.lowers.clear();
                }
            }
        }
    }

    /// Copy the lower object described by `state` to `name` inside the upper directory `pdir`.
    pub(crate) fn copy_up_at(
        &self,
        pdir: BorrowedFd<'_>,
        name: &[u8],
        state: &NodeState,
    ) -> io::Result<()> {
        let (layer_idx, obj) = state.lowers.first().ok_or_else(|| errno(libc::EIO))?;
        let layer = &self.layers[*layer_idx];
        let st = layer.stat(obj)?;
        let work = self.upper.work();
        let tmp = self.upper.temp_name();
        let result = (|| -> io::Result<()> {
            match st.kind {
                Kind::Dir => {
                    rustix::fs::mkdirat(work, os(&tmp), Mode::from_raw_mode(0o700))?;
                }
                Kind::File => {
                    let fd = rustix::fs::openat(
                        work,
                        os(&tmp),
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )?;
                    let src = layer.open_file(obj)?;
                    let mut buf = vec![0u8; CHUNK];
                    let mut off = 0u64;
                    while off < st.size {
                        let want = CHUNK.min((st.size - off) as usize);
                        let n = src.read_at(off, &mut buf[..want])?;
                        if n == 0 {
                            break;
                        }
                        // Keep holes: an all-zero chunk is skipped and the size set at the end.
                        if buf[..n].iter().any(|b| *b != 0) {
                            sys::pwrite_all(fd.as_fd(), &buf[..n], off)?;
                        }
                        off += n as u64;
                    }
                    rustix::fs::ftruncate(&fd, st.size)?;
                }
                Kind::Symlink => {
                    let target = layer.read_link(obj)?;
                    rustix::fs::symlinkat(os(&target), work, os(&tmp))?;
                }
                Kind::Char | Kind::Block | Kind::Fifo | Kind::Socket => {
                    let ft = match st.kind {
                        Kind::Char => FileType::CharacterDevice,
                        Kind::Block => FileType::BlockDevice,
                        Kind::Fifo => FileType::Fifo,
                        _ => FileType::Socket,
                    };
                    rustix::fs::mknodat(work, os(&tmp), ft, Mode::from_raw_mode(0o600), st.rdev)?;
                }
            }
            for (key, value) in layer.xattrs(obj)? {
                if self.upper.is_private_xattr(&key) {
                    continue;
                }
                if let Err(e) = sys::set_xattr(work, &tmp, os(&key), &value, XattrFlags::empty()) {
                    if e.raw_os_error() == Some(libc::ENOTSUP) {
                        log::warn!(
                            "copy-up: xattr {} not supported by upper fs",
                            String::from_utf8_lossy(&key)
                        );
                        continue;
                    }
                    return Err(e);
                }
            }
            self.upper.set_origin(work, &tmp, state.ino)?;
            apply_owner_mode_times(work, &tmp, &st, self.cfg.running_as_root)?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = self.upper.remove_tree(work, &tmp);
            return Err(e);
        }
        let parent_times = rustix::fs::statat(pdir, ".", AtFlags::empty())?;
        if let Err(e) = rustix::fs::renameat_with(
            work,
            os(&tmp),
            pdir,
            os(name),
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            let _ = self.upper.remove_tree(work, &tmp);
            return Err(e.into());
        }
        restore_times(pdir, &parent_times)?;
        Ok(())
    }
}

/// Set owner, permissions and times of `name` in `dir` from a lower stat.
fn apply_owner_mode_times(
    dir: BorrowedFd<'_>,
    name: &[u8],
    st: &LowerStat,
    as_root: bool,
) -> io::Result<()> {
    if as_root {
        rustix::fs::chownat(
            dir,
            os(name),
            Some(rustix::fs::Uid::from_raw(st.uid)),
            Some(rustix::fs::Gid::from_raw(st.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    if st.kind != Kind::Symlink {
        // After chown: chown clears set-id bits.
        rustix::fs::chmodat(
            dir,
            os(name),
            Mode::from_raw_mode(st.perm),
            AtFlags::empty(),
        )?;
    }
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: st.atime.0,
            tv_nsec: i64::from(st.atime.1),
        },
        last_modification: Timespec {
            tv_sec: st.mtime.0,
            tv_nsec: i64::from(st.mtime.1),
        },
    };
    rustix::fs::utimensat(dir, os(name), &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Put back a directory's access and modification times after an internal change.
pub(crate) fn restore_times(dir: BorrowedFd<'_>, st: &rustix::fs::Stat) -> io::Result<()> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as i64,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as i64,
        },
    };
    rustix::fs::utimensat(dir, ".", &times, AtFlags::empty())?;
    Ok(())
}
