//! A whole IKE message: header and payload chain (RFC 7296 §3.1, §3.2).

use super::auth::AuthPayload;
use super::delete::Delete;
use super::enums::{NotifyType, PayloadType};
use super::error::ParseError;
use super::header::Header;
use super::id::Identification;
use super::ke::KePayload;
use super::nonce::Nonce;
use super::notify::Notify;
use super::payload::{Payload, emit_payloads, parse_payloads};
use super::sa::SaPayload;
use super::sk::{Encrypted, EncryptedFragment};
use super::ts::TrafficSelectors;

/// An IKE message. For a protected message `payloads` ends with the SK (or SKF) payload as
/// on the wire; [`super::protect::open`] returns the decrypted inner payloads instead.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// The header. [`Message::emit`] fills in `length` and `next_payload`.
    pub header: Header,
    /// The payloads in order.
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Parses a datagram (after any non-ESP marker): a header whose major version is 2
    /// (else [`ParseError::InvalidMajorVersion`]; parse the header alone with
    /// [`Header::parse`] to answer it) and whose Length is the datagram's, then the chain.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let header = Header::parse(bytes)?;
        header.check_version()?;
        if usize::try_from(header.length).ok() != Some(bytes.len()) {
            return Err(ParseError::InvalidSyntax(
                "header length is not the message length",
            ));
        }
        let payloads =
            parse_payloads(header.next_payload, bytes.get(Header::LEN..).unwrap_or(&[]))?;
        Ok(Message { header, payloads })
    }

    /// Serialises the message, with the header's Next Payload set to the first payload's type
    /// and Length to the message's.
    ///
    /// # Panics
    ///
    /// If a payload is longer than 65535 octets.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.header.emit(&mut out);
        let first = emit_payloads(&self.payloads, &mut out);
        let mut header = self.header;
        header.next_payload = first;
        header.length = u32::try_from(out.len()).unwrap_or(u32::MAX);
        let mut head = Vec::with_capacity(Header::LEN);
        header.emit(&mut head);
        out[..Header::LEN].copy_from_slice(&head);
        out
    }

    /// The payloads' types in order.
    pub fn payload_types(&self) -> impl Iterator<Item = PayloadType> + '_ {
        self.payloads.iter().map(Payload::payload_type)
    }

    /// The first notification of type `ty`.
    pub fn notify(&self, ty: NotifyType) -> Option<&Notify> {
        self.notifies().find(|n| n.ty == ty)
    }

    /// All notifications, in order.
    pub fn notifies(&self) -> impl Iterator<Item = &Notify> {
        self.payloads.iter().filter_map(|p| match p {
            Payload::Notify(n) => Some(n),
            _ => None,
        })
    }

    /// The first error notification (type below 16384), if any.
    pub fn error_notify(&self) -> Option<&Notify> {
        self.notifies().find(|n| n.ty.is_error())
    }

    /// The first SA payload.
    pub fn first_sa(&self) -> Option<&SaPayload> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Sa(x) => Some(x),
            _ => None,
        })
    }

    /// The first KE payload.
    pub fn ke(&self) -> Option<&KePayload> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Ke(x) => Some(x),
            _ => None,
        })
    }

    /// The first Nonce payload.
    pub fn nonce(&self) -> Option<&Nonce> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Nonce(x) => Some(x),
            _ => None,
        })
    }

    /// The first IDi payload.
    pub fn id_i(&self) -> Option<&Identification> {
        self.payloads.iter().find_map(|p| match p {
            Payload::IdI(x) => Some(x),
            _ => None,
        })
    }

    /// The first IDr payload.
    pub fn id_r(&self) -> Option<&Identification> {
        self.payloads.iter().find_map(|p| match p {
            Payload::IdR(x) => Some(x),
            _ => None,
        })
    }

    /// The first AUTH payload.
    pub fn auth(&self) -> Option<&AuthPayload> {
        self.payloads.iter().find_map(|p| match p {
            Payload::Auth(x) => Some(x),
            _ => None,
        })
    }

    /// The first TSi payload.
    pub fn ts_i(&self) -> Option<&TrafficSelectors> {
        self.payloads.iter().find_map(|p| match p {
            Payload::TsI(x) => Some(x),
            _ => None,
        })
    }

    /// The first TSr payload.
    pub fn ts_r(&self) -> Option<&TrafficSelectors> {
        self.payloads.iter().find_map(|p| match p {
            Payload::TsR(x) => Some(x),
            _ => None,
        })
    }

    /// All Delete payloads, in order.
    pub fn deletes(&self) -> impl Iterator<Item = &Delete> {
        self.payloads.iter().filter_map(|p| match p {
            Payload::Delete(d) => Some(d),
            _ => None,
        })
    }

    /// All Vendor ID payloads, in order.
    pub fn vendor_ids(&self) -> impl Iterator<Item = &[u8]> {
        self.payloads.iter().filter_map(|p| match p {
            Payload::VendorId(v) => Some(v.as_slice()),
            _ => None,
        })
    }

    /// The Encrypted payload, if the chain ends with one.
    pub fn sk(&self) -> Option<&Encrypted> {
        match self.payloads.last() {
            Some(Payload::Sk(e)) => Some(e),
            _ => None,
        }
    }

    /// The Encrypted Fragment payload, if the chain ends with one.
    pub fn skf(&self) -> Option<&EncryptedFragment> {
        match self.payloads.last() {
            Some(Payload::Skf(f)) => Some(f),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::msgs::enums::{DhGroup, EncrId, ExchangeType, PrfId, ProtocolId, TransformType};
    use crate::msgs::sa::{Proposal, Transform};

    /// An IKE_SA_INIT request: SA (AES-GCM-16/256, HMAC-SHA2-384, group 20), KE (group 20,
    /// 96 octets), Nonce (32), NAT_DETECTION_SOURCE_IP, NAT_DETECTION_DESTINATION_IP (20 each)
    /// and IKEV2_FRAGMENTATION_SUPPORTED, built by hand from RFC 7296 §3.
    pub(crate) fn ike_sa_init_bytes() -> Vec<u8> {
        let mut b = vec![
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // SPIi
            0, 0, 0, 0, 0, 0, 0, 0, // SPIr
            0x21, 0x20, 0x22, 0x08, // next SA, version 2.0, IKE_SA_INIT, Initiator
            0, 0, 0, 0, // message ID 0
            0x00, 0x00, 0x01, 0x10, // length 272
            // SA payload: next KE, length 40
            0x22, 0x00, 0x00, 0x28, //
            0x00, 0x00, 0x00, 0x24, 0x01, 0x01, 0x00, 0x03, // proposal 1, IKE, 3 transforms
            0x03, 0x00, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x14, 0x80, 0x0e, 0x01,
            0x00, // ENCR 20/256
            0x03, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x06, // PRF HMAC_SHA2_384
            0x00, 0x00, 0x00, 0x08, 0x04, 0x00, 0x00, 0x14, // DH 20
            // KE payload: next Nonce, length 104, group 20
            0x28, 0x00, 0x00, 0x68, 0x00, 0x14, 0x00, 0x00,
        ];
        b.extend_from_slice(&[0xab; 96]);
        // Nonce payload: next Notify, length 36.
        b.extend_from_slice(&[0x29, 0x00, 0x00, 0x24]);
        b.extend_from_slice(&[0x4e; 32]);
        // NAT_DETECTION_SOURCE_IP, next Notify, length 28.
        b.extend_from_slice(&[0x29, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x04]);
        b.extend_from_slice(&[0x51; 20]);
        // NAT_DETECTION_DESTINATION_IP, next Notify, length 28.
        b.extend_from_slice(&[0x29, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x05]);
        b.extend_from_slice(&[0xd5; 20]);
        // IKEV2_FRAGMENTATION_SUPPORTED, last, length 8.
        b.extend_from_slice(&[0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x40, 0x2e]);
        b
    }

    pub(crate) fn ike_sa_init() -> Message {
        Message {
            header: Header {
                spi_i: 0x1122_3344_5566_7788,
                spi_r: 0,
                next_payload: PayloadType::SA,
                major_version: 2,
                minor_version: 0,
                exchange: ExchangeType::IKE_SA_INIT,
                flags: Header::FLAG_INITIATOR,
                message_id: 0,
                length: 272,
            },
            payloads: vec![
                Payload::Sa(SaPayload {
                    proposals: vec![Proposal {
                        number: 1,
                        protocol: ProtocolId::IKE,
                        spi: vec![],
                        transforms: vec![
                            Transform::with_key_length(
                                TransformType::ENCR,
                                EncrId::AES_GCM_16.0,
                                256,
                            ),
                            Transform::new(TransformType::PRF, PrfId::HMAC_SHA2_384.0),
                            Transform::new(TransformType::DH, DhGroup::ECP_384.0),
                        ],
                    }],
                }),
                Payload::Ke(KePayload {
                    group: DhGroup::ECP_384,
                    data: vec![0xab; 96],
                }),
                Payload::Nonce(Nonce(vec![0x4e; 32])),
                Payload::Notify(Notify::new(
                    NotifyType::NAT_DETECTION_SOURCE_IP,
                    vec![0x51; 20],
                )),
                Payload::Notify(Notify::new(
                    NotifyType::NAT_DETECTION_DESTINATION_IP,
                    vec![0xd5; 20],
                )),
                Payload::Notify(Notify::new(
                    NotifyType::IKEV2_FRAGMENTATION_SUPPORTED,
                    vec![],
                )),
            ],
        }
    }

    #[test]
    fn test_parse() {
        let m = Message::parse(&ike_sa_init_bytes()).unwrap();
        assert_eq!(m, ike_sa_init());
        assert_eq!(
            m.first_sa().unwrap().proposals[0].transforms[0].key_length(),
            Some(256)
        );
        assert_eq!(m.ke().unwrap().group, DhGroup::ECP_384);
        assert_eq!(m.nonce().unwrap().0.len(), 32);
        assert_eq!(
            m.notify(NotifyType::NAT_DETECTION_DESTINATION_IP)
                .unwrap()
                .data,
            [0xd5; 20]
        );
        assert!(m.notify(NotifyType::COOKIE).is_none());
        assert!(m.error_notify().is_none());
        assert_eq!(m.notifies().count(), 3);
        assert!(m.sk().is_none() && m.id_i().is_none() && m.auth().is_none());
        assert_eq!(
            m.payload_types().collect::<Vec<_>>(),
            [
                PayloadType::SA,
                PayloadType::KE,
                PayloadType::NONCE,
                PayloadType::NOTIFY,
                PayloadType::NOTIFY,
                PayloadType::NOTIFY
            ]
        );
    }

    #[test]
    fn test_emit() {
        assert_eq!(ike_sa_init().emit(), ike_sa_init_bytes());
        // Length and Next Payload are filled in whatever the header said.
        let mut m = ike_sa_init();
        m.header.length = 0;
        m.header.next_payload = PayloadType::NONE;
        assert_eq!(m.emit(), ike_sa_init_bytes());
    }

    #[test]
    fn test_check_len() {
        let b = ike_sa_init_bytes();
        for n in 0..b.len() {
            assert!(Message::parse(&b[..n]).is_err(), "{n} octets");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(Message::parse(&long).is_err());
        // Header length one off either way.
        for len in [271u32, 273] {
            let mut x = b.clone();
            x[24..28].copy_from_slice(&len.to_be_bytes());
            assert_eq!(
                Message::parse(&x),
                Err(ParseError::InvalidSyntax(
                    "header length is not the message length"
                ))
            );
        }
    }

    #[test]
    fn test_version() {
        let mut b = ike_sa_init_bytes();
        b[17] = 0x30;
        assert_eq!(Message::parse(&b), Err(ParseError::InvalidMajorVersion(3)));
        b[17] = 0x2f;
        assert_eq!(Message::parse(&b).unwrap().header.minor_version, 15);
    }
}
