//! The multibit trie both families share: the atomic tables readers see, and the control-side
//! writer running `rte_lpm`'s add/delete algorithm generalised from two levels to any number,
//! optionally with *tails* (single-route leaves, IPv6 only).
//!
//! Level 0 has `2^FIRST` entries indexed by the first `FIRST` bits of the key; every further
//! level is a group of `2^STRIDE` entries indexed by the next `STRIDE` bits. A prefix of depth
//! `d` *ends* at level `level_of(d)`, where it covers `2^(end − d)` consecutive entries
//! (controlled prefix expansion). A rule is *below* an entry at level `k` when it lies in the
//! entry's address range and is longer than `end(k)` bits.
//!
//! Shape, a function of the rule set alone (kept by every update; tests check it):
//! * without tails (IPv4, exactly DIR-24-8): an entry links to a group iff at least one rule is
//!   below it; otherwise it is a leaf (the longest rule covering it) or empty. So the groups at
//!   level `k ≥ 1` are the distinct `start(k)`-bit prefixes of the rules longer than that.
//! * with tails (IPv6): an entry links to a group iff at least two rules are below it; with
//!   exactly one, it links to a *tail record* holding that rule (key, depth, value) and the
//!   entry's own answer for the other addresses (the *fallback*). A scattered route then costs
//!   one 32-byte record instead of a chain of 1 KiB groups.
//!
//! The writer keeps, per group, the number of rules below its parent entry, and per entry the
//! depth of the rule that wrote it (for a tail link: the fallback's depth).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;

use super::sync::{Arc, AtomicU32, Ordering};
use super::{Family, MAX_GROUPS, MAX_VALUE, RouteError};

/// Entry bit: a leaf holding a value.
pub(crate) const VALID: u32 = 1 << 31;
/// Entry bit: a link to the group in the payload.
pub(crate) const EXT: u32 = 1 << 30;
/// Both bits: a link to the tail record in the payload.
const TAIL: u32 = VALID | EXT;
/// Entry payload: value, group index or tail index.
pub(crate) const PAYLOAD: u32 = EXT - 1;
/// Entry: no route covers these addresses.
const EMPTY: u32 = 0;

/// Words of a tail record: key (most significant word first), the rule's depth, its leaf entry,
/// the fallback entry, one unused word (32 bytes).
const TAIL_WORDS: usize = 8;
const TAIL_DEPTH: usize = 4;
const TAIL_VALUE: usize = 5;
const TAIL_FALLBACK: usize = 6;

/// The value of a leaf entry; `None` for an empty (or, on a corrupted table, a link) entry.
#[inline]
pub(crate) fn leaf_value(entry: u32) -> Option<u32> {
    if entry & TAIL == VALID {
        Some(entry & PAYLOAD)
    } else {
        None
    }
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Empty,
    Leaf,
    Group(u32),
    Tail(u32),
}

fn kind(entry: u32) -> Kind {
    match entry & TAIL {
        VALID => Kind::Leaf,
        EXT => Kind::Group(entry & PAYLOAD),
        TAIL => Kind::Tail(entry & PAYLOAD),
        _ => Kind::Empty,
    }
}

/// Number of levels of a family's trie.
const fn levels<F: Family>() -> u32 {
    1 + (F::WIDTH - F::FIRST) / F::STRIDE
}

/// Entries per group.
const fn group_len<F: Family>() -> usize {
    1 << F::STRIDE
}

/// First key bit past level `k`.
const fn end<F: Family>(k: u32) -> u32 {
    F::FIRST + k * F::STRIDE
}

/// First key bit of level `k`.
const fn start<F: Family>(k: u32) -> u32 {
    if k == 0 { 0 } else { end::<F>(k) - F::STRIDE }
}

/// The entry index of `key` at level `k`.
#[inline]
const fn index<F: Family>(key: u128, k: u32) -> usize {
    let bits = if k == 0 { F::FIRST } else { F::STRIDE };
    ((key >> (F::WIDTH - end::<F>(k))) as usize) & ((1 << bits) - 1)
}

/// `key` with every bit past the first `d` cleared (`d ≤ WIDTH`).
#[inline]
const fn mask<F: Family>(key: u128, d: u32) -> u128 {
    if d == 0 {
        0
    } else {
        key & (u128::MAX << (F::WIDTH - d))
    }
}

/// The atomic tables the workers read: level 0, the group pool and the tail pool. Shared as
/// `Arc<Table<F>>`.
pub struct Table<F> {
    level0: Box<[AtomicU32]>,
    groups: Box<[AtomicU32]>,
    tails: Box<[AtomicU32]>,
    family: PhantomData<F>,
}

fn atomics(n: usize) -> Box<[AtomicU32]> {
    (0..n).map(|_| AtomicU32::new(EMPTY)).collect()
}

impl<F: Family> Table<F> {
    fn new(groups: u32, tails: u32) -> Table<F> {
        Table {
            level0: atomics(1 << F::FIRST),
            groups: atomics(groups as usize * group_len::<F>()),
            tails: atomics(tails as usize * TAIL_WORDS),
            family: PhantomData,
        }
    }

    /// Level 0 (for the families' specialised lookups).
    #[inline]
    pub(crate) fn level0(&self) -> &[AtomicU32] {
        &self.level0
    }

    /// The group pool, group `g` at `g << STRIDE` (for the families' specialised lookups).
    #[inline]
    pub(crate) fn groups(&self) -> &[AtomicU32] {
        &self.groups
    }

    /// The first word [`Table::lookup_key`] reads for `key` (for a prefetch).
    #[inline]
    pub(crate) fn first_word_key(&self, key: u128) -> Option<*const ()> {
        self.level0
            .get(index::<F>(key, 0))
            .map(|w| std::ptr::from_ref(w).cast())
    }

    /// Longest-prefix match of `key`: one Acquire load per level, plus a tail record's words.
    #[inline]
    pub(crate) fn lookup_key(&self, key: u128) -> Option<u32> {
        let mut entry = self.level0.get(index::<F>(key, 0))?.load(Ordering::Acquire);
        let mut k = 0;
        loop {
            match entry & TAIL {
                EXT => {
                    k += 1;
                    if k >= levels::<F>() {
                        return None;
                    }
                    let at = ((entry & PAYLOAD) as usize) * group_len::<F>() + index::<F>(key, k);
                    entry = self.groups.get(at)?.load(Ordering::Acquire);
                }
                TAIL => return self.tail_lookup(entry & PAYLOAD, key),
                _ => return leaf_value(entry),
            }
        }
    }

    /// The answer of tail record `t` for `key`: its rule's value if the key matches, else the
    /// fallback.
    #[inline]
    fn tail_lookup(&self, t: u32, key: u128) -> Option<u32> {
        let base = t as usize * TAIL_WORDS;
        let record = self.tails.get(base..base + TAIL_WORDS)?;
        let depth = record[TAIL_DEPTH].load(Ordering::Acquire);
        let stored = record[..4].iter().fold(0u128, |k, w| {
            k << 32 | u128::from(w.load(Ordering::Acquire))
        });
        let hit = depth <= F::WIDTH && mask::<F>(key, depth) == stored;
        let word = if hit { TAIL_VALUE } else { TAIL_FALLBACK };
        leaf_value(record[word].load(Ordering::Acquire))
    }

    /// Bytes of the atomic tables (level 0 and the whole preallocated pools).
    pub fn bytes(&self) -> usize {
        (self.level0.len() + self.groups.len() + self.tails.len()) * size_of::<AtomicU32>()
    }
}

impl<F> fmt::Debug for Table<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("level0", &self.level0.len())
            .field("group_entries", &self.groups.len())
            .field("tail_words", &self.tails.len())
            .finish_non_exhaustive()
    }
}

/// Where an entry lives: level 0 or a group.
#[derive(Clone, Copy, Debug)]
enum Node {
    Root,
    Group(u32),
}

/// A pool slot waiting for a grace period.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Group(u32),
    Tail(u32),
}

/// A tail record as the writer reads it.
#[derive(Clone, Copy, Debug)]
struct Record {
    key: u128,
    depth: u32,
    /// The rule's leaf entry.
    value: u32,
    /// The entry's answer for addresses outside the rule.
    fallback: u32,
}

/// Figures of a writer's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableStats {
    /// Routes (distinct prefixes) installed.
    pub routes: usize,
    /// Groups in the pool.
    pub groups_capacity: usize,
    /// Groups linked into the trie.
    pub groups_in_use: usize,
    /// Groups free for new prefixes.
    pub groups_free: usize,
    /// Groups unlinked and waiting for [`Writer::reclaim`].
    pub groups_retired: usize,
    /// Tail records in the pool (0 for IPv4).
    pub tails_capacity: usize,
    /// Tail records linked into the trie.
    pub tails_in_use: usize,
    /// Tail records free.
    pub tails_free: usize,
    /// Tail records unlinked and waiting for [`Writer::reclaim`].
    pub tails_retired: usize,
    /// Bytes of the atomic tables readers share (preallocated: level 0 and the whole pools).
    pub table_bytes: usize,
    /// Bytes of the used part of those tables: level 0, and the groups and tails in use or
    /// retired.
    pub used_bytes: usize,
    /// Bytes of the writer's own arrays (preallocated): one depth byte per table entry and one
    /// rule count per group. The rule table (a B-tree per length) comes on top.
    pub shadow_bytes: usize,
}

/// The control thread's handle of a table: the only one that changes it.
///
/// `Send`, not `Clone`. Hands out read handles with [`Writer::table`].
pub struct Writer<F: Family> {
    table: Arc<Table<F>>,
    /// Depth of the rule that wrote each level-0 entry (0 for empty and group links, the
    /// fallback's depth for tail links).
    depth0: Vec<u8>,
    /// The same for group entries.
    depthg: Vec<u8>,
    /// Per group: the number of rules below its parent entry.
    below: Vec<u32>,
    /// The rules, by depth: masked key → value.
    rules: Vec<BTreeMap<u128, u32>>,
    routes: usize,
    free_groups: Vec<u32>,
    free_tails: Vec<u32>,
    /// Unlinked slots with the epoch of their unlinking, oldest first.
    retired: VecDeque<(u64, Slot)>,
    retired_groups: usize,
    retired_tails: usize,
    epoch: u64,
    group_capacity: u32,
    tail_capacity: u32,
}

impl<F: Family> Writer<F> {
    /// Builds an empty table with pools of `groups` groups of 256 entries (1 KiB) and `tails`
    /// tail records (32 bytes; ignored by families without tails, i.e. IPv4), all allocated now.
    pub fn with_pools(groups: u32, tails: u32) -> Result<Writer<F>, RouteError> {
        let tails = if F::TAILS { tails } else { 0 };
        for size in [groups, tails] {
            if size > MAX_GROUPS {
                return Err(RouteError::PoolTooLarge { size });
            }
        }
        let table = Table::new(groups, tails);
        Ok(Writer {
            depth0: vec![0; table.level0.len()],
            depthg: vec![0; table.groups.len()],
            below: vec![0; groups as usize],
            table: Arc::new(table),
            rules: (0..=F::WIDTH).map(|_| BTreeMap::new()).collect(),
            routes: 0,
            free_groups: (0..groups).rev().collect(),
            free_tails: (0..tails).rev().collect(),
            retired: VecDeque::new(),
            retired_groups: 0,
            retired_tails: 0,
            epoch: 0,
            group_capacity: groups,
            tail_capacity: tails,
        })
    }

    /// A read handle for a worker.
    pub fn table(&self) -> Arc<Table<F>> {
        Arc::clone(&self.table)
    }

    /// Adds `addr/len → value`, or replaces the value of that prefix; returns the previous
    /// value. Host bits of `addr` beyond `len` are ignored.
    ///
    /// Fails without changing anything if `len` is too long, `value` is above
    /// [`MAX_VALUE`](super::MAX_VALUE), or a pool lacks what the prefix needs (at most one group
    /// per level above the one it ends at; with tails, at most two tail records: its own and a
    /// fresh copy of the one it splits).
    pub fn insert(
        &mut self,
        addr: F::Addr,
        len: u8,
        value: u32,
    ) -> Result<Option<u32>, RouteError> {
        let d = self.depth(len)?;
        if value > MAX_VALUE {
            return Err(RouteError::ValueTooLarge { value });
        }
        let key = mask::<F>(F::key(addr), d);
        let exists = self.rules[d as usize].contains_key(&key);
        if !exists {
            self.check_pools(key, d)?;
        }
        let previous = self.rules[d as usize].insert(key, value);
        if previous.is_none() {
            self.routes += 1;
        }
        let entry = VALID | value;
        let mut node = Node::Root;
        let mut k = 0;
        while d > end::<F>(k) {
            let i = index::<F>(key, k);
            match kind(self.load(node, i)) {
                Kind::Group(g) => {
                    if !exists {
                        self.below[g as usize] += 1;
                    }
                    node = Node::Group(g);
                    k += 1;
                }
                Kind::Tail(t) => {
                    let record = self.record(t);
                    if record.key == key && record.depth == d {
                        // A new value for the rule the tail holds: one word.
                        self.tail_store(t, TAIL_VALUE, entry);
                        return Ok(previous);
                    }
                    (node, k) = self.split(node, i, k, t, key, d)?;
                    if d > end::<F>(k) {
                        // The new rule leaves the other's path here: a tail of its own.
                        self.link_tail(node, index::<F>(key, k), key, d, entry)?;
                        return Ok(previous);
                    }
                }
                Kind::Empty | Kind::Leaf if F::TAILS => {
                    self.link_tail(node, i, key, d, entry)?;
                    return Ok(previous);
                }
                Kind::Empty | Kind::Leaf => {
                    node = self.expand(node, i)?;
                    k += 1;
                }
            }
        }
        let first = index::<F>(key, k);
        for i in first..first + (1 << (end::<F>(k) - d)) {
            self.install(node, i, d as u8, entry);
        }
        Ok(previous)
    }

    /// Removes `addr/len`; returns its value, or `None` if there was no such route. Host bits of
    /// `addr` beyond `len` are ignored. Groups and tails it unlinks are retired at the current
    /// epoch.
    pub fn remove(&mut self, addr: F::Addr, len: u8) -> Result<Option<u32>, RouteError> {
        let d = self.depth(len)?;
        let key = mask::<F>(F::key(addr), d);
        let Some(old) = self.rules[d as usize].remove(&key) else {
            return Ok(None);
        };
        self.routes -= 1;
        let mut path = Vec::with_capacity(levels::<F>() as usize);
        let mut node = Node::Root;
        let mut k = 0;
        while d > end::<F>(k) {
            let i = index::<F>(key, k);
            match kind(self.load(node, i)) {
                Kind::Group(g) => {
                    self.below[g as usize] = self.below[g as usize].saturating_sub(1);
                    path.push((node, i, g));
                    node = Node::Group(g);
                    k += 1;
                }
                Kind::Tail(t) => {
                    // The rule is the only one below this entry: the entry gets its fallback.
                    let record = self.record(t);
                    if record.key == key && record.depth == d {
                        let depth = self.shadow(node, i);
                        self.store(node, i, record.fallback, depth, Ordering::Release);
                        self.retire(Slot::Tail(t));
                    }
                    self.normalize(&path, key);
                    return Ok(Some(old));
                }
                // Unreachable while the shape holds: a rule's path is linked.
                Kind::Empty | Kind::Leaf => return Ok(Some(old)),
            }
        }
        let (replacement, replacement_depth) = self.covering(key, d);
        let first = index::<F>(key, k);
        for i in first..first + (1 << (end::<F>(k) - d)) {
            self.uninstall(node, i, d as u8, replacement, replacement_depth);
        }
        self.normalize(&path, key);
        Ok(Some(old))
    }

    /// The value of exactly `addr/len`, if that route exists.
    pub fn get(&self, addr: F::Addr, len: u8) -> Option<u32> {
        let d = u32::from(len);
        let rules = self.rules.get(d as usize)?;
        rules.get(&mask::<F>(F::key(addr), d)).copied()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes
    }

    /// True when there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// Sets the epoch with which groups and tails unlinked from now on are tagged. Keep it equal
    /// to the QSBR generation readers adopt: set it after every publication of a new generation
    /// and before the next update. Epochs never go back: a value below the current epoch is
    /// ignored.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// The epoch slots unlinked now are tagged with.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Returns to their pools every retired group and tail tagged with an epoch below
    /// `quiescent`; returns how many. `quiescent` must be an epoch that every online reader has
    /// reached at a quiescent point (with `espada-qsbr`: the oldest generation adopted by an
    /// online reader): a reader that adopted epoch `e` after the writer moved to `e` can no
    /// longer reach anything unlinked before.
    pub fn reclaim(&mut self, quiescent: u64) -> usize {
        let mut freed = 0;
        while let Some(&(tag, slot)) = self.retired.front() {
            if tag >= quiescent {
                break;
            }
            self.retired.pop_front();
            match slot {
                Slot::Group(g) => {
                    self.retired_groups -= 1;
                    self.free_groups.push(g);
                }
                Slot::Tail(t) => {
                    self.retired_tails -= 1;
                    self.free_tails.push(t);
                }
            }
            freed += 1;
        }
        freed
    }

    /// Figures of the table.
    pub fn stats(&self) -> TableStats {
        let groups = self.group_capacity as usize;
        let tails = self.tail_capacity as usize;
        let groups_in_use = groups - self.free_groups.len() - self.retired_groups;
        let tails_in_use = tails - self.free_tails.len() - self.retired_tails;
        let word = size_of::<AtomicU32>();
        TableStats {
            routes: self.routes,
            groups_capacity: groups,
            groups_in_use,
            groups_free: self.free_groups.len(),
            groups_retired: self.retired_groups,
            tails_capacity: tails,
            tails_in_use,
            tails_free: self.free_tails.len(),
            tails_retired: self.retired_tails,
            table_bytes: self.table.bytes(),
            used_bytes: word
                * (self.table.level0.len()
                    + (groups_in_use + self.retired_groups) * group_len::<F>()
                    + (tails_in_use + self.retired_tails) * TAIL_WORDS),
            shadow_bytes: self.depth0.len()
                + self.depthg.len()
                + self.below.len() * size_of::<u32>(),
        }
    }

    fn depth(&self, len: u8) -> Result<u32, RouteError> {
        let d = u32::from(len);
        if d > F::WIDTH {
            return Err(RouteError::PrefixLength {
                len,
                max: F::WIDTH as u8,
            });
        }
        Ok(d)
    }

    /// Fails unless the pools hold what an insert of the new rule `key/d` takes (see
    /// [`Writer::insert`], which follows the same steps).
    fn check_pools(&self, key: u128, d: u32) -> Result<(), RouteError> {
        let (groups, tails) = self.needs(key, d);
        if groups > self.free_groups.len() {
            return Err(RouteError::PoolExhausted {
                needed: groups,
                free: self.free_groups.len(),
                retired: self.retired_groups,
            });
        }
        if tails > self.free_tails.len() {
            return Err(RouteError::TailsExhausted {
                needed: tails,
                free: self.free_tails.len(),
                retired: self.retired_tails,
            });
        }
        Ok(())
    }

    /// Groups and tails an insert of the new rule `key/d` allocates.
    fn needs(&self, key: u128, d: u32) -> (usize, usize) {
        let mut node = Node::Root;
        let mut k = 0;
        while d > end::<F>(k) {
            match kind(self.load(node, index::<F>(key, k))) {
                Kind::Group(g) => node = Node::Group(g),
                Kind::Empty | Kind::Leaf if F::TAILS => return (0, 1),
                // One group per level from here to the one the rule ends at.
                Kind::Empty | Kind::Leaf => {
                    let target = 1 + (d - F::FIRST - 1) / F::STRIDE;
                    return ((target - k) as usize, 0);
                }
                Kind::Tail(t) => {
                    // A group per level until the two rules part (`split`); there the other
                    // rule needs a record if it lies deeper, and so does the new one.
                    let other = self.record(t);
                    let mut groups = 0;
                    loop {
                        k += 1;
                        groups += 1;
                        let other_below = other.depth > end::<F>(k);
                        if !other_below
                            || d <= end::<F>(k)
                            || index::<F>(other.key, k) != index::<F>(key, k)
                        {
                            let tails = usize::from(other_below) + usize::from(d > end::<F>(k));
                            return (groups, tails);
                        }
                    }
                }
            }
            k += 1;
        }
        (0, 0)
    }

    /// Links a new group under the leaf or empty entry `(node, i)`, filled with copies of it, for
    /// the one rule being inserted below it (no tails).
    fn expand(&mut self, node: Node, i: usize) -> Result<Node, RouteError> {
        let entry = self.load(node, i);
        let g = self.take_group()?;
        let depth = self.shadow(node, i);
        let group = Node::Group(g);
        // Fill first (Relaxed), then publish the link with Release: a reader that loads the
        // link with Acquire sees the whole fill.
        for j in 0..group_len::<F>() {
            self.store(group, j, entry, depth, Ordering::Relaxed);
        }
        self.below[g as usize] = 1;
        self.store(node, i, EXT | g, 0, Ordering::Release);
        Ok(group)
    }

    /// Links a tail record for the rule `key/d` (the only one below `(node, i)`) in place of the
    /// leaf or empty entry there, which becomes its fallback.
    fn link_tail(
        &mut self,
        node: Node,
        i: usize,
        key: u128,
        d: u32,
        entry: u32,
    ) -> Result<(), RouteError> {
        let fallback = self.load(node, i);
        let depth = self.shadow(node, i);
        let t = self.new_record(Record {
            key,
            depth: d,
            value: entry,
            fallback,
        })?;
        self.store(node, i, TAIL | t, depth, Ordering::Release);
        Ok(())
    }

    /// Replaces the tail link `(node, i)` at level `k` (record `t`) by a chain of groups, for a
    /// second rule `key/d` being inserted below the entry: one group per level down to the
    /// level `m` where the two rules part (or one ends). The chain is filled with the record's
    /// fallback, linked within itself and given the record's rule at level `m` (as leaves, or
    /// as a fresh copy of the record) before its top is published with Release; the old record
    /// is retired, unchanged, for readers still on it. Returns the group at `m` and `m`.
    fn split(
        &mut self,
        node: Node,
        i: usize,
        k: u32,
        t: u32,
        key: u128,
        d: u32,
    ) -> Result<(Node, u32), RouteError> {
        let record = self.record(t);
        let fallback_depth = self.shadow(node, i);
        let top = self.take_group()?;
        let mut group = top;
        let mut level = k + 1;
        loop {
            let g = Node::Group(group);
            for j in 0..group_len::<F>() {
                self.store(g, j, record.fallback, fallback_depth, Ordering::Relaxed);
            }
            self.below[group as usize] = 2;
            let other_below = record.depth > end::<F>(level);
            let j = index::<F>(record.key, level);
            if !other_below || d <= end::<F>(level) || j != index::<F>(key, level) {
                break;
            }
            let next = self.take_group()?;
            self.store(g, j, EXT | next, 0, Ordering::Relaxed);
            group = next;
            level += 1;
        }
        let bottom = Node::Group(group);
        if record.depth <= end::<F>(level) {
            let first = index::<F>(record.key, level);
            for j in first..first + (1 << (end::<F>(level) - record.depth)) {
                self.store(
                    bottom,
                    j,
                    record.value,
                    record.depth as u8,
                    Ordering::Relaxed,
                );
            }
        } else {
            let copy = self.new_record(record)?;
            let j = index::<F>(record.key, level);
            self.store(bottom, j, TAIL | copy, fallback_depth, Ordering::Relaxed);
        }
        self.store(node, i, EXT | top, 0, Ordering::Release);
        self.retire(Slot::Tail(t));
        Ok((bottom, level))
    }

    /// Writes the leaf `entry` of depth `d` into `(node, i)` and, below a link, into every entry
    /// and fallback of the subtree that no longer rule holds.
    fn install(&mut self, node: Node, i: usize, d: u8, entry: u32) {
        match kind(self.load(node, i)) {
            Kind::Group(g) => {
                for j in 0..group_len::<F>() {
                    self.install(Node::Group(g), j, d, entry);
                }
            }
            Kind::Tail(t) => {
                if self.shadow(node, i) <= d {
                    self.tail_store(t, TAIL_FALLBACK, entry);
                    self.set_shadow(node, i, d);
                }
            }
            Kind::Empty => self.store(node, i, entry, d, Ordering::Release),
            Kind::Leaf => {
                if self.shadow(node, i) <= d {
                    self.store(node, i, entry, d, Ordering::Release);
                }
            }
        }
    }

    /// Replaces, in `(node, i)` and the subtree below it, what the removed rule of depth `d`
    /// wrote by the covering rule's `replacement` (or empty).
    fn uninstall(&mut self, node: Node, i: usize, d: u8, replacement: u32, replacement_depth: u8) {
        match kind(self.load(node, i)) {
            Kind::Group(g) => {
                for j in 0..group_len::<F>() {
                    self.uninstall(Node::Group(g), j, d, replacement, replacement_depth);
                }
            }
            Kind::Tail(t) => {
                if self.record(t).fallback != EMPTY && self.shadow(node, i) <= d {
                    self.tail_store(t, TAIL_FALLBACK, replacement);
                    self.set_shadow(node, i, replacement_depth);
                }
            }
            Kind::Empty => {}
            Kind::Leaf => {
                if self.shadow(node, i) <= d {
                    self.store(node, i, replacement, replacement_depth, Ordering::Release);
                }
            }
        }
    }

    /// After a removal along `path` (parent entry and group per level, top down), replaces from
    /// the bottom up each group with no rule below it by its common leaf, and (with tails) each
    /// group with one rule below it by that rule's tail.
    fn normalize(&mut self, path: &[(Node, usize, u32)], key: u128) {
        for (k, &(parent, i, g)) in path.iter().enumerate().rev() {
            let level = k as u32 + 1;
            let group = Node::Group(g);
            let (entry, depth) = match self.below[g as usize] {
                0 => (self.load(group, 0), self.shadow(group, 0)),
                1 if F::TAILS => match self.lone_rule(g, level, key) {
                    Some((t, depth)) => (TAIL | t, depth),
                    None => break,
                },
                _ => break,
            };
            self.store(parent, i, entry, depth, Ordering::Release);
            self.retire(Slot::Group(g));
        }
    }

    /// The tail record (and fallback depth) standing for the one rule in group `g` at `level`,
    /// whose range is that of `key`: the group's own tail link if the rule lies deeper, else a
    /// new record for the rule ending in the group. `None` if the group does not have that
    /// shape or no record is free (the group then stays, which is correct, only larger).
    ///
    /// Moving a record up is safe for readers still in `g`: every later change to the record at
    /// its new place comes from a rule covering the whole parent entry, hence the group too.
    fn lone_rule(&mut self, g: u32, level: u32, key: u128) -> Option<(u32, u8)> {
        let group = Node::Group(g);
        let mut tail = None;
        let mut first_leaf = None;
        let mut inherited = None;
        for j in 0..group_len::<F>() {
            let entry = self.load(group, j);
            let depth = self.shadow(group, j);
            match kind(entry) {
                Kind::Group(_) => return None,
                Kind::Tail(t) if tail.is_none() => tail = Some((t, depth)),
                Kind::Tail(_) => return None,
                Kind::Leaf if u32::from(depth) > start::<F>(level) => {
                    first_leaf.get_or_insert(j);
                }
                Kind::Leaf | Kind::Empty => {
                    inherited.get_or_insert(j);
                }
            }
        }
        match (tail, first_leaf, inherited) {
            (Some(found), None, _) => Some(found),
            (None, Some(j), Some(other)) => {
                let depth = self.shadow(group, j);
                let bits = (j as u128) << (F::WIDTH - end::<F>(level));
                let fallback_depth = self.shadow(group, other);
                let record = Record {
                    key: mask::<F>(mask::<F>(key, start::<F>(level)) | bits, u32::from(depth)),
                    depth: u32::from(depth),
                    value: self.load(group, j),
                    fallback: self.load(group, other),
                };
                let t = self.new_record(record).ok()?;
                Some((t, fallback_depth))
            }
            _ => None,
        }
    }

    /// The entry and depth of the longest rule strictly shorter than `d` covering `key`.
    fn covering(&self, key: u128, d: u32) -> (u32, u8) {
        for shorter in (0..d).rev() {
            let rules = &self.rules[shorter as usize];
            if rules.is_empty() {
                continue;
            }
            if let Some(&value) = rules.get(&mask::<F>(key, shorter)) {
                return (VALID | value, shorter as u8);
            }
        }
        (EMPTY, 0)
    }

    fn take_group(&mut self) -> Result<u32, RouteError> {
        // Never fails after `check_pools`.
        self.free_groups.pop().ok_or(RouteError::PoolExhausted {
            needed: 1,
            free: 0,
            retired: self.retired_groups,
        })
    }

    /// Writes a record into a free tail slot (Relaxed: it is published by a later Release
    /// store of its link).
    fn new_record(&mut self, record: Record) -> Result<u32, RouteError> {
        let t = self.free_tails.pop().ok_or(RouteError::TailsExhausted {
            needed: 1,
            free: 0,
            retired: self.retired_tails,
        })?;
        let words = [
            (record.key >> 96) as u32,
            (record.key >> 64) as u32,
            (record.key >> 32) as u32,
            record.key as u32,
            record.depth,
            record.value,
            record.fallback,
            0,
        ];
        let base = t as usize * TAIL_WORDS;
        for (slot, word) in self.table.tails[base..base + TAIL_WORDS].iter().zip(words) {
            slot.store(word, Ordering::Relaxed);
        }
        Ok(t)
    }

    fn record(&self, t: u32) -> Record {
        let base = t as usize * TAIL_WORDS;
        let w = |n: usize| self.table.tails[base + n].load(Ordering::Relaxed);
        Record {
            key: (0..4).fold(0u128, |k, n| k << 32 | u128::from(w(n))),
            depth: w(TAIL_DEPTH),
            value: w(TAIL_VALUE),
            fallback: w(TAIL_FALLBACK),
        }
    }

    /// Changes one word (value or fallback) of a linked record in place.
    fn tail_store(&self, t: u32, word: usize, entry: u32) {
        self.table.tails[t as usize * TAIL_WORDS + word].store(entry, Ordering::Release);
    }

    fn retire(&mut self, slot: Slot) {
        match slot {
            Slot::Group(_) => self.retired_groups += 1,
            Slot::Tail(_) => self.retired_tails += 1,
        }
        self.retired.push_back((self.epoch, slot));
    }

    /// Flat index of `(node, i)` in level 0 or the pool. `i` is below the node's size by
    /// construction (masked key bits) and `g` below the pool size (taken from the free list).
    fn flat(node: Node, i: usize) -> usize {
        match node {
            Node::Root => i,
            Node::Group(g) => g as usize * group_len::<F>() + i,
        }
    }

    fn load(&self, node: Node, i: usize) -> u32 {
        let at = Self::flat(node, i);
        // The writer is the only thread that stores: Relaxed reads its own last store.
        match node {
            Node::Root => self.table.level0[at].load(Ordering::Relaxed),
            Node::Group(_) => self.table.groups[at].load(Ordering::Relaxed),
        }
    }

    fn shadow(&self, node: Node, i: usize) -> u8 {
        let at = Self::flat(node, i);
        match node {
            Node::Root => self.depth0[at],
            Node::Group(_) => self.depthg[at],
        }
    }

    fn set_shadow(&mut self, node: Node, i: usize, depth: u8) {
        let at = Self::flat(node, i);
        match node {
            Node::Root => self.depth0[at] = depth,
            Node::Group(_) => self.depthg[at] = depth,
        }
    }

    fn store(&mut self, node: Node, i: usize, entry: u32, depth: u8, order: Ordering) {
        self.set_shadow(node, i, depth);
        let at = Self::flat(node, i);
        match node {
            Node::Root => self.table.level0[at].store(entry, order),
            Node::Group(_) => self.table.groups[at].store(entry, order),
        }
    }
}

impl<F: Family> fmt::Debug for Writer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("epoch", &self.epoch)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// 6-bit loom families with levels of 2, 2 and 2 bits, small enough for loom to explore:
/// [`Tiny`] without tails (like IPv4), [`TinyTails`] with (like IPv6).
#[cfg(loom)]
mod tiny {
    use super::super::private::Layout;
    use super::{Family, Table};

    /// A 6-bit family without tails.
    #[derive(Debug)]
    pub struct Tiny;

    /// A 6-bit family with tails.
    #[derive(Debug)]
    pub struct TinyTails;

    impl Layout for Tiny {
        const WIDTH: u32 = 6;
        const FIRST: u32 = 2;
        const STRIDE: u32 = 2;
        const TAILS: bool = false;
    }

    impl Layout for TinyTails {
        const WIDTH: u32 = 6;
        const FIRST: u32 = 2;
        const STRIDE: u32 = 2;
        const TAILS: bool = true;
    }

    impl Family for Tiny {
        type Addr = u8;
        fn key(addr: u8) -> u128 {
            u128::from(addr & 0x3f)
        }
    }

    impl Family for TinyTails {
        type Addr = u8;
        fn key(addr: u8) -> u128 {
            u128::from(addr & 0x3f)
        }
    }

    impl Table<Tiny> {
        /// Longest-prefix match of a 6-bit address.
        pub fn lookup(&self, addr: u8) -> Option<u32> {
            self.lookup_key(Tiny::key(addr))
        }
    }

    impl Table<TinyTails> {
        /// Longest-prefix match of a 6-bit address.
        pub fn lookup(&self, addr: u8) -> Option<u32> {
            self.lookup_key(TinyTails::key(addr))
        }
    }
}

#[cfg(loom)]
pub use tiny::{Tiny, TinyTails};
