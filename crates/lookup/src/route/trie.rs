//! The multibit trie both families share: the atomic tables readers see, and the control-side
//! writer running `rte_lpm`'s add/delete algorithm generalised from two levels to any number.
//!
//! Level 0 has `2^FIRST` entries indexed by the first `FIRST` bits of the key; every further
//! level is a group of `2^STRIDE` entries indexed by the next `STRIDE` bits. A prefix of depth
//! `d` *ends* at level `level_of(d)`, where it covers `2^(end − d)` consecutive entries
//! (controlled prefix expansion); its path to that level goes through one entry per level above,
//! each of which must point to a group (an *extended* entry).
//!
//! Invariant kept by every update: a linked group is never *uniform*, i.e. at least one of its
//! entries is extended or was written by a prefix ending inside the group. Uniform groups are
//! collapsed into their parent entry. Hence the groups in use at level `k ≥ 1` are exactly the
//! distinct `start(k)`-bit prefixes of the rules longer than `start(k)` bits.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;

use super::sync::{Arc, AtomicU32, Ordering};
use super::{Family, MAX_GROUPS, MAX_VALUE, RouteError};

/// Entry bit: a leaf holding a value.
pub(crate) const VALID: u32 = 1 << 31;
/// Entry bit: a link to the group in the payload.
pub(crate) const EXT: u32 = 1 << 30;
/// Entry payload: value or group index.
pub(crate) const PAYLOAD: u32 = EXT - 1;
/// Entry: no route covers these addresses.
const EMPTY: u32 = 0;

/// The value of a leaf entry; `None` for an empty (or, on a corrupted table, extended) entry.
#[inline]
pub(crate) fn leaf_value(entry: u32) -> Option<u32> {
    if entry & VALID != 0 {
        Some(entry & PAYLOAD)
    } else {
        None
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

/// The level at which a prefix of depth `d` ends.
const fn level_of<F: Family>(d: u32) -> u32 {
    if d <= F::FIRST {
        0
    } else {
        1 + (d - F::FIRST - 1) / F::STRIDE
    }
}

/// The entry index of `key` at level `k`.
#[inline]
const fn index<F: Family>(key: u128, k: u32) -> usize {
    let bits = if k == 0 { F::FIRST } else { F::STRIDE };
    ((key >> (F::WIDTH - end::<F>(k))) as usize) & ((1 << bits) - 1)
}

/// `key` with every bit past the first `d` cleared.
const fn mask<F: Family>(key: u128, d: u32) -> u128 {
    if d == 0 {
        0
    } else {
        key & (u128::MAX << (F::WIDTH - d))
    }
}

/// The atomic tables the workers read: level 0 and the group pool. Shared as `Arc<Table<F>>`.
pub struct Table<F> {
    level0: Box<[AtomicU32]>,
    groups: Box<[AtomicU32]>,
    family: PhantomData<F>,
}

fn atomics(n: usize) -> Box<[AtomicU32]> {
    (0..n).map(|_| AtomicU32::new(EMPTY)).collect()
}

impl<F: Family> Table<F> {
    fn new(groups: u32) -> Table<F> {
        Table {
            level0: atomics(1 << F::FIRST),
            groups: atomics(groups as usize * group_len::<F>()),
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

    /// Longest-prefix match of `key`: one Acquire load per level.
    #[inline]
    pub(crate) fn lookup_key(&self, key: u128) -> Option<u32> {
        let mut entry = self.level0.get(index::<F>(key, 0))?.load(Ordering::Acquire);
        let mut k = 0;
        while entry & EXT != 0 {
            k += 1;
            if k >= levels::<F>() {
                return None;
            }
            let at = ((entry & PAYLOAD) as usize) * group_len::<F>() + index::<F>(key, k);
            entry = self.groups.get(at)?.load(Ordering::Acquire);
        }
        leaf_value(entry)
    }

    /// Bytes of the atomic tables (level 0 and the whole preallocated pool).
    pub fn bytes(&self) -> usize {
        (self.level0.len() + self.groups.len()) * size_of::<AtomicU32>()
    }
}

impl<F> fmt::Debug for Table<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("level0", &self.level0.len())
            .field("pool_entries", &self.groups.len())
            .finish_non_exhaustive()
    }
}

/// Where an entry lives: level 0 or a group.
#[derive(Clone, Copy, Debug)]
enum Node {
    Root,
    Group(u32),
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
    /// Bytes of the atomic tables readers share (preallocated: level 0 and the whole pool).
    pub table_bytes: usize,
    /// Bytes of the used part of those tables: level 0 and the groups in use or retired.
    pub used_bytes: usize,
    /// Bytes of the writer's depth shadow (one byte per table entry, preallocated).
    pub shadow_bytes: usize,
}

/// The control thread's handle of a table: the only one that changes it.
///
/// `Send`, not `Clone`. Hands out read handles with [`Writer::table`].
pub struct Writer<F: Family> {
    table: Arc<Table<F>>,
    /// Depth of the rule that wrote each level-0 entry (0 for empty and extended entries).
    depth0: Vec<u8>,
    /// Depth of the rule that wrote each group entry.
    depthg: Vec<u8>,
    /// The rules, by depth: masked key → value.
    rules: Vec<BTreeMap<u128, u32>>,
    routes: usize,
    /// Free groups (a stack).
    free: Vec<u32>,
    /// Unlinked groups with the epoch of their unlinking, oldest first.
    retired: VecDeque<(u64, u32)>,
    epoch: u64,
    capacity: u32,
}

impl<F: Family> Writer<F> {
    /// Builds an empty table whose pool has `groups` groups of `2^STRIDE` entries (256 for both
    /// families), all allocated now.
    pub fn new(groups: u32) -> Result<Writer<F>, RouteError> {
        if groups > MAX_GROUPS {
            return Err(RouteError::PoolTooLarge { groups });
        }
        let table = Table::new(groups);
        Ok(Writer {
            depth0: vec![0; table.level0.len()],
            depthg: vec![0; table.groups.len()],
            table: Arc::new(table),
            rules: (0..=F::WIDTH).map(|_| BTreeMap::new()).collect(),
            routes: 0,
            free: (0..groups).rev().collect(),
            retired: VecDeque::new(),
            epoch: 0,
            capacity: groups,
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
    /// [`MAX_VALUE`](super::MAX_VALUE), or the pool lacks the groups the prefix needs (at most
    /// one per level above the one it ends at).
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
        let target = level_of::<F>(d);
        let needed = self.missing_groups(key, target);
        if needed > self.free.len() {
            return Err(RouteError::PoolExhausted {
                needed,
                free: self.free.len(),
                retired: self.retired.len(),
            });
        }
        let previous = self.rules[d as usize].insert(key, value);
        if previous.is_none() {
            self.routes += 1;
        }
        let mut node = Node::Root;
        for k in 0..target {
            node = self.expand(node, index::<F>(key, k))?;
        }
        let first = index::<F>(key, target);
        for i in first..first + (1 << (end::<F>(target) - d)) {
            self.install(node, i, d as u8, VALID | value);
        }
        Ok(previous)
    }

    /// Removes `addr/len`; returns its value, or `None` if there was no such route. Host bits of
    /// `addr` beyond `len` are ignored. Groups left uniform are unlinked and retired at the
    /// current epoch.
    pub fn remove(&mut self, addr: F::Addr, len: u8) -> Result<Option<u32>, RouteError> {
        let d = self.depth(len)?;
        let key = mask::<F>(F::key(addr), d);
        let Some(old) = self.rules[d as usize].remove(&key) else {
            return Ok(None);
        };
        self.routes -= 1;
        let (replacement, replacement_depth) = self.covering(key, d);
        let target = level_of::<F>(d);
        let mut path = Vec::with_capacity(target as usize);
        let mut node = Node::Root;
        for k in 0..target {
            let i = index::<F>(key, k);
            let entry = self.load(node, i);
            if entry & EXT == 0 {
                // Unreachable while the invariant holds: a rule's path is always extended.
                return Ok(Some(old));
            }
            path.push((node, i));
            node = Node::Group(entry & PAYLOAD);
        }
        let first = index::<F>(key, target);
        for i in first..first + (1 << (end::<F>(target) - d)) {
            self.uninstall(node, i, d as u8, replacement, replacement_depth);
        }
        // Collapse uniform groups bottom-up along the path.
        for k in (1..=target).rev() {
            let Node::Group(g) = node else { break };
            if !self.uniform(g, start::<F>(k)) {
                break;
            }
            let (parent, i) = path[k as usize - 1];
            let first_entry = self.load(node, 0);
            let first_depth = self.shadow(node, 0);
            self.store(parent, i, first_entry, first_depth, Ordering::Release);
            self.retired.push_back((self.epoch, g));
            node = parent;
        }
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

    /// Sets the epoch with which groups unlinked from now on are tagged: the caller's QSBR
    /// generation current at the time of the next updates. Epochs never go back: a value below
    /// the current epoch is ignored.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// The epoch groups unlinked now are tagged with.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Returns to the pool every retired group tagged with an epoch below `quiescent`; returns
    /// how many. Call it with an epoch at which every reader has been quiescent: every online
    /// reader has passed a quiescent point after the writer's epoch was set to `quiescent`
    /// (with `espada-qsbr`: the oldest generation adopted by an online reader).
    pub fn reclaim(&mut self, quiescent: u64) -> usize {
        let mut freed = 0;
        while let Some(&(tag, g)) = self.retired.front() {
            if tag >= quiescent {
                break;
            }
            self.retired.pop_front();
            self.free.push(g);
            freed += 1;
        }
        freed
    }

    /// Figures of the table.
    pub fn stats(&self) -> TableStats {
        let capacity = self.capacity as usize;
        let in_use = capacity - self.free.len() - self.retired.len();
        let group_bytes = group_len::<F>() * size_of::<AtomicU32>();
        TableStats {
            routes: self.routes,
            groups_capacity: capacity,
            groups_in_use: in_use,
            groups_free: self.free.len(),
            groups_retired: self.retired.len(),
            table_bytes: self.table.bytes(),
            used_bytes: self.table.level0.len() * size_of::<AtomicU32>()
                + (in_use + self.retired.len()) * group_bytes,
            shadow_bytes: self.depth0.len() + self.depthg.len(),
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

    /// Groups an insert of `key` ending at level `target` would allocate.
    fn missing_groups(&self, key: u128, target: u32) -> usize {
        let mut node = Node::Root;
        for k in 0..target {
            let entry = self.load(node, index::<F>(key, k));
            if entry & EXT == 0 {
                return (target - k) as usize;
            }
            node = Node::Group(entry & PAYLOAD);
        }
        0
    }

    /// The group entry `(node, i)` links to, after linking a new one filled with copies of the
    /// entry if it was a leaf or empty.
    fn expand(&mut self, node: Node, i: usize) -> Result<Node, RouteError> {
        let entry = self.load(node, i);
        if entry & EXT != 0 {
            return Ok(Node::Group(entry & PAYLOAD));
        }
        let Some(g) = self.free.pop() else {
            // Unreachable: `insert` checked the pool first.
            return Err(RouteError::PoolExhausted {
                needed: 1,
                free: 0,
                retired: self.retired.len(),
            });
        };
        let depth = self.shadow(node, i);
        let group = Node::Group(g);
        // Fill first (Relaxed), then publish the link with Release: a reader that loads the
        // link with Acquire sees the whole fill.
        for j in 0..group_len::<F>() {
            self.store(group, j, entry, depth, Ordering::Relaxed);
        }
        self.store(node, i, EXT | g, 0, Ordering::Release);
        Ok(group)
    }

    /// Writes the leaf `entry` of depth `d` into `(node, i)` and, below an extended entry, into
    /// every entry of the subtree that no longer prefix holds.
    fn install(&mut self, node: Node, i: usize, d: u8, entry: u32) {
        let current = self.load(node, i);
        if current & EXT != 0 {
            let child = Node::Group(current & PAYLOAD);
            for j in 0..group_len::<F>() {
                self.install(child, j, d, entry);
            }
        } else if current == EMPTY || self.shadow(node, i) <= d {
            self.store(node, i, entry, d, Ordering::Release);
        }
    }

    /// Replaces, in `(node, i)` and the subtree below it, what the removed prefix of depth `d`
    /// wrote by the covering rule's `replacement` (or empty).
    fn uninstall(&mut self, node: Node, i: usize, d: u8, replacement: u32, replacement_depth: u8) {
        let current = self.load(node, i);
        if current & EXT != 0 {
            let child = Node::Group(current & PAYLOAD);
            for j in 0..group_len::<F>() {
                self.uninstall(child, j, d, replacement, replacement_depth);
            }
        } else if current != EMPTY && self.shadow(node, i) <= d {
            self.store(node, i, replacement, replacement_depth, Ordering::Release);
        }
    }

    /// True when every entry of group `g` (at a level starting at bit `level_start`) is the same
    /// leaf or empty entry inherited from above: the group can be replaced by that entry.
    fn uniform(&self, g: u32, level_start: u32) -> bool {
        let node = Node::Group(g);
        let first = self.load(node, 0);
        let depth = self.shadow(node, 0);
        if first & EXT != 0 || (first != EMPTY && u32::from(depth) > level_start) {
            return false;
        }
        (1..group_len::<F>()).all(|j| self.load(node, j) == first && self.shadow(node, j) == depth)
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

    fn store(&mut self, node: Node, i: usize, entry: u32, depth: u8, order: Ordering) {
        let at = Self::flat(node, i);
        match node {
            Node::Root => {
                self.depth0[at] = depth;
                self.table.level0[at].store(entry, order);
            }
            Node::Group(_) => {
                self.depthg[at] = depth;
                self.table.groups[at].store(entry, order);
            }
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

/// A 6-bit family with levels of 2, 2 and 2 bits, small enough for loom to explore.
#[cfg(loom)]
#[derive(Debug)]
pub struct Tiny;

#[cfg(loom)]
impl super::private::Layout for Tiny {
    const WIDTH: u32 = 6;
    const FIRST: u32 = 2;
    const STRIDE: u32 = 2;
}

#[cfg(loom)]
impl Family for Tiny {
    type Addr = u8;
    fn key(addr: u8) -> u128 {
        u128::from(addr & 0x3f)
    }
}

#[cfg(loom)]
impl Table<Tiny> {
    /// Longest-prefix match of a 6-bit address.
    pub fn lookup(&self, addr: u8) -> Option<u32> {
        self.lookup_key(Tiny::key(addr))
    }
}
