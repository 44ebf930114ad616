//! One EAL per test process, shared by every test in the binary (EAL initialises once per
//! process; nextest runs each test in its own process, plain `cargo test` runs them as threads).
#![allow(dead_code)]

use std::sync::OnceLock;

use dpdk::Eal;

/// EAL arguments that work without hugepages and leave no files behind.
pub fn eal_args() -> Vec<String> {
    let prefix = format!("espada-test-{}", std::process::id());
    [
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-shconf",
        "--file-prefix",
        &prefix,
        "--log-level",
        "error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The process's EAL, initialised on first use.
pub fn eal() -> &'static Eal {
    static EAL: OnceLock<Eal> = OnceLock::new();
    EAL.get_or_init(|| Eal::init(eal_args()).expect("EAL init"))
}

/// A frame of `len` bytes whose content is a function of `seq`, with EtherType 0x88b5 (IEEE
/// local experimental) so test traffic is told apart from anything a kernel sends.
pub fn test_frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i * 7) as u8;
    }
    f
}

/// Position of the first differing byte, or None when equal (lengths compared first).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}
