//! The Identification payloads IDi and IDr (RFC 7296 §3.5).
//!
//! ```text
//! |   ID Type     |                 RESERVED                      |
//! ~                   Identification Data                         ~
//! ```
//!
//! RESERVED is ignored on receipt and emitted as zero; so is it in [`Identification::body`],
//! which is what AUTH signs (§2.15). A peer that sets RESERVED bits signs other octets and
//! fails authentication, which is the safe way round.

use super::codec::{Reader, Writer};
use super::enums::IdType;
use super::error::ParseError;

/// An identity (§3.5), carried in IDi or IDr.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identification {
    /// The type of the identity.
    pub id_type: IdType,
    /// The identity, interpreted by its type.
    pub data: Vec<u8>,
}

impl Identification {
    /// Parses the body of an ID payload.
    pub fn parse(body: &[u8]) -> Result<Identification, ParseError> {
        let mut r = Reader::new(body);
        let id_type = IdType(r.u8()?);
        let _reserved = r.take(3)?;
        Ok(Identification {
            id_type,
            data: r.rest().to_vec(),
        })
    }

    /// Appends the body of the ID payload.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u8(self.id_type.0);
        w.bytes(&[0, 0, 0]);
        w.bytes(&self.data);
    }

    /// The payload body after the generic header, ID Type ‖ RESERVED ‖ data: the
    /// RestOfInitIDPayload / RestOfRespIDPayload that AUTH covers (§2.15).
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.data.len());
        self.emit(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 15] = [
        0x02, 0x00, 0x00, 0x00, b'v', b'p', b'n', b'.', b't', b'e', b's', b't', b'.', b'e', b'x',
    ];

    #[test]
    fn test_parse() {
        let id = Identification::parse(&BYTES).unwrap();
        assert_eq!(
            id,
            Identification {
                id_type: IdType::FQDN,
                data: b"vpn.test.ex".to_vec()
            }
        );
    }

    #[test]
    fn test_emit() {
        let id = Identification::parse(&BYTES).unwrap();
        assert_eq!(id.body(), BYTES);
        let mut out = vec![9];
        id.emit(&mut out);
        assert_eq!(out[1..], BYTES);
    }

    #[test]
    fn test_check_len() {
        for n in 0..4 {
            assert!(Identification::parse(&BYTES[..n]).is_err());
        }
        assert!(Identification::parse(&BYTES[..4]).unwrap().data.is_empty());
    }
}
