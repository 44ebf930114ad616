//! Classification of packets arriving on the outside port, before any SA lookup.
//!
//! Given the outer IP packet (starting at the IP header), tells ESP (IP protocol 50, or UDP
//! port 4500 per RFC 3948) from NAT keepalives, IKE (port 500, or port 4500 behind the non-ESP
//! marker), ICMP errors and everything else. For ESP it returns SPI, sequence number and the
//! ESP header offset so the data plane can look the SA up (SPI) and pick the owner worker.

use crate::drop::DropReason;
use crate::natt::{self, IKE_PORT, NATT_PORT};
use crate::wire::{self, be16, be32, proto};
use espada_wire::ip;
use espada_wire::ipv4::{Ipv4Error, Ipv4Packet};
use espada_wire::ipv6::{Ipv6Error, Ipv6Packet};

/// An outer IPv4 header the view refused: truncated, or malformed.
pub(crate) fn outer_v4(e: Ipv4Error) -> DropReason {
    match e {
        Ipv4Error::Truncated => DropReason::TooShort,
        Ipv4Error::Version | Ipv4Error::HeaderLength | Ipv4Error::Checksum => {
            DropReason::BadOuterHeader
        }
    }
}

/// An outer IPv6 header the view refused: truncated, or malformed.
pub(crate) fn outer_v6(e: Ipv6Error) -> DropReason {
    match e {
        Ipv6Error::Truncated => DropReason::TooShort,
        Ipv6Error::Version => DropReason::BadOuterHeader,
    }
}

/// What an outside packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// ESP (RFC 4303), plain or UDP-encapsulated (RFC 3948 §2.1).
    Esp {
        /// SPI (RFC 4303 §2.1).
        spi: u32,
        /// Low 32 bits of the sequence number (RFC 4303 §2.2).
        seq: u32,
        /// Offset of the ESP header from the start of the packet.
        esp_offset: usize,
        /// End of the ESP packet: the outer packet's length per its header (link padding
        /// excluded).
        end: usize,
        /// The outer TOS / traffic class (its ECN field matters to decapsulation, RFC 6040).
        tos: u8,
        /// Carried in UDP (RFC 3948).
        udp_encap: bool,
    },
    /// NAT keepalive: UDP to port 4500 with the single byte 0xFF (RFC 3948 §2.3).
    NatKeepalive,
    /// IKE on port 4500 behind the non-ESP marker (RFC 3948 §2.2): punt to the control plane.
    IkeNonEsp {
        /// Offset of the IKE header (after the 4-byte marker).
        ike_offset: usize,
    },
    /// IKE on port 500 (RFC 7296 §2): punt to the control plane.
    Ike {
        /// Offset of the IKE header.
        ike_offset: usize,
    },
    /// ICMP (RFC 792) or ICMPv6 (RFC 4443); see [`crate::icmp`].
    Icmp {
        /// ICMPv6 (else ICMPv4).
        v6: bool,
        /// Offset of the ICMP header.
        icmp_offset: usize,
    },
    /// An IPv4 fragment (needs reassembly before it can be classified further).
    Fragment,
    /// Anything else (with its IP protocol / next header).
    Other {
        /// IP protocol number.
        proto: u8,
    },
}

/// Classifies an outer IP packet. Malformed packets give [`DropReason::TooShort`] or
/// [`DropReason::BadOuterHeader`]. Always inlined: returned through memory, the data plane
/// re-read its `Class` before the stores completed (a store-forwarding stall, ~3 % of a 1-SA
/// decrypt profile).
#[inline(always)]
pub fn classify(pkt: &[u8]) -> Result<Class, DropReason> {
    let (v6, hl, len, next, tos) = match ip::version(pkt).ok_or(DropReason::TooShort)? {
        4 => {
            let ip = Ipv4Packet::new_checked(pkt).map_err(outer_v4)?;
            // RFC 791 §3.1: a header whose checksum fails is discarded (a corrupted header
            // never reaches the SPI lookup).
            if !ip.verify_checksum() {
                return Err(DropReason::BadOuterHeader);
            }
            if ip.is_fragment() {
                return Ok(Class::Fragment);
            }
            (
                false,
                ip.header_len(),
                ip.total_len(),
                ip.protocol(),
                ip.tos(),
            )
        }
        6 => {
            let ip = Ipv6Packet::new_checked(pkt).map_err(outer_v6)?;
            match ip.upper_layer() {
                None => return Err(DropReason::BadOuterHeader),
                Some((_, proto::FRAGMENT)) => return Ok(Class::Fragment),
                Some((off, next)) => (true, off, ip.total_len(), next, ip.traffic_class()),
            }
        }
        _ => return Err(DropReason::BadOuterHeader),
    };
    let pkt = &pkt[..len];
    match next {
        proto::ESP => esp_at(pkt, hl, tos, false),
        proto::UDP => {
            if len < hl + wire::UDP_HEADER_LEN {
                return Err(DropReason::TooShort);
            }
            let udp = &pkt[hl..];
            let ulen = usize::from(be16(&udp[wire::udp::LENGTH]));
            if ulen < wire::UDP_HEADER_LEN || ulen > udp.len() {
                return Err(DropReason::BadOuterHeader);
            }
            let dport = be16(&udp[wire::udp::DST_PORT]);
            let off = hl + wire::UDP_HEADER_LEN;
            let payload = &pkt[off..hl + ulen];
            match dport {
                NATT_PORT if natt::is_keepalive(payload) => Ok(Class::NatKeepalive),
                NATT_PORT if natt::has_non_esp_marker(payload) => Ok(Class::IkeNonEsp {
                    ike_offset: off + 4,
                }),
                // ESP in UDP fills the rest of the IP packet (RFC 3948 §2.1).
                NATT_PORT if hl + ulen != len => Err(DropReason::BadOuterHeader),
                NATT_PORT => esp_at(pkt, off, tos, true),
                IKE_PORT => Ok(Class::Ike { ike_offset: off }),
                _ => Ok(Class::Other { proto: proto::UDP }),
            }
        }
        proto::ICMP if !v6 => Ok(Class::Icmp {
            v6: false,
            icmp_offset: hl,
        }),
        proto::ICMPV6 if v6 => Ok(Class::Icmp {
            v6: true,
            icmp_offset: hl,
        }),
        p => Ok(Class::Other { proto: p }),
    }
}

#[inline(always)]
fn esp_at(pkt: &[u8], off: usize, tos: u8, udp_encap: bool) -> Result<Class, DropReason> {
    if pkt.len() < off + wire::ESP_HEADER_LEN {
        return Err(DropReason::TooShort);
    }
    Ok(Class::Esp {
        spi: be32(&pkt[off..]),
        seq: be32(&pkt[off + 4..]),
        esp_offset: off,
        end: pkt.len(),
        tos,
        udp_encap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend_from_slice(payload);
        let l = p.len() as u16;
        p[2..4].copy_from_slice(&l.to_be_bytes());
        let c = espada_wire::checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }
    fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = vec![0x11, 0x94];
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    #[test]
    fn an_ipv4_header_whose_checksum_fails_is_a_bad_outer_header() {
        let good = v4(50, &[0, 0, 1, 0, 0, 0, 0, 7, 1, 2, 3]);
        assert!(matches!(classify(&good), Ok(Class::Esp { .. })));
        for at in [0usize, 8, 10, 12, 19] {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            assert_eq!(classify(&bad), Err(DropReason::BadOuterHeader), "byte {at}");
        }
    }

    #[test]
    fn classes() {
        let esp = [0, 0, 1, 0, 0, 0, 0, 7, 1, 2, 3];
        assert_eq!(
            classify(&v4(50, &esp)),
            Ok(Class::Esp {
                spi: 256,
                seq: 7,
                esp_offset: 20,
                end: 31,
                tos: 0,
                udp_encap: false
            })
        );
        assert_eq!(
            classify(&v4(17, &udp(4500, &esp))),
            Ok(Class::Esp {
                spi: 256,
                seq: 7,
                esp_offset: 28,
                end: 39,
                tos: 0,
                udp_encap: true
            })
        );
        assert_eq!(
            classify(&v4(17, &udp(4500, &[0xff]))),
            Ok(Class::NatKeepalive)
        );
        assert_eq!(
            classify(&v4(17, &udp(4500, &[0, 0, 0, 0, 9, 9]))),
            Ok(Class::IkeNonEsp { ike_offset: 32 })
        );
        assert_eq!(
            classify(&v4(17, &udp(500, &[1]))),
            Ok(Class::Ike { ike_offset: 28 })
        );
        assert_eq!(
            classify(&v4(17, &udp(53, &[1]))),
            Ok(Class::Other { proto: 17 })
        );
        assert_eq!(
            classify(&v4(1, &[3, 4, 0, 0])),
            Ok(Class::Icmp {
                v6: false,
                icmp_offset: 20
            })
        );
        assert_eq!(classify(&v4(6, &[])), Ok(Class::Other { proto: 6 }));
        assert_eq!(
            classify(&v4(17, &udp(4500, &[1, 2, 3]))),
            Err(DropReason::TooShort)
        );
        assert_eq!(classify(&v4(50, &[1, 2, 3])), Err(DropReason::TooShort));
        assert_eq!(classify(&[]), Err(DropReason::TooShort));
        assert_eq!(classify(&[0x55; 30]), Err(DropReason::BadOuterHeader));
        let mut frag = v4(50, &esp);
        frag[6] = 0x20;
        frag[10..12].copy_from_slice(&[0, 0]);
        let c = espada_wire::checksum::checksum(&frag[..20]);
        frag[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(classify(&frag), Ok(Class::Fragment));
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_esp_and_fragments_recognised() {
        // IPv6 header whose next header is `first`, then `ext` (each: next header, length in
        // 8-octet units beyond the first, padding), then an ESP header.
        fn v6(first: u8, ext: &[(u8, u8)]) -> Vec<u8> {
            let mut p = vec![0x60, 0, 0, 0, 0, 0, first, 64];
            p.extend_from_slice(&[0; 32]);
            for &(next, units) in ext {
                p.push(next);
                p.push(units);
                p.extend(std::iter::repeat_n(0, 6 + 8 * usize::from(units)));
            }
            p.extend_from_slice(&[0, 0, 3, 0, 0, 0, 0, 9]);
            let plen = (p.len() - 40) as u16;
            p[4..6].copy_from_slice(&plen.to_be_bytes());
            p
        }
        let esp = |off| {
            Ok(Class::Esp {
                spi: 0x300,
                seq: 9,
                esp_offset: off,
                end: off + 8,
                tos: 0,
                udp_encap: false,
            })
        };
        assert_eq!(
            classify(&v6(60, &[(50, 0)])),
            esp(48),
            "destination options"
        );
        assert_eq!(
            classify(&v6(0, &[(43, 1), (60, 0), (50, 0)])),
            esp(40 + 8 + 16 + 8),
            "hop-by-hop, routing (16 bytes), destination options"
        );
        assert_eq!(classify(&v6(44, &[(50, 0)])), Ok(Class::Fragment));
        assert_eq!(classify(&v6(60, &[(44, 0), (50, 0)])), Ok(Class::Fragment));
        // A header that claims more than the packet holds, and an endless chain.
        let mut long = v6(60, &[(50, 0)]);
        long[41] = 9;
        assert_eq!(classify(&long), Err(DropReason::BadOuterHeader));
        let chain = [(60u8, 0u8); 9];
        assert_eq!(classify(&v6(60, &chain)), Err(DropReason::BadOuterHeader));
    }

    #[test]
    fn ipv6_esp() {
        let mut p = vec![0x60, 0, 0, 0, 0, 8, 50, 64];
        p.extend_from_slice(&[0; 32]);
        p.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 1]);
        assert_eq!(
            classify(&p),
            Ok(Class::Esp {
                spi: 512,
                seq: 1,
                esp_offset: 40,
                end: 48,
                tos: 0,
                udp_encap: false
            })
        );
        p[6] = 58;
        assert_eq!(
            classify(&p),
            Ok(Class::Icmp {
                v6: true,
                icmp_offset: 40
            })
        );
    }

    #[test]
    fn never_panics_on_truncations() {
        let esp = [0, 0, 1, 0, 0, 0, 0, 7, 1, 2, 3];
        let full = v4(17, &udp(4500, &esp));
        for n in 0..full.len() {
            let _ = classify(&full[..n]);
        }
    }
}
