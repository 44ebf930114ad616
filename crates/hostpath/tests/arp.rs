//! ARP (RFC 826) through `HostStack`: exact reply bytes, learning rules, and ignore reasons.
//! Frames are built and parsed with etherparse, an independent implementation.

mod common;

use common::*;
use espada_hostpath::{Handled, HostEvent, HostOutput, IgnoreReason, MacAddr, PortRole, arp};
use etherparse::{ArpOperation, NetSlice, PacketBuilder, SlicedPacket};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

#[test]
fn request_for_our_address_gets_exact_reply() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    let req = ep_arp_request(OUT_V4);
    assert_eq!(
        h.handle_frame(PortRole::Outside, &req, now, &mut out),
        Handled::Replied
    );
    assert_eq!(out.frames.len(), 1);
    assert_eq!(out.frames[0].port, PortRole::Outside);
    #[rustfmt::skip]
    let mut expected = vec![
        0x02, 0, 0, 0, 0, 0x99,   0x02, 0, 0, 0, 0, 0x01,   0x08, 0x06, // Ethernet
        0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02,                       // Ethernet/IPv4, reply
        0x02, 0, 0, 0, 0, 0x01,   192, 0, 2, 1,                         // sender: us
        0x02, 0, 0, 0, 0, 0x99,   192, 0, 2, 99,                        // target: requester
    ];
    expected.resize(60, 0); // padded to the Ethernet minimum
    assert_eq!(out.frames[0].frame, expected);

    // etherparse agrees on every field.
    let sp = SlicedPacket::from_ethernet(&out.frames[0].frame).unwrap();
    let Some(NetSlice::Arp(a)) = sp.net else {
        panic!("etherparse did not see ARP: {sp:?}");
    };
    let a = a.to_packet().try_eth_ipv4().unwrap();
    assert_eq!(a.operation, ArpOperation::REPLY);
    assert_eq!(a.sender_mac, OUT_MAC.0);
    assert_eq!(a.sender_ipv4, OUT_V4.octets());
    assert_eq!(a.target_mac, PEER_MAC.0);
    assert_eq!(a.target_ipv4, PEER_V4.octets());

    // The requester was learned (request addressed to us, RFC 826).
    assert_eq!(
        out.events,
        vec![HostEvent::NeighborLearned {
            port: PortRole::Outside,
            ip: IpAddr::V4(PEER_V4),
            mac: PEER_MAC
        }]
    );
    let mut out2 = HostOutput::default();
    assert_eq!(
        h.resolve(PortRole::Outside, PEER_V4.into(), now, &mut out2),
        Some(PEER_MAC)
    );
    assert!(
        out2.frames.is_empty(),
        "no request for a reachable neighbour"
    );
    assert_eq!(h.counters().arp_replied, 1);
}

#[test]
fn request_for_other_address_is_ignored_and_not_learned() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    let req = ep_arp_request(Ipv4Addr::new(192, 0, 2, 50));
    assert_eq!(
        h.handle_frame(PortRole::Outside, &req, now, &mut out),
        Handled::Ignored(IgnoreReason::ArpNotForUs)
    );
    assert!(out.frames.is_empty() && out.events.is_empty());
    assert!(h.neighbors(PortRole::Outside).is_empty());
    assert_eq!(h.counters().ignored(IgnoreReason::ArpNotForUs), 1);
}

#[test]
fn request_for_other_address_updates_existing_entry() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    // Learn the peer first through a request addressed to us.
    h.handle_frame(PortRole::Outside, &ep_arp_request(OUT_V4), now, &mut out);
    out.clear();
    // Now the peer moved to a new MAC and asks for someone else: merge updates the entry.
    let new_mac = MacAddr([0x02, 0, 0, 0, 0, 0xaa]);
    let req = ep_arp(
        ArpOperation::REQUEST,
        new_mac,
        MacAddr::BROADCAST,
        new_mac,
        PEER_V4,
        MacAddr::ZERO,
        Ipv4Addr::new(192, 0, 2, 50),
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &req, now, &mut out),
        Handled::Learned
    );
    assert!(out.frames.is_empty());
    assert_eq!(
        out.events,
        vec![HostEvent::NeighborLearned {
            port: PortRole::Outside,
            ip: PEER_V4.into(),
            mac: new_mac
        }]
    );
    assert_eq!(
        h.resolve(PortRole::Outside, PEER_V4.into(), now, &mut out),
        Some(new_mac)
    );
}

#[test]
fn reply_to_our_request_resolves_and_gratuitous_only_merges() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    assert_eq!(
        h.resolve(PortRole::Outside, PEER_V4.into(), now, &mut out),
        None
    );
    assert_eq!(out.frames.len(), 1, "an ARP request is sent");
    out.clear();
    let reply = ep_arp(
        ArpOperation::REPLY,
        PEER_MAC,
        OUT_MAC,
        PEER_MAC,
        PEER_V4,
        OUT_MAC,
        OUT_V4,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &reply, now, &mut out),
        Handled::Learned
    );
    assert_eq!(
        h.resolve(PortRole::Outside, PEER_V4.into(), now, &mut out),
        Some(PEER_MAC)
    );

    // A gratuitous ARP from an unknown station creates nothing.
    let other = Ipv4Addr::new(192, 0, 2, 77);
    let other_mac = MacAddr([0x02, 0, 0, 0, 0, 0x77]);
    let garp = ep_arp(
        ArpOperation::REQUEST,
        other_mac,
        MacAddr::BROADCAST,
        other_mac,
        other,
        MacAddr::ZERO,
        other,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &garp, now, &mut out),
        Handled::Ignored(IgnoreReason::ArpNotForUs)
    );
    assert!(h.neighbors(PortRole::Outside).get(other.into()).is_none());
}

#[test]
fn address_conflict_is_reported_not_learned() {
    let mut h = host();
    let mut out = HostOutput::default();
    let intruder = MacAddr([0x02, 0, 0, 0, 0, 0x66]);
    let garp = ep_arp(
        ArpOperation::REQUEST,
        intruder,
        MacAddr::BROADCAST,
        intruder,
        OUT_V4,
        MacAddr::ZERO,
        OUT_V4,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &garp, Instant::now(), &mut out),
        Handled::Ignored(IgnoreReason::AddressConflict)
    );
    assert_eq!(
        out.events,
        vec![HostEvent::AddressConflict {
            port: PortRole::Outside,
            ip: OUT_V4.into(),
            mac: intruder
        }]
    );
    assert!(out.frames.is_empty());
}

#[test]
fn wrong_port_mac_and_vlan_are_ignored() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    // Our outside address asked on the inside port: not ours there.
    assert_eq!(
        h.handle_frame(PortRole::Inside, &ep_arp_request(OUT_V4), now, &mut out),
        Handled::Ignored(IgnoreReason::ArpNotForUs)
    );
    // Unicast to another MAC.
    let req = ep_arp(
        ArpOperation::REQUEST,
        PEER_MAC,
        MacAddr([0x02, 0, 0, 0, 0, 0x55]),
        PEER_MAC,
        PEER_V4,
        MacAddr::ZERO,
        OUT_V4,
    );
    assert_eq!(
        h.handle_frame(PortRole::Outside, &req, now, &mut out),
        Handled::Ignored(IgnoreReason::NotOurMac)
    );
    // 802.1Q-tagged ARP is recognised as VLAN, not misparsed.
    let mut tagged = Vec::new();
    let arp = etherparse::ArpPacket::new(
        etherparse::ArpHardwareId::ETHERNET,
        etherparse::EtherType::IPV4,
        ArpOperation::REQUEST,
        &PEER_MAC.0,
        &PEER_V4.octets(),
        &[0; 6],
        &OUT_V4.octets(),
    )
    .unwrap();
    PacketBuilder::ethernet2(PEER_MAC.0, [0xff; 6])
        .single_vlan(etherparse::VlanId::try_new(10).unwrap())
        .arp(arp)
        .write(&mut tagged)
        .unwrap();
    assert_eq!(
        h.handle_frame(PortRole::Outside, &tagged, now, &mut out),
        Handled::Ignored(IgnoreReason::VlanTagged)
    );
    // Our own frame looped back.
    let looped = arp::build_request(OUT_MAC, OUT_V4, PEER_V4);
    assert_eq!(
        h.handle_frame(PortRole::Outside, &looped, now, &mut out),
        Handled::Ignored(IgnoreReason::FromSelf)
    );
    // Truncated ARP.
    let short = &ep_arp_request(OUT_V4)[..14 + 20];
    assert_eq!(
        h.handle_frame(PortRole::Outside, short, now, &mut out),
        Handled::Ignored(IgnoreReason::ArpMalformed)
    );
    assert!(out.frames.is_empty());
    assert_eq!(h.counters().ignored_total(), 5);
}

#[test]
fn builders_parse_with_etherparse() {
    for (frame, op, tpa) in [
        (
            arp::build_request(OUT_MAC, OUT_V4, PEER_V4),
            ArpOperation::REQUEST,
            PEER_V4,
        ),
        (
            arp::build_gratuitous(OUT_MAC, OUT_V4),
            ArpOperation::REQUEST,
            OUT_V4,
        ),
    ] {
        assert_eq!(&frame[0..6], &[0xff; 6]);
        let sp = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(NetSlice::Arp(a)) = sp.net else {
            panic!("not ARP");
        };
        let a = a.to_packet().try_eth_ipv4().unwrap();
        assert_eq!(a.operation, op);
        assert_eq!(a.sender_mac, OUT_MAC.0);
        assert_eq!(a.sender_ipv4, OUT_V4.octets());
        assert_eq!(a.target_mac, [0; 6]);
        assert_eq!(a.target_ipv4, tpa.octets());
    }
}
