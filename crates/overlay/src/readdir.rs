//! Merged directory listings.
//!
//! The upper directory is listed first (whiteouts recorded, not shown), then each merged lower
//! directory from the top down; a name already seen or whited out is skipped, and lower
//! whiteouts hide the same name further down. Opaque directories have no lowers to merge.
//!
//! `opendir` takes one snapshot of the merged listing per handle, so offsets stay stable across
//! `readdir` calls while the directory changes. The snapshot costs one small record per entry.

use std::collections::HashSet;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::AsFd;

use crate::core::{lower_entry_ino, upper_ino, NodeCtx, Overlay};
use crate::lower::Kind;
use crate::sys;
use crate::upper::is_whiteout;

/// One entry of a listing snapshot.
#[derive(Clone, Debug)]
pub(crate) struct DirItem {
    pub name: Vec<u8>,
    pub kind: Kind,
    pub ino: u64,
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
                if f(DirItem { name, kind, ino }).is_break() {
                    stopped = true;
                }
            }
        }
        for (i, ldir) in &dir.state.lowers {
            if stopped {
                break;
            }
            let layer = &self.layers[*i];
            let mut hidden_here: Vec<Vec<u8>> = Vec::new();
            layer.for_each_entry(ldir, &mut |e| {
                if stopped || seen.contains(&e.name) {
                    return Ok(());
                }
                if e.kind == Kind::Char {
                    if let Some(obj) = layer.lookup(ldir, &e.name)? {
                        if layer.stat(&obj)?.is_whiteout() {
                            hidden_here.push(e.name);
                            return Ok(());
                        }
                    }
                }
                hidden_here.push(e.name.clone());
                let item = DirItem {
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
    pub(crate) fn snapshot(&self, dir: &NodeCtx, parent_ino: u64) -> io::Result<Vec<DirItem>> {
        let mut out = vec![
            DirItem {
                name: b".".to_vec(),
                kind: Kind::Dir,
                ino: dir.state.ino,
            },
            DirItem {
                name: b"..".to_vec(),
                kind: Kind::Dir,
                ino: parent_ino,
            },
        ];
        self.walk_merged(dir, true, &mut |item| {
            out.push(item);
            ControlFlow::Continue(())
        })?;
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
