//! The inbound SA directory (RFC 4301 §4.4.2 SAD lookup by SPI): SPI → owner, slot and tunnel
//! by a direct index and one compare, read by every worker without locks while the control
//! thread changes single entries (issue 13, deliver items 2 and 3).
//!
//! # Layout
//!
//! One preallocated array of `2^(W+S)` words ([`crate::spi::SpiLayout`]), indexed by the low
//! `W + S` bits of the SPI — `slot << W | owner`, so each worker's slots interleave. Each word is
//! one `AtomicU64`:
//!
//! ```text
//!  63            32 31  30 29                 0
//! +----------------+------+--------------------+
//! |      SPI       | state|      tunnel        |     state: 00 Empty, 01 Live, 10 Tombstone
//! +----------------+------+--------------------+     Empty is the all-zero word
//! ```
//!
//! [`Directory::lookup`] loads the word at `spi & mask` and compares its SPI field with the
//! packet's: the tag bits make a retired SPI whose slot was reused miss. Static lab SPIs that
//! do not follow the layout occupy a slot like any SA (its word holds the static SPI) and are
//! found through a small open-addressing table (linear probing, Fibonacci hashing — no
//! SipHash) whose buckets are also single words, `SPI << 32 | index of the slot word`.
//! Capacities are fixed at construction: nothing is allocated or freed afterwards.
//!
//! # Memory ordering
//!
//! *Writers* (the control thread) change one word at a time with a compare-and-swap whose
//! success ordering is `Release`; *readers* (workers) load with `Acquire`.
//!
//! - **No torn entries.** SPI, state and tunnel live in one 64-bit atomic: a worker sees the
//!   word before or after a change, never a mix — Empty, or the whole new entry. The SPI
//!   compare is inside the word, so whichever version a worker sees, the tunnel it returns
//!   belongs to the SPI it asked for.
//! - **Publication.** Everything the control thread wrote before installing an entry (the
//!   tunnel's record, the SA it filled in the owner's slab, …) happens-before a worker's use of
//!   the entry: the `Release` CAS of the install synchronizes with the `Acquire` load that
//!   returns it. (On x86-64 both compile to plain moves; the CAS is on the control thread.)
//! - **Lifecycle.** Live → Tombstone → Empty → a new SPI on the same slot are successive values
//!   of one location, so every worker sees them in that order (coherence): once a worker saw
//!   the new SPI it can no longer see the old one, and the old SPI never matches the new entry
//!   because their tags differ.
//! - **Static SPIs: two words.** Install writes the slot word, then the bucket (`Release`);
//!   a reader loads the bucket, then the slot word (`Acquire` both), and still compares the
//!   SPI, so a bucket that outlives its entry or points at a reused slot gives "unknown",
//!   never another SA; a reader that sees the bucket also sees the slot word it was published
//!   after. Removal empties the slot word first, then the bucket.
//!
//! Writes must come from one thread at a time (the control thread): the CAS makes a raced
//! write fail rather than overwrite, but the static table's probe-then-store is not atomic.
//! The model is checked with loom (`RUSTFLAGS="--cfg loom" cargo test -p espada-lookup
//! --release --test sad_loom`).

use std::fmt;

#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};

use crate::spi::{MIN_SPI, SpiLayout, SpiSlot};

/// The largest tunnel id an entry holds (30 bits).
pub const MAX_TUNNEL: u32 = (1 << 30) - 1;

/// The most static SPIs a directory holds; larger capacities are clamped to this.
pub const MAX_STATIC_SPIS: usize = 1 << 16;

const STATE_SHIFT: u32 = 30;
const STATE_MASK: u64 = 0b11 << STATE_SHIFT;
const LIVE: u64 = 0b01 << STATE_SHIFT;
const TOMBSTONE: u64 = 0b10 << STATE_SHIFT;
const TUNNEL_MASK: u64 = MAX_TUNNEL as u64;
/// An empty slot word or bucket.
const EMPTY: u64 = 0;
/// A bucket whose static SPI was removed: probes go on past it. Its SPI field is 0, which no
/// query reaches (queries below [`MIN_SPI`] stop first).
const DELETED: u64 = 1;
/// Fibonacci hashing multiplier (2^64 / φ).
const FIB: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SPI field of a slot word or bucket.
#[inline]
fn spi_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// What a worker learns of an inbound SPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A live SA: decrypt on `owner` with the SA in `slot` of its slab.
    Live {
        /// Owner worker.
        owner: u16,
        /// Slot in the owner's slab.
        slot: u32,
        /// The tunnel the SA protects.
        tunnel: u32,
    },
    /// A retired SPI of `tunnel`: a late packet after a rekey or delete.
    Tombstone {
        /// The tunnel the SA protected.
        tunnel: u32,
    },
    /// No SA has this SPI.
    Unknown,
}

/// The content of one slot word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// No SA.
    Empty,
    /// A live SA.
    Live {
        /// Its SPI.
        spi: u32,
        /// Its tunnel.
        tunnel: u32,
    },
    /// A retired SA's SPI, kept to classify late packets.
    Tombstone {
        /// Its SPI.
        spi: u32,
        /// Its tunnel.
        tunnel: u32,
    },
}

impl Entry {
    fn from_word(w: u64) -> Entry {
        let (spi, tunnel) = (spi_of(w), (w & TUNNEL_MASK) as u32);
        match w & STATE_MASK {
            LIVE => Entry::Live { spi, tunnel },
            TOMBSTONE => Entry::Tombstone { spi, tunnel },
            _ => Entry::Empty,
        }
    }
}

/// Why a change to the directory was refused. Nothing is changed when one is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SadError {
    /// The owner or slot is outside the layout.
    NoSuchSlot {
        /// Owner worker.
        owner: u16,
        /// Slot.
        slot: u32,
    },
    /// An SPI in 0..=255 (RFC 4303 §2.1).
    ReservedSpi(u32),
    /// A tunnel id above [`MAX_TUNNEL`].
    TunnelTooLarge(u32),
    /// The SPI is already in the directory (live or tombstone).
    Duplicate(u32),
    /// The slot holds another entry: an occupied slot is refused, never overwritten.
    Occupied(Entry),
    /// The slot does not hold this SPI.
    NotFound(u32),
    /// The SPI is a tombstone already.
    NotLive(u32),
    /// No room left in the static SPI table.
    StaticTableFull,
}

impl fmt::Display for SadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SadError::NoSuchSlot { owner, slot } => write!(f, "no slot {slot} on worker {owner}"),
            SadError::ReservedSpi(s) => write!(f, "SPI {s} is reserved (RFC 4303 §2.1)"),
            SadError::TunnelTooLarge(t) => write!(f, "tunnel id {t} exceeds {MAX_TUNNEL}"),
            SadError::Duplicate(s) => write!(f, "SPI {s:#010x} is already in the directory"),
            SadError::Occupied(e) => write!(f, "the slot is occupied: {e:?}"),
            SadError::NotFound(s) => write!(f, "SPI {s:#010x} is not at that slot"),
            SadError::NotLive(s) => write!(f, "SPI {s:#010x} is not live"),
            SadError::StaticTableFull => f.write_str("the static SPI table is full"),
        }
    }
}

impl std::error::Error for SadError {}

/// The inbound SA directory shared by the control thread (writes) and every worker (reads),
/// typically in an `Arc`. See the module documentation for the layout and memory ordering.
pub struct Directory {
    layout: SpiLayout,
    /// `2^(W+S) - 1`.
    index_mask: u32,
    /// `2^W - 1`.
    owner_mask: u32,
    /// `W`.
    worker_bits: u32,
    /// Slot words, `2^(W+S)` of them, indexed by `slot << W | owner`.
    slots: Box<[AtomicU64]>,
    /// Static SPI buckets: 0 or a power of two ≥ 2, at most half full.
    statics: Box<[AtomicU64]>,
    /// `64 - log2(statics.len())`: the Fibonacci hash shift.
    hash_shift: u32,
    static_capacity: usize,
}

impl Directory {
    /// An empty directory for `layout` with room for `static_capacity` static SPIs (clamped
    /// to [`MAX_STATIC_SPIS`]). Allocates `8 · 2^(W+S)` bytes of slot words plus 16 bytes per
    /// static SPI of capacity (rounded up to a power of two), and nothing afterwards.
    pub fn new(layout: SpiLayout, static_capacity: usize) -> Directory {
        let static_capacity = static_capacity.min(MAX_STATIC_SPIS);
        let buckets = match static_capacity {
            0 => 0,
            n => (2 * n).next_power_of_two(),
        };
        let words = |n: usize| (0..n).map(|_| AtomicU64::new(EMPTY)).collect();
        Directory {
            layout,
            index_mask: layout.index_mask(),
            owner_mask: (1 << layout.worker_bits()) - 1,
            worker_bits: layout.worker_bits(),
            slots: words(1 << layout.index_bits()),
            statics: words(buckets),
            // Unused without buckets; 63 keeps the shift in range regardless.
            hash_shift: 64 - buckets.max(2).trailing_zeros(),
            static_capacity,
        }
    }

    /// The SPI layout.
    pub fn layout(&self) -> SpiLayout {
        self.layout
    }

    /// How many static SPIs the directory can hold.
    pub fn static_capacity(&self) -> usize {
        self.static_capacity
    }

    /// Bytes of the directory's arrays (slot words and static buckets).
    pub fn bytes(&self) -> usize {
        (self.slots.len() + self.statics.len()) * std::mem::size_of::<AtomicU64>()
    }

    /// The SA of an inbound SPI, for a worker: one `Acquire` load and one compare for an
    /// encoded SPI; a few more loads for a static SPI or an unknown one when static SPIs
    /// are configured.
    #[inline]
    pub fn lookup(&self, spi: u32) -> Lookup {
        let index = spi & self.index_mask;
        if let Some(cell) = self.slots.get(index as usize) {
            let w = cell.load(Ordering::Acquire);
            if spi_of(w) == spi && w & STATE_MASK != EMPTY {
                return self.hit(w, index);
            }
        }
        self.lookup_static(spi)
    }

    /// The directory word [`Directory::lookup`] reads first for `spi` (the only one for a dynamic
    /// SPI): for a prefetch ahead of the lookup.
    #[inline]
    pub fn word_of(&self, spi: u32) -> Option<&AtomicU64> {
        self.slots.get((spi & self.index_mask) as usize)
    }

    /// The content of `(owner, slot)`, or `None` outside the layout.
    pub fn entry(&self, owner: u16, slot: u32) -> Option<Entry> {
        let i = self.index(owner, slot).ok()?;
        Some(Entry::from_word(self.slots[i].load(Ordering::Acquire)))
    }

    /// True when `(owner, slot)` is inside the layout and holds no entry.
    pub fn is_empty(&self, owner: u16, slot: u32) -> bool {
        self.entry(owner, slot) == Some(Entry::Empty)
    }

    /// Control thread: `s` decrypts for `tunnel` from now on (`Release`: whatever was
    /// prepared for it before is visible to a worker that finds it). Refused when the slot is
    /// occupied or the SPI is already in the directory.
    pub fn install(&self, s: SpiSlot, tunnel: u32) -> Result<(), SadError> {
        if tunnel > MAX_TUNNEL {
            return Err(SadError::TunnelTooLarge(tunnel));
        }
        if s.spi < MIN_SPI {
            return Err(SadError::ReservedSpi(s.spi));
        }
        let i = self.index(s.owner, s.slot)?;
        if self.lookup(s.spi) != Lookup::Unknown {
            return Err(SadError::Duplicate(s.spi));
        }
        let word = (u64::from(s.spi) << 32) | LIVE | u64::from(tunnel);
        self.slots[i]
            .compare_exchange(EMPTY, word, Ordering::Release, Ordering::Relaxed)
            .map_err(|w| SadError::Occupied(Entry::from_word(w)))?;
        if self.is_static(s.spi, i)
            && let Err(e) = self.insert_bucket(s.spi, i)
        {
            // No reader can have matched the word: its SPI does not index it.
            self.slots[i].store(EMPTY, Ordering::Release);
            return Err(e);
        }
        Ok(())
    }

    /// Control thread: `s` stops decrypting and classifies late packets as a tombstone of the
    /// same tunnel.
    pub fn retire(&self, s: SpiSlot) -> Result<(), SadError> {
        let i = self.index(s.owner, s.slot)?;
        let w = self.slots[i].load(Ordering::Relaxed);
        match Entry::from_word(w) {
            Entry::Live { spi, .. } if spi == s.spi => {}
            Entry::Tombstone { spi, .. } if spi == s.spi => return Err(SadError::NotLive(spi)),
            _ => return Err(SadError::NotFound(s.spi)),
        }
        let tomb = (w & !STATE_MASK) | TOMBSTONE;
        self.slots[i]
            .compare_exchange(w, tomb, Ordering::Release, Ordering::Relaxed)
            .map(drop)
            .map_err(|_| SadError::NotFound(s.spi))
    }

    /// Control thread: forgets `s` (live or tombstone); its slot is empty afterwards.
    pub fn remove(&self, s: SpiSlot) -> Result<(), SadError> {
        let i = self.index(s.owner, s.slot)?;
        let w = self.slots[i].load(Ordering::Relaxed);
        if spi_of(w) != s.spi || w & STATE_MASK == EMPTY {
            return Err(SadError::NotFound(s.spi));
        }
        self.slots[i]
            .compare_exchange(w, EMPTY, Ordering::Release, Ordering::Relaxed)
            .map_err(|_| SadError::NotFound(s.spi))?;
        if self.is_static(s.spi, i) {
            self.delete_bucket(s.spi);
        }
        Ok(())
    }

    /// The position of `(owner, slot)` in `slots`.
    fn index(&self, owner: u16, slot: u32) -> Result<usize, SadError> {
        if owner < self.layout.workers() && slot < self.layout.slots_per_worker() {
            Ok(self.layout.index_of(owner, slot) as usize)
        } else {
            Err(SadError::NoSuchSlot { owner, slot })
        }
    }

    /// True when `spi` sits at a slot other than the one it encodes.
    fn is_static(&self, spi: u32, index: usize) -> bool {
        (spi & self.index_mask) as usize != index
    }

    /// The lookup result of slot word `w` at `index` that holds the SPI asked for.
    #[inline]
    fn hit(&self, w: u64, index: u32) -> Lookup {
        let tunnel = (w & TUNNEL_MASK) as u32;
        match w & STATE_MASK {
            // The owner mask keeps W ≤ 16 bits.
            LIVE => Lookup::Live {
                owner: (index & self.owner_mask) as u16,
                slot: index >> self.worker_bits,
                tunnel,
            },
            TOMBSTONE => Lookup::Tombstone { tunnel },
            _ => Lookup::Unknown,
        }
    }

    /// First bucket of `spi`'s probe sequence (only with a non-empty static table).
    fn home(&self, spi: u32) -> usize {
        (u64::from(spi).wrapping_mul(FIB) >> self.hash_shift) as usize
    }

    /// The fallback for SPIs not at the slot they encode: probe the static table.
    #[cold]
    #[inline(never)]
    fn lookup_static(&self, spi: u32) -> Lookup {
        let n = self.statics.len();
        if n == 0 || spi < MIN_SPI {
            return Lookup::Unknown;
        }
        let mut b = self.home(spi);
        for _ in 0..n {
            let w = self.statics[b].load(Ordering::Acquire);
            if w == EMPTY {
                break;
            }
            if spi_of(w) == spi {
                let index = w as u32;
                return match self.slots.get(index as usize) {
                    Some(cell) => {
                        let e = cell.load(Ordering::Acquire);
                        if spi_of(e) == spi {
                            self.hit(e, index)
                        } else {
                            Lookup::Unknown
                        }
                    }
                    None => Lookup::Unknown,
                };
            }
            b = (b + 1) & (n - 1);
        }
        Lookup::Unknown
    }

    /// Adds the bucket `spi → index` in the first free bucket of `spi`'s probe sequence.
    fn insert_bucket(&self, spi: u32, index: usize) -> Result<(), SadError> {
        let n = self.statics.len();
        let mut free = None;
        let mut b = if n == 0 { 0 } else { self.home(spi) };
        for _ in 0..n {
            let w = self.statics[b].load(Ordering::Relaxed);
            if w == EMPTY {
                free.get_or_insert(b);
                break;
            }
            if w == DELETED {
                free.get_or_insert(b);
            } else if spi_of(w) == spi {
                return Err(SadError::Duplicate(spi));
            }
            b = (b + 1) & (n - 1);
        }
        let at = free.ok_or(SadError::StaticTableFull)?;
        // index < 2^24, so it fits the low half.
        let bucket = (u64::from(spi) << 32) | index as u64;
        self.statics[at].store(bucket, Ordering::Release);
        Ok(())
    }

    /// Removes `spi`'s bucket; deleted buckets just before an empty one become empty so that
    /// probe sequences stay short.
    fn delete_bucket(&self, spi: u32) {
        let n = self.statics.len();
        if n == 0 {
            return;
        }
        let mut b = self.home(spi);
        let mut found = false;
        for _ in 0..n {
            let w = self.statics[b].load(Ordering::Relaxed);
            found = spi_of(w) == spi;
            if found || w == EMPTY {
                break;
            }
            b = (b + 1) & (n - 1);
        }
        if !found {
            return;
        }
        self.statics[b].store(DELETED, Ordering::Release);
        for _ in 0..n {
            let next = self.statics[(b + 1) & (n - 1)].load(Ordering::Relaxed);
            if next != EMPTY || self.statics[b].load(Ordering::Relaxed) != DELETED {
                return;
            }
            self.statics[b].store(EMPTY, Ordering::Release);
            b = (b + n - 1) & (n - 1);
        }
    }
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("layout", &self.layout)
            .field("static_capacity", &self.static_capacity)
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}
