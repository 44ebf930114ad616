//! espada-control: the control plane as a sans-I/O library (issue 14, deliver item 1).
//!
//! [`ControlPlane`] owns the IKEv2 endpoint (`espada_ike`), one IKE SA and one CHILD_SA per
//! negotiated tunnel, the rekey scheduler (soft lifetime = hard − margin − random jitter),
//! dead peer detection on idle tunnels and start actions, and translates the endpoint's
//! actions into the data plane's lifecycle calls ([`DataPlane`]), waiting for their
//! acknowledgements where make-before-break needs it. It is driven by time, datagrams and
//! admin commands and never touches DPDK; `crates/espada` feeds it punted IKE datagrams and
//! sends what [`ControlPlane::poll_transmit`] returns.
//!
//! Not built yet: `start: trap` / `dpd.action: trap` (negotiation on the first packet) is
//! handled as `start: none` / `restart`; `dpd.timeout` is not applied (the endpoint's
//! retransmission schedule decides when a peer is dead).
#![forbid(unsafe_code)]

pub mod dataplane;
pub mod plane;
mod spis;

pub use dataplane::{DataPlane, DpNotice, Expiry, Ticket, TunnelId};
pub use plane::{
    ACQUIRE_EVERY, CAUSE_KEPT, ControlPlane, ControlStats, KEEPALIVE_EVERY, Level, LogLine,
    RECOVERY_EVERY, RETRY_AFTER, SpiCause, TunnelSettings, TunnelStatus,
};
