//! Bring-up and shutdown on DPDK: EAL, mempool, ports, rings, workers on their lcores, and the
//! control thread on the main lcore. Shutdown (SIGINT/SIGTERM) stops the workers, which drop
//! their queues, then stops the ports and frees the pool; EAL is cleaned up last.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use dpdk::{Eal, MbufRing, Mempool, Port, PortConfig};
use espada_admin::AdminServer;
use espada_config::SiteConfig;
use espada_dataplane::PortRole;
use espada_dataplane::events::{EVENT_RING, SampleBudget};
use espada_dataplane::lifecycle::{Lifecycle, Sizes};
use espada_dataplane::stats::WorkerStats;
use espada_dataplane::worker::{HandoffPair, TxPath, Worker, WorkerInputs, WorkerOutputs};
use espada_hostpath::host::{Ipv4Cidr, Ipv6Cidr};
use espada_hostpath::{HostConfig, HostStack, NeighborConfig};
use espada_wire::MacAddr;
use tracing::{info, warn};

use crate::control::{Control, WorkerLink};
use crate::ike_dp::LifecycleDp;
use crate::plan::{NegotiatedTunnel, Plan, PlannedTunnel, TxSlot, plan};
use crate::unknown_spi::UnknownSpiLog;
use espada_control::ControlPlane;
use espada_ike::config::EndpointConfig;
use espada_ike::rng::SystemRandom;
use std::collections::HashMap;

/// Per-lcore mempool cache.
const POOL_CACHE: u32 = 256;
/// Capacity of each handoff and punt ring.
const RING_MBUFS: u32 = 1024;
/// Tunnels the data plane is sized for beyond the configured ones (room for later additions).
const MIN_TUNNELS: u32 = 4096;
/// Bytes of each mbuf's data room, DPDK's 128-byte headroom included.
const MBUF_DATA_ROOM: u16 = 2176;
/// The largest port MTU one mbuf holds: data room − headroom − Ethernet header (14) − VLAN (4).
const MAX_MTU: u32 = MBUF_DATA_ROOM as u32 - 128 - 18;

/// Mbufs the data plane can hold at once: every RX and TX descriptor of both ports, every
/// handoff, TX relay and punt ring full, every lcore's mempool cache (up to 1.5 × its size), and a burst
/// in flight per worker and port; rounded up to 2^k − 1 (DPDK's best pool size).
fn mbufs_needed(queues: &[crate::plan::QueuePlan], workers: u32) -> u32 {
    let desc = PortConfig::default();
    let ports: u32 = queues
        .iter()
        .map(|q| {
            u32::from(q.rx_queues) * u32::from(desc.rx_desc)
                + u32::from(q.tx_queues) * u32::from(desc.tx_desc)
        })
        .sum();
    let handoff = 2 * workers * workers.saturating_sub(1) * RING_MBUFS;
    let relays: u32 = queues
        .iter()
        .map(|q| {
            q.tx_by_sender
                .iter()
                .filter(|t| matches!(t, TxSlot::Relay(_)))
                .count() as u32
        })
        .sum::<u32>()
        * RING_MBUFS;
    let punt = 2 * workers * RING_MBUFS;
    let caches = (workers + 1) * POOL_CACHE * 3 / 2;
    let bursts = (workers + 1) * 4 * 32;
    let n = ports + handoff + relays + punt + caches + bursts;
    (n + 1).next_power_of_two() - 1
}

/// The configuration of the port of `role`.
fn cfg_port(cfg: &espada_config::SiteConfig, role: PortRole) -> &espada_config::Port {
    match role {
        PortRole::Outside => &cfg.ports.outside,
        PortRole::Inside => &cfg.ports.inside,
    }
}

/// Adds every planned tunnel and installs its static SAs, make-before-break: inbound and
/// outbound into the slabs, then the outbound switched on; all before the workers start.
fn install_tunnels(
    lc: &mut Lifecycle,
    parts: &mut [espada_dataplane::lifecycle::WorkerParts],
    tunnels: Vec<PlannedTunnel>,
) -> Result<Vec<NegotiatedTunnel>> {
    let now = Instant::now();
    let mut outbound = Vec::new();
    let mut negotiated = Vec::new();
    for (i, t) in tunnels.into_iter().enumerate() {
        let name = t.spec.name.clone();
        let id = lc
            .add_tunnel(t.spec)
            .with_context(|| format!("tunnel {name}"))?;
        anyhow::ensure!(
            id as usize == i,
            "tunnel {name}: id {id} is not its index {i}"
        );
        lc.set_mss_clamp(id, t.mss_clamp);
        lc.set_fragmentation(id, t.fragmentation);
        negotiated.extend(t.negotiated);
        let Some((inb, outb)) = t.static_sas else {
            continue;
        };
        lc.allocate_static_spi(id, inb.spi())
            .with_context(|| format!("tunnel {name}: inbound SPI {:08x}", inb.spi()))?;
        lc.install_inbound(id, inb)
            .with_context(|| format!("tunnel {name}: inbound SA"))?;
        outbound.push((id, outb.spi(), name.clone()));
        lc.install_outbound(id, outb)
            .with_context(|| format!("tunnel {name}: outbound SA"))?;
    }
    lc.apply_directly(parts, now);
    for (id, spi, name) in outbound {
        lc.switch_outbound(id, spi)
            .with_context(|| format!("tunnel {name}: outbound SA"))?;
    }
    lc.apply_directly(parts, now);
    while let Some(a) = lc.poll_ack() {
        a.result
            .map_err(|e| anyhow::anyhow!("tunnel #{}: SA {:08x}: {e}", a.tunnel, a.spi))?;
    }
    Ok(negotiated)
}

/// The control plane over the data plane's lifecycle, with the negotiated tunnels.
fn control_plane(
    lc: Lifecycle,
    negotiated: Vec<NegotiatedTunnel>,
    sas: Vec<crate::plan::SaInfo>,
) -> ControlPlane<LifecycleDp> {
    let mut peers = Vec::new();
    let mut settings = Vec::new();
    let mut dp = HashMap::new();
    for n in negotiated {
        dp.insert(n.settings.tunnel, n.dp);
        peers.push(n.peer);
        settings.push(n.settings);
    }
    ControlPlane::new(
        EndpointConfig::default(),
        peers,
        settings,
        LifecycleDp::new(lc, dp, sas),
        Box::new(SystemRandom::new()),
        Box::new(SystemRandom::new()),
    )
}

fn host_port(p: &espada_config::Port, mac: MacAddr) -> espada_hostpath::PortConfig {
    let v4 = p.ipv4.and_then(|x| match x.addr {
        std::net::IpAddr::V4(a) => Some(Ipv4Cidr {
            addr: a,
            prefix_len: x.len,
        }),
        std::net::IpAddr::V6(_) => None,
    });
    let v6 = p.ipv6.and_then(|x| match x.addr {
        std::net::IpAddr::V6(a) => Some(Ipv6Cidr {
            addr: a,
            prefix_len: x.len,
        }),
        std::net::IpAddr::V4(_) => None,
    });
    espada_hostpath::PortConfig {
        mac,
        ipv4: v4,
        ipv6: v6,
        gateway_v4: p.gateway4.and_then(|g| match g {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        }),
        gateway_v6: p.gateway6.and_then(|g| match g {
            std::net::IpAddr::V6(a) => Some(a),
            std::net::IpAddr::V4(_) => None,
        }),
    }
}

/// Runs the appliance until `stop` is set.
pub fn run(cfg: &SiteConfig, extra_eal: &[String], stop: Arc<AtomicBool>) -> Result<()> {
    let Plan {
        eal_args,
        port_names,
        queues,
        ports: ifaces,
        tunnels,
        sas,
    } = plan(cfg, extra_eal)?;
    info!(args = %eal_args.join(" "), "initialising DPDK EAL");
    let eal = Eal::init(&eal_args).context("DPDK EAL initialisation failed")?;
    let nworkers = cfg.cores.workers.len();
    let mut queues = queues;
    let mut port_ids = [0u16; 2];
    for role in PortRole::ALL {
        let name = &port_names[role as usize];
        let id = eal
            .port_by_name(name)
            .with_context(|| format!("{} port {name}", role.name()))?;
        port_ids[role as usize] = id;
        let (max_rx, max_tx) = Port::max_queues(&eal, id)
            .with_context(|| format!("{} port {name}: device information", role.name()))?;
        let q = &mut queues[role as usize];
        let fitted = q.fit(max_rx, max_tx);
        if fitted != *q {
            let relayed: Vec<String> = fitted
                .tx_by_sender
                .iter()
                .enumerate()
                .filter_map(|(s, t)| match t {
                    TxSlot::Relay(w) if s == nworkers => {
                        Some(format!("control thread via worker {w}"))
                    }
                    TxSlot::Relay(w) => Some(format!("worker {s} via worker {w}")),
                    TxSlot::Queue(_) => None,
                })
                .collect();
            info!(
                port = role.name(),
                device = %name,
                max_rx,
                max_tx,
                rx_queues = fitted.rx_queues,
                tx_queues = fitted.tx_queues,
                relayed = %relayed.join(", "),
                "the port has fewer queues than workers and control thread: RX spreads to the SA owners by handoff, TX relays through the workers that own queues"
            );
            *q = fitted;
        }
    }
    let needed = mbufs_needed(&queues, nworkers as u32);
    let n = cfg.dpdk.mbufs.unwrap_or(needed);
    if n < needed {
        warn!(
            mbufs = n,
            needed,
            "dpdk.mbufs is below what the queues and rings can hold: RX may run dry under load"
        );
    }
    let pool =
        Mempool::new(&eal, "espada_pool", n, POOL_CACHE, MBUF_DATA_ROOM).with_context(|| {
            format!(
                "cannot allocate the mbuf pool: {n} mbufs of {MBUF_DATA_ROOM} bytes ({} MiB){}; \
             give DPDK more memory (`-m` in dpdk.args, or hugepages) or set dpdk.mbufs lower",
                (u64::from(n) * (u64::from(MBUF_DATA_ROOM) + 192)) >> 20,
                if cfg.dpdk.mbufs.is_some() {
                    " (dpdk.mbufs)"
                } else {
                    ", sized from ports, queues, workers and rings"
                },
            )
        })?;
    info!(mbufs = n, needed, "mbuf pool");

    let ntunnels = u32::try_from(tunnels.len()).context("too many tunnels")?;
    let sizes = Sizes::for_tunnels(nworkers as u16, ntunnels.max(MIN_TUNNELS));
    let (mut lc, mut parts) =
        Lifecycle::new(sizes, ifaces).map_err(|e| anyhow::anyhow!("data plane tables: {e}"))?;
    let mut ports: Vec<Port> = Vec::new();
    for role in PortRole::ALL {
        let name = &port_names[role as usize];
        let id = port_ids[role as usize];
        let q = &queues[role as usize];
        let pc = PortConfig {
            rx_queues: q.rx_queues,
            tx_queues: q.tx_queues,
            ..Default::default()
        };
        let port = Port::configure(&eal, id, &pc, &pool)
            .with_context(|| format!("configuring {} port {name}", role.name()))?;
        let want = cfg_port(cfg, role).mtu;
        if want > MAX_MTU {
            anyhow::bail!(
                "ports.{}.mtu {want}: frames above {MAX_MTU} bytes of IP do not fit one mbuf \
                 ({MBUF_DATA_ROOM} bytes, scatter is not configured)",
                role.name()
            );
        }
        let mtu = match port.set_mtu(want as u16) {
            Ok(()) => want,
            Err(e) => {
                let have = port.mtu().map_or(1500, u32::from);
                warn!(port = role.name(), device = %name, "MTU {want} not applied ({e}); the port keeps {have}");
                have
            }
        };
        lc.set_port_mtu(role, mtu);
        port.start()
            .with_context(|| format!("starting {} port {name}", role.name()))?;
        lc.set_port_mac(role, port.mac());
        for n in &cfg_port(cfg, role).neighbors {
            lc.neighbour_learned(role, n.ip, n.mac);
            info!(port = role.name(), ip = %n.ip, mac = %n.mac, "static neighbour");
        }
        info!(port = role.name(), device = %name, driver = %port.driver_name(), mac = %port.mac(), rx_queues = q.rx_queues, tx_queues = q.tx_queues, rss = port.rss(), mtu, "port up");
        ports.push(port);
    }

    // Handoff rings: one pair (inbound, outbound) for every ordered pair of workers.
    let mut handoff_tx: Vec<Vec<Option<HandoffPair<dpdk::RingProducer>>>> = (0..nworkers)
        .map(|_| (0..nworkers).map(|_| None).collect())
        .collect();
    let mut handoff_rx: Vec<Vec<HandoffPair<dpdk::RingConsumer>>> =
        (0..nworkers).map(|_| Vec::new()).collect();
    for (from, row) in handoff_tx.iter_mut().enumerate() {
        for to in (0..nworkers).filter(|&t| t != from) {
            let (pi, ci) = MbufRing::pair(&eal, &format!("hi{from}_{to}"), RING_MBUFS)?;
            let (po, co) = MbufRing::pair(&eal, &format!("ho{from}_{to}"), RING_MBUFS)?;
            row[to] = Some(HandoffPair {
                inbound: pi,
                outbound: po,
            });
            handoff_rx[to].push(HandoffPair {
                inbound: ci,
                outbound: co,
            });
        }
    }

    // TX relays: a ring from every sender without a TX queue of a port to the worker that
    // sends for it. `tx_paths[role][sender]`, `relay_rx[worker]`.
    let mut relay_rx: Vec<Vec<(PortRole, dpdk::RingConsumer)>> =
        (0..nworkers).map(|_| Vec::new()).collect();
    let mut tx_paths: [Vec<Option<TxPath>>; 2] = [Vec::new(), Vec::new()];
    for role in PortRole::ALL {
        for (sender, slot) in queues[role as usize].tx_by_sender.iter().enumerate() {
            let path = match *slot {
                TxSlot::Queue(q) => TxPath::Queue(ports[role as usize].tx_queue(q)?),
                TxSlot::Relay(w) => {
                    let (p, c) =
                        MbufRing::pair(&eal, &format!("tr{}_{sender}", role as usize), RING_MBUFS)?;
                    relay_rx[usize::from(w)].push((role, c));
                    TxPath::Relay(p)
                }
            };
            tx_paths[role as usize].push(Some(path));
        }
    }
    let mut tx_path = |role: PortRole, sender: usize| {
        tx_paths[role as usize][sender]
            .take()
            .context("every sender has one TX path per port")
    };

    let negotiated = install_tunnels(&mut lc, &mut parts, tunnels)?;
    let (mut links, mut workers) = (Vec::new(), Vec::new());
    let worker_stop = Arc::new(AtomicBool::new(false));
    for (w, ((mut tx_row, relay), (rx_row, p))) in handoff_tx
        .into_iter()
        .zip(relay_rx)
        .zip(handoff_rx.into_iter().zip(parts))
        .enumerate()
    {
        let mut rx = Vec::new();
        let mut rx_names = Vec::new();
        for role in PortRole::ALL {
            for &q in &queues[role as usize].rx_by_worker[w] {
                rx.push((role, ports[role as usize].rx_queue(q)?));
                rx_names.push(format!("{}/{q}", role.name()));
            }
        }
        let (po, co) = MbufRing::pair(&eal, &format!("po{w}"), RING_MBUFS)?;
        let (pi, ci) = MbufRing::pair(&eal, &format!("pi{w}"), RING_MBUFS)?;
        let (ev_tx, ev_rx) = rtrb::RingBuffer::new(EVENT_RING);
        let stats = Arc::new(WorkerStats::default());
        let q = w as u16;
        workers.push(Worker {
            id: q,
            inputs: WorkerInputs {
                rx,
                relay,
                handoff: rx_row,
                commands: p.commands,
            },
            outputs: WorkerOutputs {
                tx: [
                    tx_path(PortRole::Outside, w)?,
                    tx_path(PortRole::Inside, w)?,
                ],
                handoff: std::mem::take(&mut tx_row),
                punt: [po, pi],
                replies: p.replies,
            },
            events: ev_tx,
            notices: p.notices,
            samples: SampleBudget::new(dpdk::tsc_hz(), SampleBudget::RATE, SampleBudget::BURST),
            slab: p.slab,
            reasm: espada_dataplane::reasm::Reassembly::for_clock(dpdk::tsc_hz()),
            tables: p.tables,
            stats: stats.clone(),
            stop: worker_stop.clone(),
            adaptive: cfg.cores.polling == espada_config::Polling::Adaptive,
            lookahead: espada_dataplane::depth::Lookahead::Auto,
        });
        links.push(WorkerLink {
            stats,
            lcore: cfg.cores.workers[w],
            rx_queues: rx_names,
            events: ev_rx,
            punts: [co, ci],
        });
    }

    let host = HostStack::new(HostConfig {
        outside: host_port(&cfg.ports.outside, lc.tables().ports[0].mac),
        inside: host_port(&cfg.ports.inside, lc.tables().ports[1].mac),
        neighbor: NeighborConfig::default(),
        router: true,
    })
    .map_err(|e| anyhow::anyhow!("host stack: {e}"))?;
    let admin = match AdminServer::bind(&cfg.admin.socket) {
        Ok(a) => Some(a),
        Err(e) => {
            warn!(socket = %cfg.admin.socket.display(), error = %e, "admin socket unavailable: `espada show` will not work");
            None
        }
    };
    let mut cp = control_plane(lc, negotiated, sas);
    cp.start(Instant::now());
    let mut control = Control::new(
        cp,
        links,
        [
            tx_path(PortRole::Outside, nworkers)?,
            tx_path(PortRole::Inside, nworkers)?,
        ],
        pool.clone(),
        host,
        UnknownSpiLog::new(cfg.logging.unknown_spi_interval),
        admin,
    );

    let mut running = Vec::new();
    for (w, worker) in workers.into_iter().enumerate() {
        let lcore = cfg.cores.workers[w];
        running.push(
            eal.launch(lcore, move || worker.run())
                .with_context(|| format!("launching worker {w} on lcore {lcore}"))?,
        );
        info!(worker = w, lcore, "worker started");
    }
    control.prime(Instant::now());
    info!(
        tunnels = cfg.tunnels.len(),
        workers = nworkers,
        "espada running"
    );
    control.run(&stop);

    info!("stopping: workers first, then ports");
    worker_stop.store(true, Ordering::Relaxed);
    for h in running {
        h.join();
    }
    drop(control);
    for p in &ports {
        if let Err(e) = p.stop() {
            warn!(port = p.id(), error = %e, "port stop failed");
        }
    }
    drop(ports);
    let in_use = pool.in_use();
    drop(pool);
    info!(mbufs_in_use = in_use, "stopped");
    drop(eal);
    Ok(())
}
