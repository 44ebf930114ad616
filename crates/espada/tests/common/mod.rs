//! A lab in network namespaces: espada (the real daemon, af_packet ports) in `dut`, a LAN host
//! in `lan` (192.0.2.10, 2001:db8:a::10) and an independent IPsec peer in `peer` (198.51.100.2,
//! scapy with the mirror SAs, protecting 203.0.113.0/24 and 2001:db8:b::/64). Everything is
//! removed when the `Lab` drops.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use espada_admin::{AdminClient, DropsView, Request, Response, SaView, WorkerView};
use espada_testnet::Netns;
use serde_json::Value;

pub mod swan;

pub const PEER_TOOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/lab/esp_peer.py");

/// One static tunnel of the lab.
pub struct TunnelSpec {
    pub name: &'static str,
    pub spi_in: u32,
    pub spi_out: u32,
    pub remote_ts: &'static [&'static str],
}

pub struct LabOpts {
    pub udp: bool,
    /// Tunnel over IPv6 (box 2001:db8:1::1, peer 2001:db8:1::2) instead of IPv4.
    pub v6_outer: bool,
    pub workers: &'static [u32],
    pub rx_queues: Option<u16>,
    pub tunnels: Vec<TunnelSpec>,
    /// `espada run --log-format json`.
    pub log_json: bool,
}

impl Default for LabOpts {
    fn default() -> Self {
        LabOpts {
            udp: false,
            v6_outer: false,
            workers: &[1],
            rx_queues: None,
            tunnels: vec![TunnelSpec {
                name: "peer",
                spi_in: 0x1000,
                spi_out: 0x2000,
                remote_ts: &["203.0.113.0/24", "2001:db8:b::/64"],
            }],
            log_json: false,
        }
    }
}

/// An espada daemon running in a namespace, with its admin socket and log.
pub struct Daemon {
    pub socket: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `espada run --config CONFIG` in `ns` and waits until its admin socket answers.
    /// Its stderr is a file, so its log lines must carry no colour codes.
    pub fn start(ns: &Netns, config: &Path, socket: PathBuf, log: PathBuf) -> Daemon {
        Daemon::start_with(ns, config, socket, log, &[])
    }

    /// As [`Daemon::start`], with more arguments to `espada run`.
    pub fn start_with(
        ns: &Netns,
        config: &Path,
        socket: PathBuf,
        log: PathBuf,
        args: &[&str],
    ) -> Daemon {
        let child = ns
            .command(env!("CARGO_BIN_EXE_espada"))
            .args(["run", "--config"])
            .arg(config)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            socket,
            log,
            child: Some(child),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|d| d.try_wait()) {
                panic!("espada exited early ({st}):\n{}", self.log_text());
            }
            if let Ok(mut c) = AdminClient::connect(&self.socket)
                && matches!(c.call(Request::Ping), Ok(Response::Pong { .. }))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("espada did not come up:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn call(&self, r: Request) -> Response {
        AdminClient::connect(&self.socket).unwrap().call(r).unwrap()
    }

    pub fn drops(&self) -> DropsView {
        match self.call(Request::ShowDrops) {
            Response::Drops(d) => d,
            other => panic!("{other:?}"),
        }
    }

    pub fn tunnels(&self) -> Vec<espada_admin::view::TunnelView> {
        match self.call(Request::ShowTunnels) {
            Response::Tunnels(t) => t,
            other => panic!("{other:?}"),
        }
    }

    pub fn sas(&self) -> Vec<SaView> {
        match self.call(Request::ShowSa { spi: None }) {
            Response::Sa(v) => v,
            other => panic!("{other:?}"),
        }
    }

    pub fn workers(&self) -> Vec<WorkerView> {
        match self.call(Request::ShowWorkers) {
            Response::Workers(v) => v,
            other => panic!("{other:?}"),
        }
    }

    /// Kills the daemon with SIGKILL (a crash: nothing sent, nothing cleaned up).
    pub fn kill(&mut self) {
        let mut d = self.child.take().expect("running");
        let _ = d.kill();
        let _ = d.wait();
    }

    /// Stops the daemon with SIGTERM and returns its exit status and log.
    pub fn stop(&mut self) -> (std::process::ExitStatus, String) {
        let mut d = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &d.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = d.try_wait().unwrap() {
                return (st, self.log_text());
            }
            if Instant::now() > deadline {
                let _ = d.kill();
                panic!("espada did not stop on SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut d) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &d.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(500));
            let _ = d.kill();
            let _ = d.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- espada log {} ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

pub struct Lab {
    pub dut: Netns,
    pub lan: Netns,
    pub peer: Netns,
    pub dir: PathBuf,
    pub udp: bool,
    /// The box's outer address.
    pub box_outer: &'static str,
    /// The peer's outer address.
    pub peer_outer: &'static str,
    pub daemon: Daemon,
}

pub fn random_key() -> String {
    let mut b = [0u8; 20];
    let mut r = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut r, &mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn require_root() {
    assert!(
        espada_testnet::available(),
        "end-to-end tests need root and iproute2 (deploy/test.sh installs them)"
    );
}

/// Runs `cmd` (split on spaces) in `ns`.
pub fn sh(ns: &Netns, cmd: &str) {
    ns.exec(&cmd.split(' ').collect::<Vec<_>>()).unwrap();
}

impl Lab {
    pub fn start(tag: &str, o: LabOpts) -> Lab {
        require_root();
        let dut = Netns::new(&format!("{tag}d")).unwrap();
        let lan = Netns::new(&format!("{tag}l")).unwrap();
        let peer = Netns::new(&format!("{tag}p")).unwrap();
        dut.veth_to("in0", &lan, "lan0").unwrap();
        dut.veth_to("out0", &peer, "peer0").unwrap();
        for c in [
            "ip addr add 192.0.2.10/24 dev lan0",
            "ip route add default via 192.0.2.1",
            "sysctl -qw net.ipv6.conf.lan0.disable_ipv6=0",
            "ip addr add 2001:db8:a::10/64 dev lan0 nodad",
            "ip -6 route add default via 2001:db8:a::1",
            // No port-unreachable answers to test traffic: counters stay exact.
            "iptables -A INPUT -p udp --dport 40001 -j DROP",
            "ip6tables -A INPUT -p udp --dport 40001 -j DROP",
        ] {
            lan.exec(&c.split(' ').collect::<Vec<_>>()).unwrap();
        }
        for c in [
            "ip addr add 198.51.100.2/24 dev peer0",
            // The peer's kernel has no ESP: keep it from answering our ESP with ICMP.
            "iptables -A INPUT -p esp -j DROP",
            "iptables -A INPUT -p udp --dport 4500 -j DROP",
            "ip6tables -A INPUT -p esp -j DROP",
            "ip6tables -A INPUT -p udp --dport 4500 -j DROP",
        ] {
            peer.exec(&c.split(' ').collect::<Vec<_>>()).unwrap();
        }
        let dir = std::env::temp_dir().join(format!("espada-lab-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (box_outer, peer_outer) = if o.v6_outer {
            ("2001:db8:1::1", "2001:db8:1::2")
        } else {
            ("198.51.100.1", "198.51.100.2")
        };
        if o.v6_outer {
            for c in [
                "sysctl -qw net.ipv6.conf.peer0.disable_ipv6=0",
                "ip addr add 2001:db8:1::2/64 dev peer0 nodad",
            ] {
                peer.exec(&c.split(' ').collect::<Vec<_>>()).unwrap();
            }
        }
        let v6out = if o.v6_outer {
            ", ipv6: 2001:db8:1::1/64"
        } else {
            ""
        };
        let mut tunnels = String::new();
        for t in &o.tunnels {
            std::fs::write(dir.join(format!("{}-in.hex", t.name)), random_key()).unwrap();
            std::fs::write(dir.join(format!("{}-out.hex", t.name)), random_key()).unwrap();
            tunnels += &format!(
                "  - name: {n}\n    peer: {peer_outer}\n    encapsulation: {e}\n    local_ts: [192.0.2.0/24, 2001:db8:a::/64]\n    \
                 remote_ts: [{r}]\n    static_sa:\n      inbound: {{ spi: {i:#x}, algorithm: aes128gcm16, key: {{ file: {n}-in.hex }} }}\n      \
                 outbound: {{ spi: {x:#x}, algorithm: aes128gcm16, key: {{ file: {n}-out.hex }} }}\n",
                n = t.name,
                e = if o.udp { "udp" } else { "esp" },
                r = t.remote_ts.join(", "),
                i = t.spi_in,
                x = t.spi_out,
                peer_outer = peer_outer,
            );
        }
        let rxq = o
            .rx_queues
            .map(|q| format!(", rx_queues: {q}"))
            .unwrap_or_default();
        let socket = dir.join("admin.sock");
        let yaml = format!(
            "appliance: {{ name: {tag}, lab: true }}\ncores: {{ control: 0, workers: {w:?} }}\nports:\n  \
             outside: {{ device: \"net_af_packet0,iface=out0\", ipv4: 198.51.100.1/24{v6out}{rxq} }}\n  \
             inside: {{ device: \"net_af_packet1,iface=in0\", ipv4: 192.0.2.1/24, ipv6: 2001:db8:a::1/64{rxq} }}\n\
             tunnels:\n{tunnels}admin: {{ socket: {s} }}\n\
             dpdk: {{ args: [--no-huge, -m, \"512\", --no-shconf, --log-level, \"error\"] }}\n",
            w = o.workers,
            s = socket.display(),
        );
        std::fs::write(dir.join("site.yaml"), yaml).unwrap();
        let args: &[&str] = if o.log_json {
            &["--log-format", "json"]
        } else {
            &[]
        };
        let daemon = Daemon::start_with(
            &dut,
            &dir.join("site.yaml"),
            socket,
            dir.join("espada.log"),
            args,
        );
        Lab {
            dut,
            lan,
            peer,
            dir,
            udp: o.udp,
            box_outer,
            peer_outer,
            daemon,
        }
    }

    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }

    pub fn drops(&self) -> DropsView {
        self.daemon.drops()
    }

    pub fn sas(&self) -> Vec<SaView> {
        self.daemon.sas()
    }

    pub fn workers(&self) -> Vec<WorkerView> {
        self.daemon.workers()
    }

    pub fn key(&self, tunnel: &str, dir: &str) -> PathBuf {
        self.dir.join(format!("{tunnel}-{dir}.hex"))
    }

    pub fn stop(&mut self) -> (std::process::ExitStatus, String) {
        self.daemon.stop()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the peer tool in `ns` and returns its JSON lines.
pub fn tool(ns: &Netns, args: &[&str]) -> Vec<Value> {
    let out = ns
        .command("python3")
        .arg(PEER_TOOL)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "esp_peer.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A receiver started in the background; `finish` waits for it and returns its JSON lines.
pub struct Receiver {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Receiver {
    pub fn start(ns: &Netns, args: &[&str]) -> Receiver {
        let mut child = ns
            .command("python3")
            .arg(PEER_TOOL)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    let _ = tx.send(v);
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("receiver ready");
        assert_eq!(first["ready"], true);
        Receiver { child, lines: rx }
    }

    pub fn finish(mut self) -> Vec<Value> {
        self.child.wait().unwrap();
        self.lines.try_iter().collect()
    }
}

pub fn inner_hex(v: &[Value]) -> Vec<String> {
    v.iter()
        .filter_map(|x| x["inner"].as_str().map(String::from))
        .collect()
}

/// The inner packets of `v` as espada forwards them (a router: TTL or hop limit one less, the
/// IPv4 header checksum updated), hex-encoded like [`inner_hex`].
pub fn forwarded_hex(v: &[Value]) -> Vec<String> {
    inner_hex(v)
        .iter()
        .map(|h| {
            let mut p = hex_bytes(h);
            match p[0] >> 4 {
                4 => {
                    p[8] -= 1;
                    p[10..12].copy_from_slice(&[0, 0]);
                    let hl = usize::from(p[0] & 0x0f) * 4;
                    let mut sum: u32 = p[..hl]
                        .chunks(2)
                        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                        .sum();
                    while sum >> 16 != 0 {
                        sum = (sum & 0xffff) + (sum >> 16);
                    }
                    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
                }
                _ => p[7] -= 1,
            }
            p.iter().map(|b| format!("{b:02x}")).collect()
        })
        .collect()
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
