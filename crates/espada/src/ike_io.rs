//! IKE datagrams on the wire: the UDP payload and addresses of a punted frame (RFC 7296 §2,
//! port 500; RFC 3948 §2.2, port 4500 with the non-ESP marker, which stays in the payload as
//! `espada_ike` expects it), and frames for what the control plane sends (Ethernet, IPv4 or
//! IPv6 with a correct header checksum, UDP with a correct checksum: veth peers and NICs
//! without offload drop UDP whose checksum is wrong).

use std::net::{IpAddr, SocketAddr};

use espada_wire::MacAddr;
use espada_wire::checksum::{self, PROTO_UDP};
use espada_wire::ether::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetHeader};
use espada_wire::ipv4::{Ipv4Packet, Ipv4Repr};
use espada_wire::ipv6::{Ipv6Packet, Ipv6Repr};

/// IKE (RFC 7296 §2).
pub const IKE_PORT: u16 = 500;
/// NAT traversal (RFC 3948 §2.2).
pub const NATT_PORT: u16 = 4500;
const UDP_HEADER: usize = 8;
const TTL: u8 = 64;

/// An IKE datagram in a frame: (our address, the peer's address, UDP payload).
pub fn parse(frame: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let (eth, l3) = EthernetHeader::parse(frame).ok()?;
    let (src, dst, udp): (IpAddr, IpAddr, &[u8]) = match eth.ethertype {
        ETHERTYPE_IPV4 => {
            let p = Ipv4Packet::parse(l3).ok()?;
            if p.protocol() != PROTO_UDP || p.is_fragment() {
                return None;
            }
            (p.src().into(), p.dst().into(), p.payload_ref())
        }
        ETHERTYPE_IPV6 => {
            let p = Ipv6Packet::parse(l3).ok()?;
            if p.next_header() != PROTO_UDP {
                return None;
            }
            (p.src().into(), p.dst().into(), p.payload_ref())
        }
        _ => return None,
    };
    let sport = u16::from_be_bytes(udp.get(0..2)?.try_into().ok()?);
    let dport = u16::from_be_bytes(udp.get(2..4)?.try_into().ok()?);
    let len = usize::from(u16::from_be_bytes(udp.get(4..6)?.try_into().ok()?));
    if !matches!(dport, IKE_PORT | NATT_PORT) || len < UDP_HEADER || len > udp.len() {
        return None;
    }
    Some((
        SocketAddr::new(dst, dport),
        SocketAddr::new(src, sport),
        &udp[UDP_HEADER..len],
    ))
}

/// The frame carrying `payload` from `local` to `remote`, or `None` when the families differ
/// or the datagram would exceed 65535 bytes.
pub fn frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    local: SocketAddr,
    remote: SocketAddr,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let udp_len = u16::try_from(UDP_HEADER + payload.len()).ok()?;
    let mut udp = Vec::with_capacity(usize::from(udp_len));
    udp.extend_from_slice(&local.port().to_be_bytes());
    udp.extend_from_slice(&remote.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut out = Vec::with_capacity(14 + 40 + udp.len());
    match (local.ip(), remote.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let c = checksum::udp_ipv4(s, d, &udp)?;
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            EthernetHeader {
                dst: dst_mac,
                src: src_mac,
                ethertype: ETHERTYPE_IPV4,
            }
            .emit(&mut out);
            Ipv4Repr {
                tos: 0,
                ident: 0,
                dont_fragment: false,
                ttl: TTL,
                protocol: PROTO_UDP,
                src: s,
                dst: d,
            }
            .emit(udp.len(), &mut out)?;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let c = checksum::udp_ipv6(s, d, &udp)?;
            udp[6..8].copy_from_slice(&c.to_be_bytes());
            EthernetHeader {
                dst: dst_mac,
                src: src_mac,
                ethertype: ETHERTYPE_IPV6,
            }
            .emit(&mut out);
            Ipv6Repr {
                traffic_class: 0,
                next_header: PROTO_UDP,
                hop_limit: TTL,
                src: s,
                dst: d,
            }
            .emit(udp.len(), &mut out)?;
        }
        _ => return None,
    }
    out.extend_from_slice(&udp);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_frame_parses_back_with_valid_checksums_in_both_families() {
        let m = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        for (l, r) in [
            ("198.51.100.1:500", "198.51.100.2:500"),
            ("198.51.100.1:4500", "203.0.113.9:61234"),
            ("[2001:db8:1::1]:4500", "[2001:db8:1::2]:4500"),
        ] {
            let (l, r): (SocketAddr, SocketAddr) = (l.parse().unwrap(), r.parse().unwrap());
            let payload = [0u8, 0, 0, 0, 0x11, 0x22, 0x33];
            // What the peer at `r` sends to us at `l`: parsed as (our address, its address).
            let f = frame(m.0, m.1, r, l, &payload).unwrap();
            let (local, remote, p) = parse(&f).unwrap();
            assert_eq!((local, remote, p), (l, r, &payload[..]));
            let l3 = &f[14..];
            let udp = if r.is_ipv4() {
                assert_eq!(checksum::checksum(&l3[..20]), 0, "IPv4 header checksum");
                &l3[20..]
            } else {
                &l3[40..]
            };
            let c = match (r.ip(), l.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => checksum::finish(
                    checksum::pseudo_header_v4(s, d, PROTO_UDP, udp.len() as u16)
                        + checksum::sum(udp),
                ),
                (IpAddr::V6(s), IpAddr::V6(d)) => checksum::finish(
                    checksum::pseudo_header_v6(s, d, PROTO_UDP, udp.len() as u32)
                        + checksum::sum(udp),
                ),
                _ => unreachable!(),
            };
            assert_eq!(c, 0, "UDP checksum verifies");
        }
        assert!(
            frame(
                m.0,
                m.1,
                "198.51.100.1:500".parse().unwrap(),
                "[2001:db8::1]:500".parse().unwrap(),
                &[]
            )
            .is_none()
        );
    }

    #[test]
    fn only_udp_to_500_or_4500_is_ike() {
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        let f = frame(
            m,
            m,
            "198.51.100.1:53".parse().unwrap(),
            "198.51.100.2:53".parse().unwrap(),
            b"x",
        )
        .unwrap();
        assert!(parse(&f).is_none());
        assert!(parse(&f[..30]).is_none());
        assert!(parse(&[]).is_none());
    }
}
