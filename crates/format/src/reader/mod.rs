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

use std::path::Path;
use std::sync::Arc;

use crate::compress::CompressorOptions;
use crate::error::Result;
use crate::layout::Superblock;
use crate::source::ReadAt;

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
    /// Byte budget for decompressed metadata blocks (default 8 MiB).
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

/// An open SquashFS image.
pub struct Archive {
    source: Arc<dyn ReadAt>,
    superblock: Superblock,
}

/// Streaming iterator over a directory's entries, in on-disk (sorted) order.
pub struct ReadDir<'a> {
    archive: &'a Archive,
}

impl Iterator for ReadDir<'_> {
    type Item = Result<DirEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        let _ = self.archive;
        todo!()
    }
}

impl Archive {
    /// Open an image with default options.
    pub fn open(source: impl ReadAt + 'static) -> Result<Self> {
        Self::open_with(source, OpenOptions::default())
    }

    /// Open the image file at `path`.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        let _ = path;
        todo!()
    }

    /// Open an image with explicit cache budgets.
    pub fn open_with(source: impl ReadAt + 'static, options: OpenOptions) -> Result<Self> {
        let _ = (source, options);
        todo!()
    }

    /// The validated superblock.
    pub fn superblock(&self) -> &Superblock {
        &self.superblock
    }

    /// Compressor options stored in the image, if any.
    pub fn compressor_options(&self) -> Option<&CompressorOptions> {
        let _ = &self.source;
        todo!()
    }

    /// The root directory inode.
    pub fn root(&self) -> Result<Inode> {
        todo!()
    }

    /// Decode the inode at `r`.
    pub fn inode(&self, r: InodeRef) -> Result<Inode> {
        let _ = r;
        todo!()
    }

    /// Decode an inode by number through the export table.
    /// Fails with [`Error::Unsupported`](crate::Error::Unsupported) if the image has none.
    pub fn inode_by_number(&self, number: u32) -> Result<Inode> {
        let _ = number;
        todo!()
    }

    /// Find `name` in directory `dir`, using the extended directory index when present so a
    /// lookup in a huge directory does not scan the whole listing.
    pub fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<DirEntry>> {
        let _ = (dir, name);
        todo!()
    }

    /// Resolve a `/`-separated path from the root (leading `/` optional; `""` and `"/"` are the
    /// root). Symlinks are not followed. Missing components give
    /// [`Error::NotFound`](crate::Error::NotFound).
    pub fn lookup_path(&self, path: impl AsRef<[u8]>) -> Result<Inode> {
        let _ = path;
        todo!()
    }

    /// Iterate over the entries of `dir` from the start.
    pub fn read_dir(&self, dir: &Inode) -> Result<ReadDir<'_>> {
        self.read_dir_from(dir, 0)
    }

    /// Iterate over the entries of `dir` starting after the entry whose `next_position` is
    /// `position` (0 = from the start).
    pub fn read_dir_from(&self, dir: &Inode, position: u64) -> Result<ReadDir<'_>> {
        let _ = (dir, position);
        todo!()
    }

    /// Read up to `buf.len()` bytes of regular file `file` at `offset`. Returns the number of
    /// bytes read (0 at or past the end). Sparse blocks read as zeros.
    pub fn read_at(&self, file: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let _ = (file, offset, buf);
        todo!()
    }

    /// Number of bytes of `file` actually stored (non-sparse), for `st_blocks`.
    pub fn allocated_bytes(&self, file: &Inode) -> Result<u64> {
        let _ = file;
        todo!()
    }

    /// The target of symlink `link`.
    pub fn read_link(&self, link: &Inode) -> Result<Vec<u8>> {
        let _ = link;
        todo!()
    }

    /// All extended attributes of `inode` (empty if none).
    pub fn xattrs(&self, inode: &Inode) -> Result<Vec<Xattr>> {
        let _ = inode;
        todo!()
    }
}
