//! Route tables (criterion). Figures go to docs/performance.md with the command and the CPU;
//! nothing here asserts a speed.
//!
//! - `route_lookup/v4/<n>`: one burst of 32 IPv4 lookups, `n` random routes /16 to /32
//!   installed, each address inside a random installed route (about half end in a tbl8 group).
//! - `route_lookup/v6/<n>`: the same for IPv6 with `n` /64 and /48 routes handed out from two
//!   address pools (consecutive prefixes, as a concentrator assigns them).
//! - `route_lookup/v6_scattered/<n>`: IPv6 with `n` random /48 and /64 under 2000::/3 (most
//!   routes are tail records under crowded first levels; ≈ 230 bytes per route at 1M).
//! - `route_update/<case>/<n>`: the control thread's cost of one route added and removed again
//!   (plus the reclamation of any group it freed), `n` routes installed. Cases: `v4_32` (a host
//!   route in a /24 without a group: a tbl8 group filled, linked, collapsed and retired), `v4_24`
//!   (one tbl24 entry), `v6_64` and `v6_128` (a tail record under a first-level entry of its
//!   own), `v6_64_pair` (two /64s in one /48 there, added and removed: a tail, a split into
//!   six groups, a collapse back into a tail, a removal). Goal: flat in `n`.
//!
//! Run: `cargo bench -p espada-lookup --bench route` (check only: `-- --test`).

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use espada_lookup::route::{Ipv4Writer, Ipv6Writer};

const BURST: usize = 32;
const ADDRESSES: usize = 1 << 16;
const SIZES: [usize; 4] = [1, 1_000, 100_000, 1_000_000];

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn u128(&mut self) -> u128 {
        u128::from(self.next()) << 64 | u128::from(self.next())
    }
}

fn host_mask_v4(len: u32) -> u32 {
    u32::MAX.checked_shr(len).unwrap_or(0)
}

fn host_mask_v6(len: u32) -> u128 {
    u128::MAX.checked_shr(len).unwrap_or(0)
}

/// `n` random IPv4 routes /16 to /32 and a table holding them.
fn v4_table(n: usize, rng: &mut Rng) -> (Ipv4Writer, Vec<(u32, u32)>) {
    let routes: Vec<(u32, u32)> = (0..n)
        .map(|_| {
            let len = 16 + (rng.next() % 17) as u32;
            (rng.next() as u32 & !host_mask_v4(len), len)
        })
        .collect();
    let groups: HashSet<u32> = routes
        .iter()
        .filter(|r| r.1 > 24)
        .map(|r| r.0 >> 8)
        .collect();
    let mut w = Ipv4Writer::new(groups.len() as u32 + 64).unwrap();
    for (i, &(key, len)) in routes.iter().enumerate() {
        w.insert(Ipv4Addr::from(key), len as u8, i as u32).unwrap();
    }
    (w, routes)
}

/// `n` IPv6 routes from two pools: /64s under 2001:db8:10::/44, /48s under 2001:d00::/28.
fn v6_pool_table(n: usize) -> (Ipv6Writer, Vec<(u128, u32)>) {
    let routes: Vec<(u128, u32)> = (0..n as u128)
        .map(|i| {
            if i % 2 == 0 {
                (0x2001_0db8_0010u128 << 80 | (i / 2) << 64, 64)
            } else {
                (0x2001_0d00u128 << 96 | (i / 2) << 80, 48)
            }
        })
        .collect();
    let mut w = Ipv6Writer::new(16_384, 4096).unwrap();
    for (i, &(key, len)) in routes.iter().enumerate() {
        w.insert(Ipv6Addr::from(key), len as u8, i as u32).unwrap();
        reclaim_now_and_then(&mut w, i);
    }
    (w, routes)
}

/// No reader runs while a table is built: reclaim what was retired every 1024 routes.
fn reclaim_now_and_then(w: &mut Ipv6Writer, i: usize) {
    if i.is_multiple_of(1024) {
        let next = w.epoch() + 1;
        w.set_epoch(next);
        w.reclaim(next);
    }
}

/// `n` random /48 and /64 under 2000::/3.
fn v6_scattered_table(n: usize, rng: &mut Rng) -> (Ipv6Writer, Vec<(u128, u32)>) {
    let routes: Vec<(u128, u32)> = (0..n)
        .map(|i| {
            let len = if i % 2 == 0 { 48 } else { 64 };
            ((rng.u128() >> 3 | 1 << 125) & !host_mask_v6(len), len)
        })
        .collect();
    let mut w = Ipv6Writer::new((n / 4 + 8192) as u32, (n + 4096) as u32).unwrap();
    for (i, &(key, len)) in routes.iter().enumerate() {
        w.insert(Ipv6Addr::from(key), len as u8, i as u32).unwrap();
        reclaim_now_and_then(&mut w, i);
    }
    (w, routes)
}

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    group.throughput(Throughput::Elements(BURST as u64));
    let mut rng = Rng(0x100c);
    for n in SIZES {
        let (w, routes) = v4_table(n, &mut rng);
        let table = w.table();
        let addrs: Vec<Ipv4Addr> = (0..ADDRESSES)
            .map(|_| {
                let (key, len) = routes[(rng.next() % n as u64) as usize];
                Ipv4Addr::from(key | (rng.next() as u32 & host_mask_v4(len)))
            })
            .collect();
        let mut at = 0;
        group.bench_with_input(BenchmarkId::new("v4", n), &n, |b, _| {
            b.iter(|| {
                let mut hits = 0u32;
                for a in &addrs[at..at + BURST] {
                    hits += u32::from(table.lookup(black_box(*a)).is_some());
                }
                at = (at + BURST) % ADDRESSES;
                black_box(hits)
            })
        });
    }
    for name in ["v6", "v6_scattered"] {
        for n in SIZES {
            let (w, routes) = if name == "v6" {
                v6_pool_table(n)
            } else {
                v6_scattered_table(n, &mut rng)
            };
            let table = w.table();
            let addrs: Vec<Ipv6Addr> = (0..ADDRESSES)
                .map(|_| {
                    let (key, len) = routes[(rng.next() % n as u64) as usize];
                    Ipv6Addr::from(key | (rng.u128() & host_mask_v6(len)))
                })
                .collect();
            let mut at = 0;
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    let mut hits = 0u32;
                    for a in &addrs[at..at + BURST] {
                        hits += u32::from(table.lookup(black_box(*a)).is_some());
                    }
                    at = (at + BURST) % ADDRESSES;
                    black_box(hits)
                })
            });
        }
    }
    group.finish();
}

fn bench_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_update");
    let mut rng = Rng(0x0bda7e);
    for n in [1, 1_000_000] {
        let (mut w4, _) = v4_table(n, &mut rng);
        // Prefixes in 240.0.0.0/4 that are not routes of the table (so removing them restores
        // it).
        let probes: Vec<u32> = (0..1024)
            .map(|_| 0xf000_0000 | rng.next() as u32 >> 4)
            .filter(|&a| w4.get(Ipv4Addr::from(a), 32).is_none())
            .filter(|&a| w4.get(Ipv4Addr::from(a), 24).is_none())
            .collect();
        for (case, len) in [("v4_32", 32u8), ("v4_24", 24)] {
            let mut i = 0;
            let mut epoch = 0;
            group.bench_with_input(BenchmarkId::new(case, n), &n, |b, _| {
                b.iter(|| {
                    let a = Ipv4Addr::from(probes[i % probes.len()]);
                    i += 1;
                    w4.set_epoch(epoch);
                    w4.insert(a, len, 7).unwrap();
                    w4.remove(a, len).unwrap();
                    epoch += 1;
                    black_box(w4.reclaim(epoch))
                })
            });
        }
        drop(w4);
        let (mut w6, _) = v6_pool_table(n);
        // Prefixes under 3fff::/16, a first-level entry of their own: a lone route there is a
        // tail record; a pair in one /48 splits it into groups down to level 6.
        let probes: Vec<u128> = (0..1024)
            .map(|_| 0x3fff << 112 | rng.u128() >> 16)
            .collect();
        for (case, len, pair) in [
            ("v6_64", 64u8, false),
            ("v6_128", 128, false),
            ("v6_64_pair", 64, true),
        ] {
            let mut i = 0;
            let mut epoch = 0;
            group.bench_with_input(BenchmarkId::new(case, n), &n, |b, _| {
                b.iter(|| {
                    let a = probes[i % probes.len()];
                    i += 1;
                    let both = [Ipv6Addr::from(a), Ipv6Addr::from(a ^ 1 << 64)];
                    let addrs = &both[..1 + usize::from(pair)];
                    w6.set_epoch(epoch);
                    for &a in addrs {
                        w6.insert(a, len, 7).unwrap();
                    }
                    for &a in addrs {
                        w6.remove(a, len).unwrap();
                    }
                    epoch += 1;
                    black_box(w6.reclaim(epoch))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_lookup, bench_update);
criterion_main!(benches);
