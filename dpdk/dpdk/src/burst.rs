//! A fixed-capacity burst of owned mbufs: the unit of RX, TX and ring operations.

use std::mem::MaybeUninit;

use crate::mbuf::Mbuf;

/// Up to `N` owned mbufs (default 32, DPDK's usual burst). Mbufs still in a burst when it is
/// dropped are freed, so a packet a driver or ring did not take can never leak.
pub struct Burst<const N: usize = 32> {
    slots: [MaybeUninit<Mbuf>; N],
    len: usize,
}

impl<const N: usize> Default for Burst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Burst<N> {
    /// An empty burst.
    pub const fn new() -> Self {
        Burst {
            slots: [const { MaybeUninit::uninit() }; N],
            len: 0,
        }
    }

    /// Number of mbufs held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no mbuf is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of mbufs.
    #[inline]
    pub const fn capacity(&self) -> usize {
        N
    }

    /// True when no more mbufs fit.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Adds an mbuf at the end, or gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        self.slots[self.len].write(m);
        self.len += 1;
        Ok(())
    }

    /// Removes the last mbuf.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: slot `len` was initialised and is now outside the live range.
        Some(unsafe { self.slots[self.len].assume_init_read() })
    }

    /// The mbufs held, in order.
    #[inline]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: the first `len` slots are initialised; MaybeUninit<Mbuf> has Mbuf's layout.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr().cast::<Mbuf>(), self.len) }
    }

    /// The mbufs held, in order, writable.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in as_slice, with exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.slots.as_mut_ptr().cast::<Mbuf>(), self.len) }
    }

    /// [`Mbuf::prefetch_header`] of every mbuf held (a received burst, before its loop).
    #[inline]
    pub fn prefetch_headers(&self) {
        for m in self.as_slice() {
            m.prefetch_header();
        }
    }

    /// Takes every mbuf out, in order; mbufs the iterator does not yield are freed when it is
    /// dropped.
    pub fn drain(&mut self) -> Drain<'_, N> {
        let len = self.len;
        self.len = 0;
        Drain {
            burst: self,
            next: 0,
            end: len,
        }
    }

    /// Frees every mbuf (`rte_pktmbuf_free_bulk`).
    pub fn clear(&mut self) {
        if self.len > 0 {
            let n = self.len as u32;
            self.len = 0;
            // SAFETY: the first `n` slots hold owned mbufs, handed to DPDK to free exactly once.
            unsafe { dpdk_sys::rte_pktmbuf_free_bulk(self.slots.as_mut_ptr().cast(), n) };
        }
    }

    /// Pointer to the first held mbuf, for FFI that reads `len()` mbuf pointers.
    pub(crate) fn raw_ptr(&mut self) -> *mut *mut dpdk_sys::rte_mbuf {
        self.slots.as_mut_ptr().cast()
    }

    /// Pointer to the first free slot, for FFI that writes up to `capacity() - len()` mbufs.
    pub(crate) fn spare_ptr(&mut self) -> *mut *mut dpdk_sys::rte_mbuf {
        // SAFETY: `len <= N`, so the offset stays within (or one past) the array.
        unsafe { self.slots.as_mut_ptr().add(self.len).cast() }
    }

    /// Records that FFI wrote `n` owned mbufs into the spare slots.
    ///
    /// # Safety
    /// The `n` slots after the current length must hold valid, owned mbuf pointers.
    pub(crate) unsafe fn assume_filled(&mut self, n: usize) {
        debug_assert!(self.len + n <= N);
        self.len += n;
    }

    /// Records that FFI took ownership of the first `n` mbufs and moves the rest to the front.
    pub(crate) fn consumed_front(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        let rest = self.len - n;
        // SAFETY: slots n..len are initialised; they move to 0..rest (ptr::copy handles overlap);
        // slots 0..n were handed over and are no longer ours.
        unsafe { std::ptr::copy(self.slots.as_ptr().add(n), self.slots.as_mut_ptr(), rest) };
        self.len = rest;
    }
}

impl<const N: usize> Drop for Burst<N> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Iterator returned by [`Burst::drain`].
pub struct Drain<'a, const N: usize> {
    burst: &'a mut Burst<N>,
    next: usize,
    end: usize,
}

impl<const N: usize> Drain<'_, N> {
    /// The mbuf `k` places after the one the next call to `next` yields (`ahead(0)` is that
    /// one), still in the burst: a packet loop prefetches what a later packet will need.
    #[inline]
    pub fn ahead(&self, k: usize) -> Option<&Mbuf> {
        if k >= self.end - self.next {
            return None;
        }
        // SAFETY: slots next..end are initialised and not yet yielded; the reference borrows
        // the drain, so the slot cannot be read out while it lives.
        Some(unsafe { self.burst.slots[self.next + k].assume_init_ref() })
    }
}

impl<const N: usize> Iterator for Drain<'_, N> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        // SAFETY: slots next..end are initialised and owned by the drain; each is read once.
        let m = unsafe { self.burst.slots[self.next].assume_init_read() };
        self.next += 1;
        Some(m)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.end - self.next, Some(self.end - self.next))
    }
}

impl<const N: usize> ExactSizeIterator for Drain<'_, N> {}

impl<const N: usize> Drop for Drain<'_, N> {
    fn drop(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}
