//! `squashbox restore ID|HANDLE.json`: bring a directory back to a backup's state.
//!
//! Default (overlay) mode: the archive is mounted as the read-only lower layer of a
//! copy-on-write overlay on the directory. The mount must outlive this command, so it is
//! served by a background copy of ourselves (`restore --foreground --daemon-child`, in its
//! own session) that reports over a pipe once mounted; it serves until the directory is
//! unmounted (`squashbox umount DIR`, or another restore onto it), or until SIGTERM, SIGINT or
//! SIGHUP, which unmount it (lazily if files are open; the changes are then kept). `--copy`
//! extracts real files instead and needs no server.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use std::sync::atomic::{AtomicBool, Ordering};

use squashbox_backup::{
    paths, restore_backup, restore_by_id, serve_until_unmounted_then, AfterUnmount, BackupError,
    DirectoryBackup, RestoreMode, RestoreOptions, RestoreResult,
};

use super::backup::{absolute, fail, StoreArgs};
use crate::daemon;
use crate::error::{CliError, CliResult, Context};

/// Arguments of `squashbox restore`.
#[derive(clap::Args)]
pub struct Args {
    /// Backup id, or a file holding the JSON handle printed by `backup --json`.
    backup: String,
    /// Restore into DIR instead of the directory the backup was made from.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Extract real files (replacing the directory's content) instead of mounting.
    #[arg(long)]
    copy: bool,
    /// Overlay mode: never sync the overlay's upper dir (like the kernel overlayfs' -o
    /// volatile): fsync in the restored directory returns at once, but changes made there
    /// may be partly lost in a machine crash (the backup itself is never at risk).
    #[arg(long, conflicts_with = "copy")]
    volatile: bool,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the result as JSON (errors as {"code","message","context"}).
    #[arg(long)]
    json: bool,
    /// Overlay mode: serve the mount in this process until it is unmounted.
    #[arg(long)]
    foreground: bool,
    /// Internal: we are the background server started by `restore`.
    #[arg(long, hide = true)]
    daemon_child: bool,
}

/// Run `squashbox restore`.
pub fn run(args: Args) -> CliResult {
    let json = args.json;
    if args.copy {
        let r = restore(&args).map_err(|e| fail(e, json))?;
        print_result(&r, json);
        return Ok(());
    }
    if !args.foreground {
        return spawn_server(&args);
    }
    // The overlay server. Block the termination signals before any thread starts (the
    // store's I/O runtime, the FUSE workers), so that only our signal thread receives them.
    let signals = match daemon::prepare(args.daemon_child, None) {
        Ok(s) => s,
        Err(e) => {
            return report(
                &args,
                Err(BackupError::restore_failed(format!(
                    "starting the restore server: {}",
                    e.message()
                ))),
            )
            .map(|_| ())
        }
    };
    let result = report(&args, restore(&args))?;
    if args.daemon_child {
        // Let go of the parent's pipe and of the directory we were started from.
        daemon::detach_stdio(false)?;
        let _ = std::env::set_current_dir("/");
    }
    let state = paths::state_dir().map_err(|e| fail(e, false))?;
    daemon::unmount_on_signal(signals, result.dir.clone(), |dir| {
        SIGNALLED.store(true, Ordering::SeqCst);
        daemon::unmount_gracefully(dir);
    })?;
    let kept = serve_until_unmounted_then(&result.dir, &state, || {
        if SIGNALLED.load(Ordering::SeqCst) {
            AfterUnmount::Keep
        } else {
            AfterUnmount::Discard
        }
    })
    .map_err(|e| fail(e, false))?;
    if let Some(upper) = kept {
        log::warn!(
            "stopped by a signal: {} unmounted; the changes made since the restore are kept in \
             {}",
            result.dir.display(),
            upper.display()
        );
    }
    Ok(())
}

/// Set once a termination signal has started the unmount: the changes are then kept.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Hand the restore's outcome to whoever waits for it: the parent `squashbox restore` over
/// the stdout pipe (one line, `ok JSON` or `error JSON`; a daemon child exits on failure), or
/// the user in the foreground.
fn report(args: &Args, result: Result<RestoreResult, BackupError>) -> CliResult<RestoreResult> {
    if !args.daemon_child {
        let r = result.map_err(|e| fail(e, args.json))?;
        print_result(&r, args.json);
        return Ok(r);
    }
    let line = match &result {
        Ok(r) => format!("ok {}", serde_json::to_string(r).unwrap_or_default()),
        Err(e) => format!("error {}", e.to_json()),
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    drop(out);
    match result {
        Ok(r) => Ok(r),
        Err(_) => std::process::exit(1),
    }
}

fn print_result(r: &RestoreResult, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
    } else {
        println!("restored {} into {}", r.id, r.dir.display());
    }
}

fn restore(args: &Args) -> Result<RestoreResult, BackupError> {
    let options = RestoreOptions {
        dir: args.dir.as_deref().map(absolute).transpose()?,
        mode: if args.copy {
            RestoreMode::Copy
        } else {
            RestoreMode::Overlay
        },
        store: Some(args.store.open()?),
        volatile: args.volatile,
        ..Default::default()
    };
    let result = if squashbox_backup::parse_id(&args.backup).is_ok() {
        restore_by_id(&args.backup, options)?
    } else {
        let path = std::path::Path::new(&args.backup);
        let text = std::fs::read_to_string(path).map_err(|e| {
            BackupError::invalid(format!(
                "{:?} is neither a backup id (UUID) nor a readable handle file: {e}",
                args.backup
            ))
        })?;
        let handle = DirectoryBackup::from_json(&text)?;
        restore_backup(&handle, options)?
    };
    Ok(result)
}

/// Re-run ourselves as the background server and relay its verdict.
fn spawn_server(args: &Args) -> CliResult {
    let exe = std::env::current_exe().context("locating the squashbox executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("restore")
        .arg("--foreground")
        .arg("--daemon-child")
        .arg("--json");
    if let Some(dir) = &args.dir {
        cmd.arg("--dir")
            .arg(std::path::absolute(dir).context(dir.display())?);
    }
    if let Some(store) = &args.store.store {
        cmd.arg("--store").arg(store);
    }
    if args.volatile {
        cmd.arg("--volatile");
    }
    // A handle file path must survive the server's chdir.
    let backup = if squashbox_backup::parse_id(&args.backup).is_ok() {
        args.backup.clone()
    } else {
        std::path::absolute(&args.backup)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| args.backup.clone())
    };
    cmd.arg("--").arg(backup);
    // The server starts its own session (daemon::prepare), so the caller's terminal signals
    // do not reach it.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().context("starting the restore server")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    let line = line.trim_end();
    if let Some(ok) = line.strip_prefix("ok ") {
        let r: RestoreResult = serde_json::from_str(ok).context("reading the server's reply")?;
        print_result(&r, args.json);
        return Ok(());
    }
    let status = child.wait().context("waiting for the restore server")?;
    if let Some(err) = line.strip_prefix("error ") {
        let v: serde_json::Value = serde_json::from_str(err).unwrap_or_default();
        if args.json {
            println!("{err}");
        }
        let code = v["code"].as_str().unwrap_or("BACKUP_RESTORE_FAILED");
        let message = v["message"].as_str().unwrap_or(err);
        return Err(CliError::msg(format!("{code}: {message}")));
    }
    Err(CliError::msg(format!(
        "BACKUP_RESTORE_FAILED: the restore server exited ({status}) without a result"
    )))
}
