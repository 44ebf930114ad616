//! Frames built here go out through a real `net_ring` port and come back byte for byte.

mod common;

use common::{eal, first_difference, test_frame};
use dpdk::{Burst, Eal, Error, Mempool, Port, PortConfig};
use espada_buf::PacketBuf;

const SIZES: [usize; 7] = [60, 64, 65, 128, 511, 1024, 1514];

#[test]
fn ten_thousand_frames_round_trip_byte_exact_and_no_mbuf_leaks() {
    let eal = eal();
    let pool = Mempool::new(eal, "rt_pool", 4095, 32, 2176).unwrap();
    let full = pool.available();
    let id = eal.probe("net_ring_rt0").unwrap();
    let port = Port::configure(
        eal,
        id,
        &PortConfig {
            rx_desc: 512,
            tx_desc: 512,
            ..Default::default()
        },
        &pool,
    )
    .unwrap();
    port.start().unwrap();
    assert_eq!(port.driver_name(), "net_ring");
    let mut rx = port.rx_queue(0).unwrap();
    let mut tx = port.tx_queue(0).unwrap();

    let total = 10_000u32;
    let (mut sent, mut received) = (0u32, 0u32);
    let mut out: Burst = Burst::new();
    let mut inb: Burst = Burst::new();
    while received < total {
        while sent < total && !out.is_full() {
            let frame = test_frame(sent, SIZES[sent as usize % SIZES.len()]);
            let mut m = pool.alloc().expect("pool has room");
            assert!(m.set_data(&frame));
            out.push(m).unwrap();
            sent += 1;
        }
        tx.tx_burst(&mut out);
        rx.rx_burst(&mut inb);
        for m in inb.drain() {
            let want = test_frame(received, SIZES[received as usize % SIZES.len()]);
            assert_eq!(
                first_difference(m.data(), &want),
                None,
                "frame {received} differs"
            );
            received += 1;
        }
    }
    assert_eq!((sent, received), (total, total));
    assert!(out.is_empty());
    let stats = port.stats().unwrap();
    assert_eq!(stats.tx_packets, u64::from(total));
    assert_eq!(stats.rx_packets, u64::from(total));

    assert!(
        port.stop().is_err(),
        "stop must be refused while queue handles are alive"
    );
    drop((rx, tx));
    port.stop().unwrap();
    assert_eq!(pool.available(), full, "every mbuf is back in the pool");
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn unsent_mbufs_stay_in_the_burst_and_are_freed_on_drop() {
    let eal = eal();
    let pool = Mempool::new(eal, "unsent_pool", 4095, 0, 2176).unwrap();
    let id = eal.probe("net_ring_rt1").unwrap();
    // net_ring's loopback ring holds 1024 frames: a 3072-frame flood cannot all be taken.
    let cfg = PortConfig::default();
    let port = Port::configure(eal, id, &cfg, &pool).unwrap();
    port.start().unwrap();
    let mut tx = port.tx_queue(0).unwrap();
    let mut taken = 0;
    let mut left = 0;
    for _ in 0..96 {
        let mut b: Burst = Burst::new();
        assert!(pool.alloc_bulk(&mut b, 32));
        taken += tx.tx_burst(&mut b);
        left += b.len();
    } // bursts dropped here with their untaken mbufs
    assert_eq!(taken + left, 3072);
    assert!(left > 0, "the ring must have refused some frames");
    // What the ring took is still in the ring; draining it returns the pool to full.
    let mut rx = port.rx_queue(0).unwrap();
    let mut b: Burst = Burst::new();
    while rx.rx_burst(&mut b) > 0 {
        b.clear();
    }
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn second_eal_init_is_a_typed_error() {
    let _ = eal();
    assert_eq!(
        Eal::init(common::eal_args()).unwrap_err(),
        Error::AlreadyInitialized
    );
}

#[test]
fn queues_are_taken_once_and_mbuf_room_is_reported() {
    let eal = eal();
    let pool = Mempool::new(eal, "q_pool", 511, 0, 2176).unwrap();
    let id = eal.probe("net_ring_rt2").unwrap();
    let port = Port::configure(eal, id, &PortConfig::default(), &pool).unwrap();
    let q = port.rx_queue(0).unwrap();
    assert!(port.rx_queue(0).is_err());
    assert!(port.rx_queue(1).is_err());
    drop(q);
    assert!(port.rx_queue(0).is_ok());

    let mut m = pool.alloc().unwrap();
    let (head, tail) = (m.headroom(), m.tailroom());
    assert_eq!(head, 128);
    assert_eq!(
        head + tail,
        2176,
        "an empty mbuf is all headroom and tailroom"
    );
    m.append(100).unwrap().fill(0xab);
    m.prepend(14).unwrap().fill(0xcd);
    assert_eq!(m.len(), 114);
    assert_eq!(&m.data()[..14], &[0xcd; 14]);
    assert!(m.adj(14) && m.trim(50));
    assert_eq!(m.data(), &[0xab; 50]);
    assert!(m.prepend(head + 1).is_none());
    assert_eq!(m.len(), 50, "a refused prepend changes nothing");
}

#[test]
fn link_mac_and_extended_stats_are_reported() {
    let eal = eal();
    let pool = Mempool::new(eal, "xs_pool", 1023, 0, 2176).unwrap();
    let id = eal.probe("net_null_xs0").unwrap();
    let port = Port::configure(eal, id, &PortConfig::default(), &pool).unwrap();
    port.start().unwrap();
    assert_eq!(port.driver_name(), "net_null");
    assert!(port.link().up, "a started null port reports link up");
    assert_ne!(
        port.mac(),
        dpdk::MacAddr::default(),
        "net_null has a random MAC"
    );
    // net_null generates packets on every RX poll: the counters must show them.
    let mut rx = port.rx_queue(0).unwrap();
    let mut b: Burst = Burst::new();
    let n = rx.rx_burst(&mut b);
    assert!(n > 0);
    b.clear();
    let x = port.xstats().unwrap();
    let get = |name: &str| x.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    assert_eq!(get("rx_good_packets"), Some(n as u64), "{x:?}");
    assert_eq!(port.stats().unwrap().rx_packets, n as u64);
    drop(rx);
    port.stop().unwrap();
    assert_eq!(pool.in_use(), 0);
}
