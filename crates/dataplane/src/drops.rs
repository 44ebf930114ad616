//! Data-plane drop reasons: one enum, one table (name, description), the single source for
//! per-worker counters, `show drops`, metrics and log text. ESP transform drops keep their own
//! table in `espada_esp::DropReason`; [`Why`] joins the two.

use espada_esp::DropReason;

macro_rules! dp_drops {
    ($( $(#[$doc:meta])* $variant:ident = ($name:literal, $desc:literal), )*) => {
        /// Why the data plane (not the ESP transform) dropped a packet. Dense from 0.
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum DpDrop { $( $(#[$doc])* $variant, )* }

        impl DpDrop {
            /// Every reason, in discriminant order.
            pub const ALL: &'static [DpDrop] = &[ $( DpDrop::$variant, )* ];
            /// Number of reasons.
            pub const COUNT: usize = Self::ALL.len();
            const NAMES: &'static [(&'static str, &'static str)] = &[ $( ($name, $desc), )* ];

            /// Counter name (snake_case, stable).
            pub fn name(self) -> &'static str { Self::NAMES[self as usize].0 }
            /// One-line description for operators.
            pub fn description(self) -> &'static str { Self::NAMES[self as usize].1 }
        }
    };
}

dp_drops! {
    /// Frame shorter than an Ethernet header, or a VLAN-tagged frame.
    BadEthernet = ("bad_ethernet", "frame shorter than an Ethernet header, or VLAN-tagged"),
    /// EtherType is neither IPv4, IPv6 nor ARP.
    NotIp = ("not_ip", "frame is neither IPv4, IPv6 nor ARP"),
    /// IP header malformed (cleartext side).
    BadIpHeader = ("bad_ip_header", "cleartext IP header malformed or truncated"),
    /// Outside packet addressed to an address that is not the box's.
    NotForUs = ("not_for_us", "outside packet not addressed to this box"),
    /// ESP with SPI 0 or 1–255 (RFC 4303 §2.1: reserved), which no SA can have.
    ReservedSpi = ("reserved_spi", "ESP with SPI 0 or 1-255, reserved by RFC 4303 §2.1: no SA can have one (forged or broken sender)"),
    /// ESP whose SPI was deleted recently (a late packet after a rekey).
    UnknownSpiTombstone = ("unknown_spi_tombstone", "ESP for a recently retired SA, past its grace period (the recent list says why: retired by rekey, peer restarted, peer declared dead, deleted)"),
    /// ESP from a configured peer whose SPI matches no SA (the two ends are out of sync).
    UnknownSpiKnownPeer = ("unknown_spi_known_peer", "ESP from a configured peer with no such SA (desynchronised: this box restarted, or the peer kept an SA we never had; espada starts a liveness check or a new IKE SA)"),
    /// ESP with an unknown SPI from an address that is no configured peer.
    UnknownSpiUnknownSource = ("unknown_spi_unknown_source", "ESP with an unknown SPI from an address that is no configured peer (noise or attack)"),
    /// Decrypted inner packet outside the tunnel's traffic selectors (RFC 4301 §5.2).
    PolicyMismatch = ("policy_mismatch", "inner packet outside the tunnel's traffic selectors"),
    /// Cleartext packet that matches no tunnel (no SPD entry, RFC 4301 §5.1).
    NoRoute = ("no_route", "cleartext packet matches no tunnel's traffic selectors"),
    /// The tunnel has no outbound SA (not negotiated yet, or expired).
    NoOutboundSa = ("no_outbound_sa", "tunnel has no usable outbound SA (not negotiated yet, or deleted at its hard lifetime): dropped, never sent in clear; start: trap negotiates on it"),
    /// Inner TTL / hop limit would reach 0 (RFC 1812 §5.3.1, RFC 8200 §3).
    TtlExceeded = ("ttl_exceeded", "inner TTL or hop limit would reach 0: dropped as a router does, an ICMP time exceeded goes back to the source (rate-limited)"),
    /// Inner packet larger than the tunnel's path MTU allows, with DF set or IPv6 (RFC 4301 §8.2).
    TooBigForTunnel = ("too_big_for_tunnel", "inner packet larger than the tunnel's path MTU allows (DF set, or IPv6): dropped, ICMP fragmentation needed / packet too big with the tunnel's MTU goes back to the source (rate-limited)"),
    /// A packet to fragment for its tunnel found the mbuf pool empty.
    FragmentNoBuffer = ("fragment_no_buffer", "packet too big for its tunnel could not be fragmented: no free mbuf for a fragment (pool exhausted; raise dpdk.mbufs)"),
    /// A packet to fragment for its tunnel cannot be split to its MTU.
    FragmentUnsplittable = ("fragment_unsplittable", "packet too big for its tunnel could not be fragmented: the MTU leaves no room after its header, it would need more than 8 fragments, or its header is malformed"),
    /// Next-hop MAC address not resolved yet (ARP/ND in progress).
    NoNeighbor = ("no_neighbor", "next-hop MAC address not resolved yet (ARP/ND pending)"),
    /// Packet handed to a worker that does not own its SA (tables changed in flight).
    NotOwner = ("not_owner", "packet reached a worker that does not own its SA"),
    /// Handoff ring to the owner worker full.
    HandoffRingFull = ("handoff_ring_full", "handoff ring to the owner worker full"),
    /// Punt ring to the control thread full.
    PuntRingFull = ("punt_ring_full", "punt ring to the control thread full"),
    /// TX queue did not take the packet.
    TxFull = ("tx_full", "TX queue full"),
    /// ICMP error about an ESP packet this box sent: accounted to its tunnel (PMTU), consumed.
    IcmpErrorForTunnel = ("icmp_error_for_tunnel", "ICMP error about an ESP packet this box sent (counted on its tunnel, never as a bad SPI)"),
    /// An outer fragment overlapping bytes already received: its whole datagram is dropped
    /// (RFC 5722 for IPv6; IPv4 alike).
    ReassemblyOverlap = ("reassembly_overlap", "outer fragment overlapping (or contradicting) what was received of its datagram: the whole datagram is dropped (RFC 5722)"),
    /// An outer datagram in more fragments or bytes than reassembly takes.
    ReassemblyTooBig = ("reassembly_too_big", "outer datagram in more than 16 fragments or beyond 1904 bytes: dropped"),
    /// Every reassembly slot of the worker is busy.
    ReassemblyFull = ("reassembly_full", "outer fragment arrived while every reassembly slot of the worker was busy (64 datagrams in flight): dropped"),
    /// Outside packet that is no ESP, IKE, ICMP or ARP.
    OtherProtocol = ("other_protocol", "outside packet that is neither ESP, IKE, ICMP nor ARP"),
    /// Chained (multi-segment) mbuf: ports are configured without scatter.
    MultiSegment = ("multi_segment", "chained mbuf (scatter is not configured)"),
}

/// A drop from either layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Dropped by the ESP transform (also counted on the SA).
    Esp(DropReason),
    /// Dropped by the data plane.
    Dp(DpDrop),
}

impl Why {
    /// Total number of reasons of both layers (size of counter arrays).
    pub const COUNT: usize = DropReason::COUNT + DpDrop::COUNT;

    /// Dense index: ESP reasons first, then data-plane reasons.
    #[inline]
    pub fn index(self) -> usize {
        match self {
            Why::Esp(r) => r as usize,
            Why::Dp(d) => DropReason::COUNT + d as usize,
        }
    }

    /// Every reason of both layers, in index order.
    pub fn all() -> impl Iterator<Item = Why> {
        DropReason::ALL
            .iter()
            .map(|&r| Why::Esp(r))
            .chain(DpDrop::ALL.iter().map(|&d| Why::Dp(d)))
    }

    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            Why::Esp(r) => DropReason::TABLE[r as usize].name,
            Why::Dp(d) => d.name(),
        }
    }

    /// Description for operators.
    pub fn description(self) -> &'static str {
        match self {
            Why::Esp(r) => DropReason::TABLE[r as usize].description,
            Why::Dp(d) => d.description(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        let all: Vec<Why> = Why::all().collect();
        assert_eq!(all.len(), Why::COUNT);
        for (i, w) in all.iter().enumerate() {
            assert_eq!(w.index(), i);
            assert!(!w.description().is_empty());
        }
        let mut names: Vec<&str> = all.iter().map(|w| w.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            Why::COUNT,
            "counter names must be unique across both tables"
        );
    }
}
