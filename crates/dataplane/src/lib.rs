//! The espada data plane: per-core poll-mode workers over DPDK ports.
//!
//! - [`tables`]: the immutable lookup tables (SPI → owner/slot, inner prefix → tunnel, tunnels,
//!   peers, tombstones, neighbours) that the control thread publishes with an RCU-style epoch
//!   swap (`espada-qsbr`) and every worker reads without locks.
//! - [`slab`]: the per-worker SA storage. Mutable per-SA state (sequence numbers, replay
//!   window, lifetimes, crypto contexts) lives here, owned by exactly one worker, so it
//!   survives table swaps untouched; the control thread installs and removes SAs by command.
//! - [`worker`]: the burst loop: RX → classify → inbound ESP / outbound cleartext / handoff /
//!   punt → TX ([`pipeline`] holds the per-packet stages and returns a [`pipeline::Verdict`]).
//! - [`drops`]: one table of data-plane drop reasons, next to the ESP engine's own table, that
//!   feeds every counter, `show drops` and log text.
//! - [`stats`] and [`events`]: per-worker counters read by the control thread, and typed
//!   worker → control events (unknown SPI samples, soft expiry, ICMP errors, neighbour misses).
#![forbid(unsafe_code)]

pub mod drops;
pub mod eth;
pub mod events;
pub mod lpm;
pub mod pipeline;
pub mod slab;
pub mod stats;
pub mod tables;
pub mod worker;

/// The role of a port (design brief §1): the host stack's type, shared by the data plane.
pub use espada_hostpath::PortRole;

/// Which worker owns an inbound SPI: the SPI names its owner (RFC 4303 §2.1 lets the receiver
/// choose its SPIs; espada allocates them so that this holds, and static SAs follow it too).
#[inline]
pub fn owner_of_spi(spi: u32, workers: u16) -> u16 {
    (spi % u32::from(workers.max(1))) as u16
}
