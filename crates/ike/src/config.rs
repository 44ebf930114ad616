//! What the library needs to know: timers and limits of the endpoint, and per peer the
//! proposals, identities, credentials and traffic selectors. Built by the daemon from its YAML
//! (crates/config); nothing here parses files.

use std::net::IpAddr;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::msgs::{IdType, Identification, TrafficSelector};
use crate::proposal::{EspProposal, IkeProposal};

/// Retransmission of our requests (RFC 7296 §2.1): the n-th wait is
/// `min(base · factorⁿ, max_wait)`; after `tries` transmissions without an answer the peer is
/// declared dead.
#[derive(Clone, Debug, PartialEq)]
pub struct Retransmit {
    /// First wait.
    pub base: Duration,
    /// Growth of each following wait.
    pub factor: f64,
    /// Upper bound of one wait.
    pub max_wait: Duration,
    /// Transmissions in all (the first one included).
    pub tries: u32,
}

impl Default for Retransmit {
    /// Waits of 1, 2, 4, 8 and 16 s: the peer is declared dead 31 s after the first
    /// transmission (strongSwan's default, 4 s · 1.8ⁿ over 5 retransmits, takes ≈165 s).
    fn default() -> Self {
        Retransmit {
            base: Duration::from_secs(1),
            factor: 2.0,
            max_wait: Duration::from_secs(16),
            tries: 5,
        }
    }
}

impl Retransmit {
    /// The wait after transmission number `sent` (1-based). When the wait after
    /// transmission number `tries` ends unanswered, the request is given up.
    pub fn wait_after(&self, sent: u32) -> Duration {
        let exp = i32::try_from(sent.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.factor.powi(exp);
        Duration::from_secs_f64(secs.min(self.max_wait.as_secs_f64()))
    }

    /// Total time from the first transmission until the request is given up.
    pub fn give_up_after(&self) -> Duration {
        (1..=self.tries).map(|n| self.wait_after(n)).sum()
    }
}

/// Settings of the whole IKE endpoint.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Retransmission schedule of requests.
    pub retransmit: Retransmit,
    /// Messages larger than this (the UDP payload) are sent as RFC 7383 fragments when the
    /// peer supports them.
    pub fragment_size: usize,
    /// Fragments one message may have, and bytes one reassembled message may hold.
    pub max_fragments: u16,
    /// Upper bound of a reassembled message.
    pub max_message: usize,
    /// Half-open IKE SAs (responded to IKE_SA_INIT, no IKE_AUTH yet) above which cookies are
    /// demanded (§2.6).
    pub cookie_threshold: usize,
    /// Half-open IKE SAs at most; further IKE_SA_INIT requests are dropped and counted.
    pub half_open_limit: usize,
    /// How long a half-open IKE SA is kept.
    pub half_open_timeout: Duration,
    /// How often the cookie secret changes; the previous one stays valid for one period.
    pub cookie_rotation: Duration,
    /// Delay before retrying an exchange the peer answered with TEMPORARY_FAILURE (§2.25),
    /// plus up to the same again at random.
    pub temporary_failure_retry: Duration,
    /// The responder of a new (not rekeyed) CHILD_SA activates its outbound SA on the first
    /// packet that arrives on the new inbound SA, on the peer's next request, or after this
    /// long, whichever comes first (the initiator installs when our response arrives).
    pub initial_child_activation: Duration,
    /// An IKE SA whose DELETE went unanswered, or a replaced IKE SA not deleted by the peer,
    /// is dropped after this long.
    pub delete_timeout: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            retransmit: Retransmit::default(),
            fragment_size: 1280,
            max_fragments: 64,
            max_message: 64 * 1024,
            cookie_threshold: 512,
            half_open_limit: 16384,
            half_open_timeout: Duration::from_secs(30),
            cookie_rotation: Duration::from_secs(120),
            temporary_failure_retry: Duration::from_secs(2),
            initial_child_activation: Duration::from_secs(2),
            delete_timeout: Duration::from_secs(30),
        }
    }
}

/// An IKE identity (RFC 7296 §3.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// ID_IPV4_ADDR / ID_IPV6_ADDR.
    Addr(IpAddr),
    /// ID_FQDN, e.g. `vpn.example.com`.
    Fqdn(String),
    /// ID_RFC822_ADDR, e.g. `user@example.com`.
    Rfc822(String),
    /// ID_KEY_ID: opaque octets.
    KeyId(Vec<u8>),
}

impl Identity {
    /// The Identification payload body.
    pub fn to_wire(&self) -> Identification {
        let (id_type, data) = match self {
            Identity::Addr(IpAddr::V4(a)) => (IdType::IPV4_ADDR, a.octets().to_vec()),
            Identity::Addr(IpAddr::V6(a)) => (IdType::IPV6_ADDR, a.octets().to_vec()),
            Identity::Fqdn(s) => (IdType::FQDN, s.as_bytes().to_vec()),
            Identity::Rfc822(s) => (IdType::RFC822_ADDR, s.as_bytes().to_vec()),
            Identity::KeyId(k) => (IdType::KEY_ID, k.clone()),
        };
        Identification { id_type, data }
    }

    /// The identity a received Identification payload names, if it is of a supported type.
    pub fn from_wire(id: &Identification) -> Option<Identity> {
        let text = || String::from_utf8(id.data.clone()).ok();
        match id.id_type {
            IdType::IPV4_ADDR => {
                let o: [u8; 4] = id.data.as_slice().try_into().ok()?;
                Some(Identity::Addr(IpAddr::from(o)))
            }
            IdType::IPV6_ADDR => {
                let o: [u8; 16] = id.data.as_slice().try_into().ok()?;
                Some(Identity::Addr(IpAddr::from(o)))
            }
            IdType::FQDN => text().map(Identity::Fqdn),
            IdType::RFC822_ADDR => text().map(Identity::Rfc822),
            IdType::KEY_ID => Some(Identity::KeyId(id.data.clone())),
            _ => None,
        }
    }
}

impl core::fmt::Display for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Identity::Addr(a) => write!(f, "{a}"),
            Identity::Fqdn(s) | Identity::Rfc822(s) => f.write_str(s),
            Identity::KeyId(k) => {
                f.write_str("keyid:")?;
                k.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// Whether ESP is encapsulated in UDP (RFC 3948).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encapsulation {
    /// UDP when a NAT is detected on either side (§2.23), raw ESP otherwise.
    Auto,
    /// Always UDP port 4500 (and IKE moves to 4500 after IKE_SA_INIT).
    Udp,
}

/// One configured peer (a tunnel's IKE side).
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The operator's name for it (logs, events).
    pub name: String,
    /// Our address towards this peer (IKE source address, NAT detection, ESP outer source).
    pub local_addr: IpAddr,
    /// The peer's address, or `None` to accept it from anywhere (as responder only).
    pub remote_addr: Option<IpAddr>,
    /// Our identity.
    pub local_id: Identity,
    /// The identity the peer must prove.
    pub remote_id: Identity,
    /// How we prove ours and check the peer's.
    pub auth: Authenticator,
    /// IKE proposals in preference order.
    pub ike_proposals: Vec<IkeProposal>,
    /// ESP proposals in preference order.
    pub esp_proposals: Vec<EspProposal>,
    /// Our side's traffic selectors (the networks behind us).
    pub local_ts: Vec<TrafficSelector>,
    /// The peer's side.
    pub remote_ts: Vec<TrafficSelector>,
    /// NAT-T behaviour.
    pub encapsulation: Encapsulation,
    /// Whether to send IKEV2_FRAGMENTATION_SUPPORTED and fragment large messages (RFC 7383).
    pub fragmentation: bool,
}
