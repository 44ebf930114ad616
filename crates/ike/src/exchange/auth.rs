//! IKE_AUTH (RFC 7296 §1.2, §2.15) for both roles, with the first CHILD_SA and
//! INITIAL_CONTACT (§2.4). The proof itself is the configured [`crate::auth::Authenticator`]'s
//! business, so other methods (RFC 7427 signatures, EAP) leave this module unchanged.

use super::ike_sa::{IkeSa, InFlight, State};
use super::{Ctx, DeleteReason, Event};
use crate::auth::SignedOctets;
use crate::config::Identity;
use crate::msgs::{ExchangeType, Message, Notify, NotifyType, Payload, TrafficSelectors};
use crate::proposal;

/// What IKE_SA_INIT leaves for IKE_AUTH.
pub(crate) struct InitData {
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    /// The IKE_SA_INIT message we sent (request or response), as sent.
    pub own_init: Vec<u8>,
    /// The one we received, as received.
    pub peer_init: Vec<u8>,
    /// Send INITIAL_CONTACT (initiator: no other IKE SA with this peer).
    pub first_contact: bool,
}

/// The initiator waits for the IKE_AUTH response.
pub(crate) struct InitiatorAuth {
    init: InitData,
    child: super::ChildId,
    spi_in: u32,
}

/// The responder waits for IKE_AUTH (half-open).
pub(crate) struct ResponderAuth {
    pub init: InitData,
    /// Peer configurations the initiator's address matches; IDi picks one.
    pub candidates: Vec<usize>,
}

/// Sends IKE_AUTH with our AUTH and the first CHILD_SA.
pub(crate) fn start(sa: &mut IkeSa, ctx: &mut Ctx<'_>, init: InitData) {
    let Some(cfg) = sa.peer.and_then(|p| ctx.peers.get(p)) else {
        return;
    };
    let Some(keys) = sa.keys.as_ref() else { return };
    let Some(spi_in) = ctx.spis.allocate(sa.peer, ctx.rng) else {
        ctx.out.event(Event::ExchangeFailed {
            ike: sa.id,
            notify: NotifyType::NO_ADDITIONAL_SAS,
            by_peer: false,
        });
        return sa.discard(DeleteReason::Failed, ctx.out, ctx.spis);
    };
    let child = ctx.child_id();
    let idi = cfg.local_id.to_wire();
    let auth = cfg.auth.sign(
        keys.prf,
        &SignedOctets {
            real_message: &init.own_init,
            peer_nonce: &init.nr,
            sk_p: keys.sk_pi.expose(),
            id_body: &idi.body(),
        },
    );
    let mut payloads = vec![
        Payload::IdI(idi),
        Payload::IdR(cfg.remote_id.to_wire()),
        Payload::Auth(auth),
    ];
    if init.first_contact {
        payloads.push(Payload::Notify(Notify::new(
            NotifyType::INITIAL_CONTACT,
            Vec::new(),
        )));
    }
    payloads.push(Payload::Sa(proposal::esp_sa_payload(
        &cfg.esp_proposals,
        spi_in,
        false,
    )));
    payloads.push(Payload::TsI(TrafficSelectors(cfg.local_ts.clone())));
    payloads.push(Payload::TsR(TrafficSelectors(cfg.remote_ts.clone())));
    sa.set_next_mid(1);
    sa.state = State::AuthSent(InitiatorAuth {
        init,
        child,
        spi_in,
    });
    sa.send_request(ctx, ExchangeType::IKE_AUTH, payloads, InFlight::Auth);
}

/// The responder's IKE_AUTH response.
pub(crate) fn on_response(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) {
    let State::AuthSent(st) = std::mem::replace(&mut sa.state, State::Established) else {
        return;
    };
    let Some(cfg) = sa.peer.and_then(|p| ctx.peers.get(p)) else {
        return;
    };
    let fail = |sa: &mut IkeSa, ctx: &mut Ctx<'_>, by_peer: bool| {
        ctx.out.stats.authentication_failed += 1;
        ctx.out.event(Event::AuthenticationFailed {
            ike: sa.id,
            peer: sa.peer,
            remote: sa.remote,
            by_peer,
        });
        ctx.spis.release(st.spi_in);
        sa.state = State::Gone;
        sa.discard(DeleteReason::Failed, ctx.out, ctx.spis);
    };
    if msg.notify(NotifyType::AUTHENTICATION_FAILED).is_some() {
        return fail(sa, ctx, true);
    }
    let (Some(idr), Some(auth)) = (msg.id_r(), msg.auth()) else {
        let notify = msg
            .error_notify()
            .map_or(NotifyType::INVALID_SYNTAX, |n| n.ty);
        ctx.out.event(Event::ExchangeFailed {
            ike: sa.id,
            notify,
            by_peer: true,
        });
        ctx.spis.release(st.spi_in);
        return sa.discard(DeleteReason::Failed, ctx.out, ctx.spis);
    };
    let Some(keys) = sa.keys.as_ref() else { return };
    let proven = Identity::from_wire(idr).is_some_and(|id| id == cfg.remote_id)
        && cfg.auth.verify(
            keys.prf,
            &SignedOctets {
                real_message: &st.init.peer_init,
                peer_nonce: &st.init.ni,
                sk_p: keys.sk_pr.expose(),
                id_body: &idr.body(),
            },
            auth,
        );
    if !proven {
        return fail(sa, ctx, false);
    }
    sa.remote_identity = Some(cfg.remote_id.clone());
    ctx.out.event(Event::IkeEstablished {
        ike: sa.id,
        peer: sa.peer.unwrap_or(0),
        spis: sa.spis(),
        remote: sa.remote,
        nat: sa.natt,
    });
    super::child::complete_in_auth(sa, ctx, msg, st.child, st.spi_in, &st.init.ni, &st.init.nr);
}

/// The responder's side of IKE_AUTH: verify the initiator, answer with our AUTH and the
/// first CHILD_SA. An unproven initiator gets AUTHENTICATION_FAILED and the half-open SA
/// goes (the caller discards it after the response is sent).
pub(crate) fn respond(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) -> Vec<Payload> {
    let State::HalfOpen(st) = &sa.state else {
        return Vec::new();
    };
    let refuse = |sa: &IkeSa, ctx: &mut Ctx<'_>| {
        ctx.out.stats.authentication_failed += 1;
        ctx.out.event(Event::AuthenticationFailed {
            ike: sa.id,
            peer: sa.peer,
            remote: sa.remote,
            by_peer: false,
        });
        vec![Payload::Notify(Notify::new(
            NotifyType::AUTHENTICATION_FAILED,
            Vec::new(),
        ))]
    };
    let (Some(idi), Some(auth), Some(keys)) = (msg.id_i(), msg.auth(), sa.keys.as_ref()) else {
        return refuse(sa, ctx);
    };
    let Some(claimed) = Identity::from_wire(idi) else {
        return refuse(sa, ctx);
    };
    let wanted_local = msg.id_r().and_then(Identity::from_wire);
    // A configuration for this initiator identity whose IKE algorithms are those chosen in
    // IKE_SA_INIT; one that also has the IDr the initiator asked for comes first.
    let matching = |p: &usize| {
        let c = &ctx.peers[*p];
        c.remote_id == claimed
            && c.ike_proposals
                .iter()
                .any(|q| q.cipher == keys.cipher && q.prf == keys.prf)
    };
    let pick = st
        .candidates
        .iter()
        .copied()
        .filter(matching)
        .find(|p| {
            wanted_local
                .as_ref()
                .is_none_or(|w| *w == ctx.peers[*p].local_id)
        })
        .or_else(|| st.candidates.iter().copied().find(matching));
    let Some(peer) = pick else {
        return refuse(sa, ctx);
    };
    let cfg = &ctx.peers[peer];
    let verified = cfg.auth.verify(
        keys.prf,
        &SignedOctets {
            real_message: &st.init.peer_init,
            peer_nonce: &st.init.nr,
            sk_p: keys.sk_pi.expose(),
            id_body: &idi.body(),
        },
        auth,
    );
    if !verified {
        return refuse(sa, ctx);
    }
    let idr = cfg.local_id.to_wire();
    let our_auth = cfg.auth.sign(
        keys.prf,
        &SignedOctets {
            real_message: &st.init.own_init,
            peer_nonce: &st.init.ni,
            sk_p: keys.sk_pr.expose(),
            id_body: &idr.body(),
        },
    );
    let State::HalfOpen(st) = std::mem::replace(&mut sa.state, State::Established) else {
        return Vec::new();
    };
    sa.peer = Some(peer);
    sa.expires = None;
    sa.remote_identity = Some(claimed);
    if sa.local.port() == crate::NATT_PORT {
        sa.natt = true;
    }
    ctx.initial_contact = msg.notify(NotifyType::INITIAL_CONTACT).is_some();
    ctx.out.event(Event::IkeEstablished {
        ike: sa.id,
        peer,
        spis: sa.spis(),
        remote: sa.remote,
        nat: sa.natt,
    });
    let mut response = vec![Payload::IdR(idr), Payload::Auth(our_auth)];
    response.extend(super::child::respond_in_auth(
        sa,
        ctx,
        msg,
        &st.init.ni,
        &st.init.nr,
    ));
    response
}
