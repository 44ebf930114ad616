//! The IKE header (RFC 7296 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Initiator's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       IKE SA Responder's SPI                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                          Message ID                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                            Length                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use super::codec::{Reader, Writer};
use super::enums::{ExchangeType, PayloadType};
use super::error::ParseError;

/// The fixed 28-octet header of every IKE message (RFC 7296 §3.1).
///
/// All fields are kept as received (including reserved flag bits), so emitting a parsed
/// header reproduces its octets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// IKE SA Initiator's SPI.
    pub spi_i: u64,
    /// IKE SA Responder's SPI (zero in the first IKE_SA_INIT request).
    pub spi_r: u64,
    /// Type of the first payload.
    pub next_payload: PayloadType,
    /// Major version (2 for RFC 7296).
    pub major_version: u8,
    /// Minor version (0 for RFC 7296).
    pub minor_version: u8,
    /// Exchange type.
    pub exchange: ExchangeType,
    /// Flags: [`Header::FLAG_INITIATOR`], [`Header::FLAG_VERSION`], [`Header::FLAG_RESPONSE`].
    pub flags: u8,
    /// Message ID (§2.2).
    pub message_id: u32,
    /// Length of the whole message, header included.
    pub length: u32,
}

impl Header {
    /// Length of the header in octets.
    pub const LEN: usize = 28;
    /// The I(nitiator) flag: set by the original initiator of the IKE SA.
    pub const FLAG_INITIATOR: u8 = 0x08;
    /// The V(ersion) flag: the sender can speak a higher major version.
    pub const FLAG_VERSION: u8 = 0x10;
    /// The R(esponse) flag: this message is a response.
    pub const FLAG_RESPONSE: u8 = 0x20;
    /// The major version this crate speaks.
    pub const MAJOR_VERSION: u8 = 2;

    /// Parses the first 28 octets of `bytes` (which may be longer). Any version is accepted:
    /// see [`Header::check_version`].
    pub fn parse(bytes: &[u8]) -> Result<Header, ParseError> {
        let mut r = Reader::new(bytes);
        let spi_i = r.u64()?;
        let spi_r = r.u64()?;
        let next_payload = PayloadType(r.u8()?);
        let version = r.u8()?;
        Ok(Header {
            spi_i,
            spi_r,
            next_payload,
            major_version: version >> 4,
            minor_version: version & 0x0f,
            exchange: ExchangeType(r.u8()?),
            flags: r.u8()?,
            message_id: r.u32()?,
            length: r.u32()?,
        })
    }

    /// Rejects a major version other than 2 (§2.5: answered with INVALID_MAJOR_VERSION).
    pub fn check_version(&self) -> Result<(), ParseError> {
        if self.major_version == Self::MAJOR_VERSION {
            Ok(())
        } else {
            Err(ParseError::InvalidMajorVersion(self.major_version))
        }
    }

    /// Appends the 28 octets (versions are truncated to their 4 bits).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u64(self.spi_i);
        w.u64(self.spi_r);
        w.u8(self.next_payload.0);
        w.u8((self.major_version << 4) | (self.minor_version & 0x0f));
        w.u8(self.exchange.0);
        w.u8(self.flags);
        w.u32(self.message_id);
        w.u32(self.length);
    }

    /// Whether the R flag is set.
    pub fn is_response(&self) -> bool {
        self.flags & Self::FLAG_RESPONSE != 0
    }

    /// Whether the I flag is set (sent by the original initiator).
    pub fn is_initiator(&self) -> bool {
        self.flags & Self::FLAG_INITIATOR != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 28] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // SPIi
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // SPIr
        0x21, 0x20, 0x22, 0x08, // SA, 2.0, IKE_SA_INIT, I
        0x00, 0x00, 0x00, 0x00, // message ID
        0x00, 0x00, 0x01, 0x2c, // length 300
    ];

    fn header() -> Header {
        Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0,
            next_payload: PayloadType::SA,
            major_version: 2,
            minor_version: 0,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Header::FLAG_INITIATOR,
            message_id: 0,
            length: 300,
        }
    }

    #[test]
    fn test_parse() {
        let h = Header::parse(&BYTES).unwrap();
        assert_eq!(h, header());
        assert!(h.is_initiator());
        assert!(!h.is_response());
        assert_eq!(h.check_version(), Ok(()));
    }

    #[test]
    fn test_emit() {
        let mut out = Vec::new();
        header().emit(&mut out);
        assert_eq!(out, BYTES);
    }

    #[test]
    fn test_check_len() {
        for n in 0..Header::LEN {
            assert!(Header::parse(&BYTES[..n]).is_err(), "{n} octets");
        }
    }

    #[test]
    fn test_version() {
        let mut b = BYTES;
        b[17] = 0x31;
        let h = Header::parse(&b).unwrap();
        assert_eq!((h.major_version, h.minor_version), (3, 1));
        assert_eq!(h.check_version(), Err(ParseError::InvalidMajorVersion(3)));
        let mut out = Vec::new();
        h.emit(&mut out);
        assert_eq!(out, b);
    }
}
