//! The outside port's burst path ([`burst::outside`]) against the per-packet path
//! ([`pipeline::outside_frame`]) on two identical sites: for any mixture of frames (good ESP,
//! duplicates within and across bursts, forgeries, unknown, retired and reserved SPIs,
//! keepalives, IKE, ARP, garbage, truncations, TTL 1, selector violations, fragments, an SA
//! that reaches its hard lifetime), on the SA's owner and on another worker, every frame gets the same verdict and the same bytes, and the sites end
//! with the same worker counters, SA counters, events and notices. The one difference allowed
//! is the documented one ([`burst`]): a forgery, and with a hard lifetime any packet, may be
//! dropped as `auth_failed`, `replayed` or `lifetime_expired` on one path and as another of
//! the three on the other (compared as one reason, in the verdicts and the counters).

mod common;

use common::*;
use espada_buf::{PacketBuf, VecBuf};
use espada_dataplane::burst;
use espada_dataplane::drops::Why;
use espada_dataplane::pipeline::{self, Verdict};
use espada_dataplane::stats::Counter;
use espada_dataplane::{PortRole, owner_of_spi};
use espada_esp::{DropReason, LifetimeLimits};
use espada_lookup::sad::Lookup;
use proptest::prelude::*;

fn remote_to_lan(payload: &[u8]) -> Vec<u8> {
    ipv4_udp([203, 0, 113, 5], [192, 0, 2, 10], 2000, 1000, payload)
}

const PEER: [u8; 4] = [198, 51, 100, 2];

/// One frame of a test burst.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Good(u8),
    /// A copy of an earlier good frame (the `n`th from the end, if there is one).
    Duplicate(usize),
    Forged,
    UnknownKnownPeer,
    UnknownSource,
    Tombstone,
    Reserved,
    Keepalive,
    Ike,
    Arp,
    Garbage(u8),
    Truncated(u8),
    Ttl1,
    OutsideSelectors,
    /// A good ESP packet in two IPv4 fragments, both in the burst.
    Fragmented,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => any::<u8>().prop_map(Kind::Good),
        3 => (0usize..6).prop_map(Kind::Duplicate),
        1 => Just(Kind::Forged),
        1 => Just(Kind::UnknownKnownPeer),
        1 => Just(Kind::UnknownSource),
        1 => Just(Kind::Tombstone),
        1 => Just(Kind::Reserved),
        1 => Just(Kind::Keepalive),
        1 => Just(Kind::Ike),
        1 => Just(Kind::Arp),
        1 => any::<u8>().prop_map(Kind::Garbage),
        1 => any::<u8>().prop_map(Kind::Truncated),
        1 => Just(Kind::Ttl1),
        1 => Just(Kind::OutsideSelectors),
        1 => Just(Kind::Fragmented),
    ]
}

/// The frames of `kinds`, sealed by `s`'s peer (the other site's box has the same SAs).
fn frames(s: &mut Site, kinds: &[Kind], goods: &mut Vec<VecBuf>) -> (Vec<VecBuf>, Vec<bool>) {
    let mut out = Vec::new();
    let mut forged = Vec::new();
    for &k in kinds {
        forged.resize(out.len(), false);
        match k {
            Kind::Good(b) => {
                let m = from_peer(s, &remote_to_lan(&[b; 24]));
                goods.push(m.clone());
                out.push(m);
            }
            Kind::Duplicate(n) => match goods.len().checked_sub(n + 1) {
                Some(i) => out.push(goods[i].clone()),
                None => out.push(from_peer(s, &remote_to_lan(b"first"))),
            },
            Kind::Forged => {
                let mut m = from_peer(s, &remote_to_lan(b"forged"));
                let n = m.len();
                m.data_mut()[n - 1] ^= 0x80;
                forged.push(true);
                out.push(m);
            }
            Kind::UnknownKnownPeer => out.push(buf(&esp_frame(PEER, 0x7777_0001).0)),
            Kind::UnknownSource => out.push(buf(&esp_frame([198, 51, 100, 99], 0x7777_0002).0)),
            Kind::Tombstone => out.push(buf(&esp_frame(PEER, SPI_TOMBSTONE).0)),
            Kind::Reserved => out.push(buf(&esp_frame(PEER, 7).0)),
            Kind::Keepalive => {
                let ka = ipv4_udp(PEER, [198, 51, 100, 1], 4500, 4500, &[0xff]);
                out.push(buf(&ether(BOX_OUT_MAC, PEER_MAC, 0x0800, &ka)));
            }
            Kind::Ike => {
                let ike = ipv4_udp(PEER, [198, 51, 100, 1], 500, 500, &[0x11; 40]);
                out.push(buf(&ether(BOX_OUT_MAC, PEER_MAC, 0x0800, &ike)));
            }
            Kind::Arp => out.push(buf(&ether([0xff; 6], PEER_MAC, 0x0806, &[0; 28]))),
            Kind::Garbage(b) => {
                let junk: Vec<u8> = (0..usize::from(b % 90)).map(|i| b ^ i as u8).collect();
                out.push(buf(&junk));
            }
            Kind::Truncated(b) => {
                let m = from_peer(s, &remote_to_lan(b"cut short"));
                let keep = usize::from(b) % m.len();
                out.push(buf(&m.data()[..keep]));
            }
            Kind::Ttl1 => {
                let mut p = remote_to_lan(b"ttl");
                p[8] = 1;
                fix_csum(&mut p);
                out.push(from_peer(s, &p));
            }
            Kind::OutsideSelectors => {
                let p = ipv4_udp([203, 0, 114, 5], [192, 0, 2, 10], 1, 2, b"not ours");
                out.push(from_peer(s, &p));
            }
            Kind::Fragmented => {
                let m = from_peer(s, &remote_to_lan(&[9; 100]));
                for f in ipv4_fragments(&m.data()[14..], &[48]) {
                    out.push(buf(&ether(BOX_OUT_MAC, PEER_MAC, 0x0800, &f)));
                }
            }
        }
    }
    forged.resize(out.len(), false);
    (out, forged)
}

/// The drop reasons a forgery, or any packet to an SA with a hard lifetime, may get (one of
/// them per path, [`burst`]).
const FORGERY: [DropReason; 3] = [
    DropReason::AuthFailed,
    DropReason::Replayed,
    DropReason::LifetimeExpired,
];

/// Verdicts and resulting bytes of `bufs` through the burst path on worker `me` of `s`.
fn by_burst(s: &mut Site, me: u16, mut bufs: Vec<VecBuf>) -> Vec<(Verdict, Vec<u8>)> {
    let mut v = [None; burst::MAX];
    let mut cx = s.ctx(me);
    burst::outside(&mut bufs, &mut v, &mut cx);
    bufs.iter()
        .zip(v)
        .map(|(b, v)| (v.expect("every frame has a verdict"), b.data().to_vec()))
        .collect()
}

/// The same through the per-packet path.
fn by_packet(s: &mut Site, me: u16, bufs: Vec<VecBuf>) -> Vec<(Verdict, Vec<u8>)> {
    bufs.into_iter()
        .map(|mut b| {
            let v = pipeline::outside_frame(&mut b, &mut s.ctx(me));
            (v, b.data().to_vec())
        })
        .collect()
}

/// What leaves the box of each frame: its verdict, and its bytes unless it is dropped (a
/// duplicate within a burst is decrypted before its commit refuses it; its buffer is freed).
/// A drop of a forgery (`loose`: of any packet), whichever of [`FORGERY`] it is, shows as
/// `auth_failed`.
fn seen(out: Vec<(Verdict, Vec<u8>)>, forged: &[bool], loose: bool) -> Vec<(Verdict, Vec<u8>)> {
    out.into_iter()
        .zip(forged)
        .map(|((v, b), &forged)| match v {
            Verdict::Drop(Why::Esp(r)) if (forged || loose) && FORGERY.contains(&r) => {
                (Verdict::Drop(Why::Esp(DropReason::AuthFailed)), Vec::new())
            }
            Verdict::Drop(_) => (v, Vec::new()),
            _ => (v, b),
        })
        .collect()
}

/// What a site shows when the traffic is over: worker counters and drops, the inbound SA's
/// counters, events and notices.
fn shown(s: &mut Site) -> Vec<String> {
    let forgery = |w: Why| FORGERY.iter().any(|&r| w == Why::Esp(r));
    let mut v: Vec<String> = Counter::ALL
        .iter()
        .map(|&c| format!("{c:?} {}", s.stats.get(c)))
        .chain(
            Why::all()
                .filter(|&w| !forgery(w))
                .map(|w| format!("{} {}", w.name(), s.stats.drops(w))),
        )
        .collect();
    let forgeries: u64 = Why::all()
        .filter(|&w| forgery(w))
        .map(|w| s.stats.drops(w))
        .sum();
    v.push(format!("forgery-class drops {forgeries}"));
    let owner = owner_of_spi(SPI_IN, s.parts.len() as u16);
    if let Lookup::Live { slot, .. } = s.tables().sad.lookup(SPI_IN) {
        let e = s.parts[usize::from(owner)].slab.inbound_ref(slot).unwrap();
        let mut c = e.sa.counters().snapshot();
        let sum: u64 = FORGERY.iter().map(|&r| c.drop(r)).sum();
        for r in FORGERY {
            c.drops[r.index()] = 0;
        }
        v.push(format!("{c:?} forgery-class drops {sum}"));
    }
    v.extend(s.drain_events().iter().map(|e| format!("{e:?}")));
    v.extend(s.drain_notices().iter().map(|n| format!("{n:?}")));
    v
}

fn site_of(workers: u16, udp: bool, hard: Option<u64>) -> Site {
    let limits = LifetimeLimits {
        hard_packets: hard.unwrap_or(u64::MAX),
        soft_packets: hard.map_or(u64::MAX, |h| h / 2),
        ..LifetimeLimits::UNLIMITED
    };
    site_with_lifetime(workers, udp, limits)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_burst_path_does_exactly_what_the_per_packet_path_does(
        bursts in prop::collection::vec(prop::collection::vec(kind(), 1..24), 1..5),
        on_other_worker in any::<bool>(),
        udp in any::<bool>(),
        hard in prop::option::of(4u64..40),
    ) {
        let workers = if on_other_worker { 2 } else { 1 };
        let me = if on_other_worker { 1 - owner_of_spi(SPI_IN, 2) } else { 0 };
        let mut a = site_of(workers, udp, hard);
        let mut b = site_of(workers, udp, hard);
        let mut goods = Vec::new();
        for kinds in &bursts {
            let (bufs, forged) = frames(&mut a, kinds, &mut goods);
            let bufs: Vec<VecBuf> = bufs.into_iter().take(burst::MAX).collect();
            let loose = hard.is_some();
            let want = seen(by_packet(&mut a, me, bufs.clone()), &forged, loose);
            let got = seen(by_burst(&mut b, me, bufs), &forged, loose);
            prop_assert_eq!(got, want);
        }
        prop_assert_eq!(shown(&mut b), shown(&mut a));
    }
}

#[test]
fn one_burst_of_an_sas_packets_out_of_order_with_duplicates_delivers_each_once() {
    let mut s = site(1, false);
    let sealed: Vec<VecBuf> = (0..20u8)
        .map(|i| from_peer(&mut s, &remote_to_lan(&[i; 30])))
        .collect();
    // 19, 17, …, 1, then 0, 2, …, 18 (reversed odd then even positions), then five duplicates.
    let mut order: Vec<usize> = (0..20).rev().filter(|i| i % 2 == 1).collect();
    order.extend((0..20).filter(|i| i % 2 == 0));
    order.extend([3, 0, 19, 10, 3]);
    let bufs: Vec<VecBuf> = order.iter().map(|&i| sealed[i].clone()).collect();
    let got = by_burst(&mut s, 0, bufs);
    let replayed = Verdict::Drop(Why::Esp(DropReason::Replayed));
    let verdicts: Vec<Verdict> = got.iter().map(|(v, _)| *v).collect();
    assert_eq!(&verdicts[..20], &[Verdict::Tx(PortRole::Inside); 20]);
    assert_eq!(&verdicts[20..], &[replayed; 5]);
    for (k, &i) in order[..20].iter().enumerate() {
        let inner = &got[k].1[14..];
        assert_eq!(
            inner,
            forwarded(&remote_to_lan(&[i as u8; 30])),
            "packet {i}"
        );
    }
    let Lookup::Live { slot, .. } = s.tables().sad.lookup(SPI_IN) else {
        panic!("the SA is live");
    };
    let c = s.parts[0]
        .slab
        .inbound_ref(slot)
        .unwrap()
        .sa
        .counters()
        .snapshot();
    assert_eq!(
        (c.packets, c.seq, c.drop(DropReason::Replayed)),
        (20, 20, 5)
    );
    assert_eq!(s.stats.get(Counter::EspDecap), 20);
}
