//! Secret byte strings: zeroized on drop, never printed.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Key material, a PSK, a DH shared secret or an AUTH value: wiped when dropped, and its
/// `Debug` shows only its length.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }

    /// Copies `bytes`.
    pub fn from_slice(bytes: &[u8]) -> Self {
        Secret(bytes.to_vec())
    }

    /// The secret bytes. Callers must not copy them into storage that is not wiped.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time comparison with `other` (the lengths are not secret).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        self.0.len() == other.len() && bool::from(self.0.as_slice().ct_eq(other))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([redacted; {} bytes])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_bytes() {
        let s = Secret::from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let shown = format!("{s:?}");
        assert_eq!(shown, "Secret([redacted; 4 bytes])");
        assert!(!shown.to_lowercase().contains("de"));
    }

    #[test]
    fn ct_eq_compares_content_and_length() {
        let s = Secret::from_slice(b"abc");
        assert!(s.ct_eq(b"abc"));
        assert!(!s.ct_eq(b"abd"));
        assert!(!s.ct_eq(b"ab"));
    }
}
