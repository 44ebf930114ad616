//! The control thread: everything that is not per-packet work.
//!
//! Each turn of its loop it
//! 1. takes punted frames from every worker and gives them to the host stack (ARP, IPv6
//!    neighbour discovery, ICMP echo to the box), sending the answers on its own TX queue of
//!    each port; IKE frames are dropped with a debug log line (the IKEv2 issue handles them; the
//!    workers' `punted` counter counts them);
//! 2. drains every worker's events: unknown-SPI samples go to the rate-limited log, ICMP errors
//!    are accounted to their tunnel (path MTU), neighbour misses start ARP/ND resolution;
//! 3. polls the data plane's lifecycle (`espada_dataplane::lifecycle`): lifetime notices (soft
//!    expiry: rekey due; hard expiry), worker replies (removed SAs are freed here), deadlines,
//!    table publication and QSBR reclamation;
//! 4. answers the admin socket.
//!
//! It never blocks a worker: all exchanges are SPSC rings, and the only waiting it does is a
//! short sleep when a turn found nothing to do.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dpdk::{Burst, Mempool, RingConsumer, TxQueue};
use espada_admin::{AdminError, AdminServer, Request, Response};
use espada_buf::PacketBuf;
use espada_dataplane::PortRole;
use espada_dataplane::events::{Event, NoticeKind};
use espada_dataplane::lifecycle::Lifecycle;
use espada_dataplane::stats::WorkerStats;
use espada_esp::icmp::IcmpErrorKind;
use espada_hostpath::{HostEvent, HostOutput, HostStack, MacAddr};
use tracing::{debug, info, warn};

use crate::plan::SaInfo;
use crate::unknown_spi::UnknownSpiLog;
use crate::views::{self, TunnelRuntime};

/// How often the host stack's timers (ARP/ND retries, expiry) run.
const HOST_POLL_EVERY: Duration = Duration::from_millis(100);
/// Sleep of an idle control turn.
const IDLE_SLEEP: Duration = Duration::from_micros(500);

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
    /// The data plane's SAs, tunnels and tables.
    pub lc: Lifecycle,
    /// Worker links.
    pub workers: Vec<WorkerLink>,
    /// The control TX queue of each port.
    pub tx: [TxQueue; 2],
    /// Pool for frames the control thread builds.
    pub pool: Mempool,
    /// The host stack (ARP, ND, ICMP echo).
    pub host: HostStack,
    /// Every SA, for `show sa`.
    pub sas: Vec<SaInfo>,
    /// Per-tunnel facts learned from events.
    pub runtime: Vec<TunnelRuntime>,
    /// Rate-limited unknown-SPI log.
    pub unknown: UnknownSpiLog,
    /// The admin socket.
    pub admin: Option<AdminServer>,
    out: HostOutput,
    last_host_poll: Option<Instant>,
}

/// True for an IPv4/IPv6 UDP frame to port 500 or 4500 (IKE, RFC 7296 §2; RFC 3948 §2.2).
fn is_ike(frame: &[u8]) -> bool {
    let udp = match frame.get(12..14) {
        Some([0x08, 0x00]) if frame.get(23) == Some(&17) => {
            14 + usize::from(frame.get(14).map_or(5, |b| b & 0x0f)) * 4
        }
        Some([0x86, 0xdd]) if frame.get(20) == Some(&17) => 54,
        _ => return false,
    };
    matches!(
        frame.get(udp + 2..udp + 4),
        Some([0x01, 0xf4] | [0x11, 0x94])
    )
}

impl Control {
    /// A control thread over its parts.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        lc: Lifecycle,
        workers: Vec<WorkerLink>,
        tx: [TxQueue; 2],
        pool: Mempool,
        host: HostStack,
        sas: Vec<SaInfo>,
        unknown: UnknownSpiLog,
        admin: Option<AdminServer>,
    ) -> Control {
        let runtime = vec![TunnelRuntime::default(); lc.sizes().tunnels as usize];
        Control {
            lc,
            workers,
            tx,
            pool,
            host,
            sas,
            runtime,
            unknown,
            admin,
            out: HostOutput::default(),
            last_host_poll: None,
        }
    }

    /// Starts resolving every next hop the data plane will need (tunnel peers, gateways) and
    /// announces the box's addresses.
    pub fn prime(&mut self, now: Instant) {
        let mut hops: Vec<(PortRole, IpAddr)> = Vec::new();
        for (_, t) in self.lc.tunnels() {
            if let Some(h) = self.lc.next_hop(PortRole::Outside, t.spec.peer) {
                hops.push((PortRole::Outside, h));
            }
        }
        for r in PortRole::ALL {
            let p = self.lc.tables().port(r);
            hops.extend(p.gateway4.iter().chain(p.gateway6.iter()).map(|g| (r, *g)));
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
        let before = self.lc.stats();
        self.lc.poll(now);
        work |= self.lc.stats() != before;
        while let Some(n) = self.lc.poll_notice() {
            work = true;
            let name = self.tunnel_name(n.tunnel);
            let spi = format!("0x{:08x}", n.spi);
            match n.kind {
                NoticeKind::Soft => {
                    info!(tunnel = %name, spi, inbound = n.inbound, "SA reached its soft lifetime: rekey due");
                }
                NoticeKind::Hard => {
                    warn!(tunnel = %name, spi, inbound = n.inbound, "SA reached its hard lifetime: it no longer carries traffic");
                }
            }
        }
        while let Some(a) = self.lc.poll_ack() {
            work = true;
            if let Err(e) = a.result {
                warn!(tunnel = %self.tunnel_name(a.tunnel), spi = format!("0x{:08x}", a.spi), op = ?a.op, error = %e, "data-plane change failed");
            }
        }
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
                    if is_ike(m.data()) {
                        debug!(
                            port = role.name(),
                            "IKE frame received (IKEv2 not implemented yet)"
                        );
                        continue;
                    }
                    self.host.handle_frame(role, m.data(), now, &mut self.out);
                }
            }
        }
        work
    }

    fn flush_host_output(&mut self) {
        for e in self.out.events.drain(..) {
            match e {
                HostEvent::NeighborLearned { port, ip, mac } => {
                    let MacAddr(mac) = mac;
                    if self.lc.neighbour_learned(port, ip, mac) {
                        info!(port = %port, %ip, mac = %MacAddr(mac), "neighbour learned");
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
                if let Some(line) = self.unknown.record(&u, now) {
                    warn!("{line}");
                }
            }
            Event::IcmpError { tunnel, kind } => {
                let name = self.tunnel_name(tunnel);
                let Some(rt) = self.runtime.get_mut(tunnel as usize) else {
                    return;
                };
                rt.icmp_errors += 1;
                let mtu = match kind {
                    IcmpErrorKind::FragmentationNeeded { mtu } if mtu > 0 => Some(u32::from(mtu)),
                    IcmpErrorKind::PacketTooBig { mtu } => Some(mtu),
                    _ => None,
                };
                if let Some(mtu) = mtu {
                    if rt.pmtu != Some(mtu) {
                        info!(tunnel = %name, mtu, "path MTU towards the peer lowered by an ICMP error");
                    }
                    rt.pmtu = Some(mtu);
                } else {
                    debug!(tunnel = %name, ?kind, "ICMP error about an ESP packet we sent");
                }
            }
            Event::NeighborMiss { port, dst } => {
                if let Some(ip) = self.lc.next_hop(port, dst) {
                    self.host.resolve(port, ip, now, &mut self.out);
                }
            }
        }
    }

    fn tunnel_name(&self, id: u32) -> String {
        self.lc
            .tunnel(id)
            .map(|t| t.spec.name.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    /// Answers one admin request.
    pub fn answer(&self, r: Request) -> Result<Response, AdminError> {
        let stats: Vec<&WorkerStats> = self.workers.iter().map(|w| w.stats.as_ref()).collect();
        match r {
            Request::Ping => Ok(Response::Pong {
                version: env!("CARGO_PKG_VERSION").into(),
            }),
            Request::ShowSa { spi } => {
                let v = views::sas(&self.sas, &self.lc, spi);
                match (spi, v.is_empty()) {
                    (Some(s), true) => {
                        Err(AdminError::not_found(format!("no SA with SPI 0x{s:08x}")))
                    }
                    _ => Ok(Response::Sa(v)),
                }
            }
            Request::ShowTunnels => Ok(Response::Tunnels(views::tunnels(
                &self.sas,
                &self.lc,
                &self.runtime,
            ))),
            Request::ShowDrops => Ok(Response::Drops(views::drops(&stats, self.unknown.recent()))),
            Request::ShowWorkers => {
                let lcores: Vec<u32> = self.workers.iter().map(|w| w.lcore).collect();
                let rx: Vec<Vec<String>> =
                    self.workers.iter().map(|w| w.rx_queues.clone()).collect();
                Ok(Response::Workers(views::workers(
                    &stats, &lcores, &rx, &self.sas,
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_ike;

    #[test]
    fn ike_frames_are_recognised_on_both_ports_and_families() {
        let mut v4 = vec![0u8; 14 + 20 + 8 + 4];
        v4[12..14].copy_from_slice(&[0x08, 0x00]);
        v4[14] = 0x45;
        v4[23] = 17;
        v4[36..38].copy_from_slice(&500u16.to_be_bytes());
        assert!(is_ike(&v4));
        v4[36..38].copy_from_slice(&4500u16.to_be_bytes());
        assert!(is_ike(&v4));
        v4[36..38].copy_from_slice(&53u16.to_be_bytes());
        assert!(!is_ike(&v4));
        let mut v6 = vec![0u8; 14 + 40 + 8];
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        v6[20] = 17;
        v6[56..58].copy_from_slice(&500u16.to_be_bytes());
        assert!(is_ike(&v6));
        assert!(!is_ike(&v6[..50]));
    }
}
