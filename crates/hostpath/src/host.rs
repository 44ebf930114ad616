//! The host stack: the appliance's own addresses on each port, answering ARP (RFC 826), Neighbor
//! Solicitations (RFC 4861) and echo requests (RFC 792, RFC 4443), learning neighbours, and
//! resolving next hops. Sans-I/O: frames in, frames and events out, time passed in.

use crate::arp::{self, ArpPacket, Operation};
use crate::counters::{Counters, IgnoreReason};
use crate::icmp::{self, EchoError};
use crate::ndisc::{self, NdiscMessage};
use crate::neighbor::{Learn, Lookup, NeighborCache, NeighborConfig};
use core::fmt;
use espada_wire::checksum::{PROTO_ICMP, PROTO_ICMPV6};
use espada_wire::ether::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, EtherError, EthernetHeader, MacAddr,
};
use espada_wire::ipv4::{self, Ipv4Packet};
use espada_wire::ipv6::{self, Ipv6Packet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

/// The role of a port (design §1: outside faces peers, inside faces cleartext networks); each
/// port is one link in the sense of RFC 4861 §2.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRole {
    /// Peer-facing port (IKE, ESP).
    Outside = 0,
    /// Cleartext-facing port.
    Inside = 1,
}

impl PortRole {
    /// Both roles (one RFC 4861 link each).
    pub const ALL: [PortRole; 2] = [PortRole::Outside, PortRole::Inside];

    fn index(self) -> usize {
        self as usize
    }

    /// `"outside"` or `"inside"`.
    pub fn name(self) -> &'static str {
        match self {
            PortRole::Outside => "outside",
            PortRole::Inside => "inside",
        }
    }
}

impl fmt::Display for PortRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An IPv4 interface address with its on-link prefix length (RFC 4632 notation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// True if `ip` is in this prefix (on-link, RFC 1122 §3.3.1.1). An invalid prefix length
    /// (> 32) contains nothing.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        if self.prefix_len > 32 {
            return false;
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(self.addr) & mask == u32::from(ip) & mask
    }

    /// True if `ip` is a host address of this prefix: inside it and, for prefixes shorter than
    /// /31, neither the network nor the directed-broadcast address (RFC 1122 §3.2.1.3,
    /// RFC 3021 for /31).
    pub fn contains_host(&self, ip: Ipv4Addr) -> bool {
        if !self.contains(ip) {
            return false;
        }
        if self.prefix_len >= 31 {
            return true;
        }
        let host_mask = u32::MAX
            .checked_shr(u32::from(self.prefix_len))
            .unwrap_or(0);
        let host = u32::from(ip) & host_mask;
        host != 0 && host != host_mask
    }
}

/// An IPv6 interface address with its on-link prefix length (RFC 4291 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Cidr {
    /// The address.
    pub addr: Ipv6Addr,
    /// Prefix length, 0..=128.
    pub prefix_len: u8,
}

impl Ipv6Cidr {
    /// True if `ip` is in this prefix (on-link, RFC 4861 §5.2). An invalid prefix length
    /// (> 128) contains nothing.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        if self.prefix_len > 128 {
            return false;
        }
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u128::from(self.addr) & mask == u128::from(ip) & mask
    }
}

/// Addresses of one port: its MAC (RFC 826 hardware address), IPv4 and IPv6 interface
/// addresses with on-link prefixes (RFC 1122 §3.3.1.1, RFC 4861 §5.2) and default gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// The port's MAC address.
    pub mac: MacAddr,
    /// Its IPv4 address and prefix, if any.
    pub ipv4: Option<Ipv4Cidr>,
    /// Its IPv6 address and prefix, if any.
    pub ipv6: Option<Ipv6Cidr>,
    /// IPv4 default gateway (must be on-link).
    pub gateway_v4: Option<Ipv4Addr>,
    /// IPv6 default gateway (must be on-link).
    pub gateway_v6: Option<Ipv6Addr>,
}

/// Configuration of the host stack (addresses per port, RFC 4861 neighbour cache tunables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// The outside port.
    pub outside: PortConfig,
    /// The inside port.
    pub inside: PortConfig,
    /// Neighbour cache tunables (both ports).
    pub neighbor: NeighborConfig,
    /// Set the Router flag in Neighbor Advertisements (RFC 4861 §4.4): the appliance forwards.
    pub router: bool,
}

/// Why a [`HostConfig`] is rejected (gateways must be on-link, RFC 1122 §3.3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A prefix length exceeds 32 (IPv4) or 128 (IPv6).
    PrefixLength(PortRole),
    /// A gateway is given for a family without an address on the port.
    GatewayWithoutAddress(PortRole),
    /// A gateway is not inside the port's on-link prefix.
    GatewayNotOnLink(PortRole, IpAddr),
    /// The port MAC is not a unicast address.
    BadMac(PortRole),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::PrefixLength(p) => write!(f, "{p} port: prefix length out of range"),
            ConfigError::GatewayWithoutAddress(p) => {
                write!(f, "{p} port: gateway given but no address of that family")
            }
            ConfigError::GatewayNotOnLink(p, g) => {
                write!(f, "{p} port: gateway {g} is not in the port's prefix")
            }
            ConfigError::BadMac(p) => write!(f, "{p} port: MAC address is not unicast"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A frame to transmit on a port's control TX queue (design §3 "Exception path"): an ARP
/// (RFC 826), ND (RFC 4861) or ICMP (RFC 792, RFC 4443) answer or request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Port to send on.
    pub port: PortRole,
    /// Complete Ethernet frame (without FCS).
    pub frame: Vec<u8>,
}

/// Something the rest of the control plane should know about: neighbour changes (RFC 826
/// merge, RFC 4861 §7.2.5) and address conflicts (RFC 5227).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// A neighbour's MAC became known or changed: republish the data plane's copy.
    NeighborLearned {
        /// Port it was learned on.
        port: PortRole,
        /// Its IP address.
        ip: IpAddr,
        /// Its MAC address.
        mac: MacAddr,
    },
    /// Another station claims one of our addresses (RFC 5227 §2.4, RFC 4862 §5.4.4).
    AddressConflict {
        /// Port it was seen on.
        port: PortRole,
        /// Our address.
        ip: IpAddr,
        /// The other station's MAC.
        mac: MacAddr,
    },
}

/// Frames and events produced by one call (RFC 826/4861/792/4443 answers and requests); the
/// caller drains and reuses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostOutput {
    /// Frames to transmit.
    pub frames: Vec<Outgoing>,
    /// Events to act on.
    pub events: Vec<HostEvent>,
}

impl HostOutput {
    /// Empties both lists, keeping their allocations (no per-call allocation once warm).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.events.clear();
    }
}

/// What [`HostStack::handle_frame`] did with a frame, for the caller's accounting (RFC 1122
/// §3.2.2: silent discards are still counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// An answer was queued (ARP reply, NA, echo reply); neighbours may also have been learned.
    Replied,
    /// Nothing was sent but the neighbour cache was updated.
    Learned,
    /// Dropped, for this reason.
    Ignored(IgnoreReason),
}

/// The host stack for the appliance's ports (RFC 826, RFC 4861, RFC 792, RFC 4443).
#[derive(Clone, Debug)]
pub struct HostStack {
    config: HostConfig,
    caches: [NeighborCache; 2],
    counters: Counters,
}

fn validate_port(role: PortRole, p: &PortConfig) -> Result<(), ConfigError> {
    if !p.mac.is_unicast() {
        return Err(ConfigError::BadMac(role));
    }
    if p.ipv4.is_some_and(|c| c.prefix_len > 32) || p.ipv6.is_some_and(|c| c.prefix_len > 128) {
        return Err(ConfigError::PrefixLength(role));
    }
    if let Some(g) = p.gateway_v4 {
        let c = p.ipv4.ok_or(ConfigError::GatewayWithoutAddress(role))?;
        if !c.contains(g) || g == c.addr {
            return Err(ConfigError::GatewayNotOnLink(role, g.into()));
        }
    }
    if let Some(g) = p.gateway_v6 {
        let c = p.ipv6.ok_or(ConfigError::GatewayWithoutAddress(role))?;
        // Link-local gateways are always on-link (RFC 4861 §2.1, as learned from RAs).
        if !(c.contains(g) || g.is_unicast_link_local()) || g == c.addr {
            return Err(ConfigError::GatewayNotOnLink(role, g.into()));
        }
    }
    Ok(())
}

impl HostStack {
    /// Builds the stack after checking the configuration (unicast MACs, prefix lengths,
    /// on-link gateways per RFC 1122 §3.3.1.1 / RFC 4861 §5.2).
    pub fn new(config: HostConfig) -> Result<Self, ConfigError> {
        validate_port(PortRole::Outside, &config.outside)?;
        validate_port(PortRole::Inside, &config.inside)?;
        Ok(HostStack {
            caches: [
                NeighborCache::new(config.neighbor),
                NeighborCache::new(config.neighbor),
            ],
            config,
            counters: Counters::default(),
        })
    }

    /// The configuration (addresses per RFC 1122 §3.3.1.1 / RFC 4861 §5.2).
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The addresses of `port` (its RFC 826 hardware address and IP interface addresses).
    pub fn port(&self, port: PortRole) -> &PortConfig {
        match port {
            PortRole::Outside => &self.config.outside,
            PortRole::Inside => &self.config.inside,
        }
    }

    /// The neighbour cache of `port` (RFC 4861 §7.3), for `show` and for publishing to the
    /// data plane.
    pub fn neighbors(&self, port: PortRole) -> &NeighborCache {
        &self.caches[port.index()]
    }

    /// The counters of ARP (RFC 826), ND (RFC 4861) and ICMP (RFC 792, RFC 4443) handling.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Handles one punted frame received on `port` at `now`, queueing answers and events in
    /// `out`: ARP requests for our address are answered (RFC 826), NS for our address get an NA
    /// (RFC 4861 §7.2.4), echo requests to our address get replies (RFC 792, RFC 4443 §4), and
    /// neighbours are learned by the RFC 826 merge rule. Never panics, whatever the bytes.
    pub fn handle_frame(
        &mut self,
        port: PortRole,
        frame: &[u8],
        now: Instant,
        out: &mut HostOutput,
    ) -> Handled {
        let handled = self.dispatch(port, frame, now, out);
        if let Handled::Ignored(r) = handled {
            self.counters.count_ignored(r);
        }
        handled
    }

    fn dispatch(
        &mut self,
        port: PortRole,
        frame: &[u8],
        now: Instant,
        out: &mut HostOutput,
    ) -> Handled {
        let (eth, payload) = match EthernetHeader::parse(frame) {
            Ok(x) => x,
            Err(EtherError::Truncated) => return Handled::Ignored(IgnoreReason::EtherTruncated),
            Err(EtherError::VlanTagged(_)) => return Handled::Ignored(IgnoreReason::VlanTagged),
            Err(EtherError::NotEthernetII(_)) => {
                return Handled::Ignored(IgnoreReason::NotEthernetII);
            }
        };
        let pc = *self.port(port);
        if eth.dst != pc.mac && !eth.dst.is_multicast() {
            return Handled::Ignored(IgnoreReason::NotOurMac);
        }
        if eth.src == pc.mac {
            return Handled::Ignored(IgnoreReason::FromSelf);
        }
        // IEEE 802: source addresses are individual; a group or zero source is never answered.
        if !eth.src.is_unicast() {
            return Handled::Ignored(IgnoreReason::BadSource);
        }
        match eth.ethertype {
            ETHERTYPE_ARP => self.handle_arp(port, &pc, payload, now, out),
            ETHERTYPE_IPV4 => self.handle_ipv4(port, &pc, &eth, payload, out),
            ETHERTYPE_IPV6 => self.handle_ipv6(port, &pc, &eth, payload, now, out),
            _ => Handled::Ignored(IgnoreReason::UnsupportedEthertype),
        }
    }

    fn handle_arp(
        &mut self,
        port: PortRole,
        pc: &PortConfig,
        payload: &[u8],
        now: Instant,
        out: &mut HostOutput,
    ) -> Handled {
        let Ok(pkt) = ArpPacket::parse(payload) else {
            return Handled::Ignored(IgnoreReason::ArpMalformed);
        };
        let Some(ours) = pc.ipv4 else {
            return Handled::Ignored(IgnoreReason::NoAddress);
        };
        if pkt.sender_mac == pc.mac {
            return Handled::Ignored(IgnoreReason::FromSelf);
        }
        if !pkt.sender_mac.is_unicast() {
            return Handled::Ignored(IgnoreReason::BadSource);
        }
        if pkt.sender_ip == ours.addr {
            out.events.push(HostEvent::AddressConflict {
                port,
                ip: ours.addr.into(),
                mac: pkt.sender_mac,
            });
            return Handled::Ignored(IgnoreReason::AddressConflict);
        }
        // Only learn plausible on-link unicast neighbours (not 0.0.0.0 probes, not
        // broadcast/multicast hardware addresses).
        let learnable = !ipv4::is_bad_source(pkt.sender_ip) && ours.contains_host(pkt.sender_ip);
        let sender = IpAddr::V4(pkt.sender_ip);
        let cache = &mut self.caches[port.index()];
        let for_us = pkt.target_ip == ours.addr;
        // RFC 826: merge into an existing entry always; add a new one only if we are the target.
        let learned = match (learnable, for_us) {
            (false, _) => Learn::NotPresent,
            (true, true) => cache.learn(sender, pkt.sender_mac, now),
            (true, false) => cache.merge(sender, pkt.sender_mac, now),
        };
        note_learned(port, sender, pkt.sender_mac, learned, out);
        if for_us
            && pkt.op == Operation::Request
            && let Some(frame) = arp::build_reply(&pkt, pc.mac)
        {
            out.frames.push(Outgoing { port, frame });
            self.counters.arp_replied += 1;
            return Handled::Replied;
        }
        if learned == Learn::NotPresent {
            Handled::Ignored(IgnoreReason::ArpNotForUs)
        } else {
            self.counters.arp_learned += 1;
            Handled::Learned
        }
    }

    fn handle_ipv4(
        &mut self,
        port: PortRole,
        pc: &PortConfig,
        eth: &EthernetHeader,
        payload: &[u8],
        out: &mut HostOutput,
    ) -> Handled {
        let Ok(ip) = Ipv4Packet::parse(payload) else {
            return Handled::Ignored(IgnoreReason::Ipv4Malformed);
        };
        let Some(ours) = pc.ipv4 else {
            return Handled::Ignored(IgnoreReason::NoAddress);
        };
        if ip.dst() != ours.addr {
            return Handled::Ignored(IgnoreReason::Ipv4NotForUs);
        }
        if ip.protocol() != PROTO_ICMP {
            return Handled::Ignored(IgnoreReason::Ipv4UnsupportedProtocol);
        }
        match icmp::echo_reply_v4(&ip, pc.mac, eth.src) {
            Ok(frame) => {
                out.frames.push(Outgoing { port, frame });
                self.counters.icmp_echo_replied += 1;
                Handled::Replied
            }
            Err(e) => Handled::Ignored(echo_reason(e)),
        }
    }

    fn handle_ipv6(
        &mut self,
        port: PortRole,
        pc: &PortConfig,
        eth: &EthernetHeader,
        payload: &[u8],
        now: Instant,
        out: &mut HostOutput,
    ) -> Handled {
        let Ok(ip) = Ipv6Packet::parse(payload) else {
            return Handled::Ignored(IgnoreReason::Ipv6Malformed);
        };
        let Some(ours) = pc.ipv6 else {
            return Handled::Ignored(IgnoreReason::NoAddress);
        };
        let to_us = ip.dst() == ours.addr;
        if !to_us && ip.dst() != ipv6::solicited_node(ours.addr) && ip.dst() != ipv6::ALL_NODES {
            return Handled::Ignored(IgnoreReason::Ipv6NotForUs);
        }
        if ip.next_header() != PROTO_ICMPV6 {
            return Handled::Ignored(IgnoreReason::Ipv6UnsupportedNextHeader);
        }
        match ip.payload().first().copied() {
            Some(ndisc::TYPE_NEIGHBOR_SOLICIT | ndisc::TYPE_NEIGHBOR_ADVERT) => {
                self.handle_ndisc(port, pc, ours, eth, &ip, now, out)
            }
            Some(icmp::ICMPV6_ECHO_REQUEST) if to_us => {
                match icmp::echo_reply_v6(&ip, pc.mac, eth.src) {
                    Ok(frame) => {
                        out.frames.push(Outgoing { port, frame });
                        self.counters.icmpv6_echo_replied += 1;
                        Handled::Replied
                    }
                    Err(e) => Handled::Ignored(echo_reason(e)),
                }
            }
            // Echo to all-nodes / solicited-node multicast is not answered.
            Some(icmp::ICMPV6_ECHO_REQUEST) => Handled::Ignored(IgnoreReason::Ipv6NotForUs),
            Some(_) => Handled::Ignored(IgnoreReason::Icmpv6UnsupportedType),
            None => Handled::Ignored(IgnoreReason::IcmpMalformed),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_ndisc(
        &mut self,
        port: PortRole,
        pc: &PortConfig,
        ours: Ipv6Cidr,
        eth: &EthernetHeader,
        ip: &Ipv6Packet<&'_ [u8]>,
        now: Instant,
        out: &mut HostOutput,
    ) -> Handled {
        let Ok(msg) = ndisc::parse(ip) else {
            return Handled::Ignored(IgnoreReason::NdInvalid);
        };
        let cache = &mut self.caches[port.index()];
        match msg {
            NdiscMessage::Solicit(ns) => {
                if ns.source_ll.is_some_and(|m| !m.is_unicast()) {
                    return Handled::Ignored(IgnoreReason::NdInvalid);
                }
                let for_us = ns.target == ours.addr;
                // RFC 4861 §7.2.3: a specified source with an SLLAO updates the cache.
                let learned = match ns.source_ll {
                    Some(mac) if !ns.src.is_unspecified() && mac.is_unicast() && mac != pc.mac => {
                        let src = IpAddr::V6(ns.src);
                        let l = if for_us {
                            cache.learn(src, mac, now)
                        } else {
                            cache.merge(src, mac, now)
                        };
                        note_learned(port, src, mac, l, out);
                        l
                    }
                    _ => Learn::NotPresent,
                };
                if for_us {
                    let frame = ndisc::build_advert_reply(&ns, eth.src, pc.mac, self.config.router);
                    out.frames.push(Outgoing { port, frame });
                    self.counters.nd_replied += 1;
                    Handled::Replied
                } else if learned != Learn::NotPresent {
                    self.counters.nd_learned += 1;
                    Handled::Learned
                } else {
                    Handled::Ignored(IgnoreReason::NdNotForUs)
                }
            }
            NdiscMessage::Advert(na) => {
                let Some(mac) = na.target_ll.filter(MacAddr::is_unicast) else {
                    return Handled::Ignored(IgnoreReason::NdUnsolicited);
                };
                if na.target == ours.addr {
                    out.events.push(HostEvent::AddressConflict {
                        port,
                        ip: ours.addr.into(),
                        mac,
                    });
                    return Handled::Ignored(IgnoreReason::AddressConflict);
                }
                let target = IpAddr::V6(na.target);
                // RFC 4861 §7.2.5: without Override, a different cached address is kept.
                let cached = cache.get(target).and_then(|e| e.mac);
                if !na.flags.override_ && cached.is_some_and(|m| m != mac) {
                    return Handled::Ignored(IgnoreReason::NdUnsolicited);
                }
                // §7.2.5: an NA never creates an entry.
                let l = cache.merge(target, mac, now);
                note_learned(port, target, mac, l, out);
                if l == Learn::NotPresent {
                    Handled::Ignored(IgnoreReason::NdUnsolicited)
                } else {
                    self.counters.nd_learned += 1;
                    Handled::Learned
                }
            }
        }
    }

    /// The next hop for `dst` leaving by `port`: `dst` itself when on-link, else the port's
    /// gateway of that family (RFC 1122 §3.3.1.1, RFC 4861 §5.2); `None` if there is no route.
    pub fn next_hop(&self, port: PortRole, dst: IpAddr) -> Option<IpAddr> {
        let pc = self.port(port);
        match dst {
            IpAddr::V4(d) => {
                let c = pc.ipv4?;
                if c.contains(d) {
                    Some(dst)
                } else {
                    pc.gateway_v4.map(IpAddr::V4)
                }
            }
            IpAddr::V6(d) => {
                let c = pc.ipv6?;
                if c.contains(d) || d.is_unicast_link_local() {
                    Some(dst)
                } else {
                    pc.gateway_v6.map(IpAddr::V6)
                }
            }
        }
    }

    /// The MAC of on-link neighbour `ip` on `port`, if known. Queues an ARP request (RFC 826) or
    /// Neighbor Solicitation (RFC 4861 §7.2.2) in `out` when one is due: broadcast/multicast
    /// for an unknown neighbour, unicast to confirm a stale one. Returns `None` (and sends
    /// nothing) for our own addresses, off-link or non-unicast addresses, or a family the port
    /// has no address for.
    pub fn resolve(
        &mut self,
        port: PortRole,
        ip: IpAddr,
        now: Instant,
        out: &mut HostOutput,
    ) -> Option<MacAddr> {
        let pc = *self.port(port);
        let cache = &mut self.caches[port.index()];
        match ip {
            IpAddr::V4(t) => {
                let ours = pc.ipv4?;
                if t == ours.addr || ipv4::is_bad_source(t) || !ours.contains_host(t) {
                    return None;
                }
                let l = cache.lookup(ip, now);
                if l.send_request() {
                    let dst = match l {
                        Lookup::Stale { mac, .. } => mac,
                        _ => MacAddr::BROADCAST,
                    };
                    let frame = arp::build_request_to(pc.mac, ours.addr, t, dst);
                    out.frames.push(Outgoing { port, frame });
                    self.counters.arp_requests_sent += 1;
                }
                l.mac()
            }
            IpAddr::V6(t) => {
                let ours = pc.ipv6?;
                if t == ours.addr
                    || ipv6::is_bad_source(t)
                    || !(ours.contains(t) || t.is_unicast_link_local())
                {
                    return None;
                }
                let l = cache.lookup(ip, now);
                if l.send_request() {
                    let unicast = match l {
                        Lookup::Stale { mac, .. } => Some(mac),
                        _ => None,
                    };
                    let frame = ndisc::build_solicit(pc.mac, ours.addr, t, unicast);
                    out.frames.push(Outgoing { port, frame });
                    self.counters.nd_solicits_sent += 1;
                }
                l.mac()
            }
        }
    }

    /// Timer work at `now`: ages both neighbour caches and retransmits due requests for
    /// unresolved neighbours (RFC 4861 §7.2.2, RFC 1122 §2.3.2.1 rate limit).
    pub fn poll(&mut self, now: Instant, out: &mut HostOutput) {
        let mut due = Vec::new();
        for port in PortRole::ALL {
            let pc = *self.port(port);
            let cache = &mut self.caches[port.index()];
            cache.expire(now);
            due.clear();
            cache.poll(now, &mut due);
            for ip in &due {
                match (*ip, pc.ipv4, pc.ipv6) {
                    (IpAddr::V4(t), Some(ours), _) => {
                        let frame = arp::build_request(pc.mac, ours.addr, t);
                        out.frames.push(Outgoing { port, frame });
                        self.counters.arp_requests_sent += 1;
                    }
                    (IpAddr::V6(t), _, Some(ours)) => {
                        let frame = ndisc::build_solicit(pc.mac, ours.addr, t, None);
                        out.frames.push(Outgoing { port, frame });
                        self.counters.nd_solicits_sent += 1;
                    }
                    _ => {}
                }
            }
        }
    }

    /// Queues announcements of `port`'s addresses: a gratuitous ARP (RFC 5227 §3) and an
    /// unsolicited Neighbor Advertisement to all-nodes with Override set (RFC 4861 §7.2.6),
    /// for start-up or after a MAC change.
    pub fn announce(&mut self, port: PortRole, out: &mut HostOutput) {
        let pc = *self.port(port);
        if let Some(c) = pc.ipv4 {
            let frame = arp::build_gratuitous(pc.mac, c.addr);
            out.frames.push(Outgoing { port, frame });
        }
        if let Some(c) = pc.ipv6 {
            let flags = ndisc::NaFlags {
                router: self.config.router,
                solicited: false,
                override_: true,
            };
            let frame = ndisc::build_advert(
                pc.mac,
                c.addr,
                ipv6::ALL_NODES,
                MacAddr::ipv6_multicast(ipv6::ALL_NODES),
                flags,
            );
            out.frames.push(Outgoing { port, frame });
        }
    }
}

/// Reports a neighbour whose MAC became known or changed.
fn note_learned(port: PortRole, ip: IpAddr, mac: MacAddr, l: Learn, out: &mut HostOutput) {
    if l.is_news() {
        out.events
            .push(HostEvent::NeighborLearned { port, ip, mac });
    }
}

fn echo_reason(e: EchoError) -> IgnoreReason {
    match e {
        EchoError::NotIcmp => IgnoreReason::Ipv6UnsupportedNextHeader,
        EchoError::NotEchoRequest(_) => IgnoreReason::IcmpUnsupportedType,
        EchoError::Truncated | EchoError::Checksum => IgnoreReason::IcmpMalformed,
        EchoError::Fragment => IgnoreReason::Ipv4Fragment,
        EchoError::BadSource => IgnoreReason::BadSource,
    }
}
