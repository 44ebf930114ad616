//! The worker stages on real ESP SAs, with `VecBuf` packets: every verdict the data plane can
//! reach, the bytes it produces, the counters and events it emits.

mod common;

use common::*;
use espada_buf::{PacketBuf, VecBuf};
use espada_dataplane::drops::{DpDrop, Why};
use espada_dataplane::events::{Event, NoticeKind, UnknownSpiClass};
use espada_dataplane::lifecycle::SaNotice;
use espada_dataplane::pipeline::{self, HandoffKind, Verdict};
use espada_dataplane::stats::Counter;
use espada_dataplane::tunnels::Fragmentation;
use espada_dataplane::{PortRole, owner_of_spi};
use espada_esp::DropReason;
use espada_esp::KeyCache;

fn lan_to_remote(payload: &[u8]) -> Vec<u8> {
    ipv4_udp([192, 0, 2, 10], [203, 0, 113, 5], 1000, 2000, payload)
}

fn remote_to_lan(payload: &[u8]) -> Vec<u8> {
    ipv4_udp([203, 0, 113, 5], [192, 0, 2, 10], 2000, 1000, payload)
}

fn with_ttl(mut p: Vec<u8>, ttl: u8) -> Vec<u8> {
    p[8] = ttl;
    fix_csum(&mut p);
    p
}

#[test]
fn cleartext_from_the_lan_leaves_as_esp_the_peer_can_open() {
    for udp in [false, true] {
        let mut s = site(1, udp);
        let inner = lan_to_remote(b"hello through the tunnel");
        let mut m = buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &inner));
        assert_eq!(
            pipeline::inside_frame(&mut m, &mut s.ctx(0)),
            Verdict::Tx(PortRole::Outside)
        );
        assert_eq!(&m.data()[..6], &PEER_MAC, "to the peer's MAC");
        assert_eq!(&m.data()[6..12], &BOX_OUT_MAC);
        assert_eq!(
            m.data()[14 + 9],
            if udp { 17 } else { 50 },
            "outer protocol"
        );
        let mut outer = VecBuf::new(0, &m.data()[14..], 0);
        s.peer_in
            .decap(&mut KeyCache::new(2), &mut outer)
            .expect("the peer opens it");
        assert_eq!(
            outer.data(),
            &forwarded(&inner)[..],
            "byte-exact inner packet, TTL decremented"
        );
        assert_eq!(s.stats.get(Counter::EspEncap), 1);
    }
}

#[test]
fn esp_from_the_peer_reaches_the_lan_byte_exact() {
    for udp in [false, true] {
        let mut s = site(1, udp);
        let inner = remote_to_lan(b"reply");
        let mut m = from_peer(&mut s, &inner);
        assert_eq!(
            pipeline::outside_frame(&mut m, &mut s.ctx(0)),
            Verdict::Tx(PortRole::Inside)
        );
        assert_eq!(&m.data()[..6], &LAN_MAC);
        assert_eq!(&m.data()[6..12], &BOX_IN_MAC);
        assert_eq!(&m.data()[14..], &forwarded(&inner)[..], "TTL decremented");
        assert_eq!(s.stats.get(Counter::EspDecap), 1);
    }
}

/// The outer IPv4 packet of Ethernet frame `frame` cut into fragments at payload offsets
/// `cuts` (multiples of 8), each an Ethernet frame again.
fn fragments(frame: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let (eth, ip) = frame.split_at(14);
    ipv4_fragments(ip, cuts)
        .into_iter()
        .map(|f| [eth, &f[..]].concat())
        .collect()
}

#[test]
fn fragmented_esp_from_the_peer_is_reassembled_and_decrypts_byte_exact() {
    for udp in [false, true] {
        for (cuts, order) in [
            (&[800][..], &[0usize, 1][..]),
            (&[800], &[1, 0]),
            (&[400, 800], &[2, 0, 1]),
        ] {
            let mut s = site(1, udp);
            let inner = remote_to_lan(&[0x77; 1200]);
            let whole = from_peer(&mut s, &inner);
            let frags = fragments(whole.data(), cuts);
            let (last, held) = order.split_last().unwrap();
            for &i in held {
                let mut m = buf(&frags[i]);
                assert_eq!(
                    pipeline::outside_frame(&mut m, &mut s.ctx(0)),
                    Verdict::Consumed,
                    "udp {udp} {cuts:?}: held"
                );
            }
            let mut m = buf(&frags[*last]);
            assert_eq!(
                pipeline::outside_frame(&mut m, &mut s.ctx(0)),
                Verdict::Tx(PortRole::Inside),
                "udp {udp} {cuts:?} {order:?}"
            );
            assert_eq!(&m.data()[14..], &forwarded(&inner)[..], "byte-exact");
            assert_eq!(s.stats.get(Counter::Reassembled), 1);
            assert_eq!(s.reasm[0].in_flight(), 0);
        }
    }
}

#[test]
fn fragments_arriving_on_different_workers_meet_on_one_and_the_datagram_reaches_its_sa_owner() {
    for udp in [false, true] {
        for ident in 0..16u16 {
            let mut s = site(2, udp);
            let inner = remote_to_lan(&[0x42; 1200]);
            let mut whole = from_peer(&mut s, &inner).data().to_vec();
            // A different identification each round: the reassembly worker varies with it.
            whole[14 + 4..14 + 6].copy_from_slice(&ident.to_be_bytes());
            fix_csum(&mut whole[14..]);
            let frags = fragments(&whole, &[400, 800]);
            let mut reassembled_on = None;
            let mut delivered = 0;
            // The RSS of a port hashing L4 ports: each fragment on another worker.
            for (i, f) in frags.iter().enumerate() {
                let rx = (i % 2) as u16;
                let mut m = buf(f);
                let mut v = pipeline::outside_frame(&mut m, &mut s.ctx(rx));
                let mut at = rx;
                let mut hops = 0;
                while let Verdict::Handoff { owner, kind } = v {
                    assert_eq!(kind, HandoffKind::Inbound);
                    assert_ne!(owner, at, "never handed to itself");
                    hops += 1;
                    assert!(hops <= 2, "fragment owner, then SA owner at most");
                    at = owner;
                    v = pipeline::esp_in(&mut m, &mut s.ctx(owner), true);
                }
                match v {
                    Verdict::Consumed => {
                        assert!(
                            reassembled_on.is_none_or(|w| w == at),
                            "one reassembly worker"
                        );
                        reassembled_on = Some(at);
                    }
                    Verdict::Tx(PortRole::Inside) => {
                        assert_eq!(at, owner_of_spi(SPI_IN, 2), "decrypted by the SA's owner");
                        assert_eq!(&m.data()[14..], &forwarded(&inner)[..], "byte-exact");
                        delivered += 1;
                    }
                    other => panic!("udp {udp} ident {ident} fragment {i}: {other:?}"),
                }
            }
            assert_eq!(delivered, 1, "udp {udp} ident {ident}");
            assert_eq!(s.stats.get(Counter::Reassembled), 1);
            assert_eq!(s.reasm[0].in_flight() + s.reasm[1].in_flight(), 0);
        }
    }
}

#[test]
fn an_incomplete_datagram_times_out_and_an_overlap_is_dropped_by_reason() {
    let mut s = site(1, false);
    let inner = remote_to_lan(&[0x11; 1200]);
    let whole = from_peer(&mut s, &inner);
    let frags = fragments(whole.data(), &[400, 800]);
    for i in [0, 1] {
        assert_eq!(
            pipeline::outside_frame(&mut buf(&frags[i]), &mut s.ctx(0)),
            Verdict::Consumed
        );
    }
    // The middle piece again (a duplicate is an overlap): the whole datagram goes.
    let mut bad = frags[1].clone();
    let ff = u16::from_be_bytes([bad[20], bad[21]]) & 0x4000 | 0x2000 | (400 / 8) as u16;
    bad[14 + 6..14 + 8].copy_from_slice(&ff.to_be_bytes());
    fix_csum(&mut bad[14..]);
    assert_eq!(
        pipeline::outside_frame(&mut buf(&bad), &mut s.ctx(0)),
        Verdict::Drop(Why::Dp(DpDrop::ReassemblyOverlap))
    );
    assert_eq!(s.reasm[0].in_flight(), 0);
    // Two pieces, then the clock moves past the timeout: the third starts afresh.
    for i in [0, 1] {
        pipeline::outside_frame(&mut buf(&frags[i]), &mut s.ctx(0));
    }
    s.now += 5000;
    assert_eq!(
        pipeline::outside_frame(&mut buf(&frags[2]), &mut s.ctx(0)),
        Verdict::Consumed
    );
    assert_eq!(s.reasm[0].timed_out(), 1);
    assert_eq!(s.stats.get(Counter::Reassembled), 0);
}

/// A TCP SYN (`flags` 0x02) or SYN-ACK (0x12) with MSS 1460, TCP checksum valid.
fn tcp_syn(src: [u8; 4], dst: [u8; 4], flags: u8) -> Vec<u8> {
    let mut p = ipv4_udp(src, dst, 0, 0, &[0; 16]);
    p[9] = 6;
    let tcp = [
        0x30, 0x39, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, flags, 0xff, 0xff, 0, 0, 0, 0, 2, 4,
        0x05, 0xb4,
    ];
    p[20..].copy_from_slice(&tcp);
    fix_csum(&mut p);
    set_tcp_csum(&mut p);
    p
}

fn tcp_sum(p: &[u8]) -> u32 {
    let words = |b: &[u8]| -> u32 {
        b.chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum()
    };
    let mut sum = words(&p[12..20]) + 6 + (p.len() - 20) as u32 + words(&p[20..]);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

fn set_tcp_csum(p: &mut [u8]) {
    p[36..38].copy_from_slice(&[0, 0]);
    let c = !(tcp_sum(p) as u16);
    p[36..38].copy_from_slice(&c.to_be_bytes());
}

#[test]
fn the_mss_clamp_lowers_syns_both_ways_and_keeps_their_checksums() {
    let mut s = site(1, false);
    assert!(s.lc.set_mss_clamp(0, Some(1360)));
    // Outbound: the LAN host's SYN leaves clamped.
    let syn = tcp_syn([192, 0, 2, 10], [203, 0, 113, 5], 0x02);
    let mut m = buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &syn));
    assert_eq!(
        pipeline::inside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Tx(PortRole::Outside)
    );
    let mut outer = VecBuf::new(0, &m.data()[14..], 0);
    s.peer_in.decap(&mut KeyCache::new(2), &mut outer).unwrap();
    let got = outer.data();
    assert_eq!(u16::from_be_bytes([got[42], got[43]]), 1360);
    assert_eq!(tcp_sum(got), 0xffff, "TCP checksum valid");
    // Inbound: the remote's SYN-ACK reaches the LAN clamped.
    let syn_ack = tcp_syn([203, 0, 113, 5], [192, 0, 2, 10], 0x12);
    let mut m = from_peer(&mut s, &syn_ack);
    assert_eq!(
        pipeline::outside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Tx(PortRole::Inside)
    );
    let got = &m.data()[14..];
    assert_eq!(u16::from_be_bytes([got[42], got[43]]), 1360);
    assert_eq!(tcp_sum(got), 0xffff);
    assert_eq!(s.stats.get(Counter::MssClamped), 2);
    // Without a clamp, the MSS is left as it was.
    assert!(s.lc.set_mss_clamp(0, None));
    let mut m = buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &syn));
    pipeline::inside_frame(&mut m, &mut s.ctx(0));
    let mut outer = VecBuf::new(0, &m.data()[14..], 0);
    s.peer_in.decap(&mut KeyCache::new(2), &mut outer).unwrap();
    assert_eq!(
        u16::from_be_bytes([outer.data()[42], outer.data()[43]]),
        1460
    );
}

#[test]
fn ttl_1_from_the_lan_gets_time_exceeded_back_on_the_inside_port() {
    let mut s = site(1, false);
    let inner = with_ttl(lan_to_remote(b"traceroute probe"), 1);
    let mut m = buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &inner));
    assert_eq!(
        pipeline::inside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Tx(PortRole::Inside)
    );
    let d = m.data();
    assert_eq!((&d[..6], &d[6..12]), (&LAN_MAC[..], &BOX_IN_MAC[..]));
    let ip = &d[14..];
    assert_eq!(
        &ip[12..16],
        &[192, 0, 2, 1],
        "from the box's inside address"
    );
    assert_eq!(&ip[16..20], &[192, 0, 2, 10], "to the probe's source");
    assert_eq!(
        (ip[9], ip[20], ip[21]),
        (1, 11, 0),
        "ICMP time exceeded in transit"
    );
    assert_eq!(&ip[28..], &inner[..28], "quotes header + 8 bytes");
    assert_eq!(s.stats.get(Counter::EspEncap), 0, "nothing encrypted");
    assert_eq!(s.stats.drops(Why::Dp(DpDrop::TtlExceeded)), 1);
    assert_eq!(s.stats.get(Counter::IcmpErrorsSent), 1);
}

#[test]
fn packets_too_big_for_the_path_mtu_with_df_get_fragmentation_needed() {
    let mut s = site(1, false);
    assert!(s.lc.set_path_mtu(0, 1400));
    // Raw ESP over IPv4: 20 + 8 + 8 + 16 of overhead and 2 + padding to 4 bytes.
    let limit = 1400 - 52 - 2;
    for (len, df, want) in [
        (limit, true, Verdict::Tx(PortRole::Outside)),
        (limit + 1, true, Verdict::Tx(PortRole::Inside)),
    ] {
        let mut inner = lan_to_remote(&vec![0x5a; len - 28]);
        assert_eq!(inner.len(), len);
        if !df {
            inner[6] = 0;
            fix_csum(&mut inner);
        }
        let mut m = buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &inner));
        assert_eq!(
            pipeline::inside_frame(&mut m, &mut s.ctx(0)),
            want,
            "{len} bytes, DF {df}"
        );
        if want == Verdict::Tx(PortRole::Outside) {
            if df {
                assert!(m.len() - 14 <= 1400, "fits the path: {}", m.len() - 14);
            }
            continue;
        }
        let ip = &m.data()[14..];
        assert_eq!(&ip[16..20], &[192, 0, 2, 10], "back to the source");
        assert_eq!((ip[20], ip[21]), (3, 4), "fragmentation needed and DF set");
        assert_eq!(u16::from_be_bytes([ip[26], ip[27]]) as usize, limit);
        assert_eq!(&ip[28..48], &inner[..20], "quotes the packet");
    }
    assert_eq!(s.stats.drops(Why::Dp(DpDrop::TooBigForTunnel)), 1);
    // Unknown path MTU (0): no check.
    assert!(s.lc.set_path_mtu(0, 0));
    let big = lan_to_remote(&vec![1; 1450]);
    let mut m = buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &big));
    assert_eq!(
        pipeline::inside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Tx(PortRole::Outside)
    );
}

/// The IPv4 fragments `frags` (data at the IP header) put back together: checks what a
/// receiver checks and returns the datagram.
fn rejoin(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut payload = vec![];
    for (i, f) in frags.iter().enumerate() {
        assert_eq!(csum(&f[..20]), 0, "fragment {i}: header checksum");
        assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), f.len());
        assert_eq!(&f[4..6], &frags[0][4..6], "one identification");
        let ff = u16::from_be_bytes([f[6], f[7]]);
        assert_eq!(
            usize::from(ff & 0x1fff) * 8,
            payload.len(),
            "fragment {i}: offset"
        );
        assert_eq!(ff & 0x2000 != 0, i + 1 < frags.len(), "fragment {i}: MF");
        payload.extend_from_slice(&f[20..]);
    }
    let mut p = frags[0][..20].to_vec();
    p.extend_from_slice(&payload);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p[6..8].copy_from_slice(&[0, 0]);
    fix_csum(&mut p);
    p
}

/// Runs a packet through the inside port and, when it is too big, [`pipeline::fragment_out`]:
/// the frames that leave the box.
fn send_from_lan(s: &mut Site, inner: &[u8]) -> Vec<Vec<u8>> {
    let mut m = buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, inner));
    let v = pipeline::inside_frame(&mut m, &mut s.ctx(0));
    let Verdict::Fragment(o) = v else {
        assert_eq!(v, Verdict::Tx(PortRole::Outside));
        return vec![m.data().to_vec()];
    };
    pipeline::fragment_out(m, &mut s.ctx(0), o)
        .into_iter()
        .flatten()
        .map(|(m, v)| {
            assert_eq!(v, Verdict::Tx(PortRole::Outside), "every piece leaves");
            assert_eq!(&m.data()[..6], &PEER_MAC);
            m.data().to_vec()
        })
        .collect()
}

#[test]
fn without_df_a_packet_too_big_is_fragmented_before_encryption_and_each_piece_decrypts() {
    for udp in [false, true] {
        let mut s = site(1, udp);
        assert!(s.lc.set_path_mtu(0, 1400));
        let mut inner = lan_to_remote(&[0xa5; 1972]);
        inner[6] = 0;
        fix_csum(&mut inner);
        let frames = send_from_lan(&mut s, &inner);
        assert_eq!(
            frames.len(),
            2,
            "udp {udp}: 2,000 bytes in a 1,400-byte path"
        );
        let mut opened = vec![];
        for f in &frames {
            assert!(f.len() - 14 <= 1400, "udp {udp}: {} bytes", f.len() - 14);
            let mut outer = VecBuf::new(0, &f[14..], 0);
            s.peer_in
                .decap(&mut KeyCache::new(2), &mut outer)
                .expect("each fragment is an ESP packet of its own");
            opened.push(outer.data().to_vec());
        }
        assert_eq!(rejoin(&opened), forwarded(&inner), "udp {udp}: byte-exact");
        assert_eq!(s.stats.get(Counter::FragmentedBeforeEncryption), 1);
        assert_eq!(s.stats.get(Counter::EspEncap), 2);
    }
}

#[test]
fn after_encryption_the_esp_packet_is_fragmented_and_rejoins_to_one_the_peer_opens() {
    for udp in [false, true] {
        let mut s = site(1, udp);
        assert!(s.lc.set_path_mtu(0, 1400));
        assert!(s.lc.set_fragmentation(0, Fragmentation::AfterEncryption));
        let mut inner = lan_to_remote(&[0x3c; 1972]);
        inner[6] = 0;
        fix_csum(&mut inner);
        let frames = send_from_lan(&mut s, &inner);
        assert_eq!(frames.len(), 2, "udp {udp}");
        let ips: Vec<Vec<u8>> = frames.iter().map(|f| f[14..].to_vec()).collect();
        for ip in &ips {
            assert!(ip.len() <= 1400, "udp {udp}: {} bytes", ip.len());
        }
        let mut outer = VecBuf::new(0, &rejoin(&ips), 0);
        s.peer_in
            .decap(&mut KeyCache::new(2), &mut outer)
            .expect("the rejoined ESP packet opens");
        assert_eq!(
            outer.data(),
            &forwarded(&inner)[..],
            "udp {udp}: byte-exact"
        );
        assert_eq!(s.stats.get(Counter::FragmentedAfterEncryption), 1);
        assert_eq!(s.stats.get(Counter::EspEncap), 1, "one ESP packet");
    }
}

#[test]
fn a_packet_that_cannot_be_split_to_the_mtu_is_dropped_by_its_reason() {
    let mut s = site(1, false);
    // 40 bytes of options that every fragment carries (copied flag) and a path (set directly:
    // the control thread never goes below 576) that leaves less than 8 bytes after them.
    assert!(s.lc.set_path_mtu(0, 120));
    let mut inner = lan_to_remote(&[1; 1900]);
    let mut opts = vec![0x94u8, 40];
    opts.resize(40, 1);
    inner.splice(20..20, opts);
    inner[0] = 0x4f;
    let len = inner.len() as u16;
    inner[2..4].copy_from_slice(&len.to_be_bytes());
    inner[6] = 0;
    inner[10..12].copy_from_slice(&[0, 0]);
    let c = csum(&inner[..60]);
    inner[10..12].copy_from_slice(&c.to_be_bytes());
    let mut m = buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &inner));
    let Verdict::Fragment(o) = pipeline::inside_frame(&mut m, &mut s.ctx(0)) else {
        panic!("too big, no DF")
    };
    let pieces: Vec<_> = pipeline::fragment_out(m, &mut s.ctx(0), o)
        .into_iter()
        .flatten()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        pieces,
        [Verdict::Drop(Why::Dp(DpDrop::FragmentUnsplittable))]
    );
    assert_eq!(s.stats.get(Counter::EspEncap), 0);
}

#[test]
fn ttl_1_from_the_peer_gets_time_exceeded_back_through_the_tunnel() {
    for udp in [false, true] {
        let mut s = site(1, udp);
        let inner = with_ttl(remote_to_lan(b"probe from afar"), 1);
        let mut m = from_peer(&mut s, &inner);
        assert_eq!(
            pipeline::outside_frame(&mut m, &mut s.ctx(0)),
            Verdict::Tx(PortRole::Outside),
            "the error leaves encrypted, towards the peer"
        );
        let mut outer = VecBuf::new(0, &m.data()[14..], 0);
        s.peer_in
            .decap(&mut KeyCache::new(2), &mut outer)
            .expect("the peer opens it");
        let ip = outer.data();
        assert_eq!(
            &ip[12..16],
            &[192, 0, 2, 1],
            "from the box's inside address"
        );
        assert_eq!(&ip[16..20], &[203, 0, 113, 5], "to the probe's source");
        assert_eq!((ip[9], ip[20]), (1, 11), "ICMP time exceeded");
        assert_eq!(ip[8], 63, "the error itself was forwarded once");
        assert_eq!(&ip[28..], &inner[..28]);
        assert_eq!(s.stats.drops(Why::Dp(DpDrop::TtlExceeded)), 1);
        assert_eq!(
            (
                s.stats.get(Counter::EspDecap),
                s.stats.get(Counter::EspEncap)
            ),
            (1, 1)
        );
    }
}

#[test]
fn replayed_and_tampered_esp_are_dropped_under_their_reasons() {
    let mut s = site(1, false);
    let mut m = from_peer(&mut s, &remote_to_lan(b"once"));
    let copy = m.clone();
    let mut tampered = from_peer(&mut s, &remote_to_lan(b"twice"));
    assert_eq!(
        pipeline::outside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Tx(PortRole::Inside)
    );
    let mut replay = copy;
    assert_eq!(
        pipeline::outside_frame(&mut replay, &mut s.ctx(0)),
        Verdict::Drop(Why::Esp(DropReason::Replayed))
    );
    let n = tampered.len();
    tampered.data_mut()[n - 20] ^= 0x01;
    assert_eq!(
        pipeline::outside_frame(&mut tampered, &mut s.ctx(0)),
        Verdict::Drop(Why::Esp(DropReason::AuthFailed))
    );
}

#[test]
fn packets_for_an_sa_of_another_worker_are_handed_off_and_processed_only_there() {
    let mut s = site(2, true);
    assert_eq!(espada_dataplane::owner_of_spi(SPI_IN, 2), 0);
    // Inbound ESP arriving at worker 1 goes to worker 0 and is decapsulated there.
    let mut m = from_peer(&mut s, &remote_to_lan(b"x"));
    let v = pipeline::outside_frame(&mut m, &mut s.ctx(1));
    assert_eq!(
        v,
        Verdict::Handoff {
            owner: 0,
            kind: HandoffKind::Inbound
        }
    );
    assert_eq!(
        s.stats.get(Counter::EspDecap),
        0,
        "worker 1 did not touch the SA"
    );
    let mut again = m.clone();
    assert_eq!(
        pipeline::esp_in(&mut again, &mut s.ctx(1), true),
        Verdict::Drop(Why::Dp(DpDrop::NotOwner))
    );
    assert_eq!(
        pipeline::esp_in(&mut m, &mut s.ctx(0), true),
        Verdict::Tx(PortRole::Inside)
    );
    // Outbound cleartext arriving at worker 1 likewise.
    let mut c = buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &lan_to_remote(b"y")));
    assert_eq!(
        pipeline::inside_frame(&mut c, &mut s.ctx(1)),
        Verdict::Handoff {
            owner: 0,
            kind: HandoffKind::Outbound
        }
    );
    assert_eq!(
        pipeline::clear_out(&mut c, &mut s.ctx(0), true),
        Verdict::Tx(PortRole::Outside)
    );
}

#[test]
fn unknown_spis_are_classified_and_reported_with_their_details() {
    let mut s = site(1, false);
    let cases = [
        (
            0x0bad_0001u32,
            [198, 51, 100, 2],
            UnknownSpiClass::Tombstone,
            DpDrop::UnknownSpiTombstone,
        ),
        (
            0x0bad_0002,
            [198, 51, 100, 2],
            UnknownSpiClass::KnownPeer,
            DpDrop::UnknownSpiKnownPeer,
        ),
        (
            0x0bad_0003,
            [198, 51, 100, 77],
            UnknownSpiClass::UnknownSource,
            DpDrop::UnknownSpiUnknownSource,
        ),
    ];
    for (spi, src, class, drop) in cases {
        let (frame, p) = esp_frame(src, spi);
        let mut m = buf(&frame);
        assert_eq!(
            pipeline::outside_frame(&mut m, &mut s.ctx(0)),
            Verdict::Drop(Why::Dp(drop))
        );
        let ev = s.drain_events();
        let [Event::UnknownSpi(u)] = ev.as_slice() else {
            panic!("one unknown-SPI event, got {ev:?}")
        };
        assert_eq!(
            (u.class, u.spi, u.seq, u.src, u.len),
            (class, spi, 7, std::net::IpAddr::from(src), p.len() as u32)
        );
    }
}

#[test]
fn reserved_spis_have_their_own_drop_reason_and_raise_no_unknown_spi_event() {
    let mut s = site(1, false);
    for (spi, drop) in [
        (0u32, DpDrop::ReservedSpi),
        (1, DpDrop::ReservedSpi),
        (255, DpDrop::ReservedSpi),
        (256, DpDrop::UnknownSpiKnownPeer),
    ] {
        let (frame, _) = esp_frame([198, 51, 100, 2], spi);
        let mut m = buf(&frame);
        assert_eq!(
            pipeline::outside_frame(&mut m, &mut s.ctx(0)),
            Verdict::Drop(Why::Dp(drop)),
            "SPI {spi}"
        );
        let events = s.drain_events().len();
        assert_eq!(
            events,
            usize::from(spi >= 256),
            "SPI {spi}: unknown-SPI samples"
        );
    }
}

#[test]
fn keepalives_ike_arp_and_echo_take_their_paths() {
    let mut s = site(1, true);
    let ka = ipv4_udp([198, 51, 100, 2], [198, 51, 100, 1], 4500, 4500, &[0xff]);
    let mut m = buf(&ether(BOX_OUT_MAC, PEER_MAC, 0x0800, &ka));
    assert_eq!(
        pipeline::outside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Consumed
    );
    assert_eq!(s.stats.get(Counter::NattKeepalives), 1);

    for (port, payload) in [
        (500u16, vec![0x11; 40]),
        (4500, [&[0u8; 4][..], &[0x22; 40]].concat()),
    ] {
        let frame = ether(
            BOX_OUT_MAC,
            PEER_MAC,
            0x0800,
            &ipv4_udp([198, 51, 100, 2], [198, 51, 100, 1], port, port, &payload),
        );
        let mut m = buf(&frame);
        assert_eq!(
            pipeline::outside_frame(&mut m, &mut s.ctx(0)),
            Verdict::Punt(PortRole::Outside)
        );
        assert_eq!(m.data(), &frame[..], "punted with the frame as it arrived");
    }
    let arp = ether([0xff; 6], LAN_MAC, 0x0806, &[0; 28]);
    assert_eq!(
        pipeline::inside_frame(&mut buf(&arp), &mut s.ctx(0)),
        Verdict::Punt(PortRole::Inside)
    );
    let mut to_box = ipv4_udp([192, 0, 2, 10], [192, 0, 2, 1], 1, 1, b"ping");
    to_box[9] = 1;
    assert_eq!(
        pipeline::inside_frame(
            &mut buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &to_box)),
            &mut s.ctx(0)
        ),
        Verdict::Punt(PortRole::Inside)
    );
    let vlan = ether(BOX_IN_MAC, LAN_MAC, 0x8100, &[0; 50]);
    assert_eq!(
        pipeline::inside_frame(&mut buf(&vlan), &mut s.ctx(0)),
        Verdict::Drop(Why::Dp(DpDrop::BadEthernet))
    );
}

#[test]
fn an_icmp_error_about_our_own_esp_counts_on_the_tunnel_not_as_a_bad_spi() {
    let mut s = site(1, false);
    let mut m = buf(&ether(
        BOX_IN_MAC,
        LAN_MAC,
        0x0800,
        &lan_to_remote(&[0x33; 100]),
    ));
    assert_eq!(
        pipeline::inside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Tx(PortRole::Outside)
    );
    let quoted = &m.data()[14..14 + 60];
    // A router says "fragmentation needed, MTU 1400" about it (RFC 1191).
    let mut icmp = vec![3u8, 4, 0, 0, 0, 0, 0x05, 0x78];
    icmp.extend_from_slice(quoted);
    let c = csum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = ipv4_udp([198, 51, 100, 254], [198, 51, 100, 1], 0, 0, &[]);
    p.truncate(20);
    p.extend_from_slice(&icmp);
    p[9] = 1;
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[10..12].copy_from_slice(&[0, 0]);
    let c = csum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let mut e = buf(&ether(BOX_OUT_MAC, PEER_MAC, 0x0800, &p));
    assert_eq!(
        pipeline::outside_frame(&mut e, &mut s.ctx(0)),
        Verdict::Drop(Why::Dp(DpDrop::IcmpErrorForTunnel))
    );
    let ev = s.drain_events();
    assert!(
        matches!(
            ev.as_slice(),
            [Event::IcmpError {
                tunnel: 0,
                kind: espada_esp::icmp::IcmpErrorKind::FragmentationNeeded { mtu: 1400 }
            }]
        ),
        "{ev:?}"
    );
    assert_eq!(s.stats.drops(Why::Dp(DpDrop::UnknownSpiUnknownSource)), 0);
}

#[test]
fn selectors_routes_and_neighbours_are_enforced() {
    let mut s = site(1, false);
    // Decrypted packet whose inner source is outside the remote selectors.
    let mut m = from_peer(
        &mut s,
        &ipv4_udp([198, 18, 0, 1], [192, 0, 2, 10], 1, 1, b"spoof"),
    );
    assert_eq!(
        pipeline::outside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Drop(Why::Dp(DpDrop::PolicyMismatch))
    );
    // Cleartext to a network no tunnel protects.
    let c = ipv4_udp([192, 0, 2, 10], [198, 18, 9, 9], 1, 1, b"nowhere");
    assert_eq!(
        pipeline::inside_frame(
            &mut buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &c)),
            &mut s.ctx(0)
        ),
        Verdict::Drop(Why::Dp(DpDrop::NoRoute))
    );
    // Cleartext from a source outside the local selectors.
    let c = ipv4_udp([192, 0, 3, 10], [203, 0, 113, 5], 1, 1, b"wrong source");
    assert_eq!(
        pipeline::inside_frame(
            &mut buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &c)),
            &mut s.ctx(0)
        ),
        Verdict::Drop(Why::Dp(DpDrop::PolicyMismatch))
    );
    // A LAN host whose MAC is unknown: dropped, and the control thread asked to resolve it.
    let mut m = from_peer(
        &mut s,
        &ipv4_udp([203, 0, 113, 5], [192, 0, 2, 11], 1, 1, b"who?"),
    );
    assert_eq!(
        pipeline::outside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Drop(Why::Dp(DpDrop::NoNeighbor))
    );
    assert!(
        matches!(s.drain_events().as_slice(), [Event::NeighborMiss { port: PortRole::Inside, dst }] if *dst == ip("192.0.2.11"))
    );
    // Not for us at all.
    let other = ipv4_udp([198, 51, 100, 2], [198, 51, 100, 9], 4500, 4500, &[1; 30]);
    assert_eq!(
        pipeline::outside_frame(
            &mut buf(&ether(BOX_OUT_MAC, PEER_MAC, 0x0800, &other)),
            &mut s.ctx(0)
        ),
        Verdict::Drop(Why::Dp(DpDrop::NotForUs))
    );
}

#[test]
fn garbage_frames_never_panic_and_are_always_dropped_or_punted() {
    let mut s = site(1, true);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..400usize {
        for _ in 0..8 {
            let mut f = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f.push(x as u8);
            }
            if len > 14 {
                f[12..14].copy_from_slice(if x & 1 == 0 {
                    &[0x08, 0x00]
                } else {
                    &[0x86, 0xdd]
                });
                f[14] = if x & 2 == 0 { 0x45 } else { 0x60 };
            }
            for port in PortRole::ALL {
                let mut m = buf(&f);
                let v = match port {
                    PortRole::Outside => pipeline::outside_frame(&mut m, &mut s.ctx(0)),
                    PortRole::Inside => pipeline::inside_frame(&mut m, &mut s.ctx(0)),
                };
                assert!(
                    !matches!(v, Verdict::Tx(_)),
                    "garbage must not be forwarded: {v:?}"
                );
            }
        }
    }
}

#[test]
fn soft_lifetime_reaches_the_control_thread_once_and_hard_lifetime_stops_the_sa() {
    let limits = espada_esp::LifetimeLimits {
        soft_packets: 3,
        hard_packets: 5,
        ..espada_esp::LifetimeLimits::UNLIMITED
    };
    let mut s = site_with_lifetime(1, false, limits);
    let mut verdicts = Vec::new();
    for i in 0..7u8 {
        let mut m = from_peer(&mut s, &remote_to_lan(&[i; 20]));
        verdicts.push(pipeline::outside_frame(&mut m, &mut s.ctx(0)));
    }
    let tx = Verdict::Tx(PortRole::Inside);
    let expired = Verdict::Drop(Why::Esp(DropReason::LifetimeExpired));
    assert_eq!(
        verdicts,
        vec![tx, tx, tx, tx, tx, expired, expired],
        "exactly the hard limit is processed"
    );
    assert_eq!(
        s.drain_notices(),
        vec![
            SaNotice {
                tunnel: 0,
                spi: SPI_IN,
                inbound: true,
                kind: NoticeKind::Soft
            },
            SaNotice {
                tunnel: 0,
                spi: SPI_IN,
                inbound: true,
                kind: NoticeKind::Hard
            }
        ],
        "one soft notice at the third packet and one hard notice, for the inbound SA, on the \
         channel that cannot lose them"
    );
    assert!(s.drain_events().is_empty());
    // The outbound SA has its own lifetime: the same happens on the encap side.
    for _ in 0..3 {
        let mut c = buf(&ether(BOX_IN_MAC, LAN_MAC, 0x0800, &lan_to_remote(b"out")));
        assert_eq!(
            pipeline::inside_frame(&mut c, &mut s.ctx(0)),
            Verdict::Tx(PortRole::Outside)
        );
    }
    assert_eq!(
        s.drain_notices(),
        vec![SaNotice {
            tunnel: 0,
            spi: SPI_OUT,
            inbound: false,
            kind: NoticeKind::Soft
        }]
    );
}

#[test]
fn the_packet_that_reaches_the_inbound_hard_lifetime_brings_the_hard_notice() {
    let limits = espada_esp::LifetimeLimits {
        hard_packets: 3,
        ..espada_esp::LifetimeLimits::UNLIMITED
    };
    let mut s = site_with_lifetime(1, false, limits);
    let hard = SaNotice {
        tunnel: 0,
        spi: SPI_IN,
        inbound: true,
        kind: NoticeKind::Hard,
    };
    for i in 0..3u8 {
        let mut m = from_peer(&mut s, &remote_to_lan(&[i; 20]));
        assert_eq!(
            pipeline::outside_frame(&mut m, &mut s.ctx(0)),
            Verdict::Tx(PortRole::Inside),
            "packet {i} is within the limit"
        );
        let want = if i == 2 { vec![hard] } else { vec![] };
        assert_eq!(s.drain_notices(), want, "after packet {i}");
    }
    // The next packet is stopped, and the notice is not sent again.
    let mut m = from_peer(&mut s, &remote_to_lan(b"late"));
    assert_eq!(
        pipeline::outside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Drop(Why::Esp(DropReason::LifetimeExpired))
    );
    assert!(s.drain_notices().is_empty());
}
