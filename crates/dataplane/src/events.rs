//! Typed events from a worker to the control thread, over a wait-free SPSC ring (rtrb). Counters
//! are exact on the worker; events carry samples and notices and may be lost when the ring is
//! full (counted as `events_lost`).

use std::net::IpAddr;

use espada_esp::icmp::IcmpErrorKind;

use crate::PortRole;
use crate::tables::TunnelId;

/// Capacity of each worker's event ring.
pub const EVENT_RING: usize = 4096;

/// How an unknown SPI was classified (operators' causes 1–4 in shared/seeds-digest.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnknownSpiClass {
    /// SPI of an SA deleted recently: a late packet after a rekey or delete.
    Tombstone,
    /// From a configured peer, but no such SA: the two ends are out of sync.
    KnownPeer,
    /// From an address that is no configured peer.
    UnknownSource,
}

impl UnknownSpiClass {
    /// Name used in logs and `show drops`.
    pub fn name(self) -> &'static str {
        match self {
            UnknownSpiClass::Tombstone => "tombstone",
            UnknownSpiClass::KnownPeer => "known-peer",
            UnknownSpiClass::UnknownSource => "unknown-source",
        }
    }
}

/// One ESP packet whose SPI matched no SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownSpi {
    /// Classification.
    pub class: UnknownSpiClass,
    /// Outer source.
    pub src: IpAddr,
    /// Outer destination.
    pub dst: IpAddr,
    /// SPI (RFC 4303 §2.1).
    pub spi: u32,
    /// Low 32 bits of the sequence number.
    pub seq: u32,
    /// Length of the outer IP packet.
    pub len: u32,
    /// ESP in UDP (RFC 3948).
    pub udp_encap: bool,
    /// Port it arrived on.
    pub port: PortRole,
}

/// An event from a worker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// An ESP packet with an unknown SPI was dropped.
    UnknownSpi(UnknownSpi),
    /// An SA crossed its soft lifetime (exactly once per SA): rekey it.
    SoftExpired {
        /// The tunnel.
        tunnel: TunnelId,
        /// The SA's SPI.
        spi: u32,
        /// Inbound (else outbound).
        inbound: bool,
    },
    /// An ICMP error quoted an ESP packet this box sent on `tunnel`.
    IcmpError {
        /// The tunnel.
        tunnel: TunnelId,
        /// What the error said (with the MTU for PMTU errors).
        kind: IcmpErrorKind,
    },
    /// A packet could not be sent because the next hop's MAC is unknown: resolve it.
    NeighborMiss {
        /// The port.
        port: PortRole,
        /// The next hop.
        ip: IpAddr,
    },
}
