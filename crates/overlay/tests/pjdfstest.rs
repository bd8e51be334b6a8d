//! POSIX conformance: runs `scripts/pjdfstest.sh`, which runs pjdfstest against a plain
//! directory and against a `squashbox overlay` mount in the same run and fails if the overlay
//! fails a test the plain directory passes. Needs the `squashbox` binary (built by
//! `scripts/test.sh` before the tests), pjdfstest and the `tests` user; skips without them
//! (fails under `CI=true`).

use std::path::PathBuf;
use std::process::Command;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn squashbox_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug/squashbox")
}

#[test]
fn pjdfstest_overlay_matches_plain_directory() {
    if !(squashbox_testkit::require_root()
        && squashbox_testkit::require_fuse()
        && squashbox_testkit::require_tool("mksquashfs"))
    {
        return;
    }
    let pjd_present = squashbox_testkit::tool_path("pjdfstest").is_some()
        || std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cargo/bin/pjdfstest").exists())
            .unwrap_or(false);
    if !pjd_present {
        squashbox_testkit::skip_or_fail("pjdfstest is not installed (cargo install pjdfstest)");
        return;
    }
    let bin = squashbox_binary();
    if !bin.exists() {
        squashbox_testkit::skip_or_fail(format!(
            "{} not built (cargo build -p squashbox-cli)",
            bin.display()
        ));
        return;
    }
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/pjdfstest.sh"))
        .arg(&bin)
        .output()
        .expect("running scripts/pjdfstest.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "pjdfstest: {text}");
}
