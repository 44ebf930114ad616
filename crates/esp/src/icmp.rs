//! ICMP errors about ESP packets this box sent (RFC 792, RFC 1191, RFC 4443, RFC 4301 §6).
//!
//! An ICMP error quotes the start of the offending packet. For an ESP packet we sent, the quoted
//! outer header has our tunnel address as source and the quoted ESP header carries the SPI of
//! our outbound SA, so the data plane can match the error to the tunnel (and update the path
//! MTU for "fragmentation needed" / "packet too big") instead of treating it as noise.

use std::net::IpAddr;

use crate::natt::NATT_PORT;
use crate::wire::{self, be16, be32, proto, udp};
use espada_wire::ip;
use espada_wire::ipv4::Ipv4Packet;
use espada_wire::ipv6::Ipv6Packet;

/// The ICMP error kinds of interest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpErrorKind {
    /// ICMPv4 type 3 other than code 4, or ICMPv6 type 1 (with the code).
    DestinationUnreachable {
        /// ICMP code.
        code: u8,
    },
    /// ICMPv4 type 3 code 4, with the next-hop MTU (RFC 1191 §4; 0 from old routers).
    FragmentationNeeded {
        /// Next-hop MTU.
        mtu: u16,
    },
    /// ICMPv6 type 2 with the MTU (RFC 4443 §3.2).
    PacketTooBig {
        /// MTU of the next hop.
        mtu: u32,
    },
    /// ICMPv4 type 11 or ICMPv6 type 3 (with the code).
    TimeExceeded {
        /// ICMP code.
        code: u8,
    },
}

/// The ESP packet quoted in an ICMP error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddedEsp {
    /// The error.
    pub kind: IcmpErrorKind,
    /// Source of the quoted packet (our tunnel address if we sent it).
    pub src: IpAddr,
    /// Destination of the quoted packet (the peer).
    pub dst: IpAddr,
    /// SPI of the quoted ESP header (our outbound SPI). `None` when the quote is too short to
    /// hold it (UDP-encapsulated ESP quoted with only 8 bytes after the IP header, RFC 792).
    pub spi: Option<u32>,
    /// Quoted packet was UDP-encapsulated ESP (RFC 3948): source and destination ports.
    pub udp_ports: Option<(u16, u16)>,
}

/// Why an ICMP packet is not an error about an ESP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpMismatch {
    /// Truncated or malformed.
    TooShort,
    /// Not ICMP, or an ICMP type that is not one of [`IcmpErrorKind`].
    NotAnError,
    /// The quoted packet is not ESP (nor UDP to/from port 4500).
    NotEsp,
}

/// Parses an ICMP/ICMPv6 error packet (starting at its outer IP header) and extracts the
/// quoted outer header and ESP SPI.
pub fn parse_icmp_error(pkt: &[u8]) -> Result<EmbeddedEsp, IcmpMismatch> {
    use IcmpMismatch::*;
    let (v6, icmp) = match ip::version(pkt).ok_or(TooShort)? {
        4 => {
            let ip = Ipv4Packet::new_checked(pkt).map_err(|_| TooShort)?;
            if ip.protocol() != proto::ICMP {
                return Err(NotAnError);
            }
            (false, ip.payload_ref())
        }
        6 => {
            let ip = Ipv6Packet::new_checked(pkt).map_err(|_| TooShort)?;
            if ip.next_header() != proto::ICMPV6 {
                return Err(NotAnError);
            }
            (true, ip.payload_ref())
        }
        _ => return Err(TooShort),
    };
    if icmp.len() < 8 {
        return Err(TooShort);
    }
    let (ty, code) = (icmp[0], icmp[1]);
    let kind = match (v6, ty) {
        (false, 3) if code == 4 => IcmpErrorKind::FragmentationNeeded {
            mtu: be16(&icmp[6..8]),
        },
        (false, 3) | (true, 1) => IcmpErrorKind::DestinationUnreachable { code },
        (false, 11) | (true, 3) => IcmpErrorKind::TimeExceeded { code },
        (true, 2) => IcmpErrorKind::PacketTooBig {
            mtu: be32(&icmp[4..8]),
        },
        _ => return Err(NotAnError),
    };
    let q = &icmp[8..];
    // The quote is the start of a packet we sent (RFC 792: header + 8 bytes at least; RFC
    // 4443: as much as fits): its length fields describe the whole packet, not the quote, so
    // only the header itself is checked to be there.
    let (src, dst) = ip::addrs(q).ok_or(TooShort)?;
    let (next, hl) = match (v6, ip::version(q)) {
        (true, Some(6)) => (
            Ipv6Packet::new_unchecked(q).next_header(),
            wire::IPV6_HEADER_LEN,
        ),
        (false, Some(4)) => {
            let h = Ipv4Packet::new_unchecked(q);
            if h.header_len() < wire::IPV4_HEADER_LEN || q.len() < h.header_len() {
                return Err(TooShort);
            }
            (h.protocol(), h.header_len())
        }
        _ => return Err(TooShort),
    };
    let rest = &q[hl..];
    let (spi_at, udp_ports) = match next {
        proto::ESP => (rest, None),
        proto::UDP => {
            if rest.len() < wire::UDP_HEADER_LEN {
                return Err(TooShort);
            }
            let sp = be16(&rest[udp::SRC_PORT]);
            let dp = be16(&rest[udp::DST_PORT]);
            if sp != NATT_PORT && dp != NATT_PORT {
                return Err(NotEsp);
            }
            (&rest[wire::UDP_HEADER_LEN..], Some((sp, dp)))
        }
        _ => return Err(NotEsp),
    };
    let spi = if spi_at.len() >= 4 {
        Some(be32(spi_at))
    } else {
        None
    };
    if udp_ports.is_none() && spi.is_none() {
        return Err(TooShort);
    }
    // A quoted non-ESP marker (SPI 0) is IKE, not ESP (RFC 3948 §2.2).
    if spi == Some(0) {
        return Err(NotEsp);
    }
    Ok(EmbeddedEsp {
        kind,
        src,
        dst,
        spi,
        udp_ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted_v4(proto: u8, rest: &[u8]) -> Vec<u8> {
        let mut q = vec![
            0x45, 0, 5, 0xdc, 0, 1, 0x40, 0, 63, proto, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7,
        ];
        q.extend_from_slice(rest);
        q
    }
    fn icmp4(ty: u8, code: u8, word: [u8; 4], quoted: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 203, 0, 113, 1, 192, 0, 2, 1,
        ];
        p.extend_from_slice(&[ty, code, 0, 0]);
        p.extend_from_slice(&word);
        p.extend_from_slice(quoted);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    #[test]
    fn frag_needed_v4_esp() {
        let q = quoted_v4(50, &[0x12, 0x34, 0x56, 0x78, 0, 0, 0, 9]);
        let p = icmp4(3, 4, [0, 0, 0x05, 0x78], &q);
        let e = parse_icmp_error(&p).unwrap();
        assert_eq!(e.kind, IcmpErrorKind::FragmentationNeeded { mtu: 1400 });
        assert_eq!(e.spi, Some(0x1234_5678));
        assert_eq!(e.src, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(e.dst, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(e.udp_ports, None);
        let p = icmp4(11, 0, [0; 4], &q);
        assert_eq!(
            parse_icmp_error(&p).unwrap().kind,
            IcmpErrorKind::TimeExceeded { code: 0 }
        );
        let p = icmp4(3, 1, [0; 4], &q);
        assert_eq!(
            parse_icmp_error(&p).unwrap().kind,
            IcmpErrorKind::DestinationUnreachable { code: 1 }
        );
        assert_eq!(
            parse_icmp_error(&icmp4(8, 0, [0; 4], &q)),
            Err(IcmpMismatch::NotAnError)
        );
        for n in 0..p.len() {
            let _ = parse_icmp_error(&p[..n]);
        }
    }

    #[test]
    fn natt_quote_with_and_without_spi() {
        let short = quoted_v4(17, &[0x11, 0x94, 0x11, 0x94, 0, 40, 0, 0]);
        let e = parse_icmp_error(&icmp4(3, 3, [0; 4], &short)).unwrap();
        assert_eq!((e.spi, e.udp_ports), (None, Some((4500, 4500))));
        let long = quoted_v4(17, &[0x11, 0x94, 0x11, 0x94, 0, 40, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            parse_icmp_error(&icmp4(3, 3, [0; 4], &long)).unwrap().spi,
            Some(0x102)
        );
        let dns = quoted_v4(17, &[0, 53, 0, 53, 0, 40, 0, 0]);
        assert_eq!(
            parse_icmp_error(&icmp4(3, 3, [0; 4], &dns)),
            Err(IcmpMismatch::NotEsp)
        );
    }

    #[test]
    fn packet_too_big_v6() {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 58, 64];
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0x05, 0x00]);
        let mut q = vec![0x60, 0, 0, 0, 0, 100, 50, 64];
        q.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        q.extend_from_slice(&[0; 11]);
        q.push(1);
        q.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        q.extend_from_slice(&[0; 11]);
        q.push(2);
        q.extend_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 1]);
        p.extend_from_slice(&q);
        let plen = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        let e = parse_icmp_error(&p).unwrap();
        assert_eq!(e.kind, IcmpErrorKind::PacketTooBig { mtu: 1280 });
        assert_eq!(e.spi, Some(0xaabb_ccdd));
        assert_eq!(e.src, "2001:db8::1".parse::<IpAddr>().unwrap());
    }
}
