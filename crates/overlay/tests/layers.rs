//! Several lower images: order (leftmost = topmost), whiteouts and opaque directories stored
//! inside an image, type clashes between layers, and changes on top, all compared with the
//! kernel's overlayfs over the same two images.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use squashbox_format::Archive;
use squashbox_overlay::{mount_overlay_layers, LowerLayer, OverlayOptions};

fn mksquashfs(src: &Path, img: &Path) {
    let out = Command::new("mksquashfs")
        .arg(src)
        .arg(img)
        .args(["-noappend", "-quiet", "-no-progress", "-xattrs"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bottom(root: &Path) {
    fs::write(root.join("gone"), b"hidden by a whiteout in the top image").unwrap();
    fs::create_dir(root.join("opq")).unwrap();
    fs::write(root.join("opq/x"), b"hidden by the opaque top dir").unwrap();
    fs::write(root.join("shadow"), b"bottom").unwrap();
    fs::create_dir(root.join("merged")).unwrap();
    fs::write(root.join("merged/bottom"), b"b").unwrap();
    fs::create_dir(root.join("typeclash")).unwrap();
    fs::write(root.join("typeclash/inner"), b"hidden by the top file").unwrap();
    fs::write(root.join("onlybottom"), b"ob").unwrap();
}

fn top(root: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("gone").as_path(),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    fs::create_dir(root.join("opq")).unwrap();
    fs::write(root.join("opq/y"), b"top y").unwrap();
    set_xattr(&root.join("opq"), "trusted.overlay.opaque", b"y");
    fs::write(root.join("shadow"), b"top").unwrap();
    fs::create_dir(root.join("merged")).unwrap();
    fs::write(root.join("merged/top"), b"t").unwrap();
    fs::write(root.join("typeclash"), b"top file").unwrap();
}

#[test]
fn two_images_merge_like_the_kernel() {
    if !can_run() {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("sqb-ovl-layers")
        .tempdir_in("/tmp")
        .unwrap();
    let t = tmp.path();
    for d in ["src-top", "src-bottom", "upper", "work", "mnt"] {
        fs::create_dir(t.join(d)).unwrap();
    }
    top(&t.join("src-top"));
    bottom(&t.join("src-bottom"));
    mksquashfs(&t.join("src-top"), &t.join("top.sqsh"));
    mksquashfs(&t.join("src-bottom"), &t.join("bottom.sqsh"));
    let _wd = Watchdog::new(Duration::from_secs(120), vec![t.join("mnt")]);
    let top_mnt = KernelMount::squashfs(&t.join("top.sqsh"), &t.join("top-mnt"));
    let bottom_mnt = KernelMount::squashfs(&t.join("bottom.sqsh"), &t.join("bottom-mnt"));
    let layers = vec![
        LowerLayer::Image(Arc::new(Archive::open_path(t.join("top.sqsh")).unwrap())),
        LowerLayer::Image(Arc::new(Archive::open_path(t.join("bottom.sqsh")).unwrap())),
    ];
    let h = mount_overlay_layers(
        layers,
        &t.join("upper"),
        &t.join("work"),
        &t.join("mnt"),
        OverlayOptions::default(),
    )
    .unwrap();
    let m = |p: &str| t.join("mnt").join(p);

    // Read-only view.
    assert!(
        fs::symlink_metadata(m("gone")).is_err(),
        "whiteout in the top image hides bottom"
    );
    let opq: Vec<_> = fs::read_dir(m("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        opq,
        vec![std::ffi::OsString::from("y")],
        "opaque dir in the top image"
    );
    assert_eq!(fs::read(m("shadow")).unwrap(), b"top");
    let mut merged: Vec<_> = fs::read_dir(m("merged"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    merged.sort();
    assert_eq!(
        merged,
        vec![
            std::ffi::OsString::from("bottom"),
            std::ffi::OsString::from("top")
        ]
    );
    assert_eq!(fs::read(m("typeclash")).unwrap(), b"top file");
    assert_eq!(fs::read(m("onlybottom")).unwrap(), b"ob");
    assert!(
        get_xattr(&m("opq"), b"trusted.overlay.opaque").is_none(),
        "markers stay hidden"
    );
    let readonly = manifest(&t.join("mnt"), ManifestOpts::full());

    // Changes on top: copy-up from the bottom layer, whiteout of a bottom entry, rename of a
    // directory merged from both images.
    fs::write(m("onlybottom"), b"changed").unwrap();
    fs::remove_file(m("merged/bottom")).unwrap();
    fs::rename(m("merged"), m("m2")).unwrap();
    assert_eq!(fs::read(m("m2/top")).unwrap(), b"t");
    assert!(fs::symlink_metadata(m("m2/bottom")).is_err());
    fs::create_dir(m("gone")).unwrap();
    let changed = manifest(&t.join("mnt"), ManifestOpts::full());
    h.unmount().unwrap();

    // The kernel over the same images and a copy of our upper dir shows the same trees.
    let lowers = format!("{}:{}", top_mnt.path.display(), bottom_mnt.path.display());
    let kview = |upper: Option<&Path>, tag: &str| {
        let kmnt = t.join(format!("kmnt-{tag}"));
        fs::create_dir(&kmnt).unwrap();
        let opts = match upper {
            None => format!("lowerdir={lowers}"),
            Some(u) => format!(
                "lowerdir={lowers},upperdir={},workdir={},redirect_dir=on",
                u.display(),
                t.join(format!("kwork-{tag}")).display()
            ),
        };
        if upper.is_some() {
            fs::create_dir(t.join(format!("kwork-{tag}"))).unwrap();
        }
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&kmnt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let g = KernelMount { path: kmnt.clone() };
        let man = manifest(&kmnt, ManifestOpts::full());
        drop(g);
        man
    };
    let k_ro = kview(None, "ro");
    // A lower-only kernel mount has no upper root: its root mtime is the top image's.
    assert_same(
        &Manifest {
            opts: ManifestOpts::full().without_root_mtime(),
            ..k_ro
        },
        &readonly,
        "kernel vs ours, read-only",
    );
    let out = Command::new("cp")
        .arg("-a")
        .arg(t.join("upper"))
        .arg(t.join("kupper"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let k_rw = kview(Some(&t.join("kupper")), "rw");
    assert_same(&k_rw, &changed, "kernel vs ours, after changes");
    drop(top_mnt);
    drop(bottom_mnt);
}
