//! Per-worker counters: one cache-padded block per worker, written only by its worker (relaxed
//! load + store, no read-modify-write) and read by the control thread at any time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use crate::drops::Why;

/// Counters of one worker.
#[derive(Debug)]
pub struct WorkerStats {
    inner: CachePadded<Inner>,
}

#[derive(Debug)]
struct Inner {
    c: [AtomicU64; Counter::COUNT],
    drops: [AtomicU64; Why::COUNT],
}

macro_rules! counters {
    ($( $(#[$doc:meta])* $v:ident = $name:literal, )*) => {
        /// A per-worker counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Counter { $( $(#[$doc])* $v, )* }
        impl Counter {
            /// Every counter.
            pub const ALL: &'static [Counter] = &[ $( Counter::$v, )* ];
            /// Number of counters.
            pub const COUNT: usize = Self::ALL.len();
            /// Stable name.
            pub fn name(self) -> &'static str { [ $( $name, )* ][self as usize] }
        }
    };
}

counters! {
    /// Frames received on the outside port.
    RxOutside = "rx_outside",
    /// Frames received on the inside port.
    RxInside = "rx_inside",
    /// Frames sent on the outside port.
    TxOutside = "tx_outside",
    /// Frames sent on the inside port.
    TxInside = "tx_inside",
    /// Frames handed to another worker's TX queue of a port with fewer TX queues than
    /// senders (that worker counts them as transmitted when it sends them).
    TxRelayed = "tx_relayed",
    /// ESP packets decapsulated (decrypted and verified).
    EspDecap = "esp_decap",
    /// ESP packets encapsulated.
    EspEncap = "esp_encap",
    /// Packets handed to another worker (the SA's owner).
    HandoffOut = "handoff_out",
    /// Packets received from another worker to process as owner.
    HandoffIn = "handoff_in",
    /// Packets punted to the control thread (ARP, ND, IKE, ICMP to the box).
    Punted = "punted",
    /// NAT-T keepalives consumed (RFC 3948 §2.3).
    NattKeepalives = "natt_keepalives",
    /// Worker→control events lost because the event ring was full.
    EventsLost = "events_lost",
    /// Lifetime notices lost (the notice ring is sized so that this stays 0).
    NoticesLost = "notices_lost",
    /// Unknown-SPI samples not sent because the worker's sample budget was spent (the drop
    /// itself is still counted).
    SamplesSuppressed = "unknown_spi_samples_suppressed",
    /// Loop iterations that found work.
    BusyPolls = "busy_polls",
    /// Loop iterations that found nothing.
    IdlePolls = "idle_polls",
    /// Table generation the worker runs on.
    TableGeneration = "table_generation",
    /// TCP SYNs whose MSS option the tunnel's clamp lowered.
    MssClamped = "mss_clamped",
    /// Inner packets fragmented before encryption ([`crate::fragment`]; each fragment is then
    /// an ESP packet of its own).
    FragmentedBeforeEncryption = "fragmented_before_encryption",
    /// ESP packets fragmented after encryption ([`crate::fragment`]; the peer reassembles).
    FragmentedAfterEncryption = "fragmented_after_encryption",
    /// Outer datagrams reassembled from fragments ([`crate::reasm`]).
    Reassembled = "reassembled",
    /// Outer datagrams whose fragments did not all arrive in time (their fragments were
    /// consumed as they came; this counts the datagrams).
    ReassemblyTimeouts = "reassembly_timeouts",
    /// ICMP errors the worker built and sent (time exceeded, [`crate::forward`]).
    IcmpErrorsSent = "icmp_errors_sent",
    /// ICMP errors not sent because the worker's ICMP budget was spent (the drop is counted).
    IcmpErrorsSuppressed = "icmp_errors_suppressed",
    /// Packets whose SA's expanded key schedule was in the worker's key cache.
    KeyCacheHits = "key_cache_hits",
    /// Packets whose SA's key schedule the worker built from the raw key (an SA's first packet
    /// on this worker, or more busy SAs than the cache has lines: docs/performance.md).
    KeyCacheMisses = "key_cache_misses",
    /// Of the misses, those built outside the cache's lines because it thrashed (traffic over
    /// far more SAs than it holds; [`espada_esp::KeyCache`]).
    KeyCacheBypassed = "key_cache_bypassed",
    /// RX bursts run with the lookahead: the outside port's burst path or the inside port's
    /// prefetch chain ([`crate::depth`]).
    LookaheadBursts = "lookahead_bursts",
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            inner: CachePadded::new(Inner {
                c: [const { AtomicU64::new(0) }; Counter::COUNT],
                drops: [const { AtomicU64::new(0) }; Why::COUNT],
            }),
        }
    }
}

#[inline(always)]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerStats {
    /// Adds `n` to a counter (owner worker only).
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        bump(&self.inner.c[c as usize], n);
    }

    /// Sets a gauge (owner worker only).
    #[inline]
    pub fn set(&self, c: Counter, v: u64) {
        self.inner.c[c as usize].store(v, Relaxed);
    }

    /// Counts one drop (owner worker only).
    #[inline]
    pub fn drop_one(&self, why: Why) {
        bump(&self.inner.drops[why.index()], 1);
    }

    /// Counts `n` drops (owner worker only).
    #[inline]
    pub fn drop_n(&self, why: Why, n: u64) {
        bump(&self.inner.drops[why.index()], n);
    }

    /// Reads a counter (any thread).
    pub fn get(&self, c: Counter) -> u64 {
        self.inner.c[c as usize].load(Relaxed)
    }

    /// Reads the drops of one reason (any thread).
    pub fn drops(&self, why: Why) -> u64 {
        self.inner.drops[why.index()].load(Relaxed)
    }

    /// Sum of all drops (any thread).
    pub fn total_drops(&self) -> u64 {
        self.inner.drops.iter().map(|a| a.load(Relaxed)).sum()
    }
}
