//! Shared helpers of the cross-crate tests: the source trees (created once per test binary),
//! an image → [`Manifest`] conversion through the library API, and running the CLI.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use squashbox_format::{Archive, FileType, Inode};
use squashbox_testkit::{
    run_with_timeout, ContentHasher, EdgeTree, EdgeTreeOptions, Entry, EntryKind, Manifest,
    TimedOutput,
};

/// A generated source tree and its manifest, shared by all tests of one binary.
pub struct SourceTree {
    _dir: squashbox_testkit::tempfile::TempDir,
    /// Root of the tree.
    pub root: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// The options it was made with.
    pub options: EdgeTreeOptions,
}

fn make_tree(options: EdgeTreeOptions) -> SourceTree {
    let dir = squashbox_testkit::tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("src");
    EdgeTree::create(&root, &options).expect("create edge tree");
    let manifest = Manifest::scan(&root).expect("scan edge tree");
    SourceTree {
        _dir: dir,
        root,
        manifest,
        options,
    }
}

/// The edge tree with the 10,001-entry directory, without the >4 GiB file.
pub fn base_tree() -> &'static SourceTree {
    static TREE: OnceLock<SourceTree> = OnceLock::new();
    TREE.get_or_init(|| {
        make_tree(EdgeTreeOptions {
            big_dir: true,
            ..EdgeTreeOptions::cheap()
        })
    })
}

/// The full edge tree: the base tree plus the >4 GiB sparse file.
pub fn full_tree() -> &'static SourceTree {
    static TREE: OnceLock<SourceTree> = OnceLock::new();
    TREE.get_or_init(|| make_tree(EdgeTreeOptions::full()))
}

/// Linux `new_decode_dev` of a SquashFS device number.
pub fn decode_dev(rdev: u32) -> (u32, u32) {
    (
        (rdev & 0xfff00) >> 8,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    )
}

/// Hash a regular file of `archive` through `read_at`.
pub fn hash_image_file(
    archive: &Archive,
    inode: &Inode,
) -> squashbox_format::Result<(u64, squashbox_testkit::ContentHash)> {
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

/// Build a manifest of the whole image through the library API (walk, read_at, read_link,
/// xattrs); hard links are grouped by inode number.
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
        let is_dir = inode.is_dir();
        manifest.insert(
            item.path,
            Entry {
                kind,
                mode: u32::from(inode.permissions),
                uid: inode.uid,
                gid: inode.gid,
                mtime: i64::from(inode.mtime),
                xattrs,
                link_key: (!is_dir).then_some((0, u64::from(inode.number))),
            },
        );
    }
    Ok(manifest)
}

/// Run `squashbox extract IMG DEST` (bounded in time), returning what happened.
pub fn cli_extract(bin: &Path, img: &Path, dest: &Path, timeout: Duration) -> TimedOutput {
    let mut cmd = Command::new(bin);
    cmd.arg("extract").arg(img).arg(dest);
    run_with_timeout(&mut cmd, timeout).expect("spawn squashbox")
}
