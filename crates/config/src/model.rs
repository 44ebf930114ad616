//! The validated site configuration: plain Rust values, no serde, no data-plane types.

use crate::Secret;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// A validated site configuration (the desired state of the appliance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteConfig {
    /// Identity and mode of the box.
    pub appliance: Appliance,
    /// Core assignment.
    pub cores: Cores,
    /// Network ports.
    pub ports: Ports,
    /// Site-to-site tunnels, in file order.
    pub tunnels: Vec<Tunnel>,
    /// Logging settings.
    pub logging: Logging,
    /// Admin API settings.
    pub admin: Admin,
    /// DPDK settings.
    pub dpdk: Dpdk,
}

/// `dpdk:` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dpdk {
    /// Extra EAL arguments (e.g. `--no-huge`, `-m 512`). espada derives the lcore list and the
    /// devices from `cores` and `ports`, so those options are refused here.
    pub args: Vec<String>,
    /// Mbufs in the packet pool (`dpdk.mbufs`); `None`: sized from ports, queues, workers and
    /// rings.
    pub mbufs: Option<u32>,
}

/// `appliance:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appliance {
    /// Name of this box (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Lab mode: allows static (manually keyed) SAs.
    pub lab: bool,
}

/// `cores:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cores {
    /// lcore id of the control thread.
    pub control: u32,
    /// lcore ids of the workers: non-empty, distinct, without the control core.
    pub workers: Vec<u32>,
    /// How idle workers poll.
    pub polling: Polling,
}

/// Worker polling mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polling {
    /// Poll continuously (benchmarks, dedicated cores).
    Busy,
    /// Back off when idle, return to busy polling on traffic (the default).
    Adaptive,
}

/// `ports:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ports {
    /// The port facing the peers.
    pub outside: Port,
    /// The port facing the protected networks.
    pub inside: Port,
}

/// One network port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// The DPDK device.
    pub device: Device,
    /// IPv4 interface address with its prefix length (host bits kept).
    pub ipv4: Option<Prefix>,
    /// IPv6 interface address with its prefix length (host bits kept).
    pub ipv6: Option<Prefix>,
    /// IPv4 default gateway, inside `ipv4`.
    pub gateway4: Option<IpAddr>,
    /// IPv6 default gateway, inside `ipv6`.
    pub gateway6: Option<IpAddr>,
    /// Link MTU (default 1500).
    pub mtu: u32,
    /// RX queues to poll (default: one per worker); fewer queues than workers means the
    /// packets of the other workers' SAs are handed to them over rings.
    pub rx_queues: Option<u16>,
    /// Static neighbours (`neighbors`): next hops whose MAC is configured instead of resolved
    /// with ARP / neighbour discovery (links where nothing answers, such as a benchmark's
    /// `net_null` port, or an operator's static ARP entry).
    pub neighbors: Vec<Neighbor>,
}

/// A static neighbour of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// Its address, on the port's network.
    pub ip: IpAddr,
    /// Its MAC address (unicast).
    pub mac: espada_wire::MacAddr,
}

/// A DPDK device: a PCI address or a virtual device string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// A PCI device, e.g. `0000:03:00.0`.
    Pci {
        /// PCI domain (0 when not written).
        domain: u16,
        /// Bus number.
        bus: u8,
        /// Device number (0..=31).
        device: u8,
        /// Function number (0..=7).
        function: u8,
    },
    /// A virtual device (`--vdev`), e.g. `net_af_packet0,iface=esp-a-out`.
    Vdev {
        /// Driver and instance, e.g. `net_af_packet0`.
        name: String,
        /// `key=value` arguments in order.
        args: Vec<(String, String)>,
    },
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Pci {
                domain,
                bus,
                device,
                function,
            } => write!(f, "{domain:04x}:{bus:02x}:{device:02x}.{function:x}"),
            Device::Vdev { name, args } => {
                f.write_str(name)?;
                for (k, v) in args {
                    write!(f, ",{k}={v}")?;
                }
                Ok(())
            }
        }
    }
}

/// An IP prefix `addr/len`. `addr` keeps its host bits (interface addresses need them);
/// traffic selectors are validated to have none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub len: u8,
}

impl Prefix {
    /// Creates a prefix, or `None` when `len` is too long for the address family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        (len <= max_len(addr)).then_some(Prefix { addr, len })
    }

    /// True when `ip` is in this prefix (false across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }

    /// The same prefix with host bits cleared.
    pub fn network(&self) -> Prefix {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::from(std::net::Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::from(std::net::Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Prefix {
            addr,
            len: self.len,
        }
    }

    /// True for an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// Why a prefix string was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixError {
    /// No `/len` part.
    MissingLength,
    /// The address part is not an IP address.
    BadAddress,
    /// The length is not a number or too long for the family.
    BadLength,
}

impl FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let (addr, len) = s.split_once('/').ok_or(PrefixError::MissingLength)?;
        let addr: IpAddr = addr.parse().map_err(|_| PrefixError::BadAddress)?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PrefixError::BadLength);
        }
        let len: u8 = len.parse().map_err(|_| PrefixError::BadLength)?;
        Prefix::new(addr, len).ok_or(PrefixError::BadLength)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// One site-to-site tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// Unique name.
    pub name: String,
    /// Peer's outer address (same family as an outside-port address).
    pub peer: IpAddr,
    /// How ESP travels.
    pub encapsulation: Encapsulation,
    /// Local traffic selectors (networks, no host bits).
    pub local_ts: Vec<Prefix>,
    /// Remote traffic selectors (networks, no host bits).
    pub remote_ts: Vec<Prefix>,
    /// Anti-replay window in packets: 32..=65536 (default 1024), or 0 for anti-replay off
    /// (labs; warned).
    pub replay_window: u32,
    /// 64-bit extended sequence numbers.
    pub esn: bool,
    /// TCP MSS clamp (`mss_clamp`): SYNs through the tunnel, either way, carry at most this
    /// MSS. `None`: MSS options are left alone.
    pub mss_clamp: Option<u16>,
    /// Where an IPv4 packet without DF that is too big for the tunnel is fragmented
    /// (`fragmentation`; IPv6 and DF packets get an ICMP error instead).
    pub fragmentation: Fragmentation,
    /// The AES-GCM implementation of the tunnel's SAs (`crypto`).
    pub crypto: Crypto,
    /// Manually keyed SAs (lab only).
    pub static_sa: Option<StaticSa>,
    /// IKEv2 negotiation (every tunnel without `static_sa`).
    pub negotiated: Option<Negotiated>,
}

/// Where a packet too big for its tunnel is fragmented when it may be (an IPv4 packet without
/// DF). RFC 4301 §8.2 leaves it to the implementation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fragmentation {
    /// `before-encryption` (the default, as Cisco's `crypto ipsec fragmentation
    /// before-encryption`): the inner packet is fragmented and each fragment encrypted, so the
    /// peer decrypts whole ESP packets and the far host reassembles.
    #[default]
    BeforeEncryption = 0,
    /// `after-encryption`: the whole packet is encrypted and the ESP packet fragmented; the
    /// peer reassembles before decrypting (RFC 4303 §3.4.1).
    AfterEncryption = 1,
}

/// Which AES-GCM implementation a tunnel's SAs use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Crypto {
    /// `auto` (the default): the one measured fastest for this CPU (docs/performance.md).
    #[default]
    Auto,
    /// `ring`.
    Ring,
    /// `rustcrypto` (RustCrypto aes-gcm).
    RustCrypto,
    /// `ipsec-mb` (intel-ipsec-mb).
    IpsecMb,
}

/// ESP encapsulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encapsulation {
    /// UDP 4500 when IKEv2 detects a NAT on either side (RFC 7296 §2.23), raw ESP otherwise;
    /// the default of negotiated tunnels.
    Auto,
    /// ESP in UDP port 4500 (NAT-T, RFC 3948) always; the default of static tunnels.
    Udp,
    /// Raw ESP, IP protocol 50.
    Esp,
}

/// How a tunnel is negotiated with IKEv2 (RFC 7296). Every value has a default; `defaults:`
/// at the top of the file changes them for every tunnel, a tunnel's own keys for itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// IKE proposals in preference order (strongSwan syntax, e.g.
    /// `aes256gcm16-prfsha384-ecp384`).
    pub ike: Vec<espada_ike::proposal::IkeProposal>,
    /// ESP proposals in preference order (a DH group means PFS on rekeys, e.g.
    /// `aes256gcm16-modp2048`).
    pub esp: Vec<espada_ike::proposal::EspProposal>,
    /// Our identity (default: our outside address).
    pub local_id: espada_ike::config::Identity,
    /// The identity the peer must prove (default: its address).
    pub remote_id: espada_ike::config::Identity,
    /// The pre-shared key (RFC 7296 §2.15). Never printed.
    pub psk: Secret,
    /// IKE SA lifetime and rekey timing.
    pub ike_lifetime: RekeyTiming,
    /// CHILD SA lifetime and rekey timing.
    pub child_lifetime: RekeyTiming,
    /// CHILD SA byte limit (hard; the soft limit is derived like the time's).
    pub child_bytes: Option<u64>,
    /// CHILD SA packet limit (hard).
    pub child_packets: Option<u64>,
    /// Dead peer detection.
    pub dpd: Dpd,
    /// What to do at start-up.
    pub start: StartAction,
}

/// A lifetime and when to rekey before it: soft lifetime = `time − margin − random(0..jitter)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyTiming {
    /// Hard lifetime: the SA stops at this age.
    pub time: std::time::Duration,
    /// Rekey this long before `time`.
    pub margin: std::time::Duration,
    /// Up to this much earlier again, at random, so that tunnels do not rekey in step.
    pub jitter: std::time::Duration,
}

/// Dead peer detection (RFC 7296 §2.4 liveness checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dpd {
    /// Check after this long without inbound traffic (0: only on demand).
    pub delay: std::time::Duration,
    /// Declare the peer dead when a check is unanswered this long.
    pub timeout: std::time::Duration,
    /// What then.
    pub action: DpdAction,
}

/// What to do when the peer is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpdAction {
    /// Remove the tunnel's SAs.
    Clear,
    /// Remove them and negotiate again at once.
    Restart,
    /// Remove them and negotiate again on the next packet for the tunnel.
    Trap,
}

/// What a negotiated tunnel does at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAction {
    /// Wait for the peer to initiate.
    None,
    /// Initiate at once.
    Start,
    /// Initiate on the first packet for the tunnel.
    Trap,
}

/// A manually keyed SA pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticSa {
    /// SA for packets from the peer.
    pub inbound: SaKeys,
    /// SA for packets to the peer.
    pub outbound: SaKeys,
    /// Byte and packet limits.
    pub lifetime: Lifetime,
}

/// SPI, transform and key material of one static SA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaKeys {
    /// Security parameter index (≥ 256).
    pub spi: u32,
    /// AEAD transform.
    pub algorithm: Algorithm,
    /// key‖salt, `algorithm.key_material_len()` bytes.
    pub key: Secret,
}

/// ESP AEAD transforms (RFC 4106, 16-byte ICV).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// AES-128-GCM with a 16-byte ICV.
    Aes128Gcm16,
    /// AES-256-GCM with a 16-byte ICV.
    Aes256Gcm16,
}

impl Algorithm {
    /// AES key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Algorithm::Aes128Gcm16 => 16,
            Algorithm::Aes256Gcm16 => 32,
        }
    }

    /// Key plus the 4-byte salt (RFC 4106 §8.1).
    pub fn key_material_len(self) -> usize {
        self.key_len() + 4
    }

    /// Name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Aes128Gcm16 => "aes128gcm16",
            Algorithm::Aes256Gcm16 => "aes256gcm16",
        }
    }
}

/// SA lifetime limits; `None` means no limit of that kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lifetime {
    /// Soft byte limit (event to the control plane).
    pub soft_bytes: Option<u64>,
    /// Hard byte limit (the SA stops).
    pub hard_bytes: Option<u64>,
    /// Soft packet limit.
    pub soft_packets: Option<u64>,
    /// Hard packet limit.
    pub hard_packets: Option<u64>,
}

/// `logging:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logging {
    /// Per-source interval between unknown-SPI log lines (default 10 s).
    pub unknown_spi_interval: Duration,
}

/// `admin:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// Unix socket of the admin API (default `/run/espada/admin.sock`).
    pub socket: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_parse_and_contains() {
        let p: Prefix = "198.51.100.1/24".parse().unwrap();
        assert!(p.contains("198.51.100.254".parse().unwrap()));
        assert!(!p.contains("198.51.101.1".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        assert_eq!(p.network().to_string(), "198.51.100.0/24");
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Prefix = "2001:db8:1::1/64".parse().unwrap();
        assert!(v6.contains("2001:db8:1::fe".parse().unwrap()));
        assert!(!v6.contains("2001:db8:2::fe".parse().unwrap()));
        let host: Prefix = "2001:db8::1/128".parse().unwrap();
        assert!(host.contains("2001:db8::1".parse().unwrap()));
        assert_eq!("1.2.3.4".parse::<Prefix>(), Err(PrefixError::MissingLength));
        assert_eq!("1.2.3.4/33".parse::<Prefix>(), Err(PrefixError::BadLength));
        assert_eq!("1.2.3.4/+3".parse::<Prefix>(), Err(PrefixError::BadLength));
        assert_eq!("1.2.3/8".parse::<Prefix>(), Err(PrefixError::BadAddress));
    }

    #[test]
    fn device_display() {
        let d = Device::Pci {
            domain: 0,
            bus: 3,
            device: 0,
            function: 1,
        };
        assert_eq!(d.to_string(), "0000:03:00.1");
        let v = Device::Vdev {
            name: "net_af_packet0".into(),
            args: vec![("iface".into(), "eth0".into())],
        };
        assert_eq!(v.to_string(), "net_af_packet0,iface=eth0");
    }
}
