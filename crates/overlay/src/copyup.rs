//! Copy-up: materialise a lower object in the upper directory before it is changed.
//!
//! The copy is built in the work directory (data streamed in bounded chunks, holes kept
//! sparse, then xattrs, origin marker, owner, mode, times) and renamed into place in one step,
//! so a crash never leaves a half-copied file visible. The parent directory's times are
//! restored afterwards: copy-up is not a user-visible modification of the parent.
//! `copy_up_node`/`copy_up_at` run with the namespace lock held exclusively.
//!
//! Copy-up outside the namespace lock. Building the copy of a regular file (its data, and
//! the `fsync`) is the expensive part, so the FUSE handlers that copy a file up (open for
//! writing, setattr, setxattr, link, rename) first call [`Overlay::prepare_copy_up`] holding
//! no namespace lock: it builds the complete copy in the work directory and registers it in
//! `Overlay::copies` under the file's stable inode number. They then take the lock
//! exclusively and run the copy-up as before, which re-checks everything from the current
//! state (the node may have been copied up, renamed or removed meanwhile) and, where it would
//! build a copy of that lower file, takes the registered one instead ([`Overlay::take_prepared`]).
//! A copy nobody took is deleted when the handler's [`PreparedCopy`] guard drops. A prepared
//! copy can never be stale: it depends only on the lower object (immutable), not on the name
//! it will be published under.
//!
//! Invariants:
//! - At most one copy of a lower file is built or waiting at a time (`copies` holds one
//!   entry per inode); a second preparer waits for the first, then lets it be used.
//! - Whoever marks an entry `Building` holds no namespace lock until it leaves that state
//!   (`Ready`, or removed on failure). So a copy-up holding the lock exclusively may wait for
//!   a `Building` entry to finish: the builder never waits for the lock meanwhile. Waiting
//!   for a `Building` entry is the only blocking on `copies`, and `copies` itself is only held
//!   for map updates (never across I/O).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use squashbox_format::writeback::start_writeback;
use squashbox_format::DataExtent;

use crate::core::{errno, LayerLinks, NodeCtx, Overlay};
use crate::lower::{Kind, LowerFile, LowerObj, LowerStat};
use crate::node::{join, NodeState};
use crate::sys::{self, os};

/// Size of one data chunk copied at a time.
const CHUNK: usize = 1 << 20;
/// Granularity of the holes a copy-up keeps (a SquashFS block of the default size).
const HOLE_GRAIN: usize = 128 * 1024;
/// Chunks the reader thread of a large copy-up may be ahead of the writer.
const READ_AHEAD: usize = 4;
/// Bytes copied between two writeback requests during a copy-up.
const WRITEBACK_CHUNK: u64 = 8 << 20;

/// A copy of a lower regular file made ahead of its copy-up (see the module documentation).
pub(crate) enum PendingCopy {
    /// Being built by a thread that holds no namespace lock.
    Building,
    /// Complete in the work directory under `tmp`, waiting to be published.
    Ready {
        tmp: Vec<u8>,
        layer: usize,
        number: u64,
    },
}

/// Held by a handler from [`Overlay::prepare_copy_up`] until after its copy-up: deletes the
/// prepared copy if no copy-up took it (the node was copied up, or removed, meanwhile).
pub(crate) struct PreparedCopy<'a> {
    ov: &'a Overlay,
    ino: u64,
    tmp: Vec<u8>,
}

impl Drop for PreparedCopy<'_> {
    fn drop(&mut self) {
        let mut copies = self.ov.copies.lock();
        let unused = matches!(
            copies.get(&self.ino),
            Some(PendingCopy::Ready { tmp, .. }) if *tmp == self.tmp
        );
        if unused {
            copies.remove(&self.ino);
            drop(copies);
            log::debug!("copy-up of {:#x}: prepared copy not needed", self.ino);
            let _ = self.ov.upper.remove_tree(self.ov.upper.work(), &self.tmp);
        }
    }
}

/// Marks `copies[ino]` as `Building` while alive; dropping it without `finish` (an error, a
/// panic) removes the entry and wakes the waiters.
struct Building<'a> {
    ov: &'a Overlay,
    ino: u64,
}

impl Building<'_> {
    fn finish(self, ready: PendingCopy) {
        self.ov.copies.lock().insert(self.ino, ready);
        self.ov.copies_done.notify_all();
        std::mem::forget(self);
    }
}

impl Drop for Building<'_> {
    fn drop(&mut self) {
        self.ov.copies.lock().remove(&self.ino);
        self.ov.copies_done.notify_all();
    }
}

impl Overlay {
    /// Build the copy of node `id` ahead of its copy-up, if it is a lower regular file that a
    /// copy-up would copy. Must be called holding no namespace lock (see the module
    /// documentation); the returned guard must live until after the copy-up. Returns `None`
    /// when there is nothing to prepare, or when another thread prepared (or is preparing, in
    /// which case this waits for it) the same file.
    pub(crate) fn prepare_copy_up(&self, id: u64) -> io::Result<Option<PreparedCopy<'_>>> {
        // Failures here are left to the copy-up under the lock, which reports them.
        let Ok(ctx) = self.ctx(id) else {
            return Ok(None);
        };
        let state = &ctx.state;
        if state.upper || state.kind != Kind::File {
            return Ok(None);
        }
        let Some((layer_idx, obj)) = state.lowers.first() else {
            return Ok(None);
        };
        let layer = &self.layers[*layer_idx];
        let st = layer.stat(obj)?;
        if st.nlink > 1 && self.upper.index_get(state.ino).is_some() {
            // Another name of it was copied up: the copy-up only links the index entry.
            return Ok(None);
        }
        let ino = state.ino;
        {
            let mut copies = self.copies.lock();
            let mut waited = false;
            loop {
                match copies.get(&ino) {
                    None if !waited => break,
                    // Prepared by another thread (published by now, or about to be).
                    None | Some(PendingCopy::Ready { .. }) => return Ok(None),
                    Some(PendingCopy::Building) => {
                        self.copies_done.wait(&mut copies);
                        waited = true;
                    }
                }
            }
            copies.insert(ino, PendingCopy::Building);
        }
        let building = Building { ov: self, ino };
        log::debug!(
            "copy-up of {ino:#x} ({} bytes): building the copy outside the namespace lock",
            st.size
        );
        let tmp = self.build_copy(*layer_idx, obj, &st, ino)?;
        building.finish(PendingCopy::Ready {
            tmp: tmp.clone(),
            layer: *layer_idx,
            number: st.number,
        });
        Ok(Some(PreparedCopy { ov: self, ino, tmp }))
    }

    /// The copy of lower file `number` of layer `layer` (stable number `ino`) prepared ahead,
    /// if there is one; waits for one being built. Called during a copy-up (namespace lock
    /// held exclusively: safe, builders never wait for it).
    fn take_prepared(&self, ino: u64, layer: usize, number: u64) -> Option<Vec<u8>> {
        let mut copies = self.copies.lock();
        loop {
            match copies.get(&ino) {
                Some(PendingCopy::Building) => self.copies_done.wait(&mut copies),
                Some(PendingCopy::Ready {
                    layer: l,
                    number: n,
                    ..
                }) if *l == layer && *n == number => {
                    let Some(PendingCopy::Ready { tmp, .. }) = copies.remove(&ino) else {
                        unreachable!("matched just above");
                    };
                    return Some(tmp);
                }
                _ => return None,
            }
        }
    }

    /// A complete copy of lower object `obj` in the work directory: the one prepared ahead
    /// for a regular file, else built now.
    fn copy_for(
        &self,
        layer_idx: usize,
        obj: &LowerObj,
        st: &LowerStat,
        ino: u64,
    ) -> io::Result<Vec<u8>> {
        if st.kind == Kind::File {
            if let Some(tmp) = self.take_prepared(ino, layer_idx, st.number) {
                return Ok(tmp);
            }
        }
        self.build_copy(layer_idx, obj, st, ino)
    }

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
    ///
    /// A non-directory hard-linked inside its image (`nlink > 1`) is copied once into the
    /// index (`work/squashbox-index/<ino>`) and linked from there; every other name of the
    /// same lower inode that the merged tree shows is then linked to it too, so the names stay
    /// one file. Names the scan cannot reach are linked when they are next looked up.
    pub(crate) fn copy_up_at(
        &self,
        pdir: BorrowedFd<'_>,
        name: &[u8],
        state: &NodeState,
    ) -> io::Result<()> {
        let (layer_idx, obj) = state.lowers.first().ok_or_else(|| errno(libc::EIO))?;
        let layer = &self.layers[*layer_idx];
        let st = layer.stat(obj)?;
        let linked = st.kind != Kind::Dir && st.nlink > 1;
        let parent_times = rustix::fs::statat(pdir, ".", AtFlags::empty())?;
        if linked {
            // Two rounds at most: an index entry found missing when linking (the work
            // directory was tampered with) is forgotten and built again once.
            for round in 0..2 {
                if self.upper.index_get(state.ino).is_none() {
                    let tmp = self.copy_for(*layer_idx, obj, &st, state.ino)?;
                    if let Err(e) = self.upper.index_add(&tmp, state.ino, self.cfg.sync_copy_up) {
                        let _ = self.upper.remove_tree(self.upper.work(), &tmp);
                        return Err(e);
                    }
                }
                match self.upper.index_link(state.ino, pdir, name) {
                    Ok(()) => break,
                    Err(e)
                        if round == 0
                            && e.raw_os_error() == Some(libc::ENOENT)
                            && self.upper.index_get(state.ino).is_none() => {}
                    Err(e) => return Err(e),
                }
            }
        } else {
            let tmp = self.copy_for(*layer_idx, obj, &st, state.ino)?;
            if let Err(e) = rustix::fs::renameat_with(
                self.upper.work(),
                os(&tmp),
                pdir,
                os(name),
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                let _ = self.upper.remove_tree(self.upper.work(), &tmp);
                return Err(e.into());
            }
        }
        restore_times(pdir, &parent_times)?;
        // With synchronous copy-ups, make the new name durable too when it carries data.
        // Directory (and other data-less) copy-ups are not synced one by one: losing one in a
        // crash only shows the lower object again, and a later sync of a directory below
        // commits them (ext4/xfs journal metadata in order). Background-synced copy-ups rely
        // on that ordering too (see `crate::unsynced`); volatile mode syncs nothing.
        if st.kind == Kind::File && self.cfg.sync_copy_up {
            let started = Instant::now();
            crate::upper::sync_dir(pdir)?;
            log::debug!("copy-up: directory sync {:?}", started.elapsed());
        }
        if linked {
            self.link_up_other_names(*layer_idx, st.number, state.ino)?;
        }
        Ok(())
    }

    /// Build a complete copy of lower object `obj` in the work directory and return its
    /// temporary name. A regular file's data and metadata are synced before this returns
    /// with `sync_copy_up`, so the rename that publishes it can never expose an empty or
    /// partial file after a crash; by default they are journaled and synced in the
    /// background instead (`crate::unsynced` repairs them after a crash); volatile mode
    /// neither syncs nor starts writeback early.
    fn build_copy(
        &self,
        layer_idx: usize,
        obj: &LowerObj,
        st: &LowerStat,
        ino: u64,
    ) -> io::Result<Vec<u8>> {
        let layer = &self.layers[layer_idx];
        let work = self.upper.work();
        let tmp = self.upper.temp_name();
        let result = (|| -> io::Result<()> {
            let mut data_fd = None;
            match st.kind {
                Kind::Dir => {
                    rustix::fs::mkdirat(work, os(&tmp), Mode::from_raw_mode(0o700))?;
                }
                Kind::File => {
                    let started = Instant::now();
                    let fd = rustix::fs::openat(
                        work,
                        os(&tmp),
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )?;
                    let src = layer.open_file(obj)?;
                    // Early writeback only helps a caller that waits for the fsync; otherwise
                    // it makes the disk write while the copy still reads (often the same disk).
                    copy_data(&src, fd.as_fd(), st.size, self.cfg.sync_copy_up)?;
                    rustix::fs::ftruncate(&fd, st.size)?;
                    data_fd = Some((fd, started));
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
            self.upper.set_origin(work, &tmp, ino)?;
            apply_owner_mode_times(work, &tmp, st, self.cfg.running_as_root)?;
            if let Some((fd, started)) = data_fd {
                // Data, size, xattrs, owner, mode and times reach the disk before the copy
                // gets a visible name, or are journaled as not there yet.
                let copied = started.elapsed();
                if let Some(syncer) = &self.syncer {
                    let lower = crate::unsynced::LowerId {
                        layer: layer_idx,
                        number: st.number,
                        size: st.size,
                    };
                    syncer.defer(fd, lower)?;
                    log::debug!(
                        "copy-up of {} bytes: copy {copied:?} (synced in the background)",
                        st.size
                    );
                } else if !self.cfg.sync_copy_up {
                    log::debug!(
                        "copy-up of {} bytes: copy {copied:?} (volatile: no fsync)",
                        st.size
                    );
                } else {
                    rustix::fs::fsync(&fd)?;
                    log::debug!(
                        "copy-up of {} bytes: copy {:?}, fsync {:?}",
                        st.size,
                        copied,
                        started.elapsed() - copied
                    );
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = self.upper.remove_tree(work, &tmp);
            return Err(e);
        }
        Ok(tmp)
    }
}

impl Overlay {
    /// After the copy-up of lower inode `number` of layer `layer` (stable number `ino`) into
    /// the index: link every other name of it that the merged tree shows, so the upper
    /// directory alone holds them as one file (also for the kernel's overlayfs). Candidates are
    /// the names the kernel knows (node aliases) and the inode's paths in the layer; each is
    /// resolved through the merged view, which links it if, and only if, it still shows that
    /// lower inode (not whited out, shadowed or moved away). A name below a renamed directory
    /// is not at its layer path: it is linked when looked up.
    pub(crate) fn link_up_other_names(
        &self,
        layer: usize,
        number: u64,
        ino: u64,
    ) -> io::Result<()> {
        let mut paths = self.hardlink_paths(layer, number)?;
        {
            let t = self.table.lock();
            if let Some(n) = t.get(ino) {
                for (p, name) in &n.aliases {
                    if let Some(pp) = t.path(*p) {
                        paths.push(join(&pp, name));
                    }
                }
            }
        }
        paths.sort();
        paths.dedup();
        for p in paths {
            match self.walk_path(&p, false) {
                Ok(_) => {}
                // Gone or no longer reachable that way: nothing to link.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Paths (from the layer root) of every name of inode `number` in layer `layer`.
    fn hardlink_paths(&self, layer: usize, number: u64) -> io::Result<Vec<Vec<u8>>> {
        Ok(self
            .layer_links(layer)?
            .get(&number)
            .cloned()
            .unwrap_or_default())
    }

    /// The hard-linked names of layer `layer`, scanned on first need.
    fn layer_links(&self, layer: usize) -> io::Result<Arc<LayerLinks>> {
        let cached = self.hardlinks.lock().get(&layer).cloned();
        Ok(match cached {
            Some(m) => m,
            None => {
                let m = Arc::new(self.scan_hardlinks(layer)?);
                self.hardlinks.lock().insert(layer, m.clone());
                m
            }
        })
    }

    /// Free the index entry of copied-up image hard link `ino` once nothing uses it: no name
    /// in the upper directory links it (its link count is 1), and each of the image inode's
    /// names is definitely gone from the merged view. A name counts as gone when every
    /// directory above it is still merged from the layer at its own path (not renamed away)
    /// and the name itself no longer shows this inode (deleted, shadowed, hidden). Otherwise
    /// (a name may live on below a directory renamed through the mount, to be linked from the
    /// index when it is looked up) the entry is kept. Runs under the exclusive namespace lock
    /// (or before the mount serves requests); resolving a name may link it from the index,
    /// which then keeps the entry too.
    pub(crate) fn release_index_if_unused(&self, ino: u64) -> io::Result<()> {
        if self.upper.index_get(ino).is_none() || self.upper.index_unlinked(ino)? != Some(true) {
            return Ok(());
        }
        let Some((layer, _)) = crate::core::split_lower_ino(ino) else {
            return Ok(());
        };
        if layer >= self.layers.len() {
            return Ok(());
        }
        // Directory layers key names by their full st_ino, the stable number keeps 32 bits.
        let mut paths = Vec::new();
        for (number, p) in self.layer_links(layer)?.iter() {
            if crate::core::lower_ino(layer, *number) == ino {
                paths.extend(p.iter().cloned());
            }
        }
        for p in &paths {
            if !self.name_gone(layer, p, ino)? {
                log::debug!(
                    "index entry {ino:#x} kept: {:?} may still show it",
                    String::from_utf8_lossy(p)
                );
                return Ok(());
            }
        }
        if self.upper.index_unlinked(ino)? != Some(true) {
            return Ok(());
        }
        self.upper.index_remove(ino)?;
        log::debug!("index entry {ino:#x} freed: no name shows it any more");
        Ok(())
    }

    /// Whether layer path `path` of lower inode `ino` (layer `layer`) is definitely not shown
    /// by the merged tree, there or anywhere else (see `release_index_if_unused`).
    fn name_gone(&self, layer: usize, path: &[u8], ino: u64) -> io::Result<bool> {
        let comps: Vec<&[u8]> = path
            .split(|b| *b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let Some((_, dirs)) = comps.split_last() else {
            return Ok(false);
        };
        let mut at: Vec<u8> = Vec::new();
        for k in 0..=dirs.len() {
            if k > 0 {
                at = join(&at, dirs[k - 1]);
            }
            let dir = match self.walk_path(&at, false) {
                Ok(d) => d,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => None,
                Err(e) => return Err(e),
            };
            let Some(dir) = dir else {
                // Deleted, or renamed away (its lower names live on elsewhere): unknown.
                return Ok(false);
            };
            if dir.state.kind != Kind::Dir || dir.state.lower_path.as_deref() != Some(&at[..]) {
                return Ok(false);
            }
            if !dir.state.lowers.iter().any(|(i, _)| *i == layer) {
                // The layer's directory is hidden here (opaque above it): so is the name.
                return Ok(true);
            }
        }
        match self.walk_path(path, false) {
            Ok(Some(ctx)) => Ok(ctx.state.ino != ino),
            Ok(None) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// At mount: free the index entries that nothing uses (names deleted while the index was
    /// not maintained, e.g. by the kernel's overlayfs, or an interrupted cleanup).
    pub(crate) fn clean_index(&self) -> io::Result<()> {
        for ino in self.upper.index_entries() {
            self.release_index_if_unused(ino)?;
        }
        Ok(())
    }

    /// Walk a whole layer once and record the paths of its hard-linked non-directories. Runs
    /// at the first copy-up of a hard-linked file (under the exclusive namespace lock); memory
    /// is one path per hard-linked name plus the directories still to visit.
    fn scan_hardlinks(&self, layer: usize) -> io::Result<LayerLinks> {
        let started = Instant::now();
        let l = &self.layers[layer];
        let mut out = LayerLinks::new();
        let mut stack: Vec<(LowerObj, Vec<u8>)> = vec![(l.root()?, Vec::new())];
        let mut entries = 0u64;
        while let Some((dir, path)) = stack.pop() {
            let mut subdirs = Vec::new();
            l.for_each_entry(&dir, &mut |e| {
                entries += 1;
                if e.kind == Kind::Dir {
                    subdirs.push(e.name);
                } else if e.nlink > 1 {
                    out.entry(e.number).or_default().push(join(&path, &e.name));
                }
                Ok(())
            })?;
            for name in subdirs {
                if let Some(obj) = l.lookup(&dir, &name)? {
                    stack.push((obj, join(&path, &name)));
                }
            }
        }
        log::debug!(
            "layer {layer}: {entries} entries scanned for hard links in {:?} ({} linked inodes)",
            started.elapsed(),
            out.len()
        );
        Ok(out)
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

/// Copy `size` bytes of lower file `src` into the new upper file `dst`, leaving all-zero
/// chunks as holes (the caller sets the final size). Bytes an image stores verbatim are copied
/// inside the kernel from the image file (`sys::kernel_copy`: no trip through this process,
/// and the kernel reads ahead); sparse blocks are skipped; the rest is decoded here (see
/// [`copy_range`]). With `writeback`, writeback is started as the copy goes, so the caller's
/// fsync waits only for the last few MiB.
pub(crate) fn copy_data(
    src: &LowerFile,
    dst: BorrowedFd<'_>,
    size: u64,
    writeback: bool,
) -> io::Result<()> {
    let mut writer = ChunkWriter {
        fd: dst,
        writeback_from: 0,
        writeback,
    };
    let LowerFile::Image(archive, inode) = src else {
        return copy_range(src, &mut writer, 0, size);
    };
    let Some(image) = archive.source_fd() else {
        return copy_range(src, &mut writer, 0, size);
    };
    // Cleared when neither copy_file_range nor sendfile works between these two files: the
    // rest is then copied through this process.
    let mut in_kernel = true;
    let mut pos = 0u64;
    while pos < size {
        let extent = archive
            .data_extent(inode, pos, size - pos)
            .map_err(crate::lower::image_err)?;
        let len = extent.len();
        if len == 0 {
            return Err(errno(libc::EIO));
        }
        match extent {
            DataExtent::Stored { image_offset, len } if in_kernel => {
                // In pieces, so writeback can start behind the copy.
                let mut done = 0;
                while done < len {
                    let piece = (len - done).min(WRITEBACK_CHUNK);
                    match sys::kernel_copy(image, image_offset + done, dst, pos + done, piece) {
                        Ok(()) => {}
                        Err(e)
                            if matches!(
                                e.raw_os_error(),
                                Some(libc::EINVAL | libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP)
                            ) =>
                        {
                            log::debug!("copy-up: no in-kernel copy from the image ({e})");
                            in_kernel = false;
                            copy_range(src, &mut writer, pos + done, pos + len)?;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                    done += piece;
                    writer.written_up_to(pos + done);
                }
            }
            DataExtent::Sparse { .. } => {}
            DataExtent::Stored { .. } | DataExtent::Encoded { .. } => {
                copy_range(src, &mut writer, pos, pos + len)?
            }
        }
        pos += len;
    }
    Ok(())
}

/// Copy bytes `start..end` of lower file `src` through `writer`, reading and decoding here.
/// Ranges of more than two chunks are read by a helper thread while this one writes, so
/// decompressing or reading the lower layer (often cold on disk) overlaps with writing the
/// copy. Memory stays bounded at `READ_AHEAD + 1` chunks.
fn copy_range(
    src: &LowerFile,
    writer: &mut ChunkWriter<'_>,
    start: u64,
    end: u64,
) -> io::Result<()> {
    if end - start <= 2 * CHUNK as u64 {
        let mut buf = vec![0u8; CHUNK.min((end - start) as usize)];
        let mut off = start;
        while off < end {
            let want = CHUNK.min((end - off) as usize);
            let n = src.read_at(off, &mut buf[..want])?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n], off)?;
            off += n as u64;
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (full_tx, full_rx) =
            mpsc::sync_channel::<io::Result<(u64, usize, Vec<u8>)>>(READ_AHEAD);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..=READ_AHEAD {
            let _ = empty_tx.send(vec![0u8; CHUNK]);
        }
        std::thread::Builder::new()
            .name("squashbox-copyup".into())
            .spawn_scoped(scope, move || {
                let mut off = start;
                while off < end {
                    // The writer hung up (it failed): stop reading.
                    let Ok(mut buf) = empty_rx.recv() else { return };
                    let want = CHUNK.min((end - off) as usize);
                    let n = match src.read_at(off, &mut buf[..want]) {
                        Ok(0) => return,
                        Ok(n) => n,
                        Err(e) => {
                            let _ = full_tx.send(Err(e));
                            return;
                        }
                    };
                    if full_tx.send(Ok((off, n, buf))).is_err() {
                        return;
                    }
                    off += n as u64;
                }
            })?;
        // Ends when the reader is done (it drops its sender) or on the first error (dropping
        // the receivers stops the reader at its next chunk).
        for chunk in full_rx {
            let (off, n, buf) = chunk?;
            writer.write(&buf[..n], off)?;
            let _ = empty_tx.send(buf);
        }
        Ok(())
    })
}

/// Writes copy-up chunks, skipping zeros and starting writeback as it goes.
struct ChunkWriter<'fd> {
    fd: BorrowedFd<'fd>,
    writeback_from: u64,
    /// Start writeback as the copy goes (only for synchronous copy-ups: otherwise nothing
    /// waits for the disk).
    writeback: bool,
}

impl ChunkWriter<'_> {
    fn write(&mut self, data: &[u8], off: u64) -> io::Result<()> {
        // Keep holes: all-zero pieces are skipped (the caller sets the size at the end) and
        // the runs between them written with one call each.
        let mut run: Option<usize> = None;
        for (i, piece) in data.chunks(HOLE_GRAIN).enumerate() {
            let start = i * HOLE_GRAIN;
            match (piece.iter().any(|b| *b != 0), run) {
                (true, None) => run = Some(start),
                (false, Some(from)) => {
                    sys::pwrite_all(self.fd, &data[from..start], off + from as u64)?;
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(from) = run {
            sys::pwrite_all(self.fd, &data[from..], off + from as u64)?;
        }
        self.written_up_to(off + data.len() as u64);
        Ok(())
    }

    /// Note that the copy is complete up to `end`: with `writeback`, let the disk work while
    /// we copy, so the fsync waits only for the last few MiB instead of the whole file.
    fn written_up_to(&mut self, end: u64) {
        if self.writeback && end.saturating_sub(self.writeback_from) >= WRITEBACK_CHUNK {
            start_writeback(self.fd, self.writeback_from, end - self.writeback_from);
            self.writeback_from = end;
        }
    }
}
