//! Proposals as an operator writes them (`aes256gcm16-prfsha384-ecp384`, strongSwan's syntax),
//! their SA payload form (RFC 7296 §3.3) and the responder's selection (§2.7).
//!
//! Only AEAD ciphers are offered (AES-GCM with a 16-octet ICV, RFC 5282 / RFC 4106), so a
//! proposal has no integrity transform; a peer's INTEG transform `NONE` is accepted.

use core::fmt;

use crate::crypto::dh::DhAlg;
use crate::crypto::prf::PrfAlg;
use crate::msgs::{
    DhGroup, EncrId, EsnId, IntegId, Proposal, ProtocolId, SaPayload, Transform, TransformType,
};

/// AES-GCM-16 key sizes espada negotiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-128-GCM, 16-octet ICV.
    AesGcm16_128,
    /// AES-256-GCM, 16-octet ICV.
    AesGcm16_256,
}

impl Cipher {
    /// Key length in bits (the Key Length attribute, §3.3.5).
    pub fn key_bits(self) -> u16 {
        match self {
            Cipher::AesGcm16_128 => 128,
            Cipher::AesGcm16_256 => 256,
        }
    }

    /// Keying material per direction: the AES key and a 4-octet salt (RFC 5282 §7.1,
    /// RFC 4106 §8.1).
    pub fn keymat_len(self) -> usize {
        usize::from(self.key_bits() / 8) + 4
    }

    fn from_bits(bits: u16) -> Option<Cipher> {
        match bits {
            128 => Some(Cipher::AesGcm16_128),
            256 => Some(Cipher::AesGcm16_256),
            _ => None,
        }
    }

    fn transform(self) -> Transform {
        Transform::with_key_length(TransformType::ENCR, EncrId::AES_GCM_16.0, self.key_bits())
    }
}

/// One IKE proposal: a cipher, a PRF and the acceptable DH groups in preference order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IkeProposal {
    /// Encryption (and integrity) of the SK payload.
    pub cipher: Cipher,
    /// The PRF.
    pub prf: PrfAlg,
    /// DH groups, most preferred first; never empty.
    pub dh: Vec<DhAlg>,
}

/// One ESP proposal: a cipher, PFS groups for CREATE_CHILD_SA (empty: no PFS), and whether
/// 64-bit extended sequence numbers are wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspProposal {
    /// Encryption (and integrity) of ESP.
    pub cipher: Cipher,
    /// DH groups for a KE in CREATE_CHILD_SA (§1.3.1), most preferred first; empty: no PFS.
    pub dh: Vec<DhAlg>,
    /// Extended sequence numbers acceptable, most preferred first (never empty).
    pub esn: Vec<bool>,
}

/// What the responder chose from an IKE SA payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChosenIke {
    /// Number of the peer's proposal that was accepted.
    pub number: u8,
    /// Cipher.
    pub cipher: Cipher,
    /// PRF.
    pub prf: PrfAlg,
    /// DH group.
    pub dh: DhAlg,
}

/// What the responder chose from an ESP SA payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChosenEsp {
    /// Number of the peer's proposal that was accepted.
    pub number: u8,
    /// Cipher.
    pub cipher: Cipher,
    /// PFS group, if a KE is exchanged.
    pub dh: Option<DhAlg>,
    /// Extended sequence numbers.
    pub esn: bool,
    /// The peer's SPI from its proposal (where it wants to receive).
    pub peer_spi: u32,
}

/// A proposal string that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProposalSyntax(pub String);

fn dh_token(t: &str) -> Option<DhAlg> {
    const TABLE: &[(&str, DhAlg)] = &[
        ("modp2048", DhAlg::Modp2048),
        ("ecp256", DhAlg::Ecp256),
        ("ecp384", DhAlg::Ecp384),
        ("x25519", DhAlg::Curve25519),
        ("curve25519", DhAlg::Curve25519),
    ];
    TABLE.iter().find(|(n, _)| *n == t).map(|(_, a)| *a)
}

fn dh_name(a: DhAlg) -> &'static str {
    match a {
        DhAlg::Modp2048 => "modp2048",
        DhAlg::Ecp256 => "ecp256",
        DhAlg::Ecp384 => "ecp384",
        DhAlg::Curve25519 => "x25519",
    }
}

fn cipher_token(t: &str) -> Option<Cipher> {
    const TABLE: &[(&str, Cipher)] = &[
        ("aes128gcm16", Cipher::AesGcm16_128),
        ("aes128gcm", Cipher::AesGcm16_128),
        ("aes256gcm16", Cipher::AesGcm16_256),
        ("aes256gcm", Cipher::AesGcm16_256),
    ];
    TABLE.iter().find(|(n, _)| *n == t).map(|(_, c)| *c)
}

fn prf_token(t: &str) -> Option<PrfAlg> {
    const TABLE: &[(&str, PrfAlg)] = &[
        ("prfsha256", PrfAlg::HmacSha256),
        ("prfsha384", PrfAlg::HmacSha384),
        ("prfsha512", PrfAlg::HmacSha512),
    ];
    TABLE.iter().find(|(n, _)| *n == t).map(|(_, p)| *p)
}

fn prf_name(p: PrfAlg) -> &'static str {
    match p {
        PrfAlg::HmacSha256 => "prfsha256",
        PrfAlg::HmacSha384 => "prfsha384",
        PrfAlg::HmacSha512 => "prfsha512",
    }
}

fn cipher_name(c: Cipher) -> &'static str {
    match c {
        Cipher::AesGcm16_128 => "aes128gcm16",
        Cipher::AesGcm16_256 => "aes256gcm16",
    }
}

impl IkeProposal {
    /// Parses `aes256gcm16-prfsha384-ecp384` (several DH groups allowed, in preference order).
    /// Without a `prf…` token the PRF follows the cipher strength (SHA-256 for AES-128,
    /// SHA-384 for AES-256), as RFC 8247 pairs them.
    pub fn parse(s: &str) -> Result<IkeProposal, ProposalSyntax> {
        let (mut cipher, mut prf, mut dh) = (None, None, Vec::new());
        for t in s.split('-') {
            if let Some(c) = cipher_token(t) {
                cipher = Some(c);
            } else if let Some(p) = prf_token(t) {
                prf = Some(p);
            } else if let Some(g) = dh_token(t) {
                dh.push(g);
            } else {
                return Err(ProposalSyntax(format!(
                    "unknown IKE algorithm `{t}` in `{s}` (known: aes128gcm16, aes256gcm16, \
                     prfsha256, prfsha384, prfsha512, modp2048, ecp256, ecp384, x25519)"
                )));
            }
        }
        let cipher = cipher.ok_or_else(|| ProposalSyntax(format!("no cipher in `{s}`")))?;
        if dh.is_empty() {
            return Err(ProposalSyntax(format!("no DH group in IKE proposal `{s}`")));
        }
        let prf = prf.unwrap_or(match cipher {
            Cipher::AesGcm16_128 => PrfAlg::HmacSha256,
            Cipher::AesGcm16_256 => PrfAlg::HmacSha384,
        });
        Ok(IkeProposal { cipher, prf, dh })
    }

    /// The proposal as an SA payload proposal (§3.3), numbered `number`, with `spi`
    /// (empty in IKE_SA_INIT, the new IKE SPI when rekeying, §3.3.1).
    pub fn to_wire(&self, number: u8, spi: Vec<u8>) -> Proposal {
        let mut transforms = vec![
            self.cipher.transform(),
            Transform::new(TransformType::PRF, self.prf.id()),
        ];
        transforms.extend(
            self.dh
                .iter()
                .map(|g| Transform::new(TransformType::DH, g.id())),
        );
        Proposal {
            number,
            protocol: ProtocolId::IKE,
            spi,
            transforms,
        }
    }
}

impl EspProposal {
    /// Parses `aes256gcm16-modp2048-esn` (DH groups are PFS groups; `esn`/`noesn`, default
    /// `noesn`).
    pub fn parse(s: &str) -> Result<EspProposal, ProposalSyntax> {
        let (mut cipher, mut dh, mut esn) = (None, Vec::new(), Vec::new());
        for t in s.split('-') {
            if let Some(c) = cipher_token(t) {
                cipher = Some(c);
            } else if let Some(g) = dh_token(t) {
                dh.push(g);
            } else if t == "esn" {
                esn.push(true);
            } else if t == "noesn" {
                esn.push(false);
            } else {
                return Err(ProposalSyntax(format!(
                    "unknown ESP algorithm `{t}` in `{s}` (known: aes128gcm16, aes256gcm16, \
                     modp2048, ecp256, ecp384, x25519, esn, noesn)"
                )));
            }
        }
        let cipher = cipher.ok_or_else(|| ProposalSyntax(format!("no cipher in `{s}`")))?;
        if esn.is_empty() {
            esn.push(false);
        }
        Ok(EspProposal { cipher, dh, esn })
    }

    /// The proposal as an ESP SA payload proposal with our inbound `spi`; `with_dh` is false
    /// in IKE_AUTH, where the CHILD_SA takes its keys from the IKE SA (§1.2).
    pub fn to_wire(&self, number: u8, spi: u32, with_dh: bool) -> Proposal {
        let mut transforms = vec![self.cipher.transform()];
        if with_dh {
            transforms.extend(
                self.dh
                    .iter()
                    .map(|g| Transform::new(TransformType::DH, g.id())),
            );
        }
        transforms.extend(self.esn.iter().map(|&e| {
            Transform::new(
                TransformType::ESN,
                if e { EsnId::ESN.0 } else { EsnId::NO_ESN.0 },
            )
        }));
        Proposal {
            number,
            protocol: ProtocolId::ESP,
            spi: spi.to_be_bytes().to_vec(),
            transforms,
        }
    }
}

impl fmt::Display for IkeProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", cipher_name(self.cipher), prf_name(self.prf))?;
        self.dh
            .iter()
            .try_for_each(|g| write!(f, "-{}", dh_name(*g)))
    }
}

impl fmt::Display for EspProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", cipher_name(self.cipher))?;
        self.dh
            .iter()
            .try_for_each(|g| write!(f, "-{}", dh_name(*g)))?;
        self.esn
            .iter()
            .try_for_each(|e| write!(f, "-{}", if *e { "esn" } else { "noesn" }))
    }
}

/// Builds the SA payload for our proposals, numbered from 1 (§3.3.1).
pub fn ike_sa_payload(ours: &[IkeProposal], spi: &[u8]) -> SaPayload {
    SaPayload {
        proposals: ours
            .iter()
            .zip(1u8..)
            .map(|(p, n)| p.to_wire(n, spi.to_vec()))
            .collect(),
    }
}

/// Builds the ESP SA payload for our proposals with our inbound `spi`.
pub fn esp_sa_payload(ours: &[EspProposal], spi: u32, with_dh: bool) -> SaPayload {
    SaPayload {
        proposals: ours
            .iter()
            .zip(1u8..)
            .map(|(p, n)| p.to_wire(n, spi, with_dh))
            .collect(),
    }
}

/// The transforms of a received proposal, sorted by what we can use.
struct Offered {
    ciphers: Vec<Cipher>,
    prfs: Vec<PrfAlg>,
    dh: Vec<Option<DhAlg>>,
    esn: Vec<bool>,
    /// A transform type we do not know or an integrity algorithm other than NONE: the
    /// proposal cannot be accepted (§3.3.6: all transform types must be accepted).
    unusable: bool,
}

fn offered(p: &Proposal) -> Offered {
    let mut o = Offered {
        ciphers: Vec::new(),
        prfs: Vec::new(),
        dh: Vec::new(),
        esn: Vec::new(),
        unusable: false,
    };
    let mut integ_seen = false;
    for t in &p.transforms {
        match t.ty {
            TransformType::ENCR if t.id == EncrId::AES_GCM_16.0 => {
                if let Some(c) = t.key_length().and_then(Cipher::from_bits) {
                    o.ciphers.push(c);
                }
            }
            TransformType::ENCR => {}
            TransformType::PRF => o.prfs.extend(PrfAlg::from_id(t.id)),
            TransformType::INTEG => integ_seen |= t.id != IntegId::NONE.0,
            TransformType::DH if t.id == DhGroup::NONE.0 => o.dh.push(None),
            TransformType::DH => o.dh.extend(DhAlg::from_id(t.id).map(Some)),
            TransformType::ESN => match EsnId(t.id) {
                EsnId::NO_ESN => o.esn.push(false),
                EsnId::ESN => o.esn.push(true),
                _ => {}
            },
            _ => o.unusable = true,
        }
    }
    // An AEAD proposal that insists on a real integrity algorithm cannot be satisfied by
    // AEAD-only transforms: the combination is invalid (RFC 5282 §8).
    o.unusable |= integ_seen;
    o
}

/// Responder selection of an IKE proposal (§2.7): our proposals in configuration order,
/// the first peer proposal that contains a complete match wins.
pub fn select_ike(ours: &[IkeProposal], theirs: &SaPayload) -> Option<ChosenIke> {
    ours.iter().find_map(|mine| {
        theirs
            .proposals
            .iter()
            .filter(|p| p.protocol == ProtocolId::IKE)
            .find_map(|p| {
                let o = offered(p);
                if o.unusable || !o.ciphers.contains(&mine.cipher) || !o.prfs.contains(&mine.prf) {
                    return None;
                }
                let dh = mine.dh.iter().find(|g| o.dh.contains(&Some(**g)))?;
                Some(ChosenIke {
                    number: p.number,
                    cipher: mine.cipher,
                    prf: mine.prf,
                    dh: *dh,
                })
            })
    })
}

/// Responder selection of an ESP proposal. `pfs_group` is the group of the peer's KE
/// payload in CREATE_CHILD_SA (None in IKE_AUTH or without KE): a proposal needs a matching
/// DH transform when there is a KE, and in IKE_AUTH the DH transforms are ignored (§1.2).
pub fn select_esp(
    ours: &[EspProposal],
    theirs: &SaPayload,
    in_ike_auth: bool,
    pfs_group: Option<DhAlg>,
) -> Option<ChosenEsp> {
    ours.iter().find_map(|mine| {
        theirs
            .proposals
            .iter()
            .filter(|p| p.protocol == ProtocolId::ESP)
            .find_map(|p| {
                let peer_spi = u32::from_be_bytes(p.spi.as_slice().try_into().ok()?);
                let o = offered(p);
                if o.unusable || !o.ciphers.contains(&mine.cipher) || !o.prfs.is_empty() {
                    return None;
                }
                let esn = *mine.esn.iter().find(|e| o.esn.contains(e))?;
                let dh = match (in_ike_auth, pfs_group) {
                    (true, _) => None,
                    (false, None)
                        if mine.dh.is_empty() && (o.dh.is_empty() || o.dh.contains(&None)) =>
                    {
                        None
                    }
                    (false, None) => return None,
                    (false, Some(g)) if mine.dh.contains(&g) && o.dh.contains(&Some(g)) => Some(g),
                    (false, Some(_)) => return None,
                };
                Some(ChosenEsp {
                    number: p.number,
                    cipher: mine.cipher,
                    dh,
                    esn,
                    peer_spi,
                })
            })
    })
}

/// The responder's answer: exactly the chosen transforms in the peer's proposal number
/// (§3.3.1: one proposal, one transform of each type).
pub fn ike_answer(c: &ChosenIke, spi: Vec<u8>) -> SaPayload {
    SaPayload {
        proposals: vec![
            IkeProposal {
                cipher: c.cipher,
                prf: c.prf,
                dh: vec![c.dh],
            }
            .to_wire(c.number, spi),
        ],
    }
}

/// The responder's answer for ESP with our inbound `spi`.
pub fn esp_answer(c: &ChosenEsp, spi: u32) -> SaPayload {
    let p = EspProposal {
        cipher: c.cipher,
        dh: c.dh.into_iter().collect(),
        esn: vec![c.esn],
    };
    SaPayload {
        proposals: vec![p.to_wire(c.number, spi, c.dh.is_some())],
    }
}

/// Checks the responder's IKE answer against what we offered: one proposal, one of ours.
pub fn accept_ike_answer(ours: &[IkeProposal], answer: &SaPayload) -> Option<ChosenIke> {
    let [p] = answer.proposals.as_slice() else {
        return None;
    };
    let chosen = select_ike(ours, answer)?;
    let o = offered(p);
    // Exactly one transform of each type (§3.3.1 "the responder MUST choose a single
    // suite").
    (o.ciphers.len() == 1 && o.prfs.len() == 1 && o.dh.len() == 1).then_some(chosen)
}

/// Checks the responder's ESP answer against what we offered.
pub fn accept_esp_answer(
    ours: &[EspProposal],
    answer: &SaPayload,
    in_ike_auth: bool,
    pfs_group: Option<DhAlg>,
) -> Option<ChosenEsp> {
    let [p] = answer.proposals.as_slice() else {
        return None;
    };
    let chosen = select_esp(ours, answer, in_ike_auth, pfs_group)?;
    let o = offered(p);
    (o.ciphers.len() == 1 && o.esn.len() == 1).then_some(chosen)
}

/// The group an INVALID_KE_PAYLOAD notify asks for (its data: the group number, §3.10.1),
/// if it is one of `acceptable`.
pub fn requested_group<'a>(
    notify_data: &[u8],
    mut acceptable: impl Iterator<Item = &'a DhAlg>,
) -> Option<DhAlg> {
    let b = <[u8; 2]>::try_from(notify_data).ok()?;
    let g = DhAlg::from_id(u16::from_be_bytes(b))?;
    acceptable.any(|a| *a == g).then_some(g)
}

/// Names (strongSwan's proposal syntax) of IANA transform IDs espada does not implement,
/// so that a refused offer reads as the peer's configuration does (RFC 7296 §3.3.2, IANA
/// "IKEv2 Transform Attribute" registries). `{}` is the key length.
const FOREIGN_NAMES: &[(TransformType, u16, &str)] = &[
    (TransformType::ENCR, 2, "des"),
    (TransformType::ENCR, 3, "3des"),
    (TransformType::ENCR, 11, "null"),
    (TransformType::ENCR, 12, "aes{}"),
    (TransformType::ENCR, 13, "aes{}ctr"),
    (TransformType::ENCR, 14, "aes{}ccm8"),
    (TransformType::ENCR, 15, "aes{}ccm12"),
    (TransformType::ENCR, 16, "aes{}ccm16"),
    (TransformType::ENCR, 18, "aes{}gcm8"),
    (TransformType::ENCR, 19, "aes{}gcm12"),
    (TransformType::ENCR, 23, "camellia{}"),
    (TransformType::ENCR, 28, "chacha20poly1305"),
    (TransformType::INTEG, 1, "md5"),
    (TransformType::INTEG, 2, "sha1"),
    (TransformType::INTEG, 5, "aesxcbc"),
    (TransformType::INTEG, 12, "sha256"),
    (TransformType::INTEG, 13, "sha384"),
    (TransformType::INTEG, 14, "sha512"),
    (TransformType::PRF, 1, "prfmd5"),
    (TransformType::PRF, 2, "prfsha1"),
    (TransformType::PRF, 4, "prfaesxcbc"),
    (TransformType::DH, 1, "modp768"),
    (TransformType::DH, 2, "modp1024"),
    (TransformType::DH, 5, "modp1536"),
    (TransformType::DH, 15, "modp3072"),
    (TransformType::DH, 16, "modp4096"),
    (TransformType::DH, 17, "modp6144"),
    (TransformType::DH, 18, "modp8192"),
    (TransformType::DH, 21, "ecp521"),
    (TransformType::DH, 32, "x448"),
];

/// The peer's proposals in strongSwan syntax, for the NO_PROPOSAL_CHOSEN event. Transforms
/// without a name print as `type:id`.
pub fn describe(theirs: &SaPayload) -> String {
    let foreign = |ty: TransformType, id: u16, key: Option<u16>| {
        FOREIGN_NAMES
            .iter()
            .find(|(t, i, _)| *t == ty && *i == id)
            .map(|(_, _, n)| n.replace("{}", &key.map_or(String::new(), |k| k.to_string())))
            .unwrap_or_else(|| format!("{}:{}", ty.0, id))
    };
    let parts: Vec<String> = theirs
        .proposals
        .iter()
        .map(|p| {
            let names: Vec<String> = p
                .transforms
                .iter()
                .map(|t| match t.ty {
                    TransformType::ENCR if t.id == EncrId::AES_GCM_16.0 => {
                        format!("aes{}gcm16", t.key_length().unwrap_or(0))
                    }
                    TransformType::PRF => PrfAlg::from_id(t.id)
                        .map(|p| prf_name(p).to_string())
                        .unwrap_or_else(|| foreign(t.ty, t.id, None)),
                    TransformType::DH => DhAlg::from_id(t.id)
                        .map(|g| dh_name(g).to_string())
                        .unwrap_or_else(|| foreign(t.ty, t.id, None)),
                    TransformType::ESN => {
                        if t.id == EsnId::ESN.0 {
                            "esn".into()
                        } else {
                            "noesn".into()
                        }
                    }
                    ty => foreign(ty, t.id, t.key_length()),
                })
                .collect();
            names.join("-")
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::{Proposal, ProtocolId, Transform};

    #[test]
    fn a_refused_offer_reads_as_the_peers_configuration() {
        let offer = SaPayload {
            proposals: vec![Proposal {
                number: 1,
                protocol: ProtocolId::IKE,
                spi: Vec::new(),
                transforms: vec![
                    Transform::with_key_length(TransformType::ENCR, 12, 256),
                    Transform::new(TransformType::INTEG, 14),
                    Transform::new(TransformType::PRF, 7),
                    Transform::new(TransformType::DH, 16),
                    Transform::new(TransformType::DH, 31),
                    Transform::new(TransformType(250), 9),
                ],
            }],
        };
        assert_eq!(
            describe(&offer),
            "aes256-sha512-prfsha512-modp4096-x25519-250:9"
        );
    }
}
