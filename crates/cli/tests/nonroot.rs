//! Extraction by an unprivileged user (via `setpriv` from root): owners are skipped silently,
//! devices and trusted/security xattrs become warnings, read-only directories still fill,
//! and everything else matches the source.

#[path = "../../extract/tests/common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{list_names, patch_unique};
use squashbox_testkit::manifest::assert_manifests_equal;
use squashbox_testkit::{
    mksquashfs, require_root, require_tool, DiffOptions, EdgeTree, EdgeTreeOptions, EntryKind,
    Manifest,
};

const BIN: &str = env!("CARGO_BIN_EXE_squashbox");

#[test]
fn unprivileged_extraction_skips_owners_and_warns_about_privileged_parts() {
    if !require_root() || !require_tool("mksquashfs") || !require_tool("setpriv") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = tmp.path().join("src");
    let tree = EdgeTreeOptions {
        block_sizes: vec![4096],
        ..EdgeTreeOptions::cheap()
    };
    EdgeTree::create(&src, &tree).unwrap();
    // As root the tree has devices and trusted/security xattrs: the user must be warned.
    let mut expected = Manifest::scan(&src).unwrap();
    let devices: Vec<Vec<u8>> = expected
        .entries
        .iter()
        .filter(|(_, e)| {
            matches!(
                e.kind,
                EntryKind::CharDev { .. } | EntryKind::BlockDev { .. }
            )
        })
        .map(|(path, _)| path.clone())
        .collect();
    let privileged: Vec<Vec<u8>> = expected
        .entries
        .values()
        .flat_map(|e| e.xattrs.iter().map(|(name, _)| name.clone()))
        .filter(|name| !name.starts_with(b"user."))
        .collect();
    assert!(!devices.is_empty() && !privileged.is_empty());
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
    // A user may make 0:0 character devices (overlay whiteouts, Linux 5.8 and later): those
    // may be extracted; every other device must be refused with a warning.
    let (made, refused): (Vec<Vec<u8>>, Vec<Vec<u8>>) = devices.into_iter().partition(|path| {
        fs::symlink_metadata(dest.join(String::from_utf8_lossy(path).as_ref())).is_ok()
    });
    for path in &made {
        assert_eq!(
            expected.get(path).unwrap().kind,
            EntryKind::CharDev { major: 0, minor: 0 },
            "{} was created by a user",
            String::from_utf8_lossy(path)
        );
    }
    assert!(!refused.is_empty());
    for needle in refused.iter().chain(&privileged) {
        // Devices are named by their path, xattrs by their name.
        let needle = String::from_utf8_lossy(needle);
        assert!(
            stderr.contains(needle.as_ref()),
            "no warning about {needle}: {stderr}"
        );
    }

    // Everything else matches the source, owners aside.
    expected.entries.retain(|path, _| !refused.contains(path));
    for e in expected.entries.values_mut() {
        e.xattrs.retain(|(name, _)| name.starts_with(b"user."));
    }
    let actual = Manifest::scan(&dest).unwrap();
    let opts = DiffOptions {
        ignore_owners: true,
        check_symlink_mode: true,
        ..DiffOptions::default()
    };
    assert_manifests_equal(&expected, &actual, &opts, "unprivileged extract");
    // Everything belongs to the extracting user.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::symlink_metadata(dest.join("types/regular"))
            .unwrap()
            .uid(),
        65534
    );
}

#[test]
fn unprivileged_failed_extraction_leaves_nothing_even_with_locked_directories() {
    if !require_root() || !require_tool("mksquashfs") {
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
