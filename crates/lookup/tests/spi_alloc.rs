//! SPI allocator (issue 13 proof "Allocator tests"): a million allocations with churn, no
//! duplicate, owner/slot round trip, never below 256, exhaustion as an error, tombstones held
//! until released, and the directory cross-check that raises the alarm.
#![cfg(not(loom))]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use espada_lookup::sad::{Directory, Lookup};
use espada_lookup::spi::{SlotState, SpiAllocator, SpiError, SpiLayout, SpiSlot, SplitMix64};

fn allocator(workers: u16, slots: u32, statics: usize, seed: u64) -> SpiAllocator<SplitMix64> {
    let layout = SpiLayout::new(workers, slots).unwrap();
    SpiAllocator::new(
        Arc::new(Directory::new(layout, statics)),
        SplitMix64::new(seed),
    )
}

/// Allocates on `owner`, installs for `tunnel` and marks live.
fn bring_up<R: espada_lookup::spi::SpiRandom>(
    a: &mut SpiAllocator<R>,
    owner: Option<u16>,
    tunnel: u32,
) -> Result<SpiSlot, SpiError> {
    let s = a.allocate(owner)?;
    a.directory().install(s, tunnel).unwrap();
    a.mark_live(s).unwrap();
    Ok(s)
}

/// Retires a live SA in both the directory and the allocator.
fn retire<R: espada_lookup::spi::SpiRandom>(a: &mut SpiAllocator<R>, s: SpiSlot) {
    a.directory().retire(s).unwrap();
    a.retire(s).unwrap();
}

/// Forgets an SA (live or tombstone) in both.
fn release<R: espada_lookup::spi::SpiRandom>(a: &mut SpiAllocator<R>, s: SpiSlot) {
    a.directory().remove(s).unwrap();
    a.release(s).unwrap();
}

#[test]
fn a_million_allocations_with_churn_never_duplicate() {
    const ALLOCATIONS: usize = 1_000_000;
    const LIVE: usize = 500_000;
    const TOMBSTONES: usize = 20_000;
    // 2 × 2^18 slots for at most 520,001 in use: the churn reuses slots all the time.
    let mut a = allocator(2, 1 << 18, 0, 1);
    let layout = a.layout();
    let mut rng = SplitMix64::new(99);
    // Every SPI allocated and not yet released (reserved, live or tombstone).
    let mut taken: HashSet<u32> = HashSet::with_capacity(LIVE + TOMBSTONES);
    let mut live: Vec<(SpiSlot, u32)> = Vec::with_capacity(LIVE + 1);
    let mut tombs: Vec<(SpiSlot, u32)> = Vec::with_capacity(TOMBSTONES + 1);
    let mut previous: HashMap<(u16, u32), u32> = HashMap::new();
    let mut slot_reuses = 0usize;
    for n in 0..ALLOCATIONS {
        let owner = match rng.next_u64() % 3 {
            2 => None,
            w => Some(w as u16),
        };
        let tunnel = (n as u32) & espada_lookup::sad::MAX_TUNNEL;
        let s = match bring_up(&mut a, owner, tunnel) {
            Ok(s) => s,
            Err(SpiError::Exhausted) => bring_up(&mut a, None, tunnel).unwrap(),
            Err(e) => panic!("allocation {n}: {e}"),
        };
        assert!(s.spi >= 256, "SPI {:#x} below 256", s.spi);
        assert!(taken.insert(s.spi), "SPI {:#x} issued twice", s.spi);
        assert_eq!(layout.owner_and_slot(s.spi), (s.owner, s.slot));
        if let Some(owner) = owner
            && a.in_use(owner) < layout.slots_per_worker()
        {
            assert_eq!(s.owner, owner, "allocation on the requested worker");
        }
        if let Some(prev) = previous.insert((s.owner, s.slot), s.spi) {
            slot_reuses += 1;
            assert_ne!(prev, s.spi, "a reused slot got its previous SPI back");
            assert_eq!(a.directory().lookup(prev), Lookup::Unknown);
        }
        assert_eq!(
            a.directory().lookup(s.spi),
            Lookup::Live {
                owner: s.owner,
                slot: s.slot,
                tunnel
            }
        );
        live.push((s, tunnel));
        // Churn: retire a random live SA once ~500k are live; forget old tombstones.
        if live.len() > LIVE {
            let i = (rng.next_u64() % live.len() as u64) as usize;
            let (s, t) = live.swap_remove(i);
            retire(&mut a, s);
            assert_eq!(a.directory().lookup(s.spi), Lookup::Tombstone { tunnel: t });
            tombs.push((s, t));
        }
        if tombs.len() > TOMBSTONES || (rng.next_u64().is_multiple_of(8) && !tombs.is_empty()) {
            let i = (rng.next_u64() % tombs.len() as u64) as usize;
            let (s, _) = tombs.swap_remove(i);
            release(&mut a, s);
            assert!(taken.remove(&s.spi));
            assert_eq!(a.directory().lookup(s.spi), Lookup::Unknown);
        }
    }
    assert_eq!(a.alarms(), 0);
    assert!(
        slot_reuses > 400_000,
        "the churn reused slots: {slot_reuses}"
    );
    assert_eq!(
        (a.in_use(0) + a.in_use(1)) as usize,
        live.len() + tombs.len()
    );
    // Everything still in use is still found, with its state.
    for (s, t) in &live {
        let found = a.directory().lookup(s.spi);
        assert_eq!(
            found,
            Lookup::Live {
                owner: s.owner,
                slot: s.slot,
                tunnel: *t
            }
        );
        assert_eq!(a.state(*s), Some(SlotState::Live));
    }
    for (s, t) in &tombs {
        assert_eq!(
            a.directory().lookup(s.spi),
            Lookup::Tombstone { tunnel: *t }
        );
        assert_eq!(a.state(*s), Some(SlotState::Tombstone));
    }
}

#[test]
fn exhaustion_is_an_error_per_worker_and_overall() {
    let mut a = allocator(2, 4, 1, 2);
    for _ in 0..4 {
        assert_eq!(bring_up(&mut a, Some(0), 1).unwrap().owner, 0);
    }
    assert_eq!(a.allocate(Some(0)), Err(SpiError::Exhausted));
    // The least loaded worker still has room.
    for _ in 0..4 {
        assert_eq!(bring_up(&mut a, None, 1).unwrap().owner, 1);
    }
    assert_eq!(a.allocate(None), Err(SpiError::Exhausted));
    assert_eq!(a.allocate(Some(1)), Err(SpiError::Exhausted));
    assert_eq!(a.allocate(Some(2)), Err(SpiError::NoSuchWorker(2)));
    assert_eq!(
        a.allocate_static(0x1000, None),
        Err(SpiError::Exhausted),
        "a static SPI needs a slot too"
    );
    assert_eq!(a.alarms(), 0);
}

#[test]
fn least_loaded_spreads_allocations() {
    let mut a = allocator(3, 100, 0, 3);
    for _ in 0..90 {
        a.allocate(None).unwrap();
    }
    assert_eq!((a.in_use(0), a.in_use(1), a.in_use(2)), (30, 30, 30));
    assert_eq!(a.in_use(3), 0, "no such worker");
}

#[test]
fn tombstoned_spis_hold_their_slot_until_released() {
    let mut a = allocator(1, 2, 0, 4);
    let first = bring_up(&mut a, Some(0), 1).unwrap();
    let second = bring_up(&mut a, Some(0), 2).unwrap();
    retire(&mut a, first);
    assert_eq!(a.allocate(Some(0)), Err(SpiError::Exhausted));
    assert_eq!(
        a.release(SpiSlot { spi: 7, ..first }),
        Err(SpiError::Unknown(7))
    );
    release(&mut a, first);
    let third = bring_up(&mut a, Some(0), 3).unwrap();
    assert_eq!(third.slot, first.slot, "the released slot is reused");
    assert_ne!(third.spi, first.spi);
    assert_eq!(a.directory().lookup(first.spi), Lookup::Unknown);
    assert_eq!(a.state(first), None);
    assert_eq!(a.state(second), Some(SlotState::Live));
}

#[test]
fn state_changes_follow_the_lifecycle() {
    let mut a = allocator(1, 4, 0, 5);
    let s = a.allocate(Some(0)).unwrap();
    assert_eq!(a.state(s), Some(SlotState::Reserved));
    let wrong = |state| Err(SpiError::WrongState { spi: s.spi, state });
    assert_eq!(a.retire(s), wrong(SlotState::Reserved));
    a.mark_live(s).unwrap();
    assert_eq!(a.mark_live(s), wrong(SlotState::Live));
    a.retire(s).unwrap();
    assert_eq!(a.retire(s), wrong(SlotState::Tombstone));
    assert_eq!(a.mark_live(s), wrong(SlotState::Tombstone));
    a.release(s).unwrap();
    assert_eq!(a.release(s), Err(SpiError::Unknown(s.spi)));
    // An abandoned reservation is released directly.
    let r = a.allocate(Some(0)).unwrap();
    a.release(r).unwrap();
    let bad = SpiSlot { owner: 9, ..r };
    assert_eq!(a.mark_live(bad), Err(SpiError::Unknown(r.spi)));
}

#[test]
fn a_reused_slot_never_gets_its_previous_spi_even_from_a_stuck_generator() {
    // A generator that always says 0 would give the same tag every time.
    let layout = SpiLayout::new(1, 1).unwrap();
    let mut a = SpiAllocator::new(Arc::new(Directory::new(layout, 0)), || 0u32);
    let mut prev = 0;
    for _ in 0..10 {
        let s = a.allocate(Some(0)).unwrap();
        assert_ne!(s.spi, prev);
        assert!(s.spi >= 256);
        prev = s.spi;
        a.release(s).unwrap();
    }
}

#[test]
fn spis_stay_above_255_when_the_index_is_small() {
    // 8 slots: owner and slot take 3 bits, so tag 0..32 would give SPIs below 256.
    for rng in [0u32, 1, u32::MAX / 2, u32::MAX] {
        let layout = SpiLayout::new(2, 4).unwrap();
        let mut a = SpiAllocator::new(Arc::new(Directory::new(layout, 0)), move || rng);
        for _ in 0..8 {
            let s = a.allocate(None).unwrap();
            assert!(s.spi >= 256, "{:#x} from {rng:#x}", s.spi);
            assert_eq!(layout.owner_and_slot(s.spi), (s.owner, s.slot));
        }
    }
}

#[test]
fn static_spis_take_a_slot_and_are_never_issued_again() {
    let mut a = allocator(2, 8, 4, 6);
    let s = a.allocate_static(0x1000, Some(1)).unwrap();
    assert_eq!((s.spi, s.owner), (0x1000, 1));
    a.directory().install(s, 5).unwrap();
    a.mark_live(s).unwrap();
    assert_eq!(
        a.directory().lookup(0x1000),
        Lookup::Live {
            owner: 1,
            slot: s.slot,
            tunnel: 5
        }
    );
    assert_eq!(
        a.allocate_static(0x1000, None),
        Err(SpiError::InUse(0x1000))
    );
    assert_eq!(
        a.allocate_static(255, None),
        Err(SpiError::ReservedSpi(255))
    );
    assert_eq!(a.allocate_static(0, None), Err(SpiError::ReservedSpi(0)));
    // An encoded SPI in use cannot become a static one.
    let e = bring_up(&mut a, Some(0), 6).unwrap();
    assert_eq!(a.allocate_static(e.spi, None), Err(SpiError::InUse(e.spi)));
    // Capacity 4: three more fit.
    for spi in [0x2000, 0x3000, 0x4000] {
        a.allocate_static(spi, None).unwrap();
    }
    assert_eq!(
        a.allocate_static(0x5000, None),
        Err(SpiError::StaticTableFull)
    );
    assert_eq!(a.find(0x1000), Some(s));
    assert_eq!(a.find(e.spi), Some(e));
    assert_eq!(a.find(0x9000), None);
    // Releasing one makes room; its SPI becomes available again.
    release(&mut a, s);
    assert_eq!(a.directory().lookup(0x1000), Lookup::Unknown);
    assert_eq!(a.find(0x1000), None);
    let again = a.allocate_static(0x1000, None).unwrap();
    assert_eq!(again.spi, 0x1000);
    assert_eq!(a.alarms(), 0);
}

/// The first SPI an allocator seeded with `seed` hands out on worker 0.
fn first_spi(seed: u64) -> SpiSlot {
    allocator(2, 8, 4, seed).allocate(Some(0)).unwrap()
}

#[test]
fn the_allocator_skips_a_static_spi_it_would_have_drawn_without_alarm() {
    let x = first_spi(7);
    let mut a = allocator(2, 8, 4, 7);
    let st = a.allocate_static(x.spi, Some(1)).unwrap();
    a.directory().install(st, 1).unwrap();
    let s = a.allocate(Some(0)).unwrap();
    assert_eq!(s.slot, x.slot, "same slot as without the static SPI");
    assert_ne!(s.spi, x.spi, "but another tag");
    assert_eq!(a.alarms(), 0, "avoiding a known static SPI is no alarm");
}

#[test]
fn an_spi_the_directory_already_has_raises_the_alarm_and_is_not_issued() {
    let x = first_spi(7);
    let mut a = allocator(2, 8, 4, 7);
    // Someone installs x as a static SPI behind the allocator's back, in slot 3 of worker 0.
    let rogue = SpiSlot {
        spi: x.spi,
        owner: 0,
        slot: 3,
    };
    a.directory().install(rogue, 9).unwrap();
    assert_eq!(a.alarms(), 0);
    let s = a.allocate(Some(0)).unwrap();
    assert_eq!(a.alarms(), 1, "the draw of x was caught by the directory");
    assert_ne!(s.spi, x.spi);
    assert_eq!(s.slot, x.slot);
    // Slots 1 and 2 are fine; slot 3 is occupied in the directory: alarm, skipped.
    let mut slots = vec![s.slot];
    for _ in 0..6 {
        let s = a.allocate(Some(0)).unwrap();
        assert_eq!(a.directory().lookup(s.spi), Lookup::Unknown);
        slots.push(s.slot);
    }
    assert_eq!(
        a.alarms(),
        2,
        "the occupied slot was caught by the directory"
    );
    assert!(
        !slots.contains(&3),
        "slot 3 was never handed out: {slots:?}"
    );
    assert_eq!(slots.len(), 7);
    // The only free slot left is the occupied one: no SPI is issued there.
    assert_eq!(a.allocate(Some(0)), Err(SpiError::Inconsistent));
    assert!(a.alarms() > 2);
}

#[test]
fn a_static_spi_the_directory_already_has_raises_the_alarm() {
    let mut a = allocator(2, 8, 4, 8);
    let layout = a.layout();
    let spi = layout.encode(0x77, 1, 2).unwrap();
    a.directory()
        .install(
            SpiSlot {
                spi,
                owner: 1,
                slot: 2,
            },
            4,
        )
        .unwrap();
    assert_eq!(a.allocate_static(spi, None), Err(SpiError::Inconsistent));
    assert_eq!(a.alarms(), 1);
}

#[test]
fn errors_display_without_panicking() {
    let errors = [
        SpiError::Exhausted,
        SpiError::NoSuchWorker(3),
        SpiError::ReservedSpi(5),
        SpiError::InUse(0x1000),
        SpiError::StaticTableFull,
        SpiError::Unknown(0x1000),
        SpiError::WrongState {
            spi: 0x1000,
            state: SlotState::Live,
        },
        SpiError::Inconsistent,
    ];
    let texts: HashSet<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), errors.len(), "each error reads differently");
}
