//! IPv4: DIR-24-8 as DPDK's `rte_lpm`.
//!
//! `tbl24` has 2²⁴ entries (64 MiB) indexed by the first 24 bits of the address; a prefix of
//! length ≤ 24 is expanded over `2^(24 − len)` of them. A longer prefix needs a `tbl8` group of
//! 256 entries (1 KiB) under its /24: the `tbl24` entry is *extended* to point to the group, and
//! the prefix covers `2^(32 − len)` of the group's entries. A lookup is one load, plus one more
//! when the first is extended.
//!
//! Memory: the writer's `groups` argument sizes the tbl8 pool (`groups` KiB, allocated at once,
//! plus one shadow byte per entry on the control side). One group serves every prefix longer
//! than /24 under the same /24: `n` host routes (/32) spread over distinct /24s need `n` groups
//! (1 KiB each), while `n` host routes packed in an address pool need `n / 256` groups (4 bytes
//! per route).

use std::net::Ipv4Addr;

use super::private::Layout;
use super::trie::{EXT, PAYLOAD, leaf_value};
use super::{Family, Table, Writer};

/// The IPv4 family (marker type).
#[derive(Debug)]
pub struct V4;

impl Layout for V4 {
    const WIDTH: u32 = 32;
    const FIRST: u32 = 24;
    const STRIDE: u32 = 8;
    const TAILS: bool = false;
}

impl Family for V4 {
    type Addr = Ipv4Addr;
    #[inline]
    fn key(addr: Ipv4Addr) -> u128 {
        u128::from(u32::from(addr))
    }
}

/// The IPv4 table workers read (`tbl24` and the `tbl8` pool).
pub type Ipv4Table = Table<V4>;

/// The control thread's IPv4 writer.
pub type Ipv4Writer = Writer<V4>;

impl Writer<V4> {
    /// Builds an empty table: `tbl24` and a pool of `groups` tbl8 groups (1 KiB each), all
    /// allocated now.
    pub fn new(groups: u32) -> Result<Ipv4Writer, super::RouteError> {
        Writer::with_pools(groups, 0)
    }
}

impl Table<V4> {
    /// The word [`Table::lookup`] reads at `level` for `addr` (0: the `tbl24` entry; 1: the
    /// `tbl8` entry, found by reading the `tbl24` one; `None` when the lookup stops before):
    /// for a prefetch ahead of the lookup.
    #[inline]
    pub fn word_at(&self, addr: Ipv4Addr, level: u8) -> Option<*const ()> {
        let a = u32::from(addr);
        let first = self.level0().get((a >> 8) as usize)?;
        if level == 0 {
            return Some(std::ptr::from_ref(first).cast());
        }
        let entry = first.load(super::sync::Ordering::Relaxed);
        if entry & EXT == 0 {
            return None;
        }
        let at = ((entry & PAYLOAD) as usize) << 8 | (a & 0xff) as usize;
        self.groups().get(at).map(|w| std::ptr::from_ref(w).cast())
    }

    /// The value of the longest prefix containing `addr`: one or two Acquire loads.
    #[inline]
    pub fn lookup(&self, addr: Ipv4Addr) -> Option<u32> {
        let a = u32::from(addr);
        let entry = self
            .level0()
            .get((a >> 8) as usize)?
            .load(super::sync::Ordering::Acquire);
        if entry & EXT == 0 {
            return leaf_value(entry);
        }
        let at = ((entry & PAYLOAD) as usize) << 8 | (a & 0xff) as usize;
        leaf_value(self.groups().get(at)?.load(super::sync::Ordering::Acquire))
    }
}
