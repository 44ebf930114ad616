//! Security associations: a cold [`SaConfig`] and hot per-direction runtime objects
//! [`OutboundSa`] and [`InboundSa`] (VPP `ipsec_sa.h`, DPDK `sa.h`).
//!
//! Each runtime SA is owned and written by exactly one worker. Its counters live in an
//! [`Arc<SaCounters>`] so the control plane can read them from another thread.
//! Keys are given as RFC 4106 §8.1 keying material: AES key ‖ 4-byte salt (20 or 36 bytes).
//!
//! The runtime SA keeps only what the per-packet path reads; the [`SaConfig`] it was built
//! from is consumed at install (the control plane keeps its own copy for `show sa`). Sizes are
//! checked at compile time below and measured in `tests/memory_per_sa.rs`
//! (docs/architecture.md, "Memory per SA").

use core::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use zeroize::Zeroize;

use crate::aead::{Backend, SALT_LEN};
use crate::counters::SaCounters;
use crate::keys::SaKey;
use crate::lifetime::{Lifetime, LifetimeLimits};
use crate::replay::{ReplayState, ReplayWindow};
use crate::wire::{self, checksum, proto};

/// Direction of an SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Packets from the peer to us (decapsulation).
    Inbound,
    /// Packets from us to the peer (encapsulation).
    Outbound,
}

/// What to put in the outer IPv4 DF bit (RFC 4301 §8.1, "DF bit bypass/set/clear").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DfPolicy {
    /// Copy DF from an inner IPv4 packet; an inner IPv6 packet (never fragmented on path)
    /// gets DF set.
    Copy,
    /// Always set DF.
    Set,
    /// Always clear DF.
    Clear,
}

/// UDP ports for NAT traversal (RFC 3948 §2.1): our source port and the peer's port (the port
/// the peer, or its NAT, was seen at; 4500 without port translation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NattPorts {
    /// Local UDP port (source of outbound packets).
    pub local: u16,
    /// Remote UDP port (destination of outbound packets).
    pub remote: u16,
}

impl Default for NattPorts {
    fn default() -> Self {
        Self {
            local: crate::natt::NATT_PORT,
            remote: crate::natt::NATT_PORT,
        }
    }
}

/// Cold configuration of one SA (RFC 4301 §4.4.2 SAD entry, the parts the data plane needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaConfig {
    /// SPI (RFC 4303 §2.1); 0–255 are reserved and refused.
    pub spi: u32,
    /// Direction.
    pub direction: Direction,
    /// Our tunnel endpoint address (outer source outbound, outer destination inbound).
    pub local: IpAddr,
    /// The peer's tunnel endpoint address.
    pub remote: IpAddr,
    /// UDP encapsulation (RFC 3948); `None` for plain ESP (IP protocol 50).
    pub natt: Option<NattPorts>,
    /// 64-bit extended sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Anti-replay window in packets (64 ..= 65536), inbound only.
    pub replay_window: u32,
    /// Byte and packet lifetimes.
    pub lifetime: LifetimeLimits,
    /// Outer DF bit policy (IPv4 outer only).
    pub df: DfPolicy,
    /// Outer TTL / hop limit.
    pub ttl: u8,
    /// Outbound: the last sequence number already used; the next packet carries this + 1
    /// (0 for a new SA). Lets a standby jump ahead, and tests start near 2^32.
    pub initial_seq: u64,
    /// Inbound: installed replay state (highest sequence and bitmap); `None` for a new SA.
    pub replay_state: Option<ReplayState>,
}

impl SaConfig {
    /// A configuration with defaults: plain ESP, ESN on, window 1024, no lifetimes, DF copied,
    /// TTL 64, fresh sequence state.
    pub fn new(spi: u32, direction: Direction, local: IpAddr, remote: IpAddr) -> Self {
        Self {
            spi,
            direction,
            local,
            remote,
            natt: None,
            esn: true,
            replay_window: 1024,
            lifetime: LifetimeLimits::UNLIMITED,
            df: DfPolicy::Copy,
            ttl: 64,
            initial_seq: 0,
            replay_state: None,
        }
    }
}

/// Why an SA cannot be installed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaError {
    /// Keying material is not key ‖ salt for AES-128 or AES-256 (RFC 4106 §8.1).
    #[error("keying material must be 20 (AES-128-GCM) or 36 (AES-256-GCM) bytes, got {0}")]
    BadKeyLength(usize),
    /// SPI 0–255 is reserved (RFC 4303 §2.1).
    #[error("SPI {0:#x} is reserved (0-255)")]
    ReservedSpi(u32),
    /// Local and remote addresses are not of the same family.
    #[error("tunnel endpoints {0} and {1} are of different address families")]
    AddressFamilyMismatch(IpAddr, IpAddr),
    /// The configuration is for the other direction.
    #[error("configuration is for the {0:?} direction")]
    WrongDirection(Direction),
    /// Replay window out of range.
    #[error("replay window {0} outside 64..=65536")]
    BadReplayWindow(u32),
    /// Installed sequence state does not fit the sequence number size.
    #[error("installed sequence state {0} does not fit the sequence number size")]
    BadSequenceState(u64),
    /// TTL / hop limit 0.
    #[error("outer TTL must not be 0")]
    ZeroTtl,
}

/// The inner packet family (tunnel mode next header 4 or 41, RFC 4303 §2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InnerProto {
    /// IPv4 inner packet.
    V4,
    /// IPv6 inner packet.
    V6,
}

/// Result of a packet processed successfully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Processed {
    /// The inner packet family.
    pub inner: InnerProto,
    /// The 64-bit sequence number of the packet.
    pub seq: u64,
    /// `true` exactly once per SA: this packet reached the soft lifetime; tell the control
    /// plane to rekey.
    pub soft_expired: bool,
}

fn check_common(cfg: &SaConfig, dir: Direction) -> Result<(), SaError> {
    if cfg.direction != dir {
        return Err(SaError::WrongDirection(cfg.direction));
    }
    if cfg.spi < 256 {
        return Err(SaError::ReservedSpi(cfg.spi));
    }
    if cfg.local.is_ipv4() != cfg.remote.is_ipv4() {
        return Err(SaError::AddressFamilyMismatch(cfg.local, cfg.remote));
    }
    Ok(())
}

/// The last outbound sequence number: RFC 4303 §3.3.3, 64-bit with ESN, else 32-bit.
const fn seq_max(esn: bool) -> u64 {
    if esn { u64::MAX } else { u32::MAX as u64 }
}

fn split_key(key: &[u8], backend: Backend) -> Result<(SaKey, [u8; SALT_LEN]), SaError> {
    let klen = match key.len() {
        20 => 16,
        36 => 32,
        n => return Err(SaError::BadKeyLength(n)),
    };
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(&key[klen..]);
    let k = SaKey::new(&key[..klen], backend).map_err(|_| SaError::BadKeyLength(key.len()))?;
    Ok((k, salt))
}

/// Prebuilt outer headers (IP [+ UDP]) of an outbound SA, with the checksum of the constant
/// IPv4 fields precomputed (DPDK `rte_ipsec_sa.hdr`).
#[derive(Clone, Debug)]
pub(crate) struct OuterTemplate {
    /// Outer IP header then UDP header, per-packet fields zero.
    pub hdr: [u8; 48],
    /// IPv4: checksum sum of the template header. IPv6+UDP: sum of the pseudo-header
    /// addresses and protocol. Folded to 16 bits once here; folding again after the
    /// per-packet words are added gives the same one's-complement sum (RFC 1071 §2).
    pub csum_base: u16,
    /// Outer IP header length (20 or 40).
    pub ip_len: u8,
    /// UDP-encapsulated (RFC 3948).
    pub udp: bool,
    /// Outer IPv6.
    pub v6: bool,
}

impl OuterTemplate {
    fn new(cfg: &SaConfig) -> Result<Self, SaError> {
        let mut hdr = [0u8; 48];
        let udp = cfg.natt.is_some();
        let next = if udp { proto::UDP } else { proto::ESP };
        let (ip_len, v6, csum_base) = match (cfg.local, cfg.remote) {
            (IpAddr::V6(l), IpAddr::V6(r)) => {
                hdr[0] = 0x60;
                hdr[wire::ipv6::NEXT_HEADER] = next;
                hdr[wire::ipv6::HOP_LIMIT] = cfg.ttl;
                hdr[wire::ipv6::SRC].copy_from_slice(&l.octets());
                hdr[wire::ipv6::DST].copy_from_slice(&r.octets());
                let base = checksum::sum(&hdr[8..40]) + u64::from(proto::UDP);
                (40, true, base)
            }
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                hdr[0] = 0x45;
                hdr[wire::ipv4::TTL] = cfg.ttl;
                hdr[wire::ipv4::PROTOCOL] = next;
                hdr[wire::ipv4::SRC].copy_from_slice(&l.octets());
                hdr[wire::ipv4::DST].copy_from_slice(&r.octets());
                (20, false, checksum::sum(&hdr[..20]))
            }
            (l, r) => return Err(SaError::AddressFamilyMismatch(l, r)),
        };
        if let Some(p) = cfg.natt {
            hdr[ip_len..ip_len + 2].copy_from_slice(&p.local.to_be_bytes());
            hdr[ip_len + 2..ip_len + 4].copy_from_slice(&p.remote.to_be_bytes());
        }
        Ok(Self {
            hdr,
            csum_base: checksum::fold(csum_base),
            ip_len: ip_len as u8,
            udp,
            v6,
        })
    }

    /// The same headers towards another peer address (and UDP destination port, when
    /// encapsulated): the peer moved behind its NAT (RFC 7296 §2.23). Same family only.
    fn retarget(&self, remote: IpAddr, port: Option<u16>) -> Result<Self, SaError> {
        let mut hdr = self.hdr;
        let base = match remote {
            IpAddr::V6(r) if self.v6 => {
                hdr[wire::ipv6::DST].copy_from_slice(&r.octets());
                checksum::sum(&hdr[8..40]) + u64::from(proto::UDP)
            }
            IpAddr::V4(r) if !self.v6 => {
                hdr[wire::ipv4::DST].copy_from_slice(&r.octets());
                checksum::sum(&hdr[..20])
            }
            r => return Err(SaError::AddressFamilyMismatch(self.remote().0, r)),
        };
        let ip_len = usize::from(self.ip_len);
        if let (true, Some(p)) = (self.udp, port) {
            hdr[ip_len + 2..ip_len + 4].copy_from_slice(&p.to_be_bytes());
        }
        Ok(Self {
            hdr,
            csum_base: checksum::fold(base),
            ..*self
        })
    }

    /// The destination address, and the UDP destination port when encapsulated.
    fn remote(&self) -> (IpAddr, Option<u16>) {
        let addr = if self.v6 {
            let b: [u8; 16] = self.hdr[wire::ipv6::DST].try_into().unwrap_or([0; 16]);
            IpAddr::from(b)
        } else {
            let b: [u8; 4] = self.hdr[wire::ipv4::DST].try_into().unwrap_or([0; 4]);
            IpAddr::from(b)
        };
        let ip_len = usize::from(self.ip_len);
        let port = self
            .udp
            .then(|| u16::from_be_bytes([self.hdr[ip_len + 2], self.hdr[ip_len + 3]]));
        (addr, port)
    }

    /// Bytes of outer headers before the ESP header.
    #[inline(always)]
    pub fn outer_len(&self) -> usize {
        usize::from(self.ip_len) + if self.udp { wire::UDP_HEADER_LEN } else { 0 }
    }
}

/// The hot state of an outbound SA (RFC 4303 §3.1 processing), owned by one worker.
///
/// `Debug` shows no key material (the salt is part of the key, RFC 4106 §8.1). The raw key
/// ([`SaKey`]) and the salt are wiped when the SA is dropped — on the control thread, which
/// receives removed SAs back; the expanded key schedule is not here but in the owning worker's
/// [`crate::KeyCache`], which wipes its line when the worker lets go of the SA.
///
/// Layout (`repr(C)`): 192 bytes, three cache lines, key included. The data plane's slot that
/// holds it is cache-line aligned (`espada_dataplane::slab::OutboundSlot`).
#[repr(C)]
pub struct OutboundSa {
    pub(crate) seq: u64,
    pub(crate) counters: Arc<SaCounters>,
    pub(crate) lifetime: Lifetime,
    pub(crate) spi: u32,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) tmpl: OuterTemplate,
    pub(crate) esn: bool,
    pub(crate) df: DfPolicy,
    pub(crate) key: SaKey,
}

/// Bytes of an [`OutboundSa`] (3 cache lines): 144 of hot state and the 48-byte [`SaKey`].
pub const OUTBOUND_SA_BYTES: usize = 192;
const _: () = assert!(size_of::<SaKey>() <= 48);
const _: () = assert!(size_of::<OutboundSa>() <= OUTBOUND_SA_BYTES);
const _: () = assert!(size_of::<OuterTemplate>() <= 56);

impl fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("seq", &self.seq)
            .field("esn", &self.esn)
            .field("lifetime", &self.lifetime)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Drop for OutboundSa {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:08x}", self.spi))
            .field("replay", &self.replay)
            .field("lifetime", &self.lifetime)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Drop for InboundSa {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

impl OutboundSa {
    /// Installs an outbound SA. `key` is AES key ‖ salt (20 or 36 bytes, RFC 4106 §8.1); the
    /// key schedule is built with `backend` by the worker's [`crate::KeyCache`].
    pub fn new(config: SaConfig, key: &[u8], backend: Backend) -> Result<Self, SaError> {
        check_common(&config, Direction::Outbound)?;
        if config.ttl == 0 {
            return Err(SaError::ZeroTtl);
        }
        if config.initial_seq > seq_max(config.esn) {
            return Err(SaError::BadSequenceState(config.initial_seq));
        }
        let (key, salt) = split_key(key, backend)?;
        Ok(Self {
            seq: config.initial_seq,
            counters: Arc::new(SaCounters::with_seq(
                Direction::Outbound,
                config.initial_seq,
            )),
            lifetime: Lifetime::new(config.lifetime),
            spi: config.spi,
            salt,
            tmpl: OuterTemplate::new(&config)?,
            esn: config.esn,
            df: config.df,
            key,
        })
    }

    /// The last sequence number this SA may send: 2^64-1 with ESN, else 2^32-1
    /// (RFC 4303 §3.3.3, no cycling).
    #[inline(always)]
    pub(crate) fn seq_max(&self) -> u64 {
        seq_max(self.esn)
    }

    /// The SPI.
    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// The peer's address and, when UDP-encapsulated, port.
    pub fn remote(&self) -> (IpAddr, Option<u16>) {
        self.tmpl.remote()
    }
    /// Sends to `remote` (and UDP `port`) from the next packet on, keeping keys, sequence
    /// numbers and counters: the peer's NAT mapping changed and an authenticated IKE message
    /// said so (RFC 7296 §2.23, RFC 3948). Same address family only.
    pub fn set_remote(&mut self, remote: IpAddr, port: Option<u16>) -> Result<(), SaError> {
        self.tmpl = self.tmpl.retarget(remote, port)?;
        Ok(())
    }
    /// The largest inner packet this SA sends in an outer packet of at most `mtu` bytes: outer
    /// IP [+ UDP] + ESP header (8) + IV (8) + inner + padding to 4 bytes + pad length and next
    /// header (2) + ICV (16) (RFC 4303 §2, RFC 4106 §3, RFC 3948).
    pub fn max_inner(&self, mtu: u32) -> usize {
        let fixed = self.tmpl.outer_len()
            + crate::wire::ESP_HEADER_LEN
            + crate::wire::GCM_IV_LEN
            + crate::wire::ICV_LEN;
        ((mtu as usize).saturating_sub(fixed) & !3).saturating_sub(2)
    }
    /// The last sequence number used (0 before the first packet).
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The counters (clone the `Arc` to read them from the control plane).
    pub fn counters(&self) -> &Arc<SaCounters> {
        &self.counters
    }
    /// Lifetime state.
    pub fn lifetime(&self) -> &Lifetime {
        &self.lifetime
    }
    /// The crypto backend.
    pub fn backend(&self) -> Backend {
        self.key.backend()
    }
    /// The key (to wipe its cached schedule with [`crate::KeyCache::wipe`]).
    pub fn key(&self) -> &SaKey {
        &self.key
    }
}

/// The hot state of an inbound SA (RFC 4303 §3.4 processing), owned by one worker.
///
/// Key hygiene as for [`OutboundSa`]. Layout (`repr(C)`): the hot state, with the replay bitmap
/// inline for windows up to [`crate::replay::INLINE_WINDOW`], then the raw key; the data plane's
/// slot that holds it is cache-line aligned and puts its own fields in the last line.
/// Whether ESN is on is the replay window's (it reconstructs the high bits).
#[repr(C)]
pub struct InboundSa {
    pub(crate) counters: Arc<SaCounters>,
    pub(crate) lifetime: Lifetime,
    pub(crate) spi: u32,
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) replay: ReplayWindow,
    pub(crate) key: SaKey,
}

/// Bytes of an [`InboundSa`]: 224 of hot state, the replay bitmap of windows up to 1024
/// included, and the 48-byte [`SaKey`].
pub const INBOUND_SA_BYTES: usize = 272;
const _: () = assert!(size_of::<InboundSa>() <= INBOUND_SA_BYTES);

impl InboundSa {
    /// Installs an inbound SA. `key` is AES key ‖ salt (20 or 36 bytes, RFC 4106 §8.1).
    pub fn new(config: SaConfig, key: &[u8], backend: Backend) -> Result<Self, SaError> {
        check_common(&config, Direction::Inbound)?;
        let replay = match &config.replay_state {
            None => ReplayWindow::new(config.replay_window, config.esn),
            Some(st) => ReplayWindow::with_state(config.replay_window, config.esn, st),
        }
        .map_err(|_| match &config.replay_state {
            Some(st)
                if config.replay_window == 0
                    || (crate::replay::MIN_WINDOW..=crate::replay::MAX_WINDOW)
                        .contains(&config.replay_window) =>
            {
                SaError::BadSequenceState(st.highest)
            }
            _ => SaError::BadReplayWindow(config.replay_window),
        })?;
        let (key, salt) = split_key(key, backend)?;
        Ok(Self {
            counters: Arc::new(SaCounters::with_seq(Direction::Inbound, replay.highest())),
            lifetime: Lifetime::new(config.lifetime),
            spi: config.spi,
            salt,
            replay,
            key,
        })
    }

    /// The SPI.
    pub fn spi(&self) -> u32 {
        self.spi
    }
    /// The replay window (export its state with [`ReplayWindow::state`]).
    pub fn replay(&self) -> &ReplayWindow {
        &self.replay
    }
    /// The counters (clone the `Arc` to read them from the control plane).
    pub fn counters(&self) -> &Arc<SaCounters> {
        &self.counters
    }
    /// Lifetime state.
    pub fn lifetime(&self) -> &Lifetime {
        &self.lifetime
    }
    /// The crypto backend.
    pub fn backend(&self) -> Backend {
        self.key.backend()
    }
    /// The key (to wipe its cached schedule with [`crate::KeyCache::wipe`]).
    pub fn key(&self) -> &SaKey {
        &self.key
    }
}

#[cfg(test)]
mod key_hygiene_tests {
    use super::*;

    #[test]
    fn debug_of_an_sa_shows_no_salt_or_key() {
        let (a, b) = (
            "192.0.2.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        let mut keymat = [0x11u8; 20];
        keymat[16..].copy_from_slice(&[0xca, 0xfe, 0xba, 0xbe]);
        for backend in Backend::ALL {
            let tx = OutboundSa::new(
                SaConfig::new(0x1234, Direction::Outbound, a, b),
                &keymat,
                backend,
            )
            .unwrap();
            let rx = InboundSa::new(
                SaConfig::new(0x1234, Direction::Inbound, b, a),
                &keymat,
                backend,
            )
            .unwrap();
            for shown in [
                format!("{tx:?}"),
                format!("{rx:?}"),
                format!("{tx:#?}"),
                format!("{rx:#?}"),
            ] {
                let lower = shown.to_lowercase();
                assert!(shown.contains("00001234"), "{shown}");
                for needle in [
                    "cafebabe", "ca, fe", "202, 254", "0x11", "17, 17", "salt", "1111",
                ] {
                    assert!(!lower.contains(needle), "{needle} in {shown}");
                }
            }
        }
    }
}
