//! `squashbox delete ID`: remove a backup (meta first, then data).

use squashbox_backup::delete_backup;

use super::backup::{fail, StoreArgs};
use crate::error::CliResult;

/// Arguments of `squashbox delete`.
#[derive(clap::Args)]
pub struct Args {
    /// The backup id.
    id: String,
    #[command(flatten)]
    store: StoreArgs,
    /// Print {"deleted": ID} (errors as {"code","message","context"}).
    #[arg(long)]
    json: bool,
}

/// Run `squashbox delete`.
pub fn run(args: Args) -> CliResult {
    let store = args.store.open().map_err(|e| fail(e, args.json))?;
    delete_backup(&store, &args.id).map_err(|e| fail(e, args.json))?;
    if args.json {
        println!("{}", serde_json::json!({ "deleted": args.id }));
    } else {
        println!("deleted {}", args.id);
    }
    Ok(())
}
