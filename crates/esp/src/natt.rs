//! UDP encapsulation of ESP for NAT traversal (RFC 3948).
//!
//! On port 4500 a UDP payload is one of: an ESP packet (first four bytes = non-zero SPI,
//! RFC 3948 §2.1), an IKE message behind the four-zero-byte non-ESP marker (§2.2), or a NAT
//! keepalive, a single 0xFF byte (§2.3). [`crate::classify()`] tells them apart.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The IKE/NAT-T port for UDP-encapsulated ESP (RFC 3948 §2).
pub const NATT_PORT: u16 = 4500;
/// The IKE port (RFC 7296 §2).
pub const IKE_PORT: u16 = 500;
/// The non-ESP marker in front of IKE messages on port 4500 (RFC 3948 §2.2).
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// The NAT keepalive payload (RFC 3948 §2.3).
pub const KEEPALIVE: u8 = 0xff;

/// `true` for a NAT keepalive UDP payload: exactly one byte, 0xFF (RFC 3948 §2.3).
#[inline]
pub fn is_keepalive(udp_payload: &[u8]) -> bool {
    udp_payload == [KEEPALIVE]
}

/// `true` for a UDP payload starting with the non-ESP marker (RFC 3948 §2.2).
#[inline]
pub fn has_non_esp_marker(udp_payload: &[u8]) -> bool {
    udp_payload.len() >= 4 && udp_payload[..4] == NON_ESP_MARKER
}

/// Counters for port-4500 traffic that is not ESP, kept by the data plane per worker (single
/// writer, readable from any thread like [`crate::SaCounters`]).
#[derive(Debug, Default)]
pub struct NattCounters {
    keepalives: AtomicU64,
    ike_non_esp: AtomicU64,
}

/// A plain copy of [`NattCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NattSnapshot {
    /// NAT keepalives received (RFC 3948 §2.3).
    pub keepalives: u64,
    /// IKE messages with the non-ESP marker received on port 4500 (RFC 3948 §2.2).
    pub ike_non_esp: u64,
}

impl NattCounters {
    /// Counts one keepalive (owner worker only).
    pub fn count_keepalive(&self) {
        self.keepalives
            .store(self.keepalives.load(Relaxed).wrapping_add(1), Relaxed);
    }
    /// Counts one IKE message punted from port 4500 (owner worker only).
    pub fn count_ike_non_esp(&self) {
        self.ike_non_esp
            .store(self.ike_non_esp.load(Relaxed).wrapping_add(1), Relaxed);
    }
    /// A copy readable from any thread.
    pub fn snapshot(&self) -> NattSnapshot {
        NattSnapshot {
            keepalives: self.keepalives.load(Relaxed),
            ike_non_esp: self.ike_non_esp.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_payloads() {
        assert!(is_keepalive(&[0xff]));
        assert!(!is_keepalive(&[0xff, 0]));
        assert!(has_non_esp_marker(&[0, 0, 0, 0, 0x12]));
        assert!(!has_non_esp_marker(&[0, 0, 0]));
        let c = NattCounters::default();
        c.count_keepalive();
        c.count_ike_non_esp();
        c.count_ike_non_esp();
        assert_eq!(
            c.snapshot(),
            NattSnapshot {
                keepalives: 1,
                ike_non_esp: 2
            }
        );
    }
}
