//! Two espada processes back to back (site A ↔ site B) over a veth "WAN", with mirrored static
//! SAs, carry ping and a TCP stream between two LAN namespaces.

mod common;

use std::process::Stdio;

use common::*;
use espada_testnet::Netns;

const STREAM_TOOL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/lab/tcp_stream.py"
);

#[allow(clippy::too_many_arguments)]
fn site_yaml(
    name: &str,
    outside: &str,
    inside: &str,
    peer: &str,
    local: &str,
    remote: &str,
    spi_in: u32,
    spi_out: u32,
    udp: bool,
    fragmentation: &str,
    sock: &str,
) -> String {
    format!(
        "appliance: {{ name: {name}, lab: true }}\ncores: {{ control: 0, workers: [1] }}\nports:\n  \
         outside: {{ device: \"net_af_packet0,iface=wan0\", ipv4: {outside} }}\n  \
         inside: {{ device: \"net_af_packet1,iface=lan0\", ipv4: {inside} }}\n\
         tunnels:\n  - name: to-{peer_name}\n    peer: {peer}\n    encapsulation: {e}\n    local_ts: [{local}]\n    remote_ts: [{remote}]\n    \
         fragmentation: {fragmentation}\n    static_sa:\n      inbound: {{ spi: {spi_in:#x}, algorithm: aes256gcm16, key: {{ file: {spi_in:x}.hex }} }}\n      \
         outbound: {{ spi: {spi_out:#x}, algorithm: aes256gcm16, key: {{ file: {spi_out:x}.hex }} }}\n\
         admin: {{ socket: {sock} }}\ndpdk: {{ args: [--no-huge, -m, \"512\", --no-shconf, --log-level, \"error\"] }}\n",
        peer_name = if name == "site-a" { "site-b" } else { "site-a" },
        e = if udp { "udp" } else { "esp" },
    )
}

fn key36() -> String {
    random_key() + &random_key()[..32]
}

/// A router between the sites says site A's ESP (SPI 0x2000) needs 1300 bytes: an ICMP
/// "fragmentation needed" sent from B's WAN interface straight to A's.
fn fragmentation_needed_towards_a(a: &Netns, b: &Netns, udp: bool) {
    let link = a.exec(&["cat", "/sys/class/net/wan0/address"]).unwrap();
    let mac_a = String::from_utf8_lossy(&link.stdout).trim().to_string();
    let quote = if udp {
        "IP(src='198.51.100.1', dst='198.51.100.2', flags='DF', len=1400) / UDP(sport=4500, dport=4500, len=1380)"
    } else {
        "IP(src='198.51.100.1', dst='198.51.100.2', proto=50, flags='DF', len=1400)"
    };
    let script = format!(
        "from scapy.all import *; conf.verb = 0; \
         sendp(Ether(dst='{mac_a}') / IP(src='198.51.100.2', dst='198.51.100.1') / \
         ICMP(type=3, code=4, nexthopmtu=1300) / {quote} / Raw(bytes.fromhex('0000200000000001')), \
         iface='wan0')"
    );
    let st = b.command("python3").args(["-c", &script]).status().unwrap();
    assert!(st.success());
}

/// How a run lowers site A's path MTU, if it does, and where A then fragments.
#[derive(Clone, Copy, PartialEq)]
enum Pmtu {
    Link,
    Lowered(&'static str),
}

fn site_to_site(tag: &str, udp: bool, pmtu: Pmtu) {
    let (lower_pmtu, fragmentation) = match pmtu {
        Pmtu::Link => (false, "before-encryption"),
        Pmtu::Lowered(f) => (true, f),
    };
    require_root();
    let lan_a = Netns::new(&format!("{tag}la")).unwrap();
    let a = Netns::new(&format!("{tag}a")).unwrap();
    let b = Netns::new(&format!("{tag}b")).unwrap();
    let lan_b = Netns::new(&format!("{tag}lb")).unwrap();
    lan_a.veth_to("host0", &a, "lan0").unwrap();
    a.veth_to("wan0", &b, "wan0").unwrap();
    b.veth_to("lan0", &lan_b, "host0").unwrap();
    // The kernel side of the WAN link takes 1600 bytes; espada's af_packet ports run at 1500
    // (DPDK's af_packet allows no more), so full-size DF packets are refused with
    // "fragmentation needed" and TCP adapts.
    sh(&a, "ip link set wan0 mtu 1600");
    sh(&b, "ip link set wan0 mtu 1600");
    sh(&lan_a, "ip addr add 192.0.2.10/24 dev host0");
    sh(&lan_a, "ip route add default via 192.0.2.1");
    sh(&lan_b, "ip addr add 203.0.113.10/24 dev host0");
    sh(&lan_b, "ip route add default via 203.0.113.1");

    let dir = std::env::temp_dir().join(format!("espada-s2s-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A's inbound SA is B's outbound SA and the other way round: same SPI, same key.
    std::fs::write(dir.join("1000.hex"), key36()).unwrap();
    std::fs::write(dir.join("2000.hex"), key36()).unwrap();
    let (sa, sb) = (dir.join("a.sock"), dir.join("b.sock"));
    std::fs::write(
        dir.join("a.yaml"),
        site_yaml(
            "site-a",
            "198.51.100.1/24",
            "192.0.2.1/24",
            "198.51.100.2",
            "192.0.2.0/24",
            "203.0.113.0/24",
            0x1000,
            0x2000,
            udp,
            fragmentation,
            sa.to_str().unwrap(),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        site_yaml(
            "site-b",
            "198.51.100.2/24",
            "203.0.113.1/24",
            "198.51.100.1",
            "203.0.113.0/24",
            "192.0.2.0/24",
            0x2000,
            0x1000,
            udp,
            fragmentation,
            sb.to_str().unwrap(),
        ),
    )
    .unwrap();
    let da = Daemon::start(&a, &dir.join("a.yaml"), sa, dir.join("a.log"));
    let db = Daemon::start(&b, &dir.join("b.yaml"), sb, dir.join("b.log"));

    // Ping: the first may be lost while the boxes resolve the LAN hosts' MACs.
    let _ = lan_a.exec(&["ping", "-c", "1", "-W", "2", "203.0.113.10"]);
    let ping = lan_a
        .exec(&["ping", "-c", "10", "-i", "0.05", "-W", "2", "203.0.113.10"])
        .unwrap();
    let out = String::from_utf8_lossy(&ping.stdout);
    assert!(
        out.contains("10 received"),
        "ping through the tunnel:\n{out}"
    );

    if lower_pmtu {
        fragmentation_needed_towards_a(&a, &b, udp);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while da.tunnels()[0].pmtu != Some(1300) {
            assert!(std::time::Instant::now() < deadline, "{:?}", da.tunnels());
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // Without DF, 1,428 bytes do not fit A's 1,300-byte path: A fragments them (before or
        // after encryption, as configured) and the replies come back whole.
        let ping = lan_a
            .exec(&[
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "2",
                "-M",
                "dont",
                "-s",
                "1400",
                "203.0.113.10",
            ])
            .unwrap();
        let out = String::from_utf8_lossy(&ping.stdout);
        assert!(out.contains("3 received"), "{fragmentation}:\n{out}");
        let counter = format!("fragmented_{}", fragmentation.replace('-', "_"));
        let fragmented: u64 = da.workers().iter().map(|w| w.counters[&counter]).sum();
        assert!(fragmented >= 3, "{counter} {fragmented}");
    }

    // A TCP stream of 4 MB, checked end to end by SHA-256. With the lowered path MTU, A's
    // LAN host learns it from espada's "fragmentation needed" (PMTU discovery end to end).
    let mut server = lan_b
        .command("python3")
        .args([STREAM_TOOL, "server", "5001"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.contains("ready"), "{line}");
    let client = lan_a
        .command("python3")
        .args([STREAM_TOOL, "client", "203.0.113.10", "5001", "4000000"])
        .output()
        .unwrap();
    let _ = server.wait();
    assert!(
        client.status.success(),
        "TCP stream: {}{}",
        String::from_utf8_lossy(&client.stdout),
        String::from_utf8_lossy(&client.stderr)
    );

    for d in [&da, &db] {
        let sas = d.sas();
        assert_eq!(sas.len(), 2);
        // 4 MB is ~2800 full-size packets one way; the other way carries the ACKs.
        assert!(
            sas.iter()
                .all(|s| s.counters.packets > 200 && s.counters.drops.is_empty()),
            "{sas:?}"
        );
        assert!(
            sas.iter().map(|s| s.counters.bytes).max().unwrap() >= 4_000_000,
            "{sas:?}"
        );
        assert_eq!(d.drops().total["auth_failed"], 0);
    }
    if lower_pmtu {
        let too_big = da.drops().total["too_big_for_tunnel"];
        assert!(
            too_big > 0,
            "segments above the tunnel's MTU refused with ICMP"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_espadas_carry_ping_and_tcp_between_two_lans_over_raw_esp() {
    site_to_site("s2s", false, Pmtu::Link);
}

#[test]
fn two_espadas_carry_ping_and_tcp_between_two_lans_over_nat_t() {
    site_to_site("s2u", true, Pmtu::Link);
}

#[test]
fn after_a_router_lowers_the_path_mtu_df_tcp_adapts_and_non_df_packets_are_fragmented() {
    // Raw ESP fragments before encryption (the default), NAT-T after it.
    site_to_site("s2p", false, Pmtu::Lowered("before-encryption"));
    site_to_site("s2q", true, Pmtu::Lowered("after-encryption"));
}
