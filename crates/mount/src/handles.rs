//! Open regular files: the decoded inode plus sequential-read tracking.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use squashbox_format::Inode;

const SHARDS: u64 = 16;

/// One open file.
pub(crate) struct OpenFile {
    /// The decoded inode, so reads need no metadata lookups.
    pub(crate) inode: Arc<Inode>,
    /// Where the previous read ended; a read starting there is sequential.
    next_offset: AtomicU64,
}

impl OpenFile {
    /// Record a read of `offset..end` and tell whether it continued the previous one.
    pub(crate) fn note_read(&self, offset: u64, end: u64) -> bool {
        self.next_offset.swap(end, Ordering::Relaxed) == offset
    }
}

/// File handles handed to the kernel by `open`, released by `release`.
pub(crate) struct OpenFiles {
    next_handle: AtomicU64,
    shards: Vec<Mutex<HashMap<u64, Arc<OpenFile>>>>,
}

impl OpenFiles {
    pub(crate) fn new() -> Self {
        OpenFiles {
            next_handle: AtomicU64::new(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, fh: u64) -> &Mutex<HashMap<u64, Arc<OpenFile>>> {
        &self.shards[(fh % SHARDS) as usize]
    }

    /// Register an open file and return its handle.
    pub(crate) fn insert(&self, inode: Inode) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let file = Arc::new(OpenFile {
            inode: Arc::new(inode),
            next_offset: AtomicU64::new(0),
        });
        self.shard(fh).lock().insert(fh, file);
        fh
    }

    /// The open file behind `fh`.
    pub(crate) fn get(&self, fh: u64) -> Option<Arc<OpenFile>> {
        self.shard(fh).lock().get(&fh).cloned()
    }

    /// Forget `fh`.
    pub(crate) fn remove(&self, fh: u64) {
        self.shard(fh).lock().remove(&fh);
    }

    /// Number of open handles.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}
