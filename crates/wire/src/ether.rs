//! Ethernet II framing (IEEE 802.3 / RFC 894 "IP over Ethernet").
//!
//! Only untagged Ethernet II frames are handled. A frame whose EtherType field holds an
//! IEEE 802.1Q / 802.1ad tag protocol identifier is *recognised* and reported as
//! [`EtherError::VlanTagged`], never misread as an untagged frame; a frame whose type field is
//! an IEEE 802.3 length (< 0x0600) is reported as [`EtherError::NotEthernetII`].

use core::fmt;
use std::net::Ipv6Addr;

/// Length of an untagged Ethernet II header: destination, source, EtherType (RFC 894).
pub const HEADER_LEN: usize = 14;

/// Minimum Ethernet frame length without the FCS (IEEE 802.3 `ETH_ZLEN`); frames built by this
/// crate are zero-padded up to it, as RFC 894 requires for short IP datagrams and ARP packets.
pub const MIN_FRAME_LEN: usize = 60;

/// EtherType of IPv4 (RFC 894).
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP (RFC 826).
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6 (RFC 2464 §3).
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
/// Tag protocol identifier of an IEEE 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// Tag protocol identifier of an IEEE 802.1ad service (QinQ) tag.
pub const ETHERTYPE_QINQ: u16 = 0x88A8;
/// Legacy (pre-IEEE 802.1ad) QinQ tag protocol identifier still sent by some switches.
pub const ETHERTYPE_QINQ_LEGACY: u16 = 0x9100;

/// A 48-bit IEEE MAC address (the "hardware address" of RFC 826).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff` (RFC 826 requests are sent to it).
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The all-zero address, the unknown target hardware address in ARP requests (RFC 5227 §1.1).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// True for `ff:ff:ff:ff:ff:ff` (IEEE 802 broadcast, RFC 826 request destination).
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True when the IEEE 802 I/G bit is set (group address, which includes broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for an IEEE 802 individual (unicast) address other than all-zero.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && *self != Self::ZERO
    }

    /// The Ethernet multicast address of an IPv6 multicast group: `33:33` followed by the low
    /// 32 bits of the group address (RFC 2464 §7).
    pub fn ipv6_multicast(group: Ipv6Addr) -> MacAddr {
        let o = group.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a byte slice is not an untagged Ethernet II frame (RFC 894) this crate handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EtherError {
    /// Shorter than the 14-byte header.
    Truncated,
    /// Carries an IEEE 802.1Q/802.1ad tag (the TPID is given); VLANs are not supported here.
    VlanTagged(u16),
    /// The type field is an IEEE 802.3 length (< 0x0600), not an EtherType (RFC 894 frames only).
    NotEthernetII(u16),
}

impl fmt::Display for EtherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherError::Truncated => f.write_str("frame shorter than the Ethernet header"),
            EtherError::VlanTagged(t) => {
                write!(f, "VLAN-tagged frame (TPID {t:#06x}) not supported")
            }
            EtherError::NotEthernetII(l) => {
                write!(f, "IEEE 802.3 length field {l}, not Ethernet II")
            }
        }
    }
}

impl std::error::Error for EtherError {}

/// The fields of an untagged Ethernet II header (RFC 894).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetHeader {
    /// Destination MAC address.
    pub dst: MacAddr,
    /// Source MAC address.
    pub src: MacAddr,
    /// EtherType of the payload.
    pub ethertype: u16,
}

impl EthernetHeader {
    /// Parses the header at the start of `frame` and returns it with the payload that follows
    /// (RFC 894). Trailing Ethernet padding stays in the payload: upper layers trim it using
    /// their own length fields.
    pub fn parse(frame: &[u8]) -> Result<(EthernetHeader, &[u8]), EtherError> {
        let Some((hdr, payload)) = frame.split_first_chunk::<HEADER_LEN>() else {
            return Err(EtherError::Truncated);
        };
        let ethertype = u16::from_be_bytes([hdr[12], hdr[13]]);
        match ethertype {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_LEGACY => {
                return Err(EtherError::VlanTagged(ethertype));
            }
            t if t < 0x0600 => return Err(EtherError::NotEthernetII(t)),
            _ => {}
        }
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&hdr[0..6]);
        src.copy_from_slice(&hdr[6..12]);
        Ok((
            EthernetHeader {
                dst: MacAddr(dst),
                src: MacAddr(src),
                ethertype,
            },
            payload,
        ))
    }

    /// Returns the 14 header bytes (RFC 894 layout).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..6].copy_from_slice(&self.dst.0);
        b[6..12].copy_from_slice(&self.src.0);
        b[12..14].copy_from_slice(&self.ethertype.to_be_bytes());
        b
    }

    /// Appends the 14 header bytes to `out` (RFC 894 layout).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

/// Zero-pads a frame to [`MIN_FRAME_LEN`] bytes (IEEE 802.3 minimum, RFC 894 "padding").
pub fn pad_to_minimum(frame: &mut Vec<u8>) {
    if frame.len() < MIN_FRAME_LEN {
        frame.resize(MIN_FRAME_LEN, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_colon_separated() {
        let m = MacAddr([0xaa, 0xbb, 0x0c, 0x00, 0x01, 0xff]);
        assert_eq!(m.to_string(), "aa:bb:0c:00:01:ff");
        assert_eq!(format!("{m:?}"), "aa:bb:0c:00:01:ff");
    }

    #[test]
    fn parse_round_trip() {
        let h = EthernetHeader {
            dst: MacAddr::BROADCAST,
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            ethertype: ETHERTYPE_ARP,
        };
        let mut f = Vec::new();
        h.emit(&mut f);
        f.extend_from_slice(&[1, 2, 3]);
        let (p, payload) = EthernetHeader::parse(&f).unwrap();
        assert_eq!(p, h);
        assert_eq!(payload, &[1, 2, 3]);
    }

    #[test]
    fn vlan_and_8023_and_short_rejected() {
        let mut f = [0u8; 18];
        f[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        assert_eq!(
            EthernetHeader::parse(&f),
            Err(EtherError::VlanTagged(0x8100))
        );
        f[12..14].copy_from_slice(&ETHERTYPE_QINQ.to_be_bytes());
        assert_eq!(
            EthernetHeader::parse(&f),
            Err(EtherError::VlanTagged(0x88a8))
        );
        f[12..14].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            EthernetHeader::parse(&f),
            Err(EtherError::NotEthernetII(100))
        );
        assert_eq!(EthernetHeader::parse(&f[..13]), Err(EtherError::Truncated));
    }

    #[test]
    fn multicast_mapping_and_classes() {
        let g: Ipv6Addr = "ff02::1:ff12:3456".parse().unwrap();
        assert_eq!(
            MacAddr::ipv6_multicast(g),
            MacAddr([0x33, 0x33, 0xff, 0x12, 0x34, 0x56])
        );
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert!(MacAddr([2, 0, 0, 0, 0, 1]).is_unicast());
    }
}
