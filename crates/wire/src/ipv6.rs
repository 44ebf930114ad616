//! A view of the IPv6 fixed header (RFC 8200 §3), an emitter for it, and address helpers
//! (solicited-node multicast, RFC 4291 §2.7.1).

use std::net::Ipv6Addr;

use crate::proto;

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

/// Field offsets of the IPv6 fixed header (RFC 8200 §3).
pub mod field {
    use core::ops::Range;
    /// Version, traffic class, flow label.
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    /// Payload length.
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    /// Next header.
    pub const NEXT_HEADER: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC: Range<usize> = 8..24;
    /// Destination address.
    pub const DST: Range<usize> = 24..40;
}

/// Most extension headers walked before giving up (a longer chain is treated as malformed).
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// A view of an IPv6 packet in `T` (smoltcp's `Packet` shape). After
/// [`Ipv6Packet::new_checked`] the fixed header and the payload length lie inside the buffer
/// and no accessor panics. Jumbograms (payload length 0 with a jumbo option, RFC 2675) are
/// not supported: they have an empty payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(b);
    Ipv6Addr::from(o)
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// A view of untrusted bytes: version 6, the fixed header and `payload length` bytes
    /// present (RFC 8200 §3).
    pub fn new_checked(buffer: T) -> Result<Self, Ipv6Error> {
        let b = buffer.as_ref();
        let h = b.get(..HEADER_LEN).ok_or(Ipv6Error::Truncated)?;
        if h[0] >> 4 != 6 {
            return Err(Ipv6Error::Version);
        }
        let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
        if HEADER_LEN + plen > b.len() {
            return Err(Ipv6Error::Truncated);
        }
        Ok(Ipv6Packet { buffer })
    }

    /// The same as [`Ipv6Packet::new_checked`] (IPv6 has no header checksum), named like
    /// [`crate::ipv4::Ipv4Packet::parse`].
    pub fn parse(buffer: T) -> Result<Self, Ipv6Error> {
        Self::new_checked(buffer)
    }

    #[inline]
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Traffic class (the byte across the first two 32-bit-word nibbles).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        traffic_class(self.b())
    }
    /// Payload length.
    #[inline]
    pub fn payload_len(&self) -> usize {
        usize::from(u16::from_be_bytes([self.b()[4], self.b()[5]]))
    }
    /// Total length: fixed header and payload.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }
    /// Next header of the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.b()[field::NEXT_HEADER]
    }
    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.b()[field::HOP_LIMIT]
    }
    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        addr(&self.b()[field::SRC])
    }
    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        addr(&self.b()[field::DST])
    }
    /// The payload (extension headers and upper layer), `payload length` bytes.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..self.total_len()]
    }
    /// The whole packet: fixed header and payload, without link padding.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.b()[..self.total_len()]
    }
    /// Where the upper-layer header starts past hop-by-hop, routing and destination options
    /// headers (RFC 8200 §4): [`upper_layer`] on this packet.
    #[inline]
    pub fn upper_layer(&self) -> Option<(usize, u8)> {
        upper_layer(self.b(), self.total_len())
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<'a> Ipv6Packet<&'a [u8]> {
    /// The payload, borrowed for the buffer's lifetime.
    #[inline]
    pub fn payload_ref(&self) -> &'a [u8] {
        &self.buffer[HEADER_LEN..self.total_len()]
    }
    /// The packet, borrowed for the buffer's lifetime.
    #[inline]
    pub fn packet_ref(&self) -> &'a [u8] {
        &self.buffer[..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::PAYLOAD_LEN].copy_from_slice(&len.to_be_bytes());
    }
    /// Sets the next header of the fixed header.
    #[inline]
    pub fn set_next_header(&mut self, nh: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = nh;
    }
    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, h: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = h;
    }
    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        set_traffic_class(self.buffer.as_mut(), tc);
    }
}

/// Traffic class of the IPv6 header at the start of `h` (at least 2 bytes).
#[inline(always)]
pub fn traffic_class(h: &[u8]) -> u8 {
    (h[0] << 4) | (h[1] >> 4)
}

/// Sets the traffic class of the IPv6 header at the start of `h` (at least 2 bytes).
#[inline(always)]
pub fn set_traffic_class(h: &mut [u8], tc: u8) {
    h[0] = (h[0] & 0xf0) | (tc >> 4);
    h[1] = (h[1] & 0x0f) | (tc << 4);
}

/// Where the upper-layer header of the IPv6 packet `pkt` (`len` bytes, fixed header present)
/// starts, past hop-by-hop, routing and destination options headers (RFC 8200 §4): its
/// offset and protocol, or `None` when a header runs past the packet or the chain is longer
/// than [`MAX_EXTENSION_HEADERS`]. A fragment header stops the walk and is returned as
/// protocol [`proto::FRAGMENT`] at its own offset.
pub fn upper_layer(pkt: &[u8], len: usize) -> Option<(usize, u8)> {
    walk(pkt, len, HEADER_LEN, *pkt.get(field::NEXT_HEADER)?)
}

/// [`upper_layer`] from the header `next` at offset `off` (to continue past a header the
/// caller handles itself, such as a first fragment's Fragment header).
pub fn walk(pkt: &[u8], len: usize, mut off: usize, mut next: u8) -> Option<(usize, u8)> {
    use proto::{DEST_OPTS, FRAGMENT, HOP_BY_HOP, ROUTING};
    let len = len.min(pkt.len());
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
        let mut h = [0u8; HEADER_LEN];
        self.write(payload_len, &mut h)?;
        out.extend_from_slice(&h);
        Some(())
    }

    /// Writes the fixed header into the first 40 bytes of `h`, in place. `None`, nothing
    /// written, when `h` is shorter or `payload_len` exceeds 65535.
    pub fn write(&self, payload_len: usize, h: &mut [u8]) -> Option<()> {
        let plen = u16::try_from(payload_len).ok()?;
        let h = h.get_mut(..HEADER_LEN)?;
        h[..4].fill(0);
        h[0] = 0x60;
        set_traffic_class(h, self.traffic_class);
        h[field::PAYLOAD_LEN].copy_from_slice(&plen.to_be_bytes());
        h[field::NEXT_HEADER] = self.next_header;
        h[field::HOP_LIMIT] = self.hop_limit;
        h[field::SRC].copy_from_slice(&self.src.octets());
        h[field::DST].copy_from_slice(&self.dst.octets());
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
    fn traffic_class_roundtrip() {
        let mut h = [0x60u8, 0x0a, 0xbc, 0xde];
        set_traffic_class(&mut h, 0xb9);
        assert_eq!(traffic_class(&h), 0xb9);
        assert_eq!(h, [0x6b, 0x9a, 0xbc, 0xde]);
    }

    #[test]
    fn the_walk_skips_options_and_stops_at_fragments_and_overruns() {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[6] = proto::HOP_BY_HOP;
        // Hop-by-hop (8 bytes) → destination options (16 bytes) → ESP.
        p.extend_from_slice(&[proto::DEST_OPTS, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[proto::ESP, 1]);
        p.resize(64, 0);
        p.extend_from_slice(&[9; 8]);
        assert_eq!(upper_layer(&p, p.len()), Some((64, proto::ESP)));
        assert_eq!(
            upper_layer(&p, 60),
            None,
            "destination options run past the end"
        );
        p[48] = proto::FRAGMENT;
        assert_eq!(upper_layer(&p, p.len()), Some((64, proto::FRAGMENT)));
        p[6] = proto::ROUTING;
        p[40] = proto::ROUTING;
        p[41] = 0;
        let mut chain = p[..40].to_vec();
        for _ in 0..MAX_EXTENSION_HEADERS + 1 {
            chain.extend_from_slice(&[proto::ROUTING, 0, 0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(upper_layer(&chain, chain.len()), None, "too long a chain");
    }

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
        let p = Ipv6Packet::parse(&v[..]).unwrap();
        assert_eq!(
            (
                p.traffic_class(),
                p.next_header(),
                p.hop_limit(),
                p.src(),
                p.dst()
            ),
            (0xb8, 58, 255, r.src, r.dst)
        );
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(p.upper_layer(), Some((40, 58)));
        assert_eq!(Ipv6Packet::parse(&v[..42]), Err(Ipv6Error::Truncated));
        v[0] = 0x40;
        assert_eq!(Ipv6Packet::parse(&v[..]), Err(Ipv6Error::Version));
    }
}
