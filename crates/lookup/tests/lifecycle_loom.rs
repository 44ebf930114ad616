//! Loom models of the data plane's make-before-break SA lifecycle (issue 13: install → ack →
//! switch → retire with two workers and the handoff), as `espada-dataplane`'s `lifecycle`,
//! `slab`, `tunnels` and `pipeline` modules implement it, on the real [`Directory`] and
//! hand-written stand-ins for the rest:
//!
//! * the owner's slab is a plain array moved into worker 0's thread (only the owner touches
//!   it); commands and replies travel over SPSC rings published as `rtrb` does (slot written,
//!   then the tail with `Release`; the consumer loads the tail with `Acquire`), and so do the
//!   handoffs from worker 1 to worker 0;
//! * the table generation: the control thread bumps a published counter (`Release`) and waits
//!   until each worker has stored, after an `Acquire` load of it at its loop top, the
//!   generation it adopted (the ack, as `espada_qsbr::Reader::quiescent`);
//! * the tunnel's outbound word is one `AtomicU64` naming a slot (`Release` store, `Acquire`
//!   load, as `TunnelTable`);
//! * a worker's loop turn is the real one's order: apply commands (worker 0), adopt the newest
//!   generation, receive at most one packet, run handed-off packets (worker 0);
//! * the peer sends on a new inbound SPI only once the control thread told it so, after the
//!   ack; the "told" flag is read `Relaxed`, so that the packet carries no happens-before of
//!   its own and only the ack can make the directory entry visible to the receiving worker.
//!   Packets that may arrive at any time (an early or late packet, cleartext from inside) are
//!   received at an arbitrary turn.
//!
//! Checked in every execution: a Live directory entry always finds its SA in the owner's slab
//! with the same SPI (never an empty or reused slot), on the first lookup (worker 1 hands off)
//! and on the owner's own lookup of a handed-off packet; an outbound packet always finds an
//! installed SA in the slot the tunnel's word names; once worker 0 encrypted on the new
//! outbound SA it never encrypts on the old one again; a packet the peer sent on the new
//! inbound SPI after the ack is never dropped (as unknown or as a tombstone); no install is
//! refused (slot occupied) and no removal misses its SA.
//!
//! Models: inbound install with a handoff; outbound switch with stale handoffs and the old SA's
//! removal right after the switch (the lifecycle waits for the switch's ack first, which only
//! adds order); inbound retire, removal and reuse of the slot with a handoff in flight; the
//! whole rekey (install, ack, install outbound, switch, ack, retire and remove) with an old,
//! a new and an outbound packet.
//!
//! Each model was run with these broken orders (one at a time, then restored), and loom
//! reported the violation under the model's own preemption bound:
//!
//! * inbound install: the directory install before the owner's reply ("Live SPI: slot holds
//!   another SA or none"); the ack and telling the peer before the directory install, the
//!   peer told before the ack, the generation bumped before the directory install, a worker
//!   loading the published generation `Relaxed` (each: "sent after the ack: Unknown");
//! * outbound switch: the switch before the owner's install reply, the old SA removed before
//!   the switch, the owner encrypting on the slot worker 1 read instead of reading the word
//!   again (each: "the tunnel's word names slot …, holding None");
//! * retire: the SA taken out of the slab before the tombstone, the owner trusting worker 1's
//!   lookup instead of looking the SPI up again (each: "Live SPI: slot holds … none");
//! * whole rekey: the ack before the directory install, the old inbound SA out of the slab
//!   before its tombstone, the switch before the outbound install reply.
//!
//! Not caught, as expected: forgetting the old SPI and reinstalling its slot before the
//! removal's reply (the command ring is FIFO, so the owner empties the slot first, and the
//! new tag never matches the old SPI).
//!
//! Exploration is bounded by preemptions (`loom::model::Builder::preemption_bound`, 3, 3, 2
//! and 1 for the four models; `LOOM_MAX_PREEMPTIONS` overrides); on the 2-core build machine
//! the four took about 65 s, 9 s, 2 s and 55 s each in release mode; the test binary runs
//! them two at a time, 2½ to 5 minutes while other builds shared the machine. With
//! `LOOM_MAX_PREEMPTIONS=2` the whole file takes seconds but misses the first inbound
//! mutation above (it needs 3):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p espada-lookup --release --test lifecycle_loom
//! ```
//!
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

use espada_lookup::sad::{Directory, Lookup};
use espada_lookup::spi::{SpiLayout, SpiSlot};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use loom::thread;

/// Workers, slots per worker and direction.
const WORKERS: u16 = 2;
const SLOTS: u32 = 2;
/// The tunnel's owner (all of its SAs live there).
const OWNER: u16 = 0;
const TUNNEL: u32 = 1;

/// An inbound SPI of the owner: `tag << (W+S) | slot << W | owner` with W = S = 1.
const fn spi_at(tag: u32, slot: u32) -> SpiSlot {
    SpiSlot {
        spi: (tag << 2) | (slot << 1) | OWNER as u32,
        owner: OWNER,
        slot,
    }
}

const OLD_IN: SpiSlot = spi_at(0x111, 0);
const NEW_IN: SpiSlot = spi_at(0x222, 1);
/// A later SA in the old one's slot (another tag).
const REUSE_IN: SpiSlot = spi_at(0x333, 0);
/// Outbound SPIs are the peer's choice.
const OLD_OUT: u32 = 0xa000_0001;
const NEW_OUT: u32 = 0xb000_0002;

/// A fixed-capacity SPSC ring of `u64` messages (never wraps: a model sends few).
struct Ring {
    slots: Vec<AtomicU64>,
    tail: AtomicUsize,
}

struct Producer {
    ring: Arc<Ring>,
    tail: usize,
}

struct Consumer {
    ring: Arc<Ring>,
    head: usize,
}

fn ring(capacity: usize) -> (Producer, Consumer) {
    let ring = Arc::new(Ring {
        slots: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        tail: AtomicUsize::new(0),
    });
    (
        Producer {
            ring: ring.clone(),
            tail: 0,
        },
        Consumer { ring, head: 0 },
    )
}

impl Producer {
    fn push(&mut self, v: u64) {
        self.ring.slots[self.tail].store(v, Ordering::Relaxed);
        self.tail += 1;
        self.ring.tail.store(self.tail, Ordering::Release);
    }
}

impl Consumer {
    fn pop(&mut self) -> Option<u64> {
        if self.head == self.ring.tail.load(Ordering::Acquire) {
            return None;
        }
        let v = self.ring.slots[self.head].load(Ordering::Relaxed);
        self.head += 1;
        Some(v)
    }
}

/// A change to the owner's slab (as `slab::Command`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    InstallIn { slot: u32, spi: u32 },
    InstallOut { slot: u32, spi: u32 },
    RemoveIn { slot: u32, spi: u32 },
    RemoveOut { slot: u32, spi: u32 },
}

impl Command {
    fn encode(self) -> u64 {
        let (kind, slot, spi) = match self {
            Command::InstallIn { slot, spi } => (0, slot, spi),
            Command::InstallOut { slot, spi } => (1, slot, spi),
            Command::RemoveIn { slot, spi } => (2, slot, spi),
            Command::RemoveOut { slot, spi } => (3, slot, spi),
        };
        (kind << 40) | (u64::from(slot) << 32) | u64::from(spi)
    }

    fn decode(w: u64) -> Command {
        let (slot, spi) = (((w >> 32) & 0xff) as u32, w as u32);
        match w >> 40 {
            0 => Command::InstallIn { slot, spi },
            1 => Command::InstallOut { slot, spi },
            2 => Command::RemoveIn { slot, spi },
            _ => Command::RemoveOut { slot, spi },
        }
    }
}

/// The owner's SAs: the SPI of each slot's SA.
#[derive(Clone, Copy, Debug)]
struct Slab {
    inbound: [Option<u32>; SLOTS as usize],
    outbound: [Option<u32>; SLOTS as usize],
}

impl Slab {
    /// Applies `c`; false when an install finds its slot occupied or a removal does not find
    /// its SA (as the real slab: refused, never overwritten).
    fn apply(&mut self, c: Command) -> bool {
        let (cell, spi, install) = match c {
            Command::InstallIn { slot, spi } => (&mut self.inbound[slot as usize], spi, true),
            Command::InstallOut { slot, spi } => (&mut self.outbound[slot as usize], spi, true),
            Command::RemoveIn { slot, spi } => (&mut self.inbound[slot as usize], spi, false),
            Command::RemoveOut { slot, spi } => (&mut self.outbound[slot as usize], spi, false),
        };
        match (install, *cell) {
            (true, None) => *cell = Some(spi),
            (false, Some(s)) if s == spi => *cell = None,
            _ => return false,
        }
        true
    }
}

/// A packet a worker receives.
#[derive(Clone, Copy, Debug)]
enum Packet {
    /// ESP on `spi`; `after_ack`: the peer sent it once told (after the install's ack), so it
    /// must be decrypted; otherwise it arrives at any time.
    In { spi: u32, after_ack: bool },
    /// Cleartext towards the tunnel, at any time.
    Out,
}

/// A packet handed from worker 1 to the owner, with what worker 1 saw (the owner looks again).
#[derive(Clone, Copy, Debug)]
enum Handoff {
    In {
        spi: u32,
        after_ack: bool,
        seen_slot: u32,
    },
    Out {
        seen_slot: u32,
    },
}

impl Handoff {
    fn encode(self) -> u64 {
        match self {
            Handoff::In {
                spi,
                after_ack,
                seen_slot,
            } => (u64::from(after_ack) << 41) | (u64::from(seen_slot) << 32) | u64::from(spi),
            Handoff::Out { seen_slot } => (1 << 40) | (u64::from(seen_slot) << 32),
        }
    }

    fn decode(w: u64) -> Handoff {
        let seen_slot = ((w >> 32) & 0xff) as u32;
        if w & (1 << 40) != 0 {
            Handoff::Out { seen_slot }
        } else {
            Handoff::In {
                spi: w as u32,
                after_ack: w & (1 << 41) != 0,
                seen_slot,
            }
        }
    }
}

/// One step of the control thread.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Push a command to the owner.
    Send(Command),
    /// Wait for the owner's next reply; it must be a success.
    Reply,
    /// Directory: install (Live).
    Install(SpiSlot),
    /// Directory: retire (Tombstone).
    Retire(SpiSlot),
    /// Directory: forget (Empty).
    Forget(SpiSlot),
    /// Publish a generation and wait until both workers adopted it.
    Ack,
    /// Tell the peer it may send on the new inbound SPI.
    Tell,
    /// The tunnel sends on the SA in this slot of the owner (one store).
    Switch(u32),
}

/// A bit of an outbound word that says an SA is set (as `tunnels::SET`).
const SET: u64 = 1 << 63;

/// What the threads share.
struct Shared {
    dir: Directory,
    published: AtomicU64,
    adopted: [AtomicU64; WORKERS as usize],
    /// The tunnel's outbound word: `SET | slot` or 0.
    tunnel: AtomicU64,
    told: AtomicBool,
    /// The control thread is done (no more commands, acks or telling).
    stop: AtomicBool,
    /// Worker 1 is done (no more handoffs).
    w1_done: AtomicBool,
}

impl Shared {
    /// Loop top: adopt the newest generation (as `Reader::quiescent`).
    /// True when it adopted a newer one.
    fn adopt(&self, me: u16, seen: &mut u64) -> bool {
        let g = self.published.load(Ordering::Acquire);
        if g == *seen {
            return false;
        }
        *seen = g;
        self.adopted[usize::from(me)].store(g, Ordering::Release);
        true
    }

    /// The slot the tunnel sends on.
    fn outbound(&self) -> u32 {
        let w = self.tunnel.load(Ordering::Acquire);
        assert!(w & SET != 0, "the tunnel has no outbound SA");
        w as u32
    }
}

/// A model: initial state, the control thread's steps, each worker's packets.
#[derive(Clone, Copy)]
struct Model {
    /// Live in the directory and in the owner's slab at the start.
    live_in: &'static [SpiSlot],
    /// The owner's outbound slab at the start; the tunnel sends on slot 0 if it has an SA.
    outbound: [Option<u32>; SLOTS as usize],
    steps: &'static [Step],
    /// Received by worker 1 (not the owner) and by worker 0.
    w1: &'static [Packet],
    w0: &'static [Packet],
}

/// The owner's view while processing packets.
struct Owner<'a> {
    shared: &'a Shared,
    slab: Slab,
    sent_on_new: bool,
}

impl Owner<'_> {
    /// `esp_classified` on the owner: look the SPI up (again, for a handoff) and find the SA;
    /// the slot it was found in, if Live.
    fn decrypt(&mut self, spi: u32, after_ack: bool) -> Option<u32> {
        match self.shared.dir.lookup(spi) {
            Lookup::Live { owner, slot, .. } => {
                assert_eq!(owner, OWNER, "SPI {spi:#x} owned by {owner}");
                assert_eq!(
                    self.slab.inbound[slot as usize],
                    Some(spi),
                    "Live SPI {spi:#x}: slot {slot} of the owner's slab holds another SA or none"
                );
                Some(slot)
            }
            other => {
                assert!(!after_ack, "SPI {spi:#x} sent after the ack: {other:?}");
                None
            }
        }
    }

    /// `clear_out` on the owner: read the tunnel's word (again, for a handoff) and encrypt;
    /// the slot it encrypted with.
    fn encrypt(&mut self) -> u32 {
        let slot = self.shared.outbound();
        match self.slab.outbound[slot as usize] {
            Some(NEW_OUT) => self.sent_on_new = true,
            Some(OLD_OUT) => assert!(!self.sent_on_new, "old outbound SA used after the new"),
            other => panic!("the tunnel's word names slot {slot}, holding {other:?}"),
        }
        slot
    }

    /// A handed-off packet: the owner sees what the sender saw or a later value (the
    /// outbound word only moves to higher slots in these models).
    fn handed(&mut self, h: Handoff) {
        match h {
            Handoff::In {
                spi,
                after_ack,
                seen_slot,
            } => {
                if let Some(slot) = self.decrypt(spi, after_ack) {
                    assert_eq!(slot, seen_slot, "SPI {spi:#x} moved");
                }
            }
            Handoff::Out { seen_slot } => {
                let slot = self.encrypt();
                assert!(
                    slot >= seen_slot,
                    "the owner saw an older word than the sender"
                );
            }
        }
    }
}

/// Receives at most one packet of `pending` per loop turn: the first that has arrived.
fn next_packet(shared: &Shared, pending: &mut Vec<Packet>) -> Option<Packet> {
    let told = shared.told.load(Ordering::Relaxed);
    let i = pending.iter().position(|p| told || !p.after_ack())?;
    Some(pending.remove(i))
}

impl Packet {
    fn after_ack(self) -> bool {
        matches!(
            self,
            Packet::In {
                after_ack: true,
                ..
            }
        )
    }
}

/// Who wakes whom. Loom explores unfair schedules, so two threads spinning in turn would
/// starve the third forever: the control thread and worker 0 park when they have nothing to
/// do, and only worker 1 polls (yielding). An unpark in loom hands the unparker's causality to
/// the woken thread, so each one directly follows the `Release` store or ring push the parked
/// thread waits for, whose `Acquire` load is the woken thread's next step anyway. Worker 1 is
/// never unparked: what it learns of the directory, the generation and the tunnel's word
/// comes only through its own loads, and the peer's packet after the ack carries no
/// happens-before at all.
struct Wake {
    control: thread::Thread,
    owner: thread::Thread,
}

fn worker0(
    shared: Arc<Shared>,
    wake: Wake,
    slab: Slab,
    w0: &'static [Packet],
    mut commands: Consumer,
    mut replies: Producer,
    mut handoff: Consumer,
) {
    let mut me = Owner {
        shared: &shared,
        slab,
        sent_on_new: false,
    };
    let mut pending = w0.to_vec();
    let mut seen = 0;
    loop {
        let last = shared.stop.load(Ordering::Acquire) && shared.w1_done.load(Ordering::Acquire);
        let mut work = false;
        while let Some(c) = commands.pop() {
            replies.push(u64::from(me.slab.apply(Command::decode(c))));
            work = true;
        }
        if work {
            wake.control.unpark();
        }
        if shared.adopt(0, &mut seen) {
            wake.control.unpark();
            work = true;
        }
        match next_packet(&shared, &mut pending) {
            Some(Packet::In { spi, after_ack }) => {
                me.decrypt(spi, after_ack);
                work = true;
            }
            Some(Packet::Out) => {
                me.encrypt();
                work = true;
            }
            None => {}
        }
        while let Some(h) = handoff.pop() {
            me.handed(Handoff::decode(h));
            work = true;
        }
        if last && pending.is_empty() {
            break;
        }
        if !work {
            thread::park();
        }
    }
}

fn worker1(shared: Arc<Shared>, wake: Wake, w1: &'static [Packet], mut handoff: Producer) {
    let mut pending = w1.to_vec();
    let mut seen = 0;
    loop {
        let last = shared.stop.load(Ordering::Acquire);
        let mut work = shared.adopt(1, &mut seen);
        if work {
            wake.control.unpark();
        }
        let h = match next_packet(&shared, &mut pending) {
            Some(Packet::In { spi, after_ack }) => {
                work = true;
                match shared.dir.lookup(spi) {
                    Lookup::Live {
                        owner: OWNER, slot, ..
                    } => Some(Handoff::In {
                        spi,
                        after_ack,
                        seen_slot: slot,
                    }),
                    other => {
                        assert!(!after_ack, "SPI {spi:#x} sent after the ack: {other:?}");
                        None
                    }
                }
            }
            Some(Packet::Out) => {
                work = true;
                Some(Handoff::Out {
                    seen_slot: shared.outbound(),
                })
            }
            None => None,
        };
        if let Some(h) = h {
            handoff.push(h.encode());
            wake.owner.unpark();
        }
        if last && pending.is_empty() {
            shared.w1_done.store(true, Ordering::Release);
            wake.owner.unpark();
            break;
        }
        if !work {
            thread::yield_now();
        }
    }
}

fn control(shared: &Shared, owner: &thread::Thread, steps: &[Step], rings: Rings) {
    let Rings {
        mut commands,
        mut replies,
    } = rings;
    for &step in steps {
        match step {
            Step::Send(c) => {
                commands.push(c.encode());
                owner.unpark();
            }
            Step::Reply => loop {
                if let Some(r) = replies.pop() {
                    assert_eq!(r, 1, "the owner refused a command");
                    break;
                }
                thread::park();
            },
            Step::Install(s) => shared.dir.install(s, TUNNEL).unwrap(),
            Step::Retire(s) => shared.dir.retire(s).unwrap(),
            Step::Forget(s) => shared.dir.remove(s).unwrap(),
            Step::Ack => {
                let g = shared.published.fetch_add(1, Ordering::Release) + 1;
                owner.unpark();
                for a in &shared.adopted {
                    while a.load(Ordering::Acquire) < g {
                        thread::park();
                    }
                }
            }
            Step::Tell => shared.told.store(true, Ordering::Relaxed),
            Step::Switch(slot) => shared
                .tunnel
                .store(SET | u64::from(slot), Ordering::Release),
        }
    }
    shared.stop.store(true, Ordering::Release);
    owner.unpark();
}

/// The control thread's ends of the owner's rings.
struct Rings {
    commands: Producer,
    replies: Consumer,
}

/// Explores `m` with at most `preemptions` preemptions per execution (unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise).
fn check(m: Model, preemptions: usize) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(preemptions));
    builder.check(move || {
        let layout = SpiLayout::new(WORKERS, SLOTS).unwrap();
        let dir = Directory::new(layout, 0);
        let mut slab = Slab {
            inbound: [None; SLOTS as usize],
            outbound: m.outbound,
        };
        for s in [OLD_IN, NEW_IN, REUSE_IN] {
            let tag = s.spi >> layout.index_bits();
            assert_eq!(layout.encode(tag, s.owner, s.slot), Some(s.spi));
        }
        for s in m.live_in {
            dir.install(*s, TUNNEL).unwrap();
            slab.inbound[s.slot as usize] = Some(s.spi);
        }
        let shared = Arc::new(Shared {
            dir,
            published: AtomicU64::new(0),
            adopted: [AtomicU64::new(0), AtomicU64::new(0)],
            tunnel: AtomicU64::new(if m.outbound[0].is_some() { SET } else { 0 }),
            told: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            w1_done: AtomicBool::new(false),
        });
        let (cmd_tx, cmd_rx) = ring(m.steps.len());
        let (rep_tx, rep_rx) = ring(m.steps.len());
        let (ho_tx, ho_rx) = ring(m.w1.len());
        let w0 = {
            let shared = shared.clone();
            let wake = Wake {
                control: thread::current(),
                owner: thread::current(),
            };
            thread::spawn(move || worker0(shared, wake, slab, m.w0, cmd_rx, rep_tx, ho_rx))
        };
        let w1 = {
            let shared = shared.clone();
            let wake = Wake {
                control: thread::current(),
                owner: w0.thread().clone(),
            };
            thread::spawn(move || worker1(shared, wake, m.w1, ho_tx))
        };
        let rings = Rings {
            commands: cmd_tx,
            replies: rep_rx,
        };
        control(&shared, w0.thread(), m.steps, rings);
        w1.join().unwrap();
        w0.join().unwrap();
    });
}

#[test]
fn inbound_install_is_acknowledged_only_when_every_worker_decrypts() {
    check(
        Model {
            live_in: &[],
            outbound: [None, None],
            steps: &[
                Step::Send(Command::InstallIn {
                    slot: NEW_IN.slot,
                    spi: NEW_IN.spi,
                }),
                Step::Reply,
                Step::Install(NEW_IN),
                Step::Ack,
                Step::Tell,
            ],
            w1: &[
                Packet::In {
                    spi: NEW_IN.spi,
                    after_ack: false,
                },
                Packet::In {
                    spi: NEW_IN.spi,
                    after_ack: true,
                },
            ],
            w0: &[],
        },
        3,
    );
}
#[test]
fn outbound_switch_with_stale_handoffs_never_goes_back() {
    check(
        Model {
            live_in: &[],
            outbound: [Some(OLD_OUT), None],
            steps: &[
                Step::Send(Command::InstallOut {
                    slot: 1,
                    spi: NEW_OUT,
                }),
                Step::Reply,
                Step::Switch(1),
                Step::Send(Command::RemoveOut {
                    slot: 0,
                    spi: OLD_OUT,
                }),
                Step::Reply,
            ],
            w1: &[Packet::Out],
            w0: &[Packet::Out],
        },
        3,
    );
}

#[test]
fn retire_and_slot_reuse_with_a_handoff_in_flight() {
    check(
        Model {
            live_in: &[OLD_IN],
            outbound: [None, None],
            steps: &[
                Step::Retire(OLD_IN),
                Step::Send(Command::RemoveIn {
                    slot: OLD_IN.slot,
                    spi: OLD_IN.spi,
                }),
                Step::Reply,
                Step::Forget(OLD_IN),
                Step::Send(Command::InstallIn {
                    slot: REUSE_IN.slot,
                    spi: REUSE_IN.spi,
                }),
                Step::Reply,
                Step::Install(REUSE_IN),
            ],
            w1: &[
                Packet::In {
                    spi: OLD_IN.spi,
                    after_ack: false,
                },
                Packet::In {
                    spi: REUSE_IN.spi,
                    after_ack: false,
                },
            ],
            w0: &[],
        },
        2,
    );
}

#[test]
fn make_before_break_rekey_with_two_workers() {
    check(
        Model {
            live_in: &[OLD_IN],
            outbound: [Some(OLD_OUT), None],
            steps: &[
                Step::Send(Command::InstallIn {
                    slot: NEW_IN.slot,
                    spi: NEW_IN.spi,
                }),
                Step::Reply,
                Step::Install(NEW_IN),
                Step::Ack,
                Step::Tell,
                Step::Send(Command::InstallOut {
                    slot: 1,
                    spi: NEW_OUT,
                }),
                Step::Reply,
                Step::Switch(1),
                Step::Ack,
                Step::Retire(OLD_IN),
                Step::Send(Command::RemoveIn {
                    slot: OLD_IN.slot,
                    spi: OLD_IN.spi,
                }),
                Step::Reply,
                Step::Send(Command::RemoveOut {
                    slot: 0,
                    spi: OLD_OUT,
                }),
                Step::Reply,
            ],
            w1: &[
                Packet::In {
                    spi: OLD_IN.spi,
                    after_ack: false,
                },
                Packet::In {
                    spi: NEW_IN.spi,
                    after_ack: true,
                },
                Packet::Out,
            ],
            w0: &[Packet::Out],
        },
        1,
    );
}
