//! AES-GCM with a 16-octet ICV protecting the SK payload (RFC 5282).
//!
//! Keying material is the AES key followed by a 4-octet salt (RFC 5282 §7.1, as for ESP in
//! RFC 4106 §8.1); the nonce is salt ‖ 8-octet explicit IV carried in the payload (§3.1).
//! ring's key schedule (`LessSafeKey`) is not wiped on drop; the copy of the salt is.

use core::fmt;

use ring::aead as ra;
use zeroize::Zeroizing;

use super::CryptoError;

/// Length of the explicit IV in the SK payload (RFC 5282 §3.1).
pub const IV_LEN: usize = 8;
/// Length of the ICV (RFC 5282 §3, AES-GCM with a 16-octet ICV, transform ID 20).
pub const ICV_LEN: usize = 16;
/// Length of the salt at the end of the keying material (RFC 5282 §7.1).
pub const SALT_LEN: usize = 4;

/// One direction's SK payload cipher (SK_ei or SK_er).
pub struct SkAead {
    key: ra::LessSafeKey,
    salt: Zeroizing<[u8; SALT_LEN]>,
    key_len: usize,
}

impl SkAead {
    /// Builds the cipher from keying material of 20 (AES-128) or 36 (AES-256) octets.
    pub fn new(keymat: &[u8]) -> Result<Self, CryptoError> {
        let alg = match keymat.len() {
            20 => &ra::AES_128_GCM,
            36 => &ra::AES_256_GCM,
            n => return Err(CryptoError::KeyLength(n)),
        };
        let key_len = keymat.len() - SALT_LEN;
        let unbound = ra::UnboundKey::new(alg, &keymat[..key_len])
            .map_err(|_| CryptoError::KeyLength(key_len))?;
        let mut salt = Zeroizing::new([0u8; SALT_LEN]);
        salt.copy_from_slice(&keymat[key_len..]);
        Ok(SkAead {
            key: ra::LessSafeKey::new(unbound),
            salt,
            key_len,
        })
    }

    /// AES key length in octets (16 or 32).
    pub fn key_len(&self) -> usize {
        self.key_len
    }

    fn nonce(&self, iv: &[u8; IV_LEN]) -> ra::Nonce {
        let mut n = [0u8; 12];
        n[..SALT_LEN].copy_from_slice(&self.salt[..]);
        n[SALT_LEN..].copy_from_slice(iv);
        ra::Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `in_out` in place and returns the ICV.
    pub fn seal(&self, iv: &[u8; IV_LEN], aad: &[u8], in_out: &mut [u8]) -> [u8; ICV_LEN] {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(iv), ra::Aad::from(aad), in_out)
            // ring refuses only inputs longer than GCM's 2^36 − 32 octets; an IKE message is
            // at most 2^32 − 1 octets long.
            .unwrap_or_else(|_| unreachable!("IKE message longer than GCM allows"));
        let mut out = [0u8; ICV_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Verifies `icv` over `aad` and `in_out` and decrypts `in_out` in place. On error the
    /// content of `in_out` must not be used.
    pub fn open(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        icv: &[u8; ICV_LEN],
    ) -> Result<(), CryptoError> {
        self.key
            .open_in_place_separate_tag(
                self.nonce(iv),
                ra::Aad::from(aad),
                ra::Tag::from(*icv),
                in_out,
                0..,
            )
            .map(|_| ())
            .map_err(|_| CryptoError::IntegrityCheckFailed)
    }
}

impl fmt::Debug for SkAead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkAead")
            .field("key_len", &self.key_len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// McGrew & Viega GCM test case 4 (AES-128, 60-octet plaintext, 20-octet AAD), the
    /// vector RFC 5282 points to through RFC 4106.
    #[test]
    fn gcm_test_case_4() {
        let key = hex::decode("feffe9928665731c6d6a8f9467308308").unwrap();
        let iv_full = hex::decode("cafebabefacedbaddecaf888").unwrap();
        let pt = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        )
        .unwrap();
        let aad = hex::decode("feedfacedeadbeeffeedfacedeadbeefabaddad2").unwrap();
        let ct = "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091";
        let tag = "5bc94fbc3221a5db94fae95ae7121a47";
        let mut keymat = key.clone();
        keymat.extend_from_slice(&iv_full[..4]);
        let a = SkAead::new(&keymat).unwrap();
        let iv: [u8; 8] = iv_full[4..].try_into().unwrap();
        let mut buf = pt.clone();
        let icv = a.seal(&iv, &aad, &mut buf);
        assert_eq!(hex::encode(&buf), ct);
        assert_eq!(hex::encode(icv), tag);
        a.open(&iv, &aad, &mut buf, &icv).unwrap();
        assert_eq!(buf, pt);
        let mut bad = icv;
        bad[0] ^= 1;
        assert_eq!(
            a.open(&iv, &aad, &mut buf, &bad),
            Err(CryptoError::IntegrityCheckFailed)
        );
    }

    #[test]
    fn key_lengths() {
        assert!(SkAead::new(&[0u8; 20]).is_ok());
        assert_eq!(SkAead::new(&[0u8; 36]).unwrap().key_len(), 32);
        assert_eq!(
            SkAead::new(&[0u8; 16]).unwrap_err(),
            CryptoError::KeyLength(16)
        );
        assert!(!format!("{:?}", SkAead::new(&[7u8; 20]).unwrap()).contains('7'));
    }
}
