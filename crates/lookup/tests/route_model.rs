//! Property tests: random add/remove/reclaim sequences on both families, checked against a naive
//! longest-match model after every step (lookups around every route, groups and tails in use,
//! pool accounting, exhaustion reported exactly when a pool is short).

mod route_common;

use proptest::prelude::*;
use route_common::{Harness, TestFamily};

use espada_lookup::route::{V4, V6};

#[derive(Clone, Debug)]
enum Op {
    Insert {
        key: u128,
        len: u32,
        value: u32,
    },
    Remove {
        key: u128,
        len: u32,
    },
    /// Removes the `n`-th installed route (modulo their number): covering prefixes included.
    RemoveExisting {
        n: usize,
    },
    Reclaim,
}

/// Keys from a few bases with bits flipped at chosen positions, so that prefixes overlap, share
/// groups and sit on group boundaries; plus fully random keys.
fn key(width: u32, bases: Vec<u128>, positions: Vec<u32>) -> impl Strategy<Value = u128> + Clone {
    let mask = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    let flips = positions.len();
    prop_oneof![
        4 => (prop::sample::select(bases), prop::collection::vec(any::<bool>(), flips)).prop_map(
            move |(base, bits)| {
                let mut key = base;
                for (flip, &bit) in bits.iter().zip(&positions) {
                    if *flip {
                        key ^= 1u128 << (width - 1 - bit);
                    }
                }
                key & mask
            }
        ),
        1 => any::<u128>().prop_map(move |k| k & mask),
    ]
}

/// Lengths: the favoured ones, any, and the extremes. `short` weighs /0 and lengths up to /8:
/// in IPv4 each costs 2¹⁶ to 2²⁴ stores, so they are kept rare there.
fn len(width: u32, favoured: Vec<u32>, short: u32) -> impl Strategy<Value = u32> + Clone {
    prop_oneof![
        short => Just(0),
        short => 0..=8u32,
        8 => Just(width),
        24 => prop::sample::select(favoured),
        24 => 9..=width,
    ]
}

fn ops(
    width: u32,
    bases: Vec<u128>,
    positions: Vec<u32>,
    favoured: Vec<u32>,
    short: u32,
) -> impl Strategy<Value = Vec<Op>> {
    let k = key(width, bases, positions);
    let l = len(width, favoured, short);
    let op = prop_oneof![
        6 => (k.clone(), l.clone(), 0..16u32).prop_map(|(key, len, value)| Op::Insert { key, len, value }),
        2 => (k, l).prop_map(|(key, len)| Op::Remove { key, len }),
        3 => any::<usize>().prop_map(|n| Op::RemoveExisting { n }),
        1 => Just(Op::Reclaim),
    ];
    prop::collection::vec(op, 1..80)
}

fn run<F: TestFamily>(groups: u32, tails: u32, ops: &[Op], extra: &[u128]) {
    let mut h = Harness::<F>::new(groups, tails);
    for op in ops {
        match *op {
            Op::Insert { key, len, value } => h.insert(key, len, value),
            Op::Remove { key, len } => h.remove(key, len),
            Op::RemoveExisting { n } => {
                if !h.model.routes.is_empty() {
                    let (key, len, _) = h.model.routes[n % h.model.routes.len()];
                    h.remove(key, len);
                }
            }
            Op::Reclaim => h.reclaim(),
        }
        let mut probes = h.model.probes();
        probes.extend_from_slice(extra);
        if let Op::Insert { key, len, .. } | Op::Remove { key, len } = *op {
            probes.extend(h.model.edges(key, len));
        }
        h.check(&probes);
    }
    // Removing everything leaves an empty table with every group unlinked.
    while let Some(&(key, len, _)) = h.model.routes.first() {
        h.remove(key, len);
        h.check(&[key]);
    }
    h.check(extra);
    let stats = h.writer.stats();
    assert_eq!((stats.groups_in_use, stats.tails_in_use), (0, 0));
    h.reclaim();
    let stats = h.writer.stats();
    assert_eq!(
        (stats.groups_free, stats.tails_free),
        (groups as usize, stats.tails_capacity)
    );
}

const V4_BASES: [u128; 3] = [0x0a00_0000, 0x0a00_0100, 0xc0a8_ff00];
const V4_POSITIONS: [u32; 10] = [7, 15, 16, 22, 23, 24, 25, 28, 30, 31];
const V6_BASES: [u128; 3] = [
    0x2001_0db8_0000_0000_0000_0000_0000_0000,
    0x2001_0db8_0001_0000_0000_0000_0000_0000,
    0xfd00_0000_0000_0000_0000_0000_0000_0000,
];
const V6_POSITIONS: [u32; 12] = [15, 16, 23, 24, 40, 47, 48, 63, 64, 100, 120, 127];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn v4_matches_the_model(ops in ops(32, V4_BASES.to_vec(), V4_POSITIONS.to_vec(), vec![8, 16, 23, 24, 25, 28, 31, 32], 1)) {
        run::<V4>(6, 0, &ops, &[0, 0xffff_ffff, 0x0a00_00ff, 0x0a00_0100]);
    }

    #[test]
    fn v6_matches_the_model(ops in ops(128, V6_BASES.to_vec(), V6_POSITIONS.to_vec(), vec![16, 17, 24, 32, 48, 64, 65, 127, 128], 8)) {
        run::<V6>(12, 512, &ops, &[0, u128::MAX, V6_BASES[0], V6_BASES[1] - 1]);
    }
}
