//! IPv6: the same trie with a first level of 2¹⁶ entries and groups of 256 entries for every
//! further byte — at most 15 levels (`rte_lpm6` uses a first level of 2²⁴) — plus tail records
//! for routes that are alone below an entry.
//!
//! Why 16 and 8: a first level of 2²⁴ entries would add 64 MiB (on top of IPv4's `tbl24`) and
//! save one load, but it spreads nothing in practice: IPv6 unicast space is allocated from a few
//! /12s to /23s, so almost all of a 2²⁴ first level would be empty and the routes sit in groups
//! anyway. 2¹⁶ entries (256 KiB) stay in the cache. Groups of 256 entries keep the depth
//! bounded (a /48 ends at level 4, a /64 at level 6, a /128 at level 14) and updates per entry
//! as in IPv4.
//!
//! Why tails: in the plain trie every route has a group at every level of its path that no other
//! route shares. Routes handed out from an address pool share nearly all of them, but scattered
//! routes (site prefixes from many providers) would cost three groups (a /48) to five (a /64)
//! each: 3.6 and 5.7 KiB per route measured, 3.8 and 6 GB for a million. So an entry with exactly
//! one route below it links to a 32-byte record holding that route (key, length, value and the
//! entry's answer for its other addresses) instead; a second route below the entry splits the
//! record into groups down to where the two part, and a removal that leaves one route folds the
//! groups back into its record. The shape stays a function of the route set.
//!
//! Memory (measured by `tests/route_memory.rs`, table bytes readers share, level 0 included):
//!
//! | 2²⁰ routes                               | groups  | tails     | bytes per route |
//! |------------------------------------------|---------|-----------|-----------------|
//! | /48s handed out in order from a /28     | 4 114   | 0         | 4.3             |
//! | /64s handed out in order from a /44     | 4 116   | 0         | 4.3             |
//! | random /48s in 2000::/3                  | 198 399 | 1 048 558 | 226             |
//! | random /64s in 2000::/3                  | 198 466 | 1 048 576 | 226             |
//!
//! plus the writer's own arrays (one depth byte per group entry and a count per group: 1 and 49
//! bytes per route) and its rule table. Scattered routes crowd only the first levels (on average
//! 122 routes per first-level entry, hence a group each, and a group per level-1 entry that two
//! or more share); below that, each is one record. A pool needs room for what a split retires
//! until the next [`Writer::reclaim`].

use std::net::Ipv6Addr;

use super::private::Layout;
use super::{Family, Table, Writer};

/// The IPv6 family (marker type).
#[derive(Debug)]
pub struct V6;

impl Layout for V6 {
    const WIDTH: u32 = 128;
    const FIRST: u32 = 16;
    const STRIDE: u32 = 8;
    const TAILS: bool = true;
}

impl Family for V6 {
    type Addr = Ipv6Addr;
    #[inline]
    fn key(addr: Ipv6Addr) -> u128 {
        u128::from(addr)
    }
}

/// The IPv6 table workers read.
pub type Ipv6Table = Table<V6>;

/// The control thread's IPv6 writer.
pub type Ipv6Writer = Writer<V6>;

impl Writer<V6> {
    /// Builds an empty table: the first level, a pool of `groups` groups (1 KiB each) and one
    /// of `tails` tail records (32 bytes each), all allocated now.
    pub fn new(groups: u32, tails: u32) -> Result<Ipv6Writer, super::RouteError> {
        Writer::with_pools(groups, tails)
    }
}

impl Table<V6> {
    /// The first-level word [`Table::lookup`] reads for `addr` (for a prefetch).
    #[inline]
    pub fn first_word(&self, addr: Ipv6Addr) -> Option<*const ()> {
        self.first_word_key(u128::from(addr))
    }

    /// The value of the longest prefix containing `addr`: one Acquire load per level, at most
    /// 15.
    #[inline]
    pub fn lookup(&self, addr: Ipv6Addr) -> Option<u32> {
        self.lookup_key(u128::from(addr))
    }
}
