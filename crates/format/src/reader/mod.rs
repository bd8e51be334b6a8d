//! The image reader.
//!
//! [`Archive`] is `Send + Sync`: share it in an `Arc` and read from many threads. Opening reads
//! only the superblock, compressor options and the small lookup-table indexes; inodes and
//! directories are decoded on demand through byte-budgeted caches of decompressed metadata and
//! data blocks, so memory does not grow with the number of files in the image.
//!
//! Every structure read from the image is validated before use; a hostile image yields
//! [`Error`](crate::Error), never a panic, an unbounded allocation, or an endless loop.

// IMPLEMENTATION NOTE (lead): the public surface below is the contract other crates code
// against. Internals (submodules for metadata blocks, inodes, directories, tables, xattrs,
// caches, file data) are free to change; keep the public signatures stable or tell the lead.

mod cache;
mod dir;
mod file;
mod inode;
mod metadata;
mod tables;
mod walk;
mod xattr;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::compress::{Codec, CompressorOptions};
use crate::error::{Error, Result};
use crate::layout::{flags, Superblock, METADATA_BLOCK_SIZE, SUPERBLOCK_SIZE};
use crate::source::ReadAt;

use cache::Cache;
use dir::DirState;
use file::{Block, FileLayout};
use metadata::{MetaBlock, MetaCursor, Region};
use tables::Tables;

pub use file::DataExtent;
pub use inode::MAX_SYMLINK_TARGET;
pub use walk::{VisitedDirs, Walk, WalkEntry};

/// A reference to an inode: `(metadata block offset within the inode table) << 16 | offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeRef(pub u64);

impl InodeRef {
    /// Byte offset of the metadata block, relative to the inode table start.
    pub fn block(self) -> u64 {
        self.0 >> 16
    }

    /// Offset of the inode within the decompressed metadata block.
    pub fn offset(self) -> u16 {
        (self.0 & 0xFFFF) as u16
    }
}

/// The type of an inode, as POSIX sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// A directory.
    Directory,
    /// A regular file.
    Regular,
    /// A symbolic link.
    Symlink,
    /// A block device.
    BlockDevice,
    /// A character device.
    CharDevice,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
}

impl FileType {
    /// The `S_IFMT` bits for this type (e.g. `0o040000` for a directory).
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Directory => 0o040000,
            FileType::Regular => 0o100000,
            FileType::Symlink => 0o120000,
            FileType::BlockDevice => 0o060000,
            FileType::CharDevice => 0o020000,
            FileType::Fifo => 0o010000,
            FileType::Socket => 0o140000,
        }
    }
}

/// A decoded inode: everything `stat` needs, plus where its payload lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    /// Where this inode is stored.
    pub inode_ref: InodeRef,
    /// Inode number (1-based, unique within the image; hard links share it).
    pub number: u32,
    /// File type.
    pub file_type: FileType,
    /// Permission bits including setuid/setgid/sticky (the low 12 bits of `st_mode`).
    pub permissions: u16,
    /// Owner, resolved through the id table.
    pub uid: u32,
    /// Group, resolved through the id table.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Link count (1 for basic file inodes).
    pub nlink: u32,
    /// Index into the xattr id table, if the inode has xattrs.
    pub xattr_index: Option<u32>,
    /// Type-specific payload.
    pub kind: InodeKind,
}

/// Type-specific inode payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InodeKind {
    /// A directory (basic or extended).
    Directory {
        /// Metadata block of the listing, relative to the directory table start.
        block_start: u32,
        /// Offset of the listing in that decompressed block.
        block_offset: u16,
        /// Listing size as stored (includes the 3 bytes for "." and "..").
        file_size: u32,
        /// Inode number of the parent directory.
        parent_inode: u32,
        /// Number of directory index entries (extended directories only; 0 otherwise).
        index_count: u32,
    },
    /// A regular file (basic or extended).
    File {
        /// File size in bytes.
        size: u64,
        /// Image offset of the first data block.
        blocks_start: u64,
        /// Fragment index and offset within the fragment, if the tail is in a fragment.
        fragment: Option<(u32, u32)>,
        /// Bytes saved by sparse blocks (extended inodes; 0 otherwise).
        sparse: u64,
        /// Number of entries in the block-size list.
        block_count: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Length of the target in bytes.
        target_len: u32,
    },
    /// A block or character device.
    Device {
        /// Device number as stored (Linux `new_encode_dev` layout).
        rdev: u32,
    },
    /// A fifo or socket.
    Ipc,
}

impl Inode {
    /// Full `st_mode`: type bits | permission bits.
    pub fn mode(&self) -> u32 {
        self.file_type.mode_bits() | u32::from(self.permissions)
    }

    /// `st_size`: file size, symlink target length, directory listing size; 0 otherwise.
    pub fn size(&self) -> u64 {
        match &self.kind {
            InodeKind::File { size, .. } => *size,
            InodeKind::Symlink { target_len } => u64::from(*target_len),
            InodeKind::Directory { file_size, .. } => u64::from(*file_size),
            _ => 0,
        }
    }

    /// Device number (`st_rdev`), 0 for non-devices.
    pub fn rdev(&self) -> u32 {
        match self.kind {
            InodeKind::Device { rdev } => rdev,
            _ => 0,
        }
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }
}

/// One directory entry, as yielded by [`Archive::read_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Entry name (raw bytes; never empty, never `.`/`..`, never contains `/` or NUL: entries
    /// breaking that rule are reported as corruption).
    pub name: Vec<u8>,
    /// The entry's inode.
    pub inode_ref: InodeRef,
    /// The entry's inode number.
    pub inode_number: u32,
    /// The entry's type (basic type as stored in the listing).
    pub file_type: FileType,
    /// Position just after this entry, for resuming with [`Archive::read_dir_from`]. Stable
    /// for the life of the image; suitable as a FUSE readdir offset.
    pub next_position: u64,
}

/// One extended attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Xattr {
    /// Full name including the namespace prefix, e.g. `user.comment`, `security.selinux`.
    pub name: Vec<u8>,
    /// Value (may be empty).
    pub value: Vec<u8>,
}

/// Options for [`Archive::open_with`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Byte budget for decompressed metadata blocks (default 8 MiB). Three quarters hold
    /// metadata blocks, one quarter the decoded block lists of recently read files.
    pub metadata_cache_bytes: usize,
    /// Byte budget for decompressed data and fragment blocks (default 32 MiB).
    pub data_cache_bytes: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            metadata_cache_bytes: 8 << 20,
            data_cache_bytes: 32 << 20,
        }
    }
}

/// Counters of the reader's work, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Metadata blocks requested (cache hits and misses).
    pub metadata_fetches: u64,
    /// Metadata blocks read from the source and decoded (cache misses).
    pub metadata_decodes: u64,
    /// Data and fragment blocks read from the source and decoded (cache misses).
    pub data_decodes: u64,
    /// Bytes currently held by the caches.
    pub cached_bytes: u64,
}

#[derive(Default)]
struct Stats {
    metadata_fetches: AtomicU64,
    metadata_decodes: AtomicU64,
    data_decodes: AtomicU64,
}

/// An open SquashFS image.
pub struct Archive {
    source: Arc<dyn ReadAt>,
    superblock: Superblock,
    codec: Codec,
    compressor_options: Option<CompressorOptions>,
    tables: Tables,
    meta_cache: Cache<u64, MetaBlock>,
    data_cache: Cache<(u64, u32), Block>,
    layout_cache: Cache<u64, FileLayout>,
    stats: Stats,
    /// The root inode once decoded and checked: every path lookup starts there.
    root: OnceLock<Inode>,
}

/// Streaming iterator over a directory's entries, in on-disk (sorted) order.
///
/// After yielding an error the iterator ends.
pub struct ReadDir<'a> {
    archive: &'a Archive,
    state: DirState,
}

impl Iterator for ReadDir<'_> {
    type Item = Result<DirEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.state.next_entry(self.archive).transpose()
    }
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("superblock", &self.superblock)
            .field("compressor_options", &self.compressor_options)
            .finish_non_exhaustive()
    }
}

impl Archive {
    /// Open an image with default options.
    pub fn open(source: impl ReadAt + 'static) -> Result<Self> {
        Self::open_with(source, OpenOptions::default())
    }

    /// Open the image file at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Self::open(file)
    }

    /// Open an image with explicit cache budgets.
    pub fn open_with(source: impl ReadAt + 'static, options: OpenOptions) -> Result<Self> {
        let source: Arc<dyn ReadAt> = Arc::new(source);
        let image_len = source
            .len()
            .map_err(|e| Error::io("querying the image size", e))?;
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        source.read_exact_at(0, &mut raw).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt("image is shorter than a superblock", 0)
            } else {
                Error::io("reading the superblock", e)
            }
        })?;
        let superblock = Superblock::parse(&raw, image_len)?;
        if superblock.bytes_used > image_len {
            return Err(Error::corrupt(
                format!(
                    "superblock says {} bytes are used but the image has {image_len}",
                    superblock.bytes_used
                ),
                0,
            ));
        }
        let block_size = superblock.block_size as usize;
        let meta_budget = options.metadata_cache_bytes;
        let mut archive = Archive {
            source,
            codec: Codec::for_reading(superblock.compressor, None, superblock.block_size)?,
            compressor_options: None,
            tables: Tables::empty(),
            meta_cache: Cache::new(meta_budget - meta_budget / 4, METADATA_BLOCK_SIZE + 64),
            data_cache: Cache::new(options.data_cache_bytes, block_size + 64),
            layout_cache: Cache::new(meta_budget / 4, 4096),
            stats: Stats::default(),
            root: OnceLock::new(),
            superblock,
        };
        if archive.superblock.has_flag(flags::COMPRESSOR_OPTIONS) {
            let region = Region {
                name: "compressor options",
                start: SUPERBLOCK_SIZE as u64,
                end: archive.superblock.inode_table_start,
            };
            // Data blocks follow the options block; the inode table only bounds it.
            let block = archive.metadata_block(region.start, &region)?;
            let options =
                CompressorOptions::parse(archive.superblock.compressor, &block.data, region.start)?;
            archive.codec = Codec::for_reading(
                archive.superblock.compressor,
                Some(options.clone()),
                archive.superblock.block_size,
            )?;
            archive.compressor_options = Some(options);
        }
        archive.tables = Tables::load(&archive, &archive.superblock)?;
        Ok(archive)
    }

    /// The validated superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.superblock
    }

    /// Compressor options stored in the image, if any.
    pub fn compressor_options(&self) -> Option<&CompressorOptions> {
        self.compressor_options.as_ref()
    }

    /// Work counters (cumulative since open) and current cache occupancy.
    pub fn stats(&self) -> ReaderStats {
        ReaderStats {
            metadata_fetches: self.stats.metadata_fetches.load(Ordering::Relaxed),
            metadata_decodes: self.stats.metadata_decodes.load(Ordering::Relaxed),
            data_decodes: self.stats.data_decodes.load(Ordering::Relaxed),
            cached_bytes: (self.meta_cache.bytes()
                + self.data_cache.bytes()
                + self.layout_cache.bytes()) as u64,
        }
    }

    /// The root directory inode.
    pub fn root(&self) -> Result<Inode> {
        if let Some(root) = self.root.get() {
            return Ok(root.clone());
        }
        let root = self.inode(InodeRef(self.superblock.root_inode_ref))?;
        if !root.is_dir() {
            return Err(Error::corrupt(
                "the root inode is not a directory",
                self.tables.inode.start,
            ));
        }
        // The image is immutable, so a decoded root stays valid; a failed decode is not
        // cached and fails again next time.
        Ok(self.root.get_or_init(|| root).clone())
    }

    /// Decode the inode at `r`.
    pub fn inode(&self, r: InodeRef) -> Result<Inode> {
        Ok(self.decode_inode(r)?.inode)
    }

    /// Decode an inode by number through the export table.
    /// Fails with [`Error::Unsupported`](crate::Error::Unsupported) if the image has none.
    pub fn inode_by_number(&self, number: u32) -> Result<Inode> {
        let table = self.tables.export.as_ref().ok_or_else(|| {
            Error::Unsupported("the image has no export table (made with -no-exports)".into())
        })?;
        if number == 0 || number > self.superblock.inode_count {
            return Err(Error::NotFound(format!("inode number {number}")));
        }
        let mut entry = [0u8; 8];
        table.read_entry(self, u64::from(number - 1), &mut entry)?;
        let inode = self.inode(InodeRef(u64::from_le_bytes(entry)))?;
        if inode.number != number {
            return Err(Error::corrupt(
                format!(
                    "export table entry for inode {number} points at inode {}",
                    inode.number
                ),
                table.first_block(),
            ));
        }
        Ok(inode)
    }

    /// Decode the inode a directory entry of `parent` points at, checking that the link is
    /// consistent: the inode number and (basic) type match the entry, and a subdirectory's
    /// parent field names `parent` and differs from it. Walkers should use this rather than
    /// [`Archive::inode`], and must also track entered directories ([`VisitedDirs`]) to catch
    /// loops and multiply-linked directories.
    pub fn entry_inode(&self, parent: &Inode, entry: &DirEntry) -> Result<Inode> {
        let inode = self.inode(entry.inode_ref)?;
        let mismatch = |what: String| {
            Error::corrupt(
                format!(
                    "entry {:?} of directory inode {}: {what}",
                    String::from_utf8_lossy(&entry.name),
                    parent.number
                ),
                self.tables.inode.start + entry.inode_ref.block(),
            )
        };
        if inode.number != entry.inode_number {
            return Err(mismatch(format!(
                "entry says inode {} but the inode is number {}",
                entry.inode_number, inode.number
            )));
        }
        if inode.file_type != entry.file_type {
            return Err(mismatch(format!(
                "entry type {:?} differs from inode type {:?}",
                entry.file_type, inode.file_type
            )));
        }
        if let InodeKind::Directory { parent_inode, .. } = inode.kind {
            if inode.number == parent.number || parent_inode != parent.number {
                return Err(mismatch(format!(
                    "subdirectory inode {} names parent {parent_inode}",
                    inode.number
                )));
            }
        }
        Ok(inode)
    }

    /// Find `name` in directory `dir`, using the extended directory index when present so a
    /// lookup in a huge directory does not scan the whole listing.
    pub fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<DirEntry>> {
        self.find_entry(dir, name)
    }

    /// Resolve a `/`-separated path from the root (leading `/` optional; `""` and `"/"` are the
    /// root). Symlinks are not followed. Missing components give
    /// [`Error::NotFound`](crate::Error::NotFound). Empty and `.` components are skipped;
    /// `..` goes back one component (lexically; it stays at the root).
    pub fn lookup_path(&self, path: impl AsRef<[u8]>) -> Result<Inode> {
        let path = path.as_ref();
        let mut stack = vec![self.root()?];
        for component in path.split(|&b| b == b'/') {
            match component {
                b"" | b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let dir = stack.last().expect("stack holds the root");
            if !dir.is_dir() {
                return Err(Error::WrongType {
                    path: String::from_utf8_lossy(path).into_owned(),
                    expected: "a directory for every non-final component",
                });
            }
            let Some(entry) = self.lookup(dir, component)? else {
                return Err(Error::NotFound(String::from_utf8_lossy(path).into_owned()));
            };
            let inode = self.entry_inode(dir, &entry)?;
            stack.push(inode);
        }
        Ok(stack.pop().expect("stack holds the root"))
    }

    /// Iterate over the entries of `dir` from the start.
    pub fn read_dir(&self, dir: &Inode) -> Result<ReadDir<'_>> {
        self.read_dir_from(dir, 0)
    }

    /// Iterate over the entries of `dir` starting after the entry whose `next_position` is
    /// `position` (0 = from the start).
    ///
    /// Positions are the kernel's `f_pos`: 3 plus the listing bytes up to the end of the entry,
    /// so they are always above 3 and at most the directory's `file_size`; 0..=3 mean "from
    /// the start" (FUSE callers may use 1 and 2 for `.` and `..`). The directory index is used
    /// to jump near `position`, so resuming deep into a huge directory is cheap.
    pub fn read_dir_from(&self, dir: &Inode, position: u64) -> Result<ReadDir<'_>> {
        Ok(ReadDir {
            archive: self,
            state: self.dir_state(dir, position)?,
        })
    }

    /// Read up to `buf.len()` bytes of regular file `file` at `offset`. Returns the number of
    /// bytes read (0 at or past the end). Sparse blocks read as zeros.
    ///
    /// The file's geometry is taken from the image at `file.inode_ref`, not from the fields
    /// of `file`. The result is short only at the end of the file.
    pub fn read_at(&self, file: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.read_file(file, offset, buf)
    }

    /// How the bytes of regular file `file` from `offset` (at most `max_len` of them) are
    /// stored: the longest run that is verbatim in the image (and back to back), sparse, or
    /// encoded. With [`Archive::source_fd`], a copier can move `Stored` runs inside the kernel
    /// and skip `Sparse` ones; `Encoded` ones go through [`Archive::read_at`]. Empty at or past
    /// the end of the file.
    pub fn data_extent(&self, file: &Inode, offset: u64, max_len: u64) -> Result<DataExtent> {
        self.file_data_extent(file, offset, max_len)
    }

    /// The image file, when the archive reads from one (see [`ReadAt::as_file_fd`]).
    pub fn source_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.source.as_file_fd()
    }

    /// Number of bytes of `file` actually stored (non-sparse), for `st_blocks`.
    pub fn allocated_bytes(&self, file: &Inode) -> Result<u64> {
        self.file_allocated(file)
    }

    /// True if data block `index` (of `superblock().block_size` bytes) of regular file `file`
    /// is stored as a sparse block: it reads as zeros and occupies nothing in the image. Lets
    /// an extractor leave a hole without reading the block. The fragment tail and indexes past
    /// the last full block are never sparse.
    pub fn is_sparse_block(&self, file: &Inode, index: u64) -> Result<bool> {
        self.file_block_is_sparse(file, index)
    }

    /// The target of symlink `link` (1..=4096 bytes, no NUL).
    pub fn read_link(&self, link: &Inode) -> Result<Vec<u8>> {
        let decoded = self.decode_inode(link.inode_ref)?;
        let InodeKind::Symlink { target_len } = decoded.inode.kind else {
            return Err(Error::WrongType {
                path: format!("inode {}", link.number),
                expected: "a symlink",
            });
        };
        let mut cursor: MetaCursor = decoded.tail;
        let target = cursor.read_vec(self, target_len as usize)?;
        if target.contains(&0) {
            return Err(Error::corrupt(
                format!("symlink inode {} target contains NUL", link.number),
                cursor.block(),
            ));
        }
        Ok(target)
    }

    /// All extended attributes of `inode` (empty if none).
    pub fn xattrs(&self, inode: &Inode) -> Result<Vec<Xattr>> {
        self.read_xattrs(inode)
    }

    /// The `size` field of `inode`'s xattr id table entry (bytes of its key/value pairs as
    /// stored), 0 if it has no xattrs. The kernel adds `((size - 1) >> 9) + 1` to `st_blocks`.
    pub fn xattr_stored_size(&self, inode: &Inode) -> Result<u32> {
        self.read_xattr_size(inode)
    }

    /// Depth-first walk of the whole tree with loop protection (see [`Walk`]).
    pub fn walk(&self) -> Walk<'_> {
        Walk::new(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn archive_is_send_and_sync() {
        assert_send_sync::<Archive>();
    }
}
