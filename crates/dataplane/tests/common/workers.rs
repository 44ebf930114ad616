//! The harness of the data-plane tests that run on EAL: two ring-backed ports ([`RingPorts`])
//! and two launched workers on them (`Worker::run` on lcores 1 and 2, each polling its own RX
//! queue of both ports, handoff rings both ways: [`TwoWorkers`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dpdk::{Eal, Launched, MbufRing, Mempool, Port, PortConfig, RingConsumer, RingPortEnds};
use espada_dataplane::PortRole;
use espada_dataplane::depth::Lookahead;
use espada_dataplane::events::{Event, SampleBudget};
use espada_dataplane::lifecycle::WorkerParts;
use espada_dataplane::reasm::Reassembly;
use espada_dataplane::stats::WorkerStats;
use espada_dataplane::worker::{HandoffPair, TxPath, Worker, WorkerInputs, WorkerOutputs};

/// EAL (the main lcore on CPU 0, lcores 1 and 2 on CPUs 1 and 0), a pool, and two started
/// ring-backed ports, outside and inside, each with two RX queues (one per worker) and three TX
/// queues (one per worker and one for the control thread).
pub struct RingPorts {
    pub eal: Eal,
    pub pool: Mempool,
    pub out_ends: RingPortEnds,
    pub in_ends: RingPortEnds,
    pub out_port: Port,
    pub in_port: Port,
}

impl RingPorts {
    /// `memory_mb` of EAL memory (no hugepages), a pool of `mbufs` with a per-lcore cache of
    /// `cache`, ring ports of `ring` slots; names after `tag`.
    pub fn start(tag: &str, memory_mb: u32, mbufs: u32, cache: u32, ring: u32) -> RingPorts {
        let prefix = format!("espada-{tag}-{}", std::process::id());
        let memory = memory_mb.to_string();
        let eal = Eal::init([
            "--lcores",
            "0@0,1@1,2@0",
            "--no-huge",
            "-m",
            &memory,
            "--no-pci",
            "--no-shconf",
            "--file-prefix",
            &prefix,
            "--log-level",
            "error",
        ])
        .unwrap();
        let pool = Mempool::new(&eal, &format!("{tag}_pool"), mbufs, cache, 2176).unwrap();
        let out_ends = MbufRing::port(&eal, &format!("net_ring_{tag}o"), 2, 3, ring).unwrap();
        let in_ends = MbufRing::port(&eal, &format!("net_ring_{tag}i"), 2, 3, ring).unwrap();
        let cfg = PortConfig {
            rx_queues: 2,
            tx_queues: 3,
            ..Default::default()
        };
        let out_port = Port::configure(&eal, out_ends.port_id, &cfg, &pool).unwrap();
        let in_port = Port::configure(&eal, in_ends.port_id, &cfg, &pool).unwrap();
        out_port.start().unwrap();
        in_port.start().unwrap();
        RingPorts {
            eal,
            pool,
            out_ends,
            in_ends,
            out_port,
            in_port,
        }
    }
}

/// Two running workers.
pub struct TwoWorkers {
    /// Their counters, by worker.
    pub stats: Vec<Arc<WorkerStats>>,
    /// Their sampled events, by worker.
    pub events: Vec<rtrb::Consumer<Event>>,
    stop: Arc<AtomicBool>,
    running: Vec<Launched>,
    /// The punt rings' consumer ends (kept so that punts have somewhere to go).
    punts: Vec<(RingConsumer, RingConsumer)>,
}

impl TwoWorkers {
    /// Launches worker `w` of `parts` on lcore `w + 1`: RX queue `w` and TX queue `w` of both
    /// ports, handoff rings of `ring` mbufs named after `tag`, the ports' bursts run with the
    /// lookahead as `lookahead` says.
    pub fn launch(
        eal: &Eal,
        tag: &str,
        ring: u32,
        parts: Vec<WorkerParts>,
        (out_port, in_port): (&Port, &Port),
        lookahead: Lookahead,
    ) -> TwoWorkers {
        assert_eq!(parts.len(), 2);
        let pair = |name: &str| MbufRing::pair(eal, &format!("{tag}{name}"), ring).unwrap();
        let ((h10_i, r10_i), (h10_o, r10_o)) = (pair("10i"), pair("10o"));
        let ((h01_i, r01_i), (h01_o, r01_o)) = (pair("01i"), pair("01o"));
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
        let stop = Arc::new(AtomicBool::new(false));
        let (mut stats, mut events, mut running, mut punts) = (vec![], vec![], vec![], vec![]);
        for (w, p) in parts.into_iter().enumerate() {
            let w16 = w as u16;
            let (ev_tx, ev_rx) = rtrb::RingBuffer::new(4096);
            let (p0, c0) = MbufRing::pair(eal, &format!("{tag}po{w}"), 256).unwrap();
            let (p1, c1) = MbufRing::pair(eal, &format!("{tag}pi{w}"), 256).unwrap();
            punts.push((c0, c1));
            events.push(ev_rx);
            let st = Arc::new(WorkerStats::default());
            stats.push(st.clone());
            let worker = Worker {
                id: w16,
                inputs: WorkerInputs {
                    rx: vec![
                        (PortRole::Outside, out_port.rx_queue(w16).unwrap()),
                        (PortRole::Inside, in_port.rx_queue(w16).unwrap()),
                    ],
                    relay: Vec::new(),
                    handoff: handoff_in.next().unwrap(),
                    commands: p.commands,
                },
                outputs: WorkerOutputs {
                    tx: [
                        TxPath::Queue(out_port.tx_queue(w16).unwrap()),
                        TxPath::Queue(in_port.tx_queue(w16).unwrap()),
                    ],
                    handoff: handoff_out.next().unwrap(),
                    punt: [p0, p1],
                    replies: p.replies,
                },
                events: ev_tx,
                notices: p.notices,
                samples: SampleBudget::new(dpdk::tsc_hz(), SampleBudget::RATE, SampleBudget::BURST),
                slab: p.slab,
                reasm: Reassembly::for_clock(dpdk::tsc_hz()),
                tables: p.tables,
                stats: st,
                stop: stop.clone(),
                adaptive: true,
                lookahead,
            };
            running.push(
                eal.launch(u32::from(w16) + 1, move || worker.run())
                    .unwrap(),
            );
        }
        TwoWorkers {
            stats,
            events,
            stop,
            running,
            punts,
        }
    }

    /// Stops both workers, checks each returned 0, and lets go of their rings.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.running.drain(..) {
            assert_eq!(h.join(), 0);
        }
        self.punts.clear();
    }
}

impl Drop for TwoWorkers {
    /// A test that panics first still stops its workers.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
