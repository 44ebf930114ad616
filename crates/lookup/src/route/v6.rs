//! IPv6: the same trie with a first level of 2¹⁶ entries and groups of 256 entries for every
//! further byte — at most 15 levels (`rte_lpm6` uses a first level of 2²⁴).
//!
//! Why 16 and 8: a first level of 2²⁴ entries would add 64 MiB (on top of IPv4's `tbl24`) and
//! save one load, but it spreads nothing in practice: IPv6 unicast space is allocated from a few
//! /12s to /23s, so almost all of a 2²⁴ first level would be empty and the routes sit in groups
//! anyway. 2¹⁶ entries (256 KiB) stay in the cache. Groups of 256 entries keep the depth
//! bounded (a /48 ends at level 4, a /64 at level 6, a /128 at level 14) and updates per entry
//! as in IPv4.
//!
//! Memory is one group (1 KiB, plus one shadow byte per entry on the control side) per distinct
//! path prefix: the groups at level `k ≥ 1` are the distinct `(8k + 8)`-bit prefixes of the
//! routes longer than that. Routes handed out from an address pool share their groups: a million
//! /64s or /48s allocated consecutively use ≈ 4 100 groups (≈ 4 bytes per route). Routes
//! scattered at random share only the upper levels: a random /48 costs about three groups of its
//! own and a random /64 about five (3–5 KiB per route); such tables need a pool sized
//! accordingly (`Writer::new`), and a path-compressed variant would be the next step if they
//! become the common case.

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

impl Table<V6> {
    /// The value of the longest prefix containing `addr`: one Acquire load per level, at most
    /// 15.
    #[inline]
    pub fn lookup(&self, addr: Ipv6Addr) -> Option<u32> {
        self.lookup_key(u128::from(addr))
    }
}
