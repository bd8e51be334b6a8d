//! `squashbox mkfs`: summary line, SOURCE_DATE_EPOCH, option parsing, one-line errors.

use std::process::Command;

use squashbox_format::Archive;

fn squashbox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_squashbox"))
}

#[test]
fn builds_with_options_and_source_date_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    std::fs::write(src.join("sub/skip.o"), b"object").unwrap();
    let image = tmp.path().join("out.sqfs");
    let out = squashbox()
        .arg("mkfs")
        .arg(&src)
        .arg(&image)
        .args([
            "--comp",
            "gzip",
            "--level",
            "6",
            "--block-size",
            "64K",
            "--exclude",
            "*.o",
        ])
        .env("SOURCE_DATE_EPOCH", "1234567")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 files"), "summary: {stdout}");
    let archive = Archive::open_path(&image).unwrap();
    assert_eq!(archive.superblock().block_size, 64 * 1024);
    assert_eq!(archive.superblock().modification_time, 1_234_567);
    let a = archive.lookup_path("a.txt").unwrap();
    assert_eq!(a.mtime, 1_234_567);
    assert!(archive.lookup_path("sub/skip.o").is_err());
}

#[test]
fn errors_are_one_line_with_nonzero_status() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        vec!["mkfs", "/nonexistent/source", "x.sqfs"],
        vec!["mkfs", ".", "x.sqfs", "--comp", "brotli"],
        vec!["mkfs", ".", "x.sqfs", "--block-size", "3K"],
    ] {
        let out = squashbox()
            .args(&args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("squashbox: "), "{stderr}");
        assert!(!tmp.path().join("x.sqfs").exists());
    }
}
