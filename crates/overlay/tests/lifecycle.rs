//! Mount lifecycle: unmounting while files are open detaches the mount instead of leaving it
//! behind, open files keep working until closed; external unmount is noticed.

mod common;

use std::fs;
use std::io::Read;

use common::*;

fn mounted(p: &std::path::Path) -> bool {
    let m = fs::read_to_string("/proc/self/mounts").unwrap();
    m.lines()
        .any(|l| l.split(' ').nth(1) == Some(p.to_str().unwrap()))
}

#[test]
fn busy_unmount_detaches_and_open_files_keep_working() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new(standard_tree);
    let mut f = fs::File::open(fx.m("file")).unwrap();
    let h = fx.overlay.take().unwrap();
    assert!(h.is_alive());
    let r = h.unmount();
    // Either the kernel let it go (not busy) or we detached it: never left mounted.
    assert!(!mounted(&fx.mnt), "mount left behind after unmount ({r:?})");
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "lower file contents\n");
}

#[test]
fn external_unmount_is_noticed() {
    if !can_run() {
        return;
    }
    let mut fx = Fixture::new(standard_tree);
    let st = std::process::Command::new("umount")
        .arg(&fx.mnt)
        .status()
        .unwrap();
    assert!(st.success());
    let h = fx.overlay.take().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.is_alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!h.is_alive());
    h.unmount().unwrap();
}
