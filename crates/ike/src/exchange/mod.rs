//! The IKEv2 exchanges (RFC 7296 §1.2–§1.5) on an [`Endpoint`] that holds every IKE SA of this
//! box, sans-I/O in the shape of quinn-proto:
//!
//! * feed it with [`Endpoint::handle_datagram`] (UDP payloads that arrived on port 500 or
//!   4500) and [`Endpoint::handle_timeout`] (at or after [`Endpoint::poll_timeout`]);
//! * command it with [`Endpoint::initiate`], [`Endpoint::rekey_child`],
//!   [`Endpoint::rekey_ike`], [`Endpoint::delete_child`], [`Endpoint::delete_ike`],
//!   [`Endpoint::liveness`], and tell it about data-plane traffic on a new inbound SA with
//!   [`Endpoint::inbound_traffic`];
//! * drain [`Endpoint::poll_action`] (what the data plane must do, in order) **before**
//!   [`Endpoint::poll_transmit`] (what to send), then [`Endpoint::poll_event`] (what happened).
//!
//! Draining actions before transmits is what makes CHILD_SA installation make-before-break:
//! the inbound SA a response announces is always among the actions that precede that response.
//!
//! The modules follow strongSwan's split of an exchange into concerns: [`ike_sa`] holds one
//! IKE SA and its exchange machinery (message IDs, window of one, retransmission, cached
//! responses, fragments); `init`, `auth`, `child`, `ike_rekey` and `info` hold the payload work
//! of each exchange for both roles.

mod auth;
mod child;
mod ike_rekey;
pub mod ike_sa;
mod info;
mod init;
mod output;
mod spi;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

pub use output::{Action, ChildSaParams, DeleteReason, Event, Stats, Transmit};
pub use spi::{RandomSpis, SpiAllocator};

use crate::config::{EndpointConfig, PeerConfig};
use crate::cookie::CookieJar;
use crate::msgs::{ExchangeType, Header};
use crate::rng::Random;
use ike_sa::IkeSa;
use output::Outputs;

/// Identifies one IKE SA of the endpoint (a rekeyed IKE SA gets a new one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IkeSaId(pub u64);

/// Identifies a CHILD_SA and all its rekeyed successors: the data plane's tunnel slot,
/// whose outbound SA is switched atomically (issue 13's `switch_outbound`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChildId(pub u64);

/// A command that cannot be carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No configured peer of that index.
    #[error("no peer {0}")]
    NoSuchPeer(usize),
    /// No such IKE SA.
    #[error("no IKE SA {0:?}")]
    NoSuchIkeSa(IkeSaId),
    /// No such CHILD_SA.
    #[error("no CHILD_SA {0:?}")]
    NoSuchChild(ChildId),
    /// The IKE SA is not established (or is being deleted).
    #[error("IKE SA {0:?} is not established")]
    NotEstablished(IkeSaId),
    /// The peer has no address to initiate to.
    #[error("peer {0} has no remote address")]
    NoRemoteAddress(String),
    /// The peer has no IKE proposal (or one without a DH group) configured.
    #[error("peer {0} has no IKE proposal")]
    NoProposal(String),
    /// Generating a Diffie-Hellman key failed (the random source gave no usable value).
    #[error("key generation failed")]
    KeyGeneration,
}

/// Everything an IKE SA needs from its endpoint while it handles an input.
pub(crate) struct Ctx<'a> {
    pub now: Instant,
    pub config: &'a EndpointConfig,
    pub peers: &'a [PeerConfig],
    pub rng: &'a mut dyn Random,
    pub spis: &'a mut dyn SpiAllocator,
    pub out: &'a mut Outputs,
    pub next_child: &'a mut u64,
    pub next_ike: &'a mut u64,
    /// IKE SAs born while handling this input (IKE SA rekeys), registered afterwards.
    pub born: Vec<IkeSa>,
    /// Set when the peer sent INITIAL_CONTACT in an IKE_AUTH that succeeded (§2.4).
    pub initial_contact: bool,
    /// The CHILD_SAs of the IKE SA being handled move to this (already registered) IKE SA
    /// afterwards: the peer's rekey won a collision (§2.8.2).
    pub adopt_by: Option<IkeSaId>,
}

impl Ctx<'_> {
    pub fn child_id(&mut self) -> ChildId {
        *self.next_child += 1;
        ChildId(*self.next_child)
    }

    pub fn ike_id(&mut self) -> IkeSaId {
        *self.next_ike += 1;
        IkeSaId(*self.next_ike)
    }

    pub fn ike_spi(&mut self) -> u64 {
        loop {
            let s = self.rng.next_u64();
            if s != 0 {
                return s;
            }
        }
    }
}

/// A [`Ctx`] over the endpoint's fields (a macro, so the other fields stay usable).
macro_rules! ctx {
    ($ep:ident, $now:expr) => {
        Ctx {
            now: $now,
            config: &$ep.config,
            peers: &$ep.peers,
            rng: $ep.rng.as_mut(),
            spis: $ep.spis.as_mut(),
            out: &mut $ep.out,
            next_child: &mut $ep.next_child,
            next_ike: &mut $ep.next_ike,
            born: Vec::new(),
            initial_contact: false,
            adopt_by: None,
        }
    };
}

/// All IKE SAs of one box.
pub struct Endpoint {
    config: EndpointConfig,
    peers: Vec<PeerConfig>,
    rng: Box<dyn Random>,
    spis: Box<dyn SpiAllocator>,
    sas: BTreeMap<IkeSaId, IkeSa>,
    by_local_spi: HashMap<u64, IkeSaId>,
    /// Half-open responder SAs by (initiator address, SPIi): their number is what cookies
    /// and the half-open limit look at.
    half_open: HashMap<(SocketAddr, u64), IkeSaId>,
    /// Every live responder SA by (initiator address, SPIi): a retransmitted IKE_SA_INIT gets
    /// the same response, a late copy after IKE_AUTH is ignored (strongSwan keeps the same
    /// index, `init_hash` in its ike_sa_manager).
    by_init: HashMap<(SocketAddr, u64), IkeSaId>,
    /// Every IKE SA's next deadline, earliest first: `poll_timeout` and `handle_timeout` cost
    /// O(log n), not a scan of every IKE SA.
    deadlines: BTreeSet<(Instant, IkeSaId)>,
    deadline_of: HashMap<IkeSaId, Instant>,
    cookies: CookieJar,
    next_ike: u64,
    next_child: u64,
    out: Outputs,
}

impl core::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("ike_sas", &self.sas.len())
            .field("half_open", &self.half_open.len())
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint with these peers. `spis` allocates inbound CHILD_SA SPIs (the data plane's
    /// allocator, or [`RandomSpis`]).
    pub fn new(
        config: EndpointConfig,
        peers: Vec<PeerConfig>,
        mut rng: Box<dyn Random>,
        spis: Box<dyn SpiAllocator>,
    ) -> Self {
        let cookies = CookieJar::new(rng.as_mut());
        Endpoint {
            config,
            peers,
            rng,
            spis,
            sas: BTreeMap::new(),
            by_local_spi: HashMap::new(),
            half_open: HashMap::new(),
            by_init: HashMap::new(),
            deadlines: BTreeSet::new(),
            deadline_of: HashMap::new(),
            cookies,
            next_ike: 0,
            next_child: 0,
            out: Outputs::default(),
        }
    }

    /// The endpoint's settings.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// The configured peers.
    pub fn peers(&self) -> &[PeerConfig] {
        &self.peers
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next thing the data plane must do. Drain these before [`Self::poll_transmit`].
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.actions.pop_front()
    }

    /// The next event for the operator or the control plane.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When [`Self::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Keeps `id`'s entry in the deadline index current.
    fn reschedule(&mut self, id: IkeSaId) {
        if let Some(old) = self.deadline_of.remove(&id) {
            self.deadlines.remove(&(old, id));
        }
        if let Some(t) = self.sas.get(&id).and_then(IkeSa::next_deadline) {
            self.deadlines.insert((t, id));
            self.deadline_of.insert(id, t);
        }
    }

    fn put(&mut self, sa: IkeSa) {
        let id = sa.id();
        self.sas.insert(id, sa);
        self.reschedule(id);
    }

    fn take(&mut self, id: IkeSaId) -> Option<IkeSa> {
        let sa = self.sas.remove(&id)?;
        self.reschedule(id);
        Some(sa)
    }

    /// Read-only view of one IKE SA.
    pub fn ike_sa(&self, id: IkeSaId) -> Option<&IkeSa> {
        self.sas.get(&id)
    }

    /// All IKE SAs.
    pub fn ike_sas(&self) -> impl Iterator<Item = &IkeSa> {
        self.sas.values()
    }

    fn with_sa<R>(
        &mut self,
        now: Instant,
        id: IkeSaId,
        f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let mut sa = self.take(id)?;
        let mut ctx = ctx!(self, now);
        let r = f(&mut sa, &mut ctx);
        let born = std::mem::take(&mut ctx.born);
        let initial_contact = ctx.initial_contact;
        let adopt_by = ctx.adopt_by;
        self.finish(sa, born, initial_contact, adopt_by);
        Some(r)
    }

    fn finish(
        &mut self,
        mut sa: IkeSa,
        born: Vec<IkeSa>,
        initial_contact: bool,
        adopt_by: Option<IkeSaId>,
    ) {
        let id = sa.id();
        if !sa.is_half_open()
            && let Some(k) = sa.init_key
        {
            self.half_open.remove(&k);
        }
        let remote_id = initial_contact
            .then(|| sa.remote_identity().cloned())
            .flatten();
        if let Some(target) = adopt_by.and_then(|t| self.sas.get_mut(&t)) {
            let (children, tasks) = sa.take_children_and_tasks();
            target.adopt_children(children);
            target.adopt_tasks(tasks);
            target.apply_deferred_deletes(&mut self.out, self.spis.as_mut());
            let t = target.id();
            self.reschedule(t);
        }
        if sa.is_gone() {
            self.forget(&sa);
        } else {
            self.by_local_spi.insert(sa.local_spi(), id);
            self.put(sa);
        }
        for b in born {
            self.by_local_spi.insert(b.local_spi(), b.id());
            self.put(b);
        }
        if let Some(rid) = remote_id {
            self.apply_initial_contact(id, &rid);
        }
    }

    /// INITIAL_CONTACT (§2.4): every other IKE SA with the same peer identity is stale; its
    /// CHILD_SAs leave the data plane at once, without DELETE exchanges.
    fn apply_initial_contact(&mut self, keep: IkeSaId, remote: &crate::config::Identity) {
        let stale: Vec<IkeSaId> = self
            .sas
            .iter()
            .filter(|(id, sa)| **id != keep && sa.remote_identity() == Some(remote))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(mut sa) = self.take(id) {
                sa.discard(
                    DeleteReason::InitialContact,
                    &mut self.out,
                    self.spis.as_mut(),
                );
                self.forget(&sa);
            }
        }
    }

    /// Drops the index entries of an IKE SA that is gone.
    fn forget(&mut self, sa: &IkeSa) {
        let id = sa.id();
        if self.by_local_spi.get(&sa.local_spi()) == Some(&id) {
            self.by_local_spi.remove(&sa.local_spi());
        }
        if let Some(k) = sa.init_key {
            if self.half_open.get(&k) == Some(&id) {
                self.half_open.remove(&k);
            }
            if self.by_init.get(&k) == Some(&id) {
                self.by_init.remove(&k);
            }
        }
    }

    /// Handles one UDP payload that arrived from `remote` at `local`. On port 4500 the
    /// payload starts with the four-octet non-ESP marker (RFC 3948 §2.2); a one-octet NAT
    /// keepalive (0xff) is counted and ignored.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
    ) {
        self.out.stats.datagrams_received += 1;
        let data = if local.port() == crate::NATT_PORT {
            match bytes {
                [0xff] => {
                    self.out.stats.natt_keepalives += 1;
                    return;
                }
                [0, 0, 0, 0, rest @ ..] => rest,
                _ => {
                    self.out.stats.non_ike_on_natt_port += 1;
                    return;
                }
            }
        } else {
            bytes
        };
        let header = match Header::parse(data) {
            Ok(h) => h,
            Err(_) => {
                self.out.stats.invalid_header += 1;
                return;
            }
        };
        if header.check_version().is_err() {
            self.out.stats.invalid_major_version += 1;
            if !header.is_response() {
                init::answer_bad_version(&header, local, remote, &mut self.out);
            }
            return;
        }
        if header.exchange == ExchangeType::IKE_SA_INIT
            && !header.is_response()
            && header.spi_r == 0
        {
            self.responder_init(now, local, remote, data, &header);
            return;
        }
        // The I flag names the original initiator: if it sent this, our SPI is SPIr.
        let local_spi = if header.is_initiator() {
            header.spi_r
        } else {
            header.spi_i
        };
        let Some(&id) = self.by_local_spi.get(&local_spi) else {
            self.out.stats.unknown_ike_spi += 1;
            return;
        };
        self.with_sa(now, id, |sa, ctx| {
            sa.handle_datagram(ctx, local, remote, data, &header)
        });
    }

    fn responder_init(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        header: &Header,
    ) {
        if let Some(sa) = self
            .by_init
            .get(&(remote, header.spi_i))
            .and_then(|id| self.sas.get(id))
        {
            if sa.is_half_open() {
                // A retransmitted IKE_SA_INIT: the same response again (§2.1).
                self.out.stats.retransmitted_requests += 1;
                sa.resend_cached_response(&mut self.out);
            } else {
                // A late copy after IKE_AUTH: message ID 0 is out of that SA's window.
                self.out.stats.out_of_window += 1;
            }
            return;
        }
        self.cookies
            .rotate(now, self.config.cookie_rotation, self.rng.as_mut());
        let half_open = self.half_open.len();
        let mut ctx = ctx!(self, now);
        let Some(mut sa) = init::respond(
            &mut ctx,
            &self.cookies,
            half_open,
            local,
            remote,
            data,
            header,
        ) else {
            return;
        };
        let id = sa.id();
        let key = (remote, header.spi_i);
        sa.init_key = Some(key);
        self.half_open.insert(key, id);
        self.by_init.insert(key, id);
        self.by_local_spi.insert(sa.local_spi(), id);
        self.put(sa);
    }

    /// Handles every timer that is due: retransmissions, give-ups, half-open expiry, delayed
    /// retries and activations.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<IkeSaId> = self
            .deadlines
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            self.with_sa(now, id, |sa, ctx| sa.handle_timeout(ctx));
        }
    }

    /// Starts an IKE SA with peer number `peer` (an index into the configured peers), with
    /// its first CHILD_SA.
    pub fn initiate(&mut self, now: Instant, peer: usize) -> Result<IkeSaId, CommandError> {
        let cfg = self.peers.get(peer).ok_or(CommandError::NoSuchPeer(peer))?;
        let remote_ip = cfg
            .remote_addr
            .ok_or_else(|| CommandError::NoRemoteAddress(cfg.name.clone()))?;
        let first_contact = !self
            .sas
            .values()
            .any(|sa| sa.peer_index() == Some(peer) && sa.is_established());
        let mut ctx = ctx!(self, now);
        let sa = init::initiate(&mut ctx, peer, remote_ip, first_contact)?;
        let id = sa.id();
        self.by_local_spi.insert(sa.local_spi(), id);
        self.put(sa);
        Ok(id)
    }

    fn sa_of_child(&self, child: ChildId) -> Option<IkeSaId> {
        self.sas
            .iter()
            .find(|(_, sa)| sa.has_child(child))
            .map(|(id, _)| *id)
    }

    /// Rekeys the CHILD_SA `child` (CREATE_CHILD_SA with REKEY_SA, §1.3.3).
    pub fn rekey_child(&mut self, now: Instant, child: ChildId) -> Result<(), CommandError> {
        let id = self
            .sa_of_child(child)
            .ok_or(CommandError::NoSuchChild(child))?;
        self.with_sa(now, id, |sa, ctx| sa.queue_rekey_child(ctx, child))
            .unwrap_or(Ok(()))
    }

    /// Creates one more CHILD_SA on the IKE SA `ike` with the peer's configured selectors
    /// (CREATE_CHILD_SA, §1.3.1).
    pub fn create_child(&mut self, now: Instant, ike: IkeSaId) -> Result<ChildId, CommandError> {
        self.with_sa(now, ike, |sa, ctx| sa.queue_create_child(ctx))
            .ok_or(CommandError::NoSuchIkeSa(ike))?
    }

    /// Rekeys the IKE SA `ike` (CREATE_CHILD_SA, §1.3.2); its CHILD_SAs move to the new one.
    pub fn rekey_ike(&mut self, now: Instant, ike: IkeSaId) -> Result<(), CommandError> {
        self.with_sa(now, ike, |sa, ctx| sa.queue_rekey_ike(ctx))
            .ok_or(CommandError::NoSuchIkeSa(ike))?
    }

    /// Deletes the CHILD_SA `child` and its rekeyed siblings (INFORMATIONAL, §1.4.1).
    pub fn delete_child(&mut self, now: Instant, child: ChildId) -> Result<(), CommandError> {
        let id = self
            .sa_of_child(child)
            .ok_or(CommandError::NoSuchChild(child))?;
        self.with_sa(now, id, |sa, ctx| sa.queue_delete_child(ctx, child))
            .unwrap_or(Ok(()))
    }

    /// Deletes the IKE SA `ike` and all its CHILD_SAs (INFORMATIONAL, §1.4.1).
    pub fn delete_ike(&mut self, now: Instant, ike: IkeSaId) -> Result<(), CommandError> {
        self.with_sa(now, ike, |sa, ctx| sa.queue_delete_ike(ctx))
            .ok_or(CommandError::NoSuchIkeSa(ike))?
    }

    /// Sends an empty INFORMATIONAL request (liveness check, §1.4); an unanswered one
    /// declares the peer dead after the retransmission schedule.
    pub fn liveness(&mut self, now: Instant, ike: IkeSaId) -> Result<(), CommandError> {
        self.with_sa(now, ike, |sa, ctx| sa.queue_liveness(ctx))
            .ok_or(CommandError::NoSuchIkeSa(ike))?
    }

    /// Declares the peer of `ike` dead without waiting for the retransmission schedule (the
    /// caller's DPD timeout ran out with nothing heard, §2.4): [`Event::PeerDead`], then
    /// the IKE SA and its CHILD_SAs are removed as when a request goes unanswered.
    pub fn declare_dead(&mut self, now: Instant, ike: IkeSaId) -> Result<(), CommandError> {
        self.with_sa(now, ike, |sa, ctx| sa.declare_dead(ctx))
            .ok_or(CommandError::NoSuchIkeSa(ike))
    }

    /// The data plane decrypted a packet on inbound SA `spi` that was announced with
    /// [`ChildSaParams::report_first_packet`]: the peer uses the new CHILD_SA, so our
    /// outbound may switch to it (§2.8).
    pub fn inbound_traffic(&mut self, now: Instant, spi: u32) {
        if let Some(id) = self
            .sas
            .iter()
            .find(|(_, sa)| sa.has_inbound_spi(spi))
            .map(|(id, _)| *id)
        {
            self.with_sa(now, id, |sa, ctx| sa.inbound_traffic(ctx, spi));
        }
    }
}
