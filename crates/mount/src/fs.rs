//! The FUSE request handlers: a read-only view of one image, answering like the kernel's
//! squashfs driver would.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use rayon::prelude::*;
use squashbox_format::{Archive, FileType, Inode, InodeKind};

use crate::attr::{file_attr, fuse_type};
use crate::handles::OpenFiles;
use crate::nodes::{NodeMap, ROOT_NODE};
use crate::readahead::ReadAhead;

/// Longest name a squashfs directory entry can hold.
const NAME_MAX: usize = 256;
/// Largest read or write request we ask the kernel for.
const MAX_REQUEST_BYTES: u32 = 1 << 20;
/// `FOPEN_KEEP_CACHE` keeps page-cache contents across opens (the image never changes);
/// `FOPEN_CACHE_DIR` lets the kernel cache directory listings too.
const FILE_OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE;
const DIR_OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE.union(FopenFlags::FOPEN_CACHE_DIR);

/// Counters a [`crate::MountHandle`] exposes.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests answered with EIO because the image could not be read.
    pub(crate) io_errors: AtomicU64,
}

/// Settings the handlers need.
pub(crate) struct FsConfig {
    pub(crate) ttl: Duration,
    pub(crate) read_ahead_blocks: u32,
    pub(crate) read_ahead_threads: usize,
}

/// The file system served over FUSE.
pub(crate) struct SquashFs {
    archive: Arc<Archive>,
    nodes: NodeMap,
    files: OpenFiles,
    read_ahead: ReadAhead,
    ttl: Duration,
    block_size: u32,
    read_ahead_blocks: u32,
    has_export_table: bool,
    has_xattr_table: bool,
    counters: Arc<Counters>,
}

type OpResult<T> = std::result::Result<T, Errno>;

impl SquashFs {
    /// Prepare to serve `archive`; decodes the root inode.
    pub(crate) fn new(
        archive: Arc<Archive>,
        config: FsConfig,
        counters: Arc<Counters>,
    ) -> squashbox_format::Result<Self> {
        let root = archive.root()?;
        let sb = archive.superblock();
        let block_size = sb.block_size;
        let has_export_table = sb.export_table_start != squashbox_format::layout::NO_TABLE;
        let has_xattr_table = sb.xattr_id_table_start != squashbox_format::layout::NO_TABLE;
        let read_ahead = if config.read_ahead_blocks > 0 {
            ReadAhead::start(archive.clone(), config.read_ahead_threads)
        } else {
            ReadAhead::start(archive.clone(), 0)
        };
        Ok(SquashFs {
            nodes: NodeMap::new(root.number, root.inode_ref),
            files: OpenFiles::new(),
            read_ahead,
            ttl: config.ttl,
            block_size,
            read_ahead_blocks: config.read_ahead_blocks,
            has_export_table,
            has_xattr_table,
            counters,
            archive,
        })
    }

    /// Run `f`, turning reader errors into errnos (EIO is logged and counted) and a panic
    /// in the reader into EIO, so one bad block never takes a worker thread down.
    fn guarded<T>(
        &self,
        op: &str,
        node: u64,
        f: impl FnOnce() -> squashbox_format::Result<OpResult<T>>,
    ) -> OpResult<T> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => Err(self.errno_for(op, node, &err)),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                log::error!("{op} on inode {node}: reader panicked: {what}");
                self.counters.io_errors.fetch_add(1, Ordering::Relaxed);
                Err(Errno::EIO)
            }
        }
    }

    fn errno_for(&self, op: &str, node: u64, err: &squashbox_format::Error) -> Errno {
        use squashbox_format::Error as E;
        match err {
            E::NotFound(_) => Errno::ENOENT,
            E::WrongType { .. } => Errno::EINVAL,
            _ => {
                log::error!("{op} on inode {node}: {err}");
                self.counters.io_errors.fetch_add(1, Ordering::Relaxed);
                Errno::EIO
            }
        }
    }

    /// The inode behind a node id the kernel holds.
    fn inode_of(&self, node: u64) -> squashbox_format::Result<OpResult<Inode>> {
        if let Some(r) = self.nodes.resolve(node) {
            return self.archive.inode(r).map(Ok);
        }
        // The kernel names only nodes we handed out and have not seen forgotten; with an
        // export table we can still find one (e.g. after a forget/lookup race).
        match self.nodes.image_number(node) {
            Some(number) if self.has_export_table => self.archive.inode_by_number(number).map(Ok),
            _ => Ok(Err(Errno::ESTALE)),
        }
    }

    fn attr(&self, inode: &Inode) -> squashbox_format::Result<FileAttr> {
        file_attr(&self.archive, inode, self.nodes.node_id(inode.number))
    }

    /// Node id of the parent of directory `dir` (node `node`), for "..".
    fn parent_node(&self, dir: &Inode, node: u64) -> u64 {
        let count = self.archive.superblock().inode_count;
        match dir.kind {
            InodeKind::Directory { parent_inode, .. }
                if node != ROOT_NODE && parent_inode != 0 && parent_inode <= count =>
            {
                self.nodes.node_id(parent_inode)
            }
            _ => ROOT_NODE,
        }
    }

    /// Fill `buf` from `file` at `offset`, decompressing the blocks it spans in parallel.
    fn read_into(&self, file: &Inode, offset: u64, buf: &mut [u8]) -> squashbox_format::Result<()> {
        let block = u64::from(self.block_size);
        let first_len = ((block - offset % block) as usize).min(buf.len());
        if first_len == buf.len() {
            return fill(&self.archive, file, offset, buf);
        }
        let (head, rest) = buf.split_at_mut(first_len);
        let mut pieces: Vec<(u64, &mut [u8])> = vec![(offset, head)];
        let mut at = offset + first_len as u64;
        for chunk in rest.chunks_mut(block as usize) {
            let len = chunk.len() as u64;
            pieces.push((at, chunk));
            at += len;
        }
        pieces
            .into_par_iter()
            .try_for_each(|(at, piece)| fill(&self.archive, file, at, piece))
    }

    fn do_read(&self, node: u64, fh: u64, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        self.guarded("read", node, || {
            let open = self.files.get(fh);
            let inode = match &open {
                Some(f) => f.inode.clone(),
                None => match self.inode_of(node)? {
                    Ok(i) => Arc::new(i),
                    Err(e) => return Ok(Err(e)),
                },
            };
            if inode.file_type != FileType::Regular {
                return Ok(Err(Errno::EINVAL));
            }
            let file_size = inode.size();
            if offset >= file_size {
                return Ok(Ok(Vec::new()));
            }
            let len = (file_size - offset).min(u64::from(size)) as usize;
            let mut buf = vec![0u8; len];
            self.read_into(&inode, offset, &mut buf)?;
            let end = offset + len as u64;
            if let Some(f) = &open {
                if f.note_read(offset, end) && self.read_ahead_blocks > 0 && end < file_size {
                    self.read_ahead
                        .request(&inode, end, self.read_ahead_blocks, self.block_size);
                }
            }
            Ok(Ok(buf))
        })
    }

    fn fill_dir(
        &self,
        node: u64,
        offset: u64,
        mut add: impl FnMut(
            u64,
            u64,
            &Inode,
            &squashbox_format::DirEntry,
        ) -> squashbox_format::Result<bool>,
        mut add_dot: impl FnMut(u64, u64, &[u8], &Inode) -> bool,
    ) -> OpResult<()> {
        self.guarded("readdir", node, || {
            let dir = match self.inode_of(node)? {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            };
            if !dir.is_dir() {
                return Ok(Err(Errno::ENOTDIR));
            }
            // Offsets are the kernel squashfs' f_pos values: 1 after ".", 3 after "..", then
            // the reader's stable positions (3 + listing bytes up to the end of the entry).
            if offset == 0 && add_dot(node, 1, b".", &dir) {
                return Ok(Ok(()));
            }
            if offset < 3 && add_dot(self.parent_node(&dir, node), 3, b"..", &dir) {
                return Ok(Ok(()));
            }
            let position = if offset < 3 { 0 } else { offset };
            for (added, entry) in self.archive.read_dir_from(&dir, position)?.enumerate() {
                let entry = match entry {
                    Ok(e) => e,
                    // Hand out what we have; the next call starts at the bad entry and fails.
                    Err(e) if added > 0 => {
                        log::error!("readdir on inode {node}: {e}");
                        break;
                    }
                    Err(e) => return Err(e),
                };
                let child_node = self.nodes.node_id(entry.inode_number);
                if add(child_node, entry.next_position, &dir, &entry)? {
                    break;
                }
            }
            Ok(Ok(()))
        })
    }

    fn xattr_value(&self, node: u64, name: &[u8]) -> OpResult<Vec<u8>> {
        if !self.has_xattr_table {
            return Err(Errno::from_i32(libc::EOPNOTSUPP));
        }
        self.guarded("getxattr", node, || {
            let inode = match self.inode_of(node)? {
                Ok(i) => i,
                Err(e) => return Ok(Err(e)),
            };
            let found = self
                .archive
                .xattrs(&inode)?
                .into_iter()
                .find(|x| x.name == name)
                .map(|x| x.value);
            Ok(found.ok_or(Errno::from_i32(libc::ENODATA)))
        })
    }

    fn xattr_names(&self, node: u64, privileged: bool) -> OpResult<Vec<u8>> {
        self.guarded("listxattr", node, || {
            let inode = match self.inode_of(node)? {
                Ok(i) => i,
                Err(e) => return Ok(Err(e)),
            };
            if !self.has_xattr_table {
                // Like the kernel on an image without an xattr table: inodes it gives squashfs
                // inode operations (directories, symlinks, extended inodes) answer EOPNOTSUPP,
                // basic files, devices, fifos and sockets list nothing.
                return Ok(if kernel_has_xattr_ops(&inode) {
                    Err(Errno::from_i32(libc::EOPNOTSUPP))
                } else {
                    Ok(Vec::new())
                });
            }
            let mut list = Vec::new();
            for x in self.archive.xattrs(&inode)? {
                // Like the kernel, list trusted.* only to privileged callers.
                if !privileged && x.name.starts_with(b"trusted.") {
                    continue;
                }
                list.extend_from_slice(&x.name);
                list.push(0);
            }
            Ok(Ok(list))
        })
    }
}

/// Read exactly `buf.len()` bytes of `file` at `offset` (the caller bounds it by the size).
fn fill(
    archive: &Archive,
    file: &Inode,
    offset: u64,
    buf: &mut [u8],
) -> squashbox_format::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = archive.read_at(file, offset + done as u64, &mut buf[done..])?;
        if n == 0 {
            return Err(squashbox_format::Error::corrupt(
                format!(
                    "file inode {} ended at {} bytes, before its size {}",
                    file.number,
                    offset + done as u64,
                    file.size()
                ),
                0,
            ));
        }
        done += n;
    }
    Ok(())
}

/// Whether the kernel's squashfs gives `inode` its own inode operations (and so answers
/// xattr calls itself): directories and symlinks always, other types only when stored as
/// extended inodes. The reader does not say which form was stored, so for regular files this
/// infers it the way mksquashfs decides (hard links, sparse blocks, 4 GiB sizes or offsets).
fn kernel_has_xattr_ops(inode: &Inode) -> bool {
    match inode.kind {
        InodeKind::Directory { .. } | InodeKind::Symlink { .. } => true,
        InodeKind::File {
            size,
            blocks_start,
            sparse,
            ..
        } => inode.nlink > 1 || sparse > 0 || size >> 32 != 0 || blocks_start >> 32 != 0,
        InodeKind::Device { .. } | InodeKind::Ipc => inode.xattr_index.is_some(),
    }
}

/// A reply for a name that does not exist, cached by the kernel for the entry TTL.
fn negative_entry() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

fn erofs() -> Errno {
    Errno::EROFS
}

impl Filesystem for SquashFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = [
            // Always readdirplus (no READDIRPLUS_AUTO): the kernel otherwise falls back to
            // plain readdir after the first buffer of a directory and then needs one LOOKUP
            // round trip per entry when `find`/`ls -l` stat them.
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_ASYNC_READ,
            InitFlags::FUSE_MAX_PAGES,
        ];
        for flag in wanted {
            if config.add_capabilities(flag).is_err() {
                log::debug!("kernel lacks FUSE capability {flag:?}");
            }
        }
        // max_pages (and so the largest read) follows max(max_write, max_readahead).
        if let Err(nearest) = config.set_max_write(MAX_REQUEST_BYTES) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_REQUEST_BYTES) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        let _ = config.set_time_granularity(Duration::from_secs(1));
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.as_bytes();
        if name.len() > NAME_MAX {
            return reply.error(Errno::from_i32(libc::ENAMETOOLONG));
        }
        let result = self.guarded("lookup", parent.0, || {
            let dir = match self.inode_of(parent.0)? {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            };
            if !dir.is_dir() {
                return Ok(Err(Errno::ENOTDIR));
            }
            let Some(entry) = self.archive.lookup(&dir, name)? else {
                return Ok(Ok(None));
            };
            let child = self.archive.entry_inode(&dir, &entry)?;
            let attr = self.attr(&child)?;
            Ok(Ok(Some((attr, child.number, entry.inode_ref))))
        });
        match result {
            Ok(Some((attr, number, inode_ref))) => {
                self.nodes.remember(number, inode_ref);
                reply.entry(&self.ttl, &attr, Generation(0));
            }
            Ok(None) => reply.entry(&self.ttl, &negative_entry(), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.nodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let result = self.guarded("getattr", ino.0, || {
            let inode = match self.inode_of(ino.0)? {
                Ok(i) => i,
                Err(e) => return Ok(Err(e)),
            };
            Ok(Ok(self.attr(&inode)?))
        });
        match result {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let result = self.guarded("readlink", ino.0, || {
            let inode = match self.inode_of(ino.0)? {
                Ok(i) => i,
                Err(e) => return Ok(Err(e)),
            };
            if inode.file_type != FileType::Symlink {
                return Ok(Err(Errno::EINVAL));
            }
            Ok(Ok(self.archive.read_link(&inode)?))
        });
        match result {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return reply.error(erofs());
        }
        let result = self.guarded("open", ino.0, || self.inode_of(ino.0));
        match result {
            Ok(inode) if inode.is_dir() => reply.error(Errno::EISDIR),
            Ok(inode) => {
                let fh = self.files.insert(inode);
                reply.opened(FileHandle(fh), FILE_OPEN_FLAGS);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.do_read(ino.0, fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.remove(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _d: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(erofs());
        }
        let result = self.guarded("opendir", ino.0, || self.inode_of(ino.0));
        match result {
            Ok(inode) if inode.is_dir() => reply.opened(FileHandle(0), DIR_OPEN_FLAGS),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        let reply = std::cell::RefCell::new(reply);
        let result = self.fill_dir(
            ino.0,
            offset,
            |node, next, _dir, entry| {
                Ok(reply.borrow_mut().add(
                    INodeNo(node),
                    next,
                    fuse_type(entry.file_type),
                    OsStr::from_bytes(&entry.name),
                ))
            },
            |node, next, name, _dir| {
                reply.borrow_mut().add(
                    INodeNo(node),
                    next,
                    fuser::FileType::Directory,
                    OsStr::from_bytes(name),
                )
            },
        );
        let reply = reply.into_inner();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let reply = std::cell::RefCell::new(reply);
        let ttl = self.ttl;
        let result = self.fill_dir(
            ino.0,
            offset,
            |node, next, dir, entry| {
                let child = self.archive.entry_inode(dir, entry)?;
                let attr = self.attr(&child)?;
                let full = reply.borrow_mut().add(
                    INodeNo(node),
                    next,
                    OsStr::from_bytes(&entry.name),
                    &ttl,
                    &attr,
                    Generation(0),
                );
                if !full {
                    // The kernel now holds a reference, exactly as after a lookup.
                    self.nodes.remember(child.number, entry.inode_ref);
                }
                Ok(full)
            },
            |node, next, name, dir| {
                // The kernel ignores the attributes of "." and ".." (and takes no reference).
                let mut attr = match self.attr(dir) {
                    Ok(a) => a,
                    Err(_) => negative_entry(),
                };
                attr.ino = INodeNo(node);
                reply.borrow_mut().add(
                    INodeNo(node),
                    next,
                    OsStr::from_bytes(name),
                    &ttl,
                    &attr,
                    Generation(0),
                )
            },
        );
        let reply = reply.into_inner();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _d: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let sb = self.archive.superblock();
        let block = u64::from(sb.block_size);
        let blocks = sb.bytes_used.div_ceil(block);
        reply.statfs(
            blocks,
            0,
            0,
            u64::from(sb.inode_count),
            0,
            sb.block_size,
            NAME_MAX as u32,
            sb.block_size,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.xattr_value(ino.0, name.as_bytes()) {
            Ok(value) if size == 0 => reply.size(value.len() as u32),
            Ok(value) if value.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
            Ok(value) => reply.data(&value),
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.xattr_names(ino.0, req.uid() == 0) {
            Ok(list) if size == 0 => reply.size(list.len() as u32),
            Ok(list) if list.len() > size as usize => reply.error(Errno::from_i32(libc::ERANGE)),
            Ok(list) => reply.data(&list),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(erofs());
        }
        let result = self.guarded("access", ino.0, || self.inode_of(ino.0));
        let inode = match result {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        let mode = u32::from(inode.permissions);
        let allowed = if req.uid() == 0 {
            // Root may read anything and execute anything executable by someone.
            !mask.contains(AccessFlags::X_OK) || inode.is_dir() || mode & 0o111 != 0
        } else {
            let bits = if req.uid() == inode.uid {
                (mode >> 6) & 7
            } else if req.gid() == inode.gid {
                (mode >> 3) & 7
            } else {
                mode & 7
            };
            (!mask.contains(AccessFlags::R_OK) || bits & 4 != 0)
                && (!mask.contains(AccessFlags::X_OK) || bits & 1 != 0)
        };
        if allowed {
            reply.ok()
        } else {
            reply.error(Errno::EACCES)
        }
    }

    // Every operation that would change the image fails with EROFS.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(erofs());
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(erofs());
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(erofs());
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(erofs());
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(erofs());
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(erofs());
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(erofs());
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(erofs());
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(erofs());
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(erofs());
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(erofs());
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(erofs());
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(erofs());
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(erofs());
    }
}

impl SquashFs {
    /// Number of nodes the kernel currently holds (for tests and diagnostics).
    #[allow(dead_code)]
    pub(crate) fn known_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Number of open file handles.
    #[allow(dead_code)]
    pub(crate) fn open_files(&self) -> usize {
        self.files.len()
    }
}
