//! The lifecycle API without DPDK: simulated workers (their slabs, command rings and table
//! readers driven from the test) and the pipeline stages on `VecBuf`s, with a simulated clock.
//! Each test checks one promise of `espada_dataplane::lifecycle`.

mod common;

use espada_wire::MacAddr;
use std::time::{Duration, Instant};

use common::*;
use espada_buf::PacketBuf;
use espada_dataplane::PortRole;
use espada_dataplane::drops::{DpDrop, Why};
use espada_dataplane::lifecycle::{LifecycleError, Op, WorkerParts};
use espada_dataplane::pipeline::{self, Verdict};
use espada_dataplane::slab::COMMAND_RING;
use espada_esp::KeyCache;
use espada_esp::{Backend, Direction, InboundSa, OutboundSa, SaConfig};

/// Worker `w` applies every command it has (as at the top of its loop, before adopting).
fn apply(parts: &mut [WorkerParts], w: usize) {
    let p = &mut parts[w];
    while let Ok(c) = p.commands.pop() {
        assert!(p.replies.push(p.slab.apply(c)).is_ok(), "reply ring full");
    }
}

fn cfg(spi: u32, dir: Direction, local: &str, remote: &str) -> SaConfig {
    let mut c = SaConfig::new(spi, dir, ip(local), ip(remote));
    c.esn = false;
    c
}

fn box_in(spi: u32) -> InboundSa {
    InboundSa::new(
        cfg(spi, Direction::Inbound, "198.51.100.1", "198.51.100.2"),
        &KEY_IN,
        Backend::Ring,
    )
    .unwrap()
}

fn peer_seal(spi: u32) -> OutboundSa {
    OutboundSa::new(
        cfg(spi, Direction::Outbound, "198.51.100.2", "198.51.100.1"),
        &KEY_IN,
        Backend::Ring,
    )
    .unwrap()
}

/// The peer seals a LAN-bound packet with `seal`, framed towards the box.
fn esp_frame(seal: &mut OutboundSa) -> espada_buf::VecBuf {
    let inner = ipv4_udp([203, 0, 113, 5], [192, 0, 2, 10], 2, 1, b"hello");
    let mut b = espada_buf::VecBuf::new(128, &inner, 64);
    seal.encap(&mut KeyCache::new(2), &mut b).unwrap();
    buf(&ether(BOX_OUT_MAC, PEER_MAC, 0x0800, b.data()))
}

#[test]
fn an_inbound_install_is_acknowledged_only_once_every_worker_sees_it() {
    let mut s = site(2, false);
    let now = Instant::now();
    let spi = s.lc.allocate_spi(0).unwrap();
    assert_ne!(spi, SPI_IN);
    let t = s.lc.install_inbound(0, box_in(spi)).unwrap();
    s.lc.poll(now);
    assert!(s.lc.poll_ack().is_none(), "the owner has not even got it");
    apply(&mut s.parts, 0);
    s.lc.poll(now);
    assert!(
        s.lc.poll_ack().is_none(),
        "in the slab and the directory, but no worker has adopted the new generation"
    );
    s.parts[0].tables.quiescent();
    s.lc.poll(now);
    assert!(s.lc.poll_ack().is_none(), "worker 1 has not adopted it yet");
    s.parts[1].tables.quiescent();
    s.lc.poll(now);
    let a = s.lc.poll_ack().expect("acknowledged");
    assert_eq!((a.ticket, a.op, a.spi), (t, Op::InstallInbound, spi));
    let g = a.result.unwrap();
    assert!(s.parts.iter().all(|p| p.tables.generation() >= g));
    // Every worker finds it: the owner decrypts, the other hands off.
    let mut seal = peer_seal(spi);
    let mut m = esp_frame(&mut seal);
    assert!(matches!(
        pipeline::outside_frame(&mut m, &mut s.ctx(1)),
        Verdict::Handoff { owner: 0, .. }
    ));
    let mut m = esp_frame(&mut seal);
    assert_eq!(
        pipeline::outside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Tx(PortRole::Inside)
    );
}

#[test]
fn a_retired_sa_decrypts_through_its_grace_then_is_a_tombstone_then_is_forgotten() {
    let mut s = site(1, false);
    let t0 = Instant::now();
    let (grace, linger) = (Duration::from_secs(10), Duration::from_secs(60));
    let freed = s.lc.stats().sas_freed;
    s.lc.retire_inbound(0, SPI_IN, t0, grace, linger).unwrap();
    let mut seal = peer_seal(SPI_IN);
    let mut decrypt = |s: &mut Site, at: Duration| {
        s.lc.apply_directly(&mut s.parts, t0 + at);
        let mut m = esp_frame(&mut seal);
        pipeline::outside_frame(&mut m, &mut s.ctx(0))
    };
    assert_eq!(
        decrypt(&mut s, Duration::from_secs(9)),
        Verdict::Tx(PortRole::Inside)
    );
    assert!(s.lc.poll_ack().is_none());
    let tomb = Verdict::Drop(Why::Dp(DpDrop::UnknownSpiTombstone));
    assert_eq!(decrypt(&mut s, Duration::from_secs(11)), tomb);
    let a = s.lc.poll_ack().expect("retirement acknowledged");
    assert_eq!((a.op, a.spi), (Op::RetireInbound, SPI_IN));
    assert_eq!(
        s.lc.stats().sas_freed,
        freed + 1,
        "the SA came back and was freed here"
    );
    assert_eq!(
        s.parts[0].slab.occupied(),
        (0, 1),
        "only the outbound SA is left"
    );
    assert_eq!(
        decrypt(&mut s, Duration::from_secs(70)),
        tomb,
        "linger counts from the tombstone"
    );
    assert_eq!(
        decrypt(&mut s, Duration::from_secs(72)),
        Verdict::Drop(Why::Dp(DpDrop::UnknownSpiKnownPeer)),
        "forgotten: from the configured peer, no such SA"
    );
    assert!(s.lc.stats().tombstones_expired >= 1);
    assert!(
        s.lc.tunnel(0)
            .unwrap()
            .inbound
            .iter()
            .all(|i| i.at.spi != SPI_IN)
    );
}

#[test]
fn more_changes_than_the_command_ring_holds_wait_in_a_backlog_and_all_complete() {
    let mut s = site(1, false);
    let now = Instant::now();
    let n = 3 * COMMAND_RING + 17;
    for _ in 0..n {
        let spi = s.lc.allocate_spi(0).unwrap();
        s.lc.install_inbound(0, box_in(spi)).unwrap();
    }
    let st = s.lc.stats();
    assert_eq!(st.in_flight, n, "every command is unanswered");
    assert_eq!(
        st.backlog,
        n - COMMAND_RING,
        "only a ring's worth was pushed"
    );
    let mut acks = 0;
    while acks < n {
        apply(&mut s.parts, 0);
        s.parts[0].tables.quiescent();
        s.lc.poll(now);
        assert!(s.lc.stats().in_flight - s.lc.stats().backlog <= COMMAND_RING);
        while let Some(a) = s.lc.poll_ack() {
            a.result.unwrap();
            acks += 1;
        }
    }
    assert_eq!(s.lc.stats().backlog, 0);
    assert_eq!(s.parts[0].slab.occupied().0, n + 1);
}

#[test]
fn switching_needs_an_installed_standby_and_removing_the_active_sa_never_sends_in_clear() {
    let mut s = site(1, false);
    let now = Instant::now();
    let out = OutboundSa::new(
        cfg(0x3003, Direction::Outbound, "198.51.100.1", "198.51.100.2"),
        &KEY_OUT,
        Backend::Ring,
    )
    .unwrap();
    s.lc.install_outbound(0, out).unwrap();
    assert_eq!(
        s.lc.switch_outbound(0, 0x3003),
        Err(LifecycleError::NotReady(0x3003)),
        "not in the slab yet"
    );
    assert_eq!(
        s.lc.switch_outbound(0, 0x4004),
        Err(LifecycleError::NoSuchSa(0x4004))
    );
    s.lc.apply_directly(&mut s.parts, now);
    while s.lc.poll_ack().is_some() {}
    s.lc.switch_outbound(0, 0x3003).unwrap();
    s.lc.apply_directly(&mut s.parts, now);
    let clear = || {
        buf(&ether(
            BOX_IN_MAC,
            LAN_MAC,
            0x0800,
            &ipv4_udp([192, 0, 2, 10], [203, 0, 113, 5], 1, 2, b"x"),
        ))
    };
    let mut m = clear();
    assert_eq!(
        pipeline::inside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Tx(PortRole::Outside)
    );
    let spi = u32::from_be_bytes(m.data()[34..38].try_into().unwrap());
    assert_eq!(spi, 0x3003, "sent on the new SA");
    s.lc.remove_outbound(0, 0x3003).unwrap();
    s.lc.apply_directly(&mut s.parts, now);
    let mut m = clear();
    assert_eq!(
        pipeline::inside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Drop(Why::Dp(DpDrop::NoOutboundSa)),
        "no outbound SA: dropped, never forwarded in clear"
    );
    assert_eq!(s.lc.tunnel(0).unwrap().active_outbound(), None);
    // The SA it switched away from is still a standby and can come back.
    s.lc.switch_outbound(0, SPI_OUT).unwrap();
    s.lc.apply_directly(&mut s.parts, now);
    let mut m = clear();
    assert_eq!(
        pipeline::inside_frame(&mut m, &mut s.ctx(0)),
        Verdict::Tx(PortRole::Outside)
    );
}

#[test]
fn an_spi_is_reserved_before_install_and_duplicates_are_refused() {
    let mut s = site(1, false);
    assert_eq!(
        s.lc.install_inbound(0, box_in(0x7777_0000)).unwrap_err(),
        LifecycleError::NotReserved(0x7777_0000)
    );
    assert!(matches!(
        s.lc.allocate_static_spi(0, SPI_IN),
        Err(LifecycleError::Spi(_))
    ));
    let spi = s.lc.allocate_spi(0).unwrap();
    s.lc.release_spi(0, spi).unwrap();
    assert_eq!(
        s.lc.install_inbound(0, box_in(spi)).unwrap_err(),
        LifecycleError::NotReserved(spi)
    );
    assert_eq!(s.lc.stats().spi_alarms, 0);
}

#[test]
fn a_retargeted_outbound_sa_sends_its_next_packet_to_the_peers_new_port_and_address() {
    let mut s = site(1, true);
    let now = Instant::now();
    let send = |s: &mut Site| {
        let mut m = buf(&ether(
            BOX_IN_MAC,
            LAN_MAC,
            0x0800,
            &ipv4_udp([192, 0, 2, 10], [203, 0, 113, 5], 1, 2, b"x"),
        ));
        let v = pipeline::inside_frame(&mut m, &mut s.ctx(0));
        let d = m.data();
        let dst = std::net::IpAddr::from(<[u8; 4]>::try_from(&d[30..34]).unwrap());
        (v, d[..6].to_vec(), dst, u16::from_be_bytes([d[36], d[37]]))
    };
    let (v, mac, dst, port) = send(&mut s);
    assert_eq!(v, Verdict::Tx(PortRole::Outside));
    assert_eq!(
        (mac, dst, port),
        (PEER_MAC.to_vec(), ip("198.51.100.2"), 4500)
    );
    // The peer's NAT gave it a new port.
    let t =
        s.lc.retarget_outbound(0, SPI_OUT, ip("198.51.100.2"), Some(40_000))
            .unwrap();
    s.lc.apply_directly(&mut s.parts, now);
    let ack = std::iter::from_fn(|| s.lc.poll_ack())
        .find(|a| a.ticket == t)
        .unwrap();
    assert_eq!((ack.op, ack.result.is_ok()), (Op::RetargetOutbound, true));
    let (_, _, dst, port) = send(&mut s);
    assert_eq!((dst, port), (ip("198.51.100.2"), 40_000));
    // And a new address on the link: its MAC is resolved first, then it is used.
    s.lc.retarget_outbound(0, SPI_OUT, ip("198.51.100.9"), Some(40_001))
        .unwrap();
    s.lc.apply_directly(&mut s.parts, now);
    let (v, ..) = send(&mut s);
    assert!(
        matches!(v, Verdict::Drop(_)),
        "{v:?}: next hop not resolved yet"
    );
    let new_mac = [2, 0, 0, 0, 0, 9];
    s.lc.neighbour_learned(PortRole::Outside, ip("198.51.100.9"), MacAddr(new_mac));
    s.lc.apply_directly(&mut s.parts, now);
    let (v, mac, dst, port) = send(&mut s);
    assert_eq!(v, Verdict::Tx(PortRole::Outside));
    assert_eq!(
        (mac, dst, port),
        (new_mac.to_vec(), ip("198.51.100.9"), 40_001)
    );
    assert_eq!(
        s.lc.retarget_outbound(0, 0x7777, ip("198.51.100.9"), None),
        Err(LifecycleError::NoSuchSa(0x7777))
    );
}
