//! Two real espada daemons negotiate an IKEv2 tunnel with each other (no strongSwan), under a
//! sequenced UDP stream each way between their LANs:
//!
//! ```text
//! lanA 192.0.2.10 ── espada A (192.0.2.1 | 198.51.100.1) ── router (198.51.100.254 | 198.18.9.254)
//!                                   ── espada B (198.18.9.1 | 203.0.113.1) ── lanB 203.0.113.10
//! ```
//!
//! A initiates (`start: start`), B waits (`start: none`); ECP-384 for IKE, MODP-2048 PFS on
//! every CHILD_SA rekey. The router is a plain Linux namespace: espada's own IKE goes through
//! its DPDK af_packet ports, out of reach of iptables in espada's namespace, so IKE is held
//! in the router's FORWARD chain.
//!
//! 1. Two minutes at 500 packets/s each way while both ends rekey the CHILD_SA on their own
//!    schedules (soft lifetime 10–15 s after each rekey on both) and the IKE SA at least
//!    twice (35–40 s): nothing lost or duplicated, no unknown-SPI or no-SA drop on either.
//! 2. 20 forced rekey collisions (RFC 7296 §2.8.1): both ends `espada rekey` while the router
//!    drops IKE both ways, then lets B's retransmission reach A (A's own request still
//!    outstanding: A sees the collision) and later A's retransmission reach B (B's still
//!    outstanding: B sees it). Both ends log each one; no loss; one CHILD_SA pair at the end.
//! 3. B killed with SIGKILL and started again: A's ESP on the old SPIs makes the restarted B
//!    initiate, and traffic is back within 3 s of B logging "espada running".
//!
//! The other tests (each its own pair of namespaces and daemons; the tests of this file run
//! one at a time) mirror `e2e_strongswan_restart.rs` and `e2e_strongswan_refusals.rs`:
//! - A (the initiator) killed with SIGKILL and started 10 s later re-initiates with
//!   INITIAL_CONTACT: B drops the old SAs, traffic is back within 1 s of B's new IKE SA;
//! - A killed and started again 10 s later without initiating (`start: none`): B's DPD
//!   (delay 2 s, timeout 4 s, action restart) declares it dead and re-initiates, traffic is
//!   back within delay + timeout + 2 s of A running again;
//! - B behind a MASQUERADE in the router (B initiates; A sees it at the router's address):
//!   both detect NAT, and after a mapping change (new source ports, conntrack flushed) B's
//!   next DPD request moves A's outbound SA to the new port;
//! - the wrong PSK on A: a clear "authentication with … failed" line on both ends, the
//!   `ike.authentication_failed` counter, no SA, no PSK in either log.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::swan::{self, PSK, REKEY_DROPS, SET_PFS, StreamReport};
use common::{Daemon, sh};
use espada_admin::{Direction, DropsView, IkeReport, IkeView, Request, Response, TunnelView};
use espada_testnet::Netns;

/// One espada of the pair.
struct Site {
    appliance: &'static str,
    tunnel: &'static str,
    outer: &'static str,
    gateway: &'static str,
    inside: &'static str,
    lan_host: &'static str,
    peer: &'static str,
    local_ts: &'static str,
    remote_ts: &'static str,
    id: &'static str,
    peer_id: &'static str,
}

const A: Site = Site {
    appliance: "pair-a",
    tunnel: "to-b",
    outer: "198.51.100.1",
    gateway: "198.51.100.254",
    inside: "192.0.2.1",
    lan_host: "192.0.2.10",
    peer: "198.18.9.1",
    local_ts: "192.0.2.0/24",
    remote_ts: "203.0.113.0/24",
    id: "a.example",
    peer_id: "b.example",
};

const B: Site = Site {
    appliance: "pair-b",
    tunnel: "to-a",
    outer: "198.18.9.1",
    gateway: "198.18.9.254",
    inside: "203.0.113.1",
    lan_host: "203.0.113.10",
    peer: "198.51.100.1",
    local_ts: "203.0.113.0/24",
    remote_ts: "192.0.2.0/24",
    id: "b.example",
    peer_id: "a.example",
};

/// The router's address on A's side: where A sees B from when B is behind the router's NAT.
const ROUTER_A: &str = "198.51.100.254";

/// How one end of the pair is configured.
#[derive(Clone, Copy)]
struct End {
    /// The tunnel's `start:`.
    start: &'static str,
    /// The tunnel's `dpd:` (a YAML flow mapping), if any.
    dpd: Option<&'static str>,
    psk: &'static str,
}

const INITIATOR: End = End {
    start: "start",
    dpd: None,
    psk: PSK,
};

const RESPONDER: End = End {
    start: "none",
    dpd: None,
    psk: PSK,
};

/// How one pair differs from the default (A initiates, B waits, the same PSK, no NAT).
struct Opts {
    /// Namespace tag prefix.
    tag: &'static str,
    a: End,
    b: End,
    /// B behind a MASQUERADE in the router: A's tunnel peer is the router's A-side address.
    b_behind_nat: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            tag: "pr",
            a: INITIATOR,
            b: RESPONDER,
            b_behind_nat: false,
        }
    }
}

/// The tests of this file one at a time: each runs two DPDK daemons with timing bounds, on a
/// machine that may have two cores. This lock serialises them under `cargo test` (one
/// process); under nextest (one process per test, CI) the `espada-pair` test group of
/// `.config/nextest.toml` does.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The namespaces and the two daemons. Fields drop in order: the daemons stop before the
/// namespaces go.
struct Pair {
    a: Daemon,
    b: Daemon,
    dir: PathBuf,
    lan_a: Netns,
    lan_b: Netns,
    router: Netns,
    ns_a: Netns,
    ns_b: Netns,
    /// A's tunnel peer (B's address, or the router's with B behind its NAT).
    a_peer: &'static str,
}

fn site_yaml(s: &Site, e: &End, peer: &str, psk: &str, socket: &str) -> String {
    let (ike, esp) = SET_PFS;
    format!(
        "appliance: {{ name: {app} }}\ncores: {{ control: 0, workers: [1] }}\nports:\n  \
         outside: {{ device: \"net_af_packet0,iface=wan0\", ipv4: {outer}/24, gateway4: {gw} }}\n  \
         inside: {{ device: \"net_af_packet1,iface=lan0\", ipv4: {inside}/24 }}\n\
         tunnels:\n  - name: {tun}\n    peer: {peer}\n    local_ts: [{lts}]\n    remote_ts: [{rts}]\n    \
         local_id: {id}\n    remote_id: {pid}\n    psk: {{ file: {psk} }}\n    ike: {ike}\n    esp: {esp}\n    \
         child_lifetime: {{ time: 20s, margin: 5s, jitter: 5s }}\n    \
         ike_lifetime: {{ time: 50s, margin: 10s, jitter: 5s }}\n    start: {start}\n{dpd}\
         admin: {{ socket: {socket} }}\n\
         dpdk: {{ args: [--no-huge, -m, \"512\", --no-shconf, --log-level, \"error\"] }}\n",
        app = s.appliance,
        outer = s.outer,
        gw = s.gateway,
        inside = s.inside,
        tun = s.tunnel,
        lts = s.local_ts,
        rts = s.remote_ts,
        id = s.id,
        pid = s.peer_id,
        start = e.start,
        dpd = e.dpd.map(|d| format!("    dpd: {d}\n")).unwrap_or_default(),
    )
}

/// Root (namespaces, iptables; conntrack for the NAT test) is all these tests need; they skip
/// with a note without it, and fail under `ESPADA_REQUIRE_STRONGSWAN=1` (CI), like the strongSwan lab.
fn available() -> bool {
    available_with(&["iptables"])
}

/// [`available`], with `tools` on the path as well.
fn available_with(tools: &[&str]) -> bool {
    if espada_testnet::available() && tools.iter().all(|t| espada_testnet::on_path(t)) {
        return true;
    }
    let msg = format!(
        "e2e_negotiated_pair needs root, iproute2 and {}",
        tools.join(", ")
    );
    if std::env::var("ESPADA_REQUIRE_STRONGSWAN").is_ok_and(|v| v == "1") {
        panic!("{msg}; ESPADA_REQUIRE_STRONGSWAN=1 forbids skipping");
    }
    eprintln!("skipping: {msg}");
    false
}

/// Writes end `f`'s (`"a"` or `"b"`) configuration as `{f}-{start}.yaml` in `dir`, with its
/// PSK file beside it; the configuration's path.
fn write_config(dir: &Path, f: &str, e: &End, peer: &str) -> PathBuf {
    let site = if f == "a" { &A } else { &B };
    let psk = dir.join(format!("{f}.psk"));
    std::fs::write(&psk, e.psk).unwrap();
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sock = dir.join(format!("{f}.sock"));
    let yaml = dir.join(format!("{f}-{}.yaml", e.start));
    std::fs::write(
        &yaml,
        site_yaml(site, e, peer, &format!("{f}.psk"), sock.to_str().unwrap()),
    )
    .unwrap();
    yaml
}

impl Pair {
    fn start(o: Opts) -> Pair {
        let ns = |x: &str| Netns::new(&format!("{}{x}", o.tag)).unwrap();
        let lan_a = ns("la");
        let ns_a = ns("a");
        let router = ns("r");
        let ns_b = ns("b");
        let lan_b = ns("lb");
        lan_a.veth_to("host0", &ns_a, "lan0").unwrap();
        ns_a.veth_to("wan0", &router, "a0").unwrap();
        router.veth_to("b0", &ns_b, "wan0").unwrap();
        ns_b.veth_to("lan0", &lan_b, "host0").unwrap();
        for (ns, s) in [(&lan_a, &A), (&lan_b, &B)] {
            sh(ns, &format!("ip addr add {}/24 dev host0", s.lan_host));
            sh(ns, &format!("ip route add default via {}", s.inside));
        }
        for c in [
            "ip addr add 198.51.100.254/24 dev a0",
            "ip addr add 198.18.9.254/24 dev b0",
            "sysctl -qw net.ipv4.ip_forward=1",
        ] {
            sh(&router, c);
        }
        if o.b_behind_nat {
            sh(
                &router,
                "iptables -t nat -A POSTROUTING -o a0 -j MASQUERADE",
            );
        }
        let dir = std::env::temp_dir().join(format!("espada-e2e-pair-{}", ns_a.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a_peer = if o.b_behind_nat { ROUTER_A } else { A.peer };
        let a_yaml = write_config(&dir, "a", &o.a, a_peer);
        let b_yaml = write_config(&dir, "b", &o.b, B.peer);
        let run = |f: &str, ns: &Netns, yaml: &PathBuf| {
            Daemon::start(
                ns,
                yaml,
                dir.join(format!("{f}.sock")),
                dir.join(format!("{f}.log")),
            )
        };
        // The responder first, so the initiator's first IKE_SA_INIT finds it.
        let (a, b) = if o.b.start == "none" {
            let b = run("b", &ns_b, &b_yaml);
            (run("a", &ns_a, &a_yaml), b)
        } else {
            let a = run("a", &ns_a, &a_yaml);
            (a, run("b", &ns_b, &b_yaml))
        };
        Pair {
            a,
            b,
            dir,
            lan_a,
            lan_b,
            router,
            ns_a,
            ns_b,
            a_peer,
        }
    }

    /// Writes end `f`'s configuration (see [`write_config`]).
    fn config(&self, f: &str, e: &End) -> PathBuf {
        let peer = if f == "a" { self.a_peer } else { B.peer };
        write_config(&self.dir, f, e, peer)
    }

    /// Kills A with SIGKILL (nothing sent, nothing cleaned up).
    fn kill_a(&mut self) {
        self.a.kill();
    }

    /// Starts A again with `e`'s configuration, logging to `log` in the pair's directory.
    fn start_a(&mut self, e: &End, log: &str) {
        let yaml = self.config("a", e);
        self.a = Daemon::start(
            &self.ns_a,
            &yaml,
            self.dir.join("a.sock"),
            self.dir.join(log),
        );
    }

    fn both(&self) -> [(&'static str, &Daemon); 2] {
        [("A", &self.a), ("B", &self.b)]
    }

    /// Both logs, for a failure message.
    fn logs(&self) -> String {
        format!(
            "--- A ---\n{}\n--- B ---\n{}",
            self.a.log_text(),
            self.b.log_text()
        )
    }

    /// Waits for the CHILD_SA on both ends, then warms the path up: ARP for both LAN hosts,
    /// and B's outbound SA of a new CHILD_SA (responder: active on the first packet from A,
    /// or 2 s after IKE_AUTH).
    fn wait_up(&self) {
        assert!(
            swan::wait_for(Duration::from_secs(20), || {
                ike(&self.a).child_spis.is_some() && ike(&self.b).child_spis.is_some()
            }),
            "a CHILD_SA on both ends:\n{}",
            self.logs()
        );
        let _ = swan::ping(&self.lan_a, B.lan_host, 3, "0.5");
        // From B's side too: with B the initiator, A's outbound SA waits and B's side would
        // see its first packet to its LAN host only in the 10 pings below.
        let _ = swan::ping(&self.lan_b, A.lan_host, 3, "0.5");
        std::thread::sleep(Duration::from_secs(2));
        let out = swan::ping(&self.lan_a, B.lan_host, 10, "0.05");
        assert!(
            out.contains("10 received"),
            "ping through the negotiated tunnel:\n{out}\n{}",
            self.logs()
        );
    }

    fn stream(&self, pps: u32, seconds: u32) -> swan::Stream {
        swan::stream_between(
            (&self.lan_a, A.lan_host),
            (&self.lan_b, B.lan_host),
            pps,
            seconds,
        )
    }

    /// `espada rekey TUNNEL` on one end, asserting success.
    fn rekey(&self, s: &Site, sock: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_espada"))
            .args(["rekey", s.tunnel, "--socket"])
            .arg(self.dir.join(sock))
            .output()
            .unwrap();
        assert!(out.status.success(), "espada rekey {}: {out:?}", s.tunnel);
    }

    /// Drops (or stops dropping) the IKE messages the router forwards from `from`: UDP 500,
    /// and UDP 4500 whose payload starts with the non-ESP marker (zero). ESP is untouched.
    fn hold_ike_from(&self, from: &str, on: bool) {
        let op = if on { "-I" } else { "-D" };
        for m in ["--dport 500", "--dport 4500 -m u32 --u32 0>>22&0x3C@8=0"] {
            sh(
                &self.router,
                &format!("iptables {op} FORWARD -s {from} -p udp {m} -j DROP"),
            );
        }
    }

    /// One CHILD_SA pair, the same on both ends: `show ike`, `show tunnels` and `show sa` of
    /// A and B agree (A's inbound SPI is B's outbound one and the other way round), and
    /// nothing else is installed. Waits up to 10 s for rekeyed and redundant SAs to go.
    fn assert_one_child_pair(&self, when: &str) {
        let mut last = self.views();
        let ok = swan::wait_for(Duration::from_secs(10), || {
            last = self.views();
            last.one_pair()
        });
        assert!(
            ok,
            "one CHILD_SA pair on both ends {when}: {last:#?}\n{}",
            self.logs()
        );
    }

    fn views(&self) -> Views {
        let spis = |d: &Daemon| {
            let mut v: Vec<(bool, u32)> = d
                .sas()
                .iter()
                .map(|s| (matches!(s.direction, Direction::Inbound), s.spi))
                .collect();
            v.sort();
            v
        };
        Views {
            ike: [ike(&self.a), ike(&self.b)],
            tunnels: [tunnel(&self.a), tunnel(&self.b)],
            sas: [spis(&self.a), spis(&self.b)],
        }
    }
}

/// `show ike`, `show tunnels` and `show sa` (inbound?, SPI) of A and B.
#[derive(Debug)]
struct Views {
    ike: [IkeView; 2],
    tunnels: [TunnelView; 2],
    sas: [Vec<(bool, u32)>; 2],
}

impl Views {
    fn one_pair(&self) -> bool {
        let [ia, ib] = &self.ike;
        let [ta, tb] = &self.tunnels;
        let Some((a_in, a_out)) = ia.child_spis else {
            return false;
        };
        ia.state == "established"
            && ib.state == "established"
            && ib.child_spis == Some((a_out, a_in))
            && (ta.inbound_spi, ta.outbound_spi) == (Some(a_in), Some(a_out))
            && (tb.inbound_spi, tb.outbound_spi) == (Some(a_out), Some(a_in))
            && self.sas[0] == [(false, a_out), (true, a_in)]
            && self.sas[1] == [(false, a_in), (true, a_out)]
    }
}

fn ike_report(d: &Daemon) -> IkeReport {
    match d.call(Request::ShowIke) {
        Response::Ike(r) => r,
        other => panic!("{other:?}"),
    }
}

fn ike(d: &Daemon) -> IkeView {
    ike_report(d).tunnels.remove(0)
}

fn tunnel(d: &Daemon) -> TunnelView {
    match d.call(Request::ShowTunnels) {
        Response::Tunnels(mut v) => v.remove(0),
        other => panic!("{other:?}"),
    }
}

/// The wall-clock times of every log line containing `needle` after `after`.
fn log_times(log: &str, needle: &str, after: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut t = after;
    while let Some(x) = swan::log_time(log, needle, t) {
        v.push(x);
        t = x;
    }
    v
}

fn assert_no_rekey_drops(pair: &Pair, before: &[DropsView; 2], when: &str) {
    for ((name, d), before) in pair.both().into_iter().zip(before) {
        let drops = d.drops();
        for class in REKEY_DROPS {
            assert_eq!(
                drops.total[class] - before.total[class],
                0,
                "{name} {class} {when}: {:?}\n{}",
                drops.total,
                pair.logs()
            );
        }
    }
}

fn assert_no_loss(pair: &Pair, report: &StreamReport, when: &str) {
    assert_eq!(
        report.lost(),
        (0, 0),
        "no loss either way {when}: {report:?}\n{}",
        pair.logs()
    );
    assert_eq!(report.duplicates(), 0, "no duplicates {when}: {report:?}");
}

#[test]
fn two_espadas_rekey_collide_and_restart_under_a_sequenced_stream_without_loss() {
    let _serial = serial();
    if !available() {
        return;
    }
    let mut pair = Pair::start(Opts::default());
    pair.wait_up();
    let log = pair.a.log_text();
    assert!(log.contains("IKE SA established with 198.18.9.1"), "{log}");

    storm(&pair);
    collisions(&pair);
    restart(&mut pair);

    for (name, d) in pair.both() {
        assert!(
            !d.log_text().contains(PSK),
            "{name}: the PSK never reaches the log"
        );
    }
    let dir = pair.dir.clone();
    drop(pair);
    let _ = std::fs::remove_dir_all(dir);
}

/// Two minutes at 500 packets/s each way through the scheduled rekeys of both ends.
fn storm(pair: &Pair) {
    let before = [pair.a.drops(), pair.b.drops()];
    let started = |d: &Daemon| ike_report(d).counters["control.rekeys_started"];
    let started_before = [started(&pair.a), started(&pair.b)];
    let t0 = swan::epoch_now();
    let report = pair.stream(500, 120).finish();
    assert_no_loss(pair, &report, "through two minutes of rekeys");

    let mut counts = Vec::new();
    for ((name, d), s0) in pair.both().into_iter().zip(started_before) {
        let log = d.log_text();
        let child = log_times(&log, "CHILD_SA rekeyed", t0);
        let ike = log_times(&log, "IKE SA rekeyed", t0);
        assert!(
            child.len() >= 8,
            "{name}: CHILD_SA rekeys every 10-15 s, got {}:\n{log}",
            child.len()
        );
        assert!(
            ike.len() >= 2,
            "{name}: two IKE SA rekeys, got {}:\n{log}",
            ike.len()
        );
        // Whichever end's soft lifetime (10-15 s after the last rekey, on both) comes first
        // rekeys: the gaps between rekeys stay in that range.
        let gaps: Vec<f64> = child.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter().all(|g| (9.5..=16.0).contains(g)),
            "{name}: CHILD_SA rekey gaps {gaps:.3?} outside 10-15 s:\n{log}"
        );
        // Both ends' schedulers started rekeys (CHILD_SA or IKE SA), not one end alone.
        let own = started(d) - s0;
        assert!(own >= 1, "{name} started no rekey of its own:\n{log}");
        let (lo, hi) = gaps
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), g| (lo.min(*g), hi.max(*g)));
        counts.push((
            name,
            child.len(),
            ike.len(),
            own,
            format!("{lo:.2}-{hi:.2} s"),
        ));
    }
    assert_no_rekey_drops(pair, &before, "through the rekeys");
    eprintln!(
        "storm: {} packets each way at 500/s, 0 lost, 0 duplicates; (end, CHILD_SA rekeys, \
         IKE SA rekeys, rekeys it started, CHILD_SA rekey gaps): {counts:?}",
        report.lan["sent"]
    );
}

/// 20 rekeys by both ends at once, their requests crossing, under 500 packets/s each way.
///
/// Between two espadas a dropped request is retransmitted after exactly 1 s by both, so
/// holding IKE both ways for a moment would only shift the race by 1 s. Instead: both
/// requests are dropped at the router; B's retransmission (1 s) is let through to A, whose
/// own request is still outstanding, so A sees the collision (its answer is dropped); then
/// A's second retransmission (3 s) is let through to B, whose own request is outstanding
/// too, so B sees it. Each round starts when no scheduled rekey is due within 5 s on
/// either end (a scheduled IKE SA rekey in flight would take the CHILD_SA's place).
fn collisions(pair: &Pair) {
    const ROUNDS: usize = 20;
    let before = [pair.a.drops(), pair.b.drops()];
    let seen = |d: &Daemon| d.log_text().matches("rekey collision with").count();
    let start = [seen(&pair.a), seen(&pair.b)];
    let counter = |d: &Daemon| ike_report(d).counters["ike.rekey_collisions"];
    let counters = [counter(&pair.a), counter(&pair.b)];
    let stream_s = 115;
    let t0 = swan::epoch_now();
    let stream = pair.stream(500, stream_s);
    std::thread::sleep(Duration::from_secs(1));
    let mut round_s = Vec::new();
    for k in 1..=ROUNDS {
        let quiet = |d: &Daemon| {
            let v = ike(d);
            v.next_child_rekey_s.is_some_and(|s| s >= 5)
                && v.next_ike_rekey_s.is_some_and(|s| s >= 5)
        };
        assert!(
            swan::wait_for(Duration::from_secs(20), || quiet(&pair.a) && quiet(&pair.b)),
            "round {k}: no scheduled rekey due within 5 s: A {:?} B {:?}",
            ike(&pair.a),
            ike(&pair.b)
        );
        let r0 = swan::epoch_now();
        pair.hold_ike_from(A.outer, true);
        pair.hold_ike_from(B.outer, true);
        pair.rekey(&A, "a.sock");
        pair.rekey(&B, "b.sock");
        std::thread::sleep(Duration::from_millis(100));
        pair.hold_ike_from(B.outer, false);
        let a_saw = swan::wait_for(Duration::from_secs(4), || seen(&pair.a) - start[0] >= k);
        // A's answer to B's request goes out right after the log line: let it be dropped.
        std::thread::sleep(Duration::from_millis(200));
        pair.hold_ike_from(A.outer, false);
        assert!(
            a_saw,
            "round {k}: A saw the collision (B's request while its own was outstanding):\n{}",
            pair.logs()
        );
        assert!(
            swan::wait_for(Duration::from_secs(6), || seen(&pair.b) - start[1] >= k),
            "round {k}: B saw the collision (A's retransmitted request while its own was \
             outstanding):\n{}",
            pair.logs()
        );
        // Both exchanges done (B's retransmission gets A's cached answer), the loser deleted.
        std::thread::sleep(Duration::from_millis(500));
        round_s.push(swan::epoch_now() - r0);
    }
    let done = swan::epoch_now();
    let took = done - t0;
    assert!(
        done < t0 + f64::from(stream_s),
        "the {ROUNDS} rounds took {:.1} s, longer than the {stream_s} s stream",
        done - t0
    );
    let report = stream.finish();
    let n = [seen(&pair.a) - start[0], seen(&pair.b) - start[1]];
    let c = [
        counter(&pair.a) - counters[0],
        counter(&pair.b) - counters[1],
    ];
    assert!(
        n[0] >= ROUNDS && n[1] >= ROUNDS,
        "{ROUNDS} collisions logged by each end, got A {} B {}:\n{}",
        n[0],
        n[1],
        pair.logs()
    );
    assert_eq!(
        [n[0] as u64, n[1] as u64],
        c,
        "one log line per counted collision"
    );
    assert_no_loss(pair, &report, &format!("through {ROUNDS} collisions"));
    pair.assert_one_child_pair("after the collisions");
    assert_no_rekey_drops(pair, &before, "through the collisions");
    let worst = round_s.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "collisions: {ROUNDS} rounds, logged by A {} and B {} times, 0 lost, 0 duplicates, \
         {} packets each way; one CHILD_SA pair after; rounds took {took:.1} s, the longest \
         {worst:.1} s",
        n[0], n[1], report.lan["sent"]
    );
}

/// B (the responder) dies with SIGKILL and starts again: A's ESP on the old SPIs reaches a B
/// without SAs, which initiates; A drops its old IKE SA on INITIAL_CONTACT.
fn restart(pair: &mut Pair) {
    let stream = pair.stream(500, 12);
    std::thread::sleep(Duration::from_secs(3));
    let killed = swan::epoch_now();
    pair.b.kill();
    pair.b = Daemon::start(
        &pair.ns_b,
        &pair.dir.join("b-none.yaml"),
        pair.dir.join("b.sock"),
        pair.dir.join("b-restarted.log"),
    );
    let report = stream.finish();
    let log = pair.b.log_text();
    let running = swan::log_time(&log, "espada running", killed)
        .unwrap_or_else(|| panic!("the restarted B runs:\n{log}"));
    let auth = swan::log_time(&log, "IKE SA established", killed)
        .unwrap_or_else(|| panic!("a new IKE SA after B's restart:\n{}", pair.logs()));
    let back = report
        .back_after(killed + 0.5)
        .unwrap_or_else(|| panic!("an outage while B was down: {report:?}"));
    assert!(
        back - running <= 3.0,
        "traffic back {:.3} s after the restarted B is running (IKE SA {:.3} s after): \
         {report:?}\n{}",
        back - running,
        auth - running,
        pair.logs()
    );
    let (oa, ob) = report.outages();
    assert!(
        oa.len() <= 1 && ob.len() <= 1,
        "one outage at each end, the restart: {report:?}\n{}",
        pair.logs()
    );
    assert!(
        log.contains("on an unknown SPI and no IKE SA: initiating"),
        "the restarted B initiates on A's ESP:\n{log}"
    );
    let alog = pair.a.log_text();
    assert!(
        swan::log_time(&alog, "IKE SA established", killed).is_some()
            && swan::log_time(&alog, "IKE SA deleted (InitialContact)", killed).is_some(),
        "A has the new IKE SA and dropped the old one on INITIAL_CONTACT:\n{alog}"
    );
    let (la, lb) = report.lost();
    pair.assert_one_child_pair("after B's restart");
    eprintln!(
        "restart: B killed at {killed:.3}, running {:.3} s later, IKE SA {:.3} s after that, \
         traffic back both ways {:.3} s after running ({:.3} s after the kill); lost A->B \
         {la}, B->A {lb} of {} each way",
        running - killed,
        auth - running,
        back - running,
        back - killed,
        report.lan["sent"]
    );
}

/// Removes the pair's directory after a passing test (kept for a failing one's logs).
fn finish(pair: Pair) {
    for (name, d) in pair.both() {
        assert!(
            !d.log_text().contains(PSK),
            "{name}: the PSK never reaches the log"
        );
    }
    let dir = pair.dir.clone();
    drop(pair);
    let _ = std::fs::remove_dir_all(dir);
}

/// A (the initiator) dies with SIGKILL and comes back 10 s later, initiating with
/// INITIAL_CONTACT: B drops the dead peer's SAs at once and traffic is back within 1 s of
/// B's new IKE SA.
#[test]
fn the_initiator_killed_and_restarted_reinitiates_with_initial_contact() {
    let _serial = serial();
    if !available() {
        return;
    }
    let mut pair = Pair::start(Opts {
        tag: "pqi",
        ..Opts::default()
    });
    pair.wait_up();
    let stream = pair.stream(500, 25);
    std::thread::sleep(Duration::from_secs(3));
    let killed = swan::epoch_now();
    pair.kill_a();
    std::thread::sleep(Duration::from_secs(10));
    pair.start_a(&INITIATOR, "a-restarted.log");
    let report = stream.finish();
    let blog = pair.b.log_text();
    let alog = pair.a.log_text();
    let running = swan::log_time(&alog, "espada running", killed)
        .unwrap_or_else(|| panic!("the restarted A runs:\n{alog}"));
    let auth = swan::log_time(&blog, "IKE SA established", killed)
        .unwrap_or_else(|| panic!("a new IKE SA on B after A's restart:\n{}", pair.logs()));
    let deleted = swan::log_time(&blog, "IKE SA deleted (InitialContact)", killed)
        .unwrap_or_else(|| panic!("B dropped the old SAs on INITIAL_CONTACT:\n{}", pair.logs()));
    let back = report
        .back_after(killed + 1.0)
        .unwrap_or_else(|| panic!("an outage while A was down: {report:?}"));
    assert!(
        back - auth <= 1.0,
        "traffic back {:.3} s after B's new IKE SA: {report:?}\n{}",
        back - auth,
        pair.logs()
    );
    let (oa, ob) = report.outages();
    assert!(
        oa.len() <= 1 && ob.len() <= 1,
        "one outage at each end, the restart: {report:?}\n{}",
        pair.logs()
    );
    pair.assert_one_child_pair("after A's restart");
    eprintln!(
        "initiator restart: A killed at {killed:.3}, running again {:.3} s later, B's IKE SA \
         {:.3} s after that (old SAs deleted on INITIAL_CONTACT {:+.3} s from it), traffic \
         back both ways {:.3} s after B's IKE SA ({:.1} s after the kill); one CHILD_SA pair \
         after",
        running - killed,
        auth - running,
        deleted - auth,
        back - auth,
        back - killed
    );
    finish(pair);
}

/// B watches A with DPD (delay 2 s, timeout 4 s, action restart). A dies with SIGKILL and
/// comes back 10 s later without initiating: B declares it dead, re-initiates, and traffic
/// is back within delay + timeout + 2 s of A running again.
#[test]
fn dpd_restores_the_tunnel_when_the_restarted_peer_does_not_initiate() {
    let _serial = serial();
    if !available() {
        return;
    }
    let mut pair = Pair::start(Opts {
        tag: "pqd",
        b: End {
            dpd: Some("{ delay: 2s, timeout: 4s, action: restart }"),
            ..RESPONDER
        },
        ..Opts::default()
    });
    pair.wait_up();
    let stream = pair.stream(500, 30);
    std::thread::sleep(Duration::from_secs(3));
    let killed = swan::epoch_now();
    pair.kill_a();
    std::thread::sleep(Duration::from_secs(10));
    pair.start_a(&RESPONDER, "a-silent.log");
    let report = stream.finish();
    let blog = pair.b.log_text();
    let alog = pair.a.log_text();
    let ready = swan::log_time(&alog, "espada running", killed)
        .unwrap_or_else(|| panic!("the restarted A runs:\n{alog}"));
    let dead = swan::log_time(&blog, "is dead", killed)
        .unwrap_or_else(|| panic!("B's DPD declared A dead:\n{blog}"));
    let auth = swan::log_time(&blog, "IKE SA established", ready)
        .unwrap_or_else(|| panic!("B re-initiated to the silent A:\n{}", pair.logs()));
    let back = report
        .back_after(killed + 1.0)
        .unwrap_or_else(|| panic!("an outage while A was down: {report:?}"));
    assert!(
        back - ready <= 2.0 + 4.0 + 2.0,
        "traffic back {:.3} s after A is running again (B's IKE SA {:.3} s after): \
         {report:?}\n{}",
        back - ready,
        auth - ready,
        pair.logs()
    );
    assert!(
        !alog.contains("initiating"),
        "the restarted A did not initiate:\n{alog}"
    );
    pair.assert_one_child_pair("after B's DPD restart");
    eprintln!(
        "DPD restart: A killed at {killed:.3}, B declared it dead {:.3} s later, A running \
         again {:.3} s after the kill, B's IKE SA {:.3} s after that, traffic back both ways \
         {:.3} s after A is running ({:.1} s after the kill); one CHILD_SA pair after",
        dead - killed,
        ready - killed,
        auth - ready,
        back - ready,
        back - killed
    );
    finish(pair);
}

/// B behind a MASQUERADE in the router initiates; A sees it at the router's address. Both
/// detect NAT (UDP 4500). The mapping changes (other source ports, conntrack flushed): A's
/// ESP to the old port is dropped by the router until B's next DPD request, from the new
/// port, moves A's outbound SA over.
#[test]
fn a_peer_behind_a_nat_whose_mapping_changes_is_followed_by_the_other_espada() {
    let _serial = serial();
    if !available_with(&["iptables", "conntrack"]) {
        return;
    }
    let pair = Pair::start(Opts {
        tag: "pqn",
        a: RESPONDER,
        b: End {
            dpd: Some("{ delay: 2s, timeout: 10s, action: restart }"),
            ..INITIATOR
        },
        b_behind_nat: true,
    });
    pair.wait_up();
    for (name, d) in pair.both() {
        let log = d.log_text();
        assert!(
            log.contains("NAT detected: UDP 4500"),
            "{name} detected the NAT:\n{log}"
        );
    }
    let t = tunnel(&pair.a);
    assert_eq!(
        (t.peer.to_string(), t.encapsulation.as_str()),
        (ROUTER_A.to_string(), "udp-4500"),
        "A sees B at the router's address, over UDP 4500: {t:?}"
    );
    let stream = pair.stream(500, 20);
    std::thread::sleep(Duration::from_secs(3));
    let changed = swan::change_nat_mapping(&pair.router, "a0");
    let report = stream.finish();
    let alog = pair.a.log_text();
    let moved = swan::log_time(&alog, &format!("peer moved to {ROUTER_A}:30"), changed)
        .unwrap_or_else(|| panic!("A saw B move:\n{}", pair.logs()));
    let mapping = pair.router.exec(&["conntrack", "-L", "-p", "udp"]).unwrap();
    let mapping = String::from_utf8_lossy(&mapping.stdout);
    assert!(mapping.contains("dport=30"), "the new mapping: {mapping}");
    let back = report
        .back_after(changed + 0.1)
        .expect("an outage towards the moved peer");
    assert!(
        back - moved <= 1.0 && back - changed <= 2.0 * 2.0 + 2.0,
        "traffic back {:.3} s after A saw the move, {:.3} s after the mapping changed: \
         {report:?}\n{}",
        back - moved,
        back - changed,
        pair.logs()
    );
    let (oa, ob) = report.outages();
    assert!(
        oa.len() <= 1 && ob.len() <= 1,
        "{report:?}\n{}",
        pair.logs()
    );
    let t = tunnel(&pair.a);
    assert_eq!(
        t.peer.to_string(),
        ROUTER_A,
        "A's tunnel peer is still the router's address after the move: {t:?}"
    );
    let (la, lb) = report.lost();
    eprintln!(
        "NAT mapping change: both ends detected the NAT (UDP 4500); A saw B move {:.3} s \
         after the change, traffic back both ways {:.3} s after that ({:.3} s after the \
         change); lost A->B {la}, B->A {lb} of {} each way",
        moved - changed,
        back - moved,
        back - changed,
        report.lan["sent"]
    );
    finish(pair);
}

/// A holds the wrong PSK: B refuses A's AUTH, A learns it was refused; both say so in a
/// line, count it, install nothing, and log neither PSK.
#[test]
fn the_wrong_psk_on_one_end_is_refused_with_a_clear_line_and_no_sa() {
    const WRONG: &str = "not-the-pair-psk-0123456789abcdef";
    let _serial = serial();
    if !available() {
        return;
    }
    let pair = Pair::start(Opts {
        tag: "pqp",
        a: End {
            psk: WRONG,
            ..INITIATOR
        },
        ..Opts::default()
    });
    let refused = |d: &Daemon| d.log_text().contains("authentication with");
    swan::wait_for(Duration::from_secs(20), || {
        refused(&pair.a) && refused(&pair.b)
    });
    let lines = |d: &Daemon| -> Vec<String> {
        d.log_text()
            .lines()
            .filter(|l| l.contains("authentication with"))
            .map(|l| {
                // The message, without the time and level.
                l.split_once("espada::control: ")
                    .map_or(l, |(_, m)| m)
                    .to_string()
            })
            .collect()
    };
    let (la, lb) = (lines(&pair.a), lines(&pair.b));
    assert!(
        lb.iter()
            .any(|l| l.contains(&format!("authentication with {}:500 failed", B.peer))),
        "B: a clear line for A's AUTH that did not verify:\n{}",
        pair.logs()
    );
    assert!(
        la.iter()
            .any(|l| l.contains(&format!("authentication with {}:500 failed", A.peer))),
        "A: a clear line for its refused AUTH:\n{}",
        pair.logs()
    );
    let mut counts = Vec::new();
    for (name, d) in pair.both() {
        let log = d.log_text();
        assert!(!log.contains("IKE SA established"), "{name}:\n{log}");
        assert!(
            !log.contains(PSK) && !log.contains("not-the-pair-psk"),
            "{name}: no PSK in the log"
        );
        let r = ike_report(d);
        assert_ne!(r.tunnels[0].state, "established", "{name}: {r:?}");
        assert!(d.sas().is_empty(), "{name}: no SA installed: {:?}", d.sas());
        counts.push((name, r.counters["ike.authentication_failed"]));
    }
    assert!(
        counts[1].1 >= 1,
        "B counted the failed authentication: {counts:?}"
    );
    eprintln!(
        "wrong PSK: B logged {:?}, A logged {:?}; ike.authentication_failed {counts:?}; no SA \
         on either, no PSK in either log",
        lb[0], la[0]
    );
    finish(pair);
}
