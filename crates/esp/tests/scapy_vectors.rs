//! Known-answer tests against scapy (an independent ESP implementation).
//!
//! `tests/vectors/scapy_vectors.json` is produced by `tests/vectors/gen_vectors.py`. Espada must
//! decapsulate every scapy packet to the exact inner bytes, produce the same bytes when it
//! encapsulates the same inner packet (without TFC padding), and scapy must decrypt every
//! packet espada makes. The tests that run scapy fail instead of skipping when
//! `ESPADA_REQUIRE_SCAPY=1` and python3 with scapy is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use espada_buf::{PacketBuf, VecBuf};
use espada_esp::KeyCache;
use espada_esp::{Backend, InboundSa, OutboundSa, ReplayState};
use serde_json::{Value, json};

struct Vector {
    name: String,
    outer_v6: bool,
    natt: bool,
    esn: bool,
    key: Vec<u8>,
    spi: u32,
    seq: u64,
    tfc: u64,
    inner: Vec<u8>,
    esp: Vec<u8>,
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn load() -> Vec<Vector> {
    let text = std::fs::read_to_string(vectors_dir().join("scapy_vectors.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| Vector {
            name: e["name"].as_str().unwrap().to_owned(),
            outer_v6: e["outer"].as_u64().unwrap() == 6,
            natt: e["natt"].as_bool().unwrap(),
            esn: e["esn"].as_bool().unwrap(),
            key: hex::decode(e["key"].as_str().unwrap()).unwrap(),
            spi: e["spi"].as_u64().unwrap() as u32,
            seq: e["seq"].as_u64().unwrap(),
            tfc: e["tfc"].as_u64().unwrap(),
            inner: hex::decode(e["inner_packet"].as_str().unwrap()).unwrap(),
            esp: hex::decode(e["esp_packet"].as_str().unwrap()).unwrap(),
        })
        .collect()
}

fn sas(v: &Vector, backend: Backend) -> (OutboundSa, InboundSa) {
    let (mut o, mut i) = common::configs(v.spi, v.outer_v6, v.natt, v.esn);
    o.initial_seq = v.seq - 1;
    // Start the window just below the vector's number (ESN vectors sit near 2^32 boundaries).
    i.replay_state = Some(ReplayState {
        highest: v.seq - 1,
        bitmap: vec![],
    });
    (
        OutboundSa::new(o, &v.key, backend).unwrap(),
        InboundSa::new(i, &v.key, backend).unwrap(),
    )
}

#[test]
fn vector_set_covers_the_matrix() {
    let vs = load();
    assert!(vs.len() >= 64);
    for (o, n, e, k, t) in [
        (false, false, false, 20, false),
        (true, true, true, 36, true),
    ] {
        assert!(vs.iter().any(|v| v.outer_v6 == o
            && v.natt == n
            && v.esn == e
            && v.key.len() == k
            && (v.tfc > 0) == t));
    }
    assert!(vs.iter().any(|v| v.esn && v.seq > u64::from(u32::MAX)));
    assert!(vs.iter().any(|v| v.inner.len() % 2 == 1) && vs.iter().any(|v| v.inner.len() % 2 == 0));
}

#[test]
fn espada_decaps_every_scapy_packet_to_the_exact_inner_bytes() {
    for backend in Backend::ALL {
        for v in load() {
            let (_, mut inb) = sas(&v, backend);
            let mut b = VecBuf::new(0, &v.esp, 0);
            let p = inb
                .decap(&mut KeyCache::new(2), &mut b)
                .unwrap_or_else(|e| panic!("{} {backend:?}: {e}", v.name));
            assert_eq!(b.data(), &v.inner[..], "{} {backend:?}", v.name);
            assert_eq!(p.seq, v.seq, "{}", v.name);
            // The same packet again is a replay.
            let mut b = VecBuf::new(0, &v.esp, 0);
            assert_eq!(
                inb.decap(&mut KeyCache::new(2), &mut b),
                Err(espada_esp::DropReason::Replayed),
                "{}",
                v.name
            );
        }
    }
}

#[test]
fn espada_encap_gives_scapys_bytes() {
    for backend in Backend::ALL {
        for v in load().into_iter().filter(|v| v.tfc == 0) {
            let (mut out, _) = sas(&v, backend);
            let mut got = common::encap(&mut out, &v.inner);
            if v.natt && v.outer_v6 {
                // scapy writes UDP checksum 0 over IPv6; espada computes it. Check it, then
                // compare the rest.
                let mut pseudo = Vec::new();
                pseudo.extend_from_slice(&got[8..40]);
                pseudo.extend_from_slice(&((got.len() - 40) as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, 17]);
                pseudo.extend_from_slice(&got[40..]);
                assert_eq!(
                    espada_esp::wire::checksum::checksum(&pseudo),
                    0,
                    "{}",
                    v.name
                );
                got[46..48].copy_from_slice(&[0, 0]);
            }
            assert_eq!(
                hex::encode(&got),
                hex::encode(&v.esp),
                "{} {backend:?}",
                v.name
            );
        }
    }
}

/// `true` when python3 with scapy is usable; panics when it is required and missing.
fn scapy_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import scapy.layers.ipsec, cryptography"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("ESPADA_REQUIRE_SCAPY").as_deref() == Ok("1") {
            panic!("ESPADA_REQUIRE_SCAPY=1 but python3 with scapy and cryptography is missing");
        }
        eprintln!("SKIPPED: python3 with scapy not found (set ESPADA_REQUIRE_SCAPY=1 to fail)");
    }
    ok
}

#[test]
fn scapy_decrypts_every_espada_packet() {
    if !scapy_available() {
        return;
    }
    let mut items = Vec::new();
    let mut n = 0u32;
    for backend in Backend::ALL {
        for outer_v6 in [false, true] {
            for inner_v6 in [false, true] {
                for natt in [false, true] {
                    for esn in [false, true] {
                        for klen in [20usize, 36] {
                            for plen in [0usize, 1, 2, 3, 97, 1372] {
                                n += 1;
                                let spi = 0x2000 + n;
                                let key = common::key(klen);
                                let seq0: u64 = if esn { (3 << 32) - 2 } else { 7 };
                                let (mut o, _) = common::configs(spi, outer_v6, natt, esn);
                                o.initial_seq = seq0;
                                let mut out = OutboundSa::new(o, &key, backend).unwrap();
                                let payload: Vec<u8> =
                                    (0..plen).map(|i| (i as u8) ^ (n as u8)).collect();
                                let inner = if inner_v6 {
                                    common::v6_inner(&payload, 0x28)
                                } else {
                                    common::v4_inner(&payload, 0xb9, n.is_multiple_of(2))
                                };
                                // Three packets: with ESN they cross a 2^32 boundary (high half 2 -> 3).
                                for _ in 0..3 {
                                    let esp = common::encap(&mut out, &inner);
                                    items.push(json!({
                                        "name": format!("espada_{backend:?}_{n}_seq{}", out.seq()),
                                        "outer": if outer_v6 { 6 } else { 4 },
                                        "natt": natt, "esn": esn, "key": hex::encode(&key),
                                        "spi": spi, "seq": out.seq(),
                                        "inner_packet": hex::encode(&inner),
                                        "esp_packet": hex::encode(&esp),
                                    }));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("espada_packets.json");
    std::fs::write(&path, serde_json::to_string(&items).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(vectors_dir().join("gen_vectors.py"))
        .arg("--check")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scapy check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{} passed, 0 failed", items.len())),
        "{stdout}"
    );
}

#[test]
fn committed_vectors_regenerate_identically() {
    if !scapy_available() {
        return;
    }
    let out = Command::new("python3")
        .arg(vectors_dir().join("gen_vectors.py"))
        .arg("--stdout")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(vectors_dir().join("scapy_vectors.json")).unwrap();
    assert!(
        out.stdout == committed,
        "gen_vectors.py output differs from scapy_vectors.json"
    );
}
