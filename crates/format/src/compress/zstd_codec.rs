//! zstd (id 6): one zstd frame per block.

use std::cell::RefCell;

use super::{CodecError, CodecResult};

thread_local! {
    /// Reused decompression context (creating one costs a ~100 KiB allocation).
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
    /// Reused compression context and the level it is set to.
    static CCTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

/// Decompress zstd frame(s) into `out`. The one-shot decoder writes straight into `out` and
/// fails if the content would not fit, so memory use does not depend on the frame header.
pub(super) fn decompress(input: &[u8], out: &mut [u8]) -> CodecResult<usize> {
    if input.is_empty() {
        // libzstd accepts zero frames as an empty result; an empty block is never valid.
        return Err(CodecError::Truncated);
    }
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            let dctx = zstd::bulk::Decompressor::new()
                .map_err(|e| CodecError::Other(format!("zstd context: {e}")))?;
            *slot = Some(dctx);
        }
        let Some(dctx) = slot.as_mut() else {
            return Err(CodecError::Other("zstd context unavailable".into()));
        };
        match dctx.decompress_to_buffer(input, out) {
            Ok(n) => Ok(n),
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("Destination buffer is too small") {
                    Err(CodecError::OutputTooLarge(out.len()))
                } else if input.is_empty() || msg.contains("Src size is incorrect") {
                    Err(CodecError::Truncated)
                } else {
                    Err(CodecError::Other(format!("corrupt zstd frame: {msg}")))
                }
            }
        }
    })
}

/// Compress `input` as one zstd frame (content size recorded, no checksum, as mksquashfs).
/// Because the source size is known, zstd limits the window to it, so the kernel's window
/// limit (the block size) is always met.
pub(super) fn compress(input: &[u8], out: &mut Vec<u8>, level: i32) -> CodecResult<()> {
    CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            let cctx = zstd::bulk::Compressor::new(level)
                .map_err(|e| CodecError::Other(format!("zstd context: {e}")))?;
            *slot = Some((level, cctx));
        }
        let Some((_, cctx)) = slot.as_mut() else {
            return Err(CodecError::Other("zstd context unavailable".into()));
        };
        out.reserve(zstd::zstd_safe::compress_bound(input.len()));
        cctx.compress_to_buffer(input, out)
            .map(|_| ())
            .map_err(|e| CodecError::Other(format!("zstd: {e}")))
    })
}
