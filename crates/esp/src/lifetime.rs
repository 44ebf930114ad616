//! SA lifetimes in bytes and packets (RFC 4301 §4.4.2.1), enforced by the owner worker.
//!
//! The soft limit yields exactly one event; the hard limit makes the SA refuse every further
//! packet. Time-based lifetimes belong to the control plane (it has the clock).

/// Byte and packet limits; `u64::MAX` means "no limit".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifetimeLimits {
    /// Soft byte limit: one event when the inner bytes processed reach it.
    pub soft_bytes: u64,
    /// Hard byte limit: no packet is processed once the bytes processed reach it.
    pub hard_bytes: u64,
    /// Soft packet limit: one event when the packets processed reach it.
    pub soft_packets: u64,
    /// Hard packet limit: exactly this many packets are processed, no more.
    pub hard_packets: u64,
}

impl LifetimeLimits {
    /// No limits.
    pub const UNLIMITED: Self = Self {
        soft_bytes: u64::MAX,
        hard_bytes: u64::MAX,
        soft_packets: u64::MAX,
        hard_packets: u64::MAX,
    };
}

impl Default for LifetimeLimits {
    fn default() -> Self {
        Self::UNLIMITED
    }
}

/// Lifetime state of one SA direction. Counts only packets that were processed successfully.
#[derive(Clone, Debug)]
pub struct Lifetime {
    limits: LifetimeLimits,
    bytes: u64,
    packets: u64,
    soft_fired: bool,
}

impl Lifetime {
    /// Fresh state.
    pub const fn new(limits: LifetimeLimits) -> Self {
        Self {
            limits,
            bytes: 0,
            packets: 0,
            soft_fired: false,
        }
    }
    /// `true` when the hard limit is reached: the SA must refuse the packet. A packet is refused
    /// when the packets processed already reached `hard_packets` or the bytes processed already
    /// reached `hard_bytes` (so the last packet admitted may take the bytes past the limit).
    #[inline]
    pub fn hard_expired(&self) -> bool {
        self.packets >= self.limits.hard_packets || self.bytes >= self.limits.hard_bytes
    }
    /// Accounts one processed packet; returns `true` exactly once, when the soft limit is first
    /// reached.
    #[inline]
    pub fn account(&mut self, bytes: usize) -> bool {
        self.packets += 1;
        self.bytes = self.bytes.saturating_add(bytes as u64);
        if !self.soft_fired
            && (self.packets >= self.limits.soft_packets || self.bytes >= self.limits.soft_bytes)
        {
            self.soft_fired = true;
            return true;
        }
        false
    }
    /// Whether the soft event has been emitted.
    pub fn soft_expired(&self) -> bool {
        self.soft_fired
    }
    /// Packets and bytes accounted.
    pub fn used(&self) -> (u64, u64) {
        (self.packets, self.bytes)
    }
    /// The limits.
    pub fn limits(&self) -> &LifetimeLimits {
        &self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_once_then_hard() {
        let mut l = Lifetime::new(LifetimeLimits {
            soft_packets: 2,
            hard_packets: 3,
            ..LifetimeLimits::UNLIMITED
        });
        assert!(!l.hard_expired());
        assert!(!l.account(10));
        assert!(l.account(10));
        assert!(!l.hard_expired());
        assert!(!l.account(10));
        assert!(l.hard_expired());
    }

    #[test]
    fn bytes_limits() {
        let mut l = Lifetime::new(LifetimeLimits {
            soft_bytes: 100,
            hard_bytes: 150,
            ..LifetimeLimits::UNLIMITED
        });
        assert!(!l.account(99));
        assert!(l.account(1));
        assert!(!l.account(100));
        assert!(l.hard_expired());
    }
}
