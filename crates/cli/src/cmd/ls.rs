//! `squashbox ls IMAGE [PATH] [-l] [-R]`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use squashbox_extract::names::escape;
use squashbox_format::{Archive, FileType, Inode, InodeRef};

use super::common::{format_utc, mode_string, open_image, path_bytes};
use crate::error::{CliError, CliResult, Context};

/// Arguments of `squashbox ls`.
#[derive(clap::Args)]
pub struct Args {
    /// The SquashFS image.
    image: PathBuf,
    /// Path inside the image (default: the root). Symlinks are not followed.
    path: Option<OsString>,
    /// Long format: mode, links, uid, gid, size (or major, minor), mtime (UTC), name.
    #[arg(short = 'l')]
    long: bool,
    /// List subdirectories recursively.
    #[arg(short = 'R')]
    recursive: bool,
}

/// Run `squashbox ls`.
pub fn run(args: Args) -> CliResult {
    let archive = open_image(&args.image)?;
    let raw = args.path.as_deref().map(path_bytes).unwrap_or(b"/");
    let shown = escape(raw);
    let inode = archive.lookup_path(raw).context(&shown)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !inode.is_dir() {
        print_entry(&archive, &mut out, args.long, raw, &inode)?;
        out.flush()?;
        return Ok(());
    }
    if !args.recursive {
        list_dir(&archive, &mut out, args.long, &inode, &shown)?;
        out.flush()?;
        return Ok(());
    }
    // Depth-first, pre-order like `ls -R`; subdirectories are queued per level.
    let mut visited: HashSet<InodeRef> = HashSet::new();
    let mut pending: Vec<(Vec<u8>, Inode)> = vec![(raw.to_vec(), inode)];
    let mut first = true;
    while let Some((path, dir)) = pending.pop() {
        if !visited.insert(dir.inode_ref) {
            return Err(CliError::msg(format!(
                "{}: directory reached twice (directory loop in image)",
                escape(&path)
            )));
        }
        if !first {
            writeln!(out)?;
        }
        first = false;
        writeln!(out, "{}:", escape(&path))?;
        let subdirs = list_dir(&archive, &mut out, args.long, &dir, &escape(&path))?;
        for (name, sub) in subdirs.into_iter().rev() {
            let mut child = path.clone();
            if !child.ends_with(b"/") {
                child.push(b'/');
            }
            child.extend_from_slice(&name);
            pending.push((child, sub));
        }
    }
    out.flush()?;
    Ok(())
}

/// Print the entries of `dir`; returns its subdirectories (for `-R`).
fn list_dir(
    archive: &Archive,
    out: &mut impl Write,
    long: bool,
    dir: &Inode,
    shown: &str,
) -> CliResult<Vec<(Vec<u8>, Inode)>> {
    let mut subdirs = Vec::new();
    for entry in archive.read_dir(dir).context(shown)? {
        let entry = entry.context(shown)?;
        let needs_inode = long || entry.file_type == FileType::Directory;
        if !needs_inode {
            writeln!(out, "{}", escape(&entry.name))?;
            continue;
        }
        let inode = archive
            .entry_inode(dir, &entry)
            .context(format_args!("{shown}/{}", escape(&entry.name)))?;
        print_entry(archive, out, long, &entry.name, &inode)?;
        if inode.is_dir() {
            subdirs.push((entry.name, inode));
        }
    }
    Ok(subdirs)
}

/// Print one entry, short or long.
fn print_entry(
    archive: &Archive,
    out: &mut impl Write,
    long: bool,
    name: &[u8],
    inode: &Inode,
) -> CliResult {
    let name = escape(name);
    if !long {
        writeln!(out, "{name}")?;
        return Ok(());
    }
    let size = match inode.file_type {
        FileType::CharDevice | FileType::BlockDevice => {
            let rdev = inode.rdev();
            let major = (rdev & 0xfff00) >> 8;
            let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
            format!("{major}, {minor}")
        }
        _ => inode.size().to_string(),
    };
    let mut line = format!(
        "{} {:>3} {:>5} {:>5} {:>10} {} {}",
        mode_string(inode.file_type, inode.permissions),
        inode.nlink,
        inode.uid,
        inode.gid,
        size,
        format_utc(inode.mtime),
        name
    );
    if inode.file_type == FileType::Symlink {
        let target = archive.read_link(inode).context(&name)?;
        line.push_str(" -> ");
        line.push_str(&escape(&target));
    }
    writeln!(out, "{line}")?;
    Ok(())
}
