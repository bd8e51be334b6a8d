//! `squashbox verify ID`: re-hash the stored archive and compare it with its meta.

use squashbox_backup::verify_backup;

use super::backup::{fail, StoreArgs};
use crate::error::{CliError, CliResult};

/// Arguments of `squashbox verify`.
#[derive(clap::Args)]
pub struct Args {
    /// The backup id.
    id: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `squashbox verify`; exits 1 when the archive does not match.
pub fn run(args: Args) -> CliResult {
    let store = args.store.open().map_err(|e| fail(e, args.json))?;
    let report = verify_backup(&store, &args.id).map_err(|e| fail(e, args.json))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else if report.ok {
        println!(
            "{}: ok ({} bytes, sha256 {})",
            report.id, report.expected_size, report.expected_sha256
        );
    }
    match report.problem {
        None => Ok(()),
        Some(p) => Err(CliError::msg(format!(
            "backup {} is damaged: {p}",
            report.id
        ))),
    }
}
