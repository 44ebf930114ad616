//! Exhaustive model checking of the inbound SA directory with loom: a worker reading while the
//! control thread installs, retires, removes and reuses entries.
//!
//! Run with: `RUSTFLAGS="--cfg loom" cargo test -p espada-lookup --release --test sad_loom`
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

use std::sync::Arc;

use espada_lookup::sad::{Directory, Lookup};
use espada_lookup::spi::{SpiAllocator, SpiLayout, SpiSlot};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

/// What the control thread prepares for a tunnel before installing its SA (the tunnel record,
/// the SA in the owner's slab): written `Relaxed`, so only the directory's Release/Acquire
/// can make it visible to the worker.
struct Prepared(AtomicU64);

impl Prepared {
    fn new() -> Arc<Prepared> {
        Arc::new(Prepared(AtomicU64::new(0)))
    }
}

#[test]
fn a_worker_sees_empty_or_the_whole_published_entry() {
    loom::model(|| {
        let layout = SpiLayout::new(2, 2).unwrap();
        let dir = Arc::new(Directory::new(layout, 0));
        let prepared = Prepared::new();
        let s = SpiSlot {
            spi: layout.encode(0x5a, 1, 1).unwrap(),
            owner: 1,
            slot: 1,
        };
        let worker = {
            let (dir, prepared) = (dir.clone(), prepared.clone());
            thread::spawn(move || match dir.lookup(s.spi) {
                Lookup::Unknown => {}
                Lookup::Live {
                    owner: 1,
                    slot: 1,
                    tunnel: 7,
                } => assert_eq!(prepared.0.load(Ordering::Relaxed), 7, "published too early"),
                other => panic!("torn or wrong entry: {other:?}"),
            })
        };
        prepared.0.store(7, Ordering::Relaxed);
        dir.install(s, 7).unwrap();
        worker.join().unwrap();
    });
}

/// The order of what a worker may see of one SPI over time.
fn rank(l: Lookup) -> u8 {
    match l {
        Lookup::Live { .. } => 0,
        Lookup::Tombstone { .. } => 1,
        Lookup::Unknown => 2,
    }
}

#[test]
fn a_tombstoned_spi_never_matches_the_sa_that_reuses_its_slot() {
    loom::model(|| {
        // One slot: the new SA must reuse the old one's.
        let layout = SpiLayout::new(1, 1).unwrap();
        let dir = Arc::new(Directory::new(layout, 0));
        let mut a = SpiAllocator::new(dir.clone(), || 0x8000_0000u32);
        let old = a.allocate(Some(0)).unwrap();
        dir.install(old, 1).unwrap();
        a.mark_live(old).unwrap();
        // The new SPI is known in advance only to the test, so that the worker can ask for it
        // while the control thread is still retiring the old one. With a constant generator
        // the allocator's next tag for the slot is the old one's successor.
        let new_spi = old.spi + (1 << layout.index_bits());
        let worker = {
            let dir = dir.clone();
            thread::spawn(move || {
                let first = dir.lookup(old.spi);
                let new = dir.lookup(new_spi);
                let again = dir.lookup(old.spi);
                for l in [first, again] {
                    assert!(
                        matches!(
                            l,
                            Lookup::Live { tunnel: 1, .. }
                                | Lookup::Tombstone { tunnel: 1 }
                                | Lookup::Unknown
                        ),
                        "the old SPI matched {l:?}"
                    );
                }
                assert!(rank(first) <= rank(again), "{first:?} then {again:?}");
                match new {
                    Lookup::Unknown => {}
                    Lookup::Live { tunnel: 2, .. } => {
                        assert_eq!(again, Lookup::Unknown, "old SPI seen after the new one")
                    }
                    other => panic!("the new SPI matched {other:?}"),
                }
            })
        };
        dir.retire(old).unwrap();
        a.retire(old).unwrap();
        dir.remove(old).unwrap();
        a.release(old).unwrap();
        let new = a.allocate(Some(0)).unwrap();
        assert_eq!((new.spi, new.slot), (new_spi, old.slot));
        dir.install(new, 2).unwrap();
        a.mark_live(new).unwrap();
        assert_eq!(a.alarms(), 0);
        worker.join().unwrap();
    });
}

#[test]
fn a_static_spi_is_published_through_two_words_and_never_points_at_a_reuse() {
    loom::model(|| {
        let layout = SpiLayout::new(1, 2).unwrap();
        let dir = Arc::new(Directory::new(layout, 1));
        let prepared = Prepared::new();
        // 0x1001 names slot 1; it lives in slot 0, so it is found through the static table.
        let st = SpiSlot {
            spi: 0x1001,
            owner: 0,
            slot: 0,
        };
        let reuse = SpiSlot {
            spi: layout.encode(0x99, 0, 0).unwrap(),
            owner: 0,
            slot: 0,
        };
        let worker = {
            let (dir, prepared) = (dir.clone(), prepared.clone());
            thread::spawn(move || {
                match dir.lookup(st.spi) {
                    Lookup::Unknown => {}
                    Lookup::Live {
                        owner: 0,
                        slot: 0,
                        tunnel: 5,
                    } => assert_eq!(prepared.0.load(Ordering::Relaxed), 5, "published too early"),
                    other => panic!("static SPI matched {other:?}"),
                }
                match dir.lookup(reuse.spi) {
                    Lookup::Unknown
                    | Lookup::Live {
                        owner: 0,
                        slot: 0,
                        tunnel: 6,
                    } => {}
                    other => panic!("reused slot matched {other:?}"),
                }
            })
        };
        prepared.0.store(5, Ordering::Relaxed);
        dir.install(st, 5).unwrap();
        dir.remove(st).unwrap();
        dir.install(reuse, 6).unwrap();
        worker.join().unwrap();
    });
}
