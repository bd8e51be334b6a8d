//! Walking the source tree into compact per-entry records.
//!
//! The walk never follows symlinks, includes hidden files, sorts every directory bytewise (the
//! order SquashFS stores), and applies the [`Filter`]. Each entry costs one record of roughly
//! 100 bytes plus its name; file contents are not touched (unreadable files are found, all of
//! them, when the data phase opens them).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::filter::{Decision, DirState, Filter};
use crate::xattrs::{self, XattrSet};
use crate::BuildError;

/// Marker for "no xattrs" in [`Node::xattrs`].
pub const NO_XATTRS: u32 = u32::MAX;

/// What an entry is.
#[derive(Clone, Debug)]
pub enum NodeKind {
    /// A directory; its children are `nodes[first..first + count]`, sorted by name.
    Dir {
        /// Index of the first child.
        first: u32,
        /// Number of children.
        count: u32,
    },
    /// A regular file.
    File {
        /// Size when walked.
        size: u64,
        /// The file occupies fewer disk blocks than its size: it may have holes.
        holes: bool,
    },
    /// A symbolic link.
    Symlink {
        /// Target bytes.
        target: Box<[u8]>,
    },
    /// A block device.
    BlockDevice {
        /// Encoded device number.
        rdev: u32,
    },
    /// A character device.
    CharDevice {
        /// Encoded device number.
        rdev: u32,
    },
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
    /// Another name for the (non-directory) entry `target`.
    HardLink {
        /// Index of the first name of this inode.
        target: u32,
    },
}

/// One walked entry.
#[derive(Clone, Debug)]
pub struct Node {
    /// Name in its directory (empty for the root).
    pub name: Box<[u8]>,
    /// Index of the parent directory (0 for the root itself).
    pub parent: u32,
    /// Type and type-specific data.
    pub kind: NodeKind,
    /// `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: i64,
    /// Index into [`Tree::xattr_sets`] or [`NO_XATTRS`].
    pub xattrs: u32,
    /// Left out of the image (unreadable, with `skip_unreadable`).
    pub skipped: bool,
}

/// The walked tree.
pub struct Tree {
    /// All entries; index 0 is the root.
    pub nodes: Vec<Node>,
    /// Distinct xattr sets.
    pub xattr_sets: Vec<XattrSet>,
    /// Paths that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    /// The source directory.
    pub root: PathBuf,
}

impl Tree {
    /// Full path of node `index`.
    pub fn path_of(&self, index: u32) -> PathBuf {
        let mut names = Vec::new();
        let mut i = index;
        while i != 0 {
            let node = &self.nodes[i as usize];
            names.push(&node.name);
            i = node.parent;
        }
        let mut path = self.root.clone();
        for name in names.iter().rev() {
            path.push(std::ffi::OsStr::from_bytes(name));
        }
        path
    }

    /// Children of directory `index` (empty for non-directories).
    pub fn children(&self, index: u32) -> std::ops::Range<u32> {
        match self.nodes[index as usize].kind {
            NodeKind::Dir { first, count } => first..first + count,
            _ => 0..0,
        }
    }
}

/// Knobs the walk needs.
pub struct WalkOptions {
    /// Read xattrs.
    pub xattrs: bool,
    /// Stay on the source's file system.
    pub one_file_system: bool,
    /// `(dev, ino)` of a file to leave out (the image being written, if inside the source).
    pub skip_file: Option<(u64, u64)>,
}

fn encode_rdev(rdev: u64) -> u32 {
    let major = (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)) as u32;
    let minor = (((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)) as u32;
    squashbox_format::writer::encode_rdev(major, minor)
}

struct Walker<'a> {
    filter: &'a Filter,
    options: &'a WalkOptions,
    root_dev: u64,
    tree: Tree,
    xattr_index: HashMap<XattrSet, u32>,
    hard_links: HashMap<(u64, u64), u32>,
}

/// Called with each entry the walk records (index, full path, record), in index order, as
/// soon as it is recorded: the builder starts storing file data while the walk goes on.
pub type OnEntry<'a> = dyn FnMut(u32, &Path, &Node) -> Result<(), BuildError> + 'a;

/// Walk `source` (absolute and canonical), telling `on_entry` about each entry.
pub fn walk(
    source: &Path,
    filter: &Filter,
    options: &WalkOptions,
    on_entry: &mut OnEntry<'_>,
) -> Result<Tree, BuildError> {
    let source_err = |message: String| BuildError::Source {
        path: source.to_path_buf(),
        message,
    };
    let meta = fs::symlink_metadata(source).map_err(|e| source_err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(source_err("not a directory".into()));
    }
    let mut walker = Walker {
        filter,
        options,
        root_dev: meta.dev(),
        tree: Tree {
            nodes: Vec::new(),
            xattr_sets: Vec::new(),
            unreadable: Vec::new(),
            root: source.to_path_buf(),
        },
        xattr_index: HashMap::new(),
        hard_links: HashMap::new(),
    };
    let xattrs = walker.xattrs_of(source);
    walker.tree.nodes.push(Node {
        name: Box::new([]),
        parent: 0,
        kind: NodeKind::Dir { first: 0, count: 0 },
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        mtime: meta.mtime(),
        xattrs,
        skipped: false,
    });
    let root_state = filter.enter_dir(&filter.root_state()?, source, Decision::Keep)?;
    let mut stack = vec![(0u32, source.to_path_buf(), root_state)];
    while let Some((index, path, state)) = stack.pop() {
        let entries = match read_sorted(&path) {
            Ok(entries) => entries,
            Err(e) if index == 0 => return Err(source_err(e.to_string())),
            Err(e) => {
                walker.tree.unreadable.push((path, e.to_string()));
                walker.tree.nodes[index as usize].skipped = true;
                continue;
            }
        };
        let first = walker.tree.nodes.len() as u32;
        let mut subdirs = Vec::new();
        for name in entries {
            let child_path = path.join(&name);
            let Some((child, descend)) = walker.add_entry(index, name, &child_path, &state)? else {
                continue;
            };
            on_entry(child, &child_path, &walker.tree.nodes[child as usize])?;
            if let Some(decision) = descend {
                subdirs.push((child, child_path, decision));
            }
        }
        let count = walker.tree.nodes.len() as u32 - first;
        walker.tree.nodes[index as usize].kind = NodeKind::Dir { first, count };
        for (child, child_path, decision) in subdirs.into_iter().rev() {
            let child_state = filter.enter_dir(&state, &child_path, decision)?;
            stack.push((child, child_path, child_state));
        }
    }
    Ok(walker.tree)
}

fn read_sorted(path: &Path) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path)? {
        names.push(entry?.file_name());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

impl Walker<'_> {
    fn xattrs_of(&mut self, path: &Path) -> u32 {
        if !self.options.xattrs {
            return NO_XATTRS;
        }
        match xattrs::read(path) {
            Ok(set) if set.is_empty() => NO_XATTRS,
            Ok(set) => {
                if let Some(i) = self.xattr_index.get(&set) {
                    return *i;
                }
                let i = self.tree.xattr_sets.len() as u32;
                self.tree.xattr_sets.push(set.clone());
                self.xattr_index.insert(set, i);
                i
            }
            Err(e) => {
                self.tree
                    .unreadable
                    .push((path.to_path_buf(), format!("reading xattrs: {e}")));
                NO_XATTRS
            }
        }
    }

    /// Record one entry; returns its index and, for directories to descend into, the filter
    /// decision that applies below it.
    #[allow(clippy::type_complexity)]
    fn add_entry(
        &mut self,
        parent: u32,
        name: OsString,
        path: &Path,
        state: &DirState,
    ) -> Result<Option<(u32, Option<Decision>)>, BuildError> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            // Vanished since the directory was read: it is simply not part of the tree.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                self.tree
                    .unreadable
                    .push((path.to_path_buf(), e.to_string()));
                return Ok(None);
            }
        };
        if self.options.skip_file == Some((meta.dev(), meta.ino())) {
            return Ok(None);
        }
        let file_type = meta.file_type();
        let decision = self.filter.decide(state, path, file_type)?;
        if decision == Decision::Exclude {
            return Ok(None);
        }
        let name_bytes = name.into_vec().into_boxed_slice();
        let index = self.tree.nodes.len() as u32;
        if !file_type.is_dir() && meta.nlink() > 1 {
            if let Some(&target) = self.hard_links.get(&(meta.dev(), meta.ino())) {
                self.tree.nodes.push(Node {
                    name: name_bytes,
                    parent,
                    kind: NodeKind::HardLink { target },
                    mode: meta.mode(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: meta.mtime(),
                    xattrs: NO_XATTRS,
                    skipped: false,
                });
                return Ok(Some((index, None)));
            }
        }
        let mut descend = None;
        let kind = if file_type.is_dir() {
            if !self.options.one_file_system || meta.dev() == self.root_dev {
                descend = Some(decision);
            }
            NodeKind::Dir { first: 0, count: 0 }
        } else if file_type.is_file() {
            NodeKind::File {
                size: meta.len(),
                holes: meta.blocks().saturating_mul(512) < meta.len(),
            }
        } else if file_type.is_symlink() {
            match fs::read_link(path) {
                Ok(target) => NodeKind::Symlink {
                    target: target.into_os_string().into_vec().into_boxed_slice(),
                },
                Err(e) => {
                    if e.kind() != io::ErrorKind::NotFound {
                        self.tree
                            .unreadable
                            .push((path.to_path_buf(), e.to_string()));
                    }
                    return Ok(None);
                }
            }
        } else if file_type.is_block_device() {
            NodeKind::BlockDevice {
                rdev: encode_rdev(meta.rdev()),
            }
        } else if file_type.is_char_device() {
            NodeKind::CharDevice {
                rdev: encode_rdev(meta.rdev()),
            }
        } else if file_type.is_fifo() {
            NodeKind::Fifo
        } else if file_type.is_socket() {
            NodeKind::Socket
        } else {
            return Ok(None);
        };
        let xattrs = self.xattrs_of(path);
        if !file_type.is_dir() && meta.nlink() > 1 {
            self.hard_links.insert((meta.dev(), meta.ino()), index);
        }
        self.tree.nodes.push(Node {
            name: name_bytes,
            parent,
            kind,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            xattrs,
            skipped: false,
        });
        Ok(Some((index, descend)))
    }
}
