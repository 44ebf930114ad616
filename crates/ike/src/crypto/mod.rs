//! IKEv2 cryptography: the SK payload cipher, PRFs, key derivation, Diffie-Hellman and PSK
//! authentication. Everything secret is held in [`crate::secret::Secret`] or `Zeroizing`.

pub mod aead;

/// A cryptographic operation failed or was given unusable input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Keying material of an unsupported length.
    #[error("key of unsupported length {0}")]
    KeyLength(usize),
    /// An ICV did not verify.
    #[error("integrity check failed")]
    IntegrityCheckFailed,
}
