//! Packet buffer pools (`rte_pktmbuf_pool_create`).

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::burst::Burst;
use crate::eal::Eal;
use crate::error::{Error, Result};
use crate::mbuf::Mbuf;

/// A pool of packet buffers. Cloning shares the pool; it is freed when the last handle goes
/// and no buffer is outstanding (a pool with outstanding buffers is leaked rather than freed
/// under them).
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<Inner>,
}

struct Inner {
    raw: NonNull<dpdk_sys::rte_mempool>,
    _eal: Eal,
}

// SAFETY: DPDK mempools (ring_mp_mc ops) are safe for concurrent use from several threads.
unsafe impl Send for Inner {}
// SAFETY: as above; every method takes `&self` and calls thread-safe mempool functions.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: the pool is valid; in_use_count is a plain query.
        let in_use = unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) };
        if in_use == 0 {
            // SAFETY: no buffer of this pool is outstanding and no handle remains.
            unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) };
        }
    }
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .finish()
    }
}

impl Mempool {
    /// Creates a pool of `n` mbufs with `data_room` bytes each (headroom included; DPDK's
    /// default is 2176 = 128 headroom + 2048) and a per-lcore cache of `cache` buffers.
    pub fn new(eal: &Eal, name: &str, n: u32, cache: u32, data_room: u16) -> Result<Mempool> {
        let c = CString::new(name)
            .map_err(|_| Error::InvalidArgument(format!("NUL byte in {name:?}")))?;
        // SAFETY: valid name string; EAL is initialised (we hold a handle).
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(c.as_ptr(), n, cache, 0, data_room, socket_any())
        };
        let raw = NonNull::new(raw).ok_or_else(|| Error::last("rte_pktmbuf_pool_create"))?;
        Ok(Mempool {
            inner: Arc::new(Inner {
                raw,
                _eal: eal.clone(),
            }),
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.inner.raw.as_ptr()
    }

    /// Allocates one mbuf (data empty, default headroom), or `None` when the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid; a non-NULL result is a fresh mbuf we now own.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.as_ptr()) };
        NonNull::new(m).map(Mbuf::from_non_null)
    }

    /// Fills `burst` up to `n` more mbufs at once; all or nothing. Returns false when the pool
    /// cannot supply them (the burst is then unchanged).
    pub fn alloc_bulk<const N: usize>(&self, burst: &mut Burst<N>, n: usize) -> bool {
        if n > burst.capacity() - burst.len() {
            return false;
        }
        let count = u32::try_from(n).expect("burst sizes fit u32");
        // SAFETY: the spare slots of the burst have room for `n` pointers; on success DPDK
        // writes `n` fresh mbufs there, which the burst then owns.
        let ret =
            unsafe { dpdk_sys::rte_pktmbuf_alloc_bulk(self.as_ptr(), burst.spare_ptr(), count) };
        if ret != 0 {
            return false;
        }
        // SAFETY: DPDK initialised exactly `n` slots after the current length.
        unsafe { burst.assume_filled(n) };
        true
    }

    /// Number of mbufs in the pool.
    pub fn capacity(&self) -> u32 {
        // SAFETY: reads the size field of a valid pool.
        unsafe { (*self.as_ptr()).size }
    }

    /// Number of free mbufs (including those in per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: plain query on a valid pool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.as_ptr()) }
    }

    /// Number of mbufs currently allocated.
    pub fn in_use(&self) -> u32 {
        // SAFETY: plain query on a valid pool.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.as_ptr()) }
    }
}

pub(crate) fn socket_any() -> i32 {
    dpdk_sys::SOCKET_ID_ANY
}
