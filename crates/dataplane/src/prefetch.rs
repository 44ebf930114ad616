//! Lookahead prefetch for the packet loop.
//!
//! With many SAs each packet needs state that is not in the cache, found through a chain in
//! which each address comes from the line before. The worker asks for it ahead in the burst,
//! one link per step, so that each step reads only lines an earlier step brought in (DPDK's
//! l3fwd and ipsec-secgw prefetch a fixed number of packets ahead in the same way; prefetching
//! a whole burst at once was measured to evict what the current packet needs,
//! docs/performance.md). A [`Chain`] is the steps of one direction, each with its distance;
//! the outside port's bursts have their own steps instead ([`crate::burst`]), which prefetch
//! between whole-burst steps and carry what they find.
//!
//! | step | [`Outbound`] (inside port) |
//! |---|---|
//! | 1 | the inner destination → its first route word (9 ahead) |
//! | 2 | first route word → the second (`tbl8`, IPv4) (8) |
//! | 3 | route → the tunnel's word (7) |
//! | 4 | tunnel word → the slab's word for the outbound slot (5) |
//! | 5 | slab word → the slot's lines (4) |
//! | 6 | slot → counters (their first 32 bytes), policy, key-cache set ids (3) |
//! | 7 | policy → its prefixes (2) |
//! | 8 | set ids → the key schedule's lines a short packet reads (1) |
//!
//! A policy the slot holds inline (one IPv4 prefix a side, [`crate::selectors`]) needs
//! neither of the policy's prefetches. The inner destination is read of IPv4 or IPv6 after an
//! untagged Ethernet header. Of the key
//! schedule (eighteen lines) only the lines a short packet reads are prefetched
//! ([`espada_esp::KeyCache::short_packet_lines`]: intel-ipsec-mb's, found by a probe; five or
//! six lines): all eighteen, two packets ahead, measured slower at 1,000 SAs than leaving
//! them to the cipher's own loads; these few, +2…+7 % there and +25…+80 % encrypting 16,000
//! SAs (docs/performance.md). Only hints: a frame a chain cannot follow is skipped, and
//! nothing here changes any state or counter; the packet's own processing looks everything up
//! again. Whether a burst runs a chain at all is the worker's measured choice
//! ([`crate::depth`]).

use std::net::IpAddr;
use std::sync::Arc;

use dpdk::Drain;
use espada_buf::PacketBuf;
use espada_esp::{SaCounters, SaKey};
use espada_wire::{ether, ip};

use crate::eth;
use crate::pipeline::Ctx;
use crate::selectors::SlotPolicy;
use crate::slab::{InboundSlot, OutboundSlot};
use crate::tunnels::TunnelTable;

/// Packets ahead whose data is prefetched when no chain runs (the frame's first line:
/// Ethernet, IP and ESP headers; [`data`]); a chain prefetches it farther ahead, beyond its
/// first step, which reads it ([`Chain::DATA`]).
pub const DATA: usize = 8;

/// No slot or tunnel for this packet.
const NONE: u32 = u32::MAX;

/// What an earlier step kept for position `i`, if anything.
#[inline]
fn kept<const N: usize>(v: &[u32; N], i: usize) -> Option<u32> {
    v.get(i).copied().filter(|&x| x != NONE)
}

/// The steps of one direction's lookahead.
pub trait Chain {
    /// Packets ahead whose data is prefetched ([`data`]): beyond the first step.
    const DATA: usize;
    /// Packets ahead of each step, the first step farthest; all below [`Chain::DATA`].
    const AHEAD: &'static [usize];
    /// Step `s` for the packet at position `i` of the burst, `frame` its data.
    fn step(&mut self, s: usize, i: usize, frame: &[u8], cx: &Ctx<'_>);
}

const _: () = {
    assert!(Outbound::<32>::AHEAD[0] < Outbound::<32>::DATA);
};

/// No lookahead (few SAs): no steps.
pub struct NoChain;

impl Chain for NoChain {
    const DATA: usize = DATA;
    const AHEAD: &'static [usize] = &[];
    #[inline(always)]
    fn step(&mut self, _: usize, _: usize, _: &[u8], _: &Ctx<'_>) {}
}

/// The steps for the first packets of a burst: `it` has yielded nothing yet. Each step is
/// asked of all of them before the next (their misses overlap).
#[inline]
pub fn start<C: Chain, const B: usize>(c: &mut C, it: &Drain<'_, B>, cx: &Ctx<'_>) {
    for (s, &d) in C::AHEAD.iter().enumerate() {
        for k in 0..d {
            if let Some(m) = it.ahead(k) {
                c.step(s, k, m.data(), cx);
            }
        }
    }
}

/// The steps that come due once packet `i` was taken out of `it`: each for the packet its
/// distance ahead of `i`.
#[inline]
pub fn advance<C: Chain, const B: usize>(c: &mut C, i: usize, it: &Drain<'_, B>, cx: &Ctx<'_>) {
    for (s, &d) in C::AHEAD.iter().enumerate() {
        if let Some(m) = it.ahead(d - 1) {
            c.step(s, i + d, m.data(), cx);
        }
    }
}

/// The packet loop's data prefetch, for every burst from a queue or ring, once the burst's
/// mbuf headers were prefetched (`Burst::prefetch_headers`): with `start` (before the loop)
/// the data of the first `ahead` packets, else that of the packet `ahead` places after the
/// one `it` yields next ([`DATA`], or a chain's [`Chain::DATA`]). A NIC or another core wrote
/// them: without it each packet stalls on two misses in a row, its mbuf header and then its
/// data.
#[inline]
pub fn data<const B: usize>(it: &Drain<'_, B>, start: bool, ahead: usize) {
    if start {
        for k in 0..ahead {
            if let Some(m) = it.ahead(k) {
                m.prefetch_data();
            }
        }
    } else if let Some(m) = it.ahead(ahead - 1) {
        m.prefetch_data();
    }
}

/// What the last steps of the outbound chain and of the inbound burst path
/// ([`crate::burst`]) prefetch of a slot.
pub(crate) trait SlotParts {
    fn parts(&self) -> (&Arc<SaCounters>, &SlotPolicy, &SaKey);
}

impl SlotParts for InboundSlot {
    #[inline]
    fn parts(&self) -> (&Arc<SaCounters>, &SlotPolicy, &SaKey) {
        (self.sa.counters(), &self.policy, self.sa.key())
    }
}

impl SlotParts for OutboundSlot {
    #[inline]
    fn parts(&self) -> (&Arc<SaCounters>, &SlotPolicy, &SaKey) {
        (self.sa.counters(), &self.policy, self.sa.key())
    }
}

/// The step that finds a packet's slot (in either chain): prefetches the slab's word for
/// `found` (`word` gives its address) and keeps the slot in `cell` for the later steps.
#[inline]
fn keep_slot(
    cell: Option<&mut u32>,
    found: Option<u32>,
    word: impl FnOnce(u32) -> Option<*const ()>,
) {
    let w = found.and_then(word);
    if let Some(w) = w {
        dpdk::prefetch0(w);
    }
    if let Some(cell) = cell {
        *cell = found.filter(|_| w.is_some()).unwrap_or(NONE);
    }
}

/// The last four steps of the outbound chain, and three of the inbound burst path, for a slot
/// `e`: `k` 0 its lines; 1 its counters, policy and key-cache set ids; 2 its policy's
/// prefixes; 3 its key schedule's lines a short packet reads (in the cache's set by then;
/// the burst path does this in its cipher step, [`crate::burst`]).
#[inline]
pub(crate) fn slot_step<S: SlotParts>(k: usize, e: &S, cx: &Ctx<'_>) {
    let (counters, policy, key) = e.parts();
    match k {
        0 => dpdk::prefetch0_lines(e, size_of_val(e)),
        1 => {
            dpdk::prefetch0_lines(Arc::as_ptr(counters), SaCounters::HOT_BYTES);
            if !policy.is_inline() {
                dpdk::prefetch0(Arc::as_ptr(policy.shared()));
            }
            dpdk::prefetch0(cx.sas.keys().set_ids(key));
        }
        2 => {
            if !policy.is_inline() {
                dpdk::prefetch0(policy.shared().remote_ts.as_ptr());
                dpdk::prefetch0(policy.shared().local_ts.as_ptr());
            }
        }
        _ => cx.sas.keys().short_packet_lines(key, dpdk::prefetch0),
    }
}

/// The inner destination of a cleartext frame (at its Ethernet header, untagged).
#[inline]
pub fn peek_dst(frame: &[u8]) -> Option<IpAddr> {
    let (_, dst) = ip::addrs(frame.get(ether::HEADER_LEN..)?)?;
    let ethertype = match dst {
        IpAddr::V4(_) => ether::ETHERTYPE_IPV4,
        IpAddr::V6(_) => ether::ETHERTYPE_IPV6,
    };
    (eth::ethertype(frame)? == ethertype).then_some(dst)
}

/// The outbound chain (table above): the tunnels step 3 and the slots step 4 found, by
/// position in the burst.
pub struct Outbound<const N: usize = 32> {
    tunnel: [u32; N],
    slot: [u32; N],
}

impl<const N: usize> Default for Outbound<N> {
    fn default() -> Self {
        Outbound {
            tunnel: [NONE; N],
            slot: [NONE; N],
        }
    }
}

impl<const N: usize> Chain for Outbound<N> {
    const DATA: usize = 11;
    const AHEAD: &'static [usize] = &[9, 8, 7, 5, 4, 3, 2, 1];

    #[inline]
    fn step(&mut self, s: usize, i: usize, frame: &[u8], cx: &Ctx<'_>) {
        match s {
            0 | 1 => {
                if let Some(w) = peek_dst(frame).and_then(|d| cx.t.routes.word_at(d, s as u8)) {
                    dpdk::prefetch0(w);
                }
            }
            2 => {
                let tunnel = peek_dst(frame).and_then(|d| cx.t.routes.lookup(d));
                if let Some(w) = tunnel.and_then(|t| cx.t.tunnels.word_of(t)) {
                    dpdk::prefetch0_lines(w, TunnelTable::CELL_BYTES);
                }
                if let Some(cell) = self.tunnel.get_mut(i) {
                    *cell = tunnel.unwrap_or(NONE);
                }
            }
            3 => {
                let found = kept(&self.tunnel, i)
                    .and_then(|t| cx.t.tunnels.outbound(t))
                    .filter(|r| r.owner == cx.me)
                    .map(|r| r.slot);
                keep_slot(self.slot.get_mut(i), found, |s| cx.sas.outbound_word(s));
            }
            s => {
                if let Some(e) = kept(&self.slot, i).and_then(|s| cx.sas.outbound_ref(s)) {
                    slot_step(s - 4, e, cx);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn frame(ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    fn ipv4(ihl: u8, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; usize::from(ihl) * 4];
        h[0] = 0x40 | ihl;
        h[9] = proto;
        h.extend_from_slice(l4);
        h
    }

    fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[6] = next;
        h.extend_from_slice(l4);
        h
    }

    fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = vec![0x11, 0x94];
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&[0; 4]);
        u.extend_from_slice(payload);
        u
    }

    #[test]
    fn the_inner_destination_is_read_where_the_route_lookup_reads_it() {
        let mut v4 = ipv4(5, 17, &udp(53, &[0; 8]));
        v4[16..20].copy_from_slice(&[192, 0, 2, 77]);
        let mut v6 = ipv6(17, &udp(53, &[0; 8]));
        v6[24..40].copy_from_slice(&"2001:db8::77".parse::<Ipv6Addr>().unwrap().octets());
        let cases: [(&str, Vec<u8>, Option<IpAddr>); 4] = [
            (
                "ipv4",
                frame(0x0800, &v4),
                Some("192.0.2.77".parse().unwrap()),
            ),
            (
                "ipv6",
                frame(0x86dd, &v6),
                Some("2001:db8::77".parse().unwrap()),
            ),
            ("vlan", frame(0x8100, &v4), None),
            ("version", frame(0x86dd, &v4), None),
        ];
        for (name, f, want) in cases {
            assert_eq!(peek_dst(&f), want, "{name}");
            if want.is_some() {
                for n in 0..f.len() {
                    let _ = peek_dst(&f[..n]); // any truncation: no panic
                }
                let whole = match want {
                    Some(IpAddr::V4(_)) => 14 + 20,
                    _ => 14 + 40,
                };
                assert_eq!(peek_dst(&f[..whole - 1]), None, "{name} truncated");
            }
        }
    }
}
