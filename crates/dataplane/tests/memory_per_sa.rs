//! Bytes per SA pair as the data plane holds it: each SA in its boxed, cache-line-aligned slot,
//! its counters, and the slab's pointer to the slot (docs/performance.md, "Bytes per SA").
//! Counted with a counting global allocator; the tunnel's policy is shared by its SAs and
//! reported apart. Run with `--nocapture` to see the figures.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::Arc;

use espada_dataplane::slab::{
    INBOUND_SLOT_BYTES, InboundSlot, OUTBOUND_SLOT_BYTES, OutboundSlot, Policy,
};
use espada_esp::{Backend, Direction, InboundSa, OutboundSa, SaConfig};

struct Counting;

thread_local! {
    static WATCH: Cell<bool> = const { Cell::new(false) };
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn note(bytes: isize) {
    if WATCH.with(Cell::get) {
        LIVE_BYTES.with(|c| c.set(c.get() + bytes));
    }
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Builds a value and returns it with the heap bytes it still owns.
fn owned_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE_BYTES.with(|c| c.set(0));
    WATCH.with(|w| w.set(true));
    let v = f();
    WATCH.with(|w| w.set(false));
    (v, LIVE_BYTES.with(Cell::get) as usize)
}

/// Heap bytes of one pair's slots (SA + counters each) with `backend`, keying material of
/// `klen` bytes and replay window `window`.
fn pair_bytes(backend: Backend, klen: usize, window: u32) -> usize {
    let key = vec![0x42u8; klen];
    let (a, b): (IpAddr, IpAddr) = (
        "192.0.2.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
    );
    let policy = Arc::new(Policy {
        local_ts: vec![],
        remote_ts: vec![],
    });
    let mut i = SaConfig::new(0x1000, Direction::Inbound, b, a);
    i.replay_window = window;
    let o = SaConfig::new(0x1000, Direction::Outbound, a, b);
    let (rx, ih) = owned_heap(|| {
        InboundSlot::new(InboundSa::new(i, &key, backend).unwrap(), 0, policy.clone())
    });
    let (tx, oh) = owned_heap(|| {
        OutboundSlot::new(OutboundSa::new(o, &key, backend).unwrap(), 0, policy, b, 0)
    });
    drop((rx, tx));
    ih + oh
}

#[test]
fn a_pair_in_the_data_plane_takes_under_1_kib() {
    let pointers = 2 * size_of::<Option<Box<InboundSlot>>>();
    println!(
        "InboundSlot {} (limit {INBOUND_SLOT_BYTES}), OutboundSlot {} (limit {OUTBOUND_SLOT_BYTES}), slab pointers {pointers}",
        size_of::<InboundSlot>(),
        size_of::<OutboundSlot>()
    );
    assert_eq!(size_of::<InboundSlot>() % 64, 0, "whole cache lines");
    assert_eq!(size_of::<OutboundSlot>() % 64, 0, "whole cache lines");
    assert_eq!(
        pointers, 16,
        "a slot pointer is one word (None is the null niche)"
    );
    for backend in Backend::ALL {
        for klen in [20, 36] {
            for window in [64, 1024, 4096] {
                let pair = pair_bytes(backend, klen, window) + pointers;
                println!(
                    "{backend:?} AES-{} window {window}: {pair} bytes per pair",
                    (klen - 4) * 8
                );
                // The bitmap of windows above 1024 is boxed: W/8 bytes.
                let bitmap = if window > 1024 {
                    window as usize / 8
                } else {
                    0
                };
                assert_eq!(pair, 944 + bitmap, "{backend:?} {klen} {window}");
            }
        }
    }
    assert!(pair_bytes(Backend::auto(), 20, 1024) + pointers <= 1024);
}
