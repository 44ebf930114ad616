//! A reader thread looks up continuously while the control thread adds and removes routes and
//! reclaims groups and tails through `espada-qsbr`, as the data plane will. Small pools force
//! groups and tails to be unlinked and reused all the time.
//!
//! Oracle: the writer publishes the number of updates it has finished (`done`, Release after
//! each). The reader loads `done` (Acquire) before and after each lookup, getting `c0 ≤ c1`.
//! Every store of updates `1..=c0` happens-before the lookup, so it cannot see an older state
//! than the one after update `c0`; and every entry store is Release (a group's fill is published
//! by a Release link), so a store of update `j` seen by the lookup makes `done ≥ j − 1` visible
//! to the second load. Each entry value an update stores is the longest-match answer before or
//! after that update. Hence the answer must equal the model's answer after some update `k` with
//! `c0 ≤ k ≤ c1 + 1`. A group reused before the reader left it would break this (the reader
//! would see another prefix's entries), and so would a group linked before it is filled.
#![cfg(not(loom))]

mod route_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use espada_lookup::route::{V4, V6, Writer};
use route_common::{Model, SplitMix, TestFamily};

/// Updates the writer performs at least, and for at least this long.
const UPDATES: usize = 100_000;
const DURATION: std::time::Duration = std::time::Duration::from_millis(300);
/// Lookups the reader records (it stops recording when full).
const SAMPLES: usize = 1_000_000;

#[derive(Clone, Copy, Debug)]
enum Update {
    Insert(u128, u32, u32),
    Remove(u128, u32),
    /// An insert refused for want of groups: no change.
    Refused,
}

/// Where a scenario's prefixes and addresses come from.
struct Scenario {
    base: u128,
    /// Key bit positions (from the most significant) that vary.
    positions: &'static [u32],
    lengths: &'static [u32],
    width: u32,
}

impl Scenario {
    fn key(&self, rng: &mut SplitMix) -> u128 {
        let bits = rng.next();
        let mut key = self.base;
        for (n, &p) in self.positions.iter().enumerate() {
            if bits >> n & 1 == 1 {
                key |= 1u128 << (self.width - 1 - p);
            }
        }
        key
    }

    fn len(&self, rng: &mut SplitMix) -> u32 {
        self.lengths[rng.below(self.lengths.len() as u64) as usize]
    }
}

fn run<F: TestFamily>(scenario: Scenario, groups: u32, tails: u32, seed: u64) {
    let mut writer = Writer::<F>::with_pools(groups, tails).unwrap();
    let table = writer.table();
    let (mut publisher, mut readers) = espada_qsbr::channel((), 1);
    let mut reader = readers.pop().unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let scenario = Arc::new(scenario);

    let worker = {
        let (done, stop, scenario, table) = (done.clone(), stop.clone(), scenario.clone(), table);
        std::thread::spawn(move || {
            let mut rng = SplitMix(seed ^ 0x5eed);
            let mut samples = Vec::with_capacity(SAMPLES);
            let mut lookups = 0u64;
            while !stop.load(Ordering::Relaxed) {
                reader.quiescent();
                let key = scenario.key(&mut rng);
                let c0 = done.load(Ordering::Acquire);
                let got = F::lookup(&table, key);
                let c1 = done.load(Ordering::Acquire);
                lookups += 1;
                // Keep every lookup that overlapped an update, and one in 64 of the others
                // while the writer runs.
                let running = c0 > 0 && !stop.load(Ordering::Relaxed);
                if samples.len() < SAMPLES && (c0 != c1 || running && lookups.is_multiple_of(64)) {
                    samples.push((key, got, c0, c1));
                }
            }
            (samples, lookups)
        })
    };

    let mut rng = SplitMix(seed);
    let mut history = Vec::with_capacity(UPDATES);
    let mut installed: Vec<(u128, u32)> = Vec::new();
    let mut reclaimed = 0;
    let started = std::time::Instant::now();
    let mut n = 0;
    while n < UPDATES || started.elapsed() < DURATION {
        n += 1;
        // Groups unlinked now are tagged with the generation readers may still be in.
        writer.set_epoch(publisher.generation());
        let remove = !installed.is_empty() && rng.below(100) < 45;
        let update = if remove {
            let (key, len) = installed.swap_remove(rng.below(installed.len() as u64) as usize);
            writer.remove(F::addr(key), len as u8).unwrap();
            Update::Remove(key, len)
        } else {
            let (key, len) = (scenario.key(&mut rng), scenario.len(&mut rng));
            let value = n as u32;
            match writer.insert(F::addr(key), len as u8, value) {
                Ok(None) => {
                    installed.push((key, len));
                    Update::Insert(key, len, value)
                }
                Ok(Some(_)) => Update::Insert(key, len, value),
                Err(_) => Update::Refused,
            }
        };
        history.push(update);
        done.store(n as u64, Ordering::Release);
        let stats = writer.stats();
        if stats.groups_retired + stats.tails_retired > 0 {
            publisher.publish(());
            let oldest = publisher
                .readers()
                .iter()
                .filter_map(|r| match r.state {
                    espada_qsbr::ReaderState::Online { adopted } => Some(adopted),
                    espada_qsbr::ReaderState::Offline => None,
                })
                .min()
                .unwrap_or(u64::MAX);
            reclaimed += writer.reclaim(oldest);
            publisher.reclaim();
        }
        if n % 64 == 0 {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (mut samples, lookups) = worker.join().unwrap();
    assert!(reclaimed > 100, "groups were recycled: {reclaimed}");
    assert!(samples.len() > 1_000, "the reader ran: {lookups} lookups");

    // Replay the history and check every sample against the states in its window.
    samples.sort_by_key(|s| s.2);
    let mut model = Model::new(F::BITS);
    let mut ok = vec![false; samples.len()];
    let mut next = 0; // first sample not yet active
    let mut active: Vec<usize> = Vec::new();
    let updates = history.len() as u64;
    for k in 0..=updates {
        if k > 0 {
            match history[k as usize - 1] {
                Update::Insert(key, len, value) => {
                    model.insert(key, len, value);
                }
                Update::Remove(key, len) => {
                    model.remove(key, len).expect("removed an installed route");
                }
                Update::Refused => {}
            }
        }
        while next < samples.len() && samples[next].2 <= k {
            active.push(next);
            next += 1;
        }
        active.retain(|&i| {
            let (key, got, _, c1) = samples[i];
            if model.lookup(key) == got {
                ok[i] = true;
                return false;
            }
            assert!(
                k < c1 + 1,
                "lookup of {key:#x} saw {got:?}, never the answer in updates {}..={}",
                samples[i].2,
                c1 + 1
            );
            true
        });
    }
    for i in active {
        let (key, got, c0, c1) = samples[i];
        assert!(
            c1 + 1 > updates || ok[i],
            "lookup of {key:#x} saw {got:?} in updates {c0}..={c1}"
        );
    }
}

#[test]
fn v4_reader_sees_only_answers_of_some_state_while_groups_are_recycled() {
    run::<V4>(
        Scenario {
            base: 0x0a00_0000,
            // 10.0.0.0/20: sixteen /24s, prefixes on and inside them.
            positions: &[20, 21, 22, 23, 24, 26, 29, 31],
            lengths: &[16, 20, 23, 24, 25, 26, 28, 30, 31, 32, 32, 32],
            width: 32,
        },
        6,
        0,
        1,
    );
}

#[test]
fn v6_reader_sees_only_answers_of_some_state_while_groups_are_recycled() {
    run::<V6>(
        Scenario {
            base: 0x2001_0db8_0000_0000_0000_0000_0000_0000,
            positions: &[40, 47, 56, 63, 64, 100, 120, 127],
            lengths: &[32, 40, 44, 48, 56, 64, 64, 100, 121, 127, 128, 128],
            width: 128,
        },
        12,
        16,
        2,
    );
}
