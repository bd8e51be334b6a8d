//! The iterative tree walk (main thread) and the file-content workers (rayon pool).
//!
//! The walker reads every listing in order and does all name checks (safe names, strict
//! ordering), loop detection and hard-link bookkeeping on one thread. It creates directories,
//! symlinks, device nodes and the first name of every multiply linked inode itself. Regular
//! files with a single name are handed to a worker as (parent directory, checked name): the
//! worker creates the file with `openat(parent_fd, name, O_CREAT|O_EXCL|O_NOFOLLOW)`, streams
//! the content block by block and sets the file's metadata. Creating the file on the worker
//! matters: allocating an inode is the largest kernel cost of extraction (tens of
//! microseconds each on ext4), and on the walker it serialised the whole run.
//!
//! The number of files in flight is bounded, so open fds, names and buffers are bounded too.
//! A directory gets its metadata (mode, owner, times) once the walker has left it *and* every
//! worker creating a file in it has done so: whoever finishes last applies it (see
//! [`DirNode`]), so a read-only final mode never blocks a pending creation and a late creation
//! never bumps the directory's restored mtime.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rustix::fs::{self as rfs, Mode, OFlags};
use rustix::io::Errno;
use squashbox_format::reader::ReadDir;
use squashbox_format::{Archive, FileType, Inode, InodeKind, InodeRef};

use crate::dest::Destination;
use crate::error::{ExtractError, Result};
use crate::names::{self, escape};
use crate::{fsops, ExtractOptions, ExtractSummary, OwnerPolicy, MAX_WARNINGS};

/// State shared between the walker and the workers.
struct Shared<'a> {
    archive: &'a Archive,
    owners: OwnerPolicy,
    block_size: usize,
    failed: AtomicBool,
    first_error: Mutex<Option<ExtractError>>,
    warnings: Mutex<(Vec<String>, u64)>,
    bytes: AtomicU64,
    slots: Slots,
}

impl Shared<'_> {
    fn fail(&self, error: ExtractError) {
        self.failed.store(true, Ordering::SeqCst);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(error);
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    fn warn(&self, message: String) {
        let mut w = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
        if w.0.len() < MAX_WARNINGS {
            w.0.push(message);
        } else {
            w.1 += 1;
        }
    }

    fn restore_owners(&self) -> bool {
        match self.owners {
            OwnerPolicy::Auto => fsops::running_as_root(),
            OwnerPolicy::Restore => true,
            OwnerPolicy::Skip => false,
        }
    }

    /// Handle a failed chown according to the owner policy.
    fn chown_failed(&self, path: &str, e: io::Error) -> Result<()> {
        if self.owners == OwnerPolicy::Auto
            && matches!(
                e.raw_os_error(),
                Some(code) if code == Errno::PERM.raw_os_error() || code == Errno::INVAL.raw_os_error()
            )
        {
            self.warn(format!("{path}: could not restore owner: {e}"));
            Ok(())
        } else {
            Err(ExtractError::io(path, "chown", e))
        }
    }

    /// Handle a failed setxattr: refusals become warnings, real I/O failures errors.
    fn xattr_failed(&self, path: &str, name: &[u8], e: io::Error) -> Result<()> {
        let refused = matches!(
            e.raw_os_error(),
            Some(code) if code == Errno::PERM.raw_os_error()
                || code == Errno::ACCESS.raw_os_error()
                || code == Errno::NOTSUP.raw_os_error()
                || code == Errno::INVAL.raw_os_error()
        );
        if refused {
            self.warn(format!("{path}: could not set xattr {}: {e}", escape(name)));
            Ok(())
        } else {
            Err(ExtractError::io(path, "set xattr", e))
        }
    }
}

/// A counting semaphore bounding the files in flight.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn new(n: usize) -> Self {
        Slots {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}

/// A directory that entries are being created in, shared by the walker and the workers that
/// create regular files in it.
///
/// `pending` counts the walker's hold (released when the walk leaves the directory) plus one
/// per file creation handed to a worker and not yet done. Whoever brings it to zero applies
/// the directory's metadata: only then is it certain that no entry will be added any more.
/// The fd was opened with `O_DIRECTORY|O_NOFOLLOW` when the walker created (or, with force,
/// reused) the directory, so even if the path is swapped for a symlink meanwhile, creations
/// through the fd land in the directory we made.
struct DirNode {
    fd: OwnedFd,
    /// The directory's inode and display path; `None` for the destination root when a single
    /// non-directory entry is extracted into it (its mode was already set).
    finish: Option<(Inode, String)>,
    pending: AtomicUsize,
}

impl DirNode {
    fn new(fd: OwnedFd, finish: Option<(Inode, String)>) -> Arc<DirNode> {
        Arc::new(DirNode {
            fd,
            finish,
            pending: AtomicUsize::new(1),
        })
    }

    /// Register one more pending creation (by a worker).
    fn hold(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// End one hold; the last one applies the directory's metadata. Errors go to `shared`
    /// (the walker stops at its next entry and reports the first error).
    fn release(&self, shared: &Shared<'_>) {
        // AcqRel: the last releaser must see every other holder's creations as done.
        if self.pending.fetch_sub(1, Ordering::AcqRel) != 1 || shared.failed() {
            return;
        }
        if let Some((inode, path)) = &self.finish {
            if let Err(e) = set_metadata_fd(shared, self.fd.as_fd(), inode, path) {
                shared.fail(e);
            }
        }
    }
}

/// Releases a [`DirNode`] hold on drop, so a worker that fails or panics still lets the
/// directory finish (or the error path proceed).
struct DirHold<'s, 'a> {
    dir: Arc<DirNode>,
    shared: &'s Shared<'a>,
}

impl Drop for DirHold<'_, '_> {
    fn drop(&mut self) {
        self.dir.release(self.shared);
    }
}

/// One directory being extracted.
struct Frame<'a> {
    inode: Inode,
    dir: Arc<DirNode>,
    entries: ReadDir<'a>,
    previous: Option<Vec<u8>>,
    /// Display path relative to the destination ("" for the root).
    path: String,
    /// Raw name in its parent ("" for the root).
    name: Vec<u8>,
}

#[derive(Default)]
struct Counts {
    directories: u64,
    files: u64,
    symlinks: u64,
    devices: u64,
    fifos: u64,
    sockets: u64,
    hard_links: u64,
}

/// Extract `start` (already looked up at `sub`) into `destination`.
pub(crate) fn run(
    archive: &Archive,
    start: &Inode,
    sub: &[u8],
    destination: &Destination,
    options: &ExtractOptions,
    pool: &rayon::ThreadPool,
) -> Result<ExtractSummary> {
    let block_size = archive.superblock().block_size as usize;
    let shared = Shared {
        archive,
        owners: options.owners,
        block_size,
        failed: AtomicBool::new(false),
        first_error: Mutex::new(None),
        warnings: Mutex::new((Vec::new(), 0)),
        bytes: AtomicU64::new(0),
        slots: Slots::new(pool.current_num_threads().max(1) * 4),
    };
    let mut counts = Counts::default();
    let walked = pool.in_place_scope(|scope| {
        let mut walker = Walker {
            shared: &shared,
            root: destination.root(),
            replace: destination.replaces_existing(),
            max_depth: options.max_depth,
            visited_refs: HashSet::new(),
            visited_numbers: HashSet::new(),
            links: HashMap::new(),
            counts: &mut counts,
        };
        let result = walker.walk(start, sub, scope);
        if result.is_err() {
            // Stop the workers early; they check this flag between blocks.
            shared.failed.store(true, Ordering::SeqCst);
        }
        result
    });
    walked?;
    if let Some(e) = shared
        .first_error
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
    {
        return Err(e);
    }
    let (warnings, warnings_dropped) = shared
        .warnings
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    Ok(ExtractSummary {
        directories: counts.directories,
        files: counts.files,
        symlinks: counts.symlinks,
        devices: counts.devices,
        fifos: counts.fifos,
        sockets: counts.sockets,
        hard_links: counts.hard_links,
        bytes: shared.bytes.into_inner(),
        warnings,
        warnings_dropped,
    })
}

struct Walker<'a, 's, 'd> {
    shared: &'s Shared<'a>,
    root: BorrowedFd<'d>,
    replace: bool,
    max_depth: usize,
    visited_refs: HashSet<InodeRef>,
    visited_numbers: HashSet<u32>,
    /// Inode number -> path components (relative to the root) of its first extracted name.
    links: HashMap<u32, Vec<Vec<u8>>>,
    counts: &'s mut Counts,
}

impl<'a, 's, 'd> Walker<'a, 's, 'd>
where
    'a: 's,
{
    fn walk(&mut self, start: &Inode, sub: &[u8], scope: &rayon::Scope<'s>) -> Result<()> {
        if !start.is_dir() {
            // A single non-directory entry: extract it as DEST/<its name>.
            let name = sub
                .rsplit(|&b| b == b'/')
                .find(|c| !c.is_empty())
                .unwrap_or(b"");
            let root = self.root;
            fsops::fchmod(root, 0o755).map_err(|e| ExtractError::io("", "chmod", e))?;
            let root_fd = rustix::io::fcntl_dupfd_cloexec(root, 0)
                .map_err(|e| ExtractError::io("", "dup destination fd", e))?;
            let node = DirNode::new(root_fd, None);
            let result = self.extract_entry(&node, &[], "", name, start.clone(), scope);
            node.release(self.shared);
            return result;
        }
        self.enter_dir_check(start, "/")?;
        let root_fd = rustix::io::fcntl_dupfd_cloexec(self.root, 0)
            .map_err(|e| ExtractError::io("", "dup destination fd", e))?;
        let entries = self
            .shared
            .archive
            .read_dir(start)
            .map_err(|e| ExtractError::image("/", e))?;
        let mut stack: Vec<Frame<'a>> = vec![Frame {
            inode: start.clone(),
            dir: DirNode::new(root_fd, Some((start.clone(), "/".to_string()))),
            entries,
            previous: None,
            path: String::new(),
            name: Vec::new(),
        }];
        while let Some(frame) = stack.last_mut() {
            if self.shared.failed() {
                break;
            }
            let entry = match frame.entries.next() {
                None => {
                    // Done listing: drop the walker's hold. The directory's metadata is applied
                    // now, or by the worker that creates its last pending file.
                    let frame = stack.pop().expect("stack is non-empty");
                    frame.dir.release(self.shared);
                    continue;
                }
                Some(Err(e)) => return Err(ExtractError::image(display_dir(&frame.path), e)),
                Some(Ok(entry)) => entry,
            };
            let dir_display = display_dir(&frame.path);
            if !names::is_safe_name(&entry.name) {
                return Err(ExtractError::UnsafeName {
                    dir: dir_display,
                    name: escape(&entry.name),
                });
            }
            if let Some(previous) = &frame.previous {
                check_order(previous, &entry.name, &dir_display)?;
            }
            frame.previous = Some(entry.name.clone());
            let path = names::join(&frame.path, &entry.name);
            // entry_inode checks the link itself (inode number, type, a subdirectory's parent
            // field), so a corrupt listing fails here instead of extracting the wrong inode.
            let inode = self
                .shared
                .archive
                .entry_inode(&frame.inode, &entry)
                .map_err(|e| ExtractError::image(&path, e))?;
            if inode.file_type != entry.file_type {
                return Err(ExtractError::TypeMismatch { path });
            }
            if inode.is_dir() {
                if stack.len() > self.max_depth {
                    return Err(ExtractError::TooDeep {
                        path,
                        max_depth: self.max_depth,
                    });
                }
                self.enter_dir_check(&inode, &path)?;
                let parent = stack.last().expect("stack is non-empty");
                let fd = self.make_dir(parent.dir.fd.as_fd(), &entry.name, &path)?;
                self.counts.directories += 1;
                let entries = self
                    .shared
                    .archive
                    .read_dir(&inode)
                    .map_err(|e| ExtractError::image(&path, e))?;
                let finish = Some((inode.clone(), path.clone()));
                stack.push(Frame {
                    inode,
                    dir: DirNode::new(fd, finish),
                    entries,
                    previous: None,
                    path,
                    name: entry.name,
                });
            } else {
                // Only the first name of a multiply linked inode is remembered.
                let components: Vec<&[u8]> = if inode.nlink > 1 {
                    stack[1..].iter().map(|f| f.name.as_slice()).collect()
                } else {
                    Vec::new()
                };
                let parent = Arc::clone(&stack.last().expect("stack is non-empty").dir);
                self.extract_entry(&parent, &components, &path, &entry.name, inode, scope)?;
            }
        }
        Ok(())
    }

    fn enter_dir_check(&mut self, inode: &Inode, path: &str) -> Result<()> {
        if !self.visited_refs.insert(inode.inode_ref) || !self.visited_numbers.insert(inode.number)
        {
            return Err(ExtractError::DirectoryLoop {
                path: path.to_string(),
                inode: inode.number,
            });
        }
        Ok(())
    }

    /// Create (or, with force, reuse) directory `name` in `parent`.
    fn make_dir(&self, parent: BorrowedFd<'_>, name: &[u8], path: &str) -> Result<OwnedFd> {
        match fsops::create_dir(parent, name) {
            Ok(fd) => Ok(fd),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.replace => {
                let existing = fsops::entry_type(parent, name)
                    .map_err(|e| ExtractError::io(path, "stat existing entry", e))?;
                if existing == Some(rfs::FileType::Directory) {
                    let fd = fsops::open_dir(parent, name)
                        .map_err(|e| ExtractError::io(path, "open existing directory", e))?;
                    // Make sure we can populate it; the final mode is applied afterwards.
                    let _ = rfs::fchmod(&fd, Mode::RWXU);
                    return Ok(fd);
                }
                fsops::remove_entry(parent, name)
                    .map_err(|e| ExtractError::io(path, "remove existing entry", e))?;
                fsops::create_dir(parent, name)
                    .map_err(|e| ExtractError::io(path, "create directory", e))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(ExtractError::AlreadyExists {
                    path: path.to_string(),
                })
            }
            Err(e) => Err(ExtractError::io(path, "create directory", e)),
        }
    }

    /// [`create_replacing`] with this walk's replace policy.
    fn create_replacing<T>(
        &self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &str,
        op: &'static str,
        create: impl Fn() -> io::Result<T>,
    ) -> Result<T> {
        create_replacing(self.replace, parent, name, path, op, create)
    }

    /// Extract one non-directory entry into `parent_dir`.
    fn extract_entry(
        &mut self,
        parent_dir: &Arc<DirNode>,
        components: &[&[u8]],
        path: &str,
        name: &[u8],
        inode: Inode,
        scope: &rayon::Scope<'s>,
    ) -> Result<()> {
        let parent = parent_dir.fd.as_fd();
        if inode.nlink > 1 {
            if let Some(first) = self.links.get(&inode.number) {
                self.link_to_first(first, parent, name, path)?;
                self.counts.hard_links += 1;
                return Ok(());
            }
            let mut first: Vec<Vec<u8>> = components.iter().map(|c| c.to_vec()).collect();
            first.push(name.to_vec());
            self.links.insert(inode.number, first);
        }
        let shared = self.shared;
        match inode.file_type {
            FileType::Regular => {
                // The first name of a multiply linked inode must exist before the walker meets
                // the next name (it links to it right away), so the walker creates it. Every
                // other file is created by the worker, off the serial path.
                let target = if inode.nlink > 1 {
                    FileTarget::Open(self.create_replacing(
                        parent,
                        name,
                        path,
                        "create file",
                        || fsops::create_file(parent, name),
                    )?)
                } else {
                    parent_dir.hold();
                    FileTarget::Create {
                        hold: DirHold {
                            dir: Arc::clone(parent_dir),
                            shared,
                        },
                        name: name.to_vec(),
                    }
                };
                self.counts.files += 1;
                let slot = shared.slots.acquire();
                let replace = self.replace;
                let path = path.to_string();
                scope.spawn(move |_| {
                    let _slot = slot;
                    if let Err(e) = file_job(shared, replace, target, &inode, &path) {
                        shared.fail(e);
                    }
                });
            }
            FileType::Symlink => {
                let target = shared
                    .archive
                    .read_link(&inode)
                    .map_err(|e| ExtractError::image(path, e))?;
                self.create_replacing(parent, name, path, "create symlink", || {
                    fsops::create_symlink(parent, name, &target)
                })?;
                self.counts.symlinks += 1;
                set_metadata_at(shared, parent, name, &inode, path, true)?;
            }
            FileType::CharDevice | FileType::BlockDevice | FileType::Fifo | FileType::Socket => {
                let node_type = match inode.file_type {
                    FileType::CharDevice => rfs::FileType::CharacterDevice,
                    FileType::BlockDevice => rfs::FileType::BlockDevice,
                    FileType::Fifo => rfs::FileType::Fifo,
                    _ => rfs::FileType::Socket,
                };
                let rdev = fsops::decode_rdev(inode.rdev());
                let created = self.create_replacing(parent, name, path, "create node", || {
                    fsops::create_node(parent, name, node_type, rdev)
                });
                match created {
                    Ok(()) => {}
                    // Without CAP_MKNOD devices cannot be made: like unsquashfs, skip them
                    // with a warning rather than fail the whole extraction.
                    Err(ExtractError::Io { source, .. })
                        if matches!(
                            node_type,
                            rfs::FileType::CharacterDevice | rfs::FileType::BlockDevice
                        ) && source.raw_os_error() == Some(Errno::PERM.raw_os_error()) =>
                    {
                        shared.warn(format!("{path}: device not created: {source}"));
                        self.links.remove(&inode.number);
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
                match inode.file_type {
                    FileType::CharDevice | FileType::BlockDevice => self.counts.devices += 1,
                    FileType::Fifo => self.counts.fifos += 1,
                    _ => self.counts.sockets += 1,
                }
                set_metadata_at(shared, parent, name, &inode, path, false)?;
            }
            FileType::Directory => unreachable!("directories are handled by the walk"),
        }
        Ok(())
    }

    /// Hard-link `parent/name` to the first extracted name of the same inode.
    fn link_to_first(
        &self,
        first: &[Vec<u8>],
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &str,
    ) -> Result<()> {
        let (first_name, dirs) = first.split_last().expect("a path has a last component");
        // Walk down from the root without following symlinks. O_PATH needs no read
        // permission, so directories already made read-only still resolve.
        let mut dir: Option<OwnedFd> = None;
        for component in dirs {
            let base = dir.as_ref().map(|d| d.as_fd()).unwrap_or(self.root);
            let next = rfs::openat(
                base,
                component.as_slice(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ExtractError::io(path, "open hard link source directory", e))?;
            dir = Some(next);
        }
        let source_dir = dir.as_ref().map(|d| d.as_fd()).unwrap_or(self.root);
        self.create_replacing(parent, name, path, "create hard link", || {
            fsops::hard_link(source_dir, first_name, parent, name)
        })
    }
}

/// Where a worker writes a regular file.
enum FileTarget<'s, 'a> {
    /// Already created by the walker.
    Open(OwnedFd),
    /// To be created by the worker as `name` (checked by the walker) in the held directory.
    Create {
        hold: DirHold<'s, 'a>,
        name: Vec<u8>,
    },
}

/// A worker's job: create the file if needed, then write it.
fn file_job(
    shared: &Shared<'_>,
    replace: bool,
    target: FileTarget<'_, '_>,
    inode: &Inode,
    path: &str,
) -> Result<()> {
    let fd = match target {
        FileTarget::Open(fd) => fd,
        FileTarget::Create { hold, name } => {
            if shared.failed() {
                return Ok(());
            }
            let parent = hold.dir.fd.as_fd();
            let fd = create_replacing(replace, parent, &name, path, "create file", || {
                fsops::create_file(parent, &name)
            })?;
            // The directory entry exists: the directory may be finished now, while we write.
            drop(hold);
            fd
        }
    };
    if shared.failed() {
        return Ok(());
    }
    write_regular(shared, inode, fd.as_fd(), path)
}

/// Run `create`; if the name is taken and we may replace, remove what is there (without
/// following it) and try once more.
fn create_replacing<T>(
    replace: bool,
    parent: BorrowedFd<'_>,
    name: &[u8],
    path: &str,
    op: &'static str,
    create: impl Fn() -> io::Result<T>,
) -> Result<T> {
    match create() {
        Ok(v) => Ok(v),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && replace => {
            fsops::remove_entry(parent, name)
                .map_err(|e| ExtractError::io(path, "remove existing entry", e))?;
            create().map_err(|e| ExtractError::io(path, op, e))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(ExtractError::AlreadyExists {
            path: path.to_string(),
        }),
        Err(e) => Err(ExtractError::io(path, op, e)),
    }
}

/// Entries must be strictly increasing bytewise: a duplicate name is how CVE-2021-41072
/// images plant a symlink and then write through it.
fn check_order(previous: &[u8], name: &[u8], dir: &str) -> Result<()> {
    match name.cmp(previous) {
        std::cmp::Ordering::Greater => Ok(()),
        std::cmp::Ordering::Equal => Err(ExtractError::DuplicateEntry {
            dir: dir.to_string(),
            name: escape(name),
        }),
        std::cmp::Ordering::Less => Err(ExtractError::UnsortedEntries {
            dir: dir.to_string(),
            name: escape(name),
            previous: escape(previous),
        }),
    }
}

fn display_dir(path: &str) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}

thread_local! {
    static BLOCK_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Stream a regular file's content into `fd` one block at a time, leaving all-zero blocks as
/// holes, then apply its metadata.
fn write_regular(shared: &Shared<'_>, inode: &Inode, fd: BorrowedFd<'_>, path: &str) -> Result<()> {
    let InodeKind::File { size, .. } = inode.kind else {
        return Err(ExtractError::TypeMismatch {
            path: path.to_string(),
        });
    };
    // A file stored entirely as sparse blocks needs no reads: its length alone makes the hole.
    let all_holes = size > 0
        && shared
            .archive
            .allocated_bytes(inode)
            .map_err(|e| ExtractError::image(path, e))?
            == 0;
    let size_to_copy = if all_holes { 0 } else { size };
    // The file was created empty (O_EXCL), so its length is where the last write ended.
    let written_end = BLOCK_BUFFER.with(|cell| -> Result<u64> {
        let mut buf = cell.borrow_mut();
        buf.resize(shared.block_size, 0);
        let mut offset = 0u64;
        let mut written_end = 0u64;
        while offset < size_to_copy {
            if shared.failed() {
                return Ok(written_end);
            }
            let want = (size - offset).min(shared.block_size as u64) as usize;
            // Blocks the image stores as sparse stay holes without being read (a multi-GiB
            // sparse file costs nothing); other all-zero blocks are caught after reading.
            let sparse = shared
                .archive
                .is_sparse_block(inode, offset / shared.block_size as u64)
                .map_err(|e| ExtractError::image(path, e))?;
            if sparse {
                offset += want as u64;
                continue;
            }
            let chunk = &mut buf[..want];
            let mut filled = 0;
            while filled < want {
                let n = shared
                    .archive
                    .read_at(inode, offset + filled as u64, &mut chunk[filled..])
                    .map_err(|e| ExtractError::image(path, e))?;
                if n == 0 {
                    return Err(ExtractError::image(
                        path,
                        squashbox_format::Error::corrupt(
                            format!(
                                "file data ends at {} of {size} bytes",
                                offset + filled as u64
                            ),
                            inode.inode_ref.0,
                        ),
                    ));
                }
                filled += n;
            }
            if !is_all_zero(chunk) {
                fsops::pwrite_all(fd, chunk, offset)
                    .map_err(|e| ExtractError::io(path, "write", e))?;
                written_end = offset + want as u64;
            }
            offset += want as u64;
        }
        Ok(written_end)
    })?;
    if shared.failed() {
        return Ok(());
    }
    // Only a trailing hole needs the length set; skipping the no-op call saves a journalled
    // inode update per file.
    if written_end != size {
        fsops::ftruncate(fd, size).map_err(|e| ExtractError::io(path, "set file length", e))?;
    }
    shared.bytes.fetch_add(size, Ordering::Relaxed);
    set_metadata_fd(shared, fd, inode, path)
}

fn is_all_zero(data: &[u8]) -> bool {
    let (head, words, tail) = {
        // SAFETY: every bit pattern is a valid u64, and align_to only reinterprets the
        // correctly aligned middle part of the slice.
        unsafe { data.align_to::<u64>() }
    };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Metadata through an fd (regular files, directories). Order matters: chown clears setuid
/// and file capabilities, so it comes first; xattrs (which may need write access) before the
/// final chmod; times last.
fn set_metadata_fd(
    shared: &Shared<'_>,
    fd: BorrowedFd<'_>,
    inode: &Inode,
    path: &str,
) -> Result<()> {
    if shared.restore_owners() {
        if let Err(e) = fsops::fchown(fd, inode.uid, inode.gid) {
            shared.chown_failed(path, e)?;
        }
    }
    if inode.xattr_index.is_some() {
        let xattrs = shared
            .archive
            .xattrs(inode)
            .map_err(|e| ExtractError::image(path, e))?;
        for x in xattrs {
            if let Err(e) = fsops::fsetxattr(fd, &x.name, &x.value) {
                shared.xattr_failed(path, &x.name, e)?;
            }
        }
    }
    fsops::fchmod(fd, inode.permissions).map_err(|e| ExtractError::io(path, "chmod", e))?;
    fsops::futimens(fd, inode.mtime).map_err(|e| ExtractError::io(path, "set times", e))
}

/// Metadata by name without following (symlinks, devices, fifos, sockets).
fn set_metadata_at(
    shared: &Shared<'_>,
    dir: BorrowedFd<'_>,
    name: &[u8],
    inode: &Inode,
    path: &str,
    is_symlink: bool,
) -> Result<()> {
    if shared.restore_owners() {
        if let Err(e) = fsops::lchown_at(dir, name, inode.uid, inode.gid) {
            shared.chown_failed(path, e)?;
        }
    }
    if inode.xattr_index.is_some() {
        let xattrs = shared
            .archive
            .xattrs(inode)
            .map_err(|e| ExtractError::image(path, e))?;
        for x in xattrs {
            if let Err(e) = fsops::lsetxattr_at(dir, name, &x.name, &x.value) {
                shared.xattr_failed(path, &x.name, e)?;
            }
        }
    }
    if !is_symlink {
        fsops::chmod_node_at(dir, name, inode.permissions)
            .map_err(|e| ExtractError::io(path, "chmod", e))?;
    }
    fsops::lutimens_at(dir, name, inode.mtime).map_err(|e| ExtractError::io(path, "set times", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_check_rejects_duplicates_and_unsorted_names() {
        assert!(check_order(b"a", b"b", "/").is_ok());
        assert!(check_order(b"a", b"a\x00", "/").is_ok());
        assert!(
            check_order(b"Z", b"a", "/").is_ok(),
            "bytewise, not case-insensitive"
        );
        assert!(matches!(
            check_order(b"x", b"x", "/d"),
            Err(ExtractError::DuplicateEntry { ref dir, ref name }) if dir == "/d" && name == "x"
        ));
        assert!(matches!(
            check_order(b"b", b"a", "/"),
            Err(ExtractError::UnsortedEntries { ref name, ref previous, .. })
                if name == "a" && previous == "b"
        ));
        assert!(check_order(b"ab", b"a", "/").is_err(), "prefix sorts first");
    }

    #[test]
    fn zero_detection() {
        assert!(is_all_zero(&[]));
        assert!(is_all_zero(&[0u8; 4099]));
        let mut v = vec![0u8; 4099];
        for i in [0, 7, 8, 4000, 4098] {
            v[i] = 1;
            assert!(!is_all_zero(&v), "byte {i}");
            v[i] = 0;
        }
    }
}
