//! Reading through the mount: concurrent random reads checked against the source, mmap,
//! xattr size probes, statfs against the kernel, EROFS for every modification, and a corrupt
//! data block failing only the file it belongs to.

mod common;

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{can_run, mksquashfs, watchdog, Fixture, KernelMount};
use rand::{Rng, SeedableRng};
use squashbox_mount::MountOptions;

/// Deterministic file contents: half pseudo-random (incompressible), half patterned.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    for (i, chunk) in data.chunks_mut(8192).enumerate() {
        if i % 2 == 0 {
            rng.fill(chunk);
        } else {
            for (j, b) in chunk.iter_mut().enumerate() {
                *b = ((i * 31 + j / 7) % 251) as u8;
            }
        }
    }
    data
}

fn write_sources(src: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let files = vec![
        ("big1".to_string(), content(1, 5 << 20)),
        ("big2".to_string(), content(2, (3 << 20) + 12345)),
        ("sub/medium".to_string(), content(3, 200_000)),
        ("sub/small".to_string(), content(4, 777)),
        ("empty".to_string(), Vec::new()),
    ];
    for (name, data) in &files {
        std::fs::write(src.join(name), data).unwrap();
    }
    files
}

#[test]
fn concurrent_random_reads_match_source() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let files = Arc::new(write_sources(&fx.src));
    mksquashfs(&fx.src, &fx.img, &["-comp", "zstd", "-b", "64K"]);
    let _dog = watchdog(&fx.mnt, Duration::from_secs(120));
    let handle = fx.mount_with(MountOptions {
        threads: 4,
        ..MountOptions::default()
    });
    let mnt = fx.mnt.clone();
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let files = files.clone();
            let mnt = mnt.clone();
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(100 + t);
                let opened: Vec<File> = files
                    .iter()
                    .map(|(name, _)| File::open(mnt.join(name)).unwrap())
                    .collect();
                for _ in 0..300 {
                    // Threads 0..4 hammer the same file; the others pick any file.
                    let which = if t < 4 {
                        0
                    } else {
                        rng.random_range(0..files.len())
                    };
                    let (name, data) = &files[which];
                    let len = rng.random_range(1..=300_000usize);
                    let offset = rng.random_range(0..=data.len() as u64 + 10);
                    let mut buf = vec![0u8; len];
                    let n = opened[which].read_at(&mut buf, offset).unwrap();
                    let start = (offset as usize).min(data.len());
                    let end = (start + len).min(data.len());
                    assert_eq!(n, end - start, "{name} read {len} at {offset}");
                    assert!(
                        buf[..n] == data[start..end],
                        "{name} bytes at {offset}+{len} differ"
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("reader thread");
    }
    // Whole-file sequential reads (the read-ahead path) and mmap.
    for (name, data) in files.iter() {
        let mut read_back = Vec::new();
        File::open(fx.mnt.join(name))
            .unwrap()
            .read_to_end(&mut read_back)
            .unwrap();
        assert!(read_back == *data, "{name}: sequential read differs");
        if !data.is_empty() {
            assert!(
                mmap_contents(&fx.mnt.join(name), data.len()) == *data,
                "{name}: mmap differs"
            );
        }
    }
    assert_eq!(handle.io_errors(), 0);
    handle.unmount().unwrap();
}

fn mmap_contents(path: &Path, len: usize) -> Vec<u8> {
    let file = File::open(path).unwrap();
    squashbox_testkit::sys::mmap_read(&file, len)
        .unwrap_or_else(|e| panic!("mmap {}: {e}", path.display()))
}

#[test]
fn xattr_size_probes_and_erange() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    std::fs::create_dir_all(&fx.src).unwrap();
    let f = fx.src.join("f");
    std::fs::write(&f, b"x").unwrap();
    squashbox_testkit::sys::lsetxattr(&f, b"user.long", &[7u8; 3000]).unwrap();
    squashbox_testkit::sys::lsetxattr(&f, b"user.empty", b"").unwrap();
    squashbox_testkit::sys::lsetxattr(&f, b"trusted.t", b"tv").unwrap();
    squashbox_testkit::sys::lsetxattr(&f, b"security.s", b"sv").unwrap();
    mksquashfs(&fx.src, &fx.img, &[]);
    let _dog = watchdog(&fx.mnt, Duration::from_secs(60));
    let handle = fx.mount();
    let path = CString::new(fx.mnt.join("f").as_os_str().as_bytes()).unwrap();
    let get = |name: &str, buf: &mut [u8]| -> (isize, i32) {
        let n = CString::new(name).unwrap();
        // SAFETY: valid C strings; `buf` is writable for its length (NULL when empty).
        let r = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                n.as_ptr(),
                if buf.is_empty() {
                    std::ptr::null_mut()
                } else {
                    buf.as_mut_ptr().cast()
                },
                buf.len(),
            )
        };
        (
            r,
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        )
    };
    assert_eq!(get("user.long", &mut []).0, 3000, "size probe");
    assert_eq!(get("user.long", &mut [0u8; 100]), (-1, libc::ERANGE));
    let mut big = vec![0u8; 4000];
    assert_eq!(get("user.long", &mut big).0, 3000);
    assert!(big[..3000].iter().all(|&b| b == 7));
    assert_eq!(get("user.empty", &mut []).0, 0);
    assert_eq!(get("user.empty", &mut [0u8; 10]).0, 0);
    assert_eq!(get("trusted.t", &mut [0u8; 10]).0, 2);
    assert_eq!(get("security.s", &mut [0u8; 10]).0, 2);
    assert_eq!(get("user.missing", &mut [0u8; 10]), (-1, libc::ENODATA));
    // listxattr: size probe, then ERANGE with a too-small buffer.
    // SAFETY: valid C string; NULL/0 is the size probe; `small` is writable for 5 bytes.
    let (size, small_result) = unsafe {
        let size = libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0);
        let mut small = [0i8; 5];
        let r = libc::llistxattr(path.as_ptr(), small.as_mut_ptr(), small.len());
        (size, (r, std::io::Error::last_os_error().raw_os_error()))
    };
    let expected = b"security.s\0trusted.t\0user.empty\0user.long\0".len() as isize;
    assert_eq!(size, expected);
    assert_eq!(small_result, (-1, Some(libc::ERANGE)));
    handle.unmount().unwrap();
}

#[test]
fn statfs_matches_kernel() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    write_sources(&fx.src);
    mksquashfs(&fx.src, &fx.img, &[]);
    let _dog = watchdog(&fx.mnt, Duration::from_secs(60));
    let handle = fx.mount();
    let kernel = KernelMount::new(&fx.img, &fx.tmp.path().join("kernel"));
    let ours = statvfs(&fx.mnt);
    let theirs = statvfs(&kernel.dir);
    assert_eq!(ours, theirs);
    drop(kernel);
    handle.unmount().unwrap();
}

fn statvfs(path: &Path) -> (u64, u64, u64, u64, u64, u64, u64, u64) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string and a zeroed out-struct of the right type.
    let s = unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
        s
    };
    (
        s.f_bsize,
        s.f_frsize,
        s.f_blocks,
        s.f_bfree,
        s.f_bavail,
        s.f_files,
        s.f_ffree,
        s.f_namemax,
    )
}

#[test]
fn every_modification_fails_with_erofs() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    write_sources(&fx.src);
    std::os::unix::fs::symlink("big1", fx.src.join("link")).unwrap();
    mksquashfs(&fx.src, &fx.img, &[]);
    let _dog = watchdog(&fx.mnt, Duration::from_secs(60));
    let handle = fx.mount();
    let m = &fx.mnt;
    let erofs = |what: &str, r: std::io::Result<()>| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    erofs("create", File::create(m.join("new")).map(drop));
    erofs(
        "open for write",
        std::fs::OpenOptions::new()
            .write(true)
            .open(m.join("big1"))
            .map(drop),
    );
    erofs(
        "open O_TRUNC",
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_TRUNC)
            .open(m.join("big1"))
            .map(drop),
    );
    erofs("mkdir", std::fs::create_dir(m.join("d")));
    erofs("unlink", std::fs::remove_file(m.join("big1")));
    erofs("rmdir", std::fs::remove_dir(m.join("sub")));
    erofs("rename", std::fs::rename(m.join("big1"), m.join("big3")));
    erofs("link", std::fs::hard_link(m.join("big1"), m.join("big3")));
    erofs("symlink", std::os::unix::fs::symlink("x", m.join("s")));
    erofs(
        "chmod",
        std::fs::set_permissions(m.join("big1"), std::fs::Permissions::from_mode(0o600)),
    );
    erofs(
        "setxattr",
        squashbox_testkit::sys::lsetxattr(&m.join("big1"), b"user.x", b"y"),
    );
    erofs("truncate", {
        let c = CString::new(m.join("big1").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string.
        if unsafe { libc::truncate(c.as_ptr(), 0) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    });
    // Reading still works afterwards.
    let mut f = File::open(m.join("sub/small")).unwrap();
    f.seek(SeekFrom::Start(700)).unwrap();
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, content(4, 777)[700..]);
    handle.unmount().unwrap();
}

#[test]
fn corrupt_block_fails_only_its_file_and_the_mount_keeps_serving() {
    if !can_run() {
        return;
    }
    let fx = Fixture::new();
    let files = write_sources(&fx.src);
    mksquashfs(&fx.src, &fx.img, &["-comp", "gzip", "-no-fragments"]);
    // Find big1's first data block and overwrite its middle with garbage.
    let start = {
        let archive = squashbox_format::Archive::open_path(&fx.img).unwrap();
        let inode = archive.lookup_path("big1").unwrap();
        match inode.kind {
            squashbox_format::InodeKind::File { blocks_start, .. } => blocks_start,
            other => panic!("big1 is {other:?}"),
        }
    };
    {
        let img = std::fs::OpenOptions::new()
            .write(true)
            .open(&fx.img)
            .unwrap();
        img.write_all_at(&[0xA5u8; 512], start + 16).unwrap();
    }
    let _dog = watchdog(&fx.mnt, Duration::from_secs(60));
    let handle = fx.mount();
    let err = std::fs::read(fx.mnt.join("big1")).expect_err("corrupt file must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(handle.io_errors() > 0);
    // The rest of big1 (past the first block) and every other file still read fine.
    let big1 = &files[0].1;
    let f = File::open(fx.mnt.join("big1")).unwrap();
    let mut buf = vec![0u8; 100_000];
    f.read_exact_at(&mut buf, 1 << 20).unwrap();
    assert!(buf == big1[1 << 20..(1 << 20) + 100_000]);
    for (name, data) in &files[1..] {
        assert!(std::fs::read(fx.mnt.join(name)).unwrap() == *data, "{name}");
    }
    assert!(handle.is_alive());
    // Reading the corrupt block again fails again (the error is not cached as data).
    let err = std::fs::read(fx.mnt.join("big1")).expect_err("still corrupt");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    handle.unmount().unwrap();
}
