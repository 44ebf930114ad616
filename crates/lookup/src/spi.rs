//! Inbound SPI allocation (issue 13): an SPI names its owner worker and slot, so the data plane
//! finds an inbound SA by a shift, a mask, one load and one compare — no hash.
//!
//! RFC 4303 §2.1 lets the receiver choose its SPIs freely, except 0 (never on the wire) and
//! 1..=255 (reserved by IANA). espada lays an SPI out as
//!
//! ```text
//!  31                      W+S   W+S-1          W   W-1         0
//! +-----------------------------+------------------+-------------+
//! |  tag: random, T = 32-W-S    |  slot (S bits)   | owner (W)   |
//! +-----------------------------+------------------+-------------+
//! ```
//!
//! where `W` is the number of bits needed for the configured worker count, `S` the number of
//! bits needed for the configured slots per worker, and `T ≥ 8` ([`MIN_TAG_BITS`]). The low
//! `W + S` bits (the *index*) say where the SA lives; the tag is drawn at random on every
//! allocation so that the SPI is ≥ 256 and differs from the previous SPI of the same slot: a
//! late packet for a retired SPI whose slot was reused never matches the new SA.
//!
//! Limits: `W ≤ 16` (workers are `u16`, at most 65,535) and `W + S ≤ 24` ([`MAX_INDEX_BITS`]),
//! so at most 2^24 (16.7 M) inbound SA slots in all, with `T = 32 − W − S ≥ 8` tag bits. For a
//! million SAs: 2 workers × 2^19 slots leaves 12 tag bits, 16 workers × 2^16 also 12.
//!
//! [`SpiAllocator`] is the control thread's bookkeeping of every slot's state
//! (`Free → Reserved → Live → Tombstone → Free`, told by the caller). On every allocation it
//! checks, independently of its own books and in release builds too, that the SPI it is about
//! to hand out is not visible in the [`Directory`] the workers read; a disagreement increments
//! [`SpiAllocator::alarms`] (strongswan#2778 lost packets to duplicate SPIs) and the SPI is
//! not handed out.
//!
//! Static lab SPIs that do not follow the layout are accepted by
//! [`SpiAllocator::allocate_static`]: they take a regular slot (their SA state lives in the
//! owner's slab like any other) and the directory finds them through its fallback table.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use espada_lookup::sad::{Directory, Lookup};
//! use espada_lookup::spi::{SpiAllocator, SpiLayout, SplitMix64};
//!
//! let layout = SpiLayout::new(2, 1 << 10).unwrap();
//! let dir = Arc::new(Directory::new(layout, 16)); // shared with the workers
//! let mut alloc = SpiAllocator::new(dir.clone(), SplitMix64::new(42));
//!
//! // Control thread: an SPI on worker 1; fill slot `s.slot` of its slab, then publish.
//! let s = alloc.allocate(Some(1)).unwrap();
//! dir.install(s, 7).unwrap();
//! alloc.mark_live(s).unwrap();
//!
//! // Worker: one load and one compare.
//! let live = Lookup::Live { owner: 1, slot: s.slot, tunnel: 7 };
//! assert_eq!(dir.lookup(s.spi), live);
//!
//! // Rekeyed: a tombstone for late packets, then forgotten; the slot is free again.
//! dir.retire(s).unwrap();
//! alloc.retire(s).unwrap();
//! assert_eq!(dir.lookup(s.spi), Lookup::Tombstone { tunnel: 7 });
//! dir.remove(s).unwrap();
//! alloc.release(s).unwrap();
//! assert_eq!(dir.lookup(s.spi), Lookup::Unknown);
//! assert_eq!(alloc.alarms(), 0);
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use crate::sad::{Directory, Lookup};

/// The smallest SPI espada hands out or accepts: 0 is invalid on the wire and 1..=255 are
/// reserved by IANA (RFC 4303 §2.1).
pub const MIN_SPI: u32 = 256;

/// The fewest random tag bits an SPI keeps (so a reused slot gets a fresh SPI).
pub const MIN_TAG_BITS: u32 = 8;

/// The most bits owner and slot may take together: 32 − [`MIN_TAG_BITS`].
pub const MAX_INDEX_BITS: u32 = 32 - MIN_TAG_BITS;

/// Number of bits needed to write every value below `n` (0 for `n ≤ 1`).
fn bits_for(n: u32) -> u32 {
    32 - n.saturating_sub(1).leading_zeros()
}

/// Why an [`SpiLayout`] cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Zero workers or zero slots per worker.
    Empty,
    /// Owner and slot bits together exceed [`MAX_INDEX_BITS`].
    TooManyBits {
        /// Bits the owner needs.
        worker_bits: u32,
        /// Bits the slot needs.
        slot_bits: u32,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Empty => f.write_str("an SPI layout needs at least one worker and slot"),
            LayoutError::TooManyBits {
                worker_bits,
                slot_bits,
            } => write!(
                f,
                "{worker_bits} owner bits + {slot_bits} slot bits exceed {MAX_INDEX_BITS}: \
                 fewer than {MIN_TAG_BITS} random tag bits would be left"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

/// How SPIs encode owner worker and slot (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpiLayout {
    workers: u16,
    slots_per_worker: u32,
    worker_bits: u32,
    slot_bits: u32,
}

impl SpiLayout {
    /// The layout for `workers` workers of `slots_per_worker` inbound SA slots each.
    pub fn new(workers: u16, slots_per_worker: u32) -> Result<SpiLayout, LayoutError> {
        if workers == 0 || slots_per_worker == 0 {
            return Err(LayoutError::Empty);
        }
        let worker_bits = bits_for(u32::from(workers));
        let slot_bits = bits_for(slots_per_worker);
        if worker_bits + slot_bits > MAX_INDEX_BITS {
            return Err(LayoutError::TooManyBits {
                worker_bits,
                slot_bits,
            });
        }
        Ok(SpiLayout {
            workers,
            slots_per_worker,
            worker_bits,
            slot_bits,
        })
    }

    /// Number of workers.
    pub fn workers(self) -> u16 {
        self.workers
    }

    /// Slots per worker (slot numbers are `0..slots_per_worker`).
    pub fn slots_per_worker(self) -> u32 {
        self.slots_per_worker
    }

    /// `W`: bits of the owner field (the low bits of the SPI).
    pub fn worker_bits(self) -> u32 {
        self.worker_bits
    }

    /// `S`: bits of the slot field.
    pub fn slot_bits(self) -> u32 {
        self.slot_bits
    }

    /// `W + S`: bits of the index (owner and slot).
    pub fn index_bits(self) -> u32 {
        self.worker_bits + self.slot_bits
    }

    /// `T = 32 − W − S`: bits of the random tag (at least [`MIN_TAG_BITS`]).
    pub fn tag_bits(self) -> u32 {
        32 - self.index_bits()
    }

    /// Mask of the index bits of an SPI.
    #[inline]
    pub(crate) fn index_mask(self) -> u32 {
        // index_bits ≤ MAX_INDEX_BITS < 32, so the shift never overflows.
        (1u32 << self.index_bits()) - 1
    }

    /// The index `slot << W | owner`: the position of `(owner, slot)` in the directory.
    #[inline]
    pub(crate) fn index_of(self, owner: u16, slot: u32) -> u32 {
        (slot << self.worker_bits) | u32::from(owner)
    }

    /// Owner worker and slot named by `spi`: a mask and a shift. For an SPI espada did not
    /// allocate the result may name no real slot (owner ≥ [`SpiLayout::workers`] when the
    /// worker count is not a power of two, slot ≥ [`SpiLayout::slots_per_worker`]); the
    /// directory never matches such SPIs at that position.
    #[inline]
    pub fn owner_and_slot(self, spi: u32) -> (u16, u32) {
        let owner_mask = (1u32 << self.worker_bits) - 1;
        let slot_mask = (1u32 << self.slot_bits) - 1;
        // worker_bits ≤ 16 because workers is a u16, so the owner fits.
        (
            (spi & owner_mask) as u16,
            (spi >> self.worker_bits) & slot_mask,
        )
    }

    /// The random tag of `spi` (its bits above owner and slot).
    #[inline]
    pub fn tag(self, spi: u32) -> u32 {
        spi >> self.index_bits()
    }

    /// The SPI of `tag`, `owner` and `slot`, or `None` when one of them is out of range.
    /// The result may be below [`MIN_SPI`]; the allocator never hands such an SPI out.
    pub fn encode(self, tag: u32, owner: u16, slot: u32) -> Option<u32> {
        let fits = owner < self.workers
            && slot < self.slots_per_worker
            && u64::from(tag) < (1u64 << self.tag_bits());
        fits.then(|| (tag << self.index_bits()) | self.index_of(owner, slot))
    }
}

/// An inbound SPI and where its SA lives: the owner worker and the slot in that worker's slab.
/// For an encoded SPI `(owner, slot)` is [`SpiLayout::owner_and_slot`] of the SPI; a static
/// SPI's slot was assigned by [`SpiAllocator::allocate_static`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpiSlot {
    /// The SPI (RFC 4303 §2.1), ≥ [`MIN_SPI`].
    pub spi: u32,
    /// Owner worker.
    pub owner: u16,
    /// Slot in the owner's slab and directory.
    pub slot: u32,
}

/// A source of random 32-bit words for SPI tags. Any `FnMut() -> u32` closure is one, so a
/// caller can pass its own generator (e.g. the OS through `ring::rand`, or espada-ike's
/// `Random::next_u32`); [`SplitMix64`] is a small deterministic one.
pub trait SpiRandom {
    /// A random 32-bit word.
    fn next_u32(&mut self) -> u32;
}

impl<F: FnMut() -> u32> SpiRandom for F {
    fn next_u32(&mut self) -> u32 {
        self()
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny deterministic generator for tests and
/// benchmarks, or for production when seeded from the OS. Not cryptographic; SPIs are not
/// secrets (RFC 4303 §2.1 asks only that they be unique at the receiver).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64-bit word.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl SpiRandom for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

/// The allocator's state of one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// Not in use; may be allocated.
    Free,
    /// Handed out by an allocation, not yet installed (e.g. sent to the peer in a proposal).
    Reserved,
    /// Installed: the SA decrypts.
    Live,
    /// Retired: late packets are classified as "recently rekeyed"; the SPI is still taken.
    Tombstone,
}

/// Why an allocation or a state change failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpiError {
    /// No free slot on the worker asked for (or on any worker, for the least loaded).
    Exhausted,
    /// The worker index is not below [`SpiLayout::workers`].
    NoSuchWorker(u16),
    /// A static SPI in 0..=255 (RFC 4303 §2.1).
    ReservedSpi(u32),
    /// A static SPI that is already live, a tombstone, or another static SPI.
    InUse(u32),
    /// The static SPI table is full (its capacity is the directory's).
    StaticTableFull,
    /// The SPI is not allocated at the slot it names.
    Unknown(u32),
    /// The SPI is allocated but not in a state that allows the change.
    WrongState {
        /// The SPI.
        spi: u32,
        /// Its state.
        state: SlotState,
    },
    /// The directory contradicted the allocator's books too often in one call; every
    /// contradiction was counted in [`SpiAllocator::alarms`].
    Inconsistent,
}

impl fmt::Display for SpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpiError::Exhausted => f.write_str("no free inbound SA slot"),
            SpiError::NoSuchWorker(w) => write!(f, "no worker {w}"),
            SpiError::ReservedSpi(s) => write!(f, "SPI {s} is reserved (RFC 4303 §2.1)"),
            SpiError::InUse(s) => write!(f, "SPI {s:#010x} is already in use"),
            SpiError::StaticTableFull => f.write_str("the static SPI table is full"),
            SpiError::Unknown(s) => write!(f, "SPI {s:#010x} is not allocated"),
            SpiError::WrongState { spi, state } => {
                write!(f, "SPI {spi:#010x} is {state:?}")
            }
            SpiError::Inconsistent => {
                f.write_str("the SA directory contradicts the SPI allocator (alarm raised)")
            }
        }
    }
}

impl std::error::Error for SpiError {}

/// How many slots one allocation tries when the directory says they are occupied.
const MAX_SLOT_ATTEMPTS: usize = 4;

/// The control thread's SPI allocator: the state of every slot of every worker, free slots in
/// FIFO order (a released slot is reused as late as possible), and the static SPIs.
///
/// All memory is allocated in [`SpiAllocator::new`]: per slot 4 bytes of SPI, 1 byte of state
/// and 4 bytes in a free queue; nothing grows afterwards.
pub struct SpiAllocator<R> {
    dir: Arc<Directory>,
    layout: SpiLayout,
    rng: R,
    /// Free slots per worker, oldest release first.
    free: Vec<VecDeque<u32>>,
    /// Per `owner * slots_per_worker + slot`: the SPI while in use, the last one after.
    spis: Vec<u32>,
    /// Per `owner * slots_per_worker + slot`: the state.
    states: Vec<SlotState>,
    /// Static SPIs in use and their slots, sorted by SPI.
    statics: Vec<SpiSlot>,
    alarms: u64,
}

impl<R: SpiRandom> SpiAllocator<R> {
    /// An allocator of every slot of `dir`'s layout, all free, drawing tags from `rng`. The
    /// directory should be empty: the allocator does not learn what is already in it (but its
    /// check will refuse to hand out any SPI the directory already has).
    pub fn new(dir: Arc<Directory>, rng: R) -> SpiAllocator<R> {
        let layout = dir.layout();
        let cap = layout.slots_per_worker();
        let slots = usize::from(layout.workers()) * cap as usize;
        let statics = Vec::with_capacity(dir.static_capacity());
        SpiAllocator {
            free: (0..layout.workers()).map(|_| (0..cap).collect()).collect(),
            spis: vec![0; slots],
            states: vec![SlotState::Free; slots],
            statics,
            alarms: 0,
            dir,
            layout,
            rng,
        }
    }

    /// The layout (the directory's).
    pub fn layout(&self) -> SpiLayout {
        self.layout
    }

    /// The directory the allocator checks against.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.dir
    }

    /// How often the directory contradicted the allocator: an SPI about to be handed out was
    /// already visible to the workers, or a free slot was occupied. Zero unless there is a bug
    /// (or someone wrote to the directory behind the allocator's back).
    pub fn alarms(&self) -> u64 {
        self.alarms
    }

    /// Slots of `owner` in use (reserved, live or tombstone); 0 for no such worker.
    pub fn in_use(&self, owner: u16) -> u32 {
        self.free.get(usize::from(owner)).map_or(0, |f| {
            // A queue never holds more than slots_per_worker entries.
            self.layout.slots_per_worker() - f.len() as u32
        })
    }

    /// The state of `s`, or `None` when `s.spi` is not the SPI allocated at its slot.
    pub fn state(&self, s: SpiSlot) -> Option<SlotState> {
        self.book(s).ok().map(|b| self.states[b])
    }

    /// A fresh SPI on `owner` (or on the worker with the most free slots for `None`), in
    /// state [`SlotState::Reserved`]. The SPI is ≥ 256, differs from the slot's previous SPI
    /// and from every static SPI, and the directory has checked that no worker would match it.
    pub fn allocate(&mut self, owner: Option<u16>) -> Result<SpiSlot, SpiError> {
        let owner = self.pick(owner)?;
        for _ in 0..MAX_SLOT_ATTEMPTS {
            let slot = self.take_slot(owner)?;
            let b = self.flat(owner, slot);
            if let Some(spi) = self.draw(owner, slot, self.spis[b]) {
                self.spis[b] = spi;
                self.states[b] = SlotState::Reserved;
                return Ok(SpiSlot { spi, owner, slot });
            }
            // Every tag of this slot is taken by static SPIs: try another.
            self.put_back(owner, slot);
        }
        Err(SpiError::Exhausted)
    }

    /// Takes a slot of `owner` for the static (lab) SPI `spi`, which need not follow the
    /// layout; the directory finds it through its fallback table. In state
    /// [`SlotState::Reserved`] like any allocation.
    pub fn allocate_static(&mut self, spi: u32, owner: Option<u16>) -> Result<SpiSlot, SpiError> {
        if spi < MIN_SPI {
            return Err(SpiError::ReservedSpi(spi));
        }
        let Err(at) = self.static_at(spi) else {
            return Err(SpiError::InUse(spi));
        };
        if self.encoded_in_use(spi) {
            return Err(SpiError::InUse(spi));
        }
        if self.statics.len() >= self.dir.static_capacity() {
            return Err(SpiError::StaticTableFull);
        }
        if self.dir.lookup(spi) != Lookup::Unknown {
            self.alarms += 1;
            return Err(SpiError::Inconsistent);
        }
        let owner = self.pick(owner)?;
        let slot = self.take_slot(owner)?;
        let b = self.flat(owner, slot);
        self.spis[b] = spi;
        self.states[b] = SlotState::Reserved;
        let s = SpiSlot { spi, owner, slot };
        self.statics.insert(at, s);
        Ok(s)
    }

    /// The slot of `spi` when it is in use (encoded or static): for a peer's DELETE, which
    /// names only the SPI (RFC 7296 §3.11).
    pub fn find(&self, spi: u32) -> Option<SpiSlot> {
        let (owner, slot) = self.layout.owner_and_slot(spi);
        let encoded = SpiSlot { spi, owner, slot };
        match self.book(encoded) {
            Ok(_) => Some(encoded),
            Err(_) => self.static_at(spi).ok().map(|i| self.statics[i]),
        }
    }

    /// `s` is installed: [`SlotState::Reserved`] → [`SlotState::Live`].
    pub fn mark_live(&mut self, s: SpiSlot) -> Result<(), SpiError> {
        self.step(s, SlotState::Reserved, SlotState::Live)
    }

    /// `s` is retired: [`SlotState::Live`] → [`SlotState::Tombstone`]. Its slot stays taken.
    pub fn retire(&mut self, s: SpiSlot) -> Result<(), SpiError> {
        self.step(s, SlotState::Live, SlotState::Tombstone)
    }

    /// `s` is forgotten (from any state in use: an abandoned reservation, a removed live SA,
    /// an expired tombstone): its slot becomes free and goes to the back of the free queue.
    /// Call this only once the directory entry is removed.
    pub fn release(&mut self, s: SpiSlot) -> Result<(), SpiError> {
        let b = self.book(s)?;
        self.states[b] = SlotState::Free;
        if let Ok(i) = self.static_at(s.spi) {
            self.statics.remove(i);
        }
        self.put_back(s.owner, s.slot);
        Ok(())
    }

    /// Moves `s` from `from` to `to`.
    fn step(&mut self, s: SpiSlot, from: SlotState, to: SlotState) -> Result<(), SpiError> {
        let b = self.book(s)?;
        if self.states[b] != from {
            return Err(SpiError::WrongState {
                spi: s.spi,
                state: self.states[b],
            });
        }
        self.states[b] = to;
        Ok(())
    }

    /// Position of `s` in the books, when `s.spi` is in use at its slot.
    fn book(&self, s: SpiSlot) -> Result<usize, SpiError> {
        if s.owner >= self.layout.workers() || s.slot >= self.layout.slots_per_worker() {
            return Err(SpiError::Unknown(s.spi));
        }
        let b = self.flat(s.owner, s.slot);
        match (self.states.get(b), self.spis.get(b)) {
            (Some(st), Some(&spi)) if *st != SlotState::Free && spi == s.spi => Ok(b),
            _ => Err(SpiError::Unknown(s.spi)),
        }
    }

    /// Position of `(owner, slot)` in the books.
    fn flat(&self, owner: u16, slot: u32) -> usize {
        usize::from(owner) * self.layout.slots_per_worker() as usize + slot as usize
    }

    /// Where `spi` is (`Ok`) or would go (`Err`) among the static SPIs.
    fn static_at(&self, spi: u32) -> Result<usize, usize> {
        self.statics.binary_search_by_key(&spi, |s| s.spi)
    }

    /// True when `spi` is in use at the slot it encodes.
    fn encoded_in_use(&self, spi: u32) -> bool {
        let (owner, slot) = self.layout.owner_and_slot(spi);
        self.book(SpiSlot { spi, owner, slot }).is_ok()
    }

    /// The worker to allocate on.
    fn pick(&self, owner: Option<u16>) -> Result<u16, SpiError> {
        match owner {
            Some(o) if o >= self.layout.workers() => Err(SpiError::NoSuchWorker(o)),
            Some(o) => Ok(o),
            None => (0..self.layout.workers())
                .max_by_key(|&o| (self.free[usize::from(o)].len(), std::cmp::Reverse(o)))
                .ok_or(SpiError::Exhausted),
        }
    }

    /// The oldest free slot of `owner` that the directory agrees is empty. A slot the
    /// directory has filled is an alarm: it goes to the back of the queue.
    fn take_slot(&mut self, owner: u16) -> Result<u32, SpiError> {
        for _ in 0..MAX_SLOT_ATTEMPTS {
            let slot = self.free[usize::from(owner)]
                .pop_front()
                .ok_or(SpiError::Exhausted)?;
            if self.dir.is_empty(owner, slot) {
                return Ok(slot);
            }
            self.alarms += 1;
            self.free[usize::from(owner)].push_back(slot);
        }
        Err(SpiError::Inconsistent)
    }

    /// Puts a free slot at the back of its worker's queue.
    fn put_back(&mut self, owner: u16, slot: u32) {
        if let Some(q) = self.free.get_mut(usize::from(owner)) {
            q.push_back(slot);
        }
    }

    /// A random SPI for `(owner, slot)`: ≥ 256, not `previous`, not a static SPI, and not
    /// matched by the directory (the independent check; a match is an alarm). `None` when no
    /// tag is left (only with pathologically many static SPIs on one slot).
    fn draw(&mut self, owner: u16, slot: u32, previous: u32) -> Option<u32> {
        let shift = self.layout.index_bits();
        let index = u64::from(self.layout.index_of(owner, slot));
        // The smallest tag that makes the SPI ≥ 256, and how many tags there are from it.
        let min_tag = (u64::from(MIN_SPI).saturating_sub(index) + (1 << shift) - 1) >> shift;
        let count = (1u64 << self.layout.tag_bits()) - min_tag;
        // A uniform start (Lemire's multiply-shift), then the next tag while excluded.
        let start = (u64::from(self.rng.next_u32()) * count) >> 32;
        for k in 0..count {
            let tag = min_tag + (start + k) % count;
            // tag < 2^T, so the SPI fits in 32 bits.
            let spi = ((tag << shift) | index) as u32;
            if spi == previous || self.static_at(spi).is_ok() {
                continue;
            }
            if self.dir.lookup(spi) != Lookup::Unknown {
                self.alarms += 1;
                continue;
            }
            return Some(spi);
        }
        None
    }
}

impl<R> fmt::Debug for SpiAllocator<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiAllocator")
            .field("layout", &self.layout)
            .field("statics", &self.statics.len())
            .field("alarms", &self.alarms)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bits_follow_the_configured_sizes() {
        let cases = [
            // workers, slots, W, S, T
            (1, 1, 0, 0, 32),
            (1, 1_000_000, 0, 20, 12),
            (2, 500_000, 1, 19, 12),
            (3, 1 << 20, 2, 20, 10),
            (16, 1 << 20, 4, 20, 8),
            (u16::MAX, 256, 16, 8, 8),
        ];
        for (workers, slots, w, s, t) in cases {
            let l = SpiLayout::new(workers, slots).unwrap();
            assert_eq!(
                (l.worker_bits(), l.slot_bits(), l.tag_bits()),
                (w, s, t),
                "{workers} workers × {slots}"
            );
        }
    }

    #[test]
    fn oversized_layouts_are_refused() {
        assert_eq!(SpiLayout::new(0, 10), Err(LayoutError::Empty));
        assert_eq!(SpiLayout::new(2, 0), Err(LayoutError::Empty));
        assert_eq!(
            SpiLayout::new(32, 1 << 20),
            Err(LayoutError::TooManyBits {
                worker_bits: 5,
                slot_bits: 20
            })
        );
    }

    #[test]
    fn encode_refuses_out_of_range_fields() {
        let l = SpiLayout::new(3, 10).unwrap();
        assert_eq!(l.encode(0, 3, 0), None);
        assert_eq!(l.encode(0, 0, 10), None);
        assert_eq!(l.encode(1 << l.tag_bits(), 0, 0), None);
        let spi = l.encode(5, 2, 9).unwrap();
        assert_eq!((l.owner_and_slot(spi), l.tag(spi)), ((2, 9), 5));
    }

    #[test]
    fn closures_are_random_sources() {
        let mut n = 0u32;
        let mut r = || {
            n += 1;
            n
        };
        assert_eq!((r.next_u32(), r.next_u32()), (1, 2));
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        assert_eq!(a.next_u32(), b.next_u32());
        assert_ne!(a.next_u64(), SplitMix64::new(8).next_u64());
    }
}
