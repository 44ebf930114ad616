//! Diffie-Hellman for the KE payload (RFC 7296 §2.7, §3.4): group 14 (2048-bit MODP,
//! RFC 3526), groups 19 and 20 (256- and 384-bit random ECP, RFC 5903) and group 31
//! (Curve25519, RFC 8031).
//!
//! All randomness comes from the caller's [`Random`], so a seeded generator replays a key
//! exchange exactly. Each group draws a fixed number of octets per attempt (40 for group 14,
//! 32 for groups 19 and 31, 48 for group 20); a draw that gives no valid private value is
//! redrawn, which for a working generator happens with probability below 2^-32.

mod ecdh;
mod modp;

use core::fmt;

use ring::agreement::EphemeralPrivateKey;

use super::CryptoError;
use crate::rng::Random;
use crate::secret::Secret;

/// How often a private value is drawn before generation gives up: only a broken random
/// source fails this many times.
const GENERATE_ATTEMPTS: usize = 8;

/// A Diffie-Hellman group (IANA "Transform Type 4 - Key Exchange Method Transform IDs").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhAlg {
    /// 2048-bit MODP group, ID 14 (RFC 3526 §3).
    Modp2048,
    /// 256-bit random ECP group (NIST P-256), ID 19 (RFC 5903 §3.1).
    Ecp256,
    /// 384-bit random ECP group (NIST P-384), ID 20 (RFC 5903 §3.2).
    Ecp384,
    /// Curve25519, ID 31 (RFC 8031).
    Curve25519,
}

enum Backend {
    Modp,
    Ring(&'static ecdh::RingGroup),
}

impl DhAlg {
    /// Every supported group.
    pub const ALL: [DhAlg; 4] = [
        DhAlg::Modp2048,
        DhAlg::Ecp256,
        DhAlg::Ecp384,
        DhAlg::Curve25519,
    ];

    /// The group with IANA transform ID `id`, if supported.
    pub fn from_id(id: u16) -> Option<DhAlg> {
        Self::ALL.into_iter().find(|alg| alg.id() == id)
    }

    /// The IANA transform ID (the Diffie-Hellman Group Num of the KE payload, §3.4).
    pub fn id(self) -> u16 {
        match self {
            DhAlg::Modp2048 => 14,
            DhAlg::Ecp256 => 19,
            DhAlg::Ecp384 => 20,
            DhAlg::Curve25519 => 31,
        }
    }

    /// Length of the public value in the KE payload: the modulus length for MODP (§3.4),
    /// x ‖ y for ECP (RFC 5903 §7), the u-coordinate for Curve25519 (RFC 8031 §3).
    pub fn public_len(self) -> usize {
        match self.backend() {
            Backend::Modp => modp::PUBLIC_LEN,
            Backend::Ring(group) => group.public_len,
        }
    }

    fn backend(self) -> Backend {
        match self {
            DhAlg::Modp2048 => Backend::Modp,
            DhAlg::Ecp256 => Backend::Ring(&ecdh::ECP256),
            DhAlg::Ecp384 => Backend::Ring(&ecdh::ECP384),
            DhAlg::Curve25519 => Backend::Ring(&ecdh::CURVE25519),
        }
    }

    /// Draws a private value from `rng` and returns it with the public value in KE payload
    /// format ([`DhAlg::public_len`] octets). Errors only if `rng` repeatedly gives no usable
    /// private value ([`CryptoError::KeyGeneration`]).
    pub fn generate(self, rng: &mut dyn Random) -> Result<(DhPrivate, Vec<u8>), CryptoError> {
        let (key, public) = match self.backend() {
            Backend::Modp => {
                let (exponent, public) = modp::generate(rng)?;
                (Key::Modp(exponent), public)
            }
            Backend::Ring(group) => {
                let (key, public) = ecdh::generate(group, rng)?;
                (Key::Ring(group, key), public)
            }
        };
        Ok((DhPrivate { alg: self, key }, public))
    }
}

/// A Diffie-Hellman private value, used once by [`DhPrivate::agree`].
///
/// The group 14 exponent is wiped when dropped. The ECP and Curve25519 keys are ring's
/// `EphemeralPrivateKey`, which does not wipe its memory and cannot be wiped from outside;
/// neither are ring's temporary copies of the shared secret, nor crypto-bigint's stack
/// temporaries during exponentiation. `Debug` shows only the group.
pub struct DhPrivate {
    alg: DhAlg,
    key: Key,
}

enum Key {
    Modp(modp::Exponent),
    Ring(&'static ecdh::RingGroup, EphemeralPrivateKey),
}

impl DhPrivate {
    /// The group of this private value.
    pub fn alg(&self) -> DhAlg {
        self.alg
    }

    /// Computes g^ir with the peer's KE public value, after validating it: exact length,
    /// 1 < y < p-1 for MODP, a point on the curve for ECP (RFC 5903 §7 gives x only as the
    /// result), and no all-zero X25519 result (RFC 7748 §6.1, RFC 8031 §2.3). The MODP result
    /// is left-padded to the modulus length (§2.14).
    pub fn agree(self, peer_public: &[u8]) -> Result<Secret, CryptoError> {
        if peer_public.len() != self.alg.public_len() {
            return Err(CryptoError::InvalidPublicValue);
        }
        match self.key {
            Key::Modp(exponent) => modp::agree(&exponent, peer_public),
            Key::Ring(group, key) => ecdh::agree(group, key, peer_public),
        }
    }
}

impl fmt::Debug for DhPrivate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhPrivate")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::TestRandom;

    /// A [`Random`] that hands out given octets in order, for known-answer tests with fixed
    /// private values.
    pub(super) struct Replay<'a>(pub(super) &'a [u8]);

    impl Random for Replay<'_> {
        fn fill(&mut self, dest: &mut [u8]) {
            let (now, rest) = self.0.split_at(dest.len());
            dest.copy_from_slice(now);
            self.0 = rest;
        }
    }

    pub(super) fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    #[test]
    fn ids_and_lengths() {
        let table = [
            (DhAlg::Modp2048, 14, 256),
            (DhAlg::Ecp256, 19, 64),
            (DhAlg::Ecp384, 20, 96),
            (DhAlg::Curve25519, 31, 32),
        ];
        for (alg, id, len) in table {
            assert_eq!(alg.id(), id);
            assert_eq!(DhAlg::from_id(id), Some(alg));
            assert_eq!(alg.public_len(), len);
        }
        for unsupported in [0, 1, 2, 5, 15, 21, 32, 0xffff] {
            assert_eq!(DhAlg::from_id(unsupported), None);
        }
    }

    #[test]
    fn agreement_is_symmetric_in_every_group() {
        // g^ir: the modulus length for MODP (§2.14), x alone for ECP (RFC 5903 §7).
        let shared_len = [
            (DhAlg::Modp2048, 256),
            (DhAlg::Ecp256, 32),
            (DhAlg::Ecp384, 48),
            (DhAlg::Curve25519, 32),
        ];
        let mut rng = TestRandom::new(1);
        for (alg, len) in shared_len {
            let (a, a_pub) = alg.generate(&mut rng).unwrap();
            let (b, b_pub) = alg.generate(&mut rng).unwrap();
            assert_eq!(a.alg(), alg);
            assert_eq!(a_pub.len(), alg.public_len());
            assert_ne!(a_pub, b_pub);
            let ab = a.agree(&b_pub).unwrap();
            let ba = b.agree(&a_pub).unwrap();
            assert_eq!(ab.expose(), ba.expose(), "{alg:?}");
            assert_eq!(ab.len(), len, "{alg:?}");
        }
    }

    #[test]
    fn generation_replays_from_the_seed() {
        for alg in DhAlg::ALL {
            let (_, first) = alg.generate(&mut TestRandom::new(9)).unwrap();
            let (_, again) = alg.generate(&mut TestRandom::new(9)).unwrap();
            let (_, other) = alg.generate(&mut TestRandom::new(10)).unwrap();
            assert_eq!(first, again, "{alg:?}");
            assert_ne!(first, other, "{alg:?}");
        }
    }

    #[test]
    fn wrong_lengths_are_refused() {
        let mut rng = TestRandom::new(2);
        for alg in DhAlg::ALL {
            let (_, public) = alg.generate(&mut rng).unwrap();
            let mut tagged = vec![0x04];
            tagged.extend_from_slice(&public);
            let bad = [
                Vec::new(),
                public[..public.len() - 1].to_vec(),
                [public.as_slice(), &[0]].concat(),
                tagged,
            ];
            for peer in bad {
                let (key, _) = alg.generate(&mut rng).unwrap();
                assert_eq!(
                    key.agree(&peer).unwrap_err(),
                    CryptoError::InvalidPublicValue,
                    "{alg:?} {} octets",
                    peer.len()
                );
            }
        }
    }

    #[test]
    fn debug_shows_only_the_group() {
        let mut rng = TestRandom::new(3);
        for alg in DhAlg::ALL {
            let (key, _) = alg.generate(&mut rng).unwrap();
            assert_eq!(
                format!("{key:?}"),
                format!("DhPrivate {{ alg: {alg:?}, .. }}")
            );
        }
    }
}
