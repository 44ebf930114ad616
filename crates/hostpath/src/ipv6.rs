//! A view of the IPv6 fixed header (RFC 8200 §3), an emitter for it, and address helpers
//! (solicited-node multicast, RFC 4291 §2.7.1).

use std::net::Ipv6Addr;

/// Length of the IPv6 fixed header (RFC 8200 §3).
pub const HEADER_LEN: usize = 40;
/// Hop limit of packets this host originates, other than ND (RFC 4861 §6.3.2 default 64).
pub const DEFAULT_HOP_LIMIT: u8 = 64;
/// The link-scope all-nodes multicast address `ff02::1` (RFC 4291 §2.7.1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Why bytes are not an acceptable IPv6 packet (RFC 8200).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Error {
    /// Shorter than 40 bytes or than the payload length claims.
    Truncated,
    /// Version field is not 6.
    Version,
}

/// A parsed IPv6 packet (RFC 8200 §3); `payload` is trimmed to the payload length (Ethernet padding removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Packet<'a> {
    /// Traffic class.
    pub traffic_class: u8,
    /// Next header of the fixed header.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// The payload (extension headers and upper layer), `payload length` bytes.
    pub payload: &'a [u8],
    /// The whole packet: fixed header and payload.
    pub packet: &'a [u8],
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(b);
    Ipv6Addr::from(o)
}

impl<'a> Ipv6Packet<'a> {
    /// Parses an IPv6 fixed header at the start of `data` (RFC 8200 §3). Jumbograms (payload
    /// length 0 with a hop-by-hop jumbo option, RFC 2675) are not supported and yield an empty
    /// payload.
    pub fn parse(data: &'a [u8]) -> Result<Self, Ipv6Error> {
        let b = data.get(..HEADER_LEN).ok_or(Ipv6Error::Truncated)?;
        if b[0] >> 4 != 6 {
            return Err(Ipv6Error::Version);
        }
        let plen = usize::from(u16::from_be_bytes([b[4], b[5]]));
        let packet = data.get(..HEADER_LEN + plen).ok_or(Ipv6Error::Truncated)?;
        Ok(Ipv6Packet {
            traffic_class: (b[0] << 4) | (b[1] >> 4),
            next_header: b[6],
            hop_limit: b[7],
            src: addr(&b[8..24]),
            dst: addr(&b[24..40]),
            payload: &packet[HEADER_LEN..],
            packet,
        })
    }
}

/// Fields of an IPv6 fixed header to emit (RFC 8200 §3); the flow label is always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Traffic class.
    pub traffic_class: u8,
    /// Next header.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
}

impl Ipv6Repr {
    /// Appends the 40-byte fixed header for a payload of `payload_len` bytes (RFC 8200 §3).
    /// Returns `None`, appending nothing, if `payload_len` exceeds 65535.
    pub fn emit(&self, payload_len: usize, out: &mut Vec<u8>) -> Option<()> {
        let plen = u16::try_from(payload_len).ok()?;
        let mut h = [0u8; HEADER_LEN];
        h[0] = 0x60 | (self.traffic_class >> 4);
        h[1] = self.traffic_class << 4;
        h[4..6].copy_from_slice(&plen.to_be_bytes());
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src.octets());
        h[24..40].copy_from_slice(&self.dst.octets());
        out.extend_from_slice(&h);
        Some(())
    }
}

/// The solicited-node multicast address `ff02::1:ffXX:XXXX` of `addr` (RFC 4291 §2.7.1).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

/// True for a source address never answered (RFC 4443 §2.4 (e), RFC 4291): unspecified,
/// multicast or loopback.
pub fn is_bad_source(a: Ipv6Addr) -> bool {
    a.is_unspecified() || a.is_multicast() || a.is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicited_node_mapping() {
        let a: Ipv6Addr = "2001:db8::abcd:1234:5678".parse().unwrap();
        assert_eq!(
            solicited_node(a),
            "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn emit_then_parse() {
        let r = Ipv6Repr {
            traffic_class: 0xb8,
            next_header: 58,
            hop_limit: 255,
            src: "fe80::1".parse().unwrap(),
            dst: ALL_NODES,
        };
        let mut v = Vec::new();
        r.emit(3, &mut v).unwrap();
        v.extend_from_slice(&[1, 2, 3, 0, 0]);
        let p = Ipv6Packet::parse(&v).unwrap();
        assert_eq!(
            (p.traffic_class, p.next_header, p.hop_limit, p.src, p.dst),
            (0xb8, 58, 255, r.src, r.dst)
        );
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(Ipv6Packet::parse(&v[..42]), Err(Ipv6Error::Truncated));
        v[0] = 0x40;
        assert_eq!(Ipv6Packet::parse(&v), Err(Ipv6Error::Version));
    }
}
