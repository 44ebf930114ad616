//! Deterministic simulation: two espada IKE ends over a network that drops, duplicates,
//! reorders and delays messages (seeded), with data flowing on the CHILD_SAs both ways, both
//! ends rekeying CHILD and IKE SAs on short jittered lifetimes. The harness checks at every
//! step that no data packet arrives on an SPI its receiver has not installed (or retired past
//! its grace period), that keys match, that every switch goes to an SA the peer decrypts and
//! that there is at most one active outbound SA per tunnel; at the end the tunnel must have
//! converged to one IKE SA and one CHILD_SA pair. A failing seed prints its replayable trace
//! (`ESPADA_SIM_SEED=<n> cargo test -p espada-ike --test sim`).

mod common;

use std::time::Duration;

use common::{Faults, Pair, Side, endpoint_config, peer_config};
use espada_ike::config::Retransmit;
use espada_ike::rng::{Random, TestRandom};

struct Schedule {
    child_every: (f64, f64),
    ike_every: (f64, f64),
}

fn jittered(rng: &mut TestRandom, (base, jitter): (f64, f64)) -> Duration {
    let u = f64::from(rng.next_u32()) / f64::from(u32::MAX);
    Duration::from_secs_f64(base + jitter * (u - 0.5) * 2.0)
}

/// Runs one seed; returns the trace on failure.
fn run_seed(
    seed: u64,
    faults: Faults,
    duration: Duration,
    sched: &Schedule,
) -> Result<(u64, u64), String> {
    let ike = "aes128gcm16-prfsha256-x25519";
    let esp = "aes128gcm16-x25519";
    let mut config = endpoint_config();
    // Enough tries that the seeded loss never exhausts the schedule: peer death is not what
    // this simulation examines.
    config.retransmit = Retransmit {
        base: Duration::from_millis(300),
        factor: 1.5,
        max_wait: Duration::from_secs(2),
        tries: 25,
    };
    config.temporary_failure_retry = Duration::from_millis(500);
    config.delete_timeout = Duration::from_secs(20);
    let mut p = Pair::new(
        seed,
        peer_config(Side::A, "k", ike, esp),
        peer_config(Side::B, "k", ike, esp),
        config,
    );
    p.faults = faults;
    p.grace = Duration::from_secs(30);
    let mut rng = TestRandom::new(seed.wrapping_mul(0x9e37_79b9));
    p.initiate(Side::A);
    let end = p.now + duration;
    // Next rekey times per side: [child, ike].
    let mut next = [[
        p.now + jittered(&mut rng, sched.child_every),
        p.now + jittered(&mut rng, sched.ike_every),
    ]; 2];
    for s in [Side::A, Side::B] {
        next[s.idx()][0] = p.now + jittered(&mut rng, sched.child_every);
        next[s.idx()][1] = p.now + jittered(&mut rng, sched.ike_every);
    }
    let step = Duration::from_millis(50);
    while p.now < end {
        for s in [Side::A, Side::B] {
            let now = p.now;
            if next[s.idx()][0] <= now {
                next[s.idx()][0] = now + jittered(&mut rng, sched.child_every);
                if let Some((child, _, _)) = p.tunnels(s).first().copied() {
                    let _ = p.ep[s.idx()].rekey_child(now, child);
                    p.drain(s);
                }
            }
            if next[s.idx()][1] <= now {
                next[s.idx()][1] = now + jittered(&mut rng, sched.ike_every);
                if let Some(ike) = p.established(s).first().copied() {
                    let _ = p.ep[s.idx()].rekey_ike(now, ike);
                    p.drain(s);
                }
            }
        }
        p.send_data(Side::A);
        p.send_data(Side::B);
        let until = p.now + step;
        p.run_until(until);
        if !p.violations.is_empty() {
            return Err(format!("seed {seed}: {:?}\n{}", p.violations, p.dump()));
        }
    }
    // Quiesce: no more rekeys, a clean network, traffic on.
    p.faults = Faults::default();
    p.run_with_traffic(Duration::from_secs(60), Duration::from_millis(100));
    if !p.violations.is_empty() {
        return Err(format!("seed {seed}: {:?}\n{}", p.violations, p.dump()));
    }
    p.check_converged()
        .map_err(|e| format!("seed {seed}: not converged: {e}\n{}", p.dump()))?;
    Ok((p.data_sent, p.ike_delivered))
}

fn seeds(default: u64) -> Vec<u64> {
    match std::env::var("ESPADA_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("ESPADA_SIM_SEED is a number")],
        Err(_) => (0..std::env::var("ESPADA_SIM_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default))
            .collect(),
    }
}

fn run_all(name: &str, default_seeds: u64, faults: Faults, duration: Duration, sched: &Schedule) {
    let (mut data, mut ike) = (0, 0);
    let list = seeds(default_seeds);
    for seed in &list {
        match run_seed(*seed, faults, duration, sched) {
            Ok((d, i)) => {
                data += d;
                ike += i;
            }
            Err(trace) => panic!("{name}: {trace}"),
        }
    }
    println!(
        "{name}: {} seeds, {data} data packets, {ike} IKE datagrams delivered, 0 violations",
        list.len()
    );
}

#[test]
fn sim_lossy_network_rekey_storm_both_ends() {
    let faults = Faults {
        drop: 0.1,
        dup: 0.05,
        jitter: Duration::from_millis(300),
        data_drop: 0.0,
    };
    let sched = Schedule {
        child_every: (3.0, 2.0),
        ike_every: (9.0, 6.0),
    };
    run_all("lossy", 1000, faults, Duration::from_secs(60), &sched);
}

#[test]
fn sim_reordering_network_simultaneous_rekeys() {
    // Rekeys close together on both ends, and heavy reordering: collisions are the norm.
    let faults = Faults {
        drop: 0.02,
        dup: 0.1,
        jitter: Duration::from_millis(800),
        data_drop: 0.0,
    };
    let sched = Schedule {
        child_every: (2.0, 0.3),
        ike_every: (6.0, 1.0),
    };
    run_all("reorder", 1000, faults, Duration::from_secs(40), &sched);
}
