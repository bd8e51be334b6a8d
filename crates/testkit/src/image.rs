//! A [`Manifest`] of a SquashFS image read through squashbox's own library API (walk, `read_at`,
//! `read_link`, `xattrs`), to compare with the tree the image was built from exactly as
//! [`Manifest::scan`] of a mounted or extracted copy would be. Feature `image` (it pulls in
//! `squashbox-format`, which the rest of the testkit does not need).

use squashbox_format::{Archive, FileType, Inode};

use crate::hash::{ContentHash, ContentHasher};
use crate::manifest::{Entry, EntryKind, Manifest};

/// Linux `new_decode_dev` of a SquashFS device number: `(major, minor)`.
pub fn decode_dev(rdev: u32) -> (u32, u32) {
    (
        (rdev & 0xfff00) >> 8,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    )
}

/// Hash regular file `inode` of `archive` through `read_at` (sparse blocks included: the reader
/// must give their zeros back), returning its size and hash.
pub fn hash_image_file(
    archive: &Archive,
    inode: &Inode,
) -> squashbox_format::Result<(u64, ContentHash)> {
    let size = inode.size();
    let mut hasher = ContentHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < size {
        let n = archive.read_at(inode, offset, &mut buf)?;
        if n == 0 {
            return Err(squashbox_format::Error::corrupt(
                format!("file inode {} ends at {offset} of {size}", inode.number),
                0,
            ));
        }
        hasher.write(&buf[..n]);
        offset += n as u64;
    }
    Ok((size, hasher.finish()))
}

/// The manifest of the whole image: every path with its type, permission bits, owner, mtime,
/// content hash, symlink target, device number, sorted xattrs and link count; hard links are
/// grouped by inode number.
pub fn manifest_of_image(archive: &Archive) -> squashbox_format::Result<Manifest> {
    let mut manifest = Manifest::new();
    for item in archive.walk() {
        let item = item?;
        let inode = &item.inode;
        let kind = match inode.file_type {
            FileType::Directory => EntryKind::Dir,
            FileType::Regular => {
                let (size, hash) = hash_image_file(archive, inode)?;
                EntryKind::File { size, hash }
            }
            FileType::Symlink => EntryKind::Symlink {
                target: archive.read_link(inode)?,
            },
            FileType::CharDevice => {
                let (major, minor) = decode_dev(inode.rdev());
                EntryKind::CharDev { major, minor }
            }
            FileType::BlockDevice => {
                let (major, minor) = decode_dev(inode.rdev());
                EntryKind::BlockDev { major, minor }
            }
            FileType::Fifo => EntryKind::Fifo,
            FileType::Socket => EntryKind::Socket,
        };
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = archive
            .xattrs(inode)?
            .into_iter()
            .map(|x| (x.name, x.value))
            .collect();
        xattrs.sort();
        manifest.set_nlink(item.path.clone(), u64::from(inode.nlink));
        manifest.insert(
            item.path,
            Entry {
                kind,
                mode: u32::from(inode.permissions),
                uid: inode.uid,
                gid: inode.gid,
                mtime: i64::from(inode.mtime),
                xattrs,
                link_key: (!inode.is_dir()).then_some((0, u64::from(inode.number))),
            },
        );
    }
    Ok(manifest)
}
