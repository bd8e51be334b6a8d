//! `squashbox prune`: delete backups by rule (expired, beyond the newest N per name, older
//! than a duration). A backup selected by any given rule is deleted.

use squashbox_backup::validate::parse_duration;
use squashbox_backup::{prune_backups, PruneOptions};

use super::backup::{fail, StoreArgs};
use crate::error::CliResult;

/// Arguments of `squashbox prune`.
#[derive(clap::Args)]
pub struct Args {
    /// Delete expired backups.
    #[arg(long)]
    expired: bool,
    /// Keep only the newest N backups of each name (unnamed backups are one group).
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// Delete backups older than DURATION (e.g. 90s, 15m, 12h, 7d, 2w).
    #[arg(long, value_name = "DURATION")]
    older_than: Option<String>,
    /// Show what would be deleted without deleting.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the deleted backups as a JSON array.
    #[arg(long)]
    json: bool,
}

/// Run `squashbox prune`.
pub fn run(args: Args) -> CliResult {
    let json = args.json;
    let older_than = args
        .older_than
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(|e| fail(e, json))?;
    let store = args.store.open().map_err(|e| fail(e, json))?;
    let options = PruneOptions {
        expired: args.expired,
        keep_last: args.keep_last,
        older_than,
        dry_run: args.dry_run,
        ..Default::default()
    };
    let deleted = prune_backups(&store, &options).map_err(|e| fail(e, json))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&deleted).unwrap_or_default()
        );
    } else {
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for b in &deleted {
            println!(
                "{verb} {} {} {}",
                b.id,
                b.name.as_deref().unwrap_or("-"),
                b.created_at
            );
        }
        println!("{verb} {} backup(s)", deleted.len());
    }
    Ok(())
}
