//! INFORMATIONAL (RFC 7296 §1.4): DELETE of CHILD_SAs and of the IKE SA, and liveness checks
//! (an empty request).

use super::child::remove_child;
use super::ike_sa::{IkeSa, InFlight, State};
use super::{Ctx, DeleteReason};
use crate::msgs::{Delete, ExchangeType, Message, Payload, ProtocolId};

/// Sends a DELETE of our inbound SPIs `spis` (§1.4.1; the SPIs are those the sender expects
/// inbound).
pub(crate) fn start_delete_child(sa: &mut IkeSa, ctx: &mut Ctx<'_>, spis: Vec<u32>) {
    let spis: Vec<u32> = spis
        .into_iter()
        .filter(|s| sa.children.iter().any(|c| c.spi_in == *s && !c.deleting))
        .collect();
    if spis.is_empty() {
        return sa.kick(ctx);
    }
    for c in sa.children.iter_mut().filter(|c| spis.contains(&c.spi_in)) {
        c.deleting = true;
        c.delete_by = None;
    }
    let payloads = vec![Payload::Delete(Delete::esp(&spis))];
    sa.send_request(
        ctx,
        ExchangeType::INFORMATIONAL,
        payloads,
        InFlight::DeleteChild(spis),
    );
}

/// The answer to our DELETE: the SAs leave the data plane (the inbound one after its grace).
pub(crate) fn on_delete_child_response(
    sa: &mut IkeSa,
    ctx: &mut Ctx<'_>,
    spis: &[u32],
    _msg: &Message,
) {
    for spi in spis {
        if let Some(i) = sa.children.iter().position(|c| c.spi_in == *spi) {
            remove_child(sa, ctx.out, ctx.spis, i, DeleteReason::Local);
        }
    }
}

/// Sends a DELETE of the IKE SA itself.
pub(crate) fn start_delete_ike(sa: &mut IkeSa, ctx: &mut Ctx<'_>) {
    sa.state = State::Deleting;
    sa.send_request(
        ctx,
        ExchangeType::INFORMATIONAL,
        vec![Payload::Delete(Delete::ike())],
        InFlight::DeleteIke,
    );
}

/// The peer's INFORMATIONAL request: DELETEs are carried out and answered with the SPIs of
/// the other direction (§1.4.1); a DELETE of the IKE SA is answered empty and the SA goes
/// once the answer is sent. Anything else (a liveness check, notifications) gets an empty
/// answer.
pub(crate) fn respond(sa: &mut IkeSa, ctx: &mut Ctx<'_>, msg: &Message) -> Vec<Payload> {
    let mut ours = Vec::new();
    for d in msg.deletes() {
        match d.protocol {
            ProtocolId::IKE => sa.closing = true,
            ProtocolId::ESP => {
                for spi in d.esp_spis() {
                    if let Some(i) = sa.children.iter().position(|c| c.spi_out == spi) {
                        ours.push(sa.children[i].spi_in);
                        remove_child(sa, ctx.out, ctx.spis, i, DeleteReason::Peer);
                    } else if sa.awaiting_children {
                        sa.deferred_deletes.push(spi);
                    }
                }
            }
            _ => {}
        }
    }
    if sa.closing || ours.is_empty() {
        Vec::new()
    } else {
        vec![Payload::Delete(Delete::esp(&ours))]
    }
}
