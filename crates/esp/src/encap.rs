//! Outbound ESP processing, tunnel mode (RFC 4303 §3.1.2, §3.3): inner IP packet in, outer IP
//! [+ UDP, RFC 3948] + ESP + IV + ciphertext + trailer + ICV out, in place.
//!
//! Per packet: parse the inner header (family, DS field, DF), check lifetime and sequence
//! space, append the trailer (RFC 4303 §2.4 padding 1, 2, 3 …, pad length, next header),
//! prepend the prebuilt outer template and fill its per-packet fields (DS copy and ECN per
//! RFC 6040 §4.1, total length, ID, DF per policy, IPv4 checksum incrementally from the
//! template sum), write SPI, sequence and IV, and seal in place with AAD = SPI ‖ seq or SPI ‖
//! ESN-high ‖ seq-low (RFC 4106 §5). No allocation, no key setup.
//!
//! The explicit IV is the 64-bit sequence number (RFC 4106 §3.1 allows any value that never
//! repeats under one key; the sequence number never repeats because the SA stops before it
//! would wrap, RFC 4303 §3.3.3).

use espada_buf::PacketBuf;

use crate::aead::{GcmAead, NONCE_LEN, SALT_LEN};
use crate::drop::DropReason;
use crate::ecn;
use crate::keys::KeyCache;
use crate::sa::{DfPolicy, InnerProto, OutboundSa, Processed};
use crate::wire::{self, ESP_HEADER_LEN, GCM_IV_LEN, ICV_LEN, checksum, proto};
use espada_wire::ip;
use espada_wire::ipv4::{Ipv4Error, Ipv4Packet};
use espada_wire::ipv6::{Ipv6Error, Ipv6Packet};

/// What encapsulation needs from the inner header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InnerInfo {
    pub proto: InnerProto,
    /// Length of the inner packet from its header (the buffer may hold trailing bytes).
    pub len: usize,
    /// TOS / traffic class.
    pub tos: u8,
    /// DF set (IPv4), always true for IPv6.
    pub df: bool,
}

/// Parses the inner IPv4/IPv6 header at the start of `d`.
#[inline]
pub(crate) fn parse_inner(d: &[u8]) -> Result<InnerInfo, DropReason> {
    let refused = |truncated: bool| {
        if truncated {
            DropReason::TooShort
        } else {
            DropReason::BadInnerHeader
        }
    };
    match ip::version(d).ok_or(DropReason::TooShort)? {
        4 => {
            let ip = Ipv4Packet::new_checked(d).map_err(|e| {
                refused(e == Ipv4Error::Truncated && d.len() < wire::IPV4_HEADER_LEN)
            })?;
            Ok(InnerInfo {
                proto: InnerProto::V4,
                len: ip.total_len(),
                tos: ip.tos(),
                df: ip.dont_fragment(),
            })
        }
        6 => {
            let ip = Ipv6Packet::new_checked(d).map_err(|e| {
                refused(e == Ipv6Error::Truncated && d.len() < wire::IPV6_HEADER_LEN)
            })?;
            Ok(InnerInfo {
                proto: InnerProto::V6,
                len: ip.total_len(),
                tos: ip.traffic_class(),
                df: true,
            })
        }
        _ => Err(DropReason::BadInnerHeader),
    }
}

impl OutboundSa {
    /// Encapsulates the inner IP packet in `buf` (data = the inner packet, starting at its IP
    /// header) into an ESP packet in tunnel mode (RFC 4303 §3.1.2). On success the data is the
    /// outer packet ready for the Ethernet header. Needs [`crate::MAX_ENCAP_HEADROOM`] headroom
    /// and [`crate::MAX_ENCAP_TAILROOM`] tailroom at most.
    ///
    /// On error the packet must be dropped; the reason is counted on this SA, no sequence number
    /// is used, and the buffer is unchanged except for [`DropReason::CryptoError`].
    pub fn encap<B: PacketBuf>(
        &mut self,
        keys: &mut KeyCache,
        buf: &mut B,
    ) -> Result<Processed, DropReason> {
        match self.encap_inner(keys, buf) {
            Ok(p) => Ok(p),
            Err(r) => {
                self.counters.count_drop(r);
                Err(r)
            }
        }
    }

    #[inline(always)]
    fn encap_inner<B: PacketBuf>(
        &mut self,
        keys: &mut KeyCache,
        buf: &mut B,
    ) -> Result<Processed, DropReason> {
        let inner = parse_inner(buf.data())?;
        if self.lifetime.hard_expired() {
            return Err(DropReason::LifetimeExpired);
        }
        if self.seq >= self.seq_max() {
            return Err(DropReason::SeqExhausted);
        }
        let extra = buf.len() - inner.len;
        let pad = (4 - (inner.len + 2) % 4) % 4;
        let tail = pad + 2 + ICV_LEN;
        let outer_len = self.tmpl.outer_len();
        let hdr = outer_len + ESP_HEADER_LEN + GCM_IV_LEN;
        let total = hdr + inner.len + tail;
        if total > usize::from(u16::MAX) {
            return Err(DropReason::TooBig);
        }
        if buf.headroom() < hdr {
            return Err(DropReason::NoHeadroom);
        }
        if buf.tailroom() + extra < tail {
            return Err(DropReason::NoTailroom);
        }
        // From here on nothing fails (the room was checked above).
        if extra != 0 && !buf.trim(extra) {
            return Err(DropReason::NoTailroom);
        }
        self.seq += 1;
        let seq = self.seq;

        let Some(t) = buf.append(tail) else {
            return Err(DropReason::NoTailroom);
        };
        for (i, b) in t[..pad].iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        t[pad] = pad as u8;
        t[pad + 1] = match inner.proto {
            InnerProto::V4 => proto::IPV4,
            InnerProto::V6 => proto::IPV6,
        };

        let Some(h) = buf.prepend(hdr) else {
            return Err(DropReason::NoHeadroom);
        };
        h[..outer_len].copy_from_slice(&self.tmpl.hdr[..outer_len]);
        let tos = ecn::encap_tos(inner.tos);
        let ip_len = usize::from(self.tmpl.ip_len);
        if self.tmpl.v6 {
            espada_wire::ipv6::set_traffic_class(h, tos);
            let plen = (total - ip_len) as u16;
            h[wire::ipv6::PAYLOAD_LEN].copy_from_slice(&plen.to_be_bytes());
        } else {
            let df = match self.df {
                DfPolicy::Copy => inner.df,
                DfPolicy::Set => true,
                DfPolicy::Clear => false,
            };
            let flags = if df { wire::ipv4::DF } else { 0 };
            let id = seq as u16;
            h[wire::ipv4::TOS] = tos;
            h[wire::ipv4::LENGTH].copy_from_slice(&(total as u16).to_be_bytes());
            h[wire::ipv4::IDENT].copy_from_slice(&id.to_be_bytes());
            h[wire::ipv4::FLAGS_FRAG].copy_from_slice(&flags.to_be_bytes());
            let sum = u64::from(self.tmpl.csum_base)
                + u64::from(tos)
                + total as u64
                + u64::from(id)
                + u64::from(flags);
            h[wire::ipv4::CHECKSUM].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());
        }
        if self.tmpl.udp {
            let ulen = (total - ip_len) as u16;
            h[ip_len + 4..ip_len + 6].copy_from_slice(&ulen.to_be_bytes());
            // Checksum 0 for IPv4 (RFC 3948 §2.1); IPv6 is computed after encryption.
            h[ip_len + 6..ip_len + 8].copy_from_slice(&[0, 0]);
        }
        let esp = &mut h[outer_len..];
        esp[wire::field::SPI].copy_from_slice(&self.spi.to_be_bytes());
        esp[wire::field::SEQUENCE_NUMBER].copy_from_slice(&(seq as u32).to_be_bytes());
        esp[8..16].copy_from_slice(&seq.to_be_bytes());

        let mut nonce = [0u8; NONCE_LEN];
        nonce[..SALT_LEN].copy_from_slice(&self.salt);
        nonce[SALT_LEN..].copy_from_slice(&seq.to_be_bytes());
        let mut aad = [0u8; 12];
        let aad_len = esp_aad(&mut aad, self.spi, seq, self.esn);

        let d = buf.data_mut();
        let (body, icv) = d.split_at_mut(total - ICV_LEN);
        let Some(engine) = keys.engine(&self.key) else {
            return Err(DropReason::CryptoError);
        };
        let Ok(tag) = engine.seal(&nonce, &aad[..aad_len], &mut body[hdr..]) else {
            return Err(DropReason::CryptoError);
        };
        icv.copy_from_slice(&tag);

        if self.tmpl.udp && self.tmpl.v6 {
            // RFC 8200 §8.1: UDP over IPv6 carries a checksum.
            let udp = &mut d[ip_len..];
            let ulen = (total - ip_len) as u64;
            let sum = u64::from(self.tmpl.csum_base) + ulen + checksum::sum(udp);
            let c = !checksum::fold(sum);
            let c = if c == 0 { 0xffff } else { c };
            udp[6..8].copy_from_slice(&c.to_be_bytes());
        }

        let soft = self.lifetime.account(inner.len);
        self.counters.count_packet(inner.len);
        self.counters.set_seq(seq);
        if soft {
            self.counters.count_soft_expired();
        }
        Ok(Processed {
            inner: inner.proto,
            seq,
            soft_expired: soft,
        })
    }
}

/// Writes the ESP AAD for AES-GCM (RFC 4106 §5): SPI ‖ 32-bit sequence, or SPI ‖ high 32 bits
/// ‖ low 32 bits with ESN. Returns its length (8 or 12).
#[inline(always)]
pub(crate) fn esp_aad(aad: &mut [u8; 12], spi: u32, seq: u64, esn: bool) -> usize {
    aad[..4].copy_from_slice(&spi.to_be_bytes());
    if esn {
        aad[4..12].copy_from_slice(&seq.to_be_bytes());
        12
    } else {
        aad[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        8
    }
}
