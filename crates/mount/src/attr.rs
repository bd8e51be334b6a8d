//! Image inodes → FUSE attributes, the way the kernel's squashfs reports them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType as FuseType, INodeNo};
use squashbox_format::{Archive, FileType, Inode, InodeKind};

use squashbox_format::Result;

/// The FUSE file type of an image file type.
pub(crate) fn fuse_type(t: FileType) -> FuseType {
    match t {
        FileType::Directory => FuseType::Directory,
        FileType::Regular => FuseType::RegularFile,
        FileType::Symlink => FuseType::Symlink,
        FileType::BlockDevice => FuseType::BlockDevice,
        FileType::CharDevice => FuseType::CharDevice,
        FileType::Fifo => FuseType::NamedPipe,
        FileType::Socket => FuseType::Socket,
    }
}

/// Attributes of `inode`, reported under node id `node`.
///
/// Like the kernel: atime = ctime = mtime (the image stores one time), `st_rdev` is passed
/// through in Linux's `new_encode_dev` layout (which FUSE expects), and `st_blocks` is what
/// the kernel's squashfs computes: the file size less its sparse bytes for regular files,
/// plus the stored size of the inode's xattrs, in 512-byte units.
pub(crate) fn file_attr(archive: &Archive, inode: &Inode, node: u64) -> Result<FileAttr> {
    let mtime = UNIX_EPOCH + Duration::from_secs(u64::from(inode.mtime));
    let mut blocks = match inode.kind {
        InodeKind::File { size, sparse, .. } => size.saturating_sub(sparse).div_ceil(512),
        _ => 0,
    };
    if inode.xattr_index.is_some() {
        let xattr_bytes = archive.xattr_stored_size(inode)?;
        blocks += u64::from(xattr_bytes.max(1)).div_ceil(512);
    }
    Ok(FileAttr {
        ino: INodeNo(node),
        size: inode.size(),
        blocks,
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: SystemTime::UNIX_EPOCH,
        kind: fuse_type(inode.file_type),
        perm: inode.permissions & 0o7777,
        nlink: inode.nlink,
        uid: inode.uid,
        gid: inode.gid,
        rdev: inode.rdev(),
        blksize: archive.superblock().block_size,
        flags: 0,
    })
}
