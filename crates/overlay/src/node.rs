//! The table of FUSE nodes the kernel currently knows about.
//!
//! A node is one object of the merged tree, identified by its stable inode number, with the
//! names it is known under and what the overlay resolved for it (is there an upper object,
//! which lower objects merge under it). Nodes are created by lookup and dropped when the kernel forgets them, so memory is
//! proportional to what the kernel caches, not to the size of the layers.
//!
//! A node stores no path: its path is rebuilt from its first (parent, name) when needed. A
//! name is stored once, shared by the node's alias list and the (parent, name) index, and a
//! node with one name (nearly all) keeps it inline.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::lower::{Kind, LowerObj};

/// FUSE node id of the root.
pub(crate) const ROOT: u64 = 1;

/// Lower objects merged under one name, topmost first: (layer index, object).
pub(crate) type LowerDirs = Vec<(usize, LowerObj)>;

/// One name of a node: (parent node id, name). The name is shared with the table's index.
pub(crate) type Alias = (u64, Arc<[u8]>);

/// What the overlay knows about one merged-tree object.
#[derive(Clone, Debug)]
pub(crate) struct NodeState {
    /// Object type.
    pub kind: Kind,
    /// An object exists in the upper directory at this node's path.
    pub upper: bool,
    /// Lower objects, topmost first: for a directory every lower directory merged into it (cut
    /// after the first opaque one); for anything else at most the one object it shows.
    pub lowers: LowerDirs,
    /// For directories with lowers: the absolute path (from the layer roots) the lowers were
    /// found at. Differs from the node's own path below a redirected directory.
    pub lower_path: Option<Vec<u8>>,
    /// Stable inode number reported as `st_ino`.
    pub ino: u64,
}

/// The names of one node, in the order they became known. Nearly every node has exactly one,
/// kept inline (no separate allocation).
#[derive(Debug, Default)]
pub(crate) enum Aliases {
    #[default]
    Empty,
    One(Alias),
    Many(Vec<Alias>),
}

impl Aliases {
    pub(crate) fn as_slice(&self) -> &[Alias] {
        match self {
            Aliases::Empty => &[],
            Aliases::One(a) => std::slice::from_ref(a),
            Aliases::Many(v) => v,
        }
    }

    pub(crate) fn first(&self) -> Option<&Alias> {
        self.as_slice().first()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// The stored alias equal to (parent, name), if any.
    fn find(&self, parent: u64, name: &[u8]) -> Option<&Alias> {
        self.as_slice()
            .iter()
            .find(|(p, n)| *p == parent && &n[..] == name)
    }

    fn push(&mut self, a: Alias) {
        *self = match std::mem::take(self) {
            Aliases::Empty => Aliases::One(a),
            Aliases::One(x) => Aliases::Many(vec![x, a]),
            Aliases::Many(mut v) => {
                v.push(a);
                Aliases::Many(v)
            }
        };
    }

    fn remove(&mut self, parent: u64, name: &[u8]) {
        *self = match std::mem::take(self) {
            Aliases::One(x) if x.0 == parent && &x.1[..] == name => Aliases::Empty,
            Aliases::Many(mut v) => {
                v.retain(|(p, n)| !(*p == parent && &n[..] == name));
                match v.len() {
                    0 => Aliases::Empty,
                    1 => Aliases::One(v.pop().expect("one element")),
                    _ => Aliases::Many(v),
                }
            }
            other => other,
        };
    }
}

impl<'a> IntoIterator for &'a Aliases {
    type Item = &'a Alias;
    type IntoIter = std::slice::Iter<'a, Alias>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// One node. Its FUSE node id is its stable inode number (fuser sends `st_ino` as the node
/// id), so every name of a hard-linked file maps to the same node: `aliases` holds them all.
#[derive(Debug)]
pub(crate) struct Node {
    /// (parent node id, name) of every name known for this node; empty once all were
    /// unlinked (the node then lives only for open handles until the kernel forgets it).
    pub aliases: Aliases,
    pub lookups: u64,
    pub state: NodeState,
    /// FUSE generation: changes when the id starts naming a different object (an upper inode
    /// number reused after deletion), so the kernel drops its stale inode (e.g. a removed,
    /// dead directory) instead of reusing it for the new object.
    pub generation: u64,
}

/// Key of the (parent, name) index. Looked up through [`ChildRef`] so a lookup by a borrowed
/// name allocates nothing.
#[derive(Debug)]
struct ChildKey(Alias);

/// A (parent, name) pair as the index hashes and compares it.
trait ChildRef {
    fn parts(&self) -> (u64, &[u8]);
}

impl ChildRef for ChildKey {
    fn parts(&self) -> (u64, &[u8]) {
        (self.0 .0, &self.0 .1)
    }
}

impl ChildRef for (u64, &[u8]) {
    fn parts(&self) -> (u64, &[u8]) {
        (self.0, self.1)
    }
}

impl Hash for dyn ChildRef + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let (p, n) = self.parts();
        p.hash(h);
        n.hash(h);
    }
}

impl PartialEq for dyn ChildRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn ChildRef + '_ {}

// `Hash`/`Eq` of the key must agree with those of its borrowed form.
impl Hash for ChildKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        (self as &dyn ChildRef).hash(h)
    }
}

impl PartialEq for ChildKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for ChildKey {}

impl<'a> Borrow<dyn ChildRef + 'a> for ChildKey {
    fn borrow(&self) -> &(dyn ChildRef + 'a) {
        self
    }
}

/// All nodes, indexed by id and by (parent, name).
#[derive(Debug)]
pub(crate) struct NodeTable {
    nodes: HashMap<u64, Node>,
    children: HashMap<ChildKey, u64>,
    next_generation: u64,
}

impl NodeTable {
    pub(crate) fn new(root: NodeState) -> NodeTable {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                aliases: Aliases::Empty,
                lookups: 1,
                state: root,
                generation: 0,
            },
        );
        NodeTable {
            nodes,
            children: HashMap::new(),
            next_generation: 1,
        }
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Node> {
        self.nodes.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&id)
    }

    /// The node currently known at (parent, name).
    pub(crate) fn child(&self, parent: u64, name: &[u8]) -> Option<u64> {
        self.children.get(&(parent, name) as &dyn ChildRef).copied()
    }

    /// Record a lookup of (parent, name) resolving to `state`; returns the node id (the
    /// state's inode number).
    pub(crate) fn insert_lookup(&mut self, parent: u64, name: &[u8], state: NodeState) -> u64 {
        let id = state.ino;
        let old = self.child(parent, name);
        if let Some(old) = old {
            if old != id {
                self.remove_alias(old, parent, name);
            }
        }
        let fresh_generation = self.next_generation;
        let alias = match self.nodes.get_mut(&id) {
            Some(n) => {
                if n.state.kind != state.kind || n.aliases.is_empty() {
                    // A reused inode number (or a name of an object whose every known name
                    // was removed): treat it as a new object for the kernel.
                    for a in std::mem::take(&mut n.aliases).as_slice() {
                        self.children.remove(&(a.0, &a.1[..]) as &dyn ChildRef);
                    }
                    n.generation = fresh_generation;
                    self.next_generation += 1;
                }
                n.lookups += 1;
                // Never turn a copied-up non-directory back into its lower object: a name
                // resolved from the lower layer with the same number is another name of the
                // same image inode (hard link), whose data is now the upper copy.
                let keep_upper = n.state.upper
                    && !state.upper
                    && n.state.kind != Kind::Dir
                    && n.state.kind == state.kind
                    && !n.aliases.is_empty();
                if !keep_upper {
                    n.state = state;
                }
                match n.aliases.find(parent, name) {
                    Some(a) => a.clone(),
                    None => {
                        let a: Alias = (parent, Arc::from(name));
                        n.aliases.push(a.clone());
                        a
                    }
                }
            }
            None => {
                let a: Alias = (parent, Arc::from(name));
                self.nodes.insert(
                    id,
                    Node {
                        aliases: Aliases::One(a.clone()),
                        lookups: 1,
                        state,
                        generation: fresh_generation,
                    },
                );
                self.next_generation += 1;
                a
            }
        };
        if self.child(parent, name) != Some(id) {
            self.children.insert(ChildKey(alias), id);
        }
        id
    }

    fn remove_alias(&mut self, id: u64, parent: u64, name: &[u8]) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.aliases.remove(parent, name);
        }
        let key: &dyn ChildRef = &(parent, name);
        if self.children.get(key) == Some(&id) {
            self.children.remove(key);
        }
    }

    /// Drop `n` lookup references; the node is freed when none remain.
    pub(crate) fn forget(&mut self, id: u64, n: u64) {
        if id == ROOT {
            return;
        }
        let remove = match self.nodes.get_mut(&id) {
            Some(node) => {
                node.lookups = node.lookups.saturating_sub(n);
                node.lookups == 0
            }
            None => false,
        };
        if remove {
            if let Some(node) = self.nodes.remove(&id) {
                for a in &node.aliases {
                    let key: &dyn ChildRef = &(a.0, &a.1[..]);
                    if self.children.get(key) == Some(&id) {
                        self.children.remove(key);
                    }
                }
            }
        }
    }

    /// Forget the name (parent, name): it was unlinked or replaced.
    pub(crate) fn detach_name(&mut self, parent: u64, name: &[u8]) {
        if let Some(id) = self.child(parent, name) {
            self.remove_alias(id, parent, name);
        }
    }

    /// Give node `id` the name (parent, name) in the index and its alias list.
    fn attach(&mut self, id: u64, parent: u64, name: &[u8]) {
        let a: Alias = (parent, Arc::from(name));
        if let Some(n) = self.nodes.get_mut(&id) {
            n.aliases.push(a.clone());
        }
        self.children.insert(ChildKey(a), id);
    }

    /// Record a rename of (parent, name) to (new_parent, new_name), replacing whatever was there.
    pub(crate) fn move_name(&mut self, parent: u64, name: &[u8], new_parent: u64, new_name: &[u8]) {
        let Some(id) = self.child(parent, name) else {
            self.detach_name(new_parent, new_name);
            return;
        };
        self.remove_alias(id, parent, name);
        self.detach_name(new_parent, new_name);
        self.attach(id, new_parent, new_name);
    }

    /// Record RENAME_EXCHANGE of two names.
    pub(crate) fn exchange_names(&mut self, pa: u64, na: &[u8], pb: u64, nb: &[u8]) {
        let a = self.child(pa, na);
        let b = self.child(pb, nb);
        if let Some(a) = a {
            self.remove_alias(a, pa, na);
        }
        if let Some(b) = b {
            self.remove_alias(b, pb, nb);
        }
        if let Some(a) = a {
            self.attach(a, pb, nb);
        }
        if let Some(b) = b {
            self.attach(b, pa, na);
        }
    }

    /// The node's current FUSE generation (0 for unknown ids).
    pub(crate) fn generation(&self, id: u64) -> u64 {
        self.nodes.get(&id).map_or(0, |n| n.generation)
    }

    /// First known (parent, name) of a node; `None` for the root or a detached node.
    pub(crate) fn alias(&self, id: u64) -> Option<(u64, Vec<u8>)> {
        let (p, n) = self.nodes.get(&id)?.aliases.first()?;
        Some((*p, n.to_vec()))
    }

    /// The node's path relative to the root ("" for the root), or `None` if it (or an
    /// ancestor) is detached or unknown.
    pub(crate) fn path(&self, id: u64) -> Option<Vec<u8>> {
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut cur = id;
        let mut guard = 0usize;
        while cur != ROOT {
            let n = self.nodes.get(&cur)?;
            let (parent, name) = n.aliases.first()?;
            parts.push(name);
            cur = *parent;
            guard += 1;
            if guard > 1 << 20 {
                return None;
            }
        }
        let mut out = Vec::new();
        for (i, p) in parts.iter().rev().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(p);
        }
        Some(out)
    }

    /// Number of nodes (for tests and diagnostics).
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// Split a relative path into (parent path, last name). The root has no parent.
pub(crate) fn split_path(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|b| *b == b'/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (&b""[..], p),
    }
}

/// Join a directory path and a name.
pub(crate) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + name.len() + 1);
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(kind: Kind, ino: u64) -> NodeState {
        NodeState {
            kind,
            upper: true,
            lowers: Vec::new(),
            lower_path: None,
            ino,
        }
    }

    #[test]
    fn paths_follow_renames_and_detach() {
        let mut t = NodeTable::new(st(Kind::Dir, 100));
        let a = t.insert_lookup(ROOT, b"a", st(Kind::Dir, 10));
        let b = t.insert_lookup(a, b"b", st(Kind::File, 11));
        assert_eq!(t.path(b).unwrap(), b"a/b");
        let c = t.insert_lookup(ROOT, b"c", st(Kind::Dir, 12));
        t.move_name(ROOT, b"a", c, b"x");
        assert_eq!(t.path(b).unwrap(), b"c/x/b");
        assert_eq!(t.child(ROOT, b"a"), None);
        t.detach_name(ROOT, b"c");
        assert_eq!(t.path(b), None);
    }

    #[test]
    fn lookup_reuses_node_and_forget_frees_it() {
        let mut t = NodeTable::new(st(Kind::Dir, 100));
        let a = t.insert_lookup(ROOT, b"a", st(Kind::File, 10));
        assert_eq!(t.insert_lookup(ROOT, b"a", st(Kind::File, 10)), a);
        t.forget(a, 1);
        assert!(t.get(a).is_some());
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        assert_eq!(t.child(ROOT, b"a"), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn hard_links_share_a_node_and_survive_unlink_of_one_name() {
        let mut t = NodeTable::new(st(Kind::Dir, 100));
        let a = t.insert_lookup(ROOT, b"a", st(Kind::File, 10));
        let b = t.insert_lookup(ROOT, b"b", st(Kind::File, 10));
        assert_eq!(a, b);
        t.detach_name(ROOT, b"a");
        assert_eq!(t.path(a).unwrap(), b"b");
    }

    #[test]
    fn reused_number_after_removal_gets_a_new_generation() {
        let mut t = NodeTable::new(st(Kind::Dir, 100));
        let a = t.insert_lookup(ROOT, b"a", st(Kind::Dir, 10));
        let g1 = t.generation(a);
        assert_eq!(t.insert_lookup(ROOT, b"a", st(Kind::Dir, 10)), a);
        assert_eq!(t.generation(a), g1, "same object, same generation");
        t.detach_name(ROOT, b"a");
        // The kernel has not forgotten `a` yet; a new directory reuses the inode number.
        assert_eq!(t.insert_lookup(ROOT, b"b", st(Kind::Dir, 10)), a);
        assert_ne!(t.generation(a), g1);
    }

    #[test]
    fn image_hard_links_share_a_node_and_stay_copied_up() {
        let lower = |ino| NodeState {
            upper: false,
            ..st(Kind::File, ino)
        };
        let mut t = NodeTable::new(st(Kind::Dir, 100));
        let d = t.insert_lookup(ROOT, b"d", st(Kind::Dir, 11));
        let a = t.insert_lookup(ROOT, b"a", lower(10));
        let b = t.insert_lookup(d, b"b", lower(10));
        assert_eq!(a, b, "one node for both names of the image inode");
        t.get_mut(a).unwrap().state.upper = true;
        // A later lookup of a not-yet-linked name must not downgrade the node.
        t.insert_lookup(d, b"b", lower(10));
        assert!(t.get(a).unwrap().state.upper);
        t.detach_name(ROOT, b"a");
        assert_eq!(t.path(a).unwrap(), b"d/b");
    }

    #[test]
    fn names_are_indexed_without_copies_through_every_alias_change() {
        let mut t = NodeTable::new(st(Kind::Dir, 100));
        let d = t.insert_lookup(ROOT, b"d", st(Kind::Dir, 11));
        // Three names of one node (one inline, then a list), then back down to none.
        for (p, n) in [(ROOT, &b"a"[..]), (d, b"b"), (ROOT, b"c")] {
            assert_eq!(t.insert_lookup(p, n, st(Kind::File, 10)), 10);
        }
        assert_eq!(t.get(10).unwrap().aliases.as_slice().len(), 3);
        // A repeated lookup of a known name adds no alias.
        t.insert_lookup(d, b"b", st(Kind::File, 10));
        assert_eq!(t.get(10).unwrap().aliases.as_slice().len(), 3);
        for (p, n) in [(ROOT, &b"a"[..]), (d, b"b"), (ROOT, b"c")] {
            assert_eq!(t.child(p, n), Some(10));
        }
        t.detach_name(ROOT, b"a");
        assert_eq!(t.child(ROOT, b"a"), None);
        assert_eq!(t.path(10).unwrap(), b"d/b");
        t.move_name(d, b"b", ROOT, b"e");
        assert!(matches!(t.get(10).unwrap().aliases, Aliases::Many(_)));
        t.detach_name(ROOT, b"c");
        assert!(matches!(t.get(10).unwrap().aliases, Aliases::One(_)));
        assert_eq!(t.path(10).unwrap(), b"e");
        assert_eq!(t.child(ROOT, b"e"), Some(10));
        t.detach_name(ROOT, b"e");
        assert!(t.get(10).unwrap().aliases.is_empty());
        assert_eq!(t.path(10), None);
        // Same name under two parents: two entries of the index.
        let x = t.insert_lookup(ROOT, b"x", st(Kind::File, 20));
        let y = t.insert_lookup(d, b"x", st(Kind::File, 21));
        assert_eq!((t.child(ROOT, b"x"), t.child(d, b"x")), (Some(x), Some(y)));
        t.forget(x, 1);
        assert_eq!((t.child(ROOT, b"x"), t.child(d, b"x")), (None, Some(y)));
    }

    #[test]
    fn exchange_swaps_names() {
        let mut t = NodeTable::new(st(Kind::Dir, 100));
        let a = t.insert_lookup(ROOT, b"a", st(Kind::File, 10));
        let d = t.insert_lookup(ROOT, b"d", st(Kind::Dir, 11));
        let b = t.insert_lookup(d, b"b", st(Kind::File, 12));
        t.exchange_names(ROOT, b"a", d, b"b");
        assert_eq!(t.path(a).unwrap(), b"d/b");
        assert_eq!(t.path(b).unwrap(), b"a");
        assert_eq!(t.child(ROOT, b"a"), Some(b));
    }

    #[test]
    fn split_and_join() {
        assert_eq!(split_path(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split_path(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(join(b"", b"x"), b"x");
        assert_eq!(join(b"a", b"x"), b"a/x");
    }
}
