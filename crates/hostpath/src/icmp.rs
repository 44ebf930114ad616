//! ICMP (RFC 792) and ICMPv6 (RFC 4443) for the host itself: echo replies, and the path-MTU
//! errors "destination unreachable / fragmentation needed" (RFC 792, RFC 1191 §4) and
//! "packet too big" (RFC 4443 §3.2) that the data plane sends for oversized DF packets.

use espada_wire::checksum::{self, PROTO_ICMP, PROTO_ICMPV6};
use espada_wire::ether::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetHeader, MacAddr};
use espada_wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use espada_wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use espada_wire::proto;
use std::net::{Ipv4Addr, Ipv6Addr};

/// ICMP Echo Reply type (RFC 792).
pub const ICMP_ECHO_REPLY: u8 = 0;
/// ICMP Destination Unreachable type (RFC 792).
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
/// ICMP Echo Request type (RFC 792).
pub const ICMP_ECHO_REQUEST: u8 = 8;
/// Destination Unreachable code "fragmentation needed and DF set" (RFC 792, RFC 1191 §4).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// ICMPv6 Packet Too Big type (RFC 4443 §3.2).
pub const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// ICMPv6 Echo Request type (RFC 4443 §4.1).
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
/// ICMPv6 Echo Reply type (RFC 4443 §4.2).
pub const ICMPV6_ECHO_REPLY: u8 = 129;
/// Largest ICMPv4 error datagram (RFC 1812 §4.3.2.3: "not exceeding 576 bytes").
pub const IPV4_ERROR_MAX: usize = 576;
/// Largest ICMPv6 error packet: the IPv6 minimum MTU (RFC 4443 §2.4 (c)).
pub const IPV6_ERROR_MAX: usize = 1280;
/// ICMP header length: type, code, checksum, 4 type-specific bytes (RFC 792, RFC 4443 §2.1).
pub const ICMP_HEADER_LEN: usize = 8;
/// TOS of ICMP errors we originate: precedence "internetwork control" (RFC 1812 §4.3.2.5).
const ERROR_TOS: u8 = 0xc0;

/// Why an echo request is not answered (RFC 792, RFC 4443 §4.1, RFC 1122 §3.2.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoError {
    /// Not ICMP / ICMPv6 carried directly in the IP header.
    NotIcmp,
    /// An ICMP message other than an echo request (its type given).
    NotEchoRequest(u8),
    /// Shorter than the 8-byte echo header.
    Truncated,
    /// The ICMP checksum does not verify (discarded silently).
    Checksum,
    /// An IPv4 fragment (no reassembly on this path).
    Fragment,
    /// The source address must never be answered (broadcast, multicast, unspecified, …).
    BadSource,
}

/// Builds the echo reply to the ICMPv4 echo request in `request` (RFC 792 "Echo or Echo Reply
/// Message", RFC 1122 §3.2.2.6): addresses swapped, TTL 64, TOS kept, IP options dropped,
/// identifier, sequence number and data kept, ICMP checksum recomputed. The frame goes from
/// `our_mac` to `peer_mac`. The caller checks that `request.dst` is one of our addresses.
pub fn echo_reply_v4(
    request: &Ipv4Packet<&'_ [u8]>,
    our_mac: MacAddr,
    peer_mac: MacAddr,
) -> Result<Vec<u8>, EchoError> {
    if request.protocol() != PROTO_ICMP {
        return Err(EchoError::NotIcmp);
    }
    if request.is_fragment() {
        return Err(EchoError::Fragment);
    }
    let msg = request.payload();
    if msg.len() < ICMP_HEADER_LEN {
        return Err(EchoError::Truncated);
    }
    if msg[0] != ICMP_ECHO_REQUEST {
        return Err(EchoError::NotEchoRequest(msg[0]));
    }
    if checksum::checksum(msg) != 0 {
        return Err(EchoError::Checksum);
    }
    if ipv4::is_bad_source(request.src()) {
        return Err(EchoError::BadSource);
    }
    let mut f = Vec::with_capacity(ether::HEADER_LEN + ipv4::MIN_HEADER_LEN + msg.len());
    EthernetHeader {
        dst: peer_mac,
        src: our_mac,
        ethertype: ETHERTYPE_IPV4,
    }
    .emit(&mut f);
    Ipv4Repr {
        tos: request.tos(),
        ident: request.ident(),
        dont_fragment: false,
        ttl: ipv4::DEFAULT_TTL,
        protocol: PROTO_ICMP,
        src: request.dst(),
        dst: request.src(),
    }
    .emit(msg.len(), &mut f)
    .ok_or(EchoError::Truncated)?;
    let start = f.len();
    f.extend_from_slice(msg);
    f[start] = ICMP_ECHO_REPLY;
    f[start + 1] = 0;
    f[start + 2] = 0;
    f[start + 3] = 0;
    let c = checksum::checksum(&f[start..]);
    f[start + 2..start + 4].copy_from_slice(&c.to_be_bytes());
    ether::pad_to_minimum(&mut f);
    Ok(f)
}

/// Builds the echo reply to the ICMPv6 echo request in `request` (RFC 4443 §4.2): source is
/// the request's destination (the caller checks it is our unicast address), hop limit 64,
/// traffic class kept, identifier, sequence number and data kept, checksum recomputed over the
/// new pseudo-header (§2.3). Requests behind extension headers are not answered.
pub fn echo_reply_v6(
    request: &Ipv6Packet<&'_ [u8]>,
    our_mac: MacAddr,
    peer_mac: MacAddr,
) -> Result<Vec<u8>, EchoError> {
    if request.next_header() != PROTO_ICMPV6 {
        return Err(EchoError::NotIcmp);
    }
    let msg = request.payload();
    if msg.len() < ICMP_HEADER_LEN {
        return Err(EchoError::Truncated);
    }
    if msg[0] != ICMPV6_ECHO_REQUEST {
        return Err(EchoError::NotEchoRequest(msg[0]));
    }
    if !checksum::verify_icmpv6(request.src(), request.dst(), msg) {
        return Err(EchoError::Checksum);
    }
    if ipv6::is_bad_source(request.src()) {
        return Err(EchoError::BadSource);
    }
    let mut f = Vec::with_capacity(ether::HEADER_LEN + ipv6::HEADER_LEN + msg.len());
    EthernetHeader {
        dst: peer_mac,
        src: our_mac,
        ethertype: ETHERTYPE_IPV6,
    }
    .emit(&mut f);
    Ipv6Repr {
        traffic_class: request.traffic_class(),
        next_header: PROTO_ICMPV6,
        hop_limit: ipv6::DEFAULT_HOP_LIMIT,
        src: request.dst(),
        dst: request.src(),
    }
    .emit(msg.len(), &mut f)
    .ok_or(EchoError::Truncated)?;
    let start = f.len();
    f.extend_from_slice(msg);
    f[start] = ICMPV6_ECHO_REPLY;
    f[start + 1] = 0;
    let c =
        checksum::icmpv6(request.dst(), request.src(), &f[start..]).ok_or(EchoError::Truncated)?;
    f[start + 2..start + 4].copy_from_slice(&c.to_be_bytes());
    Ok(f)
}

/// Why no ICMP error may be sent about a packet (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7,
/// RFC 4443 §2.4 (e)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorRefused {
    /// The offending packet does not parse as IPv4/IPv6.
    Malformed,
    /// The offending packet is itself an ICMP/ICMPv6 error message.
    AboutIcmpError,
    /// The offending packet is a non-first IPv4 fragment.
    NonFirstFragment,
    /// The offending source is unspecified, broadcast, multicast, loopback or reserved.
    BadSource,
    /// The offending IPv4 destination is broadcast or multicast.
    BroadcastDestination,
    /// Next-hop MTU below the protocol minimum (68 for IPv4 per RFC 791, 1280 for IPv6).
    MtuTooSmall,
}

fn is_icmpv4_error(ty: u8) -> bool {
    // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// Appends to `out` an IPv4 datagram from `src` carrying ICMP "destination unreachable /
/// fragmentation needed and DF set" (type 3 code 4) with `next_hop_mtu` in bytes 6-7
/// (RFC 1191 §4), addressed to the source of `offending` and quoting as much of it as keeps the
/// datagram within 576 bytes (RFC 1812 §4.3.2.3). `offending` is the IPv4 datagram that did not
/// fit; the caller adds the Ethernet header. Nothing is appended when an error is refused.
pub fn frag_needed_v4(
    src: Ipv4Addr,
    offending: &[u8],
    next_hop_mtu: u16,
    out: &mut Vec<u8>,
) -> Result<(), ErrorRefused> {
    let p = Ipv4Packet::parse(offending).map_err(|_| ErrorRefused::Malformed)?;
    if next_hop_mtu < 68 {
        return Err(ErrorRefused::MtuTooSmall);
    }
    if p.frag_offset() != 0 {
        return Err(ErrorRefused::NonFirstFragment);
    }
    if p.protocol() == PROTO_ICMP && p.payload().first().is_some_and(|&t| is_icmpv4_error(t)) {
        return Err(ErrorRefused::AboutIcmpError);
    }
    if ipv4::is_bad_source(p.src()) {
        return Err(ErrorRefused::BadSource);
    }
    if p.dst().is_broadcast() || p.dst().is_multicast() {
        return Err(ErrorRefused::BroadcastDestination);
    }
    let quote_max = IPV4_ERROR_MAX - ipv4::MIN_HEADER_LEN - ICMP_HEADER_LEN;
    let quote = &p.datagram()[..p.datagram().len().min(quote_max)];
    let mut msg = Vec::with_capacity(ICMP_HEADER_LEN + quote.len());
    msg.extend_from_slice(&[ICMP_DEST_UNREACHABLE, CODE_FRAG_NEEDED, 0, 0, 0, 0]);
    msg.extend_from_slice(&next_hop_mtu.to_be_bytes());
    msg.extend_from_slice(quote);
    let c = checksum::checksum(&msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    Ipv4Repr {
        tos: ERROR_TOS,
        ident: 0,
        dont_fragment: true,
        ttl: ipv4::DEFAULT_TTL,
        protocol: PROTO_ICMP,
        src,
        dst: p.src(),
    }
    .emit(msg.len(), out)
    .ok_or(ErrorRefused::Malformed)?;
    out.extend_from_slice(&msg);
    Ok(())
}

/// Follows IPv6 extension headers (RFC 8200 §4, `espada_wire::ipv6::walk`) to the upper-layer
/// header, through a first fragment's Fragment header and an AH (RFC 4302 §2.2: its length is
/// in 4-octet units). Returns the upper-layer protocol and its bytes, or `None` when it is
/// unreachable (truncated chain, non-first fragment, too many headers).
fn upper_layer_v6<'a>(p: &Ipv6Packet<&'a [u8]>) -> Option<(u8, &'a [u8])> {
    const AH: u8 = 51;
    let (pkt, len) = (p.packet_ref(), p.total_len());
    let (mut off, mut nh) = p.upper_layer()?;
    for _ in 0..ipv6::MAX_EXTENSION_HEADERS {
        let skip = match nh {
            proto::FRAGMENT => {
                let f = pkt.get(off..off + 8)?;
                if u16::from_be_bytes([f[2], f[3]]) >> 3 != 0 {
                    return None;
                }
                8
            }
            AH => (usize::from(*pkt.get(off + 1)?) + 2) * 4,
            _ => return Some((nh, pkt.get(off..)?)),
        };
        let next = *pkt.get(off)?;
        (off, nh) = ipv6::walk(pkt, len, off + skip, next)?;
    }
    None
}

/// Appends to `out` an IPv6 packet from `src` carrying ICMPv6 "packet too big" (type 2 code 0)
/// with `mtu` (RFC 4443 §3.2), addressed to the source of `offending` and quoting as much of it
/// as keeps the packet within 1280 bytes (§2.4 (c)). Sent even when `offending` went to a
/// multicast address (§2.4 (e.3)); never about an ICMPv6 error (§2.4 (e.1)). The caller adds
/// the Ethernet header. Nothing is appended when an error is refused.
pub fn packet_too_big_v6(
    src: Ipv6Addr,
    offending: &[u8],
    mtu: u32,
    out: &mut Vec<u8>,
) -> Result<(), ErrorRefused> {
    let p = Ipv6Packet::parse(offending).map_err(|_| ErrorRefused::Malformed)?;
    if mtu < 1280 {
        return Err(ErrorRefused::MtuTooSmall);
    }
    if let Some((PROTO_ICMPV6, upper)) = upper_layer_v6(&p)
        && upper.first().is_some_and(|&t| t < 128)
    {
        return Err(ErrorRefused::AboutIcmpError);
    }
    if ipv6::is_bad_source(p.src()) {
        return Err(ErrorRefused::BadSource);
    }
    let quote_max = IPV6_ERROR_MAX - ipv6::HEADER_LEN - ICMP_HEADER_LEN;
    let quote = &p.packet()[..p.packet().len().min(quote_max)];
    let mut msg = Vec::with_capacity(ICMP_HEADER_LEN + quote.len());
    msg.extend_from_slice(&[ICMPV6_PACKET_TOO_BIG, 0, 0, 0]);
    msg.extend_from_slice(&mtu.to_be_bytes());
    msg.extend_from_slice(quote);
    let c = checksum::icmpv6(src, p.src(), &msg).ok_or(ErrorRefused::Malformed)?;
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    Ipv6Repr {
        traffic_class: 0,
        next_header: PROTO_ICMPV6,
        hop_limit: ipv6::DEFAULT_HOP_LIMIT,
        src,
        dst: p.src(),
    }
    .emit(msg.len(), out)
    .ok_or(ErrorRefused::Malformed)?;
    out.extend_from_slice(&msg);
    Ok(())
}
