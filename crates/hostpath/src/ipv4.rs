//! A validating view of an IPv4 header (RFC 791) and an emitter for the option-less headers this
//! crate sends.

use crate::checksum;
use std::net::Ipv4Addr;

/// Length of an IPv4 header without options (RFC 791 §3.1).
pub const MIN_HEADER_LEN: usize = 20;
/// TTL of datagrams this host originates (RFC 1700 / RFC 1122 §3.2.1.7 recommended default 64).
pub const DEFAULT_TTL: u8 = 64;

/// Why bytes are not an acceptable IPv4 datagram (RFC 791, RFC 1122 §3.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Shorter than the header, or than the header length / total length claims.
    Truncated,
    /// Version field is not 4.
    Version,
    /// IHL below 5 or total length below the header length.
    HeaderLength,
    /// Header checksum does not verify (RFC 1122 §3.2.1.2: silently discard).
    Checksum,
}

/// A parsed IPv4 datagram (RFC 791 §3.1): header fields plus slices of the header and payload, trimmed to the
/// total length (Ethernet padding removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<'a> {
    /// Type-of-service / DSCP+ECN byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment flag.
    pub dont_fragment: bool,
    /// More Fragments flag.
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// Time to live.
    pub ttl: u8,
    /// Protocol number of the payload.
    pub protocol: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// The whole header including options.
    pub header: &'a [u8],
    /// The payload, `total length - header length` bytes.
    pub payload: &'a [u8],
    /// The whole datagram (`header` followed by `payload`).
    pub datagram: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    /// Parses and validates an IPv4 datagram at the start of `data` (RFC 791 §3.1, RFC 1122
    /// §3.2.1.1-3.2.1.2: version, header length, total length, header checksum).
    pub fn parse(data: &'a [u8]) -> Result<Self, Ipv4Error> {
        let b = data.get(..MIN_HEADER_LEN).ok_or(Ipv4Error::Truncated)?;
        if b[0] >> 4 != 4 {
            return Err(Ipv4Error::Version);
        }
        let ihl = usize::from(b[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if ihl < MIN_HEADER_LEN || total < ihl {
            return Err(Ipv4Error::HeaderLength);
        }
        let datagram = data.get(..total).ok_or(Ipv4Error::Truncated)?;
        let (header, payload) = datagram.split_at(ihl);
        if checksum::checksum(header) != 0 {
            return Err(Ipv4Error::Checksum);
        }
        let flags_frag = u16::from_be_bytes([b[6], b[7]]);
        Ok(Ipv4Packet {
            tos: b[1],
            ident: u16::from_be_bytes([b[4], b[5]]),
            dont_fragment: flags_frag & 0x4000 != 0,
            more_fragments: flags_frag & 0x2000 != 0,
            frag_offset: flags_frag & 0x1fff,
            ttl: b[8],
            protocol: b[9],
            src: Ipv4Addr::new(b[12], b[13], b[14], b[15]),
            dst: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
            header,
            payload,
            datagram,
        })
    }

    /// True if this datagram is a fragment (first or later): MF set or a non-zero offset
    /// (RFC 791 §2.3).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments || self.frag_offset != 0
    }
}

/// Fields of an option-less IPv4 header to emit (RFC 791 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Type-of-service byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment flag.
    pub dont_fragment: bool,
    /// Time to live.
    pub ttl: u8,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
}

impl Ipv4Repr {
    /// Appends a 20-byte header with a correct header checksum for a payload of `payload_len`
    /// bytes (RFC 791). Returns `None`, appending nothing, if the datagram would exceed 65535.
    pub fn emit(&self, payload_len: usize, out: &mut Vec<u8>) -> Option<()> {
        let total = u16::try_from(MIN_HEADER_LEN.checked_add(payload_len)?).ok()?;
        let mut h = [0u8; MIN_HEADER_LEN];
        h[0] = 0x45;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[4..6].copy_from_slice(&self.ident.to_be_bytes());
        if self.dont_fragment {
            h[6] = 0x40;
        }
        h[8] = self.ttl;
        h[9] = self.protocol;
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        let c = checksum::ipv4_header(&h)?;
        h[10..12].copy_from_slice(&c.to_be_bytes());
        out.extend_from_slice(&h);
        Some(())
    }
}

/// True for a source address that must never be answered (RFC 1122 §3.2.1.3, §3.2.2): the
/// unspecified, "this network", limited broadcast, multicast, loopback and class E addresses.
pub fn is_bad_source(a: Ipv4Addr) -> bool {
    a.is_unspecified()
        || a.octets()[0] == 0
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_loopback()
        || a.octets()[0] >= 240
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_parse() {
        let r = Ipv4Repr {
            tos: 0x10,
            ident: 7,
            dont_fragment: true,
            ttl: 64,
            protocol: 1,
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 0, 2, 2),
        };
        let mut v = Vec::new();
        r.emit(4, &mut v).unwrap();
        v.extend_from_slice(&[9, 9, 9, 9, 0, 0]); // payload + padding
        let p = Ipv4Packet::parse(&v).unwrap();
        assert_eq!(
            (p.src, p.dst, p.ttl, p.protocol, p.tos),
            (r.src, r.dst, 64, 1, 0x10)
        );
        assert!(p.dont_fragment && !p.is_fragment());
        assert_eq!(p.payload, &[9, 9, 9, 9]);
        v[8] = 1; // corrupt TTL without fixing checksum
        assert_eq!(Ipv4Packet::parse(&v), Err(Ipv4Error::Checksum));
        assert_eq!(Ipv4Packet::parse(&v[..22]), Err(Ipv4Error::Truncated));
        assert!(r.emit(65_516, &mut Vec::new()).is_none());
    }
}
