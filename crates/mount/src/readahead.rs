//! Background read-ahead: after a sequential read, decompress the following data blocks on
//! spare threads so the reader's block cache already holds them when the kernel asks.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};
use squashbox_format::{Archive, Inode};

struct Job {
    inode: Arc<Inode>,
    offset: u64,
    len: usize,
}

/// A small pool of read-ahead threads fed through a bounded queue. Work that does not fit
/// in the queue is dropped: read-ahead is an optimisation, never a source of back-pressure.
pub(crate) struct ReadAhead {
    sender: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl ReadAhead {
    /// Start `threads` workers reading from `archive`. With 0 threads nothing is started and
    /// [`ReadAhead::request`] does nothing.
    pub(crate) fn start(archive: Arc<Archive>, threads: usize) -> Self {
        if threads == 0 {
            return ReadAhead {
                sender: None,
                threads: Vec::new(),
            };
        }
        let (sender, receiver) = crossbeam_channel::bounded::<Job>(64);
        let block_size = archive.superblock().block_size as usize;
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let receiver = receiver.clone();
            let archive = archive.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("squashbox-readahead-{i}"))
                .spawn(move || {
                    let mut buf = vec![0u8; block_size];
                    for job in receiver {
                        let len = job.len.min(buf.len());
                        // Errors are reported when the kernel reads the block for real.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            archive.read_at(&job.inode, job.offset, &mut buf[..len])
                        }));
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => log::warn!("cannot start read-ahead thread: {e}"),
            }
        }
        ReadAhead {
            sender: if handles.is_empty() {
                None
            } else {
                Some(sender)
            },
            threads: handles,
        }
    }

    /// Ask for the `blocks` data blocks starting at the block containing `offset` of `inode`.
    pub(crate) fn request(&self, inode: &Arc<Inode>, offset: u64, blocks: u32, block_size: u32) {
        let Some(sender) = &self.sender else {
            return;
        };
        let size = inode.size();
        let block_size = u64::from(block_size);
        let mut start = offset - offset % block_size;
        for _ in 0..blocks {
            if start >= size {
                break;
            }
            let len = (size - start).min(block_size) as usize;
            let job = Job {
                inode: inode.clone(),
                offset: start,
                len,
            };
            match sender.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => return,
            }
            start += block_size;
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.sender = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
