//! A real `net_af_packet` port on one end of a veth pair whose other end lives in a network
//! namespace the test creates (and removes); a raw-socket peer there exchanges frames with it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{eal, first_difference, test_frame};
use dpdk::{Burst, Mempool, Port, PortConfig};
use espada_buf::PacketBuf;
use espada_testnet::Netns;

const SIZES: [usize; 5] = [60, 100, 333, 1000, 1514];
const FRAMES: u32 = 500;

#[test]
fn af_packet_port_exchanges_frames_with_a_namespace_byte_exact() {
    if !espada_testnet::available() {
        panic!("this test needs root and iproute2 (run deploy/install-deps.sh as root)");
    }
    let dp = Netns::new("dp").unwrap();
    let peer = Netns::new("pr").unwrap();
    dp.veth_to("esp-d0", &peer, "esp-p0").unwrap();
    // The af_packet socket is opened by the probing thread: open it inside `dp`.
    dp.enter_current_thread().unwrap();

    let eal = eal();
    let pool = Mempool::new(eal, "afp_pool", 4095, 32, 2176).unwrap();
    let id = eal.probe("net_af_packet_t0,iface=esp-d0,qpairs=1").unwrap();
    let port = Port::configure(eal, id, &PortConfig::default(), &pool).unwrap();
    port.start().unwrap();
    let mut rx = port.rx_queue(0).unwrap();
    let mut tx = port.tx_queue(0).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/raw_peer.py");

    // DPDK → namespace.
    let mut recv = peer
        .command("python3")
        .args([script, "recv", "esp-p0", &FRAMES.to_string(), "5"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(recv.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    for seq in 0..FRAMES {
        let mut m = pool.alloc().unwrap();
        assert!(m.set_data(&test_frame(seq, SIZES[seq as usize % SIZES.len()])));
        let mut b: Burst<1> = Burst::new();
        b.push(m).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !b.is_empty() && Instant::now() < deadline {
            tx.tx_burst(&mut b);
        }
        assert!(b.is_empty(), "af_packet did not take frame {seq}");
    }
    let got: Vec<Vec<u8>> = lines.map(|l| hex_decode(&l.unwrap())).collect();
    recv.wait().unwrap();
    assert_eq!(got.len(), FRAMES as usize, "frames seen in the namespace");
    for (seq, frame) in got.iter().enumerate() {
        let want = test_frame(seq as u32, SIZES[seq % SIZES.len()]);
        assert_eq!(
            first_difference(frame, &want),
            None,
            "frame {seq} differs in the namespace"
        );
    }

    // Namespace → DPDK.
    let mut send = peer
        .command("python3")
        .args([script, "send", "esp-p0"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = send.stdin.take().unwrap();
        for seq in 0..FRAMES {
            let mut f = test_frame(seq + 1_000_000, SIZES[seq as usize % SIZES.len()]);
            f[11] = 0x03; // source MAC of the peer
            writeln!(stdin, "{}", hex_encode(&f)).unwrap();
        }
    }
    assert!(send.wait().unwrap().success());
    let mut received = 0u32;
    let mut b: Burst = Burst::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while received < FRAMES && Instant::now() < deadline {
        rx.rx_burst(&mut b);
        for m in b.drain() {
            let d = m.data();
            if d.len() < 14 || d[12..14] != [0x88, 0xb5] || d[11] != 0x03 {
                continue; // not the peer's test traffic
            }
            let seq = received;
            let mut want = test_frame(seq + 1_000_000, SIZES[seq as usize % SIZES.len()]);
            want[11] = 0x03;
            assert_eq!(
                first_difference(d, &want),
                None,
                "frame {seq} differs at DPDK"
            );
            received += 1;
        }
    }
    assert_eq!(received, FRAMES, "frames received by the DPDK port");

    drop((rx, tx));
    port.stop().unwrap();
    drop(port);
    assert_eq!(pool.in_use(), 0, "no mbuf leaked");
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
