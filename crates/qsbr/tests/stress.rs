//! Stress test: the publisher swaps 10,000 versions while two workers process "traffic".
#![cfg(not(loom))]

use espada_qsbr::{ReaderState, channel};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::ThreadId;

const VERSIONS: u64 = 10_000;
const WORDS: usize = 32;

/// Shared bookkeeping about every version.
struct Book {
    drops: Vec<AtomicU32>,
    control: ThreadId,
    dropped_elsewhere: AtomicBool,
}

/// A table version: every word equals its generation.
struct Table {
    generation: u64,
    words: Vec<u64>,
    book: Arc<Book>,
}

impl Table {
    fn new(generation: u64, book: &Arc<Book>) -> Table {
        Table {
            generation,
            words: vec![generation; WORDS],
            book: Arc::clone(book),
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        self.book.drops[self.generation as usize].fetch_add(1, Ordering::SeqCst);
        if std::thread::current().id() != self.book.control {
            self.book.dropped_elsewhere.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn ten_thousand_versions_under_traffic() {
    let book = Arc::new(Book {
        drops: (0..=VERSIONS).map(|_| AtomicU32::new(0)).collect(),
        control: std::thread::current().id(),
        dropped_elsewhere: AtomicBool::new(false),
    });
    let (mut publisher, readers) = channel(Table::new(0, &book), 2);
    let packets = Arc::new(AtomicU64::new(0));

    let workers: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(index, mut reader)| {
            let book = Arc::clone(&book);
            let packets = Arc::clone(&packets);
            std::thread::spawn(move || {
                let mut last = 0;
                let mut iterations: u64 = 0;
                let mut adoptions = 0u64;
                loop {
                    iterations += 1;
                    // Worker 1 idles (goes offline) now and then, like an adaptive poller.
                    if index == 1 && iterations.is_multiple_of(997) {
                        let idle = reader.offline();
                        std::thread::yield_now();
                        reader = idle.online();
                    }
                    let table = reader.quiescent();
                    // "Traffic": read the whole table and check its invariants.
                    assert!(
                        table.words.iter().all(|w| *w == table.generation),
                        "torn table"
                    );
                    assert_eq!(
                        book.drops[table.generation as usize].load(Ordering::SeqCst),
                        0,
                        "worker used a freed version"
                    );
                    assert!(table.generation >= last, "went back in time");
                    if table.generation != last {
                        adoptions += 1;
                    }
                    last = table.generation;
                    packets.fetch_add(1, Ordering::Relaxed);
                    if last == VERSIONS {
                        return adoptions;
                    }
                    if iterations.is_multiple_of(64) {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();

    let mut freed = 0;
    let mut max_pending = 0;
    for generation in 1..=VERSIONS {
        // Pace by progress, not by wall clock: let the workers process some traffic on every
        // version so that swaps really overlap with readers.
        let seen = packets.load(Ordering::Relaxed);
        while packets.load(Ordering::Relaxed) < seen + 2 {
            std::thread::yield_now();
        }
        assert_eq!(publisher.publish(Table::new(generation, &book)), generation);
        freed += publisher.reclaim();
        max_pending = max_pending.max(publisher.pending());
    }
    let adoptions: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    // Both workers have finished (and their readers were dropped): everything old goes.
    freed += publisher.reclaim();
    assert_eq!(publisher.pending(), 0);
    assert_eq!(publisher.protocol_violations(), 0);
    assert_eq!(freed as u64, VERSIONS);
    assert!(publisher.readers().is_empty());
    for generation in 0..VERSIONS {
        assert_eq!(
            book.drops[generation as usize].load(Ordering::SeqCst),
            1,
            "version {generation}"
        );
    }
    assert_eq!(book.drops[VERSIONS as usize].load(Ordering::SeqCst), 0);
    assert!(
        !book.dropped_elsewhere.load(Ordering::SeqCst),
        "a version was dropped on a worker"
    );
    assert!(adoptions.iter().all(|a| *a >= 1));
    assert!(packets.load(Ordering::Relaxed) >= 2);
    eprintln!(
        "stress: {} packets, adoptions {:?}, max pending {max_pending}",
        packets.load(Ordering::Relaxed),
        adoptions
    );
    drop(publisher);
    assert_eq!(book.drops[VERSIONS as usize].load(Ordering::SeqCst), 1);
}

#[test]
fn offline_workers_do_not_hold_back_reclamation_under_load() {
    let (mut publisher, mut readers) = channel(0u64, 2);
    let idle = readers.pop().unwrap().offline();
    let mut busy = readers.pop().unwrap();
    let mut freed = 0;
    for g in 1..=1_000u64 {
        publisher.publish(g);
        assert_eq!(*busy.quiescent(), g);
        freed += publisher.reclaim();
    }
    assert_eq!(freed, 1_000);
    assert_eq!(publisher.readers()[1].state, ReaderState::Offline);
    let back = idle.online();
    assert_eq!(*back.current(), 1_000);
}
