//! The Internet checksum (RFC 1071), its incremental update (RFC 1624), and the pseudo-header
//! sums used by UDP (RFC 768), ICMPv6 (RFC 4443 §2.3) and upper layers over IPv6 (RFC 8200 §8.1).
//!
//! A partial sum is a `u64` of unfolded 16-bit (or 32-bit) words: sums of pieces are chained
//! with `+` (no overflow below 2^32 words), then [`fold`]ed to 16 bits or [`finish`]ed into the
//! checksum value to store.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::proto;

/// IP protocol number of ICMP (RFC 792).
pub const PROTO_ICMP: u8 = proto::ICMP;
/// IP protocol number of UDP (RFC 768).
pub const PROTO_UDP: u8 = proto::UDP;
/// IPv6 next-header value of ICMPv6 (RFC 4443).
pub const PROTO_ICMPV6: u8 = proto::ICMPV6;

/// The ones'-complement partial sum of `data` as big-endian 16-bit words, an odd last byte
/// padded with zero (RFC 1071 §4.1), not folded: 32-bit words at a time, which folds to the
/// same value.
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

/// Folds a partial sum into 16 bits (not complemented).
#[inline]
pub fn fold(acc: u64) -> u16 {
    // Four fixed steps instead of a loop (each keeps the value mod 0xffff and never makes a
    // nonzero sum 0): < 2^33, < 2^18, ≤ 0x10001, < 2^16.
    let a = (acc & 0xffff_ffff) + (acc >> 32);
    let a = (a & 0xffff) + (a >> 16);
    let a = (a & 0xffff) + (a >> 16);
    ((a & 0xffff) + (a >> 16)) as u16
}

/// Folds a partial sum and complements it: the checksum value to store (RFC 1071).
#[inline]
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The Internet checksum of `data` (RFC 1071). Over a message that already holds its correct
/// checksum it is 0.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// Incrementally updates checksum `old_checksum` after one 16-bit field changed from `old` to
/// `new`, using RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`, which never yields the -0 anomaly of
/// RFC 1141.
#[inline]
pub fn update(old_checksum: u16, old: u16, new: u16) -> u16 {
    finish(u64::from(!old_checksum) + u64::from(!old) + u64::from(new))
}

/// Checksum of an IPv4 header (RFC 791 §3.1) with its checksum field (bytes 10-11) taken as zero.
/// Returns `None` if `header` is shorter than 20 bytes.
pub fn ipv4_header(header: &[u8]) -> Option<u16> {
    if header.len() < 20 {
        return None;
    }
    Some(finish(sum(&header[..10]) + sum(&header[12..])))
}

/// Partial sum of the IPv4 pseudo-header (RFC 768): source, destination, zero, protocol, length.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u64 {
    let mut p = [0u8; 12];
    p[0..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = protocol;
    p[10..12].copy_from_slice(&len.to_be_bytes());
    sum(&p)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit
/// upper-layer length, three zero bytes, next header.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u64 {
    let mut p = [0u8; 40];
    p[0..16].copy_from_slice(&src.octets());
    p[16..32].copy_from_slice(&dst.octets());
    p[32..36].copy_from_slice(&len.to_be_bytes());
    p[39] = next_header;
    sum(&p)
}

/// The UDP checksum over IPv4 (RFC 768) of `udp` (header and data, its checksum field taken as
/// zero). A computed 0 is returned as `0xFFFF`, because 0 on the wire means "no checksum".
/// Returns `None` if `udp` is shorter than the 8-byte header or longer than 65535 bytes.
pub fn udp_ipv4(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> Option<u16> {
    let len = u16::try_from(udp.len()).ok()?;
    if udp.len() < 8 {
        return None;
    }
    let c = finish(pseudo_header_v4(src, dst, PROTO_UDP, len) + sum(&udp[..6]) + sum(&udp[8..]));
    Some(if c == 0 { 0xffff } else { c })
}

/// Verifies the UDP checksum of a received UDP-over-IPv4 datagram (RFC 768): a zero checksum
/// field means the sender computed none and is accepted. Truncated input is rejected.
pub fn verify_udp_ipv4(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> bool {
    let (Ok(len), Some(field)) = (u16::try_from(udp.len()), udp.get(6..8)) else {
        return false;
    };
    if field == [0, 0] {
        return true;
    }
    finish(pseudo_header_v4(src, dst, PROTO_UDP, len) + sum(udp)) == 0
}

/// The checksum of an upper-layer message over IPv6 (RFC 8200 §8.1) whose checksum field is at
/// byte offset `field` of `msg` (taken as zero). For UDP (`next_header` 17) a computed 0 is sent
/// as `0xFFFF`, since UDP over IPv6 must always carry a checksum. Returns `None` if the field
/// lies outside `msg` or `msg` is longer than `u32::MAX`.
pub fn upper_layer_v6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    msg: &[u8],
    field: usize,
) -> Option<u16> {
    let len = u32::try_from(msg.len()).ok()?;
    let end = field.checked_add(2)?;
    if end > msg.len() {
        return None;
    }
    let partial = pseudo_header_v6(src, dst, next_header, len);
    let c = finish(partial + sum(&msg[..field]) + sum(&msg[end..]));
    Some(if c == 0 && next_header == PROTO_UDP {
        0xffff
    } else {
        c
    })
}

/// The ICMPv6 checksum (RFC 4443 §2.3) of `msg` (its checksum field, bytes 2-3, taken as zero).
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Option<u16> {
    upper_layer_v6(src, dst, PROTO_ICMPV6, msg, 2)
}

/// The UDP-over-IPv6 checksum (RFC 8200 §8.1, RFC 768) of `udp` (field at bytes 6-7 taken as 0).
pub fn udp_ipv6(src: Ipv6Addr, dst: Ipv6Addr, udp: &[u8]) -> Option<u16> {
    if udp.len() < 8 {
        return None;
    }
    upper_layer_v6(src, dst, PROTO_UDP, udp, 6)
}

/// True if the ICMPv6 message `msg`, as received, carries a correct checksum (RFC 4443 §2.3).
pub fn verify_icmpv6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> bool {
    let Ok(len) = u32::try_from(msg.len()) else {
        return false;
    };
    msg.len() >= 4 && finish(pseudo_header_v6(src, dst, PROTO_ICMPV6, len) + sum(msg)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn fold_equals_end_around_carry_until_16_bits() {
        let reference = |mut acc: u64| {
            while acc >> 16 != 0 {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u16
        };
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let edges = [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0xffff_ffff,
            1 << 32,
            0x2_fffe_0000,
            u64::MAX,
        ];
        for acc in edges.into_iter().chain((0..100_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x >> (x % 48)
        })) {
            assert_eq!(fold(acc), reference(acc), "{acc:#x}");
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        assert_eq!(fold(sum(&[0x01, 0x02, 0x03])), 0x0402);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn ipv4_header_known_value() {
        // Classic example header (checksum 0xb861).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header(&h), Some(0xb861));
        assert_eq!(checksum(&h), 0);
        assert_eq!(ipv4_header(&h[..19]), None);
    }

    #[test]
    fn incremental_matches_full_recompute() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        // Decrement TTL: word at offset 8 changes from 0x4011 to 0x3f11.
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] -= 1;
        let new = u16::from_be_bytes([h[8], h[9]]);
        let inc = update(0xb861, old, new);
        assert_eq!(Some(inc), ipv4_header(&h));
    }

    #[test]
    fn udp_zero_becomes_ffff_and_zero_field_accepted() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut udp = [0u8; 8];
        udp[0..2].copy_from_slice(&1000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&2000u16.to_be_bytes());
        udp[4..6].copy_from_slice(&8u16.to_be_bytes());
        let c = udp_ipv4(src, dst, &udp).unwrap();
        assert_ne!(c, 0);
        assert!(
            verify_udp_ipv4(src, dst, &udp),
            "zero field means no checksum"
        );
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        assert!(verify_udp_ipv4(src, dst, &udp));
        udp[0] ^= 1;
        assert!(!verify_udp_ipv4(src, dst, &udp));
        assert!(!verify_udp_ipv4(src, dst, &udp[..5]));
        // Find a payload making the computed sum exactly 0 -> must be sent as 0xffff.
        let mut d = [0u8; 10];
        d[4..6].copy_from_slice(&10u16.to_be_bytes());
        let c0 = udp_ipv4(src, dst, &d).unwrap();
        // Putting the checksum value into the data words makes the new sum complement to 0.
        d[8..10].copy_from_slice(&c0.to_be_bytes());
        assert_eq!(udp_ipv4(src, dst, &d), Some(0xffff));
    }
}
