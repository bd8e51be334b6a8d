//! `squashbox`: the command-line tool.
//!
//! # Adding a subcommand
//! 1. Create `src/cmd/<name>.rs` with `pub struct Args` (`#[derive(clap::Args)]`, doc comments
//!    become the help text) and `pub fn run(args: Args) -> CliResult`.
//! 2. Add `pub mod <name>;` to `src/cmd/mod.rs`.
//! 3. Add one variant to [`Command`] and one arm to the `match` in [`main`].
//!
//! # Error convention
//! A command returns `Err(CliError)`; `main` prints exactly one line `squashbox: <message>` to
//! stderr and exits with status 1 (clap usage errors: status 2). Any `std::error::Error`
//! converts with `?`; add context with [`error::Context::context`]. Make the message
//! self-contained: name the file or entry concerned. A broken pipe on stdout (`| head`) ends
//! the program quietly with status 0.

mod cmd;
mod daemon;
mod error;
mod serve_args;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::{CliError, CliResult};

/// squashbox: a SquashFS toolkit (read, extract, build, mount, overlay, backup).
#[derive(Parser)]
#[command(name = "squashbox", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands: one variant each, with its arguments in `cmd::<name>::Args`.
#[derive(Subcommand)]
enum Command {
    /// Show the superblock, compressor, flags, counts and table layout of an image.
    Info(cmd::info::Args),
    /// List directory entries in an image.
    Ls(cmd::ls::Args),
    /// Write a regular file from an image to standard output.
    Cat(cmd::cat::Args),
    /// Extract an image (or a subtree of it) into a directory, securely and in parallel.
    Extract(cmd::extract::Args),
    /// Mount an image read-only with FUSE (in the background unless --foreground).
    Mount(cmd::mount::Args),
    /// Mount images copy-on-write: changes go to an upper directory (kernel overlayfs layout).
    Overlay(cmd::overlay::Args),
    /// Unmount a mounted image (also after its daemon died).
    Umount(cmd::umount::Args),
    /// Build an image from a directory (parallel, deterministic mksquashfs replacement).
    Mkfs(cmd::mkfs::Args),
    /// Back up a directory into the backup store and print its handle.
    Backup(cmd::backup::Args),
    /// Restore a backup onto a directory (copy-on-write mount, or --copy to extract).
    Restore(cmd::restore::Args),
    /// List the backups in the store.
    List(cmd::list::Args),
    /// Delete a backup from the store (and its archive from this machine's cache).
    Delete(cmd::delete::Args),
    /// Delete backups by rule (--expired, --keep-last N, --older-than DURATION) and orphan
    /// data of creates that never finished (--orphans, --orphan-age).
    Prune(cmd::prune::Args),
    /// Check a stored backup against its recorded size and SHA-256.
    Verify(cmd::verify::Args),
    /// List active restore mounts.
    Status(cmd::status::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return error::usage_error(e),
    };
    let result = match cli.command {
        Command::Info(args) => cmd::info::run(args),
        Command::Ls(args) => cmd::ls::run(args),
        Command::Cat(args) => cmd::cat::run(args),
        Command::Extract(args) => cmd::extract::run(args),
        Command::Mount(args) => cmd::mount::run(args),
        Command::Overlay(args) => cmd::overlay::run(args),
        Command::Umount(args) => cmd::umount::run(args),
        Command::Mkfs(args) => cmd::mkfs::run(args),
        Command::Backup(args) => cmd::backup::run(args),
        Command::Restore(args) => cmd::restore::run(args),
        Command::List(args) => cmd::list::run(args),
        Command::Delete(args) => cmd::delete::run(args),
        Command::Prune(args) => cmd::prune::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Status(args) => cmd::status::run(args),
    };
    error::finish(result)
}
