//! lzo (id 3): LZO1X, as read by the kernel's `lzo1x_decompress_safe`.
//!
//! The decoder is our own, written from the stream description in the Linux kernel's
//! `Documentation/staging/lzo.rst`. It is bounded and panic-free: every read checks the
//! input, every write checks `out`, every back-reference checks its distance against what was
//! already produced, and every instruction consumes at least one input byte, so decoding ends
//! after at most `input.len()` instructions.
//!
//! We do not use `lzokay-native`'s decompressor: it grows a `Vec` without limit (a hostile
//! stream can demand ~255 output bytes per input byte, and literal runs are allocated at the
//! length the stream claims), and it computes back-reference positions as
//! `result.len() - distance` without checking, which underflows (a panic in debug builds, an
//! out-of-bounds index panic in release) on a distance larger than the output so far.
//! Its compressor is used for writing; our decoder checks every block it produces in tests.
//!
//! Stream summary (state = number of literals the previous instruction copied, 0..=4):
//! - first byte > 17: copy `byte - 17` literals, then state = that count (4 if >= 4)
//! - `1LLDDDSS` + H: copy 5+L from distance (H<<3)+D+1
//! - `01LDDDSS` + H: copy 3+L from distance (H<<3)+D+1
//! - `001LLLLL` [ext len] + LE16: copy 2+len from distance (LE16>>2)+1, S = LE16&3
//! - `0001HLLL` [ext len] + LE16: copy 2+len from distance 16384+(H<<14)+(LE16>>2);
//!   distance exactly 16384 is the end marker (canonically `11 00 00`)
//! - `0000LLLL` in state 0: literal run of 3+len bytes, then state 4
//! - `0000DDSS` + H in state 1..=3: copy 2 from distance (H<<2)+D+1
//! - `0000DDSS` + H in state 4: copy 3 from distance (H<<2)+D+2049
//!
//! After each match, S (0..=3) literals follow and become the new state. An extended length
//! (field value 0) is `mask + 255 * (zero bytes) + first non-zero byte`.

use std::cell::RefCell;

use super::{CodecError, CodecResult};

/// The canonical LZO1X encoding of the empty input: just the end marker.
const END_MARKER: [u8; 3] = [0x11, 0x00, 0x00];

/// Cursor over the input and output of one decode.
struct Decoder<'a> {
    input: &'a [u8],
    ip: usize,
    out: &'a mut [u8],
    op: usize,
}

impl Decoder<'_> {
    fn byte(&mut self) -> CodecResult<usize> {
        let b = *self.input.get(self.ip).ok_or(CodecError::Truncated)?;
        self.ip += 1;
        Ok(usize::from(b))
    }

    fn le16(&mut self) -> CodecResult<usize> {
        let lo = self.byte()?;
        let hi = self.byte()?;
        Ok(lo | (hi << 8))
    }

    /// A length field: `field` if non-zero, else `mask` + 255 per zero byte + the first
    /// non-zero byte. The total is bounded by 255 * input length, so it cannot overflow.
    fn length(&mut self, field: usize, mask: usize) -> CodecResult<usize> {
        if field != 0 {
            return Ok(field);
        }
        let mut len = mask;
        loop {
            match self.byte()? {
                0 => len += 255,
                b => return Ok(len + b),
            }
        }
    }

    fn copy_literals(&mut self, count: usize) -> CodecResult<()> {
        if count == 0 {
            return Ok(());
        }
        let src = self
            .input
            .get(self.ip..self.ip + count)
            .ok_or(CodecError::Truncated)?;
        let limit = self.out.len();
        let dst = self
            .out
            .get_mut(self.op..self.op + count)
            .ok_or(CodecError::OutputTooLarge(limit))?;
        dst.copy_from_slice(src);
        self.ip += count;
        self.op += count;
        Ok(())
    }

    fn copy_match(&mut self, distance: usize, len: usize) -> CodecResult<()> {
        if distance > self.op {
            return Err(CodecError::Other(format!(
                "corrupt lzo stream: back-reference distance {distance} exceeds the {} bytes \
                 decoded so far (input offset {})",
                self.op, self.ip
            )));
        }
        let end = self.op + len;
        if end > self.out.len() {
            return Err(CodecError::OutputTooLarge(self.out.len()));
        }
        let start = self.op - distance;
        if distance >= len {
            self.out.copy_within(start..start + len, self.op);
        } else {
            // Overlapping copy: each byte may repeat one just written (run-length style).
            for i in 0..len {
                self.out[self.op + i] = self.out[start + i];
            }
        }
        self.op = end;
        Ok(())
    }
}

/// Decode an LZO1X stream into `out`, returning the decoded length. The stream must end with
/// the end marker and nothing may follow it (the kernel's rule).
pub(super) fn decompress(input: &[u8], out: &mut [u8]) -> CodecResult<usize> {
    let mut d = Decoder {
        input,
        ip: 0,
        out,
        op: 0,
    };
    let mut state = 0usize;
    if let Some(&first) = input.first() {
        if first > 17 {
            d.ip = 1;
            let count = usize::from(first) - 17;
            d.copy_literals(count)?;
            state = count.min(4);
        }
    }
    loop {
        let inst = d.byte()?;
        let (len, distance, literals) = if inst >= 64 {
            // 1LLDDDSS (5..=8 bytes) or 01LDDDSS (3..=4 bytes), both within 2 KiB.
            let len = if inst >= 128 {
                5 + ((inst >> 5) & 3)
            } else {
                3 + ((inst >> 5) & 1)
            };
            let high = d.byte()?;
            (len, (high << 3) + ((inst >> 2) & 7) + 1, inst & 3)
        } else if inst >= 32 {
            let len = 2 + d.length(inst & 31, 31)?;
            let word = d.le16()?;
            (len, (word >> 2) + 1, word & 3)
        } else if inst >= 16 {
            let len = 2 + d.length(inst & 7, 7)?;
            let word = d.le16()?;
            let far = ((inst & 8) << 11) + (word >> 2);
            if far == 0 {
                return finish(&d, len);
            }
            (len, far + 16384, word & 3)
        } else if state == 0 {
            let count = 3 + d.length(inst & 15, 15)?;
            d.copy_literals(count)?;
            state = 4;
            continue;
        } else if state < 4 {
            let high = d.byte()?;
            (2, (high << 2) + (inst >> 2) + 1, inst & 3)
        } else {
            let high = d.byte()?;
            (3, (high << 2) + (inst >> 2) + 2049, inst & 3)
        };
        d.copy_match(distance, len)?;
        d.copy_literals(literals)?;
        state = literals;
    }
}

/// Validate the end marker (its length field must be the canonical 1, i.e. length 3) and that
/// no input follows it.
fn finish(d: &Decoder<'_>, marker_len: usize) -> CodecResult<usize> {
    if marker_len != 3 {
        return Err(CodecError::Other(format!(
            "corrupt lzo stream: end marker with length {marker_len} instead of 3"
        )));
    }
    if d.ip != d.input.len() {
        return Err(CodecError::Other(format!(
            "corrupt lzo stream: {} bytes follow the end marker",
            d.input.len() - d.ip
        )));
    }
    Ok(d.op)
}

thread_local! {
    /// lzokay's match-finder tables (~600 KiB), reused per thread.
    static DICT: RefCell<Option<lzokay_native::Dict>> = const { RefCell::new(None) };
}

/// Encode `input` as an LZO1X stream (lzokay-native, lzo1x_999-like ratio).
pub(super) fn compress(input: &[u8], out: &mut Vec<u8>) -> CodecResult<()> {
    if input.is_empty() {
        // lzokay returns an empty vector for empty input; a valid stream needs the marker.
        out.extend_from_slice(&END_MARKER);
        return Ok(());
    }
    let compressed = DICT.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dict = slot.get_or_insert_with(lzokay_native::Dict::new);
        lzokay_native::compress_with_dict(input, dict)
    });
    let compressed = compressed.map_err(|e| CodecError::Other(format!("lzo: {e:?}")))?;
    out.extend_from_slice(&compressed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], cap: usize) -> CodecResult<Vec<u8>> {
        let mut out = vec![0u8; cap];
        let n = decompress(input, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    #[test]
    fn empty_stream_is_the_end_marker() {
        assert_eq!(decode(&END_MARKER, 16).unwrap(), b"");
    }

    #[test]
    fn hand_assembled_streams() {
        // First byte 17+5 = 22: five literals, then the end marker.
        assert_eq!(decode(b"\x16hello\x11\x00\x00", 16).unwrap(), b"hello");
        // "ab" as 2 literals (state 2), then 0000DDSS with D=1,S=0 + H=0: copy 2 from
        // distance 2 -> "abab", end.
        assert_eq!(decode(b"\x13ab\x04\x00\x11\x00\x00", 16).unwrap(), b"abab");
        // Long literal run in state 0: first byte 0 => extended length 15 + 3 + 1 = 19.
        let mut s = vec![0x00, 0x01];
        s.extend_from_slice(b"0123456789abcdefghi");
        s.extend_from_slice(&END_MARKER);
        assert_eq!(decode(&s, 64).unwrap(), b"0123456789abcdefghi");
        // Overlapping M2 copy: "a" then 01LDDDSS L=1 (len 4), distance 1 -> "aaaaa".
        assert_eq!(decode(b"\x12a\x60\x00\x11\x00\x00", 16).unwrap(), b"aaaaa");
    }

    #[test]
    fn hostile_streams_are_errors() {
        // Distance beyond output (this is what makes lzokay-native's decoder underflow).
        assert!(matches!(
            decode(b"\x12a\xfc\xff\x11\x00\x00", 64),
            Err(CodecError::Other(_))
        ));
        // Output limit.
        assert!(matches!(
            decode(b"\x16hello\x11\x00\x00", 4),
            Err(CodecError::OutputTooLarge(4))
        ));
        // Truncated, trailing bytes, bad end marker length.
        assert!(matches!(decode(b"\x16hel", 64), Err(CodecError::Truncated)));
        assert!(matches!(decode(b"", 64), Err(CodecError::Truncated)));
        assert!(decode(b"\x16hello\x11\x00\x00\x00", 64).is_err());
        assert!(decode(b"\x16hello\x12\x00\x00", 64).is_err());
        // A long run of zero length bytes must not overflow or allocate.
        let mut s = vec![0x16, b'h', b'e', b'l', b'l', b'o', 0x20];
        s.extend(std::iter::repeat_n(0u8, 100_000));
        assert!(matches!(decode(&s, 64), Err(CodecError::Truncated)));
    }

    #[test]
    fn round_trip_with_lzokay_compressor() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of {}\n", i % 977, i / 3).into_bytes())
            .take(300_000)
            .collect();
        for len in [0, 1, 2, 3, 4, 17, 100, 4096, 65_536, 300_000] {
            let mut packed = Vec::new();
            compress(&text[..len], &mut packed).unwrap();
            assert_eq!(decode(&packed, len).unwrap(), &text[..len], "len {len}");
        }
    }
}
