//! Authentication of the IKE SA (RFC 7296 §2.15): what the exchanges ask of a method.
//!
//! The exchanges hand an [`Authenticator`] the octets to be signed and get back an AUTH
//! payload, or ask it to verify the peer's; they know nothing of the method. PSK (shared key
//! message integrity code) is built; certificates (RFC 7427 digital signatures) and EAP add
//! variants here without touching the exchanges.

use core::fmt;

use crate::crypto::auth::{psk_auth, verify_psk_auth};
use crate::crypto::prf::PrfAlg;
use crate::msgs::{AuthMethod, AuthPayload};
use crate::secret::Secret;

/// The octets one side signs (§2.15): its own IKE_SA_INIT message, the peer's nonce and
/// prf(SK_p, RestOfIDPayload).
#[derive(Clone, Copy)]
pub struct SignedOctets<'a> {
    /// The IKE_SA_INIT message this side sent, exactly as sent.
    pub real_message: &'a [u8],
    /// The other side's nonce.
    pub peer_nonce: &'a [u8],
    /// SK_pi for the initiator, SK_pr for the responder.
    pub sk_p: &'a [u8],
    /// ID type, three reserved octets and the identification data of this side.
    pub id_body: &'a [u8],
}

/// How one side proves its identity and checks the peer's.
#[derive(Clone)]
pub enum Authenticator {
    /// Shared key message integrity code with this pre-shared key (method 2).
    Psk(Secret),
}

impl Authenticator {
    /// The AUTH method this authenticator produces and expects.
    pub fn method(&self) -> AuthMethod {
        match self {
            Authenticator::Psk(_) => AuthMethod::SHARED_KEY_MIC,
        }
    }

    /// The AUTH payload for our side.
    pub fn sign(&self, prf: PrfAlg, o: &SignedOctets<'_>) -> AuthPayload {
        match self {
            Authenticator::Psk(psk) => AuthPayload {
                method: AuthMethod::SHARED_KEY_MIC,
                data: psk_auth(
                    prf,
                    psk.expose(),
                    o.real_message,
                    o.peer_nonce,
                    o.sk_p,
                    o.id_body,
                )
                .expose()
                .to_vec(),
            },
        }
    }

    /// Whether the peer's AUTH payload proves the identity in `o` (constant time for PSK).
    pub fn verify(&self, prf: PrfAlg, o: &SignedOctets<'_>, received: &AuthPayload) -> bool {
        match self {
            Authenticator::Psk(psk) => {
                received.method == AuthMethod::SHARED_KEY_MIC
                    && verify_psk_auth(
                        prf,
                        psk.expose(),
                        o.real_message,
                        o.peer_nonce,
                        o.sk_p,
                        o.id_body,
                        &received.data,
                    )
            }
        }
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authenticator::Psk(_) => f.write_str("Psk([redacted])"),
        }
    }
}
