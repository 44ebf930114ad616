//! The data plane's per-SA costs at scale (criterion). Figures go to docs/performance.md with the
//! command and the CPU; nothing here asserts a speed.
//!
//! - `inbound_state/<n>`: per packet, what the inbound path does before and after the cipher:
//!   directory lookup of the SPI, the owner's slab slot, the SPI compare, the replay check and a
//!   counter bump — `n` SAs installed through the lifecycle API, SPIs in random order (issue 13
//!   goal: n = 1M ≤ 1.3× n = 1). The cipher itself is measured in crates/esp's benches.
//! - `inbound_open/<n>/<lines>`: `inbound_state` plus what the cipher needs: the SA's key
//!   schedule from a worker key cache of `lines` lines (`keep`: 2n lines, every schedule kept,
//!   the layout of a schedule stored with each SA; `default`: 16,384 lines, rebuilt from the raw
//!   key on a miss) and the AES-128-GCM open of a 64-byte ESP payload.
//! - `control_change/<n>`: the control thread's cost of one SA change with `n` SAs installed:
//!   allocate an SPI, install an inbound SA (slab command, reply, directory, publication,
//!   acknowledgement), then retire it (tombstone, out of the slab, forgotten) — the worker side
//!   run in this thread (issue 13 goal: flat in n).
//! - `installs_with_workers`: SAs installed per second through the lifecycle API while two
//!   threads run the workers' command path (apply commands, adopt tables) concurrently
//!   (issue 13 goal: ≥ 100,000 SAs/s). The SAs' key schedules are built before timing.
//!
//! Run: `cargo bench -p espada-dataplane --bench lifecycle` (check only: `-- --test`).
//! `ESPADA_BENCH_MAX_SAS` caps n (default 1,000,000).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use espada_dataplane::lifecycle::{Lifecycle, Sizes, TunnelSpec, WorkerParts};
use espada_dataplane::slab::{InboundSlot, Policy, Slab};
use espada_dataplane::stats::{Counter, WorkerStats};
use espada_dataplane::tables::Iface;
use espada_esp::aead::GcmAead;
use espada_esp::keys::DEFAULT_CACHE_LINES;
use espada_esp::{AeadEngine, Backend, Direction, InboundSa, KeyCache, SaConfig};
use espada_lookup::sad::{Directory, Lookup};

const BURST: usize = 32;

fn max_sas() -> u32 {
    std::env::var("ESPADA_BENCH_MAX_SAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn ports() -> [Iface; 2] {
    [
        Iface {
            ipv4: Some("198.51.100.1/24".parse().unwrap()),
            gateway4: Some("198.51.100.254".parse().unwrap()),
            ..Default::default()
        },
        Iface {
            ipv4: Some("192.0.2.1/24".parse().unwrap()),
            ..Default::default()
        },
    ]
}

fn inbound(spi: u32) -> InboundSa {
    let mut c = SaConfig::new(
        spi,
        Direction::Inbound,
        "198.51.100.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
    );
    c.esn = false;
    InboundSa::new(c, &[7u8; 20], Backend::Ring).unwrap()
}

/// A lifecycle of `workers` workers with `n` tunnels of one inbound SA each, installed and
/// acknowledged; returns the SPIs too.
fn populated(workers: u16, n: u32) -> (Lifecycle, Vec<WorkerParts>, Vec<u32>) {
    let sizes = Sizes::for_tunnels(workers, n.max(1));
    let (mut lc, mut parts) = Lifecycle::with_seed(sizes, ports(), 0x5eed).unwrap();
    let mut spis = Vec::with_capacity(n as usize);
    let now = Instant::now();
    for t in 0..n {
        let id = lc
            .add_tunnel(TunnelSpec {
                name: String::new(),
                peer: std::net::IpAddr::from([198, 51, 100, 2]),
                local: "198.51.100.1".parse().unwrap(),
                policy: Policy {
                    local_ts: vec![],
                    remote_ts: vec![],
                },
                owner: Some((t % u32::from(workers)) as u16),
            })
            .unwrap();
        let spi = lc.allocate_spi(id).unwrap();
        lc.install_inbound(id, inbound(spi)).unwrap();
        spis.push(spi);
        if t % 512 == 511 {
            lc.apply_directly(&mut parts, now);
            while lc.poll_ack().is_some() {}
        }
    }
    lc.apply_directly(&mut parts, now);
    while lc.poll_ack().is_some() {}
    (lc, parts, spis)
}

fn shuffle(v: &mut [u32], mut x: u64) {
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// [`populated`] with one worker, its SPIs shuffled and padded to whole bursts.
fn in_random_order(n: u32) -> (Lifecycle, Vec<WorkerParts>, Vec<u32>) {
    let (lc, parts, mut spis) = populated(1, n);
    shuffle(&mut spis, 0x9e37_79b9_7f4a_7c15);
    while spis.len() % BURST != 0 || spis.len() < BURST {
        spis.push(spis[spis.len() % n as usize]);
    }
    (lc, parts, spis)
}

fn sizes() -> Vec<u32> {
    [1, 1_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&n| n <= max_sas())
        .collect()
}

/// What the inbound path does before the replay check: the directory lookup of `spi`, the
/// owner's slab slot, the SPI compare.
#[inline(always)]
fn live_slot<'a>(sad: &Directory, slab: &'a mut Slab, spi: u32) -> Option<&'a mut InboundSlot> {
    let Lookup::Live { slot, .. } = sad.lookup(black_box(spi)) else {
        return None;
    };
    slab.inbound(slot).filter(|e| e.sa.spi() == spi)
}

fn inbound_state(c: &mut Criterion) {
    let mut g = c.benchmark_group("inbound_state");
    g.throughput(Throughput::Elements(BURST as u64));
    for n in sizes() {
        let (lc, mut parts, spis) = in_random_order(n);
        let sad = lc.tables().sad.clone();
        let stats = WorkerStats::default();
        let slab = &mut parts[0].slab;
        let mut at = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let mut ok = 0u32;
                for &spi in &spis[at..at + BURST] {
                    let Some(e) = live_slot(&sad, slab, spi) else {
                        continue;
                    };
                    ok += u32::from(e.sa.replay().check(black_box(1)).is_ok());
                    stats.add(Counter::EspDecap, 1);
                }
                at = (at + BURST) % spis.len();
                black_box(ok)
            })
        });
        drop(parts);
        drop(lc);
    }
    g.finish();
}

fn inbound_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("inbound_open");
    g.throughput(Throughput::Elements(BURST as u64));
    // Every SA has the key of `inbound`, so one sealed payload opens under any of them (the
    // cache still keeps one schedule per SA: it tells keys apart by SA, not by bytes).
    let (nonce, aad) = ([3u8; 12], [5u8; 8]);
    let mut sealed = [0x5au8; 64];
    let tag = AeadEngine::new(Backend::Ring, &[7u8; 16])
        .unwrap()
        .seal(&nonce, &aad, &mut sealed)
        .unwrap();
    for n in sizes() {
        let (lc, mut parts, spis) = in_random_order(n);
        let sad = lc.tables().sad.clone();
        let stats = WorkerStats::default();
        let slab = &mut parts[0].slab;
        for (name, lines) in [("keep", 2 * n as usize), ("default", DEFAULT_CACHE_LINES)] {
            let mut keys = KeyCache::new(lines);
            // Warm: every SA's schedule built once, as after its first packet.
            for &spi in &spis {
                if let Lookup::Live { slot, .. } = sad.lookup(spi) {
                    let e = slab.inbound(slot).unwrap();
                    black_box(keys.engine(e.sa.key()).is_some());
                }
            }
            let warm = keys.stats();
            let mut at = 0usize;
            let id = BenchmarkId::new(name, n);
            g.bench_with_input(id, &n, |b, _| {
                b.iter(|| {
                    let mut ok = 0u32;
                    for &spi in &spis[at..at + BURST] {
                        let Some(e) = live_slot(&sad, slab, spi) else {
                            continue;
                        };
                        if e.sa.replay().check(black_box(1)).is_err() {
                            continue;
                        }
                        let Some(engine) = keys.engine(e.sa.key()) else {
                            continue;
                        };
                        let mut buf = sealed;
                        ok += u32::from(engine.open(&nonce, &aad, &mut buf, &tag).is_ok());
                        stats.add(Counter::EspDecap, 1);
                    }
                    at = (at + BURST) % spis.len();
                    assert_eq!(ok, BURST as u32, "every packet opens");
                    black_box(ok)
                })
            });
            let s = keys.stats();
            let (hits, misses) = (s.hits - warm.hits, s.misses - warm.misses);
            println!(
                "inbound_open/{name}/{n}: {} lines, {:.1} % hits",
                keys.lines(),
                100.0 * hits as f64 / (hits + misses).max(1) as f64
            );
        }
        drop(parts);
        drop(lc);
    }
    g.finish();
}

fn control_change(c: &mut Criterion) {
    let mut g = c.benchmark_group("control_change");
    g.throughput(Throughput::Elements(1));
    for n in sizes() {
        let (mut lc, mut parts, _) = populated(2, n);
        let t0 = Instant::now();
        let mut clock = Duration::ZERO;
        let tunnel = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                clock += Duration::from_millis(1);
                let now = t0 + clock;
                let spi = lc.allocate_spi(tunnel).unwrap();
                lc.install_inbound(tunnel, inbound(spi)).unwrap();
                lc.apply_directly(&mut parts, now);
                lc.retire_inbound(tunnel, spi, now, Duration::ZERO, Duration::ZERO)
                    .unwrap();
                lc.apply_directly(&mut parts, now);
                lc.apply_directly(&mut parts, now);
                while let Some(a) = lc.poll_ack() {
                    black_box(a.result.unwrap());
                }
            })
        });
    }
    g.finish();
}

/// SAs installed per second with two worker threads applying commands concurrently.
fn installs_with_workers(c: &mut Criterion) {
    let mut g = c.benchmark_group("installs_with_workers");
    g.sample_size(10);
    const N: u32 = 20_000;
    g.throughput(Throughput::Elements(u64::from(N)));
    g.bench_function(BenchmarkId::from_parameter(N), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut lc, parts) =
                    Lifecycle::with_seed(Sizes::for_tunnels(2, N), ports(), 1).unwrap();
                let stop = Arc::new(AtomicBool::new(false));
                let workers: Vec<_> = parts
                    .into_iter()
                    .map(|mut p| {
                        let stop = stop.clone();
                        std::thread::spawn(move || {
                            while !stop.load(Ordering::Relaxed) {
                                while let Ok(c) = p.commands.pop() {
                                    let _ = p.replies.push(p.slab.apply(c));
                                }
                                p.tables.quiescent();
                                std::hint::spin_loop();
                            }
                            p
                        })
                    })
                    .collect();
                let mut sas = Vec::with_capacity(N as usize);
                for t in 0..N {
                    let id = lc
                        .add_tunnel(TunnelSpec {
                            name: String::new(),
                            peer: std::net::IpAddr::from([198, 51, 100, 2]),
                            local: "198.51.100.1".parse().unwrap(),
                            policy: Policy {
                                local_ts: vec![],
                                remote_ts: vec![],
                            },
                            owner: None,
                        })
                        .unwrap();
                    let spi = lc.allocate_spi(id).unwrap();
                    sas.push((t, inbound(spi)));
                }
                let start = Instant::now();
                for (t, sa) in sas {
                    lc.install_inbound(t, sa).unwrap();
                    lc.poll(Instant::now());
                }
                let mut acked = 0;
                while acked < N {
                    lc.poll(Instant::now());
                    while let Some(a) = lc.poll_ack() {
                        a.result.unwrap();
                        acked += 1;
                    }
                }
                total += start.elapsed();
                stop.store(true, Ordering::Relaxed);
                for w in workers {
                    drop(w.join().unwrap());
                }
            }
            total
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    inbound_state,
    inbound_open,
    control_change,
    installs_with_workers
);
criterion_main!(benches);
