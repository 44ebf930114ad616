//! The worker loop on real DPDK (EAL, ring-backed ports, launched lcores, handoff rings) while
//! the control side publishes 10,000 table versions: every packet is delivered byte-exact and
//! in order, the SA's sequence numbers run on unbroken across the swaps (per-SA state lives in
//! the owner's slab, not in the tables), and every old version is reclaimed on this thread.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use dpdk::{Burst, Eal, MbufRing, Mempool, Port, PortConfig};
use espada_buf::{PacketBuf, VecBuf};
use espada_dataplane::PortRole;
use espada_dataplane::slab::COMMAND_RING;
use espada_dataplane::stats::{Counter, WorkerStats};
use espada_dataplane::worker::{HandoffPair, Worker, WorkerInputs, WorkerOutputs};
use espada_qsbr::Publisher;

const PACKETS: u32 = 20_000;
const VERSIONS: u64 = 10_000;
const WINDOW: u32 = 256;

#[test]
fn ten_thousand_table_swaps_while_two_workers_forward_traffic() {
    let prefix = format!("espada-swap-{}", std::process::id());
    let eal = Eal::init([
        "--lcores",
        "0@0,1@1,2@0",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-shconf",
        "--file-prefix",
        &prefix,
        "--log-level",
        "error",
    ])
    .unwrap();
    let pool = Mempool::new(&eal, "swap_pool", 8191, 64, 2176).unwrap();
    // Both ports: one RX queue (polled by worker 1), a TX queue per worker plus control.
    let mut out_ends = MbufRing::port(&eal, "net_ring_swo", 1, 3, 4096).unwrap();
    let mut in_ends = MbufRing::port(&eal, "net_ring_swi", 1, 3, 4096).unwrap();
    let cfg = PortConfig {
        rx_queues: 1,
        tx_queues: 3,
        ..Default::default()
    };
    let out_port = Port::configure(&eal, out_ends.port_id, &cfg, &pool).unwrap();
    let in_port = Port::configure(&eal, in_ends.port_id, &cfg, &pool).unwrap();
    out_port.start().unwrap();
    in_port.start().unwrap();

    // The SA lives on worker 0; worker 1 polls the ports and hands everything over.
    let mut s = site(2, true);
    assert_eq!(espada_dataplane::owner_of_spi(SPI_IN, 2), 0);
    let mut publisher = Publisher::new(s.tables.clone());
    let (h10_i, r10_i) = MbufRing::pair(&eal, "h10i", 1024).unwrap();
    let (h10_o, r10_o) = MbufRing::pair(&eal, "h10o", 1024).unwrap();
    let (h01_i, r01_i) = MbufRing::pair(&eal, "h01i", 1024).unwrap();
    let (h01_o, r01_o) = MbufRing::pair(&eal, "h01o", 1024).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Stop the workers however the test ends, so a failed assertion is reported, not hung.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let mut slabs = std::mem::take(&mut s.slabs).into_iter();
    let mut stats = Vec::new();
    let mut running = Vec::new();
    let mut handoff_out = vec![
        vec![
            None,
            Some(HandoffPair {
                inbound: h01_i,
                outbound: h01_o,
            }),
        ],
        vec![
            Some(HandoffPair {
                inbound: h10_i,
                outbound: h10_o,
            }),
            None,
        ],
    ]
    .into_iter();
    let mut handoff_in = vec![
        vec![HandoffPair {
            inbound: r10_i,
            outbound: r10_o,
        }],
        vec![HandoffPair {
            inbound: r01_i,
            outbound: r01_o,
        }],
    ]
    .into_iter();
    let mut event_rx = Vec::new();
    let mut keep = Vec::new();
    for w in 0..2u16 {
        let rx = if w == 1 {
            vec![
                (PortRole::Outside, out_port.rx_queue(0).unwrap()),
                (PortRole::Inside, in_port.rx_queue(0).unwrap()),
            ]
        } else {
            Vec::new()
        };
        let (_cmd_tx, cmd_rx) = rtrb::RingBuffer::new(COMMAND_RING);
        let (rep_tx, rep_rx) = rtrb::RingBuffer::new(COMMAND_RING);
        let (ev_tx, ev_rx) = rtrb::RingBuffer::new(4096);
        let (p0, c0) = MbufRing::pair(&eal, &format!("po{w}"), 256).unwrap();
        let (p1, c1) = MbufRing::pair(&eal, &format!("pi{w}"), 256).unwrap();
        keep.push((_cmd_tx, rep_rx, c0, c1));
        event_rx.push(ev_rx);
        let st = Arc::new(WorkerStats::default());
        stats.push(st.clone());
        let worker = Worker {
            id: w,
            inputs: WorkerInputs {
                rx,
                handoff: handoff_in.next().unwrap(),
                commands: cmd_rx,
            },
            outputs: WorkerOutputs {
                tx: [out_port.tx_queue(w).unwrap(), in_port.tx_queue(w).unwrap()],
                handoff: handoff_out.next().unwrap(),
                punt: [p0, p1],
                replies: rep_tx,
            },
            events: ev_tx,
            slab: slabs.next().unwrap(),
            tables: publisher.register_reader(),
            stats: st,
            stop: stop.clone(),
            adaptive: false,
        };
        running.push(eal.launch(u32::from(w) + 1, move || worker.run()).unwrap());
    }

    let _guard = StopOnDrop(stop.clone()); // declared after `running`: dropped before it

    // Traffic both ways, while versions are published and reclaimed. At most WINDOW packets
    // are in flight each way, below every ring's size: any loss would be a bug, not overflow.
    let clear = |i: u32| {
        let mut payload = i.to_be_bytes().to_vec();
        payload.resize(200, (i % 251) as u8);
        ipv4_udp([192, 0, 2, 10], [203, 0, 113, 5], 1, 2, &payload)
    };
    let mut peer_esp: Vec<Vec<u8>> = (0..PACKETS)
        .map(|i| {
            let mut payload = i.to_be_bytes().to_vec();
            payload.resize(300, 7);
            from_peer(
                &mut s,
                &ipv4_udp([203, 0, 113, 5], [192, 0, 2, 10], 2, 1, &payload),
            )
            .data()
            .to_vec()
        })
        .collect();
    peer_esp.reverse();
    let (mut sent, mut got_out, mut got_in, mut version) = (0u32, 0u32, 0u32, 1u64);
    let mut b: Burst = Burst::new();
    let mut tables = s.tables.clone();
    let mut reclaimed = 0;
    while got_out < PACKETS || got_in < PACKETS || version < VERSIONS {
        if sent < PACKETS && sent - got_out < WINDOW && sent - got_in < WINDOW {
            let frames = [
                ether(BOX_IN_MAC, LAN_MAC, 0x0800, &clear(sent)),
                peer_esp.pop().unwrap(),
            ];
            for (ends, frame) in [&mut in_ends, &mut out_ends].into_iter().zip(frames) {
                let mut m = pool.alloc().unwrap();
                assert!(m.set_data(&frame));
                b.push(m).unwrap();
                while !b.is_empty() {
                    ends.rx_inject[0].enqueue_burst(&mut b);
                }
            }
            sent += 1;
        }
        if version < VERSIONS {
            version += 1;
            tables.generation = version;
            // A version that differs: a route that comes and goes.
            if version % 2 == 0 {
                tables.routes.insert("198.18.0.0/15".parse().unwrap(), 0);
            } else {
                tables.routes = s.tables.routes.clone();
            }
            publisher.publish(tables.clone());
            reclaimed += publisher.reclaim();
        }
        // Outbound ESP leaves on worker 0's TX queue of the outside port.
        out_ends.tx_collect[0].dequeue_burst(&mut b);
        for m in b.drain() {
            let mut outer = VecBuf::new(0, &m.data()[14..], 0);
            s.peer_in
                .decap(&mut outer)
                .expect("the peer opens every packet");
            assert_eq!(
                outer.data(),
                &clear(got_out)[..],
                "outbound packet {got_out}"
            );
            got_out += 1;
        }
        in_ends.tx_collect[0].dequeue_burst(&mut b);
        for m in b.drain() {
            assert_eq!(
                &m.data()[14 + 28..14 + 32],
                &got_in.to_be_bytes(),
                "inbound packet {got_in} in order"
            );
            got_in += 1;
        }
        for q in [1, 2] {
            assert_eq!(
                out_ends.tx_collect[q].count() + in_ends.tx_collect[q].count(),
                0,
                "only the owner transmits"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in running {
        assert_eq!(h.join(), 0);
    }
    reclaimed += publisher.reclaim();
    assert_eq!(
        publisher.pending(),
        0,
        "every old version freed once the workers are gone"
    );
    assert_eq!(reclaimed as u64, VERSIONS - 1);

    let (w0, w1) = (&stats[0], &stats[1]);
    assert_eq!(w1.get(Counter::HandoffOut), 2 * u64::from(PACKETS));
    assert_eq!(w0.get(Counter::HandoffIn), 2 * u64::from(PACKETS));
    assert_eq!(
        (w0.get(Counter::EspEncap), w0.get(Counter::EspDecap)),
        (u64::from(PACKETS), u64::from(PACKETS))
    );
    assert_eq!(
        (w1.get(Counter::EspEncap), w1.get(Counter::EspDecap)),
        (0, 0)
    );
    assert_eq!(w0.total_drops() + w1.total_drops(), 0);
    assert!(
        w0.get(Counter::TableGeneration) > 1,
        "worker 0 adopted new versions"
    );
    for ev in &mut event_rx {
        assert!(
            ev.pop().is_err(),
            "no events (no drops, no neighbour misses)"
        );
    }
    drop(keep);
}
