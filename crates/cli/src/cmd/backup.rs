//! `squashbox backup DIR`: checkpoint a directory into the backup store and print its handle.
//!
//! Also home of the helpers the other backup subcommands share (store opening, `--json`
//! error output).

use std::path::PathBuf;

use squashbox_backup::{create_backup, validate::parse_ttl, BackupError, BackupOptions, Store};

use crate::error::{CliError, CliResult};

/// Arguments of `squashbox backup`.
#[derive(clap::Args)]
pub struct Args {
    /// The directory to back up.
    dir: PathBuf,
    /// A name for the backup (at most 256 characters).
    #[arg(long)]
    name: Option<String>,
    /// Time to live in whole seconds [default: 259200, three days].
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<String>,
    /// Leave out what git would ignore (.gitignore files, .git/info/exclude).
    #[arg(long)]
    gitignore: bool,
    /// Leave out paths matching PATTERN (gitignore syntax); repeatable.
    #[arg(long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// Compressor: zstd (default), gzip, xz, lz4, lzo.
    #[arg(long = "comp", value_name = "NAME")]
    comp: Option<String>,
    /// Compression level (compressor specific; zstd defaults to 1 for backups: fast
    /// checkpoints, still about 20% smaller than lz4).
    #[arg(long)]
    level: Option<i32>,
    /// Do not keep the archive in this machine's cache. By default a backup to a remote
    /// (s3://) store keeps it there, so restoring it on this machine needs no download; use
    /// this on machines that create backups but never restore them.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    store: StoreArgs,
    /// Print the handle as JSON (errors as {"code","message","context"}).
    #[arg(long)]
    json: bool,
}

/// `--store URL`, shared by the backup subcommands.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// Backup store: file:///DIR, s3://BUCKET/PREFIX (AWS_* env; AWS_ENDPOINT_URL for
    /// MinIO/R2/SeaweedFS) [default: $SQUASHBOX_STORE, else ~/.local/share/squashbox/store].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
}

impl StoreArgs {
    /// Open the chosen store.
    pub fn open(&self) -> Result<Store, BackupError> {
        Store::open_or_default(self.store.as_deref())
    }
}

/// Report a backup error: as JSON on stdout when `json`, and as the usual one-line message.
pub fn fail(e: BackupError, json: bool) -> CliError {
    if json {
        println!("{}", e.to_json());
    }
    CliError::msg(e.to_string())
}

/// Make a CLI path absolute (the library requires absolute paths; `..` is still refused).
pub fn absolute(path: &std::path::Path) -> Result<PathBuf, BackupError> {
    std::path::absolute(path).map_err(|e| {
        BackupError::invalid(format!("cannot resolve {}: {e}", path.display())).with_dir(path)
    })
}

/// Run `squashbox backup`.
pub fn run(args: Args) -> CliResult {
    let json = args.json;
    let handle = create(args).map_err(|e| fail(e, json))?;
    if json {
        println!("{}", handle.to_json());
    } else {
        println!("{}", handle.id);
        eprintln!(
            "backed up {} as {}{}",
            handle.dir.display(),
            handle.id,
            handle
                .name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn create(args: Args) -> Result<squashbox_backup::DirectoryBackup, BackupError> {
    let mut options = BackupOptions::new(absolute(&args.dir)?);
    options.name = args.name;
    if let Some(ttl) = &args.ttl {
        options.ttl = parse_ttl(ttl)?;
    }
    options.gitignore = args.gitignore;
    options.excludes = args.excludes;
    if let Some(name) = &args.comp {
        options.compression = squashbox_backup::Compressor::from_name(name).ok_or_else(|| {
            BackupError::invalid(format!(
                "unknown compressor {name:?} (use zstd, gzip, xz, lz4 or lzo)"
            ))
        })?;
    }
    options.level = args.level;
    options.seed_cache = !args.no_cache;
    options.store = Some(args.store.open()?);
    create_backup(options)
}
