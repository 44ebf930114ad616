//! Resident memory of many SA pairs, each boxed as the data plane's slab holds them.
//!
//! `cargo run --release -p espada-esp --example sa_memory -- [pairs] [ring|rustcrypto]
//! [key bytes 20|36] [window]` prints the growth of the resident set (VmRSS) per pair, which
//! includes what the counting-allocator test leaves out: the allocator's own headers and the
//! alignment of the 64-byte-aligned boxes (docs/performance.md, "Bytes per SA").

use std::net::{IpAddr, Ipv4Addr};

use espada_esp::{Backend, Direction, InboundSa, OutboundSa, SaConfig};

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
    let mut inbound = Vec::with_capacity(pairs as usize);
    let mut outbound = Vec::with_capacity(pairs as usize);
    let before = rss_kib();
    for n in 0..pairs {
        let spi = 0x1000 + n;
        let mut i = SaConfig::new(spi, Direction::Inbound, b, a);
        i.replay_window = window;
        let o = SaConfig::new(spi, Direction::Outbound, a, b);
        inbound.push(Box::new(
            InboundSa::new(i, &key, backend).expect("inbound SA"),
        ));
        outbound.push(Box::new(
            OutboundSa::new(o, &key, backend).expect("outbound SA"),
        ));
    }
    let after = rss_kib();
    // The two vectors of box pointers were reserved before `before`, but their pages are
    // touched only while filling them: take them out to leave the SAs alone.
    let pointers = 2 * u64::from(pairs) * 8;
    let grown = (after - before) * 1024;
    let per_pair = grown.saturating_sub(pointers) as f64 / f64::from(pairs);
    println!(
        "{pairs} pairs {backend:?} AES-{} window {window}: RSS +{:.1} MiB, {per_pair:.0} bytes per pair (box pointers excluded)",
        (klen - 4) * 8,
        grown as f64 / f64::from(1 << 20),
    );
    assert_eq!(inbound.len() + outbound.len(), 2 * pairs as usize);
}
