//! ICMP echo (RFC 792) and ICMPv6 echo (RFC 4443 §4) through `HostStack`, and the path-MTU
//! error builders (RFC 1191, RFC 4443 §3.2), all checked with etherparse and an independent
//! checksum.

mod common;

use common::*;
use espada_hostpath::icmp::{self, ErrorRefused};
use espada_hostpath::{Handled, HostOutput, IgnoreReason, MacAddr, PortRole};
use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{
    IcmpEchoHeader, Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

fn echo(h: &mut espada_hostpath::HostStack, frame: &[u8]) -> (Handled, HostOutput) {
    let mut out = HostOutput::default();
    let r = h.handle_frame(PortRole::Outside, frame, Instant::now(), &mut out);
    (r, out)
}

#[test]
fn icmpv4_echo_reply_fields_and_checksums() {
    let mut h = host();
    let data: Vec<u8> = (0..=200u8).collect();
    let req = ep_echo_v4(PEER_V4, OUT_V4, OUT_MAC, 0x1234, 0x0007, &data);
    let (r, out) = echo(&mut h, &req);
    assert_eq!(r, Handled::Replied);
    let f = &out.frames[0].frame;
    let sp = SlicedPacket::from_ethernet(f).unwrap();
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &sp.link else {
        panic!("no ethernet")
    };
    assert_eq!((eth.destination(), eth.source()), (PEER_MAC.0, OUT_MAC.0));
    let Some(NetSlice::Ipv4(ip)) = &sp.net else {
        panic!("not IPv4")
    };
    let ih = ip.header();
    assert_eq!(ih.source_addr(), OUT_V4);
    assert_eq!(ih.destination_addr(), PEER_V4);
    assert_eq!(ih.ttl(), 64);
    assert_eq!(ih.header_checksum(), ih.to_header().calc_header_checksum());
    assert_eq!(
        ind_checksum(&[ih.slice()]),
        0,
        "independent IPv4 header checksum"
    );
    let Some(TransportSlice::Icmpv4(icmp)) = &sp.transport else {
        panic!("not ICMP")
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::EchoReply(IcmpEchoHeader { id: 0x1234, seq: 7 })
    );
    assert_eq!(icmp.payload(), &data[..]);
    assert_eq!(
        icmp.checksum(),
        icmp.icmp_type().calc_checksum(icmp.payload())
    );
    assert_eq!(
        ind_checksum(&[icmp.slice()]),
        0,
        "independent ICMP checksum"
    );
    assert_eq!(h.counters().icmp_echo_replied, 1);
}

#[test]
fn icmpv4_short_echo_padded_and_valid() {
    let mut h = host();
    let req = ep_echo_v4(PEER_V4, OUT_V4, OUT_MAC, 1, 1, &[]);
    let (r, out) = echo(&mut h, &req);
    assert_eq!(r, Handled::Replied);
    let f = &out.frames[0].frame;
    assert_eq!(f.len(), 60, "padded to the Ethernet minimum");
    // IPv4 total length still 28: padding is outside the datagram.
    assert_eq!(u16::from_be_bytes([f[16], f[17]]), 28);
    assert_eq!(ind_checksum(&[&f[34..42]]), 0);
}

#[test]
fn icmpv6_echo_reply_fields_and_checksums() {
    let mut h = host();
    let data = b"espada ping payload".to_vec();
    let req = ep_echo_v6(PEER_V6, OUT_V6, OUT_MAC, 0xbeef, 42, &data);
    let (r, out) = echo(&mut h, &req);
    assert_eq!(r, Handled::Replied);
    let sp = SlicedPacket::from_ethernet(&out.frames[0].frame).unwrap();
    let Some(NetSlice::Ipv6(ip)) = &sp.net else {
        panic!("not IPv6")
    };
    let ih = ip.header();
    assert_eq!((ih.source_addr(), ih.destination_addr()), (OUT_V6, PEER_V6));
    assert_eq!(ih.hop_limit(), 64);
    let Some(TransportSlice::Icmpv6(icmp)) = &sp.transport else {
        panic!("not ICMPv6")
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv6Type::EchoReply(IcmpEchoHeader {
            id: 0xbeef,
            seq: 42
        })
    );
    assert_eq!(icmp.payload(), &data[..]);
    assert!(icmp.is_checksum_valid(OUT_V6.octets(), PEER_V6.octets()));
    assert!(ind_icmpv6_ok(OUT_V6, PEER_V6, icmp.slice()));
    assert_eq!(h.counters().icmpv6_echo_replied, 1);
}

fn fix_ipv4_header_checksum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let c = ind_checksum(&[&f[14..34]]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn echo_ignore_reasons() {
    let mut h = host();
    // Bad ICMP checksum.
    let mut bad = ep_echo_v4(PEER_V4, OUT_V4, OUT_MAC, 1, 1, b"x");
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(
        echo(&mut h, &bad).0,
        Handled::Ignored(IgnoreReason::IcmpMalformed)
    );
    // Bad IP header checksum.
    let mut bad = ep_echo_v4(PEER_V4, OUT_V4, OUT_MAC, 1, 1, b"x");
    bad[24] ^= 1;
    assert_eq!(
        echo(&mut h, &bad).0,
        Handled::Ignored(IgnoreReason::Ipv4Malformed)
    );
    // Not our address / directed broadcast.
    for dst in [Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 255)] {
        let f = ep_echo_v4(PEER_V4, dst, OUT_MAC, 1, 1, b"x");
        assert_eq!(
            echo(&mut h, &f).0,
            Handled::Ignored(IgnoreReason::Ipv4NotForUs)
        );
    }
    // Our address but another port's.
    let f = ep_echo_v4(PEER_V4, IN_V4, OUT_MAC, 1, 1, b"x");
    assert_eq!(
        echo(&mut h, &f).0,
        Handled::Ignored(IgnoreReason::Ipv4NotForUs)
    );
    // Unicast to another MAC.
    let f = ep_echo_v4(PEER_V4, OUT_V4, MacAddr([2, 0, 0, 0, 0, 0x55]), 1, 1, b"x");
    assert_eq!(
        echo(&mut h, &f).0,
        Handled::Ignored(IgnoreReason::NotOurMac)
    );
    // Fragment (MF set).
    let mut frag = ep_echo_v4(PEER_V4, OUT_V4, OUT_MAC, 1, 1, b"x");
    frag[20] |= 0x20;
    fix_ipv4_header_checksum(&mut frag);
    assert_eq!(
        echo(&mut h, &frag).0,
        Handled::Ignored(IgnoreReason::Ipv4Fragment)
    );
    // Broadcast source is never answered.
    let f = ep_echo_v4(Ipv4Addr::BROADCAST, OUT_V4, OUT_MAC, 1, 1, b"x");
    assert_eq!(
        echo(&mut h, &f).0,
        Handled::Ignored(IgnoreReason::BadSource)
    );
    // Echo reply and UDP to us are not ours to handle.
    let mut v = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC.0, OUT_MAC.0)
        .ipv4(PEER_V4.octets(), OUT_V4.octets(), 64)
        .icmpv4_echo_reply(1, 1)
        .write(&mut v, b"x")
        .unwrap();
    assert_eq!(
        echo(&mut h, &v).0,
        Handled::Ignored(IgnoreReason::IcmpUnsupportedType)
    );
    let mut v = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC.0, OUT_MAC.0)
        .ipv4(PEER_V4.octets(), OUT_V4.octets(), 64)
        .udp(500, 500)
        .write(&mut v, b"ike")
        .unwrap();
    assert_eq!(
        echo(&mut h, &v).0,
        Handled::Ignored(IgnoreReason::Ipv4UnsupportedProtocol)
    );
    // ICMPv6 echo to all-nodes is not answered; bad checksum is dropped.
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    let f = ep_echo_v6(
        PEER_V6,
        all_nodes,
        MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        1,
        1,
        b"x",
    );
    assert_eq!(
        echo(&mut h, &f).0,
        Handled::Ignored(IgnoreReason::Ipv6NotForUs)
    );
    let mut bad = ep_echo_v6(PEER_V6, OUT_V6, OUT_MAC, 1, 1, b"x");
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(
        echo(&mut h, &bad).0,
        Handled::Ignored(IgnoreReason::IcmpMalformed)
    );
    assert_eq!(
        h.counters().icmp_echo_replied + h.counters().icmpv6_echo_replied,
        0
    );
    assert_eq!(h.counters().ignored_total(), 12);
}

/// A UDP-over-IPv4 datagram of `total` bytes with DF set, from the inside host.
fn big_v4(total: usize) -> Vec<u8> {
    let mut v = Vec::new();
    let mut hdr = etherparse::Ipv4Header::new(
        0,
        64,
        etherparse::IpNumber::UDP,
        [10, 0, 0, 9],
        [198, 51, 100, 7],
    )
    .unwrap();
    hdr.dont_fragment = true;
    PacketBuilder::ip(etherparse::IpHeaders::Ipv4(hdr, Default::default()))
        .udp(1234, 4321)
        .write(&mut v, &vec![0xab; total - 28])
        .unwrap();
    v
}

#[test]
fn frag_needed_quotes_up_to_576() {
    let offending = big_v4(1500);
    let mut out = Vec::new();
    icmp::frag_needed_v4(IN_V4, &offending, 1400, &mut out).unwrap();
    assert_eq!(out.len(), 576);
    let sp = SlicedPacket::from_ip(&out).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &sp.net else {
        panic!("not IPv4")
    };
    assert_eq!(ip.header().source_addr(), IN_V4);
    assert_eq!(ip.header().destination_addr(), Ipv4Addr::new(10, 0, 0, 9));
    assert_eq!(ind_checksum(&[ip.header().slice()]), 0);
    let Some(TransportSlice::Icmpv4(icmp)) = &sp.transport else {
        panic!("not ICMP")
    };
    assert_eq!(
        icmp.icmp_type(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1400
        })
    );
    assert_eq!(icmp.payload(), &offending[..548]);
    assert_eq!(ind_checksum(&[icmp.slice()]), 0);

    // A small offending datagram is quoted whole.
    let small = big_v4(100);
    let mut out = Vec::new();
    icmp::frag_needed_v4(IN_V4, &small, 68, &mut out).unwrap();
    assert_eq!(out.len(), 20 + 8 + 100);
    assert_eq!(&out[28..], &small[..]);
}

#[test]
fn frag_needed_refusals() {
    let mut out = Vec::new();
    // About an ICMP error.
    let mut err = Vec::new();
    icmp::frag_needed_v4(IN_V4, &big_v4(600), 576, &mut err).unwrap();
    assert_eq!(
        icmp::frag_needed_v4(IN_V4, &err, 576, &mut out),
        Err(ErrorRefused::AboutIcmpError)
    );
    // Non-first fragment.
    let mut frag = big_v4(600);
    frag[6] |= 0x01; // offset 256 * 8
    frag[10] = 0;
    frag[11] = 0;
    let c = ind_checksum(&[&frag[..20]]);
    frag[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        icmp::frag_needed_v4(IN_V4, &frag, 576, &mut out),
        Err(ErrorRefused::NonFirstFragment)
    );
    // Garbage and silly MTU.
    assert_eq!(
        icmp::frag_needed_v4(IN_V4, &[0x45, 0, 0], 576, &mut out),
        Err(ErrorRefused::Malformed)
    );
    assert_eq!(
        icmp::frag_needed_v4(IN_V4, &big_v4(600), 20, &mut out),
        Err(ErrorRefused::MtuTooSmall)
    );
    assert!(out.is_empty(), "refusals append nothing");
}

fn big_v6(total: usize, dst: Ipv6Addr) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6(IN_V6.octets(), dst.octets(), 64)
        .udp(1234, 4321)
        .write(&mut v, &vec![0xcd; total - 48])
        .unwrap();
    v
}

#[test]
fn packet_too_big_quotes_up_to_1280() {
    let remote: Ipv6Addr = "2001:db8:ffff::7".parse().unwrap();
    let offending = big_v6(1500, remote);
    let mut out = Vec::new();
    icmp::packet_too_big_v6(OUT_V6, &offending, 1400, &mut out).unwrap();
    assert_eq!(out.len(), 1280);
    let sp = SlicedPacket::from_ip(&out).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = &sp.transport else {
        panic!("not ICMPv6")
    };
    assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1400 });
    assert!(icmp.is_checksum_valid(OUT_V6.octets(), IN_V6.octets()));
    assert!(ind_icmpv6_ok(OUT_V6, IN_V6, icmp.slice()));
    assert_eq!(icmp.payload(), &offending[..1232]);

    // Allowed for a multicast destination (RFC 4443 §2.4 (e.3)).
    let mc = big_v6(1400, "ff0e::1".parse().unwrap());
    let mut out = Vec::new();
    assert!(icmp::packet_too_big_v6(OUT_V6, &mc, 1280, &mut out).is_ok());

    // Never about an ICMPv6 error, but fine about an echo request.
    let mut pkt = Vec::new();
    icmp::packet_too_big_v6(OUT_V6, &offending, 1400, &mut pkt).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        icmp::packet_too_big_v6(OUT_V6, &pkt, 1280, &mut out),
        Err(ErrorRefused::AboutIcmpError)
    );
    assert_eq!(
        icmp::packet_too_big_v6(OUT_V6, &offending, 1000, &mut out),
        Err(ErrorRefused::MtuTooSmall)
    );
    assert!(out.is_empty());
    let req = ep_echo_v6(IN_V6, remote, OUT_MAC, 1, 1, &[0; 1400]);
    assert!(icmp::packet_too_big_v6(OUT_V6, &req[14..], 1280, &mut out).is_ok());
}
