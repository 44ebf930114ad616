//! The per-packet stages of a worker, as pure functions over any [`PacketBuf`]: each returns a
//! [`Verdict`] and the worker's burst loop acts on it (TX, handoff ring, punt ring, free).
//! Generic over the buffer so the same code runs on DPDK mbufs and, in tests, on `VecBuf`.
//!
//! | stage | input (data starts at) | does |
//! |---|---|---|
//! | [`outside_frame`] | Ethernet | ARP → punt; IP to us: ESP → [`esp_in`], NAT-T keepalive → consumed, IKE → punt, ICMP error about our ESP → tunnel, other ICMP → punt |
//! | [`esp_in`] | outer IP | SPI → owner (handoff) / SA (decap) / unknown (classify); inner policy; L2 to inside |
//! | [`inside_frame`] | Ethernet | ARP and packets to the box → punt; else [`clear_out`] |
//! | [`clear_out`] | inner IP | selectors → tunnel → outbound SA owner (handoff) / encap; L2 to outside |

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use espada_buf::PacketBuf;
use espada_esp::icmp::parse_icmp_error;
use espada_esp::{Class, DropReason, InnerProto, classify};

use crate::PortRole;
use crate::drops::{DpDrop, Why};
use crate::eth::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::events::{Event, UnknownSpi, UnknownSpiClass};
use crate::slab::Slab;
use crate::stats::{Counter, WorkerStats};
use crate::tables::{Tables, Tunnel};

/// Which stage the owner runs on a handed-off packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffKind {
    /// Inbound ESP (data at the outer IP header) → [`esp_in`].
    Inbound = 0,
    /// Outbound cleartext (data at the inner IP header) → [`clear_out`].
    Outbound = 1,
}

/// What to do with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on the port (data starts at a complete Ethernet header).
    Tx(PortRole),
    /// Give it to the worker that owns its SA.
    Handoff {
        /// Owner worker.
        owner: u16,
        /// Stage to run there.
        kind: HandoffKind,
    },
    /// Give it to the control thread (data starts at the Ethernet header it arrived with).
    Punt(PortRole),
    /// Used up without being a drop (NAT-T keepalive).
    Consumed,
    /// Drop and count.
    Drop(Why),
}

/// What the stages need from their worker.
pub struct Ctx<'a> {
    /// This worker's index.
    pub me: u16,
    /// The current tables.
    pub t: &'a Tables,
    /// This worker's SAs.
    pub sas: &'a mut Slab,
    /// This worker's counters.
    pub stats: &'a WorkerStats,
    /// Events to the control thread.
    pub events: &'a mut rtrb::Producer<Event>,
}

impl Ctx<'_> {
    #[inline]
    fn event(&mut self, e: Event) {
        if self.events.push(e).is_err() {
            self.stats.add(Counter::EventsLost, 1);
        }
    }
}

#[inline]
fn drop_esp(r: DropReason) -> Verdict {
    Verdict::Drop(Why::Esp(r))
}

#[inline]
fn drop_dp(d: DpDrop) -> Verdict {
    Verdict::Drop(Why::Dp(d))
}

/// Source and destination of an IPv4 or IPv6 packet.
#[inline]
pub fn ip_addrs(p: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let s: [u8; 4] = p[12..16].try_into().ok()?;
            let d: [u8; 4] = p[16..20].try_into().ok()?;
            Some((Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into()))
        }
        6 if p.len() >= 40 => {
            let s: [u8; 16] = p[8..24].try_into().ok()?;
            let d: [u8; 16] = p[24..40].try_into().ok()?;
            Some((Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into()))
        }
        _ => None,
    }
}

/// Strips the Ethernet header of an IP frame, or says what to do with a frame that is not IP.
#[inline]
fn strip_ethernet<B: PacketBuf>(m: &mut B, port: PortRole) -> Option<Verdict> {
    match eth::ethertype(m.data()) {
        None => Some(drop_dp(DpDrop::BadEthernet)),
        Some(ETHERTYPE_ARP) => Some(Verdict::Punt(port)),
        Some(ETHERTYPE_IPV4 | ETHERTYPE_IPV6) => {
            m.adj(eth::HEADER_LEN);
            None
        }
        Some(eth::ETHERTYPE_VLAN) => Some(drop_dp(DpDrop::BadEthernet)),
        Some(_) => Some(drop_dp(DpDrop::NotIp)),
    }
}

/// Puts back the Ethernet header [`strip_ethernet`] removed (the bytes are still in place) and
/// punts the frame.
#[inline]
fn punt<B: PacketBuf>(m: &mut B, port: PortRole) -> Verdict {
    m.prepend(eth::HEADER_LEN);
    Verdict::Punt(port)
}

/// Adds the Ethernet header towards `dst` on `port`, or reports the missing neighbour.
#[inline]
fn to_port<B: PacketBuf>(
    m: &mut B,
    cx: &mut Ctx<'_>,
    port: PortRole,
    dst: IpAddr,
    inner: InnerProto,
) -> Verdict {
    let mac = match cx.t.neighbor_for(port, dst) {
        Ok(mac) => mac,
        Err(Some(hop)) => {
            cx.event(Event::NeighborMiss { port, ip: hop });
            return drop_dp(DpDrop::NoNeighbor);
        }
        Err(None) => return drop_dp(DpDrop::NoRoute),
    };
    let ethertype = match inner {
        InnerProto::V4 => ETHERTYPE_IPV4,
        InnerProto::V6 => ETHERTYPE_IPV6,
    };
    let src = cx.t.port(port).mac;
    match m.prepend(eth::HEADER_LEN) {
        Some(h) => {
            eth::write_header(h, mac, src, ethertype);
            Verdict::Tx(port)
        }
        None => drop_esp(DropReason::NoHeadroom),
    }
}

/// A frame received on the outside port.
pub fn outside_frame<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>) -> Verdict {
    if let Some(v) = strip_ethernet(m, PortRole::Outside) {
        return v;
    }
    let Some((src, dst)) = ip_addrs(m.data()) else {
        return drop_esp(DropReason::BadOuterHeader);
    };
    let ours = cx.t.port(PortRole::Outside).is_local(dst);
    let class = match classify(m.data()) {
        Ok(c) => c,
        Err(r) => return drop_esp(r),
    };
    match class {
        // IPv6 neighbour discovery goes to multicast or to us: the control thread decides.
        Class::Icmp { .. } if !ours => match dst {
            IpAddr::V6(a) if a.is_multicast() => punt(m, PortRole::Outside),
            _ => drop_dp(DpDrop::NotForUs),
        },
        _ if !ours => drop_dp(DpDrop::NotForUs),
        Class::Esp {
            spi,
            seq,
            udp_encap,
            ..
        } => esp_classified(
            m,
            cx,
            false,
            EspFacts {
                src,
                dst,
                spi,
                seq,
                udp_encap,
            },
        ),
        Class::NatKeepalive => {
            cx.stats.add(Counter::NattKeepalives, 1);
            Verdict::Consumed
        }
        Class::Ike { .. } | Class::IkeNonEsp { .. } => punt(m, PortRole::Outside),
        Class::Icmp { .. } => icmp_in(m, cx, src),
        Class::Fragment => drop_esp(DropReason::OuterFragment),
        Class::Other { .. } => drop_dp(DpDrop::OtherProtocol),
    }
}

/// ICMP to the box on the outside port: an error about an ESP packet we sent is accounted to
/// its tunnel (PMTU), never treated as ESP with a bad SPI; anything else goes to the control
/// thread (echo, neighbour discovery).
fn icmp_in<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, _src: IpAddr) -> Verdict {
    let Ok(e) = parse_icmp_error(m.data()) else {
        return punt(m, PortRole::Outside);
    };
    let by_spi = e.spi.and_then(|spi| cx.t.outbound_spis.get(&spi).copied());
    // A quote of UDP-encapsulated ESP may be too short to hold the SPI: fall back to the peer.
    let tunnel = by_spi.or_else(|| e.udp_ports.and(cx.t.peers.get(&e.dst).copied()));
    match tunnel {
        Some(tunnel) if cx.t.port(PortRole::Outside).is_local(e.src) => {
            cx.event(Event::IcmpError {
                tunnel,
                kind: e.kind,
            });
            drop_dp(DpDrop::IcmpErrorForTunnel)
        }
        _ => punt(m, PortRole::Outside),
    }
}

/// What classification learned of an ESP packet.
#[derive(Clone, Copy)]
struct EspFacts {
    src: IpAddr,
    dst: IpAddr,
    spi: u32,
    seq: u32,
    udp_encap: bool,
}

/// An ESP packet (data at the outer IP header) handed over by another worker: classify it,
/// then [`esp_classified`].
pub fn esp_in<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, handed_off: bool) -> Verdict {
    let Some((src, dst)) = ip_addrs(m.data()) else {
        return drop_esp(DropReason::BadOuterHeader);
    };
    match classify(m.data()) {
        Ok(Class::Esp {
            spi,
            seq,
            udp_encap,
            ..
        }) => esp_classified(
            m,
            cx,
            handed_off,
            EspFacts {
                src,
                dst,
                spi,
                seq,
                udp_encap,
            },
        ),
        Ok(_) => drop_esp(DropReason::NotEsp),
        Err(r) => drop_esp(r),
    }
}

/// A classified ESP packet: decapsulate it if this worker owns its SA, hand it to the owner
/// otherwise, classify the SPI when no SA has it.
fn esp_classified<B: PacketBuf>(
    m: &mut B,
    cx: &mut Ctx<'_>,
    handed_off: bool,
    f: EspFacts,
) -> Verdict {
    let EspFacts {
        src,
        dst,
        spi,
        seq,
        udp_encap,
    } = f;
    let Some(entry) = cx.t.inbound.get(&spi).copied() else {
        return unknown_spi(
            cx,
            UnknownSpi {
                class: UnknownSpiClass::UnknownSource,
                src,
                dst,
                spi,
                seq,
                len: m.len() as u32,
                udp_encap,
                port: PortRole::Outside,
            },
        );
    };
    match (entry.sa.owner == cx.me, handed_off) {
        (true, _) => {}
        (false, false) => {
            return Verdict::Handoff {
                owner: entry.sa.owner,
                kind: HandoffKind::Inbound,
            };
        }
        (false, true) => return drop_dp(DpDrop::NotOwner),
    }
    let Some(sa) = cx.sas.inbound(entry.sa.slot) else {
        return drop_dp(DpDrop::NotOwner);
    };
    let p = match sa.decap(m) {
        Ok(p) => p,
        Err(r) => return drop_esp(r),
    };
    cx.stats.add(Counter::EspDecap, 1);
    if p.soft_expired {
        cx.event(Event::SoftExpired {
            tunnel: entry.tunnel,
            spi,
            inbound: true,
        });
    }
    let tun: &Tunnel = &cx.t.tunnels[entry.tunnel as usize];
    let Some((isrc, idst)) = ip_addrs(m.data()) else {
        return drop_esp(DropReason::BadInnerHeader);
    };
    if !Tunnel::selects(&tun.remote_ts, isrc) || !Tunnel::selects(&tun.local_ts, idst) {
        return drop_dp(DpDrop::PolicyMismatch);
    }
    to_port(m, cx, PortRole::Inside, idst, p.inner)
}

fn unknown_spi(cx: &mut Ctx<'_>, mut u: UnknownSpi) -> Verdict {
    let (class, drop) = if cx.t.tombstones.contains_key(&u.spi) {
        (UnknownSpiClass::Tombstone, DpDrop::UnknownSpiTombstone)
    } else if cx.t.peers.contains_key(&u.src) {
        (UnknownSpiClass::KnownPeer, DpDrop::UnknownSpiKnownPeer)
    } else {
        (
            UnknownSpiClass::UnknownSource,
            DpDrop::UnknownSpiUnknownSource,
        )
    };
    u.class = class;
    cx.event(Event::UnknownSpi(u));
    drop_dp(drop)
}

/// A frame received on the inside port.
pub fn inside_frame<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>) -> Verdict {
    if let Some(v) = strip_ethernet(m, PortRole::Inside) {
        return v;
    }
    let Some((_, dst)) = ip_addrs(m.data()) else {
        return drop_dp(DpDrop::BadIpHeader);
    };
    let to_box = cx.t.port(PortRole::Inside).is_local(dst)
        || matches!(dst, IpAddr::V6(a) if a.is_multicast())
        || matches!(dst, IpAddr::V4(a) if a.is_broadcast() || a.is_multicast());
    if to_box {
        return punt(m, PortRole::Inside);
    }
    clear_out(m, cx, false)
}

/// A cleartext packet (data at the inner IP header): find its tunnel by the selectors and
/// encapsulate it if this worker owns the tunnel's outbound SA, else hand it to the owner.
pub fn clear_out<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, handed_off: bool) -> Verdict {
    let Some((src, dst)) = ip_addrs(m.data()) else {
        return drop_dp(DpDrop::BadIpHeader);
    };
    let Some(id) = cx.t.routes.lookup(dst) else {
        return drop_dp(DpDrop::NoRoute);
    };
    let tun = &cx.t.tunnels[id as usize];
    if !Tunnel::selects(&tun.local_ts, src) {
        return drop_dp(DpDrop::PolicyMismatch);
    }
    let Some((spi, sa_ref)) = tun.outbound else {
        return drop_dp(DpDrop::NoOutboundSa);
    };
    match (sa_ref.owner == cx.me, handed_off) {
        (true, _) => {}
        (false, false) => {
            return Verdict::Handoff {
                owner: sa_ref.owner,
                kind: HandoffKind::Outbound,
            };
        }
        (false, true) => return drop_dp(DpDrop::NotOwner),
    }
    let peer = tun.peer;
    let Some(sa) = cx.sas.outbound(sa_ref.slot) else {
        return drop_dp(DpDrop::NoOutboundSa);
    };
    let p = match sa.encap(m) {
        Ok(p) => p,
        Err(r) => return drop_esp(r),
    };
    cx.stats.add(Counter::EspEncap, 1);
    if p.soft_expired {
        cx.event(Event::SoftExpired {
            tunnel: id,
            spi,
            inbound: false,
        });
    }
    let outer = if peer.is_ipv6() {
        InnerProto::V6
    } else {
        InnerProto::V4
    };
    to_port(m, cx, PortRole::Outside, peer, outer)
}
