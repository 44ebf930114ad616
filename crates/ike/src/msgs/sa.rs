//! The Security Association payload and its substructures (RFC 7296 §3.3).
//!
//! ```text
//! Proposal (§3.3.1):
//! | Last Substruc |   RESERVED    |         Proposal Length       |
//! | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
//! ~                        SPI (variable)                         ~
//! ~                        <Transforms>                           ~
//! Transform (§3.3.2):
//! | Last Substruc |   RESERVED    |        Transform Length       |
//! |Transform Type |   RESERVED    |          Transform ID         |
//! ~                      Transform Attributes                     ~
//! Attribute (§3.3.5):
//! |A|       Attribute Type        |    AF=0  Attribute Length     |
//! |                               |    AF=1  Attribute Value      |
//! ~                   AF=0  Attribute Value                       ~
//! ```
//!
//! Parsing checks the structure, not the policy: Last Substruc values (2 before another
//! proposal, 3 before another transform, 0 on the last), every length exactly consumed, the
//! transform count, proposal numbering, and the SPI size of IKE (0 or 8), AH and ESP (4).
//! RESERVED octets are ignored on receipt and emitted as zero (§3.3).

use super::codec::{Reader, Writer};
use super::enums::{ProtocolId, TransformType};
use super::error::ParseError;

/// Last Substruc of a proposal followed by another (§3.3.1).
const MORE_PROPOSALS: u8 = 2;
/// Last Substruc of a transform followed by another (§3.3.2).
const MORE_TRANSFORMS: u8 = 3;
/// Attribute Format bit: the TV format (§3.3.5).
const AF_TV: u16 = 0x8000;

/// A Security Association payload: proposals in order of preference (§3.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SaPayload {
    /// The proposals; at least one.
    pub proposals: Vec<Proposal>,
}

/// One proposal: a protocol, an SPI and the transforms offered for it (§3.3.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// Proposal Num: 1, 2, … in a request; the accepted one's number in a response.
    pub number: u8,
    /// Protocol ID.
    pub protocol: ProtocolId,
    /// The sending entity's SPI: empty for IKE in IKE_SA_INIT, 8 octets for an IKE SA rekey,
    /// 4 octets for ESP and AH.
    pub spi: Vec<u8>,
    /// The transforms.
    pub transforms: Vec<Transform>,
}

/// One transform: an algorithm of one type (§3.3.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transform {
    /// Transform Type.
    pub ty: TransformType,
    /// Transform ID, interpreted by the type (e.g. [`super::enums::EncrId`]).
    pub id: u16,
    /// Transform attributes.
    pub attributes: Vec<Attribute>,
}

/// A transform attribute (§3.3.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// Attribute Type, without the AF bit (15 bits).
    pub ty: u16,
    /// The value and, with it, the format.
    pub value: AttributeValue,
}

/// The value of an attribute in either format (§3.3.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AttributeValue {
    /// Type/Value format (AF = 1): a two-octet value.
    Tv(u16),
    /// Type/Length/Value format (AF = 0).
    Tlv(Vec<u8>),
}

impl Attribute {
    /// The Key Length attribute type (§3.3.5), the only one RFC 7296 defines.
    pub const KEY_LENGTH: u16 = 14;

    fn parse(r: &mut Reader<'_>) -> Result<Attribute, ParseError> {
        let word = r.u16()?;
        let ty = word & !AF_TV;
        let value = if word & AF_TV != 0 {
            AttributeValue::Tv(r.u16()?)
        } else {
            let len = usize::from(r.u16()?);
            let v = r
                .take(len)
                .map_err(|_| ParseError::InvalidSyntax("attribute length"))?;
            AttributeValue::Tlv(v.to_vec())
        };
        Ok(Attribute { ty, value })
    }

    fn emit(&self, w: &mut Writer<'_>) {
        match &self.value {
            AttributeValue::Tv(v) => {
                w.u16(self.ty | AF_TV);
                w.u16(*v);
            }
            AttributeValue::Tlv(v) => {
                w.u16(self.ty & !AF_TV);
                let start = w.position() + 2;
                let len = w.placeholder_u16(start);
                w.bytes(v);
                w.fill_u16(len);
            }
        }
    }
}

impl Transform {
    /// A transform without attributes.
    pub fn new(ty: TransformType, id: u16) -> Self {
        Transform {
            ty,
            id,
            attributes: Vec::new(),
        }
    }

    /// A transform with a Key Length attribute of `bits` (§3.3.5, e.g. AES-GCM-16 with 256).
    pub fn with_key_length(ty: TransformType, id: u16, bits: u16) -> Self {
        Transform {
            ty,
            id,
            attributes: vec![Attribute {
                ty: Attribute::KEY_LENGTH,
                value: AttributeValue::Tv(bits),
            }],
        }
    }

    /// The Key Length attribute (TV, type 14) in bits, if present.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a.value {
            AttributeValue::Tv(v) if a.ty == Attribute::KEY_LENGTH => Some(v),
            _ => None,
        })
    }

    /// Parses one transform; returns it and its Last Substruc octet.
    fn parse(r: &mut Reader<'_>) -> Result<(Transform, u8), ParseError> {
        let last = r.u8()?;
        let _reserved = r.u8()?;
        let len = usize::from(r.u16()?);
        if len < 8 {
            return Err(ParseError::InvalidSyntax("transform length"));
        }
        let mut t = r
            .sub(len - 4)
            .map_err(|_| ParseError::InvalidSyntax("transform length"))?;
        let ty = TransformType(t.u8()?);
        let _reserved = t.u8()?;
        let id = t.u16()?;
        let mut attributes = Vec::new();
        while !t.is_empty() {
            attributes.push(Attribute::parse(&mut t)?);
        }
        Ok((Transform { ty, id, attributes }, last))
    }

    fn emit(&self, w: &mut Writer<'_>, last: bool) {
        let start = w.position();
        w.u8(if last { 0 } else { MORE_TRANSFORMS });
        w.u8(0);
        let len = w.placeholder_u16(start);
        w.u8(self.ty.0);
        w.u8(0);
        w.u16(self.id);
        for a in &self.attributes {
            a.emit(w);
        }
        w.fill_u16(len);
    }
}

/// The SPI sizes a protocol allows (§3.3.1), or `None` for a protocol we do not know.
fn spi_sizes(protocol: ProtocolId) -> Option<&'static [usize]> {
    const TABLE: &[(ProtocolId, &[usize])] = &[
        (ProtocolId::IKE, &[0, 8]),
        (ProtocolId::AH, &[4]),
        (ProtocolId::ESP, &[4]),
    ];
    TABLE.iter().find(|(p, _)| *p == protocol).map(|(_, s)| *s)
}

impl Proposal {
    /// The transforms of one type, in order.
    pub fn transforms_of(&self, ty: TransformType) -> impl Iterator<Item = &Transform> {
        self.transforms.iter().filter(move |t| t.ty == ty)
    }

    /// The SPI as a `u32` if it is four octets long (ESP and AH).
    pub fn spi_u32(&self) -> Option<u32> {
        <[u8; 4]>::try_from(self.spi.as_slice())
            .ok()
            .map(u32::from_be_bytes)
    }

    /// The SPI as a `u64` if it is eight octets long (an IKE SA rekey).
    pub fn spi_u64(&self) -> Option<u64> {
        <[u8; 8]>::try_from(self.spi.as_slice())
            .ok()
            .map(u64::from_be_bytes)
    }

    /// Parses one proposal; returns it and its Last Substruc octet.
    fn parse(r: &mut Reader<'_>) -> Result<(Proposal, u8), ParseError> {
        let last = r.u8()?;
        let _reserved = r.u8()?;
        let len = usize::from(r.u16()?);
        if len < 8 {
            return Err(ParseError::InvalidSyntax("proposal length"));
        }
        let mut p = r
            .sub(len - 4)
            .map_err(|_| ParseError::InvalidSyntax("proposal length"))?;
        let number = p.u8()?;
        let protocol = ProtocolId(p.u8()?);
        let spi_size = usize::from(p.u8()?);
        let count = p.u8()?;
        if spi_sizes(protocol).is_some_and(|allowed| !allowed.contains(&spi_size)) {
            return Err(ParseError::InvalidSyntax("proposal SPI size"));
        }
        let spi = p
            .take(spi_size)
            .map_err(|_| ParseError::InvalidSyntax("proposal SPI size"))?
            .to_vec();
        let mut transforms = Vec::with_capacity(usize::from(count));
        for i in 0..count {
            let (t, more) = Transform::parse(&mut p)?;
            let want = if i + 1 == count { 0 } else { MORE_TRANSFORMS };
            if more != want {
                return Err(ParseError::InvalidSyntax("transform last substruc"));
            }
            transforms.push(t);
        }
        p.finish("proposal length or number of transforms")?;
        Ok((
            Proposal {
                number,
                protocol,
                spi,
                transforms,
            },
            last,
        ))
    }

    fn emit(&self, w: &mut Writer<'_>, last: bool) {
        let start = w.position();
        w.u8(if last { 0 } else { MORE_PROPOSALS });
        w.u8(0);
        let len = w.placeholder_u16(start);
        w.u8(self.number);
        w.u8(self.protocol.0);
        w.u8(u8::try_from(self.spi.len()).unwrap_or_else(|_| panic!("SPI longer than 255")));
        w.u8(u8::try_from(self.transforms.len()).unwrap_or_else(|_| panic!("over 255 transforms")));
        w.bytes(&self.spi);
        for (i, t) in self.transforms.iter().enumerate() {
            t.emit(w, i + 1 == self.transforms.len());
        }
        w.fill_u16(len);
    }
}

impl SaPayload {
    /// Parses the body of an SA payload (after the generic payload header).
    ///
    /// Proposal numbers: a single proposal may carry any number from 1 (a response echoes
    /// the accepted one, §3.3.1); several must be numbered 1, 2, 3, …
    pub fn parse(body: &[u8]) -> Result<SaPayload, ParseError> {
        let mut r = Reader::new(body);
        let mut proposals = Vec::new();
        loop {
            let (p, more) = Proposal::parse(&mut r)?;
            proposals.push(p);
            match more {
                0 => break,
                MORE_PROPOSALS => {}
                _ => return Err(ParseError::InvalidSyntax("proposal last substruc")),
            }
        }
        r.finish("data after the last proposal")?;
        let numbered = match proposals.as_slice() {
            [only] => only.number >= 1,
            many => many
                .iter()
                .zip(1u16..)
                .all(|(p, n)| u16::from(p.number) == n),
        };
        if !numbered {
            return Err(ParseError::InvalidSyntax("proposal numbers"));
        }
        Ok(SaPayload { proposals })
    }

    /// Appends the body of the SA payload.
    ///
    /// # Panics
    ///
    /// If a structure exceeds what its length or count field can hold (an SPI over 255
    /// octets, more than 255 transforms in a proposal, a proposal over 65535 octets).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        for (i, p) in self.proposals.iter().enumerate() {
            p.emit(&mut w, i + 1 == self.proposals.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::enums::{DhGroup, EncrId, PrfId};

    /// One IKE proposal: AES-GCM-16 with a 256-bit key, PRF HMAC-SHA2-384, DH group 20.
    pub(crate) static SA_IKE: [u8; 36] = [
        0x00, 0x00, 0x00, 0x24, // last proposal, length 36
        0x01, 0x01, 0x00, 0x03, // #1, IKE, no SPI, 3 transforms
        0x03, 0x00, 0x00, 0x0c, // more transforms, length 12
        0x01, 0x00, 0x00, 0x14, // ENCR AES_GCM_16
        0x80, 0x0e, 0x01, 0x00, // Key Length (TV) 256
        0x03, 0x00, 0x00, 0x08, // more transforms, length 8
        0x02, 0x00, 0x00, 0x06, // PRF HMAC_SHA2_384
        0x00, 0x00, 0x00, 0x08, // last transform, length 8
        0x04, 0x00, 0x00, 0x14, // DH 20
    ];

    pub(crate) fn sa_ike() -> SaPayload {
        SaPayload {
            proposals: vec![Proposal {
                number: 1,
                protocol: ProtocolId::IKE,
                spi: vec![],
                transforms: vec![
                    Transform::with_key_length(TransformType::ENCR, EncrId::AES_GCM_16.0, 256),
                    Transform::new(TransformType::PRF, PrfId::HMAC_SHA2_384.0),
                    Transform::new(TransformType::DH, DhGroup::ECP_384.0),
                ],
            }],
        }
    }

    /// Two ESP proposals; the second with a TLV attribute of an unknown type.
    static SA_ESP: [u8; 44] = [
        0x02, 0x00, 0x00, 0x14, // more proposals, length 20
        0x01, 0x03, 0x04, 0x01, // #1, ESP, SPI size 4, 1 transform
        0xca, 0xfe, 0xba, 0xbe, // SPI
        0x00, 0x00, 0x00, 0x08, // last transform
        0x05, 0x00, 0x00, 0x00, // ESN: no
        0x00, 0x00, 0x00, 0x18, // last proposal, length 24
        0x02, 0x03, 0x04, 0x01, // #2, ESP, SPI size 4, 1 transform
        0x00, 0x00, 0x00, 0x01, // SPI
        0x00, 0x00, 0x00, 0x0c, // last transform, length 12
        0x09, 0x00, 0x12, 0x34, // unknown type 9, ID 0x1234
        0x40, 0x01, 0x00, 0x00, // TLV attribute 0x4001, empty
    ];

    fn sa_esp() -> SaPayload {
        let esn = Transform::new(TransformType::ESN, 0);
        let odd = Transform {
            ty: TransformType(9),
            id: 0x1234,
            attributes: vec![Attribute {
                ty: 0x4001,
                value: AttributeValue::Tlv(vec![]),
            }],
        };
        SaPayload {
            proposals: vec![
                Proposal {
                    number: 1,
                    protocol: ProtocolId::ESP,
                    spi: vec![0xca, 0xfe, 0xba, 0xbe],
                    transforms: vec![esn],
                },
                Proposal {
                    number: 2,
                    protocol: ProtocolId::ESP,
                    spi: vec![0, 0, 0, 1],
                    transforms: vec![odd],
                },
            ],
        }
    }

    #[test]
    fn test_parse() {
        let sa = SaPayload::parse(&SA_IKE).unwrap();
        assert_eq!(sa, sa_ike());
        assert_eq!(sa.proposals[0].transforms[0].key_length(), Some(256));
        assert_eq!(sa.proposals[0].transforms[1].key_length(), None);
        assert_eq!(SaPayload::parse(&SA_ESP).unwrap(), sa_esp());
        assert_eq!(sa_esp().proposals[0].spi_u32(), Some(0xcafe_babe));
        assert_eq!(sa_esp().proposals[0].spi_u64(), None);
    }

    #[test]
    fn test_emit() {
        let mut out = Vec::new();
        sa_ike().emit(&mut out);
        assert_eq!(out, SA_IKE);
        out.clear();
        sa_esp().emit(&mut out);
        assert_eq!(out, SA_ESP);
    }

    #[test]
    fn test_check_len() {
        for n in 0..SA_IKE.len() {
            assert!(SaPayload::parse(&SA_IKE[..n]).is_err(), "{n} octets");
        }
        let mut long = SA_IKE.to_vec();
        long.push(0);
        assert!(SaPayload::parse(&long).is_err());
    }

    #[test]
    fn test_malformed() {
        // (offset, value, what): one octet changed makes the payload invalid.
        let table: &[(usize, u8)] = &[
            (0, 2),     // says another proposal follows
            (0, 1),     // Last Substruc neither 0 nor 2
            (3, 0x27),  // proposal length one short
            (3, 0x29),  // proposal length one long
            (3, 0x07),  // proposal length below the minimum
            (4, 0),     // proposal number 0
            (6, 4),     // IKE SPI of size 4
            (7, 2),     // two transforms declared, three present
            (7, 4),     // four transforms declared
            (8, 0),     // first transform says it is the last
            (28, 3),    // last transform says more follow
            (11, 0x0b), // transform length cuts the attribute
            (11, 0x04), // transform length below the minimum
            (16, 0x00), // TLV attribute whose length runs past the transform
        ];
        for &(at, v) in table {
            let mut b = SA_IKE;
            b[at] = v;
            assert!(
                matches!(SaPayload::parse(&b), Err(ParseError::InvalidSyntax(_))),
                "octet {at} = {v:#x}"
            );
        }
    }

    #[test]
    fn test_proposal_numbers() {
        let mut sa = sa_esp();
        sa.proposals[1].number = 3;
        let mut out = Vec::new();
        sa.emit(&mut out);
        assert_eq!(
            SaPayload::parse(&out),
            Err(ParseError::InvalidSyntax("proposal numbers"))
        );
        // A lone proposal (a response) keeps the number it was accepted under.
        let mut one = sa_ike();
        one.proposals[0].number = 3;
        out.clear();
        one.emit(&mut out);
        assert_eq!(SaPayload::parse(&out), Ok(one));
    }
}
