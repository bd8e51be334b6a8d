//! `squashbox prune`: delete backups by rule (expired, beyond the newest N per name, older
//! than a duration), and the orphan data of creates that never finished. A backup selected
//! by any given rule is deleted.

use squashbox_backup::validate::parse_duration;
use squashbox_backup::{prune_backups, PruneOptions, DEFAULT_ORPHAN_MIN_AGE_SECS};

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
    /// Only clean up orphan data (every prune does that too).
    #[arg(long)]
    orphans: bool,
    /// Orphan data (data.sqsh without meta.json: a crashed create, or one still uploading) is
    /// deleted once at least this old; keep it above the longest create [default: 24h].
    #[arg(long, value_name = "DURATION")]
    orphan_age: Option<String>,
    /// Show what would be deleted without deleting.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    store: StoreArgs,
    /// Print {"deleted": [backups], "orphans": [{id, key, sizeBytes, lastModified, ageSecs}]}.
    #[arg(long)]
    json: bool,
}

/// Run `squashbox prune`.
pub fn run(args: Args) -> CliResult {
    let json = args.json;
    let duration = |d: &Option<String>| d.as_deref().map(parse_duration).transpose();
    let older_than = duration(&args.older_than).map_err(|e| fail(e, json))?;
    let orphan_age = duration(&args.orphan_age).map_err(|e| fail(e, json))?;
    let store = args.store.open().map_err(|e| fail(e, json))?;
    let options = PruneOptions {
        expired: args.expired,
        keep_last: args.keep_last,
        older_than,
        orphans: args.orphans,
        orphan_min_age: orphan_age.unwrap_or(DEFAULT_ORPHAN_MIN_AGE_SECS),
        dry_run: args.dry_run,
        ..Default::default()
    };
    let report = prune_backups(&store, &options).map_err(|e| fail(e, json))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for b in &report.deleted {
            println!(
                "{verb} {} {} {}",
                b.id,
                b.name.as_deref().unwrap_or("-"),
                b.created_at
            );
        }
        for o in &report.orphans {
            println!(
                "{verb} orphan {} ({} bytes, {} s old)",
                o.key, o.size_bytes, o.age_secs
            );
        }
        println!(
            "{verb} {} backup(s), {} orphan(s)",
            report.deleted.len(),
            report.orphans.len()
        );
    }
    Ok(())
}
