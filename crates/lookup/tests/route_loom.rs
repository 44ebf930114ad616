//! Loom models of the route table's publication protocol, on a 6-bit family with three levels
//! of 2 bits (groups of 4 entries) so that loom can explore every interleaving:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p espada-lookup --release --test route_loom
//! ```
//!
//! * a reader racing an insert that expands two levels sees the old or the new answer, never the
//!   unfilled contents of a group (the fill is published by a Release store of the link);
//! * a reader racing a removal that unlinks a group, followed by that group's reuse for another
//!   prefix once the reader has reported a quiescent state, never sees the other prefix;
//! * with tails (as IPv6): a reader racing the link of a new tail record sees the old answer
//!   or the record's, never an unwritten record;
//! * with tails: a reader on a tail record that a second route splits into groups,
//!   followed by a covering route that changes the new copy's fallback, sees only answers of
//!   its address (the old record is frozen, not shared);
//! * with tails: a reader racing the collapse of a group into the remaining route's tail and a
//!   new split sees that route throughout.
//!
//! Exploration is exhaustive (no preemption bound); it takes well under a second. Without
//! `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

use espada_lookup::route::{Tiny, TinyTails, Writer};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};

#[test]
fn expansion_is_published_after_its_fill() {
    loom::model(|| {
        let mut writer = Writer::<Tiny>::with_pools(2, 0).unwrap();
        // 01xxxx → 1, at level 0 (no group yet).
        writer.insert(0b01_0000, 2, 1).unwrap();
        let table = writer.table();
        let reader = loom::thread::spawn(move || {
            let target = table.lookup(0b01_01_10);
            let sibling = table.lookup(0b01_01_11);
            let cousin = table.lookup(0b01_10_00);
            (target, sibling, cousin)
        });
        // 010110/6 → 2 ends at level 2: two groups are filled and linked.
        writer.insert(0b01_01_10, 6, 2).unwrap();
        let (target, sibling, cousin) = reader.join().unwrap();
        assert!(matches!(target, Some(1) | Some(2)), "{target:?}");
        assert_eq!(sibling, Some(1));
        assert_eq!(cousin, Some(1));
    });
}

#[test]
fn unlinked_group_is_reused_only_after_the_reader_was_quiescent() {
    loom::model(|| {
        let mut writer = Writer::<Tiny>::with_pools(1, 0).unwrap();
        // 0101xx/4 → 1 takes the only group (under level-0 entry 01).
        writer.insert(0b01_01_00, 4, 1).unwrap();
        let table = writer.table();
        // The QSBR: the epoch the writer announces, and the last one the reader reported.
        let announced = Arc::new(AtomicU64::new(0));
        let reported = Arc::new(AtomicU64::new(0));
        let reader = {
            let (announced, reported) = (announced.clone(), reported.clone());
            loom::thread::spawn(move || {
                loop {
                    let seen = table.lookup(0b01_01_00);
                    assert!(matches!(seen, Some(1) | None), "{seen:?}");
                    // Quiescent point: no reference into the table is held here.
                    let epoch = announced.load(Ordering::Acquire);
                    reported.store(epoch, Ordering::Release);
                    if epoch >= 1 {
                        break;
                    }
                    loom::thread::yield_now();
                }
                // After the quiescent point that saw epoch 1, the removal is visible.
                table.lookup(0b01_01_00)
            })
        };
        writer.set_epoch(0);
        writer.remove(0b01_01_00, 4).unwrap();
        assert_eq!(writer.stats().groups_retired, 1);
        writer.set_epoch(1);
        announced.store(1, Ordering::Release);
        while reported.load(Ordering::Acquire) < 1 {
            loom::thread::yield_now();
        }
        assert_eq!(writer.reclaim(1), 1);
        // The group is refilled for 1001xx/4 → 3.
        writer.insert(0b10_01_00, 4, 3).unwrap();
        assert_eq!(reader.join().unwrap(), None);
    });
}

#[test]
fn tail_is_published_after_its_record() {
    loom::model(|| {
        let mut writer = Writer::<TinyTails>::with_pools(1, 1).unwrap();
        writer.insert(0b01_0000, 2, 1).unwrap();
        let table = writer.table();
        let reader = loom::thread::spawn(move || {
            let target = table.lookup(0b01_10_10);
            let other = table.lookup(0b01_10_11);
            (target, other)
        });
        writer.insert(0b01_10_10, 6, 5).unwrap();
        let (target, other) = reader.join().unwrap();
        assert!(matches!(target, Some(1) | Some(5)), "{target:?}");
        assert_eq!(other, Some(1));
    });
}

#[test]
fn split_tail_is_copied_not_shared() {
    loom::model(|| {
        let mut writer = Writer::<TinyTails>::with_pools(2, 4).unwrap();
        writer.insert(0b01_0000, 2, 1).unwrap();
        // 010000/6 alone below level-0 entry 01: a tail whose fallback is the /2.
        writer.insert(0b01_00_00, 6, 2).unwrap();
        let table = writer.table();
        let reader = loom::thread::spawn(move || table.lookup(0b01_11_00));
        // A second route below entry 01: a group at level 1 with the first route's copy.
        writer.insert(0b01_01_00, 6, 3).unwrap();
        // 0100/4 covers the copy's entry: the copy's fallback becomes 4, the old record's not.
        writer.insert(0b01_00_00, 4, 4).unwrap();
        assert_eq!(reader.join().unwrap(), Some(1));
    });
}

#[test]
fn collapse_into_a_tail_keeps_the_remaining_route() {
    loom::model(|| {
        let mut writer = Writer::<TinyTails>::with_pools(2, 4).unwrap();
        writer.insert(0b01_0000, 2, 1).unwrap();
        writer.insert(0b01_00_00, 6, 2).unwrap();
        writer.insert(0b01_01_00, 6, 3).unwrap();
        let table = writer.table();
        let reader = loom::thread::spawn(move || {
            let kept = table.lookup(0b01_00_00);
            let other = table.lookup(0b01_11_11);
            (kept, other)
        });
        // The group at level 1 is left with one route: its tail moves up to entry 01.
        writer.remove(0b01_01_00, 6).unwrap();
        // A covering /4 splits it again.
        writer.insert(0b01_00_00, 4, 4).unwrap();
        let (kept, other) = reader.join().unwrap();
        assert_eq!(kept, Some(2));
        assert_eq!(other, Some(1));
        assert_eq!(writer.stats().groups_in_use, 1);
    });
}
