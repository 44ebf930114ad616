//! [`ControlPlane`]: the IKE endpoint, one IKE SA and one CHILD_SA per negotiated tunnel, the
//! rekey scheduler, dead peer detection and start actions, and the translation of the
//! endpoint's actions into data-plane lifecycle calls — driven by time, datagrams and admin
//! commands (the quinn-proto shape: `handle_*` in, `poll_*` out).
//!
//! Make-before-break, end to end:
//! - every IKE message the endpoint produces after an `InstallInbound` is **held** until the
//!   data plane acknowledges the install (every worker decrypts the new SPI), so the peer can
//!   never send on an SPI a worker does not know yet;
//! - a switch, retirement or removal of an SA whose install is not acknowledged yet waits for
//!   that acknowledgement, in order;
//! - a CHILD_SA (or IKE SA) whose rekey has not completed when its hard lifetime arrives is
//!   deleted: its outbound SA is removed, so the tunnel drops and counts (`no_outbound_sa`),
//!   never sends in clear, and the event is logged as an error.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use espada_config::{Dpd, DpdAction, RekeyTiming, StartAction};
use espada_ike::config::{EndpointConfig, PeerConfig};
use espada_ike::exchange::{
    Action, ChildId, ChildSaParams, DeleteReason, Endpoint, Event, IkeSaId, Transmit,
};
use espada_ike::rng::Random;

use crate::dataplane::{DataPlane, Expiry, Ticket, TunnelId};
use crate::spis::{DataPlaneSpis, Reserved};

/// How long a tunnel that failed to come up waits before trying again (`start: start`).
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Least time between two recovery attempts caused by ESP on an unknown SPI from one peer.
pub const RECOVERY_EVERY: Duration = Duration::from_secs(5);
/// Least time between two log lines about refused IKE_SA_INIT requests (a flood).
pub const REFUSALS_EVERY: Duration = Duration::from_secs(10);
/// Least time between two negotiations of one trapped tunnel started by traffic.
pub const ACQUIRE_EVERY: Duration = Duration::from_secs(1);
/// NAT-T keepalive interval (RFC 3948 §2.3 suggests 20 s): keeps a NAT's UDP mapping alive.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);

/// Why an inbound SPI left the data plane, as the control plane knows it: what a late
/// packet on its tombstone means (`show drops`, the unknown-SPI log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpiCause {
    /// Replaced by a rekey (or the loser of a rekey collision).
    RetiredByRekey,
    /// The peer started over with INITIAL_CONTACT: it restarted.
    PeerRestarted,
    /// DPD declared the peer dead; ESP on it means the peer is back without knowing.
    PeerDead,
    /// The peer deleted it.
    DeletedByPeer,
    /// Deleted here (operator, hard lifetime, failed exchange).
    Deleted,
}

impl SpiCause {
    /// Words for logs and `show drops`.
    pub fn name(self) -> &'static str {
        match self {
            SpiCause::RetiredByRekey => "retired by rekey",
            SpiCause::PeerRestarted => "peer restarted",
            SpiCause::PeerDead => "peer declared dead",
            SpiCause::DeletedByPeer => "deleted by the peer",
            SpiCause::Deleted => "deleted here",
        }
    }

    fn of(reason: DeleteReason) -> SpiCause {
        match reason {
            DeleteReason::Rekeyed | DeleteReason::Redundant => SpiCause::RetiredByRekey,
            DeleteReason::InitialContact => SpiCause::PeerRestarted,
            DeleteReason::PeerDead => SpiCause::PeerDead,
            DeleteReason::Peer => SpiCause::DeletedByPeer,
            DeleteReason::Local | DeleteReason::HalfOpenTimeout | DeleteReason::Failed => {
                SpiCause::Deleted
            }
        }
    }
}

/// How long the cause of a retired inbound SPI is remembered (beyond the data plane's
/// tombstone linger).
pub const CAUSE_KEPT: Duration = Duration::from_secs(600);

/// The control plane's settings of one negotiated tunnel (the IKE side is its `PeerConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelSettings {
    /// Operator's name.
    pub name: String,
    /// The data plane's tunnel.
    pub tunnel: TunnelId,
    /// What to do at start-up.
    pub start: StartAction,
    /// IKE SA lifetime and rekey timing.
    pub ike_lifetime: RekeyTiming,
    /// CHILD SA lifetime and rekey timing.
    pub child_lifetime: RekeyTiming,
    /// Dead peer detection.
    pub dpd: Dpd,
}

/// Severity of a [`LogLine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// A normal state change.
    Info,
    /// Something failed that the peer or the operator should look at.
    Warn,
    /// Traffic stopped.
    Error,
}

/// One line per state change, for the daemon's log. Never contains key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The tunnel's name (empty for endpoint-wide lines).
    pub tunnel: String,
    /// What happened.
    pub text: String,
}

/// What `show tunnels` / `show ike` print of one negotiated tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelStatus {
    /// Name.
    pub name: String,
    /// IKE SA state (`none`, `connecting`, `established`, …).
    pub ike_state: String,
    /// IKE SPIs (initiator, responder).
    pub ike_spis: Option<(u64, u64)>,
    /// Current CHILD_SA (inbound, outbound) SPIs.
    pub child_spis: Option<(u32, u32)>,
    /// Time to the next CHILD_SA rekey.
    pub next_child_rekey: Option<Duration>,
    /// Time to the next IKE SA rekey.
    pub next_ike_rekey: Option<Duration>,
    /// CHILD_SA rekeys completed.
    pub child_rekeys: u64,
    /// IKE SA rekeys completed.
    pub ike_rekeys: u64,
    /// When the last liveness check was sent.
    pub last_dpd: Option<Instant>,
}

/// State of one negotiated tunnel.
#[derive(Debug)]
struct Run {
    s: TunnelSettings,
    ike: Option<IkeSaId>,
    child: Option<ChildId>,
    spis: Option<(u32, u32)>,
    child_soft: Option<Instant>,
    child_hard: Option<Instant>,
    ike_soft: Option<Instant>,
    ike_hard: Option<Instant>,
    dpd_next: Option<Instant>,
    dpd_packets: u64,
    last_dpd: Option<Instant>,
    /// An unanswered liveness check: (sent at, the peer is dead at).
    dpd_deadline: Option<(Instant, Instant)>,
    restart_at: Option<Instant>,
    /// DPD's `restart`/`trap` action (or unknown-SPI recovery) is bringing the tunnel back:
    /// a failed attempt is retried as with `start: start`, until an IKE SA is up.
    restarting: bool,
    /// Traffic without an SA negotiates the tunnel: `start: trap`, or DPD's `trap` action
    /// after the peer died.
    trap_armed: bool,
    last_acquire: Option<Instant>,
    keepalive_next: Option<Instant>,
    /// The configured peer address (unknown-SPI recovery).
    peer: Option<std::net::IpAddr>,
    last_recovery: Option<Instant>,
    child_rekeys: u64,
    ike_rekeys: u64,
}

impl Run {
    fn new(s: TunnelSettings, peer: Option<std::net::IpAddr>) -> Run {
        Run {
            trap_armed: s.start == StartAction::Trap,
            s,
            ike: None,
            child: None,
            spis: None,
            child_soft: None,
            child_hard: None,
            ike_soft: None,
            ike_hard: None,
            dpd_next: None,
            dpd_packets: 0,
            last_dpd: None,
            dpd_deadline: None,
            restart_at: None,
            restarting: false,
            last_acquire: None,
            keepalive_next: None,
            peer,
            last_recovery: None,
            child_rekeys: 0,
            ike_rekeys: 0,
        }
    }

    fn deadlines(&self) -> impl Iterator<Item = Instant> {
        [
            self.child_soft,
            self.child_hard,
            self.ike_soft,
            self.ike_hard,
            self.dpd_next,
            self.dpd_deadline.map(|(_, t)| t),
            self.restart_at,
            self.keepalive_next,
        ]
        .into_iter()
        .flatten()
    }
}

/// A data-plane call waiting for an SA's install to be acknowledged.
#[derive(Clone, Copy, Debug)]
enum Deferred {
    Switch { tunnel: TunnelId, spi: u32 },
    Retire { tunnel: TunnelId, spi: u32 },
    Remove { tunnel: TunnelId, spi: u32 },
}

/// Counters of the control plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControlStats {
    /// IKE messages held until an inbound install was acknowledged.
    pub held_transmits: u64,
    /// Data-plane calls deferred until an install was acknowledged.
    pub deferred_calls: u64,
    /// Data-plane calls that failed.
    pub dataplane_errors: u64,
    /// Rekeys started by the scheduler or a soft-lifetime notice.
    pub rekeys_started: u64,
    /// SAs deleted because their hard lifetime came before the rekey completed.
    pub hard_expired: u64,
    /// Liveness checks sent (DPD on idle, and unknown-SPI recovery).
    pub dpd_checks: u64,
    /// Peers declared dead because a liveness check went unanswered for the DPD timeout
    /// (before the retransmission schedule would have given up).
    pub dpd_timeouts: u64,
    /// NAT-T keepalives sent (RFC 3948 §2.3).
    pub keepalives: u64,
    /// Recoveries started by ESP on an unknown SPI.
    pub recoveries: u64,
    /// Negotiations started by traffic on a trapped tunnel.
    pub acquires: u64,
    /// Peers that moved behind their NAT (outbound SAs retargeted).
    pub peer_moves: u64,
}

impl ControlStats {
    /// Every counter with its name (the field's), in declaration order.
    pub fn named(&self) -> [(&'static str, u64); 11] {
        [
            ("held_transmits", self.held_transmits),
            ("deferred_calls", self.deferred_calls),
            ("dataplane_errors", self.dataplane_errors),
            ("rekeys_started", self.rekeys_started),
            ("hard_expired", self.hard_expired),
            ("dpd_checks", self.dpd_checks),
            ("dpd_timeouts", self.dpd_timeouts),
            ("keepalives", self.keepalives),
            ("recoveries", self.recoveries),
            ("acquires", self.acquires),
            ("peer_moves", self.peer_moves),
        ]
    }
}

/// See the module documentation.
pub struct ControlPlane<D: DataPlane> {
    ep: Endpoint,
    dp: Rc<RefCell<D>>,
    reserved: Rc<RefCell<Reserved>>,
    runs: Vec<Run>,
    by_name: HashMap<String, usize>,
    ike_peer: HashMap<IkeSaId, usize>,
    child_peer: HashMap<ChildId, usize>,
    /// Refused IKE_SA_INIT counters (no peer config, cookies, half-open limit) at the last
    /// report, and its time.
    refusals: ([u64; 3], Option<Instant>),
    /// Why retired inbound SPIs went, and when.
    causes: HashMap<u32, (SpiCause, Instant)>,
    /// Inbound installs not yet acknowledged: IKE messages wait for them.
    blocking: HashSet<Ticket>,
    /// Installs not yet acknowledged, by ticket: (tunnel, spi, inbound).
    installing: HashMap<Ticket, (TunnelId, u32, bool)>,
    /// The SAs of `installing`, for deferring calls on them.
    installing_sas: HashSet<(TunnelId, u32, bool)>,
    deferred: Vec<((TunnelId, u32, bool), Deferred)>,
    /// Inbound SAs whose first packet the endpoint wants to hear of.
    watch: Vec<(TunnelId, u32)>,
    held: VecDeque<Transmit>,
    out: VecDeque<Transmit>,
    log: VecDeque<LogLine>,
    jitter: Box<dyn Random>,
    stats: ControlStats,
}

impl<D: DataPlane + 'static> ControlPlane<D> {
    /// A control plane for `peers` (the IKE side of each negotiated tunnel) with `settings`
    /// (same order), over data plane `dp`. `rng` feeds the IKE endpoint (nonces, DH, SPIs of
    /// IKE SAs), `jitter` the rekey jitter.
    pub fn new(
        config: EndpointConfig,
        peers: Vec<PeerConfig>,
        settings: Vec<TunnelSettings>,
        dp: D,
        rng: Box<dyn Random>,
        jitter: Box<dyn Random>,
    ) -> ControlPlane<D> {
        let dp = Rc::new(RefCell::new(dp));
        let reserved = Rc::new(RefCell::new(Reserved::default()));
        let tunnels = Rc::new(settings.iter().map(|s| s.tunnel).collect::<Vec<_>>());
        let spis = DataPlaneSpis {
            dp: dp.clone(),
            reserved: reserved.clone(),
            tunnels,
        };
        let by_name = settings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let addrs: Vec<_> = peers.iter().map(|p| p.remote_addr).collect();
        ControlPlane {
            ep: Endpoint::new(config, peers, rng, Box::new(spis)),
            dp,
            reserved,
            runs: settings
                .into_iter()
                .zip(addrs)
                .map(|(s, a)| Run::new(s, a))
                .collect(),
            by_name,
            ike_peer: HashMap::new(),
            child_peer: HashMap::new(),
            refusals: ([0; 3], None),
            causes: HashMap::new(),
            blocking: HashSet::new(),
            installing: HashMap::new(),
            installing_sas: HashSet::new(),
            deferred: Vec::new(),
            watch: Vec::new(),
            held: VecDeque::new(),
            out: VecDeque::new(),
            log: VecDeque::new(),
            jitter,
            stats: ControlStats::default(),
        }
    }

    /// The IKE endpoint (for its statistics and IKE SAs).
    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    /// The data plane.
    pub fn dataplane(&self) -> std::cell::Ref<'_, D> {
        self.dp.borrow()
    }

    /// The data plane, mutably (tests, the daemon's own calls between turns).
    pub fn dataplane_mut(&self) -> std::cell::RefMut<'_, D> {
        self.dp.borrow_mut()
    }

    /// Counters.
    pub fn stats(&self) -> ControlStats {
        self.stats
    }

    /// Initiates every tunnel configured with `start: start`.
    pub fn start(&mut self, now: Instant) {
        for i in 0..self.runs.len() {
            if self.runs[i].s.start == StartAction::Start {
                self.initiate_peer(i, now);
            }
        }
        self.pump(now);
    }

    fn line(&mut self, level: Level, run: Option<usize>, text: String) {
        let tunnel = run
            .and_then(|i| self.runs.get(i))
            .map(|r| r.s.name.clone())
            .unwrap_or_default();
        self.log.push_back(LogLine {
            level,
            tunnel,
            text,
        });
    }

    fn initiate_peer(&mut self, i: usize, now: Instant) {
        self.runs[i].restart_at = None;
        match self.ep.initiate(now, i) {
            Ok(ike) => {
                self.ike_peer.insert(ike, i);
                self.runs[i].ike = Some(ike);
                self.line(Level::Info, Some(i), "initiating".into());
            }
            Err(e) => self.line(Level::Warn, Some(i), format!("cannot initiate: {e}")),
        }
    }

    /// ESP from `peer` on an SPI the data plane does not have (the data plane's known-peer
    /// class): the two ends are out of step, so recover now rather than at the next DPD —
    /// a liveness check on the IKE SA (a peer that lost it stays silent, and DPD's action
    /// follows), or, with no IKE SA (we restarted, the peer did not), a new one. At most
    /// once per [`RECOVERY_EVERY`] per tunnel.
    pub fn unknown_spi(&mut self, now: Instant, peer: std::net::IpAddr) {
        let Some(i) = self.runs.iter().position(|r| r.peer == Some(peer)) else {
            return;
        };
        if self.runs[i]
            .last_recovery
            .is_some_and(|t| now.duration_since(t) < RECOVERY_EVERY)
        {
            return;
        }
        self.runs[i].last_recovery = Some(now);
        self.stats.recoveries += 1;
        let ike = self.runs[i].ike;
        match ike {
            Some(sa) if self.check_liveness(i, sa, now) => {
                self.line(
                    Level::Warn,
                    Some(i),
                    format!("ESP from {peer} on an unknown SPI: liveness check"),
                );
            }
            Some(_) => {}
            None => {
                self.line(
                    Level::Warn,
                    Some(i),
                    format!("ESP from {peer} on an unknown SPI and no IKE SA: initiating"),
                );
                self.runs[i].restarting = true;
                self.initiate_peer(i, now);
            }
        }
        self.pump(now);
    }

    /// The data plane dropped cleartext for `tunnel` because it has no outbound SA (its
    /// acquire, RFC 4301 §5.1): a trapped tunnel without an IKE SA negotiates now. At most
    /// once per [`ACQUIRE_EVERY`] per tunnel; the packets meanwhile are dropped and counted
    /// (`no_outbound_sa`).
    pub fn acquire(&mut self, now: Instant, tunnel: TunnelId) {
        let Some(i) = self.runs.iter().position(|r| r.s.tunnel == tunnel) else {
            return;
        };
        let r = &self.runs[i];
        let idle = r.ike.is_none() && r.restart_at.is_none();
        let recent = r
            .last_acquire
            .is_some_and(|t| now.duration_since(t) < ACQUIRE_EVERY);
        if !r.trap_armed || !idle || recent {
            return;
        }
        self.runs[i].last_acquire = Some(now);
        self.stats.acquires += 1;
        self.line(
            Level::Info,
            Some(i),
            "traffic for the tunnel and no SA: negotiating (trap)".into(),
        );
        self.initiate_peer(i, now);
        self.pump(now);
    }

    /// Why inbound SPI `spi` left the data plane, if it did within [`CAUSE_KEPT`].
    pub fn spi_cause(&self, spi: u32) -> Option<SpiCause> {
        self.causes.get(&spi).map(|&(c, _)| c)
    }

    fn remember_cause(&mut self, spi: u32, cause: SpiCause, now: Instant) {
        if self.causes.len() >= 65_536 {
            self.causes
                .retain(|_, (_, t)| now.duration_since(*t) < CAUSE_KEPT);
        }
        self.causes.entry(spi).or_insert((cause, now));
    }

    /// `espada initiate TUNNEL`.
    pub fn initiate(&mut self, now: Instant, name: &str) -> Result<(), String> {
        let i = self.index(name)?;
        self.initiate_peer(i, now);
        self.pump(now);
        Ok(())
    }

    /// `espada rekey TUNNEL [--ike|--child]`.
    pub fn rekey(&mut self, now: Instant, name: &str, ike: bool) -> Result<(), String> {
        let i = self.index(name)?;
        let r = &self.runs[i];
        let res = match (ike, r.ike, r.child) {
            (true, Some(sa), _) => self.ep.rekey_ike(now, sa).map_err(|e| e.to_string()),
            (false, _, Some(c)) => self.ep.rekey_child(now, c).map_err(|e| e.to_string()),
            _ => Err(format!("tunnel {name} is not established")),
        };
        if res.is_ok() {
            self.stats.rekeys_started += 1;
        }
        self.pump(now);
        res
    }

    /// `espada clear TUNNEL`: deletes its IKE SA (and so its CHILD_SAs).
    pub fn clear(&mut self, now: Instant, name: &str) -> Result<(), String> {
        let i = self.index(name)?;
        let Some(ike) = self.runs[i].ike else {
            return Err(format!("tunnel {name} has no IKE SA"));
        };
        let r = self.ep.delete_ike(now, ike).map_err(|e| e.to_string());
        self.pump(now);
        r
    }

    fn index(&self, name: &str) -> Result<usize, String> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| format!("no negotiated tunnel named {name}"))
    }

    /// An IKE datagram arrived (`bytes` as on the wire: with the non-ESP marker on port 4500).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) {
        let collisions = self.ep.stats().rekey_collisions;
        self.ep.handle_datagram(now, local, remote, bytes);
        self.report_refusals(now);
        if self.ep.stats().rekey_collisions > collisions {
            let i = self.runs.iter().position(|r| r.peer == Some(remote.ip()));
            self.line(
                Level::Info,
                i,
                format!(
                    "rekey collision with {remote}: both ends rekeyed at once; the new SA \
                     with the lowest nonce is deleted, one pair stays (RFC 7296 §2.8.1)"
                ),
            );
        }
        self.pump(now);
    }

    fn refused(&self) -> [u64; 3] {
        let s = self.ep.stats();
        [s.no_peer_config, s.cookies_sent, s.half_open_dropped]
    }

    /// When refusals not reported yet may be reported.
    fn refusals_due(&self) -> Option<Instant> {
        let (seen, at) = self.refusals;
        (self.refused() != seen).then_some(at?.checked_add(REFUSALS_EVERY)?)
    }

    /// IKE_SA_INIT requests refused without state (a flood, or scanners): one line at the
    /// first, then at most one per [`REFUSALS_EVERY`] with what was refused since the last.
    fn report_refusals(&mut self, now: Instant) {
        let seen = self.refused();
        let new: [u64; 3] = std::array::from_fn(|k| seen[k] - self.refusals.0[k]);
        if new.iter().all(|&n| n == 0)
            || self
                .refusals
                .1
                .is_some_and(|t| now.duration_since(t) < REFUSALS_EVERY)
        {
            return;
        }
        self.refusals = (seen, Some(now));
        self.line(
            Level::Warn,
            None,
            format!(
                "IKE_SA_INIT refused: {} from addresses with no configured peer, {} answered \
                 with a cookie (more than the cookie threshold half-open, RFC 7296 §2.6), {} \
                 dropped at the half-open limit",
                new[0], new[1], new[2]
            ),
        );
    }

    /// Time has passed: the endpoint's timers, rekeys, hard lifetimes, DPD, restarts.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ep.poll_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
        }
        for i in 0..self.runs.len() {
            self.timers(i, now);
        }
        self.report_refusals(now);
        self.pump(now);
    }

    /// The earliest time [`ControlPlane::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.runs
            .iter()
            .flat_map(Run::deadlines)
            .chain(self.ep.poll_timeout())
            .chain(self.refusals_due())
            .min()
    }

    /// Acknowledgements and notices from the data plane; releases held IKE messages.
    pub fn poll(&mut self, now: Instant) {
        self.dp.borrow_mut().poll(now);
        loop {
            let ack = self.dp.borrow_mut().poll_ack();
            let Some((t, r)) = ack else { break };
            self.ack(t, r, now);
        }
        loop {
            let n = self.dp.borrow_mut().poll_notice();
            let Some(n) = n else { break };
            let Some(i) = self.runs.iter().position(|r| r.s.tunnel == n.tunnel) else {
                // A static (lab) SA: nothing to rekey, but the operator must know.
                let (level, what) = match n.expiry {
                    Expiry::Soft => (Level::Warn, "soft"),
                    Expiry::Hard => (Level::Error, "hard"),
                };
                self.line(
                    level,
                    None,
                    format!(
                        "static SA 0x{:08x} of tunnel #{} reached its {what} lifetime; static \
                         SAs are not rekeyed",
                        n.spi, n.tunnel
                    ),
                );
                continue;
            };
            match n.expiry {
                Expiry::Soft => {
                    if self.runs[i]
                        .spis
                        .is_some_and(|(a, b)| a == n.spi || b == n.spi)
                        && let Some(c) = self.runs[i].child
                        && self.ep.rekey_child(now, c).is_ok()
                    {
                        self.stats.rekeys_started += 1;
                    }
                }
                Expiry::Hard => self.line(
                    Level::Error,
                    Some(i),
                    format!(
                        "SA 0x{:08x} ({}) reached its hard byte/packet limit before a rekey \
                         replaced it: it carries no more traffic",
                        n.spi,
                        if n.inbound { "inbound" } else { "outbound" }
                    ),
                ),
            }
        }
        if !self.watch.is_empty() {
            self.first_packets(now);
        }
        self.pump(now);
    }

    /// Reports to the endpoint the watched inbound SAs that have decrypted a packet.
    fn first_packets(&mut self, now: Instant) {
        let seen: Vec<(TunnelId, u32)> = {
            let dp = self.dp.borrow();
            self.watch
                .iter()
                .copied()
                .filter(|&(t, spi)| dp.inbound_packets(t, spi).is_some_and(|n| n > 0))
                .collect()
        };
        for (t, spi) in seen {
            self.watch.retain(|&w| w != (t, spi));
            self.ep.inbound_traffic(now, spi);
        }
    }

    /// The next IKE datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next log line.
    pub fn poll_log(&mut self) -> Option<LogLine> {
        self.log.pop_front()
    }

    /// Status of every negotiated tunnel.
    pub fn status(&self, now: Instant) -> Vec<TunnelStatus> {
        self.runs
            .iter()
            .map(|r| {
                let sa = r
                    .ike
                    .and_then(|id| self.ep.ike_sas().find(|s| s.id() == id));
                TunnelStatus {
                    name: r.s.name.clone(),
                    ike_state: sa.map_or("none", |s| s.state_name()).to_string(),
                    ike_spis: sa.map(|s| s.spis()),
                    child_spis: r.spis,
                    next_child_rekey: r.child_soft.map(|t| t.saturating_duration_since(now)),
                    next_ike_rekey: r.ike_soft.map(|t| t.saturating_duration_since(now)),
                    child_rekeys: r.child_rekeys,
                    ike_rekeys: r.ike_rekeys,
                    last_dpd: r.last_dpd,
                }
            })
            .collect()
    }

    /// Drains the endpoint: actions to the data plane, then messages (held while an inbound
    /// install is unacknowledged), then events.
    fn pump(&mut self, now: Instant) {
        while let Some(a) = self.ep.poll_action() {
            self.action(a, now);
        }
        while let Some(t) = self.ep.poll_transmit() {
            if self.blocking.is_empty() && self.held.is_empty() {
                self.out.push_back(t);
            } else {
                self.stats.held_transmits += 1;
                self.held.push_back(t);
            }
        }
        if self.blocking.is_empty() {
            self.out.extend(self.held.drain(..));
        }
        while let Some(e) = self.ep.poll_event() {
            self.event(e, now);
        }
    }

    fn peer_of_ike(&self, ike: IkeSaId) -> Option<usize> {
        self.ike_peer.get(&ike).copied().or_else(|| {
            self.ep
                .ike_sas()
                .find(|s| s.id() == ike)
                .and_then(|s| s.peer_index())
        })
    }

    fn tunnel_of_params(&mut self, p: &ChildSaParams) -> Option<TunnelId> {
        let i = self.peer_of_ike(p.ike)?;
        self.child_peer.insert(p.child, i);
        Some(self.runs[i].s.tunnel)
    }

    fn tunnel_of_child(&self, c: ChildId) -> Option<TunnelId> {
        self.child_peer.get(&c).map(|&i| self.runs[i].s.tunnel)
    }

    fn dp_result(&mut self, r: Result<Ticket, String>, what: &str) -> Option<Ticket> {
        match r {
            Ok(t) => Some(t),
            Err(e) => {
                self.stats.dataplane_errors += 1;
                self.line(
                    Level::Error,
                    None,
                    format!("data plane refused {what}: {e}"),
                );
                None
            }
        }
    }

    fn action(&mut self, a: Action, now: Instant) {
        match a {
            Action::InstallInbound(p) => {
                let Some(tunnel) = self.tunnel_of_params(&p) else {
                    return;
                };
                self.reserved.borrow_mut().by_spi.remove(&p.spi);
                let r = self.dp.borrow_mut().install_inbound(tunnel, &p);
                if let Some(t) = self.dp_result(r, "an inbound SA") {
                    self.blocking.insert(t);
                    self.installing.insert(t, (tunnel, p.spi, true));
                    self.installing_sas.insert((tunnel, p.spi, true));
                    if p.report_first_packet {
                        self.watch.push((tunnel, p.spi));
                    }
                }
            }
            Action::InstallOutbound(p) => {
                let Some(tunnel) = self.tunnel_of_params(&p) else {
                    return;
                };
                let r = self.dp.borrow_mut().install_outbound(tunnel, &p);
                if let Some(t) = self.dp_result(r, "an outbound SA") {
                    self.installing.insert(t, (tunnel, p.spi, false));
                    self.installing_sas.insert((tunnel, p.spi, false));
                }
            }
            Action::SwitchOutbound { child, spi } => {
                let Some(tunnel) = self.tunnel_of_child(child) else {
                    return;
                };
                self.call((tunnel, spi, false), Deferred::Switch { tunnel, spi }, now);
            }
            Action::RetireInbound { child, spi } => {
                let Some(tunnel) = self.tunnel_of_child(child) else {
                    return;
                };
                self.watch.retain(|&w| w != (tunnel, spi));
                self.call((tunnel, spi, true), Deferred::Retire { tunnel, spi }, now);
            }
            Action::RemoveOutbound { child, spi } => {
                let Some(tunnel) = self.tunnel_of_child(child) else {
                    return;
                };
                self.call((tunnel, spi, false), Deferred::Remove { tunnel, spi }, now);
            }
        }
    }

    /// Runs `d` now, or after the install of `sa` is acknowledged.
    fn call(&mut self, sa: (TunnelId, u32, bool), d: Deferred, now: Instant) {
        if self.installing_sas.contains(&sa) {
            self.stats.deferred_calls += 1;
            self.deferred.push((sa, d));
        } else {
            self.run_call(d, now);
        }
    }

    fn run_call(&mut self, d: Deferred, now: Instant) {
        let r = {
            let mut dp = self.dp.borrow_mut();
            match d {
                Deferred::Switch { tunnel, spi } => dp.switch_outbound(tunnel, spi),
                Deferred::Retire { tunnel, spi } => dp.retire_inbound(tunnel, spi, now),
                Deferred::Remove { tunnel, spi } => dp.remove_outbound(tunnel, spi),
            }
        };
        self.dp_result(r, "a lifecycle call");
    }

    fn ack(&mut self, t: Ticket, r: Result<(), String>, now: Instant) {
        self.blocking.remove(&t);
        if let Err(e) = r {
            self.stats.dataplane_errors += 1;
            self.line(
                Level::Error,
                None,
                format!("data-plane operation failed: {e}"),
            );
        }
        let Some(sa) = self.installing.remove(&t) else {
            return;
        };
        self.installing_sas.remove(&sa);
        if self.deferred.is_empty() {
            return;
        }
        let (ready, wait): (Vec<_>, Vec<_>) = self.deferred.drain(..).partition(|(s, _)| *s == sa);
        self.deferred = wait;
        for (_, d) in ready {
            self.run_call(d, now);
        }
    }

    /// Soft lifetime `time − margin − random(0..jitter)` from `now`, and the hard one.
    fn schedule(&mut self, t: RekeyTiming, now: Instant) -> (Instant, Instant) {
        let jitter_ms = t.jitter.as_millis() as u64;
        let j = if jitter_ms == 0 {
            0
        } else {
            u64::from(self.jitter.next_u32()) % jitter_ms
        };
        let soft = t
            .time
            .saturating_sub(t.margin)
            .saturating_sub(Duration::from_millis(j));
        (now + soft, now + t.time)
    }

    fn timers(&mut self, i: usize, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.runs[i].restart_at) {
            self.initiate_peer(i, now);
        }
        if due(self.runs[i].child_soft) {
            self.runs[i].child_soft = None;
            if let Some(c) = self.runs[i].child
                && self.ep.rekey_child(now, c).is_ok()
            {
                self.stats.rekeys_started += 1;
            }
        }
        if due(self.runs[i].child_hard) {
            self.runs[i].child_hard = None;
            if let Some(c) = self.runs[i].child {
                self.stats.hard_expired += 1;
                self.line(
                    Level::Error,
                    Some(i),
                    "CHILD_SA reached its hard lifetime before a rekey replaced it: deleted, \
                     the tunnel drops traffic until a new CHILD_SA is up (never sent in clear)"
                        .into(),
                );
                let _ = self.ep.delete_child(now, c);
            }
        }
        if due(self.runs[i].ike_soft) {
            self.runs[i].ike_soft = None;
            if let Some(sa) = self.runs[i].ike
                && self.ep.rekey_ike(now, sa).is_ok()
            {
                self.stats.rekeys_started += 1;
            }
        }
        if due(self.runs[i].ike_hard) {
            self.runs[i].ike_hard = None;
            if let Some(sa) = self.runs[i].ike {
                self.stats.hard_expired += 1;
                self.line(
                    Level::Error,
                    Some(i),
                    "IKE SA reached its hard lifetime before a rekey replaced it: deleted".into(),
                );
                let _ = self.ep.delete_ike(now, sa);
                self.runs[i].restart_at = Some(now);
            }
        }
        if due(self.runs[i].dpd_next) {
            self.dpd(i, now);
        }
        if due(self.runs[i].dpd_deadline.map(|(_, t)| t)) {
            self.dpd_timeout(i, now);
        }
        if due(self.runs[i].keepalive_next) {
            self.keepalive(i, now);
        }
    }

    /// A NAT-T keepalive (one 0xFF octet, RFC 3948 §2.3) on the IKE SA's UDP 4500 path.
    fn keepalive(&mut self, i: usize, now: Instant) {
        let sa = self.runs[i]
            .ike
            .and_then(|id| self.ep.ike_sas().find(|s| s.id() == id))
            .filter(|s| s.natt())
            .map(|s| (s.local(), s.remote()));
        self.runs[i].keepalive_next = sa.map(|_| now + KEEPALIVE_EVERY);
        if let Some((local, remote)) = sa {
            self.stats.keepalives += 1;
            self.out.push_back(Transmit {
                local,
                remote,
                payload: vec![0xff],
            });
        }
    }

    /// DPD: a liveness check when nothing arrived on the tunnel's inbound SA since the last
    /// look (RFC 7296 §2.4); the endpoint's retransmission schedule decides when it failed.
    fn dpd(&mut self, i: usize, now: Instant) {
        let r = &self.runs[i];
        let delay = r.s.dpd.delay;
        let packets = r
            .spis
            .and_then(|(spi_in, _)| self.dp.borrow().inbound_packets(r.s.tunnel, spi_in))
            .unwrap_or(0);
        let idle = packets == r.dpd_packets;
        let ike = r.ike;
        self.runs[i].dpd_packets = packets;
        self.runs[i].dpd_next = (!delay.is_zero()).then(|| now + delay);
        if idle && let Some(sa) = ike {
            self.check_liveness(i, sa, now);
        }
    }

    /// Sends a liveness check on `sa` and arms the tunnel's DPD timeout; false when the
    /// IKE SA cannot take one (not established).
    fn check_liveness(&mut self, i: usize, sa: IkeSaId, now: Instant) -> bool {
        if self.ep.liveness(now, sa).is_err() {
            return false;
        }
        self.stats.dpd_checks += 1;
        let r = &mut self.runs[i];
        r.last_dpd = Some(now);
        let timeout = r.s.dpd.timeout;
        if !timeout.is_zero() && r.dpd_deadline.is_none() {
            r.dpd_deadline = Some((now, now + timeout));
        }
        true
    }

    /// The DPD timeout of a liveness check ran out: unless an authentic message arrived
    /// since it was sent, the peer is dead now (the endpoint's retransmission schedule may
    /// be longer than the configured timeout).
    fn dpd_timeout(&mut self, i: usize, now: Instant) {
        let Some((sent, _)) = self.runs[i].dpd_deadline.take() else {
            return;
        };
        let Some(sa) = self.runs[i].ike else { return };
        let heard = self
            .ep
            .ike_sa(sa)
            .and_then(|s| s.last_heard())
            .is_some_and(|t| t >= sent);
        if !heard && self.ep.declare_dead(now, sa).is_ok() {
            self.stats.dpd_timeouts += 1;
        }
    }

    fn event(&mut self, e: Event, now: Instant) {
        match e {
            Event::IkeEstablished {
                ike,
                peer,
                spis,
                remote,
                nat,
            } => {
                self.ike_peer.insert(ike, peer);
                let Some(r) = self.runs.get(peer) else { return };
                let (timing, delay) = (r.s.ike_lifetime, r.s.dpd.delay);
                let (soft, hard) = self.schedule(timing, now);
                let r = &mut self.runs[peer];
                r.ike = Some(ike);
                r.restart_at = None;
                r.restarting = false;
                (r.ike_soft, r.ike_hard) = (Some(soft), Some(hard));
                r.dpd_next = (!delay.is_zero()).then(|| now + delay);
                r.keepalive_next = nat.then(|| now + KEEPALIVE_EVERY);
                self.line(
                    Level::Info,
                    Some(peer),
                    format!(
                        "IKE SA established with {remote} (SPIs {:016x}_i {:016x}_r{})",
                        spis.0,
                        spis.1,
                        if nat { ", NAT detected: UDP 4500" } else { "" }
                    ),
                );
            }
            Event::IkeRekeyed { old, new } => {
                let Some(i) = self.ike_peer.remove(&old) else {
                    return;
                };
                self.ike_peer.insert(new, i);
                let (soft, hard) = self.schedule(self.runs[i].s.ike_lifetime, now);
                let r = &mut self.runs[i];
                r.ike = Some(new);
                (r.ike_soft, r.ike_hard) = (Some(soft), Some(hard));
                r.ike_rekeys += 1;
                self.line(Level::Info, Some(i), "IKE SA rekeyed".into());
            }
            Event::IkeDeleted { ike, reason } => {
                let Some(i) = self.ike_peer.remove(&ike) else {
                    return;
                };
                if self.runs[i].ike == Some(ike) {
                    let r = &mut self.runs[i];
                    r.ike = None;
                    (r.ike_soft, r.ike_hard, r.dpd_next, r.keepalive_next) =
                        (None, None, None, None);
                    r.dpd_deadline = None;
                    let retry =
                        matches!(reason, DeleteReason::Failed | DeleteReason::HalfOpenTimeout)
                            && (r.s.start == StartAction::Start || r.restarting);
                    if retry && r.restart_at.is_none() {
                        r.restart_at = Some(now + RETRY_AFTER);
                    }
                }
                self.line(Level::Info, Some(i), format!("IKE SA deleted ({reason:?})"));
            }
            Event::ChildEstablished { ike, child, spis } => {
                let Some(i) = self.peer_of_ike(ike) else {
                    return;
                };
                self.child_peer.insert(child, i);
                let (soft, hard) = self.schedule(self.runs[i].s.child_lifetime, now);
                let r = &mut self.runs[i];
                r.child = Some(child);
                r.spis = Some(spis);
                (r.child_soft, r.child_hard) = (Some(soft), Some(hard));
                self.line(
                    Level::Info,
                    Some(i),
                    format!(
                        "CHILD_SA established: in 0x{:08x} out 0x{:08x}",
                        spis.0, spis.1
                    ),
                );
            }
            Event::ChildRekeyed {
                child, old, new, ..
            } => {
                let Some(&i) = self.child_peer.get(&child) else {
                    return;
                };
                self.remember_cause(old.0, SpiCause::RetiredByRekey, now);
                let (soft, hard) = self.schedule(self.runs[i].s.child_lifetime, now);
                let r = &mut self.runs[i];
                r.spis = Some(new);
                (r.child_soft, r.child_hard) = (Some(soft), Some(hard));
                r.child_rekeys += 1;
                self.line(
                    Level::Info,
                    Some(i),
                    format!(
                        "CHILD_SA rekeyed: in 0x{:08x} -> 0x{:08x}, out 0x{:08x} -> 0x{:08x}",
                        old.0, new.0, old.1, new.1
                    ),
                );
            }
            Event::ChildDeleted {
                child,
                spis,
                reason,
                ..
            } => {
                let Some(&i) = self.child_peer.get(&child) else {
                    return;
                };
                self.remember_cause(spis.0, SpiCause::of(reason), now);
                if self.runs[i].spis == Some(spis) {
                    let r = &mut self.runs[i];
                    (r.child, r.spis, r.child_soft, r.child_hard) = (None, None, None, None);
                }
                self.line(
                    Level::Info,
                    Some(i),
                    format!(
                        "CHILD_SA deleted ({reason:?}): in 0x{:08x} out 0x{:08x}",
                        spis.0, spis.1
                    ),
                );
            }
            Event::PeerMoved { ike, remote } => {
                let Some(i) = self.peer_of_ike(ike) else {
                    return;
                };
                let tunnel = self.runs[i].s.tunnel;
                let spis: Vec<u32> = self
                    .ep
                    .ike_sa(ike)
                    .map(|sa| {
                        sa.children()
                            .iter()
                            .filter(|c| c.outbound_installed)
                            .map(|c| c.spi_out)
                            .collect()
                    })
                    .unwrap_or_default();
                for spi in &spis {
                    let r = self.dp.borrow_mut().retarget_outbound(tunnel, *spi, remote);
                    self.dp_result(r, "a retarget of an outbound SA");
                }
                self.stats.peer_moves += 1;
                self.line(
                    Level::Info,
                    Some(i),
                    format!(
                        "peer moved to {remote} (NAT mapping changed, authenticated IKE \
                         request): {} outbound SA(s) follow",
                        spis.len()
                    ),
                );
            }
            Event::PeerDead { ike, remote } => {
                let Some(i) = self.peer_of_ike(ike) else {
                    return;
                };
                let action = self.runs[i].s.dpd.action;
                self.line(
                    Level::Warn,
                    Some(i),
                    format!("peer {remote} is dead (our requests went unanswered): {action:?}"),
                );
                match action {
                    DpdAction::Restart => {
                        self.runs[i].restart_at = Some(now);
                        self.runs[i].restarting = true;
                    }
                    DpdAction::Trap => self.runs[i].trap_armed = true,
                    DpdAction::Clear => {}
                }
            }
            Event::NoProposalChosen {
                ike,
                remote,
                ours,
                theirs,
            } => {
                let i = ike.and_then(|s| self.peer_of_ike(s));
                self.line(
                    Level::Warn,
                    i,
                    format!("no proposal chosen with {remote}: ours {ours}, theirs {theirs}"),
                );
            }
            Event::AuthenticationFailed {
                ike,
                peer,
                remote,
                by_peer,
            } => {
                let i = peer.or_else(|| self.peer_of_ike(ike));
                let who = if by_peer {
                    "the peer refused ours"
                } else {
                    "the peer's AUTH did not verify"
                };
                self.line(
                    Level::Warn,
                    i,
                    format!("authentication with {remote} failed: {who}"),
                );
            }
            Event::ExchangeFailed {
                ike,
                notify,
                by_peer,
            } => {
                let i = self.peer_of_ike(ike);
                let who = if by_peer { "peer" } else { "us" };
                self.line(
                    Level::Warn,
                    i,
                    format!("exchange failed: {notify:?} (sent by {who})"),
                );
            }
        }
    }
}
