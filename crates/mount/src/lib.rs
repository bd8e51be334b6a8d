//! squashbox-mount: serve a SquashFS image as a read-only FUSE file system.
//!
//! Pure Rust on top of the [`fuser`] crate: no libfuse. As root the file system is mounted
//! with `mount(2)` directly; other users go through the setuid `fusermount3` helper.
//!
//! ```no_run
//! use std::sync::Arc;
//! use squashbox_format::Archive;
//! use squashbox_mount::{mount, MountOptions};
//!
//! let archive = Arc::new(Archive::open_path("image.sqfs")?);
//! let handle = mount(archive, "/mnt/image", MountOptions::default())?;
//! // ... use /mnt/image ...
//! handle.unmount()?; // or just drop the handle
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What is served matches the kernel's squashfs driver: inode numbers from the image (hard
//! links share `st_ino`; the root and image inode 1 swap numbers because FUSE reserves 1 for
//! the root), link counts, device numbers, `st_blocks` from the bytes actually stored,
//! directory listings with stable offsets, symlinks, all xattr namespaces and `statfs`. Every
//! modifying operation fails with EROFS. Unreadable (corrupt) data fails that one request with
//! EIO, is logged, and the mount keeps serving.
//!
//! Speed comes from several worker threads each with a cloned `/dev/fuse` descriptor, reads
//! spanning several blocks decompressed in parallel, background read-ahead after sequential
//! reads, long entry/attribute timeouts, `FOPEN_KEEP_CACHE`/`FOPEN_CACHE_DIR`, `readdirplus`
//! and requests up to 1 MiB.

mod attr;
mod error;
mod fs;
mod handles;
mod nodes;
mod options;
mod readahead;
mod session;
mod unmount;

pub use error::{MountError, Result};
pub use options::{open_options_for_cache_size, MountOptions};
pub use session::{mount, MountHandle};
pub use unmount::{absolute_mountpoint, is_mounted, unmount, UnmountMode};
