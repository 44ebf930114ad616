//! Forwarding the inner packet as a router does (RFC 4301 §5.1.2 and §5.2: a security gateway
//! forwards what it encapsulates and decapsulates): the TTL (IPv4) or hop limit (IPv6) is
//! decremented in both directions, and a packet that would leave with 0 is dropped and answered
//! with an ICMP time exceeded (RFC 792; RFC 4443 §3.3); a packet too big for its tunnel that may
//! not be fragmented gets "fragmentation needed" / "packet too big" with the tunnel's MTU
//! (RFC 1191, RFC 4443 §3.2, RFC 4301 §8.2). The error is built in place in the packet's own
//! buffer (RFC 1812 §5.3.1).
//!
//! No error is sent about an ICMP error, a non-initial fragment, or a packet whose source is not
//! a unicast address (RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use espada_buf::PacketBuf;
use espada_esp::InnerProto;
use espada_wire::ipv4::{self, Ipv4Packet, Ipv4Repr};
use espada_wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use espada_wire::{checksum, ip, proto};

/// What forwarding may do with a packet after its hop count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// Decremented; forward it.
    Forward,
    /// TTL or hop limit ≤ 1: it may not be forwarded (left unchanged).
    Expired,
}

/// Decrements the TTL (IPv4, header checksum updated incrementally, RFC 1624) or the hop limit
/// (IPv6) of the IP packet at the start of `pkt`. The caller has checked the header.
#[inline]
pub fn decrement(pkt: &mut [u8]) -> Hop {
    match ip::version(pkt) {
        Some(4) if pkt.len() >= ipv4::MIN_HEADER_LEN => {
            let mut ip = Ipv4Packet::new_unchecked(pkt);
            match ip.ttl() {
                0 | 1 => Hop::Expired,
                ttl => {
                    ip.set_ttl_updating_checksum(ttl - 1);
                    Hop::Forward
                }
            }
        }
        Some(6) if pkt.len() >= ipv6::HEADER_LEN => {
            let mut ip = Ipv6Packet::new_unchecked(pkt);
            match ip.hop_limit() {
                0 | 1 => Hop::Expired,
                h => {
                    ip.set_hop_limit(h - 1);
                    Hop::Forward
                }
            }
        }
        _ => Hop::Expired,
    }
}

/// Lowers the MSS option of a TCP SYN (or SYN-ACK) at the start of `pkt` to the clamp `max`
/// gives (RFC 9293 §3.7.1; the clamping routers and VPN gateways do so that segments fit the
/// tunnel), with the TCP checksum updated incrementally (RFC 1624). True when it changed the
/// packet. IPv4 without fragmentation, IPv6 with TCP right after the fixed header; anything
/// else is left alone. `max` is called only for a SYN (0: no clamp), so a packet that is
/// none never reads where the clamp is kept (a per-tunnel word: a cache miss with many
/// tunnels).
pub fn clamp_mss(pkt: &mut [u8], max: impl FnOnce() -> u16) -> bool {
    let tcp_at = match ip::version(pkt) {
        Some(4) if pkt.len() >= ipv4::MIN_HEADER_LEN => {
            let ip = Ipv4Packet::new_unchecked(&*pkt);
            if ip.protocol() != proto::TCP || ip.is_fragment() {
                return false;
            }
            ip.header_len()
        }
        Some(6) if pkt.len() >= ipv6::HEADER_LEN => {
            if Ipv6Packet::new_unchecked(&*pkt).next_header() != proto::TCP {
                return false;
            }
            ipv6::HEADER_LEN
        }
        _ => return false,
    };
    let Some(tcp) = pkt.get_mut(tcp_at..) else {
        return false;
    };
    if tcp.len() < 20 || tcp[13] & 0x02 == 0 {
        return false; // not a SYN
    }
    let max = max();
    if max == 0 {
        return false;
    }
    let data_off = usize::from(tcp[12] >> 4) * 4;
    if data_off < 20 || data_off > tcp.len() {
        return false;
    }
    let mut i = 20;
    while i < data_off {
        match tcp[i] {
            0 => return false, // end of options
            1 => i += 1,       // no-op
            2 if i + 4 <= data_off && tcp[i + 1] == 4 => {
                let mss = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                if mss <= max {
                    return false;
                }
                let c = u16::from_be_bytes([tcp[16], tcp[17]]);
                // The MSS value is a 16-bit word at an even offset of the segment when `i` is
                // even; otherwise it straddles two words: update both.
                let c = if i % 2 == 0 {
                    checksum::update(c, mss, max)
                } else {
                    let (o, n) = (mss.to_be_bytes(), max.to_be_bytes());
                    let w1 = |b: u8| u16::from_be_bytes([tcp[i + 1], b]);
                    let c = checksum::update(c, w1(o[0]), w1(n[0]));
                    let w2 = |b: u8| u16::from_be_bytes([b, tcp.get(i + 4).copied().unwrap_or(0)]);
                    checksum::update(c, w2(o[1]), w2(n[1]))
                };
                tcp[i + 2..i + 4].copy_from_slice(&max.to_be_bytes());
                tcp[16..18].copy_from_slice(&c.to_be_bytes());
                return true;
            }
            _ => {
                let len = usize::from(*tcp.get(i + 1).unwrap_or(&0));
                if len < 2 {
                    return false;
                }
                i += len;
            }
        }
    }
    false
}

/// ICMP types that are errors (RFC 792, RFC 1812 §4.3.2.7): never answered with an error.
const ICMP_ERRORS: [u8; 5] = [3, 4, 5, 11, 12];
/// An ICMP error the data plane sends about an inner packet it will not forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpError {
    /// TTL / hop limit exceeded in transit (ICMP 11/0, ICMPv6 3/0).
    TimeExceeded,
    /// The packet does not fit the tunnel: IPv4 "fragmentation needed and DF set" (3/4) with
    /// the next-hop MTU (RFC 1191 §4), ICMPv6 "packet too big" (2/0, RFC 4443 §3.2).
    TooBig {
        /// The largest inner packet the tunnel carries.
        mtu: u32,
    },
}

impl IcmpError {
    /// ICMP type, code and the 4 bytes after the checksum.
    fn v4(self) -> [u8; 8] {
        match self {
            IcmpError::TimeExceeded => [11, 0, 0, 0, 0, 0, 0, 0],
            IcmpError::TooBig { mtu } => {
                let m = (mtu.min(u32::from(u16::MAX)) as u16).to_be_bytes();
                [3, 4, 0, 0, 0, 0, m[0], m[1]]
            }
        }
    }
    /// ICMPv6 type, code and the 4 bytes after the checksum.
    fn v6(self) -> [u8; 8] {
        match self {
            IcmpError::TimeExceeded => [3, 0, 0, 0, 0, 0, 0, 0],
            IcmpError::TooBig { mtu } => {
                let m = mtu.to_be_bytes();
                [2, 0, 0, 0, m[0], m[1], m[2], m[3]]
            }
        }
    }
}
/// An ICMPv6 error must fit the IPv6 minimum MTU (RFC 4443 §2.4(c)).
const IPV6_MIN_MTU: usize = 1280;

/// Rewrites the packet in `m` into the ICMP error `e` from `v4` / `v6` (the box's address of
/// the packet's family) to the packet's source, quoting the original IP header and the first
/// 8 bytes of its payload (IPv4, RFC 792) or as much of the packet as keeps the error within
/// 1280 bytes (IPv6). Returns the error's destination and family, or `None` (buffer unchanged)
/// when no error may be sent: see the module documentation, or no address of that family.
pub fn icmp_error<B: PacketBuf>(
    m: &mut B,
    e: IcmpError,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
) -> Option<(IpAddr, InnerProto)> {
    let d = m.data();
    match ip::version(d) {
        Some(4) => {
            let from = v4?;
            if d.len() < ipv4::MIN_HEADER_LEN {
                return None;
            }
            let ip = Ipv4Packet::new_unchecked(d);
            let hl = ip.header_len();
            if d.len() < hl.max(ipv4::MIN_HEADER_LEN) {
                return None;
            }
            let src = ip.src();
            let icmp_error =
                ip.protocol() == proto::ICMP && d.get(hl).is_none_or(|t| ICMP_ERRORS.contains(t));
            if src.is_unspecified()
                || src.is_broadcast()
                || src.is_multicast()
                || ip.frag_offset() != 0
                || icmp_error
            {
                return None;
            }
            let quote = d.len().min(hl + 8);
            let repr = Ipv4Repr {
                tos: 0,
                ident: 0,
                dont_fragment: false,
                ttl: 64,
                protocol: proto::ICMP,
                src: from,
                dst: src,
            };
            rewrite(m, quote, 28, |h, quote| {
                let _ = repr.write(8 + quote.len(), h);
                h[20..28].copy_from_slice(&e.v4());
                let c = checksum::finish(checksum::sum(&h[20..28]) + checksum::sum(quote));
                h[22..24].copy_from_slice(&c.to_be_bytes());
            })?;
            Some((IpAddr::V4(src), InnerProto::V4))
        }
        Some(6) => {
            let from = v6?;
            if d.len() < ipv6::HEADER_LEN {
                return None;
            }
            let ip = Ipv6Packet::new_unchecked(d);
            let src = ip.src();
            // Only the fixed header's next header is looked at: an ICMPv6 error behind
            // extension headers would get an error (RFC 4443 §2.4(e) asks for the walk).
            let icmp_error = ip.next_header() == proto::ICMPV6
                && d.get(ipv6::HEADER_LEN).is_none_or(|t| *t < 128);
            if src.is_unspecified() || src.is_multicast() || icmp_error {
                return None;
            }
            let quote = d.len().min(IPV6_MIN_MTU - 48);
            let repr = Ipv6Repr {
                traffic_class: 0,
                next_header: proto::ICMPV6,
                hop_limit: 64,
                src: from,
                dst: src,
            };
            rewrite(m, quote, 48, |h, quote| {
                let plen = 8 + quote.len();
                let _ = repr.write(plen, h);
                h[40..48].copy_from_slice(&e.v6());
                let sum = checksum::pseudo_header_v6(from, src, proto::ICMPV6, plen as u32)
                    + checksum::sum(&h[40..48])
                    + checksum::sum(quote);
                h[42..44].copy_from_slice(&checksum::finish(sum).to_be_bytes());
            })?;
            Some((IpAddr::V6(src), InnerProto::V6))
        }
        _ => None,
    }
}

/// Keeps the first `quote` bytes of `m`, puts `header` bytes in front of them and lets `write`
/// fill that header (it sees the quote). `None`, nothing changed, without the headroom.
fn rewrite<B: PacketBuf>(
    m: &mut B,
    quote: usize,
    header: usize,
    write: impl FnOnce(&mut [u8], &[u8]),
) -> Option<()> {
    if m.headroom() < header {
        return None;
    }
    let cut = m.len() - quote;
    if !m.trim(cut) {
        return None;
    }
    m.prepend(header)?;
    let d = m.data_mut();
    let (h, q) = d.split_at_mut(header);
    write(h, q);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use espada_buf::VecBuf;

    fn v4(ttl: u8, proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, ttl, proto, 0, 0, 192, 0, 2, 10, 203, 0, 113, 5,
        ];
        p.extend_from_slice(payload);
        let l = p.len() as u16;
        p[2..4].copy_from_slice(&l.to_be_bytes());
        let c = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn v6(hops: u8, next: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, next, hops];
        p.extend_from_slice(&"2001:db8:a::10".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8:b::5".parse::<Ipv6Addr>().unwrap().octets());
        p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn ttl_and_hop_limit_go_down_by_one_and_the_ipv4_checksum_stays_right() {
        for ttl in [2u8, 64, 255] {
            let mut p = v4(ttl, 17, &[1; 12]);
            assert_eq!(decrement(&mut p), Hop::Forward);
            assert_eq!(p[8], ttl - 1);
            assert_eq!(checksum::checksum(&p[..20]), 0, "ttl {ttl}");
        }
        let mut p = v6(2, 17, &[1; 8]);
        assert_eq!(decrement(&mut p), Hop::Forward);
        assert_eq!(p[7], 1);
        for mut p in [v4(1, 17, &[1; 8]), v4(0, 17, &[1; 8]), v6(1, 17, &[0; 8])] {
            let before = p.clone();
            assert_eq!(decrement(&mut p), Hop::Expired);
            assert_eq!(p, before, "left unchanged");
        }
    }

    #[test]
    fn ipv4_time_exceeded_quotes_header_and_8_bytes_back_to_the_source() {
        let orig = v4(1, 17, &[7; 100]);
        let mut m = VecBuf::new(64, &orig, 0);
        let box_in = Ipv4Addr::new(192, 0, 2, 1);
        let to = icmp_error(&mut m, IcmpError::TimeExceeded, Some(box_in), None);
        assert_eq!(to, Some(("192.0.2.10".parse().unwrap(), InnerProto::V4)));
        let d = m.data();
        assert_eq!(d.len(), 20 + 8 + 28);
        assert_eq!(checksum::checksum(&d[..20]), 0, "IP header checksum");
        assert_eq!(u16::from_be_bytes([d[2], d[3]]), 56);
        assert_eq!((d[8], d[9]), (64, 1));
        assert_eq!(&d[12..16], &box_in.octets());
        assert_eq!(&d[16..20], &[192, 0, 2, 10]);
        assert_eq!((d[20], d[21]), (11, 0), "time exceeded in transit");
        assert_eq!(checksum::checksum(&d[20..]), 0, "ICMP checksum");
        assert_eq!(&d[28..], &orig[..28], "quote: header + 8 bytes");
    }

    #[test]
    fn ipv6_time_exceeded_fits_1280_bytes_and_has_a_valid_checksum() {
        let orig = v6(1, 17, &[9; 1400]);
        let mut m = VecBuf::new(64, &orig, 0);
        let box_in: Ipv6Addr = "2001:db8:a::1".parse().unwrap();
        let to = icmp_error(&mut m, IcmpError::TimeExceeded, None, Some(box_in));
        assert_eq!(
            to,
            Some(("2001:db8:a::10".parse().unwrap(), InnerProto::V6))
        );
        let d = m.data();
        assert_eq!(d.len(), 1280);
        assert_eq!(usize::from(u16::from_be_bytes([d[4], d[5]])), 1280 - 40);
        assert_eq!((d[6], d[7]), (58, 64));
        assert_eq!((d[40], d[41]), (3, 0));
        let sum = checksum::sum(&d[8..40]) + 1240 + 58 + checksum::sum(&d[40..]);
        assert_eq!(checksum::fold(sum), 0xffff, "ICMPv6 checksum");
        assert_eq!(&d[48..], &orig[..1232]);
    }

    #[test]
    fn no_error_about_errors_fragments_or_non_unicast_sources() {
        let cases: Vec<Vec<u8>> = vec![
            v4(1, 1, &[3, 0, 0, 0, 0, 0, 0, 0]),  // ICMP unreachable
            v4(1, 1, &[11, 0, 0, 0, 0, 0, 0, 0]), // ICMP time exceeded
            {
                let mut p = v4(1, 17, &[0; 8]);
                p[6..8].copy_from_slice(&[0x00, 0x10]); // offset 128: not the first fragment
                p
            },
            {
                let mut p = v4(1, 17, &[0; 8]);
                p[12..16].copy_from_slice(&[224, 0, 0, 1]);
                p
            },
            v6(1, 58, &[1, 0, 0, 0, 0, 0, 0, 0]), // ICMPv6 unreachable
        ];
        for p in cases {
            let mut m = VecBuf::new(64, &p, 0);
            assert_eq!(
                icmp_error(
                    &mut m,
                    IcmpError::TimeExceeded,
                    Some(Ipv4Addr::new(192, 0, 2, 1)),
                    Some("2001:db8:a::1".parse().unwrap())
                ),
                None,
                "{p:?}"
            );
            assert_eq!(m.data(), &p[..], "unchanged");
        }
        // An echo request does get one; without an address of its family, nothing.
        let echo = v4(1, 1, &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert!(
            icmp_error(
                &mut VecBuf::new(64, &echo, 0),
                IcmpError::TimeExceeded,
                Some(Ipv4Addr::LOCALHOST),
                None
            )
            .is_some()
        );
        assert!(
            icmp_error(
                &mut VecBuf::new(64, &echo, 0),
                IcmpError::TimeExceeded,
                None,
                None
            )
            .is_none()
        );
        // No headroom: nothing changed.
        let mut m = VecBuf::new(0, &echo, 0);
        assert!(
            icmp_error(
                &mut m,
                IcmpError::TimeExceeded,
                Some(Ipv4Addr::LOCALHOST),
                None
            )
            .is_none()
        );
        assert_eq!(m.data(), &echo[..]);
    }

    #[test]
    fn too_big_carries_the_tunnels_mtu_in_both_families() {
        let orig = v4(64, 17, &[7; 1400]);
        let mut m = VecBuf::new(64, &orig, 0);
        let e = IcmpError::TooBig { mtu: 1390 };
        icmp_error(&mut m, e, Some(Ipv4Addr::new(192, 0, 2, 1)), None).unwrap();
        let d = m.data();
        assert_eq!((d[20], d[21]), (3, 4), "fragmentation needed and DF set");
        assert_eq!(
            u16::from_be_bytes([d[26], d[27]]),
            1390,
            "next-hop MTU (RFC 1191)"
        );
        assert_eq!(checksum::checksum(&d[20..]), 0);
        let orig = v6(64, 17, &[7; 1400]);
        let mut m = VecBuf::new(64, &orig, 0);
        icmp_error(&mut m, e, None, Some("2001:db8:a::1".parse().unwrap())).unwrap();
        let d = m.data();
        assert_eq!((d[40], d[41]), (2, 0), "packet too big");
        assert_eq!(u32::from_be_bytes([d[44], d[45], d[46], d[47]]), 1390);
    }

    /// An IPv4 TCP SYN with `options` (padded to 4 bytes) and a valid TCP checksum.
    fn syn(options: &[u8], flags: u8) -> Vec<u8> {
        let mut opts = options.to_vec();
        while !opts.len().is_multiple_of(4) {
            opts.push(0);
        }
        let mut tcp = vec![0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0];
        tcp.push((((20 + opts.len()) / 4) << 4) as u8);
        tcp.extend_from_slice(&[flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(&opts);
        let mut p = v4(64, 6, &tcp);
        tcp_csum(&mut p);
        p
    }

    fn tcp_sum(p: &[u8]) -> u16 {
        let tcp = &p[20..];
        let sum = checksum::sum(&p[12..20]) + 6 + tcp.len() as u64 + checksum::sum(tcp);
        checksum::fold(sum)
    }

    fn tcp_csum(p: &mut [u8]) {
        p[36..38].copy_from_slice(&[0, 0]);
        let c = !tcp_sum(p);
        p[36..38].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn mss_is_clamped_in_syns_with_a_valid_checksum_wherever_the_option_sits() {
        for (opts, at) in [
            (vec![2u8, 4, 0x05, 0xb4], 20),                    // MSS first (even)
            (vec![1, 2, 4, 0x05, 0xb4], 21),                   // after a NOP (odd)
            (vec![1, 1, 4, 2, 2, 4, 0x05, 0xb4], 24),          // after NOPs and SACK-permitted
            (vec![3, 3, 7, 2, 4, 0x05, 0xb4, 1, 1, 1, 1], 23), // after window scale (odd)
        ] {
            for flags in [0x02u8, 0x12] {
                let mut p = syn(&opts, flags);
                assert!(clamp_mss(&mut p, || 1360), "{opts:?}");
                assert_eq!(u16::from_be_bytes([p[20 + at + 2], p[20 + at + 3]]), 1360);
                assert_eq!(tcp_sum(&p), 0xffff, "TCP checksum still valid: {opts:?}");
            }
        }
    }

    #[test]
    fn the_clamp_is_read_only_for_a_syn_and_zero_means_none() {
        let reads = std::cell::Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            1360
        };
        for p in [syn(&[2, 4, 0x05, 0xb4], 0x10), v4(64, 17, &[0; 24])] {
            assert!(!clamp_mss(&mut p.clone(), read));
        }
        assert_eq!(reads.get(), 0, "no SYN, no read of the clamp");
        let mut p = syn(&[2, 4, 0x05, 0xb4], 0x02);
        let before = p.clone();
        assert!(!clamp_mss(&mut p, || 0));
        assert_eq!(p, before, "a clamp of 0 is none");
        assert!(clamp_mss(&mut p, read));
        assert_eq!(reads.get(), 1);
    }

    #[test]
    fn mss_is_left_alone_when_lower_absent_or_not_a_syn() {
        let low = syn(&[2, 4, 0x04, 0x00], 0x02);
        let none = syn(&[1, 1, 1, 1], 0x02);
        let ack = syn(&[2, 4, 0x05, 0xb4], 0x10);
        let udp = v4(64, 17, &[0; 24]);
        for p in [low, none, ack, udp] {
            let mut q = p.clone();
            assert!(!clamp_mss(&mut q, || 1360));
            assert_eq!(q, p);
        }
    }
}
