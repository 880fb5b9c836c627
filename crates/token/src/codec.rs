//! Byte-level reader and writer for the token format.
//!
//! Every read is bounds-checked and returns [`Malformed`] instead of panicking; integers are
//! unsigned LEB128 and must be minimally encoded, so each value has exactly one encoding.

use crate::error::Malformed;

/// Longest string the format accepts (tool names, keys, identities), in bytes.
pub(crate) const MAX_STR: usize = 1024;

/// The first `N` bytes of SHA-256(`dst` ‖ `data`): the format's derived ids.
pub(crate) fn truncated_sha256<const N: usize>(dst: &[u8], data: &[u8]) -> [u8; N] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(dst);
    ctx.update(data);
    let digest = ctx.finish();
    let mut out = [0u8; N];
    // N is 8 or 16 at the call sites, below SHA-256's 32 bytes.
    if let Some(prefix) = digest.as_ref().get(..N) {
        out.copy_from_slice(prefix);
    }
    out
}

/// Appends encoded values to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    pub(crate) fn varint(&mut self, mut v: u64) {
        loop {
            // Truncation is intended: the low seven bits.
            let low = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(low);
                return;
            }
            self.buf.push(low | 0x80);
        }
    }

    pub(crate) fn len(&mut self, n: usize) {
        self.varint(n as u64);
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.len(s.len());
        self.bytes(s.as_bytes());
    }
}

/// Reads encoded values from a byte slice, strictly.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), Malformed> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes"))
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Malformed> {
        let (&first, rest) = self.rest.split_first().ok_or(Malformed("truncated"))?;
        self.rest = rest;
        Ok(first)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let (head, rest) = self
            .rest
            .split_at_checked(n)
            .ok_or(Malformed("truncated"))?;
        self.rest = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let head = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may carry only the top bit of a u64.
            if shift == 63 && bits > 1 {
                return Err(Malformed("integer overflow"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                // A zero final group after the first byte means a longer-than-needed encoding.
                if bits == 0 && shift != 0 {
                    return Err(Malformed("non-minimal integer"));
                }
                return Ok(value);
            }
        }
        Err(Malformed("integer overflow"))
    }

    /// A length or count, which can never exceed the bytes left (each item takes one or more).
    pub(crate) fn len(&mut self) -> Result<usize, Malformed> {
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.rest.len() => Ok(n),
            _ => Err(Malformed("length exceeds input")),
        }
    }

    /// A non-empty UTF-8 string of at most [`MAX_STR`] bytes.
    pub(crate) fn str(&mut self) -> Result<String, Malformed> {
        let n = self.len()?;
        if n == 0 {
            return Err(Malformed("empty string"));
        }
        if n > MAX_STR {
            return Err(Malformed("string too long"));
        }
        let raw = self.take(n)?;
        let s = core::str::from_utf8(raw).map_err(|_| Malformed("string is not utf-8"))?;
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests;
