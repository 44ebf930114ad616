//! Shared fixtures for the integration tests: a two-port configuration, a peer, frames built
//! with etherparse (an independent implementation), and an independent checksum.
#![allow(dead_code)]

use espada_hostpath::host::{Ipv4Cidr, Ipv6Cidr};
use espada_hostpath::{HostConfig, HostStack, MacAddr, NeighborConfig, PortConfig};
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder};
use std::net::{Ipv4Addr, Ipv6Addr};

pub const OUT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const IN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
pub const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
pub const OUT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const GW_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
pub const IN_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const OUT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
pub const GW_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xfe);
pub const PEER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x99);
pub const IN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);

pub fn config() -> HostConfig {
    HostConfig {
        outside: PortConfig {
            mac: OUT_MAC,
            ipv4: Some(Ipv4Cidr {
                addr: OUT_V4,
                prefix_len: 24,
            }),
            ipv6: Some(Ipv6Cidr {
                addr: OUT_V6,
                prefix_len: 64,
            }),
            gateway_v4: Some(GW_V4),
            gateway_v6: Some(GW_V6),
        },
        inside: PortConfig {
            mac: IN_MAC,
            ipv4: Some(Ipv4Cidr {
                addr: IN_V4,
                prefix_len: 24,
            }),
            ipv6: Some(Ipv6Cidr {
                addr: IN_V6,
                prefix_len: 64,
            }),
            gateway_v4: None,
            gateway_v6: None,
        },
        neighbor: NeighborConfig::default(),
        router: true,
    }
}

pub fn host() -> HostStack {
    HostStack::new(config()).expect("valid config")
}

/// An ARP request or reply built by etherparse.
pub fn ep_arp(
    op: ArpOperation,
    eth_src: MacAddr,
    eth_dst: MacAddr,
    sha: MacAddr,
    spa: Ipv4Addr,
    tha: MacAddr,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &sha.0,
        &spa.octets(),
        &tha.0,
        &tpa.octets(),
    )
    .expect("arp");
    let mut v = Vec::new();
    PacketBuilder::ethernet2(eth_src.0, eth_dst.0)
        .arp(arp)
        .write(&mut v)
        .expect("write");
    v
}

/// An ARP request from the peer for `tpa`, broadcast.
pub fn ep_arp_request(tpa: Ipv4Addr) -> Vec<u8> {
    ep_arp(
        ArpOperation::REQUEST,
        PEER_MAC,
        MacAddr::BROADCAST,
        PEER_MAC,
        PEER_V4,
        MacAddr::ZERO,
        tpa,
    )
}

/// A Neighbor Solicitation built by etherparse (hop limit 255, checksum by etherparse).
pub fn ep_ns(
    eth_src: MacAddr,
    eth_dst: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    sllao: Option<MacAddr>,
    hop_limit: u8,
) -> Vec<u8> {
    let mut payload = target.octets().to_vec();
    if let Some(m) = sllao {
        payload.extend_from_slice(&[1, 1]);
        payload.extend_from_slice(&m.0);
    }
    let mut v = Vec::new();
    PacketBuilder::ethernet2(eth_src.0, eth_dst.0)
        .ipv6(src.octets(), dst.octets(), hop_limit)
        .icmpv6(Icmpv6Type::NeighborSolicitation)
        .write(&mut v, &payload)
        .expect("write");
    v
}

/// The peer's NS for `target`, to its solicited-node group, with an SLLAO.
pub fn ep_peer_ns(target: Ipv6Addr) -> Vec<u8> {
    let o = target.octets();
    let group = Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ]);
    ep_ns(
        PEER_MAC,
        MacAddr([0x33, 0x33, 0xff, o[13], o[14], o[15]]),
        PEER_V6,
        group,
        target,
        Some(PEER_MAC),
        255,
    )
}

/// A Neighbor Advertisement built by etherparse.
#[allow(clippy::too_many_arguments)]
pub fn ep_na(
    eth_src: MacAddr,
    eth_dst: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    tllao: Option<MacAddr>,
    solicited: bool,
    override_: bool,
) -> Vec<u8> {
    let mut payload = target.octets().to_vec();
    if let Some(m) = tllao {
        payload.extend_from_slice(&[2, 1]);
        payload.extend_from_slice(&m.0);
    }
    let header = etherparse::icmpv6::NeighborAdvertisementHeader {
        router: false,
        solicited,
        r#override: override_,
    };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(eth_src.0, eth_dst.0)
        .ipv6(src.octets(), dst.octets(), 255)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(header))
        .write(&mut v, &payload)
        .expect("write");
    v
}

/// An ICMPv4 echo request built by etherparse.
pub fn ep_echo_v4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    eth_dst: MacAddr,
    id: u16,
    seq: u16,
    data: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC.0, eth_dst.0)
        .ipv4(src.octets(), dst.octets(), 57)
        .icmpv4_echo_request(id, seq)
        .write(&mut v, data)
        .expect("write");
    v
}

/// An ICMPv6 echo request built by etherparse.
pub fn ep_echo_v6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    eth_dst: MacAddr,
    id: u16,
    seq: u16,
    data: &[u8],
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC.0, eth_dst.0)
        .ipv6(src.octets(), dst.octets(), 61)
        .icmpv6_echo_request(id, seq)
        .write(&mut v, data)
        .expect("write");
    v
}

/// Independent RFC 1071 checksum over the concatenation of `parts` (a deliberately different
/// formulation from the crate's: byte-at-a-time with an explicit carry loop at the end).
pub fn ind_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let mut s: u32 = 0;
    for (i, b) in bytes.iter().enumerate() {
        s += if i % 2 == 0 {
            u32::from(*b) << 8
        } else {
            u32::from(*b)
        };
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Independent ICMPv6 checksum check: the sum over pseudo-header and message must be 0.
pub fn ind_icmpv6_ok(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> bool {
    let len = (msg.len() as u32).to_be_bytes();
    ind_checksum(&[&src.octets(), &dst.octets(), &len, &[0, 0, 0, 58], msg]) == 0
}
