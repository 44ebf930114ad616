//! From a site configuration to what the data plane needs: EAL arguments, the RX/TX queue
//! layout, the port addresses, and the tunnels with their static SAs (installed through
//! `espada_dataplane::lifecycle` at start-up). No DPDK here.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use espada_config::{Device, Encapsulation, Fragmentation, SiteConfig};
use espada_dataplane::lifecycle::TunnelSpec;
use espada_dataplane::slab::Policy;
use espada_dataplane::tables::Iface;
use espada_dataplane::{PortRole, owner_of_spi};
use espada_esp::sa::NattPorts;
use espada_esp::{Backend, Direction, InboundSa, LifetimeLimits, OutboundSa, SaConfig, SaCounters};
use espada_wire::MacAddr;

/// What `show sa` needs to know about an installed SA (no key material).
#[derive(Clone, Debug)]
pub struct SaInfo {
    /// Tunnel index.
    pub tunnel: u32,
    /// Inbound (else outbound).
    pub inbound: bool,
    /// SPI.
    pub spi: u32,
    /// Owner worker.
    pub owner: u16,
    /// Transform name.
    pub algorithm: &'static str,
    /// The AES-GCM implementation.
    pub backend: Backend,
    /// The SA's configuration (addresses, ESN, window, lifetimes).
    pub config: SaConfig,
    /// The SA's live counters (written by the owner).
    pub counters: Arc<SaCounters>,
}

/// A negotiated tunnel: its IKE peer, the control plane's settings, the data plane's part.
pub struct NegotiatedTunnel {
    /// The IKE side.
    pub peer: espada_ike::config::PeerConfig,
    /// Rekey, DPD and start settings.
    pub settings: espada_control::TunnelSettings,
    /// Replay window and byte/packet limits of its SAs.
    pub dp: crate::ike_dp::DpTunnel,
}

/// A tunnel and, in the lab, its static SAs.
pub struct PlannedTunnel {
    /// What the data plane needs to know.
    pub spec: TunnelSpec,
    /// Static SAs (inbound, outbound), installed at start-up.
    pub static_sas: Option<(InboundSa, OutboundSa)>,
    /// IKEv2, when the tunnel has no static SAs.
    pub negotiated: Option<NegotiatedTunnel>,
    /// TCP MSS clamp.
    pub mss_clamp: Option<u16>,
    /// Where packets too big for the tunnel are fragmented.
    pub fragmentation: Fragmentation,
}

fn ike_ts(p: &espada_config::Prefix) -> espada_ike::msgs::TrafficSelector {
    espada_ike::ts::prefix(p.addr, p.len)
}

/// Byte/packet limits of a negotiated CHILD SA: hard as configured, soft at 90 % of it (the
/// control plane rekeys on the soft notice; time-based rekeys are the control plane's own).
fn child_limits(n: &espada_config::Negotiated) -> LifetimeLimits {
    let soft = |h: Option<u64>| h.map_or(u64::MAX, |h| h - h / 10);
    LifetimeLimits {
        soft_bytes: soft(n.child_bytes),
        hard_bytes: n.child_bytes.unwrap_or(u64::MAX),
        soft_packets: soft(n.child_packets),
        hard_packets: n.child_packets.unwrap_or(u64::MAX),
    }
}

/// The AES-GCM implementation `crypto` names for tunnel `name`; an error when it cannot run
/// here.
fn backend_of(crypto: espada_config::Crypto, name: &str) -> Result<Backend> {
    use espada_config::Crypto;
    let b = match crypto {
        Crypto::Auto => Backend::auto(),
        Crypto::Ring => Backend::Ring,
        Crypto::RustCrypto => Backend::RustCrypto,
        Crypto::IpsecMb => Backend::IpsecMb,
    };
    if !b.available() {
        anyhow::bail!(
            "tunnel {name}: crypto: {} cannot be used: the intel-ipsec-mb library could not be \
             initialised (use `crypto: auto` or `ring`)",
            b.name()
        );
    }
    Ok(b)
}

fn negotiated(
    tun: &espada_config::Tunnel,
    n: &espada_config::Negotiated,
    id: u32,
    local: IpAddr,
    backend: Backend,
) -> NegotiatedTunnel {
    use espada_ike::auth::Authenticator;
    use espada_ike::secret::Secret;
    let peer = espada_ike::config::PeerConfig {
        name: tun.name.clone(),
        local_addr: local,
        remote_addr: Some(tun.peer),
        local_id: n.local_id.clone(),
        remote_id: n.remote_id.clone(),
        auth: Authenticator::Psk(Secret::from_slice(n.psk.expose())),
        ike_proposals: n.ike.clone(),
        esp_proposals: n.esp.clone(),
        local_ts: tun.local_ts.iter().map(ike_ts).collect(),
        remote_ts: tun.remote_ts.iter().map(ike_ts).collect(),
        encapsulation: match tun.encapsulation {
            Encapsulation::Udp => espada_ike::config::Encapsulation::Udp,
            // Raw ESP unless a NAT is detected (IKE decides; RFC 7296 §2.23).
            Encapsulation::Auto | Encapsulation::Esp => espada_ike::config::Encapsulation::Auto,
        },
        fragmentation: true,
    };
    NegotiatedTunnel {
        peer,
        settings: espada_control::TunnelSettings {
            name: tun.name.clone(),
            tunnel: id,
            start: n.start,
            ike_lifetime: n.ike_lifetime,
            child_lifetime: n.child_lifetime,
            dpd: n.dpd,
        },
        dp: crate::ike_dp::DpTunnel {
            replay_window: tun.replay_window,
            limits: child_limits(n),
            backend,
        },
    }
}

/// The queue layout of one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuePlan {
    /// RX queues the port gets.
    pub rx_queues: u16,
    /// TX queues: one per worker plus one for the control thread, unless the port has fewer
    /// ([`QueuePlan::fit`]).
    pub tx_queues: u16,
    /// For each worker, the RX queues it polls.
    pub rx_by_worker: Vec<Vec<u16>>,
    /// For each sender — every worker, then the control thread — where it transmits.
    pub tx_by_sender: Vec<TxSlot>,
}

/// Where one sender transmits on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxSlot {
    /// On its own TX queue.
    Queue(u16),
    /// Through a ring to this worker, which sends on its own queue (the port has fewer TX
    /// queues than senders; DPDK TX queues are not shared between threads).
    Relay(u16),
}

impl QueuePlan {
    /// The plan on a port that supports at most `max_rx` RX and `max_tx` TX queues (net_pcap,
    /// a virtio port with one queue pair, many VFs): RX queues beyond `max_rx` are left out
    /// and the rest spread over as many of the polling workers (the others' packets come by
    /// handoff, as with `rx_queues`); senders beyond `max_tx` relay through worker
    /// `sender % tx_queues`. Unchanged when the port has room.
    pub fn fit(&self, max_rx: u16, max_tx: u16) -> QueuePlan {
        let workers = self.rx_by_worker.len();
        let rx_queues = self.rx_queues.min(max_rx.max(1));
        let polling = self.rx_by_worker.iter().filter(|q| !q.is_empty()).count();
        let pollers = polling.clamp(1, usize::from(rx_queues)) as u16;
        let mut rx_by_worker = vec![Vec::new(); workers];
        for q in 0..rx_queues {
            rx_by_worker[usize::from(q % pollers)].push(q);
        }
        let tx_queues = self.tx_queues.min(max_tx.max(1));
        let tx_by_sender = (0..=workers as u16)
            .map(|s| {
                if s < tx_queues {
                    TxSlot::Queue(s)
                } else {
                    TxSlot::Relay(s % tx_queues)
                }
            })
            .collect();
        QueuePlan {
            rx_queues,
            tx_queues,
            rx_by_worker,
            tx_by_sender,
        }
    }

    /// True when some sender relays through a worker.
    pub fn relays(&self) -> bool {
        self.tx_by_sender
            .iter()
            .any(|t| matches!(t, TxSlot::Relay(_)))
    }
}

/// Everything derived from the configuration.
pub struct Plan {
    /// EAL arguments.
    pub eal_args: Vec<String>,
    /// Device names to look the ports up by, indexed by [`PortRole`].
    pub port_names: [String; 2],
    /// Queue layout per port, indexed by [`PortRole`].
    pub queues: [QueuePlan; 2],
    /// The port addresses (MACs still zero: known once the ports are up).
    pub ports: [Iface; 2],
    /// The tunnels, in configuration order (a tunnel's id is its index).
    pub tunnels: Vec<PlannedTunnel>,
    /// Every SA, for `show sa`.
    pub sas: Vec<SaInfo>,
}

fn is_af_packet(d: &Device) -> bool {
    matches!(d, Device::Vdev { name, .. } if name.starts_with("net_af_packet"))
}

/// The queue pairs of an af_packet device (its `qpairs` argument, else one per worker plus
/// one for the control thread); `None` for other devices.
fn af_packet_qpairs(d: &Device, workers: u16) -> Option<u16> {
    match d {
        Device::Vdev { args, .. } if is_af_packet(d) => Some(
            args.iter()
                .find(|(k, _)| k == "qpairs")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(workers + 1),
        ),
        _ => None,
    }
}

/// The EAL `--vdev` / `-a` argument of a device and the name its port is found by.
fn device_args(d: &Device, workers: u16) -> (Vec<String>, String) {
    match d {
        Device::Pci { .. } => {
            let addr = d.to_string();
            (vec!["-a".into(), addr.clone()], addr)
        }
        Device::Vdev { name, args } => {
            let mut s = d.to_string();
            // af_packet: one socket per queue pair, in a fanout group; every RX queue must be
            // polled. One pair per worker plus one for the control thread's TX queue.
            if is_af_packet(d) && !args.iter().any(|(k, _)| k == "qpairs") {
                s.push_str(&format!(",qpairs={}", workers + 1));
            }
            (vec!["--vdev".into(), s], name.clone())
        }
    }
}

/// The RX/TX queue layout of a port: `polling` workers poll RX (the configured `rx_queues`,
/// default all workers); af_packet has as many RX queues as queue pairs and all are polled.
pub fn queue_plan(device: &Device, rx_queues: Option<u16>, workers: u16) -> QueuePlan {
    let pollers = rx_queues.unwrap_or(workers).clamp(1, workers);
    let tx_queues = workers + 1;
    let rxq = af_packet_qpairs(device, workers).unwrap_or(pollers);
    let mut rx_by_worker = vec![Vec::new(); workers as usize];
    for q in 0..rxq {
        rx_by_worker[(q % pollers) as usize].push(q);
    }
    QueuePlan {
        rx_queues: rxq,
        tx_queues,
        rx_by_worker,
        tx_by_sender: (0..tx_queues).map(TxSlot::Queue).collect(),
    }
}

fn iface(p: &espada_config::Port) -> Iface {
    Iface {
        mac: MacAddr::ZERO,
        ipv4: p.ipv4,
        ipv6: p.ipv6,
        gateway4: p.gateway4,
        gateway6: p.gateway6,
        mtu: 0,
    }
}

fn limits(l: &espada_config::Lifetime) -> LifetimeLimits {
    LifetimeLimits {
        soft_bytes: l.soft_bytes.unwrap_or(u64::MAX),
        hard_bytes: l.hard_bytes.unwrap_or(u64::MAX),
        soft_packets: l.soft_packets.unwrap_or(u64::MAX),
        hard_packets: l.hard_packets.unwrap_or(u64::MAX),
    }
}

/// The EAL `--lcores` map: lcore *n* runs on CPU *n*; on a machine with fewer CPUs than the
/// highest lcore id (labs, CI), lcores beyond the last CPU share CPUs round-robin.
pub fn lcore_map(cfg: &SiteConfig, cpus: usize) -> String {
    std::iter::once(cfg.cores.control)
        .chain(cfg.cores.workers.iter().copied())
        .map(|l| format!("{l}@{}", l as usize % cpus.max(1)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds the plan. `extra_eal` is appended to the configuration's `dpdk.args`.
pub fn plan(cfg: &SiteConfig, extra_eal: &[String]) -> Result<Plan> {
    let workers = u16::try_from(cfg.cores.workers.len()).context("too many workers")?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut eal_args = vec![
        "--lcores".to_string(),
        lcore_map(cfg, cpus),
        "--main-lcore".into(),
        cfg.cores.control.to_string(),
        "--file-prefix".into(),
        format!("espada-{}", cfg.appliance.name),
    ];
    let mut port_names: [String; 2] = Default::default();
    let ports = [&cfg.ports.outside, &cfg.ports.inside];
    for (role, p) in PortRole::ALL.iter().zip(ports) {
        let (args, name) = device_args(&p.device, workers);
        eal_args.extend(args);
        port_names[*role as usize] = name;
    }
    if !ports.iter().any(|p| matches!(p.device, Device::Pci { .. })) {
        eal_args.push("--no-pci".into());
    }
    eal_args.extend(cfg.dpdk.args.iter().cloned());
    eal_args.extend(extra_eal.iter().cloned());
    let queues = [
        queue_plan(
            &cfg.ports.outside.device,
            cfg.ports.outside.rx_queues,
            workers,
        ),
        queue_plan(
            &cfg.ports.inside.device,
            cfg.ports.inside.rx_queues,
            workers,
        ),
    ];

    let ports = [iface(&cfg.ports.outside), iface(&cfg.ports.inside)];
    let mut tunnels = Vec::new();
    let mut sas = Vec::new();
    for (id, tun) in cfg.tunnels.iter().enumerate() {
        let id = id as u32;
        let local: IpAddr = match tun.peer {
            IpAddr::V4(_) => cfg.ports.outside.ipv4.map(|p| p.addr),
            IpAddr::V6(_) => cfg.ports.outside.ipv6.map(|p| p.addr),
        }
        .with_context(|| {
            format!(
                "tunnel {}: no outside address of the peer's family",
                tun.name
            )
        })?;
        let udp = tun.encapsulation == Encapsulation::Udp;
        let mut spec = TunnelSpec {
            name: tun.name.clone(),
            peer: tun.peer,
            local,
            policy: Policy {
                local_ts: tun.local_ts.clone(),
                remote_ts: tun.remote_ts.clone(),
            },
            owner: None,
        };
        let mut static_sas = None;
        if let Some(st) = &tun.static_sa {
            if !cfg.appliance.lab {
                bail!("tunnel {}: static SAs need `appliance.lab: true`", tun.name);
            }
            // A lab tunnel lives on the worker its inbound SPI names (`owner_of_spi`).
            let owner = owner_of_spi(st.inbound.spi, workers);
            spec.owner = Some(owner);
            let sa_cfg = |spi, dir, keys: &espada_config::SaKeys| {
                let mut c = SaConfig::new(spi, dir, local, tun.peer);
                c.natt = udp.then(NattPorts::default);
                c.esn = tun.esn;
                c.replay_window = tun.replay_window;
                c.lifetime = limits(&st.lifetime);
                (c, keys.algorithm.name())
            };
            let (ic, ialg) = sa_cfg(st.inbound.spi, Direction::Inbound, &st.inbound);
            let backend = backend_of(tun.crypto, &tun.name)?;
            let inb = InboundSa::new(ic.clone(), st.inbound.key.expose(), backend)
                .with_context(|| format!("tunnel {}: inbound SA", tun.name))?;
            let (oc, oalg) = sa_cfg(st.outbound.spi, Direction::Outbound, &st.outbound);
            let outb = OutboundSa::new(oc.clone(), st.outbound.key.expose(), backend)
                .with_context(|| format!("tunnel {}: outbound SA", tun.name))?;
            sas.push(SaInfo {
                tunnel: id,
                inbound: true,
                spi: st.inbound.spi,
                owner,
                algorithm: ialg,
                backend,
                config: ic,
                counters: inb.counters().clone(),
            });
            sas.push(SaInfo {
                tunnel: id,
                inbound: false,
                spi: st.outbound.spi,
                owner,
                algorithm: oalg,
                backend,
                config: oc,
                counters: outb.counters().clone(),
            });
            static_sas = Some((inb, outb));
        }
        tunnels.push(PlannedTunnel {
            spec,
            static_sas,
            mss_clamp: tun.mss_clamp,
            fragmentation: tun.fragmentation,
            negotiated: match &tun.negotiated {
                Some(n) => Some(negotiated(
                    tun,
                    n,
                    id,
                    local,
                    backend_of(tun.crypto, &tun.name)?,
                )),
                None => None,
            },
        });
    }
    Ok(Plan {
        eal_args,
        port_names,
        queues,
        ports,
        tunnels,
        sas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> Device {
        let (name, rest) = s.split_once(',').unwrap_or((s, ""));
        let args = rest.split(',').filter(|a| !a.is_empty()).map(|a| {
            let (k, v) = a.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        });
        Device::Vdev {
            name: name.into(),
            args: args.collect(),
        }
    }

    #[test]
    fn queues_are_spread_over_the_polling_workers() {
        let q = queue_plan(&dev("net_ring0"), None, 2);
        assert_eq!(
            q,
            QueuePlan {
                rx_queues: 2,
                tx_queues: 3,
                rx_by_worker: vec![vec![0], vec![1]],
                tx_by_sender: vec![TxSlot::Queue(0), TxSlot::Queue(1), TxSlot::Queue(2)],
            }
        );
        let q = queue_plan(&dev("net_ring0"), Some(1), 2);
        assert_eq!(
            q,
            QueuePlan {
                rx_queues: 1,
                tx_queues: 3,
                rx_by_worker: vec![vec![0], vec![]],
                tx_by_sender: vec![TxSlot::Queue(0), TxSlot::Queue(1), TxSlot::Queue(2)],
            }
        );
        // af_packet: every fanout socket must be polled, one worker polls all with rx_queues 1.
        let q = queue_plan(&dev("net_af_packet0,iface=x"), Some(1), 2);
        assert_eq!(
            q,
            QueuePlan {
                rx_queues: 3,
                tx_queues: 3,
                rx_by_worker: vec![vec![0, 1, 2], vec![]],
                tx_by_sender: vec![TxSlot::Queue(0), TxSlot::Queue(1), TxSlot::Queue(2)],
            }
        );
        let q = queue_plan(&dev("net_af_packet0,iface=x"), None, 2);
        assert_eq!(q.rx_by_worker, vec![vec![0, 2], vec![1]]);
    }

    #[test]
    fn a_port_with_fewer_queues_is_polled_by_fewer_workers_and_relays_tx() {
        let full = queue_plan(&dev("net_pcap0,iface=x"), None, 3);
        assert_eq!(full.fit(16, 16), full, "room: unchanged");
        assert!(!full.relays());
        // One queue pair (net_pcap): worker 0 polls it and sends for everyone.
        let one = full.fit(1, 1);
        assert_eq!(
            (one.rx_queues, one.tx_queues, one.rx_by_worker.clone()),
            (1, 1, vec![vec![0], vec![], vec![]])
        );
        assert_eq!(
            one.tx_by_sender,
            vec![
                TxSlot::Queue(0),
                TxSlot::Relay(0),
                TxSlot::Relay(0),
                TxSlot::Relay(0)
            ]
        );
        assert!(one.relays());
        // Two TX queues for three workers and the control thread.
        let two = full.fit(2, 2);
        assert_eq!(two.rx_by_worker, vec![vec![0], vec![1], vec![]]);
        assert_eq!(
            two.tx_by_sender,
            vec![
                TxSlot::Queue(0),
                TxSlot::Queue(1),
                TxSlot::Relay(0),
                TxSlot::Relay(1)
            ]
        );
        // Only the control thread lacks a queue.
        let ctl = full.fit(3, 3);
        assert_eq!(ctl.tx_by_sender[3], TxSlot::Relay(0));
        assert_eq!(
            ctl.tx_by_sender[..3],
            [TxSlot::Queue(0), TxSlot::Queue(1), TxSlot::Queue(2)]
        );
    }

    #[test]
    fn lcores_map_onto_existing_cpus() {
        let text = "appliance: { name: a }\ncores: { control: 0, workers: [1, 2, 3] }\nports:\n  \
                    outside: { device: net_null0, ipv4: 198.51.100.1/24 }\n  \
                    inside: { device: net_null1, ipv4: 192.0.2.1/24 }\n";
        let cfg = espada_config::parse_str(text, "t.yaml", std::path::Path::new("."))
            .unwrap()
            .config;
        assert_eq!(lcore_map(&cfg, 2), "0@0,1@1,2@0,3@1");
        assert_eq!(lcore_map(&cfg, 8), "0@0,1@1,2@2,3@3");
        let p = plan(&cfg, &["--no-huge".into()]).unwrap();
        assert_eq!(
            &p.eal_args[2..6],
            &["--main-lcore", "0", "--file-prefix", "espada-a"]
        );
        assert!(
            p.eal_args
                .ends_with(&["--no-pci".into(), "--no-huge".into()])
        );
    }

    #[test]
    fn af_packet_gets_a_queue_pair_per_worker_plus_control() {
        let (args, name) = device_args(&dev("net_af_packet0,iface=esp-a"), 2);
        assert_eq!(args, vec!["--vdev", "net_af_packet0,iface=esp-a,qpairs=3"]);
        assert_eq!(name, "net_af_packet0");
        let (args, _) = device_args(&dev("net_af_packet0,iface=esp-a,qpairs=4"), 2);
        assert_eq!(args[1], "net_af_packet0,iface=esp-a,qpairs=4");
    }
}
