//! Property tests: no input panics (random bytes, truncations and bit flips of valid frames),
//! and everything we emit is well-formed (Ethernet source is the port's MAC, IPv4/ICMP/ICMPv6
//! checksums verify by an independent computation, error packets respect 576/1280).

mod common;

use common::*;
use espada_hostpath::{Handled, HostOutput, HostStack, PortRole, arp, icmp, ndisc};
use espada_wire::ether::EthernetHeader;
use espada_wire::ipv4::Ipv4Packet;
use espada_wire::ipv6::Ipv6Packet;
use etherparse::ArpOperation;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Valid frames with the length that matters (beyond it is only padding).
fn valid_frames() -> Vec<(Vec<u8>, usize)> {
    let mut v = vec![
        (ep_arp_request(OUT_V4), 42),
        (
            ep_arp(
                ArpOperation::REPLY,
                PEER_MAC,
                OUT_MAC,
                PEER_MAC,
                PEER_V4,
                OUT_MAC,
                OUT_V4,
            ),
            42,
        ),
        (ep_peer_ns(OUT_V6), 0),
        (
            ep_na(
                PEER_MAC,
                OUT_MAC,
                PEER_V6,
                OUT_V6,
                PEER_V6,
                Some(PEER_MAC),
                true,
                true,
            ),
            0,
        ),
        (
            ep_echo_v4(PEER_V4, OUT_V4, OUT_MAC, 9, 9, b"hello world"),
            0,
        ),
        (
            ep_echo_v6(PEER_V6, OUT_V6, OUT_MAC, 9, 9, b"hello world"),
            0,
        ),
    ];
    for (f, len) in &mut v {
        if *len == 0 {
            *len = f.len();
        }
    }
    v
}

fn port(b: bool) -> PortRole {
    if b {
        PortRole::Outside
    } else {
        PortRole::Inside
    }
}

/// Checks every emitted frame; returns a description of the first problem.
fn check_output(h: &HostStack, out: &HostOutput) -> Result<(), String> {
    for o in &out.frames {
        let (eth, payload) =
            EthernetHeader::parse(&o.frame).map_err(|e| format!("unparsable output: {e}"))?;
        if eth.src != h.port(o.port).mac {
            return Err(format!("source {} is not the port MAC", eth.src));
        }
        if o.frame.len() < 60 {
            return Err("runt frame".into());
        }
        match eth.ethertype {
            0x0800 => {
                let ihl = usize::from(payload[0] & 0xf) * 4;
                let total = usize::from(u16::from_be_bytes([payload[2], payload[3]]));
                if ind_checksum(&[&payload[..ihl]]) != 0 {
                    return Err("bad IPv4 header checksum".into());
                }
                if ind_checksum(&[&payload[ihl..total]]) != 0 {
                    return Err("bad ICMP checksum".into());
                }
            }
            0x86dd => {
                let ip = Ipv6Packet::parse(payload).map_err(|e| format!("{e:?}"))?;
                if !ind_icmpv6_ok(ip.src(), ip.dst(), ip.payload()) {
                    return Err("bad ICMPv6 checksum".into());
                }
                if ip.dst().is_multicast() != eth.dst.is_multicast() {
                    return Err("multicast mismatch".into());
                }
            }
            0x0806 => {
                arp::ArpPacket::parse(payload).map_err(|e| format!("{e:?}"))?;
            }
            t => return Err(format!("unexpected ethertype {t:#x}")),
        }
    }
    Ok(())
}

fn run(h: &mut HostStack, p: PortRole, frame: &[u8], now: Instant) -> Result<Handled, String> {
    let mut out = HostOutput::default();
    let before = h.counters().ignored_total();
    let r = h.handle_frame(p, frame, now, &mut out);
    let after = h.counters().ignored_total();
    let ignored = matches!(r, Handled::Ignored(_));
    if after - before != u64::from(ignored) {
        return Err("ignored counter out of step".into());
    }
    if ignored && !out.frames.is_empty() {
        return Err("ignored but sent something".into());
    }
    if r == Handled::Replied && out.frames.is_empty() {
        return Err("replied without a frame".into());
    }
    check_output(h, &out)?;
    Ok(r)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), p: bool) {
        let mut h = host();
        let r = run(&mut h, port(p), &bytes, Instant::now());
        prop_assert!(r.is_ok(), "{:?}", r);
    }

    #[test]
    fn random_bytes_with_valid_ethernet_header(
        et in prop::sample::select(vec![0x0806u16, 0x0800, 0x86dd]),
        body in proptest::collection::vec(any::<u8>(), 0..120),
        p: bool,
    ) {
        let mut h = host();
        let mac = h.port(port(p)).mac;
        let f = [&mac.0[..], &PEER_MAC.0[..], &et.to_be_bytes()[..], &body[..]].concat();
        let r = run(&mut h, port(p), &f, Instant::now());
        prop_assert!(r.is_ok(), "{:?}", r);
    }

    #[test]
    fn truncations_never_panic_nor_answer(which in 0usize..6, cut in 0usize..200) {
        let frames = valid_frames();
        let (f, meaningful) = &frames[which];
        let cut = cut.min(f.len());
        let mut h = host();
        let r = run(&mut h, PortRole::Outside, &f[..cut], Instant::now());
        prop_assert!(r.is_ok(), "{:?}", r);
        if cut < *meaningful {
            prop_assert!(matches!(r, Ok(Handled::Ignored(_))), "cut {} answered: {:?}", cut, r);
        }
    }

    #[test]
    fn bit_flips_never_panic_and_output_stays_valid(
        which in 0usize..6,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        p: bool,
    ) {
        let frames = valid_frames();
        let mut f = frames[which].0.clone();
        for (i, x) in &flips {
            let i = i.index(f.len());
            f[i] ^= x;
        }
        let mut h = host();
        let t = Instant::now();
        let r = run(&mut h, port(p), &f, t);
        prop_assert!(r.is_ok(), "{:?}", r);
        // Timers and resolution after arbitrary input stay well-formed too.
        let mut out = HostOutput::default();
        h.resolve(port(p), PEER_V4.into(), t, &mut out);
        h.resolve(port(p), PEER_V6.into(), t, &mut out);
        h.poll(t + Duration::from_secs(5), &mut out);
        prop_assert!(check_output(&h, &out).is_ok());
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = arp::ArpPacket::parse(&bytes);
        let _ = EthernetHeader::parse(&bytes);
        if let Ok(p) = Ipv4Packet::parse(&bytes[..]) {
            prop_assert!(p.datagram().len() <= bytes.len());
            prop_assert_eq!(ind_checksum(&[p.header()]), 0);
        }
        if let Ok(ip) = Ipv6Packet::parse(&bytes[..])
            && let Ok(ndisc::NdiscMessage::Solicit(ns)) = ndisc::parse(&ip)
        {
            prop_assert!(!ns.target.is_multicast());
        }
    }

    #[test]
    fn error_builders_bounded(
        body in proptest::collection::vec(any::<u8>(), 0..1600),
        v6: bool,
        mtu in 0u32..70_000,
        hdr_ok: bool,
    ) {
        let mut out = Vec::new();
        let mut bytes = body.clone();
        if v6 {
            if hdr_ok && bytes.len() >= 40 {
                // Make the fixed header plausible so the quoting path is exercised.
                bytes[0] = 0x60;
                let plen = u16::try_from(bytes.len() - 40).unwrap_or(0);
                bytes[4..6].copy_from_slice(&plen.to_be_bytes());
                bytes[8] = 0x20; // 2001:… source
            }
            if icmp::packet_too_big_v6(OUT_V6, &bytes, mtu, &mut out).is_ok() {
                prop_assert!(out.len() <= 1280 && out.len() >= 48);
                let ip = Ipv6Packet::parse(&out).unwrap();
                prop_assert!(ind_icmpv6_ok(ip.src(), ip.dst(), ip.payload()));
            } else {
                prop_assert!(out.is_empty());
            }
        } else {
            if hdr_ok && bytes.len() >= 20 {
                bytes[0] = 0x45;
                let total = u16::try_from(bytes.len()).unwrap_or(0);
                bytes[2..4].copy_from_slice(&total.to_be_bytes());
                bytes[6] &= 0xe0; // offset zero
                bytes[7] = 0;
                bytes[12..16].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 9).octets());
                bytes[10] = 0;
                bytes[11] = 0;
                let c = ind_checksum(&[&bytes[..20]]);
                bytes[10..12].copy_from_slice(&c.to_be_bytes());
            }
            let mtu16 = u16::try_from(mtu).unwrap_or(u16::MAX);
            if icmp::frag_needed_v4(IN_V4, &bytes, mtu16, &mut out).is_ok() {
                prop_assert!(out.len() <= 576 && out.len() >= 48);
                prop_assert_eq!(ind_checksum(&[&out[..20]]), 0);
                prop_assert_eq!(ind_checksum(&[&out[20..]]), 0);
            } else {
                prop_assert!(out.is_empty());
            }
        }
    }
}

/// The property tests above are only meaningful if the valid frames really are answered.
#[test]
fn valid_frames_are_handled() {
    let mut h = host();
    for (f, _) in valid_frames() {
        let r = run(&mut h, PortRole::Outside, &f, Instant::now()).unwrap();
        assert!(!matches!(r, Handled::Ignored(_)), "{r:?}");
    }
}
