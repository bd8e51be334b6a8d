//! Data path of upper files in each I/O mode the mount can negotiate: FUSE passthrough (the
//! default when the kernel offers it and we run as root), the writeback cache (passthrough
//! off), and plain daemon I/O (both off). Every mode must give the same file contents,
//! sizes, `O_APPEND` behaviour and shared-mmap results, in the mount and on disk in the upper
//! directory, including for lower files copied up on open and for inodes opened in both
//! "cached" (lower, read-only) and passthrough fashion at the same time.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use common::{can_run, Fixture, LowerKind};
use squashbox_overlay::{IoMode, OverlayOptions};

fn populate(root: &std::path::Path) {
    fs::write(root.join("lower.txt"), b"0123456789").unwrap();
    fs::write(root.join("lower2.txt"), b"abcdefghij").unwrap();
    fs::write(root.join("big"), vec![7u8; 3 << 20]).unwrap();
}

fn read(p: &std::path::Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Write `data` at `offset` through a shared mapping of `file` (which must be that long).
fn mmap_write(file: &fs::File, offset: usize, data: &[u8]) {
    let len = offset + data.len();
    // SAFETY: a fresh shared read-write mapping of `len` bytes of an open file that is at least
    // that long; it is only accessed inside this function, within bounds, then unmapped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        std::ptr::copy_nonoverlapping(data.as_ptr(), (p as *mut u8).add(offset), data.len());
        assert_eq!(libc::msync(p, len, libc::MS_SYNC), 0);
        assert_eq!(libc::munmap(p, len), 0);
    }
}

fn scenario(options: OverlayOptions, expect: IoMode) {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::with_options(populate, options, LowerKind::Image);
    // Any access waits for the kernel's init, after which the mode is known.
    fs::metadata(&fx.mnt).unwrap();
    let handle = fx.overlay.as_ref().unwrap();
    assert_eq!(handle.io_mode(), expect, "negotiated I/O mode");

    // New file: sequential writes, size while open, content in the mount and on disk.
    {
        let mut f = fs::File::create(fx.m("new")).unwrap();
        let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        for _ in 0..4 {
            f.write_all(&chunk).unwrap();
        }
        assert_eq!(
            f.metadata().unwrap().len(),
            4 << 20,
            "fstat size while open"
        );
        assert_eq!(fs::metadata(fx.m("new")).unwrap().len(), 4 << 20);
        f.write_all_at(b"HOLE", 10 << 20).unwrap();
        assert_eq!(fs::metadata(fx.m("new")).unwrap().len(), (10 << 20) + 4);
    }
    let new = read(&fx.m("new"));
    assert_eq!(new.len(), (10 << 20) + 4);
    assert_eq!(&new[..3], &[0, 1, 2]);
    assert!(new[4 << 20..10 << 20].iter().all(|b| *b == 0));
    assert_eq!(&new[10 << 20..], b"HOLE");
    assert_eq!(read(&fx.u("new")), new, "upper file on disk");

    // O_APPEND from two handles interleaved: every write lands at the current end.
    {
        let mut a = OpenOptions::new().append(true).open(fx.m("new")).unwrap();
        let mut b = OpenOptions::new().append(true).open(fx.m("new")).unwrap();
        a.write_all(b"<a1>").unwrap();
        b.write_all(b"<b1>").unwrap();
        a.write_all(b"<a2>").unwrap();
    }
    let new = read(&fx.m("new"));
    assert_eq!(&new[(10 << 20) + 4..], b"<a1><b1><a2>");
    assert_eq!(read(&fx.u("new")), new);

    // A lower file opened for writing is copied up, then written through the new handle.
    {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(fx.m("lower.txt"))
            .unwrap();
        f.seek(SeekFrom::Start(2)).unwrap();
        f.write_all(b"XY").unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut s = Vec::new();
        f.read_to_end(&mut s).unwrap();
        assert_eq!(s, b"01XY456789", "read back through the writing handle");
    }
    assert_eq!(read(&fx.m("lower.txt")), b"01XY456789");
    assert_eq!(read(&fx.u("lower.txt")), b"01XY456789");
    assert_eq!(read(&fx.lower_src.join("lower.txt")), b"0123456789");

    // The same inode open read-only from the lower layer (kernel page cache) while another
    // open copies it up and writes: both opens must succeed (the kernel refuses mixed modes
    // on one inode if we got them wrong) and the data must be right.
    {
        let ro = fs::File::open(fx.m("lower2.txt")).unwrap();
        let mut buf = [0u8; 10];
        ro.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"abcdefghij");
        let rw = OpenOptions::new()
            .write(true)
            .open(fx.m("lower2.txt"))
            .expect("open for write while a lower read-only open exists");
        rw.write_all_at(b"ZZ", 0).unwrap();
        drop(rw);
        let again = fs::File::open(fx.m("lower2.txt")).expect("reopen");
        let mut s = Vec::new();
        (&again).read_to_end(&mut s).unwrap();
        assert_eq!(s, b"ZZcdefghij");
        drop(ro);
    }
    assert_eq!(read(&fx.u("lower2.txt")), b"ZZcdefghij");

    // Shared writable mmap of an upper file; private mmap of a lower file.
    {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(fx.m("new"))
            .unwrap();
        mmap_write(&f, 100, b"MAPPED");
        let lower = fs::File::open(fx.m("big")).unwrap();
        assert!(squashbox_testkit::sys::mmap_read(&lower, 3 << 20)
            .expect("mmap of a lower file")
            .iter()
            .all(|b| *b == 7));
    }
    assert_eq!(&read(&fx.m("new"))[100..106], b"MAPPED");
    assert_eq!(&read(&fx.u("new"))[100..106], b"MAPPED");

    // Truncate through an open handle; the size is seen through the path at once.
    {
        let f = OpenOptions::new().write(true).open(fx.m("new")).unwrap();
        f.set_len(5).unwrap();
        assert_eq!(fs::metadata(fx.m("new")).unwrap().len(), 5);
        f.write_all_at(b"!", 7).unwrap();
    }
    assert_eq!(read(&fx.m("new")), b"\x00\x01\x02\x03\x04\x00\x00!");

    // An open file keeps working after its name is removed.
    {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(fx.m("gone"))
            .unwrap();
        fs::remove_file(fx.m("gone")).unwrap();
        f.write_all(b"still here").unwrap();
        assert_eq!(f.metadata().unwrap().len(), 10);
        let mut s = String::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "still here");
    }
    assert!(!fx.u("gone").exists());

    // Everything is on disk after a remount too.
    fx.remount_overlay();
    assert_eq!(read(&fx.m("new")), b"\x00\x01\x02\x03\x04\x00\x00!");
    assert_eq!(read(&fx.m("lower.txt")), b"01XY456789");
}

#[test]
fn passthrough_when_the_kernel_offers_it() {
    // CI runs as root on a kernel with FUSE passthrough (>= 6.9, CONFIG_FUSE_PASSTHROUGH), so
    // anything but passthrough is a failure there.
    scenario(OverlayOptions::default(), IoMode::Passthrough);
}

#[test]
fn writeback_cache_without_passthrough() {
    let options = OverlayOptions {
        passthrough: false,
        ..OverlayOptions::default()
    };
    scenario(options, IoMode::WritebackCache);
}

#[test]
fn daemon_io_without_either() {
    let options = OverlayOptions {
        passthrough: false,
        writeback_cache: false,
        ..OverlayOptions::default()
    };
    scenario(options, IoMode::Daemon);
}
