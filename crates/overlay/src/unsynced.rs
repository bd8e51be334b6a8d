//! Copy-ups synced in the background (the default; `OverlayOptions::sync_copy_up` turns it
//! off, `volatile` never syncs at all).
//!
//! The kernel overlayfs `fsync`s every copy before publishing it, so opening a large lower
//! file for writing waits for the disk to take all of it. Here a copy is published as soon as
//! its data is in the page cache, and a background thread syncs it. What a machine crash in
//! between could leave under the real name (an empty or short file) is repaired at the next
//! mount from the lower layer, which never changes:
//!
//! - Before a copy gets its name, an empty journal entry
//!   `WORK/squashbox-unsynced/<boot id>.<upper st_ino>` is created; the syncer removes it once
//!   the copy's `fsync` returned. ext4 and xfs commit metadata in order, so an entry reaches
//!   the disk no later than the name it protects.
//! - At mount, entries of the current boot (a killed daemon: the page cache still holds
//!   everything it wrote) are settled by one `syncfs`. Entries of another boot (a crash) name
//!   upper inodes whose data may be incomplete: the upper tree is walked for them, and each
//!   one whose modification time is still its lower file's (nothing was written to it after
//!   the copy-up) gets its data copied again from the lower file its origin marker names.
//!   One whose modification time changed was written to after the copy-up and is left as it
//!   is, with a warning (its writer's `fsync`, if any, made all of it durable).
//! - A clean end of the mount drains the queue, so no entry outlives it.
//!
//! A user `fsync` of a copied-up file syncs the same inode, so it covers the copy's data too.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};

use crate::core::errno;
use crate::lower::{Kind, Layer, LowerObj};
use crate::sys::{self, os};
use crate::upper::Upper;

/// Name of the journal directory inside the work directory.
pub(crate) const JOURNAL_DIR: &str = "squashbox-unsynced";
/// Copies waiting for their sync before a new copy-up waits for the syncer (each holds an
/// open file).
const QUEUE: usize = 64;

/// One copy waiting for its `fsync`.
struct Job {
    fd: OwnedFd,
    entry: String,
}

/// The background syncer of one mount. Dropping it syncs every queued copy first.
pub(crate) struct Syncer {
    journal: OwnedFd,
    boot: String,
    tx: Option<mpsc::SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// Open the journal inside the work directory `work` (not inside its temporary directory,
/// which every mount empties), creating it with `create`; `None` if it does not exist.
fn open_journal(work: &Path, create: bool) -> io::Result<Option<OwnedFd>> {
    let work = rustix::fs::open(
        work,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if create {
        match rustix::fs::mkdirat(&work, JOURNAL_DIR, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match rustix::fs::openat(
        &work,
        JOURNAL_DIR,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT) if !create => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Syncer {
    /// Start the syncer of a mount whose work directory is `work`.
    pub(crate) fn start(work: &Path) -> io::Result<Syncer> {
        let journal = open_journal(work, true)?.ok_or_else(|| errno(libc::ENOENT))?;
        let boot = crate::volatile::boot_id()?;
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let dir = journal.try_clone()?;
        let thread = std::thread::Builder::new()
            .name("squashbox-sync".into())
            .spawn(move || {
                for job in rx {
                    match rustix::fs::fsync(&job.fd) {
                        Ok(()) => {
                            let _ =
                                rustix::fs::unlinkat(&dir, job.entry.as_str(), AtFlags::empty());
                        }
                        // The entry stays: the next mount repairs the copy if it has to.
                        Err(e) => log::warn!("background sync of a copy-up failed: {e}"),
                    }
                }
            })?;
        Ok(Syncer {
            journal,
            boot,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Record the copy open as `fd` (not yet published) as unsynced and queue its sync.
    pub(crate) fn defer(&self, fd: OwnedFd) -> io::Result<()> {
        let st_ino = rustix::fs::fstat(&fd)?.st_ino;
        let entry = format!("{}.{st_ino}", self.boot);
        rustix::fs::openat(
            &self.journal,
            entry.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o600),
        )?;
        let tx = self.tx.as_ref().expect("sender lives until drop");
        tx.send(Job { fd, entry })
            .map_err(|_| io::Error::other("the copy-up syncer stopped"))
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish the queue, then end.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Settle the journal left by earlier mounts of `up` (see the module documentation). Runs
/// before the mount serves anything.
pub(crate) fn recover(layers: &[Layer], up: &Upper, work: &Path) -> io::Result<()> {
    let Some(journal) = open_journal(work, false)? else {
        return Ok(());
    };
    let boot = crate::volatile::boot_id()?;
    let mut entries = Vec::new();
    let mut crashed = HashSet::new();
    {
        let listing = rustix::fs::openat(
            &journal,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        sys::for_each_dirent(listing, &mut |name, _, _| {
            let text = String::from_utf8_lossy(name).into_owned();
            if let Some((entry_boot, ino)) = text.rsplit_once('.') {
                if entry_boot != boot {
                    if let Ok(ino) = ino.parse::<u64>() {
                        crashed.insert(ino);
                    }
                }
            }
            entries.push(text);
            Ok(())
        })?;
    }
    if entries.is_empty() {
        return Ok(());
    }
    if !crashed.is_empty() {
        log::warn!(
            "{} copy-up(s) may not have reached the disk before the machine stopped; \
             checking them against their lower files",
            crashed.len()
        );
        let found = find_upper_inodes(up, &crashed)?;
        let mut wanted: HashMap<usize, HashSet<u64>> = HashMap::new();
        for f in &found {
            if let Some((layer, number)) = f.origin.filter(|(l, _)| *l < layers.len()) {
                wanted.entry(layer).or_default().insert(number);
            }
        }
        let mut lower_objs = HashMap::new();
        for (layer, numbers) in wanted {
            for (number, obj) in find_lower_files(&layers[layer], &numbers)? {
                lower_objs.insert((layer, number), obj);
            }
        }
        for f in &found {
            let name = String::from_utf8_lossy(&f.path).into_owned();
            let Some(key) = f.origin else {
                log::warn!("unsynced copy-up {name}: no origin marker; left as it is");
                continue;
            };
            let Some(obj) = lower_objs.get(&key) else {
                log::warn!("unsynced copy-up {name}: its lower file is gone; left as it is");
                continue;
            };
            repair(up, &layers[key.0], obj, &f.path)?;
        }
    }
    // Everything the entries protect is on disk once this returns (the repairs above, or
    // the page cache of this boot): only then may they go.
    // (The journal is on the upper filesystem: upper and work must share one.)
    rustix::fs::syncfs(&journal)?;
    for e in &entries {
        rustix::fs::unlinkat(&journal, e.as_str(), AtFlags::empty())?;
    }
    crate::upper::sync_dir(journal.as_fd())?;
    Ok(())
}

/// An upper inode named by a journal entry, found in the upper tree.
struct FoundInode {
    /// Path from the upper root.
    path: Vec<u8>,
    /// Its origin marker as (layer, number in the layer).
    origin: Option<(usize, u64)>,
}

/// Walk the upper tree for regular files whose `st_ino` is in `want` (one name each).
fn find_upper_inodes(up: &Upper, want: &HashSet<u64>) -> io::Result<Vec<FoundInode>> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut dirs = vec![Vec::<u8>::new()];
    while let Some(dir) = dirs.pop() {
        let listing = up.open_dir_for_listing(&dir)?;
        let dirfd = up.open_dir(&dir)?;
        let mut names = Vec::new();
        sys::for_each_dirent(listing, &mut |name, kind, ino| {
            names.push((name.to_vec(), kind, ino));
            Ok(())
        })?;
        for (name, kind, ino) in names {
            let path = crate::node::join(&dir, &name);
            match kind {
                Kind::Dir => dirs.push(path),
                Kind::File if want.contains(&ino) && seen.insert(ino) => {
                    let origin = up.origin(dirfd.as_fd(), &name)?.map(|o| {
                        // See `core::lower_ino`.
                        (((o >> 32) as usize).wrapping_sub(1), o & 0xFFFF_FFFF)
                    });
                    found.push(FoundInode { path, origin });
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

/// The regular files of `layer` whose layer inode numbers (low 32 bits, as in the origin
/// marker) are in `want`.
fn find_lower_files(layer: &Layer, want: &HashSet<u64>) -> io::Result<HashMap<u64, LowerObj>> {
    let mut found = HashMap::new();
    let mut dirs = vec![layer.root()?];
    while let Some(dir) = dirs.pop() {
        let mut entries = Vec::new();
        layer.for_each_entry(&dir, &mut |e| {
            let number = e.number & 0xFFFF_FFFF;
            if e.kind == Kind::Dir || (e.kind == Kind::File && want.contains(&number)) {
                entries.push((e.name, e.kind, number));
            }
            Ok(())
        })?;
        for (name, kind, number) in entries {
            let Some(obj) = layer.lookup(&dir, &name)? else {
                continue;
            };
            if kind == Kind::Dir {
                dirs.push(obj);
            } else {
                found.entry(number).or_insert(obj);
            }
        }
        if found.len() == want.len() {
            break;
        }
    }
    Ok(found)
}

/// Copy the data of lower file `obj` again into the upper file at `path`, unless the upper
/// file was modified after its copy-up (its mtime is no longer the lower file's).
fn repair(up: &Upper, layer: &Layer, obj: &LowerObj, path: &[u8]) -> io::Result<()> {
    let shown = String::from_utf8_lossy(path).into_owned();
    let (parent, name) = match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let dir = up.open_dir(parent)?;
    let ust = rustix::fs::statat(&dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
    let lst = layer.stat(obj)?;
    if (ust.st_mtime, ust.st_mtime_nsec as u32) != (lst.mtime.0, lst.mtime.1) {
        log::warn!(
            "unsynced copy-up {shown} was written to after its copy-up; left as it is \
             (it may be incomplete if nothing synced it before the machine stopped)"
        );
        return Ok(());
    }
    // The owner may have made it read-only: lend the owner write permission meanwhile.
    let mode = ust.st_mode & 0o7777;
    let writable = mode | 0o200;
    if writable != mode {
        rustix::fs::chmodat(
            &dir,
            os(name),
            Mode::from_raw_mode(writable),
            AtFlags::empty(),
        )?;
    }
    let result = (|| -> io::Result<()> {
        let fd = rustix::fs::openat(
            &dir,
            os(name),
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if rustix::fs::fstat(&fd)?.st_ino != ust.st_ino {
            return Err(errno(libc::ESTALE));
        }
        let src = layer.open_file(obj)?;
        rustix::fs::ftruncate(&fd, 0)?;
        crate::copyup::copy_data(&src, fd.as_fd(), lst.size, true)?;
        rustix::fs::ftruncate(&fd, lst.size)?;
        rustix::fs::futimens(
            &fd,
            &Timestamps {
                last_access: Timespec {
                    tv_sec: ust.st_atime,
                    tv_nsec: ust.st_atime_nsec as i64,
                },
                last_modification: Timespec {
                    tv_sec: lst.mtime.0,
                    tv_nsec: i64::from(lst.mtime.1),
                },
            },
        )?;
        rustix::fs::fsync(&fd)?;
        Ok(())
    })();
    if writable != mode {
        rustix::fs::chmodat(&dir, os(name), Mode::from_raw_mode(mode), AtFlags::empty())?;
    }
    result?;
    log::warn!("unsynced copy-up {shown}: data copied again from its lower file");
    Ok(())
}
