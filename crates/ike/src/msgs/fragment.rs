//! IKE message fragmentation (RFC 7383): splitting the content of an Encrypted payload into
//! Encrypted Fragment payloads, and reassembling them.
//!
//! Sending (§2.5): the inner payloads are emitted once, cut into pieces, and each piece is
//! encrypted on its own with its own IV, in a message with the original header (same message
//! ID) whose only payload is SKF. Fragment 1 carries the first inner payload type, the others
//! zero. The AAD of each is the IKE header and the SKF header up to Total Fragments.
//!
//! Receiving (§2.6): [`Reassembler`] verifies each fragment before keeping it, so a forged
//! fragment cannot displace real ones. It keeps one message at a time for requests and one
//! for responses (their message IDs are separate sequences, §2.2), bounded in fragments and
//! octets:
//!
//! | arrival                                        | action                               |
//! |------------------------------------------------|--------------------------------------|
//! | message ID below the one being reassembled, or not above the last one completed | dropped (stale), before decryption |
//! | integrity check fails                          | `Err(IntegrityCheckFailed)`           |
//! | Total Fragments over the limit                 | dropped                              |
//! | message ID above the one being reassembled     | restart with this fragment           |
//! | same message ID, more Total Fragments          | restart (the sender re-fragmented smaller, §2.6.1) |
//! | same message ID, fewer Total Fragments         | dropped (inconsistent)               |
//! | a fragment number already held                 | dropped (duplicate)                  |
//! | octets held would exceed the limit             | reassembly abandoned                 |
//! | last missing fragment                          | `Ok(Some(message))`                  |
//!
//! A fragment of a request already reassembled is stale here: detecting retransmitted
//! requests (to which the responder answers only on fragment 1, §2.6.1) is the exchange's
//! job, by message ID, before it calls [`Reassembler::add`].

use crate::crypto::aead::{IV_LEN, SkAead};

use super::enums::PayloadType;
use super::header::Header;
use super::message::Message;
use super::payload::{Payload, emit_payloads, parse_payloads};
use super::protect::{self, ProtectError, SK_OVERHEAD};
use super::sk::EncryptedFragment;

/// Octets an SKF datagram adds around its piece of plaintext: IKE header, generic header,
/// Fragment Number and Total Fragments, IV, Pad Length and ICV.
pub const FRAGMENT_OVERHEAD: usize = Header::LEN + SK_OVERHEAD + EncryptedFragment::HEADER_LEN + 1;

/// The largest datagram one SK or SKF payload allows (its length field is 16 bits).
const MAX_DATAGRAM: usize = Header::LEN + u16::MAX as usize;

/// Encrypts `inner` as one SK message if the datagram fits in `max_datagram` octets, else as
/// SKF fragments each fitting in it (RFC 7383 §2.5). `ivs` gives a fresh IV per datagram.
///
/// `max_datagram` is capped at what a 16-bit payload length allows; if it leaves less than
/// one octet of content per fragment, or would take more than 65535 fragments, pieces are
/// made larger than asked rather than failing.
pub fn seal_fragments(
    header: &Header,
    inner: &[Payload],
    aead: &SkAead,
    ivs: &mut dyn FnMut() -> [u8; IV_LEN],
    max_datagram: usize,
) -> Vec<Vec<u8>> {
    let max = max_datagram.min(MAX_DATAGRAM);
    let mut plain = Vec::with_capacity(1024);
    let first = emit_payloads(inner, &mut plain);
    // IKE header, SK overhead, Pad Length.
    let unfragmented = Header::LEN + SK_OVERHEAD + 1 + plain.len();
    if unfragmented <= max {
        return vec![protect::seal_content(
            header,
            PayloadType::SK,
            first,
            &[],
            plain,
            aead,
            ivs(),
        )];
    }
    let piece = max
        .saturating_sub(FRAGMENT_OVERHEAD)
        .max(plain.len().div_ceil(usize::from(u16::MAX)))
        .max(1);
    let pieces: Vec<&[u8]> = plain.chunks(piece).collect();
    let total = u16::try_from(pieces.len()).unwrap_or(u16::MAX);
    pieces
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let number = u16::try_from(i + 1).unwrap_or(u16::MAX);
            let next = if number == 1 {
                first
            } else {
                PayloadType::NONE
            };
            let mut extra = [0u8; EncryptedFragment::HEADER_LEN];
            extra[..2].copy_from_slice(&number.to_be_bytes());
            extra[2..].copy_from_slice(&total.to_be_bytes());
            protect::seal_content(
                header,
                PayloadType::SKF,
                next,
                &extra,
                chunk.to_vec(),
                aead,
                ivs(),
            )
        })
        .collect()
}

/// Counts of what [`Reassembler::add`] did with fragments, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Messages completed (fragmented or not).
    pub completed: u64,
    /// Fragments kept towards a message.
    pub accepted: u64,
    /// Fragments of an older message, dropped unread.
    pub stale: u64,
    /// Fragments whose number was already held.
    pub duplicate: u64,
    /// Fragments with fewer Total Fragments than the message being reassembled.
    pub inconsistent: u64,
    /// Fragments with Total Fragments above the limit.
    pub too_many_fragments: u64,
    /// Reassemblies abandoned because they grew past the octet limit.
    pub too_large: u64,
    /// Reassemblies abandoned for a newer message or a re-fragmented one.
    pub restarted: u64,
    /// Datagrams that failed the integrity check.
    pub integrity_failed: u64,
    /// Datagrams that did not parse (outside or, once decrypted, inside).
    pub malformed: u64,
}

/// One message being reassembled.
#[derive(Debug)]
struct Partial {
    message_id: u32,
    total: u16,
    /// Header and first inner payload type of fragment 1, once it arrived.
    first: Option<(Header, PayloadType)>,
    pieces: Vec<Option<Vec<u8>>>,
    held: u16,
    bytes: usize,
}

impl Partial {
    fn new(message_id: u32, total: u16) -> Self {
        Partial {
            message_id,
            total,
            first: None,
            pieces: vec![None; usize::from(total)],
            held: 0,
            bytes: 0,
        }
    }
}

/// Reassembly state for one direction of message IDs (requests or responses).
#[derive(Debug, Default)]
struct Slot {
    partial: Option<Partial>,
    last_completed: Option<u32>,
}

/// Reassembles fragmented messages of one IKE SA (RFC 7383 §2.6), verifying every fragment.
#[derive(Debug)]
pub struct Reassembler {
    max_fragments: u16,
    max_bytes: usize,
    /// Index 0 for requests, 1 for responses.
    slots: [Slot; 2],
    stats: ReassemblyStats,
}

impl Reassembler {
    /// A reassembler accepting at most `max_fragments` fragments and `max_bytes` octets of
    /// decrypted content per message.
    pub fn new(max_fragments: u16, max_bytes: usize) -> Self {
        Reassembler {
            max_fragments,
            max_bytes,
            slots: Default::default(),
            stats: ReassemblyStats::default(),
        }
    }

    /// What was done with the datagrams so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Whether a message is being reassembled for requests (`false`) or responses (`true`).
    pub fn in_progress(&self, response: bool) -> bool {
        self.slots[usize::from(response)].partial.is_some()
    }

    /// Takes one protected datagram. An SK message is opened at once ([`protect::open`]); an
    /// SKF fragment is verified, decrypted and kept. Returns the whole message, with the
    /// header of fragment 1 and the decrypted inner payloads, when its last fragment arrives;
    /// `Ok(None)` for a fragment kept or dropped (see the module's table and [`Self::stats`]).
    pub fn add(&mut self, datagram: &[u8], aead: &SkAead) -> Result<Option<Message>, ProtectError> {
        let r = self.add_inner(datagram, aead);
        match &r {
            Ok(Some(_)) => self.stats.completed += 1,
            Err(ProtectError::IntegrityCheckFailed) => self.stats.integrity_failed += 1,
            Err(_) => self.stats.malformed += 1,
            Ok(None) => {}
        }
        r
    }

    fn add_inner(
        &mut self,
        datagram: &[u8],
        aead: &SkAead,
    ) -> Result<Option<Message>, ProtectError> {
        let mut msg = Message::parse(datagram).map_err(ProtectError::Parse)?;
        let frag = match msg.payloads.pop() {
            Some(Payload::Skf(f)) if msg.payloads.is_empty() => f,
            Some(Payload::Sk(_)) if msg.payloads.is_empty() => {
                return protect::open(datagram, aead).map(Some);
            }
            _ => return Err(ProtectError::NotEncrypted),
        };
        let header = msg.header;
        let id = header.message_id;
        let slot = &mut self.slots[usize::from(header.is_response())];
        let older = slot.last_completed.is_some_and(|done| id <= done)
            || slot.partial.as_ref().is_some_and(|p| id < p.message_id);
        if older {
            self.stats.stale += 1;
            return Ok(None);
        }
        let (number, total, first_inner) =
            (frag.fragment_number, frag.total_fragments, frag.first_inner);
        if total > self.max_fragments {
            self.stats.too_many_fragments += 1;
            return Ok(None);
        }
        let plain = protect::open_content(datagram, frag.body, aead)?;
        let restart = match &slot.partial {
            None => false,
            Some(p) if id > p.message_id || total > p.total => true,
            Some(p) if total < p.total => {
                self.stats.inconsistent += 1;
                return Ok(None);
            }
            Some(_) => false,
        };
        if restart {
            self.stats.restarted += 1;
            slot.partial = None;
        }
        let p = slot.partial.get_or_insert_with(|| Partial::new(id, total));
        let index = usize::from(number).saturating_sub(1);
        if p.pieces.get(index).is_some_and(Option::is_some) {
            self.stats.duplicate += 1;
            return Ok(None);
        }
        if p.bytes + plain.len() > self.max_bytes {
            self.stats.too_large += 1;
            slot.partial = None;
            return Ok(None);
        }
        if number == 1 {
            p.first = Some((header, first_inner));
        }
        p.bytes += plain.len();
        p.held += 1;
        if let Some(piece) = p.pieces.get_mut(index) {
            *piece = Some(plain);
        }
        self.stats.accepted += 1;
        if p.held < p.total {
            return Ok(None);
        }
        let Some(done) = slot.partial.take() else {
            return Ok(None);
        };
        slot.last_completed = Some(id);
        let Some((header, first_inner)) = done.first else {
            return Ok(None);
        };
        let content: Vec<u8> = done.pieces.into_iter().flatten().flatten().collect();
        let payloads = parse_payloads(first_inner, &content).map_err(ProtectError::Inner)?;
        Ok(Some(Message { header, payloads }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::enums::{ExchangeType, NotifyType};
    use crate::msgs::notify::Notify;

    fn header(message_id: u32, response: bool) -> Header {
        Header {
            spi_i: 0xa,
            spi_r: 0xb,
            next_payload: PayloadType::NONE,
            major_version: 2,
            minor_version: 0,
            exchange: ExchangeType::IKE_AUTH,
            flags: Header::FLAG_INITIATOR | if response { Header::FLAG_RESPONSE } else { 0 },
            message_id,
            length: 0,
        }
    }

    /// Inner payloads of about `n` octets: notifications with 100-octet data.
    fn inner(n: usize) -> Vec<Payload> {
        (0..n.div_ceil(108))
            .map(|i| {
                Payload::Notify(Notify::new(
                    NotifyType(40000 + i as u16),
                    vec![i as u8; 100],
                ))
            })
            .collect()
    }

    fn aead() -> SkAead {
        SkAead::new(&[0x24; 20]).unwrap()
    }

    fn counter() -> impl FnMut() -> [u8; IV_LEN] {
        let mut n = 0u64;
        move || {
            n += 1;
            n.to_be_bytes()
        }
    }

    fn seal(id: u32, size: usize, max: usize) -> Vec<Vec<u8>> {
        seal_fragments(
            &header(id, false),
            &inner(size),
            &aead(),
            &mut counter(),
            max,
        )
    }

    #[test]
    fn test_unfragmented_when_it_fits() {
        let d = seal(1, 300, 1280);
        assert_eq!(d.len(), 1);
        assert_eq!(protect::open(&d[0], &aead()).unwrap().payloads, inner(300));
        let mut r = Reassembler::new(64, 65536);
        assert_eq!(r.add(&d[0], &aead()).unwrap().unwrap().payloads, inner(300));
        assert_eq!(r.stats().completed, 1);
    }

    #[test]
    fn test_fragment_layout() {
        let d = seal(3, 3000, 576);
        assert!(d.len() > 1);
        let total = d.len() as u16;
        let mut ivs = Vec::new();
        for (i, f) in d.iter().enumerate() {
            assert!(f.len() <= 576);
            let m = Message::parse(f).unwrap();
            assert_eq!(m.header.message_id, 3);
            assert_eq!(m.header.next_payload, PayloadType::SKF);
            let skf = m.skf().unwrap();
            assert_eq!(
                (skf.fragment_number, skf.total_fragments),
                (i as u16 + 1, total)
            );
            let want = if i == 0 {
                PayloadType::NOTIFY
            } else {
                PayloadType::NONE
            };
            assert_eq!(skf.first_inner, want);
            ivs.push(skf.body[..IV_LEN].to_vec());
        }
        ivs.dedup();
        assert_eq!(ivs.len(), d.len(), "one IV per fragment");
        // All but the last are filled to the limit.
        assert!(d[..d.len() - 1].iter().all(|f| f.len() == 576));
    }

    #[test]
    fn test_round_trip_sizes_and_orders() {
        for (size, max) in [(2000, 576), (5000, 1280), (20000, 1500), (1200, 100)] {
            let d = seal(7, size, max);
            assert!(d.len() > 1, "{size}/{max}");
            // In order, reversed, and odd ones last with every fragment twice.
            let n = d.len();
            let orders: [Vec<usize>; 3] = [
                (0..n).collect(),
                (0..n).rev().collect(),
                (0..n)
                    .step_by(2)
                    .chain((1..n).step_by(2))
                    .flat_map(|i| [i, i])
                    .collect(),
            ];
            for order in orders {
                let mut r = Reassembler::new(u16::MAX, 1 << 20);
                let mut done = Vec::new();
                for &i in &order {
                    if let Some(m) = r.add(&d[i], &aead()).unwrap() {
                        done.push(m);
                    }
                }
                assert_eq!(done.len(), 1, "{size}/{max}");
                assert_eq!(done[0].payloads, inner(size));
                assert_eq!(done[0].header.message_id, 7);
                assert!(!r.in_progress(false));
            }
        }
    }

    #[test]
    fn test_duplicates_and_stale() {
        let d = seal(5, 3000, 576);
        let mut r = Reassembler::new(64, 65536);
        assert_eq!(r.add(&d[0], &aead()), Ok(None));
        assert_eq!(r.add(&d[0], &aead()), Ok(None));
        assert_eq!(r.stats().duplicate, 1);
        // An older message's fragment is dropped; the current one goes on.
        let old = seal(4, 3000, 576);
        assert_eq!(r.add(&old[1], &aead()), Ok(None));
        assert_eq!(r.stats().stale, 1);
        let mut out = None;
        for f in &d[1..] {
            out = r.add(f, &aead()).unwrap();
        }
        assert_eq!(out.unwrap().payloads, inner(3000));
        // Late copies of the completed message are stale.
        assert_eq!(r.add(&d[2], &aead()), Ok(None));
        assert_eq!(r.stats().stale, 2);
        assert!(!r.in_progress(false));
    }

    #[test]
    fn test_newer_message_restarts() {
        let a = seal(5, 3000, 576);
        let b = seal(6, 3000, 576);
        let mut r = Reassembler::new(64, 65536);
        assert_eq!(r.add(&a[0], &aead()), Ok(None));
        let mut out = None;
        for f in &b {
            out = r.add(f, &aead()).unwrap();
        }
        assert_eq!(out.unwrap().header.message_id, 6);
        assert_eq!(r.stats().restarted, 1);
    }

    #[test]
    fn test_total_fragments_changes() {
        let big = seal(5, 3000, 1280);
        let small = seal(5, 3000, 576);
        assert!(small.len() > big.len());
        let mut r = Reassembler::new(64, 65536);
        assert_eq!(r.add(&small[0], &aead()), Ok(None));
        // Fewer Total Fragments than the reassembly in progress: dropped.
        assert_eq!(r.add(&big[1], &aead()), Ok(None));
        assert_eq!(r.stats().inconsistent, 1);
        // More: the sender re-fragmented smaller, start again.
        let mut r = Reassembler::new(64, 65536);
        assert_eq!(r.add(&big[0], &aead()), Ok(None));
        let mut out = None;
        for f in &small {
            out = r.add(f, &aead()).unwrap();
        }
        assert_eq!(out.unwrap().payloads, inner(3000));
        assert_eq!(r.stats().restarted, 1);
    }

    #[test]
    fn test_requests_and_responses_apart() {
        let req = seal(9, 3000, 576);
        let resp = seal_fragments(&header(2, true), &inner(2500), &aead(), &mut counter(), 576);
        let mut r = Reassembler::new(64, 65536);
        let mut got = Vec::new();
        for (a, b) in req
            .iter()
            .zip(resp.iter().chain(std::iter::repeat(&resp[0])))
        {
            got.extend(r.add(a, &aead()).unwrap());
            got.extend(r.add(b, &aead()).unwrap());
        }
        assert_eq!(got.len(), 2);
        assert!(
            got.iter()
                .any(|m| m.header.is_response() && m.payloads == inner(2500))
        );
        assert!(
            got.iter()
                .any(|m| !m.header.is_response() && m.payloads == inner(3000))
        );
    }

    #[test]
    fn test_bounds() {
        let d = seal(1, 5000, 576);
        let n = d.len() as u16;
        let mut r = Reassembler::new(n - 1, 1 << 20);
        assert_eq!(r.add(&d[0], &aead()), Ok(None));
        assert_eq!(r.stats().too_many_fragments, 1);
        assert!(!r.in_progress(false));
        let mut r = Reassembler::new(64, 2000);
        let mut out = Vec::new();
        for f in &d {
            out.extend(r.add(f, &aead()).unwrap());
        }
        assert!(out.is_empty());
        assert!(r.stats().too_large >= 1);
    }

    #[test]
    fn test_tampered_fragment_not_kept() {
        let d = seal(1, 3000, 576);
        let mut r = Reassembler::new(64, 65536);
        let mut bad = d[0].clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            r.add(&bad, &aead()),
            Err(ProtectError::IntegrityCheckFailed)
        );
        assert!(!r.in_progress(false));
        // A forged fragment with a newer message ID does not disturb the reassembly either.
        assert_eq!(r.add(&d[0], &aead()), Ok(None));
        let mut forged = seal(2, 3000, 576)[0].clone();
        forged[40] ^= 1;
        assert_eq!(
            r.add(&forged, &aead()),
            Err(ProtectError::IntegrityCheckFailed)
        );
        let mut out = None;
        for f in &d[1..] {
            out = r.add(f, &aead()).unwrap();
        }
        assert_eq!(out.unwrap().payloads, inner(3000));
        assert_eq!(r.stats().integrity_failed, 2);
        // Plaintext messages are refused.
        let plain = Message {
            header: header(3, false),
            payloads: inner(10),
        }
        .emit();
        assert_eq!(r.add(&plain, &aead()), Err(ProtectError::NotEncrypted));
    }
}
