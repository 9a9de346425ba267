//! The MQTT data representations (section 1.5): integers, Variable Byte Integers, UTF-8 strings
//! and binary data, read from a frozen packet body and written to an output buffer.
//!
//! Everything that touches raw bytes lives here, so the packet decoders above never index a
//! buffer themselves: every read is bounds-checked and a short body is a Malformed Packet, never
//! a panic. Strings and binary data are slices of the packet's `Bytes`, not copies.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::DecodeError;

/// The largest value a Variable Byte Integer can hold (4 bytes, 1.5.5).
pub(super) const MAX_VARINT: usize = 268_435_455;

const TRUNCATED: DecodeError = DecodeError::Malformed("packet shorter than its contents");

/// Parses a Variable Byte Integer from the front of `buf`, which may hold only part of it.
///
/// Returns `Ok(None)` while the integer is incomplete, `Ok(Some((value, bytes_used)))` once it is
/// whole. A non-minimal encoding (a last byte of 0 after a continuation byte) is malformed
/// [MQTT-1.5.5-1].
pub(super) fn peek_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value = 0u32;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::Malformed(
                    "variable byte integer not minimally encoded",
                ));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        // 1.5.5: at most four bytes.
        Err(DecodeError::Malformed(
            "variable byte integer longer than 4 bytes",
        ))
    } else {
        Ok(None)
    }
}

/// Checks a UTF-8 Encoded String and wraps it without copying.
pub(super) fn utf8(bytes: Bytes) -> Result<ByteString, DecodeError> {
    // [MQTT-1.5.4-2] no U+0000. In UTF-8 a 0x00 byte only ever encodes U+0000.
    if bytes.contains(&0) {
        return Err(DecodeError::Malformed("UTF-8 string contains U+0000"));
    }
    // [MQTT-1.5.4-1] well-formed UTF-8, no surrogates (Rust's validation rejects them).
    ByteString::try_from(bytes).map_err(|_| DecodeError::Malformed("invalid UTF-8 string"))
}

/// A cursor over one packet's body (everything after the fixed header).
pub(super) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(super) fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub(super) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(TRUNCATED)
        } else {
            Ok(())
        }
    }

    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    pub(super) fn varint(&mut self) -> Result<u32, DecodeError> {
        match peek_varint(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(TRUNCATED),
        }
    }

    /// The next `n` bytes as a slice sharing the packet's allocation.
    pub(super) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    /// Binary Data (1.5.6): a two byte length then that many bytes.
    pub(super) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// UTF-8 Encoded String (1.5.4).
    pub(super) fn string(&mut self) -> Result<ByteString, DecodeError> {
        utf8(self.binary()?)
    }

    /// Everything left (a PUBLISH payload).
    pub(super) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// The body must be consumed exactly: trailing bytes make the packet malformed.
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "bytes left over after the packet's contents",
            ))
        }
    }
}

/// Bytes used by the Variable Byte Integer encoding of `value`.
///
/// Values above [`MAX_VARINT`] cannot be encoded; they count as 4 bytes so that sizing an
/// oversized packet (in order to refuse it) never panics.
pub(super) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(super) fn put_varint(out: &mut BytesMut, mut value: usize) {
    debug_assert!(
        value <= MAX_VARINT,
        "variable byte integer out of range: {value}"
    );
    loop {
        // Truncation intended: the low 7 bits.
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}

/// Encoded size of `bytes` as Binary Data or a UTF-8 string (two byte length prefix).
pub(super) fn prefixed_len(bytes: &[u8]) -> usize {
    2 + bytes.len()
}

/// Writes Binary Data or a UTF-8 string: a two byte length then the bytes.
pub(super) fn put_prefixed(out: &mut BytesMut, bytes: &[u8]) {
    debug_assert!(
        bytes.len() <= usize::from(u16::MAX),
        "string or binary longer than 65535 bytes"
    );
    // The packet types cannot carry longer values; the broker never builds one.
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}
