//! The little of Ethernet II the fast path needs (IEEE 802.3 §3.2.6), inline and without
//! validation: `espada_wire::ether` owns the constants and the full parser.

pub use espada_wire::ether::{
    ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, HEADER_LEN,
};

pub use espada_wire::MacAddr;

/// The EtherType of a frame, or `None` when it is shorter than a header.
#[inline]
pub fn ethertype(frame: &[u8]) -> Option<u16> {
    frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// Writes an Ethernet header into the first 14 bytes of `out`.
#[inline]
pub fn write_header(out: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: u16) {
    out[..6].copy_from_slice(&dst.0);
    out[6..12].copy_from_slice(&src.0);
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut f = [0u8; 14];
        write_header(
            &mut f,
            MacAddr([1, 2, 3, 4, 5, 6]),
            MacAddr([7, 8, 9, 10, 11, 12]),
            ETHERTYPE_IPV6,
        );
        assert_eq!(ethertype(&f), Some(0x86dd));
        assert_eq!(&f[..6], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(ethertype(&f[..13]), None);
    }
}
