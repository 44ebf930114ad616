//! Groups 19, 20 (ECP, RFC 5903) and 31 (Curve25519, RFC 8031) through ring's `agreement`.
//!
//! ring takes the private key's randomness only from its own sealed `SecureRandom` trait.
//! To draw it from our [`Random`] instead, the octets are drawn here and handed to ring through
//! `ring::test::rand::FixedSliceRandom`, ring 0.17's one public implementation that returns
//! given octets; ring validates them exactly as it validates its own draws (a P-256/P-384
//! scalar must lie in [1, n-1]; an X25519 scalar is clamped). That type is hidden and marked
//! "internal API that will be removed": moving past ring 0.17 means replacing this bridge.

use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey};
use zeroize::Zeroizing;

use super::GENERATE_ATTEMPTS;
use crate::crypto::CryptoError;
use crate::rng::Random;
use crate::secret::Secret;

/// The SEC 1 tag of an uncompressed point, which ring uses and IKE leaves out (RFC 5903 §7).
const SEC1_UNCOMPRESSED: u8 = 0x04;
/// The longest private value: a P-384 scalar.
const MAX_PRIVATE_LEN: usize = 48;

/// A group computed by ring.
pub(super) struct RingGroup {
    alg: &'static agreement::Algorithm,
    /// Octets of a private value, drawn from [`Random`] per attempt.
    private_len: usize,
    /// Octets of the KE payload's public value.
    pub(super) public_len: usize,
    /// Whether ring's public values carry the SEC 1 tag (ECP) or not (X25519).
    sec1: bool,
}

/// Group 19: x ‖ y of 32 octets each (RFC 5903 §7).
pub(super) static ECP256: RingGroup = RingGroup {
    alg: &agreement::ECDH_P256,
    private_len: 32,
    public_len: 64,
    sec1: true,
};

/// Group 20: x ‖ y of 48 octets each (RFC 5903 §7).
pub(super) static ECP384: RingGroup = RingGroup {
    alg: &agreement::ECDH_P384,
    private_len: 48,
    public_len: 96,
    sec1: true,
};

/// Group 31: the 32-octet u-coordinate (RFC 8031 §3, RFC 7748 §5).
pub(super) static CURVE25519: RingGroup = RingGroup {
    alg: &agreement::X25519,
    private_len: 32,
    public_len: 32,
    sec1: false,
};

/// Draws a private key from `rng` (redrawing while ring refuses the octets) and returns it
/// with its public value in KE payload format.
pub(super) fn generate(
    group: &'static RingGroup,
    rng: &mut dyn Random,
) -> Result<(EphemeralPrivateKey, Vec<u8>), CryptoError> {
    let mut buf = Zeroizing::new([0u8; MAX_PRIVATE_LEN]);
    let seed = &mut buf[..group.private_len];
    for _ in 0..GENERATE_ATTEMPTS {
        rng.fill(seed);
        if let Ok(key) = private_key_from(group.alg, seed) {
            let public = key
                .compute_public_key()
                .map_err(|_| CryptoError::KeyGeneration)?;
            let public = if group.sec1 {
                public.as_ref().strip_prefix(&[SEC1_UNCOMPRESSED])
            } else {
                Some(public.as_ref())
            };
            return public
                .map(|p| (key, p.to_vec()))
                .ok_or(CryptoError::KeyGeneration);
        }
    }
    Err(CryptoError::KeyGeneration)
}

/// ring's private key for exactly the octets `seed`, if ring accepts them.
#[allow(deprecated)] // the only way to give ring the octets; see the module comment.
fn private_key_from(
    alg: &'static agreement::Algorithm,
    seed: &[u8],
) -> Result<EphemeralPrivateKey, ring::error::Unspecified> {
    EphemeralPrivateKey::generate(alg, &ring::test::rand::FixedSliceRandom { bytes: seed })
}

/// The shared secret with `peer` (a KE public value of `group.public_len` octets): x alone for
/// ECP (RFC 5903 §7), the X25519 output for Curve25519. ring refuses points off the curve or
/// with coordinates not below p, and an all-zero X25519 output (RFC 7748 §6.1).
pub(super) fn agree(
    group: &RingGroup,
    key: EphemeralPrivateKey,
    peer: &[u8],
) -> Result<Secret, CryptoError> {
    let mut encoded = Vec::with_capacity(1 + peer.len());
    if group.sec1 {
        encoded.push(SEC1_UNCOMPRESSED);
    }
    encoded.extend_from_slice(peer);
    agreement::agree_ephemeral(
        key,
        &UnparsedPublicKey::new(group.alg, &encoded),
        Secret::from_slice,
    )
    .map_err(|_| CryptoError::InvalidPublicValue)
}

#[cfg(test)]
mod tests {
    use super::super::DhAlg;
    use super::super::tests::{Replay, unhex};
    use crate::crypto::CryptoError;

    /// One side of a known-answer test: private value, public value, shared secret.
    struct Kat {
        alg: DhAlg,
        private: &'static str,
        public: &'static str,
        peer_public: &'static str,
        shared: &'static str,
    }

    const P256_I: &str = "C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433";
    const P256_GI: &str = "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180
                           5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3";
    const P256_R: &str = "C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53";
    const P256_GR: &str = "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63
                           56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB";
    const P256_GIR: &str =
        "D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE";

    const P384_I: &str = "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655
                          E35B5380 41E649EE 3FAEF896 783AB194";
    const P384_GI: &str = "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6
                           DE3AC808 ACB4BDB4 C88732AE E95F41AA
                           9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E
                           EB9FCFF3 C2C947DA E69B4C63 4573A81C";
    const P384_R: &str = "41CB0779 B4BDB85D 47846725 FBEC3C94 30FAB46C C8DC5060 855CC9BD A0AA2942
                          E0308312 916B8ED2 960E4BD5 5A7448FC";
    const P384_GR: &str = "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D
                           0D1AC43A 0336DEF9 6FDA41D0 774A3571
                           DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF
                           F83FA401 42209DFF 5EAAD96D B9E6386C";
    const P384_GIR: &str = "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4
                            D6031355 69B9E9D0 9CF5D4A2 70F59746";

    const X25519_A: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const X25519_A_PUB: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const X25519_B: &str = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
    const X25519_B_PUB: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    const X25519_K: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

    /// RFC 5903 §8.1 (initiator i and responder r), §8.2 (likewise), RFC 7748 §6.1 (Alice
    /// and Bob): both sides of each exchange.
    const KATS: &[Kat] = &[
        Kat {
            alg: DhAlg::Ecp256,
            private: P256_I,
            public: P256_GI,
            peer_public: P256_GR,
            shared: P256_GIR,
        },
        Kat {
            alg: DhAlg::Ecp256,
            private: P256_R,
            public: P256_GR,
            peer_public: P256_GI,
            shared: P256_GIR,
        },
        Kat {
            alg: DhAlg::Ecp384,
            private: P384_I,
            public: P384_GI,
            peer_public: P384_GR,
            shared: P384_GIR,
        },
        Kat {
            alg: DhAlg::Ecp384,
            private: P384_R,
            public: P384_GR,
            peer_public: P384_GI,
            shared: P384_GIR,
        },
        Kat {
            alg: DhAlg::Curve25519,
            private: X25519_A,
            public: X25519_A_PUB,
            peer_public: X25519_B_PUB,
            shared: X25519_K,
        },
        Kat {
            alg: DhAlg::Curve25519,
            private: X25519_B,
            public: X25519_B_PUB,
            peer_public: X25519_A_PUB,
            shared: X25519_K,
        },
    ];

    #[test]
    fn rfc5903_and_rfc7748_known_answers() {
        for kat in KATS {
            let private = unhex(kat.private);
            let (key, public) = kat.alg.generate(&mut Replay(&private)).unwrap();
            assert_eq!(public, unhex(kat.public), "{:?} public value", kat.alg);
            let shared = key.agree(&unhex(kat.peer_public)).unwrap();
            assert_eq!(shared.expose(), unhex(kat.shared), "{:?} g^ir", kat.alg);
        }
    }

    /// RFC 7748 §5.2: X25519(k, u) for two scalars and u-coordinates (the second u has its
    /// top bit set, which X25519 ignores).
    #[test]
    fn rfc7748_x25519_function_vectors() {
        let vectors = [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ];
        for (k, u, out) in vectors {
            let (key, _) = DhAlg::Curve25519.generate(&mut Replay(&unhex(k))).unwrap();
            assert_eq!(key.agree(&unhex(u)).unwrap().expose(), unhex(out));
        }
    }

    /// RFC 7748 §5.2, the iterated test: k = u = 9, then k, u = X25519(k, u), k.
    #[test]
    fn rfc7748_x25519_iterated() {
        let mut k = [0u8; 32];
        k[0] = 9;
        let mut u = k;
        let checkpoints = [
            (
                1,
                "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079",
            ),
            (
                1000,
                "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51",
            ),
        ];
        let mut done = 0;
        for (iterations, expected) in checkpoints {
            while done < iterations {
                let (key, _) = DhAlg::Curve25519.generate(&mut Replay(&k)).unwrap();
                let out = key.agree(&u).unwrap();
                u = k;
                k.copy_from_slice(out.expose());
                done += 1;
            }
            assert_eq!(hex::encode(k), expected, "after {iterations}");
        }
    }

    /// RFC 7748 §6.1: the all-zero output of a small-order u is refused (RFC 8031 §2.3).
    #[test]
    fn x25519_low_order_points_are_refused() {
        let low_order = [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        ];
        for u in low_order {
            let (key, _) = DhAlg::Curve25519
                .generate(&mut Replay(&unhex(X25519_A)))
                .unwrap();
            assert_eq!(
                key.agree(&unhex(u)).unwrap_err(),
                CryptoError::InvalidPublicValue,
                "{u}"
            );
        }
    }

    #[test]
    fn invalid_ecp_points_are_refused() {
        let cases = [
            (DhAlg::Ecp256, P256_I, P256_GR),
            (DhAlg::Ecp384, P384_I, P384_GR),
        ];
        for (alg, private, valid) in cases {
            let valid = unhex(valid);
            let mut off_curve = valid.clone();
            *off_curve.last_mut().unwrap() ^= 1;
            let bad = [
                off_curve,
                vec![0; valid.len()],
                vec![0xff; valid.len()],
                // x = 0 with the valid y: not on the curve.
                [vec![0; valid.len() / 2], valid[valid.len() / 2..].to_vec()].concat(),
            ];
            for peer in bad {
                let (key, _) = alg.generate(&mut Replay(&unhex(private))).unwrap();
                assert_eq!(
                    key.agree(&peer).unwrap_err(),
                    CryptoError::InvalidPublicValue,
                    "{alg:?} {}",
                    hex::encode(&peer)
                );
            }
        }
    }

    /// A scalar outside [1, n-1] is redrawn; a source that never gives a valid one fails.
    #[test]
    fn invalid_ecp_scalars_are_redrawn_then_refused() {
        for (alg, private, public) in [
            (DhAlg::Ecp256, P256_I, P256_GI),
            (DhAlg::Ecp384, P384_I, P384_GI),
        ] {
            let len = alg.public_len() / 2;
            let zero_then_valid = [vec![0; len], vec![0xff; len], unhex(private)].concat();
            let (_, got) = alg.generate(&mut Replay(&zero_then_valid)).unwrap();
            assert_eq!(got, unhex(public), "{alg:?}");

            let never_valid = vec![0; len * super::GENERATE_ATTEMPTS];
            assert_eq!(
                alg.generate(&mut Replay(&never_valid)).unwrap_err(),
                CryptoError::KeyGeneration
            );
        }
    }
}
