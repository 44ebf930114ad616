//! Two workers, one of them polling every RX queue (`rx_queues: 1`): packets of the SA owned by
//! the other worker are handed to it over the handoff rings and processed there only.

mod common;

use common::*;

#[test]
fn with_two_workers_and_one_rx_poller_every_packet_reaches_its_owner() {
    let lab = Lab::start(
        "ho",
        LabOpts {
            workers: &[1, 2],
            rx_queues: Some(1),
            tunnels: vec![
                // SPI 0x1000 names worker 0, SPI 0x1001 worker 1 (spi % workers).
                TunnelSpec {
                    name: "even",
                    spi_in: 0x1000,
                    spi_out: 0x2000,
                    remote_ts: &["203.0.113.0/25"],
                },
                TunnelSpec {
                    name: "odd",
                    spi_in: 0x1001,
                    spi_out: 0x2001,
                    remote_ts: &["203.0.113.128/25"],
                },
            ],
            ..Default::default()
        },
    );
    lab.lan
        .exec(&["ping", "-c", "1", "-W", "2", "192.0.2.1"])
        .unwrap();
    const N: usize = 50;
    let n = N.to_string();
    for (tunnel, spi_in, spi_out, remote) in [
        ("even", "0x1000", "0x2000", "203.0.113.5"),
        ("odd", "0x1001", "0x2001", "203.0.113.200"),
    ] {
        // Outbound: LAN -> peer.
        let key_out = lab.key(tunnel, "out");
        let rx = Receiver::start(
            &lab.peer,
            &[
                "recv-esp",
                "--iface",
                "peer0",
                "--spi",
                spi_out,
                "--key",
                path_str(&key_out),
                "--src",
                "198.51.100.1",
                "--dst",
                "198.51.100.2",
                "--count",
                &n,
                "--timeout",
                "10",
            ],
        );
        let sent = tool(
            &lab.lan,
            &[
                "send-clear",
                "--iface",
                "lan0",
                "--inner-src",
                "192.0.2.10",
                "--inner-dst",
                remote,
                "--count",
                &n,
            ],
        );
        assert_eq!(
            inner_hex(&rx.finish()),
            forwarded_hex(&sent),
            "{tunnel}: outbound byte-exact"
        );
        // Inbound: peer -> LAN.
        let key_in = lab.key(tunnel, "in");
        let rx = Receiver::start(
            &lab.lan,
            &[
                "recv-clear",
                "--iface",
                "lan0",
                "--src",
                remote,
                "--count",
                &n,
                "--timeout",
                "10",
            ],
        );
        let sent = tool(
            &lab.peer,
            &[
                "send-esp",
                "--iface",
                "peer0",
                "--spi",
                spi_in,
                "--key",
                path_str(&key_in),
                "--src",
                "198.51.100.2",
                "--dst",
                "198.51.100.1",
                "--inner-src",
                remote,
                "--inner-dst",
                "192.0.2.10",
                "--count",
                &n,
            ],
        );
        assert_eq!(
            inner_hex(&rx.finish()),
            forwarded_hex(&sent),
            "{tunnel}: inbound byte-exact"
        );
    }

    let w = lab.workers();
    assert_eq!(w.len(), 2);
    assert!(
        w[1].rx_queues.is_empty(),
        "worker 1 polls no RX queue: {:?}",
        w[1].rx_queues
    );
    assert_eq!(w[1].rx_packets, 0);
    // Everything for the odd tunnel crossed from worker 0 to worker 1, and only worker 1 ran it.
    assert_eq!(
        (w[1].esp_decap, w[1].esp_encap),
        (N as u64, N as u64),
        "{w:?}"
    );
    assert_eq!(
        (w[0].esp_decap, w[0].esp_encap),
        (N as u64, N as u64),
        "{w:?}"
    );
    assert_eq!(w[1].handoff_in, 2 * N as u64, "{w:?}");
    assert_eq!(w[0].handoff_out, 2 * N as u64, "{w:?}");
    assert_eq!((w[0].handoff_in, w[1].handoff_out), (0, 0));
    let sas = lab.sas();
    for s in &sas {
        let owner = if s.tunnel == "odd" { 1 } else { 0 };
        assert_eq!(s.owner_worker, owner, "{s:?}");
        assert_eq!(s.counters.packets, N as u64, "{s:?}");
    }
    let d = lab.drops();
    assert_eq!(d.total["not_owner"], 0);
    assert_eq!(d.total["handoff_ring_full"], 0);
}
