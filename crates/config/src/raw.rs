//! Serde mirror of the YAML file. Every value that gets a semantic check is `Spanned` so that
//! the check can point at it. Addresses and prefixes are kept as strings here and parsed during
//! validation, which gives better messages than serde's. No `flatten`, no untagged or internally
//! tagged enums: serde-saphyr loses locations inside those.

use serde::Deserialize;
use serde_saphyr::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSite {
    pub appliance: RawAppliance,
    pub cores: RawCores,
    pub ports: RawPorts,
    #[serde(default)]
    pub tunnels: Vec<RawTunnel>,
    #[serde(default)]
    pub logging: Option<RawLogging>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub dpdk: Option<RawDpdk>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDpdk {
    #[serde(default)]
    pub args: Option<S<Vec<S<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAppliance {
    pub name: S<String>,
    #[serde(default)]
    pub lab: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCores {
    pub control: S<u32>,
    pub workers: S<Vec<S<u32>>>,
    #[serde(default)]
    pub polling: Option<RawPolling>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawPolling {
    Busy,
    Adaptive,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPorts {
    pub outside: S<RawPort>,
    pub inside: S<RawPort>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPort {
    pub device: S<String>,
    #[serde(default)]
    pub ipv4: Option<S<String>>,
    #[serde(default)]
    pub ipv6: Option<S<String>>,
    #[serde(default)]
    pub gateway4: Option<S<String>>,
    #[serde(default)]
    pub gateway6: Option<S<String>>,
    #[serde(default)]
    pub mtu: Option<S<u32>>,
    #[serde(default)]
    pub rx_queues: Option<S<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    pub name: S<String>,
    pub peer: S<String>,
    #[serde(default)]
    pub encapsulation: Option<RawEncapsulation>,
    pub local_ts: S<Vec<S<String>>>,
    pub remote_ts: S<Vec<S<String>>>,
    #[serde(default)]
    pub replay_window: Option<S<u32>>,
    #[serde(default)]
    pub esn: Option<bool>,
    #[serde(default)]
    pub static_sa: Option<S<RawStaticSa>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawEncapsulation {
    Udp,
    Esp,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStaticSa {
    pub inbound: RawSa,
    pub outbound: RawSa,
    #[serde(default)]
    pub lifetime: Option<RawLifetime>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSa {
    /// u64 so that out-of-range values get our own message.
    pub spi: S<u64>,
    pub algorithm: RawAlgorithm,
    pub key: S<RawKey>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawAlgorithm {
    Aes128gcm16,
    Aes256gcm16,
}

/// Externally tagged: `{ env: NAME }` or `{ file: PATH }`.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawKey {
    Env(String),
    File(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLifetime {
    #[serde(default)]
    pub soft_bytes: Option<S<u64>>,
    #[serde(default)]
    pub hard_bytes: Option<S<u64>>,
    #[serde(default)]
    pub soft_packets: Option<S<u64>>,
    #[serde(default)]
    pub hard_packets: Option<S<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogging {
    #[serde(default)]
    pub unknown_spi_interval_ms: Option<S<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    #[serde(default)]
    pub socket: Option<S<String>>,
}
