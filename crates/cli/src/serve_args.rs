//! The serving flags `squashbox mount` and `squashbox overlay` share: foreground or daemon,
//! `-o` mount options, FUSE threads, cache size and log file, plus the hidden marker the
//! background daemon is re-executed with.
//!
//! Each command flattens [`ServeArgs`] into its own `Args` and words the help of the flags
//! whose defaults differ (threads, cache, accepted `-o` options) with
//! `#[command(mut_arg(...))]`, so its `--help` describes its own behaviour.

use std::path::PathBuf;
use std::process::Command;

use crate::error::{CliError, CliResult, Context};

/// Flags for serving a FUSE file system (see the module docs).
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Stay in the foreground and serve until unmounted or interrupted.
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount options, comma separated.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// FUSE worker threads.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Bytes of decompressed-block cache (suffixes K, M, G).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub cache_size: Option<usize>,
    /// Append log messages to this file; the background daemon otherwise discards them.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Internal: we are the daemon; report readiness on stdout.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
}

/// What `-o` and `--threads` ask for, checked.
#[derive(Debug, PartialEq, Eq)]
pub struct ServeSettings {
    /// `-o allow_other`: let other users in.
    pub allow_other: bool,
    /// `--threads`, at least 1 when given.
    pub threads: Option<usize>,
}

impl ServeArgs {
    /// Check `-o` and `--threads`. `-o` takes comma-separated lists of `allow_other`,
    /// `no_op` (accepted for compatibility, without effect) and empty items; anything else is
    /// an error naming the `what` option and listing `supported`. `--threads 0` is refused
    /// (a FUSE session needs a worker).
    pub fn settings(&self, no_op: &str, what: &str, supported: &str) -> CliResult<ServeSettings> {
        let mut allow_other = false;
        for option in self.options.iter().flat_map(|o| o.split(',')) {
            match option {
                "allow_other" => allow_other = true,
                "" => {}
                o if o == no_op => {}
                other => {
                    return Err(CliError::msg(format!(
                        "unsupported {what} option '{other}' (supported: {supported})"
                    )))
                }
            }
        }
        if self.threads == Some(0) {
            return Err(CliError::msg("--threads must be at least 1"));
        }
        Ok(ServeSettings {
            allow_other,
            threads: self.threads,
        })
    }

    /// Append to the daemon's command line `--foreground --daemon-child` and every serving
    /// flag given, the log file made absolute (the daemon may not share our directory).
    pub fn forward_to_daemon(&self, cmd: &mut Command) -> CliResult {
        cmd.arg("--foreground").arg("--daemon-child");
        for o in &self.options {
            cmd.arg("-o").arg(o);
        }
        if let Some(t) = self.threads {
            cmd.arg("--threads").arg(t.to_string());
        }
        if let Some(c) = self.cache_size {
            cmd.arg("--cache-size").arg(c.to_string());
        }
        if let Some(log) = &self.log_file {
            cmd.arg("--log-file")
                .arg(std::path::absolute(log).context(log.display())?);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        serve: ServeArgs,
    }

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

    #[test]
    fn flags_round_trip_to_the_daemon_command_line() {
        let given = [
            "-o",
            "allow_other",
            "-o",
            "ro,",
            "--threads",
            "3",
            "--cache-size",
            "1M",
            "--log-file",
            "/var/log/sb.log",
        ];
        let t = T::parse_from(std::iter::once("t").chain(given));
        assert_eq!(
            t.serve.settings("ro", "mount", "allow_other, ro").unwrap(),
            ServeSettings {
                allow_other: true,
                threads: Some(3)
            }
        );
        let mut cmd = Command::new("squashbox");
        t.serve.forward_to_daemon(&mut cmd).unwrap();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        // The same flags in the same order, the size in bytes, plus the daemon markers.
        let mut want = vec!["--foreground", "--daemon-child"];
        want.extend(given.map(|a| if a == "1M" { "1048576" } else { a }));
        assert_eq!(args, want);
        let daemon = T::parse_from(std::iter::once("t").chain(args.iter().copied()));
        assert!(daemon.serve.foreground && daemon.serve.daemon_child);
        assert_eq!(daemon.serve.cache_size, Some(1 << 20));
    }

    #[test]
    fn unknown_options_and_zero_threads_are_refused() {
        let t = T::parse_from(["t", "-o", "ro,,allow_other"]);
        assert_eq!(
            t.serve.settings("ro", "mount", "allow_other, ro").unwrap(),
            ServeSettings {
                allow_other: true,
                threads: None
            }
        );
        let err = t
            .serve
            .settings("rw", "overlay", "allow_other")
            .unwrap_err();
        assert_eq!(
            err.message(),
            "unsupported overlay option 'ro' (supported: allow_other)"
        );
        let t = T::parse_from(["t", "--threads", "0"]);
        assert_eq!(
            t.serve.settings("ro", "mount", "").unwrap_err().message(),
            "--threads must be at least 1"
        );
    }
}
