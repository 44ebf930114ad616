//! Decapsulation in the three steps of a burst ([`InboundSa::check`] for every packet, then
//! [`InboundSa::open`], then [`InboundSa::finish`]): what the checks before the cipher let
//! through, the finish refuses when a packet of the same burst was committed since (RFC 4303
//! §3.4.3) or the hard lifetime was reached; the counters show a burst once it is published.

mod common;

use espada_buf::{PacketBuf, VecBuf};
use espada_esp::{
    Backend, Class, DropReason, InboundSa, KeyCache, LifetimeLimits, OutboundSa, Tally, classify,
};

const SPI: u32 = 0x0b0c_0d0e;

fn sas(hard_packets: u64) -> (OutboundSa, InboundSa) {
    let (o, mut i) = common::configs(SPI, false, false, false);
    i.lifetime = LifetimeLimits {
        hard_packets,
        ..LifetimeLimits::UNLIMITED
    };
    let key = common::key(20);
    (
        OutboundSa::new(o, &key, Backend::Ring).unwrap(),
        InboundSa::new(i, &key, Backend::Ring).unwrap(),
    )
}

/// Runs `pkts` through the three steps as a burst does; the result of each packet.
fn burst(sa: &mut InboundSa, pkts: &[Vec<u8>], tally: &mut Tally) -> Vec<Result<u64, DropReason>> {
    let mut keys = KeyCache::new(2);
    let mut bufs: Vec<VecBuf> = pkts.iter().map(|p| VecBuf::new(0, p, 0)).collect();
    let checked: Vec<_> = bufs
        .iter()
        .map(|b| match classify(b.data()) {
            Ok(Class::Esp {
                esp_offset,
                end,
                tos,
                ..
            }) => sa.check(b, esp_offset, end, tos),
            other => panic!("not ESP: {other:?}"),
        })
        .collect();
    let opened: Vec<_> = checked
        .into_iter()
        .zip(bufs.iter_mut())
        .map(|(c, b)| c.and_then(|o| sa.open(&mut keys, b, &o).map(|()| o)))
        .collect();
    opened
        .into_iter()
        .zip(bufs.iter_mut())
        .map(|(o, b)| o.and_then(|o| sa.finish(b, &o, tally)).map(|p| p.seq))
        .collect()
}

fn packets(o: &mut OutboundSa, n: usize) -> Vec<Vec<u8>> {
    let inner = common::inner(false, &[5; 20]);
    (0..n).map(|_| common::encap(o, &inner)).collect()
}

#[test]
fn a_duplicate_in_the_same_burst_passes_the_check_and_is_refused_at_the_commit() {
    let (mut o, mut i) = sas(u64::MAX);
    let p = packets(&mut o, 2);
    let mut tally = Tally::default();
    let r = burst(
        &mut i,
        &[p[0].clone(), p[1].clone(), p[0].clone()],
        &mut tally,
    );
    assert_eq!(r, vec![Ok(1), Ok(2), Err(DropReason::Replayed)]);
    assert_eq!(i.counters().snapshot().drop(DropReason::Replayed), 1);
    assert_eq!(tally.packets, 2);
}

#[test]
fn packets_out_of_order_within_one_burst_are_all_accepted() {
    let (mut o, mut i) = sas(u64::MAX);
    let p = packets(&mut o, 4);
    let mut tally = Tally::default();
    let order = [p[3].clone(), p[0].clone(), p[2].clone(), p[1].clone()];
    assert_eq!(
        burst(&mut i, &order, &mut tally),
        vec![Ok(4), Ok(1), Ok(3), Ok(2)]
    );
    assert_eq!(i.counters().snapshot().total_drops(), 0);
    // A second burst replaying all four: refused by the check already.
    let r = burst(&mut i, &p, &mut Tally::default());
    assert!(r.iter().all(|r| *r == Err(DropReason::Replayed)), "{r:?}");
}

#[test]
fn the_hard_lifetime_reached_inside_a_burst_stops_the_rest_of_it() {
    let (mut o, mut i) = sas(2);
    let p = packets(&mut o, 4);
    let mut tally = Tally::default();
    let r = burst(&mut i, &p, &mut tally);
    assert_eq!(
        r,
        vec![
            Ok(1),
            Ok(2),
            Err(DropReason::LifetimeExpired),
            Err(DropReason::LifetimeExpired)
        ]
    );
    assert_eq!(i.counters().snapshot().drop(DropReason::LifetimeExpired), 2);
    // Not committed: the window's highest is still 2.
    i.publish(&tally);
    assert_eq!(i.counters().snapshot().seq, 2);
}

#[test]
fn counters_show_a_burst_once_it_is_published() {
    let (mut o, mut i) = sas(u64::MAX);
    let p = packets(&mut o, 3);
    let mut tally = Tally::default();
    burst(&mut i, &p, &mut tally);
    let before = i.counters().snapshot();
    assert_eq!((before.packets, before.bytes, before.seq), (0, 0, 0));
    i.publish(&tally);
    let after = i.counters().snapshot();
    let inner = common::inner(false, &[5; 20]).len() as u64;
    assert_eq!((after.packets, after.bytes, after.seq), (3, 3 * inner, 3));
    assert_eq!(after.replay_recent & 0b111, 0b111);
}

#[test]
fn a_forged_packet_fails_the_open_and_leaves_the_window_for_the_real_one() {
    let (mut o, mut i) = sas(u64::MAX);
    let p = packets(&mut o, 1);
    let mut forged = p[0].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let mut tally = Tally::default();
    let r = burst(&mut i, &[forged, p[0].clone()], &mut tally);
    assert_eq!(r, vec![Err(DropReason::AuthFailed), Ok(1)]);
    assert_eq!(i.counters().snapshot().drop(DropReason::AuthFailed), 1);
}
