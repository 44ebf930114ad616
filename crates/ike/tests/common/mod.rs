//! Test harness: two espada IKE endpoints over a simulated network, each with a model of the
//! data plane that applies the endpoint's actions and checks the invariants of issue
//! "[1 of 5]" at every step (quinn's `tests/util.rs` + strongSwan's exchange_test_helper).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use espada_ike::auth::Authenticator;
use espada_ike::config::{Encapsulation, EndpointConfig, Identity, PeerConfig, Retransmit};
use espada_ike::exchange::{Action, ChildId, Endpoint, Event, IkeSaId, RandomSpis, Transmit};
use espada_ike::proposal::{EspProposal, IkeProposal};
use espada_ike::rng::{Random, TestRandom};
use espada_ike::secret::Secret;
use espada_ike::ts;

pub const A_ADDR: &str = "198.18.0.1";
pub const B_ADDR: &str = "198.18.0.2";

/// Which side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
    pub fn idx(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

pub fn peer_config(side: Side, psk: &str, ike: &str, esp: &str) -> PeerConfig {
    let (l, r, lid, rid, lnet, rnet) = match side {
        Side::A => (
            A_ADDR,
            B_ADDR,
            "a.example",
            "b.example",
            "198.19.1.0",
            "198.19.2.0",
        ),
        Side::B => (
            B_ADDR,
            A_ADDR,
            "b.example",
            "a.example",
            "198.19.2.0",
            "198.19.1.0",
        ),
    };
    PeerConfig {
        name: format!("to-{}", if side == Side::A { "b" } else { "a" }),
        local_addr: l.parse().unwrap(),
        remote_addr: Some(r.parse().unwrap()),
        local_id: Identity::Fqdn(lid.into()),
        remote_id: Identity::Fqdn(rid.into()),
        auth: Authenticator::Psk(Secret::from_slice(psk.as_bytes())),
        ike_proposals: vec![IkeProposal::parse(ike).unwrap()],
        esp_proposals: vec![EspProposal::parse(esp).unwrap()],
        local_ts: vec![ts::prefix(lnet.parse().unwrap(), 24)],
        remote_ts: vec![ts::prefix(rnet.parse().unwrap(), 24)],
        encapsulation: Encapsulation::Auto,
        fragmentation: true,
    }
}

pub fn endpoint_config() -> EndpointConfig {
    EndpointConfig {
        retransmit: Retransmit {
            base: Duration::from_millis(500),
            factor: 2.0,
            max_wait: Duration::from_secs(4),
            tries: 6,
        },
        initial_child_activation: Duration::from_secs(3600),
        ..EndpointConfig::default()
    }
}

/// The data plane of one side as the invariants see it.
#[derive(Default, Debug)]
pub struct DataPlane {
    /// Inbound SPI → (tunnel, key).
    pub inbound: HashMap<u32, (ChildId, Vec<u8>, bool)>,
    /// Retired inbound SPIs with the time they were retired.
    pub retired: HashMap<u32, (ChildId, Vec<u8>, Instant)>,
    /// Outbound SPI → (tunnel, key).
    pub outbound: HashMap<u32, (ChildId, Vec<u8>)>,
    /// Tunnel → active outbound SPI.
    pub active: BTreeMap<ChildId, u32>,
    /// Inbound SPIs whose first packet is to be reported.
    pub report: HashMap<u32, bool>,
    pub packets_received: u64,
    pub switches: u64,
}

/// A violated invariant.
#[derive(Debug)]
pub struct Violation(pub String);

/// A data packet in flight.
#[derive(Clone, Debug)]
pub struct DataPacket {
    pub spi: u32,
    pub key: Vec<u8>,
    pub seq: u64,
    pub tunnel: ChildId,
}

/// A datagram in flight.
#[derive(Clone, Debug)]
pub enum Wire {
    Ike(Transmit),
    Data(DataPacket),
}

/// Network faults.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Probability (0..1) that an IKE datagram is dropped.
    pub drop: f64,
    /// Probability that one is duplicated.
    pub dup: f64,
    /// Maximum extra delay (uniform); reordering follows from it.
    pub jitter: Duration,
    /// Probability that a data packet is dropped (data loss is then expected and not counted).
    pub data_drop: f64,
}

pub struct Pair {
    pub now: Instant,
    pub start: Instant,
    pub ep: [Endpoint; 2],
    pub dp: [DataPlane; 2],
    /// (delivery time, sequence, destination, datagram)
    pub net: Vec<(Instant, u64, Side, Wire)>,
    pub seq: u64,
    pub rng: TestRandom,
    pub faults: Faults,
    pub delay: Duration,
    pub grace: Duration,
    pub events: [Vec<Event>; 2],
    pub trace: Vec<String>,
    pub violations: Vec<Violation>,
    pub data_sent: u64,
    pub data_lost_to_faults: u64,
    pub ike_delivered: u64,
}

impl Pair {
    pub fn new(seed: u64, a: PeerConfig, b: PeerConfig, config: EndpointConfig) -> Pair {
        let now = Instant::now();
        let ep_a = Endpoint::new(
            config.clone(),
            vec![a],
            Box::new(TestRandom::new(seed ^ 0xa)),
            Box::new(RandomSpis::default()),
        );
        let ep_b = Endpoint::new(
            config,
            vec![b],
            Box::new(TestRandom::new(seed ^ 0xb)),
            Box::new(RandomSpis::default()),
        );
        Pair {
            now,
            start: now,
            ep: [ep_a, ep_b],
            dp: [DataPlane::default(), DataPlane::default()],
            net: Vec::new(),
            seq: 0,
            rng: TestRandom::new(seed),
            faults: Faults::default(),
            delay: Duration::from_millis(5),
            grace: Duration::from_secs(10),
            events: [Vec::new(), Vec::new()],
            trace: Vec::new(),
            violations: Vec::new(),
            data_sent: 0,
            data_lost_to_faults: 0,
            ike_delivered: 0,
        }
    }

    /// The default pair: PSK, AES-256-GCM / PRF-SHA384 / ECP-384, ESP AES-256-GCM + MODP-2048 PFS.
    pub fn standard(seed: u64) -> Pair {
        let ike = "aes128gcm16-prfsha256-x25519";
        let esp = "aes128gcm16-x25519";
        Pair::new(
            seed,
            peer_config(Side::A, "psk-espada", ike, esp),
            peer_config(Side::B, "psk-espada", ike, esp),
            endpoint_config(),
        )
    }

    fn uniform(&mut self) -> f64 {
        f64::from(self.rng.next_u32()) / f64::from(u32::MAX)
    }

    pub fn t(&self) -> f64 {
        self.now.duration_since(self.start).as_secs_f64()
    }

    fn log(&mut self, s: String) {
        let line = format!("{:9.3} {s}", self.t());
        self.trace.push(line);
    }

    fn violation(&mut self, s: String) {
        self.log(format!("VIOLATION {s}"));
        self.violations.push(Violation(s));
    }

    fn send(&mut self, to: Side, w: Wire, ike: bool) {
        if ike {
            if self.uniform() < self.faults.drop {
                self.log(format!("drop IKE to {to:?}"));
                return;
            }
        } else if self.uniform() < self.faults.data_drop {
            self.data_lost_to_faults += 1;
            return;
        }
        let copies = if ike && self.uniform() < self.faults.dup {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let extra = self.faults.jitter.mul_f64(self.uniform());
            self.seq += 1;
            self.net
                .push((self.now + self.delay + extra, self.seq, to, w.clone()));
        }
    }

    /// Drains one endpoint's outputs: actions first (applied to the data plane model), then
    /// transmits onto the network, then events.
    pub fn drain(&mut self, side: Side) {
        while let Some(a) = self.ep[side.idx()].poll_action() {
            self.apply(side, a);
        }
        while let Some(t) = self.ep[side.idx()].poll_transmit() {
            let body = if t.local.port() == 4500 {
                &t.payload[4..]
            } else {
                &t.payload[..]
            };
            let h = espada_ike::msgs::Header::parse(body).ok();
            let what = h
                .map(|h| {
                    format!(
                        "{:?} mid {} {} spi_i {:016x}",
                        h.exchange,
                        h.message_id,
                        if h.is_response() {
                            "response"
                        } else {
                            "request"
                        },
                        h.spi_i
                    )
                })
                .unwrap_or_default();
            self.log(format!("{side:?} sends {what}"));
            self.send(side.other(), Wire::Ike(t), true);
        }
        while let Some(e) = self.ep[side.idx()].poll_event() {
            self.log(format!("{side:?} event {e:?}"));
            self.events[side.idx()].push(e);
        }
    }

    fn apply(&mut self, side: Side, a: Action) {
        self.log(format!("{side:?} action {}", describe(&a)));
        let peer = side.other().idx();
        let dp = &mut self.dp[side.idx()];
        match a {
            Action::InstallInbound(p) => {
                if dp.inbound.contains_key(&p.spi) || dp.retired.contains_key(&p.spi) {
                    return self.violation(format!(
                        "{side:?} inbound SPI {:08x} installed twice",
                        p.spi
                    ));
                }
                dp.report.insert(p.spi, p.report_first_packet);
                dp.inbound
                    .insert(p.spi, (p.child, p.keys.expose().to_vec(), false));
            }
            Action::InstallOutbound(p) => {
                if dp.outbound.contains_key(&p.spi) {
                    return self.violation(format!(
                        "{side:?} outbound SPI {:08x} installed twice",
                        p.spi
                    ));
                }
                dp.outbound
                    .insert(p.spi, (p.child, p.keys.expose().to_vec()));
            }
            Action::SwitchOutbound { child, spi } => {
                let Some((c, key)) = dp.outbound.get(&spi).cloned() else {
                    return self
                        .violation(format!("{side:?} switch to uninstalled outbound {spi:08x}"));
                };
                if c != child {
                    return self.violation(format!("{side:?} switch of {child:?} to SPI of {c:?}"));
                }
                dp.active.insert(child, spi);
                dp.switches += 1;
                // The peer must already decrypt what we now send (make-before-break).
                match self.dp[peer].inbound.get(&spi) {
                    Some((_, k, _)) if *k == key => {}
                    Some(_) => self.violation(format!(
                        "{side:?} switched to {spi:08x} but the peer's key differs"
                    )),
                    None => self.violation(format!(
                        "{side:?} switched to {spi:08x} which the peer has not installed"
                    )),
                }
            }
            Action::RetireInbound { child: _, spi } => match dp.inbound.remove(&spi) {
                Some((c, k, _)) => {
                    dp.retired.insert(spi, (c, k, self.now));
                }
                None => self.violation(format!("{side:?} retire of unknown inbound {spi:08x}")),
            },
            Action::RemoveOutbound { child, spi } => {
                if dp.outbound.remove(&spi).is_none() {
                    return self
                        .violation(format!("{side:?} remove of unknown outbound {spi:08x}"));
                }
                if dp.active.get(&child) == Some(&spi) {
                    dp.active.remove(&child);
                }
            }
        }
    }

    /// Sends one data packet on every active tunnel of `side`.
    pub fn send_data(&mut self, side: Side) {
        let list: Vec<(ChildId, u32)> = self.dp[side.idx()]
            .active
            .iter()
            .map(|(c, s)| (*c, *s))
            .collect();
        for (tunnel, spi) in list {
            let key = self.dp[side.idx()].outbound[&spi].1.clone();
            self.data_sent += 1;
            let seq = self.data_sent;
            self.send(
                side.other(),
                Wire::Data(DataPacket {
                    spi,
                    key,
                    seq,
                    tunnel,
                }),
                false,
            );
        }
    }

    fn receive_data(&mut self, side: Side, p: DataPacket) {
        let now = self.now;
        let grace = self.grace;
        let dp = &mut self.dp[side.idx()];
        let key = match dp.inbound.get_mut(&p.spi) {
            Some((_, k, seen)) => {
                let first = !*seen;
                *seen = true;
                if first && dp.report.get(&p.spi) == Some(&true) {
                    let k = k.clone();
                    self.ep[side.idx()].inbound_traffic(now, p.spi);
                    self.drain(side);
                    Some(k)
                } else {
                    Some(k.clone())
                }
            }
            None => match dp.retired.get(&p.spi) {
                Some((_, k, at)) if now.duration_since(*at) <= grace => Some(k.clone()),
                Some(_) => {
                    return self
                        .violation(format!("{side:?} data on {:08x} retired past grace", p.spi));
                }
                None => {
                    return self
                        .violation(format!("{side:?} data on uninstalled SPI {:08x}", p.spi));
                }
            },
        };
        if key.as_deref() != Some(p.key.as_slice()) {
            return self.violation(format!("{side:?} key mismatch on SPI {:08x}", p.spi));
        }
        self.dp[side.idx()].packets_received += 1;
    }

    /// Advances time to `until`, delivering datagrams and firing timers in order.
    pub fn run_until(&mut self, until: Instant) {
        let mut spins = 0u32;
        let mut last = self.now;
        loop {
            if self.now == last {
                spins += 1;
                if spins > 100_000 {
                    self.violation(format!(
                        "no progress at {:?}: a timer fires without effect",
                        self.now - self.start
                    ));
                    return;
                }
            } else {
                spins = 0;
                last = self.now;
            }
            let next_net = self.net.iter().map(|(t, s, _, _)| (*t, *s)).min();
            let next_timer = [self.ep[0].poll_timeout(), self.ep[1].poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let next = match (next_net, next_timer) {
                (Some((n, _)), Some(t)) => n.min(t),
                (Some((n, _)), None) => n,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if let Some(pos) = next_net.filter(|(t, _)| *t <= self.now).and_then(|(t, s)| {
                self.net
                    .iter()
                    .position(|(tt, ss, _, _)| *tt == t && *ss == s)
            }) {
                let (_, _, to, w) = self.net.remove(pos);
                match w {
                    Wire::Ike(t) => {
                        self.ike_delivered += 1;
                        let now = self.now;
                        self.ep[to.idx()].handle_datagram(now, t.remote, t.local, &t.payload);
                        self.drain(to);
                    }
                    Wire::Data(p) => self.receive_data(to, p),
                }
            } else {
                let now = self.now;
                for s in [Side::A, Side::B] {
                    if self.ep[s.idx()].poll_timeout().is_some_and(|t| t <= now) {
                        self.ep[s.idx()].handle_timeout(now);
                        self.drain(s);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs with data both ways every `every` for `d`.
    pub fn run_with_traffic(&mut self, d: Duration, every: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.send_data(Side::A);
            self.send_data(Side::B);
            let step = (self.now + every).min(end);
            self.run_until(step);
        }
    }

    pub fn initiate(&mut self, side: Side) -> IkeSaId {
        let now = self.now;
        let id = self.ep[side.idx()].initiate(now, 0).unwrap();
        self.drain(side);
        id
    }

    pub fn established(&self, side: Side) -> Vec<IkeSaId> {
        self.ep[side.idx()]
            .ike_sas()
            .filter(|s| s.is_established())
            .map(|s| s.id())
            .collect()
    }

    /// The tunnels (CHILD_SA lineages) with their current SA: (inbound, outbound).
    pub fn tunnels(&self, side: Side) -> Vec<(ChildId, u32, u32)> {
        let mut v: Vec<(ChildId, u32, u32)> = self.ep[side.idx()]
            .ike_sas()
            .flat_map(|s| s.children().iter())
            .filter(|c| c.is_current())
            .map(|c| (c.id, c.spi_in, c.spi_out))
            .collect();
        v.sort();
        v
    }

    pub fn dump(&self) -> String {
        let tail = self.trace.len().saturating_sub(400);
        self.trace[tail..].join("\n")
    }

    /// Converged: one established IKE SA each, exactly one CHILD_SA pair each with mirrored
    /// SPIs, active on both sides, nothing in flight.
    pub fn check_converged(&self) -> Result<(), String> {
        let ta = self.tunnels(Side::A);
        let tb = self.tunnels(Side::B);
        if self.established(Side::A).len() != 1 || self.established(Side::B).len() != 1 {
            return Err(format!(
                "IKE SAs: A {:?} B {:?}",
                self.established(Side::A),
                self.established(Side::B)
            ));
        }
        let total_children: usize = self
            .ep
            .iter()
            .map(|e| e.ike_sas().map(|s| s.children().len()).sum::<usize>())
            .sum();
        if ta.len() != 1 || tb.len() != 1 || total_children != 2 {
            return Err(format!(
                "CHILD_SAs: A {ta:x?} B {tb:x?} (all: {total_children})"
            ));
        }
        if ta[0].1 != tb[0].2 || ta[0].2 != tb[0].1 {
            return Err(format!("SPIs not mirrored: A {ta:x?} B {tb:x?}"));
        }
        for s in [Side::A, Side::B] {
            let (c, _, out) = self.tunnels(s)[0];
            if self.dp[s.idx()].active.get(&c) != Some(&out) {
                return Err(format!(
                    "{s:?} does not send on its current SA {out:08x}: {:x?}",
                    self.dp[s.idx()].active
                ));
            }
            if self.dp[s.idx()].active.len() != 1
                || self.dp[s.idx()].outbound.len() != 1
                || self.dp[s.idx()].inbound.len() != 1
            {
                return Err(format!(
                    "{s:?} data plane not clean: {:x?}",
                    self.dp[s.idx()]
                ));
            }
        }
        Ok(())
    }
}

pub fn describe(a: &Action) -> String {
    match a {
        Action::InstallInbound(p) => format!(
            "install-in {:08x} {:?}{}",
            p.spi,
            p.child,
            if p.report_first_packet {
                " (report)"
            } else {
                ""
            }
        ),
        Action::InstallOutbound(p) => format!("install-out {:08x} {:?}", p.spi, p.child),
        Action::SwitchOutbound { child, spi } => format!("switch {child:?} -> {spi:08x}"),
        Action::RetireInbound { child, spi } => format!("retire-in {spi:08x} {child:?}"),
        Action::RemoveOutbound { child, spi } => format!("remove-out {spi:08x} {child:?}"),
    }
}

pub fn addr(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(s.parse::<IpAddr>().unwrap(), port)
}
