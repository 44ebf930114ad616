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
    #[serde(default)]
    pub defaults: Option<RawNegotiation>,
}

/// IKEv2 settings of a tunnel, or their defaults (top-level `defaults:`). The same keys are
/// repeated in [`RawTunnel`] (serde-saphyr keeps no locations through `flatten`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNegotiation {
    #[serde(default)]
    pub ike: Option<S<String>>,
    #[serde(default)]
    pub esp: Option<S<String>>,
    #[serde(default)]
    pub local_id: Option<S<String>>,
    #[serde(default)]
    pub remote_id: Option<S<String>>,
    #[serde(default)]
    pub psk: Option<S<RawKey>>,
    #[serde(default)]
    pub ike_lifetime: Option<S<RawRekey>>,
    #[serde(default)]
    pub child_lifetime: Option<S<RawRekey>>,
    #[serde(default)]
    pub dpd: Option<S<RawDpd>>,
    #[serde(default)]
    pub start: Option<S<RawStart>>,
}

/// A lifetime with its rekey margin and jitter (durations as `30s`, `10m`, `4h`, `1d`, `500ms`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRekey {
    #[serde(default)]
    pub time: Option<S<String>>,
    #[serde(default)]
    pub margin: Option<S<String>>,
    #[serde(default)]
    pub jitter: Option<S<String>>,
    #[serde(default)]
    pub bytes: Option<S<u64>>,
    #[serde(default)]
    pub packets: Option<S<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDpd {
    #[serde(default)]
    pub delay: Option<S<String>>,
    #[serde(default)]
    pub timeout: Option<S<String>>,
    #[serde(default)]
    pub action: Option<S<RawDpdAction>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawDpdAction {
    Clear,
    Restart,
    Trap,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawStart {
    None,
    Start,
    Trap,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDpdk {
    #[serde(default)]
    pub args: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub mbufs: Option<S<u32>>,
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
    #[serde(default)]
    pub neighbors: Option<S<Vec<S<RawNeighbor>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNeighbor {
    pub ip: S<String>,
    pub mac: S<String>,
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
    #[serde(default)]
    pub ike: Option<S<String>>,
    #[serde(default)]
    pub esp: Option<S<String>>,
    #[serde(default)]
    pub local_id: Option<S<String>>,
    #[serde(default)]
    pub remote_id: Option<S<String>>,
    #[serde(default)]
    pub psk: Option<S<RawKey>>,
    #[serde(default)]
    pub ike_lifetime: Option<S<RawRekey>>,
    #[serde(default)]
    pub child_lifetime: Option<S<RawRekey>>,
    #[serde(default)]
    pub dpd: Option<S<RawDpd>>,
    #[serde(default)]
    pub start: Option<S<RawStart>>,
    #[serde(default)]
    pub allow_overlap: Option<bool>,
    #[serde(default)]
    pub mss_clamp: Option<S<u32>>,
    #[serde(default)]
    pub fragmentation: Option<RawFragmentation>,
    #[serde(default)]
    pub crypto: Option<RawCrypto>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawCrypto {
    Auto,
    Ring,
    Rustcrypto,
    IpsecMb,
}

impl RawTunnel {
    /// The tunnel's IKEv2 keys, borrowed as one [`RawNegotiation`]-shaped view.
    pub fn negotiation(&self) -> NegotiationRef<'_> {
        NegotiationRef {
            ike: self.ike.as_ref(),
            esp: self.esp.as_ref(),
            local_id: self.local_id.as_ref(),
            remote_id: self.remote_id.as_ref(),
            psk: self.psk.as_ref(),
            ike_lifetime: self.ike_lifetime.as_ref(),
            child_lifetime: self.child_lifetime.as_ref(),
            dpd: self.dpd.as_ref(),
            start: self.start.as_ref(),
        }
    }

    /// True when any IKEv2 key is set on the tunnel itself.
    pub fn has_negotiation_keys(&self) -> bool {
        let n = self.negotiation();
        n.ike.is_some()
            || n.esp.is_some()
            || n.local_id.is_some()
            || n.remote_id.is_some()
            || n.psk.is_some()
            || n.ike_lifetime.is_some()
            || n.child_lifetime.is_some()
            || n.dpd.is_some()
            || n.start.is_some()
    }
}

impl RawNegotiation {
    /// Borrowed view.
    pub fn as_ref(&self) -> NegotiationRef<'_> {
        NegotiationRef {
            ike: self.ike.as_ref(),
            esp: self.esp.as_ref(),
            local_id: self.local_id.as_ref(),
            remote_id: self.remote_id.as_ref(),
            psk: self.psk.as_ref(),
            ike_lifetime: self.ike_lifetime.as_ref(),
            child_lifetime: self.child_lifetime.as_ref(),
            dpd: self.dpd.as_ref(),
            start: self.start.as_ref(),
        }
    }
}

/// The IKEv2 keys of a tunnel or of `defaults:`, borrowed.
#[derive(Clone, Copy, Default)]
pub(crate) struct NegotiationRef<'a> {
    pub ike: Option<&'a S<String>>,
    pub esp: Option<&'a S<String>>,
    pub local_id: Option<&'a S<String>>,
    pub remote_id: Option<&'a S<String>>,
    pub psk: Option<&'a S<RawKey>>,
    pub ike_lifetime: Option<&'a S<RawRekey>>,
    pub child_lifetime: Option<&'a S<RawRekey>>,
    pub dpd: Option<&'a S<RawDpd>>,
    pub start: Option<&'a S<RawStart>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawFragmentation {
    BeforeEncryption,
    AfterEncryption,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawEncapsulation {
    Auto,
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
