//! IKEv2 cryptography: the SK payload cipher, PRFs, key derivation, Diffie-Hellman and PSK
//! authentication. Everything secret is held in [`crate::secret::Secret`] or `Zeroizing`.

pub mod aead;
pub mod auth;
pub mod dh;
pub mod keys;
pub mod prf;

/// A cryptographic operation failed or was given unusable input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Keying material of an unsupported length.
    #[error("key of unsupported length {0}")]
    KeyLength(usize),
    /// An ICV did not verify.
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// prf+ was asked for more than 255 blocks of output (RFC 7296 §2.13).
    #[error("prf+ output of {requested} octets exceeds the limit of {max}")]
    PrfPlusTooLong {
        /// Octets asked for.
        requested: usize,
        /// 255 times the PRF's output length.
        max: usize,
    },
    /// The peer's Diffie-Hellman public value is malformed or unsafe: wrong length, not on
    /// the curve, outside 1 < y < p-1, or giving an all-zero X25519 result.
    #[error("invalid Diffie-Hellman public value")]
    InvalidPublicValue,
    /// The random source gave no usable Diffie-Hellman private value in repeated draws.
    #[error("no usable Diffie-Hellman private value could be drawn")]
    KeyGeneration,
}
