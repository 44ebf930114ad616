//! The worker: one per configured lcore, pinned by EAL, polling its RX queues and the handoff
//! rings from the other workers, running the [`crate::pipeline`] stages and sending the results
//! in bursts. No lock, no allocation and no syscall on the packet path; when idle in adaptive
//! mode it backs off (spin, then sleeps of up to 100 µs) and returns to busy polling at the first
//! packet.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dpdk::{Burst, Mbuf, RingConsumer, RingProducer, RxQueue, TxQueue};
use espada_qsbr::Reader;

use crate::PortRole;
use crate::burst;
use crate::depth::{Depth, Lookahead};
use crate::drops::{DpDrop, Why};
use crate::events::{Event, Notice, SampleBudget};
use crate::pipeline::{self, Ctx, HandoffKind, Oversize, Verdict};
use crate::prefetch::{self, NoChain};
use crate::reasm::Reassembly;
use crate::slab::{Command, Reply, Slab};
use crate::stats::{Counter, WorkerStats};
use crate::tables::Tables;

/// Idle iterations spent spinning before the first sleep (adaptive polling).
const SPIN_ITERATIONS: u32 = 256;
/// Longest sleep of an idle worker (adaptive polling).
const MAX_IDLE_SLEEP: Duration = Duration::from_micros(100);

/// The two handoff rings (inbound ESP, outbound cleartext) between one pair of workers.
pub struct HandoffPair<T> {
    /// Ring for [`HandoffKind::Inbound`].
    pub inbound: T,
    /// Ring for [`HandoffKind::Outbound`].
    pub outbound: T,
}

/// Where a sender's frames for one port go: its own TX queue, or a ring to the worker that
/// owns one, for a port with fewer TX queues than workers and control thread (DPDK TX
/// queues are not thread-safe).
pub enum TxPath {
    /// Its own TX queue.
    Queue(TxQueue),
    /// A ring drained by the worker that sends on its queue ([`WorkerInputs::relay`]).
    Relay(RingProducer),
}

impl TxPath {
    /// Sends (or relays) the frames of `burst` and empties it: `(sent, lost)`. The driver's
    /// refusal or a full relay ring loses the rest.
    #[inline]
    pub fn tx_or_drop<const N: usize>(&mut self, burst: &mut Burst<N>) -> (usize, usize) {
        match self {
            TxPath::Queue(q) => q.tx_or_drop(burst),
            TxPath::Relay(r) => {
                let n = burst.len();
                r.enqueue_burst(burst);
                let lost = burst.len();
                burst.clear();
                (n - lost, lost)
            }
        }
    }

    /// True for a relay.
    pub fn is_relay(&self) -> bool {
        matches!(self, TxPath::Relay(_))
    }
}

/// Everything a worker reads from.
pub struct WorkerInputs {
    /// RX queues it polls, with their port's role.
    pub rx: Vec<(PortRole, RxQueue)>,
    /// Frames other senders relay through this worker's TX queue of a port ([`TxPath::Relay`]).
    pub relay: Vec<(PortRole, RingConsumer)>,
    /// Handoff rings from each other worker.
    pub handoff: Vec<HandoffPair<RingConsumer>>,
    /// Commands from the control thread.
    pub commands: rtrb::Consumer<Command>,
}

/// Everything a worker writes to.
pub struct WorkerOutputs {
    /// Where it transmits on each port, indexed by [`PortRole`].
    pub tx: [TxPath; 2],
    /// Handoff rings to each worker, indexed by worker (`None` for itself).
    pub handoff: Vec<Option<HandoffPair<RingProducer>>>,
    /// Punt rings to the control thread, indexed by the [`PortRole`] the frame came from.
    pub punt: [RingProducer; 2],
    /// Replies to the control thread.
    pub replies: rtrb::Producer<Reply>,
}

/// A worker, ready to be launched on its lcore with [`Worker::run`].
pub struct Worker {
    /// Worker index (SPI ownership uses it).
    pub id: u16,
    /// Inputs.
    pub inputs: WorkerInputs,
    /// Outputs.
    pub outputs: WorkerOutputs,
    /// Events to the control thread.
    pub events: rtrb::Producer<Event>,
    /// Lifetime notices to the control thread (ring of [`crate::events::notice_capacity`]).
    pub notices: rtrb::Producer<Notice>,
    /// Budget of unknown-SPI samples (in TSC cycles, refilled once per loop turn).
    pub samples: SampleBudget,
    /// The SAs it owns.
    pub slab: Slab,
    /// Its outer reassembly (timeout in TSC cycles).
    pub reasm: Reassembly,
    /// Its reader of the published tables.
    pub tables: Reader<Tables>,
    /// Its counters.
    pub stats: Arc<WorkerStats>,
    /// Set by the control thread to stop the loop.
    pub stop: Arc<AtomicBool>,
    /// Back off when idle.
    pub adaptive: bool,
    /// Whether its ports' bursts run the lookahead ([`crate::depth`]).
    pub lookahead: Lookahead,
}

/// Output bursts waiting to be sent.
struct Pending {
    tx: [Burst; 2],
    handoff: Vec<[Burst; 2]>,
    punt: [Burst; 2],
}

impl Pending {
    fn new(workers: usize) -> Self {
        Pending {
            tx: [Burst::new(), Burst::new()],
            handoff: (0..workers).map(|_| [Burst::new(), Burst::new()]).collect(),
            punt: [Burst::new(), Burst::new()],
        }
    }
}

impl WorkerOutputs {
    /// Acts on a verdict: queue the mbuf for TX, handoff or punt (flushing a full burst),
    /// fragment it and act on each piece's verdict ([`WorkerOutputs::pieces`]), or free and
    /// count it. Inlined into the receive loops (the fragments' path is a call of its own).
    #[inline(always)]
    fn dispatch(&mut self, p: &mut Pending, m: Mbuf, v: Verdict, cx: &mut Ctx<'_>) {
        let stats = cx.stats;
        let (burst, flush): (&mut Burst, Target) = match v {
            Verdict::Fragment(o) => return self.pieces(p, m, o, cx),
            Verdict::Tx(r) => (&mut p.tx[r as usize], Target::Tx(r)),
            Verdict::Handoff { owner, kind } => {
                stats.add(Counter::HandoffOut, 1);
                (
                    &mut p.handoff[owner as usize][kind as usize],
                    Target::Handoff(owner, kind),
                )
            }
            Verdict::Punt(r) => {
                stats.add(Counter::Punted, 1);
                (&mut p.punt[r as usize], Target::Punt(r))
            }
            Verdict::Consumed => return,
            Verdict::Drop(why) => {
                stats.drop_one(why);
                return;
            }
        };
        if let Err(m) = burst.push(m) {
            self.flush_one(burst, flush, stats);
            let _ = burst.push(m);
        }
    }

    /// Fragments an oversize packet ([`pipeline::fragment_out`]) and dispatches each piece.
    #[inline(never)]
    fn pieces(&mut self, p: &mut Pending, m: Mbuf, o: Oversize, cx: &mut Ctx<'_>) {
        for (m, v) in pipeline::fragment_out(m, cx, o).into_iter().flatten() {
            self.dispatch(p, m, v, cx);
        }
    }

    fn flush_one(&mut self, b: &mut Burst, target: Target, stats: &WorkerStats) {
        if b.is_empty() {
            return;
        }
        match target {
            Target::Tx(r) => {
                let path = &mut self.tx[r as usize];
                let c = match (path.is_relay(), r) {
                    (true, _) => Counter::TxRelayed,
                    (false, PortRole::Outside) => Counter::TxOutside,
                    (false, PortRole::Inside) => Counter::TxInside,
                };
                let (sent, lost) = path.tx_or_drop(b);
                stats.add(c, sent as u64);
                stats.drop_n(Why::Dp(DpDrop::TxFull), lost as u64);
            }
            Target::Handoff(owner, kind) => {
                let Some(pair) = self.handoff[owner as usize].as_mut() else {
                    stats.drop_n(Why::Dp(DpDrop::NotOwner), b.len() as u64);
                    b.clear();
                    return;
                };
                let ring = match kind {
                    HandoffKind::Inbound => &mut pair.inbound,
                    HandoffKind::Outbound => &mut pair.outbound,
                };
                ring.enqueue_burst(b);
                stats.drop_n(Why::Dp(DpDrop::HandoffRingFull), b.len() as u64);
                b.clear();
            }
            Target::Punt(r) => {
                self.punt[r as usize].enqueue_burst(b);
                stats.drop_n(Why::Dp(DpDrop::PuntRingFull), b.len() as u64);
                b.clear();
            }
        }
    }

    fn flush_all(&mut self, p: &mut Pending, stats: &WorkerStats) {
        for r in PortRole::ALL {
            self.flush_one(&mut p.tx[r as usize], Target::Tx(r), stats);
            self.flush_one(&mut p.punt[r as usize], Target::Punt(r), stats);
        }
        for (owner, pair) in p.handoff.iter_mut().enumerate() {
            for kind in [HandoffKind::Inbound, HandoffKind::Outbound] {
                self.flush_one(
                    &mut pair[kind as usize],
                    Target::Handoff(owner as u16, kind),
                    stats,
                );
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Target {
    Tx(PortRole),
    Handoff(u16, HandoffKind),
    Punt(PortRole),
}

/// A burst being processed, where its packets go, and what is pending for each output.
type BurstIo<'a> = (&'a mut Burst, &'a mut WorkerOutputs, &'a mut Pending);

/// The verdict of a frame in more than one segment (the stages read one contiguous buffer).
const MULTI_SEGMENT: Verdict = Verdict::Drop(Why::Dp(DpDrop::MultiSegment));

/// Runs one RX burst of a port one frame at a time (`OUTSIDE`: the outside port,
/// [`pipeline::outside_frame`], else [`pipeline::inside_frame`]), with the data prefetch and
/// `chain`'s lookahead. The outside port runs it while the worker holds few inbound SAs (their
/// state stays in the cache and this beats the burst path, docs/performance.md), with no
/// chain. Monomorphised per port and chain: each loop has only its own code.
#[inline(never)]
fn frames<C: prefetch::Chain, const OUTSIDE: bool>(
    chain: &mut C,
    (rx, outputs, pending): BurstIo<'_>,
    cx: &mut Ctx<'_>,
) {
    let mut it = rx.drain();
    prefetch::data(&it, true, C::DATA);
    prefetch::start(chain, &it, cx);
    let mut i = 0;
    while let Some(mut m) = it.next() {
        prefetch::data(&it, false, C::DATA);
        prefetch::advance(chain, i, &it, cx);
        i += 1;
        let v = match (m.segments() > 1, OUTSIDE) {
            (true, _) => MULTI_SEGMENT,
            (false, true) => pipeline::outside_frame(&mut m, cx),
            (false, false) => pipeline::inside_frame(&mut m, cx),
        };
        outputs.dispatch(pending, m, v, cx);
    }
}

/// Runs one RX burst of the outside port through the burst path ([`burst::outside`], with its
/// prefetches): while the worker holds many inbound SAs.
#[inline(never)]
fn outside_burst((rx, outputs, pending): BurstIo<'_>, cx: &mut Ctx<'_>) {
    let mut v = [None; burst::MAX];
    for (m, v) in rx.as_slice().iter().zip(v.iter_mut()) {
        if m.segments() > 1 {
            *v = Some(MULTI_SEGMENT);
        }
    }
    burst::outside(rx.as_mut_slice(), &mut v, cx);
    for (m, v) in rx.drain().zip(v) {
        // `burst::outside` gives every frame its verdict; were one missing, the frame is
        // freed uncounted rather than sent anywhere.
        outputs.dispatch(pending, m, v.unwrap_or(Verdict::Consumed), cx);
    }
}

impl Worker {
    /// The poll loop; returns when `stop` is set, after sending what is pending.
    pub fn run(self) -> i32 {
        let Worker {
            id,
            mut inputs,
            mut outputs,
            mut events,
            mut notices,
            mut samples,
            mut slab,
            mut reasm,
            mut tables,
            stats,
            stop,
            adaptive,
            lookahead,
        } = self;
        let mut pending = Pending::new(outputs.handoff.len());
        // As large as a burst path's verdicts (`burst::MAX`): another size would not compile.
        let mut rx: Burst<{ burst::MAX }> = Burst::new();
        let mut idle = 0u32;
        // The outbound chain's per-position state: every step that reads a position runs after
        // the one that writes it in the same burst, so nothing is reset between bursts.
        let mut outbound = prefetch::Outbound::<32>::default();
        // Per port role (indexed by `PortRole as usize`): with the lookahead or not.
        let mut depth = [Depth::new(lookahead), Depth::new(lookahead)];
        // IPv6 fragment identifications: from the clock, the worker in the top byte.
        let mut ident = (u32::from(id) << 24) | (dpdk::rdtsc() as u32 >> 8);
        while !stop.load(Ordering::Relaxed) {
            while let Ok(c) = inputs.commands.pop() {
                let reply = slab.apply(c);
                // The reply ring is as large as the command ring: it cannot be full.
                let _ = outputs.replies.push(reply);
            }
            let t = tables.quiescent();
            stats.set(Counter::TableGeneration, t.generation);
            let k = slab.keys().stats();
            stats.set(Counter::KeyCacheHits, k.hits);
            stats.set(Counter::KeyCacheMisses, k.misses);
            stats.set(Counter::KeyCacheBypassed, k.bypassed);
            stats.set(Counter::ReassemblyTimeouts, reasm.timed_out());
            let now = dpdk::rdtsc();
            samples.refill(now);
            let mut cx = Ctx {
                me: id,
                t,
                sas: &mut slab,
                stats: &stats,
                events: &mut events,
                notices: &mut notices,
                samples: &mut samples,
                reasm: &mut reasm,
                now,
                ident: &mut ident,
            };
            let mut work = 0usize;
            for (role, q) in inputs.rx.iter_mut() {
                let n = q.rx_burst(&mut rx);
                if n == 0 {
                    continue;
                }
                rx.prefetch_headers();
                work += n;
                let c = if *role == PortRole::Outside {
                    Counter::RxOutside
                } else {
                    Counter::RxInside
                };
                stats.add(c, n as u64);
                // One loop per port and prefetch depth, each monomorphised and out of line:
                // without prefetching, the loop has no trace of it.
                let d = &mut depth[*role as usize];
                let pick = d.pick();
                let start = if pick.timed { dpdk::rdtsc() } else { 0 };
                let b = (&mut rx, &mut outputs, &mut pending);
                match (*role, pick.deep) {
                    (PortRole::Outside, true) => outside_burst(b, &mut cx),
                    (PortRole::Outside, false) => frames::<_, true>(&mut NoChain, b, &mut cx),
                    (PortRole::Inside, true) => frames::<_, false>(&mut outbound, b, &mut cx),
                    (PortRole::Inside, false) => frames::<_, false>(&mut NoChain, b, &mut cx),
                }
                if pick.timed {
                    d.record(pick, dpdk::rdtsc().wrapping_sub(start), n);
                }
                if pick.deep {
                    stats.add(Counter::LookaheadBursts, 1);
                }
            }
            for (role, ring) in inputs.relay.iter_mut() {
                let n = ring.dequeue_burst(&mut rx);
                work += n;
                for m in rx.drain() {
                    outputs.dispatch(&mut pending, m, Verdict::Tx(*role), &mut cx);
                }
            }
            for pair in inputs.handoff.iter_mut() {
                for (ring, kind) in [
                    (&mut pair.inbound, HandoffKind::Inbound),
                    (&mut pair.outbound, HandoffKind::Outbound),
                ] {
                    let n = ring.dequeue_burst(&mut rx);
                    if n == 0 {
                        continue;
                    }
                    work += n;
                    stats.add(Counter::HandoffIn, n as u64);
                    rx.prefetch_headers();
                    let mut it = rx.drain();
                    prefetch::data(&it, true, prefetch::DATA);
                    while let Some(mut m) = it.next() {
                        prefetch::data(&it, false, prefetch::DATA);
                        let v = match kind {
                            HandoffKind::Inbound => pipeline::esp_in(&mut m, &mut cx, true),
                            HandoffKind::Outbound => pipeline::clear_out(&mut m, &mut cx, true),
                        };
                        outputs.dispatch(&mut pending, m, v, &mut cx);
                    }
                }
            }
            outputs.flush_all(&mut pending, &stats);
            if work > 0 {
                idle = 0;
                stats.add(Counter::BusyPolls, 1);
                continue;
            }
            stats.add(Counter::IdlePolls, 1);
            idle = idle.saturating_add(1);
            if adaptive && idle > SPIN_ITERATIONS {
                // Idle: a short sleep (a syscall, but no packet is waiting).
                let us = u64::from(idle - SPIN_ITERATIONS).min(MAX_IDLE_SLEEP.as_micros() as u64);
                std::thread::sleep(Duration::from_micros(us));
            } else {
                std::hint::spin_loop();
            }
        }
        outputs.flush_all(&mut pending, &stats);
        0
    }
}
