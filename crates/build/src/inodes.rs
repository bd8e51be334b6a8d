//! Writing inodes and directory listings for the walked tree.
//!
//! Inode numbers are assigned in the order inodes are written: a post-order walk in which
//! every directory's subdirectories come first, then its other entries, then the directory
//! itself (its listing needs every child's inode position). The root is written last.

use squashbox_format::writer::{
    kind_code, DirectoryEntry, ImageSink, ImageWriter, InodeSpec, InodeSpecKind, MetaPos,
};

use crate::pipeline::FileData;
use crate::walk::{NodeKind, Tree, NO_XATTRS};
use crate::BuildError;

/// How ownership and times are recorded.
pub struct InodeOptions {
    /// Record everything as owned by root.
    pub all_root: bool,
    /// Force this mtime on every inode.
    pub mtime: Option<u32>,
}

/// What the inode pass produced.
pub struct InodeResult {
    /// Position of the root inode.
    pub root: MetaPos,
    /// Inodes written.
    pub inode_count: u32,
}

const UNASSIGNED: u32 = 0;

/// Resolve hard links to the node holding the inode.
fn target_of(tree: &Tree, node: u32) -> u32 {
    match tree.nodes[node as usize].kind {
        NodeKind::HardLink { target } => target,
        _ => node,
    }
}

fn included(tree: &Tree, node: u32) -> bool {
    !tree.nodes[node as usize].skipped && !tree.nodes[target_of(tree, node) as usize].skipped
}

/// Compute the write order (node indices, each inode once).
fn write_order(tree: &Tree) -> Vec<u32> {
    let mut order = Vec::with_capacity(tree.nodes.len());
    let mut seen = vec![false; tree.nodes.len()];
    // (directory, next child to examine)
    let mut stack: Vec<(u32, u32)> = vec![(0, tree.children(0).start)];
    while let Some(top) = stack.last_mut() {
        let (dir, next) = *top;
        let children = tree.children(dir);
        let mut descend = None;
        let mut i = next;
        while i < children.end {
            if included(tree, i) && matches!(tree.nodes[i as usize].kind, NodeKind::Dir { .. }) {
                descend = Some(i);
                i += 1;
                break;
            }
            i += 1;
        }
        top.1 = i;
        if let Some(child) = descend {
            stack.push((child, tree.children(child).start));
            continue;
        }
        stack.pop();
        for child in children {
            if !included(tree, child)
                || matches!(tree.nodes[child as usize].kind, NodeKind::Dir { .. })
            {
                continue;
            }
            let target = target_of(tree, child);
            if !seen[target as usize] {
                seen[target as usize] = true;
                order.push(target);
            }
        }
        order.push(dir);
    }
    order
}

fn mtime_of(mtime: i64, options: &InodeOptions) -> u32 {
    options
        .mtime
        .unwrap_or_else(|| mtime.clamp(0, i64::from(u32::MAX)) as u32)
}

/// Write all inodes and directories. `file_data[node]` holds the data of regular files.
pub fn write_inodes<W: ImageSink>(
    writer: &mut ImageWriter<W>,
    tree: &Tree,
    file_data: &[Option<FileData>],
    options: &InodeOptions,
) -> Result<InodeResult, BuildError> {
    let order = write_order(tree);
    let count = u32::try_from(order.len())
        .map_err(|_| BuildError::InvalidOptions("more than 2^32 inodes".into()))?;
    let mut numbers = vec![UNASSIGNED; tree.nodes.len()];
    for (i, node) in order.iter().enumerate() {
        numbers[*node as usize] = i as u32 + 1;
    }
    let mut links = vec![0u32; tree.nodes.len()];
    for node in 1..tree.nodes.len() as u32 {
        if included(tree, node) {
            let target = target_of(tree, node);
            links[target as usize] += 1;
        }
    }
    let mut positions = vec![
        MetaPos {
            block: 0,
            offset: 0
        };
        tree.nodes.len()
    ];
    let mut xattr_ids: Vec<Option<u32>> = vec![None; tree.xattr_sets.len()];

    for &node_index in &order {
        let node = &tree.nodes[node_index as usize];
        let xattr = if node.xattrs == NO_XATTRS {
            None
        } else {
            let slot = &mut xattr_ids[node.xattrs as usize];
            if slot.is_none() {
                *slot = Some(writer.add_xattrs(&tree.xattr_sets[node.xattrs as usize])?);
            }
            *slot
        };
        let (uid, gid) = if options.all_root {
            (0, 0)
        } else {
            (node.uid, node.gid)
        };
        let uid_index = writer.id_index(uid)?;
        let gid_index = writer.id_index(gid)?;
        let number = numbers[node_index as usize];
        let permissions = (node.mode & 0o7777) as u16;
        let mtime = mtime_of(node.mtime, options);

        let listing;
        let (kind, nlink) = match &node.kind {
            NodeKind::Dir { .. } => {
                let mut subdirs = 0u32;
                let mut entries = Vec::new();
                for child in tree.children(node_index) {
                    if !included(tree, child) {
                        continue;
                    }
                    let target = target_of(tree, child);
                    if matches!(tree.nodes[child as usize].kind, NodeKind::Dir { .. }) {
                        subdirs += 1;
                    }
                    entries.push(DirectoryEntry {
                        name: &tree.nodes[child as usize].name,
                        inode: positions[target as usize],
                        inode_number: numbers[target as usize],
                        basic_type: basic_type(&tree.nodes[target as usize].kind),
                    });
                }
                listing = writer.write_directory(&entries)?;
                let parent = if node_index == 0 {
                    count + 1
                } else {
                    numbers[node.parent as usize]
                };
                (
                    InodeSpecKind::Directory {
                        listing: &listing,
                        parent,
                    },
                    2 + subdirs,
                )
            }
            NodeKind::File { size, .. } => {
                let data = file_data[node_index as usize].as_ref().ok_or_else(|| {
                    BuildError::InvalidOptions(format!(
                        "internal: no data for {}",
                        tree.path_of(node_index).display()
                    ))
                })?;
                (
                    InodeSpecKind::File {
                        blocks_start: data.blocks_start,
                        size: *size,
                        sparse: data.sparse,
                        fragment: data.fragment,
                        block_sizes: &data.block_sizes,
                    },
                    links[node_index as usize],
                )
            }
            NodeKind::Symlink { target } => (
                InodeSpecKind::Symlink { target },
                links[node_index as usize],
            ),
            NodeKind::BlockDevice { rdev } => (
                InodeSpecKind::BlockDevice { rdev: *rdev },
                links[node_index as usize],
            ),
            NodeKind::CharDevice { rdev } => (
                InodeSpecKind::CharDevice { rdev: *rdev },
                links[node_index as usize],
            ),
            NodeKind::Fifo => (InodeSpecKind::Fifo, links[node_index as usize]),
            NodeKind::Socket => (InodeSpecKind::Socket, links[node_index as usize]),
            NodeKind::HardLink { .. } => unreachable!("hard links are resolved to their target"),
        };
        let spec = InodeSpec {
            number,
            permissions,
            uid_index,
            gid_index,
            mtime,
            nlink,
            xattr,
            kind,
        };
        positions[node_index as usize] = writer.write_inode(&spec)?;
    }
    Ok(InodeResult {
        root: positions[0],
        inode_count: count,
    })
}

fn basic_type(kind: &NodeKind) -> u16 {
    match kind {
        NodeKind::Dir { .. } => kind_code::DIR,
        NodeKind::File { .. } => kind_code::FILE,
        NodeKind::Symlink { .. } => kind_code::SYMLINK,
        NodeKind::BlockDevice { .. } => kind_code::BLOCK_DEV,
        NodeKind::CharDevice { .. } => kind_code::CHAR_DEV,
        NodeKind::Fifo => kind_code::FIFO,
        NodeKind::Socket => kind_code::SOCKET,
        NodeKind::HardLink { .. } => kind_code::FILE,
    }
}
