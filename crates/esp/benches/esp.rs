//! ESP transform cost beside the bare AEAD of the same bytes, per backend.
//!
//! Sizes are Ethernet frame sizes on the inside port: the inner IP packet is `size - 14` bytes
//! and the bare AEAD works on what ESP encrypts, the inner packet plus the 2-byte trailer padded
//! to 4, with 8 bytes of AAD (docs: ../shared/notes/crypto-speed.md). IMIX is 7:4:1 of
//! 64/594/1460-byte frames; one IMIX iteration is 12 packets (throughput in elements).
//!
//! Every iteration copies the packet into the work buffer first, for ESP and bare AEAD alike
//! (both work in place). Decapsulation needs fresh sequence numbers, so packets are made in
//! untimed chunks and only the decapsulation of each chunk is timed (`iter_custom`).
//!
//! Goal (issue 2): ESP adds ≤15% over bare AEAD at 1420 B and ≤40 ns at 64 B.
//! Run: `cargo bench -p espada-esp --bench esp`; smoke test: `... -- --test`.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use espada_buf::{PacketBuf, VecBuf};
use espada_esp::aead::{AeadEngine, GcmAead};
use espada_esp::wire::checksum;
use espada_esp::{
    Backend, Direction, InboundSa, KeyCache, MAX_ENCAP_HEADROOM, MAX_ENCAP_TAILROOM, OutboundSa,
    SaConfig,
};

const HEADROOM: usize = MAX_ENCAP_HEADROOM + 14;
const CHUNK: usize = 256;
const KEY: [u8; 20] = [7; 20];
const SPI: u32 = 0x1234_5678;

/// Workload: list of frame sizes making one iteration.
fn workloads() -> Vec<(String, Vec<usize>)> {
    let mut w: Vec<(String, Vec<usize>)> = [64usize, 256, 512, 1024, 1420]
        .iter()
        .map(|&s| (s.to_string(), vec![s]))
        .collect();
    let mut imix = Vec::new();
    for i in 0..12 {
        imix.push(match i {
            0..7 => 64,
            7..11 => 594,
            _ => 1460,
        });
    }
    w.push(("imix".into(), imix));
    w
}

fn inner_packet(frame: usize) -> Vec<u8> {
    let len = frame - 14;
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&[198, 18, 0, 1]);
    p[16..20].copy_from_slice(&[198, 19, 0, 1]);
    let c = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

fn sas(backend: Backend) -> (OutboundSa, InboundSa) {
    let l: IpAddr = "192.0.2.1".parse().unwrap();
    let r: IpAddr = "198.51.100.2".parse().unwrap();
    let o = SaConfig::new(SPI, Direction::Outbound, l, r);
    let mut i = SaConfig::new(SPI, Direction::Inbound, r, l);
    i.replay_window = 4096;
    (
        OutboundSa::new(o, &KEY, backend).unwrap(),
        InboundSa::new(i, &KEY, backend).unwrap(),
    )
}

fn esp_payload_len(frame: usize) -> usize {
    (frame - 14 + 2).div_ceil(4) * 4
}

fn bench_encrypt(c: &mut Criterion) {
    for backend in Backend::ALL {
        let mut g = c.benchmark_group(format!("encrypt/{backend:?}"));
        for (name, frames) in workloads() {
            g.throughput(Throughput::Elements(frames.len() as u64));
            let inners: Vec<Vec<u8>> = frames.iter().map(|&f| inner_packet(f)).collect();
            let mut buf = VecBuf::with_capacity(HEADROOM + 1600 + MAX_ENCAP_TAILROOM, HEADROOM);

            let engine = AeadEngine::new(backend, &KEY[..16]).unwrap();
            let plains: Vec<Vec<u8>> = frames
                .iter()
                .map(|&f| vec![0x5a; esp_payload_len(f)])
                .collect();
            let mut seq = 0u64;
            g.bench_function(BenchmarkId::new("aead_seal", &name), |b| {
                b.iter(|| {
                    for p in &plains {
                        seq += 1;
                        buf.reset(HEADROOM, p);
                        let mut nonce = [0u8; 12];
                        nonce[4..].copy_from_slice(&seq.to_be_bytes());
                        let aad = [0u8; 8];
                        let tag = engine.seal(&nonce, &aad, buf.data_mut()).unwrap();
                        black_box(tag);
                    }
                })
            });

            let (mut out, _) = sas(backend);
            let mut keys = KeyCache::new(2);
            g.bench_function(BenchmarkId::new("esp_encap", &name), |b| {
                b.iter(|| {
                    for p in &inners {
                        buf.reset(HEADROOM, p);
                        black_box(out.encap(&mut keys, &mut buf).unwrap());
                    }
                })
            });
        }
        g.finish();
    }
}

fn bench_decrypt(c: &mut Criterion) {
    for backend in Backend::ALL {
        let mut g = c.benchmark_group(format!("decrypt/{backend:?}"));
        for (name, frames) in workloads() {
            g.throughput(Throughput::Elements(frames.len() as u64));
            let inners: Vec<Vec<u8>> = frames.iter().map(|&f| inner_packet(f)).collect();
            let mut work = VecBuf::with_capacity(HEADROOM + 1600 + MAX_ENCAP_TAILROOM, 0);

            // Bare AEAD open of sealed payloads (same chunking as ESP for fairness).
            let engine = AeadEngine::new(backend, &KEY[..16]).unwrap();
            let sealed: Vec<(Vec<u8>, [u8; 16], [u8; 12])> = (0..CHUNK)
                .map(|n| {
                    let f = frames[n % frames.len()];
                    let mut p = vec![0x5a; esp_payload_len(f)];
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&(n as u64).to_be_bytes());
                    let tag = engine.seal(&nonce, &[0u8; 8], &mut p).unwrap();
                    (p, tag, nonce)
                })
                .collect();
            g.bench_function(BenchmarkId::new("aead_open", &name), |b| {
                b.iter_custom(|iters| {
                    let per = frames.len();
                    let start = Instant::now();
                    let mut k = 0;
                    for _ in 0..iters {
                        for _ in 0..per {
                            let (p, tag, nonce) = &sealed[k];
                            k = (k + 1) % CHUNK;
                            work.reset(0, p);
                            engine.open(nonce, &[0u8; 8], work.data_mut(), tag).unwrap();
                            black_box(work.data()[0]);
                        }
                    }
                    start.elapsed()
                })
            });

            let (mut out, mut inb) = sas(backend);
            let mut keys = KeyCache::new(2);
            let mut chunk: Vec<Vec<u8>> = Vec::with_capacity(CHUNK);
            let mut ebuf = VecBuf::with_capacity(HEADROOM + 1600 + MAX_ENCAP_TAILROOM, HEADROOM);
            g.bench_function(BenchmarkId::new("esp_decap", &name), |b| {
                b.iter_custom(|iters| {
                    let total = iters as usize * frames.len();
                    let mut elapsed = Duration::ZERO;
                    let mut done = 0;
                    while done < total {
                        // Untimed: fresh packets with new sequence numbers.
                        chunk.clear();
                        let n = CHUNK.min(total - done);
                        for j in 0..n {
                            ebuf.reset(HEADROOM, &inners[(done + j) % inners.len()]);
                            out.encap(&mut keys, &mut ebuf).unwrap();
                            chunk.push(ebuf.data().to_vec());
                        }
                        let start = Instant::now();
                        for p in &chunk {
                            work.reset(0, p);
                            black_box(inb.decap(&mut keys, &mut work).unwrap());
                        }
                        elapsed += start.elapsed();
                        done += n;
                    }
                    elapsed
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench_encrypt, bench_decrypt);
criterion_main!(benches);
