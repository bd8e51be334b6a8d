//! The backup subcommands end to end: backup, restore (copy and background overlay server),
//! list, verify, delete, prune (rules and orphan data), status, signals to the restore server,
//! JSON errors, unreadable files as an unprivileged user, and the S3 store (when the test S3
//! server is configured; see scripts/s3-server.sh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use squashbox_testkit::{is_mounted, run_with_timeout, TimedOutput};

struct Ctx {
    tmp: tempfile::TempDir,
    store: String,
}

impl Ctx {
    fn new() -> Ctx {
        let tmp = tempfile::Builder::new()
            .prefix("sqb-backup-cli-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(tmp.path().join("tmp")).unwrap();
        let store = format!("file://{}/store", tmp.path().display());
        Ctx { tmp, store }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_squashbox"));
        c.args(args)
            .env("SQUASHBOX_STORE", &self.store)
            .env("SQUASHBOX_STATE_DIR", self.path("state"))
            .env("SQUASHBOX_CACHE_DIR", self.path("cache"))
            .env("TMPDIR", self.path("tmp"));
        c
    }

    fn run(&self, args: &[&str]) -> TimedOutput {
        run_with_timeout(&mut self.cmd(args), Duration::from_secs(120)).unwrap()
    }

    fn ok_json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(out.success(), "{args:?}: {}", out.describe());
        serde_json::from_str(&out.stdout_text())
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", out.stdout_text()))
    }

    fn err_json(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert!(!out.success(), "{args:?} should fail: {}", out.describe());
        assert_eq!(out.stderr_text().lines().count(), 1, "{}", out.describe());
        serde_json::from_str(out.stdout_text().trim())
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", out.describe()))
    }
}

fn make_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub/deep")).unwrap();
    std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(dir.join("sub/b.txt"), "beta\n").unwrap();
    std::fs::write(dir.join("sub/deep/c.bin"), vec![7u8; 200_000]).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn backup_list_verify_restore_copy_delete() {
    let ctx = Ctx::new();
    let dir = ctx.path("proj");
    make_tree(&dir);
    let handle = ctx.ok_json(&["backup", s(&dir), "--name", "first", "--json"]);
    let id = handle["id"].as_str().unwrap().to_string();
    assert_eq!(handle["dir"], s(&dir));
    assert_eq!(handle["name"], "first");

    let list = ctx.ok_json(&["list", "--json"]);
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], id.as_str());
    assert_eq!(entries[0]["expired"], false);
    assert!(entries[0]["sizeBytes"].as_u64().unwrap() > 0);

    let verify = ctx.ok_json(&["verify", &id, "--json"]);
    assert_eq!(verify["ok"], true);

    std::fs::remove_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.txt"), "changed").unwrap();
    // An unreadable cache bound is refused by name, before anything changes.
    let out = run_with_timeout(
        ctx.cmd(&["restore", &id, "--copy"])
            .env("SQUASHBOX_CACHE_MAX", "lots"),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr_text().contains("INVALID_BACKUP_CONFIG")
            && out.stderr_text().contains("SQUASHBOX_CACHE_MAX"),
        "{}",
        out.describe()
    );
    assert!(!dir.join("sub").exists());
    let r = ctx.ok_json(&["restore", &id, "--copy", "--json"]);
    assert_eq!(r["success"], true);
    assert_eq!(r["dir"], s(&dir));
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(
        std::fs::read(dir.join("sub/deep/c.bin")).unwrap().len(),
        200_000
    );

    // Restore from a saved handle file into another directory.
    let handle_file = ctx.path("handle.json");
    std::fs::write(&handle_file, handle.to_string()).unwrap();
    let other = ctx.path("other");
    ctx.ok_json(&[
        "restore",
        s(&handle_file),
        "--dir",
        s(&other),
        "--copy",
        "--json",
    ]);
    assert_eq!(
        std::fs::read_to_string(other.join("sub/b.txt")).unwrap(),
        "beta\n"
    );

    let d = ctx.ok_json(&["delete", &id, "--json"]);
    assert_eq!(d["deleted"], id.as_str());
    assert_eq!(ctx.ok_json(&["list", "--json"]), serde_json::json!([]));
    let e = ctx.err_json(&["restore", &id, "--copy", "--json"]);
    assert_eq!(e["code"], "BACKUP_NOT_FOUND");
    assert_eq!(e["context"]["backupId"], id.as_str());
    // Temp files never outlive a command.
    assert_eq!(std::fs::read_dir(ctx.path("tmp")).unwrap().count(), 0);
}

#[test]
fn json_errors_carry_code_message_context() {
    let ctx = Ctx::new();
    let dir = ctx.path("proj");
    make_tree(&dir);
    let e = ctx.err_json(&["backup", s(&dir), "--ttl", "1.5", "--json"]);
    assert_eq!(e["code"], "INVALID_BACKUP_CONFIG");
    assert!(e["message"].as_str().unwrap().contains("ttl"));
    let e = ctx.err_json(&["backup", s(&ctx.path("missing")), "--json"]);
    assert_eq!(e["code"], "INVALID_BACKUP_CONFIG");
    assert_eq!(e["context"]["dir"], s(&ctx.path("missing")));
    let e = ctx.err_json(&["restore", "not-a-uuid-or-file", "--copy", "--json"]);
    assert_eq!(e["code"], "INVALID_BACKUP_CONFIG");

    // A TTL inside the 60 s buffer is expired at once.
    let h = ctx.ok_json(&["backup", s(&dir), "--ttl", "30", "--json"]);
    let id = h["id"].as_str().unwrap();
    let e = ctx.err_json(&["restore", id, "--copy", "--json"]);
    assert_eq!(e["code"], "BACKUP_EXPIRED");
    assert!(e["context"]["expiredAt"].as_str().unwrap().ends_with('Z'));
    let pruned = ctx.ok_json(&["prune", "--expired", "--json"]);
    assert_eq!(pruned["deleted"].as_array().unwrap().len(), 1);
    assert_eq!(pruned["orphans"], serde_json::json!([]));
    let e = ctx.err_json(&["prune", "--json"]);
    assert_eq!(e["code"], "INVALID_BACKUP_CONFIG");
    // Without --json: one line on stderr, code first.
    let out = ctx.run(&["delete", "00000000-0000-4000-8000-000000000000"]);
    assert!(!out.success());
    assert!(
        out.stderr_text()
            .starts_with("squashbox: BACKUP_NOT_FOUND: "),
        "{}",
        out.describe()
    );
}

#[test]
fn unreadable_files_are_all_listed_with_the_fix() {
    if !squashbox_testkit::require_root() || !squashbox_testkit::require_tool("setpriv") {
        return;
    }
    let ctx = Ctx::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ctx.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = ctx.path("proj");
    make_tree(&dir);
    std::fs::write(dir.join("secret1"), "s").unwrap();
    std::fs::write(dir.join("sub/secret2"), "s").unwrap();
    for p in ["secret1", "sub/secret2"] {
        std::fs::set_permissions(dir.join(p), std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    for d in ["state", "cache", "tmp", "store"] {
        std::fs::create_dir_all(ctx.path(d)).unwrap();
        let _ = Command::new("chown")
            .args(["65534:65534", s(&ctx.path(d))])
            .status();
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_squashbox"))
        .args(["backup", s(&dir), "--json"])
        .env("HOME", ctx.path("tmp"))
        .env("SQUASHBOX_STORE", &ctx.store)
        .env("SQUASHBOX_STATE_DIR", ctx.path("state"))
        .env("SQUASHBOX_CACHE_DIR", ctx.path("cache"))
        .env("TMPDIR", ctx.path("tmp"));
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120)).unwrap();
    assert!(!out.success(), "{}", out.describe());
    let e: Value = serde_json::from_str(out.stdout_text().trim()).unwrap();
    assert_eq!(e["code"], "BACKUP_CREATE_FAILED", "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("secret1") && msg.contains("secret2"), "{msg}");
    assert!(msg.contains("chmod") || msg.contains("exclude"), "{msg}");
    // Nothing was stored and no temp files remain.
    assert_eq!(ctx.ok_json(&["list", "--json"]), serde_json::json!([]));
    assert_eq!(std::fs::read_dir(ctx.path("tmp")).unwrap().count(), 0);
}

/// Ends any restore server on `dir` on every path out of a test.
struct Unmount<'a>(&'a Ctx, PathBuf);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        if is_mounted(&self.1) {
            let _ = self.0.run(&["umount", s(&self.1)]);
        }
    }
}

fn status(ctx: &Ctx) -> Vec<Value> {
    ctx.ok_json(&["status", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

fn wait_gone(pid: u64) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn overlay_restore_is_served_in_the_background() {
    if !squashbox_testkit::require_fuse() {
        return;
    }
    let ctx = Ctx::new();
    let dir = ctx.path("proj");
    make_tree(&dir);
    let h = ctx.ok_json(&["backup", s(&dir), "--json"]);
    let id = h["id"].as_str().unwrap().to_string();
    std::fs::remove_dir_all(dir.join("sub")).unwrap();
    let _guard = Unmount(&ctx, dir.clone());

    let r = ctx.ok_json(&["restore", &id, "--json"]);
    assert_eq!(r["success"], true);
    // The command has exited; the mount stays, served by a background process.
    assert!(is_mounted(&dir));
    assert_eq!(
        std::fs::read_to_string(dir.join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    let st = status(&ctx);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0]["dir"], s(&dir));
    assert_eq!(st[0]["id"], id.as_str());
    let first_pid = st[0]["pid"].as_u64().unwrap();
    let upper = PathBuf::from(st[0]["upper"].as_str().unwrap());
    std::fs::write(dir.join("scratch"), "x").unwrap();
    assert!(upper.join("scratch").exists());

    // Restoring again replaces the previous server and discards the change.
    ctx.ok_json(&["restore", &id, "--json"]);
    assert!(
        wait_gone(first_pid),
        "previous restore server still running"
    );
    assert!(!dir.join("scratch").exists());
    let st = status(&ctx);
    assert_eq!(st.len(), 1);
    let second_pid = st[0]["pid"].as_u64().unwrap();
    assert_ne!(second_pid, first_pid);

    // `squashbox umount` ends it; the server cleans up and exits.
    let out = ctx.run(&["umount", s(&dir)]);
    assert!(out.success(), "{}", out.describe());
    assert!(
        wait_gone(second_pid),
        "restore server did not exit after umount"
    );
    assert!(!is_mounted(&dir));
    assert!(status(&ctx).is_empty());
    assert!(!dir.join("sub").exists(), "the dir underneath is as it was");
}

#[test]
fn s3_store_through_the_cli() {
    let Ok(bucket) = std::env::var("SQUASHBOX_TEST_S3_BUCKET") else {
        if squashbox_testkit::in_ci() {
            panic!("CI=true but the S3 test server is not configured (scripts/s3-server.sh)");
        }
        eprintln!("SKIPPED: SQUASHBOX_TEST_S3_BUCKET not set");
        return;
    };
    let mut ctx = Ctx::new();
    ctx.store = format!("s3://{bucket}/cli-{}", std::process::id());
    let dir = ctx.path("proj");
    make_tree(&dir);
    let h = ctx.ok_json(&["backup", s(&dir), "--name", "s3", "--json"]);
    let id = h["id"].as_str().unwrap().to_string();
    // The archive was kept in this machine's cache: the restore needs no download.
    let cached = ctx.path("cache/archives").join(format!("{id}.sqsh"));
    assert!(cached.is_file(), "backup did not seed the cache");
    std::fs::remove_file(dir.join("a.txt")).unwrap();
    ctx.ok_json(&["restore", &id, "--copy", "--json"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert_eq!(ctx.ok_json(&["verify", &id, "--json"])["ok"], true);
    // --no-cache: nothing kept.
    let h2 = ctx.ok_json(&["backup", s(&dir), "--no-cache", "--json"]);
    let id2 = h2["id"].as_str().unwrap().to_string();
    assert!(!ctx
        .path("cache/archives")
        .join(format!("{id2}.sqsh"))
        .exists());
    // delete drops the cache entry too.
    ctx.ok_json(&["delete", &id, "--json"]);
    assert!(!cached.exists(), "delete left the cached archive");
    ctx.ok_json(&["delete", &id2, "--json"]);
    assert_eq!(ctx.ok_json(&["list", "--json"]), serde_json::json!([]));
}

#[test]
fn restore_recovers_from_a_killed_restore_server() {
    if !squashbox_testkit::require_fuse() {
        return;
    }
    let ctx = Ctx::new();
    let dir = ctx.path("proj");
    make_tree(&dir);
    let h = ctx.ok_json(&["backup", s(&dir), "--json"]);
    let id = h["id"].as_str().unwrap().to_string();
    let _guard = Unmount(&ctx, dir.clone());
    ctx.ok_json(&["restore", &id, "--json"]);
    let pid = status(&ctx)[0]["pid"].as_u64().unwrap();
    // Kill the server we started: its FUSE mount is left dead.
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(wait_gone(pid));
    assert!(
        status(&ctx).is_empty(),
        "a dead server is not an active restore"
    );
    // A new restore detaches the dead mount and mounts afresh.
    ctx.ok_json(&["restore", &id, "--json"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "alpha\n"
    );
    let st = status(&ctx);
    assert_eq!(st.len(), 1);
    assert_ne!(st[0]["pid"].as_u64().unwrap(), pid);
    let out = ctx.run(&["umount", s(&dir)]);
    assert!(out.success(), "{}", out.describe());
}

#[test]
fn prune_deletes_orphan_data_past_the_safety_age() {
    let ctx = Ctx::new();
    let dir = ctx.path("proj");
    make_tree(&dir);
    let h = ctx.ok_json(&["backup", s(&dir), "--json"]);
    let id = h["id"].as_str().unwrap().to_string();
    // A create that crashed after uploading its data: data.sqsh, no meta.json.
    let orphan_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let orphan = ctx.path(&format!("store/backups/{orphan_id}/data.sqsh"));
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::copy(ctx.path(&format!("store/backups/{id}/data.sqsh")), &orphan).unwrap();

    // Fresh orphans are left alone by default (it could be a create still uploading).
    let r = ctx.ok_json(&["prune", "--orphans", "--json"]);
    assert_eq!(r["orphans"], serde_json::json!([]), "{r}");
    assert!(orphan.exists());
    let r = ctx.ok_json(&[
        "prune",
        "--orphans",
        "--orphan-age",
        "0",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(r["orphans"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["orphans"][0]["id"], orphan_id);
    assert!(orphan.exists());
    let out = ctx.run(&["prune", "--orphans", "--orphan-age", "0s"]);
    assert!(out.success(), "{}", out.describe());
    assert!(
        out.stdout_text()
            .contains("deleted 0 backup(s), 1 orphan(s)"),
        "{}",
        out.describe()
    );
    assert!(!orphan.exists());
    // The committed backup is untouched.
    let list = ctx.ok_json(&["list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(ctx.ok_json(&["verify", &id, "--json"])["ok"], true);
    let e = ctx.err_json(&["prune", "--orphan-age", "1x", "--orphans", "--json"]);
    assert_eq!(e["code"], "INVALID_BACKUP_CONFIG");
}

/// Wait (bounded) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(signal: &str, pid: u64) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Kills (SIGKILL) and reaps a foreground restore server still running at the end of a test.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn signals_unmount_the_restore_server_and_keep_its_changes() {
    if !squashbox_testkit::require_fuse() {
        return;
    }
    let ctx = Ctx::new();
    let dir = ctx.path("proj");
    make_tree(&dir);
    let h = ctx.ok_json(&["backup", s(&dir), "--json"]);
    let id = h["id"].as_str().unwrap().to_string();
    // What is underneath the mount must never change.
    std::fs::write(dir.join("a.txt"), "underneath\n").unwrap();
    let _guard = Unmount(&ctx, dir.clone());

    // SIGTERM to the background server while a file is open in the mount: the plain unmount
    // is refused (busy), so it detaches lazily and serves the open file until it is closed.
    ctx.ok_json(&["restore", &id, "--json"]);
    let st = status(&ctx);
    assert_eq!(st.len(), 1);
    let pid = st[0]["pid"].as_u64().unwrap();
    let upper = PathBuf::from(st[0]["upper"].as_str().unwrap());
    std::fs::write(dir.join("scratch"), "kept\n").unwrap();
    let mut held = std::fs::File::create(dir.join("held")).unwrap();
    use std::io::Write;
    held.write_all(&[5u8; 100_000]).unwrap();
    send("TERM", pid);
    wait_until("the mount detached", || !is_mounted(&dir));
    // Still served through the open descriptor.
    held.write_all(&[6u8; 100_000]).unwrap();
    held.sync_all().unwrap();
    drop(held);
    assert!(wait_gone(pid), "restore server did not exit after SIGTERM");
    assert!(!is_mounted(&dir));
    assert!(status(&ctx).is_empty(), "{:?}", status(&ctx));
    assert_eq!(
        std::fs::read_to_string(upper.join("scratch")).unwrap(),
        "kept\n"
    );
    let held = std::fs::read(upper.join("held")).unwrap();
    assert_eq!(held.len(), 200_000);
    assert!(held[..100_000].iter().all(|&b| b == 5) && held[100_000..].iter().all(|&b| b == 6));
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "underneath\n"
    );
    assert!(!dir.join("scratch").exists());

    // SIGHUP, nothing open: a plain unmount.
    ctx.ok_json(&["restore", &id, "--json"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "alpha\n"
    );
    assert!(
        !dir.join("scratch").exists(),
        "a new restore starts from the backup"
    );
    let pid = status(&ctx)[0]["pid"].as_u64().unwrap();
    send("HUP", pid);
    assert!(wait_gone(pid), "restore server did not exit after SIGHUP");
    assert!(!is_mounted(&dir));
    assert!(status(&ctx).is_empty());

    // SIGINT (Ctrl-C) to a foreground server: exit status 0.
    let mut cmd = ctx.cmd(&["restore", &id, "--foreground", "--json"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = Child(cmd.spawn().unwrap());
    let pid = u64::from(child.0.id());
    wait_until("the foreground server mounted", || {
        status(&ctx).iter().any(|r| r["pid"].as_u64() == Some(pid))
    });
    assert_eq!(
        std::fs::read_to_string(dir.join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    send("INT", pid);
    let mut exit = None;
    wait_until("the foreground server exited", || {
        exit = child.0.try_wait().unwrap();
        exit.is_some()
    });
    assert!(exit.unwrap().success(), "exit status {exit:?}");
    assert!(!is_mounted(&dir));
    assert!(status(&ctx).is_empty());

    // And a restore after all that still works, and ends normally.
    ctx.ok_json(&["restore", &id, "--json"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    let pid = status(&ctx)[0]["pid"].as_u64().unwrap();
    let out = ctx.run(&["umount", s(&dir)]);
    assert!(out.success(), "{}", out.describe());
    assert!(wait_gone(pid));
    assert_eq!(
        std::fs::read_to_string(dir.join("a.txt")).unwrap(),
        "underneath\n"
    );
}
