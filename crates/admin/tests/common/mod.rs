//! Sample views shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use espada_admin::{
    AdminError, Direction, DropsView, IkeReport, IkeView, LifetimeView, Request, Response,
    SaCountersView, SaView, TunnelSaView, TunnelView, UnknownSpiView, WorkerView,
};

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect()
}

pub fn sas() -> Vec<SaView> {
    vec![
        SaView {
            tunnel: "site-b".into(),
            direction: Direction::Inbound,
            spi: 0x1000,
            owner_worker: 1,
            algorithm: "aes128gcm16".into(),
            crypto: "ipsec-mb".into(),
            encapsulation: "udp-4500".into(),
            local: ip("198.51.100.1"),
            remote: ip("198.51.100.2"),
            esn: false,
            seq: 1_234,
            replay_window: 64,
            replay_bitmap: Some("fffffffffffffffe".into()),
            lifetime: LifetimeView {
                bytes: 88_000,
                packets: 1_000,
                soft_bytes: Some(800_000),
                hard_bytes: Some(1_000_000),
                soft_packets: Some(8_000),
                hard_packets: Some(10_000),
            },
            counters: SaCountersView {
                packets: 1_000,
                bytes: 88_000,
                drops: counts(&[("replay", 3), ("auth-failed", 1)]),
            },
            state: "active".into(),
        },
        SaView {
            tunnel: "site-b".into(),
            direction: Direction::Outbound,
            spi: 0xc0ff_ee01,
            owner_worker: 1,
            algorithm: "aes128gcm16".into(),
            crypto: "ring".into(),
            encapsulation: "udp-4500".into(),
            local: ip("198.51.100.1"),
            remote: ip("198.51.100.2"),
            esn: false,
            seq: 990,
            replay_window: 0,
            replay_bitmap: None,
            lifetime: LifetimeView {
                bytes: 87_120,
                packets: 990,
                soft_bytes: Some(800_000),
                hard_bytes: Some(1_000_000),
                soft_packets: None,
                hard_packets: None,
            },
            counters: SaCountersView {
                packets: 990,
                bytes: 87_120,
                drops: BTreeMap::new(),
            },
            state: "soft-expired".into(),
        },
        SaView {
            tunnel: "spoke-0042".into(),
            direction: Direction::Inbound,
            spi: 0x0004_2001,
            owner_worker: 0,
            algorithm: "aes256gcm16".into(),
            crypto: String::new(),
            encapsulation: "esp".into(),
            local: ip("2001:db8::1"),
            remote: ip("2001:db8:42::2"),
            esn: true,
            seq: 5_000_000_000,
            replay_window: 1024,
            replay_bitmap: Some("0x00000000ffffffff".into()),
            lifetime: LifetimeView::default(),
            counters: SaCountersView {
                packets: 4_999_999_000,
                bytes: 6_000_000_000_000,
                drops: BTreeMap::new(),
            },
            state: "active".into(),
        },
    ]
}

fn sa(direction: Direction, spi: u32, state: &str) -> TunnelSaView {
    TunnelSaView {
        direction,
        spi,
        state: state.into(),
    }
}

pub fn tunnels() -> Vec<TunnelView> {
    vec![
        TunnelView {
            name: "site-b".into(),
            peer: ip("198.51.100.2"),
            local: ip("198.51.100.1"),
            encapsulation: "udp-4500".into(),
            local_ts: vec!["198.18.0.0/16".into()],
            remote_ts: vec!["198.19.0.0/16".into()],
            inbound_spi: Some(0x1000),
            outbound_spi: Some(0xc0ff_ee01),
            packets_in: 1_000,
            packets_out: 990,
            bytes_in: 88_000,
            bytes_out: 87_120,
            drops: 4,
            icmp_errors: 0,
            pmtu: Some(1_422),
            ike_state: Some("established".into()),
            next_rekey_s: Some(1_187),
            last_dpd_s: Some(4),
            sas: vec![
                sa(Direction::Inbound, 0x0fff, "retiring"),
                sa(Direction::Inbound, 0x1000, "live"),
                sa(Direction::Outbound, 0xc0ff_ee00, "removing"),
                sa(Direction::Outbound, 0xc0ff_ee01, "active"),
            ],
        },
        TunnelView {
            name: "spoke-0042".into(),
            peer: ip("2001:db8:42::2"),
            local: ip("2001:db8::1"),
            encapsulation: "esp".into(),
            local_ts: vec!["0.0.0.0/0".into(), "::/0".into()],
            remote_ts: vec!["198.19.42.0/24".into()],
            inbound_spi: Some(0x0004_2001),
            outbound_spi: None,
            packets_in: 4_999_999_000,
            packets_out: 0,
            bytes_in: 6_000_000_000_000,
            bytes_out: 0,
            drops: 0,
            icmp_errors: 12,
            pmtu: None,
            ike_state: None,
            next_rekey_s: None,
            last_dpd_s: None,
            sas: vec![sa(Direction::Inbound, 0x0004_2001, "live")],
        },
    ]
}

pub fn drops() -> DropsView {
    let reasons = [
        (
            "auth-failed",
            1,
            "ICV check failed (wrong key or corrupted packet)",
        ),
        (
            "replay",
            3,
            "sequence number already seen or left of the replay window",
        ),
        (
            "no-sa",
            7,
            "no SA for the SPI (see recent unknown-SPI packets)",
        ),
        (
            "bad-padding",
            0,
            "ESP padding or next-header invalid after decryption",
        ),
        ("ring-full", 0, "handoff ring to the owning worker was full"),
        ("ttl-exceeded", 0, "inner TTL/hop limit reached zero"),
    ];
    DropsView {
        total: reasons.iter().map(|&(r, n, _)| (r.to_owned(), n)).collect(),
        descriptions: reasons
            .iter()
            .map(|&(r, _, d)| (r.to_owned(), d.to_owned()))
            .collect(),
        per_worker: vec![
            counts(&[("no-sa", 7)]),
            counts(&[("replay", 3), ("auth-failed", 1)]),
        ],
        recent_unknown_spi: vec![
            UnknownSpiView {
                at_unix_ms: 1_795_514_400_123,
                class: "tombstone".into(),
                src: ip("198.51.100.2"),
                dst: ip("198.51.100.1"),
                spi: 0x0000_0fff,
                seq: 0x2a,
                len: 120,
                port: "outside/0".into(),
                count: 5,
            },
            UnknownSpiView {
                at_unix_ms: 1_795_514_399_000,
                class: "unknown-source".into(),
                src: ip("203.0.113.77"),
                dst: ip("198.51.100.1"),
                spi: 0xdead_beef,
                seq: 1,
                len: 1_400,
                port: "outside/1".into(),
                count: 2,
            },
        ],
    }
}

pub fn workers() -> Vec<WorkerView> {
    vec![
        WorkerView {
            id: 0,
            lcore: 2,
            rx_queues: vec!["outside/0".into(), "inside/0".into()],
            rx_packets: 5_000_001_000,
            tx_packets: 4_999_999_990,
            esp_decap: 4_999_999_000,
            esp_encap: 0,
            handoff_out: 1_000,
            handoff_in: 0,
            punted: 17,
            drops: 7,
            busy_polls: 3,
            idle_polls: 1,
            table_generation: 42,
            owned_sas: 1,
            key_cache_hits: 40,
            key_cache_misses: 2,
            counters: [
                ("reassembled", 3),
                ("esp_decap", 4_999_999_000),
                ("mss_clamped", 0),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        },
        WorkerView {
            id: 1,
            lcore: 3,
            rx_queues: vec!["outside/1".into(), "inside/1".into()],
            rx_packets: 1_990,
            tx_packets: 1_990,
            esp_decap: 0,
            esp_encap: 990,
            handoff_out: 0,
            handoff_in: 1_000,
            punted: 0,
            drops: 4,
            busy_polls: 1,
            idle_polls: 999,
            table_generation: 42,
            owned_sas: 2,
            key_cache_hits: 0,
            key_cache_misses: 0,
            counters: [("reassembled", 2), ("fragmented_before_encryption", 1_000)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        },
    ]
}

/// `show ike` of a hub with one branch up and one still connecting.
pub fn ike() -> IkeReport {
    let counters = [
        ("ike.datagrams_received", 912),
        ("ike.no_proposal_chosen", 3),
        ("ike.cookies_sent", 0),
        ("control.rekeys_started", 2),
    ];
    IkeReport {
        tunnels: ike_tunnels(),
        counters: counters.map(|(k, v)| (k.to_string(), v)).into(),
    }
}

fn ike_tunnels() -> Vec<IkeView> {
    vec![
        IkeView {
            name: "branch-a".into(),
            state: "established".into(),
            ike_spis: Some(("284eb2cbe330836a".into(), "893ed63ee7f72d94".into())),
            child_spis: Some((0xf24f_4001, 0x793b_aeab)),
            next_child_rekey_s: Some(3042),
            next_ike_rekey_s: Some(13_800),
            child_rekeys: 2,
            ike_rekeys: 0,
            last_dpd_s: Some(12),
        },
        IkeView {
            name: "branch-b".into(),
            state: "connecting".into(),
            ike_spis: None,
            child_spis: None,
            next_child_rekey_s: None,
            next_ike_rekey_s: None,
            child_rekeys: 0,
            ike_rekeys: 0,
            last_dpd_s: None,
        },
    ]
}

pub const VERSION: &str = "0.1.0-test";

/// The canned handler a daemon would have.
pub fn handler(req: Request) -> Result<Response, AdminError> {
    Ok(match req {
        Request::ShowSa { spi: None } => Response::Sa(sas()),
        Request::ShowSa { spi: Some(spi) } => {
            let found: Vec<SaView> = sas().into_iter().filter(|s| s.spi == spi).collect();
            if found.is_empty() {
                return Err(AdminError::not_found(format!("no SA with SPI 0x{spi:08x}")));
            }
            Response::Sa(found)
        }
        Request::ShowTunnels => Response::Tunnels(tunnels()),
        Request::ShowDrops => Response::Drops(drops()),
        Request::ShowWorkers => Response::Workers(workers()),
        Request::Ping => Response::Pong {
            version: VERSION.into(),
        },
        Request::ShowIke => Response::Ike(ike()),
        Request::Initiate { tunnel }
        | Request::Clear { tunnel }
        | Request::Rekey { tunnel, .. } => Response::Done {
            message: format!("{tunnel}: done"),
        },
    })
}
