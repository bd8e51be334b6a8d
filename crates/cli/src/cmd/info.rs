//! `squashbox info IMAGE [--json]`: superblock, compressor, flags, counts, table layout.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Serialize;
use squashbox_format::layout::{flags, Superblock, NO_TABLE};
use squashbox_format::{CompressorOptions, ReadAt};

use super::common::{format_utc, open_image};
use crate::error::{CliResult, Context};

/// Arguments of `squashbox info`.
#[derive(clap::Args)]
pub struct Args {
    /// The SquashFS image.
    image: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The report, printed as text or JSON.
#[derive(Serialize)]
struct Info {
    image: String,
    image_size: u64,
    version: String,
    compressor: &'static str,
    compressor_options: Option<serde_json::Value>,
    block_size: u32,
    block_log: u16,
    flags: u16,
    flag_names: Vec<&'static str>,
    modification_time: u32,
    modification_time_utc: String,
    inode_count: u32,
    fragment_count: u32,
    id_count: u16,
    xattr_id_count: Option<u32>,
    root_inode_ref: u64,
    bytes_used: u64,
    /// The superblock's raw table pointers (`None` = absent).
    table_starts: TableStarts,
    tables: Vec<Table>,
}

/// Raw table start fields of the superblock (index locations for lookup tables).
#[derive(Serialize)]
struct TableStarts {
    inode_table: u64,
    directory_table: u64,
    fragment_table: Option<u64>,
    export_table: Option<u64>,
    id_table: u64,
    xattr_id_table: Option<u64>,
}

/// Where one table lives. `size` covers its metadata blocks and, for lookup tables, the index
/// after them; `None` when the layout could not be determined.
#[derive(Serialize)]
struct Table {
    name: &'static str,
    start: u64,
    size: Option<u64>,
}

const FLAG_NAMES: [(u16, &str); 12] = [
    (flags::UNCOMPRESSED_INODES, "uncompressed-inodes"),
    (flags::UNCOMPRESSED_DATA, "uncompressed-data"),
    (flags::CHECK, "check"),
    (flags::UNCOMPRESSED_FRAGMENTS, "uncompressed-fragments"),
    (flags::NO_FRAGMENTS, "no-fragments"),
    (flags::ALWAYS_FRAGMENTS, "always-fragments"),
    (flags::DUPLICATES, "duplicates-removed"),
    (flags::EXPORTABLE, "exportable"),
    (flags::UNCOMPRESSED_XATTRS, "uncompressed-xattrs"),
    (flags::NO_XATTRS, "no-xattrs"),
    (flags::COMPRESSOR_OPTIONS, "compressor-options"),
    (flags::UNCOMPRESSED_IDS, "uncompressed-ids"),
];

/// Run `squashbox info`.
pub fn run(args: Args) -> CliResult {
    let archive = open_image(&args.image)?;
    let file = File::open(&args.image).context(args.image.display())?;
    let sb = archive.superblock().clone();
    let info = Info {
        image: args.image.display().to_string(),
        image_size: file.len().context(args.image.display())?,
        version: format!("{}.{}", sb.version_major, sb.version_minor),
        compressor: sb.compressor.name(),
        compressor_options: archive.compressor_options().map(options_json),
        block_size: sb.block_size,
        block_log: sb.block_log,
        flags: sb.flags,
        flag_names: FLAG_NAMES
            .iter()
            .filter(|(bit, _)| sb.flags & bit != 0)
            .map(|(_, name)| *name)
            .collect(),
        modification_time: sb.modification_time,
        modification_time_utc: format_utc(sb.modification_time),
        inode_count: sb.inode_count,
        fragment_count: sb.fragment_entry_count,
        id_count: sb.id_count,
        xattr_id_count: xattr_id_count(&file, &sb),
        root_inode_ref: sb.root_inode_ref,
        bytes_used: sb.bytes_used,
        table_starts: TableStarts {
            inode_table: sb.inode_table_start,
            directory_table: sb.directory_table_start,
            fragment_table: present(sb.fragment_table_start),
            export_table: present(sb.export_table_start),
            id_table: sb.id_table_start,
            xattr_id_table: present(sb.xattr_id_table_start),
        },
        tables: tables(&file, &sb),
    };
    if args.json {
        let mut text = serde_json::to_string_pretty(&info).context("encoding JSON")?;
        text.push('\n');
        print_all(&text)
    } else {
        print_all(&render_text(&info, &args.image))
    }
}

fn present(start: u64) -> Option<u64> {
    (start != NO_TABLE).then_some(start)
}

fn print_all(text: &str) -> CliResult {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn render_text(info: &Info, image: &Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Image:              {}", image.display());
    let _ = writeln!(s, "Image size:         {} bytes", info.image_size);
    let _ = writeln!(s, "Version:            {}", info.version);
    let _ = writeln!(s, "Compressor:         {}", info.compressor);
    if let Some(opts) = &info.compressor_options {
        let _ = writeln!(s, "Compressor options: {opts}");
    }
    let _ = writeln!(
        s,
        "Block size:         {} (log2 {})",
        info.block_size, info.block_log
    );
    let _ = writeln!(
        s,
        "Flags:              0x{:04x} {}",
        info.flags,
        info.flag_names.join(" ")
    );
    let _ = writeln!(
        s,
        "Modification time:  {} ({} UTC)",
        info.modification_time, info.modification_time_utc
    );
    let _ = writeln!(s, "Inodes:             {}", info.inode_count);
    let _ = writeln!(s, "Fragments:          {}", info.fragment_count);
    let _ = writeln!(s, "Ids:                {}", info.id_count);
    match info.xattr_id_count {
        Some(n) => {
            let _ = writeln!(s, "Xattr ids:          {n}");
        }
        None => {
            let _ = writeln!(s, "Xattr ids:          none");
        }
    }
    let _ = writeln!(s, "Root inode ref:     0x{:x}", info.root_inode_ref);
    let _ = writeln!(s, "Bytes used:         {}", info.bytes_used);
    let _ = writeln!(s, "Tables:");
    for t in &info.tables {
        let size = t.size.map_or_else(|| "?".to_string(), |n| n.to_string());
        let _ = writeln!(
            s,
            "  {:<10} start {:>12}  size {:>10}",
            t.name, t.start, size
        );
    }
    s
}

fn options_json(options: &CompressorOptions) -> serde_json::Value {
    use serde_json::json;
    match options {
        CompressorOptions::Gzip {
            level,
            window_bits,
            strategies,
        } => json!({"level": level, "window_bits": window_bits, "strategies": strategies}),
        CompressorOptions::Xz {
            dictionary_size,
            filters,
        } => json!({"dictionary_size": dictionary_size, "filters": filters}),
        CompressorOptions::Lz4 { version, flags } => json!({"version": version, "flags": flags}),
        CompressorOptions::Zstd { level } => json!({"level": level}),
        CompressorOptions::Lzo { algorithm, level } => {
            json!({"algorithm": algorithm, "level": level})
        }
    }
}

fn read_u64(file: &File, offset: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    file.read_exact_at(offset, &mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

fn read_u32(file: &File, offset: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    file.read_exact_at(offset, &mut b).ok()?;
    Some(u32::from_le_bytes(b))
}

fn xattr_id_count(file: &File, sb: &Superblock) -> Option<u32> {
    if sb.xattr_id_table_start == NO_TABLE {
        return None;
    }
    read_u32(file, sb.xattr_id_table_start.checked_add(8)?)
}

/// Index bytes of a lookup table with `entries` entries of `entry_size` bytes: one u64 per
/// 8 KiB metadata block.
fn index_bytes(entries: u64, entry_size: u64) -> u64 {
    (entries * entry_size).div_ceil(8192) * 8
}

/// Compute each table's extent. Lookup tables (fragment, export, id) consist of metadata blocks
/// followed by an index whose first pointer gives the blocks' start; the xattr table starts at
/// the key/value area named in its header.
fn tables(file: &File, sb: &Superblock) -> Vec<Table> {
    struct Lookup {
        name: &'static str,
        index_start: u64,
        index_len: u64,
        data_start: Option<u64>,
    }
    let mut lookups: Vec<Lookup> = Vec::new();
    let mut add = |name, index_start: u64, index_len: u64, first_ptr: Option<u64>| {
        if index_start != NO_TABLE && index_start < sb.bytes_used {
            lookups.push(Lookup {
                name,
                index_start,
                index_len,
                data_start: first_ptr,
            });
        }
    };
    if sb.fragment_entry_count > 0 {
        add(
            "fragment",
            sb.fragment_table_start,
            index_bytes(u64::from(sb.fragment_entry_count), 16),
            read_u64(file, sb.fragment_table_start),
        );
    }
    if sb.has_flag(flags::EXPORTABLE) {
        add(
            "export",
            sb.export_table_start,
            index_bytes(u64::from(sb.inode_count), 8),
            read_u64(file, sb.export_table_start),
        );
    }
    add(
        "id",
        sb.id_table_start,
        index_bytes(u64::from(sb.id_count), 4),
        read_u64(file, sb.id_table_start),
    );
    let xattr = xattr_id_count(file, sb).and_then(|count| {
        let kv_start = read_u64(file, sb.xattr_id_table_start)?;
        Some((
            kv_start,
            sb.xattr_id_table_start
                .saturating_add(16)
                .saturating_add(index_bytes(u64::from(count), 16)),
        ))
    });

    let valid = |start: u64, end: u64| (start <= end && end <= sb.bytes_used).then(|| end - start);
    let mut out = Vec::new();
    out.push(Table {
        name: "inode",
        start: sb.inode_table_start,
        size: valid(sb.inode_table_start, sb.directory_table_start),
    });
    let directory_end = lookups
        .first()
        .and_then(|l| l.data_start)
        .or(xattr.map(|(kv, _)| kv))
        .unwrap_or(sb.bytes_used);
    out.push(Table {
        name: "directory",
        start: sb.directory_table_start,
        size: valid(sb.directory_table_start, directory_end),
    });
    for l in &lookups {
        let start = l.data_start.unwrap_or(l.index_start);
        out.push(Table {
            name: l.name,
            start,
            size: l
                .data_start
                .and_then(|s| valid(s, l.index_start.saturating_add(l.index_len))),
        });
    }
    if let Some((kv_start, end)) = xattr {
        out.push(Table {
            name: "xattr",
            start: kv_start,
            size: valid(kv_start, end),
        });
    }
    out
}
