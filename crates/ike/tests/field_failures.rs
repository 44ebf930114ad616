//! Field failures as named tests: each test is named after the bug report of another IKEv2
//! implementation it comes from, and replays that report's sequence of messages between two
//! espada endpoints (the pair harness of `common`). Where the reported peer behaves unlike
//! espada, the peer's messages are held, dropped, reordered or forged by a twin endpoint that
//! shares the peer's keys (see [`establish_with_twin`]), or the peer's data plane is steered.
//!
//! Every test runs data both ways throughout and asserts that no data plane invariant broke
//! (the harness's make-before-break checks plus, here, "a tunnel that had an outbound SA always
//! has one"), that no data packet was lost, that the tunnel converges, and the protocol outcome
//! the report is about (notifies sent and received, collisions counted, which SA survives).
//!
//! Nonces are steered through the injected [`Random`]: [`ScriptedRandom`] wraps the pair's
//! deterministic generator, records every 32-octet draw (the nonces: the DH groups here are
//! ECP-384, whose private values are 48 octets) and can overwrite the first octet of the next
//! ones, which decides every §2.8.1 tie-break without searching seeds.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{Pair, Side, Violation, Wire, endpoint_config, peer_config};
use espada_ike::config::{EndpointConfig, PeerConfig};
use espada_ike::exchange::{
    Action, ChildId, Endpoint, Event, IkeSaId, RandomSpis, Stats, Transmit,
};
use espada_ike::msgs::{ExchangeType, Header, NotifyType, TrafficSelector};
use espada_ike::rng::{Random, TestRandom};
use espada_ike::ts;

const IKE: &str = "aes128gcm16-prfsha256-ecp384";
const ESP: &str = "aes128gcm16-ecp384";
/// Nonces are 32 octets (init.rs `NONCE_LEN`); nothing else drawn during a rekey is.
const NONCE_LEN: usize = 32;
const CCSA: ExchangeType = ExchangeType::CREATE_CHILD_SA;
const INFO: ExchangeType = ExchangeType::INFORMATIONAL;
const A: Side = Side::A;
const B: Side = Side::B;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// Steered randomness
// ---------------------------------------------------------------------------------------------

/// What the test tells one side's generator, and what it drew.
#[derive(Default)]
struct NonceCtl {
    /// First octets for the next nonces, in draw order.
    first_octets: VecDeque<u8>,
    /// Every nonce drawn.
    drawn: Vec<Vec<u8>>,
    /// Generator steps to skip before the next draw (a twin that must not repeat its peer).
    burn: u32,
}

type Ctl = Rc<RefCell<NonceCtl>>;

struct ScriptedRandom {
    inner: TestRandom,
    ctl: Ctl,
}

impl Random for ScriptedRandom {
    fn fill(&mut self, dest: &mut [u8]) {
        let mut c = self.ctl.borrow_mut();
        for _ in 0..std::mem::take(&mut c.burn) {
            self.inner.next_u64();
        }
        self.inner.fill(dest);
        if dest.len() == NONCE_LEN {
            if let Some(b) = c.first_octets.pop_front() {
                dest[0] = b;
            }
            c.drawn.push(dest.to_vec());
        }
    }
}

fn scripted_endpoint(config: &EndpointConfig, peer: PeerConfig, seed: u64, ctl: &Ctl) -> Endpoint {
    let rng = ScriptedRandom {
        inner: TestRandom::new(seed),
        ctl: ctl.clone(),
    };
    Endpoint::new(
        config.clone(),
        vec![peer],
        Box::new(rng),
        Box::new(RandomSpis::default()),
    )
}

// ---------------------------------------------------------------------------------------------
// Scripted delivery
// ---------------------------------------------------------------------------------------------

/// An IKE datagram in flight, as its header shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Msg {
    from: Side,
    exchange: ExchangeType,
    mid: u32,
    response: bool,
    /// 1 for the first transmission of this message, 2 for its first retransmission, ...
    nth: u32,
}

impl Msg {
    fn is(&self, from: Side, exchange: ExchangeType, response: bool) -> bool {
        self.from == from && self.exchange == exchange && self.response == response
    }
}

/// What the network does with a datagram the first time it sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Drop,
    Hold,
}

type Entry = (Instant, u64, Side, Wire);

fn header_of(t: &Transmit) -> Option<Header> {
    let body = if t.local.port() == espada_ike::NATT_PORT {
        t.payload.get(4..)?
    } else {
        &t.payload[..]
    };
    Header::parse(body).ok()
}

fn pass(_: &Msg) -> Verdict {
    Verdict::Pass
}

/// The pair with a scripted network: every IKE datagram is judged once by the test's rule,
/// data flows both ways every 5 ms, and the tunnel invariant is checked every millisecond.
struct Field {
    p: Pair,
    seed: u64,
    config: EndpointConfig,
    nonces: [Ctl; 2],
    /// Network sequence numbers already judged.
    seen: HashSet<u64>,
    /// Transmissions so far of each (destination, exchange, message ID, response).
    sent: HashMap<(Side, ExchangeType, u32, bool), u32>,
    held: Vec<(Msg, Entry)>,
    /// Every IKE datagram judged, with its verdict.
    log: Vec<(Instant, Msg, Verdict, Transmit)>,
    /// Tunnels that had an active outbound SA, per side.
    ever_active: [BTreeSet<ChildId>; 2],
    reported: HashSet<(Side, ChildId)>,
    traffic: bool,
    next_data: Instant,
}

impl Field {
    fn new(seed: u64, a: PeerConfig, b: PeerConfig, config: EndpointConfig) -> Field {
        let mut p = Pair::new(seed, a.clone(), b.clone(), config.clone());
        let nonces: [Ctl; 2] = Default::default();
        p.ep = [
            scripted_endpoint(&config, a, seed ^ 0xa, &nonces[0]),
            scripted_endpoint(&config, b, seed ^ 0xb, &nonces[1]),
        ];
        let next_data = p.now;
        Field {
            p,
            seed,
            config,
            nonces,
            seen: HashSet::new(),
            sent: HashMap::new(),
            held: Vec::new(),
            log: Vec::new(),
            ever_active: Default::default(),
            reported: HashSet::new(),
            traffic: true,
            next_data,
        }
    }

    fn standard(seed: u64) -> Field {
        Field::new(seed, peer(A), peer(B), endpoint_config())
    }

    fn trace(&mut self, s: String) {
        let line = format!("{:9.3} {s}", self.p.t());
        self.p.trace.push(line);
    }

    fn judge(&mut self, rule: &mut dyn FnMut(&Msg) -> Verdict) {
        let mut keep = Vec::with_capacity(self.p.net.len());
        for e in std::mem::take(&mut self.p.net) {
            let header = match &e.3 {
                Wire::Ike(t) if !self.seen.contains(&e.1) => header_of(t).map(|h| (h, t.clone())),
                _ => None,
            };
            let Some((h, t)) = header else {
                keep.push(e);
                continue;
            };
            self.seen.insert(e.1);
            let n = self
                .sent
                .entry((e.2, h.exchange, h.message_id, h.is_response()))
                .or_insert(0);
            *n += 1;
            let m = Msg {
                from: e.2.other(),
                exchange: h.exchange,
                mid: h.message_id,
                response: h.is_response(),
                nth: *n,
            };
            let v = rule(&m);
            self.log.push((self.p.now, m, v, t));
            match v {
                Verdict::Pass => keep.push(e),
                Verdict::Drop => self.trace(format!("NET drops {m:?}")),
                Verdict::Hold => {
                    self.trace(format!("NET holds {m:?}"));
                    self.held.push((m, e));
                }
            }
        }
        self.p.net = keep;
    }

    /// Puts the held datagrams `pick` selects back on the wire, back to back in the order they
    /// were held, arriving after the network's delay.
    fn release(&mut self, pick: impl Fn(&Msg) -> bool) -> usize {
        let (go, stay): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(m, _)| pick(m));
        self.held = stay;
        let n = go.len();
        for (m, (_, _, to, w)) in go {
            self.trace(format!("NET releases {m:?}"));
            self.p.seq += 1;
            let seq = self.p.seq;
            self.seen.insert(seq);
            let at = self.p.now + self.p.delay;
            self.p.net.push((at, seq, to, w));
        }
        n
    }

    /// A datagram forged by a twin of `to`'s peer.
    fn inject(&mut self, to: Side, t: Transmit) {
        if let Some(h) = header_of(&t) {
            let what = if h.is_response() {
                "response"
            } else {
                "request"
            };
            self.trace(format!(
                "twin of {:?} sends {:?} mid {} {what}",
                to.other(),
                h.exchange,
                h.message_id
            ));
        }
        self.p.seq += 1;
        let seq = self.p.seq;
        let at = self.p.now + self.p.delay;
        self.p.net.push((at, seq, to, Wire::Ike(t)));
    }

    fn check_invariants(&mut self) {
        for s in [A, B] {
            for (c, _, _) in self.p.tunnels(s) {
                if self.p.dp[s.idx()].active.contains_key(&c) {
                    self.ever_active[s.idx()].insert(c);
                } else if self.ever_active[s.idx()].contains(&c) && self.reported.insert((s, c)) {
                    let v = format!("{s:?} tunnel {c:?} has no active outbound SA");
                    self.trace(format!("VIOLATION {v}"));
                    self.p.violations.push(Violation(v));
                }
            }
        }
    }

    fn step(&mut self, rule: &mut dyn FnMut(&Msg) -> Verdict) {
        self.judge(rule);
        if self.traffic && self.p.now >= self.next_data {
            self.p.send_data(A);
            self.p.send_data(B);
            self.next_data = self.p.now + ms(5);
        }
        let until = self.p.now + ms(1);
        self.p.run_until(until);
        self.judge(rule);
        self.check_invariants();
    }

    fn drive(&mut self, d: Duration, rule: &mut dyn FnMut(&Msg) -> Verdict) {
        let end = self.p.now + d;
        while self.p.now < end {
            self.step(rule);
        }
    }

    /// Drives until `done` holds (true) or `max` has passed (false).
    fn drive_until(
        &mut self,
        max: Duration,
        rule: &mut dyn FnMut(&Msg) -> Verdict,
        done: &dyn Fn(&Field) -> bool,
    ) -> bool {
        let end = self.p.now + max;
        while self.p.now < end {
            if done(self) {
                return true;
            }
            self.step(rule);
        }
        done(self)
    }

    /// IKE_SA_INIT, IKE_AUTH with the first CHILD_SA, and data on it both ways.
    fn establish(&mut self) {
        self.p.initiate(A);
        self.drive(ms(500), &mut pass);
        self.assert_clean("establishment");
        self.p
            .check_converged()
            .unwrap_or_else(|e| panic!("{e}\n{}", self.dump()));
    }

    fn now(&self) -> Instant {
        self.p.now
    }

    fn stats(&self, s: Side) -> &Stats {
        self.p.ep[s.idx()].stats()
    }

    fn tunnel(&self, s: Side) -> (ChildId, u32, u32) {
        self.p.tunnels(s)[0]
    }

    fn ike(&self, s: Side) -> IkeSaId {
        self.p.established(s)[0]
    }

    fn rekey(&mut self, s: Side) {
        let (child, _, _) = self.tunnel(s);
        let now = self.now();
        self.p.ep[s.idx()].rekey_child(now, child).unwrap();
        self.p.drain(s);
    }

    /// The first octets of `s`'s next nonces.
    fn next_nonces(&self, s: Side, first_octets: &[u8]) {
        self.nonces[s.idx()]
            .borrow_mut()
            .first_octets
            .extend(first_octets);
    }

    fn drawn(&self, s: Side) -> Vec<Vec<u8>> {
        self.nonces[s.idx()].borrow().drawn.clone()
    }

    fn held(&self, pick: impl Fn(&Msg) -> bool) -> usize {
        self.held.iter().filter(|(m, _)| pick(m)).count()
    }

    /// Datagrams that were judged with `pick`.
    fn count(&self, pick: impl Fn(&Msg) -> bool) -> usize {
        self.log.iter().filter(|(_, m, _, _)| pick(m)).count()
    }

    /// Events of side `s` from index `from` on.
    fn events(&self, s: Side, from: usize) -> &[Event] {
        &self.p.events[s.idx()][from..]
    }

    /// (old, new) SPI pairs of the ChildRekeyed events of `s` from index `from`, in order.
    fn rekeyed(&self, s: Side, from: usize) -> Vec<((u32, u32), (u32, u32))> {
        self.events(s, from)
            .iter()
            .filter_map(|e| match e {
                Event::ChildRekeyed { old, new, .. } => Some((*old, *new)),
                _ => None,
            })
            .collect()
    }

    fn exchange_failed(&self, s: Side, from: usize) -> Vec<(NotifyType, bool)> {
        self.events(s, from)
            .iter()
            .filter_map(|e| match e {
                Event::ExchangeFailed {
                    notify, by_peer, ..
                } => Some((*notify, *by_peer)),
                _ => None,
            })
            .collect()
    }

    /// Trace lines of `s`'s data-plane actions of kind `kind` ("install-out", ...) after `t`.
    fn actions_after(&self, s: Side, kind: &str, t: f64) -> usize {
        let tag = format!("{s:?} action {kind}");
        self.p
            .trace
            .iter()
            .filter(|l| {
                l.contains(&tag)
                    && l.split_whitespace()
                        .next()
                        .and_then(|x| x.parse::<f64>().ok())
                        .is_some_and(|x| x >= t)
            })
            .count()
    }

    fn assert_clean(&self, what: &str) {
        let v = &self.p.violations;
        let first: Vec<&str> = v.iter().take(5).map(|v| v.0.as_str()).collect();
        assert!(
            v.is_empty(),
            "{what}: {} violations, first {first:?}\n{}",
            v.len(),
            self.dump()
        );
    }

    /// The trace's last 400 lines, data-packet violations after the first five left out.
    fn dump(&self) -> String {
        let mut data_violations = 0;
        let lines: Vec<&str> = self
            .p
            .trace
            .iter()
            .filter(|l| {
                let data = l.contains("VIOLATION") && l.contains(" data on ");
                data_violations += usize::from(data);
                !data || data_violations <= 5
            })
            .map(String::as_str)
            .collect();
        lines[lines.len().saturating_sub(400)..].join("\n")
    }

    /// Stops the traffic, lets everything in flight arrive, and checks the end state: no
    /// violation, no data packet lost beyond `lost`, `tunnels` tunnels of one CHILD_SA pair
    /// each, mirrored and active on both sides, nothing outstanding.
    fn finish(&mut self, what: &str, tunnels: usize, lost: u64) {
        assert_eq!(
            self.held.len(),
            0,
            "{what}: datagrams still held: {:?}",
            self.held.iter().map(|h| h.0).collect::<Vec<_>>()
        );
        self.traffic = false;
        self.drive(ms(500), &mut pass);
        if std::env::var_os("ESPADA_FIELD_TRACE").is_some() {
            println!("=== {what}\n{}", self.p.trace.join("\n"));
        }
        self.assert_clean(what);
        let received = self.p.dp[0].packets_received + self.p.dp[1].packets_received;
        assert_eq!(
            self.p.data_sent,
            received + lost,
            "{what}: data packets lost\n{}",
            self.dump()
        );
        assert!(received > 0, "{what}: no data flowed");
        self.converged(tunnels)
            .unwrap_or_else(|e| panic!("{what}: not converged: {e}\n{}", self.dump()));
    }

    fn converged(&self, n: usize) -> Result<(), String> {
        let p = &self.p;
        if p.established(A).len() != 1 || p.established(B).len() != 1 {
            return Err(format!(
                "IKE SAs: A {:?} B {:?}",
                p.established(A),
                p.established(B)
            ));
        }
        if p.ep
            .iter()
            .any(|e| e.ike_sas().any(|s| s.has_pending_request()))
            || !p.net.is_empty()
        {
            return Err("requests outstanding or datagrams in flight".into());
        }
        let (ta, tb) = (p.tunnels(A), p.tunnels(B));
        let all: usize =
            p.ep.iter()
                .map(|e| e.ike_sas().map(|s| s.children().len()).sum::<usize>())
                .sum();
        if ta.len() != n || tb.len() != n || all != 2 * n {
            return Err(format!(
                "CHILD_SAs: A {ta:x?} B {tb:x?} (all: {all}, expected {n} pairs)"
            ));
        }
        if let Some(t) = ta
            .iter()
            .find(|(_, i, o)| !tb.iter().any(|(_, bi, bo)| bi == o && bo == i))
        {
            return Err(format!("A's {t:x?} has no mirror at B: {tb:x?}"));
        }
        for s in [A, B] {
            let dp = &p.dp[s.idx()];
            if dp.active.len() != n || dp.outbound.len() != n || dp.inbound.len() != n {
                return Err(format!("{s:?} data plane not clean: {dp:x?}"));
            }
            if let Some((c, _, o)) = p
                .tunnels(s)
                .into_iter()
                .find(|(c, _, o)| dp.active.get(c) != Some(o))
            {
                return Err(format!(
                    "{s:?} tunnel {c:?} does not send on its current SA {o:08x}"
                ));
            }
        }
        Ok(())
    }
}

fn peer(side: Side) -> PeerConfig {
    peer_config(side, "psk-field", IKE, ESP)
}

fn net(s: &str) -> TrafficSelector {
    let (a, len) = s.split_once('/').unwrap();
    ts::prefix(a.parse().unwrap(), len.parse().unwrap())
}

// ---------------------------------------------------------------------------------------------
// A twin of B
// ---------------------------------------------------------------------------------------------

/// The data-plane actions of a twin endpoint (it has no data plane of its own).
#[derive(Default, Debug)]
struct TwinDp {
    inbound: HashMap<u32, Vec<u8>>,
    outbound: HashMap<u32, Vec<u8>>,
    switches: Vec<(ChildId, u32)>,
}

/// Drains a twin: applies its actions to `dp`, returns its datagrams (not sent), drops events.
fn drain_twin(ep: &mut Endpoint, dp: &mut TwinDp) -> Vec<Transmit> {
    while let Some(a) = ep.poll_action() {
        match a {
            Action::InstallInbound(p) => drop(dp.inbound.insert(p.spi, p.keys.expose().to_vec())),
            Action::InstallOutbound(p) => drop(dp.outbound.insert(p.spi, p.keys.expose().to_vec())),
            Action::SwitchOutbound { child, spi } => dp.switches.push((child, spi)),
            Action::RetireInbound { .. } | Action::RemoveOutbound { .. } => {}
        }
    }
    let mut out = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        out.push(t);
    }
    while ep.poll_event().is_some() {}
    out
}

/// Establishes the pair while a twin of B — an endpoint with B's generator seed and the
/// configuration `twin_peer` — receives every datagram B receives at the same instants. The
/// twin ends up with B's IKE SA, keys, message IDs and CHILD_SA SPIs and keys (none of them
/// depends on the traffic selectors), so it can send datagrams A accepts as B's. Its own
/// datagrams are not sent. No data flows meanwhile (the twin would not see it).
fn establish_with_twin(f: &mut Field, twin_peer: PeerConfig, twin_ctl: &Ctl) -> (Endpoint, TwinDp) {
    let mut twin = scripted_endpoint(&f.config, twin_peer, f.seed ^ 0xb, twin_ctl);
    let mut dp = TwinDp::default();
    f.p.initiate(A);
    for _ in 0..500 {
        let until = f.p.now + ms(1);
        loop {
            let next = f
                .p
                .net
                .iter()
                .enumerate()
                .filter(|(_, (t, _, to, w))| *to == B && *t <= until && matches!(w, Wire::Ike(_)))
                .min_by_key(|(_, (t, s, _, _))| (*t, *s))
                .map(|(i, _)| i);
            let Some(i) = next else { break };
            let (at, _, _, w) = f.p.net.remove(i);
            let Wire::Ike(t) = w else {
                unreachable!("filtered on IKE")
            };
            f.p.now = f.p.now.max(at);
            let now = f.p.now;
            f.p.ep[1].handle_datagram(now, t.remote, t.local, &t.payload);
            f.p.drain(B);
            twin.handle_datagram(now, t.remote, t.local, &t.payload);
            drain_twin(&mut twin, &mut dp);
        }
        f.p.run_until(until);
        if f.p.established(A).len() == 1 && f.p.established(B).len() == 1 && f.p.net.is_empty() {
            break;
        }
    }
    assert!(
        f.p.established(A).len() == 1 && f.p.established(B).len() == 1,
        "{}",
        f.dump()
    );
    assert_eq!(f.p.tunnels(A).len(), 1, "{}", f.dump());
    // The twin holds what B holds.
    let b_sa = f.p.ep[1].ike_sas().next().map(|s| s.spis());
    assert_eq!(
        twin.ike_sas().next().map(|s| s.spis()),
        b_sa,
        "twin's IKE SA"
    );
    let real = &f.p.dp[1];
    let inbound: HashMap<u32, Vec<u8>> = real
        .inbound
        .iter()
        .map(|(s, (_, k, _))| (*s, k.clone()))
        .collect();
    let outbound: HashMap<u32, Vec<u8>> = real
        .outbound
        .iter()
        .map(|(s, (_, k))| (*s, k.clone()))
        .collect();
    assert_eq!(dp.inbound, inbound, "twin's inbound SAs");
    assert_eq!(dp.outbound, outbound, "twin's outbound SAs");
    (twin, dp)
}

fn first_octets(v: &[Vec<u8>]) -> Vec<u8> {
    v.iter().map(|n| n[0]).collect()
}

fn mirrored(spis: (u32, u32)) -> (u32, u32) {
    (spis.1, spis.0)
}

fn child_established(f: &Field, s: Side, from: usize) -> Vec<(ChildId, (u32, u32))> {
    f.events(s, from)
        .iter()
        .filter_map(|e| match e {
            Event::ChildEstablished { child, spis, .. } => Some((*child, *spis)),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// strongSwan #1896
// ---------------------------------------------------------------------------------------------

/// strongSwan #1896: both ends rekey the CHILD_SA at once and our CREATE_CHILD_SA request is
/// lost. We answer the peer's rekey while ours is outstanding (a collision on our side only);
/// the peer's rekey completes; our retransmission reaches the peer after that, the peer answers
/// TEMPORARY_FAILURE and then deletes the old SA. strongSwan let the TEMPORARY_FAILURE reset the
/// old SA's state and never installed the outbound SA of the peer's rekey. We must take the
/// failure as "the peer's rekey replaced it", not retry, and switch to the peer's SA when the
/// DELETE arrives. The same with the DELETE first (espada's own order as the peer): then our
/// retransmission names an SA the peer has deleted and gets CHILD_SA_NOT_FOUND.
#[test]
fn strongswan_1896_simultaneous_rekey_our_request_lost_peer_answers_temporary_failure_then_deletes_old()
 {
    struct Case {
        what: &'static str,
        /// Hold the peer's DELETE of the old SA until its answer to our retransmission arrived.
        delete_after_answer: bool,
        answer: NotifyType,
    }
    let cases = [
        Case {
            what: "the report's order: TEMPORARY_FAILURE, then the DELETE",
            delete_after_answer: true,
            answer: NotifyType::TEMPORARY_FAILURE,
        },
        Case {
            what: "the DELETE before our retransmission",
            delete_after_answer: false,
            answer: NotifyType::CHILD_SA_NOT_FOUND,
        },
    ];
    for c in cases {
        let mut f = Field::standard(1896);
        f.establish();
        let (ea, eb, t0) = (f.p.events[0].len(), f.p.events[1].len(), f.p.t());
        let (child, old_in, old_out) = f.tunnel(A);
        f.rekey(A);
        f.rekey(B);
        let hold_delete = c.delete_after_answer;
        let mut rule = move |m: &Msg| match () {
            _ if m.is(A, CCSA, false) && m.nth == 1 => Verdict::Drop,
            _ if hold_delete && m.is(B, INFO, false) => Verdict::Hold,
            _ => Verdict::Pass,
        };
        let answered = f.drive_until(Duration::from_secs(3), &mut rule, &|f| {
            !f.exchange_failed(A, ea).is_empty()
        });
        assert!(
            answered,
            "{}: no answer to our retransmission\n{}",
            c.what,
            f.dump()
        );
        if c.delete_after_answer {
            assert!(
                f.held(|m| m.is(B, INFO, false)) >= 1,
                "{}: the DELETE was held",
                c.what
            );
            f.release(|m| m.is(B, INFO, false));
        }
        f.drive(Duration::from_secs(3), &mut pass);
        f.finish(c.what, 1, 0);

        // One rekey of ours, retransmitted once, answered with the expected error and not retried.
        assert_eq!(
            f.count(|m| m.is(A, CCSA, false) && m.nth == 1),
            1,
            "{}",
            c.what
        );
        assert_eq!(
            f.count(|m| m.is(A, CCSA, false) && m.nth == 2),
            1,
            "{}",
            c.what
        );
        assert_eq!(
            f.exchange_failed(A, ea),
            vec![(c.answer, true)],
            "{}",
            c.what
        );
        let (sa, sb) = (f.stats(A).clone(), f.stats(B).clone());
        assert_eq!(
            (sa.rekey_collisions, sb.rekey_collisions),
            (1, 0),
            "{}: the collision is ours only",
            c.what
        );
        let tf = u64::from(c.answer == NotifyType::TEMPORARY_FAILURE);
        assert_eq!(
            (sb.temporary_failure_sent, sa.temporary_failure_received),
            (tf, tf),
            "{}",
            c.what
        );
        assert_eq!(sb.child_sa_not_found_sent, 1 - tf, "{}", c.what);
        // The peer's rekey is the one that took effect, on both sides.
        let b_rekeys = f.rekeyed(B, eb);
        assert_eq!(b_rekeys.len(), 1, "{}: {b_rekeys:x?}", c.what);
        let new_b = b_rekeys[0].1;
        assert_eq!(
            f.rekeyed(A, ea),
            vec![((old_in, old_out), mirrored(new_b))],
            "{}",
            c.what
        );
        assert_eq!(
            f.tunnel(A),
            (child, new_b.1, new_b.0),
            "{}: our outbound is the peer's new SA",
            c.what
        );
        assert_eq!(
            f.actions_after(A, "install-out", t0),
            1,
            "{}: one outbound SA installed",
            c.what
        );
    }
}

// ---------------------------------------------------------------------------------------------
// strongSwan #1458
// ---------------------------------------------------------------------------------------------

/// strongSwan #1458: the peer's answer to our rekey and its DELETE arrive back to back, DELETE
/// first; strongSwan took it for "the peer deletes the SA we are rekeying" and removed the
/// tunnel. The situation arises in a collision: the peer sends its DELETE as soon as our answer
/// to its rekey arrives, while its answer to ours is still under way. When the peer wins
/// (our Ni is the lowest nonce) the DELETE names the old SA and our own SA arrives after its
/// predecessor is gone: it is redundant and we delete it. When we win (the peer's Ni is the
/// lowest) the DELETE names the peer's redundant SA, and ours replaces the old one.
#[test]
fn strongswan_1458_rekey_response_and_delete_of_old_sa_arrive_reordered() {
    struct Case {
        what: &'static str,
        /// First octets of [our Ni, our Nr], [the peer's Ni, its Nr].
        nonces: ([u8; 2], [u8; 2]),
        peer_wins: bool,
    }
    let cases = [
        Case {
            what: "the peer wins: its DELETE names the old SA",
            nonces: ([0x01, 0x90], [0xa0, 0x80]),
            peer_wins: true,
        },
        Case {
            what: "we win: its DELETE names its own redundant SA",
            nonces: ([0x90, 0xa0], [0x01, 0x80]),
            peer_wins: false,
        },
    ];
    for c in cases {
        let what = c.what;
        let mut f = Field::standard(1458);
        f.establish();
        let (ea, eb, t0) = (f.p.events[0].len(), f.p.events[1].len(), f.p.t());
        let (na, nb) = (f.drawn(A).len(), f.drawn(B).len());
        let (child, old_in, old_out) = f.tunnel(A);
        f.next_nonces(A, &c.nonces.0);
        f.next_nonces(B, &c.nonces.1);
        f.rekey(A);
        f.rekey(B);
        let mut rule = |m: &Msg| {
            if m.is(B, CCSA, true) || m.is(B, INFO, false) {
                Verdict::Hold
            } else {
                Verdict::Pass
            }
        };
        let both = f.drive_until(Duration::from_secs(1), &mut rule, &|f| {
            f.held(|m| m.is(B, CCSA, true)) == 1 && f.held(|m| m.is(B, INFO, false)) == 1
        });
        assert!(
            both,
            "{what}: the peer's answer and its DELETE\n{}",
            f.dump()
        );
        assert_eq!(first_octets(&f.drawn(A)[na..]), c.nonces.0, "{what}");
        assert_eq!(first_octets(&f.drawn(B)[nb..]), c.nonces.1, "{what}");
        // The DELETE first, the answer to our rekey right behind it.
        f.release(|m| m.is(B, INFO, false));
        f.release(|m| m.is(B, CCSA, true));
        f.drive(Duration::from_secs(3), &mut pass);
        f.finish(what, 1, 0);

        assert_eq!(
            (f.stats(A).rekey_collisions, f.stats(B).rekey_collisions),
            (1, 1),
            "{what}"
        );
        for s in [A, B] {
            let st = f.stats(s);
            assert_eq!(
                (st.temporary_failure_sent, st.child_sa_not_found_sent),
                (0, 0),
                "{what}: {s:?}"
            );
        }
        // Each side answered the other's rekey, then completed its own; the winner's survives.
        let (a_rekeys, b_rekeys) = (f.rekeyed(A, ea), f.rekeyed(B, eb));
        if c.peer_wins {
            assert_eq!(b_rekeys.len(), 2, "{what}: {b_rekeys:x?}");
            let new_b = b_rekeys[1].1;
            assert_eq!(
                a_rekeys,
                vec![((old_in, old_out), mirrored(new_b))],
                "{what}: only the peer's took effect"
            );
            assert_eq!(f.tunnel(A), (child, new_b.1, new_b.0), "{what}");
            assert_eq!(
                f.actions_after(A, "install-out", t0),
                1,
                "{what}: ours never got an outbound SA"
            );
        } else {
            assert_eq!(a_rekeys.len(), 2, "{what}: {a_rekeys:x?}");
            let (old, new_a) = a_rekeys[1];
            assert_eq!(old, (old_in, old_out), "{what}");
            assert_eq!(
                b_rekeys.len(),
                1,
                "{what}: only ours took effect: {b_rekeys:x?}"
            );
            assert_eq!(b_rekeys[0].1, mirrored(new_a), "{what}");
            assert_eq!(f.tunnel(A), (child, new_a.0, new_a.1), "{what}");
            assert_eq!(
                f.actions_after(A, "install-out", t0),
                2,
                "{what}: the peer's on standby, ours"
            );
        }
        // One DELETE each: the winner's of the old SA, the loser's of its redundant one.
        assert_eq!(f.count(|m| m.is(A, INFO, false) && m.nth == 1), 1, "{what}");
        assert_eq!(f.count(|m| m.is(B, INFO, false) && m.nth == 1), 1, "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// strongSwan #2477
// ---------------------------------------------------------------------------------------------

/// strongSwan #2477: in a CHILD_SA rekey collision the peer refuses our rekey with
/// TS_UNACCEPTABLE (it was a Cisco ASA with specific selectors, strongSwan proposed any/any)
/// while its own rekey succeeds; strongSwan then never installed the outbound SA.
///
/// How the refusal is produced: two espada ends can never refuse each other's rekey for its
/// selectors, because a CHILD_SA's selectors are a subset of both policies and narrowing is an
/// intersection. So the peer's view of the selectors is made to differ from ours, as between
/// strongSwan and the ASA: B answers IKE_AUTH under the policy "A's side is 198.19.1.0/25", and
/// our CHILD_SA is 198.19.1.0/25 === 198.19.2.0/24. Then B is replaced by its twin, which saw
/// the same IKE_SA_INIT and IKE_AUTH requests under the policy "A's side is 198.19.1.128/25":
/// same IKE SA, same keys, same CHILD_SA SPIs, but its CHILD_SA covers 198.19.1.128/25. Our
/// rekey proposes 198.19.1.0/25, which the twin refuses; its rekey proposes 198.19.1.128/25,
/// which we narrow to itself and accept.
#[test]
fn strongswan_2477_collision_our_rekey_refused_ts_unacceptable_peer_rekey_succeeds() {
    let mut b = peer(B);
    b.remote_ts = vec![net("198.19.1.0/25")];
    let mut twin_peer = peer(B);
    twin_peer.remote_ts = vec![net("198.19.1.128/25")];
    let mut f = Field::new(2477, peer(A), b, endpoint_config());
    let twin_ctl = Ctl::default();
    let (twin, _) = establish_with_twin(&mut f, twin_peer, &twin_ctl);
    f.p.ep[1] = twin;
    f.nonces[1] = twin_ctl;
    let selectors = |f: &Field, s: Side| {
        let c = f.p.ep[s.idx()]
            .ike_sas()
            .flat_map(|sa| sa.children().iter())
            .find(|c| c.is_current())
            .cloned();
        c.map(|c| (c.local_ts, c.remote_ts)).unwrap_or_default()
    };
    assert_eq!(
        selectors(&f, A),
        (vec![net("198.19.1.0/25")], vec![net("198.19.2.0/24")])
    );
    assert_eq!(
        selectors(&f, B),
        (vec![net("198.19.2.0/24")], vec![net("198.19.1.128/25")])
    );
    f.drive(ms(300), &mut pass);
    f.assert_clean("the twin takes over");
    f.p.check_converged()
        .unwrap_or_else(|e| panic!("{e}\n{}", f.dump()));

    let (ea, eb, t0) = (f.p.events[0].len(), f.p.events[1].len(), f.p.t());
    let (child, old_in, old_out) = f.tunnel(A);
    f.rekey(A);
    f.rekey(B);
    f.drive(Duration::from_secs(3), &mut pass);
    f.finish("TS_UNACCEPTABLE in a collision", 1, 0);

    assert_eq!(
        f.exchange_failed(B, eb),
        vec![(NotifyType::TS_UNACCEPTABLE, false)],
        "the peer refused ours"
    );
    assert_eq!(
        f.exchange_failed(A, ea),
        vec![(NotifyType::TS_UNACCEPTABLE, true)]
    );
    assert_eq!(
        (f.stats(A).ts_unacceptable, f.stats(B).ts_unacceptable),
        (1, 1)
    );
    assert_eq!(
        (f.stats(A).rekey_collisions, f.stats(B).rekey_collisions),
        (1, 0)
    );
    assert_eq!(
        f.count(|m| m.is(A, CCSA, false) && m.nth == 1),
        1,
        "ours is not retried"
    );
    let b_rekeys = f.rekeyed(B, eb);
    assert_eq!(b_rekeys.len(), 1, "{b_rekeys:x?}");
    let new_b = b_rekeys[0].1;
    assert_eq!(f.rekeyed(A, ea), vec![((old_in, old_out), mirrored(new_b))]);
    assert_eq!(
        f.tunnel(A),
        (child, new_b.1, new_b.0),
        "our outbound is the peer's new SA"
    );
    assert_eq!(f.actions_after(A, "install-out", t0), 1);
    // The peer deleted the old SA; we deleted nothing.
    assert_eq!(f.count(|m| m.is(A, INFO, false)), 0);
    assert_eq!(f.count(|m| m.is(B, INFO, false) && m.nth == 1), 1);
    // Both now hold the peer's selectors.
    assert_eq!(
        selectors(&f, A),
        (vec![net("198.19.1.128/25")], vec![net("198.19.2.0/24")])
    );
    assert_eq!(
        selectors(&f, B),
        (vec![net("198.19.2.0/24")], vec![net("198.19.1.128/25")])
    );
}

// ---------------------------------------------------------------------------------------------
// strongSwan #2945
// ---------------------------------------------------------------------------------------------

/// strongSwan #2945 (discussion #2944, fixed by 84a5208): a (Windows) peer rekeys a CHILD_SA,
/// and before it deletes the old SA rekeys the same old SA a second time; strongSwan accepted
/// both and crashed when the first replacement was deleted. A second rekey that arrives before
/// any packet on the first replacement is accepted too (the peer may never have installed the
/// first); the replacement that carries traffic is used, the unused one is deleted, and the
/// tunnel ends with one successor. (Once the first replacement has carried traffic, a second
/// rekey of the old SA gets TEMPORARY_FAILURE: `superseded_replacement` in exchange/child.rs.)
///
/// espada never rekeys an SA twice, so the second request comes from a twin of B (see
/// [`establish_with_twin`]): B sends the first rekey R1 and installs its SA; the twin answers
/// nothing of R1 but consumes R1's message ID with an empty INFORMATIONAL request whose answer
/// is our answer to R1, then rekeys the old SA: R2, authentic, with the next message ID. B's
/// DELETE of the old SA is held until R2 is answered. B's DELETE carries that same message ID
/// (B never sent R2), so we take it for a retransmission of R2 and resend our answer (§2.1): the
/// peer never deletes the old SA in our eyes, and we delete it ourselves after
/// `delete_timeout`.
#[test]
fn strongswan_2945_peer_starts_two_rekeys_of_the_same_child_sa() {
    let mut config = endpoint_config();
    config.delete_timeout = Duration::from_secs(5);
    let mut f = Field::new(2945, peer(A), peer(B), config);
    let twin_ctl = Ctl::default();
    let (mut twin, mut twin_dp) = establish_with_twin(&mut f, peer(B), &twin_ctl);
    // B and its twin send on the first CHILD_SA (B would switch on our first packet).
    let (child_b, b_in, b_out) = f.tunnel(B);
    let ike_b = f.ike(B);
    let now = f.now();
    f.p.ep[1].inbound_traffic(now, b_in);
    f.p.drain(B);
    twin.inbound_traffic(now, b_in);
    drain_twin(&mut twin, &mut twin_dp);
    assert_eq!(twin_dp.switches, vec![(child_b, b_out)]);
    f.drive(ms(300), &mut pass);
    f.assert_clean("before the rekeys");

    let (ea, eb, t0) = (f.p.events[0].len(), f.p.events[1].len(), f.p.t());
    let (child, old_in, old_out) = f.tunnel(A);
    // R1: B rekeys; its DELETE of the old SA is held.
    f.rekey(B);
    let mut hold_delete = |m: &Msg| {
        if m.is(B, INFO, false) {
            Verdict::Hold
        } else {
            Verdict::Pass
        }
    };
    let done = f.drive_until(Duration::from_secs(1), &mut hold_delete, &|f| {
        f.held(|m| m.is(B, INFO, false)) == 1
    });
    assert!(done, "B completes R1\n{}", f.dump());
    let r1_answer = f
        .log
        .iter()
        .find(|(_, m, _, _)| m.is(A, CCSA, true) && m.nth == 1)
        .map(|(_, m, _, t)| (m.mid, t.clone()))
        .expect("our answer to R1");
    // R2 from the twin.
    twin_ctl.borrow_mut().burn = 1000;
    let now = f.now();
    twin.liveness(now, ike_b).unwrap();
    assert_eq!(
        drain_twin(&mut twin, &mut twin_dp).len(),
        1,
        "the twin's empty INFORMATIONAL"
    );
    let t = &r1_answer.1;
    twin.handle_datagram(now, t.remote, t.local, &t.payload);
    assert!(drain_twin(&mut twin, &mut twin_dp).is_empty());
    twin.rekey_child(now, child_b).unwrap();
    let r2 = drain_twin(&mut twin, &mut twin_dp);
    let h = r2.first().and_then(header_of).expect("R2");
    assert_eq!(
        (r2.len(), h.exchange, h.message_id, h.is_response()),
        (1, CCSA, r1_answer.0 + 1, false)
    );
    f.inject(A, r2[0].clone());
    // Our answer to R2 is for the twin: it goes nowhere.
    let r2_mid = r1_answer.0 + 1;
    let mut rule = move |m: &Msg| match () {
        _ if m.is(B, INFO, false) => Verdict::Hold,
        _ if m.is(A, CCSA, true) && m.mid == r2_mid => Verdict::Drop,
        _ => Verdict::Pass,
    };
    // R2 arrives before any packet on R1's SA: the peer may never have installed that one,
    // so R2 is accepted as well and both replacements wait on standby (strongSwan's fix
    // 84a5208 likewise accepts the second rekey).
    let answered = f.drive_until(Duration::from_secs(1), &mut rule, &|f| {
        f.count(|m| m.is(A, CCSA, true) && m.mid == r2_mid) >= 1
    });
    assert!(answered, "R2 answered\n{}", f.dump());
    f.release(|m| m.is(B, INFO, false));
    // Long enough for our own DELETEs of the unused and the old SA: `delete_timeout` after
    // the peer could have given up retransmitting (`Retransmit::give_up_after`).
    let wait = f.p.ep[0].config().retransmit.give_up_after() + Duration::from_secs(7);
    f.drive(wait, &mut pass);
    f.finish("two rekeys of one SA", 1, 0);

    let sa = f.stats(A);
    assert_eq!(sa.temporary_failure_sent, 0, "R2 not refused");
    assert_eq!(
        sa.retransmitted_requests, 1,
        "B's DELETE answered from the cache"
    );
    assert_eq!(sa.rekey_collisions, 0);
    // B really uses R1's SA: its first packet activates it and R2's replacement, never used,
    // is deleted by us after `delete_timeout`. One successor, R1's, on both sides.
    let b_rekeys = f.rekeyed(B, eb);
    assert_eq!(b_rekeys.len(), 1, "{b_rekeys:x?}");
    let new_b = b_rekeys[0].1;
    let a_rekeys = f.rekeyed(A, ea);
    assert_eq!(a_rekeys.len(), 2, "R1 and R2 answered: {a_rekeys:x?}");
    assert_eq!(a_rekeys[0], ((old_in, old_out), mirrored(new_b)));
    assert_eq!(
        f.actions_after(A, "install-in", t0),
        2,
        "R1's and R2's inbound SAs"
    );
    assert_eq!(f.tunnel(A), (child, new_b.1, new_b.0));
    // We deleted R2's unused SA and the old SA ourselves (the peer's DELETE was overdue).
    assert_eq!(f.count(|m| m.is(A, INFO, false)), 2, "{}", f.dump());
}

// ---------------------------------------------------------------------------------------------
// libreswan #2184
// ---------------------------------------------------------------------------------------------

/// libreswan #2184: both ends create a CHILD_SA for the same selectors at once. Each end puts
/// the peer's CHILD_SA into the tunnel slot of its own request, and the nonce rule of §2.8.1
/// decides when its response arrives: the CHILD_SA created with the lowest nonce is redundant
/// and deleted by its creator. The end state is two tunnels (IKE_AUTH's and one new), one
/// CHILD_SA pair each, the same on both sides — for either winner.
#[test]
fn libreswan_2184_both_ends_create_the_same_child_sa_at_once() {
    // The winner, and the first octets of [A's Ni, A's Nr], [B's Ni, B's Nr].
    let cases: [(Side, [u8; 2], [u8; 2]); 2] = [
        (A, [0x90, 0xa0], [0x01, 0x80]),
        (B, [0x01, 0x90], [0xa0, 0x80]),
    ];
    for (winner, na, nb) in cases {
        let what = format!("{winner:?} wins");
        let loser = winner.other();
        let mut f = Field::standard(2184);
        f.establish();
        let first = [f.tunnel(A), f.tunnel(B)];
        let e = [f.p.events[0].len(), f.p.events[1].len()];
        f.next_nonces(A, &na);
        f.next_nonces(B, &nb);
        let now = f.now();
        let (ike_a, ike_b) = (f.ike(A), f.ike(B));
        let ids = [
            f.p.ep[0].create_child(now, ike_a).unwrap(),
            f.p.ep[1].create_child(now, ike_b).unwrap(),
        ];
        f.p.drain(A);
        f.p.drain(B);
        f.drive(Duration::from_secs(3), &mut pass);
        f.finish(&what, 2, 0);

        assert_eq!(
            (f.stats(A).rekey_collisions, f.stats(B).rekey_collisions),
            (1, 1),
            "{what}"
        );
        for s in [A, B] {
            let t = f.p.tunnels(s);
            assert!(
                t.contains(&first[s.idx()]),
                "{what}: {s:?} keeps the first tunnel: {t:x?}"
            );
            assert!(
                t.iter().any(|(c, _, _)| *c == ids[s.idx()]),
                "{what}: {s:?}'s new tunnel is its own slot: {t:x?}"
            );
        }
        // The winner reported the loser's CHILD_SA (answered) and then its own; the loser only
        // the winner's. The winner's own is the one both sides keep.
        let won = child_established(&f, winner, e[winner.idx()]);
        let lost = child_established(&f, loser, e[loser.idx()]);
        assert_eq!(won.len(), 2, "{what}: {won:x?}");
        assert_eq!(lost.len(), 1, "{what}: {lost:x?}");
        let (wid, wspis) = won[1];
        assert_eq!(wid, ids[winner.idx()], "{what}");
        assert_eq!(lost[0], (ids[loser.idx()], mirrored(wspis)), "{what}");
        let t = f.p.tunnels(winner);
        assert!(t.contains(&(wid, wspis.0, wspis.1)), "{what}: {t:x?}");
        // The loser deleted its redundant CHILD_SA; the winner deleted nothing.
        assert_eq!(
            f.count(|m| m.is(loser, INFO, false) && m.nth == 1),
            1,
            "{what}"
        );
        assert_eq!(f.count(|m| m.is(winner, INFO, false)), 0, "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// strongSwan #3050
// ---------------------------------------------------------------------------------------------

/// strongSwan #3050: the rekey's initiator sends on the new SA before anything else of it
/// reaches us. We are the responder of B's rekey: the inbound SA our answer announces is
/// installed before the answer leaves, so B's first packet on it decrypts; it arrives before
/// B's DELETE of the old SA (held here) and switches our outbound to the new SA.
#[test]
fn strongswan_3050_peer_sends_on_new_spi_before_our_response_reached_it() {
    let mut f = Field::standard(3050);
    f.establish();
    let ea = f.p.events[0].len();
    let (child, _, _) = f.tunnel(A);
    f.rekey(B);
    let mut rule = |m: &Msg| {
        if m.is(B, INFO, false) {
            Verdict::Hold
        } else {
            Verdict::Pass
        }
    };
    assert!(f.drive_until(
        Duration::from_secs(1),
        &mut rule,
        &|f| f.count(|m| m.is(A, CCSA, true)) == 1
    ));
    // Our answer is on the wire; the SA it announces is in our data plane, outbound on standby.
    let (_, (a_in, a_out)) = f.rekeyed(A, ea)[0];
    assert!(
        f.p.net
            .iter()
            .any(|(_, _, to, w)| *to == B && matches!(w, Wire::Ike(_))),
        "answer in flight"
    );
    assert!(f.p.dp[0].inbound.contains_key(&a_in) && f.p.dp[0].outbound.contains_key(&a_out));
    assert_ne!(f.p.dp[0].active.get(&child), Some(&a_out));
    let switched = f.drive_until(Duration::from_secs(1), &mut rule, &|f| {
        f.p.dp[0].active.get(&child) == Some(&a_out)
    });
    assert!(switched, "{}", f.dump());
    assert_eq!(
        f.held(|m| m.is(B, INFO, false)),
        1,
        "switched before the DELETE arrived"
    );
    assert!(
        f.p.dp[0].inbound[&a_in].2,
        "by a packet on the new inbound SA"
    );
    f.release(|m| m.is(B, INFO, false));
    f.drive(Duration::from_secs(3), &mut pass);
    f.finish("data on the new SA first", 1, 0);
    assert_eq!(f.tunnel(A), (child, a_in, a_out));
    assert_eq!(
        f.actions_after(A, &format!("switch {child:?} -> {a_out:08x}"), 0.0),
        1
    );
}

/// The mirror of strongSwan #3050: a responder that switches to the new SA as soon as it
/// answers (espada's responder waits for traffic or the DELETE; B's data plane is steered
/// here). As long as the answer arrives first nothing is lost. When the peer's data overtakes
/// the answer it arrives on an SPI we cannot have installed yet — the keys need the peer's
/// nonce — and only those packets are lost.
#[test]
fn strongswan_3050_mirror_peer_switching_on_its_response_loses_only_what_overtakes_it() {
    for (what, overtake) in [
        ("the answer arrives first", false),
        ("data overtakes the answer by 20 ms", true),
    ] {
        let mut f = Field::standard(3051);
        f.establish();
        let eb = f.p.events[1].len();
        let (child_b, _, _) = f.tunnel(B);
        f.rekey(A);
        let mut rule = move |m: &Msg| {
            if overtake && m.is(B, CCSA, true) {
                Verdict::Hold
            } else {
                Verdict::Pass
            }
        };
        assert!(f.drive_until(Duration::from_secs(1), &mut rule, &|f| {
            f.count(|m| m.is(B, CCSA, true)) == 1
        }));
        let (_, (_, b_out)) = f.rekeyed(B, eb)[0];
        assert!(
            f.p.dp[1].outbound.contains_key(&b_out),
            "{what}: standby outbound"
        );
        f.p.dp[1].active.insert(child_b, b_out);
        if overtake {
            f.drive(ms(20), &mut rule);
            f.release(|m| m.is(B, CCSA, true));
        }
        f.drive(Duration::from_secs(3), &mut pass);
        let early = format!("A data on uninstalled SPI {b_out:08x}");
        let lost = f.p.violations.iter().filter(|v| v.0 == early).count() as u64;
        if overtake {
            assert!((1..=6).contains(&lost), "{what}: {lost} lost\n{}", f.dump());
        } else {
            assert_eq!(lost, 0, "{what}");
        }
        f.p.violations.retain(|v| v.0 != early);
        f.finish(what, 1, lost);
    }
}

// ---------------------------------------------------------------------------------------------
// OpenIKED PR 83
// ---------------------------------------------------------------------------------------------

/// What a simultaneous CHILD_SA rekey did.
struct TieBreak {
    /// A's Ni and B's Nr (A's exchange), B's Ni and A's Nr (B's exchange).
    nonces: [Vec<u8>; 4],
    /// The inbound SPIs the receiver retired when the other side's DELETE arrived.
    retired_on_delete_from: [BTreeSet<u32>; 2],
    /// Each side's SPIs before; A's exchange's SA at B; B's exchange's SA at A.
    old: [(u32, u32); 2],
    xa_at_b: (u32, u32),
    xb_at_a: (u32, u32),
    /// The SPIs both sides ended with (A's view).
    survivor_at_a: (u32, u32),
}

impl TieBreak {
    /// §2.8.1: the exchange with the lowest of the four nonces made the redundant SA.
    fn a_exchange_loses(&self) -> bool {
        let [a_ni, b_nr, b_ni, a_nr] = &self.nonces;
        a_ni.min(b_nr) < b_ni.min(a_nr)
    }

    /// Which of the four the lowest is (0..4, in the order of `nonces`).
    fn lowest(&self) -> usize {
        (0..4).min_by_key(|i| &self.nonces[*i]).unwrap_or(0)
    }

    /// The SA with the lowest nonce was deleted by its creator, the other survives on both
    /// sides, and the winner deleted the old SA.
    fn check(&self, what: &str) {
        let one = |s: u32| BTreeSet::from([s]);
        if self.a_exchange_loses() {
            assert_eq!(
                self.retired_on_delete_from[0],
                one(self.xa_at_b.0),
                "{what}: A deletes its own SA"
            );
            assert_eq!(
                self.retired_on_delete_from[1],
                one(self.old[0].0),
                "{what}: B deletes the old SA"
            );
            assert_eq!(self.survivor_at_a, self.xb_at_a, "{what}: B's SA survives");
        } else {
            assert_eq!(
                self.retired_on_delete_from[1],
                one(self.xb_at_a.0),
                "{what}: B deletes its own SA"
            );
            assert_eq!(
                self.retired_on_delete_from[0],
                one(self.old[1].0),
                "{what}: A deletes the old SA"
            );
            assert_eq!(
                self.survivor_at_a,
                mirrored(self.xa_at_b),
                "{what}: A's SA survives"
            );
        }
    }
}

/// Both ends rekey the CHILD_SA at the same instant; `forced` sets the first octets of the four
/// nonces (in [`TieBreak::nonces`] order). The DELETEs are delivered one at a time to see which
/// SA each names.
fn tie_break(seed: u64, forced: Option<[u8; 4]>) -> TieBreak {
    let what = format!("seed {seed}, nonces {forced:x?}");
    let mut f = Field::standard(seed);
    f.establish();
    let (ea, eb) = (f.p.events[0].len(), f.p.events[1].len());
    let (na, nb) = (f.drawn(A).len(), f.drawn(B).len());
    let old = [f.tunnel(A), f.tunnel(B)].map(|(_, i, o)| (i, o));
    if let Some([a_ni, b_nr, b_ni, a_nr]) = forced {
        f.next_nonces(A, &[a_ni, a_nr]);
        f.next_nonces(B, &[b_ni, b_nr]);
    }
    f.rekey(A);
    f.rekey(B);
    let mut hold = |m: &Msg| {
        if m.exchange == INFO && !m.response {
            Verdict::Hold
        } else {
            Verdict::Pass
        }
    };
    let both = f.drive_until(Duration::from_secs(2), &mut hold, &|f| {
        f.held(|m| m.is(A, INFO, false)) == 1 && f.held(|m| m.is(B, INFO, false)) == 1
    });
    assert!(both, "{what}: one DELETE from each side\n{}", f.dump());
    let (da, db) = (f.drawn(A), f.drawn(B));
    assert_eq!(
        (da.len() - na, db.len() - nb),
        (2, 2),
        "{what}: two nonces each"
    );
    let nonces = [
        da[na].clone(),
        db[nb + 1].clone(),
        db[nb].clone(),
        da[na + 1].clone(),
    ];
    if let Some(o) = forced {
        assert_eq!(first_octets(&nonces), o, "{what}");
    }
    let xa_at_b = f.rekeyed(B, eb)[0].1;
    let xb_at_a = f.rekeyed(A, ea)[0].1;
    let mut retired_on_delete_from: [BTreeSet<u32>; 2] = Default::default();
    for from in [A, B] {
        let to = from.other().idx();
        let before: BTreeSet<u32> = f.p.dp[to].retired.keys().copied().collect();
        f.release(|m| m.is(from, INFO, false));
        f.drive(ms(10), &mut hold);
        retired_on_delete_from[from.idx()] = f.p.dp[to]
            .retired
            .keys()
            .copied()
            .filter(|s| !before.contains(s))
            .collect();
    }
    f.drive(Duration::from_secs(3), &mut pass);
    f.finish(&what, 1, 0);
    assert_eq!(
        (f.stats(A).rekey_collisions, f.stats(B).rekey_collisions),
        (1, 1),
        "{what}"
    );
    let (_, i, o) = f.tunnel(A);
    TieBreak {
        nonces,
        retired_on_delete_from,
        old,
        xa_at_b,
        xb_at_a,
        survivor_at_a: (i, o),
    }
}

/// OpenIKED PR 83 (the §2.8.1 tie-break compared the wrong nonces): for each of the four places
/// the lowest nonce can be — our Ni, the peer's Nr in our exchange, the peer's Ni, our Nr in the
/// peer's exchange — a simultaneous rekey deletes the SA of the exchange that holds it, by its
/// creator, and keeps the other on both sides.
#[test]
fn openiked_pr83_tie_break_over_all_four_nonce_orderings() {
    let places = [
        "our Ni",
        "the peer's Nr in our exchange",
        "the peer's Ni",
        "our Nr in the peer's exchange",
    ];
    for (lowest, place) in places.iter().enumerate() {
        let mut forced = [0x80, 0x90, 0xa0, 0xb0];
        forced[lowest] = 0x01;
        let r = tie_break(83, Some(forced));
        assert_eq!(r.lowest(), lowest, "{place}");
        assert_eq!(r.a_exchange_loses(), lowest < 2, "{place}");
        r.check(&format!("lowest is {place}"));
    }
}

/// The same over seeds with the generator's own nonces, read back from it: the rule holds and
/// both ends agree on the survivor whatever the nonces, and the seeds cover all four places of
/// the lowest nonce.
#[test]
fn openiked_pr83_tie_break_over_seeds_both_ends_agree_on_the_survivor() {
    let mut places = [0u32; 4];
    for seed in 0..32 {
        let r = tie_break(seed, None);
        places[r.lowest()] += 1;
        r.check(&format!("seed {seed}"));
    }
    assert!(
        places.iter().all(|n| *n > 0),
        "every place of the lowest nonce occurs: {places:?}"
    );
}

/// A variant of strongSwan #2945 in which the confused peer never uses the first replacement:
/// it sends R1, takes our answer, then rekeys the same old SA again (R2, the next message ID)
/// and keeps retrying after our TEMPORARY_FAILURE, still sending on the old SA. A responder
/// must still end with a working tunnel: strongSwan's fix (84a5208) makes the second rekey the
/// successor; refusing it is allowed, but then the first replacement must not become our
/// outbound SA, since the peer never installed it.
///
/// The peer here is B with a twin (see [`establish_with_twin`]): the twin sends R1 and is then
/// silent; B consumes R1's message ID with an empty INFORMATIONAL request (lost on the way)
/// whose answer is our answer to R1, then rekeys.
#[test]
fn strongswan_2945_variant_peer_never_uses_the_first_replacement() {
    let mut config = endpoint_config();
    config.delete_timeout = Duration::from_secs(5);
    let mut f = Field::new(2946, peer(A), peer(B), config);
    let twin_ctl = Ctl::default();
    let (mut twin, mut twin_dp) = establish_with_twin(&mut f, peer(B), &twin_ctl);
    let (child_b, b_in, _) = f.tunnel(B);
    let ike_b = f.ike(B);
    let now = f.now();
    f.p.ep[1].inbound_traffic(now, b_in);
    f.p.drain(B);
    twin.inbound_traffic(now, b_in);
    drain_twin(&mut twin, &mut twin_dp);
    f.drive(ms(300), &mut pass);
    f.assert_clean("before the rekeys");
    let (ea, t0) = (f.p.events[0].len(), f.p.t());
    // R1 from the twin (its generator moved on, so B's R2 differs from it).
    let now = f.now();
    twin_ctl.borrow_mut().burn = 1000;
    twin.rekey_child(now, child_b).unwrap();
    let r1 = drain_twin(&mut twin, &mut twin_dp);
    assert_eq!(r1.len(), 1, "R1");
    f.inject(A, r1[0].clone());
    f.p.ep[1].liveness(now, ike_b).unwrap();
    f.p.drain(B);
    let mut rule = |m: &Msg| {
        if m.is(B, INFO, false) && m.mid == 0 {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    };
    let answered = f.drive_until(Duration::from_secs(1), &mut rule, &|f| {
        !f.p.ep[1].ike_sas().any(|s| s.has_pending_request())
    });
    assert!(answered, "B has our answer to R1\n{}", f.dump());
    assert_eq!(f.rekeyed(A, ea).len(), 1, "we answered R1");
    // R2, retried after each TEMPORARY_FAILURE.
    let now = f.now();
    f.p.ep[1].rekey_child(now, child_b).unwrap();
    f.p.drain(B);
    f.drive(Duration::from_secs(12), &mut rule);
    assert!(
        f.stats(A).temporary_failure_sent >= 1 || f.rekeyed(A, ea).len() == 2,
        "R2 answered"
    );
    assert!(
        f.actions_after(A, "install-in", t0) <= 2,
        "at most the two replacements"
    );
    f.finish("the peer never uses the first replacement", 1, 0);
}
