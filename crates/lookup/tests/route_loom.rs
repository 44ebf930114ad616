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
//!   prefix once the reader has reported a quiescent state, never sees the other prefix.
//!
//! Without `--cfg loom` this file compiles to nothing.
#![cfg(loom)]

use espada_lookup::route::{Tiny, Writer};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn expansion_is_published_after_its_fill() {
    model(|| {
        let mut writer = Writer::<Tiny>::new(2).unwrap();
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
    model(|| {
        let mut writer = Writer::<Tiny>::new(1).unwrap();
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
