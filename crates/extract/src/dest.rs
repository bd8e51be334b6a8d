//! Preparing, committing and cleaning up the destination directory.
//!
//! - DEST does not exist: we extract into a private sibling `.NAME.squashbox-tmp-PID-N`
//!   (mode 0700) and `rename(2)` it to DEST with `RENAME_NOREPLACE` at the end. A failure (or a
//!   kill) never leaves a partial DEST; on a returned error the sibling is removed.
//! - DEST is an empty directory: we extract in place; on error everything we created in it is
//!   removed again, so DEST is left empty as we found it.
//! - DEST is a non-empty directory: refused unless `force`; with `force` conflicting entries
//!   are replaced (never followed) and, on error, what was extracted so far stays in DEST.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{self, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;

use crate::error::{ExtractError, Result};
use crate::fsops;

/// How the destination is being written.
enum Mode_ {
    /// Into a temporary sibling, renamed to `final_name` on success.
    Fresh {
        parent: OwnedFd,
        tmp_name: Vec<u8>,
        final_name: Vec<u8>,
    },
    /// Directly into DEST, which was empty and had these permission bits.
    InPlaceEmpty { original_mode: u32 },
    /// Directly into DEST over existing content (`force`).
    InPlaceForce,
}

/// An opened destination: the directory fd to extract into, plus how to finish.
pub(crate) struct Destination {
    display: String,
    root: OwnedFd,
    mode: Mode_,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Destination {
    /// Open or create the destination according to the rules in the module docs.
    pub(crate) fn prepare(dest: &Path, force: bool) -> Result<Destination> {
        let display = dest.display().to_string();
        // DEST itself is the user's own path: following a symlink there is what they asked for.
        match fs::statat(CWD, dest, fs::AtFlags::empty()) {
            Ok(st) => {
                if fs::FileType::from_raw_mode(st.st_mode) != fs::FileType::Directory {
                    return Err(ExtractError::DestinationNotDirectory { path: display });
                }
                let root = fs::openat(
                    CWD,
                    dest,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| ExtractError::io(&display, "open destination", e))?;
                let empty = fsops::dir_is_empty(root.as_fd())
                    .map_err(|e| ExtractError::io(&display, "read destination", e))?;
                let mode = match (empty, force) {
                    (true, _) => Mode_::InPlaceEmpty {
                        original_mode: st.st_mode & 0o7777,
                    },
                    (false, true) => Mode_::InPlaceForce,
                    (false, false) => {
                        return Err(ExtractError::DestinationNotEmpty { path: display })
                    }
                };
                Ok(Destination {
                    display,
                    root,
                    mode,
                })
            }
            Err(Errno::NOENT) => Self::create_fresh(dest, display),
            Err(e) => Err(ExtractError::io(display, "stat destination", e)),
        }
    }

    fn create_fresh(dest: &Path, display: String) -> Result<Destination> {
        let final_name = match dest.file_name() {
            Some(n) => n.as_bytes().to_vec(),
            None => {
                return Err(ExtractError::io(
                    display,
                    "create destination",
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no final name"),
                ))
            }
        };
        let parent_path: PathBuf = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let parent = fs::openat(
            CWD,
            &parent_path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            ExtractError::io(
                parent_path.display().to_string(),
                "open parent of destination",
                e,
            )
        })?;
        let pid = std::process::id();
        loop {
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut tmp_name = b".".to_vec();
            tmp_name.extend_from_slice(&final_name);
            tmp_name.extend_from_slice(format!(".squashbox-tmp-{pid}-{n}").as_bytes());
            match fsops::create_dir(parent.as_fd(), &tmp_name) {
                Ok(root) => {
                    return Ok(Destination {
                        display,
                        root,
                        mode: Mode_::Fresh {
                            parent,
                            tmp_name,
                            final_name,
                        },
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ExtractError::io(display, "create destination", e)),
            }
        }
    }

    /// The directory to extract into.
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// True if conflicting entries may be replaced.
    pub(crate) fn replaces_existing(&self) -> bool {
        matches!(self.mode, Mode_::InPlaceForce)
    }

    /// Make the extraction visible at DEST.
    pub(crate) fn commit(self) -> Result<()> {
        let Destination {
            display,
            root,
            mode,
        } = self;
        drop(root);
        if let Mode_::Fresh {
            parent,
            tmp_name,
            final_name,
        } = mode
        {
            if let Err(e) = fs::renameat_with(
                &parent,
                tmp_name.as_slice(),
                &parent,
                final_name.as_slice(),
                RenameFlags::NOREPLACE,
            ) {
                let _ = fsops::remove_entry(parent.as_fd(), &tmp_name);
                return Err(ExtractError::io(display, "rename into place", e));
            }
        }
        Ok(())
    }

    /// Undo after a failure, as described in the module docs.
    pub(crate) fn abort(self) {
        match &self.mode {
            Mode_::Fresh {
                parent, tmp_name, ..
            } => {
                let _ = fs::fchmod(&self.root, Mode::RWXU);
                let _ = fsops::remove_entry(parent.as_fd(), tmp_name);
            }
            Mode_::InPlaceEmpty { original_mode } => {
                let _ = fs::fchmod(&self.root, Mode::RWXU);
                let _ = fsops::clear_dir(self.root.as_fd());
                let _ = fs::fchmod(&self.root, Mode::from_raw_mode(*original_mode));
            }
            Mode_::InPlaceForce => {}
        }
    }
}
