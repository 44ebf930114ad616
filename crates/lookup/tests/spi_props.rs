//! Property tests of the SPI layout and of the allocator driving the directory through random
//! lifecycles (allocate → live → tombstone → released, static SPIs among them), checked
//! against a plain model after every step.
#![cfg(not(loom))]

use std::collections::HashSet;
use std::sync::Arc;

use espada_lookup::sad::{Directory, Lookup};
use espada_lookup::spi::{
    MAX_INDEX_BITS, SlotState, SpiAllocator, SpiError, SpiLayout, SpiSlot, SplitMix64,
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn owner_and_slot_round_trip(
        workers in 1u16..=u16::MAX,
        slots in 1u32..=(1 << MAX_INDEX_BITS),
        owner in any::<u16>(),
        slot in any::<u32>(),
        tag in any::<u32>(),
    ) {
        let bits = |n: u32| 32 - (n - 1).leading_zeros();
        let Ok(l) = SpiLayout::new(workers, slots) else {
            prop_assert!(bits(u32::from(workers)) + bits(slots) > MAX_INDEX_BITS);
            return Ok(());
        };
        prop_assert!(l.tag_bits() >= 8);
        prop_assert!(l.workers() <= 1 << l.worker_bits());
        prop_assert!(u64::from(l.slots_per_worker()) <= 1 << l.slot_bits());
        let (owner, slot) = (owner % workers, slot % slots);
        let tag = (u64::from(tag) % (1 << l.tag_bits())) as u32;
        let spi = l.encode(tag, owner, slot).unwrap();
        prop_assert_eq!(l.owner_and_slot(spi), (owner, slot));
        prop_assert_eq!(l.tag(spi), tag);
    }
}

/// One step of a random lifecycle; indices pick among the SPIs in use.
#[derive(Clone, Debug)]
enum Op {
    Allocate(Option<u16>),
    Static(u32, Option<u16>),
    Live(usize),
    Retire(usize),
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let owner = prop_oneof![Just(None), (0u16..4).prop_map(Some)];
    prop_oneof![
        3 => owner.clone().prop_map(Op::Allocate),
        1 => (prop_oneof![0u32..600, any::<u32>()], owner).prop_map(|(s, o)| Op::Static(s, o)),
        2 => any::<usize>().prop_map(Op::Live),
        2 => any::<usize>().prop_map(Op::Retire),
        2 => any::<usize>().prop_map(Op::Release),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_allocator_and_directory_agree_through_any_lifecycle(
        workers in 1u16..=3,
        slots in 1u32..=8,
        static_capacity in 0usize..=3,
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let layout = SpiLayout::new(workers, slots).unwrap();
        let dir = Arc::new(Directory::new(layout, static_capacity));
        let mut a = SpiAllocator::new(dir.clone(), SplitMix64::new(seed));
        // The model: every SPI in use, its state, whether static, its tunnel.
        let mut used: Vec<(SpiSlot, SlotState, bool, u32)> = Vec::new();
        let mut tunnel = 0u32;
        for op in ops {
            let in_use = |used: &Vec<(SpiSlot, SlotState, bool, u32)>, o: u16| {
                used.iter().filter(|u| u.0.owner == o).count() as u32
            };
            let pick = |i: usize, n: usize| (n > 0).then(|| i % n);
            match op {
                Op::Allocate(owner) => {
                    let full = |o| in_use(&used, o) == slots;
                    match a.allocate(owner) {
                        Ok(s) => {
                            prop_assert!(s.spi >= 256);
                            prop_assert_eq!(layout.owner_and_slot(s.spi), (s.owner, s.slot));
                            if let Some(o) = owner {
                                prop_assert_eq!(s.owner, o);
                            }
                            prop_assert!(!full(s.owner));
                            prop_assert!(used.iter().all(|u| u.0.spi != s.spi
                                && (u.0.owner, u.0.slot) != (s.owner, s.slot)));
                            used.push((s, SlotState::Reserved, false, 0));
                        }
                        Err(SpiError::NoSuchWorker(o)) => prop_assert!(o >= workers),
                        Err(e) => {
                            prop_assert_eq!(e, SpiError::Exhausted);
                            match owner {
                                Some(o) => prop_assert!(full(o)),
                                None => prop_assert!((0..workers).all(full)),
                            }
                        }
                    }
                }
                Op::Static(spi, owner) => {
                    let statics = used.iter().filter(|u| u.2).count();
                    match a.allocate_static(spi, owner) {
                        Ok(s) => {
                            prop_assert_eq!(s.spi, spi);
                            prop_assert!(used.iter().all(|u| u.0.spi != spi
                                && (u.0.owner, u.0.slot) != (s.owner, s.slot)));
                            used.push((s, SlotState::Reserved, true, 0));
                        }
                        Err(SpiError::ReservedSpi(s)) => prop_assert!(s == spi && spi < 256),
                        Err(SpiError::InUse(s)) => {
                            prop_assert!(s == spi && used.iter().any(|u| u.0.spi == spi));
                        }
                        Err(SpiError::StaticTableFull) => {
                            prop_assert_eq!(statics, static_capacity);
                        }
                        Err(SpiError::NoSuchWorker(o)) => prop_assert!(o >= workers),
                        Err(e) => {
                            prop_assert_eq!(e, SpiError::Exhausted);
                            match owner {
                                Some(o) => prop_assert_eq!(in_use(&used, o), slots),
                                None => prop_assert_eq!(used.len() as u32, slots * u32::from(workers)),
                            }
                        }
                    }
                }
                Op::Live(i) => {
                    let Some(i) = pick(i, used.len()) else { continue };
                    let (s, st, _, _) = used[i];
                    if st == SlotState::Reserved {
                        tunnel += 1;
                        dir.install(s, tunnel).unwrap();
                        a.mark_live(s).unwrap();
                        used[i].1 = SlotState::Live;
                        used[i].3 = tunnel;
                    } else {
                        prop_assert_eq!(
                            a.mark_live(s),
                            Err(SpiError::WrongState { spi: s.spi, state: st })
                        );
                    }
                }
                Op::Retire(i) => {
                    let Some(i) = pick(i, used.len()) else { continue };
                    let (s, st, _, _) = used[i];
                    if st == SlotState::Live {
                        dir.retire(s).unwrap();
                        a.retire(s).unwrap();
                        used[i].1 = SlotState::Tombstone;
                    } else {
                        prop_assert!(a.retire(s).is_err());
                    }
                }
                Op::Release(i) => {
                    let Some(i) = pick(i, used.len()) else { continue };
                    let (s, st, _, _) = used.swap_remove(i);
                    if st != SlotState::Reserved {
                        dir.remove(s).unwrap();
                    }
                    a.release(s).unwrap();
                    prop_assert_eq!(dir.lookup(s.spi), Lookup::Unknown);
                    prop_assert_eq!(a.state(s), None);
                    prop_assert_eq!(a.find(s.spi), None);
                }
            }
            // After every step: no duplicate, and the directory shows exactly the model.
            let spis: HashSet<u32> = used.iter().map(|u| u.0.spi).collect();
            prop_assert_eq!(spis.len(), used.len());
            for &(s, st, _, t) in &used {
                prop_assert_eq!(a.state(s), Some(st));
                prop_assert_eq!(a.find(s.spi), Some(s));
                let want = match st {
                    SlotState::Live => Lookup::Live { owner: s.owner, slot: s.slot, tunnel: t },
                    SlotState::Tombstone => Lookup::Tombstone { tunnel: t },
                    _ => Lookup::Unknown,
                };
                prop_assert_eq!(dir.lookup(s.spi), want);
            }
            for o in 0..workers {
                prop_assert_eq!(a.in_use(o), in_use(&used, o));
            }
            prop_assert_eq!(a.alarms(), 0);
        }
    }
}
