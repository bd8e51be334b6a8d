//! Running external programs without ever hanging a test.

use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A generous default timeout for one tool run in a test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// What a command run by [`run_with_timeout`] did.
#[derive(Debug)]
pub struct TimedOutput {
    /// Exit status; `None` if it timed out (and was killed).
    pub status: Option<ExitStatus>,
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
    /// Wall time taken.
    pub elapsed: Duration,
}

impl TimedOutput {
    /// True when it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// True when it was killed for exceeding the timeout.
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// The signal that ended it, if it died by a signal (a crash: SIGSEGV, SIGABRT, ...).
    /// A timeout is not reported here.
    pub fn signal(&self) -> Option<i32> {
        self.status.and_then(|s| s.signal())
    }

    /// Standard error as (lossy) text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Standard output as (lossy) text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// A one-paragraph description for assertion messages.
    pub fn describe(&self) -> String {
        let how = match self.status {
            None => "timed out (killed)".to_string(),
            Some(s) => s.to_string(),
        };
        format!(
            "{how} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.elapsed,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

fn tail(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 4000 {
        let mut cut = s.len() - 4000;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        format!("...{}", &s[cut..])
    } else {
        s.into_owned()
    }
}

/// Run `cmd` (stdin from /dev/null, stdout and stderr captured) for at most `timeout`.
///
/// The child runs in its own process group; on timeout that group (the child and anything it
/// started) is killed with SIGKILL by its id and reaped, so nothing is left behind and nothing
/// else is touched.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> io::Result<TimedOutput> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    let mut readers = Vec::new();
    for (idx, pipe) in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .enumerate()
    {
        let Some(mut pipe) = pipe else { continue };
        let tx = tx.clone();
        readers.push(thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((idx, buf));
        }));
    }
    drop(tx);
    let deadline = start + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // SAFETY: kill has no memory preconditions; -pid names the process group created
            // for this child only (process_group(0) above), which has not been reaped yet.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    // Pipes close when the process group is gone; a daemonized grandchild that escaped the
    // group could hold them open, so bound the wait.
    let grace = Instant::now() + Duration::from_secs(10);
    for _ in 0..readers.len() {
        let left = grace.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((0, b)) => stdout = b,
            Ok((_, b)) => stderr = b,
            Err(_) => break,
        }
    }
    Ok(TimedOutput {
        status,
        stdout,
        stderr,
        elapsed: start.elapsed(),
    })
}

/// Build `img` from directory `src` with the real `mksquashfs` (`-noappend -no-progress` plus
/// `args`), panicking with its output unless it succeeds within 10 minutes.
#[track_caller]
pub fn mksquashfs(src: &Path, img: &Path, args: &[&str]) {
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(src)
        .arg(img)
        .args(["-noappend", "-no-progress"])
        .args(args);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("cannot run mksquashfs: {e}"));
    assert!(
        out.success(),
        "mksquashfs {} {} {args:?} failed: {}",
        src.display(),
        img.display(),
        out.describe()
    );
}

/// The paths in `img` as listed by the real `unsquashfs -lc` (one per line, prefixed
/// `squashfs-root`), for cross-checking listings.
#[track_caller]
pub fn unsquashfs_list(img: &Path) -> Vec<String> {
    let mut cmd = Command::new("unsquashfs");
    cmd.arg("-lc").arg(img);
    let out = run_with_timeout(&mut cmd, DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot run unsquashfs: {e}"));
    assert!(
        out.success(),
        "unsquashfs -lc {} failed: {}",
        img.display(),
        out.describe()
    );
    out.stdout_text().lines().map(str::to_string).collect()
}

/// The `squashbox` binary built in this target directory (`$SQUASHBOX_BIN` overrides), found
/// next to the running test executable's `deps/` directory. Cargo builds it for
/// `cargo test --workspace`; `scripts/test.sh` builds all binaries first. `None` if absent.
pub fn squashbox_bin() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("SQUASHBOX_BIN") {
        return Some(p.into());
    }
    let exe = std::env::current_exe().ok()?;
    let mut dir = exe.parent()?;
    if dir.ends_with("deps") {
        dir = dir.parent()?;
    }
    let candidate = dir.join("squashbox");
    candidate.is_file().then_some(candidate)
}

/// [`squashbox_bin`], or a skip (a failure under `CI=true`) when it is not built.
#[track_caller]
pub fn require_squashbox_bin() -> Option<std::path::PathBuf> {
    match squashbox_bin() {
        Some(p) => Some(p),
        None => {
            crate::skip::skip_or_fail(
                "the squashbox binary is not built (cargo build -p squashbox-cli)",
            );
            None
        }
    }
}

/// The PID of a live process (not exited, not a zombie) whose command line holds every one of
/// `args` as a whole argument: how tests find a daemon they started through a command that
/// detached it (e.g. by its mountpoint and `--daemon-child`).
pub fn find_process(args: &[&str]) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let have: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.iter().all(|a| have.contains(&a.as_bytes())) && !process_gone(pid) {
            return Some(pid);
        }
    }
    None
}

/// True once `pid` has exited (gone, or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Wait until `pid` has exited; panics if it is still running after `timeout`.
#[track_caller]
pub fn wait_process_gone(pid: u32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !process_gone(pid) {
        assert!(Instant::now() < deadline, "process {pid} still running");
        thread::sleep(Duration::from_millis(20));
    }
}
