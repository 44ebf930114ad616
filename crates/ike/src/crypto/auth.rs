//! The shared-key message integrity code of the AUTH payload (RFC 7296 §2.15):
//!
//! ```text
//! AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets> )
//! SignedOctets = RealMessage | Nonce of the peer | prf(SK_p, RestOfIDPayload)
//! ```
//!
//! The initiator signs its IKE_SA_INIT request, Nr and prf(SK_pi, IDi body); the responder
//! its IKE_SA_INIT response, Ni and prf(SK_pr, IDr body). The ID body (RestOfIDPayload) is the
//! ID payload after its generic header: ID type, 3 reserved octets, identification data.

use super::prf::PrfAlg;
use crate::secret::Secret;

/// The key pad of §2.15, 17 ASCII octets without a terminator.
const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The AUTH payload data for shared-key authentication (§2.15), of `prf.output_len()` octets.
///
/// `real_message` is the sender's own IKE_SA_INIT message as sent, `peer_nonce` the nonce
/// data of the other side, `sk_p` the sender's SK_pi or SK_pr, `id_body` the sender's ID
/// payload body.
pub fn psk_auth(
    prf: PrfAlg,
    psk: &[u8],
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
) -> Secret {
    let key = prf.prf(psk, &[KEY_PAD]);
    let maced_id = prf.prf(sk_p, &[id_body]);
    prf.prf(key.expose(), &[real_message, peer_nonce, maced_id.expose()])
}

/// Whether `received` is the AUTH data [`psk_auth`] computes from the same inputs (the
/// peer's message, nonce of this side, the peer's SK_p and ID body). The comparison takes
/// time independent of where the values differ.
pub fn verify_psk_auth(
    prf: PrfAlg,
    psk: &[u8],
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &[u8],
    id_body: &[u8],
    received: &[u8],
) -> bool {
    psk_auth(prf, psk, real_message, peer_nonce, sk_p, id_body).ct_eq(received)
}

#[cfg(test)]
mod tests {
    use ring::hmac;

    use super::*;

    const PSK: &[u8] = b"a pre-shared key";
    const MESSAGE: &[u8] = b"IKE_SA_INIT request octets as sent";
    const NONCE: &[u8] = &[0x42; 32];
    const SK_P: &[u8] = &[0x17; 32];
    /// ID_FQDN (2), 3 reserved octets, "vpn.example".
    const ID_BODY: &[u8] = b"\x02\x00\x00\x00vpn.example";

    #[test]
    fn psk_auth_matches_hand_computation() {
        let pad_key = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, PSK),
            b"Key Pad for IKEv2",
        );
        let maced_id = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SK_P), ID_BODY);
        let signed_octets = [MESSAGE, NONCE, maced_id.as_ref()].concat();
        let expected = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, pad_key.as_ref()),
            &signed_octets,
        );
        let got = psk_auth(PrfAlg::HmacSha256, PSK, MESSAGE, NONCE, SK_P, ID_BODY);
        assert_eq!(got.expose(), expected.as_ref());
    }

    #[test]
    fn auth_length_is_the_prf_output() {
        for prf in PrfAlg::ALL {
            let auth = psk_auth(prf, PSK, MESSAGE, NONCE, SK_P, ID_BODY);
            assert_eq!(auth.len(), prf.output_len());
        }
    }

    #[test]
    fn verify_accepts_the_value_and_rejects_any_single_bit_change() {
        for prf in PrfAlg::ALL {
            let auth = psk_auth(prf, PSK, MESSAGE, NONCE, SK_P, ID_BODY);
            let verify = |received: &[u8]| {
                verify_psk_auth(prf, PSK, MESSAGE, NONCE, SK_P, ID_BODY, received)
            };
            assert!(verify(auth.expose()));
            for bit in 0..auth.len() * 8 {
                let mut flipped = auth.expose().to_vec();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert!(!verify(&flipped), "{prf:?} bit {bit}");
            }
            assert!(!verify(&auth.expose()[..auth.len() - 1]));
            assert!(!verify(&[auth.expose(), &[0]].concat()));
            assert!(!verify(&[]));
        }
    }

    #[test]
    fn every_input_is_covered() {
        let auth = psk_auth(PrfAlg::HmacSha256, PSK, MESSAGE, NONCE, SK_P, ID_BODY);
        let other = b"x";
        let changed = [
            (other.as_slice(), MESSAGE, NONCE, SK_P, ID_BODY),
            (PSK, other, NONCE, SK_P, ID_BODY),
            (PSK, MESSAGE, other, SK_P, ID_BODY),
            (PSK, MESSAGE, NONCE, other, ID_BODY),
            (PSK, MESSAGE, NONCE, SK_P, other),
        ];
        for (psk, message, nonce, sk_p, id) in changed {
            assert!(!verify_psk_auth(
                PrfAlg::HmacSha256,
                psk,
                message,
                nonce,
                sk_p,
                id,
                auth.expose()
            ));
        }
    }
}
