//! `squashbox status`: active restore mounts (dir, backup id, upper dir, serving pid).

use squashbox_backup::{active_restores, paths};

use super::backup::fail;
use crate::error::CliResult;

/// Arguments of `squashbox status`.
#[derive(clap::Args)]
pub struct Args {
    /// Print a JSON array of {dir, id, upper, work, archive, pid, mountedAt}.
    #[arg(long)]
    json: bool,
}

/// Run `squashbox status`.
pub fn run(args: Args) -> CliResult {
    let state = paths::state_dir().map_err(|e| fail(e, args.json))?;
    let restores = active_restores(&state);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&restores).unwrap_or_default()
        );
        return Ok(());
    }
    if restores.is_empty() {
        println!("no active restores");
        return Ok(());
    }
    println!("{:<8}  {:<36}  {:<40}  UPPER", "PID", "ID", "DIR");
    for r in &restores {
        println!(
            "{:<8}  {:<36}  {:<40}  {}",
            r.pid,
            r.id,
            r.dir.display(),
            r.upper.display()
        );
    }
    Ok(())
}
