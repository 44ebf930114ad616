//! Wire formats: the ESP header view (RFC 4303 §2), minimal IPv4 (RFC 791), IPv6 (RFC 8200)
//! and UDP (RFC 768) header helpers, and the internet checksum (RFC 1071, RFC 1624).
//!
//! smoltcp style: [`EspPacket`] is a view over borrowed bytes with field offsets named like the
//! RFC. Use [`EspPacket::new_checked`] on untrusted input; after it succeeds no accessor panics.

use core::ops::Range;

/// A byte range of a header field.
pub type Field = Range<usize>;

/// IP protocol numbers used here (IANA "Assigned Internet Protocol Numbers").
pub mod proto {
    /// ICMP (RFC 792).
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulated in IP (inner IPv4 in tunnel mode, RFC 4303 §2.6).
    pub const IPV4: u8 = 4;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// IPv6 encapsulated (inner IPv6 in tunnel mode).
    pub const IPV6: u8 = 41;
    /// ESP (RFC 4303).
    pub const ESP: u8 = 50;
    /// ICMPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// No next header: ESP dummy packets (RFC 4303 §2.6).
    pub const NO_NEXT_HEADER: u8 = 59;
    /// IPv6 hop-by-hop options (RFC 8200 §4.3).
    pub const HOP_BY_HOP: u8 = 0;
    /// IPv6 routing header (RFC 8200 §4.4).
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header (RFC 8200 §4.5).
    pub const FRAGMENT: u8 = 44;
    /// IPv6 destination options (RFC 8200 §4.6).
    pub const DEST_OPTS: u8 = 60;
}

/// ESP header length: SPI + sequence number (RFC 4303 §2).
pub const ESP_HEADER_LEN: usize = 8;
/// AES-GCM explicit IV length in the ESP payload (RFC 4106 §3.1).
pub const GCM_IV_LEN: usize = 8;
/// AES-GCM ICV length used here (RFC 4106 §6: 16 octets).
pub const ICV_LEN: usize = 16;
/// ESP trailer without padding: pad length + next header (RFC 4303 §2.4–2.6).
pub const ESP_TRAILER_LEN: usize = 2;
/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_HEADER_LEN: usize = 40;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;

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

/// Big-endian u16 from the first 2 bytes (caller guarantees the length).
#[inline(always)]
pub(crate) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Big-endian u32 from the first 4 bytes (caller guarantees the length).
#[inline(always)]
pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// IPv4 header field offsets (RFC 791 §3.1).
pub mod ipv4 {
    use super::Field;
    /// Version and IHL.
    pub const VER_IHL: usize = 0;
    /// Type of service: DSCP (6 bits) and ECN (2 bits), RFC 2474 / RFC 3168.
    pub const TOS: usize = 1;
    /// Total length.
    pub const LENGTH: Field = 2..4;
    /// Identification.
    pub const IDENT: Field = 4..6;
    /// Flags (DF = 0x4000, MF = 0x2000) and fragment offset.
    pub const FLAGS_FRAG: Field = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Field = 10..12;
    /// Source address.
    pub const SRC: Field = 12..16;
    /// Destination address.
    pub const DST: Field = 16..20;
    /// Don't Fragment flag in the flags/fragment-offset word.
    pub const DF: u16 = 0x4000;
    /// More Fragments flag.
    pub const MF: u16 = 0x2000;
    /// Fragment offset mask.
    pub const FRAG_OFFSET: u16 = 0x1fff;
}

/// IPv6 header field offsets (RFC 8200 §3).
pub mod ipv6 {
    use super::Field;
    /// Version, traffic class, flow label.
    pub const VER_TC_FLOW: Field = 0..4;
    /// Payload length.
    pub const PAYLOAD_LEN: Field = 4..6;
    /// Next header.
    pub const NEXT_HEADER: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC: Field = 8..24;
    /// Destination address.
    pub const DST: Field = 24..40;

    /// Most extension headers walked before giving up (a chain longer than this is treated
    /// as malformed).
    pub const MAX_EXTENSION_HEADERS: usize = 8;

    /// Where the upper-layer header of the IPv6 packet `pkt` (`len` bytes, header checked)
    /// starts, past hop-by-hop, routing and destination options headers (RFC 8200 §4): its
    /// offset and protocol, or `None` when a header runs past the packet or the chain is
    /// longer than [`MAX_EXTENSION_HEADERS`]. A fragment header stops the walk and is
    /// returned as protocol [`super::proto::FRAGMENT`] at its own offset.
    pub fn upper_layer(pkt: &[u8], len: usize) -> Option<(usize, u8)> {
        use super::proto::{DEST_OPTS, FRAGMENT, HOP_BY_HOP, ROUTING};
        let mut off = super::IPV6_HEADER_LEN;
        let mut next = pkt[NEXT_HEADER];
        for _ in 0..MAX_EXTENSION_HEADERS {
            match next {
                HOP_BY_HOP | ROUTING | DEST_OPTS => {
                    if off + 8 > len {
                        return None;
                    }
                    next = pkt[off];
                    off += (usize::from(pkt[off + 1]) + 1) * 8;
                    if off > len {
                        return None;
                    }
                }
                FRAGMENT => return (off + 8 <= len).then_some((off, FRAGMENT)),
                p => return Some((off, p)),
            }
        }
        None
    }
}

/// UDP header field offsets (RFC 768).
pub mod udp {
    use super::Field;
    /// Source port.
    pub const SRC_PORT: Field = 0..2;
    /// Destination port.
    pub const DST_PORT: Field = 2..4;
    /// Length (header + payload).
    pub const LENGTH: Field = 4..6;
    /// Checksum (0 = none, IPv4 only).
    pub const CHECKSUM: Field = 6..8;
}

/// Traffic class of an IPv6 header (the byte spanning the first two 32-bit-word nibbles).
#[inline(always)]
pub(crate) fn ipv6_traffic_class(h: &[u8]) -> u8 {
    (h[0] << 4) | (h[1] >> 4)
}

/// Sets the traffic class of an IPv6 header.
#[inline(always)]
pub(crate) fn set_ipv6_traffic_class(h: &mut [u8], tc: u8) {
    h[0] = (h[0] & 0xf0) | (tc >> 4);
    h[1] = (h[1] & 0x0f) | (tc << 4);
}

/// The internet checksum (RFC 1071).
pub mod checksum {
    /// Ones'-complement sum of `data` as big-endian 16-bit words (odd tail padded with zero),
    /// not folded. Add several with `wrapping_add` on `u64`, then [`fold`].
    #[inline]
    pub fn sum(data: &[u8]) -> u64 {
        let mut acc: u64 = 0;
        let mut chunks = data.chunks_exact(4);
        for c in &mut chunks {
            acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
        }
        let rest = chunks.remainder();
        let mut i = 0;
        while i + 1 < rest.len() {
            acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
            i += 2;
        }
        if i < rest.len() {
            acc += u64::from(rest[i]) << 8;
        }
        acc
    }

    /// Folds a sum into 16 bits (not complemented).
    #[inline]
    pub fn fold(mut acc: u64) -> u16 {
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// The checksum field value for `data` (complement of the folded sum).
    #[inline]
    pub fn data(data: &[u8]) -> u16 {
        !fold(sum(data))
    }

    /// Incremental update of a checksum field when one 16-bit word changes from `old` to `new`
    /// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
    #[inline]
    pub fn update(hc: u16, old: u16, new: u16) -> u16 {
        !fold(u64::from(!hc) + u64::from(!old) + u64::from(new))
    }
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

    #[test]
    fn ipv4_checksum_known_answer() {
        // RFC 1071-style example header from Wikipedia's IPv4 header checksum article.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum::data(&h), 0xb861);
        let mut h2 = h;
        h2[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(checksum::data(&h2), 0);
        // Incremental update of the TTL/protocol word gives the same as recomputing.
        let mut h3 = h2;
        h3[8] = 0x3f;
        let upd = checksum::update(0xb861, 0x4011, 0x3f11);
        h3[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(upd, checksum::data(&h3));
    }

    #[test]
    fn odd_length_sum() {
        assert_eq!(checksum::fold(checksum::sum(&[0x01, 0x02, 0x03])), 0x0402);
    }

    #[test]
    fn traffic_class_roundtrip() {
        let mut h = [0x60u8, 0x0a, 0xbc, 0xde];
        set_ipv6_traffic_class(&mut h, 0xb9);
        assert_eq!(ipv6_traffic_class(&h), 0xb9);
        assert_eq!(h, [0x6b, 0x9a, 0xbc, 0xde]);
    }
}
