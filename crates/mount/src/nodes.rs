//! FUSE node ids ↔ image inodes.
//!
//! The node id the kernel uses for an inode is also its `st_ino` (fuser sends `attr.ino` as
//! both), and FUSE reserves id 1 for the root. The image's own inode numbers are unique and
//! 1-based, so an inode's node id is its image number, except that the root's number and the
//! number 1 swap places. Hard links share an image inode and therefore a node id.
//!
//! The kernel only ever names nodes it was given by `lookup` or `readdirplus`, and tells us
//! with `forget` when it drops them. The map below remembers the inode reference of each such
//! node and counts lookups, so its size is bounded by the kernel's inode cache, not the image.

use std::collections::HashMap;

use parking_lot::Mutex;
use squashbox_format::InodeRef;

/// The node id FUSE reserves for the root directory.
pub(crate) const ROOT_NODE: u64 = 1;

const SHARDS: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Known {
    inode_ref: InodeRef,
    lookups: u64,
}

/// Bounded map from node ids the kernel holds to inode references.
pub(crate) struct NodeMap {
    root_number: u32,
    root_ref: InodeRef,
    shards: Vec<Mutex<HashMap<u32, Known>>>,
}

impl NodeMap {
    /// A map whose node 1 is the root inode `root_number` at `root_ref`.
    pub(crate) fn new(root_number: u32, root_ref: InodeRef) -> Self {
        NodeMap {
            root_number,
            root_ref,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The node id (and `st_ino`) of image inode `number`.
    pub(crate) fn node_id(&self, number: u32) -> u64 {
        if number == self.root_number {
            ROOT_NODE
        } else if number == 1 {
            u64::from(self.root_number)
        } else {
            u64::from(number)
        }
    }

    /// The image inode number of `node` (the inverse of [`NodeMap::node_id`]).
    pub(crate) fn image_number(&self, node: u64) -> Option<u32> {
        let n = u32::try_from(node).ok().filter(|&n| n != 0)?;
        Some(if node == ROOT_NODE {
            self.root_number
        } else if n == self.root_number {
            1
        } else {
            n
        })
    }

    fn shard(&self, number: u32) -> &Mutex<HashMap<u32, Known>> {
        &self.shards[number as usize % SHARDS]
    }

    /// Record that the kernel received one more reference (a lookup) to inode `number`.
    pub(crate) fn remember(&self, number: u32, inode_ref: InodeRef) {
        if number == self.root_number {
            return;
        }
        let mut shard = self.shard(number).lock();
        let known = shard.entry(number).or_insert(Known {
            inode_ref,
            lookups: 0,
        });
        known.inode_ref = inode_ref;
        known.lookups = known.lookups.saturating_add(1);
    }

    /// The kernel dropped `count` references to `node`.
    pub(crate) fn forget(&self, node: u64, count: u64) {
        let Some(number) = self.image_number(node) else {
            return;
        };
        if number == self.root_number {
            return;
        }
        let mut shard = self.shard(number).lock();
        if let Some(known) = shard.get_mut(&number) {
            known.lookups = known.lookups.saturating_sub(count);
            if known.lookups == 0 {
                shard.remove(&number);
            }
        }
    }

    /// The inode reference of a node the kernel holds, if known.
    pub(crate) fn resolve(&self, node: u64) -> Option<InodeRef> {
        if node == ROOT_NODE {
            return Some(self.root_ref);
        }
        let number = self.image_number(node)?;
        self.shard(number).lock().get(&number).map(|k| k.inode_ref)
    }

    /// Number of nodes remembered (excluding the root).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_inode_one_swap_and_mapping_is_an_involution() {
        let map = NodeMap::new(7, InodeRef(0x10));
        assert_eq!(map.node_id(7), 1);
        assert_eq!(map.node_id(1), 7);
        assert_eq!(map.node_id(3), 3);
        for n in 1..=9u32 {
            assert_eq!(map.image_number(map.node_id(n)), Some(n));
        }
        assert_eq!(map.image_number(0), None);
        assert_eq!(map.image_number(u64::MAX), None);
    }

    #[test]
    fn lookups_are_counted_and_forget_releases() {
        let map = NodeMap::new(7, InodeRef(0x10));
        assert_eq!(map.resolve(1), Some(InodeRef(0x10)));
        assert_eq!(map.resolve(3), None);
        map.remember(3, InodeRef(0x20));
        map.remember(3, InodeRef(0x20));
        map.remember(1, InodeRef(0x30)); // image inode 1 is node 7
        assert_eq!(map.resolve(3), Some(InodeRef(0x20)));
        assert_eq!(map.resolve(7), Some(InodeRef(0x30)));
        assert_eq!(map.len(), 2);
        map.forget(3, 1);
        assert_eq!(map.resolve(3), Some(InodeRef(0x20)));
        map.forget(3, 1);
        assert_eq!(map.resolve(3), None);
        map.forget(7, 5);
        assert_eq!(map.len(), 0);
        // The root is never forgotten.
        map.forget(1, 100);
        assert_eq!(map.resolve(1), Some(InodeRef(0x10)));
    }
}
