//! Mount lifecycle through the library: unmounting with files open, drop, external unmount,
//! busy/lazy unmount, bad mount points.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use common::{can_run, mksquashfs, watchdog, Fixture};
use squashbox_format::Archive;
use squashbox_mount::{is_mounted, mount, unmount, MountError, MountOptions, UnmountMode};

fn fixture() -> Fixture {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.src.join("dir")).unwrap();
    std::fs::write(fx.src.join("file"), vec![42u8; 300_000]).unwrap();
    std::fs::write(fx.src.join("dir/other"), b"other").unwrap();
    mksquashfs(&fx.src, &fx.img, &[]);
    fx
}

#[test]
fn unmount_with_open_files_aborts_them_and_joins() {
    if !can_run() {
        return;
    }
    let fx = fixture();
    let _dog = watchdog(&fx.mnt, Duration::from_secs(60));
    let handle = fx.mount();
    let file = File::open(fx.mnt.join("file")).unwrap();
    let dir = File::open(fx.mnt.join("dir")).unwrap();
    let mut first = [0u8; 10];
    file.read_exact_at(&mut first, 0).unwrap();
    assert_eq!(first, [42u8; 10]);
    handle.unmount().expect("unmount with open files");
    assert!(!is_mounted(&fx.mnt).unwrap());
    // The open file's connection is gone: reads of uncached data fail instead of hanging.
    let mut buf = [0u8; 10];
    let err = file
        .read_exact_at(&mut buf, 250_000)
        .expect_err("read after forced unmount");
    assert!(
        matches!(err.raw_os_error(), Some(libc::ENOTCONN) | Some(libc::EIO)),
        "{err}"
    );
    drop((file, dir));
    // The mount point is an ordinary empty directory again and can be mounted again.
    assert_eq!(std::fs::read_dir(&fx.mnt).unwrap().count(), 0);
    let again = fx.mount();
    assert_eq!(std::fs::read(fx.mnt.join("dir/other")).unwrap(), b"other");
    drop(again);
    common::assert_no_mounts_under(fx.tmp.path());
}

#[test]
fn dropping_the_handle_unmounts() {
    if !can_run() {
        return;
    }
    let fx = fixture();
    let _dog = watchdog(&fx.mnt, Duration::from_secs(60));
    {
        let handle = fx.mount();
        assert!(is_mounted(&fx.mnt).unwrap());
        assert!(handle.is_alive());
        assert_eq!(handle.mountpoint(), fx.mnt.canonicalize().unwrap());
    }
    assert!(!is_mounted(&fx.mnt).unwrap());
}

#[test]
fn external_unmount_ends_the_session_cleanly() {
    if !can_run() {
        return;
    }
    let fx = fixture();
    let _dog = watchdog(&fx.mnt, Duration::from_secs(60));
    let handle = fx.mount();
    unmount(&fx.mnt, UnmountMode::Normal).expect("external unmount");
    // wait() returns once the serving threads have stopped, and reports a clean end.
    handle.wait().expect("session ended cleanly");
    assert!(!is_mounted(&fx.mnt).unwrap());
}

#[test]
fn busy_unmount_is_refused_and_lazy_unmount_waits_for_the_last_file() {
    if !can_run() {
        return;
    }
    let fx = fixture();
    let _dog = watchdog(&fx.mnt, Duration::from_secs(60));
    let handle = fx.mount();
    let mut file = File::open(fx.mnt.join("file")).unwrap();
    match unmount(&fx.mnt, UnmountMode::Normal) {
        Err(MountError::Busy(p)) => assert_eq!(p, fx.mnt),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(is_mounted(&fx.mnt).unwrap());
    unmount(&fx.mnt, UnmountMode::Lazy).expect("lazy unmount");
    assert!(!is_mounted(&fx.mnt).unwrap());
    // Detached, but the open file is still served.
    assert!(handle.is_alive());
    let mut data = Vec::new();
    file.read_to_end(&mut data).unwrap();
    assert_eq!(data, vec![42u8; 300_000]);
    drop(file);
    // Closing the last file lets the kernel tear the connection down; the session ends.
    handle.wait().expect("session ended cleanly");
}

#[test]
fn bad_mount_points_are_refused_with_clear_errors() {
    if !can_run() {
        return;
    }
    let fx = fixture();
    let archive = Arc::new(Archive::open_path(&fx.img).unwrap());
    let missing = fx.tmp.path().join("missing");
    match mount(archive.clone(), &missing, MountOptions::default()) {
        Err(e @ MountError::MountpointMissing(_)) => {
            assert!(e.to_string().contains("does not exist"), "{e}")
        }
        other => panic!("expected MountpointMissing, got {other:?}"),
    }
    match mount(
        archive.clone(),
        fx.tmp.path().join("image.sqfs"),
        MountOptions::default(),
    ) {
        Err(MountError::MountpointNotDirectory(_)) => {}
        other => panic!("expected MountpointNotDirectory, got {other:?}"),
    }
    match mount(archive.clone(), &fx.src, MountOptions::default()) {
        Err(e @ MountError::MountpointNotEmpty(_)) => {
            assert!(e.to_string().contains("not empty"), "{e}")
        }
        other => panic!("expected MountpointNotEmpty, got {other:?}"),
    }
    let zero_threads = MountOptions {
        threads: 0,
        ..MountOptions::default()
    };
    assert!(matches!(
        mount(archive, &fx.mnt, zero_threads),
        Err(MountError::InvalidOption(_))
    ));
    match unmount(&fx.mnt, UnmountMode::Normal) {
        Err(MountError::NotMounted(_)) => {}
        other => panic!("expected NotMounted, got {other:?}"),
    }
    common::assert_no_mounts_under(fx.tmp.path());
}
