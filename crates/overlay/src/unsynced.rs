//! Copy-ups synced in the background (the default; `OverlayOptions::sync_copy_up` turns it
//! off, `volatile` never syncs at all).
//!
//! The kernel overlayfs `fsync`s every copy before publishing it, so opening a large lower
//! file for writing waits for the disk to take all of it. Here a copy is published as soon as
//! its data is in the page cache, and a background thread syncs it. What a machine crash in
//! between could leave under the real name (an empty or short file) is repaired at the next
//! mount from the lower layer, which never changes.
//!
//! The journal is the directory `WORK/squashbox-unsynced/`, one small file per copy, named
//! after the upper inode (`st_ino`) and holding the lower file's identity
//! (`<layer> <number> <size>`):
//!
//! - `<boot id>.<st_ino>`: created before the copy gets its name (ext4 and xfs commit metadata
//!   in order, so it reaches the disk no later than the name it protects) and removed by the
//!   syncer once the copy's `fsync` returned.
//! - `crash.<st_ino>`: a copy that may be incomplete whatever the boot: its `fsync` failed, or
//!   an earlier repair of it failed.
//! - `repair.<st_ino>`: a repair was under way (also holds the file's mode): done again
//!   unconditionally, since the repair itself changed the modification time.
//!
//! At mount, entries of the current boot (a killed daemon: the page cache still holds all it
//! wrote) are settled by one `syncfs`. The others name upper inodes whose data may be
//! incomplete: the upper tree and the hard-link index are walked for them, and each one whose
//! modification time is still its lower file's (nothing was written to it after the copy-up)
//! gets its data copied again, in place, from the lower file. One whose modification time
//! changed was written to after the copy-up and is left as it is, with a warning. Failures are
//! logged and kept for the next mount; they never stop this one. A clean end of the mount
//! drains the queue, so no entry outlives it.
//!
//! A user `fsync` of a copied-up file syncs the same inode, so it covers the copy's data too.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};

use crate::core::errno;
use crate::lower::{Kind, Layer, LowerObj};
use crate::sys::{self, os};
use crate::upper::Upper;

/// Name of the journal directory inside the work directory.
pub(crate) const JOURNAL_DIR: &str = "squashbox-unsynced";
/// Copies waiting for their sync before a new copy-up waits for the syncer (each holds an
/// open file).
const QUEUE: usize = 64;
/// Stands in for the boot id where the kernel does not publish one: never equal to the
/// current boot, so such entries are always checked.
const UNKNOWN_BOOT: &str = "unknown-boot";
/// Xattrs the kernel drops when a file is written to, restored after a repair.
const DROPPED_ON_WRITE: &[&str] = &["security.capability"];

/// The lower file a copy was made from, as recorded in its journal entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LowerId {
    pub layer: usize,
    pub number: u64,
    pub size: u64,
}

impl LowerId {
    fn encode(&self, mode: Option<u32>) -> String {
        match mode {
            Some(m) => format!("{} {} {} {m:o}\n", self.layer, self.number, self.size),
            None => format!("{} {} {}\n", self.layer, self.number, self.size),
        }
    }

    /// Parse an entry's content; `None` for anything else (an entry whose content a crash
    /// lost is empty).
    fn decode(text: &[u8]) -> Option<(LowerId, Option<u32>)> {
        let text = std::str::from_utf8(text).ok()?;
        let mut words = text.split_ascii_whitespace();
        let id = LowerId {
            layer: words.next()?.parse().ok()?,
            number: words.next()?.parse().ok()?,
            size: words.next()?.parse().ok()?,
        };
        let mode = match words.next() {
            Some(w) => Some(u32::from_str_radix(w, 8).ok()?),
            None => None,
        };
        Some((id, mode))
    }
}

/// One copy waiting for its `fsync`.
struct Job {
    fd: OwnedFd,
    st_ino: u64,
}

/// The background syncer of one mount. Dropping it syncs every queued copy first.
pub(crate) struct Syncer {
    journal: OwnedFd,
    boot: String,
    tx: Option<mpsc::SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// The kernel's id of this boot, if it publishes one.
fn current_boot() -> Option<String> {
    crate::volatile::boot_id().ok().filter(|b| !b.is_empty())
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

/// Create (or replace) entry `name` holding `content`.
fn write_entry(journal: BorrowedFd<'_>, name: &str, content: &str) -> io::Result<()> {
    let fd = rustix::fs::openat(
        journal,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )?;
    sys::pwrite_all(fd.as_fd(), content.as_bytes(), 0)
}

/// Rename entry `from` to `to` (replacing it), logging a failure.
fn rename_entry(journal: BorrowedFd<'_>, from: &[u8], to: &str) {
    if let Err(e) = rustix::fs::renameat(journal, os(from), journal, to) {
        log::warn!(
            "copy-up journal: renaming {} to {to}: {e}",
            String::from_utf8_lossy(from)
        );
    }
}

impl Syncer {
    /// Start the syncer of a mount whose work directory is `work`.
    pub(crate) fn start(work: &Path) -> io::Result<Syncer> {
        let journal = open_journal(work, true)?.ok_or_else(|| errno(libc::ENOENT))?;
        let boot = current_boot().unwrap_or_else(|| UNKNOWN_BOOT.to_string());
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let dir = journal.try_clone()?;
        let entry_boot = boot.clone();
        let thread = std::thread::Builder::new()
            .name("squashbox-sync".into())
            .spawn(move || {
                for job in rx {
                    let entry = format!("{entry_boot}.{}", job.st_ino);
                    // A copy nobody published (its prepared copy was dropped) has no name
                    // left: nothing to make durable.
                    let unlinked = matches!(rustix::fs::fstat(&job.fd), Ok(st) if st.st_nlink == 0);
                    let synced = if unlinked {
                        Ok(())
                    } else {
                        rustix::fs::fsync(&job.fd)
                    };
                    match synced {
                        Ok(()) => {
                            let _ = rustix::fs::unlinkat(&dir, entry.as_str(), AtFlags::empty());
                        }
                        Err(e) => {
                            // The data may never reach the disk: have the next mount check
                            // the copy, whatever the boot.
                            log::warn!("background sync of a copy-up failed: {e}");
                            rename_entry(
                                dir.as_fd(),
                                entry.as_bytes(),
                                &format!("crash.{}", job.st_ino),
                            );
                        }
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

    /// Record the copy of lower file `lower` open as `fd` (not yet published) as unsynced,
    /// and queue its sync.
    pub(crate) fn defer(&self, fd: OwnedFd, lower: LowerId) -> io::Result<()> {
        let st_ino = rustix::fs::fstat(&fd)?.st_ino;
        let entry = format!("{}.{st_ino}", self.boot);
        write_entry(self.journal.as_fd(), &entry, &lower.encode(None))?;
        let tx = self.tx.as_ref().expect("sender lives until drop");
        tx.send(Job { fd, st_ino })
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

/// What a journal entry asks of the next mount, weakest first (the order decides which of
/// several entries of one inode wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    /// Written in this boot: a `syncfs` settles it.
    Sync,
    /// Maybe incomplete: repair unless the file was written to since.
    Check,
    /// A repair was under way: repair.
    Repair,
}

struct Entry {
    /// Every entry name of this inode (the strongest need decides).
    names: Vec<Vec<u8>>,
    st_ino: u64,
    need: Need,
    lower: Option<LowerId>,
    mode: Option<u32>,
}

/// Settle the journal left by earlier mounts of `up` (see the module documentation). Runs
/// before the mount serves anything; only an unreadable journal fails it.
pub(crate) fn recover(layers: &[Layer], up: &Upper, work: &Path) -> io::Result<()> {
    let Some(journal) = open_journal(work, false)? else {
        return Ok(());
    };
    let boot = current_boot();
    let mut entries = read_entries(journal.as_fd(), boot.as_deref())?;
    if entries.is_empty() {
        return Ok(());
    }
    if entries.iter().any(|e| e.need == Need::Sync) {
        if let Err(e) = rustix::fs::syncfs(&journal) {
            log::warn!("syncing the upper filesystem for unsynced copy-ups: {e}; checking them");
            for e in entries.iter_mut().filter(|e| e.need == Need::Sync) {
                e.need = Need::Check;
            }
        }
    }
    let mut settled: Vec<&Entry> = entries.iter().filter(|e| e.need == Need::Sync).collect();
    let open: Vec<&Entry> = entries.iter().filter(|e| e.need != Need::Sync).collect();
    if !open.is_empty() {
        log::warn!(
            "{} copy-up(s) may not have reached the disk before the machine stopped; \
             checking them against their lower files",
            open.len()
        );
        let want: HashSet<u64> = open.iter().map(|e| e.st_ino).collect();
        let found = find_upper_inodes(up, &want);
        let lower_objs = find_lower_objs(layers, &open, &found);
        for e in open {
            let outcome = match found.get(&e.st_ino) {
                // Never published, or deleted since: nothing to repair.
                None => Ok(()),
                Some(place) => match lower_objs.get(&e.st_ino) {
                    Some((layer, obj)) => repair(journal.as_fd(), e, place, &layers[*layer], obj),
                    None => {
                        log::warn!(
                            "unsynced copy-up {}: its lower file was not found; left as it is",
                            place.shown
                        );
                        Ok(())
                    }
                },
            };
            match outcome {
                Ok(()) => settled.push(e),
                Err(err) => {
                    let shown = found.get(&e.st_ino).map_or("?", |p| p.shown.as_str());
                    log::warn!(
                        "repairing unsynced copy-up {shown}: {err}; will try again at the next mount"
                    );
                    // Keep it checked at every later mount, not settled by a same-boot sync.
                    let kept = |n: &Vec<u8>| n.starts_with(b"crash.") || n.starts_with(b"repair.");
                    if !e.names.iter().any(kept) {
                        rename_entry(journal.as_fd(), &e.names[0], &format!("crash.{}", e.st_ino));
                    }
                }
            }
        }
        if let Err(e) = rustix::fs::syncfs(&journal) {
            log::warn!("syncing the upper filesystem after repairs: {e}");
            return Ok(());
        }
    }
    for e in settled {
        let repair_entry = format!("repair.{}", e.st_ino).into_bytes();
        for n in e.names.iter().chain(std::iter::once(&repair_entry)) {
            match rustix::fs::unlinkat(&journal, os(n), AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => log::warn!(
                    "copy-up journal: removing {}: {e}",
                    String::from_utf8_lossy(n)
                ),
            }
        }
    }
    if let Err(e) = crate::upper::sync_dir(journal.as_fd()) {
        log::warn!("syncing the copy-up journal: {e}");
    }
    Ok(())
}

/// The journal's entries; names that are not ours are skipped (and kept).
fn read_entries(journal: BorrowedFd<'_>, boot: Option<&str>) -> io::Result<Vec<Entry>> {
    let listing = sys::open_listing(journal)?;
    let mut names = Vec::new();
    sys::for_each_dirent(listing, &mut |name, kind, _| {
        if kind != Kind::Dir {
            names.push(name.to_vec());
        }
        Ok(())
    })?;
    let mut by_ino: HashMap<u64, Entry> = HashMap::new();
    for name in names {
        let Some(i) = name.iter().rposition(|b| *b == b'.') else {
            continue;
        };
        let (prefix, ino) = (&name[..i], &name[i + 1..]);
        let Some(st_ino) = std::str::from_utf8(ino).ok().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let need = match prefix {
            b"repair" => Need::Repair,
            b"crash" => Need::Check,
            p if Some(p) == boot.map(str::as_bytes) => Need::Sync,
            p if !p.is_empty() && p.iter().all(|b| b.is_ascii_graphic()) => Need::Check,
            _ => continue,
        };
        let content = match rustix::fs::openat(
            journal,
            os(&name),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let mut buf = vec![0u8; 128];
                let n = sys::pread_full(&fd, &mut buf, 0).unwrap_or(0);
                buf.truncate(n);
                buf
            }
            Err(_) => Vec::new(),
        };
        let (lower, mode) = match LowerId::decode(&content) {
            Some((l, m)) => (Some(l), m),
            None => (None, None),
        };
        // One inode may have several entries (a repair under way, and the entry that
        // started it): the strongest need wins, and all are removed together.
        match by_ino.get_mut(&st_ino) {
            Some(old) => {
                old.names.push(name);
                if need > old.need {
                    old.need = need;
                    old.mode = mode;
                }
                old.lower = old.lower.or(lower);
            }
            None => {
                by_ino.insert(
                    st_ino,
                    Entry {
                        names: vec![name],
                        st_ino,
                        need,
                        lower,
                        mode,
                    },
                );
            }
        }
    }
    Ok(by_ino.into_values().collect())
}

/// Where an inode named by the journal was found.
struct Place {
    /// Its directory (`O_PATH`).
    dir: OwnedFd,
    name: Vec<u8>,
    /// For messages: path from the upper root (or in the index).
    shown: String,
    /// Its origin marker as (layer, low 32 bits of the lower number).
    origin: Option<(usize, u64)>,
}

/// Walk the upper tree and the hard-link index for regular files whose `st_ino` is in `want`
/// (one name each). `lstat` decides, not the listing's type and inode number: those can
/// differ (`DT_UNKNOWN`; an overlayfs upper). Unreadable directories are skipped with a
/// warning.
fn find_upper_inodes(up: &Upper, want: &HashSet<u64>) -> HashMap<u64, Place> {
    let mut found = HashMap::new();
    let mut index_subdirs = Vec::new();
    scan_dir(
        up,
        up.index_dir(),
        "(hard-link index)",
        want,
        &mut found,
        &mut index_subdirs,
    );
    let mut dirs = vec![Vec::<u8>::new()];
    while let Some(rel) = dirs.pop() {
        if found.len() == want.len() {
            break;
        }
        let dir = match up.open_dir(&rel) {
            Ok(fd) => fd,
            Err(e) => {
                log::warn!(
                    "copy-up recovery: cannot open upper dir {}: {e}",
                    String::from_utf8_lossy(&rel)
                );
                continue;
            }
        };
        let shown = format!("upper:/{}", String::from_utf8_lossy(&rel));
        let mut subdirs = Vec::new();
        scan_dir(up, dir.as_fd(), &shown, want, &mut found, &mut subdirs);
        dirs.extend(subdirs.into_iter().map(|n| crate::node::join(&rel, &n)));
    }
    found
}

/// One directory of [`find_upper_inodes`]: records wanted regular files in `found` and the
/// names of subdirectories in `subdirs`.
fn scan_dir(
    up: &Upper,
    dir: BorrowedFd<'_>,
    shown_dir: &str,
    want: &HashSet<u64>,
    found: &mut HashMap<u64, Place>,
    subdirs: &mut Vec<Vec<u8>>,
) {
    let listing = match sys::open_listing(dir) {
        Ok(fd) => fd,
        Err(e) => {
            log::warn!("copy-up recovery: cannot list {shown_dir}: {e}");
            return;
        }
    };
    let mut names = Vec::new();
    let listed = sys::for_each_dirent(listing, &mut |name, kind, _| {
        // Kind::File also stands for DT_UNKNOWN: lstat decides below.
        if matches!(kind, Kind::File | Kind::Dir) {
            names.push(name.to_vec());
        }
        Ok(())
    });
    if let Err(e) = listed {
        log::warn!("copy-up recovery: listing {shown_dir}: {e}");
    }
    for name in names {
        let Ok(st) = rustix::fs::statat(dir, os(&name), AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => subdirs.push(name),
            FileType::RegularFile
                if want.contains(&st.st_ino) && !found.contains_key(&st.st_ino) =>
            {
                let Ok(dir_fd) = rustix::io::dup(dir) else {
                    continue;
                };
                let origin = up
                    .origin(dir, &name)
                    .ok()
                    .flatten()
                    .and_then(crate::core::split_lower_ino);
                let shown = format!("{shown_dir}/{}", String::from_utf8_lossy(&name));
                found.insert(
                    st.st_ino,
                    Place {
                        dir: dir_fd,
                        name,
                        shown,
                        origin,
                    },
                );
            }
            _ => {}
        }
    }
}

/// The lower object of each entry found in the upper tree, by `st_ino`: the one its journal
/// content names (layer and full number), else the one its origin marker names (low 32 bits
/// of the number). Each layer is scanned once, only if needed.
fn find_lower_objs(
    layers: &[Layer],
    entries: &[&Entry],
    found: &HashMap<u64, Place>,
) -> HashMap<u64, (usize, LowerObj)> {
    // layer -> (number, exact) wanted
    let mut wanted: HashMap<usize, HashSet<(u64, bool)>> = HashMap::new();
    let mut target: HashMap<u64, (usize, u64, bool)> = HashMap::new();
    for e in entries {
        let Some(place) = found.get(&e.st_ino) else {
            continue;
        };
        let key = match (e.lower, place.origin) {
            (Some(l), _) => (l.layer, l.number, true),
            (None, Some((layer, low))) => (layer, low, false),
            (None, None) => continue,
        };
        if key.0 >= layers.len() {
            continue;
        }
        wanted.entry(key.0).or_default().insert((key.1, key.2));
        target.insert(e.st_ino, key);
    }
    let mut objs: HashMap<(usize, u64, bool), LowerObj> = HashMap::new();
    for (layer, numbers) in wanted {
        match find_lower_files(&layers[layer], &numbers) {
            Ok(m) => {
                for ((number, exact), obj) in m {
                    objs.insert((layer, number, exact), obj);
                }
            }
            Err(e) => log::warn!("copy-up recovery: scanning lower layer {layer}: {e}"),
        }
    }
    target
        .into_iter()
        .filter_map(|(ino, key)| objs.get(&key).map(|o| (ino, (key.0, o.clone()))))
        .collect()
}

/// The regular files of `layer` whose layer inode numbers are in `want`: `(number, true)`
/// matches the number exactly, `(number, false)` its low 32 bits (what an origin marker
/// keeps).
fn find_lower_files(
    layer: &Layer,
    want: &HashSet<(u64, bool)>,
) -> io::Result<HashMap<(u64, bool), LowerObj>> {
    let mut found = HashMap::new();
    let mut dirs = vec![layer.root()?];
    while let Some(dir) = dirs.pop() {
        let mut entries = Vec::new();
        layer.for_each_entry(&dir, &mut |e| {
            if e.kind == Kind::Dir {
                entries.push((e.name, None));
            } else if e.kind == Kind::File {
                for key in [(e.number, true), (e.number & 0xFFFF_FFFF, false)] {
                    if want.contains(&key) && !found.contains_key(&key) {
                        entries.push((e.name.clone(), Some(key)));
                    }
                }
            }
            Ok(())
        })?;
        for (name, key) in entries {
            let Some(obj) = layer.lookup(&dir, &name)? else {
                continue;
            };
            match key {
                None => dirs.push(obj),
                Some(key) => {
                    found.entry(key).or_insert(obj);
                }
            }
        }
        if found.len() == want.len() {
            break;
        }
    }
    Ok(found)
}

/// Copy the data of lower file `obj` again into the upper file at `place`, unless (for a
/// `Check` entry) the upper file was written to after its copy-up (its mtime is no longer
/// the lower file's). Mode, owner, xattrs, times and inode number stay.
fn repair(
    journal: BorrowedFd<'_>,
    entry: &Entry,
    place: &Place,
    layer: &Layer,
    obj: &LowerObj,
) -> io::Result<()> {
    let (dir, name, shown) = (place.dir.as_fd(), place.name.as_slice(), &place.shown);
    let ust = rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(ust.st_mode) != FileType::RegularFile || ust.st_ino != entry.st_ino {
        return Ok(());
    }
    let lst = layer.stat(obj)?;
    if let Some(l) = entry.lower {
        if l.size != lst.size {
            log::warn!(
                "unsynced copy-up {shown}: its lower file is not the one copied (size {} now, \
                 {} then); left as it is",
                lst.size,
                l.size
            );
            return Ok(());
        }
    }
    if entry.need == Need::Check
        && (ust.st_mtime, ust.st_mtime_nsec as u32) != (lst.mtime.0, lst.mtime.1)
    {
        log::warn!(
            "unsynced copy-up {shown} was written to after its copy-up; left as it is \
             (it may be incomplete if nothing synced it before the machine stopped)"
        );
        return Ok(());
    }
    // From here the file's mtime changes until the end: a crash meanwhile must repair it
    // again whatever it looks like, and restore its mode.
    let mode = entry.mode.unwrap_or(ust.st_mode & 0o7777);
    let lower_id = entry.lower.unwrap_or(LowerId {
        layer: 0,
        number: 0,
        size: lst.size,
    });
    write_entry(
        journal,
        &format!("repair.{}", entry.st_ino),
        &lower_id.encode(Some(mode)),
    )?;
    crate::upper::sync_dir(journal)?;
    let kept: Vec<(&str, Vec<u8>)> = DROPPED_ON_WRITE
        .iter()
        .filter_map(|k| {
            sys::get_xattr(dir, name, OsStr::new(k))
                .ok()
                .flatten()
                .map(|v| (*k, v))
        })
        .collect();
    // The owner may have made it read-only: lend the owner write permission meanwhile.
    let writable = mode | 0o200;
    if writable != ust.st_mode & 0o7777 {
        rustix::fs::chmodat(
            dir,
            os(name),
            Mode::from_raw_mode(writable),
            AtFlags::empty(),
        )?;
    }
    let result = (|| -> io::Result<()> {
        let fd = rustix::fs::openat(
            dir,
            os(name),
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if rustix::fs::fstat(&fd)?.st_ino != entry.st_ino {
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
        Ok(())
    })();
    if writable != mode {
        rustix::fs::chmodat(dir, os(name), Mode::from_raw_mode(mode), AtFlags::empty())?;
    }
    for (key, value) in &kept {
        sys::set_xattr(dir, name, OsStr::new(key), value, XattrFlags::empty())?;
    }
    result?;
    log::warn!("unsynced copy-up {shown}: data copied again from its lower file");
    Ok(())
}
