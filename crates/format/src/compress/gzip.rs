//! gzip (id 1): a zlib stream (2-byte header, deflate data, Adler-32 trailer).

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{CodecError, CodecResult};

thread_local! {
    /// One inflater per thread, reset per block: zlib state is ~40 KiB and costly to set up.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
    /// One deflater per thread for the last (level, window) used.
    static DEFLATER: RefCell<Option<((u32, u8), Compress)>> = const { RefCell::new(None) };
}

/// Inflate a zlib stream into `out`; the stream must end (Adler-32 checked) within `out`.
pub(super) fn decompress(input: &[u8], out: &mut [u8]) -> CodecResult<usize> {
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let inflater = slot.get_or_insert_with(|| Decompress::new(true));
        inflater.reset(true);
        inflate_into(inflater, input, out)
    })
}

fn inflate_into(inflater: &mut Decompress, input: &[u8], out: &mut [u8]) -> CodecResult<usize> {
    let corrupt =
        |e: flate2::DecompressError| CodecError::Other(format!("corrupt zlib stream: {e}"));
    // Each call either makes progress or we stop, so this loop is bounded by input + output.
    loop {
        let consumed = inflater.total_in() as usize;
        let produced = inflater.total_out() as usize;
        let in_rest = input.get(consumed..).unwrap_or(&[]);
        if produced >= out.len() {
            // Output is full: the stream may still have its end-of-block code and trailer left.
            // Probe with a one-byte buffer: any byte produced means the block is too large.
            let mut probe = [0u8; 1];
            let status = inflater
                .decompress(in_rest, &mut probe, FlushDecompress::Finish)
                .map_err(corrupt)?;
            if inflater.total_out() as usize > produced {
                return Err(CodecError::OutputTooLarge(out.len()));
            }
            return match status {
                Status::StreamEnd => Ok(produced),
                _ if inflater.total_in() as usize == consumed => Err(CodecError::Truncated),
                _ => continue,
            };
        }
        let status = inflater
            .decompress(in_rest, &mut out[produced..], FlushDecompress::Finish)
            .map_err(corrupt)?;
        if status == Status::StreamEnd {
            return Ok(inflater.total_out() as usize);
        }
        let progressed =
            inflater.total_in() as usize != consumed || inflater.total_out() as usize != produced;
        if !progressed {
            return Err(CodecError::Truncated);
        }
    }
}

/// Deflate `input` as one zlib stream into `out` at `level` with `window_bits`.
pub(super) fn compress(
    input: &[u8],
    out: &mut Vec<u8>,
    level: u32,
    window_bits: u8,
) -> CodecResult<()> {
    DEFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let key = (level, window_bits);
        if slot.as_ref().map(|(k, _)| *k) != Some(key) {
            let deflater =
                Compress::new_with_window_bits(Compression::new(level), true, window_bits);
            *slot = Some((key, deflater));
        }
        let Some((_, deflater)) = slot.as_mut() else {
            return Err(CodecError::Other("deflater unavailable".into()));
        };
        deflater.reset();
        // zlib's bound for one stream: input + 0.1% + small constant; grow if ever exceeded.
        out.reserve(input.len() + input.len() / 1000 + 64);
        loop {
            let consumed = deflater.total_in() as usize;
            let status = deflater
                .compress_vec(&input[consumed..], out, FlushCompress::Finish)
                .map_err(|e| CodecError::Other(format!("deflate failed: {e}")))?;
            if status == Status::StreamEnd {
                return Ok(());
            }
            out.reserve(out.capacity().max(64));
        }
    })
}
