//! What the endpoint hands out: datagrams, data-plane actions, events and counters.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::{ChildId, IkeSaId};
use crate::msgs::{NotifyType, TrafficSelector};
use crate::proposal::Cipher;
use crate::secret::Secret;

/// One UDP datagram to send. On port 4500 `payload` already starts with the non-ESP marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Source address and port.
    pub local: SocketAddr,
    /// Destination address and port.
    pub remote: SocketAddr,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// Everything the data plane needs to install one direction of a CHILD_SA.
#[derive(Clone, Debug)]
pub struct ChildSaParams {
    /// The IKE SA it belongs to.
    pub ike: IkeSaId,
    /// The tunnel slot (stays the same across rekeys).
    pub child: ChildId,
    /// The SPI in the ESP header of this direction.
    pub spi: u32,
    /// AES-GCM key ‖ 4-octet salt for this direction (RFC 4106 §8.1), zeroized on drop.
    pub keys: Secret,
    /// The cipher (the key length follows from it).
    pub cipher: Cipher,
    /// 64-bit extended sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Our side's traffic selectors.
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's side.
    pub remote_ts: Vec<TrafficSelector>,
    /// Our outer address (and port 4500 when UDP-encapsulated).
    pub local: SocketAddr,
    /// The peer's outer address (and port when UDP-encapsulated).
    pub remote: SocketAddr,
    /// ESP in UDP (RFC 3948).
    pub udp_encap: bool,
    /// For an inbound SA: call [`super::Endpoint::inbound_traffic`] once the first packet on
    /// it decrypts (the outbound side waits for it to switch).
    pub report_first_packet: bool,
}

/// What the data plane must do, in the order given.
#[derive(Clone, Debug)]
pub enum Action {
    /// Start decrypting on `params.spi`. Comes before any message that lets the peer use it.
    InstallInbound(ChildSaParams),
    /// Prepare an outbound SA without sending on it (standby).
    InstallOutbound(ChildSaParams),
    /// From now on every packet of tunnel `child` is sent on outbound SA `spi` (atomic per
    /// tunnel: never two active outbound SAs, never none once one was active).
    SwitchOutbound {
        /// Tunnel slot.
        child: ChildId,
        /// The outbound SA to use.
        spi: u32,
    },
    /// Keep decrypting `spi` for the data plane's grace period, then classify late packets on
    /// it as "retired by rekey" (tombstone).
    RetireInbound {
        /// Tunnel slot.
        child: ChildId,
        /// The inbound SA.
        spi: u32,
    },
    /// Forget outbound SA `spi` (never the active one while the tunnel lives; when it was the
    /// last one the tunnel stops sending: drop and count, never clear text).
    RemoveOutbound {
        /// Tunnel slot.
        child: ChildId,
        /// The outbound SA.
        spi: u32,
    },
}

/// Why an SA went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// We deleted it (command, or after a rekey).
    Local,
    /// The peer sent a DELETE.
    Peer,
    /// Replaced by a rekey.
    Rekeyed,
    /// Redundant after a rekey collision (§2.8.1).
    Redundant,
    /// Requests went unanswered through the whole retransmission schedule, or for the
    /// caller's DPD timeout ([`super::Endpoint::declare_dead`]).
    PeerDead,
    /// The peer started over with INITIAL_CONTACT (§2.4).
    InitialContact,
    /// A half-open IKE SA expired.
    HalfOpenTimeout,
    /// The exchange that would have established it failed.
    Failed,
}

/// What happened, for logs and the control plane. Never carries key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// IKE_AUTH completed; the IKE SA is usable.
    IkeEstablished {
        /// The IKE SA.
        ike: IkeSaId,
        /// Configured peer index.
        peer: usize,
        /// SPIi, SPIr.
        spis: (u64, u64),
        /// Where the peer is.
        remote: SocketAddr,
        /// A NAT was detected, so IKE and ESP use UDP 4500.
        nat: bool,
    },
    /// An IKE SA was replaced by a rekey (§2.18); the CHILD_SAs moved to `new`.
    IkeRekeyed {
        /// The old IKE SA.
        old: IkeSaId,
        /// The new one.
        new: IkeSaId,
    },
    /// An IKE SA is gone.
    IkeDeleted {
        /// The IKE SA.
        ike: IkeSaId,
        /// Why.
        reason: DeleteReason,
    },
    /// A CHILD_SA pair was created (first or additional).
    ChildEstablished {
        /// The IKE SA.
        ike: IkeSaId,
        /// The tunnel slot.
        child: ChildId,
        /// Our inbound SPI, the peer's (our outbound).
        spis: (u32, u32),
    },
    /// A CHILD_SA was rekeyed: old and new SPI pairs (inbound, outbound).
    ChildRekeyed {
        /// The IKE SA.
        ike: IkeSaId,
        /// The tunnel slot.
        child: ChildId,
        /// Old (inbound, outbound).
        old: (u32, u32),
        /// New (inbound, outbound).
        new: (u32, u32),
    },
    /// A CHILD_SA pair is gone.
    ChildDeleted {
        /// The IKE SA.
        ike: IkeSaId,
        /// The tunnel slot.
        child: ChildId,
        /// (inbound, outbound).
        spis: (u32, u32),
        /// Why.
        reason: DeleteReason,
    },
    /// No proposal in common: ours and the peer's, in strongSwan syntax.
    NoProposalChosen {
        /// The IKE SA (None during IKE_SA_INIT as responder).
        ike: Option<IkeSaId>,
        /// Where the peer is.
        remote: SocketAddr,
        /// Our proposals.
        ours: String,
        /// The peer's.
        theirs: String,
    },
    /// The peer's AUTH did not verify, or the peer refused ours.
    AuthenticationFailed {
        /// The IKE SA.
        ike: IkeSaId,
        /// The configured peer it was for (the responder's candidate by address), if any:
        /// the IKE SA is gone by the time the event is read.
        peer: Option<usize>,
        /// Where the peer is.
        remote: SocketAddr,
        /// True if the peer refused our AUTH (AUTHENTICATION_FAILED notify).
        by_peer: bool,
    },
    /// An exchange failed with an error notify (sent or received).
    ExchangeFailed {
        /// The IKE SA.
        ike: IkeSaId,
        /// The error.
        notify: NotifyType,
        /// True if the peer sent it.
        by_peer: bool,
    },
    /// An authenticated request came from another address or port than the IKE SA's: the
    /// peer's NAT mapping changed (§2.23). IKE answers go there already; the CHILD_SAs'
    /// outbound SAs must follow.
    PeerMoved {
        /// The IKE SA.
        ike: IkeSaId,
        /// Where the peer is now (address and port).
        remote: SocketAddr,
    },
    /// The peer's requests went unanswered (or the caller's DPD timeout ran out).
    PeerDead {
        /// The IKE SA.
        ike: IkeSaId,
        /// Where the peer was.
        remote: SocketAddr,
    },
}

/// Counters of the endpoint (never reset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams fed in.
    pub datagrams_received: u64,
    /// Datagrams handed out.
    pub datagrams_sent: u64,
    /// NAT-T keepalives received.
    pub natt_keepalives: u64,
    /// Datagrams on port 4500 without the non-ESP marker.
    pub non_ike_on_natt_port: u64,
    /// Too short or malformed IKE header.
    pub invalid_header: u64,
    /// Major version other than 2.
    pub invalid_major_version: u64,
    /// No IKE SA with that SPI.
    pub unknown_ike_spi: u64,
    /// Malformed messages (INVALID_SYNTAX or dropped).
    pub invalid_syntax: u64,
    /// Unknown critical payloads.
    pub unsupported_critical: u64,
    /// SK payloads whose ICV did not verify.
    pub integrity_failed: u64,
    /// Retransmitted requests answered from the cache.
    pub retransmitted_requests: u64,
    /// Requests outside the window, or responses to nothing outstanding: ignored.
    pub out_of_window: u64,
    /// Our requests retransmitted.
    pub retransmits: u64,
    /// IKE_SA_INIT requests answered with a COOKIE.
    pub cookies_sent: u64,
    /// IKE_SA_INIT requests with a wrong or stale cookie.
    pub bad_cookies: u64,
    /// IKE_SA_INIT requests dropped at the half-open limit.
    pub half_open_dropped: u64,
    /// IKE_SA_INIT requests from addresses no peer is configured for.
    pub no_peer_config: u64,
    /// Half-open IKE SAs that expired.
    pub half_open_expired: u64,
    /// INVALID_KE_PAYLOAD sent.
    pub invalid_ke_sent: u64,
    /// NO_PROPOSAL_CHOSEN sent or received.
    pub no_proposal_chosen: u64,
    /// AUTHENTICATION_FAILED sent or received.
    pub authentication_failed: u64,
    /// TS_UNACCEPTABLE sent or received.
    pub ts_unacceptable: u64,
    /// TEMPORARY_FAILURE sent.
    pub temporary_failure_sent: u64,
    /// TEMPORARY_FAILURE received.
    pub temporary_failure_received: u64,
    /// CHILD_SA_NOT_FOUND sent.
    pub child_sa_not_found_sent: u64,
    /// Rekey collisions seen (§2.8.1).
    pub rekey_collisions: u64,
    /// Fragments received that were dropped (see the reassembler's reason).
    pub fragments_dropped: u64,
}

impl Stats {
    /// Every counter with its name (the field's), in declaration order.
    pub fn named(&self) -> [(&'static str, u64); 27] {
        [
            ("datagrams_received", self.datagrams_received),
            ("datagrams_sent", self.datagrams_sent),
            ("natt_keepalives", self.natt_keepalives),
            ("non_ike_on_natt_port", self.non_ike_on_natt_port),
            ("invalid_header", self.invalid_header),
            ("invalid_major_version", self.invalid_major_version),
            ("unknown_ike_spi", self.unknown_ike_spi),
            ("invalid_syntax", self.invalid_syntax),
            ("unsupported_critical", self.unsupported_critical),
            ("integrity_failed", self.integrity_failed),
            ("retransmitted_requests", self.retransmitted_requests),
            ("out_of_window", self.out_of_window),
            ("retransmits", self.retransmits),
            ("cookies_sent", self.cookies_sent),
            ("bad_cookies", self.bad_cookies),
            ("half_open_dropped", self.half_open_dropped),
            ("no_peer_config", self.no_peer_config),
            ("half_open_expired", self.half_open_expired),
            ("invalid_ke_sent", self.invalid_ke_sent),
            ("no_proposal_chosen", self.no_proposal_chosen),
            ("authentication_failed", self.authentication_failed),
            ("ts_unacceptable", self.ts_unacceptable),
            ("temporary_failure_sent", self.temporary_failure_sent),
            (
                "temporary_failure_received",
                self.temporary_failure_received,
            ),
            ("child_sa_not_found_sent", self.child_sa_not_found_sent),
            ("rekey_collisions", self.rekey_collisions),
            ("fragments_dropped", self.fragments_dropped),
        ]
    }
}

/// The queues of an endpoint.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    pub transmits: VecDeque<Transmit>,
    pub actions: VecDeque<Action>,
    pub events: VecDeque<Event>,
    pub stats: Stats,
}

impl Outputs {
    pub fn send(&mut self, local: SocketAddr, remote: SocketAddr, message: Vec<u8>) {
        let payload = if local.port() == crate::NATT_PORT {
            let mut p = Vec::with_capacity(message.len() + 4);
            p.extend_from_slice(&[0, 0, 0, 0]);
            p.extend_from_slice(&message);
            p
        } else {
            message
        };
        self.stats.datagrams_sent += 1;
        self.transmits.push_back(Transmit {
            local,
            remote,
            payload,
        });
    }

    pub fn action(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    pub fn event(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// NO_PROPOSAL_CHOSEN: counted, and an event naming both sides' offers.
    pub fn no_proposal<P: core::fmt::Display>(
        &mut self,
        ike: Option<IkeSaId>,
        remote: SocketAddr,
        ours: &[P],
        theirs: String,
    ) {
        self.stats.no_proposal_chosen += 1;
        let ours: Vec<String> = ours.iter().map(ToString::to_string).collect();
        self.event(Event::NoProposalChosen {
            ike,
            remote,
            ours: ours.join(", "),
            theirs,
        });
    }
}
