//! No allocation per packet: a counting global allocator watches many encap/decap calls.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use espada_buf::{PacketBuf, VecBuf};
use espada_esp::{Backend, KeyCache, MAX_ENCAP_HEADROOM, MAX_ENCAP_TAILROOM};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static WATCH: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if WATCH.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn encap_and_decap_do_not_allocate() {
    let mut sas = Vec::new();
    let mut inners = Vec::new();
    for backend in Backend::ALL {
        for outer_v6 in [false, true] {
            for natt in [false, true] {
                for key in [common::key(20), common::key(36)] {
                    sas.push(common::pair(0x777, outer_v6, natt, true, &key, backend));
                }
            }
        }
    }
    for len in [0usize, 1, 64, 500, 1400] {
        inners.push(common::inner(false, &vec![3; len]));
        inners.push(common::inner(true, &vec![4; len]));
    }
    let mut buf = VecBuf::with_capacity(2048, MAX_ENCAP_HEADROOM + 14);
    let mut bad = VecBuf::with_capacity(2048, 0);
    let mut ok = 0u64;
    // Two lines: the SA pairs keep evicting each other, so misses (schedules rebuilt in place) are
    // on the watched path as well as hits.
    let mut keys = KeyCache::new(2);

    WATCH.with(|w| w.set(true));
    for round in 0..50 {
        for (o, i) in sas.iter_mut() {
            for inner in &inners {
                assert!(buf.reset(MAX_ENCAP_HEADROOM + 14, inner));
                assert!(buf.tailroom() >= MAX_ENCAP_TAILROOM);
                o.encap(&mut keys, &mut buf).unwrap();
                // A forged copy first (drop path), then the real one.
                bad.reset(0, buf.data());
                let n = bad.len();
                bad.data_mut()[n - 1 - round % 16] ^= 1;
                assert!(i.decap(&mut keys, &mut bad).is_err());
                i.decap(&mut keys, &mut buf).unwrap();
                ok += 1;
            }
        }
    }
    WATCH.with(|w| w.set(false));

    assert_eq!(ok, 50 * 8 * Backend::ALL.len() as u64 * 10);
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed),
        0,
        "allocations during the packet loop"
    );
}
