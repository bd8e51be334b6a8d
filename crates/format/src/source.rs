//! Positional byte sources for the reader.
//!
//! The reader never seeks a shared cursor: every read names its offset, so many threads can read
//! one image concurrently without a lock. Anything that can serve `read_at` plugs in: a file,
//! a memory buffer, or a remote object fetched by ranges.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

/// A source of image bytes addressed by absolute offset.
pub trait ReadAt: Send + Sync {
    /// Fill `buf` completely with the bytes starting at `offset`.
    ///
    /// Returns `ErrorKind::UnexpectedEof` if the source ends before `buf` is full.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Total length of the source in bytes.
    fn len(&self) -> io::Result<u64>;

    /// True if the source holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The open file behind the source, if it is one (offsets are the file's): lets a caller
    /// copy bytes stored verbatim in the image inside the kernel (`copy_file_range`).
    fn as_file_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn as_file_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

fn read_from_slice(data: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| eof())?;
    let end = start.checked_add(buf.len()).ok_or_else(eof)?;
    let src = data.get(start..end).ok_or_else(eof)?;
    buf.copy_from_slice(src);
    Ok(())
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the image",
    )
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_from_slice(self, offset, buf)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.as_slice().len() as u64)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_from_slice(self, offset, buf)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(<[u8]>::len(self) as u64)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }

    fn len(&self) -> io::Result<u64> {
        (**self).len()
    }

    fn as_file_fd(&self) -> Option<BorrowedFd<'_>> {
        (**self).as_file_fd()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }

    fn len(&self) -> io::Result<u64> {
        (**self).len()
    }
}
