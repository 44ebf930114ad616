//! A closure launched on a pinned worker lcore consumes mbufs the main lcore hands it over an
//! SP/SC ring, byte for byte, and none leaks.

use std::sync::{Mutex, OnceLock};

/// Lcore 1 runs one job at a time; tests in one binary may run in parallel.
static LCORE1: Mutex<()> = Mutex::new(());

use dpdk::{Burst, Eal, MbufRing, Mempool};
use espada_buf::PacketBuf;

fn eal() -> &'static Eal {
    static EAL: OnceLock<Eal> = OnceLock::new();
    EAL.get_or_init(|| {
        let prefix = format!("espada-lcore-{}", std::process::id());
        // Two lcores mapped onto CPU 0, so this works on any machine.
        Eal::init([
            "--lcores",
            "0@0,1@0",
            "--no-huge",
            "-m",
            "128",
            "--no-pci",
            "--no-shconf",
            "--file-prefix",
            &prefix,
            "--log-level",
            "error",
        ])
        .expect("EAL init")
    })
}

#[test]
fn mbufs_cross_an_spsc_ring_to_a_launched_lcore() {
    let _lcore = LCORE1.lock().unwrap_or_else(|e| e.into_inner());
    let eal = eal();
    assert_eq!(eal.worker_lcores(), vec![1]);
    let pool = Mempool::new(eal, "handoff_pool", 2047, 0, 2176).unwrap();
    let (mut prod, mut cons) = MbufRing::pair(eal, "handoff", 1024).unwrap();
    const N: u32 = 10_000;
    let worker = eal
        .launch(1, move || {
            let mut got = 0u32;
            let mut b: Burst = Burst::new();
            while got < N {
                cons.dequeue_burst(&mut b);
                for m in b.drain() {
                    if m.data() != got.to_be_bytes() {
                        return -2;
                    }
                    got += 1;
                }
            }
            got as i32
        })
        .unwrap();
    let mut sent = 0u32;
    let mut b: Burst = Burst::new();
    while sent < N || !b.is_empty() {
        while sent < N && !b.is_full() {
            // Back-pressure: when every mbuf is in flight, wait for the worker to free some.
            let Some(mut m) = pool.alloc() else { break };
            m.append(4).unwrap().copy_from_slice(&sent.to_be_bytes());
            b.push(m).unwrap();
            sent += 1;
        }
        prod.enqueue_burst(&mut b);
    }
    assert_eq!(worker.join(), N as i32, "worker saw every mbuf in order");
    assert_eq!(prod.count(), 0);
    assert_eq!(pool.in_use(), 0, "every mbuf freed by the worker");
}

#[test]
fn a_panicking_lcore_job_reports_failure_instead_of_unwinding_into_c() {
    let _lcore = LCORE1.lock().unwrap_or_else(|e| e.into_inner());
    let h = eal()
        .launch(1, || panic!("job failed (expected by this test)"))
        .unwrap();
    assert_eq!(h.join(), -1);
    // The lcore is usable again afterwards.
    assert_eq!(eal().launch(1, || 7).unwrap().join(), 7);
}

#[test]
fn ring_takes_exactly_its_capacity_and_frees_leftovers() {
    let eal = eal();
    let pool = Mempool::new(eal, "st_pool", 255, 0, 2176).unwrap();
    let (mut prod, mut cons) = MbufRing::pair(eal, "st", 8).unwrap();
    let mut b: Burst = Burst::new();
    assert!(pool.alloc_bulk(&mut b, 10));
    assert_eq!(
        prod.enqueue_burst(&mut b),
        8,
        "exactly the ring's capacity is taken"
    );
    assert_eq!(b.len(), 2, "the rest stays with the producer");
    b.clear();
    assert_eq!(prod.count(), 8);
    assert_eq!(cons.dequeue_burst(&mut b), 8);
    b.clear();
    assert!(pool.alloc_bulk(&mut b, 10));
    assert_eq!(prod.enqueue_burst(&mut b), 8);
    b.clear();
    drop((prod, cons)); // mbufs still queued are freed with the ring
    assert_eq!(pool.in_use(), 0);
}

#[test]
fn ring_hands_a_burst_over_on_one_thread() {
    let eal = eal();
    let pool = Mempool::new(eal, "st2_pool", 255, 0, 2176).unwrap();
    let (mut prod, mut cons) = MbufRing::pair(eal, "st2", 64).unwrap();
    let mut b: Burst = Burst::new();
    assert!(pool.alloc_bulk(&mut b, 10));
    assert_eq!(prod.enqueue_burst(&mut b), 10);
    assert_eq!(prod.count(), 10);
    assert_eq!(cons.dequeue_burst(&mut b), 10);
    assert_eq!(prod.count(), 0);
}

#[test]
fn a_ring_backed_port_delivers_per_queue() {
    use dpdk::{Port, PortConfig};
    let eal = eal();
    let pool = Mempool::new(eal, "rp_pool", 511, 0, 2176).unwrap();
    let mut ends = MbufRing::port(eal, "net_ring_rp0", 1, 3, 64).unwrap();
    let cfg = PortConfig {
        rx_queues: 1,
        tx_queues: 3,
        ..Default::default()
    };
    let port = Port::configure(eal, ends.port_id, &cfg, &pool).unwrap();
    port.start().unwrap();
    let mut b: Burst = Burst::new();
    assert!(pool.alloc_bulk(&mut b, 5));
    for (i, m) in b.as_mut_slice().iter_mut().enumerate() {
        m.append(1).unwrap()[0] = i as u8;
    }
    assert_eq!(ends.rx_inject[0].enqueue_burst(&mut b), 5);
    let mut rx = port.rx_queue(0).unwrap();
    assert_eq!(rx.rx_burst(&mut b), 5);
    let mut tx2 = port.tx_queue(2).unwrap();
    assert_eq!(tx2.tx_burst(&mut b), 5);
    assert_eq!(ends.tx_collect[0].count(), 0);
    assert_eq!(ends.tx_collect[2].dequeue_burst(&mut b), 5);
    assert_eq!(
        b.as_slice().iter().map(|m| m.data()[0]).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
}
