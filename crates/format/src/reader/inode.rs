//! Decoding the 14 inode types.
//!
//! Every inode starts with a 16-byte header (type, permissions, uid index, gid index, mtime,
//! inode number), followed by a type-specific body. Basic types are 1..=7 (dir, file, symlink,
//! block dev, char dev, fifo, socket), extended types are the same plus 7.

use crate::error::{Error, Result};
use crate::layout::{NO_FRAGMENT, NO_XATTR};

use super::metadata::MetaCursor;
use super::{Archive, FileType, Inode, InodeKind, InodeRef};

/// Longest symlink target accepted. The kernel refuses targets longer than a page (4096 on the
/// platforms that matter); we apply that limit everywhere so behaviour does not depend on the
/// reader's page size.
pub const MAX_SYMLINK_TARGET: u32 = 4096;

/// Size of a basic / extended directory body after the header.
const EXT_DIR_BODY: u64 = 24;

/// The file type for a basic type number 1..=7.
pub(crate) fn basic_file_type(basic: u16) -> Option<FileType> {
    Some(match basic {
        1 => FileType::Directory,
        2 => FileType::Regular,
        3 => FileType::Symlink,
        4 => FileType::BlockDevice,
        5 => FileType::CharDevice,
        6 => FileType::Fifo,
        7 => FileType::Socket,
        _ => return None,
    })
}

/// A decoded inode plus a cursor positioned just after its fixed fields (at the block list of
/// a file, the target of a symlink, the index of an extended directory).
pub(crate) struct Decoded {
    pub(crate) inode: Inode,
    pub(crate) tail: MetaCursor,
}

impl Archive {
    /// A cursor at inode reference `r` in the inode table.
    pub(crate) fn inode_cursor(&self, r: InodeRef) -> Result<MetaCursor> {
        let region = self.tables.inode;
        if r.0 >> 48 != 0 {
            return Err(Error::corrupt(
                format!("inode reference {:#x} has bits above 48 set", r.0),
                region.start,
            ));
        }
        let block = region.block_at(r.block(), "inode reference")?;
        MetaCursor::new(region, block, usize::from(r.offset()))
    }

    /// Decode the inode at `r`, validating every field against the superblock and tables.
    pub(crate) fn decode_inode(&self, r: InodeRef) -> Result<Decoded> {
        let mut c = self.inode_cursor(r)?;
        let at = c.block();
        let mut header = [0u8; 16];
        c.read(self, &mut header)?;
        let field16 = |i: usize| u16::from_le_bytes([header[i], header[i + 1]]);
        let raw_type = field16(0);
        let permissions = field16(2);
        let uid_index = field16(4);
        let gid_index = field16(6);
        let mtime = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        let number = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        let corrupt = |what: String| Error::corrupt(format!("inode {r:?}: {what}"), at);

        let (basic, extended) = match raw_type {
            1..=7 => (raw_type, false),
            8..=14 => (raw_type - 7, true),
            other => return Err(corrupt(format!("unknown inode type {other}"))),
        };
        let file_type = basic_file_type(basic).expect("1..=7");
        if permissions & !0o7777 != 0 {
            return Err(corrupt(format!(
                "permission bits {permissions:#o} exceed 0o7777"
            )));
        }
        if number == 0 || number > self.superblock.inode_count {
            return Err(corrupt(format!(
                "inode number {number} is not in 1..={}",
                self.superblock.inode_count
            )));
        }
        let uid = self.id(uid_index, at)?;
        let gid = self.id(gid_index, at)?;

        let mut nlink = 1;
        let mut xattr = NO_XATTR;
        let kind = match file_type {
            FileType::Directory => {
                let (block_start, file_size, block_offset, parent_inode, index_count);
                if extended {
                    nlink = c.u32(self)?;
                    file_size = c.u32(self)?;
                    block_start = c.u32(self)?;
                    parent_inode = c.u32(self)?;
                    index_count = u32::from(c.u16(self)?);
                    block_offset = c.u16(self)?;
                    xattr = c.u32(self)?;
                } else {
                    block_start = c.u32(self)?;
                    nlink = c.u32(self)?;
                    file_size = u32::from(c.u16(self)?);
                    block_offset = c.u16(self)?;
                    parent_inode = c.u32(self)?;
                    index_count = 0;
                }
                if file_size < 3 {
                    return Err(corrupt(format!(
                        "directory size {file_size} is below the minimum of 3"
                    )));
                }
                if usize::from(block_offset) >= crate::layout::METADATA_BLOCK_SIZE {
                    return Err(corrupt(format!(
                        "directory listing offset {block_offset} is not below 8192"
                    )));
                }
                if file_size > 3 {
                    self.tables
                        .directory
                        .block_at(u64::from(block_start), "directory listing")?;
                }
                InodeKind::Directory {
                    block_start,
                    block_offset,
                    file_size,
                    parent_inode,
                    index_count,
                }
            }
            FileType::Regular => {
                let (blocks_start, size, sparse, fragment, frag_offset);
                if extended {
                    blocks_start = c.u64(self)?;
                    size = c.u64(self)?;
                    sparse = c.u64(self)?;
                    nlink = c.u32(self)?;
                    fragment = c.u32(self)?;
                    frag_offset = c.u32(self)?;
                    xattr = c.u32(self)?;
                } else {
                    blocks_start = u64::from(c.u32(self)?);
                    fragment = c.u32(self)?;
                    frag_offset = c.u32(self)?;
                    size = u64::from(c.u32(self)?);
                    sparse = 0;
                }
                let block_size = u64::from(self.superblock.block_size);
                let fragment = if fragment == NO_FRAGMENT {
                    None
                } else {
                    let count = self.superblock.fragment_entry_count;
                    if fragment >= count {
                        return Err(corrupt(format!(
                            "fragment index {fragment} is not below the fragment count {count}"
                        )));
                    }
                    if u64::from(frag_offset) >= block_size {
                        return Err(corrupt(format!(
                            "fragment offset {frag_offset} is not below the block size"
                        )));
                    }
                    Some((fragment, frag_offset))
                };
                let blocks = if fragment.is_some() {
                    size / block_size
                } else {
                    size.div_ceil(block_size)
                };
                let block_count = u32::try_from(blocks)
                    .map_err(|_| corrupt(format!("file size {size} needs too many blocks")))?;
                if sparse > size {
                    return Err(corrupt(format!(
                        "sparse byte count {sparse} exceeds the file size {size}"
                    )));
                }
                if blocks_start > self.tables.inode.start {
                    return Err(corrupt(format!(
                        "data start {blocks_start} lies past the data area"
                    )));
                }
                InodeKind::File {
                    size,
                    blocks_start,
                    fragment,
                    sparse,
                    block_count,
                }
            }
            FileType::Symlink => {
                nlink = c.u32(self)?;
                let target_len = c.u32(self)?;
                if target_len == 0 || target_len > MAX_SYMLINK_TARGET {
                    return Err(corrupt(format!(
                        "symlink target length {target_len} is not in 1..={MAX_SYMLINK_TARGET}"
                    )));
                }
                if extended {
                    // The xattr index follows the target.
                    let mut probe = c.clone();
                    probe.skip(self, u64::from(target_len))?;
                    xattr = probe.u32(self)?;
                }
                InodeKind::Symlink { target_len }
            }
            FileType::BlockDevice | FileType::CharDevice => {
                nlink = c.u32(self)?;
                let rdev = c.u32(self)?;
                if extended {
                    xattr = c.u32(self)?;
                }
                InodeKind::Device { rdev }
            }
            FileType::Fifo | FileType::Socket => {
                nlink = c.u32(self)?;
                if extended {
                    xattr = c.u32(self)?;
                }
                InodeKind::Ipc
            }
        };
        let xattr_index = if xattr == NO_XATTR {
            None
        } else {
            let count = self.tables.xattr.as_ref().map_or(0, |x| x.ids.count());
            if u64::from(xattr) >= count {
                return Err(corrupt(format!(
                    "xattr index {xattr} is not below the xattr id count {count}"
                )));
            }
            Some(xattr)
        };
        Ok(Decoded {
            inode: Inode {
                inode_ref: r,
                number,
                file_type,
                permissions,
                uid,
                gid,
                mtime,
                nlink,
                xattr_index,
                kind,
            },
            tail: c,
        })
    }

    /// Resolve an id table index.
    fn id(&self, index: u16, at: u64) -> Result<u32> {
        self.tables
            .ids
            .get(usize::from(index))
            .copied()
            .ok_or_else(|| {
                Error::corrupt(
                    format!(
                        "id index {index} is not below the id count {}",
                        self.tables.ids.len()
                    ),
                    at,
                )
            })
    }

    /// A cursor at the directory index of extended directory `dir` (just after its body).
    pub(crate) fn directory_index_cursor(&self, dir: &Inode) -> Result<MetaCursor> {
        let mut c = self.inode_cursor(dir.inode_ref)?;
        c.skip(self, 16 + EXT_DIR_BODY)?;
        Ok(c)
    }
}
