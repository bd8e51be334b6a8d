//! The overlay engine: name resolution across layers, stable inode numbers and attributes.
//!
//! Locking: `ns` is a namespace lock. Operations that change the upper directory's namespace
//! (create, unlink, rename, copy-up) hold it exclusively; lookups, attribute reads and
//! directory snapshots hold it shared. Data I/O on open handles takes no namespace lock. The
//! node table has its own short-lived mutex. The data of a regular file's copy-up is built
//! before the exclusive lock is taken (`copies`, see `copyup.rs`).

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, INodeNo};
use parking_lot::{Mutex, RwLock};
use rustix::fs::Stat;

use crate::handle::Handle;
use crate::lower::{Kind, Layer, LowerObj, LowerStat};
use crate::node::{join, LowerDirs, NodeState, NodeTable, ROOT};
use crate::upper::{is_whiteout, Upper};

/// First `st_ino` of the range used for objects that exist only in the upper directory.
const UPPER_INO_BIT: u64 = 1 << 63;

/// Stable inode number of an object found in lower layer `layer` with layer-local number `n`.
pub(crate) fn lower_ino(layer: usize, n: u64) -> u64 {
    ((layer as u64 + 1) << 32) | (n & 0xFFFF_FFFF)
}

/// The layer and the low 32 bits of the layer-local number that [`lower_ino`] made `ino`
/// from; `None` for numbers it cannot have made (upper-only objects among them).
pub(crate) fn split_lower_ino(ino: u64) -> Option<(usize, u64)> {
    let layer = (ino >> 32).checked_sub(1)?;
    (ino & UPPER_INO_BIT == 0).then_some((layer as usize, ino & 0xFFFF_FFFF))
}

/// Stable inode number of a lower entry: the layer and the image inode number, for every
/// name of it. Names hard-linked inside an image therefore share one number, one FUSE node
/// (fuser uses `st_ino` as the node id) and, once copied up, one upper inode (see
/// `copy_up_at`). The extra arguments are what a listing has at hand; they do not change the
/// number.
pub(crate) fn lower_entry_ino(
    layer: usize,
    number: u64,
    _nlink: u32,
    _dir_lower_path: Option<&[u8]>,
    _name: &[u8],
) -> u64 {
    lower_ino(layer, number)
}

/// Stable inode number of an upper-only object.
pub(crate) fn upper_ino(st_ino: u64) -> u64 {
    UPPER_INO_BIT | (st_ino & !UPPER_INO_BIT)
}

pub(crate) fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// A snapshot of a node: its id, path relative to the root, and resolved state.
#[derive(Clone, Debug)]
pub(crate) struct NodeCtx {
    pub id: u64,
    pub parent: u64,
    pub name: Vec<u8>,
    pub path: Vec<u8>,
    pub state: NodeState,
}

/// What the lower layers hold under one name of a merged directory.
pub(crate) enum LowerLookup {
    /// Nothing.
    Absent,
    /// A whiteout in a lower layer hides everything below it.
    Whiteout,
    /// A non-directory (the topmost one wins).
    NonDir(usize, LowerObj, LowerStat),
    /// One or more directories to merge, topmost first, and the topmost one's metadata.
    Dirs(Vec<(usize, LowerObj)>, LowerStat),
}

impl LowerLookup {
    /// Something visible exists in the lower layers under this name.
    pub(crate) fn visible(&self) -> bool {
        matches!(self, LowerLookup::NonDir(..) | LowerLookup::Dirs(..))
    }
}

/// Options fixed at mount time that the engine consults.
pub(crate) struct EngineConfig {
    pub ttl: Duration,
    pub running_as_root: bool,
    /// Volatile mode: never sync the upper filesystem (see `crate::volatile`).
    pub volatile: bool,
    /// Sync each copy-up before publishing it (else it is synced in the background, see
    /// `crate::unsynced`; never in volatile mode).
    pub sync_copy_up: bool,
}

/// Shared state of one mounted overlay.
pub(crate) struct Overlay {
    pub layers: Vec<Layer>,
    pub upper: Upper,
    pub table: Mutex<NodeTable>,
    pub ns: RwLock<()>,
    pub handles: Mutex<HashMap<u64, Arc<Handle>>>,
    pub next_fh: AtomicU64,
    pub cfg: EngineConfig,
    /// Serialises linking index entries into the upper tree, which lookups do while holding
    /// the namespace lock only shared.
    pub linkup: Mutex<()>,
    /// Per lower layer, built on first need: image inode number -> every path (from the layer
    /// root) of a non-directory hard-linked inside the layer. Holds only hard-linked names.
    pub hardlinks: Mutex<HashMap<usize, Arc<LayerLinks>>>,
    /// Copies of lower regular files being built, or built and not yet published, outside
    /// the namespace lock, by stable inode number (see `copyup.rs`).
    pub copies: Mutex<HashMap<u64, crate::copyup::PendingCopy>>,
    /// Signalled whenever an entry of `copies` stops being `Building`.
    pub copies_done: parking_lot::Condvar,
    /// In volatile mode, the crash marker in the work directory; dropped (upper synced, then
    /// marker removed) when the overlay ends, after every request was answered.
    pub volatile_marker: Option<crate::volatile::Marker>,
    /// Unless copy-ups are synced at once (or never, volatile), the background syncer of
    /// copy-ups; dropping it syncs what is still queued.
    pub syncer: Option<crate::unsynced::Syncer>,
}

/// Paths of hard-linked non-directories of one layer, by layer inode number.
pub(crate) type LayerLinks = HashMap<u64, Vec<Vec<u8>>>;

impl Overlay {
    /// Build the engine and resolve the root.
    pub(crate) fn new(layers: Vec<Layer>, upper: Upper, cfg: EngineConfig) -> io::Result<Overlay> {
        let root_opaque = upper.is_opaque(upper.root(), b".")?;
        let mut lowers = Vec::new();
        if !root_opaque {
            for (i, l) in layers.iter().enumerate() {
                let r = l.root()?;
                let opaque = l.is_opaque(&r)?;
                lowers.push((i, r));
                if opaque {
                    break;
                }
            }
        }
        let ust = rustix::fs::fstat(upper.root())?;
        let ino = match lowers.first() {
            Some((i, o)) => lower_ino(*i, layers[*i].stat(o)?.number),
            None => upper_ino(ust.st_ino),
        };
        let root = NodeState {
            kind: Kind::Dir,
            upper: true,
            lowers,
            lower_path: Some(Vec::new()),
            ino,
        };
        Ok(Overlay {
            layers,
            upper,
            table: Mutex::new(NodeTable::new(root)),
            ns: RwLock::new(()),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            cfg,
            linkup: Mutex::new(()),
            hardlinks: Mutex::new(HashMap::new()),
            copies: Mutex::new(HashMap::new()),
            copies_done: parking_lot::Condvar::new(),
            volatile_marker: None,
            syncer: None,
        })
    }

    /// Snapshot node `id`. Fails with `ENOENT` for unknown or detached nodes.
    pub(crate) fn ctx(&self, id: u64) -> io::Result<NodeCtx> {
        let t = self.table.lock();
        let n = t.get(id).ok_or_else(|| errno(libc::ENOENT))?;
        let path = t.path(id).ok_or_else(|| errno(libc::ENOENT))?;
        let (parent, name) = t.alias(id).unwrap_or((ROOT, Vec::new()));
        Ok(NodeCtx {
            id,
            parent,
            name,
            path,
            state: n.state.clone(),
        })
    }

    /// The state of node `id` even if it is detached (for handles on unlinked files).
    pub(crate) fn state_of(&self, id: u64) -> Option<NodeState> {
        self.table.lock().get(id).map(|n| n.state.clone())
    }

    /// Look `name` up in every lower directory merged into `parent`.
    pub(crate) fn lookup_lowers(&self, parent: &NodeState, name: &[u8]) -> io::Result<LowerLookup> {
        let mut dirs: Vec<(usize, LowerObj)> = Vec::new();
        let mut first: Option<LowerStat> = None;
        for (i, dir) in &parent.lowers {
            let layer = &self.layers[*i];
            let Some(obj) = layer.lookup(dir, name)? else {
                continue;
            };
            let st = layer.stat(&obj)?;
            if st.is_whiteout() {
                if dirs.is_empty() {
                    return Ok(LowerLookup::Whiteout);
                }
                break;
            }
            if st.kind != Kind::Dir {
                if dirs.is_empty() {
                    return Ok(LowerLookup::NonDir(*i, obj, st));
                }
                break;
            }
            let opaque = layer.is_opaque(&obj)?;
            dirs.push((*i, obj));
            if first.is_none() {
                first = Some(st);
            }
            if opaque {
                break;
            }
        }
        match first {
            Some(st) => Ok(LowerLookup::Dirs(dirs, st)),
            None => Ok(LowerLookup::Absent),
        }
    }

    /// Lower directories found at absolute lower path `path` (a redirect target).
    fn lower_dirs_at_path(&self, path: &[u8]) -> io::Result<(LowerDirs, Option<LowerStat>)> {
        let mut dirs = Vec::new();
        let mut first = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let Some(obj) = layer.lookup_path(path)? else {
                continue;
            };
            let st = layer.stat(&obj)?;
            if st.kind != Kind::Dir {
                break;
            }
            let opaque = layer.is_opaque(&obj)?;
            dirs.push((i, obj));
            if first.is_none() {
                first = Some(st);
            }
            if opaque {
                break;
            }
        }
        Ok((dirs, first))
    }

    /// Resolve `name` inside directory `parent`: `Ok(None)` if it does not exist in the merged
    /// view (absent, or hidden by a whiteout).
    pub(crate) fn resolve_child(
        &self,
        parent: &NodeCtx,
        name: &[u8],
    ) -> io::Result<Option<NodeState>> {
        if parent.state.kind != Kind::Dir {
            return Err(errno(libc::ENOTDIR));
        }
        if name.len() > 255 {
            return Err(errno(libc::ENAMETOOLONG));
        }
        if parent.state.upper {
            let pdir = self.upper.open_dir(&parent.path)?;
            if let Some(st) = self.upper.stat_at(pdir.as_fd(), name)? {
                if is_whiteout(&st) {
                    return Ok(None);
                }
                let kind = Kind::from_mode(st.st_mode);
                let origin = self.upper.origin(pdir.as_fd(), name)?;
                if kind != Kind::Dir {
                    return Ok(Some(NodeState {
                        kind,
                        upper: true,
                        lowers: Vec::new(),
                        lower_path: None,
                        ino: origin.unwrap_or_else(|| upper_ino(st.st_ino)),
                    }));
                }
                let opaque = self.upper.is_opaque(pdir.as_fd(), name)?;
                let (lowers, lower_path, first) = if opaque {
                    (Vec::new(), None, None)
                } else {
                    match self.upper.redirect(pdir.as_fd(), name)? {
                        Some(r) if r.first() == Some(&b'/') => {
                            let rel = r[1..].to_vec();
                            let (d, f) = self.lower_dirs_at_path(&rel)?;
                            (d, Some(rel), f)
                        }
                        other => {
                            let lname = other.unwrap_or_else(|| name.to_vec());
                            match self.lookup_lowers(&parent.state, &lname)? {
                                LowerLookup::Dirs(d, f) => {
                                    let lp =
                                        parent.state.lower_path.as_deref().map(|p| join(p, &lname));
                                    (d, lp, Some(f))
                                }
                                _ => (Vec::new(), None, None),
                            }
                        }
                    }
                };
                let ino = match (origin, lowers.first(), first) {
                    (Some(o), _, _) => o,
                    (None, Some((i, _)), Some(f)) => lower_ino(*i, f.number),
                    _ => upper_ino(st.st_ino),
                };
                let lower_path = if lowers.is_empty() { None } else { lower_path };
                return Ok(Some(NodeState {
                    kind,
                    upper: true,
                    lowers,
                    lower_path,
                    ino,
                }));
            }
        }
        Ok(match self.lookup_lowers(&parent.state, name)? {
            LowerLookup::Absent | LowerLookup::Whiteout => None,
            LowerLookup::NonDir(i, obj, st) => {
                let ino = lower_ino(i, st.number);
                if st.nlink > 1 && self.upper.index_get(ino).is_some() {
                    // Another name of this lower inode was copied up: this name is the same
                    // file, so it becomes a link of the copy (not the stale lower data).
                    match self.link_up(parent, name, ino) {
                        Ok(state) => return Ok(Some(state)),
                        // The index entry disappeared: show the lower object again.
                        Err(e)
                            if e.raw_os_error() == Some(libc::ENOENT)
                                && self.upper.index_get(ino).is_none() => {}
                        Err(e) => return Err(e),
                    }
                }
                Some(NodeState {
                    kind: st.kind,
                    upper: false,
                    lowers: vec![(i, obj)],
                    lower_path: None,
                    ino,
                })
            }
            LowerLookup::Dirs(dirs, st) => Some(NodeState {
                kind: Kind::Dir,
                upper: false,
                ino: lower_ino(dirs[0].0, st.number),
                lowers: dirs,
                lower_path: parent.state.lower_path.as_deref().map(|p| join(p, name)),
            }),
        })
    }

    /// Link the index entry of `ino` (a copied-up lower hard link) as `name` in `parent`,
    /// copying the parent directories up first if needed; returns the new upper state. Runs
    /// under the namespace lock, possibly only shared (from a lookup): `linkup` serialises it.
    fn link_up(&self, parent: &NodeCtx, name: &[u8], ino: u64) -> io::Result<NodeState> {
        let _serial = self.linkup.lock();
        let pctx = if parent.state.upper {
            parent.clone()
        } else {
            self.ensure_upper_path(&parent.path)?
        };
        let pdir = self.upper.open_dir(&pctx.path)?;
        let times = rustix::fs::statat(pdir.as_fd(), ".", rustix::fs::AtFlags::empty())?;
        self.upper.index_link(ino, pdir.as_fd(), name)?;
        // Like a copy-up, linking a name that already showed is no change of the parent.
        crate::copyup::restore_times(pdir.as_fd(), &times)?;
        let st = self
            .upper
            .stat_at(pdir.as_fd(), name)?
            .ok_or_else(|| errno(libc::EIO))?;
        Ok(NodeState {
            kind: Kind::from_mode(st.st_mode),
            upper: true,
            lowers: Vec::new(),
            lower_path: None,
            ino,
        })
    }

    /// Resolve a path (from the root) of the merged tree without registering nodes; `None`
    /// if it does not exist. With `copy_up_dirs`, every directory along it (and the last
    /// component, which must then be a directory) is copied up, and nodes the table knows
    /// are updated.
    pub(crate) fn walk_path(&self, path: &[u8], copy_up_dirs: bool) -> io::Result<Option<NodeCtx>> {
        let mut ctx = self.ctx(ROOT)?;
        let mut known = Some(ROOT);
        for comp in path.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            if ctx.state.kind != Kind::Dir {
                return Ok(None);
            }
            let Some(mut state) = self.resolve_child(&ctx, comp)? else {
                return Ok(None);
            };
            let id = known.and_then(|p| self.table.lock().child(p, comp));
            if copy_up_dirs {
                if state.kind != Kind::Dir {
                    return Err(errno(libc::ENOTDIR));
                }
                if !state.upper {
                    let pdir = self.upper.open_dir(&ctx.path)?;
                    self.copy_up_at(pdir.as_fd(), comp, &state)?;
                    state.upper = true;
                    if let Some(id) = id {
                        let mut t = self.table.lock();
                        if let Some(n) = t.get_mut(id) {
                            if n.state.ino == state.ino {
                                n.state.upper = true;
                            }
                        }
                    }
                }
            }
            ctx = NodeCtx {
                id: id.unwrap_or(0),
                parent: ctx.id,
                name: comp.to_vec(),
                path: join(&ctx.path, comp),
                state,
            };
            known = id;
        }
        Ok(Some(ctx))
    }

    /// Copy the directory at merged path `path` and its ancestors up; returns its context.
    pub(crate) fn ensure_upper_path(&self, path: &[u8]) -> io::Result<NodeCtx> {
        self.walk_path(path, true)?
            .ok_or_else(|| errno(libc::ENOENT))
    }

    /// Attributes of a node as the mount shows them.
    pub(crate) fn attr(&self, ctx: &NodeCtx) -> io::Result<FileAttr> {
        if ctx.state.upper {
            let (parent, name) = crate::node::split_path(&ctx.path);
            let pdir = self.upper.open_dir(parent)?;
            let name: &[u8] = if ctx.id == ROOT { b"." } else { name };
            let st = self
                .upper
                .stat_at(pdir.as_fd(), name)?
                .ok_or_else(|| errno(libc::ENOENT))?;
            Ok(self.attr_from_upper(&ctx.state, &st))
        } else {
            self.attr_from_lower(&ctx.state)
        }
    }

    /// Attributes from an upper `stat`.
    pub(crate) fn attr_from_upper(&self, state: &NodeState, st: &Stat) -> FileAttr {
        let kind = Kind::from_mode(st.st_mode);
        // Like the kernel: a merged directory's link count is unknown, report 1.
        let mut nlink = if kind == Kind::Dir && !state.lowers.is_empty() {
            1
        } else {
            st.st_nlink as u32
        };
        // A copied-up image hard link: one of its links is the index entry, not a name.
        if kind != Kind::Dir && nlink > 1 && self.upper.index_holds(state.ino, st.st_ino) {
            nlink -= 1;
        }
        FileAttr {
            ino: INodeNo(state.ino),
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: time(st.st_atime, st.st_atime_nsec as u32),
            mtime: time(st.st_mtime, st.st_mtime_nsec as u32),
            ctime: time(st.st_ctime, st.st_ctime_nsec as u32),
            crtime: UNIX_EPOCH,
            kind: kind.to_fuse(),
            perm: (st.st_mode & 0o7777) as u16,
            nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Attributes of an object shown from its topmost lower layer.
    pub(crate) fn attr_from_lower(&self, state: &NodeState) -> io::Result<FileAttr> {
        let (i, obj) = state.lowers.first().ok_or_else(|| errno(libc::EIO))?;
        let st = self.layers[*i].stat(obj)?;
        Ok(FileAttr {
            ino: INodeNo(state.ino),
            size: st.size,
            blocks: st.blocks,
            atime: time(st.atime.0, st.atime.1),
            mtime: time(st.mtime.0, st.mtime.1),
            ctime: time(st.ctime.0, st.ctime.1),
            crtime: UNIX_EPOCH,
            kind: st.kind.to_fuse(),
            perm: st.perm as u16,
            nlink: st.nlink,
            uid: st.uid,
            gid: st.gid,
            rdev: st.rdev as u32,
            blksize: 4096,
            flags: 0,
        })
    }
}

/// Seconds + nanoseconds since the epoch (possibly negative) as `SystemTime`.
pub(crate) fn time(sec: i64, nsec: u32) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(u64::from(nsec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_ranges_are_disjoint() {
        assert_eq!(lower_ino(0, 5), (1 << 32) | 5);
        assert_eq!(lower_ino(2, 5), (3 << 32) | 5);
        assert!(upper_ino(5) >= UPPER_INO_BIT);
        assert!(lower_ino(usize::MAX >> 34, u64::MAX) < UPPER_INO_BIT);
    }

    #[test]
    fn negative_times() {
        assert_eq!(time(-1, 0), UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(time(1, 5), UNIX_EPOCH + Duration::new(1, 5));
    }
}
