//! squashbox-overlay: a copy-on-write FUSE filesystem over read-only SquashFS images.
//!
//! [`mount_overlay`] stacks one or more images (leftmost = topmost) under a writable upper
//! directory. Images are never modified: every change lands in the upper directory, which
//! follows the Linux overlayfs on-disk conventions (whiteouts are 0/0 character devices, opaque
//! directories carry `trusted.overlay.opaque=y`, renamed merged directories carry
//! `trusted.overlay.redirect`), so the same upper directory can later be used by the kernel's
//! `overlay` filesystem (`-o redirect_dir=on`). See `docs/overlay.md` for the exact semantics.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::path::Path;
//! use squashbox_overlay::{mount_overlay, OverlayOptions};
//! let image = Arc::new(squashbox_format::Archive::open_path("base.sqsh")?);
//! let handle = mount_overlay(
//!     vec![image],
//!     Path::new("/srv/upper"),
//!     Path::new("/srv/work"),
//!     Path::new("/mnt/merged"),
//!     OverlayOptions::default(),
//! )?;
//! // ... use /mnt/merged ...
//! handle.unmount()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod copyup;
mod core;
mod fs;
mod handle;
mod lower;
mod namespace;
mod node;
mod readdir;
mod sys;
mod unsynced;
mod upper;
mod volatile;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use squashbox_format::Archive;

pub use crate::lower::LowerLayer;
pub use crate::upper::XattrNamespace;

/// Mount options for [`mount_overlay`].
#[derive(Clone, Debug)]
pub struct OverlayOptions {
    /// Number of FUSE worker threads (at least 1).
    pub threads: usize,
    /// Let users other than the mounting one access the mount (`allow_other`; needs root or
    /// `user_allow_other` in `/etc/fuse.conf`).
    pub allow_other: bool,
    /// Let the kernel check permissions from the reported modes (`default_permissions`).
    /// Without it the mount itself performs no permission checks.
    pub default_permissions: bool,
    /// Which xattr namespace holds the overlay markers in the upper directory.
    pub xattr_namespace: XattrNamespace,
    /// How long the kernel may cache names and attributes.
    pub cache_ttl: Duration,
    /// File system name shown in `/proc/mounts`.
    pub fsname: String,
    /// Let the kernel read and write files of the upper directory directly (FUSE passthrough,
    /// Linux >= 6.9, needs CAP_SYS_ADMIN in the daemon) when it can.
    pub passthrough: bool,
    /// Without passthrough, let the kernel cache writes (FUSE writeback cache).
    pub writeback_cache: bool,
    /// Never sync the upper filesystem (like the kernel overlayfs' `-o volatile`): copy-ups
    /// are not `fsync`ed (not even in the background, see `sync_copy_up`), and
    /// `fsync`/`fsyncdir` through the mount return at once. After a machine crash the upper
    /// directory may hold empty or partial files under their real names.
    /// The mount leaves a marker in the work directory (`WORK/squashbox-volatile/`) that a
    /// clean unmount removes after syncing the upper filesystem; a later mount that finds
    /// it from an earlier boot fails with [`OverlayError::VolatileCrash`].
    pub volatile: bool,
    /// Sync every copy-up before the file appears under its name, like the kernel overlayfs.
    /// Off by default: a copy-up appears once its data is in the page cache and is synced in
    /// the background, after being journaled in the work directory
    /// (`WORK/squashbox-unsynced/`); should the machine stop before that sync, the next mount
    /// copies the file again from its lower layer (unless it was written to since). Opening
    /// a large lower file for writing then waits for reading it, not also for the disk to
    /// take the copy. Ignored in volatile mode, which never syncs.
    pub sync_copy_up: bool,
}

/// How data of files open in the upper directory moves, as negotiated with the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoMode {
    /// Every read and write is a request to the daemon (page cache, write-through).
    Daemon = 0,
    /// Writes are cached by the kernel and written back to the daemon later.
    WritebackCache = 1,
    /// Reads, writes and mmap go from the kernel straight to the upper file.
    Passthrough = 2,
}

impl IoMode {
    pub(crate) fn from_u8(v: u8) -> IoMode {
        match v {
            2 => IoMode::Passthrough,
            1 => IoMode::WritebackCache,
            _ => IoMode::Daemon,
        }
    }
}

impl Default for OverlayOptions {
    fn default() -> Self {
        OverlayOptions {
            threads: 4,
            allow_other: false,
            default_permissions: true,
            xattr_namespace: XattrNamespace::Auto,
            cache_ttl: Duration::from_secs(1),
            fsname: "squashbox-overlay".to_string(),
            passthrough: true,
            writeback_cache: true,
            volatile: false,
            sync_copy_up: false,
        }
    }
}

/// Errors from mounting an overlay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OverlayError {
    /// Arguments are unusable (e.g. upper and work on different filesystems).
    #[error("invalid overlay setup: {0}")]
    InvalidArgument(String),
    /// A directory or layer could not be opened or prepared.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The FUSE mount failed (no /dev/fuse, no permission, bad mountpoint).
    #[error("FUSE mount at {mountpoint} failed: {source}")]
    Mount {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The work directory holds the marker of a volatile mount that did not end cleanly
    /// before the machine restarted (or whose state could not be synced): the upper directory
    /// may be inconsistent (files empty or partly written). Nothing was changed.
    #[error(
        "{marker} exists: a volatile mount of this upper directory did not end cleanly, and \
         {reason}; the upper directory may be inconsistent (empty or partial files). Discard \
         the upper and work directories, or, if you know the upper directory is intact, delete \
         {marker} and mount again"
    )]
    VolatileCrash {
        /// The marker directory.
        marker: PathBuf,
        /// Why it cannot be accepted automatically.
        reason: String,
    },
    /// A volatile mount of this work directory is still being served (its marker is locked).
    #[error(
        "{marker} is held by a running volatile mount of this upper directory; unmount it first"
    )]
    VolatileInUse {
        /// The marker directory.
        marker: PathBuf,
    },
    /// Unmounting failed.
    #[error("unmount of {mountpoint} failed: {source}")]
    Unmount {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> OverlayError {
    let context = context.into();
    move |source| OverlayError::Io { context, source }
}

/// A live overlay mount. Dropping it unmounts and waits for the worker threads.
pub struct OverlayHandle {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    mode: Arc<AtomicU8>,
    open_files: Arc<fs::OpenFiles>,
}

impl std::fmt::Debug for OverlayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayHandle")
            .field("mountpoint", &self.mountpoint)
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl OverlayHandle {
    /// The mountpoint.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The data path the kernel agreed to. Known once the kernel has initialised the
    /// connection, which any first access of the mount (e.g. a `stat`) waits for.
    pub fn io_mode(&self) -> IoMode {
        IoMode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// True while the filesystem is still being served (false once unmounted from outside,
    /// e.g. by `umount` / `fusermount -u`).
    pub fn is_alive(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| !s.guard.is_finished())
    }

    /// Unmount and wait for the worker threads to finish.
    pub fn unmount(mut self) -> Result<(), OverlayError> {
        self.unmount_inner()
    }

    /// Block until the filesystem is unmounted from outside (foreground serving).
    pub fn wait(mut self) -> Result<(), OverlayError> {
        if let Some(s) = self.session.take() {
            s.join().map_err(|source| OverlayError::Unmount {
                mountpoint: self.mountpoint.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn unmount_inner(&mut self) -> Result<(), OverlayError> {
        let Some(s) = self.session.take() else {
            return Ok(());
        };
        let r = if s.guard.is_finished() {
            s.join()
        } else {
            // Files closed just before are released asynchronously; give those releases a
            // moment so the unmount does not fail on them (files still open by someone
            // simply time out here and the mount is detached lazily below).
            self.open_files.wait_idle(Duration::from_millis(500));
            s.umount_and_join()
        };
        if r.is_err() && is_mounted_here(&self.mountpoint) {
            // Busy (files still open): detach it so no mount is left behind; the kernel ends
            // the connection, and our worker threads, when the last file is closed.
            detach(&self.mountpoint);
        }
        r.map_err(|source| OverlayError::Unmount {
            mountpoint: self.mountpoint.clone(),
            source,
        })
    }
}

impl Drop for OverlayHandle {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            log::warn!("{e}");
        }
    }
}

/// Mount images `lowers` (leftmost = topmost) with writable `upper` at `mountpoint`. `work`
/// must be an empty-or-ours directory on the same filesystem as `upper` (squashbox keeps its
/// temporary objects in `work/squashbox-work`).
pub fn mount_overlay(
    lowers: Vec<Arc<Archive>>,
    upper: &Path,
    work: &Path,
    mountpoint: &Path,
    options: OverlayOptions,
) -> Result<OverlayHandle, OverlayError> {
    mount_overlay_layers(
        lowers.into_iter().map(LowerLayer::Image).collect(),
        upper,
        work,
        mountpoint,
        options,
    )
}

/// Like [`mount_overlay`], with lower layers that may also be plain read-only directories.
pub fn mount_overlay_layers(
    lowers: Vec<LowerLayer>,
    upper: &Path,
    work: &Path,
    mountpoint: &Path,
    options: OverlayOptions,
) -> Result<OverlayHandle, OverlayError> {
    let fs = build_fs(lowers, upper, work, &options)?;
    let mode = fs.mode.clone();
    let open_files = fs.open_files.clone();
    let mut cfg = Config::default();
    cfg.mount_options = vec![
        MountOption::FSName(options.fsname.clone()),
        MountOption::Subtype("squashbox-overlay".to_string()),
        MountOption::RW,
    ];
    if options.default_permissions {
        cfg.mount_options.push(MountOption::DefaultPermissions);
    }
    if options.allow_other {
        cfg.acl = SessionACL::All;
    }
    cfg.n_threads = Some(options.threads.max(1));
    cfg.clone_fd = true;
    let session =
        fuser::spawn_mount(fs, mountpoint, &cfg).map_err(|source| OverlayError::Mount {
            mountpoint: mountpoint.to_path_buf(),
            source,
        })?;
    Ok(OverlayHandle {
        session: Some(session),
        mountpoint: mountpoint.to_path_buf(),
        mode,
        open_files,
    })
}

fn build_fs(
    lowers: Vec<LowerLayer>,
    upper: &Path,
    work: &Path,
    options: &OverlayOptions,
) -> Result<fs::OverlayFs, OverlayError> {
    if lowers.is_empty() {
        return Err(OverlayError::InvalidArgument(
            "at least one lower layer is needed".into(),
        ));
    }
    let mut layers = Vec::with_capacity(lowers.len());
    for (i, l) in lowers.iter().enumerate() {
        layers.push(
            lower::Layer::open(l).map_err(io_ctx(format!("opening lower layer {i} ({l:?})")))?,
        );
    }
    // Before anything in the upper or work directory changes: a marker left by a volatile
    // mount that did not end cleanly must be refused (or, same boot, recovered).
    volatile::check(work, upper)?;
    let up = upper::Upper::open(upper, work, options.xattr_namespace).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidInput {
            OverlayError::InvalidArgument(e.to_string())
        } else {
            OverlayError::Io {
                context: format!(
                    "opening upper {} / work {}",
                    upper.display(),
                    work.display()
                ),
                source: e,
            }
        }
    })?;
    let cfg = core::EngineConfig {
        ttl: options.cache_ttl,
        running_as_root: rustix::process::geteuid().is_root(),
        volatile: options.volatile,
        sync_copy_up: options.sync_copy_up && !options.volatile,
    };
    // Copy-ups an earlier mount synced in the background but the machine may have lost.
    unsynced::recover(&layers, &up, work).map_err(io_ctx(format!(
        "repairing unsynced copy-ups recorded in {}",
        work.join(unsynced::JOURNAL_DIR).display()
    )))?;
    let syncer = if options.volatile || options.sync_copy_up {
        None
    } else {
        Some(
            unsynced::Syncer::start(work)
                .map_err(io_ctx("starting the copy-up syncer".to_string()))?,
        )
    };
    let marker = if options.volatile {
        Some(volatile::Marker::create(work, upper)?)
    } else {
        None
    };
    let mut ov =
        core::Overlay::new(layers, up, cfg).map_err(io_ctx("resolving the overlay root"))?;
    ov.volatile_marker = marker;
    ov.syncer = syncer;
    // Free hard-link index entries whose names were all deleted while we were not looking.
    if let Err(e) = ov.clean_index() {
        log::warn!("cleaning the hard-link index: {e}");
    }
    Ok(fs::OverlayFs::new(
        Arc::new(ov),
        options.passthrough,
        options.writeback_cache,
        Arc::new(AtomicU8::new(IoMode::Daemon as u8)),
    ))
}

/// Whether `/proc/self/mounts` lists a mount at `path`.
fn is_mounted_here(path: &Path) -> bool {
    let Ok(abs) = std::path::absolute(path) else {
        return false;
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = abs.to_string_lossy().replace(' ', "\\040");
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(want.as_str()))
}

/// Lazily detach the mount at `path` (`umount -l`).
fn detach(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call; umount2 only reads it.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        log::warn!(
            "lazy unmount of {} failed: {}",
            path.display(),
            io::Error::last_os_error()
        );
    }
}
