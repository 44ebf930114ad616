//! Owned packet buffers (`rte_mbuf`), freed on drop, usable as an [`espada_buf::PacketBuf`].
//!
//! Espada configures its ports without scatter, so every mbuf it handles is a single segment:
//! `data()` is that segment, and length changes keep `pkt_len == data_len`.

use std::ptr::NonNull;

use espada_buf::PacketBuf;

/// One owned mbuf. Dropping it returns it to its pool (`rte_pktmbuf_free`).
#[repr(transparent)]
pub struct Mbuf(NonNull<dpdk_sys::rte_mbuf>);

// SAFETY: an mbuf is exclusively owned by this handle and may be freed from any thread.
unsafe impl Send for Mbuf {}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf; it is freed exactly once.
        unsafe { dpdk_sys::rte_pktmbuf_free(self.0.as_ptr()) };
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len())
            .field("headroom", &self.headroom())
            .field("tailroom", &self.tailroom())
            .finish()
    }
}

impl Mbuf {
    pub(crate) fn from_non_null(p: NonNull<dpdk_sys::rte_mbuf>) -> Self {
        Mbuf(p)
    }

    /// Gives up ownership and returns the raw pointer (for FFI that takes ownership).
    pub(crate) fn into_raw(self) -> *mut dpdk_sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    #[inline]
    fn m(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf for the lifetime of `self`.
        unsafe { self.0.as_ref() }
    }

    #[inline]
    fn m_mut(&mut self) -> &mut dpdk_sys::rte_mbuf {
        // SAFETY: we own a valid mbuf exclusively for the lifetime of `&mut self`.
        unsafe { self.0.as_mut() }
    }

    /// Prefetches the mbuf's first cache line (buffer address, data offset and lengths): no
    /// load, the pointer is known.
    #[inline(always)]
    pub fn prefetch_header(&self) {
        crate::prefetch0(self.0.as_ptr());
    }

    /// Prefetches the first cache line of the packet data (reads the header: prefetch that a
    /// few packets earlier).
    #[inline(always)]
    pub fn prefetch_data(&self) {
        let m = self.m();
        crate::prefetch0(
            m.buf_addr
                .cast::<u8>()
                .wrapping_add(usize::from(m.data_off)),
        );
    }

    /// The port the mbuf was received on (65535 for net_ring and locally allocated mbufs).
    pub fn port(&self) -> u16 {
        self.m().port
    }

    /// The RSS hash the NIC computed (valid when the driver set it).
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: reading a plain u32 from a union of PODs is always defined.
        unsafe { self.m().__bindgen_anon_2.hash.rss }
    }

    /// Number of segments (always 1 for mbufs espada builds or receives).
    pub fn segments(&self) -> u16 {
        self.m().nb_segs
    }

    /// Copies `bytes` into the mbuf as its whole data (after the current headroom); false if
    /// they do not fit.
    pub fn set_data(&mut self, bytes: &[u8]) -> bool {
        let len = self.len();
        if !self.trim(len) || self.append(bytes.len()).is_none() {
            return false;
        }
        self.data_mut().copy_from_slice(bytes);
        true
    }

    #[inline]
    fn set_len(&mut self, len: usize) {
        let m = self.m_mut();
        m.data_len = len as u16;
        m.pkt_len = len as u32;
    }
}

impl PacketBuf for Mbuf {
    #[inline]
    fn data(&self) -> &[u8] {
        let m = self.m();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's buffer, which we own.
        unsafe {
            std::slice::from_raw_parts(
                m.buf_addr.cast::<u8>().add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        let m = self.m_mut();
        // SAFETY: as in data(), and `&mut self` makes the access exclusive.
        unsafe {
            std::slice::from_raw_parts_mut(
                m.buf_addr.cast::<u8>().add(m.data_off as usize),
                m.data_len as usize,
            )
        }
    }

    #[inline]
    fn headroom(&self) -> usize {
        self.m().data_off as usize
    }

    #[inline]
    fn tailroom(&self) -> usize {
        let m = self.m();
        m.buf_len as usize - m.data_off as usize - m.data_len as usize
    }

    #[inline]
    fn prepend(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.headroom() {
            return None;
        }
        let new_len = self.len() + len;
        self.m_mut().data_off -= len as u16;
        self.set_len(new_len);
        Some(&mut self.data_mut()[..len])
    }

    #[inline]
    fn adj(&mut self, len: usize) -> bool {
        if len > self.len() {
            return false;
        }
        let new_len = self.len() - len;
        self.m_mut().data_off += len as u16;
        self.set_len(new_len);
        true
    }

    #[inline]
    fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.tailroom() {
            return None;
        }
        let old = self.len();
        self.set_len(old + len);
        Some(&mut self.data_mut()[old..])
    }

    #[inline]
    fn trim(&mut self, len: usize) -> bool {
        if len > self.len() {
            return false;
        }
        let new_len = self.len() - len;
        self.set_len(new_len);
        true
    }

    #[inline]
    fn alloc_like(&self) -> Option<Self> {
        // SAFETY: `pool` of a valid mbuf is the pool it came from, alive while any of its
        // mbufs is (the `Mempool` handle leaks a pool with outstanding buffers rather than
        // free it); a non-NULL result is a fresh mbuf we now own.
        let m = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.m().pool) };
        NonNull::new(m).map(Mbuf::from_non_null)
    }
}
