//! Memory of the route tables for a million routes handed out from address pools (consecutive
//! prefixes), and for routes scattered at random (10 000, checked against the layout's group
//! count; the figure scales linearly). Run with `--nocapture` to see bytes per route.
#![cfg(not(loom))]

mod route_common;

use std::net::{Ipv4Addr, Ipv6Addr};

use espada_lookup::route::{Ipv4Writer, Ipv6Writer, TableStats, V6};
use route_common::{Model, SplitMix, TestFamily};

const MILLION: u32 = 1 << 20;

fn report(what: &str, routes: usize, stats: &TableStats) {
    let group_bytes = stats.groups_in_use * 1024;
    eprintln!(
        "{what}: {routes} routes, {} groups ({:.1} B/route in groups, {:.1} B/route with the \
         first level), shadow {:.1} B/route",
        stats.groups_in_use,
        group_bytes as f64 / routes as f64,
        stats.used_bytes as f64 / routes as f64,
        (stats.groups_in_use * 256) as f64 / routes as f64,
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
        let mut w = Ipv6Writer::new(groups as u32).unwrap();
        for i in 0..MILLION {
            let key = base | u128::from(i) << (128 - len);
            w.insert(Ipv6Addr::from(key), len as u8, i).unwrap();
        }
        let stats = w.stats();
        assert_eq!(stats.groups_in_use, groups, "{what}");
        let probe = base | u128::from(MILLION - 1) << (128 - len) | 1;
        assert_eq!(w.table().lookup(Ipv6Addr::from(probe)), Some(MILLION - 1));
        report(what, MILLION as usize, &stats);
    }
}

#[test]
fn random_v6_prefixes_cost_a_group_per_level_below_the_shared_ones() {
    const ROUTES: usize = 10_000;
    for len in [48u32, 64] {
        let mut rng = SplitMix(u64::from(len));
        let mut model = Model::new(128);
        let keys: Vec<u128> = (0..ROUTES)
            .map(|_| {
                // Global unicast, 2000::/3.
                let key = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3;
                route_common::mask(key | 1 << 125, len, 128)
            })
            .collect();
        for (i, &key) in keys.iter().enumerate() {
            model.insert(key, len, i as u32);
        }
        let groups = model.groups(V6::TOP, V6::STEP);
        let mut w = Ipv6Writer::new(groups as u32).unwrap();
        for (i, &key) in keys.iter().enumerate() {
            w.insert(Ipv6Addr::from(key), len as u8, i as u32).unwrap();
        }
        let stats = w.stats();
        assert_eq!(stats.groups_in_use, groups);
        // Below the shared upper levels every random route has its own chain of groups.
        let own = (len as usize - 24) / 8;
        assert!(groups > ROUTES * own, "{groups} groups for {ROUTES} /{len}");
        assert_eq!(w.table().lookup(Ipv6Addr::from(keys[9] | 1)), Some(9));
        report(&format!("v6 random /{len}"), ROUTES, &stats);
    }
}
