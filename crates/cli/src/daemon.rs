//! Running a FUSE server as a background daemon, shared by `squashbox mount`,
//! `squashbox overlay` and the restore server of `squashbox restore`.
//!
//! The command re-executes itself with `--foreground --daemon-child`; the child mounts, prints
//! `ready` (or `error MESSAGE`) on its stdout pipe, detaches from the parent's terminal and
//! serves until the file system is unmounted or it gets SIGINT/SIGTERM/SIGHUP.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{CliError, CliResult, Context};

/// Start `cmd` (this executable re-run with `--foreground --daemon-child`) and wait for the
/// line its child prints once the mount is ready or has failed. `what` names the daemon in
/// errors, e.g. "mount daemon".
pub(crate) fn spawn_and_wait_ready(mut cmd: Command, what: &str) -> CliResult {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().context(format!("starting the {what}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    if read.is_ok() && line.trim_end() == "ready" {
        return Ok(());
    }
    let status = child.wait().context(format!("waiting for the {what}"))?;
    match line.trim_end().strip_prefix("error ") {
        Some(message) => Err(CliError::msg(message)),
        None => Err(CliError::msg(format!(
            "{what} exited ({status}) before the mount was ready"
        ))),
    }
}

/// In a daemon child, hand a failure to the waiting parent (which prints it and exits with
/// failure) and exit; in the foreground, return the result as is.
pub(crate) fn report_to_parent(daemon_child: bool, result: CliResult) -> CliResult {
    if daemon_child {
        if let Err(e) = &result {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "error {}", e.message().replace('\n', " "));
            let _ = out.flush();
            std::process::exit(1);
        }
    }
    result
}

/// Daemon prologue, before any thread starts: leave the caller's session (so its terminal's
/// signals do not reach us), install the logger, and block the termination signals so every
/// later thread inherits the mask and only the waiter of [`unmount_on_signal`] receives them.
pub(crate) fn prepare(daemon_child: bool, log_file: Option<&Path>) -> CliResult<signals::Blocked> {
    if daemon_child {
        let _ = rustix::process::setsid();
    }
    logging::init(log_file)?;
    signals::block_termination()
}

/// Tell the parent the mount is ready, then let go of its pipe and terminal, and of the
/// directory we were started from.
pub(crate) fn announce_ready(daemon_child: bool, log_to_file: bool) -> CliResult {
    if !daemon_child {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").context("reporting readiness")?;
    out.flush().context("reporting readiness")?;
    drop(out);
    detach_stdio(log_to_file)?;
    let _ = std::env::set_current_dir("/");
    Ok(())
}

/// On SIGINT/SIGTERM/SIGHUP, call `unmount(mountpoint)` from a dedicated thread; the serving
/// loop then returns because the file system is gone.
pub(crate) fn unmount_on_signal(
    signals: signals::Blocked,
    mountpoint: PathBuf,
    unmount: fn(&Path),
) -> CliResult {
    std::thread::Builder::new()
        .name("squashbox-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.wait() {
                log::info!("signal {signal}: unmounting {}", mountpoint.display());
                unmount(&mountpoint);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// The unmount for a signal on a writable mount: a plain unmount, so in-flight writes finish;
/// if files are still open, a lazy one, which detaches the mount now while the daemon keeps
/// serving those files until they are closed (then its serving loop returns).
pub(crate) fn unmount_gracefully(mountpoint: &Path) {
    use squashbox_mount::UnmountMode;
    if squashbox_mount::unmount(mountpoint, UnmountMode::Normal).is_err() {
        if let Err(e) = squashbox_mount::unmount(mountpoint, UnmountMode::Lazy) {
            log::error!("unmounting {}: {e}", mountpoint.display());
        }
    }
}

/// Point stdout (and stderr unless logging goes to a file) at /dev/null, so the daemon holds
/// no pipe or terminal of its parent open.
pub(crate) fn detach_stdio(keep_stderr: bool) -> CliResult {
    use std::os::fd::AsRawFd;
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    let targets: &[libc::c_int] = if keep_stderr { &[1] } else { &[1, 2] };
    for &fd in targets {
        // SAFETY: both descriptors are open for the duration of the call; dup2 atomically
        // replaces `fd` (a standard stream we own) with a copy of /dev/null.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(CliError::msg(format!(
                "redirecting fd {fd}: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

pub(crate) mod signals {
    //! Synchronous handling of SIGINT/SIGTERM/SIGHUP with `sigwait`.

    use crate::error::{CliError, CliResult};

    /// The blocked termination signals.
    pub struct Blocked {
        set: libc::sigset_t,
    }

    // SAFETY: a sigset_t is plain data; it is only read by `sigwait`.
    unsafe impl Send for Blocked {}

    /// Block SIGINT, SIGTERM and SIGHUP in the calling thread (and threads it starts later).
    pub fn block_termination() -> CliResult<Blocked> {
        // SAFETY: `set` is a properly sized sigset_t initialised by sigemptyset before use;
        // pthread_sigmask only reads it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, sig);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(CliError::msg(format!(
                    "blocking signals: {}",
                    std::io::Error::from_raw_os_error(rc)
                )));
            }
            Ok(Blocked { set })
        }
    }

    impl Blocked {
        /// Wait for one of the signals; returns its number.
        pub fn wait(&self) -> Option<i32> {
            let mut sig: libc::c_int = 0;
            // SAFETY: `self.set` is an initialised sigset_t and `sig` a valid out pointer.
            let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
            (rc == 0).then_some(sig)
        }
    }
}

pub(crate) mod logging {
    //! A minimal logger: `squashbox: <level>: <message>` lines on stderr or in a file.
    //! `SQUASHBOX_LOG=error|warn|info|debug` picks the level (default warn).

    use std::fs::File;
    use std::io::Write;
    use std::path::Path;

    use parking_lot::Mutex;

    use crate::error::{CliResult, Context};

    struct Logger {
        out: Mutex<Box<dyn Write + Send>>,
        level: log::LevelFilter,
    }

    impl log::Log for Logger {
        fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
            // fuser warns about every request type it does not implement itself; only its
            // errors matter to a user.
            let level = if meta.target().starts_with("fuser") {
                self.level.min(log::LevelFilter::Error)
            } else {
                self.level
            };
            meta.level() <= level
        }

        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                let mut out = self.out.lock();
                let _ = writeln!(
                    out,
                    "squashbox: {}: {}",
                    record.level().as_str().to_lowercase(),
                    record.args()
                );
                let _ = out.flush();
            }
        }

        fn flush(&self) {
            let _ = self.out.lock().flush();
        }
    }

    /// Install the logger (once per process).
    pub fn init(file: Option<&Path>) -> CliResult {
        let level = match std::env::var("SQUASHBOX_LOG").as_deref() {
            Ok("error") => log::LevelFilter::Error,
            Ok("info") => log::LevelFilter::Info,
            Ok("debug") => log::LevelFilter::Debug,
            Ok("trace") => log::LevelFilter::Trace,
            _ => log::LevelFilter::Warn,
        };
        let out: Box<dyn Write + Send> = match file {
            Some(path) => Box::new(
                File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .context(path.display())?,
            ),
            None => Box::new(std::io::stderr()),
        };
        let logger = Logger {
            out: Mutex::new(out),
            level,
        };
        if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
            log::set_max_level(level);
        }
        Ok(())
    }
}
