//! espada on ports with one RX/TX queue pair (`net_pcap`, as DPDK's ipsec-secgw is benchmarked):
//! it starts, worker 0 polls both ports and the control thread's frames leave through worker
//! 0's TX queue over a ring. The peer's ESP is read from a pcap file, decrypted and written to
//! the inside port's pcap; the LAN's cleartext is read from another, encrypted and written to
//! the outside port's pcap; the box answers an ARP request from the LAN (a control-thread frame,
//! relayed). Static neighbours stand in for ARP on links where nothing answers.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use espada_buf::{PacketBuf, VecBuf};
use espada_esp::{Backend, Direction, InboundSa, KeyCache, OutboundSa, SaConfig};
use espada_testnet::Netns;

const BOX_WAN: [u8; 4] = [198, 51, 100, 1];
const PEER: [u8; 4] = [198, 51, 100, 2];
const BOX_LAN: [u8; 4] = [192, 0, 2, 1];
const LAN_HOST: [u8; 4] = [192, 0, 2, 10];
const REMOTE: [u8; 4] = [203, 0, 113, 5];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 3];
const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 4];
const PACKETS: usize = 64;

/// A pcap file (microsecond timestamps) of Ethernet frames.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut f = Vec::new();
    for w in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        f.extend_from_slice(&w.to_le_bytes());
    }
    for (i, frame) in frames.iter().enumerate() {
        for w in [0, i as u32, frame.len() as u32, frame.len() as u32] {
            f.extend_from_slice(&w.to_le_bytes());
        }
        f.extend_from_slice(frame);
    }
    std::fs::write(path, f).unwrap();
}

/// The frames of a pcap file (microsecond or nanosecond timestamps, little-endian).
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let d = std::fs::read(path).unwrap_or_default();
    if d.len() < 24 {
        return Vec::new();
    }
    let magic = u32::from_le_bytes(d[..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d,
        "pcap magic {magic:#x}"
    );
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= d.len() {
        let len = u32::from_le_bytes(d[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16;
        out.push(d[at..at + len].to_vec());
        at += len;
    }
    out
}

fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    [&dst[..], &src[..], &ethertype.to_be_bytes(), payload].concat()
}

fn ipv4_udp(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((28 + payload.len()) as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = espada_wire::checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&4000u16.to_be_bytes());
    p[22..24].copy_from_slice(&5000u16.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// `p` as the box forwards it: TTL one less, header checksum updated.
fn forwarded(p: &[u8]) -> Vec<u8> {
    let mut f = p.to_vec();
    f[8] -= 1;
    f[10..12].copy_from_slice(&[0, 0]);
    let c = espada_wire::checksum::checksum(&f[..20]);
    f[10..12].copy_from_slice(&c.to_be_bytes());
    f
}

/// An ARP request from the LAN host for the box's inside address.
fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&LAN_MAC);
    a.extend_from_slice(&LAN_HOST);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&BOX_LAN);
    a.resize(46, 0);
    ether([0xff; 6], LAN_MAC, 0x0806, &a)
}

fn sa(spi: u32, dir: Direction, local: [u8; 4], remote: [u8; 4]) -> SaConfig {
    let mut c = SaConfig::new(spi, dir, local.into(), remote.into());
    c.esn = false;
    c
}

fn key_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn on_one_queue_pair_ports_espada_decrypts_encrypts_and_relays_the_control_threads_frames() {
    require_root();
    let ns = Netns::new("pcap").unwrap();
    let dir = std::env::temp_dir().join(format!("espada-e2e-pcap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (k_in, k_out) = (
        random_key() + &random_key()[..32],
        random_key() + &random_key()[..32],
    );
    std::fs::write(dir.join("in.hex"), &k_in).unwrap();
    std::fs::write(dir.join("out.hex"), &k_out).unwrap();

    // The peer's ESP (towards our inbound SA 0x1000) and the LAN's cleartext.
    let mut keys = KeyCache::new(4);
    let mut seal = OutboundSa::new(
        sa(0x1000, Direction::Outbound, PEER, BOX_WAN),
        &key_bytes(&k_in),
        Backend::RustCrypto,
    )
    .unwrap();
    let mut open = InboundSa::new(
        sa(0x2000, Direction::Inbound, PEER, BOX_WAN),
        &key_bytes(&k_out),
        Backend::RustCrypto,
    )
    .unwrap();
    let (mut wan_in, mut lan_in, mut from_peer, mut from_lan) =
        (vec![], vec![arp_request()], vec![], vec![]);
    for i in 0..PACKETS {
        let payload: Vec<u8> = (0..64 + i * 20).map(|b| (b + i) as u8).collect();
        let inner = ipv4_udp(REMOTE, LAN_HOST, &payload);
        let mut b = VecBuf::new(128, &inner, 64);
        seal.encap(&mut keys, &mut b).unwrap();
        wan_in.push(ether([2, 0, 0, 0, 0, 1], PEER_MAC, 0x0800, b.data()));
        from_peer.push(forwarded(&inner));
        let clear = ipv4_udp(LAN_HOST, REMOTE, &payload);
        lan_in.push(ether([2, 0, 0, 0, 0, 2], LAN_MAC, 0x0800, &clear));
        from_lan.push(forwarded(&clear));
    }
    write_pcap(&dir.join("wan_in.pcap"), &wan_in);
    write_pcap(&dir.join("lan_in.pcap"), &lan_in);

    let sock = dir.join("espada.sock");
    let d = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let yaml = format!(
        "appliance: {{ name: pcap, lab: true }}\ncores: {{ control: 0, workers: [1] }}\nports:\n  \
         outside:\n    device: \"net_pcap0,rx_pcap={},tx_pcap={}\"\n    ipv4: 198.51.100.1/24\n    \
         neighbors: [{{ ip: 198.51.100.2, mac: \"02:00:00:00:00:03\" }}]\n  \
         inside:\n    device: \"net_pcap1,rx_pcap={},tx_pcap={}\"\n    ipv4: 192.0.2.1/24\n    \
         neighbors: [{{ ip: 192.0.2.10, mac: \"02:00:00:00:00:04\" }}]\n\
         tunnels:\n  - name: peer\n    peer: 198.51.100.2\n    encapsulation: esp\n    \
         local_ts: [192.0.2.0/24]\n    remote_ts: [203.0.113.0/24]\n    static_sa:\n      \
         inbound: {{ spi: 0x1000, algorithm: aes256gcm16, key: {{ file: in.hex }} }}\n      \
         outbound: {{ spi: 0x2000, algorithm: aes256gcm16, key: {{ file: out.hex }} }}\n\
         admin: {{ socket: {} }}\ndpdk: {{ args: [--no-huge, -m, \"512\", --no-shconf, --log-level, \"error\"] }}\n",
        d("wan_in.pcap"),
        d("wan_out.pcap"),
        d("lan_in.pcap"),
        d("lan_out.pcap"),
        sock.display()
    );
    std::fs::write(dir.join("pcap.yaml"), yaml).unwrap();
    let mut daemon = Daemon::start(&ns, &dir.join("pcap.yaml"), sock, dir.join("pcap.log"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = daemon.workers();
        let (dec, enc): (u64, u64) = (
            w.iter().map(|w| w.esp_decap).sum(),
            w.iter().map(|w| w.esp_encap).sum(),
        );
        if dec == PACKETS as u64 && enc == PACKETS as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "decap {dec} encap {enc}: {:?}",
            daemon.drops().total
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The ARP reply is built by the control thread and relayed through worker 0.
    std::thread::sleep(Duration::from_millis(500));
    let (st, log) = daemon.stop();
    assert!(st.success(), "{log}");
    assert!(
        log.contains("fewer queues than workers and control thread"),
        "the one-queue layout is logged: {log}"
    );

    let lan_out = read_pcap(&dir.join("lan_out.pcap"));
    let mut got: Vec<Vec<u8>> = lan_out
        .iter()
        .filter(|f| f[12..14] == [0x08, 0x00])
        .map(|f| {
            assert_eq!(&f[..6], &LAN_MAC, "to the static neighbour's MAC");
            f[14..].to_vec()
        })
        .collect();
    got.sort();
    from_peer.sort();
    assert_eq!(
        got, from_peer,
        "every ESP packet decrypted, byte-exact, once"
    );
    let arp_reply = lan_out
        .iter()
        .any(|f| f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] && f[28..32] == BOX_LAN);
    assert!(
        arp_reply,
        "the control thread's ARP reply left through worker 0's queue"
    );

    let mut opened: Vec<Vec<u8>> = read_pcap(&dir.join("wan_out.pcap"))
        .iter()
        .filter(|f| f[12..14] == [0x08, 0x00] && f[14 + 9] == 50)
        .map(|f| {
            assert_eq!(&f[..6], &PEER_MAC);
            let mut b = VecBuf::new(0, &f[14..], 0);
            open.decap(&mut keys, &mut b).expect("the peer opens it");
            b.data().to_vec()
        })
        .collect();
    opened.sort();
    from_lan.sort();
    assert_eq!(opened, from_lan, "every cleartext packet encrypted, once");
    let _ = std::fs::remove_dir_all(&dir);
}
