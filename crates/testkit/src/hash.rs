//! A content hash that does not care how a file's zeros are stored.
//!
//! The stream is cut into fixed 64 KiB chunks at fixed offsets; an all-zero chunk is hashed as a
//! marker instead of its bytes. So a 5 GiB sparse file hashes in milliseconds through
//! [`ContentHasher::write_zeros`], and the same bytes give the same hash whether they came from
//! holes, written zeros, or an image reader.

use std::fmt;
use std::io::{self, Read};

use xxhash_rust::xxh3::Xxh3;

const CHUNK: usize = 64 * 1024;
static ZERO_CHUNK: [u8; CHUNK] = [0; CHUNK];

/// A 128-bit content digest plus the content length.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash {
    /// Number of bytes hashed.
    pub len: u64,
    /// xxh3-128 of the canonical chunk stream.
    pub digest: u128,
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}/{}", self.digest, self.len)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Streaming builder of a [`ContentHash`].
pub struct ContentHasher {
    state: Xxh3,
    buf: Vec<u8>,
    len: u64,
}

impl Default for ContentHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl ContentHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        ContentHasher {
            state: Xxh3::new(),
            buf: Vec::with_capacity(CHUNK),
            len: 0,
        }
    }

    /// Append bytes.
    pub fn write(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let take = (CHUNK - self.buf.len()).min(data.len());
            if self.buf.is_empty() && take == CHUNK {
                Self::emit(&mut self.state, &data[..CHUNK]);
            } else {
                self.buf.extend_from_slice(&data[..take]);
                if self.buf.len() == CHUNK {
                    Self::emit(&mut self.state, &self.buf);
                    self.buf.clear();
                }
            }
            data = &data[take..];
        }
    }

    /// Append `n` zero bytes without touching memory per byte (for holes).
    pub fn write_zeros(&mut self, mut n: u64) {
        const ZEROS: &[u8; CHUNK] = &ZERO_CHUNK;
        if !self.buf.is_empty() {
            let take = ((CHUNK - self.buf.len()) as u64).min(n) as usize;
            self.write(&ZEROS[..take]);
            n -= take as u64;
        }
        while n >= CHUNK as u64 {
            self.len += CHUNK as u64;
            self.state.update(b"Z");
            n -= CHUNK as u64;
        }
        self.write(&ZEROS[..n as usize]);
    }

    /// Append everything `reader` yields.
    pub fn write_reader(&mut self, mut reader: impl Read) -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.write(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn emit(state: &mut Xxh3, chunk: &[u8]) {
        // A slice comparison is a memcmp: fast even in unoptimized test builds.
        if chunk == &ZERO_CHUNK[..chunk.len()] {
            state.update(b"Z");
        } else {
            state.update(b"D");
            state.update(chunk);
        }
    }

    /// The final digest.
    pub fn finish(mut self) -> ContentHash {
        if !self.buf.is_empty() {
            // A short tail chunk: hash its bytes (its length is part of `len` below).
            self.state.update(b"T");
            self.state.update(&self.buf);
        }
        self.state.update(&self.len.to_le_bytes());
        ContentHash {
            len: self.len,
            digest: self.state.digest128(),
        }
    }

    /// Hash of a byte slice.
    pub fn of(data: &[u8]) -> ContentHash {
        let mut h = Self::new();
        h.write(data);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_hash_the_same_however_written() {
        let data = {
            let mut v = vec![0u8; 3 * CHUNK + 17];
            v[CHUNK + 5] = 9;
            v
        };
        let whole = ContentHasher::of(&data);
        let mut pieces = ContentHasher::new();
        pieces.write_zeros(CHUNK as u64 + 5);
        pieces.write(&[9]);
        pieces.write_zeros((2 * CHUNK + 11) as u64);
        assert_eq!(whole, pieces.finish());
        let mut odd = ContentHasher::new();
        for c in data.chunks(1000) {
            odd.write(c);
        }
        assert_eq!(whole, odd.finish());
    }

    #[test]
    fn different_content_differs() {
        assert_ne!(ContentHasher::of(b"abc"), ContentHasher::of(b"abd"));
        assert_ne!(ContentHasher::of(&[0; 10]), ContentHasher::of(&[0; 11]));
        assert_ne!(ContentHasher::of(&[]), ContentHasher::of(&[0]));
    }
}
