//! [`ImageBuilder`]: an image from entries pushed one by one by the caller.
//!
//! This is the entry point for sources that are not a directory on disk, such as a tar stream
//! being converted. Entries may come in any order; parents that were never pushed are created
//! as directories with [`EntryMeta::implicit_dir`] and take the pushed metadata if pushed later.
//! File data is streamed: the calling thread reads each block from the caller's reader and the
//! worker pool compresses it, with the same bounded window, dedup, fragments and deterministic
//! placement as a directory build ([`crate::build_image`]). Only per-entry metadata (about 100
//! bytes plus the name) is held until [`ImageBuilder::finish`] writes the directory tables.
//!
//! Every path is treated as hostile: it must be relative, made of `/`-separated names that are
//! not `..`, not longer than 256 bytes and free of NUL bytes (`.` and empty components are
//! dropped, so `./a//b/` is `a/b`). A bad path, a duplicate, or a parent that is not a
//! directory gives [`BuildError::Entry`]. The image goes to a temporary file beside the
//! destination and is renamed into place only by a successful `finish`; dropping the builder,
//! or any error, leaves the destination untouched.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::build::{codec_and_threads, start_data, worker_pool, write_tables};
use crate::output::{ImageOut, PendingImage};
use crate::pipeline::DataPipeline;
use crate::walk::{Node, NodeKind, Tree, NO_XATTRS};
use crate::xattrs::XattrSet;
use crate::{BuildError, BuildOptions, BuildSummary};

/// Longest name SquashFS stores.
const MAX_NAME: usize = 256;

/// Ownership, permissions, time and extended attributes of a pushed entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits including setuid, setgid and sticky (`0o7777`); the file type comes
    /// from the method the entry is pushed with.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch (clamped to SquashFS's unsigned 32 bits).
    pub mtime: i64,
    /// Extended attributes as `(full name, value)`, e.g. `(b"user.note", b"x")`. Only the
    /// `user.`, `trusted.` and `security.` namespaces can be stored.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EntryMeta {
    /// Metadata with no xattrs.
    pub fn new(mode: u32, uid: u32, gid: u32, mtime: i64) -> Self {
        EntryMeta {
            mode,
            uid,
            gid,
            mtime,
            xattrs: Vec::new(),
        }
    }

    /// What a directory gets when only its descendants were pushed: `0755`, root, time 0.
    pub fn implicit_dir() -> Self {
        EntryMeta::new(0o755, 0, 0, 0)
    }
}

/// Which kind of device [`ImageBuilder::add_device`] adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
}

/// A pushed entry before the tree is laid out.
struct Pushed {
    name: Box<[u8]>,
    parent: u32,
    kind: NodeKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: u32,
    /// For directories: pushed explicitly (not only created as a parent).
    explicit: bool,
    /// For regular files: index in the data pipeline's results.
    data: Option<usize>,
}

/// Builds one image from pushed entries; see the module documentation.
///
/// ```no_run
/// use squashbox_build::{BuildOptions, EntryMeta, ImageBuilder};
/// # fn main() -> Result<(), squashbox_build::BuildError> {
/// let mut builder = ImageBuilder::new("out.sqsh".as_ref(), &BuildOptions::default())?;
/// builder.add_dir("etc".as_ref(), EntryMeta::new(0o755, 0, 0, 1_700_000_000))?;
/// let text = b"hello\n";
/// builder.add_file(
///     "etc/motd".as_ref(),
///     EntryMeta::new(0o644, 0, 0, 1_700_000_000),
///     text.len() as u64,
///     &mut &text[..],
/// )?;
/// builder.add_symlink("motd".as_ref(), EntryMeta::new(0o777, 0, 0, 0), b"etc/motd")?;
/// let summary = builder.finish()?;
/// # let _ = summary; Ok(()) }
/// ```
pub struct ImageBuilder {
    options: BuildOptions,
    image: PendingImage,
    /// `None` once an entry's data failed half-way: the image can no longer be completed.
    data: Option<DataPipeline<ImageOut>>,
    nodes: Vec<Pushed>,
    by_name: HashMap<(u32, Box<[u8]>), u32>,
    xattr_sets: Vec<XattrSet>,
    xattr_index: HashMap<XattrSet, u32>,
    broken: Option<String>,
}

fn entry_err(path: &Path, message: impl Into<String>) -> BuildError {
    BuildError::Entry {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The names of `path` (see the module documentation for the rules).
fn components(path: &Path) -> Result<Vec<&[u8]>, BuildError> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.first() == Some(&b'/') {
        return Err(entry_err(
            path,
            "the path must be relative to the image root",
        ));
    }
    if bytes.contains(&0) {
        return Err(entry_err(path, "the path contains a NUL byte"));
    }
    let mut names = Vec::new();
    for name in bytes.split(|&b| b == b'/') {
        match name {
            b"" | b"." => {}
            b".." => return Err(entry_err(path, "`..` is not allowed in an entry path")),
            _ if name.len() > MAX_NAME => {
                return Err(entry_err(
                    path,
                    format!("a name is {} bytes; SquashFS allows {MAX_NAME}", name.len()),
                ))
            }
            _ => names.push(name),
        }
    }
    Ok(names)
}

fn mode_with_type(kind: &NodeKind, perms: u32) -> u32 {
    let file_type = match kind {
        NodeKind::Dir { .. } => libc::S_IFDIR,
        NodeKind::File { .. } | NodeKind::HardLink { .. } => libc::S_IFREG,
        NodeKind::Symlink { .. } => libc::S_IFLNK,
        NodeKind::BlockDevice { .. } => libc::S_IFBLK,
        NodeKind::CharDevice { .. } => libc::S_IFCHR,
        NodeKind::Fifo => libc::S_IFIFO,
        NodeKind::Socket => libc::S_IFSOCK,
    };
    file_type | (perms & 0o7777)
}

impl ImageBuilder {
    /// Start an image that [`ImageBuilder::finish`] will place at `dest`. Uses the
    /// compression, block size, threads, fragments, dedup, xattrs, all-root and mtime
    /// settings of `options`; the directory-walk settings (gitignore, excludes, one file
    /// system) do not apply to pushed entries and are refused if set.
    pub fn new(dest: &Path, options: &BuildOptions) -> Result<Self, BuildError> {
        if options.gitignore || !options.excludes.is_empty() || options.one_file_system {
            return Err(BuildError::InvalidOptions(
                "gitignore, excludes and one-file-system apply to directory builds only; \
                 filter entries before pushing them"
                    .into(),
            ));
        }
        let (threads, codec) = codec_and_threads(options)?;
        let image = PendingImage::create(dest)?;
        let data = start_data(&image, dest, codec, options, worker_pool(threads)?, threads)?;
        let root = EntryMeta::implicit_dir();
        Ok(ImageBuilder {
            options: options.clone(),
            image,
            data: Some(data),
            nodes: vec![Pushed {
                name: Box::new([]),
                parent: 0,
                kind: NodeKind::Dir { first: 0, count: 0 },
                mode: mode_with_type(&NodeKind::Dir { first: 0, count: 0 }, root.mode),
                uid: root.uid,
                gid: root.gid,
                mtime: root.mtime,
                xattrs: NO_XATTRS,
                explicit: false,
                data: None,
            }],
            by_name: HashMap::new(),
            xattr_sets: Vec::new(),
            xattr_index: HashMap::new(),
            broken: None,
        })
    }

    fn check_usable(&self) -> Result<(), BuildError> {
        match &self.broken {
            Some(why) => Err(BuildError::InvalidOptions(format!(
                "the builder cannot continue after an earlier error ({why}); start a new one"
            ))),
            None => Ok(()),
        }
    }

    fn xattr_set(&mut self, path: &Path, meta: &EntryMeta) -> Result<u32, BuildError> {
        if !self.options.xattrs || meta.xattrs.is_empty() {
            return Ok(NO_XATTRS);
        }
        for (name, _) in &meta.xattrs {
            if !crate::xattrs::storable(name) {
                return Err(entry_err(
                    path,
                    format!(
                        "xattr `{}`: SquashFS stores only user., trusted. and security. names",
                        String::from_utf8_lossy(name)
                    ),
                ));
            }
        }
        let mut set = meta.xattrs.clone();
        set.sort();
        set.dedup_by(|a, b| a.0 == b.0);
        if let Some(&index) = self.xattr_index.get(&set) {
            return Ok(index);
        }
        let index = u32::try_from(self.xattr_sets.len())
            .map_err(|_| BuildError::InvalidOptions("too many distinct xattr sets".into()))?;
        self.xattr_sets.push(set.clone());
        self.xattr_index.insert(set, index);
        Ok(index)
    }

    /// The directory that will hold `names.last()`, creating missing parents.
    fn parent_of(&mut self, path: &Path, names: &[&[u8]]) -> Result<u32, BuildError> {
        let mut dir = 0u32;
        for name in &names[..names.len().saturating_sub(1)] {
            let key = (dir, Box::<[u8]>::from(*name));
            dir = match self.by_name.get(&key) {
                Some(&child) => {
                    if !matches!(self.nodes[child as usize].kind, NodeKind::Dir { .. }) {
                        return Err(entry_err(
                            path,
                            format!(
                                "parent `{}` was pushed as a non-directory",
                                String::from_utf8_lossy(name)
                            ),
                        ));
                    }
                    child
                }
                None => {
                    let meta = EntryMeta::implicit_dir();
                    let child = self.push_node(dir, name, NodeKind::Dir { first: 0, count: 0 })?;
                    self.set_meta(child, &meta, NO_XATTRS);
                    self.by_name.insert(key, child);
                    child
                }
            };
        }
        Ok(dir)
    }

    fn push_node(&mut self, parent: u32, name: &[u8], kind: NodeKind) -> Result<u32, BuildError> {
        let index = u32::try_from(self.nodes.len())
            .map_err(|_| BuildError::InvalidOptions("more than 2^32 entries".into()))?;
        self.nodes.push(Pushed {
            name: name.into(),
            parent,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: NO_XATTRS,
            explicit: false,
            data: None,
        });
        Ok(index)
    }

    fn set_meta(&mut self, node: u32, meta: &EntryMeta, xattrs: u32) {
        let n = &mut self.nodes[node as usize];
        n.mode = mode_with_type(&n.kind, meta.mode);
        n.uid = meta.uid;
        n.gid = meta.gid;
        n.mtime = meta.mtime;
        n.xattrs = xattrs;
    }

    /// Add a new non-directory entry at `path`.
    fn add_entry(
        &mut self,
        path: &Path,
        meta: &EntryMeta,
        kind: NodeKind,
    ) -> Result<u32, BuildError> {
        self.check_usable()?;
        let names = components(path)?;
        let Some(name) = names.last() else {
            return Err(entry_err(path, "only a directory can be the image root"));
        };
        let parent = self.parent_of(path, &names)?;
        let key = (parent, Box::<[u8]>::from(*name));
        if self.by_name.contains_key(&key) {
            return Err(entry_err(
                path,
                "an entry with this path was already pushed",
            ));
        }
        let xattrs = self.xattr_set(path, meta)?;
        let node = self.push_node(parent, name, kind)?;
        self.set_meta(node, meta, xattrs);
        self.by_name.insert(key, node);
        Ok(node)
    }

    /// Add a directory (or set the metadata of one created earlier as a parent). `""` or `.`
    /// is the image root.
    pub fn add_dir(&mut self, path: &Path, meta: EntryMeta) -> Result<(), BuildError> {
        self.check_usable()?;
        let names = components(path)?;
        let node = match names.last() {
            None => 0,
            Some(name) => {
                let parent = self.parent_of(path, &names)?;
                let key = (parent, Box::<[u8]>::from(*name));
                match self.by_name.get(&key) {
                    Some(&node) => node,
                    None => {
                        let node =
                            self.push_node(parent, name, NodeKind::Dir { first: 0, count: 0 })?;
                        self.by_name.insert(key, node);
                        node
                    }
                }
            }
        };
        let existing = &self.nodes[node as usize];
        if !matches!(existing.kind, NodeKind::Dir { .. }) {
            return Err(entry_err(
                path,
                "a non-directory with this path was already pushed",
            ));
        }
        if existing.explicit {
            return Err(entry_err(path, "this directory was already pushed"));
        }
        let xattrs = self.xattr_set(path, &meta)?;
        self.set_meta(node, &meta, xattrs);
        self.nodes[node as usize].explicit = true;
        Ok(())
    }

    /// Add a regular file of `size` bytes read from `data`, which must yield exactly that
    /// many bytes. Data that ends early, runs long or fails to read is an error after which
    /// the builder cannot continue (earlier blocks of the file are already in the image).
    pub fn add_file(
        &mut self,
        path: &Path,
        meta: EntryMeta,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<(), BuildError> {
        let node = self.add_entry(path, &meta, NodeKind::File { size, holes: false })?;
        let pipeline = self.data.as_mut().expect("usable builder has a pipeline");
        match pipeline.add_stream(path, size, data, &mut |_| {}) {
            Ok(index) => {
                self.nodes[node as usize].data = Some(index);
                Ok(())
            }
            Err(e) => {
                self.broken = Some(e.to_string());
                self.data = None;
                Err(e)
            }
        }
    }

    /// Add a regular file whose content the workers read from `source` on disk while the
    /// caller goes on pushing (faster than [`Self::add_file`] for files that exist on disk).
    /// Its size is taken now; if it cannot be read later, [`Self::finish`] lists it with
    /// every other unreadable file (or skips it with `skip_unreadable`).
    pub fn add_file_from_disk(
        &mut self,
        path: &Path,
        meta: EntryMeta,
        source: &Path,
    ) -> Result<(), BuildError> {
        let stat = std::fs::metadata(source).map_err(|e| BuildError::Source {
            path: source.to_path_buf(),
            message: e.to_string(),
        })?;
        if !stat.is_file() {
            return Err(BuildError::Source {
                path: source.to_path_buf(),
                message: "not a regular file".into(),
            });
        }
        let size = stat.len();
        let node = self.add_entry(path, &meta, NodeKind::File { size, holes: false })?;
        let pipeline = self.data.as_mut().expect("usable builder has a pipeline");
        let index = pipeline.add_path(Arc::from(source), size, false);
        self.nodes[node as usize].data = Some(index);
        Ok(())
    }

    /// Add a symbolic link pointing at `target` (stored as given, never resolved).
    pub fn add_symlink(
        &mut self,
        path: &Path,
        meta: EntryMeta,
        target: &[u8],
    ) -> Result<(), BuildError> {
        if target.is_empty() || target.contains(&0) {
            return Err(entry_err(
                path,
                "a symlink target must be non-empty and free of NUL bytes",
            ));
        }
        let kind = NodeKind::Symlink {
            target: target.into(),
        };
        self.add_entry(path, &meta, kind).map(|_| ())
    }

    /// Add a character or block device `major:minor`.
    pub fn add_device(
        &mut self,
        path: &Path,
        meta: EntryMeta,
        kind: DeviceKind,
        major: u32,
        minor: u32,
    ) -> Result<(), BuildError> {
        let rdev = squashbox_format::writer::encode_rdev(major, minor);
        let kind = match kind {
            DeviceKind::Char => NodeKind::CharDevice { rdev },
            DeviceKind::Block => NodeKind::BlockDevice { rdev },
        };
        self.add_entry(path, &meta, kind).map(|_| ())
    }

    /// Add a named pipe.
    pub fn add_fifo(&mut self, path: &Path, meta: EntryMeta) -> Result<(), BuildError> {
        self.add_entry(path, &meta, NodeKind::Fifo).map(|_| ())
    }

    /// Add a unix socket.
    pub fn add_socket(&mut self, path: &Path, meta: EntryMeta) -> Result<(), BuildError> {
        self.add_entry(path, &meta, NodeKind::Socket).map(|_| ())
    }

    /// Add `path` as another name of the already pushed non-directory `target` (one inode,
    /// nlink counts every name).
    pub fn add_hard_link(&mut self, path: &Path, target: &Path) -> Result<(), BuildError> {
        self.check_usable()?;
        let target_node = self.lookup(target)?;
        let target_node = match self.nodes[target_node as usize].kind {
            NodeKind::Dir { .. } => {
                return Err(entry_err(path, "a hard link cannot point at a directory"))
            }
            NodeKind::HardLink { target } => target,
            _ => target_node,
        };
        let kind = NodeKind::HardLink {
            target: target_node,
        };
        self.add_entry(path, &EntryMeta::default(), kind)
            .map(|_| ())
    }

    fn lookup(&self, path: &Path) -> Result<u32, BuildError> {
        let mut node = 0u32;
        for name in components(path)? {
            node = *self
                .by_name
                .get(&(node, Box::<[u8]>::from(name)))
                .ok_or_else(|| entry_err(path, "no entry with this path was pushed"))?;
        }
        Ok(node)
    }

    /// Store the remaining data, write the directory tables, sync, and rename the image into
    /// place.
    pub fn finish(mut self) -> Result<BuildSummary, BuildError> {
        self.check_usable()?;
        let pipeline = self.data.take().expect("usable builder has a pipeline");
        let (data, writer) = pipeline.finish(&mut |_| {})?;

        let (mut tree, new_index) = self.lay_out();
        let mut file_data = vec![None; tree.nodes.len()];
        let mut unreadable = Vec::new();
        let mut failed = vec![None; data.files.len()];
        for (file, reason) in data.failed {
            failed[file] = Some(reason);
        }
        let mut files = 0u64;
        for (old, pushed) in self.nodes.iter().enumerate() {
            let node = new_index[old] as usize;
            let Some(file) = pushed.data else {
                continue;
            };
            match failed[file].take() {
                Some(reason) => {
                    unreadable.push((tree.path_of(node as u32), reason));
                    tree.nodes[node].skipped = true;
                }
                None => {
                    file_data[node] = data.files[file].clone();
                    files += 1;
                }
            }
        }
        // Extra names of a stored regular file count as files (as in a directory build); hard
        // links to a skipped file vanish with it (`inodes` checks the target).
        for node in &tree.nodes {
            if let NodeKind::HardLink { target } = node.kind {
                let target = &tree.nodes[target as usize];
                if matches!(target.kind, NodeKind::File { .. }) && !target.skipped {
                    files += 1;
                }
            }
        }
        if !unreadable.is_empty() && !self.options.skip_unreadable {
            return Err(BuildError::Unreadable { paths: unreadable });
        }
        let (inodes, image_bytes) = write_tables(writer, &tree, &file_data, &self.options)?;
        self.image.commit()?;
        Ok(BuildSummary {
            inodes,
            files,
            input_bytes: data.input_bytes,
            image_bytes,
            duplicates: data.duplicates,
            skipped: unreadable,
        })
    }

    /// The pushed entries as a [`Tree`]: breadth first, each directory's children contiguous
    /// and sorted bytewise (the order SquashFS stores). Also returns old index → tree index.
    fn lay_out(&mut self) -> (Tree, Vec<u32>) {
        let n = self.nodes.len();
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (index, node) in self.nodes.iter().enumerate().skip(1) {
            children[node.parent as usize].push(index as u32);
        }
        let mut order = Vec::with_capacity(n);
        let mut new_index = vec![0u32; n];
        let mut ranges = vec![(0u32, 0u32); n];
        order.push(0u32);
        let mut queue = VecDeque::from([0u32]);
        while let Some(dir) = queue.pop_front() {
            let mut kids = std::mem::take(&mut children[dir as usize]);
            kids.sort_by(|&a, &b| {
                self.nodes[a as usize]
                    .name
                    .cmp(&self.nodes[b as usize].name)
            });
            ranges[dir as usize] = (order.len() as u32, kids.len() as u32);
            for kid in kids {
                new_index[kid as usize] = order.len() as u32;
                order.push(kid);
                if matches!(self.nodes[kid as usize].kind, NodeKind::Dir { .. }) {
                    queue.push_back(kid);
                }
            }
        }
        let nodes = order
            .iter()
            .map(|&old| {
                let pushed = &self.nodes[old as usize];
                let kind = match &pushed.kind {
                    NodeKind::Dir { .. } => {
                        let (first, count) = ranges[old as usize];
                        NodeKind::Dir { first, count }
                    }
                    NodeKind::HardLink { target } => NodeKind::HardLink {
                        target: new_index[*target as usize],
                    },
                    other => other.clone(),
                };
                Node {
                    name: pushed.name.clone(),
                    parent: new_index[pushed.parent as usize],
                    kind,
                    mode: pushed.mode,
                    uid: pushed.uid,
                    gid: pushed.gid,
                    mtime: pushed.mtime,
                    xattrs: pushed.xattrs,
                    skipped: false,
                }
            })
            .collect();
        let tree = Tree {
            nodes,
            xattr_sets: std::mem::take(&mut self.xattr_sets),
            unreadable: Vec::new(),
            root: PathBuf::new(),
        };
        (tree, new_index)
    }
}
