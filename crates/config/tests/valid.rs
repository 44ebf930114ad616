//! The full example configuration parses into the expected values.

use espada_config::*;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn prefix(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn env(name: &str) -> Option<String> {
    match name {
        "ESPADA_KEY_B_IN" => Some("0x a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3 \n".to_string()),
        "ESPADA_PSK_C" => Some("correct horse battery staple, espada\n".to_string()),
        _ => None,
    }
}

fn load_example() -> Loaded {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples");
    let text = std::fs::read_to_string(dir.join("lab-static.yaml")).unwrap();
    parse_str_with_env(&text, "lab-static.yaml", &dir, &env).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn lab_example_parses_into_expected_values() {
    let loaded = load_example();
    let c = &loaded.config;
    assert_eq!(
        c.appliance,
        Appliance {
            name: "lab-a".into(),
            lab: true
        }
    );
    assert_eq!(
        c.cores,
        Cores {
            control: 0,
            workers: vec![1],
            polling: Polling::Adaptive
        }
    );
    assert_eq!(
        c.ports.outside,
        Port {
            device: Device::Vdev {
                name: "net_af_packet0".into(),
                args: vec![("iface".into(), "esp-a-out".into())]
            },
            ipv4: Some(prefix("198.51.100.1/24")),
            ipv6: Some(prefix("2001:db8:1::1/64")),
            gateway4: Some(ip("198.51.100.254")),
            gateway6: Some(ip("2001:db8:1::fe")),
            mtu: 1500,
            rx_queues: None,
            neighbors: vec![],
        }
    );
    assert_eq!(
        c.ports.inside.device,
        Device::Pci {
            domain: 0,
            bus: 3,
            device: 0,
            function: 0
        }
    );
    assert_eq!(c.ports.inside.ipv6, None);
    assert_eq!(c.tunnels.len(), 2);
    let b = &c.tunnels[0];
    assert_eq!(b.name, "site-b");
    assert_eq!(b.peer, ip("198.51.100.2"));
    assert_eq!(b.encapsulation, Encapsulation::Udp);
    assert_eq!(b.local_ts, vec![prefix("192.0.2.0/24")]);
    assert_eq!(
        b.remote_ts,
        vec![prefix("203.0.113.0/24"), prefix("2001:db8:b::/48")]
    );
    assert_eq!(b.replay_window, 1024);
    assert!(!b.esn);
    let sa = b.static_sa.as_ref().unwrap();
    assert_eq!(sa.inbound.spi, 0x1000);
    assert_eq!(sa.inbound.algorithm, Algorithm::Aes128Gcm16);
    let expected_in: Vec<u8> = (0xa0..=0xb3).collect();
    assert_eq!(sa.inbound.key.expose(), &expected_in[..]);
    assert_eq!(sa.outbound.spi, 0x2000);
    assert_eq!(sa.outbound.algorithm, Algorithm::Aes256Gcm16);
    let expected_out: Vec<u8> = (0..36).collect();
    assert_eq!(sa.outbound.key.expose(), &expected_out[..]);
    assert_eq!(
        sa.lifetime,
        Lifetime {
            soft_bytes: Some(900_000_000),
            hard_bytes: Some(1_000_000_000),
            soft_packets: Some(900_000),
            hard_packets: Some(1_000_000),
        }
    );
    let cc = &c.tunnels[1];
    assert_eq!(cc.peer, ip("2001:db8:1::c"));
    assert_eq!(cc.encapsulation, Encapsulation::Esp);
    assert_eq!(cc.replay_window, DEFAULT_REPLAY_WINDOW);
    assert!(cc.static_sa.is_none());
    // site-c is negotiated: its own keys, then `defaults:`, then espada's defaults.
    let n = cc.negotiated.as_ref().expect("negotiated");
    assert!(b.negotiated.is_none(), "static tunnels are not negotiated");
    assert_eq!(n.ike.len(), 1);
    assert_eq!(n.esp.len(), 2, "from defaults.esp");
    assert!(!n.esp[0].dh.is_empty(), "PFS from defaults.esp");
    assert_eq!(
        n.remote_id,
        espada_ike::config::Identity::Fqdn("c.example.net".into())
    );
    assert_eq!(
        n.local_id,
        espada_ike::config::Identity::Addr(ip("2001:db8:1::1")),
        "our outside address of the peer's family"
    );
    assert_eq!(n.psk.expose(), b"correct horse battery staple, espada");
    assert_eq!(n.child_lifetime.time, Duration::from_secs(3600));
    assert_eq!(n.child_lifetime.margin, Duration::from_secs(300));
    assert_eq!(n.child_bytes, Some(1_000_000_000));
    assert_eq!(n.ike_lifetime, espada_config::DEFAULT_IKE_LIFETIME);
    assert_eq!(n.dpd.delay, Duration::from_secs(10));
    assert_eq!(n.start, espada_config::StartAction::Start);
    assert_eq!(c.logging.unknown_spi_interval, Duration::from_secs(5));
    assert_eq!(c.admin.socket, Path::new("/run/espada/admin.sock"));
    // Static SAs in lab mode load, with a loud warning naming the tunnel. The example's key
    // file is checked out readable by everyone (git keeps no 0600), which is warned about too.
    let key_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples/keys/b-out.hex");
    let readable = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o044 != 0
    };
    assert_eq!(
        loaded.warnings.len(),
        1 + usize::from(readable),
        "{:?}",
        loaded.warnings
    );
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("site-b") && w.contains("RFC 8221")),
        "{:?}",
        loaded.warnings
    );
    if readable {
        assert!(
            loaded.warnings.iter().any(|w| w.contains(
                "tunnels[0].static_sa.outbound.key: key file `keys/b-out.hex` is readable by group or others"
            )),
            "{:?}",
            loaded.warnings
        );
    }
}

#[test]
fn debug_output_redacts_keys() {
    let loaded = load_example();
    let debug = format!("{loaded:?}");
    assert!(debug.contains("[redacted]"));
    assert!(!debug.contains("a0a1"), "{debug}");
    assert!(!debug.contains("160, 161"), "{debug}");
}

#[test]
fn defaults_apply() {
    let text = "appliance: { name: a }\ncores: { control: 0, workers: [2, 1] }\nports:\n  \
                outside: { device: net_ring0, ipv6: '2001:db8::1/64' }\n  \
                inside: { device: net_ring1, ipv4: 198.18.0.1/15 }\n";
    let loaded = parse_str(text, "min.yaml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
    let c = loaded.config;
    assert!(!c.appliance.lab);
    assert_eq!(c.cores.polling, Polling::Adaptive);
    assert_eq!(c.cores.workers, vec![2, 1]);
    assert_eq!(c.ports.outside.mtu, DEFAULT_MTU);
    assert!(c.tunnels.is_empty());
    assert_eq!(
        c.logging.unknown_spi_interval,
        Duration::from_millis(DEFAULT_UNKNOWN_SPI_INTERVAL_MS)
    );
    assert_eq!(c.admin.socket, Path::new(DEFAULT_ADMIN_SOCKET));
    assert!(loaded.warnings.is_empty());
}

#[test]
fn load_resolves_key_files_next_to_the_config() {
    // `load` uses the process environment: use an example without env keys.
    let dir = std::env::temp_dir().join(format!("espada-config-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::write(
        dir.join("keys/k.hex"),
        "000102030405060708090a0b0c0d0e0f10111213\n",
    )
    .unwrap();
    let text = "appliance: { name: a, lab: true }\ncores: { control: 0, workers: [1] }\nports:\n  \
                outside: { device: net_ring0, ipv4: 198.18.1.1/16 }\n  \
                inside: { device: net_ring1, ipv4: 198.19.0.1/16 }\ntunnels:\n  - name: t\n    \
                peer: 198.18.1.2\n    local_ts: [198.19.0.0/16]\n    remote_ts: [203.0.113.0/24]\n    \
                static_sa:\n      inbound: { spi: 256, algorithm: aes128gcm16, key: { file: keys/k.hex } }\n      \
                outbound: { spi: 257, algorithm: aes128gcm16, key: { file: keys/k.hex } }\n";
    std::fs::write(dir.join("site.yaml"), text).unwrap();
    let loaded = load(&dir.join("site.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        loaded.config.tunnels[0]
            .static_sa
            .as_ref()
            .unwrap()
            .inbound
            .key
            .len(),
        20
    );
    let missing = load(&dir.join("nope.yaml")).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
    std::fs::write(dir.join("bad.yaml"), b"appliance: \xff\n").unwrap();
    let bad = load(&dir.join("bad.yaml")).unwrap_err();
    assert!(bad.to_string().contains("not valid UTF-8"), "{bad}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dpdk_args_and_rx_queues_are_read_and_derived_eal_options_refused() {
    let base = "appliance: { name: a }\ncores: { control: 0, workers: [1] }\nports:\n  \
                outside: { device: net_null0, ipv4: 198.51.100.1/24, rx_queues: 1 }\n  \
                inside: { device: net_null1, ipv4: 192.0.2.1/24 }\n";
    let ok = format!("{base}dpdk:\n  args: [--no-huge, -m, \"512\"]\n");
    let c = parse_str(&ok, "site.yaml", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(c.dpdk.args, vec!["--no-huge", "-m", "512"]);
    assert_eq!(c.ports.outside.rx_queues, Some(1));
    assert_eq!(c.ports.inside.rx_queues, None);
    let bad = format!("{base}dpdk:\n  args: [--no-huge, \"--vdev=net_ring9\"]\n");
    let e = parse_str(&bad, "site.yaml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("EAL option `--vdev` is set by espada")
            && e.contains("dpdk.args[1]")
            && e.contains("site.yaml:7"),
        "{e}"
    );
    assert_eq!(c.dpdk.mbufs, None, "sized by espada unless set");
    let sized = format!("{base}dpdk:\n  mbufs: 65535\n");
    let c = parse_str(&sized, "site.yaml", std::path::Path::new("."))
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(c.dpdk.mbufs, Some(65535));
    let few = format!("{base}dpdk:\n  mbufs: 100\n");
    let e = parse_str(&few, "site.yaml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dpdk.mbufs: 100 mbufs is out of range") && e.contains("site.yaml:7"),
        "{e}"
    );
    let zero = base.replace("rx_queues: 1", "rx_queues: 0");
    let e = parse_str(&zero, "site.yaml", std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ports.outside.rx_queues"), "{e}");
}

/// A negotiated tunnel whose PSK is in `psk.txt` (mode `mode`) next to the configuration.
fn negotiated_site(psk: &str, mode: u32) -> Loaded {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("espada-psk-{}-{mode:o}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("psk.txt");
    std::fs::write(&file, psk).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    let text = r#"
appliance: { name: hub }
cores: { control: 0, workers: [1] }
ports:
  outside: { device: "net_af_packet0,iface=wan0", ipv4: 198.51.100.1/24 }
  inside: { device: "net_af_packet1,iface=lan0", ipv4: 192.0.2.1/24 }
tunnels:
  - name: branch
    peer: 198.51.100.2
    local_ts: [192.0.2.0/24]
    remote_ts: [203.0.113.0/24]
    psk: { file: psk.txt }
"#;
    let loaded =
        parse_str_with_env(text, "hub.yaml", &dir, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_dir_all(&dir).unwrap();
    loaded
}

#[test]
fn a_psk_file_others_can_read_and_a_short_psk_are_warned_about_never_printed() {
    let secret = "a-long-enough-passphrase-for-the-lab";
    let ok = negotiated_site(&format!("{secret}\n"), 0o600);
    assert!(ok.warnings.is_empty(), "{:?}", ok.warnings);
    let n = ok.config.tunnels[0].negotiated.as_ref().unwrap();
    assert_eq!(
        n.psk.expose(),
        secret.as_bytes(),
        "trailing newline removed"
    );
    assert_eq!(
        ok.config.tunnels[0].encapsulation,
        Encapsulation::Auto,
        "negotiated default"
    );
    assert!(
        !format!("{:?}", ok.config).contains(secret),
        "Debug shows no PSK"
    );
    let open = negotiated_site(secret, 0o644);
    assert_eq!(open.warnings.len(), 1);
    assert!(
        open.warnings[0].contains("readable by group or others")
            && open.warnings[0].contains("0644"),
        "{:?}",
        open.warnings
    );
    let short = negotiated_site("0x0011223344", 0o600);
    assert_eq!(short.warnings.len(), 1);
    assert!(
        short.warnings[0].contains("only 5 bytes"),
        "{:?}",
        short.warnings
    );
    assert_eq!(
        short.config.tunnels[0]
            .negotiated
            .as_ref()
            .unwrap()
            .psk
            .expose(),
        &[0, 0x11, 0x22, 0x33, 0x44],
        "0x… is hex"
    );
    assert!(short.warnings.iter().all(|w| !w.contains("0011223344")));
}

#[test]
fn a_static_key_file_others_can_read_is_warned_about_like_a_psk_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("espada-key-mode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("in.hex");
    std::fs::write(&file, "00".repeat(20)).unwrap();
    let yaml = "appliance: { name: a, lab: true }\ncores: { control: 0, workers: [1] }\nports:\n  \
                outside: { device: net_null0, ipv4: 198.51.100.1/24 }\n  \
                inside: { device: net_null1, ipv4: 192.0.2.1/24 }\ntunnels:\n  - name: t\n    \
                peer: 198.51.100.2\n    local_ts: [192.0.2.0/24]\n    remote_ts: [203.0.113.0/24]\n    \
                static_sa:\n      inbound: { spi: 0x1000, algorithm: aes128gcm16, key: { file: in.hex } }\n      \
                outbound: { spi: 0x2000, algorithm: aes128gcm16, key: { file: in.hex } }\n";
    for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false)] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let l = parse_str(yaml, "site.yaml", &dir).unwrap_or_else(|e| panic!("{e}"));
        let w: Vec<&String> = l
            .warnings
            .iter()
            .filter(|w| w.contains("key file `in.hex` is readable by group or others"))
            .collect();
        assert_eq!(
            w.len(),
            if warned { 2 } else { 0 },
            "mode {mode:o}: {:?}",
            l.warnings
        );
        assert!(
            !format!("{:?}", l.warnings).contains("0000000000"),
            "no key in a warning"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn static_neighbors_are_on_link_unicast_and_listed_once() {
    let text = |neighbors: &str| {
        format!(
            "appliance: {{ name: t }}\ncores: {{ control: 0, workers: [1] }}\nports:\n  \
             outside: {{ device: net_null0, ipv4: 198.51.100.1/24 }}\n  \
             inside:\n    device: net_null1\n    ipv4: 192.0.2.1/24\n    ipv6: 2001:db8:a::1/64\n    neighbors:\n{neighbors}"
        )
    };
    let ok = text(
        "      - { ip: 192.0.2.10, mac: \"02:00:00:00:00:04\" }\n      - { ip: \"2001:db8:a::10\", mac: 02-00-00-00-00-05 }\n",
    );
    let c = espada_config::parse_str(&ok, "t.yaml", std::path::Path::new("."))
        .unwrap()
        .config;
    assert_eq!(
        c.ports.inside.neighbors,
        vec![
            espada_config::Neighbor {
                ip: ip("192.0.2.10"),
                mac: espada_wire::MacAddr([2, 0, 0, 0, 0, 4])
            },
            espada_config::Neighbor {
                ip: ip("2001:db8:a::10"),
                mac: espada_wire::MacAddr([2, 0, 0, 0, 0, 5])
            },
        ]
    );
    for (entry, says) in [
        (
            "      - { ip: 198.51.100.9, mac: \"02:00:00:00:00:04\" }\n",
            "neighbour 198.51.100.9 is not on the port's network",
        ),
        (
            "      - { ip: 192.0.2.10, mac: \"01:00:5e:00:00:01\" }\n",
            "invalid MAC address `01:00:5e:00:00:01`",
        ),
        (
            "      - { ip: 192.0.2.10, mac: \"02:00:00:00:04\" }\n",
            "invalid MAC address",
        ),
        (
            "      - { ip: 192.0.2.10, mac: \"02:00:00:00:00:04\" }\n      - { ip: 192.0.2.10, mac: \"02:00:00:00:00:05\" }\n",
            "neighbour 192.0.2.10 is listed twice",
        ),
    ] {
        let err = espada_config::parse_str(&text(entry), "t.yaml", std::path::Path::new("."))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(says), "{entry}: {err}");
        assert!(err.contains("ports.inside.neighbors["), "located: {err}");
    }
}
