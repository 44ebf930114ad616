//! The check of the `ike_responder` fuzz target (`crates/ike/fuzz`): an arbitrary sequence of
//! datagrams, timer runs and commands against an [`Endpoint`] configured as a responder. Shared
//! by the fuzz target (through `#[path]`) and `tests/fuzz_responder_corpus.rs`, which replays
//! the seed corpus on stable, so both check the same properties.
//!
//! Input: a sequence of records, each starting with an `op` octet:
//!
//! * bit 7 clear — a **datagram**: two octets of length (big endian), then that many octets of
//!   UDP payload (a missing tail is taken as it is). Bits 0–2 pick the source address in
//!   [`SOURCES`], bit 3 sends it from and to port 4500 (the payload must then carry the
//!   non-ESP marker itself), bits 4–6 advance the clock by [`ADVANCE`]`[n]` first.
//! * bit 7 set — a **control** record without payload: advance the clock by bits 4–6, run
//!   `handle_timeout`, then carry out [`Command`] number bits 0–3 (a command of the responder
//!   itself: liveness, rekeys, deletes, data-plane traffic).
//!
//! After every record the outputs are drained and checked: no panic; the data-plane actions
//! are consistent (nothing installed twice, nothing removed that was not installed, switches
//! only to installed outbound SAs); half-open IKE SAs never exceed `half_open_limit` and all
//! IKE SAs are bounded by what was established; a timer run leaves no timer due; every
//! datagram sent leaves from the responder's address on 500 or 4500 (with the marker on 4500)
//! and starts with an IKE header; one input never makes more than [`MAX_SENT_PER_INPUT`]
//! datagrams per IKE SA.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use espada_ike::auth::Authenticator;
use espada_ike::config::{Encapsulation, EndpointConfig, Identity, PeerConfig, Retransmit};
use espada_ike::exchange::{Action, ChildId, Endpoint, Event, RandomSpis, Stats, Transmit};
use espada_ike::msgs::Header;
use espada_ike::proposal::{EspProposal, IkeProposal};
use espada_ike::rng::TestRandom;
use espada_ike::secret::Secret;
use espada_ike::ts;

/// The responder's IPv4 address (and the one of its IPv6 address for IPv6 sources).
pub const RESPONDER_V4: [u8; 4] = [198, 18, 0, 2];
/// The responder's IPv6 address.
pub const RESPONDER_V6: [u16; 8] = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 2];

/// Where datagrams come from: (address, source port when sent to 500).
pub const SOURCES: [([u8; 4], u16); 7] = [
    // The configured peer (peer 0 names it).
    ([198, 18, 0, 1], 500),
    // strongSwan's lab initiator.
    ([198, 18, 10, 1], 500),
    // A NAT in front of the peer.
    ([203, 0, 113, 7], 40500),
    ([203, 0, 113, 8], 500),
    ([192, 0, 2, 77], 1701),
    ([198, 51, 100, 1], 500),
    ([198, 51, 100, 2], 500),
];
/// Source index 7: this IPv6 address, port 500.
pub const SOURCE_V6: [u16; 8] = [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1];

/// Clock advance per bits 4–6 of `op`, in milliseconds.
pub const ADVANCE_MS: [u64; 8] = [0, 1, 100, 1_000, 5_000, 31_000, 121_000, 3_600_000];

/// The PSK both configured peers use.
pub const PSK: &[u8] = b"psk-espada";

/// Datagrams one input may make per IKE SA (a fragmented response, at most).
pub const MAX_SENT_PER_INPUT: usize = 16;

/// A command of the responder (control records, bits 0–3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Only the timer run.
    None = 0,
    /// Liveness check on the first established IKE SA.
    Liveness = 1,
    /// Rekey of the first CHILD_SA.
    RekeyChild = 2,
    /// Rekey of the first established IKE SA.
    RekeyIke = 3,
    /// One more CHILD_SA on the first established IKE SA.
    CreateChild = 4,
    /// Delete of the first CHILD_SA.
    DeleteChild = 5,
    /// Delete of the first established IKE SA.
    DeleteIke = 6,
    /// A packet arrives on every inbound SA that asked for its first packet to be reported.
    Traffic = 7,
}

const COMMANDS: [Command; 8] = [
    Command::None,
    Command::Liveness,
    Command::RekeyChild,
    Command::RekeyIke,
    Command::CreateChild,
    Command::DeleteChild,
    Command::DeleteIke,
    Command::Traffic,
];

/// One decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A datagram from `source` (index), to 4500 if `natt`, after advancing by `advance`.
    Datagram {
        source: u8,
        natt: bool,
        advance: u8,
        payload: Vec<u8>,
    },
    /// Advance, run the timers, then the command.
    Control { advance: u8, command: Command },
}

impl Record {
    /// The record's encoding.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Record::Datagram {
                source,
                natt,
                advance,
                payload,
            } => {
                let op = (source & 7) | (u8::from(*natt) << 3) | ((advance & 7) << 4);
                let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
                let mut out = vec![op];
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&payload[..usize::from(len)]);
                out
            }
            Record::Control { advance, command } => {
                vec![0x80 | ((advance & 7) << 4) | *command as u8]
            }
        }
    }
}

/// Splits an input into records; never fails (a truncated tail is taken as it is).
pub fn records(mut data: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some((&op, rest)) = data.split_first() {
        let advance = (op >> 4) & 7;
        if op & 0x80 != 0 {
            let command = COMMANDS
                .get(usize::from(op & 0x0f))
                .copied()
                .unwrap_or(Command::None);
            out.push(Record::Control { advance, command });
            data = rest;
            continue;
        }
        let len = match rest {
            [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
            _ => 0,
        };
        let body = rest.get(2..).unwrap_or(&[]);
        let take = len.min(body.len());
        out.push(Record::Datagram {
            source: op & 7,
            natt: op & 8 != 0,
            advance,
            payload: body[..take].to_vec(),
        });
        data = &body[take..];
    }
    out
}

/// The responder's endpoint configuration: small limits so that inputs reach them.
pub fn endpoint_config() -> EndpointConfig {
    EndpointConfig {
        retransmit: Retransmit {
            base: Duration::from_secs(1),
            factor: 2.0,
            max_wait: Duration::from_secs(8),
            tries: 4,
        },
        fragment_size: 400,
        max_fragments: 8,
        max_message: 8192,
        cookie_threshold: 4,
        half_open_limit: 8,
        half_open_timeout: Duration::from_secs(30),
        cookie_rotation: Duration::from_secs(60),
        temporary_failure_retry: Duration::from_secs(2),
        initial_child_activation: Duration::from_secs(2),
        delete_timeout: Duration::from_secs(10),
    }
}

/// The responder's side of the peer (`remote`: `None` accepts it from anywhere).
fn peer(remote: Option<IpAddr>) -> PeerConfig {
    PeerConfig {
        name: String::from("fuzz"),
        local_addr: IpAddr::from(RESPONDER_V4),
        remote_addr: remote,
        local_id: Identity::Fqdn(String::from("b.example")),
        remote_id: Identity::Fqdn(String::from("a.example")),
        auth: Authenticator::Psk(Secret::from_slice(PSK)),
        ike_proposals: [
            "aes128gcm16-prfsha256-x25519-ecp256",
            "aes256gcm16-prfsha384-ecp384-modp2048",
        ]
        .iter()
        .filter_map(|s| IkeProposal::parse(s).ok())
        .collect(),
        esp_proposals: [
            "aes128gcm16-x25519-noesn",
            "aes256gcm16-modp2048-ecp384-esn-noesn",
            "aes128gcm16",
        ]
        .iter()
        .filter_map(|s| EspProposal::parse(s).ok())
        .collect(),
        local_ts: vec![ts::prefix(IpAddr::from([198, 19, 2, 0]), 24)],
        remote_ts: vec![ts::prefix(IpAddr::from([198, 19, 1, 0]), 24)],
        encapsulation: Encapsulation::Auto,
        fragmentation: true,
    }
}

/// The peers of the responder: the peer at source 0, and the same identity from anywhere.
pub fn peers() -> Vec<PeerConfig> {
    vec![peer(Some(IpAddr::from(SOURCES[0].0))), peer(None)]
}

/// The source address and the responder's address for a datagram record.
pub fn addresses(source: u8, natt: bool) -> (SocketAddr, SocketAddr) {
    let port = |p500: u16| {
        if natt {
            p500.wrapping_add(4000).max(1)
        } else {
            p500
        }
    };
    let local_port = if natt {
        espada_ike::NATT_PORT
    } else {
        espada_ike::IKE_PORT
    };
    match SOURCES.get(usize::from(source)) {
        Some((ip, p)) => (
            SocketAddr::new(IpAddr::from(*ip), port(*p)),
            SocketAddr::new(IpAddr::from(RESPONDER_V4), local_port),
        ),
        None => (
            SocketAddr::new(IpAddr::from(SOURCE_V6), port(500)),
            SocketAddr::new(IpAddr::from(RESPONDER_V6), local_port),
        ),
    }
}

/// What the data plane of the responder holds, from its actions.
#[derive(Debug, Default)]
struct DataPlane {
    inbound: HashMap<u32, bool>,
    retired: HashSet<u32>,
    outbound: HashMap<u32, ChildId>,
    active: BTreeMap<ChildId, u32>,
}

impl DataPlane {
    fn apply(&mut self, a: &Action) {
        match a {
            Action::InstallInbound(p) => {
                assert!(
                    !self.retired.contains(&p.spi),
                    "inbound {:08x} installed again",
                    p.spi
                );
                let twice = self.inbound.insert(p.spi, p.report_first_packet).is_some();
                assert!(!twice, "inbound {:08x} installed twice", p.spi);
            }
            Action::InstallOutbound(p) => {
                let twice = self.outbound.insert(p.spi, p.child).is_some();
                assert!(!twice, "outbound {:08x} installed twice", p.spi);
            }
            Action::SwitchOutbound { child, spi } => {
                assert_eq!(
                    self.outbound.get(spi),
                    Some(child),
                    "switch to outbound {spi:08x}"
                );
                self.active.insert(*child, *spi);
            }
            Action::RetireInbound { spi, .. } => {
                assert!(
                    self.inbound.remove(spi).is_some(),
                    "retire of unknown inbound {spi:08x}"
                );
                self.retired.insert(*spi);
            }
            Action::RemoveOutbound { child, spi } => {
                assert!(
                    self.outbound.remove(spi).is_some(),
                    "remove of unknown outbound {spi:08x}"
                );
                if self.active.get(child) == Some(spi) {
                    self.active.remove(child);
                }
            }
        }
    }
}

/// What a run did, for the tests to check a seed does what it is meant to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Datagrams fed.
    pub datagrams: u64,
    /// Datagrams the responder sent.
    pub sent: u64,
    /// IKE SAs established (IKE_AUTH completed) and born from rekeys.
    pub ike_established: u64,
    /// CHILD_SAs established or rekeyed.
    pub children: u64,
    /// Most IKE SAs at once.
    pub max_ike_sas: usize,
    /// The IKE SAs left at the end.
    pub ike_sas_left: usize,
    /// Datagrams sent from port 4500.
    pub natt_sent: u64,
    /// The endpoint's counters at the end.
    pub stats: Stats,
}

/// The responder under test and the checks around it.
pub struct Responder {
    /// The endpoint.
    pub ep: Endpoint,
    start: Instant,
    /// Time since the start.
    pub now: Duration,
    dp: DataPlane,
    /// What happened so far.
    pub summary: Summary,
    /// The datagrams sent by the last input.
    pub last_sent: Vec<Transmit>,
}

impl Default for Responder {
    fn default() -> Self {
        Self::new()
    }
}

impl Responder {
    /// A fresh responder; everything it does follows from the input (fixed seed).
    pub fn new() -> Responder {
        let ep = Endpoint::new(
            endpoint_config(),
            peers(),
            Box::new(TestRandom::new(0x5eed)),
            Box::new(RandomSpis::default()),
        );
        Responder {
            ep,
            start: Instant::now(),
            now: Duration::ZERO,
            dp: DataPlane::default(),
            summary: Summary::default(),
            last_sent: Vec::new(),
        }
    }

    /// The current time as the endpoint sees it.
    pub fn instant(&self) -> Instant {
        self.start + self.now
    }

    fn advance(&mut self, n: u8) {
        let ms = ADVANCE_MS[usize::from(n & 7)];
        self.now += Duration::from_millis(ms);
    }

    /// Handles one record and checks everything that came out of it.
    pub fn step(&mut self, r: &Record) {
        self.last_sent.clear();
        let sas_before = self.ep.ike_sas().count();
        match r {
            Record::Datagram {
                source,
                natt,
                advance,
                payload,
            } => {
                self.advance(*advance);
                let (from, to) = addresses(*source, *natt);
                let now = self.instant();
                self.ep.handle_datagram(now, to, from, payload);
                self.summary.datagrams += 1;
            }
            Record::Control { advance, command } => {
                self.advance(*advance);
                let now = self.instant();
                self.ep.handle_timeout(now);
                self.command(*command);
            }
        }
        self.drain(sas_before.max(1));
        if let Record::Control { .. } = r {
            let now = self.instant();
            // What the timer run left is not due yet (a command may start new timers).
            self.ep.handle_timeout(now);
            self.drain(self.ep.ike_sas().count().max(1));
            let next = self.ep.poll_timeout();
            assert!(
                next.is_none_or(|t| t > now),
                "a timer is still due after handle_timeout"
            );
        }
        self.check_bounds();
    }

    fn command(&mut self, c: Command) {
        let now = self.instant();
        let ike = self
            .ep
            .ike_sas()
            .find(|s| s.is_established())
            .map(|s| s.id());
        let child = self
            .ep
            .ike_sas()
            .flat_map(|s| s.children())
            .next()
            .map(|c| c.id);
        // Commands on SAs that cannot take them fail with an error, which is fine.
        let _ = match (c, ike, child) {
            (Command::Liveness, Some(i), _) => self.ep.liveness(now, i),
            (Command::RekeyChild, _, Some(c)) => self.ep.rekey_child(now, c),
            (Command::RekeyIke, Some(i), _) => self.ep.rekey_ike(now, i),
            (Command::CreateChild, Some(i), _) => self.ep.create_child(now, i).map(|_| ()),
            (Command::DeleteChild, _, Some(c)) => self.ep.delete_child(now, c),
            (Command::DeleteIke, Some(i), _) => self.ep.delete_ike(now, i),
            (Command::Traffic, _, _) => {
                let report: Vec<u32> = self
                    .dp
                    .inbound
                    .iter()
                    .filter(|(_, r)| **r)
                    .map(|(s, _)| *s)
                    .collect();
                for spi in report {
                    self.dp.inbound.insert(spi, false);
                    self.ep.inbound_traffic(now, spi);
                }
                Ok(())
            }
            _ => Ok(()),
        };
    }

    fn drain(&mut self, sas: usize) {
        while let Some(a) = self.ep.poll_action() {
            self.dp.apply(&a);
        }
        let mut sent = 0;
        while let Some(t) = self.ep.poll_transmit() {
            check_transmit(&t);
            self.summary.natt_sent += u64::from(t.local.port() == espada_ike::NATT_PORT);
            self.last_sent.push(t);
            sent += 1;
        }
        assert!(
            sent <= MAX_SENT_PER_INPUT * sas,
            "{sent} datagrams for one input and {sas} IKE SAs"
        );
        self.summary.sent += sent as u64;
        while let Some(e) = self.ep.poll_event() {
            match e {
                Event::IkeEstablished { .. } | Event::IkeRekeyed { .. } => {
                    self.summary.ike_established += 1
                }
                Event::ChildEstablished { .. } | Event::ChildRekeyed { .. } => {
                    self.summary.children += 1
                }
                _ => {}
            }
        }
        assert!(self.ep.poll_action().is_none() && self.ep.poll_transmit().is_none());
    }

    fn check_bounds(&mut self) {
        let limit = endpoint_config().half_open_limit;
        let half_open = self
            .ep
            .ike_sas()
            .filter(|s| s.state_name() == "half-open")
            .count();
        assert!(
            half_open <= limit,
            "{half_open} half-open IKE SAs, limit {limit}"
        );
        let all = self.ep.ike_sas().count();
        // Besides the half-open ones only what was established (or born from a rekey) stays.
        let bound = limit + usize::try_from(self.summary.ike_established).unwrap_or(usize::MAX);
        assert!(
            all <= bound,
            "{all} IKE SAs, {half_open} half-open, {} established",
            self.summary.ike_established
        );
        assert_eq!(self.ep.stats().datagrams_received, self.summary.datagrams);
        self.summary.max_ike_sas = self.summary.max_ike_sas.max(all);
        self.summary.ike_sas_left = all;
        self.summary.stats = self.ep.stats().clone();
    }
}

/// A datagram the responder sends: from its own address, port 500 or 4500 (then with the
/// non-ESP marker), an IKE message inside.
fn check_transmit(t: &Transmit) {
    let ours = [IpAddr::from(RESPONDER_V4), IpAddr::from(RESPONDER_V6)];
    assert!(ours.contains(&t.local.ip()), "sent from {}", t.local);
    let ike = match t.local.port() {
        espada_ike::IKE_PORT => t.payload.as_slice(),
        espada_ike::NATT_PORT => {
            assert!(
                t.payload.starts_with(&[0, 0, 0, 0]),
                "no non-ESP marker on 4500"
            );
            &t.payload[4..]
        }
        p => panic!("sent from port {p}"),
    };
    let h = Header::parse(ike).expect("an IKE header");
    assert_eq!(
        usize::try_from(h.length).ok(),
        Some(ike.len()),
        "header length"
    );
    assert_eq!(h.major_version, 2);
}

/// The fuzz target's body: runs the records of `data` against a fresh responder.
///
/// # Panics
///
/// When the endpoint panics or a check fails: that is what the fuzzer looks for.
pub fn responder_sequence(data: &[u8]) -> Summary {
    let mut r = Responder::new();
    for rec in records(data) {
        r.step(&rec);
    }
    r.summary
}
