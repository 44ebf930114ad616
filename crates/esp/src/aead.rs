//! AES-GCM with a 16-byte ICV for ESP (RFC 4106), behind one trait with several backends.
//!
//! The backend is chosen per SA at install time ([`crate::keys::SaKey`]); the schedule is built
//! by the worker's [`crate::keys::KeyCache`] on an SA's first packet (and again if busier SAs
//! took its line); the per-packet dispatch is one `match` on an enum. Nonce = 4-byte salt ‖ 8-byte explicit IV
//! (RFC 4106 §4); the ICV is kept separate from the in-place buffer so it can sit in the ESP
//! trailer.
//!
//! The RustCrypto and intel-ipsec-mb key schedules are zeroized on drop (RustCrypto's `zeroize`
//! feature; `ipsec_mb_sys::GcmKey`'s `Drop`); ring does not offer that for its key schedules
//! (see [`crate::keys`] for how cache lines are wiped).

use core::fmt;

use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit, aead::AeadInOut};
use ring::aead as ra;

/// Length of the GCM nonce: salt ‖ explicit IV (RFC 4106 §4).
pub const NONCE_LEN: usize = 12;
/// Length of the ICV (RFC 4106 §6, 16-octet variant).
pub const TAG_LEN: usize = 16;
/// Length of the salt at the end of the keying material (RFC 4106 §8.1).
pub const SALT_LEN: usize = 4;

/// Which AES-GCM implementation an SA uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// ring 0.17 (`LessSafeKey`, in place, separate tag).
    Ring,
    /// RustCrypto aes-gcm 0.11 (`AeadInOut`, built with the AES-NI/VAES/PCLMUL target features).
    RustCrypto,
    /// intel-ipsec-mb (its direct GCM API, on the code path it picks for the CPU at run time:
    /// `ipsec_mb_sys::arch`).
    IpsecMb,
}

impl Backend {
    /// Every backend (tests and benchmarks iterate over it).
    pub const ALL: [Backend; 3] = [Backend::Ring, Backend::RustCrypto, Backend::IpsecMb];

    /// The backend for SAs whose configuration names none, chosen by measurement
    /// (docs/performance.md, "Which AES-GCM"): intel-ipsec-mb where it runs its AVX2 or
    /// AVX-512 code (fastest at every size on AVX-512 + VAES, and up to ~512 bytes and for IMIX
    /// on AVX2 + VAES), ring otherwise.
    pub fn auto() -> Backend {
        match ipsec_mb_sys::arch() {
            Some(ipsec_mb_sys::Arch::Avx2 | ipsec_mb_sys::Arch::Avx512) => Backend::IpsecMb,
            _ => Backend::Ring,
        }
    }

    /// True when this backend can build keys on this machine (intel-ipsec-mb: its library
    /// initialised).
    pub fn available(self) -> bool {
        match self {
            Backend::Ring | Backend::RustCrypto => true,
            Backend::IpsecMb => ipsec_mb_sys::arch().is_some(),
        }
    }

    /// Name as configuration and `show` write it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ring => "ring",
            Backend::RustCrypto => "rustcrypto",
            Backend::IpsecMb => "ipsec-mb",
        }
    }
}

/// AES-GCM key length not 16 or 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadKeyLength(pub usize);

/// The ICV did not verify (or the backend refused the input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenError;

/// The backend refused to encrypt (input longer than GCM allows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealError;

/// An AES-GCM-16 engine for ESP: in-place encryption and decryption with a detached tag.
pub trait GcmAead {
    /// Encrypts `in_out` in place and returns the 16-byte ICV.
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError>;
    /// Verifies `tag` and decrypts `in_out` in place. On error the content of `in_out` is
    /// unspecified and must not be used.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError>;
    /// Key length in bytes (16 or 32).
    fn key_len(&self) -> usize;
}

/// ring's AES-GCM. ring keeps an AES-256-sized key schedule (15 round keys) and a 16-entry
/// GHASH table for either key length, so this is 544 bytes for AES-128 as for AES-256.
pub struct RingGcm {
    key: ra::LessSafeKey,
}

impl RingGcm {
    /// Builds the key schedule from a 16- or 32-byte key.
    pub fn new(key: &[u8]) -> Result<Self, BadKeyLength> {
        let alg = match key.len() {
            16 => &ra::AES_128_GCM,
            32 => &ra::AES_256_GCM,
            n => return Err(BadKeyLength(n)),
        };
        let unbound = ra::UnboundKey::new(alg, key).map_err(|_| BadKeyLength(key.len()))?;
        Ok(Self {
            key: ra::LessSafeKey::new(unbound),
        })
    }
}

impl GcmAead for RingGcm {
    #[inline]
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(
                ra::Nonce::assume_unique_for_key(*nonce),
                ra::Aad::from(aad),
                in_out,
            )
            .map_err(|_| SealError)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    #[inline]
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        self.key
            .open_in_place_separate_tag(
                ra::Nonce::assume_unique_for_key(*nonce),
                ra::Aad::from(aad),
                ra::Tag::from(*tag),
                in_out,
                0..,
            )
            .map(|_| ())
            .map_err(|_| OpenError)
    }

    fn key_len(&self) -> usize {
        self.key.algorithm().key_len()
    }
}

/// RustCrypto's AES-GCM (aes-gcm 0.11). Both key lengths inline (AES-256's schedule is 624
/// bytes): schedules live in a worker's [`crate::keys::KeyCache`], whose lines are built once
/// and rebuilt in place, never allocated on a worker.
pub enum RustCryptoGcm {
    /// AES-128-GCM.
    Aes128(Aes128Gcm),
    /// AES-256-GCM.
    Aes256(Aes256Gcm),
}

impl RustCryptoGcm {
    /// Builds the key schedule from a 16- or 32-byte key.
    pub fn new(key: &[u8]) -> Result<Self, BadKeyLength> {
        match key.len() {
            16 => Aes128Gcm::new_from_slice(key)
                .map(Self::Aes128)
                .map_err(|_| BadKeyLength(16)),
            32 => Aes256Gcm::new_from_slice(key)
                .map(Self::Aes256)
                .map_err(|_| BadKeyLength(32)),
            n => Err(BadKeyLength(n)),
        }
    }
}

impl GcmAead for RustCryptoGcm {
    #[inline]
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        let n = aes_gcm::Nonce::from(*nonce);
        let tag = match self {
            Self::Aes128(k) => k.encrypt_inout_detached(&n, aad, in_out.into()),
            Self::Aes256(k) => k.encrypt_inout_detached(&n, aad, in_out.into()),
        }
        .map_err(|_| SealError)?;
        Ok(tag.into())
    }

    #[inline]
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        let n = aes_gcm::Nonce::from(*nonce);
        let t = aes_gcm::Tag::from(*tag);
        match self {
            Self::Aes128(k) => k.decrypt_inout_detached(&n, aad, in_out.into(), &t),
            Self::Aes256(k) => k.decrypt_inout_detached(&n, aad, in_out.into(), &t),
        }
        .map_err(|_| OpenError)
    }

    fn key_len(&self) -> usize {
        match self {
            Self::Aes128(_) => 16,
            Self::Aes256(_) => 32,
        }
    }
}

/// intel-ipsec-mb's AES-GCM (`ipsec_mb_sys::GcmKey`: expanded key and GHASH powers, about
/// 1 KiB, zeroized on drop).
pub struct IpsecMbGcm(ipsec_mb_sys::GcmKey);

impl IpsecMbGcm {
    /// Expands a 16- or 32-byte key; `BadKeyLength` also when the library is unavailable
    /// ([`Backend::available`]).
    pub fn new(key: &[u8]) -> Result<Self, BadKeyLength> {
        ipsec_mb_sys::GcmKey::new(key)
            .map(IpsecMbGcm)
            .ok_or(BadKeyLength(key.len()))
    }

    /// An address in each cache line a short packet reads of this schedule
    /// ([`ipsec_mb_sys::GcmKey::short_packet_lines`]).
    #[inline]
    pub fn short_packet_lines(&self, f: impl FnMut(*const u8)) {
        self.0.short_packet_lines(f);
    }
}

impl GcmAead for IpsecMbGcm {
    #[inline]
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        Ok(self.0.seal(nonce, aad, in_out))
    }
    #[inline]
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        if self.0.open(nonce, aad, in_out, tag) {
            Ok(())
        } else {
            Err(OpenError)
        }
    }
    fn key_len(&self) -> usize {
        self.0.key_len()
    }
}

/// The engine of one SA: the backend chosen at install time, dispatched by `match`.
// Every variant inline, the largest (intel-ipsec-mb's ~1 KiB) too: the key cache builds
// schedules in place on the packet path, where nothing may allocate.
#[allow(clippy::large_enum_variant)]
pub enum AeadEngine {
    /// ring.
    Ring(RingGcm),
    /// RustCrypto aes-gcm.
    RustCrypto(RustCryptoGcm),
    /// intel-ipsec-mb.
    IpsecMb(IpsecMbGcm),
}

impl AeadEngine {
    /// Builds the key schedule of `backend` for a 16- or 32-byte AES key (without salt).
    pub fn new(backend: Backend, key: &[u8]) -> Result<Self, BadKeyLength> {
        Ok(match backend {
            Backend::Ring => Self::Ring(RingGcm::new(key)?),
            Backend::RustCrypto => Self::RustCrypto(RustCryptoGcm::new(key)?),
            Backend::IpsecMb => Self::IpsecMb(IpsecMbGcm::new(key)?),
        })
    }
    /// Builds the schedule of `key` into `line` over what it held: an intel-ipsec-mb schedule
    /// is expanded in place ([`ipsec_mb_sys::GcmKey::rekey`], the old one zeroized first);
    /// another is built and moved in, the old one dropped. `line` is `None` on an error.
    pub fn rebuild(line: &mut Option<AeadEngine>, backend: Backend, key: &[u8]) {
        if let (Some(Self::IpsecMb(e)), Backend::IpsecMb) = (line.as_mut(), backend)
            && e.0.rekey(key)
        {
            return;
        }
        *line = Self::new(backend, key).ok();
    }

    /// Calls `f` with an address in each cache line sealing or opening a short packet reads
    /// of this schedule, for a prefetch: intel-ipsec-mb's ([`IpsecMbGcm::short_packet_lines`]);
    /// none for ring's and RustCrypto's, whose layouts are their own.
    #[inline]
    pub fn short_packet_lines(&self, f: impl FnMut(*const u8)) {
        if let Self::IpsecMb(e) = self {
            e.short_packet_lines(f);
        }
    }

    /// The backend of this engine.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Ring(_) => Backend::Ring,
            Self::RustCrypto(_) => Backend::RustCrypto,
            Self::IpsecMb(_) => Backend::IpsecMb,
        }
    }
}

impl GcmAead for AeadEngine {
    #[inline]
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        match self {
            Self::Ring(e) => e.seal(nonce, aad, in_out),
            Self::RustCrypto(e) => e.seal(nonce, aad, in_out),
            Self::IpsecMb(e) => e.seal(nonce, aad, in_out),
        }
    }
    #[inline]
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), OpenError> {
        match self {
            Self::Ring(e) => e.open(nonce, aad, in_out, tag),
            Self::RustCrypto(e) => e.open(nonce, aad, in_out, tag),
            Self::IpsecMb(e) => e.open(nonce, aad, in_out, tag),
        }
    }
    fn key_len(&self) -> usize {
        match self {
            Self::Ring(e) => e.key_len(),
            Self::RustCrypto(e) => e.key_len(),
            Self::IpsecMb(e) => e.key_len(),
        }
    }
}

impl fmt::Debug for RingGcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RingGcm(AES-{}-GCM-16, key redacted)",
            self.key_len() * 8
        )
    }
}
impl fmt::Debug for RustCryptoGcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RustCryptoGcm(AES-{}-GCM-16, key redacted)",
            self.key_len() * 8
        )
    }
}
impl fmt::Debug for IpsecMbGcm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IpsecMbGcm(AES-{}-GCM-16, key redacted)",
            self.key_len() * 8
        )
    }
}
impl fmt::Debug for AeadEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ring(e) => e.fmt(f),
            Self::RustCrypto(e) => e.fmt(f),
            Self::IpsecMb(e) => e.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// (key, iv, plaintext, aad, ciphertext, tag) from "The Galois/Counter Mode of Operation"
    /// (McGrew & Viega, NIST submission), test cases 3, 4 (AES-128) and 15, 16 (AES-256).
    /// (key, iv, plaintext, aad, ciphertext, tag)
    type Case = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

    fn gcm_spec_cases() -> Vec<Case> {
        let p = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
        let p3 = format!("{p}1aafd255");
        let aad = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
        let iv = "cafebabefacedbaddecaf888";
        let k128 = "feffe9928665731c6d6a8f9467308308";
        let k256 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
        vec![
            (
                h(k128),
                h(iv),
                h(&p3),
                vec![],
                h(
                    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
                ),
                h("4d5c2af327cd64a62cf35abd2ba6fab4"),
            ),
            (
                h(k128),
                h(iv),
                h(p),
                h(aad),
                h(
                    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                ),
                h("5bc94fbc3221a5db94fae95ae7121a47"),
            ),
            (
                h(k256),
                h(iv),
                h(&p3),
                vec![],
                h(
                    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
                ),
                h("b094dac5d93471bdec1a502270e3cc6c"),
            ),
            (
                h(k256),
                h(iv),
                h(p),
                h(aad),
                h(
                    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                ),
                h("76fc6ece0f4e1768cddf8853bb2d551b"),
            ),
        ]
    }

    #[test]
    fn gcm_spec_vectors_every_backend() {
        for backend in Backend::ALL {
            for (i, (key, iv, pt, aad, ct, tag)) in gcm_spec_cases().into_iter().enumerate() {
                let e = AeadEngine::new(backend, &key).unwrap();
                let nonce: [u8; 12] = iv.try_into().unwrap();
                let mut buf = pt.clone();
                let t = e.seal(&nonce, &aad, &mut buf).unwrap();
                assert_eq!(buf, ct, "{backend:?} case {i} ciphertext");
                assert_eq!(&t[..], &tag[..], "{backend:?} case {i} tag");
                let tag16: [u8; 16] = tag.clone().try_into().unwrap();
                e.open(&nonce, &aad, &mut buf, &tag16).unwrap();
                assert_eq!(buf, pt);
                let mut bad = tag16;
                bad[0] ^= 1;
                let mut buf = ct.clone();
                assert_eq!(e.open(&nonce, &aad, &mut buf, &bad), Err(OpenError));
            }
        }
    }

    #[test]
    fn bad_key_lengths() {
        for backend in Backend::ALL {
            assert!(matches!(
                AeadEngine::new(backend, &[0; 24]),
                Err(BadKeyLength(24))
            ));
            assert!(matches!(
                AeadEngine::new(backend, &[0; 0]),
                Err(BadKeyLength(0))
            ));
        }
    }

    #[test]
    fn debug_never_prints_keys() {
        let key = [0xab; 16];
        for backend in Backend::ALL {
            let s = format!("{:?}", AeadEngine::new(backend, &key).unwrap());
            assert!(
                !s.to_lowercase().contains("ab, ") && !s.contains("171"),
                "{s}"
            );
            assert!(s.contains("AES-128"));
        }
    }
}
