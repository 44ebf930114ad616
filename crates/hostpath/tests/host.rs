//! `HostStack` as a whole: configuration checks, next hops, resolution with retries through
//! `poll`, announcements, and counters.

mod common;

use common::*;
use espada_hostpath::host::{ConfigError, Ipv4Cidr};
use espada_hostpath::{Handled, HostOutput, HostStack, IgnoreReason, MacAddr, PortRole};
use etherparse::{ArpOperation, NetSlice, SlicedPacket};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

#[test]
fn next_hop_on_link_gateway_or_none() {
    let h = host();
    let on_link: IpAddr = Ipv4Addr::new(192, 0, 2, 200).into();
    assert_eq!(h.next_hop(PortRole::Outside, on_link), Some(on_link));
    let far: IpAddr = Ipv4Addr::new(203, 0, 113, 5).into();
    assert_eq!(h.next_hop(PortRole::Outside, far), Some(GW_V4.into()));
    let far6: IpAddr = "2001:db8:ffff::5".parse::<Ipv6Addr>().unwrap().into();
    assert_eq!(h.next_hop(PortRole::Outside, far6), Some(GW_V6.into()));
    let ll: IpAddr = "fe80::1".parse::<Ipv6Addr>().unwrap().into();
    assert_eq!(h.next_hop(PortRole::Outside, ll), Some(ll));
    // The inside port has no gateway: off-link has no route.
    assert_eq!(h.next_hop(PortRole::Inside, far), None);
    let in_link: IpAddr = Ipv4Addr::new(10, 0, 0, 77).into();
    assert_eq!(h.next_hop(PortRole::Inside, in_link), Some(in_link));
}

#[test]
fn config_is_validated() {
    let mut c = config();
    c.outside.gateway_v4 = Some(Ipv4Addr::new(198, 51, 100, 1));
    assert_eq!(
        HostStack::new(c).err(),
        Some(ConfigError::GatewayNotOnLink(
            PortRole::Outside,
            Ipv4Addr::new(198, 51, 100, 1).into()
        ))
    );
    let mut c = config();
    c.inside.ipv4 = Some(Ipv4Cidr {
        addr: IN_V4,
        prefix_len: 33,
    });
    assert_eq!(
        HostStack::new(c).err(),
        Some(ConfigError::PrefixLength(PortRole::Inside))
    );
    let mut c = config();
    c.inside.ipv4 = None;
    c.inside.gateway_v4 = Some(IN_V4);
    assert_eq!(
        HostStack::new(c).err(),
        Some(ConfigError::GatewayWithoutAddress(PortRole::Inside))
    );
    let mut c = config();
    c.inside.mac = MacAddr::BROADCAST;
    assert_eq!(
        HostStack::new(c).err(),
        Some(ConfigError::BadMac(PortRole::Inside))
    );
}

fn arp_target(frame: &[u8]) -> ([u8; 6], ArpOperation, [u8; 4]) {
    let sp = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Arp(a)) = sp.net else {
        panic!("not ARP")
    };
    let a = a.to_packet().try_eth_ipv4().unwrap();
    (frame[0..6].try_into().unwrap(), a.operation, a.target_ipv4)
}

#[test]
fn resolve_retries_via_poll_then_gives_up() {
    let mut h = host();
    let mut out = HostOutput::default();
    let t0 = Instant::now();
    let gw: IpAddr = GW_V4.into();
    assert_eq!(h.resolve(PortRole::Outside, gw, t0, &mut out), None);
    assert_eq!(out.frames.len(), 1);
    let (dst, op, tpa) = arp_target(&out.frames[0].frame);
    assert_eq!(
        (dst, op, tpa),
        ([0xff; 6], ArpOperation::REQUEST, GW_V4.octets())
    );
    // Asking again immediately does not flood.
    assert_eq!(h.resolve(PortRole::Outside, gw, t0, &mut out), None);
    assert_eq!(out.frames.len(), 1);
    out.clear();
    let mut sent = 0;
    for s in 1..=10 {
        h.poll(t0 + Duration::from_secs(s), &mut out);
        sent += out.frames.len();
        out.clear();
    }
    assert_eq!(
        sent, 2,
        "two retransmissions after the first request, then silence"
    );
    assert_eq!(h.counters().arp_requests_sent, 3);
}

#[test]
fn resolve_refuses_non_neighbours() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    for ip in [
        IpAddr::V4(OUT_V4),                           // ourselves
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),    // off-link
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 255)),    // directed broadcast
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)),      // network address
        IpAddr::V6("ff02::1".parse().unwrap()),       // multicast
        IpAddr::V6("2001:db8:9::1".parse().unwrap()), // off-link
    ] {
        assert_eq!(
            h.resolve(PortRole::Outside, ip, now, &mut out),
            None,
            "{ip}"
        );
    }
    assert!(out.frames.is_empty());
    assert!(h.neighbors(PortRole::Outside).is_empty());
}

#[test]
fn stale_neighbour_confirmed_by_unicast_request() {
    let mut h = host();
    let mut out = HostOutput::default();
    let t0 = Instant::now();
    h.handle_frame(PortRole::Outside, &ep_arp_request(OUT_V4), t0, &mut out);
    out.clear();
    let later = t0 + Duration::from_secs(31);
    assert_eq!(
        h.resolve(PortRole::Outside, PEER_V4.into(), later, &mut out),
        Some(PEER_MAC),
        "stale entries stay usable"
    );
    assert_eq!(out.frames.len(), 1);
    let (dst, op, tpa) = arp_target(&out.frames[0].frame);
    assert_eq!(
        (dst, op, tpa),
        (PEER_MAC.0, ArpOperation::REQUEST, PEER_V4.octets())
    );
}

#[test]
fn announce_sends_garp_and_unsolicited_na() {
    let mut h = host();
    let mut out = HostOutput::default();
    h.announce(PortRole::Outside, &mut out);
    assert_eq!(out.frames.len(), 2);
    let (dst, op, tpa) = arp_target(&out.frames[0].frame);
    assert_eq!(
        (dst, op, tpa),
        ([0xff; 6], ArpOperation::REQUEST, OUT_V4.octets())
    );
    let sp = SlicedPacket::from_ethernet(&out.frames[1].frame).unwrap();
    let Some(etherparse::TransportSlice::Icmpv6(icmp)) = sp.transport else {
        panic!("not ICMPv6")
    };
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    assert!(icmp.is_checksum_valid(OUT_V6.octets(), all_nodes.octets()));
    assert!(matches!(
        icmp.icmp_type(),
        etherparse::Icmpv6Type::NeighborAdvertisement(h) if h.r#override && !h.solicited
    ));
}

#[test]
fn unsupported_frames_counted_by_reason() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    let cases: Vec<(Vec<u8>, IgnoreReason)> = vec![
        (vec![0; 10], IgnoreReason::EtherTruncated),
        (
            [&OUT_MAC.0[..], &PEER_MAC.0[..], &[0x00, 0x40], &[0; 64]].concat(),
            IgnoreReason::NotEthernetII,
        ),
        (
            [&OUT_MAC.0[..], &PEER_MAC.0[..], &[0x88, 0xcc], &[0; 46]].concat(),
            IgnoreReason::UnsupportedEthertype,
        ),
        (
            [&OUT_MAC.0[..], &PEER_MAC.0[..], &[0x08, 0x00], &[0x45; 10]].concat(),
            IgnoreReason::Ipv4Malformed,
        ),
        (
            [&OUT_MAC.0[..], &PEER_MAC.0[..], &[0x86, 0xdd], &[0x60; 10]].concat(),
            IgnoreReason::Ipv6Malformed,
        ),
    ];
    for (f, reason) in &cases {
        assert_eq!(
            h.handle_frame(PortRole::Outside, f, now, &mut out),
            Handled::Ignored(*reason)
        );
        assert_eq!(h.counters().ignored(*reason), 1, "{reason:?}");
    }
    assert_eq!(h.counters().ignored_total(), cases.len() as u64);
    assert!(out.frames.is_empty());
    let named: Vec<_> = h
        .counters()
        .ignored_by_reason()
        .filter(|(_, n)| *n > 0)
        .map(|(r, _)| r.as_str())
        .collect();
    assert_eq!(
        named,
        [
            "ether_truncated",
            "not_ethernet_ii",
            "unsupported_ethertype",
            "ipv4_malformed",
            "ipv6_malformed"
        ]
    );
}

#[test]
fn port_without_ipv6_ignores_nd() {
    let mut c = config();
    c.inside.ipv6 = None;
    let mut h = HostStack::new(c).unwrap();
    let mut out = HostOutput::default();
    let ns = ep_peer_ns(IN_V6);
    assert_eq!(
        h.handle_frame(PortRole::Inside, &ns, Instant::now(), &mut out),
        Handled::Ignored(IgnoreReason::NoAddress)
    );
    assert_eq!(
        h.resolve(PortRole::Inside, IN_V6.into(), Instant::now(), &mut out),
        None
    );
    assert!(out.frames.is_empty());
}

#[test]
fn group_source_mac_is_never_answered() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    // An echo request whose Ethernet source has the group bit set (found by the fuzzer: the
    // reply would have gone to a multicast MAC).
    let mut f = ep_echo_v6(PEER_V6, OUT_V6, OUT_MAC, 1, 1, b"x");
    f[6] |= 0x01;
    assert_eq!(
        h.handle_frame(PortRole::Outside, &f, now, &mut out),
        Handled::Ignored(IgnoreReason::BadSource)
    );
    // ARP request whose sender hardware address is broadcast (Ethernet source unicast).
    let req = ep_arp(
        ArpOperation::REQUEST,
        PEER_MAC,
        MacAddr::BROADCAST,
        MacAddr::BROADCAST,
        PEER_V4,
        MacAddr::ZERO,
        OUT_V4,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &req, now, &mut out),
        Handled::Ignored(IgnoreReason::BadSource)
    );
    assert!(out.frames.is_empty());
    assert!(h.neighbors(PortRole::Outside).is_empty());
}
