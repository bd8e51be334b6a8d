//! The destination file: written as a temporary sibling, synced, renamed into place only on
//! success. Dropping a [`PendingImage`] without committing removes the temporary file.

use std::fs::{File, Permissions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use squashbox_format::writeback::start_writeback;
use tempfile::NamedTempFile;

use crate::BuildError;

/// An image being written.
pub struct PendingImage {
    temp: NamedTempFile,
    dest: PathBuf,
}

fn output_err(dest: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Output {
        path: dest.to_path_buf(),
        source,
    }
}

impl PendingImage {
    /// Create the temporary file next to `dest`.
    pub fn create(dest: &Path) -> Result<Self, BuildError> {
        let name = dest.file_name().ok_or_else(|| {
            output_err(dest)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "destination has no file name",
            ))
        })?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dest.is_dir() {
            return Err(output_err(dest)(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "destination is a directory",
            )));
        }
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(name);
        prefix.push(".");
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(output_err(dest))?;
        Ok(PendingImage {
            temp,
            dest: dest.to_path_buf(),
        })
    }

    /// The open temporary file.
    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// `(dev, ino)` of the temporary file, so the walk can skip it.
    pub fn dev_ino(&self) -> Result<(u64, u64), BuildError> {
        let meta = self
            .temp
            .as_file()
            .metadata()
            .map_err(output_err(&self.dest))?;
        Ok((meta.dev(), meta.ino()))
    }

    /// Sync and rename into place.
    pub fn commit(self) -> Result<(), BuildError> {
        let dest = self.dest.clone();
        let file = self.temp.as_file();
        file.set_permissions(Permissions::from_mode(0o644))
            .map_err(output_err(&dest))?;
        file.sync_all().map_err(output_err(&dest))?;
        self.temp
            .persist(&dest)
            .map_err(|e| output_err(&dest)(e.error))?;
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename durable; failure to sync a directory is not worth failing for.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// Bytes written between two writeback requests.
const WRITEBACK_CHUNK: u64 = 8 << 20;

/// The image file as the writer's sink: buffered, and asking the kernel to start writing each
/// finished 8 MiB range to disk while the build goes on. Without that, every dirty page waits
/// for the `fsync` in [`PendingImage::commit`], which then costs a tenth of the build's wall
/// time on a large image.
pub struct ImageOut {
    out: BufWriter<File>,
    pos: u64,
    writeback_from: u64,
}

impl ImageOut {
    /// Write through `file` (a handle of the pending image).
    pub fn new(file: File) -> Self {
        ImageOut {
            out: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
            writeback_from: 0,
        }
    }
}

impl Write for ImageOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.pos += n as u64;
        if self.pos >= self.writeback_from + WRITEBACK_CHUNK {
            self.out.flush()?;
            start_writeback(
                self.out.get_ref(),
                self.writeback_from,
                self.pos - self.writeback_from,
            );
            self.writeback_from = self.pos;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Seek for ImageOut {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.out.seek(to)?;
        self.writeback_from = self.writeback_from.min(self.pos);
        Ok(self.pos)
    }
}

impl squashbox_format::writer::ImageSink for ImageOut {
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().set_len(len)?;
        self.writeback_from = self.writeback_from.min(len);
        Ok(())
    }
}
