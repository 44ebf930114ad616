//! Key derivation for the IKE SA (RFC 7296 §2.14), its rekeying (§2.18) and Child SAs
//! (§2.17), for AEAD transforms only: SK_ai, SK_ar and the Child SA integrity keys have length
//! 0 (RFC 5282 §7). An encryption key here is the AES key followed by its 4-octet salt
//! (RFC 5282 §7.1, RFC 4106 §8.1), `encr_keymat_len` octets in all.

use super::CryptoError;
use super::prf::PrfAlg;
use crate::secret::Secret;

/// The keys of an IKE SA (§2.14). `Debug` shows only lengths.
#[derive(Debug)]
pub struct IkeSaKeys {
    /// The PRF negotiated for this IKE SA, used with SK_d, SK_pi and SK_pr.
    pub prf: PrfAlg,
    /// Key for deriving Child SA keys and the next IKE SA's SKEYSEED.
    pub sk_d: Secret,
    /// SK payload key, initiator to responder (key ‖ salt).
    pub sk_ei: Secret,
    /// SK payload key, responder to initiator (key ‖ salt).
    pub sk_er: Secret,
    /// Key for the initiator's AUTH payload (§2.15).
    pub sk_pi: Secret,
    /// Key for the responder's AUTH payload (§2.15).
    pub sk_pr: Secret,
}

impl IkeSaKeys {
    /// §2.14: SKEYSEED = prf(Ni | Nr, g^ir);
    /// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
    ///
    /// `ni` and `nr` are the nonce data of the IKE_SA_INIT exchange, `spi_i` and `spi_r` the
    /// IKE SA's SPIs as in the IKE header. SK_d, SK_pi and SK_pr are `prf.output_len()` octets,
    /// SK_ei and SK_er `encr_keymat_len`.
    pub fn derive(
        prf: PrfAlg,
        encr_keymat_len: usize,
        ni: &[u8],
        nr: &[u8],
        g_ir: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeSaKeys, CryptoError> {
        let nonces = [ni, nr].concat();
        let skeyseed = prf.prf(&nonces, &[g_ir]);
        Self::expand(prf, &skeyseed, encr_keymat_len, ni, nr, spi_i, spi_r)
    }

    /// §2.18, rekeying the IKE SA: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) with the
    /// old IKE SA's PRF, then prf+ as in §2.14 with the new SA's `prf`.
    ///
    /// `ni` and `nr` are the nonces of the CREATE_CHILD_SA exchange (of its initiator and
    /// responder), `spi_i` and `spi_r` the new IKE SA's SPIs, the initiator's first.
    #[allow(clippy::too_many_arguments)] // the inputs of §2.18, each one distinct
    pub fn derive_rekeyed(
        old_prf: PrfAlg,
        old_sk_d: &[u8],
        prf: PrfAlg,
        encr_keymat_len: usize,
        g_ir: &[u8],
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeSaKeys, CryptoError> {
        let skeyseed = old_prf.prf(old_sk_d, &[g_ir, ni, nr]);
        Self::expand(prf, &skeyseed, encr_keymat_len, ni, nr, spi_i, spi_r)
    }

    fn expand(
        prf: PrfAlg,
        skeyseed: &Secret,
        encr_keymat_len: usize,
        ni: &[u8],
        nr: &[u8],
        spi_i: u64,
        spi_r: u64,
    ) -> Result<IkeSaKeys, CryptoError> {
        let prf_len = prf.output_len();
        // In §2.14 order; SK_ai and SK_ar have length 0.
        let lengths = [prf_len, encr_keymat_len, encr_keymat_len, prf_len, prf_len];
        let seed: [&[u8]; 4] = [ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()];
        let [sk_d, sk_ei, sk_er, sk_pi, sk_pr] = split(prf, skeyseed.expose(), &seed, lengths)?;
        Ok(IkeSaKeys {
            prf,
            sk_d,
            sk_ei,
            sk_er,
            sk_pi,
            sk_pr,
        })
    }
}

/// The keys of one Child SA pair (§2.17), each an ESP AES-GCM key ‖ 4-octet salt
/// (RFC 4106 §8.1). `Debug` shows only lengths.
#[derive(Debug)]
pub struct ChildSaKeys {
    /// Protects traffic from the exchange's initiator to its responder.
    pub initiator_to_responder: Secret,
    /// Protects traffic from the exchange's responder to its initiator.
    pub responder_to_initiator: Secret,
}

impl ChildSaKeys {
    /// §2.17: KEYMAT = prf+(SK_d, Ni | Nr), or prf+(SK_d, g^ir (new) | Ni | Nr) with PFS;
    /// the initiator-to-responder key is taken first, then the responder-to-initiator key.
    ///
    /// `ni` and `nr` are the nonces of the exchange creating the Child SA (IKE_SA_INIT's for
    /// the first Child SA, CREATE_CHILD_SA's otherwise).
    pub fn derive(
        prf: PrfAlg,
        sk_d: &[u8],
        g_ir: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        encr_keymat_len: usize,
    ) -> Result<ChildSaKeys, CryptoError> {
        let seed: Vec<&[u8]> = g_ir.into_iter().chain([ni, nr]).collect();
        let [initiator_to_responder, responder_to_initiator] =
            split(prf, sk_d, &seed, [encr_keymat_len; 2])?;
        Ok(ChildSaKeys {
            initiator_to_responder,
            responder_to_initiator,
        })
    }
}

/// prf+(key, seed) cut into consecutive keys of the given lengths.
fn split<const N: usize>(
    prf: PrfAlg,
    key: &[u8],
    seed: &[&[u8]],
    lengths: [usize; N],
) -> Result<[Secret; N], CryptoError> {
    // A sum past usize::MAX saturates, and prf+ refuses it as too long.
    let total = lengths
        .iter()
        .fold(0usize, |sum, &len| sum.saturating_add(len));
    let keymat = prf.prf_plus(key, seed, total)?;
    // prf+ returned exactly `total` octets, so every piece is there.
    let mut rest = keymat.expose();
    Ok(lengths.map(|len| {
        let (key, tail) = rest.split_at(len);
        rest = tail;
        Secret::from_slice(key)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NI: &[u8] = b"initiator nonce, 32 octets long!";
    const NR: &[u8] = b"responder nonce of another length";
    const G_IR: &[u8] = &[0x5a; 256];
    const SPI_I: u64 = 0x0123_4567_89ab_cdef;
    const SPI_R: u64 = 0xfedc_ba98_7654_3210;

    /// Splits `keymat` into consecutive pieces of `lengths`.
    fn cut(keymat: &[u8], lengths: &[usize]) -> Vec<Vec<u8>> {
        let mut at = 0;
        lengths
            .iter()
            .map(|&len| {
                at += len;
                keymat[at - len..at].to_vec()
            })
            .collect()
    }

    fn exposed(keys: &IkeSaKeys) -> Vec<Vec<u8>> {
        [
            &keys.sk_d,
            &keys.sk_ei,
            &keys.sk_er,
            &keys.sk_pi,
            &keys.sk_pr,
        ]
        .map(|k| k.expose().to_vec())
        .to_vec()
    }

    /// The §2.14 computation spelled out with prf and prf+ on the concatenated inputs.
    fn ike_by_hand(prf: PrfAlg, skeyseed: &[u8], encr: usize) -> Vec<Vec<u8>> {
        let p = prf.output_len();
        let seed = [NI, NR, &SPI_I.to_be_bytes(), &SPI_R.to_be_bytes()].concat();
        // SK_d | SK_ai (0) | SK_ar (0) | SK_ei | SK_er | SK_pi | SK_pr
        let lengths = [p, 0, 0, encr, encr, p, p];
        let keymat = prf
            .prf_plus(skeyseed, &[&seed], lengths.iter().sum())
            .unwrap();
        let mut keys = cut(keymat.expose(), &lengths);
        keys.drain(1..3);
        keys
    }

    #[test]
    fn ike_sa_keys_follow_section_2_14() {
        for prf in PrfAlg::ALL {
            for encr in [20, 28, 36] {
                let keys = IkeSaKeys::derive(prf, encr, NI, NR, G_IR, SPI_I, SPI_R).unwrap();
                let skeyseed = prf.prf(&[NI, NR].concat(), &[G_IR]);
                assert_eq!(keys.prf, prf);
                assert_eq!(exposed(&keys), ike_by_hand(prf, skeyseed.expose(), encr));
                let p = prf.output_len();
                let lengths: Vec<usize> = exposed(&keys).iter().map(Vec::len).collect();
                assert_eq!(lengths, [p, encr, encr, p, p], "{prf:?}");
            }
        }
    }

    #[test]
    fn rekeyed_ike_sa_uses_old_prf_for_skeyseed_and_new_prf_for_prf_plus() {
        let old_sk_d = [0x11u8; 48];
        let (old_prf, new_prf) = (PrfAlg::HmacSha384, PrfAlg::HmacSha256);
        let keys =
            IkeSaKeys::derive_rekeyed(old_prf, &old_sk_d, new_prf, 36, G_IR, NI, NR, SPI_I, SPI_R)
                .unwrap();
        let skeyseed = old_prf.prf(&old_sk_d, &[&[G_IR, NI, NR].concat()]);
        assert_eq!(keys.prf, new_prf);
        assert_eq!(exposed(&keys), ike_by_hand(new_prf, skeyseed.expose(), 36));
        assert_eq!(keys.sk_d.len(), 32);
    }

    #[test]
    fn every_input_changes_every_key() {
        let base = exposed(
            &IkeSaKeys::derive(PrfAlg::HmacSha256, 20, NI, NR, G_IR, SPI_I, SPI_R).unwrap(),
        );
        let g_other = [0x5bu8; 256];
        let variants = [
            IkeSaKeys::derive(PrfAlg::HmacSha256, 20, NR, NI, G_IR, SPI_I, SPI_R),
            IkeSaKeys::derive(PrfAlg::HmacSha256, 20, NI, NR, &g_other, SPI_I, SPI_R),
            IkeSaKeys::derive(PrfAlg::HmacSha256, 20, NI, NR, G_IR, SPI_R, SPI_I),
            IkeSaKeys::derive(PrfAlg::HmacSha256, 20, NI, NR, G_IR, SPI_I, SPI_R + 1),
        ];
        for variant in variants {
            let keys = exposed(&variant.unwrap());
            for (a, b) in base.iter().zip(&keys) {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn child_sa_keys_follow_section_2_17() {
        let sk_d = [0x22u8; 32];
        for (g_ir, seed) in [
            (None, [NI, NR].concat()),
            (Some(G_IR), [G_IR, NI, NR].concat()),
        ] {
            for encr in [20, 36] {
                let keys =
                    ChildSaKeys::derive(PrfAlg::HmacSha256, &sk_d, g_ir, NI, NR, encr).unwrap();
                let keymat = PrfAlg::HmacSha256
                    .prf_plus(&sk_d, &[&seed], 2 * encr)
                    .unwrap();
                let expected = cut(keymat.expose(), &[encr, encr]);
                assert_eq!(keys.initiator_to_responder.expose(), expected[0].as_slice());
                assert_eq!(keys.responder_to_initiator.expose(), expected[1].as_slice());
            }
        }
    }

    #[test]
    fn pfs_changes_child_sa_keys() {
        let sk_d = [0x33u8; 64];
        let plain = ChildSaKeys::derive(PrfAlg::HmacSha512, &sk_d, None, NI, NR, 36).unwrap();
        let pfs = ChildSaKeys::derive(PrfAlg::HmacSha512, &sk_d, Some(G_IR), NI, NR, 36).unwrap();
        assert_ne!(
            plain.initiator_to_responder.expose(),
            pfs.initiator_to_responder.expose()
        );
        assert_ne!(
            plain.responder_to_initiator.expose(),
            pfs.responder_to_initiator.expose()
        );
        assert_ne!(
            plain.initiator_to_responder.expose(),
            plain.responder_to_initiator.expose()
        );
    }

    #[test]
    fn too_much_keying_material_is_an_error() {
        assert!(matches!(
            IkeSaKeys::derive(PrfAlg::HmacSha256, 255 * 32, NI, NR, G_IR, SPI_I, SPI_R),
            Err(CryptoError::PrfPlusTooLong { .. })
        ));
        assert!(matches!(
            ChildSaKeys::derive(PrfAlg::HmacSha256, &[0; 32], None, NI, NR, usize::MAX),
            Err(CryptoError::PrfPlusTooLong { .. })
        ));
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let keys = IkeSaKeys::derive(PrfAlg::HmacSha256, 20, NI, NR, G_IR, SPI_I, SPI_R).unwrap();
        assert_eq!(
            format!("{keys:?}"),
            "IkeSaKeys { prf: HmacSha256, sk_d: Secret([redacted; 32 bytes]), \
             sk_ei: Secret([redacted; 20 bytes]), sk_er: Secret([redacted; 20 bytes]), \
             sk_pi: Secret([redacted; 32 bytes]), sk_pr: Secret([redacted; 32 bytes]) }"
        );
        let child = ChildSaKeys::derive(PrfAlg::HmacSha256, &[1; 32], None, NI, NR, 20).unwrap();
        assert_eq!(
            format!("{child:?}"),
            "ChildSaKeys { initiator_to_responder: Secret([redacted; 20 bytes]), \
             responder_to_initiator: Secret([redacted; 20 bytes]) }"
        );
    }
}
