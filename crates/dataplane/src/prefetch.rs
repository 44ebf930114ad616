//! Lookahead prefetch for the inbound packet loop.
//!
//! With many SAs each packet needs state that is not in the cache: its directory entry, its
//! slot (five lines), the SA's counters, the tunnel's selectors and the ids of its key-cache
//! set. The worker asks for them a few packets ahead in the burst, in three steps so that each
//! step reads only lines the step before brought in (DPDK's l3fwd and ipsec-secgw prefetch a
//! fixed number of packets ahead in the same way; prefetching a whole burst at once was
//! measured to evict what the current packet needs, docs/performance.md):
//!
//! 1. [`FAR`] packets ahead: the SPI from the frame (Ethernet without a VLAN tag, an IPv4
//!    header of any length or IPv6 without extension headers, ESP or UDP port 4500 with a
//!    non-zero first word), its directory entry, the slab's pointer → the slot's lines;
//! 2. [`MID`] ahead: the slot → the counters, the policy and the key-cache set's ids;
//! 3. [`NEAR`] ahead: the policy → its prefixes.
//!
//! The key schedule itself (up to eighteen lines) is not prefetched: finding its line needs
//! the set's ids, and doing so two packets ahead measured slower at 1,000 SAs than leaving it
//! to the cipher's own loads. Only hints: a frame that is not plain ESP to an SA of this worker
//! is skipped, and nothing here changes any state or counter; the packet's own processing
//! looks everything up again. The worker runs the lookahead only while it holds [`MIN_SAS`]
//! inbound SAs or more.

use std::sync::Arc;

use dpdk::Drain;
use espada_buf::PacketBuf;
use espada_lookup::sad::Lookup;
use espada_wire::{ether, proto};

use crate::pipeline::Ctx;
use crate::slab::InboundSlot;

/// Packets ahead whose data is prefetched, whatever the number of SAs (the frame's first
/// line: Ethernet, IP and ESP headers; [`data`]).
pub const DATA: usize = 8;
/// Packets ahead for step 1 (directory, slot).
pub const FAR: usize = 6;
/// Packets ahead for step 2 (counters, policy, key-cache set).
pub const MID: usize = 4;
/// Packets ahead for step 3 (selectors).
pub const NEAR: usize = 2;

/// Inbound SAs a worker must hold for the lookahead to run: below it their state stays in the
/// cache and the lookahead only costs (64-byte decryption, one worker, docs/performance.md:
/// about −7 % at 64 SAs, −4 % at 256, +2 % at 512, +12 % at 1,000, +100 % at 16,000).
pub const MIN_SAS: usize = 512;

/// No slot for this packet.
const NONE: u32 = u32::MAX;

/// The slots step 1 found, by position in the burst.
pub struct Lookahead<const N: usize = 32> {
    slot: [u32; N],
}

impl<const N: usize> Default for Lookahead<N> {
    fn default() -> Self {
        Lookahead { slot: [NONE; N] }
    }
}

/// The packet loop's data prefetch, for every burst from a queue or ring, once the burst's
/// mbuf headers were prefetched (`Burst::prefetch_headers`): with `start` (before the loop)
/// the data of the first [`DATA`] packets, else that of the packet [`DATA`] places after the
/// one `it` yields next. A NIC or another core wrote them: without it each packet stalls on
/// two misses in a row, its mbuf header and then its data.
#[inline]
pub fn data<const B: usize>(it: &Drain<'_, B>, start: bool) {
    if start {
        for k in 0..DATA {
            if let Some(m) = it.ahead(k) {
                m.prefetch_data();
            }
        }
    } else if let Some(m) = it.ahead(DATA - 1) {
        m.prefetch_data();
    }
}

/// The SPI of a frame (at its Ethernet header) carrying ESP or UDP-encapsulated ESP, for the
/// layouts of step 1 only.
#[inline]
pub fn peek_spi(frame: &[u8]) -> Option<u32> {
    let ethertype = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    let ip = frame.get(ether::HEADER_LEN..)?;
    let (next, l4) = match (ethertype, ip.first()? >> 4) {
        (ether::ETHERTYPE_IPV4, 4) => (*ip.get(9)?, usize::from(ip[0] & 0x0f) * 4),
        (ether::ETHERTYPE_IPV6, 6) => (*ip.get(6)?, 40),
        _ => return None,
    };
    let esp = match next {
        proto::ESP => ip.get(l4..)?,
        proto::UDP if ip.get(l4 + 2..l4 + 4)? == 4500u16.to_be_bytes() => ip.get(l4 + 8..)?,
        _ => return None,
    };
    let spi = u32::from_be_bytes(esp.get(..4)?.try_into().ok()?);
    // Zero is the non-ESP marker of IKE on port 4500 (RFC 3948 §2.2).
    (spi != 0).then_some(spi)
}

impl<const N: usize> Lookahead<N> {
    /// The three steps for the first packets of a burst: `it` has yielded nothing yet.
    #[inline]
    pub fn start<const B: usize>(&mut self, it: &Drain<'_, B>, cx: &Ctx<'_>) {
        for k in 0..FAR {
            if let Some(m) = it.ahead(k) {
                self.sa(k, m.data(), cx);
            }
        }
        for k in 0..MID {
            self.state(k, cx);
        }
        for k in 0..NEAR {
            self.selectors(k, cx);
        }
    }

    /// The steps that come due once packet `i` was taken out of `it`: step 1 for `i + FAR`,
    /// 2 for `i + MID`, 3 for `i + NEAR`.
    #[inline]
    pub fn advance<const B: usize>(&mut self, i: usize, it: &Drain<'_, B>, cx: &Ctx<'_>) {
        if let Some(m) = it.ahead(FAR - 1) {
            self.sa(i + FAR, m.data(), cx);
        }
        self.state(i + MID, cx);
        self.selectors(i + NEAR, cx);
    }

    /// Step 1 for the packet at position `i` of the burst, `frame` its data.
    #[inline]
    fn sa(&mut self, i: usize, frame: &[u8], cx: &Ctx<'_>) {
        let Some(s) = self.slot.get_mut(i) else {
            return;
        };
        *s = NONE;
        let Some(spi) = peek_spi(frame) else {
            return;
        };
        if let Lookup::Live { owner, slot, .. } = cx.t.sad.lookup(spi)
            && owner == cx.me
            && let Some(e) = cx.sas.inbound_ref(slot)
        {
            dpdk::prefetch0_lines(e, size_of_val(e));
            *s = slot;
        }
    }

    /// Step 2 for the packet at position `i`.
    #[inline]
    fn state(&self, i: usize, cx: &Ctx<'_>) {
        let Some(e) = self.slot_of(i, cx) else {
            return;
        };
        let counters = e.sa.counters();
        dpdk::prefetch0_lines(Arc::as_ptr(counters), size_of_val(counters.as_ref()));
        dpdk::prefetch0(Arc::as_ptr(&e.policy));
        dpdk::prefetch0(cx.sas.keys().set_ids(e.sa.key()));
    }

    /// Step 3 for the packet at position `i`.
    #[inline]
    fn selectors(&self, i: usize, cx: &Ctx<'_>) {
        let Some(e) = self.slot_of(i, cx) else {
            return;
        };
        dpdk::prefetch0(e.policy.remote_ts.as_ptr());
        dpdk::prefetch0(e.policy.local_ts.as_ptr());
    }

    #[inline]
    fn slot_of<'c>(&self, i: usize, cx: &'c Ctx<'_>) -> Option<&'c InboundSlot> {
        match *self.slot.get(i)? {
            NONE => None,
            slot => cx.sas.inbound_ref(slot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const SPI: [u8; 8] = [0x12, 0x34, 0x56, 0x78, 0, 0, 0, 1];

    #[test]
    fn the_spi_is_found_where_classify_finds_it_and_nowhere_else() {
        let cases: [(&str, Vec<u8>, Option<u32>); 10] = [
            (
                "ipv4 esp",
                frame(0x0800, &ipv4(5, 50, &SPI)),
                Some(0x1234_5678),
            ),
            (
                "ipv4 options",
                frame(0x0800, &ipv4(7, 50, &SPI)),
                Some(0x1234_5678),
            ),
            (
                "ipv6 esp",
                frame(0x86dd, &ipv6(50, &SPI)),
                Some(0x1234_5678),
            ),
            (
                "nat-t",
                frame(0x0800, &ipv4(5, 17, &udp(4500, &SPI))),
                Some(0x1234_5678),
            ),
            (
                "nat-t ipv6",
                frame(0x86dd, &ipv6(17, &udp(4500, &SPI))),
                Some(0x1234_5678),
            ),
            (
                "ike on 4500",
                frame(0x0800, &ipv4(5, 17, &udp(4500, &[0; 8]))),
                None,
            ),
            (
                "ike on 500",
                frame(0x0800, &ipv4(5, 17, &udp(500, &SPI))),
                None,
            ),
            ("vlan", frame(0x8100, &ipv4(5, 50, &SPI)), None),
            ("version", frame(0x0800, &ipv6(50, &SPI)), None),
            ("short", frame(0x0800, &ipv4(5, 50, &SPI[..3])), None),
        ];
        for (name, f, want) in cases {
            assert_eq!(peek_spi(&f), want, "{name}");
            for n in 0..f.len() {
                let _ = peek_spi(&f[..n]); // any truncation: no panic
            }
        }
    }
}
