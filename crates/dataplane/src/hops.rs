//! Next hops and their Ethernet addresses, resolved once on the control thread and read by the
//! workers with one load (issue 13, deliver item 3: "the L2 rewrite of each next hop is
//! precomputed, so a forwarded packet does no neighbour lookup").
//!
//! - [`NextHops`]: a preallocated array of MAC words, one per next hop (`VALID | MAC`), written
//!   by the control thread when ARP or neighbour discovery learns an address.
//! - Per port, a route table ([`espada_lookup::route`]) maps a destination to its next hop:
//!   the port's on-link prefix to [`ON_LINK`] (resolve the destination itself), a learned
//!   on-link neighbour's /32 or /128 to its hop, and the default route to the gateway's hop.
//!   Cleartext leaving on the inside port looks its destination up there; ESP leaving on the
//!   outside port carries the hop of its tunnel's peer in the SA's slab slot, so it needs no
//!   route lookup at all.
//! - [`HopWriter`] (control thread) owns the hop ids, the route writers and the MAC words.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use espada_lookup::route::{MAX_VALUE, RouteError, RouteWriter, Routes};

use crate::PortRole;
use crate::eth::MacAddr;
use crate::tables::Iface;

/// Neighbour-route value of a port's on-link prefix: the destination is its own next hop and
/// has not been resolved yet.
pub const ON_LINK: u32 = MAX_VALUE;

const VALID: u64 = 1 << 48;

/// MAC words of every next hop.
pub struct NextHops {
    macs: Box<[AtomicU64]>,
}

impl NextHops {
    /// Room for `capacity` next hops, none resolved.
    pub fn new(capacity: u32) -> NextHops {
        NextHops {
            macs: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The MAC of `hop`, when resolved (worker, `Acquire`).
    #[inline]
    pub fn mac(&self, hop: u32) -> Option<MacAddr> {
        let w = self.macs.get(hop as usize)?.load(Ordering::Acquire);
        if w & VALID == 0 {
            return None;
        }
        let b = w.to_be_bytes();
        Some(MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// Control thread: sets the MAC of `hop` (`Release`).
    fn set(&self, hop: u32, mac: MacAddr) {
        if let Some(cell) = self.macs.get(hop as usize) {
            let mut b = [0u8; 8];
            b[2..].copy_from_slice(&mac.0);
            cell.store(VALID | u64::from_be_bytes(b), Ordering::Release);
        }
    }
}

impl std::fmt::Debug for NextHops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NextHops")
            .field("capacity", &self.macs.len())
            .finish_non_exhaustive()
    }
}

/// Sizes of the next-hop structures.
#[derive(Clone, Copy, Debug)]
pub struct HopLimits {
    /// Next hops (both ports).
    pub hops: u32,
    /// IPv4 tbl8 groups per port (one per /24 that holds a learned neighbour).
    pub v4_groups: u32,
    /// IPv6 groups per port.
    pub v6_groups: u32,
    /// IPv6 tail records per port.
    pub v6_tails: u32,
}

impl Default for HopLimits {
    fn default() -> Self {
        HopLimits {
            hops: 65_536,
            v4_groups: 4096,
            v6_groups: 4096,
            v6_tails: 65_536,
        }
    }
}

/// Why a next hop could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopError {
    /// Every hop id is taken.
    Full,
    /// The port has no route towards the address (no on-link prefix or gateway of its family).
    NoRoute(IpAddr),
    /// The route table refused the host route.
    Route(RouteError),
}

impl std::fmt::Display for HopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HopError::Full => f.write_str("next-hop table full"),
            HopError::NoRoute(ip) => write!(f, "no route towards {ip}"),
            HopError::Route(e) => write!(f, "neighbour route: {e}"),
        }
    }
}

impl std::error::Error for HopError {}

/// The control thread's side of next hops.
pub struct HopWriter {
    macs: Arc<NextHops>,
    routes: [RouteWriter; 2],
    ports: [Iface; 2],
    ids: HashMap<(PortRole, IpAddr), u32>,
    next: u32,
    capacity: u32,
}

fn host_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

impl HopWriter {
    /// Next hops for `ports` (their on-link prefixes and gateways become routes).
    pub fn new(ports: [Iface; 2], limits: HopLimits) -> Result<HopWriter, HopError> {
        let route = || RouteWriter::new(limits.v4_groups, limits.v6_groups, limits.v6_tails);
        let mut w = HopWriter {
            macs: Arc::new(NextHops::new(limits.hops)),
            routes: [
                route().map_err(HopError::Route)?,
                route().map_err(HopError::Route)?,
            ],
            ports,
            ids: HashMap::new(),
            next: 0,
            capacity: limits.hops,
        };
        for role in PortRole::ALL {
            let p = w.ports[role as usize].clone();
            for net in [p.ipv4, p.ipv6].into_iter().flatten() {
                w.routes[role as usize]
                    .insert(net.addr, net.len, ON_LINK)
                    .map_err(HopError::Route)?;
            }
            let defaults = [
                (p.gateway4, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                (p.gateway6, IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            ];
            for (gw, any) in defaults {
                if let Some(gw) = gw {
                    let hop = w.ensure(role, gw)?;
                    w.routes[role as usize]
                        .insert(any, 0, hop)
                        .map_err(HopError::Route)?;
                }
            }
        }
        Ok(w)
    }

    /// The MAC words, for the workers' tables.
    pub fn macs(&self) -> Arc<NextHops> {
        self.macs.clone()
    }

    /// Read handles of the neighbour routes of both ports, for the workers' tables.
    pub fn routes(&self) -> [Routes; 2] {
        [self.routes[0].routes(), self.routes[1].routes()]
    }

    /// The port addresses the routes were built from.
    pub fn ports(&self) -> &[Iface; 2] {
        &self.ports
    }

    /// The hop id towards `dst` on `port` (its gateway's or its own), created when new.
    pub fn towards(&mut self, port: PortRole, dst: IpAddr) -> Result<(u32, IpAddr), HopError> {
        let hop_ip = self.ports[port as usize]
            .next_hop(dst)
            .ok_or(HopError::NoRoute(dst))?;
        Ok((self.ensure(port, hop_ip)?, hop_ip))
    }

    /// The hop id of the neighbour `ip` on `port`, created (with its host route) when new.
    pub fn ensure(&mut self, port: PortRole, ip: IpAddr) -> Result<u32, HopError> {
        if let Some(&id) = self.ids.get(&(port, ip)) {
            return Ok(id);
        }
        if self.next >= self.capacity {
            return Err(HopError::Full);
        }
        let id = self.next;
        self.routes[port as usize]
            .insert(ip, host_len(ip), id)
            .map_err(HopError::Route)?;
        self.next += 1;
        self.ids.insert((port, ip), id);
        Ok(id)
    }

    /// A neighbour's MAC was learned; true when it changed something.
    pub fn learned(&mut self, port: PortRole, ip: IpAddr, mac: MacAddr) -> Result<bool, HopError> {
        let id = self.ensure(port, ip)?;
        let changed = self.macs.mac(id) != Some(mac);
        if changed {
            self.macs.set(id, mac);
        }
        Ok(changed)
    }

    /// The MAC of the neighbour `ip` on `port`, when resolved.
    pub fn mac_of(&self, port: PortRole, ip: IpAddr) -> Option<MacAddr> {
        self.ids.get(&(port, ip)).and_then(|&id| self.macs.mac(id))
    }

    /// Hop ids in use.
    pub fn len(&self) -> u32 {
        self.next
    }

    /// True when no hop exists.
    pub fn is_empty(&self) -> bool {
        self.next == 0
    }

    /// Tags what the route writers unlink from now on with `epoch` (the QSBR generation).
    pub fn set_epoch(&mut self, epoch: u64) {
        for r in &mut self.routes {
            r.set_epoch(epoch);
        }
    }

    /// Returns to the pools what every reader has left behind (see `RouteWriter::reclaim`).
    pub fn reclaim(&mut self, quiescent: u64) -> usize {
        self.routes.iter_mut().map(|r| r.reclaim(quiescent)).sum()
    }

    /// Groups and records unlinked and not yet reclaimed.
    pub fn retired(&self) -> usize {
        self.routes.iter().map(RouteWriter::retired).sum()
    }
}

impl std::fmt::Debug for HopWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HopWriter")
            .field("hops", &self.next)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn on_link_gateway_and_learned_neighbours() {
        let inside = Iface {
            ipv4: Some("192.0.2.1/24".parse().unwrap()),
            gateway4: Some(ip("192.0.2.254")),
            ipv6: Some("2001:db8:1::1/64".parse().unwrap()),
            ..Default::default()
        };
        let mut w = HopWriter::new([Iface::default(), inside], HopLimits::default()).unwrap();
        let routes = w.routes();
        let macs = w.macs();
        let r = &routes[PortRole::Inside as usize];
        let gw = r.lookup(ip("203.0.113.9")).unwrap();
        assert_ne!(gw, ON_LINK);
        assert_eq!(macs.mac(gw), None, "gateway not resolved yet");
        assert_eq!(r.lookup(ip("192.0.2.10")), Some(ON_LINK));
        assert_eq!(r.lookup(ip("2001:db8:1::10")), Some(ON_LINK));
        assert_eq!(r.lookup(ip("2001:db8:2::10")), None, "no IPv6 gateway");
        assert!(
            w.learned(
                PortRole::Inside,
                ip("192.0.2.10"),
                MacAddr([2, 0, 0, 0, 0, 4])
            )
            .unwrap()
        );
        assert!(
            !w.learned(
                PortRole::Inside,
                ip("192.0.2.10"),
                MacAddr([2, 0, 0, 0, 0, 4])
            )
            .unwrap()
        );
        let h = r.lookup(ip("192.0.2.10")).unwrap();
        assert_eq!(macs.mac(h), Some(MacAddr([2, 0, 0, 0, 0, 4])));
        assert!(
            w.learned(
                PortRole::Inside,
                ip("192.0.2.254"),
                MacAddr([2, 0, 0, 0, 0, 9])
            )
            .unwrap()
        );
        assert_eq!(macs.mac(gw), Some(MacAddr([2, 0, 0, 0, 0, 9])));
        assert_eq!(
            w.towards(PortRole::Inside, ip("198.18.0.1")).unwrap(),
            (gw, ip("192.0.2.254"))
        );
        assert_eq!(
            w.towards(PortRole::Outside, ip("198.18.0.1")),
            Err(HopError::NoRoute(ip("198.18.0.1")))
        );
    }
}
