//! Wire formats: the ESP header view (RFC 4303 §2) and its lengths. IP and UDP headers, the
//! protocol numbers and the internet checksum are `espada-wire`'s, re-exported here under the
//! names the engine uses (one implementation for the whole packet path).
//!
//! smoltcp style: [`EspPacket`] is a view over borrowed bytes with field offsets named like the
//! RFC. Use [`EspPacket::new_checked`] on untrusted input; after it succeeds no accessor panics.

use core::ops::Range;

/// A byte range of a header field.
pub type Field = Range<usize>;

pub use espada_wire::{checksum, proto, udp};

/// ESP header length: SPI + sequence number (RFC 4303 §2).
pub const ESP_HEADER_LEN: usize = 8;
/// AES-GCM explicit IV length in the ESP payload (RFC 4106 §3.1).
pub const GCM_IV_LEN: usize = 8;
/// AES-GCM ICV length used here (RFC 4106 §6: 16 octets).
pub const ICV_LEN: usize = 16;
/// ESP trailer without padding: pad length + next header (RFC 4303 §2.4–2.6).
pub const ESP_TRAILER_LEN: usize = 2;
/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = espada_wire::ipv4::MIN_HEADER_LEN;
/// IPv6 fixed header length.
pub const IPV6_HEADER_LEN: usize = espada_wire::ipv6::HEADER_LEN;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = espada_wire::udp::HEADER_LEN;

/// A read/write view of an ESP header (RFC 4303 §2, figure 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

/// Field offsets of the ESP header (RFC 4303 §2).
pub mod field {
    use super::Field;
    /// Security Parameters Index (RFC 4303 §2.1).
    pub const SPI: Field = 0..4;
    /// Sequence number, low 32 bits (RFC 4303 §2.2).
    pub const SEQUENCE_NUMBER: Field = 4..8;
    /// Start of the payload data (for AES-GCM: the 8-byte IV, RFC 4106 §3.1).
    pub const PAYLOAD: usize = 8;
}

/// The buffer is too short for the header it should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// A view without length check (for output into a buffer of known size).
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }
    /// A view of untrusted bytes: fails when shorter than the ESP header.
    pub fn new_checked(buffer: T) -> Result<Self, Truncated> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Checks the buffer holds the ESP header.
    pub fn check_len(&self) -> Result<(), Truncated> {
        if self.buffer.as_ref().len() < ESP_HEADER_LEN {
            Err(Truncated)
        } else {
            Ok(())
        }
    }
    /// The Security Parameters Index (RFC 4303 §2.1).
    pub fn security_parameters_index(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SPI])
    }
    /// The 32-bit sequence number field (RFC 4303 §2.2).
    pub fn sequence_number(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::SEQUENCE_NUMBER])
    }
    /// Everything after the ESP header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    /// Sets the SPI.
    pub fn set_security_parameters_index(&mut self, spi: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&spi.to_be_bytes());
    }
    /// Sets the 32-bit sequence number field.
    pub fn set_sequence_number(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQUENCE_NUMBER].copy_from_slice(&seq.to_be_bytes());
    }
}

/// Big-endian u16 from the first 2 bytes (0 if there are fewer: callers check the length
/// first). One length check and one load, where four indexings were four checks.
#[inline(always)]
pub(crate) fn be16(b: &[u8]) -> u16 {
    b.first_chunk().map_or(0, |w| u16::from_be_bytes(*w))
}

/// Big-endian u32 from the first 4 bytes (0 if there are fewer: callers check the length
/// first).
#[inline(always)]
pub(crate) fn be32(b: &[u8]) -> u32 {
    b.first_chunk().map_or(0, |w| u32::from_be_bytes(*w))
}

/// IPv4 header field offsets and the DF flag (RFC 791 §3.1), `espada-wire`'s, for building the
/// outer header template.
pub mod ipv4 {
    pub use espada_wire::ipv4::DF;
    pub use espada_wire::ipv4::field::*;
}

/// IPv6 header field offsets (RFC 8200 §3), `espada-wire`'s, for building the outer header
/// template.
pub mod ipv6 {
    pub use espada_wire::ipv6::field::*;
}

#[cfg(test)]
mod tests {
    use super::*;

    // ESP header of the RFC 4106-style packet produced by scapy (SPI 0x00001234, seq 1).
    static PACKET_BYTES: [u8; 12] = [0x00, 0x00, 0x12, 0x34, 0x00, 0x00, 0x00, 0x01, 1, 2, 3, 4];

    #[test]
    fn test_deconstruct() {
        let p = EspPacket::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.security_parameters_index(), 0x1234);
        assert_eq!(p.sequence_number(), 1);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0u8; 12];
        bytes[8..].copy_from_slice(&[1, 2, 3, 4]);
        let mut p = EspPacket::new_unchecked(&mut bytes[..]);
        p.set_security_parameters_index(0x1234);
        p.set_sequence_number(1);
        assert_eq!(p.into_inner(), &PACKET_BYTES[..]);
    }

    #[test]
    fn test_check_len() {
        assert_eq!(EspPacket::new_checked(&PACKET_BYTES[..7]), Err(Truncated));
        assert!(EspPacket::new_checked(&PACKET_BYTES[..8]).is_ok());
    }
}
