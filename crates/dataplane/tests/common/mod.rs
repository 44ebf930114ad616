//! A small site for pipeline tests: one box (outside 198.51.100.1, inside 192.0.2.1), one peer
//! (198.51.100.2) protecting 203.0.113.0/24, and the peer's mirror SAs built with the ESP
//! engine, so every packet the box sends can be opened and every packet it gets was sealed by
//! an independent SA object.
#![allow(dead_code)]

pub mod workers;

use espada_wire::MacAddr;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use espada_buf::{PacketBuf, VecBuf};
use espada_dataplane::events::{EVENT_RING, Event, SampleBudget};
use espada_dataplane::lifecycle::{Lifecycle, Sizes, TunnelSpec, WorkerParts};
use espada_dataplane::pipeline::Ctx;
use espada_dataplane::reasm::Reassembly;
use espada_dataplane::slab::Policy;
use espada_dataplane::stats::WorkerStats;
use espada_dataplane::tables::{Iface, Tables};
use espada_dataplane::{PortRole, owner_of_spi};
use espada_esp::KeyCache;
use espada_esp::sa::NattPorts;
use espada_esp::{Backend, Direction, InboundSa, LifetimeLimits, OutboundSa, SaConfig};

pub const BOX_OUT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const BOX_IN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 3];
pub const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 4];
pub const KEY_IN: [u8; 20] = [0x11; 20];
pub const KEY_OUT: [u8; 20] = [0x22; 20];
pub const SPI_IN: u32 = 0x1000; // a static SPI, owned by worker 0 of 2
pub const SPI_OUT: u32 = 0x2001;
/// A static SPI of the tunnel that was retired: its late packets hit a tombstone.
pub const SPI_TOMBSTONE: u32 = 0x0bad_0001;

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub struct Site {
    pub lc: Lifecycle,
    pub parts: Vec<WorkerParts>,
    pub stats: WorkerStats,
    pub events: rtrb::Producer<Event>,
    pub event_rx: rtrb::Consumer<Event>,
    pub samples: SampleBudget,
    /// The peer's outbound SA (seals what the box's inbound SA opens).
    pub peer_out: OutboundSa,
    /// The peer's inbound SA (opens what the box's outbound SA seals).
    pub peer_in: InboundSa,
    /// Each worker's outer reassembly (timeout: 1,000 clock units).
    pub reasm: Vec<Reassembly>,
    /// The clock the stages see.
    pub now: u64,
    /// The next IPv6 fragment identification.
    pub ident: u32,
}

fn sa_cfg(spi: u32, dir: Direction, local: &str, remote: &str, udp: bool) -> SaConfig {
    let mut c = SaConfig::new(spi, dir, ip(local), ip(remote));
    c.esn = false;
    c.natt = udp.then(NattPorts::default);
    c
}

pub fn ports() -> [Iface; 2] {
    [
        Iface {
            mac: MacAddr(BOX_OUT_MAC),
            ipv4: Some("198.51.100.1/24".parse().unwrap()),
            gateway4: Some(ip("198.51.100.254")),
            ..Default::default()
        },
        Iface {
            mac: MacAddr(BOX_IN_MAC),
            ipv4: Some("192.0.2.1/24".parse().unwrap()),
            ..Default::default()
        },
    ]
}

pub fn policy() -> Policy {
    Policy {
        local_ts: vec!["192.0.2.0/24".parse().unwrap()],
        remote_ts: vec!["203.0.113.0/24".parse().unwrap()],
    }
}

/// A site with `workers` workers; the tunnel's SAs live on `owner_of_spi(SPI_IN)`.
pub fn site(workers: u16, udp: bool) -> Site {
    site_with_lifetime(workers, udp, LifetimeLimits::UNLIMITED)
}

/// [`site`] whose box SAs (both directions) have the lifetime `limits`.
pub fn site_with_lifetime(workers: u16, udp: bool, limits: LifetimeLimits) -> Site {
    let box_sa = |spi, dir| {
        let mut c = sa_cfg(spi, dir, "198.51.100.1", "198.51.100.2", udp);
        c.lifetime = limits;
        c
    };
    let owner = owner_of_spi(SPI_IN, workers);
    let (mut lc, mut parts) =
        Lifecycle::with_seed(Sizes::for_tunnels(workers, 4096), ports(), 7).expect("lifecycle");
    let t = lc
        .add_tunnel(TunnelSpec {
            name: "site-b".into(),
            peer: ip("198.51.100.2"),
            local: ip("198.51.100.1"),
            policy: policy(),
            owner: Some(owner),
        })
        .unwrap();
    let now = Instant::now();
    // A retired SA first, so its SPI is a tombstone.
    lc.allocate_static_spi(t, SPI_TOMBSTONE).unwrap();
    let old = InboundSa::new(
        box_sa(SPI_TOMBSTONE, Direction::Inbound),
        &KEY_IN,
        Backend::Ring,
    )
    .unwrap();
    lc.install_inbound(t, old).unwrap();
    lc.apply_directly(&mut parts, now);
    lc.retire_inbound(
        t,
        SPI_TOMBSTONE,
        now,
        Duration::ZERO,
        Duration::from_secs(3600),
    )
    .unwrap();
    lc.apply_directly(&mut parts, now);
    lc.allocate_static_spi(t, SPI_IN).unwrap();
    let inb = InboundSa::new(box_sa(SPI_IN, Direction::Inbound), &KEY_IN, Backend::Ring).unwrap();
    let outb = OutboundSa::new(
        box_sa(SPI_OUT, Direction::Outbound),
        &KEY_OUT,
        Backend::Ring,
    )
    .unwrap();
    lc.install_inbound(t, inb).unwrap();
    lc.install_outbound(t, outb).unwrap();
    lc.apply_directly(&mut parts, now);
    lc.switch_outbound(t, SPI_OUT).unwrap();
    lc.neighbour_learned(PortRole::Outside, ip("198.51.100.2"), MacAddr(PEER_MAC));
    lc.neighbour_learned(PortRole::Inside, ip("192.0.2.10"), MacAddr(LAN_MAC));
    lc.apply_directly(&mut parts, now);
    while let Some(a) = lc.poll_ack() {
        a.result.expect("every set-up step is acknowledged");
    }
    let peer_out = OutboundSa::new(
        sa_cfg(
            SPI_IN,
            Direction::Outbound,
            "198.51.100.2",
            "198.51.100.1",
            udp,
        ),
        &KEY_IN,
        Backend::RustCrypto,
    )
    .unwrap();
    let peer_in = InboundSa::new(
        sa_cfg(
            SPI_OUT,
            Direction::Inbound,
            "198.51.100.2",
            "198.51.100.1",
            udp,
        ),
        &KEY_OUT,
        Backend::RustCrypto,
    )
    .unwrap();
    let (events, event_rx) = rtrb::RingBuffer::new(EVENT_RING);
    Site {
        lc,
        parts,
        stats: WorkerStats::default(),
        events,
        event_rx,
        samples: SampleBudget::new(1_000_000, 1000, 64),
        peer_out,
        peer_in,
        reasm: (0..workers).map(|_| Reassembly::new(1000)).collect(),
        now: 1,
        ident: 0x0100_0000,
    }
}

impl Site {
    /// The tables the workers see.
    pub fn tables(&self) -> &Tables {
        self.lc.tables()
    }

    /// The stage context of worker `me`.
    pub fn ctx(&mut self, me: u16) -> Ctx<'_> {
        let p = &mut self.parts[me as usize];
        Ctx {
            me,
            t: self.lc.tables(),
            sas: &mut p.slab,
            stats: &self.stats,
            events: &mut self.events,
            notices: &mut p.notices,
            samples: &mut self.samples,
            reasm: &mut self.reasm[me as usize],
            now: self.now,
            ident: &mut self.ident,
        }
    }

    pub fn drain_events(&mut self) -> Vec<Event> {
        let mut v = Vec::new();
        while let Ok(e) = self.event_rx.pop() {
            v.push(e);
        }
        v
    }

    /// Lifetime notices as the control thread gets them.
    pub fn drain_notices(&mut self) -> Vec<espada_dataplane::lifecycle::SaNotice> {
        self.lc.apply_directly(&mut self.parts, Instant::now());
        let mut v = Vec::new();
        while let Some(n) = self.lc.poll_notice() {
            v.push(n);
        }
        v
    }
}

pub fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An IPv4/UDP packet of `payload` bytes.
pub fn ipv4_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 28 + payload.len();
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = csum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Recomputes the header checksum of the IPv4 packet `p` (20-byte header).
pub fn fix_csum(p: &mut [u8]) {
    p[10..12].copy_from_slice(&[0, 0]);
    let c = csum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The IPv4 packet `ip` (20-byte header) cut into fragments at payload offsets `cuts`
/// (multiples of 8), DF kept as it was.
pub fn ipv4_fragments(ip: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let (hdr, payload) = ip.split_at(20);
    let mut bounds = vec![0];
    bounds.extend_from_slice(cuts);
    bounds.push(payload.len());
    bounds
        .windows(2)
        .map(|w| {
            let mut f = hdr.to_vec();
            f.extend_from_slice(&payload[w[0]..w[1]]);
            let mf = if w[1] < payload.len() { 0x2000 } else { 0 };
            let ff = (u16::from(hdr[6] & 0x40) << 8) | mf | (w[0] / 8) as u16;
            f[6..8].copy_from_slice(&ff.to_be_bytes());
            let len = f.len() as u16;
            f[2..4].copy_from_slice(&len.to_be_bytes());
            fix_csum(&mut f);
            f
        })
        .collect()
}

/// IPv4 packet `p` as a router forwards it: TTL one less, header checksum updated.
pub fn forwarded(p: &[u8]) -> Vec<u8> {
    let mut f = p.to_vec();
    f[8] -= 1;
    fix_csum(&mut f);
    f
}

/// An Ethernet frame to the box's outside port carrying raw ESP from `src` with `spi` and
/// sequence number 7 (40 bytes of ESP, not decryptable).
pub fn esp_frame(src: [u8; 4], spi: u32) -> (Vec<u8>, Vec<u8>) {
    let mut p = ipv4_udp(src, [198, 51, 100, 1], 0, 0, &[0; 40]);
    p[9] = 50; // ESP
    p[20..24].copy_from_slice(&spi.to_be_bytes());
    p[24..28].copy_from_slice(&7u32.to_be_bytes());
    fix_csum(&mut p);
    (ether(BOX_OUT_MAC, PEER_MAC, 0x0800, &p), p)
}

pub fn ether(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A buffer holding `frame` with room for ESP headers and trailer.
/// A buffer holding `frame` as a DPDK mbuf of espada's pool would (2,048 bytes of data room
/// after a 128-byte headroom).
pub fn buf(frame: &[u8]) -> VecBuf {
    VecBuf::new(128, frame, 2048usize.saturating_sub(frame.len()))
}

/// The peer seals `inner` and frames it towards the box.
pub fn from_peer(s: &mut Site, inner: &[u8]) -> VecBuf {
    let mut b = VecBuf::new(128, inner, 64);
    s.peer_out.encap(&mut KeyCache::new(2), &mut b).unwrap();
    let frame = ether(BOX_OUT_MAC, PEER_MAC, 0x0800, b.data());
    buf(&frame)
}
