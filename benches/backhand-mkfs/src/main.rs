//! `backhand-mkfs SOURCE IMAGE COMP LEVEL BLOCK_SIZE`: pack a directory with backhand's
//! `FilesystemWriter`, as close to `squashbox mkfs` / `mksquashfs` options as backhand allows.
//!
//! backhand has no directory packer of its own, so this walks the tree (sorted, no symlink
//! following) and pushes every entry with its mode, uid, gid and mtime. What it cannot store:
//! xattrs (no writer support) and hard links (each name becomes its own file); sockets are
//! kept. Regular files are pushed by path, so backhand opens each one only while writing.

use std::fs::{self, File};
use std::io::BufWriter;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use backhand::v4::compressor::Compressor;
use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader};

fn header(meta: &fs::Metadata) -> NodeHeader {
    NodeHeader::new(
        (meta.mode() & 0o7777) as u16,
        meta.uid(),
        meta.gid(),
        meta.mtime().clamp(0, i64::from(u32::MAX)) as u32,
    )
}

fn push_tree(
    fs_writer: &mut FilesystemWriter<'_, '_, '_>,
    source: &Path,
    rel: &Path,
) -> Result<(), String> {
    let dir = source.join(rel);
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .map(|e| e.map(|e| PathBuf::from(e.file_name())))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    names.sort();
    for name in names {
        let rel_path = rel.join(&name);
        let path = source.join(&rel_path);
        let meta = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let h = header(&meta);
        let ty = meta.file_type();
        let result = if ty.is_dir() {
            fs_writer.push_dir(&rel_path, h)
        } else if ty.is_file() {
            fs_writer.push_file_from_path(path.clone(), &rel_path, h)
        } else if ty.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            fs_writer.push_symlink(target, &rel_path, h)
        } else if ty.is_char_device() {
            fs_writer.push_char_device(meta.rdev() as u32, &rel_path, h)
        } else if ty.is_block_device() {
            fs_writer.push_block_device(meta.rdev() as u32, &rel_path, h)
        } else if ty.is_fifo() {
            fs_writer.push_fifo(&rel_path, h)
        } else {
            fs_writer.push_socket(&rel_path, h)
        };
        result.map_err(|e| format!("{}: {e}", rel_path.display()))?;
        if ty.is_dir() {
            push_tree(fs_writer, source, &rel_path)?;
        }
    }
    Ok(())
}

fn run(args: &[String]) -> Result<(), String> {
    let [source, image, comp, level, block] = args else {
        return Err("usage: backhand-mkfs SOURCE IMAGE zstd|gzip|xz|lz4 LEVEL BLOCK_SIZE".into());
    };
    let level: u32 = level.parse().map_err(|e| format!("level: {e}"))?;
    let block: u32 = block.parse().map_err(|e| format!("block size: {e}"))?;
    let compressor = match comp.as_str() {
        "zstd" => FilesystemCompressor::new(
            Compressor::Zstd,
            Some(backhand::v4::compressor::CompressionOptions::Zstd(
                backhand::v4::compressor::Zstd {
                    compression_level: level,
                },
            )),
        ),
        "gzip" => FilesystemCompressor::new(
            Compressor::Gzip,
            Some(backhand::v4::compressor::CompressionOptions::Gzip(
                backhand::v4::compressor::Gzip {
                    compression_level: level,
                    window_size: 15,
                    strategies: 0,
                },
            )),
        ),
        "lz4" => FilesystemCompressor::new(
            Compressor::Lz4,
            Some(backhand::v4::compressor::CompressionOptions::Lz4(
                backhand::v4::compressor::Lz4 {
                    version: 1,
                    flags: 0,
                },
            )),
        ),
        "xz" => FilesystemCompressor::new(Compressor::Xz, None),
        other => return Err(format!("unsupported compressor {other}")),
    }
    .map_err(|e| format!("compressor: {e}"))?;

    let source = Path::new(source);
    let root_meta = fs::metadata(source).map_err(|e| format!("{}: {e}", source.display()))?;
    let mut fs_writer = FilesystemWriter::default();
    fs_writer.set_block_size(block);
    fs_writer.set_compressor(compressor);
    fs_writer.set_root_mode((root_meta.mode() & 0o7777) as u16);
    fs_writer.set_root_uid(root_meta.uid());
    fs_writer.set_root_gid(root_meta.gid());
    fs_writer.set_time(root_meta.mtime().clamp(0, i64::from(u32::MAX)) as u32);
    push_tree(&mut fs_writer, source, Path::new(""))?;
    let out = File::create(image).map_err(|e| format!("{image}: {e}"))?;
    fs_writer
        .write(BufWriter::with_capacity(1 << 20, out))
        .map_err(|e| format!("writing {image}: {e}"))?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backhand-mkfs: {e}");
            ExitCode::FAILURE
        }
    }
}
