//! A hint shared by every writer of large files here (image builder, overlay copy-up, backup
//! download): start writing a range back to disk now, so a later `fsync` finds little left.

use std::os::fd::AsFd;

/// Ask the kernel to start (not wait for) writeback of `len` bytes at `offset` of `file`
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Only a hint: it makes nothing durable by
/// itself, and errors are ignored; the `fsync` that follows decides.
#[cfg(target_os = "linux")]
pub fn start_writeback(file: impl AsFd, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let fd = file.as_fd();
    // SAFETY: `fd` is borrowed from `file`, so the descriptor stays open for the whole call,
    // and sync_file_range reads only its integer arguments (no memory is passed to the kernel).
    unsafe {
        libc::sync_file_range(fd.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// No writeback hint outside Linux: the `fsync` does all the work.
#[cfg(not(target_os = "linux"))]
pub fn start_writeback(_file: impl AsFd, _offset: u64, _len: u64) {}
