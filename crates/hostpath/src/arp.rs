//! ARP for Ethernet and IPv4 (RFC 826): parsing, replies, requests and gratuitous
//! announcements (RFC 5227 §3).

use espada_wire::ether::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, EthernetHeader, MacAddr};
use std::net::Ipv4Addr;

/// Length of an Ethernet/IPv4 ARP packet (RFC 826: 8 fixed bytes + 2×(6+4) addresses).
pub const PACKET_LEN: usize = 28;
/// `ar$hrd` value for Ethernet (RFC 826; IANA hardware type 1).
pub const HTYPE_ETHERNET: u16 = 1;

/// ARP opcode (RFC 826 `ar$op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `ares_op$REQUEST` (1).
    Request,
    /// `ares_op$REPLY` (2).
    Reply,
}

impl Operation {
    fn code(self) -> u16 {
        match self {
            Operation::Request => 1,
            Operation::Reply => 2,
        }
    }
}

/// Why an ARP packet is not an Ethernet/IPv4 request or reply (RFC 826).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpError {
    /// Fewer than 28 bytes.
    Truncated,
    /// `ar$hrd` is not Ethernet.
    HardwareType(u16),
    /// `ar$pro` is not IPv4.
    ProtocolType(u16),
    /// `ar$hln`/`ar$pln` are not 6/4.
    AddressLength,
    /// `ar$op` is neither request nor reply (e.g. RARP, InARP).
    Operation(u16),
}

/// An Ethernet/IPv4 ARP packet (RFC 826).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpPacket {
    /// Opcode.
    pub op: Operation,
    /// `ar$sha`: sender hardware address.
    pub sender_mac: MacAddr,
    /// `ar$spa`: sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// `ar$tha`: target hardware address (ignored in requests).
    pub target_mac: MacAddr,
    /// `ar$tpa`: target protocol address.
    pub target_ip: Ipv4Addr,
}

fn mac(b: &[u8]) -> MacAddr {
    let mut m = [0u8; 6];
    m.copy_from_slice(b);
    MacAddr(m)
}

fn ip(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl ArpPacket {
    /// Parses the ARP packet at the start of an Ethernet payload (RFC 826 packet format);
    /// trailing Ethernet padding is ignored.
    pub fn parse(payload: &[u8]) -> Result<ArpPacket, ArpError> {
        let b = payload.get(..PACKET_LEN).ok_or(ArpError::Truncated)?;
        let hrd = u16::from_be_bytes([b[0], b[1]]);
        let pro = u16::from_be_bytes([b[2], b[3]]);
        if hrd != HTYPE_ETHERNET {
            return Err(ArpError::HardwareType(hrd));
        }
        if pro != ETHERTYPE_IPV4 {
            return Err(ArpError::ProtocolType(pro));
        }
        if b[4] != 6 || b[5] != 4 {
            return Err(ArpError::AddressLength);
        }
        let op = match u16::from_be_bytes([b[6], b[7]]) {
            1 => Operation::Request,
            2 => Operation::Reply,
            other => return Err(ArpError::Operation(other)),
        };
        Ok(ArpPacket {
            op,
            sender_mac: mac(&b[8..14]),
            sender_ip: ip(&b[14..18]),
            target_mac: mac(&b[18..24]),
            target_ip: ip(&b[24..28]),
        })
    }

    /// The 28 wire bytes of this packet (RFC 826 packet format).
    pub fn to_bytes(&self) -> [u8; PACKET_LEN] {
        let mut b = [0u8; PACKET_LEN];
        b[0..2].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.code().to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac.0);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac.0);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        b
    }

    /// A complete Ethernet frame carrying this packet to `dst`, padded to 60 bytes (RFC 826,
    /// RFC 894). The Ethernet source is the packet's sender hardware address.
    pub fn to_frame(&self, dst: MacAddr) -> Vec<u8> {
        let mut f = Vec::with_capacity(ether::MIN_FRAME_LEN);
        EthernetHeader {
            dst,
            src: self.sender_mac,
            ethertype: ETHERTYPE_ARP,
        }
        .emit(&mut f);
        f.extend_from_slice(&self.to_bytes());
        ether::pad_to_minimum(&mut f);
        f
    }

    /// True for a gratuitous ARP / ARP announcement: sender and target protocol addresses are
    /// equal (RFC 5227 §3).
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip == self.target_ip
    }

    /// True for an ARP probe: sender protocol address 0.0.0.0 (RFC 5227 §2.1.1).
    pub fn is_probe(&self) -> bool {
        self.sender_ip.is_unspecified()
    }
}

/// The reply to `request` from the owner of `request.target_ip`, whose MAC is `our_mac`
/// (RFC 826 "swap hardware and protocol fields ... set opcode to reply ... send it to the
/// hardware address from which the request was received"): a unicast frame to the requester.
/// Returns `None` if `request` is not a request.
pub fn build_reply(request: &ArpPacket, our_mac: MacAddr) -> Option<Vec<u8>> {
    if request.op != Operation::Request {
        return None;
    }
    let reply = ArpPacket {
        op: Operation::Reply,
        sender_mac: our_mac,
        sender_ip: request.target_ip,
        target_mac: request.sender_mac,
        target_ip: request.sender_ip,
    };
    Some(reply.to_frame(request.sender_mac))
}

/// A broadcast request for `target_ip` from `our_mac`/`our_ip`, target hardware address zero
/// (RFC 826; RFC 5227 §1.1 recommends all-zero `ar$tha`).
pub fn build_request(our_mac: MacAddr, our_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    build_request_to(our_mac, our_ip, target_ip, MacAddr::BROADCAST)
}

/// A request for `target_ip` sent to Ethernet address `dst` (broadcast, or the cached MAC for a
/// unicast re-confirmation of a stale entry as RFC 1122 §2.3.2.1 suggests).
pub fn build_request_to(
    our_mac: MacAddr,
    our_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
    dst: MacAddr,
) -> Vec<u8> {
    ArpPacket {
        op: Operation::Request,
        sender_mac: our_mac,
        sender_ip: our_ip,
        target_mac: MacAddr::ZERO,
        target_ip,
    }
    .to_frame(dst)
}

/// A gratuitous ARP announcement of `our_ip` at `our_mac`: a broadcast request with sender and
/// target protocol address both `our_ip` (RFC 5227 §3, RFC 826 merge updates peers' caches).
pub fn build_gratuitous(our_mac: MacAddr, our_ip: Ipv4Addr) -> Vec<u8> {
    build_request(our_mac, our_ip, our_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_non_ethernet_ipv4() {
        let p = ArpPacket {
            op: Operation::Request,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(10, 0, 0, 1),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 0, 0, 2),
        };
        let b = p.to_bytes();
        assert_eq!(ArpPacket::parse(&b), Ok(p));
        assert_eq!(ArpPacket::parse(&b[..27]), Err(ArpError::Truncated));
        let mut x = b;
        x[1] = 6;
        assert_eq!(ArpPacket::parse(&x), Err(ArpError::HardwareType(6)));
        let mut x = b;
        x[2] = 0x86;
        assert!(matches!(
            ArpPacket::parse(&x),
            Err(ArpError::ProtocolType(_))
        ));
        let mut x = b;
        x[5] = 16;
        assert_eq!(ArpPacket::parse(&x), Err(ArpError::AddressLength));
        let mut x = b;
        x[7] = 3;
        assert_eq!(ArpPacket::parse(&x), Err(ArpError::Operation(3)));
    }

    #[test]
    fn reply_only_to_requests() {
        let p = ArpPacket {
            op: Operation::Reply,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(10, 0, 0, 1),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 0, 0, 2),
        };
        assert!(build_reply(&p, MacAddr([2, 0, 0, 0, 0, 2])).is_none());
    }

    #[test]
    fn gratuitous_has_equal_addresses() {
        let f = build_gratuitous(MacAddr([2, 0, 0, 0, 0, 9]), Ipv4Addr::new(10, 1, 1, 1));
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &[0xff; 6]);
        let p = ArpPacket::parse(&f[14..]).unwrap();
        assert!(p.is_gratuitous() && !p.is_probe());
        assert_eq!(p.op, Operation::Request);
    }
}
