//! xz (id 4): an xz container (CRC32 check) holding LZMA2, optionally behind a BCJ filter.

use xz2::stream::{Action, Check, Filters, LzmaOptions, Status, Stream};

use super::{CodecError, CodecResult};

/// Decoder memory beyond the dictionary: LZMA2 state, BCJ filters and the index. liblzma's
/// figure for an LZMA2 decoder is the dictionary plus ~30 KiB; 1 MiB leaves ample room.
const DECODER_MEMORY_SLACK: u64 = 1 << 20;

/// The memory limit for decoding a stream of an image whose dictionary is at most `dict`:
/// a hostile header cannot make liblzma allocate more than this.
pub(super) fn memory_limit(dict: u32) -> u64 {
    u64::from(dict) + DECODER_MEMORY_SLACK
}

/// Decode one xz stream into `out`, with memory bounded by `dict_limit`. Any filter chain
/// liblzma supports (the BCJ filters mksquashfs can emit included) is accepted.
pub(super) fn decompress(input: &[u8], out: &mut [u8], dict_limit: u32) -> CodecResult<usize> {
    let stream = Stream::new_stream_decoder(memory_limit(dict_limit), 0)
        .map_err(|e| CodecError::Other(format!("xz decoder setup: {e}")))?;
    run_decoder(stream, input, out, dict_limit)
}

/// Drive a liblzma decoder over `input` into `out` until the stream ends. Shared with the
/// legacy lzma decoder.
pub(super) fn run_decoder(
    mut stream: Stream,
    input: &[u8],
    out: &mut [u8],
    dict_limit: u32,
) -> CodecResult<usize> {
    let map = |e: xz2::stream::Error| match e {
        xz2::stream::Error::MemLimit => CodecError::Other(format!(
            "stream needs more memory than its {dict_limit}-byte dictionary allows"
        )),
        other => CodecError::Other(format!("corrupt stream: {other}")),
    };
    // Every iteration consumes input or produces output, or returns: bounded.
    loop {
        let consumed = stream.total_in() as usize;
        let produced = stream.total_out() as usize;
        let in_rest = input.get(consumed..).unwrap_or(&[]);
        if produced >= out.len() {
            // Full: only the stream's index/footer may remain. Probe for one more byte.
            let mut probe = [0u8; 1];
            let status = stream
                .process(in_rest, &mut probe, Action::Finish)
                .map_err(map)?;
            if stream.total_out() as usize > produced {
                return Err(CodecError::OutputTooLarge(out.len()));
            }
            return match status {
                Status::StreamEnd => Ok(produced),
                _ if stream.total_in() as usize == consumed => Err(CodecError::Truncated),
                _ => continue,
            };
        }
        let status = stream
            .process(in_rest, &mut out[produced..], Action::Finish)
            .map_err(map)?;
        if status == Status::StreamEnd {
            return Ok(stream.total_out() as usize);
        }
        if stream.total_in() as usize == consumed && stream.total_out() as usize == produced {
            return Err(CodecError::Truncated);
        }
    }
}

/// Encode `input` as one xz stream (CRC32 check, LZMA2 at `preset` with dictionary `dict`),
/// as mksquashfs does.
pub(super) fn compress(input: &[u8], out: &mut Vec<u8>, preset: u32, dict: u32) -> CodecResult<()> {
    let setup = |e: xz2::stream::Error| CodecError::Other(format!("xz encoder setup: {e}"));
    let mut lzma = LzmaOptions::new_preset(preset).map_err(setup)?;
    lzma.dict_size(dict);
    let mut filters = Filters::new();
    filters.lzma2(&lzma);
    let mut stream = Stream::new_stream_encoder(&filters, Check::Crc32).map_err(setup)?;
    out.reserve(input.len() + input.len() / 16 + 128);
    loop {
        let consumed = stream.total_in() as usize;
        let status = stream
            .process_vec(&input[consumed..], out, Action::Finish)
            .map_err(|e| CodecError::Other(format!("xz: {e}")))?;
        if status == Status::StreamEnd {
            return Ok(());
        }
        out.reserve(out.capacity().max(128));
    }
}
