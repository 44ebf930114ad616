//! The strongSwan lab of the `e2e_strongswan*` tests: espada (the real daemon, af_packet ports)
//! in `dut`, a LAN host (192.0.2.10) behind it in `lan`, and charon (kernel-libipsec: ESP in
//! user space, always UDP-encapsulated) in `peer` (198.51.100.2) protecting 203.0.113.0/24
//! (203.0.113.1 on its loopback). With [`Opts::peer_nat`], charon sits behind a MASQUERADE
//! namespace instead (charon 198.18.8.2 → NAT 198.18.8.1 | 198.51.100.2 → espada, which sees
//! its peer at the NAT's address). With [`Opts::nat`], espada's outside port sits behind a
//! MASQUERADE namespace instead: espada 198.18.7.2 → NAT 198.18.7.1 | 198.51.100.1 → charon.
//!
//! Needs root and strongSwan; the tests skip with a note otherwise, and fail with
//! `ESPADA_REQUIRE_STRONGSWAN=1` (CI).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use espada_testnet::Netns;
use serde_json::Value;

use super::{Daemon, sh};

pub const PSK: &str = "espada-e2e-psk-0123456789abcdef";

/// The host behind charon (on its loopback).
pub const PEER_HOST: &str = "203.0.113.1";

/// X25519 for IKE, no PFS on rekeys.
pub const SET_X25519: (&str, &str) = ("aes128gcm16-prfsha256-x25519", "aes128gcm16");
/// ECP-384 for IKE, PFS with MODP-2048 on every CHILD_SA rekey.
pub const SET_PFS: (&str, &str) = ("aes256gcm16-prfsha384-ecp384", "aes256gcm16-modp2048");

/// The unknown-SPI and no-SA drop classes that a correct rekey never produces.
pub const REKEY_DROPS: [&str; 5] = [
    "unknown_spi_tombstone",
    "unknown_spi_known_peer",
    "unknown_spi_unknown_source",
    "policy_mismatch",
    "no_outbound_sa",
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/lab/ike/swan.sh")
}

fn udp_seq() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/lab/udp_seq.py")
}

/// True when the lab can run; panics under `ESPADA_REQUIRE_STRONGSWAN=1` when it cannot.
pub fn available() -> bool {
    let mut missing = espada_testnet::strongswan_missing();
    if !espada_testnet::on_path("conntrack") {
        missing.push("conntrack");
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("e2e_strongswan needs {}", missing.join(", "));
    if std::env::var("ESPADA_REQUIRE_STRONGSWAN").is_ok_and(|v| v == "1") {
        panic!("{msg}; ESPADA_REQUIRE_STRONGSWAN=1 forbids skipping");
    }
    eprintln!("skipping: {msg}");
    false
}

/// charon in `ns` through swan.sh; stopped when dropped.
pub struct Charon {
    pub ns: String,
    pub state: PathBuf,
    pub dir: PathBuf,
    conf: Vec<String>,
}

impl Charon {
    pub fn swan(&self, args: &[&str]) -> String {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .env("SWAN_NS_R", &self.ns)
            .env("SWAN_STATE", &self.state)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swan.sh {args:?}: {}{}\ncharon log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }

    /// Writes the configuration (the lab's keys, then `extra` overriding them) and starts
    /// charon; returns when its connection is loaded.
    pub fn start(&self, extra: &[&str]) {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut args = vec!["conf", &dir];
        args.extend(self.conf.iter().map(String::as_str));
        args.extend_from_slice(extra);
        self.swan(&args);
        self.swan(&["start", "charon", &self.ns, &dir]);
    }

    /// SIGKILL: charon ends without a DELETE; its SAs (and the TUN device) vanish with it.
    pub fn kill(&self) {
        let pid = std::fs::read_to_string(self.state.join("charon/pid")).unwrap();
        let st = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap();
        assert!(st.success());
        std::thread::sleep(Duration::from_millis(300));
        // The log of the next start replaces this one: keep it for a failure report.
        let _ = std::fs::rename(
            self.dir.join("charon.log"),
            self.dir.join(format!("charon.{}.log", epoch_now() as u64)),
        );
    }

    /// `swanctl --list-sas --raw`.
    pub fn sas(&self) -> String {
        self.swan(&["ctl", "charon", "--list-sas", "--raw"])
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", "charon"])
            .env("SWAN_STATE", &self.state)
            .status();
        if std::thread::panicking() {
            eprintln!("--- charon log ---\n{}", self.log());
        }
    }
}

/// How one lab differs from the default (charon initiates, X25519, the right PSK).
pub struct Opts {
    /// espada `start: start` and charon `start_action=none`, or the other way round.
    pub espada_initiates: bool,
    /// espada's `start:` instead of the above (charon's follows `espada_initiates`).
    pub espada_start: Option<&'static str>,
    pub set: (&'static str, &'static str),
    pub charon_psk: &'static str,
    /// Lines appended to espada's tunnel (YAML, 4 spaces of indent).
    pub tunnel_yaml: &'static str,
    /// `child_lifetime` of espada's tunnel.
    pub child_lifetime: &'static str,
    /// swan.sh conf keys added to the lab's.
    pub charon: Vec<String>,
    /// espada behind a MASQUERADE namespace.
    pub nat: bool,
    /// charon behind a MASQUERADE namespace.
    pub peer_nat: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            espada_initiates: false,
            espada_start: None,
            set: SET_X25519,
            charon_psk: PSK,
            tunnel_yaml: "",
            child_lifetime: "{ time: 20s, margin: 8s, jitter: 1s }",
            charon: Vec::new(),
            nat: false,
            peer_nat: false,
        }
    }
}

/// The namespaces, espada and charon of one test. Fields drop in order: charon and espada
/// stop before the namespaces go.
pub struct SwanLab {
    pub charon: Charon,
    pub daemon: Daemon,
    pub dir: PathBuf,
    pub lan: Netns,
    pub peer: Netns,
    pub nat: Option<Netns>,
    pub dut: Netns,
}

impl SwanLab {
    /// Builds the lab and starts espada and charon, without waiting for a tunnel.
    pub fn start(o: Opts) -> SwanLab {
        let dut = Netns::new("swd").unwrap();
        let lan = Netns::new("swl").unwrap();
        let peer = Netns::new("swp").unwrap();
        dut.veth_to("in0", &lan, "lan0").unwrap();
        let (nat, outside) = if o.nat {
            let nat = Netns::new("swn").unwrap();
            dut.veth_to("out0", &nat, "priv0").unwrap();
            nat.veth_to("pub0", &peer, "peer0").unwrap();
            for c in [
                "ip addr add 198.18.7.1/24 dev priv0",
                "ip addr add 198.51.100.1/24 dev pub0",
                "sysctl -qw net.ipv4.ip_forward=1",
                "iptables -t nat -A POSTROUTING -o pub0 -j MASQUERADE",
            ] {
                sh(&nat, c);
            }
            (Some(nat), "ipv4: 198.18.7.2/24, gateway4: 198.18.7.1")
        } else if o.peer_nat {
            let nat = Netns::new("swq").unwrap();
            dut.veth_to("out0", &nat, "pub0").unwrap();
            nat.veth_to("priv0", &peer, "peer0").unwrap();
            for c in [
                "ip addr add 198.18.8.1/24 dev priv0",
                "ip addr add 198.51.100.2/24 dev pub0",
                "sysctl -qw net.ipv4.ip_forward=1",
                "iptables -t nat -A POSTROUTING -o pub0 -j MASQUERADE",
            ] {
                sh(&nat, c);
            }
            (Some(nat), "ipv4: 198.51.100.1/24")
        } else {
            dut.veth_to("out0", &peer, "peer0").unwrap();
            (None, "ipv4: 198.51.100.1/24")
        };
        let peer_addr = if o.peer_nat {
            "198.18.8.2"
        } else {
            "198.51.100.2"
        };
        for c in [
            "ip addr add 192.0.2.10/24 dev lan0",
            "ip route add default via 192.0.2.1",
            "ethtool -K lan0 tx off",
        ] {
            sh(&lan, c);
        }
        for c in [
            &format!("ip addr add {peer_addr}/24 dev peer0"),
            "ip addr add 203.0.113.1/32 dev lo",
            "ethtool -K peer0 tx off",
        ] {
            sh(&peer, c);
        }
        if o.peer_nat {
            sh(&peer, "ip route add default via 198.18.8.1");
        }
        let dir = std::env::temp_dir().join(format!("espada-e2e-swan-{}", dut.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let psk = dir.join("branch.psk");
        std::fs::write(&psk, PSK).unwrap();
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
        let socket = dir.join("admin.sock");
        let (ike, esp) = o.set;
        let yaml = format!(
            "appliance: {{ name: hub }}\ncores: {{ control: 0, workers: [1] }}\nports:\n  \
             outside: {{ device: \"net_af_packet0,iface=out0\", {outside} }}\n  \
             inside: {{ device: \"net_af_packet1,iface=in0\", ipv4: 192.0.2.1/24 }}\n\
             tunnels:\n  - name: branch\n    peer: 198.51.100.2\n    local_ts: [192.0.2.0/24]\n    \
             remote_ts: [203.0.113.0/24]\n    local_id: hub.example\n    remote_id: branch.example\n    \
             psk: {{ file: branch.psk }}\n    ike: {ike}\n    esp: {esp}\n    \
             child_lifetime: {child}\n    start: {start}\n{extra}\
             admin: {{ socket: {s} }}\n\
             dpdk: {{ args: [--no-huge, -m, \"512\", --no-shconf, --log-level, \"error\"] }}\n",
            s = socket.display(),
            start = o
                .espada_start
                .unwrap_or(if o.espada_initiates { "start" } else { "none" }),
            child = o.child_lifetime,
            extra = o.tunnel_yaml,
        );
        std::fs::write(dir.join("hub.yaml"), yaml).unwrap();
        let daemon = Daemon::start(&dut, &dir.join("hub.yaml"), socket, dir.join("espada.log"));

        // Behind the NAT espada is seen from 198.51.100.1 too (the NAT's public side).
        let mut conf: Vec<String> = [
            format!("local_addr={peer_addr}"),
            "remote_addr=198.51.100.1".into(),
            "local_id=branch.example".into(),
            "remote_id=hub.example".into(),
            format!("psk={}", o.charon_psk),
            "local_ts=203.0.113.0/24".into(),
            "remote_ts=192.0.2.0/24".into(),
            format!(
                "start_action={}",
                if o.espada_initiates { "none" } else { "start" }
            ),
            format!("ike_proposal={ike}"),
            format!("esp_proposal={esp}"),
            "delete_rekeyed_delay=1".into(),
        ]
        .into();
        conf.extend(o.charon);
        let charon = Charon {
            ns: peer.name().to_string(),
            state: dir.join("swan-state"),
            dir: dir.join("charon"),
            conf,
        };
        charon.start(&[]);
        SwanLab {
            charon,
            daemon,
            dir,
            lan,
            peer,
            nat,
            dut,
        }
    }

    /// Kills espada (SIGKILL: no DELETE reaches the peer) and starts it again with the same
    /// configuration, logging to `log` in the lab's directory.
    pub fn crash_and_restart_espada(&mut self, log: &str) {
        self.daemon.kill();
        self.daemon = Daemon::start(
            &self.dut,
            &self.dir.join("hub.yaml"),
            self.dir.join("admin.sock"),
            self.dir.join(log),
        );
    }

    /// `espada ARGS --socket …`, asserting success; its standard output.
    pub fn espada(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_espada"))
            .args(args)
            .arg("--socket")
            .arg(self.dir.join("admin.sock"))
            .output()
            .unwrap();
        assert!(out.status.success(), "espada {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for the CHILD_SA on charon, then warms the path up: ARP for the LAN host, and
    /// the responder's rule for a new CHILD_SA (its outbound SA starts on the first packet
    /// from the initiator, or 2 s after IKE_AUTH).
    pub fn wait_up(&self) {
        self.charon.swan(&["wait-sa", "charon", "lab", "20"]);
        let _ = ping(&self.lan, PEER_HOST, 3, "0.5");
        std::thread::sleep(Duration::from_secs(2));
        let out = ping(&self.lan, PEER_HOST, 10, "0.05");
        assert!(
            out.contains("10 received"),
            "ping through the negotiated tunnel:\n{out}\nespada log:\n{}",
            self.daemon.log_text()
        );
    }

    /// A sequenced UDP stream both ways between the LAN host and 203.0.113.1.
    pub fn stream(&self, pps: u32, seconds: u32) -> Stream {
        stream_between(
            (&self.lan, "192.0.2.10"),
            (&self.peer, PEER_HOST),
            pps,
            seconds,
        )
    }
}

/// A sequenced UDP stream both ways (port 5001) between two hosts, each a namespace and its
/// address; in the [`StreamReport`], `lan` is the first host's end and `peer` the second's.
pub fn stream_between(lan: (&Netns, &str), peer: (&Netns, &str), pps: u32, seconds: u32) -> Stream {
    Stream {
        lan: udp_seq_in(lan.0, lan.1, peer.1, pps, seconds),
        peer: udp_seq_in(peer.0, peer.1, lan.1, pps, seconds),
    }
}

/// `ping -c COUNT -i INTERVAL -W 2 HOST` from `ns`; its standard output.
pub fn ping(ns: &Netns, host: &str, count: u32, interval: &str) -> String {
    let out = ns
        .command("ping")
        .args(["-c", &count.to_string(), "-i", interval, "-W", "2", host])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn udp_seq_in(ns: &Netns, local: &str, remote: &str, pps: u32, seconds: u32) -> Child {
    ns.command("python3")
        .arg(udp_seq())
        .args([
            local,
            "5001",
            remote,
            &pps.to_string(),
            &seconds.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The two halves of a running [`SwanLab::stream`].
pub struct Stream {
    lan: Child,
    peer: Child,
}

/// A gap in arrivals: (last packet before, first packet after), seconds since the epoch.
pub type Outage = (f64, f64);

/// What both ends of a stream saw: `lan` is the LAN host's report (its `sent` went to the
/// peer, its `received` came from the peer), `peer` the other one.
#[derive(Debug)]
pub struct StreamReport {
    pub lan: Value,
    pub peer: Value,
}

impl Stream {
    pub fn finish(self) -> StreamReport {
        let read = |c: Child| -> Value {
            let out = c.wait_with_output().unwrap();
            serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("udp_seq.py output {e}: {out:?}"))
        };
        StreamReport {
            lan: read(self.lan),
            peer: read(self.peer),
        }
    }
}

impl StreamReport {
    /// Packets lost LAN → peer and peer → LAN.
    pub fn lost(&self) -> (u64, u64) {
        let n = |v: &Value, k: &str| v[k].as_u64().unwrap();
        (
            n(&self.lan, "sent") - n(&self.peer, "received"),
            n(&self.peer, "sent") - n(&self.lan, "received"),
        )
    }

    pub fn duplicates(&self) -> u64 {
        self.lan["duplicates"].as_u64().unwrap() + self.peer["duplicates"].as_u64().unwrap()
    }

    /// The gaps (wall-clock seconds since the epoch) at each receiving end: LAN's, peer's.
    /// An outage that never ended ends at infinity.
    pub fn outages(&self) -> (Vec<Outage>, Vec<Outage>) {
        let o = |v: &Value| {
            v["outages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    (
                        g[0].as_f64().unwrap(),
                        g[1].as_f64().unwrap_or(f64::INFINITY),
                    )
                })
                .collect()
        };
        (o(&self.lan), o(&self.peer))
    }

    /// When traffic flowed again at both ends after an outage that was under way at `t`:
    /// the later of the two ends of the outages covering `t` (infinity when one never
    /// ended); `None` when neither end saw an outage at `t`.
    pub fn back_after(&self, t: f64) -> Option<f64> {
        let (a, b) = self.outages();
        let end = |v: &[(f64, f64)]| v.iter().find(|(s, e)| *s <= t && t <= *e).map(|(_, e)| *e);
        match (end(&a), end(&b)) {
            (None, None) => None,
            (x, y) => Some(x.unwrap_or(t).max(y.unwrap_or(t))),
        }
    }
}

/// Gives every UDP flow through the MASQUERADE of `nat` (its first POSTROUTING rule, out of
/// `public`) a new source port (30000–30999) and forgets the old mappings (`conntrack -F`);
/// returns when, in seconds since the epoch. Packets towards an old mapping are dropped from
/// then on.
pub fn change_nat_mapping(nat: &Netns, public: &str) -> f64 {
    sh(
        nat,
        &format!(
            "iptables -t nat -R POSTROUTING 1 -o {public} -p udp -j MASQUERADE --to-ports 30000-30999"
        ),
    );
    let changed = epoch_now();
    sh(nat, "conntrack -F");
    changed
}

/// Seconds since the epoch, now.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The time (seconds since the epoch) of the first espada log line after `after` containing
/// `needle`; espada's lines start with an RFC 3339 UTC time (`2026-12-01T15:37:12.356926Z`).
pub fn log_time(log: &str, needle: &str, after: f64) -> Option<f64> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| rfc3339(l.split_whitespace().next()?))
        .find(|&t| t > after)
}

fn rfc3339(s: &str) -> Option<f64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

/// Waits up to `limit` for `cond`, polling every 100 ms.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}
