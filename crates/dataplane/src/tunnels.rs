//! The tunnels as the workers see them: per tunnel, the outbound SA to send on and the peer's
//! address, each in atomics that the control thread changes one tunnel at a time (issue 13,
//! deliver items 1 and 3). Everything else about a tunnel (name, selectors, SA history) is
//! control-thread bookkeeping ([`crate::lifecycle`]); the selectors a worker checks travel
//! with each SA in its slab slot.
//!
//! **Switching outbound** ([`TunnelTable::set_outbound`]) is one `Release` store of one word:
//! every worker sees the old SA or the new one, never a mix. Only the tunnel's owner worker
//! encrypts, and it reads the word itself for every packet (also for packets another worker
//! handed to it), so from the packet where it first sees the new word on, it sends on the new
//! SA and never again on the old one (coherence of one location).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::tables::SaRef;

/// Bit of an outbound word that says an SA is set.
const SET: u64 = 1 << 63;

/// Family tag of a cell with no peer.
const NO_PEER: u32 = 0;

/// One tunnel's words.
#[derive(Default)]
struct Cell {
    /// `SET | owner << 32 | slot`, or 0 when the tunnel has no outbound SA.
    outbound: AtomicU64,
    /// 0 (none), 4 or 6.
    family: AtomicU32,
    /// The peer's address, most significant word first (IPv4 in word 0).
    peer: [AtomicU32; 4],
    /// Path MTU towards the peer (outer IP bytes), 0 when not known ([`crate::pmtu`]).
    mtu: AtomicU32,
    /// TCP MSS clamp, 0 for none ([`crate::forward::clamp_mss`]).
    mss: AtomicU32,
    /// [`Fragmentation`] as its discriminant.
    fragmentation: AtomicU32,
}

/// Where a packet too big for its tunnel is fragmented ([`crate::fragment`]).
pub use espada_config::Fragmentation;

/// Per-tunnel words, preallocated for a fixed number of tunnels.
pub struct TunnelTable {
    cells: Box<[Cell]>,
    /// Tunnels with an MSS clamp: while none has one, a worker reads no tunnel's word for it.
    clamped: AtomicU32,
}

impl TunnelTable {
    /// Room for `capacity` tunnels (ids `0..capacity`), all empty. 48 bytes per tunnel.
    pub fn new(capacity: u32) -> TunnelTable {
        TunnelTable {
            cells: (0..capacity).map(|_| Cell::default()).collect(),
            clamped: AtomicU32::new(0),
        }
    }

    /// Number of tunnel ids.
    pub fn capacity(&self) -> u32 {
        self.cells.len() as u32
    }

    /// Bytes of the table.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.cells)
    }

    /// Bytes of one tunnel's words ([`TunnelTable::word_of`]).
    pub const CELL_BYTES: usize = size_of::<Cell>();

    /// The words of `tunnel` (their address, for a prefetch of [`TunnelTable::CELL_BYTES`]).
    #[inline]
    pub fn word_of(&self, tunnel: u32) -> Option<*const ()> {
        self.cells
            .get(tunnel as usize)
            .map(|c| std::ptr::from_ref(c).cast())
    }

    /// The outbound SA of `tunnel` (worker, `Acquire`).
    #[inline]
    pub fn outbound(&self, tunnel: u32) -> Option<SaRef> {
        let w = self
            .cells
            .get(tunnel as usize)?
            .outbound
            .load(Ordering::Acquire);
        (w & SET != 0).then_some(SaRef {
            owner: (w >> 32) as u16,
            slot: w as u32,
        })
    }

    /// The peer address of `tunnel` (any thread).
    pub fn peer(&self, tunnel: u32) -> Option<IpAddr> {
        let c = self.cells.get(tunnel as usize)?;
        let w = |i: usize| c.peer[i].load(Ordering::Acquire);
        match c.family.load(Ordering::Acquire) {
            4 => Some(Ipv4Addr::from(w(0)).into()),
            6 => {
                let v = (u128::from(w(0)) << 96)
                    | (u128::from(w(1)) << 64)
                    | (u128::from(w(2)) << 32)
                    | u128::from(w(3));
                Some(Ipv6Addr::from(v).into())
            }
            _ => None,
        }
    }

    /// The path MTU towards the peer of `tunnel` (outer IP bytes), 0 when not known (worker,
    /// `Relaxed`: a packet checked against the value before a change is harmless).
    #[inline]
    pub fn path_mtu(&self, tunnel: u32) -> u32 {
        self.cells
            .get(tunnel as usize)
            .map_or(0, |c| c.mtu.load(Ordering::Relaxed))
    }

    /// Control thread: sets the path MTU of `tunnel` (0: not known). False when out of range.
    pub fn set_path_mtu(&self, tunnel: u32, mtu: u32) -> bool {
        let Some(c) = self.cells.get(tunnel as usize) else {
            return false;
        };
        c.mtu.store(mtu, Ordering::Relaxed);
        true
    }

    /// The TCP MSS clamp of `tunnel`, 0 for none (worker, `Relaxed`).
    #[inline]
    pub fn mss_clamp(&self, tunnel: u32) -> u16 {
        self.cells
            .get(tunnel as usize)
            .map_or(0, |c| c.mss.load(Ordering::Relaxed) as u16)
    }

    /// True when some tunnel has an MSS clamp (worker, `Relaxed`: a packet that sees a change
    /// late is clamped as before it).
    #[inline]
    pub fn any_mss_clamp(&self) -> bool {
        self.clamped.load(Ordering::Relaxed) != 0
    }

    /// Control thread: sets the TCP MSS clamp of `tunnel` (`None`: none). False when out of
    /// range.
    pub fn set_mss_clamp(&self, tunnel: u32, mss: Option<u16>) -> bool {
        let Some(c) = self.cells.get(tunnel as usize) else {
            return false;
        };
        let old = c.mss.swap(u32::from(mss.unwrap_or(0)), Ordering::Relaxed);
        match (old != 0, mss.is_some_and(|m| m != 0)) {
            (false, true) => self.clamped.fetch_add(1, Ordering::Relaxed),
            (true, false) => self.clamped.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
        true
    }

    /// Where `tunnel` fragments a packet too big for it (worker, `Relaxed`).
    #[inline]
    pub fn fragmentation(&self, tunnel: u32) -> Fragmentation {
        match self.cells.get(tunnel as usize) {
            Some(c) if c.fragmentation.load(Ordering::Relaxed) == 1 => {
                Fragmentation::AfterEncryption
            }
            _ => Fragmentation::BeforeEncryption,
        }
    }

    /// Control thread: sets where `tunnel` fragments. False when out of range.
    pub fn set_fragmentation(&self, tunnel: u32, f: Fragmentation) -> bool {
        let Some(c) = self.cells.get(tunnel as usize) else {
            return false;
        };
        c.fragmentation.store(f as u32, Ordering::Relaxed);
        true
    }

    /// Control thread: sets or clears the outbound SA of `tunnel` (`Release`). False when
    /// `tunnel` is out of range.
    pub fn set_outbound(&self, tunnel: u32, sa: Option<SaRef>) -> bool {
        let Some(c) = self.cells.get(tunnel as usize) else {
            return false;
        };
        let w = sa.map_or(0, |r| SET | (u64::from(r.owner) << 32) | u64::from(r.slot));
        c.outbound.store(w, Ordering::Release);
        true
    }

    /// Control thread: sets or clears the peer of `tunnel` (before the peer map refers to it).
    pub fn set_peer(&self, tunnel: u32, peer: Option<IpAddr>) -> bool {
        let Some(c) = self.cells.get(tunnel as usize) else {
            return false;
        };
        let (family, words) = match peer {
            None => (NO_PEER, [0; 4]),
            Some(IpAddr::V4(a)) => (4, [u32::from(a), 0, 0, 0]),
            Some(IpAddr::V6(a)) => {
                let v = u128::from(a);
                (
                    6,
                    [
                        (v >> 96) as u32,
                        (v >> 64) as u32,
                        (v >> 32) as u32,
                        v as u32,
                    ],
                )
            }
        };
        for (cell, w) in c.peer.iter().zip(words) {
            cell.store(w, Ordering::Relaxed);
        }
        c.family.store(family, Ordering::Release);
        true
    }
}

/// The key a peer address is filed under in the peer map: the IPv4 address itself, or a fold
/// of the IPv6 address (the map's values are checked against [`TunnelTable::peer`]).
#[inline]
pub fn peer_key(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            let folded = (v as u64) ^ ((v >> 64) as u64).rotate_left(17);
            (folded ^ (folded >> 32)) as u32
        }
    }
}

impl std::fmt::Debug for TunnelTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelTable")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_and_peer_round_trip() {
        let t = TunnelTable::new(3);
        assert_eq!(t.outbound(1), None);
        let r = SaRef {
            owner: 513,
            slot: 0xfff_fffe,
        };
        assert!(t.set_outbound(1, Some(r)));
        assert_eq!(t.outbound(1), Some(r));
        assert!(t.set_outbound(1, None));
        assert_eq!(t.outbound(1), None);
        assert!(!t.set_outbound(3, Some(r)));
        for ip in ["198.51.100.2", "2001:db8::1:2", "::ffff:192.0.2.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            t.set_peer(2, Some(ip));
            assert_eq!(t.peer(2), Some(ip));
        }
        t.set_peer(2, None);
        assert_eq!(t.peer(2), None);
        assert_eq!(t.outbound(7), None);
    }

    #[test]
    fn any_mss_clamp_counts_the_tunnels_that_have_one() {
        let t = TunnelTable::new(3);
        assert!(!t.any_mss_clamp());
        let steps = [
            (0, Some(1360), true),
            (1, Some(1400), true),
            (0, Some(1300), true), // a change, not a second clamp
            (0, None, true),
            (1, Some(0), false), // 0 is none
            (2, None, false),
        ];
        for (tunnel, mss, any) in steps {
            assert!(t.set_mss_clamp(tunnel, mss));
            assert_eq!(t.any_mss_clamp(), any, "{tunnel} {mss:?}");
        }
        assert!(!t.set_mss_clamp(3, Some(1)));
        assert!(!t.any_mss_clamp());
    }
}
