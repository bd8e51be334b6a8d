//! Inode encoder: picks the basic or extended form of each inode type and serializes it.

use crate::layout::{NO_FRAGMENT, NO_XATTR};

/// Inode type codes (basic; the extended form is the basic code + 7).
pub mod kind_code {
    /// Directory.
    pub const DIR: u16 = 1;
    /// Regular file.
    pub const FILE: u16 = 2;
    /// Symbolic link.
    pub const SYMLINK: u16 = 3;
    /// Block device.
    pub const BLOCK_DEV: u16 = 4;
    /// Character device.
    pub const CHAR_DEV: u16 = 5;
    /// Named pipe.
    pub const FIFO: u16 = 6;
    /// Unix socket.
    pub const SOCKET: u16 = 7;
    /// Difference between a basic code and its extended code.
    pub const EXTENDED: u16 = 7;
}

/// One entry of an extended directory's index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirIndexEntry {
    /// Byte offset of the header within the directory listing.
    pub index: u32,
    /// Directory-table metadata block holding that header (relative to the table start).
    pub start: u32,
    /// Name of the first entry after that header.
    pub name: Vec<u8>,
}

/// Where a directory listing was written and what its inode must record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryListing {
    /// Directory-table block holding the start of the listing.
    pub block_start: u32,
    /// Offset of the listing in that block.
    pub block_offset: u16,
    /// Listing size + 3, as stored in the inode.
    pub file_size: u32,
    /// Index entries (one per metadata block boundary the listing crosses).
    pub index: Vec<DirIndexEntry>,
}

/// Type-specific part of an inode to encode.
#[derive(Clone, Debug)]
pub enum InodeSpecKind<'a> {
    /// A directory whose listing has already been written.
    Directory {
        /// The listing.
        listing: &'a DirectoryListing,
        /// Inode number of the parent directory (for the root: inode count + 1).
        parent: u32,
    },
    /// A regular file whose data has already been written.
    File {
        /// Image offset of the first data block.
        blocks_start: u64,
        /// File size.
        size: u64,
        /// Bytes of the file stored as sparse blocks.
        sparse: u64,
        /// Fragment index and byte offset inside the fragment.
        fragment: Option<(u32, u32)>,
        /// One size word per block.
        block_sizes: &'a [u32],
    },
    /// A symbolic link.
    Symlink {
        /// Target bytes.
        target: &'a [u8],
    },
    /// A block device (`rdev` in Linux `new_encode_dev` layout).
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
}

/// Everything needed to encode one inode. Ids are already indexes into the id table.
#[derive(Clone, Debug)]
pub struct InodeSpec<'a> {
    /// Inode number (1-based).
    pub number: u32,
    /// Permission bits including setuid/setgid/sticky.
    pub permissions: u16,
    /// Index of the owner in the id table.
    pub uid_index: u16,
    /// Index of the group in the id table.
    pub gid_index: u16,
    /// Modification time.
    pub mtime: u32,
    /// Link count.
    pub nlink: u32,
    /// Xattr id, if any.
    pub xattr: Option<u32>,
    /// Type-specific part.
    pub kind: InodeSpecKind<'a>,
}

impl InodeSpec<'_> {
    /// The basic type code, as stored in directory entries.
    pub fn basic_type(&self) -> u16 {
        match self.kind {
            InodeSpecKind::Directory { .. } => kind_code::DIR,
            InodeSpecKind::File { .. } => kind_code::FILE,
            InodeSpecKind::Symlink { .. } => kind_code::SYMLINK,
            InodeSpecKind::BlockDevice { .. } => kind_code::BLOCK_DEV,
            InodeSpecKind::CharDevice { .. } => kind_code::CHAR_DEV,
            InodeSpecKind::Fifo => kind_code::FIFO,
            InodeSpecKind::Socket => kind_code::SOCKET,
        }
    }

    /// True if the basic form cannot represent this inode.
    pub fn needs_extended(&self) -> bool {
        if self.xattr.is_some() {
            return true;
        }
        match &self.kind {
            InodeSpecKind::Directory { listing, .. } => {
                listing.file_size > u32::from(u16::MAX) || !listing.index.is_empty()
            }
            InodeSpecKind::File {
                blocks_start,
                size,
                sparse,
                ..
            } => {
                self.nlink > 1
                    || *blocks_start > u64::from(u32::MAX)
                    || *size > u64::from(u32::MAX)
                    || *sparse != 0
            }
            _ => false,
        }
    }

    /// Serialize into `out` (appending).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let extended = self.needs_extended();
        let code = self.basic_type() + if extended { kind_code::EXTENDED } else { 0 };
        put16(out, code);
        put16(out, self.permissions & 0o7777);
        put16(out, self.uid_index);
        put16(out, self.gid_index);
        put32(out, self.mtime);
        put32(out, self.number);
        let xattr = self.xattr.unwrap_or(NO_XATTR);
        match &self.kind {
            InodeSpecKind::Directory { listing, parent } => {
                if extended {
                    put32(out, self.nlink);
                    put32(out, listing.file_size);
                    put32(out, listing.block_start);
                    put32(out, *parent);
                    put16(out, listing.index.len() as u16);
                    put16(out, listing.block_offset);
                    put32(out, xattr);
                    for entry in &listing.index {
                        put32(out, entry.index);
                        put32(out, entry.start);
                        put32(out, entry.name.len() as u32 - 1);
                        out.extend_from_slice(&entry.name);
                    }
                } else {
                    put32(out, listing.block_start);
                    put32(out, self.nlink);
                    put16(out, listing.file_size as u16);
                    put16(out, listing.block_offset);
                    put32(out, *parent);
                }
            }
            InodeSpecKind::File {
                blocks_start,
                size,
                sparse,
                fragment,
                block_sizes,
            } => {
                let (frag_index, frag_offset) = fragment.unwrap_or((NO_FRAGMENT, 0));
                if extended {
                    put64(out, *blocks_start);
                    put64(out, *size);
                    put64(out, *sparse);
                    put32(out, self.nlink);
                    put32(out, frag_index);
                    put32(out, frag_offset);
                    put32(out, xattr);
                } else {
                    put32(out, *blocks_start as u32);
                    put32(out, frag_index);
                    put32(out, frag_offset);
                    put32(out, *size as u32);
                }
                for word in block_sizes.iter() {
                    put32(out, *word);
                }
            }
            InodeSpecKind::Symlink { target } => {
                put32(out, self.nlink);
                put32(out, target.len() as u32);
                out.extend_from_slice(target);
                if extended {
                    put32(out, xattr);
                }
            }
            InodeSpecKind::BlockDevice { rdev } | InodeSpecKind::CharDevice { rdev } => {
                put32(out, self.nlink);
                put32(out, *rdev);
                if extended {
                    put32(out, xattr);
                }
            }
            InodeSpecKind::Fifo | InodeSpecKind::Socket => {
                put32(out, self.nlink);
                if extended {
                    put32(out, xattr);
                }
            }
        }
    }
}

/// Encode a device number the way Linux `new_encode_dev` does.
pub fn encode_rdev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

pub(crate) fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: InodeSpecKind<'_>) -> InodeSpec<'_> {
        InodeSpec {
            number: 7,
            permissions: 0o4755,
            uid_index: 1,
            gid_index: 2,
            mtime: 1000,
            nlink: 1,
            xattr: None,
            kind,
        }
    }

    #[test]
    fn basic_file_layout() {
        let sizes = [0x100u32, 0];
        let s = spec(InodeSpecKind::File {
            blocks_start: 96,
            size: 5000,
            sparse: 0,
            fragment: Some((3, 17)),
            block_sizes: &sizes,
        });
        assert!(!s.needs_extended());
        let mut out = Vec::new();
        s.encode(&mut out);
        assert_eq!(out.len(), 16 + 16 + 8);
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), 2);
        assert_eq!(u16::from_le_bytes([out[2], out[3]]), 0o4755);
        assert_eq!(&out[16..20], &96u32.to_le_bytes());
        assert_eq!(&out[20..24], &3u32.to_le_bytes());
        assert_eq!(&out[24..28], &17u32.to_le_bytes());
        assert_eq!(&out[28..32], &5000u32.to_le_bytes());
    }

    #[test]
    fn extended_when_needed() {
        let sizes = [0u32];
        let mut s = spec(InodeSpecKind::File {
            blocks_start: 96,
            size: 5000,
            sparse: 4096,
            fragment: None,
            block_sizes: &sizes,
        });
        assert!(s.needs_extended());
        let mut out = Vec::new();
        s.encode(&mut out);
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), 9);
        assert_eq!(out.len(), 16 + 40 + 4);
        s.kind = InodeSpecKind::Fifo;
        assert!(!s.needs_extended());
        s.xattr = Some(0);
        assert!(s.needs_extended());
        let listing = DirectoryListing {
            file_size: 70_000,
            ..Default::default()
        };
        let d = spec(InodeSpecKind::Directory {
            listing: &listing,
            parent: 1,
        });
        assert!(d.needs_extended());
    }

    #[test]
    fn rdev_matches_linux_encoding() {
        assert_eq!(encode_rdev(8, 1), 0x801);
        assert_eq!(encode_rdev(259, 0x12345), 0x1231_0345);
    }
}
