//! The immutable lookup tables shared read-only by all workers and replaced as a whole by the
//! control thread (RCU-style epoch swap, `espada-qsbr`). Nothing mutable per packet lives here:
//! sequence numbers, replay windows and counters stay in the owner worker's [`crate::slab`].

use std::collections::HashMap;
use std::net::IpAddr;

use espada_config::Prefix;

use crate::PortRole;
use crate::eth::Mac;
use crate::lpm::Lpm;

/// Index of a tunnel in [`Tables::tunnels`].
pub type TunnelId = u32;

/// Where an SA's mutable state lives: its owner worker and slot in that worker's slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaRef {
    /// Owner worker index.
    pub owner: u16,
    /// Slot in the owner's slab.
    pub slot: u32,
}

/// An inbound SPI: its tunnel and SA (RFC 4301 §4.4.2 SAD lookup by SPI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundEntry {
    /// The tunnel the SA protects.
    pub tunnel: TunnelId,
    /// The SA.
    pub sa: SaRef,
}

/// A tunnel as the data plane sees it: endpoints, selectors, and its SA slots (one TX SA and
/// up to three RX SAs: current, new, previous — what makes make-before-break cheap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// Operator's name.
    pub name: String,
    /// Peer's outer address.
    pub peer: IpAddr,
    /// Our outer address.
    pub local: IpAddr,
    /// ESP in UDP 4500 (RFC 3948) rather than IP protocol 50.
    pub udp_encap: bool,
    /// Local traffic selectors (inner sources outbound, inner destinations inbound).
    pub local_ts: Vec<Prefix>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<Prefix>,
    /// The outbound SA: its SPI and where it lives.
    pub outbound: Option<(u32, SaRef)>,
    /// Inbound SPIs in use (current, new, previous).
    pub inbound: [Option<u32>; 3],
}

impl Tunnel {
    /// True when `ip` is inside one of `selectors`.
    #[inline]
    pub fn selects(selectors: &[Prefix], ip: IpAddr) -> bool {
        selectors.iter().any(|p| p.contains(ip))
    }
}

/// Addresses of one port of the box.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    /// The port's MAC address.
    pub mac: Mac,
    /// IPv4 address and on-link prefix.
    pub ipv4: Option<Prefix>,
    /// IPv6 address and on-link prefix.
    pub ipv6: Option<Prefix>,
    /// IPv4 gateway.
    pub gateway4: Option<IpAddr>,
    /// IPv6 gateway.
    pub gateway6: Option<IpAddr>,
}

impl Iface {
    /// True when `ip` is one of this port's own addresses.
    #[inline]
    pub fn is_local(&self, ip: IpAddr) -> bool {
        self.ipv4.is_some_and(|p| p.addr == ip) || self.ipv6.is_some_and(|p| p.addr == ip)
    }

    /// The next hop towards `dst`: `dst` itself when on-link, else the gateway of its family.
    #[inline]
    pub fn next_hop(&self, dst: IpAddr) -> Option<IpAddr> {
        let (net, gw) = match dst {
            IpAddr::V4(_) => (self.ipv4, self.gateway4),
            IpAddr::V6(_) => (self.ipv6, self.gateway6),
        };
        if net.is_some_and(|p| p.contains(dst)) {
            Some(dst)
        } else {
            gw
        }
    }
}

/// One version of every lookup table.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    /// Version number (1, 2, …) for `show workers`.
    pub generation: u64,
    /// Number of workers (SPI ownership is `spi % workers`).
    pub workers: u16,
    /// Inbound SPI → tunnel and SA.
    pub inbound: HashMap<u32, InboundEntry>,
    /// Our outbound SPIs → tunnel (to recognise ICMP errors about packets we sent).
    pub outbound_spis: HashMap<u32, TunnelId>,
    /// Inner destination → tunnel (longest prefix of the remote selectors).
    pub routes: Lpm<TunnelId>,
    /// Tunnels by id.
    pub tunnels: Vec<Tunnel>,
    /// Peer outer address → tunnel (for unknown-SPI classification).
    pub peers: HashMap<IpAddr, TunnelId>,
    /// Recently deleted inbound SPIs → tunnel (late packets after a rekey or delete).
    pub tombstones: HashMap<u32, TunnelId>,
    /// The box's ports, indexed by [`PortRole`].
    pub ports: [Iface; 2],
    /// Resolved neighbours (next hop → MAC) per port, published by the control thread.
    pub neighbors: [HashMap<IpAddr, Mac>; 2],
}

impl Tables {
    /// The port of `role`.
    #[inline]
    pub fn port(&self, role: PortRole) -> &Iface {
        &self.ports[role as usize]
    }

    /// The MAC of the next hop towards `dst` on port `role`, when resolved.
    #[inline]
    pub fn neighbor_for(&self, role: PortRole, dst: IpAddr) -> Result<Mac, Option<IpAddr>> {
        let hop = self.port(role).next_hop(dst).ok_or(None)?;
        self.neighbors[role as usize]
            .get(&hop)
            .copied()
            .ok_or(Some(hop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_hop_is_on_link_or_gateway() {
        let i = Iface {
            ipv4: Some("198.51.100.1/24".parse().unwrap()),
            gateway4: Some("198.51.100.254".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            i.next_hop("198.51.100.2".parse().unwrap()),
            Some("198.51.100.2".parse().unwrap())
        );
        assert_eq!(
            i.next_hop("203.0.113.9".parse().unwrap()),
            Some("198.51.100.254".parse().unwrap())
        );
        assert_eq!(i.next_hop("2001:db8::1".parse().unwrap()), None);
        assert!(i.is_local("198.51.100.1".parse().unwrap()));
        assert!(!i.is_local("198.51.100.2".parse().unwrap()));
    }
}
