//! One IKE SA and its exchange machinery (RFC 7296 §2.1–§2.3): message IDs with a window of
//! one in each direction, retransmission with back-off, the cached response for a
//! retransmitted request, SK protection and RFC 7383 fragments. The payload work of each
//! exchange lives in the sibling modules.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use super::child::ChildSa;
use super::output::Outputs;
use super::{ChildId, CommandError, Ctx, DeleteReason, Event, IkeSaId, SpiAllocator};
use crate::config::Identity;
use crate::crypto::aead::SkAead;
use crate::crypto::prf::PrfAlg;
use crate::msgs::fragment::{Reassembler, seal_fragments};
use crate::msgs::protect::{self, ProtectError};
use crate::msgs::{
    ExchangeType, Header, Message, Notify, NotifyType, ParseError, Payload, PayloadType,
};
use crate::proposal::Cipher;
use crate::secret::Secret;

/// The keys of an established (or authenticating) IKE SA.
pub(crate) struct SaKeys {
    pub prf: PrfAlg,
    pub cipher: Cipher,
    pub sk_d: Secret,
    pub sk_pi: Secret,
    pub sk_pr: Secret,
    pub enc_out: SkAead,
    pub enc_in: SkAead,
}

/// Where an IKE SA stands.
pub(crate) enum State {
    /// We sent IKE_SA_INIT.
    InitSent(super::init::InitiatorInit),
    /// We sent IKE_AUTH.
    AuthSent(super::auth::InitiatorAuth),
    /// We answered IKE_SA_INIT and wait for IKE_AUTH (half-open).
    HalfOpen(super::auth::ResponderAuth),
    /// Usable.
    Established,
    /// Replaced by a rekey; waits for its DELETE (sent or received).
    Rekeyed,
    /// Our DELETE of it is outstanding.
    Deleting,
    /// Nothing left; the endpoint forgets it.
    Gone,
}

/// A request waiting for the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    CreateChild(ChildId),
    RekeyChild(ChildId),
    RekeyIke,
    DeleteChild(Vec<u32>),
    DeleteIke,
    Liveness,
}

/// What our outstanding request is doing.
pub(crate) enum InFlight {
    SaInit,
    Auth,
    Child(super::child::ChildRequest),
    IkeRekey(super::ike_rekey::IkeRekeyRequest),
    DeleteChild(Vec<u32>),
    DeleteIke,
    Liveness,
}

/// Our outstanding request.
pub(crate) struct Pending {
    pub mid: u32,
    pub datagrams: Vec<Vec<u8>>,
    pub sent: u32,
    pub deadline: Instant,
    pub task: InFlight,
}

/// One IKE SA.
pub struct IkeSa {
    pub(crate) id: IkeSaId,
    pub(crate) peer: Option<usize>,
    /// We are the original initiator of this IKE SA (the I flag, §3.1).
    pub(crate) initiator: bool,
    pub(crate) spi_i: u64,
    pub(crate) spi_r: u64,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    /// A NAT was detected (or UDP encapsulation is forced): IKE and ESP use port 4500.
    pub(crate) natt: bool,
    /// NAT_DETECTION showed a translated address on either side.
    pub(crate) nat_detected: bool,
    pub(crate) peer_fragmentation: bool,
    /// The peer deleted this IKE SA; it goes once the response is sent.
    pub(crate) closing: bool,
    /// Born from the peer's rekey in a collision that is not decided yet: if it wins, the
    /// CHILD_SAs come over from the old IKE SA. Until then CHILD_SA requests get
    /// TEMPORARY_FAILURE and DELETEs of CHILD_SAs wait in `deferred_deletes`.
    pub(crate) awaiting_children: bool,
    /// ESP SPIs (our outbound) the peer deleted while `awaiting_children`.
    pub(crate) deferred_deletes: Vec<u32>,
    /// For an SA we answered IKE_SA_INIT for: (initiator address, SPIi), its key in the
    /// endpoint's indexes.
    pub(crate) init_key: Option<(SocketAddr, u64)>,
    pub(crate) state: State,
    pub(crate) keys: Option<SaKeys>,
    pub(crate) remote_identity: Option<Identity>,
    iv_counter: u64,
    next_mid: u32,
    pub(crate) pending: Option<Pending>,
    queue: VecDeque<(Instant, Task)>,
    peer_next_mid: u32,
    cached: Option<(u32, Vec<Vec<u8>>)>,
    reasm_requests: Reassembler,
    reasm_responses: Reassembler,
    pub(crate) children: Vec<ChildSa>,
    /// Half-open expiry, or the time a replaced/deleting IKE SA is given up.
    pub(crate) expires: Option<Instant>,
    /// When an authentic message (request or response) last arrived from the peer.
    last_heard: Option<Instant>,
    /// When we last answered a CREATE_CHILD_SA request (see [`ANSWER_QUIET`]).
    last_child_answer: Option<Instant>,
}

/// An IKE SA rekey of ours starts no sooner than this after our last answer to a
/// CREATE_CHILD_SA request. If that answer was lost, the peer retransmits its request on this
/// IKE SA (strongSwan after 4 s); a rekey that deleted the IKE SA first would make the peer
/// drop the CHILD_SA it was creating while we keep ours — the two ends would then hold
/// different CHILD_SAs (seen under forced collisions with lost answers).
pub const ANSWER_QUIET: std::time::Duration = std::time::Duration::from_millis(4500);

impl core::fmt::Debug for IkeSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IkeSa")
            .field("id", &self.id)
            .field("spi_i", &format_args!("{:016x}", self.spi_i))
            .field("spi_r", &format_args!("{:016x}", self.spi_r))
            .field("remote", &self.remote)
            .field("state", &self.state_name())
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}

impl IkeSa {
    /// A new IKE SA in `state`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: IkeSaId,
        peer: Option<usize>,
        initiator: bool,
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
        state: State,
        ctx: &Ctx<'_>,
    ) -> Self {
        IkeSa {
            id,
            peer,
            initiator,
            spi_i,
            spi_r,
            local,
            remote,
            natt: false,
            nat_detected: false,
            peer_fragmentation: false,
            closing: false,
            awaiting_children: false,
            deferred_deletes: Vec::new(),
            init_key: None,
            state,
            keys: None,
            remote_identity: None,
            iv_counter: 0,
            next_mid: 0,
            pending: None,
            queue: VecDeque::new(),
            peer_next_mid: 0,
            cached: None,
            reasm_requests: Reassembler::new(ctx.config.max_fragments, ctx.config.max_message),
            reasm_responses: Reassembler::new(ctx.config.max_fragments, ctx.config.max_message),
            children: Vec::new(),
            expires: None,
            last_heard: None,
            last_child_answer: None,
        }
    }

    /// The endpoint's identifier of this IKE SA.
    pub fn id(&self) -> IkeSaId {
        self.id
    }

    pub(crate) fn adopt_children(&mut self, children: Vec<ChildSa>) {
        let id = self.id;
        if self.awaiting_children {
            // It won a rekey collision: it is no longer expected to be deleted.
            self.expires = None;
            self.awaiting_children = false;
        }
        self.children.extend(children.into_iter().map(|mut c| {
            c.ike = id;
            c
        }));
    }

    /// Our SPI (SPIi if we are the original initiator, else SPIr).
    pub fn local_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    /// SPIi and SPIr.
    pub fn spis(&self) -> (u64, u64) {
        (self.spi_i, self.spi_r)
    }

    /// The configured peer this IKE SA belongs to.
    pub fn peer_index(&self) -> Option<usize> {
        self.peer
    }

    /// Where the peer is.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Our address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Whether IKE and ESP are UDP-encapsulated on port 4500.
    pub fn natt(&self) -> bool {
        self.natt
    }

    /// The peer's authenticated identity.
    pub fn remote_identity(&self) -> Option<&Identity> {
        self.remote_identity.as_ref()
    }

    /// The CHILD_SAs (all of them, including those being rekeyed or deleted).
    pub fn children(&self) -> &[ChildSa] {
        &self.children
    }

    /// A short name of the state, for `show` and logs.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::InitSent(_) => "IKE_SA_INIT sent",
            State::AuthSent(_) => "IKE_AUTH sent",
            State::HalfOpen(_) => "half-open",
            State::Established => "established",
            State::Rekeyed => "rekeyed",
            State::Deleting => "deleting",
            State::Gone => "gone",
        }
    }

    /// IKE_AUTH completed and the SA is neither replaced nor being deleted.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established)
    }

    pub(crate) fn is_half_open(&self) -> bool {
        matches!(self.state, State::HalfOpen(_))
    }

    pub(crate) fn is_gone(&self) -> bool {
        matches!(self.state, State::Gone)
    }

    /// When an authentic (decrypted and verified) message last arrived from the peer: the
    /// proof of liveness a DPD timeout is measured against (§2.4).
    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    /// Whether a request of ours is outstanding.
    pub fn has_pending_request(&self) -> bool {
        self.pending.is_some()
    }

    pub(crate) fn has_child(&self, child: ChildId) -> bool {
        self.children.iter().any(|c| c.id == child)
    }

    pub(crate) fn has_inbound_spi(&self, spi: u32) -> bool {
        self.children.iter().any(|c| c.spi_in == spi)
    }

    /// The earliest time this SA wants [`super::Endpoint::handle_timeout`].
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let queued = match self.state {
            _ if self.pending.is_some() => None,
            State::Established => self.queue.iter().map(|(t, _)| *t).min(),
            State::Rekeyed => self
                .queue
                .iter()
                .find(|(_, t)| *t == Task::DeleteIke)
                .map(|(t, _)| *t),
            _ => None,
        };
        [
            self.pending.as_ref().map(|p| p.deadline),
            queued,
            self.expires,
            self.children.iter().filter_map(|c| c.deadline()).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The header of a message of ours.
    pub(crate) fn header(&self, exchange: ExchangeType, response: bool, mid: u32) -> Header {
        let mut flags = 0;
        if self.initiator {
            flags |= Header::FLAG_INITIATOR;
        }
        if response {
            flags |= Header::FLAG_RESPONSE;
        }
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: PayloadType::NONE,
            major_version: 2,
            minor_version: 0,
            exchange,
            flags,
            message_id: mid,
            length: 0,
        }
    }

    /// Encrypts a message, in fragments when the peer supports them and it is too large.
    fn seal(&mut self, ctx: &Ctx<'_>, header: &Header, payloads: &[Payload]) -> Vec<Vec<u8>> {
        let Some(keys) = self.keys.as_ref() else {
            return Vec::new();
        };
        // `fragment_size` bounds the UDP payload, which on 4500 includes the marker.
        let marker = if self.local.port() == crate::NATT_PORT {
            4
        } else {
            0
        };
        let max = ctx.config.fragment_size.saturating_sub(marker);
        let mut counter = self.iv_counter;
        let out = if self.peer_fragmentation {
            let mut ivs = || {
                counter += 1;
                counter.to_be_bytes()
            };
            seal_fragments(header, payloads, &keys.enc_out, &mut ivs, max)
        } else {
            counter += 1;
            vec![protect::seal(
                header,
                payloads,
                &keys.enc_out,
                counter.to_be_bytes(),
            )]
        };
        self.iv_counter = counter;
        out
    }

    /// Sends an encrypted request and makes it the outstanding one.
    pub(crate) fn send_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        exchange: ExchangeType,
        payloads: Vec<Payload>,
        task: InFlight,
    ) {
        let mid = self.next_mid;
        self.next_mid = self.next_mid.wrapping_add(1);
        let header = self.header(exchange, false, mid);
        let datagrams = self.seal(ctx, &header, &payloads);
        self.transmit_request(ctx, mid, datagrams, task);
    }

    /// Sends an already built request (IKE_SA_INIT is not encrypted).
    pub(crate) fn transmit_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        mid: u32,
        datagrams: Vec<Vec<u8>>,
        task: InFlight,
    ) {
        for d in &datagrams {
            ctx.out.send(self.local, self.remote, d.clone());
        }
        self.pending = Some(Pending {
            mid,
            datagrams,
            sent: 1,
            deadline: ctx.now + ctx.config.retransmit.wait_after(1),
            task,
        });
    }

    /// Our next request carries message ID `mid` (IKE_AUTH follows IKE_SA_INIT's 0).
    pub(crate) fn set_next_mid(&mut self, mid: u32) {
        self.next_mid = mid;
    }

    /// Sends the response to request `mid` and keeps it for retransmitted requests.
    fn respond(
        &mut self,
        ctx: &mut Ctx<'_>,
        exchange: ExchangeType,
        mid: u32,
        payloads: Vec<Payload>,
    ) {
        if exchange == ExchangeType::CREATE_CHILD_SA {
            self.last_child_answer = Some(ctx.now);
        }
        let header = self.header(exchange, true, mid);
        let datagrams = self.seal(ctx, &header, &payloads);
        for d in &datagrams {
            ctx.out.send(self.local, self.remote, d.clone());
        }
        self.cached = Some((mid, datagrams));
    }

    /// Keeps a plaintext response (IKE_SA_INIT) for retransmitted requests.
    pub(crate) fn cache_response(&mut self, mid: u32, datagram: Vec<u8>) {
        self.cached = Some((mid, vec![datagram]));
        self.peer_next_mid = mid.wrapping_add(1);
    }

    pub(crate) fn resend_cached_response(&self, out: &mut Outputs) {
        if let Some((_, ds)) = &self.cached {
            for d in ds {
                out.send(self.local, self.remote, d.clone());
            }
        }
    }

    /// Queues a request; it starts when the window is free and `not_before` has come.
    pub(crate) fn queue_task(&mut self, ctx: &mut Ctx<'_>, not_before: Instant, task: Task) {
        if !self.queue.iter().any(|(_, t)| *t == task) {
            self.queue.push_back((not_before, task));
        }
        self.kick(ctx);
    }

    /// Queues `task` again after a TEMPORARY_FAILURE (§2.25): `temporary_failure_retry` plus
    /// up to as much again at random, so two ends that collided do not collide again.
    pub(crate) fn retry_later(&mut self, ctx: &mut Ctx<'_>, task: Task) {
        let base = ctx.config.temporary_failure_retry;
        let jitter = base.mul_f64(f64::from(ctx.rng.next_u32()) / f64::from(u32::MAX));
        self.queue_task(ctx, ctx.now + base + jitter, task);
    }

    /// Queues a request ahead of the others (DELETEs that complete a rekey).
    pub(crate) fn queue_task_first(&mut self, ctx: &mut Ctx<'_>, task: Task) {
        if !self.queue.iter().any(|(_, t)| *t == task) {
            self.queue.push_front((ctx.now, task));
        }
        self.kick(ctx);
    }

    /// Queues a request ahead of the others without starting it (an IKE SA that is not yet
    /// registered with the endpoint).
    pub(crate) fn queue_first(&mut self, ctx: &Ctx<'_>, task: Task) {
        self.queue.push_front((ctx.now, task));
    }

    /// Starts the next queued request if the window is free. A replaced IKE SA only sends
    /// its DELETE.
    pub(crate) fn kick(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(self.state, State::Rekeyed) && self.pending.is_none() {
            if let Some(pos) = self.queue.iter().position(|(_, t)| *t == Task::DeleteIke) {
                self.queue.remove(pos);
                super::info::start_delete_ike(self, ctx);
            }
            return;
        }
        while self.pending.is_none() && self.is_established() {
            let Some(pos) = self.queue.iter().position(|(t, _)| *t <= ctx.now) else {
                return;
            };
            let Some((_, task)) = self.queue.remove(pos) else {
                return;
            };
            let quiet_until = self.last_child_answer.map(|t| t + ANSWER_QUIET);
            if let Some(t) = quiet_until.filter(|&t| task == Task::RekeyIke && t > ctx.now) {
                self.queue.push_back((t, task));
                continue;
            }
            self.start(ctx, task);
        }
    }

    fn start(&mut self, ctx: &mut Ctx<'_>, task: Task) {
        match task {
            Task::CreateChild(id) => super::child::start_create(self, ctx, id, None),
            Task::RekeyChild(id) => super::child::start_rekey(self, ctx, id),
            Task::RekeyIke => super::ike_rekey::start(self, ctx),
            Task::DeleteChild(spis) => super::info::start_delete_child(self, ctx, spis),
            Task::DeleteIke => super::info::start_delete_ike(self, ctx),
            Task::Liveness => self.send_request(
                ctx,
                ExchangeType::INFORMATIONAL,
                Vec::new(),
                InFlight::Liveness,
            ),
        }
    }

    fn require_established(&self) -> Result<(), CommandError> {
        if self.is_established() {
            Ok(())
        } else {
            Err(CommandError::NotEstablished(self.id))
        }
    }

    pub(crate) fn queue_rekey_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        child: ChildId,
    ) -> Result<(), CommandError> {
        self.require_established()?;
        self.queue_task(ctx, ctx.now, Task::RekeyChild(child));
        Ok(())
    }

    pub(crate) fn queue_create_child(
        &mut self,
        ctx: &mut Ctx<'_>,
    ) -> Result<ChildId, CommandError> {
        self.require_established()?;
        let id = ctx.child_id();
        self.queue_task(ctx, ctx.now, Task::CreateChild(id));
        Ok(id)
    }

    pub(crate) fn queue_rekey_ike(&mut self, ctx: &mut Ctx<'_>) -> Result<(), CommandError> {
        self.require_established()?;
        self.queue_task(ctx, ctx.now, Task::RekeyIke);
        Ok(())
    }

    pub(crate) fn queue_delete_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        child: ChildId,
    ) -> Result<(), CommandError> {
        self.require_established()?;
        let spis: Vec<u32> = self
            .children
            .iter()
            .filter(|c| c.id == child && !c.deleting)
            .map(|c| c.spi_in)
            .collect();
        if !spis.is_empty() {
            self.queue_task(ctx, ctx.now, Task::DeleteChild(spis));
        }
        Ok(())
    }

    pub(crate) fn queue_delete_ike(&mut self, ctx: &mut Ctx<'_>) -> Result<(), CommandError> {
        match self.state {
            State::Established | State::Rekeyed => {
                self.queue_task_first(ctx, Task::DeleteIke);
                Ok(())
            }
            _ => {
                // Not yet established: give up at once.
                self.discard(DeleteReason::Local, ctx.out, ctx.spis);
                Ok(())
            }
        }
    }

    pub(crate) fn queue_liveness(&mut self, ctx: &mut Ctx<'_>) -> Result<(), CommandError> {
        self.require_established()?;
        self.queue_task(ctx, ctx.now, Task::Liveness);
        Ok(())
    }

    /// The peer is dead: a request went unanswered through the retransmission schedule, or
    /// the caller's DPD timeout ran out first. Its CHILD_SAs leave the data plane.
    pub(crate) fn declare_dead(&mut self, ctx: &mut Ctx<'_>) {
        ctx.out.event(Event::PeerDead {
            ike: self.id,
            remote: self.remote,
        });
        self.discard(DeleteReason::PeerDead, ctx.out, ctx.spis);
    }

    pub(crate) fn inbound_traffic(&mut self, ctx: &mut Ctx<'_>, spi: u32) {
        super::child::on_inbound_traffic(self, ctx, spi);
    }

    /// Removes every CHILD_SA from the data plane and forgets the IKE SA.
    pub(crate) fn discard(
        &mut self,
        reason: DeleteReason,
        out: &mut Outputs,
        spis: &mut dyn SpiAllocator,
    ) {
        super::child::discard_all(self, reason, out, spis);
        if !matches!(
            self.state,
            State::HalfOpen(_) | State::InitSent(_) | State::Gone
        ) || reason != DeleteReason::HalfOpenTimeout
        {
            out.event(Event::IkeDeleted {
                ike: self.id,
                reason,
            });
        }
        self.state = State::Gone;
        self.pending = None;
        self.queue.clear();
    }

    /// Handles a datagram for this IKE SA (the marker already stripped).
    pub(crate) fn handle_datagram(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        header: &Header,
    ) {
        if header.is_response() {
            self.handle_response(ctx, local, remote, data, header);
        } else {
            self.handle_request(ctx, local, remote, data, header);
        }
        self.kick(ctx);
    }

    /// Opens an encrypted message (reassembling fragments). `Err(Some(e))`: it is authentic
    /// but malformed inside, the peer's own error, answered with `e`'s notify when it is a
    /// request (§2.21.2); `Err(None)`: drop it (forged, corrupted or incomplete).
    fn decrypt(
        &mut self,
        ctx: &mut Ctx<'_>,
        data: &[u8],
        header: &Header,
        response: bool,
    ) -> Result<Message, Option<ParseError>> {
        let Some(keys) = self.keys.as_ref() else {
            return Err(None);
        };
        let result = if header.next_payload == PayloadType::SKF {
            let r = if response {
                &mut self.reasm_responses
            } else {
                &mut self.reasm_requests
            };
            match r.add(data, &keys.enc_in) {
                Ok(Some(m)) => Ok(m),
                Ok(None) => return Err(None),
                Err(e) => Err(e),
            }
        } else {
            protect::open(data, &keys.enc_in)
        };
        if result.is_ok() {
            self.last_heard = Some(ctx.now);
        }
        result.map_err(|e| {
            let s = &mut ctx.out.stats;
            match e {
                ProtectError::IntegrityCheckFailed => s.integrity_failed += 1,
                ProtectError::Inner(p) | ProtectError::Parse(p)
                    if p.notify() == NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD =>
                {
                    s.unsupported_critical += 1
                }
                _ => s.invalid_syntax += 1,
            }
            match e {
                ProtectError::Inner(p) => Some(p),
                _ => None,
            }
        })
    }

    fn handle_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        header: &Header,
    ) {
        let Some(p) = self.pending.as_ref().filter(|p| p.mid == header.message_id) else {
            ctx.out.stats.out_of_window += 1;
            return;
        };
        if header.exchange == ExchangeType::IKE_SA_INIT {
            if matches!(p.task, InFlight::SaInit) {
                super::init::on_response(self, ctx, local, remote, data, header);
            } else {
                ctx.out.stats.out_of_window += 1;
            }
            return;
        }
        let Ok(msg) = self.decrypt(ctx, data, header, true) else {
            return;
        };
        let Some(p) = self.pending.take() else { return };
        match p.task {
            InFlight::SaInit => {
                // An encrypted response to IKE_SA_INIT: nonsense; keep waiting.
                ctx.out.stats.invalid_syntax += 1;
                self.pending = Some(p);
            }
            InFlight::Auth => super::auth::on_response(self, ctx, &msg),
            InFlight::Child(req) => super::child::on_response(self, ctx, req, &msg),
            InFlight::IkeRekey(req) => super::ike_rekey::on_response(self, ctx, req, &msg),
            InFlight::DeleteChild(spis) => {
                super::info::on_delete_child_response(self, ctx, &spis, &msg)
            }
            InFlight::DeleteIke => self.discard(DeleteReason::Local, ctx.out, ctx.spis),
            InFlight::Liveness => {}
        }
    }

    fn handle_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
        header: &Header,
    ) {
        let mid = header.message_id;
        if let Some((cached_mid, _)) = &self.cached
            && *cached_mid == mid
        {
            // A retransmitted request: the same response again (§2.1). Of a fragmented
            // request only the first fragment triggers it (RFC 7383 §2.6.1).
            if header.next_payload != PayloadType::SKF || first_fragment(data) {
                ctx.out.stats.retransmitted_requests += 1;
                self.resend_cached_response(ctx.out);
            }
            return;
        }
        if mid != self.peer_next_mid {
            ctx.out.stats.out_of_window += 1;
            return;
        }
        if header.exchange == ExchangeType::IKE_SA_INIT {
            ctx.out.stats.out_of_window += 1;
            return;
        }
        let msg = match self.decrypt(ctx, data, header, false) {
            Ok(m) => m,
            Err(None) => return,
            Err(Some(e)) => {
                self.peer_next_mid = mid.wrapping_add(1);
                let n = Notify::new(e.notify(), e.notify_data());
                self.respond(ctx, header.exchange, mid, vec![Payload::Notify(n)]);
                return;
            }
        };
        // Authenticated: a NAT may have moved the peer (§2.23); the response goes where the
        // request came from.
        if local.port() == crate::NATT_PORT {
            self.natt = true;
        }
        if self.natt && (self.remote != remote || self.local != local) {
            if self.remote != remote && matches!(self.state, State::Established) {
                ctx.out.event(Event::PeerMoved {
                    ike: self.id,
                    remote,
                });
            }
            self.remote = remote;
            self.local = local;
        }
        if let Err(e) = crate::msgs::rules::check(header.exchange, false, &msg.payloads) {
            ctx.out.stats.invalid_syntax += 1;
            if !matches!(self.state, State::HalfOpen(_)) {
                self.peer_next_mid = mid.wrapping_add(1);
                let n = Notify::new(e.notify(), e.notify_data());
                self.respond(ctx, header.exchange, mid, vec![Payload::Notify(n)]);
            }
            return;
        }
        self.peer_next_mid = mid.wrapping_add(1);
        super::child::on_peer_request(self, ctx);
        let response = match (&self.state, header.exchange) {
            (State::HalfOpen(_), ExchangeType::IKE_AUTH) => super::auth::respond(self, ctx, &msg),
            (State::HalfOpen(_), _) => {
                ctx.out.stats.invalid_syntax += 1;
                return;
            }
            (_, ExchangeType::CREATE_CHILD_SA) => super::child::dispatch_request(self, ctx, &msg),
            (_, ExchangeType::INFORMATIONAL) => super::info::respond(self, ctx, &msg),
            _ => vec![Payload::Notify(Notify::new(
                NotifyType::INVALID_SYNTAX,
                Vec::new(),
            ))],
        };
        self.respond(ctx, header.exchange, mid, response);
        if self.closing {
            // Deleted while our rekey of it was outstanding and after we answered the peer's:
            // the peer's rekey won, its new IKE SA takes the CHILD_SAs (§2.8.2, §2.25.2).
            if let Some(InFlight::IkeRekey(req)) = self.pending.as_ref().map(|p| &p.task)
                && let Some(winner) = super::ike_rekey::collided_with(req)
            {
                ctx.adopt_by = Some(winner);
                ctx.out.event(Event::IkeRekeyed {
                    old: self.id,
                    new: winner,
                });
            }
            if ctx.adopt_by.is_some() {
                // The endpoint moves the CHILD_SAs once this call returns.
                ctx.out.event(Event::IkeDeleted {
                    ike: self.id,
                    reason: DeleteReason::Rekeyed,
                });
                self.state = State::Gone;
                self.pending = None;
                return;
            }
            let reason = if matches!(self.state, State::Rekeyed) {
                DeleteReason::Rekeyed
            } else {
                DeleteReason::Peer
            };
            self.discard(reason, ctx.out, ctx.spis);
            return;
        }
        if let State::HalfOpen(_) = self.state {
            // IKE_AUTH failed: the response is sent, the SA goes.
            self.discard(DeleteReason::Failed, ctx.out, ctx.spis);
        }
    }

    /// Retransmits, gives up, expires and starts delayed requests.
    pub(crate) fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if let Some(p) = self.pending.as_mut()
            && p.deadline <= now
        {
            if p.sent >= ctx.config.retransmit.tries {
                self.declare_dead(ctx);
                return;
            }
            p.sent += 1;
            p.deadline = now + ctx.config.retransmit.wait_after(p.sent);
            ctx.out.stats.retransmits += 1;
            for d in p.datagrams.clone() {
                ctx.out.send(self.local, self.remote, d);
            }
        }
        if self.expires.is_some_and(|t| t <= now) {
            let reason = match self.state {
                State::HalfOpen(_) => {
                    ctx.out.stats.half_open_expired += 1;
                    DeleteReason::HalfOpenTimeout
                }
                State::Rekeyed => DeleteReason::Rekeyed,
                // A new IKE SA that lost a rekey collision and was not deleted by the peer.
                _ => DeleteReason::Redundant,
            };
            self.discard(reason, ctx.out, ctx.spis);
            return;
        }
        super::child::handle_timeout(self, ctx);
        self.kick(ctx);
    }

    /// Moves CHILD_SAs and queued CHILD_SA requests out (the IKE SA was rekeyed).
    pub(crate) fn take_children_and_tasks(&mut self) -> (Vec<ChildSa>, Vec<(Instant, Task)>) {
        let tasks = self
            .queue
            .drain(..)
            .filter(|(_, t)| !matches!(t, Task::DeleteIke | Task::RekeyIke))
            .collect();
        (std::mem::take(&mut self.children), tasks)
    }

    /// Carries out DELETEs of CHILD_SAs that arrived before the CHILD_SAs did.
    pub(crate) fn apply_deferred_deletes(
        &mut self,
        out: &mut Outputs,
        spis: &mut dyn SpiAllocator,
    ) {
        for spi in std::mem::take(&mut self.deferred_deletes) {
            if let Some(i) = self.children.iter().position(|c| c.spi_out == spi) {
                super::child::remove_child(self, out, spis, i, DeleteReason::Peer);
            }
        }
    }

    /// Takes over queued requests from the IKE SA this one replaces.
    pub(crate) fn adopt_tasks(&mut self, tasks: Vec<(Instant, Task)>) {
        self.queue.extend(tasks);
    }
}

fn first_fragment(data: &[u8]) -> bool {
    // The SKF payload follows the 28-octet header: 4-octet generic header, then the
    // fragment number (RFC 7383 §2.5).
    data.get(Header::LEN + 4..Header::LEN + 6) == Some(&[0, 1][..])
}
