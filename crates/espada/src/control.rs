//! The control thread: everything that is not per-packet work.
//!
//! Each turn of its loop it
//! 1. takes punted frames from every worker: IKE datagrams go to the control plane
//!    (`espada_control`), everything else to the host stack (ARP, IPv6 neighbour discovery,
//!    ICMP echo to the box); answers leave on its own TX queue of each port;
//! 2. drains every worker's events: unknown-SPI samples go to the rate-limited log, ICMP errors
//!    are accounted to their tunnel (path MTU), neighbour misses start ARP/ND resolution;
//! 3. polls the control plane, which polls the data plane's lifecycle
//!    (`espada_dataplane::lifecycle`: worker replies — removed SAs are freed here — lifetime
//!    notices, deadlines, table publication, QSBR reclamation), runs its IKE timers (rekeys,
//!    DPD, retransmissions) and hands out IKE datagrams, which are framed towards the next hop
//!    (held up to a few seconds while it is being resolved);
//! 4. answers the admin socket.
//!
//! It never blocks a worker: all exchanges are SPSC rings, and the only waiting it does is a
//! short sleep when a turn found nothing to do.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dpdk::{Burst, Mempool, RingConsumer};
use espada_admin::{AdminError, AdminServer, Request, Response};
use espada_buf::PacketBuf;
use espada_control::{ControlPlane, Level, SpiCause};
use espada_dataplane::PortRole;
use espada_dataplane::events::{Event, UnknownSpiClass};
use espada_dataplane::pmtu::Report;
use espada_dataplane::stats::WorkerStats;
use espada_dataplane::worker::TxPath;
use espada_esp::icmp::IcmpErrorKind;
use espada_hostpath::{HostEvent, HostOutput, HostStack};
use espada_ike::exchange::Transmit;
use espada_wire::MacAddr;
use tracing::{debug, error, info, warn};

use crate::ike_dp::LifecycleDp;
use crate::ike_io;
use crate::unknown_spi::UnknownSpiLog;
use crate::views::{self, TunnelRuntime};

/// How often the host stack's timers (ARP/ND retries, expiry) run.
const HOST_POLL_EVERY: Duration = Duration::from_millis(100);
/// Sleep of an idle control turn.
const IDLE_SLEEP: Duration = Duration::from_micros(500);
/// How long an IKE datagram waits for its next hop to be resolved before it is dropped (the
/// IKE endpoint retransmits requests anyway).
const IKE_HOLD: Duration = Duration::from_secs(3);
/// IKE datagrams waiting for a next hop at most (a flood answered towards spoofed sources
/// must not grow the queue); beyond it they are dropped and counted.
const IKE_WAITING_MAX: usize = 1024;
/// Least time between two log lines about IKE datagrams dropped unresolved.
const UNRESOLVED_LOG_EVERY: Duration = Duration::from_secs(10);
/// How often learned path MTUs are checked for ageing out.
const PMTU_AGE_EVERY: Duration = Duration::from_secs(1);

/// The control thread's end of one worker.
pub struct WorkerLink {
    /// The worker's counters.
    pub stats: Arc<WorkerStats>,
    /// Its lcore.
    pub lcore: u32,
    /// Its RX queues, for `show workers` (e.g. `outside/0`).
    pub rx_queues: Vec<String>,
    /// Its events.
    pub events: rtrb::Consumer<Event>,
    /// Frames it punted, per port role.
    pub punts: [RingConsumer; 2],
}

/// The control thread's state.
pub struct Control {
    /// The control plane (IKE, rekeys, DPD) over the data plane's lifecycle.
    pub cp: ControlPlane<LifecycleDp>,
    /// Worker links.
    pub workers: Vec<WorkerLink>,
    /// The control TX queue of each port.
    pub tx: [TxPath; 2],
    /// Pool for frames the control thread builds.
    pub pool: Mempool,
    /// The host stack (ARP, ND, ICMP echo).
    pub host: HostStack,
    /// Per-tunnel facts learned from events.
    pub runtime: Vec<TunnelRuntime>,
    /// Rate-limited unknown-SPI log.
    pub unknown: UnknownSpiLog,
    /// The admin socket.
    pub admin: Option<AdminServer>,
    out: HostOutput,
    last_host_poll: Option<Instant>,
    /// IKE datagrams waiting for their next hop's MAC.
    ike_waiting: VecDeque<(Instant, Transmit)>,
    /// IKE datagrams dropped because their next hop did not resolve (or the wait queue was
    /// full), those already logged, and when the last line was.
    ike_unresolved: (u64, u64, Option<Instant>),
    last_pmtu_age: Option<Instant>,
}

impl Control {
    /// A control thread over its parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cp: ControlPlane<LifecycleDp>,
        workers: Vec<WorkerLink>,
        tx: [TxPath; 2],
        pool: Mempool,
        host: HostStack,
        unknown: UnknownSpiLog,
        admin: Option<AdminServer>,
    ) -> Control {
        let runtime = vec![TunnelRuntime::default(); cp.dataplane().lc.sizes().tunnels as usize];
        Control {
            cp,
            workers,
            tx,
            pool,
            host,
            runtime,
            unknown,
            admin,
            out: HostOutput::default(),
            last_host_poll: None,
            ike_waiting: VecDeque::new(),
            ike_unresolved: (0, 0, None),
            last_pmtu_age: None,
        }
    }

    /// Starts resolving every next hop the data plane will need (tunnel peers, gateways) and
    /// announces the box's addresses.
    pub fn prime(&mut self, now: Instant) {
        let mut hops: Vec<(PortRole, IpAddr)> = Vec::new();
        {
            let dp = self.cp.dataplane();
            let lc = &dp.lc;
            for (_, t) in lc.tunnels() {
                if let Some(h) = lc.next_hop(PortRole::Outside, t.spec.peer) {
                    hops.push((PortRole::Outside, h));
                }
            }
            for r in PortRole::ALL {
                let p = lc.tables().port(r);
                hops.extend(p.gateway4.iter().chain(p.gateway6.iter()).map(|g| (r, *g)));
            }
        }
        for (r, ip) in hops {
            self.host.resolve(r, ip, now, &mut self.out);
        }
        for r in PortRole::ALL {
            self.host.announce(r, &mut self.out);
        }
        self.flush_host_output();
    }

    /// Runs until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if !self.turn(Instant::now()) {
                std::thread::sleep(IDLE_SLEEP);
            }
        }
    }

    /// One turn of the loop; true when it found work.
    pub fn turn(&mut self, now: Instant) -> bool {
        let mut work = self.punts(now);
        work |= self.events(now);
        if self
            .last_host_poll
            .is_none_or(|t| now.duration_since(t) >= HOST_POLL_EVERY)
        {
            self.host.poll(now, &mut self.out);
            self.last_host_poll = Some(now);
        }
        self.flush_host_output();
        self.age_path_mtus(now);
        let before = self.cp.dataplane().lc.stats();
        self.cp.poll(now);
        if self.cp.poll_timeout().is_some_and(|t| t <= now) {
            self.cp.handle_timeout(now);
        }
        work |= self.cp.dataplane().lc.stats() != before;
        while let Some(l) = self.cp.poll_log() {
            work = true;
            match l.level {
                Level::Info => info!(tunnel = %l.tunnel, "{}", l.text),
                Level::Warn => warn!(tunnel = %l.tunnel, "{}", l.text),
                Level::Error => error!(tunnel = %l.tunnel, "{}", l.text),
            }
        }
        work |= self.send_ike(now);
        if let Some(mut admin) = self.admin.take() {
            work |= admin.poll(&mut |r| self.answer(r)) > 0;
            self.admin = Some(admin);
        }
        work
    }

    fn punts(&mut self, now: Instant) -> bool {
        let mut b: Burst = Burst::new();
        let mut work = false;
        for w in 0..self.workers.len() {
            for role in PortRole::ALL {
                if self.workers[w].punts[role as usize].dequeue_burst(&mut b) == 0 {
                    continue;
                }
                work = true;
                for m in b.drain() {
                    match (role, ike_io::parse(m.data())) {
                        (PortRole::Outside, Some((local, remote, payload))) => {
                            self.cp.handle_datagram(now, local, remote, payload);
                        }
                        (PortRole::Inside, Some(_)) => {
                            debug!("IKE datagram on the inside port ignored");
                        }
                        (_, None) => {
                            self.host.handle_frame(role, m.data(), now, &mut self.out);
                        }
                    }
                }
            }
        }
        work
    }

    fn flush_host_output(&mut self) {
        for e in self.out.events.drain(..) {
            match e {
                HostEvent::NeighborLearned { port, ip, mac } => {
                    if self.cp.dataplane_mut().lc.neighbour_learned(port, ip, mac) {
                        info!(port = %port, %ip, %mac, "neighbour learned");
                    }
                }
                HostEvent::AddressConflict { port, ip, mac } => {
                    warn!(port = %port, %ip, %mac, "another station uses one of our addresses");
                }
            }
        }
        let mut bursts: [Burst; 2] = [Burst::new(), Burst::new()];
        for f in self.out.frames.drain(..) {
            let role = f.port;
            let Some(mut m) = self.pool.alloc() else {
                warn!("mbuf pool empty: control frame not sent");
                continue;
            };
            if !m.set_data(&f.frame) {
                continue;
            }
            if let Err(m) = bursts[role as usize].push(m) {
                self.tx[role as usize].tx_or_drop(&mut bursts[role as usize]);
                let _ = bursts[role as usize].push(m);
            }
        }
        for r in PortRole::ALL {
            let (_, lost) = self.tx[r as usize].tx_or_drop(&mut bursts[r as usize]);
            if lost > 0 {
                warn!(port = r.name(), lost, "control TX queue full");
            }
        }
    }

    fn events(&mut self, now: Instant) -> bool {
        let mut work = false;
        for w in 0..self.workers.len() {
            while let Ok(e) = self.workers[w].events.pop() {
                work = true;
                self.event(e, now);
            }
        }
        work
    }

    fn event(&mut self, e: Event, now: Instant) {
        match e {
            Event::UnknownSpi(u) => {
                let cause = (u.class == UnknownSpiClass::Tombstone)
                    .then(|| self.cp.spi_cause(u.spi))
                    .flatten();
                if let Some(line) = self.unknown.record(&u, cause.map(SpiCause::name), now) {
                    warn!("{line}");
                }
                // A configured peer sends on an SPI we do not have, or on one of the SAs we
                // removed when DPD declared it dead: recover now (liveness check, or a new IKE
                // SA), not at the next DPD interval.
                if u.class == UnknownSpiClass::KnownPeer || cause == Some(SpiCause::PeerDead) {
                    self.cp.unknown_spi(now, u.src);
                }
            }
            Event::IcmpError { tunnel, kind } => {
                let name = self.tunnel_name(tunnel);
                let Some(rt) = self.runtime.get_mut(tunnel as usize) else {
                    return;
                };
                rt.icmp_errors += 1;
                let (mtu, v6) = match kind {
                    IcmpErrorKind::FragmentationNeeded { mtu } if mtu > 0 => {
                        (Some(u32::from(mtu)), false)
                    }
                    IcmpErrorKind::PacketTooBig { mtu } => (Some(mtu), true),
                    _ => (None, false),
                };
                let Some(mtu) = mtu else {
                    debug!(tunnel = %name, ?kind, "ICMP error about an ESP packet we sent");
                    return;
                };
                let mut dp = self.cp.dataplane_mut();
                let link = dp.lc.tables().port(PortRole::Outside).mtu;
                match rt.pmtu.report(mtu, v6, link, now) {
                    Report::Lowered { from, to } => {
                        dp.lc.set_path_mtu(tunnel, to);
                        info!(tunnel = %name, from, to, reported = mtu, "path MTU towards the peer lowered by an ICMP error; inner packets too big for it are refused with ICMP (for 10 minutes unless confirmed)");
                    }
                    Report::Confirmed => {}
                    Report::Ignored => {
                        debug!(tunnel = %name, reported = mtu, "ICMP error reports a path MTU above the current one (it only ages up) or below the protocol minimum: ignored");
                    }
                }
            }
            Event::Acquire { tunnel } => self.cp.acquire(now, tunnel),
            Event::NeighborMiss { port, dst } => {
                let hop = self.cp.dataplane().lc.next_hop(port, dst);
                if let Some(ip) = hop {
                    self.host.resolve(port, ip, now, &mut self.out);
                }
            }
        }
    }

    /// Path MTU estimates that aged out go back to the link MTU (RFC 1191 §6.3).
    fn age_path_mtus(&mut self, now: Instant) {
        if self
            .last_pmtu_age
            .is_some_and(|t| now.duration_since(t) < PMTU_AGE_EVERY)
        {
            return;
        }
        self.last_pmtu_age = Some(now);
        for id in 0..self.runtime.len() {
            if !self.runtime[id].pmtu.expire(now) {
                continue;
            }
            let name = self.tunnel_name(id as u32);
            let mut dp = self.cp.dataplane_mut();
            let link = dp.lc.tables().port(PortRole::Outside).mtu;
            dp.lc.set_path_mtu(id as u32, link);
            info!(tunnel = %name, mtu = link, "path MTU estimate aged out: back to the link MTU");
        }
    }

    fn tunnel_name(&self, id: u32) -> String {
        self.cp
            .dataplane()
            .lc
            .tunnel(id)
            .map(|t| t.spec.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    /// Frames and sends the control plane's IKE datagrams on the outside port; one whose next
    /// hop is not resolved yet waits (resolution started) up to [`IKE_HOLD`].
    fn send_ike(&mut self, now: Instant) -> bool {
        while let Some(t) = self.cp.poll_transmit() {
            if self.ike_waiting.len() < IKE_WAITING_MAX {
                self.ike_waiting.push_back((now, t));
            } else {
                self.ike_unresolved.0 += 1;
            }
        }
        if self.ike_waiting.is_empty() {
            self.report_unresolved(now);
            return false;
        }
        let mut burst: Burst = Burst::new();
        let mut keep = VecDeque::new();
        let (src, lc_macs): (MacAddr, Vec<Option<MacAddr>>) = {
            let dp = self.cp.dataplane();
            let src = dp.lc.tables().port(PortRole::Outside).mac;
            let macs = self
                .ike_waiting
                .iter()
                .map(|(_, t)| dp.lc.mac_towards(PortRole::Outside, t.remote.ip()))
                .collect();
            (src, macs)
        };
        for ((since, t), mac) in std::mem::take(&mut self.ike_waiting)
            .into_iter()
            .zip(lc_macs)
        {
            let Some(mac) = mac else {
                if now.duration_since(since) < IKE_HOLD {
                    let hop = self
                        .cp
                        .dataplane()
                        .lc
                        .next_hop(PortRole::Outside, t.remote.ip());
                    if let Some(ip) = hop {
                        self.host.resolve(PortRole::Outside, ip, now, &mut self.out);
                    }
                    keep.push_back((since, t));
                } else {
                    self.ike_unresolved.0 += 1;
                }
                continue;
            };
            let Some(frame) = ike_io::frame(src, mac, t.local, t.remote, &t.payload) else {
                warn!(peer = %t.remote, "IKE datagram not framed (address families differ)");
                continue;
            };
            let Some(mut m) = self.pool.alloc() else {
                warn!("mbuf pool empty: IKE datagram not sent");
                continue;
            };
            if !m.set_data(&frame) {
                warn!(
                    len = frame.len(),
                    "IKE datagram larger than an mbuf: not sent"
                );
                continue;
            }
            if let Err(m) = burst.push(m) {
                self.tx[PortRole::Outside as usize].tx_or_drop(&mut burst);
                let _ = burst.push(m);
            }
        }
        let (_, lost) = self.tx[PortRole::Outside as usize].tx_or_drop(&mut burst);
        if lost > 0 {
            warn!(lost, "control TX queue full: IKE datagrams dropped");
        }
        self.ike_waiting = keep;
        self.report_unresolved(now);
        self.flush_host_output();
        true
    }

    /// One line for IKE datagrams dropped unresolved, at most every [`UNRESOLVED_LOG_EVERY`]
    /// (answers to a spoofed flood would otherwise log one line each).
    fn report_unresolved(&mut self, now: Instant) {
        let (dropped, logged, at) = self.ike_unresolved;
        if dropped == logged || at.is_some_and(|t| now.duration_since(t) < UNRESOLVED_LOG_EVERY) {
            return;
        }
        warn!(
            dropped = dropped - logged,
            "IKE datagrams dropped: next hop not resolved within {IKE_HOLD:?}, or {IKE_WAITING_MAX} \
             already waiting"
        );
        self.ike_unresolved = (dropped, dropped, Some(now));
    }

    /// Answers one admin request.
    pub fn answer(&mut self, r: Request) -> Result<Response, AdminError> {
        let now = Instant::now();
        let done = |r: Result<(), String>, what: String| {
            r.map(|()| Response::Done { message: what })
                .map_err(AdminError::not_found)
        };
        let stats =
            || -> Vec<&WorkerStats> { self.workers.iter().map(|w| w.stats.as_ref()).collect() };
        match r {
            Request::Ping => Ok(Response::Pong {
                version: env!("CARGO_PKG_VERSION").into(),
            }),
            Request::ShowSa { spi } => {
                let dp = self.cp.dataplane();
                let v = views::sas(&dp.sas, &dp.lc, spi);
                match (spi, v.is_empty()) {
                    (Some(s), true) => {
                        Err(AdminError::not_found(format!("no SA with SPI 0x{s:08x}")))
                    }
                    _ => Ok(Response::Sa(v)),
                }
            }
            Request::ShowTunnels => {
                let status = self.cp.status(now);
                let dp = self.cp.dataplane();
                Ok(Response::Tunnels(views::tunnels(
                    &dp.sas,
                    &dp.folded,
                    &dp.lc,
                    &self.runtime,
                    &status,
                    now,
                )))
            }
            Request::ShowDrops => Ok(Response::Drops(views::drops(
                &stats(),
                self.unknown.recent(),
            ))),
            Request::ShowWorkers => {
                let lcores: Vec<u32> = self.workers.iter().map(|w| w.lcore).collect();
                let rx: Vec<Vec<String>> =
                    self.workers.iter().map(|w| w.rx_queues.clone()).collect();
                let dp = self.cp.dataplane();
                Ok(Response::Workers(views::workers(
                    &stats(),
                    &lcores,
                    &rx,
                    &dp.sas,
                )))
            }
            Request::ShowIke => Ok(Response::Ike(views::ike(
                &self.cp.status(now),
                self.cp.endpoint().stats(),
                &self.cp.stats(),
                now,
            ))),
            Request::Initiate { tunnel } => {
                let r = self.cp.initiate(now, &tunnel);
                done(r, format!("{tunnel}: initiating"))
            }
            Request::Rekey { tunnel, ike } => {
                let r = self.cp.rekey(now, &tunnel, ike);
                let sa = if ike { "IKE SA" } else { "CHILD_SA" };
                done(r, format!("{tunnel}: {sa} rekey started"))
            }
            Request::Clear { tunnel } => {
                let r = self.cp.clear(now, &tunnel);
                done(r, format!("{tunnel}: IKE SA deleted"))
            }
        }
    }
}
