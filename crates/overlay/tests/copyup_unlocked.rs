//! Copy-up builds a file's copy outside the namespace lock (copyup.rs): while a large lower
//! file is being copied, lookups, creates, renames and listings elsewhere in the mount go
//! on; concurrent copy-ups of one file build one copy; a rename or unlink of the file during
//! its copy-up leaves a consistent result and no temporary copy behind.
//!
//! Ordering evidence comes from the daemon itself (it runs in this process): its debug log
//! says when a copy starts being built outside the lock and counts each copy built, and
//! publishing a copy is the rename that makes it appear in the upper directory.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use common::*;

const MIB: usize = 1 << 20;
/// Sizes of the lower files, all different: log lines are told apart by size.
const BIG: usize = 128 * MIB;
const TWIN: usize = 48 * MIB + 1;
const MOVE: usize = 40 * MIB + 2;
const GONE: usize = 32 * MIB + 3;

/// Captures the overlay's log lines (the daemon runs in the test process).
struct Capture {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("squashbox_overlay")
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            self.lines.lock().unwrap().push(r.args().to_string());
            self.changed.notify_all();
        }
    }
    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture {
            lines: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        }));
        log::set_logger(c).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Debug);
        c
    })
}

/// Number of log lines containing `needle`.
fn count(needle: &str) -> usize {
    capture()
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .count()
}

/// The daemon's last log lines, for failure messages.
fn log_tail() -> String {
    let lines = capture().lines.lock().unwrap();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Wait (bounded) until a log line contains `needle`.
fn wait_for(needle: &str) {
    let c = capture();
    let lines = c.lines.lock().unwrap();
    let (_lines, timeout) = c
        .changed
        .wait_timeout_while(lines, Duration::from_secs(120), |l| {
            !l.iter().any(|x| x.contains(needle))
        })
        .unwrap();
    assert!(!timeout.timed_out(), "no log line {needle:?}");
}

fn building(size: usize) -> String {
    format!("({size} bytes): building the copy outside the namespace lock")
}

fn built(size: usize) -> String {
    format!("copy-up of {size} bytes: copy")
}

fn tree(root: &std::path::Path) {
    for (name, size, seed) in [
        ("big", BIG, 1),
        ("twin", TWIN, 2),
        ("move", MOVE, 3),
        ("gone", GONE, 4),
    ] {
        fs::write(
            root.join(name),
            squashbox_testkit::tree::content_bytes(seed, size, false),
        )
        .unwrap();
    }
    fs::create_dir_all(root.join("other/sub")).unwrap();
    for i in 0..20 {
        fs::write(root.join(format!("other/l{i}")), format!("lower {i}")).unwrap();
    }
}

/// No temporary copy is left in the work directory.
fn assert_no_temporaries(fx: &Fixture) {
    let left: Vec<_> = fs::read_dir(fx.work.join("squashbox-work"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "temporary copies left: {left:?}");
}

#[test]
fn copy_up_runs_outside_the_namespace_lock() {
    if !can_run() {
        return;
    }
    capture();
    let fx = Fixture::new(tree);
    let lower = |name: &str| fs::read(fx.lower_src.join(name)).unwrap();

    // 1. Other namespace operations finish while a 128 MiB copy-up is in progress.
    let done = Arc::new(AtomicBool::new(false));
    let opener = {
        let (path, done) = (fx.m("big"), done.clone());
        std::thread::spawn(move || {
            let f = OpenOptions::new().write(true).open(path).unwrap();
            done.store(true, Ordering::SeqCst);
            f.write_all_at(b"opened", 0).unwrap();
        })
    };
    wait_for(&building(BIG));
    // Lookups, a create (copies the parent up), a listing, a mkdir and a rename elsewhere.
    assert_eq!(fs::read(fx.m("other/l3")).unwrap(), b"lower 3");
    assert!(fs::symlink_metadata(fx.m("other/nothing")).is_err());
    fs::write(fx.m("other/new"), b"new").unwrap();
    let names: Vec<_> = fs::read_dir(fx.m("other"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 22, "{names:?}");
    fs::create_dir(fx.m("other/sub/d")).unwrap();
    fs::rename(fx.m("other/new"), fx.m("other/sub/d/new")).unwrap();
    fs::metadata(fx.m("twin")).unwrap();
    // All of that happened before the copy was published (renamed into the upper dir),
    // so it did not wait for the copy-up.
    let published = fx.u("big").exists();
    let opened = done.load(Ordering::SeqCst);
    opener.join().unwrap();
    assert!(
        !published && !opened,
        "namespace operations waited for the copy-up (published {published}, opened {opened})"
    );
    let mut want = lower("big");
    want[..6].copy_from_slice(b"opened");
    assert!(fs::read(fx.u("big")).unwrap() == want, "big: upper copy");
    assert_eq!(count(&built(BIG)), 1);
    assert_eq!(fs::read(fx.m("other/sub/d/new")).unwrap(), b"new");

    // 2. Two writers open the same lower file at once: one copy, both writes in it.
    let second = |path: std::path::PathBuf, at: u64, what: &'static [u8]| {
        std::thread::spawn(move || {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {path:?}: {e}; daemon log:\n{}", log_tail()));
            f.write_all_at(what, at).unwrap();
        })
    };
    let a = second(fx.m("twin"), 0, b"first");
    wait_for(&building(TWIN));
    let b = second(fx.m("twin"), (TWIN - 6) as u64, b"second");
    a.join().unwrap();
    b.join().unwrap();
    let mut want = lower("twin");
    want[..5].copy_from_slice(b"first");
    want[TWIN - 6..].copy_from_slice(b"second");
    assert!(fs::read(fx.u("twin")).unwrap() == want, "twin: upper copy");
    assert!(
        fs::read(fx.m("twin")).unwrap() == want,
        "twin: through the mount"
    );
    assert_eq!(count(&built(TWIN)), 1, "two copies of one file were built");

    // 3. The file is renamed while its copy is built: the rename uses that copy, and the
    //    writer's open follows the file to its new name.
    let a = second(fx.m("move"), 0, b"writer");
    wait_for(&building(MOVE));
    fs::rename(fx.m("move"), fx.m("other/moved")).unwrap();
    a.join().unwrap();
    let mut want = lower("move");
    want[..6].copy_from_slice(b"writer");
    assert!(fs::read(fx.u("other/moved")).unwrap() == want, "moved copy");
    assert!(is_whiteout(&fx.u("move")));
    assert_eq!(count(&built(MOVE)), 1);

    // 4. The file is deleted while its copy is built: the open fails as after the unlink,
    //    the copy is thrown away.
    let opener = {
        let path = fx.m("gone");
        std::thread::spawn(move || OpenOptions::new().write(true).open(path).map(|_| ()))
    };
    wait_for(&building(GONE));
    fs::remove_file(fx.m("gone")).unwrap();
    match opener.join().unwrap() {
        Ok(()) => {}
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}"),
    }
    assert!(is_whiteout(&fx.u("gone")));
    assert!(fs::symlink_metadata(fx.m("gone")).is_err());
    assert_no_temporaries(&fx);
}
