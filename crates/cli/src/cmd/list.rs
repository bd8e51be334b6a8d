//! `squashbox list`: the backups in the store, oldest first.

use squashbox_backup::{list_backups, Clock};

use super::backup::{fail, StoreArgs};
use crate::error::CliResult;

/// Arguments of `squashbox list`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Print a JSON array of {id, dir, name, sizeBytes, createdAt, expiresAt, expired}.
    #[arg(long)]
    json: bool,
}

/// Run `squashbox list`.
pub fn run(args: Args) -> CliResult {
    let store = args.store.open().map_err(|e| fail(e, args.json))?;
    let backups = list_backups(&store, &Clock::system()).map_err(|e| fail(e, args.json))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&backups).unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "{:<36}  {:<20}  {:>12}  {:<20}  {:<20}  DIR",
        "ID", "NAME", "SIZE", "CREATED", "EXPIRES"
    );
    for b in &backups {
        println!(
            "{:<36}  {:<20}  {:>12}  {:<20}  {:<20}  {}",
            b.id,
            b.name.as_deref().unwrap_or("-"),
            b.size_bytes,
            b.created_at,
            if b.expired {
                format!("{} (expired)", b.expires_at)
            } else {
                b.expires_at.clone()
            },
            b.dir.display()
        );
    }
    Ok(())
}
