//! The daemon's data plane as `espada_control` sees it: the control plane's lifecycle calls
//! become `espada_dataplane::lifecycle` calls, with the ESP SAs built here from what IKE
//! negotiated (RFC 4106 key ‖ salt, ESN, UDP encapsulation ports, the tunnel's replay window
//! and byte/packet limits). Runs on the control thread.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use espada_control::{DataPlane, DpNotice, Expiry, Ticket, TunnelId};
use espada_dataplane::events::NoticeKind;
use espada_dataplane::lifecycle::{self, Lifecycle, Op};
use espada_esp::sa::NattPorts;
use espada_esp::{Backend, Direction, InboundSa, LifetimeLimits, OutboundSa, SaConfig};
use espada_ike::exchange::ChildSaParams;
use espada_ike::proposal::Cipher;

use crate::plan::SaInfo;

/// How long a rekeyed inbound SA keeps decrypting (strongSwan keeps its old one ≈ 5 s).
pub const GRACE: Duration = Duration::from_secs(10);
/// How long a retired SPI is classified as "retired by rekey" afterwards.
pub const LINGER: Duration = Duration::from_secs(120);

/// Every installed SA for `show`, keyed by (tunnel, outbound, SPI): one tunnel's SAs are a
/// contiguous range, inbound before outbound, and finding or removing one is a lookup, not a
/// scan of every SA.
pub type SaBook = BTreeMap<(TunnelId, bool, u32), SaInfo>;

/// The book key of `s`.
pub fn sa_key(s: &SaInfo) -> (TunnelId, bool, u32) {
    (s.tunnel, !s.inbound, s.spi)
}

/// Counters of a tunnel's SAs that left the data plane (retired after their grace period, or
/// removed), so that `show tunnels` keeps counting across rekeys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Packets decapsulated.
    pub packets_in: u64,
    /// Bytes decapsulated.
    pub bytes_in: u64,
    /// Packets encapsulated.
    pub packets_out: u64,
    /// Bytes encapsulated.
    pub bytes_out: u64,
    /// Drops counted on the SAs.
    pub drops: u64,
}

/// What the data plane needs per negotiated tunnel beyond what IKE says.
#[derive(Clone, Copy, Debug)]
pub struct DpTunnel {
    /// Anti-replay window.
    pub replay_window: u32,
    /// Byte and packet limits of its CHILD SAs.
    pub limits: LifetimeLimits,
    /// The AES-GCM implementation of its CHILD SAs.
    pub backend: Backend,
}

/// See the module documentation.
pub struct LifecycleDp {
    /// The lifecycle (also used directly by the control thread for neighbours and views).
    pub lc: Lifecycle,
    tunnels: HashMap<TunnelId, DpTunnel>,
    /// Every installed SA, for `show sa`.
    pub sas: SaBook,
    /// Counters of SAs no longer in `sas`, per tunnel.
    pub folded: HashMap<TunnelId, Folded>,
    acks: VecDeque<(Ticket, Result<(), String>)>,
    notices: VecDeque<DpNotice>,
}

fn algorithm(c: Cipher) -> &'static str {
    match c {
        Cipher::AesGcm16_128 => "aes128gcm16",
        Cipher::AesGcm16_256 => "aes256gcm16",
    }
}

impl LifecycleDp {
    /// Wraps `lc`; `sas` are the static SAs already installed.
    pub fn new(lc: Lifecycle, tunnels: HashMap<TunnelId, DpTunnel>, sas: Vec<SaInfo>) -> Self {
        LifecycleDp {
            lc,
            tunnels,
            sas: sas.into_iter().map(|s| (sa_key(&s), s)).collect(),
            folded: HashMap::new(),
            acks: VecDeque::new(),
            notices: VecDeque::new(),
        }
    }

    /// Takes an SA out of the book, keeping its counters in the tunnel's [`Folded`].
    fn fold_out(&mut self, key: (TunnelId, bool, u32)) {
        let Some(s) = self.sas.remove(&key) else {
            return;
        };
        let c = s.counters.snapshot();
        let f = self.folded.entry(s.tunnel).or_default();
        if s.inbound {
            (f.packets_in, f.bytes_in) = (f.packets_in + c.packets, f.bytes_in + c.bytes);
        } else {
            (f.packets_out, f.bytes_out) = (f.packets_out + c.packets, f.bytes_out + c.bytes);
        }
        f.drops += c.total_drops();
    }

    /// The AES-GCM implementation of `tunnel`'s SAs.
    fn backend(&self, tunnel: TunnelId) -> Backend {
        self.tunnels
            .get(&tunnel)
            .map_or_else(Backend::auto, |t| t.backend)
    }

    fn config(&self, tunnel: TunnelId, dir: Direction, p: &ChildSaParams) -> SaConfig {
        let mut c = SaConfig::new(p.spi, dir, p.local.ip(), p.remote.ip());
        c.esn = p.esn;
        c.natt = p.udp_encap.then_some(NattPorts {
            local: p.local.port(),
            remote: p.remote.port(),
        });
        if let Some(t) = self.tunnels.get(&tunnel) {
            c.replay_window = t.replay_window;
            c.lifetime = t.limits;
        }
        c
    }

    fn info(
        &mut self,
        tunnel: TunnelId,
        inbound: bool,
        p: &ChildSaParams,
        c: SaConfig,
        counters: std::sync::Arc<espada_esp::SaCounters>,
    ) {
        let owner = self.lc.tunnel(tunnel).map_or(0, |b| b.owner);
        let info = SaInfo {
            tunnel,
            inbound,
            spi: p.spi,
            owner,
            algorithm: algorithm(p.cipher),
            backend: self.backend(tunnel),
            config: c,
            counters,
        };
        self.sas.insert(sa_key(&info), info);
    }

    fn ticket(t: lifecycle::Ticket) -> Ticket {
        Ticket(t.0)
    }
}

impl DataPlane for LifecycleDp {
    fn allocate_spi(&mut self, tunnel: TunnelId) -> Option<u32> {
        self.lc.allocate_spi(tunnel).ok()
    }

    fn release_spi(&mut self, tunnel: TunnelId, spi: u32) {
        let _ = self.lc.release_spi(tunnel, spi);
    }

    fn install_inbound(&mut self, tunnel: TunnelId, p: &ChildSaParams) -> Result<Ticket, String> {
        let c = self.config(tunnel, Direction::Inbound, p);
        let sa = InboundSa::new(c.clone(), p.keys.expose(), self.backend(tunnel))
            .map_err(|e| format!("inbound SA {:08x}: {e:?}", p.spi))?;
        let counters = sa.counters().clone();
        let t = self
            .lc
            .install_inbound(tunnel, sa)
            .map_err(|e| e.to_string())?;
        self.info(tunnel, true, p, c, counters);
        Ok(Self::ticket(t))
    }

    fn install_outbound(&mut self, tunnel: TunnelId, p: &ChildSaParams) -> Result<Ticket, String> {
        let c = self.config(tunnel, Direction::Outbound, p);
        let sa = OutboundSa::new(c.clone(), p.keys.expose(), self.backend(tunnel))
            .map_err(|e| format!("outbound SA {:08x}: {e:?}", p.spi))?;
        let counters = sa.counters().clone();
        let t = self
            .lc
            .install_outbound(tunnel, sa)
            .map_err(|e| e.to_string())?;
        self.info(tunnel, false, p, c, counters);
        Ok(Self::ticket(t))
    }

    fn switch_outbound(&mut self, tunnel: TunnelId, spi: u32) -> Result<Ticket, String> {
        self.lc
            .switch_outbound(tunnel, spi)
            .map(Self::ticket)
            .map_err(|e| e.to_string())
    }

    fn retire_inbound(
        &mut self,
        tunnel: TunnelId,
        spi: u32,
        now: Instant,
    ) -> Result<Ticket, String> {
        let t = self
            .lc
            .retire_inbound(tunnel, spi, now, GRACE, LINGER)
            .map_err(|e| e.to_string())?;
        Ok(Self::ticket(t))
    }

    fn remove_outbound(&mut self, tunnel: TunnelId, spi: u32) -> Result<Ticket, String> {
        let t = self
            .lc
            .remove_outbound(tunnel, spi)
            .map_err(|e| e.to_string())?;
        Ok(Self::ticket(t))
    }

    fn retarget_outbound(
        &mut self,
        tunnel: TunnelId,
        spi: u32,
        remote: std::net::SocketAddr,
    ) -> Result<Ticket, String> {
        let t = self
            .lc
            .retarget_outbound(tunnel, spi, remote.ip(), Some(remote.port()))
            .map_err(|e| e.to_string())?;
        if let Some(s) = self.sas.get_mut(&(tunnel, true, spi)) {
            s.config.remote = remote.ip();
            if let Some(p) = s.config.natt.as_mut() {
                p.remote = remote.port();
            }
        }
        Ok(Self::ticket(t))
    }

    fn inbound_packets(&self, tunnel: TunnelId, spi: u32) -> Option<u64> {
        self.sas
            .get(&(tunnel, false, spi))
            .map(|s| s.counters.snapshot().packets)
    }

    fn poll(&mut self, now: Instant) {
        self.lc.poll(now);
        while let Some(a) = self.lc.poll_ack() {
            // A retired SA has left the slab (its grace period is over), a removed one too:
            // its counters are final.
            match (a.op, a.result.is_ok()) {
                (Op::RetireInbound, true) => self.fold_out((a.tunnel, false, a.spi)),
                (Op::RemoveOutbound, true) => self.fold_out((a.tunnel, true, a.spi)),
                _ => {}
            }
            self.acks.push_back((
                Self::ticket(a.ticket),
                a.result.map(drop).map_err(|e| e.to_string()),
            ));
        }
        while let Some(n) = self.lc.poll_notice() {
            self.notices.push_back(DpNotice {
                tunnel: n.tunnel,
                spi: n.spi,
                inbound: n.inbound,
                expiry: match n.kind {
                    NoticeKind::Soft => Expiry::Soft,
                    NoticeKind::Hard => Expiry::Hard,
                },
            });
        }
    }

    fn poll_ack(&mut self) -> Option<(Ticket, Result<(), String>)> {
        self.acks.pop_front()
    }

    fn poll_notice(&mut self) -> Option<DpNotice> {
        self.notices.pop_front()
    }
}
