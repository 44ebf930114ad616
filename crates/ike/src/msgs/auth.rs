//! The Authentication payload (RFC 7296 §3.8).
//!
//! ```text
//! | Auth Method   |                RESERVED                       |
//! ~                      Authentication Data                      ~
//! ```
//!
//! RESERVED is ignored on receipt and emitted as zero.

use super::codec::{Reader, Writer};
use super::enums::AuthMethod;
use super::error::ParseError;

/// An Authentication payload (§3.8).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AuthPayload {
    /// How the data was computed.
    pub method: AuthMethod,
    /// The signature or MAC (§2.15).
    pub data: Vec<u8>,
}

impl core::fmt::Debug for AuthPayload {
    /// The data is a MAC over the peer's key: its length is shown, not its octets.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuthPayload")
            .field("method", &self.method)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl AuthPayload {
    /// Parses the body of an AUTH payload.
    pub fn parse(body: &[u8]) -> Result<AuthPayload, ParseError> {
        let mut r = Reader::new(body);
        let method = AuthMethod(r.u8()?);
        let _reserved = r.take(3)?;
        Ok(AuthPayload {
            method,
            data: r.rest().to_vec(),
        })
    }

    /// Appends the body of the AUTH payload.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u8(self.method.0);
        w.bytes(&[0, 0, 0]);
        w.bytes(&self.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 8] = [0x02, 0x00, 0x00, 0x00, 0x11, 0x22, 0x33, 0x44];

    #[test]
    fn test_parse() {
        let a = AuthPayload::parse(&BYTES).unwrap();
        assert_eq!(
            a,
            AuthPayload {
                method: AuthMethod::SHARED_KEY_MIC,
                data: vec![0x11, 0x22, 0x33, 0x44]
            }
        );
        assert!(!format!("{a:?}").contains("17"));
    }

    #[test]
    fn test_emit() {
        let mut out = Vec::new();
        AuthPayload::parse(&BYTES).unwrap().emit(&mut out);
        assert_eq!(out, BYTES);
    }

    #[test]
    fn test_check_len() {
        for n in 0..4 {
            assert!(AuthPayload::parse(&BYTES[..n]).is_err());
        }
    }
}
