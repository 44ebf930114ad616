//! Replays the seed corpus of the `ike_message` fuzz target (`crates/ike/fuzz`) through the
//! same checks the target runs, on stable Rust, and checks what each seed is meant to be.
//!
//! Seeds: `strongswan-*` are the captured datagrams of `tests/vectors/strongswan`; `gen-*`
//! are messages built with this crate's emitters (the `*-sealed` and `*-fragment-*` ones
//! under the key `fuzz_check::protected_no_panic` uses); `edge-*` are broken on purpose.

use espada_ike::msgs::fuzz_check::{message_round_trip, protected_no_panic};

/// Edge seeds and whether each still parses as a message.
const EDGES: &[(&str, bool)] = &[
    ("edge-empty", false),
    ("edge-short-header", false),
    ("edge-header-only", true),
    ("edge-length-mismatch", false),
    ("edge-major-version-3", false),
    ("edge-payload-length-3", false),
    ("edge-truncated-last-payload", false),
    ("edge-unknown-critical", false),
    ("edge-nonce-15", false),
    ("edge-ts-type-10", false),
    ("edge-proposal-numbers", false),
    ("edge-data-after-sk", false),
    ("edge-sealed-bad-icv", true),
];

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/ike_message");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_replays_through_the_fuzz_checks() {
    let seeds = corpus();
    assert!(seeds.len() >= 40, "{} seeds", seeds.len());
    let mut opened = 0;
    for (name, data) in &seeds {
        let parsed = message_round_trip(data);
        let protected = protected_no_panic(data);
        if name.starts_with("strongswan-") || name.starts_with("gen-") {
            assert!(parsed, "{name} should parse");
        }
        if name.starts_with("gen-") && name.contains("-sealed") {
            assert!(protected, "{name} should open under the fuzz key");
            opened += 1;
        }
        if name.starts_with("edge-") {
            let want = EDGES.iter().find(|(n, _)| n == name).map(|(_, ok)| *ok);
            assert_eq!(Some(parsed), want, "{name}");
            assert!(!protected, "{name}");
        }
    }
    assert!(opened >= 3, "{opened} sealed seeds opened");
    for (edge, _) in EDGES {
        assert!(seeds.iter().any(|(n, _)| n == edge), "{edge} missing");
    }
}
