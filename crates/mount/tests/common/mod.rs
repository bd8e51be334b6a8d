//! Shared helpers for the mount integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use squashbox_format::Archive;
use squashbox_mount::{mount, MountHandle, MountOptions, UnmountMode};

/// Everything a mount test needs; the temp dir is removed after the mounts are gone.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub src: PathBuf,
    pub img: PathBuf,
    pub mnt: PathBuf,
}

impl Fixture {
    /// A temp dir with `src/`, an image path and an empty `mnt/`.
    pub fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("squashbox-mount-test")
            .tempdir()
            .unwrap();
        let src = tmp.path().join("src");
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let img = tmp.path().join("image.sqfs");
        Fixture { tmp, src, img, mnt }
    }

    /// Mount `self.img` at `self.mnt` through the library.
    pub fn mount(&self) -> MountHandle {
        self.mount_with(MountOptions::default())
    }

    /// Mount `self.img` at `self.mnt` with `options`.
    pub fn mount_with(&self, options: MountOptions) -> MountHandle {
        let archive = Arc::new(Archive::open_path(&self.img).expect("open image"));
        mount(archive, &self.mnt, options).expect("mount image")
    }
}

/// Force-unmounts `mnt` if the test is still running after `limit`, so a hung FUSE request
/// becomes a test failure (syscalls return ENOTCONN) instead of a hung test run.
pub struct Watchdog {
    done: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

pub fn watchdog(mnt: &Path, limit: Duration) -> Watchdog {
    let (tx, rx) = bounded::<()>(1);
    let mnt = mnt.to_path_buf();
    let thread = std::thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: test exceeded {limit:?}; aborting the mount at {mnt:?}");
            let _ = squashbox_mount::unmount(&mnt, UnmountMode::Force);
        }
    });
    Watchdog {
        done: Some(tx),
        thread: Some(thread),
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One raw directory entry: (name, d_ino, d_type, d_off).
pub type RawDirEntry = (Vec<u8>, u64, u8, i64);

/// One path's `lstat` fields and payload, as compared between a FUSE and a kernel mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatRecord {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub mtime: i64,
    pub blocks: u64,
    pub ino: u64,
    pub link_target: Option<Vec<u8>>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Directory listing from readdir: (name, d_ino, d_type, d_off), "." and ".." included.
    pub listing: Option<Vec<RawDirEntry>>,
}

/// `lstat` every path under `root` (root included), keyed by relative path.
pub fn stat_tree(root: &Path) -> BTreeMap<Vec<u8>, StatRecord> {
    let mut out = BTreeMap::new();
    let mut pending = vec![(Vec::<u8>::new(), root.to_path_buf())];
    while let Some((rel, path)) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let link_target = meta.file_type().is_symlink().then(|| {
            std::fs::read_link(&path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        });
        let listing = meta.is_dir().then(|| read_dir_raw(&path));
        if let Some(entries) = &listing {
            for (name, ..) in entries {
                if name == b"." || name == b".." {
                    continue;
                }
                let mut child_rel = rel.clone();
                if !child_rel.is_empty() {
                    child_rel.push(b'/');
                }
                child_rel.extend_from_slice(name);
                pending.push((child_rel, path.join(OsStr::from_bytes(name))));
            }
        }
        out.insert(
            rel,
            StatRecord {
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                size: meta.size(),
                nlink: meta.nlink(),
                rdev: meta.rdev(),
                mtime: meta.mtime(),
                blocks: meta.blocks(),
                ino: meta.ino(),
                link_target,
                xattrs: lxattrs(&path),
                listing,
            },
        );
    }
    out
}

/// Raw readdir of `dir`: (name, d_ino, d_type, d_off) in the order the file system returns.
pub fn read_dir_raw(dir: &Path) -> Vec<RawDirEntry> {
    let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let mut out = Vec::new();
    // SAFETY: `c` is a valid C string; the DIR pointer is checked for NULL, used only until
    // closedir, and every dirent pointer is read before the next readdir call.
    unsafe {
        let d = libc::opendir(c.as_ptr());
        assert!(
            !d.is_null(),
            "opendir {dir:?}: {}",
            std::io::Error::last_os_error()
        );
        loop {
            *libc::__errno_location() = 0;
            let ent = libc::readdir64(d);
            if ent.is_null() {
                let err = *libc::__errno_location();
                libc::closedir(d);
                assert_eq!(
                    err,
                    0,
                    "readdir {dir:?}: {}",
                    std::io::Error::from_raw_os_error(err)
                );
                break;
            }
            let name = std::ffi::CStr::from_ptr((*ent).d_name.as_ptr())
                .to_bytes()
                .to_vec();
            out.push((name, (*ent).d_ino, (*ent).d_type, (*ent).d_off));
        }
    }
    out
}

/// All xattrs of `path` (not following symlinks), sorted by name, through the raw syscalls
/// including the size probes.
pub fn lxattrs(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string; a NULL buffer with size 0 asks for the needed size.
    let size = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        let err = std::io::Error::last_os_error();
        // An image without an xattr table: the kernel says "not supported"; record that.
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EOPNOTSUPP),
            "llistxattr {path:?}: {err}"
        );
        return vec![(b"<EOPNOTSUPP>".to_vec(), Vec::new())];
    }
    let mut names = vec![0u8; size as usize];
    if size > 0 {
        // SAFETY: `names` has exactly `size` writable bytes.
        let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
        assert_eq!(n, size, "llistxattr {path:?}");
    }
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).unwrap();
        // SAFETY: valid C strings; NULL buffer with size 0 is the size probe.
        let len = unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), std::ptr::null_mut(), 0) };
        assert!(len >= 0, "lgetxattr size {path:?}");
        let mut value = vec![0u8; len as usize];
        if len > 0 {
            // SAFETY: `value` has `len` writable bytes.
            let n = unsafe {
                libc::lgetxattr(
                    c.as_ptr(),
                    cname.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            assert_eq!(n, len, "lgetxattr {path:?}");
        }
        out.push((name.to_vec(), value));
    }
    out.sort();
    out
}

/// Map a kernel-mount inode number to the FUSE one: FUSE reserves 1 for the root, so the
/// root's image number and image number 1 swap.
pub fn fuse_ino(kernel_ino: u64, root_ino: u64) -> u64 {
    if kernel_ino == root_ino {
        1
    } else if kernel_ino == 1 {
        root_ino
    } else {
        kernel_ino
    }
}

/// Compare a FUSE mount of an image with the kernel's squashfs mount of the same image,
/// field by field: every lstat field (inode numbers mapped), symlink targets, xattrs and the
/// raw readdir stream (names, d_ino, d_type, d_off). st_blksize is allowed to differ.
pub fn assert_same_as_kernel(fuse_root: &Path, kernel_root: &Path) {
    let k = stat_tree(kernel_root);
    let f = stat_tree(fuse_root);
    let root_ino = k[&Vec::new()].ino;
    assert_eq!(
        k.keys().collect::<Vec<_>>(),
        f.keys().collect::<Vec<_>>(),
        "different path sets"
    );
    let mut problems = Vec::new();
    for (path, kr) in &k {
        let fr = &f[path];
        let mut expected = kr.clone();
        expected.ino = fuse_ino(kr.ino, root_ino);
        if let Some(listing) = &mut expected.listing {
            for e in listing.iter_mut() {
                e.1 = fuse_ino(e.1, root_ino);
            }
        }
        if path.is_empty() {
            // The kernel reports the root's ".." as whatever the image says (an inode number
            // past the last one); FUSE reports the root itself. Compare the rest.
            if let (Some(a), Some(b)) = (&mut expected.listing, &fr.listing) {
                if let (Some(ka), Some(fb)) = (a.get_mut(1), b.get(1)) {
                    ka.1 = fb.1;
                }
            }
        }
        for (field, k_val, f_val) in record_fields(&expected, fr) {
            if k_val != f_val {
                problems.push(format!(
                    "{}: {field}: kernel {} fuse {}",
                    String::from_utf8_lossy(path),
                    shorten(&k_val),
                    shorten(&f_val)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} paths differ from the kernel mount:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

fn record_fields(a: &StatRecord, b: &StatRecord) -> Vec<(&'static str, String, String)> {
    macro_rules! f {
        ($($name:ident),*) => {
            vec![$((stringify!($name), format!("{:?}", a.$name), format!("{:?}", b.$name))),*]
        };
    }
    f!(
        mode,
        uid,
        gid,
        size,
        nlink,
        rdev,
        mtime,
        blocks,
        ino,
        link_target,
        xattrs,
        listing
    )
}

fn shorten(s: &str) -> String {
    if s.len() > 300 {
        format!("{}...({} chars)", &s[..300], s.len())
    } else {
        s.to_string()
    }
}

/// A kernel squashfs loop mount that is always unmounted.
pub struct KernelMount {
    pub dir: PathBuf,
}

impl KernelMount {
    pub fn new(img: &Path, dir: &Path) -> KernelMount {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "squashfs", "-o", "loop,ro"])
            .arg(img)
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kernel mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        KernelMount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        let out = std::process::Command::new("umount").arg(&self.dir).output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .output();
        }
    }
}

/// Run mksquashfs with a timeout and fail loudly.
pub fn mksquashfs(src: &Path, img: &Path, args: &[&str]) {
    let out = std::process::Command::new("timeout")
        .arg("120")
        .arg("mksquashfs")
        .arg(src)
        .arg(img)
        .args(["-noappend", "-quiet", "-no-progress"])
        .args(args)
        .output()
        .expect("run mksquashfs");
    assert!(
        out.status.success(),
        "mksquashfs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True when this test can mount FUSE and loop devices (skip off CI, panic in CI).
pub fn can_run() -> bool {
    squashbox_testkit::require_root()
        && squashbox_testkit::require_fuse()
        && squashbox_testkit::require_loop()
        && squashbox_testkit::require_tool("mksquashfs")
}

/// No mount under `dir` is left in /proc/self/mountinfo.
pub fn assert_no_mounts_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = dir.to_string_lossy().to_string();
    let left: Vec<&str> = info.lines().filter(|l| l.contains(&prefix)).collect();
    assert!(left.is_empty(), "mounts left behind: {left:#?}");
}
