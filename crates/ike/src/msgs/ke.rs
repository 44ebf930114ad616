//! The Key Exchange payload (RFC 7296 §3.4).
//!
//! ```text
//! |   Diffie-Hellman Group Num    |           RESERVED            |
//! ~                       Key Exchange Data                       ~
//! ```
//!
//! The length of the data is the group's business (§3.4: checked by the exchange, answered
//! with INVALID_SYNTAX); RESERVED is ignored on receipt and emitted as zero.

use super::codec::{Reader, Writer};
use super::enums::DhGroup;
use super::error::ParseError;

/// A Key Exchange payload: the sender's Diffie-Hellman public value (§3.4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KePayload {
    /// The group of the public value.
    pub group: DhGroup,
    /// The public value (for ECP groups x ‖ y, RFC 5903 §7; for Curve25519 32 octets).
    pub data: Vec<u8>,
}

impl KePayload {
    /// Parses the body of a KE payload.
    pub fn parse(body: &[u8]) -> Result<KePayload, ParseError> {
        let mut r = Reader::new(body);
        let group = DhGroup(r.u16()?);
        let _reserved = r.u16()?;
        Ok(KePayload {
            group,
            data: r.rest().to_vec(),
        })
    }

    /// Appends the body of the KE payload.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u16(self.group.0);
        w.u16(0);
        w.bytes(&self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 8] = [0x00, 0x13, 0x00, 0x00, 0xaa, 0xbb, 0xcc, 0xdd];

    #[test]
    fn test_parse() {
        let ke = KePayload::parse(&BYTES).unwrap();
        assert_eq!(
            ke,
            KePayload {
                group: DhGroup::ECP_256,
                data: vec![0xaa, 0xbb, 0xcc, 0xdd]
            }
        );
        let mut reserved = BYTES;
        reserved[3] = 1;
        assert_eq!(KePayload::parse(&reserved).unwrap(), ke);
    }

    #[test]
    fn test_emit() {
        let mut out = Vec::new();
        KePayload::parse(&BYTES).unwrap().emit(&mut out);
        assert_eq!(out, BYTES);
    }

    #[test]
    fn test_check_len() {
        for n in 0..4 {
            assert!(KePayload::parse(&BYTES[..n]).is_err());
        }
        assert_eq!(
            KePayload::parse(&BYTES[..4]).unwrap().data,
            Vec::<u8>::new()
        );
    }
}
