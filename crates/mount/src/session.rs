//! Mounting, the handle that keeps a mount alive, and tearing it down.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use fuser::{Config, MountOption, Session, SessionACL};
use squashbox_format::Archive;

use crate::error::{MountError, Result};
use crate::fs::{Counters, FsConfig, SquashFs};
use crate::options::MountOptions;
use crate::unmount::{is_mounted, unmount, UnmountMode};

/// How long dropping a handle waits for the serving threads after unmounting. Only a lazy
/// unmount by a non-root user with files still open can take longer; the threads are then
/// left to finish on their own.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A mounted image. Dropping it (or calling [`MountHandle::unmount`]) unmounts the file
/// system and joins the serving threads.
pub struct MountHandle {
    mountpoint: PathBuf,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
    done: Receiver<std::io::Result<()>>,
}

impl std::fmt::Debug for MountHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountHandle")
            .field("mountpoint", &self.mountpoint)
            .field("alive", &self.is_alive())
            .finish()
    }
}

/// Mount `archive` read-only at `mountpoint` and serve it from background threads.
///
/// The mount point must be an existing, empty directory. When this returns, the file system
/// is mounted and answering requests.
pub fn mount(
    archive: Arc<Archive>,
    mountpoint: impl AsRef<Path>,
    options: MountOptions,
) -> Result<MountHandle> {
    let mountpoint = mountpoint.as_ref();
    if options.threads == 0 {
        return Err(MountError::InvalidOption(
            "threads must be at least 1".into(),
        ));
    }
    check_mountpoint(mountpoint)?;
    let mountpoint = mountpoint
        .canonicalize()
        .map_err(|e| MountError::io(format!("resolving {}", mountpoint.display()), e))?;

    let counters = Arc::new(Counters::default());
    let fs = SquashFs::new(
        archive,
        FsConfig {
            ttl: options.cache_ttl,
            read_ahead_blocks: options.read_ahead_blocks,
            read_ahead_threads: options.read_ahead_threads,
        },
        counters.clone(),
    )?;

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(
            options
                .fs_name
                .clone()
                .unwrap_or_else(|| "squashbox".into()),
        ),
        MountOption::CUSTOM("subtype=squashbox".into()),
        // The kernel checks permissions from the mode bits, like it does for squashfs.
        MountOption::DefaultPermissions,
    ];
    config.acl = if options.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(options.threads);
    config.clone_fd = options.threads > 1;

    // Session::new mounts and completes the INIT handshake, so the mount is ready after it.
    let session = Session::new(fs, &mountpoint, &config)
        .map_err(|e| MountError::io(format!("mounting FUSE at {}", mountpoint.display()), e))?;

    let (tx, done) = crossbeam_channel::bounded(1);
    let thread = std::thread::Builder::new()
        .name("squashbox-fuse".into())
        .spawn(move || {
            let result = session.run();
            if let Err(e) = &result {
                log::error!("FUSE session ended with an error: {e}");
            }
            let _ = tx.send(result);
        })
        .map_err(|e| MountError::io("starting the FUSE session thread", e))?;

    Ok(MountHandle {
        mountpoint,
        counters,
        thread: Some(thread),
        done,
    })
}

fn check_mountpoint(path: &Path) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MountError::MountpointMissing(path.to_path_buf()))
        }
        Err(e) => return Err(MountError::io(format!("inspecting {}", path.display()), e)),
    };
    if !meta.is_dir() {
        return Err(MountError::MountpointNotDirectory(path.to_path_buf()));
    }
    let mut entries = std::fs::read_dir(path)
        .map_err(|e| MountError::io(format!("listing {}", path.display()), e))?;
    if entries.next().is_some() {
        return Err(MountError::MountpointNotEmpty(path.to_path_buf()));
    }
    Ok(())
}

impl MountHandle {
    /// Where the image is mounted (canonical path).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// True while the serving threads run. False once the file system was unmounted from
    /// outside (e.g. `squashbox umount`) or the session failed.
    pub fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Number of requests answered with EIO because the image could not be read.
    pub fn io_errors(&self) -> u64 {
        self.counters.io_errors.load(Ordering::Relaxed)
    }

    /// Block until the session ends on its own (someone unmounted the file system).
    /// Returns an error if the session failed rather than ended cleanly.
    pub fn wait(mut self) -> Result<()> {
        let result = self.done.recv();
        self.join_thread();
        self.session_result(result.ok())
    }

    /// Unmount (aborting the connection if files are still open, so this never blocks on
    /// users of the mount) and join the serving threads. Errors if unmounting failed or the
    /// session had died.
    pub fn unmount(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.thread.is_none() {
            return Ok(());
        }
        let unmounted = match is_mounted(&self.mountpoint) {
            Ok(true) => unmount(&self.mountpoint, UnmountMode::Force),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        let result = match self.done.recv_timeout(JOIN_TIMEOUT) {
            Ok(r) => {
                self.join_thread();
                Some(r)
            }
            Err(RecvTimeoutError::Timeout) => {
                log::warn!(
                    "FUSE session for {} still running after unmount; leaving it",
                    self.mountpoint.display()
                );
                self.thread = None;
                None
            }
            Err(RecvTimeoutError::Disconnected) => {
                // The thread panicked before sending.
                self.join_thread();
                Some(Err(std::io::Error::other("session thread panicked")))
            }
        };
        unmounted?;
        match result {
            Some(r) => self.session_result(Some(r)),
            None => Ok(()),
        }
    }

    fn join_thread(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn session_result(&self, result: Option<std::io::Result<()>>) -> Result<()> {
        match result {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(MountError::SessionDied {
                mountpoint: self.mountpoint.clone(),
                message: e.to_string(),
            }),
            None => Err(MountError::SessionDied {
                mountpoint: self.mountpoint.clone(),
                message: "session thread vanished".into(),
            }),
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::warn!("unmounting {}: {e}", self.mountpoint.display());
        }
    }
}
