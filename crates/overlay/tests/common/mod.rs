//! Shared fixtures for the overlay integration tests: a lower tree built into a real SquashFS
//! image with `mksquashfs`, loop-mounted by the kernel, stacked under our FUSE overlay; RAII
//! guards for every mount; a watchdog that turns a hang into a failure; a tree manifest.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use squashbox_format::Archive;
use squashbox_overlay::{mount_overlay_layers, LowerLayer, OverlayHandle, OverlayOptions};

/// Define one `#[test]` per scenario function (taking a [`LowerKind`]) for each lower kind:
/// the image read by squashbox's reader, and, as a second opinion on the overlay logic, the
/// kernel's squashfs mount as a directory layer. Test files use it with `#[macro_use] mod
/// common;`.
#[allow(unused_macros)]
macro_rules! both_lowers {
    ($($name:ident),* $(,)?) => {
        mod image {
            use super::*;
            $(#[test] fn $name() { super::$name(LowerKind::Image) })*
        }
        mod kernel_dir {
            use super::*;
            $(#[test] fn $name() { super::$name(LowerKind::KernelDir) })*
        }
    };
}

/// How the fixture presents the image to the overlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LowerKind {
    /// Through the squashbox reader (`Archive`): the normal case.
    Image,
    /// Through the kernel's squashfs loop mount, as a directory layer.
    KernelDir,
}

/// Whether tests needing root, /dev/fuse, loop devices and mksquashfs can run. When they
/// cannot: skip (return false) on a developer machine, fail when `CI=true`.
pub fn can_run() -> bool {
    let root = rustix::process::geteuid().is_root();
    let fuse = Path::new("/dev/fuse").exists();
    let mksq = Command::new("mksquashfs").arg("-version").output().is_ok();
    if root && fuse && mksq {
        return true;
    }
    let why = format!("root={root} /dev/fuse={fuse} mksquashfs={mksq}");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("overlay test prerequisites missing in CI: {why}");
    }
    eprintln!("skipping overlay test: {why}");
    false
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A kernel mount (loop squashfs or kernel overlay) unmounted on drop.
pub struct KernelMount {
    pub path: PathBuf,
}

impl KernelMount {
    pub fn squashfs(image: &Path, at: &Path) -> KernelMount {
        fs::create_dir_all(at).unwrap();
        run(Command::new("mount")
            .args(["-t", "squashfs", "-o", "loop,ro"])
            .arg(image)
            .arg(at));
        KernelMount {
            path: at.to_path_buf(),
        }
    }

    pub fn overlay(lower: &Path, upper: &Path, work: &Path, at: &Path) -> KernelMount {
        fs::create_dir_all(at).unwrap();
        fs::create_dir_all(work).unwrap();
        let opts = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=on",
            lower.display(),
            upper.display(),
            work.display()
        );
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(at));
        KernelMount {
            path: at.to_path_buf(),
        }
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Fails the test process (after detaching its mounts) if a test runs longer than allowed:
/// a deadlocked FUSE daemon must not hang CI.
pub struct Watchdog {
    done: Arc<AtomicBool>,
}

impl Watchdog {
    pub fn new(limit: Duration, mounts: Vec<PathBuf>) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < limit {
                if d.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("watchdog: test exceeded {limit:?}; detaching mounts and aborting");
            for m in &mounts {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
            std::process::abort();
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// A lower tree, its image, the kernel mount of that image, an upper/work pair and our overlay.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub lower_src: PathBuf,
    pub image: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub mnt: PathBuf,
    pub overlay: Option<OverlayHandle>,
    pub lower_mount: Option<KernelMount>,
    pub kind: LowerKind,
    _watchdog: Watchdog,
}

impl Fixture {
    /// Build the image from a tree made by `populate`, and mount everything.
    pub fn new(populate: impl FnOnce(&Path)) -> Fixture {
        Self::with_options(populate, OverlayOptions::default(), LowerKind::Image)
    }

    pub fn with_kind(populate: impl FnOnce(&Path), kind: LowerKind) -> Fixture {
        Self::with_options(populate, OverlayOptions::default(), kind)
    }

    pub fn with_options(
        populate: impl FnOnce(&Path),
        options: OverlayOptions,
        kind: LowerKind,
    ) -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("sqb-ovl")
            .tempdir_in("/tmp")
            .unwrap();
        let root = tmp.path().to_path_buf();
        let lower_src = root.join("lower-src");
        fs::create_dir(&lower_src).unwrap();
        populate(&lower_src);
        let image = root.join("lower.sqsh");
        run(Command::new("mksquashfs")
            .arg(&lower_src)
            .arg(&image)
            .args(["-noappend", "-quiet", "-no-progress", "-xattrs"]));
        let lower_mnt = root.join("lower-mnt");
        let upper = root.join("upper");
        let work = root.join("work");
        let mnt = root.join("mnt");
        for d in [&upper, &work, &mnt] {
            fs::create_dir(d).unwrap();
        }
        let watchdog = Watchdog::new(
            Duration::from_secs(240),
            vec![mnt.clone(), lower_mnt.clone()],
        );
        let lower_mount = KernelMount::squashfs(&image, &lower_mnt);
        let overlay = mount_overlay_layers(
            layers(kind, &image, &lower_mnt),
            &upper,
            &work,
            &mnt,
            options,
        )
        .expect("mount overlay");
        Fixture {
            tmp,
            lower_src,
            image,
            upper,
            work,
            mnt,
            overlay: Some(overlay),
            lower_mount: Some(lower_mount),
            kind,
            _watchdog: watchdog,
        }
    }

    pub fn lower_mnt(&self) -> PathBuf {
        self.tmp.path().join("lower-mnt")
    }

    pub fn m(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn u(&self, rel: &str) -> PathBuf {
        self.upper.join(rel)
    }

    /// Unmount our overlay (keeping the lower mount).
    pub fn unmount_overlay(&mut self) {
        if let Some(h) = self.overlay.take() {
            h.unmount().expect("unmount");
        }
    }

    /// Mount our overlay again over the same layers.
    pub fn remount_overlay(&mut self) {
        self.unmount_overlay();
        self.overlay = Some(
            mount_overlay_layers(
                layers(self.kind, &self.image, &self.lower_mnt()),
                &self.upper,
                &self.work,
                &self.mnt,
                OverlayOptions::default(),
            )
            .expect("remount overlay"),
        );
    }

    /// Mount our overlay again and assert it shows exactly `ours` (taken before).
    #[track_caller]
    pub fn assert_remount_shows(&mut self, ours: &Manifest) {
        self.remount_overlay();
        assert_same(ours, &manifest(&self.mnt, ours.opts), "after remount");
    }

    /// Assert the kernel's overlayfs, over a copy of our upper dir, shows exactly `ours`:
    /// the on-disk format is the kernel's.
    #[track_caller]
    pub fn assert_kernel_shows(&mut self, ours: &Manifest) {
        let k = self.kernel_manifest();
        assert_same(&k, ours, "kernel overlay vs ours");
    }

    /// Unmount ours, mount the kernel overlay over a copy of the upper dir, and return the
    /// manifest the kernel shows.
    pub fn kernel_manifest(&mut self) -> Manifest {
        self.unmount_overlay();
        let root = self.tmp.path();
        let upper_copy = root.join("kupper");
        run(Command::new("cp")
            .arg("-a")
            .arg(&self.upper)
            .arg(&upper_copy));
        let kmnt = root.join("kmnt");
        let m = KernelMount::overlay(&self.lower_mnt(), &upper_copy, &root.join("kwork"), &kmnt);
        let man = manifest(&m.path, ManifestOpts::full());
        drop(m);
        man
    }
}

/// The overlay's lower layer for the image, read as `kind` says.
pub fn layers(kind: LowerKind, image: &Path, lower_mnt: &Path) -> Vec<LowerLayer> {
    match kind {
        LowerKind::Image => vec![LowerLayer::Image(Arc::new(
            Archive::open_path(image).expect("open image"),
        ))],
        LowerKind::KernelDir => vec![LowerLayer::Directory(lower_mnt.to_path_buf())],
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.overlay.take();
        self.lower_mount.take();
    }
}

/// What a manifest comparison looks at.
#[derive(Clone, Copy)]
pub struct ManifestOpts {
    pub mtimes: bool,
    pub owners: bool,
    pub root_mtime: bool,
}

impl ManifestOpts {
    pub fn full() -> Self {
        ManifestOpts {
            mtimes: true,
            owners: true,
            root_mtime: true,
        }
    }
    pub fn without_root_mtime(self) -> Self {
        ManifestOpts {
            root_mtime: false,
            ..self
        }
    }
    pub fn no_times() -> Self {
        ManifestOpts {
            mtimes: false,
            owners: true,
            root_mtime: false,
        }
    }
}

/// A scanned tree plus what to compare (the team's testkit comparator).
pub struct Manifest {
    pub tree: squashbox_testkit::Manifest,
    pub opts: ManifestOpts,
}

/// Scan a tree: type, permissions, owner, size, content hash, link target, device numbers,
/// xattrs, mtimes, hard-link partitions.
pub fn manifest(root: &Path, o: ManifestOpts) -> Manifest {
    Manifest {
        tree: squashbox_testkit::Manifest::scan(root)
            .unwrap_or_else(|e| panic!("scan {}: {e}", root.display())),
        opts: o,
    }
}

/// Fail with a readable list of differences.
#[track_caller]
pub fn assert_same(a: &Manifest, b: &Manifest, what: &str) {
    let opts = squashbox_testkit::DiffOptions {
        ignore_mtime: !(a.opts.mtimes && b.opts.mtimes),
        ignore_root_mtime: !(a.opts.root_mtime && b.opts.root_mtime),
        // Directory mtimes of the two implementations legitimately differ only where
        // noted in docs/overlay.md; compare them too.
        ignore_owners: !(a.opts.owners && b.opts.owners),
        // Hard links are compared as partitions (which names share an inode): names linked
        // inside an image share one inode before and after copy-up, like links made through
        // the mount (docs/overlay.md, "Hard links").
        ignore_hard_links: false,
        ..Default::default()
    };
    squashbox_testkit::manifest::assert_manifests_equal(&a.tree, &b.tree, &opts, what);
}

pub fn xattr_names(p: &Path) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    match rustix::fs::llistxattr(p, &mut buf[..]) {
        Ok(n) => buf[..n]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| s.to_vec())
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub fn get_xattr(p: &Path, name: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    match rustix::fs::lgetxattr(p, OsStr::from_bytes(name), &mut buf[..]) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {}: {e}", p.display()));
}

/// Is `p` (in the upper dir) a whiteout?
pub fn is_whiteout(p: &Path) -> bool {
    match fs::symlink_metadata(p) {
        Ok(m) => m.file_type().is_char_device() && m.rdev() == 0,
        Err(_) => false,
    }
}

pub fn is_opaque(p: &Path) -> bool {
    get_xattr(p, b"trusted.overlay.opaque").as_deref() == Some(b"y")
}

/// Append `data` to the file at `p` (through the mount: copies a lower file up).
pub fn append(p: &Path, data: &[u8]) {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", p.display()))
        .write_all(data)
        .unwrap_or_else(|e| panic!("append to {}: {e}", p.display()));
}

/// A standard lower tree used by the semantic tests.
pub fn standard_tree(root: &Path) {
    use std::os::unix::fs::{symlink, PermissionsExt};
    fs::write(root.join("file"), b"lower file contents\n").unwrap();
    fs::write(
        root.join("big"),
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    fs::create_dir(root.join("dir")).unwrap();
    fs::write(root.join("dir/a"), b"a").unwrap();
    fs::write(root.join("dir/b"), b"bb").unwrap();
    fs::create_dir_all(root.join("dir/sub/deep")).unwrap();
    fs::write(root.join("dir/sub/deep/x"), b"xxx").unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    symlink("file", root.join("link")).unwrap();
    fs::write(root.join("exec"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("exec"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("ro"), b"read only").unwrap();
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o444)).unwrap();
    std::os::unix::fs::chown(root.join("ro"), Some(1234), Some(5678)).unwrap();
    set_xattr(&root.join("file"), "user.color", b"blue");
    run(Command::new("mkfifo").arg(root.join("fifo")));
    fs::write(root.join("hl1"), b"hard linked").unwrap();
    fs::hard_link(root.join("hl1"), root.join("hl2")).unwrap();
    let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    for p in ["file", "big", "dir/a", "exec", "ro", "hl1"] {
        let f = fs::File::options().write(true).open(root.join(p)).unwrap();
        f.set_modified(t).unwrap();
    }
}
