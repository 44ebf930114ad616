//! Rekeying the IKE SA (RFC 7296 §1.3.2, §2.8.2, §2.18): a new IKE SA with new SPIs and keys
//! derived from the old SK_d; the CHILD_SAs move to it, then the rekey's initiator deletes
//! the old one. When both ends rekey at once, the new IKE SA with the lowest of the four
//! nonces is redundant and deleted by its creator, and the CHILD_SAs go to the other.

use super::ike_sa::{IkeSa, InFlight, State, Task};
use super::{Ctx, Event, IkeSaId};
use crate::crypto::dh::DhPrivate;
use crate::crypto::keys::IkeSaKeys;
use crate::msgs::{DhGroup, ExchangeType, KePayload, Message, Nonce, Notify, NotifyType, Payload};
use crate::proposal::{self, ChosenIke};

/// Our IKE SA rekey in flight.
pub(crate) struct IkeRekeyRequest {
    new_spi: u64,
    ni: Vec<u8>,
    dh: DhPrivate,
    restarts: u8,
    /// The peer's rekey of the same IKE SA, answered while ours was outstanding: the IKE SA
    /// it created and the nonces of its exchange.
    collision: Option<(IkeSaId, [Vec<u8>; 2])>,
}

/// The peer's new IKE SA, if we answered its rekey while this request was outstanding.
pub(crate) fn collided_with(req: &IkeRekeyRequest) -> Option<IkeSaId> {
    req.collision.as_ref().map(|(id, _)| *id)
}

fn notify(ty: NotifyType) -> Vec<Payload> {
    vec![Payload::Notify(Notify::new(ty, Vec::new()))]
}

/// Sends CREATE_CHILD_SA rekeying this IKE SA.
pub(crate) fn start(sa: &mut IkeSa, ctx: &mut Ctx<'_>) {
    let Some(group) = sa
        .peer
        .and_then(|p| ctx.peers.get(p))
        .and_then(|c| c.ike_proposals.first())
        .and_then(|p| p.dh.first().copied())
    else {
        return;
    };
    let Ok((dh, public)) = group.generate(ctx.rng) else {
        return;
    };
    let req = IkeRekeyRequest {
        new_spi: ctx.ike_spi(),
        ni: super::init::nonce(ctx),
        dh,
        restarts: 0,
        collision: None,
    };
    send(sa, ctx, req, public);
}

fn send(sa: &mut IkeSa, ctx: &mut Ctx<'_>, req: IkeRekeyRequest, public: Vec<u8>) {
    let Some(cfg) = sa.peer.and_then(|p| ctx.peers.get(p)) else {
        return;
    };
    let payloads = vec![
        Payload::Sa(proposal::ike_sa_payload(
            &cfg.ike_proposals,
            &req.new_spi.to_be_bytes(),
        )),
        Payload::Nonce(Nonce(req.ni.clone())),
        Payload::Ke(KePayload {
            group: DhGroup(req.dh.alg().id()),
            data: public,
        }),
    ];
    sa.send_request(
        ctx,
        ExchangeType::CREATE_CHILD_SA,
        payloads,
        InFlight::IkeRekey(req),
    );
}

/// The new IKE SA, successor of `sa`; `initiator`: we initiated the rekey.
#[allow(clippy::too_many_arguments)]
fn successor(
    sa: &IkeSa,
    ctx: &mut Ctx<'_>,
    chosen: &ChosenIke,
    g_ir: &[u8],
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
    initiator: bool,
) -> Option<IkeSa> {
    let old = sa.keys.as_ref()?;
    let k = IkeSaKeys::derive_rekeyed(
        old.prf,
        old.sk_d.expose(),
        chosen.prf,
        chosen.cipher.keymat_len(),
        g_ir,
        ni,
        nr,
        spi_i,
        spi_r,
    )
    .ok()?;
    let keys = super::init::sa_keys(chosen, k, initiator)?;
    let id = ctx.ike_id();
    let mut n = IkeSa::new(
        id,
        sa.peer,
        initiator,
        spi_i,
        spi_r,
        sa.local,
        sa.remote,
        State::Established,
        ctx,
    );
    n.keys = Some(keys);
    n.natt = sa.natt;
    n.nat_detected = sa.nat_detected;
    n.peer_fragmentation = sa.peer_fragmentation;
    n.remote_identity = sa.remote_identity.clone();
    Some(n)
}

/// Hands the CHILD_SAs and queued requests over, and waits for the old SA's DELETE.
fn hand_over(sa: &mut IkeSa, ctx: &mut Ctx<'_>, to: &mut IkeSa) {
    let (children, tasks) = sa.take_children_and_tasks();
    to.adopt_children(children);
    to.adopt_tasks(tasks);
    sa.state = State::Rekeyed;
    sa.expires = Some(ctx.now + ctx.config.delete_timeout);
    ctx.out.event(Event::IkeRekeyed {
        old: sa.id,
        new: to.id(),
    });
}

/// The answer to our IKE SA rekey.
pub(crate) fn on_response(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    mut req: IkeRekeyRequest,
    msg: &Message,
) {
    let Some(cfg) = sa.peer.and_then(|p| ctx.peers.get(p)) else {
        return;
    };
    if let Some(e) = msg.error_notify() {
        let ty = e.ty;
        if ty == NotifyType::INVALID_KE_PAYLOAD {
            let wanted = proposal::requested_group(
                &e.data,
                cfg.ike_proposals.iter().flat_map(|p| p.dh.iter()),
            );
            if let Some(g) = wanted.filter(|_| req.restarts < 3)
                && let Ok((dh, public)) = g.generate(ctx.rng)
            {
                req.restarts += 1;
                req.dh = dh;
                return send(sa, ctx, req, public);
            }
        }
        if ty == NotifyType::TEMPORARY_FAILURE {
            ctx.out.stats.temporary_failure_received += 1;
        }
        ctx.out.event(Event::ExchangeFailed {
            ike: sa.id,
            notify: ty,
            by_peer: true,
        });
        if let Some((winner, _)) = req.collision {
            // We answered the peer's rekey of this IKE SA: with ours failed, the peer's new
            // IKE SA is the successor (§2.25.2).
            ctx.adopt_by = Some(winner);
            sa.state = State::Rekeyed;
            sa.expires = Some(ctx.now + ctx.config.delete_timeout);
            ctx.out.event(Event::IkeRekeyed {
                old: sa.id,
                new: winner,
            });
            return;
        }
        if ty == NotifyType::TEMPORARY_FAILURE && sa.is_established() {
            sa.retry_later(ctx, Task::RekeyIke);
        }
        return;
    }
    let accepted = (|| {
        let offered = msg.first_sa()?;
        let chosen = proposal::accept_ike_answer(&cfg.ike_proposals, offered)?;
        let peer_spi = offered.proposals.first()?.spi_u64()?;
        let nr = msg.nonce()?.0.clone();
        let ke = msg
            .ke()
            .filter(|k| k.group == DhGroup(req.dh.alg().id()) && chosen.dh == req.dh.alg())?;
        Some((chosen, peer_spi, nr, ke.data.clone()))
    })();
    let Some((chosen, peer_spi, nr, peer_public)) = accepted else {
        ctx.out.stats.invalid_syntax += 1;
        ctx.out.event(Event::ExchangeFailed {
            ike: sa.id,
            notify: NotifyType::INVALID_SYNTAX,
            by_peer: false,
        });
        return;
    };
    let Ok(g_ir) = req.dh.agree(&peer_public) else {
        return;
    };
    let Some(mut ours) = successor(
        sa,
        ctx,
        &chosen,
        g_ir.expose(),
        &req.ni,
        &nr,
        req.new_spi,
        peer_spi,
        true,
    ) else {
        return;
    };
    let lost = match &req.collision {
        Some((_, theirs)) => {
            let lowest_ours = req.ni.as_slice().min(nr.as_slice());
            let lowest_theirs = theirs[0].as_slice().min(theirs[1].as_slice());
            lowest_ours < lowest_theirs
        }
        None => !sa.is_established(),
    };
    if lost {
        // Redundant: deleted by us, its creator (§2.8.2). The CHILD_SAs go to the peer's new
        // IKE SA, and the peer deletes the old one.
        ours.queue_first(ctx, Task::DeleteIke);
        if let Some((winner, _)) = req.collision {
            ctx.adopt_by = Some(winner);
            sa.state = State::Rekeyed;
            sa.expires = Some(ctx.now + ctx.config.delete_timeout);
        }
        ctx.born.push(ours);
        return;
    }
    hand_over(sa, ctx, &mut ours);
    ctx.born.push(ours);
    sa.queue_task_first(ctx, Task::DeleteIke);
}

/// The peer rekeys this IKE SA.
pub(crate) fn respond(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) -> Vec<Payload> {
    let Some(cfg) = sa.peer.and_then(|p| ctx.peers.get(p)) else {
        return Vec::new();
    };
    let ours_outstanding = matches!(
        sa.pending.as_ref().map(|p| &p.task),
        Some(InFlight::IkeRekey(_))
    );
    if sa.pending.is_some()
        && !ours_outstanding
        && !matches!(
            sa.pending.as_ref().map(|p| &p.task),
            Some(InFlight::Liveness)
        )
    {
        // A CHILD_SA or DELETE exchange of ours is outstanding (§2.25.2).
        ctx.out.stats.temporary_failure_sent += 1;
        return notify(NotifyType::TEMPORARY_FAILURE);
    }
    let Some(offered) = msg.first_sa() else {
        return notify(NotifyType::INVALID_SYNTAX);
    };
    let Some(chosen) = proposal::select_ike(&cfg.ike_proposals, offered) else {
        ctx.out.no_proposal(
            Some(sa.id),
            sa.remote,
            &cfg.ike_proposals,
            proposal::describe(offered),
        );
        return notify(NotifyType::NO_PROPOSAL_CHOSEN);
    };
    let Some(peer_spi) = offered
        .proposals
        .iter()
        .find(|p| p.number == chosen.number)
        .and_then(|p| p.spi_u64())
    else {
        return notify(NotifyType::INVALID_SYNTAX);
    };
    let (Some(ke), Some(ni)) = (msg.ke(), msg.nonce()) else {
        return notify(NotifyType::INVALID_SYNTAX);
    };
    if ke.group != DhGroup(chosen.dh.id()) {
        ctx.out.stats.invalid_ke_sent += 1;
        return vec![Payload::Notify(Notify::new(
            NotifyType::INVALID_KE_PAYLOAD,
            chosen.dh.id().to_be_bytes().to_vec(),
        ))];
    }
    let Ok((dh, public)) = chosen.dh.generate(ctx.rng) else {
        return notify(NotifyType::NO_PROPOSAL_CHOSEN);
    };
    let Ok(g_ir) = dh.agree(&ke.data) else {
        ctx.out.stats.invalid_syntax += 1;
        return notify(NotifyType::INVALID_SYNTAX);
    };
    let nr = super::init::nonce(ctx);
    let new_spi = ctx.ike_spi();
    let ni = ni.0.clone();
    let Some(mut theirs) = successor(
        sa,
        ctx,
        &chosen,
        g_ir.expose(),
        &ni,
        &nr,
        peer_spi,
        new_spi,
        false,
    ) else {
        return notify(NotifyType::NO_PROPOSAL_CHOSEN);
    };
    match sa.pending.as_mut().map(|p| &mut p.task) {
        Some(InFlight::IkeRekey(req)) => {
            // Collision: decided when our response arrives. Until then the new SA has no
            // CHILD_SAs; if it loses, the peer deletes it (or it expires).
            ctx.out.stats.rekey_collisions += 1;
            req.collision = Some((theirs.id(), [ni, nr.clone()]));
            theirs.expires = Some(ctx.now + ctx.config.delete_timeout);
            theirs.awaiting_children = true;
        }
        _ => hand_over(sa, ctx, &mut theirs),
    }
    ctx.born.push(theirs);
    vec![
        Payload::Sa(proposal::ike_answer(
            &chosen,
            new_spi.to_be_bytes().to_vec(),
        )),
        Payload::Nonce(Nonce(nr)),
        Payload::Ke(KePayload {
            group: DhGroup(chosen.dh.id()),
            data: public,
        }),
    ]
}
