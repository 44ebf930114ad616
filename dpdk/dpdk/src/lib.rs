//! The safe layer over DPDK: the only crate in espada with DPDK `unsafe`.
//!
//! - [`Eal`]: environment abstraction layer, initialised at most once per process.
//! - [`Mempool`] / [`Mbuf`]: packet buffer pools and owned buffers that free themselves on drop;
//!   `Mbuf` implements [`espada_buf::PacketBuf`] so protocol code works on it in place.
//! - [`Burst`]: a fixed-capacity array of owned mbufs, the unit of every RX/TX/ring operation.
//! - [`Port`], [`RxQueue`], [`TxQueue`]: ethdev ports with one handle per queue, so a queue can
//!   only be polled by the thread that owns its handle.
//! - [`MbufRing`]: single-producer/single-consumer mbuf handoff between lcores (`rte_ring`).
//! - [`Eal::launch`]: run a closure on a pinned EAL lcore.
//!
//! Every `unsafe` block carries a `// SAFETY:` line.

mod burst;
mod eal;
mod error;
mod lcore;
mod mbuf;
mod mempool;
mod port;
mod ring;

pub use burst::{Burst, Drain};
pub use eal::{Eal, ThreadRegistration};
pub use error::{Error, Result};
pub use lcore::{Launched, LcoreId};
pub use mbuf::Mbuf;
pub use mempool::Mempool;
pub use port::{LinkStatus, MacAddr, Port, PortConfig, PortStats, RxQueue, TxQueue};
pub use ring::{MbufRing, RingConsumer, RingPortEnds, RingProducer};

/// Reads the TSC (`rte_rdtsc`).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the time-stamp counter; no memory is touched.
    unsafe { dpdk_sys::rte_rdtsc() }
}

/// TSC ticks per second as measured by EAL (`rte_get_tsc_hz`); 0 before EAL is initialised.
pub fn tsc_hz() -> u64 {
    // SAFETY: reads a value EAL computed at init; returns 0 when not initialised.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

/// Asks the CPU to bring the cache line holding `p` into every cache level (`rte_prefetch0`;
/// here the `prefetcht0` instruction itself, so that it inlines into the packet loop). A hint:
/// it reads nothing the program can see and never faults, whatever the address; a no-op on
/// other architectures.
#[inline(always)]
pub fn prefetch0<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 has no architectural effect and cannot fault for any address (Intel
    // SDM vol. 2, PREFETCHh); the SSE it needs is part of every x86-64 CPU.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch0`] of every cache line of the `bytes` bytes from `p` (64-byte lines).
#[inline(always)]
pub fn prefetch0_lines<T: ?Sized>(p: *const T, bytes: usize) {
    let p = p.cast::<u8>();
    let skew = p as usize & 63;
    let first = p.wrapping_sub(skew);
    for off in (0..skew + bytes).step_by(64) {
        prefetch0(first.wrapping_add(off));
    }
}
