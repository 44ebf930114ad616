//! Inbound ESP processing, tunnel mode (RFC 4303 §3.4): outer IP packet in, inner IP packet
//! out, in place.
//!
//! Order (RFC 4303 §3.4.2–3.4.4, DPDK `esp_inb.c`): parse the outer header, check the SPI,
//! the hard lifetime and the replay window ([`crate::replay::ReplayWindow::check`], no state
//! change), verify the ICV and decrypt. Only then is any decrypted byte read and the window
//! advanced. Then the trailer (padding 1, 2, 3 …, next header 4 or 41), the inner header
//! (its length decides where TFC padding starts, RFC 4303 §2.7) and ECN (RFC 6040 §4.2).
//!
//! A packet that fails before the ICV verifies changes no SA state apart from its drop
//! counter. A packet that verifies but is then dropped (bad padding, bad next header, dummy,
//! ECN) still advances the window: its sequence number was really sent by the peer.
//!
//! Outer addresses are not checked against the SA (NAT-T and MOBIKE move them); the SA is
//! found by SPI. The outer IPv4 header checksum is verified; outer IPv6 hop-by-hop, routing
//! and destination options headers are walked (`espada_wire::ipv6::upper_layer`), a fragment
//! is [`DropReason::OuterFragment`] (reassembly comes first). UDP-encapsulated ESP (RFC 3948) is
//! accepted on any SA and its UDP checksum is ignored (RFC 3948 §3.2 allows it).

use espada_buf::PacketBuf;

use crate::aead::{GcmAead, NONCE_LEN, SALT_LEN, TAG_LEN};
use crate::classify::{outer_v4, outer_v6};
use crate::counters::Tally;
use crate::drop::DropReason;
use crate::ecn::{self, Ecn};
use crate::encap::esp_aad;
use crate::keys::KeyCache;
use crate::natt;
use crate::replay::Candidate;
use crate::sa::{InboundSa, InnerProto, Processed};
use crate::wire::{self, ESP_HEADER_LEN, GCM_IV_LEN, ICV_LEN, be16, be32, proto, udp};
use espada_wire::ip;
use espada_wire::ipv4::Ipv4Packet;
use espada_wire::ipv6::Ipv6Packet;

/// Where the ESP header of an outer packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OuterInfo {
    /// Offset of the ESP header.
    pub esp_off: usize,
    /// Length of the outer packet per its header (trailing link padding excluded).
    pub len: usize,
    /// Outer ECN codepoint.
    pub ecn: Ecn,
}

/// The outer facts [`crate::classify`] found of a buffer of `len` bytes (`Class::Esp`), or
/// `TooShort` if they do not fit it.
#[inline(always)]
fn classified(len: usize, esp_offset: usize, end: usize, tos: u8) -> Result<OuterInfo, DropReason> {
    if end <= len && esp_offset <= end {
        Ok(OuterInfo {
            esp_off: esp_offset,
            len: end,
            ecn: Ecn::from_tos(tos),
        })
    } else {
        Err(DropReason::TooShort)
    }
}

/// Parses an outer IPv4/IPv6 header carrying ESP or UDP-encapsulated ESP.
#[inline]
pub(crate) fn parse_outer(d: &[u8]) -> Result<OuterInfo, DropReason> {
    let (hl, len, next, tos) = match ip::version(d).ok_or(DropReason::TooShort)? {
        4 => {
            let ip = Ipv4Packet::new_checked(d).map_err(outer_v4)?;
            if !ip.verify_checksum() {
                return Err(DropReason::BadOuterHeader);
            }
            if ip.is_fragment() {
                return Err(DropReason::OuterFragment);
            }
            (ip.header_len(), ip.total_len(), ip.protocol(), ip.tos())
        }
        6 => {
            let ip = Ipv6Packet::new_checked(d).map_err(outer_v6)?;
            let (off, next) = match ip.upper_layer() {
                None => return Err(DropReason::BadOuterHeader),
                Some((_, proto::FRAGMENT)) => return Err(DropReason::OuterFragment),
                Some(x) => x,
            };
            (off, ip.total_len(), next, ip.traffic_class())
        }
        _ => return Err(DropReason::BadOuterHeader),
    };
    let esp_off = match next {
        proto::ESP => hl,
        proto::UDP => {
            if len < hl + wire::UDP_HEADER_LEN {
                return Err(DropReason::TooShort);
            }
            let ulen = usize::from(be16(&d[hl + udp::LENGTH.start..]));
            if ulen < wire::UDP_HEADER_LEN || hl + ulen != len {
                return Err(DropReason::BadOuterHeader);
            }
            // ESP in UDP goes to port 4500 (RFC 3948 §2.1), as `classify` has it: any other
            // UDP datagram is not ESP.
            if be16(&d[hl + udp::DST_PORT.start..]) != natt::NATT_PORT {
                return Err(DropReason::NotEsp);
            }
            let payload = &d[hl + wire::UDP_HEADER_LEN..len];
            if natt::is_keepalive(payload) || natt::has_non_esp_marker(payload) {
                return Err(DropReason::NotEsp);
            }
            hl + wire::UDP_HEADER_LEN
        }
        _ => return Err(DropReason::NotEsp),
    };
    Ok(OuterInfo {
        esp_off,
        len,
        ecn: Ecn::from_tos(tos),
    })
}

/// Checks the ESP trailer of a decrypted payload (RFC 4303 §2.4–2.6) and returns the next
/// header and the length of the data before the padding.
#[inline]
fn check_trailer(pt: &[u8]) -> Result<(u8, usize), DropReason> {
    let n = pt.len();
    if n < 2 {
        return Err(DropReason::TooShort);
    }
    let nh = pt[n - 1];
    let pad = usize::from(pt[n - 2]);
    if nh == proto::NO_NEXT_HEADER {
        return Err(DropReason::DummyPacket);
    }
    if pad + 2 > n {
        return Err(DropReason::BadPadding);
    }
    let data_len = n - 2 - pad;
    // Default padding is 1, 2, 3, … (RFC 4303 §2.4); checked byte by byte.
    for (i, &b) in pt[data_len..n - 2].iter().enumerate() {
        if usize::from(b) != i + 1 {
            return Err(DropReason::BadPadding);
        }
    }
    if nh != proto::IPV4 && nh != proto::IPV6 {
        return Err(DropReason::BadNextHeader);
    }
    Ok((nh, data_len))
}

impl InboundSa {
    /// Decapsulates the ESP packet in `buf` (data = the outer IP packet, starting at the outer
    /// IP header) into the inner IP packet (RFC 4303 §3.4). On success the data is the inner
    /// packet with any TFC padding removed.
    ///
    /// On error the packet must be dropped; the reason is counted on this SA. Errors before the
    /// ICV verified leave the SA unchanged otherwise.
    pub fn decap<B: PacketBuf>(
        &mut self,
        keys: &mut KeyCache,
        buf: &mut B,
    ) -> Result<Processed, DropReason> {
        match self.decap_inner(keys, buf) {
            Ok(p) => Ok(p),
            Err(r) => {
                self.counters.count_drop(r);
                Err(r)
            }
        }
    }

    /// [`InboundSa::decap`] of a packet that [`crate::classify`] found to be ESP in this very
    /// buffer (`Class::Esp { esp_offset, end, tos, .. }`): the outer header is not parsed
    /// again, nor its IPv4 checksum verified again (the data plane classifies every packet
    /// before it decapsulates it). Facts that do not fit the buffer are `TooShort`.
    pub fn decap_classified<B: PacketBuf>(
        &mut self,
        keys: &mut KeyCache,
        buf: &mut B,
        esp_offset: usize,
        end: usize,
        tos: u8,
    ) -> Result<Processed, DropReason> {
        let r = match classified(buf.len(), esp_offset, end, tos) {
            Ok(outer) => self.decap_at(keys, buf, outer),
            Err(r) => Err(r),
        };
        r.inspect_err(|&r| self.counters.count_drop(r))
    }

    #[inline(always)]
    fn decap_inner<B: PacketBuf>(
        &mut self,
        keys: &mut KeyCache,
        buf: &mut B,
    ) -> Result<Processed, DropReason> {
        let outer = parse_outer(buf.data())?;
        self.decap_at(keys, buf, outer)
    }

    #[inline(always)]
    fn decap_at<B: PacketBuf>(
        &mut self,
        keys: &mut KeyCache,
        buf: &mut B,
        outer: OuterInfo,
    ) -> Result<Processed, DropReason> {
        let o = self.check_at(buf.data(), outer)?;
        self.open_at(keys, buf, &o)?;
        let mut tally = Tally::default();
        // `finish_at`'s result as it is, not unwrapped by `?` and wrapped again: rebuilt, it
        // was re-read before its stores completed (a store-forwarding stall, ~4 % of a 1-SA
        // decrypt profile). An empty tally publishes nothing.
        let r = self.finish_at(buf, &o, &mut tally);
        self.publish(&tally);
        r
    }

    /// The first step of [`InboundSa::decap_classified`] for a burst (facts as there): the
    /// SPI, the hard lifetime and the replay window (RFC 4303 §3.4.3), nothing changed but the
    /// drop counter. A burst checks all its packets, then opens them ([`InboundSa::open`]),
    /// then finishes them ([`InboundSa::finish`]), which checks the window and the lifetime
    /// again.
    #[inline(always)]
    pub fn check<B: PacketBuf>(
        &self,
        buf: &B,
        esp_offset: usize,
        end: usize,
        tos: u8,
    ) -> Result<Opening, DropReason> {
        let r = classified(buf.len(), esp_offset, end, tos)
            .and_then(|outer| self.check_at(buf.data(), outer));
        r.inspect_err(|&r| self.counters.count_drop(r))
    }

    /// Verifies the ICV and decrypts (RFC 4303 §3.4.4) a packet [`InboundSa::check`] passed;
    /// changes nothing but the drop counter (`AuthFailed`) and the buffer's ciphertext.
    #[inline]
    pub fn open<B: PacketBuf>(
        &self,
        keys: &mut KeyCache,
        buf: &mut B,
        o: &Opening,
    ) -> Result<(), DropReason> {
        self.open_at(keys, buf, o)
            .inspect_err(|&r| self.counters.count_drop(r))
    }

    /// Completes a packet [`InboundSa::open`] authenticated: the hard lifetime and the window
    /// again (packets of the same burst may have been committed since the check), the commit,
    /// the trailer, the inner header, ECN, the lifetime. The packet is added to `tally`, which
    /// [`InboundSa::publish`] makes visible to `show sa` (once per run of packets of this SA in
    /// a burst, not per packet).
    #[inline(always)]
    pub fn finish<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        o: &Opening,
        tally: &mut Tally,
    ) -> Result<Processed, DropReason> {
        // A match, not `inspect_err`: through its closure the result was rebuilt in memory
        // and re-read before its stores completed (a store-forwarding stall).
        match self.finish_at(buf, o, tally) {
            Ok(p) => Ok(p),
            Err(r) => {
                self.counters.count_drop(r);
                Err(r)
            }
        }
    }

    /// Makes the packets of `tally` and the window's state visible in this SA's counters.
    #[inline]
    pub fn publish(&self, tally: &Tally) {
        if tally.packets == 0 {
            return;
        }
        self.counters.count_packets(tally.packets, tally.bytes);
        self.counters.set_seq(self.replay.highest());
        self.counters.set_replay_recent(self.replay.recent());
    }

    #[inline(always)]
    fn check_at(&self, d: &[u8], outer: OuterInfo) -> Result<Opening, DropReason> {
        let esp_off = outer.esp_off;
        let ct_off = esp_off + ESP_HEADER_LEN + GCM_IV_LEN;
        // At least the pad length and next header bytes must be encrypted.
        if outer.len < ct_off + wire::ESP_TRAILER_LEN + ICV_LEN || outer.len > d.len() {
            return Err(DropReason::TooShort);
        }
        let d = &d[..outer.len];
        if be32(&d[esp_off..]) != self.spi {
            return Err(DropReason::SpiMismatch);
        }
        if self.lifetime.hard_expired() {
            return Err(DropReason::LifetimeExpired);
        }
        let cand = self.replay.check(be32(&d[esp_off + 4..]))?;
        Ok(Opening {
            cand,
            ct_off,
            len: outer.len,
            ecn: outer.ecn,
        })
    }

    #[inline(always)]
    fn open_at<B: PacketBuf>(
        &self,
        keys: &mut KeyCache,
        buf: &mut B,
        o: &Opening,
    ) -> Result<(), DropReason> {
        let mut aad = [0u8; 12];
        let aad_len = esp_aad(&mut aad, self.spi, o.cand.seq(), self.replay.esn());
        let Some(d) = buf.data_mut().get_mut(..o.len) else {
            return Err(DropReason::TooShort);
        };
        let (body, icv) = d.split_at_mut(o.len - ICV_LEN);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(icv);
        // The nonce: the SA's salt ‖ the packet's explicit IV, just before the ciphertext
        // (RFC 4106 §4).
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..SALT_LEN].copy_from_slice(&self.salt);
        nonce[SALT_LEN..].copy_from_slice(&body[o.ct_off - GCM_IV_LEN..o.ct_off]);
        let pt = &mut body[o.ct_off..];
        // `None` cannot happen for an SaKey (16 or 32 bytes, which every backend accepts); were
        // a backend ever to refuse, the packet could not be authenticated.
        let Some(engine) = keys.engine(&self.key) else {
            return Err(DropReason::AuthFailed);
        };
        engine
            .open(&nonce, &aad[..aad_len], pt, &tag)
            .map_err(|_| DropReason::AuthFailed)
    }

    #[inline(always)]
    fn finish_at<B: PacketBuf>(
        &mut self,
        buf: &mut B,
        o: &Opening,
        tally: &mut Tally,
    ) -> Result<Processed, DropReason> {
        if self.lifetime.hard_expired() {
            return Err(DropReason::LifetimeExpired);
        }
        // Authentic: the peer sent this sequence number.
        self.replay.commit(o.cand)?;
        let (ct_off, len) = (o.ct_off, o.len);
        let Some(pt) = buf.data_mut().get_mut(ct_off..len - ICV_LEN) else {
            return Err(DropReason::TooShort);
        };
        let (nh, data_len) = check_trailer(pt)?;
        let inner = &mut pt[..data_len];
        let (iproto, ilen, itos) = match (nh, ip::version(inner)) {
            (proto::IPV4, Some(4)) => {
                let ip =
                    Ipv4Packet::new_checked(&*inner).map_err(|_| DropReason::BadInnerHeader)?;
                (InnerProto::V4, ip.total_len(), ip.tos())
            }
            (proto::IPV6, Some(6)) => {
                let ip =
                    Ipv6Packet::new_checked(&*inner).map_err(|_| DropReason::BadInnerHeader)?;
                (InnerProto::V6, ip.total_len(), ip.traffic_class())
            }
            _ => return Err(DropReason::BadInnerHeader),
        };

        // RFC 6040 §4.2: combine outer and inner ECN.
        let iecn = Ecn::from_tos(itos);
        let Some(new_ecn) = ecn::decap_ecn(iecn, o.ecn) else {
            return Err(DropReason::EcnCeOnNotEct);
        };
        if new_ecn != iecn {
            let ntos = (itos & !0b11) | new_ecn as u8;
            match iproto {
                InnerProto::V4 => Ipv4Packet::new_unchecked(inner).set_tos_updating_checksum(ntos),
                InnerProto::V6 => Ipv6Packet::new_unchecked(inner).set_traffic_class(ntos),
            }
        }

        let full = buf.len();
        if !buf.adj(ct_off) || !buf.trim(full - ct_off - ilen) {
            // Cannot happen: both lengths were derived from the data.
            return Err(DropReason::TooShort);
        }
        let soft = self.lifetime.account(ilen);
        tally.add(ilen);
        if soft {
            self.counters.count_soft_expired();
        }
        Ok(Processed {
            inner: iproto,
            seq: o.cand.seq(),
            soft_expired: soft,
        })
    }
}

/// An inbound packet between its replay check and its commit ([`InboundSa::check`]): where
/// its ciphertext is (the explicit IV just before it), its sequence number and outer ECN.
#[derive(Clone, Copy, Debug)]
pub struct Opening {
    cand: Candidate,
    ct_off: usize,
    len: usize,
    ecn: Ecn,
}

impl Opening {
    /// The packet's 64-bit sequence number.
    pub fn seq(&self) -> u64 {
        self.cand.seq()
    }
}
