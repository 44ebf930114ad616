//! Group 14, the 2048-bit MODP group of RFC 3526 §3 (generator 2), with crypto-bigint's
//! constant-time Montgomery exponentiation.
//!
//! The private exponent is 320 random bits. RFC 3526 §8 puts the strength of this group at 110
//! to 160 bits and asks for an exponent of twice the strength, 220 to 320 bits; 320 covers the
//! upper estimate (and NIST SP 800-56A's 2 × 112 bits) at a sixth of the cost of a full-width
//! exponent. The exponentiation runs in time independent of the exponent's value.

use crypto_bigint::modular::ConstMontyForm;
use crypto_bigint::{U320, U2048};
use zeroize::Zeroizing;

use super::GENERATE_ATTEMPTS;
use crate::crypto::CryptoError;
use crate::rng::Random;
use crate::secret::Secret;

/// Octets of a public value and of g^ir: the length of the modulus (§3.4, §2.14).
pub(super) const PUBLIC_LEN: usize = 256;
/// Octets of a private exponent drawn from [`Random`] (320 bits).
const EXPONENT_LEN: usize = 40;

/// p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 } (RFC 3526 §3).
const P_HEX: &str = "\
    FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
    020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
    4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED\
    EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05\
    98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB\
    9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B\
    E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718\
    3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";

crypto_bigint::const_monty_params!(
    Modp2048,
    U2048,
    P_HEX,
    "The 2048-bit MODP prime (RFC 3526 §3)."
);

type Element = ConstMontyForm<Modp2048, { U2048::LIMBS }>;

const P: U2048 = U2048::from_be_hex(P_HEX);
const P_MINUS_1: U2048 = P.wrapping_sub(&U2048::ONE);
const GENERATOR: U2048 = U2048::from_u8(2);

/// A private exponent, wiped when dropped.
pub(super) struct Exponent(Zeroizing<U320>);

/// Draws an exponent from `rng` and returns it with g^x, 256 octets big-endian. The exponent
/// zero, whose public value 1 the peer would refuse, is redrawn.
pub(super) fn generate(rng: &mut dyn Random) -> Result<(Exponent, Vec<u8>), CryptoError> {
    let mut bytes = Zeroizing::new([0u8; EXPONENT_LEN]);
    for _ in 0..GENERATE_ATTEMPTS {
        rng.fill(&mut bytes[..]);
        let exponent = Exponent(Zeroizing::new(U320::from_be_slice(&bytes[..])));
        let public = power(&GENERATOR, &exponent);
        if is_valid_public(&public) {
            return Ok((exponent, to_octets(&public).to_vec()));
        }
    }
    Err(CryptoError::KeyGeneration)
}

/// g^ir = peer^x mod p, left-padded to 256 octets, after checking 1 < peer < p-1, which
/// excludes the elements of order 1 and 2 (and values that are not reduced mod p).
pub(super) fn agree(exponent: &Exponent, peer: &[u8]) -> Result<Secret, CryptoError> {
    let peer: &[u8; PUBLIC_LEN] = peer
        .try_into()
        .map_err(|_| CryptoError::InvalidPublicValue)?;
    let y = U2048::from_be_slice(peer);
    if !is_valid_public(&y) {
        return Err(CryptoError::InvalidPublicValue);
    }
    let shared = Zeroizing::new(power(&y, exponent));
    Ok(Secret::from_slice(&to_octets(&shared)[..]))
}

/// base^x mod p in constant time (the exponent's 320 bits are all processed).
fn power(base: &U2048, exponent: &Exponent) -> U2048 {
    let result = Zeroizing::new(Element::new(base).pow(&*exponent.0));
    result.retrieve()
}

fn is_valid_public(y: &U2048) -> bool {
    *y > U2048::ONE && *y < P_MINUS_1
}

/// Big-endian octets, always [`PUBLIC_LEN`] long.
fn to_octets(value: &U2048) -> Zeroizing<[u8; PUBLIC_LEN]> {
    let mut out = Zeroizing::new([0u8; PUBLIC_LEN]);
    let encoded = Zeroizing::new(value.to_be_bytes());
    out.copy_from_slice(encoded.as_slice());
    out
}

#[cfg(test)]
mod tests {
    use super::super::DhAlg;
    use super::super::tests::Replay;
    use super::*;
    use crate::rng::TestRandom;

    fn exponent(value: u8) -> [u8; EXPONENT_LEN] {
        let mut x = [0u8; EXPONENT_LEN];
        x[EXPONENT_LEN - 1] = value;
        x
    }

    fn padded(value: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; PUBLIC_LEN - value.len()];
        out.extend_from_slice(value);
        out
    }

    /// The modulus typed in from RFC 3526 is a safe prime with 2 generating the subgroup of
    /// order q = (p-1)/2: a typo would break g^q = 1.
    #[test]
    fn modulus_is_rfc3526_group_14() {
        assert_eq!(P.to_be_bytes().as_slice()[..8], [0xff; 8]);
        assert_eq!(P.to_be_bytes().as_slice()[PUBLIC_LEN - 8..], [0xff; 8]);
        let q = P_MINUS_1.shr_vartime(1);
        let g_q = Element::new(&GENERATOR).pow_vartime(&q).retrieve();
        assert_eq!(g_q, U2048::ONE);
    }

    /// Private exponents 1, 2 and 3 have public values 2, 4 and 8, left-padded.
    #[test]
    fn small_exponents_give_powers_of_two() {
        for (x, public) in [(1, 2), (2, 4), (3, 8)] {
            let (_, got) = DhAlg::Modp2048.generate(&mut Replay(&exponent(x))).unwrap();
            assert_eq!(got, padded(&[public]), "x = {x}");
        }
    }

    /// With x = 2 the shared secret is peer^2 mod p: 3^2 = 9, and (p-2)^2 = 4 mod p.
    #[test]
    fn agreement_known_answers() {
        let p_minus_2 = P.wrapping_sub(&U2048::from_u8(2)).to_be_bytes();
        let cases: [(Vec<u8>, Vec<u8>); 2] = [
            (padded(&[3]), padded(&[9])),
            (p_minus_2.as_slice().to_vec(), padded(&[4])),
        ];
        for (peer, shared) in cases {
            let (key, _) = DhAlg::Modp2048.generate(&mut Replay(&exponent(2))).unwrap();
            assert_eq!(key.agree(&peer).unwrap().expose(), shared.as_slice());
        }
    }

    #[test]
    fn shared_secret_is_left_padded() {
        // 2^8 = 256 needs two octets; the rest of the 256 are leading zeros.
        let (key, _) = DhAlg::Modp2048.generate(&mut Replay(&exponent(8))).unwrap();
        let shared = key.agree(&padded(&[2])).unwrap();
        assert_eq!(shared.expose(), padded(&[1, 0]).as_slice());
    }

    #[test]
    fn unsafe_peer_values_are_refused() {
        let p = P.to_be_bytes().as_slice().to_vec();
        let p_minus_1 = P_MINUS_1.to_be_bytes().as_slice().to_vec();
        let p_plus_1 = P
            .wrapping_add(&U2048::ONE)
            .to_be_bytes()
            .as_slice()
            .to_vec();
        let bad = [
            padded(&[]),
            padded(&[1]),
            p_minus_1,
            p,
            p_plus_1,
            vec![0xff; PUBLIC_LEN],
            vec![2; PUBLIC_LEN - 1],
            vec![2; PUBLIC_LEN + 1],
            Vec::new(),
        ];
        let mut rng = TestRandom::new(4);
        for peer in bad {
            let (key, _) = DhAlg::Modp2048.generate(&mut rng).unwrap();
            assert_eq!(
                key.agree(&peer).unwrap_err(),
                CryptoError::InvalidPublicValue,
                "{}",
                hex::encode(&peer)
            );
        }
    }

    /// Exponent zero is redrawn; a source giving only zeros fails.
    #[test]
    fn zero_exponent_is_redrawn_then_refused() {
        let zero_then_two = [exponent(0), exponent(2)].concat();
        let (_, public) = DhAlg::Modp2048
            .generate(&mut Replay(&zero_then_two))
            .unwrap();
        assert_eq!(public, padded(&[4]));
        let zeros = vec![0u8; EXPONENT_LEN * GENERATE_ATTEMPTS];
        assert_eq!(
            DhAlg::Modp2048.generate(&mut Replay(&zeros)).unwrap_err(),
            CryptoError::KeyGeneration
        );
    }
}
