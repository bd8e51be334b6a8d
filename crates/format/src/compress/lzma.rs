//! Legacy lzma (id 2, read only): the lzma "alone" format (13-byte header: properties,
//! dictionary size, uncompressed size). The kernel never supported it; squashfs-tools can
//! still write it, so squashbox reads it.

use xz2::stream::Stream;

use super::{xz, CodecResult};

/// Decode one lzma-alone stream into `out`, memory bounded as for xz.
pub(super) fn decompress(input: &[u8], out: &mut [u8], dict_limit: u32) -> CodecResult<usize> {
    let stream = Stream::new_lzma_decoder(xz::memory_limit(dict_limit))
        .map_err(|e| super::CodecError::Other(format!("lzma decoder setup: {e}")))?;
    xz::run_decoder(stream, input, out, dict_limit)
}
