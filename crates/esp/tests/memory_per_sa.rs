//! Bytes per SA pair: the size of the runtime SAs plus every heap byte they own, counted with a
//! counting global allocator (docs/performance.md, "Bytes per SA"; docs/architecture.md,
//! "Memory per SA"). Run with `--nocapture` to see the table.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::size_of;

use espada_esp::aead::{RingGcm, RustCryptoGcm};
use espada_esp::replay::INLINE_WINDOW;
use espada_esp::sa::{INBOUND_SA_BYTES, OUTBOUND_SA_BYTES};
use espada_esp::{
    AeadEngine, Backend, InboundSa, KeyCache, OutboundSa, ReplayWindow, SaCounters, SaKey,
};

struct Counting;

thread_local! {
    /// Heap bytes and allocations made and freed by this thread while `WATCH` is set (tests
    /// run on parallel threads; each counts only its own).
    static WATCH: Cell<bool> = const { Cell::new(false) };
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static LIVE_ALLOCS: Cell<isize> = const { Cell::new(0) };
}

fn note(bytes: isize, allocs: isize) {
    if WATCH.with(Cell::get) {
        LIVE_BYTES.with(|c| c.set(c.get() + bytes));
        LIVE_ALLOCS.with(|c| c.set(c.get() + allocs));
    }
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize, 1);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize, 1);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize, 0);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize), -1);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Builds a value and returns it with the heap bytes and allocations it still owns (temporary
/// allocations made while building, such as the zeroizing key copy, are freed and not counted).
fn owned_heap<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LIVE_BYTES.with(|c| c.set(0));
    LIVE_ALLOCS.with(|c| c.set(0));
    WATCH.with(|w| w.set(true));
    let v = f();
    WATCH.with(|w| w.set(false));
    let bytes = LIVE_BYTES.with(Cell::get);
    let allocs = LIVE_ALLOCS.with(Cell::get);
    (v, bytes as usize, allocs as usize)
}

/// The `Arc` header (strong and weak counts) in front of the counters.
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// Bytes of one SA pair built with `backend`, keying material of `klen` bytes and `window`:
/// (outbound struct + heap, inbound struct + heap, live allocations of the pair).
fn pair_bytes(backend: Backend, klen: usize, window: u32) -> (usize, usize, usize) {
    let key = common::key(klen);
    let (o, mut i) = common::configs(0x1000, false, false, true);
    i.replay_window = window;
    let (tx, oh, oa) = owned_heap(|| OutboundSa::new(o, &key, backend).unwrap());
    let (rx, ih, ia) = owned_heap(|| InboundSa::new(i, &key, backend).unwrap());
    assert_eq!(rx.replay().is_inline(), window <= INLINE_WINDOW);
    drop((tx, rx));
    (
        size_of::<OutboundSa>() + oh,
        size_of::<InboundSa>() + ih,
        oa + ia,
    )
}

#[test]
fn sa_sizes_stay_within_the_compile_time_limits() {
    println!(
        "OutboundSa {:4} (limit {OUTBOUND_SA_BYTES})",
        size_of::<OutboundSa>()
    );
    println!(
        "InboundSa  {:4} (limit {INBOUND_SA_BYTES})",
        size_of::<InboundSa>()
    );
    println!("  SaKey      {:4} (raw key, in the SA)", size_of::<SaKey>());
    println!("ReplayWindow {:4}", size_of::<ReplayWindow>());
    println!(
        "SaCounters {:4} (+{ARC_HEADER} Arc header)",
        size_of::<SaCounters>()
    );
    println!("key schedules, in a worker's KeyCache, not in the SA:");
    println!("  AeadEngine {:4}", size_of::<AeadEngine>());
    println!("  RingGcm (AES-128 and -256) {:4}", size_of::<RingGcm>());
    println!(
        "  RustCryptoGcm              {:4} (Aes128Gcm {}, Aes256Gcm {})",
        size_of::<RustCryptoGcm>(),
        size_of::<aes_gcm::Aes128Gcm>(),
        size_of::<aes_gcm::Aes256Gcm>()
    );
    assert!(size_of::<OutboundSa>() <= OUTBOUND_SA_BYTES);
    assert!(size_of::<InboundSa>() <= INBOUND_SA_BYTES);
    // No key schedule in an SA: both directions together are smaller than one ring schedule
    // plus the counters of one SA.
    assert!(size_of::<OutboundSa>() + size_of::<InboundSa>() < size_of::<RingGcm>());
}

#[test]
fn an_sa_owns_only_its_counters_plus_large_windows_on_the_heap() {
    let counters = ARC_HEADER + size_of::<SaCounters>();
    println!("backend     key     window  outbound  inbound  pair  allocs  1M pairs (MiB)");
    for backend in Backend::ALL {
        for klen in [20, 36] {
            for window in [64u32, 1024, 4096, 65536] {
                let (o, i, allocs) = pair_bytes(backend, klen, window);
                let bitmap = if window > INLINE_WINDOW {
                    window.next_power_of_two() as usize / 8
                } else {
                    0
                };
                println!(
                    "{:<11} AES-{} {window:6}  {o:8}  {i:7}  {:4}  {allocs:6}  {:.0}",
                    format!("{backend:?}"),
                    (klen - 4) * 8,
                    o + i,
                    (o + i) as f64 * 1e6 / f64::from(1 << 20),
                );
                assert_eq!(o, size_of::<OutboundSa>() + counters);
                assert_eq!(i, size_of::<InboundSa>() + counters + bitmap);
                assert_eq!(
                    allocs,
                    2 + usize::from(bitmap > 0),
                    "{backend:?} {klen} {window}"
                );
            }
        }
    }
}

/// The figure docs/performance.md reports for the esp crate's part of a pair: the default
/// backend, AES-128-GCM, windows 64 and 1024 (the default; its bitmap is inline too). Backend
/// and key length do not change it: the SA holds the raw key, the schedule is the worker's.
#[test]
fn a_default_pair_takes_808_bytes_with_any_key_and_backend() {
    for backend in Backend::ALL {
        for klen in [20, 36] {
            for window in [64, 1024] {
                let (o, i, _) = pair_bytes(backend, klen, window);
                assert_eq!(o + i, 808, "{backend:?} {klen} {window}");
            }
        }
    }
}

/// A worker's key cache: its lines are allocated once, when it is built; using it allocates
/// nothing (crates/esp/tests/no_alloc.rs checks the packet path as a whole).
#[test]
fn the_default_key_cache_is_one_allocation_of_about_18_mib() {
    let (cache, bytes, allocs) =
        owned_heap(|| KeyCache::new(espada_esp::keys::DEFAULT_CACHE_LINES));
    println!(
        "KeyCache: {} lines, {bytes} bytes ({:.1} MiB), {allocs} allocation",
        cache.lines(),
        bytes as f64 / f64::from(1 << 20)
    );
    assert_eq!(allocs, 1);
    // 1,152 bytes a line (intel-ipsec-mb's schedule, 64-byte aligned) and the sets' LRU byte.
    assert!(bytes <= cache.lines() * 1184, "{bytes}");
}
