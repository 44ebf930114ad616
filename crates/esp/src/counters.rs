//! Per-SA counters, written by the owning worker and read by the control plane (`show sa`).
//!
//! Single writer: each counter is an [`AtomicU64`] bumped with a relaxed load and store (no
//! read-modify-write, no lock prefix); readers on other threads use relaxed loads and may see a
//! snapshot that is a few packets old, never a torn value.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::drop::DropReason;

/// Counters of one SA in one direction.
///
/// Outbound: `packets`/`bytes` count packets encapsulated and encrypted. Inbound: packets
/// decapsulated, decrypted and verified. Bytes are inner IP packet bytes (the protected
/// payload, as RFC 4301 lifetimes count them). Drops are indexed by [`DropReason`].
#[derive(Debug)]
pub struct SaCounters {
    seq: AtomicU64,
    replay_recent: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    soft_expired_events: AtomicU64,
    drops: [AtomicU64; DropReason::COUNT],
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

impl Default for SaCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl SaCounters {
    /// All zero.
    pub fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            replay_recent: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            soft_expired_events: AtomicU64::new(0),
            drops: [const { AtomicU64::new(0) }; DropReason::COUNT],
        }
    }
    /// All zero but the sequence state (an SA installed with a starting sequence number).
    pub fn with_seq(seq: u64) -> Self {
        let c = Self::new();
        c.set_seq(seq);
        c
    }
    /// Counts one processed packet of `bytes` inner bytes (owner worker only).
    #[inline]
    pub fn count_packet(&self, bytes: usize) {
        bump(&self.packets, 1);
        bump(&self.bytes, bytes as u64);
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
    /// Counts one drop (owner worker only).
    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        bump(&self.drops[r.index()], 1);
    }
    /// Counts the soft-lifetime event (owner worker only).
    #[inline]
    pub fn count_soft_expired(&self) {
        bump(&self.soft_expired_events, 1);
    }
    /// A copy readable from any thread.
    pub fn snapshot(&self) -> CountersSnapshot {
        let mut drops = [0u64; DropReason::COUNT];
        for (d, c) in drops.iter_mut().zip(&self.drops) {
            *d = c.load(Relaxed);
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
        let c = SaCounters::new();
        c.count_packet(100);
        c.count_packet(20);
        c.count_drop(DropReason::Replayed);
        let s = c.snapshot();
        assert_eq!((s.packets, s.bytes), (2, 120));
        assert_eq!(s.drop(DropReason::Replayed), 1);
        assert_eq!(s.total_drops(), 1);
    }
}
