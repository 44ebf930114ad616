//! The generic payload header (RFC 7296 §3.2), the [`Payload`] enum and payload chains.
//!
//! ```text
//! | Next Payload  |C|  RESERVED   |         Payload Length        |
//! ```
//!
//! Rules of [`parse_payloads`]:
//!
//! * Payload Length must be at least 4 and within the buffer; the last payload must end the
//!   buffer exactly.
//! * A payload of a type this crate does not know is kept as [`Payload::Unknown`] when its
//!   critical bit is clear (the exchange skips it, §2.5) and fails with
//!   [`ParseError::UnsupportedCritical`] when it is set.
//! * CERT, CERTREQ, CP and EAP are defined by RFC 7296 but not modelled here: they are kept as
//!   [`Payload::Unknown`] with their critical bit whatever it is (for a type the RFC defines
//!   the bit is to be ignored, §3.2), and the exchange decides whether it can go on.
//! * SK and SKF end the chain: their Next Payload field is the first inner payload's type, so
//!   nothing may follow them in the buffer.
//! * The critical bit of modelled payloads and the RESERVED bits are ignored on receipt and
//!   emitted as zero, so the round trip is byte-exact for messages that send them as zero.

use super::auth::AuthPayload;
use super::codec::{Reader, Writer};
use super::delete::Delete;
use super::enums::PayloadType;
use super::error::ParseError;
use super::id::Identification;
use super::ke::KePayload;
use super::nonce::Nonce;
use super::notify::Notify;
use super::sa::SaPayload;
use super::sk::{Encrypted, EncryptedFragment};
use super::ts::TrafficSelectors;
use super::vendor;

/// Length of the generic payload header.
pub const GENERIC_HEADER_LEN: usize = 4;
/// The critical bit of the generic payload header (§3.2).
const CRITICAL: u8 = 0x80;

/// Payload types RFC 7296 defines that this crate keeps as [`Payload::Unknown`].
const UNMODELLED: [PayloadType; 4] = [
    PayloadType::CERT,
    PayloadType::CERTREQ,
    PayloadType::CP,
    PayloadType::EAP,
];

/// One payload of a message (§3.2–§3.16; RFC 7383 §2.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// Security Association (§3.3).
    Sa(SaPayload),
    /// Key Exchange (§3.4).
    Ke(KePayload),
    /// Identification - Initiator (§3.5).
    IdI(Identification),
    /// Identification - Responder (§3.5).
    IdR(Identification),
    /// Authentication (§3.8).
    Auth(AuthPayload),
    /// Nonce (§3.9).
    Nonce(Nonce),
    /// Notify (§3.10).
    Notify(Notify),
    /// Delete (§3.11).
    Delete(Delete),
    /// Vendor ID (§3.12).
    VendorId(Vec<u8>),
    /// Traffic Selector - Initiator (§3.13).
    TsI(TrafficSelectors),
    /// Traffic Selector - Responder (§3.13).
    TsR(TrafficSelectors),
    /// Encrypted and Authenticated (§3.14), as on the wire.
    Sk(Encrypted),
    /// Encrypted and Authenticated Fragment (RFC 7383 §2.5), as on the wire.
    Skf(EncryptedFragment),
    /// A payload this crate does not model: an unknown type whose critical bit is clear, or
    /// CERT, CERTREQ, CP or EAP. Its body is kept and emitted as it is.
    Unknown {
        /// Payload type.
        ty: PayloadType,
        /// The critical bit as received.
        critical: bool,
        /// The body after the generic header.
        body: Vec<u8>,
    },
}

impl Payload {
    /// The payload's type (for Next Payload fields).
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::Sk(_) => PayloadType::SK,
            Payload::Skf(_) => PayloadType::SKF,
            Payload::Unknown { ty, .. } => *ty,
        }
    }

    /// Parses the body of a payload of type `ty` whose generic header had `next` and
    /// `critical`.
    fn parse(
        ty: PayloadType,
        next: PayloadType,
        critical: bool,
        body: &[u8],
    ) -> Result<Payload, ParseError> {
        Ok(match ty {
            PayloadType::SA => Payload::Sa(SaPayload::parse(body)?),
            PayloadType::KE => Payload::Ke(KePayload::parse(body)?),
            PayloadType::IDI => Payload::IdI(Identification::parse(body)?),
            PayloadType::IDR => Payload::IdR(Identification::parse(body)?),
            PayloadType::AUTH => Payload::Auth(AuthPayload::parse(body)?),
            PayloadType::NONCE => Payload::Nonce(Nonce::parse(body)?),
            PayloadType::NOTIFY => Payload::Notify(Notify::parse(body)?),
            PayloadType::DELETE => Payload::Delete(Delete::parse(body)?),
            PayloadType::VENDOR_ID => Payload::VendorId(vendor::parse(body)),
            PayloadType::TSI => Payload::TsI(TrafficSelectors::parse(body)?),
            PayloadType::TSR => Payload::TsR(TrafficSelectors::parse(body)?),
            PayloadType::SK => Payload::Sk(Encrypted {
                first_inner: next,
                body: body.to_vec(),
            }),
            PayloadType::SKF => Payload::Skf(EncryptedFragment::parse(next, body)?),
            ty if critical && !UNMODELLED.contains(&ty) => {
                return Err(ParseError::UnsupportedCritical(ty));
            }
            ty => Payload::Unknown {
                ty,
                critical,
                body: body.to_vec(),
            },
        })
    }

    /// The Next Payload value this payload's header carries when `next` follows it (SK and
    /// SKF carry their first inner type instead) and its critical bit.
    fn header_fields(&self, next: PayloadType) -> (PayloadType, bool) {
        match self {
            Payload::Sk(e) => (e.first_inner, false),
            Payload::Skf(f) => (f.first_inner, false),
            Payload::Unknown { critical, .. } => (next, *critical),
            _ => (next, false),
        }
    }

    /// Appends the body (after the generic header).
    fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(p) => p.emit(out),
            Payload::Ke(p) => p.emit(out),
            Payload::IdI(p) | Payload::IdR(p) => p.emit(out),
            Payload::Auth(p) => p.emit(out),
            Payload::Nonce(p) => p.emit(out),
            Payload::Notify(p) => p.emit(out),
            Payload::Delete(p) => p.emit(out),
            Payload::VendorId(v) => vendor::emit(v, out),
            Payload::TsI(p) | Payload::TsR(p) => p.emit(out),
            Payload::Sk(e) => out.extend_from_slice(&e.body),
            Payload::Skf(f) => f.emit(out),
            Payload::Unknown { body, .. } => out.extend_from_slice(body),
        }
    }

    /// Appends the payload with its generic header, `next` being the type that follows it.
    ///
    /// # Panics
    ///
    /// If the payload is longer than 65535 octets (see [`super::codec::Writer::fill_u16`]).
    pub fn emit(&self, next: PayloadType, out: &mut Vec<u8>) {
        let (next_field, critical) = self.header_fields(next);
        let start = out.len();
        let mut w = Writer::new(out);
        w.u8(next_field.0);
        w.u8(if critical { CRITICAL } else { 0 });
        let len = w.placeholder_u16(start);
        self.emit_body(out);
        len.fill(out);
    }
}

/// Parses a chain of payloads starting with type `first` that fills `bytes` exactly (§3.2).
pub fn parse_payloads(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, ParseError> {
    let mut r = Reader::new(bytes);
    let mut ty = first;
    let mut out = Vec::new();
    while ty != PayloadType::NONE {
        let next = PayloadType(r.u8()?);
        let critical = r.u8()? & CRITICAL != 0;
        let len = usize::from(r.u16()?);
        let body = len
            .checked_sub(GENERIC_HEADER_LEN)
            .ok_or(ParseError::InvalidSyntax("payload length below 4"))
            .and_then(|n| {
                r.take(n)
                    .map_err(|_| ParseError::InvalidSyntax("payload length"))
            })?;
        let p = Payload::parse(ty, next, critical, body)?;
        let ends_chain = matches!(p, Payload::Sk(_) | Payload::Skf(_));
        out.push(p);
        if ends_chain {
            break;
        }
        ty = next;
    }
    r.finish("data after the last payload")?;
    Ok(out)
}

/// Appends the chain of `payloads` and returns the type of the first (NONE if empty), for
/// the IKE header or the SK header. An SK or SKF payload belongs last.
pub fn emit_payloads(payloads: &[Payload], out: &mut Vec<u8>) -> PayloadType {
    for (i, p) in payloads.iter().enumerate() {
        let next = payloads
            .get(i + 1)
            .map_or(PayloadType::NONE, Payload::payload_type);
        p.emit(next, out);
    }
    payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::enums::NotifyType;

    /// Nonce (16 octets), then a Notify, then a non-critical unknown payload 200.
    static CHAIN: [u8; 36] = [
        0x29, 0x00, 0x00, 0x14, // next Notify, length 20
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, // nonce
        0xc8, 0x00, 0x00, 0x08, // next 200, length 8
        0x00, 0x00, 0x40, 0x00, // INITIAL_CONTACT
        0x00, 0x00, 0x00, 0x08, // last, not critical, length 8
        0xde, 0xad, 0xbe, 0xef,
    ];

    fn chain() -> Vec<Payload> {
        vec![
            Payload::Nonce(Nonce((1..=16).collect())),
            Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![])),
            Payload::Unknown {
                ty: PayloadType(200),
                critical: false,
                body: vec![0xde, 0xad, 0xbe, 0xef],
            },
        ]
    }

    #[test]
    fn test_parse() {
        assert_eq!(parse_payloads(PayloadType::NONCE, &CHAIN).unwrap(), chain());
        assert_eq!(parse_payloads(PayloadType::NONE, &[]).unwrap(), vec![]);
    }

    #[test]
    fn test_emit() {
        let mut out = Vec::new();
        assert_eq!(emit_payloads(&chain(), &mut out), PayloadType::NONCE);
        assert_eq!(out, CHAIN);
        out.clear();
        assert_eq!(emit_payloads(&[], &mut out), PayloadType::NONE);
        assert!(out.is_empty());
    }

    #[test]
    fn test_check_len() {
        for n in 0..CHAIN.len() {
            assert!(
                parse_payloads(PayloadType::NONCE, &CHAIN[..n]).is_err(),
                "{n} octets"
            );
        }
        let mut long = CHAIN.to_vec();
        long.push(0);
        assert_eq!(
            parse_payloads(PayloadType::NONCE, &long),
            Err(ParseError::InvalidSyntax("data after the last payload"))
        );
        // (offset, value): lengths below 4, too short, too long.
        for (at, v) in [(3, 0x03), (3, 0x00), (3, 0x13), (23, 0x09), (35 - 4, 0x09)] {
            let mut b = CHAIN;
            b[at] = v;
            assert!(
                parse_payloads(PayloadType::NONCE, &b).is_err(),
                "octet {at} = {v}"
            );
        }
        // Data when the header says there are no payloads.
        assert!(parse_payloads(PayloadType::NONE, &CHAIN).is_err());
    }

    #[test]
    fn test_critical() {
        let mut b = CHAIN;
        b[29] = 0x80;
        assert_eq!(
            parse_payloads(PayloadType::NONCE, &b),
            Err(ParseError::UnsupportedCritical(PayloadType(200)))
        );
        // The critical bit of a modelled payload is ignored; RESERVED too.
        let mut b = CHAIN;
        b[1] = 0xff;
        assert_eq!(parse_payloads(PayloadType::NONCE, &b).unwrap(), chain());
        // CERTREQ marked critical is kept, with its bit, for the exchange to decide.
        let mut b = CHAIN;
        b[20] = 38;
        b[29] = 0x80;
        let mut want = chain();
        want[2] = Payload::Unknown {
            ty: PayloadType::CERTREQ,
            critical: true,
            body: vec![0xde, 0xad, 0xbe, 0xef],
        };
        assert_eq!(parse_payloads(PayloadType::NONCE, &b).unwrap(), want);
        let mut out = Vec::new();
        emit_payloads(&want, &mut out);
        assert_eq!(out, b);
    }

    #[test]
    fn test_sk_ends_chain() {
        // Notify, then SK whose Next Payload (IDi) is the first inner payload.
        let b = [
            0x2e, 0x00, 0x00, 0x08, 0x00, 0x00, 0x40, 0x00, // Notify, next SK
            0x23, 0x00, 0x00, 0x07, 0xaa, 0xbb, 0xcc, // SK, first inner IDi
        ];
        let want = vec![
            Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![])),
            Payload::Sk(Encrypted {
                first_inner: PayloadType::IDI,
                body: vec![0xaa, 0xbb, 0xcc],
            }),
        ];
        assert_eq!(parse_payloads(PayloadType::NOTIFY, &b).unwrap(), want);
        let mut out = Vec::new();
        assert_eq!(emit_payloads(&want, &mut out), PayloadType::NOTIFY);
        assert_eq!(out, b);
        // Nothing may follow the SK payload.
        let mut long = b.to_vec();
        long.extend_from_slice(&[0x00, 0x00, 0x00, 0x04]);
        assert!(parse_payloads(PayloadType::NOTIFY, &long).is_err());
    }
}
