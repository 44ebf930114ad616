//! CHILD_SAs (RFC 7296 §1.3.1, §1.3.3, §2.8, §2.9, §2.17): creation and rekeying for both
//! roles, make-before-break installation, rekey collisions (§2.8.1, §2.25.1), and what a
//! deleted SA does to its tunnel.
//!
//! The rules, for the tunnel slot ([`ChildId`]) that all CHILD_SAs of one lineage share:
//! * the **initiator** of an exchange installs inbound, outbound and switches when the response
//!   arrives (the responder installed its inbound before it answered);
//! * the **responder** installs inbound and a standby outbound before it answers, and switches
//!   when traffic arrives on the new inbound SA, when the initiator deletes the SA it replaced,
//!   or — for a CHILD_SA that replaces nothing — when the initiator's next request shows it
//!   received the response (or after `initial_child_activation`);
//! * a rekey of an SA that is already replaced, deleted or rekeyed by the peer gets
//!   TEMPORARY_FAILURE; of an unknown SA, CHILD_SA_NOT_FOUND (§2.25.1);
//! * when both ends rekey the same SA, the SA created with the lowest of the four nonces is
//!   redundant and deleted by its creator (§2.8.1); the winner deletes the replaced SA;
//! * a successful rekey of an SA that went away meanwhile produces a redundant SA, deleted at
//!   once (§2.25.1);
//! * there is never more than one active outbound SA per tunnel, and an SA that is active is
//!   switched away from before it is removed, when a successor exists.

use std::time::Instant;

use super::ike_sa::{IkeSa, InFlight, Task};
use super::output::Outputs;
use super::{Action, ChildId, ChildSaParams, Ctx, DeleteReason, Event, IkeSaId, SpiAllocator};
use crate::config::PeerConfig;
use crate::crypto::dh::{DhAlg, DhPrivate};
use crate::crypto::keys::ChildSaKeys;
use crate::msgs::{
    DhGroup, ExchangeType, KePayload, Message, Nonce, Notify, NotifyType, Payload, ProtocolId,
    TrafficSelector, TrafficSelectors,
};
use crate::proposal::{self, ChosenEsp, Cipher};
use crate::ts;

/// The peer rekeyed this SA and we answered (§1.3.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRekey {
    /// Our inbound SPI of the SA the peer's exchange created.
    pub new_spi_in: u32,
    /// The nonces of the peer's exchange (its Ni, our Nr).
    pub nonces: [Vec<u8>; 2],
    /// Our own rekey of this SA was outstanding (a collision, §2.8.1).
    pub collided: bool,
}

/// One CHILD_SA pair as the IKE side sees it. Keys are not kept: they went to the data plane.
#[derive(Clone, Debug)]
pub struct ChildSa {
    /// The IKE SA it belongs to.
    pub ike: IkeSaId,
    /// Its tunnel slot.
    pub id: ChildId,
    /// Our inbound SPI.
    pub spi_in: u32,
    /// The peer's inbound SPI (our outbound).
    pub spi_out: u32,
    /// Cipher.
    pub cipher: Cipher,
    /// Extended sequence numbers.
    pub esn: bool,
    /// PFS group of the exchange that created it (rekeys use it again).
    pub pfs: Option<DhAlg>,
    /// Our side's selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's side.
    pub remote_ts: Vec<TrafficSelector>,
    /// The outbound SA is in the data plane (a redundant SA has only its inbound one).
    pub outbound_installed: bool,
    /// The tunnel sends on this SA.
    pub outbound_active: bool,
    /// Our rekey of it is outstanding.
    pub rekeying: bool,
    /// The peer rekeyed it.
    pub peer_rekey: Option<PeerRekey>,
    /// A successor is established; it only waits for its DELETE.
    pub replaced: bool,
    /// Not to be used: it lost a collision, or replaced an SA that went away.
    pub redundant: bool,
    /// The peer is expected to delete it.
    pub peer_deletes: bool,
    /// Our DELETE of it is outstanding.
    pub deleting: bool,
    /// A new CHILD_SA we answered: activate at this time at the latest.
    pub activate_at: Option<Instant>,
    /// Delete it ourselves if the peer has not by then.
    pub delete_by: Option<Instant>,
    /// The peer rekeyed the SA this one replaces again before using this one: deleted at
    /// `delete_by` unless traffic arrives on it first.
    pub superseded: bool,
}

impl ChildSa {
    pub(crate) fn deadline(&self) -> Option<Instant> {
        [self.activate_at, self.delete_by]
            .into_iter()
            .flatten()
            .min()
    }

    /// Neither replaced, redundant nor being deleted: the SA its tunnel should use.
    pub fn is_current(&self) -> bool {
        !self.replaced && !self.redundant && !self.deleting && !self.peer_deletes
    }
}

/// A CREATE_CHILD_SA request of ours in flight.
pub(crate) struct ChildRequest {
    id: ChildId,
    spi_in: u32,
    ni: Vec<u8>,
    dh: Option<DhPrivate>,
    /// Our inbound SPI of the SA being rekeyed.
    rekey_of: Option<u32>,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
    restarts: u8,
    /// A CHILD_SA the peer created for the same selectors while this create was outstanding
    /// (our inbound SPI of it, and the nonces of its exchange).
    create_collision: Option<(u32, [Vec<u8>; 2])>,
}

fn cfg<'a>(sa: &IkeSa, ctx: &Ctx<'a>) -> Option<&'a PeerConfig> {
    sa.peer.and_then(|p| ctx.peers.get(p))
}

fn notify(ty: NotifyType) -> Vec<Payload> {
    vec![Payload::Notify(Notify::new(ty, Vec::new()))]
}

/// The SA with the lowest nonce of the four loses (§2.8.1): true if it is ours, i.e. the
/// lowest nonce is one of our exchange's.
fn we_lose(ours: [&[u8]; 2], theirs: [&[u8]; 2]) -> bool {
    let lowest_ours = ours.iter().min().copied().unwrap_or_default();
    let lowest_theirs = theirs.iter().min().copied().unwrap_or_default();
    lowest_ours < lowest_theirs
}

fn params(
    sa: &IkeSa,
    c: &ChildSa,
    spi: u32,
    keys: crate::secret::Secret,
    report: bool,
) -> ChildSaParams {
    ChildSaParams {
        ike: sa.id,
        child: c.id,
        spi,
        keys,
        cipher: c.cipher,
        esn: c.esn,
        local_ts: c.local_ts.clone(),
        remote_ts: c.remote_ts.clone(),
        local: sa.local,
        remote: sa.remote,
        udp_encap: sa.natt,
        report_first_packet: report,
    }
}

/// How a new CHILD_SA enters the data plane.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Install {
    /// We initiated the exchange: inbound, outbound, switch.
    Active,
    /// We answered: inbound and a standby outbound.
    Standby,
    /// Redundant: inbound only (the peer might still send on it), deleted at once.
    InboundOnly,
}

fn install(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    mut c: ChildSa,
    keys: ChildSaKeys,
    we_initiated: bool,
    how: Install,
) {
    let (k_in, k_out) = if we_initiated {
        (
            keys.responder_to_initiator.clone(),
            keys.initiator_to_responder.clone(),
        )
    } else {
        (
            keys.initiator_to_responder.clone(),
            keys.responder_to_initiator.clone(),
        )
    };
    ctx.out.action(Action::InstallInbound(params(
        sa,
        &c,
        c.spi_in,
        k_in,
        how == Install::Standby,
    )));
    match how {
        Install::Active => {
            ctx.out.action(Action::InstallOutbound(params(
                sa, &c, c.spi_out, k_out, false,
            )));
            c.outbound_installed = true;
            switch_to(sa, ctx.out, &mut c);
        }
        Install::Standby => {
            ctx.out.action(Action::InstallOutbound(params(
                sa, &c, c.spi_out, k_out, false,
            )));
            c.outbound_installed = true;
        }
        Install::InboundOnly => c.redundant = true,
    }
    sa.children.push(c);
}

/// Makes `c` the tunnel's active outbound SA.
fn switch_to(sa: &mut IkeSa, out: &mut Outputs, c: &mut ChildSa) {
    for o in sa.children.iter_mut().filter(|o| o.id == c.id) {
        o.outbound_active = false;
    }
    c.outbound_active = true;
    c.activate_at = None;
    if c.superseded {
        c.superseded = false;
        c.delete_by = None;
    }
    out.action(Action::SwitchOutbound {
        child: c.id,
        spi: c.spi_out,
    });
}

/// Makes child `idx` active. With `unused_until`, other standby SAs of the same tunnel that
/// are still current (a peer that rekeyed the same SA twice) are deleted at that time unless
/// traffic arrives on them first.
fn activate(sa: &mut IkeSa, out: &mut Outputs, idx: usize, unused_until: Option<Instant>) {
    let mut c = sa.children.remove(idx);
    switch_to(sa, out, &mut c);
    if let Some(t) = unused_until {
        for o in sa
            .children
            .iter_mut()
            .filter(|o| o.id == c.id && o.is_current() && o.outbound_installed)
        {
            o.superseded = true;
            o.delete_by = Some(t);
        }
    }
    sa.children.insert(idx, c);
}

fn child_base(
    sa: &IkeSa,
    id: ChildId,
    spi_in: u32,
    chosen: &ChosenEsp,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
) -> ChildSa {
    ChildSa {
        ike: sa.id,
        id,
        spi_in,
        spi_out: chosen.peer_spi,
        cipher: chosen.cipher,
        esn: chosen.esn,
        pfs: chosen.dh,
        local_ts,
        remote_ts,
        outbound_installed: false,
        outbound_active: false,
        rekeying: false,
        peer_rekey: None,
        replaced: false,
        redundant: false,
        peer_deletes: false,
        deleting: false,
        activate_at: None,
        delete_by: None,
        superseded: false,
    }
}

/// The first CHILD_SA, from the IKE_AUTH response (initiator).
pub(crate) fn complete_in_auth(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    msg: &Message,
    id: ChildId,
    spi_in: u32,
    ni: &[u8],
    nr: &[u8],
) {
    let Some(cfg) = cfg(sa, ctx) else { return };
    let fail = |sa: &IkeSa, ctx: &mut Ctx<'_>, notify: NotifyType, by_peer: bool| {
        ctx.spis.release(spi_in);
        ctx.out.event(Event::ExchangeFailed {
            ike: sa.id,
            notify,
            by_peer,
        });
    };
    if let Some(e) = msg.error_notify() {
        count_error(ctx, e.ty);
        return fail(sa, ctx, e.ty, true);
    }
    let accepted = (|| {
        let chosen = proposal::accept_esp_answer(&cfg.esp_proposals, msg.first_sa()?, true, None)?;
        let (tsi, tsr) = (msg.ts_i()?.0.clone(), msg.ts_r()?.0.clone());
        (ts::is_subset(&tsi, &cfg.local_ts) && ts::is_subset(&tsr, &cfg.remote_ts))
            .then_some((chosen, tsi, tsr))
    })();
    let Some((chosen, tsi, tsr)) = accepted else {
        return fail(sa, ctx, NotifyType::TS_UNACCEPTABLE, false);
    };
    let Some(k) = sa.keys.as_ref() else { return };
    let Ok(keys) = ChildSaKeys::derive(
        k.prf,
        k.sk_d.expose(),
        None,
        ni,
        nr,
        chosen.cipher.keymat_len(),
    ) else {
        return;
    };
    let c = child_base(sa, id, spi_in, &chosen, tsi, tsr);
    ctx.out.event(Event::ChildEstablished {
        ike: sa.id,
        child: id,
        spis: (spi_in, chosen.peer_spi),
    });
    install(sa, ctx, c, keys, true, Install::Active);
}

fn count_error(ctx: &mut Ctx<'_>, ty: NotifyType) {
    let s = &mut ctx.out.stats;
    match ty {
        NotifyType::NO_PROPOSAL_CHOSEN => s.no_proposal_chosen += 1,
        NotifyType::TS_UNACCEPTABLE => s.ts_unacceptable += 1,
        NotifyType::TEMPORARY_FAILURE => s.temporary_failure_received += 1,
        NotifyType::AUTHENTICATION_FAILED => s.authentication_failed += 1,
        _ => {}
    }
}

/// What the responder chose for a CHILD_SA request, or the error to answer with.
struct Accepted {
    chosen: ChosenEsp,
    ni: Vec<u8>,
    tsi: Vec<TrafficSelector>,
    tsr: Vec<TrafficSelector>,
    peer_ke: Option<Vec<u8>>,
}

fn accept_request(
    sa: &IkeSa,
    ctx: &mut Ctx<'_>,
    cfg: &PeerConfig,
    msg: &Message,
    in_ike_auth: bool,
) -> Result<Accepted, Vec<Payload>> {
    let offered = msg
        .first_sa()
        .ok_or_else(|| notify(NotifyType::INVALID_SYNTAX))?;
    let ke = if in_ike_auth { None } else { msg.ke() };
    let group = ke.map(|k| DhAlg::from_id(k.group.0).ok_or(()));
    let chosen = match group {
        Some(Ok(g)) => proposal::select_esp(&cfg.esp_proposals, offered, in_ike_auth, Some(g)),
        Some(Err(())) => None,
        None => proposal::select_esp(&cfg.esp_proposals, offered, in_ike_auth, None),
    };
    let Some(chosen) = chosen else {
        // A KE of a group we would not take, but a proposal we would take with another one:
        // ask for that group (§1.3).
        if ke.is_some()
            && let Some(g) = cfg
                .esp_proposals
                .iter()
                .flat_map(|p| p.dh.iter())
                .find(|g| {
                    proposal::select_esp(&cfg.esp_proposals, offered, false, Some(**g)).is_some()
                })
        {
            ctx.out.stats.invalid_ke_sent += 1;
            return Err(vec![Payload::Notify(Notify::new(
                NotifyType::INVALID_KE_PAYLOAD,
                g.id().to_be_bytes().to_vec(),
            ))]);
        }
        ctx.out.no_proposal(
            Some(sa.id),
            sa.remote,
            &cfg.esp_proposals,
            proposal::describe(offered),
        );
        return Err(notify(NotifyType::NO_PROPOSAL_CHOSEN));
    };
    let ni = if in_ike_auth {
        Vec::new()
    } else {
        msg.nonce()
            .ok_or_else(|| notify(NotifyType::INVALID_SYNTAX))?
            .0
            .clone()
    };
    let (Some(tsi_p), Some(tsr_p)) = (msg.ts_i(), msg.ts_r()) else {
        return Err(notify(NotifyType::INVALID_SYNTAX));
    };
    // The initiator's TSi is its side, our remote side (§2.9).
    let tsi = ts::narrow(&tsi_p.0, &cfg.remote_ts);
    let tsr = ts::narrow(&tsr_p.0, &cfg.local_ts);
    if tsi.is_empty() || tsr.is_empty() {
        ctx.out.stats.ts_unacceptable += 1;
        ctx.out.event(Event::ExchangeFailed {
            ike: sa.id,
            notify: NotifyType::TS_UNACCEPTABLE,
            by_peer: false,
        });
        return Err(notify(NotifyType::TS_UNACCEPTABLE));
    }
    Ok(Accepted {
        chosen,
        ni,
        tsi,
        tsr,
        peer_ke: ke.map(|k| k.data.clone()),
    })
}

/// The first CHILD_SA as responder of IKE_AUTH: the SA, TSi, TSr payloads of our answer, or
/// the error notify (the IKE SA is established either way, §1.2).
pub(crate) fn respond_in_auth(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    msg: &Message,
    ni: &[u8],
    nr: &[u8],
) -> Vec<Payload> {
    let Some(cfg) = cfg(sa, ctx) else {
        return Vec::new();
    };
    let a = match accept_request(sa, ctx, cfg, msg, true) {
        Ok(a) => a,
        Err(p) => return p,
    };
    let Some(spi_in) = ctx.spis.allocate(sa.peer, ctx.rng) else {
        return notify(NotifyType::NO_ADDITIONAL_SAS);
    };
    let Some(k) = sa.keys.as_ref() else {
        return Vec::new();
    };
    let Ok(keys) = ChildSaKeys::derive(
        k.prf,
        k.sk_d.expose(),
        None,
        ni,
        nr,
        a.chosen.cipher.keymat_len(),
    ) else {
        return notify(NotifyType::NO_PROPOSAL_CHOSEN);
    };
    let id = ctx.child_id();
    let mut c = child_base(sa, id, spi_in, &a.chosen, a.tsr.clone(), a.tsi.clone());
    c.activate_at = Some(ctx.now + ctx.config.initial_child_activation);
    ctx.out.event(Event::ChildEstablished {
        ike: sa.id,
        child: id,
        spis: (spi_in, a.chosen.peer_spi),
    });
    install(sa, ctx, c, keys, false, Install::Standby);
    vec![
        Payload::Sa(proposal::esp_answer(&a.chosen, spi_in)),
        Payload::TsI(TrafficSelectors(a.tsi)),
        Payload::TsR(TrafficSelectors(a.tsr)),
    ]
}

/// Sends CREATE_CHILD_SA for tunnel `id`, as a rekey of our inbound SA `rekey_of` or as a new
/// CHILD_SA with the peer's configured selectors.
pub(crate) fn start_create(sa: &mut IkeSa, ctx: &mut Ctx<'_>, id: ChildId, rekey_of: Option<u32>) {
    let Some(cfg) = cfg(sa, ctx) else { return };
    let old = rekey_of.and_then(|s| sa.children.iter().find(|c| c.spi_in == s));
    let (local_ts, remote_ts) = match old {
        Some(o) => (o.local_ts.clone(), o.remote_ts.clone()),
        None => (cfg.local_ts.clone(), cfg.remote_ts.clone()),
    };
    // PFS with the group the SA was rekeyed with before, else the configured one (the
    // first CHILD_SA has none: IKE_AUTH carries no KE).
    let group = old.and_then(|o| o.pfs).or_else(|| {
        cfg.esp_proposals
            .first()
            .and_then(|p| p.dh.first().copied())
    });
    let Some(spi_in) = ctx.spis.allocate(sa.peer, ctx.rng) else {
        ctx.out.event(Event::ExchangeFailed {
            ike: sa.id,
            notify: NotifyType::NO_ADDITIONAL_SAS,
            by_peer: false,
        });
        return;
    };
    let dh = group.and_then(|g| g.generate(ctx.rng).ok());
    let req = ChildRequest {
        id,
        spi_in,
        ni: super::init::nonce(ctx),
        dh: None,
        rekey_of,
        local_ts,
        remote_ts,
        restarts: 0,
        create_collision: None,
    };
    if let Some(s) = rekey_of
        && let Some(o) = sa.children.iter_mut().find(|c| c.spi_in == s)
    {
        o.rekeying = true;
    }
    send_child_request(sa, ctx, cfg, req, dh);
}

fn send_child_request(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    cfg: &PeerConfig,
    mut req: ChildRequest,
    dh: Option<(DhPrivate, Vec<u8>)>,
) {
    let mut payloads = Vec::new();
    if let Some(old) = req.rekey_of {
        // REKEY_SA names the SA being rekeyed by the SPI we expect inbound (§1.3.3).
        payloads.push(Payload::Notify(Notify::for_child(
            NotifyType::REKEY_SA,
            old,
            Vec::new(),
        )));
    }
    payloads.push(Payload::Sa(proposal::esp_sa_payload(
        &cfg.esp_proposals,
        req.spi_in,
        true,
    )));
    payloads.push(Payload::Nonce(Nonce(req.ni.clone())));
    if let Some((d, public)) = dh {
        payloads.push(Payload::Ke(KePayload {
            group: DhGroup(d.alg().id()),
            data: public,
        }));
        req.dh = Some(d);
    }
    payloads.push(Payload::TsI(TrafficSelectors(req.local_ts.clone())));
    payloads.push(Payload::TsR(TrafficSelectors(req.remote_ts.clone())));
    sa.send_request(
        ctx,
        ExchangeType::CREATE_CHILD_SA,
        payloads,
        InFlight::Child(req),
    );
}

/// Rekeys the SA tunnel `id` sends on. Nothing to do when there is none, or when it is
/// already being replaced (a standby successor is not rekeyed before it is in use: the peer
/// may not even have our response that created it).
pub(crate) fn start_rekey(sa: &mut IkeSa, ctx: &mut Ctx<'_>, id: ChildId) {
    let candidate = sa
        .children
        .iter()
        .find(|c| {
            c.id == id
                && c.outbound_active
                && c.is_current()
                && !c.rekeying
                && c.peer_rekey.is_none()
        })
        .map(|c| c.spi_in);
    if let Some(spi) = candidate {
        start_create(sa, ctx, id, Some(spi));
    }
}

/// When to give up waiting for the peer's DELETE of an SA and delete it ourselves: not before
/// the peer, if it is still retransmitting the request that led to it, has given up (our own
/// schedule stands in for the peer's), plus `delete_timeout`. Deleting earlier could take the
/// SA from a peer that never got our answer and still relies on it (found by the model check).
fn peer_delete_deadline(ctx: &Ctx<'_>) -> Instant {
    ctx.now + ctx.config.retransmit.give_up_after() + ctx.config.delete_timeout
}

/// The answer to our CREATE_CHILD_SA.
pub(crate) fn on_response(sa: &mut IkeSa, ctx: &mut Ctx<'_>, mut req: ChildRequest, msg: &Message) {
    let Some(cfg) = cfg(sa, ctx) else { return };
    let old_idx = req
        .rekey_of
        .and_then(|s| sa.children.iter().position(|c| c.spi_in == s));
    if let Some(i) = old_idx {
        sa.children[i].rekeying = false;
    }
    if let Some(e) = msg.error_notify() {
        let ty = e.ty;
        count_error(ctx, ty);
        if ty == NotifyType::INVALID_KE_PAYLOAD {
            let wanted = proposal::requested_group(
                &e.data,
                cfg.esp_proposals.iter().flat_map(|p| p.dh.iter()),
            );
            if let Some(g) = wanted.filter(|_| req.restarts < 3)
                && let Ok(dh) = g.generate(ctx.rng)
            {
                req.restarts += 1;
                if let Some(i) = old_idx {
                    sa.children[i].rekeying = true;
                }
                return send_child_request(sa, ctx, cfg, req, Some(dh));
            }
        }
        ctx.spis.release(req.spi_in);
        ctx.out.event(Event::ExchangeFailed {
            ike: sa.id,
            notify: ty,
            by_peer: true,
        });
        if let Some(i) = old_idx
            && sa.children[i].peer_rekey.is_some()
        {
            // We answered the peer's rekey of this SA: its SA is the successor, and the peer
            // deletes the old one (§2.25.1).
            let o = &mut sa.children[i];
            o.replaced = true;
            o.peer_deletes = true;
            o.delete_by = Some(peer_delete_deadline(ctx));
            return;
        }
        match (ty, old_idx) {
            (NotifyType::TEMPORARY_FAILURE, Some(i)) => {
                // Retry unless the peer's own rekey is replacing the SA (§2.25.1).
                let o = &sa.children[i];
                if o.is_current() && o.peer_rekey.is_none() {
                    sa.retry_later(ctx, Task::RekeyChild(req.id));
                }
            }
            (NotifyType::TEMPORARY_FAILURE, None)
                if req.rekey_of.is_none() && !sa.children.iter().any(|c| c.id == req.id) =>
            {
                sa.retry_later(ctx, Task::CreateChild(req.id));
            }
            (NotifyType::CHILD_SA_NOT_FOUND, Some(i)) => {
                remove_child(sa, ctx.out, ctx.spis, i, DeleteReason::Peer)
            }
            _ => {}
        }
        return;
    }
    let Some(k) = sa.keys.as_ref() else { return };
    let accepted = (|| {
        let group = req.dh.as_ref().map(DhPrivate::alg);
        let chosen =
            proposal::accept_esp_answer(&cfg.esp_proposals, msg.first_sa()?, false, group)?;
        let nr = msg.nonce()?.0.clone();
        let (tsi, tsr) = (msg.ts_i()?.0.clone(), msg.ts_r()?.0.clone());
        if !(ts::is_subset(&tsi, &req.local_ts) && ts::is_subset(&tsr, &req.remote_ts)) {
            return None;
        }
        let g_ir = match (req.dh.take(), msg.ke()) {
            (Some(d), Some(ke)) if ke.group == DhGroup(d.alg().id()) => {
                Some(d.agree(&ke.data).ok()?)
            }
            (None, None) => None,
            _ => return None,
        };
        let keys = ChildSaKeys::derive(
            k.prf,
            k.sk_d.expose(),
            g_ir.as_ref().map(|s| s.expose()),
            &req.ni,
            &nr,
            chosen.cipher.keymat_len(),
        )
        .ok()?;
        Some((chosen, nr, tsi, tsr, keys))
    })();
    let Some((chosen, nr, tsi, tsr, keys)) = accepted else {
        // The peer created an SA we cannot use: it must go (we never install it).
        ctx.out.stats.invalid_syntax += 1;
        ctx.spis.release(req.spi_in);
        ctx.out.event(Event::ExchangeFailed {
            ike: sa.id,
            notify: NotifyType::INVALID_SYNTAX,
            by_peer: false,
        });
        return;
    };
    let new = child_base(sa, req.id, req.spi_in, &chosen, tsi, tsr);
    let ours: [&[u8]; 2] = [&req.ni, &nr];
    match (req.rekey_of, old_idx) {
        (None, _) => complete_create(sa, ctx, new, keys, ours, req.create_collision),
        // The SA went away meanwhile (the peer deleted it) and the tunnel has nothing else:
        // the peer's side of the new SA is its only one too, so it becomes the tunnel's SA.
        (Some(_), None) if !sa.children.iter().any(|c| c.id == req.id && c.is_current()) => {
            ctx.out.event(Event::ChildEstablished {
                ike: sa.id,
                child: new.id,
                spis: (new.spi_in, new.spi_out),
            });
            install(sa, ctx, new, keys, true, Install::Active);
        }
        (Some(_), None) => redundant(sa, ctx, new, keys),
        (Some(_), Some(i)) if !sa.children[i].is_current() => redundant(sa, ctx, new, keys),
        (Some(_), Some(i)) => {
            let old = (sa.children[i].spi_in, sa.children[i].spi_out);
            if let Some(pr) = sa.children[i].peer_rekey.clone() {
                let theirs: [&[u8]; 2] = [&pr.nonces[0], &pr.nonces[1]];
                sa.children[i].replaced = true;
                if we_lose(ours, theirs) {
                    // The peer's SA survives; the peer deletes the old one (§2.8.1).
                    sa.children[i].peer_deletes = true;
                    sa.children[i].delete_by = Some(peer_delete_deadline(ctx));
                    return redundant(sa, ctx, new, keys);
                }
                if let Some(y) = sa.children.iter_mut().find(|c| c.spi_in == pr.new_spi_in) {
                    y.redundant = true;
                    y.peer_deletes = true;
                    y.delete_by = Some(peer_delete_deadline(ctx));
                }
            }
            sa.children[i].replaced = true;
            let new_spis = (new.spi_in, new.spi_out);
            install(sa, ctx, new, keys, true, Install::Active);
            ctx.out.event(Event::ChildRekeyed {
                ike: sa.id,
                child: req.id,
                old,
                new: new_spis,
            });
            sa.queue_task_first(ctx, Task::DeleteChild(vec![old.0]));
        }
    }
}

fn redundant(sa: &mut IkeSa, ctx: &mut Ctx<'_>, new: ChildSa, keys: ChildSaKeys) {
    let spi = new.spi_in;
    install(sa, ctx, new, keys, true, Install::InboundOnly);
    sa.queue_task_first(ctx, Task::DeleteChild(vec![spi]));
}

fn complete_create(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    new: ChildSa,
    keys: ChildSaKeys,
    ours: [&[u8]; 2],
    collision: Option<(u32, [Vec<u8>; 2])>,
) {
    if let Some((their_spi, nonces)) = collision {
        let theirs: [&[u8]; 2] = [&nonces[0], &nonces[1]];
        if we_lose(ours, theirs) {
            return redundant(sa, ctx, new, keys);
        }
        if let Some(y) = sa.children.iter_mut().find(|c| c.spi_in == their_spi) {
            y.redundant = true;
            y.peer_deletes = true;
            y.activate_at = None;
            y.delete_by = Some(peer_delete_deadline(ctx));
        }
    }
    ctx.out.event(Event::ChildEstablished {
        ike: sa.id,
        child: new.id,
        spis: (new.spi_in, new.spi_out),
    });
    install(sa, ctx, new, keys, true, Install::Active);
}

/// A CREATE_CHILD_SA request from the peer: an IKE SA rekey, a CHILD_SA rekey or a new one.
pub(crate) fn dispatch_request(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) -> Vec<Payload> {
    let ike_rekey = msg
        .first_sa()
        .is_some_and(|s| s.proposals.iter().any(|p| p.protocol == ProtocolId::IKE));
    if !sa.is_established() || sa.awaiting_children {
        ctx.out.stats.temporary_failure_sent += 1;
        return notify(NotifyType::TEMPORARY_FAILURE);
    }
    if ike_rekey {
        return super::ike_rekey::respond(sa, ctx, msg);
    }
    if matches!(
        sa.pending.as_ref().map(|p| &p.task),
        Some(InFlight::IkeRekey(_))
    ) {
        // Our IKE SA rekey is outstanding: CHILD_SAs are about to move (§2.25.2).
        ctx.out.stats.temporary_failure_sent += 1;
        return notify(NotifyType::TEMPORARY_FAILURE);
    }
    respond_create(sa, ctx, msg)
}

fn respond_create(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) -> Vec<Payload> {
    let Some(cfg) = cfg(sa, ctx) else {
        return Vec::new();
    };
    let rekey = msg.notify(NotifyType::REKEY_SA).map(|n| n.spi_u32());
    let old_idx = match rekey {
        None => None,
        Some(None) => return notify(NotifyType::INVALID_SYNTAX),
        Some(Some(spi)) => {
            // The REKEY_SA SPI is the one the peer expects inbound: our outbound SPI.
            let Some(i) = sa.children.iter().position(|c| c.spi_out == spi) else {
                ctx.out.stats.child_sa_not_found_sent += 1;
                return vec![Payload::Notify(Notify::for_child(
                    NotifyType::CHILD_SA_NOT_FOUND,
                    spi,
                    Vec::new(),
                ))];
            };
            let o = &sa.children[i];
            if superseded_replacement(sa, o).is_none()
                && (!o.is_current() || o.peer_rekey.is_some())
            {
                ctx.out.stats.temporary_failure_sent += 1;
                return notify(NotifyType::TEMPORARY_FAILURE);
            }
            Some(i)
        }
    };
    let superseded = old_idx.and_then(|i| superseded_replacement(sa, &sa.children[i]));
    let a = match accept_request(sa, ctx, cfg, msg, false) {
        Ok(a) => a,
        Err(p) => return p,
    };
    let (our_ke, g_ir) = match (a.chosen.dh, &a.peer_ke) {
        (Some(g), Some(peer)) => {
            let Ok((d, public)) = g.generate(ctx.rng) else {
                return notify(NotifyType::NO_PROPOSAL_CHOSEN);
            };
            let Ok(s) = d.agree(peer) else {
                ctx.out.stats.invalid_syntax += 1;
                return notify(NotifyType::INVALID_SYNTAX);
            };
            (
                Some(KePayload {
                    group: DhGroup(g.id()),
                    data: public,
                }),
                Some(s),
            )
        }
        _ => (None, None),
    };
    let Some(spi_in) = ctx.spis.allocate(sa.peer, ctx.rng) else {
        return notify(NotifyType::NO_ADDITIONAL_SAS);
    };
    let nr = super::init::nonce(ctx);
    let Some(k) = sa.keys.as_ref() else {
        return Vec::new();
    };
    let Ok(keys) = ChildSaKeys::derive(
        k.prf,
        k.sk_d.expose(),
        g_ir.as_ref().map(|s| s.expose()),
        &a.ni,
        &nr,
        a.chosen.cipher.keymat_len(),
    ) else {
        ctx.spis.release(spi_in);
        return notify(NotifyType::NO_PROPOSAL_CHOSEN);
    };
    let nonces = [a.ni.clone(), nr.clone()];
    let id = match old_idx {
        Some(i) => {
            let o = &mut sa.children[i];
            let collided = o.rekeying;
            if collided {
                ctx.out.stats.rekey_collisions += 1;
            } else {
                o.replaced = true;
                o.peer_deletes = true;
                o.delete_by = Some(peer_delete_deadline(ctx));
            }
            o.peer_rekey = Some(PeerRekey {
                new_spi_in: spi_in,
                nonces: nonces.clone(),
                collided,
            });
            let (id, old) = (o.id, (o.spi_in, o.spi_out));
            ctx.out.event(Event::ChildRekeyed {
                ike: sa.id,
                child: id,
                old,
                new: (spi_in, a.chosen.peer_spi),
            });
            id
        }
        None => create_collision_id(sa, ctx, &a.tsi, &a.tsr, spi_in, &nonces)
            .unwrap_or_else(|| ctx.child_id()),
    };
    if let Some(y) = superseded.and_then(|spi| sa.children.iter_mut().find(|c| c.spi_in == spi)) {
        // The peer rekeyed the same SA again before any packet arrived on our answer to its
        // first rekey (strongswan#2945): it may never have installed that one. Both stay
        // standby; the first to carry traffic is used, the new one takes over if the peer
        // deletes the old SA, and the first one goes if it stays unused.
        y.superseded = true;
        y.delete_by = Some(ctx.now + ctx.config.delete_timeout);
    }
    let mut c = child_base(sa, id, spi_in, &a.chosen, a.tsr.clone(), a.tsi.clone());
    if old_idx.is_none() {
        c.activate_at = Some(ctx.now + ctx.config.initial_child_activation);
        ctx.out.event(Event::ChildEstablished {
            ike: sa.id,
            child: id,
            spis: (spi_in, a.chosen.peer_spi),
        });
    }
    install(sa, ctx, c, keys, false, Install::Standby);
    let mut out = vec![
        Payload::Sa(proposal::esp_answer(&a.chosen, spi_in)),
        Payload::Nonce(Nonce(nr)),
    ];
    out.extend(our_ke.map(Payload::Ke));
    out.push(Payload::TsI(TrafficSelectors(a.tsi)));
    out.push(Payload::TsR(TrafficSelectors(a.tsr)));
    out
}

/// A second rekey of `old` by the peer, whose first replacement (we answered it, no
/// collision) never carried a packet: the peer abandoned it. Returns that replacement's
/// inbound SPI; the new rekey is accepted and the abandoned SA deleted.
fn superseded_replacement(sa: &IkeSa, old: &ChildSa) -> Option<u32> {
    let pr = old.peer_rekey.as_ref().filter(|p| !p.collided)?;
    let y = sa.children.iter().find(|c| c.spi_in == pr.new_spi_in)?;
    (!old.deleting && !old.redundant && !y.outbound_active && y.is_current()).then_some(y.spi_in)
}

/// Both ends creating a CHILD_SA for the same selectors at once: the peer's goes into the
/// tunnel slot of ours, and the nonce rule of §2.8.1 picks the survivor when our response
/// arrives.
fn create_collision_id(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    tsi: &[TrafficSelector],
    tsr: &[TrafficSelector],
    spi_in: u32,
    nonces: &[Vec<u8>; 2],
) -> Option<ChildId> {
    let Some(InFlight::Child(req)) = sa.pending.as_mut().map(|p| &mut p.task) else {
        return None;
    };
    // Our TSi is the peer's TSr (§2.9).
    let same = req.rekey_of.is_none()
        && ts::is_subset(tsr, &req.local_ts)
        && ts::is_subset(tsi, &req.remote_ts);
    if !same {
        return None;
    }
    ctx.out.stats.rekey_collisions += 1;
    req.create_collision = Some((spi_in, nonces.clone()));
    Some(req.id)
}

/// The peer sent a new request: it received our previous response, so CHILD_SAs created by
/// that response may be used.
pub(crate) fn on_peer_request(sa: &mut IkeSa, ctx: &mut Ctx<'_>) {
    let due: Vec<usize> = sa
        .children
        .iter()
        .enumerate()
        .filter(|(_, c)| c.activate_at.is_some() && c.is_current())
        .map(|(i, _)| i)
        .collect();
    for i in due {
        activate(sa, ctx.out, i, Some(ctx.now + ctx.config.delete_timeout));
    }
}

/// The first packet on a new inbound SA arrived: the peer sends on it, so it installed it.
pub(crate) fn on_inbound_traffic(sa: &mut IkeSa, ctx: &mut Ctx<'_>, spi: u32) {
    if let Some(i) = sa
        .children
        .iter()
        .position(|c| c.spi_in == spi && !c.outbound_active && c.is_current())
    {
        activate(sa, ctx.out, i, Some(ctx.now + ctx.config.delete_timeout));
    }
}

/// Activation fallbacks and deletes the peer owes us.
pub(crate) fn handle_timeout(sa: &mut IkeSa, ctx: &mut Ctx<'_>) {
    let now = ctx.now;
    let due: Vec<usize> = sa
        .children
        .iter()
        .enumerate()
        .filter(|(_, c)| c.activate_at.is_some_and(|t| t <= now) && c.is_current())
        .map(|(i, _)| i)
        .collect();
    for i in due {
        activate(sa, ctx.out, i, Some(ctx.now + ctx.config.delete_timeout));
    }
    let mut overdue = Vec::new();
    for c in sa.children.iter_mut() {
        if c.activate_at.is_some_and(|t| t <= now) {
            c.activate_at = None;
        }
        if c.delete_by.is_some_and(|t| t <= now) {
            c.delete_by = None;
            if !c.deleting {
                overdue.push(c.spi_in);
            }
        }
    }
    for spi in overdue {
        sa.queue_task_first(ctx, Task::DeleteChild(vec![spi]));
    }
}

/// Removes child `idx` from the data plane: switches its tunnel to a successor first if it
/// was the active SA.
pub(crate) fn remove_child(
    sa: &mut IkeSa,
    out: &mut Outputs,
    spis: &mut dyn SpiAllocator,
    idx: usize,
    reason: DeleteReason,
) {
    let c = sa.children.remove(idx);
    if c.outbound_active {
        let preferred = c.peer_rekey.as_ref().map(|p| p.new_spi_in);
        let successor = sa
            .children
            .iter()
            .position(|o| o.id == c.id && o.is_current() && Some(o.spi_in) == preferred)
            .or_else(|| {
                sa.children
                    .iter()
                    .position(|o| o.id == c.id && o.is_current())
            });
        if let Some(s) = successor {
            activate(sa, out, s, None);
        }
    }
    out.action(Action::RetireInbound {
        child: c.id,
        spi: c.spi_in,
    });
    if c.outbound_installed {
        out.action(Action::RemoveOutbound {
            child: c.id,
            spi: c.spi_out,
        });
    }
    spis.release(c.spi_in);
    if !sa.children.iter().any(|o| o.id == c.id) {
        let reason = if c.replaced || c.redundant {
            DeleteReason::Rekeyed
        } else {
            reason
        };
        out.event(Event::ChildDeleted {
            ike: sa.id,
            child: c.id,
            spis: (c.spi_in, c.spi_out),
            reason,
        });
    }
}

/// Every CHILD_SA leaves the data plane (the IKE SA is gone).
pub(crate) fn discard_all(
    sa: &mut IkeSa,
    reason: DeleteReason,
    out: &mut Outputs,
    spis: &mut dyn SpiAllocator,
) {
    while !sa.children.is_empty() {
        let last = sa.children.len() - 1;
        sa.children[last].outbound_active = false;
        remove_child(sa, out, spis, last, reason);
    }
}
