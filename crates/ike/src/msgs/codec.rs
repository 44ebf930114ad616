//! Bounded reading and writing of network-order integers.
//!
//! [`Reader`] never reads past its slice: every accessor returns
//! [`ParseError::InvalidSyntax`] when the input is too short, and [`Reader::sub`] carves out a
//! nested structure whose declared length is checked against what is left. [`Writer`] appends
//! to a `Vec<u8>` and fills in length fields once the structure they cover is written.

use super::error::ParseError;

/// The error of every short read.
const TRUNCATED: ParseError = ParseError::InvalidSyntax("truncated");

/// A cursor over a byte slice that fails instead of reading past its end.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Octets not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` octets.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if n > self.buf.len() {
            return Err(TRUNCATED);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// A reader over the next `len` octets, which this reader skips.
    pub fn sub(&mut self, len: usize) -> Result<Reader<'a>, ParseError> {
        self.take(len).map(Reader::new)
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    /// The next `N` octets as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One octet.
    pub fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, ParseError> {
        self.array().map(u16::from_be_bytes)
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, ParseError> {
        self.array().map(u32::from_be_bytes)
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, ParseError> {
        self.array().map(u64::from_be_bytes)
    }

    /// Succeeds only if everything was read; `what` names the structure with trailing octets.
    pub fn finish(&self, what: &'static str) -> Result<(), ParseError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ParseError::InvalidSyntax(what))
        }
    }
}

/// Appends network-order fields to a `Vec<u8>`.
#[derive(Debug)]
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// The position of a length field written by [`Writer::placeholder_u16`].
#[derive(Clone, Copy, Debug)]
#[must_use = "a placeholder must be filled"]
pub struct LenField {
    at: usize,
    from: usize,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    /// Octets in the buffer, including what was there before this writer.
    pub fn position(&self) -> usize {
        self.out.len()
    }

    /// Appends octets.
    pub fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    /// Appends one octet.
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    /// Appends a big-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }

    /// Appends a big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    /// Appends a big-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }

    /// Writes a zero `u16` to be replaced by [`Writer::fill_u16`] with the number of octets
    /// from `from` (a [`Writer::position`]) to the end of what is written by then.
    pub fn placeholder_u16(&mut self, from: usize) -> LenField {
        let at = self.out.len();
        self.u16(0);
        LenField { at, from }
    }

    /// Fills a length field (see [`Writer::placeholder_u16`] and [`LenField::fill`]).
    pub fn fill_u16(&mut self, f: LenField) {
        f.fill(self.out);
    }
}

impl LenField {
    /// Writes the number of octets from the field's start position to the end of `out`.
    ///
    /// # Panics
    ///
    /// If the structure is longer than 65535 octets: the caller built a payload that no
    /// length field can describe (nothing a parser returns is that long).
    pub fn fill(self, out: &mut [u8]) {
        let len = u16::try_from(out.len() - self.from)
            .unwrap_or_else(|_| panic!("structure longer than a 16-bit length field allows"));
        out[self.at..self.at + 2].copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_read() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 9]);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(2));
        assert_eq!(r.u32(), Ok(3));
        assert_eq!(r.u64(), Ok(4));
        assert_eq!(r.finish("x"), Err(ParseError::InvalidSyntax("x")));
        assert_eq!(r.rest(), &[9]);
        assert!(r.is_empty());
        assert_eq!(r.finish("x"), Ok(()));
    }

    #[test]
    fn test_check_len() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32(), Err(TRUNCATED));
        // A failed read consumes nothing.
        assert_eq!(r.remaining(), 3);
        assert!(r.sub(4).is_err());
        let mut s = r.sub(2).unwrap();
        assert_eq!(s.u16(), Ok(0x0102));
        assert_eq!(s.u8(), Err(TRUNCATED));
        assert_eq!(r.take(1), Ok(&[3][..]));
        assert_eq!(r.take(usize::MAX), Err(TRUNCATED));
    }

    #[test]
    fn test_write() {
        let mut out = vec![0xff];
        let mut w = Writer::new(&mut out);
        let start = w.position();
        w.u8(1);
        let len = w.placeholder_u16(start);
        w.u32(0x0203_0405);
        w.u64(6);
        w.fill_u16(len);
        assert_eq!(out, [0xff, 1, 0, 15, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0, 6]);
    }
}
