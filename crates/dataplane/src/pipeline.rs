//! The per-packet stages of a worker, as pure functions over any [`PacketBuf`]: each returns a
//! [`Verdict`] and the worker's burst loop acts on it (TX, handoff ring, punt ring, free).
//! Generic over the buffer so the same code runs on DPDK mbufs and, in tests, on `VecBuf`.
//!
//! | stage | input (data starts at) | does |
//! |---|---|---|
//! | [`outside_frame`] | Ethernet | ARP → punt; IP to us: ESP → [`esp_in`], NAT-T keepalive → consumed, IKE → punt, ICMP error about our ESP → tunnel, other ICMP → punt |
//! | [`esp_in`] | outer IP | SPI → owner (handoff) / SA (decap) / unknown (classify); inner policy; L2 to inside |
//! | [`inside_frame`] | Ethernet | ARP and packets to the box → punt; else [`clear_out`] |
//! | [`clear_out`] | inner IP | selectors → tunnel → outbound SA owner (handoff) / encap; L2 to outside; too big: ICMP (DF, IPv6) or [`Verdict::Fragment`] |
//! | [`fragment_out`] | inner IP | fragment before or after encryption ([`crate::fragment`]); each piece framed to outside |

use std::net::IpAddr;

use espada_buf::PacketBuf;
use espada_esp::icmp::parse_icmp_error;
use espada_esp::{Class, DropReason, InnerProto, OutboundSa, Processed, classify};

use crate::PortRole;
use crate::drops::{DpDrop, Why};
use crate::eth::MacAddr;
use crate::eth::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::events::{Event, Notice, NoticeKind, SampleBudget, UnknownSpi, UnknownSpiClass};
use crate::forward::{self, Hop, IcmpError};
use crate::fragment::{self, Unfit};
use crate::reasm::{self, Outcome, Reassembly};
use crate::slab::{InboundSlot, Slab};
use crate::stats::{Counter, WorkerStats};
use crate::tables::{L2Miss, Tables};
use crate::tunnels::Fragmentation;
use espada_lookup::sad::Lookup;
use espada_wire::ip;
use espada_wire::ipv4::{self, Ipv4Packet};

/// Which stage the owner runs on a handed-off packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffKind {
    /// Inbound ESP or an outer fragment (data at the outer IP header) → [`esp_in`].
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
    /// Too big for its tunnel and may be fragmented: the worker gives it to [`fragment_out`]
    /// (data at the inner IP header, TTL already decremented).
    Fragment(Oversize),
    /// Drop and count.
    Drop(Why),
}

// A verdict fits one register: returned in it, not through memory, where the caller's wider
// loads of fields just stored one by one stalled (store-forwarding, ~4 % of a 1-SA decrypt).
const _: () = assert!(core::mem::size_of::<Option<Verdict>>() == 8);

/// A cleartext packet that [`clear_out`] found too big for its tunnel and allowed to be
/// fragmented. The largest inner packet that fits is [`inner_limit`] of the SA and `mtu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Oversize {
    /// The slab slot of the tunnel's outbound SA (on this worker).
    pub slot: u32,
    /// The tunnel's path MTU (outer IP bytes).
    pub mtu: u16,
    /// Where to fragment.
    pub at: Fragmentation,
}

/// The packets one packet became: the first, then the others, each with its verdict.
pub type Pieces<B> = [Option<(B, Verdict)>; fragment::MAX_PIECES];

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
    /// Events to the control thread (samples; may be lost).
    pub events: &'a mut rtrb::Producer<Event>,
    /// Lifetime notices to the control thread (must arrive).
    pub notices: &'a mut rtrb::Producer<Notice>,
    /// Budget of sampled events (unknown-SPI samples, acquires).
    pub samples: &'a mut SampleBudget,
    /// This worker's outer reassembly.
    pub reasm: &'a mut Reassembly,
    /// The worker's clock this loop turn (TSC cycles; the reassembly timeout is in them).
    pub now: u64,
    /// The identification of the next IPv6 packet this worker fragments (RFC 8200 §4.5).
    pub ident: &'a mut u32,
}

impl Ctx<'_> {
    #[inline]
    fn event(&mut self, e: Event) {
        if self.events.push(e).is_err() {
            self.stats.add(Counter::EventsLost, 1);
        }
    }

    #[inline]
    fn notice(&mut self, n: Notice) {
        if self.notices.push(n).is_err() {
            self.stats.add(Counter::NoticesLost, 1);
        }
    }
}

/// True for the ESP drops that mean an SA reached its hard limit (RFC 4301 §4.4.2.1; RFC 4303
/// §3.3.3 for an exhausted sequence number).
#[inline]
fn is_hard_expiry(r: DropReason) -> bool {
    matches!(r, DropReason::LifetimeExpired | DropReason::SeqExhausted)
}

#[inline]
fn drop_esp(r: DropReason) -> Verdict {
    Verdict::Drop(Why::Esp(r))
}

#[inline]
fn drop_dp(d: DpDrop) -> Verdict {
    Verdict::Drop(Why::Dp(d))
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

/// Adds an Ethernet header towards `mac` on `port`.
#[inline]
fn frame_to<B: PacketBuf>(
    m: &mut B,
    cx: &Ctx<'_>,
    port: PortRole,
    mac: MacAddr,
    inner: InnerProto,
) -> Verdict {
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

/// The verdict for a packet whose next hop towards `dst` on `port` has no MAC yet.
#[inline]
fn l2_miss(cx: &mut Ctx<'_>, port: PortRole, dst: IpAddr, miss: L2Miss) -> Verdict {
    match miss {
        L2Miss::NoRoute => drop_dp(DpDrop::NoRoute),
        L2Miss::Unresolved => {
            cx.event(Event::NeighborMiss { port, dst });
            drop_dp(DpDrop::NoNeighbor)
        }
    }
}

/// A frame received on the outside port.
pub fn outside_frame<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>) -> Verdict {
    outside_front(m, cx, esp_received).unwrap_or(drop_esp(DropReason::NotEsp))
}

/// [`OnEsp`] of the one-frame-at-a-time path: ESP received on this worker's queue (or
/// reassembled here) goes straight on to [`esp_classified`].
fn esp_received<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, f: EspFacts) -> Option<Verdict> {
    Some(esp_classified(m, cx, false, f))
}

/// What becomes of an outside packet classified as ESP to the box ([`outside_front`]): its
/// verdict, or `None` when the caller takes it on (the burst path keeps its facts,
/// [`crate::burst`]). A closure, inlined: through a return value the facts were re-read before
/// their stores completed (a store-forwarding stall).
pub(crate) trait OnEsp<B>:
    FnOnce(&mut B, &mut Ctx<'_>, EspFacts) -> Option<Verdict>
{
}

impl<B, F: FnOnce(&mut B, &mut Ctx<'_>, EspFacts) -> Option<Verdict>> OnEsp<B> for F {}

/// A frame received on the outside port: its verdict, or for ESP to the box what `esp` makes
/// of its facts.
#[inline]
pub(crate) fn outside_front<B: PacketBuf>(
    m: &mut B,
    cx: &mut Ctx<'_>,
    esp: impl OnEsp<B>,
) -> Option<Verdict> {
    match strip_ethernet(m, PortRole::Outside) {
        Some(v) => Some(v),
        None => outside_classify(m, cx, false, esp),
    }
}

/// An IP packet from the outside port as far as its classification ([`outside_front`];
/// `reassembled`: rebuilt from fragments here, so it can be no fragment itself).
#[inline]
fn outside_classify<B: PacketBuf>(
    m: &mut B,
    cx: &mut Ctx<'_>,
    reassembled: bool,
    esp: impl OnEsp<B>,
) -> Option<Verdict> {
    let Some((src, dst)) = ip::addrs(m.data()) else {
        return Some(drop_esp(DropReason::BadOuterHeader));
    };
    let ours = cx.t.port(PortRole::Outside).is_local(dst);
    let class = match classify(m.data()) {
        Ok(c) => c,
        Err(r) => return Some(drop_esp(r)),
    };
    Some(match class {
        // IPv6 neighbour discovery goes to multicast or to us: the control thread decides.
        Class::Icmp { .. } if !ours => match dst {
            IpAddr::V6(a) if a.is_multicast() => punt(m, PortRole::Outside),
            _ => drop_dp(DpDrop::NotForUs),
        },
        _ if !ours => drop_dp(DpDrop::NotForUs),
        Class::Esp {
            spi,
            seq,
            esp_offset,
            end,
            tos,
            udp_encap,
        } => {
            let f = EspFacts {
                spi,
                seq,
                esp_offset,
                end,
                tos,
                udp_encap,
            };
            return esp(m, cx, f);
        }
        Class::NatKeepalive => {
            cx.stats.add(Counter::NattKeepalives, 1);
            Verdict::Consumed
        }
        Class::Ike { .. } | Class::IkeNonEsp { .. } => punt(m, PortRole::Outside),
        Class::Icmp { .. } => icmp_in(m, cx, src),
        Class::Fragment if reassembled => drop_esp(DropReason::OuterFragment),
        Class::Fragment => return fragment_in(m, cx, false, esp),
        Class::Other { .. } => drop_dp(DpDrop::OtherProtocol),
    })
}

/// Where an inbound packet that `owner` must process goes when that is not this worker: to
/// the owner on the inbound handoff ring, or dropped as `not_owner` if it was already handed
/// over once. `None`: this worker is the owner.
#[inline]
fn elsewhere(cx: &Ctx<'_>, owner: u16, handed_off: bool) -> Option<Verdict> {
    match (owner == cx.me, handed_off) {
        (true, _) => None,
        (false, false) => Some(Verdict::Handoff {
            owner,
            kind: HandoffKind::Inbound,
        }),
        (false, true) => Some(drop_dp(DpDrop::NotOwner)),
    }
}

/// An outer fragment to the box: reassembled on its datagram's reassembly worker
/// ([`reasm::worker_of`]; handed there from any other); a datagram it completes continues as
/// a packet just received (its ESP given to `esp`, to go on to the SA's owner).
fn fragment_in<B: PacketBuf>(
    m: &mut B,
    cx: &mut Ctx<'_>,
    handed_off: bool,
    esp: impl OnEsp<B>,
) -> Option<Verdict> {
    let owner = reasm::worker_of(m.data(), cx.t.workers).unwrap_or(cx.me);
    if let Some(v) = elsewhere(cx, owner, handed_off) {
        return Some(v);
    }
    Some(match cx.reasm.fragment(m, cx.now) {
        Outcome::Complete => {
            cx.stats.add(Counter::Reassembled, 1);
            return outside_classify(m, cx, true, esp);
        }
        Outcome::Held => Verdict::Consumed,
        Outcome::NotReassembled => drop_esp(DropReason::OuterFragment),
        Outcome::Overlap => drop_dp(DpDrop::ReassemblyOverlap),
        Outcome::TooBig => drop_dp(DpDrop::ReassemblyTooBig),
        Outcome::Full => drop_dp(DpDrop::ReassemblyFull),
    })
}

/// ICMP to the box on the outside port: an error about an ESP packet we sent is accounted to
/// its tunnel (PMTU), never treated as ESP with a bad SPI; anything else goes to the control
/// thread (echo, neighbour discovery).
fn icmp_in<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, _src: IpAddr) -> Verdict {
    let Ok(e) = parse_icmp_error(m.data()) else {
        return punt(m, PortRole::Outside);
    };
    let by_spi = e.spi.and_then(|spi| cx.t.outbound_spis.get(spi));
    // A quote of UDP-encapsulated ESP may be too short to hold the SPI: fall back to the peer.
    let tunnel = by_spi.or_else(|| e.udp_ports.and_then(|_| cx.t.tunnel_of_peer(e.dst)));
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

/// What classification learned of an ESP packet. Not its addresses: only an unknown SPI's
/// sample needs them, and it reads them from the packet.
#[derive(Clone, Copy)]
pub(crate) struct EspFacts {
    pub(crate) spi: u32,
    seq: u32,
    /// Where the ESP header starts and the packet ends, and the outer TOS: decapsulation
    /// takes them instead of parsing the outer header again.
    pub(crate) esp_offset: usize,
    pub(crate) end: usize,
    pub(crate) tos: u8,
    udp_encap: bool,
}

/// An ESP packet or an outer fragment (data at the outer IP header) handed over by another
/// worker: classify it, then [`esp_classified`] or reassembly.
pub fn esp_in<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, handed_off: bool) -> Verdict {
    if ip::addrs(m.data()).is_none() {
        return drop_esp(DropReason::BadOuterHeader);
    }
    match classify(m.data()) {
        Ok(Class::Esp {
            spi,
            seq,
            esp_offset,
            end,
            tos,
            udp_encap,
        }) => esp_classified(
            m,
            cx,
            handed_off,
            EspFacts {
                spi,
                seq,
                esp_offset,
                end,
                tos,
                udp_encap,
            },
        ),
        // Reassembled here: its SA's owner may be another worker.
        Ok(Class::Fragment) => {
            fragment_in(m, cx, handed_off, esp_received).unwrap_or(drop_esp(DropReason::NotEsp))
        }
        Ok(_) => drop_esp(DropReason::NotEsp),
        Err(r) => drop_esp(r),
    }
}

/// SPIs 1–255 are reserved by IANA and 0 is never sent on the wire (RFC 4303 §2.1): no SA has
/// one (espada allocates none, the configuration refuses static ones), so they are not
/// unknown SPIs of a peer.
const RESERVED_SPIS: u32 = 256;

/// A classified ESP packet: decapsulate it if this worker owns its SA, hand it to the owner
/// otherwise, classify the SPI when no SA has it.
///
/// The owner looks the SPI up again for a handed-off packet. That is safe while SAs change: the
/// directory is one atomic word per SA, and the handoff ring orders the sender's lookup before
/// the owner's, so the owner sees the entry the sender saw or a later one (coherence), never an
/// older one; and an entry is Live only while its slab slot holds the SA (filled before the
/// entry is installed, emptied after it is retired), which the SPI compare below re-checks.
fn esp_classified<B: PacketBuf>(
    m: &mut B,
    cx: &mut Ctx<'_>,
    handed_off: bool,
    f: EspFacts,
) -> Verdict {
    let slot = match esp_slot(m, cx, handed_off, &f) {
        Ok(slot) => slot,
        Err(v) => return v,
    };
    let Some((e, keys)) = cx
        .sas
        .inbound_keyed(slot)
        .filter(|(e, _)| e.sa.spi() == f.spi)
    else {
        return drop_dp(DpDrop::NotOwner);
    };
    let r = e.sa.decap_classified(keys, m, f.esp_offset, f.end, f.tos);
    let d = judge(m, e, r);
    if d.inner.is_ok() {
        cx.stats.add(Counter::EspDecap, 1);
    }
    deliver(m, cx, slot, f.spi, d)
}

/// The slot of the SA of a classified ESP packet on this worker, or the packet's verdict: a
/// reserved SPI, an unknown one (classified and sampled), or an SA of another worker (handed
/// off once).
#[inline]
pub(crate) fn esp_slot<B: PacketBuf>(
    m: &B,
    cx: &mut Ctx<'_>,
    handed_off: bool,
    f: &EspFacts,
) -> Result<u32, Verdict> {
    if f.spi < RESERVED_SPIS {
        return Err(drop_dp(DpDrop::ReservedSpi));
    }
    let (owner, slot) = match cx.t.sad.lookup(f.spi) {
        Lookup::Live { owner, slot, .. } => (owner, slot),
        Lookup::Tombstone { .. } => {
            return Err(unknown_spi(m, cx, f, UnknownSpiClass::Tombstone));
        }
        Lookup::Unknown => {
            let known =
                ip::addrs(m.data()).is_some_and(|(src, _)| cx.t.tunnel_of_peer(src).is_some());
            let class = if known {
                UnknownSpiClass::KnownPeer
            } else {
                UnknownSpiClass::UnknownSource
            };
            return Err(unknown_spi(m, cx, f, class));
        }
    };
    match elsewhere(cx, owner, handed_off) {
        Some(v) => Err(v),
        None => Ok(slot),
    }
}

/// What a decapsulation left to do once its SA's slot is no longer borrowed ([`judge`]).
pub(crate) struct Decapsulated {
    tunnel: u32,
    /// The decapsulation's result; on success the inner packet's family, whether it reached
    /// the soft lifetime, its destination (`None`: no inner IP header) and whether its
    /// addresses are within the SA's selectors.
    pub(crate) inner: Result<(InnerProto, bool, Option<IpAddr>, bool), DropReason>,
    /// The SA's hard lifetime is noticed with this packet: tell the control thread.
    hard_first: bool,
}

/// Judges a decapsulation's result `r` while its SA's slot `e` is borrowed: whether the hard
/// lifetime is first noticed now, the inner addresses and the selector check (RFC 4301 §5.2
/// step 4). Always inlined, like [`deliver`]: through a call their results went through
/// memory and were re-read before their stores completed (a store-forwarding stall, ~3 % of
/// a 1-SA decrypt profile each).
#[inline(always)]
pub(crate) fn judge<B: PacketBuf>(
    m: &B,
    e: &mut InboundSlot,
    r: Result<Processed, DropReason>,
) -> Decapsulated {
    // The hard lifetime is noticed by the packet that reaches it, or failing that (a limit
    // lowered, an SA installed expired) by the first one it stops.
    let hard = match &r {
        Ok(_) => e.sa.lifetime().hard_expired(),
        Err(d) => is_hard_expiry(*d),
    };
    let hard_first = hard && !e.hard_noticed;
    e.hard_noticed |= hard_first;
    // A match on a reference, its fields read one by one, not `Result::map` (its closure was
    // not inlined) nor a move of the `Processed` (copied whole, it was re-read before its
    // stores completed: a store-forwarding stall, ~4 % of a 1-SA decrypt profile).
    let inner = match &r {
        Ok(p) => {
            let (proto, soft) = (p.inner, p.soft_expired);
            let addrs = ip::addrs(m.data());
            let ok = match addrs {
                Some((isrc, idst)) => e.policy.remote(isrc) && e.policy.local(idst),
                None => false,
            };
            Ok((proto, soft, addrs.map(|(_, idst)| idst), ok))
        }
        Err(d) => Err(*d),
    };
    Decapsulated {
        tunnel: e.tunnel,
        inner,
        hard_first,
    }
}

/// The rest of an inbound packet after [`judge`] (SA in `slot`, `spi`): its lifetime notices,
/// the policy verdict, the MSS clamp, the TTL and the frame towards the inside.
#[inline(always)]
pub(crate) fn deliver<B: PacketBuf>(
    m: &mut B,
    cx: &mut Ctx<'_>,
    slot: u32,
    spi: u32,
    d: Decapsulated,
) -> Verdict {
    let (proto, soft, idst, policy_ok) = match d.inner {
        Ok(x) => x,
        Err(r) => {
            if d.hard_first {
                cx.notice(Notice::new(true, slot, spi, NoticeKind::Hard));
            }
            return drop_esp(r);
        }
    };
    if soft {
        cx.notice(Notice::new(true, slot, spi, NoticeKind::Soft));
    }
    if d.hard_first {
        cx.notice(Notice::new(true, slot, spi, NoticeKind::Hard));
    }
    let Some(idst) = idst else {
        return drop_esp(DropReason::BadInnerHeader);
    };
    if !policy_ok {
        return drop_dp(DpDrop::PolicyMismatch);
    }
    clamp_mss(m, cx, d.tunnel);
    if forward::decrement(m.data_mut()) == Hop::Expired {
        // The source is behind the tunnel: the error goes back through it.
        return match icmp_error(m, cx, IcmpError::TimeExceeded, DpDrop::TtlExceeded) {
            Some(_) => clear_out(m, cx, false),
            None => Verdict::Consumed,
        };
    }
    match cx.t.l2_towards(PortRole::Inside, idst) {
        Ok(mac) => frame_to(m, cx, PortRole::Inside, mac, proto),
        Err(miss) => l2_miss(cx, PortRole::Inside, idst, miss),
    }
}

/// Applies the TCP MSS clamp of `tunnel`, if it has one, to a SYN ([`forward::clamp_mss`]).
/// While no tunnel has a clamp nothing is parsed, and the tunnel's word (a cache miss with
/// many tunnels) is read only for a SYN.
#[inline]
fn clamp_mss<B: PacketBuf>(m: &mut B, cx: &Ctx<'_>, tunnel: u32) {
    if cx.t.tunnels.any_mss_clamp()
        && forward::clamp_mss(m.data_mut(), || cx.t.tunnels.mss_clamp(tunnel))
    {
        cx.stats.add(Counter::MssClamped, 1);
    }
}

/// Refuses a cleartext packet from the inside (`why`) and sends the ICMP error `e` back to its
/// source, out of the inside port.
fn refuse_inside<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, e: IcmpError, why: DpDrop) -> Verdict {
    match icmp_error(m, cx, e, why) {
        Some((to, proto)) => match cx.t.l2_towards(PortRole::Inside, to) {
            Ok(mac) => frame_to(m, cx, PortRole::Inside, mac, proto),
            Err(miss) => l2_miss(cx, PortRole::Inside, to, miss),
        },
        None => Verdict::Consumed,
    }
}

/// An IPv4 packet without DF may be fragmented when it is too big for the tunnel
/// ([`fragment_out`]); IPv6 and DF packets may not (RFC 8200 §5: routers do not fragment IPv6).
fn may_fragment(p: &[u8]) -> bool {
    ip::version(p) == Some(4)
        && p.len() >= ipv4::MIN_HEADER_LEN
        && !Ipv4Packet::new_unchecked(p).dont_fragment()
}

/// A packet the box will not forward: counted as `why`, then rewritten in place into the ICMP
/// error `e` from the box's inside address when the ICMP budget allows and the packet may get
/// one ([`forward::icmp_error`]). `None`: nothing to send (the packet is consumed, counted).
fn icmp_error<B: PacketBuf>(
    m: &mut B,
    cx: &mut Ctx<'_>,
    e: IcmpError,
    why: DpDrop,
) -> Option<(IpAddr, InnerProto)> {
    cx.stats.drop_one(Why::Dp(why));
    if !cx.samples.take_icmp() {
        cx.stats.add(Counter::IcmpErrorsSuppressed, 1);
        return None;
    }
    let p = cx.t.port(PortRole::Inside);
    let v4 = p.ipv4.and_then(|a| match a.addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    });
    let v6 = p.ipv6.and_then(|a| match a.addr {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    });
    let sent = forward::icmp_error(m, e, v4, v6);
    if sent.is_some() {
        cx.stats.add(Counter::IcmpErrorsSent, 1);
    }
    sent
}

/// Counts the ESP packet `m` (classified: `f`) that no SA takes, and samples it to the
/// control thread within the budget.
fn unknown_spi<B: PacketBuf>(
    m: &B,
    cx: &mut Ctx<'_>,
    f: &EspFacts,
    class: UnknownSpiClass,
) -> Verdict {
    let drop = match class {
        UnknownSpiClass::Tombstone => DpDrop::UnknownSpiTombstone,
        UnknownSpiClass::KnownPeer => DpDrop::UnknownSpiKnownPeer,
        UnknownSpiClass::UnknownSource => DpDrop::UnknownSpiUnknownSource,
    };
    // Classification read the addresses already: they are there.
    match (cx.samples.take(class), ip::addrs(m.data())) {
        (true, Some((src, dst))) => cx.event(Event::UnknownSpi(UnknownSpi {
            class,
            src,
            dst,
            spi: f.spi,
            seq: f.seq,
            len: m.len() as u32,
            udp_encap: f.udp_encap,
            port: PortRole::Outside,
        })),
        _ => cx.stats.add(Counter::SamplesSuppressed, 1),
    }
    drop_dp(drop)
}

/// A frame received on the inside port.
pub fn inside_frame<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>) -> Verdict {
    if let Some(v) = strip_ethernet(m, PortRole::Inside) {
        return v;
    }
    let Some((_, dst)) = ip::addrs(m.data()) else {
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

/// A cleartext packet (data at the inner IP header): find its tunnel by the destination and
/// encapsulate it if this worker owns the tunnel's outbound SA, else hand it to the owner.
///
/// The owner reads the tunnel's outbound word again for a handed-off packet, so a switch to a
/// new SA takes effect for every packet it encrypts from one point on ([`crate::tunnels`]).
pub fn clear_out<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, handed_off: bool) -> Verdict {
    let Some((src, dst)) = ip::addrs(m.data()) else {
        return drop_dp(DpDrop::BadIpHeader);
    };
    let Some(id) = cx.t.routes.lookup(dst) else {
        return drop_dp(DpDrop::NoRoute);
    };
    let Some(sa_ref) = cx.t.tunnels.outbound(id) else {
        if cx.samples.take_acquire() {
            cx.event(Event::Acquire { tunnel: id });
        }
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
    let (mtu, limit) = {
        let Some(e) = cx.sas.outbound(sa_ref.slot) else {
            return drop_dp(DpDrop::NoOutboundSa);
        };
        if !e.policy.local(src) {
            return drop_dp(DpDrop::PolicyMismatch);
        }
        let mtu = cx.t.tunnels.path_mtu(id);
        (mtu, inner_limit(&e.sa, mtu))
    };
    let too_big = m.len() > limit;
    if too_big && !may_fragment(m.data()) {
        let e = IcmpError::TooBig { mtu: limit as u32 };
        return refuse_inside(m, cx, e, DpDrop::TooBigForTunnel);
    }
    if forward::decrement(m.data_mut()) == Hop::Expired {
        return refuse_inside(m, cx, IcmpError::TimeExceeded, DpDrop::TtlExceeded);
    }
    clamp_mss(m, cx, id);
    if too_big {
        return Verdict::Fragment(Oversize {
            slot: sa_ref.slot,
            mtu: mtu.min(u32::from(u16::MAX)) as u16,
            at: cx.t.tunnels.fragmentation(id),
        });
    }
    match seal(m, cx, sa_ref.slot) {
        Ok(s) => frame_sealed(m, cx, s),
        Err(v) => v,
    }
}

/// The largest inner packet `sa` sends within the path MTU `mtu` (0: none known, no limit).
fn inner_limit(sa: &OutboundSa, mtu: u32) -> usize {
    if mtu == 0 {
        usize::MAX
    } else {
        sa.max_inner(mtu)
    }
}

/// Where an ESP packet [`seal`] built goes.
#[derive(Clone, Copy)]
struct Sealed {
    hop: u32,
    peer: IpAddr,
}

/// Encapsulates the cleartext packet in `m` on the outbound SA in `slot` (this worker's),
/// sending the SA's lifetime notices. `Err`: the drop.
fn seal<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, slot: u32) -> Result<Sealed, Verdict> {
    let Some((e, keys)) = cx.sas.outbound_keyed(slot) else {
        return Err(drop_dp(DpDrop::NoOutboundSa));
    };
    let (spi, hop, peer) = (e.sa.spi(), e.hop, e.peer);
    let r = e.sa.encap(keys, m);
    let hard_first = matches!(r, Err(d) if is_hard_expiry(d)) && !e.hard_noticed;
    if hard_first {
        e.hard_noticed = true;
    }
    let p = match r {
        Ok(p) => p,
        Err(d) => {
            if hard_first {
                cx.notice(Notice::new(false, slot, spi, NoticeKind::Hard));
            }
            return Err(drop_esp(d));
        }
    };
    cx.stats.add(Counter::EspEncap, 1);
    if p.soft_expired {
        cx.notice(Notice::new(false, slot, spi, NoticeKind::Soft));
    }
    Ok(Sealed { hop, peer })
}

/// Frames an ESP packet towards its next hop on the outside port.
fn frame_sealed<B: PacketBuf>(m: &mut B, cx: &mut Ctx<'_>, s: Sealed) -> Verdict {
    let outer = if s.peer.is_ipv6() {
        InnerProto::V6
    } else {
        InnerProto::V4
    };
    match cx.t.hops.mac(s.hop) {
        Some(mac) => frame_to(m, cx, PortRole::Outside, mac, outer),
        None => l2_miss(cx, PortRole::Outside, s.peer, L2Miss::Unresolved),
    }
}

/// A packet [`clear_out`] found too big for its tunnel ([`Verdict::Fragment`]): fragmented,
/// encrypted and framed (RFC 4301 §8.2 leaves where to the implementation; the tunnel's
/// [`Fragmentation`] says). Before encryption, every fragment is an ESP packet of its own; after
/// it, the one ESP packet is split to the path MTU and the peer reassembles it. The pieces come
/// back with their verdicts, the first in `m`'s own buffer; a packet that cannot be fragmented
/// comes back alone, as a drop.
pub fn fragment_out<B: PacketBuf>(mut m: B, cx: &mut Ctx<'_>, o: Oversize) -> Pieces<B> {
    let mut out: Pieces<B> = Default::default();
    // After encryption: the one ESP packet, and where it goes.
    let mut sealed = None;
    let split = match o.at {
        Fragmentation::BeforeEncryption => {
            let Some(e) = cx.sas.outbound_ref(o.slot) else {
                out[0] = Some((m, drop_dp(DpDrop::NoOutboundSa)));
                return out;
            };
            fragment::ipv4(&mut m, inner_limit(&e.sa, u32::from(o.mtu)))
        }
        Fragmentation::AfterEncryption => match seal(&mut m, cx, o.slot) {
            Ok(s) => {
                sealed = Some(s);
                split_outer(&mut m, cx, s, usize::from(o.mtu))
            }
            Err(v) => {
                out[0] = Some((m, v));
                return out;
            }
        },
    };
    let tail = match split {
        Ok(t) => t,
        Err(u) => {
            let why = match u {
                Unfit::NoBuffer => DpDrop::FragmentNoBuffer,
                Unfit::Unsplittable => DpDrop::FragmentUnsplittable,
            };
            out[0] = Some((m, drop_dp(why)));
            return out;
        }
    };
    if tail[0].is_some() {
        let c = match o.at {
            Fragmentation::BeforeEncryption => Counter::FragmentedBeforeEncryption,
            Fragmentation::AfterEncryption => Counter::FragmentedAfterEncryption,
        };
        cx.stats.add(c, 1);
    }
    let pieces = std::iter::once(m).chain(tail.into_iter().flatten());
    for (slot, mut piece) in out.iter_mut().zip(pieces) {
        let v = match sealed {
            Some(s) => frame_sealed(&mut piece, cx, s),
            None => match seal(&mut piece, cx, o.slot) {
                Ok(s) => frame_sealed(&mut piece, cx, s),
                Err(v) => v,
            },
        };
        *slot = Some((piece, v));
    }
    out
}

/// Splits the ESP packet [`seal`] built to `mtu` if it is larger (the inner limit is rounded
/// for ESP padding, so a packet just above it may still fit): IPv4 keeps the identification
/// encapsulation gave it; IPv6 gets this worker's next one.
fn split_outer<B: PacketBuf>(
    m: &mut B,
    cx: &mut Ctx<'_>,
    s: Sealed,
    mtu: usize,
) -> Result<fragment::Tail<B>, Unfit> {
    if m.len() <= mtu {
        Ok(Default::default())
    } else if s.peer.is_ipv6() {
        *cx.ident = cx.ident.wrapping_add(1);
        fragment::ipv6(m, mtu, *cx.ident)
    } else {
        fragment::ipv4(m, mtu)
    }
}
