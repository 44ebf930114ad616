//! Per-SA counters, written by the owning worker and read by the control plane (`show sa`).
//!
//! Single writer: each counter is an [`AtomicU64`] bumped with a relaxed load and store (no
//! read-modify-write, no lock prefix); readers on other threads use relaxed loads and may see a
//! snapshot that is a few packets old, never a torn value.
//!
//! Each SA keeps a drop counter only for the reasons its direction can produce
//! ([`crate::drop::SaScope`] in the drop table): [`SA_DROP_SLOTS`] counters instead of one per
//! [`DropReason`]. Snapshots are still indexed by every reason (the others read 0).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::drop::DropReason;
use crate::sa::Direction;

/// Marks a reason the direction cannot produce.
const NO_SLOT: u8 = u8::MAX;

/// The slot of every reason in an SA's drop array, for inbound (`true`) or outbound SAs, and
/// the number of slots used.
const fn slots(inbound: bool) -> ([u8; DropReason::COUNT], usize) {
    let mut s = [NO_SLOT; DropReason::COUNT];
    let (mut i, mut n) = (0, 0);
    while i < DropReason::COUNT {
        if DropReason::TABLE[i].scope.includes(inbound) {
            s[i] = n as u8;
            n += 1;
        }
        i += 1;
    }
    (s, n)
}

const INBOUND: ([u8; DropReason::COUNT], usize) = slots(true);
const OUTBOUND: ([u8; DropReason::COUNT], usize) = slots(false);

/// Drop counters per SA: as many as the direction with more possible reasons needs.
pub const SA_DROP_SLOTS: usize = if INBOUND.1 > OUTBOUND.1 {
    INBOUND.1
} else {
    OUTBOUND.1
};

/// Counters of one SA in one direction.
///
/// Outbound: `packets`/`bytes` count packets encapsulated and encrypted. Inbound: packets
/// decapsulated, decrypted and verified. Bytes are inner IP packet bytes (the protected
/// payload, as RFC 4301 lifetimes count them). Drops are kept for the reasons of the SA's
/// direction and read by [`DropReason`].
///
/// `repr(C)`: the fields written for every burst an SA has packets in come first, in its
/// first [`SaCounters::HOT_BYTES`] bytes (what the data plane prefetches).
#[derive(Debug)]
#[repr(C)]
pub struct SaCounters {
    seq: AtomicU64,
    replay_recent: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    soft_expired_events: AtomicU64,
    drops: [AtomicU64; SA_DROP_SLOTS],
    inbound: bool,
}

/// Packets an SA processed that its counters do not show yet: the data plane adds up a run
/// of packets of one SA in a burst and publishes them once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Packets.
    pub packets: u64,
    /// Their inner bytes.
    pub bytes: u64,
}

impl Tally {
    /// Adds a packet of `bytes` inner bytes.
    #[inline]
    pub fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }
}

/// A plain copy of [`SaCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Outbound: the last sequence number sent. Inbound: the highest sequence number accepted
    /// (the right edge of the replay window, RFC 4303 §3.4.3).
    pub seq: u64,
    /// Inbound: [`crate::ReplayWindow::recent`] after the last accepted packet (0 outbound).
    pub replay_recent: u64,
    /// Packets processed successfully.
    pub packets: u64,
    /// Inner bytes processed successfully.
    pub bytes: u64,
    /// Soft-lifetime events emitted (0 or 1).
    pub soft_expired_events: u64,
    /// Drops by reason, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
}

impl CountersSnapshot {
    /// Drops for one reason.
    pub fn drop(&self, r: DropReason) -> u64 {
        self.drops[r.index()]
    }
    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}

#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    // Single writer: a plain load + store is enough and avoids a locked RMW.
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl SaCounters {
    /// Bytes at the start of the counters that a burst's packets write: the sequence number
    /// and recent-replay bitmap `show sa` reads, packets and bytes.
    pub const HOT_BYTES: usize = 4 * size_of::<AtomicU64>();

    /// All zero, for an SA of `direction`.
    pub fn new(direction: Direction) -> Self {
        Self {
            seq: AtomicU64::new(0),
            replay_recent: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            soft_expired_events: AtomicU64::new(0),
            drops: [const { AtomicU64::new(0) }; SA_DROP_SLOTS],
            inbound: direction == Direction::Inbound,
        }
    }
    /// All zero but the sequence state (an SA installed with a starting sequence number).
    pub fn with_seq(direction: Direction, seq: u64) -> Self {
        let c = Self::new(direction);
        c.set_seq(seq);
        c
    }
    #[inline(always)]
    fn slots(&self) -> &'static [u8; DropReason::COUNT] {
        if self.inbound {
            &INBOUND.0
        } else {
            &OUTBOUND.0
        }
    }
    /// Counts one processed packet of `bytes` inner bytes (owner worker only).
    #[inline]
    pub fn count_packet(&self, bytes: usize) {
        bump(&self.packets, 1);
        bump(&self.bytes, bytes as u64);
    }
    /// Adds `packets` packets of `bytes` bytes in all (a [`Tally`] of a burst).
    #[inline]
    pub fn count_packets(&self, packets: u64, bytes: u64) {
        bump(&self.packets, packets);
        bump(&self.bytes, bytes);
    }
    /// Records the sequence number state shown by `show sa` (owner worker only).
    #[inline]
    pub fn set_seq(&self, seq: u64) {
        self.seq.store(seq, Relaxed);
    }
    /// Records the recent replay bitmap shown by `show sa` (owner worker only).
    #[inline]
    pub fn set_replay_recent(&self, bits: u64) {
        self.replay_recent.store(bits, Relaxed);
    }
    /// Counts one drop (owner worker only). A reason the drop table says this direction cannot
    /// produce has no counter here (the data plane's per-worker counter still has it).
    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        let slot = self.slots()[r.index()];
        debug_assert!(slot != NO_SLOT, "{r} is not in the drop table's scope");
        if let Some(c) = self.drops.get(usize::from(slot)) {
            bump(c, 1);
        }
    }
    /// Counts the soft-lifetime event (owner worker only).
    #[inline]
    pub fn count_soft_expired(&self) {
        bump(&self.soft_expired_events, 1);
    }
    /// A copy readable from any thread.
    pub fn snapshot(&self) -> CountersSnapshot {
        let mut drops = [0u64; DropReason::COUNT];
        for (d, &slot) in drops.iter_mut().zip(self.slots()) {
            if let Some(c) = self.drops.get(usize::from(slot)) {
                *d = c.load(Relaxed);
            }
        }
        CountersSnapshot {
            seq: self.seq.load(Relaxed),
            replay_recent: self.replay_recent.load(Relaxed),
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            soft_expired_events: self.soft_expired_events.load(Relaxed),
            drops,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_snapshots() {
        let c = SaCounters::new(Direction::Inbound);
        c.count_packet(100);
        c.count_packet(20);
        c.count_drop(DropReason::Replayed);
        let s = c.snapshot();
        assert_eq!((s.packets, s.bytes), (2, 120));
        assert_eq!(s.drop(DropReason::Replayed), 1);
        assert_eq!(s.total_drops(), 1);
    }

    #[test]
    fn every_reason_of_a_direction_has_its_own_slot() {
        for dir in [Direction::Inbound, Direction::Outbound] {
            let c = SaCounters::new(dir);
            let mine: Vec<_> = DropReason::ALL
                .iter()
                .copied()
                .filter(|r| r.info().scope.includes(dir == Direction::Inbound))
                .collect();
            assert!(mine.len() <= SA_DROP_SLOTS);
            // Count reason k exactly k+1 times: a shared slot would show a sum.
            for (k, r) in mine.iter().enumerate() {
                for _ in 0..=k {
                    c.count_drop(*r);
                }
            }
            let s = c.snapshot();
            for (k, r) in mine.iter().enumerate() {
                assert_eq!(s.drop(*r), k as u64 + 1, "{dir:?} {r}");
            }
            let n = mine.len() as u64;
            assert_eq!(s.total_drops(), n * (n + 1) / 2);
        }
        assert!(DropReason::UnknownSpi.info().scope == crate::drop::SaScope::DataPlane);
    }
}
