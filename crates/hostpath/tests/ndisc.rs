//! IPv6 Neighbor Discovery (RFC 4861) through `HostStack`: NS→NA with checksums verified by
//! etherparse and by an independent computation, §7.1 validation, learning and resolution.

mod common;

use common::*;
use espada_hostpath::{Handled, HostEvent, HostOutput, IgnoreReason, MacAddr, PortRole, ndisc};
use etherparse::{Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};
use std::net::Ipv6Addr;
use std::time::Instant;

/// Facts about an NS/NA frame, all read by etherparse.
#[derive(Debug)]
struct Nd {
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    icmp_type: Icmpv6Type,
    target: Ipv6Addr,
    option: Vec<u8>,
    checksum_ok: bool,
    independent_ok: bool,
}

fn read_nd(frame: &[u8]) -> Nd {
    let sp = SlicedPacket::from_ethernet(frame).expect("etherparse parses it");
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = sp.link else {
        panic!("no ethernet");
    };
    let Some(NetSlice::Ipv6(ip)) = sp.net else {
        panic!("not IPv6");
    };
    let Some(TransportSlice::Icmpv6(icmp)) = sp.transport else {
        panic!("not ICMPv6");
    };
    let h = ip.header();
    let (src, dst) = (h.source_addr(), h.destination_addr());
    let body = icmp.payload();
    Nd {
        eth_dst: eth.destination(),
        eth_src: eth.source(),
        src,
        dst,
        hop_limit: h.hop_limit(),
        icmp_type: icmp.icmp_type(),
        target: Ipv6Addr::from(<[u8; 16]>::try_from(&body[..16]).unwrap()),
        option: body[16..].to_vec(),
        checksum_ok: icmp.is_checksum_valid(src.octets(), dst.octets()),
        independent_ok: ind_icmpv6_ok(src, dst, icmp.slice()),
    }
}

fn na_header(t: &Icmpv6Type) -> etherparse::icmpv6::NeighborAdvertisementHeader {
    match t {
        Icmpv6Type::NeighborAdvertisement(h) => *h,
        other => panic!("not an NA: {other:?}"),
    }
}

#[test]
fn ns_for_our_address_gets_na() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    let ns = ep_peer_ns(OUT_V6);
    assert_eq!(
        h.handle_frame(PortRole::Outside, &ns, now, &mut out),
        Handled::Replied
    );
    assert_eq!(out.frames.len(), 1);
    let nd = read_nd(&out.frames[0].frame);
    assert_eq!(nd.eth_dst, PEER_MAC.0);
    assert_eq!(nd.eth_src, OUT_MAC.0);
    assert_eq!((nd.src, nd.dst), (OUT_V6, PEER_V6));
    assert_eq!(nd.hop_limit, 255);
    let flags = na_header(&nd.icmp_type);
    assert!(flags.solicited && flags.r#override && flags.router);
    assert_eq!(nd.target, OUT_V6);
    // Target link-layer address option: type 2, length 1, our MAC.
    assert_eq!(nd.option, [&[2u8, 1][..], &OUT_MAC.0[..]].concat());
    assert!(nd.checksum_ok, "etherparse verifies the ICMPv6 checksum");
    assert!(nd.independent_ok, "independent checksum verifies");
    // The solicitor was learned from its SLLAO (addressed to us).
    assert_eq!(
        out.events,
        vec![HostEvent::NeighborLearned {
            port: PortRole::Outside,
            ip: PEER_V6.into(),
            mac: PEER_MAC
        }]
    );
    assert_eq!(h.counters().nd_replied, 1);
}

#[test]
fn invalid_ns_is_ignored() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    let group = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1);
    let mcast = MacAddr([0x33, 0x33, 0xff, 0, 0, 1]);
    // Hop limit 64: may come from off-link (RFC 4861 §7.1.1).
    let off_link = ep_ns(PEER_MAC, mcast, PEER_V6, group, OUT_V6, Some(PEER_MAC), 64);
    assert_eq!(
        h.handle_frame(PortRole::Outside, &off_link, now, &mut out),
        Handled::Ignored(IgnoreReason::NdInvalid)
    );
    // Corrupted checksum.
    let mut bad = ep_peer_ns(OUT_V6);
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    assert_eq!(
        h.handle_frame(PortRole::Outside, &bad, now, &mut out),
        Handled::Ignored(IgnoreReason::NdInvalid)
    );
    // DAD NS (unspecified source) carrying an SLLAO is invalid.
    let dad_sllao = ep_ns(
        PEER_MAC,
        mcast,
        Ipv6Addr::UNSPECIFIED,
        group,
        OUT_V6,
        Some(PEER_MAC),
        255,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &dad_sllao, now, &mut out),
        Handled::Ignored(IgnoreReason::NdInvalid)
    );
    // Valid NS for another target sent to our group address (low 24 bits collide).
    let other = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0x1234, 1);
    let ns_other = ep_ns(PEER_MAC, mcast, PEER_V6, group, other, Some(PEER_MAC), 255);
    assert_eq!(
        h.handle_frame(PortRole::Outside, &ns_other, now, &mut out),
        Handled::Ignored(IgnoreReason::NdNotForUs)
    );
    // An NS to some other group is not for us at all.
    let ns_elsewhere = ep_peer_ns(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x42));
    assert_eq!(
        h.handle_frame(PortRole::Outside, &ns_elsewhere, now, &mut out),
        Handled::Ignored(IgnoreReason::Ipv6NotForUs)
    );
    assert!(out.frames.is_empty() && out.events.is_empty());
    assert!(h.neighbors(PortRole::Outside).is_empty());
}

#[test]
fn dad_ns_is_answered_to_all_nodes() {
    let mut h = host();
    let mut out = HostOutput::default();
    let group = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1);
    let dad = ep_ns(
        PEER_MAC,
        MacAddr([0x33, 0x33, 0xff, 0, 0, 1]),
        Ipv6Addr::UNSPECIFIED,
        group,
        OUT_V6,
        None,
        255,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &dad, Instant::now(), &mut out),
        Handled::Replied
    );
    let nd = read_nd(&out.frames[0].frame);
    assert_eq!(nd.eth_dst, [0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(nd.dst, "ff02::1".parse::<Ipv6Addr>().unwrap());
    let flags = na_header(&nd.icmp_type);
    assert!(!flags.solicited && flags.r#override);
    assert!(nd.checksum_ok && nd.independent_ok);
    assert!(
        out.events.is_empty(),
        "nothing learned from the unspecified address"
    );
}

#[test]
fn unicast_ns_without_sllao_answered_to_frame_source() {
    let mut h = host();
    let mut out = HostOutput::default();
    let ns = ep_ns(PEER_MAC, OUT_MAC, PEER_V6, OUT_V6, OUT_V6, None, 255);
    assert_eq!(
        h.handle_frame(PortRole::Outside, &ns, Instant::now(), &mut out),
        Handled::Replied
    );
    let nd = read_nd(&out.frames[0].frame);
    assert_eq!(nd.eth_dst, PEER_MAC.0);
    assert_eq!(nd.dst, PEER_V6);
    assert!(nd.checksum_ok);
}

#[test]
fn resolve_sends_ns_and_na_completes_it() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    assert_eq!(
        h.resolve(PortRole::Outside, PEER_V6.into(), now, &mut out),
        None
    );
    assert_eq!(out.frames.len(), 1);
    let nd = read_nd(&out.frames[0].frame);
    assert_eq!(nd.eth_dst, [0x33, 0x33, 0xff, 0, 0, 0x99]);
    assert_eq!(nd.dst, "ff02::1:ff00:99".parse::<Ipv6Addr>().unwrap());
    assert_eq!(nd.src, OUT_V6);
    assert_eq!(nd.hop_limit, 255);
    assert_eq!(nd.icmp_type, Icmpv6Type::NeighborSolicitation);
    assert_eq!(nd.target, PEER_V6);
    assert_eq!(nd.option, [&[1u8, 1][..], &OUT_MAC.0[..]].concat());
    assert!(nd.checksum_ok && nd.independent_ok);
    out.clear();

    let na = ep_na(
        PEER_MAC,
        OUT_MAC,
        PEER_V6,
        OUT_V6,
        PEER_V6,
        Some(PEER_MAC),
        true,
        true,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &na, now, &mut out),
        Handled::Learned
    );
    assert_eq!(
        out.events,
        vec![HostEvent::NeighborLearned {
            port: PortRole::Outside,
            ip: PEER_V6.into(),
            mac: PEER_MAC
        }]
    );
    out.clear();
    assert_eq!(
        h.resolve(PortRole::Outside, PEER_V6.into(), now, &mut out),
        Some(PEER_MAC)
    );
    assert!(out.frames.is_empty());
}

#[test]
fn unsolicited_and_non_override_na_rules() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    let mc = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
    // NA for a neighbour we never asked about: no entry is created (RFC 4861 §7.2.5).
    let na = ep_na(
        PEER_MAC,
        mc,
        PEER_V6,
        all_nodes,
        PEER_V6,
        Some(PEER_MAC),
        false,
        true,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &na, now, &mut out),
        Handled::Ignored(IgnoreReason::NdUnsolicited)
    );
    assert!(h.neighbors(PortRole::Outside).is_empty());

    // Known neighbour; an NA without Override and with a different MAC does not replace it.
    h.handle_frame(PortRole::Outside, &ep_peer_ns(OUT_V6), now, &mut out);
    let other = MacAddr([0x02, 0, 0, 0, 0, 0x44]);
    let na = ep_na(
        other,
        OUT_MAC,
        PEER_V6,
        OUT_V6,
        PEER_V6,
        Some(other),
        true,
        false,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &na, now, &mut out),
        Handled::Ignored(IgnoreReason::NdUnsolicited)
    );
    assert_eq!(
        h.resolve(PortRole::Outside, PEER_V6.into(), now, &mut out),
        Some(PEER_MAC)
    );
    // With Override it does.
    let na = ep_na(
        other,
        OUT_MAC,
        PEER_V6,
        OUT_V6,
        PEER_V6,
        Some(other),
        true,
        true,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &na, now, &mut out),
        Handled::Learned
    );
    assert_eq!(
        h.resolve(PortRole::Outside, PEER_V6.into(), now, &mut out),
        Some(other)
    );

    // An NA to multicast with the Solicited flag is invalid (§7.1.2).
    let bad = ep_na(
        PEER_MAC,
        mc,
        PEER_V6,
        all_nodes,
        PEER_V6,
        Some(PEER_MAC),
        true,
        true,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &bad, now, &mut out),
        Handled::Ignored(IgnoreReason::NdInvalid)
    );
    // Someone advertising our own address: conflict.
    let na = ep_na(
        other,
        mc,
        PEER_V6,
        all_nodes,
        OUT_V6,
        Some(other),
        false,
        true,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &na, now, &mut out),
        Handled::Ignored(IgnoreReason::AddressConflict)
    );
    assert!(out.events.contains(&HostEvent::AddressConflict {
        port: PortRole::Outside,
        ip: OUT_V6.into(),
        mac: other
    }));
}

#[test]
fn builders_round_trip_through_our_parser() {
    let f = ndisc::build_solicit(OUT_MAC, OUT_V6, PEER_V6, Some(PEER_MAC));
    let nd = read_nd(&f);
    assert_eq!(nd.dst, PEER_V6, "unicast NS goes to the target itself");
    assert_eq!(nd.eth_dst, PEER_MAC.0);
    assert!(nd.checksum_ok);
    let ip = espada_wire::ipv6::Ipv6Packet::parse(&f[14..]).unwrap();
    let ndisc::NdiscMessage::Solicit(ns) = ndisc::parse(&ip).unwrap() else {
        panic!("not NS");
    };
    assert_eq!((ns.target, ns.source_ll), (PEER_V6, Some(OUT_MAC)));
}
