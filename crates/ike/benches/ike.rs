//! IKE handshakes and CHILD_SA rekeys per second on one core (criterion). Figures go to
//! docs/performance.md with the command and the CPU; nothing here asserts a speed.
//!
//! `handshake_responder/<group>`: the responder's own CPU time for one IKE_SA_INIT + IKE_AUTH
//! (the initiator's work is done but not timed). `child_rekey/<pfs>`: both ends' time for one
//! CHILD_SA rekey (CREATE_CHILD_SA + INFORMATIONAL DELETE), the responder's in
//! `child_rekey_responder/<pfs>`.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use espada_ike::auth::Authenticator;
use espada_ike::config::{Encapsulation, EndpointConfig, Identity, PeerConfig};
use espada_ike::exchange::{Endpoint, RandomSpis};
use espada_ike::proposal::{EspProposal, IkeProposal};
use espada_ike::rng::SystemRandom;
use espada_ike::secret::Secret;
use espada_ike::ts;

fn peer(initiator: bool, ike: &str, esp: &str) -> PeerConfig {
    let (l, r, lid, rid) = if initiator {
        ("198.18.0.1", "198.18.0.2", "a.example", "b.example")
    } else {
        ("198.18.0.2", "198.18.0.1", "b.example", "a.example")
    };
    let (lnet, rnet) = if initiator {
        ("198.19.1.0", "198.19.2.0")
    } else {
        ("198.19.2.0", "198.19.1.0")
    };
    PeerConfig {
        name: "bench".into(),
        local_addr: l.parse().unwrap(),
        remote_addr: Some(r.parse().unwrap()),
        local_id: Identity::Fqdn(lid.into()),
        remote_id: Identity::Fqdn(rid.into()),
        auth: Authenticator::Psk(Secret::from_slice(b"bench-psk-0123456789")),
        ike_proposals: vec![IkeProposal::parse(ike).unwrap()],
        esp_proposals: vec![EspProposal::parse(esp).unwrap()],
        local_ts: vec![ts::prefix(lnet.parse().unwrap(), 24)],
        remote_ts: vec![ts::prefix(rnet.parse().unwrap(), 24)],
        encapsulation: Encapsulation::Auto,
        fragmentation: true,
    }
}

fn endpoint(initiator: bool, ike: &str, esp: &str) -> Endpoint {
    Endpoint::new(
        EndpointConfig::default(),
        vec![peer(initiator, ike, esp)],
        Box::new(SystemRandom::new()),
        Box::new(RandomSpis::default()),
    )
}

/// Moves every pending datagram between the two ends until both are quiet; returns the
/// time spent inside `b`.
fn exchange(now: Instant, a: &mut Endpoint, b: &mut Endpoint) -> Duration {
    let mut in_b = Duration::ZERO;
    loop {
        while a.poll_action().is_some() {}
        let from_a: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        while a.poll_event().is_some() {}
        let t = Instant::now();
        for d in &from_a {
            b.handle_datagram(now, d.remote, d.local, &d.payload);
        }
        while b.poll_action().is_some() {}
        let from_b: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
        while b.poll_event().is_some() {}
        in_b += t.elapsed();
        for d in &from_b {
            a.handle_datagram(now, d.remote, d.local, &d.payload);
        }
        if from_a.is_empty() && from_b.is_empty() {
            return in_b;
        }
    }
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake_responder");
    for (name, ike) in [
        ("x25519", "aes128gcm16-prfsha256-x25519"),
        ("ecp256", "aes128gcm16-prfsha256-ecp256"),
        ("ecp384", "aes256gcm16-prfsha384-ecp384"),
        ("modp2048", "aes256gcm16-prfsha384-modp2048"),
    ] {
        g.bench_function(name, |bch| {
            bch.iter_custom(|n| {
                let mut total = Duration::ZERO;
                let mut b = endpoint(false, ike, "aes128gcm16");
                for _ in 0..n {
                    let mut a = endpoint(true, ike, "aes128gcm16");
                    let now = Instant::now();
                    a.initiate(now, 0).unwrap();
                    total += exchange(now, &mut a, &mut b);
                    assert_eq!(a.ike_sas().filter(|s| s.is_established()).count(), 1);
                }
                total
            })
        });
    }
    g.finish();
}

fn established(esp: &str) -> (Endpoint, Endpoint) {
    let ike = "aes128gcm16-prfsha256-x25519";
    let (mut a, mut b) = (endpoint(true, ike, esp), endpoint(false, ike, esp));
    let now = Instant::now();
    a.initiate(now, 0).unwrap();
    exchange(now, &mut a, &mut b);
    assert_eq!(a.ike_sas().filter(|s| s.is_established()).count(), 1);
    (a, b)
}

fn rekeys(c: &mut Criterion) {
    for (name, esp) in [
        ("no_pfs", "aes128gcm16"),
        ("pfs_x25519", "aes128gcm16-x25519"),
        ("pfs_modp2048", "aes128gcm16-modp2048"),
    ] {
        let (mut a, mut b) = established(esp);
        c.bench_function(&format!("child_rekey/{name}"), |bch| {
            bch.iter(|| {
                let now = Instant::now();
                let child = a
                    .ike_sas()
                    .flat_map(|s| s.children())
                    .find(|c| c.outbound_active)
                    .map(|c| c.id)
                    .unwrap();
                a.rekey_child(now, child).unwrap();
                exchange(now, &mut a, &mut b);
            })
        });
        let (mut a, mut b) = established(esp);
        c.bench_function(&format!("child_rekey_responder/{name}"), |bch| {
            bch.iter_custom(|n| {
                let mut total = Duration::ZERO;
                for _ in 0..n {
                    let now = Instant::now();
                    let child = a
                        .ike_sas()
                        .flat_map(|s| s.children())
                        .find(|c| c.outbound_active)
                        .map(|c| c.id)
                        .unwrap();
                    a.rekey_child(now, child).unwrap();
                    total += exchange(now, &mut a, &mut b);
                }
                total
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = handshakes, rekeys
}
criterion_main!(benches);
