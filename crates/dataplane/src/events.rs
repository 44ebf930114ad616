//! Typed messages from a worker to the control thread, over wait-free SPSC rings (rtrb).
//!
//! Two rings per worker, because they promise different things:
//! - **Notices** ([`Notice`]: an SA crossed its soft or hard lifetime) must arrive: a lost soft
//!   expiry is a lost rekey. Each SA sends at most one notice of each kind, and the notice ring
//!   is sized by [`notice_capacity`] so that it cannot fill (argument there); a failed push is
//!   still counted (`notices_lost`) so a broken argument would show.
//! - **Events** ([`Event`]: unknown-SPI samples, ICMP errors, neighbour misses) are samples:
//!   counters are exact on the worker, and the ring may drop what does not fit (counted as
//!   `events_lost`). Unknown-SPI samples first pass a per-worker token bucket
//!   ([`SampleBudget`]), so a flood of forged ESP cannot crowd the ring.

use std::net::IpAddr;

use espada_esp::icmp::IcmpErrorKind;

use crate::PortRole;
use crate::tables::TunnelId;

/// Capacity of each worker's event ring.
pub const EVENT_RING: usize = 4096;

/// Which lifetime an SA crossed (RFC 4301 §4.4.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// The soft lifetime: rekey now.
    Soft,
    /// The hard lifetime (or sequence numbers exhausted): the SA no longer processes packets.
    Hard,
}

/// An SA crossed a lifetime. Sent once per SA and kind. Eight bytes: the SPI, and the slot
/// (below 2^24, `espada_lookup::spi::MAX_INDEX_BITS`) with the direction and kind in its top
/// bits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    spi: u32,
    slot_flags: u32,
}

const NOTICE_INBOUND: u32 = 1 << 31;
const NOTICE_HARD: u32 = 1 << 30;
const NOTICE_SLOT: u32 = (1 << 30) - 1;

impl Notice {
    /// A notice for the SA with `spi` in `slot` (inbound or outbound).
    #[inline]
    pub fn new(inbound: bool, slot: u32, spi: u32, kind: NoticeKind) -> Notice {
        let mut f = slot & NOTICE_SLOT;
        if inbound {
            f |= NOTICE_INBOUND;
        }
        if kind == NoticeKind::Hard {
            f |= NOTICE_HARD;
        }
        Notice { spi, slot_flags: f }
    }

    /// Inbound (else outbound).
    pub fn inbound(self) -> bool {
        self.slot_flags & NOTICE_INBOUND != 0
    }

    /// Slot in the worker's slab.
    pub fn slot(self) -> u32 {
        self.slot_flags & NOTICE_SLOT
    }

    /// The SA's SPI (the control thread checks it against the slot's current SA).
    pub fn spi(self) -> u32 {
        self.spi
    }

    /// Soft or hard.
    pub fn kind(self) -> NoticeKind {
        if self.slot_flags & NOTICE_HARD != 0 {
            NoticeKind::Hard
        } else {
            NoticeKind::Soft
        }
    }
}

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notice")
            .field("inbound", &self.inbound())
            .field("slot", &self.slot())
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("kind", &self.kind())
            .finish()
    }
}

const _: () = assert!(std::mem::size_of::<Notice>() == 8);

/// A notice ring size that cannot fill for a slab of `slots` slots per direction.
///
/// Argument: each SA sends at most one notice per kind, so at most two. The control thread
/// empties the notice ring at the start of each turn, before it reads replies and sends
/// commands, and never has more than [`crate::slab::COMMAND_RING`] commands in flight to a
/// worker. Between two of its drains, the SAs that can send are those in the slab at the first
/// drain (at most `2 · slots`) and those installed by commands in flight then (at most
/// `COMMAND_RING`). Hence at most `2 · (2 · slots + COMMAND_RING)` notices wait at any time.
pub fn notice_capacity(slots: u32) -> usize {
    2 * (2 * slots as usize + crate::slab::COMMAND_RING)
}

/// Token buckets for the sampled events of one worker: `burst` samples at once, then `rate`
/// per second, separately for unknown-SPI packets from strangers
/// ([`UnknownSpiClass::UnknownSource`]), for the unknown-SPI classes that point at a
/// configured peer (tombstone, known peer), and for [`Event::Acquire`], so a flood of forged
/// ESP cannot starve the samples an operator needs to see a desynchronised peer, and
/// cleartext without an SA cannot crowd out either. Time is
/// the caller's (the worker passes TSC cycles once per loop turn), so nothing on the packet path
/// reads a clock.
#[derive(Clone, Debug)]
pub struct SampleBudget {
    /// Tokens per bucket: `[peer classes, unknown source, acquires, ICMP errors]`.
    tokens: [u32; 4],
    burst: u32,
    /// Clock units per token.
    per_token: u64,
    /// Clock value up to which tokens have been credited.
    credited: u64,
}

impl SampleBudget {
    /// Default burst of samples per bucket.
    pub const BURST: u32 = 64;
    /// Default samples per second per bucket.
    pub const RATE: u64 = 1000;

    /// Full buckets for a clock of `hz` units per second.
    pub fn new(hz: u64, rate: u64, burst: u32) -> SampleBudget {
        SampleBudget {
            tokens: [burst; 4],
            burst,
            per_token: (hz / rate.max(1)).max(1),
            credited: 0,
        }
    }

    /// Credits the tokens earned up to `now` (same clock as [`SampleBudget::new`]).
    #[inline]
    pub fn refill(&mut self, now: u64) {
        if self.credited == 0 {
            self.credited = now;
            return;
        }
        let earned = now.saturating_sub(self.credited) / self.per_token;
        if earned > 0 {
            for t in &mut self.tokens {
                *t = (u64::from(*t) + earned).min(u64::from(self.burst)) as u32;
            }
            self.credited += earned * self.per_token;
        }
    }

    /// Takes one token from the bucket of `class`; false when it is empty.
    #[inline]
    pub fn take(&mut self, class: UnknownSpiClass) -> bool {
        self.take_from(usize::from(class == UnknownSpiClass::UnknownSource))
    }

    /// Takes one token for an [`Event::Acquire`]; false when its bucket is empty.
    #[inline]
    pub fn take_acquire(&mut self) -> bool {
        self.take_from(2)
    }

    /// Takes one token for an ICMP error the worker sends ([`crate::forward`]); false when its
    /// bucket is empty (RFC 1812 §4.3.2.8: a router limits the rate of its ICMP errors).
    #[inline]
    pub fn take_icmp(&mut self) -> bool {
        self.take_from(3)
    }

    #[inline]
    fn take_from(&mut self, bucket: usize) -> bool {
        let b = &mut self.tokens[bucket];
        match b.checked_sub(1) {
            Some(t) => {
                *b = t;
                true
            }
            None => false,
        }
    }
}

/// How an unknown SPI was classified (operators' causes 1–4 in shared/seeds-digest.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnknownSpiClass {
    /// SPI of an SA deleted recently: a late packet after a rekey or delete.
    Tombstone,
    /// From a configured peer, but no such SA: the two ends are out of sync.
    KnownPeer,
    /// From an address that is no configured peer.
    UnknownSource,
}

impl UnknownSpiClass {
    /// Name used in logs and `show drops`.
    pub fn name(self) -> &'static str {
        match self {
            UnknownSpiClass::Tombstone => "tombstone",
            UnknownSpiClass::KnownPeer => "known-peer",
            UnknownSpiClass::UnknownSource => "unknown-source",
        }
    }
}

/// One ESP packet whose SPI matched no SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownSpi {
    /// Classification.
    pub class: UnknownSpiClass,
    /// Outer source.
    pub src: IpAddr,
    /// Outer destination.
    pub dst: IpAddr,
    /// SPI (RFC 4303 §2.1).
    pub spi: u32,
    /// Low 32 bits of the sequence number.
    pub seq: u32,
    /// Length of the outer IP packet.
    pub len: u32,
    /// ESP in UDP (RFC 3948).
    pub udp_encap: bool,
    /// Port it arrived on.
    pub port: PortRole,
}

/// An event from a worker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// An ESP packet with an unknown SPI was dropped.
    UnknownSpi(UnknownSpi),
    /// An ICMP error quoted an ESP packet this box sent on `tunnel`.
    IcmpError {
        /// The tunnel.
        tunnel: TunnelId,
        /// What the error said (with the MTU for PMTU errors).
        kind: IcmpErrorKind,
    },
    /// A cleartext packet for `tunnel` was dropped because the tunnel has no outbound SA: a
    /// tunnel with `start: trap` negotiates now (RFC 4301 §5.1's acquire; sampled).
    Acquire {
        /// The tunnel.
        tunnel: TunnelId,
    },
    /// A packet could not be sent because the next hop's MAC is unknown: resolve the next hop
    /// towards `dst`.
    NeighborMiss {
        /// The port.
        port: PortRole,
        /// The packet's destination on that port (its next hop is the port's business).
        dst: IpAddr,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_the_rate() {
        let peer = UnknownSpiClass::KnownPeer;
        let mut b = SampleBudget::new(1_000_000, 1000, 4);
        b.refill(5);
        assert_eq!((0..10).filter(|_| b.take(peer)).count(), 4, "burst");
        b.refill(5 + 999);
        assert!(!b.take(peer), "less than one token period");
        b.refill(5 + 1000);
        assert!(b.take(peer));
        assert!(!b.take(peer));
        b.refill(5 + 1_000_000);
        assert_eq!(
            (0..10).filter(|_| b.take(peer)).count(),
            4,
            "never above the burst"
        );
    }

    #[test]
    fn a_notice_packs_into_eight_bytes_and_round_trips() {
        for (inbound, slot, kind) in [
            (true, 0, NoticeKind::Soft),
            (false, (1 << 24) - 1, NoticeKind::Hard),
            (true, 12345, NoticeKind::Hard),
        ] {
            let n = Notice::new(inbound, slot, 0xdead_beef, kind);
            assert_eq!(
                (n.inbound(), n.slot(), n.spi(), n.kind()),
                (inbound, slot, 0xdead_beef, kind)
            );
        }
    }

    #[test]
    fn a_flood_from_strangers_leaves_the_peer_samples_alone() {
        let mut b = SampleBudget::new(1_000_000, 1000, 4);
        let stranger = UnknownSpiClass::UnknownSource;
        assert_eq!((0..1000).filter(|_| b.take(stranger)).count(), 4);
        assert!(b.take(UnknownSpiClass::Tombstone));
        assert!(b.take(UnknownSpiClass::KnownPeer));
        assert!(b.take_acquire(), "acquires have their own bucket");
        assert_eq!((0..1000).filter(|_| b.take_acquire()).count(), 3);
        assert!(
            b.take(UnknownSpiClass::KnownPeer),
            "and take nothing from the others"
        );
    }
}
