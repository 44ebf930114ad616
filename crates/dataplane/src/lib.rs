//! The espada data plane: per-core poll-mode workers over DPDK ports.
//!
//! - [`tables`]: what workers read without locks — the SA directory (SPI → owner/slot/tunnel,
//!   tombstones), routes (inner prefix → tunnel), [`tunnels`] (outbound SA, peer), [`hops`]
//!   (next hop → MAC), peers — each changed one entry at a time by the control thread, plus the
//!   port addresses; versions are published with an RCU-style epoch swap (`espada-qsbr`).
//! - [`lifecycle`]: the control thread's API for SAs and tunnels (install, switch, retire,
//!   remove), acknowledged with the table generation at which every worker sees the change.
//! - [`slab`]: the per-worker SA storage. Mutable per-SA state (sequence numbers, replay
//!   window, lifetimes, crypto contexts) lives here, owned by exactly one worker, so it
//!   survives table swaps untouched; the control thread installs and removes SAs by command.
//! - [`worker`]: the burst loop: RX → classify → inbound ESP / outbound cleartext / handoff /
//!   punt → TX ([`pipeline`] holds the per-packet stages and returns a [`pipeline::Verdict`]).
//! - [`prefetch`]: the packet loop's lookahead, bringing in the SA state of a packet a few
//!   places ahead in the burst (inbound on the outside port, outbound on the inside port)
//!   while the current one is processed.
//! - [`drops`]: one table of data-plane drop reasons, next to the ESP engine's own table, that
//!   feeds every counter, `show drops` and log text.
//! - [`stats`] and [`events`]: per-worker counters read by the control thread, lifetime
//!   notices that cannot be lost, and sampled events (unknown SPIs, ICMP errors, neighbour
//!   misses).
#![forbid(unsafe_code)]

pub mod burst;
pub mod depth;
pub mod drops;
pub mod eth;
pub mod events;
pub mod forward;
pub mod fragment;
pub mod hops;
pub mod lifecycle;
pub mod pipeline;
pub mod pmtu;
pub mod prefetch;
pub mod reasm;
pub mod selectors;
pub mod slab;
pub mod stats;
pub mod tables;
pub mod tunnels;
pub mod worker;

/// The role of a port (design brief §1): the host stack's type, shared by the data plane.
pub use espada_hostpath::PortRole;

/// The worker a static (lab) tunnel is placed on: its inbound SPI modulo the worker count, so
/// a lab configuration says where its tunnels run. Negotiated SPIs encode their owner and slot
/// instead (`espada_lookup::spi`).
#[inline]
pub fn owner_of_spi(spi: u32, workers: u16) -> u16 {
    (spi % u32::from(workers.max(1))) as u16
}
