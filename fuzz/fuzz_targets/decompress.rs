//! Fuzz every decompressor with hostile input, and every compressor/decompressor pair for
//! round-trip agreement.
//!
//! Input layout: byte 0 picks the compressor (`% 6`, in id order) and, with bit 7 set, the
//! round-trip mode; byte 1 picks the output capacity; the rest is the payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use squashbox_format::compress::Codec;
use squashbox_format::{Compressor, Error};

const CAPACITIES: [usize; 6] = [0, 1, 100, 8192, 65_536, 131_072];

fuzz_target!(|data: &[u8]| {
    let [selector, capacity, payload @ ..] = data else {
        return;
    };
    let compressor = Compressor::ALL[usize::from(*selector & 0x7f) % Compressor::ALL.len()];
    let capacity = CAPACITIES[usize::from(*capacity) % CAPACITIES.len()];
    if selector & 0x80 != 0 && compressor.can_write() {
        round_trip(compressor, payload);
        return;
    }
    let codec = Codec::for_reading(compressor, None, 131_072).expect("default codec");
    let mut out = vec![0u8; capacity];
    match codec.decompress(payload, &mut out, 42) {
        Ok(n) => assert!(n <= capacity),
        Err(Error::Decompress { offset, .. }) => assert_eq!(offset, 42),
        Err(other) => panic!("unexpected error type: {other:?}"),
    }
});

/// Whatever our compressors produce, our decompressors must restore exactly, and a buffer one
/// byte short must be an error.
fn round_trip(compressor: Compressor, payload: &[u8]) {
    let codec = Codec::for_writing(compressor, None, 131_072).expect("writing codec");
    let mut packed = Vec::new();
    codec.compress(payload, &mut packed).expect("compress");
    let mut out = vec![0u8; payload.len()];
    let n = codec
        .decompress(&packed, &mut out, 0)
        .unwrap_or_else(|e| panic!("{compressor}: own output rejected: {e}"));
    assert_eq!(n, payload.len());
    assert!(out == payload, "{compressor}: round trip differs");
    if !payload.is_empty() {
        let mut short = vec![0u8; payload.len() - 1];
        assert!(codec.decompress(&packed, &mut short, 0).is_err());
    }
}
