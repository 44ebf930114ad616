//! Fragmentation of a packet too big for its tunnel (issue 15, item 2): an inner IPv4 packet
//! without DF before encryption (RFC 791 §3.2 "Fragmentation", as a router does; Cisco's
//! `fragmentation before-encryption`), or the ESP packet espada built after it (IPv4 as above;
//! IPv6 by its source with a Fragment header, RFC 8200 §4.5).
//!
//! The packet keeps its first fragment in its own buffer; every further fragment is copied into
//! a buffer from [`PacketBuf::alloc_like`] (the same pool). A 2,030-byte packet (the largest one
//! buffer takes) split for the smallest path espada accepts (576 bytes, less the ESP overhead)
//! needs 5 pieces: [`MAX_PIECES`] bounds the work per packet, and a packet that would need more
//! is refused, not truncated.

use espada_buf::PacketBuf;
use espada_wire::ipv4::{self, Ipv4Packet};
use espada_wire::ipv6::{self, Ipv6Packet};
use espada_wire::proto;

/// Most fragments one packet becomes.
pub const MAX_PIECES: usize = 8;

/// The fragments after the first, in order.
pub type Tail<B> = [Option<B>; MAX_PIECES - 1];

/// Why a packet could not be fragmented (each a drop reason of its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unfit {
    /// The pool had no buffer for a fragment.
    NoBuffer,
    /// The MTU leaves no room for 8 bytes of data after the header, the packet would need more
    /// than [`MAX_PIECES`] fragments, or its header cannot be split (not IPv4 / a plain IPv6
    /// header, or shorter than its length field says).
    Unsplittable,
}

/// Splits the IPv4 packet in `m` (data at the IP header) into fragments of at most `mtu` bytes
/// (RFC 791 §3.2): `m` keeps the first — with every option — and the tail holds the others,
/// each with the options whose copied flag is set. A packet that is itself a fragment keeps its
/// offset and, on its last piece, its MF flag. Headers get their total length, flags, offset
/// and checksum; the identification stays. Nothing changes when it fails.
pub fn ipv4<B: PacketBuf>(m: &mut B, mtu: usize) -> Result<Tail<B>, Unfit> {
    let p = m.data();
    let ip = Ipv4Packet::new_checked(p).map_err(|_| Unfit::Unsplittable)?;
    let (hl, total) = (ip.header_len(), ip.total_len());
    if total != p.len() {
        return Err(Unfit::Unsplittable);
    }
    let mut rest_header = [0u8; 60];
    let rest_hl = copied_header(&p[..hl], &mut rest_header);
    let (base, last_mf) = (ip.frag_offset(), ip.flags_frag() & ipv4::MF);
    let first_room = mtu.saturating_sub(hl) & !7;
    let rest_room = mtu.saturating_sub(rest_hl) & !7;
    let payload = total - hl;
    if first_room == 0 || rest_room == 0 {
        return Err(Unfit::Unsplittable);
    }
    let pieces = 1 + payload.saturating_sub(first_room).div_ceil(rest_room);
    if pieces > MAX_PIECES || usize::from(base) * 8 + payload > 0xffff {
        return Err(Unfit::Unsplittable);
    }
    let mut tail: Tail<B> = Default::default();
    let mut at = hl + first_room;
    for slot in tail.iter_mut().take(pieces - 1) {
        let len = (total - at).min(rest_room);
        let mut f = m.alloc_like().ok_or(Unfit::NoBuffer)?;
        let d = f.append(rest_hl + len).ok_or(Unfit::NoBuffer)?;
        d[..rest_hl].copy_from_slice(&rest_header[..rest_hl]);
        d[rest_hl..].copy_from_slice(&m.data()[at..at + len]);
        let more = if at + len < total { ipv4::MF } else { last_mf };
        finish_ipv4(d, base + ((at - hl) / 8) as u16, more);
        *slot = Some(f);
        at += len;
    }
    m.trim(total - hl - first_room.min(payload));
    let more = if pieces > 1 { ipv4::MF } else { last_mf };
    finish_ipv4(m.data_mut(), base, more);
    Ok(tail)
}

/// Writes the header of a non-first fragment into `out`: the fixed header and the options
/// whose copied flag is set (RFC 791 §3.1 "Options", §3.2), padded to 4 bytes with
/// end-of-options. Returns its length.
fn copied_header(h: &[u8], out: &mut [u8; 60]) -> usize {
    out[..ipv4::MIN_HEADER_LEN].copy_from_slice(&h[..ipv4::MIN_HEADER_LEN]);
    let mut len = ipv4::MIN_HEADER_LEN;
    let mut i = ipv4::MIN_HEADER_LEN;
    while i < h.len() {
        let (kind, olen) = match h[i] {
            0 => break,
            1 => (1, 1),
            k => (k, h.get(i + 1).map_or(0, |&l| usize::from(l))),
        };
        if olen < 1 || i + olen > h.len() {
            break;
        }
        if kind & 0x80 != 0 {
            out[len..len + olen].copy_from_slice(&h[i..i + olen]);
            len += olen;
        }
        i += olen;
    }
    let padded = len.next_multiple_of(4);
    out[len..padded].fill(0);
    out[0] = 0x40 | (padded / 4) as u8;
    padded
}

/// Sets an IPv4 fragment's total length, offset (8-byte units) and MF flag (DF clear) and
/// recomputes its header checksum.
fn finish_ipv4(p: &mut [u8], offset: u16, more: u16) {
    let len = p.len() as u16;
    let mut ip = Ipv4Packet::new_unchecked(p);
    ip.set_total_len(len);
    ip.set_flags_frag(more | offset);
    ip.fill_checksum();
}

/// Length of an IPv6 Fragment header (RFC 8200 §4.5).
pub const IPV6_FRAGMENT_HEADER_LEN: usize = 8;

/// Splits the IPv6 packet in `m` — a fixed header and no extension header, as espada builds its
/// ESP packets — into fragments of at most `mtu` bytes, each with a Fragment header carrying
/// `ident` (RFC 8200 §4.5: the source fragments; every fragment's unfragmentable part is the
/// fixed header). `m` keeps the first; it needs 8 bytes of headroom. Nothing changes when it
/// fails.
pub fn ipv6<B: PacketBuf>(m: &mut B, mtu: usize, ident: u32) -> Result<Tail<B>, Unfit> {
    const H: usize = ipv6::HEADER_LEN;
    let p = m.data();
    let ip = Ipv6Packet::new_checked(p).map_err(|_| Unfit::Unsplittable)?;
    let (next, total) = (ip.next_header(), ip.total_len());
    let extension = matches!(
        next,
        proto::HOP_BY_HOP | proto::ROUTING | proto::FRAGMENT | proto::DEST_OPTS
    );
    if total != p.len() || extension || m.headroom() < IPV6_FRAGMENT_HEADER_LEN {
        return Err(Unfit::Unsplittable);
    }
    let room = mtu.saturating_sub(H + IPV6_FRAGMENT_HEADER_LEN) & !7;
    let payload = total - H;
    if room == 0 || payload.div_ceil(room) > MAX_PIECES {
        return Err(Unfit::Unsplittable);
    }
    let pieces = payload.div_ceil(room);
    let mut header = [0u8; H];
    header.copy_from_slice(&p[..H]);
    let mut tail: Tail<B> = Default::default();
    let mut at = H + room;
    for slot in tail.iter_mut().take(pieces.saturating_sub(1)) {
        let len = (total - at).min(room);
        let mut f = m.alloc_like().ok_or(Unfit::NoBuffer)?;
        let d = f
            .append(H + IPV6_FRAGMENT_HEADER_LEN + len)
            .ok_or(Unfit::NoBuffer)?;
        d[..H].copy_from_slice(&header);
        d[H + IPV6_FRAGMENT_HEADER_LEN..].copy_from_slice(&m.data()[at..at + len]);
        finish_ipv6(d, next, at - H, at + len < total, ident);
        *slot = Some(f);
        at += len;
    }
    m.trim(total - H - room.min(payload));
    // Room for the Fragment header (the headroom was checked): the fixed header moves 8 bytes
    // to the front.
    m.prepend(IPV6_FRAGMENT_HEADER_LEN);
    let d = m.data_mut();
    d.copy_within(IPV6_FRAGMENT_HEADER_LEN..IPV6_FRAGMENT_HEADER_LEN + H, 0);
    finish_ipv6(d, next, 0, pieces > 1, ident);
    Ok(tail)
}

/// Writes the Fragment header of an IPv6 fragment (after the fixed header in `p`) and its
/// payload length and next header.
fn finish_ipv6(p: &mut [u8], next: u8, offset: usize, more: bool, ident: u32) {
    const H: usize = ipv6::HEADER_LEN;
    let payload = (p.len() - H) as u16;
    let mut ip = Ipv6Packet::new_unchecked(&mut *p);
    ip.set_payload_len(payload);
    ip.set_next_header(proto::FRAGMENT);
    let f = &mut p[H..H + IPV6_FRAGMENT_HEADER_LEN];
    f[0] = next;
    f[1] = 0;
    f[2..4].copy_from_slice(&((offset as u16) | u16::from(more)).to_be_bytes());
    f[4..8].copy_from_slice(&ident.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use espada_buf::VecBuf;
    use espada_wire::checksum;

    fn ipv4_packet(payload: usize, options: &[u8], ff: u16) -> Vec<u8> {
        let hl = 20 + options.len();
        let mut p = vec![0u8; hl + payload];
        p[0] = 0x40 | (hl / 4) as u8;
        p[2..4].copy_from_slice(&((hl + payload) as u16).to_be_bytes());
        p[4..6].copy_from_slice(&0xbeefu16.to_be_bytes());
        p[6..8].copy_from_slice(&ff.to_be_bytes());
        p[8] = 64;
        p[9] = 17;
        p[12..16].copy_from_slice(&[192, 0, 2, 10]);
        p[16..20].copy_from_slice(&[198, 51, 100, 7]);
        p[20..hl].copy_from_slice(options);
        for (i, b) in p[hl..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let c = checksum::checksum(&p[..hl]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn split4(p: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        let mut m = VecBuf::new(128, p, 2048 - p.len());
        let tail = ipv4(&mut m, mtu).unwrap();
        std::iter::once(m)
            .chain(tail.into_iter().flatten())
            .map(|b| b.data().to_vec())
            .collect()
    }

    /// Puts IPv4 fragments back together by their offsets (checking what a receiver checks).
    fn join4(frags: &[Vec<u8>]) -> (Vec<u8>, u16) {
        let mut data = vec![];
        let mut last_ff = 0;
        for f in frags {
            let hl = usize::from(f[0] & 0x0f) * 4;
            assert_eq!(checksum::checksum(&f[..hl]), 0, "header checksum");
            assert_eq!(usize::from(u16::from_be_bytes([f[2], f[3]])), f.len());
            assert_eq!(&f[4..6], &0xbeefu16.to_be_bytes(), "identification kept");
            let ff = u16::from_be_bytes([f[6], f[7]]);
            assert_eq!(ff & ipv4::DF, 0);
            assert_eq!(
                usize::from(ff & 0x1fff) * 8,
                data.len(),
                "contiguous offsets"
            );
            data.extend_from_slice(&f[hl..]);
            last_ff = ff;
        }
        (data, last_ff)
    }

    #[test]
    fn ipv4_splits_into_pieces_of_at_most_the_mtu_that_rejoin_to_the_payload() {
        for (payload, mtu, pieces) in [
            (1480, 1500, 1),
            (1481, 1500, 2),
            (1980, 1400, 2),
            (1980, 576, 4),
            (2000, 520, 5),
            (9, 28, 2),
        ] {
            let p = ipv4_packet(payload, &[], 0);
            let frags = split4(&p, mtu);
            assert_eq!(frags.len(), pieces, "{payload} bytes at MTU {mtu}");
            for (i, f) in frags.iter().enumerate() {
                assert!(f.len() <= mtu, "piece {i} is {} > {mtu}", f.len());
                let ff = u16::from_be_bytes([f[6], f[7]]);
                assert_eq!(ff & ipv4::MF != 0, i + 1 < pieces, "MF of piece {i}");
            }
            let (data, _) = join4(&frags);
            assert_eq!(data, p[20..], "{payload} bytes at MTU {mtu}");
        }
    }

    #[test]
    fn a_fragment_is_split_at_its_own_offset_and_keeps_its_more_fragments_flag() {
        for mf in [0, ipv4::MF] {
            let p = ipv4_packet(1000, &[], mf | 100);
            let frags = split4(&p, 420);
            let first = u16::from_be_bytes([frags[0][6], frags[0][7]]);
            assert_eq!(first & 0x1fff, 100);
            let last = frags.last().unwrap();
            let ff = u16::from_be_bytes([last[6], last[7]]);
            assert_eq!(ff & ipv4::MF, mf, "the original MF on the last piece");
            let mut rejoined = vec![];
            for f in &frags {
                rejoined.extend_from_slice(&f[20..]);
            }
            assert_eq!(rejoined, p[20..]);
        }
    }

    #[test]
    fn only_copied_options_go_into_later_fragments() {
        // Record route (7, not copied), then a copied option (0x94 router alert, 4 bytes), NOP.
        let opts = [7, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0, 1];
        let p = ipv4_packet(600, &opts, 0);
        let frags = split4(&p, 300);
        assert_eq!(&frags[0][20..32], &opts, "the first keeps every option");
        for f in &frags[1..] {
            assert_eq!(f[0] & 0x0f, 6, "20 + 4 bytes of header");
            assert_eq!(&f[20..24], &[0x94, 4, 0, 0]);
        }
        let mut data = frags[0][32..].to_vec();
        for f in &frags[1..] {
            data.extend_from_slice(&f[24..]);
        }
        assert_eq!(data, p[32..]);
    }

    #[test]
    fn refusals_leave_the_packet_alone() {
        let p = ipv4_packet(2000, &[], 0);
        for mtu in [27, 0, 260] {
            let mut m = VecBuf::new(128, &p, 100);
            assert_eq!(ipv4(&mut m, mtu).err(), Some(Unfit::Unsplittable), "{mtu}");
            assert_eq!(m.data(), &p[..]);
        }
        let mut short = p.clone();
        short[2..4].copy_from_slice(&3000u16.to_be_bytes());
        let mut m = VecBuf::new(128, &short, 100);
        assert_eq!(ipv4(&mut m, 1000).err(), Some(Unfit::Unsplittable));
    }

    #[test]
    fn ipv6_fragments_carry_a_fragment_header_and_rejoin_to_the_payload() {
        for (payload, mtu, pieces) in [(1448, 1500, 1), (1500, 1280, 2), (1960, 1280, 2)] {
            let mut p = vec![0u8; 40 + payload];
            p[0] = 0x60;
            p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
            p[6] = proto::ESP;
            p[7] = 64;
            for (i, b) in p[40..].iter_mut().enumerate() {
                *b = (i * 7) as u8;
            }
            let mut m = VecBuf::new(128, &p, 100);
            let tail = ipv6(&mut m, mtu, 0x1234_5678).unwrap();
            let frags: Vec<Vec<u8>> = std::iter::once(m)
                .chain(tail.into_iter().flatten())
                .map(|b| b.data().to_vec())
                .collect();
            assert_eq!(frags.len(), pieces, "{payload} at {mtu}");
            let mut data = vec![];
            for (i, f) in frags.iter().enumerate() {
                assert!(f.len() <= mtu);
                assert_eq!(usize::from(u16::from_be_bytes([f[4], f[5]])), f.len() - 40);
                assert_eq!((f[6], f[40]), (proto::FRAGMENT, proto::ESP));
                let off = u16::from_be_bytes([f[42], f[43]]);
                assert_eq!(usize::from(off & !7), data.len(), "offset of piece {i}");
                assert_eq!(off & 1 != 0, i + 1 < pieces, "M of piece {i}");
                assert_eq!(&f[44..48], &0x1234_5678u32.to_be_bytes());
                assert_eq!(&f[..4], &p[..4]);
                data.extend_from_slice(&f[48..]);
            }
            assert_eq!(data, p[40..]);
        }
    }
}
