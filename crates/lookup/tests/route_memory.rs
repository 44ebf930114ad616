//! Memory of the route tables for a million routes handed out from address pools (consecutive
//! prefixes) and for a million IPv6 routes scattered at random, each checked against the shape
//! the layout implies. Run with `--nocapture` to see bytes per route.
#![cfg(not(loom))]

mod route_common;

use std::net::{Ipv4Addr, Ipv6Addr};

use std::collections::HashSet;

use espada_lookup::route::{Ipv4Writer, Ipv6Writer, TableStats, V6};
use route_common::{Model, SplitMix, TestFamily};

const MILLION: u32 = 1 << 20;

/// Spare tail records for the ones retired while the table is built.
const SLACK: u32 = 4096;

/// No reader runs: every retired slot can be reclaimed at once (as a control thread does once
/// the workers have passed a quiescent point).
fn reclaim_now_and_then(w: &mut Ipv6Writer, i: usize) {
    if i.is_multiple_of(1024) {
        let next = w.epoch() + 1;
        w.set_epoch(next);
        w.reclaim(next);
    }
}

fn report(what: &str, routes: usize, stats: &TableStats) {
    let per = |bytes: usize| bytes as f64 / routes as f64;
    eprintln!(
        "{what}: {routes} routes, {} groups, {} tails: {:.1} B/route in the tables readers \
         share (level 0 included), {:.1} B/route in the writer's arrays",
        stats.groups_in_use,
        stats.tails_in_use,
        per(stats.used_bytes),
        per(stats.shadow_bytes - (stats.groups_capacity - stats.groups_in_use) * 260),
    );
}

#[test]
fn million_v4_host_routes_from_a_pool_use_one_group_per_slash24() {
    // 100.64.0.0/10 holds 2²² addresses; hand out the first 2²⁰ as /32s.
    let mut w = Ipv4Writer::new(4096).unwrap();
    for i in 0..MILLION {
        w.insert(Ipv4Addr::from(0x6440_0000 + i), 32, i).unwrap();
    }
    let stats = w.stats();
    assert_eq!(stats.groups_in_use, 4096);
    assert_eq!(
        w.table().lookup(Ipv4Addr::from(0x6440_0000 + 77_777)),
        Some(77_777)
    );
    report("v4 /32 pool", MILLION as usize, &stats);
}

#[test]
fn million_v6_prefixes_from_a_pool_share_their_groups() {
    // 2^20 /48s under 2001:d00::/28 and 2^20 /64s under 2001:db8:10::/44.
    let cases = [
        ("v6 /48 pool", 0x2001_0d00u128 << 96, 48, 1 + 1 + 16 + 4096),
        (
            "v6 /64 pool",
            0x2001_0db8_0010u128 << 80,
            64,
            1 + 1 + 1 + 1 + 16 + 4096,
        ),
    ];
    for (what, base, len, groups) in cases {
        // While the table fills, a route alone in a region is a tail until its neighbour comes.
        let mut w = Ipv6Writer::new(groups as u32, SLACK).unwrap();
        for i in 0..MILLION {
            let key = base | u128::from(i) << (128 - len);
            w.insert(Ipv6Addr::from(key), len as u8, i).unwrap();
            reclaim_now_and_then(&mut w, i as usize);
        }
        let stats = w.stats();
        assert_eq!(stats.groups_in_use, groups, "{what}");
        let probe = base | u128::from(MILLION - 1) << (128 - len) | 1;
        assert_eq!(w.table().lookup(Ipv6Addr::from(probe)), Some(MILLION - 1));
        report(what, MILLION as usize, &stats);
    }
}

#[test]
fn million_scattered_v6_prefixes_cost_a_tail_each_and_groups_where_they_crowd() {
    for len in [48u32, 64] {
        let mut rng = SplitMix(u64::from(len));
        let mut seen = HashSet::new();
        let keys: Vec<u128> = (0..MILLION)
            .map(|_| {
                // Global unicast, 2000::/3.
                let key = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3;
                route_common::mask(key | 1 << 125, len, 128)
            })
            .filter(|&k| seen.insert(k))
            .collect();
        let model = Model {
            width: 128,
            routes: keys
                .iter()
                .enumerate()
                .map(|(i, &k)| (k, len, i as u32))
                .collect(),
        };
        let (groups, tails) = model.shape(V6::TOP, V6::STEP, true);
        let mut w = Ipv6Writer::new(groups as u32, tails as u32 + SLACK).unwrap();
        for (i, &key) in keys.iter().enumerate() {
            w.insert(Ipv6Addr::from(key), len as u8, i as u32).unwrap();
            reclaim_now_and_then(&mut w, i);
        }
        let stats = w.stats();
        assert_eq!((stats.groups_in_use, stats.tails_in_use), (groups, tails));
        let t = w.table();
        for i in (0..keys.len()).step_by(997) {
            assert_eq!(t.lookup(Ipv6Addr::from(keys[i] | 1)), Some(i as u32));
            assert_eq!(
                model.lookup(keys[i] ^ 1 << (128 - len)),
                t.lookup(Ipv6Addr::from(keys[i] ^ 1 << (128 - len)))
            );
        }
        // Every route has a tail or shares a group; a group per crowded entry only.
        assert!(tails + groups * 256 >= keys.len());
        assert!(
            stats.used_bytes < keys.len() * 320,
            "{} bytes",
            stats.used_bytes
        );
        report(&format!("v6 scattered /{len}"), keys.len(), &stats);
    }
}
