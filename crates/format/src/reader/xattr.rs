//! Extended attributes.
//!
//! An inode's xattr index selects an entry of the xattr id table: (reference to the first
//! key/value pair, pair count, total size). Pairs live in metadata blocks of the key/value
//! table. A key is `type u16, name_len u16, name` where the low byte of `type` selects the
//! prefix (0 `user.`, 1 `trusted.`, 2 `security.`) and bit 0x100 says the value is stored out
//! of line: the inline value is then an 8-byte reference to a `size u32, bytes` record elsewhere
//! in the key/value table.

use crate::error::{Error, Result};

use super::metadata::MetaCursor;
use super::{Archive, Inode, Xattr};

/// Bit of the key type: value stored out of line.
const OUT_OF_LINE: u16 = 0x100;
/// Linux `XATTR_NAME_MAX`: longest full name (prefix included).
const MAX_NAME: usize = 255;
/// Linux `XATTR_SIZE_MAX`: largest value.
const MAX_VALUE: u32 = 65536;
/// Linux `XATTR_LIST_MAX`: the names of one inode, NUL-terminated, must fit in this.
const MAX_LIST: usize = 65536;
/// Bound on the values of one inode held in memory at once.
const MAX_TOTAL_VALUES: usize = 16 << 20;

fn prefix(kind: u16) -> Option<&'static [u8]> {
    match kind & 0xFF {
        0 => Some(b"user."),
        1 => Some(b"trusted."),
        2 => Some(b"security."),
        _ => None,
    }
}

impl Archive {
    /// A cursor at a key/value table reference `(block << 16) | offset`.
    fn kv_cursor(&self, reference: u64) -> Result<MetaCursor> {
        let xattr = self
            .tables
            .xattr
            .as_ref()
            .ok_or_else(|| Error::corrupt("xattr reference but no xattr table", 0))?;
        if reference >> 48 != 0 {
            return Err(Error::corrupt(
                format!("xattr reference {reference:#x} has bits above 48 set"),
                xattr.kv.start,
            ));
        }
        let block = xattr.kv.block_at(reference >> 16, "xattr reference")?;
        MetaCursor::new(xattr.kv, block, (reference & 0xFFFF) as usize)
    }

    /// The size field of `inode`'s xattr id entry (0 without xattrs).
    pub(crate) fn read_xattr_size(&self, inode: &Inode) -> Result<u32> {
        let Some(index) = inode.xattr_index else {
            return Ok(0);
        };
        let tables = self.tables.xattr.as_ref().ok_or_else(|| {
            Error::corrupt(
                format!(
                    "inode {} has xattrs but the image has no xattr table",
                    inode.number
                ),
                0,
            )
        })?;
        let mut entry = [0u8; 16];
        tables.ids.read_entry(self, u64::from(index), &mut entry)?;
        Ok(u32::from_le_bytes(
            entry[12..16].try_into().expect("4 bytes"),
        ))
    }

    /// Decode all xattrs of `inode`.
    pub(crate) fn read_xattrs(&self, inode: &Inode) -> Result<Vec<Xattr>> {
        let Some(index) = inode.xattr_index else {
            return Ok(Vec::new());
        };
        let tables = self.tables.xattr.as_ref().ok_or_else(|| {
            Error::corrupt(
                format!(
                    "inode {} has xattrs but the image has no xattr table",
                    inode.number
                ),
                0,
            )
        })?;
        let mut entry = [0u8; 16];
        tables.ids.read_entry(self, u64::from(index), &mut entry)?;
        let reference = u64::from_le_bytes(entry[0..8].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(entry[8..12].try_into().expect("4 bytes"));
        let mut cursor = self.kv_cursor(reference)?;
        let at = tables.kv.start + (reference >> 16);
        let corrupt =
            |what: String| Error::corrupt(format!("xattrs of inode {}: {what}", inode.number), at);
        // Each key takes at least one byte of the listxattr buffer plus its NUL.
        if count as usize > MAX_LIST / 2 {
            return Err(corrupt(format!(
                "{count} xattrs are more than Linux allows"
            )));
        }
        let mut out: Vec<Xattr> = Vec::with_capacity((count as usize).min(64));
        let mut list_len = 0usize;
        let mut values_len = 0usize;
        for _ in 0..count {
            let kind = cursor.u16(self)?;
            let name_len = usize::from(cursor.u16(self)?);
            let Some(prefix) = prefix(kind) else {
                return Err(corrupt(format!(
                    "unknown xattr prefix type {}",
                    kind & 0xFF
                )));
            };
            if kind & !(0xFF | OUT_OF_LINE) != 0 {
                return Err(corrupt(format!("xattr type {kind:#x} has unknown flags")));
            }
            if prefix.len() + name_len > MAX_NAME {
                return Err(corrupt(format!(
                    "xattr name of {name_len} bytes is too long"
                )));
            }
            let mut name = prefix.to_vec();
            name.extend_from_slice(&cursor.read_vec(self, name_len)?);
            if name[prefix.len()..].contains(&0) {
                return Err(corrupt("xattr name contains NUL".into()));
            }
            list_len += name.len() + 1;
            if list_len > MAX_LIST {
                return Err(corrupt("xattr names exceed 64 KiB".into()));
            }
            let size = cursor.u32(self)?;
            let value = if kind & OUT_OF_LINE != 0 {
                if size != 8 {
                    return Err(corrupt(format!(
                        "out-of-line value reference has size {size}, not 8"
                    )));
                }
                let target = cursor.u64(self)?;
                let mut value_cursor = self.kv_cursor(target)?;
                let size = value_cursor.u32(self)?;
                read_value(self, &mut value_cursor, size, &corrupt)?
            } else {
                read_value(self, &mut cursor, size, &corrupt)?
            };
            values_len += value.len();
            if values_len > MAX_TOTAL_VALUES {
                return Err(corrupt("xattr values exceed 16 MiB".into()));
            }
            out.push(Xattr { name, value });
        }
        Ok(out)
    }
}

fn read_value(
    archive: &Archive,
    cursor: &mut MetaCursor,
    size: u32,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<Vec<u8>> {
    if size > MAX_VALUE {
        return Err(corrupt(format!(
            "xattr value of {size} bytes exceeds 64 KiB"
        )));
    }
    cursor.read_vec(archive, size as usize)
}
