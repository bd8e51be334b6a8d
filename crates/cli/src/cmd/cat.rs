//! `squashbox cat IMAGE PATH`: stream one regular file to stdout.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use squashbox_extract::names::escape;
use squashbox_format::FileType;

use super::common::{open_image, path_bytes};
use crate::error::{CliError, CliResult, Context};

/// Arguments of `squashbox cat`.
#[derive(clap::Args)]
pub struct Args {
    /// The SquashFS image.
    image: PathBuf,
    /// Path of a regular file inside the image (symlinks are not followed).
    path: OsString,
}

/// Run `squashbox cat`.
pub fn run(args: Args) -> CliResult {
    let archive = open_image(&args.image)?;
    let path = path_bytes(&args.path);
    let shown = escape(path);
    let inode = archive.lookup_path(path).context(&shown)?;
    if inode.file_type != FileType::Regular {
        return Err(CliError::msg(format!("{shown}: not a regular file")));
    }
    let size = inode.size();
    let mut buf = vec![0u8; archive.superblock().block_size as usize];
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut offset = 0u64;
    while offset < size {
        let n = archive.read_at(&inode, offset, &mut buf).context(&shown)?;
        if n == 0 {
            return Err(CliError::msg(format!(
                "{shown}: file data ends at {offset} of {size} bytes"
            )));
        }
        out.write_all(&buf[..n])?;
        offset += n as u64;
    }
    out.flush()?;
    Ok(())
}
