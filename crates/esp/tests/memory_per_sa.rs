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
    AeadEngine, Backend, DEFAULT_BACKEND, InboundSa, OutboundSa, ReplayWindow, SaCounters,
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
    println!("AeadEngine {:4}", size_of::<AeadEngine>());
    println!("  RingGcm (AES-128 and -256) {:4}", size_of::<RingGcm>());
    println!(
        "  RustCryptoGcm              {:4}",
        size_of::<RustCryptoGcm>()
    );
    println!(
        "    Aes128Gcm inline         {:4}",
        size_of::<aes_gcm::Aes128Gcm>()
    );
    println!(
        "    Aes256Gcm boxed          {:4}",
        size_of::<aes_gcm::Aes256Gcm>()
    );
    println!("ReplayWindow {:4}", size_of::<ReplayWindow>());
    println!(
        "SaCounters {:4} (+{ARC_HEADER} Arc header)",
        size_of::<SaCounters>()
    );
    assert!(size_of::<OutboundSa>() <= OUTBOUND_SA_BYTES);
    assert!(size_of::<InboundSa>() <= INBOUND_SA_BYTES);
    assert_eq!(size_of::<OutboundSa>() % 64, 0, "whole cache lines");
    assert_eq!(size_of::<InboundSa>() % 64, 0, "whole cache lines");
    // The engine is as large as its largest inline variant, ring's key, not RustCrypto's.
    assert_eq!(size_of::<AeadEngine>(), size_of::<RingGcm>());
}

#[test]
fn an_sa_owns_only_its_counters_plus_large_windows_and_boxed_aes256_on_the_heap() {
    let counters = ARC_HEADER + size_of::<SaCounters>();
    println!("backend     key     window  outbound  inbound  pair  allocs  1M pairs (MiB)");
    for backend in Backend::ALL {
        for klen in [20, 36] {
            for window in [64u32, 1024, 4096, 65536] {
                let (o, i, allocs) = pair_bytes(backend, klen, window);
                let boxed_key = if backend == Backend::RustCrypto && klen == 36 {
                    size_of::<aes_gcm::Aes256Gcm>()
                } else {
                    0
                };
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
                assert_eq!(o, size_of::<OutboundSa>() + counters + boxed_key);
                assert_eq!(i, size_of::<InboundSa>() + counters + boxed_key + bitmap);
                let expect_allocs = 2 + 2 * usize::from(boxed_key > 0) + usize::from(bitmap > 0);
                assert_eq!(allocs, expect_allocs, "{backend:?} {klen} {window}");
            }
        }
    }
}

/// The figure docs/performance.md reports: the default backend, AES-128-GCM, window 64.
/// 1 KiB per pair is out of reach with a ring key schedule per direction
/// (2 × 544 bytes before any other state); this pins what the layout reaches instead.
#[test]
fn a_default_pair_with_window_64_takes_1824_bytes() {
    let (o, i, _) = pair_bytes(DEFAULT_BACKEND, 20, 64);
    assert_eq!(DEFAULT_BACKEND, Backend::Ring);
    assert!(
        2 * size_of::<RingGcm>() > 1024,
        "two ring keys alone exceed 1 KiB"
    );
    assert_eq!(o + i, 1824);
    // The default window (1024) costs the same: its bitmap is inline too.
    let (o, i, _) = pair_bytes(DEFAULT_BACKEND, 20, 1024);
    assert_eq!(o + i, 1824);
}
