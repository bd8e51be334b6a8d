//! Merged directory listings.
//!
//! The upper directory is listed first (whiteouts recorded, not shown), then each merged lower
//! directory from the top down; a name already seen or whited out is skipped, and lower
//! whiteouts hide the same name further down. Opaque directories have no lowers to merge.
//!
//! `opendir` takes one snapshot of the merged listing per handle, so offsets stay stable across
//! `readdir` calls while the directory changes. The snapshot costs one small record per entry.
//!
//! `readdirplus` answers each entry with its attributes, which saves the kernel one lookup
//! round trip per entry (`ls -l`, `find`, `du`). Entries are resolved per reply page, never
//! for the whole directory at once. A lower non-directory that nothing in the upper directory
//! shadows is built straight from the inode reference recorded in the snapshot (lower layers
//! never change), instead of a by-name lookup in the image directory.
//!
//! Cost per entry is constant: the snapshot reads only the image directory listing (an
//! entry's inode is decoded once, when `readdirplus` resolves it; whether it is hard-linked
//! is checked then), and names are remembered to hide them in lower layers only when there is
//! a lower layer below.

use std::collections::HashSet;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, BorrowedFd};

use squashbox_format::{DirEntry, InodeRef};

use crate::core::{lower_entry_ino, upper_ino, NodeCtx, Overlay};
use crate::lower::{Kind, Layer, LowerEntry, LowerObj};
use crate::node::NodeState;
use crate::sys;
use crate::upper::is_whiteout;

/// One entry of a merged listing, as `walk_merged` reports it.
#[derive(Clone, Debug)]
pub(crate) struct DirItem {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub ino: u64,
    /// Where a lower non-directory entry came from, so `readdirplus` can build its node
    /// without looking the name up again.
    pub src: Option<LowerSrc>,
}

/// The listing an `opendir` handle serves: entries in order, their names packed in one buffer
/// (no allocation per entry; ~40 bytes per entry plus the name).
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    entries: Vec<SnapEntry>,
    names: Vec<u8>,
}

/// One snapshot entry; its name is `names[previous entry's name_end..name_end]`.
#[derive(Clone, Copy, Debug)]
struct SnapEntry {
    name_end: usize,
    kind: Kind,
    ino: u64,
    src: Option<LowerSrc>,
}

/// A snapshot entry as the FUSE handlers use it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Listed<'a> {
    pub name: &'a [u8],
    pub kind: Kind,
    pub ino: u64,
    /// See [`DirItem::src`].
    pub src: Option<LowerSrc>,
}

impl Snapshot {
    fn push(&mut self, item: DirItem) {
        self.names.extend_from_slice(&item.name);
        self.entries.push(SnapEntry {
            name_end: self.names.len(),
            kind: item.kind,
            ino: item.ino,
            src: item.src,
        });
    }

    /// Number of entries (including "." and "..").
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entry `i` (0-based); `None` past the end.
    pub(crate) fn get(&self, i: usize) -> Option<Listed<'_>> {
        let e = self.entries.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.entries[i - 1].name_end,
        };
        Some(Listed {
            name: &self.names[start..e.name_end],
            kind: e.kind,
            ino: e.ino,
            src: e.src,
        })
    }
}

/// An image entry's inode reference, recorded inode number and type.
type ImageRef = (InodeRef, u32, squashbox_format::FileType);

/// The lower origin of a listed non-directory that is not hard-linked in its layer: layer index, plus the image inode reference
/// and the entry's recorded inode number and type (for the link consistency check).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LowerSrc {
    pub layer: usize,
    pub image: Option<ImageRef>,
}

impl Overlay {
    /// Visit every visible entry of directory `dir` (no "." / ".."); stop early on `Break`.
    /// `with_ino` computes stable inode numbers (costs an xattr read per upper entry).
    pub(crate) fn walk_merged(
        &self,
        dir: &NodeCtx,
        with_ino: bool,
        f: &mut dyn FnMut(DirItem) -> ControlFlow<()>,
    ) -> io::Result<()> {
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut stopped = false;
        if dir.state.upper {
            let pdir = self.upper.open_dir(&dir.path)?;
            let list = self.upper.open_dir_for_listing(&dir.path)?;
            let mut items = Vec::new();
            sys::for_each_dirent(list, &mut |name, kind, d_ino| {
                if kind == Kind::Char {
                    if let Some(st) = self.upper.stat_at(pdir.as_fd(), name)? {
                        if is_whiteout(&st) {
                            seen.insert(name.to_vec());
                            return Ok(());
                        }
                    }
                }
                seen.insert(name.to_vec());
                items.push((name.to_vec(), kind, d_ino));
                Ok(())
            })?;
            for (name, kind, d_ino) in items {
                if stopped {
                    break;
                }
                let ino = if with_ino {
                    match self.upper.origin(pdir.as_fd(), &name)? {
                        Some(o) => o,
                        None if kind == Kind::Dir && !dir.state.lowers.is_empty() => self
                            .resolve_child(dir, &name)?
                            .map(|s| s.ino)
                            .unwrap_or_else(|| upper_ino(d_ino)),
                        None => upper_ino(d_ino),
                    }
                } else {
                    0
                };
                if f(DirItem {
                    name,
                    kind,
                    ino,
                    src: None,
                })
                .is_break()
                {
                    stopped = true;
                }
            }
        }
        let nlowers = dir.state.lowers.len();
        for (pos, (i, ldir)) in dir.state.lowers.iter().enumerate() {
            if stopped {
                break;
            }
            let layer = &self.layers[*i];
            // Names of this layer hide the same names further down; the bottom layer has
            // nothing below it, so its names (all of them, for a plain lower directory) are not
            // copied into `seen`.
            let below = pos + 1 < nlowers;
            let mut hidden_here: Vec<Vec<u8>> = Vec::new();
            for_each_lower(layer, ldir, &mut |e, image| {
                if stopped || (!seen.is_empty() && seen.contains(&e.name)) {
                    return Ok(());
                }
                if e.kind == Kind::Char {
                    if let Some(obj) = layer.lookup(ldir, &e.name)? {
                        if layer.stat(&obj)?.is_whiteout() {
                            if below {
                                hidden_here.push(e.name);
                            }
                            return Ok(());
                        }
                    }
                }
                if below {
                    hidden_here.push(e.name.clone());
                }
                // Directories merge with the layers below and hard-linked files may be linked
                // to an earlier copy-up by a lookup: those always take the full resolution
                // (image entries are checked for hard links when resolved, see
                // `resolve_listed`).
                let src =
                    (e.kind != Kind::Dir && e.nlink <= 1).then_some(LowerSrc { layer: *i, image });
                let item = DirItem {
                    src,
                    kind: e.kind,
                    ino: lower_entry_ino(
                        *i,
                        e.number,
                        e.nlink,
                        dir.state.lower_path.as_deref(),
                        &e.name,
                    ),
                    name: e.name,
                };
                if f(item).is_break() {
                    stopped = true;
                }
                Ok(())
            })?;
            // Names of this layer hide the same names in the layers below.
            seen.extend(hidden_here);
        }
        Ok(())
    }

    /// Full snapshot of a directory, with "." and ".." first.
    pub(crate) fn snapshot(&self, dir: &NodeCtx, parent_ino: u64) -> io::Result<Snapshot> {
        let mut out = Snapshot::default();
        out.push(DirItem {
            name: b".".to_vec(),
            kind: Kind::Dir,
            ino: dir.state.ino,
            src: None,
        });
        out.push(DirItem {
            name: b"..".to_vec(),
            kind: Kind::Dir,
            ino: parent_ino,
            src: None,
        });
        self.walk_merged(dir, true, &mut |item| {
            out.push(item);
            ControlFlow::Continue(())
        })?;
        // Held for as long as the directory is open: give back the growth slack.
        out.entries.shrink_to_fit();
        out.names.shrink_to_fit();
        Ok(out)
    }

    /// Whether the merged directory shows no entries at all.
    pub(crate) fn is_empty_merged(&self, dir: &NodeCtx) -> io::Result<bool> {
        let mut empty = true;
        self.walk_merged(dir, false, &mut |_| {
            empty = false;
            ControlFlow::Break(())
        })?;
        Ok(empty)
    }
}

/// Like `Layer::for_each_entry`, also passing each image entry's inode reference, number and
/// type (`None` for directory layers, whose objects are rebuilt from the path). Image entries
/// are reported with `nlink` 1 without decoding their inodes: the listing alone does not
/// record link counts, and reading every inode here would double the inode decodes of a
/// listing. `resolve_listed` checks the real count when it decodes the inode.
fn for_each_lower(
    layer: &Layer,
    dir: &LowerObj,
    f: &mut dyn FnMut(LowerEntry, Option<ImageRef>) -> io::Result<()>,
) -> io::Result<()> {
    match (layer, dir) {
        (Layer::Image(a), LowerObj::Image(inode)) => {
            for e in a.read_dir(inode).map_err(image_err)? {
                let e = e.map_err(image_err)?;
                let kind = Kind::from_mode(e.file_type.mode_bits());
                let image = Some((e.inode_ref, e.inode_number, e.file_type));
                f(
                    LowerEntry {
                        name: e.name,
                        kind,
                        number: u64::from(e.inode_number),
                        nlink: 1,
                    },
                    image,
                )?;
            }
            Ok(())
        }
        _ => layer.for_each_entry(dir, &mut |e| f(e, None)),
    }
}

fn image_err(e: squashbox_format::Error) -> io::Error {
    log::warn!("lower image error: {e}");
    io::Error::from_raw_os_error(libc::EIO)
}

impl Overlay {
    /// The node state of snapshot entry `item` of directory `dir` as a lookup would resolve it
    /// now, or `None` if the name no longer exists. Callers hold the namespace lock (shared).
    ///
    /// `upper_dir` is the upper directory of `dir` opened once by the caller for a whole reply
    /// page (`None` if `dir` has no upper directory).
    pub(crate) fn resolve_listed(
        &self,
        dir: &NodeCtx,
        upper_dir: Option<BorrowedFd<'_>>,
        item: &Listed<'_>,
    ) -> io::Result<Option<NodeState>> {
        let Some(src) = item.src else {
            return self.resolve_child(dir, item.name);
        };
        // A name of a copied-up image hard link may not be linked here yet: resolving it links
        // it to the index entry instead of showing the stale lower object (docs/overlay.md).
        if self.upper.index_get(item.ino).is_some() {
            return self.resolve_child(dir, item.name);
        }
        // The fast path is valid only while nothing in the upper directory shadows the name
        // (it may have been created, whited out or copied up since the snapshot) and the
        // directory still merges the layer the entry came from.
        if dir.state.upper {
            let shadowed = match upper_dir {
                Some(fd) => self.upper.stat_at(fd, item.name)?.is_some(),
                None => {
                    let pdir = self.upper.open_dir(&dir.path)?;
                    self.upper.stat_at(pdir.as_fd(), item.name)?.is_some()
                }
            };
            if shadowed {
                return self.resolve_child(dir, item.name);
            }
        }
        let Some((_, ldir)) = dir.state.lowers.iter().find(|(i, _)| *i == src.layer) else {
            return self.resolve_child(dir, item.name);
        };
        let obj = match (&self.layers[src.layer], ldir, src.image) {
            (Layer::Image(a), LowerObj::Image(parent), Some((inode_ref, number, file_type))) => {
                let entry = DirEntry {
                    name: item.name.to_vec(),
                    inode_ref,
                    inode_number: number,
                    file_type,
                    next_position: 0,
                };
                let inode = a.entry_inode(parent, &entry).map_err(image_err)?;
                if inode.nlink > 1 {
                    // Hard-linked inside the image: may have to be linked to an earlier
                    // copy-up of another name (docs/overlay.md), which the lookup does.
                    return self.resolve_child(dir, item.name);
                }
                LowerObj::Image(Box::new(inode))
            }
            (Layer::Dir { .. }, LowerObj::Path(p), None) => {
                LowerObj::Path(crate::node::join(p, item.name))
            }
            _ => return self.resolve_child(dir, item.name),
        };
        Ok(Some(NodeState {
            kind: item.kind,
            upper: false,
            lowers: vec![(src.layer, obj)],
            lower_path: None,
            ino: item.ino,
        }))
    }
}
