//! Issue 15's fragment proof on real DPDK (EAL, ring-backed ports, two launched workers,
//! handoff rings, mbufs from one pool) — the IPv4 case the namespace e2e cannot show, because
//! an af_packet port's kernel socket reassembles IPv4 before espada sees it.
//!
//! - Outer IPv4 fragments of ESP and of ESP in UDP (NAT-T), in order and reversed, each fragment of a datagram on the
//!   other worker's RX queue (as a NIC hashing L4 ports would spread them): every datagram
//!   reaches the LAN byte-exact, once.
//! - A datagram missing a fragment times out (counted once its slot is taken back); a
//!   duplicated fragment drops its datagram (`reassembly_overlap`).
//! - Inner packets without DF too big for the tunnel's path MTU leave fragmented before
//!   encryption (each piece an ESP packet the peer opens) and, switched at run time, after it
//!   (ESP fragments the peer rejoins, then opens): real mbufs from `alloc_like`.
//! - Nothing else is dropped and every mbuf is back in the pool at the end.

mod common;

use espada_wire::MacAddr;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::workers::{RingPorts, TwoWorkers};
use common::{
    BOX_IN_MAC, BOX_OUT_MAC, LAN_MAC, PEER_MAC, ether, fix_csum, forwarded, ipv4_fragments,
    ipv4_udp,
};
use dpdk::{Burst, Mempool, RingPortEnds};
use espada_buf::{PacketBuf, VecBuf};
use espada_dataplane::PortRole;
use espada_dataplane::depth::Lookahead;
use espada_dataplane::drops::{DpDrop, Why};
use espada_dataplane::lifecycle::{Lifecycle, Sizes, TunnelSpec};
use espada_dataplane::reasm;
use espada_dataplane::slab::Policy;
use espada_dataplane::stats::Counter;
use espada_dataplane::tables::Iface;
use espada_dataplane::tunnels::Fragmentation;
use espada_esp::sa::NattPorts;
use espada_esp::{Backend, Direction, InboundSa, KeyCache, OutboundSa, SaConfig};

const BOX: [u8; 4] = [198, 51, 100, 1];
const PEER: [u8; 4] = [198, 51, 100, 2];
const LAN_HOST: [u8; 4] = [192, 0, 2, 10];
const REMOTE_HOST: [u8; 4] = [203, 0, 113, 5];
const PEER_NATT: [u8; 4] = [198, 51, 100, 3];
const NATT_HOST: [u8; 4] = [198, 18, 5, 5];
const OUT_SPI: u32 = 0x2000_0001;
const KEY_IN: [u8; 36] = [0x31; 36];
const KEY_OUT: [u8; 36] = [0x32; 36];

fn sa_cfg(spi: u32, dir: Direction, local: [u8; 4], remote: [u8; 4]) -> SaConfig {
    let mut c = SaConfig::new(spi, dir, IpAddr::from(local), IpAddr::from(remote));
    c.esn = false;
    c
}

fn ports() -> [Iface; 2] {
    [
        Iface {
            mac: MacAddr(BOX_OUT_MAC),
            ipv4: Some("198.51.100.1/24".parse().unwrap()),
            ..Default::default()
        },
        Iface {
            mac: MacAddr(BOX_IN_MAC),
            ipv4: Some("192.0.2.1/24".parse().unwrap()),
            ..Default::default()
        },
    ]
}

/// IPv4 fragments (any order) put back together by identification: complete datagrams only.
fn rejoin_all(frags: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut by_id: HashMap<u16, Vec<Vec<u8>>> = HashMap::new();
    for f in frags {
        assert_eq!(common::csum(&f[..20]), 0, "fragment header checksum");
        by_id
            .entry(u16::from_be_bytes([f[4], f[5]]))
            .or_default()
            .push(f);
    }
    let mut out: Vec<(u16, Vec<u8>)> = by_id
        .into_iter()
        .map(|(id, mut fs)| {
            fs.sort_by_key(|f| u16::from_be_bytes([f[6], f[7]]) & 0x1fff);
            let mut p = fs[0][..20].to_vec();
            for f in &fs {
                let off = usize::from(u16::from_be_bytes([f[6], f[7]]) & 0x1fff) * 8;
                assert_eq!(off, p.len() - 20, "datagram {id}: contiguous");
                p.extend_from_slice(&f[20..]);
            }
            let last = fs.last().unwrap();
            assert_eq!(last[6] & 0x20, 0, "datagram {id}: complete");
            let len = p.len() as u16;
            p[2..4].copy_from_slice(&len.to_be_bytes());
            p[6..8].copy_from_slice(&[0, 0]);
            fix_csum(&mut p);
            (id, p)
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, p)| p).collect()
}

/// Injects `frame` on RX queue `q` of `ends`.
fn inject(ends: &mut RingPortEnds, pool: &Mempool, q: usize, frame: &[u8]) {
    let mut b: Burst = Burst::new();
    let mut m = pool.alloc().expect("pool");
    assert!(m.set_data(frame));
    b.push(m).unwrap();
    while !b.is_empty() {
        ends.rx_inject[q].enqueue_burst(&mut b);
    }
}

/// Frames that left on `ends` until `n` arrived (Ethernet stripped), or panics after 10 s.
fn collect(ends: &mut RingPortEnds, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut b: Burst = Burst::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < n {
        assert!(Instant::now() < deadline, "{} of {n} frames", got.len());
        for q in 0..ends.tx_collect.len() {
            ends.tx_collect[q].dequeue_burst(&mut b);
            got.extend(b.drain().map(|m| m.data()[14..].to_vec()));
        }
    }
    got
}

#[test]
fn ipv4_fragments_on_two_workers_reassemble_and_too_big_packets_leave_fragmented() {
    // Both ports: two RX queues (worker w polls queue w), a TX queue per worker plus control.
    let RingPorts {
        eal,
        pool,
        mut out_ends,
        mut in_ends,
        out_port,
        in_port,
    } = RingPorts::start("fr", 256, 4095, 32, 1024);

    let (mut lc, parts) = Lifecycle::with_seed(Sizes::for_tunnels(2, 16), ports(), 0xf7a9).unwrap();
    let t = lc
        .add_tunnel(TunnelSpec {
            name: "frag".into(),
            peer: IpAddr::from(PEER),
            local: IpAddr::from(BOX),
            policy: Policy {
                local_ts: vec!["192.0.2.0/24".parse().unwrap()],
                remote_ts: vec!["203.0.113.0/24".parse().unwrap()],
            },
            owner: Some(0),
        })
        .unwrap();
    let spi_in = lc.allocate_spi(t).unwrap();
    let inb = InboundSa::new(
        sa_cfg(spi_in, Direction::Inbound, BOX, PEER),
        &KEY_IN,
        Backend::Ring,
    )
    .unwrap();
    lc.install_inbound(t, inb).unwrap();
    let outb = OutboundSa::new(
        sa_cfg(OUT_SPI, Direction::Outbound, BOX, PEER),
        &KEY_OUT,
        Backend::Ring,
    )
    .unwrap();
    lc.install_outbound(t, outb).unwrap();
    // A second tunnel, NAT-T (ESP in UDP 4500), for inbound fragments of UDP datagrams.
    let t_udp = lc
        .add_tunnel(TunnelSpec {
            name: "frag-natt".into(),
            peer: IpAddr::from(PEER_NATT),
            local: IpAddr::from(BOX),
            policy: Policy {
                local_ts: vec!["192.0.2.0/24".parse().unwrap()],
                remote_ts: vec!["198.18.5.0/24".parse().unwrap()],
            },
            owner: Some(1),
        })
        .unwrap();
    let spi_udp = lc.allocate_spi(t_udp).unwrap();
    let natt = |mut c: SaConfig| {
        c.natt = Some(NattPorts::default());
        c
    };
    let inb = InboundSa::new(
        natt(sa_cfg(spi_udp, Direction::Inbound, BOX, PEER_NATT)),
        &KEY_IN,
        Backend::Ring,
    )
    .unwrap();
    lc.install_inbound(t_udp, inb).unwrap();
    lc.neighbour_learned(PortRole::Outside, IpAddr::from(PEER), MacAddr(PEER_MAC));
    lc.neighbour_learned(
        PortRole::Outside,
        IpAddr::from(PEER_NATT),
        MacAddr(PEER_MAC),
    );
    lc.neighbour_learned(PortRole::Inside, IpAddr::from(LAN_HOST), MacAddr(LAN_MAC));
    let mut parts = parts;
    lc.apply_directly(&mut parts, Instant::now());
    lc.switch_outbound(t, OUT_SPI).unwrap();
    lc.apply_directly(&mut parts, Instant::now());
    while let Some(a) = lc.poll_ack() {
        a.result.unwrap();
    }
    // The peer.
    let mut peer_keys = KeyCache::new(4);
    let mut seal = OutboundSa::new(
        sa_cfg(spi_in, Direction::Outbound, PEER, BOX),
        &KEY_IN,
        Backend::RustCrypto,
    )
    .unwrap();
    let mut seal_udp = OutboundSa::new(
        natt(sa_cfg(spi_udp, Direction::Outbound, PEER_NATT, BOX)),
        &KEY_IN,
        Backend::RustCrypto,
    )
    .unwrap();
    let mut open = InboundSa::new(
        sa_cfg(OUT_SPI, Direction::Inbound, PEER, BOX),
        &KEY_OUT,
        Backend::RustCrypto,
    )
    .unwrap();

    let workers = TwoWorkers::launch(
        &eal,
        "f",
        512,
        parts,
        (&out_port, &in_port),
        Lookahead::Auto,
    );
    let stats = &workers.stats;
    let sum = |c: Counter| stats.iter().map(|s| s.get(c)).sum::<u64>();

    // ESP of a 1,200-byte packet from a remote host, as the peer sends it.
    let inbound_from = |seal: &mut OutboundSa, keys: &mut KeyCache, n: u32, from: [u8; 4]| {
        let mut payload = n.to_be_bytes().to_vec();
        payload.resize(1200, n as u8);
        let inner = ipv4_udp(from, LAN_HOST, 7, 9, &payload);
        let mut esp = VecBuf::new(128, &inner, 64);
        seal.encap(keys, &mut esp).unwrap();
        (esp.data().to_vec(), inner)
    };
    let inbound = |seal: &mut OutboundSa, keys: &mut KeyCache, n: u32| {
        inbound_from(seal, keys, n, REMOTE_HOST)
    };

    // 1. Complete datagrams, raw ESP and NAT-T, in three fragments spread over both RX
    //    queues.
    let mut want: Vec<Vec<u8>> = Vec::new();
    for n in 0..20u32 {
        let (esp, inner) = if n % 4 < 2 {
            inbound(&mut seal, &mut peer_keys, n)
        } else {
            inbound_from(&mut seal_udp, &mut peer_keys, n, NATT_HOST)
        };
        let mut frags = ipv4_fragments(&esp, &[400, 800]);
        if n % 2 == 1 {
            frags.reverse();
        }
        for (k, f) in frags.iter().enumerate() {
            inject(
                &mut out_ends,
                &pool,
                k % 2,
                &ether(BOX_OUT_MAC, PEER_MAC, 0x0800, f),
            );
        }
        want.push(forwarded(&inner));
    }
    let mut got = collect(&mut in_ends, 20);
    got.sort();
    want.sort();
    assert_eq!(got, want, "every datagram reaches the LAN byte-exact, once");
    assert_eq!(sum(Counter::Reassembled), 20);
    assert!(
        sum(Counter::HandoffIn) >= 20,
        "fragments met on their reassembly worker"
    );

    // 2. One datagram missing its last fragment; one with a fragment twice.
    let (incomplete, _) = inbound(&mut seal, &mut peer_keys, 100);
    let waiting = reasm::worker_of(&incomplete, 2).unwrap();
    for f in &ipv4_fragments(&incomplete, &[400, 800])[..2] {
        inject(
            &mut out_ends,
            &pool,
            1,
            &ether(BOX_OUT_MAC, PEER_MAC, 0x0800, f),
        );
    }
    let (twice, _) = inbound(&mut seal, &mut peer_keys, 101);
    let frags = ipv4_fragments(&twice, &[400, 800]);
    for f in [&frags[0], &frags[1], &frags[1]] {
        inject(
            &mut out_ends,
            &pool,
            0,
            &ether(BOX_OUT_MAC, PEER_MAC, 0x0800, f),
        );
    }
    let overlap = Why::Dp(DpDrop::ReassemblyOverlap);
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.iter().map(|s| s.drops(overlap)).sum::<u64>() < 1 {
        assert!(Instant::now() < deadline, "the duplicate is an overlap");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Past the 2 s timeout, a new datagram on the waiting worker takes the slot back.
    std::thread::sleep(reasm::TIMEOUT + Duration::from_millis(200));
    // Four datagrams, two of them (by their identification) on the waiting worker.
    let mut want = Vec::new();
    let mut on_waiting = 0;
    for n in 200..260u32 {
        let (mut esp, inner) = inbound(&mut seal, &mut peer_keys, n);
        esp[4..6].copy_from_slice(&(n as u16).to_be_bytes());
        fix_csum(&mut esp);
        let here = reasm::worker_of(&esp, 2) == Some(waiting);
        if (here && on_waiting == 2) || (!here && want.len() - on_waiting == 2) {
            continue;
        }
        on_waiting += usize::from(here);
        for (k, f) in ipv4_fragments(&esp, &[400, 800]).iter().enumerate() {
            inject(
                &mut out_ends,
                &pool,
                k % 2,
                &ether(BOX_OUT_MAC, PEER_MAC, 0x0800, f),
            );
        }
        want.push(forwarded(&inner));
        if want.len() == 4 {
            break;
        }
    }
    assert_eq!((want.len(), on_waiting), (4, 2));
    let mut got = collect(&mut in_ends, want.len());
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sum(Counter::ReassemblyTimeouts) < 1 {
        assert!(
            Instant::now() < deadline,
            "the incomplete datagram timed out"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // 3. 1,928-byte packets without DF from the LAN, path MTU 1,400: fragmented before
    //    encryption, then (switched) after it. Sent on both RX queues (handoff to the owner).
    assert!(lc.set_path_mtu(t, 1400));
    let lan = |n: u32| {
        let mut payload = n.to_be_bytes().to_vec();
        payload.resize(1900, (n * 3) as u8);
        let mut p = ipv4_udp(LAN_HOST, REMOTE_HOST, 9, 7, &payload);
        p[4..6].copy_from_slice(&(n as u16).to_be_bytes());
        p[6] = 0;
        fix_csum(&mut p);
        p
    };
    let mut want: Vec<Vec<u8>> = (0..10).map(|n| forwarded(&lan(n))).collect();
    for n in 0..10u32 {
        inject(
            &mut in_ends,
            &pool,
            (n % 2) as usize,
            &ether(BOX_IN_MAC, LAN_MAC, 0x0800, &lan(n)),
        );
    }
    let esp = collect(&mut out_ends, 20);
    let mut opened = Vec::new();
    for p in esp {
        assert!(p.len() <= 1400, "{} bytes", p.len());
        let mut b = VecBuf::new(0, &p, 0);
        open.decap(&mut peer_keys, &mut b)
            .expect("each fragment opens");
        opened.push(b.data().to_vec());
    }
    let mut got = rejoin_all(opened);
    got.sort();
    want.sort();
    assert_eq!(got, want, "before encryption: byte-exact once rejoined");
    assert_eq!(sum(Counter::FragmentedBeforeEncryption), 10);

    assert!(lc.set_fragmentation(t, Fragmentation::AfterEncryption));
    let mut want: Vec<Vec<u8>> = (10..20).map(|n| forwarded(&lan(n))).collect();
    for n in 10..20u32 {
        inject(
            &mut in_ends,
            &pool,
            (n % 2) as usize,
            &ether(BOX_IN_MAC, LAN_MAC, 0x0800, &lan(n)),
        );
    }
    let frags = collect(&mut out_ends, 20);
    assert!(frags.iter().all(|f| f.len() <= 1400));
    let mut got = Vec::new();
    for p in rejoin_all(frags) {
        let mut b = VecBuf::new(0, &p, 0);
        open.decap(&mut peer_keys, &mut b)
            .expect("the rejoined ESP opens");
        got.push(b.data().to_vec());
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "after encryption: byte-exact");
    assert_eq!(sum(Counter::FragmentedAfterEncryption), 10);

    assert_eq!(
        stats.iter().map(|s| s.total_drops()).sum::<u64>(),
        1,
        "the duplicate fragment's datagram, nothing else"
    );
    workers.stop();
    assert_eq!(pool.in_use(), 0, "every mbuf back in the pool");
}
