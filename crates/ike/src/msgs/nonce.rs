//! The Nonce payload (RFC 7296 §3.9): 16 to 256 octets of random data.

use super::error::ParseError;

/// A nonce, Ni or Nr (§2.10, §3.9).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Nonce(pub Vec<u8>);

impl Nonce {
    /// The shortest nonce allowed (§3.9).
    pub const MIN_LEN: usize = 16;
    /// The longest nonce allowed (§3.9).
    pub const MAX_LEN: usize = 256;

    /// Parses the body of a Nonce payload: 16..=256 octets.
    pub fn parse(body: &[u8]) -> Result<Nonce, ParseError> {
        if (Self::MIN_LEN..=Self::MAX_LEN).contains(&body.len()) {
            Ok(Nonce(body.to_vec()))
        } else {
            Err(ParseError::InvalidSyntax("nonce length"))
        }
    }

    /// Appends the body of the Nonce payload.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse() {
        let b = [7u8; 32];
        assert_eq!(Nonce::parse(&b), Ok(Nonce(b.to_vec())));
    }

    #[test]
    fn test_emit() {
        let mut out = Vec::new();
        Nonce(vec![1; 16]).emit(&mut out);
        assert_eq!(out, [1; 16]);
    }

    #[test]
    fn test_check_len() {
        let table = [
            (0, false),
            (15, false),
            (16, true),
            (256, true),
            (257, false),
        ];
        for (len, ok) in table {
            assert_eq!(Nonce::parse(&vec![0; len]).is_ok(), ok, "{len} octets");
        }
    }
}
