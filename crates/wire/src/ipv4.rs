//! A validating view of an IPv4 header (RFC 791) and an emitter for the option-less headers this
//! crate sends.

use crate::checksum;
use std::net::Ipv4Addr;

/// Length of an IPv4 header without options (RFC 791 §3.1).
pub const MIN_HEADER_LEN: usize = 20;
/// TTL of datagrams this host originates (RFC 1700 / RFC 1122 §3.2.1.7 recommended default 64).
pub const DEFAULT_TTL: u8 = 64;

/// Why bytes are not an acceptable IPv4 datagram (RFC 791, RFC 1122 §3.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Error {
    /// Shorter than the header, or than the header length / total length claims.
    Truncated,
    /// Version field is not 4.
    Version,
    /// IHL below 5 or total length below the header length.
    HeaderLength,
    /// Header checksum does not verify (RFC 1122 §3.2.1.2: silently discard).
    Checksum,
}

/// Field offsets of the IPv4 header (RFC 791 §3.1).
pub mod field {
    use core::ops::Range;
    /// Version and IHL.
    pub const VER_IHL: usize = 0;
    /// Type of service: DSCP (6 bits) and ECN (2 bits), RFC 2474 / RFC 3168.
    pub const TOS: usize = 1;
    /// Total length.
    pub const LENGTH: Range<usize> = 2..4;
    /// Identification.
    pub const IDENT: Range<usize> = 4..6;
    /// Flags (DF, MF) and fragment offset.
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address.
    pub const SRC: Range<usize> = 12..16;
    /// Destination address.
    pub const DST: Range<usize> = 16..20;
}

/// Don't Fragment flag in the flags/fragment-offset word.
pub const DF: u16 = 0x4000;
/// More Fragments flag.
pub const MF: u16 = 0x2000;
/// Fragment offset mask (8-octet units).
pub const FRAG_OFFSET: u16 = 0x1fff;

/// A view of an IPv4 datagram in `T` (smoltcp's `Packet` shape). After
/// [`Ipv4Packet::new_checked`] the header and the total length lie inside the buffer and no
/// accessor panics; [`Ipv4Packet::new_unchecked`] is for buffers the caller built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// A view of untrusted bytes: version 4, IHL at least 5, header length ≤ total length ≤
    /// the buffer (RFC 791 §3.1, RFC 1122 §3.2.1.1). The header checksum is not verified
    /// ([`Ipv4Packet::verify_checksum`], or [`Ipv4Packet::parse`] for both).
    pub fn new_checked(buffer: T) -> Result<Self, Ipv4Error> {
        let b = buffer.as_ref();
        let h = b.get(..MIN_HEADER_LEN).ok_or(Ipv4Error::Truncated)?;
        if h[0] >> 4 != 4 {
            return Err(Ipv4Error::Version);
        }
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if ihl < MIN_HEADER_LEN || total < ihl {
            return Err(Ipv4Error::HeaderLength);
        }
        if total > b.len() {
            return Err(Ipv4Error::Truncated);
        }
        Ok(Ipv4Packet { buffer })
    }

    /// [`Ipv4Packet::new_checked`] and the header checksum (RFC 1122 §3.2.1.2).
    pub fn parse(buffer: T) -> Result<Self, Ipv4Error> {
        let p = Self::new_checked(buffer)?;
        if !p.verify_checksum() {
            return Err(Ipv4Error::Checksum);
        }
        Ok(p)
    }

    #[inline]
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The 16-bit word at `at` (0 beyond the buffer, which a checked view's header is not):
    /// one bounds check and one load.
    #[inline]
    fn word(&self, at: usize) -> u16 {
        self.b()
            .get(at..)
            .and_then(<[u8]>::first_chunk)
            .map_or(0, |w| u16::from_be_bytes(*w))
    }

    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }
    /// Total length.
    #[inline]
    pub fn total_len(&self) -> usize {
        usize::from(self.word(field::LENGTH.start))
    }
    /// Type-of-service / DSCP+ECN byte.
    #[inline]
    pub fn tos(&self) -> u8 {
        self.b()[field::TOS]
    }
    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        self.word(field::IDENT.start)
    }
    /// The flags and fragment-offset word.
    #[inline]
    pub fn flags_frag(&self) -> u16 {
        self.word(field::FLAGS_FRAG.start)
    }
    /// Don't Fragment flag.
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        self.flags_frag() & DF != 0
    }
    /// More Fragments flag.
    #[inline]
    pub fn more_fragments(&self) -> bool {
        self.flags_frag() & MF != 0
    }
    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.flags_frag() & FRAG_OFFSET
    }
    /// True if this datagram is a fragment (first or later): MF set or a non-zero offset
    /// (RFC 791 §2.3).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (MF | FRAG_OFFSET) != 0
    }
    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }
    /// Protocol number of the payload.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }
    /// Source address.
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }
    /// Destination address.
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.b();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }
    /// True when the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }
    /// The whole header including options.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.b()[..self.header_len()]
    }
    /// The payload, `total length − header length` bytes (link padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..self.total_len()]
    }
    /// The datagram: header and payload, without link padding.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.b()[..self.total_len()]
    }
    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<'a> Ipv4Packet<&'a [u8]> {
    /// The payload, borrowed for the buffer's lifetime.
    #[inline]
    pub fn payload_ref(&self) -> &'a [u8] {
        let (h, t) = (self.header_len(), self.total_len());
        &self.buffer[h..t]
    }
    /// The header, borrowed for the buffer's lifetime.
    #[inline]
    pub fn header_ref(&self) -> &'a [u8] {
        &self.buffer[..self.header_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    fn set_word(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        self.set_word(field::LENGTH.start, len);
    }
    /// Sets the flags and fragment-offset word.
    #[inline]
    pub fn set_flags_frag(&mut self, w: u16) {
        self.set_word(field::FLAGS_FRAG.start, w);
    }
    /// Sets the type-of-service byte, updating the header checksum incrementally (RFC 1624).
    #[inline]
    pub fn set_tos_updating_checksum(&mut self, tos: u8) {
        let old = self.word(field::VER_IHL);
        self.buffer.as_mut()[field::TOS] = tos;
        let new = self.word(field::VER_IHL);
        let c = checksum::update(self.word(field::CHECKSUM.start), old, new);
        self.set_word(field::CHECKSUM.start, c);
    }
    /// Sets the TTL, updating the header checksum incrementally (RFC 1624).
    #[inline]
    pub fn set_ttl_updating_checksum(&mut self, ttl: u8) {
        let old = self.word(field::TTL);
        self.buffer.as_mut()[field::TTL] = ttl;
        let new = self.word(field::TTL);
        let c = checksum::update(self.word(field::CHECKSUM.start), old, new);
        self.set_word(field::CHECKSUM.start, c);
    }
    /// Recomputes the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_word(field::CHECKSUM.start, 0);
        let c = checksum::checksum(self.header());
        self.set_word(field::CHECKSUM.start, c);
    }
}

/// Fields of an option-less IPv4 header to emit (RFC 791 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Type-of-service byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment flag.
    pub dont_fragment: bool,
    /// Time to live.
    pub ttl: u8,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
}

impl Ipv4Repr {
    /// Appends a 20-byte header with a correct header checksum for a payload of `payload_len`
    /// bytes (RFC 791). Returns `None`, appending nothing, if the datagram would exceed 65535.
    pub fn emit(&self, payload_len: usize, out: &mut Vec<u8>) -> Option<()> {
        let mut h = [0u8; MIN_HEADER_LEN];
        self.write(payload_len, &mut h)?;
        out.extend_from_slice(&h);
        Some(())
    }

    /// Writes the 20-byte header (checksum included) into the first 20 bytes of `h`, in place
    /// (the data plane builds headers in the packet's own buffer). `None`, nothing written,
    /// when `h` is shorter or the datagram would exceed 65535 bytes.
    pub fn write(&self, payload_len: usize, h: &mut [u8]) -> Option<()> {
        let total = u16::try_from(MIN_HEADER_LEN.checked_add(payload_len)?).ok()?;
        let h = h.get_mut(..MIN_HEADER_LEN)?;
        h.fill(0);
        h[0] = 0x45;
        h[field::TOS] = self.tos;
        h[field::LENGTH].copy_from_slice(&total.to_be_bytes());
        h[field::IDENT].copy_from_slice(&self.ident.to_be_bytes());
        if self.dont_fragment {
            h[field::FLAGS_FRAG].copy_from_slice(&DF.to_be_bytes());
        }
        h[field::TTL] = self.ttl;
        h[field::PROTOCOL] = self.protocol;
        h[field::SRC].copy_from_slice(&self.src.octets());
        h[field::DST].copy_from_slice(&self.dst.octets());
        let c = checksum::checksum(h);
        h[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
        Some(())
    }
}

/// True for a source address that must never be answered (RFC 1122 §3.2.1.3, §3.2.2): the
/// unspecified, "this network", limited broadcast, multicast, loopback and class E addresses.
pub fn is_bad_source(a: Ipv4Addr) -> bool {
    a.is_unspecified()
        || a.octets()[0] == 0
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_loopback()
        || a.octets()[0] >= 240
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_parse() {
        let r = Ipv4Repr {
            tos: 0x10,
            ident: 7,
            dont_fragment: true,
            ttl: 64,
            protocol: 1,
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 0, 2, 2),
        };
        let mut v = Vec::new();
        r.emit(4, &mut v).unwrap();
        v.extend_from_slice(&[9, 9, 9, 9, 0, 0]); // payload + padding
        let p = Ipv4Packet::parse(&v[..]).unwrap();
        assert_eq!(
            (p.src(), p.dst(), p.ttl(), p.protocol(), p.tos()),
            (r.src, r.dst, 64, 1, 0x10)
        );
        assert!(p.dont_fragment() && !p.is_fragment());
        assert_eq!(p.payload(), &[9, 9, 9, 9]);
        let mut w = Ipv4Packet::new_unchecked(v.clone());
        w.set_ttl_updating_checksum(63);
        assert!(w.verify_checksum(), "RFC 1624 update");
        v[8] = 1; // corrupt TTL without fixing checksum
        assert_eq!(Ipv4Packet::parse(&v[..]), Err(Ipv4Error::Checksum));
        assert_eq!(Ipv4Packet::parse(&v[..22]), Err(Ipv4Error::Truncated));
        v[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&v[..]),
            Err(Ipv4Error::HeaderLength)
        );
        assert!(r.emit(65_516, &mut Vec::new()).is_none());
    }
}
