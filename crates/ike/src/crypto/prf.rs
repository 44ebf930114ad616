//! The pseudorandom functions of IKEv2 and prf+ (RFC 7296 §2.13): HMAC-SHA-256, -384 and
//! -512 as PRFs (RFC 4868 §2.1.2).
//!
//! HMAC accepts keys of any length, so SKEYSEED = prf(Ni | Nr, g^ir) needs no special case
//! (§2.14). Outputs are returned as [`Secret`]s. ring's HMAC key schedule and its output tag
//! live in ring's own types, which are not wiped when dropped.

use ring::hmac;

use super::CryptoError;
use crate::secret::Secret;

/// A negotiated PRF (IANA "Transform Type 2 - Pseudorandom Function Transform IDs").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrfAlg {
    /// PRF_HMAC_SHA2_256, transform ID 5 (RFC 4868).
    HmacSha256,
    /// PRF_HMAC_SHA2_384, transform ID 6 (RFC 4868).
    HmacSha384,
    /// PRF_HMAC_SHA2_512, transform ID 7 (RFC 4868).
    HmacSha512,
}

/// The largest number of blocks prf+ can produce: its counter is one octet (§2.13).
const PRF_PLUS_MAX_BLOCKS: usize = u8::MAX as usize;

impl PrfAlg {
    /// Every supported PRF, strongest last.
    pub const ALL: [PrfAlg; 3] = [PrfAlg::HmacSha256, PrfAlg::HmacSha384, PrfAlg::HmacSha512];

    /// The PRF with IANA transform ID `id`, if supported.
    pub fn from_id(id: u16) -> Option<PrfAlg> {
        Self::ALL.into_iter().find(|alg| alg.id() == id)
    }

    /// The IANA transform ID.
    pub fn id(self) -> u16 {
        match self {
            PrfAlg::HmacSha256 => 5,
            PrfAlg::HmacSha384 => 6,
            PrfAlg::HmacSha512 => 7,
        }
    }

    /// Output length in octets (32, 48 or 64). It is also the preferred key length: SK_d,
    /// SK_pi and SK_pr have this length (§2.14, RFC 4868 §2.1.2).
    pub fn output_len(self) -> usize {
        self.hmac().digest_algorithm().output_len()
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            PrfAlg::HmacSha256 => hmac::HMAC_SHA256,
            PrfAlg::HmacSha384 => hmac::HMAC_SHA384,
            PrfAlg::HmacSha512 => hmac::HMAC_SHA512,
        }
    }

    /// `prf(key, data[0] | data[1] | ...)`: HMAC over the concatenation of `data`.
    pub fn prf(self, key: &[u8], data: &[&[u8]]) -> Secret {
        mac(&hmac::Key::new(self.hmac(), key), data.iter().copied())
    }

    /// `prf+(key, seed[0] | seed[1] | ...)` truncated to `len` octets (§2.13):
    /// T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n), output T1 | T2 | ...
    ///
    /// Errors if `len` exceeds 255 blocks of output.
    pub fn prf_plus(self, key: &[u8], seed: &[&[u8]], len: usize) -> Result<Secret, CryptoError> {
        let block_len = self.output_len();
        let max = PRF_PLUS_MAX_BLOCKS * block_len;
        if len > max {
            return Err(CryptoError::PrfPlusTooLong {
                requested: len,
                max,
            });
        }
        let key = hmac::Key::new(self.hmac(), key);
        // Reserved up front so the buffer is never reallocated, which would leave an unwiped
        // copy behind; `Secret` wipes the whole allocation when dropped.
        let mut out = Vec::with_capacity(len.div_ceil(block_len) * block_len);
        let mut previous = Secret::default();
        for counter in 1..=u8::MAX {
            if out.len() >= len {
                break;
            }
            let counter = [counter];
            let parts = core::iter::once(previous.expose())
                .chain(seed.iter().copied())
                .chain(core::iter::once(&counter[..]));
            previous = mac(&key, parts);
            out.extend_from_slice(previous.expose());
        }
        out.truncate(len);
        Ok(Secret::new(out))
    }
}

fn mac<'a>(key: &hmac::Key, parts: impl Iterator<Item = &'a [u8]>) -> Secret {
    let mut ctx = hmac::Context::with_key(key);
    for part in parts {
        ctx.update(part);
    }
    Secret::from_slice(ctx.sign().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_131_AA: [u8; 131] = [0xaa; 131];

    /// One RFC 4231 test case: key, data, and the HMAC-SHA-256/384/512 outputs.
    struct Case {
        name: &'static str,
        key: &'static [u8],
        data: &'static [u8],
        expected: [&'static str; 3],
    }

    /// RFC 4231 §4.2–§4.8, test cases 1–4, 6 and 7; RFC 4868 §2.7.1 reuses exactly these
    /// as its PRF test vectors PRF-1 to PRF-6.
    const RFC4231: &[Case] = &[
        Case {
            name: "case 1",
            key: &[0x0b; 20],
            data: b"Hi There",
            expected: [
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c\
                 faea9ea9076ede7f4af152e8b2fa9cb6",
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                 daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ],
        },
        Case {
            name: "case 2",
            key: b"Jefe",
            data: b"what do ya want for nothing?",
            expected: [
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                 8e2240ca5e69e2c78b3239ecfab21649",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                 9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ],
        },
        Case {
            name: "case 3",
            key: &[0xaa; 20],
            data: &[0xdd; 50],
            expected: [
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
                "88062608d3e6ad8a0aa2ace014c8a86f0aa635d947ac9febe83ef4e55966144b\
                 2a5ab39dc13814b94e3ab6e101a34f27",
                "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39\
                 bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
            ],
        },
        Case {
            name: "case 4",
            key: &[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
                24, 25,
            ],
            data: &[0xcd; 50],
            expected: [
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                "3e8a69b7783c25851933ab6290af6ca77a9981480850009cc5577c6e1f573b4e\
                 6801dd23c4a7d679ccf8a386c674cffb",
                "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db\
                 a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
            ],
        },
        Case {
            name: "case 6",
            key: &KEY_131_AA,
            data: b"Test Using Larger Than Block-Size Key - Hash Key First",
            expected: [
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6\
                 0c2ef6ab4030fe8296248df163f44952",
                "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
                 6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
            ],
        },
        Case {
            name: "case 7",
            key: &KEY_131_AA,
            data: b"This is a test using a larger than block-size key and a larger than \
                    block-size data. The key needs to be hashed before being used by the \
                    HMAC algorithm.",
            expected: [
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
                "6617178e941f020d351e2f254e8fd32c602420feb0b8fb9adccebb82461e99c5\
                 a678cc31e799176d3860e6110c46523e",
                "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944\
                 b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
            ],
        },
    ];

    #[test]
    fn rfc4231_and_rfc4868_prf_vectors() {
        for case in RFC4231 {
            for (alg, expected) in PrfAlg::ALL.into_iter().zip(case.expected) {
                let out = alg.prf(case.key, &[case.data]);
                assert_eq!(hex::encode(out.expose()), expected, "{} {alg:?}", case.name);
                assert_eq!(out.len(), alg.output_len());
            }
        }
    }

    /// RFC 4231 §4.6, test case 5: the output truncated to 128 bits.
    #[test]
    fn rfc4231_case_5_truncated() {
        let expected = [
            "a3b6167473100ee06e0c796c2955552b",
            "3abf34c3503b2a23a46efc619baef897",
            "415fad6271580a531d4179bc891d87a6",
        ];
        for (alg, expected) in PrfAlg::ALL.into_iter().zip(expected) {
            let out = alg.prf(&[0x0c; 20], &[b"Test With Truncation"]);
            assert_eq!(hex::encode(&out.expose()[..16]), expected, "{alg:?}");
        }
    }

    /// RFC 4868 §2.7.2.1, AUTH256-1 to AUTH256-4: 32-octet keys, the full PRF output.
    #[test]
    fn rfc4868_auth256_vectors_full_output() {
        let jefe32 = b"JefeJefeJefeJefeJefeJefeJefeJefe";
        let counting: Vec<u8> = (1..=32).collect();
        let cases: [(&[u8], &[u8], &str); 4] = [
            (
                &[0x0b; 32],
                b"Hi There",
                "198a607eb44bfbc69903a0f1cf2bbdc5ba0aa3f3d9ae3c1c7a3b1696a0b68cf7",
            ),
            (
                jefe32,
                b"what do ya want for nothing?",
                "167f928588c5cc2eef8e3093caa0e87c9ff566a14794aa61648d81621a2a40c6",
            ),
            (
                &[0xaa; 32],
                &[0xdd; 50],
                "cdcb1220d1ecccea91e53aba3092f962e549fe6ce9ed7fdc43191fbde45c30b0",
            ),
            (
                &counting,
                &[0xcd; 50],
                "372efcf9b40b35c2115b1346903d2ef42fced46f0846e7257bb156d3d7b30d3f",
            ),
        ];
        for (key, data, expected) in cases {
            assert_eq!(
                hex::encode(PrfAlg::HmacSha256.prf(key, &[data]).expose()),
                expected
            );
        }
    }

    #[test]
    fn prf_concatenates_data() {
        let whole = PrfAlg::HmacSha384.prf(b"k", &[b"abcdef"]);
        let split = PrfAlg::HmacSha384.prf(b"k", &[b"ab", b"", b"cdef"]);
        assert_eq!(whole.expose(), split.expose());
    }

    #[test]
    fn ids_round_trip_and_lengths() {
        let table = [
            (PrfAlg::HmacSha256, 5, 32),
            (PrfAlg::HmacSha384, 6, 48),
            (PrfAlg::HmacSha512, 7, 64),
        ];
        for (alg, id, len) in table {
            assert_eq!(alg.id(), id);
            assert_eq!(PrfAlg::from_id(id), Some(alg));
            assert_eq!(alg.output_len(), len);
        }
        for unsupported in [0, 1, 2, 3, 4, 8, 0xffff] {
            assert_eq!(PrfAlg::from_id(unsupported), None);
        }
    }

    /// prf+ computed independently with ring's HMAC: T1 = prf(K, S | 1), Tn = prf(K,
    /// Tn-1 | S | n).
    fn prf_plus_by_hand(alg: hmac::Algorithm, key: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
        let key = hmac::Key::new(alg, key);
        let blocks = len.div_ceil(alg.digest_algorithm().output_len());
        let mut out = Vec::new();
        let mut t: Vec<u8> = Vec::new();
        for n in 1..=blocks {
            let mut input = t.clone();
            input.extend_from_slice(seed);
            input.push(u8::try_from(n).unwrap());
            t = hmac::sign(&key, &input).as_ref().to_vec();
            out.extend_from_slice(&t);
        }
        out.truncate(len);
        out
    }

    #[test]
    fn prf_plus_matches_hand_computation() {
        let key = b"SKEYSEED-like key";
        let seed: [&[u8]; 3] = [b"Ni nonce", b"Nr nonce", &[1, 2, 3, 4, 5, 6, 7, 8]];
        let joined = seed.concat();
        for alg in PrfAlg::ALL {
            let block = alg.output_len();
            for len in [
                0,
                1,
                block - 1,
                block,
                block + 1,
                3 * block + 7,
                255 * block,
            ] {
                let got = alg.prf_plus(key, &seed, len).unwrap();
                assert_eq!(
                    got.expose(),
                    prf_plus_by_hand(alg.hmac(), key, &joined, len).as_slice(),
                    "{alg:?} len {len}"
                );
            }
        }
    }

    #[test]
    fn prf_plus_first_block_is_prf_of_seed_and_one() {
        let got = PrfAlg::HmacSha256.prf_plus(b"key", &[b"seed"], 32).unwrap();
        let t1 = PrfAlg::HmacSha256.prf(b"key", &[b"seed", &[1]]);
        assert_eq!(got.expose(), t1.expose());
    }

    #[test]
    fn prf_plus_refuses_more_than_255_blocks() {
        for alg in PrfAlg::ALL {
            let max = 255 * alg.output_len();
            assert_eq!(alg.prf_plus(b"k", &[b"s"], max).unwrap().len(), max);
            assert_eq!(
                alg.prf_plus(b"k", &[b"s"], max + 1).unwrap_err(),
                CryptoError::PrfPlusTooLong {
                    requested: max + 1,
                    max
                }
            );
            assert!(alg.prf_plus(b"k", &[b"s"], usize::MAX).is_err());
        }
    }
}
