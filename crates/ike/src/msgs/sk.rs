//! Framing of the Encrypted payload (RFC 7296 §3.14) and the Encrypted Fragment payload
//! (RFC 7383 §2.5). The cryptography is in [`super::protect`] and [`super::fragment`]; here
//! the body is opaque.
//!
//! ```text
//! Encrypted (SK): generic header whose Next Payload is the first inner payload, then
//! ~                 Initialization Vector ‖ Encrypted IKE Payloads ‖ ICV               ~
//! Encrypted Fragment (SKF): generic header, then
//! |        Fragment Number        |        Total Fragments        |
//! ~                 Initialization Vector ‖ Encrypted content ‖ ICV                    ~
//! ```

use super::codec::{Reader, Writer};
use super::enums::PayloadType;
use super::error::ParseError;

/// An Encrypted payload as on the wire (§3.14). It is the last payload of its chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Encrypted {
    /// The Next Payload field of the SK payload: the type of the first inner payload.
    pub first_inner: PayloadType,
    /// IV ‖ ciphertext ‖ ICV.
    pub body: Vec<u8>,
}

/// An Encrypted Fragment payload as on the wire (RFC 7383 §2.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EncryptedFragment {
    /// Fragment Number, from 1.
    pub fragment_number: u16,
    /// Total Fragments, at least `fragment_number`.
    pub total_fragments: u16,
    /// The Next Payload field: the first inner payload type in fragment 1, zero in the others.
    pub first_inner: PayloadType,
    /// IV ‖ ciphertext ‖ ICV.
    pub body: Vec<u8>,
}

impl EncryptedFragment {
    /// Length of the fields after the generic header that precede the IV.
    pub const HEADER_LEN: usize = 4;

    /// Parses the body of an SKF payload whose Next Payload field was `first_inner`.
    /// Fragment Number must be 1..=Total Fragments (RFC 7383 §2.5, §2.6.1).
    pub fn parse(first_inner: PayloadType, body: &[u8]) -> Result<EncryptedFragment, ParseError> {
        let mut r = Reader::new(body);
        let fragment_number = r.u16()?;
        let total_fragments = r.u16()?;
        if fragment_number == 0 || fragment_number > total_fragments {
            return Err(ParseError::InvalidSyntax("fragment number"));
        }
        Ok(EncryptedFragment {
            fragment_number,
            total_fragments,
            first_inner,
            body: r.rest().to_vec(),
        })
    }

    /// Appends the body of the SKF payload (the caller writes `first_inner` in the generic
    /// header).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u16(self.fragment_number);
        w.u16(self.total_fragments);
        w.bytes(&self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 7] = [0x00, 0x02, 0x00, 0x03, 0xaa, 0xbb, 0xcc];

    #[test]
    fn test_parse() {
        let f = EncryptedFragment::parse(PayloadType::NONE, &BYTES).unwrap();
        assert_eq!(
            f,
            EncryptedFragment {
                fragment_number: 2,
                total_fragments: 3,
                first_inner: PayloadType::NONE,
                body: vec![0xaa, 0xbb, 0xcc]
            }
        );
    }

    #[test]
    fn test_emit() {
        let mut out = Vec::new();
        EncryptedFragment::parse(PayloadType::NONE, &BYTES)
            .unwrap()
            .emit(&mut out);
        assert_eq!(out, BYTES);
    }

    #[test]
    fn test_check_len() {
        for n in 0..4 {
            assert!(EncryptedFragment::parse(PayloadType::SA, &BYTES[..n]).is_err());
        }
        for (num, total) in [(0u16, 1u16), (4, 3), (0, 0)] {
            let mut b = BYTES;
            b[..2].copy_from_slice(&num.to_be_bytes());
            b[2..4].copy_from_slice(&total.to_be_bytes());
            assert_eq!(
                EncryptedFragment::parse(PayloadType::SA, &b),
                Err(ParseError::InvalidSyntax("fragment number"))
            );
        }
    }
}
