//! lzo (id 3): LZO1X.

use super::{CodecError, CodecResult};

/// Decode an LZO1X stream into `out`.
pub(super) fn decompress(input: &[u8], out: &mut [u8]) -> CodecResult<usize> {
    let _ = (input, out);
    Err(CodecError::Other("lzo decoding not implemented yet".into()))
}

/// Encode `input` as an LZO1X stream.
pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> CodecResult<()> {
    let compressed =
        lzokay_native::compress(input).map_err(|e| CodecError::Other(format!("lzo: {e:?}")))?;
    out.extend_from_slice(&compressed);
    Ok(())
}
