//! The seed corpus of the `ike_responder` fuzz target (`crates/ike/fuzz`), replayed on stable
//! through the target's own check (`tests/fuzz_responder/mod.rs`), and a deterministic
//! mutation smoke test over it.
//!
//! Seeds (`fuzz/corpus/ike_responder/`), one input each (records, see the module):
//! * `strongswan-*`: the datagrams captured from strongSwan (`tests/vectors/strongswan`);
//! * `gen-init-*`: IKE_SA_INIT requests of an espada initiator with various proposals;
//! * `gen-session-*`: whole sessions of an espada initiator against the fuzz responder,
//!   recorded as the initiator's datagrams and the responder's own commands. The responder's
//!   randomness is seeded, so the replay reproduces its SPIs and nonces and the recorded
//!   IKE_AUTH requests authenticate: these seeds get the fuzzer past IKE_AUTH;
//! * `edge-*`: broken or unusual inputs.
//!
//! The session seeds depend on the library's exact use of randomness; when a change of the
//! library makes them stop establishing, rewrite the generated seeds with
//! `ESPADA_REGEN_FUZZ_CORPUS=1 cargo test -p espada-ike --test fuzz_responder_corpus`.

mod fuzz_responder;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use espada_ike::auth::Authenticator;
use espada_ike::config::{EndpointConfig, Identity, PeerConfig, Retransmit};
use espada_ike::exchange::{Endpoint, RandomSpis};
use espada_ike::msgs::{Header, Message, Payload, PayloadType};
use espada_ike::proposal::{EspProposal, IkeProposal};
use espada_ike::rng::{Random, TestRandom};
use espada_ike::secret::Secret;
use espada_ike::ts;
use fuzz_responder::{
    Command, PSK, Record, Responder, SOURCES, Summary, records, responder_sequence,
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/corpus/ike_responder"
    ))
}

fn encode(recs: &[Record]) -> Vec<u8> {
    recs.iter().flat_map(Record::encode).collect()
}

fn datagram(source: u8, payload: Vec<u8>) -> Record {
    Record::Datagram {
        source,
        natt: false,
        advance: 0,
        payload,
    }
}

fn control(advance: u8, command: Command) -> Record {
    Record::Control { advance, command }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// The initiator's side of the fuzz responder's peer (at source 0, 198.18.0.1).
fn initiator_peer(ike: &[&str], esp: &[&str]) -> PeerConfig {
    PeerConfig {
        name: String::from("to-fuzz"),
        local_addr: "198.18.0.1".parse().unwrap(),
        remote_addr: Some("198.18.0.2".parse().unwrap()),
        local_id: Identity::Fqdn(String::from("a.example")),
        remote_id: Identity::Fqdn(String::from("b.example")),
        auth: Authenticator::Psk(Secret::from_slice(PSK)),
        ike_proposals: ike.iter().map(|s| IkeProposal::parse(s).unwrap()).collect(),
        esp_proposals: esp.iter().map(|s| EspProposal::parse(s).unwrap()).collect(),
        local_ts: vec![ts::prefix("198.19.1.0".parse().unwrap(), 24)],
        remote_ts: vec![ts::prefix("198.19.2.0".parse().unwrap(), 24)],
        encapsulation: espada_ike::config::Encapsulation::Auto,
        fragmentation: true,
    }
}

const X25519: &str = "aes128gcm16-prfsha256-x25519";

fn initiator_config() -> EndpointConfig {
    EndpointConfig {
        retransmit: Retransmit {
            base: Duration::from_secs(1),
            factor: 2.0,
            max_wait: Duration::from_secs(8),
            tries: 4,
        },
        ..EndpointConfig::default()
    }
}

fn initiator(peer: PeerConfig, config: EndpointConfig, seed: u64) -> Endpoint {
    Endpoint::new(
        config,
        vec![peer],
        Box::new(TestRandom::new(seed)),
        Box::new(RandomSpis::default()),
    )
}

/// An espada initiator run against the fuzz responder; every datagram the initiator sends
/// and every responder command becomes a record.
struct Session {
    r: Responder,
    i: Endpoint,
    source: u8,
    recs: Vec<Record>,
    /// Responder datagrams are not delivered (a black hole towards the initiator).
    deaf: bool,
}

impl Session {
    fn new(peer: PeerConfig, config: EndpointConfig, source: u8) -> Session {
        Session {
            r: Responder::new(),
            i: initiator(peer, config, 0x1a),
            source,
            recs: Vec::new(),
            deaf: false,
        }
    }

    /// Feeds a record to the responder, remembers it and hands the answers to the initiator.
    fn feed(&mut self, rec: Record) {
        self.r.step(&rec);
        self.recs.push(rec);
        let answers = std::mem::take(&mut self.r.last_sent);
        if self.deaf {
            return;
        }
        let now = self.r.instant();
        for t in answers {
            let port = if t.local.port() == espada_ike::NATT_PORT {
                4500
            } else {
                500
            };
            let local = SocketAddr::new(SOURCES[0].0.into(), port);
            self.i.handle_datagram(now, local, t.local, &t.payload);
        }
    }

    /// Exchanges datagrams until neither side has anything to send.
    fn pump(&mut self) {
        loop {
            while self.i.poll_action().is_some() || self.i.poll_event().is_some() {}
            let Some(t) = self.i.poll_transmit() else {
                return;
            };
            let natt = t.local.port() == espada_ike::NATT_PORT;
            self.feed(Record::Datagram {
                source: self.source,
                natt,
                advance: 0,
                payload: t.payload,
            });
        }
    }

    /// A command of the initiator.
    fn initiator(&mut self, f: impl FnOnce(&mut Endpoint, Instant)) {
        let now = self.r.instant();
        f(&mut self.i, now);
        self.pump();
    }

    /// A control record (time, responder timers, a responder command); the initiator's timers
    /// run at the same time.
    fn control(&mut self, advance: u8, command: Command) {
        self.feed(control(advance, command));
        let now = self.r.instant();
        self.i.handle_timeout(now);
        self.pump();
    }

    fn establish(&mut self) {
        self.initiator(|i, now| {
            i.initiate(now, 0).unwrap();
        });
    }

    fn ike(&self) -> espada_ike::exchange::IkeSaId {
        self.i
            .ike_sas()
            .find(|s| s.is_established())
            .map(|s| s.id())
            .expect("established")
    }

    fn child(&self) -> espada_ike::exchange::ChildId {
        self.i
            .ike_sas()
            .flat_map(|s| s.children())
            .next()
            .map(|c| c.id)
            .expect("a CHILD_SA")
    }
}

/// A recorded session and what its replay must reach.
struct SessionSeed {
    name: &'static str,
    /// IKE SAs established or born from rekeys, at least.
    ike: u64,
    /// CHILD_SAs established or rekeyed, at least.
    children: u64,
    /// What else the replay must show.
    check: fn(&Summary) -> bool,
    recs: Vec<Record>,
}

impl SessionSeed {
    fn assert_reached(&self, s: &Summary, hint: &str) {
        let name = self.name;
        assert!(
            s.ike_established >= self.ike && s.children >= self.children,
            "{name}: {s:?}{hint}"
        );
        assert!(self.ike > 0 || s.ike_established == 0, "{name}: {s:?}");
        assert!((self.check)(s), "{name}: {s:?}{hint}");
    }
}

fn sessions() -> Vec<SessionSeed> {
    let esp = ["aes128gcm16-x25519"];
    let mut out: Vec<SessionSeed> = Vec::new();
    let mut run =
        |name: &'static str, ike: u64, children: u64, check: fn(&Summary) -> bool, s: Session| {
            out.push(SessionSeed {
                name,
                ike,
                children,
                check,
                recs: s.recs,
            });
        };

    let mut s = Session::new(initiator_peer(&[X25519], &esp), initiator_config(), 0);
    s.establish();
    s.control(0, Command::Traffic);
    let ike = s.ike();
    s.initiator(|i, now| i.liveness(now, ike).unwrap());
    s.initiator(|i, now| i.delete_ike(now, ike).unwrap());
    run(
        "gen-session-basic",
        1,
        1,
        |s| s.stats.retransmits == 0 && s.ike_sas_left == 0,
        s,
    );

    let mut s = Session::new(initiator_peer(&[X25519], &esp), initiator_config(), 0);
    s.establish();
    let ike = s.ike();
    s.initiator(|i, now| {
        i.create_child(now, ike).unwrap();
    });
    let child = s.child();
    s.initiator(|i, now| i.rekey_child(now, child).unwrap());
    s.control(3, Command::Traffic);
    s.control(0, Command::RekeyChild);
    let child = s.child();
    s.initiator(|i, now| i.delete_child(now, child).unwrap());
    s.control(0, Command::Liveness);
    run(
        "gen-session-children",
        1,
        4,
        |s| s.stats.retransmits == 0,
        s,
    );

    let mut s = Session::new(initiator_peer(&[X25519], &esp), initiator_config(), 0);
    s.establish();
    let ike = s.ike();
    s.initiator(|i, now| i.rekey_ike(now, ike).unwrap());
    s.control(3, Command::RekeyIke);
    s.control(3, Command::Liveness);
    s.control(0, Command::DeleteIke);
    run(
        "gen-session-ike-rekeys",
        3,
        1,
        |s| s.stats.retransmits == 0 && s.ike_sas_left == 0,
        s,
    );

    let mut c = initiator_config();
    c.fragment_size = 200;
    let mut s = Session::new(initiator_peer(&[X25519], &esp), c, 0);
    s.establish();
    let ike = s.ike();
    s.initiator(|i, now| {
        i.create_child(now, ike).unwrap();
    });
    run(
        "gen-session-fragmented",
        1,
        2,
        |s| s.stats.datagrams_received >= 5 && s.stats.fragments_dropped == 0,
        s,
    );

    let mut s = Session::new(initiator_peer(&[X25519], &esp), initiator_config(), 2);
    s.establish();
    s.control(0, Command::Liveness);
    s.control(0, Command::Traffic);
    s.control(0, Command::RekeyChild);
    run(
        "gen-session-nat",
        1,
        2,
        |s| s.natt_sent >= 3 && s.stats.non_ike_on_natt_port == 0,
        s,
    );

    // Four half-open SAs from elsewhere: the fifth initiator must return a COOKIE.
    let mut s = Session::new(initiator_peer(&[X25519], &esp), initiator_config(), 0);
    let mut other = initiator(initiator_peer(&[X25519], &esp), initiator_config(), 0x2b);
    for source in 3..7 {
        other.initiate(s.r.instant(), 0).unwrap();
        let t = other.poll_transmit().unwrap();
        s.feed(datagram(source, t.payload));
    }
    s.establish();
    run(
        "gen-session-cookie",
        1,
        1,
        |s| s.stats.cookies_sent == 1 && s.stats.bad_cookies == 0,
        s,
    );

    let ike = ["aes128gcm16-prfsha256-ecp256-x25519"];
    let mut s = Session::new(
        initiator_peer(&ike, &["aes128gcm16-ecp384-x25519"]),
        initiator_config(),
        0,
    );
    s.establish();
    let ike = s.ike();
    s.initiator(|i, now| {
        i.create_child(now, ike).unwrap();
    });
    run(
        "gen-session-invalid-ke",
        1,
        2,
        |s| s.stats.invalid_ke_sent == 2,
        s,
    );

    let big = ["aes256gcm16-prfsha384-ecp384"];
    let mut s = Session::new(
        initiator_peer(&big, &["aes256gcm16-modp2048-esn"]),
        initiator_config(),
        0,
    );
    s.establish();
    let child = s.child();
    s.initiator(|i, now| i.rekey_child(now, child).unwrap());
    run(
        "gen-session-ecp384-modp2048",
        1,
        2,
        |s| s.stats.retransmits == 0,
        s,
    );

    // The responder's requests go unanswered: retransmissions, then the peer is dead.
    let mut s = Session::new(initiator_peer(&[X25519], &esp), initiator_config(), 0);
    s.establish();
    s.deaf = true;
    s.control(0, Command::Liveness);
    for _ in 0..8 {
        s.control(4, Command::None);
    }
    run(
        "gen-session-peer-dead",
        1,
        1,
        |s| s.stats.retransmits == 3 && s.ike_sas_left == 0,
        s,
    );

    let mut s = Session::new(initiator_peer(&[X25519], &esp), initiator_config(), 0);
    s.establish();
    let dup: Vec<Record> = s.recs.clone();
    for rec in dup {
        s.feed(rec);
    }
    for _ in 0..3 {
        s.control(5, Command::None);
    }
    run(
        "gen-session-duplicates-and-timeouts",
        1,
        1,
        |s| s.stats.retransmitted_requests >= 1,
        s,
    );

    let mut p = initiator_peer(&[X25519], &esp);
    p.auth = Authenticator::Psk(Secret::from_slice(b"wrong"));
    let mut s = Session::new(p, initiator_config(), 0);
    s.establish();
    run(
        "gen-session-wrong-psk",
        0,
        0,
        |s| s.stats.authentication_failed == 1 && s.ike_sas_left == 0,
        s,
    );

    let mut s = Session::new(
        initiator_peer(&[X25519], &["aes128gcm16-esn"]),
        initiator_config(),
        0,
    );
    s.establish();
    run(
        "gen-session-esp-no-proposal",
        1,
        0,
        |s| s.stats.no_proposal_chosen == 1,
        s,
    );

    let mut p = initiator_peer(&[X25519], &esp);
    p.local_ts = vec![ts::prefix("10.0.0.0".parse().unwrap(), 24)];
    let mut s = Session::new(p, initiator_config(), 0);
    s.establish();
    run(
        "gen-session-ts-unacceptable",
        1,
        0,
        |s| s.stats.ts_unacceptable == 1,
        s,
    );

    // The initiator restarts and comes back with INITIAL_CONTACT.
    let mut s = Session::new(initiator_peer(&[X25519], &esp), initiator_config(), 0);
    s.establish();
    s.i = initiator(initiator_peer(&[X25519], &esp), initiator_config(), 0x3c);
    s.establish();
    run(
        "gen-session-initial-contact",
        2,
        2,
        |s| s.ike_sas_left == 1,
        s,
    );

    let mut s = Session::new(initiator_peer(&[X25519], &esp), initiator_config(), 0);
    s.establish();
    s.control(3, Command::CreateChild);
    s.control(0, Command::DeleteChild);
    s.control(0, Command::DeleteIke);
    run(
        "gen-session-responder-deletes",
        1,
        2,
        |s| s.ike_sas_left == 0,
        s,
    );
    out
}

/// IKE_SA_INIT requests of an espada initiator (from source 0 unless named).
fn init_seeds() -> Vec<(String, Vec<u8>)> {
    let cases: &[(&str, &[&str], bool, u8)] = &[
        ("x25519", &[X25519], true, 0),
        ("ecp256", &["aes128gcm16-prfsha256-ecp256"], true, 0),
        ("ecp384", &["aes256gcm16-prfsha384-ecp384"], true, 0),
        ("modp2048", &["aes256gcm16-prfsha384-modp2048"], true, 0),
        (
            "two-proposals",
            &["aes256gcm16-prfsha512-ecp384", X25519],
            true,
            0,
        ),
        ("no-fragmentation", &[X25519], false, 0),
        ("from-nat", &[X25519], true, 2),
        ("from-ipv6", &[X25519], true, 7),
    ];
    cases
        .iter()
        .map(|(name, ike, frag, source)| {
            let mut p = initiator_peer(ike, &["aes128gcm16"]);
            p.fragmentation = *frag;
            let mut i = initiator(p, initiator_config(), 0x4d);
            i.initiate(Instant::now(), 0).unwrap();
            let t = i.poll_transmit().unwrap();
            (
                format!("gen-init-{name}"),
                encode(&[datagram(*source, t.payload)]),
            )
        })
        .collect()
}

/// The captured strongSwan datagrams: each IKE_SA_INIT request alone, the initiator's side of
/// the session, and every datagram of the session (responses too) from the lab initiator.
fn strongswan_seeds() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/strongswan");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let grams: Vec<(bool, Record)> = v["datagrams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let natt = d["udp_dst_port"].as_u64() == Some(4500);
                let mut payload = if natt { vec![0; 4] } else { Vec::new() };
                payload.extend(hex::decode(d["hex"].as_str().unwrap()).unwrap());
                let from_initiator = d["from"].as_str() == Some("initiator");
                (
                    from_initiator,
                    Record::Datagram {
                        source: 1,
                        natt,
                        advance: 0,
                        payload,
                    },
                )
            })
            .collect();
        out.push((
            format!("strongswan-{name}-init"),
            encode(&[grams[0].1.clone()]),
        ));
        let ours: Vec<Record> = grams
            .iter()
            .filter(|(i, _)| *i)
            .map(|(_, r)| r.clone())
            .collect();
        out.push((format!("strongswan-{name}-initiator"), encode(&ours)));
        let all: Vec<Record> = grams.into_iter().map(|(_, r)| r).collect();
        out.push((format!("strongswan-{name}-all"), encode(&all)));
    }
    out
}

/// Broken and unusual inputs, built from a valid IKE_SA_INIT request.
fn edge_seeds() -> Vec<(String, Vec<u8>)> {
    let mut i = initiator(
        initiator_peer(&[X25519], &["aes128gcm16"]),
        initiator_config(),
        0x5e,
    );
    let mut init = || {
        i.initiate(Instant::now(), 0).unwrap();
        i.poll_transmit().unwrap().payload
    };
    let with = |mut b: Vec<u8>, f: &dyn Fn(&mut Vec<u8>)| {
        f(&mut b);
        b
    };
    let critical = {
        let mut m = Message::parse(&init()).unwrap();
        m.payloads.push(Payload::Unknown {
            ty: PayloadType(222),
            critical: true,
            body: vec![1, 2, 3],
        });
        m.emit()
    };
    let mut marker_init = vec![0; 4];
    marker_init.extend(init());
    let natt = |payload: Vec<u8>| Record::Datagram {
        source: 0,
        natt: true,
        advance: 0,
        payload,
    };
    let mut unknown_spi = init();
    unknown_spi[8..16].copy_from_slice(&[0xaa; 8]);
    unknown_spi[18] = 35;
    let mut rng = TestRandom::new(9);
    let mut garbage = vec![0u8; 300];
    rng.fill(&mut garbage);
    let flood: Vec<Record> = (0..12u8)
        .map(|k| datagram(k % 7, init()))
        .chain([control(5, Command::None), control(0, Command::None)])
        .collect();
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("edge-empty", Vec::new()),
        (
            "edge-timers-only",
            encode(&[
                control(7, Command::None),
                control(6, Command::Liveness),
                control(7, Command::Traffic),
            ]),
        ),
        ("edge-natt-keepalive", encode(&[natt(vec![0xff])])),
        ("edge-natt-without-marker", encode(&[natt(init())])),
        ("edge-natt-with-marker", encode(&[natt(marker_init)])),
        (
            "edge-short-header",
            encode(&[datagram(0, init()[..20].to_vec())]),
        ),
        (
            "edge-major-version-3",
            encode(&[datagram(0, with(init(), &|b| b[17] = 0x30))]),
        ),
        (
            "edge-response-flag",
            encode(&[datagram(
                0,
                with(init(), &|b| b[19] = Header::FLAG_RESPONSE),
            )]),
        ),
        ("edge-critical-unknown", encode(&[datagram(0, critical)])),
        ("edge-unknown-spi", encode(&[datagram(0, unknown_spi)])),
        ("edge-length-beyond-input", {
            let mut b = encode(&[datagram(0, init())]);
            b.truncate(b.len() - 40);
            b
        }),
        ("edge-garbage", encode(&[datagram(0, garbage)])),
        ("edge-half-open-flood-and-expiry", encode(&flood)),
    ];
    seeds.into_iter().map(|(n, b)| (n.to_string(), b)).collect()
}

fn generated() -> Vec<(String, Vec<u8>)> {
    let mut all = strongswan_seeds();
    all.extend(init_seeds());
    all.extend(
        sessions()
            .into_iter()
            .map(|s| (s.name.to_string(), encode(&s.recs))),
    );
    all.extend(edge_seeds());
    all
}

fn committed() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// Writes the generated seeds when asked to (see the module documentation).
fn regenerate_if_asked() {
    if std::env::var_os("ESPADA_REGEN_FUZZ_CORPUS").is_none() {
        return;
    }
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    for (name, bytes) in generated() {
        std::fs::write(dir.join(format!("{name}.bin")), bytes).unwrap();
    }
}

#[test]
fn generated_sessions_reach_what_they_are_named_for() {
    for seed in sessions() {
        let bytes = encode(&seed.recs);
        seed.assert_reached(&responder_sequence(&bytes), "");
        assert_eq!(
            records(&bytes),
            seed.recs,
            "{}: the encoding round-trips",
            seed.name
        );
    }
}

#[test]
fn corpus_replays_through_the_fuzz_check() {
    regenerate_if_asked();
    let seeds = committed();
    assert!(seeds.len() >= 36, "{} seeds", seeds.len());
    let wanted = sessions();
    let hint = "; regenerate: ESPADA_REGEN_FUZZ_CORPUS=1 cargo test -p espada-ike --test fuzz_responder_corpus";
    for (name, bytes) in &seeds {
        let s = responder_sequence(bytes);
        if name.starts_with("strongswan-") || name.starts_with("gen-init-") {
            assert!(s.sent >= 1, "{name}: answered ({s:?})");
        }
        if let Some(seed) = wanted.iter().find(|w| w.name == name) {
            seed.assert_reached(&s, hint);
        }
    }
    for (name, _) in generated() {
        assert!(
            seeds.iter().any(|(n, _)| *n == name),
            "{name} missing from the corpus{hint}"
        );
    }
}

/// One deterministic mutation of `input`: octet-level or record-level.
fn mutate(rng: &mut TestRandom, input: &[u8]) -> Vec<u8> {
    let pick = |rng: &mut TestRandom, n: usize| (rng.next_u32() as usize) % n.max(1);
    let mut recs = records(input);
    match rng.next_u32() % 8 {
        0 | 1 if !input.is_empty() => {
            let mut b = input.to_vec();
            for _ in 0..=pick(rng, 4) {
                let i = pick(rng, b.len());
                b[i] ^= 1 << (rng.next_u32() % 8);
            }
            return b;
        }
        2 if !input.is_empty() => {
            let mut b = input.to_vec();
            let i = pick(rng, b.len());
            b.truncate(i);
            return b;
        }
        3 => {
            // A payload octet of one datagram set to an interesting value.
            let ds: Vec<usize> = (0..recs.len())
                .filter(|&k| matches!(&recs[k], Record::Datagram { payload, .. } if !payload.is_empty()))
                .collect();
            if let Some(&k) = ds.get(pick(rng, ds.len()))
                && let Record::Datagram { payload, .. } = &mut recs[k]
            {
                let i = pick(rng, payload.len());
                payload[i] = [0, 1, 0x7f, 0x80, 0xff, 33, 41, 53][pick(rng, 8)];
            }
        }
        4 if !recs.is_empty() => {
            let k = pick(rng, recs.len());
            let r = recs[k].clone();
            recs.insert(pick(rng, recs.len() + 1), r);
        }
        5 if !recs.is_empty() => {
            recs.remove(pick(rng, recs.len()));
        }
        6 if recs.len() >= 2 => {
            let (a, b) = (pick(rng, recs.len()), pick(rng, recs.len()));
            recs.swap(a, b);
        }
        _ => {
            let command = [
                Command::None,
                Command::Liveness,
                Command::RekeyChild,
                Command::RekeyIke,
                Command::Traffic,
            ][pick(rng, 5)];
            recs.insert(
                pick(rng, recs.len() + 1),
                control(rng.next_u32() as u8 & 7, command),
            );
        }
    }
    encode(&recs)
}

#[test]
fn random_mutations_of_the_corpus_never_break_the_checks() {
    let seeds = generated();
    let mut rng = TestRandom::new(0x0f00_d5ee);
    let budget = Duration::from_secs(4);
    let started = Instant::now();
    let mut ran = 0;
    for n in 0..3000u32 {
        if started.elapsed() > budget {
            break;
        }
        let (name, seed) = &seeds[(rng.next_u32() as usize) % seeds.len()];
        let mut input = mutate(&mut rng, seed);
        if n % 3 == 0 {
            input = mutate(&mut rng, &input);
        }
        let result = std::panic::catch_unwind(|| responder_sequence(&input));
        assert!(
            result.is_ok(),
            "mutation {n} of {name} broke a check; input: {}",
            hex::encode(&input)
        );
        ran += 1;
    }
    assert!(ran >= 300, "only {ran} mutations in {budget:?}");
}
