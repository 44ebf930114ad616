//! The control thread's interface to the data plane's SAs and tunnels (issue 13, deliver
//! item 1): the make-before-break primitives a rekey is built from, with no IKE knowledge.
//!
//! | call | effect | acknowledged when |
//! |---|---|---|
//! | [`Lifecycle::install_inbound`] | the SA goes into its owner's slab, then its SPI into the directory | every worker has adopted a table generation published after the directory entry: every worker decrypts it |
//! | [`Lifecycle::install_outbound`] | the SA goes into its owner's slab as a standby (nothing sends on it) | the owner has it |
//! | [`Lifecycle::switch_outbound`] | the tunnel's outbound word names the standby SA (one store) | every worker has adopted a generation published after the store |
//! | [`Lifecycle::retire_inbound`] | keeps decrypting for `grace`, then the SPI becomes a tombstone (late packets are "recently rekeyed") and the SA leaves the slab, then after `linger` the SPI is forgotten and its slot free | the SA has left the slab (its keys wiped, here) |
//! | [`Lifecycle::remove_outbound`] | a standby or replaced outbound SA leaves the slab (the current one is cleared first: the tunnel then drops as `no_outbound_sa`, never sends in clear) | the SA has left the slab |
//! | [`Lifecycle::retarget_outbound`] | the owner rewrites an outbound SA's outer destination (address, UDP port, next hop) in place: the peer moved behind its NAT | the owner has applied it |
//!
//! Each call returns a [`Ticket`]; [`Lifecycle::poll`] advances every operation and
//! [`Lifecycle::poll_ack`] yields an [`Ack`] per ticket with the generation at which every
//! worker sees the change. A rekey in make-before-break order is: `allocate_spi` →
//! `install_inbound` (wait for its ack before telling the peer) → `install_outbound` →
//! `switch_outbound` → `retire_inbound(old)`.
//!
//! Invariants kept here: a slot is filled before anything refers to it and emptied only after
//! nothing can reach it; an occupied slot is refused by the worker, never overwritten; SA
//! memory and keys are freed here, never on a worker; at most [`COMMAND_RING`] commands are
//! in flight to one worker (so replies never overflow) and the rest wait in a backlog; every
//! change is to one entry (directory word, tunnel word, route, map bucket), never a copy of a
//! table. All of one tunnel's SAs live on one owner worker, so its packets are encrypted and
//! decrypted in order on one core.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use espada_config::Prefix;
use espada_esp::{InboundSa, OutboundSa};
use espada_lookup::map::KeyMap;
use espada_lookup::route::RouteWriter;
use espada_lookup::sad::Directory;
use espada_lookup::spi::{SpiAllocator, SpiLayout, SpiSlot, SplitMix64};
use espada_qsbr::{Publisher, Reader, ReaderState};

use crate::PortRole;
use crate::eth::MacAddr;
use crate::events::{Notice, NoticeKind, notice_capacity};
use crate::hops::{HopLimits, HopWriter};
use crate::slab::{COMMAND_RING, Command, InboundSlot, OutboundSlot, Policy, Reply, Slab};
use crate::tables::{Iface, SaRef, Tables, TunnelId};
use crate::tunnels::{Fragmentation, TunnelTable, peer_key};

/// Sizes of everything the data plane preallocates.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Workers.
    pub workers: u16,
    /// SA slots per worker and direction.
    pub slots_per_worker: u32,
    /// Tunnels.
    pub tunnels: u32,
    /// Static (lab) SPIs that do not follow the SPI layout.
    pub static_spis: usize,
    /// IPv4 tbl8 groups of the route table (prefixes longer than /24).
    pub v4_groups: u32,
    /// IPv6 groups of the route table.
    pub v6_groups: u32,
    /// IPv6 tail records of the route table.
    pub v6_tails: u32,
    /// Next hops and neighbour routes.
    pub hops: HopLimits,
}

impl Sizes {
    /// Sizes for `workers` workers and `tunnels` tunnels (two SA slots per tunnel and
    /// direction, for make-before-break, spread over the workers).
    pub fn for_tunnels(workers: u16, tunnels: u32) -> Sizes {
        let per_worker = (2 * tunnels).div_ceil(u32::from(workers.max(1))).max(64);
        Sizes {
            workers: workers.max(1),
            slots_per_worker: per_worker.next_power_of_two(),
            tunnels,
            static_spis: 1024,
            v4_groups: 1024,
            v6_groups: 1024,
            v6_tails: tunnels.max(1024),
            hops: HopLimits::default(),
        }
    }
}

/// What a tunnel is, for the data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelSpec {
    /// Operator's name.
    pub name: String,
    /// Peer's outer address.
    pub peer: IpAddr,
    /// Our outer address.
    pub local: IpAddr,
    /// Traffic selectors.
    pub policy: Policy,
    /// The worker to place it on (`None`: the one with the fewest tunnels).
    pub owner: Option<u16>,
}

/// An operation's handle; its [`Ack`] carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// Which operation an [`Ack`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// [`Lifecycle::install_inbound`].
    InstallInbound,
    /// [`Lifecycle::install_outbound`].
    InstallOutbound,
    /// [`Lifecycle::switch_outbound`].
    SwitchOutbound,
    /// [`Lifecycle::retire_inbound`].
    RetireInbound,
    /// [`Lifecycle::remove_outbound`].
    RemoveOutbound,
    /// [`Lifecycle::retarget_outbound`].
    RetargetOutbound,
}

/// The completion of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The operation's ticket.
    pub ticket: Ticket,
    /// What it was.
    pub op: Op,
    /// The tunnel.
    pub tunnel: TunnelId,
    /// The SA's SPI.
    pub spi: u32,
    /// The generation from which every worker sees the change, or why it failed.
    pub result: Result<u64, LifecycleError>,
}

/// A lifetime notice, resolved to its tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaNotice {
    /// The tunnel.
    pub tunnel: TunnelId,
    /// The SA's SPI.
    pub spi: u32,
    /// Inbound (else outbound).
    pub inbound: bool,
    /// Soft or hard.
    pub kind: NoticeKind,
}

/// Why a call was refused (nothing changed) or an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleError {
    /// No such tunnel.
    NoSuchTunnel(TunnelId),
    /// Every tunnel id is taken.
    TooManyTunnels,
    /// The tunnel has no SA with this SPI in the needed state.
    NoSuchSa(u32),
    /// The SPI was not reserved for this tunnel ([`Lifecycle::allocate_spi`]).
    NotReserved(u32),
    /// The SA is not ready for the call (e.g. switching to an SA still being installed).
    NotReady(u32),
    /// The owner has no free outbound slot.
    NoOutboundSlot,
    /// SPI allocation failed.
    Spi(espada_lookup::spi::SpiError),
    /// The directory refused the entry.
    Sad(espada_lookup::sad::SadError),
    /// A route or next hop could not be added.
    Route(&'static str),
    /// The worker refused the install (slot occupied or out of range).
    Refused,
    /// Another tunnel has exactly this remote selector.
    DuplicateSelector(Prefix),
}

impl fmt::Display for LifecycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LifecycleError::NoSuchTunnel(t) => write!(f, "no tunnel {t}"),
            LifecycleError::TooManyTunnels => f.write_str("tunnel table full"),
            LifecycleError::NoSuchSa(s) => write!(f, "no SA with SPI {s:#010x} in that state"),
            LifecycleError::NotReserved(s) => write!(f, "SPI {s:#010x} is not reserved"),
            LifecycleError::NotReady(s) => write!(f, "SA {s:#010x} is not installed yet"),
            LifecycleError::NoOutboundSlot => f.write_str("no free outbound SA slot"),
            LifecycleError::Spi(e) => write!(f, "SPI: {e}"),
            LifecycleError::Sad(e) => write!(f, "SA directory: {e}"),
            LifecycleError::Route(e) => write!(f, "route: {e}"),
            LifecycleError::Refused => f.write_str("the worker refused the SA"),
            LifecycleError::DuplicateSelector(p) => {
                write!(f, "another tunnel has remote selector {p}")
            }
        }
    }
}

impl std::error::Error for LifecycleError {}

/// State of an inbound SA of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InState {
    /// SPI reserved, SA not handed over yet.
    Reserved,
    /// On its way into the slab and directory.
    Installing,
    /// Decrypting.
    Live,
    /// Decrypting until the grace period ends.
    Retiring,
    /// A tombstone; the SA is leaving (or has left) the slab.
    Tombstone,
}

/// State of an outbound SA of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutState {
    /// On its way into the slab.
    Installing,
    /// In the slab, not sent on.
    Standby,
    /// The tunnel sends on it.
    Active,
    /// Leaving the slab.
    Removing,
}

/// One inbound SA of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundBook {
    /// SPI, owner and slot.
    pub at: SpiSlot,
    /// State.
    pub state: InState,
}

/// One outbound SA of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboundBook {
    /// SPI (the peer's choice).
    pub spi: u32,
    /// Slot on the owner.
    pub slot: u32,
    /// State.
    pub state: OutState,
}

/// What the control thread knows of one tunnel.
#[derive(Clone, Debug)]
pub struct TunnelBook {
    /// The tunnel.
    pub spec: TunnelSpec,
    /// Its worker.
    pub owner: u16,
    /// Next hop towards the peer on the outside port.
    pub hop: u32,
    /// Selectors, shared with its SAs.
    pub policy: Arc<Policy>,
    /// Inbound SAs (oldest first).
    pub inbound: Vec<InboundBook>,
    /// Outbound SAs (oldest first).
    pub outbound: Vec<OutboundBook>,
}

impl TunnelBook {
    /// The outbound SA the tunnel sends on.
    pub fn active_outbound(&self) -> Option<u32> {
        self.outbound
            .iter()
            .find(|o| o.state == OutState::Active)
            .map(|o| o.spi)
    }

    fn inbound_mut(&mut self, spi: u32) -> Option<&mut InboundBook> {
        self.inbound.iter_mut().find(|i| i.at.spi == spi)
    }

    fn outbound_mut(&mut self, spi: u32) -> Option<&mut OutboundBook> {
        self.outbound.iter_mut().find(|o| o.spi == spi)
    }
}

/// Counters of the lifecycle machinery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifecycleStats {
    /// Commands sent and not answered yet.
    pub in_flight: usize,
    /// Commands waiting for room in a command ring.
    pub backlog: usize,
    /// Operations not acknowledged yet.
    pub pending: usize,
    /// SAs taken back from workers and dropped here.
    pub sas_freed: u64,
    /// SPIs forgotten after their tombstone period.
    pub tombstones_expired: u64,
    /// Installs a worker refused.
    pub refused: u64,
    /// Notices whose slot no longer held the SA they named (an SA removed meanwhile).
    pub stale_notices: u64,
    /// Route groups and records returned to their pools.
    pub route_groups_reclaimed: u64,
    /// The SPI allocator's alarm counter (duplicates it refused to hand out).
    pub spi_alarms: u64,
}

/// The control thread's end of one worker.
pub struct WorkerEnd {
    commands: rtrb::Producer<Command>,
    replies: rtrb::Consumer<Reply>,
    notices: rtrb::Consumer<Notice>,
    /// Commands not yet pushed.
    backlog: VecDeque<Command>,
    /// Operation of each command in flight, in order (replies come in order).
    expect: VecDeque<Option<Ticket>>,
    /// Tunnel of each inbound / outbound slot (for notices).
    in_tunnel: Vec<Option<TunnelId>>,
    out_tunnel: Vec<Option<TunnelId>>,
    /// Free outbound slots, oldest release first.
    out_free: VecDeque<u32>,
    tunnels: u32,
}

/// What one worker needs, handed out by [`Lifecycle::new`].
pub struct WorkerParts {
    /// Its slab, sized by [`Sizes::slots_per_worker`].
    pub slab: Slab,
    /// Commands from the control thread.
    pub commands: rtrb::Consumer<Command>,
    /// Replies to it.
    pub replies: rtrb::Producer<Reply>,
    /// Lifetime notices to it.
    pub notices: rtrb::Producer<Notice>,
    /// Its reader of the tables.
    pub tables: Reader<Tables>,
}

/// An operation waiting for something.
#[derive(Clone, Copy, Debug)]
struct Pending {
    op: Op,
    tunnel: TunnelId,
    spi: u32,
    /// Waiting for every worker to adopt this generation (`None`: waiting for a reply).
    generation: Option<u64>,
}

/// A deadline of the inbound retirement machinery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The grace period ends: tombstone, take the SA out of the slab.
    Tombstone { tunnel: TunnelId, spi: u32 },
    /// The tombstone period ends: forget the SPI.
    Forget { tunnel: TunnelId, spi: u32 },
}

/// See the module documentation.
pub struct Lifecycle {
    sizes: Sizes,
    publisher: Publisher<Tables>,
    tables: Tables,
    sad: Arc<Directory>,
    spis: SpiAllocator<SplitMix64>,
    routes: RouteWriter,
    hops: HopWriter,
    tunnel_words: Arc<TunnelTable>,
    outbound_spis: Arc<KeyMap>,
    peers: Arc<KeyMap>,
    books: Vec<Option<TunnelBook>>,
    free_ids: Vec<TunnelId>,
    /// Remote selector → tunnel (refuses exact duplicates; control side only).
    selectors: HashMap<Prefix, TunnelId>,
    ends: Vec<WorkerEnd>,
    pending: HashMap<Ticket, Pending>,
    /// Retire / remove operations by (tunnel, spi), acknowledged on the slab's reply.
    retiring: HashMap<(TunnelId, u32, bool), Ticket>,
    next_ticket: u64,
    timers: BTreeSet<(Instant, u64, Timer)>,
    timer_seq: u64,
    acks: VecDeque<Ack>,
    notices: VecDeque<SaNotice>,
    dirty: bool,
    stats: LifecycleStats,
    /// Linger of each tombstone, by (tunnel, spi), until the SA's removal reply arrives.
    linger: HashMap<(TunnelId, u32), Duration>,
}

impl Lifecycle {
    /// Builds every shared structure for `sizes` and `ports`, and the parts of each worker.
    pub fn new(
        sizes: Sizes,
        ports: [Iface; 2],
    ) -> Result<(Lifecycle, Vec<WorkerParts>), LifecycleError> {
        let seed = RandomState::new().hash_one(0x6573_7061_6461u64);
        Lifecycle::with_seed(sizes, ports, seed)
    }

    /// As [`Lifecycle::new`] with a fixed SPI seed (tests).
    pub fn with_seed(
        sizes: Sizes,
        ports: [Iface; 2],
        seed: u64,
    ) -> Result<(Lifecycle, Vec<WorkerParts>), LifecycleError> {
        let layout = SpiLayout::new(sizes.workers, sizes.slots_per_worker)
            .map_err(|_| LifecycleError::Route("SPI layout: too many workers or slots"))?;
        let sad = Arc::new(Directory::new(layout, sizes.static_spis));
        let spis = SpiAllocator::new(sad.clone(), SplitMix64::new(seed));
        let routes = RouteWriter::new(sizes.v4_groups, sizes.v6_groups, sizes.v6_tails)
            .map_err(|_| LifecycleError::Route("route pools"))?;
        let hops = HopWriter::new(ports.clone(), sizes.hops)
            .map_err(|_| LifecycleError::Route("neighbour routes"))?;
        let tunnel_words = Arc::new(TunnelTable::new(sizes.tunnels));
        let outbound_spis = Arc::new(KeyMap::new(2 * sizes.tunnels as usize));
        let peers = Arc::new(KeyMap::new(sizes.tunnels as usize));
        let tables = Tables {
            generation: 0,
            workers: sizes.workers,
            ports,
            sad: sad.clone(),
            routes: routes.routes(),
            tunnels: tunnel_words.clone(),
            hops: hops.macs(),
            neighbours: hops.routes(),
            outbound_spis: outbound_spis.clone(),
            peers: peers.clone(),
        };
        let mut publisher = Publisher::new(tables.clone());
        let slots = sizes.slots_per_worker;
        let mut ends = Vec::new();
        let mut parts = Vec::new();
        for _ in 0..sizes.workers {
            let (cmd_tx, cmd_rx) = rtrb::RingBuffer::new(COMMAND_RING);
            let (rep_tx, rep_rx) = rtrb::RingBuffer::new(COMMAND_RING);
            let (not_tx, not_rx) = rtrb::RingBuffer::new(notice_capacity(slots));
            ends.push(WorkerEnd {
                commands: cmd_tx,
                replies: rep_rx,
                notices: not_rx,
                backlog: VecDeque::new(),
                expect: VecDeque::new(),
                in_tunnel: vec![None; slots as usize],
                out_tunnel: vec![None; slots as usize],
                out_free: (0..slots).collect(),
                tunnels: 0,
            });
            parts.push(WorkerParts {
                slab: Slab::with_capacity(slots),
                commands: cmd_rx,
                replies: rep_tx,
                notices: not_tx,
                tables: publisher.register_reader(),
            });
        }
        let lc = Lifecycle {
            sizes,
            publisher,
            tables,
            sad,
            spis,
            routes,
            hops,
            tunnel_words,
            outbound_spis,
            peers,
            books: Vec::new(),
            free_ids: (0..sizes.tunnels).rev().collect(),
            selectors: HashMap::new(),
            ends,
            pending: HashMap::new(),
            retiring: HashMap::new(),
            next_ticket: 1,
            timers: BTreeSet::new(),
            timer_seq: 0,
            acks: VecDeque::new(),
            notices: VecDeque::new(),
            dirty: false,
            stats: LifecycleStats::default(),
            linger: HashMap::new(),
        };
        Ok((lc, parts))
    }

    /// The sizes it was built with.
    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// The newest table version.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The publisher (for `show workers` and reclamation figures).
    pub fn publisher(&self) -> &Publisher<Tables> {
        &self.publisher
    }

    /// The oldest generation an online worker runs on (the newest if none is online).
    pub fn visible_generation(&self) -> u64 {
        self.publisher
            .readers()
            .iter()
            .filter_map(|r| match r.state {
                ReaderState::Online { adopted } => Some(adopted),
                ReaderState::Offline => None,
            })
            .min()
            .unwrap_or_else(|| self.publisher.generation())
    }

    /// Counters.
    pub fn stats(&self) -> LifecycleStats {
        LifecycleStats {
            in_flight: self.ends.iter().map(|e| e.expect.len()).sum(),
            backlog: self.ends.iter().map(|e| e.backlog.len()).sum(),
            pending: self.pending.len() + self.retiring.len(),
            spi_alarms: self.spis.alarms(),
            ..self.stats
        }
    }

    /// The earliest retirement deadline, for the caller's sleep.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _, _)| *t)
    }

    /// A tunnel's book.
    pub fn tunnel(&self, id: TunnelId) -> Option<&TunnelBook> {
        self.books.get(id as usize)?.as_ref()
    }

    /// Every tunnel.
    pub fn tunnels(&self) -> impl Iterator<Item = (TunnelId, &TunnelBook)> {
        self.books
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.as_ref().map(|b| (i as TunnelId, b)))
    }

    /// Sets a port's MAC address (known once the port is up).
    pub fn set_port_mac(&mut self, role: PortRole, mac: MacAddr) {
        self.tables.ports[role as usize].mac = mac;
        self.dirty = true;
    }

    /// The MTU the device of port `role` runs with; tunnels added afterwards start from it as
    /// their path MTU.
    pub fn set_port_mtu(&mut self, role: PortRole, mtu: u32) {
        self.tables.ports[role as usize].mtu = mtu;
        self.dirty = true;
    }

    /// Control thread: the path MTU towards the peer of `tunnel` changed (outer IP bytes,
    /// [`crate::pmtu`]); the owner checks inner packets against it from its next packet on.
    pub fn set_path_mtu(&mut self, tunnel: TunnelId, mtu: u32) -> bool {
        self.tunnel_words.set_path_mtu(tunnel, mtu)
    }

    /// The TCP MSS clamp of `tunnel` (`None`: none); the workers apply it from their next SYN.
    pub fn set_mss_clamp(&mut self, tunnel: TunnelId, mss: Option<u16>) -> bool {
        self.tunnel_words.set_mss_clamp(tunnel, mss)
    }

    /// Where `tunnel` fragments packets too big for it; the workers apply it from their next
    /// such packet.
    pub fn set_fragmentation(&mut self, tunnel: TunnelId, f: Fragmentation) -> bool {
        self.tunnel_words.set_fragmentation(tunnel, f)
    }

    /// A neighbour's MAC was learned on `port`; true when it changed a next hop.
    pub fn neighbour_learned(&mut self, port: PortRole, ip: IpAddr, mac: MacAddr) -> bool {
        self.hops.set_epoch(self.publisher.generation());
        let changed = self.hops.learned(port, ip, mac).unwrap_or(false);
        self.dirty |= self.hops.retired() > 0;
        changed
    }

    /// The next hop towards `dst` on `port` (for the control thread to resolve it).
    pub fn next_hop(&self, port: PortRole, dst: IpAddr) -> Option<IpAddr> {
        self.hops.ports()[port as usize].next_hop(dst)
    }

    /// The MAC of the next hop towards `dst` on `port`, when resolved (the control thread's
    /// own frames, e.g. IKE).
    pub fn mac_towards(&self, port: PortRole, dst: IpAddr) -> Option<MacAddr> {
        self.hops.mac_of(port, self.next_hop(port, dst)?)
    }

    fn book_mut(&mut self, id: TunnelId) -> Result<&mut TunnelBook, LifecycleError> {
        self.books
            .get_mut(id as usize)
            .and_then(Option::as_mut)
            .ok_or(LifecycleError::NoSuchTunnel(id))
    }

    fn ticket(&mut self) -> Ticket {
        let t = Ticket(self.next_ticket);
        self.next_ticket += 1;
        t
    }

    /// Adds a tunnel: its peer, routes for its remote selectors, its next hop. No SA yet.
    pub fn add_tunnel(&mut self, spec: TunnelSpec) -> Result<TunnelId, LifecycleError> {
        if let Some(p) = spec
            .policy
            .remote_ts
            .iter()
            .find(|p| self.selectors.contains_key(p))
        {
            return Err(LifecycleError::DuplicateSelector(*p));
        }
        let owner = match spec.owner {
            Some(o) if o < self.sizes.workers => o,
            Some(o) => {
                return Err(LifecycleError::Spi(
                    espada_lookup::spi::SpiError::NoSuchWorker(o),
                ));
            }
            None => (0..self.sizes.workers)
                .min_by_key(|&w| (self.ends[usize::from(w)].tunnels, w))
                .unwrap_or(0),
        };
        let (hop, _) = self
            .hops
            .towards(PortRole::Outside, spec.peer)
            .map_err(|_| LifecycleError::Route("no next hop towards the peer"))?;
        let id = self.free_ids.pop().ok_or(LifecycleError::TooManyTunnels)?;
        self.routes.set_epoch(self.publisher.generation());
        for (i, p) in spec.policy.remote_ts.iter().enumerate() {
            if self.routes.insert(p.addr, p.len, id).is_err() {
                for q in &spec.policy.remote_ts[..i] {
                    let _ = self.routes.remove(q.addr, q.len);
                }
                self.free_ids.push(id);
                return Err(LifecycleError::Route("route pool exhausted"));
            }
        }
        for p in &spec.policy.remote_ts {
            self.selectors.insert(*p, id);
        }
        self.tunnel_words.set_peer(id, Some(spec.peer));
        self.tunnel_words
            .set_path_mtu(id, self.tables.ports[PortRole::Outside as usize].mtu);
        let _ = self.peers.insert(peer_key(spec.peer), id);
        self.ends[usize::from(owner)].tunnels += 1;
        let book = TunnelBook {
            policy: Arc::new(spec.policy.clone()),
            spec,
            owner,
            hop,
            inbound: Vec::new(),
            outbound: Vec::new(),
        };
        let slot = id as usize;
        if self.books.len() <= slot {
            self.books.resize_with(slot + 1, || None);
        }
        self.books[slot] = Some(book);
        self.dirty = true;
        Ok(id)
    }

    /// Reserves a fresh inbound SPI for `tunnel` on its owner (to offer to the peer).
    pub fn allocate_spi(&mut self, tunnel: TunnelId) -> Result<u32, LifecycleError> {
        let owner = self.book_mut(tunnel)?.owner;
        let at = self
            .spis
            .allocate(Some(owner))
            .map_err(LifecycleError::Spi)?;
        self.book_mut(tunnel)?.inbound.push(InboundBook {
            at,
            state: InState::Reserved,
        });
        Ok(at.spi)
    }

    /// Reserves the static (lab) SPI `spi` for `tunnel`.
    pub fn allocate_static_spi(
        &mut self,
        tunnel: TunnelId,
        spi: u32,
    ) -> Result<u32, LifecycleError> {
        let owner = self.book_mut(tunnel)?.owner;
        let at = self
            .spis
            .allocate_static(spi, Some(owner))
            .map_err(LifecycleError::Spi)?;
        self.book_mut(tunnel)?.inbound.push(InboundBook {
            at,
            state: InState::Reserved,
        });
        Ok(spi)
    }

    /// Gives back a reservation the peer never used.
    pub fn release_spi(&mut self, tunnel: TunnelId, spi: u32) -> Result<(), LifecycleError> {
        let b = self.book_mut(tunnel)?;
        let i = b
            .inbound
            .iter()
            .position(|i| i.at.spi == spi && i.state == InState::Reserved)
            .ok_or(LifecycleError::NotReserved(spi))?;
        let at = b.inbound.remove(i).at;
        self.spis.release(at).map_err(LifecycleError::Spi)
    }

    fn send(&mut self, owner: u16, c: Command, ticket: Option<Ticket>) {
        let end = &mut self.ends[usize::from(owner)];
        end.backlog.push_back(c);
        // The ticket rides with the command: pushed in order, answered in order.
        end.expect.push_back(ticket);
        self.flush_backlog(owner);
    }

    /// Pushes backlog commands while fewer than [`COMMAND_RING`] are unanswered.
    fn flush_backlog(&mut self, owner: u16) {
        let end = &mut self.ends[usize::from(owner)];
        // `expect` holds every unanswered command, pushed or not.
        let mut in_flight = end.expect.len() - end.backlog.len();
        while in_flight < COMMAND_RING {
            let Some(c) = end.backlog.pop_front() else {
                break;
            };
            match end.commands.push(c) {
                Ok(()) => in_flight += 1,
                Err(rtrb::PushError::Full(c)) => {
                    end.backlog.push_front(c);
                    break;
                }
            }
        }
    }

    /// Hands `sa` (whose SPI was reserved for `tunnel`) to its owner; once it is in the slab,
    /// its SPI goes into the directory. Acknowledged when every worker decrypts it.
    pub fn install_inbound(
        &mut self,
        tunnel: TunnelId,
        sa: InboundSa,
    ) -> Result<Ticket, LifecycleError> {
        let spi = sa.spi();
        let b = self.book_mut(tunnel)?;
        let (owner, policy) = (b.owner, b.policy.clone());
        let ib = b
            .inbound_mut(spi)
            .filter(|i| i.state == InState::Reserved)
            .ok_or(LifecycleError::NotReserved(spi))?;
        ib.state = InState::Installing;
        let slot = ib.at.slot;
        let t = self.ticket();
        self.pending.insert(
            t,
            Pending {
                op: Op::InstallInbound,
                tunnel,
                spi,
                generation: None,
            },
        );
        self.ends[usize::from(owner)].in_tunnel[slot as usize] = Some(tunnel);
        let entry = InboundSlot::new(sa, tunnel, policy);
        self.send(owner, Command::InstallInbound { slot, entry }, Some(t));
        Ok(t)
    }

    /// Hands `sa` to the tunnel's owner as a standby outbound SA (nothing sends on it until
    /// [`Lifecycle::switch_outbound`]).
    pub fn install_outbound(
        &mut self,
        tunnel: TunnelId,
        sa: OutboundSa,
    ) -> Result<Ticket, LifecycleError> {
        let spi = sa.spi();
        let b = self.book_mut(tunnel)?;
        if b.outbound.iter().any(|o| o.spi == spi) {
            return Err(LifecycleError::NotReady(spi));
        }
        let (owner, policy, hop, peer) = (b.owner, b.policy.clone(), b.hop, b.spec.peer);
        let end = &mut self.ends[usize::from(owner)];
        let slot = end
            .out_free
            .pop_front()
            .ok_or(LifecycleError::NoOutboundSlot)?;
        end.out_tunnel[slot as usize] = Some(tunnel);
        self.book_mut(tunnel)?.outbound.push(OutboundBook {
            spi,
            slot,
            state: OutState::Installing,
        });
        let _ = self.outbound_spis.insert(spi, tunnel);
        let t = self.ticket();
        self.pending.insert(
            t,
            Pending {
                op: Op::InstallOutbound,
                tunnel,
                spi,
                generation: None,
            },
        );
        let entry = OutboundSlot::new(sa, tunnel, policy, peer, hop);
        self.send(owner, Command::InstallOutbound { slot, entry }, Some(t));
        Ok(t)
    }

    /// The tunnel sends on its standby SA `spi` from now on (one store); the SA it sent on
    /// before becomes a standby (remove it with [`Lifecycle::remove_outbound`]).
    pub fn switch_outbound(
        &mut self,
        tunnel: TunnelId,
        spi: u32,
    ) -> Result<Ticket, LifecycleError> {
        let b = self.book_mut(tunnel)?;
        let owner = b.owner;
        let slot = match b.outbound_mut(spi) {
            Some(o) if o.state == OutState::Standby => o.slot,
            Some(o) if o.state == OutState::Installing => {
                return Err(LifecycleError::NotReady(spi));
            }
            _ => return Err(LifecycleError::NoSuchSa(spi)),
        };
        for o in b.outbound.iter_mut() {
            o.state = match (o.spi == spi, o.state) {
                (true, _) => OutState::Active,
                (false, OutState::Active) => OutState::Standby,
                (false, s) => s,
            };
        }
        self.tunnel_words
            .set_outbound(tunnel, Some(SaRef { owner, slot }));
        self.dirty = true;
        let t = self.ticket();
        self.pending.insert(
            t,
            Pending {
                op: Op::SwitchOutbound,
                tunnel,
                spi,
                generation: Some(self.publisher.generation() + 1),
            },
        );
        Ok(t)
    }

    /// The tunnel's peer moved (its NAT mapping changed, as an authenticated IKE message
    /// showed, RFC 7296 §2.23): its outbound SA `spi` sends to `peer` (UDP `port` when
    /// encapsulated) from the next packet on, with its keys and sequence numbers; SAs
    /// installed later go there too. Acknowledged once the owner has applied it.
    pub fn retarget_outbound(
        &mut self,
        tunnel: TunnelId,
        spi: u32,
        peer: IpAddr,
        port: Option<u16>,
    ) -> Result<Ticket, LifecycleError> {
        let (hop, _) = self
            .hops
            .towards(PortRole::Outside, peer)
            .map_err(|_| LifecycleError::Route("no next hop towards the peer"))?;
        self.dirty = true;
        let b = self.book_mut(tunnel)?;
        let owner = b.owner;
        let slot = b
            .outbound_mut(spi)
            .filter(|o| o.state != OutState::Removing)
            .ok_or(LifecycleError::NoSuchSa(spi))?
            .slot;
        let old = std::mem::replace(&mut b.spec.peer, peer);
        b.hop = hop;
        if old != peer {
            self.peers.remove(peer_key(old), tunnel);
            let _ = self.peers.insert(peer_key(peer), tunnel);
            self.tunnel_words.set_peer(tunnel, Some(peer));
        }
        let t = self.ticket();
        self.pending.insert(
            t,
            Pending {
                op: Op::RetargetOutbound,
                tunnel,
                spi,
                generation: None,
            },
        );
        let c = Command::RetargetOutbound {
            slot,
            spi,
            peer,
            port,
            hop,
        };
        self.send(owner, c, Some(t));
        Ok(t)
    }

    /// Takes an outbound SA out of the slab (the active one is cleared from the tunnel first).
    pub fn remove_outbound(
        &mut self,
        tunnel: TunnelId,
        spi: u32,
    ) -> Result<Ticket, LifecycleError> {
        let b = self.book_mut(tunnel)?;
        let owner = b.owner;
        let o = b
            .outbound_mut(spi)
            .filter(|o| matches!(o.state, OutState::Standby | OutState::Active))
            .ok_or(LifecycleError::NoSuchSa(spi))?;
        let was_active = o.state == OutState::Active;
        o.state = OutState::Removing;
        let slot = o.slot;
        if was_active {
            self.tunnel_words.set_outbound(tunnel, None);
            self.dirty = true;
        }
        let t = self.ticket();
        self.retiring.insert((tunnel, spi, false), t);
        self.send(owner, Command::RemoveOutbound { slot, spi }, None);
        Ok(t)
    }

    /// Retires a live inbound SA: it keeps decrypting for `grace`, then becomes a tombstone
    /// and leaves the slab; `linger` after that its SPI is forgotten.
    pub fn retire_inbound(
        &mut self,
        tunnel: TunnelId,
        spi: u32,
        now: Instant,
        grace: Duration,
        linger: Duration,
    ) -> Result<Ticket, LifecycleError> {
        let ib = self
            .book_mut(tunnel)?
            .inbound_mut(spi)
            .filter(|i| i.state == InState::Live)
            .ok_or(LifecycleError::NoSuchSa(spi))?;
        ib.state = InState::Retiring;
        let t = self.ticket();
        self.retiring.insert((tunnel, spi, true), t);
        self.linger.insert((tunnel, spi), linger);
        self.timer(now + grace, Timer::Tombstone { tunnel, spi });
        Ok(t)
    }

    fn timer(&mut self, at: Instant, t: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq, t));
    }

    /// Advances everything: lifetime notices, worker replies, retirement deadlines, the
    /// backlog; publishes a table version when something changed; acknowledges what every
    /// worker now sees; reclaims what no worker can reach any more.
    pub fn poll(&mut self, now: Instant) {
        // Notices before replies: the notice ring's size argument needs it.
        for w in 0..self.ends.len() {
            while let Ok(n) = self.ends[w].notices.pop() {
                self.notice(w, n);
            }
        }
        for w in 0..self.ends.len() {
            while let Ok(r) = self.ends[w].replies.pop() {
                let ticket = self.ends[w].expect.pop_front().flatten();
                self.reply(w as u16, r, ticket, now);
            }
        }
        while let Some(&(at, seq, t)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, seq, t));
            self.fire(t, now);
        }
        for w in 0..self.sizes.workers {
            self.flush_backlog(w);
        }
        // Every change sets `dirty`, including those that unlink route groups: the new
        // generation is what lets them be reclaimed once every worker has adopted it.
        if self.dirty {
            self.publish();
        }
        let visible = self.visible_generation();
        let due: Vec<Ticket> = self
            .pending
            .iter()
            .filter(|(_, p)| p.generation.is_some_and(|g| g <= visible))
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            if let Some(p) = self.pending.remove(&t) {
                self.acks.push_back(Ack {
                    ticket: t,
                    op: p.op,
                    tunnel: p.tunnel,
                    spi: p.spi,
                    result: Ok(visible),
                });
            }
        }
        let freed = self.routes.reclaim(visible) + self.hops.reclaim(visible);
        self.stats.route_groups_reclaimed += freed as u64;
        self.publisher.reclaim();
    }

    fn publish(&mut self) {
        self.dirty = false;
        self.tables.generation = self.publisher.generation() + 1;
        self.publisher.publish(self.tables.clone());
    }

    /// The next acknowledgement.
    pub fn poll_ack(&mut self) -> Option<Ack> {
        self.acks.pop_front()
    }

    /// The next lifetime notice.
    pub fn poll_notice(&mut self) -> Option<SaNotice> {
        self.notices.pop_front()
    }

    /// Runs the workers' side of every queued command on `parts` in this thread, for a data
    /// plane whose workers are not running (start-up before launch, tests), then polls.
    pub fn apply_directly(&mut self, parts: &mut [WorkerParts], now: Instant) {
        loop {
            for p in parts.iter_mut() {
                while let Ok(c) = p.commands.pop() {
                    // At most COMMAND_RING commands are unanswered, so the reply fits.
                    let _ = p.replies.push(p.slab.apply(c));
                }
            }
            self.poll(now);
            // What a worker does at the top of its loop: adopt the newest tables.
            for p in parts.iter_mut() {
                p.tables.quiescent();
            }
            let waiting = self.pending.values().any(|p| p.generation.is_none())
                || self.ends.iter().any(|e| !e.expect.is_empty());
            if !waiting {
                self.poll(now);
                return;
            }
        }
    }

    fn notice(&mut self, w: usize, n: Notice) {
        let map = if n.inbound() {
            &self.ends[w].in_tunnel
        } else {
            &self.ends[w].out_tunnel
        };
        let tunnel = map.get(n.slot() as usize).copied().flatten();
        let known = tunnel.and_then(|t| self.tunnel(t)).is_some_and(|b| {
            if n.inbound() {
                b.inbound
                    .iter()
                    .any(|i| i.at.spi == n.spi() && i.at.slot == n.slot())
            } else {
                b.outbound
                    .iter()
                    .any(|o| o.spi == n.spi() && o.slot == n.slot())
            }
        });
        match tunnel {
            Some(tunnel) if known => self.notices.push_back(SaNotice {
                tunnel,
                spi: n.spi(),
                inbound: n.inbound(),
                kind: n.kind(),
            }),
            _ => self.stats.stale_notices += 1,
        }
    }

    fn fail(&mut self, t: Option<Ticket>, e: LifecycleError) {
        if let Some(p) = t.and_then(|t| self.pending.remove(&t).map(|p| (t, p))) {
            self.acks.push_back(Ack {
                ticket: p.0,
                op: p.1.op,
                tunnel: p.1.tunnel,
                spi: p.1.spi,
                result: Err(e),
            });
        }
    }

    fn reply(&mut self, w: u16, r: Reply, ticket: Option<Ticket>, now: Instant) {
        match r {
            Reply::Installed {
                inbound: true, spi, ..
            } => self.inbound_installed(ticket, spi),
            Reply::Installed {
                inbound: false,
                spi,
                ..
            } => {
                // Standby: no shared structure refers to it, so the owner having it is enough.
                let g = self.publisher.generation();
                let Some(p) = ticket.and_then(|t| self.pending.get_mut(&t)) else {
                    return;
                };
                p.generation = Some(g);
                let tunnel = p.tunnel;
                if let Ok(b) = self.book_mut(tunnel)
                    && let Some(o) = b.outbound_mut(spi)
                {
                    o.state = OutState::Standby;
                }
            }
            Reply::RefusedInbound { entry, .. } => {
                self.stats.refused += 1;
                let (tunnel, spi) = (entry.tunnel, entry.sa.spi());
                drop(entry);
                self.stats.sas_freed += 1;
                if let Ok(b) = self.book_mut(tunnel)
                    && let Some(i) = b.inbound.iter().position(|i| i.at.spi == spi)
                {
                    // The slot is not ours to free: the worker says it is taken.
                    b.inbound.remove(i);
                }
                self.fail(ticket, LifecycleError::Refused);
            }
            Reply::RefusedOutbound { entry, .. } => {
                self.stats.refused += 1;
                let (tunnel, spi) = (entry.tunnel, entry.sa.spi());
                drop(entry);
                self.stats.sas_freed += 1;
                self.outbound_spis.remove(spi, tunnel);
                if let Ok(b) = self.book_mut(tunnel)
                    && let Some(i) = b.outbound.iter().position(|o| o.spi == spi)
                {
                    b.outbound.remove(i);
                }
                self.fail(ticket, LifecycleError::Refused);
            }
            Reply::RemovedInbound { slot, spi, entry } => {
                let tunnel = entry.as_ref().map(|e| e.tunnel);
                // The SA and its keys are dropped here, on the control thread.
                self.stats.sas_freed += u64::from(entry.is_some());
                drop(entry);
                self.ends[usize::from(w)].in_tunnel[slot as usize] = None;
                if let Some(tunnel) = tunnel {
                    let linger = self.linger.remove(&(tunnel, spi)).unwrap_or_default();
                    self.timer(now + linger, Timer::Forget { tunnel, spi });
                    self.ack_removal(tunnel, spi, true);
                }
            }
            Reply::Retargeted { ok: true, .. } => {
                // Only the owner's slot changed: its having applied it is enough.
                let g = self.publisher.generation();
                if let Some(p) = ticket.and_then(|t| self.pending.get_mut(&t)) {
                    p.generation = Some(g);
                }
            }
            Reply::Retargeted { spi, ok: false } => {
                self.fail(ticket, LifecycleError::NoSuchSa(spi));
            }
            Reply::RemovedOutbound { slot, spi, entry } => {
                let tunnel = entry.as_ref().map(|e| e.tunnel);
                self.stats.sas_freed += u64::from(entry.is_some());
                drop(entry);
                let end = &mut self.ends[usize::from(w)];
                end.out_tunnel[slot as usize] = None;
                end.out_free.push_back(slot);
                if let Some(tunnel) = tunnel {
                    self.outbound_spis.remove(spi, tunnel);
                    if let Ok(b) = self.book_mut(tunnel) {
                        b.outbound.retain(|o| o.spi != spi);
                    }
                    self.ack_removal(tunnel, spi, false);
                }
            }
        }
    }

    fn ack_removal(&mut self, tunnel: TunnelId, spi: u32, inbound: bool) {
        if let Some(t) = self.retiring.remove(&(tunnel, spi, inbound)) {
            self.acks.push_back(Ack {
                ticket: t,
                op: if inbound {
                    Op::RetireInbound
                } else {
                    Op::RemoveOutbound
                },
                tunnel,
                spi,
                result: Ok(self.publisher.generation()),
            });
        }
    }

    fn inbound_installed(&mut self, ticket: Option<Ticket>, spi: u32) {
        let Some(t) = ticket else { return };
        let Some(p) = self.pending.get(&t).copied() else {
            return;
        };
        let Some(at) = self
            .tunnel(p.tunnel)
            .and_then(|b| b.inbound.iter().find(|i| i.at.spi == spi))
            .map(|i| i.at)
        else {
            return;
        };
        if let Err(e) = self.sad.install(at, p.tunnel) {
            self.fail(ticket, LifecycleError::Sad(e));
            return;
        }
        let _ = self.spis.mark_live(at);
        if let Ok(b) = self.book_mut(p.tunnel)
            && let Some(i) = b.inbound_mut(spi)
        {
            i.state = InState::Live;
        }
        self.dirty = true;
        let g = self.publisher.generation() + 1;
        if let Some(p) = self.pending.get_mut(&t) {
            p.generation = Some(g);
        }
    }

    fn fire(&mut self, t: Timer, _now: Instant) {
        match t {
            Timer::Tombstone { tunnel, spi } => {
                let Some((owner, at)) = self.tunnel(tunnel).and_then(|b| {
                    b.inbound
                        .iter()
                        .find(|i| i.at.spi == spi)
                        .map(|i| (b.owner, i.at))
                }) else {
                    return;
                };
                let _ = self.sad.retire(at);
                let _ = self.spis.retire(at);
                if let Ok(b) = self.book_mut(tunnel)
                    && let Some(i) = b.inbound_mut(spi)
                {
                    i.state = InState::Tombstone;
                }
                self.dirty = true;
                self.send(owner, Command::RemoveInbound { slot: at.slot, spi }, None);
            }
            Timer::Forget { tunnel, spi } => {
                let Some(at) = self
                    .tunnel(tunnel)
                    .and_then(|b| b.inbound.iter().find(|i| i.at.spi == spi).map(|i| i.at))
                else {
                    return;
                };
                let _ = self.sad.remove(at);
                let _ = self.spis.release(at);
                if let Ok(b) = self.book_mut(tunnel) {
                    b.inbound.retain(|i| i.at.spi != spi);
                }
                self.stats.tombstones_expired += 1;
            }
        }
    }
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("sizes", &self.sizes)
            .field("generation", &self.publisher.generation())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
