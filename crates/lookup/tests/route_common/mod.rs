//! Shared by the route tests: a naive reference model and a harness that checks a writer and
//! its table against it.
#![allow(dead_code)] // each test binary uses a part

use std::net::{Ipv4Addr, Ipv6Addr};

use std::collections::HashMap;

use espada_lookup::route::{Family, RouteError, Table, V4, V6, Writer};

/// A family as the tests see it: layout (as documented) and key ↔ address conversion.
pub trait TestFamily: Family + Sized {
    const BITS: u32;
    const TOP: u32;
    const STEP: u32;
    /// Whether lone rules are held in tail records (split into groups when a second arrives).
    const SPLIT: bool;
    fn addr(key: u128) -> Self::Addr;
    fn lookup(table: &Table<Self>, key: u128) -> Option<u32>;
}

impl TestFamily for V4 {
    const BITS: u32 = 32;
    const TOP: u32 = 24;
    const STEP: u32 = 8;
    const SPLIT: bool = false;
    fn addr(key: u128) -> Ipv4Addr {
        Ipv4Addr::from(key as u32)
    }
    fn lookup(table: &Table<V4>, key: u128) -> Option<u32> {
        table.lookup(Self::addr(key))
    }
}

impl TestFamily for V6 {
    const BITS: u32 = 128;
    const TOP: u32 = 16;
    const STEP: u32 = 8;
    const SPLIT: bool = true;
    fn addr(key: u128) -> Ipv6Addr {
        Ipv6Addr::from(key)
    }
    fn lookup(table: &Table<V6>, key: u128) -> Option<u32> {
        table.lookup(Self::addr(key))
    }
}

/// `key` with every bit past the first `len` cleared, in a `width`-bit space.
pub fn mask(key: u128, len: u32, width: u32) -> u128 {
    if len == 0 {
        0
    } else {
        key & (u128::MAX << (width - len)) & width_mask(width)
    }
}

pub fn width_mask(width: u32) -> u128 {
    if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    }
}

/// The reference: a plain list of `(masked key, len, value)`, longest match by a scan.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub width: u32,
    pub routes: Vec<(u128, u32, u32)>,
}

impl Model {
    pub fn new(width: u32) -> Model {
        Model {
            width,
            routes: Vec::new(),
        }
    }

    pub fn insert(&mut self, key: u128, len: u32, value: u32) -> Option<u32> {
        let key = mask(key, len, self.width);
        for r in &mut self.routes {
            if r.0 == key && r.1 == len {
                return Some(std::mem::replace(&mut r.2, value));
            }
        }
        self.routes.push((key, len, value));
        None
    }

    pub fn remove(&mut self, key: u128, len: u32) -> Option<u32> {
        let key = mask(key, len, self.width);
        let at = self.routes.iter().position(|r| r.0 == key && r.1 == len)?;
        Some(self.routes.swap_remove(at).2)
    }

    pub fn lookup(&self, key: u128) -> Option<u32> {
        self.routes
            .iter()
            .filter(|r| mask(key, r.1, self.width) == r.0)
            .max_by_key(|r| r.1)
            .map(|r| r.2)
    }

    /// Rules below the `end`-bit prefix `prefix` (longer than `end` and inside it).
    fn below(&self, prefix: u128, end: u32) -> Vec<(u128, u32)> {
        self.routes
            .iter()
            .filter(|r| r.1 > end && mask(r.0, end, self.width) == prefix)
            .map(|r| (r.0, r.1))
            .collect()
    }

    /// The groups and tails a trie with this layout must have in use. Without tails, an entry
    /// links to a group iff a rule is below it; with tails, to a group iff two or more are, and
    /// to a tail iff exactly one is (and the entry exists: level 0, or its parent has a group).
    pub fn shape(&self, first: u32, stride: u32, tails: bool) -> (usize, usize) {
        let (mut groups, mut records) = (0, 0);
        let mut parent: HashMap<u128, usize> = HashMap::new();
        let mut end = first;
        let mut top = true;
        while end < self.width {
            let mut counts: HashMap<u128, usize> = HashMap::new();
            for r in self.routes.iter().filter(|r| r.1 > end) {
                *counts.entry(mask(r.0, end, self.width)).or_default() += 1;
            }
            for (&prefix, &count) in &counts {
                let linked = top || parent[&mask(prefix, end - stride, self.width)] >= 2;
                if count >= if tails { 2 } else { 1 } {
                    groups += 1;
                } else if tails && linked {
                    records += 1;
                }
            }
            parent = counts;
            top = false;
            end += stride;
        }
        (groups, records)
    }

    /// Groups and tails an insert of the new route `key/len` has to allocate.
    pub fn needed(
        &self,
        key: u128,
        len: u32,
        first: u32,
        stride: u32,
        tails: bool,
    ) -> (usize, usize) {
        let mut end = first;
        while len > end {
            let below = self.below(mask(key, end, self.width), end);
            match below.len() {
                0 if !tails => return ((len - end).div_ceil(stride) as usize, 0),
                0 => return (0, 1),
                1 if tails => {
                    // A group per level until the two part; then a tail for each rule
                    // lying deeper.
                    let (other, other_len) = below[0];
                    let mut groups = 0;
                    loop {
                        end += stride;
                        groups += 1;
                        let other_below = other_len > end;
                        if !other_below
                            || len <= end
                            || mask(other, end, self.width) != mask(key, end, self.width)
                        {
                            let records = usize::from(other_below) + usize::from(len > end);
                            return (groups, records);
                        }
                    }
                }
                _ => end += stride,
            }
        }
        (0, 0)
    }

    /// Probe keys around every route: its first and last address and the first address past
    /// it.
    pub fn probes(&self) -> Vec<u128> {
        let mut probes = Vec::new();
        for &(key, len, _) in &self.routes {
            probes.extend(self.edges(key, len));
        }
        probes
    }

    pub fn edges(&self, key: u128, len: u32) -> Vec<u128> {
        let key = mask(key, len, self.width);
        let host = if len >= 128 {
            0
        } else {
            width_mask(self.width) >> len
        };
        let last = key | host;
        vec![key, last, last.wrapping_add(1) & width_mask(self.width)]
    }
}

/// A writer checked against the model after every step.
pub struct Harness<F: TestFamily> {
    pub writer: Writer<F>,
    pub table: std::sync::Arc<Table<F>>,
    pub model: Model,
    pub epoch: u64,
}

impl<F: TestFamily> Harness<F> {
    pub fn new(groups: u32, tails: u32) -> Harness<F> {
        let writer = Writer::<F>::with_pools(groups, tails).expect("pool size");
        let table = writer.table();
        Harness {
            writer,
            table,
            model: Model::new(F::BITS),
            epoch: 0,
        }
    }

    /// Inserts in both; an exhausted pool must be reported exactly when the model says the
    /// route needs more groups (or tails) than are free, and then nothing changes.
    pub fn insert(&mut self, key: u128, len: u32, value: u32) {
        let masked = mask(key, len, F::BITS);
        let exists = self
            .model
            .routes
            .iter()
            .any(|r| (r.0, r.1) == (masked, len));
        let (groups, tails) = if exists {
            (0, 0)
        } else {
            self.model.needed(key, len, F::TOP, F::STEP, F::SPLIT)
        };
        let stats = self.writer.stats();
        let (free_groups, free_tails) = (stats.groups_free, stats.tails_free);
        match self.writer.insert(F::addr(key), len as u8, value) {
            Ok(previous) => {
                assert!(
                    groups <= free_groups && tails <= free_tails,
                    "insert succeeded needing {groups}/{tails}, {free_groups}/{free_tails} free"
                );
                assert_eq!(previous, self.model.insert(key, len, value));
            }
            Err(RouteError::PoolExhausted { needed, free, .. }) => {
                assert!(
                    groups > free_groups,
                    "no group missing: {groups}, {free_groups} free"
                );
                assert_eq!((needed, free), (groups, free_groups));
            }
            Err(RouteError::TailsExhausted { needed, free, .. }) => {
                assert!(groups <= free_groups && tails > free_tails);
                assert_eq!((needed, free), (tails, free_tails));
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    pub fn remove(&mut self, key: u128, len: u32) {
        let got = self
            .writer
            .remove(F::addr(key), len as u8)
            .expect("valid length");
        assert_eq!(got, self.model.remove(key, len));
    }

    /// Moves to the next epoch and reclaims everything retired before it (a reader-less QSBR).
    pub fn reclaim(&mut self) {
        let stats = self.writer.stats();
        let retired = stats.groups_retired + stats.tails_retired;
        self.epoch += 1;
        assert_eq!(self.writer.reclaim(self.epoch), retired);
        self.writer.set_epoch(self.epoch);
    }

    /// Checks lookups of `keys`, the shape and the pool accounting against the model.
    pub fn check(&self, keys: &[u128]) {
        for &key in keys {
            assert_eq!(
                F::lookup(&self.table, key),
                self.model.lookup(key),
                "lookup of {key:#x} with routes {:x?}",
                self.model.routes
            );
        }
        let stats = self.writer.stats();
        assert_eq!(stats.routes, self.model.routes.len());
        assert_eq!(self.writer.len(), self.model.routes.len());
        assert_eq!(
            (stats.groups_in_use, stats.tails_in_use),
            self.model.shape(F::TOP, F::STEP, F::SPLIT),
            "groups and tails in use (the shape is a function of the rules)"
        );
        assert_eq!(
            stats.groups_in_use + stats.groups_free + stats.groups_retired,
            stats.groups_capacity
        );
        assert_eq!(
            stats.tails_in_use + stats.tails_free + stats.tails_retired,
            stats.tails_capacity
        );
        for &(key, len, value) in &self.model.routes {
            assert_eq!(self.writer.get(F::addr(key), len as u8), Some(value));
        }
    }
}

/// SplitMix64: a small deterministic generator for the tests that need many numbers.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
