//! Single-producer/single-consumer mbuf rings between lcores (`rte_ring` with SP/SC flags).

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::burst::Burst;
use crate::eal::Eal;
use crate::error::{Error, Result};
use crate::mbuf::Mbuf;
use crate::mempool::socket_any;

/// Constructor for an SP/SC ring of mbufs; see [`MbufRing::pair`].
pub struct MbufRing;

struct Inner {
    raw: NonNull<dpdk_sys::rte_ring>,
    _eal: Eal,
}

// SAFETY: the ring is only reached through one producer and one consumer handle, which is
// exactly the SP/SC contract it was created with.
unsafe impl Send for Inner {}
// SAFETY: shared only to keep it alive and to read its count, which is thread-safe.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // Free any mbufs still queued, then the ring: both handles are gone.
        let mut b: Burst<32> = Burst::new();
        loop {
            // SAFETY: no handle remains, so this thread is the only consumer.
            let n = unsafe {
                dpdk_sys::rte_ring_dequeue_burst(
                    self.raw.as_ptr(),
                    b.spare_ptr().cast(),
                    32,
                    std::ptr::null_mut(),
                )
            } as usize;
            if n == 0 {
                break;
            }
            // SAFETY: the ring held owned mbuf pointers; `n` were written.
            unsafe { b.assume_filled(n) };
            b.clear();
        }
        // SAFETY: the ring is empty and unreferenced.
        unsafe { dpdk_sys::rte_ring_free(self.raw.as_ptr()) };
    }
}

static RING_SEQ: AtomicU32 = AtomicU32::new(0);

/// The test-side ends of a ring-backed port (see [`MbufRing::port`]).
pub struct RingPortEnds {
    /// The ethdev port id.
    pub port_id: u16,
    /// One producer per RX queue: mbufs enqueued here are what `rx_burst` on that queue returns.
    pub rx_inject: Vec<RingProducer>,
    /// One consumer per TX queue: what `tx_burst` on that queue sent.
    pub tx_collect: Vec<RingConsumer>,
}

impl MbufRing {
    /// Creates an ethdev port backed by rings (`rte_eth_from_rings`), with `rx_queues` RX and
    /// `tx_queues` TX queues of `capacity` mbufs each, and returns the other end of every ring.
    /// Tests inject frames into a chosen RX queue and collect what each TX queue sent, in
    /// process, deterministically. The rings live as long as the process (the port refers to
    /// them until it is closed, which may be after the ends are dropped).
    pub fn port(
        eal: &Eal,
        name: &str,
        rx_queues: u16,
        tx_queues: u16,
        capacity: u32,
    ) -> Result<RingPortEnds> {
        let mut rx_inject = Vec::new();
        let mut rx_raw = Vec::new();
        for _ in 0..rx_queues {
            let (p, c) = MbufRing::pair(eal, "prx", capacity)?;
            rx_raw.push(c.inner.raw.as_ptr());
            std::mem::forget(c); // the port's RX queue is this ring's single consumer
            rx_inject.push(p);
        }
        let mut tx_collect = Vec::new();
        let mut tx_raw = Vec::new();
        for _ in 0..tx_queues {
            let (p, c) = MbufRing::pair(eal, "ptx", capacity)?;
            tx_raw.push(p.inner.raw.as_ptr());
            std::mem::forget(p); // the port's TX queue is this ring's single producer
            tx_collect.push(c);
        }
        let c =
            CString::new(name).map_err(|_| Error::InvalidArgument("NUL in port name".into()))?;
        // SAFETY: arrays of valid rings that are never freed (their handles were forgotten
        // above, keeping a reference alive for the process lifetime).
        let ret = unsafe {
            dpdk_sys::rte_eth_from_rings(
                c.as_ptr(),
                rx_raw.as_ptr(),
                u32::from(rx_queues),
                tx_raw.as_ptr(),
                u32::from(tx_queues),
                socket_any() as u32,
            )
        };
        if ret < 0 {
            return Err(Error::last("rte_eth_from_rings"));
        }
        Ok(RingPortEnds {
            port_id: ret as u16,
            rx_inject,
            tx_collect,
        })
    }

    /// Creates a ring holding exactly `capacity` mbufs and returns its two ends.
    pub fn pair(eal: &Eal, name_hint: &str, capacity: u32) -> Result<(RingProducer, RingConsumer)> {
        let seq = RING_SEQ.fetch_add(1, Ordering::Relaxed);
        // Memzone names are limited to 31 characters.
        let mut name = format!("r{seq}_{name_hint}");
        name.truncate(30);
        let c =
            CString::new(name).map_err(|_| Error::InvalidArgument("NUL in ring name".into()))?;
        let flags = dpdk_sys::RING_F_SP_ENQ | dpdk_sys::RING_F_SC_DEQ | dpdk_sys::RING_F_EXACT_SZ;
        // SAFETY: valid name; EAL initialised.
        let raw = unsafe { dpdk_sys::rte_ring_create(c.as_ptr(), capacity, socket_any(), flags) };
        let raw = NonNull::new(raw).ok_or_else(|| Error::last("rte_ring_create"))?;
        let inner = Arc::new(Inner {
            raw,
            _eal: eal.clone(),
        });
        Ok((
            RingProducer {
                inner: inner.clone(),
            },
            RingConsumer { inner },
        ))
    }
}

/// The enqueue end of an mbuf ring (single producer).
pub struct RingProducer {
    inner: Arc<Inner>,
}

impl RingProducer {
    /// Enqueues mbufs from the front of `burst`; what did not fit stays in the burst, at its
    /// front. Returns how many were enqueued.
    #[inline]
    pub fn enqueue_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        if burst.is_empty() {
            return 0;
        }
        // SAFETY: single producer (this handle is not Clone); the first len() slots are owned
        // mbufs, of which the ring takes the first `n`.
        let n = unsafe {
            dpdk_sys::rte_ring_enqueue_burst(
                self.inner.raw.as_ptr(),
                burst.raw_ptr().cast(),
                burst.len() as u32,
                std::ptr::null_mut(),
            )
        } as usize;
        burst.consumed_front(n);
        n
    }

    /// Enqueues one mbuf, or gives it back when the ring is full.
    pub fn enqueue(&mut self, m: Mbuf) -> std::result::Result<(), Mbuf> {
        let p = m.into_raw();
        // SAFETY: single producer; on success the ring owns the mbuf.
        let ret = unsafe { dpdk_sys::rte_ring_enqueue(self.inner.raw.as_ptr(), p.cast()) };
        if ret == 0 {
            Ok(())
        } else {
            Err(Mbuf::from_non_null(
                NonNull::new(p).expect("came from an Mbuf"),
            ))
        }
    }

    /// Number of mbufs queued.
    pub fn count(&self) -> u32 {
        // SAFETY: thread-safe query.
        unsafe { dpdk_sys::rte_ring_count(self.inner.raw.as_ptr()) }
    }
}

/// The dequeue end of an mbuf ring (single consumer).
pub struct RingConsumer {
    inner: Arc<Inner>,
}

impl RingConsumer {
    /// Dequeues into the free slots of `burst`; returns how many mbufs arrived.
    #[inline]
    pub fn dequeue_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let room = (burst.capacity() - burst.len()) as u32;
        // SAFETY: single consumer; the burst has `room` free slots for owned mbuf pointers.
        let n = unsafe {
            dpdk_sys::rte_ring_dequeue_burst(
                self.inner.raw.as_ptr(),
                burst.spare_ptr().cast(),
                room,
                std::ptr::null_mut(),
            )
        } as usize;
        // SAFETY: the ring wrote `n` owned mbuf pointers.
        unsafe { burst.assume_filled(n) };
        n
    }

    /// Number of mbufs queued.
    pub fn count(&self) -> u32 {
        // SAFETY: thread-safe query.
        unsafe { dpdk_sys::rte_ring_count(self.inner.raw.as_ptr()) }
    }
}
