//! Encryption of messages: the Encrypted payload with AES-GCM-16 (RFC 7296 §3.14,
//! RFC 5282).
//!
//! ```text
//! IKE header (Next Payload SK, Length final) ‖ SK generic header   <- associated data
//! IV (8) ‖ E(inner payloads ‖ Padding ‖ Pad Length) ‖ ICV (16)
//! ```
//!
//! We send no padding (GCM needs none, RFC 5282 §3: the Pad Length octet is 0); on receipt
//! any padding that fits in the plaintext is accepted and dropped (§3.14: the receiver must
//! not check its content). The IV is the caller's (a per-SA counter is a fine choice, RFC 5282
//! §3.1): the functions here are pure.

use crate::crypto::aead::{ICV_LEN, IV_LEN, SkAead};

use super::codec::Writer;
use super::enums::PayloadType;
use super::error::ParseError;
use super::header::Header;
use super::message::Message;
use super::payload::{GENERIC_HEADER_LEN, Payload, emit_payloads, parse_payloads};

/// A protected message could not be opened.
///
/// [`ProtectError::Parse`], [`ProtectError::NotEncrypted`] and
/// [`ProtectError::IntegrityCheckFailed`] concern octets nobody authenticated: drop the
/// datagram (§2.21.2). [`ProtectError::Inner`] is a malformed plaintext that passed the
/// integrity check, i.e. the peer's own error, which a responder answers with
/// [`ParseError::notify`] (§2.21.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtectError {
    /// The datagram itself (header, payloads outside SK, the SK framing) is malformed.
    #[error("malformed protected message: {0}")]
    Parse(ParseError),
    /// The message does not end with an SK (or, for the reassembler, SKF) payload, or has
    /// payloads before it.
    #[error("message is not encrypted")]
    NotEncrypted,
    /// The ICV did not verify (wrong key, tampered or forged message).
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// The authenticated plaintext does not parse (payload chain or padding).
    #[error("malformed encrypted payloads: {0}")]
    Inner(ParseError),
}

/// Octets an SK payload adds around its plaintext: generic header, IV and ICV.
pub const SK_OVERHEAD: usize = GENERIC_HEADER_LEN + IV_LEN + ICV_LEN;

/// Encrypts `inner` into a whole datagram: `header` with Next Payload SK and the final
/// Length, then the SK payload. `iv` must never repeat under one key.
///
/// # Panics
///
/// If the inner payloads exceed what one SK payload can hold (about 64 KiB; use
/// [`super::fragment::seal_fragments`] for anything that large).
pub fn seal(header: &Header, inner: &[Payload], aead: &SkAead, iv: [u8; IV_LEN]) -> Vec<u8> {
    let mut plain = Vec::with_capacity(256);
    let first = emit_payloads(inner, &mut plain);
    seal_content(header, PayloadType::SK, first, &[], plain, aead, iv)
}

/// Builds header ‖ generic header (type `ty`, Next Payload `next`) ‖ `extra` ‖ IV ‖
/// E(`plain` ‖ Pad Length 0) ‖ ICV, the AAD being everything before the IV. Shared by SK
/// and SKF (whose `extra` is Fragment Number ‖ Total Fragments).
pub(crate) fn seal_content(
    header: &Header,
    ty: PayloadType,
    next: PayloadType,
    extra: &[u8],
    mut plain: Vec<u8>,
    aead: &SkAead,
    iv: [u8; IV_LEN],
) -> Vec<u8> {
    plain.push(0); // Pad Length: no padding.
    let payload_len = GENERIC_HEADER_LEN + extra.len() + IV_LEN + plain.len() + ICV_LEN;
    let payload_len =
        u16::try_from(payload_len).unwrap_or_else(|_| panic!("encrypted payload over 65535"));
    let mut h = *header;
    h.next_payload = ty;
    h.length = u32::from(payload_len) + Header::LEN as u32;
    let mut out = Vec::with_capacity(h.length as usize);
    h.emit(&mut out);
    let mut w = Writer::new(&mut out);
    w.u8(next.0);
    w.u8(0);
    w.u16(payload_len);
    w.bytes(extra);
    let icv = aead.seal(&iv, &out, &mut plain);
    out.extend_from_slice(&iv);
    out.extend_from_slice(&plain);
    out.extend_from_slice(&icv);
    out
}

/// Verifies and decrypts the body (IV ‖ ciphertext ‖ ICV) of an SK or SKF payload that ends
/// `datagram`, and returns the plaintext without padding and Pad Length.
pub(crate) fn open_content(
    datagram: &[u8],
    mut body: Vec<u8>,
    aead: &SkAead,
) -> Result<Vec<u8>, ProtectError> {
    if body.len() < IV_LEN + 1 + ICV_LEN {
        return Err(ProtectError::Parse(ParseError::InvalidSyntax(
            "encrypted payload shorter than IV, Pad Length and ICV",
        )));
    }
    // The body is the tail of the datagram (SK and SKF end the chain); the AAD is all before.
    let aad = datagram
        .len()
        .checked_sub(body.len())
        .and_then(|n| datagram.get(..n))
        .ok_or(ProtectError::NotEncrypted)?;
    let mut iv = [0u8; IV_LEN];
    iv.copy_from_slice(&body[..IV_LEN]);
    let mut icv = [0u8; ICV_LEN];
    let icv_at = body.len() - ICV_LEN;
    icv.copy_from_slice(&body[icv_at..]);
    body.truncate(icv_at);
    body.drain(..IV_LEN);
    aead.open(&iv, aad, &mut body, &icv)
        .map_err(|_| ProtectError::IntegrityCheckFailed)?;
    let pad = usize::from(body.last().copied().unwrap_or(0));
    let keep = body
        .len()
        .checked_sub(pad + 1)
        .ok_or(ProtectError::Inner(ParseError::InvalidSyntax("pad length")))?;
    body.truncate(keep);
    Ok(body)
}

/// Parses, verifies and decrypts a datagram whose only payload is SK. The result has the
/// header as received (Next Payload SK) and the decrypted inner payloads.
pub fn open(datagram: &[u8], aead: &SkAead) -> Result<Message, ProtectError> {
    let mut msg = Message::parse(datagram).map_err(ProtectError::Parse)?;
    let sk = match msg.payloads.pop() {
        Some(Payload::Sk(sk)) if msg.payloads.is_empty() => sk,
        _ => return Err(ProtectError::NotEncrypted),
    };
    let plain = open_content(datagram, sk.body, aead)?;
    let payloads = parse_payloads(sk.first_inner, &plain).map_err(ProtectError::Inner)?;
    Ok(Message {
        header: msg.header,
        payloads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::enums::{ExchangeType, IdType, NotifyType};
    use crate::msgs::id::Identification;
    use crate::msgs::notify::Notify;
    use crate::msgs::sk::Encrypted;

    fn header() -> Header {
        Header {
            spi_i: 1,
            spi_r: 2,
            next_payload: PayloadType::NONE,
            major_version: 2,
            minor_version: 0,
            exchange: ExchangeType::INFORMATIONAL,
            flags: Header::FLAG_INITIATOR,
            message_id: 5,
            length: 0,
        }
    }

    fn inner() -> Vec<Payload> {
        vec![
            Payload::IdI(Identification {
                id_type: IdType::FQDN,
                data: b"a.example".to_vec(),
            }),
            Payload::Notify(Notify::new(NotifyType::INITIAL_CONTACT, vec![])),
        ]
    }

    fn aead() -> SkAead {
        SkAead::new(&[0x42; 36]).unwrap()
    }

    #[test]
    fn test_seal_layout() {
        let d = seal(&header(), &inner(), &aead(), [9; 8]);
        let mut plain = Vec::new();
        emit_payloads(&inner(), &mut plain);
        let total = Header::LEN + SK_OVERHEAD + plain.len() + 1;
        assert_eq!(d.len(), total);
        let m = Message::parse(&d).unwrap();
        assert_eq!(m.header.next_payload, PayloadType::SK);
        assert_eq!(m.header.length as usize, total);
        let sk: &Encrypted = m.sk().unwrap();
        assert_eq!(sk.first_inner, PayloadType::IDI);
        assert_eq!(sk.body[..8], [9; 8]);
        // The ciphertext is not the plaintext.
        assert_ne!(sk.body[8..8 + plain.len()], plain[..]);
    }

    #[test]
    fn test_round_trip() {
        let d = seal(&header(), &inner(), &aead(), [1; 8]);
        let m = open(&d, &aead()).unwrap();
        assert_eq!(m.payloads, inner());
        assert_eq!(m.header.message_id, 5);
        // Empty inner chain (a liveness check).
        let d = seal(&header(), &[], &aead(), [2; 8]);
        assert_eq!(open(&d, &aead()).unwrap().payloads, vec![]);
    }

    /// A datagram whose SK payload encrypts exactly `plaintext` (padding and Pad Length
    /// included), as another implementation might send it.
    fn seal_exact(first: PayloadType, plaintext: &[u8]) -> Vec<u8> {
        let mut h = header();
        h.next_payload = PayloadType::SK;
        let payload_len = SK_OVERHEAD + plaintext.len();
        h.length = u32::try_from(Header::LEN + payload_len).unwrap();
        let mut d = Vec::new();
        h.emit(&mut d);
        d.extend_from_slice(&[first.0, 0]);
        d.extend_from_slice(&u16::try_from(payload_len).unwrap().to_be_bytes());
        let mut ct = plaintext.to_vec();
        let icv = aead().seal(&[7; 8], &d, &mut ct);
        d.extend_from_slice(&[7; 8]);
        d.extend_from_slice(&ct);
        d.extend_from_slice(&icv);
        d
    }

    #[test]
    fn test_tamper() {
        let d = seal(&header(), &inner(), &aead(), [1; 8]);
        // Next Payload of the header and the two length fields are framing: changing them
        // breaks the parse. Every other octet is AAD, IV, ciphertext or ICV.
        let framing = |i: usize| i == 16 || (24..28).contains(&i) || (30..32).contains(&i);
        for at in 0..d.len() {
            let mut t = d.clone();
            t[at] ^= 0x01;
            let r = open(&t, &aead());
            if framing(at) {
                assert!(r.is_err(), "octet {at}");
            } else {
                assert_eq!(r, Err(ProtectError::IntegrityCheckFailed), "octet {at}");
            }
        }
        let other = SkAead::new(&[0x43; 36]).unwrap();
        assert_eq!(open(&d, &other), Err(ProtectError::IntegrityCheckFailed));
    }

    #[test]
    fn test_padding() {
        let mut plain = Vec::new();
        let first = emit_payloads(&inner(), &mut plain);
        // No padding (what we send) and 3 octets of padding of any content are accepted.
        for padding in [&[][..], &[0xee, 0x00, 0x17]] {
            let mut p = plain.clone();
            p.extend_from_slice(padding);
            p.push(u8::try_from(padding.len()).unwrap());
            assert_eq!(
                open(&seal_exact(first, &p), &aead()).unwrap().payloads,
                inner()
            );
        }
    }

    #[test]
    fn test_bad_pad_length_and_inner() {
        // Authenticated but malformed: a Pad Length beyond the plaintext, a chain that does
        // not parse, an unknown critical payload.
        let table: &[(&[u8], PayloadType, ParseError)] = &[
            (
                &[0x01],
                PayloadType::NONE,
                ParseError::InvalidSyntax("pad length"),
            ),
            (
                &[0x00, 0x00, 0x00, 0x03, 0x00],
                PayloadType::NOTIFY,
                ParseError::InvalidSyntax("payload length below 4"),
            ),
            (
                &[0x00, 0x80, 0x00, 0x04, 0x00],
                PayloadType(99),
                ParseError::UnsupportedCritical(PayloadType(99)),
            ),
        ];
        for &(plain, first, want) in table {
            assert_eq!(
                open(&seal_exact(first, plain), &aead()),
                Err(ProtectError::Inner(want))
            );
        }
    }

    #[test]
    fn test_not_encrypted() {
        let plain = Message {
            header: header(),
            payloads: inner(),
        }
        .emit();
        assert_eq!(open(&plain, &aead()), Err(ProtectError::NotEncrypted));
        assert!(matches!(
            open(&[0; 10], &aead()),
            Err(ProtectError::Parse(_))
        ));
        // An SK payload too short for IV and ICV.
        let m = Message {
            header: header(),
            payloads: vec![Payload::Sk(Encrypted {
                first_inner: PayloadType::NONE,
                body: vec![0; 24],
            })],
        };
        assert!(matches!(
            open(&m.emit(), &aead()),
            Err(ProtectError::Parse(_))
        ));
    }
}
