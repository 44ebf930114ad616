//! Inbound SA directory and SPI allocator (criterion). Figures go to docs/performance.md with
//! the command and the CPU; nothing here asserts a speed.
//!
//! - `sad_lookup/live/<n>`: one burst of 32 inbound lookups of live SPIs, `n` SAs installed,
//!   SPIs in random order (issue 13 goal: n = 1M costs ≤ 1.3× n = 1). The directory has the
//!   same size (2 workers × 2^19 slots, 8 MiB) whatever `n`, as a configured data plane has.
//! - `sad_lookup/unknown/1000000`: a burst of random SPIs (a flood), 1M installed.
//! - `sad_lookup/static/16`: a burst of lookups of static lab SPIs through the fallback.
//! - `sad_churn/<n>`: one SA brought up (allocate, install, mark live) and one retired and
//!   forgotten (retire, remove, release), `n` live: the control thread's cost per SA change.
//!
//! Run: `cargo bench -p espada-lookup --bench sad` (check only: `-- --test`).

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use espada_lookup::sad::{Directory, Lookup, MAX_TUNNEL};
use espada_lookup::spi::{SpiAllocator, SpiLayout, SpiSlot, SplitMix64};

const BURST: usize = 32;
const WORKERS: u16 = 2;
const SLOTS: u32 = 1 << 19;

type Allocator = SpiAllocator<SplitMix64>;

fn allocator(statics: usize) -> Allocator {
    let layout = SpiLayout::new(WORKERS, SLOTS).unwrap();
    SpiAllocator::new(
        Arc::new(Directory::new(layout, statics)),
        SplitMix64::new(0x5eed),
    )
}

fn bring_up(a: &mut Allocator, tunnel: u32) -> SpiSlot {
    let s = a.allocate(None).unwrap();
    a.directory().install(s, tunnel & MAX_TUNNEL).unwrap();
    a.mark_live(s).unwrap();
    s
}

fn take_down(a: &mut Allocator, s: SpiSlot) {
    a.directory().retire(s).unwrap();
    a.retire(s).unwrap();
    a.directory().remove(s).unwrap();
    a.release(s).unwrap();
}

/// Fisher–Yates with SplitMix64.
fn shuffle(v: &mut [u32], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Looks up bursts of `spis` in turn, cycling; sums the tunnels so nothing is optimised away.
fn bursts(c: &mut Criterion, group: &str, id: BenchmarkId, dir: &Directory, spis: &[u32]) {
    // Repeat the SPIs up to a whole number of bursts, so a burst is a plain slice.
    let len = spis.len().div_ceil(BURST) * BURST;
    let spis: Vec<u32> = spis.iter().copied().cycle().take(len).collect();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(BURST as u64));
    let mut at = 0usize;
    g.bench_function(id, |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for &spi in &spis[at..at + BURST] {
                sum = sum.wrapping_add(match dir.lookup(black_box(spi)) {
                    Lookup::Live { tunnel, .. } => tunnel,
                    Lookup::Tombstone { .. } => 1,
                    Lookup::Unknown => 0,
                });
            }
            at = if at + BURST == len { 0 } else { at + BURST };
            black_box(sum)
        })
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let mut rng = SplitMix64::new(1);
    for n in [1usize, 1_000, 100_000, 1_000_000] {
        let mut a = allocator(0);
        let mut spis: Vec<u32> = (0..n).map(|i| bring_up(&mut a, i as u32).spi).collect();
        shuffle(&mut spis, &mut rng);
        bursts(
            c,
            "sad_lookup",
            BenchmarkId::new("live", n),
            a.directory(),
            &spis,
        );
        if n == 1_000_000 {
            let flood: Vec<u32> = (0..1 << 16).map(|_| rng.next_u64() as u32).collect();
            bursts(
                c,
                "sad_lookup",
                BenchmarkId::new("unknown", n),
                a.directory(),
                &flood,
            );
        }
    }
    let mut a = allocator(16);
    let mut statics = Vec::new();
    for i in 0..16u32 {
        let s = a.allocate_static(0x1000 + (i << 12), None).unwrap();
        a.directory().install(s, i).unwrap();
        statics.push(s.spi);
    }
    bursts(
        c,
        "sad_lookup",
        BenchmarkId::new("static", 16),
        a.directory(),
        &statics,
    );
}

fn churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("sad_churn");
    g.throughput(Throughput::Elements(1));
    for n in [1_000usize, 1_000_000] {
        let mut a = allocator(0);
        let mut live: VecDeque<SpiSlot> = (0..n).map(|i| bring_up(&mut a, i as u32)).collect();
        let mut tunnel = n as u32;
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                tunnel = tunnel.wrapping_add(1);
                live.push_back(bring_up(&mut a, tunnel));
                if let Some(old) = live.pop_front() {
                    take_down(&mut a, old);
                }
            })
        });
        assert_eq!(a.alarms(), 0);
    }
    g.finish();
}

criterion_group!(benches, lookup, churn);
criterion_main!(benches);
