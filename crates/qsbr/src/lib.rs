//! RCU-style publication of immutable table versions with QSBR reclamation.
//!
//! The control thread owns a [`Publisher`]; every worker owns a [`Reader`]. The publisher
//! publishes a new immutable version of a table with [`Publisher::publish`]; each worker calls
//! [`Reader::quiescent`] at the top of its poll loop, which both *adopts* the newest version and
//! reports a quiescent state (the worker holds no reference into any older version). Old versions
//! are kept on the publisher's retire list and freed by [`Publisher::reclaim`] only once every
//! online reader has passed a quiescent state after the version was replaced — the shape of
//! DPDK's `rte_rcu_qsbr` with a defer queue.
//!
//! Guarantees:
//! - **Workers never wait for the control thread.** [`Reader::quiescent`] costs one Acquire load
//!   in the common case. When a new version exists it takes the slot with `try_lock`; if the slot
//!   is busy it keeps its current version and retries on the next iteration.
//! - **Reclamation runs on the publisher's thread.** A reader only ever drops a clone of a
//!   version that the publisher still holds (in the slot or on the retire list), so the final
//!   drop of a version — possibly a table with a million entries — happens in
//!   [`Publisher::reclaim`] (or when the publisher itself is dropped), never on a worker.
//!   As a second line of defence, `reclaim` only frees a version when it holds the last
//!   reference (`Arc::try_unwrap`); otherwise the version stays retired.
//! - **Idle workers do not block reclamation.** [`Reader::offline`] releases the worker's
//!   version and turns the reader into an [`OfflineReader`], which the publisher ignores.
//!   [`OfflineReader::online`] adopts the newest version. Going online is the one operation that
//!   may block, and only for the publisher's O(1) pointer-swap critical section (no allocation,
//!   no drop and no user code runs under the slot lock): an idle worker needs *a* version to
//!   come back, and the only safe one to take is the newest.
//!
//! Everything is safe Rust: the crate forbids `unsafe`.
//!
//! # Model checking
//!
//! The protocol is checked exhaustively with [loom](https://docs.rs/loom) (the `sync` shim below
//! swaps std's `Arc`, `Mutex` and `AtomicU64` for loom's under `cfg(loom)`):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p espada-qsbr --release --test loom
//! ```
//!
//! Without `--cfg loom` that test file compiles to nothing and `cargo test -p espada-qsbr` runs
//! the unit tests and the 10,000-version stress test on std threads.
//!
//! # Example
//!
//! ```
//! let (mut publisher, mut readers) = espada_qsbr::channel(vec![0u32; 4], 1);
//! let mut reader = readers.pop().unwrap();
//! std::thread::scope(|s| {
//!     s.spawn(move || {
//!         // Worker loop: adopt and report quiescence at the top of each iteration.
//!         while reader.quiescent()[0] != 1 {
//!             std::hint::spin_loop();
//!         }
//!     });
//!     publisher.publish(vec![1u32; 4]);
//! });
//! assert_eq!(publisher.reclaim(), 1); // the worker has gone: version 0 is freed here
//! assert_eq!(publisher.pending(), 0);
//! ```

#![forbid(unsafe_code)]

use crossbeam_utils::CachePadded;
use std::collections::VecDeque;
use std::fmt;
use std::sync::PoisonError;

mod sync {
    #[cfg(loom)]
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
    #[cfg(loom)]
    pub(crate) use loom::sync::{Arc, Mutex};
    #[cfg(not(loom))]
    pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
    #[cfg(not(loom))]
    pub(crate) use std::sync::{Arc, Mutex};
}

use sync::{Arc, AtomicU64, Mutex, Ordering};

/// Reader state value: the reader is offline and holds no version.
const OFFLINE: u64 = u64::MAX;
/// Reader state value: the reader has been dropped; the publisher forgets it.
const DETACHED: u64 = u64::MAX - 1;

/// State shared by the publisher and its readers.
struct Shared<T> {
    /// Generation of the version in `slot`; bumped (under the slot lock) on every publish.
    generation: CachePadded<AtomicU64>,
    /// The newest version. Held only for an `Arc` clone or a pointer swap.
    slot: Mutex<Arc<T>>,
}

impl<T> Shared<T> {
    /// Clones the newest version together with its generation (consistent pair).
    fn load_blocking(&self) -> (u64, Arc<T>) {
        let guard = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = self.generation.load(Ordering::Relaxed);
        (generation, Arc::clone(&guard))
    }

    /// Like [`Shared::load_blocking`] but gives up if the slot is busy.
    fn try_load(&self) -> Option<(u64, Arc<T>)> {
        let guard = match self.slot.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let generation = self.generation.load(Ordering::Relaxed);
        Some((generation, Arc::clone(&guard)))
    }
}

/// One reader's published state: the generation it has adopted, or `OFFLINE` / `DETACHED`.
/// Cache-padded: each worker writes its own line on every adoption.
struct ReaderCell {
    id: usize,
    adopted: CachePadded<AtomicU64>,
}

/// Owns a reader's cell; dropping it marks the reader `DETACHED`.
///
/// It is the *last* field of [`Reader`] and [`OfflineReader`], so it is dropped after the
/// reader's version clone: the publisher never sees `DETACHED` while that clone is alive.
struct CellHandle(Arc<ReaderCell>);

impl Drop for CellHandle {
    fn drop(&mut self) {
        self.0.adopted.store(DETACHED, Ordering::Release);
    }
}

/// Control-thread side: publishes versions and reclaims retired ones. There is exactly one
/// publisher per channel (not `Clone`); it is `Send` so it can be moved to the control thread.
pub struct Publisher<T> {
    shared: Arc<Shared<T>>,
    /// The publisher's own reference to the newest version.
    current: Arc<T>,
    /// Generation of `current`.
    generation: u64,
    /// Replaced versions, oldest first, tagged with the generation that replaced them.
    retired: VecDeque<(u64, Arc<T>)>,
    readers: Vec<Arc<ReaderCell>>,
    next_reader_id: usize,
    /// Times `reclaim` found a version it judged quiescent still referenced elsewhere.
    violations: u64,
}

/// Worker side: adopts new versions at the top of the worker loop and reports quiescent states.
///
/// One per worker; `Send` (when `T: Send + Sync`) but not `Clone`.
pub struct Reader<T> {
    /// The adopted version. Declared first: dropped before `cell` marks the reader detached.
    local: Arc<T>,
    /// Generation of `local` (as read under the slot lock).
    seen: u64,
    shared: Arc<Shared<T>>,
    cell: CellHandle,
}

/// A reader that is offline (idle): it holds no version and does not block reclamation.
pub struct OfflineReader<T> {
    shared: Arc<Shared<T>>,
    cell: CellHandle,
}

/// What the publisher knows about one reader (for `show workers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderInfo {
    /// Registration index of the reader (0, 1, … in `register_reader` order).
    pub id: usize,
    /// The reader's state.
    pub state: ReaderState,
}

/// State of a reader as seen by the publisher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderState {
    /// Online, holding the version of this generation (or a newer one).
    Online {
        /// Last generation the reader reported as adopted.
        adopted: u64,
    },
    /// Offline: holds nothing, ignored by reclamation.
    Offline,
}

/// Creates a publisher holding `initial` (generation 0) and `readers` registered readers.
///
/// More readers can be added later with [`Publisher::register_reader`].
pub fn channel<T>(initial: T, readers: usize) -> (Publisher<T>, Vec<Reader<T>>) {
    let mut publisher = Publisher::new(initial);
    let readers = (0..readers).map(|_| publisher.register_reader()).collect();
    (publisher, readers)
}

impl<T> Publisher<T> {
    /// Creates a publisher whose current version is `initial`, at generation 0.
    pub fn new(initial: T) -> Self {
        let current = Arc::new(initial);
        let shared = Arc::new(Shared {
            generation: CachePadded::new(AtomicU64::new(0)),
            slot: Mutex::new(Arc::clone(&current)),
        });
        Publisher {
            shared,
            current,
            generation: 0,
            retired: VecDeque::new(),
            readers: Vec::new(),
            next_reader_id: 0,
            violations: 0,
        }
    }

    /// Registers a new reader, online and holding the current version.
    pub fn register_reader(&mut self) -> Reader<T> {
        let cell = Arc::new(ReaderCell {
            id: self.next_reader_id,
            adopted: CachePadded::new(AtomicU64::new(self.generation)),
        });
        self.next_reader_id += 1;
        self.readers.push(Arc::clone(&cell));
        Reader {
            local: Arc::clone(&self.current),
            seen: self.generation,
            shared: Arc::clone(&self.shared),
            cell: CellHandle(cell),
        }
    }

    /// Publishes `new` as the newest version and returns its generation.
    ///
    /// The previous version goes on the retire list; it is freed by a later
    /// [`Publisher::reclaim`] once every online reader has adopted a newer one.
    pub fn publish(&mut self, new: T) -> u64 {
        let new = Arc::new(new);
        let replaced = {
            let mut slot = self
                .shared
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let replaced = std::mem::replace(&mut *slot, Arc::clone(&new));
            // Bumped under the lock so that readers read a consistent (generation, version).
            self.generation = self.shared.generation.fetch_add(1, Ordering::Release) + 1;
            replaced
        };
        self.retired.push_back((self.generation, replaced));
        // Drops the publisher's second reference to the old version (never the last one).
        self.current = new;
        self.generation
    }

    /// Frees every retired version that no reader can still hold and returns how many were
    /// freed. The drops run here, on the caller's (control) thread.
    pub fn reclaim(&mut self) -> usize {
        let mut oldest_online = u64::MAX;
        self.readers.retain(|cell| {
            match cell.adopted.load(Ordering::Acquire) {
                DETACHED => return false,
                OFFLINE => {}
                adopted => oldest_online = oldest_online.min(adopted),
            }
            true
        });
        let mut freed = 0;
        let mut kept = VecDeque::new();
        while let Some((tag, _)) = self.retired.front() {
            if *tag > oldest_online {
                break;
            }
            let (tag, version) = self.retired.pop_front().expect("front exists");
            match Arc::try_unwrap(version) {
                Ok(value) => {
                    drop(value);
                    freed += 1;
                }
                // Unreachable if the protocol holds; never let a worker do the final drop.
                Err(still_shared) => {
                    self.violations += 1;
                    kept.push_back((tag, still_shared));
                }
            }
        }
        while let Some(entry) = kept.pop_back() {
            self.retired.push_front(entry);
        }
        freed
    }

    /// How many times [`Publisher::reclaim`] judged a retired version free of readers but found
    /// it still referenced (it then kept the version instead of dropping it). Always 0 unless
    /// the QSBR protocol is broken; exported as a canary for tests and metrics.
    pub fn protocol_violations(&self) -> u64 {
        self.violations
    }

    /// The newest published version.
    pub fn current(&self) -> &T {
        &self.current
    }

    /// Generation of the newest version (0 for the initial one, +1 per publish).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of retired versions not yet freed.
    pub fn pending(&self) -> usize {
        self.retired.len()
    }

    /// The state of every registered reader that has not been dropped, in registration order.
    pub fn readers(&self) -> Vec<ReaderInfo> {
        self.readers
            .iter()
            .filter_map(|cell| {
                let state = match cell.adopted.load(Ordering::Acquire) {
                    DETACHED => return None,
                    OFFLINE => ReaderState::Offline,
                    adopted => ReaderState::Online { adopted },
                };
                Some(ReaderInfo { id: cell.id, state })
            })
            .collect()
    }
}

impl<T> fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("generation", &self.generation)
            .field("pending", &self.retired.len())
            .field("readers", &self.readers())
            .finish_non_exhaustive()
    }
}

impl<T> Reader<T> {
    /// Reports a quiescent state and adopts the newest version if there is one; returns the
    /// version to use for this loop iteration.
    ///
    /// Call it at the top of the worker loop, holding no reference from the previous iteration
    /// (the borrow checker enforces this). Common case: one Acquire load. Never blocks: if the
    /// publisher is swapping the slot right now, the current version is kept and the adoption
    /// is retried on the next call.
    #[inline]
    pub fn quiescent(&mut self) -> &T {
        if self.shared.generation.load(Ordering::Acquire) != self.seen {
            self.adopt();
        }
        &self.local
    }

    #[cold]
    fn adopt(&mut self) {
        if let Some((generation, version)) = self.shared.try_load() {
            // Drops our clone of the old version: the publisher still holds it (slot or retire
            // list), so this is never the last reference.
            self.local = version;
            self.seen = generation;
            // Release: the drop above happens-before the publisher's Acquire load of this cell.
            self.cell.0.adopted.store(generation, Ordering::Release);
        }
    }

    /// The version adopted by the last [`Reader::quiescent`] call, without adopting.
    pub fn current(&self) -> &T {
        &self.local
    }

    /// Generation of the version this reader holds.
    pub fn generation(&self) -> u64 {
        self.seen
    }

    /// Goes offline (e.g. an idle worker about to sleep): releases the version and stops
    /// blocking reclamation.
    pub fn offline(self) -> OfflineReader<T> {
        let Reader {
            local,
            seen: _,
            shared,
            cell,
        } = self;
        drop(local);
        // Release: the drop above happens-before the publisher seeing OFFLINE.
        cell.0.adopted.store(OFFLINE, Ordering::Release);
        OfflineReader { shared, cell }
    }
}

impl<T> fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("id", &self.cell.0.id)
            .field("generation", &self.seen)
            .finish_non_exhaustive()
    }
}

impl<T> OfflineReader<T> {
    /// Comes back online holding the newest version.
    ///
    /// May block for the duration of the publisher's pointer swap (a few instructions), never
    /// for reclamation or table building.
    pub fn online(self) -> Reader<T> {
        let OfflineReader { shared, cell } = self;
        // Announce first, with a generation no newer than the version we are about to take.
        // If the publisher's `reclaim` read OFFLINE instead, our slot lock below comes after the
        // publish that retired its versions (mutex order plus coherence), so we cannot take one.
        let announced = shared.generation.load(Ordering::Acquire);
        cell.0.adopted.store(announced, Ordering::SeqCst);
        let (generation, local) = shared.load_blocking();
        cell.0.adopted.store(generation, Ordering::Release);
        Reader {
            local,
            seen: generation,
            shared,
            cell,
        }
    }
}

impl<T> fmt::Debug for OfflineReader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OfflineReader")
            .field("id", &self.cell.0.id)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts drops through a shared counter.
    struct Counted(u64, std::sync::Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn reader_adopts_and_old_version_waits_for_it() {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let (mut p, mut rs) = channel(Counted(0, drops.clone()), 2);
        assert_eq!(p.publish(Counted(1, drops.clone())), 1);
        assert_eq!(p.pending(), 1);
        // Neither reader has passed a quiescent state: nothing can be freed.
        assert_eq!(p.reclaim(), 0);
        assert_eq!(rs[0].quiescent().0, 1);
        assert_eq!(p.reclaim(), 0, "reader 1 still holds version 0");
        assert_eq!(rs[1].current().0, 0);
        assert_eq!(rs[1].quiescent().0, 1);
        assert_eq!(p.reclaim(), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(p.pending(), 0);
        assert_eq!(
            p.readers(),
            vec![
                ReaderInfo {
                    id: 0,
                    state: ReaderState::Online { adopted: 1 }
                },
                ReaderInfo {
                    id: 1,
                    state: ReaderState::Online { adopted: 1 }
                },
            ]
        );
    }

    #[test]
    fn offline_reader_does_not_block_and_adopts_newest_on_online() {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let (mut p, mut rs) = channel(Counted(0, drops.clone()), 2);
        let idle = rs.pop().unwrap().offline();
        let mut busy = rs.pop().unwrap();
        for g in 1..=5 {
            p.publish(Counted(g, drops.clone()));
            assert_eq!(busy.quiescent().0, g);
            assert_eq!(
                p.reclaim(),
                1,
                "offline reader must not block generation {g}"
            );
        }
        assert_eq!(drops.load(Ordering::SeqCst), 5);
        assert_eq!(p.readers()[1].state, ReaderState::Offline);
        let mut back = idle.online();
        assert_eq!(back.current().0, 5);
        assert_eq!(back.generation(), 5);
        assert_eq!(p.readers()[1].state, ReaderState::Online { adopted: 5 });
        p.publish(Counted(6, drops.clone()));
        busy.quiescent();
        assert_eq!(
            p.reclaim(),
            0,
            "the reader that came back now blocks version 5"
        );
        assert_eq!(back.quiescent().0, 6);
        assert_eq!(p.reclaim(), 1);
    }

    #[test]
    fn dropped_reader_is_forgotten() {
        let (mut p, rs) = channel(0u64, 3);
        drop(rs);
        p.publish(1);
        p.publish(2);
        assert_eq!(p.reclaim(), 2);
        assert!(p.readers().is_empty());
        assert_eq!(*p.current(), 2);
    }

    #[test]
    fn busy_slot_keeps_old_version_and_retries() {
        let (mut p, mut rs) = channel(0u64, 1);
        p.publish(1);
        let r = &mut rs[0];
        {
            // Simulate the publisher being inside its critical section.
            let shared = Arc::clone(&r.shared);
            let _held = shared.slot.lock().unwrap();
            assert_eq!(*r.quiescent(), 0, "a busy slot must not block the reader");
        }
        assert_eq!(p.reclaim(), 0);
        assert_eq!(*r.quiescent(), 1);
        assert_eq!(p.reclaim(), 1);
    }

    #[test]
    fn retired_drop_runs_on_publisher_thread() {
        use std::sync::Mutex as StdMutex;
        use std::thread::ThreadId;
        struct Tracked(u64, std::sync::Arc<StdMutex<Vec<(u64, ThreadId)>>>);
        impl Drop for Tracked {
            fn drop(&mut self) {
                self.1
                    .lock()
                    .unwrap()
                    .push((self.0, std::thread::current().id()));
            }
        }
        let log = std::sync::Arc::new(StdMutex::new(Vec::new()));
        let (p, mut rs) = channel(Tracked(0, log.clone()), 1);
        let mut reader = rs.pop().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        // The publisher lives on its own "control" thread.
        let log2 = log.clone();
        let control = std::thread::spawn(move || {
            let mut p = p;
            for g in 1..=3 {
                p.publish(Tracked(g, log2.clone()));
                tx.send(g).unwrap();
            }
            done_rx.recv().unwrap();
            let freed = p.reclaim();
            (std::thread::current().id(), freed, p)
        });
        let worker = std::thread::spawn(move || {
            while reader.quiescent().0 != 3 {
                std::thread::yield_now();
            }
            let _ = rx.recv();
            done_tx.send(()).unwrap();
            // Dropping the reader here must not free anything.
            drop(reader);
            std::thread::current().id()
        });
        let worker_id = worker.join().unwrap();
        let (control_id, freed, p) = control.join().unwrap();
        assert_eq!(freed, 3);
        let entries = log.lock().unwrap().clone();
        assert_eq!(
            entries.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(
            entries
                .iter()
                .all(|e| e.1 == control_id && e.1 != worker_id)
        );
        drop(p);
        assert_eq!(log.lock().unwrap().len(), 4);
    }

    #[test]
    fn reader_is_send() {
        fn assert_send<S: Send>() {}
        assert_send::<Reader<Vec<u64>>>();
        assert_send::<OfflineReader<Vec<u64>>>();
        assert_send::<Publisher<Vec<u64>>>();
    }
}
