//! Outbound route lookup: inner destination → tunnel, with per-entry updates (issue 13).
//!
//! The SPD lookup of RFC 4301 §4.4.1 by destination, as longest-prefix match over multibit
//! tries with *controlled prefix expansion*: every entry holds the answer for all addresses it
//! covers, so a lookup is one load per level and no backtracking.
//!
//! * IPv4 ([`Ipv4Table`]) is DIR-24-8 as DPDK's `rte_lpm`: a `tbl24` of 2²⁴ entries indexed by
//!   the first 24 bits, and `tbl8` groups of 256 entries for prefixes longer than /24. A lookup
//!   is one or two loads.
//! * IPv6 ([`Ipv6Table`]) is the same trie with more levels: a first level of 2¹⁶ entries, then
//!   groups of 256 entries per further byte (at most 15 levels), plus *tail records*: where a
//!   single route lies below an entry, the entry points to a 32-byte record holding that route
//!   instead of a chain of groups. See [`v6`] for the choice and its memory.
//!
//! # Handles
//!
//! The control thread owns a [`Writer`] per family (or a [`RouteWriter`] for both); workers hold
//! [`Table`] read handles (`Arc` clones from [`Writer::table`], or a [`Routes`] pair). Lookups
//! take `&self`, never block, never allocate, and do only atomic loads. The writer changes one
//! word at a time with atomic stores: adding or removing a route touches only the entries that
//! the prefix covers (plus at most one group or record per level on its path) and never copies
//! the rest of the table. Storage is preallocated when the writer is built: the first level and
//! pools of groups (and, for IPv6, tail records) of the sizes given; nothing is allocated or
//! freed on a lookup or, apart from the control-side rule table, on an update. A pool too small
//! for a route is an error ([`RouteError::PoolExhausted`], [`RouteError::TailsExhausted`]) that
//! changes nothing.
//!
//! # Entries
//!
//! Every entry is an `AtomicU32`:
//!
//! ```text
//!  31      30     29                                 0
//! +-------+------+------------------------------------+
//! | VALID | EXT  |  payload (30 bits)                 |
//! +-------+------+------------------------------------+
//! ```
//!
//! | VALID | EXT | meaning                                              |
//! |-------|-----|------------------------------------------------------|
//! | 0     | 0   | no route (the entry is `0`)                          |
//! | 1     | 0   | leaf: tunnel id `payload ≤ MAX_VALUE` (2³⁰ − 1)      |
//! | 0     | 1   | link to group `payload` of the next level            |
//! | 1     | 1   | link to tail record `payload` (IPv6 only)            |
//!
//! A tail record is eight words: the route's key (four words, most significant first), its
//! length, its leaf entry, and the *fallback* leaf entry (the answer for the entry's other
//! addresses); a lookup compares the masked address with the key and returns one of the two.
//!
//! Unlike `rte_lpm`, the depth of the rule that wrote an entry is not in the entry: readers never
//! need it, so the writer keeps it in a control-side shadow array (one byte per entry), which
//! leaves 30 bits for the value and the indices in both families (IPv6 depths need 8 bits).
//!
//! # Concurrency
//!
//! A reader may run a lookup at any time; it sees, for the address it looks up, the longest-match
//! answer of the table as it was before or after some update that overlapped the lookup — never
//! a value that no state of the table gave that address. The argument:
//!
//! 1. *Single-word answers.* A lookup ends at exactly one word: a leaf entry, or the value or
//!    fallback word of a tail record chosen by comparing the address with the record's key and
//!    length, which never change while the record is reachable. Each such word's every value is,
//!    by construction, the longest-match answer for all the addresses it stands for either before
//!    or after the update that stores it: an expansion or split fills new groups with copies of
//!    the answer they replace, an insert stores the new rule's value where it is now the longest,
//!    a removal stores the covering rule's value (the new answer), and a collapse stores into the
//!    parent the value (or the one remaining route's record) that the whole group stood for.
//! 2. *Publication order.* New groups and records are written completely (Relaxed stores)
//!    *before* the entry that links them is stored with `Release`; readers load every word with
//!    `Acquire`. A reader that sees a link therefore sees the whole fill, never stale contents of
//!    a reused slot. All other stores are `Release` too, so a reader that sees one update's store
//!    also sees everything the writer did before it.
//! 3. *Unlinked slots.* A group or record that an update unlinks is left as it is (a reader still
//!    on it reads the answers of the moment it was unlinked) and goes to a retire list tagged with
//!    the writer's current epoch ([`Writer::set_epoch`]). It returns to its pool only through
//!    [`Writer::reclaim`] with a quiescent epoch greater than its tag, i.e. once the caller's QSBR
//!    says every reader has passed a quiescent point after the unlink; only then can it be
//!    refilled. A record is never shared between a live place and an unlinked one whose meaning
//!    differs: a split links a fresh copy and retires the old record; a collapse moves the
//!    remaining route's record up to the parent entry, where every later change to it (its value,
//!    or a fallback written by a rule covering the whole parent entry) is also right for the
//!    unlinked group's readers.
//!
//! Reclamation happens only in [`Writer::reclaim`], on the control thread. A reader must not hold
//! a reference into the table across its quiescent point — lookups return a copied `u32`, so this
//! holds by construction. The protocol is model-checked with loom (`tests/route_loom.rs`).
//!
//! # With the data plane's QSBR
//!
//! The writer's epoch is the QSBR generation. Tag unlinks with the generation current when they
//! happen, publish a new generation when something was retired, and reclaim up to the oldest
//! generation an online reader has adopted:
//!
//! ```
//! use espada_lookup::route::RouteWriter;
//! use espada_qsbr::ReaderState;
//!
//! let (mut publisher, mut readers) = espada_qsbr::channel((), 1);
//! let mut writer = RouteWriter::new(64, 64, 1024).unwrap();
//! let routes = writer.routes(); // a worker's read handles, with `readers[0]`
//!
//! // Control thread: a batch of updates.
//! writer.set_epoch(publisher.generation());
//! writer.insert("192.0.2.7".parse().unwrap(), 32, 7).unwrap();
//! writer.remove("192.0.2.7".parse().unwrap(), 32).unwrap();
//! if writer.retired() > 0 {
//!     publisher.publish(());
//! }
//!
//! // Worker loop: look up between quiescent points.
//! readers[0].quiescent();
//! assert_eq!(routes.lookup("192.0.2.7".parse().unwrap()), None);
//!
//! // Control thread, later: reclaim what every online reader has left behind.
//! let oldest = publisher
//!     .readers()
//!     .iter()
//!     .filter_map(|r| match r.state {
//!         ReaderState::Online { adopted } => Some(adopted),
//!         ReaderState::Offline => None,
//!     })
//!     .min()
//!     .unwrap_or(u64::MAX);
//! assert_eq!(writer.reclaim(oldest), 1); // the tbl8 group of 192.0.2.0/24
//! publisher.reclaim();
//! ```
//!
//! # Cost of an update
//!
//! O(1) in the number of routes, plus the rule table's O(log n): a prefix of depth `d` ending at
//! a level that ends at bit `e` stores `2^(e − d)` entries of that level plus the entries and
//! fallbacks of the groups below them (as `rte_lpm` does when a short prefix covers longer ones);
//! its path takes at most one group per level, and with tails at most two records. A removal
//! searches the rule table for the covering prefix (one B-tree lookup per shorter length that has
//! routes) and scans the groups on its path that it may collapse (256 entries each). IPv4 prefixes
//! shorter than /16 cost more than 256 stores, up to 2²⁴ for a /0.
//!
//! # Source selectors
//!
//! The table answers "which tunnel is this destination for". The data plane then checks the
//! packet's source against the chosen tunnel's local selectors (a short list per tunnel), as it
//! does today: destination selectors are what a million tunnels differ by, the source check
//! only confirms the policy, and a joint two-dimensional structure would cost far more memory
//! and update work for no gain on the lookup path. The one case it does not serve is two tunnels
//! with the same remote prefix and different local ones: the value would then name a short list
//! of tunnels to check the source against, not a single tunnel.

mod trie;
pub mod v4;
pub mod v6;

use std::fmt;
use std::net::IpAddr;

pub use trie::{Table, TableStats, Writer};
pub use v4::{Ipv4Table, Ipv4Writer, V4};
pub use v6::{Ipv6Table, Ipv6Writer, V6};

#[cfg(loom)]
pub use trie::{Tiny, TinyTails};

/// Atomics and `Arc` of the tables: loom's under `cfg(loom)` so the model checker sees them.
mod sync {
    #[cfg(loom)]
    pub(crate) use loom::sync::Arc;
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicU32, Ordering};
    #[cfg(not(loom))]
    pub(crate) use std::sync::Arc;
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicU32, Ordering};
}

use sync::Arc;

/// The largest value (tunnel id) a route can carry: 2³⁰ − 1.
pub const MAX_VALUE: u32 = (1 << 30) - 1;

/// The largest number of groups (or tail records) a writer's pool can have: 2³⁰ (the index
/// shares the 30 payload bits with the value).
pub const MAX_GROUPS: u32 = 1 << 30;

/// An address family's trie layout. Implemented by [`V4`] and [`V6`] only (sealed).
pub trait Family: private::Layout + Send + Sync + 'static {
    /// The address type looked up ([`std::net::Ipv4Addr`] or [`std::net::Ipv6Addr`]).
    type Addr: Copy + fmt::Debug;
    /// The address as a key in the low bits of a `u128` (the trie's bit order: most
    /// significant address bit first).
    fn key(addr: Self::Addr) -> u128;
}

pub(crate) mod private {
    /// Layout constants of a family (sealed: not nameable outside the crate).
    pub trait Layout {
        /// Address width in bits.
        const WIDTH: u32;
        /// Bits indexed by the first level.
        const FIRST: u32;
        /// Bits indexed by every further level (a group has `2^STRIDE` entries).
        const STRIDE: u32;
        /// Whether an entry with a single rule below it links to a tail record.
        const TAILS: bool;
    }
}

/// Why a route could not be added or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// The prefix length is longer than the address.
    PrefixLength {
        /// The length given.
        len: u8,
        /// The address width (32 or 128).
        max: u8,
    },
    /// The value does not fit an entry ([`MAX_VALUE`]).
    ValueTooLarge {
        /// The value given.
        value: u32,
    },
    /// The group pool has too few free groups for this prefix. Nothing was changed. Retired
    /// groups come back after [`Writer::reclaim`].
    PoolExhausted {
        /// Groups the route needs.
        needed: usize,
        /// Groups free now.
        free: usize,
        /// Groups retired and waiting for a grace period.
        retired: usize,
    },
    /// The tail pool (IPv6) has too few free records for this prefix. Nothing was changed.
    /// Retired records come back after [`Writer::reclaim`].
    TailsExhausted {
        /// Records the route needs.
        needed: usize,
        /// Records free now.
        free: usize,
        /// Records retired and waiting for a grace period.
        retired: usize,
    },
    /// A pool size asked for is above [`MAX_GROUPS`].
    PoolTooLarge {
        /// The size given.
        size: u32,
    },
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::PrefixLength { len, max } => {
                write!(f, "prefix length {len} is longer than {max}")
            }
            RouteError::ValueTooLarge { value } => {
                write!(f, "route value {value} is above the maximum {MAX_VALUE}")
            }
            RouteError::PoolExhausted {
                needed,
                free,
                retired,
            } => write!(
                f,
                "route needs {needed} free groups, {free} free and {retired} awaiting reclamation"
            ),
            RouteError::TailsExhausted {
                needed,
                free,
                retired,
            } => write!(
                f,
                "route needs {needed} free tail records, {free} free and {retired} awaiting \
                 reclamation"
            ),
            RouteError::PoolTooLarge { size } => {
                write!(f, "pool of {size} is above the maximum {MAX_GROUPS}")
            }
        }
    }
}

impl std::error::Error for RouteError {}

/// Read handles of both families, as a worker holds them. Cloning clones two `Arc`s.
#[derive(Clone, Debug)]
pub struct Routes {
    /// The IPv4 table.
    pub v4: Arc<Ipv4Table>,
    /// The IPv6 table.
    pub v6: Arc<Ipv6Table>,
}

impl Routes {
    /// The word [`Routes::lookup`] reads at `level` for `addr`, for a prefetch ahead of the
    /// lookup: IPv4 levels 0 and 1 ([`Ipv4Table::word_at`]); IPv6 its first level only.
    #[inline]
    pub fn word_at(&self, addr: IpAddr, level: u8) -> Option<*const ()> {
        match addr {
            IpAddr::V4(a) => self.v4.word_at(a, level),
            IpAddr::V6(a) if level == 0 => self.v6.first_word(a),
            IpAddr::V6(_) => None,
        }
    }

    /// The value of the longest prefix containing `addr`, if any.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<u32> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(a),
            IpAddr::V6(a) => self.v6.lookup(a),
        }
    }
}

/// The control thread's writers of both families, sharing one epoch.
#[derive(Debug)]
pub struct RouteWriter {
    v4: Ipv4Writer,
    v6: Ipv6Writer,
}

impl RouteWriter {
    /// Builds empty tables with pools of `v4_groups` tbl8 groups, `v6_groups` IPv6 groups and
    /// `v6_tails` IPv6 tail records.
    pub fn new(v4_groups: u32, v6_groups: u32, v6_tails: u32) -> Result<RouteWriter, RouteError> {
        Ok(RouteWriter {
            v4: Ipv4Writer::new(v4_groups)?,
            v6: Ipv6Writer::new(v6_groups, v6_tails)?,
        })
    }

    /// Read handles for a worker.
    pub fn routes(&self) -> Routes {
        Routes {
            v4: self.v4.table(),
            v6: self.v6.table(),
        }
    }

    /// Adds `addr/len → value` or replaces the value of that prefix; returns the previous value.
    /// Host bits of `addr` beyond `len` are ignored.
    pub fn insert(&mut self, addr: IpAddr, len: u8, value: u32) -> Result<Option<u32>, RouteError> {
        match addr {
            IpAddr::V4(a) => self.v4.insert(a, len, value),
            IpAddr::V6(a) => self.v6.insert(a, len, value),
        }
    }

    /// Removes `addr/len`; returns its value, or `None` if there was no such route.
    pub fn remove(&mut self, addr: IpAddr, len: u8) -> Result<Option<u32>, RouteError> {
        match addr {
            IpAddr::V4(a) => self.v4.remove(a, len),
            IpAddr::V6(a) => self.v6.remove(a, len),
        }
    }

    /// The value of exactly `addr/len`, if that route exists.
    pub fn get(&self, addr: IpAddr, len: u8) -> Option<u32> {
        match addr {
            IpAddr::V4(a) => self.v4.get(a, len),
            IpAddr::V6(a) => self.v6.get(a, len),
        }
    }

    /// Sets both writers' epoch (see [`Writer::set_epoch`]).
    pub fn set_epoch(&mut self, epoch: u64) {
        self.v4.set_epoch(epoch);
        self.v6.set_epoch(epoch);
    }

    /// Reclaims in both writers (see [`Writer::reclaim`]); returns the groups freed.
    pub fn reclaim(&mut self, quiescent: u64) -> usize {
        self.v4.reclaim(quiescent) + self.v6.reclaim(quiescent)
    }

    /// Groups and tails retired and not yet reclaimed, both families.
    pub fn retired(&self) -> usize {
        let (v4, v6) = (self.v4.stats(), self.v6.stats());
        v4.groups_retired + v6.groups_retired + v6.tails_retired
    }

    /// The IPv4 writer.
    pub fn v4(&mut self) -> &mut Ipv4Writer {
        &mut self.v4
    }

    /// The IPv6 writer.
    pub fn v6(&mut self) -> &mut Ipv6Writer {
        &mut self.v6
    }
}
