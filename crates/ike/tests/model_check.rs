//! Model check of CHILD_SA rekeying (RFC 7296 §1.3.3, §2.8, §2.8.1, §2.25.1) on the crate's
//! real state machines: two [`Endpoint`]s with one IKE SA and one CHILD_SA between them, a
//! network that loses, duplicates and reorders datagrams up to a bound, and both ends free to
//! start a CHILD_SA rekey at any moment. Every reachable state (within the bounds) is visited
//! and checked.
//!
//! **Choices.** From a state the explorer may
//! * `d<i>` deliver in-flight IKE datagram `i` (any of them: full reordering),
//! * `l<i>` lose it (at most `losses` per path), `u<i>` duplicate it (at most `dups`),
//! * `rA`/`rB` have A or B call [`Endpoint::rekey_child`] (at most `rekeys` per side),
//! * `pA`/`pB` send one data packet on A's or B's active outbound SA, delivered at once; only
//!   offered when it is the first packet on an inbound SA that asked for a report, because
//!   only that packet changes protocol state ([`Endpoint::inbound_traffic`]),
//! * `t` advance the virtual clock to the earliest [`Endpoint::poll_timeout`] and fire the due
//!   timers (retransmissions, retries, activation and delete deadlines; at most `timers`),
//! * `q` (only when no IKE datagram is in flight) quiesce: deliver everything in order, send
//!   data, fire timers until none is left, no faults and no commands — a leaf of the search.
//!
//! Identical in-flight datagrams to the same side are interchangeable, so only the first of
//! each group is offered. Time moves only on `t` (and within `q`), so no endpoint ever misses
//! a deadline; a datagram delivered after a `t` was simply delayed that long. A path on which
//! an endpoint declares its peer dead (every answer withheld through the whole retransmission
//! schedule, i.e. more loss than any bound) has left the model and is not followed; such paths
//! are counted. The endpoints run with [`EndpointConfig::default`] (the daemon's timers), ESP
//! without PFS: PFS changes the payloads and keys of an exchange, not its state machine, and
//! each X25519 operation costs as much as the rest of a rekey.
//!
//! **Replay.** An [`Endpoint`] cannot be cloned, so a state is reached again by replaying its
//! choice sequence from a fresh pair: the endpoints are deterministic given their seeds and
//! the virtual times. The search is a depth-first walk that continues the live pair into the
//! first successor of a state and replays for the others. A counterexample prints its
//! choice sequence and trace; `ESPADA_MC_REPLAY="<choices>" cargo test -p espada-ike --test
//! model_check replay -- --nocapture` replays one (with `ESPADA_MC_SEED` for its seed), and
//! `ESPADA_MC_BOUNDS` runs [`model_check_bounds_from_env`] with other bounds.
//!
//! **Reduction.** Sleep sets skip the second order of two independent steps (deliveries to
//! different ends, a command and a delivery to the other end, faults on different datagrams);
//! they prune transitions, never states, which [`sleep_sets_visit_every_state`] checks.
//!
//! **States.** A state's fingerprint hashes everything observable: the virtual time since the
//! start, per side every IKE SA (id, SPIs, state, outstanding request) with every field of
//! every CHILD_SA (deadlines relative to the start), the next timer, the counters
//! ([`Endpoint::stats`]), the data-plane model (inbound, retired, outbound SAs with their keys,
//! report/seen flags, the active map), the multiset of in-flight datagrams (bytes and
//! destination), the last request and the last response each side sent (what it re-sends on
//! a retransmission, which the endpoint does not show) and the remaining budgets. SPIs, nonces
//! and datagrams are hashed as the raw random values, not renamed: two paths merge when they
//! reach the very same values, which happens for every reordering of independent steps (each
//! endpoint draws from its own seeded generator, so its values depend only on its own
//! inputs). This never merges states that differ in a value the future could depend on (a
//! nonce decides a collision), at the price of not merging states that are equal up to
//! renaming. There is no depth bound: the budgets make every path finite; the depth reached
//! is reported.
//!
//! **Invariants**, at every state: the data-plane model accepts every action (no SA installed
//! twice, no switch to an uninstalled SA or to one of another tunnel, no retire or remove of an
//! unknown SA), every switch goes to an SA the peer already decrypts with the same key
//! (make-before-break), each side has exactly one active outbound SA for the tunnel, it is the
//! one the IKE side marks active, and the peer decrypts it with the same key: installed
//! inbound, or retired less than [`GRACE`] ago (the data plane still decrypts a retired SA
//! for a grace period; such states are counted); no panic. At every leaf (`q`): converged to
//! one IKE SA per side with exactly one CHILD_SA pair, mirrored SPIs, both active, the data
//! planes holding nothing else.

mod common;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Side, describe, peer_config};
use espada_ike::config::EndpointConfig;
use espada_ike::exchange::{Action, ChildId, Endpoint, Event, RandomSpis, Transmit};
use espada_ike::msgs::Header;
use espada_ike::rng::TestRandom;

const IKE: &str = "aes128gcm16-prfsha256-x25519";
const ESP: &str = "aes128gcm16";

/// Longest path the search accepts before it reports a runaway (the budgets should keep
/// every path far shorter).
const DEPTH_CAP: usize = 400;

/// How long a retired inbound SA still decrypts in the data-plane model (the harness of
/// `tests/common` uses the same): sending on an SA the peer retired is a violation only after.
const GRACE: Duration = Duration::from_secs(10);

/// Steps one quiescence may take before it reports that the pair never comes to rest.
const QUIESCE_CAP: usize = 2_000;

/// The same start for every replay, so that deadlines hash alike.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// How much of each fault and command one path may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Budget {
    /// `rekey_child` commands per side.
    rekeys: [u8; 2],
    /// Lost IKE datagrams.
    losses: u8,
    /// Duplicated IKE datagrams.
    dups: u8,
    /// Timer firings before quiescence.
    timers: u8,
}

/// One choice of the explorer (see the module doc for the letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Deliver(usize),
    Lose(usize),
    Dup(usize),
    Rekey(Side),
    Data(Side),
    Timer,
    Quiesce,
}

fn side_letter(s: Side) -> char {
    match s {
        Side::A => 'A',
        Side::B => 'B',
    }
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Choice::Deliver(i) => write!(f, "d{i}"),
            Choice::Lose(i) => write!(f, "l{i}"),
            Choice::Dup(i) => write!(f, "u{i}"),
            Choice::Rekey(s) => write!(f, "r{}", side_letter(*s)),
            Choice::Data(s) => write!(f, "p{}", side_letter(*s)),
            Choice::Timer => write!(f, "t"),
            Choice::Quiesce => write!(f, "q"),
        }
    }
}

impl std::str::FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Choice, String> {
        let side = |c: &str| match c {
            "A" => Ok(Side::A),
            "B" => Ok(Side::B),
            _ => Err(format!("bad side in {s:?}")),
        };
        let index = |c: &str| c.parse::<usize>().map_err(|e| format!("{s:?}: {e}"));
        match s.split_at_checked(1) {
            Some(("d", i)) => Ok(Choice::Deliver(index(i)?)),
            Some(("l", i)) => Ok(Choice::Lose(index(i)?)),
            Some(("u", i)) => Ok(Choice::Dup(index(i)?)),
            Some(("r", x)) => Ok(Choice::Rekey(side(x)?)),
            Some(("p", x)) => Ok(Choice::Data(side(x)?)),
            Some(("t", "")) => Ok(Choice::Timer),
            Some(("q", "")) => Ok(Choice::Quiesce),
            _ => Err(format!("unknown choice {s:?}")),
        }
    }
}

/// A transition named independently of the path that reached the state (a datagram by its
/// destination and a hash of its bytes, not by its position in flight): the sleep sets of
/// the partial-order reduction carry these from state to state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Deliver(Side, u64),
    Lose(Side, u64),
    Dup(Side, u64),
    Rekey(Side),
    Data(Side),
    Timer,
    Quiesce,
}

impl Key {
    /// The in-flight datagram the transition acts on.
    fn datagram(self) -> Option<(Side, u64)> {
        match self {
            Key::Deliver(s, h) | Key::Lose(s, h) | Key::Dup(s, h) => Some((s, h)),
            _ => None,
        }
    }

    /// The endpoint whose state the transition changes, for those that change one.
    fn endpoint(self) -> Option<Side> {
        match self {
            Key::Deliver(s, _) | Key::Rekey(s) => Some(s),
            _ => None,
        }
    }
}

/// Whether `a` and `b` commute wherever both are enabled, neither disabling the other: they
/// touch different endpoints and different datagrams and draw on different budgets. A
/// delivery changes only its receiver (and appends to the network), a rekey command only
/// its side; a loss or duplicate changes only the network. Timers (both endpoints and the
/// clock), data (both sides) and quiescence depend on everything.
fn independent(a: Key, b: Key) -> bool {
    let global = |k: Key| matches!(k, Key::Timer | Key::Data(_) | Key::Quiesce);
    let same_budget = matches!(
        (a, b),
        (Key::Lose(..), Key::Lose(..)) | (Key::Dup(..), Key::Dup(..))
    );
    let same_endpoint = a.endpoint().is_some() && a.endpoint() == b.endpoint();
    let same_datagram = a.datagram().is_some() && a.datagram() == b.datagram();
    !(global(a) || global(b) || same_budget || same_endpoint || same_datagram)
}

fn show(path: &[Choice]) -> String {
    path.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One inbound SA in the data-plane model.
#[derive(Hash)]
struct Inbound {
    child: ChildId,
    key: Vec<u8>,
    /// The endpoint wants to hear of the first packet.
    report: bool,
    /// A packet arrived on it.
    seen: bool,
}

/// The data plane of one side, as the invariants see it.
#[derive(Default, Hash)]
struct DataPlane {
    inbound: BTreeMap<u32, Inbound>,
    /// Retired inbound SAs with the time (since the start) they were retired: they still
    /// decrypt for [`GRACE`].
    retired: BTreeMap<u32, (ChildId, Vec<u8>, Duration)>,
    outbound: BTreeMap<u32, (ChildId, Vec<u8>)>,
    active: BTreeMap<ChildId, u32>,
}

/// Two endpoints, their data planes and the network between them.
struct World {
    now: Instant,
    ep: [Endpoint; 2],
    dp: [DataPlane; 2],
    /// In-flight IKE datagrams with their destination, in the order sent.
    net: Vec<(Side, Transmit)>,
    budget: Budget,
    /// Each side's tunnel slot.
    child: [ChildId; 2],
    /// The last request and the last response each side sent: the bytes it keeps for a
    /// retransmission or a retransmitted request, which the endpoint does not show.
    kept: [[Vec<u8>; 2]; 2],
    /// An endpoint gave up on its peer (every answer withheld for the whole retransmission
    /// schedule: more loss than any bound, so outside the model).
    peer_dead: bool,
    violations: Vec<String>,
    trace: Option<Vec<String>>,
}

/// What a step led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// A state of the model, checked.
    Checked,
    /// An endpoint declared its peer dead: the path left the model and is not followed.
    PeerDead,
}

fn config() -> EndpointConfig {
    // The library's defaults: 1 s retransmission doubling to 16 s, 5 tries (the peer is given
    // up after 31 s); 2 s before a TEMPORARY_FAILURE retry; a DELETE the peer owes is waited
    // for until it could have given up, plus 30 s.
    EndpointConfig::default()
}

/// The IKE message of a datagram (after the non-ESP marker on port 4500).
fn ike_message(t: &Transmit) -> &[u8] {
    if t.local.port() == 4500 {
        t.payload.get(4..).unwrap_or_default()
    } else {
        &t.payload[..]
    }
}

fn summary(t: &Transmit) -> String {
    match Header::parse(ike_message(t)) {
        Ok(h) => format!(
            "{:?} mid {} {}",
            h.exchange,
            h.message_id,
            if h.is_response() {
                "response"
            } else {
                "request"
            }
        ),
        Err(e) => format!("unparsable ({e:?})"),
    }
}

impl World {
    /// A pair with one IKE SA and one CHILD_SA, both sides sending on it.
    fn established(seed: u64, budget: Budget, trace: bool) -> World {
        let now = epoch();
        let ep = [Side::A, Side::B].map(|s| {
            Endpoint::new(
                config(),
                vec![peer_config(s, "psk-model-check", IKE, ESP)],
                Box::new(TestRandom::new(seed ^ (0xa + s.idx() as u64))),
                Box::new(RandomSpis::default()),
            )
        });
        let mut w = World {
            now,
            ep,
            dp: [DataPlane::default(), DataPlane::default()],
            net: Vec::new(),
            budget,
            child: [ChildId(0); 2],
            kept: Default::default(),
            peer_dead: false,
            violations: Vec::new(),
            trace: trace.then(Vec::new),
        };
        w.log("setup: A initiates, every datagram delivered in order".into());
        w.ep[0].initiate(now, 0).expect("A initiates");
        w.drain(Side::A);
        while !w.net.is_empty() {
            w.deliver(0);
        }
        let a_child = *w.dp[0]
            .active
            .keys()
            .next()
            .expect("A sends on the first CHILD_SA");
        w.child[0] = a_child;
        w.log("setup: one packet A -> B activates B's outbound SA".into());
        w.data(Side::A);
        let b_child = *w.dp[1]
            .active
            .keys()
            .next()
            .expect("B sends on the first CHILD_SA");
        w.child[1] = b_child;
        w.check();
        assert!(w.violations.is_empty(), "setup: {:?}", w.violations);
        w.log("setup done".into());
        w
    }

    fn log(&mut self, s: String) {
        if let Some(t) = self.trace.as_mut() {
            let at = self.now.duration_since(epoch()).as_secs_f64();
            t.push(format!("{at:8.3} {s}"));
        }
    }

    fn violation(&mut self, s: String) {
        self.log(format!("VIOLATION {s}"));
        self.violations.push(s);
    }

    /// Applies one endpoint's outputs: actions to its data plane, then its datagrams onto the
    /// network, then its events (to the trace).
    fn drain(&mut self, side: Side) {
        while let Some(a) = self.ep[side.idx()].poll_action() {
            self.log(format!("{side:?} action {}", describe(&a)));
            self.apply(side, a);
        }
        while let Some(t) = self.ep[side.idx()].poll_transmit() {
            self.log(format!("{side:?} sends {}", summary(&t)));
            let response = Header::parse(ike_message(&t)).is_ok_and(|h| h.is_response());
            self.kept[side.idx()][usize::from(response)] = t.payload.clone();
            self.net.push((side.other(), t));
        }
        while let Some(e) = self.ep[side.idx()].poll_event() {
            self.log(format!("{side:?} event {e:?}"));
            self.peer_dead |= matches!(e, Event::PeerDead { .. });
        }
    }

    fn apply(&mut self, side: Side, a: Action) {
        let at = self.now.duration_since(epoch());
        let [d0, d1] = &mut self.dp;
        let (dp, peer) = match side {
            Side::A => (d0, &*d1),
            Side::B => (d1, &*d0),
        };
        let problem = match a {
            Action::InstallInbound(p) => {
                if dp.inbound.contains_key(&p.spi) || dp.retired.contains_key(&p.spi) {
                    Some(format!("inbound SPI {:08x} installed twice", p.spi))
                } else {
                    let key = p.keys.expose().to_vec();
                    let report = p.report_first_packet;
                    dp.inbound.insert(
                        p.spi,
                        Inbound {
                            child: p.child,
                            key,
                            report,
                            seen: false,
                        },
                    );
                    None
                }
            }
            Action::InstallOutbound(p) => match dp.outbound.entry(p.spi) {
                Entry::Occupied(_) => Some(format!("outbound SPI {:08x} installed twice", p.spi)),
                Entry::Vacant(v) => {
                    v.insert((p.child, p.keys.expose().to_vec()));
                    None
                }
            },
            Action::SwitchOutbound { child, spi } => match dp.outbound.get(&spi) {
                None => Some(format!(
                    "switch of {child:?} to uninstalled outbound {spi:08x}"
                )),
                Some((c, _)) if *c != child => {
                    Some(format!("switch of {child:?} to {spi:08x} of {c:?}"))
                }
                Some((_, key)) => {
                    let problem = match peer.inbound.get(&spi) {
                        Some(i) if i.key == *key => None,
                        Some(_) => Some(format!("switch to {spi:08x}: the peer's key differs")),
                        None => Some(format!(
                            "switch to {spi:08x}, which the peer does not decrypt (make-before-break)"
                        )),
                    };
                    dp.active.insert(child, spi);
                    problem
                }
            },
            Action::RetireInbound { child: _, spi } => match dp.inbound.remove(&spi) {
                Some(i) => {
                    dp.retired.insert(spi, (i.child, i.key, at));
                    None
                }
                None => Some(format!("retire of unknown inbound {spi:08x}")),
            },
            Action::RemoveOutbound { child, spi } => {
                if dp.outbound.remove(&spi).is_none() {
                    Some(format!("remove of unknown outbound {spi:08x}"))
                } else {
                    if dp.active.get(&child) == Some(&spi) {
                        dp.active.remove(&child);
                    }
                    None
                }
            }
        };
        if let Some(p) = problem {
            self.violation(format!("{side:?} {p}"));
        }
    }

    fn deliver(&mut self, i: usize) {
        let (to, t) = self.net.remove(i);
        self.log(format!("{to:?} receives {}", summary(&t)));
        let now = self.now;
        self.ep[to.idx()].handle_datagram(now, t.remote, t.local, &t.payload);
        self.drain(to);
    }

    /// The first packet `side` would send on its active SA, if it is one the peer reports.
    fn data_useful(&self, side: Side) -> bool {
        let peer = &self.dp[side.other().idx()];
        self.dp[side.idx()]
            .active
            .get(&self.child[side.idx()])
            .and_then(|spi| peer.inbound.get(spi))
            .is_some_and(|i| i.report && !i.seen)
    }

    /// One packet from `side` on its active SA, delivered at once.
    fn data(&mut self, side: Side) {
        let rx = side.other();
        let Some(&spi) = self.dp[side.idx()].active.get(&self.child[side.idx()]) else {
            return self.violation(format!("{side:?} has no active outbound SA to send on"));
        };
        let key = self.dp[side.idx()]
            .outbound
            .get(&spi)
            .map(|(_, k)| k.clone());
        self.log(format!("{side:?} sends data on {spi:08x}"));
        let now = self.now;
        let report = match self.dp[rx.idx()].inbound.get_mut(&spi) {
            None => return self.violation(format!("{rx:?} gets data on uninstalled {spi:08x}")),
            Some(i) if Some(&i.key) != key.as_ref() => {
                return self.violation(format!("{rx:?} gets data on {spi:08x} with another key"));
            }
            Some(i) => {
                let first = !i.seen;
                i.seen = true;
                first && i.report
            }
        };
        if report {
            self.log(format!("{rx:?} reports first packet on {spi:08x}"));
            self.ep[rx.idx()].inbound_traffic(now, spi);
            self.drain(rx);
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.ep.iter().filter_map(Endpoint::poll_timeout).min()
    }

    fn timer(&mut self) {
        let Some(at) = self.next_timer() else { return };
        self.now = self.now.max(at);
        self.log("timer".into());
        for s in [Side::A, Side::B] {
            let now = self.now;
            if self.ep[s.idx()].poll_timeout().is_some_and(|t| t <= now) {
                self.ep[s.idx()].handle_timeout(now);
                self.drain(s);
            }
        }
    }

    fn rekey(&mut self, side: Side) {
        let now = self.now;
        let child = self.child[side.idx()];
        self.log(format!("{side:?} rekey_child({child:?})"));
        if let Err(e) = self.ep[side.idx()].rekey_child(now, child) {
            self.log(format!("{side:?} rekey_child refused: {e}"));
        }
        self.drain(side);
    }

    /// The choices from this state, in the order the search tries them, with their keys.
    fn choices(&self) -> Vec<(Choice, Key)> {
        let mut distinct: Vec<(usize, Side, u64)> = Vec::new();
        for (i, (to, t)) in self.net.iter().enumerate() {
            let mut h = DefaultHasher::new();
            t.payload.hash(&mut h);
            let hash = h.finish();
            if !distinct.iter().any(|(_, s, x)| s == to && *x == hash) {
                distinct.push((i, *to, hash));
            }
        }
        let b = &self.budget;
        let mut v: Vec<(Choice, Key)> = distinct
            .iter()
            .map(|&(i, s, h)| (Choice::Deliver(i), Key::Deliver(s, h)))
            .collect();
        for s in [Side::A, Side::B] {
            if self.data_useful(s) {
                v.push((Choice::Data(s), Key::Data(s)));
            }
        }
        for s in [Side::A, Side::B] {
            if b.rekeys[s.idx()] > 0 {
                v.push((Choice::Rekey(s), Key::Rekey(s)));
            }
        }
        if b.timers > 0 && self.next_timer().is_some() {
            v.push((Choice::Timer, Key::Timer));
        }
        if b.losses > 0 {
            v.extend(
                distinct
                    .iter()
                    .map(|&(i, s, h)| (Choice::Lose(i), Key::Lose(s, h))),
            );
        }
        if b.dups > 0 {
            v.extend(
                distinct
                    .iter()
                    .map(|&(i, s, h)| (Choice::Dup(i), Key::Dup(s, h))),
            );
        }
        if self.net.is_empty() {
            v.push((Choice::Quiesce, Key::Quiesce));
        }
        v
    }

    /// Takes one choice (which must be among [`Self::choices`]) and checks the state after it.
    fn step(&mut self, c: Choice) -> Result<Step, String> {
        self.log(format!("-- {c}"));
        match c {
            Choice::Deliver(i) if i < self.net.len() => self.deliver(i),
            Choice::Lose(i) if i < self.net.len() && self.budget.losses > 0 => {
                self.budget.losses -= 1;
                let (to, t) = self.net.remove(i);
                self.log(format!("lost: {} to {to:?}", summary(&t)));
            }
            Choice::Dup(i) if i < self.net.len() && self.budget.dups > 0 => {
                self.budget.dups -= 1;
                let copy = self.net[i].clone();
                self.log(format!("duplicated: {} to {:?}", summary(&copy.1), copy.0));
                self.net.push(copy);
            }
            Choice::Rekey(s) if self.budget.rekeys[s.idx()] > 0 => {
                self.budget.rekeys[s.idx()] -= 1;
                self.rekey(s);
            }
            Choice::Data(s) => self.data(s),
            Choice::Timer if self.budget.timers > 0 => {
                self.budget.timers -= 1;
                self.timer();
            }
            Choice::Quiesce => return self.quiesce().map(|()| Step::Checked),
            _ => return Err(format!("choice {c} is not possible here")),
        }
        if self.peer_dead {
            self.log("peer declared dead: outside the model, not followed".into());
            return Ok(Step::PeerDead);
        }
        self.check();
        match self.violations.first() {
            Some(v) => Err(v.clone()),
            None => Ok(Step::Checked),
        }
    }

    /// The invariants of every state.
    fn check(&mut self) {
        let now = self.now.duration_since(epoch());
        let mut problems = Vec::new();
        for s in [Side::A, Side::B] {
            let child = self.child[s.idx()];
            let dp = &self.dp[s.idx()];
            let peer = &self.dp[s.other().idx()];
            if dp.active.len() > 1 {
                problems.push(format!(
                    "{s:?} has active outbound SAs for several tunnels: {:x?}",
                    dp.active
                ));
            }
            let marked: Vec<u32> = self.ep[s.idx()]
                .ike_sas()
                .flat_map(|sa| sa.children())
                .filter(|c| c.id == child && c.outbound_active)
                .map(|c| c.spi_out)
                .collect();
            let Some(&spi) = dp.active.get(&child) else {
                problems.push(format!("{s:?}'s tunnel has no active outbound SA"));
                continue;
            };
            if marked != [spi] {
                problems.push(format!(
                    "{s:?} sends on {spi:08x} but its CHILD_SAs marked active are {marked:08x?}"
                ));
            }
            let key = dp.outbound.get(&spi).map(|(_, k)| k);
            match (key, peer.inbound.get(&spi)) {
                (Some(k), Some(i)) if i.key == *k => {}
                (None, _) => problems.push(format!("{s:?}'s active {spi:08x} is not installed")),
                (Some(_), Some(_)) => {
                    problems.push(format!("{s:?} sends on {spi:08x}: the peer's key differs"))
                }
                (Some(k), None) => match peer.retired.get(&spi) {
                    Some((_, rk, at)) if rk == k && now.saturating_sub(*at) <= GRACE => {}
                    Some(_) => problems.push(format!(
                        "{s:?} still sends on {spi:08x}, which the peer retired over {GRACE:?} ago"
                    )),
                    None => problems.push(format!(
                        "{s:?} sends on {spi:08x}, which the peer does not decrypt"
                    )),
                },
            }
        }
        for p in problems {
            self.violation(p);
        }
    }

    /// Leaf: no more faults or commands; everything in flight is delivered in order, data
    /// flows and timers run until nothing is left; then the pair must have converged.
    fn quiesce(&mut self) -> Result<(), String> {
        for _ in 0..QUIESCE_CAP {
            if let Some(v) = self.violations.first() {
                return Err(v.clone());
            }
            if self.peer_dead {
                return Err("a peer was declared dead during quiescence".into());
            }
            if !self.net.is_empty() {
                self.deliver(0);
            } else if let Some(s) = [Side::A, Side::B]
                .into_iter()
                .find(|s| self.data_useful(*s))
            {
                self.data(s);
            } else if self.next_timer().is_some() {
                self.timer();
            } else {
                self.log("quiet".into());
                return self.converged();
            }
            self.check();
        }
        Err(format!("no rest after {QUIESCE_CAP} steps of quiescence"))
    }

    /// One IKE SA per side, exactly one CHILD_SA pair with mirrored SPIs, both active, the
    /// data planes holding nothing else.
    fn converged(&self) -> Result<(), String> {
        let mut current = Vec::new();
        for s in [Side::A, Side::B] {
            let ep = &self.ep[s.idx()];
            let sas: Vec<_> = ep.ike_sas().collect();
            if sas.len() != 1 || !sas[0].is_established() {
                let states: Vec<_> = sas.iter().map(|sa| sa.state_name()).collect();
                return Err(format!("not converged: {s:?} has IKE SAs {states:?}"));
            }
            let children: Vec<(u32, u32)> = sas[0]
                .children()
                .iter()
                .map(|c| (c.spi_in, c.spi_out))
                .collect();
            if children.len() != 1 || !sas[0].children()[0].is_current() {
                return Err(format!(
                    "not converged: {s:?} has CHILD_SAs {children:08x?}"
                ));
            }
            let (spi_in, spi_out) = children[0];
            let dp = &self.dp[s.idx()];
            let clean = dp.active.get(&self.child[s.idx()]) == Some(&spi_out)
                && dp.active.len() == 1
                && dp.outbound.keys().eq([&spi_out])
                && dp.inbound.keys().eq([&spi_in]);
            if !clean {
                return Err(format!(
                    "not converged: {s:?} data plane: inbound {:08x?}, outbound {:08x?}, active {:08x?}",
                    dp.inbound.keys().collect::<Vec<_>>(),
                    dp.outbound.keys().collect::<Vec<_>>(),
                    dp.active
                ));
            }
            current.push((spi_in, spi_out));
        }
        if current[0] != (current[1].1, current[1].0) {
            return Err(format!(
                "not converged: SPIs not mirrored: A {:08x?} B {:08x?}",
                current[0], current[1]
            ));
        }
        Ok(())
    }

    /// Whether a side sends on an SA its peer has already retired.
    fn sends_into_grace(&self) -> bool {
        [Side::A, Side::B].into_iter().any(|s| {
            let peer = &self.dp[s.other().idx()];
            self.dp[s.idx()]
                .active
                .values()
                .any(|spi| peer.retired.contains_key(spi))
        })
    }

    /// Whose exchange created the surviving CHILD_SA, if a rekey collision happened on this
    /// path (the creator installed its inbound SA without asking for a report).
    fn collision_winner(&self) -> Option<Side> {
        if self.ep.iter().all(|e| e.stats().rekey_collisions == 0) {
            return None;
        }
        let a = self.dp[0].inbound.values().next()?;
        Some(if a.report { Side::B } else { Side::A })
    }

    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        let rel = |t: Option<Instant>| t.map(|t| t.duration_since(epoch()));
        rel(Some(self.now)).hash(&mut h);
        for ep in &self.ep {
            for sa in ep.ike_sas() {
                (
                    sa.id(),
                    sa.spis(),
                    sa.state_name(),
                    sa.has_pending_request(),
                )
                    .hash(&mut h);
                for c in sa.children() {
                    (
                        c.ike,
                        c.id,
                        c.spi_in,
                        c.spi_out,
                        c.outbound_installed,
                        c.outbound_active,
                    )
                        .hash(&mut h);
                    (
                        c.rekeying,
                        c.replaced,
                        c.redundant,
                        c.peer_deletes,
                        c.deleting,
                    )
                        .hash(&mut h);
                    (rel(c.activate_at), rel(c.delete_by)).hash(&mut h);
                    c.peer_rekey
                        .as_ref()
                        .map(|p| (p.new_spi_in, &p.nonces, p.collided))
                        .hash(&mut h);
                }
            }
            rel(ep.poll_timeout()).hash(&mut h);
            format!("{:?}", ep.stats()).hash(&mut h);
        }
        self.dp.hash(&mut h);
        let mut net: Vec<(Side, &[u8])> =
            self.net.iter().map(|(s, t)| (*s, &t.payload[..])).collect();
        net.sort();
        net.hash(&mut h);
        self.budget.hash(&mut h);
        self.kept.hash(&mut h);
        h.finish()
    }
}

/// The result of one exhaustive search.
#[derive(Debug, Default)]
struct Report {
    states: u64,
    edges: u64,
    paths: u64,
    replays: u64,
    max_depth: usize,
    /// States reached again with transitions their first exploration slept through.
    revisits: u64,
    /// Paths not followed because an endpoint declared its peer dead.
    peer_dead: u64,
    /// States in which a side sends on an SA the peer has retired (within the grace period).
    in_grace: u64,
    /// Converged paths with a rekey collision, by the side whose exchange survived.
    collision_wins: [u64; 2],
    /// The first counterexample: its choices and what went wrong.
    failure: Option<(Vec<Choice>, String)>,
}

struct Explorer {
    seed: u64,
    budget: Budget,
    /// Partial-order reduction by sleep sets on.
    reduce: bool,
    /// Every state seen, with the transitions its exploration left asleep (not taken).
    seen: HashMap<u64, Vec<Key>>,
    report: Report,
}

impl Explorer {
    fn replay(&mut self, path: &[Choice]) -> World {
        self.report.replays += 1;
        let mut w = World::established(self.seed, self.budget, false);
        for c in path {
            // The path was taken before from the same start: it replays without error.
            let _ = w.step(*c);
        }
        w
    }

    /// Explores the successors of `world`: those not in `sleep`, or only those in `only`.
    ///
    /// Sleep sets (Godefroid, "Partial-Order Methods for the Verification of Concurrent
    /// Systems", ch. 5) skip a transition whose order with an already explored independent
    /// one does not matter: `s·a·b` is reached, so `s·b·a` is not tried. They prune
    /// transitions, never states: every reachable state is still visited and checked. With
    /// the state cache a state reached again with a smaller sleep set explores what it slept
    /// through the first time (§5.3).
    fn dfs(
        &mut self,
        path: &mut Vec<Choice>,
        world: World,
        sleep: Vec<Key>,
        only: Option<Vec<Key>>,
    ) {
        self.report.max_depth = self.report.max_depth.max(path.len());
        if path.len() >= DEPTH_CAP {
            self.report.failure = Some((path.clone(), format!("depth cap {DEPTH_CAP} reached")));
            return;
        }
        let todo: Vec<(Choice, Key)> = world
            .choices()
            .into_iter()
            .filter(|(_, k)| match &only {
                Some(o) => o.contains(k),
                None => !sleep.contains(k),
            })
            .collect();
        let mut live = Some(world);
        let mut done: Vec<Key> = Vec::new();
        for (c, k) in todo {
            let mut w = match live.take() {
                Some(w) => w,
                None => self.replay(path),
            };
            path.push(c);
            self.report.edges += 1;
            let outcome = catch_unwind(AssertUnwindSafe(|| w.step(c).map(|step| (step, w))));
            let child_sleep: Vec<Key> = if self.reduce {
                sleep
                    .iter()
                    .chain(&done)
                    .copied()
                    .filter(|u| independent(*u, k))
                    .collect()
            } else {
                Vec::new()
            };
            match outcome {
                Err(panic) => {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    self.report.failure = Some((path.clone(), format!("panic: {msg}")));
                }
                Ok(Err(v)) => self.report.failure = Some((path.clone(), v)),
                Ok(Ok((Step::PeerDead, _))) => self.report.peer_dead += 1,
                Ok(Ok((_, w))) if c == Choice::Quiesce => {
                    self.report.paths += 1;
                    if let Some(s) = w.collision_winner() {
                        self.report.collision_wins[s.idx()] += 1;
                    }
                }
                Ok(Ok((_, w))) => {
                    let fp = w.fingerprint();
                    match self.seen.get_mut(&fp) {
                        None => {
                            self.seen.insert(fp, child_sleep.clone());
                            self.report.states += 1;
                            self.report.in_grace += u64::from(w.sends_into_grace());
                            self.dfs(path, w, child_sleep, None);
                        }
                        Some(stored) => {
                            let woken: Vec<Key> = stored
                                .iter()
                                .copied()
                                .filter(|u| !child_sleep.contains(u))
                                .collect();
                            if !woken.is_empty() {
                                stored.retain(|u| child_sleep.contains(u));
                                self.report.revisits += 1;
                                self.dfs(path, w, child_sleep, Some(woken));
                            }
                        }
                    }
                }
            }
            path.pop();
            done.push(k);
            if self.report.failure.is_some() {
                return;
            }
        }
    }
}

/// Explores every path from the established pair within `budget`.
fn explore(seed: u64, budget: Budget, reduce: bool) -> Report {
    let mut ex = Explorer {
        seed,
        budget,
        reduce,
        seen: HashMap::new(),
        report: Report::default(),
    };
    let start = World::established(seed, budget, false);
    ex.seen.insert(start.fingerprint(), Vec::new());
    ex.report.states = 1;
    ex.dfs(&mut Vec::new(), start, Vec::new(), None);
    ex.report
}

/// The trace of one path, for a counterexample.
fn trace(seed: u64, budget: Budget, path: &[Choice]) -> String {
    let mut w = World::established(seed, budget, true);
    for c in path {
        let r = catch_unwind(AssertUnwindSafe(|| w.step(*c)));
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(v)) => {
                w.log(format!("FAILED: {v}"));
                break;
            }
            Err(_) => {
                w.log("PANICKED".into());
                break;
            }
        }
    }
    w.trace.unwrap_or_default().join("\n")
}

fn bounds(b: &Budget) -> String {
    format!(
        "R={}/{} per side, L={}, D={}, T={}",
        b.rekeys[0], b.rekeys[1], b.losses, b.dups, b.timers
    )
}

/// Runs the search, prints its size and fails with a replayable counterexample, or when it
/// explored fewer than `floor` states (a broken explorer).
fn check(name: &str, seed: u64, budget: Budget, reduce: bool, floor: u64) -> Report {
    let started = Instant::now();
    let r = explore(seed, budget, reduce);
    let secs = started.elapsed().as_secs_f64();
    let line = format!(
        "model check {name}: {} states, {} transitions, {} paths to quiescence, {} peer-dead paths \
         not followed, {} states sending into a retired SA's grace, {} replays, {} revisits, \
         bounds {}, full reordering, depth ≤ {}, collisions won by A's/B's exchange on {}/{} \
         paths, seed {seed}, {secs:.1} s",
        r.states,
        r.edges,
        r.paths,
        r.peer_dead,
        r.in_grace,
        r.replays,
        r.revisits,
        bounds(&budget),
        r.max_depth,
        r.collision_wins[0],
        r.collision_wins[1],
    );
    println!("{line}");
    if let Some((path, what)) = &r.failure {
        let t = trace(seed, budget, path);
        println!("COUNTEREXAMPLE ({what}):\nchoices: {}\n{t}", show(path));
        panic!(
            "{line}\ncounterexample: {what}\nreplay: ESPADA_MC_SEED={seed} ESPADA_MC_REPLAY=\"{}\"\n{t}",
            show(path)
        );
    }
    assert!(
        r.states >= floor,
        "{line}: fewer states than the {floor} measured"
    );
    r
}

/// Both ends rekey once at any moment; one datagram may be lost and one duplicated anywhere.
#[test]
fn model_check_one_rekey_each_loss_and_duplicate() {
    let budget = Budget {
        rekeys: [1, 1],
        losses: 1,
        dups: 1,
        timers: 0,
    };
    let r = check("R1 L1 D1", 1, budget, true, 4_000);
    assert!(
        r.collision_wins.iter().all(|n| *n > 0),
        "both outcomes of a collision: {r:?}"
    );
}

/// Both ends rekey once; one loss, and one timer (a retransmission, a retry or a deadline)
/// may fire anywhere before quiescence.
#[test]
fn model_check_one_rekey_each_loss_and_timer() {
    let budget = Budget {
        rekeys: [1, 1],
        losses: 1,
        dups: 0,
        timers: 1,
    };
    let r = check("R1 L1 T1", 1, budget, true, 8_000);
    assert!(
        r.collision_wins.iter().all(|n| *n > 0),
        "both outcomes of a collision: {r:?}"
    );
}

/// Both ends rekey twice (successors of successors, collisions on either generation) and one
/// datagram may be lost.
#[test]
fn model_check_two_rekeys_each_and_loss() {
    let budget = Budget {
        rekeys: [2, 2],
        losses: 1,
        dups: 0,
        timers: 0,
    };
    let r = check("R2 L1", 1, budget, true, 11_000);
    assert!(
        r.collision_wins.iter().all(|n| *n > 0),
        "both outcomes of a collision: {r:?}"
    );
}

/// One end rekeys once while answers may be delayed through most of the retransmission
/// schedule (five timers reach the give-up at 31 s and the 30 s delete deadline), for each
/// end as the rekey initiator.
#[test]
fn model_check_one_rekey_long_delays() {
    for rekeys in [[1, 0], [0, 1]] {
        let budget = Budget {
            rekeys,
            losses: 0,
            dups: 0,
            timers: 5,
        };
        check("R1 one side T5", 1, budget, true, 2_000);
    }
}

/// The partial-order reduction prunes transitions, never states: with and without it the
/// search visits the same number of states and reaches quiescence on the same paths.
#[test]
fn sleep_sets_visit_every_state() {
    let budget = Budget {
        rekeys: [1, 1],
        losses: 0,
        dups: 0,
        timers: 1,
    };
    let reduced = check("R1 T1 reduced", 1, budget, true, 2_500);
    let full = check("R1 T1 unreduced", 1, budget, false, 2_500);
    assert_eq!(
        (reduced.states, reduced.paths, reduced.collision_wins),
        (full.states, full.paths, full.collision_wins),
        "{reduced:?}\n{full:?}"
    );
    assert!(
        reduced.edges < full.edges,
        "the reduction prunes nothing: {reduced:?}\n{full:?}"
    );
}

/// Bounds from `ESPADA_MC_BOUNDS="<rekeys per side, or A/B>,<losses>,<dups>,<timers>"` (and
/// `ESPADA_MC_SEED`) for a longer local run; without them the smallest model: one rekey per
/// side on a perfect network.
#[test]
fn model_check_bounds_from_env() {
    let seed = std::env::var("ESPADA_MC_SEED")
        .ok()
        .map_or(1, |s| s.parse().expect("ESPADA_MC_SEED"));
    let given = std::env::var("ESPADA_MC_BOUNDS").ok();
    let number = |x: &str| -> u8 { x.trim().parse().expect("ESPADA_MC_BOUNDS: small numbers") };
    let fields: Vec<&str> = given.as_deref().unwrap_or("1,0,0,0").split(',').collect();
    let [rekeys, losses, dups, timers] = fields[..] else {
        panic!("ESPADA_MC_BOUNDS: four fields")
    };
    let rekeys = match rekeys.split_once('/') {
        Some((a, b)) => [number(a), number(b)],
        None => [number(rekeys); 2],
    };
    let budget = Budget {
        rekeys,
        losses: number(losses),
        dups: number(dups),
        timers: number(timers),
    };
    let floor = if given.is_some() { 1 } else { 100 };
    check("from env", seed, budget, true, floor);
}

/// Replays `ESPADA_MC_REPLAY` (a choice sequence as printed by a counterexample, with
/// `ESPADA_MC_SEED`) and prints its trace; without it, a fixed path of a collision. Either
/// way the replay must be deterministic.
#[test]
fn replay() {
    let budget = Budget {
        rekeys: [u8::MAX; 2],
        losses: u8::MAX,
        dups: u8::MAX,
        timers: u8::MAX,
    };
    let seed = std::env::var("ESPADA_MC_SEED")
        .ok()
        .map_or(1, |s| s.parse().expect("ESPADA_MC_SEED"));
    let given = std::env::var("ESPADA_MC_REPLAY").ok();
    let text = given
        .clone()
        .unwrap_or_else(|| "rA rB d0 d1 d0 d0 q".into());
    let path: Vec<Choice> = text
        .split_whitespace()
        .map(|c| c.parse().expect("a choice"))
        .collect();
    let t = trace(seed, budget, &path);
    println!("choices: {}\n{t}", show(&path));
    assert_eq!(t, trace(seed, budget, &path), "replay is deterministic");
    if given.is_none() {
        assert!(!t.contains("FAILED") && !t.contains("PANICKED"), "{t}");
        assert!(
            t.contains("TEMPORARY_FAILURE") && t.ends_with("quiet"),
            "{t}"
        );
    }
}
