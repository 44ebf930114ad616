//! The inbound SA directory: entries, their lifecycle, refusals, the static SPI fallback,
//! memory per SA, and readers on threads while the control thread churns.
#![cfg(not(loom))]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use espada_lookup::sad::{Directory, Entry, Lookup, MAX_TUNNEL, SadError};
use espada_lookup::spi::{SpiLayout, SpiSlot, SplitMix64};

fn dir(workers: u16, slots: u32, statics: usize) -> Directory {
    Directory::new(SpiLayout::new(workers, slots).unwrap(), statics)
}

/// The encoded SPI of `tag` at `(owner, slot)`.
fn at(d: &Directory, tag: u32, owner: u16, slot: u32) -> SpiSlot {
    SpiSlot {
        spi: d.layout().encode(tag, owner, slot).unwrap(),
        owner,
        slot,
    }
}

#[test]
fn an_entry_goes_live_tombstone_and_away() {
    let d = dir(2, 16, 0);
    let s = at(&d, 0x5a5, 1, 7);
    assert_eq!(d.lookup(s.spi), Lookup::Unknown);
    assert_eq!(d.entry(1, 7), Some(Entry::Empty));
    d.install(s, 42).unwrap();
    assert_eq!(
        d.lookup(s.spi),
        Lookup::Live {
            owner: 1,
            slot: 7,
            tunnel: 42
        }
    );
    assert_eq!(
        d.entry(1, 7),
        Some(Entry::Live {
            spi: s.spi,
            tunnel: 42
        })
    );
    d.retire(s).unwrap();
    assert_eq!(d.lookup(s.spi), Lookup::Tombstone { tunnel: 42 });
    assert_eq!(d.retire(s), Err(SadError::NotLive(s.spi)));
    d.remove(s).unwrap();
    assert_eq!(d.lookup(s.spi), Lookup::Unknown);
    assert!(d.is_empty(1, 7));
    assert_eq!(d.remove(s), Err(SadError::NotFound(s.spi)));
    assert_eq!(d.retire(s), Err(SadError::NotFound(s.spi)));
}

#[test]
fn an_occupied_slot_is_refused_and_left_alone() {
    let d = dir(1, 4, 0);
    let old = at(&d, 0x100, 0, 2);
    let new = at(&d, 0x101, 0, 2);
    d.install(old, 1).unwrap();
    assert_eq!(
        d.install(new, 2),
        Err(SadError::Occupied(Entry::Live {
            spi: old.spi,
            tunnel: 1
        }))
    );
    assert_eq!(d.lookup(new.spi), Lookup::Unknown);
    assert_eq!(d.install(old, 3), Err(SadError::Duplicate(old.spi)));
    assert_eq!(
        d.lookup(old.spi),
        Lookup::Live {
            owner: 0,
            slot: 2,
            tunnel: 1
        }
    );
    // Neither a wrong SPI nor a tombstone of another SPI can be changed through this slot.
    assert_eq!(d.retire(new), Err(SadError::NotFound(new.spi)));
    assert_eq!(d.remove(new), Err(SadError::NotFound(new.spi)));
}

#[test]
fn a_reused_slot_does_not_match_the_old_spi() {
    let d = dir(2, 8, 0);
    let old = at(&d, 0x300, 0, 5);
    let new = at(&d, 0x301, 0, 5);
    d.install(old, 1).unwrap();
    d.retire(old).unwrap();
    d.remove(old).unwrap();
    d.install(new, 2).unwrap();
    assert_eq!(d.lookup(old.spi), Lookup::Unknown);
    assert_eq!(
        d.lookup(new.spi),
        Lookup::Live {
            owner: 0,
            slot: 5,
            tunnel: 2
        }
    );
}

#[test]
fn bad_changes_are_refused() {
    let d = dir(3, 10, 0);
    let s = at(&d, 0x40, 2, 9);
    let cases = [
        (
            SpiSlot { owner: 3, ..s },
            SadError::NoSuchSlot { owner: 3, slot: 9 },
        ),
        (
            SpiSlot { slot: 10, ..s },
            SadError::NoSuchSlot { owner: 2, slot: 10 },
        ),
        (SpiSlot { spi: 0, ..s }, SadError::ReservedSpi(0)),
        (SpiSlot { spi: 255, ..s }, SadError::ReservedSpi(255)),
    ];
    for (bad, err) in cases {
        assert_eq!(d.install(bad, 1), Err(err), "{bad:?}");
    }
    assert_eq!(
        d.install(s, MAX_TUNNEL + 1),
        Err(SadError::TunnelTooLarge(MAX_TUNNEL + 1))
    );
    d.install(s, MAX_TUNNEL).unwrap();
    assert_eq!(
        d.lookup(s.spi),
        Lookup::Live {
            owner: 2,
            slot: 9,
            tunnel: MAX_TUNNEL
        }
    );
    // Without static SPIs, a static placement has nowhere to go and changes nothing.
    let stray = SpiSlot {
        spi: 0x1234_5678,
        owner: 0,
        slot: 0,
    };
    assert_eq!(d.install(stray, 1), Err(SadError::StaticTableFull));
    assert!(d.is_empty(0, 0));
    assert_eq!(d.entry(3, 0), None);
    assert!(!d.is_empty(3, 0));
}

#[test]
fn spis_naming_no_real_slot_are_unknown() {
    // 3 workers: owner field value 3 exists in the SPI but no worker 3; 10 slots of 16.
    let d = dir(3, 10, 0);
    let l = d.layout();
    for slot in 0..10 {
        for owner in 0..3 {
            d.install(at(&d, 0x77, owner, slot), 1).unwrap();
        }
    }
    for tag in [0u32, 0x77, 0x3ff] {
        for index in 0..(1u32 << l.index_bits()) {
            let spi = (tag << l.index_bits()) | index;
            let (owner, slot) = l.owner_and_slot(spi);
            if owner >= 3 || slot >= 10 || tag != 0x77 {
                assert_eq!(d.lookup(spi), Lookup::Unknown, "{spi:#x}");
            } else {
                assert!(matches!(d.lookup(spi), Lookup::Live { .. }), "{spi:#x}");
            }
        }
    }
}

#[test]
fn static_spis_are_found_through_the_fallback() {
    let d = dir(2, 8, 4);
    let l = d.layout();
    // 0x1000 encodes worker 0, slot 0; put it in worker 1, slot 3 instead.
    let st = SpiSlot {
        spi: 0x1000,
        owner: 1,
        slot: 3,
    };
    assert_eq!(l.owner_and_slot(st.spi), (0, 0));
    d.install(st, 11).unwrap();
    let live = Lookup::Live {
        owner: 1,
        slot: 3,
        tunnel: 11,
    };
    assert_eq!(d.lookup(0x1000), live);
    // An encoded SA in the slot 0x1000 names does not hide it, nor is hidden by it.
    let enc = at(&d, 0x1234, 0, 0);
    d.install(enc, 12).unwrap();
    assert_eq!(d.lookup(0x1000), live);
    assert_eq!(
        d.lookup(enc.spi),
        Lookup::Live {
            owner: 0,
            slot: 0,
            tunnel: 12
        }
    );
    // An encoded SPI that names the static SPI's slot is not the static SA.
    assert_eq!(d.lookup(at(&d, 0x999, 1, 3).spi), Lookup::Unknown);
    // The same SPI cannot be installed twice, at its own slot or elsewhere.
    assert_eq!(
        d.install(SpiSlot { slot: 4, ..st }, 1),
        Err(SadError::Duplicate(0x1000))
    );
    d.retire(st).unwrap();
    assert_eq!(d.lookup(0x1000), Lookup::Tombstone { tunnel: 11 });
    d.remove(st).unwrap();
    assert_eq!(d.lookup(0x1000), Lookup::Unknown);
    assert!(d.is_empty(1, 3));
    // Queries below 256 never reach a deleted bucket's zero SPI field.
    for spi in 0..256 {
        assert_eq!(d.lookup(spi), Lookup::Unknown);
    }
}

#[test]
fn the_static_table_holds_its_capacity_through_churn() {
    let d = dir(1, 64, 8);
    let mut rng = SplitMix64::new(3);
    let mut live: Vec<SpiSlot> = Vec::new();
    // Slot 63 stays unused: every static SPI below names it, so none sits at its own slot.
    let mut free_slots: Vec<u32> = (0..63).rev().collect();
    let mut seen = HashSet::new();
    for round in 0..5_000u32 {
        if live.len() < 8 && !rng.next_u64().is_multiple_of(3) {
            let spi = 0x8000_0000 | (rng.next_u64() as u32 & 0x7fff_ff00) | 0xbf;
            if !seen.insert(spi) {
                continue;
            }
            let slot = free_slots.pop().unwrap();
            let s = SpiSlot {
                spi,
                owner: 0,
                slot,
            };
            d.install(s, round & MAX_TUNNEL).unwrap();
            live.push(s);
        } else if !live.is_empty() {
            let s = live.swap_remove((rng.next_u64() % live.len() as u64) as usize);
            d.remove(s).unwrap();
            assert_eq!(d.lookup(s.spi), Lookup::Unknown);
            free_slots.push(s.slot);
        }
        for s in &live {
            assert!(
                matches!(d.lookup(s.spi), Lookup::Live { owner: 0, slot, .. } if slot == s.slot),
                "round {round}: {s:?}"
            );
        }
    }
    // Capacity 8 gives 16 buckets: once full (with the 8 live), the 17th has no room.
    let mut extra = 0;
    while let Some(slot) = free_slots.pop() {
        let s = SpiSlot {
            spi: 0x4000_0000 | (slot << 8) | 0x3f,
            owner: 0,
            slot,
        };
        match d.install(s, 1) {
            Ok(()) => extra += 1,
            Err(e) => {
                assert_eq!(e, SadError::StaticTableFull);
                assert!(d.is_empty(0, slot), "a refused install changes nothing");
                break;
            }
        }
    }
    assert_eq!(live.len() + extra, 16);
}

#[test]
fn directory_bytes_per_sa() {
    // A million SAs on 2 workers: 2^20 words of 8 bytes.
    let d = dir(2, 500_000, 0);
    assert_eq!(d.bytes(), 8 << 20);
    let per_sa = d.bytes() as f64 / 1e6;
    assert!(per_sa < 8.4, "{per_sa} bytes per inbound SA");
    // Static capacity 64: 128 buckets more.
    assert_eq!(dir(2, 500_000, 64).bytes(), (8 << 20) + 128 * 8);
    assert_eq!(dir(1, 1, 0).bytes(), 8);
}

#[test]
fn errors_display_without_panicking() {
    let errors = [
        SadError::NoSuchSlot { owner: 1, slot: 2 },
        SadError::ReservedSpi(1),
        SadError::TunnelTooLarge(u32::MAX),
        SadError::Duplicate(0x1000),
        SadError::Occupied(Entry::Empty),
        SadError::NotFound(0x1000),
        SadError::NotLive(0x1000),
        SadError::StaticTableFull,
    ];
    let texts: HashSet<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), errors.len());
    assert!(format!("{:?}", dir(1, 4, 1)).contains("Directory"));
}

/// The tunnel every SPI of the threaded test maps to, whoever installs it.
fn tunnel_of(spi: u32) -> u32 {
    spi.wrapping_mul(0x9E37_79B9) & MAX_TUNNEL
}

#[test]
fn readers_on_threads_never_see_a_wrong_or_torn_entry() {
    let d = Arc::new(dir(2, 64, 8));
    let stop = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    // A small SPI universe: 4 tags on every slot, plus static SPIs.
    let l = d.layout();
    let universe: Vec<u32> = (0..4u32)
        .flat_map(|tag| {
            (0..2u16).flat_map(move |o| (0..64).map(move |s| l.encode(tag + 0x10, o, s).unwrap()))
        })
        .chain((0..8).map(|i| 0xF000_0000 + (i << 8)))
        .collect();
    let universe = Arc::new(universe);
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (d, stop, hits, universe) =
                (d.clone(), stop.clone(), hits.clone(), universe.clone());
            std::thread::spawn(move || {
                let mut rng = SplitMix64::new(r);
                while !stop.load(Ordering::Relaxed) {
                    let spi = universe[(rng.next_u64() % universe.len() as u64) as usize];
                    match d.lookup(spi) {
                        Lookup::Live {
                            owner,
                            slot,
                            tunnel,
                        } => {
                            assert_eq!(tunnel, tunnel_of(spi));
                            if spi < 0xF000_0000 {
                                assert_eq!(l.owner_and_slot(spi), (owner, slot));
                            }
                            hits.fetch_add(1, Ordering::Relaxed);
                        }
                        Lookup::Tombstone { tunnel } => assert_eq!(tunnel, tunnel_of(spi)),
                        Lookup::Unknown => {}
                    }
                }
            })
        })
        .collect();
    // The control thread: install, retire and remove at random, the statics on slots 56..64.
    let mut rng = SplitMix64::new(77);
    let mut state: Vec<Option<(SpiSlot, bool)>> = vec![None; 128];
    // At least 200,000 changes, and on until the readers (on 2 shared cores) have run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut changes = 0u64;
    while changes < 200_000
        || (hits.load(Ordering::Relaxed) < 10_000 && std::time::Instant::now() < deadline)
    {
        changes += 1;
        let i = (rng.next_u64() % 128) as usize;
        let (owner, slot) = ((i % 2) as u16, (i / 2) as u32);
        match state[i] {
            None => {
                let spi = if slot >= 56 {
                    0xF000_0000 + ((slot - 56) << 8)
                } else {
                    l.encode((rng.next_u64() % 4) as u32 + 0x10, owner, slot)
                        .unwrap()
                };
                let s = SpiSlot { spi, owner, slot };
                match d.install(s, tunnel_of(spi)) {
                    Ok(()) => state[i] = Some((s, true)),
                    // The same static SPI is already on the other worker.
                    Err(SadError::Duplicate(_)) => assert!(slot >= 56),
                    Err(e) => panic!("{e}"),
                }
            }
            Some((s, true)) => {
                d.retire(s).unwrap();
                state[i] = Some((s, false));
            }
            Some((s, false)) => {
                d.remove(s).unwrap();
                state[i] = None;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(
        hits.load(Ordering::Relaxed) > 0,
        "the readers saw live entries"
    );
}
