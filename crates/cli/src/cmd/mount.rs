//! `squashbox mount IMAGE MOUNTPOINT`: serve an image as a read-only FUSE file system.
//!
//! Without `--foreground` the command re-executes itself as a background daemon (in its own
//! session, stdin/stdout/stderr detached) and returns once the daemon reports over a pipe that
//! the mount is ready, or exits with the daemon's error. The daemon serves until the file
//! system is unmounted (`squashbox umount`) or it gets SIGINT/SIGTERM/SIGHUP, which unmount.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use squashbox_format::Archive;
use squashbox_mount::{mount, open_options_for_cache_size, MountOptions, UnmountMode};

use crate::error::{CliError, CliResult, Context};

/// Default total cache budget: 32 MiB keeps the daemon under ~80 MB RSS on a cold full read
/// of a 536 MiB tree with no measurable slowdown (64 MiB peaked at 124 MB RSS).
const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// Arguments of `squashbox mount`.
#[derive(clap::Args)]
pub struct Args {
    /// The SquashFS image.
    image: PathBuf,
    /// An existing, empty directory to mount on.
    mountpoint: PathBuf,
    /// Stay in the foreground and serve until unmounted or interrupted.
    #[arg(short, long)]
    foreground: bool,
    /// Mount options, comma separated: allow_other (let other users in), ro (always on).
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// FUSE worker threads [default: number of CPUs, 2..=8].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Total bytes for the decompressed metadata and data block caches (suffixes K, M, G).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    cache_size: Option<usize>,
    /// Append log messages (e.g. unreadable blocks) to this file; the background daemon
    /// otherwise discards them.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Internal: we are the daemon; report readiness on stdout.
    #[arg(long, hide = true)]
    daemon_child: bool,
}

/// Run `squashbox mount`.
pub fn run(args: Args) -> CliResult {
    let mut mount_options = MountOptions::default();
    for option in args.options.iter().flat_map(|o| o.split(',')) {
        match option {
            "allow_other" => mount_options.allow_other = true,
            "ro" | "" => {}
            other => {
                return Err(CliError::msg(format!(
                    "unsupported mount option '{other}' (supported: allow_other, ro)"
                )))
            }
        }
    }
    if let Some(threads) = args.threads {
        if threads == 0 {
            return Err(CliError::msg("--threads must be at least 1"));
        }
        mount_options.threads = threads;
    }
    if args.foreground {
        serve(&args, mount_options)
    } else {
        spawn_daemon(&args)
    }
}

/// Parse `123`, `64K`, `64M`, `1G` (binary multiples; optional `iB`/`B` suffix).
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 64M)"))?;
    n.checked_mul(1usize << shift)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Re-run ourselves as `mount --foreground --daemon-child ...` and wait for its verdict.
fn spawn_daemon(args: &Args) -> CliResult {
    let exe = std::env::current_exe().context("locating the squashbox executable")?;
    let image = std::path::absolute(&args.image).context(args.image.display())?;
    let mountpoint = std::path::absolute(&args.mountpoint).context(args.mountpoint.display())?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount").arg("--foreground").arg("--daemon-child");
    for o in &args.options {
        cmd.arg("-o").arg(o);
    }
    if let Some(t) = args.threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    if let Some(c) = args.cache_size {
        cmd.arg("--cache-size").arg(c.to_string());
    }
    if let Some(log) = &args.log_file {
        cmd.arg("--log-file")
            .arg(std::path::absolute(log).context(log.display())?);
    }
    cmd.arg("--").arg(&image).arg(&mountpoint);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().context("starting the mount daemon")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    if read.is_ok() && line.trim_end() == "ready" {
        return Ok(());
    }
    let status = child.wait().context("waiting for the mount daemon")?;
    match line.trim_end().strip_prefix("error ") {
        Some(message) => Err(CliError::msg(message)),
        None => Err(CliError::msg(format!(
            "mount daemon exited ({status}) before the mount was ready"
        ))),
    }
}

/// Mount and serve in this process until unmounted or signalled.
fn serve(args: &Args, options: MountOptions) -> CliResult {
    let result = serve_inner(args, options);
    if args.daemon_child {
        if let Err(e) = &result {
            // Tell the waiting parent; it prints the message and exits with failure.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "error {}", e.message().replace('\n', " "));
            let _ = out.flush();
            std::process::exit(1);
        }
    }
    result
}

fn serve_inner(args: &Args, mut options: MountOptions) -> CliResult {
    if args.daemon_child {
        // Leave the caller's session so its terminal's signals do not reach us.
        let _ = rustix::process::setsid();
    }
    logging::init(args.log_file.as_deref())?;
    // Block the termination signals before any thread starts, so every thread inherits the
    // mask and only the waiter below receives them.
    let signals = signals::block_termination()?;

    let file = File::open(&args.image).context(args.image.display())?;
    let cache = args.cache_size.unwrap_or(DEFAULT_CACHE_BYTES);
    let archive = Archive::open_with(file, open_options_for_cache_size(cache))
        .context(args.image.display())?;
    options.fs_name = Some(args.image.display().to_string());
    let handle = mount(Arc::new(archive), &args.mountpoint, options)
        .context(format!("mounting {}", args.image.display()))?;
    let mountpoint = handle.mountpoint().to_path_buf();

    if args.daemon_child {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready").context("reporting readiness")?;
        out.flush().context("reporting readiness")?;
        drop(out);
        detach_stdio(args.log_file.is_some())?;
        // Do not pin the directory we were started from.
        let _ = std::env::set_current_dir("/");
    }

    std::thread::Builder::new()
        .name("squashbox-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.wait() {
                log::info!("signal {signal}: unmounting {}", mountpoint.display());
                if let Err(e) = squashbox_mount::unmount(&mountpoint, UnmountMode::Force) {
                    log::error!("unmounting {}: {e}", mountpoint.display());
                }
            }
        })
        .context("starting the signal thread")?;

    handle
        .wait()
        .context(format!("serving {}", args.mountpoint.display()))
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

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2MB"), Ok(2 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }
}
