//! The FUSE adapter: translates kernel requests into overlay engine calls.
//!
//! Performance choices made here (see `docs/overlay.md`, *Concurrency and performance*):
//! - `readdirplus` returns attributes with every entry, so `ls -l`/`find`/`du` cost no lookup
//!   round trip per entry; attributes of lower-only nodes of directory layers are cached per
//!   node (lower layers never change, a copy-up switches the node to upper attributes); an
//!   image node's are rebuilt from the inode it holds.
//! - Files open in the upper directory use the kernel's FUSE passthrough when the kernel offers
//!   it (reads, writes and mmap go straight to the upper file), else writeback caching.
//!   The kernel refuses to mix cached and passthrough opens of one inode, so every handle's
//!   mode is tracked per node, and one backing id is shared by all passthrough opens.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};

use crate::core::{errno, NodeCtx, Overlay};
use crate::handle::Handle;
use crate::lower::{Kind, LowerObj};
use crate::namespace::{Caller, NewObject};
use crate::node::{split_path, NodeState, ROOT};
use crate::sys::{self, os};
use crate::IoMode;

/// Most lower-node attribute records (and "no capability" marks) kept; the cache is simply
/// emptied when full (entries are cheap to rebuild), which bounds memory whatever the size of
/// the layers. 57,344 is what a hash table of 65,536 slots holds before it doubles (its load
/// limit is 7/8), so the attribute table never exceeds 65,536 slots (~8 MB).
const ATTR_CACHE_MAX: usize = 57_344;

const SECURITY_CAPABILITY: &[u8] = b"security.capability";

/// The attribute changes of one `setattr` request.
struct SetAttr {
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    size: Option<u64>,
    atime: Option<TimeOrNow>,
    mtime: Option<TimeOrNow>,
}

/// The `fuser::Filesystem` implementation.
pub(crate) struct OverlayFs {
    pub ov: Arc<Overlay>,
    /// Use FUSE passthrough for upper files if the kernel offers it.
    pub want_passthrough: bool,
    /// Otherwise use the kernel's writeback cache if it offers that.
    pub want_writeback: bool,
    /// The negotiated [`IoMode`] (as `u8`), shared with the mount handle.
    pub mode: Arc<AtomicU8>,
    /// Attributes of lower-only nodes of directory layers by node id. Valid as long as the node
    /// is lower-only: a node id names one lower object, and lower objects never change.
    pub lower_attrs: Mutex<HashMap<u64, FileAttr>>,
    /// Kernel I/O mode of every open file handle, per node.
    pub io: Mutex<IoTable>,
    /// Open file handles, for [`crate::OverlayHandle`] to wait for in-flight releases.
    pub open_files: Arc<OpenFiles>,
    /// Nodes known to have no `security.capability`. The kernel asks for it before every
    /// write to a file (to drop file capabilities); the answer only changes through our own
    /// setxattr/removexattr, which clear the node's entry.
    pub no_caps: Mutex<HashSet<u64>>,
}

/// Count of open file handles. The kernel sends RELEASE asynchronously after `close`, and
/// with passthrough the kernel's backing file keeps a reference on the mount until the release
/// is answered, so an unmount right after the last `close` can fail with `EBUSY`: unmount
/// first waits (bounded) for the count to drop to zero.
#[derive(Default)]
pub(crate) struct OpenFiles {
    count: Mutex<usize>,
    idle: parking_lot::Condvar,
}

impl OpenFiles {
    fn opened(&self) {
        *self.count.lock() += 1;
    }

    fn released(&self) {
        let mut c = self.count.lock();
        *c = c.saturating_sub(1);
        if *c == 0 {
            self.idle.notify_all();
        }
    }

    /// Wait until no handle is open, at most `limit`; true if none is.
    pub(crate) fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut c = self.count.lock();
        while *c > 0 {
            if self.idle.wait_until(&mut c, deadline).timed_out() {
                break;
            }
        }
        *c == 0
    }
}

/// Open file handles per node, by kernel I/O mode. The kernel rejects (`EIO`) a passthrough
/// open of an inode that has cached opens and vice versa, and wants one backing id per inode.
#[derive(Default)]
pub(crate) struct IoTable {
    nodes: HashMap<u64, NodeIo>,
    /// File handle -> (node, opened in passthrough mode).
    handles: HashMap<u64, (u64, bool)>,
    /// A failed backing registration was logged already.
    warned: bool,
}

#[derive(Default)]
struct NodeIo {
    cached: u32,
    passthrough: u32,
    /// The registered backing file and the (st_dev, st_ino) of the upper file it stands for.
    backing: Option<(Arc<BackingId>, (u64, u64))>,
}

fn to_errno(e: io::Error) -> Errno {
    match e.raw_os_error() {
        Some(n) if n > 0 => Errno::from_i32(n),
        _ => {
            log::warn!("overlay: {e}");
            Errno::EIO
        }
    }
}

macro_rules! tri {
    ($reply:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => {
                $reply.error(to_errno(err));
                return;
            }
        }
    };
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn timespec(t: Option<TimeOrNow>) -> Timespec {
    match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            },
            Err(e) => {
                let d = e.duration();
                let mut sec = -(d.as_secs() as i64);
                let mut nsec = i64::from(d.subsec_nanos());
                if nsec > 0 {
                    sec -= 1;
                    nsec = 1_000_000_000 - nsec;
                }
                Timespec {
                    tv_sec: sec,
                    tv_nsec: nsec,
                }
            }
        },
    }
}

impl OverlayFs {
    pub(crate) fn new(
        ov: Arc<Overlay>,
        want_passthrough: bool,
        want_writeback: bool,
        mode: Arc<AtomicU8>,
    ) -> OverlayFs {
        OverlayFs {
            ov,
            want_passthrough,
            want_writeback,
            mode,
            lower_attrs: Mutex::new(HashMap::new()),
            io: Mutex::new(IoTable::default()),
            no_caps: Mutex::new(HashSet::new()),
            open_files: Arc::new(OpenFiles::default()),
        }
    }

    fn ttl(&self) -> std::time::Duration {
        self.ov.cfg.ttl
    }

    fn io_mode(&self) -> IoMode {
        IoMode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// Attributes of a lower-only node. An image object's are built from the decoded inode the
    /// node holds (its block list, for `st_blocks`, comes from the reader's own bounded cache),
    /// so they cost no record per node; a directory layer's need a `stat` and are cached.
    fn lower_attr(&self, state: &NodeState) -> io::Result<FileAttr> {
        if let Some((_, LowerObj::Image(_))) = state.lowers.first() {
            return self.ov.attr_from_lower(state);
        }
        if let Some(a) = self.cached_lower_attr(state.ino) {
            return Ok(a);
        }
        let a = self.ov.attr_from_lower(state)?;
        let mut c = self.lower_attrs.lock();
        if c.len() >= ATTR_CACHE_MAX {
            c.clear();
        }
        c.insert(state.ino, a);
        Ok(a)
    }

    fn cached_lower_attr(&self, ino: u64) -> Option<FileAttr> {
        self.lower_attrs.lock().get(&ino).copied()
    }

    /// Attributes of a node just resolved as `state` at (`parent_path`, `name`); the path is
    /// built only for an upper object (lower attributes need none).
    fn resolved_attr(
        &self,
        parent: u64,
        parent_path: &[u8],
        name: &[u8],
        state: NodeState,
    ) -> io::Result<(NodeState, FileAttr)> {
        if !state.upper {
            let attr = self.lower_attr(&state)?;
            return Ok((state, attr));
        }
        let child = NodeCtx {
            id: state.ino,
            parent,
            name: name.to_vec(),
            path: crate::node::join(parent_path, name),
            state,
        };
        let attr = self.ov.attr(&child)?;
        Ok((child.state, attr))
    }

    /// Decide how a new handle on `node` does its I/O and record it: passthrough (returns the
    /// backing id to reply with) when the mount negotiated it, the handle is on an upper file
    /// `fd`, and no cached handle of the node is open; the kernel page cache otherwise.
    fn begin_io(
        &self,
        node: u64,
        fd: Option<BorrowedFd<'_>>,
        register: &dyn Fn(BorrowedFd<'_>) -> io::Result<BackingId>,
    ) -> Option<Arc<BackingId>> {
        let mut io = self.io.lock();
        let IoTable { nodes, warned, .. } = &mut *io;
        let e = nodes.entry(node).or_default();
        let mut backing = None;
        if let (IoMode::Passthrough, Some(fd), 0) = (self.io_mode(), fd, e.cached) {
            let ident = rustix::fs::fstat(fd).ok().map(|st| (st.st_dev, st.st_ino));
            match (&e.backing, ident) {
                (Some((b, id)), Some(now)) if *id == now => backing = Some(b.clone()),
                (None, Some(now)) => match register(fd) {
                    Ok(b) => {
                        let b = Arc::new(b);
                        e.backing = Some((b.clone(), now));
                        backing = Some(b);
                    }
                    Err(err) => {
                        if !std::mem::replace(warned, true) {
                            log::warn!(
                                "FUSE passthrough registration failed ({err}); \
                                 serving this file through the daemon"
                            );
                        }
                    }
                },
                _ => {}
            }
        }
        if backing.is_some() {
            e.passthrough += 1;
        } else {
            e.cached += 1;
        }
        backing
    }

    /// Record the file handle number of a handle counted by `begin_io`.
    fn bind_io(&self, fh: FileHandle, node: u64, passthrough: bool) {
        self.io.lock().handles.insert(fh.0, (node, passthrough));
    }

    /// Forget a released handle; the backing id is closed with the node's last passthrough
    /// handle (the kernel has let go of it by the time it sends the release).
    fn end_io(&self, fh: FileHandle) {
        let mut io = self.io.lock();
        let Some((node, pt)) = io.handles.remove(&fh.0) else {
            return;
        };
        if let Some(e) = io.nodes.get_mut(&node) {
            if pt {
                e.passthrough = e.passthrough.saturating_sub(1);
                if e.passthrough == 0 {
                    e.backing = None;
                }
            } else {
                e.cached = e.cached.saturating_sub(1);
            }
            if e.passthrough == 0 && e.cached == 0 {
                io.nodes.remove(&node);
            }
        }
    }

    /// Open flags for an upper file. With the writeback cache the kernel also reads through
    /// write-only handles (to fill partial pages) and does `O_APPEND` itself, sending explicit
    /// offsets: open read-write and without `O_APPEND`.
    fn upper_open_flags(&self, flags: i32) -> i32 {
        if self.io_mode() != IoMode::WritebackCache {
            return flags;
        }
        let mut f = flags & !libc::O_APPEND;
        if f & libc::O_ACCMODE == libc::O_WRONLY {
            f = (f & !libc::O_ACCMODE) | libc::O_RDWR;
        }
        f
    }

    fn handle(&self, fh: FileHandle) -> io::Result<Arc<Handle>> {
        self.ov
            .handles
            .lock()
            .get(&fh.0)
            .cloned()
            .ok_or_else(|| errno(libc::EBADF))
    }

    fn add_handle(&self, h: Handle) -> FileHandle {
        let fh = self.ov.next_fh.fetch_add(1, Ordering::Relaxed);
        self.ov.handles.lock().insert(fh, Arc::new(h));
        FileHandle(fh)
    }

    /// Attributes of node `id`, preferring an open upper descriptor when given.
    fn getattr_inner(&self, id: u64, fh: Option<FileHandle>) -> io::Result<FileAttr> {
        if let Some(fh) = fh {
            if let Ok(h) = self.handle(fh) {
                if let Handle::Upper { fd, .. } = &*h {
                    let st = rustix::fs::fstat(fd)?;
                    let state = self.ov.state_of(id).ok_or_else(|| errno(libc::ENOENT))?;
                    return Ok(self.ov.attr_from_upper(&state, &st));
                }
            }
        }
        let _g = self.ov.ns.read();
        // A lower-only node: its attributes never change (the id names one lower object).
        // Checked without cloning the node's state.
        let lower_only = self.ov.table.lock().get(id).map(|n| !n.state.upper);
        if lower_only == Some(true) {
            if let Some(a) = self.cached_lower_attr(id) {
                return Ok(a);
            }
            if let Some(state) = self.ov.state_of(id) {
                if !state.upper {
                    return self.lower_attr(&state);
                }
            }
        }
        match self.ov.ctx(id) {
            Ok(ctx) => self.ov.attr(&ctx),
            Err(e) => {
                // A detached (unlinked) node that is still open: answer from an open
                // descriptor (the kernel's fstat carries no file handle).
                let state = self.ov.state_of(id).ok_or(e)?;
                if !state.upper {
                    return self.ov.attr_from_lower(&state);
                }
                let open = self.ov.handles.lock().values().find_map(|h| match &**h {
                    Handle::Upper { node, fd } if *node == id => Some(rustix::fs::fstat(fd)),
                    _ => None,
                });
                match open {
                    Some(st) => Ok(self.ov.attr_from_upper(&state, &st?)),
                    None => Err(errno(libc::ENOENT)),
                }
            }
        }
    }

    /// Register a newly created upper object as a looked-up node and build its attributes.
    fn enter_created(
        &self,
        parent: u64,
        name: &[u8],
        state: NodeState,
        st: &rustix::fs::Stat,
    ) -> (FileAttr, Generation) {
        let attr = self.ov.attr_from_upper(&state, st);
        let mut t = self.ov.table.lock();
        let id = t.insert_lookup(parent, name, state);
        (attr, Generation(t.generation(id)))
    }

    fn setattr_inner(&self, id: u64, a: SetAttr, fh: Option<FileHandle>) -> io::Result<FileAttr> {
        let SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        } = a;
        // Truncation through an open upper descriptor needs no path.
        let upper_fd = fh
            .and_then(|fh| self.handle(fh).ok())
            .filter(|h| matches!(**h, Handle::Upper { .. }));
        let ctx = {
            // The file's data is copied before the exclusive lock (copyup.rs).
            let _prepared = self.ov.prepare_copy_up(id)?;
            let _g = self.ov.ns.write();
            match self.ov.copy_up_node(id) {
                Ok(ctx) => Some(ctx),
                Err(e) if upper_fd.is_some() && e.raw_os_error() == Some(libc::ENOENT) => None,
                Err(e) => return Err(e),
            }
        };
        let _g = self.ov.ns.read();
        // Its path again: a rename may have run between the two locks.
        let ctx = ctx.and_then(|_| self.ov.ctx(id).ok());
        let Some(ctx) = ctx else {
            // Detached (unlinked) but open: operate on the descriptor only.
            let h = upper_fd.ok_or_else(|| errno(libc::ENOENT))?;
            let Handle::Upper { fd, .. } = &*h else {
                return Err(errno(libc::ENOENT));
            };
            if let Some(sz) = size {
                rustix::fs::ftruncate(fd, sz)?;
            }
            if let Some(m) = mode {
                rustix::fs::fchmod(fd, Mode::from_raw_mode(m & 0o7777))?;
            }
            if uid.is_some() || gid.is_some() {
                rustix::fs::fchown(fd, uid.map(Uid::from_raw), gid.map(Gid::from_raw))?;
            }
            if atime.is_some() || mtime.is_some() {
                rustix::fs::futimens(
                    fd,
                    &Timestamps {
                        last_access: timespec(atime),
                        last_modification: timespec(mtime),
                    },
                )?;
            }
            return self.getattr_inner(id, fh);
        };
        let (pp, name) = split_path(&ctx.path);
        let pdir = self.ov.upper.open_dir(pp)?;
        let name: &[u8] = if id == ROOT { b"." } else { name };
        if uid.is_some() || gid.is_some() {
            rustix::fs::chownat(
                pdir.as_fd(),
                os(name),
                uid.map(Uid::from_raw),
                gid.map(Gid::from_raw),
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if let Some(m) = mode {
            rustix::fs::chmodat(
                pdir.as_fd(),
                os(name),
                Mode::from_raw_mode(m & 0o7777),
                AtFlags::empty(),
            )?;
        }
        if let Some(sz) = size {
            match upper_fd.as_deref() {
                Some(Handle::Upper { fd, .. }) => rustix::fs::ftruncate(fd, sz)?,
                _ => {
                    if ctx.state.kind != Kind::File {
                        return Err(errno(libc::EINVAL));
                    }
                    let fd = rustix::fs::openat(
                        pdir.as_fd(),
                        os(name),
                        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                        Mode::empty(),
                    )?;
                    rustix::fs::ftruncate(&fd, sz)?;
                }
            }
        }
        if atime.is_some() || mtime.is_some() {
            rustix::fs::utimensat(
                pdir.as_fd(),
                os(name),
                &Timestamps {
                    last_access: timespec(atime),
                    last_modification: timespec(mtime),
                },
                AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        let ctx = self.ov.ctx(id)?;
        self.ov.attr(&ctx)
    }

    fn open_inner(&self, id: u64, flags: i32) -> io::Result<(Handle, FopenFlags)> {
        let acc = flags & libc::O_ACCMODE;
        let writes = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let ctx = if writes {
            let _prepared = self.ov.prepare_copy_up(id)?;
            let _g = self.ov.ns.write();
            self.ov.copy_up_node(id)?
        } else {
            let _g = self.ov.ns.read();
            self.ov.ctx(id)?
        };
        if ctx.state.kind == Kind::Dir {
            return Err(errno(libc::EISDIR));
        }
        if !ctx.state.upper {
            let (i, obj) = ctx.state.lowers.first().ok_or_else(|| errno(libc::EIO))?;
            let file = self.ov.layers[*i].open_file(obj)?;
            // Lower contents never change, so the kernel may keep cached pages across opens
            // (after a copy-up every open is an upper one, which drops them).
            return Ok((
                Handle::Lower {
                    node: id,
                    file,
                    upper: OnceLock::new(),
                },
                FopenFlags::FOPEN_KEEP_CACHE,
            ));
        }
        let _g = self.ov.ns.read();
        // Its path again: a rename may have run between the two locks (a copied-up node
        // stays in the upper directory).
        let ctx = self.ov.ctx(id)?;
        let fd = match self.open_upper(&ctx.path, self.upper_open_flags(flags)) {
            // Read access added for the writeback cache may be refused to a daemon without
            // CAP_DAC_OVERRIDE; the kernel then cannot fill partial pages, but writes work.
            Err(e) if e.raw_os_error() == Some(libc::EACCES) && acc == libc::O_WRONLY => {
                self.open_upper(&ctx.path, flags & !libc::O_APPEND)?
            }
            r => r?,
        };
        Ok((Handle::Upper { node: id, fd }, FopenFlags::empty()))
    }

    fn open_upper(&self, path: &[u8], flags: i32) -> io::Result<OwnedFd> {
        let (pp, name) = split_path(path);
        let pdir = self.ov.upper.open_dir(pp)?;
        let keep = libc::O_ACCMODE
            | libc::O_APPEND
            | libc::O_TRUNC
            | libc::O_SYNC
            | libc::O_DSYNC
            | libc::O_NOATIME
            | libc::O_DIRECT;
        let of =
            OFlags::from_bits_retain((flags & keep) as u32) | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(rustix::fs::openat(
            pdir.as_fd(),
            os(name),
            of,
            Mode::empty(),
        )?)
    }

    fn read_inner(&self, fh: FileHandle, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let h = self.handle(fh)?;
        let mut buf = vec![0u8; size as usize];
        let n = match &*h {
            Handle::Upper { fd, .. } => sys::pread_full(fd, &mut buf, offset)?,
            Handle::Lower { node, file, upper } => {
                if let Some(fd) = upper.get() {
                    sys::pread_full(fd, &mut buf, offset)?
                } else {
                    let copied = {
                        let _g = self.ov.ns.read();
                        match self.ov.ctx(*node) {
                            Ok(ctx) if ctx.state.upper => {
                                Some(self.open_upper(&ctx.path, libc::O_RDONLY)?)
                            }
                            _ => None,
                        }
                    };
                    match copied {
                        Some(fd) => {
                            let fd = upper.get_or_init(|| fd);
                            sys::pread_full(fd, &mut buf, offset)?
                        }
                        None => file.read_at(offset, &mut buf)?,
                    }
                }
            }
            Handle::Dir(_) => return Err(errno(libc::EISDIR)),
        };
        buf.truncate(n);
        Ok(buf)
    }

    fn upper_fd(&self, fh: FileHandle) -> io::Result<Arc<Handle>> {
        let h = self.handle(fh)?;
        match &*h {
            Handle::Upper { .. } => Ok(h),
            _ => Err(errno(libc::EBADF)),
        }
    }

    fn xattr_target(&self, id: u64) -> io::Result<(crate::core::NodeCtx, OwnedFd, Vec<u8>)> {
        let ctx = self.ov.ctx(id)?;
        let (pp, name) = split_path(&ctx.path);
        let name = if id == ROOT {
            b".".to_vec()
        } else {
            name.to_vec()
        };
        let pdir = self.ov.upper.open_dir(pp)?;
        Ok((ctx, pdir, name))
    }

    fn getxattr_inner(&self, id: u64, key: &[u8]) -> io::Result<Vec<u8>> {
        if self.ov.upper.is_private_xattr(key) {
            return Err(errno(libc::ENODATA));
        }
        let is_cap = key == SECURITY_CAPABILITY;
        if is_cap && self.no_caps.lock().contains(&id) {
            return Err(errno(libc::ENODATA));
        }
        // Held until the answer is recorded, so a concurrent setxattr (exclusive) cannot slip
        // in between reading and caching.
        let _g = self.ov.ns.read();
        let r = self.getxattr_uncached(id, key);
        if is_cap && matches!(&r, Err(e) if e.raw_os_error() == Some(libc::ENODATA)) {
            let mut c = self.no_caps.lock();
            if c.len() >= ATTR_CACHE_MAX {
                c.clear();
            }
            c.insert(id);
        }
        r
    }

    /// Caller holds the namespace lock (shared).
    fn getxattr_uncached(&self, id: u64, key: &[u8]) -> io::Result<Vec<u8>> {
        // Lower-only nodes need no path: answered from the image (an inode without xattrs
        // costs nothing), which keeps the security.* and ACL probes of `ls -l` (two per entry)
        // cheap. The common "image inode without xattrs" answer is found without copying
        // the node's state.
        {
            let t = self.ov.table.lock();
            let n = t.get(id).ok_or_else(|| errno(libc::ENOENT))?;
            if let (false, Some((_, LowerObj::Image(inode)))) =
                (n.state.upper, n.state.lowers.first())
            {
                if inode.xattr_index.is_none() {
                    return Err(errno(libc::ENODATA));
                }
            }
        }
        let state = self.ov.state_of(id).ok_or_else(|| errno(libc::ENOENT))?;
        if state.upper {
            let (_, pdir, name) = self.xattr_target(id)?;
            sys::get_xattr(pdir.as_fd(), &name, os(key))?.ok_or_else(|| errno(libc::ENODATA))
        } else {
            let (i, obj) = state.lowers.first().ok_or_else(|| errno(libc::EIO))?;
            self.ov.layers[*i]
                .xattrs(obj)?
                .into_iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .ok_or_else(|| errno(libc::ENODATA))
        }
    }

    fn listxattr_inner(&self, id: u64) -> io::Result<Vec<u8>> {
        let _g = self.ov.ns.read();
        let ctx = self.ov.ctx(id)?;
        let names: Vec<Vec<u8>> = if ctx.state.upper {
            let (_, pdir, name) = self.xattr_target(id)?;
            sys::list_xattr_names(pdir.as_fd(), &name)?
        } else {
            let (i, obj) = ctx.state.lowers.first().ok_or_else(|| errno(libc::EIO))?;
            self.ov.layers[*i]
                .xattrs(obj)?
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        };
        let mut out = Vec::new();
        for n in names {
            if !self.ov.upper.is_private_xattr(&n) {
                out.extend_from_slice(&n);
                out.push(0);
            }
        }
        Ok(out)
    }

    fn change_xattr(&self, id: u64, key: &[u8], set: Option<(&[u8], i32)>) -> io::Result<()> {
        if self.ov.upper.is_private_xattr(key) {
            return Err(errno(libc::EPERM));
        }
        // Removing an attribute may need no copy-up (checked below, under the lock).
        let _prepared = match set {
            Some(_) => self.ov.prepare_copy_up(id)?,
            None => None,
        };
        let _g = self.ov.ns.write();
        // Dropped under the exclusive lock, so no reader can re-add a stale "none" meanwhile
        // (readers take the shared lock before they look).
        self.no_caps.lock().remove(&id);
        let ctx = self.ov.ctx(id)?;
        if !ctx.state.upper && set.is_none() {
            // Removing an attribute that does not exist needs no copy-up.
            let (i, obj) = ctx.state.lowers.first().ok_or_else(|| errno(libc::EIO))?;
            if !self.ov.layers[*i]
                .xattrs(obj)?
                .iter()
                .any(|(k, _)| k == key)
            {
                return Err(errno(libc::ENODATA));
            }
        }
        self.ov.copy_up_node(id)?;
        let (_, pdir, name) = self.xattr_target(id)?;
        match set {
            Some((value, flags)) => sys::set_xattr(
                pdir.as_fd(),
                &name,
                os(key),
                value,
                XattrFlags::from_bits_retain(flags as u32),
            ),
            None => sys::remove_xattr(pdir.as_fd(), &name, os(key)),
        }
    }

    fn create_reply_entry(
        &self,
        parent: u64,
        name: &OsStr,
        obj: NewObject<'_>,
        req: &Request,
        reply: ReplyEntry,
    ) {
        let _g = self.ov.ns.write();
        let c = tri!(
            reply,
            self.ov
                .create_object(parent, name.as_bytes(), obj, caller(req))
        );
        let (attr, generation) = self.enter_created(parent, name.as_bytes(), c.state, &c.stat);
        reply.entry(&self.ttl(), &attr, generation);
    }
}

fn reply_xattr(reply: ReplyXattr, data: Vec<u8>, size: u32) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(&data);
    }
}

impl Filesystem for OverlayFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let caps = config.capabilities();
        for want in [
            // Attributes with every directory entry (not only the first page, as the kernel's
            // "auto" mode does: ls reads the whole listing before it stats anything).
            InitFlags::FUSE_DO_READDIRPLUS,
            // Symlink targets never change in place (lower: immutable; upper: replaced).
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            if caps.contains(want) {
                let _ = config.add_capabilities(want);
            }
        }
        let _ = config.set_max_background(64);
        let mut mode = IoMode::Daemon;
        // Registering backing files needs CAP_SYS_ADMIN; without it do not give up the
        // writeback cache for a passthrough that would always fail.
        if self.want_passthrough
            && self.ov.cfg.running_as_root
            && caps.contains(InitFlags::FUSE_PASSTHROUGH)
            && config.set_max_stack_depth(1).is_ok()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
        {
            mode = IoMode::Passthrough;
        } else if self.want_writeback
            && caps.contains(InitFlags::FUSE_WRITEBACK_CACHE)
            && config
                .add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE)
                .is_ok()
        {
            // The kernel does not allow passthrough and writeback caching together.
            mode = IoMode::WritebackCache;
        }
        log::debug!("overlay I/O mode: {mode:?}");
        self.mode.store(mode as u8, Ordering::Relaxed);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _g = self.ov.ns.read();
        let pctx = tri!(reply, self.ov.ctx(parent.0));
        let state = match tri!(reply, self.ov.resolve_child(&pctx, name.as_bytes())) {
            Some(s) => s,
            None => return reply.error(Errno::ENOENT),
        };
        let (state, attr) = tri!(
            reply,
            self.resolved_attr(parent.0, &pctx.path, name.as_bytes(), state)
        );
        let generation = {
            let mut t = self.ov.table.lock();
            let id = t.insert_lookup(parent.0, name.as_bytes(), state);
            Generation(t.generation(id))
        };
        reply.entry(&self.ttl(), &attr, generation);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.ov.table.lock().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let attr = tri!(reply, self.getattr_inner(ino.0, fh));
        reply.attr(&self.ttl(), &attr);
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let attr = tri!(
            reply,
            self.setattr_inner(
                ino.0,
                SetAttr {
                    mode,
                    uid,
                    gid,
                    size,
                    atime,
                    mtime
                },
                fh
            )
        );
        reply.attr(&self.ttl(), &attr);
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let _g = self.ov.ns.read();
        let ctx = tri!(reply, self.ov.ctx(ino.0));
        if ctx.state.kind != Kind::Symlink {
            return reply.error(Errno::EINVAL);
        }
        let target = if ctx.state.upper {
            let (pp, name) = split_path(&ctx.path);
            let pdir = tri!(reply, self.ov.upper.open_dir(pp));
            tri!(
                reply,
                rustix::fs::readlinkat(pdir.as_fd(), os(name), Vec::new())
                    .map(|c| c.into_bytes())
                    .map_err(io::Error::from)
            )
        } else {
            let (i, obj) = tri!(
                reply,
                ctx.state.lowers.first().ok_or_else(|| errno(libc::EIO))
            );
            tri!(reply, self.ov.layers[*i].read_link(obj))
        };
        reply.data(&target);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = Kind::from_mode(mode);
        if kind == Kind::Dir || kind == Kind::Symlink {
            return reply.error(Errno::EINVAL);
        }
        if kind == Kind::Char && rdev == 0 {
            // That is a whiteout on disk; kernel overlayfs refuses it the same way.
            return reply.error(Errno::EPERM);
        }
        self.create_reply_entry(
            parent.0,
            name,
            NewObject::Special {
                kind,
                mode,
                rdev: u64::from(rdev),
            },
            req,
            reply,
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.create_reply_entry(parent.0, name, NewObject::Dir { mode }, req, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _g = self.ov.ns.write();
        tri!(reply, self.ov.unlink(parent.0, name.as_bytes()));
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let _g = self.ov.ns.write();
        tri!(reply, self.ov.rmdir(parent.0, name.as_bytes()));
        reply.ok();
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.create_reply_entry(
            parent.0,
            link_name,
            NewObject::Symlink {
                target: target.as_os_str().as_bytes(),
            },
            req,
            reply,
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // A lower file that moves is copied up: its data before the exclusive lock.
        let src = self.ov.table.lock().child(parent.0, name.as_bytes());
        let _prepared = match src {
            Some(id) => tri!(reply, self.ov.prepare_copy_up(id)),
            None => None,
        };
        let _g = self.ov.ns.write();
        tri!(
            reply,
            self.ov.rename(
                parent.0,
                name.as_bytes(),
                newparent.0,
                newname.as_bytes(),
                flags.bits()
            )
        );
        reply.ok();
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _prepared = tri!(reply, self.ov.prepare_copy_up(ino.0));
        let _g = self.ov.ns.write();
        let (state, st) = tri!(reply, self.ov.link(ino.0, newparent.0, newname.as_bytes()));
        let (attr, generation) = self.enter_created(newparent.0, newname.as_bytes(), state, &st);
        reply.entry(&self.ttl(), &attr, generation);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (h, fl) = tri!(reply, self.open_inner(ino.0, flags.0));
        let backing = match &h {
            Handle::Upper { node, fd } => {
                self.begin_io(*node, Some(fd.as_fd()), &|fd| reply.open_backing(fd))
            }
            _ => self.begin_io(ino.0, None, &|fd| reply.open_backing(fd)),
        };
        let node = match &h {
            Handle::Upper { node, .. } | Handle::Lower { node, .. } => *node,
            Handle::Dir(_) => ino.0,
        };
        let fh = self.add_handle(h);
        self.bind_io(fh, node, backing.is_some());
        self.open_files.opened();
        match backing {
            Some(b) => reply.opened_passthrough(fh, fl, &b),
            None => reply.opened(fh, fl),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let data = tri!(reply, self.read_inner(fh, offset, size));
        reply.data(&data);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let h = tri!(reply, self.upper_fd(fh));
        let Handle::Upper { fd, .. } = &*h else {
            return reply.error(Errno::EBADF);
        };
        tri!(reply, sys::pwrite_all(fd.as_fd(), data, offset));
        reply.written(data.len() as u32);
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
        self.ov.handles.lock().remove(&fh.0);
        self.end_io(fh);
        reply.ok();
        // After the reply: the kernel drops its passthrough backing file (and with it a
        // reference on the mount) while handling it.
        self.open_files.released();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let h = tri!(reply, self.handle(fh));
        // Volatile mode omits every sync of the upper filesystem (like the kernel's).
        if self.ov.cfg.volatile {
            return reply.ok();
        }
        if let Handle::Upper { fd, .. } = &*h {
            let r = if datasync {
                rustix::fs::fdatasync(fd)
            } else {
                rustix::fs::fsync(fd)
            };
            tri!(reply, r.map_err(io::Error::from));
        }
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let _g = self.ov.ns.read();
        let ctx = tri!(reply, self.ov.ctx(ino.0));
        if ctx.state.kind != Kind::Dir {
            return reply.error(Errno::ENOTDIR);
        }
        let parent_ino = if ino.0 == ROOT {
            ctx.state.ino
        } else {
            self.ov
                .state_of(ctx.parent)
                .map(|s| s.ino)
                .unwrap_or(ctx.state.ino)
        };
        let items = tri!(reply, self.ov.snapshot(&ctx, parent_ino));
        let fh = self.add_handle(Handle::Dir(items));
        reply.opened(fh, FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let h = tri!(reply, self.handle(fh));
        let Handle::Dir(items) = &*h else {
            return reply.error(Errno::EBADF);
        };
        for i in offset as usize..items.len() {
            let Some(item) = items.get(i) else { break };
            if reply.add(
                INodeNo(item.ino),
                (i + 1) as u64,
                item.kind.to_fuse(),
                os(item.name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let h = tri!(reply, self.handle(fh));
        let Handle::Dir(items) = &*h else {
            return reply.error(Errno::EBADF);
        };
        let ttl = self.ttl();
        let _g = self.ov.ns.read();
        // A directory removed while open has nothing left to show but "." and "..".
        let dir = self.ov.ctx(ino.0).ok();
        // Its upper directory, opened once for the page (each entry checks it for a shadow).
        let upper_dir = match &dir {
            Some(d) if d.state.upper => match self.ov.upper.open_dir(&d.path) {
                Ok(fd) => Some(fd),
                Err(e) => return reply.error(to_errno(e)),
            },
            _ => None,
        };
        let mut added = 0usize;
        for i in offset as usize..items.len() {
            let Some(item) = items.get(i) else { break };
            let off = (i + 1) as u64;
            if item.name == b"." || item.name == b".." {
                // The kernel links no inode for these (no lookup reference): only the
                // entry's inode number and type are used.
                let attr = dot_attr(item.ino);
                if reply.add(
                    INodeNo(item.ino),
                    off,
                    os(item.name),
                    &ttl,
                    &attr,
                    Generation(0),
                ) {
                    break;
                }
                added += 1;
                continue;
            }
            let Some(dir) = &dir else { continue };
            let resolved = self
                .ov
                .resolve_listed(dir, upper_dir.as_ref().map(|f| f.as_fd()), &item)
                .and_then(|state| match state {
                    None => Ok(None),
                    Some(state) => self
                        .resolved_attr(ino.0, &dir.path, item.name, state)
                        .map(Some),
                });
            let (state, attr) = match resolved {
                Ok(Some(v)) => v,
                Ok(None) => {
                    // Removed since opendir. The stream still shows its snapshot (as plain
                    // readdir does), but no inode may be linked for the name. fuser sends
                    // the attribute inode as node id, and the kernel links nothing for the
                    // root's id (it answers with a FORGET of the root, which we ignore), so
                    // the entry is listed with d_ino 1 and no dentry is created.
                    let mut attr = dot_attr(ROOT);
                    attr.kind = item.kind.to_fuse();
                    if reply.add(
                        INodeNo(ROOT),
                        off,
                        os(item.name),
                        &ttl,
                        &attr,
                        Generation(0),
                    ) {
                        break;
                    }
                    added += 1;
                    continue;
                }
                Err(e) if added == 0 => return reply.error(to_errno(e)),
                // Report what fits; the next call starts at this entry and fails there.
                Err(_) => break,
            };
            // Every entry sent carries one lookup reference, exactly like a lookup reply.
            let (id, generation) = {
                let mut t = self.ov.table.lock();
                let id = t.insert_lookup(ino.0, item.name, state);
                (id, Generation(t.generation(id)))
            };
            if reply.add(INodeNo(id), off, os(item.name), &ttl, &attr, generation) {
                // Did not fit: the kernel never sees it, so give the reference back.
                self.ov.table.lock().forget(id, 1);
                break;
            }
            added += 1;
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.ov.handles.lock().remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if self.ov.cfg.volatile {
            return reply.ok();
        }
        let _g = self.ov.ns.read();
        let ctx = tri!(reply, self.ov.ctx(ino.0));
        if ctx.state.upper {
            let fd = tri!(reply, self.ov.upper.open_dir_for_listing(&ctx.path));
            tri!(reply, rustix::fs::fsync(&fd).map_err(io::Error::from));
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = tri!(reply, self.ov.upper.statfs());
        reply.statfs(
            s.f_blocks,
            s.f_bfree,
            s.f_bavail,
            s.f_files,
            s.f_ffree,
            s.f_bsize as u32,
            s.f_namelen as u32,
            s.f_frsize as u32,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        tri!(
            reply,
            self.change_xattr(ino.0, name.as_bytes(), Some((value, flags)))
        );
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let v = tri!(reply, self.getxattr_inner(ino.0, name.as_bytes()));
        reply_xattr(reply, v, size);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let v = tri!(reply, self.listxattr_inner(ino.0));
        reply_xattr(reply, v, size);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        tri!(reply, self.change_xattr(ino.0, name.as_bytes(), None));
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Only reached without `default_permissions`; the kernel then checks nothing itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let _g = self.ov.ns.write();
        let c = tri!(
            reply,
            self.ov.create_object(
                parent.0,
                name.as_bytes(),
                NewObject::File {
                    mode,
                    flags: self.upper_open_flags(flags)
                },
                caller(req)
            )
        );
        let Some(fd) = c.fd else {
            return reply.error(Errno::EIO);
        };
        let ino = c.state.ino;
        let (attr, generation) = self.enter_created(parent.0, name.as_bytes(), c.state, &c.stat);
        let backing = self.begin_io(ino, Some(fd.as_fd()), &|fd| reply.open_backing(fd));
        let fh = self.add_handle(Handle::Upper { node: ino, fd });
        self.bind_io(fh, ino, backing.is_some());
        self.open_files.opened();
        match backing {
            Some(b) => reply.created_passthrough(
                &self.ttl(),
                &attr,
                generation,
                fh,
                FopenFlags::empty(),
                &b,
            ),
            None => reply.created(&self.ttl(), &attr, generation, fh, FopenFlags::empty()),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let h = tri!(reply, self.upper_fd(fh));
        let Handle::Upper { fd, .. } = &*h else {
            return reply.error(Errno::EBADF);
        };
        tri!(
            reply,
            rustix::fs::fallocate(
                fd,
                rustix::fs::FallocateFlags::from_bits_retain(mode as u32),
                offset,
                length
            )
            .map_err(io::Error::from)
        );
        reply.ok();
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let h = tri!(reply, self.handle(fh));
        match &*h {
            Handle::Upper { fd, .. } => {
                let pos = match whence {
                    libc::SEEK_DATA => rustix::fs::SeekFrom::Data(offset as u64),
                    libc::SEEK_HOLE => rustix::fs::SeekFrom::Hole(offset as u64),
                    libc::SEEK_SET => rustix::fs::SeekFrom::Start(offset as u64),
                    libc::SEEK_END => rustix::fs::SeekFrom::End(offset),
                    _ => rustix::fs::SeekFrom::Current(offset),
                };
                let r = tri!(reply, rustix::fs::seek(fd, pos).map_err(io::Error::from));
                reply.offset(r as i64);
            }
            _ => reply.error(Errno::from_i32(libc::ENOSYS)),
        }
    }
}

/// Placeholder attributes for the "." and ".." entries of a `readdirplus` reply.
fn dot_attr(ino: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: fuser::FileType::Directory,
        perm: 0o755,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}
