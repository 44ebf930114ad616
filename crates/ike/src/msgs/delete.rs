//! The Delete payload (RFC 7296 §3.11).
//!
//! ```text
//! | Protocol ID   |   SPI Size    |          Num of SPIs          |
//! ~               Security Parameter Index(es) (SPI)              ~
//! ```
//!
//! Checked on receipt: the SPIs fill the payload exactly; IKE has SPI size 0 (the SA is the
//! one the message belongs to), AH and ESP size 4; and SPIs of size 0 are never counted (a
//! count with nothing to count is malformed, and would make a tiny payload expand into
//! thousands of empty entries).

use super::codec::{Reader, Writer};
use super::enums::ProtocolId;
use super::error::ParseError;

/// A Delete payload: SAs the sender has deleted (§3.11, §1.4.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Delete {
    /// The protocol of the SAs.
    pub protocol: ProtocolId,
    /// The size of each SPI (0 for IKE, 4 for ESP and AH).
    pub spi_size: u8,
    /// The SPIs, each `spi_size` octets long (the inbound SPIs of the sender's SAs).
    pub spis: Vec<Vec<u8>>,
}

/// The SPI size each protocol must use (§3.11); others are not checked.
const SPI_SIZE: &[(ProtocolId, u8)] = &[
    (ProtocolId::IKE, 0),
    (ProtocolId::AH, 4),
    (ProtocolId::ESP, 4),
];

impl Delete {
    /// Deletion of the IKE SA this message belongs to.
    pub fn ike() -> Self {
        Delete {
            protocol: ProtocolId::IKE,
            spi_size: 0,
            spis: Vec::new(),
        }
    }

    /// Deletion of ESP SAs by their (the sender's inbound) SPIs.
    pub fn esp(spis: &[u32]) -> Self {
        Delete {
            protocol: ProtocolId::ESP,
            spi_size: 4,
            spis: spis.iter().map(|s| s.to_be_bytes().to_vec()).collect(),
        }
    }

    /// The SPIs that are four octets long, as `u32`s.
    pub fn esp_spis(&self) -> Vec<u32> {
        self.spis
            .iter()
            .filter_map(|s| {
                <[u8; 4]>::try_from(s.as_slice())
                    .ok()
                    .map(u32::from_be_bytes)
            })
            .collect()
    }

    /// Parses the body of a Delete payload.
    pub fn parse(body: &[u8]) -> Result<Delete, ParseError> {
        let mut r = Reader::new(body);
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let count = usize::from(r.u16()?);
        if SPI_SIZE
            .iter()
            .any(|&(p, s)| p == protocol && s != spi_size)
        {
            return Err(ParseError::InvalidSyntax("delete SPI size"));
        }
        if spi_size == 0 && count != 0 {
            return Err(ParseError::InvalidSyntax("delete SPIs of size zero"));
        }
        if r.remaining() != count * usize::from(spi_size) {
            return Err(ParseError::InvalidSyntax("delete number of SPIs"));
        }
        let mut spis = Vec::with_capacity(count);
        for _ in 0..count {
            spis.push(r.take(usize::from(spi_size))?.to_vec());
        }
        Ok(Delete {
            protocol,
            spi_size,
            spis,
        })
    }

    /// Appends the body of the Delete payload (`spi_size` as given; each SPI as it is).
    ///
    /// # Panics
    ///
    /// If there are more than 65535 SPIs.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u8(self.protocol.0);
        w.u8(self.spi_size);
        w.u16(u16::try_from(self.spis.len()).unwrap_or_else(|_| panic!("over 65535 SPIs")));
        for s in &self.spis {
            w.bytes(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ESP: [u8; 12] = [0x03, 0x04, 0x00, 0x02, 0, 0, 0, 1, 0xff, 0, 0, 2];
    static IKE: [u8; 4] = [0x01, 0x00, 0x00, 0x00];

    #[test]
    fn test_parse() {
        let d = Delete::parse(&ESP).unwrap();
        assert_eq!(d, Delete::esp(&[1, 0xff00_0002]));
        assert_eq!(d.esp_spis(), [1, 0xff00_0002]);
        assert_eq!(Delete::parse(&IKE).unwrap(), Delete::ike());
    }

    #[test]
    fn test_emit() {
        let mut out = Vec::new();
        Delete::esp(&[1, 0xff00_0002]).emit(&mut out);
        assert_eq!(out, ESP);
        out.clear();
        Delete::ike().emit(&mut out);
        assert_eq!(out, IKE);
    }

    #[test]
    fn test_check_len() {
        for n in 0..ESP.len() {
            assert!(Delete::parse(&ESP[..n]).is_err(), "{n} octets");
        }
        let mut long = ESP.to_vec();
        long.push(0);
        assert!(Delete::parse(&long).is_err());
        let table: &[&[u8]] = &[
            &[0x01, 0x08, 0x00, 0x00],       // IKE with SPI size 8
            &[0x03, 0x00, 0x00, 0x00],       // ESP with SPI size 0
            &[0x01, 0x00, 0xff, 0xff],       // 65535 SPIs of size 0
            &[0x09, 0x02, 0x00, 0x01, 0x00], // unknown protocol, SPI cut short
        ];
        for b in table {
            assert!(Delete::parse(b).is_err(), "{b:?}");
        }
        assert_eq!(
            Delete::parse(&[9, 2, 0, 1, 0xab, 0xcd]).unwrap().spis,
            [vec![0xab, 0xcd]]
        );
    }
}
