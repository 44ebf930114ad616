//! Behaviour tests of the exchanges (RFC 7296 §1–§2, RFC 7383, RFC 3948): each test drives
//! espada endpoints over a simulated network ([`World`]) or feeds one endpoint crafted
//! datagrams, and asserts what can be observed from outside — events, counters, the datagrams
//! sent and the data-plane actions.
//!
//! [`World`] is a small network of endpoints (routed by destination address) with a tap that
//! may drop, delay, duplicate or rewrite every datagram (black holes, NAT, reordering), and a
//! data-plane model per endpoint that applies the actions and records violations
//! (an SPI installed twice, a switch to an SA the peer cannot decrypt, a removal of something
//! never installed).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{A_ADDR, B_ADDR, Side, addr, endpoint_config, peer_config};
use espada_ike::auth::{Authenticator, SignedOctets};
use espada_ike::config::{Encapsulation, EndpointConfig, Identity, PeerConfig, Retransmit};
use espada_ike::crypto::aead::SkAead;
use espada_ike::crypto::dh::{DhAlg, DhPrivate};
use espada_ike::crypto::keys::IkeSaKeys;
use espada_ike::crypto::prf::PrfAlg;
use espada_ike::exchange::{
    Action, ChildId, ChildSaParams, DeleteReason, Endpoint, Event, IkeSaId, RandomSpis, Transmit,
};
use espada_ike::msgs::{
    DhGroup, ExchangeType, Header, KePayload, Message, Nonce, Notify, NotifyType, Payload,
    PayloadType, TrafficSelector, TrafficSelectors, TransformType, protect,
};
use espada_ike::proposal::{self, Cipher, EspProposal, IkeProposal};
use espada_ike::rng::TestRandom;
use espada_ike::secret::Secret;
use espada_ike::ts;

// ---------------------------------------------------------------------------------------------
// The simulated network
// ---------------------------------------------------------------------------------------------

/// One inbound SA of the data-plane model.
#[derive(Debug)]
struct InSa {
    key: Vec<u8>,
    report: bool,
    seen: bool,
}

/// What the data plane of one endpoint holds, built from its actions.
#[derive(Debug, Default)]
struct Dp {
    inbound: HashMap<u32, InSa>,
    retired: HashSet<u32>,
    outbound: HashMap<u32, (ChildId, Vec<u8>)>,
    active: BTreeMap<ChildId, u32>,
}

/// One endpoint of the world and everything it did, with times since the start.
struct Node {
    ep: Endpoint,
    addrs: Vec<IpAddr>,
    dp: Dp,
    sent: Vec<(Duration, Transmit)>,
    received: Vec<(Duration, Transmit)>,
    actions: Vec<(Duration, Action)>,
    events: Vec<(Duration, Event)>,
}

/// Decides the fate of each datagram an endpoint sent: the copies to deliver, each with an
/// extra delay (none: dropped). Arguments: time, sending node, datagram.
type Tap = Box<dyn FnMut(Duration, usize, Transmit) -> Vec<(Duration, Transmit)>>;

fn pass() -> Tap {
    Box::new(|_, _, t| vec![(Duration::ZERO, t)])
}

/// Endpoints over a network with a fixed delay, in simulated time.
struct World {
    start: Instant,
    now: Duration,
    nodes: Vec<Node>,
    /// (delivery time, sequence, datagram)
    queue: Vec<(Duration, u64, Transmit)>,
    seq: u64,
    delay: Duration,
    tap: Tap,
    /// Datagrams to an address no node has.
    lost: Vec<Transmit>,
    violations: Vec<String>,
}

const A: usize = 0;
const B: usize = 1;

fn endpoint(config: EndpointConfig, peers: Vec<PeerConfig>, seed: u64) -> Endpoint {
    Endpoint::new(
        config,
        peers,
        Box::new(TestRandom::new(seed)),
        Box::new(RandomSpis::default()),
    )
}

impl World {
    fn new() -> World {
        World {
            start: Instant::now(),
            now: Duration::ZERO,
            nodes: Vec::new(),
            queue: Vec::new(),
            seq: 0,
            delay: Duration::from_millis(5),
            tap: pass(),
            lost: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// A (198.18.0.1) and B (198.18.0.2) with these peer configurations.
    fn two(a: PeerConfig, b: PeerConfig, ca: EndpointConfig, cb: EndpointConfig) -> World {
        let mut w = World::new();
        w.add(endpoint(ca, vec![a], 0xa), A_ADDR);
        w.add(endpoint(cb, vec![b], 0xb), B_ADDR);
        w
    }

    /// The usual pair: PSK, AES-128-GCM / SHA-256 / X25519, ESP AES-128-GCM with X25519 PFS.
    fn standard() -> World {
        World::two(
            std_peer(Side::A),
            std_peer(Side::B),
            endpoint_config(),
            endpoint_config(),
        )
    }

    fn add(&mut self, ep: Endpoint, ip: &str) -> usize {
        self.nodes.push(Node {
            ep,
            addrs: vec![ip.parse().unwrap()],
            dp: Dp::default(),
            sent: Vec::new(),
            received: Vec::new(),
            actions: Vec::new(),
            events: Vec::new(),
        });
        self.nodes.len() - 1
    }

    fn instant(&self) -> Instant {
        self.start + self.now
    }

    fn violation(&mut self, s: String) {
        let line = format!("{:?}: {s}", self.now);
        self.violations.push(line);
    }

    fn apply(&mut self, i: usize, a: &Action) {
        let dp = &mut self.nodes[i].dp;
        let problem = match a {
            Action::InstallInbound(p) => {
                if dp.inbound.contains_key(&p.spi) || dp.retired.contains(&p.spi) {
                    Some(format!("node {i}: inbound {:08x} installed twice", p.spi))
                } else {
                    let key = p.keys.expose().to_vec();
                    let sa = InSa {
                        key,
                        report: p.report_first_packet,
                        seen: false,
                    };
                    dp.inbound.insert(p.spi, sa);
                    None
                }
            }
            Action::InstallOutbound(p) => {
                let key = p.keys.expose().to_vec();
                let twice = dp.outbound.insert(p.spi, (p.child, key)).is_some();
                twice.then(|| format!("node {i}: outbound {:08x} installed twice", p.spi))
            }
            Action::SwitchOutbound { child, spi } => match dp.outbound.get(spi).cloned() {
                None => Some(format!(
                    "node {i}: switch to uninstalled outbound {spi:08x}"
                )),
                Some((c, _)) if c != *child => {
                    Some(format!("node {i}: switch of {child:?} to {c:?}"))
                }
                Some((_, key)) => {
                    dp.active.insert(*child, *spi);
                    let decrypts = self.nodes.iter().enumerate().any(|(j, n)| {
                        j != i && n.dp.inbound.get(spi).is_some_and(|s| s.key == key)
                    });
                    (!decrypts).then(|| format!("node {i}: switched to {spi:08x}, no peer has it"))
                }
            },
            Action::RetireInbound { spi, .. } => match dp.inbound.remove(spi) {
                Some(_) => {
                    dp.retired.insert(*spi);
                    None
                }
                None => Some(format!("node {i}: retire of unknown inbound {spi:08x}")),
            },
            Action::RemoveOutbound { child, spi } => match dp.outbound.remove(spi) {
                Some(_) => {
                    if dp.active.get(child) == Some(spi) {
                        dp.active.remove(child);
                    }
                    None
                }
                None => Some(format!("node {i}: remove of unknown outbound {spi:08x}")),
            },
        };
        if let Some(p) = problem {
            self.violation(p);
        }
    }

    /// Takes node `i`'s outputs: actions (applied to its data plane), then datagrams (through
    /// the tap onto the network), then events.
    fn drain(&mut self, i: usize) {
        let t = self.now;
        while let Some(a) = self.nodes[i].ep.poll_action() {
            self.apply(i, &a);
            self.nodes[i].actions.push((t, a));
        }
        while let Some(x) = self.nodes[i].ep.poll_transmit() {
            self.nodes[i].sent.push((t, x.clone()));
            for (extra, x) in (self.tap)(t, i, x) {
                self.enqueue(extra, x);
            }
        }
        while let Some(e) = self.nodes[i].ep.poll_event() {
            self.nodes[i].events.push((t, e));
        }
    }

    /// Puts a datagram on the network (past the tap) for delivery after the delay.
    fn enqueue(&mut self, extra: Duration, t: Transmit) {
        self.seq += 1;
        self.queue
            .push((self.now + self.delay + extra, self.seq, t));
    }

    fn deliver(&mut self, t: Transmit) {
        let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.addrs.contains(&t.remote.ip()))
        else {
            self.lost.push(t);
            return;
        };
        let now = self.instant();
        self.nodes[i].received.push((self.now, t.clone()));
        self.nodes[i]
            .ep
            .handle_datagram(now, t.remote, t.local, &t.payload);
        self.drain(i);
    }

    /// Delivers datagrams and fires timers in time order up to `until` (since the start).
    fn run_until(&mut self, until: Duration) {
        let mut spins = 0u32;
        loop {
            let next_net = self.queue.iter().map(|(t, s, _)| (*t, *s)).min();
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| n.ep.poll_timeout())
                .map(|t| t.saturating_duration_since(self.start))
                .min();
            let next = [next_net.map(|(t, _)| t), next_timer]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next.filter(|n| *n <= until) else {
                break;
            };
            if next <= self.now {
                spins += 1;
                if spins > 10_000 {
                    self.violation("a timer fires without progress".into());
                    break;
                }
            } else {
                spins = 0;
            }
            self.now = self.now.max(next);
            match next_net.filter(|(t, _)| *t <= self.now) {
                Some((t, s)) => {
                    let pos = self
                        .queue
                        .iter()
                        .position(|(tt, ss, _)| *tt == t && *ss == s);
                    let (_, _, d) = self.queue.remove(pos.unwrap());
                    self.deliver(d);
                }
                None => {
                    let now = self.instant();
                    for i in 0..self.nodes.len() {
                        if self.nodes[i].ep.poll_timeout().is_some_and(|t| t <= now) {
                            self.nodes[i].ep.handle_timeout(now);
                            self.drain(i);
                        }
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn initiate(&mut self, i: usize) -> IkeSaId {
        let now = self.instant();
        let id = self.nodes[i].ep.initiate(now, 0).unwrap();
        self.drain(i);
        id
    }

    /// Sends one packet on every active outbound SA; a packet counts as delivered when some
    /// other node decrypts it (same SPI and key). The first packet on an inbound SA announced
    /// with `report_first_packet` is reported to its endpoint. Returns (delivered, not).
    fn traffic(&mut self) -> (usize, usize) {
        let sends: Vec<(usize, u32, Vec<u8>)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                n.dp.active
                    .values()
                    .map(move |s| (i, *s, n.dp.outbound[s].1.clone()))
            })
            .collect();
        let (mut ok, mut bad) = (0, 0);
        for (i, spi, key) in sends {
            let rx = (0..self.nodes.len()).find(|&j| {
                j != i
                    && self.nodes[j]
                        .dp
                        .inbound
                        .get(&spi)
                        .is_some_and(|s| s.key == key)
            });
            let Some(j) = rx else {
                bad += 1;
                continue;
            };
            ok += 1;
            let Some(sa) = self.nodes[j].dp.inbound.get_mut(&spi) else {
                continue;
            };
            let report = sa.report && !sa.seen;
            sa.seen = true;
            if report {
                let now = self.instant();
                self.nodes[j].ep.inbound_traffic(now, spi);
                self.drain(j);
            }
        }
        (ok, bad)
    }

    /// Data flows both ways between A and B on one tunnel each, and the data plane model saw
    /// no violation.
    fn assert_tunnel_works(&mut self) {
        // The responder switches once the initiator's first packet arrives.
        self.traffic();
        self.run_for(Duration::from_millis(50));
        let (ok, bad) = self.traffic();
        assert_eq!(bad, 0, "undecryptable packets\n{}", self.dump());
        for i in [A, B] {
            assert_eq!(
                self.nodes[i].dp.active.len(),
                1,
                "node {i} active tunnels\n{}",
                self.dump()
            );
        }
        assert_eq!(ok, 2, "{}", self.dump());
        assert!(self.violations.is_empty(), "{}", self.dump());
    }

    fn stats(&self, i: usize) -> &espada_ike::exchange::Stats {
        self.nodes[i].ep.stats()
    }

    fn events(&self, i: usize) -> Vec<&Event> {
        self.nodes[i].events.iter().map(|(_, e)| e).collect()
    }

    fn count(&self, i: usize, f: impl Fn(&Event) -> bool) -> usize {
        self.nodes[i].events.iter().filter(|(_, e)| f(e)).count()
    }

    fn established(&self, i: usize) -> Vec<IkeSaId> {
        self.nodes[i]
            .ep
            .ike_sas()
            .filter(|s| s.is_established())
            .map(|s| s.id())
            .collect()
    }

    fn children(&self, i: usize) -> usize {
        self.nodes[i].ep.ike_sas().map(|s| s.children().len()).sum()
    }

    /// The parameters of every SA node `i` installed (inbound and outbound).
    fn installed(&self, i: usize) -> Vec<&ChildSaParams> {
        self.nodes[i]
            .actions
            .iter()
            .filter_map(|(_, a)| match a {
                Action::InstallInbound(p) | Action::InstallOutbound(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    /// Datagrams node `i` sent since `since`, with their headers.
    fn sent_since(&self, i: usize, since: Duration) -> Vec<(Duration, Header, &Transmit)> {
        self.nodes[i]
            .sent
            .iter()
            .filter(|(t, _)| *t >= since)
            .filter_map(|(t, x)| Header::parse(ike_bytes(x)).ok().map(|h| (*t, h, x)))
            .collect()
    }

    fn dump(&self) -> String {
        let mut out = format!("violations: {:?}\n", self.violations);
        for (i, n) in self.nodes.iter().enumerate() {
            out += &format!("node {i} stats {:?}\n", n.ep.stats());
            for (t, e) in &n.events {
                out += &format!("  {t:?} event {e:?}\n");
            }
            for (t, x) in &n.sent {
                let h = Header::parse(ike_bytes(x)).ok();
                let what = h.map(|h| {
                    let dir = if h.is_response() {
                        "response"
                    } else {
                        "request"
                    };
                    format!(
                        "{:?} mid {} {dir} next {:?}",
                        h.exchange, h.message_id, h.next_payload
                    )
                });
                out += &format!(
                    "  {t:?} sent {} -> {} {what:?} {} B\n",
                    x.local,
                    x.remote,
                    x.payload.len()
                );
            }
        }
        out
    }

    /// Initiates from A and runs until both ends have the IKE SA and the tunnel works.
    fn establish(&mut self) -> IkeSaId {
        let id = self.initiate(A);
        self.run_for(Duration::from_secs(2));
        assert_eq!(self.established(A), vec![id], "{}", self.dump());
        assert_eq!(self.established(B).len(), 1, "{}", self.dump());
        self.assert_tunnel_works();
        id
    }
}

/// The IKE message of a datagram an endpoint sent (without the non-ESP marker on 4500).
fn ike_bytes(t: &Transmit) -> &[u8] {
    if t.local.port() == espada_ike::NATT_PORT {
        t.payload.get(4..).unwrap_or(&[])
    } else {
        &t.payload
    }
}

fn std_peer(side: Side) -> PeerConfig {
    peer_config(
        side,
        "psk-espada",
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16-x25519",
    )
}

fn peer(side: Side, ike: &[&str], esp: &[&str]) -> PeerConfig {
    let mut p = std_peer(side);
    p.ike_proposals = ike.iter().map(|s| IkeProposal::parse(s).unwrap()).collect();
    p.esp_proposals = esp.iter().map(|s| EspProposal::parse(s).unwrap()).collect();
    p
}

fn v4(s: &str, len: u8) -> TrafficSelector {
    ts::prefix(s.parse().unwrap(), len)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// ---------------------------------------------------------------------------------------------
// Proposal selection (§2.7) and NO_PROPOSAL_CHOSEN
// ---------------------------------------------------------------------------------------------

/// The SA payload of the first IKE_SA_INIT response with one that node `i` sent.
fn init_response_sa(w: &World, i: usize) -> espada_ike::msgs::SaPayload {
    w.sent_since(i, Duration::ZERO)
        .into_iter()
        .filter(|(_, h, _)| h.exchange == ExchangeType::IKE_SA_INIT && h.is_response())
        .find_map(|(_, _, t)| Message::parse(ike_bytes(t)).unwrap().first_sa().cloned())
        .expect("an IKE_SA_INIT response with an SA payload")
}

#[test]
fn responder_picks_its_first_proposal_the_initiator_offers() {
    let aes256 = "aes256gcm16-prfsha384-x25519";
    let aes128 = "aes128gcm16-prfsha256-x25519";
    struct Case {
        ike_a: [&'static str; 2],
        ike_b: [&'static str; 2],
        esp_a: [&'static str; 2],
        esp_b: [&'static str; 2],
        /// The initiator's proposal number the responder answers with.
        number: u8,
        key_bits: u16,
        prf: u16,
        esp: Cipher,
    }
    let (esp128, esp256) = ("aes128gcm16", "aes256gcm16");
    let cases = [
        Case {
            ike_a: [aes256, aes128],
            ike_b: [aes128, aes256],
            esp_a: [esp256, esp128],
            esp_b: [esp128, esp256],
            number: 2,
            key_bits: 128,
            prf: 5,
            esp: Cipher::AesGcm16_128,
        },
        Case {
            ike_a: [aes128, aes256],
            ike_b: [aes256, aes128],
            esp_a: [esp128, esp256],
            esp_b: [esp256, esp128],
            number: 2,
            key_bits: 256,
            prf: 6,
            esp: Cipher::AesGcm16_256,
        },
        Case {
            ike_a: [aes256, aes128],
            ike_b: [aes256, aes128],
            esp_a: [esp256, esp128],
            esp_b: [esp256, esp128],
            number: 1,
            key_bits: 256,
            prf: 6,
            esp: Cipher::AesGcm16_256,
        },
    ];
    for c in &cases {
        let mut w = World::two(
            peer(Side::A, &c.ike_a, &c.esp_a),
            peer(Side::B, &c.ike_b, &c.esp_b),
            endpoint_config(),
            endpoint_config(),
        );
        w.establish();
        let sa = init_response_sa(&w, B);
        assert_eq!(sa.proposals.len(), 1, "{sa:?}");
        let p = &sa.proposals[0];
        assert_eq!(p.number, c.number, "{:?} against {:?}", c.ike_b, c.ike_a);
        let encr: Vec<_> = p.transforms_of(TransformType::ENCR).collect();
        assert_eq!(encr.len(), 1);
        assert_eq!(encr[0].key_length(), Some(c.key_bits));
        assert_eq!(
            p.transforms_of(TransformType::PRF)
                .map(|t| t.id)
                .collect::<Vec<_>>(),
            vec![c.prf]
        );
        for i in [A, B] {
            let ciphers: HashSet<Cipher> = w.installed(i).iter().map(|p| p.cipher).collect();
            assert_eq!(
                ciphers,
                HashSet::from([c.esp]),
                "node {i}: ESP {:?} against {:?}",
                c.esp_b,
                c.esp_a
            );
        }
        assert_eq!(w.stats(B).invalid_ke_sent, 0);
    }
}

#[test]
fn no_common_ike_proposal_is_refused_with_both_offers_named() {
    let mut w = World::two(
        peer(Side::A, &["aes256gcm16-prfsha384-ecp384"], &["aes128gcm16"]),
        peer(
            Side::B,
            &[
                "aes128gcm16-prfsha256-x25519",
                "aes256gcm16-prfsha256-ecp256",
            ],
            &["aes128gcm16"],
        ),
        endpoint_config(),
        endpoint_config(),
    );
    let id = w.initiate(A);
    w.run_for(secs(2.0));
    let want_b = Event::NoProposalChosen {
        ike: None,
        remote: addr(A_ADDR, 500),
        ours: "aes128gcm16-prfsha256-x25519, aes256gcm16-prfsha256-ecp256".into(),
        theirs: "aes256gcm16-prfsha384-ecp384".into(),
    };
    assert_eq!(w.events(B), vec![&want_b], "{}", w.dump());
    let on_a = w.events(A);
    assert!(
        on_a.iter().any(
            |e| matches!(e, Event::NoProposalChosen { ike: Some(i), ours, .. }
            if *i == id && ours == "aes256gcm16-prfsha384-ecp384")
        ),
        "{on_a:?}"
    );
    assert!(
        on_a.contains(&&Event::ExchangeFailed {
            ike: id,
            notify: NotifyType::NO_PROPOSAL_CHOSEN,
            by_peer: true
        }),
        "{on_a:?}"
    );
    // The refusal is a bare notify; nothing is kept on either side.
    let refusal: Vec<_> = w.sent_since(B, Duration::ZERO);
    assert_eq!(refusal.len(), 1);
    let m = Message::parse(ike_bytes(refusal[0].2)).unwrap();
    assert_eq!(
        m.payloads,
        vec![Payload::Notify(Notify::new(
            NotifyType::NO_PROPOSAL_CHOSEN,
            vec![]
        ))]
    );
    for i in [A, B] {
        assert_eq!(w.nodes[i].ep.ike_sas().count(), 0, "node {i}");
        assert_eq!(w.stats(i).no_proposal_chosen, 1, "node {i}");
        assert!(w.nodes[i].actions.is_empty());
    }
}

#[test]
fn no_common_esp_proposal_in_ike_auth_leaves_the_ike_sa_without_child_sa() {
    let ike = ["aes128gcm16-prfsha256-x25519"];
    let mut w = World::two(
        peer(Side::A, &ike, &["aes256gcm16"]),
        peer(Side::B, &ike, &["aes128gcm16-esn"]),
        endpoint_config(),
        endpoint_config(),
    );
    let id = w.initiate(A);
    w.run_for(secs(2.0));
    assert_eq!(w.established(A), vec![id], "{}", w.dump());
    let b_id = w.established(B);
    assert_eq!(b_id.len(), 1, "{}", w.dump());
    let want = Event::NoProposalChosen {
        ike: Some(b_id[0]),
        remote: addr(A_ADDR, 500),
        ours: "aes128gcm16-esn".into(),
        theirs: "aes256gcm16-noesn".into(),
    };
    assert!(w.events(B).contains(&&want), "{:?}", w.events(B));
    assert!(w.events(A).contains(&&Event::ExchangeFailed {
        ike: id,
        notify: NotifyType::NO_PROPOSAL_CHOSEN,
        by_peer: true
    }));
    for i in [A, B] {
        assert_eq!(w.children(i), 0, "node {i}");
        assert!(
            w.nodes[i].actions.is_empty(),
            "node {i}: {:?}",
            w.nodes[i].actions
        );
        assert_eq!(
            w.count(i, |e| matches!(e, Event::ChildEstablished { .. })),
            0
        );
        assert_eq!(w.stats(i).no_proposal_chosen, 1, "node {i}");
    }
    // The IKE SA is usable: a liveness check is answered.
    let now = w.instant();
    w.nodes[A].ep.liveness(now, id).unwrap();
    w.drain(A);
    w.run_for(secs(2.0));
    assert_eq!(w.stats(A).retransmits, 0);
    assert_eq!(w.established(A), vec![id]);
}

#[test]
fn no_common_esp_proposal_in_create_child_sa_keeps_the_tunnel() {
    // IKE_AUTH carries no KE, so the PFS groups only matter from CREATE_CHILD_SA on.
    let ike = ["aes128gcm16-prfsha256-x25519"];
    let mut w = World::two(
        peer(Side::A, &ike, &["aes128gcm16-x25519"]),
        peer(Side::B, &ike, &["aes128gcm16-ecp256"]),
        endpoint_config(),
        endpoint_config(),
    );
    let id = w.establish();
    let actions_before = [w.nodes[A].actions.len(), w.nodes[B].actions.len()];
    let now = w.instant();
    w.nodes[A].ep.create_child(now, id).unwrap();
    w.drain(A);
    w.run_for(secs(2.0));
    let b_id = w.established(B)[0];
    let want = Event::NoProposalChosen {
        ike: Some(b_id),
        remote: addr(A_ADDR, 500),
        ours: "aes128gcm16-ecp256-noesn".into(),
        theirs: "aes128gcm16-x25519-noesn".into(),
    };
    assert!(w.events(B).contains(&&want), "{:?}", w.events(B));
    assert!(w.events(A).contains(&&Event::ExchangeFailed {
        ike: id,
        notify: NotifyType::NO_PROPOSAL_CHOSEN,
        by_peer: true
    }));
    assert_eq!(
        w.stats(B).invalid_ke_sent,
        0,
        "no group of B's would do: no INVALID_KE"
    );
    for i in [A, B] {
        assert_eq!(w.children(i), 1, "node {i}: only the first CHILD_SA");
        assert_eq!(
            w.nodes[i].actions.len(),
            actions_before[i],
            "node {i}: nothing installed"
        );
        assert_eq!(w.stats(i).no_proposal_chosen, 1, "node {i}");
    }
    w.assert_tunnel_works();
}

// ---------------------------------------------------------------------------------------------
// INVALID_KE_PAYLOAD (§1.2, §1.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_ke_payload_retry_with_the_requested_group_succeeds() {
    let mut w = World::two(
        peer(
            Side::A,
            &["aes128gcm16-prfsha256-x25519-ecp256"],
            &["aes128gcm16"],
        ),
        peer(Side::B, &["aes128gcm16-prfsha256-ecp256"], &["aes128gcm16"]),
        endpoint_config(),
        endpoint_config(),
    );
    w.establish();
    assert_eq!(w.stats(B).invalid_ke_sent, 1);
    let inits: Vec<_> = w
        .sent_since(A, Duration::ZERO)
        .into_iter()
        .filter(|(_, h, _)| h.exchange == ExchangeType::IKE_SA_INIT)
        .map(|(_, h, t)| {
            (
                h.spi_i,
                Message::parse(ike_bytes(t)).unwrap().ke().unwrap().group,
            )
        })
        .collect();
    assert_eq!(inits.len(), 2, "{inits:?}");
    assert_eq!(inits[0].1, DhGroup(31));
    assert_eq!(inits[1].1, DhGroup(19));
    let refusal = w.sent_since(B, Duration::ZERO)[0].2;
    let m = Message::parse(ike_bytes(refusal)).unwrap();
    assert_eq!(
        m.payloads,
        vec![Payload::Notify(Notify::new(
            NotifyType::INVALID_KE_PAYLOAD,
            vec![0, 19]
        ))]
    );
    assert_eq!(
        init_response_sa(&w, B).proposals[0]
            .transforms_of(TransformType::DH)
            .map(|t| t.id)
            .collect::<Vec<_>>(),
        vec![19]
    );
    assert_eq!(
        w.nodes[B].ep.ike_sas().count(),
        1,
        "no state kept for the refused request"
    );
}

#[test]
fn invalid_ke_payload_for_pfs_in_create_child_sa() {
    let ike = ["aes128gcm16-prfsha256-x25519"];
    let mut w = World::two(
        peer(Side::A, &ike, &["aes128gcm16-x25519-ecp256"]),
        peer(Side::B, &ike, &["aes128gcm16-ecp256"]),
        endpoint_config(),
        endpoint_config(),
    );
    let id = w.establish();
    assert_eq!(w.stats(B).invalid_ke_sent, 0);
    let now = w.instant();
    let child = w.nodes[A].ep.create_child(now, id).unwrap();
    w.drain(A);
    w.run_for(secs(2.0));
    assert_eq!(w.stats(B).invalid_ke_sent, 1, "{}", w.dump());
    assert!(
        w.events(A)
            .iter()
            .any(|e| matches!(e, Event::ChildEstablished { child: c, .. } if *c == child)),
        "{}",
        w.dump()
    );
    for i in [A, B] {
        let pfs: Vec<Option<DhAlg>> = w.nodes[i]
            .ep
            .ike_sas()
            .flat_map(|s| s.children())
            .map(|c| c.pfs)
            .collect();
        assert!(pfs.contains(&Some(DhAlg::Ecp256)), "node {i}: {pfs:?}");
        assert_eq!(w.children(i), 2, "node {i}");
    }
    let creates = w
        .sent_since(A, Duration::ZERO)
        .into_iter()
        .filter(|(_, h, _)| h.exchange == ExchangeType::CREATE_CHILD_SA && !h.is_response())
        .count();
    assert_eq!(creates, 2, "first with X25519, the retry with ECP-256");
    assert!(w.violations.is_empty(), "{}", w.dump());
}

// ---------------------------------------------------------------------------------------------
// Authentication (§2.15, §2.21.2)
// ---------------------------------------------------------------------------------------------

/// Runs one IKE_SA_INIT + IKE_AUTH that must fail authentication; checks that nothing is
/// left and nothing was installed, and returns the world.
fn failed_auth(a: PeerConfig, b: PeerConfig) -> (World, IkeSaId) {
    let mut w = World::two(a, b, endpoint_config(), endpoint_config());
    let id = w.initiate(A);
    w.run_for(secs(3.0));
    for i in [A, B] {
        assert_eq!(
            w.stats(i).authentication_failed,
            1,
            "node {i}\n{}",
            w.dump()
        );
        assert!(
            w.nodes[i].actions.is_empty(),
            "node {i} installed: {:?}",
            w.nodes[i].actions
        );
        assert_eq!(
            w.count(i, |e| matches!(
                e,
                Event::IkeEstablished { .. } | Event::ChildEstablished { .. }
            )),
            0,
            "node {i}"
        );
    }
    (w, id)
}

#[test]
fn wrong_psk_fails_authentication_on_both_ends() {
    let mut a = std_peer(Side::A);
    a.auth = Authenticator::Psk(Secret::from_slice(b"not the right key"));
    let (w, id) = failed_auth(a, std_peer(Side::B));
    let on_a = w.events(A);
    assert!(
        on_a.contains(&&Event::AuthenticationFailed {
            ike: id,
            peer: Some(0),
            remote: addr(B_ADDR, 500),
            by_peer: true
        }),
        "{on_a:?}"
    );
    assert!(
        on_a.contains(&&Event::IkeDeleted {
            ike: id,
            reason: DeleteReason::Failed
        }),
        "{on_a:?}"
    );
    assert!(w.events(B).iter().any(|e| matches!(e, Event::AuthenticationFailed { by_peer: false, remote, .. } if *remote == addr(A_ADDR, 500))), "{:?}", w.events(B));
    for i in [A, B] {
        assert_eq!(
            w.nodes[i].ep.ike_sas().count(),
            0,
            "node {i}: {:?}",
            w.nodes[i].ep
        );
    }
    // B's refusal is answered with a single AUTHENTICATION_FAILED, and nothing is sent after.
    let b_sent = w.sent_since(B, Duration::ZERO);
    assert_eq!(
        b_sent.len(),
        2,
        "IKE_SA_INIT and IKE_AUTH responses\n{}",
        w.dump()
    );
    assert_eq!(w.stats(A).retransmits, 0);
}

#[test]
fn responder_refuses_an_initiator_identity_it_does_not_expect() {
    let mut b = std_peer(Side::B);
    b.remote_id = Identity::Fqdn("c.example".into());
    let (w, id) = failed_auth(std_peer(Side::A), b);
    assert!(w.events(A).contains(&&Event::AuthenticationFailed {
        ike: id,
        peer: Some(0),
        remote: addr(B_ADDR, 500),
        by_peer: true
    }));
    assert!(
        w.events(B)
            .iter()
            .any(|e| matches!(e, Event::AuthenticationFailed { by_peer: false, .. }))
    );
    for i in [A, B] {
        assert_eq!(w.nodes[i].ep.ike_sas().count(), 0, "node {i}");
    }
}

#[test]
fn initiator_refuses_a_responder_identity_it_does_not_expect() {
    let mut a = std_peer(Side::A);
    a.remote_id = Identity::Fqdn("z.example".into());
    let mut w = World::two(a, std_peer(Side::B), endpoint_config(), endpoint_config());
    let id = w.initiate(A);
    w.run_for(secs(3.0));
    assert!(
        w.events(A).contains(&&Event::AuthenticationFailed {
            ike: id,
            peer: Some(0),
            remote: addr(B_ADDR, 500),
            by_peer: false
        }),
        "{}",
        w.dump()
    );
    assert_eq!(w.nodes[A].ep.ike_sas().count(), 0);
    assert!(w.nodes[A].actions.is_empty(), "A installed nothing");
}

// ---------------------------------------------------------------------------------------------
// Traffic selectors (§2.9)
// ---------------------------------------------------------------------------------------------

#[test]
fn responder_narrows_traffic_selectors_to_its_policy() {
    let mut a = std_peer(Side::A);
    a.local_ts = vec![v4("198.19.0.0", 16)];
    a.remote_ts = vec![v4("198.19.0.0", 16)];
    let mut w = World::two(a, std_peer(Side::B), endpoint_config(), endpoint_config());
    w.establish();
    let (a_net, b_net) = (v4("198.19.1.0", 24), v4("198.19.2.0", 24));
    // (node, its local selectors, its remote selectors)
    for (i, local, remote) in [(A, &a_net, &b_net), (B, &b_net, &a_net)] {
        let children: Vec<_> = w.nodes[i]
            .ep
            .ike_sas()
            .flat_map(|s| s.children())
            .cloned()
            .collect();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].local_ts, vec![*local], "node {i}");
        assert_eq!(children[0].remote_ts, vec![*remote], "node {i}");
        for p in w.installed(i) {
            assert_eq!(
                (p.local_ts.as_slice(), p.remote_ts.as_slice()),
                (&[*local][..], &[*remote][..]),
                "node {i}"
            );
        }
    }
}

#[test]
fn disjoint_traffic_selectors_get_ts_unacceptable_and_keep_the_ike_sa() {
    let mut a = std_peer(Side::A);
    a.local_ts = vec![v4("10.0.0.0", 24)];
    let mut w = World::two(a, std_peer(Side::B), endpoint_config(), endpoint_config());
    let id = w.initiate(A);
    w.run_for(secs(2.0));
    assert_eq!(w.established(A), vec![id], "{}", w.dump());
    let b_id = w.established(B);
    assert_eq!(b_id.len(), 1);
    assert!(w.events(A).contains(&&Event::ExchangeFailed {
        ike: id,
        notify: NotifyType::TS_UNACCEPTABLE,
        by_peer: true
    }));
    assert!(w.events(B).contains(&&Event::ExchangeFailed {
        ike: b_id[0],
        notify: NotifyType::TS_UNACCEPTABLE,
        by_peer: false
    }));
    for i in [A, B] {
        assert_eq!(w.children(i), 0, "node {i}");
        assert!(w.nodes[i].actions.is_empty(), "node {i}");
        assert_eq!(w.stats(i).ts_unacceptable, 1, "node {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// COOKIE (§2.6) and half-open IKE SAs
// ---------------------------------------------------------------------------------------------

/// An initiator whose datagrams are fed by hand: peer 0 is B, from A's address.
fn crafter(seed: u64) -> Endpoint {
    endpoint(endpoint_config(), vec![std_peer(Side::A)], seed)
}

/// A new IKE_SA_INIT request from `x`.
fn init_request(x: &mut Endpoint, now: Instant) -> Vec<u8> {
    x.initiate(now, 0).unwrap();
    let t = x.poll_transmit().unwrap();
    assert!(x.poll_transmit().is_none());
    t.payload
}

/// Feeds one datagram from `from` to B's port 500 and returns what B sends.
fn feed(b: &mut Endpoint, now: Instant, from: SocketAddr, bytes: &[u8]) -> Vec<Transmit> {
    b.handle_datagram(now, addr(B_ADDR, 500), from, bytes);
    std::iter::from_fn(|| b.poll_transmit()).collect()
}

/// The only notify of a bare refusal, if it is one.
fn refusal(t: &Transmit) -> Option<Notify> {
    let m = Message::parse(ike_bytes(t)).ok()?;
    match m.payloads.as_slice() {
        [Payload::Notify(n)] => Some(n.clone()),
        _ => None,
    }
}

/// Gets a COOKIE from `b` for a new request of `x` and returns `x`'s retry carrying it.
fn retry_with_cookie(x: &mut Endpoint, b: &mut Endpoint, now: Instant) -> Vec<u8> {
    let first = init_request(x, now);
    let answer = feed(b, now, addr(A_ADDR, 500), &first);
    assert_eq!(answer.len(), 1);
    assert_eq!(refusal(&answer[0]).map(|n| n.ty), Some(NotifyType::COOKIE));
    x.handle_datagram(
        now,
        addr(A_ADDR, 500),
        addr(B_ADDR, 500),
        &answer[0].payload,
    );
    let retry = x.poll_transmit().unwrap();
    retry.payload
}

fn half_open(ep: &Endpoint) -> usize {
    ep.ike_sas()
        .filter(|s| s.state_name() == "half-open")
        .count()
}

fn responder_any(config: EndpointConfig, seed: u64) -> Endpoint {
    let mut b = std_peer(Side::B);
    b.remote_addr = None;
    endpoint(config, vec![b], seed)
}

#[test]
fn an_ike_sa_rekey_waits_until_the_peer_could_have_retransmitted_a_lost_child_request() {
    // B answered A's CHILD_SA rekey; if that answer was lost, A retransmits on this IKE SA.
    // B's IKE SA rekey (which deletes it) waits ANSWER_QUIET after the answer.
    let mut w = World::standard();
    let id = w.establish();
    let child = w.nodes[A].ep.ike_sa(id).unwrap().children()[0].id;
    let now = w.instant();
    w.nodes[A].ep.rekey_child(now, child).unwrap();
    w.drain(A);
    w.run_for(secs(0.1));
    let answered = w.now;
    let b_sa = w.established(B)[0];
    let now = w.instant();
    w.nodes[B].ep.rekey_ike(now, b_sa).unwrap();
    w.drain(B);
    w.run_for(secs(6.0));
    let requests: Vec<Duration> = w
        .sent_since(B, answered)
        .into_iter()
        .filter(|(_, h, _)| h.exchange == ExchangeType::CREATE_CHILD_SA && !h.is_response())
        .map(|(t, _, _)| t)
        .collect();
    assert_eq!(requests.len(), 1, "{}", w.dump());
    let wait = requests[0] - answered;
    assert!(
        wait >= espada_ike::exchange::ike_sa::ANSWER_QUIET - secs(0.1)
            && wait <= espada_ike::exchange::ike_sa::ANSWER_QUIET + secs(0.2),
        "the IKE rekey went {wait:?} after the answer"
    );
    assert_eq!(
        w.count(B, |e| matches!(e, Event::IkeRekeyed { .. })),
        1,
        "{}",
        w.dump()
    );
    w.assert_tunnel_works();
}

#[test]
fn cookie_is_demanded_and_the_retry_with_it_succeeds() {
    let mut cb = endpoint_config();
    cb.cookie_threshold = 0;
    let mut w = World::two(std_peer(Side::A), std_peer(Side::B), endpoint_config(), cb);
    w.establish();
    assert_eq!(w.stats(B).cookies_sent, 1);
    assert_eq!(w.stats(B).bad_cookies, 0);
    let b_sent = w.sent_since(B, Duration::ZERO);
    let cookie = refusal(b_sent[0].2)
        .filter(|n| n.ty == NotifyType::COOKIE)
        .expect("COOKIE first");
    let inits: Vec<Message> = w
        .sent_since(A, Duration::ZERO)
        .into_iter()
        .filter(|(_, h, _)| h.exchange == ExchangeType::IKE_SA_INIT)
        .map(|(_, _, t)| Message::parse(ike_bytes(t)).unwrap())
        .collect();
    assert_eq!(inits.len(), 2);
    assert_eq!(
        inits[0].header.spi_i, inits[1].header.spi_i,
        "same SPIi in the retry"
    );
    assert_eq!(
        inits[1].payloads[0],
        Payload::Notify(cookie),
        "the COOKIE comes first (§2.6)"
    );
    assert_eq!(
        inits[0].nonce(),
        inits[1].nonce(),
        "same nonce in the retry"
    );
}

#[test]
fn flood_from_spoofed_addresses_keeps_no_state_beyond_the_cookie_threshold() {
    let threshold = 4;
    let mut cb = endpoint_config();
    cb.cookie_threshold = threshold;
    cb.half_open_timeout = secs(600.0);
    let mut b = std_peer(Side::B);
    b.remote_addr = None;
    let mut w = World::two(std_peer(Side::A), b, endpoint_config(), cb);
    let id = w.establish();
    let (child, old_in) = {
        let c = &w.nodes[A].ep.ike_sa(id).unwrap().children()[0];
        (c.id, c.spi_in)
    };
    let mut x = crafter(77);
    let n = 400usize;
    for k in 0..n {
        let payload = init_request(&mut x, w.instant());
        let spoofed = SocketAddr::new(
            IpAddr::from([203, 0, 113, (k % 250) as u8 + 1]),
            1024 + k as u16,
        );
        w.enqueue(
            Duration::ZERO,
            Transmit {
                local: spoofed,
                remote: addr(B_ADDR, 500),
                payload,
            },
        );
        if k == n / 2 {
            let now = w.instant();
            w.nodes[A].ep.rekey_child(now, child).unwrap();
            w.drain(A);
        }
        if k % 10 == 0 {
            w.run_for(secs(0.05));
            let (_, bad) = w.traffic();
            assert_eq!(bad, 0, "{}", w.dump());
        }
        let ep = &w.nodes[B].ep;
        assert!(
            half_open(ep) <= threshold,
            "{} half-open after {k}",
            half_open(ep)
        );
        assert!(ep.ike_sas().count() <= threshold + 1, "{:?}", ep);
    }
    w.run_for(secs(2.0));
    assert_eq!(
        w.stats(B).cookies_sent,
        (n - threshold) as u64,
        "{:?}",
        w.stats(B)
    );
    // Every answer to a spoofed address beyond the threshold is a bare COOKIE.
    let to_spoofed: Vec<_> = w
        .lost
        .iter()
        .filter(|t| t.remote.ip() != A_ADDR.parse::<IpAddr>().unwrap())
        .collect();
    assert_eq!(to_spoofed.len(), n);
    let cookies = to_spoofed
        .iter()
        .filter(|t| refusal(t).is_some_and(|n| n.ty == NotifyType::COOKIE))
        .count();
    assert_eq!(cookies, n - threshold);
    // The established tunnel kept working and was rekeyed meanwhile.
    assert!(
        w.events(A)
            .iter()
            .any(|e| matches!(e, Event::ChildRekeyed { old, .. } if old.0 == old_in)),
        "{}",
        w.dump()
    );
    assert_eq!(w.established(A), vec![id]);
    w.assert_tunnel_works();
}

#[test]
fn strangers_get_a_refusal_normally_and_silence_under_a_flood() {
    // B knows only A (198.18.x); requests from elsewhere are answered NO_PROPOSAL_CHOSEN
    // while nothing is under pressure, and dropped without an answer once the half-open
    // SAs reach the cookie threshold (answers to spoofed sources would reflect the flood).
    let mut cb = endpoint_config();
    cb.cookie_threshold = 3;
    cb.half_open_timeout = secs(600.0);
    let mut b = endpoint(cb, vec![std_peer(Side::B)], 5);
    let mut x = crafter(78);
    let now = Instant::now();
    let stranger = SocketAddr::new(IpAddr::from([203, 0, 113, 9]), 500);
    let answer = feed(&mut b, now, stranger, &init_request(&mut x, now));
    assert_eq!(
        answer
            .iter()
            .map(|t| refusal(t).map(|n| n.ty))
            .collect::<Vec<_>>(),
        vec![Some(NotifyType::NO_PROPOSAL_CHOSEN)]
    );
    for _ in 0..3 {
        let from_a = feed(&mut b, now, addr(A_ADDR, 500), &init_request(&mut x, now));
        assert_eq!(
            from_a.len(),
            1,
            "the configured peer's address gets an answer"
        );
    }
    assert_eq!(half_open(&b), 3);
    let answer = feed(&mut b, now, stranger, &init_request(&mut x, now));
    assert!(answer.is_empty(), "no answer under a flood: {answer:?}");
    assert_eq!(b.stats().no_peer_config, 2);
}

#[test]
fn cookie_survives_one_rotation_but_not_two() {
    let mut cb = endpoint_config();
    cb.cookie_threshold = 0;
    cb.cookie_rotation = secs(10.0);
    let mut b = responder_any(cb, 5);
    let mut x = crafter(6);
    let t0 = Instant::now();
    let r1 = retry_with_cookie(&mut x, &mut b, t0);
    let r2 = retry_with_cookie(&mut x, &mut b, t0);
    assert_eq!(b.stats().cookies_sent, 2);
    // One rotation, triggered by another initiator's request.
    let t1 = t0 + secs(10.0);
    let other = init_request(&mut x, t1);
    feed(&mut b, t1, addr("198.51.100.9", 500), &other);
    let answer = feed(&mut b, t1, addr(A_ADDR, 500), &r1);
    assert_eq!(answer.len(), 1);
    assert_eq!(
        refusal(&answer[0]),
        None,
        "cookie of the previous secret accepted"
    );
    assert_eq!(half_open(&b), 1);
    // A second rotation: the secret r2's cookie was made with is gone.
    let t2 = t0 + secs(20.0);
    let other = init_request(&mut x, t2);
    feed(&mut b, t2, addr("198.51.100.9", 500), &other);
    let answer = feed(&mut b, t2, addr(A_ADDR, 500), &r2);
    assert_eq!(answer.len(), 1);
    assert_eq!(
        refusal(&answer[0]).map(|n| n.ty),
        Some(NotifyType::COOKIE),
        "stale cookie refused"
    );
    assert_eq!(b.stats().bad_cookies, 1);
    assert_eq!(half_open(&b), 1);
}

#[test]
fn stale_cookie_refused_after_two_rotation_periods_without_other_requests() {
    // `cookie_rotation`: "how often the cookie secret changes; the previous one stays valid
    // for one period" — so a cookie is worthless two and a half periods later, whether or not
    // other IKE_SA_INIT requests arrived meanwhile.
    let mut cb = endpoint_config();
    cb.cookie_threshold = 0;
    cb.cookie_rotation = secs(10.0);
    let mut b = responder_any(cb, 5);
    let mut x = crafter(6);
    let t0 = Instant::now();
    let r1 = retry_with_cookie(&mut x, &mut b, t0);
    let t = t0 + secs(25.0);
    let answer = feed(&mut b, t, addr(A_ADDR, 500), &r1);
    assert_eq!(answer.len(), 1);
    assert_eq!(
        refusal(&answer[0]).map(|n| n.ty),
        Some(NotifyType::COOKIE),
        "25 s old cookie, 10 s rotation"
    );
    assert_eq!(b.stats().bad_cookies, 1);
    assert_eq!(half_open(&b), 0);
}

#[test]
fn half_open_limit_drops_further_requests() {
    let mut cb = endpoint_config();
    cb.half_open_limit = 3;
    cb.cookie_threshold = 100;
    let mut b = responder_any(cb, 8);
    let mut x = crafter(9);
    let t0 = Instant::now();
    let answered: Vec<usize> = (0..5u8)
        .map(|k| {
            let r = init_request(&mut x, t0);
            feed(
                &mut b,
                t0,
                SocketAddr::new(IpAddr::from([203, 0, 113, k + 1]), 500),
                &r,
            )
            .len()
        })
        .collect();
    assert_eq!(answered, vec![1, 1, 1, 0, 0]);
    assert_eq!(b.stats().half_open_dropped, 2);
    assert_eq!(b.ike_sas().count(), 3);
    assert_eq!(half_open(&b), 3);
}

#[test]
fn half_open_sas_expire_after_the_timeout() {
    let mut cb = endpoint_config();
    cb.half_open_timeout = secs(5.0);
    cb.half_open_limit = 3;
    let mut b = responder_any(cb, 8);
    let mut x = crafter(9);
    let t0 = Instant::now();
    for k in 0..3u8 {
        let r = init_request(&mut x, t0 + secs(f64::from(k)));
        feed(
            &mut b,
            t0 + secs(f64::from(k)),
            SocketAddr::new(IpAddr::from([203, 0, 113, k + 1]), 500),
            &r,
        );
    }
    assert_eq!(half_open(&b), 3);
    let r = init_request(&mut x, t0 + secs(3.0));
    assert!(
        feed(&mut b, t0 + secs(3.0), addr("203.0.113.99", 500), &r).is_empty(),
        "at the limit"
    );
    assert_eq!(b.poll_timeout(), Some(t0 + secs(5.0)));
    b.handle_timeout(t0 + secs(4.9));
    assert_eq!(half_open(&b), 3, "not before the timeout");
    b.handle_timeout(t0 + secs(6.0));
    assert_eq!((half_open(&b), b.stats().half_open_expired), (1, 2));
    b.handle_timeout(t0 + secs(7.0));
    assert_eq!((b.ike_sas().count(), b.stats().half_open_expired), (0, 3));
    assert!(std::iter::from_fn(|| b.poll_action()).next().is_none());
    assert!(b.poll_transmit().is_none(), "expiry sends nothing");
    // Room again.
    let r = init_request(&mut x, t0 + secs(8.0));
    assert_eq!(
        feed(&mut b, t0 + secs(8.0), addr("203.0.113.99", 500), &r).len(),
        1
    );
    assert_eq!(half_open(&b), 1);
}

// ---------------------------------------------------------------------------------------------
// Retransmission (§2.1, §2.4) and liveness
// ---------------------------------------------------------------------------------------------

fn black_hole() -> Tap {
    Box::new(|_, _, _| Vec::new())
}

/// Checks that node `i` removed everything from its data plane and reported the peer dead
/// at `dead_at`.
fn assert_peer_dead(w: &World, i: usize, ike: IkeSaId, dead_at: Duration, child_spis: (u32, u32)) {
    let dead: Vec<Duration> = w.nodes[i]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::PeerDead { ike: x, .. } if *x == ike))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(dead, vec![dead_at], "{}", w.dump());
    assert!(w.events(i).contains(&&Event::IkeDeleted {
        ike,
        reason: DeleteReason::PeerDead
    }));
    assert!(w.events(i).iter().any(|e| matches!(e, Event::ChildDeleted { reason: DeleteReason::PeerDead, spis, .. } if *spis == child_spis)));
    let acts: Vec<&Action> = w.nodes[i]
        .actions
        .iter()
        .filter(|(t, _)| *t == dead_at)
        .map(|(_, a)| a)
        .collect();
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::RetireInbound { spi, .. } if *spi == child_spis.0)),
        "{acts:?}"
    );
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::RemoveOutbound { spi, .. } if *spi == child_spis.1)),
        "{acts:?}"
    );
    let dp = &w.nodes[i].dp;
    assert!(
        dp.inbound.is_empty() && dp.outbound.is_empty() && dp.active.is_empty(),
        "{dp:?}"
    );
    assert_eq!(w.nodes[i].ep.ike_sas().count(), 0);
    assert!(w.violations.is_empty(), "{}", w.dump());
}

fn child_spis(w: &World, i: usize, ike: IkeSaId) -> (ChildId, (u32, u32)) {
    let c = &w.nodes[i].ep.ike_sa(ike).unwrap().children()[0];
    (c.id, (c.spi_in, c.spi_out))
}

#[test]
fn request_into_a_black_hole_backs_off_exponentially_then_the_peer_is_dead() {
    let mut c = endpoint_config();
    c.retransmit = Retransmit {
        base: secs(1.0),
        factor: 1.5,
        max_wait: secs(3.0),
        tries: 5,
    };
    // Waits 1, 1.5, 2.25, 3 (capped), 3: given up 10.75 s after the first transmission.
    assert_eq!(c.retransmit.give_up_after(), secs(10.75));
    let mut w = World::two(std_peer(Side::A), std_peer(Side::B), c.clone(), c);
    let id = w.establish();
    let (child, spis) = child_spis(&w, A, id);
    w.tap = black_hole();
    let t1 = w.now;
    let now = w.instant();
    w.nodes[A].ep.rekey_child(now, child).unwrap();
    w.drain(A);
    w.run_for(secs(30.0));
    let sends: Vec<(Duration, &Transmit)> = w
        .sent_since(A, t1)
        .into_iter()
        .filter(|(_, h, _)| h.exchange == ExchangeType::CREATE_CHILD_SA)
        .map(|(t, _, x)| (t - t1, x))
        .collect();
    let times: Vec<Duration> = sends.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, [0.0, 1.0, 2.5, 4.75, 7.75].map(secs), "{}", w.dump());
    assert!(
        sends.iter().all(|(_, x)| x.payload == sends[0].1.payload),
        "retransmissions are identical"
    );
    assert_eq!(w.stats(A).retransmits, 4);
    assert_peer_dead(&w, A, id, t1 + secs(10.75), spis);
}

#[test]
fn default_schedule_gives_up_far_sooner_than_strongswan() {
    let config = EndpointConfig::default();
    let give_up = config.retransmit.give_up_after();
    assert!(give_up < secs(40.0), "{give_up:?} (strongSwan: ≈165 s)");
    let mut w = World::new();
    w.add(endpoint(config, vec![std_peer(Side::A)], 1), A_ADDR);
    let id = w.initiate(A);
    w.run_for(secs(200.0));
    let times: Vec<Duration> = w
        .sent_since(A, Duration::ZERO)
        .into_iter()
        .map(|(t, _, _)| t)
        .collect();
    assert_eq!(times, [0.0, 1.0, 3.0, 7.0, 15.0].map(secs));
    let dead: Vec<Duration> = w.nodes[A]
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::PeerDead { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(dead, vec![give_up]);
    assert_eq!(give_up, secs(31.0));
    assert!(w.events(A).contains(&&Event::PeerDead {
        ike: id,
        remote: addr(B_ADDR, 500)
    }));
    assert_eq!(w.nodes[A].ep.ike_sas().count(), 0);
    assert_eq!(w.nodes[A].ep.poll_timeout(), None);
}

#[test]
fn liveness_on_an_idle_ike_sa_is_answered_from_either_side() {
    let mut w = World::standard();
    let id = w.establish();
    w.run_for(secs(60.0));
    for (i, ike) in [(A, id), (B, w.established(B)[0])] {
        let t1 = w.now;
        let now = w.instant();
        w.nodes[i].ep.liveness(now, ike).unwrap();
        w.drain(i);
        w.run_for(secs(20.0));
        let mine: Vec<Header> = w.sent_since(i, t1).into_iter().map(|(_, h, _)| h).collect();
        let theirs: Vec<Header> = w
            .sent_since(1 - i, t1)
            .into_iter()
            .map(|(_, h, _)| h)
            .collect();
        assert_eq!(mine.len(), 1, "one request\n{}", w.dump());
        assert_eq!(
            (mine[0].exchange, mine[0].is_response()),
            (ExchangeType::INFORMATIONAL, false)
        );
        assert_eq!(theirs.len(), 1, "one response");
        assert_eq!(
            (
                theirs[0].exchange,
                theirs[0].is_response(),
                theirs[0].message_id
            ),
            (ExchangeType::INFORMATIONAL, true, mine[0].message_id)
        );
    }
    for i in [A, B] {
        assert_eq!(w.stats(i).retransmits, 0);
        assert_eq!(
            w.count(i, |e| matches!(
                e,
                Event::PeerDead { .. } | Event::IkeDeleted { .. }
            )),
            0
        );
    }
    w.assert_tunnel_works();
}

#[test]
fn liveness_into_a_black_hole_declares_the_peer_dead() {
    let mut w = World::standard();
    let id = w.establish();
    let (_, spis) = child_spis(&w, A, id);
    w.tap = black_hole();
    let t1 = w.now;
    let now = w.instant();
    w.nodes[A].ep.liveness(now, id).unwrap();
    w.drain(A);
    w.run_for(secs(60.0));
    let give_up = endpoint_config().retransmit.give_up_after();
    assert_eq!(give_up, secs(15.5));
    assert_eq!(w.sent_since(A, t1).len(), 6);
    assert_peer_dead(&w, A, id, t1 + give_up, spis);
}

// ---------------------------------------------------------------------------------------------
// Message IDs, the response cache and integrity (§2.1, §2.2, §2.21)
// ---------------------------------------------------------------------------------------------

fn is_request(t: &Transmit, ex: ExchangeType) -> bool {
    Header::parse(ike_bytes(t)).is_ok_and(|h| h.exchange == ex && !h.is_response())
}

#[test]
fn duplicated_request_gets_the_cached_response_byte_for_byte() {
    let mut w = World::standard();
    let id = w.establish();
    w.tap = Box::new(|_, from, t| {
        if from == A && is_request(&t, ExchangeType::INFORMATIONAL) {
            vec![(Duration::ZERO, t.clone()), (secs(0.1), t)]
        } else {
            vec![(Duration::ZERO, t)]
        }
    });
    let t1 = w.now;
    let now = w.instant();
    w.nodes[A].ep.liveness(now, id).unwrap();
    w.drain(A);
    w.run_for(secs(2.0));
    let responses: Vec<&Transmit> = w.sent_since(B, t1).into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(responses.len(), 2, "{}", w.dump());
    assert_eq!(responses[0], responses[1], "the same datagram again");
    assert_eq!(w.stats(B).retransmitted_requests, 1);
    assert_eq!(
        w.stats(A).out_of_window,
        1,
        "the second response answers nothing outstanding"
    );
    assert_eq!(w.stats(A).retransmits, 0);
    w.assert_tunnel_works();
}

#[test]
fn duplicated_ike_sa_init_request_gets_the_same_response() {
    let mut b = responder_any(endpoint_config(), 3);
    let mut x = crafter(4);
    let t0 = Instant::now();
    let r = init_request(&mut x, t0);
    let first = feed(&mut b, t0, addr(A_ADDR, 500), &r);
    let second = feed(&mut b, t0 + secs(1.0), addr(A_ADDR, 500), &r);
    assert_eq!(first.len(), 1);
    assert_eq!(first, second);
    assert_eq!(b.stats().retransmitted_requests, 1);
    assert_eq!(b.ike_sas().count(), 1);
}

#[test]
fn out_of_window_messages_are_ignored_and_counted() {
    let mut w = World::standard();
    let id = w.establish();
    let now = w.instant();
    w.nodes[A].ep.liveness(now, id).unwrap();
    w.drain(A);
    w.run_for(secs(1.0));
    let find = |w: &World, i: usize, ex: ExchangeType, response: bool| -> Transmit {
        w.sent_since(i, Duration::ZERO)
            .into_iter()
            .find(|(_, h, _)| h.exchange == ex && h.is_response() == response)
            .map(|(_, _, t)| t.clone())
            .unwrap()
    };
    let old_auth_request = find(&w, A, ExchangeType::IKE_AUTH, false);
    let old_auth_response = find(&w, B, ExchangeType::IKE_AUTH, true);
    let info_response = find(&w, B, ExchangeType::INFORMATIONAL, true);
    let mut future = find(&w, A, ExchangeType::INFORMATIONAL, false);
    future.payload[20..24].copy_from_slice(&9u32.to_be_bytes());
    let before = [w.nodes[A].sent.len(), w.nodes[B].sent.len()];
    for t in [old_auth_request, future, old_auth_response, info_response] {
        w.enqueue(Duration::ZERO, t);
    }
    w.run_for(secs(1.0));
    assert_eq!(
        w.stats(B).out_of_window,
        2,
        "an old and a future message ID"
    );
    assert_eq!(
        w.stats(A).out_of_window,
        2,
        "responses to nothing outstanding"
    );
    for i in [A, B] {
        assert_eq!(
            w.nodes[i].sent.len(),
            before[i],
            "node {i} answered nothing"
        );
        assert_eq!(
            w.stats(i).integrity_failed,
            0,
            "node {i}: dropped before decryption"
        );
        assert_eq!(w.stats(i).retransmitted_requests, 0);
    }
    let now = w.instant();
    w.nodes[A].ep.liveness(now, id).unwrap();
    w.drain(A);
    w.run_for(secs(1.0));
    assert_eq!(
        w.nodes[B].sent.len(),
        before[B] + 1,
        "the next request is answered"
    );
    assert_eq!(w.stats(A).retransmits, 0);
}

#[test]
fn corrupted_or_forged_encrypted_message_fails_integrity_and_changes_nothing() {
    // (what is changed in A's first transmission of a liveness request)
    type Corruption = (&'static str, fn(&mut Vec<u8>));
    let cases: &[Corruption] = &[
        ("last octet of the ICV", |p| *p.last_mut().unwrap() ^= 1),
        ("first ciphertext octet", |p| p[28 + 4 + 8] ^= 0x80),
        ("exchange type in the header (AAD)", |p| {
            p[18] = ExchangeType::CREATE_CHILD_SA.0
        }),
        ("a whole message under another key", |p| {
            let h = Header::parse(p).unwrap();
            let aead = SkAead::new(&[7; 20]).unwrap();
            *p = protect::seal(&h, &[], &aead, [1; 8]);
        }),
    ];
    let mut w = World::standard();
    let id = w.establish();
    for (k, (what, corrupt)) in cases.iter().enumerate() {
        let corrupt = *corrupt;
        let mut done = false;
        w.tap = Box::new(move |_, from, mut t| {
            if from == A && !done && is_request(&t, ExchangeType::INFORMATIONAL) {
                done = true;
                corrupt(&mut t.payload);
            }
            vec![(Duration::ZERO, t)]
        });
        let t1 = w.now;
        let now = w.instant();
        w.nodes[A].ep.liveness(now, id).unwrap();
        w.drain(A);
        w.run_for(secs(0.4));
        assert_eq!(
            w.stats(B).integrity_failed,
            k as u64 + 1,
            "{what}\n{}",
            w.dump()
        );
        assert!(
            w.sent_since(B, t1).is_empty(),
            "{what}: no answer to a forgery"
        );
        w.run_for(secs(2.0));
        // A's retransmission is the first request B accepts with this ID.
        let answers = w.sent_since(B, t1);
        assert_eq!(answers.len(), 1, "{what}");
        assert_eq!(
            w.stats(B).retransmitted_requests,
            0,
            "{what}: the forgery was not cached"
        );
        assert_eq!(w.stats(A).retransmits, k as u64 + 1, "{what}");
    }
    assert_eq!(w.established(A), vec![id]);
    assert_eq!(w.established(B).len(), 1);
    w.assert_tunnel_works();
}

// ---------------------------------------------------------------------------------------------
// IKE fragmentation (RFC 7383)
// ---------------------------------------------------------------------------------------------

/// A and B with large IKE_AUTH messages (four ESP proposals, six selectors a side) and
/// `fragment_size` `size`.
fn fragmenting(frag_a: bool, frag_b: bool, size: usize) -> World {
    let mut c = endpoint_config();
    c.fragment_size = size;
    let esp = [
        "aes128gcm16-x25519",
        "aes256gcm16-x25519",
        "aes128gcm16-ecp256-esn",
        "aes256gcm16-ecp384-esn-noesn",
    ];
    let nets = |first: &str, odd: u8| {
        let mut v = vec![v4(first, 24)];
        v.extend((0..5u8).map(|k| ts::prefix(IpAddr::from([10, 2 * k + odd, 0, 0]), 16)));
        v
    };
    let (nets_a, nets_b) = (nets("198.19.1.0", 1), nets("198.19.2.0", 0));
    let mut a = peer(Side::A, &["aes128gcm16-prfsha256-x25519"], &esp);
    let mut b = peer(Side::B, &["aes128gcm16-prfsha256-x25519"], &esp);
    (a.local_ts, a.remote_ts, a.fragmentation) = (nets_a.clone(), nets_b.clone(), frag_a);
    (b.local_ts, b.remote_ts, b.fragmentation) = (nets_b, nets_a, frag_b);
    World::two(a, b, c.clone(), c)
}

/// The IKE_AUTH datagrams node `i` sent, with their SKF (number, total) if fragments.
fn auth_datagrams(w: &World, i: usize) -> Vec<(usize, Option<(u16, u16)>)> {
    w.sent_since(i, Duration::ZERO)
        .into_iter()
        .filter(|(_, h, _)| h.exchange == ExchangeType::IKE_AUTH)
        .map(|(_, h, t)| {
            let skf = (h.next_payload == PayloadType::SKF).then(|| {
                match Message::parse(ike_bytes(t)).unwrap().payloads.as_slice() {
                    [Payload::Skf(f)] => (f.fragment_number, f.total_fragments),
                    other => panic!("SKF header but {other:?}"),
                }
            });
            (t.payload.len(), skf)
        })
        .collect()
}

#[test]
fn ike_auth_is_sent_in_fragments_and_reassembled() {
    let size = 300;
    let mut w = fragmenting(true, true, size);
    w.establish();
    for i in [A, B] {
        let d = auth_datagrams(&w, i);
        assert!(d.len() >= 2, "node {i}: {d:?}");
        let n = d.len() as u16;
        let numbers: Vec<Option<(u16, u16)>> = d.iter().map(|(_, f)| *f).collect();
        assert_eq!(
            numbers,
            (1..=n).map(|k| Some((k, n))).collect::<Vec<_>>(),
            "node {i}"
        );
        assert!(d.iter().all(|(len, _)| *len <= size), "node {i}: {d:?}");
        // IKE_SA_INIT is never fragmented (RFC 7383 §2.5).
        assert!(
            w.sent_since(i, Duration::ZERO)
                .iter()
                .all(|(_, h, _)| h.exchange != ExchangeType::IKE_SA_INIT
                    || h.next_payload != PayloadType::SKF)
        );
        assert_eq!(w.stats(i).fragments_dropped, 0, "node {i}");
    }
}

#[test]
fn reordered_and_duplicated_fragments_still_reassemble() {
    let mut w = fragmenting(true, true, 300);
    w.tap = Box::new(|_, _, t| {
        let skf = Message::parse(ike_bytes(&t))
            .ok()
            .and_then(|m| match m.payloads.as_slice() {
                [Payload::Skf(f)] => Some((f.fragment_number, f.total_fragments)),
                _ => None,
            });
        match skf {
            // Last fragment first, and every one twice.
            Some((k, n)) => {
                let later = secs(0.01 * f64::from(n - k));
                vec![(later, t.clone()), (later + secs(0.003), t)]
            }
            None => vec![(Duration::ZERO, t)],
        }
    });
    w.establish();
    for i in [A, B] {
        assert!(
            auth_datagrams(&w, i).iter().all(|(_, f)| f.is_some()),
            "node {i} fragmented"
        );
        assert_eq!(w.stats(i).retransmits, 0, "node {i}");
    }
    assert!(w.violations.is_empty(), "{}", w.dump());
}

#[test]
fn no_fragments_when_either_side_has_fragmentation_off() {
    for (frag_a, frag_b) in [(false, true), (true, false), (false, false)] {
        let mut w = fragmenting(frag_a, frag_b, 300);
        w.establish();
        for i in [A, B] {
            let d = auth_datagrams(&w, i);
            assert_eq!(d.len(), 1, "A {frag_a} B {frag_b}: node {i} {d:?}");
            assert!(
                d[0].1.is_none() && d[0].0 > 300,
                "node {i}: one large SK message {d:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// NAT traversal (§2.23, RFC 3948)
// ---------------------------------------------------------------------------------------------

const NAT_IP: &str = "203.0.113.7";

/// A NAT in front of A: A's ports 500 and 4500 appear as 203.0.113.7:40500 and :44500.
fn nat_tap() -> Tap {
    let public: IpAddr = NAT_IP.parse().unwrap();
    Box::new(move |_, from, mut t| {
        if from == A {
            let port = if t.local.port() == 4500 { 44500 } else { 40500 };
            t.local = SocketAddr::new(public, port);
        } else if t.remote.ip() == public {
            t.remote = match t.remote.port() {
                40500 => addr(A_ADDR, 500),
                44500 => addr(A_ADDR, 4500),
                _ => return Vec::new(),
            };
        }
        vec![(Duration::ZERO, t)]
    })
}

fn has_marker(t: &Transmit) -> bool {
    t.payload.starts_with(&[0, 0, 0, 0])
}

/// Everything after IKE_SA_INIT on 4500 with the marker, and the CHILD_SAs UDP-encapsulated
/// between these addresses.
fn assert_on_natt(w: &World, a_remote: SocketAddr, b_remote: SocketAddr) {
    // (node, our address, the peer's address as we see it)
    for (i, local, remote) in [
        (A, addr(A_ADDR, 4500), a_remote),
        (B, addr(B_ADDR, 4500), b_remote),
    ] {
        for (_, h, t) in w.sent_since(i, Duration::ZERO) {
            if h.exchange == ExchangeType::IKE_SA_INIT {
                assert_eq!(t.local.port(), 500);
                continue;
            }
            assert_eq!(
                (t.local, t.remote),
                (local, remote),
                "node {i} {h:?}\n{}",
                w.dump()
            );
            assert!(has_marker(t), "node {i}: non-ESP marker");
        }
        for (_, t) in &w.nodes[i].received {
            if t.remote.port() == 4500 {
                assert!(has_marker(t), "node {i} received on 4500 without marker");
            }
        }
        let installed = w.installed(i);
        assert!(!installed.is_empty());
        for p in installed {
            assert!(p.udp_encap, "node {i}: {p:?}");
            assert_eq!((p.local, p.remote), (local, remote), "node {i}");
        }
        let sa = w.nodes[i].ep.ike_sas().next().unwrap();
        assert!(sa.natt(), "node {i}");
        assert_eq!((sa.local(), sa.remote()), (local, remote), "node {i}");
    }
}

#[test]
fn nat_in_front_of_the_initiator_moves_both_to_4500_with_udp_encapsulation() {
    let mut b = std_peer(Side::B);
    b.remote_addr = None;
    let mut w = World::two(std_peer(Side::A), b, endpoint_config(), endpoint_config());
    w.tap = nat_tap();
    w.establish();
    let nat_4500 = addr(NAT_IP, 44500);
    for (i, remote) in [(A, addr(B_ADDR, 4500)), (B, nat_4500)] {
        assert!(
            w.events(i).iter().any(
                |e| matches!(e, Event::IkeEstablished { nat: true, remote: r, .. } if *r == remote)
            ),
            "node {i}: {:?}",
            w.events(i)
        );
    }
    assert_on_natt(&w, addr(B_ADDR, 4500), nat_4500);
    // B's own request reaches A through the NAT mapping.
    let ike_b = w.established(B)[0];
    let now = w.instant();
    w.nodes[B].ep.liveness(now, ike_b).unwrap();
    w.drain(B);
    w.run_for(secs(2.0));
    assert_eq!(w.stats(B).retransmits, 0, "{}", w.dump());
    assert_on_natt(&w, addr(B_ADDR, 4500), nat_4500);
}

/// Establishes A and B where `forcing` has `Encapsulation::Udp` and no NAT is in between.
fn forced_udp(forcing: usize) -> World {
    let (mut a, mut b) = (std_peer(Side::A), std_peer(Side::B));
    let forced = if forcing == A { &mut a } else { &mut b };
    forced.encapsulation = Encapsulation::Udp;
    let mut w = World::two(a, b, endpoint_config(), endpoint_config());
    w.establish();
    w
}

#[test]
fn udp_encapsulation_forced_by_the_initiator_without_nat() {
    let w = forced_udp(A);
    assert_on_natt(&w, addr(B_ADDR, 4500), addr(A_ADDR, 4500));
}

#[test]
fn udp_encapsulation_forced_by_the_responder_without_nat() {
    // `Encapsulation::Udp`: "Always UDP port 4500" — as responder too (strongSwan's
    // encap=yes fakes the NAT_DETECTION_SOURCE_IP hash so that the initiator floats).
    let w = forced_udp(B);
    assert_on_natt(&w, addr(B_ADDR, 4500), addr(A_ADDR, 4500));
}

#[test]
fn fragments_on_port_4500_fit_fragment_size_including_the_marker() {
    let size = 300;
    let mut w = fragmenting(true, true, size);
    w.nodes[B].ep = {
        let mut b = w.nodes[B].ep.peers()[0].clone();
        b.remote_addr = None;
        let mut c = endpoint_config();
        c.fragment_size = size;
        endpoint(c, vec![b], 0xb)
    };
    w.tap = nat_tap();
    w.establish();
    for i in [A, B] {
        let d = auth_datagrams(&w, i);
        assert!(d.len() >= 2, "node {i}: {d:?}");
        assert!(
            d.iter().all(|(len, _)| *len <= size),
            "node {i}: UDP payloads {d:?} (fragment_size {size})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// INITIAL_CONTACT (§2.4)
// ---------------------------------------------------------------------------------------------

#[test]
fn initial_contact_after_a_restart_removes_the_stale_sas_at_once() {
    let mut w = World::standard();
    w.establish();
    let b_old = w.established(B)[0];
    let (b_child, b_spis) = child_spis(&w, B, b_old);
    // A restarts: a fresh endpoint with the same configuration and an empty data plane.
    w.nodes[A].ep = endpoint(endpoint_config(), vec![std_peer(Side::A)], 0xa2);
    w.nodes[A].dp = Dp::default();
    let t1 = w.now;
    let new = w.initiate(A);
    w.run_for(secs(2.0));
    assert_eq!(w.established(A), vec![new], "{}", w.dump());
    let b_now = w.established(B);
    assert_eq!(b_now.len(), 1, "{}", w.dump());
    assert_ne!(b_now[0], b_old);
    assert_eq!(w.nodes[B].ep.ike_sas().count(), 1);
    let events: Vec<&Event> = w.nodes[B]
        .events
        .iter()
        .filter(|(t, _)| *t >= t1)
        .map(|(_, e)| e)
        .collect();
    assert!(
        events.contains(&&Event::IkeDeleted {
            ike: b_old,
            reason: DeleteReason::InitialContact
        }),
        "{events:?}"
    );
    assert!(events.iter().any(|e| matches!(e, Event::ChildDeleted { child, reason: DeleteReason::InitialContact, .. } if *child == b_child)), "{events:?}");
    let actions: Vec<&Action> = w.nodes[B]
        .actions
        .iter()
        .filter(|(t, _)| *t >= t1)
        .map(|(_, a)| a)
        .collect();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::RetireInbound { spi, .. } if *spi == b_spis.0)),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::RemoveOutbound { spi, .. } if *spi == b_spis.1)),
        "{actions:?}"
    );
    // No DELETE exchange for the stale SA: B sent only the IKE_SA_INIT and IKE_AUTH responses.
    let sent: Vec<ExchangeType> = w
        .sent_since(B, t1)
        .into_iter()
        .map(|(_, h, _)| h.exchange)
        .collect();
    assert_eq!(
        sent,
        vec![ExchangeType::IKE_SA_INIT, ExchangeType::IKE_AUTH]
    );
    w.assert_tunnel_works();
}

#[test]
fn a_second_ike_sa_without_restart_keeps_the_first() {
    let mut w = World::standard();
    let first = w.establish();
    let second = w.initiate(A);
    w.run_for(secs(2.0));
    assert_eq!(w.established(A), vec![first, second], "{}", w.dump());
    assert_eq!(w.established(B).len(), 2);
    for i in [A, B] {
        assert_eq!(
            w.count(i, |e| matches!(
                e,
                Event::IkeDeleted { .. } | Event::ChildDeleted { .. }
            )),
            0,
            "node {i}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Crafted requests: unknown payloads (§2.5) and versions (§2.5, §3.1)
// ---------------------------------------------------------------------------------------------

/// An IKE initiator built by hand from the msgs and crypto modules, so that its messages can
/// carry what an espada endpoint never sends. Its identity and PSK are A's.
struct RawInitiator {
    spi_i: u64,
    ni: Vec<u8>,
    dh: Option<DhPrivate>,
    public: Vec<u8>,
    request: Vec<u8>,
    response: Vec<u8>,
    keys: Option<IkeSaKeys>,
}

const RAW_PRF: PrfAlg = PrfAlg::HmacSha256;

impl RawInitiator {
    fn new(seed: u64) -> RawInitiator {
        let mut rng = TestRandom::new(seed);
        let (dh, public) = DhAlg::Curve25519.generate(&mut rng).unwrap();
        let mut ni = vec![0; 32];
        espada_ike::rng::Random::fill(&mut rng, &mut ni);
        let spi_i = espada_ike::rng::Random::next_u64(&mut rng) | 1;
        RawInitiator {
            spi_i,
            ni,
            dh: Some(dh),
            public,
            request: Vec::new(),
            response: Vec::new(),
            keys: None,
        }
    }

    fn header(&self, exchange: ExchangeType, spi_r: u64, mid: u32) -> Header {
        Header {
            spi_i: self.spi_i,
            spi_r,
            next_payload: PayloadType::NONE,
            major_version: 2,
            minor_version: 0,
            exchange,
            flags: Header::FLAG_INITIATOR,
            message_id: mid,
            length: 0,
        }
    }

    /// IKE_SA_INIT request: SA, KE, Nonce and then `extra`.
    fn init(&mut self, extra: Vec<Payload>) -> Vec<u8> {
        let ike = IkeProposal::parse("aes128gcm16-prfsha256-x25519").unwrap();
        let mut payloads = vec![
            Payload::Sa(proposal::ike_sa_payload(&[ike], &[])),
            Payload::Ke(KePayload {
                group: DhGroup(DhAlg::Curve25519.id()),
                data: self.public.clone(),
            }),
            Payload::Nonce(Nonce(self.ni.clone())),
        ];
        payloads.extend(extra);
        self.request = Message {
            header: self.header(ExchangeType::IKE_SA_INIT, 0, 0),
            payloads,
        }
        .emit();
        self.request.clone()
    }

    /// IKE_AUTH request for the IKE_SA_INIT `response`, proving A's identity with `psk`.
    fn auth(&mut self, response: &[u8], psk: &[u8]) -> Vec<u8> {
        let m = Message::parse(response).unwrap();
        let nr = m.nonce().unwrap().0.clone();
        let g_ir = self
            .dh
            .take()
            .unwrap()
            .agree(&m.ke().unwrap().data)
            .unwrap();
        let spi_r = m.header.spi_r;
        let keymat = Cipher::AesGcm16_128.keymat_len();
        let keys = IkeSaKeys::derive(
            RAW_PRF,
            keymat,
            &self.ni,
            &nr,
            g_ir.expose(),
            self.spi_i,
            spi_r,
        )
        .unwrap();
        let idi = Identity::Fqdn("a.example".into()).to_wire();
        let auth = Authenticator::Psk(Secret::from_slice(psk)).sign(
            RAW_PRF,
            &SignedOctets {
                real_message: &self.request,
                peer_nonce: &nr,
                sk_p: keys.sk_pi.expose(),
                id_body: &idi.body(),
            },
        );
        let esp = EspProposal::parse("aes128gcm16").unwrap();
        let payloads = vec![
            Payload::IdI(idi),
            Payload::Auth(auth),
            Payload::Sa(proposal::esp_sa_payload(&[esp], 0x1234_5678, false)),
            Payload::TsI(TrafficSelectors(vec![v4("198.19.1.0", 24)])),
            Payload::TsR(TrafficSelectors(vec![v4("198.19.2.0", 24)])),
        ];
        let aead = SkAead::new(keys.sk_ei.expose()).unwrap();
        let out = protect::seal(
            &self.header(ExchangeType::IKE_AUTH, spi_r, 1),
            &payloads,
            &aead,
            [0, 0, 0, 0, 0, 0, 0, 1],
        );
        self.response = response.to_vec();
        self.keys = Some(keys);
        out
    }

    /// Opens the IKE_AUTH response and checks the responder's AUTH (B's identity and PSK).
    fn check_auth_response(&self, datagram: &[u8], psk: &[u8]) -> Message {
        let keys = self.keys.as_ref().unwrap();
        let m = protect::open(datagram, &SkAead::new(keys.sk_er.expose()).unwrap()).unwrap();
        let idr = m.id_r().expect("IDr");
        assert_eq!(
            Identity::from_wire(idr),
            Some(Identity::Fqdn("b.example".into()))
        );
        let nr = Message::parse(&self.response)
            .unwrap()
            .nonce()
            .unwrap()
            .0
            .clone();
        let proven = Authenticator::Psk(Secret::from_slice(psk)).verify(
            RAW_PRF,
            &SignedOctets {
                real_message: &self.response,
                peer_nonce: &self.ni,
                sk_p: keys.sk_pr.expose(),
                id_body: &idr.body(),
            },
            m.auth().expect("AUTH"),
        );
        assert!(proven, "the responder's AUTH verifies");
        assert_ne!(nr, self.ni);
        m
    }
}

fn unknown_payload(critical: bool) -> Payload {
    Payload::Unknown {
        ty: PayloadType(200),
        critical,
        body: b"from the future".to_vec(),
    }
}

#[test]
fn unknown_critical_payload_is_answered_with_unsupported_critical_payload() {
    let mut b = endpoint(endpoint_config(), vec![std_peer(Side::B)], 2);
    let mut raw = RawInitiator::new(1);
    let request = raw.init(vec![unknown_payload(true)]);
    let answer = feed(&mut b, Instant::now(), addr(A_ADDR, 500), &request);
    assert_eq!(answer.len(), 1);
    let m = Message::parse(ike_bytes(&answer[0])).unwrap();
    assert!(m.header.is_response() && !m.header.is_initiator());
    assert_eq!(
        (m.header.spi_i, m.header.spi_r, m.header.message_id),
        (raw.spi_i, 0, 0)
    );
    assert_eq!(
        m.payloads,
        vec![Payload::Notify(Notify::new(
            NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
            vec![200]
        ))]
    );
    assert_eq!(b.stats().unsupported_critical, 1);
    assert_eq!(b.ike_sas().count(), 0, "no state for a refused request");
}

#[test]
fn unknown_non_critical_payload_is_ignored_and_the_exchange_succeeds() {
    let mut b = endpoint(endpoint_config(), vec![std_peer(Side::B)], 2);
    let mut raw = RawInitiator::new(1);
    let t0 = Instant::now();
    let request = raw.init(vec![
        unknown_payload(false),
        Payload::VendorId(b"someone".to_vec()),
    ]);
    let answer = feed(&mut b, t0, addr(A_ADDR, 500), &request);
    assert_eq!(answer.len(), 1);
    let m = Message::parse(&answer[0].payload).unwrap();
    assert!(
        m.first_sa().is_some() && m.ke().is_some() && m.nonce().is_some(),
        "{m:?}"
    );
    let auth = raw.auth(&answer[0].payload, b"psk-espada");
    let answer = feed(&mut b, t0, addr(A_ADDR, 500), &auth);
    assert_eq!(answer.len(), 1, "{:?}", b.stats());
    let m = raw.check_auth_response(&answer[0].payload, b"psk-espada");
    assert!(
        m.first_sa().is_some() && m.ts_i().is_some() && m.ts_r().is_some(),
        "CHILD_SA answered: {m:?}"
    );
    let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::IkeEstablished { .. })),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::ChildEstablished {
                spis: (_, 0x1234_5678),
                ..
            }
        )),
        "{events:?}"
    );
    assert_eq!(b.stats().unsupported_critical, 0);
    assert_eq!(b.stats().invalid_syntax, 0);
}

#[test]
fn other_major_version_is_answered_with_invalid_major_version() {
    // (version octet, refused)
    let cases = [(0x30u8, true), (0x20 | 0x01, false), (0x10, true)];
    for (version, refused) in cases {
        let mut b = endpoint(endpoint_config(), vec![std_peer(Side::B)], 2);
        let mut raw = RawInitiator::new(1);
        let mut request = raw.init(Vec::new());
        request[17] = version;
        let answer = feed(&mut b, Instant::now(), addr(A_ADDR, 500), &request);
        assert_eq!(answer.len(), 1, "version {version:#x}");
        let m = Message::parse(ike_bytes(&answer[0])).unwrap();
        assert_eq!(
            (m.header.major_version, m.header.minor_version),
            (2, 0),
            "we answer as 2.0"
        );
        assert!(m.header.is_response());
        assert_eq!(
            (m.header.spi_i, m.header.message_id, m.header.exchange),
            (raw.spi_i, 0, ExchangeType::IKE_SA_INIT)
        );
        let notify = vec![Payload::Notify(Notify::new(
            NotifyType::INVALID_MAJOR_VERSION,
            vec![],
        ))];
        assert_eq!(m.payloads == notify, refused, "version {version:#x}: {m:?}");
        assert_eq!(b.stats().invalid_major_version, u64::from(refused));
        assert_eq!(
            b.ike_sas().count(),
            usize::from(!refused),
            "a minor version is ignored (§2.5)"
        );
    }
}

#[test]
fn response_of_another_major_version_is_not_answered() {
    let mut b = endpoint(endpoint_config(), vec![std_peer(Side::B)], 2);
    let mut raw = RawInitiator::new(1);
    let mut request = raw.init(Vec::new());
    request[17] = 0x30;
    request[19] |= Header::FLAG_RESPONSE;
    assert!(
        feed(&mut b, Instant::now(), addr(A_ADDR, 500), &request).is_empty(),
        "no answer to a response"
    );
    assert_eq!(b.stats().invalid_major_version, 1);
}

#[test]
fn cookie_then_invalid_ke_keeps_the_cookie_in_every_retry() {
    let mut cb = endpoint_config();
    cb.cookie_threshold = 0;
    let mut w = World::two(
        peer(
            Side::A,
            &["aes128gcm16-prfsha256-x25519-ecp256"],
            &["aes128gcm16"],
        ),
        peer(Side::B, &["aes128gcm16-prfsha256-ecp256"], &["aes128gcm16"]),
        endpoint_config(),
        cb,
    );
    w.establish();
    let inits: Vec<Message> = w
        .sent_since(A, Duration::ZERO)
        .into_iter()
        .filter(|(_, h, _)| h.exchange == ExchangeType::IKE_SA_INIT)
        .map(|(_, _, t)| Message::parse(ike_bytes(t)).unwrap())
        .collect();
    // No cookie, X25519 → COOKIE; cookie, X25519 → INVALID_KE; cookie, ECP-256 → accepted.
    let shape: Vec<(bool, DhGroup)> = inits
        .iter()
        .map(|m| {
            (
                m.notify(NotifyType::COOKIE).is_some(),
                m.ke().unwrap().group,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (false, DhGroup(31)),
            (true, DhGroup(31)),
            (true, DhGroup(19))
        ]
    );
    assert_eq!(
        (
            w.stats(B).cookies_sent,
            w.stats(B).invalid_ke_sent,
            w.stats(B).bad_cookies
        ),
        (1, 1, 0)
    );
}

#[test]
fn late_duplicate_of_ike_sa_init_creates_no_second_ike_sa() {
    // A copy of the IKE_SA_INIT request that the network delivers after IKE_AUTH completed
    // (§2.1: a responder answers a retransmission, it does not start over).
    let mut w = World::standard();
    w.tap = Box::new(|_, from, t| {
        if from == A && is_request(&t, ExchangeType::IKE_SA_INIT) {
            vec![(Duration::ZERO, t.clone()), (secs(1.0), t)]
        } else {
            vec![(Duration::ZERO, t)]
        }
    });
    w.establish();
    w.run_for(secs(2.0));
    assert_eq!(
        w.nodes[B].ep.ike_sas().count(),
        1,
        "{:?}",
        w.nodes[B].ep.ike_sas().collect::<Vec<_>>()
    );
}

/// The SKF (number, total) of a datagram, if it is a fragment.
fn fragment_of(t: &Transmit) -> Option<(u16, u16)> {
    match Message::parse(ike_bytes(t)).ok()?.payloads.as_slice() {
        [Payload::Skf(f)] => Some((f.fragment_number, f.total_fragments)),
        _ => None,
    }
}

#[test]
fn retransmitted_fragmented_request_gets_the_cached_fragments_once() {
    let mut w = fragmenting(true, true, 300);
    // B's first IKE_AUTH response (all its fragments) is lost.
    w.tap = Box::new(|t, from, x| {
        let auth_response = Header::parse(ike_bytes(&x))
            .is_ok_and(|h| h.exchange == ExchangeType::IKE_AUTH && h.is_response());
        if from == B && auth_response && t < secs(0.1) {
            Vec::new()
        } else {
            vec![(Duration::ZERO, x)]
        }
    });
    w.establish();
    let requests = auth_datagrams(&w, A);
    let responses = auth_datagrams(&w, B);
    let n = requests[0].1.unwrap().1 as usize;
    let m = responses[0].1.unwrap().1 as usize;
    assert!(n >= 2 && m >= 2, "{requests:?} {responses:?}");
    assert_eq!(requests.len(), 2 * n, "A sent all its fragments twice");
    assert_eq!(responses.len(), 2 * m, "B resent its cached fragments once");
    assert_eq!(
        w.stats(B).retransmitted_requests,
        1,
        "only fragment 1 triggers the cache"
    );
    assert_eq!(w.stats(A).retransmits, 1);
}

#[test]
fn corrupted_fragment_is_dropped_and_the_retransmission_completes_the_message() {
    let mut w = fragmenting(true, true, 300);
    let mut done = false;
    w.tap = Box::new(move |_, from, mut x| {
        if from == A && !done && fragment_of(&x).is_some_and(|(k, _)| k == 2) {
            done = true;
            let last = x.payload.len() - 1;
            x.payload[last] ^= 0x40;
        }
        vec![(Duration::ZERO, x)]
    });
    w.establish();
    assert_eq!(w.stats(B).integrity_failed, 1, "{:?}", w.stats(B));
    assert_eq!(w.stats(A).retransmits, 1);
    let b_auth: Vec<Duration> = w
        .sent_since(B, Duration::ZERO)
        .into_iter()
        .filter(|(_, h, _)| h.exchange == ExchangeType::IKE_AUTH)
        .map(|(t, _, _)| t)
        .collect();
    assert!(
        b_auth.iter().all(|t| *t >= secs(0.5)),
        "no answer before the retransmission: {b_auth:?}"
    );
}
