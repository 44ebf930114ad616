//! The outside port's burst path: a whole burst goes through each step before any packet goes
//! through the next, the packets still to do compacted at the front of a list, those done
//! (anything not ESP to one of this worker's SAs, or dropped by a step) leaving it with their
//! verdict. What a step found (the facts of classification, the SA's slot, the replay
//! candidate) is carried to the next, never looked up again.
//!
//! | step | does | prefetches for the next |
//! |---|---|---|
//! | 1 | Ethernet, outer header, [`espada_esp::classify`] ([`pipeline::outside_front`], its facts kept in place); the data of the packet [`prefetch::DATA`] ahead, always | the SPI's directory word |
//! | 2 | SPI → slot, or unknown / tombstone / another worker's ([`pipeline::esp_slot`]) | the slab's word for the slot |
//! | 3 | | the slot's lines |
//! | 4 | SPI, hard lifetime, replay window ([`InboundSa::check`], RFC 4303 §3.4.3) | counters, policy, key-cache set ids |
//! | 5 | ICV and decryption ([`InboundSa::open`], §3.4.4); [`KEY_AHEAD`] packets ahead, the key schedule's lines a short packet reads | the policy's prefixes |
//! | 6 | window and lifetime again, commit, trailer, inner header ([`InboundSa::finish`]); selectors, TTL, L2 ([`pipeline::deliver`]) | |
//!
//! The commit of step 6 checks the window again: a duplicate of a packet earlier in the same
//! burst passes step 4 and is refused there (`replayed`), and packets out of order within the
//! window are all accepted; so is the hard lifetime, so that no packet after the one that
//! reached it is delivered. Which packets are delivered is the same as one packet at a time;
//! the reason of a drop can differ where the checks before the cipher saw the SA as it was at
//! the start of the burst: a forgery that reuses the sequence number of an authentic packet
//! earlier in its burst, or follows the packet that reached the hard lifetime, fails the ICV
//! (`auth_failed`) where the per-packet path refuses it before the cipher (`replayed`,
//! `lifetime_expired`), and a duplicate after that packet is `replayed`, not
//! `lifetime_expired`. An SA's packet and byte counters, its sequence number and replay
//! bitmap for `show sa` are published once per run of its packets in the burst
//! ([`InboundSa::publish`]), the worker's decapsulation counter once per burst.
//!
//! It pays where the SAs' state is not in the CPU's caches; where it is, one frame at a time
//! ([`pipeline::outside_frame`]) is faster, and the worker measures which of the two a port's
//! bursts run ([`crate::depth`]).
//!
//! [`InboundSa::check`]: espada_esp::InboundSa::check
//! [`InboundSa::open`]: espada_esp::InboundSa::open
//! [`InboundSa::finish`]: espada_esp::InboundSa::finish
//! [`InboundSa::publish`]: espada_esp::InboundSa::publish

use espada_buf::PacketBuf;
use espada_esp::{DropReason, Opening, Tally};

use crate::drops::{DpDrop, Why};
use crate::pipeline::{self, Ctx, EspFacts, Verdict};
use crate::prefetch;
use crate::stats::Counter;

/// The largest burst (the worker's RX burst).
pub const MAX: usize = 32;

/// How many packets ahead the cipher step prefetches a key schedule's lines (four measured
/// the same at 16,000 and 100,000 SAs, docs/performance.md).
const KEY_AHEAD: usize = 2;

/// A packet whose slot no longer holds its SA (as in [`pipeline::esp_in`]'s path).
const NOT_OWNER: Verdict = Verdict::Drop(Why::Dp(DpDrop::NotOwner));

/// The packets of a burst a step still has to do: their positions, in order.
struct Todo {
    at: [u8; MAX],
    n: usize,
}

impl Todo {
    /// Runs `f` for each position still to do, keeping those for which it returns `true`.
    #[inline(always)]
    fn retain(&mut self, mut f: impl FnMut(usize) -> bool) {
        self.retain_ahead(0, &mut (), |_, _| {}, |_, i| f(i));
    }

    /// [`Todo::retain`] with a lookahead: before `f` of each position, `ahead` of the position
    /// `d` places further on (and of the first `d` before the first `f`), both given `cx`.
    #[inline(always)]
    fn retain_ahead<C>(
        &mut self,
        d: usize,
        cx: &mut C,
        ahead: impl Fn(&C, usize),
        mut f: impl FnMut(&mut C, usize) -> bool,
    ) {
        for &i in &self.at[..d.min(self.n)] {
            ahead(cx, usize::from(i));
        }
        let mut kept = 0;
        for k in 0..self.n {
            // Not yet overwritten: `kept` never passes `k`.
            if k + d < self.n {
                ahead(cx, usize::from(self.at[k + d]));
            }
            let i = self.at[k];
            if f(cx, usize::from(i)) {
                self.at[kept] = i;
                kept += 1;
            }
        }
        self.n = kept;
    }

    #[inline(always)]
    fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.at[..self.n].iter().map(|&i| usize::from(i))
    }
}

/// Runs a burst received on the outside port (at most [`MAX`] frames; positions whose
/// verdict `v` already holds are skipped) and leaves each frame's verdict in `v`.
pub fn outside<B: PacketBuf>(pkts: &mut [B], v: &mut [Option<Verdict>; MAX], cx: &mut Ctx<'_>) {
    let n = pkts.len().min(MAX);
    let mut facts = [None::<EspFacts>; MAX];
    let mut slot = [0u32; MAX];
    let mut todo = Todo { at: [0; MAX], n: 0 };
    // 1: classification, the data of the packets ahead prefetched (a NIC or another core
    // wrote it).
    for m in pkts.iter().take(prefetch::DATA) {
        dpdk::prefetch0(m.data().as_ptr());
    }
    for i in 0..n {
        if let Some(m) = pkts.get(i + prefetch::DATA) {
            dpdk::prefetch0(m.data().as_ptr());
        }
        if v[i].is_some() {
            continue;
        }
        let kept = &mut facts[i];
        let front = pipeline::outside_front(&mut pkts[i], cx, |_, cx, f| {
            if let Some(w) = cx.t.sad.word_of(f.spi) {
                dpdk::prefetch0(w);
            }
            *kept = Some(f);
            None
        });
        match front {
            Some(x) => v[i] = Some(x),
            None => {
                todo.at[todo.n] = i as u8;
                todo.n += 1;
            }
        }
    }
    // 2: the SA's slot.
    todo.retain(|i| {
        let Some(f) = &facts[i] else {
            v[i] = Some(NOT_OWNER);
            return false;
        };
        match pipeline::esp_slot(&pkts[i], cx, false, f) {
            Ok(s) => {
                if let Some(w) = cx.sas.inbound_word(s) {
                    dpdk::prefetch0(w);
                }
                slot[i] = s;
                true
            }
            Err(x) => {
                v[i] = Some(x);
                false
            }
        }
    });
    // 3: the slots' lines.
    for i in todo.positions() {
        if let Some(e) = cx.sas.inbound_ref(slot[i]) {
            prefetch::slot_step(0, e, cx);
        }
    }
    // 4: the checks before the cipher.
    let mut opening = [None::<Opening>; MAX];
    todo.retain(|i| {
        let s = slot[i];
        let checked = match (&facts[i], cx.sas.inbound_ref(s)) {
            (Some(f), Some(e)) if e.sa.spi() == f.spi => {
                e.sa.check(&pkts[i], f.esp_offset, f.end, f.tos)
            }
            _ => {
                v[i] = Some(NOT_OWNER);
                return false;
            }
        };
        match checked {
            Ok(o) => {
                if let Some(e) = cx.sas.inbound_ref(s) {
                    prefetch::slot_step(1, e, cx);
                }
                opening[i] = Some(o);
                true
            }
            Err(r) => {
                v[i] = Some(failed(&mut pkts[i], cx, s, r));
                false
            }
        }
    });
    // 5: the cipher, the lines of the key schedule a short packet reads prefetched
    // `KEY_AHEAD` packets ahead (their set ids came in with step 4's prefetch).
    let key_lines = |cx: &Ctx<'_>, i: usize| {
        if let Some(e) = cx.sas.inbound_ref(slot[i]) {
            prefetch::slot_step(3, e, cx);
        }
    };
    todo.retain_ahead(KEY_AHEAD, cx, key_lines, |cx, i| {
        let s = slot[i];
        let opened = match (&opening[i], cx.sas.inbound_keyed(s)) {
            (Some(o), Some((e, keys))) => e.sa.open(keys, &mut pkts[i], o),
            _ => {
                v[i] = Some(NOT_OWNER);
                return false;
            }
        };
        match opened {
            Ok(()) => {
                if let Some(e) = cx.sas.inbound_ref(s) {
                    prefetch::slot_step(2, e, cx);
                }
                true
            }
            Err(r) => {
                v[i] = Some(failed(&mut pkts[i], cx, s, r));
                false
            }
        }
    });
    // 6: the commit and the rest; counters per run of one SA.
    let mut run: Option<(u32, Tally)> = None;
    let mut decapsulated = 0;
    for i in todo.positions() {
        let s = slot[i];
        if run.is_some_and(|(rs, _)| rs != s) {
            publish(cx, run.take());
        }
        let tally = &mut run.get_or_insert((s, Tally::default())).1;
        let (Some(o), Some(e)) = (&opening[i], cx.sas.inbound(s)) else {
            v[i] = Some(NOT_OWNER);
            continue;
        };
        let r = e.sa.finish(&mut pkts[i], o, tally);
        let spi = e.sa.spi();
        let d = pipeline::judge(&pkts[i], e, r);
        decapsulated += u64::from(d.inner.is_ok());
        v[i] = Some(pipeline::deliver(&mut pkts[i], cx, s, spi, d));
    }
    publish(cx, run);
    if decapsulated > 0 {
        cx.stats.add(Counter::EspDecap, decapsulated);
    }
}

/// The verdict of a packet that failed a step on the SA in `slot`: its drop, and the SA's
/// hard-expiry notice if this was the first.
#[inline]
fn failed<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, slot: u32, r: DropReason) -> Verdict {
    let Some(e) = cx.sas.inbound(slot) else {
        return NOT_OWNER;
    };
    let spi = e.sa.spi();
    let d = pipeline::judge(m, e, Err(r));
    pipeline::deliver(m, cx, slot, spi, d)
}

/// Publishes a run's tally on its SA.
#[inline]
fn publish(cx: &Ctx<'_>, run: Option<(u32, Tally)>) {
    if let Some((s, t)) = run
        && let Some(e) = cx.sas.inbound_ref(s)
    {
        e.sa.publish(&t);
    }
}
