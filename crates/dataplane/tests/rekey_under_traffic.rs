//! Issue 13's proof on real DPDK (EAL, ring-backed ports, two launched workers, handoff rings):
//! 10,000 tunnels carry traffic both ways while every one of them is rekeyed three times
//! through the lifecycle API in make-before-break order — allocate SPI, install inbound, wait
//! for the ack (only then does the simulated peer send on the new SPI), install outbound,
//! switch, retire the old inbound after a grace period, remove the old outbound. The RX queue
//! a tunnel's packets arrive on belongs to its SAs' owner for half the tunnels and to the other
//! worker for the other half (handoff both ways). The workers run with the lookahead always
//! (`Lookahead::Always`), so the outside port's burst path (`burst::outside`, every SA swap
//! landing between its bursts) and the inside port's lookahead chain run throughout.
//!
//! Asserted: no packet dropped for any reason and no unknown-SPI sample during the run; every
//! packet delivered byte-exact, in order per tunnel, in both directions; every retired SA
//! taken back from its worker and freed on this thread; afterwards a late packet on an old
//! SPI is classified as a tombstone; every table version reclaimed; every mbuf back in the pool.

mod common;

use espada_wire::MacAddr;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::workers::{RingPorts, TwoWorkers};
use common::{BOX_IN_MAC, BOX_OUT_MAC, LAN_MAC, PEER_MAC, ether, forwarded, ipv4_udp};
use dpdk::Burst;
use espada_buf::{PacketBuf, VecBuf};
use espada_dataplane::PortRole;
use espada_dataplane::depth::Lookahead;
use espada_dataplane::drops::{DpDrop, Why};
use espada_dataplane::lifecycle::{Lifecycle, Op, Sizes, Ticket, TunnelSpec};
use espada_dataplane::slab::Policy;
use espada_dataplane::stats::Counter;
use espada_dataplane::tables::Iface;
use espada_esp::{Backend, Direction, InboundSa, KeyCache, OutboundSa, SaConfig};

const TUNNELS: u32 = 10_000;
const REKEYS: u32 = 3;
const PACKETS_PER_TUNNEL: u32 = 16;
/// Packets in flight per direction: below every ring's size, so any loss would be a bug.
const WINDOW: u32 = 768;
const GRACE: Duration = Duration::from_millis(300);
/// Long enough that every retired SPI is still a tombstone when the test checks it.
const LINGER: Duration = Duration::from_secs(600);

fn box_out() -> IpAddr {
    IpAddr::from([198, 51, 100, 1])
}
fn peer_ip(t: u32) -> IpAddr {
    IpAddr::from([198, 19, (t >> 8) as u8, t as u8])
}
fn remote_host(t: u32) -> [u8; 4] {
    [198, 18, (t >> 8) as u8, t as u8]
}
const LAN_HOST: [u8; 4] = [192, 0, 2, 10];

/// The RX queue a tunnel's packets arrive on; its owner is `t % 2`.
fn rx_queue(t: u32) -> usize {
    ((t / 2) % 2) as usize
}

fn key(t: u32, generation: u32, inbound: bool) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..4].copy_from_slice(&t.to_be_bytes());
    k[4..8].copy_from_slice(&generation.to_be_bytes());
    k[8] = u8::from(inbound);
    k[19] = 0x5a;
    k
}

fn sa_cfg(spi: u32, dir: Direction, local: IpAddr, remote: IpAddr) -> SaConfig {
    let mut c = SaConfig::new(spi, dir, local, remote);
    c.esn = false;
    c.replay_window = 1024;
    c
}

/// Our outbound SPI of generation `g` (the peer's choice in real life).
fn out_spi(t: u32, g: u32) -> u32 {
    0x1000_0000 + g * TUNNELS + t
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Idle,
    InstallingIn { spi: u32 },
    InstallingOut,
    Switching,
}

/// The simulated peer and the test's view of one tunnel.
struct Tun {
    /// The peer seals with this (towards our current inbound SPI).
    seal: OutboundSa,
    /// The peer's seal for our new inbound SPI, used once the install is acknowledged.
    next_seal: Option<OutboundSa>,
    /// The seal of the last retired SPI (for the tombstone check at the end).
    retired_seal: Option<OutboundSa>,
    /// The peer opens our outbound ESP with these, by SPI.
    open: HashMap<u32, InboundSa>,
    our_in: u32,
    /// The inbound SPI being replaced, retired once the switch is acknowledged.
    old_in: u32,
    our_out: u32,
    generation: u32,
    step: Step,
    sent_in: u32,
    sent_out: u32,
    got_in: u32,
    got_out: u32,
}

fn inner_out(t: u32, n: u32) -> Vec<u8> {
    let mut p = t.to_be_bytes().to_vec();
    p.extend_from_slice(&n.to_be_bytes());
    p.resize(64, (n % 251) as u8);
    ipv4_udp(LAN_HOST, remote_host(t), 1, 2, &p)
}

fn inner_in(t: u32, n: u32) -> Vec<u8> {
    let mut p = t.to_be_bytes().to_vec();
    p.extend_from_slice(&n.to_be_bytes());
    p.resize(80, (n % 241) as u8);
    ipv4_udp(remote_host(t), LAN_HOST, 2, 1, &p)
}

fn ports() -> [Iface; 2] {
    [
        Iface {
            mac: MacAddr(BOX_OUT_MAC),
            ipv4: Some("198.51.100.1/24".parse().unwrap()),
            gateway4: Some("198.51.100.254".parse().unwrap()),
            ..Default::default()
        },
        Iface {
            mac: MacAddr(BOX_IN_MAC),
            ipv4: Some("192.0.2.1/24".parse().unwrap()),
            ..Default::default()
        },
    ]
}

#[test]
fn ten_thousand_tunnels_rekeyed_three_times_under_traffic_lose_nothing() {
    // Both ports: two RX queues (worker w polls queue w), a TX queue per worker plus control.
    let RingPorts {
        eal,
        pool,
        mut out_ends,
        mut in_ends,
        out_port,
        in_port,
    } = RingPorts::start("rk", 512, 8191, 64, 2048);

    // Room for every tombstone of the run (they keep their slots for LINGER).
    let sizes = Sizes {
        slots_per_worker: 1 << 15,
        ..Sizes::for_tunnels(2, TUNNELS)
    };
    let (mut lc, parts) = Lifecycle::with_seed(sizes, ports(), 0x5eed).unwrap();
    let policy = |t: u32| Policy {
        local_ts: vec!["192.0.2.0/24".parse().unwrap()],
        remote_ts: vec![
            format!("{}/32", Ipv4Addr::from(remote_host(t)))
                .parse()
                .unwrap(),
        ],
    };
    let t0 = Instant::now();
    // The peer's key schedules (the test thread plays the peer of every tunnel).
    let mut peer_keys = KeyCache::new(espada_esp::keys::DEFAULT_CACHE_LINES);
    let mut tuns: Vec<Tun> = Vec::with_capacity(TUNNELS as usize);
    for t in 0..TUNNELS {
        let id = lc
            .add_tunnel(TunnelSpec {
                name: format!("t{t}"),
                peer: peer_ip(t),
                local: box_out(),
                policy: policy(t),
                owner: Some((t % 2) as u16),
            })
            .unwrap();
        assert_eq!(id, t);
        let spi_in = lc.allocate_spi(t).unwrap();
        let inb = InboundSa::new(
            sa_cfg(spi_in, Direction::Inbound, box_out(), peer_ip(t)),
            &key(t, 0, true),
            Backend::Ring,
        )
        .unwrap();
        lc.install_inbound(t, inb).unwrap();
        let so = out_spi(t, 0);
        let outb = OutboundSa::new(
            sa_cfg(so, Direction::Outbound, box_out(), peer_ip(t)),
            &key(t, 0, false),
            Backend::Ring,
        )
        .unwrap();
        lc.install_outbound(t, outb).unwrap();
        let seal = OutboundSa::new(
            sa_cfg(spi_in, Direction::Outbound, peer_ip(t), box_out()),
            &key(t, 0, true),
            Backend::Ring,
        )
        .unwrap();
        let open = InboundSa::new(
            sa_cfg(so, Direction::Inbound, peer_ip(t), box_out()),
            &key(t, 0, false),
            Backend::Ring,
        )
        .unwrap();
        tuns.push(Tun {
            seal,
            next_seal: None,
            retired_seal: None,
            open: HashMap::from([(so, open)]),
            our_in: spi_in,
            old_in: 0,
            our_out: so,
            generation: 0,
            step: Step::Idle,
            sent_in: 0,
            sent_out: 0,
            got_in: 0,
            got_out: 0,
        });
    }
    lc.neighbour_learned(
        PortRole::Outside,
        "198.51.100.254".parse().unwrap(),
        MacAddr(PEER_MAC),
    );
    lc.neighbour_learned(PortRole::Inside, IpAddr::from(LAN_HOST), MacAddr(LAN_MAC));
    let mut parts = parts;
    lc.apply_directly(&mut parts, Instant::now());
    for t in 0..TUNNELS {
        lc.switch_outbound(t, out_spi(t, 0)).unwrap();
    }
    lc.apply_directly(&mut parts, Instant::now());
    let mut acks = 0;
    while let Some(a) = lc.poll_ack() {
        a.result.unwrap();
        acks += 1;
    }
    assert_eq!(
        acks,
        3 * TUNNELS,
        "every initial install and switch acknowledged"
    );
    eprintln!("set-up of {TUNNELS} tunnels: {:?}", t0.elapsed());

    // Workers.
    let mut workers = TwoWorkers::launch(
        &eal,
        "k",
        1024,
        parts,
        (&out_port, &in_port),
        Lookahead::Always,
    );
    let stats = workers.stats.clone();

    // The run: traffic over every tunnel in a scattered order, rekeys as traffic passes
    // thresholds, acknowledgements advancing each tunnel's rekey.
    let total = TUNNELS * PACKETS_PER_TUNNEL;
    let order = |i: u32| (u64::from(i) * 7919 % u64::from(TUNNELS)) as u32;
    let (mut sent, mut got_in, mut got_out) = (0u32, 0u32, 0u32);
    let mut tickets: HashMap<Ticket, u32> = HashMap::new();
    let (mut rekeys, mut retired, mut removed) = (0u32, 0u32, 0u32);
    let mut b: Burst = Burst::new();
    let mut last_progress = Instant::now();
    let threshold = |k: u32| (k + 1) * PACKETS_PER_TUNNEL / (REKEYS + 1);
    while got_in < total
        || got_out < total
        || rekeys < REKEYS * TUNNELS
        || retired < rekeys
        || removed < rekeys
    {
        assert!(
            last_progress.elapsed() < Duration::from_secs(60),
            "stalled: sent {sent} in {got_in} out {got_out} rekeys {rekeys} retired {retired} \
             removed {removed} {:?}",
            lc.stats()
        );
        // Inject up to a burst each way.
        for _ in 0..32 {
            if sent >= total || sent - got_in >= WINDOW || sent - got_out >= WINDOW {
                break;
            }
            let t = order(sent % TUNNELS);
            let tun = &mut tuns[t as usize];
            let mut esp = VecBuf::new(128, &inner_in(t, tun.sent_in), 64);
            tun.seal.encap(&mut peer_keys, &mut esp).unwrap();
            tun.sent_in += 1;
            let frames = [
                (
                    &mut out_ends,
                    ether(BOX_OUT_MAC, PEER_MAC, 0x0800, esp.data()),
                ),
                (
                    &mut in_ends,
                    ether(BOX_IN_MAC, LAN_MAC, 0x0800, &inner_out(t, tun.sent_out)),
                ),
            ];
            tun.sent_out += 1;
            for (ends, frame) in frames {
                let mut m = pool.alloc().expect("pool");
                assert!(m.set_data(&frame));
                b.push(m).unwrap();
                while !b.is_empty() {
                    ends.rx_inject[rx_queue(t)].enqueue_burst(&mut b);
                }
            }
            sent += 1;
            // Rekeys start as a tunnel's traffic passes each threshold.
            if tun.step == Step::Idle
                && tun.generation < REKEYS
                && tun.sent_in >= threshold(tun.generation)
            {
                let g = tun.generation + 1;
                let spi = lc.allocate_spi(t).unwrap();
                let sa = InboundSa::new(
                    sa_cfg(spi, Direction::Inbound, box_out(), peer_ip(t)),
                    &key(t, g, true),
                    Backend::Ring,
                )
                .unwrap();
                tickets.insert(lc.install_inbound(t, sa).unwrap(), t);
                tun.next_seal = Some(
                    OutboundSa::new(
                        sa_cfg(spi, Direction::Outbound, peer_ip(t), box_out()),
                        &key(t, g, true),
                        Backend::Ring,
                    )
                    .unwrap(),
                );
                tun.step = Step::InstallingIn { spi };
            }
        }
        // Collect what left: ESP on the outside port, cleartext on the inside port.
        for q in 0..3 {
            out_ends.tx_collect[q].dequeue_burst(&mut b);
            for m in b.drain() {
                let mut outer = VecBuf::new(0, &m.data()[14..], 0);
                let spi = u32::from_be_bytes(m.data()[34..38].try_into().unwrap());
                let t = spi.wrapping_sub(0x1000_0000) % TUNNELS;
                let tun = &mut tuns[t as usize];
                let sa = tun.open.get_mut(&spi).expect("an SPI the peer knows");
                sa.decap(&mut peer_keys, &mut outer)
                    .expect("the peer opens every packet");
                assert_eq!(
                    outer.data(),
                    &forwarded(&inner_out(t, tun.got_out))[..],
                    "tunnel {t} outbound order"
                );
                tun.got_out += 1;
                got_out += 1;
                last_progress = Instant::now();
            }
            in_ends.tx_collect[q].dequeue_burst(&mut b);
            for m in b.drain() {
                let d = &m.data()[14..];
                let t = u32::from_be_bytes(d[28..32].try_into().unwrap());
                let tun = &mut tuns[t as usize];
                assert_eq!(
                    d,
                    &forwarded(&inner_in(t, tun.got_in))[..],
                    "tunnel {t} inbound order"
                );
                tun.got_in += 1;
                got_in += 1;
                last_progress = Instant::now();
            }
        }
        // Control: advance the lifecycle and each tunnel's rekey.
        let now = Instant::now();
        lc.poll(now);
        while let Some(a) = lc.poll_ack() {
            a.result.unwrap_or_else(|e| panic!("{a:?}: {e}"));
            match a.op {
                Op::RetireInbound => {
                    retired += 1;
                    continue;
                }
                Op::RemoveOutbound => {
                    removed += 1;
                    continue;
                }
                _ => {}
            }
            let Some(t) = tickets.remove(&a.ticket) else {
                continue;
            };
            let tun = &mut tuns[t as usize];
            let g = tun.generation + 1;
            match (tun.step, a.op) {
                (Step::InstallingIn { spi }, Op::InstallInbound) => {
                    // Every worker decrypts the new SPI: the peer may send on it now.
                    let old = std::mem::replace(&mut tun.seal, tun.next_seal.take().unwrap());
                    tun.retired_seal = Some(old);
                    tun.old_in = std::mem::replace(&mut tun.our_in, spi);
                    let so = out_spi(t, g);
                    tun.open.insert(
                        so,
                        InboundSa::new(
                            sa_cfg(so, Direction::Inbound, peer_ip(t), box_out()),
                            &key(t, g, false),
                            Backend::Ring,
                        )
                        .unwrap(),
                    );
                    let sa = OutboundSa::new(
                        sa_cfg(so, Direction::Outbound, box_out(), peer_ip(t)),
                        &key(t, g, false),
                        Backend::Ring,
                    )
                    .unwrap();
                    tickets.insert(lc.install_outbound(t, sa).unwrap(), t);
                    tun.step = Step::InstallingOut;
                }
                (Step::InstallingOut, Op::InstallOutbound) => {
                    tickets.insert(lc.switch_outbound(t, out_spi(t, g)).unwrap(), t);
                    tun.step = Step::Switching;
                }
                (Step::Switching, Op::SwitchOutbound) => {
                    let old_out = std::mem::replace(&mut tun.our_out, out_spi(t, g));
                    lc.retire_inbound(t, tun.old_in, now, GRACE, LINGER)
                        .unwrap();
                    lc.remove_outbound(t, old_out).unwrap();
                    tun.generation = g;
                    tun.step = Step::Idle;
                    rekeys += 1;
                    last_progress = Instant::now();
                }
                other => panic!("tunnel {t}: unexpected {other:?}"),
            }
        }
    }
    let elapsed = t0.elapsed();
    eprintln!(
        "{total} packets each way over {TUNNELS} tunnels, {rekeys} rekeys: {elapsed:?}, {:?}",
        lc.stats()
    );

    let drops: u64 = stats.iter().map(|s| s.total_drops()).sum();
    assert_eq!(
        drops, 0,
        "no packet dropped for any reason during the rekeys"
    );
    for ev in &mut workers.events {
        assert!(
            ev.pop().is_err(),
            "no unknown-SPI sample, no neighbour miss"
        );
    }
    let (w0, w1) = (&stats[0], &stats[1]);
    assert!(
        w0.get(Counter::HandoffIn) > 0 && w1.get(Counter::HandoffIn) > 0,
        "both workers received handed-off packets"
    );
    assert!(
        w0.get(Counter::LookaheadBursts) > 0 && w1.get(Counter::LookaheadBursts) > 0,
        "both workers ran their bursts with the lookahead"
    );
    assert_eq!(
        w0.get(Counter::EspDecap) + w1.get(Counter::EspDecap),
        u64::from(total)
    );
    assert_eq!(
        w0.get(Counter::EspEncap) + w1.get(Counter::EspEncap),
        u64::from(total)
    );

    // Late packets on retired SPIs are tombstones, on both workers' SAs.
    let late = 1000;
    for t in 0..late {
        let tun = &mut tuns[t as usize];
        let seal = tun.retired_seal.as_mut().unwrap();
        let mut esp = VecBuf::new(128, &inner_in(t, 0), 64);
        seal.encap(&mut peer_keys, &mut esp).unwrap();
        let mut m = pool.alloc().unwrap();
        assert!(m.set_data(&ether(BOX_OUT_MAC, PEER_MAC, 0x0800, esp.data())));
        b.push(m).unwrap();
        while !b.is_empty() {
            out_ends.rx_inject[rx_queue(t)].enqueue_burst(&mut b);
        }
    }
    let tomb = Why::Dp(DpDrop::UnknownSpiTombstone);
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.iter().map(|s| s.drops(tomb)).sum::<u64>() < u64::from(late) {
        assert!(Instant::now() < deadline, "late packets not classified");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        stats.iter().map(|s| s.total_drops()).sum::<u64>(),
        u64::from(late),
        "every late packet is a tombstone drop, nothing else"
    );

    workers.stop();
    lc.poll(Instant::now());
    let st = lc.stats();
    assert_eq!(
        st.sas_freed,
        u64::from(2 * REKEYS * TUNNELS),
        "every replaced SA came back and was freed on the control thread"
    );
    assert_eq!(
        (st.in_flight, st.backlog, st.refused, st.spi_alarms),
        (0, 0, 0, 0)
    );
    assert_eq!(
        lc.publisher().pending(),
        0,
        "every table version reclaimed once the workers are gone"
    );
    assert!(
        lc.publisher().generation() > u64::from(REKEYS),
        "versions were published during the run"
    );
    assert_eq!(pool.in_use(), 0, "every mbuf back in the pool");
}
