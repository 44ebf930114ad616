//! The packet buffer contract shared by espada's sans-I/O protocol cores and the DPDK layer.
//!
//! A packet lives in one contiguous buffer laid out as `headroom | data | tailroom`, exactly like a
//! DPDK `rte_mbuf` segment. Protocol code (ESP encapsulation, decapsulation) grows and shrinks the
//! data window at both ends in place and never copies or allocates. [`PacketBuf`] is that
//! contract; [`VecBuf`] is a heap-backed implementation for tests, fuzzing and tools, and
//! `dpdk::Mbuf` implements it for the data plane.
#![forbid(unsafe_code)]

/// A packet buffer with headroom before the data and tailroom after it.
///
/// All operations are O(1) and never move the data bytes. A failed operation (not enough
/// headroom, tailroom or data) leaves the buffer unchanged and returns `None`/`false`.
pub trait PacketBuf {
    /// The packet bytes.
    fn data(&self) -> &[u8];
    /// The packet bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Free bytes before the data.
    fn headroom(&self) -> usize;
    /// Free bytes after the data.
    fn tailroom(&self) -> usize;
    /// Grows the data by `len` bytes at the front and returns the new front bytes
    /// (their content is unspecified).
    fn prepend(&mut self, len: usize) -> Option<&mut [u8]>;
    /// Removes `len` bytes from the front of the data.
    fn adj(&mut self, len: usize) -> bool;
    /// Grows the data by `len` bytes at the end and returns the new tail bytes
    /// (their content is unspecified).
    fn append(&mut self, len: usize) -> Option<&mut [u8]>;
    /// Removes `len` bytes from the end of the data.
    fn trim(&mut self, len: usize) -> bool;
    /// A new, empty buffer of the same kind (same pool and capacity, the default headroom),
    /// or `None` when none is free. The data plane's one use: fragmentation, where one packet
    /// becomes several.
    fn alloc_like(&self) -> Option<Self>
    where
        Self: Sized;

    /// Length of the data.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// True when the data is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `Vec`-backed [`PacketBuf`] with a fixed capacity, for tests and tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VecBuf {
    storage: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecBuf {
    /// The headroom of a buffer from [`PacketBuf::alloc_like`] (DPDK's `RTE_PKTMBUF_HEADROOM`).
    pub const DEFAULT_HEADROOM: usize = 128;

    /// A buffer holding `data` with `headroom` free bytes before and `tailroom` after it.
    pub fn new(headroom: usize, data: &[u8], tailroom: usize) -> Self {
        let mut storage = vec![0u8; headroom + data.len() + tailroom];
        storage[headroom..headroom + data.len()].copy_from_slice(data);
        Self {
            storage,
            start: headroom,
            end: headroom + data.len(),
        }
    }

    /// An empty buffer of `capacity` bytes with the data window starting at `headroom`.
    pub fn with_capacity(capacity: usize, headroom: usize) -> Self {
        let start = headroom.min(capacity);
        Self {
            storage: vec![0u8; capacity],
            start,
            end: start,
        }
    }

    /// Replaces the data with `data`, keeping `headroom` bytes before it; `false` (and no
    /// change) when it does not fit the capacity.
    pub fn reset(&mut self, headroom: usize, data: &[u8]) -> bool {
        if headroom + data.len() > self.storage.len() {
            return false;
        }
        self.storage[headroom..headroom + data.len()].copy_from_slice(data);
        self.start = headroom;
        self.end = headroom + data.len();
        true
    }
}

impl PacketBuf for VecBuf {
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }
    fn headroom(&self) -> usize {
        self.start
    }
    fn tailroom(&self) -> usize {
        self.storage.len() - self.end
    }
    fn prepend(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.start {
            return None;
        }
        self.start -= len;
        Some(&mut self.storage[self.start..self.start + len])
    }
    fn adj(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.start += len;
        true
    }
    fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.storage.len() - self.end {
            return None;
        }
        let old = self.end;
        self.end += len;
        Some(&mut self.storage[old..self.end])
    }
    fn trim(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.end -= len;
        true
    }
    fn alloc_like(&self) -> Option<Self> {
        Some(VecBuf::with_capacity(
            self.storage.len(),
            Self::DEFAULT_HEADROOM,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_and_shrink_both_ends() {
        let mut b = VecBuf::new(4, &[1, 2, 3], 2);
        assert_eq!((b.headroom(), b.len(), b.tailroom()), (4, 3, 2));
        b.prepend(2).unwrap().copy_from_slice(&[9, 8]);
        b.append(2).unwrap().copy_from_slice(&[7, 6]);
        assert_eq!(b.data(), &[9, 8, 1, 2, 3, 7, 6]);
        assert_eq!((b.headroom(), b.tailroom()), (2, 0));
        assert!(b.adj(3));
        assert!(b.trim(1));
        assert_eq!(b.data(), &[2, 3, 7]);
    }

    #[test]
    fn failed_operations_change_nothing() {
        let mut b = VecBuf::new(1, &[1, 2], 1);
        let before = b.clone();
        assert!(b.prepend(2).is_none());
        assert!(b.append(2).is_none());
        assert!(!b.adj(3));
        assert!(!b.trim(3));
        assert_eq!(b, before);
        assert!(!b.reset(0, &[0; 5]));
        assert_eq!(b, before);
    }
}
