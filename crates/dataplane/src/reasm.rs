//! Reassembly of outer IPv4 and IPv6 fragments before IPsec processing (RFC 4303 §3.4.1,
//! RFC 791 §3.2, RFC 8200 §4.5), per worker and bounded.
//!
//! A fragment's bytes are copied into one of a fixed number of datagram slots, and its mbuf is
//! freed at once — a worker never holds mbufs for reassembly, so nothing can leak or starve the
//! pool. When the last hole is filled, the whole datagram is written into the mbuf of the
//! fragment that completed it, which then continues like any other packet (to the ESP stage,
//! to its SA's owner). Bounds: [`SLOTS`] datagrams in flight, [`MAX_FRAGMENTS`] fragments and
//! [`MAX_PAYLOAD`] bytes each (a datagram must fit one mbuf), [`TIMEOUT`] to complete. Any
//! overlap drops the whole datagram, for IPv6 as RFC 5722 requires and for IPv4 too (no ESP
//! sender overlaps; overlaps are an evasion technique). Only ESP and UDP (NAT-T, IKE)
//! datagrams are reassembled.
//!
//! Fragments of one datagram must meet on one worker, whatever the NIC hashes (with L4 ports in
//! the RSS hash, a first fragment and the later ones land on different queues): every
//! fragment has a reassembly worker, [`worker_of`] its datagram's identity, and a fragment
//! that arrives elsewhere is handed to it; the datagram it completes then goes on to its SA's
//! owner like any packet.

use std::net::IpAddr;
use std::time::Duration;

use espada_buf::PacketBuf;
use espada_wire::ipv4::{self, Ipv4Packet};
use espada_wire::ipv6::{self, Ipv6Packet};
use espada_wire::{ip, proto};

/// Datagrams being reassembled at once, per worker.
pub const SLOTS: usize = 64;
/// Fragments one datagram may arrive in.
pub const MAX_FRAGMENTS: u8 = 16;
/// Largest fragmentable part of a reassembled datagram (its IP header comes on top).
pub const MAX_PAYLOAD: usize = 1904;
/// Time a datagram has from its first fragment to its last.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Why a fragment did not (yet) give a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Kept; the datagram has holes still.
    Held,
    /// The datagram is complete: the buffer now holds it, unfragmented.
    Complete,
    /// Not an ESP or UDP datagram, or a malformed fragment.
    NotReassembled,
    /// Overlaps bytes already received: the whole datagram is dropped.
    Overlap,
    /// More than [`MAX_FRAGMENTS`] fragments, or beyond [`MAX_PAYLOAD`] bytes: dropped.
    TooBig,
    /// Every slot busy with a datagram still in time.
    Full,
}

/// Identity of a datagram (RFC 791: source, destination, protocol, identification; RFC 8200:
/// source, destination, identification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Key {
    src: u128,
    dst: u128,
    id: u32,
    proto: u8,
    v6: bool,
}

/// One datagram in reassembly.
struct Slot {
    key: Key,
    used: bool,
    started: u64,
    /// The first fragment's headers (IPv4 header; IPv6 header and the extension headers before
    /// the fragment header), once it arrived.
    header: [u8; 64],
    header_len: u8,
    /// IPv6: offset in `header` of the next-header byte that named the fragment header.
    nh_at: u8,
    /// 8-octet units received.
    covered: [u64; MAX_PAYLOAD.div_ceil(8).div_ceil(64)],
    /// Payload length, once the last fragment arrived.
    total: Option<u16>,
    fragments: u8,
    data: [u8; MAX_PAYLOAD],
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            key: Key::default(),
            used: false,
            started: 0,
            header: [0; 64],
            header_len: 0,
            nh_at: 0,
            covered: [0; MAX_PAYLOAD.div_ceil(8).div_ceil(64)],
            total: None,
            fragments: 0,
            data: [0; MAX_PAYLOAD],
        }
    }

    /// Marks units `first..end` received; false (nothing marked) if any already was.
    fn cover(&mut self, first: usize, end: usize) -> bool {
        if (first..end).any(|u| self.covered[u / 64] >> (u % 64) & 1 == 1) {
            return false;
        }
        for u in first..end {
            self.covered[u / 64] |= 1 << (u % 64);
        }
        true
    }

    fn complete(&self) -> bool {
        let Some(total) = self.total else {
            return false;
        };
        self.header_len > 0
            && (0..usize::from(total).div_ceil(8))
                .all(|u| self.covered[u / 64] >> (u % 64) & 1 == 1)
    }
}

/// A worker's reassembly slots (built on the control thread, about 130 KiB).
pub struct Reassembly {
    slots: Box<[Slot]>,
    timeout: u64,
    /// Datagrams whose time ran out (counted when their slot is taken back).
    timed_out: u64,
}

/// What a fragment says about itself.
struct Fragment<'a> {
    key: Key,
    /// Offset of the fragment's data in the datagram's payload, in bytes.
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// Headers to keep if this is the first fragment, and (IPv6) where the next header byte
    /// naming the fragment header sits in them.
    header: &'a [u8],
    nh_at: usize,
}

fn addr(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Parses an IPv4 or IPv6 fragment (`pkt` holds the whole IP packet, its header checked by
/// the classifier). `None`: not an ESP/UDP fragment or malformed.
fn parse(pkt: &[u8]) -> Option<Fragment<'_>> {
    match ip::version(pkt)? {
        4 => {
            let ip = Ipv4Packet::new_checked(pkt).ok()?;
            let p = ip.protocol();
            if !(p == proto::ESP || p == proto::UDP) {
                return None;
            }
            Some(Fragment {
                key: Key {
                    src: addr(ip.src().into()),
                    dst: addr(ip.dst().into()),
                    id: u32::from(ip.ident()),
                    proto: p,
                    v6: false,
                },
                offset: usize::from(ip.frag_offset()) * 8,
                more: ip.more_fragments(),
                data: ip.payload_ref(),
                header: ip.header_ref(),
                nh_at: ipv4::field::PROTOCOL,
            })
        }
        6 => {
            let ip = Ipv6Packet::new_checked(pkt).ok()?;
            let (off, p) = ip.upper_layer()?;
            if p != proto::FRAGMENT || off > 64 {
                return None;
            }
            let f = &pkt[off..off + 8];
            let next = f[0];
            if !(next == proto::ESP || next == proto::UDP) {
                return None;
            }
            // The byte that named the fragment header: the fixed header's, or the last
            // extension header's first byte.
            let nh_at = if off == ipv6::HEADER_LEN {
                ipv6::field::NEXT_HEADER
            } else {
                last_ext_header(pkt, off)?
            };
            let fo = u16::from_be_bytes([f[2], f[3]]);
            Some(Fragment {
                key: Key {
                    src: u128::from(ip.src()),
                    dst: u128::from(ip.dst()),
                    id: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
                    proto: next,
                    v6: true,
                },
                offset: usize::from(fo >> 3) * 8,
                more: fo & 1 != 0,
                data: &pkt[off + 8..ip.total_len()],
                header: &pkt[..off],
                nh_at,
            })
        }
        _ => None,
    }
}

/// The offset of the last extension header before `end` (walking from the fixed header).
fn last_ext_header(pkt: &[u8], end: usize) -> Option<usize> {
    let mut at = ipv6::HEADER_LEN;
    loop {
        let next = at + (usize::from(*pkt.get(at + 1)?) + 1) * 8;
        if next == end {
            return Some(at);
        }
        if next > end {
            return None;
        }
        at = next;
    }
}

/// The worker, of `workers`, that reassembles the datagram the fragment `pkt` belongs to: a
/// multiplicative hash of its identity (source, destination, protocol, identification), the
/// same for all its fragments. `None`: not a fragment reassembly takes.
pub fn worker_of(pkt: &[u8], workers: u16) -> Option<u16> {
    let k = parse(pkt)?.key;
    let fold = |a: u128| (a as u64) ^ ((a >> 64) as u64);
    let x = fold(k.src).rotate_left(17) ^ fold(k.dst) ^ (u64::from(k.id) << 8) ^ u64::from(k.proto);
    let h = x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    Some((h % u64::from(workers.max(1))) as u16)
}

impl Reassembly {
    /// Empty slots; a datagram has `timeout` clock units (the caller's clock, e.g. TSC
    /// cycles) to complete.
    pub fn new(timeout: u64) -> Reassembly {
        Reassembly {
            slots: (0..SLOTS).map(|_| Slot::empty()).collect(),
            timeout,
            timed_out: 0,
        }
    }

    /// Empty slots for a clock of `hz` units per second and [`TIMEOUT`].
    pub fn for_clock(hz: u64) -> Reassembly {
        let t = u128::from(hz) * TIMEOUT.as_millis() / 1000;
        Reassembly::new(u64::try_from(t).unwrap_or(u64::MAX))
    }

    /// Datagrams dropped so far because their time ran out (a worker copies this into its
    /// counters).
    pub fn timed_out(&self) -> u64 {
        self.timed_out
    }

    /// Datagrams in reassembly now.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.used).count()
    }

    /// Takes the fragment in `m` (data = its IP packet) at clock `now`. On
    /// [`Outcome::Complete`] `m` holds the reassembled datagram; otherwise its content has been
    /// copied (or refused) and the caller frees it.
    pub fn fragment<B: PacketBuf>(&mut self, m: &mut B, now: u64) -> Outcome {
        let Some(f) = parse(m.data()) else {
            return Outcome::NotReassembled;
        };
        let end = f.offset + f.data.len();
        if end > MAX_PAYLOAD || (f.more && f.data.len() % 8 != 0) || f.data.is_empty() {
            return if end > MAX_PAYLOAD {
                Outcome::TooBig
            } else {
                Outcome::NotReassembled
            };
        }
        let Some(i) = self.slot_for(f.key, now) else {
            return Outcome::Full;
        };
        let slot = &mut self.slots[i];
        slot.fragments += 1;
        let last_total = (!f.more).then_some(end as u16);
        let inconsistent = match (slot.total, last_total) {
            (Some(t), Some(n)) => t != n,
            (Some(t), None) => end > usize::from(t),
            (None, Some(n)) => slot.covered_beyond(usize::from(n)),
            (None, None) => false,
        };
        if slot.fragments > MAX_FRAGMENTS {
            slot.used = false;
            return Outcome::TooBig;
        }
        if inconsistent || !slot.cover(f.offset / 8, end.div_ceil(8)) {
            slot.used = false;
            return Outcome::Overlap;
        }
        slot.data[f.offset..end].copy_from_slice(f.data);
        if let Some(t) = last_total {
            slot.total = Some(t);
        }
        if f.offset == 0 {
            slot.header[..f.header.len()].copy_from_slice(f.header);
            slot.header_len = f.header.len() as u8;
            slot.nh_at = f.nh_at as u8;
        }
        if !slot.complete() {
            return Outcome::Held;
        }
        slot.used = false;
        let (hl, total) = (
            usize::from(slot.header_len),
            usize::from(slot.total.unwrap_or(0)),
        );
        let want = hl + total;
        let have = m.len();
        let fits = if want > have {
            m.append(want - have).is_some()
        } else {
            m.trim(have - want)
        };
        if !fits {
            return Outcome::TooBig;
        }
        let d = m.data_mut();
        d[..hl].copy_from_slice(&slot.header[..hl]);
        d[hl..want].copy_from_slice(&slot.data[..total]);
        if slot.key.v6 {
            d[usize::from(slot.nh_at)] = slot.key.proto;
            Ipv6Packet::new_unchecked(d).set_payload_len((want - ipv6::HEADER_LEN) as u16);
        } else {
            let mut ip = Ipv4Packet::new_unchecked(d);
            ip.set_total_len(want as u16);
            // Offset 0, MF clear; DF as the first fragment had it.
            ip.set_flags_frag(ip.flags_frag() & ipv4::DF);
            ip.fill_checksum();
        }
        Outcome::Complete
    }

    /// The slot of `key`, or a fresh one (a free slot, else one whose time ran out).
    fn slot_for(&mut self, key: Key, now: u64) -> Option<usize> {
        let timeout = self.timeout;
        let live = |s: &Slot| s.used && now.wrapping_sub(s.started) < timeout;
        if let Some(i) = self.slots.iter().position(|s| live(s) && s.key == key) {
            return Some(i);
        }
        let i = self.slots.iter().position(|s| !live(s))?;
        let s = &mut self.slots[i];
        if s.used {
            self.timed_out += 1;
        }
        s.key = key;
        s.used = true;
        s.started = now;
        s.header_len = 0;
        s.covered = [0; MAX_PAYLOAD.div_ceil(8).div_ceil(64)];
        s.total = None;
        s.fragments = 0;
        Some(i)
    }
}

impl Slot {
    /// Whether any unit at or beyond byte `n` was received (a last fragment that says the
    /// datagram ends before data already received).
    fn covered_beyond(&self, n: usize) -> bool {
        (n.div_ceil(8)..MAX_PAYLOAD.div_ceil(8)).any(|u| self.covered[u / 64] >> (u % 64) & 1 == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use espada_buf::VecBuf;
    use espada_wire::checksum;

    /// An IPv4 ESP packet with `n` bytes of payload (no DF: it may be fragmented).
    fn v4(n: usize) -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 50, 0, 0, 198, 51, 100, 2, 198, 51, 100, 1,
        ];
        p.extend((0..n).map(|i| (i * 7) as u8));
        let l = p.len() as u16;
        p[2..4].copy_from_slice(&l.to_be_bytes());
        let c = checksum::checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// The IPv4 fragments of `p` cut at payload offsets `cuts` (multiples of 8).
    fn frag4(p: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let payload = &p[20..];
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(payload.len());
        bounds
            .windows(2)
            .map(|w| {
                let mut f = p[..20].to_vec();
                f.extend_from_slice(&payload[w[0]..w[1]]);
                let more = w[1] < payload.len();
                let ff = (w[0] / 8) as u16 | if more { 0x2000 } else { 0 };
                f[6..8].copy_from_slice(&ff.to_be_bytes());
                let l = f.len() as u16;
                f[2..4].copy_from_slice(&l.to_be_bytes());
                f[10..12].copy_from_slice(&[0, 0]);
                let c = checksum::checksum(&f[..20]);
                f[10..12].copy_from_slice(&c.to_be_bytes());
                f
            })
            .collect()
    }

    /// An IPv6 ESP packet with `n` bytes of payload, and its fragments at `cuts`.
    fn frag6(n: usize, cuts: &[usize]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, 50, 64];
        h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let payload: Vec<u8> = (0..n).map(|i| (i * 13) as u8).collect();
        let mut whole = h.clone();
        whole[4..6].copy_from_slice(&(n as u16).to_be_bytes());
        whole.extend_from_slice(&payload);
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(n);
        let frags = bounds
            .windows(2)
            .map(|w| {
                let mut f = h.clone();
                f[6] = 44;
                let more = w[1] < n;
                let fo = (w[0] as u16) | u16::from(more);
                f.extend_from_slice(&[50, 0]);
                f.extend_from_slice(&fo.to_be_bytes());
                f.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
                f.extend_from_slice(&payload[w[0]..w[1]]);
                let pl = (f.len() - 40) as u16;
                f[4..6].copy_from_slice(&pl.to_be_bytes());
                f
            })
            .collect();
        (whole, frags)
    }

    fn feed(
        r: &mut Reassembly,
        frags: &[Vec<u8>],
        order: &[usize],
        now: u64,
    ) -> (Vec<Outcome>, Vec<u8>) {
        let mut last = Vec::new();
        let outs = order
            .iter()
            .map(|&i| {
                let mut m = VecBuf::new(64, &frags[i], 2048);
                let o = r.fragment(&mut m, now);
                last = m.data().to_vec();
                o
            })
            .collect();
        (outs, last)
    }

    #[test]
    fn ipv4_datagrams_in_two_and_three_pieces_in_any_order_come_out_byte_exact() {
        let p = v4(1400);
        for (cuts, order) in [
            (&[1000][..], &[0, 1][..]),
            (&[1000], &[1, 0]),
            (&[496, 1000], &[0, 1, 2]),
            (&[496, 1000], &[2, 0, 1]),
            (&[496, 1000], &[2, 1, 0]),
        ] {
            let mut r = Reassembly::new(100);
            let frags = frag4(&p, cuts);
            let (outs, got) = feed(&mut r, &frags, order, 1);
            let (last, held) = outs.split_last().unwrap();
            assert!(
                held.iter().all(|o| *o == Outcome::Held),
                "{cuts:?} {order:?}: {outs:?}"
            );
            assert_eq!(*last, Outcome::Complete);
            assert!(got == p, "{cuts:?} {order:?}: not byte-exact");
            assert_eq!(r.in_flight(), 0);
        }
    }

    #[test]
    fn ipv6_fragments_are_reassembled_and_the_fragment_header_removed() {
        for order in [[0usize, 1, 2], [1, 2, 0], [2, 1, 0]] {
            let (whole, frags) = frag6(1300, &[512, 1024]);
            let mut r = Reassembly::new(100);
            let (outs, got) = feed(&mut r, &frags, &order, 5);
            assert_eq!(outs[2], Outcome::Complete, "{order:?} {outs:?}");
            assert!(got == whole, "{order:?}: not byte-exact");
        }
    }

    #[test]
    fn overlaps_drop_the_whole_datagram() {
        let p = v4(1400);
        let mut frags = frag4(&p, &[496, 1000]);
        // The middle piece again, shifted back by 8 bytes over the first.
        let mut overlap = frags[1].clone();
        overlap[6..8].copy_from_slice(&((0x2000 | (488 / 8)) as u16).to_be_bytes());
        overlap[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&overlap[..20]);
        overlap[10..12].copy_from_slice(&c.to_be_bytes());
        frags.push(overlap);
        let mut r = Reassembly::new(100);
        let (outs, _) = feed(&mut r, &frags, &[0, 3], 1);
        assert_eq!(outs, vec![Outcome::Held, Outcome::Overlap]);
        assert_eq!(r.in_flight(), 0, "datagram forgotten");
        // The rest arrives: it starts a new datagram that never completes.
        let (outs, _) = feed(&mut r, &frags, &[1, 2], 1);
        assert_eq!(outs, vec![Outcome::Held, Outcome::Held]);
        // A duplicate fragment is an overlap too (RFC 5722 for IPv6).
        let (_, f6) = frag6(1300, &[512]);
        let mut r = Reassembly::new(100);
        let (outs, _) = feed(&mut r, &f6, &[0, 0], 1);
        assert_eq!(outs, vec![Outcome::Held, Outcome::Overlap]);
    }

    #[test]
    fn incomplete_datagrams_time_out_and_their_slots_are_taken_back() {
        let p = v4(1400);
        let frags = frag4(&p, &[1000]);
        let mut r = Reassembly::new(100);
        assert_eq!(feed(&mut r, &frags, &[0], 1).0, vec![Outcome::Held]);
        // The rest comes too late: a new datagram (held), the old one counted as timed out.
        assert_eq!(feed(&mut r, &frags, &[1], 200).0, vec![Outcome::Held]);
        assert_eq!(r.timed_out(), 1);
        // Every slot busy with live datagrams: a new one is refused.
        let mut r = Reassembly::new(100);
        for id in 0..SLOTS as u16 {
            let mut f = frags[0].clone();
            f[4..6].copy_from_slice(&id.to_be_bytes());
            f[10..12].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&f[..20]);
            f[10..12].copy_from_slice(&c.to_be_bytes());
            assert_eq!(feed(&mut r, &[f], &[0], 1).0, vec![Outcome::Held]);
        }
        let mut f = frags[0].clone();
        f[4..6].copy_from_slice(&999u16.to_be_bytes());
        assert_eq!(feed(&mut r, &[f.clone()], &[0], 2).0, vec![Outcome::Full]);
        // Once they are stale, the slot is reused.
        assert_eq!(feed(&mut r, &[f], &[0], 500).0, vec![Outcome::Held]);
    }

    #[test]
    fn too_many_pieces_too_many_bytes_and_other_protocols_are_refused() {
        let p = v4(1400);
        let cuts: Vec<usize> = (1..20).map(|i| i * 64).collect();
        let frags = frag4(&p, &cuts);
        let mut r = Reassembly::new(100);
        let order: Vec<usize> = (0..frags.len()).collect();
        let (outs, _) = feed(&mut r, &frags, &order, 1);
        assert_eq!(outs[16], Outcome::TooBig, "{outs:?}");
        // Data beyond MAX_PAYLOAD.
        let big = frag4(&v4(1400), &[1000]);
        let mut far = big[1].clone();
        far[6..8].copy_from_slice(&((MAX_PAYLOAD / 8) as u16).to_be_bytes());
        let mut m = VecBuf::new(64, &far, 2048);
        assert_eq!(Reassembly::new(100).fragment(&mut m, 1), Outcome::TooBig);
        // A TCP fragment is not ours to reassemble.
        let mut tcp = big[0].clone();
        tcp[9] = 6;
        let mut m = VecBuf::new(64, &tcp, 2048);
        assert_eq!(
            Reassembly::new(100).fragment(&mut m, 1),
            Outcome::NotReassembled
        );
    }
}
