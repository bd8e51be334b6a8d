//! Whole-tree traversal with loop protection.
//!
//! The reader checks every single link it follows ([`Archive::entry_inode`]: inode number and
//! type match the entry; a subdirectory's parent field names the directory it was found in, and
//! is not that directory). That cannot see a loop or a directory linked from two places in a
//! hostile image, because each link looks fine on its own. A walker must therefore remember
//! the directories it has entered: [`VisitedDirs`] does that in O(directories) memory, and
//! [`Walk`] uses it.

use std::collections::HashSet;

use crate::error::{Error, Result};

use super::dir::DirState;
use super::{Archive, Inode};

/// The set of directory inode numbers a walker has entered.
#[derive(Debug, Default)]
pub struct VisitedDirs {
    seen: HashSet<u32>,
}

impl VisitedDirs {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record that the walker enters directory `dir`; fails with [`Error::Corrupt`] if it was
    /// entered before (a directory loop or a multiply-linked directory).
    pub fn enter(&mut self, dir: &Inode) -> Result<()> {
        if self.seen.insert(dir.number) {
            Ok(())
        } else {
            Err(Error::corrupt(
                format!(
                    "directory inode {} is reached twice (directory loop or hard-linked \
                     directory)",
                    dir.number
                ),
                dir.inode_ref.block(),
            ))
        }
    }

    /// Number of directories entered so far.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True if no directory was entered yet.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// One item of a [`Walk`].
#[derive(Clone, Debug)]
pub struct WalkEntry {
    /// Path relative to the root, components joined by `/` (empty for the root itself).
    pub path: Vec<u8>,
    /// The inode.
    pub inode: Inode,
    /// Depth below the root (0 for the root).
    pub depth: usize,
}

struct Level {
    dir: Inode,
    state: DirState,
    path_len: usize,
}

/// Depth-first, pre-order traversal of the whole image, in on-disk (sorted) order. Yields the
/// root first. Stops after the first error. Memory is proportional to the depth plus the
/// number of directories (for loop detection), never to the number of files.
pub struct Walk<'a> {
    archive: &'a Archive,
    stack: Vec<Level>,
    path: Vec<u8>,
    visited: VisitedDirs,
    root: Option<Result<Inode>>,
    finished: bool,
}

impl<'a> Walk<'a> {
    pub(crate) fn new(archive: &'a Archive) -> Self {
        Walk {
            archive,
            stack: Vec::new(),
            path: Vec::new(),
            visited: VisitedDirs::new(),
            root: Some(archive.root()),
            finished: false,
        }
    }

    fn enter(&mut self, dir: &Inode) -> Result<()> {
        self.visited.enter(dir)?;
        let state = self.archive.dir_state(dir, 0)?;
        self.stack.push(Level {
            dir: dir.clone(),
            state,
            path_len: self.path.len(),
        });
        Ok(())
    }

    fn step(&mut self) -> Result<Option<WalkEntry>> {
        if let Some(root) = self.root.take() {
            let root = root?;
            if !root.is_dir() {
                return Err(Error::corrupt("the root inode is not a directory", 0));
            }
            self.enter(&root)?;
            return Ok(Some(WalkEntry {
                path: Vec::new(),
                inode: root,
                depth: 0,
            }));
        }
        loop {
            let Some(level) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(entry) = level.state.next_entry(self.archive)? else {
                let done = self.stack.pop().expect("non-empty stack");
                self.path.truncate(done.path_len);
                continue;
            };
            let inode = self.archive.entry_inode(&level.dir, &entry)?;
            let parent_len = level.path_len;
            let depth = self.stack.len();
            self.path.truncate(parent_len);
            if parent_len > 0 {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(&entry.name);
            let path = self.path.clone();
            if inode.is_dir() {
                self.enter(&inode)?;
            } else {
                self.path.truncate(parent_len);
            }
            return Ok(Some(WalkEntry { path, inode, depth }));
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<WalkEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.step() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}
