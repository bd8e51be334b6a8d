//! The data pipeline: parallel read + compress, ordered placement, dedup and fragments.
//!
//! Files are processed in the order they are added. Worker threads (a rayon pool) read and
//! compress data blocks and hash them; every block carries a sequence number, and the calling
//! thread places finished blocks strictly in sequence, so the image is byte-identical whatever
//! the thread count. At most `window_bytes` of blocks (and `max_jobs` jobs) are in flight,
//! which bounds memory independently of file and tree size.
//!
//! A file is either read by the workers from a path ([`DataPipeline::add_path`], used for
//! directory builds: jobs are submitted lazily as the window allows) or streamed by the caller
//! ([`DataPipeline::add_stream`], used by [`crate::ImageBuilder`] for entries pushed from e.g. a
//! tar stream: the calling thread reads each block and hands it to a worker to compress).
//!
//! When a file is complete its content hash (over the per-block hashes) is looked up; on a
//! size + hash match the stored bytes are compared with the earlier copy read back from the
//! image, and if equal the new copy is rolled back and the file points at the old blocks.
//! Tails and small files are packed into fragment blocks, which are compressed by the workers
//! too and written a fixed number of fragments later (again: deterministic placement).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};
use squashbox_format::compress::Codec;
use squashbox_format::layout::DATA_UNCOMPRESSED;
use squashbox_format::writer::{ImageSink, ImageWriter};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

use crate::BuildError;

/// Where a file's bytes come from.
enum FileSource {
    /// Read by the workers from this path.
    Path(Arc<Path>),
    /// Handed over block by block by the caller of [`DataPipeline::add_stream`].
    Stream,
}

/// A regular file to store.
struct FileInput {
    source: FileSource,
    /// Exactly this many bytes are stored.
    size: u64,
    /// The file may have holes (worth asking `SEEK_DATA` before reading a block).
    holes: bool,
}

/// What one block job works on.
enum JobInput {
    /// Read `len` bytes at `offset` of the file at `path`.
    Path {
        path: Arc<Path>,
        offset: u64,
        detect_holes: bool,
    },
    /// Bytes the caller already read.
    Bytes(Vec<u8>),
}

/// Where a file's data ended up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileData {
    /// Image offset of the first block.
    pub blocks_start: u64,
    /// One size word per block.
    pub block_sizes: Vec<u32>,
    /// Fragment index and offset of the tail.
    pub fragment: Option<(u32, u32)>,
    /// Bytes stored as sparse blocks.
    pub sparse: u64,
}

/// Tuning of the pipeline.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Data block size.
    pub block_size: u32,
    /// Pack tails and small files into fragments.
    pub fragments: bool,
    /// Merge identical files.
    pub dedup: bool,
    /// Upper bound on bytes of blocks submitted but not yet placed.
    pub window_bytes: usize,
    /// Upper bound on jobs submitted but not yet placed.
    pub max_jobs: usize,
    /// Closed fragments kept in memory (being compressed) before the oldest is written.
    pub fragment_lookahead: usize,
}

/// What the pipeline produced.
pub struct DataResult {
    /// Per input file: its data, or `None` if it failed to read.
    pub files: Vec<Option<FileData>>,
    /// Files that failed to read, with the reason.
    pub failed: Vec<(usize, String)>,
    /// Files found identical to an earlier file.
    pub duplicates: u64,
    /// Bytes read from files that were stored.
    pub input_bytes: u64,
}

enum Stored {
    Sparse,
    Block { bytes: Vec<u8>, uncompressed: bool },
    Tail(Vec<u8>),
}

/// Why a block job failed.
enum JobError {
    /// The file could not be opened or read: the file is unreadable (listed or skipped).
    Read(String),
    /// Compression failed: the build fails (never silently skipped).
    Fatal(squashbox_format::Error),
}

struct BlockDone {
    seq: u64,
    len: usize,
    hash: u128,
    out: Result<Stored, JobError>,
}

enum Message {
    Block(BlockDone),
    Fragment {
        index: u32,
        result: squashbox_format::Result<(Vec<u8>, bool)>,
    },
}

struct PendingFragment {
    index: u32,
    raw: Arc<Vec<u8>>,
    result: Option<(Vec<u8>, bool)>,
}

struct Placing {
    blocks_start: Option<u64>,
    sizes: Vec<u32>,
    hasher: Xxh3,
    sparse: u64,
    tail: Option<Vec<u8>>,
    error: Option<String>,
    jobs_left: u64,
}

/// The data phase of one image: add files (by path or streamed), then [`DataPipeline::finish`].
pub struct DataPipeline<W: ImageSink> {
    writer: ImageWriter<W>,
    readback: File,
    files: Vec<FileInput>,
    pool: rayon::ThreadPool,
    config: PipelineConfig,
    codec: Codec,
    tx: Sender<Message>,
    rx: Receiver<Message>,
    // submission cursor
    submit_file: usize,
    submit_job: u64,
    next_submit_seq: u64,
    in_flight_bytes: usize,
    in_flight_jobs: usize,
    // placement
    place_file: usize,
    placing: Option<Placing>,
    next_place_seq: u64,
    reorder: HashMap<u64, BlockDone>,
    // fragments
    open_fragment: Vec<u8>,
    open_index: u32,
    pending: VecDeque<PendingFragment>,
    fragment_cache: Option<(u32, Vec<u8>)>,
    // results
    result: DataResult,
    dedup_map: HashMap<(u64, u128), usize>,
    zero_hash: u128,
}

/// Number of full-size (or, without fragments, final partial) block jobs and tail length.
fn layout(size: u64, block_size: u32, fragments: bool) -> (u64, u64) {
    let bs = u64::from(block_size);
    if fragments {
        (size / bs, size % bs)
    } else {
        (size.div_ceil(bs), 0)
    }
}

fn job_count(size: u64, config: &PipelineConfig) -> u64 {
    let (blocks, tail) = layout(size, config.block_size, config.fragments);
    blocks + u64::from(tail > 0)
}

impl<W: ImageSink> DataPipeline<W> {
    /// Start the data phase: blocks go to `writer`, `readback` reads the image being written
    /// (for dedup byte checks), `pool` compresses.
    pub fn new(
        writer: ImageWriter<W>,
        readback: File,
        pool: rayon::ThreadPool,
        config: PipelineConfig,
    ) -> Self {
        let (tx, rx) = unbounded();
        let codec = writer.codec().clone();
        DataPipeline {
            writer,
            readback,
            files: Vec::new(),
            pool,
            codec,
            tx,
            rx,
            submit_file: 0,
            submit_job: 0,
            next_submit_seq: 0,
            in_flight_bytes: 0,
            in_flight_jobs: 0,
            place_file: 0,
            placing: None,
            next_place_seq: 0,
            reorder: HashMap::new(),
            open_fragment: Vec::with_capacity(config.block_size as usize),
            open_index: 0,
            pending: VecDeque::new(),
            fragment_cache: None,
            result: DataResult {
                files: Vec::new(),
                failed: Vec::new(),
                duplicates: 0,
                input_bytes: 0,
            },
            dedup_map: HashMap::new(),
            zero_hash: xxh3_128(&vec![0u8; config.block_size as usize]),
            config,
        }
    }

    fn push_file(&mut self, input: FileInput) -> usize {
        self.files.push(input);
        self.result.files.push(None);
        self.files.len() - 1
    }

    /// Add a file the workers read from `path` (`size` bytes; `holes`: ask `SEEK_DATA`).
    /// Returns its index in [`DataResult::files`]. Its jobs are submitted as the window allows.
    pub fn add_path(&mut self, path: Arc<Path>, size: u64, holes: bool) -> usize {
        self.push_file(FileInput {
            source: FileSource::Path(path),
            size,
            holes,
        })
    }

    /// Add a file whose `size` bytes are read from `reader` on this thread, block by block,
    /// while workers compress earlier blocks. The reader must yield exactly `size` bytes.
    ///
    /// An error reading the stream (or a size mismatch) is returned as
    /// [`BuildError::Entry`] naming `name`; the pipeline must not be used afterwards (the
    /// file's earlier blocks are already on their way into the image).
    pub fn add_stream(
        &mut self,
        name: &Path,
        size: u64,
        reader: &mut dyn Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<usize, BuildError> {
        let file = self.push_file(FileInput {
            source: FileSource::Stream,
            size,
            holes: false,
        });
        // Sequence numbers follow file order: every earlier file's jobs go first.
        while self.submit_file < file {
            self.submit();
            if self.submit_file < file {
                self.advance(progress)?;
            }
        }
        let stream_err = |message: String| BuildError::Entry {
            path: name.to_path_buf(),
            message,
        };
        let bs = u64::from(self.config.block_size);
        let (blocks, tail) = layout(size, self.config.block_size, self.config.fragments);
        for job in 0..blocks + u64::from(tail > 0) {
            let is_tail = job == blocks;
            let len = if is_tail {
                tail
            } else {
                bs.min(size - job * bs)
            } as usize;
            while !self.window_has_room() {
                self.advance(progress)?;
            }
            let mut data = vec![0u8; len];
            reader.read_exact(&mut data).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    stream_err(format!("the data ended before the declared {size} bytes"))
                } else {
                    stream_err(format!("reading the data: {e}"))
                }
            })?;
            self.spawn_block_job(JobInput::Bytes(data), len, is_tail);
        }
        let mut probe = [0u8; 1];
        match reader.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => {
                return Err(stream_err(format!(
                    "more data than the declared {size} bytes"
                )))
            }
            Err(e) => return Err(stream_err(format!("reading the data: {e}"))),
        }
        self.submit_file = file + 1;
        self.submit_job = 0;
        Ok(file)
    }

    /// Store everything added so far, write the remaining fragments, and hand back the
    /// writer with the per-file results.
    pub fn finish(
        mut self,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(DataResult, ImageWriter<W>), BuildError> {
        while self.place_file < self.files.len() {
            self.advance(progress)?;
        }
        self.close_fragment()?;
        while !self.pending.is_empty() {
            self.write_oldest_fragment()?;
        }
        Ok((self.result, self.writer))
    }

    fn new_placing(&self, file: usize) -> Placing {
        Placing {
            blocks_start: None,
            sizes: Vec::new(),
            hasher: Xxh3::new(),
            sparse: 0,
            tail: None,
            error: None,
            jobs_left: job_count(self.files[file].size, &self.config),
        }
    }

    fn window_has_room(&self) -> bool {
        self.in_flight_jobs < self.config.max_jobs
            && self.in_flight_bytes < self.config.window_bytes
    }

    /// One unit of progress: finalize the file being placed if all its blocks are in, submit
    /// what the window allows, place the next block, or wait for a worker.
    fn advance(&mut self, progress: &mut dyn FnMut(u64)) -> Result<(), BuildError> {
        if self.try_advance(progress)? {
            return Ok(());
        }
        if self.in_flight_jobs == 0 {
            return Err(stalled("nothing in flight"));
        }
        self.receive_one()
    }

    /// [`Self::advance`] without the waiting: false when nothing could be done until a
    /// worker finishes.
    fn try_advance(&mut self, progress: &mut dyn FnMut(u64)) -> Result<bool, BuildError> {
        if self.placing.is_none() && self.place_file < self.files.len() {
            self.placing = Some(self.new_placing(self.place_file));
        }
        if let Some(state) = self.placing.take_if(|p| p.jobs_left == 0) {
            self.finalize(self.place_file, state)?;
            self.place_file += 1;
            return Ok(true);
        }
        self.submit();
        if let Some(done) = self.reorder.remove(&self.next_place_seq) {
            self.next_place_seq += 1;
            self.in_flight_bytes -= done.len;
            self.in_flight_jobs -= 1;
            progress(done.len as u64);
            let mut state = self
                .placing
                .take()
                .ok_or_else(|| stalled("a block without a file"))?;
            let placed = self.place(&mut state, done);
            self.placing = Some(state);
            return placed.map(|()| true);
        }
        Ok(false)
    }

    /// Do whatever needs no waiting: take in finished blocks, place them, submit more jobs
    /// while the window has room. A caller that discovers files slowly (the directory walk)
    /// calls this between entries, so the workers compress while the walk goes on instead
    /// of after it. The image does not depend on when (or whether) this is called.
    pub fn pump(&mut self, progress: &mut dyn FnMut(u64)) -> Result<(), BuildError> {
        loop {
            while let Ok(message) = self.rx.try_recv() {
                self.accept(message)?;
            }
            if !self.try_advance(progress)? {
                return Ok(());
            }
        }
    }

    /// Submit path jobs until the window is full, every job is submitted, or the next file is
    /// a stream (whose blocks [`Self::add_stream`] submits).
    fn submit(&mut self) {
        let bs = u64::from(self.config.block_size);
        while self.submit_file < self.files.len() && self.window_has_room() {
            let file = self.submit_file;
            let input = &self.files[file];
            let FileSource::Path(path) = &input.source else {
                break;
            };
            let (blocks, tail) = layout(input.size, self.config.block_size, self.config.fragments);
            let job = self.submit_job;
            if job >= blocks + u64::from(tail > 0) {
                self.submit_file += 1;
                self.submit_job = 0;
                continue;
            }
            let offset = job * bs;
            let is_tail = job == blocks;
            let len = if is_tail {
                tail
            } else {
                bs.min(input.size - offset)
            } as usize;
            let job_input = JobInput::Path {
                path: Arc::clone(path),
                offset,
                detect_holes: !is_tail && input.holes,
            };
            self.spawn_block_job(job_input, len, is_tail);
            self.submit_job += 1;
        }
    }

    /// Hand the next block (next sequence number) to a worker: read (or take) it, hash it,
    /// and compress it unless it is a tail or all zeros.
    fn spawn_block_job(&mut self, input: JobInput, len: usize, is_tail: bool) {
        let seq = self.next_submit_seq;
        self.next_submit_seq += 1;
        self.in_flight_bytes += len;
        self.in_flight_jobs += 1;
        let codec = self.codec.clone();
        let tx = self.tx.clone();
        let zero_hash = self.zero_hash;
        let full_block = len == self.config.block_size as usize;
        self.pool.spawn(move || {
            let data = match input {
                JobInput::Path {
                    path,
                    offset,
                    detect_holes,
                } => read_block(&path, offset, len, detect_holes),
                JobInput::Bytes(bytes) => Ok(Some(bytes)),
            };
            let (hash, out) = match data {
                Ok(None) => {
                    let hash = if full_block {
                        zero_hash
                    } else {
                        xxh3_128(&vec![0u8; len])
                    };
                    (hash, Ok(Stored::Sparse))
                }
                Ok(Some(data)) => {
                    let hash = xxh3_128(&data);
                    let out = if is_tail {
                        Ok(Stored::Tail(data))
                    } else if data.iter().all(|&b| b == 0) {
                        Ok(Stored::Sparse)
                    } else {
                        compress_block(&codec, data)
                    };
                    (hash, out)
                }
                Err(e) => (0, Err(JobError::Read(e.to_string()))),
            };
            let _ = tx.send(Message::Block(BlockDone {
                seq,
                len,
                hash,
                out,
            }));
        });
    }

    fn receive_one(&mut self) -> Result<(), BuildError> {
        let message = self.rx.recv().map_err(|_| {
            BuildError::Format(squashbox_format::Error::InvalidArgument(
                "worker pool stopped unexpectedly".into(),
            ))
        })?;
        self.accept(message)
    }

    fn accept(&mut self, message: Message) -> Result<(), BuildError> {
        match message {
            Message::Block(done) => {
                self.reorder.insert(done.seq, done);
            }
            Message::Fragment { index, result } => {
                let stored = result?;
                if let Some(p) = self.pending.iter_mut().find(|p| p.index == index) {
                    p.result = Some(stored);
                }
            }
        }
        Ok(())
    }

    fn place(&mut self, state: &mut Placing, done: BlockDone) -> Result<(), BuildError> {
        state.jobs_left -= 1;
        if state.error.is_some() {
            return Ok(());
        }
        let out = match done.out {
            Ok(out) => out,
            Err(JobError::Fatal(e)) => return Err(e.into()),
            Err(JobError::Read(e)) => {
                state.error = Some(e);
                if let Some(start) = state.blocks_start {
                    self.writer.rewind_data(start)?;
                }
                return Ok(());
            }
        };
        state.hasher.update(&done.hash.to_le_bytes());
        match out {
            Stored::Tail(bytes) => state.tail = Some(bytes),
            Stored::Sparse => {
                state.blocks_start.get_or_insert(self.writer.position());
                state.sizes.push(0);
                state.sparse += done.len as u64;
            }
            Stored::Block {
                bytes,
                uncompressed,
            } => {
                state.blocks_start.get_or_insert(self.writer.position());
                self.writer.write_data(&bytes)?;
                let flag = if uncompressed { DATA_UNCOMPRESSED } else { 0 };
                state.sizes.push(bytes.len() as u32 | flag);
            }
        }
        Ok(())
    }

    fn finalize(&mut self, file: usize, mut state: Placing) -> Result<(), BuildError> {
        if let Some(error) = state.error {
            self.result.failed.push((file, error));
            return Ok(());
        }
        let size = self.files[file].size;
        if state.sparse > 0 && state.sparse == size {
            // A file made only of sparse blocks would need `sparse == size`, which readers
            // reject: store its last block for real (a zero block compresses to a few bytes).
            let bs = u64::from(self.config.block_size);
            let last_len = (size - (size - 1) / bs * bs) as usize;
            let zeros = vec![0u8; last_len];
            let word = self.writer.compress_and_write_block(&zeros)?;
            *state.sizes.last_mut().expect("sparse file has blocks") = word;
            state.sparse -= last_len as u64;
        }
        let hash = state.hasher.digest128();
        let mut data = FileData {
            blocks_start: state.blocks_start.unwrap_or(self.writer.position()),
            block_sizes: state.sizes,
            fragment: None,
            sparse: state.sparse,
        };
        if self.config.dedup && size > 0 {
            let key = (size, hash);
            if let Some(&earlier) = self.dedup_map.get(&key) {
                if self.same_content(earlier, &data, state.tail.as_deref())? {
                    self.writer.rewind_data(data.blocks_start)?;
                    self.result.files[file] = self.result.files[earlier].clone();
                    self.result.duplicates += 1;
                    return Ok(());
                }
            } else {
                self.dedup_map.insert(key, file);
            }
        }
        if let Some(tail) = state.tail {
            data.fragment = Some(self.add_to_fragment(&tail)?);
        }
        self.result.input_bytes += size;
        self.result.files[file] = Some(data);
        Ok(())
    }

    /// Byte comparison of a new file's stored data against an earlier file's, read back from
    /// the image (compression is deterministic, so equal content means equal stored bytes).
    fn same_content(
        &mut self,
        earlier: usize,
        data: &FileData,
        tail: Option<&[u8]>,
    ) -> Result<bool, BuildError> {
        let Some(old) = self.result.files[earlier].clone() else {
            return Ok(false);
        };
        if old.block_sizes != data.block_sizes || old.fragment.is_some() != tail.is_some() {
            return Ok(false);
        }
        let stored: u64 = data
            .block_sizes
            .iter()
            .map(|w| u64::from(w & !DATA_UNCOMPRESSED))
            .sum();
        if stored > 0 {
            self.writer.flush()?;
            let mut a = vec![0u8; 256 * 1024];
            let mut b = vec![0u8; 256 * 1024];
            let mut done = 0u64;
            while done < stored {
                let n = (stored - done).min(a.len() as u64) as usize;
                self.read_image(old.blocks_start + done, &mut a[..n])?;
                self.read_image(data.blocks_start + done, &mut b[..n])?;
                if a[..n] != b[..n] {
                    return Ok(false);
                }
                done += n as u64;
            }
        }
        if let (Some(tail), Some((index, offset))) = (tail, old.fragment) {
            let old_tail = self.fragment_bytes(index, offset, tail.len())?;
            if old_tail != tail {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn read_image(&self, offset: u64, buf: &mut [u8]) -> Result<(), BuildError> {
        self.readback.read_exact_at(buf, offset).map_err(|e| {
            BuildError::Format(squashbox_format::Error::io("reading back the image", e))
        })
    }

    /// `len` bytes at `offset` of fragment `index`, from memory or read back and decompressed.
    fn fragment_bytes(
        &mut self,
        index: u32,
        offset: u32,
        len: usize,
    ) -> Result<Vec<u8>, BuildError> {
        let range = offset as usize..offset as usize + len;
        if index == self.open_index {
            return Ok(self.open_fragment.get(range).unwrap_or_default().to_vec());
        }
        if let Some(p) = self.pending.iter().find(|p| p.index == index) {
            return Ok(p.raw.get(range).unwrap_or_default().to_vec());
        }
        if let Some((cached, bytes)) = &self.fragment_cache {
            if *cached == index {
                return Ok(bytes.get(range).unwrap_or_default().to_vec());
            }
        }
        let entry = self.writer.fragment(index).ok_or_else(|| {
            BuildError::Format(squashbox_format::Error::InvalidArgument(format!(
                "unknown fragment {index}"
            )))
        })?;
        self.writer.flush()?;
        let stored_len = (entry.size_word & !DATA_UNCOMPRESSED) as usize;
        let mut stored = vec![0u8; stored_len];
        self.read_image(entry.start, &mut stored)?;
        let raw = if entry.size_word & DATA_UNCOMPRESSED != 0 {
            stored
        } else {
            let mut out = vec![0u8; self.config.block_size as usize];
            let n = self.codec.decompress(&stored, &mut out, entry.start)?;
            out.truncate(n);
            out
        };
        let bytes = raw.get(range).unwrap_or_default().to_vec();
        self.fragment_cache = Some((index, raw));
        Ok(bytes)
    }

    fn add_to_fragment(&mut self, tail: &[u8]) -> Result<(u32, u32), BuildError> {
        if self.open_fragment.len() + tail.len() > self.config.block_size as usize {
            self.close_fragment()?;
        }
        let offset = self.open_fragment.len() as u32;
        self.open_fragment.extend_from_slice(tail);
        Ok((self.open_index, offset))
    }

    fn close_fragment(&mut self) -> Result<(), BuildError> {
        if self.open_fragment.is_empty() {
            return Ok(());
        }
        let raw = Arc::new(std::mem::replace(
            &mut self.open_fragment,
            Vec::with_capacity(self.config.block_size as usize),
        ));
        let index = self.open_index;
        self.open_index += 1;
        let codec = self.codec.clone();
        let tx = self.tx.clone();
        let job_raw = Arc::clone(&raw);
        self.pool.spawn(move || {
            let mut out = Vec::new();
            let result = codec.compress(&job_raw, &mut out).map(|shrunk| {
                if shrunk && out.len() < job_raw.len() {
                    (out, false)
                } else {
                    (job_raw.to_vec(), true)
                }
            });
            let _ = tx.send(Message::Fragment { index, result });
        });
        self.pending.push_back(PendingFragment {
            index,
            raw,
            result: None,
        });
        while self.pending.len() > self.config.fragment_lookahead {
            self.write_oldest_fragment()?;
        }
        Ok(())
    }

    fn write_oldest_fragment(&mut self) -> Result<(), BuildError> {
        while self.pending.front().is_some_and(|p| p.result.is_none()) {
            self.receive_one()?;
        }
        let Some(front) = self.pending.pop_front() else {
            return Ok(());
        };
        let (stored, uncompressed) = front.result.expect("fragment result present");
        let index = self.writer.write_fragment(&stored, uncompressed)?;
        debug_assert_eq!(index, front.index);
        Ok(())
    }
}

fn stalled(what: &str) -> BuildError {
    BuildError::Format(squashbox_format::Error::InvalidArgument(format!(
        "data pipeline stalled ({what}); this is a bug"
    )))
}

fn compress_block(codec: &Codec, data: Vec<u8>) -> Result<Stored, JobError> {
    let mut out = Vec::with_capacity(data.len());
    match codec.compress(&data, &mut out) {
        Ok(true) if out.len() < data.len() => Ok(Stored::Block {
            bytes: out,
            uncompressed: false,
        }),
        Ok(_) => Ok(Stored::Block {
            bytes: data,
            uncompressed: true,
        }),
        Err(e) => Err(JobError::Fatal(e)),
    }
}

/// Read `len` bytes at `offset`. With `detect_holes`, a range lying entirely in a hole of a
/// sparse file is reported as `None` without reading it (so huge sparse files cost nothing).
fn read_block(
    path: &std::path::Path,
    offset: u64,
    len: usize,
    detect_holes: bool,
) -> io::Result<Option<Vec<u8>>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if detect_holes {
        match rustix::fs::seek(&file, rustix::fs::SeekFrom::Data(offset)) {
            Ok(data) if data >= offset + len as u64 => return Ok(None),
            // No data at or after `offset`: the rest of the file is a hole.
            Err(rustix::io::Errno::NXIO) => {
                let size = file.metadata()?.len();
                if size >= offset + len as u64 {
                    return Ok(None);
                }
            }
            _ => {}
        }
    }
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(e.kind(), "file shrank while the image was being built")
        } else {
            e
        }
    })?;
    Ok(Some(buf))
}
