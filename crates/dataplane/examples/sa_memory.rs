//! Resident memory of many SA pairs as the data plane holds them: each SA in its boxed slot
//! (`InboundSlot`, `OutboundSlot`) with its counters, one policy per tunnel, and the worker's
//! key cache.
//!
//! `cargo run --release -p espada-dataplane --example sa_memory -- [pairs] [ring|rustcrypto]
//! [key bytes 20|36] [window]` prints the growth of the resident set (VmRSS) per pair, which
//! includes what the counting-allocator test leaves out: the allocator's own headers and the
//! alignment of the 64-byte-aligned boxes (docs/performance.md, "Bytes per SA"). The slab's
//! pointer to each slot (8 bytes a direction) is part of the figure. A tunnel's policy (its
//! traffic selectors, shared by its SAs) is not: every pair here shares one.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use espada_dataplane::slab::{InboundSlot, OutboundSlot, Policy};
use espada_esp::keys::DEFAULT_CACHE_LINES;
use espada_esp::{Backend, Direction, InboundSa, KeyCache, OutboundSa, SaConfig};

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pairs: u32 = args.next().map_or(1_000_000, |a| a.parse().expect("pairs"));
    let backend = match args.next().as_deref() {
        None | Some("ring") => Backend::Ring,
        Some("rustcrypto") => Backend::RustCrypto,
        Some(b) => panic!("unknown backend {b}"),
    };
    let klen: usize = args.next().map_or(20, |a| a.parse().expect("key bytes"));
    let window: u32 = args.next().map_or(64, |a| a.parse().expect("window"));
    let key: Vec<u8> = (0..klen as u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let (a, b) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
    );
    let before = rss_kib();
    let mut inbound = Vec::with_capacity(pairs as usize);
    let mut outbound = Vec::with_capacity(pairs as usize);
    let policy = Arc::new(Policy {
        local_ts: vec!["10.0.0.0/24".parse().unwrap()],
        remote_ts: vec!["10.1.0.0/24".parse().unwrap()],
    });
    for n in 0..pairs {
        let spi = 0x1000 + n;
        let mut i = SaConfig::new(spi, Direction::Inbound, b, a);
        i.replay_window = window;
        let o = SaConfig::new(spi, Direction::Outbound, a, b);
        let rx = InboundSa::new(i, &key, backend).expect("inbound SA");
        let tx = OutboundSa::new(o, &key, backend).expect("outbound SA");
        inbound.push(Some(InboundSlot::new(rx, n, policy.clone())));
        outbound.push(Some(OutboundSlot::new(tx, n, policy.clone(), b, 0)));
    }
    let slots = rss_kib();
    let keys = KeyCache::new(DEFAULT_CACHE_LINES);
    let with_cache = rss_kib();
    let per_pair = (slots - before) as f64 * 1024.0 / f64::from(pairs);
    println!(
        "{pairs} pairs {backend:?} AES-{} window {window}: RSS +{:.1} MiB, {per_pair:.0} bytes per pair \
         (slots, counters, slab pointers); one worker's key cache of {} lines +{:.1} MiB",
        (klen - 4) * 8,
        (slots - before) as f64 / 1024.0,
        keys.lines(),
        (with_cache - slots) as f64 / 1024.0,
    );
    assert_eq!(inbound.len() + outbound.len(), 2 * pairs as usize);
}
