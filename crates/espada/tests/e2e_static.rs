//! The appliance end to end with static SAs: espada in a namespace with af_packet ports, an
//! independent scapy peer and a LAN host. Traffic both ways arrives byte-exact but for the TTL
//! or hop limit, one less as after any router (raw ESP and NAT-T, IPv4 and IPv6 inner); replayed, tampered and unknown-SPI packets are dropped and
//! counted under the right reason; the unknown-SPI log is rate-limited; shutdown is clean.

mod common;

use common::*;

fn lan_to_peer(lab: &Lab, inner_src: &str, inner_dst: &str, count: usize) {
    let key = lab.key("peer", "out");
    let mut args = vec![
        "recv-esp",
        "--iface",
        "peer0",
        "--spi",
        "0x2000",
        "--key",
        path_str(&key),
        "--src",
        lab.box_outer,
        "--dst",
        lab.peer_outer,
        "--timeout",
        "10",
    ];
    let n = count.to_string();
    args.extend(["--count", &n]);
    if lab.udp {
        args.push("--udp");
    }
    let rx = Receiver::start(&lab.peer, &args);
    let sent = tool(
        &lab.lan,
        &[
            "send-clear",
            "--iface",
            "lan0",
            "--inner-src",
            inner_src,
            "--inner-dst",
            inner_dst,
            "--count",
            &n,
            "--size",
            "333",
        ],
    );
    let got = rx.finish();
    assert_eq!(
        inner_hex(&got),
        forwarded_hex(&sent),
        "the peer decrypts exactly what the LAN sent ({inner_src} -> {inner_dst})"
    );
}

fn peer_to_lan(lab: &Lab, inner_src: &str, inner_dst: &str, count: usize, seq_start: u32) {
    peer_to_lan_with(lab, inner_src, inner_dst, count, seq_start, &[]);
}

/// [`peer_to_lan`] with more `send-esp` arguments (they win over the defaults).
fn peer_to_lan_with(
    lab: &Lab,
    inner_src: &str,
    inner_dst: &str,
    count: usize,
    seq_start: u32,
    extra: &[&str],
) {
    let key = lab.key("peer", "in");
    let n = count.to_string();
    let seq = seq_start.to_string();
    let rx = Receiver::start(
        &lab.lan,
        &[
            "recv-clear",
            "--iface",
            "lan0",
            "--src",
            inner_src,
            "--count",
            &n,
            "--timeout",
            "10",
        ],
    );
    let mut args = vec![
        "send-esp",
        "--iface",
        "peer0",
        "--spi",
        "0x1000",
        "--key",
        path_str(&key),
        "--src",
        lab.peer_outer,
        "--dst",
        lab.box_outer,
        "--inner-src",
        inner_src,
        "--inner-dst",
        inner_dst,
        "--count",
        &n,
        "--seq-start",
        &seq,
        "--size",
        "501",
    ];
    if lab.udp {
        args.push("--udp");
    }
    args.extend_from_slice(extra);
    let sent = tool(&lab.peer, &args);
    let got = rx.finish();
    let drops: Vec<(String, u64)> = lab
        .drops()
        .total
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        inner_hex(&got),
        forwarded_hex(&sent),
        "the LAN receives exactly what the peer sealed ({inner_src} -> {inner_dst}); drops {drops:?}"
    );
}

fn both_ways(tag: &str, udp: bool, v6_outer: bool, log_json: bool) {
    let mut lab = Lab::start(
        tag,
        LabOpts {
            udp,
            v6_outer,
            log_json,
            ..Default::default()
        },
    );
    // The LAN host reaches the box first (as its gateway), so the box knows its MAC.
    lab.lan
        .exec(&["ping", "-c", "1", "-W", "2", "192.0.2.1"])
        .unwrap();
    lab.lan
        .exec(&["ping", "-6", "-c", "1", "-W", "2", "2001:db8:a::1"])
        .unwrap();
    lan_to_peer(&lab, "192.0.2.10", "203.0.113.5", 20);
    lan_to_peer(&lab, "2001:db8:a::10", "2001:db8:b::5", 20);
    peer_to_lan(&lab, "203.0.113.5", "192.0.2.10", 20, 1);
    peer_to_lan(&lab, "2001:db8:b::5", "2001:db8:a::10", 20, 21);
    let sas = lab.sas();
    let inb = sas.iter().find(|s| s.spi == 0x1000).unwrap();
    let out = sas.iter().find(|s| s.spi == 0x2000).unwrap();
    assert_eq!((inb.counters.packets, inb.seq), (40, 40));
    assert_eq!((out.counters.packets, out.seq), (40, 40));
    assert!(
        inb.counters.drops.is_empty() && out.counters.drops.is_empty(),
        "{sas:?}"
    );
    assert_eq!(out.encapsulation, if udp { "udp-4500" } else { "esp" });
    let (st, log) = lab.stop();
    assert!(st.success(), "clean exit on SIGTERM: {st}\n{log}");
    // stderr is a file: no ANSI colour codes either way.
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");
    if log_json {
        // Every line espada writes is one JSON object (DPDK's own lines are not espada's).
        let objects: Vec<serde_json::Value> = log
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert!(objects.len() >= 3, "{log}");
        assert!(
            objects
                .iter()
                .all(|o| o["level"].is_string() && o["fields"].is_object()),
            "{log}"
        );
        assert!(
            objects.iter().any(|o| o["fields"]["mbufs_in_use"] == 0),
            "every mbuf back in the pool at exit:\n{log}"
        );
        let stray: Vec<&str> = log
            .lines()
            .filter(|l| !l.starts_with('{') && !l.starts_with("EAL:") && !l.is_empty())
            .collect();
        assert!(stray.is_empty(), "lines that are not JSON: {stray:?}");
    } else {
        assert!(
            log.contains("mbufs_in_use=0"),
            "every mbuf back in the pool at exit:\n{log}"
        );
    }
}

#[test]
fn raw_esp_carries_ipv4_and_ipv6_both_ways_byte_exact() {
    both_ways("raw", false, false, false);
}

#[test]
fn nat_t_carries_ipv4_and_ipv6_both_ways_byte_exact_logging_json() {
    both_ways("natt", true, false, true);
}

#[test]
fn esp_fragmented_by_the_peer_is_reassembled_incomplete_and_overlapping_sets_are_counted() {
    // IPv6 outer: af_packet hands espada the fragments (the kernel's fanout defragments only
    // IPv4: crates/dataplane/tests/fragments_on_dpdk.rs has IPv4 on ring ports); raw ESP and
    // NAT-T, fragments in order and reversed, then an incomplete and an overlapping set.
    for (tag, udp) in [("frag6", false), ("frag6u", true)] {
        let mut lab = Lab::start(
            tag,
            LabOpts {
                udp,
                v6_outer: true,
                ..Default::default()
            },
        );
        lab.lan
            .exec(&["ping", "-c", "1", "-W", "2", "192.0.2.1"])
            .unwrap();
        for (seq, extra) in [
            (1, &["--size", "1200", "--fragment", "512"][..]),
            (
                11,
                &["--size", "1200", "--fragment", "400", "--reverse"][..],
            ),
        ] {
            peer_to_lan_with(&lab, "203.0.113.5", "192.0.2.10", 10, seq, extra);
        }
        let d = lab.drops();
        for r in ["outer_fragment", "reassembly_overlap", "other_protocol"] {
            assert_eq!(d.total[r], 0, "{r}: {:?}", d.total);
        }
        // Damaged: one datagram without its last fragment (incomplete), one with its second
        // fragment twice (an overlap drops the whole datagram, RFC 5722).
        let key = lab.key("peer", "in");
        for (seq, damage) in [("21", "drop-last"), ("22", "duplicate")] {
            let mut args = vec![
                "send-esp",
                "--iface",
                "peer0",
                "--spi",
                "0x1000",
                "--key",
                path_str(&key),
                "--src",
                lab.peer_outer,
                "--dst",
                lab.box_outer,
                "--inner-src",
                "203.0.113.5",
                "--inner-dst",
                "192.0.2.10",
                "--count",
                "1",
                "--seq-start",
                seq,
                "--size",
                "1200",
                "--fragment",
                "400",
                "--damage",
                damage,
            ];
            if udp {
                args.push("--udp");
            }
            tool(&lab.peer, &args);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while lab.drops().total["reassembly_overlap"] < 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                lab.drops().total
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // Past the 2 s timeout a new datagram takes the incomplete one's slot back: counted.
        std::thread::sleep(std::time::Duration::from_millis(2300));
        peer_to_lan_with(
            &lab,
            "203.0.113.5",
            "192.0.2.10",
            1,
            31,
            &["--size", "1200", "--fragment", "400"],
        );
        let timeouts = || -> u64 {
            lab.workers()
                .iter()
                .map(|w| w.counters["reassembly_timeouts"])
                .sum()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while timeouts() < 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the incomplete datagram timed out"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(lab.drops().total["reassembly_overlap"], 1);
        let (st, log) = lab.stop();
        assert!(st.success(), "{log}");
        assert!(log.contains("mbufs_in_use=0"), "every mbuf back: {log}");
    }
}

#[test]
fn ping_with_ttl_1_through_the_tunnel_gets_time_exceeded_from_the_box() {
    let lab = Lab::start("ttl", LabOpts::default());
    for (args, from, says) in [
        (
            &["ping", "-c", "1", "-W", "2", "-t", "1", "203.0.113.5"][..],
            "From 192.0.2.1",
            "Time to live exceeded",
        ),
        (
            &[
                "ping",
                "-6",
                "-c",
                "1",
                "-W",
                "2",
                "-t",
                "1",
                "2001:db8:b::5",
            ][..],
            "From 2001:db8:a::1",
            "Time exceeded: Hop limit",
        ),
    ] {
        // The first ping may go to ARP/ND resolution of the LAN host; the second is answered.
        let mut out = String::new();
        for _ in 0..3 {
            let o = lab.lan.command(args[0]).args(&args[1..]).output().unwrap();
            out = String::from_utf8_lossy(&o.stdout).into_owned();
            if out.contains(says) {
                break;
            }
        }
        assert!(out.contains(from) && out.contains(says), "{args:?}:\n{out}");
    }
    let d = lab.drops();
    assert!(d.total["ttl_exceeded"] >= 2, "{:?}", d.total);
    assert_eq!(d.total["no_route"], 0);
}

/// `ping -M do` of `size` bytes of payload from the LAN host; its output.
fn ping_df(lab: &Lab, size: usize) -> String {
    let s = size.to_string();
    let o = lab
        .lan
        .command("ping")
        .args(["-c", "1", "-W", "2", "-M", "do", "-s", &s, "203.0.113.5"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn an_icmp_fragmentation_needed_about_our_esp_lowers_the_tunnel_mtu_and_df_senders_hear_it() {
    let lab = Lab::start("pmtu", LabOpts::default());
    lab.lan
        .exec(&["ping", "-c", "1", "-W", "2", "192.0.2.1"])
        .unwrap();
    // A router on the way says our ESP (SPI 0x2000) needs 1300 bytes (RFC 1191).
    let icmp = "from scapy.all import *; conf.verb=0; \
        q = IP(src='198.51.100.1', dst='198.51.100.2', proto=50, flags='DF', len=1400) / Raw(bytes.fromhex('0000200000000001')); \
        send(IP(src='198.51.100.2', dst='198.51.100.1') / ICMP(type=3, code=4, nexthopmtu=1300) / q, iface='peer0')";
    let sent = lab
        .peer
        .command("python3")
        .args(["-c", icmp])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let pmtu = loop {
        let t = match lab.daemon.call(espada_admin::Request::ShowTunnels) {
            espada_admin::Response::Tunnels(v) => v,
            other => panic!("{other:?}"),
        };
        if t[0].pmtu.is_some() || std::time::Instant::now() > deadline {
            break t[0].pmtu;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(pmtu, Some(1300), "show tunnels has the path MTU");
    // Raw ESP over IPv4: 1300 − 52 of ESP overhead − 2, so the largest inner packet is 1246.
    let out = ping_df(&lab, 1300);
    assert!(
        out.contains("mtu = 1246") || out.contains("mtu=1246"),
        "the DF sender is told the tunnel's MTU:\n{out}"
    );
    let out = ping_df(&lab, 1246 - 28);
    assert!(
        !out.contains("mtu"),
        "a packet that fits still goes through:\n{out}"
    );
    let d = lab.drops();
    assert!(d.total["too_big_for_tunnel"] >= 1, "{:?}", d.total);
    // A report above the current value never raises it.
    let raise = icmp.replace("nexthopmtu=1300", "nexthopmtu=1450");
    assert!(
        lab.peer
            .command("python3")
            .args(["-c", &raise])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t = match lab.daemon.call(espada_admin::Request::ShowTunnels) {
        espada_admin::Response::Tunnels(v) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(t[0].pmtu, Some(1300));
    assert!(
        lab.daemon
            .log_text()
            .contains("path MTU towards the peer lowered")
    );
}

#[test]
fn replayed_tampered_and_unknown_spi_packets_are_dropped_counted_and_logged_once() {
    let lab = Lab::start("bad", LabOpts::default());
    lab.lan
        .exec(&["ping", "-c", "1", "-W", "2", "192.0.2.1"])
        .unwrap();
    let key = lab.key("peer", "in");
    // Three good packets, then the last one again (replay), then a tampered one.
    let rx = Receiver::start(
        &lab.lan,
        &[
            "recv-clear",
            "--iface",
            "lan0",
            "--src",
            "203.0.113.5",
            "--count",
            "3",
            "--timeout",
            "5",
        ],
    );
    let common = [
        "--iface",
        "peer0",
        "--spi",
        "0x1000",
        "--key",
        path_str(&key),
        "--src",
        "198.51.100.2",
        "--dst",
        "198.51.100.1",
        "--inner-src",
        "203.0.113.5",
        "--inner-dst",
        "192.0.2.10",
    ];
    tool(
        &lab.peer,
        &[&["send-esp", "--count", "3", "--replay"][..], &common[..]].concat(),
    );
    tool(
        &lab.peer,
        &[
            &["send-esp", "--count", "1", "--seq-start", "10", "--tamper"][..],
            &common[..],
        ]
        .concat(),
    );
    assert_eq!(
        inner_hex(&rx.finish()).len(),
        3,
        "only the three good packets reach the LAN"
    );

    // 300 packets with an unknown SPI from the configured peer, 200 from a stranger.
    tool(
        &lab.peer,
        &[
            "send-junk",
            "--iface",
            "peer0",
            "--spi",
            "0xdead0001",
            "--src",
            "198.51.100.2",
            "--dst",
            "198.51.100.1",
            "--count",
            "300",
        ],
    );
    tool(
        &lab.peer,
        &[
            "send-junk",
            "--iface",
            "peer0",
            "--spi",
            "0xdead0002",
            "--src",
            "198.51.100.77",
            "--dst",
            "198.51.100.1",
            "--count",
            "200",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));

    let d = lab.drops();
    assert_eq!(d.total["replayed"], 1, "{:?}", d.total);
    assert_eq!(d.total["auth_failed"], 1);
    assert_eq!(d.total["unknown_spi_known_peer"], 300);
    assert_eq!(d.total["unknown_spi_unknown_source"], 200);
    let inb = lab.sas().into_iter().find(|s| s.spi == 0x1000).unwrap();
    assert_eq!(inb.counters.drops.get("replayed"), Some(&1));
    assert_eq!(inb.counters.drops.get("auth_failed"), Some(&1));
    assert_eq!(inb.counters.packets, 3);
    // Sequence numbers 1, 2, 3 accepted; the replay and the forged 10 changed nothing.
    assert_eq!(
        (inb.seq, inb.replay_bitmap.as_deref()),
        (3, Some("0000000000000007"))
    );
    // Samples pass a per-worker token bucket (64 at once, then 1000/s, one bucket for the
    // peer's classes and one for strangers): every drop is counted above, the samples are at
    // least a burst's worth and never more than the packets.
    let recent = &d.recent_unknown_spi;
    assert!(
        recent.iter().any(|r| r.spi == 0xdead0001
            && r.class == "known-peer"
            && (64..=300).contains(&r.count)),
        "{recent:?}"
    );
    assert!(
        recent.iter().any(|r| r.spi == 0xdead0002
            && r.class == "unknown-source"
            && (64..=200).contains(&r.count)),
        "{recent:?}"
    );

    let log = lab.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("unknown SPI:")).collect();
    assert_eq!(
        lines.len(),
        2,
        "one line per source per 10 s, however many arrive:\n{log}"
    );
    assert!(
        lines.iter().any(|l| l.contains(
            "class=known-peer src=198.51.100.2 dst=198.51.100.1 spi=0xdead0001 seq=0x00000001"
        ) && l.contains("port=outside")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("class=unknown-source src=198.51.100.77")
                && l.contains("spi=0xdead0002")),
        "{lines:?}"
    );
}

#[test]
fn raw_esp_over_ipv6_carries_ipv4_and_ipv6_both_ways_byte_exact() {
    both_ways("raw6", false, true, false);
}

#[test]
fn nat_t_over_ipv6_carries_ipv4_and_ipv6_both_ways_byte_exact() {
    both_ways("natt6", true, true, false);
}
