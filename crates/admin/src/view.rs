//! Plain-data views the daemon fills and the CLI renders.
//!
//! Every type here is a snapshot: no references into live tables, no key material. Field names
//! are the JSON names (`snake_case`), so adding a field is backwards compatible for readers that
//! ignore unknown fields, and the CLI's `--json` output is exactly these structs.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Direction of a Security Association.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Decapsulates traffic from the peer.
    Inbound,
    /// Encapsulates traffic towards the peer.
    Outbound,
}

impl Direction {
    /// `"inbound"` or `"outbound"`, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// One ESP Security Association, as `show sa` prints it. Never carries key material.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SaView {
    /// Name of the tunnel (config name) the SA belongs to.
    pub tunnel: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Security Parameter Index.
    pub spi: u32,
    /// Worker that owns the SA's sequence/replay state.
    pub owner_worker: u32,
    /// ESP transform in IKE notation, e.g. `aes128gcm16`.
    pub algorithm: String,
    /// The AES-GCM implementation (`ring`, `rustcrypto`, `ipsec-mb`).
    #[serde(default)]
    pub crypto: String,
    /// `"udp-4500"` (NAT-T) or `"esp"` (IP protocol 50).
    pub encapsulation: String,
    /// Local outer address.
    pub local: IpAddr,
    /// Remote outer address.
    pub remote: IpAddr,
    /// Extended (64-bit) sequence numbers negotiated.
    pub esn: bool,
    /// Outbound: last sequence number sent. Inbound: highest sequence number received.
    pub seq: u64,
    /// Anti-replay window size in packets (inbound; 0 for outbound).
    pub replay_window: u32,
    /// Hex of the most recent 64 bits of the replay bitmap (inbound only).
    pub replay_bitmap: Option<String>,
    /// Lifetime used so far and its limits.
    pub lifetime: LifetimeView,
    /// Traffic and drop counters.
    pub counters: SaCountersView,
    /// `"active"`, `"soft-expired"` or `"hard-expired"`.
    pub state: String,
}

/// SA lifetime: what has been used and the soft/hard limits (`None` = no limit).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct LifetimeView {
    /// Bytes processed so far.
    pub bytes: u64,
    /// Packets processed so far.
    pub packets: u64,
    /// Soft byte limit (rekey starts).
    pub soft_bytes: Option<u64>,
    /// Hard byte limit (SA dies).
    pub hard_bytes: Option<u64>,
    /// Soft packet limit.
    pub soft_packets: Option<u64>,
    /// Hard packet limit.
    pub hard_packets: Option<u64>,
}

impl LifetimeView {
    /// Bytes left before the hard limit, `None` without a hard byte limit.
    pub fn bytes_left(&self) -> Option<u64> {
        self.hard_bytes.map(|h| h.saturating_sub(self.bytes))
    }

    /// Packets left before the hard limit, `None` without a hard packet limit.
    pub fn packets_left(&self) -> Option<u64> {
        self.hard_packets.map(|h| h.saturating_sub(self.packets))
    }
}

/// Per-SA counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct SaCountersView {
    /// Packets processed successfully.
    pub packets: u64,
    /// Bytes processed successfully.
    pub bytes: u64,
    /// Non-zero drop counters by reason name (see `show drops` for descriptions).
    pub drops: BTreeMap<String, u64>,
}

/// One configured tunnel, as `show tunnels` prints it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TunnelView {
    /// Config name of the tunnel.
    pub name: String,
    /// Peer's outer address.
    pub peer: IpAddr,
    /// Our outer address.
    pub local: IpAddr,
    /// `"udp-4500"` or `"esp"`.
    pub encapsulation: String,
    /// Local traffic selectors, e.g. `192.0.2.0/24`.
    pub local_ts: Vec<String>,
    /// Remote traffic selectors.
    pub remote_ts: Vec<String>,
    /// SPI of the current inbound SA, if one is installed.
    pub inbound_spi: Option<u32>,
    /// SPI of the current outbound SA, if one is installed.
    pub outbound_spi: Option<u32>,
    /// Packets decapsulated.
    pub packets_in: u64,
    /// Packets encapsulated.
    pub packets_out: u64,
    /// Bytes decapsulated.
    pub bytes_in: u64,
    /// Bytes encapsulated.
    pub bytes_out: u64,
    /// Packets dropped for any reason.
    pub drops: u64,
    /// ICMP errors generated (e.g. fragmentation needed).
    pub icmp_errors: u64,
    /// Path MTU towards the peer, if learned.
    pub pmtu: Option<u32>,
    /// IKE SA state of a negotiated tunnel (`none`, `connecting`, `established`, …);
    /// `None` for a static one.
    #[serde(default)]
    pub ike_state: Option<String>,
    /// Seconds to the next CHILD_SA rekey.
    #[serde(default)]
    pub next_rekey_s: Option<u64>,
    /// Seconds since the last liveness check (DPD) was sent.
    #[serde(default)]
    pub last_dpd_s: Option<u64>,
    /// Every SA of the tunnel in the data plane, both directions, oldest first: the current
    /// ones and those being installed, rekeyed away or retired.
    #[serde(default)]
    pub sas: Vec<TunnelSaView>,
}

/// One SA of a tunnel and where it is in its lifecycle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TunnelSaView {
    /// Inbound or outbound.
    pub direction: Direction,
    /// SPI.
    pub spi: u32,
    /// Inbound: `reserved`, `installing`, `live`, `retiring` (decrypts through its grace
    /// period), `tombstone`; outbound: `installing`, `standby`, `active`, `removing`.
    pub state: String,
}

/// Drop counters of the whole appliance, as `show drops` prints them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct DropsView {
    /// Every drop reason with its total, zeros included.
    pub total: BTreeMap<String, u64>,
    /// One-line description of each reason.
    pub descriptions: BTreeMap<String, String>,
    /// Per worker (index = worker id): non-zero counters only.
    pub per_worker: Vec<BTreeMap<String, u64>>,
    /// Recent packets with an unknown SPI, newest first.
    pub recent_unknown_spi: Vec<UnknownSpiView>,
}

/// A (rate-limited, aggregated) record of packets that arrived for an unknown SPI.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UnknownSpiView {
    /// When the last packet of this record arrived, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// `"tombstone"` (recently retired SA), `"known-peer"` or `"unknown-source"`; a
    /// tombstone carries the control plane's cause when it knows it, e.g.
    /// `"tombstone (retired by rekey)"`, `"tombstone (peer restarted)"`.
    pub class: String,
    /// Outer source address.
    pub src: IpAddr,
    /// Outer destination address.
    pub dst: IpAddr,
    /// The SPI that matched no SA.
    pub spi: u32,
    /// ESP sequence number of the last packet.
    pub seq: u32,
    /// Length of the last packet in bytes.
    pub len: u32,
    /// Port and queue it arrived on, e.g. `outside/0`.
    pub port: String,
    /// Packets aggregated into this record.
    pub count: u64,
}

/// One data-plane worker, as `show workers` prints it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct WorkerView {
    /// Worker id.
    pub id: u32,
    /// DPDK lcore it runs on.
    pub lcore: u32,
    /// RX queues it polls, e.g. `outside/0`.
    pub rx_queues: Vec<String>,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets transmitted.
    pub tx_packets: u64,
    /// ESP packets decapsulated.
    pub esp_decap: u64,
    /// ESP packets encapsulated.
    pub esp_encap: u64,
    /// Packets handed off to the owning worker.
    pub handoff_out: u64,
    /// Packets received by handoff from other workers.
    pub handoff_in: u64,
    /// Packets punted to the control thread.
    pub punted: u64,
    /// Packets dropped.
    pub drops: u64,
    /// Poll iterations that found work.
    pub busy_polls: u64,
    /// Poll iterations that found nothing.
    pub idle_polls: u64,
    /// Generation of the SA/route table version it last observed.
    pub table_generation: u64,
    /// SAs whose sequence/replay state this worker owns.
    pub owned_sas: u32,
    /// Packets whose SA's key schedule was in the worker's key cache.
    #[serde(default)]
    pub key_cache_hits: u64,
    /// Packets whose SA's key schedule the worker rebuilt from its raw key (many misses: more
    /// busy SAs than the cache has lines).
    #[serde(default)]
    pub key_cache_misses: u64,
    /// Every counter of the worker by name (`reassembled`, `fragmented_before_encryption`,
    /// `mss_clamped`, `icmp_errors_sent`, …), zeros included.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
}

impl WorkerView {
    /// Share of busy polls in percent, `None` before the first poll.
    pub fn busy_percent(&self) -> Option<f64> {
        let total = self.busy_polls.saturating_add(self.idle_polls);
        (total != 0).then(|| self.busy_polls as f64 * 100.0 / total as f64)
    }
}

/// `show ike`: every negotiated tunnel, and the IKE endpoint's and control plane's counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct IkeReport {
    /// One entry per negotiated tunnel, in configuration order.
    pub tunnels: Vec<IkeView>,
    /// Every counter by name (`ike.*`: the endpoint's messages, refusals, cookies,
    /// collisions; `control.*`: rekeys, DPD, recoveries), zeros included.
    pub counters: BTreeMap<String, u64>,
}

/// The IKE side of one negotiated tunnel, as `show ike` prints it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IkeView {
    /// Tunnel name.
    pub name: String,
    /// IKE SA state (`none`, `connecting`, `established`, …).
    pub state: String,
    /// IKE SPIs (initiator, responder), hex.
    pub ike_spis: Option<(String, String)>,
    /// Current CHILD_SA SPIs (inbound, outbound).
    pub child_spis: Option<(u32, u32)>,
    /// Seconds to the next CHILD_SA rekey.
    pub next_child_rekey_s: Option<u64>,
    /// Seconds to the next IKE SA rekey.
    pub next_ike_rekey_s: Option<u64>,
    /// CHILD_SA rekeys completed.
    pub child_rekeys: u64,
    /// IKE SA rekeys completed.
    pub ike_rekeys: u64,
    /// Seconds since the last liveness check (DPD) was sent.
    pub last_dpd_s: Option<u64>,
}
