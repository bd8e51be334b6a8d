//! Xattr table writer: key/value pairs in metadata blocks, one lookup entry per distinct set.
//!
//! Identical sets share one id. A value that was already written for another key is stored
//! out of line (an 8-byte reference back to the first copy) when that is smaller.

use std::collections::HashMap;

use super::inode::{put16, put32, put64};
use super::metadata::MetadataWriter;
use crate::compress::Codec;
use crate::error::{Error, Result};

const TYPE_USER: u16 = 0;
const TYPE_TRUSTED: u16 = 1;
const TYPE_SECURITY: u16 = 2;
const VALUE_OUT_OF_LINE: u16 = 0x100;

/// Split a full xattr name into its on-disk prefix id and the remainder.
/// Returns `None` for namespaces SquashFS cannot store (e.g. `system.`).
pub fn split_name(name: &[u8]) -> Option<(u16, &[u8])> {
    for (prefix, id) in [
        (&b"user."[..], TYPE_USER),
        (&b"trusted."[..], TYPE_TRUSTED),
        (&b"security."[..], TYPE_SECURITY),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return Some((id, rest));
        }
    }
    None
}

/// A set of `(full name, value)` pairs.
pub type XattrPairs = Vec<(Vec<u8>, Vec<u8>)>;

struct IdEntry {
    kv_ref: u64,
    count: u32,
    size: u32,
}

/// Accumulates xattr sets.
pub struct XattrTable {
    kv: MetadataWriter,
    ids: Vec<IdEntry>,
    sets: HashMap<XattrPairs, u32>,
    values: HashMap<Vec<u8>, u64>,
}

/// The xattr table serialized for writing.
pub struct EncodedXattrs {
    /// Key/value metadata blocks.
    pub kv_blocks: Vec<u8>,
    /// Id-entry metadata blocks.
    pub id_blocks: Vec<u8>,
    /// Start of each id-entry block relative to `id_blocks`.
    pub id_block_starts: Vec<u64>,
    /// Number of ids.
    pub count: u32,
}

impl XattrTable {
    /// An empty table.
    pub fn new(codec: Codec) -> Self {
        XattrTable {
            kv: MetadataWriter::new(codec),
            ids: Vec::new(),
            sets: HashMap::new(),
            values: HashMap::new(),
        }
    }

    /// Number of distinct sets.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True if no set was added.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Add a set of `(full name, value)` pairs and return its id. The caller passes pairs in
    /// a canonical order (e.g. sorted by name) so equal sets are recognized.
    pub fn add(&mut self, set: &[(Vec<u8>, Vec<u8>)]) -> Result<u32> {
        if set.is_empty() {
            return Err(Error::InvalidArgument("empty xattr set".into()));
        }
        if let Some(id) = self.sets.get(set) {
            return Ok(*id);
        }
        let id = u32::try_from(self.ids.len())
            .ok()
            .filter(|id| *id != u32::MAX)
            .ok_or_else(|| Error::InvalidArgument("too many xattr sets".into()))?;
        let start = self.kv.position();
        let start_len = self.kv.payload_len();
        let mut buf = Vec::new();
        for (name, value) in set {
            let (prefix, rest) = split_name(name).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "xattr {:?} is in a namespace SquashFS cannot store",
                    String::from_utf8_lossy(name)
                ))
            })?;
            if rest.is_empty() || rest.len() > usize::from(u16::MAX) {
                return Err(Error::InvalidArgument(format!(
                    "bad xattr name {:?}",
                    String::from_utf8_lossy(name)
                )));
            }
            let value_len = u32::try_from(value.len())
                .map_err(|_| Error::InvalidArgument("xattr value larger than 4 GiB".into()))?;
            buf.clear();
            match self.values.get(value) {
                Some(&earlier) if value.len() > 8 => {
                    put16(&mut buf, prefix | VALUE_OUT_OF_LINE);
                    put16(&mut buf, rest.len() as u16);
                    buf.extend_from_slice(rest);
                    put32(&mut buf, 8);
                    put64(&mut buf, earlier);
                    self.kv.write(&buf)?;
                }
                _ => {
                    put16(&mut buf, prefix);
                    put16(&mut buf, rest.len() as u16);
                    buf.extend_from_slice(rest);
                    self.kv.write(&buf)?;
                    let value_pos = self.kv.position().to_ref();
                    buf.clear();
                    put32(&mut buf, value_len);
                    self.kv.write(&buf)?;
                    self.kv.write(value)?;
                    self.values.entry(value.clone()).or_insert(value_pos);
                }
            }
        }
        let size = u32::try_from(self.kv.payload_len() - start_len)
            .map_err(|_| Error::InvalidArgument("xattr set larger than 4 GiB".into()))?;
        self.ids.push(IdEntry {
            kv_ref: start.to_ref(),
            count: set.len() as u32,
            size,
        });
        self.sets.insert(set.to_vec(), id);
        Ok(id)
    }

    /// Serialize.
    pub fn finish(self, codec: &Codec) -> Result<EncodedXattrs> {
        let (kv_blocks, _) = self.kv.finish()?;
        let mut entries = Vec::with_capacity(self.ids.len() * 16);
        for e in &self.ids {
            put64(&mut entries, e.kv_ref);
            put32(&mut entries, e.count);
            put32(&mut entries, e.size);
        }
        let mut ids = MetadataWriter::new(codec.clone());
        ids.write(&entries)?;
        let (id_blocks, id_block_starts) = ids.finish()?;
        Ok(EncodedXattrs {
            kv_blocks,
            id_blocks,
            id_block_starts,
            count: self.ids.len() as u32,
        })
    }
}
