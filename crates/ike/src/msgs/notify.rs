//! The Notify payload (RFC 7296 §3.10).
//!
//! ```text
//! |  Protocol ID  |   SPI Size    |      Notify Message Type      |
//! ~                Security Parameter Index (SPI)                 ~
//! ~                       Notification Data                       ~
//! ```
//!
//! The Protocol ID is kept as received even when the SPI is empty (where §3.10 says it is
//! ignored), so a parsed notification emits unchanged.

use super::codec::{Reader, Writer};
use super::enums::{NotifyType, ProtocolId};
use super::error::ParseError;

/// A notification: an error or status message (§3.10).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notify {
    /// The protocol of the SA the SPI names; [`ProtocolId::NONE`] when there is no SPI.
    pub protocol: ProtocolId,
    /// The SPI (empty, or 4 octets for ESP/AH, or 8 for IKE).
    pub spi: Vec<u8>,
    /// The notification type.
    pub ty: NotifyType,
    /// Notification Data, interpreted by the type.
    pub data: Vec<u8>,
}

impl Notify {
    /// A notification about no SA in particular (protocol 0, no SPI).
    pub fn new(ty: NotifyType, data: Vec<u8>) -> Self {
        Notify {
            protocol: ProtocolId::NONE,
            spi: Vec::new(),
            ty,
            data,
        }
    }

    /// A notification about an ESP Child SA (protocol ESP, its 4-octet SPI), as REKEY_SA
    /// uses (§1.3.3).
    pub fn for_child(ty: NotifyType, spi: u32, data: Vec<u8>) -> Self {
        Notify {
            protocol: ProtocolId::ESP,
            spi: spi.to_be_bytes().to_vec(),
            ty,
            data,
        }
    }

    /// The SPI as a `u32` if it is four octets long.
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }

    /// Parses the body of a Notify payload.
    pub fn parse(body: &[u8]) -> Result<Notify, ParseError> {
        let mut r = Reader::new(body);
        let protocol = ProtocolId(r.u8()?);
        let spi_size = usize::from(r.u8()?);
        let ty = NotifyType(r.u16()?);
        let spi = r
            .take(spi_size)
            .map_err(|_| ParseError::InvalidSyntax("notify SPI size"))?
            .to_vec();
        Ok(Notify {
            protocol,
            spi,
            ty,
            data: r.rest().to_vec(),
        })
    }

    /// Appends the body of the Notify payload.
    ///
    /// # Panics
    ///
    /// If the SPI is longer than 255 octets.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u8(self.protocol.0);
        w.u8(u8::try_from(self.spi.len()).unwrap_or_else(|_| panic!("SPI longer than 255")));
        w.u16(self.ty.0);
        w.bytes(&self.spi);
        w.bytes(&self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// REKEY_SA for ESP SPI 0x01020304.
    static REKEY: [u8; 8] = [0x03, 0x04, 0x40, 0x09, 0x01, 0x02, 0x03, 0x04];
    /// IKEV2_FRAGMENTATION_SUPPORTED, no SPI, no data.
    static FRAG: [u8; 4] = [0x00, 0x00, 0x40, 0x2e];

    #[test]
    fn test_parse() {
        let n = Notify::parse(&REKEY).unwrap();
        assert_eq!(
            n,
            Notify::for_child(NotifyType::REKEY_SA, 0x0102_0304, vec![])
        );
        assert_eq!(n.spi_u32(), Some(0x0102_0304));
        assert_eq!(
            Notify::parse(&FRAG).unwrap(),
            Notify::new(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![])
        );
        let mut cookie = FRAG.to_vec();
        cookie[3] = 0x06;
        cookie.extend_from_slice(&[1, 2, 3]);
        let n = Notify::parse(&cookie).unwrap();
        assert_eq!((n.ty, n.data), (NotifyType::COOKIE, vec![1, 2, 3]));
    }

    #[test]
    fn test_emit() {
        let mut out = Vec::new();
        Notify::for_child(NotifyType::REKEY_SA, 0x0102_0304, vec![]).emit(&mut out);
        assert_eq!(out, REKEY);
        out.clear();
        Notify::new(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![]).emit(&mut out);
        assert_eq!(out, FRAG);
    }

    #[test]
    fn test_check_len() {
        for n in 0..REKEY.len() {
            assert!(Notify::parse(&REKEY[..n]).is_err(), "{n} octets");
        }
    }
}
