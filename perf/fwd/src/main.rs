//! `espada-fwd`: an io forwarder in the spirit of `dpdk-testpmd --forward-mode=io`.
//!
//! Every forwarding lcore polls its port pair: receive a burst of 32 on port A, send it on
//! port B, and the same from B to A; what a TX queue does not take is freed and counted.
//! The main lcore sleeps for the run time and prints packets per second per lcore.
//!
//! ```text
//! espada-fwd [--seconds N] [--burst-ports P] -- <EAL args, e.g. -l 0,1 --no-huge -m 512
//!            --no-pci --no-shconf --vdev net_null0 --vdev net_null1>
//! ```
//! Ports are taken in pairs (0↔1, 2↔3, …) and pairs are spread over the worker lcores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dpdk::{Burst, Eal, Mempool, Port, PortConfig, RxQueue, TxQueue};

struct Args {
    seconds: f64,
    eal: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut seconds = 5.0;
    let mut it = std::env::args().skip(1);
    let mut eal = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seconds needs a number")?
            }
            "--" => eal.extend(it.by_ref()),
            "-h" | "--help" => {
                return Err(
                    "usage: espada-fwd [--seconds N] -- <EAL args with --vdev ports>".into(),
                );
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (EAL arguments go after --)"
                ));
            }
        }
    }
    Ok(Args { seconds, eal })
}

/// One direction of a port pair.
struct Lane {
    rx: RxQueue,
    tx: TxQueue,
}

fn forward(lanes: &mut [Lane], stop: &AtomicBool, done: &AtomicU64) -> (u64, u64) {
    let mut burst: Burst<32> = Burst::new();
    let (mut fwd, mut dropped) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        for lane in lanes.iter_mut() {
            if lane.rx.rx_burst(&mut burst) == 0 {
                continue;
            }
            let (sent, lost) = lane.tx.tx_or_drop(&mut burst);
            fwd += sent as u64;
            dropped += lost as u64;
        }
    }
    done.fetch_add(fwd, Ordering::Relaxed);
    (fwd, dropped)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let eal = Eal::init(&args.eal).unwrap_or_else(|e| {
        eprintln!("EAL: {e}");
        std::process::exit(1)
    });
    let workers = eal.worker_lcores();
    let nports = eal.port_count();
    if workers.is_empty() || nports < 2 || !nports.is_multiple_of(2) {
        eprintln!(
            "need at least one worker lcore (-l 0,1) and an even number of ports (got {nports})"
        );
        std::process::exit(2);
    }
    let pool = Mempool::new(&eal, "fwd_pool", 16383, 256, 2176).expect("mempool");
    let ports: Vec<Port> = (0..nports)
        .map(|id| {
            let p = Port::configure(&eal, id, &PortConfig::default(), &pool).expect("port");
            p.start().expect("start");
            p
        })
        .collect();

    // Spread the directions of every pair over the workers.
    let mut per_worker: Vec<Vec<Lane>> = workers.iter().map(|_| Vec::new()).collect();
    for (w, pair) in ports.chunks(2).enumerate() {
        for (a, b) in [(&pair[0], &pair[1]), (&pair[1], &pair[0])] {
            per_worker[w % workers.len()].push(Lane {
                rx: a.rx_queue(0).unwrap(),
                tx: b.tx_queue(0).unwrap(),
            });
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut running = Vec::new();
    for (lcore, mut lanes) in workers.iter().copied().zip(per_worker) {
        if lanes.is_empty() {
            continue;
        }
        let (stop, total) = (stop.clone(), total.clone());
        let handle = eal
            .launch(lcore, move || {
                let (fwd, dropped) = forward(&mut lanes, &stop, &total);
                println!("lcore {lcore}: forwarded {fwd} dropped {dropped}");
                0
            })
            .expect("launch");
        running.push((lcore, handle));
    }
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut lcores = 0;
    for (_, h) in running {
        h.join();
        lcores += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let fwd = total.load(Ordering::Relaxed) as f64;
    println!(
        "espada-fwd: {:.2} Mpps total, {:.2} Mpps per lcore ({lcores} lcores, {:.1} s)",
        fwd / secs / 1e6,
        fwd / secs / 1e6 / lcores as f64,
        secs
    );
    for p in &ports {
        let s = p.stats().unwrap_or_default();
        println!(
            "port {}: rx {} tx {} missed {}",
            p.id(),
            s.rx_packets,
            s.tx_packets,
            s.rx_missed
        );
    }
}
