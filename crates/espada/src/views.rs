//! `show` views built from live counters, the SA list and the configuration. Runs on the
//! control thread; reads worker counters with relaxed loads (a snapshot may be a few packets
//! old, never torn). Never contains key material.

use std::collections::BTreeMap;

use espada_admin::view::Direction;
use espada_admin::{
    DropsView, IkeReport, IkeView, LifetimeView, SaCountersView, SaView, TunnelSaView, TunnelView,
    UnknownSpiView, WorkerView,
};
use espada_dataplane::drops::Why;
use espada_dataplane::lifecycle::{InState, Lifecycle, OutState};
use espada_dataplane::stats::{Counter, WorkerStats};
use espada_esp::DropReason;

use crate::ike_dp::{Folded, SaBook};

/// Per-tunnel facts the control thread learns from events.
#[derive(Clone, Copy, Debug, Default)]
pub struct TunnelRuntime {
    /// ICMP errors about ESP packets sent on this tunnel.
    pub icmp_errors: u64,
    /// Path MTU learned from "fragmentation needed" / "packet too big" (lowers only, ages out
    /// after 10 minutes).
    pub pmtu: espada_dataplane::pmtu::PathMtu,
}

fn opt(v: u64) -> Option<u64> {
    (v != u64::MAX).then_some(v)
}

/// `show sa` (optionally one SPI).
pub fn sas(sas: &SaBook, lc: &Lifecycle, spi: Option<u32>) -> Vec<SaView> {
    sas.values()
        .filter(|s| spi.is_none_or(|x| x == s.spi))
        .map(|s| {
            let c = s.counters.snapshot();
            let l = &s.config.lifetime;
            let drops: BTreeMap<String, u64> = DropReason::ALL
                .iter()
                .filter(|r| c.drop(**r) > 0)
                .map(|r| (DropReason::TABLE[*r as usize].name.to_string(), c.drop(*r)))
                .collect();
            let hard = c.bytes >= l.hard_bytes || c.packets >= l.hard_packets;
            let soft = c.soft_expired_events > 0;
            SaView {
                tunnel: lc
                    .tunnel(s.tunnel)
                    .map(|x| x.spec.name.clone())
                    .unwrap_or_default(),
                direction: if s.inbound {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                spi: s.spi,
                owner_worker: u32::from(s.owner),
                algorithm: s.algorithm.to_string(),
                crypto: s.backend.name().to_string(),
                encapsulation: if s.config.natt.is_some() {
                    "udp-4500"
                } else {
                    "esp"
                }
                .into(),
                local: s.config.local,
                remote: s.config.remote,
                esn: s.config.esn,
                seq: c.seq,
                replay_window: if s.inbound { s.config.replay_window } else { 0 },
                replay_bitmap: s.inbound.then(|| format!("{:016x}", c.replay_recent)),
                lifetime: LifetimeView {
                    bytes: c.bytes,
                    packets: c.packets,
                    soft_bytes: opt(l.soft_bytes),
                    hard_bytes: opt(l.hard_bytes),
                    soft_packets: opt(l.soft_packets),
                    hard_packets: opt(l.hard_packets),
                },
                counters: SaCountersView {
                    packets: c.packets,
                    bytes: c.bytes,
                    drops,
                },
                state: match (hard, soft) {
                    (true, _) => "hard-expired",
                    (false, true) => "soft-expired",
                    _ => "active",
                }
                .into(),
            }
        })
        .collect()
}

/// `show tunnels`.
pub fn tunnels(
    sas: &SaBook,
    folded: &std::collections::HashMap<u32, Folded>,
    lc: &Lifecycle,
    rt: &[TunnelRuntime],
    status: &[espada_control::TunnelStatus],
    now: std::time::Instant,
) -> Vec<TunnelView> {
    let link_mtu = lc.tables().port(espada_dataplane::PortRole::Outside).mtu;
    lc.tunnels()
        .map(|(id, tun)| {
            let i = id as usize;
            let st = status.iter().find(|s| s.name == tun.spec.name);
            let inbound = tun.inbound.iter().map(|b| TunnelSaView {
                direction: Direction::Inbound,
                spi: b.at.spi,
                state: in_state_name(b.state).into(),
            });
            let outbound = tun.outbound.iter().map(|b| TunnelSaView {
                direction: Direction::Outbound,
                spi: b.spi,
                state: out_state_name(b.state).into(),
            });
            let mine = || {
                sas.range((id, false, 0)..=(id, true, u32::MAX))
                    .map(|(_, s)| s)
            };
            let f = folded.get(&id).copied().unwrap_or_default();
            let (mut pin, mut pout, mut bin, mut bout, mut drops) = (
                f.packets_in,
                f.packets_out,
                f.bytes_in,
                f.bytes_out,
                f.drops,
            );
            for s in mine() {
                let c = s.counters.snapshot();
                drops += c.total_drops();
                if s.inbound {
                    (pin, bin) = (pin + c.packets, bin + c.bytes);
                } else {
                    (pout, bout) = (pout + c.packets, bout + c.bytes);
                }
            }
            let r = rt.get(i).copied().unwrap_or_default();
            let udp = mine().any(|s| s.config.natt.is_some());
            TunnelView {
                name: tun.spec.name.clone(),
                peer: tun.spec.peer,
                local: tun.spec.local,
                encapsulation: if udp { "udp-4500" } else { "esp" }.into(),
                local_ts: tun
                    .policy
                    .local_ts
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                remote_ts: tun
                    .policy
                    .remote_ts
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                inbound_spi: tun
                    .inbound
                    .iter()
                    .rev()
                    .find(|s| s.state == InState::Live)
                    .map(|s| s.at.spi),
                outbound_spi: tun.active_outbound(),
                packets_in: pin,
                packets_out: pout,
                bytes_in: bin,
                bytes_out: bout,
                drops,
                icmp_errors: r.icmp_errors,
                pmtu: r.pmtu.expires().map(|_| r.pmtu.current(link_mtu, now)),
                ike_state: st.map(|s| s.ike_state.clone()),
                next_rekey_s: st.and_then(|s| s.next_child_rekey).map(|d| d.as_secs()),
                last_dpd_s: st
                    .and_then(|s| s.last_dpd)
                    .map(|t| now.saturating_duration_since(t).as_secs()),
                sas: inbound.chain(outbound).collect(),
            }
        })
        .collect()
}

fn in_state_name(s: InState) -> &'static str {
    match s {
        InState::Reserved => "reserved",
        InState::Installing => "installing",
        InState::Live => "live",
        InState::Retiring => "retiring",
        InState::Tombstone => "tombstone",
    }
}

fn out_state_name(s: OutState) -> &'static str {
    match s {
        OutState::Installing => "installing",
        OutState::Standby => "standby",
        OutState::Active => "active",
        OutState::Removing => "removing",
    }
}

/// `show drops`: every reason of both tables, summed over the workers.
pub fn drops(workers: &[&WorkerStats], recent: Vec<UnknownSpiView>) -> DropsView {
    let mut total = BTreeMap::new();
    let mut descriptions = BTreeMap::new();
    for why in Why::all() {
        total.insert(
            why.name().to_string(),
            workers.iter().map(|w| w.drops(why)).sum(),
        );
        descriptions.insert(why.name().to_string(), why.description().to_string());
    }
    let per_worker = workers
        .iter()
        .map(|w| {
            Why::all()
                .filter(|y| w.drops(*y) > 0)
                .map(|y| (y.name().to_string(), w.drops(y)))
                .collect()
        })
        .collect();
    DropsView {
        total,
        descriptions,
        per_worker,
        recent_unknown_spi: recent,
    }
}

/// `show workers`.
pub fn workers(
    stats: &[&WorkerStats],
    lcores: &[u32],
    rx: &[Vec<String>],
    sas: &SaBook,
) -> Vec<WorkerView> {
    stats
        .iter()
        .enumerate()
        .map(|(i, w)| WorkerView {
            id: i as u32,
            lcore: lcores.get(i).copied().unwrap_or_default(),
            rx_queues: rx.get(i).cloned().unwrap_or_default(),
            rx_packets: w.get(Counter::RxOutside) + w.get(Counter::RxInside),
            tx_packets: w.get(Counter::TxOutside) + w.get(Counter::TxInside),
            esp_decap: w.get(Counter::EspDecap),
            esp_encap: w.get(Counter::EspEncap),
            handoff_out: w.get(Counter::HandoffOut),
            handoff_in: w.get(Counter::HandoffIn),
            punted: w.get(Counter::Punted),
            drops: w.total_drops(),
            busy_polls: w.get(Counter::BusyPolls),
            idle_polls: w.get(Counter::IdlePolls),
            table_generation: w.get(Counter::TableGeneration),
            owned_sas: sas.values().filter(|s| usize::from(s.owner) == i).count() as u32,
            key_cache_hits: w.get(Counter::KeyCacheHits),
            key_cache_misses: w.get(Counter::KeyCacheMisses),
            counters: Counter::ALL
                .iter()
                .map(|&c| (c.name().to_string(), w.get(c)))
                .collect(),
        })
        .collect()
}

/// `show ike`: the control plane's view of every negotiated tunnel.
pub fn ike(
    status: &[espada_control::TunnelStatus],
    ike: &espada_ike::exchange::Stats,
    control: &espada_control::ControlStats,
    now: std::time::Instant,
) -> IkeReport {
    let counters = (ike.named().iter().map(|&(k, v)| (format!("ike.{k}"), v)))
        .chain(
            control
                .named()
                .iter()
                .map(|&(k, v)| (format!("control.{k}"), v)),
        )
        .collect();
    let tunnels = status
        .iter()
        .map(|s| IkeView {
            name: s.name.clone(),
            state: s.ike_state.clone(),
            ike_spis: s
                .ike_spis
                .map(|(i, r)| (format!("{i:016x}"), format!("{r:016x}"))),
            child_spis: s.child_spis,
            next_child_rekey_s: s.next_child_rekey.map(|d| d.as_secs()),
            next_ike_rekey_s: s.next_ike_rekey.map(|d| d.as_secs()),
            child_rekeys: s.child_rekeys,
            ike_rekeys: s.ike_rekeys,
            last_dpd_s: s
                .last_dpd
                .map(|t| now.saturating_duration_since(t).as_secs()),
        })
        .collect();
    IkeReport { tunnels, counters }
}

#[cfg(test)]
mod tests {
    use super::*;
    use espada_admin::Response;
    use espada_admin::render::{RenderOptions, render_table_with};
    use espada_dataplane::drops::DpDrop;

    /// The real drop table (every reason of both tables, with its description) as
    /// `espada show drops --all` prints it, two workers with a few drops: a changed reason or
    /// description shows up as a diff of `tests/golden/show_drops_real.txt`
    /// (`ESPADA_BLESS=1` rewrites it).
    #[test]
    fn show_drops_renders_the_real_drop_table() {
        let (a, b) = (WorkerStats::default(), WorkerStats::default());
        a.drop_n(Why::Dp(DpDrop::UnknownSpiTombstone), 3);
        b.drop_n(Why::Esp(DropReason::Replayed), 2);
        b.drop_one(Why::Dp(DpDrop::NoOutboundSa));
        let view = drops(&[&a, &b], Vec::new());
        let opts = RenderOptions {
            all_drop_reasons: true,
        };
        let actual = render_table_with(&Response::Drops(view), &opts);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/show_drops_real.txt");
        if std::env::var_os("ESPADA_BLESS").is_some() {
            std::fs::write(&path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        assert_eq!(actual, expected, "{} changed", path.display());
    }
}
