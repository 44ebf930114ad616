//! A million random IPv4 routes (/16 to /32) in one table, checked on a sample of lookups
//! against an independent model (one hash map per length, probed longest first), then half of
//! them removed and checked again. Also checks the group count: one tbl8 group per distinct /24
//! holding a route longer than /24.
#![cfg(not(loom))]

mod route_common;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Instant;

use espada_lookup::route::Ipv4Writer;
use route_common::SplitMix;

const ROUTES: usize = 1_000_000;
const SAMPLES: usize = 200_000;

/// The reference: one map per length.
struct PerLength(Vec<HashMap<u32, u32>>);

fn mask(a: u32, len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - len))
    }
}

impl PerLength {
    fn lookup(&self, a: u32) -> Option<u32> {
        (0..=32u32)
            .rev()
            .find_map(|len| self.0[len as usize].get(&mask(a, len)).copied())
    }

    fn groups(&self) -> usize {
        let mut slash24 = HashSet::new();
        for len in 25..=32 {
            slash24.extend(self.0[len].keys().map(|&k| k >> 8));
        }
        slash24.len()
    }
}

fn check(writer: &Ipv4Writer, model: &PerLength, routes: &[(u32, u32)], rng: &mut SplitMix) {
    let table = writer.table();
    let mut hits = 0;
    for n in 0..SAMPLES {
        let a = if n % 2 == 0 {
            // An address inside a random route (possibly a removed one).
            let (key, len) = routes[rng.below(routes.len() as u64) as usize];
            key | (rng.next() as u32 & !(u32::MAX.checked_shl(32 - len).unwrap_or(0)))
        } else {
            rng.next() as u32
        };
        let want = model.lookup(a);
        hits += usize::from(want.is_some());
        assert_eq!(
            table.lookup(Ipv4Addr::from(a)),
            want,
            "{}",
            Ipv4Addr::from(a)
        );
    }
    assert!(hits > SAMPLES / 4, "the sample hits routes: {hits}");
    assert_eq!(writer.stats().groups_in_use, model.groups());
    assert_eq!(
        writer.len(),
        model.0.iter().map(HashMap::len).sum::<usize>()
    );
}

#[test]
fn million_random_routes_match_the_model() {
    let mut rng = SplitMix(0x1_000_000);
    let routes: Vec<(u32, u32)> = (0..ROUTES)
        .map(|_| {
            let len = 16 + rng.below(17) as u32;
            (mask(rng.next() as u32, len), len)
        })
        .collect();
    let mut model = PerLength((0..=32).map(|_| HashMap::new()).collect());
    for (value, &(key, len)) in routes.iter().enumerate() {
        model.0[len as usize].insert(key, value as u32);
    }
    let needed = model.groups();
    let mut writer = Ipv4Writer::new(needed as u32 + 1024).unwrap();
    let started = Instant::now();
    for (value, &(key, len)) in routes.iter().enumerate() {
        writer
            .insert(Ipv4Addr::from(key), len as u8, value as u32)
            .unwrap();
    }
    let inserted = started.elapsed();
    check(&writer, &model, &routes, &mut rng);
    let stats = writer.stats();
    eprintln!(
        "{} routes ({} distinct) in {inserted:?}: {} tbl8 groups, table {} MiB, shadow {} MiB",
        ROUTES,
        writer.len(),
        stats.groups_in_use,
        stats.table_bytes >> 20,
        stats.shadow_bytes >> 20
    );

    // Remove every other route (covering ones included), then check again.
    for &(key, len) in routes.iter().step_by(2) {
        let removed = writer.remove(Ipv4Addr::from(key), len as u8).unwrap();
        assert_eq!(removed, model.0[len as usize].remove(&key));
    }
    check(&writer, &model, &routes, &mut rng);
    assert!(writer.stats().groups_retired > 0);
    let retired = writer.stats().groups_retired;
    writer.set_epoch(1);
    assert_eq!(writer.reclaim(1), retired);
}
