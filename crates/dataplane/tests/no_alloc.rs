//! The packet path allocates nothing: a counting global allocator sees zero allocations while
//! the stages process encap, decap, handoff, drops, punts and unknown SPIs.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use espada_buf::{PacketBuf, VecBuf};
use espada_dataplane::burst;
use espada_dataplane::pipeline::{self, Verdict};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator and only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_packet_stages_do_not_allocate() {
    let mut s = site(2, true);
    let clear = ether(
        BOX_IN_MAC,
        LAN_MAC,
        0x0800,
        &ipv4_udp([192, 0, 2, 10], [203, 0, 113, 5], 1, 2, &[7; 200]),
    );
    // Pre-build the peer's ESP frames (allocation allowed here).
    let esp: Vec<VecBuf> = (0..500)
        .map(|_| {
            from_peer(
                &mut s,
                &ipv4_udp([203, 0, 113, 5], [192, 0, 2, 10], 2, 1, &[9; 300]),
            )
        })
        .collect();
    let mut bufs: Vec<VecBuf> = (0..500).map(|_| buf(&clear)).collect();
    let mut unknown = esp[0].clone();
    unknown.data_mut()[14 + 20 + 8..14 + 20 + 12].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    let mut unknowns: Vec<VecBuf> = (0..500).map(|_| unknown.clone()).collect();
    let mut esp = esp;
    // Two bursts for the outside port's burst path.
    let mut bursts: Vec<Vec<VecBuf>> = (0..2)
        .map(|_| {
            (0..burst::MAX)
                .map(|_| {
                    from_peer(
                        &mut s,
                        &ipv4_udp([203, 0, 113, 5], [192, 0, 2, 10], 2, 1, &[8; 64]),
                    )
                })
                .collect()
        })
        .collect();

    let before = ALLOCS.load(Ordering::Relaxed);
    let mut tx = 0;
    for i in 0..500 {
        // Handoff decision on worker 1, processing on the owner (worker 0).
        let v = pipeline::inside_frame(&mut bufs[i], &mut s.ctx(1));
        assert!(matches!(v, Verdict::Handoff { .. }));
        tx += usize::from(
            pipeline::clear_out(&mut bufs[i], &mut s.ctx(0), true)
                == Verdict::Tx(espada_dataplane::PortRole::Outside),
        );
        tx += usize::from(matches!(
            pipeline::outside_frame(&mut esp[i], &mut s.ctx(0)),
            Verdict::Tx(_)
        ));
        let v = pipeline::outside_frame(&mut unknowns[i], &mut s.ctx(0));
        assert!(matches!(v, Verdict::Drop(_)));
    }
    for b in bursts.iter_mut() {
        let mut v = [None; burst::MAX];
        burst::outside(b, &mut v, &mut s.ctx(0));
        tx += v
            .iter()
            .filter(|v| matches!(v, Some(Verdict::Tx(_))))
            .count();
    }
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(tx, 1000 + 2 * burst::MAX, "every packet was forwarded");
    assert_eq!(after - before, 0, "allocations on the packet path");
    assert_eq!(
        s.drain_events().len(),
        64,
        "unknown-SPI samples were emitted without allocating, up to the budget's burst (the \
         flood comes from the configured peer: one bucket)"
    );
    assert_eq!(
        s.stats
            .get(espada_dataplane::stats::Counter::SamplesSuppressed),
        436,
        "the rest of the flood was counted, not sampled"
    );
}
