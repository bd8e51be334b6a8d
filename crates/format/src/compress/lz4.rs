//! lz4 (id 5): the raw lz4 block format (no frame), as the kernel's `LZ4_decompress_safe`.

use super::{CodecError, CodecResult};

/// Decode one lz4 block into `out`; lz4_flex's safe decoder bounds every copy by `out`.
pub(super) fn decompress(input: &[u8], out: &mut [u8]) -> CodecResult<usize> {
    if input.is_empty() {
        return Err(CodecError::Truncated);
    }
    lz4_flex::block::decompress_into(input, out).map_err(|e| match e {
        lz4_flex::block::DecompressError::OutputTooSmall { .. } => {
            CodecError::OutputTooLarge(out.len())
        }
        lz4_flex::block::DecompressError::ExpectedAnotherByte => CodecError::Truncated,
        other => CodecError::Other(format!("corrupt lz4 block: {other}")),
    })
}

/// Encode `input` as one lz4 block (fast mode; lz4_flex has no HC mode).
pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> CodecResult<()> {
    out.resize(lz4_flex::block::get_maximum_output_size(input.len()), 0);
    let written = lz4_flex::block::compress_into(input, out)
        .map_err(|e| CodecError::Other(format!("lz4: {e}")))?;
    out.truncate(written);
    Ok(())
}
