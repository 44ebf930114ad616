//! A fixed-capacity multimap of 32-bit keys to 31-bit values, read by every worker without locks
//! while the control thread adds and removes single entries: the data plane's map of outbound
//! SPIs to tunnels (to recognise ICMP errors about packets it sent) and of peer addresses to
//! tunnels (to classify unknown SPIs), neither of which is on the per-packet fast path.
//!
//! Open addressing with linear probing and Fibonacci hashing (no SipHash). Every bucket is one
//! `AtomicU64`:
//!
//! ```text
//!  63          32  31   30               0
//! +--------------+----+------------------+
//! |     key      |LIVE|      value       |     0 = empty, 1 = deleted
//! +--------------+----+------------------+
//! ```
//!
//! A key may have several values (two tunnels to one peer, or a fingerprint shared by two IPv6
//! peers): [`KeyMap::find`] offers each value stored under the key to a predicate, so a caller
//! whose key is a fingerprint checks the value against its authoritative record. Readers stop at
//! an empty bucket or after the longest probe sequence any insert has used (kept in an atomic
//! and only ever raised), so deleted buckets never make a lookup scan the whole table.
//!
//! Writers: one thread at a time (the control thread: writes take `&self` so the map can be
//! shared in an `Arc`, and two concurrent writers could corrupt it); each change is one `Release` store, and
//! readers load with `Acquire`, so whatever the writer prepared before inserting an entry is
//! visible to a reader that finds it. All memory is allocated in [`KeyMap::new`].

use std::fmt;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The largest value a [`KeyMap`] holds.
pub const MAX_VALUE: u32 = (1 << 31) - 1;

const EMPTY: u64 = 0;
const DELETED: u64 = 1;
const LIVE: u64 = 1 << 31;
/// Fibonacci hashing multiplier (2^64 / φ).
const FIB: u64 = 0x9E37_79B9_7F4A_7C15;

/// Why an insert was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The map holds its capacity of entries.
    Full,
    /// The value exceeds [`MAX_VALUE`].
    ValueTooLarge(u32),
    /// This key already maps to this value.
    Duplicate {
        /// The key.
        key: u32,
        /// The value.
        value: u32,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Full => f.write_str("the map is full"),
            MapError::ValueTooLarge(v) => write!(f, "value {v} exceeds {MAX_VALUE}"),
            MapError::Duplicate { key, value } => {
                write!(f, "{key:#010x} already maps to {value}")
            }
        }
    }
}

impl std::error::Error for MapError {}

/// See the module documentation.
pub struct KeyMap {
    buckets: Box<[AtomicU64]>,
    /// `64 - log2(buckets.len())`.
    shift: u32,
    /// The longest probe sequence (in buckets, from the home bucket) of any entry ever stored.
    max_probe: AtomicU32,
    capacity: usize,
    /// Entries stored (written by the writer only).
    len: AtomicU32,
}

#[inline]
fn key_of(w: u64) -> u32 {
    (w >> 32) as u32
}

impl KeyMap {
    /// An empty map for up to `capacity` entries (at most half the buckets are ever live).
    pub fn new(capacity: usize) -> KeyMap {
        let n = (2 * capacity.max(1)).next_power_of_two();
        KeyMap {
            buckets: (0..n).map(|_| AtomicU64::new(EMPTY)).collect(),
            shift: 64 - n.trailing_zeros(),
            max_probe: AtomicU32::new(0),
            capacity: capacity.max(1),
            len: AtomicU32::new(0),
        }
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    /// True when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the bucket array.
    pub fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<AtomicU64>()
    }

    #[inline]
    fn home(&self, key: u32) -> usize {
        (u64::from(key).wrapping_mul(FIB) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The first value stored under `key` that `accept` accepts (any thread).
    #[inline]
    pub fn find(&self, key: u32, mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        let limit = self.max_probe.load(Ordering::Acquire) as usize;
        let mut b = self.home(key);
        for _ in 0..=limit {
            let w = self.buckets[b].load(Ordering::Acquire);
            if w == EMPTY {
                return None;
            }
            if w & LIVE != 0 && key_of(w) == key {
                let v = (w as u32) & MAX_VALUE;
                if accept(v) {
                    return Some(v);
                }
            }
            b = (b + 1) & self.mask();
        }
        None
    }

    /// The first value stored under `key` (any thread).
    #[inline]
    pub fn get(&self, key: u32) -> Option<u32> {
        self.find(key, |_| true)
    }

    /// Control thread: adds `key → value` (`Release`).
    pub fn insert(&self, key: u32, value: u32) -> Result<(), MapError> {
        if value > MAX_VALUE {
            return Err(MapError::ValueTooLarge(value));
        }
        if self.len() >= self.capacity {
            return Err(MapError::Full);
        }
        let word = (u64::from(key) << 32) | LIVE | u64::from(value);
        let mut b = self.home(key);
        let mut free = None;
        // At most half the buckets are live, so an empty bucket ends every probe sequence.
        for probe in 0..self.buckets.len() {
            let w = self.buckets[b].load(Ordering::Relaxed);
            if w == word {
                return Err(MapError::Duplicate { key, value });
            }
            if w == DELETED && free.is_none() {
                free = Some((b, probe));
            }
            if w == EMPTY {
                free.get_or_insert((b, probe));
                break;
            }
            b = (b + 1) & self.mask();
        }
        let (at, probe) = free.ok_or(MapError::Full)?;
        // Raise the readers' probe limit before the entry can be found beyond the old limit.
        if probe as u32 > self.max_probe.load(Ordering::Relaxed) {
            self.max_probe.store(probe as u32, Ordering::Release);
        }
        self.buckets[at].store(word, Ordering::Release);
        self.len
            .store(self.len.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Control thread: removes `key → value`; false when it was not stored.
    pub fn remove(&self, key: u32, value: u32) -> bool {
        let word = (u64::from(key) << 32) | LIVE | u64::from(value & MAX_VALUE);
        let limit = self.max_probe.load(Ordering::Relaxed) as usize;
        let mut b = self.home(key);
        for _ in 0..=limit {
            let w = self.buckets[b].load(Ordering::Relaxed);
            if w == EMPTY {
                return false;
            }
            if w == word {
                self.buckets[b].store(DELETED, Ordering::Release);
                self.len
                    .store(self.len.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
                self.trim(b);
                return true;
            }
            b = (b + 1) & self.mask();
        }
        false
    }

    /// Deleted buckets just before an empty one become empty again, so probe sequences that
    /// end there stay short.
    fn trim(&self, mut b: usize) {
        for _ in 0..self.buckets.len() {
            let next = self.buckets[(b + 1) & self.mask()].load(Ordering::Relaxed);
            if next != EMPTY || self.buckets[b].load(Ordering::Relaxed) != DELETED {
                return;
            }
            self.buckets[b].store(EMPTY, Ordering::Release);
            b = (b + self.mask()) & self.mask();
        }
    }
}

impl fmt::Debug for KeyMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyMap")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .field("max_probe", &self.max_probe.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn several_values_per_key_and_removal() {
        let m = KeyMap::new(8);
        m.insert(7, 1).unwrap();
        m.insert(7, 2).unwrap();
        assert_eq!(
            m.insert(7, 2),
            Err(MapError::Duplicate { key: 7, value: 2 })
        );
        assert_eq!(m.find(7, |v| v == 2), Some(2));
        assert_eq!(m.find(7, |v| v == 3), None);
        assert!(m.remove(7, 1));
        assert!(!m.remove(7, 1));
        assert_eq!(m.get(7), Some(2));
        assert_eq!(m.len(), 1);
        assert_eq!(
            m.insert(1, MAX_VALUE + 1),
            Err(MapError::ValueTooLarge(1 << 31))
        );
    }

    #[test]
    fn capacity_is_enforced() {
        let m = KeyMap::new(3);
        for k in 0..3 {
            m.insert(k, k).unwrap();
        }
        assert_eq!(m.insert(9, 9), Err(MapError::Full));
        assert!(m.remove(1, 1));
        m.insert(9, 9).unwrap();
    }

    /// Long churn against a `HashMap`: lookups stay right and bounded after many deletions.
    #[test]
    fn churn_matches_a_reference_and_probes_stay_short() {
        let m = KeyMap::new(1024);
        let mut want: HashMap<u32, u32> = HashMap::new();
        let mut x = 0x1234_5678u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let k = (next() % 4000) as u32;
            match want.get(&k).copied() {
                Some(v) => {
                    assert!(m.remove(k, v));
                    want.remove(&k);
                }
                None if want.len() < 1024 => {
                    let v = (next() as u32) & MAX_VALUE;
                    m.insert(k, v).unwrap();
                    want.insert(k, v);
                }
                None => {}
            }
        }
        for k in 0..4000 {
            assert_eq!(m.get(k), want.get(&k).copied(), "key {k}");
        }
        assert_eq!(m.len(), want.len());
        assert!(
            m.max_probe.load(Ordering::Relaxed) < 64,
            "probe limit grew to {}",
            m.max_probe.load(Ordering::Relaxed)
        );
    }
}
