//! Extraction by an unprivileged user (via `setpriv` from root): owners are skipped silently,
//! devices and trusted/security xattrs become warnings, read-only directories still fill,
//! and everything else matches the source.

#[path = "../../extract/tests/common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_squashbox");

#[test]
fn unprivileged_extraction_skips_owners_and_warns_about_privileged_parts() {
    if !require(is_root(), "root (to build the tree and drop privileges)")
        || !require(have_tool("mksquashfs"), "mksquashfs")
        || !require(
            Command::new("setpriv").arg("--version").output().is_ok(),
            "setpriv",
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    build_edge_tree(&src, 4096);
    let image = tmp.path().join("image.sqfs");
    mksquashfs(&src, &image, &["-b", "4096"]);
    fs::set_permissions(&image, fs::Permissions::from_mode(0o644)).unwrap();
    let public = tmp.path().join("public");
    fs::create_dir(&public).unwrap();
    fs::set_permissions(&public, fs::Permissions::from_mode(0o777)).unwrap();
    let dest = public.join("out");

    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "extract",
        ])
        .arg(&image)
        .arg(&dest)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with("squashbox: warning: ")),
        "{stderr}"
    );
    for needle in ["chardev", "blockdev", "trusted.tk", "security.sec"] {
        assert!(
            stderr.contains(needle),
            "no warning about {needle}: {stderr}"
        );
    }

    let opts = Snap {
        with_owner: false,
        with_xattrs: true,
        with_sockets: true,
    };
    let mut expected = snapshot(&src, opts);
    expected.remove(b"chardev".as_slice());
    expected.remove(b"blockdev".as_slice());
    for e in expected.values_mut() {
        e.xattrs.retain(|k, _| k.starts_with(b"user."));
    }
    let actual = snapshot(&dest, opts);
    assert_same(&expected, &actual, "unprivileged extract");
    // Everything belongs to the extracting user.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::symlink_metadata(dest.join("one")).unwrap().uid(), 65534);
}

#[test]
fn unprivileged_failed_extraction_leaves_nothing_even_with_locked_directories() {
    if !require(is_root(), "root (to drop privileges)")
        || !require(have_tool("mksquashfs"), "mksquashfs")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = tmp.path().join("src");
    // Extracted first and finished (final mode 0) before the hostile entry is reached.
    fs::create_dir_all(src.join("a_locked/inner")).unwrap();
    fs::write(src.join("a_locked/inner/file"), b"data").unwrap();
    fs::set_permissions(
        src.join("a_locked/inner"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    fs::set_permissions(src.join("a_locked"), fs::Permissions::from_mode(0o500)).unwrap();
    fs::write(src.join("zz_x"), b"PAYLOAD").unwrap();
    let image = tmp.path().join("image.sqfs");
    mksquashfs(&src, &image, &["-noI", "-noD", "-noF", "-noX"]);
    patch_unique(&image, b"zz_x", b"../x");
    fs::set_permissions(&image, fs::Permissions::from_mode(0o644)).unwrap();
    let public = tmp.path().join("public");
    fs::create_dir(&public).unwrap();
    fs::set_permissions(&public, fs::Permissions::from_mode(0o777)).unwrap();

    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "extract",
        ])
        .arg(&image)
        .arg(public.join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("../x"), "{stderr}");
    assert!(
        list_names(&public).is_empty(),
        "left behind: {:?}",
        list_names(&public)
    );
    assert!(!tmp.path().join("x").exists());
}
