//! What every worker reads: the per-entry lookup structures (issue 13, deliver item 3) and the
//! port addresses. The control thread changes the structures one entry at a time, in place,
//! with atomic stores ([`espada_lookup::sad`], [`espada_lookup::route`], [`espada_lookup::map`],
//! [`crate::tunnels`], [`crate::hops`]); nothing is copied per change. A [`Tables`] value holds
//! `Arc` handles to them plus the port addresses, and is published through the QSBR channel
//! (`espada-qsbr`): a new version costs a few `Arc` clones, and its generation is what
//! acknowledgements and reclamation count in ([`crate::lifecycle`]). Nothing mutable per packet
//! lives here: sequence numbers, replay windows and counters stay in the owner's
//! [`crate::slab`].

use std::net::IpAddr;
use std::sync::Arc;

use espada_config::Prefix;
use espada_lookup::map::KeyMap;
use espada_lookup::route::Routes;
use espada_lookup::sad::Directory;

use crate::PortRole;
use crate::eth::MacAddr;
use crate::hops::{NextHops, ON_LINK};
use crate::tunnels::{TunnelTable, peer_key};

/// Index of a tunnel in the [`TunnelTable`].
pub type TunnelId = u32;

/// Where an SA's mutable state lives: its owner worker and slot in that worker's slab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaRef {
    /// Owner worker index.
    pub owner: u16,
    /// Slot in the owner's slab.
    pub slot: u32,
}

/// True when `ip` is inside one of `selectors` (RFC 4301 §4.4.1).
#[inline]
pub fn selects(selectors: &[Prefix], ip: IpAddr) -> bool {
    selectors.iter().any(|p| p.contains(ip))
}

/// Addresses of one port of the box.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    /// The port's MAC address.
    pub mac: MacAddr,
    /// IPv4 address and on-link prefix.
    pub ipv4: Option<Prefix>,
    /// IPv6 address and on-link prefix.
    pub ipv6: Option<Prefix>,
    /// IPv4 gateway.
    pub gateway4: Option<IpAddr>,
    /// IPv6 gateway.
    pub gateway6: Option<IpAddr>,
    /// The port's MTU (IP bytes) as the device runs it; 0 when not known.
    pub mtu: u32,
}

impl Iface {
    /// True when `ip` is one of this port's own addresses.
    #[inline]
    pub fn is_local(&self, ip: IpAddr) -> bool {
        // One family's address compared, not both.
        let own = match ip {
            IpAddr::V4(_) => self.ipv4,
            IpAddr::V6(_) => self.ipv6,
        };
        own.is_some_and(|p| p.addr == ip)
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

/// Why a packet cannot get an Ethernet header towards its next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2Miss {
    /// The port has no route towards the destination.
    NoRoute,
    /// The next hop's MAC is not known yet (ARP / neighbour discovery needed).
    Unresolved,
}

/// One version of the workers' view: handles to the shared structures and the port addresses.
#[derive(Clone, Debug)]
pub struct Tables {
    /// Version number (1, 2, …), the QSBR generation it was published as.
    pub generation: u64,
    /// Number of workers.
    pub workers: u16,
    /// The box's ports, indexed by [`PortRole`].
    pub ports: [Iface; 2],
    /// Inbound SPI → owner, slot and tunnel (live or tombstone).
    pub sad: Arc<Directory>,
    /// Inner destination → tunnel (longest prefix of the remote selectors).
    pub routes: Routes,
    /// Per tunnel: the outbound SA and the peer address.
    pub tunnels: Arc<TunnelTable>,
    /// MAC of every next hop.
    pub hops: Arc<NextHops>,
    /// Per port: destination → next hop (or [`ON_LINK`]).
    pub neighbours: [Routes; 2],
    /// Our outbound SPIs → tunnel (to recognise ICMP errors about packets we sent).
    pub outbound_spis: Arc<KeyMap>,
    /// Peer outer address ([`peer_key`]) → tunnel (unknown-SPI classification).
    pub peers: Arc<KeyMap>,
}

impl Tables {
    /// The port of `role`.
    #[inline]
    pub fn port(&self, role: PortRole) -> &Iface {
        &self.ports[role as usize]
    }

    /// The MAC of the next hop towards `dst` on port `role`: one route lookup, one load.
    #[inline]
    pub fn l2_towards(&self, role: PortRole, dst: IpAddr) -> Result<MacAddr, L2Miss> {
        match self.neighbours[role as usize].lookup(dst) {
            None => Err(L2Miss::NoRoute),
            Some(ON_LINK) => Err(L2Miss::Unresolved),
            Some(hop) => self.hops.mac(hop).ok_or(L2Miss::Unresolved),
        }
    }

    /// A tunnel whose peer is `ip`, if any.
    #[inline]
    pub fn tunnel_of_peer(&self, ip: IpAddr) -> Option<TunnelId> {
        self.peers
            .find(peer_key(ip), |t| self.tunnels.peer(t) == Some(ip))
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
