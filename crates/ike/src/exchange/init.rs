//! IKE_SA_INIT (RFC 7296 §1.2) for both roles: proposal selection in configuration order,
//! INVALID_KE_PAYLOAD retry with the requested group (§1.3), COOKIE (§2.6), NAT detection
//! (§2.23) and IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3).

use std::net::{IpAddr, SocketAddr};

use super::auth::{InitData, ResponderAuth};
use super::ike_sa::{IkeSa, InFlight, SaKeys, State};
use super::output::Outputs;
use super::{CommandError, Ctx, DeleteReason, Event};
use crate::cookie::CookieJar;
use crate::crypto::aead::SkAead;
use crate::crypto::dh::DhPrivate;
use crate::crypto::keys::IkeSaKeys;
use crate::msgs::{
    DhGroup, ExchangeType, Header, KePayload, Message, Nonce, Notify, NotifyType, Payload,
    PayloadType,
};
use crate::nat;
use crate::proposal::{self, ChosenIke};

/// Nonce length we send: at least half the key size of the PRF and 16 octets (§2.10);
/// 32 octets satisfy every PRF espada offers.
pub(crate) const NONCE_LEN: usize = 32;

/// How often one IKE_SA_INIT is restarted for a COOKIE or INVALID_KE_PAYLOAD.
const MAX_RESTARTS: u8 = 3;

/// The initiator's IKE_SA_INIT state.
pub(crate) struct InitiatorInit {
    dh: DhPrivate,
    public: Vec<u8>,
    ni: Vec<u8>,
    cookie: Option<Vec<u8>>,
    request: Vec<u8>,
    first_contact: bool,
    restarts: u8,
}

pub(crate) fn nonce(ctx: &mut Ctx<'_>) -> Vec<u8> {
    let mut n = vec![0u8; NONCE_LEN];
    ctx.rng.fill(&mut n);
    n
}

fn notify(ty: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(Notify::new(ty, data))
}

/// Starts an IKE SA with peer `peer`.
pub(crate) fn initiate(
    ctx: &mut Ctx<'_>,
    peer: usize,
    remote_ip: IpAddr,
    first_contact: bool,
) -> Result<IkeSa, CommandError> {
    let cfg = ctx.peers.get(peer).ok_or(CommandError::NoSuchPeer(peer))?;
    let group = cfg
        .ike_proposals
        .first()
        .and_then(|p| p.dh.first().copied())
        .ok_or_else(|| CommandError::NoProposal(cfg.name.clone()))?;
    let local = SocketAddr::new(cfg.local_addr, crate::IKE_PORT);
    let remote = SocketAddr::new(remote_ip, crate::IKE_PORT);
    let id = ctx.ike_id();
    let spi_i = ctx.ike_spi();
    let (dh, public) = group
        .generate(ctx.rng)
        .map_err(|_| CommandError::KeyGeneration)?;
    let ni = nonce(ctx);
    let st = InitiatorInit {
        dh,
        public,
        ni,
        cookie: None,
        request: Vec::new(),
        first_contact,
        restarts: 0,
    };
    let mut sa = IkeSa::new(
        id,
        Some(peer),
        true,
        spi_i,
        0,
        local,
        remote,
        State::InitSent(st),
        ctx,
    );
    send_init(&mut sa, ctx);
    Ok(sa)
}

fn send_init(sa: &mut IkeSa, ctx: &mut Ctx<'_>) {
    let Some(cfg) = sa.peer.and_then(|p| ctx.peers.get(p)) else {
        return;
    };
    let header = sa.header(ExchangeType::IKE_SA_INIT, false, 0);
    let (spi_i, local, remote) = (sa.spi_i, sa.local, sa.remote);
    let State::InitSent(st) = &mut sa.state else {
        return;
    };
    let mut payloads = Vec::new();
    if let Some(c) = &st.cookie {
        payloads.push(notify(NotifyType::COOKIE, c.clone()));
    }
    payloads.push(Payload::Sa(proposal::ike_sa_payload(
        &cfg.ike_proposals,
        &[],
    )));
    payloads.push(Payload::Ke(KePayload {
        group: DhGroup(st.dh.alg().id()),
        data: st.public.clone(),
    }));
    payloads.push(Payload::Nonce(Nonce(st.ni.clone())));
    payloads.push(notify(
        NotifyType::NAT_DETECTION_SOURCE_IP,
        nat::detection_hash(spi_i, 0, local),
    ));
    payloads.push(notify(
        NotifyType::NAT_DETECTION_DESTINATION_IP,
        nat::detection_hash(spi_i, 0, remote),
    ));
    if cfg.fragmentation {
        payloads.push(notify(
            NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
            Vec::new(),
        ));
    }
    let bytes = Message { header, payloads }.emit();
    st.request = bytes.clone();
    sa.pending = None;
    sa.transmit_request(ctx, 0, vec![bytes], InFlight::SaInit);
}

fn fail(sa: &mut IkeSa, ctx: &mut Ctx<'_>, notify: NotifyType, by_peer: bool) {
    ctx.out.event(Event::ExchangeFailed {
        ike: sa.id,
        notify,
        by_peer,
    });
    sa.discard(DeleteReason::Failed, ctx.out, ctx.spis);
}

/// The responder's answer to our IKE_SA_INIT.
pub(crate) fn on_response(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    local: SocketAddr,
    remote: SocketAddr,
    data: &[u8],
    header: &Header,
) {
    let Ok(msg) = Message::parse(data) else {
        ctx.out.stats.invalid_syntax += 1;
        return;
    };
    let Some(cfg) = sa.peer.and_then(|p| ctx.peers.get(p)) else {
        return;
    };
    let State::InitSent(st) = &mut sa.state else {
        return;
    };
    if let Some(c) = msg.notify(NotifyType::COOKIE) {
        if st.restarts >= MAX_RESTARTS || c.data.is_empty() || c.data.len() > 64 {
            return fail(sa, ctx, NotifyType::COOKIE, true);
        }
        st.restarts += 1;
        st.cookie = Some(c.data.clone());
        return send_init(sa, ctx);
    }
    if let Some(n) = msg.notify(NotifyType::INVALID_KE_PAYLOAD) {
        let wanted =
            proposal::requested_group(&n.data, cfg.ike_proposals.iter().flat_map(|p| p.dh.iter()));
        let Some(group) = wanted.filter(|g| *g != st.dh.alg() && st.restarts < MAX_RESTARTS) else {
            return fail(sa, ctx, NotifyType::INVALID_KE_PAYLOAD, true);
        };
        let Ok((dh, public)) = group.generate(ctx.rng) else {
            return;
        };
        st.restarts += 1;
        st.dh = dh;
        st.public = public;
        return send_init(sa, ctx);
    }
    if let Some(err) = msg.error_notify() {
        let ty = err.ty;
        if ty == NotifyType::NO_PROPOSAL_CHOSEN {
            ctx.out.no_proposal(
                Some(sa.id),
                remote,
                &cfg.ike_proposals,
                String::from("(refused by the peer)"),
            );
        }
        return fail(sa, ctx, ty, true);
    }
    let accepted = (|| {
        let chosen = proposal::accept_ike_answer(&cfg.ike_proposals, msg.first_sa()?)?;
        let ke = msg.ke().filter(|k| k.group == DhGroup(chosen.dh.id()))?;
        let nr = msg.nonce()?.0.clone();
        (header.spi_r != 0).then_some((chosen, ke.data.clone(), nr))
    })();
    let Some((chosen, peer_public, nr)) = accepted else {
        ctx.out.stats.invalid_syntax += 1;
        return fail(sa, ctx, NotifyType::INVALID_SYNTAX, false);
    };
    let State::InitSent(st) = std::mem::replace(&mut sa.state, State::Established) else {
        return;
    };
    let Ok(g_ir) = st.dh.agree(&peer_public) else {
        ctx.out.stats.invalid_syntax += 1;
        return fail(sa, ctx, NotifyType::INVALID_SYNTAX, false);
    };
    sa.spi_r = header.spi_r;
    let Some(keys) = derive(
        &chosen,
        &st.ni,
        &nr,
        g_ir.expose(),
        sa.spi_i,
        sa.spi_r,
        true,
    ) else {
        return fail(sa, ctx, NotifyType::INVALID_SYNTAX, false);
    };
    sa.keys = Some(keys);
    let nat = evaluate(&msg, sa.spi_i, sa.spi_r, local, remote);
    sa.natt = nat.supported
        && (nat.local_behind_nat
            || nat.remote_behind_nat
            || cfg.encapsulation == crate::config::Encapsulation::Udp);
    if sa.natt {
        sa.local.set_port(crate::NATT_PORT);
        sa.remote.set_port(crate::NATT_PORT);
    }
    sa.peer_fragmentation = cfg.fragmentation
        && msg
            .notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
            .is_some();
    sa.pending = None;
    let init = InitData {
        ni: st.ni,
        nr,
        own_init: st.request,
        peer_init: data.to_vec(),
        first_contact: st.first_contact,
    };
    super::auth::start(sa, ctx, init);
}

/// SK_* from the IKE_SA_INIT exchange; `initiator` picks which of SK_ei/SK_er we send with.
pub(crate) fn derive(
    chosen: &ChosenIke,
    ni: &[u8],
    nr: &[u8],
    g_ir: &[u8],
    spi_i: u64,
    spi_r: u64,
    initiator: bool,
) -> Option<SaKeys> {
    let k = IkeSaKeys::derive(
        chosen.prf,
        chosen.cipher.keymat_len(),
        ni,
        nr,
        g_ir,
        spi_i,
        spi_r,
    )
    .ok()?;
    sa_keys(chosen, k, initiator)
}

pub(crate) fn sa_keys(chosen: &ChosenIke, k: IkeSaKeys, initiator: bool) -> Option<SaKeys> {
    let ei = SkAead::new(k.sk_ei.expose()).ok()?;
    let er = SkAead::new(k.sk_er.expose()).ok()?;
    let (enc_out, enc_in) = if initiator { (ei, er) } else { (er, ei) };
    Some(SaKeys {
        prf: chosen.prf,
        cipher: chosen.cipher,
        sk_d: k.sk_d.clone(),
        sk_pi: k.sk_pi.clone(),
        sk_pr: k.sk_pr.clone(),
        enc_out,
        enc_in,
    })
}

fn evaluate(
    msg: &Message,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> nat::NatResult {
    let sources: Vec<&[u8]> = msg
        .notifies()
        .filter(|n| n.ty == NotifyType::NAT_DETECTION_SOURCE_IP)
        .map(|n| n.data.as_slice())
        .collect();
    let dst = msg
        .notify(NotifyType::NAT_DETECTION_DESTINATION_IP)
        .map(|n| n.data.as_slice());
    nat::evaluate(spi_i, spi_r, local, remote, &sources, dst)
}

/// An unencrypted error answer to an IKE_SA_INIT request (no state is kept).
fn refuse(out: &mut Outputs, local: SocketAddr, remote: SocketAddr, req: &Header, n: Notify) {
    let header = Header {
        spi_i: req.spi_i,
        spi_r: 0,
        next_payload: PayloadType::NONE,
        major_version: 2,
        minor_version: 0,
        exchange: req.exchange,
        flags: Header::FLAG_RESPONSE,
        message_id: req.message_id,
        length: 0,
    };
    out.send(
        local,
        remote,
        Message {
            header,
            payloads: vec![Payload::Notify(n)],
        }
        .emit(),
    );
}

/// INVALID_MAJOR_VERSION for a request of another major version (§2.5, §3.10.1).
pub(crate) fn answer_bad_version(
    req: &Header,
    local: SocketAddr,
    remote: SocketAddr,
    out: &mut Outputs,
) {
    refuse(
        out,
        local,
        remote,
        req,
        Notify::new(NotifyType::INVALID_MAJOR_VERSION, Vec::new()),
    );
}

/// The responder's side of IKE_SA_INIT: a new half-open IKE SA, or a refusal.
#[allow(clippy::too_many_arguments)]
pub(crate) fn respond(
    ctx: &mut Ctx<'_>,
    cookies: &CookieJar,
    half_open: usize,
    local: SocketAddr,
    remote: SocketAddr,
    data: &[u8],
    header: &Header,
) -> Option<IkeSa> {
    let msg = match Message::parse(data).and_then(|m| {
        crate::msgs::rules::check(ExchangeType::IKE_SA_INIT, false, &m.payloads).map(|_| m)
    }) {
        Ok(m) => m,
        Err(e) => {
            if e.notify() == NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD {
                ctx.out.stats.unsupported_critical += 1;
            } else {
                ctx.out.stats.invalid_syntax += 1;
            }
            refuse(
                ctx.out,
                local,
                remote,
                header,
                Notify::new(e.notify(), e.notify_data()),
            );
            return None;
        }
    };
    let candidates: Vec<usize> = ctx
        .peers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.remote_addr.is_none_or(|a| a == remote.ip()))
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = candidates.first() else {
        ctx.out.stats.no_peer_config += 1;
        // A refusal tells a misconfigured peer why; under a flood (cookies demanded) the
        // sources are likely spoofed, and answering them would reflect the flood.
        if half_open >= ctx.config.cookie_threshold {
            return None;
        }
        refuse(
            ctx.out,
            local,
            remote,
            header,
            Notify::new(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new()),
        );
        return None;
    };
    if half_open >= ctx.config.half_open_limit {
        ctx.out.stats.half_open_dropped += 1;
        return None;
    }
    let ni = msg.nonce()?.0.clone();
    if half_open >= ctx.config.cookie_threshold {
        // §2.6: the COOKIE must be the first payload of the retried request.
        let offered = match msg.payloads.first() {
            Some(Payload::Notify(n)) if n.ty == NotifyType::COOKIE => Some(n.data.as_slice()),
            _ => None,
        };
        let valid = offered.is_some_and(|c| cookies.check(c, &ni, remote.ip(), header.spi_i));
        if !valid {
            if offered.is_some() {
                ctx.out.stats.bad_cookies += 1;
            }
            ctx.out.stats.cookies_sent += 1;
            let c = cookies.make(&ni, remote.ip(), header.spi_i);
            refuse(
                ctx.out,
                local,
                remote,
                header,
                Notify::new(NotifyType::COOKIE, c),
            );
            return None;
        }
    }
    let cfg = &ctx.peers[first];
    let offered_sa = msg.first_sa()?;
    let Some(chosen) = proposal::select_ike(&cfg.ike_proposals, offered_sa) else {
        ctx.out.no_proposal(
            None,
            remote,
            &cfg.ike_proposals,
            proposal::describe(offered_sa),
        );
        refuse(
            ctx.out,
            local,
            remote,
            header,
            Notify::new(NotifyType::NO_PROPOSAL_CHOSEN, Vec::new()),
        );
        return None;
    };
    let ke = msg.ke()?;
    if ke.group != DhGroup(chosen.dh.id()) {
        ctx.out.stats.invalid_ke_sent += 1;
        let data = chosen.dh.id().to_be_bytes().to_vec();
        refuse(
            ctx.out,
            local,
            remote,
            header,
            Notify::new(NotifyType::INVALID_KE_PAYLOAD, data),
        );
        return None;
    }
    let (dh, public) = chosen.dh.generate(ctx.rng).ok()?;
    let Ok(g_ir) = dh.agree(&ke.data) else {
        ctx.out.stats.invalid_syntax += 1;
        refuse(
            ctx.out,
            local,
            remote,
            header,
            Notify::new(NotifyType::INVALID_SYNTAX, Vec::new()),
        );
        return None;
    };
    let nr = nonce(ctx);
    let spi_r = ctx.ike_spi();
    let keys = derive(&chosen, &ni, &nr, g_ir.expose(), header.spi_i, spi_r, false)?;
    let nat = evaluate(&msg, header.spi_i, 0, local, remote);
    let peer_fragmentation = cfg.fragmentation
        && msg
            .notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED)
            .is_some();
    let id = ctx.ike_id();
    let mut sa = IkeSa::new(
        id,
        Some(first),
        false,
        header.spi_i,
        spi_r,
        local,
        remote,
        State::Established,
        ctx,
    );
    let mut payloads = vec![
        Payload::Sa(proposal::ike_answer(&chosen, Vec::new())),
        Payload::Ke(KePayload {
            group: DhGroup(chosen.dh.id()),
            data: public,
        }),
        Payload::Nonce(Nonce(nr.clone())),
    ];
    // Forced UDP encapsulation: a source hash that cannot match makes the initiator see a
    // NAT and move to 4500 (strongSwan's `encap = yes` does the same).
    let force_udp = cfg.encapsulation == crate::config::Encapsulation::Udp;
    if nat.supported {
        let source = if force_udp {
            let mut fake = vec![0u8; 20];
            ctx.rng.fill(&mut fake);
            fake
        } else {
            nat::detection_hash(sa.spi_i, spi_r, local)
        };
        payloads.push(notify(NotifyType::NAT_DETECTION_SOURCE_IP, source));
        payloads.push(notify(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            nat::detection_hash(sa.spi_i, spi_r, remote),
        ));
    }
    if peer_fragmentation {
        payloads.push(notify(
            NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
            Vec::new(),
        ));
    }
    let response = Message {
        header: sa.header(ExchangeType::IKE_SA_INIT, true, 0),
        payloads,
    }
    .emit();
    ctx.out.send(local, remote, response.clone());
    sa.keys = Some(keys);
    sa.peer_fragmentation = peer_fragmentation;
    sa.nat_detected = nat.local_behind_nat || nat.remote_behind_nat;
    sa.cache_response(0, response.clone());
    sa.expires = Some(ctx.now + ctx.config.half_open_timeout);
    sa.state = State::HalfOpen(ResponderAuth {
        init: InitData {
            ni,
            nr,
            own_init: response,
            peer_init: data.to_vec(),
            first_contact: false,
        },
        candidates,
    });
    Some(sa)
}
